//! The collection loop every live target runs: one tokio select over the feed, the snapshot
//! timer, the `--interval` timer, a housekeeping tick (drops, recorder meta, is the target
//! still there), the TUI's control messages, the stop signals and the deadline.
//!
//! Collection never waits on rendering: snapshots go out through a one-slot channel where the
//! newest wins, and ingesting happens inside the feed's own branch.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Result;
use cmdqv_core::{
    analysis::{Collector, Summary},
    event::monotonic_ns,
    record::TraceMeta,
};
use tokio::{
    sync::mpsc,
    time::{Instant, Interval, MissedTickBehavior, interval, interval_at, sleep_until},
};

use crate::{
    live::{
        feed::{Feed, FeedItem, FeedStatus},
        logging,
        output::Printer,
        recorder::Recorder,
        signals::{StopSignal, interrupted},
    },
    metrics::{self, MetricsState, RefreshRequest},
    runner::ui_link::RunnerLink,
    tui::Control,
};

/// How often drops are counted, the recorder's meta written and the target checked.
const HOUSEKEEPING: Duration = Duration::from_millis(50);
/// After the stop, what is still buffered is drained until the feed is this quiet ...
const DRAIN_QUIET: Duration = Duration::from_millis(50);
/// ... or for at most this long.
const DRAIN_MAX: Duration = Duration::from_millis(250);
/// Probe log messages shown as notes; the rest are only counted.
const PROBE_NOTES: u64 = 8;

/// What one collection run does besides ingesting.
pub struct Collection {
    /// Hard stop after this long.
    pub stop_after: Option<Duration>,
    /// Print a summary per interval.
    pub interval: Option<Duration>,
    pub printer: Printer,
    /// Record every event to this file from the start.
    pub record: Option<PathBuf>,
    /// Where `r` in the TUI records when no path was given.
    pub record_default: PathBuf,
    pub meta: TraceMeta,
    /// Snapshots per second for the TUI.
    pub refresh_hz: u32,
    /// Where the figures go for `/metrics`.
    pub metrics: Option<MetricsFeed>,
}

/// The live loop's side of the metrics endpoint: the state it writes, under which `vm` label,
/// and the scrapes' requests for fresh figures.
pub struct MetricsFeed {
    pub state: Arc<Mutex<MetricsState>>,
    pub vm: String,
    pub pid: Option<u32>,
    /// None once the endpoint is gone (or when nothing asks: the state is written at the
    /// intervals and at the end only).
    pub requests: Option<mpsc::Receiver<RefreshRequest>>,
}

/// What happens to every item of a feed: decoded (a record that does not decode is counted as
/// a drop), ingested and, while recording, written to the trace file.
struct Intake {
    collector: Collector,
    recorder: Option<Recorder>,
    decode_errors: u64,
    /// A write error, kept for the loop to act on (the recording stops).
    record_error: Option<String>,
}

impl Intake {
    fn take(&mut self, item: FeedItem<'_>) {
        // Raw records take the collector's decode + ingest path (the one the benchmark
        // measures; a record that does not decode is counted there as a drop) and are recorded
        // as they came: the trace file stores the probes' own records.
        let written = match item {
            FeedItem::Raw(b) => match self.collector.ingest_raw(b) {
                Ok(rec) => self.recorder.as_mut().map(|r| r.write_record(rec)),
                Err(_) => {
                    self.decode_errors += 1;
                    return;
                }
            },
            FeedItem::Event(ev) => {
                self.collector.ingest(&ev);
                self.recorder.as_mut().map(|r| r.write(&ev))
            }
        };
        if let Some(Err(e)) = written {
            self.record_error = Some(e);
        }
    }
}

/// What woke the loop.
enum Step {
    Fed(FeedStatus),
    Publish,
    Interval,
    Housekeeping,
    Control(Option<Control>),
    /// A scrape wants fresh figures (None: the endpoint went away).
    Metrics(Option<RefreshRequest>),
    Stop,
}

