//! Correlation and per-queue statistics with bounded memory, and the summary/snapshot types that
//! the TUI, the headless JSON output and replay all share.
//!
//! The JSON field names below are a contract (issue: headless output): `source`, `events`,
//! `drops`, `probes`, `queues[]` with `vintf`, `lvcmdq`, `global_id`, `commands`, `syncs`,
//! `errors`, `commands_per_s`, `batch_latency_ns` {`p50`,`p99`,`max`}, `opcodes`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::event::Source;

/// Attach status of one probe, as the loader recorded it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Copy, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub count: u64,
    pub p50: u64,
    pub p99: u64,
    pub max: u64,
    pub mean: f64,
}

/// The last error a queue stopped on, with the command that caused it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecentCommand {
    pub ts_ns: u64,
    pub index: u32,
    pub w0: u64,
    pub w1: u64,
    /// Human-readable decoding, e.g. `TLBI_NH_VA vmid=1 asid=3 va=0x1000 tg=4K num=0 scale=0`.
    pub text: String,
}

/// Per-queue statistics.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
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
}

/// VINTF state for the device panel.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    pub ts_ns: u64,
    pub pid: u32,
    /// `mmio`, `cmd`, `ioctl`, `queue`, `error`, `kvm`, `mmap`, `kfunc`, `lost`.
    pub kind: String,
    /// e.g. `W VINTF0.LVCMDQ1.PROD_INDX = 0x00000012`, `IOMMU_HW_QUEUE_ALLOC -> ENOTTY 3.1us`.
    pub text: String,
    pub is_error: bool,
}

/// Passthrough bookkeeping (reported by the sim's handover scenario).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handover {
    pub handovers: u64,
    pub commands_lost: u64,
    pub view_mismatches: u64,
}

/// Everything a view or the headless output needs at one instant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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
}

// ---------------------------------------------------------------------------------------------
// The collector: correlation and aggregation with bounded memory.
//
// Hot-path rule: `ingest` never allocates per event once a queue has been seen. Names, text
// and maps keyed by strings are built only in `snapshot` (10–30 Hz), from fixed arrays and
// rings of raw events.
// ---------------------------------------------------------------------------------------------

use std::collections::VecDeque;

use hdrhistogram::Histogram;

use crate::command::{self, op};
use crate::event::{Device, Event, MAIN_CMDQ, Payload, QueueOp};

/// Highest global VCMDQ index the collector tracks; events for larger ids (other than
/// [`MAIN_CMDQ`]) are counted as collector overflow drops. Ids come from the traced VMM, which
/// takes them from the guest, so they must never key an unbounded map.
pub const MAX_QUEUES: u32 = 256;
/// Live log lines kept (all kinds, errors included).
pub const LOG_CAP: usize = 1000;
/// Of those, lines kept for errors that the flood of commands pushed out of the live log, so a
/// queue error or a failed ioctl stays visible.
pub const LOG_ERRORS_KEPT: usize = 100;
/// Recent commands kept per queue.
pub const RECENT_CAP: usize = 32;
/// VINTFs whose state is derived from MMIO (the architectural maximum).
pub const MAX_VINTFS_TRACKED: usize = 64;
/// Seconds of per-second command rate kept per queue.
pub const RATE_HISTORY_CAP: usize = 120;
/// Log2 latency buckets (the last one also holds everything above 2^39 ns).
pub const LATENCY_BUCKETS: usize = 40;
/// Doorbells waiting for their CONS, per queue; older ones are given up when exceeded.
pub const PENDING_CAP: usize = 64;
/// Distinct ioctl command numbers tracked; the rest are summed under `OTHER`.
pub const IOCTL_CAP: usize = 64;
/// Largest latency the percentile histogram resolves (60 s); larger samples are clamped there
/// (the exact maximum and mean are kept separately).
const LATENCY_HIGH_NS: u64 = 60_000_000_000;

/// Register-name hook: `(device, offset)` → e.g. `VINTF0.LVCMDQ1.PROD_INDX`.
pub type RegNameFn = fn(Device, u64) -> Option<String>;

/// How a [`Collector`] is set up.
#[derive(Clone, Debug)]
pub struct CollectorConfig {
    pub source: Source,
    /// What is being traced, e.g. `sim:steady-unmap (pid 1234)`.
    pub target: String,
    /// Time zero for elapsed time and rates; `None` = the first event's timestamp.
    pub start_ns: Option<u64>,
    /// Names MMIO offsets in log lines; `None` prints `cmdqv+0x10000`.
    pub reg_name: Option<RegNameFn>,
    /// `--interval` output: summaries carry an interval number from the first one on.
    pub intervals: bool,
    /// Derive the SMMU command queue's doorbells from CMDQ_PROD writes and the end of each
    /// batch from its last command fetch (a traced QEMU reports no queue events of its own).
    pub smmu_queue_from_mmio: bool,
    /// Notes the user must see (passed through to every summary).
    pub notes: Vec<String>,
}

impl CollectorConfig {
    pub fn new(source: Source, target: impl Into<String>) -> Self {
        Self {
            source,
            target: target.into(),
            start_ns: None,
            reg_name: None,
            intervals: false,
            smmu_queue_from_mmio: false,
            notes: Vec::new(),
        }
    }
}

/// CERROR name for a CONS.ERR code (reference §5): `CERROR_ILL`, `CERROR_ABT`, …
pub fn cerror_name(code: u64) -> String {
    match code {
        0 => "CERROR_NONE".into(),
        1 => "CERROR_ILL".into(),
        2 => "CERROR_ABT".into(),
        3 => "CERROR_ATC_INV_SYNC".into(),
        4 => "CERROR_ILL_ACCESS".into(),
        c => format!("CERROR({c})"),
    }
}

