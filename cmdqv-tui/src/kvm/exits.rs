//! The sim guest's VM exits as the kernel saw them: `kvm:kvm_exit` records (filtered in the
//! kernel to the sim VMM's process) counted per vCPU thread, and `kvm:kvm_mmio` records (also
//! filtered to the devices' window) counted per path, so the comparison's `exits` come from the
//! kernel's own exit tracepoint and its `doorbell_exits` from the MMIO tracepoint at the
//! doorbell addresses, not from the VMM's bookkeeping. Where the kernel's KVM never fires
//! `kvm:kvm_exit` (PVM, as on the machine this was built on), `kvm:kvm_userspace_exit` counts
//! the exits instead (those that reach the VMM), and `exits_source` says so.

use std::collections::BTreeMap;

use cmdqv_core::{
    analysis::{Comparison, PathFigures},
    event::{MAIN_CMDQ, Payload, QueueEvent},
    kvm_exit, probe_abi,
    regs::{self, smmu},
};
use serde::{Deserialize, Serialize};

use super::{
    breakdown::Breakdown,
    layout::{CMDQV_GPA, CMDQV_LEN, SMMU_GPA, SMMU_LEN, VINTF0_PAGE0_GPA},
};

/// The guest-physical window the kvm_mmio probe reports (both devices).
pub const WINDOW: (u64, u64) = (SMMU_GPA, CMDQV_GPA + CMDQV_LEN);

/// `kvm_mmio` types: a read leaving KVM for the VMM, and a write (each is one exit); a read's
/// completion (type 1) is the same exit seen again.
const READ_UNSATISFIED: u32 = 0;
const WRITE: u32 = 2;

/// Which path a vCPU thread drove (the sim VMM reports it; the tracer sees only thread ids).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VcpuThread {
    pub tid: u32,
    pub trapped: bool,
    pub direct: bool,
}

/// An exit's reason as the record gives it: (isa, reason, arm64's `ret`, a VMM-bound exit's
/// errno, or 0).
type Reason = (u32, u32, u64);

/// MMIO exits per path and how many were doorbells (`kvm:kvm_mmio`); every exit per vCPU
/// thread and reason (`kvm:kvm_exit`). Which probes fed it decides what `apply` replaces.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExitCounts {
    pub mmio_probe: bool,
    pub exit_probe: bool,
    pub userspace_probe: bool,
    pub trapped: u64,
    pub trapped_doorbells: u64,
    pub direct: u64,
    pub direct_doorbells: u64,
    pub by_thread: BTreeMap<u32, BTreeMap<Reason, u64>>,
    /// The trapped doorbells' phases, from the same records and the VMM's queue uprobe.
    pub breakdown: Breakdown,
    /// Threads seen exiting on the trapped SMMU page (the live view's guess at the paths).
    pub trapped_threads: std::collections::BTreeSet<u32>,
}

impl ExitCounts {
    /// A counter for the probes that attached.
    pub fn new(mmio_probe: bool, exit_probe: bool, userspace_probe: bool) -> Self {
        Self {
            mmio_probe,
            exit_probe,
            userspace_probe,
            ..Default::default()
        }
    }

    /// Counts one raw ABI record if it is a `kvm_mmio` or `kvm_exit` record.
    pub fn count_raw(&mut self, raw: &[u8]) {
        let Ok(ev) = probe_abi::decode(raw) else {
            return;
        };
        let (tid, ts) = (ev.tid, ev.ts_ns);
        match ev.payload {
            Payload::KvmMmio { kind, gpa, .. } => {
                let doorbell = kind == WRITE && gpa == SMMU_GPA + smmu::CMDQ_PROD;
                if (SMMU_GPA..SMMU_GPA + SMMU_LEN).contains(&gpa) {
                    self.trapped_threads.insert(tid);
                }
                self.breakdown.mmio(tid, ts, doorbell);
                self.count(kind, gpa)
            }
            Payload::KvmExit(e) => {
                if e.isa == kvm_exit::USERSPACE_EXIT {
                    self.breakdown.userspace_exit(tid, ts);
                } else {
                    self.breakdown.kernel_exit(tid, ts);
                }
                self.count_exit(tid, e.isa, e.reason, e.info)
            }
            Payload::Queue { queue, event } if queue == MAIN_CMDQ => match event {
                QueueEvent::Doorbell { .. } => self.breakdown.doorbell(tid, ts),
                QueueEvent::Consumed { .. } => self.breakdown.consumed(tid, ts),
                _ => {}
            },
            _ => {}
        }
    }

