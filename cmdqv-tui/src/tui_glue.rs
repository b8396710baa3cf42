//! Control messages between the UI and the collection thread (re-exported by the TUI).

/// What the UI asks of the collector.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Control {
    Pause(bool),
    RefreshHz(u32),
    ToggleRecording,
    Quit,
}
