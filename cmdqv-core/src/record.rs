//! The cmdqv trace file: what `cmdqv record` writes and `cmdqv replay` / `cmdqv export` read.
//!
//! Layout (all integers little-endian):
//!
//! ```text
//! header   "CMDQVTRC"  u16 version  u16 flags(0)  u32 meta_len  meta_len bytes of JSON (TraceMeta)
//!          u32 crc32(meta JSON)
//! record*  u32 body_len  u32 crc32(body)  body
//! body     u8 tag, then per tag:
//!          1..=9  an Event: u64 ts_ns, u32 pid, u32 tid, u32 cpu, then the payload's fixed fields
//!          0x80   a MetaUpdate as JSON (rare: probe status, drop totals, queue meta, VINTFs)
//! ```
//!
//! Every record carries its own length and CRC, so a file cut short by a crash or a full disk
//! reads up to its last complete record: the reader stops there and reports
//! [`TraceReader::truncated`] with the number of bytes ignored. A CRC mismatch is an error that
//! names the record's offset; reading continues with the next record (the length was framed).
//! Events use a fixed binary encoding per payload kind (no serde per event), so recording keeps
//! up with the collector.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::analysis::{
    Collector, CollectorConfig, Handover, ProbeStatus, RegNameFn, Summary, VintfSummary,
};
use crate::event::{Device, Event, IommuOp, Payload, QueueOp, Source};

/// First 8 bytes of every trace file.
pub const MAGIC: &[u8; 8] = b"CMDQVTRC";
/// Format version this build writes and reads.
pub const VERSION: u16 = 1;
/// Largest record body accepted; a larger length field means the framing is corrupt.
pub const MAX_RECORD: u32 = 16 << 20;
/// Largest metadata blob accepted in the header.
pub const MAX_META: u32 = 16 << 20;

const TAG_MMIO: u8 = 1;
const TAG_KVM_MMIO: u8 = 2;
const TAG_COMMAND: u8 = 3;
const TAG_QUEUE: u8 = 4;
const TAG_IOCTL: u8 = 5;
const TAG_MMAP: u8 = 6;
const TAG_KFUNC: u8 = 7;
const TAG_LOST: u8 = 8;
const TAG_IOMMU: u8 = 9;
const TAG_META: u8 = 0x80;

/// What a queue is, as the VMM knows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueMeta {
    pub queue: u32,
    pub vintf: Option<u32>,
    pub lvcmdq: Option<u32>,
    pub log2size: Option<u8>,
}

/// The metadata in the file header.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TraceMeta {
    /// Where the recorded events came from (the replay's own source is always `replay`).
    pub source: Source,
    pub target: String,
    /// pid of the traced VMM, when there is one (Perfetto export groups tracks under it).
    #[serde(default)]
    pub pid: Option<u32>,
    #[serde(default)]
    pub probes: Vec<ProbeStatus>,
    #[serde(default)]
    pub queues: Vec<QueueMeta>,
    /// CLOCK_MONOTONIC ns at the start of recording; `None` = the first event's timestamp.
    #[serde(default)]
    pub start_ns: Option<u64>,
    /// Wall clock (Unix ns) at the start of recording, for humans.
    #[serde(default)]
    pub wall_clock_unix_ns: Option<u64>,
    /// Version of the tool that wrote the file.
    #[serde(default)]
    pub tool_version: String,
    /// The SMMU queue's batches are derived from MMIO (a traced QEMU); replay does the same.
    #[serde(default)]
    pub smmu_queue_from_mmio: bool,
}

impl TraceMeta {
    pub fn new(source: Source, target: impl Into<String>) -> Self {
        Self {
            source,
            target: target.into(),
            pid: None,
            probes: Vec::new(),
            queues: Vec::new(),
            start_ns: None,
            wall_clock_unix_ns: None,
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            smmu_queue_from_mmio: false,
        }
    }
}

/// A periodic metadata record: whatever changed since the header.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MetaUpdate {
    pub ts_ns: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probes: Option<Vec<ProbeStatus>>,
    /// Total events lost outside the collector so far (ring buffer, channels); cumulative, so a
    /// lost meta record loses nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drops_total: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub queues: Vec<QueueMeta>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vintfs: Option<Vec<VintfSummary>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handover: Option<Handover>,
}

/// One record of a trace file.
#[derive(Clone, Debug, PartialEq)]
pub enum Record {
    Event(Event),
    Meta(MetaUpdate),
}

