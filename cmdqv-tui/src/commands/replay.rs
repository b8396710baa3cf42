//! `cmdqv replay FILE`: a recorded trace file through the collector (up to its last complete
//! record), shown like a live run: per-interval and final summaries headless, or the TUI.

use std::{io::IsTerminal as _, path::PathBuf};

use anyhow::{Context as _, Result};
use clap::Args;
use cmdqv_core::record::{ReplayInfo, TraceReader, replay_intervals};

use crate::{
    live::{self, OutputArgs, identity::TargetId, output::Printer, reg_name::reg_name},
    runner,
};

#[derive(Args, Clone, Debug)]
pub struct ReplayArgs {
    pub file: PathBuf,
    #[command(flatten)]
    pub out: OutputArgs,
}

pub fn run(a: ReplayArgs) -> Result<()> {
    let file = &a.file;
    let reader =
        TraceReader::open(file).with_context(|| format!("replaying {}", file.display()))?;
    // The recorded target's identity: its VMM's pid and VM name, as the recording knew them.
    let meta = reader.meta();
    let printer = Printer {
        json: a.out.json,
        target: TargetId {
            vm: meta.vm.clone(),
            pid: meta.pid.filter(|p| *p != 0),
        },
    };
    // Intervals are cut by the trace's own timestamps, not by the wall clock of the replay.
    let (summary, info) = replay_intervals(
        reader,
        Some(reg_name),
        a.out.interval.map(|d| d.as_nanos() as u64),
        &mut |s| printer.print(s),
    )
    .with_context(|| format!("replaying {}", file.display()))?;
    report_damage(&a.file, &info);
    if a.out.json {
        live::output::print_json(&summary, &printer.target);
    } else if a.out.headless || !std::io::stdout().is_terminal() {
        live::output::print_text(&summary);
    } else {
        runner::show_final(summary, crate::tui::config::installed().refresh_hz)?;
    }
    Ok(())
}

/// Says on stderr what of the file could not be replayed.
fn report_damage(file: &std::path::Path, info: &ReplayInfo) {
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
}
