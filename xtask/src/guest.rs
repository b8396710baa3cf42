//! `cargo xtask guest`: a real arm64 Linux guest whose arm-smmu-v3 driver issues commands into the
//! command queue of stock QEMU's emulated SMMUv3 — the project's external ground truth
//! (../shared/reference/real-qemu-guest.md).
//!
//! Everything comes from Debian's package registry without touching the system's apt state: a
//! private apt root per architecture under `~/.cache/cmdqv/guest` (arm64 for the kernel and
//! busybox, amd64 for QEMU and the libraries this machine lacks), `apt-get download`, `dpkg -x`.
//! Every step leaves a stamp, so a second run does no network work and takes well under a second
//! before the boot.
//!
//! ```text
//! cargo xtask guest [--qemu 7.2|10.0] [--kernel 6.12|6.1] [--out DIR] [--timeout SECS]
//!                   [--disk-mib N]
//! cargo xtask guest --prepare-only      # one JSON line: qemu, env, kernel, initrd, disk, argv
//! cargo xtask guest --bench N           # N untraced + N traced boots (privileged test harness)
//! ```

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    io::Read as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use crate::{cache_dir, output, run};

const MIRROR: &str = "http://deb.debian.org/debian";
const SECURITY_MIRROR: &str = "http://deb.debian.org/debian-security";
const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";
/// Marker the guest's /init prints right before powering off: a boot that printed it is complete.
pub const DONE_MARKER: &str = "CMDQV-GUEST-DONE";
/// Virtio modules the guest needs (dependencies are resolved from each module's `depends=`).
/// Ones built into the kernel have no file and are skipped.
const GUEST_MODULES: &[&str] = &["virtio_pci", "virtio_blk", "virtio_rng", "virtio_net"];
/// Default size of the zero-filled disk the guest reads whole (16 MiB: ~1.2k commands per boot;
/// 256 MiB gives about 16 times as many).
const DISK_MIB: u64 = 16;

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum QemuVersion {
    /// bookworm's qemu-system-arm 7.2.
    V7_2,
    /// bookworm-backports' qemu-system-arm 10.0.2.
    V10_0,
}

impl QemuVersion {
    fn parse(s: &str) -> Result<Self> {
        match s {
            "7.2" | "7" => Ok(Self::V7_2),
            "10.0" | "10" | "10.0.2" => Ok(Self::V10_0),
            _ => bail!("unknown --qemu {s}: choose 7.2 (bookworm) or 10.0 (bookworm-backports)"),
        }
    }
    fn label(self) -> &'static str {
        match self {
            Self::V7_2 => "7.2",
            Self::V10_0 => "10.0",
        }
    }
    fn suite(self) -> &'static str {
        match self {
            Self::V7_2 => "bookworm",
            Self::V10_0 => "bookworm-backports",
        }
    }
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum KernelVersion {
    /// linux-image-6.12.*-arm64 from bookworm-backports.
    V6_12,
    /// bookworm's (security-updated) linux-image-6.1.0-*-arm64.
    V6_1,
}

impl KernelVersion {
    fn parse(s: &str) -> Result<Self> {
        match s {
            "6.12" => Ok(Self::V6_12),
            "6.1" => Ok(Self::V6_1),
            _ => bail!("unknown --kernel {s}: choose 6.12 (bookworm-backports) or 6.1 (bookworm)"),
        }
    }
    fn label(self) -> &'static str {
        match self {
            Self::V6_12 => "6.12",
            Self::V6_1 => "6.1",
        }
    }
}

struct Opts {
    qemu: QemuVersion,
    kernel: KernelVersion,
    out: Option<PathBuf>,
    timeout: Duration,
    prepare_only: bool,
    bench: Option<u32>,
    disk_mib: u64,
    /// Boot without `cmdqv qemu` (QEMU's own trace log only).
    untraced: bool,
}

