//! `cmdqv report`: one self-contained HTML file about a recording (inline CSS and SVG, nothing
//! fetched when it is opened): the queues' figures as a table, and plots of the command rate
//! over time, the batch-latency CDF per queue, where a batch's time goes (the collector's
//! `phases_ns` when it has them, the doorbell → CONS latency otherwise) and the queue errors
//! over time. Two streaming passes over the file (the collector's summary, then [`Stats`]),
//! both with bounded memory.

mod html;
mod plots;
mod stats;

use std::io::Write;
use std::path::Path;

use serde::Serialize;
use serde_json::Value;

pub use plots::{HEIGHT, MAX_SERIES, WIDTH};
pub use stats::{FIRST_BUCKET_NS, MAX_POINTS, QueueStats, Series, Stats};

use crate::analysis::Summary;
use crate::record::{TraceError, TraceReader, Truncation, replay};

pub const TITLE_RATE: &str = "Commands per second over time";
pub const TITLE_LATENCY: &str = "Batch latency CDF per queue";
pub const TITLE_PHASES: &str = "Phase breakdown of batch latency";
pub const TITLE_ERRORS: &str = "Queue errors over time";
/// Every plot's title, in the report's order.
pub const PLOT_TITLES: [&str; 4] = [TITLE_RATE, TITLE_LATENCY, TITLE_PHASES, TITLE_ERRORS];

/// What a report drew.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ReportInfo {
    pub events: u64,
    pub queues: usize,
    /// The phase plot shows `phases_ns` (false: the doorbell → CONS latency alone).
    pub phases: bool,
    pub errors: u64,
    /// Records skipped (CRC mismatch, undecodable) and events for untracked queue ids.
    pub skipped: u64,
    pub truncated: Option<Truncation>,
    pub bytes: u64,
}

/// The queues a plot draws: the busiest [`MAX_SERIES`], in id order.
fn busiest(stats: &Stats) -> Vec<u32> {
    let mut q: Vec<(u64, u32)> = stats
        .queues
        .iter()
        .map(|(&id, s)| (s.commands.counts.iter().sum::<u64>() + s.latency.len(), id))
        .filter(|&(n, _)| n > 0)
        .collect();
    q.sort_by(|a, b| b.cmp(a));
    let mut ids: Vec<u32> = q.into_iter().take(MAX_SERIES).map(|(_, id)| id).collect();
    ids.sort_unstable();
    ids
}

fn rate_plot(stats: &Stats, shown: &[u32]) -> std::io::Result<String> {
    let width = shown
        .iter()
        .map(|id| stats.queues[id].commands.bucket_ns)
        .max()
        .unwrap_or(FIRST_BUCKET_NS);
    let lines: Vec<plots::Line> = shown
        .iter()
        .map(|id| {
            let q = &stats.queues[id];
            let mut s = q.commands.clone();
            s.widen_to(width);
            (q.name.clone(), s.rates())
        })
        .collect();
    if lines.iter().all(|l| l.1.is_empty()) {
        return plots::empty(TITLE_RATE, "no commands in this recording");
    }
    plots::lines(
        TITLE_RATE,
        ("seconds since the start", "commands/s"),
        &lines,
    )
}

fn latency_plot(stats: &Stats, shown: &[u32]) -> std::io::Result<String> {
    let lines: Vec<plots::Line> = shown
        .iter()
        .map(|id| &stats.queues[id])
        .filter(|q| !q.latency.is_empty())
        .map(|q| {
            let n = q.latency.len() as f64;
            let mut seen = 0u64;
            let pts = q
                .latency
                .iter_recorded()
                .map(|v| {
                    seen += v.count_since_last_iteration();
                    (v.value_iterated_to() as f64 / 1e3, seen as f64 / n)
                })
                .collect();
            (q.name.clone(), pts)
        })
        .collect();
    if lines.is_empty() {
        return plots::empty(
            TITLE_LATENCY,
            "no batch completed (no doorbell reached its CONS)",
        );
    }
    plots::cdfs(
        TITLE_LATENCY,
        "batch latency, doorbell → CONS (µs, log scale)",
        &lines,
    )
}

/// The collector's phase names (`phases_ns` keys) in the order a batch passes them.
pub const PHASE_ORDER: [&str; 7] = [
    "doorbell_to_vmm",
    "vmm_to_consume",
    "doorbell_to_consume",
    "consume",
    "cons_update",
    "cons_visible",
    "ioctl",
];

/// A queue's name and its phases: (name, p50, p99), in ns.
type QueuePhases = (String, Vec<(String, f64, f64)>);

