//! Record bodies of the current format (version 2): an event is exactly its eBPF ABI record
//! ([`crate::probe_abi`], the same codec the ring buffer uses); a metadata record is the
//! userspace-only kind `KIND_TRACE_META` followed by a [`MetaUpdate`] as JSON.

use cmdqv_ebpf_common::KIND_TRACE_META;

use crate::event::Event;
use crate::probe_abi;
use crate::record::meta::MetaUpdate;

/// One record of a trace file.
#[derive(Clone, Debug, PartialEq)]
pub enum Record {
    Event(Event),
    Meta(MetaUpdate),
}

/// Append the body of an event record to `out`.
pub fn encode_event(ev: &Event, out: &mut Vec<u8>) {
    probe_abi::encode_into(ev, out);
}

/// Append the body of a metadata record to `out`.
pub fn encode_meta(m: &MetaUpdate, out: &mut Vec<u8>) -> serde_json::Result<()> {
    out.extend_from_slice(&KIND_TRACE_META.to_le_bytes());
    serde_json::to_writer(out, m)
}

/// Decode a record body (as written by [`encode_event`] or [`encode_meta`]).
///
/// Stricter than the ring buffer: a body must be exactly its record, since the file's own
/// framing says where it ends.
pub fn decode_body(body: &[u8]) -> Result<Record, String> {
    let Some(kind) = body.get(..2) else {
        return Err(if body.is_empty() {
            "empty record".into()
        } else {
            "record body too short (1 bytes left, need 2)".into()
        });
    };
    if u16::from_le_bytes([kind[0], kind[1]]) == KIND_TRACE_META {
        return serde_json::from_slice(&body[2..])
            .map(Record::Meta)
            .map_err(|e| format!("bad meta record: {e}"));
    }
    let (ev, record) = probe_abi::decode_trimmed(body).map_err(|e| e.to_string())?;
    let extra = body.len() - record.len();
    if extra > 0 {
        return Err(format!("{extra} unexpected bytes after the event"));
    }
    Ok(Record::Event(ev))
}
