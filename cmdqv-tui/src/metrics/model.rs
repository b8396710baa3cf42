//! The state behind `/metrics`: Prometheus counters that only ever grow, built from what the
//! sources report (a collector's cumulative [`Summary`], which `--interval` restarts, or a page0
//! sampler's per-sample deltas), with the number of series bounded.
//!
//! Cardinality: per VM at most `max_queues` queues get labels of their own, in the order they
//! are first seen; every later queue of that VM is folded into one series whose `vintf`,
//! `lvcmdq` and `queue` labels are `other` (counters and the histogram summed, occupancy the
//! largest). `cerror` takes at most the 128 values of the 7-bit CONS_INDX.ERR field, `probe`
//! the fixed program list. A VM that went away keeps its final values for [`GONE_KEPT`], so a
//! scrape sees them, and then its series go.

use std::{
    collections::{BTreeMap, HashMap},
    time::{Duration, Instant},
};

use cmdqv_core::{
    analysis::{ProbeStatus, QueueSummary, Summary},
    event::ErrCode,
};

/// How long a VM's series stay after it went away.
pub const GONE_KEPT: Duration = Duration::from_secs(300);
/// Queues per VM with labels of their own, unless told otherwise.
pub const DEFAULT_MAX_QUEUES: usize = 32;
/// Latency bucket bounds are 2^k ns for k in this range (about 1 µs to 1 s), then +Inf: the
/// collector's histogram is log2-bucketed on the same bounds, so the mapping is exact.
pub const LATENCY_LOG2_MIN: u32 = 10;
pub const LATENCY_LOG2_MAX: u32 = 30;
/// Finite buckets plus +Inf.
pub const LATENCY_BUCKETS: usize = (LATENCY_LOG2_MAX - LATENCY_LOG2_MIN + 2) as usize;
/// The label value every folded queue shares.
pub const OTHER: &str = "other";

/// A queue's labels besides `host` and `vm`.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QueueLabels {
    pub vintf: String,
    pub lvcmdq: String,
    pub queue: String,
}

impl QueueLabels {
    fn other() -> Self {
        Self {
            vintf: OTHER.into(),
            lvcmdq: OTHER.into(),
            queue: OTHER.into(),
        }
    }

    fn of(q: &QueueSummary) -> Self {
        let opt = |v: Option<u32>| v.map(|n| n.to_string()).unwrap_or_default();
        Self {
            vintf: opt(q.vintf),
            lvcmdq: opt(q.lvcmdq),
            queue: q.name.clone(),
        }
    }

    /// An LVCMDQ seen through a VMM's VINTF page0 (the `vintf` label is the page0 mapping's
    /// ordinal in that VMM: the host's VINTF index is not visible from there).
    pub fn page0(vintf: usize, lidx: usize) -> Self {
        Self {
            vintf: vintf.to_string(),
            lvcmdq: lidx.to_string(),
            queue: format!("lvcmdq{lidx}"),
        }
    }
}

/// Batch latency in fixed log2 buckets (per bucket, not cumulative).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LatencyHist {
    pub buckets: [u64; LATENCY_BUCKETS],
    pub sum_ns: f64,
    pub count: u64,
}

impl LatencyHist {
    /// Bucket index for a collector bucket whose values are all below `upper_ns`.
    fn index(upper_ns: u64) -> usize {
        let k = upper_ns.max(1).next_power_of_two().trailing_zeros();
        (k.max(LATENCY_LOG2_MIN) - LATENCY_LOG2_MIN).min(LATENCY_BUCKETS as u32 - 1) as usize
    }

    /// Upper bounds in seconds, the last +Inf.
    pub fn bounds() -> impl Iterator<Item = f64> {
        (LATENCY_LOG2_MIN..=LATENCY_LOG2_MAX)
            .map(|k| (1u64 << k) as f64 / 1e9)
            .chain(std::iter::once(f64::INFINITY))
    }
}

