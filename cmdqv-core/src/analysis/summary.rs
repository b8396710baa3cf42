//! The summary contract: what the TUI, the headless JSON output and replay read.
//!
//! The JSON field names below are a contract (issue: headless output): `source`, `events`,
//! `drops`, `probes`, `queues[]` with `vintf`, `lvcmdq`, `global_id`, `commands`, `syncs`,
//! `errors`, `commands_per_s`, `batch_latency_ns` {`p50`,`p99`,`max`}, `phases_ns` (phase →
//! {`p50`,`p99`}), `opcodes`; a host kernel's
//! queues (`cmdqv host`) add `host` {`cmdq`, `main`, `latency`, `batch_sizes`, `window`} to
//! theirs.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::event::Source;

/// Attach status of one probe, as the loader recorded it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ProbeStatus {
    /// e.g. `tracepoint:syscalls/sys_enter_ioctl`, `uprobe:cmdqv_vmm_mmio`.
    pub name: String,
    /// `attached`, `symbol-not-found`, `unsupported` (kernel lacks the hook), `permission-denied`,
    /// `failed`, `not-requested`, `in-process`.
    pub status: String,
    /// One line a user can act on.
    pub reason: String,
}

/// Life-cycle state of a queue as the collector last saw it.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum QueueState {
    #[default]
    Disabled,
    /// Enabled, commands consumed by the model (fully emulated / trapped).
    Emulated,
    /// Enabled and backed by a host hardware queue.
    Hardware,
    /// Stopped on an error not yet acknowledged.
    Error,
}

/// Latency percentiles in nanoseconds.
#[derive(Copy, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Latency {
    pub count: u64,
    pub p50: u64,
    pub p99: u64,
    pub max: u64,
    pub mean: f64,
}

/// One phase of a batch's latency ([`crate::analysis::phases::Phase`]), in nanoseconds.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PhaseLatency {
    pub count: u64,
    pub p50: u64,
    pub p99: u64,
}

/// The last error a queue stopped on, with the command that caused it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct QueueError {
    pub ts_ns: u64,
    /// CERROR code (1 ILL, 2 ABT, 3 ATC_INV_SYNC, 4 ILL_ACCESS).
    pub code: u8,
    pub name: String,
    /// CONS index (with wrap) of the faulting entry.
    pub index: u32,
    /// The faulting command, when it was captured.
    pub command: Option<[u64; 2]>,
    pub acknowledged: bool,
}

/// A recently consumed command (for the detail view).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RecentCommand {
    pub ts_ns: u64,
    pub index: u32,
    pub w0: u64,
    pub w1: u64,
    /// Human-readable decoding, e.g. `TLBI_NH_VA vmid=1 asid=3 va=0x1000 tg=4K num=0 scale=0`.
    pub text: String,
}

/// Per-queue statistics.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct QueueSummary {
    /// Display name: `vcmdq<global>` or `smmu-cmdq`.
    pub name: String,
    /// Global VCMDQ index; `null` for the SMMU's own command queue.
    pub global_id: Option<u32>,
    pub vintf: Option<u32>,
    pub lvcmdq: Option<u32>,
    pub state: QueueState,
    pub log2size: u8,
    pub prod: u32,
    pub cons: u32,
    /// Fraction of the ring in use at the last observation, 0.0..=1.0.
    pub occupancy: f64,
    pub commands: u64,
    pub syncs: u64,
    pub errors: u64,
    pub errors_by_code: BTreeMap<String, u64>,
    pub batches: u64,
    pub commands_per_s: f64,
    pub syncs_per_s: f64,
    pub mean_batch_size: f64,
    /// Guest doorbell (PROD write) → CONS reaching that PROD.
    pub batch_latency_ns: Latency,
    /// Where the batch latency goes: phase name (`doorbell_to_vmm`, `vmm_to_consume`,
    /// `doorbell_to_consume`, `consume`, `cons_update`, `cons_visible`, `ioctl`) → percentiles.
    /// Phases the source cannot see are absent.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub phases_ns: BTreeMap<String, PhaseLatency>,
    /// Command name → count.
    pub opcodes: BTreeMap<String, u64>,
    pub last_error: Option<QueueError>,
    /// Commands/s per interval, oldest first (bounded; for sparklines).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rate_history: Vec<u64>,
    /// Log2-bucketed batch latency histogram: (upper bound ns, count) (bounded).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub latency_histogram: Vec<(u64, u64)>,
    /// Last few commands (bounded).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recent: Vec<RecentCommand>,
    /// A host kernel's command queue (`cmdqv host`): what only such a queue has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<HostQueueSummary>,
}

/// What a host kernel's command queue row adds (`cmdqv host`): the kernel's queue, how its
/// latency was measured, batch sizes, and the ring slots this run saw written.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct HostQueueSummary {
    /// Kernel address of the queue's `struct arm_smmu_cmdq`, e.g. `0xffff00000a1b2c80`.
    pub cmdq: String,
    /// Kernel address of its `struct arm_smmu_device`.
    pub smmu: String,
    /// The SMMU's own command queue (`smmu->cmdq`); false: another one (on Grace, a tegra241
    /// VCMDQ); null: not known (the kernel's BTF did not give the offset).
    pub main: Option<bool>,
    /// What `batch_latency_ns` measures on this row.
    pub latency: String,
    /// Batches (`arm_smmu_cmdq_issue_cmdlist` calls) with a CMD_SYNC appended.
    pub sync_batches: u64,
    /// Commands per batch, the appended CMD_SYNC included → batches; `65` counts every batch of
    /// more than 64.
    pub batch_sizes: BTreeMap<u32, u64>,
    /// Commands the probes could not capture (beyond 64 per batch, unreadable memory).
    pub missed: u64,
    /// The ring slots this run saw written, when the ring pointers and size were read.
    pub window: Option<RingWindow>,
}

