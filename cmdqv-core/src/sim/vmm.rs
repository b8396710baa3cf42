//! The sim VMM: guest RAM, the CMDQV model and the SMMU model behind one device lock (like a
//! VMM's big lock), a simulated host that backs VCMDQs with "hardware" queues on a shared
//! VINTF page0 (a memfd, as iommufd's mmap would be), the passthrough state machine that carries
//! a queue's state between the model's cache and that page, and the vCPU threads running the
//! synthetic guest driver.
//!
//! Trapped accesses (everything except a hardware-backed LVCMDQ's logical page0) go through the
//! device lock and the models, and report through [`Emitter`] (uprobe hooks + optional pipe).
//! A hardware-backed LVCMDQ's logical page0 is the shared page itself: the guest's PROD store
//! does not trap, exactly the point of VCMDQ passthrough.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use cmdqv_ebpf_common::QueueOp;

use super::{
    driver::{Dev, Driver, DriverConfig, GuestPort, QueueShadow, Target},
    emit::{Emitter, ModelObserver},
    ram::Ram,
    scenario::{Path, Scenario},
};
use crate::{
    command::{Command, VaRange},
    engine::{
        self, ExecCtx, Invalidation, InvalidationSink, MAIN_CMDQ_ID, QueueKind, QueueRegs, Smmu,
    },
    host::{self, PAGE0_LEN, Page0, sampler::SIM_PAGE0_MEMFD},
    model::{Cmdqv, ModelConfig, Page0Backend, Page0State},
    queue::Ring,
    regs::{self, Aperture, Cerror, Page0Reg, RegRef, VcmdqReg},
};

/// Guest RAM base (as QEMU's virt machine).
pub const RAM_BASE: u64 = 0x4000_0000;
const RAM_SIZE: usize = 64 << 20;
const SMMU_RING: u64 = RAM_BASE + 0x10_0000;
const VCMDQ_RINGS: u64 = RAM_BASE + 0x100_0000;

fn spin_for(ns: u64) {
    if ns == 0 {
        return;
    }
    let until = Instant::now() + Duration::from_nanos(ns);
    while Instant::now() < until {
        std::hint::spin_loop();
    }
}

/// Counts what the "host SMMU" executed and charges the modelled cost of the trapped path.
struct VmmSink {
    executed: Arc<AtomicU64>,
    /// Trapped path: forwarding one batch (HWPT_INVALIDATE + the host's CMD_SYNC), charged at
    /// each CMD_SYNC of the main queue.
    forward_ns: u64,
}

impl InvalidationSink for VmmSink {
    fn invalidate(&mut self, queue: u16, inv: Invalidation) -> Result<(), Cerror> {
        self.executed.fetch_add(1, Ordering::Relaxed);
        if queue == MAIN_CMDQ_ID && matches!(inv, Invalidation::Sync(_)) {
            spin_for(self.forward_ns);
        }
        Ok(())
    }
}

struct Devices {
    cmdqv: Cmdqv,
    smmu: Smmu,
    sink: VmmSink,
    /// log2size of each global VCMDQ's ring, for Enable events.
    log2: Vec<u8>,
}

/// One LVCMDQ slot of the simulated host's VINTF page0.
#[derive(Default)]
struct Slot {
    /// Global VCMDQ backed by this hardware slot.
    backed: Option<usize>,
    ring: Option<Ring>,
    vmid: u16,
    sid_match: Vec<u32>,
    sid_replace: Vec<u32>,
    last_prod: u32,
}

/// Forwards a backed queue's page0 accesses (from the trapped global aperture) to the page.
struct SlotBackend {
    page: Arc<Page0>,
    lidx: usize,
}

impl Page0Backend for SlotBackend {
    fn read32(&mut self, reg: Page0Reg) -> u32 {
        self.page.read32(self.lidx, reg.offset() as usize)
    }
    fn write32(&mut self, reg: Page0Reg, value: u32) {
        match reg {
            // STATUS and GERROR are hardware-owned.
            Page0Reg::Status | Page0Reg::Gerror => {}
            _ => {
                self.page.write32(self.lidx, reg.offset() as usize, value);
            }
        }
    }
}