/// One exported queue series.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QueueSeries {
    pub commands: u64,
    /// `None`: the source cannot see commands' kinds (page0 sampling).
    pub syncs: Option<u64>,
    /// `cerror` label value (`ILL`, `ABT`, ...) → errors.
    pub errors: BTreeMap<String, u64>,
    /// `None`: the source cannot see batches (page0 sampling).
    pub latency: Option<LatencyHist>,
}

/// A source queue: a collector row by name, or a page0 LVCMDQ by (mapping, index), so a page0
/// sample finds its queue without building a string.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum SeenKey {
    Row(String),
    Page0(usize, usize),
}

/// What was last seen of one source queue (a collector row or an LVCMDQ), to turn cumulative
/// figures into increments.
#[derive(Clone, Debug, Default)]
struct Seen {
    /// Index of the exported series it adds to.
    series: usize,
    commands: u64,
    syncs: u64,
    errors: BTreeMap<String, u64>,
    lat_buckets: BTreeMap<u64, u64>,
    lat_count: u64,
    lat_sum_ns: f64,
    occupancy: Option<f64>,
    /// CONS_INDX.ERR at the last page0 sample.
    cerror: u8,
}

/// Every series of one VM (or of the host kernel's own queues).
#[derive(Clone, Debug, Default)]
pub struct VmSeries {
    pub pid: Option<u32>,
    /// When it went away (series kept for [`GONE_KEPT`]).
    pub gone: Option<Instant>,
    pub events: u64,
    pub drops: u64,
    last_events: u64,
    last_drops: u64,
    /// Probe name → attached.
    pub probes: BTreeMap<String, bool>,
    /// The exported queue series, in the order they were first seen.
    pub queues: Vec<(QueueLabels, QueueSeries)>,
    seen: HashMap<SeenKey, Seen>,
    /// Distinct queue labels given out (at most `max_queues`).
    named: usize,
}

/// How much a cumulative figure grew since `last` (a figure that went down was restarted).
fn grew(now: u64, last: &mut u64) -> u64 {
    let d = if now >= *last { now - *last } else { now };
    *last = now;
    d
}

/// `CERROR_ILL` → `ILL`.
pub fn cerror_label(name: &str) -> String {
    name.strip_prefix("CERROR_").unwrap_or(name).to_string()
}

impl VmSeries {
    /// The series source queue `key` adds to: its own (labels from `labels`) while fewer than
    /// `max` are given out, `other` after.
    fn seen_mut(
        &mut self,
        key: SeenKey,
        labels: impl FnOnce() -> QueueLabels,
        max: usize,
    ) -> &mut Seen {
        if !self.seen.contains_key(&key) {
            let own = labels();
            let existing = self.queues.iter().position(|(l, _)| *l == own);
            let series = match existing {
                Some(i) => i,
                None if self.named < max => {
                    self.named += 1;
                    self.queues.push((own, QueueSeries::default()));
                    self.queues.len() - 1
                }
                None => {
                    let other = QueueLabels::other();
                    match self.queues.iter().position(|(l, _)| *l == other) {
                        Some(i) => i,
                        None => {
                            self.queues.push((other, QueueSeries::default()));
                            self.queues.len() - 1
                        }
                    }
                }
            };
            self.seen.insert(
                key.clone(),
                Seen {
                    series,
                    ..Seen::default()
                },
            );
        }
        self.seen.get_mut(&key).expect("inserted above")
    }

