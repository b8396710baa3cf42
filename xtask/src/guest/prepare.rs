//! Prepares everything a guest boot needs (kernel, busybox, initramfs, disk, QEMU), each step
//! cached behind a stamp or its output file, one progress line per step.

use std::{
    fs,
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::{Result, bail};

use super::{
    apt::{Arch, STAMP, ensure_extracted},
    initramfs::{GUEST_MODULES, module_names, resolve_modules, standard_init, write_initramfs},
    machine::Guest,
    packages::{config_facts, ensure_kernel, ensure_qemu, kernel_config, qemu_lib_path},
    versions::{KernelVersion, QemuVersion},
};
use crate::sh::cache_dir;

/// Default size of the zero-filled disk the guest reads whole (16 MiB: ~1.2k commands per boot;
/// 256 MiB gives about 16 times as many).
pub const DISK_MIB: u64 = 16;

/// Whether everything [`prepare`] downloads for `qemu` and each of `kernels` is in the cache
/// already (so preparing needs no network).
pub fn cached(qemu: QemuVersion, kernels: &[KernelVersion]) -> bool {
    let dir = cache_dir().join("guest");
    let mut parts = vec!["busybox".to_string(), format!("qemu-{}", qemu.label())];
    parts.extend(kernels.iter().map(|k| format!("kernel-{}", k.label())));
    parts.iter().all(|p| dir.join(p).join(STAMP).exists())
}

/// Prints one guest progress line on stdout.
pub fn say(step: &str, msg: &str, t: Instant) {
    println!(
        "[xtask] guest: {step}: {msg} ({:.1}s)",
        t.elapsed().as_secs_f64()
    );
}

/// Progress lines of the preparation: on stdout, or on stderr when stdout carries only the
/// `--prepare-only` JSON.
struct Progress {
    verbose: bool,
}

impl Progress {
    fn say(&self, step: &str, msg: &str, t: Instant) {
        if self.verbose {
            say(step, msg, t);
        } else {
            eprintln!(
                "[xtask] guest: {step}: {msg} ({:.1}s)",
                t.elapsed().as_secs_f64()
            );
        }
    }
}

fn cached_or_downloaded(cached: bool) -> &'static str {
    if cached { "cached" } else { "downloaded" }
}

/// Prepares (downloads and builds) everything, each step cached behind a stamp file.
pub fn prepare(
    qemu: QemuVersion,
    kernel: KernelVersion,
    disk_mib: u64,
    verbose: bool,
) -> Result<Guest> {
    let dir = cache_dir().join("guest");
    fs::create_dir_all(&dir)?;
    let p = Progress { verbose };

    let t = Instant::now();
    let kdir = dir.join(format!("kernel-{}", kernel.label()));
    let (kimage, kver, kcached) = ensure_kernel(&dir, &kdir, kernel)?;
    let config = kernel_config(&kdir, &kver);
    let facts = config_facts(&fs::read_to_string(&config).unwrap_or_default());
    let facts: Vec<&str> = facts
        .iter()
        .filter_map(|f| f.strip_prefix("CONFIG_"))
        .collect();
    let msg = format!(
        "{kver} {} ({})",
        cached_or_downloaded(kcached),
        facts.join(" ")
    );
    p.say("kernel", &msg, t);
    let busybox = busybox(&dir, &p)?;
    let modules = module_dir(&kdir, &kver);
    let initrd = initramfs(&dir, &modules, &busybox, &p)?;
    let disk = disk(&dir, disk_mib)?;

    let t = Instant::now();
    let qdir = dir.join(format!("qemu-{}", qemu.label()));
    let qcached = ensure_qemu(&dir, &qdir, qemu)?;
    let msg = format!("{} {}", qemu.label(), cached_or_downloaded(qcached));
    p.say("qemu", &msg, t);

    Ok(Guest {
        qemu: qdir.join("usr/bin/qemu-system-aarch64"),
        lib_path: qemu_lib_path(&qdir),
        datadir: qdir.join("usr/share/qemu"),
        kernel: kimage,
        kernel_config: config,
        initrd,
        disk,
        busybox,
        modules,
        qemu_version: qemu.label(),
        kernel_version: kver,
    })
}

/// The kernel package's module folder: /lib/modules/<release>, or /usr/lib/modules/<release> in
/// packages built for a merged /usr (trixie's).
pub fn module_dir(kdir: &Path, kver: &str) -> PathBuf {
    let lib = kdir.join("lib/modules").join(kver);
    if lib.is_dir() {
        lib
    } else {
        kdir.join("usr/lib/modules").join(kver)
    }
}

/// The static arm64 busybox the initramfs runs on.
fn busybox(dir: &Path, p: &Progress) -> Result<PathBuf> {
    let t = Instant::now();
    let bbdir = dir.join("busybox");
    let cached = ensure_extracted(dir, Arch::Arm64, &["busybox-static"], &bbdir)?;
    let busybox = bbdir.join("bin/busybox");
    if !busybox.exists() {
        bail!("busybox-static did not contain bin/busybox");
    }
    p.say("busybox", cached_or_downloaded(cached), t);
    Ok(busybox)
}

/// The initramfs for the kernel whose modules are in `moddir`, built once per kernel release.
fn initramfs(dir: &Path, moddir: &Path, busybox: &Path, p: &Progress) -> Result<PathBuf> {
    let t = Instant::now();
    let kver = moddir.file_name().unwrap_or_default().to_string_lossy();
    let initrd = dir.join(format!("initramfs-{kver}.cpio"));
    let msg = if initrd.exists() {
        "cached".to_string()
    } else {
        let mods = resolve_modules(moddir, GUEST_MODULES)?;
        write_initramfs(&initrd, busybox, &mods, &standard_init(&mods), &[])?;
        format!("built with modules {}", module_names(&mods).join(" "))
    };
    p.say("initramfs", &msg, t);
    Ok(initrd)
}

/// Zeros, read whole by the guest to generate DMA (and so IOTLB invalidations).
fn disk(dir: &Path, disk_mib: u64) -> Result<PathBuf> {
    let disk = dir.join(format!("disk-{disk_mib}M.img"));
    if !disk.exists() {
        let f = fs::File::create(&disk)?;
        f.set_len(disk_mib << 20)?;
    }
    Ok(disk)
}
