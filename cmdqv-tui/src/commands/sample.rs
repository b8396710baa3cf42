//! `cmdqv sample --pid PID`: the passthrough sampler for live hosts. With VCMDQ passthrough the
//! guest's PROD stores never trap, so neither the VMM nor a uprobe sees them; the only place a
//! queue's progress shows is the VINTF page0 itself. This duplicates the VMM's iommufd (or the
//! sim VMM's page0 memfd) with pidfd_getfd, maps page0 read-only and prints, per interval and
//! per active LVCMDQ, PROD, CONS, the entries pending (occupancy) and the commands consumed per
//! second. Headless only: one text line per queue and interval, or one JSON object per interval.
//!
//! `--all` follows every VMM on the host instead (see the fleet module): VMMs found by a rescan
//! of /proc every `--rescan`, let go when they exit, a VMM that cannot be attached reported on
//! stderr while the others go on; each report line or object names its `vm` and `pid`.

use std::{
    io::Write,
    time::{Duration, Instant},
};

use std::sync::{Arc, Mutex};

use anyhow::{Context as _, Result};
use clap::Args;
use cmdqv_core::host::{
    LVCMDQ_STRIDE, PAGE0_LEN, discover,
    sampler::{LvcmdqSample, Sampler},
};
use schemars::JsonSchema;
use serde::Serialize;

use crate::{
    fleet::{self, FollowConfig, active},
    live::{identity::TargetId, interrupted, parse_duration},
    metrics::{self, MetricsArgs, MetricsState, Standalone},
};

#[derive(Args, Clone, Debug)]
pub struct SampleArgs {
    /// The VMM to sample.
    #[arg(long, required_unless_present = "all", conflicts_with = "all")]
    pub pid: Option<u32>,
    /// Every VMM on the host that maps a VINTF page0 (iommufd or the sim VMM's memfd),
    /// followed as they start and stop.
    #[arg(long)]
    pub all: bool,
    /// With --all: how often /proc is scanned for VMMs that started.
    #[arg(long, value_parser = parse_duration, default_value = "2s")]
    pub rescan: std::time::Duration,
    /// Samples (report lines) per second.
    #[arg(long, default_value_t = 10.0)]
    pub rate: f64,
    /// Stop after this long (default: until the VMM exits).
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<std::time::Duration>,
    /// One JSON object per interval.
    #[arg(long)]
    pub json: bool,
    /// Ring size of the queues (log2 entries), for occupancy in percent.
    #[arg(long)]
    pub log2size: Option<u8>,
    #[command(flatten)]
    pub metrics: MetricsArgs,
}

/// What to sample and how.
#[derive(Clone, Debug)]
pub struct SampleOptions {
    pub pid: u32,
    /// Samples per second (one report per sample).
    pub rate_hz: f64,
    /// Stop after this long (default: until the VMM exits).
    pub duration: Option<Duration>,
    pub json: bool,
    /// LVCMDQ slots of page0 to read (the hardware has up to 128 per VINTF).
    pub lvcmdqs: usize,
    /// Ring size of every queue, when known (page1, which holds it, is not mapped); without it
    /// the wrap is estimated from the largest index seen and occupancy has no percentage.
    pub log2size: Option<u8>,
    /// Where the samples also go for `/metrics`.
    pub metrics: Option<Arc<Mutex<MetricsState>>>,
}

impl Default for SampleOptions {
    fn default() -> Self {
        Self {
            pid: 0,
            rate_hz: 10.0,
            duration: None,
            json: false,
            lvcmdqs: 128,
            log2size: None,
            metrics: None,
        }
    }
}

/// One LVCMDQ in one interval.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct QueueReport {
    pub lidx: usize,
    pub enabled: bool,
    pub prod: u32,
    pub cons: u32,
    /// Entries between CONS and PROD at the sample.
    pub pending: u64,
    /// pending / ring entries, when the ring size is known.
    pub occupancy: Option<f64>,
    /// Commands consumed during the interval.
    pub commands: u64,
    pub commands_per_s: f64,
    /// CONS_INDX.ERR (0 = none).
    pub cerror: u8,
}

/// One interval.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct IntervalReport {
    /// The VM's name from its VMM's command line (see `host::discover`), else the pid.
    pub vm: String,
    pub pid: u32,
    /// Seconds since the first sample.
    pub t_s: f64,
    pub interval_s: f64,
    /// Only LVCMDQs that are enabled or have moved.
    pub queues: Vec<QueueReport>,
}

