//! The collector's host-queue rows (`cmdqv host`) from synthetic probe records, fed through the
//! one path every live source takes (encoded as the kernel writes them, `ingest_raw`): one row
//! per kernel command queue, named `main` for the SMMU's own, with per-opcode counts, batch
//! sizes, the latency the probes measured and the ring window, in the JSON the contract names.

use cmdqv_core::analysis::{
    Collector, CollectorConfig, LATENCY_CALL, LATENCY_POLL, MAX_HOST_QUEUES, QueueState, Summary,
};
use cmdqv_core::command::op;
use cmdqv_core::event::{Event, HostBatch, HostCommand, Payload, Source};
use cmdqv_core::probe_abi::encode;
use serde_json::Value;

const SMMU: u64 = 0xffff_0000_0415_7080;
const MAIN: u64 = SMMU + 0x40;
const VCMDQ: u64 = 0xffff_0000_0999_0000;

/// Feeds host records through the raw path, in the order the probes write them: a batch's
/// commands, then the batch.
struct Host {
    c: Collector,
    ts: u64,
}

impl Host {
    fn new() -> Self {
        let mut cfg = CollectorConfig::new(Source::Ebpf, "host (test)");
        cfg.start_ns = Some(1_000_000_000);
        Self {
            c: Collector::new(cfg),
            ts: 1_000_000_000,
        }
    }

    fn raw(&mut self, payload: Payload) {
        let ev = Event {
            ts_ns: self.ts,
            pid: 1,
            tid: 1,
            cpu: 0,
            payload,
        };
        let rec = encode(&ev).expect("a kernel record");
        self.c.ingest_raw(&rec).expect("decodes");
    }

    /// One `arm_smmu_cmdq_issue_cmdlist` call: `opcodes` at ring pointer `prod` onwards, a
    /// CMD_SYNC after them when `sync`, taking `ns`.
    fn batch(&mut self, b: HostBatch, opcodes: &[u8], ns: u64) {
        self.ts += 1_000;
        let mask = b.log2size.map_or(u32::MAX, |l| (2u32 << l) - 1);
        let mut words: Vec<(u8, bool)> = opcodes.iter().map(|&o| (o, false)).collect();
        if b.sync {
            words.push((op::CMD_SYNC, true));
        }
        for (i, (opcode, appended_sync)) in words.into_iter().enumerate() {
            let index = b.prod.map_or(u32::MAX, |p| p.wrapping_add(i as u32) & mask);
            self.raw(Payload::HostCommand(HostCommand {
                cmdq: b.cmdq,
                index,
                appended_sync,
                w0: u64::from(opcode),
                w1: 0x1000,
            }));
        }
        self.raw(Payload::HostBatch(HostBatch {
            n: opcodes.len() as u32,
            duration_ns: ns,
            ..b
        }));
    }

    fn summary(&self) -> (Summary, Value) {
        let s = self.c.snapshot(self.ts + 1_000_000_000);
        let v = serde_json::to_value(&s).unwrap();
        (s, v)
    }
}

fn batch(cmdq: u64, prod: u32, sync: bool, main: Option<bool>) -> HostBatch {
    HostBatch {
        cmdq,
        smmu: SMMU,
        prod: Some(prod),
        n: 0,
        sync,
        main,
        log2size: Some(16),
        duration_ns: 0,
        wait_ns: None,
        ret: 0,
        missed: 0,
    }
}

fn row<'a>(v: &'a Value, name: &str) -> &'a Value {
    let queues = v["queues"].as_array().unwrap();
    queues
        .iter()
        .find(|q| q["name"] == name)
        .unwrap_or_else(|| panic!("no row {name}: {v}"))
}

