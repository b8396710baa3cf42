//! The host kernel's command queues (`cmdqv host`): one row per `struct arm_smmu_cmdq` the
//! SMMUv3 driver submitted to, keyed by its kernel address, with batch sizes, the latency the
//! probes could measure, and the ring slots the run saw written ([`RingWindow`]).
//!
//! Hot-path rule as in the collector: applying an event never allocates once its queue exists;
//! names and maps are built in [`HostQueues::summaries`].

use crate::analysis::queue_stats::QueueStats;
use crate::analysis::render::host_queue_name;
use crate::analysis::summary::{HostQueueSummary, QueueSummary, RingWindow};
use crate::event::{HostBatch, HostCommand, MAIN_CMDQ};

/// Host queues tracked; events for more count as collector overflow drops (an address from the
/// kernel must not key an unbounded table).
pub const MAX_HOST_QUEUES: usize = 256;
/// Batch sizes counted one by one (Linux batches at most 64 commands, plus a CMD_SYNC); larger
/// ones share the last bucket.
const SIZE_BUCKETS: usize = 66;

/// What `batch_latency_ns` measures on a host row whose batches had their wait timed.
pub const LATENCY_POLL: &str = "time in arm_smmu_cmdq_poll_until_sync (the CMD_SYNC wait)";
/// ... and on one whose kernel has no such function to time.
pub const LATENCY_CALL: &str = "arm_smmu_cmdq_issue_cmdlist entry to return of batches with a \
     CMD_SYNC: submission + CMD_SYNC wait";

/// Where a queue's batches went in its ring: positions are ring pointers unwrapped relative to
/// the first batch (each batch placed at the nearest lap to the one before it), so the span of
/// the run and whether every slot in it was seen can be told however often the ring wrapped.
#[derive(Clone, Debug, Default)]
struct WindowTracker {
    log2: Option<u8>,
    /// Ring pointer and position of the last placed batch.
    last: Option<(u32, i64)>,
    /// Lowest start and highest end: (position, ring pointer).
    lo: (i64, u32),
    hi: (i64, u32),
    slots: u64,
    batches: u64,
    unplaced: u64,
}

impl WindowTracker {
    fn add(&mut self, prod: Option<u32>, slots: u64, log2: Option<u8>) {
        let (Some(prod), Some(log2)) = (prod, log2.filter(|&l| l <= 30)) else {
            self.unplaced += 1;
            return;
        };
        if self.log2 != Some(log2) {
            // A queue that changed size is a new ring: its window starts over.
            *self = Self {
                log2: Some(log2),
                unplaced: self.unplaced,
                ..Self::default()
            };
        }
        let period = 2i64 << log2;
        let mask = (period - 1) as u64;
        let pos = match self.last {
            None => 0,
            Some((p, at)) => {
                let d = (i64::from(prod) - i64::from(p)).rem_euclid(period);
                at + if d >= period / 2 { d - period } else { d }
            }
        };
        self.last = Some((prod, pos));
        let end = pos.saturating_add(i64::try_from(slots).unwrap_or(i64::MAX));
        let end_ptr = (u64::from(prod).wrapping_add(slots) & mask) as u32;
        if self.batches == 0 || pos < self.lo.0 {
            self.lo = (pos, (u64::from(prod) & mask) as u32);
        }
        if self.batches == 0 || end > self.hi.0 {
            self.hi = (end, end_ptr);
        }
        self.slots += slots;
        self.batches += 1;
    }

    fn summary(&self) -> Option<RingWindow> {
        let log2size = self.log2.filter(|_| self.batches > 0)?;
        let span = u64::try_from(self.hi.0 - self.lo.0).unwrap_or(u64::MAX);
        Some(RingWindow {
            log2size,
            first: self.lo.1,
            end: self.hi.1,
            slots: self.slots,
            batches: self.batches,
            unplaced: self.unplaced,
            contiguous: self.unplaced == 0 && span == self.slots,
        })
    }
}

/// Per-interval counters of a host row (besides the queue's own).
#[derive(Clone, Debug)]
struct HostCounters {
    sync_batches: u64,
    /// Batches whose CMD_SYNC wait was timed on its own.
    polled: u64,
    sizes: [u64; SIZE_BUCKETS],
    missed: u64,
    window: WindowTracker,
}

impl Default for HostCounters {
    fn default() -> Self {
        Self {
            sync_batches: 0,
            polled: 0,
            sizes: [0; SIZE_BUCKETS],
            missed: 0,
            window: WindowTracker::default(),
        }
    }
}

#[derive(Debug)]
struct HostQueue {
    cmdq: u64,
    smmu: u64,
    main: Option<bool>,
    stats: Box<QueueStats>,
    c: HostCounters,
}

impl HostQueue {
    fn summary(&self, name: String, elapsed_s: f64, now_sec: u64) -> QueueSummary {
        let c = &self.c;
        let sizes = c.sizes.iter().enumerate().filter(|&(_, &n)| n > 0);
        let host = HostQueueSummary {
            cmdq: format!("{:#x}", self.cmdq),
            smmu: format!("{:#x}", self.smmu),
            main: self.main,
            latency: if c.polled > 0 {
                LATENCY_POLL
            } else {
                LATENCY_CALL
            }
            .into(),
            sync_batches: c.sync_batches,
            batch_sizes: sizes.map(|(size, &n)| (size as u32, n)).collect(),
            missed: c.missed,
            window: c.window.summary(),
        };
        QueueSummary {
            name,
            global_id: None,
            host: Some(host),
            ..self.stats.summary(elapsed_s, now_sec)
        }
    }
}

