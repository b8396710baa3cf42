//! uprobes for a stock QEMU (../shared/reference/real-qemu-guest.md): a Debian QEMU is stripped,
//! so the SMMU's own handlers have no symbol and the probes sit on exported functions instead.
//!
//! - `memory_region_dispatch_write(mr, addr, data, op, attrs)`: every guest MMIO write of every
//!   device; kept only for the SMMU's MemoryRegion (`FilterConfig::region_ptr`). While that is
//!   unknown and `QEMU_LEARN_REGION` is set (with a pid filter), the first 64-bit write at 0x90
//!   with the shape of CMDQ_BASE names the region, and the kernel stores it in the filter itself.
//!   Any CMDQ_BASE write to the region also sets the queue window [q_lo, q_hi) in the kernel, so
//!   the first command fetch after it is already caught.
//! - `memory_region_dispatch_read(mr, addr, *pval, op, attrs)`: entry stashes (offset, pval, size)
//!   per thread, the uretprobe reads `*pval`.
//! - `address_space_rw(as, addr, attrs, buf, len, is_write)`: a 16-byte read inside the queue
//!   window is a command fetch; entry stashes `buf`, the uretprobe reads the 16 bytes.
//! - `smmu_write_mmio` / `tegra241_cmdqv_write(opaque, offset, data, size)`: the device handlers,
//!   for a QEMU that kept its symbol table (no region filtering needed).
//!
//! MemOp's size is `1 << (op & 3)` (MO_SIZE).

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user_buf},
    macros::{map, uprobe, uretprobe},
    maps::HashMap,
    programs::{ProbeContext, RetProbeContext},
};
use aya_log_ebpf::warn;
use cmdqv_ebpf_common::{
    CommandEvent, EventKind, FilterConfig, INDEX_UNKNOWN, MAIN_CMDQ, MmioEvent, MmioOrigin,
    QEMU_FETCH_UNWINDOWED, QEMU_LEARN_FROM_FETCH, QEMU_LEARN_REGION, SMMU_CMDQ_BASE,
    SMMU_PAGE1_BIT, cmdq_base_window,
};

use crate::{FILTER, emit, filter, header, pid_allowed};

/// Device numbers of `MmioEvent::device`.
const DEV_CMDQV: u8 = 0;
const DEV_SMMU: u8 = 1;

#[repr(C)]
#[derive(Copy, Clone)]
struct PendingRead {
    offset: u64,
    pval: u64,
    size: u64,
}

#[repr(C)]
#[derive(Copy, Clone)]
struct PendingFetch {
    buf: u64,
    index: u32,
    _pad: u32,
}

/// MMIO reads between entry and return, keyed by pid_tgid.
#[map]
static QEMU_READS: HashMap<u64, PendingRead> = HashMap::with_max_entries(1024, 0);

/// Command fetches between entry and return, keyed by pid_tgid.
#[map]
static QEMU_FETCHES: HashMap<u64, PendingFetch> = HashMap::with_max_entries(1024, 0);

#[repr(C)]
#[derive(Copy, Clone)]
struct LastWrite {
    mr: u64,
    offset: u64,
}

/// Each thread's last MMIO write while the SMMU's region is unknown (QEMU_LEARN_FROM_FETCH).
#[map]
static QEMU_LAST_WRITE: HashMap<u64, LastWrite> = HashMap::with_max_entries(1024, 0);

/// SMMU registers whose write makes QEMU consume the command queue.
#[inline(always)]
fn triggers_consumption(offset: u64) -> bool {
    let o = offset & !SMMU_PAGE1_BIT;
    o == 0x98 || o == 0x20 || o == 0x64
}

/// Sets the queue window from a CMDQ_BASE write (in the kernel: no round trip to userspace).
#[inline(always)]
fn learn_window(offset: u64, size: u64, value: u64) {
    if offset & !SMMU_PAGE1_BIT != SMMU_CMDQ_BASE || size != 8 {
        return;
    }
    if let (Some((lo, hi)), Some(p)) = (cmdq_base_window(value), FILTER.get_ptr_mut(0)) {
        // SAFETY: the one element of an Array map; userspace writes it only to change settings.
        unsafe {
            (*p).q_lo = lo;
            (*p).q_hi = hi;
        }
    }
}

