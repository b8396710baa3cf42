//! The panes and the pieces of the screen, one module each. The three list panes
//! ([`queues::QueueTable`], [`log::LogPane`], [`probes::ProbeList`]) own their state and handle
//! the actions that concern them ([`pane::Pane`]); the rest are drawn from the view model and
//! the app's status. Nothing here knows the app: it passes each piece what it needs.

pub mod charts;
pub mod common;
pub mod compare;
pub mod dashboard;
pub mod detail;
pub mod devices;
pub mod footer;
pub mod header;
pub mod help;
pub mod hit;
pub mod log;
pub mod pane;
pub mod phases;
pub mod probes;
pub mod queues;
pub mod screen;
