//! The one command-queue consumer (fetch, decode, execute, error protocol) under both devices:
//! every VCMDQ of the CMDQV ([`crate::model`], [`QueueKind::VcmdqHyp`] / [`QueueKind::VcmdqGuest`])
//! and the SMMU's own command queue ([`crate::smmu`], [`QueueKind::SmmuMain`]) run through
//! [`consume`]; the simulated host's hardware queues do too. What differs between them is only
//! the [`QueueKind`] that [`execute`] reads.
//!
//! Semantics follow QEMU's `smmuv3_cmdq_consume` (../shared/reference/cmdqv-hw.md §13): consume
//! while not empty and no error is pending; a fetch outside guest memory is CERROR_ABT; the first
//! faulting command stops the queue with CONS on it, CONS.ERR set and GERROR.CMDQ_ERR toggled;
//! GERRORN := GERROR resumes. VCMDQs add the guest-owned opcode filter (§8) and the CS=NONE rule.
//! Every loop is bounded by the ring size, whatever the guest wrote.

use crate::command::{CmdSync, Command, SyncCs, VaRange};
use crate::mem::GuestMemory;
use crate::queue::Ring;
use crate::regs::{self, Cerror, cons_indx, gerror};

/// Queue id of the SMMU's own command queue in events (global VCMDQ ids are 0..128).
pub const MAIN_CMDQ_ID: u16 = 0xffff;

/// Which device an MMIO access or guest error belongs to.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum DeviceKind {
    Cmdqv,
    Smmu,
}

/// What a guest did wrong (answered like hardware and counted, never a panic).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum GuestErrorKind {
    /// Access size other than 4 or 8 bytes.
    BadAccessSize = 0,
    /// Access not naturally aligned.
    UnalignedAccess,
    /// No register at this offset (reads 0, writes dropped).
    UnassignedOffset,
    /// Write to a read-only register (dropped).
    ReadOnlyWrite,
    /// Access to a VINTF logical slot no VCMDQ is mapped to (reads 0, writes dropped).
    UnmappedSlot,
    /// CMDQ_ALLOC_MAP broke the ordering rule (map ascending / unmap descending); accepted.
    AllocOrder,
    /// CMDQ_ALLOC_MAP named a (VINTF, LVCMDQ) slot another VCMDQ already holds; not mapped.
    AllocConflict,
    /// CMDQ_ALLOC_MAP named a VINTF this geometry does not have; not mapped.
    AllocOutOfRange,
    /// GERRORN toggled bits that were not pending.
    SpuriousAck,
    /// An 8-byte access the access-size policy ignores.
    Ignored64BitAccess,
}

impl GuestErrorKind {
    pub const COUNT: usize = 10;
    pub fn name(self) -> &'static str {
        match self {
            Self::BadAccessSize => "bad-access-size",
            Self::UnalignedAccess => "unaligned-access",
            Self::UnassignedOffset => "unassigned-offset",
            Self::ReadOnlyWrite => "read-only-write",
            Self::UnmappedSlot => "unmapped-slot",
            Self::AllocOrder => "alloc-order",
            Self::AllocConflict => "alloc-conflict",
            Self::AllocOutOfRange => "alloc-out-of-range",
            Self::SpuriousAck => "spurious-ack",
            Self::Ignored64BitAccess => "ignored-64bit-access",
        }
    }
}

/// What an enable handshake switched.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum EnableTarget {
    Cmdqv,
    Vintf(u8),
    Vcmdq(u16),
    SmmuCmdq,
}

/// Interrupt lines the models pulse (edge-triggered, as QEMU's `qemu_irq_pulse`).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum IrqLine {
    /// The single CMDQV error interrupt.
    CmdqvError,
    /// SMMU GERROR interrupt (gated by IRQ_CTRL.GERROR_IRQEN).
    SmmuGerror,
    /// SMMU CMD_SYNC completion interrupt (CS=IRQ; not gated, as in QEMU).
    SmmuCmdSync,
}

