//! A private apt root per architecture under the guest cache: Debian packages are resolved,
//! downloaded and extracted (`dpkg -x`) without touching the system's apt or dpkg state.

use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{Context as _, Result};

use crate::sh::{output, run};

const MIRROR: &str = "http://deb.debian.org/debian";
const SECURITY_MIRROR: &str = "http://deb.debian.org/debian-security";
const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// The file whose presence says a folder's extraction finished.
pub const STAMP: &str = ".cmdqv-done";

#[derive(Copy, Clone, PartialEq, Eq)]
pub enum Arch {
    Arm64,
    Amd64,
}

impl Arch {
    /// This machine's Debian architecture (QEMU runs here).
    pub fn host() -> Result<Self> {
        match std::env::consts::ARCH {
            "x86_64" => Ok(Arch::Amd64),
            "aarch64" => Ok(Arch::Arm64),
            a => anyhow::bail!("no Debian QEMU packages are fetched for a {a} host"),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Arch::Arm64 => "arm64",
            Arch::Amd64 => "amd64",
        }
    }
}

/// The Debian release whose suites a private apt root lists.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Release {
    /// Debian 12: bookworm, -updates, -backports, -security.
    Bookworm,
    /// Debian 13: trixie, -updates, -backports, -security (its arm64-16k kernels).
    Trixie,
}

impl Release {
    /// (mirror, suite) of every source line.
    fn sources(self) -> [(&'static str, String); 4] {
        let r = match self {
            Release::Bookworm => "bookworm",
            Release::Trixie => "trixie",
        };
        [
            (MIRROR, r.to_string()),
            (MIRROR, format!("{r}-updates")),
            (MIRROR, format!("{r}-backports")),
            (SECURITY_MIRROR, format!("{r}-security")),
        ]
    }

    /// The folder suffix of its apt root (bookworm's keeps the name it always had).
    fn root_suffix(self) -> &'static str {
        match self {
            Release::Bookworm => "",
            Release::Trixie => "-trixie",
        }
    }
}

/// A private apt root: its own sources, lists and (empty or borrowed) dpkg status.
pub struct Apt {
    root: PathBuf,
    arch: Arch,
}

impl Apt {
    /// The root for `arch` and `release` under `cache`, with fresh package lists.
    pub fn updated(cache: &Path, arch: Arch, release: Release) -> Result<Self> {
        let apt = Self::new(cache, arch, release)?;
        apt.update()?;
        Ok(apt)
    }

    fn new(cache: &Path, arch: Arch, release: Release) -> Result<Self> {
        let root = cache.join(format!("apt-{}{}", arch.name(), release.root_suffix()));
        for d in [
            "etc/apt/apt.conf.d",
            "etc/apt/preferences.d",
            "etc/apt/sources.list.d",
            "etc/apt/trusted.gpg.d",
            "var/lib/dpkg",
            "var/lib/apt/lists/partial",
            "var/cache/apt/archives/partial",
        ] {
            fs::create_dir_all(root.join(d))?;
        }
        let status = root.join("var/lib/dpkg/status");
        if !status.exists() {
            fs::write(&status, "")?;
        }
        fs::write(root.join("etc/apt/apt.conf"), "")?;
        let mut sources = String::new();
        for (uri, suite) in release.sources() {
            sources.push_str(&format!("deb [signed-by={KEYRING}] {uri} {suite} main\n"));
        }
        fs::write(root.join("etc/apt/sources.list"), sources)?;
        Ok(Self { root, arch })
    }

    /// `tool` (apt-get, apt-cache) confined to this root.
    pub fn cmd(&self, tool: &str) -> Command {
        let mut c = Command::new(tool);
        // APT_CONFIG points at an empty file so the system's apt.conf.d does not leak in
        // (its docker-clean hook, for instance); every setting is given here instead.
        c.env("APT_CONFIG", self.root.join("etc/apt/apt.conf"));
        let arch = self.arch.name();
        c.arg(format!("-oDir={}/", self.root.display()))
            .arg(format!(
                "-oDir::State::status={}",
                self.root.join("var/lib/dpkg/status").display()
            ))
            .arg(format!("-oAPT::Architecture={arch}"))
            .arg(format!("-oAPT::Architectures::={arch}"))
            .arg("-oDebug::NoLocking=1")
            .arg("-oAPT::Sandbox::User=root")
            .arg("-oAcquire::Languages=none")
            .arg("-oAcquire::Check-Valid-Until=false");
        c
    }

    /// `apt-get update`, only when the lists are missing or a day old.
    fn update(&self) -> Result<()> {
        let stamp = self.root.join("updated.stamp");
        let fresh = fs::metadata(&stamp)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().unwrap_or_default() < Duration::from_secs(86400));
        if fresh {
            return Ok(());
        }
        output(self.cmd("apt-get").args(["-q", "update"])).context(
            "apt-get update in the private apt root failed: is Debian's package registry reachable?",
        )?;
        fs::write(&stamp, "")?;
        Ok(())
    }

    /// Downloads `pkgs` (names, `name/suite` or `name=version`) into `dest`; returns the files.
    pub fn download(&self, pkgs: &[String], dest: &Path) -> Result<Vec<PathBuf>> {
        fs::create_dir_all(dest)?;
        let before: BTreeSet<_> = list_debs(dest)?;
        output(
            self.cmd("apt-get")
                .current_dir(dest)
                .arg("download")
                .args(pkgs),
        )
        .with_context(|| format!("apt-get download {}", pkgs.join(" ")))?;
        let after = list_debs(dest)?;
        let new: Vec<_> = after.difference(&before).cloned().collect();
        if !new.is_empty() {
            return Ok(new);
        }
        // Already present from an earlier run: match by package name prefix.
        let mut found = Vec::new();
        for p in pkgs {
            let prefix = format!("{}_", p.split(['/', '=']).next().unwrap_or(p));
            found.extend(
                after
                    .iter()
                    .filter(|f| {
                        f.file_name()
                            .and_then(|n| n.to_str())
                            .is_some_and(|n| n.starts_with(&prefix))
                    })
                    .cloned(),
            );
        }
        Ok(found)
    }
}

fn list_debs(dir: &Path) -> Result<BTreeSet<PathBuf>> {
    Ok(fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "deb"))
        .collect())
}

/// Empties `dest` and unpacks every package file into it.
pub fn extract_all(debs: &[PathBuf], dest: &Path) -> Result<()> {
    let _ = fs::remove_dir_all(dest);
    fs::create_dir_all(dest)?;
    for d in debs {
        run(Command::new("dpkg").arg("-x").arg(d).arg(dest))?;
    }
    Ok(())
}

/// Downloads and extracts bookworm's `pkgs` into `dest` unless its stamp exists; returns whether
/// cached.
pub fn ensure_extracted(cache: &Path, arch: Arch, pkgs: &[&str], dest: &Path) -> Result<bool> {
    let stamp = dest.join(STAMP);
    if stamp.exists() {
        return Ok(true);
    }
    let apt = Apt::updated(cache, arch, Release::Bookworm)?;
    let debs_dir = cache.join(format!("debs-{}", arch.name()));
    let pkgs: Vec<String> = pkgs.iter().map(|s| s.to_string()).collect();
    let debs = apt.download(&pkgs, &debs_dir)?;
    extract_all(&debs, dest)?;
    fs::write(&stamp, pkgs.join("\n"))?;
    Ok(false)
}
