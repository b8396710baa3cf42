//! The sim VMM: guest RAM, the CMDQV model and the SMMU model behind one device lock (like a
//! VMM's big lock), a host backend ([`SimulatedHost`] by default: hardware queues on a memfd
//! VINTF page0, as iommufd's mmap would be, consumed by its own hardware thread), the
//! passthrough state machine ([`Passthrough`]) that carries a queue's state between the model's
//! cache and that page, and the vCPU threads running the synthetic guest driver.
//!
//! Trapped accesses (everything except a hardware-backed LVCMDQ's logical page0) go through the
//! device lock and the models, and report through [`Emitter`] (uprobe hooks + optional pipe);
//! after each one the passthrough state machine re-evaluates the queues. A hardware-backed
//! LVCMDQ's logical page0 is the host page itself ([`DirectPath`]): the guest's PROD store does
//! not trap, exactly the point of VCMDQ passthrough.

use std::{
    num::NonZeroU32,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use super::{
    driver::{Dev, Driver, DriverConfig, GuestPort, QueueShadow, Target},
    emit::{Emitter, ModelObserver},
    ram::Ram,
    scenario::{Path, Scenario},
};
use crate::{
    command::{Command, VaRange},
    engine::{self, Invalidation, InvalidationSink, MAIN_CMDQ_ID, ModelEvent, Observer},
    event::{Device, QueueEvent, VMM_QUEUE},
    host::{
        HostBackend,
        passthrough::{
            DirectPath, HwPolicy, PassEvent, PassStats, Passthrough, PassthroughOptions,
        },
        simulated::{HostHardware, Injection, SimHostConfig, SimulatedHost, spin_for},
    },
    model::{Cmdqv, ModelConfig},
    regs::{self, Aperture, Cerror, Page0Reg, RegRef, VcmdqReg},
    smmu::Smmu,
};

/// Guest RAM base (as QEMU's virt machine).
pub const RAM_BASE: u64 = 0x4000_0000;
const RAM_SIZE: usize = 64 << 20;
const SMMU_RING: u64 = RAM_BASE + 0x10_0000;
const VCMDQ_RINGS: u64 = RAM_BASE + 0x100_0000;

/// A sink shared by the model and the host (tests record every execution through it).
pub type SharedSink = Arc<Mutex<dyn InvalidationSink + Send>>;

/// Counts what the "host SMMU" executed and charges the modelled cost of the trapped path.
struct VmmSink {
    executed: Arc<AtomicU64>,
    /// Trapped path: forwarding one batch (HWPT_INVALIDATE + the host's CMD_SYNC), charged at
    /// each CMD_SYNC of the main queue.
    forward_ns: u64,
    tap: Option<SharedSink>,
}

impl InvalidationSink for VmmSink {
    fn invalidate(&mut self, queue: u16, inv: Invalidation) -> Result<(), Cerror> {
        if let Some(t) = &self.tap {
            t.lock()
                .unwrap_or_else(|p| p.into_inner())
                .invalidate(queue, inv)?;
        }
        self.executed.fetch_add(1, Ordering::Relaxed);
        if queue == MAIN_CMDQ_ID && matches!(inv, Invalidation::Sync(_)) {
            spin_for(self.forward_ns);
        }
        Ok(())
    }
}

type Log2 = Arc<Vec<AtomicU8>>;

fn lookup(log2: &Log2) -> impl Fn(u16) -> u8 + '_ {
    move |q: u16| {
        log2.get(q as usize)
            .map(|a| a.load(Ordering::Relaxed))
            .unwrap_or(0)
    }
}

/// The simulated hardware's consumption reported like the model's (LVCMDQ index = global
/// VCMDQ index for VINTF0, as Linux pre-assigns them).
struct HostObs {
    emit: Emitter,
    log2: Log2,
}

impl Observer for HostObs {
    fn event(&mut self, ev: ModelEvent) {
        let f = lookup(&self.log2);
        ModelObserver {
            emit: &self.emit,
            log2size: &f,
        }
        .event(ev)
    }
}

struct Devices {
    cmdqv: Cmdqv,
    smmu: Smmu,
    sink: VmmSink,
    pass: Passthrough,
}

/// Passthrough bookkeeping reported at the end.
#[derive(Default, Debug, Clone, Copy)]
pub struct HandoverStats {
    pub handovers: u64,
    pub view_mismatches: u64,
    pub alloc_failures: u64,
}

