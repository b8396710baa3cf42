//! The passthrough state machine: which of a guest VINTF's LVCMDQs a VMM backs with host
//! hardware queues, and how each queue's state is carried between the model's cache and the
//! hardware page. It talks to the host only through [`HostBackend`], so the same machine drives
//! the simulated host and real iommufd.
//!
//! The flow (QEMU's final form, §12.2–§12.3, with the differences named below):
//!
//! 1. [`Passthrough::attach`]: GET_HW_INFO (version 1, ≥ 2 LVCMDQs, ≥ 16 SIDs), VIOMMU_ALLOC,
//!    VEVENTQ_ALLOC. Any failure leaves every queue emulated, reported once.
//! 2. The guest enables the VINTF: the VINTF page0 is mapped ([`HostBackend::map_page0`]).
//! 3. [`Passthrough::sync`] after every trapped write: an LVCMDQ whose prerequisites all hold
//!    (BASE ≠ 0, ALLOC, CMDQV enabled, VINTF enabled) and that the [`HwPolicy`] allows gets a
//!    hardware queue (ascending, as the kernel requires). The cached CONS, PROD, GERRORN (as the
//!    *pending-ness* of the error, since GERROR is hardware-owned and starts at 0) and then
//!    CONFIG go into the hardware page; from then on both the global aperture (through the
//!    model's [`Page0Backend`]) and the logical page0 ([`DirectPath`]) reach the hardware page.
//! 4. When a prerequisite goes away, or BASE / ALLOC_MAP change under a backed queue, the queue
//!    comes back (descending: higher backed queues first): CONFIG.EN := 0 in hardware, wait for
//!    STATUS to follow (the hardware has finished its current pass), read CONS, PROD, GERROR,
//!    GERRORN back into the cache with the guest's CONFIG, destroy the hardware queue. The model
//!    then consumes whatever was still pending. Unlike QEMU, which zeroes the cache on free, the
//!    state is carried back, so a move is invisible to the guest.
//! 5. [`Passthrough::poll_events`]: every vEVENT's LVCMDQ_ERR_MAP goes into the model with
//!    [`Cmdqv::raise_host_error`] (maps + interrupt, VI_INT_MASK respected).
//!
//! A failed HW_QUEUE_ALLOC leaves the queue fully emulated and working (the model consumes it)
//! and is reported as [`PassEvent::HwAllocFailed`] with the errno; it is retried only when one of
//! its prerequisites changes. QEMU instead sets GERROR.CMDQ_INIT_ERR and leaves a guest waiting
//! on an unbacked queue nobody consumes (§12.5 item 4).

use std::{
    sync::{Arc, Mutex, OnceLock},
    time::{Duration, Instant},
};

use super::{HostBackend, HostError, Page0, VEvent, VintfAlloc, page0};
use crate::{
    engine::{InvalidationSink, Observer},
    mem::GuestMemory,
    model::{Cmdqv, Page0Backend, Page0State},
    regs::{self, Page0Reg, gerror, vcmdq_config, vcmdq_status},
};

/// When the VMM asks the host for a hardware queue.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub enum HwPolicy {
    /// Never: every VCMDQ stays fully emulated by the model.
    Never,
    /// As soon as BASE, ALLOC, CMDQV_EN and VINTF_EN all hold (QEMU's gate). Default.
    #[default]
    WhenReady,
}

/// Named choices of the passthrough layer.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct PassthroughOptions {
    pub policy: HwPolicy,
    /// iommufd ids of the passthrough device and its nesting-parent HWPT.
    pub dev_id: u32,
    pub hwpt_id: u32,
    /// vEVENT queue depth (QEMU: 2^19).
    pub veventq_depth: u32,
    /// How long to wait for STATUS to follow CONFIG in hardware during a move.
    pub status_timeout: Duration,
}

impl Default for PassthroughOptions {
    fn default() -> Self {
        Self {
            policy: HwPolicy::WhenReady,
            dev_id: 1,
            hwpt_id: 2,
            veventq_depth: 1 << 19,
            status_timeout: Duration::from_secs(1),
        }
    }
}