fn parse_opts(args: &[String]) -> Result<Opts> {
    let mut o = Opts {
        qemu: QemuVersion::V7_2,
        kernel: KernelVersion::V6_12,
        out: None,
        timeout: Duration::from_secs(120),
        prepare_only: false,
        bench: None,
        disk_mib: DISK_MIB,
        untraced: false,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = |name: &str| {
            it.next()
                .cloned()
                .with_context(|| format!("{name} needs a value"))
        };
        match a.as_str() {
            "--qemu" => o.qemu = QemuVersion::parse(&val("--qemu")?)?,
            "--kernel" => o.kernel = KernelVersion::parse(&val("--kernel")?)?,
            "--out" => o.out = Some(PathBuf::from(val("--out")?)),
            "--timeout" => {
                o.timeout = Duration::from_secs(
                    val("--timeout")?
                        .parse()
                        .context("--timeout takes seconds")?,
                )
            }
            "--prepare-only" => o.prepare_only = true,
            "--untraced" => o.untraced = true,
            "--disk-mib" => {
                o.disk_mib = val("--disk-mib")?
                    .parse()
                    .context("--disk-mib takes a size in MiB")?
            }
            "--bench" => o.bench = Some(val("--bench")?.parse().context("--bench takes a count")?),
            "-h" | "--help" => {
                println!(
                    "usage: cargo xtask guest [--qemu 7.2|10.0] [--kernel 6.12|6.1] [--out DIR] \
                     [--timeout SECS] [--disk-mib N] [--prepare-only] [--untraced] [--bench N]"
                );
                std::process::exit(0);
            }
            other => bail!("unknown option {other} (see `cargo xtask guest --help`)"),
        }
    }
    Ok(o)
}

/// Entry point of `cargo xtask guest`.
pub fn main(args: &[String]) -> Result<()> {
    let o = parse_opts(args)?;
    let g = prepare(o.qemu, o.kernel, o.disk_mib, !o.prepare_only)?;
    if o.prepare_only {
        println!("{}", g.to_json());
        return Ok(());
    }
    if let Some(n) = o.bench {
        return bench(&g, n);
    }
    let out = o.out.unwrap_or_else(|| {
        crate::target_dir().join(format!("guest/{}-qemu{}", o.kernel.label(), o.qemu.label()))
    });
    fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let trace = out.join("qemu-trace.log");
    if !o.untraced {
        return traced_by_cmdqv(&g, &out, &trace, o.timeout);
    }
    let t = Instant::now();
    let r = boot(&g, &out, Some(&trace), o.timeout)?;
    say(
        "boot",
        &format!(
            "{} in {:.2}s; console {}",
            if r.completed {
                "guest ran to poweroff"
            } else {
                "guest did NOT complete"
            },
            r.wall.as_secs_f64(),
            out.join("console.log").display()
        ),
        t,
    );
    let text = fs::read_to_string(&trace).unwrap_or_default();
    let opcodes = text
        .lines()
        .filter(|l| l.contains("smmuv3_cmdq_opcode"))
        .count();
    let prods = text
        .lines()
        .filter(|l| l.starts_with("smmuv3_write_mmio addr: 0x98 "))
        .count();
    println!(
        "[xtask] guest: QEMU trace log {} ({opcodes} commands, {prods} CMDQ_PROD writes)",
        trace.display()
    );
    if !r.completed {
        bail!(
            "the guest did not reach poweroff within {}s (see {})",
            o.timeout.as_secs(),
            out.join("console.log").display()
        );
    }
    Ok(())
}