/// Display name of a queue id: `smmu-cmdq` or `vcmdq<N>`.
pub fn queue_name(queue: u32) -> String {
    if queue == MAIN_CMDQ {
        "smmu-cmdq".into()
    } else {
        format!("vcmdq{queue}")
    }
}

fn tg_name(tg: u64) -> &'static str {
    match tg & 3 {
        0 => "none",
        1 => "4K",
        2 => "16K",
        _ => "64K",
    }
}

fn bits(v: u64, hi: u32, lo: u32) -> u64 {
    (v >> lo) & (u64::MAX >> (63 - (hi - lo)))
}

/// One-line human-readable decoding of a command for the common opcodes (field positions from
/// the reference §9); other opcodes print their name and raw words.
pub fn describe(w0: u64, w1: u64) -> String {
    let opcode = w0 as u8;
    let name = command::command_name(w0);
    let sid = bits(w0, 63, 32);
    let ssid = bits(w0, 31, 12);
    let vmid = bits(w0, 47, 32);
    let asid = bits(w0, 63, 48);
    let num = bits(w0, 16, 12);
    let scale = bits(w0, 24, 20);
    let leaf = w1 & 1;
    let tg = tg_name(bits(w1, 11, 10));
    let va = w1 & !0xfff;
    match opcode {
        op::CMD_SYNC => {
            let cs = match bits(w0, 13, 12) {
                0 => "NONE",
                1 => "IRQ",
                2 => "SEV",
                _ => "RSVD",
            };
            if bits(w0, 13, 12) == 1 {
                format!(
                    "{name} cs={cs} msiaddr={:#x} msidata={:#x}",
                    w1 & 0x000f_ffff_ffff_fffc,
                    sid
                )
            } else {
                format!("{name} cs={cs}")
            }
        }
        op::TLBI_NH_VA => format!(
            "{name} vmid={vmid} asid={asid} va={va:#x} tg={tg} num={num} scale={scale}{}",
            if leaf == 1 { " leaf" } else { "" }
        ),
        op::TLBI_NH_VAA => format!(
            "{name} vmid={vmid} va={va:#x} tg={tg} num={num} scale={scale}{}",
            if leaf == 1 { " leaf" } else { "" }
        ),
        op::TLBI_EL2_VA => format!(
            "{name} asid={asid} va={va:#x} tg={tg} num={num} scale={scale}{}",
            if leaf == 1 { " leaf" } else { "" }
        ),
        op::TLBI_S2_IPA => format!(
            "{name} vmid={vmid} ipa={:#x} tg={tg} num={num} scale={scale}{}",
            w1 & 0x000f_ffff_ffff_f000,
            if leaf == 1 { " leaf" } else { "" }
        ),
        op::TLBI_NH_ASID => format!("{name} vmid={vmid} asid={asid}"),
        op::TLBI_EL2_ASID => format!("{name} asid={asid}"),
        op::TLBI_NH_ALL | op::TLBI_S12_VMALL => format!("{name} vmid={vmid}"),
        op::ATC_INV => {
            let size = bits(w1, 5, 0);
            let size = if size >= 52 {
                "all".to_string()
            } else {
                size.to_string()
            };
            format!(
                "{name} sid={sid:#x}{} addr={va:#x} size={size}{}",
                if w0 & (1 << 11) != 0 {
                    format!(" ssid={ssid:#x}")
                } else {
                    String::new()
                },
                if w0 & (1 << 9) != 0 { " global" } else { "" }
            )
        }
        op::CFGI_STE => format!("{name} sid={sid:#x} leaf={leaf}"),
        op::CFGI_STE_RANGE if bits(w1, 4, 0) == 31 => "CFGI_ALL".to_string(),
        op::CFGI_STE_RANGE => format!("{name} sid={sid:#x} range={}", bits(w1, 4, 0)),
        op::CFGI_CD => format!("{name} sid={sid:#x} ssid={ssid:#x} leaf={leaf}"),
        op::CFGI_CD_ALL | op::PREFETCH_CFG => format!("{name} sid={sid:#x}"),
        op::TLBI_NSNH_ALL | op::TLBI_EL2_ALL => name.into_owned(),
        _ => format!("{name} w0={w0:#018x} w1={w1:#018x}"),
    }
}

/// `850 ns`, `3.1 µs`, `1.20 ms`, `2.50 s`.
pub fn format_duration_ns(ns: u64) -> String {
    if ns < 1_000 {
        format!("{ns} ns")
    } else if ns < 1_000_000 {
        format!("{:.1} µs", ns as f64 / 1e3)
    } else if ns < 1_000_000_000 {
        format!("{:.2} ms", ns as f64 / 1e6)
    } else {
        format!("{:.2} s", ns as f64 / 1e9)
    }
}

/// A batch the correlator closed: doorbell(s) → CONS reaching the doorbell's PROD.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    /// Timestamp of the oldest doorbell this completion covers.
    pub start_ns: u64,
    pub end_ns: u64,
    /// Command events seen since the previous completion.
    pub commands: u64,
    /// Doorbells (PROD writes) covered; each one is one latency sample.
    pub doorbells: u32,
}

/// Guest doorbell → CONS reaching that PROD, for one queue, with bounded memory.
///
/// Doorbells are kept in order; a `Consumed` with CONS = c closes every pending doorbell up to
/// the one whose PROD equals c, or all of them when the pass drained the queue (CONS = PROD).
/// A `Consumed` that matches nothing (no doorbell seen, trace started mid-batch) closes nothing.
#[derive(Clone, Debug, Default)]
pub struct BatchTracker {
    pending: VecDeque<(u64, u64)>,
    commands: u64,
    /// Doorbells given up because more than [`PENDING_CAP`] were waiting.
    pub abandoned: u64,
}

