//! Prometheus/OpenMetrics metrics: `--metrics-listen ADDR:PORT` on every live target and on
//! `cmdqv sample` and `cmdqv serve`. The live loop (or the page0 sampler) writes a
//! [`model::MetricsState`]; [`http`] answers `GET /metrics` from it through prometheus-client
//! ([`expose`]).

pub mod expose;
pub mod http;
pub mod model;

use std::{
    net::{SocketAddr, ToSocketAddrs as _},
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::{Context as _, Result, anyhow};
use clap::Args;
use tokio::{sync::mpsc, task::JoinHandle};

use crate::live::parse_duration;
pub use http::RefreshRequest;
pub use model::{DEFAULT_MAX_QUEUES, MetricsState};

/// The `vm` label of the host kernel's own queues and probes (`cmdqv host`, `cmdqv serve`).
pub const KERNEL_VM: &str = "kernel";

/// Metrics flags, shared by every live target, `sample` and `serve`.
#[derive(Args, Clone, Debug, Default)]
pub struct MetricsArgs {
    /// Serve Prometheus/OpenMetrics metrics at http://ADDR:PORT/metrics (e.g. 127.0.0.1:9464;
    /// port 0 picks a free one, printed on stderr).
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics_listen: Option<String>,
    /// Queues per VM with series of their own; later ones fold into queue="other".
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_QUEUES)]
    pub metrics_max_queues: usize,
    /// After the run ends, keep serving its final figures this long (so a scraper takes the
    /// last values of a short run); SIGINT/SIGTERM cut it short.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub metrics_hold: Option<Duration>,
}

/// A running metrics endpoint.
pub struct Metrics {
    pub state: Arc<Mutex<MetricsState>>,
    /// The address actually bound (port 0 resolved).
    pub addr: SocketAddr,
    pub hold: Option<Duration>,
    server: JoinHandle<()>,
}

impl Drop for Metrics {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// The hostname, for the `host` label.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

fn resolve(listen: &str) -> Result<SocketAddr> {
    listen
        .to_socket_addrs()
        .with_context(|| {
            format!("--metrics-listen {listen}: expected ADDR:PORT, e.g. 127.0.0.1:9464")
        })?
        .next()
        .ok_or_else(|| anyhow!("--metrics-listen {listen}: the address resolves to nothing"))
}

impl Metrics {
    /// Binds the endpoint when `--metrics-listen` was given (inside a tokio runtime). With
    /// `refresh`, each scrape first asks the returned receiver's owner for fresh figures.
    pub fn start(
        args: &MetricsArgs,
        refresh: bool,
    ) -> Result<Option<(Self, Option<mpsc::Receiver<RefreshRequest>>)>> {
        let Some(listen) = &args.metrics_listen else {
            return Ok(None);
        };
        let addr = resolve(listen)?;
        let std_listener = std::net::TcpListener::bind(addr)
            .with_context(|| format!("cannot listen on {addr} for --metrics-listen"))?;
        std_listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(std_listener)?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(MetricsState::new(
            host_name(),
            args.metrics_max_queues,
        )));
        let (tx, rx) = if refresh {
            let (tx, rx) = mpsc::channel(4);
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let responder = http::Responder {
            exposition: Arc::new(expose::Exposition::new(state.clone())),
            refresh: tx,
        };
        let server = http::spawn(listener, responder);
        eprintln!("cmdqv: metrics at http://{addr}/metrics");
        Ok(Some((
            Self {
                state,
                addr,
                hold: args.metrics_hold,
                server,
            },
            rx,
        )))
    }

    /// The state, also after a writer panicked while holding it.
    pub fn lock(&self) -> std::sync::MutexGuard<'_, MetricsState> {
        lock(&self.state)
    }
}

/// An endpoint with a runtime of its own, for the commands that are not on the live runner
/// (`sample`, `serve`): the server, and the stop signals, run on its one worker.
pub struct Standalone {
    pub metrics: Option<Metrics>,
    pub stop: crate::live::signals::StopSignal,
    // Dropped last: the server task and the signal listener live on it.
    pub rt: tokio::runtime::Runtime,
}

impl Standalone {
    pub fn start(args: &MetricsArgs) -> Result<Self> {
        let rt = crate::live::signals::runtime()?;
        let (metrics, stop) = {
            let _in_rt = rt.enter();
            let stop = crate::live::signals::StopSignal::install()
                .context("installing the signal handlers")?;
            (Metrics::start(args, false)?.map(|(m, _)| m), stop)
        };
        Ok(Self { metrics, stop, rt })
    }

    /// `--metrics-hold` after the run.
    pub fn hold(&mut self) {
        hold(&self.rt, self.metrics.as_ref(), &mut self.stop);
    }
}

/// `--metrics-hold`: the final figures stay up for a scraper, unless a stop signal came.
pub fn hold(
    rt: &tokio::runtime::Runtime,
    m: Option<&Metrics>,
    stop: &mut crate::live::signals::StopSignal,
) {
    let Some(hold) = m.and_then(|m| m.hold) else {
        return;
    };
    if crate::live::interrupted() {
        return;
    }
    rt.block_on(async {
        tokio::select! {
            _ = tokio::time::sleep(hold) => {}
            _ = stop.wait() => {}
        }
    });
}

/// Locks the state; a poisoned lock still holds consistent counters (every update is a
/// handful of additions), so it is taken over.
pub fn lock(state: &Mutex<MetricsState>) -> std::sync::MutexGuard<'_, MetricsState> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}
