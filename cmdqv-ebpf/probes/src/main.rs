//! cmdqv's eBPF programs. They capture and filter; decoding happens in userspace.
//!
//! Every record starts with `EventHeader` (see cmdqv-ebpf-common). A record that does not fit in
//! the ring buffer is counted in the per-CPU `DROPS` array, never silently lost.
//!
//! The programs' own diagnostics (a failed user-memory read, the ring buffer running full) go
//! through aya-log to userspace's `log` stream. Only rare paths log: never once per event.
#![no_std]
#![no_main]

mod host;
mod iommu;
mod kvm;
mod qemu;

use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{
        bpf_get_current_pid_tgid, bpf_get_smp_processor_id, bpf_ktime_get_ns,
        bpf_probe_read_user_buf,
    },
    macros::{btf_tracepoint, fentry, kprobe, kretprobe, map, raw_tracepoint, tracepoint, uprobe},
    maps::{Array, HashMap, PerCpuArray, RingBuf},
    programs::{
        BtfTracePointContext, FEntryContext, ProbeContext, RawTracePointContext, RetProbeContext,
        TracePointContext,
    },
};
use aya_log_ebpf::warn;
use cmdqv_ebpf_common::{
    ABI_VERSION, CommandEvent, DROP_RINGBUF_FULL, DROP_SLOTS, EventHeader, EventKind, FilterConfig,
    IOCTL_ARG_BYTES, IOMMUFD_TYPE, IoctlEvent, KFuncEvent, KvmMmioEvent, MmapEvent, MmioEvent,
    MmioOrigin, QueueEvent, WAKEUP_SLOTS,
};

#[map]
pub(crate) static EVENTS: RingBuf = RingBuf::with_byte_size(1 << 22, 0);

#[map]
pub(crate) static DROPS: PerCpuArray<u64> = PerCpuArray::with_max_entries(DROP_SLOTS, 0);

#[map]
pub(crate) static FILTER: Array<FilterConfig> = Array::with_max_entries(1, 0);

/// An ioctl between enter and exit, keyed by pid_tgid.
#[repr(C)]
#[derive(Copy, Clone)]
struct InFlightIoctl {
    ts_ns: u64,
    fd: i32,
    cmd: u32,
    arg_len: u32,
    _pad: u32,
    arg: [u8; IOCTL_ARG_BYTES],
}

#[map]
static IOCTLS: HashMap<u64, InFlightIoctl> = HashMap::with_max_entries(4096, 0);

#[repr(C)]
#[derive(Copy, Clone)]
struct InFlightMmap {
    ts_ns: u64,
    len: u64,
    offset: u64,
    fd: i32,
    _pad: u32,
}

#[map]
static MMAPS: HashMap<u64, InFlightMmap> = HashMap::with_max_entries(1024, 0);

#[inline(always)]
pub(crate) fn filter() -> FilterConfig {
    match FILTER.get(0) {
        Some(f) => *f,
        None => FilterConfig::default(),
    }
}

#[inline(always)]
pub(crate) fn header(kind: EventKind) -> EventHeader {
    let pid_tgid = bpf_get_current_pid_tgid();
    EventHeader {
        kind: kind as u16,
        version: ABI_VERSION,
        // SAFETY: plain BPF helper calls without arguments.
        cpu: unsafe { bpf_get_smp_processor_id() },
        ts_ns: unsafe { bpf_ktime_get_ns() },
        pid: (pid_tgid >> 32) as u32,
        tid: pid_tgid as u32,
    }
}

#[inline(always)]
pub(crate) fn pid_allowed(f: &FilterConfig) -> bool {
    f.pid == 0 || f.pid == (bpf_get_current_pid_tgid() >> 32) as u32
}

#[inline(always)]
fn count_drop() {
    if let Some(p) = DROPS.get_ptr_mut(DROP_RINGBUF_FULL) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU.
        let n = unsafe {
            *p += 1;
            *p
        };
        // Only the 1st, 2nd, 4th, 8th ... drop on a CPU: a trace of the overload that does not
        // add to it.
        if n.is_power_of_two() {
            warn!(
                &(),
                "EVENTS ring buffer full: {} records dropped on this CPU so far", n
            );
        }
    }
}

