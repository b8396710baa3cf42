//! Privileged: the host target's kernel programs pass this kernel's verifier (loaded, not
//! attached: this machine kind has no kprobe PMU), and `cmdqv host` either runs (a kernel with
//! the SMMUv3 driver and kprobes) or says why it cannot, with every host probe's status and
//! its documented exit status, without announcing readiness.
//!
//! Set CMDQV_SKIP_PRIVILEGED=1 to skip these knowingly.

use std::process::Command;

use aya::programs::KProbe;
use cmdqv_tui::ebpf::{attach::typed_program, host_plan, loader::load_object};

mod common;

fn privileged() -> bool {
    if std::env::var_os("CMDQV_SKIP_PRIVILEGED").is_some_and(|v| v == "1") {
        eprintln!("CMDQV_SKIP_PRIVILEGED=1: skipping a privileged eBPF test");
        return false;
    }
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test loads eBPF and needs root (set CMDQV_SKIP_PRIVILEGED=1 to skip it knowingly)"
    );
    true
}

/// Every program of the host plan, by the name the object gives it.
const HOST_PROGRAMS: [&str; 5] = [
    "cmdqv_host_issue",
    "cmdqv_host_issue_return",
    "cmdqv_host_write_entries",
    "cmdqv_host_poll_sync",
    "cmdqv_host_poll_sync_return",
];

#[test]
fn the_host_programs_pass_the_verifier() {
    if !privileged() {
        return;
    }
    let mut ebpf = load_object().expect("the embedded object loads");
    for prog in HOST_PROGRAMS {
        let p: &mut KProbe = typed_program(&mut ebpf, prog)
            .unwrap_or_else(|e| panic!("{prog} is not a kprobe program of the object: {e}"));
        if let Err(e) = p.load() {
            let log = format!("{e:?}");
            panic!("the verifier refused {prog}: {log}");
        }
    }
}

fn cmdqv() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cmdqv"))
}

#[test]
fn help_documents_the_bracketing_files_and_the_exit_status() {
    let out = cmdqv().args(["host", "--help"]).output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for want in [
        "--ready-file <PATH>",
        "--stop-file <PATH>",
        "--until-file",
        "--headless",
        "--duration",
        "3 when no probe on arm_smmu_cmdq_issue_cmdlist attached",
    ] {
        assert!(
            help.contains(want),
            "`cmdqv host --help` lacks {want}:\n{help}"
        );
    }
}

#[test]
fn host_runs_or_says_why_not_with_every_host_probes_status() {
    if !privileged() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("cmdqv-host-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ready = dir.join("ready");
    let out = cmdqv()
        .args([
            "host",
            "--headless",
            "--json",
            "--duration",
            "1s",
            "--ready-file",
        ])
        .arg(&ready)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    if out.status.code() == Some(0) {
        // A kernel with the driver and kprobes: the submission probe attached and said so.
        let v: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON summary");
        common::assert_summary(&v);
        let entry = format!("kprobe:{}", host_plan::ISSUE_FN);
        let attached = v["probes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == entry.as_str() && p["status"] == "attached");
        assert!(attached, "{v}");
        assert!(ready.exists(), "readiness announced");
    } else {
        assert_eq!(out.status.code(), Some(3), "{stderr}");
        assert!(
            stdout.trim().is_empty(),
            "no summary without probes: {stdout}"
        );
        assert!(
            !ready.exists(),
            "readiness must not be announced without probes"
        );
        for (prog_kind, func) in [
            ("kprobe", host_plan::ISSUE_FN),
            ("kretprobe", host_plan::ISSUE_FN),
            ("kprobe", host_plan::WRITE_FN),
        ] {
            let label = format!("{prog_kind}:{func}");
            assert!(stderr.contains(&label), "no status for {label}:\n{stderr}");
        }
        assert!(
            stderr.contains("no probe on arm_smmu_cmdq_issue_cmdlist attached"),
            "{stderr}"
        );
        if !std::path::Path::new("/sys/bus/event_source/devices/kprobe/type").exists() {
            assert!(stderr.contains("no kprobe PMU"), "{stderr}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
