//! What the charts draw over time: per queue a bounded ring of per-interval points (commands/s
//! and the interval's p99 batch latency), taken from consecutive snapshots. A snapshot carries
//! only totals and the latency histogram since the start, so each point is the difference
//! between two snapshots at least [`INTERVAL_S`] apart: commands over the elapsed time, and the
//! p99 of the histogram's growth (to its power-of-two bucket's upper bound). The ring outlives
//! the per-snapshot view model; the app keeps it and feeds it every snapshot.

use std::collections::VecDeque;

use cmdqv_core::analysis::{QueueSummary, Summary};

/// Points kept per queue: ten minutes at one a second.
pub const CAPACITY: usize = 600;
/// Shortest interval a point covers, in seconds of the collector's clock.
pub const INTERVAL_S: f64 = 1.0;

/// One interval of one queue.
#[derive(Copy, Clone, Debug, PartialEq)]
pub struct Point {
    /// End of the interval, in seconds since the collector started (`Summary::elapsed_s`).
    pub t: f64,
    pub commands_per_s: f64,
    /// The interval's p99 batch latency (bucket upper bound); `None` without a batch in it.
    pub p99_ns: Option<u64>,
}

/// Where the last point of a queue ended.
#[derive(Clone, Debug)]
struct Mark {
    t: f64,
    commands: u64,
    histogram: Vec<(u64, u64)>,
}

/// The points of one queue, oldest first.
#[derive(Clone, Debug, Default)]
pub struct QueueHistory {
    points: VecDeque<Point>,
    last: Option<Mark>,
}

impl QueueHistory {
    pub fn points(&self) -> &VecDeque<Point> {
        &self.points
    }

    fn push(&mut self, p: Point) {
        if self.points.len() == CAPACITY {
            self.points.pop_front();
        }
        self.points.push_back(p);
    }

    fn observe(&mut self, now: f64, q: &QueueSummary) {
        // Built only when a point is taken: most snapshots (10-60 a second) take none.
        let mark = || Mark {
            t: now,
            commands: q.commands,
            histogram: q.latency_histogram.clone(),
        };
        let Some(last) = &self.last else {
            self.seed(now, q);
            self.last = Some(mark());
            return;
        };
        if now < last.t || q.commands < last.commands {
            // The collector started over (a new replay): the old points are another run's.
            *self = Self::default();
            self.observe(now, q);
            return;
        }
        let dt = now - last.t;
        if dt < INTERVAL_S {
            return;
        }
        let point = Point {
            t: now,
            commands_per_s: (q.commands - last.commands) as f64 / dt,
            p99_ns: interval_p99(&last.histogram, &q.latency_histogram),
        };
        self.push(point);
        self.last = Some(mark());
    }

    /// Before the first interval: the collector's own per-second command counts, so a chart
    /// has a past from the first frame on (replays included); no latency for those seconds.
    fn seed(&mut self, now: f64, q: &QueueSummary) {
        let n = q.rate_history.len();
        for (i, &c) in q.rate_history.iter().enumerate() {
            let t = now - (n - 1 - i) as f64;
            if t.is_finite() {
                self.push(Point {
                    t,
                    commands_per_s: c as f64,
                    p99_ns: None,
                });
            }
        }
    }
}

/// The p99 of the batches `new` has beyond `old` (bucket upper bounds), `None` if none.
pub fn interval_p99(old: &[(u64, u64)], new: &[(u64, u64)]) -> Option<u64> {
    let grown = |&(ub, n): &(u64, u64)| {
        let before = old.iter().find(|b| b.0 == ub).map_or(0, |b| b.1);
        (ub, u128::from(n.saturating_sub(before)))
    };
    let total: u128 = new.iter().map(|b| grown(b).1).sum();
    if total == 0 {
        return None;
    }
    let rank = (total * 99).div_ceil(100);
    let mut seen = 0u128;
    new.iter().map(grown).find_map(|(ub, n)| {
        seen += n;
        (seen >= rank).then_some(ub)
    })
}

/// Every queue's points, in the order of the last snapshot's queues.
#[derive(Clone, Debug, Default)]
pub struct History {
    queues: Vec<(String, QueueHistory)>,
}