/// Where a truncated file stopped.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Truncation {
    /// Offset of the incomplete record (= bytes that were read).
    pub offset: u64,
    /// Bytes after that offset that were ignored.
    pub ignored_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    // The io::Error is in the message, not the error chain, so `{:#}` does not print it twice.
    #[error("trace file I/O error: {0}")]
    Io(io::Error),
    #[error("not a cmdqv trace file (bad magic)")]
    BadMagic,
    #[error("trace file version {found} is not supported (this build reads version {VERSION})")]
    UnsupportedVersion { found: u16 },
    #[error("trace file header is truncated (the recording stopped before it was written)")]
    TruncatedHeader,
    #[error("trace file metadata is unreadable: {0}")]
    BadMeta(String),
    #[error(
        "record at offset {offset}: CRC mismatch (stored {stored:#010x}, computed {computed:#010x})"
    )]
    Crc {
        offset: u64,
        stored: u32,
        computed: u32,
    },
    #[error(
        "record at offset {offset}: length {len} is impossible; the rest of the file is unreadable"
    )]
    BadLength { offset: u64, len: u32 },
    #[error("record at offset {offset}: {reason}")]
    BadRecord { offset: u64, reason: String },
}

impl From<io::Error> for TraceError {
    fn from(e: io::Error) -> Self {
        TraceError::Io(e)
    }
}

// ----------------------------------------------------------------------------------------------
// Event encoding
// ----------------------------------------------------------------------------------------------

/// Append the body of an event record (tag + fields) to `out`.
pub fn encode_event(ev: &Event, out: &mut Vec<u8>) {
    let tag = match ev.payload {
        Payload::Mmio { .. } => TAG_MMIO,
        Payload::KvmMmio { .. } => TAG_KVM_MMIO,
        Payload::Command { .. } => TAG_COMMAND,
        Payload::Queue { .. } => TAG_QUEUE,
        Payload::Ioctl { .. } => TAG_IOCTL,
        Payload::Mmap { .. } => TAG_MMAP,
        Payload::KFunc { .. } => TAG_KFUNC,
        Payload::Iommu { .. } => TAG_IOMMU,
        Payload::Lost { .. } => TAG_LOST,
    };
    out.push(tag);
    out.extend_from_slice(&ev.ts_ns.to_le_bytes());
    out.extend_from_slice(&ev.pid.to_le_bytes());
    out.extend_from_slice(&ev.tid.to_le_bytes());
    out.extend_from_slice(&ev.cpu.to_le_bytes());
    match ev.payload {
        Payload::Mmio {
            device,
            offset,
            value,
            size,
            write,
        } => {
            out.push(match device {
                Device::Cmdqv => 0,
                Device::Smmu => 1,
            });
            out.push(size);
            out.push(write as u8);
            out.extend_from_slice(&offset.to_le_bytes());
            out.extend_from_slice(&value.to_le_bytes());
        }
        Payload::KvmMmio {
            kind,
            len,
            gpa,
            value,
        } => {
            out.extend_from_slice(&kind.to_le_bytes());
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(&gpa.to_le_bytes());
            out.extend_from_slice(&value.to_le_bytes());
        }
        Payload::Command {
            queue,
            index,
            w0,
            w1,
        } => {
            out.extend_from_slice(&queue.to_le_bytes());
            out.extend_from_slice(&index.to_le_bytes());
            out.extend_from_slice(&w0.to_le_bytes());
            out.extend_from_slice(&w1.to_le_bytes());
        }
        Payload::Queue { queue, op, a, b } => {
            out.extend_from_slice(&queue.to_le_bytes());
            out.extend_from_slice(&op.to_raw().to_le_bytes());
            out.extend_from_slice(&a.to_le_bytes());
            out.extend_from_slice(&b.to_le_bytes());
        }
        Payload::Ioctl {
            fd,
            cmd,
            ret,
            duration_ns,
            arg_len,
            arg,
        } => {
            out.extend_from_slice(&fd.to_le_bytes());
            out.extend_from_slice(&cmd.to_le_bytes());
            out.extend_from_slice(&ret.to_le_bytes());
            out.extend_from_slice(&duration_ns.to_le_bytes());
            out.extend_from_slice(&arg_len.to_le_bytes());
            // The whole argument block is kept (not only arg_len bytes) so a round trip is exact.
            out.extend_from_slice(&arg);
        }
        Payload::Mmap {
            fd,
            addr,
            len,
            offset,
            ret,
            map,
        } => {
            out.extend_from_slice(&fd.to_le_bytes());
            out.extend_from_slice(&addr.to_le_bytes());
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(&offset.to_le_bytes());
            out.extend_from_slice(&ret.to_le_bytes());
            out.push(map as u8);
        }
        Payload::KFunc { func, ret, args } => {
            out.extend_from_slice(&func.to_le_bytes());
            out.push(ret as u8);
            for a in args {
                out.extend_from_slice(&a.to_le_bytes());
            }
        }
        Payload::Iommu {
            op,
            iova,
            paddr,
            size,
            unmapped,
            flags,
            device,
        } => {
            out.extend_from_slice(&op.to_raw().to_le_bytes());
            out.extend_from_slice(&iova.to_le_bytes());
            out.extend_from_slice(&paddr.to_le_bytes());
            out.extend_from_slice(&size.to_le_bytes());
            out.extend_from_slice(&unmapped.to_le_bytes());
            out.extend_from_slice(&flags.to_le_bytes());
            out.extend_from_slice(&device);
        }
        Payload::Lost { count } => out.extend_from_slice(&count.to_le_bytes()),
    }
}

