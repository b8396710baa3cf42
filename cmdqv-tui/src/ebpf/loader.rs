//! The bottom of the eBPF loader: the embedded object, loading it with its filter written, and
//! reading the ring buffer it fills (synchronously with [`Tracer::poll`], or through tokio with
//! [`Tracer::into_async`] → [`AsyncTracer::next_batch`]). Which probes get attached is decided
//! above this file (`plan`, `qemu_plan`); this file only owns what every tracer has.
//!
//! Links are owned by the `aya::Ebpf` value: dropping a [`Tracer`] detaches everything, which is
//! what happens on exit, on Ctrl-C (the live runner turns SIGINT/SIGTERM into a normal return of
//! the collection loop, which drops the feed) and on panic (unwinding drops). Nothing is pinned,
//! so even a killed process leaves no probe behind: the kernel closes its fds.

use std::{
    io,
    os::fd::{AsFd as _, AsRawFd, RawFd},
    time::Duration,
};

use anyhow::{Context as _, bail};
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, MapData, PerCpuArray, RingBuf},
};
use aya_log::EbpfLogger;
use cmdqv_core::analysis::ProbeStatus;
use cmdqv_ebpf_common::{DROP_RINGBUF_FULL, DROP_SLOTS, FilterConfig};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use tokio::io::unix::AsyncFd;

use crate::ebpf::{iommufd_fds::IommufdFds, probe_log::ProbeLog};

/// The eBPF object built by build.rs (empty when built with AYA_BUILD_SKIP=1).
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/cmdqv-ebpf"));

/// A good wakeup threshold for a live view: ~1100 command records, 1/64 of the ring.
pub const BATCHED_WAKEUP_BYTES: u64 = 64 << 10;

/// How often an [`AsyncTracer`] with batched wakeups drains without being woken.
pub const WAKEUP_TICK: Duration = Duration::from_millis(20);

/// How a tracer reads its ring buffer, fixed when the object is loaded.
#[derive(Clone, Copy, Debug, Default)]
pub struct RingOptions {
    /// 0: the kernel wakes the reader on every record. N: only once N bytes wait; the reader
    /// then also drains on a timer ([`Tracer::poll`]'s timeout, [`WAKEUP_TICK`] in
    /// [`AsyncTracer`]). Per-record wakeups cost more than the probe itself in a VM (BENCHMARKS.md).
    pub wakeup_bytes: u64,
    /// Deliver mmap/munmap records of every fd, not only iommufd ones.
    pub all_mmaps: bool,
}

/// A loaded set of probes and the ring buffer they write to.
pub struct Tracer {
    // Field order matters: the ring buffer maps must drop before the Ebpf that owns the links.
    ring: RingBuf<MapData>,
    drops: PerCpuArray<MapData, u64>,
    logger: Option<EbpfLogger<ProbeLog>>,
    ebpf: Ebpf,
    probes: Vec<ProbeStatus>,
    log: ProbeLog,
    /// Userspace filter of mmap/munmap records (None with `all_mmaps`).
    fds: Option<IommufdFds>,
    /// The kernel does not wake the reader per record (`wakeup_bytes` != 0).
    batched_wakeups: bool,
}

/// Loads the embedded object, or says why it cannot be (built without it, no privileges).
pub fn load_object() -> anyhow::Result<Ebpf> {
    if OBJECT.is_empty() {
        bail!(
            "this cmdqv was built without its eBPF object (AYA_BUILD_SKIP=1); rebuild with `cargo xtask build`"
        );
    }
    EbpfLoader::new().load(OBJECT).map_err(|e| {
        let hint = if !nix::unistd::geteuid().is_root() {
            " (not root: run as root or grant CAP_BPF+CAP_PERFMON)"
        } else {
            ""
        };
        anyhow::anyhow!("loading the eBPF object failed{hint}: {e}")
    })
}

