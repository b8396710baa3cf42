//! The one live runner every target goes through: a tokio runtime, the stop signals, the
//! target started inside it, the collection loop ([`collect`]), and then either the printed
//! summary (headless) or the TUI on its own thread, fed by snapshots and sending control
//! messages back ([`ui_link`]). Replay shows its summary through the same UI link
//! ([`show_final`]).
//!
//! The runner sits above both `live` (the pipeline's parts) and `tui`, which itself only asks
//! `live` whether a stop signal came: neither of those imports this module.

pub mod collect;
pub mod ui_link;

use std::{path::PathBuf, time::Duration};

use anyhow::{Context as _, Result, bail};
use cmdqv_core::{
    analysis::{Collector, CollectorConfig, ProbeStatus, Summary},
    event::{Source, monotonic_ns},
    host::discover,
    record::TraceMeta,
};

use crate::{
    live::{
        feed::Feed, identity::TargetId, options::LiveOptions, output::Printer, reg_name::reg_name,
        signals::StopSignal,
    },
    metrics::{self, KERNEL_VM, Metrics, MetricsArgs},
    runner::{
        collect::{Collection, MetricsFeed, collect},
        ui_link::{UiSource, ui_link},
    },
    tui::{self, TuiOptions},
};

/// A started target, ready to collect from.
pub struct LiveTarget {
    pub feed: Box<dyn Feed>,
    pub source: Source,
    /// What the summary's `target` field says.
    pub name: String,
    pub pid: u32,
    /// The VM's name for the JSON records' `vm` and the metrics' `vm` label (see
    /// `host::discover::vm_from_argv`), when the target knows it; for a VMM it launched it comes
    /// from what it launched, as /proc could still show this process's command line.
    pub vm: Option<String>,
    pub probes: Vec<ProbeStatus>,
    pub notes: Vec<String>,
    /// The SMMU's own command queue is reconstructed from its MMIO (QEMU targets).
    pub smmu_queue_from_mmio: bool,
    /// Where `r` in the TUI records.
    pub record_default: PathBuf,
    /// Hard stop after this long (None: until the target ends or the user stops).
    pub stop_after: Option<Duration>,
}

impl LiveTarget {
    /// The `vm` label of its metrics: the one the target gave, the host kernel's own queues (no
    /// pid), or the name the traced VMM goes by on its command line.
    pub fn vm_label(&self) -> String {
        match (&self.vm, self.pid) {
            (Some(vm), _) => vm.clone(),
            (None, 0) => KERNEL_VM.to_string(),
            (None, pid) => discover::vm_name(pid),
        }
    }
}

impl LiveTarget {
    /// The collector and the trace header this target starts with.
    fn collector_and_meta(&self, intervals: bool) -> (Collector, TraceMeta) {
        let start_ns = monotonic_ns();
        let mut cfg = CollectorConfig::new(self.source, self.name.clone());
        cfg.start_ns = Some(start_ns);
        cfg.reg_name = Some(reg_name);
        cfg.intervals = intervals;
        cfg.smmu_queue_from_mmio = self.smmu_queue_from_mmio;
        cfg.notes = self.notes.clone();
        let mut collector = Collector::new(cfg);
        collector.set_probes(self.probes.clone());
        let mut meta = TraceMeta::new(self.source, self.name.clone());
        meta.pid = Some(self.pid);
        meta.vm = self.vm.clone();
        meta.probes = self.probes.clone();
        meta.start_ns = Some(start_ns);
        meta.smmu_queue_from_mmio = self.smmu_queue_from_mmio;
        (collector, meta)
    }
}

/// Runs a live target end to end. `start` runs inside the runtime (so feeds can register with
/// it) after the stop signals are taken over, so a Ctrl-C while a target starts still ends the
/// run cleanly.
pub fn run(opts: LiveOptions, start: impl FnOnce() -> Result<LiveTarget>) -> Result<()> {
    run_with_metrics(opts, &MetricsArgs::default(), start)
}