fn report(
    vm: &str,
    pid: u32,
    t_s: f64,
    dt: f64,
    log2size: Option<u8>,
    samples: &[LvcmdqSample],
) -> IntervalReport {
    IntervalReport {
        vm: vm.to_string(),
        pid,
        t_s,
        interval_s: dt,
        queues: samples
            .iter()
            .filter(|s| active(s))
            .map(|s| QueueReport {
                lidx: s.lidx,
                enabled: s.enabled,
                prod: s.prod,
                cons: s.cons,
                pending: s.pending,
                occupancy: log2size.map(|n| s.pending as f64 / (1u64 << n) as f64),
                commands: s.consumed,
                commands_per_s: if dt > 0.0 {
                    s.consumed as f64 / dt
                } else {
                    0.0
                },
                cerror: s.cerror,
            })
            .collect(),
    }
}

/// Text lines; `with_vm` prefixes each with the VM's name (`--all`).
fn write_text<W: Write>(out: &mut W, r: &IntervalReport, with_vm: bool) -> std::io::Result<()> {
    for q in &r.queues {
        if with_vm {
            write!(out, "{:<20} {:>7} ", r.vm, r.pid)?;
        }
        let occ = q
            .occupancy
            .map(|o| format!("{:.1}%", 100.0 * o))
            .unwrap_or_else(|| "-".into());
        writeln!(
            out,
            "{:>9.3} {:>6} {:>3} {:>#9x} {:>#9x} {:>8} {:>7} {:>11.0} {:>6}",
            r.t_s,
            q.lidx,
            if q.enabled { "on" } else { "off" },
            q.prod,
            q.cons,
            q.pending,
            occ,
            q.commands_per_s,
            q.cerror
        )?;
    }
    Ok(())
}

/// Attaches to `opts.pid`'s VINTF page0 and writes reports to `out` until the duration ends or
/// the process exits. Returns the number of intervals reported.
pub fn run_to<W: Write>(opts: &SampleOptions, out: &mut W) -> Result<u64> {
    let lvcmdqs = opts.lvcmdqs.clamp(1, PAGE0_LEN / LVCMDQ_STRIDE);
    let mut s = Sampler::attach(opts.pid, lvcmdqs)
        .with_context(|| format!("attaching to the VINTF page0 of process {}", opts.pid))?;
    if let Some(n) = opts.log2size {
        for l in 0..lvcmdqs {
            s.set_log2size(l, n);
        }
    }
    let period = Duration::from_secs_f64(1.0 / opts.rate_hz.clamp(0.1, 10_000.0));
    let start = Instant::now();
    let end = opts.duration.map(|d| start + d);
    let vm = discover::vm_name(opts.pid);
    tracing::debug!(pid = opts.pid, %vm, page0 = %s.mapping.path, offset = s.mapping.offset, "sampling");
    if let Some(m) = &opts.metrics {
        let page0 = format!("{} @ {:#x}", s.mapping.path, s.mapping.offset);
        metrics::lock(m).set_probes(&vm, &[fleet::page0_probe(&page0)]);
    }
    if !opts.json {
        writeln!(
            out,
            "# pid {} page0 {} @ {:#x} ({} bytes)",
            opts.pid, s.mapping.path, s.mapping.offset, s.mapping.len
        )?;
        writeln!(
            out,
            "{:>9} {:>6} {:>3} {:>9} {:>9} {:>8} {:>7} {:>11} {:>6}",
            "t_s", "lvcmdq", "en", "prod", "cons", "pending", "occ", "cmds/s", "cerror"
        )?;
    }
    // The first sample only sets the baseline.
    s.sample();
    let mut last = Instant::now();
    let mut n = 0u64;
    loop {
        let next = last + period;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        }
        if interrupted() {
            break;
        }
        if !std::path::Path::new(&format!("/proc/{}", opts.pid)).exists() || interrupted() {
            break;
        }
        let samples = s.sample();
        let now = Instant::now();
        let r = report(
            &vm,
            opts.pid,
            (now - start).as_secs_f64(),
            (now - last).as_secs_f64(),
            opts.log2size,
            &samples,
        );
        last = now;
        if let Some(m) = &opts.metrics {
            let queues = fleet::page0_queues(&samples, opts.log2size);
            metrics::lock(m).apply_page0(&vm, opts.pid, &queues);
        }
        write_report(out, &r, opts.json, false)?;
        n += 1;
        if end.is_some_and(|e| now >= e) {
            break;
        }
    }
    Ok(n)
}