/// What the state machine did (the VMM reports these as trace events).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PassEvent {
    /// The host refused passthrough; every queue stays emulated.
    AttachFailed { error: String },
    /// The VINTF page0 could not be mapped; every queue stays emulated.
    MapFailed { error: String },
    /// Global VCMDQ `q` (LVCMDQ `lidx`) is now hardware-backed.
    HwAlloc { q: u16, lidx: u8, log2size: u8 },
    /// HW_QUEUE_ALLOC failed: the queue keeps working fully emulated.
    HwAllocFailed {
        q: u16,
        lidx: u8,
        log2size: u8,
        errno: i32,
        error: String,
    },
    /// The queue came back into the cache (`destroy_error` if the host refused the destroy).
    HwFree {
        q: u16,
        lidx: u8,
        destroy_error: Option<String>,
    },
    /// Hardware STATUS did not follow CONFIG within the timeout during a move.
    StatusTimeout { q: u16, lidx: u8 },
    /// A vEVENT's LVCMDQ_ERR_MAP and the bits the model accepted.
    HostError { map: u128, accepted: u128 },
    /// The vEVENT queue overflowed before `sequence`.
    EventsLost { sequence: u32 },
}

/// Counters.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct PassStats {
    pub allocs: u64,
    pub alloc_failures: u64,
    pub frees: u64,
    pub status_timeouts: u64,
    pub vevents: u64,
    pub vevents_lost: u64,
    /// vEVENTs missing between consecutive sequence numbers (lost without a marker we saw).
    pub sequence_gaps: u64,
}

/// The VINTF page0 as the guest reaches it without trapping: per LVCMDQ, the hardware page when
/// that LVCMDQ is hardware-backed, nothing (the access traps to the model) otherwise. Each slot
/// has a lock that a move holds, so a guest access lands entirely before or after it.
pub struct DirectPath {
    page: OnceLock<Arc<Page0>>,
    backed: Vec<Mutex<bool>>,
}

impl DirectPath {
    fn new(lvcmdqs: usize) -> Self {
        Self {
            page: OnceLock::new(),
            backed: (0..lvcmdqs).map(|_| Mutex::new(false)).collect(),
        }
    }

    /// The guest reads LVCMDQ `lidx`'s `reg`: `Some` when the hardware page answered.
    pub fn read(&self, lidx: usize, reg: Page0Reg) -> Option<u32> {
        let b = self
            .backed
            .get(lidx)?
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if !*b {
            return None;
        }
        Some(self.page.get()?.read32(lidx, reg.offset() as usize))
    }

    /// The guest writes LVCMDQ `lidx`'s `reg`: `true` when the hardware page took it (STATUS and
    /// GERROR are hardware-owned: dropped).
    pub fn write(&self, lidx: usize, reg: Page0Reg, value: u32) -> bool {
        let Some(b) = self.backed.get(lidx) else {
            return false;
        };
        let b = b.lock().unwrap_or_else(|p| p.into_inner());
        if !*b {
            return false;
        }
        if let Some(p) = self.page.get() {
            if !matches!(reg, Page0Reg::Status | Page0Reg::Gerror) {
                p.write32(lidx, reg.offset() as usize, value);
            }
        }
        true
    }

