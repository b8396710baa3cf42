//! The probe plan of a host: which programs go on which syscalls, tracepoints, sim VMM symbols
//! and kernel functions, chosen by a [`TracerConfig`], and [`Tracer::load`], which loads the
//! object and attaches that plan (plus a QEMU's, from `qemu_plan`, and the kernel's own SMMUv3
//! driver's, from `host_plan`).

use std::path::PathBuf;

use cmdqv_ebpf_common::FilterConfig;

use crate::ebpf::{
    attach::{attach_fentry, attach_kprobes, attach_tracepoint, attach_uprobe, ensure_tracefs},
    host_plan::{self, HostProbeConfig},
    kvm_exit,
    loader::{RingOptions, Tracer},
    qemu_plan::{self, QemuProbeConfig},
};

/// Tracepoints of the syscall probes: (program, category, name).
pub const SYSCALL_TRACEPOINTS: &[(&str, &str, &str)] = &[
    ("cmdqv_ioctl_enter", "syscalls", "sys_enter_ioctl"),
    ("cmdqv_ioctl_exit", "syscalls", "sys_exit_ioctl"),
    ("cmdqv_mmap_enter", "syscalls", "sys_enter_mmap"),
    ("cmdqv_mmap_exit", "syscalls", "sys_exit_mmap"),
    ("cmdqv_munmap_enter", "syscalls", "sys_enter_munmap"),
];

/// The generic `iommu:*` tracepoints: (program, category, name). map/unmap report only for a
/// chosen pid (they also fire for every DMA-API mapping on the host); faults and attaches always.
pub const IOMMU_TRACEPOINTS: &[(&str, &str, &str)] = &[
    ("cmdqv_iommu_map", "iommu", "map"),
    ("cmdqv_iommu_unmap", "iommu", "unmap"),
    ("cmdqv_iommu_fault", "iommu", "io_page_fault"),
    ("cmdqv_iommu_attach", "iommu", "attach_device_to_domain"),
];

/// The sim VMM's exported trace points: (program, symbol).
pub const SIM_VMM_UPROBES: &[(&str, &str)] = &[
    ("cmdqv_vmm_mmio", "cmdqv_vmm_mmio"),
    ("cmdqv_vmm_command", "cmdqv_vmm_command"),
    ("cmdqv_vmm_queue", "cmdqv_vmm_queue"),
];

/// Kernel functions worth a kprobe on a CMDQV host (../shared/reference/cmdqv-hw.md §14).
pub const KERNEL_FUNCTIONS: &[&str] = &[
    "tegra241_cmdqv_isr",
    "tegra241_vintf0_handle_error",
    "tegra241_vintf_user_handle_error",
    "tegra241_vcmdq_hw_init",
    "tegra241_vcmdq_hw_deinit",
    "tegra241_vintf_hw_init",
    "tegra241_vintf_hw_deinit",
    "tegra241_cmdqv_hw_reset",
    "tegra241_vintf_alloc_lvcmdq_user",
    "tegra241_vintf_destroy_lvcmdq_user",
    "tegra241_cmdqv_init_vintf_user",
    "tegra241_cmdqv_destroy_vintf_user",
    "tegra241_vintf_init_vsid",
    "tegra241_vintf_destroy_vsid",
    "iommufd_viommu_alloc_ioctl",
    "iommufd_hw_queue_alloc_ioctl",
    "iommufd_hw_queue_destroy",
    "iommufd_hwpt_invalidate",
    "iommufd_veventq_alloc",
    "iommufd_viommu_report_event",
    "_iommufd_alloc_mmap",
    "_iommufd_destroy_mmap",
    "arm_vsmmu_cache_invalidate",
];

/// The kprobe program put on every [`KERNEL_FUNCTIONS`] entry.
const KFUNC_PROGRAM: &str = "cmdqv_kfunc_entry";
/// The fentry variant of the iommufd ioctl probe.
const FENTRY_PROGRAM: &str = "cmdqv_kfunc_fentry";
const FENTRY_FUNCTION: &str = "iommufd_fops_ioctl";