/// The host rows of a collector.
#[derive(Debug, Default)]
pub struct HostQueues {
    rows: Vec<HostQueue>,
}

impl HostQueues {
    /// The row of `cmdq`, created on first sight; `None` beyond [`MAX_HOST_QUEUES`].
    fn row(&mut self, cmdq: u64) -> Option<&mut HostQueue> {
        let i = match self.rows.iter().position(|r| r.cmdq == cmdq) {
            Some(i) => i,
            None if self.rows.len() < MAX_HOST_QUEUES => {
                self.rows.push(HostQueue {
                    cmdq,
                    smmu: 0,
                    main: None,
                    // The id only matters for naming, which the row does itself.
                    stats: Box::new(QueueStats::new(MAIN_CMDQ)),
                    c: HostCounters::default(),
                });
                self.rows.len() - 1
            }
            None => return None,
        };
        self.rows.get_mut(i)
    }

    /// A command the driver wrote; false when the queue is not tracked.
    #[inline]
    pub fn command(&mut self, ts_ns: u64, sec: u64, c: &HostCommand) -> bool {
        let Some(r) = self.row(c.cmdq) else {
            return false;
        };
        r.stats.command(ts_ns, sec, c.index, c.w0, c.w1);
        true
    }

    /// A batch the driver submitted (after its commands); false when the queue is not tracked.
    pub fn batch(&mut self, sec: u64, b: &HostBatch) -> bool {
        let Some(r) = self.row(b.cmdq) else {
            return false;
        };
        r.smmu = b.smmu;
        r.main = b.main.or(r.main);
        r.stats.advance_rate(sec);
        let slots = b.slots();
        let c = &mut r.c;
        c.sync_batches += u64::from(b.sync);
        c.polled += u64::from(b.wait_ns.is_some());
        c.sizes[usize::try_from(slots).map_or(SIZE_BUCKETS - 1, |s| s.min(SIZE_BUCKETS - 1))] += 1;
        c.missed += u64::from(b.missed);
        c.window.add(b.prod, slots, b.log2size);
        let end = match (b.prod, b.log2size) {
            (Some(p), Some(l)) if l <= 30 => {
                Some((u64::from(p).wrapping_add(slots) & ((2u64 << l) - 1)) as u32)
            }
            _ => None,
        };
        let latency = b.wait_ns.or(b.sync.then_some(b.duration_ns));
        r.stats.host_batch(slots, latency, end, b.log2size);
        true
    }

    /// Starts a new `--interval` period: counters and windows restart.
    pub fn reset_counters(&mut self) {
        for r in &mut self.rows {
            r.stats.reset_counters();
            r.c = HostCounters::default();
        }
    }

    /// One summary row per queue, in the order they were first seen. The SMMU's own queue is
    /// `main` (`main@<smmu>` when several SMMUs submit), any other `cmdq@<address>`.
    pub fn summaries(&self, elapsed_s: f64, now_sec: u64) -> impl Iterator<Item = QueueSummary> {
        let mut smmus: Vec<u64> = self
            .rows
            .iter()
            .filter(|r| r.main == Some(true))
            .map(|r| r.smmu)
            .collect();
        smmus.sort_unstable();
        smmus.dedup();
        let one_smmu = smmus.len() == 1;
        self.rows.iter().map(move |r| {
            let name = match r.main {
                Some(true) if one_smmu => "main".to_string(),
                Some(true) => format!("main@{:x}", r.smmu),
                _ => host_queue_name(r.cmdq),
            };
            r.summary(name, elapsed_s, now_sec)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(batches: &[(u32, u64)], log2: u8) -> RingWindow {
        let mut w = WindowTracker::default();
        for &(prod, slots) in batches {
            w.add(Some(prod), slots, Some(log2));
        }
        w.summary().unwrap()
    }

    #[test]
    fn a_window_is_contiguous_when_every_slot_between_first_and_end_was_seen() {
        // Out of order, as two CPUs' batches may arrive.
        let w = window(&[(10, 2), (14, 3), (12, 2)], 4);
        assert_eq!((w.first, w.end, w.slots, w.batches), (10, 17, 7, 3));
        assert!(w.contiguous);
        let w = window(&[(10, 2), (14, 3)], 4);
        assert_eq!((w.first, w.end, w.slots), (10, 17, 5));
        assert!(!w.contiguous, "slots 12 and 13 were not seen");
    }

    #[test]
    fn a_window_follows_the_ring_across_wraps() {
        // 16 entries: pointers run 0..32 (index | wrap bit 16), then start over.
        let w = window(
            &[(30, 2), (0, 2), (2, 8), (10, 8), (18, 8), (26, 6), (0, 4)],
            4,
        );
        assert_eq!((w.first, w.end, w.slots), (30, 4, 38));
        assert!(w.contiguous, "{w:?}");
    }

    #[test]
    fn batches_without_a_ring_pointer_leave_the_window_incomplete() {
        let mut w = WindowTracker::default();
        w.add(Some(0), 2, Some(8));
        w.add(None, 2, Some(8));
        w.add(Some(4), 2, None);
        let s = w.summary().unwrap();
        assert_eq!((s.batches, s.unplaced, s.contiguous), (1, 2, false));
        assert_eq!(WindowTracker::default().summary(), None);
    }

    #[test]
    fn a_resized_queue_starts_a_new_window() {
        let mut w = WindowTracker::default();
        w.add(Some(100), 2, Some(8));
        w.add(Some(0), 2, Some(10));
        let s = w.summary().unwrap();
        assert_eq!((s.log2size, s.first, s.end, s.slots), (10, 0, 2, 2));
    }
}
