//! Developer tasks for cmdqv. `cargo xtask <task>`:
//!
//! - `bootstrap`: install what the build needs, idempotently (nightly rust-src, bpf-linker linked
//!   against the nightly's LLVM and cached under ~/.cache/cmdqv, tracefs, test tools).
//! - `build`: bootstrap + release build; prints the path of the `cmdqv` binary as its last line.
//! - `run [-- ARGS]`: build and start `cmdqv` (default: the live view on the simulated host).
//! - `test`: fmt check, clippy (host crates, and the eBPF crate for its target), every test
//!   including the privileged ones.
//! - `bench`: the benchmarks behind BENCHMARKS.md.
//! - `bench-probes [-- ARGS]`: the eBPF probe benchmark (our uprobe vs bpftrace, delivery at
//!   offered rates); installs bpftrace if missing (root), builds, runs `cmdqv bench-probes`.
//!
//! Each bootstrap step prints one line: what it did and how long it took. Failures say what is
//! missing and how to fix it.

use std::{
    env,
    ffi::OsString,
    path::{Path, PathBuf},
    process::{Command, ExitStatus},
    time::Instant,
};

use anyhow::{Context as _, Result, bail};

mod guest;

const NIGHTLY: &str = "nightly";
/// The nightly the shared rust-src tarball fits (commit e50aa6fba).
const NIGHTLY_COMMIT_PREFIX: &str = "e50aa6fba";
const BPF_LINKER_VERSION: &str = "0.13.0";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn step(name: &str, f: impl FnOnce() -> Result<String>) -> Result<()> {
    let t = Instant::now();
    match f() {
        Ok(msg) => {
            println!("[xtask] {name}: {msg} ({:.1}s)", t.elapsed().as_secs_f64());
            Ok(())
        }
        Err(e) => {
            println!("[xtask] {name}: FAILED ({:.1}s)", t.elapsed().as_secs_f64());
            Err(e.context(format!("bootstrap step `{name}` failed")))
        }
    }
}

fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn run(cmd: &mut Command) -> Result<()> {
    let status: ExitStatus = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc_geteuid() == 0 }
}

unsafe extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

fn cache_dir() -> PathBuf {
    if let Some(x) = env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(x).join("cmdqv");
    }
    let home = env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"));
    home.join(".cache").join("cmdqv")
}

struct Nightly {
    sysroot: PathBuf,
    llvm: String,
    commit: String,
}