struct Cursor<'a> {
    b: &'a [u8],
}

impl Cursor<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], String> {
        if self.b.len() < N {
            return Err(format!(
                "record body too short ({} bytes left, need {N})",
                self.b.len()
            ));
        }
        let (head, rest) = self.b.split_at(N);
        self.b = rest;
        let mut out = [0u8; N];
        out.copy_from_slice(head);
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take::<1>()?[0])
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take()?))
    }
    fn i32(&mut self) -> Result<i32, String> {
        Ok(i32::from_le_bytes(self.take()?))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take()?))
    }
    fn i64(&mut self) -> Result<i64, String> {
        Ok(i64::from_le_bytes(self.take()?))
    }
    fn bool(&mut self, what: &str) -> Result<bool, String> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(format!("{what} must be 0 or 1, is {v}")),
        }
    }
}

/// Decode a record body (as written by [`encode_event`] or a meta record).
pub fn decode_body(body: &[u8]) -> Result<Record, String> {
    let Some((&tag, rest)) = body.split_first() else {
        return Err("empty record".into());
    };
    if tag == TAG_META {
        return serde_json::from_slice(rest)
            .map(Record::Meta)
            .map_err(|e| format!("bad meta record: {e}"));
    }
    let mut c = Cursor { b: rest };
    let ts_ns = c.u64()?;
    let pid = c.u32()?;
    let tid = c.u32()?;
    let cpu = c.u32()?;
    let payload = match tag {
        TAG_MMIO => {
            let device = match c.u8()? {
                0 => Device::Cmdqv,
                1 => Device::Smmu,
                d => return Err(format!("unknown MMIO device {d}")),
            };
            let size = c.u8()?;
            let write = c.bool("MMIO write flag")?;
            Payload::Mmio {
                device,
                size,
                write,
                offset: c.u64()?,
                value: c.u64()?,
            }
        }
        TAG_KVM_MMIO => Payload::KvmMmio {
            kind: c.u32()?,
            len: c.u32()?,
            gpa: c.u64()?,
            value: c.u64()?,
        },
        TAG_COMMAND => Payload::Command {
            queue: c.u32()?,
            index: c.u32()?,
            w0: c.u64()?,
            w1: c.u64()?,
        },
        TAG_QUEUE => {
            let queue = c.u32()?;
            let raw = c.u32()?;
            let op = QueueOp::from_raw(raw).ok_or_else(|| format!("unknown queue op {raw}"))?;
            Payload::Queue {
                queue,
                op,
                a: c.u64()?,
                b: c.u64()?,
            }
        }
        TAG_IOCTL => Payload::Ioctl {
            fd: c.i32()?,
            cmd: c.u32()?,
            ret: c.i64()?,
            duration_ns: c.u64()?,
            arg_len: c.u32()?,
            arg: c.take()?,
        },
        TAG_MMAP => Payload::Mmap {
            fd: c.i32()?,
            addr: c.u64()?,
            len: c.u64()?,
            offset: c.u64()?,
            ret: c.i64()?,
            map: c.bool("mmap flag")?,
        },
        TAG_KFUNC => {
            let func = c.u32()?;
            let ret = c.bool("kfunc return flag")?;
            let mut args = [0u64; 5];
            for a in &mut args {
                *a = c.u64()?;
            }
            Payload::KFunc { func, ret, args }
        }
        TAG_IOMMU => {
            let raw = c.u32()?;
            let op = IommuOp::from_raw(raw).ok_or_else(|| format!("unknown iommu op {raw}"))?;
            Payload::Iommu {
                op,
                iova: c.u64()?,
                paddr: c.u64()?,
                size: c.u64()?,
                unmapped: c.u64()?,
                flags: c.i32()?,
                device: c.take()?,
            }
        }
        TAG_LOST => Payload::Lost { count: c.u64()? },
        t => return Err(format!("unknown record tag {t:#04x}")),
    };
    if !c.b.is_empty() {
        return Err(format!("{} unexpected bytes after the event", c.b.len()));
    }
    Ok(Record::Event(Event {
        ts_ns,
        pid,
        tid,
        cpu,
        payload,
    }))
}

