//! `cmdqv report FILE -o report.html`: a recording as one self-contained HTML file of plots
//! (rate over time, latency CDF per queue, where a batch's time goes, errors).

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::Args;

#[derive(Args, Clone, Debug)]
pub struct ReportArgs {
    /// The trace file (`cmdqv record -o FILE …`).
    pub file: PathBuf,
    /// Where to write the HTML report.
    #[arg(short = 'o', long = "output", value_name = "report.html")]
    pub output: PathBuf,
}

pub fn run(a: ReportArgs) -> Result<()> {
    // Built in memory (a few MiB at most: the plots are bounded), so a file that cannot be
    // read leaves no half-written report behind.
    let mut page = Vec::new();
    let info = cmdqv_core::report::write_report(&a.file, &mut page)
        .with_context(|| format!("reporting on {}", a.file.display()))?;
    std::fs::write(&a.output, &page).with_context(|| format!("writing {}", a.output.display()))?;
    if let Some(t) = &info.truncated {
        eprintln!(
            "cmdqv: {} is truncated: reported up to byte {} ({} trailing bytes ignored)",
            a.file.display(),
            t.offset,
            t.ignored_bytes
        );
    }
    eprintln!(
        "cmdqv: wrote {} ({} events, {} queues, {}; open it in a browser)",
        a.output.display(),
        info.events,
        info.queues,
        if info.phases {
            "phase breakdown from phases_ns"
        } else {
            "no phases_ns: batch latency shown whole"
        }
    );
    Ok(())
}