/// Boots the guest under `cmdqv record … qemu`, so the cmdqv trace file and QEMU's own trace log
/// of the same run sit side by side, and compares their per-opcode command counts.
fn traced_by_cmdqv(g: &Guest, out: &Path, trace: &Path, timeout: Duration) -> Result<()> {
    let path = crate::bootstrap(false)?;
    let cmdqv = crate::build(&path)?;
    let rec = out.join("boot.cmdqv");
    let _ = fs::remove_file(trace);
    let t = Instant::now();
    let o = Command::new(&cmdqv)
        .env("LD_LIBRARY_PATH", &g.lib_path)
        .arg("record")
        .arg("-o")
        .arg(&rec)
        .args(["qemu", "--json", "--duration"])
        .arg(format!("{}s", timeout.as_secs()))
        .arg("--console")
        .arg(out.join("console.log"))
        .arg("--")
        .arg(&g.qemu)
        .args(g.argv())
        .args(["-trace", "smmuv3_cmdq_*", "-trace", "smmuv3_*_mmio", "-D"])
        .arg(trace)
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("running cmdqv qemu")?;
    if !o.status.success() {
        bail!(
            "cmdqv qemu failed (console: {})",
            out.join("console.log").display()
        );
    }
    let text = String::from_utf8_lossy(&o.stdout);
    let summary = text
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or("{}")
        .to_string();
    fs::write(out.join("cmdqv-summary.json"), &summary)?;
    say(
        "boot",
        &format!("traced by cmdqv qemu; trace file {}", rec.display()),
        t,
    );
    // cmdqv's count of commands on the SMMU queue vs QEMU's smmuv3_cmdq_opcode lines.
    let ours = summary
        .split("\"name\":\"smmu-cmdq\"")
        .nth(1)
        .and_then(|r| r.split("\"commands\":").nth(1))
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0);
    let log = fs::read_to_string(trace).unwrap_or_default();
    let theirs = log
        .lines()
        .filter(|l| l.contains("smmuv3_cmdq_opcode"))
        .count() as u64;
    println!(
        "[xtask] guest: cmdqv decoded {ours} commands, QEMU's trace log {} has {theirs}{}",
        trace.display(),
        if ours == theirs {
            " (equal)"
        } else {
            " (DIFFERENT)"
        }
    );
    println!(
        "[xtask] guest: replay with `{} replay {}` or export with `… export --perfetto out.json {}`",
        cmdqv.display(),
        rec.display(),
        rec.display()
    );
    if ours != theirs {
        bail!("cmdqv and QEMU disagree on the number of commands");
    }
    Ok(())
}

fn say(step: &str, msg: &str, t: Instant) {
    println!(
        "[xtask] guest: {step}: {msg} ({:.1}s)",
        t.elapsed().as_secs_f64()
    );
}

/// Everything a boot needs, as paths (what `--prepare-only` prints).
pub struct Guest {
    pub qemu: PathBuf,
    /// Directories with the shared libraries this machine lacks (LD_LIBRARY_PATH).
    pub lib_path: String,
    /// QEMU's data directory (`-L`).
    pub datadir: PathBuf,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub disk: PathBuf,
    pub qemu_version: &'static str,
    pub kernel_version: String,
}

impl Guest {
    /// QEMU's arguments without tracing (the reference command line).
    pub fn argv(&self) -> Vec<String> {
        let s = |p: &Path| p.display().to_string();
        let mut v: Vec<String> = [
            "-M",
            "virt,iommu=smmuv3",
            "-cpu",
            "max,pauth-impdef=on",
            "-smp",
            "2",
            "-m",
            "1G",
            "-nographic",
            "-no-reboot",
        ]
        .iter()
        .map(|x| x.to_string())
        .collect();
        v.extend(["-L".into(), s(&self.datadir)]);
        v.extend(["-kernel".into(), s(&self.kernel)]);
        v.extend(["-initrd".into(), s(&self.initrd)]);
        v.extend([
            "-append".into(),
            "console=ttyAMA0 rdinit=/init iommu.passthrough=0 iommu.strict=1 panic=-1".into(),
        ]);
        v.extend([
            "-drive".into(),
            format!(
                "file={},format=raw,if=none,id=d0,readonly=on",
                s(&self.disk)
            ),
        ]);
        for d in [
            "virtio-blk-pci,drive=d0,disable-legacy=on,iommu_platform=on",
            "virtio-rng-pci,disable-legacy=on,iommu_platform=on",
        ] {
            v.extend(["-device".into(), d.into()]);
        }
        v.extend(["-netdev".into(), "user,id=n0".into()]);
        v.extend([
            "-device".into(),
            "virtio-net-pci,netdev=n0,disable-legacy=on,iommu_platform=on,romfile=".into(),
        ]);
        v
    }

