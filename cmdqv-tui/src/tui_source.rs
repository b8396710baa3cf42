//! Connects the live UI to a collection thread through [`Shared`] state: the UI takes the latest
//! snapshot each frame (never blocking the collector), and its controls set flags the
//! collection loop reads.

use std::sync::{Arc, atomic::Ordering};

use cmdqv_core::analysis::Summary;

use crate::{
    live::Shared,
    tui::{self, Control, SnapshotSource, TuiOptions},
};

pub struct SharedSource(pub Arc<Shared>);

impl SnapshotSource for SharedSource {
    fn latest(&mut self) -> Option<Summary> {
        self.0
            .latest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    fn control(&mut self, c: Control) {
        let s = &self.0;
        match c {
            Control::Pause(p) => s.paused.store(p, Ordering::Relaxed),
            Control::RefreshHz(hz) => s.refresh_hz.store(hz as u64, Ordering::Relaxed),
            Control::ToggleRecording => s.toggle_recording.store(true, Ordering::Release),
            Control::Quit => s.stop.store(true, Ordering::Relaxed),
        }
    }

    fn finished(&self) -> bool {
        self.0.finished.load(Ordering::Relaxed)
    }

    fn stop_requested(&self) -> bool {
        crate::live::interrupted()
    }

    fn recording(&self) -> Option<String> {
        self.0
            .recording
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Runs the TUI until the user quits; the collector is told to stop.
pub fn run_tui(shared: Arc<Shared>, refresh_hz: u32) -> anyhow::Result<()> {
    let r = tui::run(
        Box::new(SharedSource(shared.clone())),
        TuiOptions {
            refresh_hz,
            no_color: false,
        },
    );
    shared.stop.store(true, Ordering::Relaxed);
    r
}
