//! `cmdqv diff`: two runs ([`RunProfile`]s of two trace files) compared queue by queue and
//! opcode by opcode, each change judged by a named test and a noise threshold. A change is
//! significant only when the test rejects "no difference" at `alpha` *and* the relative change
//! is at least the noise threshold, as criterion's `noise_threshold` does: with millions of
//! batches a test alone calls every nonzero difference significant.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::analysis::stats::{Moments, TestResult, mann_whitney, welch};
use crate::analysis::{Latency, PHASES, PhaseLatency, QueueSummary};
use crate::command;
use crate::record::{QueueProfile, RATE_INTERVAL_NS, RunProfile};

/// How changes are judged.
#[derive(Clone, Debug)]
pub struct DiffOptions {
    /// Significance level of the tests.
    pub alpha: f64,
    /// Smallest relative change (|b − a| / a) that can be significant.
    pub noise_threshold: f64,
    /// Queues paired by name (`A name`, `B name`) before any other matching.
    pub pairs: Vec<(String, String)>,
}

impl Default for DiffOptions {
    fn default() -> Self {
        Self {
            alpha: 0.05,
            noise_threshold: 0.25,
            pairs: Vec::new(),
        }
    }
}

/// The tests and thresholds a report used, spelled out for its reader.
#[derive(Clone, Debug, Serialize)]
pub struct Method {
    pub latency_test: String,
    pub rate_test: String,
    pub batch_size_test: String,
    pub alpha: f64,
    pub noise_threshold: f64,
    /// What `change` is.
    pub change: String,
}

/// One run as the report names it.
#[derive(Clone, Debug, Serialize)]
pub struct RunInfo {
    pub file: String,
    pub target: String,
    pub events: u64,
    pub elapsed_s: f64,
    pub drops: u64,
    /// Complete rate intervals (the rate test's samples per queue).
    pub intervals: u64,
    pub truncated: bool,
    pub bad_records: u64,
}

/// A number in both runs.
#[derive(Clone, Debug, Serialize)]
pub struct Metric {
    pub a: f64,
    pub b: f64,
    /// (b − a) / a; `null` when a is 0.
    pub change: Option<f64>,
    /// `higher`, `lower` or `equal`: b against a.
    pub direction: &'static str,
    pub significant: bool,
    /// The test behind `significant`; `null` when the runs give it too few samples.
    pub test: Option<TestResult>,
}

/// The batch latency (or one phase of it) in both runs; `change` is that of the p50.
#[derive(Clone, Debug, Serialize)]
pub struct LatencyMetric<T> {
    pub a: Option<T>,
    pub b: Option<T>,
    pub change: Option<f64>,
    pub change_p99: Option<f64>,
    pub direction: &'static str,
    pub significant: bool,
    pub test: Option<TestResult>,
}

/// Errors by CERROR name in each run, and those only one run has.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ErrorDiff {
    pub a: BTreeMap<String, u64>,
    pub b: BTreeMap<String, u64>,
    pub only_in_a: Vec<String>,
    pub only_in_b: Vec<String>,
}

/// One pair of matched queues.
#[derive(Clone, Debug, Serialize)]
pub struct QueueDiff {
    /// The queue's name in A.
    pub name: String,
    /// Its name in B (the same unless paired otherwise).
    pub name_b: String,
    /// `vintf/lvcmdq`, `name` or `pair` (`--pair`).
    pub matched_by: &'static str,
    pub vintf: Option<u32>,
    pub lvcmdq: Option<u32>,
    pub commands_per_s: Metric,
    pub mean_batch_size: Metric,
    pub batch_latency_ns: LatencyMetric<Latency>,
    pub phases_ns: BTreeMap<String, LatencyMetric<PhaseLatency>>,
    /// Opcode name → its commands/s.
    pub opcodes: BTreeMap<String, Metric>,
    pub errors: ErrorDiff,
}

/// The whole comparison.
#[derive(Clone, Debug, Serialize)]
pub struct DiffReport {
    pub a: RunInfo,
    pub b: RunInfo,
    pub method: Method,
    pub queues: Vec<QueueDiff>,
    /// Queues of A (and of B) that nothing matched.
    pub unmatched_a: Vec<String>,
    pub unmatched_b: Vec<String>,
    /// Errors either run has, by name, across all queues (matched or not).
    pub errors: ErrorDiff,
}

impl DiffReport {
    /// No queue of A matched a queue of B: there is nothing to compare.
    pub fn nothing_matched(&self) -> bool {
        self.queues.is_empty()
    }
}

