//! The two package sets the guest needs beyond busybox: an arm64 kernel image, and a QEMU for
//! this host's architecture with every library this machine lacks; each extracted once behind
//! its stamp.

use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use super::{
    apt::{Apt, Arch, Release, STAMP, extract_all},
    versions::{KernelVersion, QemuVersion},
};
use crate::sh::output;

/// LD_LIBRARY_PATH for the QEMU extracted into `qdir`: its packages' library folders for this
/// host's multiarch triplet.
pub fn qemu_lib_path(qdir: &Path) -> String {
    let triplet = format!("{}-linux-gnu", std::env::consts::ARCH);
    [format!("usr/lib/{triplet}"), format!("lib/{triplet}")]
        .map(|d| qdir.join(d).display().to_string())
        .join(":")
}

/// Returns (Image path, kernel release, cached?).
pub fn ensure_kernel(
    cache: &Path,
    kdir: &Path,
    k: KernelVersion,
) -> Result<(PathBuf, String, bool)> {
    let stamp = kdir.join(STAMP);
    let cached = stamp.exists();
    if !cached {
        let apt = Apt::updated(cache, Arch::Arm64, k.release())?;
        let meta = k.meta_package();
        let deps = output(apt.cmd("apt-cache").args(["depends", meta]))?;
        let image = deps
            .lines()
            .filter_map(|l| l.trim().strip_prefix("Depends:"))
            .map(str::trim)
            .find(|p| p.starts_with("linux-image-") && p.ends_with(k.image_suffix()))
            .with_context(|| {
                format!(
                    "no linux-image-*{} dependency of {meta}: {deps}",
                    k.image_suffix()
                )
            })?
            .to_string();
        let debs = apt.download(std::slice::from_ref(&image), &cache.join("debs-arm64"))?;
        extract_all(&debs, kdir)?;
        fs::write(&stamp, &image)?;
    }
    let (vmlinuz, kver) = find_vmlinuz(kdir)?;
    Ok((vmlinuz, kver, cached))
}

/// The extracted package's /boot/vmlinuz-<release> and that release.
fn find_vmlinuz(kdir: &Path) -> Result<(PathBuf, String)> {
    let boot = kdir.join("boot");
    let vmlinuz = fs::read_dir(&boot)
        .with_context(|| {
            format!(
                "{} missing: delete {} and retry",
                boot.display(),
                kdir.display()
            )
        })?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("vmlinuz-"))
        })
        .context("the kernel package has no /boot/vmlinuz-*")?;
    let kver = vmlinuz
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("vmlinuz-"))
        .unwrap_or_default()
        .to_string();
    Ok((vmlinuz, kver))
}

/// The build options `--inside` records for each kernel (what it allows cmdqv to attach to).
pub const CONFIG_FACTS: &[&str] = &[
    "CONFIG_IOMMUFD",
    "CONFIG_TEGRA241_CMDQV",
    "CONFIG_ARM_SMMU_V3",
    "CONFIG_ARM64_4K_PAGES",
    "CONFIG_ARM64_16K_PAGES",
    "CONFIG_ARM64_64K_PAGES",
    "CONFIG_KPROBES",
    "CONFIG_DEBUG_INFO_BTF",
    "CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS",
];

/// `NAME=value` for each of [`CONFIG_FACTS`] in a kernel's /boot/config-* text (`n` when the
/// option is unset or absent).
pub fn config_facts(config: &str) -> Vec<String> {
    CONFIG_FACTS
        .iter()
        .map(|name| {
            let value = config
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
                .unwrap_or("n");
            format!("{name}={value}")
        })
        .collect()
}

/// The extracted kernel's /boot/config-<release>.
pub fn kernel_config(kdir: &Path, kver: &str) -> PathBuf {
    kdir.join("boot").join(format!("config-{kver}"))
}

/// QEMU of the chosen version plus every library package it needs that this machine does not
/// have installed (resolved by apt-cache in the private root, checked against the system's dpkg
/// database read-only). Returns whether it was cached.
pub fn ensure_qemu(cache: &Path, qdir: &Path, v: QemuVersion) -> Result<bool> {
    let stamp = qdir.join(STAMP);
    if stamp.exists() {
        return Ok(true);
    }
    let apt = Apt::updated(cache, Arch::host()?, Release::Bookworm)?;
    let pinned = qemu_packages(&apt, v)?;
    let arch = Arch::host()?.name();
    let debs_dir = cache.join(format!("debs-{arch}-qemu-{}", v.label()));
    let debs = apt.download(&pinned, &debs_dir)?;
    extract_all(&debs, qdir)?;
    check_libraries(qdir, v)?;
    fs::write(&stamp, pinned.join("\n"))?;
    Ok(false)
}