/// Is `mr` the watched region? Learns it from a CMDQ_BASE-shaped write when allowed.
#[inline(always)]
fn region_matches(f: &FilterConfig, mr: u64, offset: u64, size: u64, value: u64) -> Option<bool> {
    if f.region_ptr != 0 {
        return (mr == f.region_ptr).then_some(false);
    }
    if f.qemu_flags & QEMU_LEARN_REGION == 0 || f.pid == 0 {
        return None;
    }
    if offset & !SMMU_PAGE1_BIT != SMMU_CMDQ_BASE || size != 8 || cmdq_base_window(value).is_none()
    {
        return None;
    }
    let p = FILTER.get_ptr_mut(0)?;
    // SAFETY: as in learn_window.
    unsafe { (*p).region_ptr = mr };
    Some(true)
}

#[inline(always)]
fn mmio(offset: u64, value: u64, size: u64, write: bool, origin: MmioOrigin, device: u8) {
    emit(MmioEvent {
        hdr: header(EventKind::Mmio),
        offset,
        value,
        size: size as u8,
        is_write: write as u8,
        origin: origin as u8,
        device,
        _pad: 0,
    });
}

/// `memory_region_dispatch_write(MemoryRegion *mr, hwaddr addr, uint64_t data, MemOp op, MemTxAttrs)`
#[uprobe]
pub fn cmdqv_qemu_mr_write(ctx: ProbeContext) -> u32 {
    let f = filter();
    if !pid_allowed(&f) {
        return 0;
    }
    let mr: u64 = ctx.arg(0).unwrap_or(0);
    let offset: u64 = ctx.arg(1).unwrap_or(0);
    let value: u64 = ctx.arg(2).unwrap_or(0);
    let op: u64 = ctx.arg(3).unwrap_or(0);
    let size = 1u64 << (op & 3);
    let Some(learned) = region_matches(&f, mr, offset, size, value) else {
        if f.region_ptr == 0 && f.qemu_flags & QEMU_LEARN_FROM_FETCH != 0 && f.pid != 0 {
            let _ = QEMU_LAST_WRITE.insert(bpf_get_current_pid_tgid(), LastWrite { mr, offset }, 0);
        }
        return 0;
    };
    learn_window(offset, size, value);
    let origin = if learned {
        MmioOrigin::QemuDispatchLearned
    } else {
        MmioOrigin::QemuDispatch
    };
    mmio(offset, value, size, true, origin, DEV_SMMU);
    0
}

/// `memory_region_dispatch_read(MemoryRegion *mr, hwaddr addr, uint64_t *pval, MemOp op, MemTxAttrs)`
#[uprobe]
pub fn cmdqv_qemu_mr_read(ctx: ProbeContext) -> u32 {
    let f = filter();
    if f.region_ptr == 0 || !pid_allowed(&f) {
        return 0;
    }
    let mr: u64 = ctx.arg(0).unwrap_or(0);
    if mr != f.region_ptr {
        return 0;
    }
    let op: u64 = ctx.arg(3).unwrap_or(0);
    let pending = PendingRead {
        offset: ctx.arg(1).unwrap_or(0),
        pval: ctx.arg(2).unwrap_or(0),
        size: 1u64 << (op & 3),
    };
    let _ = QEMU_READS.insert(bpf_get_current_pid_tgid(), pending, 0);
    0
}

#[uretprobe]
pub fn cmdqv_qemu_mr_read_ret(ctx: RetProbeContext) -> u32 {
    let key = bpf_get_current_pid_tgid();
    // SAFETY: copied out before removal.
    let Some(p) = (unsafe { QEMU_READS.get(key) }).copied() else {
        return 0;
    };
    let _ = QEMU_READS.remove(key);
    let mut v = [0u8; 8];
    // SAFETY: the helper checks the user address; a fault leaves the value at 0.
    if unsafe { bpf_probe_read_user_buf(p.pval as *const u8, &mut v) }.is_err() {
        warn!(
            &ctx,
            "SMMU register read at {:x}: the value QEMU returned could not be read, reported as 0",
            p.offset
        );
    }
    let value = u64::from_le_bytes(v);
    let value = if p.size >= 8 {
        value
    } else {
        value & ((1u64 << (p.size * 8)) - 1)
    };
    mmio(
        p.offset,
        value,
        p.size,
        false,
        MmioOrigin::QemuDispatch,
        DEV_SMMU,
    );
    0
}

