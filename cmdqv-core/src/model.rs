//! The CMDQV device model: registers, enable handshakes, CMDQ_ALLOC_MAP, error maps, interrupt,
//! and fully emulated consumption of every VCMDQ through [`crate::engine`], the queue engine the
//! SMMU main page beside it ([`crate::smmu`]) runs its command queue through too.
//!
//! **One state, many views.** There is one [`Vcmdq`] per global VCMDQ. The global pages decode to
//! it by index; a VINTF's logical pages decode to it through the reverse table that
//! CMDQ_ALLOC_MAP maintains. Both views therefore read and write the same fields and cannot
//! disagree. The error maps (CMDQ_ERR_MAP, LVCMDQ_ERR_MAP, VI_ERR_MAP) are computed on read from
//! per-queue state, so they can never show a bit for an unmapped or disabled queue (§10.6: Linux's
//! ISR would dereference NULL for such a bit).
//!
//! Page0 of every VCMDQ goes through one seam ([`Cmdqv::page0_read`] / [`Cmdqv::page0_write`]); a
//! passthrough layer can attach a [`Page0Backend`] to a queue with [`Cmdqv::set_backing`], after
//! which that queue's page0 accesses (from either aperture) go to the backend and the model no
//! longer consumes it.
//!
//! Choices where the reference says UNCONFIRMED are fields of [`ModelConfig`], defaults documented
//! there. The guest is untrusted: no access can panic, every loop is bounded, every oddity is a
//! counted [`GuestErrorKind`].

use crate::engine::{
    self, DeviceKind, EnableTarget, EngineOptions, ExecCtx, GuestErrorKind, InvalidationSink,
    IrqLine, ModelEvent, Observer, QueueKind, QueueRegs,
};
use crate::mem::GuestMemory;
use crate::queue::Ring;
use crate::regs::{
    self, Aperture, Geometry, MAX_LVCMDQS_PER_VINTF, Page0Reg, Page1Reg, RegRef, VcmdqReg,
    VintfReg, alloc_map, cons_indx, gerror, prod_indx, vcmdq_config, vcmdq_status, vintf_config,
    vintf_status,
};

/// Who the device model is presented to.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub enum Personality {
    /// The host view: VINTF_CONFIG.HYP_OWN is writable.
    Host,
    /// A guest view: HYP_OWN is forced to read 0, as the VMM trapping VINTF_CONFIG must do (§1).
    /// Every VINTF is then guest-owned and its VCMDQs get the opcode filter.
    #[default]
    Guest,
}

/// Register values after reset (real hardware values are UNCONFIRMED, §7).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub enum ResetValues {
    /// QEMU's: CONFIG = 0x00020083 (CMDQV already enabled), STATUS = 1, everything else 0.
    /// Default, because the guest model is compared against QEMU and Linux toggles EN anyway.
    #[default]
    Qemu,
    /// Everything 0: CMDQV disabled at reset.
    Disabled,
}

/// What an 8-byte access means.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub enum Access64 {
    /// Two 32-bit accesses, low word first (must be 8-byte aligned). Default: Linux reads
    /// LVCMDQ_ERR_MAP with `readq` and writes BASE with `writeq`, which both need this.
    #[default]
    Split,
    /// QEMU's `mmio_cmdqv_ops` (§12.2): reads return the one 32-bit register zero-extended except
    /// page1 BASE_L / CONS_INDX_BASE_DRAM_L (full 64 bits); writes are honoured only there.
    QemuCompat,
}

/// Every named choice of the model.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct ModelConfig {
    pub geometry: Geometry,
    pub personality: Personality,
    pub reset: ResetValues,
    pub access64: Access64,
    /// Error-map bits of a queue clear when its error is acknowledged (GERRORN := GERROR).
    /// Default true: Linux never writes the maps, and sticky maps make a later unrelated interrupt
    /// rewrite a healthy queue's next command (§10.6). false = QEMU's "never cleared" (until the
    /// queue is unmapped, disabled, or the device reset).
    pub maps_clear_on_ack: bool,
    pub engine: EngineOptions,
}

impl ModelConfig {
    /// QEMU's guest-visible device: guest geometry and personality, QEMU reset values.
    pub fn guest() -> Self {
        Self {
            geometry: Geometry::guest(),
            personality: Personality::Guest,
            reset: ResetValues::Qemu,
            access64: Access64::Split,
            maps_clear_on_ack: true,
            engine: EngineOptions::default(),
        }
    }
    /// A Grace host: 64 VINTFs, 128 VCMDQs, HYP_OWN writable, disabled at reset.
    pub fn host() -> Self {
        Self {
            geometry: Geometry::host(),
            personality: Personality::Host,
            reset: ResetValues::Disabled,
            ..Self::guest()
        }
    }
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self::guest()
    }
}

/// A hardware (or other) backend for one VCMDQ's page0 (e.g. a host VINTF page mmapped by a
/// passthrough layer). While attached, page0 accesses are forwarded and the model does not
/// consume the queue.
pub trait Page0Backend: Send {
    /// Reads have no side effects (the error maps consult a backed queue's live state).
    fn read32(&self, reg: Page0Reg) -> u32;
    fn write32(&mut self, reg: Page0Reg, value: u32);
}

/// Page0 register values of one VCMDQ (what a passthrough layer carries to and from hardware).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Page0State {
    pub cons: u32,
    pub prod: u32,
    pub config: u32,
    pub status: u32,
    pub gerror: u32,
    pub gerrorn: u32,
}

/// Page1 register values of one VCMDQ.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Page1State {
    /// BASE_H:BASE_L (ADDR \[47:5\], LOG2SIZE \[4:0\]).
    pub base: u64,
    /// CONS_INDX_BASE_DRAM_H:_L.
    pub cons_dram: u64,
}

/// The state of one global VCMDQ, whichever aperture reaches it.
#[derive(Default)]
pub struct Vcmdq {
    pub page0: Page0State,
    pub page1: Page1State,
    /// CMDQ_ALLOC_MAP(q) as written.
    pub alloc_map: u32,
    /// An error was raised and not yet cleared: the source of the error-map bits.
    err_latched: bool,
    backing: Option<Box<dyn Page0Backend>>,
}

impl std::fmt::Debug for Vcmdq {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vcmdq")
            .field("page0", &self.page0)
            .field("page1", &self.page1)
            .field("alloc_map", &self.alloc_map)
            .field("err_latched", &self.err_latched)
            .field("backed", &self.backing.is_some())
            .finish()
    }
}

impl Vcmdq {
    /// The ring BASE describes (LOG2SIZE clamped to 19).
    pub fn ring(&self) -> Ring {
        Ring::new(
            self.page1.base & regs::base::ADDR_MASK,
            (self.page1.base & regs::base::LOG2SIZE_MASK) as u32,
        )
    }
    pub fn is_backed(&self) -> bool {
        self.backing.is_some()
    }
}

const NO_QUEUE: u16 = u16::MAX;

/// The state of one VINTF.
#[derive(Clone, Debug)]
pub struct Vintf {
    /// VINTF_CONFIG as stored (HYP_OWN already masked for the guest personality).
    pub config: u32,
    pub glb_filt_cfg0: u32,
    pub glb_filt_data0: u32,
    pub sid_match: Vec<u32>,
    pub sid_replace: Vec<u32>,
    /// LVCMDQ slot → global VCMDQ (NO_QUEUE when unmapped). The only mapping truth.
    slots: Vec<u16>,
}

impl Vintf {
    fn new(sids: usize) -> Self {
        Self {
            config: 0,
            glb_filt_cfg0: 0,
            glb_filt_data0: 0,
            sid_match: vec![0; sids],
            sid_replace: vec![0; sids],
            slots: vec![NO_QUEUE; MAX_LVCMDQS_PER_VINTF],
        }
    }
    pub fn enabled(&self) -> bool {
        self.config & vintf_config::ENABLE != 0
    }
    pub fn vmid(&self) -> u16 {
        vintf_config::vmid(self.config)
    }
    pub fn hyp_own(&self) -> bool {
        self.config & vintf_config::HYP_OWN != 0
    }
    /// The global VCMDQ mapped at logical slot `lidx`.
    pub fn lvcmdq(&self, lidx: usize) -> Option<u16> {
        self.slots.get(lidx).copied().filter(|&q| q != NO_QUEUE)
    }
    /// Number of mapped LVCMDQs (VINTF_STATUS.VI_NUM_LVCMDQ).
    pub fn num_lvcmdqs(&self) -> usize {
        self.slots.iter().filter(|&&q| q != NO_QUEUE).count()
    }
}

