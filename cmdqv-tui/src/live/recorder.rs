//! Recording a live run to a trace file: from the start (`--record`, `cmdqv record`) or toggled
//! with `r` in the TUI. A meta record with the drop total goes in once a second, so a file cut
//! short still says how much was lost.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use cmdqv_core::{
    event::{Event, monotonic_ns},
    record::{MetaUpdate, TraceMeta, TraceWriter},
};

/// How often the drop total is written while recording.
const META_EVERY: Duration = Duration::from_secs(1);

pub struct Recorder {
    w: TraceWriter,
    path: String,
    last_meta: Instant,
}

impl Recorder {
    pub fn create(path: &Path, meta: &TraceMeta) -> Result<Self> {
        let w = TraceWriter::create(path, meta)
            .with_context(|| format!("creating trace file {}", path.display()))?;
        Ok(Self {
            w,
            path: path.display().to_string(),
            last_meta: Instant::now(),
        })
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// Writes one event; the error says which file failed.
    pub fn write(&mut self, ev: &Event) -> Result<(), String> {
        self.w
            .write(ev)
            .map_err(|e| format!("recording to {} failed: {e}", self.path))
    }

    /// Writes one probe record as it came from the ring buffer (already checked by the decoder).
    pub fn write_record(&mut self, record: &[u8]) -> Result<(), String> {
        self.w
            .write_record(record)
            .map_err(|e| format!("recording to {} failed: {e}", self.path))
    }

    /// Writes the drop total and flushes, at most once per [`META_EVERY`]; the error (a full
    /// disk) says which file failed.
    pub fn tick(&mut self, drops_total: u64) -> Result<(), String> {
        if self.last_meta.elapsed() >= META_EVERY {
            self.last_meta = Instant::now();
            self.w
                .write_meta(&drops(drops_total))
                .and_then(|()| self.w.flush())
                .map_err(|e| format!("recording to {} failed: {e}", self.path))?;
        }
        Ok(())
    }

    /// Stops a recording the user toggled off.
    pub fn stop(mut self) {
        let _ = self.w.flush();
    }

    /// Ends the recording with the final drop total.
    pub fn finish(mut self, drops_total: u64) -> Result<()> {
        let _ = self.w.write_meta(&drops(drops_total));
        self.w
            .flush()
            .with_context(|| format!("flushing the trace file {}", self.path))
    }
}

fn drops(total: u64) -> MetaUpdate {
    MetaUpdate {
        ts_ns: monotonic_ns(),
        drops_total: Some(total),
        ..Default::default()
    }
}
