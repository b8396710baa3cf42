//! Memory budget of the collector (ARCHITECTURE.md: bounded, ≤ 200 MiB RSS after 1 h at
//! 100 k events/s). One hour at that rate is 360 M events; the collector ingests them here in
//! well under a minute, and the resident set is sampled as it goes. A bounded collector's RSS
//! stops growing once every ring and histogram is full, however long the stream.
//!
//! `cargo bench -p cmdqv-core --bench collector_memory` (env CMDQV_SOAK_EVENTS to change the
//! count, default 360 M).

use std::time::Instant;

use cmdqv_core::{
    analysis::{Collector, CollectorConfig},
    event::{Device, Event, MAIN_CMDQ, Payload, QueueEvent, Source},
    regs::Cerror,
};

fn rss_mib() -> f64 {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: f64 = s
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions. statm counts pages of the kernel's size.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as f64;
    pages * page / (1024.0 * 1024.0)
}

fn main() {
    let total: u64 = std::env::var("CMDQV_SOAK_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(360_000_000);
    let mut c = Collector::new(CollectorConfig::new(Source::InProcess, "soak"));
    let mut ts = 1_000_000_000u64;
    let mut n = 0u64;
    let mut prod = [0u32; 5];
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let start = Instant::now();
    let rss0 = rss_mib();
    let mut max_rss = rss0;
    println!("{:>12} {:>10} {:>9}", "events", "RSS MiB", "seconds");
    let ev = |c: &mut Collector, payload: Payload, ts: &mut u64, n: &mut u64| {
        *ts += 10_000; // 100 k events/s of trace time
        *n += 1;
        c.ingest(&Event {
            ts_ns: *ts,
            pid: 1234,
            tid: 1234,
            cpu: 0,
            payload,
        });
    };
    while n < total {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        let r = x.wrapping_mul(0x2545_f491_4f6c_dd1d);
        let slot = (r % 5) as usize;
        let queue = if slot == 4 { MAIN_CMDQ } else { slot as u32 };
        let k = 1 + (r >> 8) % 16;
        let cons = prod[slot];
        let p = (cons + k as u32 + 1) & 0x1fff;
        ev(
            &mut c,
            Payload::Mmio {
                device: Device::Cmdqv,
                offset: 0x30004 + 0x80 * slot as u64,
                value: p as u64,
                size: 4,
                write: true,
            },
            &mut ts,
            &mut n,
        );
        ev(
            &mut c,
            Payload::Queue {
                queue,
                event: QueueEvent::Doorbell { prod: p, cons },
            },
            &mut ts,
            &mut n,
        );
        for i in 0..=k {
            let w0 = if i == k {
                0x46
            } else {
                0x12 | (r & 0xffff_0000_0000)
            };
            ev(
                &mut c,
                Payload::Command {
                    queue,
                    index: (cons + i as u32) & 0x1fff,
                    w0,
                    w1: r << 12,
                },
                &mut ts,
                &mut n,
            );
        }
        ev(
            &mut c,
            Payload::Queue {
                queue,
                event: QueueEvent::Consumed { cons: p, prod: p },
            },
            &mut ts,
            &mut n,
        );
        prod[slot] = p;
        // Hostile variety: queue ids past the cap, errors, ioctls with every command number.
        if r.is_multiple_of(97) {
            ev(
                &mut c,
                Payload::Command {
                    queue: (r >> 20) as u32,
                    index: 0,
                    w0: r,
                    w1: 0,
                },
                &mut ts,
                &mut n,
            );
            ev(
                &mut c,
                Payload::Queue {
                    queue,
                    event: QueueEvent::Error {
                        index: p,
                        cerror: Cerror::Ill.into(),
                    },
                },
                &mut ts,
                &mut n,
            );
            ev(
                &mut c,
                Payload::Queue {
                    queue,
                    event: QueueEvent::ErrorAck { gerrorn: 1 },
                },
                &mut ts,
                &mut n,
            );
            ev(
                &mut c,
                Payload::Ioctl {
                    fd: 3,
                    cmd: 0x3b00 | (r as u32 & 0xff),
                    ret: -25,
                    duration_ns: 1000,
                    arg_len: 48,
                    arg: [0; 48],
                },
                &mut ts,
                &mut n,
            );
        }
        if n % 20_000_000 < 25 {
            // A snapshot now and then, as the UI takes them.
            let _ = c.snapshot(ts);
            let rss = rss_mib();
            max_rss = max_rss.max(rss);
            println!("{n:>12} {rss:>10.1} {:>9.1}", start.elapsed().as_secs_f64());
        }
    }
    let _ = c.snapshot(ts);
    let rss = rss_mib();
    max_rss = max_rss.max(rss);
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{n} events ({:.1} h of trace at 100 k/s) in {secs:.1} s ({:.1} M events/s): RSS {rss0:.1} MiB at start, {rss:.1} MiB at the end, {max_rss:.1} MiB peak (budget 200 MiB)",
        n as f64 / 100_000.0 / 3600.0,
        n as f64 / secs / 1e6
    );
}