/// Phase name → (p50, p99) ns per queue, from the summary's `phases_ns` where this build's
/// collector has it.
fn phases(summary: &Value) -> Vec<QueuePhases> {
    let num = |v: &Value, k: &str| v.get(k).and_then(Value::as_f64).unwrap_or(0.0);
    let queues = summary["queues"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    queues
        .iter()
        .filter_map(|q| {
            let phases = q.get("phases_ns")?.as_object()?;
            let v: Vec<(String, f64, f64)> = phases
                .iter()
                .map(|(name, p)| (name.clone(), num(p, "p50"), num(p, "p99")))
                .collect();
            (!v.is_empty()).then(|| (q["name"].as_str().unwrap_or("?").to_owned(), v))
        })
        .take(MAX_SERIES)
        .collect()
}

/// The phase plot and the sentence that says what it shows.
fn phase_plot(summary: &Summary) -> std::io::Result<(String, String, bool)> {
    let json = serde_json::to_value(summary).unwrap_or(Value::Null);
    let mut per_queue = phases(&json);
    let have = !per_queue.is_empty();
    let note = if have {
        "Each batch split into the phases its events bound (the collector's phases_ns): the bar is the p50, the whisker the p99. Phases overlap where one spans others (doorbell_to_consume spans doorbell_to_vmm and vmm_to_consume).".to_owned()
    } else {
        per_queue = summary
            .queues
            .iter()
            .filter(|q| q.batch_latency_ns.count > 0)
            .take(MAX_SERIES)
            .map(|q| {
                let l = q.batch_latency_ns;
                (
                    q.name.clone(),
                    vec![("doorbell → CONS".to_owned(), l.p50 as f64, l.p99 as f64)],
                )
            })
            .collect();
        "This build's collector reports no per-phase breakdown (phases_ns) for this recording: shown is the whole batch latency, guest doorbell → CONS reaching its PROD (bar p50, whisker p99).".to_owned()
    };
    let mut keys: Vec<String> = Vec::new();
    for (_, v) in &per_queue {
        for (k, ..) in v {
            if !keys.contains(k) {
                keys.push(k.clone());
            }
        }
    }
    // A batch's order; names this list does not know go last.
    keys.sort_by_key(|k| {
        PHASE_ORDER
            .iter()
            .position(|p| p == k)
            .unwrap_or(PHASE_ORDER.len())
    });
    let groups: Vec<String> = per_queue.iter().map(|q| q.0.clone()).collect();
    let bars: Vec<Vec<(usize, f64, f64)>> = per_queue
        .iter()
        .map(|(_, v)| {
            v.iter()
                .map(|(k, p50, p99)| {
                    (
                        keys.iter().position(|x| x == k).unwrap_or(0),
                        p50 / 1e3,
                        p99 / 1e3,
                    )
                })
                .collect()
        })
        .collect();
    let svg = if groups.is_empty() {
        plots::empty(TITLE_PHASES, "no batch completed: nothing to break down")?
    } else {
        let b = plots::Bars {
            title: TITLE_PHASES,
            y_desc: "µs",
            keys: &keys,
            groups: &groups,
            bars: &bars,
        };
        plots::bars(&b)?
    };
    Ok((svg, note, have))
}

fn error_plot(stats: &Stats) -> std::io::Result<String> {
    if stats.errors.is_empty() {
        return plots::empty(TITLE_ERRORS, "no queue errors in this recording");
    }
    let width = stats
        .errors
        .values()
        .map(|s| s.bucket_ns)
        .max()
        .unwrap_or(FIRST_BUCKET_NS);
    let lines: Vec<plots::Line> = stats
        .errors
        .iter()
        .map(|(name, s)| {
            let mut s = s.clone();
            s.widen_to(width);
            (name.clone(), s.rates())
        })
        .collect();
    plots::lines(
        TITLE_ERRORS,
        ("seconds since the start", "errors/s"),
        &lines,
    )
}

/// Write the report of the trace file at `path` as HTML.
pub fn write_report<W: Write>(path: &Path, mut out: W) -> Result<ReportInfo, TraceError> {
    let (summary, replayed) = replay(path)?;
    let mut reader = TraceReader::open(path)?;
    let stats = Stats::read(&mut reader)?;
    let shown = busiest(&stats);
    let (phase_svg, phase_note, have_phases) = phase_plot(&summary)?;
    let sections = [
        (TITLE_RATE, format!("Commands consumed per second, per queue (the {} busiest at most), in buckets of {}.", MAX_SERIES, html::duration(stats.queues.values().map(|q| q.commands.bucket_ns).max().unwrap_or(FIRST_BUCKET_NS))), rate_plot(&stats, &shown)?),
        (TITLE_LATENCY, "Fraction of batches (guest doorbell → CONS reaching its PROD) completed within a latency.".to_owned(), latency_plot(&stats, &shown)?),
        (TITLE_PHASES, phase_note, phase_svg),
        (TITLE_ERRORS, "Queue errors (CERROR) per second, by name.".to_owned(), error_plot(&stats)?),
    ];
    let page = html::page(&summary, &replayed, &stats, &sections);
    out.write_all(page.as_bytes())?;
    out.flush()?;
    Ok(ReportInfo {
        events: stats.events,
        queues: summary.queues.len(),
        phases: have_phases,
        errors: summary.queues.iter().map(|q| q.errors).sum(),
        skipped: stats.skipped,
        truncated: reader.truncated(),
        bytes: page.len() as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn phases_come_from_the_summarys_phases_ns_when_it_has_them() {
        let s = json!({"queues": [
            {"name": "vcmdq0", "phases_ns": {"consume": {"count": 3, "p50": 100, "p99": 250},
                                             "cons_visible": {"count": 3, "p50": 40, "p99": 90}}},
            {"name": "vcmdq1"},
            {"name": "smmu-cmdq", "phases_ns": {}}
        ]});
        let p = phases(&s);
        assert_eq!(p.len(), 1, "queues without phases are left out: {p:?}");
        assert_eq!(p[0].0, "vcmdq0");
        assert!(p[0].1.contains(&("consume".to_owned(), 100.0, 250.0)));
        assert!(phases(&json!({"queues": [{"name": "vcmdq0"}]})).is_empty());
    }
}
