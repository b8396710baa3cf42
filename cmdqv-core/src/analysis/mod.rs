//! Analysis of the event stream, by job:
//!
//! - [`summary`]: the summary contract the TUI, the headless JSON output and replay read
//!   (field names are a contract).
//! - [`stats`]: the tests `cmdqv diff` reports (Mann-Whitney U from histograms, Welch's t).
//! - [`render`]: text for people (log lines, queue names, durations).
//! - [`collector`]: correlation and per-queue statistics with bounded memory ([`Collector`]),
//!   over [`batch`] correlation, per-queue state, the VINTF panel's state and a host kernel's
//!   own queues ([`host_queues`]), and where each batch's time goes ([`phases`]).
//!
//! Everything is re-exported here, so `cmdqv_core::analysis::X` names every item.

pub mod batch;
pub mod collector;
pub mod host_queues;
pub mod phases;
mod queue_stats;
pub mod render;
pub mod stats;
pub mod summary;
mod vintf;

pub use batch::{Batch, BatchTracker, PENDING_CAP};
pub use collector::{
    Collector, CollectorConfig, IOCTL_CAP, LOG_CAP, LOG_ERRORS_KEPT, LOG_TEXTS_KEPT, MAX_QUEUES,
};
pub use host_queues::{HostQueues, LATENCY_CALL, LATENCY_POLL, MAX_HOST_QUEUES};
pub use phases::{PHASES, Phase, PhaseHistograms};
pub use queue_stats::{LATENCY_BUCKETS, QueueSamples, RATE_HISTORY_CAP, RECENT_CAP};
pub use render::{
    RegNameFn, format_duration_ns, host_queue_name, ioctl_name, ioctl_text, is_error_event,
    log_line, queue_event_title, queue_name, render,
};
pub use summary::{
    Comparison, Handover, HostQueueSummary, Latency, LogLine, PathFigures, PhaseLatency,
    ProbeStatus, QueueError, QueueState, QueueSummary, RecentCommand, RingWindow, SimReport,
    Summary, VintfSummary,
};
pub use vintf::MAX_VINTFS_TRACKED;

pub use crate::command::describe;
