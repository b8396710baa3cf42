//! One queue's state and statistics inside the collector: what its events did to it, and the
//! [`QueueSummary`] built from it at snapshot time.
//!
//! Hot-path rule: applying an event never allocates once the queue exists. Opcode and CERROR
//! counts are fixed arrays and recent commands a bounded ring of raw words; names and text are
//! built only in [`QueueStats::summary`] (10–30 Hz).

use std::collections::{BTreeMap, VecDeque};

use hdrhistogram::Histogram;

use crate::analysis::batch::BatchTracker;
use crate::analysis::phases::{Entry, PassTimes, PhaseHistograms, latency_histogram};
use crate::analysis::render::queue_name;
use crate::analysis::summary::{Latency, QueueError, QueueState, QueueSummary, RecentCommand};
use crate::command::{self, describe, op};
use crate::event::{ErrCode, MAIN_CMDQ, QueueEvent};

/// Recent commands kept per queue.
pub const RECENT_CAP: usize = 32;
/// Seconds of per-second command rate kept per queue.
pub const RATE_HISTORY_CAP: usize = 120;
/// Log2 latency buckets (the last one also holds everything above 2^39 ns).
pub const LATENCY_BUCKETS: usize = 40;
/// CERROR codes are 7 bits wide.
const CERROR_CODES: usize = 128;

#[derive(Copy, Clone, Debug)]
struct RawCommand {
    ts_ns: u64,
    index: u32,
    w0: u64,
    w1: u64,
}

/// Per-interval counters (reset by [`QueueCounters::reset`] at each `--interval`).
#[derive(Clone, Debug)]
struct QueueCounters {
    commands: u64,
    syncs: u64,
    errors: u64,
    errors_by_code: [u64; CERROR_CODES],
    batches: u64,
    batch_commands: u64,
    /// Sum of squared batch sizes (their variance, for `cmdqv diff`).
    batch_commands_sq: u128,
    opcodes: [u64; 256],
    latency: Option<Box<Histogram<u64>>>,
    latency_count: u64,
    latency_sum: u128,
    latency_max: u64,
    latency_log2: [u64; LATENCY_BUCKETS],
    phases: PhaseHistograms,
}

impl Default for QueueCounters {
    fn default() -> Self {
        Self {
            commands: 0,
            syncs: 0,
            errors: 0,
            errors_by_code: [0; CERROR_CODES],
            batches: 0,
            batch_commands: 0,
            batch_commands_sq: 0,
            opcodes: [0; 256],
            latency: None,
            latency_count: 0,
            latency_sum: 0,
            latency_max: 0,
            latency_log2: [0; LATENCY_BUCKETS],
            phases: PhaseHistograms::default(),
        }
    }
}

impl QueueCounters {
    fn record_latency(&mut self, ns: u64) {
        let h = self
            .latency
            .get_or_insert_with(|| Box::new(latency_histogram()));
        h.saturating_record(ns.max(1));
        self.latency_count += 1;
        self.latency_sum += u128::from(ns);
        self.latency_max = self.latency_max.max(ns);
        let b = (64 - ns.leading_zeros() as usize).min(LATENCY_BUCKETS - 1);
        self.latency_log2[b] += 1;
    }

    fn batch(&mut self, commands: u64) {
        self.batches += 1;
        self.batch_commands += commands;
        self.batch_commands_sq += u128::from(commands) * u128::from(commands);
    }

    fn reset(&mut self) {
        let latency = self.latency.take().map(|mut h| {
            h.reset();
            h
        });
        let mut phases = std::mem::take(&mut self.phases);
        phases.reset();
        *self = Self {
            latency,
            phases,
            ..Self::default()
        };
    }

    fn batch_latency(&self) -> Latency {
        match &self.latency {
            Some(h) if self.latency_count > 0 => Latency {
                count: self.latency_count,
                p50: h.value_at_quantile(0.5).min(self.latency_max),
                p99: h.value_at_quantile(0.99).min(self.latency_max),
                max: self.latency_max,
                mean: self.latency_sum as f64 / self.latency_count as f64,
            },
            _ => Latency::default(),
        }
    }

