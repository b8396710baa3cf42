//! The collector: correlation (doorbell → commands → CONS), per-queue statistics, bounds.

use cmdqv_core::analysis::*;
use cmdqv_core::command::op;
use cmdqv_core::event::{Device, Event, MAIN_CMDQ, Payload, QueueEvent, Source};
use cmdqv_core::regs::Cerror;

fn ev(ts_ns: u64, payload: Payload) -> Event {
    Event {
        ts_ns,
        pid: 100,
        tid: 101,
        cpu: 0,
        payload,
    }
}
fn q(ts: u64, queue: u32, event: QueueEvent) -> Event {
    ev(ts, Payload::Queue { queue, event })
}
fn cmd(ts: u64, queue: u32, index: u32, w0: u64, w1: u64) -> Event {
    ev(
        ts,
        Payload::Command {
            queue,
            index,
            w0,
            w1,
        },
    )
}
fn tlbi(vmid: u64, asid: u64) -> u64 {
    op::TLBI_NH_VA as u64 | vmid << 32 | asid << 48
}
const SYNC: u64 = op::CMD_SYNC as u64;

fn collector() -> Collector {
    Collector::new(CollectorConfig::new(Source::InProcess, "test"))
}

/// Doorbell at `t` for `n` commands (the last one a CMD_SYNC) starting at `prod0`, consumed
/// `lat` ns later.
fn batch(c: &mut Collector, queue: u32, t: u64, prod0: u32, n: u32, lat: u64) -> u32 {
    let prod = prod0 + n;
    c.ingest(&q(t, queue, QueueEvent::Doorbell { prod, cons: prod0 }));
    for i in 0..n {
        let w0 = if i + 1 == n { SYNC } else { tlbi(1, 3) };
        c.ingest(&cmd(t + 1 + u64::from(i), queue, prod0 + i, w0, 0x1000));
    }
    c.ingest(&q(
        t + lat,
        queue,
        QueueEvent::Consumed { cons: prod, prod },
    ));
    prod
}

fn find<'a>(s: &'a Summary, name: &str) -> &'a QueueSummary {
    s.queues
        .iter()
        .find(|q| q.name == name)
        .unwrap_or_else(|| panic!("no queue {name}"))
}

#[test]
fn doorbell_to_cons_gives_batch_latency_size_and_counts() {
    let mut c = collector();
    c.ingest(&q(
        0,
        3,
        QueueEvent::Enable {
            enabled: true,
            log2size: 8,
        },
    ));
    let mut prod = 0;
    for (i, lat) in [1_000u64, 2_000, 3_000, 100_000].into_iter().enumerate() {
        prod = batch(&mut c, 3, 1_000_000 * (i as u64 + 1), prod, 8, lat);
    }
    let s = c.snapshot(5_000_000);
    let v = find(&s, "vcmdq3");
    assert_eq!(v.global_id, Some(3));
    assert_eq!(v.state, QueueState::Emulated);
    assert_eq!(v.log2size, 8);
    assert_eq!(v.commands, 32);
    assert_eq!(v.syncs, 4);
    assert_eq!(v.batches, 4);
    assert_eq!(v.mean_batch_size, 8.0);
    assert_eq!(v.opcodes["TLBI_NH_VA"], 28);
    assert_eq!(v.opcodes["CMD_SYNC"], 4);
    let l = v.batch_latency_ns;
    assert_eq!(l.count, 4);
    assert_eq!(l.max, 100_000);
    assert_eq!(l.mean, 26_500.0);
    // Two significant digits in the percentile histogram.
    assert!((1_980..=2_020).contains(&l.p50), "p50 {}", l.p50);
    assert_eq!(l.p99, 100_000);
    // 1000 ns → bucket with upper bound 1024; 100_000 → 131072.
    let h: std::collections::HashMap<u64, u64> = v.latency_histogram.iter().copied().collect();
    assert_eq!(h[&1024], 1);
    assert_eq!(h[&2048], 1);
    assert_eq!(h[&4096], 1);
    assert_eq!(h[&131072], 1);
    assert_eq!(v.latency_histogram.iter().map(|b| b.1).sum::<u64>(), 4);
    // 5 ms elapsed since the first event at t = 0.
    assert!((v.commands_per_s - 32.0 / 0.005).abs() < 1e-6);
    assert!((v.syncs_per_s - 4.0 / 0.005).abs() < 1e-6);
    assert_eq!(s.events, 1 + 4 * 10);
    assert_eq!(v.recent.len(), 32);
    assert_eq!(v.recent.last().unwrap().text, "CMD_SYNC cs=NONE");
    assert_eq!(
        v.recent[0].text,
        "TLBI_NH_VA vmid=1 asid=3 va=0x1000 tg=none num=0 scale=0"
    );
    assert_eq!((v.prod, v.cons, v.occupancy), (32, 32, 0.0));
}

