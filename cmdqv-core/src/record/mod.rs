//! The cmdqv trace file: what `cmdqv record` writes and `cmdqv replay` / `cmdqv export` read.
//!
//! Layout (all integers little-endian):
//!
//! ```text
//! header   "CMDQVTRC"  u16 version  u16 flags(0)  u32 meta_len  meta_len bytes of JSON (TraceMeta)
//!          u32 crc32(meta JSON)
//! record*  u32 body_len  u32 crc32(body)  body
//! body     version 2 (written): an event's eBPF ABI record (EventHeader + payload, exactly
//!          what the ring buffer carries; userspace-only kinds such as Lost included), or the
//!          kind KIND_TRACE_META followed by a MetaUpdate as JSON (rare: probe status, drop
//!          totals, queue meta, VINTFs)
//!          version 1 (read only): u8 tag, then per tag 1..=9 an event's fixed fields, 0x80 JSON
//! ```
//!
//! Every record carries its own length and CRC, so a file cut short by a crash or a full disk
//! reads up to its last complete record: the reader stops there and reports
//! [`TraceReader::truncated`] with the number of bytes ignored. A CRC mismatch is an error that
//! names the record's offset; reading continues with the next record (the length was framed).
//! Events use the probes' own fixed binary records (no serde per event), so recording keeps up
//! with the collector and the file and the ring buffer share one codec.
//!
//! - [`frame`]: magic, versions, limits, errors. [`meta`]: the JSON header and meta records.
//! - [`body`]: record bodies of the current version; [`v1`]: the legacy version-1 bodies.
//! - [`reader`] / [`writer`]: the file. [`replay`]: a file through the collector.
//! - [`profile`]: a file reduced, in one streaming pass, to what `cmdqv diff` compares.

pub mod body;
pub mod frame;
pub mod meta;
pub mod profile;
pub mod reader;
pub mod replay;
pub mod v1;
pub mod writer;

pub use body::{Record, decode_body, encode_event, encode_meta};
pub use frame::{MAGIC, MAX_META, MAX_RECORD, TraceError, Truncation, VERSION, VERSION_1};
pub use meta::{MetaUpdate, QueueMeta, TraceMeta};
pub use profile::{QueueProfile, RATE_INTERVAL_NS, RunProfile, profile};
pub use reader::TraceReader;
pub use replay::{
    ReplayInfo, apply_meta, final_summary, replay, replay_intervals, replay_observed,
    replay_reader, replay_with,
};
pub use writer::TraceWriter;
