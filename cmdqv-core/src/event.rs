//! The one event type that every source produces: eBPF probes (decoded by [`crate::probe_abi`]),
//! the in-process fallback of the simulated VMM, and trace-file replay.
//!
//! Events are small, `Copy`, and carry a monotonic nanosecond timestamp (CLOCK_MONOTONIC, the
//! clock `bpf_ktime_get_ns` uses), so in-process and eBPF events order the same way.

use std::borrow::Cow;
use std::num::NonZeroU32;

use serde::{Deserialize, Serialize};

use crate::regs::{Cerror, cons_indx};

/// Where a stream of events comes from (shown to the user in the header and in JSON).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// Real eBPF probes loaded into the kernel.
    Ebpf,
    /// The simulated VMM reporting its own events (no eBPF available or asked for).
    InProcess,
    /// A recorded trace file.
    Replay,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Ebpf => "ebpf",
            Source::InProcess => "in-process",
            Source::Replay => "replay",
        }
    }
}

/// Queue id of the SMMU's architected command queue (the trapped path).
pub const MAIN_CMDQ: u32 = cmdqv_ebpf_common::MAIN_CMDQ;

/// Which device an MMIO access went to.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Device {
    Cmdqv,
    Smmu,
}

/// Which kind of [`QueueEvent`] (the ABI's `cmdqv_ebpf_common::QueueOp`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum QueueOp {
    Consumed,
    Error,
    ErrorAck,
    HwAlloc,
    HwFree,
    Doorbell,
    Enable,
    Map,
    Handover,
}

/// CONS_INDX.ERR as a queue reported it: a 7-bit code, named by [`Cerror`] where the reference
/// defines it. A code the reference does not name is kept (shown as `CERROR(n)`) rather than
/// refused, so an error reported by newer hardware still counts as an error.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ErrCode(u8);

impl ErrCode {
    /// From a CONS_INDX.ERR value; bits above the 7-bit field are not part of it.
    pub fn new(code: u64) -> Self {
        Self((code & u64::from(cons_indx::ERR_MASK)) as u8)
    }
    pub fn code(self) -> u8 {
        self.0
    }
    /// The CERROR this code names, if the reference names it.
    pub fn cerror(self) -> Option<Cerror> {
        Cerror::from_code(self.0.into())
    }
    /// `CERROR_ILL`, `CERROR_ABT`, … or `CERROR(n)` for an unnamed code.
    pub fn name(self) -> Cow<'static, str> {
        match self.cerror() {
            Some(c) => c.name().into(),
            None => format!("CERROR({})", self.0).into(),
        }
    }
    /// `ILL`, `ABT`, `ATC`, `IAC`, `-` (no error) or `E<n>` for an unnamed code.
    pub fn short_name(self) -> Cow<'static, str> {
        match self.cerror() {
            Some(c) => c.short_name().into(),
            None => format!("E{}", self.0).into(),
        }
    }
}

impl From<Cerror> for ErrCode {
    fn from(c: Cerror) -> Self {
        Self(c as u8)
    }
}

/// A queue-level happening, decoded from the ABI's packed words once (in
/// [`crate::probe_abi`]); queue pointers are PROD/CONS register values (index, wrap bit and,
/// for CONS, the ERR field).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "op")]
pub enum QueueEvent {
    /// Guest doorbell: PROD written, CONS at that moment.
    Doorbell { prod: u32, cons: u32 },
    /// A consumption pass ended.
    Consumed { cons: u32, prod: u32 },
    /// The queue stopped on the command at CONS pointer `index`.
    Error { index: u32, cerror: ErrCode },
    /// The guest acknowledged the error by writing GERRORN.
    ErrorAck { gerrorn: u32 },
    /// A host hardware queue was allocated (`errno` = `None`) or its allocation failed.
    HwAlloc {
        log2size: u8,
        errno: Option<NonZeroU32>,
    },
    /// The host hardware queue was freed.
    HwFree,
    /// The queue was enabled or disabled (ring size at that moment).
    Enable { enabled: bool, log2size: u8 },
    /// CMDQ_ALLOC_MAP took effect: the queue was mapped (`alloc`) or unmapped as LVCMDQ `lvcmdq`
    /// of VINTF `vintf`.
    Map {
        vintf: u32,
        lvcmdq: u16,
        alloc: bool,
    },
    /// VMM-wide passthrough bookkeeping (on queue [`VMM_QUEUE`]), cumulative.
    Handover {
        handovers: u64,
        view_mismatches: u32,
        commands_lost: u32,
    },
}