#[test]
fn coalesced_doorbells_close_together_and_partial_passes_close_up_to_cons() {
    let mut c = collector();
    c.ingest(&q(
        0,
        1,
        QueueEvent::Enable {
            enabled: true,
            log2size: 4,
        },
    ));
    c.ingest(&q(100, 1, QueueEvent::Doorbell { prod: 2, cons: 0 }));
    c.ingest(&q(200, 1, QueueEvent::Doorbell { prod: 4, cons: 0 }));
    c.ingest(&q(300, 1, QueueEvent::Doorbell { prod: 6, cons: 0 }));
    for i in 0..4 {
        c.ingest(&cmd(400, 1, i, tlbi(0, 0), 0));
    }
    // Pass stops at CONS = 4 (PROD 6): the first two doorbells are done.
    c.ingest(&q(1_000, 1, QueueEvent::Consumed { cons: 4, prod: 6 }));
    let s = c.snapshot(1_000);
    let v = find(&s, "vcmdq1");
    assert_eq!(v.batches, 1);
    assert_eq!(v.batch_latency_ns.count, 2);
    assert_eq!(v.batch_latency_ns.max, 900);
    assert_eq!(v.mean_batch_size, 4.0);
    // Occupancy: 2 of 16 entries.
    assert_eq!(v.occupancy, 2.0 / 16.0);
    for i in 4..6 {
        c.ingest(&cmd(1_100, 1, i, SYNC, 0));
    }
    c.ingest(&q(1_300, 1, QueueEvent::Consumed { cons: 6, prod: 6 }));
    let v = find(&c.snapshot(2_000), "vcmdq1").clone();
    assert_eq!(v.batches, 2);
    assert_eq!(v.batch_latency_ns.count, 3);
    assert_eq!(v.batch_latency_ns.max, 1_000);
    assert_eq!(v.mean_batch_size, 3.0);
}

#[test]
fn consumed_without_doorbell_and_repeated_doorbells_do_not_break_anything() {
    let mut c = collector();
    c.ingest(&q(10, 2, QueueEvent::Consumed { cons: 5, prod: 5 }));
    c.ingest(&q(20, 2, QueueEvent::Consumed { cons: 7, prod: 9 }));
    // A doorbell that adds nothing (PROD == CONS) opens no batch.
    c.ingest(&q(30, 2, QueueEvent::Doorbell { prod: 9, cons: 9 }));
    c.ingest(&q(40, 2, QueueEvent::Consumed { cons: 9, prod: 9 }));
    let v = find(&c.snapshot(100), "vcmdq2").clone();
    assert_eq!(v.batches, 0);
    assert_eq!(v.batch_latency_ns, Latency::default());
    // Then normal traffic still correlates.
    c.ingest(&q(50, 2, QueueEvent::Doorbell { prod: 11, cons: 9 }));
    c.ingest(&q(55, 2, QueueEvent::Doorbell { prod: 11, cons: 9 })); // same PROD written twice
    c.ingest(&q(80, 2, QueueEvent::Consumed { cons: 11, prod: 11 }));
    let v = find(&c.snapshot(100), "vcmdq2").clone();
    assert_eq!(v.batches, 1);
    assert_eq!(v.batch_latency_ns.count, 1);
    assert_eq!(v.batch_latency_ns.max, 30);
}

#[test]
fn pending_doorbells_are_bounded() {
    let mut t = BatchTracker::default();
    for i in 0..(PENDING_CAP as u64 + 10) {
        t.doorbell(i, i + 1, 0);
    }
    assert_eq!(t.pending(), PENDING_CAP);
    assert_eq!(t.abandoned, 10);
    let mut n = 0;
    let b = t.consumed(1_000, 5, 1_000, |_| n += 1);
    assert!(b.is_none(), "PROD 5 was abandoned, nothing matches");
    let b = t.consumed(1_000, 20, 1_000, |_| n += 1).unwrap();
    assert_eq!(b.doorbells, 10); // PRODs 11..=20
    assert_eq!(n, 10);
}

