//! What several tasks build with cargo: the release `cmdqv` binary, and the cargo-installed
//! tools (cargo-fuzz, cargo-deb) cached outside the checkout like bpf-linker.

use std::{ffi::OsString, fs, path::PathBuf, process::Command, time::Instant};

use anyhow::{Result, bail};

use crate::sh::{cache_dir, cargo, done, run, target_dir};

/// The release build of the `cmdqv` binary; returns its path.
pub fn build(path: &OsString) -> Result<PathBuf> {
    let t = Instant::now();
    run(cargo(path).args(["build", "--release", "-p", "cmdqv-tui", "--bin", "cmdqv"]))?;
    done("build: release build", t);
    Ok(target_dir().join("release/cmdqv"))
}

/// `cargo install --locked KRATE` into `~/.cache/cmdqv/KRATE` unless its binary is there
/// already; the log of the install goes beside it.
pub fn cargo_install_cached(krate: &str) -> Result<String> {
    let dir = cache_dir().join(krate);
    let bin = dir.join("bin").join(krate);
    if bin.exists() {
        return Ok(format!("cached at {}", bin.display()));
    }
    let log = cache_dir().join(format!("{krate}-install.log"));
    fs::create_dir_all(cache_dir())?;
    let f = fs::File::create(&log)?;
    let status = Command::new("cargo")
        .args(["install", krate, "--locked", "--root"])
        .arg(&dir)
        .stdout(f.try_clone()?)
        .stderr(f)
        .status()?;
    if !status.success() || !bin.exists() {
        bail!("cargo install {krate} failed (log: {})", log.display());
    }
    Ok(format!("installed at {}", bin.display()))
}
