//! Perfetto export: the output is valid trace-event JSON with the tracks and slices we promise.

mod analysis_common;

use analysis_common::*;
use cmdqv_core::event::{MAIN_CMDQ, Payload, QueueEvent, Source};
use cmdqv_core::export::*;
use cmdqv_core::record::{TraceMeta, TraceReader, TraceWriter};
use serde_json::Value;

fn export(events: &[cmdqv_core::event::Event], pid: Option<u32>) -> (Value, ExportInfo) {
    let mut meta = TraceMeta::new(Source::InProcess, "sim:test");
    meta.pid = pid;
    let mut w = TraceWriter::new(Vec::new(), &meta).unwrap();
    for e in events {
        w.write(e).unwrap();
    }
    let bytes = w.finish().unwrap();
    let mut out = Vec::new();
    let info = export_perfetto(TraceReader::new(&bytes[..]).unwrap(), &mut out).unwrap();
    (
        serde_json::from_slice(&out).expect("export is valid JSON"),
        info,
    )
}

fn events_of<'a>(v: &'a Value, ph: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    v["traceEvents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(move |e| e["ph"] == ph)
}

#[test]
fn queues_get_named_tracks_batches_become_slices() {
    let events = workload(30);
    let (v, info) = export(&events, Some(777));
    let all = v["traceEvents"].as_array().unwrap();
    assert!(
        all.iter().all(|e| e["pid"] == 777),
        "every event under the VMM pid"
    );
    let names: Vec<(u64, &str)> = events_of(&v, "M")
        .filter(|e| e["name"] == "thread_name")
        .map(|e| {
            (
                e["tid"].as_u64().unwrap(),
                e["args"]["name"].as_str().unwrap(),
            )
        })
        .collect();
    assert!(names.contains(&(u64::from(queue_tid(3)), "vcmdq3")));
    assert!(names.contains(&(u64::from(queue_tid(0)), "vcmdq0")));
    assert!(names.contains(&(u64::from(TID_SMMU_CMDQ), "smmu-cmdq")));
    assert!(names.contains(&(u64::from(TID_IOMMUFD), "iommufd")));
    assert_eq!(names.len(), 4, "one name per track: {names:?}");

    let batches: Vec<&Value> = events_of(&v, "X").filter(|e| e["cat"] == "batch").collect();
    assert_eq!(batches.len(), 30);
    assert_eq!(info.slices, 30 + 2);
    for b in &batches {
        let n = b["args"]["commands"].as_u64().unwrap();
        assert!((8..=64).contains(&n), "{b}");
        let ops: u64 = b["args"]["opcodes"]
            .as_object()
            .unwrap()
            .values()
            .map(|x| x.as_u64().unwrap())
            .sum();
        assert_eq!(ops, n, "opcode counts add up to the batch size: {b}");
        assert_eq!(b["args"]["opcodes"]["CMD_SYNC"], 1);
        assert!(b["dur"].as_f64().unwrap() > 0.0 && b["ts"].as_f64().unwrap() >= 0.0);
    }
    // The first batch on vcmdq0: 8 commands, doorbell → consumed spans 8*7 + 200 ns.
    let first = batches.iter().find(|b| b["tid"] == queue_tid(0)).unwrap();
    assert_eq!(first["args"]["commands"], 8);
    assert!(
        (first["dur"].as_f64().unwrap() - 0.256).abs() < 1e-9,
        "{first}"
    );

    let ioctls: Vec<&Value> = events_of(&v, "X").filter(|e| e["cat"] == "ioctl").collect();
    assert_eq!(ioctls.len(), 2);
    assert_eq!(ioctls[1]["name"], "IOMMU_HW_QUEUE_ALLOC");
    assert_eq!(ioctls[1]["args"]["result"], "ENOTTY");
    assert_eq!(ioctls[1]["dur"], 3.1);
    assert!(ioctls.iter().all(|e| e["tid"] == TID_IOMMUFD));

    let errors: Vec<&Value> = events_of(&v, "i").filter(|e| e["cat"] == "error").collect();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0]["name"], "CERROR_ILL");
    assert_eq!(errors[0]["args"]["command"], "CMD_SYNC cs=NONE");
}