#[test]
fn errors_name_the_faulting_command_and_drive_the_state() {
    let mut c = collector();
    c.ingest(&q(
        0,
        5,
        QueueEvent::Enable {
            enabled: true,
            log2size: 4,
        },
    ));
    c.ingest(&q(
        1,
        5,
        QueueEvent::HwAlloc {
            log2size: 4,
            errno: None,
        },
    ));
    assert_eq!(find(&c.snapshot(1), "vcmdq5").state, QueueState::Hardware);
    c.ingest(&q(2, 5, QueueEvent::Doorbell { prod: 3, cons: 0 }));
    c.ingest(&cmd(3, 5, 0, tlbi(1, 1), 0));
    c.ingest(&cmd(4, 5, 1, 0x7f, 0xabc)); // illegal opcode
    c.ingest(&q(
        5,
        5,
        QueueEvent::Error {
            index: 1,
            cerror: Cerror::Ill.into(),
        },
    ));
    let s = c.snapshot(10);
    let v = find(&s, "vcmdq5");
    assert_eq!(v.state, QueueState::Error);
    assert_eq!(v.errors, 1);
    assert_eq!(v.errors_by_code["CERROR_ILL"], 1);
    let e = v.last_error.as_ref().unwrap();
    assert_eq!((e.code, e.name.as_str(), e.index), (1, "CERROR_ILL", 1));
    assert_eq!(e.command, Some([0x7f, 0xabc]));
    assert!(!e.acknowledged);
    assert_eq!(v.opcodes["UNKNOWN(0x7f)"], 1);
    assert!(
        s.log
            .iter()
            .any(|l| l.is_error && l.text == "vcmdq5 stopped: CERROR_ILL at CONS=0x1")
    );

    // An error at an index never seen as a command has no command.
    c.ingest(&q(6, 5, QueueEvent::ErrorAck { gerrorn: 1 }));
    let v = find(&c.snapshot(10), "vcmdq5").clone();
    assert_eq!(v.state, QueueState::Hardware);
    assert!(v.last_error.as_ref().unwrap().acknowledged);
    c.ingest(&q(
        7,
        5,
        QueueEvent::Error {
            index: 9,
            cerror: Cerror::AtcInvSync.into(),
        },
    ));
    let v = find(&c.snapshot(10), "vcmdq5").clone();
    let e = v.last_error.unwrap();
    assert_eq!((e.name.as_str(), e.command), ("CERROR_ATC_INV_SYNC", None));
    assert_eq!(v.errors, 2);

    c.ingest(&q(8, 5, QueueEvent::ErrorAck { gerrorn: 2 }));
    c.ingest(&q(9, 5, QueueEvent::HwFree));
    assert_eq!(find(&c.snapshot(10), "vcmdq5").state, QueueState::Emulated);
    c.ingest(&q(
        10,
        5,
        QueueEvent::Enable {
            enabled: false,
            log2size: 4,
        },
    ));
    assert_eq!(find(&c.snapshot(10), "vcmdq5").state, QueueState::Disabled);
    // PROD written to a disabled queue does not enable it; consumption (a trace that started
    // after the Enable) shows it is.
    c.ingest(&q(11, 5, QueueEvent::Doorbell { prod: 4, cons: 2 }));
    assert_eq!(find(&c.snapshot(11), "vcmdq5").state, QueueState::Disabled);
    c.ingest(&cmd(12, 5, 2, SYNC, 0));
    assert_eq!(find(&c.snapshot(12), "vcmdq5").state, QueueState::Emulated);
}

#[test]
fn main_cmdq_has_no_global_id_and_queue_ids_are_bounded() {
    let mut c = collector();
    c.set_queue_meta(7, Some(1), Some(2), Some(6));
    c.ingest(&cmd(1, MAIN_CMDQ, 0, SYNC, 0));
    for id in [MAX_QUEUES, 1_000, u32::MAX, 0x1_0000] {
        c.ingest(&cmd(2, id, 0, SYNC, 0));
        c.ingest(&q(2, id, QueueEvent::Doorbell { prod: 1, cons: 0 }));
    }
    c.set_queue_meta(9_999, Some(0), Some(0), Some(4)); // ignored
    let s = c.snapshot(10);
    assert_eq!(s.queues.len(), 2);
    let m = find(&s, "smmu-cmdq");
    assert_eq!((m.global_id, m.vintf, m.lvcmdq), (None, None, None));
    assert_eq!(m.syncs, 1);
    let v = find(&s, "vcmdq7");
    assert_eq!(
        (v.global_id, v.vintf, v.lvcmdq, v.log2size),
        (Some(7), Some(1), Some(2), 6)
    );
    assert_eq!(
        s.drops, 8,
        "events for untracked queue ids count as overflow drops"
    );
    let json = serde_json::to_value(&s).unwrap();
    let mq = &json["queues"][0];
    assert!(mq["global_id"].is_null() && mq["vintf"].is_null() && mq["lvcmdq"].is_null());
    for key in ["commands", "syncs", "errors", "commands_per_s", "opcodes"] {
        assert!(mq.get(key).is_some(), "missing {key}");
    }
    for key in ["p50", "p99", "max"] {
        assert!(mq["batch_latency_ns"].get(key).is_some(), "missing {key}");
    }
    for key in ["source", "events", "drops", "probes", "queues"] {
        assert!(json.get(key).is_some(), "missing {key}");
    }
}