impl Tracer {
    /// Loads the object with `filter` in place and takes its ring buffer; no probe is attached
    /// yet ([`Tracer::load`] in `plan` attaches what a configuration asks for). Fails only if the
    /// object itself cannot be loaded.
    pub fn open(filter: FilterConfig, ring: RingOptions) -> anyhow::Result<Self> {
        let mut ebpf = load_object()?;
        let mut fmap: Array<_, FilterConfig> =
            Array::try_from(ebpf.map_mut("FILTER").context("FILTER map missing")?)?;
        fmap.set(0, filter, 0).context("writing the filter map")?;
        if ring.wakeup_bytes != 0 {
            let mut w: Array<_, u64> =
                Array::try_from(ebpf.map_mut("WAKEUP").context("WAKEUP map missing")?)?;
            w.set(0, ring.wakeup_bytes, 0)
                .context("writing the wakeup map")?;
        }
        let events = RingBuf::try_from(ebpf.take_map("EVENTS").context("EVENTS map missing")?)?;
        let drops = PerCpuArray::try_from(ebpf.take_map("DROPS").context("DROPS map missing")?)?;
        let log = ProbeLog::default();
        // An object without aya-log calls has no AYA_LOGS map: then there is nothing to read.
        let logger = EbpfLogger::init_with_logger(&mut ebpf, log.clone()).ok();
        Ok(Self {
            ring: events,
            drops,
            logger,
            ebpf,
            probes: Vec::new(),
            log,
            fds: (!ring.all_mmaps).then(IommufdFds::default),
            batched_wakeups: ring.wakeup_bytes != 0,
        })
    }

    /// Records the attach status of more probes.
    pub fn push_probes(&mut self, probes: impl IntoIterator<Item = ProbeStatus>) {
        self.probes.extend(probes);
    }

    /// Attach status of every probe that was requested.
    pub fn probes(&self) -> &[ProbeStatus] {
        &self.probes
    }

    /// Records lost in the kernel, summed over CPUs: those that did not fit into the ring
    /// buffer, and the host probes' calls nested too deeply to be tracked.
    pub fn drops(&self) -> u64 {
        (DROP_RINGBUF_FULL..DROP_SLOTS)
            .filter_map(|slot| self.drops.get(&slot, 0).ok())
            .map(|v| v.iter().copied().sum::<u64>())
            .sum()
    }

    /// The probes' own diagnostics (aya-log) received so far.
    pub fn probe_log(&self) -> &ProbeLog {
        &self.log
    }

    /// File descriptor that becomes readable when records are waiting (for poll/epoll/AsyncFd).
    pub fn ring_fd(&self) -> RawFd {
        self.ring.as_raw_fd()
    }

    /// mmap/munmap records left out because their fd is not an iommufd (not a loss).
    pub fn filtered(&self) -> u64 {
        self.fds.as_ref().map_or(0, IommufdFds::filtered)
    }

    /// Drains every waiting record into `f` without blocking; returns how many were delivered.
    pub fn drain(&mut self, mut f: impl FnMut(&[u8])) -> usize {
        if let Some(l) = self.logger.as_mut() {
            l.flush();
        }
        let mut n = 0;
        while let Some(item) = self.ring.next() {
            if self.fds.as_mut().is_none_or(|k| k.keep_raw(&item)) {
                f(&item);
                n += 1;
            }
        }
        n
    }

    /// Waits up to `timeout` until records are waiting (an interrupted wait counts as done).
    pub fn wait(&self, timeout: Duration) -> io::Result<()> {
        let mut fds = [PollFd::new(self.ring.as_fd(), PollFlags::POLLIN)];
        let ms = PollTimeout::try_from(timeout).unwrap_or(PollTimeout::MAX);
        match poll(&mut fds, ms) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Waits up to `timeout` for records, then drains them.
    pub fn poll(&mut self, timeout: Duration, f: impl FnMut(&[u8])) -> io::Result<usize> {
        self.wait(timeout)?;
        Ok(self.drain(f))
    }

    /// The in-kernel filter as it is now (including what the kernel learnt).
    pub fn filter(&mut self) -> anyhow::Result<FilterConfig> {
        Ok(self.filter_map()?.get(&0, 0)?)
    }

    /// Changes the in-kernel filter; the probes see the new value on their next hit.
    pub fn update_filter(&mut self, change: impl FnOnce(&mut FilterConfig)) -> anyhow::Result<()> {
        let mut m = self.filter_map()?;
        let mut f = m.get(&0, 0)?;
        change(&mut f);
        m.set(0, f, 0)?;
        Ok(())
    }

    fn filter_map(&mut self) -> anyhow::Result<Array<&mut MapData, FilterConfig>> {
        Ok(Array::try_from(
            self.ebpf.map_mut("FILTER").context("FILTER map missing")?,
        )?)
    }

    /// The underlying object (for attaching probes and doctor-style experiments).
    pub fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }

    /// The same tracer read through the tokio runtime (epoll on the ring buffer's fd). Call it
    /// inside a runtime with I/O enabled (tokio panics otherwise). On error the tracer is dropped,
    /// which detaches its probes.
    pub fn into_async(self) -> io::Result<AsyncTracer> {
        Ok(AsyncTracer {
            fd: register_ring(self)?,
        })
    }

    /// Whether readers should also drain on a timer (see [`RingOptions::wakeup_bytes`]).
    pub fn wakeup_tick(&self) -> Option<Duration> {
        self.batched_wakeups.then_some(WAKEUP_TICK)
    }
}

impl AsRawFd for Tracer {
    fn as_raw_fd(&self) -> RawFd {
        self.ring.as_raw_fd()
    }
}

/// A value whose [`AsRawFd`] is the ring buffer of a [`Tracer`] it owns.
///
/// # Safety
///
/// `as_raw_fd` must return the same open fd for as long as the value lives (tokio's
/// `AsyncFd::register` contract): the fd must be owned by the value, not borrowed.
pub unsafe trait OwnsRingFd: AsRawFd {}

// SAFETY: the fd is the ring buffer map's, owned by `self.ring` for the Tracer's whole life.
unsafe impl OwnsRingFd for Tracer {}

/// Registers a ring-buffer owner with the tokio reactor for readability. Call it inside a
/// runtime with I/O enabled.
pub fn register_ring<T: OwnsRingFd>(owner: T) -> io::Result<AsyncFd<T>> {
    // SAFETY: OwnsRingFd guarantees the fd stays open and the same while `owner` lives, and
    // `owner` lives inside the AsyncFd.
    let fd = unsafe { AsyncFd::register_with_interest(owner, tokio::io::Interest::READABLE) };
    fd.map_err(|e| e.into_parts().1)
}

/// Waits until `fd` is readable and runs `drain` on what it wraps, until `drain` delivers at
/// least one item; returns that count. With `tick`, a quiet tail that never wakes the reader
/// (batched wakeups) is drained every `tick`. Cancel-safe as long as `drain` is synchronous:
/// nothing is half-delivered when the future is dropped.
pub async fn next_ready<T: AsRawFd, E: From<io::Error>>(
    fd: &mut AsyncFd<T>,
    tick: Option<Duration>,
    mut drain: impl FnMut(&mut T) -> Result<usize, E>,
) -> Result<usize, E> {
    loop {
        let ready = match tick {
            Some(t) => tokio::time::timeout(t, fd.readable_mut()).await.ok(),
            None => Some(fd.readable_mut().await),
        };
        let n = match ready {
            Some(guard) => {
                let mut guard = guard?;
                let n = drain(guard.get_inner_mut())?;
                // The ring is empty now; tokio only clears readiness if no wakeup came in
                // since the guard was taken, so a record submitted meanwhile is not missed.
                guard.clear_ready();
                n
            }
            None => drain(fd.get_mut())?,
        };
        if n > 0 {
            return Ok(n);
        }
    }
}

/// A [`Tracer`] whose ring buffer is read through the async runtime: `next_batch` waits for
/// readiness without a thread blocked in poll(2). Must be created and used inside a tokio
/// runtime with I/O enabled. Dropping it drops the tracer (and detaches every probe).
pub struct AsyncTracer {
    fd: AsyncFd<Tracer>,
}

impl AsyncTracer {
    /// Waits until records are waiting, hands each to `f`, and returns how many were delivered
    /// (at least one). Cancel-safe: a record is never half-delivered.
    pub async fn next_batch(&mut self, mut f: impl FnMut(&[u8])) -> io::Result<usize> {
        let tick = self.fd.get_ref().wakeup_tick();
        next_ready(&mut self.fd, tick, |t: &mut Tracer| {
            Ok::<_, io::Error>(t.drain(&mut f))
        })
        .await
    }

    pub fn get_ref(&self) -> &Tracer {
        self.fd.get_ref()
    }

    pub fn get_mut(&mut self) -> &mut Tracer {
        self.fd.get_mut()
    }

    /// Back to the synchronous tracer (deregisters from the runtime, keeps the probes).
    pub fn into_inner(self) -> Tracer {
        self.fd.into_inner()
    }
}