    /// Whether LVCMDQ `lidx` is hardware-backed now.
    pub fn is_backed(&self, lidx: usize) -> bool {
        self.backed
            .get(lidx)
            .is_some_and(|b| *b.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The mapped VINTF page0, once the VINTF was enabled.
    pub fn page(&self) -> Option<&Arc<Page0>> {
        self.page.get()
    }
}

/// A backed queue's page0 as the model's trapped global aperture reaches it.
struct HwPage0 {
    page: Arc<Page0>,
    lidx: usize,
}

impl Page0Backend for HwPage0 {
    fn read32(&self, reg: Page0Reg) -> u32 {
        self.page.read32(self.lidx, reg.offset() as usize)
    }
    fn write32(&mut self, reg: Page0Reg, value: u32) {
        if !matches!(reg, Page0Reg::Status | Page0Reg::Gerror) {
            self.page.write32(self.lidx, reg.offset() as usize, value);
        }
    }
}

/// What a queue's hardware backing depends on; a change under a backed queue means a move.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
struct Key {
    q: usize,
    base: u64,
    /// Whether LVCMDQ lidx−1 was backed (the kernel's EIO rule), for retrying failures.
    lower: bool,
}

#[derive(Copy, Clone, Debug)]
struct Backed {
    id: u32,
    key: Key,
}

/// The passthrough state of one guest VINTF (VINTF0: QEMU exposes one).
pub struct Passthrough {
    backend: Box<dyn HostBackend>,
    opts: PassthroughOptions,
    vintf: Option<VintfAlloc>,
    direct: Arc<DirectPath>,
    hw: Vec<Option<Backed>>,
    failed: Vec<Option<Key>>,
    hold: Vec<bool>,
    /// Sequence number the next vEVENT should carry.
    next_seq: Option<u32>,
    pub stats: PassStats,
}

/// Guest VINTF handled by the state machine.
const VINTF: usize = 0;

impl Passthrough {
    /// Sets passthrough up for a guest VINTF with `lvcmdqs` LVCMDQs: hardware info check,
    /// vIOMMU, vEVENT queue. On failure the returned machine keeps everything emulated and the
    /// event says why.
    pub fn attach(
        mut backend: Box<dyn HostBackend>,
        opts: PassthroughOptions,
        lvcmdqs: usize,
    ) -> (Self, Vec<PassEvent>) {
        let mut events = Vec::new();
        let mut vintf = None;
        let mut n = lvcmdqs;
        if opts.policy != HwPolicy::Never {
            match Self::setup(&mut *backend, &opts) {
                Ok((v, hw_lvcmdqs)) => {
                    vintf = Some(v);
                    n = n.min(hw_lvcmdqs);
                }
                Err(e) => events.push(PassEvent::AttachFailed {
                    error: e.to_string(),
                }),
            }
        }
        let me = Self {
            backend,
            opts,
            vintf,
            direct: Arc::new(DirectPath::new(n)),
            hw: vec![None; n],
            failed: vec![None; n],
            hold: vec![false; n],
            next_seq: None,
            stats: PassStats::default(),
        };
        (me, events)
    }

    fn setup(
        b: &mut dyn HostBackend,
        o: &PassthroughOptions,
    ) -> Result<(VintfAlloc, usize), HostError> {
        let info = b.hw_info(o.dev_id)?;
        if info.version != 1 || info.log2vcmdqs < 1 || info.log2vsids < 4 {
            return Err(HostError::Invalid(format!(
                "host CMDQV not usable for passthrough: {info:?} (need version 1, ≥ 2 LVCMDQs, ≥ 16 SIDs)"
            )));
        }
        let v = b.alloc_viommu(o.dev_id, o.hwpt_id)?;
        b.alloc_veventq(v.viommu_id, o.veventq_depth)?;
        Ok((v, 1usize << info.log2vcmdqs.min(7)))
    }

    pub fn kind(&self) -> &'static str {
        self.backend.kind()
    }
    pub fn options(&self) -> &PassthroughOptions {
        &self.opts
    }
    /// The guest's non-trapping path to the hardware page.
    pub fn direct(&self) -> Arc<DirectPath> {
        self.direct.clone()
    }
    /// Whether passthrough is set up (attach succeeded and the policy allows hardware).
    pub fn active(&self) -> bool {
        self.vintf.is_some()
    }
    pub fn lvcmdqs(&self) -> usize {
        self.hw.len()
    }
    pub fn is_backed(&self, lidx: usize) -> bool {
        self.hw.get(lidx).is_some_and(Option::is_some)
    }

    /// Keep LVCMDQ `lidx` emulated (`true`) whatever its prerequisites, or release it. Takes
    /// effect at the next [`Self::sync`].
    pub fn set_hold(&mut self, lidx: usize, hold: bool) {
        if let Some(h) = self.hold.get_mut(lidx) {
            *h = hold;
        }
    }

    /// What LVCMDQ `lidx` would be backed with now, if anything.
    fn wanted(&self, m: &Cmdqv, lidx: usize) -> Option<Key> {
        let v = m.vintf(VINTF)?;
        let q = v.lvcmdq(lidx)? as usize;
        let base = m.page1_state(q)?.base;
        let ready = self.vintf.is_some()
            && self.direct.page.get().is_some()
            && !self.hold[lidx]
            && base & regs::base::ADDR_MASK != 0
            && m.enabled()
            && v.enabled();
        ready.then_some(Key {
            q,
            base,
            lower: lidx > 0 && self.hw[lidx - 1].is_some(),
        })
    }

    /// Brings every LVCMDQ's backing in line with the guest's registers. The model consumes
    /// whatever a queue coming back had pending (into `mem` / `sink`).
    pub fn sync<M, S, O>(
        &mut self,
        m: &mut Cmdqv,
        mem: &M,
        sink: &mut S,
        obs: &mut O,
        out: &mut Vec<PassEvent>,
    ) where
        M: GuestMemory + ?Sized,
        S: InvalidationSink + ?Sized,
        O: Observer + ?Sized,
    {
        let Some(vintf) = self.vintf else { return };
        if self.direct.page.get().is_none() && m.vintf(VINTF).is_some_and(|v| v.enabled()) {
            match self.backend.map_page0(&vintf) {
                Ok(p) => {
                    let _ = self.direct.page.set(Arc::new(p));
                }
                Err(e) => {
                    out.push(PassEvent::MapFailed {
                        error: e.to_string(),
                    });
                    self.vintf = None;
                    return;
                }
            }
        }
        let n = self.hw.len();
        // Frees, descending: the lowest queue that must go takes every backed queue above it.
        let lowest = (0..n).find(|&l| match self.hw[l] {
            Some(b) => self
                .wanted(m, l)
                .is_none_or(|k| (k.q, k.base) != (b.key.q, b.key.base)),
            None => false,
        });
        if let Some(lo) = lowest {
            for l in (lo..n).rev() {
                if self.hw[l].is_some() {
                    self.free(m, l, mem, sink, obs, out);
                }
            }
        }
        // Allocations, ascending.
        for l in 0..n {
            if self.hw[l].is_some() {
                continue;
            }
            let Some(key) = self.wanted(m, l) else {
                self.failed[l] = None;
                continue;
            };
            if self.failed[l] == Some(key) {
                continue;
            }
            self.alloc(m, l, key, vintf.viommu_id, out);
        }
    }

    fn wait_status(&mut self, page: &Page0, lidx: usize, en: u32) -> bool {
        let deadline = Instant::now() + self.opts.status_timeout;
        loop {
            if page.read32(lidx, page0::STATUS) & vcmdq_status::CMDQ_EN_OK == en {
                return true;
            }
            if Instant::now() > deadline {
                self.stats.status_timeouts += 1;
                return false;
            }
            self.backend.wait_hint();
        }
    }

    fn alloc(
        &mut self,
        m: &mut Cmdqv,
        lidx: usize,
        key: Key,
        viommu_id: u32,
        out: &mut Vec<PassEvent>,
    ) {
        let Some(page) = self.direct.page.get().cloned() else {
            return;
        };
        let direct = self.direct.clone();
        let mut gate = direct.backed[lidx]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let log2size = (key.base & regs::base::LOG2SIZE_MASK) as u8;
        let iova = key.base & regs::base::ADDR_MASK;
        let len = 16u64 << log2size;
        let (q, l8) = (key.q as u16, lidx as u8);
        match self
            .backend
            .alloc_hw_queue(viommu_id, lidx as u32, iova, len)
        {
            Err(e) => {
                self.failed[lidx] = Some(key);
                self.stats.alloc_failures += 1;
                out.push(PassEvent::HwAllocFailed {
                    q,
                    lidx: l8,
                    log2size,
                    errno: e.errno().unwrap_or(nix::errno::Errno::EIO as i32),
                    error: e.to_string(),
                });
            }
            Ok(id) => {
                self.failed[lidx] = None;
                let st = m.page0_state(key.q).unwrap_or_default();
                page.write32(lidx, page0::CONS_INDX, st.cons);
                page.write32(lidx, page0::PROD_INDX, st.prod);
                // GERROR is the hardware's (0 after the reset): carry whether an error is
                // pending, not the absolute values, so a pending error stays pending and an
                // acknowledged one does not come back.
                let hw_gerror = page.read32(lidx, page0::GERROR);
                let pending = (st.gerror ^ st.gerrorn) & gerror::MASK;
                page.write32(lidx, page0::GERRORN, hw_gerror ^ pending);
                page.write32(lidx, page0::CONFIG, st.config);
                let en = st.config & vcmdq_config::CMDQ_EN;
                if !self.wait_status(&page, lidx, en) {
                    out.push(PassEvent::StatusTimeout { q, lidx: l8 });
                }
                m.set_backing(
                    key.q,
                    Some(Box::new(HwPage0 {
                        page: page.clone(),
                        lidx,
                    })),
                );
                *gate = true;
                self.hw[lidx] = Some(Backed { id, key });
                self.stats.allocs += 1;
                out.push(PassEvent::HwAlloc {
                    q,
                    lidx: l8,
                    log2size,
                });
            }
        }
    }

    fn free<M, S, O>(
        &mut self,
        m: &mut Cmdqv,
        lidx: usize,
        mem: &M,
        sink: &mut S,
        obs: &mut O,
        out: &mut Vec<PassEvent>,
    ) where
        M: GuestMemory + ?Sized,
        S: InvalidationSink + ?Sized,
        O: Observer + ?Sized,
    {
        let Some(b) = self.hw[lidx].take() else {
            return;
        };
        let Some(page) = self.direct.page.get().cloned() else {
            return;
        };
        let direct = self.direct.clone();
        let mut gate = direct.backed[lidx]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let (q, l8) = (b.key.q as u16, lidx as u8);
        // Stop the hardware first: once STATUS reads 0 it has finished its last pass, so CONS
        // and GERROR read below are final.
        // Even when the guest already disabled the queue, wait for STATUS: the hardware may
        // still be in a pass that started before.
        let config = page.read32(lidx, page0::CONFIG);
        page.write32(lidx, page0::CONFIG, config & !vcmdq_config::CMDQ_EN);
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        if !self.wait_status(&page, lidx, 0) {
            out.push(PassEvent::StatusTimeout { q, lidx: l8 });
        }
        let st = Page0State {
            cons: page.read32(lidx, page0::CONS_INDX),
            prod: page.read32(lidx, page0::PROD_INDX),
            config,
            status: if config & vcmdq_config::CMDQ_EN != 0 {
                vcmdq_status::CMDQ_EN_OK
            } else {
                0
            },
            gerror: page.read32(lidx, page0::GERROR),
            gerrorn: page.read32(lidx, page0::GERRORN),
        };
        m.set_backing(b.key.q, None);
        m.set_page0_state(b.key.q, st);
        let destroy_error = self.backend.destroy(b.id).err().map(|e| e.to_string());
        *gate = false;
        drop(gate);
        self.stats.frees += 1;
        out.push(PassEvent::HwFree {
            q,
            lidx: l8,
            destroy_error,
        });
        // Anything the guest queued meanwhile continues, fully emulated.
        m.try_consume(b.key.q, mem, sink, obs);
    }

    /// Reads the host's vEVENTs and reflects hardware errors into the model.
    pub fn poll_events<O: Observer + ?Sized>(
        &mut self,
        m: &mut Cmdqv,
        obs: &mut O,
        out: &mut Vec<PassEvent>,
    ) -> Result<(), HostError> {
        if self.vintf.is_none() {
            return Ok(());
        }
        for ev in self.backend.read_vevents()? {
            let seq = match ev {
                VEvent::LvcmdqError { sequence, .. } | VEvent::Lost { sequence } => sequence,
            };
            if let Some(want) = self.next_seq {
                self.stats.sequence_gaps += (seq.wrapping_sub(want) & i32::MAX as u32) as u64;
            }
            // After a LOST_EVENTS marker the numbering is not ours to check: resynchronise.
            self.next_seq = match ev {
                VEvent::Lost { .. } => None,
                _ => Some(seq.wrapping_add(1) & i32::MAX as u32),
            };
            match ev {
                VEvent::LvcmdqError { err_map, .. } => {
                    self.stats.vevents += 1;
                    let map = err_map[0] as u128 | (err_map[1] as u128) << 64;
                    if map == 0 {
                        continue;
                    }
                    let accepted = m.raise_host_error(VINTF, map, obs);
                    out.push(PassEvent::HostError { map, accepted });
                }
                VEvent::Lost { sequence } => {
                    self.stats.vevents_lost += 1;
                    out.push(PassEvent::EventsLost { sequence });
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        command::Command,
        engine::NullSink,
        host::simulated::{Consumer, HostHardware, SimHostConfig, SimulatedHost},
        mem::{MemError, VecMemory},
        model::ModelConfig,
        regs::alloc_map,
    };

    const RAM: u64 = 0x4000_0000;

    struct Ram(Mutex<VecMemory>);
    impl GuestMemory for Ram {
        fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), MemError> {
            self.0.lock().unwrap().read(gpa, buf)
        }
        fn write(&mut self, gpa: u64, buf: &[u8]) -> Result<(), MemError> {
            self.0.get_mut().unwrap().write(gpa, buf)
        }
    }

    struct Rig {
        m: Cmdqv,
        p: Passthrough,
        hw: HostHardware,
        ram: Arc<Ram>,
        ev: Vec<PassEvent>,
    }

    impl Rig {
        fn new(cfg: SimHostConfig) -> Self {
            let ram = Arc::new(Ram(Mutex::new(VecMemory::new(RAM, 0x10_0000))));
            let host = SimulatedHost::new(
                SimHostConfig {
                    consumer: Consumer::Manual,
                    ..cfg
                },
                ram.clone(),
                Box::new(NullSink),
                None,
            );
            let hw = host.hardware();
            let (p, ev) = Passthrough::attach(Box::new(host), PassthroughOptions::default(), 2);
            assert!(ev.is_empty(), "{ev:?}");
            Self {
                m: Cmdqv::new(ModelConfig::guest()),
                p,
                hw,
                ram,
                ev,
            }
        }
        fn w(&mut self, off: u64, v: u64) {
            let mem = self.ram.clone();
            self.m.write(off, 4, v, &*mem, &mut NullSink, &mut ());
            self.p
                .sync(&mut self.m, &*mem, &mut NullSink, &mut (), &mut self.ev);
        }
        fn r(&mut self, off: u64) -> u32 {
            self.m.read(off, 4, &mut ()) as u32
        }
    }

    #[test]
    fn a_queue_goes_to_hardware_only_when_every_prerequisite_holds_and_comes_back_intact() {
        let mut r = Rig::new(SimHostConfig::default());
        let put = |r: &Rig, i: u64| {
            r.ram
                .0
                .lock()
                .unwrap()
                .write_cmd(RAM + 16 * i, Command::sync_none().encode())
                .unwrap()
        };
        for i in 0..5 {
            put(&r, i);
        }
        r.w(0x200, alloc_map::encode(0, 0, true) as u64);
        r.w(0x40000, RAM | 4); // BASE (VINTF0 LVCMDQ0 page1)
        r.w(0x30000 + 8, 1); // CONFIG.EN
        r.w(0x30000 + 4, 3); // PROD: VINTF off, nothing consumed
        assert!(!r.p.is_backed(0), "VINTF still disabled");
        assert_eq!(r.m.page0_state(0).unwrap().cons, 0);
        // VINTF enable: the model consumes, then page0 is mapped and the queue allocated.
        r.w(0x1000, 1);
        assert!(r.p.is_backed(0), "{:?}", r.ev);
        assert!(matches!(
            r.ev[..],
            [PassEvent::HwAlloc {
                q: 0,
                lidx: 0,
                log2size: 4
            }]
        ));
        let page = r.p.direct().page().unwrap().clone();
        assert_eq!(page.read32(0, page0::CONS_INDX), 3);
        assert_eq!(page.read32(0, page0::PROD_INDX), 3);
        assert_eq!(page.read32(0, page0::CONFIG), 1);
        assert_eq!(
            page.read32(0, page0::STATUS),
            1,
            "STATUS followed before release"
        );
        // The guest's PROD store does not trap; both views see it; the hardware consumes.
        assert!(r.p.direct().write(0, Page0Reg::ProdIndx, 5));
        assert_eq!(r.r(0x10004), 5);
        assert_eq!(r.hw.step(), 2);
        assert_eq!(r.r(0x30000), 5);
        assert_eq!(r.r(0x10000), 5);
        assert_eq!(r.p.direct().read(0, Page0Reg::ConsIndx), Some(5));
        // CMDQV disable: the queue comes back with its state.
        r.w(0x0, 0);
        assert!(!r.p.is_backed(0));
        assert_eq!(r.p.direct().read(0, Page0Reg::ConsIndx), None);
        let st = r.m.page0_state(0).unwrap();
        assert_eq!((st.cons, st.prod, st.config, st.status), (5, 5, 1, 1));
        assert_eq!(page.read32(0, page0::PROD_INDX), 0, "the slot is unmapped");
        assert_eq!(r.p.stats.allocs, 1);
        assert_eq!(r.p.stats.frees, 1);
    }

    #[test]
    fn a_hardware_error_reaches_the_guest_through_a_vevent_and_clears_on_ack() {
        let mut r = Rig::new(SimHostConfig {
            inject: Some(crate::host::simulated::Injection {
                every: 2,
                cerror: crate::regs::Cerror::Abt,
            }),
            ..Default::default()
        });
        for i in 0..4 {
            r.ram
                .0
                .lock()
                .unwrap()
                .write_cmd(RAM + 16 * i, Command::sync_none().encode())
                .unwrap();
        }
        r.w(0x1000, 1);
        r.w(0x200, alloc_map::encode(0, 0, true) as u64);
        r.w(0x40000, RAM | 4);
        r.w(0x30008, 1);
        assert!(r.p.is_backed(0));
        let d = r.p.direct();
        assert!(d.write(0, Page0Reg::ProdIndx, 4));
        assert_eq!(r.hw.step(), 1, "the second command fails");
        assert_eq!(r.r(0x14), 0, "no vEVENT read yet");
        let mut ev = Vec::new();
        r.p.poll_events(&mut r.m, &mut ev, &mut r.ev).unwrap();
        assert_eq!(r.r(0x14), 1, "VI_ERR_MAP");
        assert_eq!(r.r(0x10c0), 1, "LVCMDQ_ERR_MAP");
        assert_eq!(r.m.stats.irq_pulses, 1);
        assert!(r.ev.contains(&PassEvent::HostError {
            map: 1,
            accepted: 1
        }));
        // The guest acknowledges through its mapped page0; the map clears, hardware retries.
        let g = d.read(0, Page0Reg::Gerror).unwrap();
        assert!(d.write(0, Page0Reg::Gerrorn, g));
        assert_eq!(r.r(0x10c0), 0);
        assert_eq!(
            r.hw.step(),
            1,
            "the retried command runs, the next one fails"
        );
        assert_eq!(d.read(0, Page0Reg::ConsIndx).unwrap() & 0xff, 2);
    }

    #[test]
    fn ascending_allocation_and_descending_free_follow_the_kernel() {
        let mut r = Rig::new(SimHostConfig::default());
        r.w(0x1000, 1);
        r.w(0x200, alloc_map::encode(0, 0, true) as u64);
        r.w(0x204, alloc_map::encode(0, 1, true) as u64);
        // LVCMDQ1 first: EIO, reported, queue keeps working emulated.
        r.w(0x40080, (RAM + 0x1000) | 4);
        assert!(matches!(
            r.ev[..],
            [PassEvent::HwAllocFailed {
                lidx: 1,
                errno: libc::EIO,
                ..
            }]
        ));
        r.ram
            .0
            .lock()
            .unwrap()
            .write_cmd(RAM + 0x1000, Command::sync_none().encode())
            .unwrap();
        r.w(0x30080 + 8, 1);
        r.w(0x30080 + 4, 1);
        assert_eq!(r.r(0x30080), 1, "emulated queue consumed");
        // LVCMDQ0 ready: both go to hardware, in order.
        r.w(0x40000, RAM | 4);
        assert!(r.p.is_backed(0) && r.p.is_backed(1), "{:?}", r.ev);
        assert_eq!(r.r(0x30080), 1, "CONS carried");
        // Unmapping LVCMDQ0 takes LVCMDQ1 down first (descending), LVCMDQ1 then returns.
        r.ev.clear();
        r.w(0x200, alloc_map::encode(0, 0, false) as u64);
        let kinds: Vec<_> =
            r.ev.iter()
                .map(|e| match e {
                    PassEvent::HwAlloc { lidx, .. } => format!("alloc{lidx}"),
                    PassEvent::HwFree { lidx, .. } => format!("free{lidx}"),
                    PassEvent::HwAllocFailed { lidx, .. } => format!("failed{lidx}"),
                    other => format!("{other:?}"),
                })
                .collect();
        // LVCMDQ1 cannot come back alone (index 0 missing: EIO): it stays emulated.
        assert_eq!(kinds, ["free1", "free0", "failed1"]);
        assert_eq!(r.r(0x30080), 1);
    }
}
