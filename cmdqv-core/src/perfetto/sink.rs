//! The packet stream of a native Perfetto trace: each `TracePacket` written as one `Trace.packet`
//! field as soon as it is made (nothing buffered but the packet), event names interned on one
//! trusted sequence, what was written counted, and slice tracks split into lanes so that
//! overlapping slices never mis-nest.

use std::collections::BTreeMap;
use std::io::{self, Write};

use serde::Serialize;

use super::proto::{
    Data, EventName, EventType, InternedData, SEQ_INCREMENTAL_STATE_CLEARED,
    SEQ_NEEDS_INCREMENTAL_STATE, TracePacket, TrackDescriptor, TrackEvent,
};
use crate::record::Truncation;

/// `trusted_packet_sequence_id` of every packet (one writer, one sequence).
pub const SEQUENCE_ID: u32 = 1;
/// `Trace.packet` is field 1 of `message Trace`.
const TRACE_PACKET_FIELD: u32 = 1;
/// Lanes a slice track may grow to; past that a slice starts when the earliest lane frees.
pub const MAX_LANES: usize = 32;

/// What a native Perfetto export wrote (the counts the tests check against the trace).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PftraceInfo {
    pub events_read: u64,
    pub packets: u64,
    /// Track descriptors, counter tracks included.
    pub tracks: u64,
    pub counter_tracks: u64,
    pub counter_values: u64,
    /// Batches (TYPE_SLICE_BEGIN/END pairs, category `batch`).
    pub batch_slices: u64,
    /// ioctls (slices, category `ioctl`).
    pub ioctl_slices: u64,
    /// Every TYPE_INSTANT, and those of category `error` (queue errors).
    pub instants: u64,
    pub error_instants: u64,
    /// Doorbells linked to their completion (flows terminated).
    pub flows: u64,
    /// Slices whose start moved because every lane of their track was busy.
    pub slices_delayed: u64,
    /// Records skipped (CRC mismatch, undecodable) and events for untracked queue ids.
    pub skipped: u64,
    pub truncated: Option<Truncation>,
}

/// An event's name: interned (a fixed name, sent once per sequence) or written out.
pub enum Name {
    Interned(&'static str),
    Plain(String),
}

pub struct Sink<W: Write> {
    out: W,
    buf: Vec<u8>,
    first: bool,
    names: BTreeMap<&'static str, u64>,
    pub info: PftraceInfo,
}

impl<W: Write> Sink<W> {
    pub fn new(out: W) -> Self {
        Self {
            out,
            buf: Vec::with_capacity(256),
            first: true,
            names: BTreeMap::new(),
            info: PftraceInfo::default(),
        }
    }

    fn write(&mut self, mut packet: TracePacket, flags: u32) -> io::Result<()> {
        packet.trusted_packet_sequence_id = Some(SEQUENCE_ID);
        // The reader drops interned references until it has seen the state cleared once.
        let flags = if std::mem::take(&mut self.first) {
            flags | SEQ_INCREMENTAL_STATE_CLEARED
        } else {
            flags
        };
        packet.sequence_flags = (flags != 0).then_some(flags);
        self.buf.clear();
        prost::encoding::message::encode(TRACE_PACKET_FIELD, &packet, &mut self.buf);
        self.info.packets += 1;
        self.out.write_all(&self.buf)
    }

    pub fn descriptor(&mut self, d: TrackDescriptor) -> io::Result<()> {
        self.info.tracks += 1;
        if d.counter.is_some() {
            self.info.counter_tracks += 1;
        }
        let packet = TracePacket {
            data: Some(Data::TrackDescriptor(d)),
            ..Default::default()
        };
        self.write(packet, 0)
    }

    /// A track event at `ts_ns`, counted by its type and first category.
    pub fn event(&mut self, ts_ns: u64, name: Option<Name>, mut ev: TrackEvent) -> io::Result<()> {
        let mut interned = None;
        match name {
            Some(Name::Plain(s)) => ev.name = Some(s),
            Some(Name::Interned(s)) => {
                let next = self.names.len() as u64 + 1;
                let iid = *self.names.entry(s).or_insert(next);
                if iid == next {
                    interned = Some(InternedData {
                        event_names: vec![EventName {
                            iid: Some(iid),
                            name: Some(s.into()),
                        }],
                    });
                }
                ev.name_iid = Some(iid);
            }
            None => {}
        }
        self.count(&ev);
        let packet = TracePacket {
            timestamp: Some(ts_ns),
            interned_data: interned,
            data: Some(Data::TrackEvent(ev)),
            ..Default::default()
        };
        self.write(packet, SEQ_NEEDS_INCREMENTAL_STATE)
    }

