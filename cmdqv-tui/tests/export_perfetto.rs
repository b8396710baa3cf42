//! `cmdqv export --perfetto OUT.pftrace`: the native Perfetto trace decodes with Perfetto's own
//! published schema (protoc, `cargo xtask test` installs it), and its counter tracks, batch
//! slices, flows and error instants are as many as the collector counts in a replay of the same
//! recording.

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_cmdqv")
}

fn tmp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("cmdqv-pftrace-{}-{name}", std::process::id()))
}

fn cmdqv(args: &[&str]) -> (String, String) {
    let out = Command::new(bin()).args(args).output().expect("run cmdqv");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "cmdqv {args:?} failed: {stderr}");
    (String::from_utf8_lossy(&out.stdout).into_owned(), stderr)
}

fn last_json(stdout: &str) -> Value {
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .expect("a JSON line");
    serde_json::from_str(line).expect("valid JSON")
}

/// `protoc --decode=perfetto.protos.Trace` with the vendored upstream schema.
fn decode(pftrace: &Path) -> String {
    let protos = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/perfetto-protos");
    let out = Command::new("protoc")
        .arg(format!("--proto_path={}", protos.display()))
        .arg("--decode=perfetto.protos.Trace")
        .arg("perfetto_trace.proto")
        .stdin(std::fs::File::open(pftrace).unwrap())
        .output()
        .expect("protoc is installed (cargo xtask bootstrap installs protobuf-compiler)");
    assert!(
        out.status.success(),
        "protoc cannot decode the trace: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[derive(Debug, Default)]
struct Counts {
    packets: u64,
    counter_tracks: u64,
    batch_begins: u64,
    slice_begins: u64,
    slice_ends: u64,
    error_instants: u64,
    flows_started: HashSet<u64>,
    flows_ended: BTreeSet<u64>,
    counter_values: u64,
}

fn field<'a>(packet: &'a str, name: &str) -> impl Iterator<Item = &'a str> {
    let prefix = format!("{name}: ");
    packet
        .lines()
        .filter_map(move |l| l.trim().strip_prefix(prefix.as_str()))
}

/// Counts what the decoded text holds, checking as it goes that every event's track and
/// interned name were declared before it.
fn count(text: &str) -> Counts {
    let mut c = Counts::default();
    let (mut tracks, mut names) = (HashSet::new(), HashSet::new());
    for packet in text.split("\npacket {").filter(|p| !p.trim().is_empty()) {
        c.packets += 1;
        assert!(packet.contains("trusted_packet_sequence_id: 1"), "{packet}");
        if packet.contains("track_descriptor {") {
            tracks.insert(field(packet, "uuid").next().expect("uuid").to_owned());
            c.counter_tracks += u64::from(packet.contains("counter {"));
            continue;
        }
        for iid in field(packet, "iid") {
            names.insert(iid.to_owned());
        }
        let track = field(packet, "track_uuid")
            .next()
            .expect("an event names its track");
        assert!(
            tracks.contains(track),
            "event on an undeclared track: {packet}"
        );
        if let Some(iid) = field(packet, "name_iid").next() {
            assert!(
                names.contains(iid),
                "name_iid {iid} used before it was interned"
            );
        }
        assert!(field(packet, "timestamp").next().is_some(), "{packet}");
        let cats: Vec<&str> = field(packet, "categories").collect();
        match field(packet, "type").next().expect("a type") {
            "TYPE_SLICE_BEGIN" => {
                c.slice_begins += 1;
                c.batch_begins += u64::from(cats == ["\"batch\""]);
            }
            "TYPE_SLICE_END" => c.slice_ends += 1,
            "TYPE_INSTANT" => c.error_instants += u64::from(cats == ["\"error\""]),
            "TYPE_COUNTER" => c.counter_values += 1,
            t => panic!("unexpected event type {t}"),
        }
        for f in field(packet, "flow_ids") {
            c.flows_started.insert(f.parse().unwrap());
        }
        for f in field(packet, "terminating_flow_ids") {
            let id: u64 = f.parse().unwrap();
            assert!(
                c.flows_started.contains(&id),
                "flow {id} ends before it starts"
            );
            assert!(c.flows_ended.insert(id), "flow {id} ends twice");
        }
    }
    c
}