fn method(o: &DiffOptions) -> Method {
    Method {
        latency_test: "Mann-Whitney U on the batch-latency histograms (two-sided, normal \
                       approximation with tie and continuity correction)"
            .into(),
        rate_test: format!(
            "Welch's t-test on commands/s per {} ms interval of trace time",
            RATE_INTERVAL_NS / 1_000_000
        ),
        batch_size_test: "Welch's t-test on the commands per batch".into(),
        alpha: o.alpha,
        noise_threshold: o.noise_threshold,
        change: "(b - a) / a".into(),
    }
}

fn run_info(file: &str, p: &RunProfile) -> RunInfo {
    RunInfo {
        file: file.to_string(),
        target: p.summary.target.clone(),
        events: p.summary.events,
        elapsed_s: p.summary.elapsed_s,
        drops: p.summary.drops,
        intervals: p.intervals,
        truncated: p.info.truncated.is_some(),
        bad_records: p.info.bad_records,
    }
}

fn relative(a: f64, b: f64) -> Option<f64> {
    (a != 0.0 && a.is_finite() && b.is_finite()).then(|| (b - a) / a)
}

fn direction(a: f64, b: f64) -> &'static str {
    match b.partial_cmp(&a) {
        Some(std::cmp::Ordering::Greater) => "higher",
        Some(std::cmp::Ordering::Less) => "lower",
        _ => "equal",
    }
}

/// Significant: the test rejects at `alpha` and the change clears the noise threshold (a change
/// from zero always does).
fn judge(o: &DiffOptions, a: f64, b: f64, test: Option<&TestResult>) -> bool {
    let big = relative(a, b).map_or(a != b, |c| c.abs() >= o.noise_threshold);
    big && test.is_some_and(|t| t.p_value < o.alpha)
}

fn metric(o: &DiffOptions, a: f64, b: f64, test: Option<TestResult>) -> Metric {
    Metric {
        a,
        b,
        change: relative(a, b),
        direction: direction(a, b),
        significant: judge(o, a, b, test.as_ref()),
        test,
    }
}

/// A rate compared by Welch's t on its per-interval values.
fn rate_metric(o: &DiffOptions, a: f64, b: f64, ma: &Moments, mb: &Moments) -> Metric {
    metric(o, a, b, welch(ma, mb))
}

fn latency_metric<T: Copy>(
    o: &DiffOptions,
    a: Option<T>,
    b: Option<T>,
    pct: impl Fn(&T) -> (u64, u64),
    test: Option<TestResult>,
) -> LatencyMetric<T> {
    let (a50, a99) = a.as_ref().map_or((0, 0), &pct);
    let (b50, b99) = b.as_ref().map_or((0, 0), &pct);
    let (a50, b50) = (a50 as f64, b50 as f64);
    let both = a.is_some() && b.is_some();
    LatencyMetric {
        a,
        b,
        change: relative(a50, b50).filter(|_| both),
        change_p99: relative(a99 as f64, b99 as f64).filter(|_| both),
        direction: if both { direction(a50, b50) } else { "equal" },
        significant: both && judge(o, a50, b50, test.as_ref()),
        test,
    }
}

fn error_diff(a: &BTreeMap<String, u64>, b: &BTreeMap<String, u64>) -> ErrorDiff {
    let only = |x: &BTreeMap<String, u64>, y: &BTreeMap<String, u64>| {
        let seen = x.iter().filter(|&(_, &n)| n > 0);
        seen.filter(|(k, _)| y.get(*k).is_none_or(|&n| n == 0))
            .map(|(k, _)| k.clone())
            .collect()
    };
    ErrorDiff {
        a: a.clone(),
        b: b.clone(),
        only_in_a: only(a, b),
        only_in_b: only(b, a),
    }
}

fn opcode_metrics(
    o: &DiffOptions,
    (qa, pa): (&QueueSummary, Option<&QueueProfile>),
    (qb, pb): (&QueueSummary, Option<&QueueProfile>),
) -> BTreeMap<String, Metric> {
    let rates = |p: Option<&QueueProfile>| -> BTreeMap<String, Moments> {
        let r = p.map(|p| p.opcode_rates.iter()).into_iter().flatten();
        r.map(|&(op, m)| (command::command_name(op.into()).into_owned(), m))
            .collect()
    };
    let (ra, rb) = (rates(pa), rates(pb));
    let per_s = |q: &QueueSummary, name: &str| {
        let n = q.opcodes.get(name).copied().unwrap_or(0) as f64;
        let rate = q.commands_per_s / q.commands.max(1) as f64;
        n * rate
    };
    let names: std::collections::BTreeSet<&String> =
        qa.opcodes.keys().chain(qb.opcodes.keys()).collect();
    names
        .into_iter()
        .map(|name| {
            let (ma, mb) = (ra.get(name), rb.get(name));
            let test = ma.zip(mb).and_then(|(x, y)| welch(x, y));
            let m = metric(o, per_s(qa, name), per_s(qb, name), test);
            (name.clone(), m)
        })
        .collect()
}