/// Everything observable about the models, as small `Copy` values.
///
/// Order: a write's `Mmio` event comes first, then its effects (doorbell, enables, commands,
/// errors, interrupt); a read's `Mmio` event comes last because it carries the value read (guest
/// errors found while reading precede it). Page0 accesses of a queue with a [`Page0Backend`]
/// attached produce only the `Mmio` event: the backend owns the rest.
///
/// [`Page0Backend`]: crate::model::Page0Backend
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ModelEvent {
    /// An MMIO access; the register name comes from [`regs::decode`] / [`regs::smmu_reg_name`].
    Mmio {
        device: DeviceKind,
        offset: u64,
        size: u8,
        value: u64,
        write: bool,
    },
    GuestError {
        device: DeviceKind,
        kind: GuestErrorKind,
        offset: u64,
    },
    /// PROD written (the doorbell), with CONS at that moment.
    Doorbell {
        queue: u16,
        prod: u32,
        cons: u32,
    },
    /// One command executed successfully at pointer `index` (index + wrap bit).
    CommandConsumed {
        queue: u16,
        index: u32,
        w0: u64,
        w1: u64,
    },
    /// The command at `index` was fetched but not executed: the queue stops on it (a
    /// [`ModelEvent::QueueError`] follows).
    CommandFaulted {
        queue: u16,
        index: u32,
        w0: u64,
        w1: u64,
    },
    /// A consumption pass ended.
    Consumed {
        queue: u16,
        cons: u32,
        prod: u32,
    },
    /// The queue stopped on the command at `index`.
    QueueError {
        queue: u16,
        index: u32,
        cerror: Cerror,
    },
    /// Software wrote GERRORN.
    ErrorAck {
        queue: u16,
        gerrorn: u32,
    },
    Enable {
        target: EnableTarget,
        on: bool,
    },
    /// CMDQ_ALLOC_MAP took effect (`alloc` = mapped) for a (VINTF, LVCMDQ) slot.
    AllocMap {
        queue: u16,
        vintf: u8,
        lvcmdq: u8,
        alloc: bool,
    },
    Irq {
        line: IrqLine,
    },
}

impl ModelEvent {
    /// The event of one MMIO access of `device`.
    #[inline(always)]
    pub fn mmio(device: DeviceKind, offset: u64, size: u8, value: u64, write: bool) -> Self {
        Self::Mmio {
            device,
            offset,
            size,
            value,
            write,
        }
    }
}

/// Counts a guest error of `device` in `counts` and reports it: how both devices answer a
/// guest's mistake (never a panic).
pub fn count_guest_error<O: Observer + ?Sized>(
    counts: &mut [u64; GuestErrorKind::COUNT],
    device: DeviceKind,
    kind: GuestErrorKind,
    offset: u64,
    obs: &mut O,
) {
    counts[kind as usize] += 1;
    obs.event(ModelEvent::GuestError {
        device,
        kind,
        offset,
    });
}

/// Receives model events. Passed as a generic parameter: with `()` every call inlines to nothing.
pub trait Observer {
    fn event(&mut self, ev: ModelEvent);
}

impl Observer for () {
    #[inline(always)]
    fn event(&mut self, _ev: ModelEvent) {}
}

impl Observer for Vec<ModelEvent> {
    fn event(&mut self, ev: ModelEvent) {
        self.push(ev);
    }
}

impl<O: Observer + ?Sized> Observer for &mut O {
    #[inline(always)]
    fn event(&mut self, ev: ModelEvent) {
        (**self).event(ev)
    }
}

/// What a real SMMU would invalidate (or otherwise do) for one executed command, after the
/// VINTF's VMID substitution and SID_MATCH/SID_REPLACE translation for guest-owned VINTFs.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Invalidation {
    TlbNhAll {
        vmid: u16,
    },
    TlbNhAsid {
        vmid: u16,
        asid: u16,
    },
    TlbNhVa {
        vmid: u16,
        asid: u16,
        range: VaRange,
    },
    TlbNhVaa {
        vmid: u16,
        range: VaRange,
    },
    TlbEl3All,
    TlbEl3Va {
        range: VaRange,
    },
    TlbEl2All,
    TlbEl2Asid {
        asid: u16,
    },
    TlbEl2Va {
        asid: u16,
        range: VaRange,
    },
    TlbEl2Vaa {
        range: VaRange,
    },
    TlbS12Vmall {
        vmid: u16,
    },
    TlbS2Ipa {
        vmid: u16,
        range: VaRange,
    },
    TlbNsnhAll,
    /// Configuration (STE) of one StreamID.
    Ste {
        sid: u32,
        leaf: bool,
    },
    /// STEs of StreamIDs `first..=last` (CFGI_STE_RANGE, CFGI_ALL).
    SteRange {
        first: u32,
        last: u32,
    },
    Cd {
        sid: u32,
        ssid: u32,
        leaf: bool,
    },
    CdAll {
        sid: u32,
    },
    /// ATC of (physical) `sid`; `ssid` when SSV; `size` = log2 of 4K pages (52 = all).
    Atc {
        sid: u32,
        ssid: Option<u32>,
        global: bool,
        addr: u64,
        size: u8,
    },
    /// Commands that invalidate nothing (prefetch, PRI_RESP, RESUME, STALL_TERM).
    Other(Command),
    /// CMD_SYNC: everything before it on this queue is complete.
    Sync(CmdSync),
}