#[test]
fn one_row_per_kernel_queue_with_opcodes_batches_latency_and_window() {
    let mut h = Host::new();
    h.batch(
        batch(MAIN, 100, true, Some(true)),
        &[op::TLBI_NH_VA],
        20_000,
    );
    h.batch(
        batch(VCMDQ, 0, false, Some(false)),
        &[op::TLBI_NH_VA; 3],
        900,
    );
    let two = [op::CFGI_CD, op::TLBI_NH_VA];
    h.batch(batch(MAIN, 102, true, Some(true)), &two, 40_000);
    let (s, v) = h.summary();
    assert_eq!((s.events, s.drops), (11, 0));
    let main = row(&v, "main");
    assert_eq!(main["commands"], 5);
    assert_eq!(
        main["opcodes"],
        serde_json::json!({"CFGI_CD": 1, "CMD_SYNC": 2, "TLBI_NH_VA": 2})
    );
    assert_eq!(
        (main["batches"].as_u64(), main["syncs"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(main["mean_batch_size"], 2.5);
    assert_eq!(main["batch_latency_ns"]["count"], 2);
    assert_eq!(main["batch_latency_ns"]["max"], 40_000);
    assert_eq!(main["global_id"], Value::Null);
    let host = &main["host"];
    assert_eq!(host["cmdq"], format!("{MAIN:#x}"));
    assert_eq!(host["main"], true);
    assert_eq!(host["latency"], LATENCY_CALL);
    assert_eq!(host["batch_sizes"], serde_json::json!({"2": 1, "3": 1}));
    assert_eq!(host["sync_batches"], 2);
    assert_eq!(
        host["window"],
        serde_json::json!({"log2size": 16, "first": 100, "end": 105, "slots": 5,
                           "batches": 2, "unplaced": 0, "contiguous": true})
    );
    let q = s.queues.iter().find(|q| q.name == "main").unwrap();
    assert_eq!(q.state, QueueState::Hardware);
    assert_eq!(
        q.recent.last().map(|r| (r.index, r.text.as_str())),
        Some((104, "CMD_SYNC cs=NONE"))
    );
    let other = row(&v, &format!("cmdq@{VCMDQ:x}"));
    assert_eq!(other["opcodes"], serde_json::json!({"TLBI_NH_VA": 3}));
    assert_eq!(
        other["batch_latency_ns"]["count"], 0,
        "no CMD_SYNC, no wait"
    );
    assert_eq!(other["host"]["main"], false);
    assert_eq!(other["host"]["window"]["end"], 3);
}

#[test]
fn a_missed_batch_leaves_a_gap_and_missed_commands_are_drops() {
    let mut h = Host::new();
    h.batch(batch(MAIN, 0, true, Some(true)), &[op::TLBI_NH_VA], 1);
    // Slots 2 and 3 went to a batch no probe saw.
    h.batch(batch(MAIN, 4, true, Some(true)), &[op::TLBI_NH_VA], 1);
    let lossy = HostBatch {
        missed: 3,
        ..batch(MAIN, 6, true, Some(true))
    };
    h.batch(lossy, &[op::TLBI_NH_VA], 1);
    let (s, v) = h.summary();
    assert_eq!(s.drops, 3);
    let w = &row(&v, "main")["host"]["window"];
    assert_eq!(
        (w["first"].as_u64(), w["end"].as_u64(), w["slots"].as_u64()),
        (Some(0), Some(8), Some(6))
    );
    assert_eq!(w["contiguous"], false);
    assert_eq!(row(&v, "main")["host"]["missed"], 3);
}

#[test]
fn a_timed_wait_is_the_latency_and_the_row_says_so() {
    let mut h = Host::new();
    let timed = HostBatch {
        wait_ns: Some(7_000),
        ..batch(MAIN, 0, true, Some(true))
    };
    h.batch(timed, &[op::TLBI_NH_VA], 50_000);
    let (_, v) = h.summary();
    let main = row(&v, "main");
    assert_eq!(main["host"]["latency"], LATENCY_POLL);
    assert_eq!(main["batch_latency_ns"]["max"], 7_000);
}

#[test]
fn without_btf_offsets_queues_are_named_by_address_and_have_no_window() {
    let mut h = Host::new();
    let blind = HostBatch {
        log2size: None,
        ..batch(MAIN, 0, true, None)
    };
    h.batch(blind, &[op::TLBI_NH_VA], 1);
    let (_, v) = h.summary();
    let r = row(&v, &format!("cmdq@{MAIN:x}"));
    assert_eq!(r["host"]["main"], Value::Null);
    assert_eq!(r["host"]["window"], Value::Null);
    assert_eq!(r["opcodes"]["TLBI_NH_VA"], 1);
}

#[test]
fn several_smmus_name_their_main_queues_by_smmu() {
    let mut h = Host::new();
    let other_smmu = SMMU + 0x10_0000;
    h.batch(batch(MAIN, 0, true, Some(true)), &[], 1);
    let second = HostBatch {
        smmu: other_smmu,
        ..batch(other_smmu + 0x40, 0, true, Some(true))
    };
    h.batch(second, &[], 1);
    let (_, v) = h.summary();
    row(&v, &format!("main@{SMMU:x}"));
    row(&v, &format!("main@{other_smmu:x}"));
}

#[test]
fn queues_beyond_the_bound_are_counted_as_drops_and_intervals_restart_the_window() {
    let mut h = Host::new();
    for i in 0..=MAX_HOST_QUEUES as u64 {
        h.batch(
            batch(VCMDQ + i * 0x100, 0, false, Some(false)),
            &[op::TLBI_NH_VA],
            1,
        );
    }
    let (s, _) = h.summary();
    assert_eq!(s.queues.len(), MAX_HOST_QUEUES);
    assert_eq!(
        s.drops, 2,
        "the command and the batch of the queue past the bound"
    );
    h.c.reset_interval(h.ts);
    h.batch(batch(VCMDQ, 40, false, Some(false)), &[op::TLBI_NH_VA], 1);
    let (_, v) = h.summary();
    let w = &row(&v, &format!("cmdq@{VCMDQ:x}"))["host"]["window"];
    assert_eq!(
        (w["first"].as_u64(), w["slots"].as_u64()),
        (Some(40), Some(1))
    );
}
