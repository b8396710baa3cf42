//! `cmdqv export --perfetto OUT.json FILE`: a trace file as Chrome trace-event JSON for
//! ui.perfetto.dev.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::Args;
use cmdqv_core::record::TraceReader;

#[derive(Args, Clone, Debug)]
pub struct ExportArgs {
    /// Write a Perfetto/Chrome trace-event JSON file here.
    #[arg(long, value_name = "OUT.json")]
    pub perfetto: PathBuf,
    pub file: PathBuf,
}

pub fn run(a: ExportArgs) -> Result<()> {
    let reader =
        TraceReader::open(&a.file).with_context(|| format!("opening {}", a.file.display()))?;
    let out = std::io::BufWriter::new(
        std::fs::File::create(&a.perfetto)
            .with_context(|| format!("creating {}", a.perfetto.display()))?,
    );
    let info = cmdqv_core::export::export_perfetto(reader, out)?;
    eprintln!(
        "cmdqv: wrote {} ({info:?}); open it in ui.perfetto.dev",
        a.perfetto.display()
    );
    Ok(())
}