/// How a [`Vmm`] backs its VCMDQs.
pub struct VmmOptions {
    /// When to try hardware (default: [`HwPolicy::Never`] for [`Path::Emulated`] scenarios,
    /// [`HwPolicy::WhenReady`] otherwise).
    pub pass: PassthroughOptions,
    /// The simulated host's configuration (ignored with `backend`).
    pub host: SimHostConfig,
    /// Another host backend (e.g. `IommufdBackend` on a real host) instead of the simulated one.
    pub backend: Option<Box<dyn HostBackend>>,
    /// Every command executed by the model or the simulated host also goes here.
    pub tap: Option<SharedSink>,
}

impl VmmOptions {
    /// The defaults for a scenario: a simulated host with a hardware thread and the scenario's
    /// modelled latency.
    pub fn for_scenario(sc: &Scenario) -> Self {
        let lv = sc.geometry.lvcmdqs_per_vintf().max(1);
        Self {
            pass: PassthroughOptions {
                policy: if sc.path == Path::Emulated {
                    HwPolicy::Never
                } else {
                    HwPolicy::WhenReady
                },
                ..Default::default()
            },
            host: SimHostConfig {
                log2vcmdqs: lv.trailing_zeros().max(1) as u8,
                log2vsids: sc.geometry.num_sid_per_vintf_log2.max(4),
                latency_ns: sc.costs.hw_latency_ns,
                ns_per_cmd: sc.costs.hw_ns_per_cmd,
                inject: (sc.hw_abt_every > 0).then_some(Injection {
                    every: sc.hw_abt_every,
                    cerror: Cerror::Abt,
                }),
                ..Default::default()
            },
            backend: None,
            tap: None,
        }
    }
}

pub struct Vmm {
    pub ram: Arc<Ram>,
    dev: Mutex<Devices>,
    pub(crate) emit: Emitter,
    trap_ns: u64,
    direct: Arc<DirectPath>,
    hardware: Option<HostHardware>,
    log2: Log2,
    pub executed: Arc<AtomicU64>,
    pub stop: AtomicBool,
    handover: Mutex<HandoverStats>,
    notes: Mutex<Vec<String>>,
    geometry: regs::Geometry,
}

impl Vmm {
    pub fn new(sc: &Scenario, emit: Emitter) -> std::io::Result<Self> {
        Self::with_options(sc, emit, VmmOptions::for_scenario(sc))
    }

