//! A simulated host for machines without CMDQV: a [`HostBackend`] whose VINTF page0 is a memfd
//! (named [`SIM_PAGE0_MEMFD`], so the sampler finds it exactly as it finds an iommufd mapping)
//! and whose "hardware" consumes the LVCMDQs allocated on it with the same queue engine the
//! model uses.
//!
//! It enforces the kernel's rules in the kernel's order (§10.5): `IOMMU_HW_QUEUE_ALLOC` checks
//! the index range (EINVAL), a free slot (EEXIST), index−1 allocated (EIO), the length (power of
//! two, ≥ 32, ≤ 2^(CMDQS+4), else EINVAL) and the base alignment (EINVAL); destruction follows
//! the object dependencies (a queue while a higher one exists, a vIOMMU while its queues or
//! vEVENT queue exist: EBUSY). Errors are [`HostError`]s carrying the errno, as the real backend
//! returns them.
//!
//! The hardware consumer runs either on a thread of its own ([`Consumer::Thread`], with a
//! modelled latency and per-command cost) or only when asked ([`HostHardware::step`],
//! [`Consumer::Manual`]) so that tests are deterministic. Error injection (every Nth command
//! fails with a chosen CERROR) raises the queue's error in the page and posts a vEVENT carrying
//! the VINTF's LVCMDQ_ERR_MAP, with sequence numbers and a LOST_EVENTS marker on overflow.

use std::{
    collections::{HashMap, VecDeque},
    fs::File,
    io,
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use nix::{
    errno::Errno,
    sys::memfd::{MFdFlags, memfd_create},
};

use super::{
    HostBackend, HostError, HwInfo, LVCMDQ_STRIDE, PAGE0_LEN, Page0, VEvent, VintfAlloc, page0,
    sampler::SIM_PAGE0_MEMFD,
};
use crate::{
    engine::{self, ExecCtx, Invalidation, InvalidationSink, ModelEvent, Observer, QueueKind},
    mem::GuestMemory,
    queue::Ring,
    regs::{Cerror, gerror, vcmdq_config},
};

/// File offset of the page0 in the simulated host's memfd: the kernel hands out mmap cookies
/// from PAGE_SIZE upward (§11.5), so the first VINTF's page sits one page in (0x1000 with 4 KiB
/// pages, 0x4000 with 16 KiB). A fixed 0x1000 is not page-aligned on a 16 KiB kernel: the
/// mapping then starts at offset 0 and a sampler reading it sees page0 shifted by 0x1000.
pub fn sim_mmap_offset() -> u64 {
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE);
    page.ok()
        .flatten()
        .and_then(|p| u64::try_from(p).ok())
        .unwrap_or(0x1000)
}

/// Who runs the simulated hardware.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub enum Consumer {
    /// A thread of the host polls every allocated queue (default).
    #[default]
    Thread,
    /// Nothing runs unless [`HostHardware::step`] is called (deterministic tests).
    Manual,
}

/// Error injection: every `every`-th command the hardware executes fails with `cerror`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Injection {
    pub every: u64,
    pub cerror: Cerror,
}

/// What the simulated host reports and how its hardware behaves.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct SimHostConfig {
    /// GET_HW_INFO version (PARAM bits 3:0); QEMU requires 1.
    pub version: u8,
    /// log2(LVCMDQs per VINTF).
    pub log2vcmdqs: u8,
    /// log2(SID slots per VINTF).
    pub log2vsids: u8,
    /// The host SMMU's IDR1.CMDQS: the largest ring is 2^CMDQS entries (2^(CMDQS+4) bytes).
    pub cmdqs: u8,
    /// VINTFs the host can give out (one per vIOMMU).
    pub vintfs: u32,
    /// VMID the host programs into the VINTF (the S2 parent's).
    pub vmid: u16,
    pub consumer: Consumer,
    /// Thread consumer: delay between noticing a doorbell and consuming.
    pub latency_ns: u64,
    /// Thread consumer: cost of each command.
    pub ns_per_cmd: u64,
    /// Commands consumed per queue per pass (0 = everything pending).
    pub max_per_pass: u32,
    /// Thread consumer: sleep between passes that found nothing to do (the doorbell is noticed
    /// by polling, so this bounds the unmodelled part of the latency).
    pub idle_poll_ns: u64,
    pub inject: Option<Injection>,
}