impl BatchTracker {
    /// A guest PROD write (`prod`, with `cons` at the time). Writes that add no work (PROD equal
    /// to CONS or to the previous PROD) do not open a batch.
    pub fn doorbell(&mut self, ts_ns: u64, prod: u64, cons: u64) {
        if prod == cons || self.pending.back().is_some_and(|&(_, p)| p == prod) {
            return;
        }
        if self.pending.len() == PENDING_CAP {
            self.pending.pop_front();
            self.abandoned += 1;
        }
        self.pending.push_back((ts_ns, prod));
    }

    /// A command was consumed.
    pub fn command(&mut self) {
        self.commands += 1;
    }

    /// A consumption pass ended with `cons`, `prod`. Calls `latency(ns)` for each closed doorbell
    /// and returns the batch, if any closed.
    pub fn consumed(
        &mut self,
        ts_ns: u64,
        cons: u64,
        prod: u64,
        mut latency: impl FnMut(u64),
    ) -> Option<Batch> {
        let upto = if cons == prod {
            self.pending.len()
        } else {
            match self.pending.iter().rposition(|&(_, p)| p == cons) {
                Some(i) => i + 1,
                None => 0,
            }
        };
        if upto == 0 {
            if cons == prod {
                // Drained with nothing pending: these commands belong to no visible batch.
                self.commands = 0;
            }
            return None;
        }
        let start_ns = self.pending[0].0;
        for (t, _) in self.pending.drain(..upto) {
            latency(ts_ns.saturating_sub(t));
        }
        let commands = std::mem::take(&mut self.commands);
        Some(Batch {
            start_ns,
            end_ns: ts_ns,
            commands,
            doorbells: upto as u32,
        })
    }

    /// The queue was disabled or reset: nothing pending can complete any more.
    pub fn clear(&mut self) {
        self.pending.clear();
        self.commands = 0;
    }

    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}

#[derive(Copy, Clone, Debug)]
struct RawCommand {
    ts_ns: u64,
    index: u32,
    w0: u64,
    w1: u64,
}

/// Per-interval counters (reset by [`Collector::reset_interval`]).
#[derive(Clone, Debug)]
struct QueueCounters {
    commands: u64,
    syncs: u64,
    errors: u64,
    errors_by_code: [u64; 128],
    batches: u64,
    batch_commands: u64,
    opcodes: [u64; 256],
    latency: Option<Box<Histogram<u64>>>,
    latency_count: u64,
    latency_sum: u128,
    latency_max: u64,
    latency_log2: [u64; LATENCY_BUCKETS],
}

impl Default for QueueCounters {
    fn default() -> Self {
        Self {
            commands: 0,
            syncs: 0,
            errors: 0,
            errors_by_code: [0; 128],
            batches: 0,
            batch_commands: 0,
            opcodes: [0; 256],
            latency: None,
            latency_count: 0,
            latency_sum: 0,
            latency_max: 0,
            latency_log2: [0; LATENCY_BUCKETS],
        }
    }
}

impl QueueCounters {
    fn record_latency(&mut self, ns: u64) {
        let h = self.latency.get_or_insert_with(|| {
            Box::new(
                Histogram::new_with_bounds(1, LATENCY_HIGH_NS, 2)
                    .expect("constant histogram bounds are valid"),
            )
        });
        h.saturating_record(ns.max(1));
        self.latency_count += 1;
        self.latency_sum += u128::from(ns);
        self.latency_max = self.latency_max.max(ns);
        let b = (64 - ns.leading_zeros() as usize).min(LATENCY_BUCKETS - 1);
        self.latency_log2[b] += 1;
    }

    fn reset(&mut self) {
        let latency = self.latency.take().map(|mut h| {
            h.reset();
            h
        });
        *self = Self {
            latency,
            ..Self::default()
        };
    }
}

#[derive(Clone, Debug)]
struct QueueStats {
    id: u32,
    vintf: Option<u32>,
    lvcmdq: Option<u32>,
    log2size: Option<u8>,
    enabled: bool,
    hw_backed: bool,
    errored: bool,
    prod: u64,
    cons: u64,
    last_error: Option<QueueError>,
    tracker: BatchTracker,
    recent: VecDeque<RawCommand>,
    rate_sec: u64,
    rate_cur: u64,
    rate_history: VecDeque<u64>,
    /// Commands seen since the last consumption pass ended: the faulting command of an error
    /// can only be one of these (an index repeats every two laps of the ring).
    pass_commands: u32,
    c: QueueCounters,
}

impl QueueStats {
    fn new(id: u32) -> Self {
        Self {
            id,
            vintf: None,
            lvcmdq: None,
            log2size: None,
            enabled: false,
            hw_backed: false,
            errored: false,
            prod: 0,
            cons: 0,
            last_error: None,
            tracker: BatchTracker::default(),
            recent: VecDeque::with_capacity(RECENT_CAP),
            rate_sec: 0,
            rate_cur: 0,
            rate_history: VecDeque::with_capacity(RATE_HISTORY_CAP),
            pass_commands: 0,
            c: QueueCounters::default(),
        }
    }

    fn state(&self) -> QueueState {
        match (self.errored, self.enabled, self.hw_backed) {
            (true, _, _) => QueueState::Error,
            (false, false, _) => QueueState::Disabled,
            (false, true, true) => QueueState::Hardware,
            (false, true, false) => QueueState::Emulated,
        }
    }