    fn apply_queue(&mut self, q: &QueueSummary, max: usize) {
        let seen = self.seen_mut(SeenKey::Row(q.name.clone()), || QueueLabels::of(q), max);
        let commands = grew(q.commands, &mut seen.commands);
        let syncs = grew(q.syncs, &mut seen.syncs);
        let mut errors = Vec::new();
        for (name, &n) in &q.errors_by_code {
            let last = seen.errors.entry(name.clone()).or_default();
            let d = grew(n, last);
            if d > 0 {
                errors.push((cerror_label(name), d));
            }
        }
        let lat = latency_increment(seen, q);
        seen.occupancy = Some(q.occupancy);
        let series = seen.series;
        let s = &mut self.queues[series].1;
        s.commands += commands;
        *s.syncs.get_or_insert(0) += syncs;
        for (name, d) in errors {
            *s.errors.entry(name).or_default() += d;
        }
        let h = s.latency.get_or_insert_with(LatencyHist::default);
        for (i, n) in lat.buckets.iter().enumerate() {
            h.buckets[i] += n;
        }
        h.count += lat.count;
        h.sum_ns += lat.sum_ns;
    }

    /// Occupancy per exported series (by index): the largest of the queues it holds.
    pub fn occupancy(&self) -> Vec<Option<f64>> {
        let mut out = vec![None; self.queues.len()];
        for s in self.seen.values() {
            if let Some(o) = s.occupancy {
                let e: &mut Option<f64> = &mut out[s.series];
                *e = Some(e.map_or(o, |m: f64| m.max(o)));
            }
        }
        out
    }
}

/// What a collector row's latency histogram gained since it was last seen.
fn latency_increment(seen: &mut Seen, q: &QueueSummary) -> LatencyHist {
    let mut h = LatencyHist::default();
    for &(upper, n) in &q.latency_histogram {
        let last = seen.lat_buckets.entry(upper).or_default();
        h.buckets[LatencyHist::index(upper)] += grew(n, last);
    }
    h.count = grew(q.batch_latency_ns.count, &mut seen.lat_count);
    let sum = q.batch_latency_ns.mean * q.batch_latency_ns.count as f64;
    h.sum_ns = if sum >= seen.lat_sum_ns {
        sum - seen.lat_sum_ns
    } else {
        sum
    };
    seen.lat_sum_ns = sum;
    h
}

/// One LVCMDQ observed through page0.
#[derive(Copy, Clone, Debug, PartialEq)]
pub struct Page0Queue {
    /// The page0 mapping's ordinal in the VMM.
    pub vintf: usize,
    pub lidx: usize,
    /// Commands consumed since the previous sample.
    pub consumed: u64,
    /// CONS_INDX.ERR now.
    pub cerror: u8,
    pub occupancy: Option<f64>,
}

/// Every series `/metrics` shows.
#[derive(Clone, Debug)]
pub struct MetricsState {
    /// The `host` label.
    pub host: String,
    pub max_queues: usize,
    pub vms: BTreeMap<String, VmSeries>,
    /// Discovery problems (`permission`, `gone`, `other`) → count.
    pub discovery_errors: BTreeMap<String, u64>,
}

impl MetricsState {
    pub fn new(host: impl Into<String>, max_queues: usize) -> Self {
        Self {
            host: host.into(),
            max_queues: max_queues.max(1),
            vms: BTreeMap::new(),
            discovery_errors: BTreeMap::new(),
        }
    }

    fn vm_mut(&mut self, vm: &str) -> &mut VmSeries {
        let v = self.vms.entry(vm.to_string()).or_default();
        v.gone = None;
        v
    }

    /// Takes a collector snapshot of `vm` (figures since the start or the last interval).
    pub fn apply_summary(&mut self, vm: &str, pid: Option<u32>, s: &Summary) {
        let max = self.max_queues;
        let v = self.vm_mut(vm);
        v.pid = pid.or(v.pid);
        v.events += grew(s.events, &mut v.last_events);
        v.drops += grew(s.drops, &mut v.last_drops);
        v.probes = probe_map(&s.probes);
        for q in &s.queues {
            v.apply_queue(q, max);
        }
    }

