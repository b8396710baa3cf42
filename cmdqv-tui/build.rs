//! Builds cmdqv's eBPF programs for bpfel-unknown-none (nightly + build-std, linked by bpf-linker)
//! and leaves the object in OUT_DIR, where src/ebpf embeds it. `cargo xtask` installs the nightly's
//! rust-src and bpf-linker first; AYA_BUILD_SKIP=1 skips this for host-only steps.
use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
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