impl Default for SimHostConfig {
    fn default() -> Self {
        Self {
            version: 1,
            log2vcmdqs: 1,
            log2vsids: 4,
            cmdqs: 19,
            vintfs: 1,
            vmid: 1,
            consumer: Consumer::Thread,
            latency_ns: 0,
            ns_per_cmd: 0,
            max_per_pass: 0,
            idle_poll_ns: 20_000,
            inject: None,
        }
    }
}

fn os(op: &'static str, errno: Errno) -> HostError {
    HostError::from_ioctl(op, io::Error::from(errno))
}

/// One allocated hardware queue.
#[derive(Copy, Clone, Debug)]
struct HwQueue {
    ring: Ring,
    last_prod: Option<u32>,
}

struct EventQ {
    depth: usize,
    q: VecDeque<VEvent>,
    /// Sequence number of the next event (wraps at i32::MAX as the kernel's does).
    seq: u32,
    lost: Option<u32>,
}

/// One VINTF of the host: its page0 (the hardware's own mapping), its LVCMDQ slots, its vEVENTs.
struct HwVintf {
    file: File,
    page: Page0,
    slots: Vec<Mutex<Option<HwQueue>>>,
    events: Mutex<Option<EventQ>>,
}

enum Obj {
    Viommu { vintf: usize },
    HwQueue { vintf: usize, index: u32 },
    Veventq { vintf: usize },
}

struct Inner {
    cfg: SimHostConfig,
    mem: Arc<dyn GuestMemory + Send + Sync>,
    sink: Mutex<Box<dyn InvalidationSink + Send>>,
    obs: Mutex<Option<Box<dyn Observer + Send>>>,
    vintfs: RwLock<Vec<Option<Arc<HwVintf>>>>,
    /// Commands the hardware attempted (the injection counter).
    attempts: Mutex<u64>,
}

/// The simulated host. Dropping it stops its hardware thread.
pub struct SimulatedHost {
    inner: Arc<Inner>,
    objs: HashMap<u32, Obj>,
    next_id: u32,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// A handle on the simulated hardware, usable after the host was boxed as a `dyn HostBackend`.
#[derive(Clone)]
pub struct HostHardware(Arc<Inner>);

impl HostHardware {
    /// One pass of the hardware over every allocated queue, without modelled delays: STATUS
    /// follows CONFIG, pending commands are consumed (at most `max_per_pass` per queue), errors
    /// post vEVENTs. Returns the commands consumed.
    pub fn step(&self) -> u32 {
        self.0.pass(false)
    }
    /// Commands the hardware attempted so far (the injection counter).
    pub fn attempts(&self) -> u64 {
        *self.0.attempts.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Below this idle poll, the hardware thread's sleeps are made precise.
const TIGHT_POLL_NS: u64 = 10_000;

/// A tight poll (0: none at all) stands for hardware that watches its doorbells beside the
/// CPUs, not as one of the scheduler's tasks: the thread runs at the highest nice priority on a
/// CPU of its own ([`hardware_cpu`]), and
/// a sleep between passes asks for a timer slack of its own size (the kernel's 50 µs default
/// would otherwise be the poll). Best effort: without the privilege, the defaults stay.
fn tight_timer_slack(idle_poll_ns: u64) {
    if idle_poll_ns >= TIGHT_POLL_NS {
        return;
    }
    // SAFETY: PR_SET_TIMERSLACK takes a plain integer; setpriority(PRIO_PROCESS, 0, ..) names
    // the calling thread on Linux; both affect only this thread.
    unsafe {
        libc::prctl(
            libc::PR_SET_TIMERSLACK,
            idle_poll_ns.max(1) as libc::c_ulong,
            0,
            0,
            0,
        );
        libc::setpriority(libc::PRIO_PROCESS, 0, -20);
        if let Some(cpu) = hardware_cpu() {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        }
    }
}

/// The CPU a tightly polling hardware thread keeps for itself (the last one) when there are at
/// least two: vCPU threads stay off it, so a vCPU waiting for CONS never waits behind it.
pub fn hardware_cpu() -> Option<usize> {
    let n = std::thread::available_parallelism().map_or(1, |n| n.get());
    (n >= 2).then(|| n - 1)
}

/// Busy-waits `ns` nanoseconds: a modelled cost (hardware latency, a trap) that must occupy the
/// CPU as the real one would, not yield it.
pub fn spin_for(ns: u64) {
    if ns == 0 {
        return;
    }
    let until = Instant::now() + Duration::from_nanos(ns);
    while Instant::now() < until {
        std::hint::spin_loop();
    }
}

/// Passes commands to the host's sink, failing every Nth as configured.
struct InjectingSink<'a> {
    inner: &'a mut dyn InvalidationSink,
    attempts: &'a mut u64,
    inject: Option<Injection>,
}

impl InvalidationSink for InjectingSink<'_> {
    fn invalidate(&mut self, queue: u16, inv: Invalidation) -> Result<(), Cerror> {
        *self.attempts += 1;
        if let Some(i) = self.inject {
            if i.every > 0 && (*self.attempts).is_multiple_of(i.every) {
                return Err(i.cerror);
            }
        }
        self.inner.invalidate(queue, inv)
    }
}

impl Inner {
    fn vintfs(&self) -> Vec<Arc<HwVintf>> {
        self.vintfs
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .flatten()
            .cloned()
            .collect()
    }