impl QueueEvent {
    pub fn op(&self) -> QueueOp {
        match self {
            Self::Doorbell { .. } => QueueOp::Doorbell,
            Self::Consumed { .. } => QueueOp::Consumed,
            Self::Error { .. } => QueueOp::Error,
            Self::ErrorAck { .. } => QueueOp::ErrorAck,
            Self::HwAlloc { .. } => QueueOp::HwAlloc,
            Self::HwFree => QueueOp::HwFree,
            Self::Enable { .. } => QueueOp::Enable,
            Self::Map { .. } => QueueOp::Map,
            Self::Handover { .. } => QueueOp::Handover,
        }
    }
}

/// Queue id of VMM-wide reports.
pub const VMM_QUEUE: u32 = cmdqv_ebpf_common::VMM_QUEUE;

impl QueueOp {
    pub fn from_raw(v: u32) -> Option<Self> {
        use cmdqv_ebpf_common::QueueOp as R;
        Some(match v {
            x if x == R::Consumed as u32 => Self::Consumed,
            x if x == R::Error as u32 => Self::Error,
            x if x == R::ErrorAck as u32 => Self::ErrorAck,
            x if x == R::HwAlloc as u32 => Self::HwAlloc,
            x if x == R::HwFree as u32 => Self::HwFree,
            x if x == R::Doorbell as u32 => Self::Doorbell,
            x if x == R::Enable as u32 => Self::Enable,
            x if x == R::Map as u32 => Self::Map,
            x if x == R::Handover as u32 => Self::Handover,
            _ => return None,
        })
    }

    pub fn to_raw(self) -> u32 {
        use cmdqv_ebpf_common::QueueOp as R;
        (match self {
            Self::Consumed => R::Consumed,
            Self::Error => R::Error,
            Self::ErrorAck => R::ErrorAck,
            Self::HwAlloc => R::HwAlloc,
            Self::HwFree => R::HwFree,
            Self::Doorbell => R::Doorbell,
            Self::Enable => R::Enable,
            Self::Map => R::Map,
            Self::Handover => R::Handover,
        }) as u32
    }
}

/// Which `iommu:*` tracepoint fired, mirroring `cmdqv_ebpf_common::IommuOp`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IommuOp {
    /// `iommu:map` (iova, paddr, size).
    Map,
    /// `iommu:unmap` (iova, size, unmapped).
    Unmap,
    /// `iommu:io_page_fault` (device, iova, flags).
    IoPageFault,
    /// `iommu:attach_device_to_domain` (device).
    Attach,
}

impl IommuOp {
    pub fn from_raw(v: u32) -> Option<Self> {
        use cmdqv_ebpf_common::IommuOp as R;
        Some(match v {
            x if x == R::Map as u32 => Self::Map,
            x if x == R::Unmap as u32 => Self::Unmap,
            x if x == R::IoPageFault as u32 => Self::IoPageFault,
            x if x == R::Attach as u32 => Self::Attach,
            _ => return None,
        })
    }

    pub fn to_raw(self) -> u32 {
        use cmdqv_ebpf_common::IommuOp as R;
        (match self {
            Self::Map => R::Map,
            Self::Unmap => R::Unmap,
            Self::IoPageFault => R::IoPageFault,
            Self::Attach => R::Attach,
        }) as u32
    }
}

/// Length of the device name carried by [`Payload::Iommu`] (NUL-padded).
pub const IOMMU_DEV_NAME: usize = cmdqv_ebpf_common::IOMMU_DEV_NAME;

/// The device name of an [`Payload::Iommu`] event (up to the first NUL, lossy UTF-8).
pub fn iommu_device_name(device: &[u8; IOMMU_DEV_NAME]) -> String {
    let end = device.iter().position(|&b| b == 0).unwrap_or(device.len());
    String::from_utf8_lossy(&device[..end]).into_owned()
}

/// One `kvm:kvm_exit` or `kvm:kvm_userspace_exit` record. `isa` says how to read `reason` (see
/// [`crate::kvm_exit`]): x86's exit reason with `info` its `info1`; arm64's ESR exception class
/// with `info` the exit's `ret` (0 = an interrupt, 2 = a trap); or, for a return to the VMM
/// (`isa` [`crate::kvm_exit::USERSPACE_EXIT`]), the KVM_EXIT_* code with `info` its errno.
/// `vcpu` is `u32::MAX` where the tracepoint does not name one.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvmExit {
    pub isa: u32,
    pub reason: u32,
    pub vcpu: u32,
    pub pc: u64,
    pub info: u64,
}

