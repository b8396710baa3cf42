//! `cmdqv sim`: the embedded default target. The sim VMM runs as a child process of its own
//! (`cmdqv sim-vmm`), so eBPF uprobes attach to it exactly as they would to QEMU; this process
//! traces it through the same probes and the same live runner as a real host. Without eBPF,
//! the child reports the same events itself over a pipe and the user is told so.

use std::{
    io::Write as _,
    os::fd::OwnedFd,
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, Stdio},
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use clap::Args;
use cmdqv_core::{
    analysis::{ProbeStatus, Summary},
    event::Source,
    sim,
};

use crate::{
    commands::sim_vmm::{
        self, EngineMode, GO_EBPF, GO_PIPE, VmmReport, apply_overrides, choose_engine,
    },
    ebpf::{BATCHED_WAKEUP_BYTES, Tracer, TracerConfig, probe_log::ProbeLog},
    kvm::exits::{self, ExitCounts},
    live::{
        Feed, FeedFuture, FeedItem, LiveOptions, OutputArgs, Sink, TracerFeed, pipe_feed::PipeFeed,
    },
    metrics::MetricsArgs,
    runner::{self, LiveTarget},
};

#[derive(Args, Clone, Debug)]
pub struct SimArgs {
    /// Scenario to run (see --list).
    #[arg(long, default_value = "steady-unmap")]
    pub scenario: String,
    /// List the scenarios and exit.
    #[arg(long)]
    pub list: bool,
    /// Do not load eBPF: the sim VMM reports its events itself (in-process fallback).
    #[arg(long)]
    pub no_ebpf: bool,
    // Prometheus metrics of the sim's queues (--metrics-listen).
    #[command(flatten)]
    pub metrics: MetricsArgs,
    /// Run the guest's hot path in real KVM vCPUs (trapped doorbells are VM exits); fails, saying
    /// why, where KVM is unusable. Without --kvm or --no-kvm the sim picks KVM where it works,
    /// eBPF traces the run and KVM reproduces the scenario's figures (no built-in scenario
    /// today), and says why not otherwise.
    #[arg(long, conflicts_with = "no_kvm")]
    pub kvm: bool,
    /// Run the guest's hot path in vCPU threads of the sim VMM (the user-space driver).
    #[arg(long)]
    pub no_kvm: bool,
    /// Batches per second per vCPU (overrides the scenario's).
    #[arg(long)]
    pub rate: Option<u32>,
    /// vCPUs, one LVCMDQ each (overrides the scenario's).
    #[arg(long)]
    pub vcpus: Option<u32>,
    /// UI refresh rate (frames per second).
    #[arg(long, default_value_t = 10)]
    pub refresh_hz: u32,
    #[command(flatten)]
    pub out: OutputArgs,
}

/// Runs `cmdqv sim` (or `cmdqv record -o FILE sim`, with `record`).
pub fn run(a: SimArgs, record: Option<PathBuf>) -> Result<()> {
    if a.list {
        for s in sim::scenarios() {
            println!("{:<18} {}", s.name, s.about);
        }
        return Ok(());
    }
    let opts = LiveOptions::new(&a.out, record, a.refresh_hz);
    if opts.headless && a.out.duration.is_none() && opts.record.is_none() {
        bail!("--headless needs --duration (e.g. --duration 5s)");
    }
    runner::run_with_metrics(opts, &a.metrics, || start(&a))
}