#[test]
fn pid_defaults_to_the_events_and_untracked_queues_are_skipped() {
    let events = vec![
        ev(
            10,
            Payload::Queue {
                queue: MAIN_CMDQ,
                event: QueueEvent::Doorbell { prod: 1, cons: 0 },
            },
        ),
        ev(
            11,
            Payload::Command {
                queue: MAIN_CMDQ,
                index: 0,
                w0: 0x46,
                w1: 0,
            },
        ),
        ev(
            20,
            Payload::Queue {
                queue: MAIN_CMDQ,
                event: QueueEvent::Consumed { cons: 1, prod: 1 },
            },
        ),
        ev(
            21,
            Payload::Command {
                queue: 70_000,
                index: 0,
                w0: 0x46,
                w1: 0,
            },
        ),
        ev(
            22,
            Payload::Queue {
                queue: 2,
                event: QueueEvent::Consumed { cons: 5, prod: 5 },
            },
        ),
    ];
    let (v, info) = export(&events, None);
    assert!(
        v["traceEvents"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["pid"] == PID)
    );
    assert_eq!(info.skipped, 1);
    assert_eq!(info.slices, 1);
    let s = events_of(&v, "X").next().unwrap();
    assert_eq!(
        (s["ts"].as_f64().unwrap(), s["dur"].as_f64().unwrap()),
        (0.0, 0.01)
    );
    assert_eq!(v["metadata"]["truncated"], false);
}

#[test]
fn an_empty_trace_exports_an_empty_event_list() {
    let (v, info) = export(&[], None);
    assert_eq!(v["traceEvents"].as_array().unwrap().len(), 0);
    assert_eq!(info, ExportInfo::default());
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Any events export to valid JSON whose slices have non-negative durations.
    #[test]
    fn any_events_export_to_valid_json(
        events in proptest::collection::vec(any_event(), 0..200),
    ) {
        let (v, info) = export(&events, None);
        let all = v["traceEvents"].as_array().unwrap();
        proptest::prop_assert!(all.iter().all(|e| e["ph"].is_string() && e["pid"].is_u64()));
        let slices = events_of(&v, "X").count() as u64;
        proptest::prop_assert_eq!(slices, info.slices);
        proptest::prop_assert!(events_of(&v, "X").all(|e| e["dur"].as_f64().unwrap() >= 0.0));
    }
}

#[test]
fn a_truncated_trace_still_exports_and_says_so() {
    let mut w = TraceWriter::new(Vec::new(), &TraceMeta::new(Source::Ebpf, "t")).unwrap();
    for e in workload(6) {
        w.write(&e).unwrap();
    }
    let bytes = w.finish().unwrap();
    let cut = &bytes[..bytes.len() - 3];
    let mut out = Vec::new();
    let info = export_perfetto(TraceReader::new(cut).unwrap(), &mut out).unwrap();
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["metadata"]["truncated"], true);
    assert!(info.truncated.is_some());
    // The last record (HwFree) was cut; every batch before it is there.
    assert_eq!(
        events_of(&v, "X").filter(|e| e["cat"] == "batch").count(),
        6
    );
}

#[test]
fn handover_is_a_process_instant_and_map_a_queue_instant() {
    use cmdqv_core::event::VMM_QUEUE;
    let events = vec![
        ev(
            1,
            Payload::Queue {
                queue: 4,
                event: QueueEvent::Map {
                    vintf: 0,
                    lvcmdq: 3,
                    alloc: true,
                },
            },
        ),
        ev(
            2,
            Payload::Queue {
                queue: VMM_QUEUE,
                event: QueueEvent::Handover {
                    handovers: 1,
                    view_mismatches: 0,
                    commands_lost: 2,
                },
            },
        ),
    ];
    let (v, info) = export(&events, None);
    assert_eq!(info.skipped, 0);
    let inst: Vec<&Value> = events_of(&v, "i").collect();
    assert_eq!(inst.len(), 2);
    assert_eq!(inst[0]["name"], "mapped to VINTF0.LVCMDQ3");
    assert_eq!(inst[0]["tid"], queue_tid(4));
    assert_eq!(inst[1]["s"], "p");
    assert_eq!(inst[1]["args"]["commands_lost"], 2);
}
