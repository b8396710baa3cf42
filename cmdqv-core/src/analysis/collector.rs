//! The collector: correlation (guest doorbell → consumption → CONS) and aggregation with
//! bounded memory, turning events into [`Summary`]s.
//!
//! Hot-path rule: `ingest` never allocates per event once a queue has been seen. Names, text
//! and maps keyed by strings are built only in `snapshot` (10–30 Hz), from fixed arrays and
//! rings of raw events.

use std::collections::{BTreeMap, VecDeque};

use crate::analysis::host_queues::HostQueues;
use crate::analysis::phases::ThreadEntries;
use crate::analysis::queue_stats::{QueueSamples, QueueStats, push_bounded};
use crate::analysis::render::{RegNameFn, ioctl_name, is_error_event, log_line};
use crate::analysis::summary::{Handover, LogLine, ProbeStatus, Summary, VintfSummary};
use crate::analysis::vintf::track_vintf_mmio;
use crate::event::{Device, Event, MAIN_CMDQ, Payload, QueueEvent, Source};
use crate::probe_abi::{self, DecodeError};
use crate::regs::{
    self, Aperture, PAGE_SIZE, Page0Reg, RegRef, VcmdqReg, cons_indx, prod_indx, smmu,
};

/// Highest global VCMDQ index the collector tracks; events for larger ids (other than
/// [`MAIN_CMDQ`]) are counted as collector overflow drops. Ids come from the traced VMM, which
/// takes them from the guest, so they must never key an unbounded map.
pub const MAX_QUEUES: u32 = 256;
/// Live log lines kept (all kinds, errors included).
pub const LOG_CAP: usize = 1000;
/// Of those, lines kept for errors that the flood of commands pushed out of the live log, so a
/// queue error or a failed ioctl stays visible.
pub const LOG_ERRORS_KEPT: usize = 100;
/// Lines of the process's own log stream kept for the live log (`kind` `log`).
pub const LOG_TEXTS_KEPT: usize = 100;
/// Distinct ioctl command numbers tracked; the rest are summed under `OTHER`.
pub const IOCTL_CAP: usize = 64;

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

#[derive(Clone, Debug, Default)]
struct Totals {
    events: u64,
    drops: u64,
    /// (ioctl cmd, count, errors), at most IOCTL_CAP entries.
    ioctls: Vec<(u32, u64, u64)>,
    ioctl_other: (u64, u64),
}

impl Totals {
    fn ioctl(&mut self, cmd: u32, failed: bool) {
        let err = u64::from(failed);
        if let Some(e) = self.ioctls.iter_mut().find(|e| e.0 == cmd) {
            e.1 += 1;
            e.2 += err;
        } else if self.ioctls.len() < IOCTL_CAP {
            self.ioctls.push((cmd, 1, err));
        } else {
            self.ioctl_other.0 += 1;
            self.ioctl_other.1 += err;
        }
    }

    /// Ioctl name → (count, errors).
    fn ioctl_names(&self) -> BTreeMap<String, (u64, u64)> {
        let mut out = BTreeMap::new();
        for &(cmd, n, e) in &self.ioctls {
            let slot = out.entry(ioctl_name(cmd, "IOCTL")).or_insert((0, 0));
            slot.0 += n;
            slot.1 += e;
        }
        if self.ioctl_other.0 > 0 {
            out.insert("OTHER".to_string(), self.ioctl_other);
        }
        out
    }
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
    /// A host kernel's own command queues (`cmdqv host`), keyed by kernel address.
    host: HostQueues,
    t: Totals,
    probes: Vec<ProbeStatus>,
    vintfs: Vec<VintfSummary>,
    handover: Option<Handover>,
    log: VecDeque<Event>,
    /// Error events pushed out of `log`, oldest first.
    old_errors: VecDeque<Event>,
    /// The process's own log lines (diagnostics, the probes' aya-log messages), newest last.
    texts: VecDeque<LogLine>,
    /// `smmu_queue_from_mmio`: (PROD of the open batch, commands still to fetch).
    smmu_batch: Option<(u64, u64)>,
    /// Each thread's last PROD write and KVM exit, which start a doorbell's phases.
    threads: ThreadEntries,
}

