//! One queue in the native Perfetto export: its slice track (a slice per batch, doorbells,
//! consumption starts and completions as instants joined by flows, errors as instants) and its
//! two counter tracks (occupancy in entries, commands/s), all from the same batch correlation as
//! the collector.

use std::collections::{BTreeMap, VecDeque};
use std::io::{self, Write};

use super::proto::{
    CounterDescriptor, CounterUnit, DebugAnnotation, EventType, TrackDescriptor, TrackEvent,
};
use super::sink::{Lanes, Name, Sink};
use crate::analysis::BatchTracker;
use crate::command::{self, describe};
use crate::event::ErrCode;

/// Width of a commands/s sample.
pub const RATE_BUCKET_NS: u64 = 100_000_000;
/// Commands kept to name the one an error stops on (a consumption pass's last few).
const RECENT_KEPT: usize = 4;

pub struct QueueTrack {
    pub lanes: Lanes,
    occupancy_uuid: u64,
    rate_uuid: u64,
    tracker: BatchTracker,
    /// Flow id of each doorbell the tracker holds, in its order, and whether the consumption
    /// start was marked on it.
    flows: VecDeque<(u64, bool)>,
    opcodes: BTreeMap<u8, u64>,
    recent: VecDeque<(u32, u64, u64)>,
    log2size: Option<u8>,
    prod: u32,
    cons: u32,
    occupancy: Option<u64>,
    bucket: Option<u64>,
    bucket_commands: u64,
}

/// An instant on `track`.
pub fn instant(track: u64, category: &str, args: Vec<DebugAnnotation>) -> TrackEvent {
    TrackEvent {
        r#type: Some(EventType::Instant as i32),
        track_uuid: Some(track),
        categories: vec![category.into()],
        debug_annotations: args,
        ..Default::default()
    }
}

impl QueueTrack {
    /// Writes the queue's track and its counter tracks under `parent`; `uuid` and the 255 after
    /// it belong to this queue.
    pub fn open<W: Write>(
        sink: &mut Sink<W>,
        parent: u64,
        uuid: u64,
        name: &str,
        log2size: Option<u8>,
    ) -> io::Result<Self> {
        sink.descriptor(TrackDescriptor {
            uuid: Some(uuid),
            parent_uuid: Some(parent),
            name: Some(name.into()),
            ..Default::default()
        })?;
        let counters = [
            (1, "occupancy", CounterUnit::Count, "entries"),
            (2, "commands/s", CounterUnit::Unspecified, "commands/s"),
        ];
        for (k, what, unit, unit_name) in counters {
            sink.descriptor(TrackDescriptor {
                uuid: Some(uuid + k),
                parent_uuid: Some(parent),
                name: Some(format!("{name} {what}")),
                counter: Some(CounterDescriptor {
                    unit: Some(unit as i32),
                    unit_name: Some(unit_name.into()),
                }),
                ..Default::default()
            })?;
        }
        Ok(Self {
            lanes: Lanes::new(uuid, uuid + 16, name.into()),
            occupancy_uuid: uuid + 1,
            rate_uuid: uuid + 2,
            tracker: BatchTracker::default(),
            flows: VecDeque::new(),
            opcodes: BTreeMap::new(),
            recent: VecDeque::with_capacity(RECENT_KEPT),
            log2size: log2size.filter(|&n| n <= 31),
            prod: 0,
            cons: 0,
            occupancy: None,
            bucket: None,
            bucket_commands: 0,
        })
    }

    /// A command taken from the queue at `ts_ns` (`since_ns` after the trace's start).
    pub fn command<W: Write>(
        &mut self,
        sink: &mut Sink<W>,
        (ts_ns, since_ns): (u64, u64),
        index: u32,
        w0: u64,
        w1: u64,
    ) -> io::Result<()> {
        self.rate(sink, ts_ns, since_ns)?;
        self.bucket_commands += 1;
        self.tracker.command();
        *self.opcodes.entry(w0 as u8).or_insert(0) += 1;
        if self.recent.len() == RECENT_KEPT {
            self.recent.pop_front();
        }
        self.recent.push_back((index, w0, w1));
        // The first command after a doorbell is where its consumption starts.
        let starting: Vec<u64> = self
            .flows
            .iter_mut()
            .filter(|f| !f.1)
            .map(|f| {
                f.1 = true;
                f.0
            })
            .collect();
        if starting.is_empty() {
            return Ok(());
        }
        let mut ev = instant(
            self.lanes.uuid,
            "flow",
            vec![DebugAnnotation::uint("cons", index.into())],
        );
        ev.flow_ids = starting;
        sink.event(ts_ns, Some(Name::Interned("consumption start")), ev)
    }

    /// Closes commands/s buckets up to the one `since_ns` falls in.
    fn rate<W: Write>(&mut self, sink: &mut Sink<W>, ts_ns: u64, since_ns: u64) -> io::Result<()> {
        let now = since_ns / RATE_BUCKET_NS;
        let base = ts_ns - since_ns;
        match self.bucket {
            Some(b) if now > b => {
                self.flush_rate(sink, base)?;
                if now > b + 1 {
                    // An idle stretch reads as zero, not as the last busy value.
                    sink.counter(self.rate_uuid, base + (b + 1) * RATE_BUCKET_NS, 0)?;
                }
            }
            Some(_) => return Ok(()),
            None => {}
        }
        self.bucket = Some(now);
        Ok(())
    }

    /// Writes the current commands/s bucket (`base_ns` = the trace's start).
    pub fn flush_rate<W: Write>(&mut self, sink: &mut Sink<W>, base_ns: u64) -> io::Result<()> {
        if let Some(b) = self.bucket {
            let per_s = self.bucket_commands * (1_000_000_000 / RATE_BUCKET_NS);
            sink.counter(self.rate_uuid, base_ns + b * RATE_BUCKET_NS, per_s as i64)?;
        }
        self.bucket_commands = 0;
        Ok(())
    }