    /// Close per-second rate buckets up to second `sec` (since the collector's start).
    fn advance_rate(&mut self, sec: u64) {
        if sec <= self.rate_sec {
            return;
        }
        let cur = std::mem::take(&mut self.rate_cur);
        push_bounded(&mut self.rate_history, cur, RATE_HISTORY_CAP);
        let gap = (sec - self.rate_sec - 1).min(RATE_HISTORY_CAP as u64);
        for _ in 0..gap {
            push_bounded(&mut self.rate_history, 0, RATE_HISTORY_CAP);
        }
        self.rate_sec = sec;
    }

    /// Ring mask for PROD/CONS (index and wrap bit) once the size is known.
    fn index_mask(&self) -> Option<u64> {
        self.log2size
            .map(|n| (1u64 << (u32::from(n.min(31)) + 1)) - 1)
    }

    fn occupancy(&self) -> f64 {
        match (self.log2size, self.index_mask()) {
            (Some(n), Some(mask)) => {
                let used = self.prod.wrapping_sub(self.cons) & mask;
                (used as f64 / (1u64 << n.min(31)) as f64).clamp(0.0, 1.0)
            }
            _ => 0.0,
        }
    }

    fn set_log2size(&mut self, n: u64) {
        // Architected maximum is 19; anything wider than the 20-bit RD/WR fields is garbage.
        if n <= 31 {
            self.log2size = Some(n as u8);
        }
    }
}

fn push_bounded<T>(q: &mut VecDeque<T>, v: T, cap: usize) {
    if q.len() == cap {
        q.pop_front();
    }
    q.push_back(v);
}

#[derive(Clone, Debug, Default)]
struct Totals {
    events: u64,
    drops: u64,
    /// (ioctl cmd, count, errors), at most IOCTL_CAP entries.
    ioctls: Vec<(u32, u64, u64)>,
    ioctl_other: (u64, u64),
}

/// Turns events into [`Summary`]s: correlation (doorbell → consumption → CONS), per-queue
/// statistics, a bounded live log. Memory is bounded whatever the input.
#[derive(Debug)]
pub struct Collector {
    cfg: CollectorConfig,
    start_ns: Option<u64>,
    period_start_ns: Option<u64>,
    last_ts: u64,
    intervals_done: u64,
    main: Option<Box<QueueStats>>,
    queues: Vec<Option<Box<QueueStats>>>,
    t: Totals,
    probes: Vec<ProbeStatus>,
    vintfs: Vec<VintfSummary>,
    handover: Option<Handover>,
    log: VecDeque<Event>,
    /// Error events pushed out of `log`, oldest first.
    old_errors: VecDeque<Event>,
    /// `smmu_queue_from_mmio`: (PROD of the open batch, commands still to fetch).
    smmu_batch: Option<(u64, u64)>,
}

impl Collector {
    pub fn new(cfg: CollectorConfig) -> Self {
        let start_ns = cfg.start_ns;
        Self {
            cfg,
            start_ns,
            period_start_ns: start_ns,
            last_ts: start_ns.unwrap_or(0),
            intervals_done: 0,
            main: None,
            queues: Vec::new(),
            t: Totals::default(),
            probes: Vec::new(),
            vintfs: Vec::new(),
            handover: None,
            log: VecDeque::with_capacity(LOG_CAP - LOG_ERRORS_KEPT),
            old_errors: VecDeque::with_capacity(LOG_ERRORS_KEPT),
            smmu_batch: None,
        }
    }

    pub fn config(&self) -> &CollectorConfig {
        &self.cfg
    }

    /// Timestamp of the newest event ingested (or the configured start).
    pub fn last_ts(&self) -> u64 {
        self.last_ts
    }

    pub fn set_probes(&mut self, probes: Vec<ProbeStatus>) {
        self.probes = probes;
    }

    /// Count `n` events lost outside the collector (ring buffer, channels).
    pub fn add_drops(&mut self, n: u64) {
        self.t.drops = self.t.drops.saturating_add(n);
    }

    pub fn set_vintfs(&mut self, vintfs: Vec<VintfSummary>) {
        self.vintfs = vintfs;
    }

    pub fn set_handover(&mut self, h: Handover) {
        self.handover = Some(h);
    }

    pub fn add_note(&mut self, note: impl Into<String>) {
        self.cfg.notes.push(note.into());
    }

    /// What the VMM knows about a queue (VINTF mapping, ring size). Ignored for ids the
    /// collector does not track.
    pub fn set_queue_meta(
        &mut self,
        queue: u32,
        vintf: Option<u32>,
        lvcmdq: Option<u32>,
        log2size: Option<u8>,
    ) {
        if let Some(q) = self.queue_mut(queue) {
            q.vintf = vintf;
            q.lvcmdq = lvcmdq;
            if let Some(n) = log2size {
                q.set_log2size(n.into());
            }
        }
    }

    /// Start a new `--interval` period at `now_ns`: counters, rates and latency restart;
    /// queue state, last errors, recent commands and rate history carry over.
    pub fn reset_interval(&mut self, now_ns: u64) {
        self.intervals_done += 1;
        self.period_start_ns = Some(now_ns);
        self.t = Totals::default();
        for q in self.main.iter_mut().chain(self.queues.iter_mut().flatten()) {
            q.c.reset();
        }
    }

    /// Decode one eBPF ring-buffer record and ingest it; a record that does not decode counts
    /// as one dropped event.
    pub fn ingest_raw(&mut self, record: &[u8]) -> Result<(), crate::probe_abi::DecodeError> {
        match crate::probe_abi::decode(record) {
            Ok(ev) => {
                self.ingest(&ev);
                Ok(())
            }
            Err(e) => {
                self.add_drops(1);
                Err(e)
            }
        }
    }