#[test]
fn ioctls_mmio_and_lost_events_in_log_and_counts() {
    fn names(d: Device, off: u64) -> Option<String> {
        (d == Device::Cmdqv && off == 0x30000).then(|| "VINTF0.LVCMDQ0.CONS_INDX".to_string())
    }
    let mut cfg = CollectorConfig::new(Source::Ebpf, "qemu (pid 100)");
    cfg.reg_name = Some(names);
    let mut c = Collector::new(cfg);
    let io = |ts, cmd, ret, duration_ns| {
        ev(
            ts,
            Payload::Ioctl {
                fd: 5,
                cmd,
                ret,
                duration_ns,
                arg_len: 0,
                arg: [0; 48],
            },
        )
    };
    c.ingest(&io(1, 0x3b90, -25, 3_100));
    c.ingest(&io(2, 0x3b90, 0, 900));
    c.ingest(&io(3, 0x3b94, 0, 2_500_000));
    c.ingest(&io(3, 0x5401, 0, 10));
    let mmio = |offset, write| {
        ev(
            4,
            Payload::Mmio {
                device: Device::Cmdqv,
                offset,
                value: 0x12,
                size: 4,
                write,
            },
        )
    };
    c.ingest(&mmio(0x30000, false));
    c.ingest(&mmio(0x30008, true));
    c.ingest(&ev(5, Payload::Lost { count: 7 }));
    c.add_drops(3);
    let s = c.snapshot(10);
    assert_eq!(s.ioctls["IOMMU_VIOMMU_ALLOC"], (2, 1));
    assert_eq!(s.ioctls["IOMMU_HW_QUEUE_ALLOC"], (1, 0));
    assert_eq!(s.ioctls["IOCTL(0x5401)"], (1, 0));
    assert_eq!(s.drops, 10);
    assert_eq!(s.events, 6, "a Lost record is not an event");
    let texts: Vec<&str> = s.log.iter().map(|l| l.text.as_str()).collect();
    assert_eq!(
        texts,
        [
            "IOMMU_VIOMMU_ALLOC fd=5 -> ENOTTY (3.1 µs)",
            "IOMMU_VIOMMU_ALLOC fd=5 -> 0 (900 ns)",
            "IOMMU_HW_QUEUE_ALLOC fd=5 -> 0 (2.50 ms)",
            "ioctl(0x5401) fd=5 -> 0 (10 ns)",
            "R VINTF0.LVCMDQ0.CONS_INDX = 0x00000012",
            "W cmdqv+0x30008 = 0x00000012",
            "7 events lost",
        ]
    );
    assert!(s.log[0].is_error && !s.log[1].is_error && s.log[6].is_error);
    assert_eq!(s.log[0].kind, "ioctl");
    assert_eq!(s.log[4].kind, "mmio");
}

#[test]
fn memory_stays_bounded_under_a_flood() {
    let mut c = collector();
    for i in 0..50_000u64 {
        c.ingest(&ev(
            i * 10_000_000,
            Payload::Mmio {
                device: Device::Smmu,
                offset: i,
                value: i,
                size: 8,
                write: true,
            },
        ));
        c.ingest(&cmd(i * 10_000_000, (i % 300) as u32, i as u32, i, i));
        c.ingest(&q(
            i * 10_000_000,
            4,
            QueueEvent::Doorbell {
                prod: (i + 1) as u32,
                cons: 0,
            },
        ));
        c.ingest(&ev(
            i,
            Payload::Ioctl {
                fd: 1,
                cmd: i as u32,
                ret: 0,
                duration_ns: 1,
                arg_len: 0,
                arg: [0; 48],
            },
        ));
    }
    let s = c.snapshot(50_000 * 10_000_000);
    assert_eq!(s.log.len(), LOG_CAP - LOG_ERRORS_KEPT);
    assert!(s.queues.len() <= MAX_QUEUES as usize + 1);
    assert_eq!(s.ioctls.len(), IOCTL_CAP + 1);
    assert_eq!(s.ioctls["OTHER"].0, 50_000 - IOCTL_CAP as u64);
    for v in &s.queues {
        assert!(v.recent.len() <= RECENT_CAP);
        assert!(v.rate_history.len() <= RATE_HISTORY_CAP);
        assert!(v.latency_histogram.len() <= LATENCY_BUCKETS);
    }
    assert_eq!(find(&s, "vcmdq4").rate_history.len(), RATE_HISTORY_CAP);
}

