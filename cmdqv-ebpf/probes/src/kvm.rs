//! `kvm:kvm_exit`: every VM exit of the traced VMM's vCPUs, its fields read at the offsets
//! userspace found in this kernel's tracepoint format (x86 and arm64 name and place them
//! differently), so one program serves both; and `kvm:kvm_userspace_exit` (generic, the same on
//! every architecture): each return of KVM_RUN to the VMM, the exits a KVM without a
//! `kvm_exit` call (PVM) still reports.

use aya_ebpf::{macros::map, macros::tracepoint, maps::Array, programs::TracePointContext};
use cmdqv_ebpf_common::{
    EventKind, KVM_EXIT_NO_VCPU, KVM_USERSPACE_EXIT, KvmExitEvent, KvmExitLayout,
};

use crate::{emit, filter, header, pid_allowed};

#[map]
static KVM_EXIT_LAYOUT: Array<KvmExitLayout> = Array::with_max_entries(1, 0);

/// The u32 at `off`, or `absent` when the layout has no such field.
#[inline(always)]
fn field_u32(ctx: &TracePointContext, off: u32, absent: u32) -> u32 {
    if off == 0 {
        return absent;
    }
    // SAFETY: the offset comes from the tracepoint's own format; the helper checks the read.
    unsafe { ctx.read_at::<u32>(off as usize).unwrap_or(absent) }
}

#[tracepoint]
pub fn cmdqv_kvm_exit(ctx: TracePointContext) -> u32 {
    let Some(l) = KVM_EXIT_LAYOUT.get(0).copied() else {
        return 0;
    };
    // The exits of the traced VMM only: its vCPU threads are its thread group, and the VM
    // belongs to that process alone.
    if l.enabled == 0 || !pid_allowed(&filter()) {
        return 0;
    }
    let pc = if l.pc_off == 0 {
        0
    } else {
        // SAFETY: as in field_u32.
        unsafe { ctx.read_at::<u64>(l.pc_off as usize).unwrap_or(0) }
    };
    let info = match (l.info_off, l.info_size) {
        (0, _) => 0,
        // SAFETY: as in field_u32.
        (off, 8) => unsafe { ctx.read_at::<u64>(off as usize).unwrap_or(0) },
        (off, _) => field_u32(&ctx, off, 0) as u64,
    };
    emit(KvmExitEvent {
        hdr: header(EventKind::KvmExit),
        reason: field_u32(&ctx, l.reason_off, 0),
        isa: field_u32(&ctx, l.isa_off, l.isa),
        vcpu: field_u32(&ctx, l.vcpu_off, KVM_EXIT_NO_VCPU),
        _pad: 0,
        pc,
        info,
    });
    0
}

#[tracepoint]
pub fn cmdqv_kvm_userspace_exit(ctx: TracePointContext) -> u32 {
    if !pid_allowed(&filter()) {
        return 0;
    }
    // SAFETY: offsets from include/trace/events/kvm.h's kvm_userspace_exit (reason @8, errno @12),
    // the same on every architecture.
    let (reason, errno) = unsafe {
        (
            ctx.read_at::<u32>(8).unwrap_or(0),
            ctx.read_at::<i32>(12).unwrap_or(0),
        )
    };
    emit(KvmExitEvent {
        hdr: header(EventKind::KvmExit),
        reason,
        isa: KVM_USERSPACE_EXIT,
        vcpu: KVM_EXIT_NO_VCPU,
        _pad: 0,
        pc: 0,
        info: errno as i64 as u64,
    });
    0
}
