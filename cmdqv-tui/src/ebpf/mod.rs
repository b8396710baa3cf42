//! The eBPF loader: embeds the object that build.rs built, loads it, attaches every probe
//! independently and records each one's status as data. Nothing here is fatal except "the
//! object does not load at all".
//!
//! Layers, each using only the ones below it: [`loader`] (object, filter, ring buffer, the
//! probes' own aya-log diagnostics in [`probe_log`], the iommufd mmap filter in
//! [`iommufd_fds`]); [`attach`] (one program onto one hook, with status); [`kvm_exit`] (the
//! `kvm:kvm_exit` probe, configured from the tracepoint's format); [`qemu_plan`] (which
//! QEMU symbols get which probes); [`host_plan`] (the kernel's own SMMUv3 driver, configured
//! from its BTF); [`plan`] (a host's probe plan and `Tracer::load`); [`program_types`] (what
//! `cmdqv doctor` checks).

pub mod attach;
pub mod host_plan;
pub mod iommufd_fds;
pub mod kvm_exit;
pub mod loader;
pub mod plan;
pub mod probe_log;
pub mod program_types;
pub mod qemu_plan;

pub use attach::{classify, ensure_tracefs, tracefs_path};
pub use loader::{AsyncTracer, BATCHED_WAKEUP_BYTES, OBJECT, Tracer, WAKEUP_TICK};
pub use plan::{
    IOMMU_TRACEPOINTS, KERNEL_FUNCTIONS, SIM_VMM_UPROBES, SYSCALL_TRACEPOINTS, TracerConfig,
};
pub use program_types::{PROGRAM_TYPES, TypeCheck, all_unavailable, check_program_types};
