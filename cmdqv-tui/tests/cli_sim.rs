//! End to end through the `cmdqv` binary: the simulated host traced by the real eBPF probes
//! (privileged: runs as root in CI), the in-process fallback, record → replay, truncated and
//! garbage trace files.

use std::{path::PathBuf, process::Command};

use serde_json::Value;

mod common;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_cmdqv")
}

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

/// The sims run one at a time: on two cores, concurrent sims would measure each other.
static SIM_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs cmdqv with `args`, returns the last JSON line of stdout and stderr.
fn run_json(args: &[&str]) -> (Value, String) {
    let _one_at_a_time = SIM_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let out = Command::new(bin()).args(args).output().expect("run cmdqv");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "cmdqv {args:?} failed: {stderr}");
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON in {stdout}"));
    let v: Value = serde_json::from_str(line).expect("valid JSON");
    common::assert_summary(&v);
    (v, stderr)
}

fn queue<'a>(s: &'a Value, name: &str) -> &'a Value {
    s["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == name)
        .unwrap_or_else(|| panic!("no queue {name} in {s}"))
}

fn tmp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("cmdqv-test-{}-{name}", std::process::id()))
}

#[test]
fn sim_headless_json_is_traced_by_ebpf_with_plausible_figures_for_every_queue() {
    if !privileged() {
        return;
    }
    let (s, _) = run_json(&["sim", "--headless", "--duration", "2s", "--json"]);
    assert_eq!(s["source"], "ebpf", "{s}");
    assert_eq!(s["drops"], 0, "{s}");
    assert!(s["events"].as_u64().unwrap() > 1000);
    for p in s["probes"].as_array().unwrap() {
        if p["name"].as_str().unwrap().starts_with("uprobe:") {
            assert_eq!(p["status"], "attached", "{p}");
        }
    }
    for (name, l) in [("vcmdq0", 0), ("vcmdq1", 1)] {
        let q = queue(&s, name);
        assert_eq!(q["vintf"], 0);
        assert_eq!(q["lvcmdq"], l);
        assert_eq!(q["global_id"], l);
        let commands = q["commands"].as_u64().unwrap();
        let syncs = q["syncs"].as_u64().unwrap();
        assert!(commands > 500 && syncs > 100 && syncs < commands, "{q}");
        assert_eq!(q["errors"], 0);
        assert!(q["commands_per_s"].as_f64().unwrap() > 100.0);
        let lat = &q["batch_latency_ns"];
        let (p50, p99, max) = (
            lat["p50"].as_u64().unwrap(),
            lat["p99"].as_u64().unwrap(),
            lat["max"].as_u64().unwrap(),
        );
        assert!(p50 > 0 && p50 <= p99 && p99 <= max, "{lat}");
        assert_eq!(q["opcodes"]["CMD_SYNC"].as_u64().unwrap(), syncs);
        assert!(q["opcodes"]["TLBI_NH_VA"].as_u64().unwrap() > 0);
        // A guest-owned VCMDQ only ever sees what Linux routes there.
        for op in q["opcodes"].as_object().unwrap().keys() {
            assert!(
                ["TLBI_NH_VA", "TLBI_NH_ASID", "ATC_INV", "CMD_SYNC"].contains(&op.as_str()),
                "{op}"
            );
        }
    }
    // Configuration invalidations go through the trapped SMMU queue.
    let main = queue(&s, "smmu-cmdq");
    assert!(main["global_id"].is_null());
    assert!(main["opcodes"]["CFGI_STE"].as_u64().unwrap() > 0, "{main}");
    // The guest's VINTF as the collector learnt it from trapped MMIO.
    let v = &s["vintfs"][0];
    assert_eq!(v["enabled"], true);
    assert_eq!(v["hyp_own"], false, "the VMM masks HYP_OWN for a guest");
}

#[test]
fn handover_and_error_storm_report_their_bookkeeping() {
    if !privileged() {
        return;
    }
    let (s, _) = run_json(&[
        "sim",
        "--scenario",
        "handover",
        "--headless",
        "--duration",
        "2s",
        "--json",
    ]);
    let h = &s["handover"];
    assert!(h["handovers"].as_u64().unwrap() >= 4, "{h}");
    assert_eq!(h["commands_lost"], 0);
    assert_eq!(h["view_mismatches"], 0);
    let (s, _) = run_json(&[
        "sim",
        "--scenario",
        "error-storm",
        "--headless",
        "--duration",
        "2s",
        "--json",
    ]);
    let q = queue(&s, "vcmdq0");
    assert!(q["errors"].as_u64().unwrap() > 0, "{q}");
    assert!(q["errors_by_code"]["CERROR_ILL"].as_u64().unwrap() > 0);
    assert_eq!(q["last_error"]["name"], "CERROR_ILL");
    // The command it stopped on: the illegal opcode 0x00 the scenario plants.
    let cmd = q["last_error"]["command"]
        .as_array()
        .expect("faulting command captured");
    assert_eq!(cmd[0].as_u64().unwrap() & 0xff, 0);
}