/// Starts the sim VMM and the tracer (or the pipe fallback).
fn start(a: &SimArgs) -> Result<LiveTarget> {
    let exe = std::env::current_exe().context("locating the cmdqv binary")?;
    let mut scenario = sim::scenario(&a.scenario)
        .with_context(|| format!("unknown scenario `{}` (see `cmdqv sim --list`)", a.scenario))?;
    apply_overrides(&mut scenario, a.rate, a.vcpus)?;
    let mode = engine_mode(a, &scenario)?;
    let report = std::env::temp_dir().join(format!(
        "cmdqv-sim-report-{}-{}.json",
        std::process::id(),
        cmdqv_core::event::monotonic_ns()
    ));
    let mut child = spawn_vmm(&exe, &scenario, a, &report)?;
    let pid = child.id();
    let mut traced = if a.no_ebpf {
        Traced::fallback(
            "events come from the sim VMM itself (in-process fallback, --no-ebpf), not from eBPF probes"
                .into(),
        )
    } else {
        // The exit probes only where the guest may run in KVM.
        let kvm = match mode {
            EngineMode::Kvm => true,
            EngineMode::Auto => sim_vmm::auto_fits(&scenario).is_ok(),
            EngineMode::User => false,
        };
        trace(pid, &exe, kvm)
    };
    let mut stdin = child.stdin.take().context("sim VMM stdin")?;
    let stdout = child.stdout.take().context("sim VMM stdout")?;
    let (engine, off) = choose_engine(mode, &scenario, traced.tracer.is_some());
    if let Some(note) = off {
        eprintln!("cmdqv sim: {note}");
        traced.notes.push(note);
    }
    let (feed, source): (Box<dyn Feed>, Source) = match traced.tracer.take() {
        Some(t) => {
            writeln!(stdin, "{GO_EBPF} {engine}")?;
            (Box::new(TracerFeed::new(t)?), Source::Ebpf)
        }
        None => {
            writeln!(stdin, "{GO_PIPE} {engine}")?;
            traced.probes.extend(in_process_probes());
            let pipe = tokio::net::unix::pipe::Receiver::from_owned_fd(OwnedFd::from(stdout))?;
            (Box::new(PipeFeed::spawn(pipe)), Source::InProcess)
        }
    };
    stdin.flush()?;
    Ok(LiveTarget {
        feed: Box::new(SimFeed {
            exits: exit_counts(&traced.probes, source).filter(|_| engine == "kvm"),
            engine,
            inner: feed,
            vmm: VmmChild {
                child,
                _stdin: stdin,
                report,
            },
        }),
        source,
        name: format!("sim:{} (pid {pid}, guest engine {engine})", a.scenario),
        pid,
        // The sim VMM's own name: what `cmdqv sim-vmm --scenario S` is called in /proc.
        vm: Some(format!("sim:{}", a.scenario)),
        probes: traced.probes,
        notes: traced.notes,
        smmu_queue_from_mmio: false,
        record_default: PathBuf::from(format!("cmdqv-sim-{pid}.cmdqv")),
        // The VMM stops by itself after the duration (and reports its final bookkeeping);
        // the hard stop here only guards against a VMM that hangs.
        stop_after: a.out.duration.map(|d| d + Duration::from_secs(10)),
    })
}

/// The guest engine the flags ask for. `--kvm` fails where KVM itself is unusable; a scenario
/// the guest program cannot run falls back with a note, as auto does.
fn engine_mode(a: &SimArgs, scenario: &sim::Scenario) -> Result<EngineMode> {
    let mode = match (a.kvm, a.no_kvm) {
        (true, _) => EngineMode::Kvm,
        (_, true) => EngineMode::User,
        _ => EngineMode::Auto,
    };
    if mode == EngineMode::Kvm && sim_vmm::kvm_supports(scenario) {
        if let Err(why) = sim_vmm::kvm_usable() {
            bail!("--kvm: {why}");
        }
    }
    Ok(mode)
}

fn spawn_vmm(exe: &Path, sc: &sim::Scenario, a: &SimArgs, report: &Path) -> Result<Child> {
    let mut cmd = Command::new(exe);
    cmd.arg("sim-vmm").arg("--scenario").arg(sc.name);
    cmd.arg("--report").arg(report);
    let duration = a.out.duration;
    cmd.arg("--rate").arg(sc.rate_hz.to_string());
    cmd.arg("--vcpus").arg(sc.vcpus.to_string());
    if let Some(d) = duration {
        cmd.arg("--duration-ms")
            .arg((d.as_millis() as u64).to_string());
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting the sim VMM (cmdqv sim-vmm)")
}

/// How the VMM is traced: a tracer whose uprobes attached, or the fallback and why.
struct Traced {
    tracer: Option<Tracer>,
    probes: Vec<ProbeStatus>,
    notes: Vec<String>,
}

impl Traced {
    fn fallback(note: String) -> Self {
        Self {
            tracer: None,
            probes: Vec::new(),
            notes: vec![note],
        }
    }
}

/// Loads the probes onto the VMM; without eBPF or without its uprobes, the fallback.
fn trace(pid: u32, exe: &Path, kvm: bool) -> Traced {
    let loaded = Tracer::load(&TracerConfig {
        pid,
        syscalls: true,
        iommu: true,
        sim_vmm: Some(exe.to_path_buf()),
        // A KVM guest's MMIO exits, counted per path for the comparison.
        kvm_mmio: kvm,
        // Every VM exit of the sim VMM's vCPUs (its process is the VM's only owner).
        kvm_exit: kvm,
        gpa_lo: exits::WINDOW.0,
        gpa_hi: exits::WINDOW.1,
        // The collector drains every 20 ms anyway: no need for a wakeup per record.
        wakeup_bytes: BATCHED_WAKEUP_BYTES,
        ..Default::default()
    });
    let t = match loaded {
        Ok(t) => t,
        Err(e) => {
            return Traced::fallback(format!(
                "eBPF unavailable ({e:#}): events come from the sim VMM itself (in-process fallback), not from probes"
            ));
        }
    };
    let probes = t.probes().to_vec();
    let uprobes_ok = probes
        .iter()
        .filter(|p| p.name.starts_with("uprobe:"))
        .all(|p| p.status == "attached");
    if uprobes_ok {
        return Traced {
            tracer: Some(t),
            probes,
            notes: Vec::new(),
        };
    }
    Traced {
        tracer: None,
        probes,
        notes: vec![
            "the sim VMM's uprobes did not attach (see probes): events come from the in-process fallback"
                .into(),
        ],
    }
}

fn in_process_probes() -> impl Iterator<Item = ProbeStatus> {
    sim::hooks::PROBE_NAMES.iter().map(|p| ProbeStatus {
        name: format!("in-process:{p}"),
        status: "in-process".into(),
        reason: "reported by the sim VMM over a pipe (no eBPF)".into(),
    })
}

/// The sim VMM child; killed and reaped when dropped (on every exit path, panics included).
/// Its stdin stays open meanwhile: the VMM stops when it closes.
struct VmmChild {
    child: Child,
    _stdin: ChildStdin,
    /// Where the VMM writes its end-of-run report (removed with the child).
    report: PathBuf,
}

impl Drop for VmmChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.report);
    }
}

