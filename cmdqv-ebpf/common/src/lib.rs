//! The event ABI between the cmdqv eBPF programs and userspace.
//!
//! Every record in the ring buffer starts with one fixed [`EventHeader`] (kind, version,
//! timestamp, cpu, pid/tid) followed by a typed payload. Sizes are asserted at compile time on
//! both sides; userspace decodes with explicit length checks (see `cmdqv_core::probe_abi`), never
//! by transmuting an unchecked slice.
#![no_std]

/// ABI version carried in every header; bump on any layout change.
pub const ABI_VERSION: u16 = 1;

/// ioctl "type" byte of iommufd (`';'`), i.e. bits [15:8] of the command number.
pub const IOMMUFD_TYPE: u32 = 0x3b;

/// Number of argument bytes copied from an iommufd ioctl's argument struct.
pub const IOCTL_ARG_BYTES: usize = 48;

/// Kinds of record. Values are part of the ABI.
///
/// Kinds from [`USERSPACE_KINDS`] on are never written by the eBPF programs: userspace uses them
/// for what it reports itself (e.g. [`EventKind::Lost`]) in the same record format, so the trace
/// file stores every event as one of these records.
#[repr(u16)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// iommufd ioctl: enter+exit joined in the kernel.
    Ioctl = 1,
    /// VMM MMIO access seen by a uprobe (sim VMM or QEMU).
    Mmio = 2,
    /// `kvm:kvm_mmio` tracepoint.
    KvmMmio = 3,
    /// One 16-byte command as consumed / fetched by the VMM.
    Command = 4,
    /// A host-queue event from the VMM (CONS update, error, alloc/free).
    Queue = 5,
    /// mmap/munmap of an iommufd fd.
    Mmap = 6,
    /// A kernel function probe (kprobe/fentry) hit.
    KFunc = 7,
    /// An `iommu:*` tracepoint (map, unmap, io_page_fault, attach_device_to_domain).
    Iommu = 8,
    /// One `arm_smmu_cmdq_issue_cmdlist` call of the host kernel's SMMUv3 driver ([`HostBatchEvent`]).
    HostBatch = 9,
    /// One command that call wrote to a command queue ([`HostCommandEvent`]).
    HostCommand = 10,
    /// `kvm:kvm_exit`: one VM exit of a vCPU, or `kvm:kvm_userspace_exit`: one return of
    /// KVM_RUN to the VMM ([`KvmExitEvent`], `isa` [`KVM_USERSPACE_EXIT`]).
    KvmExit = 11,
    /// Userspace only: events lost before they were decoded (ring buffer full, a channel).
    Lost = 0x8001,
}

/// First record kind that only userspace writes.
pub const USERSPACE_KINDS: u16 = 0x8000;
/// Userspace only, not an event: a trace file's metadata record (the kind, then JSON).
pub const KIND_TRACE_META: u16 = 0x8000;

impl EventKind {
    pub fn from_u16(v: u16) -> Option<Self> {
        Some(match v {
            1 => Self::Ioctl,
            2 => Self::Mmio,
            3 => Self::KvmMmio,
            4 => Self::Command,
            5 => Self::Queue,
            6 => Self::Mmap,
            7 => Self::KFunc,
            8 => Self::Iommu,
            9 => Self::HostBatch,
            10 => Self::HostCommand,
            11 => Self::KvmExit,
            0x8001 => Self::Lost,
            _ => return None,
        })
    }
}

/// The fixed header of every record (24 bytes).
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct EventHeader {
    pub kind: u16,
    pub version: u16,
    pub cpu: u32,
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC).
    pub ts_ns: u64,
    /// Thread-group id (process id).
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
}