    /// Track queue `id`, creating its slot on first sight; `None` (and one overflow drop for
    /// the caller to count) for ids beyond [`MAX_QUEUES`].
    fn queue_mut(&mut self, id: u32) -> Option<&mut QueueStats> {
        if id == MAIN_CMDQ {
            return Some(
                self.main
                    .get_or_insert_with(|| Box::new(QueueStats::new(id))),
            );
        }
        if id >= MAX_QUEUES {
            return None;
        }
        let i = id as usize;
        if self.queues.len() <= i {
            self.queues.resize_with(i + 1, || None);
        }
        Some(self.queues[i].get_or_insert_with(|| Box::new(QueueStats::new(id))))
    }

    pub fn ingest(&mut self, ev: &Event) {
        if let Payload::Lost { count } = ev.payload {
            self.add_drops(count);
            self.log_event(ev);
            return;
        }
        let start = *self.start_ns.get_or_insert(ev.ts_ns);
        self.period_start_ns.get_or_insert(ev.ts_ns);
        self.last_ts = self.last_ts.max(ev.ts_ns);
        self.t.events += 1;
        let sec = ev.ts_ns.saturating_sub(start) / 1_000_000_000;
        match ev.payload {
            Payload::Command {
                queue,
                index,
                w0,
                w1,
            } => {
                let Some(q) = self.queue_mut(queue) else {
                    self.t.drops = self.t.drops.saturating_add(1);
                    return;
                };
                q.enabled = true;
                q.advance_rate(sec);
                q.rate_cur += 1;
                q.c.commands += 1;
                let opcode = w0 as u8;
                q.c.opcodes[opcode as usize] += 1;
                if opcode == op::CMD_SYNC {
                    q.c.syncs += 1;
                }
                q.tracker.command();
                q.pass_commands = q.pass_commands.saturating_add(1);
                push_bounded(
                    &mut q.recent,
                    RawCommand {
                        ts_ns: ev.ts_ns,
                        index,
                        w0,
                        w1,
                    },
                    RECENT_CAP,
                );
                if queue == MAIN_CMDQ && self.cfg.smmu_queue_from_mmio {
                    if let Some((prod, left)) = self.smmu_batch {
                        if left <= 1 {
                            self.smmu_batch = None;
                            if let Some(q) = self.main.as_deref_mut() {
                                Self::queue_op(q, ev.ts_ns, QueueOp::Consumed, prod, prod);
                            }
                        } else {
                            self.smmu_batch = Some((prod, left - 1));
                        }
                    }
                }
            }
            Payload::Queue {
                op: QueueOp::Handover,
                a,
                b,
                ..
            } => {
                self.handover = Some(Handover {
                    handovers: a,
                    view_mismatches: b & 0xffff_ffff,
                    commands_lost: b >> 32,
                });
            }
            Payload::Queue { queue, op, a, b } => {
                let Some(q) = self.queue_mut(queue) else {
                    self.t.drops = self.t.drops.saturating_add(1);
                    return;
                };
                q.advance_rate(sec);
                Self::queue_op(q, ev.ts_ns, op, a, b);
            }
            Payload::Ioctl { cmd, ret, .. } => {
                let err = u64::from(ret < 0);
                if let Some(e) = self.t.ioctls.iter_mut().find(|e| e.0 == cmd) {
                    e.1 += 1;
                    e.2 += err;
                } else if self.t.ioctls.len() < IOCTL_CAP {
                    self.t.ioctls.push((cmd, 1, err));
                } else {
                    self.t.ioctl_other.0 += 1;
                    self.t.ioctl_other.1 += err;
                }
            }
            Payload::Mmio {
                device,
                offset,
                value,
                write,
                ..
            } => self.mmio(ev.ts_ns, device, offset, value, write),
            Payload::KvmMmio { .. }
            | Payload::Mmap { .. }
            | Payload::KFunc { .. }
            | Payload::Iommu { .. }
            | Payload::Lost { .. } => {}
        }
        self.log_event(ev);
    }