    fn occupancy<W: Write>(&mut self, sink: &mut Sink<W>, ts_ns: u64) -> io::Result<()> {
        let Some(n) = self.log2size else {
            return Ok(());
        };
        // PROD and CONS carry the wrap bit above the index: used entries are their difference
        // modulo twice the ring.
        let mask = (1u64 << (u32::from(n) + 1)) - 1;
        let used = (u64::from(self.prod).wrapping_sub(u64::from(self.cons)) & mask).min(1 << n);
        if self.occupancy != Some(used) {
            self.occupancy = Some(used);
            sink.counter(self.occupancy_uuid, ts_ns, used as i64)?;
        }
        Ok(())
    }

    /// A guest doorbell; one that opens work starts a flow (`next_flow` numbers them).
    pub fn doorbell<W: Write>(
        &mut self,
        sink: &mut Sink<W>,
        ts_ns: u64,
        (prod, cons): (u32, u32),
        next_flow: &mut u64,
    ) -> io::Result<()> {
        let before = (self.tracker.pending(), self.tracker.abandoned);
        self.tracker.doorbell(ts_ns, prod.into(), cons.into());
        let after = (self.tracker.pending(), self.tracker.abandoned);
        if after.1 > before.1 {
            self.flows.pop_front();
        }
        let args = vec![
            DebugAnnotation::uint("prod", prod.into()),
            DebugAnnotation::uint("cons", cons.into()),
        ];
        let mut ev = instant(self.lanes.uuid, "doorbell", args);
        if after != before {
            *next_flow += 1;
            self.flows.push_back((*next_flow, false));
            ev.flow_ids = vec![*next_flow];
        }
        sink.event(ts_ns, Some(Name::Interned("doorbell")), ev)?;
        (self.prod, self.cons) = (prod, cons);
        self.occupancy(sink, ts_ns)
    }

    /// A consumption pass ended: the batch it closed as a slice, its doorbells' flows ended.
    pub fn consumed<W: Write>(
        &mut self,
        sink: &mut Sink<W>,
        ts_ns: u64,
        (cons, prod): (u32, u32),
    ) -> io::Result<()> {
        self.recent.clear();
        (self.prod, self.cons) = (prod, cons);
        self.occupancy(sink, ts_ns)?;
        let mut closed = 0;
        let Some(batch) = self
            .tracker
            .consumed(ts_ns, cons.into(), prod.into(), |_| closed += 1)
        else {
            if cons == prod {
                self.opcodes.clear();
            }
            return Ok(());
        };
        let flows: Vec<u64> = self
            .flows
            .drain(..closed.min(self.flows.len()))
            .map(|f| f.0)
            .collect();
        let opcodes = std::mem::take(&mut self.opcodes)
            .into_iter()
            .map(|(o, n)| DebugAnnotation::uint(&command::command_name(u64::from(o)), n))
            .collect();
        let args = vec![
            DebugAnnotation::uint("commands", batch.commands),
            DebugAnnotation::uint("doorbells", batch.doorbells.into()),
            DebugAnnotation::uint("cons", cons.into()),
            DebugAnnotation::uint("prod", prod.into()),
            DebugAnnotation::dict("opcodes", opcodes),
        ];
        let (track, start) = self.lanes.place(sink, batch.start_ns, batch.end_ns)?;
        sink.slice(
            track,
            (start, batch.end_ns),
            Name::Interned("batch"),
            "batch",
            args,
        )?;
        let mut ev = instant(
            self.lanes.uuid,
            "flow",
            vec![DebugAnnotation::uint("cons", cons.into())],
        );
        ev.terminating_flow_ids = flows;
        sink.event(ts_ns, Some(Name::Interned("completion")), ev)
    }

    /// The queue stopped on the command at `index`: an error instant naming that command when
    /// it was seen in this pass.
    pub fn error<W: Write>(
        &mut self,
        sink: &mut Sink<W>,
        ts_ns: u64,
        index: u32,
        cerror: ErrCode,
    ) -> io::Result<()> {
        let mut args = vec![
            DebugAnnotation::uint("cons", index.into()),
            DebugAnnotation::uint("code", cerror.code().into()),
        ];
        if let Some(&(_, w0, w1)) = self.recent.iter().rev().find(|c| c.0 == index) {
            args.push(DebugAnnotation::string("command", describe(w0, w1)));
        }
        let ev = instant(self.lanes.uuid, "error", args);
        sink.event(ts_ns, Some(Name::Plain(cerror.name().into_owned())), ev)
    }

    /// The ring size, when a meta record gives it.
    pub fn set_size(&mut self, log2size: Option<u8>) {
        if let Some(n) = log2size.filter(|&n| n <= 31) {
            self.log2size = Some(n);
        }
    }

    /// The queue was enabled or disabled: a disabled queue completes nothing it held.
    pub fn enable(&mut self, enabled: bool, log2size: u8) {
        self.set_size(Some(log2size));
        if !enabled {
            self.tracker.clear();
            self.flows.clear();
            self.opcodes.clear();
        }
    }

    /// Any other queue event, as an instant named as the log names it.
    pub fn note<W: Write>(
        &mut self,
        sink: &mut Sink<W>,
        ts_ns: u64,
        title: String,
        (a, b): (u64, u64),
    ) -> io::Result<()> {
        let args = vec![DebugAnnotation::uint("a", a), DebugAnnotation::uint("b", b)];
        let ev = instant(self.lanes.uuid, "queue", args);
        sink.event(ts_ns, Some(Name::Plain(title)), ev)
    }
}