/// iommufd ioctl, enter and exit joined (header + 88 bytes).
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct IoctlEvent {
    pub hdr: EventHeader,
    pub fd: i32,
    /// Full ioctl command number (e.g. 0x3b90 = IOMMU_VIOMMU_ALLOC).
    pub cmd: u32,
    /// Syscall return value (negative errno on failure).
    pub ret: i64,
    pub duration_ns: u64,
    /// How many bytes of `arg` are valid (0 when the user pointer could not be read).
    pub arg_len: u32,
    pub _pad: u32,
    pub arg: [u8; IOCTL_ARG_BYTES],
}

/// Which MMIO entry point reported an access.
#[repr(u8)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum MmioOrigin {
    /// The cmdqv sim VMM's exported `cmdqv_vmm_mmio_{read,write}`.
    SimVmm = 1,
    /// QEMU `memory_region_dispatch_{read,write}` filtered to a watched region.
    QemuDispatch = 2,
    /// QEMU `tegra241_cmdqv_{read,write}` / `smmu_{read,write}_mmio` (symbols present).
    QemuDevice = 3,
    /// QEMU `memory_region_dispatch_write`: the write that taught the kernel which
    /// MemoryRegion is the SMMU's (a CMDQ_BASE-shaped 64-bit write at offset 0x90).
    QemuDispatchLearned = 4,
}

/// A VMM MMIO access (header + 24 bytes).
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct MmioEvent {
    pub hdr: EventHeader,
    /// Offset inside the device region.
    pub offset: u64,
    pub value: u64,
    pub size: u8,
    pub is_write: u8,
    /// [`MmioOrigin`]
    pub origin: u8,
    /// Which device: 0 = CMDQV, 1 = SMMUv3 register page.
    pub device: u8,
    pub _pad: u32,
}

/// `kvm:kvm_mmio` (header + 24 bytes).
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct KvmMmioEvent {
    pub hdr: EventHeader,
    /// KVM_TRACE_MMIO_READ_UNSATISFIED = 0, READ = 1, WRITE = 2.
    pub mmio_type: u32,
    pub len: u32,
    pub gpa: u64,
    pub val: u64,
}

/// `kvm:kvm_exit` (header + 32 bytes). The tracepoint's fields differ per architecture (x86:
/// `exit_reason`, `isa`, `guest_rip`, `info1`, `vcpu_id`; arm64: `ret`, `esr_ec`, `vcpu_pc`), so
/// the program reads them at the offsets userspace found in the tracepoint's format
/// ([`KvmExitLayout`]) and this record holds them under one set of names.
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct KvmExitEvent {
    pub hdr: EventHeader,
    /// x86: `exit_reason` (VMX basic exit reason or SVM exit code); arm64: `esr_ec`.
    pub reason: u32,
    /// [`KVM_ISA_VMX`], [`KVM_ISA_SVM`] or [`KVM_ISA_ARM64`].
    pub isa: u32,
    /// x86: `vcpu_id`; [`KVM_EXIT_NO_VCPU`] where the tracepoint has none (arm64).
    pub vcpu: u32,
    pub _pad: u32,
    /// The guest's program counter at the exit (`guest_rip` / `vcpu_pc`).
    pub pc: u64,
    /// x86: `info1` (e.g. the exit qualification); arm64: `ret` (ARM_EXCEPTION_*: 0 = IRQ,
    /// 2 = TRAP).
    pub info: u64,
}

/// [`KvmExitEvent::isa`]: Intel VMX, AMD SVM (the kernel's own `KVM_ISA_*` values), arm64 (ours).
pub const KVM_ISA_VMX: u32 = 1;
pub const KVM_ISA_SVM: u32 = 2;
pub const KVM_ISA_ARM64: u32 = 0xa64;
/// [`KvmExitEvent::isa`] of a `kvm:kvm_userspace_exit` record (no ISA: `reason` is the
/// KVM_EXIT_* code KVM_RUN returned with, `info` its errno as i64, 0 or negative). Some KVMs
/// never fire `kvm:kvm_exit` (PVM, which runs guests without VMX/SVM); every exit that reaches
/// the VMM still fires this one, on every architecture.
pub const KVM_USERSPACE_EXIT: u32 = 0xffff_0000;
/// [`KvmExitEvent::vcpu`] where the tracepoint does not say.
pub const KVM_EXIT_NO_VCPU: u32 = u32::MAX;