    /// What trapped MMIO says about device state: VINTF configuration and SID tables, error
    /// maps, and the SMMU command queue's size (from its CMDQ_BASE write).
    fn mmio(&mut self, ts_ns: u64, device: Device, offset: u64, value: u64, write: bool) {
        use crate::regs::{RegRef, VintfReg};
        if device == Device::Smmu {
            // Page1 aliases page0 on the SMMU.
            let off = offset & 0xffff;
            if write && off == crate::regs::smmu::CMDQ_BASE {
                if let Some(q) = self.queue_mut(MAIN_CMDQ) {
                    q.set_log2size(value & 0x1f);
                }
            }
            if self.cfg.smmu_queue_from_mmio && write && off == crate::regs::smmu::CMDQ_PROD {
                let prod = value & 0xf_ffff;
                let Some(q) = self.queue_mut(MAIN_CMDQ) else {
                    return;
                };
                let cons = q.prod; // the previous batch ended at its PROD
                let mask = q.index_mask().unwrap_or(0xf_ffff);
                let n = (prod.wrapping_sub(cons)) & mask;
                let (p, c) = (prod & mask, cons & mask);
                Self::queue_op(q, ts_ns, QueueOp::Doorbell, p, c);
                self.smmu_batch = (n > 0).then_some((p, n));
            }
            if self.cfg.smmu_queue_from_mmio && !write && off == crate::regs::smmu::CMDQ_CONS {
                if let Some(q) = self.queue_mut(MAIN_CMDQ) {
                    q.cons = value & 0xf_ffff;
                }
            }
            return;
        }
        let Some(RegRef::Vintf { vintf, reg }) = crate::regs::decode(offset) else {
            return;
        };
        let v = vintf as usize;
        if v >= MAX_VINTFS_TRACKED {
            return;
        }
        if self.vintfs.len() <= v {
            self.vintfs.resize_with(v + 1, VintfSummary::default);
            for (i, x) in self.vintfs.iter_mut().enumerate() {
                x.index = i as u32;
            }
        }
        let vs = &mut self.vintfs[v];
        let value32 = value as u32;
        match reg {
            VintfReg::Config => {
                vs.vmid = (value32 >> 1) as u16;
                if write {
                    vs.enabled = value32 & 1 != 0;
                }
                // What the guest reads back is what the VMM lets it see (HYP_OWN masked).
                vs.hyp_own = value32 & (1 << 17) != 0;
            }
            VintfReg::Status if !write => vs.enabled = value32 & 1 != 0,
            VintfReg::SidMatch(s) if write => {
                vs.sids.retain(|e| e.0 != s as u32);
                if value32 & 1 != 0 {
                    vs.sids.push((s as u32, (value32 >> 1) & 0xf_ffff, 0));
                    vs.sids.sort_unstable();
                }
            }
            VintfReg::SidReplace(s) if write => {
                if let Some(e) = vs.sids.iter_mut().find(|e| e.0 == s as u32) {
                    e.2 = value32 & 0xf_ffff;
                }
            }
            VintfReg::LvcmdqErrMap(w) if !write => {
                let word = (w / 2) as usize;
                let shift = 32 * (w % 2) as u32;
                if let Some(m) = vs.lvcmdq_err_map.get_mut(word) {
                    *m = (*m & !(0xffff_ffffu64 << shift)) | ((value & 0xffff_ffff) << shift);
                    if w % 2 == 0 && value >> 32 != 0 {
                        // A 64-bit read covers the next word too.
                        *m = (*m & 0xffff_ffff) | (value & !0xffff_ffff);
                    }
                }
            }
            _ => {}
        }
    }

    /// Keep `ev` for the live log. Commands dominate the stream and would push an error out
    /// within microseconds, so errors leaving the log are kept aside (bounded).
    fn log_event(&mut self, ev: &Event) {
        if self.log.len() == LOG_CAP - LOG_ERRORS_KEPT {
            if let Some(old) = self.log.pop_front() {
                if is_error_event(&old) {
                    push_bounded(&mut self.old_errors, old, LOG_ERRORS_KEPT);
                }
            }
        }
        self.log.push_back(*ev);
    }

    fn queue_op(q: &mut QueueStats, ts_ns: u64, op: QueueOp, a: u64, b: u64) {
        match op {
            // A guest may write PROD while the queue is disabled; only consumption proves the
            // queue is enabled (for traces that start after the Enable).
            QueueOp::Doorbell => {
                q.prod = a;
                q.cons = b;
                q.tracker.doorbell(ts_ns, a, b);
            }
            QueueOp::Consumed => {
                q.pass_commands = 0;
                q.enabled = true;
                q.cons = a;
                q.prod = b;
                let c = &mut q.c;
                if let Some(batch) = q.tracker.consumed(ts_ns, a, b, |ns| c.record_latency(ns)) {
                    c.batches += 1;
                    c.batch_commands += batch.commands;
                }
            }
            QueueOp::Error => {
                q.errored = true;
                q.cons = a;
                let code = b & 0x7f;
                q.c.errors += 1;
                q.c.errors_by_code[code as usize] += 1;
                let index = a as u32;
                let mask = q.index_mask().unwrap_or(u64::MAX) as u32;
                let pass = q.recent.iter().rev().take(q.pass_commands as usize);
                let command = pass
                    .clone()
                    .find(|c| c.index == index)
                    .or_else(|| pass.clone().find(|c| c.index & mask == index & mask))
                    .map(|c| [c.w0, c.w1]);
                q.last_error = Some(QueueError {
                    ts_ns,
                    code: code as u8,
                    name: cerror_name(code),
                    index,
                    command,
                    acknowledged: false,
                });
            }
            QueueOp::ErrorAck => {
                q.errored = false;
                if let Some(e) = q.last_error.as_mut() {
                    e.acknowledged = true;
                }
            }
            QueueOp::HwAlloc => {
                if b == 0 {
                    q.hw_backed = true;
                    q.set_log2size(a);
                }
            }
            QueueOp::HwFree => q.hw_backed = false,
            QueueOp::Enable => {
                q.enabled = a != 0;
                q.set_log2size(b);
                if !q.enabled {
                    q.errored = false;
                    q.tracker.clear();
                }
            }
            QueueOp::Handover => {}
            QueueOp::Map => {
                // The queue belongs to (VINTF, LVCMDQ) while mapped; keep the last mapping
                // when it is unmapped so the row still says where it came from.
                if (b >> 16) & 1 != 0 {
                    q.vintf = Some(a as u32);
                    q.lvcmdq = Some((b & 0xffff) as u32);
                }
            }
        }
    }

