//! Perfetto export: a trace file as Chrome trace-event JSON (`{"traceEvents":[...]}`), which
//! ui.perfetto.dev and chrome://tracing open.
//!
//! Tracks (threads of the VMM's pid): one per queue (`vcmdq3`, `smmu-cmdq`) and one `iommufd`.
//! Batches (guest doorbell → CONS reaching its PROD, the same correlation as the collector) are
//! complete slices with the command count and opcodes; queue errors are instant events with the
//! faulting command; ioctls are slices on the `iommufd` track, mmaps instants there.
//! Timestamps are µs since the start of the recording. Output is streamed, one event at a time,
//! so memory stays bounded whatever the trace size.

use std::collections::BTreeMap;
use std::io::{Read, Write};

use serde_json::{Value, json};

use crate::analysis::{BatchTracker, MAX_QUEUES, ioctl_text, queue_event_title, queue_name};
use crate::command::{self, describe};
use crate::event::{Event, MAIN_CMDQ, Payload, QueueEvent};
use crate::probe_abi::queue_words;
use crate::record::{Record, TraceError, TraceReader, Truncation};

/// Thread id of the `iommufd` track.
pub const TID_IOMMUFD: u32 = 1;
/// Thread id of the SMMU's own command queue track.
pub const TID_SMMU_CMDQ: u32 = 2;
/// Thread id of VCMDQ `n` is `TID_VCMDQ_BASE + n`.
pub const TID_VCMDQ_BASE: u32 = 100;

/// Stable track (thread) id of a queue.
pub fn queue_tid(queue: u32) -> u32 {
    if queue == MAIN_CMDQ {
        TID_SMMU_CMDQ
    } else {
        TID_VCMDQ_BASE + queue
    }
}

/// What an export wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExportInfo {
    pub events_read: u64,
    pub slices: u64,
    pub instants: u64,
    /// Records skipped (CRC mismatch, undecodable) and events for untracked queue ids.
    pub skipped: u64,
    pub truncated: Option<Truncation>,
}

struct Track {
    tracker: BatchTracker,
    opcodes: BTreeMap<u8, u64>,
    recent: [(u32, u64, u64); 4],
    recent_n: usize,
}

struct Exporter<W: Write> {
    out: W,
    first: bool,
    pid: u32,
    base_ns: Option<u64>,
    tracks: BTreeMap<u32, Track>,
    iommufd_named: bool,
    info: ExportInfo,
}

impl<W: Write> Exporter<W> {
    fn emit(&mut self, v: &Value) -> std::io::Result<()> {
        if !self.first {
            self.out.write_all(b",\n")?;
        }
        self.first = false;
        serde_json::to_writer(&mut self.out, v)?;
        Ok(())
    }

    fn us(&self, ts_ns: u64) -> f64 {
        ts_ns.saturating_sub(self.base_ns.unwrap_or(0)) as f64 / 1e3
    }

    fn thread_name(&mut self, tid: u32, name: &str, sort: u32) -> std::io::Result<()> {
        let pid = self.pid;
        self.emit(
            &json!({"ph": "M", "name": "thread_name", "pid": pid, "tid": tid,
            "args": {"name": name}}),
        )?;
        self.emit(
            &json!({"ph": "M", "name": "thread_sort_index", "pid": pid, "tid": tid,
            "args": {"sort_index": sort}}),
        )
    }

    fn track(&mut self, queue: u32) -> std::io::Result<bool> {
        if queue != MAIN_CMDQ && queue >= MAX_QUEUES {
            self.info.skipped += 1;
            return Ok(false);
        }
        if let std::collections::btree_map::Entry::Vacant(slot) = self.tracks.entry(queue) {
            slot.insert(Track {
                tracker: BatchTracker::default(),
                opcodes: BTreeMap::new(),
                recent: [(0, 0, 0); 4],
                recent_n: 0,
            });
            self.thread_name(queue_tid(queue), &queue_name(queue), queue_tid(queue))?;
        }
        Ok(true)
    }