fn phase_metrics(
    o: &DiffOptions,
    (qa, pa): (&QueueSummary, Option<&QueueProfile>),
    (qb, pb): (&QueueSummary, Option<&QueueProfile>),
) -> BTreeMap<String, LatencyMetric<PhaseLatency>> {
    let pct = |l: &PhaseLatency| (l.p50, l.p99);
    PHASES
        .iter()
        .filter_map(|&ph| {
            let (a, b) = (qa.phases_ns.get(ph.name()), qb.phases_ns.get(ph.name()));
            if a.is_none() && b.is_none() {
                return None;
            }
            let ha = pa.and_then(|p| p.samples.phases.get(ph));
            let hb = pb.and_then(|p| p.samples.phases.get(ph));
            let test = ha.zip(hb).and_then(|(x, y)| mann_whitney(x, y));
            let m = latency_metric(o, a.copied(), b.copied(), pct, test);
            Some((ph.name().to_string(), m))
        })
        .collect()
}

/// The profile of the queue a summary row describes.
fn profile_of<'p>(p: &'p RunProfile, q: &QueueSummary) -> Option<&'p QueueProfile> {
    let id = q.global_id.unwrap_or(crate::event::MAIN_CMDQ);
    p.queues
        .iter()
        .find(|x| x.id == id)
        .filter(|_| q.host.is_none())
}

fn batch_sizes(p: Option<&QueueProfile>) -> Moments {
    p.map_or_else(Moments::default, |p| {
        let (n, sum, sq) = p.samples.batch_sizes;
        Moments::from_sums(n, sum as f64, sq as f64)
    })
}

fn queue_diff(
    o: &DiffOptions,
    (a, qa): (&RunProfile, &QueueSummary),
    (b, qb): (&RunProfile, &QueueSummary),
    matched_by: &'static str,
) -> QueueDiff {
    let (pa, pb) = (profile_of(a, qa), profile_of(b, qb));
    let idle = Moments::default();
    let rate = |p: Option<&QueueProfile>| p.map_or(idle, |p| p.rate);
    let lat = |q: &QueueSummary| (q.batch_latency_ns.count > 0).then_some(q.batch_latency_ns);
    let (ha, hb) = (
        pa.and_then(|p| p.samples.latency.as_ref()),
        pb.and_then(|p| p.samples.latency.as_ref()),
    );
    let lat_test = ha.zip(hb).and_then(|(x, y)| mann_whitney(x, y));
    let (sa, sb) = (batch_sizes(pa), batch_sizes(pb));
    QueueDiff {
        name: qa.name.clone(),
        name_b: qb.name.clone(),
        matched_by,
        vintf: qa.vintf,
        lvcmdq: qa.lvcmdq,
        commands_per_s: rate_metric(
            o,
            qa.commands_per_s,
            qb.commands_per_s,
            &rate(pa),
            &rate(pb),
        ),
        mean_batch_size: metric(o, qa.mean_batch_size, qb.mean_batch_size, welch(&sa, &sb)),
        batch_latency_ns: latency_metric(o, lat(qa), lat(qb), |l| (l.p50, l.p99), lat_test),
        phases_ns: phase_metrics(o, (qa, pa), (qb, pb)),
        opcodes: opcode_metrics(o, (qa, pa), (qb, pb)),
        errors: error_diff(&qa.errors_by_code, &qb.errors_by_code),
    }
}

/// Pairs of queue indices (A, B) and how each was matched: `--pair` names first, then the
/// same VINTF/LVCMDQ, then the same name; each queue is used once.
fn match_queues(
    a: &[QueueSummary],
    b: &[QueueSummary],
    o: &DiffOptions,
) -> Vec<(usize, usize, &'static str)> {
    let mut used_a = vec![false; a.len()];
    let mut used_b = vec![false; b.len()];
    let mut out = Vec::new();
    let mut take = |ia: usize, ib: usize, how, out: &mut Vec<_>| {
        if !used_a[ia] && !used_b[ib] {
            used_a[ia] = true;
            used_b[ib] = true;
            out.push((ia, ib, how));
        }
    };
    for (na, nb) in &o.pairs {
        let ia = a.iter().position(|q| &q.name == na);
        let ib = b.iter().position(|q| &q.name == nb);
        if let (Some(ia), Some(ib)) = (ia, ib) {
            take(ia, ib, "pair", &mut out);
        }
    }
    let key = |q: &QueueSummary| q.vintf.zip(q.lvcmdq).filter(|_| q.host.is_none());
    for (ia, qa) in a.iter().enumerate() {
        let by_vi = key(qa).and_then(|k| b.iter().position(|qb| key(qb) == Some(k)));
        if let Some(ib) = by_vi {
            take(ia, ib, "vintf/lvcmdq", &mut out);
        }
    }
    for (ia, qa) in a.iter().enumerate() {
        if let Some(ib) = b.iter().position(|qb| qb.name == qa.name) {
            take(ia, ib, "name", &mut out);
        }
    }
    out.sort_unstable();
    out
}