/// A doorbell register: the SMMU's CMDQ_PROD or a VCMDQ's PROD_INDX (global or VINTF page).
fn is_prod_register(device: Device, offset: u64) -> bool {
    match device {
        Device::Smmu => offset & (PAGE_SIZE - 1) == smmu::CMDQ_PROD,
        Device::Cmdqv => matches!(
            regs::decode(offset),
            Some(RegRef::Vcmdq {
                reg: VcmdqReg::Page0(Page0Reg::ProdIndx),
                ..
            })
        ),
    }
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
            host: HostQueues::default(),
            t: Totals::default(),
            probes: Vec::new(),
            vintfs: Vec::new(),
            handover: None,
            log: VecDeque::with_capacity(LOG_CAP - LOG_ERRORS_KEPT),
            old_errors: VecDeque::with_capacity(LOG_ERRORS_KEPT),
            texts: VecDeque::new(),
            smmu_batch: None,
            threads: ThreadEntries::default(),
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

    /// A line of the process's own log stream, shown in the live log among the events (kind
    /// `log`); the oldest go beyond [`LOG_TEXTS_KEPT`].
    pub fn add_log_text(&mut self, ts_ns: u64, text: impl Into<String>) {
        let text = text.into();
        if self.texts.len() == LOG_TEXTS_KEPT {
            self.texts.pop_front();
        }
        self.texts.push_back(LogLine {
            ts_ns,
            pid: std::process::id(),
            kind: "log".into(),
            is_error: text.contains("ERROR"),
            text,
        });
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
            q.reset_counters();
        }
        self.host.reset_counters();
    }

    /// Decode one eBPF ring-buffer record and ingest it: the path every live source takes.
    /// Returns the record cut to its kind's length (a ring buffer may pad), which is what a
    /// recorder writes ([`TraceWriter::write_record`](crate::record::TraceWriter::write_record));
    /// a record that does not decode counts as one dropped event.
    pub fn ingest_raw<'r>(&mut self, record: &'r [u8]) -> Result<&'r [u8], DecodeError> {
        match probe_abi::decode_trimmed(record) {
            Ok((ev, record)) => {
                self.ingest(&ev);
                Ok(record)
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
        let tracked = match ev.payload {
            Payload::Command {
                queue,
                index,
                w0,
                w1,
            } => self.command(ev.ts_ns, sec, queue, index, [w0, w1]),
            Payload::HostCommand(c) => self.host.command(ev.ts_ns, sec, &c),
            Payload::HostBatch(b) => {
                // Commands the probes could not capture are lost events like any other.
                self.add_drops(b.missed.into());
                self.host.batch(sec, &b)
            }
            Payload::Queue {
                event:
                    QueueEvent::Handover {
                        handovers,
                        view_mismatches,
                        commands_lost,
                    },
                ..
            } => {
                self.handover = Some(Handover {
                    handovers,
                    view_mismatches: view_mismatches.into(),
                    commands_lost: commands_lost.into(),
                });
                true
            }
            Payload::Queue { queue, event } => self.queue_event(ev, sec, queue, &event),
            Payload::Ioctl {
                cmd,
                ret,
                duration_ns,
                ..
            } => {
                self.t.ioctl(cmd, ret < 0);
                self.ioctl_in_pass(ev.tid, duration_ns);
                true
            }
            Payload::Mmio {
                device,
                offset,
                value,
                write,
                ..
            } => {
                self.mmio(ev, device, offset, value, write);
                true
            }
            Payload::KvmMmio { kind: 2, .. } => {
                self.threads.kvm_write(ev.tid, ev.ts_ns);
                true
            }
            _ => true,
        };
        if tracked {
            self.log_event(ev);
        } else {
            self.t.drops = self.t.drops.saturating_add(1);
        }
    }

    /// A command taken from `queue`; false when the queue id is not tracked.
    #[inline]
    fn command(&mut self, ts_ns: u64, sec: u64, queue: u32, index: u32, w: [u64; 2]) -> bool {
        let Some(q) = self.queue_mut(queue) else {
            return false;
        };
        q.command(ts_ns, sec, index, w[0], w[1]);
        if queue == MAIN_CMDQ && self.cfg.smmu_queue_from_mmio {
            self.smmu_command_fetched(ts_ns);
        }
        true
    }

    /// A queue event; false when the queue id is not tracked.
    fn queue_event(&mut self, e: &Event, sec: u64, queue: u32, ev: &QueueEvent) -> bool {
        if queue != MAIN_CMDQ && queue >= MAX_QUEUES {
            return false;
        }
        let entry = match ev {
            QueueEvent::Doorbell { .. } => Some(self.threads.take(e.tid)),
            _ => None,
        };
        let Some(q) = self.queue_mut(queue) else {
            return false;
        };
        q.advance_rate(sec);
        match (*ev, entry) {
            (QueueEvent::Doorbell { prod, cons }, Some(entry)) => {
                q.doorbell(e.ts_ns, e.tid, entry, prod, cons)
            }
            _ => q.apply(e.ts_ns, ev),
        }
        true
    }

    /// An ioctl belongs to the pass open on its thread (the trapped path forwards invalidations
    /// to the host while the guest waits).
    fn ioctl_in_pass(&mut self, tid: u32, ns: u64) {
        let mut queues = self.main.iter_mut().chain(self.queues.iter_mut().flatten());
        queues.any(|q| q.ioctl(tid, ns));
    }

    /// The queue (already tracked) a CONS_INDX register of the CMDQV belongs to, by its global
    /// or VINTF-logical page.
    fn cons_register_queue(&mut self, offset: u64) -> Option<&mut QueueStats> {
        let Some(RegRef::Vcmdq {
            aperture,
            slot,
            reg: VcmdqReg::Page0(Page0Reg::ConsIndx),
        }) = regs::decode(offset)
        else {
            return None;
        };
        match aperture {
            // Only a queue already seen is timed: a register read alone does not make a row.
            Aperture::Global => self.queues.get_mut(usize::from(slot))?.as_deref_mut(),
            Aperture::Vintf(v) => self.queues.iter_mut().flatten().find_map(|q| {
                let mine = q.vintf == Some(v.into()) && q.lvcmdq == Some(slot.into());
                mine.then_some(&mut **q)
            }),
        }
    }

    /// `smmu_queue_from_mmio`: the last command fetch of a batch ends it.
    fn smmu_command_fetched(&mut self, ts_ns: u64) {
        let Some((prod, left)) = self.smmu_batch else {
            return;
        };
        if left > 1 {
            self.smmu_batch = Some((prod, left - 1));
            return;
        }
        self.smmu_batch = None;
        if let Some(q) = self.main.as_deref_mut() {
            q.consumed(ts_ns, prod, prod);
        }
    }

    /// What trapped MMIO says about device state: VINTF configuration and SID tables, error
    /// maps, the SMMU command queue's size (from its CMDQ_BASE write); and when the VMM entered
    /// (writes) and the guest saw CONS (reads), for the batch phases. Kept out of line: commands
    /// outnumber MMIO accesses many times over, and their path through `ingest` is the hot one.
    #[inline(never)]
    fn mmio(&mut self, e: &Event, device: Device, offset: u64, value: u64, write: bool) {
        let ts_ns = e.ts_ns;
        if write && is_prod_register(device, offset) {
            self.threads.mmio_write(e.tid, ts_ns);
        }
        match device {
            Device::Smmu => self.smmu_mmio(e, offset, value, write),
            Device::Cmdqv => {
                track_vintf_mmio(&mut self.vintfs, offset, value, write);
                if !write {
                    if let Some(q) = self.cons_register_queue(offset) {
                        q.cons_read(ts_ns, value);
                    }
                }
            }
        }
    }

    fn smmu_mmio(&mut self, e: &Event, offset: u64, value: u64, write: bool) {
        let ts_ns = e.ts_ns;
        // Page1 aliases page0 on the SMMU.
        let off = offset & (PAGE_SIZE - 1);
        let from_mmio = self.cfg.smmu_queue_from_mmio;
        match off {
            smmu::CMDQ_BASE if write => {
                if let Some(q) = self.queue_mut(MAIN_CMDQ) {
                    q.set_log2size(value & smmu::Q_BASE_LOG2SIZE_MASK);
                }
            }
            smmu::CMDQ_PROD if write && from_mmio => self.smmu_doorbell(e, value),
            smmu::CMDQ_CONS if !write && from_mmio => {
                if let Some(q) = self.queue_mut(MAIN_CMDQ) {
                    q.cons = value & u64::from(cons_indx::RD_MASK);
                    q.cons_read(ts_ns, value);
                }
            }
            // A read alone does not make the queue a row: only a queue already seen is timed.
            smmu::CMDQ_CONS if !write => {
                if let Some(q) = self.main.as_deref_mut() {
                    q.cons_read(ts_ns, value);
                }
            }
            _ => {}
        }
    }

    /// `smmu_queue_from_mmio`: a CMDQ_PROD write opens a batch of PROD - (previous PROD).
    fn smmu_doorbell(&mut self, e: &Event, value: u64) {
        let prod = value & u64::from(prod_indx::WR_MASK);
        let entry = self.threads.take(e.tid);
        let Some(q) = self.queue_mut(MAIN_CMDQ) else {
            return;
        };
        let cons = q.prod; // the previous batch ended at its PROD
        let mask = q.index_mask().unwrap_or(prod_indx::WR_MASK.into());
        let n = (prod.wrapping_sub(cons)) & mask;
        let (p, c) = (prod & mask, cons & mask);
        q.doorbell(e.ts_ns, e.tid, entry, p as u32, c as u32);
        self.smmu_batch = (n > 0).then_some((p, n));
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

    /// Everything a view needs, as of `now_ns` (for replay: the last event's timestamp).
    pub fn snapshot(&self, now_ns: u64) -> Summary {
        let period_start = self.period_start_ns.unwrap_or(now_ns);
        let elapsed_s = now_ns.saturating_sub(period_start) as f64 / 1e9;
        let now_sec = now_ns.saturating_sub(self.start_ns.unwrap_or(now_ns)) / 1_000_000_000;
        let queues = self
            .main
            .iter()
            .chain(self.queues.iter().flatten())
            .map(|q| q.summary(elapsed_s, now_sec))
            .chain(self.host.summaries(elapsed_s, now_sec))
            .collect();
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
            ioctls: self.t.ioctl_names(),
            handover: self.handover.clone(),
            interval: (self.cfg.intervals || self.intervals_done > 0)
                .then_some(self.intervals_done + 1),
            log: self.log_lines(),
            notes: self.cfg.notes.clone(),
            sim: None,
        }
    }

    /// The live log: events and the process's own lines, in time order.
    fn log_lines(&self) -> Vec<LogLine> {
        let mut lines: Vec<LogLine> = self
            .old_errors
            .iter()
            .chain(self.log.iter())
            .map(|e| self.log_line(e))
            .collect();
        if !self.texts.is_empty() {
            lines.extend(self.texts.iter().cloned());
            // Stable: events keep their order among equal timestamps.
            lines.sort_by_key(|l| l.ts_ns);
        }
        lines
    }

    /// Per tracked queue (the SMMU's own first, then VCMDQs by global index): its summary name
    /// and what `cmdqv diff` tests on it. Host kernel queues are not included.
    pub fn queue_samples(&self) -> Vec<(u32, QueueSamples)> {
        let queues = self.main.iter().chain(self.queues.iter().flatten());
        queues.map(|q| (q.id(), q.samples())).collect()
    }

    /// One readable log line for an event.
    pub fn log_line(&self, ev: &Event) -> LogLine {
        log_line(ev, self.cfg.reg_name)
    }
}
