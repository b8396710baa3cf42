//! `cmdqv serve`: the headless, long-running exporter. It follows every VMM on the host through
//! its VINTF page0 (the fleet module: found by rescanning /proc, let go when they exit, a VMM
//! that cannot be attached reported while the rest go on) and, unless `--no-host-probes`,
//! traces the host kernel's own SMMUv3 driver with the probes of `cmdqv host` where they attach
//! (where they do not, `cmdqv_probe_attached` says so and serving goes on). Everything goes to
//! `/metrics`; it runs until SIGINT/SIGTERM (or `--duration`).

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::{Context as _, Result};
use clap::Args;
use cmdqv_core::analysis::ProbeStatus;
use tokio::sync::mpsc;

use crate::{
    commands::host::{self, HostArgs, NoSubmissionProbe},
    ebpf::host_plan,
    fleet::{self, FollowConfig},
    live::{OutputArgs, parse_duration, signals::StopSignal},
    metrics::{self, KERNEL_VM, Metrics, MetricsArgs, MetricsState, RefreshRequest},
    runner,
};

/// Where `cmdqv serve` listens unless told otherwise (as exporters do: every interface).
pub const DEFAULT_LISTEN: &str = "0.0.0.0:9464";

#[derive(Args, Clone, Debug)]
pub struct ServeArgs {
    /// Serve /metrics here (default 0.0.0.0:9464).
    #[arg(long, value_name = "ADDR:PORT", default_value = DEFAULT_LISTEN)]
    pub metrics_listen: String,
    /// Queues per VM with series of their own; later ones fold into queue="other".
    #[arg(long, value_name = "N", default_value_t = metrics::DEFAULT_MAX_QUEUES)]
    pub metrics_max_queues: usize,
    /// How often /proc is scanned for VMMs that started.
    #[arg(long, value_parser = parse_duration, default_value = "2s")]
    pub rescan: Duration,
    /// Page0 samples per second per VMM (fast enough that no ring wraps between two).
    #[arg(long, default_value_t = 10.0)]
    pub rate: f64,
    /// Ring size of the VMMs' queues (log2 entries), for the occupancy ratio (page0 does not
    /// hold it; without it no occupancy is exported for sampled queues).
    #[arg(long)]
    pub log2size: Option<u8>,
    /// Do not trace the host kernel's SMMUv3 driver (page0 sampling only; no eBPF loaded).
    #[arg(long)]
    pub no_host_probes: bool,
    /// Stop after this long (default: until SIGINT/SIGTERM).
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
}

pub fn run(a: ServeArgs) -> Result<()> {
    let rt = crate::live::signals::runtime()?;
    let _in_rt = rt.enter();
    let mut stop = StopSignal::install().context("installing the signal handlers")?;
    let margs = MetricsArgs {
        metrics_listen: Some(a.metrics_listen.clone()),
        metrics_max_queues: a.metrics_max_queues,
        metrics_hold: None,
    };
    let (endpoint, requests) = Metrics::start(&margs, true)?.context("no metrics endpoint")?;
    let done = Arc::new(AtomicBool::new(false));
    let fleet = spawn_fleet(&a, endpoint.state.clone(), done.clone())?;
    let deadline = async {
        match a.duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    let host = trace_host(&a, &endpoint, requests, stop.clone());
    rt.block_on(async {
        let stopped = async {
            tokio::select! {
                _ = stop.wait() => {}
                _ = deadline => {}
            }
        };
        tokio::pin!(host, stopped);
        // The host probes may end (or never attach): the VMMs are still followed.
        let mut host_running = true;
        loop {
            tokio::select! {
                _ = &mut host, if host_running => host_running = false,
                _ = &mut stopped => break,
            }
        }
    });
    done.store(true, Ordering::Relaxed);
    match fleet.join() {
        Ok(r) => r,
        Err(_) => anyhow::bail!("the VMM follower panicked"),
    }
}

fn spawn_fleet(
    a: &ServeArgs,
    state: Arc<Mutex<MetricsState>>,
    done: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<Result<()>>> {
    let cfg = FollowConfig {
        lvcmdqs: 128,
        log2size: a.log2size,
        rate_hz: a.rate,
        rescan: a.rescan,
        duration: None,
    };
    std::thread::Builder::new()
        .name("cmdqv-fleet".into())
        .spawn(move || {
            let keep_going = || !done.load(Ordering::Relaxed) && !crate::live::interrupted();
            fleet::follow(&cfg, Some(&state), keep_going, |_| Ok(()))
        })
        .context("starting the VMM follower")
}

fn let_go(mut p: ProbeStatus) -> ProbeStatus {
    if p.status == "attached" {
        p.status = "detached".into();
        p.reason = "let go: the probe on the driver's batch submission did not attach".into();
    }
    p
}

/// Traces the host kernel's driver into the metrics (`vm="kernel"`) until its feed ends; where
/// the probes do not attach, their states go to the metrics and this returns at once.
async fn trace_host(
    a: &ServeArgs,
    endpoint: &Metrics,
    requests: Option<mpsc::Receiver<RefreshRequest>>,
    stop: StopSignal,
) {
    if a.no_host_probes {
        return;
    }
    let args = HostArgs {
        ready_file: None,
        stop_file: None,
        refresh_hz: 10,
        out: OutputArgs::default(),
        metrics: MetricsArgs::default(),
    };
    let target = match host::start(&args) {
        Ok(t) => t,
        Err(e) => {
            let probes = match e.downcast_ref::<NoSubmissionProbe>() {
                // Without the submission probe the others are let go too: none stays attached.
                Some(n) => n.probes.iter().cloned().map(let_go).collect(),
                None => vec![ProbeStatus {
                    name: host_plan::submission_probe_name(),
                    status: "failed".into(),
                    reason: format!("{e:#}"),
                }],
            };
            eprintln!("cmdqv: host probes not attached, serving the VMMs only: {e:#}");
            metrics::lock(&endpoint.state).set_probes(KERNEL_VM, &probes);
            return;
        }
    };
    let feed = runner::collect::MetricsFeed {
        state: endpoint.state.clone(),
        vm: KERNEL_VM.into(),
        pid: None,
        requests,
    };
    if let Err(e) = runner::follow(target, feed, stop).await {
        eprintln!("cmdqv: tracing the host kernel stopped: {e:#}");
    }
}