    fn observe(&self, ev: ModelEvent) {
        if let Some(o) = self.obs.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            o.event(ev);
        }
    }

    fn pass(&self, timed: bool) -> u32 {
        let mut total = 0;
        for v in self.vintfs() {
            let mut raised = false;
            for (lidx, slot_m) in v.slots.iter().enumerate() {
                let mut slot = slot_m.lock().unwrap_or_else(|p| p.into_inner());
                let Some(hq) = slot.as_mut() else { continue };
                let (n, r) = self.run_queue(&v.page, lidx, hq, timed);
                total += n;
                raised |= r;
            }
            if raised {
                Self::post_error(&v);
            }
        }
        total
    }

    /// STATUS follows CONFIG; pending commands are consumed. Returns (consumed, raised).
    fn run_queue(&self, pg: &Page0, lidx: usize, hq: &mut HwQueue, timed: bool) -> (u32, bool) {
        let ring = hq.ring;
        let en = pg.read32(lidx, page0::CONFIG) & vcmdq_config::CMDQ_EN;
        let status = pg.read32(lidx, page0::STATUS);
        if status & 1 != en {
            pg.write32(lidx, page0::STATUS, (status & !1) | en);
            self.observe(ModelEvent::Enable {
                target: engine::EnableTarget::Vcmdq(lidx as u16),
                on: en != 0,
            });
        }
        if en == 0 {
            return (0, false);
        }
        // STATUS.EN_OK = 1 was published before CONFIG is read again: a VMM that clears
        // CONFIG.EN and then reads STATUS either stops this pass here or sees EN_OK = 1 and waits
        // for the pass to end (the fences order the store before the load on both sides).
        std::sync::atomic::fence(Ordering::SeqCst);
        if pg.read32(lidx, page0::CONFIG) & vcmdq_config::CMDQ_EN == 0 {
            pg.write32(lidx, page0::STATUS, status & !1);
            return (0, false);
        }
        let mut regs = engine::QueueRegs {
            prod: pg.read32(lidx, page0::PROD_INDX) & ring.ptr_mask(),
            cons: pg.read32(lidx, page0::CONS_INDX),
            gerror: pg.read32(lidx, page0::GERROR),
            gerrorn: pg.read32(lidx, page0::GERRORN),
        };
        if ring.is_empty(regs.prod, regs.cons) || regs.error_pending() {
            return (0, false);
        }
        if hq.last_prod != Some(regs.prod) {
            hq.last_prod = Some(regs.prod);
            self.observe(ModelEvent::Doorbell {
                queue: lidx as u16,
                prod: regs.prod,
                cons: regs.cons & ring.ptr_mask(),
            });
        }
        let mut pending = ring.pending(regs.prod, regs.cons);
        if self.cfg.max_per_pass > 0 && pending > self.cfg.max_per_pass {
            pending = self.cfg.max_per_pass;
            regs.prod = ring.add(regs.cons, pending) & ring.ptr_mask();
        }
        if timed {
            spin_for(self.cfg.latency_ns + self.cfg.ns_per_cmd * pending as u64);
        }
        let opts = engine::EngineOptions::default();
        let sids = vec![0u32; 1 << self.cfg.log2vsids.min(8)];
        let ctx = ExecCtx {
            queue: lidx as u16,
            kind: QueueKind::VcmdqGuest {
                vmid: self.cfg.vmid,
                sid_match: &sids,
                sid_replace: &sids,
            },
            opts: &opts,
        };
        let out = {
            let mut sink = self.sink.lock().unwrap_or_else(|p| p.into_inner());
            let mut attempts = self.attempts.lock().unwrap_or_else(|p| p.into_inner());
            let mut inj = InjectingSink {
                inner: &mut **sink,
                attempts: &mut attempts,
                inject: self.cfg.inject,
            };
            let mut obs = self.obs.lock().unwrap_or_else(|p| p.into_inner());
            match obs.as_mut() {
                Some(o) => engine::consume(&ctx, ring, &mut regs, &*self.mem, &mut inj, &mut **o),
                None => engine::consume(&ctx, ring, &mut regs, &*self.mem, &mut inj, &mut ()),
            }
        };
        pg.write32(lidx, page0::CONS_INDX, regs.cons);
        pg.write32(lidx, page0::GERROR, regs.gerror);
        (out.consumed, out.raised)
    }