/// Where `kvm:kvm_exit`'s fields sit in this kernel's record (from its tracepoint format),
/// one entry in an `Array` map. An offset of 0 means the field is absent (offset 0 is the
/// common header); a size is 4 or 8. `enabled` = 0 keeps the program silent.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct KvmExitLayout {
    pub enabled: u32,
    /// The ISA when the record has no `isa` field (arm64).
    pub isa: u32,
    pub reason_off: u32,
    pub isa_off: u32,
    pub vcpu_off: u32,
    pub pc_off: u32,
    pub info_off: u32,
    pub info_size: u32,
}

/// One command taken by the VMM's consumer (header + 32 bytes).
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct CommandEvent {
    pub hdr: EventHeader,
    /// Queue id: global VCMDQ index, or [`MAIN_CMDQ`] for the SMMU's own command queue.
    pub queue: u32,
    /// CONS index (with wrap bit) the command was read from.
    pub index: u32,
    pub w0: u64,
    pub w1: u64,
}

/// Queue id used for the SMMU's architected command queue.
pub const MAIN_CMDQ: u32 = 0xffff;

/// What a [`QueueEvent`] reports.
#[repr(u32)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum QueueOp {
    /// Consumption pass finished: a = CONS, b = PROD.
    Consumed = 1,
    /// Queue stopped on an error: a = CONS (faulting index), b = CERROR code.
    Error = 2,
    /// Guest acknowledged the error (GERRORN): a = GERRORN.
    ErrorAck = 3,
    /// Host hardware queue allocated: a = log2size, b = 0 ok / errno.
    HwAlloc = 4,
    /// Host hardware queue freed.
    HwFree = 5,
    /// Guest doorbell: a = new PROD, b = CONS at the time.
    Doorbell = 6,
    /// Queue enabled (a = 1) or disabled (a = 0); b = log2size.
    Enable = 7,
    /// CMDQ_ALLOC_MAP took effect: a = VINTF, b = LVCMDQ | ALLOC << 16.
    Map = 8,
    /// Passthrough bookkeeping of the VMM (queue = [`VMM_QUEUE`]): a = handovers,
    /// b = view_mismatches | commands_lost << 32.
    Handover = 9,
}

/// Queue id used for VMM-wide reports (not a queue).
pub const VMM_QUEUE: u32 = 0xfffe;

/// [`QueueOp::Map`]: `b` holds the LVCMDQ in its low 16 bits and ALLOC at this bit.
pub const MAP_ALLOC_BIT: u32 = 16;
/// [`QueueOp::Map`]: mask of the LVCMDQ in `b`.
pub const MAP_LVCMDQ_MASK: u64 = 0xffff;
/// [`QueueOp::Handover`]: `b` holds view_mismatches in its low 32 bits, commands_lost above.
pub const HANDOVER_LOST_SHIFT: u32 = 32;

/// A queue-level event from the VMM (header + 24 bytes).
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct QueueEvent {
    pub hdr: EventHeader,
    pub queue: u32,
    /// [`QueueOp`]
    pub op: u32,
    pub a: u64,
    pub b: u64,
}

/// mmap of an iommufd fd or munmap (header + 40 bytes).
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct MmapEvent {
    pub hdr: EventHeader,
    pub addr: u64,
    pub len: u64,
    pub offset: u64,
    pub ret: i64,
    pub fd: i32,
    /// 1 = mmap, 0 = munmap.
    pub is_map: u32,
}

/// A kernel function probe hit (header + 48 bytes).
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct KFuncEvent {
    pub hdr: EventHeader,
    /// Index into the loader's kernel function table.
    pub func: u32,
    /// 0 = entry, 1 = return.
    pub is_ret: u32,
    pub args: [u64; 5],
}

