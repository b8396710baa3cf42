//! Runs a booted sim VMM's vCPUs under KVM: the VM and its memslots (guest RAM; the host's
//! VINTF page0 when it backs every queue the guest uses), one thread per vCPU, the vEVENT
//! thread, a watchdog, and what each vCPU measured.

use std::{
    sync::atomic::{AtomicBool, AtomicU64},
    time::{Duration, Instant},
};

use cmdqv_core::{
    regs::{off, smmu},
    sim::{
        Scenario,
        driver::{QueueShadow, Target},
        vmm::{self, Booted, RunStats, Vmm},
    },
};
use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::{Kvm, VmFd};

use super::{
    arch,
    guest::{self, Area, Job, STATUS_STUCK},
    layout::{self, CMDQV_GPA, SMMU_GPA},
    vcpu::{self, Run, VcpuOutcome},
};

const RAM_SLOT: u32 = 0;
const PAGE0_SLOT: u32 = 1;
/// CONS polls before the guest gives up on a batch (each trapped poll is an exit).
const POLL_MAX: u32 = 50_000_000;
/// How long a guest may overstay its deadline before its vCPU is abandoned.
const GRACE: Duration = Duration::from_secs(2);

/// An open VM, before guest RAM is known.
pub struct KvmEngine {
    _kvm: Kvm,
    vm: VmFd,
}

/// What one vCPU did.
#[derive(Clone, Debug, Default)]
pub struct PathRun {
    pub cpu: u32,
    /// Submitted to the trapped SMMU queue (else to an LVCMDQ).
    pub trapped: bool,
    /// Its LVCMDQ's page0 was a memslot (no exit on PROD/CONS).
    pub direct: bool,
    pub batches: u64,
    pub commands: u64,
    /// Guest-visible batch latencies (ns, from the guest's TSC).
    pub latency_ns: Vec<u64>,
    pub exits: VcpuOutcome,
    pub stuck: bool,
}

/// The run: the totals the sim reports and each vCPU's figures.
#[derive(Clone, Debug, Default)]
pub struct KvmRun {
    pub stats: RunStats,
    pub vcpus: Vec<PathRun>,
    pub elapsed: Duration,
}

impl KvmEngine {
    /// Opens /dev/kvm and creates a VM; the error says why in one line.
    pub fn open() -> Result<Self, String> {
        let kvm = Kvm::new().map_err(|e| format!("cannot open /dev/kvm: {e}"))?;
        let vm = kvm
            .create_vm()
            .map_err(|e| format!("KVM_CREATE_VM failed: {e}"))?;
        Ok(Self { _kvm: kvm, vm })
    }

    /// Whether the engine can run `sc`'s workload: the guest program has no error handler and
    /// cannot follow a queue that moves under it.
    pub fn supports(sc: &Scenario) -> Result<(), String> {
        use cmdqv_core::sim::scenario::Path;
        if sc.error_every > 0 || sc.hw_abt_every > 0 {
            return Err(format!("scenario {} injects errors", sc.name));
        }
        if matches!(sc.path, Path::Handover { .. }) {
            return Err(format!("scenario {} moves queues under load", sc.name));
        }
        Ok(())
    }

    /// Boots the guest's device in the VMM, then runs the vCPUs until `duration` has passed.
    pub fn run(self, vmm: &Vmm, sc: &Scenario, duration: Duration) -> Result<KvmRun, String> {
        self.map(RAM_SLOT, vmm.ram.base(), vmm.ram.len(), vmm.ram.host_ptr())?;
        let ram = &vmm.ram;
        ram.store_bytes(
            ram.base() + layout::CODE_OFF,
            &guest::GuestArch::HOST.code(),
        )
        .map_err(|e| format!("loading the guest code: {e}"))?;
        let b = vmm::boot(vmm, sc)?;
        let lvcmdqs = b.drv.cfg.lvcmdqs;
        let direct = self.map_direct(vmm, lvcmdqs)?;
        let jobs = (0..sc.vcpus)
            .map(|cpu| job(vmm, sc, &b, cpu, direct))
            .collect::<Result<Vec<_>, String>>()?;
        let start = Instant::now();
        let deadline = start + duration;
        let runs = self.run_vcpus(vmm, sc, &jobs, deadline, (direct, lvcmdqs))?;
        let elapsed = start.elapsed();
        let mut t = RunStats::default();
        for r in &runs {
            t.batches += r.batches;
            t.submitted += r.commands;
            t.driver_errors += r.stuck as u64 + r.exits.fault.is_some() as u64;
        }
        let guest_commands = t.submitted;
        let stats = vmm::finish(vmm, sc, &b, t, guest_commands);
        Ok(KvmRun {
            stats,
            vcpus: runs,
            elapsed,
        })
    }

