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

use crate::analysis::{BatchTracker, MAX_QUEUES, cerror_name, describe, queue_name};
use crate::command;
use crate::event::{Event, MAIN_CMDQ, Payload, QueueOp, errno_name, iommufd_ioctl_name};
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
        let pid = self.pid;
        match ev.payload {
            Payload::Command {
                queue,
                index,
                w0,
                w1,
            } => {
                if !self.track(queue)? {
                    return Ok(());
                }
                let t = self.tracks.get_mut(&queue).expect("track was just ensured");
                t.tracker.command();
                *t.opcodes.entry(w0 as u8).or_insert(0) += 1;
                t.recent[t.recent_n % 4] = (index, w0, w1);
                t.recent_n += 1;
            }
            Payload::Queue {
                op: QueueOp::Handover,
                a,
                b,
                ..
            } => {
                // VMM-wide passthrough bookkeeping, not a queue: a process-scoped instant.
                let ts = self.us(ev.ts_ns);
                self.info.instants += 1;
                self.emit(&json!({
                    "ph": "i", "s": "p", "name": "passthrough handover", "cat": "handover",
                    "pid": pid, "tid": 0, "ts": ts,
                    "args": {"handovers": a, "commands_lost": b >> 32,
                             "view_mismatches": b & 0xffff_ffff},
                }))?;
            }
            Payload::Queue { queue, op, a, b } => {
                if !self.track(queue)? {
                    return Ok(());
                }
                let tid = queue_tid(queue);
                let ts = self.us(ev.ts_ns);
                let t = self.tracks.get_mut(&queue).expect("track was just ensured");
                match op {
                    QueueOp::Doorbell => t.tracker.doorbell(ev.ts_ns, a, b),
                    QueueOp::Consumed => {
                        // Only this pass's commands can be blamed for a later error.
                        t.recent_n = 0;
                        if let Some(batch) = t.tracker.consumed(ev.ts_ns, a, b, |_| {}) {
                            let opcodes: serde_json::Map<String, Value> =
                                std::mem::take(&mut t.opcodes)
                                    .into_iter()
                                    .map(|(o, n)| {
                                        (command::command_name(u64::from(o)).into_owned(), n.into())
                                    })
                                    .collect();
                            let start = self.us(batch.start_ns);
                            let dur = (batch.end_ns.saturating_sub(batch.start_ns)) as f64 / 1e3;
                            self.info.slices += 1;
                            self.emit(&json!({
                                "ph": "X", "name": format!("batch ({} cmds)", batch.commands),
                                "cat": "batch", "pid": pid, "tid": tid, "ts": start, "dur": dur,
                                "args": {"commands": batch.commands, "doorbells": batch.doorbells,
                                         "cons": a, "prod": b, "opcodes": opcodes},
                            }))?;
                        } else if a == b {
                            t.opcodes.clear();
                        }
                    }
                    QueueOp::Error => {
                        let index = a as u32;
                        let seen = t.recent_n.min(4);
                        let cmd = (0..seen)
                            .map(|k| t.recent[(t.recent_n - 1 - k) % 4])
                            .find(|c| c.0 == index)
                            .map(|(_, w0, w1)| describe(w0, w1));
                        self.info.instants += 1;
                        self.emit(&json!({
                            "ph": "i", "s": "t", "name": cerror_name(b & 0x7f), "cat": "error",
                            "pid": pid, "tid": tid, "ts": ts,
                            "args": {"cons": a, "code": b, "command": cmd},
                        }))?;
                    }
                    other => {
                        if matches!(other, QueueOp::Enable) && a == 0 {
                            t.tracker.clear();
                            t.opcodes.clear();
                        }
                        let name = match other {
                            QueueOp::ErrorAck => "error acknowledged".to_string(),
                            QueueOp::HwAlloc if b == 0 => "host queue allocated".to_string(),
                            QueueOp::HwAlloc => {
                                format!("host queue allocation failed: {}", errno_name(b as i64))
                            }
                            QueueOp::HwFree => "host queue freed".to_string(),
                            QueueOp::Enable if a != 0 => "enabled".to_string(),
                            QueueOp::Enable => "disabled".to_string(),
                            QueueOp::Map if (b >> 16) & 1 != 0 => {
                                format!("mapped to VINTF{a}.LVCMDQ{}", b & 0xffff)
                            }
                            QueueOp::Map => format!("unmapped from VINTF{a}.LVCMDQ{}", b & 0xffff),
                            // These have their own arms above.
                            QueueOp::Handover
                            | QueueOp::Doorbell
                            | QueueOp::Consumed
                            | QueueOp::Error => format!("{other:?}"),
                        };
                        self.info.instants += 1;
                        self.emit(&json!({
                            "ph": "i", "s": "t", "name": name, "cat": "queue",
                            "pid": pid, "tid": tid, "ts": ts, "args": {"a": a, "b": b},
                        }))?;
                    }
                }
            }
            Payload::Ioctl {
                fd,
                cmd,
                ret,
                duration_ns,
                ..
            } => {
                self.iommufd_track()?;
                let name = match iommufd_ioctl_name(cmd) {
                    Some(n) => n.to_string(),
                    None => format!("ioctl({cmd:#x})"),
                };
                let result = if ret < 0 {
                    errno_name(ret.saturating_neg()).to_string()
                } else {
                    ret.to_string()
                };
                // The probe stamps the joined event at syscall exit.
                let start = self.us(ev.ts_ns.saturating_sub(duration_ns));
                self.info.slices += 1;
                self.emit(&json!({
                    "ph": "X", "name": name, "cat": "ioctl", "pid": pid, "tid": TID_IOMMUFD,
                    "ts": start, "dur": duration_ns as f64 / 1e3,
                    "args": {"fd": fd, "cmd": format!("{cmd:#x}"), "result": result},
                }))?;
            }
            Payload::Mmap {
                fd,
                addr,
                len,
                offset,
                ret,
                map,
            } => {
                self.iommufd_track()?;
                let ts = self.us(ev.ts_ns);
                self.info.instants += 1;
                self.emit(&json!({
                    "ph": "i", "s": "t", "name": if map { "mmap" } else { "munmap" },
                    "cat": "mmap", "pid": pid, "tid": TID_IOMMUFD, "ts": ts,
                    "args": {"fd": fd, "addr": format!("{addr:#x}"), "len": len,
                             "offset": offset, "ret": ret},
                }))?;
            }
            Payload::Lost { count } => {
                let ts = self.us(ev.ts_ns);
                self.info.instants += 1;
                self.emit(&json!({
                    "ph": "i", "s": "p", "name": format!("{count} events lost"), "cat": "lost",
                    "pid": pid, "tid": 0, "ts": ts,
                }))?;
            }
            Payload::Mmio { .. }
            | Payload::KvmMmio { .. }
            | Payload::KFunc { .. }
            | Payload::Iommu { .. } => {}
        }
        Ok(())
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