#[map]
static WAKEUP: Array<u64> = Array::with_max_entries(WAKEUP_SLOTS, 0);

/// Submit flags: per-record wakeups unless userspace asked for batched ones (see WAKEUP_SLOTS).
#[inline(always)]
pub(crate) fn submit_flags() -> u64 {
    let threshold = match WAKEUP.get(0) {
        Some(t) => *t,
        None => 0,
    };
    if threshold == 0 {
        0
    } else if EVENTS.query(BPF_RB_AVAIL_DATA as u64) >= threshold {
        BPF_RB_FORCE_WAKEUP as u64
    } else {
        BPF_RB_NO_WAKEUP as u64
    }
}

#[inline(always)]
pub(crate) fn emit<T: 'static>(ev: T) {
    match EVENTS.reserve::<T>(0) {
        Some(mut entry) => {
            entry.write(ev);
            entry.submit(submit_flags());
        }
        None => count_drop(),
    }
}

// ---------------------------------------------------------------------------------------------
// syscalls: iommufd ioctls (enter + exit joined in the kernel)

#[tracepoint]
pub fn cmdqv_ioctl_enter(ctx: TracePointContext) -> u32 {
    let f = filter();
    if !pid_allowed(&f) {
        return 0;
    }
    // Field offsets from /sys/kernel/tracing/events/syscalls/sys_enter_ioctl/format.
    // SAFETY: offsets are within the tracepoint record.
    let (fd, cmd, arg) = unsafe {
        (
            ctx.read_at::<u64>(16).unwrap_or(0),
            ctx.read_at::<u64>(24).unwrap_or(0),
            ctx.read_at::<u64>(32).unwrap_or(0),
        )
    };
    let cmd = cmd as u32;
    if f.all_ioctls == 0 && (cmd >> 8) & 0xff != IOMMUFD_TYPE {
        return 0;
    }
    let mut inflight = InFlightIoctl {
        // SAFETY: helper without arguments.
        ts_ns: unsafe { bpf_ktime_get_ns() },
        fd: fd as i32,
        cmd,
        arg_len: 0,
        _pad: 0,
        arg: [0; IOCTL_ARG_BYTES],
    };
    if arg != 0 {
        // SAFETY: the helper checks the user address; a fault leaves arg_len at 0.
        if unsafe { bpf_probe_read_user_buf(arg as *const u8, &mut inflight.arg) }.is_ok() {
            inflight.arg_len = IOCTL_ARG_BYTES as u32;
        } else {
            warn!(
                &ctx,
                "ioctl {:x}: its argument at {:x} could not be read", cmd, arg
            );
        }
    }
    let _ = IOCTLS.insert(bpf_get_current_pid_tgid(), inflight, 0);
    0
}

#[tracepoint]
pub fn cmdqv_ioctl_exit(ctx: TracePointContext) -> u32 {
    let key = bpf_get_current_pid_tgid();
    // SAFETY: the value is copied out before removal.
    let inflight = match unsafe { IOCTLS.get(key) } {
        Some(v) => *v,
        None => return 0,
    };
    let _ = IOCTLS.remove(key);
    // SAFETY: offset from sys_exit_ioctl/format.
    let ret = unsafe { ctx.read_at::<i64>(16).unwrap_or(0) };
    let hdr = header(EventKind::Ioctl);
    emit(IoctlEvent {
        fd: inflight.fd,
        cmd: inflight.cmd,
        ret,
        duration_ns: hdr.ts_ns.saturating_sub(inflight.ts_ns),
        arg_len: inflight.arg_len,
        _pad: 0,
        arg: inflight.arg,
        hdr,
    });
    0
}

// ---------------------------------------------------------------------------------------------
// syscalls: mmap / munmap (userspace keeps only the iommufd fds it learnt from ioctls)

#[tracepoint]
pub fn cmdqv_mmap_enter(ctx: TracePointContext) -> u32 {
    let f = filter();
    if !pid_allowed(&f) {
        return 0;
    }
    // SAFETY: offsets from sys_enter_mmap/format.
    let (len, fd, off) = unsafe {
        (
            ctx.read_at::<u64>(24).unwrap_or(0),
            ctx.read_at::<u64>(48).unwrap_or(0),
            ctx.read_at::<u64>(56).unwrap_or(0),
        )
    };
    let fd = fd as i32;
    if fd < 0 {
        return 0; // anonymous mappings are not interesting
    }
    let inflight = InFlightMmap {
        // SAFETY: helper without arguments.
        ts_ns: unsafe { bpf_ktime_get_ns() },
        len,
        offset: off,
        fd,
        _pad: 0,
    };
    let _ = MMAPS.insert(bpf_get_current_pid_tgid(), inflight, 0);
    0
}

