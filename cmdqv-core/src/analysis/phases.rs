//! Where a batch's time goes: each consumption pass split into phases bounded by the events a
//! source reports (guest doorbell exit, the VMM's MMIO entry, the device latching PROD, first
//! and last command, CONS written, the guest's first CONS read that sees it), with one bounded
//! histogram per phase. A phase whose bounding events a source does not report is never
//! recorded, so it is absent from the summary rather than zero.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;

use crate::analysis::summary::PhaseLatency;

/// One phase of a batch, in the order a batch goes through them.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    /// `kvm:kvm_mmio` write (the guest's doorbell store, seen by KVM on the exit) → the VMM's
    /// MMIO handler entry on the same thread: the trapped path's exit.
    DoorbellToVmm,
    /// The VMM's MMIO handler entry (the PROD write) → the first command consumed.
    VmmToConsume,
    /// The device latching PROD → the first command, on passes no VMM MMIO entry started (a
    /// hardware-backed queue, whose doorbell no VMM sees).
    DoorbellToConsume,
    /// First command consumed → last command consumed.
    Consume,
    /// Last command consumed → CONS written (the pass ended).
    ConsUpdate,
    /// CONS written → the guest's first trapped CONS read that returns it.
    ConsVisible,
    /// iommufd ioctl time (e.g. IOMMU_HWPT_INVALIDATE) on the pass's thread while it was open.
    Ioctl,
}

/// Every phase, in batch order.
pub const PHASES: [Phase; 7] = [
    Phase::DoorbellToVmm,
    Phase::VmmToConsume,
    Phase::DoorbellToConsume,
    Phase::Consume,
    Phase::ConsUpdate,
    Phase::ConsVisible,
    Phase::Ioctl,
];

impl Phase {
    /// The name in `phases_ns` (a contract: JSON keys, `cmdqv diff`).
    pub fn name(self) -> &'static str {
        match self {
            Self::DoorbellToVmm => "doorbell_to_vmm",
            Self::VmmToConsume => "vmm_to_consume",
            Self::DoorbellToConsume => "doorbell_to_consume",
            Self::Consume => "consume",
            Self::ConsUpdate => "cons_update",
            Self::ConsVisible => "cons_visible",
            Self::Ioctl => "ioctl",
        }
    }

    /// Position in [`PHASES`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Largest phase the histograms resolve (60 s, as the batch latency); larger samples clamp.
const PHASE_HIGH_NS: u64 = 60_000_000_000;

/// A latency histogram with the collector's bounds (1 ns .. 60 s, 2 significant digits): the
/// batch latency and every phase use it, so two runs' histograms share their buckets.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, PHASE_HIGH_NS, 2).expect("constant histogram bounds are valid")
}

/// One histogram per phase, allocated on a phase's first sample (bounded: 7 per queue).
#[derive(Clone, Debug, Default)]
pub struct PhaseHistograms {
    h: [Option<Box<Histogram<u64>>>; PHASES.len()],
}

impl PhaseHistograms {
    pub fn record(&mut self, phase: Phase, ns: u64) {
        let h = self.h[phase.index()].get_or_insert_with(|| Box::new(latency_histogram()));
        h.saturating_record(ns.max(1));
    }

    pub fn reset(&mut self) {
        for h in self.h.iter_mut().flatten() {
            h.reset();
        }
    }

    /// The histogram of `phase`, when it has samples.
    pub fn get(&self, phase: Phase) -> Option<&Histogram<u64>> {
        self.h[phase.index()].as_deref().filter(|h| !h.is_empty())
    }

    /// `phases_ns`: phase name → percentiles, phases with samples only.
    pub fn percentiles(&self) -> BTreeMap<String, PhaseLatency> {
        PHASES
            .iter()
            .filter_map(|&p| {
                let h = self.get(p)?;
                let lat = PhaseLatency {
                    count: h.len(),
                    p50: h.value_at_quantile(0.5).min(h.max()),
                    p99: h.value_at_quantile(0.99).min(h.max()),
                };
                Some((p.name().to_string(), lat))
            })
            .collect()
    }
}

