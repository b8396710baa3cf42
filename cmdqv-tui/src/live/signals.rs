//! Ctrl-C (SIGINT) and SIGTERM ask a live run to stop instead of killing the process: the
//! collection loop returns, the feed (and with it every probe link) is dropped, the trace file
//! is flushed and the final summary printed. The TUI quits too (its source reports [`interrupted`] as `stop_requested`). A
//! second signal exits at once.

use std::sync::atomic::{AtomicBool, Ordering};

use nix::sys::signal::Signal;
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::watch,
};

/// The runtime every live command runs on: one worker beside the caller's thread, where the
/// signal listener, the feeds' readers and the metrics endpoint run, while the caller's thread
/// collects (or samples).
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    use anyhow::Context as _;
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("cmdqv-rt")
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Set once a stop signal arrived; read by the TUI's frame loop.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Whether a stop signal arrived (see [`StopSignal::install`]).
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::Relaxed)
}

/// Resolves when SIGINT or SIGTERM arrived (clones resolve together).
#[derive(Clone)]
pub struct StopSignal(watch::Receiver<bool>);

impl StopSignal {
    /// Takes over SIGINT and SIGTERM for the rest of the process. Call it inside a runtime whose
    /// other worker runs the listener, so a second signal ends the process even while the
    /// caller's thread is busy.
    pub fn install() -> std::io::Result<Self> {
        let mut int = signal(SignalKind::interrupt())?;
        let mut term = signal(SignalKind::terminate())?;
        let (tx, rx) = watch::channel(false);
        tokio::spawn(async move {
            loop {
                let sig = tokio::select! {
                    _ = int.recv() => Signal::SIGINT,
                    _ = term.recv() => Signal::SIGTERM,
                };
                if INTERRUPTED.swap(true, Ordering::SeqCst) {
                    // The kernel closes every fd on exit, so even this path leaves no probe
                    // attached (links and programs are fd-owned, nothing is pinned).
                    std::process::exit(128 + sig as i32);
                }
                let _ = tx.send(true);
            }
        });
        Ok(Self(rx))
    }

    /// Waits for the first stop signal (at once if it already came).
    pub async fn wait(&mut self) {
        if self.0.wait_for(|stop| *stop).await.is_err() {
            // The listener is gone (runtime shutting down): no signal will come any more.
            std::future::pending::<()>().await;
        }
    }
}
