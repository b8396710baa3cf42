//! A realistic, fixed [`Summary`] for the TUI tests, snapshots, bench and demo: the SMMU's own
//! queue plus five VCMDQs (one hardware-backed, one stopped on CERROR_ILL, one disabled), two
//! VINTFs, a log with errors and probes in every status. Nothing in it depends on the clock.
//!
//! Included by other test crates and the bench with `#[path = "tui_fixture.rs"] mod tui_fixture;`.
#![allow(dead_code)]

use std::collections::BTreeMap;

use cmdqv_core::analysis::{
    Handover, Latency, LogLine, ProbeStatus, QueueError, QueueState, QueueSummary, RecentCommand,
    Summary, VintfSummary,
};
use cmdqv_core::event::Source;

fn latency(p50: u64, p99: u64, max: u64, count: u64) -> Latency {
    Latency {
        count,
        p50,
        p99,
        max,
        mean: (p50 as f64) * 1.15,
    }
}

/// Log2 buckets around a typical latency (upper bound ns, count).
fn histogram(center_log2: u32, total: u64) -> Vec<(u64, u64)> {
    (8..24u32)
        .map(|b| {
            let d = (b as i64 - center_log2 as i64).unsigned_abs();
            let n = total >> (d * 2).min(63);
            (1u64 << b, if d > 4 { 0 } else { n })
        })
        .collect()
}

fn recent(base_index: u32, vmid: u16, n: u32) -> Vec<RecentCommand> {
    (0..n)
        .map(|i| {
            let index = base_index + i;
            if i % 4 == 3 {
                RecentCommand {
                    ts_ns: 80_000_000_000 + u64::from(index) * 1_000,
                    index,
                    w0: 0x46,
                    w1: 0,
                    text: "CMD_SYNC cs=sev msi=0".into(),
                }
            } else {
                RecentCommand {
                    ts_ns: 80_000_000_000 + u64::from(index) * 1_000,
                    index,
                    w0: 0x12 | (u64::from(vmid) << 32),
                    w1: 0x1000 * u64::from(i + 1),
                    text: format!(
                        "TLBI_NH_VA vmid={vmid} asid=3 va={:#x} tg=4K num=0 scale=0",
                        0x1000 * (i + 1)
                    ),
                }
            }
        })
        .collect()
}

fn opcodes(tlbi: u64, sync: u64) -> BTreeMap<String, u64> {
    BTreeMap::from([
        ("TLBI_NH_VA".to_string(), tlbi),
        ("CMD_SYNC".to_string(), sync),
        ("TLBI_NH_ASID".to_string(), tlbi / 50),
    ])
}

fn rates(base: u64, n: usize) -> Vec<u64> {
    (0..n as u64)
        .map(|i| base + (i * 37 % 11) * base / 20 + if i % 16 == 7 { base / 2 } else { 0 })
        .collect()
}

/// A hardware-backed or emulated VCMDQ with traffic.
fn vcmdq(global: u32, vintf: u32, lvcmdq: u32, state: QueueState, cmd_rate: f64) -> QueueSummary {
    let commands = (cmd_rate * 83.0) as u64;
    let syncs = commands / 4;
    let (p50, p99, max) = match state {
        QueueState::Hardware => (5_300, 12_800, 41_000),
        _ => (35_700, 88_000, 310_000),
    };
    QueueSummary {
        name: format!("vcmdq{global}"),
        global_id: Some(global),
        vintf: Some(vintf),
        lvcmdq: Some(lvcmdq),
        state,
        log2size: 8,
        prod: 0x100 | (global * 7 + 0x12),
        cons: 0x100 | (global * 7 + 0x10),
        occupancy: 0.0078,
        commands,
        syncs,
        errors: 0,
        errors_by_code: BTreeMap::new(),
        batches: syncs,
        commands_per_s: cmd_rate,
        syncs_per_s: cmd_rate / 4.0,
        mean_batch_size: 4.0,
        batch_latency_ns: latency(p50, p99, max, syncs),
        phases_ns: BTreeMap::new(),
        opcodes: opcodes(commands - syncs, syncs),
        last_error: None,
        rate_history: rates(cmd_rate as u64, 120),
        latency_histogram: histogram(
            if state == QueueState::Hardware {
                12
            } else {
                15
            },
            syncs,
        ),
        recent: recent(0x120 + global * 16, 1 + vintf as u16, 12),
        host: None,
    }
}