#[test]
fn rate_history_counts_commands_per_second() {
    let mut c = collector();
    let s = 1_000_000_000u64;
    c.ingest(&cmd(0, 0, 0, SYNC, 0));
    c.ingest(&cmd(s / 2, 0, 1, SYNC, 0));
    c.ingest(&cmd(s + 1, 0, 2, SYNC, 0));
    c.ingest(&cmd(3 * s + 5, 0, 3, SYNC, 0));
    let v = find(&c.snapshot(5 * s), "vcmdq0").clone();
    // seconds 0..5 completed: 2, 1, 0, 1, 0
    assert_eq!(v.rate_history, vec![2, 1, 0, 1, 0]);
}

#[test]
fn intervals_restart_counters_but_keep_state() {
    let mut cfg = CollectorConfig::new(Source::InProcess, "t");
    cfg.intervals = true;
    let mut c = Collector::new(cfg);
    c.ingest(&q(
        0,
        1,
        QueueEvent::Enable {
            enabled: true,
            log2size: 8,
        },
    ));
    batch(&mut c, 1, 10, 0, 4, 100);
    let s1 = c.snapshot(1_000);
    assert_eq!(s1.interval, Some(1));
    assert_eq!(find(&s1, "vcmdq1").commands, 4);
    c.reset_interval(1_000);
    batch(&mut c, 1, 2_000, 4, 2, 50);
    let s2 = c.snapshot(3_000);
    assert_eq!(s2.interval, Some(2));
    assert_eq!(s2.elapsed_s, 2_000.0 / 1e9);
    let v = find(&s2, "vcmdq1");
    assert_eq!((v.commands, v.batches, v.batch_latency_ns.count), (2, 1, 1));
    assert_eq!(v.batch_latency_ns.max, 50);
    assert_eq!(v.state, QueueState::Emulated);
    assert_eq!(s2.events, 4);
}

#[test]
fn describe_decodes_common_opcodes() {
    let va = op::TLBI_NH_VA as u64 | 2 << 12 | 1 << 20 | 7 << 32 | 9 << 48;
    assert_eq!(
        describe(va, 0xffff_0000_0000_1000 | 1 << 10 | 1),
        "TLBI_NH_VA vmid=7 asid=9 va=0xffff000000001000 tg=4K num=2 scale=1 leaf"
    );
    assert_eq!(
        describe(op::TLBI_NH_ASID as u64 | 7 << 32 | 9 << 48, 0),
        "TLBI_NH_ASID vmid=7 asid=9"
    );
    assert_eq!(describe(SYNC | 2 << 12, 0), "CMD_SYNC cs=SEV");
    assert_eq!(
        describe(SYNC | 1 << 12, 0x8000_0040),
        "CMD_SYNC cs=IRQ msiaddr=0x80000040 msidata=0x0"
    );
    assert_eq!(
        describe(op::ATC_INV as u64 | 0x42 << 32, 0x5000 | 52),
        "ATC_INV sid=0x42 addr=0x5000 size=all"
    );
    assert_eq!(
        describe(op::ATC_INV as u64 | 1 << 11 | 3 << 12 | 0x42 << 32, 2),
        "ATC_INV sid=0x42 ssid=0x3 addr=0x0 size=2"
    );
    assert_eq!(
        describe(op::CFGI_STE as u64 | 0x10 << 32, 1),
        "CFGI_STE sid=0x10 leaf=1"
    );
    assert_eq!(
        describe(op::CFGI_CD as u64 | 5 << 12 | 0x10 << 32, 0),
        "CFGI_CD sid=0x10 ssid=0x5 leaf=0"
    );
    assert_eq!(describe(op::CFGI_STE_RANGE as u64, 31), "CFGI_ALL");
    assert_eq!(
        describe(0xee, 1),
        "UNKNOWN(0xee) w0=0x00000000000000ee w1=0x0000000000000001"
    );
}

