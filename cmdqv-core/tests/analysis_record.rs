//! The trace file: round trips, crash tolerance, corruption, replay equivalence.

mod analysis_common;

use analysis_common::*;
use cmdqv_core::analysis::{Collector, CollectorConfig, Handover, ProbeStatus, VintfSummary};
use cmdqv_core::event::Source;
use cmdqv_core::record::*;
use proptest::prelude::*;

fn meta() -> TraceMeta {
    let mut m = TraceMeta::new(Source::InProcess, "sim:test (pid 4321)");
    m.pid = Some(PID);
    m.probes = vec![ProbeStatus {
        name: "uprobe:cmdqv_vmm_mmio".into(),
        status: "in-process".into(),
        reason: "no eBPF".into(),
    }];
    m.queues = vec![QueueMeta {
        queue: 3,
        vintf: Some(0),
        lvcmdq: Some(1),
        log2size: Some(8),
    }];
    m
}

fn meta_update() -> MetaUpdate {
    MetaUpdate {
        ts_ns: 99,
        probes: None,
        drops_total: Some(5),
        queues: vec![QueueMeta {
            queue: 0,
            vintf: Some(1),
            lvcmdq: Some(0),
            log2size: Some(8),
        }],
        vintfs: Some(vec![VintfSummary {
            index: 0,
            enabled: true,
            vmid: 3,
            ..Default::default()
        }]),
        handover: Some(Handover {
            handovers: 2,
            commands_lost: 0,
            view_mismatches: 0,
        }),
    }
}

fn records() -> Vec<Record> {
    let mut r: Vec<Record> = every_kind().into_iter().map(Record::Event).collect();
    r.insert(4, Record::Meta(meta_update()));
    r
}

fn to_bytes(recs: &[Record]) -> Vec<u8> {
    let mut w = TraceWriter::new(Vec::new(), &meta()).unwrap();
    for r in recs {
        match r {
            Record::Event(e) => w.write(e).unwrap(),
            Record::Meta(m) => w.write_meta(m).unwrap(),
        }
    }
    w.finish().unwrap()
}

fn tmp(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("cmdqv-{}-{name}.trace", std::process::id()))
}

#[test]
fn every_payload_kind_round_trips_through_a_file() {
    let path = tmp("roundtrip");
    let mut w = TraceWriter::create(&path, &meta()).unwrap();
    for r in records() {
        match r {
            Record::Event(e) => w.write(&e).unwrap(),
            Record::Meta(m) => w.write_meta(&m).unwrap(),
        }
    }
    assert_eq!(w.records(), records().len() as u64);
    let bytes_written = w.bytes();
    w.finish().unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), bytes_written);

    let r = TraceReader::open(&path).unwrap();
    assert_eq!(r.meta(), &meta());
    let mut r = r;
    let got: Vec<Record> = (&mut r).map(Result::unwrap).collect();
    assert_eq!(got, records());
    assert_eq!(r.truncated(), None);
    std::fs::remove_file(path).unwrap();
}

#[test]
fn truncation_at_every_byte_yields_a_prefix_and_says_so() {
    let recs = records();
    let full = to_bytes(&recs);
    let header_len = TraceReader::new(&full[..]).unwrap().offset() as usize;
    // Record boundaries: where a cut loses nothing partial.
    let mut boundaries = vec![header_len];
    {
        let mut r = TraceReader::new(&full[..]).unwrap();
        while r.next().is_some() {
            boundaries.push(r.offset() as usize);
        }
    }
    assert_eq!(*boundaries.last().unwrap(), full.len());
    for n in 0..=full.len() {
        let cut = &full[..n];
        match TraceReader::new(cut) {
            Err(e) => {
                assert!(n < header_len, "cut at {n} after the header failed: {e}");
                assert!(
                    matches!(e, TraceError::BadMagic | TraceError::TruncatedHeader),
                    "{e}"
                );
            }
            Ok(mut r) => {
                let got: Vec<Record> = (&mut r)
                    .map(|x| x.expect("no error in a cut file"))
                    .collect();
                assert_eq!(got[..], recs[..got.len()], "cut at {n}");
                let complete = boundaries.iter().filter(|&&b| b <= n).count() - 1;
                assert_eq!(got.len(), complete, "cut at {n}");
                let last = boundaries[complete];
                match r.truncated() {
                    None => assert_eq!(n, last),
                    Some(t) => {
                        assert_ne!(n, last);
                        assert_eq!(t.offset as usize, last);
                        assert_eq!(t.ignored_bytes as usize, n - last);
                    }
                }
            }
        }
    }
}