fn nightly() -> Result<Nightly> {
    let vv = output(Command::new("rustup").args(["run", NIGHTLY, "rustc", "-vV"])).context(
        "no nightly toolchain: install it with `rustup toolchain install nightly --profile minimal` \
         (the eBPF target bpfel-unknown-none needs nightly + rust-src)",
    )?;
    let field = |k: &str| {
        vv.lines()
            .find_map(|l| l.strip_prefix(k))
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    let sysroot =
        output(Command::new("rustup").args(["run", NIGHTLY, "rustc", "--print", "sysroot"]))?;
    Ok(Nightly {
        sysroot: PathBuf::from(sysroot.trim()),
        llvm: field("LLVM version:"),
        commit: field("commit-hash:"),
    })
}

fn ensure_rust_src(n: &Nightly) -> Result<String> {
    let core = n
        .sysroot
        .join("lib/rustlib/src/rust/library/core/Cargo.toml");
    if core.exists() {
        return Ok("present".into());
    }
    let added = Command::new("rustup")
        .args(["component", "add", "rust-src", "--toolchain", NIGHTLY])
        .output();
    if matches!(&added, Ok(o) if o.status.success()) && core.exists() {
        return Ok("installed with rustup".into());
    }
    let tarball = root().join("../shared/toolchain/rust-src-nightly-2026-05-19.tar.xz");
    if tarball.exists() && n.commit.starts_with(NIGHTLY_COMMIT_PREFIX) {
        run(Command::new("tar")
            .arg("-C")
            .arg(&n.sysroot)
            .arg("-xJf")
            .arg(&tarball))?;
        if core.exists() {
            return Ok(format!("installed from {}", tarball.display()));
        }
    }
    bail!(
        "rust-src for the nightly is missing and could not be installed: run \
         `rustup component add rust-src --toolchain nightly`"
    )
}

fn bpf_linker_dir(n: &Nightly) -> PathBuf {
    cache_dir().join(format!("bpf-linker-{BPF_LINKER_VERSION}-llvm-{}", n.llvm))
}

fn ensure_bpf_linker(n: &Nightly) -> Result<String> {
    let dir = bpf_linker_dir(n);
    let bin = dir.join("bin/bpf-linker");
    if bin.exists()
        && Command::new(&bin)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    {
        return Ok(format!("cached at {}", bin.display()));
    }
    let major = n.llvm.split('.').next().unwrap_or("").to_string();
    if major.is_empty() {
        bail!("cannot tell the nightly's LLVM version");
    }
    // Route A: link against the nightly's own libLLVM (no apt needed).
    let libdir = n.sysroot.join("lib");
    let llvm_so = std::fs::read_dir(&libdir)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|f| {
            f.starts_with("libLLVM.so.") || (f.starts_with("libLLVM-") && f.ends_with(".so"))
        });
    let mut tried = Vec::new();
    if let Some(so) = llvm_so {
        let prefix = dir.join("L");
        let lib = prefix.join("lib");
        std::fs::create_dir_all(&lib)?;
        for name in ["libLLVM.so".to_string(), so.clone()] {
            let link = lib.join(&name);
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink(libdir.join(&so), &link)?;
        }
        let r = install_bpf_linker(&dir, &prefix, &major);
        if r.is_ok() && bin.exists() {
            return Ok(format!(
                "built against the nightly's LLVM {} → {}",
                n.llvm,
                bin.display()
            ));
        }
        tried.push(format!("route A (nightly libLLVM): {:?}", r.err()));
    }
    // Route B: Debian's llvm-N-dev.
    let prefix = PathBuf::from(format!("/usr/lib/llvm-{major}"));
    if !prefix.exists() && is_root() {
        apt_install(&[&format!("llvm-{major}-dev")])?;
    }
    if prefix.exists() {
        let r = install_bpf_linker(&dir, &prefix, &major);
        if r.is_ok() && bin.exists() {
            return Ok(format!(
                "built against {} → {}",
                prefix.display(),
                bin.display()
            ));
        }
        tried.push(format!("route B ({}): {:?}", prefix.display(), r.err()));
    }
    bail!(
        "bpf-linker {BPF_LINKER_VERSION} could not be built for LLVM {major}: {}. Install llvm-{major}-dev \
         and re-run `cargo xtask bootstrap`",
        tried.join("; ")
    )
}

fn install_bpf_linker(dir: &Path, llvm_prefix: &Path, major: &str) -> Result<()> {
    let log = dir.join("install.log");
    let logf = std::fs::File::create(&log)?;
    let status = Command::new("cargo")
        .args([
            "install",
            "bpf-linker",
            "--version",
            BPF_LINKER_VERSION,
            "--locked",
        ])
        .args([
            "--no-default-features",
            "--features",
            &format!("llvm-{major}"),
        ])
        .arg("--root")
        .arg(dir)
        .env("LLVM_PREFIX", llvm_prefix)
        .stdout(logf.try_clone()?)
        .stderr(logf)
        .status()?;
    if !status.success() {
        bail!("cargo install bpf-linker failed (log: {})", log.display());
    }
    Ok(())
}