/// The open pass of one queue: the timestamps that bound its phases so far.
#[derive(Copy, Clone, Debug, Default)]
pub struct PassTimes {
    /// The device latched PROD (the doorbell that opened the pass).
    doorbell: Option<u64>,
    /// Thread that rang it: ioctls and the CONS read on this thread belong to the pass.
    tid: u32,
    vmm_entry: Option<u64>,
    exit: Option<u64>,
    first_cmd: Option<u64>,
    last_cmd: u64,
    ioctl_ns: u64,
    /// CONS written by the last closed pass, waiting for the guest to read it: (time, CONS).
    visible: Option<(u64, u32)>,
}

/// What the thread that rang a doorbell did just before: its MMIO write entry and the KVM exit
/// that led there.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Entry {
    pub vmm_entry: Option<u64>,
    pub exit: Option<u64>,
}

impl PassTimes {
    /// A doorbell opened work; only the first one of a pass starts it.
    pub fn doorbell(&mut self, ts_ns: u64, tid: u32, entry: Entry) {
        if self.doorbell.is_some() {
            return;
        }
        self.doorbell = Some(ts_ns);
        self.tid = tid;
        let vmm_entry = entry.vmm_entry.filter(|&t| t <= ts_ns);
        self.vmm_entry = vmm_entry;
        self.exit = entry.exit.filter(|&t| vmm_entry.is_some_and(|v| t <= v));
        self.first_cmd = None;
        self.ioctl_ns = 0;
    }

    #[inline]
    pub fn command(&mut self, ts_ns: u64) {
        if self.doorbell.is_some() {
            self.first_cmd.get_or_insert(ts_ns);
            self.last_cmd = ts_ns;
        }
    }

    /// An ioctl on `tid` took `ns`; counted when this queue's pass is open on that thread.
    pub fn ioctl(&mut self, tid: u32, ns: u64) -> bool {
        let open = self.doorbell.is_some() && self.tid == tid;
        if open {
            self.ioctl_ns = self.ioctl_ns.saturating_add(ns);
        }
        open
    }

    /// The pass ended at `ts_ns` with `cons`; `closed` when it completed a batch (then its
    /// phases are recorded).
    pub fn consumed(&mut self, ts_ns: u64, cons: u32, closed: bool, h: &mut PhaseHistograms) {
        let Some(db) = self.doorbell.take() else {
            return;
        };
        if !closed {
            return;
        }
        if let Some(first) = self.first_cmd {
            match self.vmm_entry {
                Some(v) => h.record(Phase::VmmToConsume, first.saturating_sub(v)),
                None => h.record(Phase::DoorbellToConsume, first.saturating_sub(db)),
            }
            h.record(Phase::Consume, self.last_cmd.saturating_sub(first));
            h.record(Phase::ConsUpdate, ts_ns.saturating_sub(self.last_cmd));
        }
        if let (Some(e), Some(v)) = (self.exit, self.vmm_entry) {
            h.record(Phase::DoorbellToVmm, v.saturating_sub(e));
        }
        if self.ioctl_ns > 0 {
            h.record(Phase::Ioctl, self.ioctl_ns);
        }
        self.visible = Some((ts_ns, cons));
    }

    /// The guest read CONS (`value`, masked to index and wrap by `mask`) at `ts_ns`: the first
    /// read returning the CONS a pass wrote ends [`Phase::ConsVisible`].
    pub fn cons_read(&mut self, ts_ns: u64, value: u32, mask: u32, h: &mut PhaseHistograms) {
        if let Some((t, cons)) = self.visible {
            if value & mask == cons & mask {
                h.record(Phase::ConsVisible, ts_ns.saturating_sub(t));
                self.visible = None;
            }
        }
    }

    /// The queue was disabled: nothing open can complete.
    pub fn clear(&mut self) {
        *self = Self::default();
    }
}

/// Threads remembered for [`Entry`] lookups (vCPU threads of the traced VMM); the oldest is
/// replaced beyond this.
pub const THREADS_TRACKED: usize = 16;

