//! What a trace file says about its recording beside the events: the header's [`TraceMeta`]
//! and the periodic [`MetaUpdate`] records (both JSON in the file).

use serde::{Deserialize, Serialize};

use crate::analysis::{Handover, ProbeStatus, VintfSummary};
use crate::event::Source;

/// What a queue is, as the VMM knows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueMeta {
    pub queue: u32,
    pub vintf: Option<u32>,
    pub lvcmdq: Option<u32>,
    pub log2size: Option<u8>,
}

/// The metadata in the file header.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TraceMeta {
    /// Where the recorded events came from (the replay's own source is always `replay`).
    pub source: Source,
    pub target: String,
    /// pid of the traced VMM, when there is one (Perfetto export groups tracks under it).
    #[serde(default)]
    pub pid: Option<u32>,
    /// The traced VM's name or uuid from its VMM's command line, when it has one (replay's
    /// JSON records carry it as `vm`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm: Option<String>,
    #[serde(default)]
    pub probes: Vec<ProbeStatus>,
    #[serde(default)]
    pub queues: Vec<QueueMeta>,
    /// CLOCK_MONOTONIC ns at the start of recording; `None` = the first event's timestamp.
    #[serde(default)]
    pub start_ns: Option<u64>,
    /// Wall clock (Unix ns) at the start of recording, for humans.
    #[serde(default)]
    pub wall_clock_unix_ns: Option<u64>,
    /// Version of the tool that wrote the file.
    #[serde(default)]
    pub tool_version: String,
    /// The SMMU queue's batches are derived from MMIO (a traced QEMU); replay does the same.
    #[serde(default)]
    pub smmu_queue_from_mmio: bool,
}

impl TraceMeta {
    pub fn new(source: Source, target: impl Into<String>) -> Self {
        Self {
            source,
            target: target.into(),
            pid: None,
            vm: None,
            probes: Vec::new(),
            queues: Vec::new(),
            start_ns: None,
            wall_clock_unix_ns: None,
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            smmu_queue_from_mmio: false,
        }
    }
}

/// A periodic metadata record: whatever changed since the header.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MetaUpdate {
    pub ts_ns: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probes: Option<Vec<ProbeStatus>>,
    /// Total events lost outside the collector so far (ring buffer, channels); cumulative, so a
    /// lost meta record loses nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drops_total: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub queues: Vec<QueueMeta>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vintfs: Option<Vec<VintfSummary>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handover: Option<Handover>,
}
