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
    /// No colours in the terminal UI (the NO_COLOR environment variable does the same).
    #[arg(long, global = true)]
    no_color: bool,
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
    /// Batches per second per vCPU (overrides the scenario's).
    #[arg(long)]
    rate: Option<u32>,
    /// vCPUs, one LVCMDQ each (overrides the scenario's).
    #[arg(long)]
    vcpus: Option<u32>,
    /// UI refresh rate (frames per second).
    #[arg(long, default_value_t = 10)]
    refresh_hz: u32,
    #[command(flatten)]
    out: OutputArgs,
}

#[derive(Args, Clone, Debug)]
struct QemuArgs {
    /// Attach to this running QEMU.
    #[arg(long)]
    pid: Option<u32>,
    /// Also probe SMMU register reads (one uprobe + uretprobe on every MMIO read of every
    /// device: the costliest probe).
    #[arg(long)]
    mmio_reads: bool,
    /// Where a launched QEMU's console output goes.
    #[arg(long, default_value = "cmdqv-qemu-console.log")]
    console: PathBuf,
    /// UI refresh rate (frames per second).
    #[arg(long, default_value_t = 10)]
    refresh_hz: u32,
    #[command(flatten)]
    out: OutputArgs,
    /// A QEMU command line to launch and trace (after `--`).
    #[arg(last = true)]
    cmdline: Vec<String>,
}

#[derive(Subcommand, Clone)]
enum Target {
    /// The simulated host (the embedded default).
    Sim(SimArgs),
    /// A QEMU (`--pid PID`, or `-- <command line>` to launch one).
    Qemu(QemuArgs),
}