/// What happened.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "type")]
pub enum Payload {
    /// A guest MMIO access handled by the VMM (offset inside the device's region).
    Mmio {
        device: Device,
        offset: u64,
        value: u64,
        size: u8,
        write: bool,
    },
    /// `kvm:kvm_mmio`: 0 = read unsatisfied, 1 = read, 2 = write.
    KvmMmio {
        kind: u32,
        len: u32,
        gpa: u64,
        value: u64,
    },
    /// `kvm:kvm_exit` (one VM exit) or `kvm:kvm_userspace_exit` (one return to the VMM).
    KvmExit(KvmExit),
    /// One command taken from a queue at CONS index `index` (with wrap bit).
    Command {
        queue: u32,
        index: u32,
        w0: u64,
        w1: u64,
    },
    /// A queue-level happening on queue `queue` (global VCMDQ index, [`MAIN_CMDQ`] or
    /// [`VMM_QUEUE`]).
    Queue { queue: u32, event: QueueEvent },
    /// An iommufd ioctl (enter and exit joined); `ret` is negative errno on failure.
    Ioctl {
        fd: i32,
        cmd: u32,
        ret: i64,
        duration_ns: u64,
        arg_len: u32,
        #[serde(with = "bytes48")]
        arg: [u8; 48],
    },
    /// mmap (`map` = true) or munmap of an fd.
    Mmap {
        fd: i32,
        addr: u64,
        len: u64,
        offset: u64,
        ret: i64,
        map: bool,
    },
    /// A kernel function probe (index into the loader's table), entry or return.
    KFunc {
        func: u32,
        ret: bool,
        args: [u64; 5],
    },
    /// An `iommu:*` tracepoint; fields the tracepoint lacks are 0 (see [`IommuOp`]).
    Iommu {
        op: IommuOp,
        iova: u64,
        paddr: u64,
        size: u64,
        unmapped: u64,
        flags: i32,
        device: [u8; IOMMU_DEV_NAME],
    },
    /// One command the host kernel's SMMUv3 driver wrote to a command queue.
    HostCommand(HostCommand),
    /// One batch the host kernel's SMMUv3 driver submitted; its commands come before it as
    /// [`Payload::HostCommand`]s.
    HostBatch(HostBatch),
    /// The source lost `count` events (ring buffer full, channel overflow, …).
    Lost { count: u64 },
}

/// [`HostCommand::index`] when the ring pointer is unknown.
pub const INDEX_UNKNOWN: u32 = cmdqv_ebpf_common::INDEX_UNKNOWN;

/// One command a host kernel's SMMUv3 driver wrote to a command queue.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostCommand {
    /// Kernel address of the queue's `struct arm_smmu_cmdq`.
    pub cmdq: u64,
    /// Ring pointer (index | wrap bit) of its slot; [`INDEX_UNKNOWN`] when the probe did not
    /// see where the batch went.
    pub index: u32,
    /// The CMD_SYNC the driver adds after a batch, read back from the ring.
    pub appended_sync: bool,
    pub w0: u64,
    pub w1: u64,
}

/// One `arm_smmu_cmdq_issue_cmdlist` call of a host kernel's SMMUv3 driver, entry to return
/// (the event's time is the entry).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostBatch {
    /// Kernel address of the `struct arm_smmu_cmdq` (0: unknown).
    pub cmdq: u64,
    /// Kernel address of the `struct arm_smmu_device`.
    pub smmu: u64,
    /// Ring pointer (index | wrap bit) of the batch's first slot, when the probe saw it.
    pub prod: Option<u32>,
    /// Commands passed in (the appended CMD_SYNC not included).
    pub n: u32,
    /// A CMD_SYNC was appended (and waited for).
    pub sync: bool,
    /// The queue is the SMMU's own (`smmu->cmdq`), when the kernel's BTF told.
    pub main: Option<bool>,
    /// log2 of the queue's entries, when read.
    pub log2size: Option<u8>,
    /// Entry to return.
    pub duration_ns: u64,
    /// Time in `arm_smmu_cmdq_poll_until_sync`, where the kernel has it as a function.
    pub wait_ns: Option<u64>,
    pub ret: i32,
    /// Commands of the batch that could not be reported.
    pub missed: u32,
}

impl HostBatch {
    /// Ring slots the batch took: its commands and the appended CMD_SYNC.
    pub fn slots(&self) -> u64 {
        u64::from(self.n) + u64::from(self.sync)
    }
}

/// One event.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// CLOCK_MONOTONIC nanoseconds.
    pub ts_ns: u64,
    pub pid: u32,
    pub tid: u32,
    pub cpu: u32,
    pub payload: Payload,
}

mod bytes48 {
    //! serde for `[u8; 48]` (serde's array impls stop at 32).
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(v: &[u8; 48], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 48], D::Error> {
        let v: Vec<u8> = Vec::deserialize(d)?;
        v.try_into()
            .map_err(|_| D::Error::custom("ioctl arg must be 48 bytes"))
    }
}