#[test]
fn a_truncated_file_on_disk_replays_its_complete_prefix() {
    let path = tmp("cut");
    let full = to_bytes(&records());
    std::fs::write(&path, &full[..full.len() - 5]).unwrap();
    let (s, info) = replay(&path).unwrap();
    assert_eq!(info.records, records().len() as u64 - 1);
    let t = info.truncated.unwrap();
    assert_eq!(t.offset + t.ignored_bytes, full.len() as u64 - 5);
    assert!(s.notes.iter().any(|n| n.contains("truncated")));
    std::fs::remove_file(path).unwrap();
}

#[test]
fn a_zero_filled_tail_is_a_truncation_not_corruption() {
    let mut b = to_bytes(&records());
    let len = b.len() as u64;
    b.extend_from_slice(&[0u8; 5000]);
    let mut r = TraceReader::new(&b[..]).unwrap();
    assert_eq!((&mut r).map(Result::unwrap).count(), records().len());
    assert_eq!(
        r.truncated(),
        Some(Truncation {
            offset: len,
            ignored_bytes: 5000
        })
    );
}

#[test]
fn garbage_is_not_a_trace_file() {
    let path = tmp("garbage");
    std::fs::write(&path, b"hello, this is not a trace at all").unwrap();
    let e = TraceReader::open(&path).err().unwrap();
    assert_eq!(e.to_string(), "not a cmdqv trace file (bad magic)");
    assert!(replay(&path).is_err());
    std::fs::write(&path, b"").unwrap();
    assert!(matches!(
        TraceReader::open(&path),
        Err(TraceError::BadMagic)
    ));
    std::fs::remove_file(path).unwrap();

    let mut b = to_bytes(&[]);
    b[8] = 7;
    assert!(matches!(
        TraceReader::new(&b[..]),
        Err(TraceError::UnsupportedVersion { found: 7 })
    ));
    let mut b = to_bytes(&[]);
    b[20] ^= 0xff; // inside the JSON metadata
    assert!(matches!(
        TraceReader::new(&b[..]),
        Err(TraceError::BadMeta(_))
    ));
}

#[test]
fn crc_mismatch_names_the_offset_and_reading_goes_on() {
    let recs = records();
    let mut b = to_bytes(&recs);
    let mut r = TraceReader::new(&b[..]).unwrap();
    r.next().unwrap().unwrap();
    let second = r.offset();
    b[second as usize + 8 + 3] ^= 0x40; // a byte inside the second record's body
    let mut r = TraceReader::new(&b[..]).unwrap();
    let out: Vec<_> = (&mut r).collect();
    assert_eq!(out.len(), recs.len());
    match &out[1] {
        Err(e @ TraceError::Crc { offset, .. }) => {
            assert_eq!(*offset, second);
            assert!(e.to_string().contains(&format!("offset {second}")), "{e}");
        }
        other => panic!("expected a CRC error, got {other:?}"),
    }
    assert!(out.iter().enumerate().all(|(i, r)| i == 1 || r.is_ok()));

    // A corrupt length cannot be resynchronised: one error, then the end.
    let mut b = to_bytes(&recs);
    b[second as usize..second as usize + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    let out: Vec<_> = TraceReader::new(&b[..]).unwrap().collect();
    assert_eq!(out.len(), 2);
    assert!(matches!(out[1], Err(TraceError::BadLength { offset, .. }) if offset == second));
}

#[test]
fn replay_gives_the_same_summary_as_the_live_collector() {
    let events = workload(600);
    let mut live = Collector::new(CollectorConfig::new(
        Source::InProcess,
        "sim:test (pid 4321)",
    ));
    let m = meta();
    live.set_probes(m.probes.clone());
    for q in &m.queues {
        live.set_queue_meta(q.queue, q.vintf, q.lvcmdq, q.log2size);
    }
    let path = tmp("replay");
    let mut w = TraceWriter::create(&path, &m).unwrap();
    for (i, e) in events.iter().enumerate() {
        live.ingest(e);
        w.write(e).unwrap();
        if i == events.len() / 3 {
            let u = meta_update();
            let mut last = 0;
            apply_meta(&mut live, &u, &mut last);
            w.write_meta(&u).unwrap();
        }
    }
    w.finish().unwrap();
    let want = live.snapshot(live.last_ts());
    let (got, info) = replay(&path).unwrap();
    std::fs::remove_file(&path).unwrap();

    assert_eq!(got.source, Source::Replay);
    assert_eq!(info.events, events.len() as u64);
    assert_eq!((info.bad_records, info.truncated), (0, None));
    assert!(want.queues.len() == 3 && want.queues.iter().all(|q| q.batches > 0));
    assert_eq!(got.queues, want.queues);
    assert_eq!(got.events, want.events);
    assert_eq!(got.drops, want.drops);
    assert_eq!(got.ioctls, want.ioctls);
    assert_eq!(got.vintfs, want.vintfs);
    assert_eq!(got.handover, want.handover);
    assert_eq!(got.probes, want.probes);
    assert_eq!(got.elapsed_s, want.elapsed_s);
    assert_eq!(got.log, want.log);
}

proptest! {
    #[test]
    fn mangled_files_never_panic(
        cut in 0usize..2000,
        flips in proptest::collection::vec((0usize..2000, any::<u8>()), 0..8),
    ) {
        let mut b = to_bytes(&records());
        for (at, x) in flips {
            let n = b.len();
            b[at % n] ^= x;
        }
        b.truncate(cut.min(b.len()));
        if let Ok(r) = TraceReader::new(&b[..]) {
            let n = r.take(100).count();
            prop_assert!(n <= records().len() + 1);
        }
    }

    #[test]
    fn random_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = decode_body(&body);
    }
}

