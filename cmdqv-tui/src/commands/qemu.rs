//! `cmdqv qemu`: trace a running QEMU (`--pid`) or launch one (`-- <command line>`) with the
//! best probe set its binary allows, and show the SMMU's own command queue as a queue row
//! (decoded commands, batch sizes, rates, latency) next to any VCMDQs.

use std::{
    path::PathBuf,
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, bail};
use clap::Args;
use cmdqv_core::{event::Source, host::discover};

use crate::{
    live::{LiveOptions, OutputArgs},
    metrics::MetricsArgs,
    qemu::{QemuOptions, QemuSession, feed::QemuFeed},
    runner::{self, LiveTarget},
};

#[derive(Args, Clone, Debug)]
pub struct QemuArgs {
    /// Attach to this running QEMU.
    #[arg(long)]
    pub pid: Option<u32>,
    // Prometheus metrics of QEMU's queues (--metrics-listen).
    #[command(flatten)]
    pub metrics: MetricsArgs,
    /// Also probe SMMU register reads (one uprobe + uretprobe on every MMIO read of every
    /// device: the costliest probe).
    #[arg(long)]
    pub mmio_reads: bool,
    /// Where a launched QEMU's console output goes.
    #[arg(long, default_value = "cmdqv-qemu-console.log")]
    pub console: PathBuf,
    /// UI refresh rate (frames per second).
    #[arg(long, default_value_t = 10)]
    pub refresh_hz: u32,
    #[command(flatten)]
    pub out: OutputArgs,
    /// A QEMU command line to launch and trace (after `--`).
    #[arg(last = true)]
    pub cmdline: Vec<String>,
}

/// Runs `cmdqv qemu` (or `cmdqv record -o FILE qemu`, with `record`).
pub fn run(a: QemuArgs, record: Option<PathBuf>) -> Result<()> {
    let opts = LiveOptions::new(&a.out, record, a.refresh_hz);
    runner::run_with_metrics(opts, &a.metrics, || start(&a))
}

fn start(a: &QemuArgs) -> Result<LiveTarget> {
    let (session, launched) = open_session(a)?;
    let pid = session.pid();
    let probes = session.probes().to_vec();
    let name = format!("qemu (pid {pid}, {:?} probes)", session.choice().set);
    let notes = session.choice().reasons.clone();
    Ok(LiveTarget {
        feed: Box::new(QemuFeed::new(session, launched)?),
        source: Source::Ebpf,
        name,
        pid,
        // A launched QEMU's argv is known here; reading /proc could race its exec.
        vm: if a.cmdline.is_empty() {
            discover::vm_of_pid(pid)
        } else {
            discover::vm_from_argv(&a.cmdline)
        },
        probes,
        notes,
        smmu_queue_from_mmio: true,
        record_default: PathBuf::from(format!("cmdqv-qemu-{pid}.cmdqv")),
        stop_after: a.out.duration,
    })
}

/// Attaches to `--pid` or launches the command line; returns the session and whether we
/// launched it.
fn open_session(a: &QemuArgs) -> Result<(QemuSession, bool)> {
    let opts = QemuOptions {
        mmio_reads: a.mmio_reads,
    };
    match (a.pid, a.cmdline.is_empty()) {
        (Some(_), false) => bail!("give either --pid PID or `-- <qemu command line>`, not both"),
        (None, true) => bail!(
            "nothing to trace: `cmdqv qemu --pid PID` or `cmdqv qemu -- qemu-system-aarch64 ...`"
        ),
        (Some(pid), true) => Ok((QemuSession::attach(pid, &opts)?, false)),
        (None, false) => {
            // The serial console would garble the TUI: QEMU's output goes to a file.
            let console = std::fs::File::create(&a.console).with_context(|| {
                format!("creating the QEMU console log {}", a.console.display())
            })?;
            let mut c = Command::new(&a.cmdline[0]);
            c.args(&a.cmdline[1..])
                .stdin(Stdio::null())
                .stdout(console.try_clone()?)
                .stderr(console);
            eprintln!("cmdqv: QEMU's console goes to {}", a.console.display());
            Ok((QemuSession::launch_command(c, &opts)?, true))
        }
    }
}