    /// `--interval` restarted the collector's figures: what it reports next is all new.
    pub fn interval_restarted(&mut self, vm: &str) {
        if let Some(v) = self.vms.get_mut(vm) {
            v.last_events = 0;
            for s in v.seen.values_mut() {
                *s = Seen {
                    series: s.series,
                    occupancy: s.occupancy,
                    ..Seen::default()
                };
            }
        }
    }

    /// Takes one page0 sample of `vm`: an error counts once when CONS_INDX.ERR turns non-zero
    /// (or changes code), as the queue stops on it until the guest acknowledges.
    pub fn apply_page0(&mut self, vm: &str, pid: u32, queues: &[Page0Queue]) {
        let max = self.max_queues;
        let v = self.vm_mut(vm);
        v.pid = Some(pid);
        for q in queues {
            let key = SeenKey::Page0(q.vintf, q.lidx);
            let seen = v.seen_mut(key, || QueueLabels::page0(q.vintf, q.lidx), max);
            let new_error = q.cerror != 0 && q.cerror != seen.cerror;
            seen.cerror = q.cerror;
            seen.occupancy = q.occupancy;
            let series = seen.series;
            let s = &mut v.queues[series].1;
            s.commands += q.consumed;
            if new_error {
                let name = cerror_label(&ErrCode::new(q.cerror.into()).name());
                *s.errors.entry(name).or_default() += 1;
            }
        }
    }

    /// Sets a VM's probe states (page0 mapping, eBPF programs).
    pub fn set_probes(&mut self, vm: &str, probes: &[ProbeStatus]) {
        self.vm_mut(vm).probes = probe_map(probes);
    }

    /// The VM went away: its series stay for [`GONE_KEPT`], probes read detached.
    pub fn vm_gone(&mut self, vm: &str, now: Instant) {
        if let Some(v) = self.vms.get_mut(vm) {
            v.gone.get_or_insert(now);
            for p in v.probes.values_mut() {
                *p = false;
            }
        }
    }

    /// Drops the series of VMs gone longer than [`GONE_KEPT`].
    pub fn expire(&mut self, now: Instant) {
        self.vms
            .retain(|_, v| v.gone.is_none_or(|t| now.duration_since(t) < GONE_KEPT));
    }

    pub fn discovery_error(&mut self, reason: &str) {
        *self.discovery_errors.entry(reason.to_string()).or_default() += 1;
    }
}

