//! Privileged smoke test of `cmdqv bench-probes` (the benchmark behind BENCHMARKS.md § eBPF
//! probes) at a tiny size: it runs, every probed call is accounted for (delivered + dropped), and
//! nothing is dropped at a rate this low. It measures nothing; the benchmark does.

use std::process::Command;

#[test]
fn bench_probes_runs_and_accounts_for_every_call() {
    if std::env::var_os("CMDQV_SKIP_PRIVILEGED").is_some_and(|v| v == "1") {
        eprintln!("CMDQV_SKIP_PRIVILEGED=1: skipping a privileged eBPF test");
        return;
    }
    assert_eq!(unsafe { libc::geteuid() }, 0, "loads eBPF: needs root");
    let out = Command::new(env!("CARGO_BIN_EXE_cmdqv"))
        .args([
            "bench-probes",
            "--calls",
            "2000",
            "--runs",
            "1",
            "--rates",
            "1000",
            "--rate-secs",
            "0.2",
            "--no-bpftrace",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !text.contains("note:"),
        "a variant lost track of calls: {text}"
    );
    // The two draining variants deliver everything; the rate rows too.
    assert_eq!(text.matches("| 2000 / 0 |").count(), 3, "{text}");
    assert_eq!(text.matches("| 200 | 0 |").count(), 2, "{text}");
}