/// Passthrough bookkeeping reported at the end.
#[derive(Default, Debug, Clone, Copy)]
pub struct HandoverStats {
    pub handovers: u64,
    pub view_mismatches: u64,
    pub alloc_failures: u64,
}

pub struct Vmm {
    pub ram: Arc<Ram>,
    dev: Mutex<Devices>,
    pub(crate) emit: Emitter,
    trap_ns: u64,
    hw_latency_ns: u64,
    hw_ns_per_cmd: u64,
    page: Arc<Page0>,
    slots: Vec<Mutex<Slot>>,
    pub executed: Arc<AtomicU64>,
    pub stop: AtomicBool,
    handover: Mutex<HandoverStats>,
    geometry: regs::Geometry,
}

fn memfd_page0() -> std::io::Result<memmap2::MmapRaw> {
    let name = std::ffi::CString::new(SIM_PAGE0_MEMFD).expect("no NUL");
    // SAFETY: plain syscalls; results checked.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is ours.
    let file = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    file.set_len(PAGE0_LEN as u64)?;
    let map = memmap2::MmapOptions::new().len(PAGE0_LEN).map_raw(&file)?;
    // Keep the fd open for the life of the process, as a VMM keeps its iommufd: the sampler
    // finds the page through /proc/PID/fd and duplicates it with pidfd_getfd.
    std::mem::forget(file);
    Ok(map)
}

impl Vmm {
    pub fn new(sc: &Scenario, emit: Emitter) -> std::io::Result<Self> {
        let ram = Arc::new(Ram::new(RAM_BASE, RAM_SIZE)?);
        let mut mc = ModelConfig::guest();
        mc.geometry = sc.geometry;
        let cmdqv = Cmdqv::new(mc);
        let mut smmu = Smmu::new();
        smmu.set_cmdqs(12);
        let executed = Arc::new(AtomicU64::new(0));
        let n = cmdqv.geometry().num_vcmdqs();
        let page = Arc::new(
            Page0::new(memfd_page0()?, true).map_err(|e| std::io::Error::other(e.to_string()))?,
        );
        let lv = sc.geometry.lvcmdqs_per_vintf();
        Ok(Self {
            ram,
            dev: Mutex::new(Devices {
                cmdqv,
                smmu,
                sink: VmmSink {
                    executed: executed.clone(),
                    forward_ns: sc.costs.batch_forward_ns,
                },
                log2: vec![0; n],
            }),
            emit,
            trap_ns: sc.costs.trap_ns,
            hw_latency_ns: sc.costs.hw_latency_ns,
            hw_ns_per_cmd: sc.costs.hw_ns_per_cmd,
            page,
            slots: (0..lv).map(|_| Mutex::new(Slot::default())).collect(),
            executed,
            stop: AtomicBool::new(false),
            handover: Mutex::new(HandoverStats::default()),
            geometry: sc.geometry,
        })
    }

    pub fn handover_stats(&self) -> HandoverStats {
        *self.handover.lock().unwrap()
    }

    /// LVCMDQ index of a VINTF0 logical page0 offset.
    fn logical_page0(&self, off: u64) -> Option<(usize, Page0Reg)> {
        match self.geometry.decode(off)? {
            RegRef::Vcmdq {
                aperture: Aperture::Vintf(0),
                slot,
                reg: VcmdqReg::Page0(r),
            } => Some((slot as usize, r)),
            _ => None,
        }
    }

