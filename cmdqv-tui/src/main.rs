//! `cmdqv`: watch Tegra241 CMDQV / SMMUv3 command-queue traffic live, record, replay, and check
//! what this machine can trace.

use anyhow::Result;
use clap::{Parser, Subcommand};
use cmdqv_tui::doctor;

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

#[derive(Subcommand)]
enum Cmd {
    /// What this machine can trace: kernel, BTF, privileges, program types, /dev/iommu, /dev/kvm.
    Doctor {
        /// Print one JSON document instead of text.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> Result<()> {
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
    }
    Ok(())
}
