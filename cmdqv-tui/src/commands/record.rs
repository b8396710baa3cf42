//! `cmdqv record -o FILE <target>`: a live target run headless with every event written to a
//! trace file from the start.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand};

use crate::commands::{
    host::{self, HostArgs},
    qemu::{self, QemuArgs},
    sim::{self, SimArgs},
};

#[derive(Args, Clone, Debug)]
pub struct RecordArgs {
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: PathBuf,
    #[command(subcommand)]
    pub target: Target,
}

#[derive(Subcommand, Clone, Debug)]
pub enum Target {
    /// The simulated host (the embedded default).
    Sim(SimArgs),
    /// A QEMU (`--pid PID`, or `-- <command line>` to launch one).
    Qemu(QemuArgs),
    /// The running kernel's own SMMUv3 driver.
    Host(HostArgs),
}

pub fn run(a: RecordArgs) -> Result<()> {
    match a.target {
        Target::Sim(s) => sim::run(s, Some(a.output)),
        Target::Qemu(q) => qemu::run(q, Some(a.output)),
        Target::Host(h) => host::run(h, Some(a.output)),
    }
}
