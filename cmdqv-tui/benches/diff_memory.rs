//! Memory and throughput of `cmdqv diff` over a long recording (ARCHITECTURE.md: diff of one
//! hour at 100 k events/s runs in ≤ 200 MiB RSS, streaming the file). Writes a synthetic trace
//! of that many events (doorbells, 1–16 commands per batch ending in a CMD_SYNC, consumption
//! passes, a VMM register write and a guest CONS read per batch, on four VCMDQs and the SMMU
//! queue, timestamps 10 µs apart), runs `cmdqv diff FILE FILE --json` on it as a child process,
//! and reports the child's peak RSS (its own rusage, from wait4), events/s of wall time and of
//! CPU time (both files counted); then deletes the file.
//!
//! `cargo bench -p cmdqv-tui --bench diff_memory` (env: `CMDQV_DIFF_EVENTS`, comma-separated
//! sizes, default 360000000; `CMDQV_DIFF_DIR`, where the file goes, default the temp dir).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use cmdqv_core::event::{Device, Event, MAIN_CMDQ, Payload, QueueEvent, Source};
use cmdqv_core::record::{TraceMeta, TraceWriter};

/// Writes `total` events; returns the file's size in bytes.
fn write_trace(path: &Path, total: u64) -> u64 {
    let mut w = TraceWriter::create(path, &TraceMeta::new(Source::InProcess, "soak"))
        .expect("create the trace file");
    let (mut ts, mut n) = (1_000_000_000u64, 0u64);
    let mut prod = [0u32; 5];
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut put = |payload: Payload, ts: &mut u64, n: &mut u64| {
        *ts += 10_000; // 100 k events/s of trace time
        *n += 1;
        let ev = Event {
            ts_ns: *ts,
            pid: 1234,
            tid: 1234,
            cpu: 0,
            payload,
        };
        w.write(&ev).expect("write an event");
    };
    while n < total {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        let r = x.wrapping_mul(0x2545_f491_4f6c_dd1d);
        let slot = (r % 5) as usize;
        let queue = if slot == 4 { MAIN_CMDQ } else { slot as u32 };
        let k = (1 + (r >> 8) % 16) as u32;
        let cons = prod[slot];
        let p = (cons + k + 1) & 0x1fff;
        let reg = 0x10000 + 0x80 * slot as u64;
        let write = |offset, value, write| Payload::Mmio {
            device: Device::Cmdqv,
            offset,
            value,
            size: 4,
            write,
        };
        put(write(reg + 4, p.into(), true), &mut ts, &mut n);
        let db = QueueEvent::Doorbell { prod: p, cons };
        put(Payload::Queue { queue, event: db }, &mut ts, &mut n);
        for i in 0..=k {
            let w0 = if i == k {
                0x46
            } else {
                0x12 | (r & 0xffff_0000_0000)
            };
            let index = (cons + i) & 0x1fff;
            let c = Payload::Command {
                queue,
                index,
                w0,
                w1: r << 12,
            };
            put(c, &mut ts, &mut n);
        }
        let done = QueueEvent::Consumed { cons: p, prod: p };
        put(Payload::Queue { queue, event: done }, &mut ts, &mut n);
        put(write(reg, p.into(), false), &mut ts, &mut n);
        prod[slot] = p;
    }
    let f = w.finish().expect("finish the trace file");
    drop(f);
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Runs `cmdqv diff FILE FILE --json` and waits for it: (exit status, peak RSS in MiB, CPU
/// seconds).
// The child is reaped by wait4 below (std's wait would not return its rusage).
#[allow(clippy::zombie_processes)]
fn diff_peak_rss(path: &Path) -> (i32, f64, f64) {
    let child = Command::new(env!("CARGO_BIN_EXE_cmdqv"))
        .arg("diff")
        .args([path, path])
        .arg("--json")
        .stdout(Stdio::null())
        .spawn()
        .expect("run cmdqv diff");
    let mut status = 0;
    // SAFETY: wait4 on our own child, with valid pointers; it reaps the child, so its rusage is
    // that child's alone.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut ru) };
    assert_eq!(pid, child.id() as i32, "wait4 failed");
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let cpu = secs(ru.ru_utime) + secs(ru.ru_stime);
    (code, ru.ru_maxrss as f64 / 1024.0, cpu)
}

fn main() {
    let sizes: Vec<u64> = std::env::var("CMDQV_DIFF_EVENTS")
        .unwrap_or_else(|_| "360000000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let dir = std::env::var_os("CMDQV_DIFF_DIR").map_or_else(std::env::temp_dir, Into::into);
    println!(
        "{:>12} {:>10} {:>9} {:>13} {:>13} {:>14}",
        "events", "file GiB", "diff s", "events/s", "ev/CPU-s", "diff peak RSS"
    );
    for total in sizes {
        let path = dir.join(format!("cmdqv-diff-bench-{}.cmdqv", std::process::id()));
        let bytes = write_trace(&path, total);
        let t = Instant::now();
        let (code, rss, cpu) = diff_peak_rss(&path);
        let secs = t.elapsed().as_secs_f64();
        let _ = std::fs::remove_file(&path);
        assert_eq!(code, 0, "cmdqv diff failed");
        println!(
            "{total:>12} {:>10.2} {secs:>9.1} {:>13.0} {:>13.0} {rss:>10.1} MiB",
            bytes as f64 / (1u64 << 30) as f64,
            2.0 * total as f64 / secs,
            2.0 * total as f64 / cpu.max(1e-9),
        );
    }
}