/// The packages to download: QEMU's own from the chosen suite, and the libraries it depends on
/// that the host lacks.
fn qemu_packages(apt: &Apt, v: QemuVersion) -> Result<Vec<String>> {
    let suite = v.suite();
    let policy = output(apt.cmd("apt-cache").args(["policy", "qemu-system-arm"]))?;
    let version = candidate_in_suite(&policy, suite)
        .with_context(|| format!("no qemu-system-arm in {suite}: {policy}"))?;
    let deps = output(apt.cmd("apt-cache").args([
        "depends",
        "--recurse",
        "--no-recommends",
        "--no-suggests",
        "--no-conflicts",
        "--no-breaks",
        "--no-replaces",
        "--no-enhances",
        &format!("qemu-system-arm={version}"),
    ]))?;
    let mut pkgs = BTreeSet::new();
    for l in deps.lines() {
        if l.starts_with(' ') || l.starts_with('<') || l.is_empty() {
            continue;
        }
        let name = l.trim().split(':').next().unwrap_or("").to_string();
        // Libraries and QEMU's own packages only: installer/tooling alternatives are not needed
        // to run the binary.
        let wanted = name.starts_with("lib") || name.starts_with("qemu-system-");
        if wanted && (name.starts_with("qemu-system-") || !installed_on_host(&name)) {
            pkgs.insert(name);
        }
    }
    // Arch-all packages lack the binNMU suffix of the version, so QEMU's own are pinned by
    // suite, not by version.
    Ok(pkgs
        .into_iter()
        .map(|p| {
            if p.starts_with("qemu-system-") {
                format!("{p}/{suite}")
            } else {
                p
            }
        })
        .collect())
}

/// Fails when the extracted QEMU still misses a shared library.
fn check_libraries(qdir: &Path, v: QemuVersion) -> Result<()> {
    let bin = qdir.join("usr/bin/qemu-system-aarch64");
    let ldd = output(
        Command::new("ldd")
            .arg(&bin)
            .env("LD_LIBRARY_PATH", qemu_lib_path(qdir)),
    )?;
    let missing: Vec<_> = ldd.lines().filter(|l| l.contains("not found")).collect();
    if !missing.is_empty() {
        bail!(
            "QEMU {} still lacks libraries after extraction: {}",
            v.label(),
            missing.join("; ")
        );
    }
    Ok(())
}

/// The version `apt-cache policy` lists for `suite` (first, i.e. newest, match).
fn candidate_in_suite(policy: &str, suite: &str) -> Option<String> {
    let mut last_version: Option<String> = None;
    for l in policy.lines() {
        let t = l.trim_start();
        let t = t.strip_prefix("*** ").unwrap_or(t);
        let mut parts = t.split_whitespace();
        let first = parts.next().unwrap_or("");
        if parts
            .next()
            .is_some_and(|p| p.chars().all(|c| c.is_ascii_digit()))
            && !first.starts_with("http")
            && first.contains(|c: char| c.is_ascii_digit())
        {
            last_version = Some(first.to_string());
        } else if t.contains(&format!(" {suite}/main ")) {
            if let Some(v) = &last_version {
                return Some(v.clone());
            }
        }
    }
    None
}

fn installed_on_host(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("ok installed"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_facts_read_set_module_and_unset_options() {
        let c = "CONFIG_IOMMUFD=m\n# CONFIG_TEGRA241_CMDQV is not set\nCONFIG_ARM_SMMU_V3=y\n\
                 CONFIG_ARM_SMMU_V3_SVA=y\nCONFIG_ARM64_16K_PAGES=y\n";
        let f = config_facts(c);
        assert_eq!(f[0], "CONFIG_IOMMUFD=m");
        assert_eq!(f[1], "CONFIG_TEGRA241_CMDQV=n");
        assert_eq!(f[2], "CONFIG_ARM_SMMU_V3=y");
        assert_eq!(f[4], "CONFIG_ARM64_16K_PAGES=y");
        assert_eq!(f.len(), CONFIG_FACTS.len());
    }

    #[test]
    fn picks_the_suite_version_from_policy() {
        let p = "qemu-system-arm:\n  Installed: (none)\n  Candidate: 1:7.2+dfsg-7+deb12u18+b3\n  Version table:\n     1:10.0.2+ds-2+deb13u1~bpo12+1 100\n        100 http://deb.debian.org/debian bookworm-backports/main amd64 Packages\n     1:7.2+dfsg-7+deb12u18+b3 500\n        500 http://deb.debian.org/debian bookworm/main amd64 Packages\n";
        assert_eq!(
            candidate_in_suite(p, "bookworm").as_deref(),
            Some("1:7.2+dfsg-7+deb12u18+b3")
        );
        assert_eq!(
            candidate_in_suite(p, "bookworm-backports").as_deref(),
            Some("1:10.0.2+ds-2+deb13u1~bpo12+1")
        );
    }
}