    fn latency_histogram(&self) -> Vec<(u64, u64)> {
        let b = &self.latency_log2;
        match (
            b.iter().position(|&n| n > 0),
            b.iter().rposition(|&n| n > 0),
        ) {
            (Some(lo), Some(hi)) => (lo..=hi).map(|i| (1u64 << i, b[i])).collect(),
            _ => Vec::new(),
        }
    }

    fn opcode_names(&self) -> BTreeMap<String, u64> {
        let counted = self.opcodes.iter().enumerate().filter(|&(_, &n)| n > 0);
        counted
            .map(|(opc, &n)| (command::command_name(opc as u64).into_owned(), n))
            .collect()
    }

    fn error_names(&self) -> BTreeMap<String, u64> {
        let counted = self
            .errors_by_code
            .iter()
            .enumerate()
            .filter(|&(_, &n)| n > 0);
        counted
            .map(|(code, &n)| (ErrCode::new(code as u64).name().into_owned(), n))
            .collect()
    }
}

/// One queue as the collector sees it.
#[derive(Clone, Debug)]
pub struct QueueStats {
    id: u32,
    pub vintf: Option<u32>,
    pub lvcmdq: Option<u32>,
    log2size: Option<u8>,
    pub enabled: bool,
    hw_backed: bool,
    errored: bool,
    pub prod: u64,
    pub cons: u64,
    last_error: Option<QueueError>,
    tracker: BatchTracker,
    recent: VecDeque<RawCommand>,
    rate_sec: u64,
    rate_cur: u64,
    rate_history: VecDeque<u64>,
    /// Commands seen since the last consumption pass ended: the faulting command of an error
    /// can only be one of these (an index repeats every two laps of the ring).
    pass_commands: u32,
    pass: PassTimes,
    c: QueueCounters,
}

/// What `cmdqv diff` tests on one queue: the batch latency and phase histograms, the batch sizes.
#[derive(Clone, Debug)]
pub struct QueueSamples {
    pub latency: Option<Histogram<u64>>,
    pub phases: PhaseHistograms,
    /// Batches, sum of their sizes, sum of their squared sizes.
    pub batch_sizes: (u64, u64, u128),
}

pub fn push_bounded<T>(q: &mut VecDeque<T>, v: T, cap: usize) {
    if q.len() == cap {
        q.pop_front();
    }
    q.push_back(v);
}