    fn map(&self, slot: u32, gpa: u64, len: usize, host: *mut u8) -> Result<(), String> {
        let region = kvm_userspace_memory_region {
            slot,
            guest_phys_addr: gpa,
            memory_size: len as u64,
            userspace_addr: host as u64,
            flags: 0,
        };
        // SAFETY: `host` is a live mapping of `len` bytes owned by the VMM (guest RAM or the
        // host's page0), which outlives the VM's use of it: the slot is removed (or the VM
        // dropped) before either mapping goes.
        unsafe { self.vm.set_user_memory_region(region) }
            .map_err(|e| format!("KVM_SET_USER_MEMORY_REGION at {gpa:#x}: {e}"))
    }

    fn unmap(&self, slot: u32, gpa: u64) -> Result<(), String> {
        self.map(slot, gpa, 0, std::ptr::null_mut())
    }

    /// Maps the host's VINTF page0 where the guest sees VINTF0's logical page0, when every
    /// LVCMDQ the guest uses is hardware-backed (a partly backed page must keep trapping).
    fn map_direct(&self, vmm: &Vmm, lvcmdqs: u32) -> Result<bool, String> {
        let Some(page) = vmm.direct_page() else {
            return Ok(false);
        };
        if !(0..lvcmdqs as usize).all(|l| vmm.is_backed(l)) {
            return Ok(false);
        }
        let (ptr, len) = page.host_range();
        self.map(PAGE0_SLOT, layout::VINTF0_PAGE0_GPA, len, ptr)?;
        Ok(true)
    }

    fn run_vcpus(
        &self,
        vmm: &Vmm,
        sc: &Scenario,
        jobs: &[(Job, Area, PathRun)],
        deadline: Instant,
        (direct, lvcmdqs): (bool, u32),
    ) -> Result<Vec<PathRun>, String> {
        vcpu::install_kick_handler();
        let mut fds = Vec::new();
        for (cpu, (job, area, _)) in jobs.iter().enumerate() {
            let fd = self
                .vm
                .create_vcpu(cpu as u64)
                .map_err(|e| format!("KVM_CREATE_VCPU: {e}"))?;
            let rip = vmm.ram.base() + layout::CODE_OFF;
            arch::setup(&self.vm, &fd, rip, area.block)?;
            let khz = arch::counter_khz(&fd)?;
            fds.push((fd, khz, job.prod_reg));
        }
        let threads: Vec<AtomicU64> = jobs.iter().map(|_| AtomicU64::new(0)).collect();
        let done: Vec<AtomicBool> = jobs.iter().map(|_| AtomicBool::new(false)).collect();
        let period = Duration::from_secs_f64(1.0 / sc.rate_hz.max(1) as f64);
        let outcomes = std::thread::scope(|s| {
            s.spawn(|| vmm.event_thread());
            let handles: Vec<_> = fds
                .into_iter()
                .enumerate()
                .map(|(i, (mut fd, khz, prod_reg))| {
                    let run = Run {
                        vmm,
                        area: jobs[i].1,
                        prod_reg,
                        period,
                        deadline,
                        hard_deadline: deadline + GRACE,
                        thread: &threads[i],
                        done: &done[i],
                    };
                    s.spawn(move || (run.run(&mut fd), khz))
                })
                .collect();
            vcpu::watchdog(&threads, &done, deadline + GRACE);
            let outs: Vec<_> = handles.into_iter().map(|h| h.join().ok()).collect();
            // Every vCPU is out of KVM_RUN: the page leaves the guest before the queues move
            // back to the model, and the wind-down stops the vEVENT thread.
            let unmapped = if direct {
                self.unmap(PAGE0_SLOT, layout::VINTF0_PAGE0_GPA)
            } else {
                Ok(())
            };
            vmm::wind_down(vmm, sc, lvcmdqs);
            unmapped.map(|()| outs)
        })?;
        let mut runs = Vec::new();
        for ((_, area, base), out) in jobs.iter().zip(outcomes) {
            let (exits, khz) = out.ok_or("a vCPU thread panicked")?;
            runs.push(collect(vmm, *area, base.clone(), exits, khz));
        }
        Ok(runs)
    }
}

