//! The trace file's framing: magic, versions, size limits, and the errors a reader reports.

use std::io;

use serde::Serialize;

/// First 8 bytes of every trace file.
pub const MAGIC: &[u8; 8] = b"CMDQVTRC";
/// Format version this build writes (2: every event is its eBPF ABI record).
pub const VERSION: u16 = 2;
/// The first format (a tag byte and per-kind fields); still read, never written.
pub const VERSION_1: u16 = 1;
/// Largest record body accepted; a larger length field means the framing is corrupt.
pub const MAX_RECORD: u32 = 16 << 20;
/// Largest metadata blob accepted in the header.
pub const MAX_META: u32 = 16 << 20;
/// Bytes before the metadata JSON: magic, version, flags, metadata length.
pub const FIXED_HEADER_LEN: usize = 16;

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
    #[error(
        "trace file version {found} is not supported (this build reads versions {VERSION_1} to {VERSION})"
    )]
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