/// Which `iommu:*` tracepoint an [`IommuEvent`] comes from.
#[repr(u32)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum IommuOp {
    /// `iommu:map`: iova, paddr, size.
    Map = 1,
    /// `iommu:unmap`: iova, size, unmapped (bytes actually unmapped).
    Unmap = 2,
    /// `iommu:io_page_fault`: device, iova, flags.
    IoPageFault = 3,
    /// `iommu:attach_device_to_domain`: device.
    Attach = 4,
}

/// Bytes of the device name kept from `iommu:*` tracepoints (NUL-padded, truncated).
pub const IOMMU_DEV_NAME: usize = 32;

/// An `iommu:*` tracepoint hit (header + 72 bytes). Fields a tracepoint lacks are 0.
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct IommuEvent {
    pub hdr: EventHeader,
    /// [`IommuOp`]
    pub op: u32,
    /// io_page_fault: IOMMU_FAULT_* flags.
    pub flags: i32,
    pub iova: u64,
    pub paddr: u64,
    pub size: u64,
    pub unmapped: u64,
    /// Device name (io_page_fault, attach), NUL-padded.
    pub device: [u8; IOMMU_DEV_NAME],
}

/// Events lost before userspace decoded them (header + 8 bytes). Userspace only.
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct LostEvent {
    pub hdr: EventHeader,
    pub count: u64,
}

// The layout is the contract: assert every size on both sides.
const _: () = assert!(core::mem::size_of::<EventHeader>() == 24);
const _: () = assert!(core::mem::size_of::<IoctlEvent>() == 24 + 32 + IOCTL_ARG_BYTES);
const _: () = assert!(core::mem::size_of::<MmioEvent>() == 48);
const _: () = assert!(core::mem::size_of::<KvmMmioEvent>() == 48);
const _: () = assert!(core::mem::size_of::<CommandEvent>() == 48);
const _: () = assert!(core::mem::size_of::<QueueEvent>() == 48);
const _: () = assert!(core::mem::size_of::<MmapEvent>() == 64);
const _: () = assert!(core::mem::size_of::<KFuncEvent>() == 72);
const _: () = assert!(core::mem::size_of::<IommuEvent>() == 24 + 40 + IOMMU_DEV_NAME);
const _: () = assert!(core::mem::size_of::<LostEvent>() == 32);
const _: () = assert!(core::mem::size_of::<KvmExitEvent>() == 24 + 32);
const _: () = assert!(core::mem::size_of::<KvmExitLayout>() == 32);
const _: () =
    assert!(EventKind::Lost as u16 >= USERSPACE_KINDS && KIND_TRACE_META >= USERSPACE_KINDS);
const _: () = assert!(core::mem::size_of::<FilterConfig>() == 56);

/// In-kernel filter configuration, one entry in an `Array` map.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct FilterConfig {
    /// Only report this thread-group (0 = every process).
    pub pid: u32,
    /// Report every ioctl, not only iommufd ones (tests and debugging).
    pub all_ioctls: u32,
    /// QEMU: the MemoryRegion pointer of the watched device (0 = learn from the offset window).
    pub region_ptr: u64,
    /// `kvm:kvm_mmio` window [gpa_lo, gpa_hi).
    pub gpa_lo: u64,
    pub gpa_hi: u64,
    /// Command queue window for address_space_rw fetches [q_lo, q_hi).
    pub q_lo: u64,
    pub q_hi: u64,
    /// QEMU target switches ([`QEMU_LEARN_REGION`], [`QEMU_FETCH_UNWINDOWED`]).
    pub qemu_flags: u32,
    pub _qemu_pad: u32,
}

