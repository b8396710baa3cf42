//! `cmdqv`: watch Tegra241 CMDQV / SMMUv3 command-queue traffic live, record, replay, and check
//! what this machine can trace. This file is the command line and its dispatch; every
//! subcommand lives in `cmdqv_tui::commands`.

use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand};
use cmdqv_tui::commands::{
    bench_hook::{self, BenchHookArgs},
    bench_probes::{self, BenchProbesArgs},
    bench_serve::{self, BenchServeArgs},
    completions::{self, CompletionsArgs, ManArgs},
    config::{self as config_cmd, ConfigArgs},
    diff::{self, DiffArgs, EXIT_NOTHING_MATCHED, NothingMatched},
    doctor::{self, DoctorArgs},
    export::{self, ExportArgs},
    host::{self, EXIT_NO_SUBMISSION_PROBE, HostArgs, NoSubmissionProbe},
    model::{self, ModelArgs},
    qemu::{self, QemuArgs},
    record::{self, RecordArgs},
    replay::{self, ReplayArgs},
    report::{self, ReportArgs},
    sample::{self, SampleArgs},
    serve::{self, ServeArgs},
    sim::{self, SimArgs},
    sim_vmm::{self, SimVmmArgs},
};
use cmdqv_tui::tui::config;

#[derive(Parser)]
#[command(
    name = "cmdqv",
    version = cmdqv_tui::VERSION,
    about = "Trace and model NVIDIA Tegra241 CMDQV (SMMUv3 VCMDQ) traffic"
)]
struct Cli {
    /// No colours in the terminal UI (the NO_COLOR environment variable does the same).
    #[arg(long, global = true)]
    no_color: bool,
    /// No mouse capture in the terminal UI, so the terminal's own text selection works.
    #[arg(long, global = true)]
    no_mouse: bool,
    /// Read the terminal UI's settings from FILE instead of $XDG_CONFIG_HOME/cmdqv/config.toml
    /// (~/.config/cmdqv/config.toml); see `cmdqv config --print-default`.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run and trace the simulated host: a sim VMM process with the CMDQV model, a synthetic
    /// Linux-like guest driver and a simulated host, traced by real eBPF probes.
    Sim(SimArgs),
    /// Trace a real QEMU with an SMMUv3 (stock or CMDQV-capable): `--pid PID` or `-- <cmdline>`.
    Qemu(QemuArgs),
    /// Trace this kernel's own SMMUv3 driver: every command batch it submits, per command queue
    /// (kprobes on arm_smmu_cmdq_issue_cmdlist, its form read from the kernel's BTF).
    Host(HostArgs),
    /// Record a target to a trace file (headless), e.g. `cmdqv record -o t.cmdqv sim --duration 5s`.
    Record(RecordArgs),
    /// Drive the CMDQV device model with QEMU's qtest text protocol (readl/writel/readq/writeq,
    /// read/write, b64read/b64write), guest RAM at 0x40000000.
    Model(ModelArgs),
    /// (internal) The sim VMM process that `cmdqv sim` starts and traces.
    #[command(hide = true)]
    SimVmm(SimVmmArgs),
    /// What this machine can trace: kernel, BTF, privileges, program types, /dev/iommu, /dev/kvm.
    Doctor(DoctorArgs),
    /// Replay a recorded trace file (up to its last complete record).
    Replay(ReplayArgs),
    /// Sample a live VMM's VINTF page0 (VCMDQ passthrough, iommufd or the sim VMM): per-LVCMDQ
    /// PROD/CONS, occupancy and commands/s per interval. Needs ptrace access to the VMM.
    Sample(SampleArgs),
    /// Export a trace file for ui.perfetto.dev (native Perfetto protobuf, Chrome trace-event JSON).
    Export(ExportArgs),
    /// Write a self-contained HTML report of a trace file (rate, latency CDF, phases, errors).
    Report(ReportArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) to stdout.
    Completions(CompletionsArgs),
    /// Print the man page (roff) to stdout, or write one page per command to a directory.
    Man(ManArgs),
    /// Headless, long-running Prometheus exporter: follows every VMM on the host through its
    /// VINTF page0 and the host kernel's SMMUv3 driver where its probes attach; /metrics.
    Serve(ServeArgs),
    /// The terminal UI's config file: `--print-default` prints the default file with comments,
    /// `--check` reads yours (or --config FILE) and says whether it is good.
    Config(ConfigArgs),
    /// Compare two recordings per queue and opcode: commands/s, batch sizes, batch latency and
    /// its phases, with the change and whether a named test finds it significant. Exit status 2
    /// when no queue matches.
    Diff(DiffArgs),
    /// (internal) Probe benchmark: our uprobe vs bpftrace, and delivery at offered rates.
    #[command(hide = true)]
    BenchProbes(BenchProbesArgs),
    /// (internal) What `cmdqv serve` costs on a host with 128 queues (CPU share of one core).
    #[command(hide = true)]
    BenchServe(BenchServeArgs),
    /// (internal) The benchmark's target: calls the cmdqv_vmm_command hook N times.
    #[command(hide = true)]
    BenchHook(BenchHookArgs),
}