/// Collects from `feed` until it ends, the target goes away, the deadline passes, a stop signal
/// arrives or the UI quits; returns the final summary (also published to the UI).
pub async fn collect(
    feed: &mut dyn Feed,
    collector: Collector,
    cfg: Collection,
    ui: Option<RunnerLink>,
    stop: &mut StopSignal,
) -> Result<Summary> {
    let recorder = match &cfg.record {
        Some(p) => Some(Recorder::create(p, &cfg.meta)?),
        None => None,
    };
    if let (Some(ui), Some(r)) = (&ui, &recorder) {
        ui.set_recording(Some(r.path().to_string()));
    }
    let mut run = Run {
        feed,
        intake: Intake {
            collector,
            recorder,
            decode_errors: 0,
            record_error: None,
        },
        publish: publish_timer(cfg.refresh_hz),
        cfg,
        ui,
        feed_drops: 0,
        paused: false,
        probe_notes: 0,
        fatal: None,
    };
    if !interrupted() {
        run.until_stopped(stop).await?;
    }
    run.finish().await
}

struct Run<'f> {
    feed: &'f mut dyn Feed,
    intake: Intake,
    publish: Interval,
    cfg: Collection,
    ui: Option<RunnerLink>,
    /// Feed drops already added to the collector.
    feed_drops: u64,
    paused: bool,
    /// Probe log messages seen so far.
    probe_notes: u64,
    /// Why the run had to stop early (the trace file of `cmdqv record` failed).
    fatal: Option<String>,
}

fn publish_timer(hz: u32) -> Interval {
    let hz = u64::from(hz.clamp(1, 60));
    let mut t = interval(Duration::from_millis(1000 / hz));
    t.set_missed_tick_behavior(MissedTickBehavior::Delay);
    t
}

