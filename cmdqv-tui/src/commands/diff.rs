//! `cmdqv diff A.cmdqv B.cmdqv [--json]`: two recordings streamed one after the other (bounded
//! memory) and compared per queue and per opcode — commands/s, batch sizes, batch latency and
//! its phases side by side, with the change, the test behind it and whether it is significant —
//! plus the errors one run has and the other has not.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use clap::Args;
use cmdqv_core::diff::{DiffOptions, DiffReport, LatencyMetric, Metric, QueueDiff, diff};
use cmdqv_core::record::{RunProfile, profile};

use crate::tui::format;

/// Exit status when no queue of A matches a queue of B (the report is still printed).
pub const EXIT_NOTHING_MATCHED: i32 = 2;

#[derive(Args, Clone, Debug)]
pub struct DiffArgs {
    /// The baseline recording.
    pub a: PathBuf,
    /// The recording compared with it.
    pub b: PathBuf,
    /// One JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Significance level of the tests.
    #[arg(long, default_value_t = 0.05, value_parser = parse_fraction)]
    pub alpha: f64,
    /// Smallest relative change that can be significant (0.25 = 25 %: what two identical sim
    /// runs' p50 differ by on a loaded 2-vCPU VM; lower it on a quiet machine).
    #[arg(long, default_value_t = 0.25, value_parser = parse_fraction)]
    pub noise_threshold: f64,
    /// Compare queue NAME_A of A with queue NAME_B of B (repeatable), e.g. `smmu-cmdq=vcmdq1`
    /// to set the trapped path against the direct one of the same recording.
    #[arg(long, value_name = "NAME_A=NAME_B", value_parser = parse_pair)]
    pub pair: Vec<(String, String)>,
}

fn parse_fraction(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("'{s}' is not a number from 0 to 1")),
    }
}

fn parse_pair(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((a, b)) if !a.is_empty() && !b.is_empty() => Ok((a.into(), b.into())),
        _ => Err(format!(
            "'{s}' is not NAME_A=NAME_B (e.g. smmu-cmdq=vcmdq1)"
        )),
    }
}

/// No queue matched: the caller exits with [`EXIT_NOTHING_MATCHED`].
#[derive(Debug)]
pub struct NothingMatched;

impl std::fmt::Display for NothingMatched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(
            "no queue of A matches a queue of B (by VINTF/LVCMDQ or by name): nothing to compare; \
             --pair NAME_A=NAME_B pairs queues by hand",
        )
    }
}

impl std::error::Error for NothingMatched {}

fn read(which: &str, path: &Path) -> Result<RunProfile> {
    let p = profile(path).with_context(|| format!("reading {which} ({})", path.display()))?;
    if let Some(t) = p.info.truncated {
        eprintln!(
            "cmdqv: {} is truncated: compared up to byte {} ({} trailing bytes ignored)",
            path.display(),
            t.offset,
            t.ignored_bytes
        );
    }
    if p.info.bad_records > 0 {
        eprintln!(
            "cmdqv: {}: {} corrupt records skipped",
            path.display(),
            p.info.bad_records
        );
    }
    if p.info.events == 0 {
        bail!("{which} ({}) holds no events", path.display());
    }
    Ok(p)
}

pub fn run(a: DiffArgs) -> Result<()> {
    let pa = read("A", &a.a)?;
    let pb = read("B", &a.b)?;
    let opts = DiffOptions {
        alpha: a.alpha,
        noise_threshold: a.noise_threshold,
        pairs: a.pair.clone(),
    };
    let name = |p: &Path| p.display().to_string();
    let report = diff((&name(&a.a), &pa), (&name(&a.b), &pb), &opts);
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", text(&report));
    }
    if report.nothing_matched() {
        return Err(NothingMatched.into());
    }
    Ok(())
}

/// `+12.3%`, `-4.0%`, or `-` without a baseline.
fn change(c: Option<f64>) -> String {
    match c {
        Some(c) if c.is_finite() => format!("{:+.1}%", c * 100.0),
        _ => "-".into(),
    }
}

/// `yes (mann-whitney-u p=1.2e-5)` / `no (welch-t p=0.41)` / `no (too few samples)`.
fn verdict(significant: bool, test: Option<&cmdqv_core::analysis::stats::TestResult>) -> String {
    let word = if significant { "yes" } else { "no" };
    match test {
        Some(t) if t.p_value >= 0.001 => format!("{word} ({} p={:.3})", t.test, t.p_value),
        Some(t) => format!("{word} ({} p={:.1e})", t.test, t.p_value),
        None => format!("{word} (too few samples)"),
    }
}

