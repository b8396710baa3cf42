//! Writing a trace file (always the current format version).

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use crate::event::Event;
use crate::record::body::{encode_event, encode_meta};
use crate::record::frame::{MAGIC, MAX_META, MAX_RECORD, TraceError, VERSION};
use crate::record::meta::{MetaUpdate, TraceMeta};

/// Writes a trace file. Buffered: records reach the file on [`flush`](Self::flush), when the
/// buffer fills, or on [`finish`](Self::finish).
pub struct TraceWriter<W: Write = BufWriter<File>> {
    w: W,
    body: Vec<u8>,
    records: u64,
    bytes: u64,
}

impl TraceWriter<BufWriter<File>> {
    /// Create (or replace) `path` and write the header.
    pub fn create(path: impl AsRef<Path>, meta: &TraceMeta) -> Result<Self, TraceError> {
        let f = File::create(path)?;
        Self::new(BufWriter::with_capacity(256 << 10, f), meta)
    }
}

impl<W: Write> TraceWriter<W> {
    /// Write the header to `w`.
    pub fn new(mut w: W, meta: &TraceMeta) -> Result<Self, TraceError> {
        let json = serde_json::to_vec(meta).map_err(|e| TraceError::BadMeta(e.to_string()))?;
        let meta_len = u32::try_from(json.len())
            .ok()
            .filter(|&l| l <= MAX_META)
            .ok_or_else(|| {
                TraceError::BadMeta(format!("metadata is {} bytes, too large", json.len()))
            })?;
        w.write_all(MAGIC)?;
        w.write_all(&VERSION.to_le_bytes())?;
        w.write_all(&0u16.to_le_bytes())?;
        w.write_all(&meta_len.to_le_bytes())?;
        w.write_all(&json)?;
        w.write_all(&crc32fast::hash(&json).to_le_bytes())?;
        let bytes = 8 + 2 + 2 + 4 + json.len() as u64 + 4;
        Ok(Self {
            w,
            body: Vec::with_capacity(256),
            records: 0,
            bytes,
        })
    }

    fn write_body(&mut self) -> io::Result<()> {
        let len = self.body.len() as u32;
        let mut frame = [0u8; 8];
        frame[..4].copy_from_slice(&len.to_le_bytes());
        frame[4..].copy_from_slice(&crc32fast::hash(&self.body).to_le_bytes());
        self.w.write_all(&frame)?;
        self.w.write_all(&self.body)?;
        self.records += 1;
        self.bytes += 8 + u64::from(len);
        Ok(())
    }

    pub fn write(&mut self, ev: &Event) -> io::Result<()> {
        self.body.clear();
        encode_event(ev, &mut self.body);
        self.write_body()
    }

    /// Write an event's ABI record as it came from the probes (version 2 stores exactly these):
    /// a record [`probe_abi::decode`](crate::probe_abi::decode) accepted, cut to its length, as
    /// [`Collector::ingest_raw`](crate::analysis::Collector::ingest_raw) returns it.
    pub fn write_record(&mut self, record: &[u8]) -> io::Result<()> {
        self.body.clear();
        self.body.extend_from_slice(record);
        self.write_body()
    }

    pub fn write_meta(&mut self, m: &MetaUpdate) -> io::Result<()> {
        self.body.clear();
        encode_meta(m, &mut self.body).map_err(io::Error::other)?;
        if self.body.len() > MAX_RECORD as usize {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "meta record too large",
            ));
        }
        self.write_body()
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.w.flush()
    }

    /// Records written so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Bytes written so far (header included), buffered or not.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Flush and hand back the underlying writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.w.flush()?;
        Ok(self.w)
    }
}