/// Executes invalidations. Returning an error stops the queue with that CERROR (e.g. a simulated
/// host answering a CMD_SYNC with CERROR_ATC_INV_SYNC).
pub trait InvalidationSink {
    fn invalidate(&mut self, queue: u16, inv: Invalidation) -> Result<(), Cerror>;
}

/// Accepts everything, does nothing.
#[derive(Copy, Clone, Debug, Default)]
pub struct NullSink;

impl InvalidationSink for NullSink {
    #[inline(always)]
    fn invalidate(&mut self, _queue: u16, _inv: Invalidation) -> Result<(), Cerror> {
        Ok(())
    }
}

/// Counts invalidations by kind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CountingSink {
    pub tlb: u64,
    pub cfg: u64,
    pub atc: u64,
    pub sync: u64,
    pub other: u64,
}

impl CountingSink {
    pub fn total(&self) -> u64 {
        self.tlb + self.cfg + self.atc + self.sync + self.other
    }
}

impl InvalidationSink for CountingSink {
    #[inline]
    fn invalidate(&mut self, _queue: u16, inv: Invalidation) -> Result<(), Cerror> {
        use Invalidation as I;
        match inv {
            I::Ste { .. } | I::SteRange { .. } | I::Cd { .. } | I::CdAll { .. } => self.cfg += 1,
            I::Atc { .. } => self.atc += 1,
            I::Sync(_) => self.sync += 1,
            I::Other(_) => self.other += 1,
            _ => self.tlb += 1,
        }
        Ok(())
    }
}

impl InvalidationSink for Vec<(u16, Invalidation)> {
    fn invalidate(&mut self, queue: u16, inv: Invalidation) -> Result<(), Cerror> {
        self.push((queue, inv));
        Ok(())
    }
}

impl<S: InvalidationSink + ?Sized> InvalidationSink for &mut S {
    #[inline(always)]
    fn invalidate(&mut self, queue: u16, inv: Invalidation) -> Result<(), Cerror> {
        (**self).invalidate(queue, inv)
    }
}

/// What a VCMDQ does with CMD_SYNC CS=IRQ/SEV (hardware "only supports CS_NONE", §8;
/// the actual reaction is UNCONFIRMED).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub enum VcmdqSyncCs {
    /// CERROR_ILL (default: Linux never sends it, so a guest that does is broken).
    #[default]
    Ill,
    /// Execute it as CS=NONE (no interrupt, no SEV).
    TreatAsNone,
}

/// Named choices for the UNCONFIRMED parts of VCMDQ command execution.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct EngineOptions {
    /// CERROR for an opcode a guest-owned (HYP_OWN=0) VCMDQ does not accept. Default ILL
    /// (ILL_ACCESS is the other plausible code, §8).
    pub guest_filter_cerror: Cerror,
    /// Whether a guest-owned VCMDQ also accepts TLBI_NH_ALL and TLBI_NH_VAA (Linux never sends
    /// them there; hardware acceptance UNCONFIRMED). Default false.
    pub guest_allows_nh_all_vaa: bool,
    /// CMD_SYNC with CS≠NONE on any VCMDQ. Default [`VcmdqSyncCs::Ill`].
    pub vcmdq_sync_cs: VcmdqSyncCs,
    /// CERROR for an ATC_INV whose vSID has no enabled SID_MATCH entry on a guest-owned VINTF
    /// ("rejected by HW", code UNCONFIRMED). Default ILL.
    pub unmatched_sid_cerror: Cerror,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            guest_filter_cerror: Cerror::Ill,
            guest_allows_nh_all_vaa: false,
            vcmdq_sync_cs: VcmdqSyncCs::Ill,
            unmatched_sid_cerror: Cerror::Ill,
        }
    }
}

/// Who issues the commands of a queue, which decides what is allowed and how it is rewritten.
#[derive(Copy, Clone, Debug)]
pub enum QueueKind<'a> {
    /// The SMMU's architected CMDQ (QEMU semantics: every defined opcode accepted).
    SmmuMain,
    /// A VCMDQ of a hypervisor-owned VINTF: every opcode, CS=NONE rule applies.
    VcmdqHyp,
    /// A VCMDQ of a guest-owned VINTF: opcode filter, VMID substitution, SID translation.
    VcmdqGuest {
        vmid: u16,
        sid_match: &'a [u32],
        sid_replace: &'a [u32],
    },
}