    /// The tracing arguments of the reference: QEMU's own log of the command queue and SMMU MMIO.
    pub fn trace_argv(log: &Path) -> Vec<String> {
        vec![
            "-trace".into(),
            "smmuv3_cmdq_*".into(),
            "-trace".into(),
            "smmuv3_*_mmio".into(),
            "-D".into(),
            log.display().to_string(),
        ]
    }

    pub fn command(&self) -> Command {
        let mut c = Command::new(&self.qemu);
        c.env("LD_LIBRARY_PATH", &self.lib_path);
        c
    }

    fn to_json(&self) -> String {
        let q = |s: &str| serde_json::Value::String(s.to_string());
        let mut m = serde_json::Map::new();
        m.insert("qemu".into(), q(&self.qemu.display().to_string()));
        m.insert("qemu_version".into(), q(self.qemu_version));
        m.insert("ld_library_path".into(), q(&self.lib_path));
        m.insert("datadir".into(), q(&self.datadir.display().to_string()));
        m.insert("kernel".into(), q(&self.kernel.display().to_string()));
        m.insert("kernel_version".into(), q(&self.kernel_version));
        m.insert("initrd".into(), q(&self.initrd.display().to_string()));
        m.insert("disk".into(), q(&self.disk.display().to_string()));
        m.insert("done_marker".into(), q(DONE_MARKER));
        m.insert(
            "argv".into(),
            serde_json::Value::Array(self.argv().iter().map(|a| q(a)).collect()),
        );
        serde_json::Value::Object(m).to_string()
    }
}

fn guest_dir() -> PathBuf {
    cache_dir().join("guest")
}

/// Prepares (downloads and builds) everything, each step cached behind a stamp file.
pub fn prepare(
    qemu: QemuVersion,
    kernel: KernelVersion,
    disk_mib: u64,
    verbose: bool,
) -> Result<Guest> {
    let dir = guest_dir();
    fs::create_dir_all(&dir)?;
    let log = |step: &str, msg: &str, t: Instant| {
        if verbose {
            say(step, msg, t);
        } else {
            eprintln!(
                "[xtask] guest: {step}: {msg} ({:.1}s)",
                t.elapsed().as_secs_f64()
            );
        }
    };

    // Kernel (arm64).
    let t = Instant::now();
    let kdir = dir.join(format!("kernel-{}", kernel.label()));
    let (kimage, kver, kcached) = ensure_kernel(&dir, &kdir, kernel)?;
    log(
        "kernel",
        &format!("{} {}", kver, if kcached { "cached" } else { "downloaded" }),
        t,
    );

    // Busybox (arm64).
    let t = Instant::now();
    let bbdir = dir.join("busybox");
    let bb_cached = ensure_extracted(&dir, Arch::Arm64, &["busybox-static"], &bbdir)?;
    let busybox = bbdir.join("bin/busybox");
    if !busybox.exists() {
        bail!("busybox-static did not contain bin/busybox");
    }
    log(
        "busybox",
        if bb_cached { "cached" } else { "downloaded" },
        t,
    );

    // Initramfs.
    let t = Instant::now();
    let initrd = dir.join(format!("initramfs-{kver}.cpio"));
    let msg = if initrd.exists() {
        "cached".to_string()
    } else {
        let mods = resolve_modules(&kdir.join("lib/modules").join(&kver), GUEST_MODULES)?;
        let names: Vec<_> = mods.iter().map(|(n, _)| n.clone()).collect();
        write_initramfs(&initrd, &busybox, &mods)?;
        format!("built with modules {}", names.join(" "))
    };
    log("initramfs", &msg, t);

    // Disk: zeros, read whole by the guest to generate DMA (and so IOTLB invalidations).
    let disk = dir.join(format!("disk-{disk_mib}M.img"));
    if !disk.exists() {
        let f = fs::File::create(&disk)?;
        f.set_len(disk_mib << 20)?;
    }

    // QEMU (amd64) plus the libraries this machine lacks.
    let t = Instant::now();
    let qdir = dir.join(format!("qemu-{}", qemu.label()));
    let qcached = ensure_qemu(&dir, &qdir, qemu)?;
    log(
        "qemu",
        &format!(
            "{} {}",
            qemu.label(),
            if qcached { "cached" } else { "downloaded" }
        ),
        t,
    );

    let lib_path = ["usr/lib/x86_64-linux-gnu", "lib/x86_64-linux-gnu"]
        .iter()
        .map(|d| qdir.join(d).display().to_string())
        .collect::<Vec<_>>()
        .join(":");
    Ok(Guest {
        qemu: qdir.join("usr/bin/qemu-system-aarch64"),
        lib_path,
        datadir: qdir.join("usr/share/qemu"),
        kernel: kimage,
        initrd,
        disk,
        qemu_version: qemu.label(),
        kernel_version: kver,
    })
}