fn sum(summary: &Value, f: impl Fn(&Value) -> u64) -> u64 {
    summary["queues"].as_array().unwrap().iter().map(f).sum()
}

#[test]
fn the_native_trace_decodes_with_perfettos_schema_and_counts_what_the_collector_counts() {
    let file = tmp("storm.cmdqv");
    let f = file.to_str().unwrap();
    // Recorded without eBPF: the events come from the sim itself, no privileges needed.
    cmdqv(&[
        "record",
        "-o",
        f,
        "sim",
        "--scenario",
        "error-storm",
        "--no-ebpf",
        "--headless",
        "--duration",
        "1s",
        "--json",
    ]);
    let (replayed, _) = cmdqv(&["replay", f, "--json"]);
    let summary = last_json(&replayed);

    let pf = tmp("storm.pftrace");
    let (_, stderr) = cmdqv(&["export", "--perfetto", pf.to_str().unwrap(), f]);
    assert!(stderr.contains("ui.perfetto.dev"), "{stderr}");
    let c = count(&decode(&pf));

    let queues = summary["queues"].as_array().unwrap().len() as u64;
    let batches = sum(&summary, |q| q["batches"].as_u64().unwrap());
    let errors = sum(&summary, |q| q["errors"].as_u64().unwrap());
    let doorbells = sum(&summary, |q| {
        q["batch_latency_ns"]["count"].as_u64().unwrap()
    });
    assert!(queues >= 3 && batches > 0 && errors > 0, "{summary}");
    assert_eq!(
        c.counter_tracks,
        2 * queues,
        "occupancy and commands/s per queue"
    );
    assert!(c.counter_values >= 2 * queues, "{c:?}");
    assert_eq!(c.batch_begins, batches, "one slice per batch");
    assert_eq!(c.slice_begins, c.slice_ends, "every slice ends");
    assert_eq!(c.error_instants, errors, "one instant per queue error");
    assert_eq!(
        c.flows_ended.len() as u64,
        doorbells,
        "one flow per completed doorbell"
    );
    for f in [&file, &pf] {
        let _ = std::fs::remove_file(f);
    }
}

#[test]
fn both_formats_in_one_run_a_cut_file_exports_and_garbage_is_refused() {
    let file = tmp("steady.cmdqv");
    let f = file.to_str().unwrap();
    cmdqv(&[
        "record",
        "-o",
        f,
        "sim",
        "--no-ebpf",
        "--headless",
        "--duration",
        "500ms",
    ]);
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() * 2 / 3 + 5]).unwrap();

    let (pf, js) = (tmp("steady.pftrace"), tmp("steady.json"));
    let (_, stderr) = cmdqv(&[
        "export",
        "--perfetto",
        pf.to_str().unwrap(),
        "--chrome-json",
        js.to_str().unwrap(),
        f,
    ]);
    assert!(stderr.contains("truncated"), "{stderr}");
    let c = count(&decode(&pf));
    assert!(c.batch_begins > 0 && !c.flows_ended.is_empty(), "{c:?}");
    let chrome: Value = serde_json::from_slice(&std::fs::read(&js).unwrap()).unwrap();
    let slices = chrome["traceEvents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["ph"] == "X")
        .count();
    assert_eq!(
        slices as u64, c.slice_begins,
        "the two formats hold the same slices"
    );

    let junk = tmp("junk.cmdqv");
    std::fs::write(&junk, b"not a trace file\n").unwrap();
    let out = Command::new(bin())
        .args([
            "export",
            "--perfetto",
            pf.to_str().unwrap(),
            junk.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("junk.cmdqv") && !stderr.contains("panicked"),
        "{stderr}"
    );
    let out = Command::new(bin()).args(["export", f]).output().unwrap();
    assert!(
        !out.status.success(),
        "an export with no output format is refused"
    );
    for p in [&file, &pf, &js, &junk] {
        let _ = std::fs::remove_file(p);
    }
}
