//! The generic `iommu:*` tracepoints (no CMDQV-, SMMUv3- or iommufd-specific tracepoints exist;
//! cmdqv-hw.md §14.1). Field offsets from /sys/kernel/tracing/events/iommu/*/format.
//!
//! map/unmap also fire for every DMA-API mapping of every driver on a host whose IOMMU
//! translates DMA, so they are only reported for a chosen VMM (pid filter set): that is the
//! iommufd IOAS_MAP/UNMAP traffic. Faults come from interrupt context (no meaningful pid) and
//! attaches are rare: both are reported whatever the pid filter says.

use aya_ebpf::{
    EbpfContext as _, helpers::bpf_probe_read_kernel_str_bytes, macros::tracepoint,
    programs::TracePointContext,
};
use aya_log_ebpf::warn;
use cmdqv_ebpf_common::{EventKind, IOMMU_DEV_NAME, IommuEvent, IommuOp};

use crate::{emit, filter, header, pid_allowed};

#[inline(always)]
fn event(op: IommuOp) -> IommuEvent {
    IommuEvent {
        hdr: header(EventKind::Iommu),
        op: op as u32,
        flags: 0,
        iova: 0,
        paddr: 0,
        size: 0,
        unmapped: 0,
        device: [0; IOMMU_DEV_NAME],
    }
}

/// Copies a `__data_loc char[]` field (u32 at `at`: offset in the low 16 bits) into `out`.
#[inline(always)]
fn data_loc_str(ctx: &TracePointContext, at: usize, out: &mut [u8; IOMMU_DEV_NAME]) {
    // SAFETY: `at` is the offset of a __data_loc field of this tracepoint's record.
    let loc = unsafe { ctx.read_at::<u32>(at) }.unwrap_or(0);
    let off = (loc & 0xffff) as usize;
    if off == 0 {
        return;
    }
    // SAFETY: the helper checks the kernel address; a failure leaves the name empty.
    let src = unsafe { (ctx.as_ptr() as *const u8).add(off) };
    if unsafe { bpf_probe_read_kernel_str_bytes(src, out) }.is_err() {
        warn!(ctx, "iommu tracepoint: the device name could not be read");
    }
}

#[tracepoint]
pub fn cmdqv_iommu_map(ctx: TracePointContext) -> u32 {
    let f = filter();
    if f.pid == 0 || !pid_allowed(&f) {
        return 0;
    }
    let mut ev = event(IommuOp::Map);
    // SAFETY: iova @8, paddr @16, size @24 (iommu/map/format).
    unsafe {
        ev.iova = ctx.read_at::<u64>(8).unwrap_or(0);
        ev.paddr = ctx.read_at::<u64>(16).unwrap_or(0);
        ev.size = ctx.read_at::<u64>(24).unwrap_or(0);
    }
    emit(ev);
    0
}

#[tracepoint]
pub fn cmdqv_iommu_unmap(ctx: TracePointContext) -> u32 {
    let f = filter();
    if f.pid == 0 || !pid_allowed(&f) {
        return 0;
    }
    let mut ev = event(IommuOp::Unmap);
    // SAFETY: iova @8, size @16, unmapped_size @24 (iommu/unmap/format).
    unsafe {
        ev.iova = ctx.read_at::<u64>(8).unwrap_or(0);
        ev.size = ctx.read_at::<u64>(16).unwrap_or(0);
        ev.unmapped = ctx.read_at::<u64>(24).unwrap_or(0);
    }
    emit(ev);
    0
}

#[tracepoint]
pub fn cmdqv_iommu_fault(ctx: TracePointContext) -> u32 {
    let mut ev = event(IommuOp::IoPageFault);
    // SAFETY: device (__data_loc) @8, driver @12, iova @16, flags @24 (iommu/io_page_fault/format).
    unsafe {
        ev.iova = ctx.read_at::<u64>(16).unwrap_or(0);
        ev.flags = ctx.read_at::<i32>(24).unwrap_or(0);
    }
    data_loc_str(&ctx, 8, &mut ev.device);
    emit(ev);
    0
}

#[tracepoint]
pub fn cmdqv_iommu_attach(ctx: TracePointContext) -> u32 {
    let mut ev = event(IommuOp::Attach);
    // device (__data_loc) @8 (iommu/attach_device_to_domain/format).
    data_loc_str(&ctx, 8, &mut ev.device);
    emit(ev);
    0
}