/// CLOCK_MONOTONIC now, in nanoseconds (the clock eBPF timestamps use).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// iommufd ioctl names by command number (`_IO(';', nr)` = 0x3b00 | nr), 6.17+ numbering.
pub fn iommufd_ioctl_name(cmd: u32) -> Option<&'static str> {
    if cmd >> 8 & 0xff != cmdqv_ebpf_common::IOMMUFD_TYPE || cmd >> 16 != 0 {
        return None;
    }
    Some(match cmd & 0xff {
        0x80 => "IOMMU_DESTROY",
        0x81 => "IOMMU_IOAS_ALLOC",
        0x82 => "IOMMU_IOAS_ALLOW_IOVAS",
        0x83 => "IOMMU_IOAS_COPY",
        0x84 => "IOMMU_IOAS_IOVA_RANGES",
        0x85 => "IOMMU_IOAS_MAP",
        0x86 => "IOMMU_IOAS_UNMAP",
        0x87 => "IOMMU_OPTION",
        0x88 => "IOMMU_VFIO_IOAS",
        0x89 => "IOMMU_HWPT_ALLOC",
        0x8a => "IOMMU_GET_HW_INFO",
        0x8b => "IOMMU_HWPT_SET_DIRTY_TRACKING",
        0x8c => "IOMMU_HWPT_GET_DIRTY_BITMAP",
        0x8d => "IOMMU_HWPT_INVALIDATE",
        0x8e => "IOMMU_FAULT_QUEUE_ALLOC",
        0x8f => "IOMMU_IOAS_MAP_FILE",
        0x90 => "IOMMU_VIOMMU_ALLOC",
        0x91 => "IOMMU_VDEVICE_ALLOC",
        0x92 => "IOMMU_IOAS_CHANGE_PROCESS",
        0x93 => "IOMMU_VEVENTQ_ALLOC",
        0x94 => "IOMMU_HW_QUEUE_ALLOC",
        _ => return None,
    })
}

/// Name of a Linux errno (for ioctl results), e.g. 25 → "ENOTTY".
pub fn errno_name(errno: i64) -> &'static str {
    match errno {
        1 => "EPERM",
        2 => "ENOENT",
        5 => "EIO",
        6 => "ENXIO",
        9 => "EBADF",
        12 => "ENOMEM",
        13 => "EACCES",
        14 => "EFAULT",
        16 => "EBUSY",
        17 => "EEXIST",
        19 => "ENODEV",
        22 => "EINVAL",
        25 => "ENOTTY",
        28 => "ENOSPC",
        29 => "ESPIPE",
        75 => "EOVERFLOW",
        95 => "EOPNOTSUPP",
        7 => "E2BIG",
        _ => "E?",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_have_short_names_for_tables() {
        assert_eq!(ErrCode::new(1).short_name(), "ILL");
        assert_eq!(ErrCode::new(2).short_name(), "ABT");
        assert_eq!(ErrCode::new(3).short_name(), "ATC");
        assert_eq!(ErrCode::new(4).short_name(), "IAC");
        assert_eq!(ErrCode::new(0).short_name(), "-");
        assert_eq!(ErrCode::new(0x7f).short_name(), "E127");
    }

    #[test]
    fn ioctl_names_follow_the_6_17_numbering() {
        assert_eq!(iommufd_ioctl_name(0x3b90), Some("IOMMU_VIOMMU_ALLOC"));
        assert_eq!(iommufd_ioctl_name(0x3b94), Some("IOMMU_HW_QUEUE_ALLOC"));
        assert_eq!(iommufd_ioctl_name(0x3b8d), Some("IOMMU_HWPT_INVALIDATE"));
        assert_eq!(iommufd_ioctl_name(0x5401), None); // TCGETS
        assert_eq!(iommufd_ioctl_name(0x3b7f), None);
    }

    #[test]
    fn queue_op_round_trips_through_the_abi_value() {
        for op in [
            QueueOp::Consumed,
            QueueOp::Error,
            QueueOp::ErrorAck,
            QueueOp::HwAlloc,
            QueueOp::HwFree,
            QueueOp::Doorbell,
            QueueOp::Enable,
            QueueOp::Map,
            QueueOp::Handover,
        ] {
            assert_eq!(QueueOp::from_raw(op.to_raw()), Some(op));
        }
        assert_eq!(QueueOp::from_raw(0), None);
    }

    #[test]
    fn iommu_op_round_trips_and_device_names_stop_at_nul() {
        for op in [
            IommuOp::Map,
            IommuOp::Unmap,
            IommuOp::IoPageFault,
            IommuOp::Attach,
        ] {
            assert_eq!(IommuOp::from_raw(op.to_raw()), Some(op));
        }
        assert_eq!(IommuOp::from_raw(0), None);
        let mut d = [0u8; IOMMU_DEV_NAME];
        d[..12].copy_from_slice(b"0000:01:00.0");
        assert_eq!(iommu_device_name(&d), "0000:01:00.0");
        assert_eq!(iommu_device_name(&[b'x'; IOMMU_DEV_NAME]), "x".repeat(32));
    }
}
