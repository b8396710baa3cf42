//! Reading a trace file of any supported version, crash-tolerantly: a file cut short reads up
//! to its last complete record, a CRC mismatch skips one record, a zero-filled tail is a
//! truncation.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use crate::record::body::{self, Record};
use crate::record::frame::{
    FIXED_HEADER_LEN, MAGIC, MAX_META, MAX_RECORD, TraceError, Truncation, VERSION, VERSION_1,
};
use crate::record::meta::TraceMeta;
use crate::record::v1;

/// Decodes one record body of a given format version.
type BodyDecoder = fn(&[u8]) -> Result<Record, String>;

/// Reads a trace file: the header's [`TraceMeta`], then records as an iterator.
pub struct TraceReader<R: Read = BufReader<File>> {
    r: R,
    meta: TraceMeta,
    version: u16,
    decode: BodyDecoder,
    offset: u64,
    truncated: Option<Truncation>,
    done: bool,
    body: Vec<u8>,
}

impl TraceReader<BufReader<File>> {
    pub fn open(path: impl AsRef<Path>) -> Result<Self, TraceError> {
        let f = File::open(path)?;
        Self::new(BufReader::with_capacity(256 << 10, f))
    }
}

/// Read up to `buf.len()` bytes; returns how many were read (less only at end of input).
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// The body decoder of a format version.
fn body_decoder(version: u16) -> Result<BodyDecoder, TraceError> {
    match version {
        VERSION => Ok(body::decode_body),
        VERSION_1 => Ok(v1::decode_body),
        found => Err(TraceError::UnsupportedVersion { found }),
    }
}

/// The header's metadata JSON and its CRC, after the fixed part.
fn read_meta(r: &mut impl Read, meta_len: u32) -> Result<TraceMeta, TraceError> {
    if meta_len > MAX_META {
        return Err(TraceError::BadMeta(format!(
            "metadata length {meta_len} is impossible"
        )));
    }
    let mut json = Vec::new();
    let got = r.take(u64::from(meta_len)).read_to_end(&mut json)?;
    let mut crc = [0u8; 4];
    if got < meta_len as usize || read_full(r, &mut crc)? < 4 {
        return Err(TraceError::TruncatedHeader);
    }
    if u32::from_le_bytes(crc) != crc32fast::hash(&json) {
        return Err(TraceError::BadMeta("header CRC mismatch".into()));
    }
    serde_json::from_slice(&json).map_err(|e| TraceError::BadMeta(e.to_string()))
}

impl<R: Read> TraceReader<R> {
    /// Read and check the header.
    pub fn new(mut r: R) -> Result<Self, TraceError> {
        let mut head = [0u8; FIXED_HEADER_LEN];
        let n = read_full(&mut r, &mut head)?;
        if n < 8 || &head[..8] != MAGIC {
            return Err(TraceError::BadMagic);
        }
        if n < FIXED_HEADER_LEN {
            return Err(TraceError::TruncatedHeader);
        }
        let version = u16::from_le_bytes([head[8], head[9]]);
        let decode = body_decoder(version)?;
        let meta_len = u32::from_le_bytes([head[12], head[13], head[14], head[15]]);
        let meta = read_meta(&mut r, meta_len)?;
        Ok(Self {
            r,
            meta,
            version,
            decode,
            offset: FIXED_HEADER_LEN as u64 + u64::from(meta_len) + 4,
            truncated: None,
            done: false,
            body: Vec::new(),
        })
    }

    pub fn meta(&self) -> &TraceMeta {
        &self.meta
    }

    /// The file's format version.
    pub fn version(&self) -> u16 {
        self.version
    }

    /// Set once the reader met an incomplete last record: where, and how many bytes it ignored.
    pub fn truncated(&self) -> Option<Truncation> {
        self.truncated
    }

    /// Offset of the next record.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    fn stop_truncated(&mut self, partial: u64) -> Option<Result<Record, TraceError>> {
        self.truncated = Some(Truncation {
            offset: self.offset,
            ignored_bytes: partial,
        });
        self.done = true;
        None
    }

    fn stop_with(&mut self, e: TraceError) -> Option<Result<Record, TraceError>> {
        self.done = true;
        Some(Err(e))
    }

    /// Whether everything after the current frame is zero bytes (a crash on some file systems
    /// leaves a zero-filled tail); returns how many bytes that tail holds.
    fn zero_tail(&mut self) -> io::Result<Option<u64>> {
        let mut buf = [0u8; 8192];
        let mut total = 0u64;
        loop {
            let n = read_full(&mut self.r, &mut buf)?;
            if buf[..n].iter().any(|&b| b != 0) {
                return Ok(None);
            }
            total += n as u64;
            if n < buf.len() {
                return Ok(Some(total));
            }
        }
    }

    /// A frame whose length cannot be: a zero-filled tail (truncation) or corrupt framing.
    fn bad_frame(&mut self, frame: [u8; 8], len: u32) -> Option<Result<Record, TraceError>> {
        if frame == [0; 8] {
            if let Ok(Some(rest)) = self.zero_tail() {
                return self.stop_truncated(8 + rest);
            }
        }
        let offset = self.offset;
        self.stop_with(TraceError::BadLength { offset, len })
    }

    fn next_record(&mut self) -> Option<Result<Record, TraceError>> {
        if self.done {
            return None;
        }
        let mut frame = [0u8; 8];
        let n = match read_full(&mut self.r, &mut frame) {
            Ok(n) => n,
            Err(e) => return self.stop_with(e.into()),
        };
        if n == 0 {
            self.done = true;
            return None;
        }
        if n < 8 {
            return self.stop_truncated(n as u64);
        }
        let len = u32::from_le_bytes([frame[0], frame[1], frame[2], frame[3]]);
        let stored = u32::from_le_bytes([frame[4], frame[5], frame[6], frame[7]]);
        let offset = self.offset;
        if len == 0 || len > MAX_RECORD {
            return self.bad_frame(frame, len);
        }
        self.body.clear();
        match (&mut self.r)
            .take(u64::from(len))
            .read_to_end(&mut self.body)
        {
            Ok(got) if got < len as usize => return self.stop_truncated(8 + got as u64),
            Ok(_) => {}
            Err(e) => return self.stop_with(e.into()),
        }
        self.offset += 8 + u64::from(len);
        let computed = crc32fast::hash(&self.body);
        if computed != stored {
            return Some(Err(TraceError::Crc {
                offset,
                stored,
                computed,
            }));
        }
        Some((self.decode)(&self.body).map_err(|reason| TraceError::BadRecord { offset, reason }))
    }
}

impl<R: Read> Iterator for TraceReader<R> {
    type Item = Result<Record, TraceError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_record()
    }
}