#[derive(Copy, Clone, PartialEq, Eq)]
enum Arch {
    Arm64,
    Amd64,
}

impl Arch {
    fn name(self) -> &'static str {
        match self {
            Arch::Arm64 => "arm64",
            Arch::Amd64 => "amd64",
        }
    }
}

/// A private apt root: its own sources, lists and (empty or borrowed) dpkg status.
struct Apt {
    root: PathBuf,
    arch: Arch,
}

impl Apt {
    fn new(cache: &Path, arch: Arch) -> Result<Self> {
        let root = cache.join(format!("apt-{}", arch.name()));
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
        for (uri, suite) in [
            (MIRROR, "bookworm"),
            (MIRROR, "bookworm-updates"),
            (MIRROR, "bookworm-backports"),
            (SECURITY_MIRROR, "bookworm-security"),
        ] {
            sources.push_str(&format!("deb [signed-by={KEYRING}] {uri} {suite} main\n"));
        }
        fs::write(root.join("etc/apt/sources.list"), sources)?;
        Ok(Self { root, arch })
    }

    fn cmd(&self, tool: &str) -> Command {
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

    /// `apt-get update`, at most once per process and only when the lists are missing or a day old.
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
    fn download(&self, pkgs: &[String], dest: &Path) -> Result<Vec<PathBuf>> {
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
        if new.is_empty() {
            // Already present from an earlier run: match by package name prefix.
            let mut found = Vec::new();
            for p in pkgs {
                let name = p.split(['/', '=']).next().unwrap_or(p);
                found.extend(
                    after
                        .iter()
                        .filter(|f| {
                            f.file_name()
                                .and_then(|n| n.to_str())
                                .is_some_and(|n| n.starts_with(&format!("{name}_")))
                        })
                        .cloned(),
                );
            }
            return Ok(found);
        }
        Ok(new)
    }
}

fn list_debs(dir: &Path) -> Result<BTreeSet<PathBuf>> {
    Ok(fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "deb"))
        .collect())
}

fn dpkg_x(deb: &Path, dest: &Path) -> Result<()> {
    run(Command::new("dpkg").arg("-x").arg(deb).arg(dest))
}

/// Downloads and extracts `pkgs` into `dest` unless its stamp exists; returns whether cached.
fn ensure_extracted(cache: &Path, arch: Arch, pkgs: &[&str], dest: &Path) -> Result<bool> {
    let stamp = dest.join(".cmdqv-done");
    if stamp.exists() {
        return Ok(true);
    }
    let apt = Apt::new(cache, arch)?;
    apt.update()?;
    let debs_dir = cache.join(format!("debs-{}", arch.name()));
    let pkgs: Vec<String> = pkgs.iter().map(|s| s.to_string()).collect();
    let debs = apt.download(&pkgs, &debs_dir)?;
    let _ = fs::remove_dir_all(dest);
    fs::create_dir_all(dest)?;
    for d in &debs {
        dpkg_x(d, dest)?;
    }
    fs::write(&stamp, pkgs.join("\n"))?;
    Ok(false)
}