    fn with_dev<R>(&self, f: impl FnOnce(&mut Devices, &Ram, &mut ModelObserver<'_>) -> R) -> R {
        let mut d = self.dev.lock().unwrap_or_else(|p| p.into_inner());
        let log2 = d.log2.clone();
        let lookup = move |q: u16| log2.get(q as usize).copied().unwrap_or(0);
        let mut obs = ModelObserver {
            emit: &self.emit,
            log2size: &lookup,
        };
        f(&mut d, &self.ram, &mut obs)
    }

    fn refresh_log2(d: &mut Devices) {
        for q in 0..d.log2.len() {
            if let Some(v) = d.cmdqv.vcmdq(q) {
                d.log2[q] = v.ring().log2size;
            }
        }
    }

    // ------------------------------------------------------------------------------------------
    // Passthrough: the state machine and the simulated host's hardware thread

    /// Moves LVCMDQ `lidx` of VINTF0 to hardware (`want`) or back to emulation, when its
    /// prerequisites (BASE, ALLOC, CMDQV enabled, VINTF enabled) allow. Carries CONS, PROD,
    /// CONFIG and the error state across; never loses a PROD update because the slot lock
    /// excludes the guest's direct page accesses and the hardware thread during the move.
    pub fn set_backed(&self, lidx: usize, want: bool) {
        let mut d = self.dev.lock().unwrap_or_else(|p| p.into_inner());
        let Some(slot_m) = self.slots.get(lidx) else {
            return;
        };
        let mut slot = slot_m.lock().unwrap_or_else(|p| p.into_inner());
        let Some(v0) = d.cmdqv.vintf(0) else { return };
        let vintf_on = v0.enabled();
        let (vmid, sm, sr) = (v0.vmid(), v0.sid_match.clone(), v0.sid_replace.clone());
        let q = v0.lvcmdq(lidx).map(|q| q as usize);
        match (slot.backed, want) {
            (None, true) => {
                let Some(q) = q else { return };
                let Some(p1) = d.cmdqv.page1_state(q) else {
                    return;
                };
                let base = p1.base & regs::base::ADDR_MASK;
                if base == 0 || !d.cmdqv.enabled() || !vintf_on {
                    return;
                }
                let ring = Ring::new(base, (p1.base & 0x1f) as u32);
                let st = d.cmdqv.page0_state(q).unwrap_or_default();
                // The cache goes into the hardware page: CONS, PROD, CONFIG, GERRORN, and the
                // hardware-owned STATUS/GERROR as the queue had them.
                let pg = &self.page;
                pg.write32(lidx, host::page0::CONS_INDX, st.cons);
                pg.write32(lidx, host::page0::PROD_INDX, st.prod);
                pg.write32(lidx, host::page0::CONFIG, st.config);
                pg.write32(lidx, host::page0::STATUS, st.status);
                pg.write32(lidx, host::page0::GERROR, st.gerror);
                pg.write32(lidx, host::page0::GERRORN, st.gerrorn);
                d.cmdqv.set_backing(
                    q,
                    Some(Box::new(SlotBackend {
                        page: self.page.clone(),
                        lidx,
                    })),
                );
                slot.backed = Some(q);
                slot.ring = Some(ring);
                slot.vmid = vmid;
                slot.sid_match = sm;
                slot.sid_replace = sr;
                slot.last_prod = st.prod;
                self.emit
                    .queue(q as u32, QueueOp::HwAlloc, ring.log2size as u64, 0);
                drop(slot);
                self.count_handover(&mut d, q);
            }
            (Some(q), false) => {
                let pg = &self.page;
                let st = Page0State {
                    cons: pg.read32(lidx, host::page0::CONS_INDX),
                    prod: pg.read32(lidx, host::page0::PROD_INDX),
                    config: pg.read32(lidx, host::page0::CONFIG),
                    status: pg.read32(lidx, host::page0::STATUS),
                    gerror: pg.read32(lidx, host::page0::GERROR),
                    gerrorn: pg.read32(lidx, host::page0::GERRORN),
                };
                d.cmdqv.set_backing(q, None);
                d.cmdqv.set_page0_state(q, st);
                for r in [0usize, 4, 8, 0xc, 0x10, 0x14] {
                    pg.write32(lidx, r, 0);
                }
                slot.backed = None;
                slot.ring = None;
                self.emit.queue(q as u32, QueueOp::HwFree, 0, 0);
                drop(slot);
                // Anything the guest queued meanwhile continues, fully emulated.
                let Devices {
                    cmdqv, sink, log2, ..
                } = &mut *d;
                let lk = log2.clone();
                let lookup = move |x: u16| lk.get(x as usize).copied().unwrap_or(0);
                let mut obs = ModelObserver {
                    emit: &self.emit,
                    log2size: &lookup,
                };
                cmdqv.try_consume(q, &*self.ram, sink, &mut obs);
                self.count_handover(&mut d, q);
            }
            _ => {}
        }
    }

    /// After a move, both apertures must show the same page0 for the queue.
    fn count_handover(&self, d: &mut Devices, q: usize) {
        let mut h = self.handover.lock().unwrap_or_else(|p| p.into_inner());
        h.handovers += 1;
        let Some((vi, l)) = d.cmdqv.mapping(q) else {
            return;
        };
        for r in Page0Reg::ALL {
            let g = regs::GLOBAL_PAGE0 + regs::VCMDQ_STRIDE * q as u64 + r.offset();
            let lo = regs::VINTF_PAGE0
                + regs::VINTF_APERTURE_STRIDE * vi as u64
                + regs::VCMDQ_STRIDE * l as u64
                + r.offset();
            if d.cmdqv.read(g, 4, &mut ()) != d.cmdqv.read(lo, 4, &mut ()) {
                h.view_mismatches += 1;
            }
        }
    }

    /// One pass of the simulated host's hardware over every backed slot: STATUS follows CONFIG,
    /// new PROD values are noticed (the host-observed doorbell), commands are consumed after the
    /// modelled latency with the same engine the model uses. Returns commands consumed.
    pub fn hw_pass(&self) -> u32 {
        let mut total = 0;
        for (lidx, slot_m) in self.slots.iter().enumerate() {
            let mut slot = slot_m.lock().unwrap_or_else(|p| p.into_inner());
            let (Some(q), Some(ring)) = (slot.backed, slot.ring) else {
                continue;
            };
            let pg = &self.page;
            let config = pg.read32(lidx, host::page0::CONFIG);
            let en = config & 1;
            let status = pg.read32(lidx, host::page0::STATUS);
            if status & 1 != en {
                pg.write32(lidx, host::page0::STATUS, (status & !1) | en);
                self.emit
                    .queue(q as u32, QueueOp::Enable, en as u64, ring.log2size as u64);
            }
            if en == 0 {
                continue;
            }
            let mut regs = QueueRegs {
                prod: pg.read32(lidx, host::page0::PROD_INDX) & ring.ptr_mask(),
                cons: pg.read32(lidx, host::page0::CONS_INDX),
                gerror: pg.read32(lidx, host::page0::GERROR),
                gerrorn: pg.read32(lidx, host::page0::GERRORN),
            };
            if regs.prod == regs.cons & ring.ptr_mask() || regs.error_pending() {
                continue;
            }
            if regs.prod != slot.last_prod {
                slot.last_prod = regs.prod;
                self.emit.queue(
                    q as u32,
                    QueueOp::Doorbell,
                    regs.prod as u64,
                    (regs.cons & ring.ptr_mask()) as u64,
                );
            }
            let pending = ring.pending(regs.prod, regs.cons);
            spin_for(self.hw_latency_ns + self.hw_ns_per_cmd * pending as u64);
            let opts = engine::EngineOptions::default();
            let ctx = ExecCtx {
                queue: q as u16,
                kind: QueueKind::VcmdqGuest {
                    vmid: slot.vmid,
                    sid_match: &slot.sid_match,
                    sid_replace: &slot.sid_replace,
                },
                opts: &opts,
            };
            let lookup = |_q: u16| ring.log2size;
            let mut obs = ModelObserver {
                emit: &self.emit,
                log2size: &lookup,
            };
            let mut sink = VmmSink {
                executed: self.executed.clone(),
                forward_ns: 0,
            };
            let out = engine::consume(&ctx, ring, &mut regs, &*self.ram, &mut sink, &mut obs);
            pg.write32(lidx, host::page0::CONS_INDX, regs.cons);
            pg.write32(lidx, host::page0::GERROR, regs.gerror);
            total += out.consumed;
        }
        total
    }

    /// The hardware thread: polls until `stop`.
    pub fn hw_thread(&self) {
        while !self.stop.load(Ordering::Relaxed) {
            if self.hw_pass() == 0 {
                std::thread::sleep(Duration::from_micros(20));
            }
        }
    }
}

impl GuestPort for Vmm {
    fn read(&self, dev: Dev, off: u64, size: u8) -> u64 {
        if dev == Dev::Cmdqv && size == 4 {
            if let Some((lidx, reg)) = self.logical_page0(off) {
                if let Some(slot) = self.slots.get(lidx) {
                    let s = slot.lock().unwrap_or_else(|p| p.into_inner());
                    if s.backed.is_some() {
                        return self.page.read32(lidx, reg.offset() as usize) as u64;
                    }
                }
            }
        }
        spin_for(self.trap_ns);
        self.with_dev(|d, _ram, obs| match dev {
            Dev::Cmdqv => d.cmdqv.read(off, size, obs),
            Dev::Smmu => d.smmu.read(off, size, obs),
        })
    }