/// Execution context of one consumption pass.
#[derive(Copy, Clone, Debug)]
pub struct ExecCtx<'a> {
    pub queue: u16,
    pub kind: QueueKind<'a>,
    pub opts: &'a EngineOptions,
}

/// Page0-style registers of a queue, as the engine reads and updates them.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct QueueRegs {
    pub prod: u32,
    /// CONS with RD and ERR fields.
    pub cons: u32,
    pub gerror: u32,
    pub gerrorn: u32,
}

impl QueueRegs {
    /// GERROR.CMDQ_ERR differs from GERRORN: an error is active, consumption is stopped.
    #[inline]
    pub fn error_pending(&self) -> bool {
        (self.gerror ^ self.gerrorn) & gerror::CMDQ_ERR != 0
    }
}

/// Result of one consumption pass.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Commands executed successfully.
    pub consumed: u32,
    /// The queue stopped on the command at this pointer with this CERROR.
    pub error: Option<(u32, Cerror)>,
    /// GERROR.CMDQ_ERR was toggled by this pass (the caller raises maps / interrupts).
    pub raised: bool,
    /// CMD_SYNCs that asked for an interrupt (main SMMU CMDQ only).
    pub sync_irqs: u32,
}

/// Consume `regs.prod - regs.cons` commands of `ring`, at most the ring size.
#[inline]
pub fn consume<M, S, O>(
    ctx: &ExecCtx<'_>,
    ring: Ring,
    regs: &mut QueueRegs,
    mem: &M,
    sink: &mut S,
    obs: &mut O,
) -> Outcome
where
    M: GuestMemory + ?Sized,
    S: InvalidationSink + ?Sized,
    O: Observer + ?Sized,
{
    let mut out = Outcome::default();
    if regs.error_pending() {
        return out;
    }
    let prod = regs.prod;
    let mut cons = regs.cons;
    let n = ring.pending(prod, cons);
    // Bounded by construction: n <= ring entries.
    for _ in 0..n {
        match step(ctx, ring, cons, mem, sink, obs) {
            Ok(irq) => out.sync_irqs += irq as u32,
            Err(e) => {
                cons = stop_on(ctx, ring, cons, e, regs, &mut out, obs);
                break;
            }
        }
        cons = ring.inc(cons);
        out.consumed += 1;
    }
    regs.cons = cons;
    if n > 0 {
        obs.event(ModelEvent::Consumed {
            queue: ctx.queue,
            cons,
            prod,
        });
    }
    out
}

/// Fetch and execute the command at `cons`: `Ok(true)` when it asks for a CMD_SYNC interrupt; a
/// fetch outside guest memory is CERROR_ABT.
#[inline(always)]
fn step<M, S, O>(
    ctx: &ExecCtx<'_>,
    ring: Ring,
    cons: u32,
    mem: &M,
    sink: &mut S,
    obs: &mut O,
) -> Result<bool, Cerror>
where
    M: GuestMemory + ?Sized,
    S: InvalidationSink + ?Sized,
    O: Observer + ?Sized,
{
    let addr = ring.entry_addr(cons).ok_or(Cerror::Abt)?;
    let [w0, w1] = mem.read_cmd(addr).map_err(|_| Cerror::Abt)?;
    let res = execute(ctx, Command::decode(w0, w1), sink);
    let (queue, index) = (ctx.queue, cons & ring.ptr_mask());
    obs.event(match res {
        Ok(_) => ModelEvent::CommandConsumed {
            queue,
            index,
            w0,
            w1,
        },
        // The tracer shows the command a queue stopped on.
        Err(_) => ModelEvent::CommandFaulted {
            queue,
            index,
            w0,
            w1,
        },
    });
    res
}

/// The error protocol: CONS stays on the faulting command with CONS.ERR = `e`, and GERROR.CMDQ_ERR
/// toggles (only if not already pending, which `consume` checked on entry). Returns the new CONS.
#[inline(always)]
fn stop_on<O: Observer + ?Sized>(
    ctx: &ExecCtx<'_>,
    ring: Ring,
    cons: u32,
    e: Cerror,
    regs: &mut QueueRegs,
    out: &mut Outcome,
    obs: &mut O,
) -> u32 {
    let index = cons & ring.ptr_mask();
    regs.gerror ^= gerror::CMDQ_ERR;
    out.raised = true;
    out.error = Some((index, e));
    obs.event(ModelEvent::QueueError {
        queue: ctx.queue,
        index,
        cerror: e,
    });
    (cons & !(cons_indx::ERR_MASK << cons_indx::ERR_SHIFT)) | (e as u32) << cons_indx::ERR_SHIFT
}

