//! The collection side of every live target: a [`Feed`] (eBPF ring buffer, the sim VMM's
//! in-process pipe, or a trace file) drained into a [`Collector`] on its own thread, snapshots
//! published for the UI at a fixed cadence, optional recording, and headless JSON output.
//!
//! Collection never waits on rendering: the UI only ever takes the latest snapshot.

use std::{
    io::{BufReader, Read},
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc,
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use cmdqv_core::{
    analysis::{Collector, ProbeStatus, Summary},
    event::{Event, monotonic_ns},
    record::{MetaUpdate, TraceMeta, TraceWriter},
};

use crate::ebpf::Tracer;

/// One item from a feed.
pub enum FeedItem<'a> {
    /// A raw eBPF ABI record (decoded by the collector, length-checked).
    Raw(&'a [u8]),
    Event(Event),
}

/// Whether a feed can produce more.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum FeedStatus {
    Open,
    Ended,
}

/// A source of events.
pub trait Feed: Send {
    /// Waits up to `timeout` for data and hands every available item to `sink`.
    fn poll(&mut self, timeout: Duration, sink: &mut dyn FnMut(FeedItem<'_>))
    -> Result<FeedStatus>;
    /// Cumulative events lost before they reached us (ring buffer full, pipe overflow).
    fn drops(&self) -> u64;
}

/// Real eBPF probes.
pub struct TracerFeed(pub Tracer);

impl Feed for TracerFeed {
    fn poll(
        &mut self,
        timeout: Duration,
        sink: &mut dyn FnMut(FeedItem<'_>),
    ) -> Result<FeedStatus> {
        self.0.poll(timeout, |rec| sink(FeedItem::Raw(rec)))?;
        Ok(FeedStatus::Open)
    }

    fn drops(&self) -> u64 {
        self.0.drops()
    }
}

/// Length-prefixed ABI records read from a pipe (the sim VMM's in-process fallback), on a
/// reader thread with a bounded channel: when the collector falls behind, records are counted
/// as dropped, never buffered without bound.
pub struct PipeFeed {
    rx: mpsc::Receiver<Vec<u8>>,
    dropped: Arc<AtomicU64>,
    ended: Arc<AtomicBool>,
}

/// Capacity of the pipe feed's channel, in records.
pub const PIPE_CHANNEL_CAP: usize = 1 << 16;

impl PipeFeed {
    pub fn spawn<R: Read + Send + 'static>(reader: R) -> Self {
        let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(PIPE_CHANNEL_CAP);
        let dropped = Arc::new(AtomicU64::new(0));
        let ended = Arc::new(AtomicBool::new(false));
        let (d, e) = (dropped.clone(), ended.clone());
        thread::Builder::new()
            .name("cmdqv-pipe".into())
            .spawn(move || {
                let mut r = BufReader::with_capacity(1 << 16, reader);
                let mut len = [0u8; 4];
                loop {
                    if r.read_exact(&mut len).is_err() {
                        break;
                    }
                    let n = u32::from_le_bytes(len) as usize;
                    if n > 4096 {
                        break; // framing lost: stop rather than misread everything after
                    }
                    let mut buf = vec![0u8; n];
                    if r.read_exact(&mut buf).is_err() {
                        break;
                    }
                    match tx.try_send(buf) {
                        Ok(()) => {}
                        Err(mpsc::TrySendError::Full(_)) => {
                            d.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(mpsc::TrySendError::Disconnected(_)) => break,
                    }
                }
                e.store(true, Ordering::Release);
            })
            .expect("spawn pipe reader");
        Self { rx, dropped, ended }
    }
}

impl Feed for PipeFeed {
    fn poll(
        &mut self,
        timeout: Duration,
        sink: &mut dyn FnMut(FeedItem<'_>),
    ) -> Result<FeedStatus> {
        match self.rx.recv_timeout(timeout) {
            Ok(rec) => sink(FeedItem::Raw(&rec)),
            Err(mpsc::RecvTimeoutError::Timeout) => return Ok(FeedStatus::Open),
            Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(FeedStatus::Ended),
        }
        while let Ok(rec) = self.rx.try_recv() {
            sink(FeedItem::Raw(&rec));
        }
        if self.ended.load(Ordering::Acquire) && self.rx.try_recv().is_err() {
            // Drained everything the reader delivered before it stopped.
            return Ok(FeedStatus::Ended);
        }
        Ok(FeedStatus::Open)
    }

    fn drops(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Set by the SIGINT/SIGTERM handler of [`stop_on_signals`].
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(sig: libc::c_int) {
    // Only async-signal-safe work here: one atomic swap, or _exit on the second signal.
    if INTERRUPTED.swap(true, Ordering::SeqCst) {
        // SAFETY: _exit is async-signal-safe. The kernel still closes every fd, so even this
        // path leaves no probe attached (links and programs are fd-owned, nothing is pinned).
        unsafe { libc::_exit(128 + sig) };
    }
}

/// Makes Ctrl-C (SIGINT) and SIGTERM ask the collection loop to stop instead of killing the
/// process: [`collect`] returns, the feed (and with it the [`Tracer`] and every probe link) is
/// dropped, the trace file is flushed and the final summary printed. The TUI quits too. A second
/// signal exits at once.
pub fn stop_on_signals() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: a zeroed sigaction with a handler that only touches an atomic; no SA_RESTART
        // so blocking calls see EINTR and loops notice the flag promptly.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_stop_signal as *const () as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// Whether a stop signal arrived (see [`stop_on_signals`]).
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::Relaxed)
}

/// State shared between the collection thread and the UI.
#[derive(Default)]
pub struct Shared {
    pub latest: Mutex<Option<Summary>>,
    pub paused: AtomicBool,
    pub refresh_hz: AtomicU64,
    pub toggle_recording: AtomicBool,
    pub recording: Mutex<Option<String>>,
    pub stop: AtomicBool,
    /// The source has no more data (replay done, target exited).
    pub finished: AtomicBool,
}

/// Called with each interval's summary.
pub type IntervalFn = Box<dyn FnMut(&Summary) + Send>;

/// How a collection run is set up.
pub struct RunConfig {
    pub duration: Option<Duration>,
    /// Print one JSON summary per interval (headless `--interval`).
    pub interval: Option<Duration>,
    /// Record every event to this file from the start.
    pub record: Option<PathBuf>,
    /// Where `r` in the TUI records when no path was given.
    pub record_default: PathBuf,
    pub meta: TraceMeta,
    /// Called for every interval summary (headless printing).
    pub on_interval: Option<IntervalFn>,
    /// Extra probe statuses (e.g. fallback notes) to merge with the feed's.
    pub probes: Vec<ProbeStatus>,
    /// Checked every loop: returns false when the target is gone (e.g. the sim VMM exited).
    pub alive: Option<Box<dyn FnMut() -> bool + Send>>,
}

struct Recorder {
    w: TraceWriter,
    path: String,
}

fn open_recorder(path: &PathBuf, meta: &TraceMeta) -> Result<Recorder> {
    let w = TraceWriter::create(path, meta)
        .with_context(|| format!("creating trace file {}", path.display()))?;
    Ok(Recorder {
        w,
        path: path.display().to_string(),
    })
}

/// One item from a feed: decoded (a record that does not decode is counted as a drop), ingested
/// and, while recording, written to the trace file (a write error is kept for the caller).
fn take(
    item: FeedItem<'_>,
    collector: &mut Collector,
    recorder: &mut Option<Recorder>,
    decode_errors: &mut u64,
    record_error: &mut Option<String>,
) {
    // Raw records take the collector's decode + ingest path (the one the benchmark measures)
    // and are recorded as they came: the trace file stores the probes' own records.
    let written = match item {
        FeedItem::Raw(b) => match collector.ingest_raw(b) {
            Ok(rec) => recorder.as_mut().map(|r| (r.w.write_record(rec), &r.path)),
            Err(_) => {
                *decode_errors += 1;
                return;
            }
        },
        FeedItem::Event(ev) => {
            collector.ingest(&ev);
            recorder.as_mut().map(|r| (r.w.write(&ev), &r.path))
        }
    };
    if let Some((Err(e), path)) = written {
        *record_error = Some(format!("recording to {path} failed: {e}"));
    }
}

/// Runs a collection loop until the duration elapses, the feed ends, the target dies or
/// `shared.stop` is set. Returns the final summary.
pub fn collect(
    mut feed: Box<dyn Feed>,
    mut collector: Collector,
    mut cfg: RunConfig,
    shared: Arc<Shared>,
) -> Result<Summary> {
    collector.set_probes(cfg.probes.clone());
    let start = Instant::now();
    let mut last_publish = Instant::now() - Duration::from_secs(1);
    let mut last_interval = Instant::now();
    let mut last_meta = Instant::now();
    let mut recorder = match &cfg.record {
        Some(p) => Some(open_recorder(p, &cfg.meta)?),
        None => None,
    };
    if let Some(r) = &recorder {
        *shared.recording.lock().unwrap() = Some(r.path.clone());
    }
    let mut last_feed_drops = 0u64;
    let mut decode_errors = 0u64;
    let mut record_error: Option<String> = None;
    loop {
        let status = feed.poll(Duration::from_millis(20), &mut |item| {
            take(
                item,
                &mut collector,
                &mut recorder,
                &mut decode_errors,
                &mut record_error,
            )
        })?;
        if let Some(e) = record_error.take() {
            collector.add_note(e);
            recorder = None;
            *shared.recording.lock().unwrap() = None;
        }
        let fd = feed.drops();
        if fd > last_feed_drops {
            collector.add_drops(fd - last_feed_drops);
            last_feed_drops = fd;
        }
        if shared.toggle_recording.swap(false, Ordering::AcqRel) {
            match recorder.take() {
                Some(mut r) => {
                    let _ = r.w.flush();
                    *shared.recording.lock().unwrap() = None;
                }
                None => match open_recorder(&cfg.record_default, &cfg.meta) {
                    Ok(r) => {
                        *shared.recording.lock().unwrap() = Some(r.path.clone());
                        recorder = Some(r);
                    }
                    Err(e) => collector.add_note(format!("{e:#}")),
                },
            }
        }
        if let Some(r) = recorder.as_mut() {
            if last_meta.elapsed() >= Duration::from_secs(1) {
                last_meta = Instant::now();
                let _ = r.w.write_meta(&MetaUpdate {
                    ts_ns: monotonic_ns(),
                    drops_total: Some(last_feed_drops + decode_errors),
                    ..Default::default()
                });
                let _ = r.w.flush();
            }
        }
        let hz = shared.refresh_hz.load(Ordering::Relaxed).clamp(1, 60);
        if !shared.paused.load(Ordering::Relaxed)
            && last_publish.elapsed() >= Duration::from_millis(1000 / hz)
        {
            last_publish = Instant::now();
            *shared.latest.lock().unwrap() = Some(collector.snapshot(monotonic_ns()));
        }
        if let Some(iv) = cfg.interval {
            if last_interval.elapsed() >= iv {
                last_interval = Instant::now();
                let s = collector.snapshot(monotonic_ns());
                if let Some(f) = cfg.on_interval.as_mut() {
                    f(&s);
                }
                collector.reset_interval(monotonic_ns());
            }
        }
        let timed_out = cfg.duration.is_some_and(|d| start.elapsed() >= d);
        let dead = cfg.alive.as_mut().is_some_and(|f| !f());
        let stop = shared.stop.load(Ordering::Relaxed) || interrupted();
        if status == FeedStatus::Ended || timed_out || dead || stop {
            // Drain what is already buffered so nothing in flight is lost.
            let _ = feed.poll(Duration::from_millis(50), &mut |item| {
                take(
                    item,
                    &mut collector,
                    &mut recorder,
                    &mut decode_errors,
                    &mut record_error,
                )
            });
            if let Some(e) = record_error.take() {
                collector.add_note(e);
            }
            break;
        }
    }
    if let Some(mut r) = recorder {
        let _ = r.w.write_meta(&MetaUpdate {
            ts_ns: monotonic_ns(),
            drops_total: Some(feed.drops() + decode_errors),
            ..Default::default()
        });
        r.w.flush().context("flushing the trace file")?;
    }
    let fd = feed.drops();
    if fd > last_feed_drops {
        collector.add_drops(fd - last_feed_drops);
    }
    let s = collector.snapshot(monotonic_ns());
    *shared.latest.lock().unwrap() = Some(s.clone());
    shared.finished.store(true, Ordering::Relaxed);
    Ok(s)
}

/// Parses `5s`, `500ms`, `2m`, `1h`, or a plain number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let v: f64 = num
        .parse()
        .map_err(|_| format!("bad duration `{s}` (try 5s, 500ms, 2m)"))?;
    let secs = match unit {
        "ms" => v / 1000.0,
        "s" | "" => v,
        "m" | "min" => v * 60.0,
        "h" => v * 3600.0,
        _ => return Err(format!("bad duration unit in `{s}` (use ms, s, m or h)")),
    };
    if !secs.is_finite() || !(0.0..=1e7).contains(&secs) {
        return Err(format!("duration `{s}` out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units_and_reject_garbage() {
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert!(parse_duration("abc").is_err());
        assert!(parse_duration("5parsecs").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn pipe_feed_reads_framed_records_and_ends() {
        let mut bytes = Vec::new();
        for i in 0..3u8 {
            bytes.extend(4u32.to_le_bytes());
            bytes.extend([i; 4]);
        }
        let mut feed = PipeFeed::spawn(std::io::Cursor::new(bytes));
        let mut got = Vec::new();
        for _ in 0..50 {
            let st = feed
                .poll(Duration::from_millis(20), &mut |it| {
                    if let FeedItem::Raw(b) = it {
                        got.push(b.to_vec())
                    }
                })
                .unwrap();
            if st == FeedStatus::Ended {
                break;
            }
        }
        assert_eq!(got, vec![vec![0; 4], vec![1; 4], vec![2; 4]]);
        assert_eq!(feed.drops(), 0);
    }
}