// ----------------------------------------------------------------------------------------------
// Writer
// ----------------------------------------------------------------------------------------------

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

    pub fn write_meta(&mut self, m: &MetaUpdate) -> io::Result<()> {
        self.body.clear();
        self.body.push(TAG_META);
        serde_json::to_writer(&mut self.body, m).map_err(io::Error::other)?;
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

// ----------------------------------------------------------------------------------------------
// Reader
// ----------------------------------------------------------------------------------------------

/// Reads a trace file: the header's [`TraceMeta`], then records as an iterator.
pub struct TraceReader<R: Read = BufReader<File>> {
    r: R,
    meta: TraceMeta,
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

impl<R: Read> TraceReader<R> {
    /// Read and check the header.
    pub fn new(mut r: R) -> Result<Self, TraceError> {
        let mut head = [0u8; 16];
        let n = read_full(&mut r, &mut head)?;
        if n < 8 || &head[..8] != MAGIC {
            return Err(TraceError::BadMagic);
        }
        if n < 16 {
            return Err(TraceError::TruncatedHeader);
        }
        let version = u16::from_le_bytes([head[8], head[9]]);
        if version != VERSION {
            return Err(TraceError::UnsupportedVersion { found: version });
        }
        let meta_len = u32::from_le_bytes([head[12], head[13], head[14], head[15]]);
        if meta_len > MAX_META {
            return Err(TraceError::BadMeta(format!(
                "metadata length {meta_len} is impossible"
            )));
        }
        let mut json = Vec::new();
        let got = (&mut r).take(u64::from(meta_len)).read_to_end(&mut json)?;
        let mut crc = [0u8; 4];
        if got < meta_len as usize || read_full(&mut r, &mut crc)? < 4 {
            return Err(TraceError::TruncatedHeader);
        }
        if u32::from_le_bytes(crc) != crc32fast::hash(&json) {
            return Err(TraceError::BadMeta("header CRC mismatch".into()));
        }
        let meta: TraceMeta =
            serde_json::from_slice(&json).map_err(|e| TraceError::BadMeta(e.to_string()))?;
        Ok(Self {
            r,
            meta,
            offset: 16 + u64::from(meta_len) + 4,
            truncated: None,
            done: false,
            body: Vec::new(),
        })
    }

    pub fn meta(&self) -> &TraceMeta {
        &self.meta
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

    fn next_record(&mut self) -> Option<Result<Record, TraceError>> {
        if self.done {
            return None;
        }
        let mut frame = [0u8; 8];
        let n = match read_full(&mut self.r, &mut frame) {
            Ok(n) => n,
            Err(e) => {
                self.done = true;
                return Some(Err(e.into()));
            }
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
            if frame == [0; 8] {
                if let Ok(Some(rest)) = self.zero_tail() {
                    return self.stop_truncated(8 + rest);
                }
            }
            self.done = true;
            return Some(Err(TraceError::BadLength { offset, len }));
        }
        self.body.clear();
        match (&mut self.r)
            .take(u64::from(len))
            .read_to_end(&mut self.body)
        {
            Ok(got) if got < len as usize => return self.stop_truncated(8 + got as u64),
            Ok(_) => {}
            Err(e) => {
                self.done = true;
                return Some(Err(e.into()));
            }
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
        Some(decode_body(&self.body).map_err(|reason| TraceError::BadRecord { offset, reason }))
    }
}

impl<R: Read> Iterator for TraceReader<R> {
    type Item = Result<Record, TraceError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_record()
    }
}

// ----------------------------------------------------------------------------------------------
// Replay
// ----------------------------------------------------------------------------------------------

/// What a replay read, beside the summary.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ReplayInfo {
    pub meta: TraceMeta,
    pub records: u64,
    pub events: u64,
    pub meta_records: u64,
    /// Records skipped because of a CRC mismatch or an undecodable body.
    pub bad_records: u64,
    /// The first few errors (bounded), one line each.
    pub errors: Vec<String>,
    pub truncated: Option<Truncation>,
    /// First and last event timestamps.
    pub first_ts_ns: Option<u64>,
    pub last_ts_ns: Option<u64>,
}

const REPLAY_ERRORS_KEPT: usize = 10;

/// Apply a meta record to a collector; `last_drops` tracks the cumulative drop total.
pub fn apply_meta(c: &mut Collector, m: &MetaUpdate, last_drops: &mut u64) {
    if let Some(p) = &m.probes {
        c.set_probes(p.clone());
    }
    if let Some(total) = m.drops_total {
        c.add_drops(total.saturating_sub(*last_drops));
        *last_drops = (*last_drops).max(total);
    }
    for q in &m.queues {
        c.set_queue_meta(q.queue, q.vintf, q.lvcmdq, q.log2size);
    }
    if let Some(v) = &m.vintfs {
        c.set_vintfs(v.clone());
    }
    if let Some(h) = &m.handover {
        c.set_handover(h.clone());
    }
}

/// Replay a trace file through a [`Collector`] (source `replay`) and summarise it as of the
/// last event.
pub fn replay(path: impl AsRef<Path>) -> Result<(Summary, ReplayInfo), TraceError> {
    replay_with(path, None)
}

/// [`replay`] with a register-name hook for the log.
pub fn replay_with(
    path: impl AsRef<Path>,
    reg_name: Option<RegNameFn>,
) -> Result<(Summary, ReplayInfo), TraceError> {
    replay_reader(TraceReader::open(path)?, reg_name)
}

/// [`replay`] from an open reader.
pub fn replay_reader<R: Read>(
    reader: TraceReader<R>,
    reg_name: Option<RegNameFn>,
) -> Result<(Summary, ReplayInfo), TraceError> {
    replay_intervals(reader, reg_name, None, &mut |_| {})
}

/// [`replay_reader`] that also emits one summary per `interval_ns` of trace time (the headless
/// `--interval` output on replay), then the final one.
pub fn replay_intervals<R: Read>(
    mut reader: TraceReader<R>,
    reg_name: Option<RegNameFn>,
    interval_ns: Option<u64>,
    on_interval: &mut dyn FnMut(&Summary),
) -> Result<(Summary, ReplayInfo), TraceError> {
    let meta = reader.meta().clone();
    let mut cfg = CollectorConfig::new(Source::Replay, meta.target.clone());
    cfg.start_ns = meta.start_ns;
    cfg.reg_name = reg_name;
    cfg.intervals = interval_ns.is_some();
    cfg.smmu_queue_from_mmio = meta.smmu_queue_from_mmio;
    let trace_start = meta.start_ns;
    let mut next_interval: Option<u64> = None;
    let mut c = Collector::new(cfg);
    c.set_probes(meta.probes.clone());
    for q in &meta.queues {
        c.set_queue_meta(q.queue, q.vintf, q.lvcmdq, q.log2size);
    }
    let mut info = ReplayInfo {
        meta,
        records: 0,
        events: 0,
        meta_records: 0,
        bad_records: 0,
        errors: Vec::new(),
        truncated: None,
        first_ts_ns: None,
        last_ts_ns: None,
    };
    let mut last_drops = 0;
    for r in &mut reader {
        match r {
            Ok(Record::Event(ev)) => {
                info.records += 1;
                info.events += 1;
                info.first_ts_ns.get_or_insert(ev.ts_ns);
                info.last_ts_ns = Some(info.last_ts_ns.unwrap_or(0).max(ev.ts_ns));
                if let Some(iv) = interval_ns.filter(|&iv| iv > 0) {
                    let due = *next_interval.get_or_insert(trace_start.unwrap_or(ev.ts_ns) + iv);
                    if ev.ts_ns >= due {
                        on_interval(&c.snapshot(due));
                        c.reset_interval(due);
                        // Skip empty intervals rather than printing one per gap.
                        let mut n = due + iv;
                        while n <= ev.ts_ns {
                            n += iv;
                        }
                        next_interval = Some(n);
                    }
                }
                c.ingest(&ev);
            }
            Ok(Record::Meta(m)) => {
                info.records += 1;
                info.meta_records += 1;
                apply_meta(&mut c, &m, &mut last_drops);
            }
            Err(TraceError::Io(e)) => return Err(TraceError::Io(e)),
            Err(e) => {
                info.bad_records += 1;
                if info.errors.len() < REPLAY_ERRORS_KEPT {
                    info.errors.push(e.to_string());
                }
            }
        }
    }
    info.truncated = reader.truncated();
    let mut s = c.snapshot(c.last_ts());
    if let Some(t) = info.truncated {
        s.notes.push(format!(
            "trace file is truncated at offset {}: {} bytes ignored",
            t.offset, t.ignored_bytes
        ));
    }
    if info.bad_records > 0 {
        s.notes
            .push(format!("{} corrupt records skipped", info.bad_records));
    }
    Ok((s, info))
}