/// Returns (Image path, kernel release, cached?).
fn ensure_kernel(cache: &Path, kdir: &Path, k: KernelVersion) -> Result<(PathBuf, String, bool)> {
    let stamp = kdir.join(".cmdqv-done");
    let cached = stamp.exists();
    if !cached {
        let apt = Apt::new(cache, Arch::Arm64)?;
        apt.update()?;
        // The meta package names the newest image of the series in that suite.
        let meta = match k {
            KernelVersion::V6_12 => "linux-image-arm64/bookworm-backports",
            KernelVersion::V6_1 => "linux-image-arm64/bookworm-security",
        };
        let deps = output(apt.cmd("apt-cache").args(["depends", meta]))?;
        let image = deps
            .lines()
            .filter_map(|l| l.trim().strip_prefix("Depends:"))
            .map(str::trim)
            .find(|p| p.starts_with("linux-image-") && p.ends_with("-arm64"))
            .with_context(|| format!("no linux-image-*-arm64 dependency of {meta}: {deps}"))?
            .to_string();
        let debs = apt.download(std::slice::from_ref(&image), &cache.join("debs-arm64"))?;
        let _ = fs::remove_dir_all(kdir);
        fs::create_dir_all(kdir)?;
        for d in &debs {
            dpkg_x(d, kdir)?;
        }
        fs::write(&stamp, &image)?;
    }
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
    Ok((vmlinuz, kver, cached))
}

/// QEMU of the chosen version plus every library package it needs that this machine does not
/// have installed (resolved by apt-cache in the private root, checked against the system's dpkg
/// database read-only). Returns whether it was cached.
fn ensure_qemu(cache: &Path, qdir: &Path, v: QemuVersion) -> Result<bool> {
    let stamp = qdir.join(".cmdqv-done");
    if stamp.exists() {
        return Ok(true);
    }
    let apt = Apt::new(cache, Arch::Amd64)?;
    apt.update()?;
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
    // QEMU's own packages from the chosen suite (arch-all packages lack the binNMU suffix of
    // the version, so pin by suite, not by version).
    let pinned: Vec<String> = pkgs
        .iter()
        .map(|p| {
            if p.starts_with("qemu-system-") {
                format!("{p}/{suite}")
            } else {
                p.clone()
            }
        })
        .collect();
    let debs_dir = cache.join(format!("debs-amd64-qemu-{}", v.label()));
    let debs = apt.download(&pinned, &debs_dir)?;
    let _ = fs::remove_dir_all(qdir);
    fs::create_dir_all(qdir)?;
    for d in &debs {
        dpkg_x(d, qdir)?;
    }
    let bin = qdir.join("usr/bin/qemu-system-aarch64");
    let lib_path = format!(
        "{}:{}",
        qdir.join("usr/lib/x86_64-linux-gnu").display(),
        qdir.join("lib/x86_64-linux-gnu").display()
    );
    let ldd = output(
        Command::new("ldd")
            .arg(&bin)
            .env("LD_LIBRARY_PATH", &lib_path),
    )?;
    let missing: Vec<_> = ldd.lines().filter(|l| l.contains("not found")).collect();
    if !missing.is_empty() {
        bail!(
            "QEMU {} still lacks libraries after extraction: {}",
            v.label(),
            missing.join("; ")
        );
    }
    fs::write(&stamp, pinned.join("\n"))?;
    Ok(false)
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

// ---------------------------------------------------------------------------------------------
// Modules and the initramfs

/// Returns the modules to load in order (dependencies first) as (name, decompressed bytes).
fn resolve_modules(moddir: &Path, wanted: &[&str]) -> Result<Vec<(String, Vec<u8>)>> {
    let mut files = BTreeMap::new();
    index_modules(&moddir.join("kernel"), &mut files)?;
    let mut order = Vec::new();
    let mut seen = BTreeSet::new();
    for w in wanted {
        visit_module(w, &files, &mut seen, &mut order)?;
    }
    Ok(order)
}

fn norm(name: &str) -> String {
    name.replace('-', "_")
}

fn index_modules(dir: &Path, out: &mut BTreeMap<String, PathBuf>) -> Result<()> {
    for e in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let p = e?.path();
        if p.is_dir() {
            index_modules(&p, out)?;
        } else if let Some(n) = p.file_name().and_then(|n| n.to_str()) {
            if let Some(stem) = n.strip_suffix(".ko.xz").or_else(|| n.strip_suffix(".ko")) {
                out.insert(norm(stem), p.clone());
            }
        }
    }
    Ok(())
}

