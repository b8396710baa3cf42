//! Native Perfetto export: a trace file as Perfetto's protobuf trace format (`Trace` of
//! `TracePacket`s), which ui.perfetto.dev and trace_processor open.
//!
//! Tracks, under one process track for the traced VMM: per queue a slice track (a slice per
//! batch, guest doorbell → CONS reaching its PROD, the collector's correlation; doorbells,
//! consumption starts and completions as instants joined by one flow per doorbell; queue errors
//! as instants of category `error`) and two counter tracks (occupancy in entries, commands/s per
//! 100 ms); an `iommufd` track with the ioctls as slices and mmaps as instants. Timestamps are
//! the trace's CLOCK_MONOTONIC ns. Fixed event names are interned on the one trusted sequence.
//! Output is streamed packet by packet, so memory stays bounded whatever the trace size.

pub mod proto;
mod queue;
mod sink;

use std::collections::BTreeMap;
use std::io::{Read, Write};

use proto::{DebugAnnotation, ProcessDescriptor, TrackDescriptor};
pub use proto::{SEQ_INCREMENTAL_STATE_CLEARED, SEQ_NEEDS_INCREMENTAL_STATE};
pub use queue::RATE_BUCKET_NS;
use queue::{QueueTrack, instant};
use sink::{Lanes, Name, Sink};
pub use sink::{MAX_LANES, PftraceInfo, SEQUENCE_ID};

use crate::analysis::{MAX_QUEUES, ioctl_text, queue_event_title, queue_name};
use crate::event::{Event, MAIN_CMDQ, Payload, QueueEvent};
use crate::export::{TID_IOMMUFD, queue_tid};
use crate::probe_abi::queue_words;
use crate::record::{Record, TraceError, TraceMeta, TraceReader};

/// uuid of the process track.
pub const PROCESS_UUID: u64 = 1;
/// Track uuids of a thread id `tid` (see [`queue_tid`]) start at `TRACK_UUID_BASE + tid * 256`.
pub const TRACK_UUID_BASE: u64 = 1 << 32;

fn track_uuid(tid: u32) -> u64 {
    TRACK_UUID_BASE + u64::from(tid) * 256
}

struct Exporter<W: Write> {
    sink: Sink<W>,
    meta: TraceMeta,
    base_ns: Option<u64>,
    started: bool,
    queues: BTreeMap<u32, QueueTrack>,
    iommufd: Option<Lanes>,
    next_flow: u64,
}

impl<W: Write> Exporter<W> {
    /// The process track, then the queues the header names, before any event.
    fn start(&mut self, pid: u32) -> std::io::Result<()> {
        self.started = true;
        let pid = self.meta.pid.unwrap_or(pid);
        self.sink.descriptor(TrackDescriptor {
            uuid: Some(PROCESS_UUID),
            process: Some(ProcessDescriptor {
                pid: Some(pid as i32),
                process_name: Some(format!("cmdqv: {}", self.meta.target)),
            }),
            ..Default::default()
        })?;
        let known: Vec<(u32, Option<u8>)> = self
            .meta
            .queues
            .iter()
            .map(|q| (q.queue, q.log2size))
            .collect();
        for (q, log2size) in known {
            self.queue(q, log2size)?;
        }
        Ok(())
    }

    /// Opens the queue's tracks on first use; false for an id no queue can have.
    fn queue(&mut self, queue: u32, log2size: Option<u8>) -> std::io::Result<bool> {
        if queue != MAIN_CMDQ && queue >= MAX_QUEUES {
            self.sink.info.skipped += 1;
            return Ok(false);
        }
        if !self.queues.contains_key(&queue) {
            let uuid = track_uuid(queue_tid(queue));
            let t = QueueTrack::open(
                &mut self.sink,
                PROCESS_UUID,
                uuid,
                &queue_name(queue),
                log2size,
            )?;
            self.queues.insert(queue, t);
        }
        Ok(true)
    }

    fn iommufd(&mut self) -> std::io::Result<u64> {
        if self.iommufd.is_none() {
            let uuid = track_uuid(TID_IOMMUFD);
            self.sink.descriptor(TrackDescriptor {
                uuid: Some(uuid),
                parent_uuid: Some(PROCESS_UUID),
                name: Some("iommufd".into()),
                ..Default::default()
            })?;
            self.iommufd = Some(Lanes::new(uuid, uuid + 16, "iommufd".into()));
        }
        Ok(track_uuid(TID_IOMMUFD))
    }

    fn event(&mut self, ev: &Event) -> std::io::Result<()> {
        self.sink.info.events_read += 1;
        if !self.started {
            self.start(ev.pid)?;
        }
        let base = *self.base_ns.get_or_insert(ev.ts_ns);
        let ts = ev.ts_ns;
        match &ev.payload {
            &Payload::Queue { queue, event } => self.queue_event(ts, queue, &event),
            Payload::Ioctl { .. } | Payload::Mmap { .. } => self.iommufd_event(ts, &ev.payload),
            &Payload::Lost { count } => {
                self.process_instant(ts, format!("{count} events lost"), "lost", Vec::new())
            }
            &Payload::Command {
                queue,
                index,
                w0,
                w1,
            } => {
                if !self.queue(queue, None)? {
                    return Ok(());
                }
                let t = self.queues.get_mut(&queue).expect("queue was just opened");
                let since = ts.saturating_sub(base);
                t.command(&mut self.sink, (ts, since), index, w0, w1)
            }
            // MMIO, KVM exits, kernel functions and host batches have no track of their own here.
            _ => Ok(()),
        }
    }

