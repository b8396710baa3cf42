//! Native Perfetto export, read back with the same prost messages: overlapping batches get
//! lanes instead of mis-nesting, every completed doorbell is one flow from its doorbell to its
//! completion, names are interned once, occupancy follows PROD/CONS, errors name their command,
//! and any event stream exports to a trace whose slices balance.

mod analysis_common;

use analysis_common::*;
use cmdqv_core::event::{Event, Payload, QueueEvent, Source};
use cmdqv_core::perfetto::proto::{Data, EventType, Trace, TrackEvent};
use cmdqv_core::perfetto::*;
use cmdqv_core::record::{TraceMeta, TraceReader, TraceWriter};
use cmdqv_core::regs::Cerror;
use prost::Message;
use std::collections::{HashMap, HashSet};

fn export(events: &[Event]) -> (Trace, PftraceInfo) {
    let meta = TraceMeta::new(Source::InProcess, "sim:test");
    let mut w = TraceWriter::new(Vec::new(), &meta).unwrap();
    for e in events {
        w.write(e).unwrap();
    }
    let bytes = w.finish().unwrap();
    let mut out = Vec::new();
    let info = export_pftrace(TraceReader::new(&bytes[..]).unwrap(), &mut out).unwrap();
    (Trace::decode(&out[..]).expect("a valid Trace"), info)
}

fn track_events(t: &Trace) -> impl Iterator<Item = (u64, &TrackEvent)> {
    t.packet.iter().filter_map(|p| match &p.data {
        Some(Data::TrackEvent(e)) => Some((p.timestamp.unwrap(), e)),
        _ => None,
    })
}

