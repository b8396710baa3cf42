//! The collector, recorder and exporter on what the sim VMM really emits: the in-process
//! fallback's framed ABI records, decoded by `probe_abi` exactly as the live path does. The
//! assertions hold for any run length (no timing): they check that the sim's events correlate.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cmdqv_core::analysis::{Collector, CollectorConfig, QueueState, Summary};
use cmdqv_core::event::{Event, Payload, QueueEvent, Source};
use cmdqv_core::probe_abi;
use cmdqv_core::record::{TraceMeta, TraceReader, TraceWriter, replay_reader};
use cmdqv_core::sim::{
    emit::{Emitter, PipeSink},
    scenario, vmm,
};

#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Runs a scenario with the in-process pipe and returns every decoded event.
fn sim_events(name: &str, ms: u64) -> (Vec<Event>, vmm::RunStats) {
    let sc = scenario(name).unwrap();
    let out = Shared::default();
    let (sink, writer) = PipeSink::spawn(out.clone());
    let v = vmm::Vmm::new(&sc, Emitter::with_pipe(&sink)).unwrap();
    let st = vmm::run(&v, &sc, Duration::from_millis(ms)).expect("bring-up");
    drop(v);
    drop(sink);
    writer.join().unwrap();
    let bytes = out.0.lock().unwrap().clone();
    let mut events = Vec::new();
    let mut at = 0;
    while at + 4 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        let rec = &bytes[at + 4..at + 4 + len];
        events.push(probe_abi::decode(rec).expect("the sim emits valid ABI records"));
        at += 4 + len;
    }
    assert_eq!(at, bytes.len(), "framing consumed every byte");
    (events, st)
}

fn summarise(events: &[Event]) -> (Summary, Collector) {
    let mut c = Collector::new(CollectorConfig::new(Source::InProcess, "sim"));
    for e in events {
        c.ingest(e);
    }
    (c.snapshot(c.last_ts()), c)
}

#[test]
fn steady_unmap_correlates_every_batch() {
    let (events, st) = sim_events("steady-unmap", 400);
    let (s, _) = summarise(&events);
    assert_eq!(s.drops, 0);
    let commands: u64 = s.queues.iter().map(|q| q.commands).sum();
    // Every submitted command is consumed exactly once, plus the bring-up flush CMD_SYNCs.
    assert_eq!(commands, st.submitted + st.bringup_commands, "{st:?}");
    let vcmdqs: Vec<_> = s
        .queues
        .iter()
        .filter(|q| q.global_id.is_some() && q.commands > 0)
        .collect();
    assert!(!vcmdqs.is_empty());
    for q in &vcmdqs {
        assert!(q.batches > 0, "{}: no batch correlated", q.name);
        assert!(
            q.syncs > 0 && q.opcodes.contains_key("CMD_SYNC"),
            "{}",
            q.name
        );
        assert!(q.batch_latency_ns.count >= q.batches);
        assert!(q.batch_latency_ns.p50 <= q.batch_latency_ns.max);
        assert!(q.mean_batch_size >= 1.0);
        assert!(
            q.vintf.is_some() && q.lvcmdq.is_some(),
            "{}: mapping not seen",
            q.name
        );
        assert!(q.log2size > 0, "{}: ring size not seen", q.name);
        assert_ne!(q.state, QueueState::Error);
    }
    let batches: u64 = s.queues.iter().map(|q| q.batches).sum();
    assert!(
        batches > 0 && batches <= st.batches + st.bringup_commands,
        "{batches} {st:?}"
    );
}

#[test]
fn error_storm_names_the_faulting_command() {
    let (events, st) = sim_events("error-storm", 400);
    let (s, _) = summarise(&events);
    let errors: u64 = s.queues.iter().map(|q| q.errors).sum();
    let emitted = events
        .iter()
        .filter(|e| {
            matches!(
                e.payload,
                Payload::Queue {
                    event: QueueEvent::Error { .. },
                    ..
                }
            )
        })
        .count() as u64;
    assert!(st.errors_recovered > 0);
    // Every Error event counts once. (The guest may recover more often than the VMM reports an
    // Error event, e.g. by acknowledging a left-over error at deinit.)
    assert!(emitted > 0);
    assert_eq!(errors, emitted, "{st:?}");
    assert!(errors <= st.errors_recovered, "{st:?}");
    let with_error: Vec<_> = s
        .queues
        .iter()
        .filter_map(|q| q.last_error.as_ref())
        .collect();
    assert!(!with_error.is_empty());
    for e in with_error {
        assert!(e.name.starts_with("CERROR_"), "{e:?}");
        // The engine reports the command a queue stops on: the illegal entry the scenario plants.
        assert_eq!(e.command, Some([0, 0]), "{e:?}");
    }
}

#[test]
fn recorded_sim_run_replays_to_the_live_summary() {
    let (events, _) = sim_events("handover", 300);
    let (live, c) = summarise(&events);
    let mut w = TraceWriter::new(Vec::new(), &TraceMeta::new(Source::InProcess, "sim")).unwrap();
    for e in &events {
        w.write(e).unwrap();
    }
    let bytes = w.finish().unwrap();
    let (replayed, info) = replay_reader(TraceReader::new(&bytes[..]).unwrap(), None).unwrap();
    assert_eq!(info.events, events.len() as u64);
    assert_eq!(replayed.queues, live.queues);
    assert_eq!(replayed.handover, live.handover);
    assert_eq!(replayed.events, live.events);
    assert!(live.handover.is_some_and(|h| h.handovers > 0));
    assert!(c.last_ts() > 0);

    let mut out = Vec::new();
    cmdqv_core::export::export_perfetto(TraceReader::new(&bytes[..]).unwrap(), &mut out).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let slices = v["traceEvents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["cat"] == "batch")
        .count() as u64;
    let batches: u64 = live.queues.iter().map(|q| q.batches).sum();
    assert_eq!(
        slices, batches,
        "export and collector correlate the same batches"
    );
}