/// Counters: every guest oddity and every side effect, bounded memory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModelStats {
    pub mmio_reads: u64,
    pub mmio_writes: u64,
    pub commands: u64,
    pub queue_errors: u64,
    /// Error-interrupt pulses delivered.
    pub irq_pulses: u64,
    /// Error interrupts suppressed by VI_INT_MASK.
    pub irq_masked: u64,
    /// Indexed by `GuestErrorKind as usize`.
    pub guest_errors: [u64; GuestErrorKind::COUNT],
}

impl ModelStats {
    pub fn guest_error(&self, kind: GuestErrorKind) -> u64 {
        self.guest_errors[kind as usize]
    }
}

/// The CMDQV device.
#[derive(Debug)]
pub struct Cmdqv {
    cfg: ModelConfig,
    config: u32,
    status: u32,
    vi_int_mask: [u32; 2],
    queues: Vec<Vcmdq>,
    vintfs: Vec<Vintf>,
    pub stats: ModelStats,
}

impl Cmdqv {
    pub fn new(cfg: ModelConfig) -> Self {
        let cfg = ModelConfig {
            geometry: cfg.geometry.normalized(),
            ..cfg
        };
        let g = cfg.geometry;
        let mut m = Self {
            cfg,
            config: 0,
            status: 0,
            vi_int_mask: [0; 2],
            queues: (0..g.num_vcmdqs()).map(|_| Vcmdq::default()).collect(),
            vintfs: (0..g.num_vintfs())
                .map(|_| Vintf::new(g.num_sids_per_vintf()))
                .collect(),
            stats: ModelStats::default(),
        };
        m.reset();
        m
    }