#[test]
fn commands_are_logged_but_errors_outlive_a_flood_of_them() {
    let mut c = collector();
    c.ingest(&q(
        1,
        2,
        QueueEvent::Error {
            index: 4,
            cerror: Cerror::Abt.into(),
        },
    ));
    for i in 0..(2 * LOG_CAP as u64) {
        c.ingest(&cmd(10 + i, 2, i as u32, tlbi(1, 2), 0x3000));
        if i % 10 == 0 {
            // More errors than can be kept aside: the oldest ones go.
            c.ingest(&ev(10 + i, Payload::Lost { count: 1 }));
        }
    }
    let s = c.snapshot(10_000);
    assert!(s.log.len() <= LOG_CAP);
    let errors = s.log.iter().filter(|l| l.is_error).count();
    assert!(errors >= LOG_ERRORS_KEPT, "{errors}");
    assert!(
        s.log.windows(2).all(|w| w[0].ts_ns <= w[1].ts_ns),
        "log in time order"
    );
    let last = s.log.last().unwrap();
    assert_eq!(last.kind, "cmd");
    assert_eq!(
        last.text,
        format!(
            "vcmdq2 [{:#x}] TLBI_NH_VA vmid=1 asid=2 va=0x3000 tg=none num=0 scale=0",
            2 * LOG_CAP - 1
        )
    );

    // With fewer errors, the first one survives the flood.
    let mut c = collector();
    c.ingest(&q(
        1,
        2,
        QueueEvent::Error {
            index: 4,
            cerror: Cerror::Abt.into(),
        },
    ));
    for i in 0..(5 * LOG_CAP as u64) {
        c.ingest(&cmd(10 + i, 2, i as u32, SYNC, 0));
    }
    let s = c.snapshot(10_000);
    assert_eq!(s.log[0].text, "vcmdq2 stopped: CERROR_ABT at CONS=0x4");
    assert!(s.log[0].is_error);
    assert_eq!(s.log.len(), LOG_CAP - LOG_ERRORS_KEPT + 1);
}

mod analysis_common;

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Whatever arrives, in whatever order: no panic, every bound holds, the JSON serialises.
    #[test]
    fn any_event_sequence_keeps_the_collector_bounded(
        events in proptest::collection::vec(analysis_common::any_event(), 0..400),
        now in proptest::prelude::any::<u64>(),
    ) {
        let mut c = collector();
        for e in &events {
            c.ingest(e);
        }
        let s = c.snapshot(now);
        proptest::prop_assert!(s.log.len() <= LOG_CAP);
        proptest::prop_assert!(s.queues.len() <= MAX_QUEUES as usize + 1);
        proptest::prop_assert!(s.ioctls.len() <= IOCTL_CAP + 1);
        for q in &s.queues {
            proptest::prop_assert!(q.recent.len() <= RECENT_CAP);
            proptest::prop_assert!(q.rate_history.len() <= RATE_HISTORY_CAP);
            proptest::prop_assert!(q.latency_histogram.len() <= LATENCY_BUCKETS);
            proptest::prop_assert!((0.0..=1.0).contains(&q.occupancy));
            proptest::prop_assert!(q.errors_by_code.len() <= 128);
            proptest::prop_assert!(q.batch_latency_ns.p50 <= q.batch_latency_ns.max);
            proptest::prop_assert!(q.batch_latency_ns.p99 <= q.batch_latency_ns.max);
            proptest::prop_assert_eq!(q.opcodes.values().sum::<u64>(), q.commands);
        }
        serde_json::to_string(&s).unwrap();
        c.reset_interval(now);
        let s = c.snapshot(now);
        proptest::prop_assert!(s.queues.iter().all(|q| q.commands == 0 && q.batches == 0));
    }
}

#[test]
fn a_trace_that_starts_mid_run_infers_enabled_queues_from_consumption() {
    let mut c = collector();
    c.ingest(&q(1, 6, QueueEvent::Consumed { cons: 3, prod: 3 }));
    c.ingest(&q(1, 7, QueueEvent::Doorbell { prod: 3, cons: 0 }));
    let s = c.snapshot(2);
    assert_eq!(find(&s, "vcmdq6").state, QueueState::Emulated);
    assert_eq!(find(&s, "vcmdq7").state, QueueState::Disabled);
}

