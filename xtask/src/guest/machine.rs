//! The prepared guest machine: its files, QEMU's reference command line, the JSON that
//! `--prepare-only` prints, and one boot to poweroff.

use std::{
    fs,
    io::Read as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

/// Marker the guest's /init prints right before powering off: a boot that printed it is complete.
pub const DONE_MARKER: &str = "CMDQV-GUEST-DONE";

/// QEMU's fixed options: the virt machine with an SMMUv3 in front of PCI, no display or reboot.
const MACHINE_ARGS: &[&str] = &[
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
];

/// The kernel command line: strict (unbatched) invalidation so every unmap reaches the queue.
const KERNEL_CMDLINE: &str =
    "console=ttyAMA0 rdinit=/init iommu.passthrough=0 iommu.strict=1 panic=-1";

/// Virtio devices behind the SMMU (iommu_platform=on), so their DMA is translated.
const DEVICES: &[&str] = &[
    "virtio-blk-pci,drive=d0,disable-legacy=on,iommu_platform=on",
    "virtio-rng-pci,disable-legacy=on,iommu_platform=on",
];

/// Everything a boot needs, as paths (what `--prepare-only` prints).
pub struct Guest {
    pub qemu: PathBuf,
    /// Directories with the shared libraries this machine lacks (LD_LIBRARY_PATH).
    pub lib_path: String,
    /// QEMU's data directory (`-L`).
    pub datadir: PathBuf,
    pub kernel: PathBuf,
    /// The kernel's /boot/config-* from its package.
    pub kernel_config: PathBuf,
    pub initrd: PathBuf,
    pub disk: PathBuf,
    /// The static arm64 busybox and the kernel's module folder (what an initramfs is made of).
    pub busybox: PathBuf,
    pub modules: PathBuf,
    pub qemu_version: &'static str,
    pub kernel_version: String,
}

impl Guest {
    /// QEMU's arguments without tracing (the reference command line).
    pub fn argv(&self) -> Vec<String> {
        let s = |p: &Path| p.display().to_string();
        let mut v: Vec<String> = MACHINE_ARGS.iter().map(|x| x.to_string()).collect();
        v.extend(["-L".into(), s(&self.datadir)]);
        v.extend(["-kernel".into(), s(&self.kernel)]);
        v.extend(["-initrd".into(), s(&self.initrd)]);
        v.extend(["-append".into(), KERNEL_CMDLINE.into()]);
        v.extend([
            "-drive".into(),
            format!(
                "file={},format=raw,if=none,id=d0,readonly=on",
                s(&self.disk)
            ),
        ]);
        for d in DEVICES {
            v.extend(["-device".into(), d.to_string()]);
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

    pub fn to_json(&self) -> String {
        let q = |s: &str| serde_json::Value::String(s.to_string());
        let mut m = serde_json::Map::new();
        m.insert("qemu".into(), q(&self.qemu.display().to_string()));
        m.insert("qemu_version".into(), q(self.qemu_version));
        m.insert("ld_library_path".into(), q(&self.lib_path));
        m.insert("datadir".into(), q(&self.datadir.display().to_string()));
        m.insert("kernel".into(), q(&self.kernel.display().to_string()));
        m.insert("kernel_version".into(), q(&self.kernel_version));
        m.insert(
            "kernel_config".into(),
            q(&self.kernel_config.display().to_string()),
        );
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

pub struct BootResult {
    pub wall: Duration,
    pub completed: bool,
}

/// Boots the guest with `extra` QEMU arguments, console to `out/console.log`, QEMU's trace log
/// to `trace` if given; kills QEMU after `timeout`.
pub fn boot(
    g: &Guest,
    out: &Path,
    trace: Option<&Path>,
    extra: &[String],
    timeout: Duration,
) -> Result<BootResult> {
    let console = out.join("console.log");
    let mut c = g.command();
    c.args(g.argv()).args(extra);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_is_the_reference_command_line() {
        let g = Guest {
            qemu: "/q".into(),
            lib_path: String::new(),
            datadir: "/d".into(),
            kernel: "/k".into(),
            kernel_config: "/c".into(),
            initrd: "/i".into(),
            disk: "/disk".into(),
            busybox: "/b".into(),
            modules: "/m".into(),
            qemu_version: "7.2",
            kernel_version: "6.12".into(),
        };
        let argv = g.argv().join(" ");
        assert!(argv.starts_with("-M virt,iommu=smmuv3 -cpu max,pauth-impdef=on -smp 2 -m 1G"));
        assert!(argv.contains(
            "-append console=ttyAMA0 rdinit=/init iommu.passthrough=0 iommu.strict=1 panic=-1 \
             -drive file=/disk,format=raw,if=none,id=d0,readonly=on -device virtio-blk-pci"
        ));
        assert!(argv.ends_with("iommu_platform=on,romfile="));
        let v: serde_json::Value = serde_json::from_str(&g.to_json()).unwrap();
        assert_eq!(v["done_marker"], DONE_MARKER);
        assert_eq!(v["argv"].as_array().unwrap().len(), g.argv().len());
    }
}