    /// Device reset: registers to [`ResetValues`], every mapping removed. Page0 backends stay
    /// attached (their owner decides what a reset means for hardware); counters are kept.
    pub fn reset(&mut self) {
        (self.config, self.status) = match self.cfg.reset {
            ResetValues::Qemu => (regs::config::QEMU_RESET, regs::status::CMDQV_ENABLED),
            ResetValues::Disabled => (0, 0),
        };
        self.vi_int_mask = [0; 2];
        for q in &mut self.queues {
            q.page0 = Page0State::default();
            q.page1 = Page1State::default();
            q.alloc_map = 0;
            q.err_latched = false;
        }
        let sids = self.cfg.geometry.num_sids_per_vintf();
        for v in &mut self.vintfs {
            *v = Vintf::new(sids);
        }
    }

    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }
    pub fn geometry(&self) -> Geometry {
        self.cfg.geometry
    }
    /// MMIO region size.
    pub fn mmio_size(&self) -> u64 {
        self.cfg.geometry.mmio_size()
    }
    pub fn enabled(&self) -> bool {
        self.config & regs::config::CMDQV_EN != 0
    }
    pub fn vcmdq(&self, q: usize) -> Option<&Vcmdq> {
        self.queues.get(q)
    }
    pub fn vintf(&self, v: usize) -> Option<&Vintf> {
        self.vintfs.get(v)
    }
    /// Page0 state of VCMDQ `q` (the model's copy; a backed queue's live values are in its
    /// backend).
    pub fn page0_state(&self, q: usize) -> Option<Page0State> {
        self.queues.get(q).map(|v| v.page0)
    }
    /// Replace the model's page0 copy (no side effects: no consumption, no events).
    pub fn set_page0_state(&mut self, q: usize, s: Page0State) {
        let clear = self.cfg.maps_clear_on_ack;
        if let Some(v) = self.queues.get_mut(q) {
            v.page0 = s;
            // A queue coming back from hardware with its error acknowledged there keeps no
            // error-map bit (with the clear-on-ack choice).
            if clear && (s.gerror ^ s.gerrorn) & gerror::CMDQ_ERR == 0 {
                v.err_latched = false;
            }
        }
    }
    pub fn page1_state(&self, q: usize) -> Option<Page1State> {
        self.queues.get(q).map(|v| v.page1)
    }
    pub fn set_page1_state(&mut self, q: usize, s: Page1State) {
        if let Some(v) = self.queues.get_mut(q) {
            v.page1 = s;
        }
    }
    /// Attach (`Some`) or detach (`None`) a page0 backend for VCMDQ `q`; returns the previous one.
    /// Out-of-range `q` hands the backend back.
    pub fn set_backing(
        &mut self,
        q: usize,
        backend: Option<Box<dyn Page0Backend>>,
    ) -> Option<Box<dyn Page0Backend>> {
        match self.queues.get_mut(q) {
            Some(v) => std::mem::replace(&mut v.backing, backend),
            None => backend,
        }
    }

    /// (VINTF, LVCMDQ) that VCMDQ `q` is mapped to, if the mapping is in effect.
    pub fn mapping(&self, q: usize) -> Option<(u8, u8)> {
        let v = self.queues.get(q)?.alloc_map;
        if v & alloc_map::ALLOC == 0 {
            return None;
        }
        let (vi, l) = (alloc_map::vintf(v) as usize, alloc_map::lvcmdq(v) as usize);
        (self.vintfs.get(vi)?.slots[l] == q as u16).then_some((vi as u8, l as u8))
    }

    /// True when VCMDQ `q` consumes on a doorbell: CMDQV, VINTF and queue enabled, mapped, not
    /// backed by hardware.
    pub fn queue_live(&self, q: usize) -> bool {
        let Some((vi, _)) = self.mapping(q) else {
            return false;
        };
        let vq = &self.queues[q];
        self.enabled()
            && self.vintfs[vi as usize].enabled()
            && vq.page0.config & vcmdq_config::CMDQ_EN != 0
            && vq.backing.is_none()
    }

    /// Whether VCMDQ `q` shows in the error maps: error latched and the queue still mapped and
    /// enabled in an enabled VINTF. For a hardware-backed queue, "enabled" and (with
    /// `maps_clear_on_ack`) "not yet acknowledged" are read from its backend: the guest
    /// acknowledges through the hardware page, which the model does not see.
    fn in_error_map(&self, q: usize) -> bool {
        let Some((vi, _)) = self.mapping(q) else {
            return false;
        };
        let vq = &self.queues[q];
        if !vq.err_latched || !self.vintfs[vi as usize].enabled() {
            return false;
        }
        match &vq.backing {
            None => vq.page0.config & vcmdq_config::CMDQ_EN != 0,
            Some(b) => {
                let pending = (b.read32(Page0Reg::Gerror) ^ b.read32(Page0Reg::Gerrorn))
                    & gerror::CMDQ_ERR
                    != 0;
                b.read32(Page0Reg::Config) & vcmdq_config::CMDQ_EN != 0
                    && (pending || !self.cfg.maps_clear_on_ack)
            }
        }
    }

    /// A hardware error reported by the host (a vEVENT carrying VINTF `vintf`'s
    /// LVCMDQ_ERR_MAP): latch the error of every LVCMDQ in `lvcmdq_map` that is mapped, enabled
    /// (in its backend when backed) in an enabled VINTF, and pulse the error interrupt unless
    /// VI_INT_MASK masks the VINTF. Bits for unmapped or disabled queues are dropped, never
    /// raised (§10.6: the guest's ISR would chase them). Returns the bits accepted.
    pub fn raise_host_error<O: Observer + ?Sized>(
        &mut self,
        vintf: usize,
        lvcmdq_map: u128,
        obs: &mut O,
    ) -> u128 {
        let Some(vi) = self.vintfs.get(vintf) else {
            return 0;
        };
        if !vi.enabled() {
            return 0;
        }
        let mut accepted = 0u128;
        for l in 0..MAX_LVCMDQS_PER_VINTF.min(128) {
            if lvcmdq_map >> l & 1 == 0 {
                continue;
            }
            let Some(q) = vi.lvcmdq(l) else { continue };
            let vq = &self.queues[q as usize];
            let (config, ge, gn) = match &vq.backing {
                Some(b) => (
                    b.read32(Page0Reg::Config),
                    b.read32(Page0Reg::Gerror),
                    b.read32(Page0Reg::Gerrorn),
                ),
                None => (vq.page0.config, vq.page0.gerror, vq.page0.gerrorn),
            };
            if config & vcmdq_config::CMDQ_EN == 0 {
                continue;
            }
            // An event that arrives after the guest acknowledged (or after the queue moved back
            // with its error acknowledged) is stale: a bit for it would make Linux's ISR rewrite
            // the healthy queue's next command (§10.6).
            if self.cfg.maps_clear_on_ack && (ge ^ gn) & gerror::CMDQ_ERR == 0 {
                continue;
            }
            accepted |= 1 << l;
        }
        if accepted == 0 {
            return 0;
        }
        for l in 0..128 {
            if accepted >> l & 1 != 0 {
                if let Some(q) = self.vintfs[vintf].lvcmdq(l) {
                    self.queues[q as usize].err_latched = true;
                    self.stats.queue_errors += 1;
                }
            }
        }
        self.pulse_error_irq(vintf, obs);
        accepted
    }

    /// CMDQ_ERR_MAP as 128 bits.
    pub fn cmdq_err_map(&self) -> u128 {
        (0..self.queues.len())
            .filter(|&q| self.in_error_map(q))
            .fold(0, |m, q| m | 1 << q)
    }
    /// VINTF `v`'s LVCMDQ_ERR_MAP as 128 bits.
    pub fn lvcmdq_err_map(&self, v: usize) -> u128 {
        let Some(vintf) = self.vintfs.get(v) else {
            return 0;
        };
        (0..MAX_LVCMDQS_PER_VINTF)
            .filter(|&l| {
                vintf
                    .lvcmdq(l)
                    .is_some_and(|q| self.in_error_map(q as usize))
            })
            .fold(0, |m, l| m | 1 << l)
    }
    /// VI_ERR_MAP as 64 bits.
    pub fn vi_err_map(&self) -> u64 {
        (0..self.vintfs.len())
            .filter(|&v| self.lvcmdq_err_map(v) != 0)
            .fold(0, |m, v| m | 1 << v)
    }

    fn guest_error<O: Observer + ?Sized>(&mut self, obs: &mut O, kind: GuestErrorKind, at: u64) {
        let counts = &mut self.stats.guest_errors;
        engine::count_guest_error(counts, DeviceKind::Cmdqv, kind, at, obs);
    }

    /// Pulses the CMDQV error interrupt for VINTF `vintf`, unless VI_INT_MASK masks it.
    fn pulse_error_irq<O: Observer + ?Sized>(&mut self, vintf: usize, obs: &mut O) {
        if self.vi_int_mask[vintf / 32] >> (vintf % 32) & 1 != 0 {
            self.stats.irq_masked += 1;
        } else {
            self.stats.irq_pulses += 1;
            obs.event(ModelEvent::Irq {
                line: IrqLine::CmdqvError,
            });
        }
    }

    // ---------------------------------------------------------------------------------------
    // MMIO entry points

    /// An MMIO read of `size` bytes at `offset` in the CMDQV region.
    pub fn read<O: Observer + ?Sized>(&mut self, offset: u64, size: u8, obs: &mut O) -> u64 {
        self.stats.mmio_reads += 1;
        let v = match size {
            4 if offset & 3 != 0 => {
                self.guest_error(obs, GuestErrorKind::UnalignedAccess, offset);
                0
            }
            4 => self.read32(offset, obs) as u64,
            8 if offset & 7 != 0 => {
                self.guest_error(obs, GuestErrorKind::UnalignedAccess, offset);
                0
            }
            8 => match self.cfg.access64 {
                Access64::Split => {
                    self.read32(offset, obs) as u64 | (self.read32(offset + 4, obs) as u64) << 32
                }
                Access64::QemuCompat => match self.cfg.geometry.decode(offset) {
                    Some(RegRef::Vcmdq {
                        reg: VcmdqReg::Page1(r @ (Page1Reg::BaseL | Page1Reg::ConsIndxBaseDramL)),
                        ..
                    }) => {
                        let lo = self.read32(offset, obs) as u64;
                        let hi = self.read32(offset + 4, obs) as u64;
                        let _ = r;
                        lo | hi << 32
                    }
                    _ => self.read32(offset, obs) as u64,
                },
            },
            _ => {
                self.guest_error(obs, GuestErrorKind::BadAccessSize, offset);
                0
            }
        };
        obs.event(ModelEvent::mmio(DeviceKind::Cmdqv, offset, size, v, false));
        v
    }

    /// An MMIO write; PROD doorbells, enables, ALLOC_MAP and GERRORN acks run the affected queues
    /// against `mem` and `sink`.
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
        self.stats.mmio_writes += 1;
        obs.event(ModelEvent::mmio(
            DeviceKind::Cmdqv,
            offset,
            size,
            value,
            true,
        ));
        match size {
            4 if offset & 3 != 0 => self.guest_error(obs, GuestErrorKind::UnalignedAccess, offset),
            4 => self.write32(offset, value as u32, mem, sink, obs),
            8 if offset & 7 != 0 => self.guest_error(obs, GuestErrorKind::UnalignedAccess, offset),
            8 => match self.cfg.access64 {
                Access64::Split => {
                    self.write32(offset, value as u32, mem, sink, obs);
                    self.write32(offset + 4, (value >> 32) as u32, mem, sink, obs);
                }
                Access64::QemuCompat => match self.cfg.geometry.decode(offset) {
                    Some(RegRef::Vcmdq {
                        reg: VcmdqReg::Page1(Page1Reg::BaseL | Page1Reg::ConsIndxBaseDramL),
                        ..
                    }) => {
                        self.write32(offset, value as u32, mem, sink, obs);
                        self.write32(offset + 4, (value >> 32) as u32, mem, sink, obs);
                    }
                    _ => self.guest_error(obs, GuestErrorKind::Ignored64BitAccess, offset),
                },
            },
            _ => self.guest_error(obs, GuestErrorKind::BadAccessSize, offset),
        }
    }

    fn read32<O: Observer + ?Sized>(&mut self, offset: u64, obs: &mut O) -> u32 {
        let Some(r) = self.cfg.geometry.decode(offset) else {
            self.guest_error(obs, GuestErrorKind::UnassignedOffset, offset);
            return 0;
        };
        match r {
            RegRef::Config => self.config,
            RegRef::Param => self.cfg.geometry.param(),
            RegRef::Status => self.status,
            RegRef::ViErrMap(w) => (self.vi_err_map() >> (32 * w as u32)) as u32,
            RegRef::ViIntMask(w) => self.vi_int_mask[w as usize & 1],
            RegRef::CmdqErrMap(w) => (self.cmdq_err_map() >> (32 * w as u32)) as u32,
            RegRef::CmdqAllocMap(q) => self.queues[q as usize].alloc_map,
            RegRef::Vintf { vintf, reg } => self.vintf_read(vintf as usize, reg),
            RegRef::Vcmdq {
                aperture,
                slot,
                reg,
            } => match self.resolve(aperture, slot) {
                Some(q) => match reg {
                    VcmdqReg::Page0(r) => self.page0_read(q, r),
                    VcmdqReg::Page1(r) => self.page1_read(q, r),
                },
                None => {
                    self.guest_error(obs, GuestErrorKind::UnmappedSlot, offset);
                    0
                }
            },
        }
    }

    fn vintf_read(&self, v: usize, reg: VintfReg) -> u32 {
        let vintf = &self.vintfs[v];
        match reg {
            VintfReg::Config => vintf.config,
            VintfReg::Status => {
                let err = if self.lvcmdq_err_map(v) != 0 {
                    vintf_status::STATUS_VCMDQ_ERR
                } else {
                    0
                };
                let n = (vintf.num_lvcmdqs() as u32).min(vintf_status::VI_NUM_LVCMDQ_MASK);
                (vintf.config & vintf_config::ENABLE) | err | n << vintf_status::VI_NUM_LVCMDQ_SHIFT
            }
            VintfReg::GlbFiltCfg0 => vintf.glb_filt_cfg0,
            VintfReg::GlbFiltData0 => vintf.glb_filt_data0,
            VintfReg::SidMatch(s) => vintf.sid_match[s as usize],
            VintfReg::SidReplace(s) => vintf.sid_replace[s as usize],
            VintfReg::LvcmdqErrMap(w) => (self.lvcmdq_err_map(v) >> (32 * w as u32)) as u32,
        }
    }

    /// Global slot → itself; logical slot → the VCMDQ mapped there, if any.
    fn resolve(&self, aperture: Aperture, slot: u8) -> Option<usize> {
        match aperture {
            Aperture::Global => Some(slot as usize),
            Aperture::Vintf(i) => self.vintfs[i as usize]
                .lvcmdq(slot as usize)
                .map(usize::from),
        }
    }

    fn write32<M, S, O>(&mut self, offset: u64, v: u32, mem: &M, sink: &mut S, obs: &mut O)
    where
        M: GuestMemory + ?Sized,
        S: InvalidationSink + ?Sized,
        O: Observer + ?Sized,
    {
        let Some(r) = self.cfg.geometry.decode(offset) else {
            return self.guest_error(obs, GuestErrorKind::UnassignedOffset, offset);
        };
        if r.is_read_only() {
            return self.guest_error(obs, GuestErrorKind::ReadOnlyWrite, offset);
        }
        match r {
            RegRef::Config => {
                let was = self.enabled();
                self.config = v & regs::config::WRITABLE;
                // The handshake: STATUS follows CONFIG at once (Linux polls it, §10.6).
                self.status = self.config & regs::config::CMDQV_EN;
                if was != self.enabled() {
                    obs.event(ModelEvent::Enable {
                        target: EnableTarget::Cmdqv,
                        on: !was,
                    });
                    if !was {
                        self.consume_all(mem, sink, obs);
                    }
                }
            }
            RegRef::ViIntMask(w) => self.vi_int_mask[w as usize & 1] = v,
            RegRef::CmdqAllocMap(q) => self.alloc_map_write(q as usize, v, mem, sink, obs),
            RegRef::Vintf { vintf, reg } => {
                self.vintf_write(vintf as usize, reg, v, mem, sink, obs)
            }
            RegRef::Vcmdq {
                aperture,
                slot,
                reg,
            } => match self.resolve(aperture, slot) {
                Some(q) => match reg {
                    VcmdqReg::Page0(r) => self.page0_write(q, r, v, mem, sink, obs),
                    VcmdqReg::Page1(r) => self.page1_write(q, r, v),
                },
                None => self.guest_error(obs, GuestErrorKind::UnmappedSlot, offset),
            },
            // read-only registers were rejected above
            RegRef::Param | RegRef::Status | RegRef::ViErrMap(_) | RegRef::CmdqErrMap(_) => {}
        }
    }

    fn vintf_write<M, S, O>(
        &mut self,
        v: usize,
        reg: VintfReg,
        val: u32,
        mem: &M,
        sink: &mut S,
        obs: &mut O,
    ) where
        M: GuestMemory + ?Sized,
        S: InvalidationSink + ?Sized,
        O: Observer + ?Sized,
    {
        let vintf = &mut self.vintfs[v];
        match reg {
            VintfReg::Config => {
                let was = vintf.enabled();
                let mut c = val & vintf_config::WRITABLE;
                if self.cfg.personality == Personality::Guest {
                    c &= !vintf_config::HYP_OWN;
                }
                vintf.config = c;
                let now = vintf.enabled();
                if was != now {
                    obs.event(ModelEvent::Enable {
                        target: EnableTarget::Vintf(v as u8),
                        on: now,
                    });
                    let queues: Vec<u16> = vintf
                        .slots
                        .iter()
                        .copied()
                        .filter(|&q| q != NO_QUEUE)
                        .collect();
                    for q in queues {
                        if now {
                            self.try_consume(q as usize, mem, sink, obs);
                        } else {
                            // A disabled VINTF must not leave bits for the ISR to chase.
                            self.queues[q as usize].err_latched = false;
                        }
                    }
                }
            }
            VintfReg::GlbFiltCfg0 => vintf.glb_filt_cfg0 = val,
            VintfReg::GlbFiltData0 => vintf.glb_filt_data0 = val,
            VintfReg::SidMatch(s) => vintf.sid_match[s as usize] = val & regs::sid_match::WRITABLE,
            VintfReg::SidReplace(s) => {
                vintf.sid_replace[s as usize] = val & regs::sid_replace::PSID_MASK
            }
            VintfReg::Status | VintfReg::LvcmdqErrMap(_) => {}
        }
    }

    /// CMDQ_ALLOC_MAP(q) := v. Mapping takes effect through the VINTF's slot table; ordering-rule
    /// breaks (map ascending / unmap descending) are counted, not refused, because Linux's reset
    /// unmaps ascending (§10.6).
    fn alloc_map_write<M, S, O>(&mut self, q: usize, v: u32, mem: &M, sink: &mut S, obs: &mut O)
    where
        M: GuestMemory + ?Sized,
        S: InvalidationSink + ?Sized,
        O: Observer + ?Sized,
    {
        let v = v & alloc_map::WRITABLE;
        let old = self.mapping(q);
        let off = RegRef::CmdqAllocMap(q as u8).offset();
        self.queues[q].alloc_map = v;
        let new = (v & alloc_map::ALLOC != 0)
            .then(|| (alloc_map::vintf(v) as usize, alloc_map::lvcmdq(v) as usize));
        if let Some((ov, ol)) = old {
            if new == Some((ov as usize, ol as usize)) {
                return;
            }
            let (ov, ol) = (ov as usize, ol as usize);
            if self.vintfs[ov].lvcmdq(ol + 1).is_some() {
                self.guest_error(obs, GuestErrorKind::AllocOrder, off);
            }
            self.vintfs[ov].slots[ol] = NO_QUEUE;
            self.queues[q].err_latched = false;
            obs.event(ModelEvent::AllocMap {
                queue: q as u16,
                vintf: ov as u8,
                lvcmdq: ol as u8,
                alloc: false,
            });
        }
        let Some((vi, l)) = new else { return };
        if vi >= self.vintfs.len() {
            return self.guest_error(obs, GuestErrorKind::AllocOutOfRange, off);
        }
        if self.vintfs[vi].slots[l] != NO_QUEUE {
            return self.guest_error(obs, GuestErrorKind::AllocConflict, off);
        }
        if l > 0 && self.vintfs[vi].lvcmdq(l - 1).is_none() {
            self.guest_error(obs, GuestErrorKind::AllocOrder, off);
        }
        self.vintfs[vi].slots[l] = q as u16;
        obs.event(ModelEvent::AllocMap {
            queue: q as u16,
            vintf: vi as u8,
            lvcmdq: l as u8,
            alloc: true,
        });
        self.try_consume(q, mem, sink, obs);
    }

    // ---------------------------------------------------------------------------------------
    // The page0 / page1 seam

    /// Read a page0 register of global VCMDQ `q` (backend if attached).
    pub fn page0_read(&mut self, q: usize, reg: Page0Reg) -> u32 {
        let Some(vq) = self.queues.get_mut(q) else {
            return 0;
        };
        if let Some(b) = vq.backing.as_mut() {
            return b.read32(reg);
        }
        let p = &vq.page0;
        match reg {
            Page0Reg::ConsIndx => p.cons,
            Page0Reg::ProdIndx => p.prod,
            Page0Reg::Config => p.config,
            Page0Reg::Status => p.status,
            Page0Reg::Gerror => p.gerror,
            Page0Reg::Gerrorn => p.gerrorn,
        }
    }

    /// Write a page0 register of global VCMDQ `q` with its side effects (doorbell, enable
    /// handshake, error acknowledgement), or forward it to the backend if one is attached.
    pub fn page0_write<M, S, O>(
        &mut self,
        q: usize,
        reg: Page0Reg,
        v: u32,
        mem: &M,
        sink: &mut S,
        obs: &mut O,
    ) where
        M: GuestMemory + ?Sized,
        S: InvalidationSink + ?Sized,
        O: Observer + ?Sized,
    {
        let Some(vq) = self.queues.get_mut(q) else {
            return;
        };
        if let Some(b) = vq.backing.as_mut() {
            return b.write32(reg, v);
        }
        let p = &mut vq.page0;
        match reg {
            Page0Reg::ConsIndx => p.cons = v & cons_indx::WRITABLE,
            Page0Reg::ProdIndx => {
                p.prod = v & prod_indx::WR_MASK;
                obs.event(ModelEvent::Doorbell {
                    queue: q as u16,
                    prod: p.prod,
                    cons: p.cons,
                });
                self.try_consume(q, mem, sink, obs);
            }
            Page0Reg::Config => {
                let was = p.config & vcmdq_config::CMDQ_EN;
                p.config = v & vcmdq_config::CMDQ_EN;
                // The handshake: EN_OK follows CMDQ_EN.
                p.status = if p.config != 0 {
                    vcmdq_status::CMDQ_EN_OK
                } else {
                    0
                };
                if was != p.config {
                    let on = p.config != 0;
                    if !on {
                        vq.err_latched = false;
                    }
                    obs.event(ModelEvent::Enable {
                        target: EnableTarget::Vcmdq(q as u16),
                        on,
                    });
                    if on {
                        self.try_consume(q, mem, sink, obs);
                    }
                }
            }
            Page0Reg::Gerrorn => {
                let v = v & gerror::MASK;
                let toggled = p.gerrorn ^ v;
                let pending = p.gerror ^ p.gerrorn;
                p.gerrorn = v;
                let resolved = (p.gerror ^ p.gerrorn) & gerror::CMDQ_ERR == 0;
                if resolved && self.cfg.maps_clear_on_ack {
                    vq.err_latched = false;
                }
                obs.event(ModelEvent::ErrorAck {
                    queue: q as u16,
                    gerrorn: v,
                });
                if toggled & !pending != 0 {
                    let off = regs::GLOBAL_PAGE0
                        + regs::VCMDQ_STRIDE * q as u64
                        + regs::off::page0::GERRORN;
                    self.guest_error(obs, GuestErrorKind::SpuriousAck, off);
                }
                self.try_consume(q, mem, sink, obs);
            }
            Page0Reg::Status | Page0Reg::Gerror => {}
        }
    }

    fn page1_read(&self, q: usize, reg: Page1Reg) -> u32 {
        let p = &self.queues[q].page1;
        match reg {
            Page1Reg::BaseL => p.base as u32,
            Page1Reg::BaseH => (p.base >> 32) as u32,
            Page1Reg::ConsIndxBaseDramL => p.cons_dram as u32,
            Page1Reg::ConsIndxBaseDramH => (p.cons_dram >> 32) as u32,
        }
    }

    fn page1_write(&mut self, q: usize, reg: Page1Reg, v: u32) {
        let p = &mut self.queues[q].page1;
        let hi = ((v & regs::base::HIGH_WRITABLE) as u64) << 32;
        match reg {
            Page1Reg::BaseL => p.base = p.base & !0xffff_ffff | v as u64,
            Page1Reg::BaseH => p.base = p.base & 0xffff_ffff | hi,
            Page1Reg::ConsIndxBaseDramL => p.cons_dram = p.cons_dram & !0xffff_ffff | v as u64,
            Page1Reg::ConsIndxBaseDramH => p.cons_dram = p.cons_dram & 0xffff_ffff | hi,
        }
    }

    // ---------------------------------------------------------------------------------------
    // Consumption

    /// Run every live queue (after an enable, or after a backend was detached).
    pub fn consume_all<M, S, O>(&mut self, mem: &M, sink: &mut S, obs: &mut O)
    where
        M: GuestMemory + ?Sized,
        S: InvalidationSink + ?Sized,
        O: Observer + ?Sized,
    {
        for q in 0..self.queues.len() {
            self.try_consume(q, mem, sink, obs);
        }
    }

    /// Run VCMDQ `q` if it is live; raise the error protocol's maps and interrupt on a fault.
    pub fn try_consume<M, S, O>(
        &mut self,
        q: usize,
        mem: &M,
        sink: &mut S,
        obs: &mut O,
    ) -> engine::Outcome
    where
        M: GuestMemory + ?Sized,
        S: InvalidationSink + ?Sized,
        O: Observer + ?Sized,
    {
        if !self.queue_live(q) {
            return engine::Outcome::default();
        }
        let Some((vi, _)) = self.mapping(q) else {
            return engine::Outcome::default();
        };
        let vintf = &self.vintfs[vi as usize];
        let hyp = self.cfg.personality == Personality::Host && vintf.hyp_own();
        let kind = if hyp {
            QueueKind::VcmdqHyp
        } else {
            QueueKind::VcmdqGuest {
                vmid: vintf.vmid(),
                sid_match: &vintf.sid_match,
                sid_replace: &vintf.sid_replace,
            }
        };
        let ctx = ExecCtx {
            queue: q as u16,
            kind,
            opts: &self.cfg.engine,
        };
        let vq = &mut self.queues[q];
        let ring = vq.ring();
        let p = &mut vq.page0;
        let mut r = QueueRegs {
            prod: p.prod,
            cons: p.cons,
            gerror: p.gerror,
            gerrorn: p.gerrorn,
        };
        let out = engine::consume(&ctx, ring, &mut r, mem, sink, obs);
        p.cons = r.cons;
        p.gerror = r.gerror;
        self.stats.commands += out.consumed as u64;
        if out.raised {
            vq.err_latched = true;
            self.stats.queue_errors += 1;
            self.pulse_error_irq(vi as usize, obs);
        }
        out
    }
}