    /// The vCPU threads as far as the records tell before the VMM reports them: a thread that
    /// exits on the trapped SMMU page drives the trapped path, any other that exits the direct
    /// one (only vCPU threads run KVM_RUN).
    pub fn live_threads(&self) -> Vec<VcpuThread> {
        let tids = self.by_thread.keys().chain(&self.trapped_threads);
        let tids: std::collections::BTreeSet<u32> = tids.copied().collect();
        tids.into_iter()
            .map(|tid| {
                let trapped = self.trapped_threads.contains(&tid);
                VcpuThread {
                    tid,
                    trapped,
                    direct: !trapped,
                }
            })
            .collect()
    }

    /// Counts one `kvm_exit` of thread `tid`.
    pub fn count_exit(&mut self, tid: u32, isa: u32, reason: u32, info: u64) {
        // x86's info1 is per exit (an address, a qualification): not part of the reason.
        let keep = isa == kvm_exit::ISA_ARM64 || isa == kvm_exit::USERSPACE_EXIT;
        let info = if keep { info } else { 0 };
        *self
            .by_thread
            .entry(tid)
            .or_default()
            .entry((isa, reason, info))
            .or_default() += 1;
    }

    /// Counts one `kvm_mmio` event: the SMMU page is the trapped path, VINTF0's logical page0
    /// the direct one (no exit there while the host page is mapped).
    pub fn count(&mut self, kind: u32, gpa: u64) {
        if kind != READ_UNSATISFIED && kind != WRITE {
            return;
        }
        let write = kind == WRITE;
        if (SMMU_GPA..SMMU_GPA + SMMU_LEN).contains(&gpa) {
            self.trapped += 1;
            self.trapped_doorbells += (write && gpa == SMMU_GPA + smmu::CMDQ_PROD) as u64;
        } else if (VINTF0_PAGE0_GPA..VINTF0_PAGE0_GPA + 0x1_0000).contains(&gpa) {
            self.direct += 1;
            let reg = (gpa - VINTF0_PAGE0_GPA) % regs::VCMDQ_STRIDE;
            self.direct_doorbells += (write && reg == regs::off::page0::PROD_INDX) as u64;
        }
    }

    /// Puts the tracepoints' counts into the comparison: `exits` (and by reason) from
    /// `kvm_exit` over each path's vCPU threads; `doorbell_exits` from `kvm_mmio`. What a probe
    /// did not count keeps the VMM's figure, and `exits_source` says which counted.
    pub fn apply(&self, c: &mut Comparison, vcpus: &[VcpuThread]) {
        let on_path = |trapped: bool| {
            let tids = vcpus.iter().filter(move |v| match trapped {
                true => v.trapped,
                false => v.direct,
            });
            tids.filter_map(|v| self.by_thread.get(&v.tid))
        };
        let exit_source = self.exit_source();
        let set = |p: &mut PathFigures, trapped: bool| {
            let mut sources = Vec::new();
            if let Some((userspace, text)) = exit_source {
                p.exits_by_reason.clear();
                for (&(isa, reason, info), &n) in on_path(trapped).flatten() {
                    if (isa == kvm_exit::USERSPACE_EXIT) != userspace {
                        continue;
                    }
                    let name = kvm_exit::reason_name(isa, reason, info).into_owned();
                    *p.exits_by_reason.entry(name).or_default() += n;
                }
                p.exits = p.exits_by_reason.values().sum();
                sources.push(text);
            }
            if self.mmio_probe {
                let (exits, doorbells) = if trapped {
                    (self.trapped, self.trapped_doorbells)
                } else {
                    (self.direct, self.direct_doorbells)
                };
                p.doorbell_exits = doorbells;
                if exit_source.is_none() {
                    p.exits = exits;
                    sources.push("ebpf:kvm:kvm_mmio (MMIO exits; pacing exits in pacing_exits)");
                } else {
                    sources.push("doorbell_exits: ebpf:kvm:kvm_mmio at the doorbell addresses");
                }
            }
            if sources.is_empty() {
                return;
            }
            p.exits_per_batch = if p.batches == 0 {
                0.0
            } else {
                p.exits as f64 / p.batches as f64
            };
            p.exits_source = sources.join("; ");
        };
        set(&mut c.trapped, true);
        set(&mut c.direct, false);
        c.trapped.breakdown_ns = self.breakdown.figures();
    }

