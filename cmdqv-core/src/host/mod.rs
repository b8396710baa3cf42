//! The host half: how a VMM backs guest VCMDQs with hardware queues through iommufd.
//!
//! - [`HostBackend`]: the operations a VMM needs (vIOMMU of type Tegra241 CMDQV, VINTF page0
//!   mmap, hardware queue allocation and destruction, vEVENT queue), implemented by
//!   [`iommufd::IommufdBackend`] (real ioctls on /dev/iommu) and by
//!   [`simulated::SimulatedHost`] (a memfd page0 and a hardware consumer, kernel rules enforced).
//! - [`passthrough`]: the state machine that backs a guest VINTF's LVCMDQs with hardware queues
//!   and carries each queue's state between the model's cache and the hardware page.
//! - [`Page0`]: a mapped VINTF page0 (64 KiB of LVCMDQ control registers at stride 0x80).
//! - [`sampler`]: reads a live VMM's VINTF page0 from another process (pidfd_getfd + mmap).
//! - [`discover`]: finds every VMM on the host that maps a VINTF page0, and its name.

pub mod discover;
pub mod iommufd;
pub mod passthrough;
pub mod sampler;
pub mod simulated;
pub mod uapi;

use std::{io, ptr::NonNull};

use nix::errno::Errno;

/// Size of a VINTF page0 mapping (the kernel returns exactly this length).
pub const PAGE0_LEN: usize = 0x10000;
/// Stride of one LVCMDQ's registers in page0.
pub const LVCMDQ_STRIDE: usize = 0x80;

/// Page0 register offsets within one LVCMDQ slot (the register map's, as mapping offsets).
pub mod page0 {
    use crate::regs::off::page0 as r;
    pub const CONS_INDX: usize = r::CONS_INDX as usize;
    pub const PROD_INDX: usize = r::PROD_INDX as usize;
    pub const CONFIG: usize = r::CONFIG as usize;
    pub const STATUS: usize = r::STATUS as usize;
    pub const GERROR: usize = r::GERROR as usize;
    pub const GERRORN: usize = r::GERRORN as usize;
}

/// What `IOMMU_GET_HW_INFO` reports for a Tegra241 CMDQV.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct HwInfo {
    pub version: u8,
    pub log2vcmdqs: u8,
    pub log2vsids: u8,
}

/// A VINTF allocated through `IOMMU_VIOMMU_ALLOC`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct VintfAlloc {
    pub viommu_id: u32,
    pub mmap_offset: u64,
    pub mmap_length: u64,
}

/// One vEVENT read from the Tegra241 CMDQV vEVENT queue.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum VEvent {
    /// The VINTF's LVCMDQ_ERR_MAP (bit l = LVCMDQ l in error).
    LvcmdqError { sequence: u32, err_map: [u64; 2] },
    /// The queue overflowed; events were lost before `sequence`.
    Lost { sequence: u32 },
}

