//! kprobes on a kernel's own SMMUv3 driver (the `host` target): every batch it submits through
//! `arm_smmu_cmdq_issue_cmdlist`, with its commands read from kernel memory.
//!
//! - entry of `arm_smmu_cmdq_issue_cmdlist`: a frame on this CPU's small stack (queue, SMMU,
//!   command buffer, count, sync), taking the arguments at the positions `HOST_CONFIG` gives
//!   (userspace reads the function's form from the kernel's BTF);
//! - `arm_smmu_cmdq_write_entries(cmdq, cmds, prod, n)`: the ring pointer the batch got;
//! - `arm_smmu_cmdq_poll_until_sync` entry and return, where the kernel has it as a function:
//!   the CMD_SYNC wait on its own;
//! - return of `arm_smmu_cmdq_issue_cmdlist`: the frame is popped and the batch reported whole:
//!   its commands read from the caller's buffer, the CMD_SYNC the driver appended read back
//!   from its ring slot, then the batch record with the time from entry to return.
//!
//! Calls nest on a CPU only through an interrupt arriving before the driver masks interrupts, so
//! the frames form a stack; nothing here is shared between CPUs.

use aya_ebpf::{
    helpers::{bpf_ktime_get_ns, bpf_probe_read_kernel},
    macros::{kprobe, kretprobe, map},
    maps::{Array, PerCpuArray},
    programs::{ProbeContext, RetProbeContext},
};
use cmdqv_ebpf_common::{
    DROP_HOST_NESTING, DROP_RINGBUF_FULL, EventHeader, EventKind, HOST_ARG_NONE, HOST_BATCH_MAIN,
    HOST_BATCH_MAIN_KNOWN, HOST_BATCH_MAX, HOST_BATCH_PROD, HOST_BATCH_SYNC, HOST_BATCH_WAIT,
    HOST_FRAME_STALE_NS, HOST_FRAMES, HOST_OFFSET_UNKNOWN, HostBatchEvent, HostCommandEvent,
    HostConfig, INDEX_UNKNOWN,
};

use crate::{DROPS, EVENTS, emit, header, submit_flags};

#[map]
static HOST_CONFIG: Array<HostConfig> = Array::with_max_entries(1, 0);

/// One open `arm_smmu_cmdq_issue_cmdlist` call.
#[repr(C)]
#[derive(Copy, Clone)]
struct Frame {
    ts: u64,
    cmdq: u64,
    smmu: u64,
    cmds: u64,
    wait_start: u64,
    wait_ns: u64,
    n: u32,
    /// HOST_BATCH_SYNC, HOST_BATCH_PROD, HOST_BATCH_WAIT.
    flags: u32,
    prod: u32,
    _pad: u32,
}

/// This CPU's open calls, innermost last: `HOST_DEPTH` of them, the first HOST_FRAMES in
/// `HOST_CALLS` (one map entry each: the map's lookup checks the index, where the verifier
/// would lose the bound of an index into one array the compiler had checked on a copy). A
/// depth beyond HOST_FRAMES counts calls that are not tracked but still popped, so the stack
/// stays in step with the returns.
#[map]
static HOST_DEPTH: PerCpuArray<u32> = PerCpuArray::with_max_entries(1, 0);

#[map]
static HOST_CALLS: PerCpuArray<Frame> = PerCpuArray::with_max_entries(HOST_FRAMES as u32, 0);

#[inline(always)]
fn config() -> Option<HostConfig> {
    let c = *HOST_CONFIG.get(0)?;
    (c.enabled != 0).then_some(c)
}

/// This CPU's call depth.
#[inline(always)]
fn depth() -> Option<&'static mut u32> {
    let p = HOST_DEPTH.get_ptr_mut(0)?;
    // SAFETY: this CPU's slot; kprobe handlers do not nest on a CPU.
    Some(unsafe { &mut *p })
}

/// Frame `i` of this CPU, if tracked.
#[inline(always)]
fn frame(i: u32) -> Option<&'static mut Frame> {
    let p = HOST_CALLS.get_ptr_mut(i)?;
    // SAFETY: as for `depth`.
    Some(unsafe { &mut *p })
}

#[inline(always)]
fn now() -> u64 {
    // SAFETY: helper without arguments.
    unsafe { bpf_ktime_get_ns() }
}

/// The innermost open call, if it is tracked.
#[inline(always)]
fn innermost(depth: u32) -> Option<&'static mut Frame> {
    frame(depth.checked_sub(1)?)
}

/// The argument at `pos` of the five read (0 for HOST_ARG_NONE).
#[inline(always)]
fn pick(a: &[u64; 5], pos: u32) -> u64 {
    match pos {
        0 => a[0],
        1 => a[1],
        2 => a[2],
        3 => a[3],
        4 => a[4],
        _ => 0,
    }
}