/// The fixture: a steady unmap workload on the sim target, through the in-process source.
pub fn summary() -> Summary {
    let smmu = QueueSummary {
        name: "smmu-cmdq".into(),
        global_id: None,
        vintf: None,
        lvcmdq: None,
        state: QueueState::Emulated,
        log2size: 10,
        prod: 0x4a2,
        cons: 0x4a0,
        occupancy: 0.002,
        commands: 20_480,
        syncs: 5_120,
        errors: 0,
        errors_by_code: BTreeMap::new(),
        batches: 5_120,
        commands_per_s: 246.7,
        syncs_per_s: 61.7,
        mean_batch_size: 4.0,
        batch_latency_ns: latency(35_700, 91_000, 402_000, 5_120),
        phases_ns: BTreeMap::new(),
        opcodes: opcodes(15_360, 5_120),
        last_error: None,
        rate_history: rates(246, 120),
        latency_histogram: histogram(15, 5_120),
        recent: recent(0x490, 0, 16),
        host: None,
    };
    let q0 = vcmdq(0, 0, 0, QueueState::Hardware, 48_210.0);
    let mut q1 = vcmdq(1, 0, 1, QueueState::Error, 0.0);
    q1.commands = 1_337;
    q1.syncs = 334;
    q1.batches = 334;
    q1.batch_latency_ns = latency(36_100, 97_000, 1_250_000, 334);
    q1.latency_histogram = histogram(15, 334);
    q1.opcodes = opcodes(1_003, 334);
    q1.errors = 1;
    q1.errors_by_code = BTreeMap::from([("CERROR_ILL".to_string(), 1)]);
    q1.rate_history = rates(1_200, 40)
        .into_iter()
        .chain(std::iter::repeat_n(0, 20))
        .collect();
    let bad_index = 0x12a;
    q1.recent = recent(0x120, 1, 10);
    q1.recent.push(RecentCommand {
        ts_ns: 80_625_000_001,
        index: bad_index,
        w0: 0x0000_0000_0000_00ff,
        w1: 0xdead_beef,
        text: "UNKNOWN opcode=0xff w0=0x00000000000000ff".into(),
    });
    q1.last_error = Some(QueueError {
        ts_ns: 80_625_000_001,
        code: 1,
        name: "CERROR_ILL".into(),
        index: bad_index,
        command: Some([0xff, 0xdead_beef]),
        acknowledged: false,
    });
    q1.occupancy = 0.35;
    q1.prod = 0x15a;
    q1.cons = 0x0100_012a;
    let q2 = vcmdq(2, 0, 2, QueueState::Emulated, 910.5);
    let q3 = vcmdq(3, 1, 0, QueueState::Hardware, 1_204_000.0);
    let mut q4 = vcmdq(4, 1, 1, QueueState::Disabled, 0.0);
    q4.commands = 0;
    q4.syncs = 0;
    q4.batches = 0;
    q4.batch_latency_ns = Latency::default();
    q4.opcodes.clear();
    q4.rate_history.clear();
    q4.latency_histogram.clear();
    q4.recent.clear();
    q4.occupancy = 0.0;
    q4.prod = 0;
    q4.cons = 0;

    let mut log = Vec::new();
    for i in 0..40u64 {
        let ts_ns = 80_000_000_000 + i * 31_250_000;
        let (kind, text, is_error) = match i % 8 {
            0 => (
                "mmio",
                format!("W VINTF0.LVCMDQ0.PROD_INDX = {:#010x}", 0x112 + i),
                false,
            ),
            1 => (
                "cmd",
                format!("vcmdq0 TLBI_NH_VA vmid=1 asid=3 va={:#x}", 0x1000 * i),
                false,
            ),
            2 => ("cmd", "vcmdq0 CMD_SYNC cs=sev".to_string(), false),
            3 => (
                "queue",
                format!("vcmdq0 CONS -> {:#x} (batch 4, 5.3µs)", 0x112 + i),
                false,
            ),
            4 => (
                "kvm",
                "kvm_mmio write gpa=0x00000000092a0000 len=4".to_string(),
                false,
            ),
            5 => (
                "ioctl",
                "IOMMU_HWPT_INVALIDATE -> 0 2.1µs".to_string(),
                false,
            ),
            6 => (
                "mmio",
                "R VCMDQ1.CONS_INDX -> 0x0100012a".to_string(),
                false,
            ),
            _ => (
                "mmio",
                format!("W VCMDQ2.PROD_INDX = {:#010x}", 0x40 + i),
                false,
            ),
        };
        log.push(LogLine {
            ts_ns,
            pid: 4242,
            kind: kind.into(),
            text,
            is_error,
        });
        if i == 20 {
            log.push(LogLine {
                ts_ns: ts_ns + 1,
                pid: 4242,
                kind: "error".into(),
                text: "vcmdq1 CERROR_ILL at CONS 0x12a: UNKNOWN opcode=0xff".into(),
                is_error: true,
            });
        }
        if i == 30 {
            log.push(LogLine {
                ts_ns: ts_ns + 1,
                pid: 4242,
                kind: "ioctl".into(),
                text: "IOMMU_HW_QUEUE_ALLOC -> ENOTTY 3.1µs".into(),
                is_error: true,
            });
        }
    }

    let probe = |name: &str, status: &str, reason: &str| ProbeStatus {
        name: name.into(),
        status: status.into(),
        reason: reason.into(),
    };
    Summary {
        source: Source::InProcess,
        target: "sim:steady-unmap (pid 4242)".into(),
        elapsed_s: 83.4,
        events: 1_234_567,
        events_per_s: 45_678.9,
        drops: 0,
        probes: vec![
            probe(
                "uprobe:cmdqv_vmm_mmio",
                "in-process",
                "sim reports its own MMIO events",
            ),
            probe(
                "tracepoint:syscalls/sys_enter_ioctl",
                "permission-denied",
                "needs CAP_BPF and CAP_PERFMON; run with sudo",
            ),
            probe(
                "kprobe:tegra241_vcmdq_hw_init",
                "symbol-not-found",
                "kernel built without CONFIG_TEGRA241_CMDQV",
            ),
            probe(
                "fentry:iommufd_hw_queue_alloc_ioctl",
                "unsupported",
                "kernel lacks BTF for iommufd",
            ),
            probe("tracepoint:kvm/kvm_mmio", "attached", ""),
            probe(
                "uprobe:tegra241_cmdqv_write_vintf",
                "not-requested",
                "qemu target not selected",
            ),
            probe(
                "uprobe:cmdqv_host_queue_consume",
                "failed",
                "perf_event_open: EBUSY",
            ),
        ],
        queues: vec![q2, smmu, q0, q4, q1, q3],
        vintfs: vec![
            VintfSummary {
                index: 0,
                enabled: true,
                hyp_own: false,
                vmid: 1,
                sids: vec![(0, 0x10, 0x8010), (1, 0x11, 0x8011)],
                lvcmdq_err_map: [0b10, 0],
            },
            VintfSummary {
                index: 1,
                enabled: true,
                hyp_own: true,
                vmid: 2,
                sids: vec![(0, 0x20, 0x9020)],
                lvcmdq_err_map: [0, 0],
            },
        ],
        ioctls: BTreeMap::from([
            ("IOMMU_HW_QUEUE_ALLOC".to_string(), (3, 1)),
            ("IOMMU_HWPT_INVALIDATE".to_string(), (5_120, 0)),
            ("IOMMU_VIOMMU_ALLOC".to_string(), (1, 0)),
        ]),
        handover: Some(Handover {
            handovers: 2,
            commands_lost: 0,
            view_mismatches: 0,
        }),
        interval: None,
        log,
        notes: vec![
            "events come from the in-process fallback, not from eBPF probes (no CAP_BPF)".into(),
        ],
        sim: None,
    }
}