    /// The host kernel's ISR for a user VINTF: post the VINTF's LVCMDQ_ERR_MAP as a vEVENT.
    fn post_error(v: &HwVintf) {
        let mut map = [0u64; 2];
        for l in 0..v.slots.len().min(128) {
            let live = v.slots[l]
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_some();
            let pending = (v.page.read32(l, page0::GERROR) ^ v.page.read32(l, page0::GERRORN))
                & gerror::CMDQ_ERR
                != 0;
            let en = v.page.read32(l, page0::CONFIG) & vcmdq_config::CMDQ_EN != 0;
            if live && pending && en {
                map[l / 64] |= 1 << (l % 64);
            }
        }
        if map == [0, 0] {
            return;
        }
        let mut evq = v.events.lock().unwrap_or_else(|p| p.into_inner());
        let Some(e) = evq.as_mut() else { return };
        let sequence = e.seq;
        e.seq = (e.seq + 1) & i32::MAX as u32;
        if e.q.len() >= e.depth {
            e.lost.get_or_insert(sequence);
        } else {
            e.q.push_back(VEvent::LvcmdqError {
                sequence,
                err_map: map,
            });
        }
    }
}

fn memfd(len: u64) -> io::Result<File> {
    let fd = memfd_create(SIM_PAGE0_MEMFD, MFdFlags::empty())?;
    let file = File::from(fd);
    file.set_len(len)?;
    Ok(file)
}