proptest! {
    /// Any event survives the trace file's encoding exactly.
    #[test]
    fn any_event_round_trips_through_the_file_encoding(e in any_event()) {
        let mut body = Vec::new();
        encode_event(&e, &mut body);
        prop_assert_eq!(decode_body(&body), Ok(Record::Event(e)));
    }

    /// And through the eBPF ring-buffer encoding (Lost has none).
    #[test]
    fn any_event_round_trips_through_the_probe_abi(e in any_event()) {
        match cmdqv_core::probe_abi::encode(&e) {
            Some(b) => prop_assert_eq!(cmdqv_core::probe_abi::decode(&b), Ok(e)),
            None => {
                let lost = matches!(e.payload, cmdqv_core::event::Payload::Lost { .. });
                prop_assert!(lost, "only Lost has no ring-buffer record");
            }
        }
    }
}

#[test]
fn replay_skips_corrupt_records_and_says_how_many() {
    let recs = records();
    let mut b = to_bytes(&recs);
    let mut r = TraceReader::new(&b[..]).unwrap();
    r.next().unwrap().unwrap();
    let second = r.offset() as usize;
    b[second + 8 + 3] ^= 1;
    let (s, info) = replay_reader(TraceReader::new(&b[..]).unwrap(), None).unwrap();
    assert_eq!(info.bad_records, 1);
    assert_eq!(info.records, recs.len() as u64 - 1);
    assert_eq!(info.errors.len(), 1);
    assert!(
        info.errors[0].contains(&format!("offset {second}")),
        "{:?}",
        info.errors
    );
    assert!(
        s.notes.iter().any(|n| n == "1 corrupt records skipped"),
        "{:?}",
        s.notes
    );
    // The meta record's drop total (5) and the Lost event (12) both count.
    assert_eq!(s.drops, 17);
    // The Handover event (a = 8, after the meta record's 2 handovers) is the latest report.
    let h = s.handover.unwrap();
    assert_eq!(h.handovers, 8);
    assert_eq!(h.commands_lost, (u64::MAX - 8) >> 32);
    assert_eq!(h.view_mismatches, (u64::MAX - 8) & 0xffff_ffff);
    assert_eq!(s.vintfs.len(), 1);
}

/// The frames of a trace file after its header: (body offset, body).
fn frames(file: &[u8]) -> Vec<(usize, Vec<u8>)> {
    let mut at = TraceReader::new(file).unwrap().offset() as usize;
    let mut out = Vec::new();
    while at < file.len() {
        let len = u32::from_le_bytes(file[at..at + 4].try_into().unwrap()) as usize;
        out.push((at + 8, file[at + 8..at + 8 + len].to_vec()));
        at += 8 + len;
    }
    out
}

#[test]
fn the_writer_writes_version_2_whose_events_are_their_abi_records() {
    let recs = records();
    let file = to_bytes(&recs);
    assert_eq!(u16::from_le_bytes([file[8], file[9]]), 2);
    assert_eq!(TraceReader::new(&file[..]).unwrap().version(), VERSION);
    let bodies = frames(&file);
    assert_eq!(bodies.len(), recs.len());
    for ((_, body), rec) in bodies.iter().zip(&recs) {
        match rec {
            Record::Event(e) => {
                // Byte for byte what the ring buffer carries (Lost: its userspace-only kind).
                let mut want = Vec::new();
                cmdqv_core::probe_abi::encode_into(e, &mut want);
                assert_eq!(body, &want, "{e:?}");
                if let Some(ring) = cmdqv_core::probe_abi::encode(e) {
                    assert_eq!(body, &ring);
                }
            }
            Record::Meta(m) => {
                let kind = cmdqv_ebpf_common::KIND_TRACE_META.to_le_bytes();
                assert_eq!(body[..2], kind);
                assert_eq!(
                    &serde_json::from_slice::<MetaUpdate>(&body[2..]).unwrap(),
                    m
                );
            }
        }
    }
}

