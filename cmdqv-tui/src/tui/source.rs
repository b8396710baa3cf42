//! The UI's link to the collector: [`SnapshotSource`] (snapshots in, [`Control`] messages out)
//! and [`ChannelSource`], the ready-made one over std channels a runner wires to
//! `tui::run`: the collector sends `Summary` snapshots whenever it likes; each frame
//! takes the newest and drops the rest, never waiting. Controls go back on a second channel.

use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::sync::{Arc, Mutex};

use cmdqv_core::analysis::Summary;

/// A message from the UI to the collector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Control {
    /// Stop (true) or resume (false) collecting; the UI also freezes its view while paused.
    Pause(bool),
    /// The UI's new frame rate; a collector may match its snapshot cadence to it.
    RefreshHz(u32),
    /// Start a recording if none is running, stop it otherwise.
    ToggleRecording,
    /// The user quit; the collector should stop.
    Quit,
}

/// Where the UI gets its snapshots from, and where its controls go.
pub trait SnapshotSource: Send {
    /// Latest snapshot (None before the first one). Called once per frame.
    fn latest(&mut self) -> Option<Summary>;
    /// Send a control message to the collector (pause, rate, recording).
    fn control(&mut self, c: Control);
    /// Is a recording in progress, and to which file (for the header).
    fn recording(&self) -> Option<String> {
        None
    }
    /// Has the collector stopped for good (replay at its end, collector gone)? The header then
    /// says the view is the last snapshot.
    fn finished(&self) -> bool {
        false
    }
    /// Must the UI quit now, as if the user had pressed Ctrl-C? A runner answers yes once a stop
    /// signal (SIGINT, SIGTERM) came from outside: raw mode turns the terminal's own Ctrl-C into
    /// a key, so a signal sent from elsewhere reaches the UI only this way.
    fn stop_requested(&self) -> bool {
        false
    }
}

/// Snapshots in over a channel, controls out over another.
pub struct ChannelSource {
    snapshots: Receiver<Summary>,
    controls: Sender<Control>,
    recording: Arc<Mutex<Option<String>>>,
    /// The collector hung up: nothing new will come.
    closed: bool,
    /// Asked once a frame: has the runner been told to stop?
    stop: Option<Box<dyn Fn() -> bool + Send>>,
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
            stop: None,
        }
    }

    /// Quit the UI once `stop` says so (the runner's stop signal, see
    /// [`SnapshotSource::stop_requested`]).
    pub fn stop_when(mut self, stop: impl Fn() -> bool + Send + 'static) -> Self {
        self.stop = Some(Box::new(stop));
        self
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

    fn stop_requested(&self) -> bool {
        self.stop.as_ref().is_some_and(|stop| stop())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::mpsc;

    use super::*;

    static STOP: AtomicBool = AtomicBool::new(false);

    #[test]
    fn stop_comes_from_the_runner() {
        let (_snap_tx, snap_rx) = mpsc::channel();
        let (ctl_tx, _ctl_rx) = mpsc::channel();
        let rec = Arc::new(Mutex::new(None));
        let plain = ChannelSource::new(snap_rx, ctl_tx.clone(), Arc::clone(&rec));
        assert!(!plain.stop_requested());
        let (_snap_tx, snap_rx) = mpsc::channel();
        let src =
            ChannelSource::new(snap_rx, ctl_tx, rec).stop_when(|| STOP.load(Ordering::Relaxed));
        assert!(!src.stop_requested());
        STOP.store(true, Ordering::Relaxed);
        assert!(src.stop_requested());
    }
}
