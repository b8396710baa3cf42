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
