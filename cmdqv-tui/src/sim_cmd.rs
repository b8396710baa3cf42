//! `cmdqv sim`: the embedded default target. The sim VMM runs as a child process of its own
//! (`cmdqv sim-vmm`), so eBPF uprobes attach to it exactly as they would to QEMU; this process
//! traces it through the same probes and pipeline as a real host. Without eBPF, the child
//! reports the same events itself over a pipe and the user is told so.

use std::{
    io::Write as _,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use cmdqv_core::{
    analysis::{Collector, CollectorConfig, ProbeStatus, Summary},
    event::{Source, monotonic_ns},
    record::TraceMeta,
    sim,
};

use crate::{
    ebpf::{Tracer, TracerConfig},
    live::{self, Feed, PipeFeed, RunConfig, Shared, TracerFeed},
};

/// What to run.
#[derive(Clone, Debug)]
pub struct SimOptions {
    pub scenario: String,
    pub duration: Option<Duration>,
    pub no_ebpf: bool,
    pub interval: Option<Duration>,
    pub record: Option<PathBuf>,
    pub json: bool,
    pub headless: bool,
    pub refresh_hz: u32,
}

struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the sim VMM and the tracer; returns the feed, the source it is, probe statuses and the
/// child (killed when dropped).
fn start(opts: &SimOptions) -> Result<(Box<dyn Feed>, Source, Vec<ProbeStatus>, Vec<String>, ChildGuard)> {
    let exe = std::env::current_exe().context("locating the cmdqv binary")?;
    let scenario = sim::scenario(&opts.scenario).with_context(|| {
        format!("unknown scenario `{}` (see `cmdqv sim --list`)", opts.scenario)
    })?;
    let mut cmd = Command::new(&exe);
    cmd.arg("sim-vmm").arg("--scenario").arg(scenario.name);
    if let Some(d) = opts.duration {
        // The VMM outlives the tracer's window a little so the last batches complete.
        cmd.arg("--duration-ms").arg((d.as_millis() as u64 + 2000).to_string());
    }
    let mut child = ChildGuard(
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting the sim VMM (cmdqv sim-vmm)")?,
    );
    let pid = child.0.id();
    let mut notes = Vec::new();
    let mut tracer = None;
    let mut probes = Vec::new();
    if opts.no_ebpf {
        notes.push("events come from the sim VMM itself (in-process fallback, --no-ebpf), not from eBPF probes".into());
    } else {
        match Tracer::load(&TracerConfig { pid, syscalls: true, sim_vmm: Some(exe.clone()), ..Default::default() }) {
            Ok(t) => {
                let uprobes_ok = t
                    .probes()
                    .iter()
                    .filter(|p| p.name.starts_with("uprobe:"))
                    .all(|p| p.status == "attached");
                probes = t.probes().to_vec();
                if uprobes_ok {
                    tracer = Some(t);
                } else {
                    notes.push(
                        "the sim VMM's uprobes did not attach (see probes): events come from the in-process fallback"
                            .into(),
                    );
                }
            }
            Err(e) => notes.push(format!(
                "eBPF unavailable ({e:#}): events come from the sim VMM itself (in-process fallback), not from probes"
            )),
        }
    }
    let stdin = child.0.stdin.as_mut().context("sim VMM stdin")?;
    let stdout = child.0.stdout.take().context("sim VMM stdout")?;
    let (feed, source): (Box<dyn Feed>, Source) = match tracer {
        Some(t) => {
            writeln!(stdin, "go ebpf")?;
            (Box::new(TracerFeed(t)), Source::Ebpf)
        }
        None => {
            writeln!(stdin, "go pipe")?;
            for p in sim::hooks::PROBE_NAMES {
                probes.push(ProbeStatus {
                    name: format!("in-process:{p}"),
                    status: "in-process".into(),
                    reason: "reported by the sim VMM over a pipe (no eBPF)".into(),
                });
            }
            (Box::new(PipeFeed::spawn(stdout)), Source::InProcess)
        }
    };
    stdin.flush()?;
    Ok((feed, source, probes, notes, child))
}

/// Runs `cmdqv sim` headless or under the TUI.
pub fn run(opts: SimOptions) -> Result<Option<Summary>> {
    let (feed, source, probes, notes, mut child) = start(&opts)?;
    let pid = child.0.id();
    let target = format!("sim:{} (pid {pid})", opts.scenario);
    let mut cfg = CollectorConfig::new(source, target.clone());
    cfg.start_ns = Some(monotonic_ns());
    cfg.reg_name = Some(crate::reg_name);
    cfg.intervals = opts.interval.is_some();
    cfg.notes = notes;
    let collector = Collector::new(cfg);
    let mut meta = TraceMeta::new(source, target);
    meta.pid = Some(pid);
    meta.probes = probes.clone();
    meta.start_ns = Some(monotonic_ns());
    let shared = Arc::new(Shared::default());
    shared.refresh_hz.store(opts.refresh_hz.max(1) as u64, Ordering::Relaxed);
    let json = opts.json;
    let on_interval: Option<Box<dyn FnMut(&Summary) + Send>> = if opts.interval.is_some() {
        Some(Box::new(move |s: &Summary| {
            if json {
                crate::output::print_json(s)
            } else {
                crate::output::print_text(s)
            }
        }))
    } else {
        None
    };
    let mut child_proc = std::mem::replace(&mut child.0, Command::new("true").spawn()?);
    let alive = Box::new(move || matches!(child_proc.try_wait(), Ok(None)));
    let run = RunConfig {
        duration: opts.duration,
        interval: opts.interval,
        record: opts.record.clone(),
        record_default: PathBuf::from(format!("cmdqv-sim-{pid}.cmdqv")),
        meta,
        on_interval,
        probes,
        alive: Some(alive),
    };
    if opts.headless {
        let s = live::collect(feed, collector, run, shared)?;
        return Ok(Some(s));
    }
    let sh = shared.clone();
    let collector_thread = std::thread::Builder::new()
        .name("cmdqv-collect".into())
        .spawn(move || live::collect(feed, collector, run, sh))?;
    let ui = crate::tui_source::run_tui(shared.clone(), opts.refresh_hz);
    shared.stop.store(true, Ordering::Relaxed);
    match collector_thread.join() {
        Ok(r) => {
            r?;
        }
        Err(_) => bail!("the collector thread panicked"),
    }
    ui?;
    Ok(None)
}
