//! The simulated VMM (in progress): the exported trace points that eBPF uprobes attach to.

pub mod hooks {
    //! The sim VMM's trace points. Each is an exported, never-inlined `extern "C"` function
    //! whose arguments are exactly what the matching uprobe in cmdqv-ebpf reads (System V
    //! argument registers), so the same probes attach to the sim as a real VMM would be probed.
    //! The body only keeps the arguments alive; the cost of a call is ~2 ns without a probe.

    use std::hint::black_box;

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
        black_box((device, offset, value, size, is_write));
    }

    /// One command taken from queue `queue` (global VCMDQ index or 0xffff) at CONS `index`.
    #[unsafe(no_mangle)]
    #[inline(never)]
    pub extern "C" fn cmdqv_vmm_command(queue: u32, index: u32, w0: u64, w1: u64) {
        black_box((queue, index, w0, w1));
    }

    /// A queue-level happening (`op` = cmdqv_ebpf_common::QueueOp).
    #[unsafe(no_mangle)]
    #[inline(never)]
    pub extern "C" fn cmdqv_vmm_queue(queue: u32, op: u32, a: u64, b: u64) {
        black_box((queue, op, a, b));
    }
}