    fn event(&mut self, ev: &Event) -> std::io::Result<()> {
        self.info.events_read += 1;
        self.base_ns.get_or_insert(ev.ts_ns);
        match ev.payload {
            Payload::Command {
                queue,
                index,
                w0,
                w1,
            } => self.command(queue, index, w0, w1),
            Payload::Queue {
                event:
                    e @ QueueEvent::Handover {
                        handovers,
                        view_mismatches,
                        commands_lost,
                    },
                ..
            } => {
                let args = json!({"handovers": handovers, "commands_lost": commands_lost,
                                  "view_mismatches": view_mismatches});
                self.process_instant(ev.ts_ns, &queue_event_title(&e), "handover", Some(args))
            }
            Payload::Queue { queue, event } => self.queue_event(ev.ts_ns, queue, &event),
            Payload::Ioctl {
                fd,
                cmd,
                ret,
                duration_ns,
                ..
            } => self.ioctl(ev.ts_ns, fd, cmd, ret, duration_ns),
            Payload::Mmap {
                fd,
                addr,
                len,
                offset,
                ret,
                map,
            } => {
                self.iommufd_track()?;
                let (pid, ts) = (self.pid, self.us(ev.ts_ns));
                self.info.instants += 1;
                self.emit(&json!({
                    "ph": "i", "s": "t", "name": if map { "mmap" } else { "munmap" },
                    "cat": "mmap", "pid": pid, "tid": TID_IOMMUFD, "ts": ts,
                    "args": {"fd": fd, "addr": format!("{addr:#x}"), "len": len,
                             "offset": offset, "ret": ret},
                }))
            }
            Payload::Lost { count } => {
                let name = format!("{count} events lost");
                self.process_instant(ev.ts_ns, &name, "lost", None)
            }
            Payload::Mmio { .. }
            | Payload::KvmMmio { .. }
            | Payload::KvmExit(_)
            | Payload::KFunc { .. }
            | Payload::Iommu { .. }
            | Payload::HostBatch(_)
            | Payload::HostCommand(_) => Ok(()),
        }
    }

    fn command(&mut self, queue: u32, index: u32, w0: u64, w1: u64) -> std::io::Result<()> {
        if !self.track(queue)? {
            return Ok(());
        }
        let t = self.tracks.get_mut(&queue).expect("track was just ensured");
        t.tracker.command();
        *t.opcodes.entry(w0 as u8).or_insert(0) += 1;
        t.recent[t.recent_n % 4] = (index, w0, w1);
        t.recent_n += 1;
        Ok(())
    }

    /// A process-scoped instant (what concerns the whole VMM, not one queue).
    fn process_instant(
        &mut self,
        ts_ns: u64,
        name: &str,
        cat: &str,
        args: Option<Value>,
    ) -> std::io::Result<()> {
        let (pid, ts) = (self.pid, self.us(ts_ns));
        self.info.instants += 1;
        let mut v = json!({
            "ph": "i", "s": "p", "name": name, "cat": cat, "pid": pid, "tid": 0, "ts": ts,
        });
        if let Some(args) = args {
            v["args"] = args;
        }
        self.emit(&v)
    }

    fn queue_event(&mut self, ts_ns: u64, queue: u32, event: &QueueEvent) -> std::io::Result<()> {
        if !self.track(queue)? {
            return Ok(());
        }
        let t = self.tracks.get_mut(&queue).expect("track was just ensured");
        match *event {
            QueueEvent::Doorbell { prod, cons } => {
                t.tracker.doorbell(ts_ns, prod.into(), cons.into());
                Ok(())
            }
            QueueEvent::Consumed { cons, prod } => self.consumed(ts_ns, queue, cons, prod),
            QueueEvent::Error { index, cerror } => {
                // Only this pass's commands can be blamed.
                let seen = t.recent_n.min(4);
                let cmd = (0..seen)
                    .map(|k| t.recent[(t.recent_n - 1 - k) % 4])
                    .find(|c| c.0 == index)
                    .map(|(_, w0, w1)| describe(w0, w1));
                let (pid, tid, ts) = (self.pid, queue_tid(queue), self.us(ts_ns));
                self.info.instants += 1;
                self.emit(&json!({
                    "ph": "i", "s": "t", "name": cerror.name(), "cat": "error",
                    "pid": pid, "tid": tid, "ts": ts,
                    "args": {"cons": index, "code": cerror.code(), "command": cmd},
                }))
            }
            _ => {
                if let QueueEvent::Enable { enabled: false, .. } = event {
                    t.tracker.clear();
                    t.opcodes.clear();
                }
                self.queue_instant(ts_ns, queue, event)
            }
        }
    }

