//! The one command-queue consumer (fetch, decode, execute, error protocol) shared by the CMDQV's
//! VCMDQs and the SMMU's own command queue, plus the SMMU main-page subset of the trapped path
//! ([`Smmu`]).
//!
//! Semantics follow QEMU's `smmuv3_cmdq_consume` (../shared/reference/cmdqv-hw.md §13): consume
//! while not empty and no error is pending; a fetch outside guest memory is CERROR_ABT; the first
//! faulting command stops the queue with CONS on it, CONS.ERR set and GERROR.CMDQ_ERR toggled;
//! GERRORN := GERROR resumes. VCMDQs add the guest-owned opcode filter (§8) and the CS=NONE rule.
//! Every loop is bounded by the ring size, whatever the guest wrote.

use crate::command::{CmdSync, Command, SyncCs, VaRange};
use crate::mem::GuestMemory;
use crate::queue::Ring;
use crate::regs::{self, Cerror, cons_indx, gerror, smmu as sr};

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
    let ptr_mask = ring.ptr_mask();
    let mut fault = None;
    // Bounded by construction: n <= ring entries.
    for _ in 0..n {
        let res = match ring.entry_addr(cons) {
            Some(addr) => match mem.read_cmd(addr) {
                Ok([w0, w1]) => match execute(ctx, Command::decode(w0, w1), sink) {
                    Ok(irq) => {
                        out.sync_irqs += irq as u32;
                        obs.event(ModelEvent::CommandConsumed {
                            queue: ctx.queue,
                            index: cons & ptr_mask,
                            w0,
                            w1,
                        });
                        Ok(())
                    }
                    Err(e) => {
                        // The tracer shows the command a queue stopped on.
                        obs.event(ModelEvent::CommandFaulted {
                            queue: ctx.queue,
                            index: cons & ptr_mask,
                            w0,
                            w1,
                        });
                        Err(e)
                    }
                },
                Err(_) => Err(Cerror::Abt),
            },
            None => Err(Cerror::Abt),
        };
        if let Err(e) = res {
            fault = Some(e);
            break;
        }
        cons = ring.inc(cons);
        out.consumed += 1;
    }
    if let Some(e) = fault {
        let index = cons & ptr_mask;
        cons = (cons & !(cons_indx::ERR_MASK << cons_indx::ERR_SHIFT))
            | (e as u32) << cons_indx::ERR_SHIFT;
        // Toggle only if not already pending (checked on entry, so always here).
        regs.gerror ^= gerror::CMDQ_ERR;
        out.raised = true;
        out.error = Some((index, e));
        obs.event(ModelEvent::QueueError {
            queue: ctx.queue,
            index,
            cerror: e,
        });
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
                C::AtcInv {
                    sid,
                    ssid,
                    ssv,
                    global,
                    size,
                    addr,
                } => match translate_sid(sid, sid_match, sid_replace) {
                    Some(psid) => I::Atc {
                        sid: psid,
                        ssid: ssv.then_some(ssid),
                        global,
                        addr,
                        size,
                    },
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
        C::AtcInv {
            sid,
            ssid,
            ssv,
            global,
            size,
            addr,
        } => I::Atc {
            sid,
            ssid: ssv.then_some(ssid),
            global,
            addr,
            size,
        },
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

/// vSID → pSID through the VINTF's SID_MATCH / SID_REPLACE slots (first enabled match wins).
#[inline]
pub fn translate_sid(vsid: u32, sid_match: &[u32], sid_replace: &[u32]) -> Option<u32> {
    sid_match.iter().zip(sid_replace).find_map(|(&m, &r)| {
        let hit = m & regs::sid_match::ENABLE != 0
            && (m >> regs::sid_match::VSID_SHIFT & regs::sid_match::VSID_MASK) == vsid;
        hit.then_some(r & regs::sid_replace::PSID_MASK)
    })
}

/// Counters of the SMMU main-page model.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SmmuStats {
    pub commands: u64,
    pub queue_errors: u64,
    pub gerror_irqs: u64,
    pub cmd_sync_irqs: u64,
    pub guest_errors: [u64; GuestErrorKind::COUNT],
}

/// SMMU_GBPA after reset: SHCFG = "use incoming", ABORT = 0 (QEMU `SMMU_GBPA_RESET_VAL`).
pub const GBPA_RESET: u32 = 0x1000;

/// Size of the SMMU MMIO region the model answers (page0 + its page1 alias).
pub const SMMU_MMIO_SIZE: u64 = 0x20000;

/// The SMMUv3 main register page subset needed for the trapped path: CR0/CR0ACK, IRQ_CTRL,
/// GERROR/GERRORN, CMDQ_BASE/PROD/CONS, IDR0..5, and read-back storage for the other named
/// registers. The command queue runs through the same [`consume`] as the VCMDQs.
#[derive(Clone, Debug)]
pub struct Smmu {
    pub idr: [u32; 6],
    /// CR0 as written (QEMU keeps every bit); CR0ACK is it without the reserved bits.
    pub cr0: u32,
    pub cr0ack: u32,
    pub irq_ctrl: u32,
    pub gerror: u32,
    pub gerrorn: u32,
    pub cmdq_base: u64,
    pub cmdq_prod: u32,
    pub cmdq_cons: u32,
    /// Plain read/write storage (as 32-bit words) for named registers with no modelled effect.
    other: [u32; 64],
    pub stats: SmmuStats,
    opts: EngineOptions,
}

impl Default for Smmu {
    fn default() -> Self {
        Self::new()
    }
}

impl Smmu {
    /// An SMMU with QEMU's ID registers and reset values (`smmuv3_init_regs`, stage "nested"):
    /// stage 1+2, AArch64 tables, 16-bit ASID/VMID, no stall, terminate = abort, 2-level stream
    /// table, HAD/XNX/RIL/BBML=2, 16-bit SIDs, CMDQS = EVENTQS = 19, 44-bit OAS, 4K/16K/64K
    /// granules, AIDR = SMMUv3.1; CMDQ_BASE/EVENTQ_BASE LOG2SIZE = 19, GBPA = 0x1000.
    pub fn new() -> Self {
        let idr0 = 1 << 0 | 1 << 1 | 2 << 2 | 1 << 4 | 1 << 12 | 1 << 18 | 2 << 21 | 1 << 24;
        let idr0 = idr0 | 1 << 26 | 1 << 27;
        let idr1 = 16 | (19 << 16) | (19 << sr::IDR1_CMDQS_SHIFT);
        let idr3 = 1 << 2 | 1 << 4 | 1 << 10 | 2 << 11; // HAD, XNX, RIL, BBML
        let idr5 = 4 | 1 << 4 | 1 << 5 | 1 << 6;
        let mut other = [0; 64];
        other[(sr::EVENTQ_BASE / 4) as usize] = 19;
        other[(sr::GBPA / 4) as usize] = GBPA_RESET;
        Self {
            idr: [idr0, idr1, 0, idr3, 0, idr5],
            cr0: 0,
            cr0ack: 0,
            irq_ctrl: 0,
            gerror: 0,
            gerrorn: 0,
            cmdq_base: 19,
            cmdq_prod: 0,
            cmdq_cons: 0,
            other,
            stats: SmmuStats::default(),
            opts: EngineOptions::default(),
        }
    }

    /// IDR1.CMDQS: the largest LOG2SIZE the command queue honours.
    pub fn cmdqs(&self) -> u8 {
        (self.idr[1] >> sr::IDR1_CMDQS_SHIFT & sr::IDR1_CMDQS_MASK) as u8
    }
    /// Lower IDR1.CMDQS (a VMM caps it so rings fit its RAM pages, §12.1).
    pub fn set_cmdqs(&mut self, log2: u8) {
        let v = (log2.min(19) as u32) << sr::IDR1_CMDQS_SHIFT;
        self.idr[1] = self.idr[1] & !(sr::IDR1_CMDQS_MASK << sr::IDR1_CMDQS_SHIFT) | v;
    }
    /// The command ring as CMDQ_BASE describes it, LOG2SIZE capped by IDR1.CMDQS.
    pub fn cmdq_ring(&self) -> Ring {
        let log2 = (self.cmdq_base & sr::Q_BASE_LOG2SIZE_MASK) as u32;
        Ring::new(
            self.cmdq_base & sr::Q_BASE_ADDR_MASK,
            log2.min(self.cmdqs() as u32),
        )
    }

    fn guest_error<O: Observer + ?Sized>(
        &mut self,
        obs: &mut O,
        kind: GuestErrorKind,
        offset: u64,
    ) {
        self.stats.guest_errors[kind as usize] += 1;
        obs.event(ModelEvent::GuestError {
            device: DeviceKind::Smmu,
            kind,
            offset,
        });
    }

    /// An MMIO read of `size` bytes at `offset` (page1 aliases page0, as in QEMU).
    pub fn read<O: Observer + ?Sized>(&mut self, offset: u64, size: u8, obs: &mut O) -> u64 {
        let v = self.read_inner(offset, size, obs);
        obs.event(ModelEvent::Mmio {
            device: DeviceKind::Smmu,
            offset,
            size,
            value: v,
            write: false,
        });
        v
    }

    fn read_inner<O: Observer + ?Sized>(&mut self, offset: u64, size: u8, obs: &mut O) -> u64 {
        let off = offset & !0x10000;
        if offset >= SMMU_MMIO_SIZE || regs::smmu_reg_name(off).is_none() {
            self.guest_error(obs, GuestErrorKind::UnassignedOffset, offset);
            return 0;
        }
        match size {
            4 => self.read32(off) as u64,
            8 if sr::is_64bit(off) => self.read32(off) as u64 | (self.read32(off + 4) as u64) << 32,
            8 => {
                self.guest_error(obs, GuestErrorKind::Ignored64BitAccess, offset);
                0
            }
            _ => {
                self.guest_error(obs, GuestErrorKind::BadAccessSize, offset);
                0
            }
        }
    }

    fn read32(&self, off: u64) -> u32 {
        match off {
            sr::IDR0..=sr::IDR5 => self.idr[(off / 4) as usize],
            sr::AIDR => 0x1, // SMMUv3.1, as QEMU
            sr::CR0 => self.cr0,
            sr::CR0ACK => self.cr0ack,
            sr::IRQ_CTRL | sr::IRQ_CTRLACK => self.irq_ctrl,
            sr::GERROR => self.gerror,
            sr::GERRORN => self.gerrorn,
            sr::CMDQ_BASE => self.cmdq_base as u32,
            0x94 => (self.cmdq_base >> 32) as u32,
            sr::CMDQ_PROD => self.cmdq_prod,
            sr::CMDQ_CONS => self.cmdq_cons,
            _ => self.other.get((off / 4) as usize).copied().unwrap_or(0),
        }
    }

    /// An MMIO write; CR0, GERRORN and CMDQ_PROD 32-bit writes run the command queue.
    pub fn write<M, S, O>(
        &mut self,
        offset: u64,
        size: u8,
        value: u64,
        mem: &M,
        sink: &mut S,
        obs: &mut O,
    ) where
        M: GuestMemory + ?Sized,
        S: InvalidationSink + ?Sized,
        O: Observer + ?Sized,
    {
        obs.event(ModelEvent::Mmio {
            device: DeviceKind::Smmu,
            offset,
            size,
            value,
            write: true,
        });
        let off = offset & !0x10000;
        if offset >= SMMU_MMIO_SIZE || regs::smmu_reg_name(off).is_none() {
            return self.guest_error(obs, GuestErrorKind::UnassignedOffset, offset);
        }
        match size {
            4 => self.write32(off, value as u32, mem, sink, obs),
            // QEMU's 64-bit path only stores 64-bit registers and never triggers consumption.
            8 if sr::is_64bit(off) => {
                if off == sr::CMDQ_BASE {
                    self.cmdq_base = value & sr::Q_BASE_WRITABLE;
                } else {
                    self.other[(off / 4) as usize] = value as u32;
                    self.other[(off / 4) as usize + 1] = (value >> 32) as u32;
                }
            }
            8 => self.guest_error(obs, GuestErrorKind::Ignored64BitAccess, offset),
            _ => self.guest_error(obs, GuestErrorKind::BadAccessSize, offset),
        }
    }

    fn write32<M, S, O>(&mut self, off: u64, v: u32, mem: &M, sink: &mut S, obs: &mut O)
    where
        M: GuestMemory + ?Sized,
        S: InvalidationSink + ?Sized,
        O: Observer + ?Sized,
    {
        match off {
            sr::IDR0..=sr::AIDR | sr::CR0ACK | sr::IRQ_CTRLACK | sr::GERROR | sr::STATUSR => {
                self.guest_error(obs, GuestErrorKind::ReadOnlyWrite, off)
            }
            sr::CR0 => {
                let was = self.cr0 & sr::CR0_CMDQEN;
                self.cr0 = v;
                self.cr0ack = v & !sr::CR0_RESERVED;
                if was != self.cr0 & sr::CR0_CMDQEN {
                    obs.event(ModelEvent::Enable {
                        target: EnableTarget::SmmuCmdq,
                        on: was == 0,
                    });
                }
                self.consume(mem, sink, obs);
            }
            sr::IRQ_CTRL => self.irq_ctrl = v,
            sr::GERRORN => {
                let toggled = self.gerrorn ^ v;
                if toggled & !(self.gerror ^ self.gerrorn) != 0 {
                    self.guest_error(obs, GuestErrorKind::SpuriousAck, off);
                }
                self.gerrorn = v;
                obs.event(ModelEvent::ErrorAck {
                    queue: MAIN_CMDQ_ID,
                    gerrorn: v,
                });
                self.consume(mem, sink, obs);
            }
            sr::CMDQ_BASE => {
                self.cmdq_base = (self.cmdq_base & !0xffff_ffff | v as u64) & sr::Q_BASE_WRITABLE
            }
            0x94 => {
                self.cmdq_base =
                    (self.cmdq_base & 0xffff_ffff | (v as u64) << 32) & sr::Q_BASE_WRITABLE
            }
            sr::CMDQ_PROD => {
                self.cmdq_prod = v & regs::prod_indx::WR_MASK;
                obs.event(ModelEvent::Doorbell {
                    queue: MAIN_CMDQ_ID,
                    prod: self.cmdq_prod,
                    cons: self.cmdq_cons,
                });
                self.consume(mem, sink, obs);
            }
            sr::CMDQ_CONS => self.cmdq_cons = v & cons_indx::WRITABLE,
            // GBPA.UPDATE (bit 31) completes at once, as in QEMU: Linux's arm_smmu_update_gbpa
            // polls until it reads back clear. A write without UPDATE is ignored (QEMU; the
            // only behaviour SMMUv3.2 permits).
            sr::GBPA => {
                if v & 1 << 31 != 0 {
                    self.other[(off / 4) as usize] = v & !(1 << 31)
                }
            }
            _ => self.other[(off / 4) as usize] = v,
        }
    }

    /// Run the command queue (QEMU: returns at once unless CR0.CMDQEN).
    pub fn consume<M, S, O>(&mut self, mem: &M, sink: &mut S, obs: &mut O) -> Outcome
    where
        M: GuestMemory + ?Sized,
        S: InvalidationSink + ?Sized,
        O: Observer + ?Sized,
    {
        if self.cr0 & sr::CR0_CMDQEN == 0 {
            return Outcome::default();
        }
        let ring = self.cmdq_ring();
        let mut q = QueueRegs {
            prod: self.cmdq_prod,
            cons: self.cmdq_cons,
            gerror: self.gerror,
            gerrorn: self.gerrorn,
        };
        let opts = self.opts;
        let ctx = ExecCtx {
            queue: MAIN_CMDQ_ID,
            kind: QueueKind::SmmuMain,
            opts: &opts,
        };
        let out = consume(&ctx, ring, &mut q, mem, sink, obs);
        self.cmdq_cons = q.cons;
        self.gerror = q.gerror;
        self.stats.commands += out.consumed as u64;
        // One event per CMD_SYNC, as QEMU pulses the line once per CMD_SYNC (a qtest client with
        // the IRQ intercepted sees every pulse). Bounded by the ring size.
        self.stats.cmd_sync_irqs += out.sync_irqs as u64;
        for _ in 0..out.sync_irqs {
            obs.event(ModelEvent::Irq {
                line: IrqLine::SmmuCmdSync,
            });
        }
        if out.raised {
            self.stats.queue_errors += 1;
            if self.irq_ctrl & sr::IRQ_CTRL_GERROR_IRQEN != 0 {
                self.stats.gerror_irqs += 1;
                obs.event(ModelEvent::Irq {
                    line: IrqLine::SmmuGerror,
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem::VecMemory;

    const RAM: u64 = 0x4000_0000;

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
        let ctx = ExecCtx {
            queue: 0,
            kind: QueueKind::VcmdqHyp,
            opts: &opts,
        };
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
        let ctx = ExecCtx {
            queue: 0,
            kind: QueueKind::VcmdqHyp,
            opts: &lax,
        };
        assert_eq!(execute(&ctx, irq, &mut NullSink), Ok(false));
        // the main CMDQ signals CS=IRQ
        let ctx = ExecCtx {
            queue: MAIN_CMDQ_ID,
            kind: QueueKind::SmmuMain,
            opts: &opts,
        };
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
        let ctx = ExecCtx {
            queue: 0,
            kind: QueueKind::VcmdqHyp,
            opts: &opts,
        };
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
        let ctx = ExecCtx {
            queue: 1,
            kind: QueueKind::VcmdqHyp,
            opts: &opts,
        };
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
        let ctx = ExecCtx {
            queue: 0,
            kind: QueueKind::VcmdqHyp,
            opts: &opts,
        };
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
        let ctx = ExecCtx {
            queue: 0,
            kind: QueueKind::VcmdqHyp,
            opts: &opts,
        };
        let mut q = QueueRegs {
            prod: 1,
            ..Default::default()
        };
        let out = consume(&ctx, Ring::new(RAM, 2), &mut q, &mem, &mut Timeout, &mut ());
        assert_eq!(out.error, Some((0, Cerror::AtcInvSync)));
        assert_eq!(cons_indx::err(q.cons), 3);
    }

    fn smmu_setup(mem: &mut VecMemory) -> Smmu {
        let mut s = Smmu::new();
        let mut ev = Vec::new();
        s.write(sr::CMDQ_BASE, 8, RAM | 4, mem, &mut NullSink, &mut ev);
        s.write(sr::IRQ_CTRL, 4, 1, mem, &mut NullSink, &mut ev);
        s.write(
            sr::CR0,
            4,
            (sr::CR0_CMDQEN | sr::CR0_SMMUEN) as u64,
            mem,
            &mut NullSink,
            &mut ev,
        );
        assert_eq!(
            s.read(sr::CR0ACK, 4, &mut ev),
            (sr::CR0_CMDQEN | sr::CR0_SMMUEN) as u64
        );
        assert!(ev.contains(&ModelEvent::Enable {
            target: EnableTarget::SmmuCmdq,
            on: true
        }));
        s
    }

    #[test]
    fn smmu_bring_up_handshakes_complete_as_linux_polls_for_them() {
        let mem = VecMemory::new(RAM, 0x1000);
        let mut s = Smmu::new();
        // arm_smmu_update_gbpa: write with UPDATE set, poll until UPDATE reads back clear.
        s.write(
            sr::GBPA,
            4,
            (1 << 31) | (1 << 20),
            &mem,
            &mut NullSink,
            &mut (),
        );
        assert_eq!(s.read(sr::GBPA, 4, &mut ()), 1 << 20);
        // arm_smmu_write_reg_sync: IRQ_CTRL → IRQ_CTRLACK, CR0 → CR0ACK.
        s.write(sr::IRQ_CTRL, 4, 0x5, &mem, &mut NullSink, &mut ());
        assert_eq!(s.read(sr::IRQ_CTRLACK, 4, &mut ()), 0x5);
        s.write(sr::CR0, 4, 0xd, &mem, &mut NullSink, &mut ());
        assert_eq!(s.read(sr::CR0ACK, 4, &mut ()), 0xd);
    }

    #[test]
    fn smmu_cmdq_follows_qemu_semantics() {
        let mut mem = VecMemory::new(RAM, 0x1000);
        let mut s = smmu_setup(&mut mem);
        mem.write_cmd(
            RAM,
            Command::CfgiSte {
                sid: 3,
                ssec: false,
                leaf: true,
            }
            .encode(),
        )
        .unwrap();
        mem.write_cmd(RAM + 16, Command::decode(0x46 | 1 << 12, 0).encode())
            .unwrap();
        mem.write_cmd(RAM + 32, Command::decode(0x07, 0).encode())
            .unwrap();
        let mut sink = CountingSink::default();
        let mut ev = Vec::new();
        // a 64-bit PROD write is ignored (QEMU), a 32-bit one rings the doorbell
        s.write(sr::CMDQ_PROD, 8, 3, &mem, &mut sink, &mut ev);
        assert_eq!(s.cmdq_prod, 0);
        s.write(sr::CMDQ_PROD + 0x10000, 4, 3, &mem, &mut sink, &mut ev); // page1 alias
        assert_eq!(s.read(sr::CMDQ_CONS, 4, &mut ev), 2 | 1 << 24);
        assert_eq!(s.read(sr::GERROR, 4, &mut ev), 1);
        assert_eq!(s.stats.gerror_irqs, 1);
        assert_eq!(s.stats.cmd_sync_irqs, 1);
        assert_eq!(sink.cfg, 1);
        assert!(ev.contains(&ModelEvent::Irq {
            line: IrqLine::SmmuCmdSync
        }));
        mem.write_cmd(RAM + 32, Command::sync_none().encode())
            .unwrap();
        s.write(sr::GERRORN, 4, 1, &mem, &mut sink, &mut ev);
        assert_eq!(s.read(sr::CMDQ_CONS, 4, &mut ev) & 0xfffff, 3);
        assert!(ev.contains(&ModelEvent::ErrorAck {
            queue: MAIN_CMDQ_ID,
            gerrorn: 1
        }));
        // acking a bit that is not pending is a counted guest error
        s.write(sr::GERRORN, 4, 3, &mem, &mut sink, &mut ev);
        assert_eq!(
            s.stats.guest_errors[GuestErrorKind::SpuriousAck as usize],
            1
        );
    }

    #[test]
    fn smmu_bad_accesses_are_counted_not_fatal() {
        let mem = VecMemory::new(RAM, 0x100);
        let mut s = Smmu::new();
        assert_eq!(s.read(0x3c, 4, &mut ()), 0);
        assert_eq!(s.read(sr::CR0, 2, &mut ()), 0);
        assert_eq!(s.read(sr::CR0, 8, &mut ()), 0);
        s.write(sr::IDR1, 4, 0, &mem, &mut NullSink, &mut ());
        s.write(0x30000, 4, 0, &mem, &mut NullSink, &mut ());
        assert_eq!(s.cmdqs(), 19);
        let g = &s.stats.guest_errors;
        assert_eq!(g[GuestErrorKind::UnassignedOffset as usize], 2);
        assert_eq!(g[GuestErrorKind::BadAccessSize as usize], 1);
        assert_eq!(g[GuestErrorKind::Ignored64BitAccess as usize], 1);
        assert_eq!(g[GuestErrorKind::ReadOnlyWrite as usize], 1);
        s.set_cmdqs(12);
        s.write(sr::CMDQ_BASE, 4, RAM | 19, &mem, &mut NullSink, &mut ());
        assert_eq!(s.cmdq_ring().log2size, 12);
    }

    #[test]
    fn smmu_reset_values_match_qemu_init_regs() {
        // hw/arm/smmuv3.c smmuv3_init_regs / smmu_writel (GBPA).
        let mem = VecMemory::new(RAM, 0x100);
        let mut s = Smmu::new();
        let idr0 = s.read(sr::IDR0, 4, &mut ()) as u32;
        assert_eq!(idr0 >> 24 & 3, 1, "STALL_MODEL = 1 (no stall)");
        assert_eq!(idr0 >> 26 & 1, 1, "TERM_MODEL = 1 (abort)");
        // IDR3: HAD, XNX (stage 2 advertised), RIL, BBML = 2
        assert_eq!(
            s.read(sr::IDR3, 4, &mut ()),
            1 << 2 | 1 << 4 | 1 << 10 | 2 << 11
        );
        // IDR5: OAS 44 bits, 4K/16K/64K granules
        assert_eq!(s.read(sr::IDR5, 4, &mut ()), 4 | 1 << 4 | 1 << 5 | 1 << 6);
        assert_eq!(s.read(sr::AIDR, 4, &mut ()), 1);
        // queue bases come out of reset with LOG2SIZE = CMDQS / EVENTQS = 19
        assert_eq!(s.read(sr::CMDQ_BASE, 8, &mut ()), 19);
        assert_eq!(s.read(sr::EVENTQ_BASE, 8, &mut ()), 19);
        // GBPA resets to "use incoming" (0x1000); a write without UPDATE is ignored
        assert_eq!(s.read(sr::GBPA, 4, &mut ()), 0x1000);
        s.write(sr::GBPA, 4, 1 << 20, &mem, &mut NullSink, &mut ());
        assert_eq!(s.read(sr::GBPA, 4, &mut ()), 0x1000);
        s.write(sr::GBPA, 4, 1 << 31 | 1 << 20, &mem, &mut NullSink, &mut ());
        assert_eq!(s.read(sr::GBPA, 4, &mut ()), 1 << 20);
    }

    #[test]
    fn smmu_cr0_reads_back_raw_and_cr0ack_drops_reserved_bits() {
        // smmu_writel A_CR0: s->cr[0] = data; s->cr0ack = data & ~SMMU_CR0_RESERVED (0xFFFFFC20).
        let mem = VecMemory::new(RAM, 0x100);
        let mut s = Smmu::new();
        s.write(sr::CR0, 4, 0xffff_ffe0 | 0x7, &mem, &mut NullSink, &mut ());
        assert_eq!(s.read(sr::CR0, 4, &mut ()), 0xffff_ffe7);
        assert_eq!(s.read(sr::CR0ACK, 4, &mut ()), 0x3c7);
        s.write(sr::IRQ_CTRL, 4, 0xf5, &mem, &mut NullSink, &mut ());
        assert_eq!(s.read(sr::IRQ_CTRLACK, 4, &mut ()), 0xf5);
    }
}