    pub fn with_options(sc: &Scenario, emit: Emitter, o: VmmOptions) -> std::io::Result<Self> {
        let ram = Arc::new(Ram::new(RAM_BASE, RAM_SIZE)?);
        let mut mc = ModelConfig::guest();
        mc.geometry = sc.geometry;
        let cmdqv = Cmdqv::new(mc);
        let mut smmu = Smmu::new();
        smmu.set_cmdqs(12);
        let executed = Arc::new(AtomicU64::new(0));
        let n = cmdqv.geometry().num_vcmdqs();
        let log2: Log2 = Arc::new((0..n).map(|_| AtomicU8::new(0)).collect());
        let mut hardware = None;
        let backend = match o.backend {
            Some(b) => b,
            None => {
                let h = SimulatedHost::new(
                    o.host,
                    ram.clone(),
                    Box::new(VmmSink {
                        executed: executed.clone(),
                        forward_ns: 0,
                        tap: o.tap.clone(),
                    }),
                    Some(Box::new(HostObs {
                        emit: emit.clone(),
                        log2: log2.clone(),
                    })),
                );
                hardware = Some(h.hardware());
                Box::new(h)
            }
        };
        let (pass, evs) = Passthrough::attach(backend, o.pass, sc.geometry.lvcmdqs_per_vintf());
        let direct = pass.direct();
        let vmm = Self {
            ram,
            dev: Mutex::new(Devices {
                cmdqv,
                smmu,
                sink: VmmSink {
                    executed: executed.clone(),
                    forward_ns: sc.costs.batch_forward_ns,
                    tap: o.tap,
                },
                pass,
            }),
            emit,
            trap_ns: sc.costs.trap_ns,
            direct,
            hardware,
            log2,
            executed,
            stop: AtomicBool::new(false),
            handover: Mutex::new(HandoverStats::default()),
            notes: Mutex::new(Vec::new()),
            geometry: sc.geometry,
        };
        {
            let mut d = vmm.lock();
            vmm.report(&mut d, evs);
        }
        Ok(vmm)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Devices> {
        self.dev.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn handover_stats(&self) -> HandoverStats {
        *self.handover.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn pass_stats(&self) -> PassStats {
        self.lock().pass.stats
    }

    /// Why passthrough is off, if the host refused it.
    pub fn notes(&self) -> Vec<String> {
        self.notes.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The simulated host's hardware (to step it by hand with a manual consumer).
    pub fn hardware(&self) -> Option<&HostHardware> {
        self.hardware.as_ref()
    }

    /// The hardware page0 of VINTF0 (the host's mapping), once passthrough mapped it.
    pub fn direct_page(&self) -> Option<Arc<crate::host::Page0>> {
        self.direct.page().cloned()
    }

    /// Whether LVCMDQ `lidx` of VINTF0 is hardware-backed now.
    pub fn is_backed(&self, lidx: usize) -> bool {
        self.direct.is_backed(lidx)
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

    fn refresh_log2(&self, d: &Devices) {
        for (q, a) in self.log2.iter().enumerate() {
            if let Some(v) = d.cmdqv.vcmdq(q) {
                a.store(v.ring().log2size, Ordering::Relaxed);
            }
        }
    }

    // ------------------------------------------------------------------------------------------
    // Passthrough

    /// Runs the passthrough state machine after a trapped access (or a policy change).
    fn sync(&self, d: &mut Devices) {
        let Devices {
            cmdqv, sink, pass, ..
        } = d;
        let f = lookup(&self.log2);
        let mut obs = ModelObserver {
            emit: &self.emit,
            log2size: &f,
        };
        let mut evs = Vec::new();
        pass.sync(cmdqv, &*self.ram, sink, &mut obs, &mut evs);
        self.report(d, evs);
    }

    fn report(&self, d: &mut Devices, evs: Vec<PassEvent>) {
        for e in evs {
            match e {
                PassEvent::HwAlloc { q, log2size, .. } => {
                    let ok = QueueEvent::HwAlloc {
                        log2size,
                        errno: None,
                    };
                    self.emit.queue(q as u32, ok);
                    self.count_handover(d, q as usize);
                }
                PassEvent::HwAllocFailed {
                    q, log2size, errno, ..
                } => {
                    let failed = QueueEvent::HwAlloc {
                        log2size,
                        errno: NonZeroU32::new(errno as u32),
                    };
                    self.emit.queue(q as u32, failed);
                    self.handover
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .alloc_failures += 1;
                }
                PassEvent::HwFree { q, .. } => {
                    self.emit.queue(q as u32, QueueEvent::HwFree);
                    // The move stopped the hardware queue (its STATUS went to 0, which the
                    // hardware reported); the guest's queue is as enabled as its CONFIG says.
                    let en = d.cmdqv.page0_state(q as usize).unwrap_or_default().config & 1;
                    let enable = QueueEvent::Enable {
                        enabled: en != 0,
                        log2size: lookup(&self.log2)(q),
                    };
                    self.emit.queue(q as u32, enable);
                    self.count_handover(d, q as usize);
                }
                PassEvent::AttachFailed { error } | PassEvent::MapFailed { error } => self
                    .notes
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(format!("passthrough off, every VCMDQ emulated: {error}")),
                _ => {}
            }
        }
    }

    /// Moves LVCMDQ `lidx` of VINTF0 to hardware (`want`, when its prerequisites allow) or keeps
    /// it emulated. The state machine carries CONS, PROD, CONFIG and the error state across.
    pub fn set_backed(&self, lidx: usize, want: bool) {
        let mut d = self.lock();
        d.pass.set_hold(lidx, !want);
        self.sync(&mut d);
    }

    /// [`Vmm::set_backed`] for LVCMDQs `0..lvcmdqs`.
    fn set_all_backed(&self, lvcmdqs: u32, want: bool) {
        for l in 0..lvcmdqs as usize {
            self.set_backed(l, want);
        }
    }

    /// Reads the host's vEVENTs and reflects hardware errors into the model (maps, interrupt).
    pub fn poll_host_events(&self) {
        let mut d = self.lock();
        let Devices { cmdqv, pass, .. } = &mut *d;
        let f = lookup(&self.log2);
        let mut obs = ModelObserver {
            emit: &self.emit,
            log2size: &f,
        };
        let mut evs = Vec::new();
        if let Err(e) = pass.poll_events(cmdqv, &mut obs, &mut evs) {
            self.notes
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(format!("reading vEVENTs: {e}"));
        }
        self.report(&mut d, evs);
    }

    /// The VMM's event loop for vEVENTs: polls until `stop`.
    pub fn event_thread(&self) {
        while !self.stop.load(Ordering::Relaxed) {
            self.poll_host_events();
            std::thread::sleep(Duration::from_micros(50));
        }
    }

    /// After a move, both apertures must show the same page0 for the queue. A hardware-backed
    /// queue's CONS may move between the two reads, so a difference counts only if it persists.
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
            let agree = (0..3).any(|_| d.cmdqv.read(g, 4, &mut ()) == d.cmdqv.read(lo, 4, &mut ()));
            if !agree {
                h.view_mismatches += 1;
            }
        }
    }
}

impl GuestPort for Vmm {
    fn read(&self, dev: Dev, off: u64, size: u8) -> u64 {
        if dev == Dev::Cmdqv && size == 4 {
            if let Some((lidx, reg)) = self.logical_page0(off) {
                if let Some(v) = self.direct.read(lidx, reg) {
                    return v as u64;
                }
            }
        }
        spin_for(self.trap_ns);
        let mut d = self.lock();
        let f = lookup(&self.log2);
        let mut obs = ModelObserver {
            emit: &self.emit,
            log2size: &f,
        };
        match dev {
            Dev::Cmdqv => d.cmdqv.read(off, size, &mut obs),
            Dev::Smmu => d.smmu.read(off, size, &mut obs),
        }
    }

    fn write(&self, dev: Dev, off: u64, size: u8, val: u64) {
        if dev == Dev::Cmdqv && size == 4 {
            if let Some((lidx, reg)) = self.logical_page0(off) {
                if self.direct.write(lidx, reg, val as u32) {
                    return;
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
        let mut d = self.lock();
        if page1 && dev == Dev::Cmdqv {
            // Apply first so the Enable that follows reports the new ring size.
            d.cmdqv
                .write(off, size, val, &*self.ram, &mut engine::NullSink, &mut ());
            self.refresh_log2(&d);
            self.emit.mmio(Device::Cmdqv, off, val, size, true);
            self.sync(&mut d);
            return;
        }
        {
            let Devices {
                cmdqv, smmu, sink, ..
            } = &mut *d;
            let f = lookup(&self.log2);
            let mut obs = ModelObserver {
                emit: &self.emit,
                log2size: &f,
            };
            match dev {
                Dev::Cmdqv => cmdqv.write(off, size, val, &*self.ram, sink, &mut obs),
                Dev::Smmu => smmu.write(off, size, val, &*self.ram, sink, &mut obs),
            }
        }
        if dev == Dev::Cmdqv {
            self.sync(&mut d);
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

impl RunStats {
    /// Folds one vCPU's counts into the run's.
    fn add_vcpu(&mut self, st: &RunStats) {
        self.batches += st.batches;
        self.submitted += st.submitted;
        self.errors_recovered += st.errors_recovered;
        self.driver_errors += st.driver_errors;
    }
}

/// Runs `sc` until `duration` or `vmm.stop`; the guest brings the device up exactly as Linux
/// does, then every vCPU submits its workload.
pub fn run(vmm: &Vmm, sc: &Scenario, duration: Duration) -> Result<RunStats, String> {
    let b = boot(vmm, sc)?;
    let deadline = Instant::now() + duration;
    let t = run_vcpus(vmm, sc, &b.drv, &b.shadows, b.main.clone(), deadline);
    Ok(finish(vmm, sc, &b, t, 0))
}

/// A guest after bring-up: the driver (and its command count) and the software state of the
/// SMMU queue and of every LVCMDQ, for whichever engine runs the vCPUs next.
pub struct Booted<'v> {
    pub drv: Driver<'v, Vmm>,
    pub main: QueueShadow,
    pub shadows: Vec<QueueShadow>,
    bringup_commands: u64,
}

/// Brings the device up as Linux does and backs the queues as the scenario's path says.
pub fn boot<'v>(vmm: &'v Vmm, sc: &Scenario) -> Result<Booted<'v>, String> {
    let cfg = driver_config(sc);
    let lvcmdqs = cfg.lvcmdqs;
    let mut drv = Driver::new(vmm, cfg);
    let mut main = QueueShadow::default();
    let mut shadows = vec![QueueShadow::default(); lvcmdqs as usize];
    drv.smmu_init(&mut main)
        .map_err(|e| format!("SMMU bring-up: {e}"))?;
    drv.cmdqv_reset(&mut main, &mut shadows)
        .map_err(|e| format!("CMDQV bring-up: {e}"))?;
    let bringup_commands = drv.submitted.load(Ordering::Relaxed);
    // Initial backing per the scenario's path.
    if matches!(sc.path, Path::Passthrough | Path::Compare) {
        vmm.set_all_backed(lvcmdqs, true);
    }
    Ok(Booted {
        drv,
        main,
        shadows,
        bringup_commands,
    })
}

/// The run's totals once the vCPUs stopped: `t` from the vCPUs, plus `guest_commands` the
/// driver did not see (submitted by guest code in real vCPUs).
pub fn finish(
    vmm: &Vmm,
    sc: &Scenario,
    b: &Booted<'_>,
    mut t: RunStats,
    guest_commands: u64,
) -> RunStats {
    t.bringup_commands = b.bringup_commands;
    t.submitted_total = b.drv.submitted.load(Ordering::Relaxed) + guest_commands;
    account(vmm, sc, &mut t);
    t
}

/// What vCPU `cpu` submits to, and one batch of its workload (the first of its stream).
pub fn vcpu_work(sc: &Scenario, cpu: u32, lvcmdqs: u32) -> (Target, Vec<[u64; 2]>) {
    let mut w = Workload::new(sc, cpu);
    let target = if w.trapped_only {
        Target::Main
    } else {
        Target::Vcmdq(cpu % lvcmdqs.max(1))
    };
    (target, w.batch(1))
}

/// Everything submitted has completed (each batch waited for CONS): moves the queues back so
/// the final state is the model's, then stops the hardware and vEVENT threads.
pub fn wind_down(vmm: &Vmm, sc: &Scenario, lvcmdqs: u32) {
    if !matches!(sc.path, Path::Emulated) {
        vmm.set_all_backed(lvcmdqs, false);
    }
    vmm.stop.store(true, Ordering::Relaxed);
}

/// The guest's driver setup for a scenario: VINTF0 with the scenario's LVCMDQs, rings in RAM.
fn driver_config(sc: &Scenario) -> DriverConfig {
    let geom = sc.geometry;
    DriverConfig {
        vintf: 0,
        lvcmdqs: sc.lvcmdqs.min(geom.lvcmdqs_per_vintf() as u32).max(1),
        num_vcmdqs: geom.num_vcmdqs() as u32,
        num_vintfs: geom.num_vintfs() as u32,
        sids_per_vintf: geom.num_sids_per_vintf() as u32,
        vcmdq_log2size: sc.log2size,
        vcmdq_ring_base: VCMDQ_RINGS,
        smmu_log2size: 8,
        smmu_ring_base: SMMU_RING,
        flush_timeout_on_deinit: true,
        poll_timeout: Duration::from_secs(2),
    }
}

/// Runs every vCPU (plus the vEVENT thread and, for a handover scenario, the mover) until the
/// deadline, then moves the queues back to the model and stops the hardware thread.
fn run_vcpus(
    vmm: &Vmm,
    sc: &Scenario,
    drv: &Driver<'_, Vmm>,
    shadows: &[QueueShadow],
    main: QueueShadow,
    deadline: Instant,
) -> RunStats {
    let lvcmdqs = drv.cfg.lvcmdqs;
    let main = Mutex::new(main);
    let totals = Mutex::new(RunStats::default());
    std::thread::scope(|s| {
        s.spawn(|| vmm.event_thread());
        if let Path::Handover { period } = sc.path {
            s.spawn(move || {
                let mut on = false;
                while !vmm.stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    std::thread::sleep(period);
                    on = !on;
                    vmm.set_all_backed(lvcmdqs, on);
                }
            });
        }
        let (main, totals) = (&main, &totals);
        let handles: Vec<_> = (0..sc.vcpus)
            .map(|cpu| {
                let shadow = shadows[(cpu % lvcmdqs) as usize].clone();
                s.spawn(move || {
                    let st = vcpu(drv, sc, cpu, shadow, main, deadline, &vmm.stop);
                    totals.lock().unwrap().add_vcpu(&st);
                })
            })
            .collect();
        for h in handles {
            let _ = h.join();
        }
        wind_down(vmm, sc, lvcmdqs);
    });
    totals.into_inner().unwrap()
}

/// Lost and duplicated commands (submitted against executed), reported with the handovers.
fn account(vmm: &Vmm, sc: &Scenario, t: &mut RunStats) {
    let executed = vmm.executed.load(Ordering::Relaxed);
    let h = vmm.handover_stats();
    t.commands_lost = t.submitted_total.saturating_sub(executed);
    t.commands_duplicated = executed.saturating_sub(t.submitted_total);
    if !matches!(sc.path, Path::Emulated) {
        let sat = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
        let report = QueueEvent::Handover {
            handovers: h.handovers,
            view_mismatches: sat(h.view_mismatches + t.commands_duplicated),
            commands_lost: sat(t.commands_lost),
        };
        vmm.emit.queue(VMM_QUEUE, report);
    }
}

/// What one vCPU submits: its own ASID, a reproducible random stream, and whether it uses only
/// the trapped SMMU queue (vCPU 0 of the comparison scenario).
struct Workload<'a> {
    sc: &'a Scenario,
    rng: Rng,
    asid: u16,
    trapped_only: bool,
}

impl<'a> Workload<'a> {
    fn new(sc: &'a Scenario, cpu: u32) -> Self {
        Self {
            sc,
            rng: Rng(0x9e37_79b9_7f4a_7c15 ^ ((cpu as u64 + 1) * 0x1234_5678_9abc_def1)),
            asid: (cpu + 1) as u16,
            trapped_only: matches!(sc.path, Path::Compare) && cpu == 0,
        }
    }

    /// Batch `n`: 1..=max_tlbi TLBI_NH_VA (or one TLBI_NH_ASID), maybe an illegal command, and
    /// the completion CMD_SYNC (CS=SEV on the main queue, CS=NONE on a VCMDQ).
    fn batch(&mut self, n: u64) -> Vec<[u64; 2]> {
        let (sc, rng) = (self.sc, &mut self.rng);
        let mut cmds: Vec<[u64; 2]> = Vec::with_capacity(66);
        let k = 1 + rng.below(sc.max_tlbi as u64) as usize;
        if sc.asid_every > 0 && n.is_multiple_of(sc.asid_every as u64) {
            cmds.push(
                Command::TlbiNhAsid {
                    vmid: 0,
                    asid: self.asid,
                }
                .encode(),
            );
        } else {
            for _ in 0..k {
                let page = rng.below(1 << 20);
                let num = rng.below(8) as u8;
                cmds.push(
                    Command::TlbiNhVa {
                        vmid: 0,
                        asid: self.asid,
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
        if sc.error_every > 0 && n.is_multiple_of(sc.error_every as u64) && !self.trapped_only {
            // An illegal command: opcode 0x00 (reserved), as a buggy guest would write.
            let pos = rng.below(cmds.len() as u64 + 1) as usize;
            cmds.insert(pos, [0x00, 0]);
        }
        cmds.push(if self.trapped_only {
            super::driver::sync_sev()
        } else {
            Command::sync_none().encode()
        });
        cmds
    }
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
    let mut work = Workload::new(sc, cpu);
    let lidx = cpu % drv.cfg.lvcmdqs;
    // Per-vCPU rates may differ (multi-queue scenario).
    let rate = (sc.rate_hz as f64 * (1.0 + sc.rate_skew * cpu as f64)).max(1.0);
    let period = Duration::from_secs_f64(1.0 / rate);
    let start = Instant::now();
    let mut n: u64 = 0;
    while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
        n += 1;
        let cmds = work.batch(n);
        let r = if work.trapped_only {
            drv.submit(Target::Main, &mut main.lock().unwrap(), &cmds)
        } else {
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
            st.submitted += submit_cfgi(drv, main, cpu);
        }
        let next = start + period.mul_f64(n as f64);
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        }
    }
    st
}

/// CFGI_STE + CFGI_CD for the vCPU's StreamID and a CMD_SYNC on the trapped SMMU queue; returns
/// the commands submitted (0 if the driver gave up).
fn submit_cfgi(drv: &Driver<'_, Vmm>, main: &Mutex<QueueShadow>, cpu: u32) -> u64 {
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
    drv.submit(Target::Main, &mut m, &cmds)
        .map_or(0, |s| s.commands as u64)
}