/// The stretch of a host queue's ring that the batches of a run covered. The commands a queue
/// row counts are exactly these slots when `contiguous`: no batch inside was missed, so the
/// consumer of the queue (the SMMU, or QEMU emulating one) took exactly them in this order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RingWindow {
    /// log2 of the ring's entries; a ring pointer is index | wrap << log2size.
    pub log2size: u8,
    /// Ring pointer of the first slot.
    pub first: u32,
    /// Ring pointer one past the last slot.
    pub end: u32,
    /// Slots the batches wrote (their commands and appended CMD_SYNCs).
    pub slots: u64,
    /// Batches with a known ring pointer.
    pub batches: u64,
    /// Batches whose ring pointer was not seen (not in the window).
    pub unplaced: u64,
    /// Every slot from `first` to `end` was written by a batch seen (`slots` = the distance).
    pub contiguous: bool,
}

/// VINTF state for the device panel.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct VintfSummary {
    pub index: u32,
    pub enabled: bool,
    pub hyp_own: bool,
    pub vmid: u16,
    /// (slot, virtual SID, physical SID) of enabled SID_MATCH entries.
    pub sids: Vec<(u32, u32, u32)>,
    /// LVCMDQ_ERR_MAP as two 64-bit words.
    pub lvcmdq_err_map: [u64; 2],
}

/// One line of the live event log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LogLine {
    pub ts_ns: u64,
    pub pid: u32,
    /// `mmio`, `cmd`, `ioctl`, `queue`, `error`, `kvm`, `mmap`, `kfunc`, `iommu`, `batch` (a host
    /// kernel batch), `lost`.
    pub kind: String,
    /// e.g. `W VINTF0.LVCMDQ1.PROD_INDX = 0x00000012`, `IOMMU_HW_QUEUE_ALLOC -> ENOTTY 3.1us`.
    pub text: String,
    pub is_error: bool,
}

/// Passthrough bookkeeping (reported by the sim's handover scenario).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Handover {
    pub handovers: u64,
    pub commands_lost: u64,
    pub view_mismatches: u64,
}

/// Everything a view or the headless output needs at one instant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Summary {
    /// `ebpf`, `in-process` or `replay`.
    pub source: Source,
    /// What is being traced, e.g. `sim:steady-unmap (pid 1234)`.
    pub target: String,
    /// Seconds covered by this summary (since start, or the interval).
    pub elapsed_s: f64,
    pub events: u64,
    pub events_per_s: f64,
    /// Events lost anywhere (ring buffer, channels, collector overflow).
    pub drops: u64,
    pub probes: Vec<ProbeStatus>,
    pub queues: Vec<QueueSummary>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vintfs: Vec<VintfSummary>,
    /// iommufd ioctls: name → (count, errors).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ioctls: BTreeMap<String, (u64, u64)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handover: Option<Handover>,
    /// Only in `--interval` output: which interval this is (1-based).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<u64>,
    /// Recent log lines (bounded; not serialized in headless JSON).
    #[serde(skip)]
    pub log: Vec<LogLine>,
    /// Free-form notes the user must see (e.g. "events come from the in-process fallback").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// The sim's own report (its guest engine, the measured comparison); `None` elsewhere.
    #[serde(default, flatten, skip_serializing_if = "Option::is_none")]
    pub sim: Option<SimReport>,
}

/// What the sim VMM reports about its own run, beside the traced events.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SimReport {
    /// `kvm` (the guest's hot path ran as guest code in real vCPUs) or `user` (vCPU threads).
    pub guest_engine: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comparison: Option<Comparison>,
}

/// Trapped against direct, measured in real vCPUs (the trapped-vs-vcmdq scenario under KVM).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Comparison {
    pub trapped: PathFigures,
    pub direct: PathFigures,
    /// Trapped over direct batch latency.
    pub speedup_p50: f64,
    pub speedup_p99: f64,
    /// What the measured figures contain.
    pub measured: Vec<String>,
    /// Components that cannot run here, as `name: value`; never folded into a measured figure.
    pub modelled: Vec<String>,
}

/// One path's measured figures.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PathFigures {
    pub batches: u64,
    pub commands: u64,
    /// VM exits to the VMM during the run (what `exits_source` says counted them).
    pub exits: u64,
    pub exits_source: String,
    pub exits_per_batch: f64,
    /// The exits by reason as `kvm:kvm_exit` names them (`EPT_MISCONFIG`, `IO_INSTRUCTION`,
    /// `EXTERNAL_INTERRUPT`, arm64's `DABT_LOW`...); empty when that probe did not count them.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub exits_by_reason: std::collections::BTreeMap<String, u64>,
    /// Where a batch's time goes, per phase (`exit`, `vmm_dispatch`, `consumption`, `resume`),
    /// from the kernel's and the VMM's timestamps on the vCPU thread; measured only (trapped).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub breakdown_ns: std::collections::BTreeMap<String, Latency>,
    /// Exits caused by a doorbell (a PROD store).
    pub doorbell_exits: u64,
    /// Exits the guest makes once per batch so the VMM can pace it at the scenario's rate.
    pub pacing_exits: u64,
    /// Guest-visible: TSC read by the guest before writing the batch and after CONS caught up.
    pub batch_latency_ns: Latency,
    /// VMM time spent handling one MMIO exit (from KVM_RUN's return to the next KVM_RUN).
    pub vmm_ns_per_exit: f64,
    /// Batch latency p50 over the commands in a batch.
    pub ns_per_command: f64,
    pub commands_per_s: f64,
}
