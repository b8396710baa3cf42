//! `cargo xtask build --target aarch64`: the `cmdqv` binary for aarch64 Linux, static (glibc with
//! `+crt-static`), with its eBPF object embedded. aya-build compiles that object for the target's
//! architecture (it reads CARGO_CFG_TARGET_ARCH), so kprobe and uprobe argument reads use arm64's
//! pt_regs. The linker and flags are set through environment variables that name the aarch64
//! triple only, so the repository's host build and its build scripts are untouched.

use std::{
    env, fs,
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{Context as _, Result, bail};

use crate::{
    bootstrap::Toolchain,
    sh::{apt_install, cargo, done, is_root, output, run, step, target_dir, which},
};

/// The Rust target triple of the aarch64 build.
pub const AARCH64: &str = "aarch64-unknown-linux-gnu";

/// The C compiler that links the aarch64 binary (Debian names it so on x86_64 and on arm64).
const LINKER: &str = "aarch64-linux-gnu-gcc";

/// ELF `e_machine` of AArch64.
const EM_AARCH64: u16 = 183;

/// What links a static aarch64 binary on this host: Debian packages and where their static
/// glibc lands.
struct CrossTools {
    packages: &'static [&'static str],
    libc_a: &'static str,
}

/// The cross tools for the host's architecture, or why there are none.
fn cross_tools() -> Result<CrossTools> {
    match env::consts::ARCH {
        "x86_64" => Ok(CrossTools {
            packages: &["gcc-aarch64-linux-gnu", "libc6-dev-arm64-cross"],
            libc_a: "/usr/aarch64-linux-gnu/lib/libc.a",
        }),
        // Native: Debian's gcc ships the triplet-prefixed name too.
        "aarch64" => Ok(CrossTools {
            packages: &["gcc", "libc6-dev"],
            libc_a: "/usr/lib/aarch64-linux-gnu/libc.a",
        }),
        a => bail!("no aarch64 cross toolchain is known for a {a} host (x86_64 or aarch64 only)"),
    }
}

/// The aarch64 bootstrap steps (Rust target, cross linker with static glibc), one line each.
pub fn bootstrap_aarch64() -> Result<()> {
    step(&format!("rust target {AARCH64}"), ensure_rust_target)?;
    step("aarch64 linker and static glibc", ensure_cross_linker)
}

/// `rustup target add` for the toolchain that runs the build, when its sysroot lacks the target.
fn ensure_rust_target() -> Result<String> {
    let sysroot = output(Command::new("rustc").args(["--print", "sysroot"]))?;
    let lib = Path::new(sysroot.trim()).join("lib/rustlib").join(AARCH64);
    if lib.is_dir() {
        return Ok("present".into());
    }
    output(Command::new("rustup").args(["target", "add", AARCH64])).with_context(|| {
        format!("the aarch64 build needs the Rust target: run `rustup target add {AARCH64}`")
    })?;
    Ok("installed with rustup".into())
}

/// Whether the Rust target, the cross gcc and its static glibc are all installed already.
pub fn aarch64_tools_present() -> bool {
    let target = output(Command::new("rustc").args(["--print", "sysroot"])).is_ok_and(|s| {
        Path::new(s.trim())
            .join("lib/rustlib")
            .join(AARCH64)
            .is_dir()
    });
    target && cross_tools().is_ok_and(|t| linker_present(&t))
}

fn linker_present(t: &CrossTools) -> bool {
    which(LINKER).is_some() && Path::new(t.libc_a).exists()
}

/// Debian's cross gcc and static glibc, installed as root when absent.
fn ensure_cross_linker() -> Result<String> {
    let t = cross_tools()?;
    let have = || linker_present(&t);
    if have() {
        return Ok(format!("present ({LINKER}, {})", t.libc_a));
    }
    if !is_root() {
        bail!(
            "missing {LINKER} or {}: install with `apt-get install {}`",
            t.libc_a,
            t.packages.join(" ")
        );
    }
    apt_install(t.packages)?;
    if !have() {
        bail!(
            "{} installed, but {LINKER} or {} is still missing",
            t.packages.join(" "),
            t.libc_a
        );
    }
    Ok(format!("installed {}", t.packages.join(", ")))
}

