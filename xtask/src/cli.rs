//! The command line of `cargo xtask`: one subcommand per task, each with its own `--help`, and
//! the pass-through argument lists that reach cmdqv and cargo bench untouched.

use std::ffi::OsString;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::{guest::GuestArgs, lint::LintArgs};

#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "Developer tasks for cmdqv: bootstrap, build, run, test, lint, guest, fuzz, bench, package",
    long_about = "Developer tasks for cmdqv.\n\nEvery task that builds bootstraps first, \
                  idempotently, one progress line per step (the pinned nightly from \
                  ebpf-toolchain.toml with rust-src, bpf-linker cached in ~/.cache/cmdqv, \
                  tracefs); failures say what is missing and how to fix it.",
    arg_required_else_help = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub task: Task,
}

#[derive(Debug, Subcommand)]
pub enum Task {
    /// Install what the build needs, idempotently: the pinned nightly with rust-src, bpf-linker
    /// linked against its LLVM, tracefs, test tools (tmux)
    Bootstrap,
    /// Bootstrap and release build; prints the path of the cmdqv binary as its last line
    Build(BuildArgs),
    /// Build and start cmdqv with ARGS (default: `cmdqv sim`, the live view on the simulated host)
    #[command(
        mut_arg("args", |a| a.help(
            "Arguments for cmdqv, passed on verbatim (every later `--` included); none runs `cmdqv sim`"
        )),
        after_help = "Examples:\n  cargo xtask run\n  cargo xtask run -- sim --scenario error-storm\n  \
                      cargo xtask run -- qemu -- qemu-system-aarch64 -M virt,iommu=smmuv3 ...\n\n\
                      XTASK_CMDQV=PATH runs that cmdqv binary instead of bootstrapping and building one."
    )]
    Run(Passthrough),
    /// fmt, lint, clippy (host crates and the eBPF crate for its target), every test including
    /// the privileged ones, brief fuzzing
    Test,
    /// The project's structure checks: import loops, function length, duplicated stretches
    Lint(LintArgs),
    /// A real arm64 Linux guest on QEMU's SMMUv3, traced by `cmdqv qemu`
    Guest(GuestArgs),
    /// Every cargo-fuzz target of cmdqv-core for CMDQV_FUZZ_SECS (default 8) seconds
    Fuzz,
    /// The criterion benchmarks behind BENCHMARKS.md (model, collector, TUI frame)
    #[command(
        mut_arg("args", |a| a.help(
            "Arguments for `cargo bench`, passed on verbatim (a later `--` reaches the benchmarks)"
        )),
        after_help = "Example:\n  cargo xtask bench -- -p cmdqv-core --bench model -- --quick"
    )]
    Bench(Passthrough),
    /// The Debian package (cargo-deb) at target/debian/cmdqv_*.deb: binary, systemd unit for
    /// `cmdqv serve`, completions, man pages; unpacked and checked (systemd-analyze verify)
    Package,
    /// The eBPF probe benchmark: our uprobe against bpftrace, delivery at offered rates
    #[command(mut_arg("args", |a| a.help(
        "Arguments for `cmdqv bench-probes`, passed on verbatim"
    )))]
    BenchProbes(Passthrough),
    /// What `cmdqv serve` costs on a host with 128 queues (a sim VMM, 15 s scrapes, 60 s)
    #[command(mut_arg("args", |a| a.help(
        "Arguments for `cmdqv bench-serve` (--duration, --scrape, --json), passed on verbatim"
    )))]
    BenchServe(Passthrough),
}

/// Options of `cargo xtask build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Build for this machine (default) or for aarch64 Linux: a static binary with the eBPF
    /// object built for arm64, after installing the Rust target and Debian's cross gcc
    #[arg(long, value_enum, default_value_t = BuildTarget::Host)]
    pub target: BuildTarget,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BuildTarget {
    Host,
    Aarch64,
}

