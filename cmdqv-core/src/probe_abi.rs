//! Checked decoding of eBPF ring-buffer records into [`Event`]s (interim version: the ioctl
//! record; the analysis work extends it to every kind).

use cmdqv_ebpf_common::{ABI_VERSION, EventKind, IOCTL_ARG_BYTES};

use crate::event::{Event, Payload};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record truncated: {kind} needs {need} bytes, got {got}")]
    Truncated {
        kind: &'static str,
        need: usize,
        got: usize,
    },
    #[error("unknown record kind {0}")]
    UnknownKind(u16),
    #[error("record ABI version {0}, expected {ABI_VERSION}")]
    BadVersion(u16),
}

fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap_or([0; 4]))
}
fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap_or([0; 8]))
}

/// Decodes one record, checking every length before reading.
pub fn decode(rec: &[u8]) -> Result<Event, DecodeError> {
    if rec.len() < 24 {
        return Err(DecodeError::Truncated {
            kind: "header",
            need: 24,
            got: rec.len(),
        });
    }
    let kind = u16_at(rec, 0);
    let version = u16_at(rec, 2);
    if version != ABI_VERSION {
        return Err(DecodeError::BadVersion(version));
    }
    let (cpu, ts_ns, pid, tid) = (
        u32_at(rec, 4),
        u64_at(rec, 8),
        u32_at(rec, 16),
        u32_at(rec, 20),
    );
    let payload = match EventKind::from_u16(kind) {
        Some(EventKind::Ioctl) => {
            let need = 56 + IOCTL_ARG_BYTES;
            if rec.len() < need {
                return Err(DecodeError::Truncated {
                    kind: "ioctl",
                    need,
                    got: rec.len(),
                });
            }
            let mut arg = [0u8; 48];
            arg.copy_from_slice(&rec[56..56 + IOCTL_ARG_BYTES]);
            Payload::Ioctl {
                fd: u32_at(rec, 24) as i32,
                cmd: u32_at(rec, 28),
                ret: u64_at(rec, 32) as i64,
                duration_ns: u64_at(rec, 40),
                arg_len: u32_at(rec, 48),
                arg,
            }
        }
        _ => return Err(DecodeError::UnknownKind(kind)),
    };
    Ok(Event {
        ts_ns,
        pid,
        tid,
        cpu,
        payload,
    })
}