#[test]
fn map_and_handover_reports() {
    use cmdqv_core::event::VMM_QUEUE;
    let mut c = collector();
    let map = |alloc| QueueEvent::Map {
        vintf: 1,
        lvcmdq: 2,
        alloc,
    };
    c.ingest(&q(1, 9, map(true)));
    let report = QueueEvent::Handover {
        handovers: 3,
        view_mismatches: 4,
        commands_lost: 5,
    };
    c.ingest(&q(2, VMM_QUEUE, report));
    let s = c.snapshot(3);
    let v = find(&s, "vcmdq9");
    assert_eq!((v.vintf, v.lvcmdq), (Some(1), Some(2)));
    assert_eq!(
        s.handover,
        Some(Handover {
            handovers: 3,
            commands_lost: 5,
            view_mismatches: 4
        })
    );
    assert_eq!(s.queues.len(), 1, "the VMM-wide report is not a queue");
    assert_eq!(s.drops, 0);
    let last = s.log.last().unwrap();
    assert!(last.is_error, "lost commands make the report an error line");
    assert_eq!(
        last.text,
        "passthrough: 3 handovers, 5 commands lost, 4 view mismatches"
    );
    // Unmapping keeps the last mapping so the row still says where the queue came from.
    c.ingest(&q(4, 9, map(false)));
    let v = find(&c.snapshot(5), "vcmdq9").clone();
    assert_eq!((v.vintf, v.lvcmdq), (Some(1), Some(2)));
}

#[test]
fn an_error_never_blames_a_command_from_an_earlier_pass() {
    let mut c = collector();
    c.ingest(&q(
        0,
        1,
        QueueEvent::Enable {
            enabled: true,
            log2size: 1,
        },
    )); // 2 entries: index+wrap repeats every 4
    c.ingest(&q(1, 1, QueueEvent::Doorbell { prod: 1, cons: 0 }));
    c.ingest(&cmd(2, 1, 0, tlbi(1, 1), 0));
    c.ingest(&q(3, 1, QueueEvent::Consumed { cons: 1, prod: 1 }));
    // Three more commands (indices 1, 2, 3), then the next pass faults at index 0 again (four
    // entries later, same index and wrap bit). The command seen at index 0 two laps ago must
    // not be blamed.
    c.ingest(&q(4, 1, QueueEvent::Doorbell { prod: 4, cons: 1 }));
    for (i, idx) in [1u32, 2, 3].into_iter().enumerate() {
        c.ingest(&cmd(5 + i as u64, 1, idx, SYNC, 0));
    }
    c.ingest(&q(8, 1, QueueEvent::Consumed { cons: 4, prod: 4 }));
    c.ingest(&q(9, 1, QueueEvent::Doorbell { prod: 1, cons: 4 }));
    c.ingest(&q(
        10,
        1,
        QueueEvent::Error {
            index: 0,
            cerror: Cerror::Ill.into(),
        },
    )); // faults on index 0 (4 & 3), never reported
    let v = find(&c.snapshot(10), "vcmdq1").clone();
    assert_eq!(v.last_error.unwrap().command, None);
}

#[test]
fn iommu_tracepoint_events_get_log_lines_and_a_fault_is_an_error() {
    use cmdqv_core::event::IommuOp;
    let mut c = collector();
    let mut device = [0u8; 32];
    device[..12].copy_from_slice(b"0009:01:00.0");
    let iommu = |op, iova, paddr, size, unmapped, flags| Payload::Iommu {
        op,
        iova,
        paddr,
        size,
        unmapped,
        flags,
        device,
    };
    for (t, p) in [
        (
            1,
            iommu(IommuOp::Map, 0x1000_0000, 0x8_0000_0000, 0x20_0000, 0, 0),
        ),
        (
            2,
            iommu(IommuOp::Unmap, 0x1000_0000, 0, 0x20_0000, 0x20_0000, 0),
        ),
        (3, iommu(IommuOp::IoPageFault, 0xdead_0000, 0, 0, 0, 2)),
        (4, iommu(IommuOp::Attach, 0, 0, 0, 0, 0)),
    ] {
        c.ingest(&ev(t, p));
    }
    let s = c.snapshot(10);
    let lines: Vec<(&str, &str, bool)> = s
        .log
        .iter()
        .map(|l| (l.kind.as_str(), l.text.as_str(), l.is_error))
        .collect();
    assert_eq!(
        lines,
        [
            (
                "iommu",
                "iommu map iova=0x10000000 -> paddr=0x800000000 size=0x200000",
                false
            ),
            (
                "iommu",
                "iommu unmap iova=0x10000000 size=0x200000 unmapped=0x200000",
                false
            ),
            (
                "error",
                "iommu page fault 0009:01:00.0 iova=0xdead0000 flags=0x2",
                true
            ),
            ("iommu", "iommu attach 0009:01:00.0 to a domain", false),
        ]
    );
}