fn visit_module(
    name: &str,
    files: &BTreeMap<String, PathBuf>,
    seen: &mut BTreeSet<String>,
    order: &mut Vec<(String, Vec<u8>)>,
) -> Result<()> {
    let name = norm(name);
    if !seen.insert(name.clone()) {
        return Ok(());
    }
    let Some(path) = files.get(&name) else {
        return Ok(()); // built into the kernel
    };
    let bytes = if path.extension().is_some_and(|x| x == "xz") {
        let out = Command::new("xz")
            .arg("-dc")
            .arg(path)
            .output()
            .context("running xz (apt-get install xz-utils)")?;
        if !out.status.success() {
            bail!("xz -dc {} failed", path.display());
        }
        out.stdout
    } else {
        fs::read(path)?
    };
    for dep in modinfo_depends(&bytes) {
        visit_module(&dep, files, seen, order)?;
    }
    order.push((name, bytes));
    Ok(())
}

/// The `depends=` entry of a module's .modinfo section (found by its NUL-separated string).
fn modinfo_depends(ko: &[u8]) -> Vec<String> {
    let key = b"depends=";
    ko.windows(key.len())
        .enumerate()
        .filter(|(i, w)| *w == key && (*i == 0 || ko[i - 1] == 0))
        .map(|(i, _)| {
            let rest = &ko[i + key.len()..];
            let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
            String::from_utf8_lossy(&rest[..end]).into_owned()
        })
        .next()
        .map(|s| {
            s.split(',')
                .filter(|x| !x.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn init_script(modules: &[String]) -> String {
    format!(
        r#"#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in {mods}; do insmod /lib/modules/$m.ko || echo "insmod $m failed"; done
i=0; while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done
dd if=/dev/vda of=/dev/null bs=64k 2>/dev/null && echo "read /dev/vda"
dd if=/dev/hwrng of=/dev/null bs=64 count=16 2>/dev/null && echo "read /dev/hwrng"
echo {DONE_MARKER}
poweroff -f
"#,
        mods = modules.join(" ")
    )
}

/// Writes an uncompressed newc cpio archive (the kernel accepts it as is).
fn write_initramfs(path: &Path, busybox: &Path, modules: &[(String, Vec<u8>)]) -> Result<()> {
    let mut w = Cpio::default();
    for d in ["bin", "dev", "proc", "sys", "lib", "lib/modules"] {
        w.entry(d, 0o040755, &[], 0);
    }
    // The kernel opens /dev/console before /init runs; devtmpfs is not mounted yet then.
    w.entry("dev/console", 0o020600, &[], (5 << 8) | 1);
    w.entry("bin/busybox", 0o100755, &fs::read(busybox)?, 0);
    for (name, bytes) in modules {
        w.entry(&format!("lib/modules/{name}.ko"), 0o100644, bytes, 0);
    }
    let names: Vec<String> = modules.iter().map(|(n, _)| n.clone()).collect();
    w.entry("init", 0o100755, init_script(&names).as_bytes(), 0);
    w.entry("TRAILER!!!", 0, &[], 0);
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, &w.buf)?;
    fs::rename(&tmp, path)?;
    Ok(())
}

#[derive(Default)]
struct Cpio {
    buf: Vec<u8>,
    ino: u32,
}

impl Cpio {
    /// `rdev` is (major << 8) | minor for device nodes.
    fn entry(&mut self, name: &str, mode: u32, data: &[u8], rdev: u32) {
        self.ino += 1;
        let fields = [
            self.ino,
            mode,
            0,
            0,
            if mode & 0o040000 != 0 { 2 } else { 1 },
            0,
            data.len() as u32,
            0,
            0,
            rdev >> 8,
            rdev & 0xff,
            name.len() as u32 + 1,
            0,
        ];
        self.buf.extend_from_slice(b"070701");
        for f in fields {
            self.buf.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.push(0);
        self.pad();
        self.buf.extend_from_slice(data);
        self.pad();
    }
    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Booting

pub struct BootResult {
    pub wall: Duration,
    pub completed: bool,
}

/// Boots the guest, console to `out/console.log`, QEMU's trace log to `trace` if given; kills
/// QEMU after `timeout`.
pub fn boot(g: &Guest, out: &Path, trace: Option<&Path>, timeout: Duration) -> Result<BootResult> {
    let console = out.join("console.log");
    let mut c = g.command();
    c.args(g.argv());
    if let Some(t) = trace {
        let _ = fs::remove_file(t);
        c.args(Guest::trace_argv(t));
    }
    c.stdin(Stdio::null())
        .stdout(fs::File::create(&console)?)
        .stderr(Stdio::piped());
    let t = Instant::now();
    let mut child = c
        .spawn()
        .with_context(|| format!("starting {}", g.qemu.display()))?;
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break Some(s);
        }
        if t.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let wall = t.elapsed();
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    let text = fs::read_to_string(&console).unwrap_or_default();
    let completed = status.is_some_and(|s| s.success()) && text.contains(DONE_MARKER);
    if status.is_some_and(|s| !s.success()) {
        bail!(
            "QEMU exited with {:?}: {}",
            status.and_then(|s| s.code()),
            err.trim()
        );
    }
    Ok(BootResult { wall, completed })
}

/// Untraced and traced boots, interleaved, through the privileged test harness (which owns the
/// eBPF loader), so both are measured by the same clock on the same machine.
fn bench(g: &Guest, n: u32) -> Result<()> {
    // The test harness embeds the eBPF object: bpf-linker and rust-src must be in place.
    let path = crate::bootstrap(false)?;
    let status = crate::cargo(&path)
        .args([
            "test",
            "--release",
            "-p",
            "cmdqv-tui",
            "--test",
            "qemu_guest",
            "--",
            "--ignored",
            "--nocapture",
            "bench_tracing_cost",
        ])
        .env("CMDQV_BENCH_RUNS", n.to_string())
        .env("CMDQV_BENCH_QEMU", g.qemu_version)
        .status()?;
    if !status.success() {
        bail!(
            "the benchmark failed (it needs root and the eBPF object: run `cargo xtask bootstrap`)"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_depends_in_modinfo() {
        let ko = b"\x7fELF...\0license=GPL\0depends=failover,virtio_ring\0name=net_failover\0";
        assert_eq!(modinfo_depends(ko), vec!["failover", "virtio_ring"]);
        assert!(modinfo_depends(b"\0depends=\0").is_empty());
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

    #[test]
    fn cpio_entries_are_aligned() {
        let mut c = Cpio::default();
        c.entry("init", 0o100755, b"abc", 0);
        c.entry("TRAILER!!!", 0, &[], 0);
        assert_eq!(c.buf.len() % 4, 0);
        assert!(c.buf.starts_with(b"070701"));
    }
}