fn apt_install(pkgs: &[&str]) -> Result<()> {
    static UPDATED: std::sync::Once = std::sync::Once::new();
    UPDATED.call_once(|| {
        let _ = Command::new("apt-get").args(["update", "-qq"]).status();
    });
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(pkgs)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

fn ensure_tracefs() -> Result<String> {
    if Path::new("/sys/kernel/tracing/events").is_dir() {
        return Ok("mounted".into());
    }
    if Path::new("/sys/kernel/debug/tracing/events").is_dir() {
        return Ok("mounted (debugfs)".into());
    }
    if !is_root() {
        return Ok(
            "not mounted (not root: tracepoint probes will be unavailable; \
                   `sudo mount -t tracefs nodev /sys/kernel/tracing`)"
                .into(),
        );
    }
    run(Command::new("mount").args(["-t", "tracefs", "nodev", "/sys/kernel/tracing"]))?;
    Ok("mounted at /sys/kernel/tracing".into())
}

fn ensure_tools(tools: &[(&str, &str)]) -> Result<String> {
    let missing: Vec<_> = tools
        .iter()
        .filter(|(bin, _)| which(bin).is_none())
        .collect();
    if missing.is_empty() {
        return Ok("present".into());
    }
    if !is_root() {
        let pkgs: Vec<_> = missing.iter().map(|(_, p)| *p).collect();
        bail!(
            "missing {}: install with `apt-get install {}`",
            pkgs.join(", "),
            pkgs.join(" ")
        );
    }
    let pkgs: Vec<_> = missing.iter().map(|(_, p)| *p).collect();
    apt_install(&pkgs)?;
    Ok(format!("installed {}", pkgs.join(", ")))
}

fn which(bin: &str) -> Option<PathBuf> {
    env::split_paths(&env::var_os("PATH")?)
        .map(|d| d.join(bin))
        .find(|p| p.exists())
}

/// Runs every bootstrap step; returns the PATH to use for builds (bpf-linker first).
fn bootstrap(test_tools: bool) -> Result<OsString> {
    let mut n = None;
    step("nightly toolchain", || {
        let nn = nightly()?;
        let msg = format!(
            "commit {} LLVM {}",
            &nn.commit[..nn.commit.len().min(9)],
            nn.llvm
        );
        n = Some(nn);
        Ok(msg)
    })?;
    let n = n.unwrap();
    step("rust-src (nightly)", || ensure_rust_src(&n))?;
    step("bpf-linker", || ensure_bpf_linker(&n))?;
    step("tracefs", ensure_tracefs)?;
    if test_tools {
        step("test tools", || ensure_tools(&[("tmux", "tmux")]))?;
    }
    let mut paths = vec![bpf_linker_dir(&n).join("bin")];
    paths.extend(env::split_paths(&env::var_os("PATH").unwrap_or_default()));
    Ok(env::join_paths(paths)?)
}

fn cargo(path: &OsString) -> Command {
    let mut c = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.current_dir(root()).env("PATH", path);
    c
}

fn build(path: &OsString) -> Result<PathBuf> {
    let t = Instant::now();
    run(cargo(path).args(["build", "--release", "-p", "cmdqv-tui", "--bin", "cmdqv"]))?;
    println!(
        "[xtask] build: release build ({:.1}s)",
        t.elapsed().as_secs_f64()
    );
    Ok(target_dir().join("release/cmdqv"))
}

fn target_dir() -> PathBuf {
    env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

fn test(path: &OsString) -> Result<()> {
    let t = Instant::now();
    run(cargo(path).args(["fmt", "--all", "--", "--check"]))
        .context("formatting differs: run `cargo fmt --all`")?;
    println!("[xtask] test: fmt ok ({:.1}s)", t.elapsed().as_secs_f64());
    let t = Instant::now();
    run(cargo(path).args(["clippy", "--all-targets", "--", "-D", "warnings"]))?;
    println!(
        "[xtask] test: clippy (host crates) ok ({:.1}s)",
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    run(Command::new("rustup")
        .current_dir(root().join("cmdqv-ebpf/probes"))
        .env("PATH", path)
        .args([
            "run",
            NIGHTLY,
            "cargo",
            "clippy",
            "--target",
            "bpfel-unknown-none",
        ])
        .args(["-Z", "build-std=core", "--target-dir"])
        .arg(target_dir().join("bpf-clippy"))
        .args(["--", "-D", "warnings"]))?;
    println!(
        "[xtask] test: clippy (eBPF crate, bpfel-unknown-none) ok ({:.1}s)",
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    run(cargo(path).args(["test", "--release"]))?;
    println!(
        "[xtask] test: all tests passed ({:.1}s)",
        t.elapsed().as_secs_f64()
    );
    fuzz_briefly(path)?;
    Ok(())
}

/// cargo-fuzz, cached outside the checkout like bpf-linker.
fn ensure_cargo_fuzz() -> Result<String> {
    let dir = cache_dir().join("cargo-fuzz");
    let bin = dir.join("bin/cargo-fuzz");
    if bin.exists() {
        return Ok(format!("cached at {}", bin.display()));
    }
    let log = cache_dir().join("cargo-fuzz-install.log");
    std::fs::create_dir_all(cache_dir())?;
    let f = std::fs::File::create(&log)?;
    let status = Command::new("cargo")
        .args(["install", "cargo-fuzz", "--locked", "--root"])
        .arg(&dir)
        .stdout(f.try_clone()?)
        .stderr(f)
        .status()?;
    if !status.success() || !bin.exists() {
        bail!("cargo install cargo-fuzz failed (log: {})", log.display());
    }
    Ok(format!("installed at {}", bin.display()))
}

/// Runs every cargo-fuzz target of cmdqv-core for a few seconds (CMDQV_FUZZ_SECS, default 8;
/// 0 skips): arbitrary MMIO sequences over guest memory, qtest lines, command words, trace files.
fn fuzz_briefly(path: &OsString) -> Result<()> {
    let secs: u64 = env::var("CMDQV_FUZZ_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    if secs == 0 {
        println!("[xtask] fuzz: skipped (CMDQV_FUZZ_SECS=0)");
        return Ok(());
    }
    step("cargo-fuzz", ensure_cargo_fuzz)?;
    let mut paths = vec![cache_dir().join("cargo-fuzz/bin")];
    paths.extend(env::split_paths(path));
    let path = env::join_paths(paths)?;
    for target in ["mmio", "qtest", "command", "trace_reader"] {
        let t = Instant::now();
        // libFuzzer's progress goes to a log; on a crash its tail is shown.
        let log = target_dir().join(format!("fuzz-{target}.log"));
        std::fs::create_dir_all(target_dir())?;
        let f = std::fs::File::create(&log)?;
        let status = Command::new("rustup")
            .current_dir(root().join("cmdqv-core"))
            .env("PATH", &path)
            .args(["run", NIGHTLY, "cargo", "fuzz", "run", target, "--"])
            .arg(format!("-max_total_time={secs}"))
            .arg("-print_final_stats=1")
            .stdout(f.try_clone()?)
            .stderr(f)
            .status()?;
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let runs = text
            .lines()
            .find_map(|l| l.strip_prefix("stat::number_of_executed_units:"))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| "?".into());
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
        println!(
            "[xtask] fuzz: {target}: {runs} inputs in {secs}s, no crash ({:.1}s; log {})",
            t.elapsed().as_secs_f64(),
            log.display()
        );
    }
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = env::args().skip(1).collect();
    let task = args.first().map(String::as_str).unwrap_or("help");
    let rest: Vec<String> = args
        .iter()
        .skip(1)
        .filter(|a| *a != "--")
        .cloned()
        .collect();
    match task {
        "bootstrap" => {
            bootstrap(true)?;
        }
        "build" => {
            let path = bootstrap(false)?;
            let bin = build(&path)?;
            println!("{}", bin.display());
        }
        "run" => {
            let path = bootstrap(false)?;
            let bin = build(&path)?;
            let args = if rest.is_empty() {
                default_run_args()
            } else {
                rest
            };
            println!("[xtask] run: {} {}", bin.display(), args.join(" "));
            use std::os::unix::process::CommandExt as _;
            let err = Command::new(&bin).args(&args).exec();
            bail!("could not start {}: {err}", bin.display());
        }
        "test" => {
            let path = bootstrap(true)?;
            test(&path)?;
        }
        "guest" => guest::main(&args[1..])?,
        "fuzz" => {
            let path = bootstrap(false)?;
            fuzz_briefly(&path)?;
        }
        "bench" => {
            let path = bootstrap(false)?;
            run(cargo(&path).args(["bench"]).args(&rest))?;
        }
        "bench-probes" => {
            let path = bootstrap(false)?;
            step("bpftrace", || ensure_tools(&[("bpftrace", "bpftrace")]))?;
            let bin = build(&path)?;
            println!(
                "[xtask] bench-probes: {} bench-probes {}",
                bin.display(),
                rest.join(" ")
            );
            run(Command::new(&bin).arg("bench-probes").args(&rest))?;
        }
        _ => {
            println!(
                "usage: cargo xtask <bootstrap|build|run [-- ARGS]|test|fuzz|bench|bench-probes [-- ARGS]|guest [OPTIONS]>\n\
                 \n  run    build and start the live view (default: the simulated host)\
                 \n  test   fmt, clippy (host + eBPF), all tests incl. privileged ones, brief fuzzing\
                 \n  build  release build; prints the cmdqv binary path last\
                 \n  fuzz   every cargo-fuzz target for CMDQV_FUZZ_SECS (default 8) seconds\
                 \n  bench  criterion benchmarks (model, collector, TUI frame)\
                 \n  bench-probes  eBPF probe cost vs bpftrace, delivery at offered rates\
                 \n  guest  a real arm64 Linux guest on QEMU's SMMUv3 (--qemu 7.2|10.0, --prepare-only, --bench N)"
            );
        }
    }
    Ok(())
}

/// What `cargo xtask run` starts when given no arguments: the live view of the simulated host
/// (no Grace host exists here; `cmdqv qemu --pid` or `host` are chosen explicitly).
fn default_run_args() -> Vec<String> {
    vec!["sim".into()]
}