    fn count(&mut self, ev: &TrackEvent) {
        let cat = ev.categories.first().map(String::as_str);
        let i = &mut self.info;
        match EventType::try_from(ev.r#type.unwrap_or(0)) {
            Ok(EventType::SliceBegin) if cat == Some("batch") => i.batch_slices += 1,
            Ok(EventType::SliceBegin) if cat == Some("ioctl") => i.ioctl_slices += 1,
            Ok(EventType::Instant) => {
                i.instants += 1;
                i.error_instants += u64::from(cat == Some("error"));
            }
            Ok(EventType::Counter) => i.counter_values += 1,
            _ => {}
        }
        i.flows += ev.terminating_flow_ids.len() as u64;
    }

    /// A complete slice `[start_ns, end_ns]` on `track`: TYPE_SLICE_BEGIN then TYPE_SLICE_END.
    pub fn slice(
        &mut self,
        track: u64,
        (start_ns, end_ns): (u64, u64),
        name: Name,
        category: &str,
        args: Vec<super::proto::DebugAnnotation>,
    ) -> io::Result<()> {
        let begin = TrackEvent {
            r#type: Some(EventType::SliceBegin as i32),
            track_uuid: Some(track),
            categories: vec![category.into()],
            debug_annotations: args,
            ..Default::default()
        };
        self.event(start_ns, Some(name), begin)?;
        let end = TrackEvent {
            r#type: Some(EventType::SliceEnd as i32),
            track_uuid: Some(track),
            ..Default::default()
        };
        self.event(end_ns, None, end)
    }

    /// A counter's value at `ts_ns`.
    pub fn counter(&mut self, track: u64, ts_ns: u64, value: i64) -> io::Result<()> {
        let ev = TrackEvent {
            r#type: Some(EventType::Counter as i32),
            track_uuid: Some(track),
            counter_value: Some(value),
            ..Default::default()
        };
        self.event(ts_ns, None, ev)
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// A slice track and the child tracks it grows when its slices overlap (a doorbell that
/// completes after a later doorbell's batch began; ioctls of several threads): lane 0 is the
/// track itself, lane `i` the child track `base_uuid + i`.
pub struct Lanes {
    pub uuid: u64,
    base_uuid: u64,
    name: String,
    ends: Vec<u64>,
}

impl Lanes {
    pub fn new(uuid: u64, base_uuid: u64, name: String) -> Self {
        Self {
            uuid,
            base_uuid,
            name,
            ends: vec![0],
        }
    }

    /// The track and start for a slice `[start, end]`: the first lane free at `start`, a new
    /// lane when none is, or the lane that frees first (the start then moves, and is counted).
    pub fn place<W: Write>(
        &mut self,
        sink: &mut Sink<W>,
        start: u64,
        end: u64,
    ) -> io::Result<(u64, u64)> {
        let lane = match self.ends.iter().position(|&e| e <= start) {
            Some(i) => i,
            None if self.ends.len() < MAX_LANES => {
                self.ends.push(0);
                let i = self.ends.len() - 1;
                sink.descriptor(TrackDescriptor {
                    uuid: Some(self.base_uuid + i as u64),
                    parent_uuid: Some(self.uuid),
                    name: Some(format!("{} (overlap {i})", self.name)),
                    ..Default::default()
                })?;
                i
            }
            None => {
                sink.info.slices_delayed += 1;
                (0..self.ends.len())
                    .min_by_key(|&i| self.ends[i])
                    .unwrap_or(0)
            }
        };
        let start = start.max(self.ends[lane]);
        self.ends[lane] = end.max(start);
        let uuid = if lane == 0 {
            self.uuid
        } else {
            self.base_uuid + lane as u64
        };
        Ok((uuid, start))
    }
}