/// Execute one command: `Ok(true)` when a CMD_SYNC asks for an interrupt on the main CMDQ.
#[inline]
pub fn execute<S: InvalidationSink + ?Sized>(
    ctx: &ExecCtx<'_>,
    cmd: Command,
    sink: &mut S,
) -> Result<bool, Cerror> {
    use Command as C;
    use Invalidation as I;
    let q = ctx.queue;
    match ctx.kind {
        QueueKind::VcmdqGuest {
            vmid,
            sid_match,
            sid_replace,
        } => {
            let inv = match cmd {
                C::TlbiNhVa { asid, range, .. } => I::TlbNhVa { vmid, asid, range },
                C::TlbiNhAsid { asid, .. } => I::TlbNhAsid { vmid, asid },
                C::AtcInv { sid, .. } => match translate_sid(sid, sid_match, sid_replace) {
                    Some(psid) => atc_of(cmd, psid),
                    None => return Err(ctx.opts.unmatched_sid_cerror),
                },
                C::Sync(s) => return vcmdq_sync(ctx, s, sink),
                C::TlbiNhAll { .. } if ctx.opts.guest_allows_nh_all_vaa => I::TlbNhAll { vmid },
                C::TlbiNhVaa { range, .. } if ctx.opts.guest_allows_nh_all_vaa => {
                    I::TlbNhVaa { vmid, range }
                }
                C::Unknown { .. } => return Err(Cerror::Ill),
                _ => return Err(ctx.opts.guest_filter_cerror),
            };
            sink.invalidate(q, inv).map(|_| false)
        }
        QueueKind::VcmdqHyp => match cmd {
            C::Sync(s) => vcmdq_sync(ctx, s, sink),
            other => execute_full(q, other, sink),
        },
        QueueKind::SmmuMain => match cmd {
            // QEMU pulses the CMD_SYNC interrupt on CS bit 0 (IRQ, or the reserved 3); SEV is
            // ignored; no MSI write is modelled.
            C::Sync(s) => sink
                .invalidate(q, I::Sync(s))
                .map(|_| matches!(s.cs, SyncCs::Irq | SyncCs::Reserved)),
            other => execute_full(q, other, sink),
        },
    }
}

#[inline]
fn vcmdq_sync<S: InvalidationSink + ?Sized>(
    ctx: &ExecCtx<'_>,
    s: CmdSync,
    sink: &mut S,
) -> Result<bool, Cerror> {
    if s.cs != SyncCs::None && ctx.opts.vcmdq_sync_cs == VcmdqSyncCs::Ill {
        return Err(Cerror::Ill);
    }
    sink.invalidate(
        ctx.queue,
        Invalidation::Sync(CmdSync {
            cs: SyncCs::None,
            ..s
        }),
    )
    .map(|_| false)
}

