//! `cargo xtask bootstrap`: everything the build needs beyond stable Rust, installed idempotently,
//! one progress line per step: the pinned nightly (with rust-src, and clippy for the test task),
//! bpf-linker linked against that nightly's LLVM and cached outside the checkout, tracefs, and
//! the tools the tests drive.

use std::{
    env,
    ffi::OsString,
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use crate::{
    pin::{EbpfPin, PIN_FILE},
    sh::{apt_install, cache_dir, ensure_tools, is_root, output, prepend_path, root, run, step},
};

/// The shared rust-src tarball (../shared/toolchain) and the one nightly commit it fits.
const RUST_SRC_TARBALL: &str = "../shared/toolchain/rust-src-nightly-2026-05-19.tar.xz";
const RUST_SRC_TARBALL_COMMIT: &str = "e50aa6fba";

/// What the build tasks need after bootstrap.
pub struct Toolchain {
    /// PATH with the cached bpf-linker first.
    pub path: OsString,
    /// The pinned nightly's rustup name (for `rustup run`).
    pub nightly: String,
}

/// The pinned nightly as installed.
struct Nightly {
    name: String,
    sysroot: PathBuf,
    llvm: String,
    commit: String,
}

/// Runs every bootstrap step; `test_tools` adds what only the test task needs.
pub fn bootstrap(test_tools: bool) -> Result<Toolchain> {
    let pin = EbpfPin::load(&root())?;
    let mut n = None;
    step("nightly toolchain", || {
        let (nn, how) = ensure_nightly(&pin)?;
        let msg = format!(
            "{} (commit {} LLVM {}, {how})",
            nn.name,
            &nn.commit[..nn.commit.len().min(9)],
            nn.llvm
        );
        n = Some(nn);
        Ok(msg)
    })?;
    let n = n.expect("the nightly step sets it or fails");
    step("rust-src (nightly)", || ensure_rust_src(&n))?;
    step("bpf-linker", || ensure_bpf_linker(&n, &pin))?;
    step("tracefs", ensure_tracefs)?;
    if test_tools {
        step("clippy (nightly)", || ensure_clippy(&n))?;
        step("test tools", || {
            ensure_tools(&[
                ("tmux", "tmux"),
                // Decodes `cmdqv export --perfetto` with Perfetto's published schema.
                ("protoc", "protobuf-compiler"),
                // Renders `cmdqv report`'s HTML headless.
                ("chromium", "chromium"),
                // systemd-analyze checks the service unit, groff the man page (tests/cli_ship.rs).
                ("systemd-analyze", "systemd"),
                ("groff", "groff-base"),
                // prometheus also brings promtool (the metrics tests start a real Prometheus).
                ("prometheus", "prometheus"),
                // aarch64-linux-gnu-as: the aarch64 KVM guest program's words are checked against it.
                ("aarch64-linux-gnu-as", "binutils-aarch64-linux-gnu"),
            ])
        })?;
    }
    let path = prepend_path(
        bpf_linker_dir(&n, &pin).join("bin"),
        &env::var_os("PATH").unwrap_or_default(),
    )?;
    Ok(Toolchain {
        path,
        nightly: n.name,
    })
}

fn rustup_run(toolchain: &str) -> Command {
    let mut c = Command::new("rustup");
    c.args(["run", toolchain]);
    c
}

/// The pinned nightly, installed with rustup when absent, and checked against the pin.
fn ensure_nightly(pin: &EbpfPin) -> Result<(Nightly, &'static str)> {
    let name = pin.nightly.as_str();
    let mut how = "present";
    let mut vv = output(rustup_run(name).args(["rustc", "-vV"]));
    if vv.is_err() {
        output(Command::new("rustup").args([
            "toolchain",
            "install",
            name,
            "--profile",
            "minimal",
            "--component",
            "rust-src",
        ]))
        .with_context(|| {
            format!(
                "the eBPF build needs the nightly pinned in {PIN_FILE} ({name}) and rustup could \
                 not install it: run `rustup toolchain install {name} --profile minimal \
                 --component rust-src`"
            )
        })?;
        how = "installed with rustup";
        vv = output(rustup_run(name).args(["rustc", "-vV"]));
    }
    let vv = vv?;
    let field = |k: &str| {
        vv.lines()
            .find_map(|l| l.strip_prefix(k))
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    let (commit, llvm) = (field("commit-hash:"), field("LLVM version:"));
    pin.verify(&commit, &llvm)?;
    let sysroot = output(rustup_run(name).args(["rustc", "--print", "sysroot"]))?;
    let nightly = Nightly {
        name: name.to_string(),
        sysroot: PathBuf::from(sysroot.trim()),
        llvm,
        commit,
    };
    Ok((nightly, how))
}

fn ensure_rust_src(n: &Nightly) -> Result<String> {
    let core = n
        .sysroot
        .join("lib/rustlib/src/rust/library/core/Cargo.toml");
    if core.exists() {
        return Ok("present".into());
    }
    let added = Command::new("rustup")
        .args(["component", "add", "rust-src", "--toolchain", &n.name])
        .output();
    if matches!(&added, Ok(o) if o.status.success()) && core.exists() {
        return Ok("installed with rustup".into());
    }
    let tarball = root().join(RUST_SRC_TARBALL);
    if tarball.exists() && n.commit.starts_with(RUST_SRC_TARBALL_COMMIT) {
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
         `rustup component add rust-src --toolchain {}`",
        n.name
    )
}

/// The test task lints the eBPF crate with the pinned nightly's clippy.
fn ensure_clippy(n: &Nightly) -> Result<String> {
    if output(rustup_run(&n.name).args(["cargo-clippy", "--version"])).is_ok() {
        return Ok("present".into());
    }
    output(Command::new("rustup").args(["component", "add", "clippy", "--toolchain", &n.name]))
        .context("`rustup component add clippy` failed for the pinned nightly")?;
    Ok("installed with rustup".into())
}

fn bpf_linker_dir(n: &Nightly, pin: &EbpfPin) -> PathBuf {
    cache_dir().join(format!("bpf-linker-{}-llvm-{}", pin.bpf_linker, n.llvm))
}

fn ensure_bpf_linker(n: &Nightly, pin: &EbpfPin) -> Result<String> {
    let dir = bpf_linker_dir(n, pin);
    let bin = dir.join("bin/bpf-linker");
    let works = |bin: &Path| {
        Command::new(bin)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if bin.exists() && works(&bin) {
        return Ok(format!("cached at {}", bin.display()));
    }
    let mut tried = Vec::new();
    match linker_against_nightly_llvm(n, pin, &dir) {
        Ok(()) if bin.exists() => {
            return Ok(format!(
                "built against the nightly's LLVM {} → {}",
                n.llvm,
                bin.display()
            ));
        }
        r => tried.push(format!("route A (nightly libLLVM): {:?}", r.err())),
    }
    let prefix = PathBuf::from(format!("/usr/lib/llvm-{}", pin.llvm_major));
    match linker_against_debian_llvm(pin, &dir, &prefix) {
        Ok(()) if bin.exists() => Ok(format!(
            "built against {} → {}",
            prefix.display(),
            bin.display()
        )),
        r => {
            tried.push(format!("route B ({}): {:?}", prefix.display(), r.err()));
            let (v, major) = (&pin.bpf_linker, &pin.llvm_major);
            bail!(
                "bpf-linker {v} could not be built for LLVM {major}: {}. Install llvm-{major}-dev \
                 and re-run `cargo xtask bootstrap`",
                tried.join("; ")
            )
        }
    }
}

/// Route A, no apt: a prefix whose lib/ holds the nightly's own libLLVM under both the name
/// llvm-sys links and its own.
fn linker_against_nightly_llvm(n: &Nightly, pin: &EbpfPin, dir: &Path) -> Result<()> {
    let libdir = n.sysroot.join("lib");
    let so = fs::read_dir(&libdir)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|f| f.starts_with("libLLVM.so.") || (f.starts_with("libLLVM-") && f.ends_with(".so")))
        .with_context(|| format!("no libLLVM in {}", libdir.display()))?;
    let prefix = dir.join("L");
    let lib = prefix.join("lib");
    fs::create_dir_all(&lib)?;
    for name in ["libLLVM.so", so.as_str()] {
        let link = lib.join(name);
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(libdir.join(&so), &link)?;
    }
    install_bpf_linker(pin, dir, &prefix)
}

/// Route B: Debian's llvm-N-dev, installed when absent and root.
fn linker_against_debian_llvm(pin: &EbpfPin, dir: &Path, prefix: &Path) -> Result<()> {
    if !prefix.exists() && is_root() {
        apt_install(&[&format!("llvm-{}-dev", pin.llvm_major)])?;
    }
    if !prefix.exists() {
        bail!("{} is absent", prefix.display());
    }
    install_bpf_linker(pin, dir, prefix)
}

fn install_bpf_linker(pin: &EbpfPin, dir: &Path, llvm_prefix: &Path) -> Result<()> {
    fs::create_dir_all(dir)?;
    let log = dir.join("install.log");
    let logf = fs::File::create(&log)?;
    let status = Command::new("cargo")
        .args(["install", "bpf-linker", "--version", &pin.bpf_linker])
        .args(["--locked", "--no-default-features", "--features"])
        .arg(format!("llvm-{}", pin.llvm_major))
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