impl SimulatedHost {
    /// A host whose hardware reads commands from `mem` (the guest RAM the VMM pinned) and
    /// executes them into `sink`; `obs` sees the hardware's consumption (command, doorbell,
    /// error and enable events with the LVCMDQ index as queue id).
    pub fn new(
        cfg: SimHostConfig,
        mem: Arc<dyn GuestMemory + Send + Sync>,
        sink: Box<dyn InvalidationSink + Send>,
        obs: Option<Box<dyn Observer + Send>>,
    ) -> Self {
        let inner = Arc::new(Inner {
            cfg,
            mem,
            sink: Mutex::new(sink),
            obs: Mutex::new(obs),
            vintfs: RwLock::new((0..cfg.vintfs).map(|_| None).collect()),
            attempts: Mutex::new(0),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let thread = (cfg.consumer == Consumer::Thread).then(|| {
            let (inner, stop) = (inner.clone(), stop.clone());
            std::thread::Builder::new()
                .name("sim-host-hw".into())
                .spawn(move || {
                    tight_timer_slack(inner.cfg.idle_poll_ns);
                    while !stop.load(Ordering::Relaxed) {
                        if inner.pass(true) == 0 {
                            std::thread::sleep(Duration::from_nanos(inner.cfg.idle_poll_ns));
                        }
                    }
                })
                .expect("spawning the simulated hardware thread")
        });
        Self {
            inner,
            objs: HashMap::new(),
            next_id: 1,
            stop,
            thread,
        }
    }

    pub fn config(&self) -> &SimHostConfig {
        &self.inner.cfg
    }

    pub fn hardware(&self) -> HostHardware {
        HostHardware(self.inner.clone())
    }

    fn lvcmdqs(&self) -> u32 {
        1 << self.inner.cfg.log2vcmdqs.min(7)
    }

    fn new_id(&mut self, o: Obj) -> u32 {
        let id = self.next_id;
        self.next_id += 1;
        self.objs.insert(id, o);
        id
    }

    fn vintf_of(
        &self,
        viommu_id: u32,
        op: &'static str,
    ) -> Result<(usize, Arc<HwVintf>), HostError> {
        let Some(&Obj::Viommu { vintf }) = self.objs.get(&viommu_id) else {
            return Err(os(op, Errno::ENOENT));
        };
        let v = self.inner.vintfs.read().unwrap_or_else(|p| p.into_inner())[vintf]
            .clone()
            .ok_or_else(|| os(op, Errno::ENOENT))?;
        Ok((vintf, v))
    }
}

impl Drop for SimulatedHost {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl HostBackend for SimulatedHost {
    fn kind(&self) -> &'static str {
        "simulated"
    }

    fn hw_info(&mut self, _dev_id: u32) -> Result<HwInfo, HostError> {
        let c = &self.inner.cfg;
        Ok(HwInfo {
            version: c.version,
            log2vcmdqs: c.log2vcmdqs,
            log2vsids: c.log2vsids,
        })
    }

    fn alloc_viommu(&mut self, _dev_id: u32, _hwpt_id: u32) -> Result<VintfAlloc, HostError> {
        const OP: &str = "IOMMU_VIOMMU_ALLOC";
        let idx = {
            let v = self.inner.vintfs.read().unwrap_or_else(|p| p.into_inner());
            v.iter().position(Option::is_none)
        };
        let Some(idx) = idx else {
            return Err(os(OP, Errno::EBUSY));
        };
        let file = memfd(sim_mmap_offset() + PAGE0_LEN as u64).map_err(HostError::Mmap)?;
        let map = memmap2::MmapOptions::new()
            .offset(sim_mmap_offset())
            .len(PAGE0_LEN)
            .map_raw(&file)
            .map_err(HostError::Mmap)?;
        let page = Page0::new(map, true)?;
        let id = self.new_id(Obj::Viommu { vintf: idx });
        let v = HwVintf {
            file,
            page,
            slots: (0..self.lvcmdqs()).map(|_| Mutex::new(None)).collect(),
            events: Mutex::new(None),
        };
        self.inner.vintfs.write().unwrap_or_else(|p| p.into_inner())[idx] = Some(Arc::new(v));
        Ok(VintfAlloc {
            viommu_id: id,
            mmap_offset: sim_mmap_offset(),
            mmap_length: PAGE0_LEN as u64,
        })
    }

    fn map_page0(&mut self, vintf: &VintfAlloc) -> Result<Page0, HostError> {
        let (_, v) = self.vintf_of(vintf.viommu_id, "mmap")?;
        // The kernel's mmap rules: offset and length must match the registered entry exactly.
        if vintf.mmap_offset != sim_mmap_offset() || vintf.mmap_length != PAGE0_LEN as u64 {
            return Err(HostError::Mmap(io::Error::from(Errno::ENXIO)));
        }
        Page0::map(&v.file, vintf.mmap_offset, vintf.mmap_length, true)
    }

    fn alloc_hw_queue(
        &mut self,
        viommu_id: u32,
        index: u32,
        iova: u64,
        length: u64,
    ) -> Result<u32, HostError> {
        const OP: &str = "IOMMU_HW_QUEUE_ALLOC";
        let (vintf, v) = self.vintf_of(viommu_id, OP)?;
        // iommufd core: the range must be pinnable (in guest RAM, contiguous).
        let end = iova.checked_add(length).filter(|_| length != 0);
        let Some(end) = end else {
            return Err(os(OP, Errno::EINVAL));
        };
        let mut b = [0u8; 1];
        if self.inner.mem.read(iova, &mut b).is_err()
            || self.inner.mem.read(end - 1, &mut b).is_err()
        {
            return Err(os(OP, Errno::EFAULT));
        }
        // tegra241_vintf_alloc_lvcmdq_user, in its order.
        let n = v.slots.len() as u32;
        if index >= n {
            return Err(os(OP, Errno::EINVAL));
        }
        let i = index as usize;
        if v.slots[i]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
        {
            return Err(os(OP, Errno::EEXIST));
        }
        if i > 0
            && v.slots[i - 1]
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_none()
        {
            return Err(os(OP, Errno::EIO));
        }
        let max = 1u64 << (self.inner.cfg.cmdqs as u32 + 4);
        if !length.is_power_of_two() || length < 32 || length > max {
            return Err(os(OP, Errno::EINVAL));
        }
        if iova & (length - 1) != 0 {
            return Err(os(OP, Errno::EINVAL));
        }
        let log2size = length.trailing_zeros() - 4;
        let id = self.new_id(Obj::HwQueue { vintf, index });
        let mut slot = v.slots[i].lock().unwrap_or_else(|p| p.into_inner());
        // Map + reset: the queue starts disabled with CONS = PROD = 0; the VMM enables it.
        for r in (0..LVCMDQ_STRIDE).step_by(4) {
            v.page.write32(i, r, 0);
        }
        *slot = Some(HwQueue {
            ring: Ring::new(iova, log2size),
            last_prod: None,
        });
        Ok(id)
    }

    fn destroy(&mut self, id: u32) -> Result<(), HostError> {
        const OP: &str = "IOMMU_DESTROY";
        let Some(o) = self.objs.get(&id) else {
            return Err(os(OP, Errno::ENOENT));
        };
        let vintfs = self
            .inner
            .vintfs
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        match *o {
            Obj::HwQueue { vintf, index } => {
                let Some(v) = vintfs.get(vintf).cloned().flatten() else {
                    return Err(os(OP, Errno::ENOENT));
                };
                let i = index as usize;
                if v.slots
                    .get(i + 1)
                    .is_some_and(|s| s.lock().unwrap_or_else(|p| p.into_inner()).is_some())
                {
                    return Err(os(OP, Errno::EBUSY));
                }
                // Deinit waits for the hardware (the slot lock), then unmaps: the slot reads 0.
                let mut slot = v.slots[i].lock().unwrap_or_else(|p| p.into_inner());
                *slot = None;
                for r in (0..LVCMDQ_STRIDE).step_by(4) {
                    v.page.write32(i, r, 0);
                }
            }
            Obj::Veventq { vintf } => {
                if let Some(v) = vintfs.get(vintf).cloned().flatten() {
                    *v.events.lock().unwrap_or_else(|p| p.into_inner()) = None;
                }
            }
            Obj::Viommu { vintf } => {
                let busy = self.objs.values().any(|o| {
                    matches!(o, Obj::HwQueue { vintf: x, .. } | Obj::Veventq { vintf: x } if *x == vintf)
                });
                if busy {
                    return Err(os(OP, Errno::EBUSY));
                }
                self.inner.vintfs.write().unwrap_or_else(|p| p.into_inner())[vintf] = None;
            }
        }
        self.objs.remove(&id);
        Ok(())
    }

    fn alloc_veventq(&mut self, viommu_id: u32, depth: u32) -> Result<u32, HostError> {
        const OP: &str = "IOMMU_VEVENTQ_ALLOC";
        let (vintf, v) = self.vintf_of(viommu_id, OP)?;
        if depth == 0 {
            return Err(os(OP, Errno::EINVAL));
        }
        let mut e = v.events.lock().unwrap_or_else(|p| p.into_inner());
        if e.is_some() {
            return Err(os(OP, Errno::EEXIST));
        }
        *e = Some(EventQ {
            depth: depth as usize,
            q: VecDeque::new(),
            seq: 0,
            lost: None,
        });
        drop(e);
        Ok(self.new_id(Obj::Veventq { vintf }))
    }

    fn read_vevents(&mut self) -> Result<Vec<VEvent>, HostError> {
        let mut out = Vec::new();
        for v in self.inner.vintfs() {
            let mut e = v.events.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(e) = e.as_mut() {
                out.extend(e.q.drain(..));
                if let Some(sequence) = e.lost.take() {
                    out.push(VEvent::Lost { sequence });
                }
            }
        }
        Ok(out)
    }

    fn wait_hint(&mut self) {
        match self.inner.cfg.consumer {
            Consumer::Manual => {
                self.inner.pass(false);
            }
            Consumer::Thread => std::thread::sleep(Duration::from_micros(5)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{command::Command, engine::CountingSink, mem::VecMemory};

    const RAM: u64 = 0x4000_0000;

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<CountingSink>>);
    impl InvalidationSink for Shared {
        fn invalidate(&mut self, q: u16, inv: Invalidation) -> Result<(), Cerror> {
            self.0.lock().unwrap().invalidate(q, inv)
        }
    }

    struct Ram(Mutex<VecMemory>);
    impl GuestMemory for Ram {
        fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), crate::mem::MemError> {
            self.0.lock().unwrap().read(gpa, buf)
        }
        fn write(&mut self, gpa: u64, buf: &[u8]) -> Result<(), crate::mem::MemError> {
            self.0.get_mut().unwrap().write(gpa, buf)
        }
    }

    fn host(cfg: SimHostConfig) -> (SimulatedHost, Arc<Ram>, Shared) {
        let ram = Arc::new(Ram(Mutex::new(VecMemory::new(RAM, 0x10_0000))));
        let sink = Shared::default();
        let h = SimulatedHost::new(
            SimHostConfig {
                consumer: Consumer::Manual,
                ..cfg
            },
            ram.clone(),
            Box::new(sink.clone()),
            None,
        );
        (h, ram, sink)
    }

    fn errno(r: Result<u32, HostError>) -> i32 {
        r.unwrap_err().errno().unwrap()
    }

    #[test]
    fn hw_queue_alloc_follows_the_kernels_rules_in_order() {
        let (mut h, _, _) = host(SimHostConfig {
            log2vcmdqs: 1,
            cmdqs: 8,
            ..Default::default()
        });
        assert_eq!(
            h.hw_info(1).unwrap(),
            HwInfo {
                version: 1,
                log2vcmdqs: 1,
                log2vsids: 4
            }
        );
        let v = h.alloc_viommu(1, 2).unwrap();
        assert_eq!((v.mmap_offset, v.mmap_length), (0x1000, 0x10000));
        let id = v.viommu_id;
        assert_eq!(errno(h.alloc_hw_queue(99, 0, RAM, 0x100)), libc::ENOENT);
        assert_eq!(errno(h.alloc_hw_queue(id, 0, 0x1000, 0x100)), libc::EFAULT);
        assert_eq!(errno(h.alloc_hw_queue(id, 2, RAM, 0x100)), libc::EINVAL); // index range
        assert_eq!(errno(h.alloc_hw_queue(id, 1, RAM, 0x100)), libc::EIO); // index 0 missing
        assert_eq!(errno(h.alloc_hw_queue(id, 0, RAM, 0x60)), libc::EINVAL); // not 2^n
        assert_eq!(errno(h.alloc_hw_queue(id, 0, RAM, 16)), libc::EINVAL); // < 32
        assert_eq!(errno(h.alloc_hw_queue(id, 0, RAM, 1 << 13)), libc::EINVAL); // > 2^(8+4)
        assert_eq!(
            errno(h.alloc_hw_queue(id, 0, RAM + 0x80, 0x100)),
            libc::EINVAL
        ); // align
        let q0 = h.alloc_hw_queue(id, 0, RAM, 0x100).unwrap();
        assert_eq!(errno(h.alloc_hw_queue(id, 0, RAM, 0x100)), libc::EEXIST);
        // EIO is checked before the length: the kernel's order.
        let q1 = h.alloc_hw_queue(id, 1, RAM + 0x100, 0x100).unwrap();
        // Destruction: descending only, and the vIOMMU last.
        let e = h.destroy(q0).unwrap_err();
        assert_eq!(e.errno(), Some(libc::EBUSY), "{e}");
        assert_eq!(h.destroy(id).unwrap_err().errno(), Some(libc::EBUSY));
        h.destroy(q1).unwrap();
        h.destroy(q0).unwrap();
        assert_eq!(h.destroy(q0).unwrap_err().errno(), Some(libc::ENOENT));
        h.destroy(id).unwrap();
    }

    #[test]
    fn hardware_consumes_and_injected_errors_post_vevents() {
        let (mut h, ram, sink) = host(SimHostConfig {
            inject: Some(Injection {
                every: 3,
                cerror: Cerror::Abt,
            }),
            ..Default::default()
        });
        let hw = h.hardware();
        let v = h.alloc_viommu(1, 2).unwrap();
        h.alloc_veventq(v.viommu_id, 1).unwrap();
        let page = h.map_page0(&v).unwrap();
        let mut bad = v;
        bad.mmap_offset = 0;
        assert!(matches!(h.map_page0(&bad), Err(HostError::Mmap(_))));
        h.alloc_hw_queue(v.viommu_id, 0, RAM, 16 << 4).unwrap();
        for i in 0..8 {
            ram.0
                .lock()
                .unwrap()
                .write_cmd(RAM + 16 * i, Command::sync_none().encode())
                .unwrap();
        }
        page.write32(0, page0::PROD_INDX, 8);
        assert_eq!(hw.step(), 0, "disabled: nothing consumed");
        page.write32(0, page0::CONFIG, 1);
        assert_eq!(hw.step(), 2, "the third command fails");
        assert_eq!(page.read32(0, page0::STATUS), 1);
        assert_eq!(
            page.read32(0, page0::CONS_INDX),
            2 | (Cerror::Abt as u32) << 24
        );
        assert_eq!(page.read32(0, page0::GERROR), 1);
        assert_eq!(
            h.read_vevents().unwrap(),
            [VEvent::LvcmdqError {
                sequence: 0,
                err_map: [1, 0]
            }]
        );
        assert_eq!(hw.step(), 0, "stopped until acknowledged");
        // The guest acknowledges through the page; ABT retries the command.
        page.write32(0, page0::GERRORN, 1);
        assert_eq!(hw.step(), 2);
        // Two more errors with a queue of depth 1: the second is lost and reported as such.
        page.write32(0, page0::GERRORN, 0);
        assert_eq!(hw.step(), 2);
        assert_eq!(
            h.read_vevents().unwrap(),
            [
                VEvent::LvcmdqError {
                    sequence: 1,
                    err_map: [1, 0]
                },
                VEvent::Lost { sequence: 2 }
            ]
        );
        assert_eq!(sink.0.lock().unwrap().sync, 6);
        assert_eq!(hw.attempts(), 9);
    }
}
