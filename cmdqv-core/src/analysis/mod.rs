//! Analysis of the event stream, by job:
//!
//! - [`summary`]: the summary contract the TUI, the headless JSON output and replay read
//!   (field names are a contract).
//! - [`render`]: text for people (log lines, queue names, durations).
//! - [`collector`]: correlation and per-queue statistics with bounded memory ([`Collector`]),
//!   over [`batch`] correlation, per-queue state and the VINTF panel's state.
//!
//! Everything is re-exported here, so `cmdqv_core::analysis::X` names every item.

pub mod batch;
pub mod collector;
mod queue_stats;
pub mod render;
pub mod summary;
mod vintf;

pub use batch::{Batch, BatchTracker, PENDING_CAP};
pub use collector::{Collector, CollectorConfig, IOCTL_CAP, LOG_CAP, LOG_ERRORS_KEPT, MAX_QUEUES};
pub use queue_stats::{LATENCY_BUCKETS, RATE_HISTORY_CAP, RECENT_CAP};
pub use render::{
    RegNameFn, format_duration_ns, ioctl_name, is_error_event, log_line, queue_event_title,
    queue_name, render,
};
pub use summary::{
    Comparison, Handover, Latency, LogLine, PathFigures, ProbeStatus, QueueError, QueueState,
    QueueSummary, RecentCommand, SimReport, Summary, VintfSummary,
};
pub use vintf::MAX_VINTFS_TRACKED;

pub use crate::command::describe;