/// All errors of a run by name.
fn run_errors(p: &RunProfile) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for (k, n) in p.summary.queues.iter().flat_map(|q| &q.errors_by_code) {
        *m.entry(k.clone()).or_insert(0) += n;
    }
    m
}

/// Compare run `b` against run `a`.
pub fn diff(
    (a_file, a): (&str, &RunProfile),
    (b_file, b): (&str, &RunProfile),
    o: &DiffOptions,
) -> DiffReport {
    let (qa, qb) = (&a.summary.queues, &b.summary.queues);
    let pairs = match_queues(qa, qb, o);
    let unmatched = |qs: &[QueueSummary], used: &dyn Fn(usize) -> bool| {
        let left = qs.iter().enumerate().filter(|&(i, _)| !used(i));
        left.map(|(_, q)| q.name.clone()).collect()
    };
    DiffReport {
        a: run_info(a_file, a),
        b: run_info(b_file, b),
        method: method(o),
        queues: pairs
            .iter()
            .map(|&(ia, ib, how)| queue_diff(o, (a, &qa[ia]), (b, &qb[ib]), how))
            .collect(),
        unmatched_a: unmatched(qa, &|i| pairs.iter().any(|p| p.0 == i)),
        unmatched_b: unmatched(qb, &|i| pairs.iter().any(|p| p.1 == i)),
        errors: error_diff(&run_errors(a), &run_errors(b)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(name: &str, vi: Option<(u32, u32)>) -> QueueSummary {
        QueueSummary {
            name: name.into(),
            vintf: vi.map(|v| v.0),
            lvcmdq: vi.map(|v| v.1),
            ..QueueSummary::default()
        }
    }

    #[test]
    fn queues_match_by_pair_then_vintf_lvcmdq_then_name_each_once() {
        let a = [
            q("smmu-cmdq", None),
            q("vcmdq0", Some((0, 0))),
            q("vcmdq1", Some((0, 1))),
        ];
        // B's global ids moved (vcmdq4 is LVCMDQ 0 now), and an unrelated vcmdq0 exists.
        let b = [
            q("vcmdq4", Some((0, 0))),
            q("vcmdq0", Some((1, 0))),
            q("smmu-cmdq", None),
            q("vcmdq5", Some((0, 1))),
        ];
        let m = match_queues(&a, &b, &DiffOptions::default());
        assert_eq!(
            m,
            [
                (0, 2, "name"),
                (1, 0, "vintf/lvcmdq"),
                (2, 3, "vintf/lvcmdq")
            ]
        );
        let o = DiffOptions {
            pairs: vec![("smmu-cmdq".into(), "vcmdq5".into())],
            ..DiffOptions::default()
        };
        let m = match_queues(&a, &b, &o);
        assert_eq!(m, [(0, 3, "pair"), (1, 0, "vintf/lvcmdq")]);
        assert!(match_queues(&a[..1], &b[..2], &DiffOptions::default()).is_empty());
    }

    #[test]
    fn significant_needs_the_test_and_the_noise_threshold() {
        let o = DiffOptions::default();
        let t = |p| TestResult {
            test: "welch-t",
            statistic: 0.0,
            z: None,
            df: None,
            p_value: p,
        };
        assert!(judge(&o, 100.0, 150.0, Some(&t(0.001))));
        assert!(
            !judge(&o, 100.0, 110.0, Some(&t(1e-30))),
            "below the noise threshold"
        );
        assert!(
            !judge(&o, 100.0, 150.0, Some(&t(0.2))),
            "the test does not reject"
        );
        assert!(!judge(&o, 100.0, 150.0, None), "no test, no verdict");
        assert!(judge(&o, 0.0, 5.0, Some(&t(0.001))), "from zero");
        let m = metric(&o, 200.0, 100.0, Some(t(0.01)));
        assert_eq!(
            (m.change, m.direction, m.significant),
            (Some(-0.5), "lower", true)
        );
    }

    #[test]
    fn errors_of_one_side_only_are_listed() {
        let a = BTreeMap::from([("CERROR_ILL".to_string(), 3), ("CERROR_ABT".to_string(), 0)]);
        let b = BTreeMap::from([("CERROR_ABT".to_string(), 2)]);
        let e = error_diff(&a, &b);
        assert_eq!(e.only_in_a, ["CERROR_ILL"]);
        assert_eq!(e.only_in_b, ["CERROR_ABT"]);
    }
}
