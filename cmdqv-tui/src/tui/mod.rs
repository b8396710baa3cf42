//! The live terminal dashboard: watches VCMDQ traffic from [`Summary`] snapshots.
//!
//! The UI never talks to the collector directly. It pulls the latest snapshot through a
//! [`SnapshotSource`] once per frame (never blocking) and pushes [`Control`] messages back
//! (pause, refresh rate, recording, quit). [`App`] is pure state + rendering, so every view is
//! testable with ratatui's `TestBackend`; [`run`] is the thin edge that owns the real terminal.
//!
//! Pieces: [`keymap`] (bindings as data: dispatch, footer hints and `?` help come from it),
//! [`app`] (state and actions), `view` (one module per pane), [`format`](mod@format) (human units),
//! [`theme`] (styles; `NO_COLOR` turns every colour off), `term` (terminal set-up and restore),
//! [`source`] (a channel-backed [`SnapshotSource`] for wiring the collector).

pub mod app;
pub mod format;
pub mod keymap;
pub mod source;
mod term;
pub mod theme;
mod view;

use cmdqv_core::analysis::Summary;

pub use app::{App, SortColumn, View};
pub use keymap::{Action, Binding, Context, KEYMAP};
pub use source::ChannelSource;
pub use term::{run, run_loop};
pub use view::{MIN_HEIGHT, MIN_WIDTH, help_text};

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
}

/// Options of the live UI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TuiOptions {
    /// Frames (and snapshot pulls) per second, clamped to `MIN_HZ..=MAX_HZ`.
    pub refresh_hz: u32,
    /// No colour at all. [`run`] also turns this on when `NO_COLOR` is set and non-empty.
    pub no_color: bool,
}

/// Slowest refresh rate the UI accepts.
pub const MIN_HZ: u32 = 1;
/// Fastest refresh rate the UI accepts.
pub const MAX_HZ: u32 = 60;

impl Default for TuiOptions {
    fn default() -> Self {
        Self {
            refresh_hz: 10,
            no_color: false,
        }
    }
}

impl TuiOptions {
    /// These options with `NO_COLOR` (<https://no-color.org>) from the environment applied.
    pub fn with_env(mut self) -> Self {
        self.no_color |= no_color_env(std::env::var_os("NO_COLOR").as_deref());
        self
    }
}

/// `NO_COLOR` disables colour when it is present and not empty.
pub fn no_color_env(value: Option<&std::ffi::OsStr>) -> bool {
    value.is_some_and(|v| !v.is_empty())
}
