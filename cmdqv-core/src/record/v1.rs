//! The legacy body decoder of trace format version 1 (read-only: this build writes version 2).
//!
//! A version-1 body is a tag byte, then for an event `u64 ts_ns, u32 pid, u32 tid, u32 cpu` and
//! the payload's fixed fields in this module's own order; tag 0x80 is a [`MetaUpdate`] as JSON.
//! Queue events carry the ABI's packed `op`, `a` and `b`, so they are unpacked by the same
//! function as a ring-buffer record ([`probe_abi::queue_event`]).

use crate::event::{Device, Event, IommuOp, Payload, QueueOp};
use crate::probe_abi;
use crate::record::body::Record;

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

/// Decode a version-1 record body.
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
    let payload = decode_payload(tag, &mut c)?;
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

fn decode_payload(tag: u8, c: &mut Cursor<'_>) -> Result<Payload, String> {
    Ok(match tag {
        TAG_MMIO => decode_mmio(c)?,
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
            let (queue, op) = (c.u32()?, c.u32()?);
            QueueOp::from_raw(op).ok_or_else(|| format!("unknown queue op {op}"))?;
            let event =
                probe_abi::queue_event(op, c.u64()?, c.u64()?).map_err(|e| e.to_string())?;
            Payload::Queue { queue, event }
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
        TAG_KFUNC => decode_kfunc(c)?,
        TAG_IOMMU => decode_iommu(c)?,
        TAG_LOST => Payload::Lost { count: c.u64()? },
        t => return Err(format!("unknown record tag {t:#04x}")),
    })
}

fn decode_mmio(c: &mut Cursor<'_>) -> Result<Payload, String> {
    let device = match c.u8()? {
        0 => Device::Cmdqv,
        1 => Device::Smmu,
        d => return Err(format!("unknown MMIO device {d}")),
    };
    let size = c.u8()?;
    let write = c.bool("MMIO write flag")?;
    Ok(Payload::Mmio {
        device,
        size,
        write,
        offset: c.u64()?,
        value: c.u64()?,
    })
}

fn decode_kfunc(c: &mut Cursor<'_>) -> Result<Payload, String> {
    let func = c.u32()?;
    let ret = c.bool("kfunc return flag")?;
    let mut args = [0u64; 5];
    for a in &mut args {
        *a = c.u64()?;
    }
    Ok(Payload::KFunc { func, ret, args })
}

fn decode_iommu(c: &mut Cursor<'_>) -> Result<Payload, String> {
    let raw = c.u32()?;
    let op = IommuOp::from_raw(raw).ok_or_else(|| format!("unknown iommu op {raw}"))?;
    Ok(Payload::Iommu {
        op,
        iova: c.u64()?,
        paddr: c.u64()?,
        size: c.u64()?,
        unmapped: c.u64()?,
        flags: c.i32()?,
        device: c.take()?,
    })
}