    /// Which records count `exits` (whether they are `kvm_userspace_exit` records, and the
    /// `exits_source` text): `kvm_exit` where it fired; else `kvm_userspace_exit`.
    fn exit_source(&self) -> Option<(bool, &'static str)> {
        let mut reasons = self.by_thread.values().flat_map(|m| m.keys());
        let fired = reasons.clone().any(|r| r.0 != kvm_exit::USERSPACE_EXIT);
        let userspace = reasons.any(|r| r.0 == kvm_exit::USERSPACE_EXIT);
        if self.exit_probe && fired {
            Some((
                false,
                "ebpf:kvm:kvm_exit (every VM exit of the path's vCPU threads)",
            ))
        } else if self.userspace_probe && (userspace || !self.exit_probe) {
            Some((
                true,
                if self.exit_probe {
                    "ebpf:kvm:kvm_userspace_exit (every exit that reached the VMM: kvm:kvm_exit is attached but this kernel's KVM never fired it, as PVM does not)"
                } else {
                    "ebpf:kvm:kvm_userspace_exit (every exit that reached the VMM; kvm:kvm_exit did not attach)"
                },
            ))
        } else if self.exit_probe {
            Some((
                false,
                "ebpf:kvm:kvm_exit (every VM exit of the path's vCPU threads)",
            ))
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvm_exit::{ISA_ARM64, ISA_VMX};

    #[test]
    fn mmio_exits_are_counted_per_path_and_doorbells_apart() {
        let mut n = ExitCounts::new(true, false, false);
        n.count(WRITE, SMMU_GPA + smmu::CMDQ_PROD);
        n.count(READ_UNSATISFIED, SMMU_GPA + smmu::CMDQ_CONS);
        n.count(1, SMMU_GPA + smmu::CMDQ_CONS); // the same read, completed
        n.count(
            WRITE,
            VINTF0_PAGE0_GPA + regs::VCMDQ_STRIDE + regs::off::page0::PROD_INDX,
        );
        n.count(
            READ_UNSATISFIED,
            VINTF0_PAGE0_GPA + regs::off::page0::CONS_INDX,
        );
        n.count(WRITE, 0x2000_0000); // outside both paths
        assert_eq!(
            (n.trapped, n.trapped_doorbells, n.direct, n.direct_doorbells),
            (2, 1, 2, 1)
        );
        let mut c = Comparison::default();
        c.trapped.batches = 1;
        n.apply(&mut c, &[]);
        assert_eq!((c.trapped.exits, c.trapped.exits_per_batch), (2, 2.0));
        assert_eq!((c.direct.exits, c.direct.exits_per_batch), (2, 0.0));
        assert!(c.direct.exits_source.starts_with("ebpf:kvm:kvm_mmio"));
        assert!(c.trapped.exits_by_reason.is_empty());
    }

    #[test]
    fn kvm_exit_counts_every_exit_of_each_paths_threads_by_reason() {
        let mut n = ExitCounts::new(true, true, true);
        let vcpus = [
            VcpuThread {
                tid: 10,
                trapped: true,
                direct: false,
            },
            VcpuThread {
                tid: 11,
                trapped: false,
                direct: true,
            },
        ];
        for _ in 0..3 {
            n.count_exit(10, ISA_VMX, 49, 0x1234); // EPT_MISCONFIG
        }
        n.count_exit(10, ISA_VMX, 30, 0); // IO_INSTRUCTION (pacing)
        n.count_exit(11, ISA_VMX, 30, 0);
        n.count_exit(11, ISA_VMX, 1, 0); // EXTERNAL_INTERRUPT
        n.count_exit(99, ISA_VMX, 49, 0); // another thread of the VMM: no path
        n.count(WRITE, SMMU_GPA + smmu::CMDQ_PROD);
        let mut c = Comparison::default();
        c.trapped.batches = 2;
        c.direct.batches = 2;
        c.trapped.exits = 1000; // the VMM's own count is replaced
        n.apply(&mut c, &vcpus);
        assert_eq!(c.trapped.exits, 4);
        assert_eq!(c.trapped.exits_per_batch, 2.0);
        assert_eq!(c.trapped.exits_by_reason["EPT_MISCONFIG"], 3);
        assert_eq!(c.trapped.doorbell_exits, 1, "doorbells from kvm_mmio");
        assert_eq!((c.direct.exits, c.direct.doorbell_exits), (2, 0));
        assert_eq!(c.direct.exits_by_reason["EXTERNAL_INTERRUPT"], 1);
        assert!(c.trapped.exits_source.starts_with("ebpf:kvm:kvm_exit"));
    }

    #[test]
    fn arm64_exits_keep_their_kind_apart_from_their_class() {
        let mut n = ExitCounts::new(false, true, false);
        n.count_exit(5, ISA_ARM64, 0x24, 2);
        n.count_exit(5, ISA_ARM64, 0x24, 0); // an IRQ exit with a stale class
        let mut c = Comparison::default();
        let t = VcpuThread {
            tid: 5,
            trapped: true,
            direct: false,
        };
        n.apply(&mut c, &[t]);
        assert_eq!(c.trapped.exits_by_reason["DABT_LOW"], 1);
        assert_eq!(c.trapped.exits_by_reason["IRQ"], 1);
    }

    #[test]
    fn where_kvm_exit_never_fires_the_vmm_bound_exits_count_and_say_so() {
        let mut n = ExitCounts::new(true, true, true);
        let t = VcpuThread {
            tid: 7,
            trapped: true,
            direct: false,
        };
        n.count_exit(7, kvm_exit::USERSPACE_EXIT, 6, 0);
        n.count_exit(7, kvm_exit::USERSPACE_EXIT, 2, 0);
        n.count_exit(7, kvm_exit::USERSPACE_EXIT, 6, -4i64 as u64);
        let mut c = Comparison::default();
        n.apply(&mut c, &[t]);
        assert_eq!(c.trapped.exits, 3);
        assert_eq!(c.trapped.exits_by_reason["KVM_EXIT_MMIO"], 1);
        assert_eq!(c.trapped.exits_by_reason["KVM_RUN interrupted (EINTR)"], 1);
        assert!(
            c.trapped
                .exits_source
                .starts_with("ebpf:kvm:kvm_userspace_exit (every exit that reached the VMM: kvm:kvm_exit is attached but"),
            "{}",
            c.trapped.exits_source
        );
        // Where kvm_exit fires, it counts, and the VMM-bound records are not counted twice.
        n.count_exit(7, ISA_VMX, 49, 0);
        n.apply(&mut c, &[t]);
        assert_eq!(c.trapped.exits, 1);
        assert!(c.trapped.exits_source.starts_with("ebpf:kvm:kvm_exit"));
    }

    #[test]
    fn without_either_probe_the_vmm_figures_stay() {
        let mut c = Comparison::default();
        c.trapped.exits = 7;
        c.trapped.exits_source = "vmm".into();
        ExitCounts::new(false, false, false).apply(&mut c, &[]);
        assert_eq!(
            (c.trapped.exits, c.trapped.exits_source.as_str()),
            (7, "vmm")
        );
    }
}
