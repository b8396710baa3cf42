//! The host target's part of the ABI: what the probes on a kernel's own SMMUv3 driver
//! (`arm_smmu_cmdq_issue_cmdlist`, `arm_smmu_cmdq_write_entries`) report, and the configuration
//! userspace reads from the kernel's BTF and hands them (argument positions, struct offsets).
//!
//! One `arm_smmu_cmdq_issue_cmdlist` call is one batch: its commands come as
//! [`HostCommandEvent`]s (the CMD_SYNC the driver appends too, read back from the ring), then one
//! [`HostBatchEvent`] at its return. Both are written when the call returns, so a batch is
//! reported whole or not at all.

use crate::EventHeader;

/// Commands read per batch (Linux's CMDQ_BATCH_ENTRIES is 64); more are counted as missed.
pub const HOST_BATCH_MAX: u32 = 64;
/// Nested `arm_smmu_cmdq_issue_cmdlist` calls tracked per CPU (an interrupt may issue commands
/// between the entry of a call and the point where it masks interrupts).
pub const HOST_FRAMES: usize = 4;
/// A frame older than this when a new call enters is a call whose return was never seen.
pub const HOST_FRAME_STALE_NS: u64 = 2_000_000_000;
/// [`HostConfig`]: the function's form has no such argument.
pub const HOST_ARG_NONE: u32 = 0xff;
/// [`HostConfig`]: the kernel's BTF did not give this offset.
pub const HOST_OFFSET_UNKNOWN: u32 = u32::MAX;

/// [`HostBatchEvent::flags`]: the driver appended a CMD_SYNC (the `sync` argument).
pub const HOST_BATCH_SYNC: u32 = 1;
/// [`HostBatchEvent::flags`]: `prod` is known (`arm_smmu_cmdq_write_entries` was seen).
pub const HOST_BATCH_PROD: u32 = 2;
/// [`HostBatchEvent::flags`]: whether the queue is the SMMU's own (`smmu->cmdq`) is known...
pub const HOST_BATCH_MAIN_KNOWN: u32 = 4;
/// ... and it is (otherwise another queue, e.g. a tegra241 VCMDQ).
pub const HOST_BATCH_MAIN: u32 = 8;
/// [`HostBatchEvent::flags`]: `wait_ns` was measured on `arm_smmu_cmdq_poll_until_sync`.
pub const HOST_BATCH_WAIT: u32 = 16;
/// Every flag this ABI defines.
pub const HOST_BATCH_FLAGS: u32 =
    HOST_BATCH_SYNC | HOST_BATCH_PROD | HOST_BATCH_MAIN_KNOWN | HOST_BATCH_MAIN | HOST_BATCH_WAIT;

/// One `arm_smmu_cmdq_issue_cmdlist` call, entry to return (header + 56 bytes). The header's
/// timestamp is the entry.
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct HostBatchEvent {
    pub hdr: EventHeader,
    /// Kernel address of the `struct arm_smmu_cmdq` written to (0: unknown).
    pub cmdq: u64,
    /// Kernel address of the `struct arm_smmu_device`.
    pub smmu: u64,
    /// Entry to return: submission, plus the CMD_SYNC wait when one was appended.
    pub duration_ns: u64,
    /// Time in `arm_smmu_cmdq_poll_until_sync` ([`HOST_BATCH_WAIT`]).
    pub wait_ns: u64,
    /// Ring pointer (index | wrap bit) of the batch's first slot ([`HOST_BATCH_PROD`]).
    pub prod: u32,
    /// Commands passed in (the appended CMD_SYNC not included).
    pub n: u32,
    /// `HOST_BATCH_*`.
    pub flags: u32,
    /// The queue's `max_n_shift` (log2 of its entries); 0: unknown.
    pub log2size: u32,
    /// The function's return value.
    pub ret: i32,
    /// Commands of this batch not reported: beyond [`HOST_BATCH_MAX`], or unreadable.
    pub missed: u32,
}

/// One command the driver wrote to a command queue (header + 32 bytes).
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct HostCommandEvent {
    pub hdr: EventHeader,
    /// Kernel address of the `struct arm_smmu_cmdq`.
    pub cmdq: u64,
    /// Ring pointer (index | wrap bit) of its slot, or `INDEX_UNKNOWN`.
    pub index: u32,
    /// 1: the CMD_SYNC the driver appended, read back from the ring.
    pub appended_sync: u32,
    pub w0: u64,
    pub w1: u64,
}

/// What the host probes need to know about the running kernel, one entry in an `Array` map.
/// Userspace fills it from the kernel's BTF before attaching; `enabled` = 0 keeps the probes
/// silent.
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct HostConfig {
    pub enabled: u32,
    /// Positions (0-based) of `arm_smmu_cmdq_issue_cmdlist`'s arguments, [`HOST_ARG_NONE`] when
    /// its form lacks one (`cmdq` before Linux 6.12: `(smmu, cmds, n, sync)`).
    pub arg_smmu: u32,
    pub arg_cmdq: u32,
    pub arg_cmds: u32,
    pub arg_n: u32,
    pub arg_sync: u32,
    /// `offsetof(struct arm_smmu_device, cmdq)`: the SMMU's own queue.
    pub main_cmdq_offset: u32,
    /// `offsetof(struct arm_smmu_cmdq, q.llq.max_n_shift)`.
    pub max_n_shift_offset: u32,
    /// `offsetof(struct arm_smmu_cmdq, q.base)`: the ring's kernel address.
    pub ring_base_offset: u32,
    pub _pad: u32,
}

impl Default for HostConfig {
    fn default() -> Self {
        Self {
            enabled: 0,
            arg_smmu: HOST_ARG_NONE,
            arg_cmdq: HOST_ARG_NONE,
            arg_cmds: HOST_ARG_NONE,
            arg_n: HOST_ARG_NONE,
            arg_sync: HOST_ARG_NONE,
            main_cmdq_offset: HOST_OFFSET_UNKNOWN,
            max_n_shift_offset: HOST_OFFSET_UNKNOWN,
            ring_base_offset: HOST_OFFSET_UNKNOWN,
            _pad: 0,
        }
    }
}

const _: () = assert!(core::mem::size_of::<HostBatchEvent>() == 24 + 56);
const _: () = assert!(core::mem::size_of::<HostCommandEvent>() == 24 + 32);
const _: () = assert!(core::mem::size_of::<HostConfig>() == 40);

#[cfg(feature = "user")]
mod pod {
    use super::*;
    unsafe impl aya::Pod for HostConfig {}
}
