//! The tasks that build and run cmdqv: build, run, test, fuzz, bench, bench-probes.

use std::{
    env, ffi::OsString, fs, os::unix::process::CommandExt as _, path::PathBuf, process::Command,
    time::Instant,
};

use anyhow::{Context as _, Result, bail};

use crate::{
    bootstrap::{Toolchain, bootstrap},
    builds::{build, cargo_install_cached},
    guest::inside,
    lint, package,
    sh::{cache_dir, cargo, done, ensure_tools, prepend_path, root, run, step, target_dir},
};

/// Names a ready `cmdqv` binary to use instead of bootstrapping and building one (for `run`,
/// `bench-probes` and `guest`); the tests point it at a stand-in that records its argv.
pub const CMDQV_OVERRIDE: &str = "XTASK_CMDQV";

/// The `cmdqv` binary to run: the override if set, else bootstrap and build.
pub fn cmdqv_binary() -> Result<PathBuf> {
    if let Some(bin) = env::var_os(CMDQV_OVERRIDE) {
        return Ok(PathBuf::from(bin));
    }
    build(&bootstrap(false)?.path)
}

/// Replaces xtask with `cmdqv ARGS` (the terminal belongs to the TUI from here on).
pub fn run_cmdqv(args: &[OsString]) -> Result<()> {
    let bin = cmdqv_binary()?;
    println!("[xtask] run: {} {}", bin.display(), shown(args));
    let err = Command::new(&bin).args(args).exec();
    bail!("could not start {}: {err}", bin.display())
}

/// `cargo bench ARGS`.
pub fn bench(args: &[OsString]) -> Result<()> {
    let tc = bootstrap(false)?;
    run(cargo(&tc.path).arg("bench").args(args))
}

/// `cmdqv bench-probes ARGS`, with bpftrace installed to compare against.
pub fn bench_probes(args: &[OsString]) -> Result<()> {
    let bin = cmdqv_binary()?;
    step("bpftrace", || ensure_tools(&[("bpftrace", "bpftrace")]))?;
    println!(
        "[xtask] bench-probes: {} bench-probes {}",
        bin.display(),
        shown(args)
    );
    run(Command::new(&bin).arg("bench-probes").args(args))
}

/// `cmdqv bench-serve ARGS`: serve's CPU share on a host with 128 queues.
pub fn bench_serve(args: &[OsString]) -> Result<()> {
    let bin = cmdqv_binary()?;
    println!(
        "[xtask] bench-serve: {} bench-serve {}",
        bin.display(),
        shown(args)
    );
    run(Command::new(&bin).arg("bench-serve").args(args))
}

fn shown(args: &[OsString]) -> String {
    let v: Vec<_> = args.iter().map(|a| a.to_string_lossy()).collect();
    v.join(" ")
}

/// fmt, the structure lint, clippy for the host crates and for the eBPF crate's own target,
/// every test, the Debian package built and checked, brief fuzzing, then cmdqv built for aarch64 and checked inside the arm64 guest
/// (4 KiB and 16 KiB pages): in that order, stopping at the first failure.
pub fn test() -> Result<()> {
    let tc = bootstrap(true)?;
    let t = Instant::now();
    run(cargo(&tc.path).args(["fmt", "--all", "--", "--check"]))
        .context("formatting differs: run `cargo fmt --all`")?;
    done("test: fmt ok", t);
    let t = Instant::now();
    lint::check(&root())?;
    done("test: lint ok", t);
    let t = Instant::now();
    run(cargo(&tc.path).args(["clippy", "--all-targets", "--", "-D", "warnings"]))?;
    done("test: clippy (host crates) ok", t);
    let t = Instant::now();
    run(Command::new("rustup")
        .current_dir(root().join("cmdqv-ebpf/probes"))
        .env("PATH", &tc.path)
        .args(["run", &tc.nightly, "cargo", "clippy"])
        .args(["--target", "bpfel-unknown-none", "-Z", "build-std=core"])
        .arg("--target-dir")
        .arg(target_dir().join("bpf-clippy"))
        .args(["--", "-D", "warnings"]))?;
    done("test: clippy (eBPF crate, bpfel-unknown-none) ok", t);
    let t = Instant::now();
    run(cargo(&tc.path).args(["test", "--release"]))?;
    done("test: all tests passed", t);
    package::build_package(&tc)?;
    fuzz_briefly(&tc)?;
    inside::test_in_guests(&tc)
}

/// `cargo xtask fuzz`.
pub fn fuzz() -> Result<()> {
    fuzz_briefly(&bootstrap(false)?)
}

/// cargo-fuzz, cached outside the checkout like bpf-linker.
fn ensure_cargo_fuzz() -> Result<String> {
    cargo_install_cached("cargo-fuzz")
}

/// The cargo-fuzz targets of cmdqv-core: arbitrary MMIO sequences over guest memory, qtest
/// lines, command words, trace files, kernel BTF.
const FUZZ_TARGETS: [&str; 5] = ["mmio", "qtest", "command", "trace_reader", "btf"];

/// Runs every cargo-fuzz target for a few seconds (CMDQV_FUZZ_SECS, default 8; 0 skips), with
/// the pinned nightly (sanitizers need a nightly).
fn fuzz_briefly(tc: &Toolchain) -> Result<()> {
    let secs: u64 = env::var("CMDQV_FUZZ_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    if secs == 0 {
        println!("[xtask] fuzz: skipped (CMDQV_FUZZ_SECS=0)");
        return Ok(());
    }
    step("cargo-fuzz", ensure_cargo_fuzz)?;
    let path = prepend_path(cache_dir().join("cargo-fuzz/bin"), &tc.path)?;
    for target in FUZZ_TARGETS {
        fuzz_one(tc, &path, target, secs)?;
    }
    Ok(())
}

fn fuzz_one(tc: &Toolchain, path: &OsString, target: &str, secs: u64) -> Result<()> {
    let t = Instant::now();
    // libFuzzer's progress goes to a log; on a crash its tail is shown.
    let log = target_dir().join(format!("fuzz-{target}.log"));
    fs::create_dir_all(target_dir())?;
    let f = fs::File::create(&log)?;
    let status = Command::new("rustup")
        .current_dir(root().join("cmdqv-core"))
        .env("PATH", path)
        .args(["run", &tc.nightly, "cargo", "fuzz", "run", target, "--"])
        .arg(format!("-max_total_time={secs}"))
        .arg("-print_final_stats=1")
        .stdout(f.try_clone()?)
        .stderr(f)
        .status()?;
    let text = fs::read_to_string(&log).unwrap_or_default();
    if !status.success() {
        let tail: Vec<&str> = text.lines().rev().take(40).collect();
        for l in tail.iter().rev() {
            println!("{l}");
        }
        bail!(
            "fuzz target {target} failed (log {}; crash inputs in cmdqv-core/fuzz/artifacts/{target})",
            log.display()
        );
    }
    let runs = text
        .lines()
        .find_map(|l| l.strip_prefix("stat::number_of_executed_units:"))
        .map_or("?", str::trim);
    println!(
        "[xtask] fuzz: {target}: {runs} inputs in {secs}s, no crash ({:.1}s; log {})",
        t.elapsed().as_secs_f64(),
        log.display()
    );
    Ok(())
}
