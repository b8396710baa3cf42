//! The simulated VMM: the embedded default target of `cmdqv sim`.
//!
//! - [`hooks`]: the exported functions eBPF uprobes attach to.
//! - [`driver`]: a synthetic guest driver behaving like Linux's arm-smmu-v3 + tegra241-cmdqv.
//! - [`vmm`]: guest RAM, the models, the simulated host and the passthrough state machine.
//! - [`scenario`]: named workloads.
//! - [`emit`]: reporting (hooks, and the in-process fallback pipe).

pub mod driver;
pub mod emit;
pub mod ram;
pub mod scenario;
pub mod vmm;

pub use scenario::{Scenario, scenario, scenarios};

pub mod hooks {
    //! The sim VMM's trace points. Each is an exported, never-inlined `extern "C"` function
    //! whose arguments are exactly what the matching uprobe in cmdqv-ebpf reads (System V
    //! argument registers), so the same probes attach to the sim as a real VMM would be probed.
    //! The body only keeps the arguments alive; the cost of a call is a few ns without a probe.

    use std::{
        hint::black_box,
        sync::atomic::{AtomicU64, Ordering},
    };

    /// Calls per hook. Besides counting, the distinct statics keep the three bodies different:
    /// two hooks with the same signature and an identical body get folded into one address by
    /// the optimiser, and a uprobe on one symbol would then fire for both.
    pub static MMIO_CALLS: AtomicU64 = AtomicU64::new(0);
    pub static COMMAND_CALLS: AtomicU64 = AtomicU64::new(0);
    pub static QUEUE_CALLS: AtomicU64 = AtomicU64::new(0);

    /// Names of the hooks (for probe status lists).
    pub const PROBE_NAMES: [&str; 3] = ["cmdqv_vmm_mmio", "cmdqv_vmm_command", "cmdqv_vmm_queue"];

    /// A guest MMIO access handled by the VMM. `device`: 0 = CMDQV, 1 = SMMU page.
    #[unsafe(no_mangle)]
    #[inline(never)]
    pub extern "C" fn cmdqv_vmm_mmio(
        device: u32,
        offset: u64,
        value: u64,
        size: u32,
        is_write: u32,
    ) {
        MMIO_CALLS.fetch_add(1, Ordering::Relaxed);
        black_box((device, offset, value, size, is_write));
    }

    /// One command taken from queue `queue` (global VCMDQ index or 0xffff) at CONS `index`.
    #[unsafe(no_mangle)]
    #[inline(never)]
    pub extern "C" fn cmdqv_vmm_command(queue: u32, index: u32, w0: u64, w1: u64) {
        COMMAND_CALLS.fetch_add(1, Ordering::Relaxed);
        black_box((queue, index, w0, w1));
    }

    /// A queue-level happening (`op` = cmdqv_ebpf_common::QueueOp).
    #[unsafe(no_mangle)]
    #[inline(never)]
    pub extern "C" fn cmdqv_vmm_queue(queue: u32, op: u32, a: u64, b: u64) {
        QUEUE_CALLS.fetch_add(1, Ordering::Relaxed);
        black_box((queue, op, a, b));
    }
}