/// One fuzzing run over arbitrary bytes (the `cargo fuzz` target `mmio` calls this; unit tests
/// smoke it): the first byte picks geometry, personality and options, the next 4 KiB become
/// guest RAM (256 commands), the rest is a sequence of 11-byte MMIO operations
/// `[flags, offset: u16 LE, value: u64 LE]` aimed at the register ranges (flags also pick the
/// size, direction and high offset bits). Returns the number of operations run. Panics only if
/// a model invariant breaks.
pub fn fuzz_mmio(data: &[u8]) -> usize {
    use crate::engine::NullSink;
    use crate::mem::VecMemory;
    let Some((&sel, rest)) = data.split_first() else {
        return 0;
    };
    let mut m = Cmdqv::new(fuzz_config(sel));
    let (ram_bytes, ops) = rest.split_at(rest.len().min(4096));
    let mut mem = VecMemory::new(FUZZ_RAM, 4096);
    mem.bytes[..ram_bytes.len()].copy_from_slice(ram_bytes);
    let mut n = 0;
    for op in ops.chunks_exact(11) {
        match FuzzOp::decode(op) {
            FuzzOp::Read { offset, size } => {
                m.read(offset, size, &mut ());
            }
            FuzzOp::Write {
                offset,
                size,
                value,
            } => m.write(offset, size, value, &mem, &mut NullSink, &mut ()),
        }
        n += 1;
        check_invariants(&m);
    }
    n
}