    /// A consumption pass: the batch it closed, as a slice with its opcodes.
    fn consumed(&mut self, ts_ns: u64, queue: u32, cons: u32, prod: u32) -> std::io::Result<()> {
        let t = self.tracks.get_mut(&queue).expect("track was ensured");
        // Only this pass's commands can be blamed for a later error.
        t.recent_n = 0;
        let Some(batch) = t.tracker.consumed(ts_ns, cons.into(), prod.into(), |_| {}) else {
            if cons == prod {
                t.opcodes.clear();
            }
            return Ok(());
        };
        let opcodes: serde_json::Map<String, Value> = std::mem::take(&mut t.opcodes)
            .into_iter()
            .map(|(o, n)| (command::command_name(u64::from(o)).into_owned(), n.into()))
            .collect();
        let (pid, tid, start) = (self.pid, queue_tid(queue), self.us(batch.start_ns));
        let dur = (batch.end_ns.saturating_sub(batch.start_ns)) as f64 / 1e3;
        self.info.slices += 1;
        self.emit(&json!({
            "ph": "X", "name": format!("batch ({} cmds)", batch.commands),
            "cat": "batch", "pid": pid, "tid": tid, "ts": start, "dur": dur,
            "args": {"commands": batch.commands, "doorbells": batch.doorbells,
                     "cons": cons, "prod": prod, "opcodes": opcodes},
        }))
    }

    /// Any other queue event: an instant named as the log names it, with the ABI's words.
    fn queue_instant(&mut self, ts_ns: u64, queue: u32, event: &QueueEvent) -> std::io::Result<()> {
        let (_, a, b) = queue_words(event);
        let (pid, tid, ts) = (self.pid, queue_tid(queue), self.us(ts_ns));
        self.info.instants += 1;
        self.emit(&json!({
            "ph": "i", "s": "t", "name": queue_event_title(event), "cat": "queue",
            "pid": pid, "tid": tid, "ts": ts, "args": {"a": a, "b": b},
        }))
    }

    fn ioctl(
        &mut self,
        ts_ns: u64,
        fd: i32,
        cmd: u32,
        ret: i64,
        duration_ns: u64,
    ) -> std::io::Result<()> {
        self.iommufd_track()?;
        let (name, result) = ioctl_text(cmd, ret);
        // The probe stamps the joined event at syscall exit.
        let (pid, start) = (self.pid, self.us(ts_ns.saturating_sub(duration_ns)));
        self.info.slices += 1;
        self.emit(&json!({
            "ph": "X", "name": name, "cat": "ioctl", "pid": pid, "tid": TID_IOMMUFD,
            "ts": start, "dur": duration_ns as f64 / 1e3,
            "args": {"fd": fd, "cmd": format!("{cmd:#x}"), "result": result},
        }))
    }

    fn iommufd_track(&mut self) -> std::io::Result<()> {
        if !self.iommufd_named {
            self.iommufd_named = true;
            self.thread_name(TID_IOMMUFD, "iommufd", TID_IOMMUFD)?;
        }
        Ok(())
    }
}

/// Write a trace file as Chrome trace-event JSON.
pub fn export_perfetto<R: Read, W: Write>(
    mut reader: TraceReader<R>,
    out: W,
) -> Result<ExportInfo, TraceError> {
    let meta = reader.meta().clone();
    let mut ex = Exporter {
        out,
        first: true,
        pid: meta.pid.unwrap_or(0),
        base_ns: meta.start_ns,
        tracks: BTreeMap::new(),
        iommufd_named: false,
        info: ExportInfo::default(),
    };
    ex.out.write_all(b"{\"traceEvents\":[\n")?;
    let mut named = false;
    for r in &mut reader {
        let ev = match r {
            Ok(Record::Event(ev)) => ev,
            Ok(Record::Meta(_)) => continue,
            Err(TraceError::Io(e)) => return Err(TraceError::Io(e)),
            Err(_) => {
                ex.info.skipped += 1;
                continue;
            }
        };
        if !named {
            named = true;
            if meta.pid.is_none() {
                ex.pid = ev.pid;
            }
            let pid = ex.pid;
            ex.emit(
                &json!({"ph": "M", "name": "process_name", "pid": pid, "tid": 0,
                "args": {"name": format!("cmdqv: {}", meta.target)}}),
            )?;
        }
        ex.event(&ev)?;
    }
    ex.info.truncated = reader.truncated();
    let trailer = json!({
        "source": meta.source.as_str(),
        "target": meta.target,
        "truncated": ex.info.truncated.is_some(),
    });
    write!(
        ex.out,
        "\n],\"displayTimeUnit\":\"ns\",\"metadata\":{trailer}}}\n"
    )?;
    ex.out.flush()?;
    Ok(ex.info)
}