    fn write(&self, dev: Dev, off: u64, size: u8, val: u64) {
        if dev == Dev::Cmdqv && size == 4 {
            if let Some((lidx, reg)) = self.logical_page0(off) {
                if let Some(slot) = self.slots.get(lidx) {
                    let s = slot.lock().unwrap_or_else(|p| p.into_inner());
                    if s.backed.is_some() {
                        if !matches!(reg, Page0Reg::Status | Page0Reg::Gerror) {
                            self.page.write32(lidx, reg.offset() as usize, val as u32);
                        }
                        return;
                    }
                }
            }
        }
        spin_for(self.trap_ns);
        let page1 = matches!(
            self.geometry.decode(off),
            Some(RegRef::Vcmdq {
                reg: VcmdqReg::Page1(_),
                ..
            })
        );
        let mut d = self.dev.lock().unwrap_or_else(|p| p.into_inner());
        if page1 {
            // Apply first so the Enable that follows reports the new ring size.
            d.cmdqv
                .write(off, size, val, &*self.ram, &mut d_sink_dummy(), &mut ());
            Self::refresh_log2(&mut d);
            self.emit.mmio(0, off, val, size, true);
            return;
        }
        let Devices {
            cmdqv,
            smmu,
            sink,
            log2,
        } = &mut *d;
        let lk = log2.clone();
        let lookup = move |q: u16| lk.get(q as usize).copied().unwrap_or(0);
        let mut obs = ModelObserver {
            emit: &self.emit,
            log2size: &lookup,
        };
        match dev {
            Dev::Cmdqv => cmdqv.write(off, size, val, &*self.ram, sink, &mut obs),
            Dev::Smmu => smmu.write(off, size, val, &*self.ram, sink, &mut obs),
        }
    }