#[tracepoint]
pub fn cmdqv_mmap_exit(ctx: TracePointContext) -> u32 {
    let key = bpf_get_current_pid_tgid();
    // SAFETY: copied out before removal.
    let inflight = match unsafe { MMAPS.get(key) } {
        Some(v) => *v,
        None => return 0,
    };
    let _ = MMAPS.remove(key);
    // SAFETY: offset from sys_exit_mmap/format.
    let ret = unsafe { ctx.read_at::<i64>(16).unwrap_or(0) };
    emit(MmapEvent {
        hdr: header(EventKind::Mmap),
        addr: ret as u64,
        len: inflight.len,
        offset: inflight.offset,
        ret,
        fd: inflight.fd,
        is_map: 1,
    });
    0
}

#[tracepoint]
pub fn cmdqv_munmap_enter(ctx: TracePointContext) -> u32 {
    let f = filter();
    if f.pid == 0 || !pid_allowed(&f) {
        return 0; // munmap has no fd: only traced for a chosen VMM
    }
    // SAFETY: offsets from sys_enter_munmap/format (addr @16, len @24).
    let (addr, len) = unsafe {
        (
            ctx.read_at::<u64>(16).unwrap_or(0),
            ctx.read_at::<u64>(24).unwrap_or(0),
        )
    };
    emit(MmapEvent {
        hdr: header(EventKind::Mmap),
        addr,
        len,
        offset: 0,
        ret: 0,
        fd: -1,
        is_map: 0,
    });
    0
}

// ---------------------------------------------------------------------------------------------
// kvm:kvm_mmio, filtered to the watched guest-physical window

#[tracepoint]
pub fn cmdqv_kvm_mmio(ctx: TracePointContext) -> u32 {
    let f = filter();
    if !pid_allowed(&f) {
        return 0;
    }
    // SAFETY: offsets from kvm/kvm_mmio/format.
    let (ty, len, gpa, val) = unsafe {
        (
            ctx.read_at::<u32>(8).unwrap_or(0),
            ctx.read_at::<u32>(12).unwrap_or(0),
            ctx.read_at::<u64>(16).unwrap_or(0),
            ctx.read_at::<u64>(24).unwrap_or(0),
        )
    };
    if f.gpa_hi != 0 && (gpa < f.gpa_lo || gpa >= f.gpa_hi) {
        return 0;
    }
    emit(KvmMmioEvent {
        hdr: header(EventKind::KvmMmio),
        mmio_type: ty,
        len,
        gpa,
        val,
    });
    0
}

// ---------------------------------------------------------------------------------------------
// The cmdqv sim VMM's exported trace points (uprobes; attached by symbol name at run time).
// Signatures: see cmdqv_core::sim::vmm (extern "C" fns named cmdqv_vmm_*).

/// `cmdqv_vmm_mmio(device: u32, offset: u64, value: u64, size: u32, is_write: u32)`
#[uprobe]
pub fn cmdqv_vmm_mmio(ctx: ProbeContext) -> u32 {
    let f = filter();
    if !pid_allowed(&f) {
        return 0;
    }
    let device: u32 = ctx.arg(0).unwrap_or(0);
    let offset: u64 = ctx.arg(1).unwrap_or(0);
    let value: u64 = ctx.arg(2).unwrap_or(0);
    let size: u32 = ctx.arg(3).unwrap_or(0);
    let is_write: u32 = ctx.arg(4).unwrap_or(0);
    emit(MmioEvent {
        hdr: header(EventKind::Mmio),
        offset,
        value,
        size: size as u8,
        is_write: is_write as u8,
        origin: MmioOrigin::SimVmm as u8,
        device: device as u8,
        _pad: 0,
    });
    0
}

