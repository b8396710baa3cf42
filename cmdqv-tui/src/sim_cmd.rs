//! `cmdqv sim`: the embedded default target. The sim VMM runs as a child process of its own
//! (`cmdqv sim-vmm`), so eBPF uprobes attach to it exactly as they would to QEMU; this process
//! traces it through the same probes and pipeline as a real host. Without eBPF, the child
//! reports the same events itself over a pipe and the user is told so.

use std::{
    io::Write as _,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex, atomic::Ordering},
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
    /// Override the scenario's batches per second per vCPU.
    pub rate: Option<u32>,
    /// Override the scenario's vCPU count (at most one per LVCMDQ).
    pub vcpus: Option<u32>,
}

/// Applies `--rate` / `--vcpus` to a scenario; vCPUs are capped at the LVCMDQs of the VINTF
/// because each vCPU owns one queue's software state (as Linux picks a queue per CPU).
pub fn apply_overrides(
    sc: &mut sim::Scenario,
    rate: Option<u32>,
    vcpus: Option<u32>,
) -> Result<()> {
    if let Some(r) = rate {
        if r == 0 || r > 100_000 {
            bail!("--rate must be 1..=100000 batches per second per vCPU");
        }
        sc.rate_hz = r;
    }
    if let Some(v) = vcpus {
        let max = sc.geometry.lvcmdqs_per_vintf() as u32;
        if v == 0 || v > max {
            bail!(
                "--vcpus must be 1..={max} for scenario {} (one LVCMDQ per vCPU)",
                sc.name
            );
        }
        sc.vcpus = v;
        sc.lvcmdqs = sc.lvcmdqs.max(v);
    }
    Ok(())
}

/// The sim VMM child; killed and reaped when dropped (on every exit path, panics included).
#[derive(Clone)]
struct ChildGuard(Arc<Mutex<Child>>);

impl ChildGuard {
    fn id(&self) -> u32 {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).id()
    }
    fn running(&self) -> bool {
        matches!(
            self.0.lock().unwrap_or_else(|p| p.into_inner()).try_wait(),
            Ok(None)
        )
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if Arc::strong_count(&self.0) == 1 {
            let mut c = self.0.lock().unwrap_or_else(|p| p.into_inner());
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A started sim: feed, source, probe statuses, notes, and the VMM child.
type Started = (
    Box<dyn Feed>,
    Source,
    Vec<ProbeStatus>,
    Vec<String>,
    ChildGuard,
);

/// Starts the sim VMM and the tracer; returns the feed, the source it is, probe statuses and the
/// child (killed when dropped).
fn start(opts: &SimOptions) -> Result<Started> {
    let exe = std::env::current_exe().context("locating the cmdqv binary")?;
    let mut scenario = sim::scenario(&opts.scenario).with_context(|| {
        format!(
            "unknown scenario `{}` (see `cmdqv sim --list`)",
            opts.scenario
        )
    })?;
    apply_overrides(&mut scenario, opts.rate, opts.vcpus)?;
    let mut cmd = Command::new(&exe);
    cmd.arg("sim-vmm").arg("--scenario").arg(scenario.name);
    cmd.arg("--rate").arg(scenario.rate_hz.to_string());
    cmd.arg("--vcpus").arg(scenario.vcpus.to_string());
    if let Some(d) = opts.duration {
        cmd.arg("--duration-ms")
            .arg((d.as_millis() as u64).to_string());
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting the sim VMM (cmdqv sim-vmm)")?;
    let pid = child.id();
    let mut notes = Vec::new();
    let mut tracer = None;
    let mut probes = Vec::new();
    if opts.no_ebpf {
        notes.push("events come from the sim VMM itself (in-process fallback, --no-ebpf), not from eBPF probes".into());
    } else {
        match Tracer::load(&TracerConfig {
            pid,
            syscalls: true,
            iommu: true,
            sim_vmm: Some(exe.clone()),
            // The collector drains every 20 ms anyway: no need for a wakeup per record.
            wakeup_bytes: crate::ebpf::BATCHED_WAKEUP_BYTES,
            ..Default::default()
        }) {
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
    let mut stdin = child.stdin.take().context("sim VMM stdin")?;
    let stdout = child.stdout.take().context("sim VMM stdout")?;
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
    // Keep stdin open: the VMM stops when it closes (this process went away).
    std::mem::forget(stdin);
    Ok((
        feed,
        source,
        probes,
        notes,
        ChildGuard(Arc::new(Mutex::new(child))),
    ))
}

/// Runs `cmdqv sim` headless or under the TUI.
pub fn run(opts: SimOptions) -> Result<Option<Summary>> {
    // Ctrl-C / SIGTERM end the run through the normal path (probes detached, summary printed).
    live::stop_on_signals();
    let (feed, source, probes, notes, child) = start(&opts)?;
    let pid = child.id();
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
    shared
        .refresh_hz
        .store(opts.refresh_hz.max(1) as u64, Ordering::Relaxed);
    let json = opts.json;
    let on_interval: Option<live::IntervalFn> = if opts.interval.is_some() {
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
    let watched = child.clone();
    let alive = Box::new(move || watched.running());
    let run = RunConfig {
        // The VMM stops by itself after the duration (and reports its final bookkeeping);
        // the hard stop here only guards against a VMM that hangs.
        duration: opts.duration.map(|d| d + Duration::from_secs(10)),
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

/// The sim VMM child process (`cmdqv sim-vmm`): waits for `go ebpf|pipe` on stdin, runs the
/// scenario, and exits when the duration elapses or stdin closes.
pub fn run_vmm_child(
    scenario: &str,
    duration: Option<Duration>,
    rate: Option<u32>,
    vcpus: Option<u32>,
) -> Result<()> {
    use std::io::BufRead as _;
    let mut sc =
        sim::scenario(scenario).with_context(|| format!("unknown scenario `{scenario}`"))?;
    apply_overrides(&mut sc, rate, vcpus)?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let (emit, writer) = match line.trim() {
        "go pipe" => {
            let (p, h) = sim::emit::PipeSink::spawn(std::io::stdout());
            (sim::emit::Emitter::with_pipe(&p), Some((p, h)))
        }
        "go ebpf" => (sim::emit::Emitter::hooks_only(), None),
        other => bail!("sim VMM: unexpected start command `{other}`"),
    };
    let vmm = Arc::new(sim::vmm::Vmm::new(&sc, emit).context("creating the sim VMM")?);
    for n in vmm.notes() {
        eprintln!("cmdqv sim-vmm: {n}");
    }
    // Stop when the tracer goes away (stdin closes).
    let v = Arc::downgrade(&vmm);
    std::thread::spawn(move || {
        let mut sink = String::new();
        while std::io::stdin()
            .lock()
            .read_line(&mut sink)
            .map(|n| n > 0)
            .unwrap_or(false)
        {
            sink.clear();
        }
        if let Some(v) = v.upgrade() {
            v.stop.store(true, Ordering::Relaxed);
        }
    });
    let d = duration.unwrap_or(Duration::from_secs(u32::MAX as u64));
    let st = sim::vmm::run(&vmm, &sc, d).map_err(|e| anyhow::anyhow!("sim VMM: {e}"))?;
    if st.driver_errors > 0 {
        eprintln!(
            "cmdqv sim-vmm: {} batches failed in the guest driver",
            st.driver_errors
        );
    }
    drop(vmm);
    if let Some((p, h)) = writer {
        drop(p);
        let _ = h.join();
    }
    Ok(())
}