    /// An ioctl (a slice) or an mmap (an instant) on the `iommufd` track.
    fn iommufd_event(&mut self, ts: u64, payload: &Payload) -> std::io::Result<()> {
        match *payload {
            Payload::Ioctl {
                duration_ns,
                fd,
                cmd,
                ret,
                ..
            } => self.ioctl(ts, fd, cmd, ret, duration_ns),
            Payload::Mmap {
                map,
                fd,
                addr,
                len,
                offset,
                ret,
            } => {
                let track = self.iommufd()?;
                let args = vec![
                    DebugAnnotation::int("fd", fd.into()),
                    DebugAnnotation::string("addr", format!("{addr:#x}")),
                    DebugAnnotation::uint("len", len),
                    DebugAnnotation::uint("offset", offset),
                    DebugAnnotation::int("ret", ret),
                ];
                let name = if map { "mmap" } else { "munmap" };
                self.sink
                    .event(ts, Some(Name::Interned(name)), instant(track, "mmap", args))
            }
            _ => Ok(()),
        }
    }

    /// The VMM's cumulative passthrough bookkeeping, on the process track.
    fn handover(&mut self, ts: u64, e: &QueueEvent) -> std::io::Result<()> {
        let QueueEvent::Handover {
            handovers,
            view_mismatches,
            commands_lost,
        } = *e
        else {
            return Ok(());
        };
        let args = vec![
            DebugAnnotation::uint("handovers", handovers),
            DebugAnnotation::uint("commands_lost", commands_lost.into()),
            DebugAnnotation::uint("view_mismatches", view_mismatches.into()),
        ];
        self.process_instant(ts, queue_event_title(e), "handover", args)
    }

    fn process_instant(
        &mut self,
        ts_ns: u64,
        name: String,
        category: &str,
        args: Vec<DebugAnnotation>,
    ) -> std::io::Result<()> {
        let ev = instant(PROCESS_UUID, category, args);
        self.sink.event(ts_ns, Some(Name::Plain(name)), ev)
    }

    fn queue_event(&mut self, ts_ns: u64, queue: u32, event: &QueueEvent) -> std::io::Result<()> {
        if let QueueEvent::Handover { .. } = event {
            return self.handover(ts_ns, event);
        }
        if !self.queue(queue, None)? {
            return Ok(());
        }
        let t = self.queues.get_mut(&queue).expect("queue was just opened");
        let sink = &mut self.sink;
        match *event {
            QueueEvent::Doorbell { prod, cons } => {
                t.doorbell(sink, ts_ns, (prod, cons), &mut self.next_flow)
            }
            QueueEvent::Consumed { cons, prod } => t.consumed(sink, ts_ns, (cons, prod)),
            QueueEvent::Error { index, cerror } => t.error(sink, ts_ns, index, cerror),
            _ => {
                if let QueueEvent::Enable { enabled, log2size } = *event {
                    t.enable(enabled, log2size);
                }
                let (_, a, b) = queue_words(event);
                t.note(sink, ts_ns, queue_event_title(event), (a, b))
            }
        }
    }

    fn ioctl(
        &mut self,
        ts_ns: u64,
        fd: i32,
        cmd: u32,
        ret: i64,
        duration_ns: u64,
    ) -> std::io::Result<()> {
        self.iommufd()?;
        let (name, result) = ioctl_text(cmd, ret);
        // The probe stamps the joined event at syscall exit.
        let start = ts_ns.saturating_sub(duration_ns);
        let lanes = self
            .iommufd
            .as_mut()
            .expect("iommufd track was just opened");
        let (track, start) = lanes.place(&mut self.sink, start, ts_ns)?;
        let args = vec![
            DebugAnnotation::int("fd", fd.into()),
            DebugAnnotation::string("cmd", format!("{cmd:#x}")),
            DebugAnnotation::string("result", result),
        ];
        self.sink
            .slice(track, (start, ts_ns), Name::Plain(name), "ioctl", args)
    }

    fn finish(&mut self) -> std::io::Result<()> {
        if !self.started {
            self.start(0)?;
        }
        let base = self.base_ns.unwrap_or(0);
        for t in self.queues.values_mut() {
            t.flush_rate(&mut self.sink, base)?;
        }
        self.sink.flush()
    }
}

/// Write a trace file as a native Perfetto protobuf trace (`.pftrace`).
pub fn export_pftrace<R: Read, W: Write>(
    mut reader: TraceReader<R>,
    out: W,
) -> Result<PftraceInfo, TraceError> {
    let meta = reader.meta().clone();
    let mut ex = Exporter {
        sink: Sink::new(out),
        base_ns: meta.start_ns,
        meta,
        started: false,
        queues: BTreeMap::new(),
        iommufd: None,
        next_flow: 0,
    };
    for r in &mut reader {
        match r {
            Ok(Record::Event(ev)) => ex.event(&ev)?,
            Ok(Record::Meta(m)) => {
                for q in &m.queues {
                    if let Some(t) = ex.queues.get_mut(&q.queue) {
                        t.set_size(q.log2size);
                    }
                }
            }
            Err(TraceError::Io(e)) => return Err(TraceError::Io(e)),
            Err(_) => ex.sink.info.skipped += 1,
        }
    }
    ex.finish()?;
    let mut info = std::mem::take(&mut ex.sink.info);
    info.truncated = reader.truncated();
    Ok(info)
}
