//! The live terminal dashboard: watches VCMDQ traffic from [`Summary`] snapshots.
//!
//! The UI never talks to the collector directly. It pulls the latest snapshot through a
//! [`SnapshotSource`] once per frame (never blocking) and sends [`Control`] messages back
//! (pause, refresh rate, recording, quit) through the same source; [`ChannelSource`] is that
//! control channel over std channels, the way a runner wires the UI. [`App`] is pure state +
//! rendering, so every view is testable with ratatui's `TestBackend`; [`run`] is the thin edge
//! that owns the real terminal.
//!
//! The files form a pyramid; each imports only from the layers below it:
//! - bottom: [`format`](mod@format) (human units), [`theme`] (styles; `NO_COLOR` turns every
//!   colour off), [`options`], [`source`] (snapshots in, controls out), [`action`] (the
//!   [`View`] and [`Action`] words every layer shares);
//! - [`keymap`]: bindings as data; dispatch, footer hints and `?` help come from it;
//! - [`config`]: the config file (view, refresh rate, columns, theme, mouse, key overrides);
//! - [`model`]: the view model, derived once per snapshot and re-used by every frame;
//! - `components`: one per pane or piece of the screen; the list panes own their state;
//! - [`app`]: the panes composed, keys dispatched to them;
//! - `term`: the real terminal at the top edge.
//!
//! [`Summary`]: cmdqv_core::analysis::Summary

pub mod action;
pub mod app;
mod components;
pub mod config;
pub mod format;
pub mod keymap;
pub mod model;
pub mod options;
pub mod source;
mod term;
pub mod theme;

pub use action::{Action, View};
pub use app::App;
pub use components::help::help_text;
pub use components::screen::{MIN_HEIGHT, MIN_WIDTH};
pub use config::Config;
pub use keymap::{Binding, Context, KEYMAP, Keymap};
pub use model::ViewModel;
pub use model::queues::SortColumn;
pub use options::{MAX_HZ, MIN_HZ, TuiOptions, no_color_env};
pub use source::{ChannelSource, Control, SnapshotSource};
pub use term::{run, run_loop};
