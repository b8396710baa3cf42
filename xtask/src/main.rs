//! Developer tasks for cmdqv, as `cargo xtask <task>` (`cargo xtask --help` lists them, and
//! `cargo xtask <task> --help` explains one): bootstrap, build, run, test, lint, guest, fuzz,
//! bench, bench-probes, bench-serve, package.
//!
//! Each bootstrap step prints one line: what it did and how long it took. Failures say what is
//! missing and how to fix it.

mod bootstrap;
mod builds;
mod cli;
mod cross;
mod guest;
mod lint;
mod package;
mod pin;
mod sh;
mod tasks;

use anyhow::Result;
use clap::Parser as _;

use crate::cli::{BuildTarget, Cli, Task, cmdqv_argv};

fn main() -> Result<()> {
    match Cli::parse().task {
        Task::Bootstrap => bootstrap::bootstrap(true).map(drop),
        Task::Build(args) => {
            let tc = bootstrap::bootstrap(false)?;
            let bin = match args.target {
                BuildTarget::Host => builds::build(&tc.path)?,
                BuildTarget::Aarch64 => {
                    cross::bootstrap_aarch64()?;
                    cross::build_aarch64(&tc)?
                }
            };
            println!("{}", bin.display());
            Ok(())
        }
        Task::Run(args) => tasks::run_cmdqv(&cmdqv_argv(&args)),
        Task::Test => tasks::test(),
        Task::Lint(args) => lint::run(&args, &sh::root()),
        Task::Guest(args) => guest::main(args),
        Task::Fuzz => tasks::fuzz(),
        Task::Package => package::package(),
        Task::Bench(args) => tasks::bench(&args.args),
        Task::BenchProbes(args) => tasks::bench_probes(&args.args),
        Task::BenchServe(args) => tasks::bench_serve(&args.args),
    }
}
