//! How the sim VMM reports what it does: every happening calls the exported hook function that
//! the eBPF uprobes attach to (nearly free without a probe), and — in the in-process fallback —
//! also writes the very same ABI record the probe would have produced to a pipe, framed by a
//! little-endian u32 length. The pipe is written by one thread through a bounded channel; a full
//! channel blocks the VMM (back-pressure) rather than dropping events.

use std::{
    io::Write,
    sync::mpsc::{self, SyncSender},
    thread::JoinHandle,
};

use cmdqv_ebpf_common::{
    ABI_VERSION, CommandEvent, EventHeader, EventKind, MmioEvent, MmioOrigin, QueueEvent, QueueOp,
};

use super::hooks;
use crate::{
    engine::{DeviceKind, EnableTarget, ModelEvent, Observer},
    event::monotonic_ns,
};

/// Where in-process records go.
pub struct PipeSink {
    tx: SyncSender<Vec<u8>>,
}

impl PipeSink {
    /// Spawns the writer thread over `out` (the child's stdout).
    pub fn spawn<W: Write + Send + 'static>(mut out: W) -> (Self, JoinHandle<()>) {
        let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(1 << 14);
        let h = std::thread::Builder::new()
            .name("cmdqv-emit".into())
            .spawn(move || {
                let mut w = std::io::BufWriter::with_capacity(1 << 16, &mut out);
                while let Ok(rec) = rx.recv() {
                    let ok = w
                        .write_all(&(rec.len() as u32).to_le_bytes())
                        .and_then(|_| w.write_all(&rec));
                    if ok.is_err() {
                        break; // the tracer went away
                    }
                    // Flush when idle so the reader sees records promptly.
                    if let Ok(next) = rx.try_recv() {
                        let _ = w
                            .write_all(&(next.len() as u32).to_le_bytes())
                            .and_then(|_| w.write_all(&next));
                    }
                    let _ = w.flush();
                }
                let _ = w.flush();
            })
            .expect("spawn emit thread");
        (Self { tx }, h)
    }
}

fn header(kind: EventKind) -> EventHeader {
    // SAFETY: plain libc calls without pointers.
    let (pid, tid, cpu) = unsafe {
        (
            libc::getpid() as u32,
            libc::gettid() as u32,
            libc::sched_getcpu().max(0) as u32,
        )
    };
    EventHeader {
        kind: kind as u16,
        version: ABI_VERSION,
        cpu,
        ts_ns: monotonic_ns(),
        pid,
        tid,
    }
}

fn bytes_of<T: Copy>(v: &T) -> Vec<u8> {
    // SAFETY: T is one of the #[repr(C)] ABI structs, whose padding fields are explicit and
    // initialised; we copy exactly size_of::<T>() bytes.
    unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()) }.to_vec()
}

/// The reporting side of the sim VMM, shared by all its threads.
#[derive(Clone, Default)]
pub struct Emitter {
    pipe: Option<SyncSender<Vec<u8>>>,
}

impl Emitter {
    pub fn hooks_only() -> Self {
        Self { pipe: None }
    }

    pub fn with_pipe(p: &PipeSink) -> Self {
        Self {
            pipe: Some(p.tx.clone()),
        }
    }

    fn send(&self, rec: Vec<u8>) {
        if let Some(tx) = &self.pipe {
            let _ = tx.send(rec);
        }
    }

    pub fn mmio(&self, device: u32, offset: u64, value: u64, size: u8, write: bool) {
        hooks::cmdqv_vmm_mmio(device, offset, value, size as u32, write as u32);
        if self.pipe.is_some() {
            self.send(bytes_of(&MmioEvent {
                hdr: header(EventKind::Mmio),
                offset,
                value,
                size,
                is_write: write as u8,
                origin: MmioOrigin::SimVmm as u8,
                device: device as u8,
                _pad: 0,
            }));
        }
    }

    pub fn command(&self, queue: u32, index: u32, w0: u64, w1: u64) {
        hooks::cmdqv_vmm_command(queue, index, w0, w1);
        if self.pipe.is_some() {
            self.send(bytes_of(&CommandEvent {
                hdr: header(EventKind::Command),
                queue,
                index,
                w0,
                w1,
            }));
        }
    }

    pub fn queue(&self, queue: u32, op: QueueOp, a: u64, b: u64) {
        hooks::cmdqv_vmm_queue(queue, op as u32, a, b);
        if self.pipe.is_some() {
            self.send(bytes_of(&QueueEvent {
                hdr: header(EventKind::Queue),
                queue,
                op: op as u32,
                a,
                b,
            }));
        }
    }
}

/// Turns model events into reports. `log2size` lookups let Enable events carry the ring size.
pub struct ModelObserver<'a> {
    pub emit: &'a Emitter,
    /// log2size of each global VCMDQ's ring (for Enable events).
    pub log2size: &'a dyn Fn(u16) -> u8,
}

impl Observer for ModelObserver<'_> {
    fn event(&mut self, ev: ModelEvent) {
        match ev {
            ModelEvent::Mmio {
                device,
                offset,
                size,
                value,
                write,
            } => {
                let d = match device {
                    DeviceKind::Cmdqv => 0,
                    DeviceKind::Smmu => 1,
                };
                self.emit.mmio(d, offset, value, size, write);
            }
            ModelEvent::Doorbell { queue, prod, cons } => {
                self.emit
                    .queue(queue as u32, QueueOp::Doorbell, prod as u64, cons as u64)
            }
            // A faulting command is reported like any command taken from the queue, so the
            // tracer can show the command an error stopped on.
            ModelEvent::CommandConsumed {
                queue,
                index,
                w0,
                w1,
            }
            | ModelEvent::CommandFaulted {
                queue,
                index,
                w0,
                w1,
            } => self.emit.command(queue as u32, index, w0, w1),
            ModelEvent::Consumed { queue, cons, prod } => {
                self.emit
                    .queue(queue as u32, QueueOp::Consumed, cons as u64, prod as u64)
            }
            ModelEvent::QueueError {
                queue,
                index,
                cerror,
            } => self
                .emit
                .queue(queue as u32, QueueOp::Error, index as u64, cerror as u64),
            ModelEvent::ErrorAck { queue, gerrorn } => {
                self.emit
                    .queue(queue as u32, QueueOp::ErrorAck, gerrorn as u64, 0)
            }
            ModelEvent::Enable {
                target: EnableTarget::Vcmdq(q),
                on,
            } => self.emit.queue(
                q as u32,
                QueueOp::Enable,
                on as u64,
                (self.log2size)(q) as u64,
            ),
            ModelEvent::AllocMap {
                queue,
                vintf,
                lvcmdq,
                alloc,
            } => self.emit.queue(
                queue as u32,
                QueueOp::Map,
                vintf as u64,
                lvcmdq as u64 | (alloc as u64) << 16,
            ),
            _ => {}
        }
    }
}