#[kprobe]
pub fn cmdqv_host_issue(ctx: ProbeContext) -> u32 {
    let (Some(cfg), Some(depth)) = (config(), depth()) else {
        return 0;
    };
    // Constant register indices only: the verifier refuses a variable offset into the context.
    let a: [u64; 5] = [
        ctx.arg(0).unwrap_or(0),
        ctx.arg(1).unwrap_or(0),
        ctx.arg(2).unwrap_or(0),
        ctx.arg(3).unwrap_or(0),
        ctx.arg(4).unwrap_or(0),
    ];
    let ts = now();
    let oldest = frame(0).map_or(0, |f| f.ts);
    if *depth != 0 && ts.wrapping_sub(oldest) > HOST_FRAME_STALE_NS {
        // Returns were missed (the probe attached mid-call, or the kretprobe ran out of
        // instances): start over rather than pair returns with the wrong calls.
        *depth = 0;
    }
    let d = *depth;
    *depth = d.wrapping_add(1);
    let Some(f) = frame(d) else {
        if let Some(p) = DROPS.get_ptr_mut(DROP_HOST_NESTING) {
            // SAFETY: this CPU's slot.
            unsafe { *p += 1 };
        }
        return 0;
    };
    // `bool sync` and `int n` only define their low bits in the register.
    let sync = cfg.arg_sync != HOST_ARG_NONE && pick(&a, cfg.arg_sync) & 0xff != 0;
    *f = Frame {
        ts,
        cmdq: pick(&a, cfg.arg_cmdq),
        smmu: pick(&a, cfg.arg_smmu),
        cmds: pick(&a, cfg.arg_cmds),
        wait_start: 0,
        wait_ns: 0,
        n: pick(&a, cfg.arg_n) as u32,
        flags: if sync { HOST_BATCH_SYNC } else { 0 },
        prod: 0,
        _pad: 0,
    };
    0
}

/// `arm_smmu_cmdq_write_entries(cmdq, cmds, prod, n)`: the ring pointer of the batch.
#[kprobe]
pub fn cmdqv_host_write_entries(ctx: ProbeContext) -> u32 {
    let (Some(_), Some(depth)) = (config(), depth()) else {
        return 0;
    };
    let cmdq: u64 = ctx.arg(0).unwrap_or(0);
    let cmds: u64 = ctx.arg(1).unwrap_or(0);
    let prod: u64 = ctx.arg(2).unwrap_or(0);
    let n: u64 = ctx.arg(3).unwrap_or(0);
    let open = *depth;
    // The innermost open call is the one writing; older frames only if it is not (a stale one).
    let mut i = HOST_FRAMES as u32;
    while i > 0 {
        i -= 1;
        if i >= open {
            continue;
        }
        let Some(f) = frame(i) else {
            continue;
        };
        let same_queue = f.cmdq == 0 || f.cmdq == cmdq;
        if f.flags & HOST_BATCH_PROD == 0 && f.cmds == cmds && f.n == n as u32 && same_queue {
            f.cmdq = cmdq;
            f.prod = prod as u32;
            f.flags |= HOST_BATCH_PROD;
            break;
        }
    }
    0
}

#[kprobe]
pub fn cmdqv_host_poll_sync(_ctx: ProbeContext) -> u32 {
    if let (Some(_), Some(depth)) = (config(), depth()) {
        if let Some(f) = innermost(*depth) {
            f.wait_start = now();
        }
    }
    0
}

#[kretprobe]
pub fn cmdqv_host_poll_sync_return(_ctx: RetProbeContext) -> u32 {
    if let (Some(_), Some(depth)) = (config(), depth()) {
        if let Some(f) = innermost(*depth) {
            if f.wait_start != 0 {
                f.wait_ns += now().wrapping_sub(f.wait_start);
                f.wait_start = 0;
                f.flags |= HOST_BATCH_WAIT;
            }
        }
    }
    0
}

#[kretprobe]
pub fn cmdqv_host_issue_return(ctx: RetProbeContext) -> u32 {
    let (Some(cfg), Some(depth)) = (config(), depth()) else {
        return 0;
    };
    if *depth == 0 {
        return 0; // a call that entered before the entry probe was attached
    }
    *depth -= 1;
    let Some(f) = frame(*depth) else {
        return 0; // an untracked (too deeply nested) call
    };
    let f = *f;
    let ret: u64 = ctx.ret();
    report(&cfg, &f, ret as i32);
    0
}

/// A kernel value of type T at `addr`, if readable.
#[inline(always)]
fn read<T>(addr: u64) -> Option<T> {
    // SAFETY: the helper checks the kernel address; a fault is an error, not a crash.
    unsafe { bpf_probe_read_kernel(addr as *const T) }.ok()
}

/// The queue's `max_n_shift` (0 when unknown or implausible).
#[inline(always)]
fn queue_log2size(cfg: &HostConfig, cmdq: u64) -> u32 {
    if cmdq == 0 || cfg.max_n_shift_offset == HOST_OFFSET_UNKNOWN {
        return 0;
    }
    match read::<u32>(cmdq + u64::from(cfg.max_n_shift_offset)) {
        Some(s) if s <= 30 => s,
        _ => 0,
    }
}