fn main() {
    let matches = Cli::command().get_matches();
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    cmdqv_tui::live::logging::init();
    if cli.no_color {
        // SAFETY: set before any thread is started.
        unsafe { std::env::set_var("NO_COLOR", "1") };
    }
    if let Err(e) = configure(&mut cli, &matches) {
        eprintln!("cmdqv: {e}");
        std::process::exit(1);
    }
    let done = match cli.cmd {
        Cmd::Sim(a) => sim::run(a, None),
        Cmd::Qemu(a) => qemu::run(a, None),
        Cmd::Host(a) => host::run(a, None),
        Cmd::Record(a) => record::run(a),
        Cmd::Model(a) => model::run(a),
        Cmd::SimVmm(a) => sim_vmm::run(a),
        Cmd::Doctor(a) => doctor::run(a),
        Cmd::Replay(a) => replay::run(a),
        Cmd::Sample(a) => sample::run(a),
        Cmd::Export(a) => export::run(a),
        Cmd::Report(a) => report::run(a),
        Cmd::Completions(a) => completions::completions(a, Cli::command()),
        Cmd::Man(a) => completions::man(a, Cli::command()),
        Cmd::Serve(a) => serve::run(a),
        Cmd::Config(a) => config_cmd::run(a, cli.config.as_deref()),
        Cmd::Diff(a) => diff::run(a),
        Cmd::BenchProbes(a) => bench_probes::run(a),
        Cmd::BenchHook(a) => bench_hook::run(a),
        Cmd::BenchServe(a) => bench_serve::run(a),
    };
    if let Err(e) = done {
        eprintln!("cmdqv: {e:#}");
        let no_probe = e.downcast_ref::<NoSubmissionProbe>().is_some();
        let unmatched = e.downcast_ref::<NothingMatched>().is_some();
        std::process::exit(if no_probe {
            EXIT_NO_SUBMISSION_PROBE
        } else if unmatched {
            EXIT_NOTHING_MATCHED
        } else {
            1
        });
    }
}

/// For the commands that can show the terminal UI: read the config file (all of it or nothing),
/// let it set the refresh rate where `--refresh-hz` was not given, apply `--no-mouse`, and hand
/// it to the UI.
fn configure(cli: &mut Cli, matches: &ArgMatches) -> Result<(), config::ConfigError> {
    let rate = match &mut cli.cmd {
        Cmd::Sim(a) => Some(&mut a.refresh_hz),
        Cmd::Qemu(a) => Some(&mut a.refresh_hz),
        Cmd::Host(a) => Some(&mut a.refresh_hz),
        Cmd::Record(_) | Cmd::Replay(_) => None,
        _ => return Ok(()),
    };
    let (mut cfg, _) = config::load(cli.config.as_deref())?;
    cfg.mouse &= !cli.no_mouse;
    if let Some(hz) = rate {
        // Only sim, qemu and host have the flag: asking another command about it is a bug.
        let from_flag = matches
            .subcommand()
            .is_some_and(|(_, m)| m.value_source("refresh_hz") == Some(ValueSource::CommandLine));
        if !from_flag {
            *hz = cfg.refresh_hz;
        }
    }
    config::install(cfg);
    Ok(())
}
