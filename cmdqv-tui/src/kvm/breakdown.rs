//! Where a trapped batch's time goes, from the timestamps the kernel and the VMM put on one vCPU
//! thread's records: **exit** (the doorbell store's `kvm:kvm_exit`, or its `kvm:kvm_mmio` where
//! KVM never fires `kvm_exit`, to `kvm:kvm_userspace_exit`: KVM hands the exit to the VMM),
//! **vmm_dispatch** (to the VMM's model taking the doorbell, the `cmdqv_vmm_queue` uprobe),
//! **consumption** (to the model's consumption pass ending, same uprobe), **resume** (to the
//! same thread's next exit record: KVM_RUN re-entered and the guest ran to its next CONS poll).
//! Every phase is measured; what cannot run here (the host SMMU behind iommufd) is not a phase.

use std::collections::BTreeMap;

use cmdqv_core::analysis::Latency;

/// The phases in the order a batch goes through them.
pub const PHASES: [&str; 4] = ["exit", "vmm_dispatch", "consumption", "resume"];

/// Samples kept per phase: a long run keeps its first ones (bounded memory).
const MAX_SAMPLES: usize = 1 << 16;

/// Where one thread's current doorbell is, with the timestamp of the last step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Idle,
    Exited(u64),
    HandedOver(u64),
    Dispatched(u64),
    Consumed(u64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Thread {
    stage: Stage,
    /// The last `kvm_exit` (the kernel's own) and the last return to the VMM.
    kernel_exit: u64,
    userspace_exit: u64,
}

impl Default for Thread {
    fn default() -> Self {
        Self {
            stage: Stage::Idle,
            kernel_exit: 0,
            userspace_exit: 0,
        }
    }
}

/// The trapped path's doorbells, phase by phase, per vCPU thread.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Breakdown {
    threads: BTreeMap<u32, Thread>,
    samples: [Vec<u64>; 4],
}

impl Breakdown {
    fn push(&mut self, phase: usize, from: u64, to: u64) {
        let s = &mut self.samples[phase];
        if s.len() < MAX_SAMPLES && to >= from {
            s.push(to - from);
        }
    }

    /// The guest's next exit after a consumption ends that batch's resume phase.
    fn resumed(&mut self, tid: u32, ts: u64) {
        let t = self.threads.entry(tid).or_default();
        if let Stage::Consumed(at) = t.stage {
            t.stage = Stage::Idle;
            self.push(3, at, ts);
        }
    }

    /// A `kvm:kvm_exit` of thread `tid`.
    pub fn kernel_exit(&mut self, tid: u32, ts: u64) {
        self.resumed(tid, ts);
        self.threads.entry(tid).or_default().kernel_exit = ts;
    }

    /// A `kvm:kvm_mmio` of thread `tid`; `doorbell`: a store to the trapped queue's PROD.
    pub fn mmio(&mut self, tid: u32, ts: u64, doorbell: bool) {
        self.resumed(tid, ts);
        let t = self.threads.entry(tid).or_default();
        if doorbell {
            // The exit began at the kernel's kvm_exit for this store, where there was one.
            let fresh = t.kernel_exit > t.userspace_exit && t.kernel_exit <= ts;
            t.stage = Stage::Exited(if fresh { t.kernel_exit } else { ts });
        }
    }

    /// A `kvm:kvm_userspace_exit` of thread `tid`.
    pub fn userspace_exit(&mut self, tid: u32, ts: u64) {
        let t = self.threads.entry(tid).or_default();
        t.userspace_exit = ts;
        if let Stage::Exited(at) = t.stage {
            t.stage = Stage::HandedOver(ts);
            self.push(0, at, ts);
        }
    }

    /// The VMM's model took the trapped queue's doorbell (on thread `tid`).
    pub fn doorbell(&mut self, tid: u32, ts: u64) {
        let t = self.threads.entry(tid).or_default();
        if let Stage::HandedOver(at) = t.stage {
            t.stage = Stage::Dispatched(ts);
            self.push(1, at, ts);
        }
    }

    /// The model's consumption pass of the trapped queue ended (on thread `tid`).
    pub fn consumed(&mut self, tid: u32, ts: u64) {
        let t = self.threads.entry(tid).or_default();
        if let Stage::Dispatched(at) = t.stage {
            t.stage = Stage::Consumed(ts);
            self.push(2, at, ts);
        }
    }

    /// Each phase's percentiles (phases never seen are left out).
    pub fn figures(&self) -> BTreeMap<String, Latency> {
        PHASES
            .iter()
            .zip(&self.samples)
            .filter(|(_, s)| !s.is_empty())
            .map(|(p, s)| (p.to_string(), percentiles(&mut s.clone())))
            .collect()
    }
}

/// p50, p99, max and mean of `v` (sorted in place).
pub fn percentiles(v: &mut [u64]) -> Latency {
    if v.is_empty() {
        return Latency::default();
    }
    v.sort_unstable();
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    Latency {
        count: v.len() as u64,
        p50: at(0.5),
        p99: at(0.99),
        max: v[v.len() - 1],
        mean: v.iter().sum::<u64>() as f64 / v.len() as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One trapped batch on thread 7 as PVM reports it (no kvm_exit), then one with kvm_exit.
    #[test]
    fn a_doorbell_goes_through_four_phases_in_order() {
        let mut b = Breakdown::default();
        b.mmio(7, 1_000, true);
        b.userspace_exit(7, 1_300);
        b.doorbell(7, 2_000);
        b.consumed(7, 2_500);
        b.mmio(7, 3_100, false); // the first CONS poll: the guest runs again
        let f = b.figures();
        let p50 = |p: &str| f[p].p50;
        assert_eq!(
            (
                p50("exit"),
                p50("vmm_dispatch"),
                p50("consumption"),
                p50("resume")
            ),
            (300, 700, 500, 600)
        );
        // With kvm_exit, the exit phase starts at the kernel's exit, not at its MMIO decode.
        let mut b = Breakdown::default();
        b.kernel_exit(7, 900);
        b.mmio(7, 1_000, true);
        b.userspace_exit(7, 1_300);
        assert_eq!(b.figures()["exit"].p50, 400);
    }

    #[test]
    fn steps_out_of_order_or_on_other_threads_are_not_phases() {
        let mut b = Breakdown::default();
        b.doorbell(7, 10); // no exit before it
        b.consumed(7, 20);
        b.mmio(7, 100, true);
        b.userspace_exit(8, 150); // another thread
        b.doorbell(7, 200); // not handed over on this thread
        assert!(b.figures().is_empty(), "{:?}", b.figures());
        // A stale kvm_exit (before the last return to the VMM) does not start the exit phase.
        let mut b = Breakdown::default();
        b.kernel_exit(7, 50);
        b.userspace_exit(7, 60);
        b.mmio(7, 100, true);
        b.userspace_exit(7, 130);
        assert_eq!(b.figures()["exit"].p50, 30);
    }
}