/// Everything after the task (one leading `--` dropped), exactly as given.
#[derive(Debug, Args)]
pub struct Passthrough {
    #[arg(
        value_name = "ARGS",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub args: Vec<OsString>,
}

/// The argv `cargo xtask run` gives cmdqv: ARGS as given, or the live view of the simulated host
/// when there are none (no Grace host exists here; `qemu --pid` or `host` are chosen explicitly).
pub fn cmdqv_argv(run: &Passthrough) -> Vec<OsString> {
    if run.args.is_empty() {
        vec!["sim".into()]
    } else {
        run.args.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Task {
        let argv = ["cargo-xtask"].iter().chain(args);
        Cli::try_parse_from(argv).expect("parses").task
    }

    fn run_argv(args: &[&str]) -> Vec<String> {
        let Task::Run(p) = parse(args) else {
            panic!("not a run task")
        };
        cmdqv_argv(&p)
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect()
    }

    /// A QEMU command line with its own `--`, flags with values, commas and a quoted argument
    /// holding spaces (as the shell hands it over: one argument).
    const QEMU_LINE: &[&str] = &[
        "/usr/bin/qemu-system-aarch64",
        "-append",
        "a b",
        "-M",
        "virt",
        "--",
        "-device",
        "x,y=z",
        "--",
        "",
    ];

    #[test]
    fn run_passes_a_qemu_command_line_through_unchanged() {
        let mut args = vec!["run", "--", "qemu", "--"];
        args.extend(QEMU_LINE);
        let mut want = vec!["qemu", "--"];
        want.extend(QEMU_LINE);
        assert_eq!(run_argv(&args), want);
    }

    #[test]
    fn run_without_args_starts_the_simulated_host() {
        assert_eq!(run_argv(&["run"]), ["sim"]);
        assert_eq!(run_argv(&["run", "--"]), ["sim"]);
    }

    #[test]
    fn run_args_without_a_leading_separator_still_reach_cmdqv() {
        assert_eq!(
            run_argv(&["run", "sim", "--scenario", "error-storm"]),
            ["sim", "--scenario", "error-storm"]
        );
        assert_eq!(
            run_argv(&["run", "qemu", "--pid", "7", "--", "-x"]),
            ["qemu", "--pid", "7", "--", "-x"]
        );
    }

    #[test]
    fn run_forwards_help_after_the_separator() {
        assert_eq!(run_argv(&["run", "--", "--help"]), ["--help"]);
        let e = Cli::try_parse_from(["x", "run", "--help"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::DisplayHelp);
    }

    #[test]
    fn bench_keeps_cargo_bench_separators() {
        let Task::Bench(p) = parse(&["bench", "--", "-p", "cmdqv-core", "--", "--quick"]) else {
            panic!("not a bench task")
        };
        assert_eq!(p.args, ["-p", "cmdqv-core", "--", "--quick"]);
        let Task::BenchProbes(p) = parse(&["bench-probes", "--", "--rates", "1000"]) else {
            panic!("not a bench-probes task")
        };
        assert_eq!(p.args, ["--rates", "1000"]);
    }

    #[test]
    fn build_targets_the_host_unless_told_aarch64() {
        let Task::Build(b) = parse(&["build"]) else {
            panic!("not a build task")
        };
        assert_eq!(b.target, BuildTarget::Host);
        let Task::Build(b) = parse(&["build", "--target", "aarch64"]) else {
            panic!("not a build task")
        };
        assert_eq!(b.target, BuildTarget::Aarch64);
        assert!(Cli::try_parse_from(["x", "build", "--target", "riscv64"]).is_err());
    }

    #[test]
    fn no_task_and_unknown_tasks_are_usage_errors() {
        let e = Cli::try_parse_from(["x"]).unwrap_err();
        assert_eq!(
            e.kind(),
            clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
        );
        let e = Cli::try_parse_from(["x", "frobnicate"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::InvalidSubcommand);
    }

    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory as _;
        Cli::command().debug_assert();
    }
}