const FUZZ_RAM: u64 = 0x4000_0000;

/// The model configuration a fuzz input's first byte selects.
fn fuzz_config(sel: u8) -> ModelConfig {
    let geometry = match sel & 3 {
        0 => Geometry::guest(),
        1 => Geometry {
            num_vintf_log2: 1,
            num_vcmdq_log2: 2,
            num_sid_per_vintf_log2: 4,
        },
        _ => Geometry::host(),
    };
    fn pick<T>(sel: u8, bit: u8, on: T, off: T) -> T {
        if sel & bit != 0 { on } else { off }
    }
    ModelConfig {
        geometry,
        personality: pick(sel, 4, Personality::Host, Personality::Guest),
        reset: pick(sel, 8, ResetValues::Disabled, ResetValues::Qemu),
        access64: pick(sel, 16, Access64::QemuCompat, Access64::Split),
        maps_clear_on_ack: sel & 32 == 0,
        ..ModelConfig::guest()
    }
}

/// One 11-byte fuzz operation.
enum FuzzOp {
    Read { offset: u64, size: u8 },
    Write { offset: u64, size: u8, value: u64 },
}

impl FuzzOp {
    fn decode(op: &[u8]) -> Self {
        let flags = op[0];
        let low = u16::from_le_bytes([op[1], op[2]]) as u64;
        let value = u64::from_le_bytes(op[3..11].try_into().expect("8 bytes"));
        // Pages: config, global p0/p1, VINTF0..3 p0/p1 (rest of the host region rarely matters).
        let page = (flags >> 4) as u64 % 11;
        let offset = page * 0x10000 + low;
        let size = [4u8, 8, 4, 1, 4, 8, 2, 4][(flags & 7) as usize];
        // Ring bases tend to land in RAM when the value's high bits say so.
        let value = if flags & 8 != 0 && value >> 63 == 1 {
            FUZZ_RAM | (value & 0xfe0) | (value >> 8 & 0x1f)
        } else {
            value
        };
        if flags & 8 != 0 && value & 1 == 0 && size != 1 {
            FuzzOp::Read { offset, size }
        } else {
            FuzzOp::Write {
                offset,
                size,
                value,
            }
        }
    }
}

