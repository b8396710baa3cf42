//! `cmdqv sample` against a real process: the sim VMM (`cmdqv sim-vmm`, trapped-vs-vcmdq) backs
//! its LVCMDQs with the simulated host's memfd page0; `cmdqv sample --pid` finds that page in
//! the child, maps it through pidfd_getfd and must report LVCMDQ 1 consuming.

use std::{
    io::Write as _,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use cmdqv_tui::schema::RecordKind;

mod common;

#[test]
fn sample_reports_the_sim_vmms_hardware_backed_queue_consuming() {
    let exe = env!("CARGO_BIN_EXE_cmdqv");
    let mut vmm = Command::new(exe)
        .args([
            "sim-vmm",
            "--scenario",
            "trapped-vs-vcmdq",
            "--duration-ms",
            "5000",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = vmm.stdin.take().unwrap();
    writeln!(stdin, "go ebpf").unwrap();
    stdin.flush().unwrap();
    let pid = vmm.id();
    // Wait until the guest enabled its VINTF (page0 mapped).
    let deadline = Instant::now() + Duration::from_secs(5);
    while !std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .unwrap_or_default()
        .contains("cmdqv-vintf-page0")
    {
        assert!(Instant::now() < deadline, "the sim VMM never mapped page0");
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = Command::new(exe)
        .args([
            "sample",
            "--pid",
            &pid.to_string(),
            "--rate",
            "40",
            "--duration",
            "600ms",
            "--json",
            "--log2size",
            "10",
        ])
        .output()
        .unwrap();
    drop(stdin);
    let _ = vmm.kill();
    let _ = vmm.wait();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reports: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .inspect(|r| common::assert_schema(RecordKind::Sample, r))
        .collect();
    assert!(reports.len() >= 10, "{stdout}");
    let consumed: u64 = reports
        .iter()
        .flat_map(|r| r["queues"].as_array().unwrap().clone())
        .filter(|q| q["lidx"] == 1)
        .map(|q| q["commands"].as_u64().unwrap())
        .sum();
    assert!(consumed > 10, "LVCMDQ 1 did not advance: {stdout}");
    for r in &reports {
        for q in r["queues"].as_array().unwrap() {
            assert!(q["occupancy"].as_f64().unwrap() <= 1.0, "{q}");
        }
    }
}

/// `cmdqv sample --all` finds the sim VMM among every process on the host by its page0 memfd,
/// names it from its command line and reports its consuming LVCMDQ with `vm` and `pid`; a VMM
/// that exits meanwhile is let go while sampling goes on.
#[test]
fn sample_all_finds_every_vmm_and_names_each_report() {
    let exe = env!("CARGO_BIN_EXE_cmdqv");
    let name = format!("sample-all-{}", std::process::id());
    let start_vmm = |name: &str, ms: &str| {
        let mut vmm = Command::new(exe)
            .args([
                "sim-vmm",
                "--scenario",
                "trapped-vs-vcmdq",
                "--duration-ms",
                ms,
            ])
            .args(["--name", name])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdin = vmm.stdin.take().unwrap();
        writeln!(stdin, "go ebpf").unwrap();
        stdin.flush().unwrap();
        (vmm, stdin)
    };
    let (mut vmm, stdin) = start_vmm(&name, "8000");
    // A second VMM that stops after 1 s: it goes away while `sample --all` runs (long enough to
    // be found on a loaded machine, where a sim VMM can take a while to map its page0).
    let short = format!("{name}-short");
    let (mut gone, gone_in) = start_vmm(&short, "1000");
    let out = Command::new(exe)
        .args(["sample", "--all", "--rate", "20", "--duration", "3000ms"])
        .args(["--json", "--log2size", "10", "--rescan", "100ms"])
        .output()
        .unwrap();
    drop((stdin, gone_in));
    let _ = vmm.kill();
    let _ = vmm.wait();
    let _ = gone.wait();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let ours: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["vm"] == name.as_str())
        .collect();
    assert!(ours.len() >= 5, "{stdout}\n{stderr}");
    assert!(ours.iter().all(|r| r["pid"] == vmm.id()), "{stdout}");
    let consumed: u64 = ours
        .iter()
        .flat_map(|r| r["queues"].as_array().unwrap().clone())
        .filter(|q| q["lidx"] == 1)
        .map(|q| q["commands"].as_u64().unwrap())
        .sum();
    assert!(consumed > 10, "LVCMDQ 1 did not advance: {stdout}");
    assert!(
        stderr.contains(&format!("vm {short} (pid {}) went away", gone.id())),
        "{stderr}"
    );
}