/// `n` VCMDQs plus the SMMU queue, for load tests and the bench.
pub fn many_queues(n: u32) -> Summary {
    let mut s = summary();
    let smmu = s.queues.iter().find(|q| q.global_id.is_none()).cloned();
    s.queues = smmu.into_iter().collect();
    for i in 0..n {
        let state = match i % 5 {
            0 | 1 => QueueState::Hardware,
            2 => QueueState::Emulated,
            3 => QueueState::Disabled,
            _ => QueueState::Hardware,
        };
        let mut q = vcmdq(i, i / 2, i % 2, state, 1_000.0 + f64::from(i) * 731.0);
        if i % 37 == 5 {
            q.state = QueueState::Error;
            q.errors = 1;
        }
        s.queues.push(q);
    }
    s
}

#[test]
fn fixture_is_realistic() {
    let s = summary();
    assert_eq!(s.queues.len(), 6);
    assert!(
        s.queues
            .iter()
            .any(|q| q.name == "smmu-cmdq" && q.global_id.is_none())
    );
    assert!(s.queues.iter().any(|q| q.state == QueueState::Hardware));
    assert!(
        s.queues
            .iter()
            .any(|q| q.state == QueueState::Error && q.last_error.is_some())
    );
    assert!(s.log.iter().any(|l| l.is_error));
    assert_eq!(many_queues(128).queues.len(), 129);
}