#[derive(Subcommand)]
enum Cmd {
    /// Run and trace the simulated host: a sim VMM process with the CMDQV model, a synthetic
    /// Linux-like guest driver and a simulated host, traced by real eBPF probes.
    Sim(SimArgs),
    /// Trace a real QEMU with an SMMUv3 (stock or CMDQV-capable): `--pid PID` or `-- <cmdline>`.
    Qemu(QemuArgs),
    /// Record a target to a trace file (headless), e.g. `cmdqv record -o t.cmdqv sim --duration 5s`.
    Record {
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: PathBuf,
        #[command(subcommand)]
        target: Target,
    },
    /// Drive the CMDQV device model with QEMU's qtest text protocol (readl/writel/readq/writeq,
    /// read/write, b64read/b64write), guest RAM at 0x40000000.
    Model {
        /// `stdio`, `unix:PATH` (connect, as QEMU does) or `unix-listen:PATH`.
        #[arg(long, value_name = "stdio|unix:PATH|unix-listen:PATH")]
        qtest: String,
        /// CMDQV MMIO base address.
        #[arg(long, value_parser = parse_u64, default_value = "0x09100000")]
        mmio_base: u64,
        /// SMMUv3 register page base (the trapped SMMU command queue); `none` to leave it out.
        #[arg(long, default_value = "0x09050000")]
        smmu_base: String,
        /// Guest RAM size (e.g. 256M, 1G).
        #[arg(long, value_parser = parse_size, default_value = "256M")]
        ram_size: u64,
        /// `guest` (QEMU's: 1 VINTF, 2 VCMDQs) or `host` (64 VINTFs, 128 VCMDQs).
        #[arg(long, default_value = "guest", value_parser = ["guest", "host"])]
        geometry: String,
        /// `host` (HYP_OWN writable) or `guest` (HYP_OWN reads 0).
        #[arg(long, default_value = "guest", value_parser = ["guest", "host"])]
        personality: String,
    },
    /// (internal) The sim VMM process that `cmdqv sim` starts and traces.
    #[command(hide = true)]
    SimVmm {
        #[arg(long)]
        scenario: String,
        #[arg(long)]
        duration_ms: Option<u64>,
        #[arg(long)]
        rate: Option<u32>,
        #[arg(long)]
        vcpus: Option<u32>,
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
    /// Sample a live VMM's VINTF page0 (VCMDQ passthrough, iommufd or the sim VMM): per-LVCMDQ
    /// PROD/CONS, occupancy and commands/s per interval. Needs ptrace access to the VMM.
    Sample {
        #[arg(long)]
        pid: u32,
        /// Samples (report lines) per second.
        #[arg(long, default_value_t = 10.0)]
        rate: f64,
        /// Stop after this long (default: until the VMM exits).
        #[arg(long, value_parser = parse_duration)]
        duration: Option<std::time::Duration>,
        /// One JSON object per interval.
        #[arg(long)]
        json: bool,
        /// Ring size of the queues (log2 entries), for occupancy in percent.
        #[arg(long)]
        log2size: Option<u8>,
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
    if cli.no_color {
        // SAFETY: set before any thread is started.
        unsafe { std::env::set_var("NO_COLOR", "1") };
    }
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
        Cmd::Qemu(a) => run_qemu(a, None, false)?,
        Cmd::Record { output, target } => match target {
            Target::Sim(a) => run_sim(a, Some(output), true)?,
            Target::Qemu(a) => run_qemu(a, Some(output), true)?,
        },
        Cmd::SimVmm {
            scenario,
            duration_ms,
            rate,
            vcpus,
        } => cmdqv_tui::sim_cmd::run_vmm_child(
            &scenario,
            duration_ms.map(std::time::Duration::from_millis),
            rate,
            vcpus,
        )?,
        Cmd::Model {
            qtest,
            mmio_base,
            smmu_base,
            ram_size,
            geometry,
            personality,
        } => {
            use cmdqv_core::{model::Personality, qtest as q, regs::Geometry};
            let smmu_base = match smmu_base.as_str() {
                "none" => None,
                s => Some(parse_u64(s).map_err(anyhow::Error::msg)?),
            };
            let cfg = q::QtestConfig {
                ram_size,
                mmio_base,
                smmu_base,
                geometry: if geometry == "host" {
                    Geometry::host()
                } else {
                    Geometry::guest()
                },
                personality: if personality == "host" {
                    Personality::Host
                } else {
                    Personality::Guest
                },
            };
            eprintln!(
                "cmdqv model: CMDQV MMIO at {mmio_base:#x} (size {:#x}), SMMU at {}, RAM at {:#x} ({} MiB), {geometry} geometry, {personality} personality",
                cfg.model_config().geometry.mmio_size(),
                smmu_base
                    .map(|b| format!("{b:#x}"))
                    .unwrap_or_else(|| "none".into()),
                q::RAM_BASE,
                ram_size >> 20
            );
            let stats = if qtest == "stdio" {
                q::serve(cfg, std::io::stdin().lock(), std::io::stdout().lock())?
            } else if let Some(p) = qtest.strip_prefix("unix-listen:") {
                q::serve_unix_listen(cfg, std::path::Path::new(p))?
            } else if let Some(p) = qtest.strip_prefix("unix:") {
                q::serve_unix(cfg, std::path::Path::new(p))
                    .with_context(|| format!("connecting to {p}"))?
            } else {
                anyhow::bail!("--qtest takes stdio, unix:PATH or unix-listen:PATH, not `{qtest}`");
            };
            eprintln!("cmdqv model: {stats:?}");
        }
        Cmd::Replay { file, out } => {
            let reader = cmdqv_core::record::TraceReader::open(&file)
                .with_context(|| format!("replaying {}", file.display()))?;
            let json = out.json;
            let mut per_interval = |s: &cmdqv_core::analysis::Summary| {
                if json {
                    output::print_json(s)
                } else {
                    output::print_text(s)
                }
            };
            let (summary, info) = cmdqv_core::record::replay_intervals(
                reader,
                Some(cmdqv_tui::reg_name),
                out.interval.map(|d| d.as_nanos() as u64),
                &mut per_interval,
            )
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
            use std::io::IsTerminal as _;
            if out.json {
                output::print_json(&summary);
            } else if out.headless || !std::io::stdout().is_terminal() {
                output::print_text(&summary);
            } else {
                let shared = std::sync::Arc::new(cmdqv_tui::live::Shared::default());
                *shared.latest.lock().unwrap() = Some(summary);
                shared
                    .finished
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                cmdqv_tui::tui_source::run_tui(shared, 10)?;
            }
        }
        Cmd::Sample {
            pid,
            rate,
            duration,
            json,
            log2size,
        } => cmdqv_tui::sample_cmd::run(cmdqv_tui::sample_cmd::SampleOptions {
            pid,
            rate_hz: rate,
            duration,
            json,
            log2size,
            ..Default::default()
        })?,
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
        rate: a.rate,
        vcpus: a.vcpus,
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

/// Parses `0x1234`, `1234`.
fn parse_u64(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let r = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16),
        None => t.parse(),
    };
    r.map_err(|_| format!("bad number `{s}` (decimal or 0x-hex)"))
}

/// Parses `256M`, `1G`, `65536`, `64K`.
fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (n, mul) = match t.chars().last() {
        Some('K' | 'k') => (&t[..t.len() - 1], 1u64 << 10),
        Some('M' | 'm') => (&t[..t.len() - 1], 1 << 20),
        Some('G' | 'g') => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    let v = parse_u64(n)?
        .checked_mul(mul)
        .ok_or_else(|| format!("size `{s}` too large"))?;
    if v == 0 || v > cmdqv_core::qtest::MAX_RAM {
        return Err(format!("RAM size `{s}` out of range (1 .. 16G)"));
    }
    Ok(v)
}

fn run_qemu(a: QemuArgs, record: Option<PathBuf>, force_headless: bool) -> Result<()> {
    let headless = a.out.headless || force_headless;
    let opts = cmdqv_tui::qemu_cmd::QemuCmdOptions {
        pid: a.pid,
        cmdline: a.cmdline,
        mmio_reads: a.mmio_reads,
        console: a.console,
        duration: a.out.duration,
        interval: a.out.interval,
        record: record.clone(),
        json: a.out.json,
        headless,
        refresh_hz: a.refresh_hz,
    };
    if let Some(s) = cmdqv_tui::qemu_cmd::run(opts)? {
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