/// Errors a user can act on.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error(
        "{path} does not exist: this kernel has no iommufd (CONFIG_IOMMUFD) or the module is not loaded"
    )]
    NoDevice { path: String },
    #[error("permission denied opening {path}: run as root or give the VMM user access to it")]
    Permission { path: String },
    #[error(
        "{op}: the kernel does not know this iommufd ioctl (ENOTTY): vIOMMU / HW queue support needs Linux ≥ 6.17 with CONFIG_IOMMUFD"
    )]
    KernelTooOld { op: &'static str },
    #[error(
        "{op}: not supported (EOPNOTSUPP): this SMMU has no Tegra241 CMDQV, or the device/vIOMMU type is not supported"
    )]
    NoCmdqv { op: &'static str },
    #[error(
        "{op}: permission denied ({source}): the VMM needs access to /dev/iommu and the device (root, or the vfio/iommu group's owner)"
    )]
    Denied { op: &'static str, source: io::Error },
    #[error("{op} failed: {source}")]
    Ioctl { op: &'static str, source: io::Error },
    #[error("mmap of the VINTF page0 failed: {0}")]
    Mmap(io::Error),
    #[error("{0}")]
    Invalid(String),
}

impl HostError {
    /// Maps an ioctl failure to the cause a user can act on.
    pub fn from_ioctl(op: &'static str, err: io::Error) -> Self {
        match err.raw_os_error().map(Errno::from_raw) {
            Some(Errno::ENOTTY) => HostError::KernelTooOld { op },
            Some(Errno::EOPNOTSUPP) => HostError::NoCmdqv { op },
            Some(Errno::EACCES | Errno::EPERM) => HostError::Denied { op, source: err },
            _ => HostError::Ioctl { op, source: err },
        }
    }

    /// The errno behind this error, when it came from (or models) a system call.
    pub fn errno(&self) -> Option<i32> {
        match self {
            HostError::NoDevice { .. } => Some(Errno::ENOENT as i32),
            HostError::Permission { .. } => Some(Errno::EACCES as i32),
            HostError::KernelTooOld { .. } => Some(Errno::ENOTTY as i32),
            HostError::NoCmdqv { .. } => Some(Errno::EOPNOTSUPP as i32),
            HostError::Denied { source, .. } | HostError::Ioctl { source, .. } => {
                source.raw_os_error()
            }
            HostError::Mmap(e) => e.raw_os_error(),
            HostError::Invalid(_) => None,
        }
    }
}

/// The operations a VMM performs on the host to back guest VCMDQs.
pub trait HostBackend: Send {
    /// `iommufd` or `simulated`.
    fn kind(&self) -> &'static str;
    fn hw_info(&mut self, dev_id: u32) -> Result<HwInfo, HostError>;
    fn alloc_viommu(&mut self, dev_id: u32, hwpt_id: u32) -> Result<VintfAlloc, HostError>;
    fn map_page0(&mut self, vintf: &VintfAlloc) -> Result<Page0, HostError>;
    /// Allocates the hardware queue for LVCMDQ `index` over guest-physical `[iova, iova+length)`.
    /// The kernel requires ascending allocation (index−1 must exist).
    fn alloc_hw_queue(
        &mut self,
        viommu_id: u32,
        index: u32,
        iova: u64,
        length: u64,
    ) -> Result<u32, HostError>;
    /// Destroys any object (hardware queue, vIOMMU, vEVENT queue) by id; hardware queues in
    /// descending index order.
    fn destroy(&mut self, id: u32) -> Result<(), HostError>;
    fn alloc_veventq(&mut self, viommu_id: u32, depth: u32) -> Result<u32, HostError>;
    /// Non-blocking: every vEVENT queued now.
    fn read_vevents(&mut self) -> Result<Vec<VEvent>, HostError>;
    /// Called while the VMM polls a hardware-owned register (STATUS after a CONFIG write).
    /// Real hardware needs nothing; a simulated host without a hardware thread runs one pass.
    fn wait_hint(&mut self) {
        std::hint::spin_loop();
    }
}

/// A mapped VINTF page0. Accesses are volatile 32-bit loads/stores, as MMIO requires.
pub struct Page0 {
    ptr: NonNull<u8>,
    len: usize,
    writable: bool,
    _map: memmap2::MmapRaw,
}

// SAFETY: the mapping is owned by this value; accesses are volatile word accesses to shared
// memory whose other writer (hardware or the simulated host) is outside Rust's aliasing model.
unsafe impl Send for Page0 {}
unsafe impl Sync for Page0 {}

impl Page0 {
    /// Wraps a shared mapping of at least `PAGE0_LEN` bytes.
    pub fn new(map: memmap2::MmapRaw, writable: bool) -> Result<Self, HostError> {
        if map.len() < PAGE0_LEN {
            return Err(HostError::Invalid(format!(
                "page0 mapping is {} bytes, need {PAGE0_LEN}",
                map.len()
            )));
        }
        let ptr = NonNull::new(map.as_mut_ptr())
            .ok_or_else(|| HostError::Invalid("null mapping".into()))?;
        Ok(Self {
            ptr,
            len: map.len(),
            writable,
            _map: map,
        })
    }

    /// The mapping's address and length, for a VMM that maps the page into a guest (a KVM
    /// memslot) so the guest's accesses reach it without an exit.
    pub fn host_range(&self) -> (*mut u8, usize) {
        (self.ptr.as_ptr(), self.len)
    }

    /// Maps `len` bytes of `file` at `offset` shared (no exec), exactly where the kernel (or the
    /// simulated host) registered the VINTF page0.
    pub fn map(
        file: &std::fs::File,
        offset: u64,
        len: u64,
        writable: bool,
    ) -> Result<Self, HostError> {
        let mut opts = memmap2::MmapOptions::new();
        opts.offset(offset).len(len as usize);
        let map = if writable {
            opts.map_raw(file)
        } else {
            opts.map_raw_read_only(file)
        };
        Self::new(map.map_err(HostError::Mmap)?, writable)
    }

    fn offset(lidx: usize, reg: usize) -> Option<usize> {
        let off = lidx.checked_mul(LVCMDQ_STRIDE)?.checked_add(reg)?;
        (reg < LVCMDQ_STRIDE && reg.is_multiple_of(4) && off + 4 <= PAGE0_LEN).then_some(off)
    }

    /// Reads LVCMDQ `lidx`'s register `reg` (a [`page0`] offset). Out of range reads 0.
    pub fn read32(&self, lidx: usize, reg: usize) -> u32 {
        match Self::offset(lidx, reg) {
            Some(off) if off + 4 <= self.len => {
                // SAFETY: in bounds, 4-byte aligned (page-aligned base, reg % 4 == 0).
                unsafe { std::ptr::read_volatile(self.ptr.as_ptr().add(off).cast::<u32>()) }
            }
            _ => 0,
        }
    }

    /// Writes LVCMDQ `lidx`'s register `reg`. Dropped when out of range or read-only.
    pub fn write32(&self, lidx: usize, reg: usize, val: u32) -> bool {
        match Self::offset(lidx, reg) {
            Some(off) if self.writable && off + 4 <= self.len => {
                // SAFETY: in bounds and aligned, as above; the mapping is writable.
                unsafe { std::ptr::write_volatile(self.ptr.as_ptr().add(off).cast::<u32>(), val) };
                true
            }
            _ => false,
        }
    }
}

/// Parses the bytes read from a Tegra241 CMDQV vEVENT queue fd: 8-byte headers (flags,
/// sequence), each followed by a 16-byte LVCMDQ_ERR_MAP unless flagged LOST_EVENTS. Reads never
/// split records, so a short tail is an error, not a partial event.
pub fn parse_vevents(mut buf: &[u8]) -> Result<Vec<VEvent>, HostError> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        if buf.len() < 8 {
            return Err(HostError::Invalid(format!(
                "vEVENT stream ends with a {}-byte fragment",
                buf.len()
            )));
        }
        let flags = u32::from_le_bytes(buf[0..4].try_into().unwrap_or_default());
        let sequence = u32::from_le_bytes(buf[4..8].try_into().unwrap_or_default());
        buf = &buf[8..];
        if flags & uapi::IOMMU_VEVENTQ_FLAG_LOST_EVENTS != 0 {
            out.push(VEvent::Lost { sequence });
            continue;
        }
        if buf.len() < 16 {
            return Err(HostError::Invalid(format!(
                "vEVENT {sequence} truncated: {} payload bytes",
                buf.len()
            )));
        }
        let w0 = u64::from_le_bytes(buf[0..8].try_into().unwrap_or_default());
        let w1 = u64::from_le_bytes(buf[8..16].try_into().unwrap_or_default());
        buf = &buf[16..];
        out.push(VEvent::LvcmdqError {
            sequence,
            err_map: [w0, w1],
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vevents_parse_errors_and_lost_markers() {
        let mut b = Vec::new();
        b.extend(0u32.to_le_bytes());
        b.extend(7u32.to_le_bytes());
        b.extend(0b101u64.to_le_bytes());
        b.extend(0u64.to_le_bytes());
        b.extend(uapi::IOMMU_VEVENTQ_FLAG_LOST_EVENTS.to_le_bytes());
        b.extend(9u32.to_le_bytes());
        let ev = parse_vevents(&b).unwrap();
        assert_eq!(
            ev,
            [
                VEvent::LvcmdqError {
                    sequence: 7,
                    err_map: [0b101, 0]
                },
                VEvent::Lost { sequence: 9 }
            ]
        );
        assert!(parse_vevents(&b[..12]).is_err());
        assert!(parse_vevents(&b[..5]).is_err());
    }

    #[test]
    fn page0_bounds_are_checked() {
        let map = memmap2::MmapOptions::new()
            .len(PAGE0_LEN)
            .map_anon()
            .unwrap();
        let raw = memmap2::MmapRaw::from(map);
        let p = Page0::new(raw, true).unwrap();
        assert!(p.write32(3, page0::PROD_INDX, 0x12));
        assert_eq!(p.read32(3, page0::PROD_INDX), 0x12);
        assert_eq!(p.read32(3, page0::CONS_INDX), 0);
        assert!(!p.write32(512, page0::PROD_INDX, 1)); // past the page
        assert!(!p.write32(0, 0x80, 1)); // not a register of this slot
        assert!(!p.write32(0, 2, 1)); // unaligned
        assert_eq!(p.read32(usize::MAX, 0), 0);
    }
}