#[test]
fn vintf_state_sid_table_and_smmu_queue_size_come_from_trapped_mmio() {
    let mut c = Collector::new(CollectorConfig::new(cmdqv_core::event::Source::Replay, "t"));
    let mmio = |ts, device, offset, value, write| {
        ev(
            ts,
            Payload::Mmio {
                device,
                offset,
                value,
                size: 4,
                write,
            },
        )
    };
    // VINTF1 block at 0x1100: CONFIG with VMID 5 and ENABLE, read back with HYP_OWN masked.
    c.ingest(&mmio(
        1,
        Device::Cmdqv,
        0x1100,
        (1 << 17) | (5 << 1) | 1,
        true,
    ));
    c.ingest(&mmio(2, Device::Cmdqv, 0x1100, (5 << 1) | 1, false));
    // SID slot 2: vSID 0x33 → pSID 0x1234.
    c.ingest(&mmio(3, Device::Cmdqv, 0x1100 + 0x80 + 8, 0x1234, true));
    c.ingest(&mmio(
        4,
        Device::Cmdqv,
        0x1100 + 0x40 + 8,
        (0x33 << 1) | 1,
        true,
    ));
    c.ingest(&mmio(5, Device::Cmdqv, 0x1100 + 0x80 + 8, 0x1234, true));
    // A 64-bit read of LVCMDQ_ERR_MAP words 0..1.
    c.ingest(&ev(
        6,
        Payload::Mmio {
            device: Device::Cmdqv,
            offset: 0x11c0,
            value: 0x1_0000_0002,
            size: 8,
            write: false,
        },
    ));
    // SMMU CMDQ_BASE with LOG2SIZE 8.
    c.ingest(&mmio(7, Device::Smmu, 0x90, 0x4010_0000 | 8, true));
    let s = c.snapshot(10);
    assert_eq!(s.vintfs.len(), 2);
    let v = &s.vintfs[1];
    assert_eq!((v.index, v.enabled, v.hyp_own, v.vmid), (1, true, false, 5));
    assert_eq!(v.sids, vec![(2, 0x33, 0x1234)]);
    assert_eq!(v.lvcmdq_err_map, [0x1_0000_0002, 0]);
    assert!(!s.vintfs[0].enabled);
    let main = s
        .queues
        .iter()
        .find(|q| q.name == "smmu-cmdq")
        .expect("smmu queue row");
    assert_eq!(main.log2size, 8);
    // Disabling the VINTF and clearing the SID slot are reflected too.
    c.ingest(&mmio(8, Device::Cmdqv, 0x1100 + 0x40 + 8, 0, true));
    c.ingest(&mmio(9, Device::Cmdqv, 0x1100, 0, true));
    let s = c.snapshot(11);
    assert!(!s.vintfs[1].enabled);
    assert!(s.vintfs[1].sids.is_empty());
}

#[test]
fn the_process_log_lines_join_the_live_log_in_time_order_and_are_bounded() {
    let mut c = collector();
    batch(&mut c, 0, 1_000, 0, 2, 100);
    c.add_log_text(1_050, "WARN cmdqv_ebpf: read failed");
    c.add_log_text(5_000, "ERROR cmdqv_tui: gone");
    let s = c.snapshot(6_000);
    let ts: Vec<u64> = s.log.iter().map(|l| l.ts_ns).collect();
    assert!(ts.windows(2).all(|w| w[0] <= w[1]), "{ts:?}");
    let texts: Vec<&LogLine> = s.log.iter().filter(|l| l.kind == "log").collect();
    assert_eq!(texts.len(), 2);
    assert_eq!(texts[0].text, "WARN cmdqv_ebpf: read failed");
    assert!(!texts[0].is_error && texts[1].is_error);
    let before = s.log.iter().filter(|l| l.ts_ns < 1_050).count();
    assert!(before > 0, "events before the line stay before it");
    for i in 0..(LOG_TEXTS_KEPT as u64 + 10) {
        c.add_log_text(10_000 + i, format!("line {i}"));
    }
    let s = c.snapshot(20_000);
    let texts: Vec<&LogLine> = s.log.iter().filter(|l| l.kind == "log").collect();
    assert_eq!(texts.len(), LOG_TEXTS_KEPT);
    assert_eq!(
        texts.last().unwrap().text,
        format!("line {}", LOG_TEXTS_KEPT + 9)
    );
}