/// Per thread: its last PROD write in the VMM and its last KVM MMIO write exit, each taken once.
#[derive(Clone, Debug, Default)]
pub struct ThreadEntries {
    t: [(u32, Entry); THREADS_TRACKED],
    next: usize,
}

impl ThreadEntries {
    fn slot(&mut self, tid: u32) -> &mut Entry {
        let i = match self.t.iter().position(|e| e.0 == tid) {
            Some(i) => i,
            None => {
                let i = self.next;
                self.next = (self.next + 1) % THREADS_TRACKED;
                self.t[i] = (tid, Entry::default());
                i
            }
        };
        &mut self.t[i].1
    }

    /// The VMM's MMIO handler saw a write on `tid`.
    pub fn mmio_write(&mut self, tid: u32, ts_ns: u64) {
        self.slot(tid).vmm_entry = Some(ts_ns);
    }

    /// KVM reported an MMIO write exit on `tid`.
    pub fn kvm_write(&mut self, tid: u32, ts_ns: u64) {
        let e = self.slot(tid);
        e.exit = Some(ts_ns);
        e.vmm_entry = None;
    }

    /// What led to a doorbell on `tid`; each entry is used by one doorbell only.
    pub fn take(&mut self, tid: u32) -> Entry {
        match self.t.iter_mut().find(|e| e.0 == tid) {
            Some(e) => std::mem::take(&mut e.1),
            None => Entry::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The phase's p50 rounded to the histogram's 2 significant digits.
    fn p50(h: &PhaseHistograms, p: Phase) -> Option<u64> {
        let v = h.percentiles().get(p.name())?.p50;
        let h = h.get(p)?;
        Some(h.lowest_equivalent(v))
    }

    #[test]
    fn a_trapped_pass_splits_into_exit_vmm_consume_update_and_visible() {
        let (mut pass, mut h, mut th) = (
            PassTimes::default(),
            PhaseHistograms::default(),
            ThreadEntries::default(),
        );
        th.kvm_write(7, 1_000);
        th.mmio_write(7, 3_000);
        pass.doorbell(3_100, 7, th.take(7));
        pass.command(4_000);
        pass.command(4_500);
        pass.command(6_000);
        assert!(pass.ioctl(7, 700));
        assert!(
            !pass.ioctl(8, 700),
            "another thread's ioctl is not this pass's"
        );
        pass.consumed(6_200, 3, true, &mut h);
        pass.cons_read(6_300, 2, 0x1ff, &mut h); // stale
        pass.cons_read(7_000, 3, 0x1ff, &mut h);
        assert_eq!(p50(&h, Phase::DoorbellToVmm), Some(2_000));
        assert_eq!(p50(&h, Phase::VmmToConsume), Some(1_000));
        assert_eq!(p50(&h, Phase::DoorbellToConsume), None);
        assert_eq!(p50(&h, Phase::Consume), Some(2_000));
        assert_eq!(p50(&h, Phase::ConsUpdate), Some(200));
        assert_eq!(p50(&h, Phase::ConsVisible), Some(800));
        assert_eq!(p50(&h, Phase::Ioctl), Some(700));
        assert_eq!(th.take(7), Entry::default(), "entries are used once");
    }

    #[test]
    fn a_direct_pass_has_no_vmm_phases_and_unclosed_passes_record_nothing() {
        let (mut pass, mut h) = (PassTimes::default(), PhaseHistograms::default());
        pass.doorbell(100, 9, Entry::default());
        pass.command(150);
        pass.consumed(170, 1, false, &mut h);
        assert!(h.percentiles().is_empty());
        pass.doorbell(200, 9, Entry::default());
        pass.command(260);
        pass.consumed(300, 2, true, &mut h);
        let names: Vec<String> = h.percentiles().into_keys().collect();
        assert_eq!(names, ["cons_update", "consume", "doorbell_to_consume"]);
        assert_eq!(p50(&h, Phase::DoorbellToConsume), Some(60));
    }
}
