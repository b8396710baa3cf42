//! `cmdqv export --perfetto OUT.pftrace [--chrome-json OUT.json] FILE`: a trace file as a native
//! Perfetto protobuf trace and/or Chrome trace-event JSON, for ui.perfetto.dev.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use clap::{ArgGroup, Args};
use cmdqv_core::record::TraceReader;

#[derive(Args, Clone, Debug)]
#[command(group(ArgGroup::new("format").required(true).multiple(true).args(["perfetto", "chrome_json"])))]
pub struct ExportArgs {
    /// Write a native Perfetto protobuf trace here (a path ending in .json gets the Chrome
    /// trace-event JSON instead, as this flag wrote before --chrome-json existed).
    #[arg(long, value_name = "OUT.pftrace")]
    pub perfetto: Option<PathBuf>,
    /// Write Chrome trace-event JSON here (ui.perfetto.dev and chrome://tracing open it).
    #[arg(long, value_name = "OUT.json")]
    pub chrome_json: Option<PathBuf>,
    pub file: PathBuf,
}

fn is_json(p: &Path) -> bool {
    p.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"))
}

fn create(path: &Path) -> Result<std::io::BufWriter<std::fs::File>> {
    let f = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    Ok(std::io::BufWriter::new(f))
}

fn open(file: &Path) -> Result<TraceReader> {
    TraceReader::open(file).with_context(|| format!("opening {}", file.display()))
}

fn chrome_json(file: &Path, out: &Path) -> Result<()> {
    let info = cmdqv_core::export::export_perfetto(open(file)?, create(out)?)
        .with_context(|| format!("exporting {} to {}", file.display(), out.display()))?;
    eprintln!(
        "cmdqv: wrote {} ({info:?}); open it in ui.perfetto.dev",
        out.display()
    );
    Ok(())
}

fn pftrace(file: &Path, out: &Path) -> Result<()> {
    let info = cmdqv_core::perfetto::export_pftrace(open(file)?, create(out)?)
        .with_context(|| format!("exporting {} to {}", file.display(), out.display()))?;
    eprintln!(
        "cmdqv: wrote {} ({} packets: {} tracks, {} counter tracks, {} batch slices, {} flows, {} error instants); open it in ui.perfetto.dev",
        out.display(),
        info.packets,
        info.tracks,
        info.counter_tracks,
        info.batch_slices,
        info.flows,
        info.error_instants
    );
    if let Some(t) = info.truncated {
        eprintln!(
            "cmdqv: {} is truncated: exported up to byte {} ({} trailing bytes ignored)",
            file.display(),
            t.offset,
            t.ignored_bytes
        );
    }
    if info.skipped > 0 {
        eprintln!(
            "cmdqv: {} records or events skipped (corrupt, or an unknown queue id)",
            info.skipped
        );
    }
    Ok(())
}

pub fn run(a: ExportArgs) -> Result<()> {
    if let Some(out) = &a.perfetto {
        if is_json(out) {
            chrome_json(&a.file, out)?;
        } else {
            pftrace(&a.file, out)?;
        }
    }
    if let Some(out) = &a.chrome_json {
        chrome_json(&a.file, out)?;
    }
    Ok(())
}
