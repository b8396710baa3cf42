//! `cmdqv sim --kvm` end to end: the guest's hot path in real KVM vCPUs, traced by the real
//! probes, measures trapped against direct (privileged: root and /dev/kvm, as in CI; set
//! CMDQV_SKIP_PRIVILEGED=1 to skip knowingly); and the engine's fallback where it cannot run.

use std::process::Command;

use serde_json::Value;

mod common;

fn privileged() -> bool {
    if std::env::var_os("CMDQV_SKIP_PRIVILEGED").is_some_and(|v| v == "1") {
        eprintln!("CMDQV_SKIP_PRIVILEGED=1: skipping a privileged KVM/eBPF test");
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

/// Runs cmdqv with `args`; returns the last JSON line of stdout and stderr.
fn run_json(args: &[&str]) -> (Value, String) {
    let _one_at_a_time = SIM_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let out = Command::new(env!("CARGO_BIN_EXE_cmdqv"))
        .args(args)
        .output()
        .expect("run cmdqv");
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

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

#[test]
fn kvm_trapped_vs_vcmdq_measures_real_exits_on_the_trapped_path_only() {
    if !privileged() {
        return;
    }
    let (s, err) = run_json(&[
        "sim",
        "--kvm",
        "--scenario",
        "trapped-vs-vcmdq",
        "--headless",
        "--duration",
        "3s",
        "--json",
    ]);
    assert_eq!(s["source"], "ebpf", "{err}");
    assert_eq!(s["guest_engine"], "kvm", "{err}");
    let c = &s["comparison"];
    let (t, d) = (&c["trapped"], &c["direct"]);
    assert!(u(&t["batches"]) > 20 && u(&d["batches"]) > 20, "{c}");
    // The exits are the kernel's count (kvm:kvm_mmio, filtered to the sim VMM).
    let probe = s["probes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "tracepoint:kvm/kvm_mmio")
        .unwrap_or_else(|| panic!("no kvm_mmio probe: {}", s["probes"]));
    assert_eq!(probe["status"], "attached", "{probe}");
    assert!(
        t["exits_source"].as_str().unwrap().starts_with("ebpf:"),
        "{t}"
    );
    exits_are_the_exit_probes(&s);
    // Every trapped batch rings its doorbell through an exit (the last may be cut off by the
    // stop before it completes); no direct one does.
    let (doorbells, batches) = (u(&t["doorbell_exits"]), u(&t["batches"]));
    assert!(doorbells == batches || doorbells == batches + 1, "{c}");
    assert!(
        u(&t["exits"]) > u(&t["doorbell_exits"]),
        "the CONS polls exit too: {c}"
    );
    assert_eq!(u(&d["doorbell_exits"]), 0, "{c}");
    assert!(
        t["exits_per_batch"].as_f64() > d["exits_per_batch"].as_f64(),
        "{c}"
    );
    // Medians over hundreds of batches: the direct path is faster (the p99 of either path is
    // the host's scheduling, not the path).
    let p50 = |p: &Value| u(&p["batch_latency_ns"]["p50"]);
    assert!(
        p50(d) > 0 && p50(t) > p50(d),
        "trapped {} vs direct {}",
        p50(t),
        p50(d)
    );
    assert!(c["speedup_p50"].as_f64().unwrap() > 1.0, "{c}");
    assert!(!c["modelled"].as_array().unwrap().is_empty(), "{c}");
}

#[test]
fn without_kvm_or_where_it_cannot_run_the_guest_runs_in_threads_and_says_why() {
    let (s, _) = run_json(&[
        "sim",
        "--no-ebpf",
        "--scenario",
        "trapped-vs-vcmdq",
        "--headless",
        "--duration",
        "1s",
        "--json",
    ]);
    assert_eq!(s["guest_engine"], "user");
    assert!(s.get("comparison").is_none(), "{s}");
    // The guest program has no error handler: a scenario that injects errors stays in threads.
    let (s, err) = run_json(&[
        "sim",
        "--kvm",
        "--no-ebpf",
        "--scenario",
        "error-storm",
        "--headless",
        "--duration",
        "1s",
        "--json",
    ]);
    assert_eq!(s["guest_engine"], "user");
    let why = "KVM guest engine off (scenario error-storm injects errors)";
    assert!(err.contains(why), "{err}");
    let notes = s["notes"].as_array().unwrap();
    assert!(
        notes.iter().any(|n| n.as_str().unwrap().starts_with(why)),
        "{notes:?}"
    );
}

/// The comparison's `exits` are counted by `kvm:kvm_exit` (or, where this kernel's KVM never
/// fires it, as PVM does not, by `kvm:kvm_userspace_exit`), by reason; MMIO exits on the
/// trapped path only.
fn exits_are_the_exit_probes(s: &Value) {
    let probes = s["probes"].as_array().unwrap();
    for name in [
        "tracepoint:kvm/kvm_exit",
        "tracepoint:kvm/kvm_userspace_exit",
    ] {
        let p = probes.iter().find(|p| p["name"] == name);
        let p = p.unwrap_or_else(|| panic!("no {name} probe: {probes:?}"));
        assert_eq!(p["status"], "attached", "{p}");
    }
    let c = &s["comparison"];
    let (t, d) = (&c["trapped"], &c["direct"]);
    for p in [t, d] {
        let src = p["exits_source"].as_str().unwrap();
        assert!(
            src.starts_with("ebpf:kvm:kvm_exit ")
                || src.starts_with("ebpf:kvm:kvm_userspace_exit "),
            "{src}"
        );
        let by_reason = p["exits_by_reason"].as_object().unwrap();
        let sum: u64 = by_reason.values().map(u).sum();
        assert_eq!(sum, u(&p["exits"]), "{p}");
    }
    // The MMIO exits: a VMM-bound KVM_EXIT_MMIO, VMX's EPT_MISCONFIG, SVM's npf (which is
    // also a first touch of a RAM page, so it proves nothing on the direct path).
    let count = |p: &Value, reasons: &[&str]| -> u64 {
        let r = p["exits_by_reason"].as_object().unwrap();
        reasons.iter().filter_map(|k| r.get(*k)).map(u).sum()
    };
    let mmio = ["KVM_EXIT_MMIO", "EPT_MISCONFIG", "npf"];
    assert!(count(t, &mmio) >= u(&t["doorbell_exits"]), "{t}");
    assert_eq!(
        count(d, &mmio[..2]),
        0,
        "no MMIO exit on the direct path: {d}"
    );
    // The trapped batch's breakdown, every phase seen on (nearly) every batch; the direct
    // path has no exit to break down.
    let b = &t["breakdown_ns"];
    for phase in ["exit", "vmm_dispatch", "consumption", "resume"] {
        let p = &b[phase];
        assert!(
            u(&p["p50"]) > 0 && u(&p["p50"]) <= u(&p["p99"]),
            "{phase}: {b}"
        );
        assert!(u(&p["count"]) + 2 >= u(&t["batches"]), "{phase}: {b}");
    }
    assert!(d.get("breakdown_ns").is_none(), "{d}");
}

#[test]
fn the_trace_file_names_the_engine_and_auto_keeps_modelled_scenarios_in_user_space() {
    if !privileged() {
        return;
    }
    let file = std::env::temp_dir().join(format!("cmdqv-kvm-auto-{}.cmdqv", std::process::id()));
    let f = file.to_str().unwrap();
    let (s, _) = run_json(&[
        "record",
        "-o",
        f,
        "sim",
        "--kvm",
        "--scenario",
        "trapped-vs-vcmdq",
        "--duration",
        "1s",
        "--json",
    ]);
    assert_eq!(s["guest_engine"], "kvm", "{s}");
    assert!(s["comparison"].is_object(), "{s}");
    let target = s["target"].as_str().unwrap();
    assert!(target.ends_with(", guest engine kvm)"), "{target}");
    // The trace file's header names the engine: replay shows it.
    let (r, _) = run_json(&["replay", f, "--json"]);
    let _ = std::fs::remove_file(&file);
    assert_eq!(r["target"], target, "{r}");
    // --no-kvm: the user-space driver, with no word of KVM.
    let (s, err) = run_json(&[
        "sim",
        "--no-kvm",
        "--scenario",
        "trapped-vs-vcmdq",
        "--headless",
        "--duration",
        "1s",
        "--json",
    ]);
    assert_eq!(s["guest_engine"], "user");
    assert!(!err.contains("KVM guest engine off"), "{err}");
    // Auto: trapped-vs-vcmdq's per-queue figures carry modelled costs KVM would replace, and
    // steady-unmap's batches vary: both stay in user space and say why in one line.
    for (scenario, why) in [
        (
            "trapped-vs-vcmdq",
            "KVM guest engine off (scenario trapped-vs-vcmdq's per-queue figures include modelled costs",
        ),
        (
            "steady-unmap",
            "KVM guest engine off (scenario steady-unmap's batches vary",
        ),
    ] {
        let (s, err) = run_json(&[
            "sim",
            "--scenario",
            scenario,
            "--headless",
            "--duration",
            "1s",
            "--json",
        ]);
        assert_eq!(s["guest_engine"], "user");
        assert!(
            s["target"]
                .as_str()
                .unwrap()
                .ends_with(", guest engine user)")
        );
        assert_eq!(err.lines().filter(|l| l.contains(why)).count(), 1, "{err}");
    }
}

#[test]
fn where_kvm_cannot_create_a_vm_auto_says_why_and_kvm_fails_in_one_line() {
    if !privileged() {
        return;
    }
    // /dev/null over /dev/kvm in a mount namespace of its own: the open works, KVM's first
    // ioctl does not.
    let _one_at_a_time = SIM_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let bin = env!("CARGO_BIN_EXE_cmdqv");
    let args = "sim --scenario trapped-vs-vcmdq --headless --duration 1s --json";
    let script = format!(
        "mount --bind /dev/null /dev/kvm || exit 99; {bin} --no-color {args} --kvm; echo rc=$?; {bin} {args}"
    );
    let out = Command::new("unshare")
        .args(["--mount", "sh", "-c", &script])
        .output()
        .expect("unshare (util-linux)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout} {stderr}");
    assert!(
        stdout.starts_with("rc=1\n"),
        "--kvm must fail: {stdout} {stderr}"
    );
    let forced: Vec<&str> = stderr.lines().filter(|l| l.contains("--kvm:")).collect();
    assert_eq!(forced.len(), 1, "{stderr}");
    assert!(forced[0].contains("KVM_CREATE_VM failed"), "{stderr}");
    let auto = "KVM guest engine off (KVM_CREATE_VM failed";
    assert!(stderr.contains(auto), "{stderr}");
    let line = stdout.lines().rev().find(|l| l.starts_with('{')).unwrap();
    let s: Value = serde_json::from_str(line).unwrap();
    assert_eq!(s["guest_engine"], "user", "{s}");
    assert!(s.get("comparison").is_none(), "{s}");
    let notes = s["notes"].as_array().unwrap();
    assert!(
        notes.iter().any(|n| n.as_str().unwrap().starts_with(auto)),
        "{notes:?}"
    );
}
