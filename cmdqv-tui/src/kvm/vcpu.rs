//! One KVM vCPU of the sim's guest: the guest program's loop (set up by `arch`), and every exit
//! handled the way a VMM handles it (MMIO to the device models, the pacing exit, a halt or the
//! aarch64 program's stop store, a shutdown), bounded by a deadline so a guest that misbehaves
//! ends the run, not the VMM.

use std::{
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
    time::{Duration, Instant},
};

use cmdqv_core::sim::{driver::GuestPort as _, vmm::Vmm};
use kvm_ioctls::{VcpuExit, VcpuFd};

use super::{
    guest::{self, Area, PACING_PORT, param},
    layout,
};

/// The aarch64 program's stop store (8 bytes above its pacing store).
#[cfg(target_arch = "aarch64")]
const STOP_GPA: u64 = layout::PACING_GPA + 8;

/// What one vCPU's exits were.
#[derive(Clone, Debug, Default)]
pub struct VcpuOutcome {
    /// The vCPU thread's id (what `kvm:kvm_exit` records carry as their tid).
    pub tid: u32,
    pub mmio_exits: u64,
    /// Pacing exits: the x86 program's port write, the aarch64 program's pacing-page store.
    pub pio_exits: u64,
    pub doorbell_exits: u64,
    /// Accesses outside every device window (read as all-ones, writes dropped).
    pub wild_mmio: u64,
    /// VMM time in MMIO exits (KVM_RUN's return to the next KVM_RUN).
    pub mmio_ns: u64,
    /// Why the vCPU ended other than by a clean stop.
    pub fault: Option<String>,
}

/// How one vCPU runs: its area in RAM, its doorbell, its pacing and its deadlines.
pub struct Run<'a> {
    pub vmm: &'a Vmm,
    pub area: Area,
    pub prod_reg: u64,
    pub period: Duration,
    /// Past this, the guest is told to stop.
    pub deadline: Instant,
    /// Past this (a guest that does not stop), the vCPU is abandoned.
    pub hard_deadline: Instant,
    /// The thread id the watchdog signals to kick the vCPU out of KVM_RUN.
    pub thread: &'a AtomicU64,
    pub done: &'a AtomicBool,
}