/// The environment that makes `cargo build --target aarch64-unknown-linux-gnu` link statically
/// with the cross gcc. Every name carries the triple: host crates and build scripts keep the
/// repository's own settings.
pub fn cross_env() -> Vec<(String, String)> {
    let t = AARCH64.to_uppercase().replace('-', "_");
    vec![
        (format!("CARGO_TARGET_{t}_LINKER"), LINKER.into()),
        (
            format!("CARGO_TARGET_{t}_RUSTFLAGS"),
            "-C target-feature=+crt-static".into(),
        ),
        (format!("CC_{}", AARCH64.replace('-', "_")), LINKER.into()),
    ]
}

/// Release build of `cmdqv` for aarch64 (after [`bootstrap_aarch64`]); checks the result is a
/// static AArch64 executable and returns its path.
pub fn build_aarch64(tc: &Toolchain) -> Result<PathBuf> {
    let t = Instant::now();
    let mut c = cargo(&tc.path);
    c.args(["build", "--release", "-p", "cmdqv-tui", "--bin", "cmdqv"])
        .args(["--target", AARCH64])
        .envs(cross_env());
    if env::var_os("RUSTFLAGS").is_some() || env::var_os("CARGO_ENCODED_RUSTFLAGS").is_some() {
        // Either would replace the per-target flags (and so +crt-static).
        c.env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS");
    }
    run(&mut c)?;
    let bin = target_dir().join(AARCH64).join("release/cmdqv");
    let elf = fs::read(&bin).with_context(|| format!("reading {}", bin.display()))?;
    let what = static_aarch64(&elf).with_context(|| format!("checking {}", bin.display()))?;
    done(&format!("build: release build for {AARCH64} ({what})"), t);
    Ok(bin)
}

/// Checks that `elf` is a 64-bit little-endian AArch64 executable without a program
/// interpreter (so it runs in a busybox initramfs with no libraries); says what it found.
pub fn static_aarch64(elf: &[u8]) -> Result<String> {
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" || elf[4] != 2 || elf[5] != 1 {
        bail!("not a 64-bit little-endian ELF file");
    }
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]);
    let machine = u16_at(0x12);
    if machine != EM_AARCH64 {
        bail!("ELF machine {machine}, not AArch64 ({EM_AARCH64})");
    }
    let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into()?) as usize;
    let (phentsize, phnum) = (u16_at(0x36) as usize, u16_at(0x38) as usize);
    let mut dynamic = false;
    for i in 0..phnum {
        let o = phoff + i * phentsize;
        let p_type = elf
            .get(o..o + 4)
            .context("program headers run past the end of the file")?;
        match u32::from_le_bytes(p_type.try_into()?) {
            3 => bail!("it has a program interpreter (PT_INTERP): not statically linked"),
            2 => dynamic = true,
            _ => {}
        }
    }
    Ok(if dynamic {
        "AArch64, static-pie".into()
    } else {
        "AArch64, static".into()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64 header with the given machine and program header types.
    fn elf(machine: u16, types: &[u32]) -> Vec<u8> {
        let mut e = vec![0u8; 64 + 56 * types.len()];
        e[..6].copy_from_slice(b"\x7fELF\x02\x01");
        e[0x12..0x14].copy_from_slice(&machine.to_le_bytes());
        e[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        e[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        e[0x38..0x3a].copy_from_slice(&(types.len() as u16).to_le_bytes());
        for (i, t) in types.iter().enumerate() {
            e[64 + 56 * i..68 + 56 * i].copy_from_slice(&t.to_le_bytes());
        }
        e
    }

    #[test]
    fn accepts_static_and_static_pie_aarch64() {
        assert_eq!(
            static_aarch64(&elf(183, &[6, 1, 1])).unwrap(),
            "AArch64, static"
        );
        assert_eq!(
            static_aarch64(&elf(183, &[6, 1, 2])).unwrap(),
            "AArch64, static-pie"
        );
    }

    #[test]
    fn rejects_an_interpreter_another_machine_and_garbage() {
        let e = static_aarch64(&elf(183, &[6, 3, 1])).unwrap_err();
        assert!(e.to_string().contains("PT_INTERP"), "{e}");
        assert!(static_aarch64(&elf(62, &[1])).is_err());
        assert!(static_aarch64(b"#!/bin/sh\n").is_err());
        let mut cut = elf(183, &[1, 1]);
        cut.truncate(70);
        assert!(static_aarch64(&cut).is_err());
    }

    #[test]
    fn the_cross_environment_names_only_the_aarch64_triple() {
        for (k, _) in cross_env() {
            assert!(
                k.contains("AARCH64_UNKNOWN_LINUX_GNU") || k.contains("aarch64_unknown_linux_gnu"),
                "{k}"
            );
        }
    }
}
