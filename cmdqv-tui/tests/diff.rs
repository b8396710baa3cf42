//! `cmdqv diff` end to end on recordings of the sim (`cmdqv record … sim`): the same
//! scenario twice finds no significant latency change, two rates of `steady-unmap` a
//! significant rate change, the two paths of `trapped-vs-vcmdq` their latency difference with
//! its direction; errors of one run only, nothing to match, and damaged files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use cmdqv_core::event::{Event, Payload, QueueEvent, Source};
use cmdqv_core::record::{TraceMeta, TraceWriter};
use serde_json::Value;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_cmdqv")
}

/// The sims run one at a time: on two cores, concurrent sims would measure each other.
static SIM_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn tmp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("cmdqv-diff-{}-{name}", std::process::id()))
}

/// Records `args` of `cmdqv sim` (in-process events: no eBPF needed) to a temporary file.
fn record(name: &str, args: &[&str]) -> PathBuf {
    record_with(name, &[&["--no-ebpf"], args].concat())
}

/// Whether the privileged (eBPF) tests run: as root, unless CMDQV_SKIP_PRIVILEGED=1.
fn privileged() -> bool {
    if std::env::var_os("CMDQV_SKIP_PRIVILEGED").is_some_and(|v| v == "1") {
        eprintln!("CMDQV_SKIP_PRIVILEGED=1: skipping a privileged eBPF test");
        return false;
    }
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "needs root (CMDQV_SKIP_PRIVILEGED=1 skips knowingly)"
    );
    true
}