/// Invariants cheap enough to check after every fuzz step.
fn check_invariants(m: &Cmdqv) {
    for q in 0..m.geometry().num_vcmdqs() {
        let p = m.page0_state(q).expect("queue exists");
        assert!(p.prod <= crate::regs::prod_indx::WR_MASK);
        assert_eq!(p.status, p.config);
        if let Some((v, l)) = m.mapping(q) {
            assert_eq!(
                m.vintf(v as usize).and_then(|vi| vi.lvcmdq(l as usize)),
                Some(q as u16)
            );
        }
    }
    let map = m.cmdq_err_map();
    for q in 0..m.geometry().num_vcmdqs() {
        if map >> q & 1 == 1 {
            assert!(m.mapping(q).is_some(), "error bit for unmapped VCMDQ{q}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::Command;
    use crate::engine::{CountingSink, NullSink};
    use crate::mem::VecMemory;
    use crate::regs::Cerror;

    const RAM: u64 = 0x4000_0000;
    const LV0: u64 = 0x30000; // VINTF0 LVCMDQ0 page0
    const LV0P1: u64 = 0x40000;

    struct Rig {
        m: Cmdqv,
        mem: VecMemory,
        sink: CountingSink,
        ev: Vec<ModelEvent>,
    }

    impl Rig {
        fn new(cfg: ModelConfig) -> Self {
            Self {
                m: Cmdqv::new(cfg),
                mem: VecMemory::new(RAM, 0x10_0000),
                sink: CountingSink::default(),
                ev: vec![],
            }
        }
        fn w(&mut self, off: u64, v: u64) {
            self.m
                .write(off, 4, v, &self.mem, &mut self.sink, &mut self.ev);
        }
        fn wq(&mut self, off: u64, v: u64) {
            self.m
                .write(off, 8, v, &self.mem, &mut self.sink, &mut self.ev);
        }
        fn r(&mut self, off: u64) -> u32 {
            self.m.read(off, 4, &mut self.ev) as u32
        }
        /// Linux's bring-up of VINTF0 with `n` LVCMDQs, rings of 2^log2 at RAM + 0x1000·l.
        fn bring_up(&mut self, hyp_own: bool, n: u64, log2: u64) {
            self.w(0x0, 0);
            assert_eq!(self.r(0x8), 0);
            self.w(0x0, 1);
            assert_eq!(self.r(0x8), 1);
            self.w(0x1000, (hyp_own as u64) << 17 | 5 << 1);
            self.w(0x1000, (hyp_own as u64) << 17 | 5 << 1 | 1);
            assert_eq!(self.r(0x1004) & 1, 1);
            for l in 0..n {
                self.w(0x200 + 4 * l, alloc_map::encode(0, l as u32, true) as u64);
                self.wq(LV0P1 + 0x80 * l, (RAM + 0x1000 * l) | log2);
                self.w(LV0 + 0x80 * l + 8, 1);
                assert_eq!(self.r(LV0 + 0x80 * l + 0xc), 1);
            }
        }
        fn put(&mut self, l: u64, idx: u64, c: Command) {
            self.mem
                .write_cmd(RAM + 0x1000 * l + 16 * idx, c.encode())
                .unwrap();
        }
    }

    #[test]
    fn reset_values_are_a_named_choice() {
        let mut r = Rig::new(ModelConfig::guest());
        assert_eq!(r.r(0x0), 0x0002_0083);
        assert_eq!(r.r(0x4), 0x4011);
        assert_eq!(r.r(0x8), 1);
        let mut r = Rig::new(ModelConfig {
            reset: ResetValues::Disabled,
            ..ModelConfig::guest()
        });
        assert_eq!(r.r(0x0), 0);
        assert_eq!(r.r(0x8), 0);
        let mut h = Rig::new(ModelConfig::host());
        assert_eq!(h.r(0x4), 0x4671);
        assert_eq!(h.m.mmio_size(), 0x83_0000);
    }

    #[test]
    fn status_follows_config_for_every_handshake() {
        let mut r = Rig::new(ModelConfig::guest());
        r.w(0x0, 0);
        assert_eq!(r.r(0x8), 0);
        r.w(0x0, 0x0002_0083);
        assert_eq!(r.r(0x8), 1);
        r.w(0x1000, 1);
        assert_eq!(r.r(0x1004) & 1, 1);
        r.w(0x1000, 0);
        assert_eq!(r.r(0x1004) & 1, 0);
        r.w(0x10008, 1); // global aperture, unmapped queue still handshakes
        assert_eq!(r.r(0x1000c), 1);
        r.w(0x10008, 0);
        assert_eq!(r.r(0x1000c), 0);
        assert!(r.ev.contains(&ModelEvent::Enable {
            target: EnableTarget::Cmdqv,
            on: true
        }));
        assert!(r.ev.contains(&ModelEvent::Enable {
            target: EnableTarget::Vintf(0),
            on: false
        }));
        assert!(r.ev.contains(&ModelEvent::Enable {
            target: EnableTarget::Vcmdq(0),
            on: true
        }));
    }

    #[test]
    fn hyp_own_is_masked_for_the_guest_personality_only() {
        let mut g = Rig::new(ModelConfig::guest());
        g.w(0x1000, 1 << 17 | 3 << 1);
        assert_eq!(g.r(0x1000), 3 << 1);
        let mut h = Rig::new(ModelConfig::host());
        h.w(0x1000, 1 << 17 | 3 << 1);
        assert_eq!(h.r(0x1000), 1 << 17 | 3 << 1);
    }

    #[test]
    fn global_and_logical_views_are_one_state() {
        let mut r = Rig::new(ModelConfig::host());
        r.w(0x0, 1);
        // global VCMDQ 5 → VINTF2 LVCMDQ0
        r.w(0x200 + 4 * 5, alloc_map::encode(2, 0, true) as u64);
        let lv = 0x30000 + 0x20000 * 2;
        r.w(lv + 4, 0x33);
        assert_eq!(r.r(0x10000 + 0x80 * 5 + 4), 0x33);
        r.w(0x20000 + 0x80 * 5, 0xdead_bee3);
        assert_eq!(r.r(lv + 0x10000), 0xdead_bee3);
        assert_eq!(r.m.mapping(5), Some((2, 0)));
        assert_eq!(r.r(0x1000 + 0x100 * 2 + 4) >> 16, 1); // VI_NUM_LVCMDQ
        // unmap: the logical slot reads 0 and drops writes, the global view keeps the state
        r.w(0x200 + 4 * 5, alloc_map::encode(2, 0, false) as u64);
        assert_eq!(r.r(lv + 4), 0);
        r.w(lv + 4, 0x44);
        assert_eq!(r.r(0x10000 + 0x80 * 5 + 4), 0x33);
        assert_eq!(r.m.stats.guest_error(GuestErrorKind::UnmappedSlot), 2);
    }

    #[test]
    fn alloc_map_ordering_is_counted_not_refused() {
        let mut r = Rig::new(ModelConfig::host());
        r.w(0x200 + 4, alloc_map::encode(0, 1, true) as u64); // lidx1 before lidx0
        assert_eq!(r.m.stats.guest_error(GuestErrorKind::AllocOrder), 1);
        assert_eq!(r.m.mapping(1), Some((0, 1)));
        r.w(0x200, alloc_map::encode(0, 0, true) as u64);
        assert_eq!(r.m.stats.guest_error(GuestErrorKind::AllocOrder), 1);
        // reset-style ascending unmap: q0 while lidx1 still mapped
        r.w(0x200, alloc_map::encode(0, 0, false) as u64);
        assert_eq!(r.m.stats.guest_error(GuestErrorKind::AllocOrder), 2);
        assert_eq!(r.m.mapping(0), None);
        // conflict: q2 wants lidx1 which q1 holds
        r.w(0x208, alloc_map::encode(0, 1, true) as u64);
        assert_eq!(r.m.stats.guest_error(GuestErrorKind::AllocConflict), 1);
        assert_eq!(r.m.mapping(2), None);
        assert_eq!(r.m.vintf(0).unwrap().lvcmdq(1), Some(1));
        // guest geometry: VINTF1 does not exist
        let mut g = Rig::new(ModelConfig::guest());
        g.w(0x200, alloc_map::encode(1, 0, true) as u64);
        assert_eq!(g.m.stats.guest_error(GuestErrorKind::AllocOutOfRange), 1);
    }

    #[test]
    fn doorbell_consumes_and_errors_follow_the_protocol() {
        let mut r = Rig::new(ModelConfig::guest());
        r.bring_up(false, 2, 4);
        r.put(1, 0, Command::tlbi_nh_va(0, 1, 0x1000, true));
        r.put(1, 1, Command::sync_none());
        r.put(
            1,
            2,
            Command::CfgiSte {
                sid: 0,
                ssec: false,
                leaf: false,
            },
        ); // not allowed for a guest
        r.put(1, 3, Command::sync_none());
        r.w(LV0 + 0x80 + 4, 4);
        assert_eq!(r.r(LV0 + 0x80), 2 | 1 << 24);
        assert_eq!(r.r(LV0 + 0x80 + 0x10), 1); // GERROR toggled
        assert_eq!(r.r(0x14), 1); // VI_ERR_MAP
        assert_eq!(r.r(0x10c0), 0b10); // LVCMDQ_ERR_MAP
        assert_eq!(r.r(0x24), 0b10); // CMDQ_ERR_MAP
        assert_eq!(r.r(0x1004) & 0xe, vintf_status::STATUS_VCMDQ_ERR);
        assert_eq!(r.m.stats.irq_pulses, 1);
        // another doorbell while the error is pending: nothing moves, no second interrupt
        r.w(LV0 + 0x80 + 4, 4);
        assert_eq!(r.r(LV0 + 0x80) & 0xfffff, 2);
        assert_eq!(r.m.stats.irq_pulses, 1);
        // Linux recovery: overwrite with CMD_SYNC, GERRORN := GERROR
        r.put(1, 2, Command::sync_none());
        let g = r.r(LV0 + 0x80 + 0x10) as u64;
        r.w(LV0 + 0x80 + 0x14, g);
        assert_eq!(r.r(LV0 + 0x80) & 0xfffff, 4);
        assert_eq!(r.r(0x14), 0);
        assert_eq!(r.r(0x10c0), 0);
        assert_eq!(r.sink.tlb, 1);
        assert_eq!(r.sink.sync, 3);
        assert_eq!(r.m.stats.commands, 4);
    }

    #[test]
    fn sticky_maps_option_keeps_bits_until_unmap() {
        let mut r = Rig::new(ModelConfig {
            maps_clear_on_ack: false,
            ..ModelConfig::guest()
        });
        r.bring_up(false, 1, 4);
        r.put(0, 0, Command::decode(0x07, 0));
        r.w(LV0 + 4, 1);
        r.w(LV0 + 0x14, 1);
        assert_eq!(r.r(0x10c0), 1);
        r.w(LV0 + 8, 0); // queue disabled: no bit for a disabled queue
        assert_eq!(r.r(0x10c0), 0);
        assert_eq!(r.r(0x14), 0);
    }

    #[test]
    fn masked_vintf_counts_instead_of_pulsing() {
        let mut r = Rig::new(ModelConfig::guest());
        r.bring_up(false, 1, 4);
        r.w(0x1c, 1);
        r.put(0, 0, Command::decode(0x07, 0));
        r.w(LV0 + 4, 1);
        assert_eq!(r.m.stats.irq_pulses, 0);
        assert_eq!(r.m.stats.irq_masked, 1);
        assert!(!r.ev.contains(&ModelEvent::Irq {
            line: IrqLine::CmdqvError
        }));
    }

    #[test]
    fn consumption_needs_every_enable_and_resumes_on_enable() {
        let mut r = Rig::new(ModelConfig::guest());
        r.bring_up(false, 1, 4);
        r.put(0, 0, Command::sync_none());
        r.w(0x1000, 5 << 1); // VINTF off
        r.w(LV0 + 4, 1);
        assert_eq!(r.m.page0_state(0).unwrap().cons, 0);
        r.w(0x1000, 5 << 1 | 1); // VINTF on: consumption runs
        assert_eq!(r.m.page0_state(0).unwrap().cons, 1);
        r.put(0, 1, Command::sync_none());
        r.w(0x0, 0);
        r.w(LV0 + 4, 2);
        assert_eq!(r.m.page0_state(0).unwrap().cons, 1);
        r.w(0x0, 1);
        assert_eq!(r.m.page0_state(0).unwrap().cons, 2);
    }

    #[test]
    fn host_hyp_owned_vintf_executes_everything() {
        let mut r = Rig::new(ModelConfig::host());
        r.bring_up(true, 1, 4);
        r.put(
            0,
            0,
            Command::CfgiSte {
                sid: 1,
                ssec: false,
                leaf: true,
            },
        );
        r.put(0, 1, Command::TlbiNsnhAll);
        r.put(0, 2, Command::sync_none());
        r.w(LV0 + 4, 3);
        assert_eq!(r.r(LV0), 3);
        assert_eq!(r.sink.cfg, 1);
    }

    #[test]
    fn host_user_vintfs_without_hyp_own_get_the_guest_filter() {
        let mut r = Rig::new(ModelConfig::host());
        r.bring_up(false, 1, 4); // a user VINTF as iommufd's VIOMMU_ALLOC programs it
        r.put(0, 0, Command::tlbi_nh_va(0, 1, 0x1000, true));
        r.put(0, 1, Command::TlbiNsnhAll);
        r.w(LV0 + 4, 2);
        assert_eq!(r.r(LV0), 1 | (Cerror::Ill as u32) << 24);
    }

    #[test]
    fn every_new_error_is_a_new_edge() {
        let mut r = Rig::new(ModelConfig::guest());
        r.bring_up(false, 1, 4);
        r.put(0, 0, Command::decode(0x07, 0));
        r.put(0, 1, Command::decode(0x00, 0));
        r.w(LV0 + 4, 2);
        assert_eq!(r.m.stats.irq_pulses, 1);
        r.w(LV0 + 0x14, 1); // ack without fixing: the same entry faults again
        assert_eq!(r.m.stats.irq_pulses, 2);
        assert_eq!(r.r(LV0 + 0x10), 0);
        r.put(0, 0, Command::sync_none());
        r.w(LV0 + 0x14, 0); // fixed: runs into the next illegal entry
        assert_eq!(r.r(LV0), 1 | 1 << 24);
        assert_eq!(r.m.stats.irq_pulses, 3);
        let irqs =
            r.ev.iter()
                .filter(|e| matches!(e, ModelEvent::Irq { .. }))
                .count();
        assert_eq!(irqs, 3);
    }

    #[test]
    fn guest_atc_inv_is_translated_through_the_sid_table() {
        let mut r = Rig::new(ModelConfig::guest());
        r.bring_up(false, 1, 4);
        r.w(0x1080, 0x777); // SID_REPLACE(0)
        r.w(0x1040, 0x12 << 1 | 1); // SID_MATCH(0)
        r.put(
            0,
            0,
            Command::AtcInv {
                sid: 0x12,
                ssid: 0,
                ssv: false,
                global: false,
                size: 0,
                addr: 0x1000,
            },
        );
        r.put(
            0,
            1,
            Command::AtcInv {
                sid: 0x13,
                ssid: 0,
                ssv: false,
                global: false,
                size: 0,
                addr: 0x1000,
            },
        );
        let mut log: Vec<(u16, engine::Invalidation)> = Vec::new();
        r.m.write(LV0 + 4, 4, 2, &r.mem, &mut log, &mut ());
        assert!(matches!(
            log[0].1,
            engine::Invalidation::Atc { sid: 0x777, .. }
        ));
        assert_eq!(r.r(LV0), 1 | (Cerror::Ill as u32) << 24);
    }

    #[test]
    fn access_sizes_and_8_byte_policies() {
        let mut r = Rig::new(ModelConfig::guest());
        assert_eq!(r.m.read(0x0, 2, &mut ()), 0);
        assert_eq!(r.m.read(0x2, 4, &mut ()), 0);
        assert_eq!(r.m.read(0x4, 8, &mut ()), 0); // unaligned 8-byte
        r.m.write(0x0, 1, 0, &r.mem, &mut NullSink, &mut ());
        assert_eq!(r.m.stats.guest_error(GuestErrorKind::BadAccessSize), 2);
        assert_eq!(r.m.stats.guest_error(GuestErrorKind::UnalignedAccess), 2);
        assert_eq!(r.r(0x0), 0x0002_0083); // the 1-byte write was dropped
        // split: readq at 0x0 = CONFIG | PARAM << 32
        assert_eq!(r.m.read(0x0, 8, &mut ()), 0x0000_4011_0002_0083);
        r.wq(0x20000, 0x1234_4000_0004);
        assert_eq!(r.m.page1_state(0).unwrap().base, 0x1234_4000_0004);
        let mut q = Rig::new(ModelConfig {
            access64: Access64::QemuCompat,
            ..ModelConfig::guest()
        });
        assert_eq!(q.m.read(0x0, 8, &mut ()), 0x0002_0083);
        q.wq(0x20000, 0x1234_4000_0004);
        assert_eq!(q.m.read(0x20000, 8, &mut ()), 0x1234_4000_0004);
        q.wq(0x10000, 0x5_0000_0003);
        assert_eq!(q.r(0x10000), 0);
        assert_eq!(q.m.stats.guest_error(GuestErrorKind::Ignored64BitAccess), 1);
    }

    #[test]
    fn read_only_and_unassigned_writes_are_counted() {
        let mut r = Rig::new(ModelConfig::guest());
        r.w(0x4, 0);
        r.w(0x14, 1);
        r.w(0x1004, 1);
        r.w(0x1000c, 1);
        r.w(0xc, 1);
        r.w(0x60000, 1);
        assert_eq!(r.r(0x4), 0x4011);
        assert_eq!(r.m.stats.guest_error(GuestErrorKind::ReadOnlyWrite), 4);
        assert_eq!(r.m.stats.guest_error(GuestErrorKind::UnassignedOffset), 2);
    }

    #[test]
    fn host_errors_raise_maps_only_for_mapped_enabled_queues() {
        let mut r = Rig::new(ModelConfig::guest());
        r.bring_up(false, 2, 4);
        r.w(LV0 + 0x80 + 8, 0); // LVCMDQ1 disabled; LVCMDQ5 was never mapped
        let mut ev = Vec::new();
        // No error pending on LVCMDQ0 yet: a stale event raises nothing.
        assert_eq!(r.m.raise_host_error(0, 0b1, &mut ev), 0);
        let mut st = r.m.page0_state(0).unwrap();
        st.gerror ^= 1;
        r.m.set_page0_state(0, st);
        assert_eq!(r.m.raise_host_error(0, 0b10_0011, &mut ev), 0b1);
        assert_eq!(r.r(0x10c0), 0b1); // LVCMDQ_ERR_MAP
        assert_eq!(r.r(0x14), 1); // VI_ERR_MAP
        assert_eq!(r.r(0x24), 1); // CMDQ_ERR_MAP
        assert_eq!(r.m.stats.irq_pulses, 1);
        assert!(ev.contains(&ModelEvent::Irq {
            line: IrqLine::CmdqvError
        }));
        // Only stray bits: nothing raised, no interrupt.
        assert_eq!(r.m.raise_host_error(0, 0b10_0010, &mut ev), 0);
        assert_eq!(r.m.raise_host_error(7, 1, &mut ev), 0);
        assert_eq!(r.m.stats.irq_pulses, 1);
        // Masked VINTF: counted, not pulsed.
        r.w(0x1c, 1);
        assert_eq!(r.m.raise_host_error(0, 1, &mut ev), 1);
        assert_eq!((r.m.stats.irq_pulses, r.m.stats.irq_masked), (1, 1));
        // The guest's acknowledgement (GERRORN := GERROR) clears the bit; a late event for the
        // acknowledged error raises nothing.
        let g = r.r(LV0 + 0x10) as u64;
        r.w(LV0 + 0x14, g);
        assert_eq!(r.r(0x10c0), 0);
        assert_eq!(r.m.raise_host_error(0, 1, &mut ev), 0);
        // A disabled VINTF takes nothing.
        r.w(0x1000, 5 << 1);
        assert_eq!(r.m.raise_host_error(0, 1, &mut ev), 0);
    }

    struct Fake(Vec<(Page0Reg, u32)>);
    impl Page0Backend for Fake {
        fn read32(&self, reg: Page0Reg) -> u32 {
            0x100 + reg.offset() as u32
        }
        fn write32(&mut self, reg: Page0Reg, value: u32) {
            self.0.push((reg, value));
        }
    }

    /// Every register of the guest geometry, written with all ones on a fresh device, reads
    /// back exactly its documented writable bits (read-only ones keep their value).
    #[test]
    fn every_register_reads_back_its_write_mask() {
        let g = Geometry::guest();
        let mut seen = 0;
        for off in (0..g.mmio_size()).step_by(4) {
            let Some(reg) = g.decode(off) else { continue };
            let mut r = Rig::new(ModelConfig::guest());
            r.w(off, 0xffff_ffff);
            let want = match reg {
                RegRef::Config => regs::config::WRITABLE,
                RegRef::Param => 0x4011,
                RegRef::Status => 1,
                RegRef::ViErrMap(_) | RegRef::CmdqErrMap(_) => 0,
                RegRef::ViIntMask(_) => 0xffff_ffff,
                RegRef::CmdqAllocMap(_) => alloc_map::WRITABLE,
                RegRef::Vintf { reg, .. } => match reg {
                    VintfReg::Config => vintf_config::WRITABLE & !vintf_config::HYP_OWN,
                    VintfReg::Status => 0,
                    VintfReg::GlbFiltCfg0 | VintfReg::GlbFiltData0 => 0xffff_ffff,
                    VintfReg::SidMatch(_) => regs::sid_match::WRITABLE,
                    VintfReg::SidReplace(_) => regs::sid_replace::PSID_MASK,
                    VintfReg::LvcmdqErrMap(_) => 0,
                },
                // Nothing is mapped on a fresh device: logical slots read 0.
                RegRef::Vcmdq {
                    aperture: Aperture::Vintf(_),
                    ..
                } => 0,
                RegRef::Vcmdq {
                    reg: VcmdqReg::Page0(p),
                    ..
                } => match p {
                    Page0Reg::ConsIndx => cons_indx::WRITABLE,
                    Page0Reg::ProdIndx => prod_indx::WR_MASK,
                    Page0Reg::Config => vcmdq_config::CMDQ_EN,
                    Page0Reg::Status | Page0Reg::Gerror => 0,
                    Page0Reg::Gerrorn => gerror::MASK,
                },
                RegRef::Vcmdq {
                    reg: VcmdqReg::Page1(p),
                    ..
                } => match p {
                    Page1Reg::BaseL | Page1Reg::ConsIndxBaseDramL => 0xffff_ffff,
                    Page1Reg::BaseH | Page1Reg::ConsIndxBaseDramH => regs::base::HIGH_WRITABLE,
                },
            };
            assert_eq!(r.r(off), want, "{reg} at {off:#x}");
            seen += 1;
        }
        // 11 globals + 2 ALLOC_MAPs + VINTF0 (4 + 16 + 16 + 4) + 2·10 global + 128·10 logical
        assert_eq!(seen, 11 + 2 + 40 + 20 + 1280);
    }

    #[test]
    fn a_dyn_observer_works_and_the_device_is_send() {
        fn is_send<T: Send>() {}
        is_send::<Cmdqv>();
        let mut m = Cmdqv::new(ModelConfig::guest());
        let mut log: Vec<ModelEvent> = Vec::new();
        let obs: &mut dyn Observer = &mut log;
        m.read(0x4, 4, obs);
        m.write(0x0, 4, 0, &crate::mem::NoMemory, &mut NullSink, obs);
        assert_eq!(log.len(), 3); // read, write, CMDQV disable
        assert!(matches!(
            log[0],
            ModelEvent::Mmio {
                offset: 4,
                value: 0x4011,
                write: false,
                ..
            }
        ));
    }

    #[test]
    fn fuzz_entry_point_survives_pseudo_random_input() {
        // A tiny xorshift keeps this deterministic without a dependency.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut ran = 0;
        for len in [0usize, 1, 100, 4097, 6000, 20000] {
            for _ in 0..20 {
                let data: Vec<u8> = (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        x as u8
                    })
                    .collect();
                ran += fuzz_mmio(&data);
            }
        }
        assert!(ran > 20 * 1000);
    }

    #[test]
    fn a_backed_queue_forwards_page0_and_is_not_consumed() {
        let mut r = Rig::new(ModelConfig::guest());
        r.bring_up(false, 1, 4);
        r.put(0, 0, Command::sync_none());
        assert!(r.m.set_backing(0, Some(Box::new(Fake(vec![])))).is_none());
        r.w(LV0 + 4, 1);
        assert_eq!(r.r(LV0 + 0x10), 0x110);
        assert_eq!(r.r(0x10000 + 0x10), 0x110); // global view too
        assert_eq!(r.m.page0_state(0).unwrap().prod, 0);
        assert_eq!(r.sink.total(), 0);
        assert!(r.m.set_backing(0, None).is_some());
        r.m.set_page0_state(
            0,
            Page0State {
                prod: 1,
                config: 1,
                status: 1,
                ..Default::default()
            },
        );
        r.m.consume_all(&r.mem, &mut r.sink, &mut ());
        assert_eq!(r.m.page0_state(0).unwrap().cons, 1);
    }
}