    fn ram_write_cmd(&self, gpa: u64, cmd: [u64; 2]) {
        // A guest store to its own RAM; a bad address is the guest's bug, ignored like a
        // write to nowhere.
        let _ = self.ram.store_cmd(gpa, cmd);
    }

    fn relax(&self) {
        std::thread::yield_now();
    }
}

/// Page1 writes have no invalidation side effects; a sink that must never be called.
fn d_sink_dummy() -> engine::NullSink {
    engine::NullSink
}

// ----------------------------------------------------------------------------------------------
// Running a scenario

/// Tiny deterministic PRNG (xorshift64*), so runs are reproducible per vCPU.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
}

/// What a run did, from the guest's side.
#[derive(Debug, Default, Clone, Copy)]
pub struct RunStats {
    pub batches: u64,
    /// Workload commands submitted by the vCPUs.
    pub submitted: u64,
    pub errors_recovered: u64,
    pub driver_errors: u64,
    /// Commands the bring-up sequence submitted (deinit flush CMD_SYNCs).
    pub bringup_commands: u64,
    /// Every command the guest submitted, and how many were not executed / executed twice.
    pub submitted_total: u64,
    pub commands_lost: u64,
    pub commands_duplicated: u64,
}

/// Runs `sc` until `duration` or `vmm.stop`; the guest brings the device up exactly as Linux
/// does, then every vCPU submits its workload.
pub fn run(vmm: &Vmm, sc: &Scenario, duration: Duration) -> Result<RunStats, String> {
    let geom = sc.geometry;
    let lvcmdqs = sc.lvcmdqs.min(geom.lvcmdqs_per_vintf() as u32).max(1);
    let cfg = DriverConfig {
        vintf: 0,
        lvcmdqs,
        num_vcmdqs: geom.num_vcmdqs() as u32,
        num_vintfs: geom.num_vintfs() as u32,
        sids_per_vintf: geom.num_sids_per_vintf() as u32,
        vcmdq_log2size: sc.log2size,
        vcmdq_ring_base: VCMDQ_RINGS,
        smmu_log2size: 8,
        smmu_ring_base: SMMU_RING,
        flush_timeout_on_deinit: true,
        poll_timeout: Duration::from_secs(2),
    };
    let mut drv = Driver::new(vmm, cfg);
    let mut main = QueueShadow::default();
    let mut shadows = vec![QueueShadow::default(); lvcmdqs as usize];
    drv.smmu_init(&mut main)
        .map_err(|e| format!("SMMU bring-up: {e}"))?;
    drv.cmdqv_reset(&mut main, &mut shadows)
        .map_err(|e| format!("CMDQV bring-up: {e}"))?;
    let bringup = drv.submitted.load(Ordering::Relaxed);
    // Initial backing per the scenario's path.
    let hw_from_start = matches!(sc.path, Path::Passthrough | Path::Compare);
    if hw_from_start {
        for l in 0..lvcmdqs as usize {
            vmm.set_backed(l, true);
        }
    }
    let deadline = Instant::now() + duration;
    let main = Mutex::new(main);
    let totals = Mutex::new(RunStats::default());
    std::thread::scope(|s| {
        s.spawn(|| vmm.hw_thread());
        if let Path::Handover { period } = sc.path {
            s.spawn(move || {
                let mut on = false;
                while !vmm.stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    std::thread::sleep(period);
                    on = !on;
                    for l in 0..lvcmdqs as usize {
                        vmm.set_backed(l, on);
                    }
                }
            });
        }
        let mut handles = Vec::new();
        for cpu in 0..sc.vcpus {
            let drv = &drv;
            let main = &main;
            let shadow = shadows[(cpu % lvcmdqs) as usize].clone();
            let totals = &totals;
            handles.push(s.spawn(move || {
                let st = vcpu(drv, sc, cpu, shadow, main, deadline, &vmm.stop);
                let mut t = totals.lock().unwrap();
                t.batches += st.batches;
                t.submitted += st.submitted;
                t.errors_recovered += st.errors_recovered;
                t.driver_errors += st.driver_errors;
            }));
        }
        for h in handles {
            let _ = h.join();
        }
        // Everything submitted has completed (each batch waited for CONS): move the queues back
        // so the final state is the model's, then stop the hardware thread.
        if !matches!(sc.path, Path::Emulated) {
            for l in 0..lvcmdqs as usize {
                vmm.set_backed(l, false);
            }
        }
        vmm.stop.store(true, Ordering::Relaxed);
    });
    let mut t = *totals.lock().unwrap();
    t.bringup_commands = bringup;
    t.submitted_total = drv.submitted.load(Ordering::Relaxed);
    let executed = vmm.executed.load(Ordering::Relaxed);
    let h = vmm.handover_stats();
    t.commands_lost = t.submitted_total.saturating_sub(executed);
    t.commands_duplicated = executed.saturating_sub(t.submitted_total);
    if !matches!(sc.path, Path::Emulated) {
        vmm.emit.queue(
            cmdqv_ebpf_common::VMM_QUEUE,
            QueueOp::Handover,
            h.handovers,
            (h.view_mismatches + t.commands_duplicated) | t.commands_lost << 32,
        );
    }
    Ok(t)
}

