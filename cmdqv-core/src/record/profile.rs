//! A trace file reduced, in one streaming pass with bounded memory, to what `cmdqv diff`
//! compares: the replay summary, each queue's latency and phase histograms and batch sizes (from
//! the collector), and the commands/s of each queue and opcode per fixed interval of trace time
//! as streaming moments (the rate test's samples).

use std::io::Read;
use std::path::Path;

use crate::analysis::stats::Moments;
use crate::analysis::{Collector, QueueSamples, Summary};
use crate::event::{Event, MAIN_CMDQ, Payload};
use crate::record::frame::TraceError;
use crate::record::reader::TraceReader;
use crate::record::replay::{ReplayInfo, final_summary, replay_observed};

/// Length of the intervals whose command counts are the rate test's samples (100 ms: a 2 s
/// recording still gives ~20 of them).
pub const RATE_INTERVAL_NS: u64 = 100_000_000;

/// Queue slots with a rate series: global VCMDQs below `MAX_QUEUES`, then the SMMU's own.
const RATE_SLOTS: usize = crate::analysis::MAX_QUEUES as usize + 1;

/// Counts per interval of one series, closed into moments as intervals complete.
#[derive(Clone, Debug)]
struct IntervalSeries {
    idx: u64,
    count: u64,
    done: Moments,
}

impl IntervalSeries {
    /// A series first seen in interval `idx`: the intervals before it counted nothing.
    fn new(idx: u64) -> Self {
        let mut done = Moments::default();
        done.push_n(0.0, idx);
        Self {
            idx,
            count: 0,
            done,
        }
    }

    #[inline]
    fn add(&mut self, idx: u64) {
        // Slightly out-of-order timestamps (events of several CPUs) count in the open interval.
        if idx > self.idx {
            self.done.push(self.count as f64);
            self.done.push_n(0.0, idx - self.idx - 1);
            self.idx = idx;
            self.count = 0;
        }
        self.count += 1;
    }

    /// Per-second rates of the intervals before `end` (the interval `end` is incomplete).
    fn finish(&self, end: u64) -> Moments {
        let mut m = self.done;
        if self.idx < end {
            m.push(self.count as f64);
            m.push_n(0.0, end - self.idx - 1);
        }
        let per_s = 1e9 / RATE_INTERVAL_NS as f64;
        Moments {
            n: m.n,
            mean: m.mean * per_s,
            m2: m.m2 * per_s * per_s,
        }
    }
}

/// One queue's rate series: all its commands, and each opcode's.
struct QueueRates {
    commands: IntervalSeries,
    opcodes: Vec<Option<IntervalSeries>>,
}

/// Every queue's rate series, bounded by the collector's queue cap.
struct RateCounter {
    start_ns: Option<u64>,
    last_ns: u64,
    slots: Vec<Option<Box<QueueRates>>>,
}

impl RateCounter {
    fn slot(queue: u32) -> Option<usize> {
        match queue {
            MAIN_CMDQ => Some(RATE_SLOTS - 1),
            q if (q as usize) < RATE_SLOTS - 1 => Some(q as usize),
            _ => None,
        }
    }

    fn observe(&mut self, ev: &Event) {
        let start = *self.start_ns.get_or_insert(ev.ts_ns);
        self.last_ns = self.last_ns.max(ev.ts_ns);
        let Payload::Command { queue, w0, .. } = ev.payload else {
            return;
        };
        let Some(slot) = Self::slot(queue) else {
            return;
        };
        let idx = ev.ts_ns.saturating_sub(start) / RATE_INTERVAL_NS;
        let q = self.slots[slot].get_or_insert_with(|| {
            Box::new(QueueRates {
                commands: IntervalSeries::new(idx),
                opcodes: vec![None; 256],
            })
        });
        q.commands.add(idx);
        q.opcodes[usize::from(w0 as u8)]
            .get_or_insert_with(|| IntervalSeries::new(idx))
            .add(idx);
    }

    /// Complete intervals of the run.
    fn intervals(&self) -> u64 {
        self.start_ns
            .map_or(0, |s| self.last_ns.saturating_sub(s) / RATE_INTERVAL_NS)
    }
}

/// What `cmdqv diff` compares of one queue.
#[derive(Clone, Debug)]
pub struct QueueProfile {
    /// Global VCMDQ index or [`MAIN_CMDQ`].
    pub id: u32,
    pub samples: QueueSamples,
    /// Commands/s of each complete interval of [`RATE_INTERVAL_NS`].
    pub rate: Moments,
    /// The same per opcode (its low byte), opcodes seen only.
    pub opcode_rates: Vec<(u8, Moments)>,
}

/// A trace file as `cmdqv diff` sees it.
#[derive(Clone, Debug)]
pub struct RunProfile {
    pub summary: Summary,
    pub info: ReplayInfo,
    pub queues: Vec<QueueProfile>,
    /// Complete rate intervals in the run.
    pub intervals: u64,
}

/// Stream a trace file into a [`RunProfile`] (memory bounded whatever the file's length).
pub fn profile(path: impl AsRef<Path>) -> Result<RunProfile, TraceError> {
    profile_reader(TraceReader::open(path)?)
}

/// [`profile`] from an open reader.
pub fn profile_reader<R: Read>(reader: TraceReader<R>) -> Result<RunProfile, TraceError> {
    let mut rates = RateCounter {
        start_ns: reader.meta().start_ns,
        last_ns: 0,
        slots: (0..RATE_SLOTS).map(|_| None).collect(),
    };
    let (c, info) = replay_observed(reader, None, None, &mut |_| {}, &mut |e| rates.observe(e))?;
    let summary = final_summary(&c, &info);
    let intervals = rates.intervals();
    Ok(RunProfile {
        queues: queue_profiles(&c, &rates, intervals),
        summary,
        info,
        intervals,
    })
}

fn queue_profiles(c: &Collector, rates: &RateCounter, end: u64) -> Vec<QueueProfile> {
    let idle = IntervalSeries::new(0);
    c.queue_samples()
        .into_iter()
        .map(|(id, samples)| {
            let r = RateCounter::slot(id).and_then(|s| rates.slots[s].as_deref());
            let opcodes = r
                .map(|r| r.opcodes.iter().enumerate())
                .into_iter()
                .flatten();
            QueueProfile {
                id,
                samples,
                rate: r.map_or(&idle, |r| &r.commands).finish(end),
                opcode_rates: opcodes
                    .filter_map(|(op, s)| Some((op as u8, s.as_ref()?.finish(end))))
                    .collect(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_series_counts_gaps_as_idle_intervals_and_drops_the_open_one() {
        let mut s = IntervalSeries::new(2);
        for idx in [2, 2, 3, 6, 6, 6, 7] {
            s.add(idx);
        }
        // Intervals 0..7: 0, 0, 2, 1, 0, 0, 3 (interval 7 is still open).
        let m = s.finish(7);
        assert_eq!(m.n, 7);
        assert!((m.mean - 6.0 / 7.0 * 10.0).abs() < 1e-9, "{m:?}");
        // A run that ends later closes the open interval and idles after it.
        let mut t = IntervalSeries::new(0);
        t.add(0);
        let m = t.finish(3);
        assert_eq!(m.n, 3);
        assert!((m.mean - 10.0 / 3.0).abs() < 1e-9, "{m:?}");
    }
}