/// `address_space_rw(AddressSpace *as, hwaddr addr, MemTxAttrs attrs, void *buf, hwaddr len, bool is_write)`
#[uprobe]
pub fn cmdqv_qemu_as_rw(ctx: ProbeContext) -> u32 {
    let len: u64 = ctx.arg(4).unwrap_or(0);
    let is_write: u64 = ctx.arg(5).unwrap_or(1);
    if len != 16 || is_write & 0xff != 0 {
        return 0;
    }
    let f = filter();
    if !pid_allowed(&f) {
        return 0;
    }
    let addr: u64 = ctx.arg(1).unwrap_or(0);
    let index = if f.q_hi != 0 {
        if addr < f.q_lo || addr >= f.q_hi {
            return 0;
        }
        ((addr - f.q_lo) / 16) as u32
    } else if f.qemu_flags & QEMU_FETCH_UNWINDOWED != 0 && f.pid != 0 {
        if f.region_ptr == 0 && f.qemu_flags & QEMU_LEARN_FROM_FETCH != 0 {
            learn_region_from_fetch();
        }
        INDEX_UNKNOWN
    } else {
        return 0;
    };
    let pending = PendingFetch {
        buf: ctx.arg(3).unwrap_or(0),
        index,
        _pad: 0,
    };
    let _ = QEMU_FETCHES.insert(bpf_get_current_pid_tgid(), pending, 0);
    0
}

/// This thread is fetching a command: its last MMIO write triggered the consumption.
#[inline(always)]
fn learn_region_from_fetch() {
    // SAFETY: copied out at once.
    let Some(w) = (unsafe { QEMU_LAST_WRITE.get(bpf_get_current_pid_tgid()) }).copied() else {
        return;
    };
    if !triggers_consumption(w.offset) {
        return;
    }
    if let Some(p) = FILTER.get_ptr_mut(0) {
        // SAFETY: as in learn_window.
        unsafe { (*p).region_ptr = w.mr };
    }
}

#[uretprobe]
pub fn cmdqv_qemu_as_rw_ret(ctx: RetProbeContext) -> u32 {
    let key = bpf_get_current_pid_tgid();
    // SAFETY: copied out before removal.
    let Some(p) = (unsafe { QEMU_FETCHES.get(key) }).copied() else {
        return 0;
    };
    let _ = QEMU_FETCHES.remove(key);
    // MemTxResult: 0 = MEMTX_OK. A failed fetch is not a command (QEMU reports CERROR_ABT).
    let ret: u64 = ctx.ret();
    if ret as u32 != 0 {
        return 0;
    }
    let mut cmd = [0u8; 16];
    // SAFETY: the helper checks the user address.
    if unsafe { bpf_probe_read_user_buf(p.buf as *const u8, &mut cmd) }.is_err() {
        warn!(
            &ctx,
            "command fetch (index {}): the 16 bytes QEMU read could not be copied, command lost",
            p.index
        );
        return 0;
    }
    let mut w0 = [0u8; 8];
    let mut w1 = [0u8; 8];
    w0.copy_from_slice(&cmd[..8]);
    w1.copy_from_slice(&cmd[8..]);
    emit(CommandEvent {
        hdr: header(EventKind::Command),
        queue: MAIN_CMDQ,
        index: p.index,
        w0: u64::from_le_bytes(w0),
        w1: u64::from_le_bytes(w1),
    });
    0
}

/// `smmu_write_mmio(void *opaque, hwaddr offset, uint64_t data, unsigned size, MemTxAttrs)`
/// (only in a QEMU with a symbol table).
#[uprobe]
pub fn cmdqv_qemu_smmu_write(ctx: ProbeContext) -> u32 {
    device_write(&ctx, DEV_SMMU)
}

/// `tegra241_cmdqv_write(void *opaque, hwaddr offset, uint64_t value, unsigned size)`
#[uprobe]
pub fn cmdqv_qemu_cmdqv_write(ctx: ProbeContext) -> u32 {
    device_write(&ctx, DEV_CMDQV)
}

#[inline(always)]
fn device_write(ctx: &ProbeContext, device: u8) -> u32 {
    let f = filter();
    if !pid_allowed(&f) {
        return 0;
    }
    let offset: u64 = ctx.arg(1).unwrap_or(0);
    let value: u64 = ctx.arg(2).unwrap_or(0);
    let size: u64 = ctx.arg::<u64>(3).unwrap_or(0) & 0xf;
    if device == DEV_SMMU {
        learn_window(offset, size, value);
    }
    mmio(offset, value, size, true, MmioOrigin::QemuDevice, device);
    0
}
