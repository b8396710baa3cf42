//! The channels between the live runner and the TUI. Snapshots go to the UI through a watch
//! channel (one slot: the newest wins, the collector never waits); control messages come back
//! through a small bounded channel the runner awaits in its select loop. The UI's end is a
//! [`SnapshotSource`]; when the UI quits and drops it, the runner sees the channel close.

use cmdqv_core::analysis::Summary;
use tokio::sync::{mpsc, watch};

use crate::tui::{Control, SnapshotSource};

/// Control messages waiting for the runner; a key pressed while it is this far behind is lost.
const CONTROL_CAP: usize = 16;

/// The runner's end.
pub struct RunnerLink {
    snapshots: watch::Sender<Option<Summary>>,
    recording: watch::Sender<Option<String>>,
    controls: mpsc::Receiver<Control>,
}

/// The UI's end.
pub struct UiSource {
    snapshots: watch::Receiver<Option<Summary>>,
    recording: watch::Receiver<Option<String>>,
    controls: mpsc::Sender<Control>,
}

/// A connected pair.
pub fn ui_link() -> (RunnerLink, UiSource) {
    let (snap_tx, snap_rx) = watch::channel(None);
    let (rec_tx, rec_rx) = watch::channel(None);
    let (ctl_tx, ctl_rx) = mpsc::channel(CONTROL_CAP);
    (
        RunnerLink {
            snapshots: snap_tx,
            recording: rec_tx,
            controls: ctl_rx,
        },
        UiSource {
            snapshots: snap_rx,
            recording: rec_rx,
            controls: ctl_tx,
        },
    )
}

impl RunnerLink {
    /// Replaces whatever snapshot the UI has not taken yet.
    pub fn publish(&self, s: Summary) {
        self.snapshots.send_replace(Some(s));
    }

    /// The file being recorded to, for the UI's header.
    pub fn set_recording(&self, path: Option<String>) {
        self.recording.send_replace(path);
    }

    /// The next control message; `None` once the UI has gone.
    pub async fn control(&mut self) -> Option<Control> {
        self.controls.recv().await
    }
}

impl SnapshotSource for UiSource {
    fn latest(&mut self) -> Option<Summary> {
        let s = self.snapshots.borrow_and_update();
        // Also true for the last snapshot of a runner that has already finished.
        if s.has_changed() { s.clone() } else { None }
    }

    fn control(&mut self, c: Control) {
        // Never block the UI; a runner that stopped or lags this far cannot act on it anyway.
        let _ = self.controls.try_send(c);
    }

    fn recording(&self) -> Option<String> {
        self.recording.borrow().clone()
    }

    fn finished(&self) -> bool {
        self.snapshots.has_changed().is_err()
    }

    /// SIGINT/SIGTERM close the UI as the quit key does (the runner stops on the same signal).
    fn stop_requested(&self) -> bool {
        crate::live::interrupted()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(events: u64) -> Summary {
        let c = cmdqv_core::analysis::Collector::new(cmdqv_core::analysis::CollectorConfig::new(
            cmdqv_core::event::Source::Replay,
            "t",
        ));
        let mut s = c.snapshot(0);
        s.events = events;
        s
    }

    #[test]
    fn the_newest_snapshot_wins_and_the_last_one_survives_the_runner() {
        let (runner, mut ui) = ui_link();
        assert!(ui.latest().is_none());
        runner.publish(summary(1));
        runner.publish(summary(2));
        assert_eq!(ui.latest().map(|s| s.events), Some(2));
        assert!(ui.latest().is_none(), "each snapshot is taken once");
        runner.set_recording(Some("x.cmdqv".into()));
        assert_eq!(ui.recording().as_deref(), Some("x.cmdqv"));
        assert!(!ui.finished());
        runner.publish(summary(3));
        drop(runner);
        assert!(ui.finished());
        assert_eq!(ui.latest().map(|s| s.events), Some(3));
    }

    #[test]
    fn controls_reach_the_runner_and_a_closed_ui_ends_them() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let (mut runner, mut ui) = ui_link();
        ui.control(Control::Pause(true));
        ui.control(Control::RefreshHz(20));
        drop(ui);
        rt.block_on(async {
            assert_eq!(runner.control().await, Some(Control::Pause(true)));
            assert_eq!(runner.control().await, Some(Control::RefreshHz(20)));
            assert_eq!(runner.control().await, None);
        });
    }
}