fn row(out: &mut String, label: &str, a: String, b: String, c: String, v: String) {
    let _ = writeln!(out, "  {label:<28} {a:>10} {b:>10} {c:>9}  {v}");
}

fn metric_row(out: &mut String, label: &str, m: &Metric, fmt: fn(f64) -> String) {
    let v = verdict(m.significant, m.test.as_ref());
    row(out, label, fmt(m.a), fmt(m.b), change(m.change), v);
}

fn latency_rows<T>(out: &mut String, label: &str, m: &LatencyMetric<T>, pct: fn(&T) -> (u64, u64)) {
    let (a, b) = (m.a.as_ref().map(pct), m.b.as_ref().map(pct));
    let show = |x: Option<(u64, u64)>, i: usize| {
        x.map_or("absent".into(), |x| {
            format::ns(if i == 0 { x.0 } else { x.1 })
        })
    };
    let v = verdict(m.significant, m.test.as_ref());
    row(
        out,
        &format!("{label} p50"),
        show(a, 0),
        show(b, 0),
        change(m.change),
        v,
    );
    let p99 = format!("{label} p99");
    row(
        out,
        &p99,
        show(a, 1),
        show(b, 1),
        change(m.change_p99),
        String::new(),
    );
}

fn queue_text(out: &mut String, q: &QueueDiff) {
    let vi = match (q.vintf, q.lvcmdq) {
        (Some(v), Some(l)) => format!(", VINTF {v} LVCMDQ {l}"),
        _ => String::new(),
    };
    let _ = writeln!(
        out,
        "\n{} ↔ {} (matched by {}{vi})",
        q.name, q.name_b, q.matched_by
    );
    row(
        out,
        "",
        "A".into(),
        "B".into(),
        "change".into(),
        "significant".into(),
    );
    metric_row(out, "commands/s", &q.commands_per_s, format::rate);
    metric_row(out, "batch size (mean)", &q.mean_batch_size, |v| {
        format!("{v:.2}")
    });
    latency_rows(out, "batch latency", &q.batch_latency_ns, |l| {
        (l.p50, l.p99)
    });
    for (name, m) in &q.phases_ns {
        latency_rows(out, &format!("phase {name}"), m, |l| (l.p50, l.p99));
    }
    for (name, m) in &q.opcodes {
        metric_row(out, &format!("{name}/s"), m, format::rate);
    }
    let e = &q.errors;
    if !e.only_in_a.is_empty() || !e.only_in_b.is_empty() {
        let _ = writeln!(
            out,
            "  errors only in A: {}; only in B: {}",
            list(&e.only_in_a),
            list(&e.only_in_b)
        );
    }
}

fn list(v: &[String]) -> String {
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// The report for a person.
pub fn text(r: &DiffReport) -> String {
    let mut out = String::new();
    for (which, i) in [("A", &r.a), ("B", &r.b)] {
        let _ = writeln!(
            out,
            "{which}: {} — {} ({} events, {:.1} s{})",
            i.file,
            i.target,
            format::count(i.events),
            i.elapsed_s,
            if i.truncated { ", truncated" } else { "" }
        );
    }
    let m = &r.method;
    let _ = writeln!(
        out,
        "latency: {}\nrates: {}\nbatch sizes: {}\nsignificant: p < {} and |change| >= {:.0}% (change = {})",
        m.latency_test,
        m.rate_test,
        m.batch_size_test,
        m.alpha,
        m.noise_threshold * 100.0,
        m.change
    );
    for q in &r.queues {
        queue_text(&mut out, q);
    }
    let _ = writeln!(
        out,
        "\nerrors only in A: {}; only in B: {}",
        list(&r.errors.only_in_a),
        list(&r.errors.only_in_b)
    );
    if !r.unmatched_a.is_empty() || !r.unmatched_b.is_empty() {
        let _ = writeln!(
            out,
            "unmatched queues: A {}; B {}",
            list(&r.unmatched_a),
            list(&r.unmatched_b)
        );
    }
    if r.nothing_matched() {
        let _ = writeln!(out, "{NothingMatched}");
    }
    out
}
