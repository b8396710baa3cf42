//! What `cmdqv report` plots, gathered in one streaming pass over a trace file with bounded
//! memory: per queue the commands over time and the batch-latency distribution (an HDR
//! histogram), and the queue errors over time by name. Time series keep at most
//! [`MAX_POINTS`] buckets: when a recording outgrows them, neighbours merge and the bucket
//! doubles, so an hour costs what a second does.

use std::collections::BTreeMap;
use std::io::Read;

use hdrhistogram::Histogram;

use crate::analysis::{BatchTracker, MAX_QUEUES, queue_name};
use crate::event::{MAIN_CMDQ, Payload, QueueEvent};
use crate::record::{Record, TraceError, TraceReader};

/// Buckets a time series keeps.
pub const MAX_POINTS: usize = 1000;
/// Width of a time series bucket before any merge.
pub const FIRST_BUCKET_NS: u64 = 10_000_000;
/// Highest latency the histograms resolve; longer ones count at this value.
const LATENCY_HIGH_NS: u64 = 3_600_000_000_000;

/// Counts per time bucket since the start of the recording.
#[derive(Clone, Debug)]
pub struct Series {
    pub bucket_ns: u64,
    pub counts: Vec<u64>,
}

impl Default for Series {
    fn default() -> Self {
        Self {
            bucket_ns: FIRST_BUCKET_NS,
            counts: Vec::new(),
        }
    }
}

impl Series {
    pub fn add(&mut self, since_ns: u64, n: u64) {
        let mut i = since_ns / self.bucket_ns;
        while i >= MAX_POINTS as u64 {
            self.halve();
            i = since_ns / self.bucket_ns;
        }
        let i = i as usize;
        if self.counts.len() <= i {
            self.counts.resize(i + 1, 0);
        }
        self.counts[i] += n;
    }

    /// Doubles the bucket width, merging neighbours.
    fn halve(&mut self) {
        self.bucket_ns *= 2;
        let merged: Vec<u64> = self.counts.chunks(2).map(|c| c.iter().sum()).collect();
        self.counts = merged;
    }

    /// Widens to `bucket_ns` (a power-of-two multiple of this series' bucket), so that series
    /// can be drawn on one axis.
    pub fn widen_to(&mut self, bucket_ns: u64) {
        while self.bucket_ns < bucket_ns {
            self.halve();
        }
    }

    /// (seconds since start, per second) of each bucket.
    pub fn rates(&self) -> Vec<(f64, f64)> {
        let width_s = self.bucket_ns as f64 / 1e9;
        self.counts
            .iter()
            .enumerate()
            .map(|(i, &n)| (i as f64 * width_s, n as f64 / width_s))
            .collect()
    }
}

/// One queue's report data.
pub struct QueueStats {
    pub name: String,
    pub commands: Series,
    pub latency: Histogram<u64>,
    tracker: BatchTracker,
}

impl QueueStats {
    fn new(queue: u32) -> Self {
        Self {
            name: queue_name(queue),
            commands: Series::default(),
            latency: Histogram::new_with_bounds(1, LATENCY_HIGH_NS, 2)
                .expect("constant histogram bounds are valid"),
            tracker: BatchTracker::default(),
        }
    }
}

/// Everything the report's plots draw.
#[derive(Default)]
pub struct Stats {
    pub queues: BTreeMap<u32, QueueStats>,
    /// Queue errors over time, by CERROR name.
    pub errors: BTreeMap<String, Series>,
    pub events: u64,
    pub skipped: u64,
    pub first_ns: Option<u64>,
    pub last_ns: u64,
}

impl Stats {
    fn queue(&mut self, queue: u32) -> Option<&mut QueueStats> {
        if queue != MAIN_CMDQ && queue >= MAX_QUEUES {
            self.skipped += 1;
            return None;
        }
        Some(
            self.queues
                .entry(queue)
                .or_insert_with(|| QueueStats::new(queue)),
        )
    }

    fn event(&mut self, ts_ns: u64, payload: &Payload) {
        self.events += 1;
        let since = ts_ns.saturating_sub(*self.first_ns.get_or_insert(ts_ns));
        self.last_ns = self.last_ns.max(ts_ns);
        let (queue, ev) = match *payload {
            Payload::Command { queue, .. } => {
                if let Some(q) = self.queue(queue) {
                    q.commands.add(since, 1);
                    q.tracker.command();
                }
                return;
            }
            Payload::Queue { queue, event } => (queue, event),
            _ => return,
        };
        if let QueueEvent::Error { cerror, .. } = ev {
            self.errors
                .entry(cerror.name().into_owned())
                .or_default()
                .add(since, 1);
        }
        let Some(q) = self.queue(queue) else {
            return;
        };
        match ev {
            QueueEvent::Doorbell { prod, cons } => {
                q.tracker.doorbell(ts_ns, prod.into(), cons.into())
            }
            QueueEvent::Consumed { cons, prod } => {
                let h = &mut q.latency;
                q.tracker.consumed(ts_ns, cons.into(), prod.into(), |ns| {
                    h.saturating_record(ns.max(1));
                });
            }
            QueueEvent::Enable { enabled: false, .. } => q.tracker.clear(),
            _ => {}
        }
    }

    /// Reads a whole trace file (up to its last complete record).
    pub fn read<R: Read>(reader: &mut TraceReader<R>) -> Result<Self, TraceError> {
        let mut s = Self {
            first_ns: reader.meta().start_ns,
            ..Self::default()
        };
        for r in reader {
            match r {
                Ok(Record::Event(ev)) => s.event(ev.ts_ns, &ev.payload),
                Ok(Record::Meta(_)) => {}
                Err(TraceError::Io(e)) => return Err(TraceError::Io(e)),
                Err(_) => s.skipped += 1,
            }
        }
        Ok(s)
    }

    /// Seconds from the first event (or the recording's start) to the last.
    pub fn duration_s(&self) -> f64 {
        self.last_ns
            .saturating_sub(self.first_ns.unwrap_or(self.last_ns)) as f64
            / 1e9
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_series_stays_bounded_and_keeps_its_total() {
        let mut s = Series::default();
        let hour = 3_600_000_000_000u64;
        for i in 0..100_000u64 {
            s.add(i * (hour / 100_000), 3);
        }
        assert!(s.counts.len() <= MAX_POINTS, "{}", s.counts.len());
        assert_eq!(s.counts.iter().sum::<u64>(), 300_000);
        assert!(s.bucket_ns >= hour / MAX_POINTS as u64);
        let rates = s.rates();
        assert_eq!(
            rates[1].0,
            s.bucket_ns as f64 / 1e9,
            "x is the bucket's start in seconds"
        );
        let mut wide = s.clone();
        wide.widen_to(s.bucket_ns * 4);
        assert_eq!(wide.bucket_ns, s.bucket_ns * 4);
        assert_eq!(wide.counts.iter().sum::<u64>(), 300_000);
    }
}
