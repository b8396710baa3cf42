//! Version-1 trace files keep replaying as they did when they were written.
//!
//! The fixtures under tests/data were recorded by the last build that wrote version 1
//! (`cmdqv record -o … sim --no-ebpf --scenario hw-errors|error-storm`), and their expected
//! outputs were produced by that same build: the headless JSON summary
//! (`cmdqv replay FILE --headless --json`), the Perfetto export (`cmdqv export`) and the replay's
//! log lines (`ts pid kind E|- text`, registers unnamed). Nothing in them depends on the wall
//! clock or the host: a replay's summary is computed from the recorded timestamps only.

use std::path::PathBuf;

use cmdqv_core::export::export_perfetto;
use cmdqv_core::record::{TraceReader, VERSION_1, replay};
use serde_json::Value;

const FIXTURES: [&str; 2] = ["trace_v1_hw_errors", "trace_v1_error_storm"];

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn json_file(name: &str) -> Value {
    let bytes = std::fs::read(data(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn version_1_files_replay_to_their_recorded_summary_and_log() {
    for name in FIXTURES {
        let file = data(&format!("{name}.cmdqv"));
        assert_eq!(TraceReader::open(&file).unwrap().version(), VERSION_1);
        let (summary, info) = replay(&file).expect(name);
        assert_eq!((info.bad_records, info.truncated), (0, None), "{name}");
        // Through text, as `--json` prints it: serde_json parses floats to the nearest value
        // only approximately, so both sides take the same path.
        let text = serde_json::to_string(&summary).unwrap();
        let got: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(got, json_file(&format!("{name}.summary.json")), "{name}");
        let file = std::fs::read_to_string(data(&format!("{name}.summary.json"))).unwrap();
        assert_eq!(text, file.trim_end(), "{name}: byte for byte");

        let want = std::fs::read_to_string(data(&format!("{name}.log.txt"))).unwrap();
        let got: Vec<String> = summary
            .log
            .iter()
            .map(|l| {
                let e = if l.is_error { "E" } else { "-" };
                format!("{} {} {} {e} {}", l.ts_ns, l.pid, l.kind, l.text)
            })
            .collect();
        let want: Vec<&str> = want.lines().collect();
        assert_eq!(got.len(), want.len(), "{name}: log length");
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g, w, "{name}");
        }
    }
}

#[test]
fn version_1_files_export_as_they_did() {
    for name in FIXTURES {
        let reader = TraceReader::open(data(&format!("{name}.cmdqv"))).expect(name);
        let mut out = Vec::new();
        let info = export_perfetto(reader, &mut out).expect(name);
        assert_eq!((info.skipped, info.truncated), (0, None), "{name}");
        let got: Value = serde_json::from_slice(&out).expect("valid JSON");
        assert_eq!(got, json_file(&format!("{name}.perfetto.json")), "{name}");
    }
}