impl History {
    /// Take a snapshot in: a point for each queue whose last one is an interval old. Queues the
    /// snapshot no longer reports are forgotten, so the history stays as bounded as the
    /// snapshot. A snapshot lists its queues in the same order as the one before (the
    /// collector's), so each queue finds its history at its own index with one name compare;
    /// only when the queues changed are the histories looked up by name.
    pub fn observe(&mut self, s: &Summary) {
        let now = s.elapsed_s;
        if !now.is_finite() {
            return;
        }
        let same_order = self.queues.len() == s.queues.len()
            && self
                .queues
                .iter()
                .zip(&s.queues)
                .all(|(h, q)| h.0 == q.name);
        if !same_order {
            let mut old: std::collections::HashMap<String, QueueHistory> =
                std::mem::take(&mut self.queues).into_iter().collect();
            self.queues = s
                .queues
                .iter()
                .map(|q| (q.name.clone(), old.remove(&q.name).unwrap_or_default()))
                .collect();
        }
        for ((_, h), q) in self.queues.iter_mut().zip(&s.queues) {
            h.observe(now, q);
        }
    }

    pub fn queue(&self, name: &str) -> Option<&QueueHistory> {
        self.queues.iter().find(|(n, _)| n == name).map(|(_, h)| h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn empty() -> Summary {
        let c = cmdqv_core::analysis::Collector::new(cmdqv_core::analysis::CollectorConfig::new(
            cmdqv_core::event::Source::Replay,
            "t",
        ));
        c.snapshot(0)
    }

    fn snap(t: f64, commands: u64, hist: Vec<(u64, u64)>) -> Summary {
        let mut s = empty();
        s.elapsed_s = t;
        s.queues = vec![QueueSummary {
            name: "q".into(),
            commands,
            latency_histogram: hist,
            rate_history: vec![5, 7],
            ..QueueSummary::default()
        }];
        s
    }

    #[test]
    fn points_are_differences_between_snapshots_an_interval_apart() {
        let mut h = History::default();
        h.observe(&snap(10.0, 100, vec![(1024, 10), (2048, 0)]));
        let seeded: Vec<f64> = h.queue("q").unwrap().points().iter().map(|p| p.t).collect();
        assert_eq!(seeded, [9.0, 10.0], "seeded from the per-second counts");
        // Too soon: no point.
        h.observe(&snap(10.5, 150, vec![(1024, 10), (2048, 0)]));
        assert_eq!(h.queue("q").unwrap().points().len(), 2);
        h.observe(&snap(12.0, 300, vec![(1024, 10), (2048, 100)]));
        let p = *h.queue("q").unwrap().points().back().unwrap();
        assert_eq!(p.t, 12.0);
        assert_eq!(p.commands_per_s, 100.0);
        assert_eq!(p.p99_ns, Some(2048), "only the interval's batches count");
        // Idle interval: a rate of 0, no latency.
        h.observe(&snap(13.0, 300, vec![(1024, 10), (2048, 100)]));
        let p = *h.queue("q").unwrap().points().back().unwrap();
        assert_eq!((p.commands_per_s, p.p99_ns), (0.0, None));
        // A new run (time going back) starts over.
        h.observe(&snap(1.0, 3, vec![]));
        assert_eq!(h.queue("q").unwrap().points().len(), 2);
        // A queue no longer reported is forgotten.
        h.observe(&empty());
        assert!(h.queue("q").is_none());
    }

    #[test]
    fn the_ring_is_bounded() {
        let mut h = History::default();
        for i in 0..(CAPACITY as u64 + 50) {
            h.observe(&snap(i as f64, i * 10, vec![(1 << 10, u64::MAX)]));
        }
        assert_eq!(h.queue("q").unwrap().points().len(), CAPACITY);
    }

    #[test]
    fn interval_p99_takes_the_99th_batch() {
        let old = [(100, 5), (200, 0)];
        let new = [(100, 104), (200, 1)];
        assert_eq!(interval_p99(&old, &new), Some(100));
        let new = [(100, 103), (200, 3)];
        assert_eq!(interval_p99(&old, &new), Some(200));
        assert_eq!(interval_p99(&new, &new), None);
        assert_eq!(interval_p99(&[], &[(u64::MAX, u64::MAX)]), Some(u64::MAX));
    }
}