fn vcpu(
    drv: &Driver<'_, Vmm>,
    sc: &Scenario,
    cpu: u32,
    mut shadow: QueueShadow,
    main: &Mutex<QueueShadow>,
    deadline: Instant,
    stop: &AtomicBool,
) -> RunStats {
    let mut st = RunStats::default();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ ((cpu as u64 + 1) * 0x1234_5678_9abc_def1));
    let lidx = cpu % drv.cfg.lvcmdqs;
    // Per-vCPU rates may differ (multi-queue scenario).
    let rate = (sc.rate_hz as f64 * (1.0 + sc.rate_skew * cpu as f64)).max(1.0);
    let period = Duration::from_secs_f64(1.0 / rate);
    let start = Instant::now();
    let asid = (cpu + 1) as u16;
    let trapped_only = matches!(sc.path, Path::Compare) && cpu == 0;
    let mut n: u64 = 0;
    while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
        n += 1;
        let mut cmds: Vec<[u64; 2]> = Vec::with_capacity(66);
        let k = 1 + rng.below(sc.max_tlbi as u64) as usize;
        if sc.asid_every > 0 && n.is_multiple_of(sc.asid_every as u64) {
            cmds.push(Command::TlbiNhAsid { vmid: 0, asid }.encode());
        } else {
            for _ in 0..k {
                let page = rng.below(1 << 20);
                let num = rng.below(8) as u8;
                cmds.push(
                    Command::TlbiNhVa {
                        vmid: 0,
                        asid,
                        range: VaRange {
                            num,
                            scale: 0,
                            leaf: true,
                            ttl: 3,
                            tg: 1,
                            addr: page << 12,
                        },
                    }
                    .encode(),
                );
            }
        }
        if sc.error_every > 0 && n.is_multiple_of(sc.error_every as u64) && !trapped_only {
            // An illegal command: opcode 0x00 (reserved), as a buggy guest would write.
            let pos = rng.below(cmds.len() as u64 + 1) as usize;
            cmds.insert(pos, [0x00, 0]);
        }
        let r = if trapped_only {
            cmds.push(super::driver::sync_sev());
            let mut m = main.lock().unwrap();
            drv.submit(Target::Main, &mut m, &cmds)
        } else {
            cmds.push(Command::sync_none().encode());
            drv.submit(Target::Vcmdq(lidx), &mut shadow, &cmds)
        };
        match r {
            Ok(s) => {
                st.batches += 1;
                st.submitted += s.commands as u64;
                st.errors_recovered += s.errors_recovered as u64;
            }
            Err(_) => st.driver_errors += 1,
        }
        // Configuration changes go to the trapped SMMU queue (not allowed on a guest VCMDQ).
        if sc.cfgi_every > 0 && n.is_multiple_of(sc.cfgi_every as u64) {
            let sid = 0x10 + cpu;
            let cmds = [
                Command::CfgiSte {
                    sid,
                    ssec: false,
                    leaf: true,
                }
                .encode(),
                Command::CfgiCd {
                    sid,
                    ssid: 0,
                    ssec: false,
                    leaf: true,
                }
                .encode(),
                super::driver::sync_sev(),
            ];
            let mut m = main.lock().unwrap();
            if let Ok(s) = drv.submit(Target::Main, &mut m, &cmds) {
                st.submitted += s.commands as u64;
            }
        }
        let next = start + period.mul_f64(n as f64);
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        }
    }
    st
}