/// Records `cmdqv sim ARGS` to a temporary file.
fn record_with(name: &str, args: &[&str]) -> PathBuf {
    let _one_at_a_time = SIM_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let file = tmp(name);
    let out = Command::new(bin())
        .args(["record", "-o", file.to_str().unwrap(), "sim", "--json"])
        .args(args)
        .output()
        .expect("run cmdqv record");
    assert!(
        out.status.success(),
        "record {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    file
}

/// Records the same `cmdqv sim` run twice *at the same time*: both recordings see the same load
/// on the machine. Recorded one after the other on a shared 2-vCPU VM, a compile starting in
/// between moves a run's p50 by 30 % and more, which is a real difference between the two runs
/// and not what this test is about.
fn record_side_by_side(names: [&str; 2], args: &[&str]) -> [PathBuf; 2] {
    let _one_at_a_time = SIM_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let files = names.map(tmp);
    let children: Vec<_> = files
        .iter()
        .map(|f| {
            Command::new(bin())
                .args([
                    "record",
                    "-o",
                    f.to_str().unwrap(),
                    "sim",
                    "--no-ebpf",
                    "--json",
                ])
                .args(args)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start cmdqv record")
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().expect("run cmdqv record");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    files
}

fn diff(args: &[&str]) -> Output {
    Command::new(bin())
        .arg("diff")
        .args(args)
        .output()
        .expect("run cmdqv diff")
}

fn diff_json(a: &Path, b: &Path, extra: &[&str]) -> Value {
    let mut args = vec![a.to_str().unwrap(), b.to_str().unwrap(), "--json"];
    args.extend_from_slice(extra);
    let out = diff(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "cmdqv diff {args:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    serde_json::from_slice(&out.stdout).expect("one JSON object")
}

fn queue<'a>(r: &'a Value, name: &str) -> &'a Value {
    let qs = r["queues"].as_array().expect("queues[]");
    qs.iter()
        .find(|q| q["name"] == name)
        .unwrap_or_else(|| panic!("no queue {name} in {r}"))
}

/// Every metric carries `a`, `b`, `change`, `significant` and the test behind it.
fn assert_metric_shape(m: &Value) {
    for k in ["a", "b", "change", "significant", "test"] {
        assert!(m.get(k).is_some(), "{k} missing in {m}");
    }
    assert!(m["significant"].is_boolean(), "{m}");
}

#[test]
fn the_same_scenario_twice_finds_no_significant_latency_change() {
    let [a, b] = record_side_by_side(["same-a.cmdqv", "same-b.cmdqv"], &["--duration", "3s"]);
    let r = diff_json(&a, &b, &[]);
    assert!(
        r["method"]["latency_test"]
            .as_str()
            .unwrap()
            .contains("Mann-Whitney U")
    );
    assert!(r["method"]["rate_test"].as_str().unwrap().contains("Welch"));
    assert!(r["method"]["noise_threshold"].as_f64().unwrap() > 0.0);
    for name in ["vcmdq0", "vcmdq1"] {
        let q = queue(&r, name);
        assert_eq!(q["matched_by"], "vintf/lvcmdq");
        for k in ["commands_per_s", "mean_batch_size", "batch_latency_ns"] {
            assert_metric_shape(&q[k]);
        }
        let lat = &q["batch_latency_ns"];
        assert!(lat["a"]["count"].as_u64().unwrap() > 100, "{lat}");
        assert_eq!(lat["test"]["test"], "mann-whitney-u");
        let p = lat["test"]["p_value"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&p), "{lat}");
        assert_eq!(
            lat["significant"], false,
            "{name}: same scenario, same rate: {lat}"
        );
        assert_eq!(
            q["commands_per_s"]["significant"], false,
            "{}",
            q["commands_per_s"]
        );
        assert!(
            q["phases_ns"]["consume"]["a"]["p50"].is_u64(),
            "{}",
            q["phases_ns"]
        );
        assert_metric_shape(&q["opcodes"]["TLBI_NH_VA"]);
    }
    assert_eq!(r["unmatched_a"].as_array().unwrap().len(), 0, "{r}");

    // The text report names the tests and shows the phases side by side.
    let out = diff(&[a.to_str().unwrap(), b.to_str().unwrap()]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for s in [
        "Mann-Whitney U",
        "Welch",
        "vcmdq0 ↔ vcmdq0",
        "phase consume p50",
        "significant",
    ] {
        assert!(text.contains(s), "{s} missing in:\n{text}");
    }
    for f in [a, b] {
        let _ = std::fs::remove_file(f);
    }
}

#[test]
fn steady_unmap_at_two_rates_is_a_significant_rate_change() {
    let slow = record("rate-500.cmdqv", &["--rate", "500", "--duration", "2s"]);
    let fast = record("rate-2000.cmdqv", &["--rate", "2000", "--duration", "2s"]);
    let r = diff_json(&slow, &fast, &[]);
    for name in ["vcmdq0", "vcmdq1"] {
        let m = &queue(&r, name)["commands_per_s"];
        assert_eq!(m["test"]["test"], "welch-t", "{m}");
        assert!(m["test"]["p_value"].as_f64().unwrap() < 0.05, "{m}");
        assert_eq!(m["significant"], true, "{name}: {m}");
        assert_eq!(m["direction"], "higher", "{m}");
        assert!(m["change"].as_f64().unwrap() > 1.0, "4x the rate: {m}");
    }
    for f in [slow, fast] {
        let _ = std::fs::remove_file(f);
    }
}

#[test]
fn trapped_against_direct_shows_the_latency_difference_and_its_direction() {
    // Traced by the real probes (as `cmdqv sim` runs by default): in-process on this loaded
    // 2-vCPU VM the direct path's hardware thread waits for a CPU about as long as the trapped
    // path's modelled forwarding takes, and the two medians come within ~15 % of each other.
    if !privileged() {
        return;
    }
    let f = record_with(
        "trapped-vs-vcmdq.cmdqv",
        &["--scenario", "trapped-vs-vcmdq", "--duration", "2s"],
    );
    // The same recording on both sides: the trapped SMMU queue (A) against the direct VCMDQ (B).
    let r = diff_json(&f, &f, &["--pair", "smmu-cmdq=vcmdq1"]);
    let q = queue(&r, "smmu-cmdq");
    assert_eq!(q["name_b"], "vcmdq1");
    assert_eq!(q["matched_by"], "pair");
    let lat = &q["batch_latency_ns"];
    let (a, b) = (
        lat["a"]["p50"].as_u64().unwrap(),
        lat["b"]["p50"].as_u64().unwrap(),
    );
    assert!(
        b < a,
        "the direct path is faster: trapped {a} ns, direct {b} ns"
    );
    assert_eq!(lat["direction"], "lower", "{lat}");
    assert!(lat["change"].as_f64().unwrap() < 0.0, "{lat}");
    assert!(lat["test"]["p_value"].as_f64().unwrap() < 0.05, "{lat}");
    // Where it goes: the trapped path forwards each batch (HWPT_INVALIDATE, modelled) while it
    // consumes; the direct path's consumption is the hardware's.
    let consume = &q["phases_ns"]["consume"];
    assert_eq!(consume["significant"], true, "{consume}");
    assert_eq!(consume["direction"], "lower", "{consume}");
    let ph = &q["phases_ns"];
    assert!(
        ph["vmm_to_consume"]["a"].is_object(),
        "trapped doorbells enter the VMM: {ph}"
    );
    assert!(
        ph["doorbell_to_consume"]["b"].is_object(),
        "direct ones do not: {ph}"
    );
    let _ = std::fs::remove_file(f);
}

#[test]
fn errors_of_one_run_only_are_named() {
    let clean = record("clean.cmdqv", &["--duration", "1500ms"]);
    let storm = record(
        "storm.cmdqv",
        &["--scenario", "error-storm", "--duration", "1500ms"],
    );
    let r = diff_json(&clean, &storm, &[]);
    let only_b: Vec<&str> = r["errors"]["only_in_b"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(only_b.contains(&"CERROR_ILL"), "{}", r["errors"]);
    assert_eq!(r["errors"]["only_in_a"].as_array().unwrap().len(), 0);
    for f in [clean, storm] {
        let _ = std::fs::remove_file(f);
    }
}

/// A small synthetic trace with batches on global VCMDQ `queue` (no VINTF mapping).
fn synthetic(name: &str, queue: u32) -> PathBuf {
    let path = tmp(name);
    let mut w = TraceWriter::create(&path, &TraceMeta::new(Source::InProcess, "synthetic"))
        .expect("create trace");
    let ev = |ts_ns, payload| Event {
        ts_ns,
        pid: 1,
        tid: 1,
        cpu: 0,
        payload,
    };
    for i in 0..50u32 {
        let t = 1_000_000 + u64::from(i) * 100_000;
        let db = QueueEvent::Doorbell {
            prod: i + 1,
            cons: i,
        };
        w.write(&ev(t, Payload::Queue { queue, event: db }))
            .unwrap();
        let c = Payload::Command {
            queue,
            index: i,
            w0: 0x46,
            w1: 0,
        };
        w.write(&ev(t + 1_000, c)).unwrap();
        let done = QueueEvent::Consumed {
            cons: i + 1,
            prod: i + 1,
        };
        w.write(&ev(t + 2_000, Payload::Queue { queue, event: done }))
            .unwrap();
    }
    w.finish().unwrap();
    path
}

#[test]
fn nothing_to_match_and_damaged_files_get_clear_answers() {
    let a = synthetic("q3.cmdqv", 3);
    let b = synthetic("q7.cmdqv", 7);
    let out = diff(&[a.to_str().unwrap(), b.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(2), "nothing matched exits 2");
    let r: Value = serde_json::from_slice(&out.stdout).expect("the report is still printed");
    assert_eq!(r["queues"].as_array().unwrap().len(), 0);
    assert_eq!(r["unmatched_a"][0], "vcmdq3");
    assert_eq!(r["unmatched_b"][0], "vcmdq7");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no queue of A matches a queue of B"), "{err}");
    // --pair matches them by hand.
    let paired = diff_json(&a, &b, &["--pair", "vcmdq3=vcmdq7"]);
    assert_eq!(
        queue(&paired, "vcmdq3")["batch_latency_ns"]["significant"],
        false
    );

    // A truncated file is compared up to its last complete record, and said so.
    let bytes = std::fs::read(&a).unwrap();
    let cut = tmp("cut.cmdqv");
    std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3 + 5]).unwrap();
    let out = diff(&[cut.to_str().unwrap(), a.to_str().unwrap(), "--json"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("truncated"));

    // Garbage, a missing file, a bad option: one clear line, exit 1, no panic.
    let junk = tmp("junk.cmdqv");
    std::fs::write(&junk, b"not a trace at all\n").unwrap();
    let missing = tmp("missing.cmdqv");
    for args in [
        vec![junk.to_str().unwrap(), a.to_str().unwrap()],
        vec![a.to_str().unwrap(), missing.to_str().unwrap()],
    ] {
        let out = diff(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains("reading"), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    let out = diff(&[
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--pair",
        "nonsense",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("NAME_A=NAME_B"));
    for f in [a, b, cut, junk] {
        let _ = std::fs::remove_file(f);
    }
}