impl QueueStats {
    pub fn new(id: u32) -> Self {
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
            pass: PassTimes::default(),
            c: QueueCounters::default(),
        }
    }

    /// Global VCMDQ index, or [`MAIN_CMDQ`].
    pub fn id(&self) -> u32 {
        self.id
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
    #[inline]
    pub fn advance_rate(&mut self, sec: u64) {
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
    pub fn index_mask(&self) -> Option<u64> {
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

    pub fn set_log2size(&mut self, n: u64) {
        // Architected maximum is 19; anything wider than the 20-bit RD/WR fields is garbage.
        if n <= 31 {
            self.log2size = Some(n as u8);
        }
    }

    /// Start a new `--interval` period: counters restart, state carries over.
    pub fn reset_counters(&mut self) {
        self.c.reset();
    }

    /// A command taken from the queue at pointer `index`, in second `sec` of the run.
    #[inline(always)]
    pub fn command(&mut self, ts_ns: u64, sec: u64, index: u32, w0: u64, w1: u64) {
        self.enabled = true;
        self.advance_rate(sec);
        self.rate_cur += 1;
        self.c.commands += 1;
        let opcode = w0 as u8;
        self.c.opcodes[opcode as usize] += 1;
        if opcode == op::CMD_SYNC {
            self.c.syncs += 1;
        }
        self.tracker.command();
        self.pass.command(ts_ns);
        self.pass_commands = self.pass_commands.saturating_add(1);
        let raw = RawCommand {
            ts_ns,
            index,
            w0,
            w1,
        };
        push_bounded(&mut self.recent, raw, RECENT_CAP);
    }

    /// A doorbell rung by thread `tid`, after `entry` (its exit and VMM entry, when seen).
    pub fn doorbell(&mut self, ts_ns: u64, tid: u32, entry: Entry, prod: u32, cons: u32) {
        self.pass.doorbell(ts_ns, tid, entry);
        self.apply(ts_ns, &QueueEvent::Doorbell { prod, cons });
    }

    /// An ioctl on thread `tid` took `ns`: true when it fell inside this queue's open pass.
    pub fn ioctl(&mut self, tid: u32, ns: u64) -> bool {
        self.pass.ioctl(tid, ns)
    }

    /// The guest read this queue's CONS register.
    pub fn cons_read(&mut self, ts_ns: u64, value: u64) {
        let mask = self.index_mask().unwrap_or(u64::from(u32::MAX)) as u32;
        self.pass
            .cons_read(ts_ns, value as u32, mask, &mut self.c.phases);
    }

    /// The histograms and batch sizes `cmdqv diff` tests.
    pub fn samples(&self) -> QueueSamples {
        let c = &self.c;
        QueueSamples {
            latency: c
                .latency
                .as_deref()
                .filter(|_| c.latency_count > 0)
                .cloned(),
            phases: c.phases.clone(),
            batch_sizes: (c.batches, c.batch_commands, c.batch_commands_sq),
        }
    }

    /// What a queue event does to the queue ([`QueueEvent::Handover`] is VMM-wide: nothing).
    pub fn apply(&mut self, ts_ns: u64, ev: &QueueEvent) {
        match *ev {
            // A guest may write PROD while the queue is disabled; only consumption proves the
            // queue is enabled (for traces that start after the Enable).
            QueueEvent::Doorbell { prod, cons } => {
                self.prod = prod.into();
                self.cons = cons.into();
                self.tracker.doorbell(ts_ns, prod.into(), cons.into());
            }
            QueueEvent::Consumed { cons, prod } => self.consumed(ts_ns, cons.into(), prod.into()),
            QueueEvent::Error { index, cerror } => self.stopped(ts_ns, index, cerror),
            QueueEvent::ErrorAck { .. } => {
                self.errored = false;
                if let Some(e) = self.last_error.as_mut() {
                    e.acknowledged = true;
                }
            }
            QueueEvent::HwAlloc { log2size, errno } => {
                if errno.is_none() {
                    self.hw_backed = true;
                    self.set_log2size(log2size.into());
                }
            }
            QueueEvent::HwFree => self.hw_backed = false,
            QueueEvent::Enable { enabled, log2size } => {
                self.enabled = enabled;
                self.set_log2size(log2size.into());
                if !enabled {
                    self.errored = false;
                    self.tracker.clear();
                    self.pass.clear();
                }
            }
            QueueEvent::Handover { .. } => {}
            // The queue belongs to (VINTF, LVCMDQ) while mapped; keep the last mapping when it
            // is unmapped so the row still says where it came from.
            QueueEvent::Map {
                vintf,
                lvcmdq,
                alloc,
            } => {
                if alloc {
                    self.vintf = Some(vintf);
                    self.lvcmdq = Some(lvcmdq.into());
                }
            }
        }
    }

    /// A consumption pass ended with `cons`, `prod`.
    pub fn consumed(&mut self, ts_ns: u64, cons: u64, prod: u64) {
        self.pass_commands = 0;
        self.enabled = true;
        self.cons = cons;
        self.prod = prod;
        let c = &mut self.c;
        let batch = self
            .tracker
            .consumed(ts_ns, cons, prod, |ns| c.record_latency(ns));
        if let Some(b) = batch {
            c.batch(b.commands);
        }
        self.pass
            .consumed(ts_ns, cons as u32, batch.is_some(), &mut c.phases);
    }

    /// A host kernel's batch was submitted (`cmdqv host`): its `commands` went into the ring,
    /// which the SMMU consumes (hardware, as the kernel sees it); `latency_ns` is what the row's
    /// latency measures for it (none without a CMD_SYNC), `end` the ring pointer after it.
    pub fn host_batch(
        &mut self,
        commands: u64,
        latency_ns: Option<u64>,
        end: Option<u32>,
        log2size: Option<u8>,
    ) {
        self.enabled = true;
        self.hw_backed = true;
        self.pass_commands = 0;
        if let Some(n) = log2size {
            self.set_log2size(n.into());
        }
        if let Some(e) = end {
            // The kernel hands the slots to the SMMU before it returns: nothing of it is pending.
            self.prod = e.into();
            self.cons = e.into();
        }
        self.c.batch(commands);
        if let Some(ns) = latency_ns {
            self.c.record_latency(ns);
        }
    }

    /// The queue stopped on the command at pointer `index`.
    fn stopped(&mut self, ts_ns: u64, index: u32, cerror: ErrCode) {
        self.errored = true;
        self.cons = index.into();
        self.c.errors += 1;
        self.c.errors_by_code[cerror.code() as usize] += 1;
        self.last_error = Some(QueueError {
            ts_ns,
            code: cerror.code(),
            name: cerror.name().into_owned(),
            index,
            command: self.faulting_command(index),
            acknowledged: false,
        });
    }

    /// The command of this pass at pointer `index` (or at its index when the wrap bit differs).
    fn faulting_command(&self, index: u32) -> Option<[u64; 2]> {
        let mask = self.index_mask().unwrap_or(u64::MAX) as u32;
        let pass = self.recent.iter().rev().take(self.pass_commands as usize);
        pass.clone()
            .find(|c| c.index == index)
            .or_else(|| pass.clone().find(|c| c.index & mask == index & mask))
            .map(|c| [c.w0, c.w1])
    }

    /// Completed seconds only, padded with idle seconds up to `now_sec`.
    fn rate_history(&self, now_sec: u64) -> Vec<u64> {
        let mut h: Vec<u64> = self.rate_history.iter().copied().collect();
        if now_sec > self.rate_sec {
            h.push(self.rate_cur);
            let gap = (now_sec - self.rate_sec - 1).min(RATE_HISTORY_CAP as u64);
            h.extend(std::iter::repeat_n(0, gap as usize));
        }
        if h.len() > RATE_HISTORY_CAP {
            h.drain(..h.len() - RATE_HISTORY_CAP);
        }
        h
    }

    fn recent_commands(&self) -> Vec<RecentCommand> {
        let described = |r: &RawCommand| RecentCommand {
            ts_ns: r.ts_ns,
            index: r.index,
            w0: r.w0,
            w1: r.w1,
            text: describe(r.w0, r.w1),
        };
        self.recent.iter().map(described).collect()
    }

    /// The queue's summary over `elapsed_s` seconds, as of second `now_sec` of the run.
    pub fn summary(&self, elapsed_s: f64, now_sec: u64) -> QueueSummary {
        let c = &self.c;
        let rate = |n: u64| {
            if elapsed_s > 0.0 {
                n as f64 / elapsed_s
            } else {
                0.0
            }
        };
        let main = self.id == MAIN_CMDQ;
        QueueSummary {
            name: queue_name(self.id),
            global_id: (!main).then_some(self.id),
            vintf: if main { None } else { self.vintf },
            lvcmdq: if main { None } else { self.lvcmdq },
            state: self.state(),
            log2size: self.log2size.unwrap_or(0),
            prod: self.prod as u32,
            cons: self.cons as u32,
            occupancy: self.occupancy(),
            commands: c.commands,
            syncs: c.syncs,
            errors: c.errors,
            errors_by_code: c.error_names(),
            batches: c.batches,
            commands_per_s: rate(c.commands),
            syncs_per_s: rate(c.syncs),
            mean_batch_size: if c.batches > 0 {
                c.batch_commands as f64 / c.batches as f64
            } else {
                0.0
            },
            batch_latency_ns: c.batch_latency(),
            phases_ns: c.phases.percentiles(),
            opcodes: c.opcode_names(),
            last_error: self.last_error.clone(),
            rate_history: self.rate_history(now_sec),
            latency_histogram: c.latency_histogram(),
            recent: self.recent_commands(),
            host: None,
        }
    }
}