/// Every defined opcode, untranslated (main CMDQ and hypervisor-owned VCMDQs).
#[inline]
fn execute_full<S: InvalidationSink + ?Sized>(
    q: u16,
    cmd: Command,
    sink: &mut S,
) -> Result<bool, Cerror> {
    use Command as C;
    use Invalidation as I;
    let inv = match cmd {
        C::TlbiNhVa { vmid, asid, range } => I::TlbNhVa { vmid, asid, range },
        C::TlbiNhAsid { vmid, asid } => I::TlbNhAsid { vmid, asid },
        C::TlbiNhAll { vmid } => I::TlbNhAll { vmid },
        C::TlbiNhVaa { vmid, range } => I::TlbNhVaa { vmid, range },
        C::TlbiEl3All => I::TlbEl3All,
        C::TlbiEl3Va { range } => I::TlbEl3Va { range },
        C::TlbiEl2All => I::TlbEl2All,
        C::TlbiEl2Asid { asid } => I::TlbEl2Asid { asid },
        C::TlbiEl2Va { asid, range } => I::TlbEl2Va { asid, range },
        C::TlbiEl2Vaa { range } => I::TlbEl2Vaa { range },
        C::TlbiS12Vmall { vmid } => I::TlbS12Vmall { vmid },
        C::TlbiS2Ipa { vmid, range } => I::TlbS2Ipa { vmid, range },
        C::TlbiNsnhAll => I::TlbNsnhAll,
        // QEMU: SSec=1 on a CFGI is illegal (no secure side modelled).
        C::CfgiSte { ssec: true, .. }
        | C::CfgiSteRange { ssec: true, .. }
        | C::CfgiCd { ssec: true, .. }
        | C::CfgiCdAll { ssec: true, .. } => return Err(Cerror::Ill),
        C::CfgiSte { sid, leaf, .. } => I::Ste { sid, leaf },
        C::CfgiSteRange { sid, range, .. } => {
            // 2^(range+1) StreamIDs, aligned; range >= 31 covers all 2^32.
            let span = 1u64 << (range as u32 + 1).min(32);
            let first = (sid as u64) & !(span - 1);
            I::SteRange {
                first: first as u32,
                last: (first + span - 1) as u32,
            }
        }
        C::CfgiCd {
            sid, ssid, leaf, ..
        } => I::Cd { sid, ssid, leaf },
        C::CfgiCdAll { sid, .. } => I::CdAll { sid },
        C::AtcInv { sid, .. } => atc_of(cmd, sid),
        C::Sync(s) => I::Sync(s),
        C::Unknown { .. } => return Err(Cerror::Ill),
        other @ (C::PrefetchCfg { .. }
        | C::PrefetchAddr { .. }
        | C::PriResp { .. }
        | C::Resume { .. }
        | C::StallTerm { .. }) => I::Other(other),
    };
    sink.invalidate(q, inv).map(|_| false)
}

/// ATC_INV's invalidation of StreamID `sid`: the command's own, or its SID_MATCH translation.
/// Out of line: the TLBI + CMD_SYNC loop runs faster without it (model bench).
#[inline(never)]
fn atc_of(cmd: Command, sid: u32) -> Invalidation {
    match cmd {
        Command::AtcInv {
            ssid,
            ssv,
            global,
            size,
            addr,
            ..
        } => Invalidation::Atc {
            sid,
            ssid: ssv.then_some(ssid),
            global,
            addr,
            size,
        },
        // Only ATC_INV comes here; anything else stays what it was.
        other => Invalidation::Other(other),
    }
}