    fn queue_summary(&self, q: &QueueStats, elapsed_s: f64, now_sec: u64) -> QueueSummary {
        let c = &q.c;
        let rate = |n: u64| {
            if elapsed_s > 0.0 {
                n as f64 / elapsed_s
            } else {
                0.0
            }
        };
        let mut opcodes = BTreeMap::new();
        for (opc, &n) in c.opcodes.iter().enumerate() {
            if n > 0 {
                opcodes.insert(command::command_name(opc as u64).into_owned(), n);
            }
        }
        let mut errors_by_code = BTreeMap::new();
        for (code, &n) in c.errors_by_code.iter().enumerate() {
            if n > 0 {
                errors_by_code.insert(cerror_name(code as u64), n);
            }
        }
        let batch_latency_ns = match &c.latency {
            Some(h) if c.latency_count > 0 => Latency {
                count: c.latency_count,
                p50: h.value_at_quantile(0.5).min(c.latency_max),
                p99: h.value_at_quantile(0.99).min(c.latency_max),
                max: c.latency_max,
                mean: c.latency_sum as f64 / c.latency_count as f64,
            },
            _ => Latency::default(),
        };
        let latency_histogram = match (
            c.latency_log2.iter().position(|&n| n > 0),
            c.latency_log2.iter().rposition(|&n| n > 0),
        ) {
            (Some(lo), Some(hi)) => (lo..=hi).map(|b| (1u64 << b, c.latency_log2[b])).collect(),
            _ => Vec::new(),
        };
        // Completed seconds only, padded with idle seconds up to `now`.
        let mut rate_history: Vec<u64> = q.rate_history.iter().copied().collect();
        if now_sec > q.rate_sec {
            rate_history.push(q.rate_cur);
            let gap = (now_sec - q.rate_sec - 1).min(RATE_HISTORY_CAP as u64);
            rate_history.extend(std::iter::repeat_n(0, gap as usize));
        }
        if rate_history.len() > RATE_HISTORY_CAP {
            rate_history.drain(..rate_history.len() - RATE_HISTORY_CAP);
        }
        let main = q.id == MAIN_CMDQ;
        QueueSummary {
            name: queue_name(q.id),
            global_id: (!main).then_some(q.id),
            vintf: if main { None } else { q.vintf },
            lvcmdq: if main { None } else { q.lvcmdq },
            state: q.state(),
            log2size: q.log2size.unwrap_or(0),
            prod: q.prod as u32,
            cons: q.cons as u32,
            occupancy: q.occupancy(),
            commands: c.commands,
            syncs: c.syncs,
            errors: c.errors,
            errors_by_code,
            batches: c.batches,
            commands_per_s: rate(c.commands),
            syncs_per_s: rate(c.syncs),
            mean_batch_size: if c.batches > 0 {
                c.batch_commands as f64 / c.batches as f64
            } else {
                0.0
            },
            batch_latency_ns,
            opcodes,
            last_error: q.last_error.clone(),
            rate_history,
            latency_histogram,
            recent: q
                .recent
                .iter()
                .map(|r| RecentCommand {
                    ts_ns: r.ts_ns,
                    index: r.index,
                    w0: r.w0,
                    w1: r.w1,
                    text: describe(r.w0, r.w1),
                })
                .collect(),
        }
    }

    /// Everything a view needs, as of `now_ns` (for replay: the last event's timestamp).
    pub fn snapshot(&self, now_ns: u64) -> Summary {
        let period_start = self.period_start_ns.unwrap_or(now_ns);
        let elapsed_s = now_ns.saturating_sub(period_start) as f64 / 1e9;
        let now_sec = now_ns.saturating_sub(self.start_ns.unwrap_or(now_ns)) / 1_000_000_000;
        let queues = self
            .main
            .iter()
            .chain(self.queues.iter().flatten())
            .map(|q| self.queue_summary(q, elapsed_s, now_sec))
            .collect();
        let mut ioctls = BTreeMap::new();
        for &(cmd, n, e) in &self.t.ioctls {
            let name = match crate::event::iommufd_ioctl_name(cmd) {
                Some(n) => n.to_string(),
                None => format!("IOCTL({cmd:#x})"),
            };
            let slot = ioctls.entry(name).or_insert((0, 0));
            slot.0 += n;
            slot.1 += e;
        }
        if self.t.ioctl_other.0 > 0 {
            ioctls.insert("OTHER".to_string(), self.t.ioctl_other);
        }
        Summary {
            source: self.cfg.source,
            target: self.cfg.target.clone(),
            elapsed_s,
            events: self.t.events,
            events_per_s: if elapsed_s > 0.0 {
                self.t.events as f64 / elapsed_s
            } else {
                0.0
            },
            drops: self.t.drops,
            probes: self.probes.clone(),
            queues,
            vintfs: self.vintfs.clone(),
            ioctls,
            handover: self.handover.clone(),
            interval: (self.cfg.intervals || self.intervals_done > 0)
                .then_some(self.intervals_done + 1),
            log: self
                .old_errors
                .iter()
                .chain(self.log.iter())
                .map(|e| self.log_line(e))
                .collect(),
            notes: self.cfg.notes.clone(),
        }
    }

    /// One readable log line for an event.
    pub fn log_line(&self, ev: &Event) -> LogLine {
        let (kind, text) = render(ev, self.cfg.reg_name);
        let is_error = is_error_event(ev);
        LogLine {
            ts_ns: ev.ts_ns,
            pid: ev.pid,
            kind: kind.to_string(),
            text,
            is_error,
        }
    }
}

/// Whether an event's log line is an error (kept longer in the live log).
fn is_error_event(ev: &Event) -> bool {
    match ev.payload {
        // A handover report is an error when it counts lost commands or view mismatches.
        Payload::Queue { op, b, .. } => {
            op == QueueOp::Error || (matches!(op, QueueOp::HwAlloc | QueueOp::Handover) && b != 0)
        }
        Payload::Ioctl { ret, .. } | Payload::Mmap { ret, .. } => ret < 0,
        Payload::Lost { .. } => true,
        Payload::Iommu { op, .. } => op == crate::event::IommuOp::IoPageFault,
        _ => false,
    }
}