#[test]
fn a_version_2_body_must_be_exactly_its_record() {
    let e = &every_kind()[3];
    let mut body = Vec::new();
    encode_event(e, &mut body);
    assert_eq!(decode_body(&body), Ok(Record::Event(*e)));
    body.extend_from_slice(&[0; 3]);
    assert_eq!(
        decode_body(&body),
        Err("3 unexpected bytes after the event".to_string())
    );
    assert_eq!(decode_body(&[]), Err("empty record".to_string()));
    let short = decode_body(&body[..30]).unwrap_err();
    assert!(short.starts_with("truncated record"), "{short}");
}

#[test]
fn version_1_bodies_decode_through_the_same_queue_unpacking() {
    use cmdqv_core::event::{Payload, QueueEvent};
    // tag 4 (queue), ts, pid, tid, cpu, queue 3, op 8 (map), a = VINTF 1, b = LVCMDQ 2 | ALLOC.
    let mut body = vec![4u8];
    for v in [7u64.to_le_bytes().to_vec(), 1u32.to_le_bytes().to_vec()] {
        body.extend_from_slice(&v);
    }
    for v in [2u32, 0, 3, 8] {
        body.extend_from_slice(&v.to_le_bytes());
    }
    body.extend_from_slice(&1u64.to_le_bytes());
    body.extend_from_slice(&(2u64 | 1 << 16).to_le_bytes());
    let Ok(Record::Event(e)) = v1::decode_body(&body) else {
        panic!("a valid version-1 queue record");
    };
    assert_eq!((e.ts_ns, e.pid, e.tid, e.cpu), (7, 1, 2, 0));
    let map = QueueEvent::Map {
        vintf: 1,
        lvcmdq: 2,
        alloc: true,
    };
    assert_eq!(
        e.payload,
        Payload::Queue {
            queue: 3,
            event: map
        }
    );
    body[25] = 77; // op
    assert_eq!(
        v1::decode_body(&body),
        Err("unknown queue op 77".to_string())
    );
    assert_eq!(
        v1::decode_body(&[0x42]),
        Err("record body too short (0 bytes left, need 8)".to_string())
    );
}

#[test]
fn a_version_1_header_selects_the_legacy_reader() {
    let mut file = to_bytes(&[]);
    file[8..10].copy_from_slice(&VERSION_1.to_le_bytes());
    let r = TraceReader::new(&file[..]).unwrap();
    assert_eq!(r.version(), 1);
    assert_eq!(r.count(), 0);
    file[8..10].copy_from_slice(&3u16.to_le_bytes());
    let e = TraceReader::new(&file[..]).err().unwrap();
    assert_eq!(
        e.to_string(),
        "trace file version 3 is not supported (this build reads versions 1 to 2)"
    );
}

#[test]
fn records_ingested_raw_are_recorded_as_they_came() {
    // What the live runner does: decode + ingest each ring-buffer record (padded, as the ring
    // buffer may), then record the record itself, cut to its length.
    let events: Vec<_> = every_kind()
        .into_iter()
        .filter(|e| cmdqv_core::probe_abi::encode(e).is_some())
        .collect();
    let mut c = Collector::new(CollectorConfig::new(Source::Ebpf, "t"));
    let mut w = TraceWriter::new(Vec::new(), &meta()).unwrap();
    for e in &events {
        let mut rec = cmdqv_core::probe_abi::encode(e).unwrap();
        let len = rec.len();
        rec.extend_from_slice(&[0xee; 5]);
        let kept = c.ingest_raw(&rec).unwrap();
        assert_eq!(kept, &rec[..len]);
        w.write_record(kept).unwrap();
    }
    assert_eq!(
        c.ingest_raw(&[1, 2, 3]).unwrap_err().to_string(),
        "truncated record (kind 0): need 24 bytes, got 3"
    );
    assert_eq!(
        c.snapshot(c.last_ts()).drops,
        1,
        "an undecodable record is a drop"
    );
    let file = w.finish().unwrap();
    let got: Vec<Record> = TraceReader::new(&file[..])
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let want: Vec<Record> = events.into_iter().map(Record::Event).collect();
    assert_eq!(got, want);
}