/// vSID → pSID through the VINTF's SID_MATCH / SID_REPLACE slots (first enabled match wins).
#[inline]
pub fn translate_sid(vsid: u32, sid_match: &[u32], sid_replace: &[u32]) -> Option<u32> {
    sid_match.iter().zip(sid_replace).find_map(|(&m, &r)| {
        let hit = m & regs::sid_match::ENABLE != 0
            && (m >> regs::sid_match::VSID_SHIFT & regs::sid_match::VSID_MASK) == vsid;
        hit.then_some(r & regs::sid_replace::PSID_MASK)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem::VecMemory;

    const RAM: u64 = 0x4000_0000;

    fn exec_ctx<'a>(queue: u16, kind: QueueKind<'a>, opts: &'a EngineOptions) -> ExecCtx<'a> {
        ExecCtx { queue, kind, opts }
    }

    fn guest_ctx<'a>(opts: &'a EngineOptions, m: &'a [u32], r: &'a [u32]) -> ExecCtx<'a> {
        ExecCtx {
            queue: 3,
            kind: QueueKind::VcmdqGuest {
                vmid: 7,
                sid_match: m,
                sid_replace: r,
            },
            opts,
        }
    }

    #[test]
    fn guest_filter_allows_only_tlbi_nh_asid_va_atc_inv_and_sync() {
        let opts = EngineOptions::default();
        let m = [0x10 << 1 | 1];
        let r = [0x99];
        let ctx = guest_ctx(&opts, &m, &r);
        let mut log = Vec::new();
        assert_eq!(
            execute(&ctx, Command::tlbi_nh_va(1, 2, 0x5000, true), &mut log),
            Ok(false)
        );
        assert_eq!(
            execute(&ctx, Command::TlbiNhAsid { vmid: 1, asid: 2 }, &mut log),
            Ok(false)
        );
        let atc = Command::AtcInv {
            sid: 0x10,
            ssid: 0,
            ssv: false,
            global: false,
            size: 52,
            addr: 0,
        };
        assert_eq!(execute(&ctx, atc, &mut log), Ok(false));
        assert_eq!(execute(&ctx, Command::sync_none(), &mut log), Ok(false));
        // VMID substituted, SID translated
        assert!(matches!(
            log[0].1,
            Invalidation::TlbNhVa {
                vmid: 7,
                asid: 2,
                ..
            }
        ));
        assert_eq!(log[1].1, Invalidation::TlbNhAsid { vmid: 7, asid: 2 });
        assert!(matches!(
            log[2].1,
            Invalidation::Atc {
                sid: 0x99,
                ssid: None,
                ..
            }
        ));
        for bad in [
            Command::TlbiNhAll { vmid: 0 },
            Command::TlbiNhVaa {
                vmid: 0,
                range: VaRange::default(),
            },
            Command::CfgiSte {
                sid: 0,
                ssec: false,
                leaf: false,
            },
            Command::TlbiNsnhAll,
            Command::TlbiS12Vmall { vmid: 0 },
            Command::PrefetchCfg {
                sid: 0,
                ssv: false,
                ssid: 0,
            },
        ] {
            assert_eq!(execute(&ctx, bad, &mut log), Err(Cerror::Ill), "{bad:?}");
        }
        let unmatched = Command::AtcInv {
            sid: 0x11,
            ssid: 0,
            ssv: false,
            global: false,
            size: 0,
            addr: 0,
        };
        assert_eq!(execute(&ctx, unmatched, &mut log), Err(Cerror::Ill));
        let opts2 = EngineOptions {
            guest_allows_nh_all_vaa: true,
            guest_filter_cerror: Cerror::IllAccess,
            unmatched_sid_cerror: Cerror::IllAccess,
            ..opts
        };
        let ctx2 = guest_ctx(&opts2, &m, &r);
        assert_eq!(
            execute(&ctx2, Command::TlbiNhAll { vmid: 0 }, &mut log),
            Ok(false)
        );
        assert_eq!(
            execute(&ctx2, Command::TlbiNsnhAll, &mut log),
            Err(Cerror::IllAccess)
        );
        assert_eq!(execute(&ctx2, unmatched, &mut log), Err(Cerror::IllAccess));
    }

    #[test]
    fn vcmdq_sync_must_be_cs_none_unless_the_option_says_otherwise() {
        let opts = EngineOptions::default();
        let ctx = exec_ctx(0, QueueKind::VcmdqHyp, &opts);
        let irq = Command::decode(0x46 | 1 << 12, 0);
        let sev = Command::decode(0x46 | 2 << 12, 0);
        // MSH/MSIATTR/MSIADDR with CS=NONE are fine
        let linux = Command::decode(0x46 | 3 << 22 | 0xf << 24, 0x4000_0010);
        assert_eq!(execute(&ctx, linux, &mut NullSink), Ok(false));
        assert_eq!(execute(&ctx, irq, &mut NullSink), Err(Cerror::Ill));
        assert_eq!(execute(&ctx, sev, &mut NullSink), Err(Cerror::Ill));
        let lax = EngineOptions {
            vcmdq_sync_cs: VcmdqSyncCs::TreatAsNone,
            ..opts
        };
        let ctx = exec_ctx(0, QueueKind::VcmdqHyp, &lax);
        assert_eq!(execute(&ctx, irq, &mut NullSink), Ok(false));
        // the main CMDQ signals CS=IRQ
        let ctx = exec_ctx(MAIN_CMDQ_ID, QueueKind::SmmuMain, &opts);
        assert_eq!(execute(&ctx, irq, &mut NullSink), Ok(true));
        assert_eq!(execute(&ctx, sev, &mut NullSink), Ok(false));
    }

    #[test]
    fn hyp_owned_and_main_queues_execute_every_defined_opcode() {
        let opts = EngineOptions::default();
        for kind in [QueueKind::VcmdqHyp, QueueKind::SmmuMain] {
            let ctx = ExecCtx {
                queue: 0,
                kind,
                opts: &opts,
            };
            for opc in 0..=255u8 {
                let c = Command::decode(opc as u64, 0);
                let r = execute(&ctx, c, &mut NullSink);
                assert_eq!(
                    r.is_ok(),
                    crate::command::opcode_name(opc).is_some(),
                    "{opc:#x}"
                );
            }
            let ssec = Command::CfgiSte {
                sid: 1,
                ssec: true,
                leaf: false,
            };
            assert_eq!(execute(&ctx, ssec, &mut NullSink), Err(Cerror::Ill));
        }
        let ctx = exec_ctx(0, QueueKind::VcmdqHyp, &opts);
        let mut log = Vec::new();
        execute(
            &ctx,
            Command::CfgiSteRange {
                sid: 0x1234,
                ssec: false,
                range: 3,
            },
            &mut log,
        )
        .unwrap();
        execute(
            &ctx,
            Command::CfgiSteRange {
                sid: 5,
                ssec: false,
                range: 31,
            },
            &mut log,
        )
        .unwrap();
        assert_eq!(
            log[0].1,
            Invalidation::SteRange {
                first: 0x1230,
                last: 0x123f
            }
        );
        assert_eq!(
            log[1].1,
            Invalidation::SteRange {
                first: 0,
                last: u32::MAX
            }
        );
    }

    #[test]
    fn consume_stops_at_the_first_fault_and_resumes_after_ack() {
        let mut mem = VecMemory::new(RAM, 0x1000);
        let ring = Ring::new(RAM, 3); // 8 entries
        let cmds = [
            Command::tlbi_nh_va(0, 1, 0x1000, false),
            Command::sync_none(),
            Command::decode(0x07, 0),
        ];
        for (i, c) in cmds.iter().enumerate() {
            mem.write_cmd(RAM + 16 * i as u64, c.encode()).unwrap();
        }
        mem.write_cmd(RAM + 48, Command::sync_none().encode())
            .unwrap();
        let opts = EngineOptions::default();
        let ctx = exec_ctx(1, QueueKind::VcmdqHyp, &opts);
        let mut q = QueueRegs {
            prod: 4,
            ..Default::default()
        };
        let mut ev = Vec::new();
        let out = consume(&ctx, ring, &mut q, &mem, &mut NullSink, &mut ev);
        assert_eq!(out.consumed, 2);
        assert_eq!(out.error, Some((2, Cerror::Ill)));
        assert_eq!(q.cons, 2 | 1 << 24);
        assert!(q.error_pending());
        // nothing moves while the error is pending
        assert_eq!(
            consume(&ctx, ring, &mut q, &mem, &mut NullSink, &mut ev).consumed,
            0
        );
        // Linux's fix: overwrite with CMD_SYNC, ack
        mem.write_cmd(RAM + 32, Command::sync_none().encode())
            .unwrap();
        q.gerrorn = q.gerror;
        let out = consume(&ctx, ring, &mut q, &mem, &mut NullSink, &mut ev);
        assert_eq!(out.consumed, 2);
        assert_eq!(q.cons & 0xfffff, 4);
        assert!(ev.contains(&ModelEvent::QueueError {
            queue: 1,
            index: 2,
            cerror: Cerror::Ill
        }));
        assert_eq!(
            ev.iter()
                .filter(|e| matches!(e, ModelEvent::CommandConsumed { .. }))
                .count(),
            4
        );
    }

    #[test]
    fn fetch_outside_memory_is_abt() {
        let mem = VecMemory::new(RAM, 0x100);
        let opts = EngineOptions::default();
        let ctx = exec_ctx(0, QueueKind::VcmdqHyp, &opts);
        let mut q = QueueRegs {
            prod: 1,
            ..Default::default()
        };
        let out = consume(
            &ctx,
            Ring::new(0x8000_0000, 4),
            &mut q,
            &mem,
            &mut NullSink,
            &mut (),
        );
        assert_eq!(out.error, Some((0, Cerror::Abt)));
        let mut q = QueueRegs {
            prod: 1,
            ..Default::default()
        };
        let out = consume(
            &ctx,
            Ring::new(u64::MAX - 15, 4),
            &mut q,
            &mem,
            &mut NullSink,
            &mut (),
        );
        assert_eq!(out.error, Some((0, Cerror::Abt)));
    }

    #[test]
    fn sink_errors_stop_the_queue() {
        struct Timeout;
        impl InvalidationSink for Timeout {
            fn invalidate(&mut self, _q: u16, inv: Invalidation) -> Result<(), Cerror> {
                if matches!(inv, Invalidation::Sync(_)) {
                    Err(Cerror::AtcInvSync)
                } else {
                    Ok(())
                }
            }
        }
        let mut mem = VecMemory::new(RAM, 0x100);
        mem.write_cmd(RAM, Command::sync_none().encode()).unwrap();
        let opts = EngineOptions::default();
        let ctx = exec_ctx(0, QueueKind::VcmdqHyp, &opts);
        let mut q = QueueRegs {
            prod: 1,
            ..Default::default()
        };
        let out = consume(&ctx, Ring::new(RAM, 2), &mut q, &mem, &mut Timeout, &mut ());
        assert_eq!(out.error, Some((0, Cerror::AtcInvSync)));
        assert_eq!(cons_indx::err(q.cons), 3);
    }
}