/// `FilterConfig::qemu_flags`: while `region_ptr` is 0 (and `pid` is set), the first 64-bit
/// write at offset 0x90 whose value has the shape of CMDQ_BASE names the SMMU's MemoryRegion;
/// the kernel stores it in `region_ptr` itself, so no write after it is lost to a round trip.
pub const QEMU_LEARN_REGION: u32 = 1;
/// `FilterConfig::qemu_flags`: while the queue window is unknown (`q_hi` = 0), report every
/// 16-byte device DMA read as a command with index [`INDEX_UNKNOWN`]. On a stock QEMU `virt`
/// machine the only such reads are the SMMU's command fetches (measured: 1143 of 1143); used
/// when attaching to a QEMU that programmed CMDQ_BASE before the probes existed.
pub const QEMU_FETCH_UNWINDOWED: u32 = 2;
/// `FilterConfig::qemu_flags`: while `region_ptr` is 0 (and `pid` is set), remember each
/// thread's last MMIO write; when that thread then fetches a command (a 16-byte DMA read), the
/// write that triggered it was the SMMU's (QEMU consumes the queue inside the CMDQ_PROD, CR0 or
/// GERRORN write handler), so its MemoryRegion is the SMMU's. For attaching to a running QEMU.
pub const QEMU_LEARN_FROM_FETCH: u32 = 4;
/// `CommandEvent::index` of a fetch outside any known queue window.
pub const INDEX_UNKNOWN: u32 = u32::MAX;

/// SMMUv3 register offsets the QEMU probes look at in the kernel.
pub const SMMU_CMDQ_BASE: u64 = 0x90;
/// QEMU ignores offset bit 16 (page 1 aliases page 0).
pub const SMMU_PAGE1_BIT: u64 = 1 << 16;

/// Queue window [lo, hi) of a CMDQ_BASE value (ADDR[51:5], LOG2SIZE[4:0] clamped to QEMU's 19),
/// or None when the value cannot be a CMDQ_BASE (LOG2SIZE 0, reserved high bits set).
#[inline(always)]
pub fn cmdq_base_window(value: u64) -> Option<(u64, u64)> {
    let log2 = value & 0x1f;
    // Bits 63 and 61:52 are RES0; bit 62 is RA.
    if log2 == 0 || value & 0xbff0_0000_0000_0000 != 0 {
        return None;
    }
    let log2 = if log2 > 19 { 19 } else { log2 };
    let lo = value & 0x000f_ffff_ffff_ffe0;
    if lo == 0 {
        return None;
    }
    Some((lo, lo + (16u64 << log2)))
}

/// The `WAKEUP` map (one u64): 0 = wake a waiting reader on every record (the kernel's default);
/// N = only once N bytes wait in the ring (records are submitted with BPF_RB_NO_WAKEUP below it,
/// BPF_RB_FORCE_WAKEUP from it on). Waking a reader per record costs more than the probe itself
/// in a VM; a reader that sets N must also poll with a timeout to pick up a quiet tail.
pub const WAKEUP_SLOTS: u32 = 1;

/// Indices into the per-CPU `DROPS` counter array.
pub const DROP_RINGBUF_FULL: u32 = 0;
/// `arm_smmu_cmdq_issue_cmdlist` calls nested deeper than [`HOST_FRAMES`] on a CPU: not reported.
pub const DROP_HOST_NESTING: u32 = 1;
pub const DROP_SLOTS: u32 = 2;

// ---------------------------------------------------------------------------------------------
// The host target: probes on a kernel's own SMMUv3 driver (`arm_smmu_cmdq_issue_cmdlist`,
// `arm_smmu_cmdq_write_entries`), and the configuration userspace reads from the kernel's BTF
// and hands them (argument positions, struct offsets). One `arm_smmu_cmdq_issue_cmdlist` call is
// one batch: its commands come as [`HostCommandEvent`]s (the CMD_SYNC the driver appends too,
// read back from the ring), then one [`HostBatchEvent`]; all are written when the call returns,
// so a batch is reported whole or not at all.

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
    unsafe impl aya::Pod for FilterConfig {}
    unsafe impl aya::Pod for HostConfig {}
    unsafe impl aya::Pod for KvmExitLayout {}
}