/// One vCPU's figures from its parameter block and latency ring.
fn collect(vmm: &Vmm, area: Area, mut r: PathRun, exits: VcpuOutcome, khz: u64) -> PathRun {
    let (batches, status) = vcpu::guest_counts(vmm, area);
    r.batches = batches as u64;
    r.commands *= r.batches;
    r.stuck = status == STATUS_STUCK;
    r.latency_ns = guest::latencies(&vmm.ram, area, batches)
        .into_iter()
        .map(|c| c as u64 * 1_000_000 / khz.max(1))
        .collect();
    r.exits = exits;
    r
}

/// vCPU `cpu`'s job (its queue, ring and doorbell as the guest sees them) and area; the
/// [`PathRun`] carries the commands per batch until the run multiplies them out.
fn job(
    vmm: &Vmm,
    sc: &Scenario,
    b: &Booted<'_>,
    cpu: u32,
    direct: bool,
) -> Result<(Job, Area, PathRun), String> {
    let (target, batch) = vmm::vcpu_work(sc, cpu, b.drv.cfg.lvcmdqs);
    let (shadow, prod_reg, cons_reg): (&QueueShadow, u64, u64) = match target {
        Target::Main => (
            &b.main,
            SMMU_GPA + smmu::CMDQ_PROD,
            SMMU_GPA + smmu::CMDQ_CONS,
        ),
        Target::Vcmdq(l) => (
            &b.shadows[l as usize],
            CMDQV_GPA + b.drv.lvcmdq_page0(l, off::page0::PROD_INDX),
            CMDQV_GPA + b.drv.lvcmdq_page0(l, off::page0::CONS_INDX),
        ),
    };
    let base = vmm.ram.base();
    let area = Area {
        block: base + layout::AREA_OFF + layout::AREA_STRIDE * cpu as u64,
        src: base + layout::AREA_OFF + layout::AREA_STRIDE * cpu as u64 + 0x100,
        lat: base + layout::LAT_OFF + 4 * layout::LAT_ENTRIES as u64 * cpu as u64,
        lat_entries: layout::LAT_ENTRIES,
    };
    let job = Job {
        batch,
        ring: shadow.base,
        log2size: shadow.log2size,
        prod_reg,
        cons_reg,
        prod: shadow.prod,
        poll_max: POLL_MAX,
    };
    guest::write_job(&vmm.ram, area, &job)?;
    let run = PathRun {
        cpu,
        trapped: target == Target::Main,
        direct: direct && target != Target::Main,
        commands: job.batch.len() as u64,
        ..Default::default()
    };
    Ok((job, area, run))
}

#[cfg(test)]
mod tests {
    //! Misbehaving guests under a real KVM vCPU (needs /dev/kvm: runs as root in CI; set
    //! CMDQV_SKIP_PRIVILEGED=1 to skip knowingly).
    use cmdqv_core::sim::{self, emit::Emitter};

    use super::*;

    fn kvm_here() -> bool {
        if std::env::var_os("CMDQV_SKIP_PRIVILEGED").is_some_and(|v| v == "1") {
            eprintln!("CMDQV_SKIP_PRIVILEGED=1: skipping a KVM test");
            return false;
        }
        true
    }

