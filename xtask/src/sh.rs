//! The small shell every task stands on: where things are (repository, target and cache
//! folders), running commands with a useful error, one progress line per step, apt for the
//! Debian packages the tasks install.

use std::{
    env,
    ffi::OsString,
    path::{Path, PathBuf},
    process::{Command, ExitStatus},
    time::Instant,
};

use anyhow::{Context as _, Result, bail};

/// The repository's root folder (xtask sits one level below it).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives inside the workspace")
        .to_path_buf()
}

/// Where cargo puts build output (honours CARGO_TARGET_DIR like cargo does).
pub fn target_dir() -> PathBuf {
    env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

/// The cache shared by every clone on this machine (bpf-linker, cargo-fuzz, guest images), so a
/// second clone skips the slow installs.
pub fn cache_dir() -> PathBuf {
    if let Some(x) = env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(x).join("cmdqv");
    }
    let home = env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"));
    home.join(".cache").join("cmdqv")
}

/// Runs one bootstrap step and prints its one progress line: what it did and how long it took.
pub fn step(name: &str, f: impl FnOnce() -> Result<String>) -> Result<()> {
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

/// Runs `cmd` and returns its stdout; a failure carries the command and its stderr.
pub fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `cmd` with the terminal's stdout and stderr; fails unless it exits 0.
pub fn run(cmd: &mut Command) -> Result<()> {
    let status: ExitStatus = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

/// Prints `[xtask] <what> ok (<secs>)` after a timed task step.
pub fn done(what: &str, t: Instant) {
    println!("[xtask] {what} ({:.1}s)", t.elapsed().as_secs_f64());
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { geteuid() == 0 }
}

// xtask links no libc crate for this one call.
unsafe extern "C" {
    fn geteuid() -> u32;
}

/// The first `bin` on PATH.
pub fn which(bin: &str) -> Option<PathBuf> {
    env::split_paths(&env::var_os("PATH")?)
        .map(|d| d.join(bin))
        .find(|p| p.exists())
}

/// `dir` in front of `path` (a PATH value).
pub fn prepend_path(dir: PathBuf, path: &OsString) -> Result<OsString> {
    let mut paths = vec![dir];
    paths.extend(env::split_paths(path));
    Ok(env::join_paths(paths)?)
}

/// `cargo` (the one running xtask) in the repository root with `path` as PATH.
pub fn cargo(path: &OsString) -> Command {
    let mut c = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.current_dir(root()).env("PATH", path);
    c
}

/// Installs Debian packages, refreshing the package lists once per process.
pub fn apt_install(pkgs: &[&str]) -> Result<()> {
    static UPDATED: std::sync::Once = std::sync::Once::new();
    UPDATED.call_once(|| {
        let _ = Command::new("apt-get").args(["update", "-qq"]).status();
    });
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(pkgs)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

/// Makes sure every `(binary, Debian package)` is present, installing the missing ones as root.
pub fn ensure_tools(tools: &[(&str, &str)]) -> Result<String> {
    let pkgs: Vec<&str> = tools
        .iter()
        .filter(|(bin, _)| which(bin).is_none())
        .map(|(_, pkg)| *pkg)
        .collect();
    if pkgs.is_empty() {
        return Ok("present".into());
    }
    if !is_root() {
        bail!(
            "missing {}: install with `apt-get install {}`",
            pkgs.join(", "),
            pkgs.join(" ")
        );
    }
    apt_install(&pkgs)?;
    Ok(format!("installed {}", pkgs.join(", ")))
}