fn write_report<W: Write>(
    out: &mut W,
    r: &IntervalReport,
    json: bool,
    with_vm: bool,
) -> Result<()> {
    if json {
        // The record has its own `vm` and `pid`; the stamp adds the schema, host and time.
        serde_json::to_writer(&mut *out, &TargetId::default().stamped(r))?;
        writeln!(out)?;
    } else {
        write_text(out, r, with_vm)?;
    }
    out.flush()?;
    Ok(())
}

/// `--all`: every VMM on the host, until the duration ends or a stop signal comes.
fn run_all<W: Write>(
    a: &SampleArgs,
    metrics: Option<&Mutex<MetricsState>>,
    out: &mut W,
) -> Result<()> {
    let cfg = FollowConfig {
        lvcmdqs: 128,
        log2size: a.log2size,
        rate_hz: a.rate,
        rescan: a.rescan,
        duration: a.duration,
    };
    if !a.json {
        writeln!(
            out,
            "{:<20} {:>7} {:>9} {:>6} {:>3} {:>9} {:>9} {:>8} {:>7} {:>11} {:>6}",
            "vm",
            "pid",
            "t_s",
            "lvcmdq",
            "en",
            "prod",
            "cons",
            "pending",
            "occ",
            "cmds/s",
            "cerror"
        )?;
    }
    fleet::follow(
        &cfg,
        metrics,
        || !interrupted(),
        |s| {
            let r = report(s.vm, s.pid, s.t_s, s.interval_s, a.log2size, &s.queues);
            write_report(out, &r, a.json, true)
        },
    )
}

/// `cmdqv sample`: reports to stdout.
pub fn run(a: SampleArgs) -> Result<()> {
    // `--pid` alone keeps its old ways (Ctrl-C ends the process); with an endpoint or `--all`
    // the stop signals end the sampling instead, so the endpoint can hold the final figures.
    let mut endpoint = match a.all || a.metrics.metrics_listen.is_some() {
        true => Some(Standalone::start(&a.metrics)?),
        false => None,
    };
    let state = endpoint
        .as_ref()
        .and_then(|e| e.metrics.as_ref())
        .map(|m| m.state.clone());
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let Some(pid) = a.pid.filter(|_| !a.all) else {
        run_all(&a, state.as_deref(), &mut out)?;
        endpoint.iter_mut().for_each(Standalone::hold);
        return Ok(());
    };
    let opts = SampleOptions {
        pid,
        rate_hz: a.rate,
        duration: a.duration,
        json: a.json,
        log2size: a.log2size,
        metrics: state,
        ..Default::default()
    };
    let n = run_to(&opts, &mut out)?;
    if let Some(m) = &opts.metrics {
        // Not followed any more: what is held up says so.
        metrics::lock(m).vm_gone(&discover::vm_name(pid), std::time::Instant::now());
    }
    if n == 0 {
        eprintln!(
            "cmdqv: process {} exited before the first interval",
            opts.pid
        );
    }
    endpoint.iter_mut().for_each(Standalone::hold);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_show_active_queues_with_rates_and_occupancy() {
        let s = [
            LvcmdqSample {
                lidx: 0,
                prod: 0,
                cons: 0,
                cerror: 0,
                enabled: false,
                consumed: 0,
                pending: 0,
            },
            LvcmdqSample {
                lidx: 1,
                prod: 12,
                cons: 8,
                cerror: 0,
                enabled: true,
                consumed: 50,
                pending: 4,
            },
        ];
        let r = report("vm1", 7, 1.0, 0.5, Some(4), &s);
        assert_eq!(r.queues.len(), 1, "idle, disabled LVCMDQ 0 is left out");
        let q = &r.queues[0];
        assert_eq!((q.lidx, q.pending, q.commands), (1, 4, 50));
        assert_eq!(q.commands_per_s, 100.0);
        assert_eq!(q.occupancy, Some(0.25));
        let mut text = Vec::new();
        write_text(&mut text, &r, false).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(text.contains("25.0%") && text.contains("0xc"), "{text}");
        let j = serde_json::to_value(&r).unwrap();
        assert_eq!(j["queues"][0]["commands_per_s"], 100.0);
        assert_eq!(
            (j["vm"].as_str(), j["pid"].as_u64()),
            (Some("vm1"), Some(7))
        );
    }

    #[test]
    fn a_process_without_page0_is_a_clear_error() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let r = run_to(
            &SampleOptions {
                pid: child.id(),
                duration: Some(Duration::from_millis(10)),
                ..Default::default()
            },
            &mut Vec::new(),
        );
        let _ = child.kill();
        let _ = child.wait();
        let e = format!("{:#}", r.unwrap_err());
        assert!(e.contains("no VINTF page0"), "{e}");
    }
}