fn of_type(t: &Trace, ty: EventType) -> Vec<(u64, &TrackEvent)> {
    track_events(t)
        .filter(|(_, e)| e.r#type == Some(ty as i32))
        .collect()
}

fn q(queue: u32, event: QueueEvent) -> Payload {
    Payload::Queue { queue, event }
}

fn cmd(queue: u32, index: u32, w0: u64) -> Payload {
    Payload::Command {
        queue,
        index,
        w0,
        w1: 0,
    }
}

/// Two doorbells whose batches overlap: PROD 2 at t=10, PROD 4 at t=20, CONS 2 at t=30 closes
/// the first, CONS 4 at t=40 the second.
fn overlapping() -> Vec<Event> {
    vec![
        ev(
            5,
            q(
                0,
                QueueEvent::Enable {
                    enabled: true,
                    log2size: 3,
                },
            ),
        ),
        ev(10, q(0, QueueEvent::Doorbell { prod: 2, cons: 0 })),
        ev(20, q(0, QueueEvent::Doorbell { prod: 4, cons: 0 })),
        ev(25, cmd(0, 0, 0x12)),
        ev(26, cmd(0, 1, 0x46)),
        ev(30, q(0, QueueEvent::Consumed { cons: 2, prod: 4 })),
        ev(35, cmd(0, 2, 0x12)),
        ev(36, cmd(0, 3, 0x46)),
        ev(40, q(0, QueueEvent::Consumed { cons: 4, prod: 4 })),
    ]
}

#[test]
fn overlapping_batches_take_a_second_lane_and_every_doorbell_is_one_flow() {
    let (t, info) = export(&overlapping());
    let begins = of_type(&t, EventType::SliceBegin);
    let ends = of_type(&t, EventType::SliceEnd);
    assert_eq!((begins.len(), ends.len(), info.batch_slices), (2, 2, 2));
    assert_eq!((begins[0].0, ends[0].0), (10, 30));
    assert_eq!((begins[1].0, ends[1].0), (20, 40));
    let (a, b) = (
        begins[0].1.track_uuid.unwrap(),
        begins[1].1.track_uuid.unwrap(),
    );
    assert_ne!(a, b, "overlapping slices share no track");
    let lane = t.packet.iter().find_map(|p| match &p.data {
        Some(Data::TrackDescriptor(d)) if d.uuid == Some(b) => Some(d.clone()),
        _ => None,
    });
    assert_eq!(lane.expect("the lane is declared").parent_uuid, Some(a));
    assert_eq!(info.slices_delayed, 0);

    // Each flow: doorbell → consumption start → completion, in time order.
    let mut steps: HashMap<u64, Vec<u64>> = HashMap::new();
    for (ts, e) in track_events(&t) {
        for &f in e.flow_ids.iter().chain(&e.terminating_flow_ids) {
            steps.entry(f).or_default().push(ts);
        }
    }
    assert_eq!(info.flows, 2);
    assert_eq!(steps.len(), 2, "{steps:?}");
    assert_eq!(steps[&1], vec![10, 25, 30]);
    assert_eq!(steps[&2], vec![20, 25, 40]);

    // Occupancy in entries of an 8-entry ring: 2, 4, then 2, then 0.
    let occupancy: Vec<i64> = of_type(&t, EventType::Counter)
        .iter()
        .filter(|(_, e)| e.track_uuid == Some(a + 1))
        .map(|(_, e)| e.counter_value.unwrap())
        .collect();
    assert_eq!(occupancy, vec![2, 4, 2, 0]);
    assert_eq!(info.counter_tracks, 2);
}

#[test]
fn names_are_interned_once_on_a_sequence_whose_state_is_cleared_first() {
    let (t, _) = export(&overlapping());
    let first = &t.packet[0];
    assert_eq!(
        first.sequence_flags.unwrap() & SEQ_INCREMENTAL_STATE_CLEARED,
        1
    );
    assert!(
        t.packet
            .iter()
            .all(|p| p.trusted_packet_sequence_id == Some(SEQUENCE_ID))
    );
    let mut defined = HashSet::new();
    for p in &t.packet {
        for n in p.interned_data.iter().flat_map(|d| &d.event_names) {
            assert!(
                defined.insert(n.iid.unwrap()),
                "iid {:?} interned twice",
                n.iid
            );
        }
        if let Some(Data::TrackEvent(e)) = &p.data {
            assert_eq!(p.sequence_flags, Some(SEQ_NEEDS_INCREMENTAL_STATE));
            if let Some(iid) = e.name_iid {
                assert!(
                    defined.contains(&iid),
                    "iid {iid} used before it was interned"
                );
            }
        }
    }
    assert!(
        defined.len() >= 4,
        "doorbell, consumption start, batch, completion"
    );
}

#[test]
fn an_error_is_an_instant_naming_the_command_it_stopped_on() {
    let events = vec![
        ev(10, q(1, QueueEvent::Doorbell { prod: 1, cons: 0 })),
        ev(11, cmd(1, 0, 0xff)),
        ev(
            12,
            q(
                1,
                QueueEvent::Error {
                    index: 0,
                    cerror: Cerror::Ill.into(),
                },
            ),
        ),
    ];
    let (t, info) = export(&events);
    assert_eq!(info.error_instants, 1);
    let errors: Vec<_> = of_type(&t, EventType::Instant)
        .into_iter()
        .filter(|(_, e)| e.categories == ["error"])
        .collect();
    assert_eq!(errors.len(), 1);
    let e = errors[0].1;
    assert_eq!(e.name.as_deref(), Some("CERROR_ILL"));
    let command = e
        .debug_annotations
        .iter()
        .find(|a| a.name.as_deref() == Some("command"));
    assert!(
        command.and_then(|c| c.string_value.as_ref()).is_some(),
        "{e:?}"
    );
}

#[test]
fn a_workload_exports_as_many_slices_as_the_json_export() {
    let events = workload(40);
    let (t, info) = export(&events);
    let meta = TraceMeta::new(Source::InProcess, "sim:test");
    let mut w = TraceWriter::new(Vec::new(), &meta).unwrap();
    for e in &events {
        w.write(e).unwrap();
    }
    let bytes = w.finish().unwrap();
    let json =
        cmdqv_core::export::export_perfetto(TraceReader::new(&bytes[..]).unwrap(), &mut Vec::new())
            .unwrap();
    assert_eq!(info.batch_slices + info.ioctl_slices, json.slices);
    assert_eq!(of_type(&t, EventType::SliceBegin).len() as u64, json.slices);
    assert_eq!(info.events_read, json.events_read);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
    /// Any events export to a decodable trace whose slices balance per track and whose flows
    /// end at most once.
    #[test]
    fn any_events_export_to_a_balanced_trace(events in proptest::collection::vec(any_event(), 0..200)) {
        let (t, info) = export(&events);
        let mut open: HashMap<u64, i64> = HashMap::new();
        for (_, e) in track_events(&t) {
            let d = match EventType::try_from(e.r#type.unwrap()) {
                Ok(EventType::SliceBegin) => 1,
                Ok(EventType::SliceEnd) => -1,
                _ => 0,
            };
            *open.entry(e.track_uuid.unwrap()).or_default() += d;
        }
        proptest::prop_assert!(open.values().all(|&n| n == 0), "{open:?}");
        let ended: Vec<u64> = track_events(&t).flat_map(|(_, e)| e.terminating_flow_ids.clone()).collect();
        let unique: HashSet<u64> = ended.iter().copied().collect();
        proptest::prop_assert_eq!(unique.len(), ended.len());
        proptest::prop_assert_eq!(info.flows, ended.len() as u64);
        proptest::prop_assert_eq!(info.packets, t.packet.len() as u64);
    }
}
