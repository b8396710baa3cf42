//! A ready-made [`SnapshotSource`] over std channels, for wiring the collector to [`run`]:
//! the collector sends `Summary` snapshots whenever it likes; each frame takes the newest and
//! drops the rest, never waiting. Controls go back on a second channel.
//!
//! [`run`]: super::run

use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::sync::{Arc, Mutex};

use cmdqv_core::analysis::Summary;

use super::{Control, SnapshotSource};

/// Snapshots in over a channel, controls out over another.
pub struct ChannelSource {
    snapshots: Receiver<Summary>,
    controls: Sender<Control>,
    recording: Arc<Mutex<Option<String>>>,
    /// The collector hung up: nothing new will come.
    closed: bool,
}

impl ChannelSource {
    /// `recording` is shared with the collector, which sets it to the file being written
    /// (or `None`) when it handles [`Control::ToggleRecording`].
    pub fn new(
        snapshots: Receiver<Summary>,
        controls: Sender<Control>,
        recording: Arc<Mutex<Option<String>>>,
    ) -> Self {
        Self {
            snapshots,
            controls,
            recording,
            closed: false,
        }
    }

    /// Has the collector dropped its sender?
    pub fn is_closed(&self) -> bool {
        self.closed
    }
}

impl SnapshotSource for ChannelSource {
    fn latest(&mut self) -> Option<Summary> {
        let mut newest = None;
        loop {
            match self.snapshots.try_recv() {
                Ok(s) => newest = Some(s),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    self.closed = true;
                    break;
                }
            }
        }
        newest
    }

    fn control(&mut self, c: Control) {
        // A collector that already stopped cannot act on it; the UI goes on showing the last view.
        let _ = self.controls.send(c);
    }

    fn recording(&self) -> Option<String> {
        self.recording.lock().ok().and_then(|r| r.clone())
    }

    fn finished(&self) -> bool {
        self.closed
    }
}