fn hex_sized(v: u64, size: u8) -> String {
    match size {
        1 => format!("{v:#04x}"),
        2 => format!("{v:#06x}"),
        8 => format!("{v:#018x}"),
        _ => format!("{v:#010x}"),
    }
}

/// (kind, text) of a log line.
fn render(ev: &Event, reg_name: Option<RegNameFn>) -> (&'static str, String) {
    match ev.payload {
        Payload::Mmio {
            device,
            offset,
            value,
            size,
            write,
        } => {
            let dev = match device {
                Device::Cmdqv => "cmdqv",
                Device::Smmu => "smmu",
            };
            let reg = reg_name
                .and_then(|f| f(device, offset))
                .unwrap_or_else(|| format!("{dev}+{offset:#x}"));
            let rw = if write { "W" } else { "R" };
            ("mmio", format!("{rw} {reg} = {}", hex_sized(value, size)))
        }
        Payload::KvmMmio {
            kind,
            len,
            gpa,
            value,
        } => {
            let k = match kind {
                0 => "read-unsatisfied",
                1 => "read",
                2 => "write",
                _ => "?",
            };
            (
                "kvm",
                format!("kvm_mmio {k} gpa={gpa:#x} len={len} val={value:#x}"),
            )
        }
        Payload::Command {
            queue,
            index,
            w0,
            w1,
        } => (
            "cmd",
            format!("{} [{index:#x}] {}", queue_name(queue), describe(w0, w1)),
        ),
        Payload::Queue { queue, op, a, b } => {
            let q = queue_name(queue);
            match op {
                QueueOp::Doorbell => ("queue", format!("{q} doorbell PROD={a:#x} CONS={b:#x}")),
                QueueOp::Consumed => ("queue", format!("{q} consumed CONS={a:#x} PROD={b:#x}")),
                QueueOp::Error => (
                    "error",
                    format!("{q} stopped: {} at CONS={a:#x}", cerror_name(b & 0x7f)),
                ),
                QueueOp::ErrorAck => ("queue", format!("{q} error acknowledged GERRORN={a:#x}")),
                QueueOp::HwAlloc if b == 0 => {
                    ("queue", format!("{q} host queue allocated log2size={a}"))
                }
                QueueOp::HwAlloc => (
                    "error",
                    format!(
                        "{q} host queue allocation failed: {}",
                        crate::event::errno_name(b as i64)
                    ),
                ),
                QueueOp::HwFree => ("queue", format!("{q} host queue freed")),
                QueueOp::Enable if a != 0 => ("queue", format!("{q} enabled log2size={b}")),
                QueueOp::Enable => ("queue", format!("{q} disabled")),
                QueueOp::Handover => (
                    "queue",
                    format!(
                        "passthrough: {a} handovers, {} commands lost, {} view mismatches",
                        b >> 32,
                        b & 0xffff_ffff
                    ),
                ),
                QueueOp::Map => (
                    "queue",
                    format!(
                        "{q} {} VINTF{a}.LVCMDQ{}",
                        if (b >> 16) & 1 != 0 {
                            "mapped to"
                        } else {
                            "unmapped from"
                        },
                        b & 0xffff
                    ),
                ),
            }
        }
        Payload::Ioctl {
            fd,
            cmd,
            ret,
            duration_ns,
            ..
        } => {
            let name = match crate::event::iommufd_ioctl_name(cmd) {
                Some(n) => n.to_string(),
                None => format!("ioctl({cmd:#x})"),
            };
            let res = if ret < 0 {
                crate::event::errno_name(ret.saturating_neg()).to_string()
            } else {
                ret.to_string()
            };
            (
                "ioctl",
                format!(
                    "{name} fd={fd} -> {res} ({})",
                    format_duration_ns(duration_ns)
                ),
            )
        }
        Payload::Mmap {
            fd,
            addr,
            len,
            offset,
            ret,
            map,
        } => {
            if map {
                let res = if ret < 0 {
                    crate::event::errno_name(ret.saturating_neg()).to_string()
                } else {
                    format!("{ret:#x}")
                };
                (
                    "mmap",
                    format!("mmap fd={fd} len={len:#x} offset={offset:#x} -> {res}"),
                )
            } else {
                (
                    "mmap",
                    format!("munmap addr={addr:#x} len={len:#x} -> {ret}"),
                )
            }
        }
        Payload::KFunc { func, ret, args } => {
            let dir = if ret { "return" } else { "entry" };
            ("kfunc", format!("kfunc#{func} {dir} args={args:x?}"))
        }
        Payload::Iommu {
            op,
            iova,
            paddr,
            size,
            unmapped,
            flags,
            device,
        } => {
            let dev = crate::event::iommu_device_name(&device);
            match op {
                crate::event::IommuOp::Map => (
                    "iommu",
                    format!("iommu map iova={iova:#x} -> paddr={paddr:#x} size={size:#x}"),
                ),
                crate::event::IommuOp::Unmap => (
                    "iommu",
                    format!("iommu unmap iova={iova:#x} size={size:#x} unmapped={unmapped:#x}"),
                ),
                crate::event::IommuOp::IoPageFault => (
                    "error",
                    format!("iommu page fault {dev} iova={iova:#x} flags={flags:#x}"),
                ),
                crate::event::IommuOp::Attach => {
                    ("iommu", format!("iommu attach {dev} to a domain"))
                }
            }
        }
        Payload::Lost { count } => ("lost", format!("{count} events lost")),
    }
}