#[test]
fn trapped_path_is_slower_than_the_vcmdq_path_in_process() {
    // Without eBPF the figures are the model's own (each uprobe hit costs ~10 µs here and
    // would dominate both paths). The trapped batch pays the modelled exit and forwarding cost.
    let (s, _) = run_json(&[
        "sim",
        "--scenario",
        "trapped-vs-vcmdq",
        "--no-ebpf",
        "--headless",
        "--duration",
        "2s",
        "--json",
    ]);
    assert_eq!(s["source"], "in-process");
    assert!(s["notes"][0].as_str().unwrap().contains("in-process"));
    let trapped = queue(&s, "smmu-cmdq")["batch_latency_ns"]["p50"]
        .as_u64()
        .unwrap();
    let direct = queue(&s, "vcmdq1")["batch_latency_ns"]["p50"]
        .as_u64()
        .unwrap();
    assert!(
        trapped >= 28_000,
        "the trapped batch includes 28 µs of modelled forwarding: {trapped}"
    );
    // Quiet machine: ~29 µs vs ~6.5 µs; under heavy load the VCMDQ path's hardware thread gets
    // preempted, so only the order is asserted.
    assert!(
        direct > 0 && direct < trapped,
        "trapped {trapped} ns vs VCMDQ {direct} ns"
    );
}