/// Mask of a ring pointer (index and wrap bit) of a queue of 2^log2 entries.
#[inline(always)]
fn pointer_mask(log2: u32) -> u32 {
    if log2 == 0 {
        u32::MAX
    } else {
        (2u32 << log2) - 1
    }
}

/// The commands of a finished call and its batch record.
#[inline(always)]
fn report(cfg: &HostConfig, f: &Frame, ret: i32) {
    let returned = now();
    let log2 = queue_log2size(cfg, f.cmdq);
    let mut flags = f.flags;
    let off = cfg.main_cmdq_offset;
    if off != HOST_OFFSET_UNKNOWN && f.cmdq != 0 && f.smmu != 0 {
        flags |= HOST_BATCH_MAIN_KNOWN;
        if f.cmdq == f.smmu.wrapping_add(u64::from(off)) {
            flags |= HOST_BATCH_MAIN;
        }
    }
    let mut missed = emit_commands(f, log2);
    if flags & HOST_BATCH_SYNC != 0 && !emit_appended_sync(cfg, f, log2) {
        missed += 1;
    }
    emit(HostBatchEvent {
        hdr: call_header(f, EventKind::HostBatch),
        cmdq: f.cmdq,
        smmu: f.smmu,
        duration_ns: returned.wrapping_sub(f.ts),
        wait_ns: f.wait_ns,
        prod: f.prod,
        n: f.n,
        flags,
        log2size: log2,
        ret,
        missed,
    });
}

/// The header of the call's records: the entry's time, this task and CPU.
#[inline(always)]
fn call_header(f: &Frame, kind: EventKind) -> EventHeader {
    let mut hdr = header(kind);
    hdr.ts_ns = f.ts;
    hdr
}

#[inline(always)]
fn command(
    hdr: EventHeader,
    f: &Frame,
    index: u32,
    appended_sync: u32,
    w: [u64; 2],
) -> HostCommandEvent {
    HostCommandEvent {
        hdr,
        cmdq: f.cmdq,
        index,
        appended_sync,
        w0: w[0],
        w1: w[1],
    }
}

/// Writes many records from one loop: the wakeup flags and the drop counter are looked up once,
/// before it, so an iteration is two helper calls and no path into the logging code, which
/// keeps the verifier's walk of the 64 iterations short.
struct LoopEmitter {
    flags: u64,
    drops: Option<*mut u64>,
}

impl LoopEmitter {
    #[inline(always)]
    fn new() -> Self {
        Self {
            flags: submit_flags(),
            drops: DROPS.get_ptr_mut(DROP_RINGBUF_FULL),
        }
    }

    #[inline(always)]
    fn emit<T: 'static>(&self, ev: &T) {
        if EVENTS.output::<T>(ev, self.flags).is_err() {
            if let Some(p) = self.drops {
                // SAFETY: this CPU's slot.
                unsafe { *p += 1 };
            }
        }
    }
}

/// The call's own commands, from its buffer (16 bytes each); returns how many were missed.
#[inline(always)]
fn emit_commands(f: &Frame, log2: u32) -> u32 {
    let n = if (f.n as i32) < 0 { 0 } else { f.n };
    let take = if n > HOST_BATCH_MAX {
        HOST_BATCH_MAX
    } else {
        n
    };
    let mut missed = n - take;
    let mask = pointer_mask(log2);
    let prod_known = f.flags & HOST_BATCH_PROD != 0;
    let out = LoopEmitter::new();
    // Every iteration runs (no early exit), so the code after the loop is reached from one
    // place only and verified once.
    for i in 0..HOST_BATCH_MAX {
        if i < take {
            let index = if prod_known {
                f.prod.wrapping_add(i) & mask
            } else {
                INDEX_UNKNOWN
            };
            match read::<[u64; 2]>(f.cmds.wrapping_add(u64::from(i) * 16)) {
                Some(w) => out.emit(&command(
                    call_header(f, EventKind::HostCommand),
                    f,
                    index,
                    0,
                    w,
                )),
                None => missed += 1,
            }
        }
    }
    missed
}

/// The CMD_SYNC the driver wrote after the commands, read back from its ring slot (the
/// function builds it on its own stack); false when it could not be read.
#[inline(always)]
fn emit_appended_sync(cfg: &HostConfig, f: &Frame, log2: u32) -> bool {
    if f.flags & HOST_BATCH_PROD == 0
        || log2 == 0
        || f.cmdq == 0
        || cfg.ring_base_offset == HOST_OFFSET_UNKNOWN
    {
        return false;
    }
    let Some(base) = read::<u64>(f.cmdq + u64::from(cfg.ring_base_offset)) else {
        return false;
    };
    let slot = f.prod.wrapping_add(f.n) & pointer_mask(log2);
    let entry = u64::from(slot & ((1u32 << log2) - 1));
    match read::<[u64; 2]>(base.wrapping_add(entry * 16)) {
        Some(w) => {
            emit(command(
                call_header(f, EventKind::HostCommand),
                f,
                slot,
                1,
                w,
            ));
            true
        }
        None => false,
    }
}