/// What to attach.
#[derive(Clone, Debug, Default)]
pub struct TracerConfig {
    /// Only report this process (0 = all).
    pub pid: u32,
    /// Report every ioctl, not only iommufd ones.
    pub all_ioctls: bool,
    /// Attach the syscall tracepoints (ioctl, mmap, munmap).
    pub syscalls: bool,
    /// Deliver mmap/munmap records of every fd, not only iommufd ones (tests and debugging).
    /// By default the loader's iommufd filter keeps only iommufd mappings.
    pub all_mmaps: bool,
    /// Attach `kvm:kvm_mmio`, filtered to `[gpa_lo, gpa_hi)` when `gpa_hi != 0`.
    pub kvm_mmio: bool,
    pub gpa_lo: u64,
    pub gpa_hi: u64,
    /// Attach `kvm:kvm_exit` (every VM exit of `pid`'s vCPUs) and `kvm:kvm_userspace_exit`
    /// (those that reach the VMM); see `kvm_exit`.
    pub kvm_exit: bool,
    /// Attach the `iommu:*` tracepoints (reported unsupported where the kernel has none).
    pub iommu: bool,
    /// Attach the sim VMM uprobes to this binary (only in `pid` if non-zero).
    pub sim_vmm: Option<PathBuf>,
    /// Try kprobes on the CMDQV/iommufd kernel functions.
    pub kernel: bool,
    /// See [`RingOptions::wakeup_bytes`].
    pub wakeup_bytes: u64,
    /// Attach the QEMU probe set (see `qemu_plan`).
    pub qemu: Option<QemuProbeConfig>,
    /// Attach the probes on the kernel's own SMMUv3 driver (see `host_plan`).
    pub host: Option<HostProbeConfig>,
}

impl TracerConfig {
    /// The in-kernel filter this configuration starts with.
    fn filter(&self) -> FilterConfig {
        let mut filter = FilterConfig {
            pid: self.pid,
            all_ioctls: self.all_ioctls as u32,
            region_ptr: 0,
            gpa_lo: self.gpa_lo,
            gpa_hi: self.gpa_hi,
            ..Default::default()
        };
        if let Some(q) = &self.qemu {
            q.apply(&mut filter);
        }
        filter
    }

    /// The tracepoints this configuration asks for: (program, category, name).
    fn tracepoints(&self) -> Vec<(&'static str, &'static str, &'static str)> {
        let mut tps = Vec::new();
        if self.syscalls {
            tps.extend_from_slice(SYSCALL_TRACEPOINTS);
        }
        if self.kvm_mmio {
            tps.push(("cmdqv_kvm_mmio", "kvm", "kvm_mmio"));
        }
        if self.iommu {
            tps.extend_from_slice(IOMMU_TRACEPOINTS);
        }
        tps
    }
}

impl Tracer {
    /// Loads the object and attaches what `cfg` asks for. Fails only if the object itself cannot
    /// be loaded (no privileges, no BPF support, object missing); every probe that cannot attach
    /// is a status in [`Tracer::probes`].
    pub fn load(cfg: &TracerConfig) -> anyhow::Result<Self> {
        let mut t = Tracer::open(
            cfg.filter(),
            RingOptions {
                wakeup_bytes: cfg.wakeup_bytes,
                all_mmaps: cfg.all_mmaps,
            },
        )?;
        let tracepoints = cfg.tracepoints();
        if !tracepoints.is_empty() {
            ensure_tracefs();
        }
        let ebpf = t.ebpf_mut();
        let mut probes: Vec<_> = tracepoints
            .into_iter()
            .map(|(prog, cat, name)| attach_tracepoint(ebpf, prog, cat, name))
            .collect();
        if cfg.kvm_exit {
            ensure_tracefs();
            probes.push(kvm_exit::attach(ebpf));
            probes.push(kvm_exit::attach_userspace(ebpf));
        }
        if let Some(bin) = &cfg.sim_vmm {
            for (prog, sym) in SIM_VMM_UPROBES {
                probes.push(attach_uprobe(ebpf, prog, sym, bin, cfg.pid));
            }
        }
        if cfg.kernel {
            probes.extend(attach_kprobes(ebpf, KFUNC_PROGRAM, KERNEL_FUNCTIONS));
            probes.push(attach_fentry(ebpf, FENTRY_PROGRAM, FENTRY_FUNCTION));
        }
        if let Some(q) = &cfg.qemu {
            probes.extend(qemu_plan::attach_probes(ebpf, q, cfg.pid));
        }
        if let Some(h) = &cfg.host {
            probes.extend(host_plan::attach_probes(ebpf, h));
        }
        t.push_probes(probes);
        Ok(t)
    }
}
