//! `cmdqv host`: the running kernel's own SMMUv3 driver as the target. kprobes on its batch
//! submission (`arm_smmu_cmdq_issue_cmdlist`, its form read from the kernel's BTF) report every
//! command it issues, to which queue (on Grace the tegra241 VCMDQ the driver picked, or the
//! SMMU's own), with batch sizes and the CMD_SYNC wait; plus the tegra241-cmdqv and iommufd
//! functions and `iommu:*` tracepoints where the kernel has them. Everything goes through the
//! one live runner, like every other target.
//!
//! A script brackets a workload with `--ready-file` (created once every probe is attached) and
//! `--stop-file` (the run ends when it appears), or with SIGINT/SIGTERM.

use std::{
    fmt,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, bail};
use clap::Args;
use cmdqv_core::{analysis::ProbeStatus, event::Source};

use crate::{
    ebpf::{
        BATCHED_WAKEUP_BYTES, Tracer, TracerConfig,
        host_plan::{self, HostProbeConfig},
        probe_log::ProbeLog,
    },
    live::{Feed, FeedFuture, LiveOptions, OutputArgs, Sink, TracerFeed},
    metrics::MetricsArgs,
    runner::{self, LiveTarget},
};

/// Exit status of `cmdqv host` when no probe on the driver's batch submission attached.
pub const EXIT_NO_SUBMISSION_PROBE: i32 = 3;

const AFTER_HELP: &str = "\
Exit status: 0 after a run (stopped by --duration, --stop-file, SIGINT or SIGTERM); 1 on an error;
3 when no probe on arm_smmu_cmdq_issue_cmdlist attached (the kernel has no SMMUv3 driver, no BTF
to read the function's form from, or cannot attach kprobes): every probe's status goes to stderr.

Bracketing a workload from a script:
  cmdqv host --headless --json --ready-file /tmp/ready --stop-file /tmp/stop > host.json &
  while [ ! -e /tmp/ready ]; do sleep 0.1; done    # every probe attached
  <the workload>
  touch /tmp/stop; wait                              # host.json: one JSON summary";

#[derive(Args, Clone, Debug)]
#[command(after_help = AFTER_HELP)]
pub struct HostArgs {
    /// Create this file once every probe is attached (a script starts its workload then); an
    /// old one is removed at start.
    #[arg(long, value_name = "PATH")]
    pub ready_file: Option<PathBuf>,
    // Prometheus metrics of the host kernel's queues (--metrics-listen).
    #[command(flatten)]
    pub metrics: MetricsArgs,
    /// Stop when this file appears (looked for every 50 ms), as on SIGINT or SIGTERM.
    #[arg(long, value_name = "PATH", visible_alias = "until-file")]
    pub stop_file: Option<PathBuf>,
    /// UI refresh rate (frames per second).
    #[arg(long, default_value_t = 10)]
    pub refresh_hz: u32,
    #[command(flatten)]
    pub out: OutputArgs,
}

/// Runs `cmdqv host` (or `cmdqv record -o FILE host`, with `record`).
pub fn run(a: HostArgs, record: Option<PathBuf>) -> Result<()> {
    if let Some(stop) = &a.stop_file {
        if stop.exists() {
            bail!(
                "the stop file {} exists already (the run would end at once): remove it first",
                stop.display()
            );
        }
    }
    if let Some(ready) = &a.ready_file {
        // A file left from an earlier run would announce this one before it is ready.
        remove_if_there(ready)?;
    }
    let opts = LiveOptions::new(&a.out, record, a.refresh_hz);
    runner::run_with_metrics(opts, &a.metrics, || start(&a))
}

fn remove_if_there(p: &Path) -> Result<()> {
    match std::fs::remove_file(p) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing the old ready file {}", p.display()))
        }
        _ => Ok(()),
    }
}

/// Loads and attaches the host probes (also `cmdqv serve`'s host half).
pub fn start(a: &HostArgs) -> Result<LiveTarget> {
    let plan = HostProbeConfig::from_kernel();
    let tracer = Tracer::load(&TracerConfig {
        kernel: true,
        iommu: true,
        host: Some(plan.clone()),
        // The collector drains every 20 ms anyway: no wakeup per record.
        wakeup_bytes: BATCHED_WAKEUP_BYTES,
        ..Default::default()
    })?;
    let probes = tracer.probes().to_vec();
    if !host_plan::submission_attached(&probes) {
        return Err(NoSubmissionProbe { probes }.into());
    }
    let feed = HostFeed {
        inner: TracerFeed::new(tracer)?,
        stop_file: a.stop_file.clone(),
    };
    if let Some(ready) = &a.ready_file {
        std::fs::write(ready, b"")
            .with_context(|| format!("creating the ready file {}", ready.display()))?;
    }
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    Ok(LiveTarget {
        feed: Box::new(feed),
        source: Source::Ebpf,
        name: format!("host (Linux {})", release.trim()),
        pid: 0,
        // The host kernel is no VM.
        vm: None,
        probes,
        notes: plan.notes,
        smmu_queue_from_mmio: false,
        record_default: PathBuf::from("cmdqv-host.cmdqv"),
        stop_after: a.out.duration,
    })
}

/// `cmdqv host`'s error when nothing can see the driver submit: every host probe's status, and
/// whether this kernel could attach a kprobe at all.
#[derive(Debug)]
pub struct NoSubmissionProbe {
    pub probes: Vec<ProbeStatus>,
}

impl fmt::Display for NoSubmissionProbe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "no probe on {} attached: nothing can see this kernel's SMMUv3 driver submit commands",
            host_plan::ISSUE_FN
        )?;
        let (host, other): (Vec<_>, Vec<_>) = self
            .probes
            .iter()
            .partition(|p| p.name.contains("arm_smmu_cmdq"));
        for p in host {
            writeln!(f, "  {:<42} {:<17} {}", p.name, p.status, p.reason)?;
        }
        let attached = other.iter().filter(|p| p.status == "attached").count();
        writeln!(
            f,
            "  (of the other {} probes, {attached} attached: `cmdqv doctor` tells what this kernel allows)",
            other.len()
        )?;
        write!(
            f,
            "`cmdqv host` needs a Linux with the arm-smmu-v3 driver, its BTF and kprobes (an NVIDIA \
             Grace host; `cargo xtask guest --inside` runs one under QEMU)"
        )
    }
}

impl std::error::Error for NoSubmissionProbe {}

/// The kernel probes' records; the run also ends when the stop file appears.
struct HostFeed {
    inner: TracerFeed,
    stop_file: Option<PathBuf>,
}

impl Feed for HostFeed {
    fn next_batch<'a>(&'a mut self, sink: Sink<'a>) -> FeedFuture<'a> {
        self.inner.next_batch(sink)
    }

    fn drops(&self) -> u64 {
        self.inner.drops()
    }

    fn alive(&mut self) -> Result<bool> {
        Ok(self.stop_file.as_deref().is_none_or(|p| !p.exists()))
    }

    fn probe_log(&self) -> Option<&ProbeLog> {
        self.inner.probe_log()
    }
}