/// [`run`], with the metrics endpoint `--metrics-listen` asks for (bound before the target
/// starts, so a port in use fails the run before anything is traced).
pub fn run_with_metrics(
    opts: LiveOptions,
    metrics: &MetricsArgs,
    start: impl FnOnce() -> Result<LiveTarget>,
) -> Result<()> {
    let rt = crate::live::signals::runtime()?;
    let _in_rt = rt.enter();
    let mut stop = StopSignal::install().context("installing the signal handlers")?;
    let (endpoint, mut requests) = match Metrics::start(metrics, true)? {
        Some((m, rx)) => (Some(m), rx),
        None => (None, None),
    };
    let mut target = start()?;
    tracing::info!(
        traced = %target.name,
        source = target.source.as_str(),
        vm = target.vm.as_deref().unwrap_or("-"),
        "collecting"
    );
    let (collector, meta) = target.collector_and_meta(opts.interval.is_some());
    let vm = target.vm_label();
    let printer = Printer {
        json: opts.json,
        target: TargetId {
            vm: target.vm.clone(),
            pid: (target.pid != 0).then_some(target.pid),
        },
    };
    let cfg = Collection {
        stop_after: target.stop_after,
        interval: opts.interval,
        printer: printer.clone(),
        record: opts.record.clone(),
        record_default: target.record_default.clone(),
        meta,
        refresh_hz: opts.refresh_hz,
        metrics: endpoint.as_ref().map(|m| MetricsFeed {
            state: m.state.clone(),
            vm: vm.clone(),
            pid: (target.pid != 0).then_some(target.pid),
            requests: requests.take(),
        }),
    };
    let feed = target.feed.as_mut();
    if opts.headless {
        let mut s = rt.block_on(collect(feed, collector, cfg, None, &mut stop))?;
        target.feed.amend_final(&mut s);
        drop(target);
        printer.print(&s);
    } else {
        let (runner, ui) = ui_link();
        let tui = spawn_tui(ui, opts.refresh_hz)?;
        let collected = rt.block_on(collect(feed, collector, cfg, Some(runner), &mut stop));
        // The probes and the target go now; the TUI keeps the last view until the user quits.
        drop(target);
        let shown = tui.join();
        collected?;
        match shown {
            Ok(r) => r?,
            Err(_) => bail!("the terminal UI panicked"),
        }
    }
    if let Some(r) = &opts.record {
        eprintln!("cmdqv: recorded to {}", r.display());
    }
    if let Some(m) = &endpoint {
        // The target and its probes are gone: what is held up says so (vm_up 0, probes 0).
        m.lock().vm_gone(&vm, std::time::Instant::now());
    }
    metrics::hold(&rt, endpoint.as_ref(), &mut stop);
    Ok(())
}

/// Collects from a target into the metrics alone (no output, no TUI; `cmdqv serve`'s host
/// kernel tracing) until the target ends or `stop` resolves.
pub async fn follow(
    mut target: LiveTarget,
    metrics: MetricsFeed,
    mut stop: StopSignal,
) -> Result<()> {
    let (collector, meta) = target.collector_and_meta(false);
    let cfg = Collection {
        stop_after: target.stop_after,
        interval: None,
        // Nothing is printed (no interval); the target names the VM like any other.
        printer: Printer {
            json: true,
            target: TargetId {
                vm: target.vm.clone(),
                pid: (target.pid != 0).then_some(target.pid),
            },
        },
        record: None,
        record_default: target.record_default.clone(),
        meta,
        refresh_hz: 10,
        metrics: Some(metrics),
    };
    collect(target.feed.as_mut(), collector, cfg, None, &mut stop).await?;
    Ok(())
}

fn spawn_tui(ui: UiSource, refresh_hz: u32) -> Result<std::thread::JoinHandle<Result<()>>> {
    std::thread::Builder::new()
        .name("cmdqv-tui".into())
        .spawn(move || tui::run(Box::new(ui), tui_options(refresh_hz)))
        .context("starting the terminal UI")
}

fn tui_options(refresh_hz: u32) -> TuiOptions {
    TuiOptions {
        refresh_hz,
        no_color: false,
    }
}

/// Shows a finished summary (a replay's) in the TUI until the user quits.
pub fn show_final(summary: Summary, refresh_hz: u32) -> Result<()> {
    let (runner, ui) = ui_link();
    runner.publish(summary);
    // Nothing more will come: the header says the view is the last snapshot.
    drop(runner);
    tui::run(Box::new(ui), tui_options(refresh_hz))
}