impl Run<'_> {
    /// Runs the vCPU until the guest halts, faults or overstays the hard deadline.
    pub fn run(&self, vcpu: &mut VcpuFd) -> VcpuOutcome {
        // SAFETY: pthread_self has no preconditions.
        self.thread
            .store(unsafe { libc::pthread_self() } as u64, Ordering::Release);
        // The vCPU is measured against the hardware thread, which runs at the highest nice
        // priority: the same for the vCPU, or a busy host's other tasks are what gets measured.
        // SAFETY: setpriority(PRIO_PROCESS, 0, ..) affects only the calling thread on Linux.
        unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, -20) };
        avoid_hardware_cpu();
        let mut out = VcpuOutcome {
            // SAFETY: gettid has no preconditions.
            tid: unsafe { libc::gettid() } as u32,
            ..Default::default()
        };
        let start = Instant::now();
        let mut paced: u32 = 0;
        loop {
            let exit = vcpu.run();
            let now = Instant::now();
            if now > self.deadline {
                guest::request_stop(&self.vmm.ram, self.area);
            }
            if now > self.hard_deadline {
                out.fault = Some("the guest did not stop by its deadline".into());
                break;
            }
            match exit {
                // Arm has no ports: the aarch64 program paces and stops with stores to a page
                // no memslot or device covers.
                #[cfg(target_arch = "aarch64")]
                Ok(VcpuExit::MmioWrite(layout::PACING_GPA, _)) => {
                    out.pio_exits += 1;
                    paced += 1;
                    self.pace(start, paced);
                }
                #[cfg(target_arch = "aarch64")]
                Ok(VcpuExit::MmioWrite(STOP_GPA, _)) => break,
                Ok(VcpuExit::MmioWrite(addr, data)) => {
                    out.mmio_exits += 1;
                    out.doorbell_exits += (addr == self.prod_reg) as u64;
                    self.mmio_write(addr, data, &mut out);
                    out.mmio_ns += now.elapsed().as_nanos() as u64;
                }
                Ok(VcpuExit::MmioRead(addr, data)) => {
                    out.mmio_exits += 1;
                    self.mmio_read(addr, data, &mut out);
                    out.mmio_ns += now.elapsed().as_nanos() as u64;
                }
                Ok(VcpuExit::IoOut(PACING_PORT, _)) => {
                    out.pio_exits += 1;
                    paced += 1;
                    self.pace(start, paced);
                }
                Ok(VcpuExit::Hlt) => break,
                Ok(VcpuExit::Shutdown) => {
                    out.fault = Some("the guest shut down (triple fault)".into());
                    break;
                }
                Ok(other) => {
                    out.fault = Some(format!("unexpected vCPU exit {other:?}"));
                    break;
                }
                Err(e) if e.errno() == libc::EINTR => {}
                Err(e) => {
                    out.fault = Some(format!("KVM_RUN: {e}"));
                    break;
                }
            }
        }
        self.done.store(true, Ordering::Release);
        out
    }

    fn mmio_write(&self, addr: u64, data: &[u8], out: &mut VcpuOutcome) {
        let mut v = [0u8; 8];
        let n = data.len().min(8);
        v[..n].copy_from_slice(&data[..n]);
        match layout::device_at(addr) {
            Some((dev, off)) => self.vmm.write(dev, off, n as u8, u64::from_le_bytes(v)),
            None => out.wild_mmio += 1,
        }
    }

    fn mmio_read(&self, addr: u64, data: &mut [u8], out: &mut VcpuOutcome) {
        let v = match layout::device_at(addr) {
            Some((dev, off)) => self.vmm.read(dev, off, data.len() as u8),
            None => {
                out.wild_mmio += 1;
                u64::MAX
            }
        };
        let n = data.len().min(8);
        data[..n].copy_from_slice(&v.to_le_bytes()[..n]);
    }

    /// Holds the vCPU until batch `n`'s slot at the scenario's rate (or the deadline).
    fn pace(&self, start: Instant, n: u32) {
        let next = (start + self.period * n).min(self.deadline);
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        }
    }
}

/// Keeps this vCPU thread off the CPU the simulated hardware polls on (best effort).
fn avoid_hardware_cpu() {
    let Some(hw) = cmdqv_core::host::simulated::hardware_cpu() else {
        return;
    };
    // SAFETY: a local cpu_set_t, applied to the calling thread only.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for cpu in 0..hw {
            libc::CPU_SET(cpu, &mut set);
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Installs a do-nothing SIGUSR1 handler (without SA_RESTART), so a signal makes KVM_RUN
/// return EINTR: the watchdog's way to get a vCPU that never exits back to the VMM.
pub fn install_kick_handler() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    extern "C" fn nothing(_: libc::c_int) {}
    ONCE.call_once(|| {
        // SAFETY: a zeroed sigaction with a handler that does nothing (async-signal-safe).
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = nothing as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut());
        }
    });
}

/// Signals vCPU threads that are still running past `after`, every 10 ms, until all are done.
pub fn watchdog(threads: &[AtomicU64], done: &[AtomicBool], after: Instant) {
    while !done.iter().all(|d| d.load(Ordering::Acquire)) {
        std::thread::sleep(Duration::from_millis(10));
        if Instant::now() < after {
            continue;
        }
        for (t, d) in threads.iter().zip(done) {
            let id = t.load(Ordering::Acquire);
            if id != 0 && !d.load(Ordering::Acquire) {
                // SAFETY: `id` is the pthread_t of a vCPU thread that is not joined yet (they
                // are joined after this watchdog returns), so it is still valid.
                unsafe { libc::pthread_kill(id as libc::pthread_t, libc::SIGUSR1) };
            }
        }
    }
}

/// The guest's batch count and status.
pub fn guest_counts(vmm: &Vmm, area: Area) -> (u32, u32) {
    (
        guest::read_param(&vmm.ram, area, param::BATCHES),
        guest::read_param(&vmm.ram, area, param::STATUS),
    )
}
