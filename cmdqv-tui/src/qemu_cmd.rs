//! `cmdqv qemu`: trace a running QEMU (`--pid`) or launch one (`-- <command line>`) with the
//! best probe set its binary allows, and show the SMMU's own command queue as a queue row
//! (decoded commands, batch sizes, rates, latency) next to any VCMDQs.

use std::{
    path::PathBuf,
    process::{Command, Stdio},
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use cmdqv_core::{
    analysis::{Collector, CollectorConfig, Summary},
    event::{Source, monotonic_ns},
    record::TraceMeta,
};

use crate::{
    live::{self, Feed, FeedItem, FeedStatus, RunConfig, Shared},
    qemu_target::{QemuOptions, QemuSession},
};

/// A traced QEMU as a feed of decoded events.
pub struct QemuFeed {
    session: QemuSession,
    launched: bool,
}

impl Feed for QemuFeed {
    fn poll(
        &mut self,
        timeout: Duration,
        sink: &mut dyn FnMut(FeedItem<'_>),
    ) -> Result<FeedStatus> {
        self.session.poll(timeout, |ev| sink(FeedItem::Event(ev)))?;
        let ended = if self.launched {
            self.session.try_exit()?.is_some()
        } else {
            // An attached QEMU that went away ends the session (try_exit reports it as an error).
            self.session.try_exit().is_err()
        };
        if ended {
            while self
                .session
                .poll(Duration::ZERO, |ev| sink(FeedItem::Event(ev)))?
                > 0
            {}
            return Ok(FeedStatus::Ended);
        }
        Ok(FeedStatus::Open)
    }

    fn drops(&self) -> u64 {
        self.session.drops()
    }
}

#[derive(Clone, Debug)]
pub struct QemuCmdOptions {
    pub pid: Option<u32>,
    pub cmdline: Vec<String>,
    pub mmio_reads: bool,
    /// Where a launched QEMU's stdout/stderr go (its serial console would garble the TUI).
    pub console: PathBuf,
    pub duration: Option<Duration>,
    pub interval: Option<Duration>,
    pub record: Option<PathBuf>,
    pub json: bool,
    pub headless: bool,
    pub refresh_hz: u32,
}

pub fn run(o: QemuCmdOptions) -> Result<Option<Summary>> {
    let qopts = QemuOptions {
        mmio_reads: o.mmio_reads,
    };
    let (session, launched) = match (o.pid, o.cmdline.is_empty()) {
        (Some(_), false) => bail!("give either --pid PID or `-- <qemu command line>`, not both"),
        (None, true) => bail!(
            "nothing to trace: `cmdqv qemu --pid PID` or `cmdqv qemu -- qemu-system-aarch64 ...`"
        ),
        (Some(pid), true) => (QemuSession::attach(pid, &qopts)?, false),
        (None, false) => {
            let console = std::fs::File::create(&o.console).with_context(|| {
                format!("creating the QEMU console log {}", o.console.display())
            })?;
            let mut c = Command::new(&o.cmdline[0]);
            c.args(&o.cmdline[1..])
                .stdin(Stdio::null())
                .stdout(console.try_clone()?)
                .stderr(console);
            eprintln!("cmdqv: QEMU's console goes to {}", o.console.display());
            (QemuSession::launch_command(c, &qopts)?, true)
        }
    };
    let pid = session.pid();
    let probes = session.probes().to_vec();
    let target = format!("qemu (pid {pid}, {:?} probes)", session.choice().set);
    let mut cfg = CollectorConfig::new(Source::Ebpf, target.clone());
    cfg.start_ns = Some(monotonic_ns());
    cfg.reg_name = Some(crate::reg_name);
    cfg.intervals = o.interval.is_some();
    cfg.smmu_queue_from_mmio = true;
    for r in &session.choice().reasons {
        cfg.notes.push(r.clone());
    }
    let collector = Collector::new(cfg);
    let mut meta = TraceMeta::new(Source::Ebpf, target);
    meta.pid = Some(pid);
    meta.probes = probes.clone();
    meta.start_ns = Some(monotonic_ns());
    meta.smmu_queue_from_mmio = true;
    let shared = Arc::new(Shared::default());
    shared
        .refresh_hz
        .store(o.refresh_hz.max(1) as u64, Ordering::Relaxed);
    let json = o.json;
    let on_interval: Option<live::IntervalFn> = o.interval.map(|_| {
        Box::new(move |s: &Summary| {
            if json {
                crate::output::print_json(s)
            } else {
                crate::output::print_text(s)
            }
        }) as live::IntervalFn
    });
    let run = RunConfig {
        duration: o.duration,
        interval: o.interval,
        record: o.record.clone(),
        record_default: PathBuf::from(format!("cmdqv-qemu-{pid}.cmdqv")),
        meta,
        on_interval,
        probes,
        alive: None,
    };
    let feed: Box<dyn Feed> = Box::new(QemuFeed { session, launched });
    if o.headless {
        return Ok(Some(live::collect(feed, collector, run, shared)?));
    }
    let sh = shared.clone();
    let t = std::thread::Builder::new()
        .name("cmdqv-collect".into())
        .spawn(move || live::collect(feed, collector, run, sh))?;
    let ui = crate::tui_source::run_tui(shared.clone(), o.refresh_hz);
    shared.stop.store(true, Ordering::Relaxed);
    match t.join() {
        Ok(r) => {
            r?;
        }
        Err(_) => bail!("the collector thread panicked"),
    }
    ui?;
    Ok(None)
}
