//! Builds cmdqv's eBPF programs for bpfel-unknown-none (nightly + build-std, linked by bpf-linker)
//! and leaves the object in OUT_DIR, where src/ebpf embeds it. `cargo xtask` installs the nightly's
//! rust-src and bpf-linker first; AYA_BUILD_SKIP=1 skips this for host-only steps. It also
//! records the git commit the binary is built from, for `cmdqv --version`.
use std::{path::PathBuf, process::Command};

fn main() -> anyhow::Result<()> {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    println!("cargo:rustc-env=CMDQV_GIT_COMMIT={}", git_commit(&manifest));
    let root = manifest.join("../cmdqv-ebpf/probes");
    let root = root.canonicalize().unwrap_or(root);
    let root_dir = root.to_string_lossy().into_owned();
    println!(
        "cargo:rerun-if-changed={}",
        manifest.join("../cmdqv-ebpf/common/src").display()
    );
    let skip = std::env::var("AYA_BUILD_SKIP").map(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    if skip.unwrap_or(false) {
        // Leave an empty object so include_bytes! still compiles; the loader reports it as absent.
        let out = PathBuf::from(std::env::var("OUT_DIR")?).join("cmdqv-ebpf");
        if !out.exists() {
            std::fs::write(&out, b"")?;
        }
    }
    // The dated nightly pinned with its bpf-linker in ebpf-toolchain.toml (that file says why);
    // `cargo xtask bootstrap` installs it.
    let pinned = pinned_nightly(include_str!("../ebpf-toolchain.toml"))?;
    // Versions shown by `cmdqv doctor`.
    let nightly = std::process::Command::new("rustc")
        .arg(format!("+{pinned}"))
        .arg("-V")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    println!("cargo:rustc-env=CMDQV_BUILD_NIGHTLY={nightly}");
    let linker = std::process::Command::new("bpf-linker")
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    println!("cargo:rustc-env=CMDQV_BUILD_BPF_LINKER={linker}");
    let pkg = aya_build::Package {
        name: "cmdqv-ebpf",
        root_dir: &root_dir,
        ..Default::default()
    };
    // aya-build forwards every stderr line of the inner cargo as a build-script warning; keep
    // that cargo quiet so only real diagnostics show up (as `warning: cmdqv-tui@…: …`).
    // SAFETY: build scripts are single-threaded at this point.
    unsafe { std::env::set_var("CARGO_TERM_QUIET", "true") };
    aya_build::build_ebpf([pkg], aya_build::Toolchain::Custom(&pinned))
}

/// The value of the pin file's `nightly = "…"` line.
fn pinned_nightly(pin: &str) -> anyhow::Result<String> {
    pin.lines()
        .find_map(|l| {
            let v = l
                .trim()
                .strip_prefix("nightly")?
                .trim_start()
                .strip_prefix('=')?;
            Some(v.trim().strip_prefix('"')?.strip_suffix('"')?.to_string())
        })
        .ok_or_else(|| anyhow::anyhow!("ebpf-toolchain.toml has no `nightly = \"…\"` line"))
}

/// `git describe --always --tags` of the checkout (a tag, or the commit's 12-digit hash);
/// `CMDQV_GIT_COMMIT` overrides it (a build from a source tarball); `unknown` without git.
/// Asks cargo to run this again when HEAD or the branch it names moves.
fn git_commit(manifest: &std::path::Path) -> String {
    println!("cargo:rerun-if-env-changed=CMDQV_GIT_COMMIT");
    if let Ok(v) = std::env::var("CMDQV_GIT_COMMIT") {
        if !v.trim().is_empty() {
            return v.trim().to_string();
        }
    }
    let git = |args: &[&str]| {
        Command::new("git")
            .current_dir(manifest)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .filter(|s| !s.is_empty())
    };
    let Some(commit) = git(&["describe", "--always", "--tags", "--abbrev=12"]) else {
        return "unknown".into();
    };
    let mut watched = vec!["HEAD".to_string(), "packed-refs".to_string()];
    watched.extend(git(&["symbolic-ref", "-q", "HEAD"]));
    for w in watched {
        // A path that does not exist would make cargo run this script on every build.
        let path = git(&["rev-parse", "--path-format=absolute", "--git-path", &w]);
        if let Some(p) = path.filter(|p| std::path::Path::new(p).exists()) {
            println!("cargo:rerun-if-changed={p}");
        }
    }
    commit
}