/// `cmdqv_vmm_command(queue: u32, index: u32, w0: u64, w1: u64)`
#[uprobe]
pub fn cmdqv_vmm_command(ctx: ProbeContext) -> u32 {
    let f = filter();
    if !pid_allowed(&f) {
        return 0;
    }
    emit(CommandEvent {
        hdr: header(EventKind::Command),
        queue: ctx.arg(0).unwrap_or(0),
        index: ctx.arg(1).unwrap_or(0),
        w0: ctx.arg(2).unwrap_or(0),
        w1: ctx.arg(3).unwrap_or(0),
    });
    0
}

/// `cmdqv_vmm_queue(queue: u32, op: u32, a: u64, b: u64)`
#[uprobe]
pub fn cmdqv_vmm_queue(ctx: ProbeContext) -> u32 {
    let f = filter();
    if !pid_allowed(&f) {
        return 0;
    }
    emit(QueueEvent {
        hdr: header(EventKind::Queue),
        queue: ctx.arg(0).unwrap_or(0),
        op: ctx.arg(1).unwrap_or(0),
        a: ctx.arg(2).unwrap_or(0),
        b: ctx.arg(3).unwrap_or(0),
    });
    0
}

// ---------------------------------------------------------------------------------------------
// Kernel functions (tegra241_*, iommufd_*): one kprobe/kretprobe program attached to many
// functions; userspace maps the function address (bpf_get_func_ip) back to its name.
// kprobes cannot attach on the CI machines (no kprobe PMU); the loader reports that as data.

#[kprobe]
pub fn cmdqv_kfunc_entry(ctx: ProbeContext) -> u32 {
    let f = filter();
    if !pid_allowed(&f) {
        return 0;
    }
    // SAFETY: kprobe context pointer from the kernel.
    let ip = unsafe { aya_ebpf::helpers::generated::bpf_get_func_ip(ctx.regs.cast()) };
    emit(KFuncEvent {
        hdr: header(EventKind::KFunc),
        func: 0,
        is_ret: 0,
        args: [
            ip,
            ctx.arg(0).unwrap_or(0),
            ctx.arg(1).unwrap_or(0),
            ctx.arg(2).unwrap_or(0),
            ctx.arg(3).unwrap_or(0),
        ],
    });
    0
}

#[kretprobe]
pub fn cmdqv_kfunc_return(ctx: RetProbeContext) -> u32 {
    let f = filter();
    if !pid_allowed(&f) {
        return 0;
    }
    // SAFETY: kretprobe context pointer from the kernel.
    let ip = unsafe { aya_ebpf::helpers::generated::bpf_get_func_ip(ctx.regs.cast()) };
    let ret: u64 = ctx.ret();
    emit(KFuncEvent {
        hdr: header(EventKind::KFunc),
        func: 0,
        is_ret: 1,
        args: [ip, ret, 0, 0, 0],
    });
    0
}

/// fentry variant for kernels that allow it (loaded per function with BTF; refused here).
#[fentry(function = "iommufd_fops_ioctl")]
pub fn cmdqv_kfunc_fentry(ctx: FEntryContext) -> u32 {
    let f = filter();
    if !pid_allowed(&f) {
        return 0;
    }
    let a0: u64 = ctx.arg(0);
    let a1: u64 = ctx.arg(1);
    let a2: u64 = ctx.arg(2);
    emit(KFuncEvent {
        hdr: header(EventKind::KFunc),
        func: 1,
        is_ret: 0,
        args: [0, a0, a1, a2, 0],
    });
    0
}

// Capability probes used by `cmdqv doctor` to prove which program types load and attach.
#[map]
static PROBE_HITS: PerCpuArray<u64> = PerCpuArray::with_max_entries(4, 0);

#[inline(always)]
fn hit(slot: u32) {
    if let Some(p) = PROBE_HITS.get_ptr_mut(slot) {
        // SAFETY: per-CPU slot.
        unsafe { *p += 1 };
    }
}

#[raw_tracepoint(tracepoint = "sys_enter")]
pub fn cmdqv_doctor_raw_tp(_ctx: RawTracePointContext) -> i32 {
    hit(0);
    0
}

#[btf_tracepoint(function = "sys_enter")]
pub fn cmdqv_doctor_tp_btf(_ctx: BtfTracePointContext) -> i32 {
    hit(1);
    0
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