    /// Runs vCPU 0 of trapped-vs-vcmdq (the trapped SMMU queue) for `run_for`, with `code`
    /// instead of the guest program and `bad` applied to its job. Returns its figures and how
    /// long the run took.
    fn misbehave(code: Option<&[u8]>, bad: impl FnOnce(&mut Job)) -> (PathRun, Duration) {
        // One guest at a time: the one that never exits holds a CPU at the vCPUs' priority for
        // the whole grace period, and on two cores the others would wait behind it.
        static ONE_GUEST: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one = ONE_GUEST.lock().unwrap_or_else(|p| p.into_inner());
        let mut sc = sim::scenario("trapped-vs-vcmdq").unwrap();
        sc.vcpus = 1;
        sc.costs = Default::default();
        let vmm = Vmm::new(&sc, Emitter::hooks_only()).unwrap();
        let e = KvmEngine::open().expect("KVM here");
        let ram = &vmm.ram;
        e.map(RAM_SLOT, ram.base(), ram.len(), ram.host_ptr())
            .unwrap();
        let code_at = ram.base() + layout::CODE_OFF;
        ram.store_bytes(code_at, code.unwrap_or(guest::CODE))
            .unwrap();
        let b = vmm::boot(&vmm, &sc).unwrap();
        let (mut job, area, base) = job(&vmm, &sc, &b, 0, false).unwrap();
        bad(&mut job);
        guest::write_job(ram, area, &job).unwrap();
        let start = Instant::now();
        let jobs = [(job, area, base)];
        let deadline = start + Duration::from_millis(300);
        let runs = e
            .run_vcpus(&vmm, &sc, &jobs, deadline, (false, b.drv.cfg.lvcmdqs))
            .unwrap();
        (runs.into_iter().next().unwrap(), start.elapsed())
    }

    #[test]
    fn a_doorbell_to_a_wild_address_is_counted_and_the_run_still_ends() {
        if !kvm_here() {
            return;
        }
        let (r, took) = misbehave(None, |j| j.prod_reg = 0x2000_0000);
        assert!(r.exits.wild_mmio >= 1, "{r:?}");
        assert_eq!(r.exits.doorbell_exits, 1, "the store did exit");
        assert_eq!(r.batches, 0, "nothing was consumed: {r:?}");
        assert!(
            r.exits.fault.is_none(),
            "the guest stopped when told: {r:?}"
        );
        assert!(took < GRACE, "took {took:?}");
    }

    #[test]
    fn a_ring_outside_guest_ram_traps_its_stores_and_nothing_is_consumed() {
        if !kvm_here() {
            return;
        }
        // The ring's stores land in no memslot: each is an MMIO exit outside every device.
        let (r, _) = misbehave(None, |j| j.ring = 0x3000_0000);
        assert!(r.exits.wild_mmio >= 2, "{r:?}");
        assert!(r.exits.fault.is_none(), "{r:?}");
    }

    #[test]
    fn a_guest_that_never_exits_is_kicked_out_at_the_hard_deadline() {
        if !kvm_here() {
            return;
        }
        let (r, took) = misbehave(Some(&[0xeb, 0xfe]), |_| {}); // jmp $
        assert_eq!(
            r.exits.fault.as_deref(),
            Some("the guest did not stop by its deadline")
        );
        assert!(
            took >= GRACE && took < GRACE + Duration::from_secs(2),
            "took {took:?}"
        );
    }

    #[test]
    fn a_triple_fault_ends_the_vcpu_and_is_reported() {
        if !kvm_here() {
            return;
        }
        // ud2 with no IDT: #UD, then #DF, then a shutdown.
        let (r, took) = misbehave(Some(&[0x0f, 0x0b]), |_| {});
        assert_eq!(
            r.exits.fault.as_deref(),
            Some("the guest shut down (triple fault)")
        );
        assert!(took < GRACE, "took {took:?}");
    }
}
