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

use crate::{
    engine::{DeviceKind, EnableTarget, ModelEvent, Observer},
    event::{Device, Event, Payload, QueueEvent, monotonic_ns},
    probe_abi,
    sim::hooks,
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

/// An event stamped now, in this thread (what a probe's header would say).
fn stamped(payload: Payload) -> Event {
    // SAFETY: plain libc calls without pointers.
    let (pid, tid, cpu) = unsafe {
        (
            libc::getpid() as u32,
            libc::gettid() as u32,
            libc::sched_getcpu().max(0) as u32,
        )
    };
    Event {
        ts_ns: monotonic_ns(),
        pid,
        tid,
        cpu,
        payload,
    }
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

    /// The in-process fallback: the very record the probe would have written.
    fn send(&self, payload: Payload) {
        if let Some(tx) = &self.pipe {
            if let Some(rec) = probe_abi::encode(&stamped(payload)) {
                let _ = tx.send(rec);
            }
        }
    }

    pub fn mmio(&self, device: Device, offset: u64, value: u64, size: u8, write: bool) {
        let d = match device {
            Device::Cmdqv => 0,
            Device::Smmu => 1,
        };
        hooks::cmdqv_vmm_mmio(d, offset, value, size as u32, write as u32);
        self.send(Payload::Mmio {
            device,
            offset,
            value,
            size,
            write,
        });
    }

    pub fn command(&self, queue: u32, index: u32, w0: u64, w1: u64) {
        hooks::cmdqv_vmm_command(queue, index, w0, w1);
        self.send(Payload::Command {
            queue,
            index,
            w0,
            w1,
        });
    }

    pub fn queue(&self, queue: u32, event: QueueEvent) {
        let (op, a, b) = probe_abi::queue_words(&event);
        hooks::cmdqv_vmm_queue(queue, op, a, b);
        self.send(Payload::Queue { queue, event });
    }
}

/// Turns model events into reports. `log2size` lookups let Enable events carry the ring size.
pub struct ModelObserver<'a> {
    pub emit: &'a Emitter,
    /// log2size of each global VCMDQ's ring (for Enable events).
    pub log2size: &'a dyn Fn(u16) -> u8,
}

impl ModelObserver<'_> {
    /// The queue event a model event reports, if it reports one: (global queue, event).
    fn queue_event(&self, ev: &ModelEvent) -> Option<(u16, QueueEvent)> {
        Some(match *ev {
            ModelEvent::Doorbell { queue, prod, cons } => {
                (queue, QueueEvent::Doorbell { prod, cons })
            }
            ModelEvent::Consumed { queue, cons, prod } => {
                (queue, QueueEvent::Consumed { cons, prod })
            }
            ModelEvent::QueueError {
                queue,
                index,
                cerror,
            } => {
                let cerror = cerror.into();
                (queue, QueueEvent::Error { index, cerror })
            }
            ModelEvent::ErrorAck { queue, gerrorn } => (queue, QueueEvent::ErrorAck { gerrorn }),
            ModelEvent::Enable {
                target: EnableTarget::Vcmdq(q),
                on,
            } => {
                let log2size = (self.log2size)(q);
                let enabled = on;
                (q, QueueEvent::Enable { enabled, log2size })
            }
            ModelEvent::AllocMap {
                queue,
                vintf,
                lvcmdq,
                alloc,
            } => {
                let (vintf, lvcmdq) = (vintf.into(), lvcmdq.into());
                (
                    queue,
                    QueueEvent::Map {
                        vintf,
                        lvcmdq,
                        alloc,
                    },
                )
            }
            _ => return None,
        })
    }
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
                    DeviceKind::Cmdqv => Device::Cmdqv,
                    DeviceKind::Smmu => Device::Smmu,
                };
                self.emit.mmio(d, offset, value, size, write);
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
            } => self.emit.command(queue.into(), index, w0, w1),
            _ => {
                if let Some((queue, event)) = self.queue_event(&ev) {
                    self.emit.queue(queue.into(), event);
                }
            }
        }
    }
}
