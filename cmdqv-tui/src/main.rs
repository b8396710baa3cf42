//! `cmdqv`: watch Tegra241 CMDQV / SMMUv3 command-queue traffic live, record, replay, and check
//! what this machine can trace. This file is the command line and its dispatch; every
//! subcommand lives in `cmdqv_tui::commands`.

use clap::{Parser, Subcommand};
use cmdqv_tui::commands::{
    bench_hook::{self, BenchHookArgs},
    bench_probes::{self, BenchProbesArgs},
    diff::{self, DiffArgs, EXIT_NOTHING_MATCHED, NothingMatched},
    doctor::{self, DoctorArgs},
    export::{self, ExportArgs},
    host::{self, EXIT_NO_SUBMISSION_PROBE, HostArgs, NoSubmissionProbe},
    model::{self, ModelArgs},
    qemu::{self, QemuArgs},
    record::{self, RecordArgs},
    replay::{self, ReplayArgs},
    sample::{self, SampleArgs},
    sim::{self, SimArgs},
    sim_vmm::{self, SimVmmArgs},
};

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
    /// Export a trace file for ui.perfetto.dev (Chrome trace-event JSON).
    Export(ExportArgs),
    /// Compare two recordings per queue and opcode: commands/s, batch sizes, batch latency and
    /// its phases, with the change and whether a named test finds it significant. Exit status 2
    /// when no queue matches.
    Diff(DiffArgs),
    /// (internal) Probe benchmark: our uprobe vs bpftrace, and delivery at offered rates.
    #[command(hide = true)]
    BenchProbes(BenchProbesArgs),
    /// (internal) The benchmark's target: calls the cmdqv_vmm_command hook N times.
    #[command(hide = true)]
    BenchHook(BenchHookArgs),
}

fn main() {
    let cli = Cli::parse();
    if cli.no_color {
        // SAFETY: set before any thread is started.
        unsafe { std::env::set_var("NO_COLOR", "1") };
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
        Cmd::Diff(a) => diff::run(a),
        Cmd::BenchProbes(a) => bench_probes::run(a),
        Cmd::BenchHook(a) => bench_hook::run(a),
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