/// Ticks of an optional timer (never, without one).
async fn tick(t: &mut Option<Interval>) {
    match t {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// The UI's next control message (never, headless).
async fn control(ui: &mut Option<RunnerLink>) -> Option<Control> {
    match ui {
        Some(l) => l.control().await,
        None => std::future::pending().await,
    }
}

/// The next scrape's request for fresh figures (never, without an endpoint).
async fn scrape(m: &mut Option<MetricsFeed>) -> Option<RefreshRequest> {
    match m.as_mut().and_then(|m| m.requests.as_mut()) {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn deadline(at: Option<Instant>) {
    match at {
        Some(at) => sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl Run<'_> {
    async fn until_stopped(&mut self, stop: &mut StopSignal) -> Result<()> {
        let mut housekeeping = interval(HOUSEKEEPING);
        let mut intervals = self.cfg.interval.map(|d| {
            let mut t = interval_at(Instant::now() + d, d);
            t.set_missed_tick_behavior(MissedTickBehavior::Delay);
            t
        });
        let end = self.cfg.stop_after.map(|d| Instant::now() + d);
        loop {
            let intake = &mut self.intake;
            let mut sink = |item: FeedItem<'_>| intake.take(item);
            let publishing = self.ui.is_some() && !self.paused;
            let step = tokio::select! {
                r = self.feed.next_batch(&mut sink) => Step::Fed(r?),
                _ = self.publish.tick(), if publishing => Step::Publish,
                _ = tick(&mut intervals) => Step::Interval,
                _ = housekeeping.tick() => Step::Housekeeping,
                c = control(&mut self.ui) => Step::Control(c),
                r = scrape(&mut self.cfg.metrics) => Step::Metrics(r),
                _ = stop.wait() => Step::Stop,
                _ = deadline(end) => Step::Stop,
            };
            let go_on = match step {
                Step::Fed(status) => self.settle_record_error() && status == FeedStatus::Open,
                Step::Publish => {
                    self.publish();
                    true
                }
                Step::Interval => {
                    self.print_interval();
                    true
                }
                Step::Housekeeping => self.housekeeping()?,
                Step::Control(Some(c)) => self.on_control(c),
                Step::Metrics(r) => {
                    self.answer_scrape(r);
                    true
                }
                Step::Control(None) | Step::Stop => false,
            };
            if !go_on {
                return Ok(());
            }
        }
    }

    fn publish(&mut self) {
        if let Some(ui) = &self.ui {
            let mut s = self.intake.collector.snapshot(monotonic_ns());
            self.feed.amend_live(&mut s);
            ui.publish(s);
        }
    }

    fn print_interval(&mut self) {
        let c = &mut self.intake.collector;
        let s = c.snapshot(monotonic_ns());
        self.cfg.printer.print(&s);
        c.reset_interval(monotonic_ns());
        // The metrics take the interval's last figures, then count the next one from zero.
        if let Some(m) = &self.cfg.metrics {
            let mut state = metrics::lock(&m.state);
            state.apply_summary(&m.vm, m.pid, &s);
            state.interval_restarted(&m.vm);
        }
    }

    /// Brings the metrics up to date for a scrape, then lets it go on.
    fn answer_scrape(&mut self, request: Option<RefreshRequest>) {
        let Some(done) = request else {
            if let Some(m) = self.cfg.metrics.as_mut() {
                m.requests = None;
            }
            return;
        };
        self.count_feed_drops();
        self.write_metrics(&self.intake.collector.snapshot(monotonic_ns()));
        let _ = done.send(());
    }

    fn write_metrics(&self, s: &Summary) {
        if let Some(m) = &self.cfg.metrics {
            metrics::lock(&m.state).apply_summary(&m.vm, m.pid, s);
        }
    }

    /// A failed trace-file write ends the recording; the summary says why. A run that exists
    /// to record (`cmdqv record`, `--record`) stops too: returns whether to go on.
    fn settle_record_error(&mut self) -> bool {
        let Some(e) = self.intake.record_error.take() else {
            return true;
        };
        // Dropping the writer hands the kernel what it still takes; a record cut short at the
        // end is one the reader leaves out.
        self.intake.recorder = None;
        self.set_recording(None);
        if let Some(path) = &self.cfg.record {
            self.fatal = Some(format!(
                "{e}; stopped: {} replays up to its last complete record",
                path.display()
            ));
            return false;
        }
        self.intake.collector.add_note(e);
        true
    }

    fn set_recording(&self, path: Option<String>) {
        if let Some(ui) = &self.ui {
            ui.set_recording(path);
        }
    }

    /// Returns whether the target is still there.
    fn housekeeping(&mut self) -> Result<bool> {
        self.count_feed_drops();
        let total = self.feed_drops + self.intake.decode_errors;
        if let Some(Err(e)) = self.intake.recorder.as_mut().map(|r| r.tick(total)) {
            self.intake.record_error = Some(e);
        }
        self.take_probe_log();
        Ok(self.settle_record_error() && self.feed.alive()?)
    }

    fn count_feed_drops(&mut self) {
        let d = self.feed.drops();
        if d > self.feed_drops {
            self.intake.collector.add_drops(d - self.feed_drops);
            self.feed_drops = d;
        }
    }

    /// The first few probe log messages become notes; the rest are counted at the end. Log
    /// lines held while the TUI owns the terminal (the probes' among them) go to its log pane.
    fn take_probe_log(&mut self) {
        let held = logging::take_held();
        if !held.is_empty() {
            let now = monotonic_ns();
            for l in held {
                self.intake.collector.add_log_text(now, l);
            }
        }
        let Some(log) = self.feed.probe_log() else {
            return;
        };
        for m in log.take() {
            if self.probe_notes < PROBE_NOTES {
                self.intake.collector.add_note(format!("probe log: {m}"));
            }
            self.probe_notes += 1;
        }
    }

    /// Returns whether to go on.
    fn on_control(&mut self, c: Control) -> bool {
        match c {
            Control::Pause(p) => self.paused = p,
            Control::RefreshHz(hz) => self.publish = publish_timer(hz),
            Control::ToggleRecording => self.toggle_recording(),
            Control::Quit => return false,
        }
        true
    }

    fn toggle_recording(&mut self) {
        if let Some(r) = self.intake.recorder.take() {
            r.stop();
            self.set_recording(None);
            return;
        }
        match Recorder::create(&self.cfg.record_default, &self.cfg.meta) {
            Ok(r) => {
                self.set_recording(Some(r.path().to_string()));
                self.intake.recorder = Some(r);
            }
            Err(e) => self.intake.collector.add_note(format!("{e:#}")),
        }
    }

    /// Drains what is still in flight, closes the recording and takes the final summary.
    async fn finish(mut self) -> Result<Summary> {
        if let Some(e) = self.fatal.take() {
            anyhow::bail!(e);
        }
        self.drain_rest().await;
        if let Some(e) = self.intake.record_error.take() {
            self.intake.collector.add_note(e);
        }
        if let Some(r) = self.intake.recorder.take() {
            r.finish(self.feed.drops() + self.intake.decode_errors)?;
        }
        self.count_feed_drops();
        self.take_probe_log();
        if let Some(total) = self.feed.probe_log().map(|l| l.total()) {
            if total > PROBE_NOTES {
                self.intake.collector.add_note(format!(
                    "probe log: {total} messages in all, the first {PROBE_NOTES} shown"
                ));
            }
        }
        let s = self.intake.collector.snapshot(monotonic_ns());
        self.write_metrics(&s);
        if let Some(ui) = &self.ui {
            ui.publish(s.clone());
        }
        Ok(s)
    }

    /// Takes what is already buffered so nothing in flight is lost, until the feed ends or is
    /// quiet (bounded, so a target that keeps producing cannot hold the stop up).
    async fn drain_rest(&mut self) {
        let until = Instant::now() + DRAIN_MAX;
        let intake = &mut self.intake;
        let mut sink = |item: FeedItem<'_>| intake.take(item);
        while Instant::now() < until {
            let batch = tokio::time::timeout(DRAIN_QUIET, self.feed.next_batch(&mut sink)).await;
            if !matches!(batch, Ok(Ok(FeedStatus::Open))) {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        ebpf::probe_log::ProbeLog,
        live::feed::{FeedFuture, Sink},
    };
    use cmdqv_core::{
        analysis::CollectorConfig,
        event::{Device, Event, Payload, Source},
    };

    /// Hands out its batches one per call, then ends.
    struct Scripted {
        batches: Vec<Vec<Vec<u8>>>,
        drops: u64,
        log: ProbeLog,
    }

    impl Feed for Scripted {
        fn next_batch<'a>(&'a mut self, sink: Sink<'a>) -> FeedFuture<'a> {
            Box::pin(async move {
                if self.batches.is_empty() {
                    return Ok(FeedStatus::Ended);
                }
                for rec in self.batches.remove(0) {
                    sink(FeedItem::Raw(&rec));
                }
                Ok(FeedStatus::Open)
            })
        }

        fn drops(&self) -> u64 {
            self.drops
        }

        fn probe_log(&self) -> Option<&ProbeLog> {
            Some(&self.log)
        }
    }

    fn mmio_write(ts_ns: u64) -> Vec<u8> {
        let ev = Event {
            ts_ns,
            pid: 1,
            tid: 1,
            cpu: 0,
            payload: Payload::Mmio {
                device: Device::Smmu,
                offset: 0x20,
                value: 1,
                size: 4,
                write: true,
            },
        };
        cmdqv_core::probe_abi::encode(&ev).unwrap()
    }

    #[test]
    fn a_feed_is_collected_to_its_end_with_every_loss_and_probe_message_accounted() {
        let log = ProbeLog::default();
        for i in 0..(PROBE_NOTES + 2) {
            log.warn("cmdqv_ebpf", format_args!("read {i} failed"));
        }
        let mut feed = Scripted {
            batches: vec![
                vec![mmio_write(10), mmio_write(20)],
                vec![b"not a record".to_vec(), mmio_write(30)],
            ],
            drops: 5,
            log,
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let s = rt.block_on(async {
            let mut stop = StopSignal::install().unwrap();
            let collector = Collector::new(CollectorConfig::new(Source::Ebpf, "scripted"));
            let cfg = Collection {
                stop_after: Some(Duration::from_secs(30)),
                interval: None,
                printer: Printer {
                    json: true,
                    target: Default::default(),
                },
                record: None,
                record_default: PathBuf::from("unused.cmdqv"),
                meta: TraceMeta::new(Source::Ebpf, "scripted"),
                refresh_hz: 10,
                metrics: None,
            };
            collect(&mut feed, collector, cfg, None, &mut stop)
                .await
                .unwrap()
        });
        assert_eq!(s.events, 3);
        assert_eq!(
            s.drops,
            5 + 1,
            "the feed's drops and the undecodable record"
        );
        let probe_notes: Vec<_> = s
            .notes
            .iter()
            .filter(|n| n.starts_with("probe log:"))
            .collect();
        assert_eq!(probe_notes.len() as u64, PROBE_NOTES + 1, "{probe_notes:?}");
        assert_eq!(probe_notes[0], "probe log: WARN cmdqv_ebpf: read 0 failed");
        assert_eq!(
            probe_notes.last().unwrap().as_str(),
            "probe log: 10 messages in all, the first 8 shown"
        );
    }
}