fn probe_map(probes: &[ProbeStatus]) -> BTreeMap<String, bool> {
    probes
        .iter()
        .map(|p| (p.name.clone(), p.status == "attached"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use cmdqv_core::{analysis::Latency, event::Source};

    fn queue(name: &str, lvcmdq: u32, commands: u64) -> QueueSummary {
        QueueSummary {
            name: name.into(),
            global_id: Some(lvcmdq),
            vintf: Some(0),
            lvcmdq: Some(lvcmdq),
            commands,
            syncs: commands / 4,
            ..Default::default()
        }
    }

    fn summary(queues: Vec<QueueSummary>) -> Summary {
        Summary {
            source: Source::Ebpf,
            target: "t".into(),
            elapsed_s: 1.0,
            events: 10,
            events_per_s: 0.0,
            drops: 0,
            probes: vec![],
            queues,
            vintfs: vec![],
            ioctls: BTreeMap::new(),
            handover: None,
            interval: None,
            log: vec![],
            notes: vec![],
            sim: None,
        }
    }

    fn series<'a>(m: &'a MetricsState, vm: &str, queue: &str) -> &'a QueueSeries {
        m.vms[vm]
            .queues
            .iter()
            .find(|(l, _)| l.queue == queue)
            .map(|(_, s)| s)
            .unwrap_or_else(|| panic!("no queue {queue}"))
    }

    #[test]
    fn occupancy_of_a_folded_series_is_its_largest() {
        let mut m = MetricsState::new("h", 1);
        let mut a = queue("vcmdq0", 0, 1);
        a.occupancy = 0.1;
        let mut b = queue("vcmdq1", 1, 1);
        b.occupancy = 0.5;
        let mut c = queue("vcmdq2", 2, 1);
        c.occupancy = 0.25;
        m.apply_summary("vm", None, &summary(vec![a, b, c]));
        let v = &m.vms["vm"];
        let occ = v.occupancy();
        let at = |q: &str| v.queues.iter().position(|(l, _)| l.queue == q).unwrap();
        assert_eq!(occ[at("vcmdq0")], Some(0.1));
        assert_eq!(occ[at(OTHER)], Some(0.5));
    }

    #[test]
    fn counters_only_grow_across_interval_restarts() {
        let mut m = MetricsState::new("h", 8);
        m.apply_summary("vm", Some(1), &summary(vec![queue("vcmdq0", 0, 100)]));
        m.apply_summary("vm", Some(1), &summary(vec![queue("vcmdq0", 0, 150)]));
        assert_eq!(series(&m, "vm", "vcmdq0").commands, 150);
        m.interval_restarted("vm");
        m.apply_summary("vm", Some(1), &summary(vec![queue("vcmdq0", 0, 30)]));
        assert_eq!(series(&m, "vm", "vcmdq0").commands, 180);
        assert_eq!(series(&m, "vm", "vcmdq0").syncs, Some(37 + 7));
        assert_eq!(m.vms["vm"].events, 20, "10, the same 10, then 10 new");
    }

    #[test]
    fn queues_past_the_bound_fold_into_other() {
        let mut m = MetricsState::new("h", 2);
        let qs = (0..5).map(|i| queue(&format!("vcmdq{i}"), i, 10)).collect();
        m.apply_summary("vm", None, &summary(qs));
        let v = &m.vms["vm"];
        assert_eq!(v.queues.len(), 3, "two named and other");
        assert_eq!(series(&m, "vm", OTHER).commands, 30);
        assert_eq!(series(&m, "vm", "vcmdq1").commands, 10);
    }

    #[test]
    fn latency_buckets_map_onto_the_fixed_bounds_and_sum_in_ns() {
        let mut q = queue("vcmdq0", 0, 4);
        q.latency_histogram = vec![(1 << 12, 3), (1 << 40, 1)];
        q.batch_latency_ns = Latency {
            count: 4,
            mean: 1000.0,
            ..Default::default()
        };
        let mut m = MetricsState::new("h", 8);
        m.apply_summary("vm", None, &summary(vec![q]));
        let h = series(&m, "vm", "vcmdq0").latency.clone().unwrap();
        assert_eq!(h.buckets[2], 3, "2^12 ns is the third bound");
        assert_eq!(h.buckets[LATENCY_BUCKETS - 1], 1, "beyond 2^30 ns: +Inf");
        assert_eq!((h.count, h.sum_ns), (4, 4000.0));
        assert_eq!(LatencyHist::bounds().count(), LATENCY_BUCKETS);
    }

    #[test]
    fn page0_errors_count_once_per_stop_and_gone_vms_expire() {
        let mut m = MetricsState::new("h", 8);
        let q = |consumed, cerror| Page0Queue {
            vintf: 0,
            lidx: 3,
            consumed,
            cerror,
            occupancy: Some(0.5),
        };
        m.apply_page0("vm", 7, &[q(5, 0)]);
        m.apply_page0("vm", 7, &[q(5, 1)]);
        m.apply_page0("vm", 7, &[q(0, 1)]);
        let s = series(&m, "vm", "lvcmdq3");
        assert_eq!((s.commands, s.syncs), (10, None));
        assert_eq!(s.errors["ILL"], 1);
        let t = Instant::now();
        m.vm_gone("vm", t);
        m.expire(t + GONE_KEPT / 2);
        assert!(m.vms.contains_key("vm"), "kept for a while");
        m.expire(t + GONE_KEPT);
        assert!(m.vms.is_empty());
    }
}