#[test]
fn record_then_replay_gives_the_same_summary_and_damaged_files_are_handled() {
    let file = tmp("rec.cmdqv");
    let f = file.to_str().unwrap();
    let (live, _) = run_json(&[
        "record",
        "-o",
        f,
        "sim",
        "--no-ebpf",
        "--duration",
        "1500ms",
        "--json",
    ]);
    let (replayed, _) = run_json(&["replay", f, "--json"]);
    assert_eq!(replayed["source"], "replay");
    for name in ["smmu-cmdq", "vcmdq0", "vcmdq1"] {
        let (a, b) = (queue(&live, name), queue(&replayed, name));
        for k in [
            "commands",
            "syncs",
            "errors",
            "opcodes",
            "batch_latency_ns",
            "vintf",
            "lvcmdq",
        ] {
            assert_eq!(a[k], b[k], "{name}.{k}");
        }
    }
    assert_eq!(live["events"], replayed["events"]);

    // --interval on replay: one summary per 500 ms of trace time, then the final one.
    let out = Command::new(bin())
        .args(["replay", f, "--json", "--interval", "500ms"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .inspect(common::assert_summary)
        .collect();
    assert!(lines.len() >= 3, "{} summaries", lines.len());
    let intervals: Vec<u64> = lines
        .iter()
        .map(|l| l["interval"].as_u64().unwrap())
        .collect();
    assert!(
        intervals.windows(2).all(|w| w[1] == w[0] + 1),
        "{intervals:?}"
    );
    let sum: u64 = lines
        .iter()
        .map(|l| queue(l, "vcmdq0")["commands"].as_u64().unwrap())
        .sum();
    assert_eq!(
        sum,
        queue(&live, "vcmdq0")["commands"].as_u64().unwrap(),
        "intervals partition the commands"
    );

    // Perfetto export of the same file: one named track per queue, batches as slices.
    let pf = tmp("perfetto.json");
    let out = Command::new(bin())
        .args(["export", "--perfetto", pf.to_str().unwrap(), f])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let trace: Value =
        serde_json::from_slice(&std::fs::read(&pf).unwrap()).expect("valid trace-event JSON");
    let evs = trace["traceEvents"].as_array().unwrap();
    let names: Vec<&str> = evs
        .iter()
        .filter(|e| e["ph"] == "M" && e["name"] == "thread_name")
        .filter_map(|e| e["args"]["name"].as_str())
        .collect();
    for q in ["vcmdq0", "vcmdq1", "smmu-cmdq"] {
        assert!(names.contains(&q), "track {q} missing: {names:?}");
    }
    let slices = evs.iter().filter(|e| e["ph"] == "X").count() as u64;
    let batches = queue(&live, "vcmdq0")["batch_latency_ns"]["count"]
        .as_u64()
        .unwrap();
    assert!(
        slices >= batches,
        "{slices} slices for {batches} vcmdq0 batches"
    );
    let _ = std::fs::remove_file(&pf);

    // Cut the file: replay reads up to the last complete record and says so.
    let bytes = std::fs::read(&file).unwrap();
    let cut = tmp("cut.cmdqv");
    std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3 + 7]).unwrap();
    let (partial, stderr) = run_json(&["replay", cut.to_str().unwrap(), "--json"]);
    assert!(stderr.contains("truncated"), "{stderr}");
    let n = partial["events"].as_u64().unwrap();
    assert!(n > 0 && n < live["events"].as_u64().unwrap());

    // Garbage: a clear error, non-zero exit, no panic.
    let junk = tmp("junk.cmdqv");
    std::fs::write(&junk, b"this is not a trace file at all, just text\n").unwrap();
    let out = Command::new(bin())
        .args(["replay", junk.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a cmdqv trace file"), "{err}");
    assert!(!err.contains("panicked"));
    for p in [file, cut, junk] {
        let _ = std::fs::remove_file(p);
    }
}

#[test]
fn sim_list_names_every_scenario_and_bad_input_gets_a_clear_error() {
    let out = Command::new(bin())
        .args(["sim", "--list"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for s in [
        "steady-unmap",
        "multi-queue",
        "error-storm",
        "handover",
        "trapped-vs-vcmdq",
    ] {
        assert!(text.contains(s), "{s} missing from {text}");
    }
    let out = Command::new(bin())
        .args([
            "sim",
            "--scenario",
            "nope",
            "--headless",
            "--duration",
            "1s",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown scenario"));
    let out = Command::new(bin())
        .args(["sim", "--headless", "--duration", "fast"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad duration"));
}

#[test]
fn model_qtest_answers_like_qemu_and_rejects_bad_lines() {
    use std::io::Write as _;
    let mut child = Command::new(bin())
        .args(["model", "--qtest", "stdio", "--ram-size", "64M"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(b"readl 0x40000000\nwritel 0x40000000 0x12345678\nreadl 0x40000000\nreadl 0x09100004\nwritew 0x09100000 0x1\nfrobnicate 1 2\nreadq 0x50000000\n")
        .unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(lines[0], "OK 0x0000000000000000");
    assert_eq!(lines[1], "OK");
    assert_eq!(lines[2], "OK 0x0000000012345678");
    // PARAM of QEMU's guest-sized CMDQV: VER 1, 2 VCMDQs, 1 VINTF, 16 SIDs.
    assert_eq!(lines[3], "OK 0x0000000000004011");
    assert_eq!(
        lines[4], "OK",
        "a 2-byte MMIO write is a counted guest error, answered like QEMU"
    );
    assert_eq!(
        lines[5], "FAIL Unknown command 'frobnicate'",
        "as QEMU's system/qtest.c answers"
    );
    assert_eq!(lines.len(), 7, "{lines:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("CMDQV MMIO at 0x9100000"),
        "the default base is printed at start: {err}"
    );
}

#[test]
fn sim_rate_and_vcpus_are_configurable_and_checked() {
    let (s, _) = run_json(&[
        "sim",
        "--scenario",
        "multi-queue",
        "--vcpus",
        "2",
        "--rate",
        "100",
        "--no-ebpf",
        "--headless",
        "--duration",
        "1500ms",
        "--json",
    ]);
    let busy: Vec<&str> = s["queues"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|q| q["name"] != "smmu-cmdq" && q["commands"].as_u64().unwrap() > 0)
        .map(|q| q["name"].as_str().unwrap())
        .collect();
    assert_eq!(busy, ["vcmdq0", "vcmdq1"], "two vCPUs, one LVCMDQ each");
    // 100 batches/s/vCPU for ~1.5 s: about 150 CMD_SYNCs per queue (the second vCPU runs 1.75× faster).
    let syncs = queue(&s, "vcmdq0")["syncs"].as_u64().unwrap();
    assert!((100..=200).contains(&syncs), "{syncs}");
    let out = Command::new(bin())
        .args(["sim", "--vcpus", "9", "--headless", "--duration", "1s"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--vcpus must be 1..=2"));
}

#[test]
fn trapped_vs_vcmdq_under_ebpf_shows_the_trapped_path_slower() {
    if !privileged() {
        return;
    }
    // Traced by the real probes, each batch also pays every probe hit inside it (~10–15 µs
    // apiece in this VM, the same count on both paths), so the gap is the modelled exit and
    // forwarding cost on top of equal tracing overhead.
    let (s, _) = run_json(&[
        "sim",
        "--scenario",
        "trapped-vs-vcmdq",
        "--headless",
        "--duration",
        "3s",
        "--json",
    ]);
    assert_eq!(s["source"], "ebpf");
    assert_eq!(s["drops"], 0);
    let trapped = queue(&s, "smmu-cmdq")["batch_latency_ns"]["p50"]
        .as_u64()
        .unwrap();
    let direct = queue(&s, "vcmdq1")["batch_latency_ns"]["p50"]
        .as_u64()
        .unwrap();
    assert!(
        direct > 0 && trapped > direct,
        "trapped {trapped} ns vs VCMDQ {direct} ns"
    );
}

#[test]
fn sim_interval_prints_one_numbered_summary_per_interval() {
    let _one_at_a_time = SIM_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let out = Command::new(bin())
        .args([
            "sim",
            "--no-ebpf",
            "--headless",
            "--duration",
            "2s",
            "--interval",
            "500ms",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .inspect(common::assert_summary)
        .collect();
    // ~4 interval summaries plus the final one.
    assert!(lines.len() >= 4, "{} summaries", lines.len());
    let numbered: Vec<u64> = lines[..lines.len() - 1]
        .iter()
        .map(|l| l["interval"].as_u64().unwrap())
        .collect();
    assert!(
        numbered.windows(2).all(|w| w[1] == w[0] + 1),
        "{numbered:?}"
    );
    for l in &lines[..lines.len() - 1] {
        let c = queue(l, "vcmdq0")["commands"].as_u64().unwrap();
        assert!(c > 0, "every interval has traffic: {l}");
    }
}