/// The VMM's events (probes or pipe) with the VMM itself: the run ends when it exits.
struct SimFeed {
    // Field order: the probes detach before the VMM is killed.
    inner: Box<dyn Feed>,
    vmm: VmmChild,
    /// The KVM guest's exits from `kvm:kvm_exit` and `kvm:kvm_mmio`, when either is attached.
    exits: Option<ExitCounts>,
    /// The guest engine the VMM was told to run (`kvm` or `user`).
    engine: &'static str,
}

/// A counter of the guest's exits when eBPF feeds and a `kvm:*` exit probe attached.
fn exit_counts(probes: &[ProbeStatus], source: Source) -> Option<ExitCounts> {
    let attached = |name: &str| {
        probes
            .iter()
            .any(|p| p.name == name && p.status == "attached")
    };
    let (mmio, exit, userspace) = (
        attached("tracepoint:kvm/kvm_mmio"),
        attached(crate::ebpf::kvm_exit::LABEL),
        attached(crate::ebpf::kvm_exit::USERSPACE_LABEL),
    );
    let any = mmio || exit || userspace;
    (source == Source::Ebpf && any).then(|| ExitCounts::new(mmio, exit, userspace))
}

impl Feed for SimFeed {
    fn next_batch<'a>(&'a mut self, sink: Sink<'a>) -> FeedFuture<'a> {
        let Some(exits) = self.exits.as_mut() else {
            return self.inner.next_batch(sink);
        };
        let inner = &mut self.inner;
        Box::pin(async move {
            let mut counting = |item: FeedItem<'_>| {
                if let FeedItem::Raw(r) = &item {
                    exits.count_raw(r);
                }
                sink(item)
            };
            inner.next_batch(&mut counting).await
        })
    }

    fn drops(&self) -> u64 {
        self.inner.drops()
    }

    fn alive(&mut self) -> Result<bool> {
        Ok(matches!(self.vmm.child.try_wait(), Ok(None)))
    }

    fn probe_log(&self) -> Option<&ProbeLog> {
        self.inner.probe_log()
    }

    fn amend_live(&self, summary: &mut Summary) {
        // What the probes counted so far; the guest's own figures (batches, latencies) come
        // with the VMM's report at the end.
        let mut c = cmdqv_core::analysis::Comparison::default();
        if let Some(n) = &self.exits {
            n.apply(&mut c, &n.live_threads());
        }
        summary.sim = Some(cmdqv_core::analysis::SimReport {
            guest_engine: self.engine.into(),
            comparison: (self.exits.is_some() && self.engine == "kvm").then_some(c),
        });
    }

    fn amend_final(&mut self, summary: &mut Summary) {
        if let Some(mut r) = VmmReport::read(&self.vmm.report) {
            if let (Some(n), Some(c)) = (&self.exits, r.sim.comparison.as_mut()) {
                n.apply(c, &r.vcpus);
            }
            summary.notes.extend(r.notes);
            summary.sim = Some(r.sim);
        }
    }
}
