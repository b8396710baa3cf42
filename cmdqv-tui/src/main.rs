//! `cmdqv`: watch Tegra241 CMDQV / SMMUv3 command-queue traffic live, record, replay, and check
//! what this machine can trace.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::{Args, Parser, Subcommand};
use cmdqv_tui::{doctor, live::parse_duration, output};

#[derive(Parser)]
#[command(
    name = "cmdqv",
    version,
    about = "Trace and model NVIDIA Tegra241 CMDQV (SMMUv3 VCMDQ) traffic"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

/// Output flags shared by every target and by replay.
#[derive(Args, Clone, Debug, Default)]
pub struct OutputArgs {
    /// No terminal UI: print a summary at the end (and per --interval).
    #[arg(long)]
    headless: bool,
    /// Stop after this long (e.g. 5s, 500ms, 2m).
    #[arg(long, value_parser = parse_duration)]
    duration: Option<std::time::Duration>,
    /// Print summaries as JSON (one object per line).
    #[arg(long)]
    json: bool,
    /// Also print a summary every interval (headless).
    #[arg(long, value_parser = parse_duration)]
    interval: Option<std::time::Duration>,
}

#[derive(Args, Clone, Debug)]
struct SimArgs {
    /// Scenario to run (see --list).
    #[arg(long, default_value = "steady-unmap")]
    scenario: String,
    /// List the scenarios and exit.
    #[arg(long)]
    list: bool,
    /// Do not load eBPF: the sim VMM reports its events itself (in-process fallback).
    #[arg(long)]
    no_ebpf: bool,
    /// UI refresh rate (frames per second).
    #[arg(long, default_value_t = 10)]
    refresh_hz: u32,
    #[command(flatten)]
    out: OutputArgs,
}

#[derive(Subcommand, Clone)]
enum Target {
    /// The simulated host (the embedded default).
    Sim(SimArgs),
}

#[derive(Subcommand)]
enum Cmd {
    /// Run and trace the simulated host: a sim VMM process with the CMDQV model, a synthetic
    /// Linux-like guest driver and a simulated host, traced by real eBPF probes.
    Sim(SimArgs),
    /// Record a target to a trace file (headless), e.g. `cmdqv record -o t.cmdqv sim --duration 5s`.
    Record {
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: PathBuf,
        #[command(subcommand)]
        target: Target,
    },
    /// (internal) The sim VMM process that `cmdqv sim` starts and traces.
    #[command(hide = true)]
    SimVmm {
        #[arg(long)]
        scenario: String,
        #[arg(long)]
        duration_ms: Option<u64>,
    },
    /// What this machine can trace: kernel, BTF, privileges, program types, /dev/iommu, /dev/kvm.
    Doctor {
        /// Print one JSON document instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Replay a recorded trace file (up to its last complete record).
    Replay {
        file: PathBuf,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Export a trace file for ui.perfetto.dev (Chrome trace-event JSON).
    Export {
        /// Write a Perfetto/Chrome trace-event JSON file here.
        #[arg(long, value_name = "OUT.json")]
        perfetto: PathBuf,
        file: PathBuf,
    },
    /// (internal) Probe benchmark: our uprobe vs bpftrace, and delivery at offered rates.
    #[command(hide = true)]
    BenchProbes {
        /// Hook calls per cost run (a uprobe hit costs ~10 µs in a VM: keep it ≤ 1e5).
        #[arg(long, default_value_t = 100_000)]
        calls: u64,
        /// Repetitions of each cost run (the median is reported).
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Offered rates in events/s, comma-separated.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "10000,50000,100000,200000"
        )]
        rates: Vec<u64>,
        /// Seconds per offered rate.
        #[arg(long, default_value_t = 1.0)]
        rate_secs: f64,
        /// Do not compare with bpftrace.
        #[arg(long)]
        no_bpftrace: bool,
    },
    /// (internal) The benchmark's target: calls the cmdqv_vmm_command hook N times.
    #[command(hide = true)]
    BenchHook {
        #[arg(long)]
        calls: u64,
        /// Pace the calls at this many per second (default: a tight loop).
        #[arg(long)]
        rate: Option<u64>,
        /// Wait for a line on stdin first (so probes can attach).
        #[arg(long)]
        wait: bool,
    },
}

