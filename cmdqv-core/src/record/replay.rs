//! Replay: a trace file through a [`Collector`] (source `replay`), with the same summary the
//! live collector gave, optionally one summary per interval of trace time.

use std::io::Read;
use std::path::Path;

use serde::Serialize;

use crate::analysis::{Collector, CollectorConfig, RegNameFn, Summary};
use crate::event::{Event, Source};
use crate::record::body::Record;
use crate::record::frame::{TraceError, Truncation};
use crate::record::meta::{MetaUpdate, TraceMeta};
use crate::record::reader::TraceReader;

/// What a replay read, beside the summary.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ReplayInfo {
    pub meta: TraceMeta,
    pub records: u64,
    pub events: u64,
    pub meta_records: u64,
    /// Records skipped because of a CRC mismatch or an undecodable body.
    pub bad_records: u64,
    /// The first few errors (bounded), one line each.
    pub errors: Vec<String>,
    pub truncated: Option<Truncation>,
    /// First and last event timestamps.
    pub first_ts_ns: Option<u64>,
    pub last_ts_ns: Option<u64>,
}

const REPLAY_ERRORS_KEPT: usize = 10;

impl ReplayInfo {
    fn new(meta: TraceMeta) -> Self {
        Self {
            meta,
            records: 0,
            events: 0,
            meta_records: 0,
            bad_records: 0,
            errors: Vec::new(),
            truncated: None,
            first_ts_ns: None,
            last_ts_ns: None,
        }
    }

    fn event(&mut self, ev: &Event) {
        self.records += 1;
        self.events += 1;
        self.first_ts_ns.get_or_insert(ev.ts_ns);
        self.last_ts_ns = Some(self.last_ts_ns.unwrap_or(0).max(ev.ts_ns));
    }

    fn bad_record(&mut self, e: TraceError) {
        self.bad_records += 1;
        if self.errors.len() < REPLAY_ERRORS_KEPT {
            self.errors.push(e.to_string());
        }
    }
}

/// Apply a meta record to a collector; `last_drops` tracks the cumulative drop total.
pub fn apply_meta(c: &mut Collector, m: &MetaUpdate, last_drops: &mut u64) {
    if let Some(p) = &m.probes {
        c.set_probes(p.clone());
    }
    if let Some(total) = m.drops_total {
        c.add_drops(total.saturating_sub(*last_drops));
        *last_drops = (*last_drops).max(total);
    }
    for q in &m.queues {
        c.set_queue_meta(q.queue, q.vintf, q.lvcmdq, q.log2size);
    }
    if let Some(v) = &m.vintfs {
        c.set_vintfs(v.clone());
    }
    if let Some(h) = &m.handover {
        c.set_handover(h.clone());
    }
}

/// Replay a trace file through a [`Collector`] (source `replay`) and summarise it as of the
/// last event.
pub fn replay(path: impl AsRef<Path>) -> Result<(Summary, ReplayInfo), TraceError> {
    replay_with(path, None)
}

/// [`replay`] with a register-name hook for the log.
pub fn replay_with(
    path: impl AsRef<Path>,
    reg_name: Option<RegNameFn>,
) -> Result<(Summary, ReplayInfo), TraceError> {
    replay_reader(TraceReader::open(path)?, reg_name)
}

/// [`replay`] from an open reader.
pub fn replay_reader<R: Read>(
    reader: TraceReader<R>,
    reg_name: Option<RegNameFn>,
) -> Result<(Summary, ReplayInfo), TraceError> {
    replay_intervals(reader, reg_name, None, &mut |_| {})
}

/// The collector a replay of a file with this header feeds.
fn replay_collector(meta: &TraceMeta, reg_name: Option<RegNameFn>, intervals: bool) -> Collector {
    let mut cfg = CollectorConfig::new(Source::Replay, meta.target.clone());
    cfg.start_ns = meta.start_ns;
    cfg.reg_name = reg_name;
    cfg.intervals = intervals;
    cfg.smmu_queue_from_mmio = meta.smmu_queue_from_mmio;
    let mut c = Collector::new(cfg);
    c.set_probes(meta.probes.clone());
    for q in &meta.queues {
        c.set_queue_meta(q.queue, q.vintf, q.lvcmdq, q.log2size);
    }
    c
}

/// When the next `--interval` summary is due, in trace time.
struct IntervalClock {
    every_ns: Option<u64>,
    trace_start: Option<u64>,
    next: Option<u64>,
}

impl IntervalClock {
    /// The end of the interval an event at `ts_ns` closes, if it closes one.
    fn due(&mut self, ts_ns: u64) -> Option<u64> {
        let iv = self.every_ns.filter(|&iv| iv > 0)?;
        let due = *self
            .next
            .get_or_insert(self.trace_start.unwrap_or(ts_ns) + iv);
        if ts_ns < due {
            return None;
        }
        // Skip empty intervals rather than printing one per gap.
        let mut n = due + iv;
        while n <= ts_ns {
            n += iv;
        }
        self.next = Some(n);
        Some(due)
    }
}

/// [`replay_reader`] that also emits one summary per `interval_ns` of trace time (the headless
/// `--interval` output on replay), then the final one.
pub fn replay_intervals<R: Read>(
    reader: TraceReader<R>,
    reg_name: Option<RegNameFn>,
    interval_ns: Option<u64>,
    on_interval: &mut dyn FnMut(&Summary),
) -> Result<(Summary, ReplayInfo), TraceError> {
    let (c, info) = replay_observed(reader, reg_name, interval_ns, on_interval, &mut |_| {})?;
    Ok((final_summary(&c, &info), info))
}

/// [`replay_intervals`] that also shows every event to `observe` (after the collector took it)
/// and hands back the collector, for analyses beyond the summary (`cmdqv diff`).
pub fn replay_observed<R: Read>(
    mut reader: TraceReader<R>,
    reg_name: Option<RegNameFn>,
    interval_ns: Option<u64>,
    on_interval: &mut dyn FnMut(&Summary),
    observe: &mut dyn FnMut(&Event),
) -> Result<(Collector, ReplayInfo), TraceError> {
    let meta = reader.meta().clone();
    let mut c = replay_collector(&meta, reg_name, interval_ns.is_some());
    let mut clock = IntervalClock {
        every_ns: interval_ns,
        trace_start: meta.start_ns,
        next: None,
    };
    let mut info = ReplayInfo::new(meta);
    let mut last_drops = 0;
    for r in &mut reader {
        match r {
            Ok(Record::Event(ev)) => {
                info.event(&ev);
                if let Some(due) = clock.due(ev.ts_ns) {
                    on_interval(&c.snapshot(due));
                    c.reset_interval(due);
                }
                c.ingest(&ev);
                observe(&ev);
            }
            Ok(Record::Meta(m)) => {
                info.records += 1;
                info.meta_records += 1;
                apply_meta(&mut c, &m, &mut last_drops);
            }
            Err(TraceError::Io(e)) => return Err(TraceError::Io(e)),
            Err(e) => info.bad_record(e),
        }
    }
    info.truncated = reader.truncated();
    Ok((c, info))
}

/// The summary as of the last event, with notes on what the file lacked.
pub fn final_summary(c: &Collector, info: &ReplayInfo) -> Summary {
    let mut s = c.snapshot(c.last_ts());
    if let Some(t) = info.truncated {
        s.notes.push(format!(
            "trace file is truncated at offset {}: {} bytes ignored",
            t.offset, t.ignored_bytes
        ));
    }
    if info.bad_records > 0 {
        s.notes
            .push(format!("{} corrupt records skipped", info.bad_records));
    }
    s
}