fn main() {
    if let Err(e) = real_main() {
        eprintln!("cmdqv: {e:#}");
        std::process::exit(1);
    }
}

fn real_main() -> Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Doctor { json } => {
            let report = doctor::run();
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                doctor::print_text(&report);
            }
        }
        Cmd::Sim(a) => run_sim(a, None, false)?,
        Cmd::Record { output, target } => match target {
            Target::Sim(a) => run_sim(a, Some(output), true)?,
        },
        Cmd::SimVmm {
            scenario,
            duration_ms,
        } => cmdqv_tui::sim_cmd::run_vmm_child(
            &scenario,
            duration_ms.map(std::time::Duration::from_millis),
        )?,
        Cmd::Replay { file, out } => {
            let (summary, info) = cmdqv_core::record::replay_with(&file, Some(cmdqv_tui::reg_name))
                .with_context(|| format!("replaying {}", file.display()))?;
            if let Some(t) = &info.truncated {
                eprintln!(
                    "cmdqv: {} is truncated: replayed up to byte {} ({} trailing bytes ignored, the last record was incomplete)",
                    file.display(),
                    t.offset,
                    t.ignored_bytes
                );
            }
            if info.bad_records > 0 {
                eprintln!(
                    "cmdqv: {} corrupt records skipped: {}",
                    info.bad_records,
                    info.errors.join("; ")
                );
            }
            let _ = out.headless;
            if out.json {
                output::print_json(&summary);
            } else {
                output::print_text(&summary);
            }
        }
        Cmd::Export { perfetto, file } => {
            let reader = cmdqv_core::record::TraceReader::open(&file)
                .with_context(|| format!("opening {}", file.display()))?;
            let out = std::io::BufWriter::new(
                std::fs::File::create(&perfetto)
                    .with_context(|| format!("creating {}", perfetto.display()))?,
            );
            let info = cmdqv_core::export::export_perfetto(reader, out)?;
            eprintln!(
                "cmdqv: wrote {} ({info:?}); open it in ui.perfetto.dev",
                perfetto.display()
            );
        }
        Cmd::BenchProbes {
            calls,
            runs,
            rates,
            rate_secs,
            no_bpftrace,
        } => cmdqv_tui::bench_probes::run(&cmdqv_tui::bench_probes::BenchOptions {
            calls,
            runs,
            rates,
            rate_secs,
            bpftrace: !no_bpftrace,
        })?,
        Cmd::BenchHook { calls, rate, wait } => {
            cmdqv_tui::bench_probes::run_hook(calls, rate, wait)?
        }
    }
    Ok(())
}

fn run_sim(a: SimArgs, record: Option<PathBuf>, force_headless: bool) -> Result<()> {
    if a.list {
        for s in cmdqv_core::sim::scenarios() {
            println!("{:<18} {}", s.name, s.about);
        }
        return Ok(());
    }
    let headless = a.out.headless || force_headless;
    if headless && a.out.duration.is_none() && record.is_none() {
        anyhow::bail!("--headless needs --duration (e.g. --duration 5s)");
    }
    let opts = cmdqv_tui::sim_cmd::SimOptions {
        scenario: a.scenario,
        duration: a.out.duration,
        no_ebpf: a.no_ebpf,
        interval: a.out.interval,
        record: record.clone(),
        json: a.out.json,
        headless,
        refresh_hz: a.refresh_hz,
    };
    let summary = cmdqv_tui::sim_cmd::run(opts)?;
    if let Some(s) = summary {
        if a.out.json {
            output::print_json(&s);
        } else {
            output::print_text(&s);
        }
    }
    if let Some(r) = record {
        eprintln!("cmdqv: recorded to {}", r.display());
    }
    Ok(())
}
