//! The one wire codec: eBPF ring-buffer records (`cmdqv_ebpf_common`) to [`Event`]s and back.
//!
//! Every record is an [`EventHeader`] (24 bytes) followed by a payload whose size depends on the
//! kind. The probes write these records, the sim VMM's in-process fallback writes them too, and
//! the trace file (format version 2) stores every event as one of them. The bytes come from the
//! kernel, but a record may still be short (a truncated copy, an ABI mismatch between a stale
//! object and this binary), so every field is read with an explicit bounds check,
//! little-endian, and never by transmuting an unchecked slice. Decoding never panics; every
//! problem is a typed [`DecodeError`].
//!
//! This is where the ABI ends: packed fields (a queue event's `a`/`b` words) are unpacked here,
//! once, into typed values ([`QueueEvent`]), and packed again here when encoding.

use std::num::NonZeroU32;

use cmdqv_ebpf_common::{
    ABI_VERSION, CommandEvent, EventHeader, EventKind, HANDOVER_LOST_SHIFT, HOST_BATCH_FLAGS,
    HOST_BATCH_MAIN, HOST_BATCH_MAIN_KNOWN, HOST_BATCH_PROD, HOST_BATCH_SYNC, HOST_BATCH_WAIT,
    HostBatchEvent, HostCommandEvent, IOCTL_ARG_BYTES, IoctlEvent, IommuEvent, KFuncEvent,
    KvmExitEvent, KvmMmioEvent, LostEvent, MAP_ALLOC_BIT, MAP_LVCMDQ_MASK, MmapEvent, MmioEvent,
    MmioOrigin, QueueEvent as QueueRecord,
};

use crate::event::{
    Device, ErrCode, Event, HostBatch, HostCommand, IOMMU_DEV_NAME, IommuOp, KvmExit, Payload,
    QueueEvent, QueueOp,
};

/// Size of the fixed header of every record.
pub const HEADER_LEN: usize = core::mem::size_of::<EventHeader>();

/// Why a ring-buffer record could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The record is shorter than its kind requires. `kind` is 0 when even the header is short.
    #[error("truncated record (kind {kind}): need {need} bytes, got {got}")]
    Truncated { kind: u16, need: usize, got: usize },
    /// The header names a kind this build does not know.
    #[error("unknown record kind {0}")]
    UnknownKind(u16),
    /// The eBPF object was built against another ABI version.
    #[error(
        "record has ABI version {got}, this build expects {expected} (rebuild the eBPF object)"
    )]
    BadVersion { got: u16, expected: u16 },
    /// A field holds a value the ABI does not define.
    #[error("record field {field} has invalid value {value}")]
    BadField { field: &'static str, value: u64 },
}

/// The payload size (excluding the header) that each kind requires.
pub fn payload_len(kind: EventKind) -> usize {
    use core::mem::size_of;
    let total = match kind {
        EventKind::Ioctl => size_of::<IoctlEvent>(),
        EventKind::Mmio => size_of::<MmioEvent>(),
        EventKind::KvmMmio => size_of::<KvmMmioEvent>(),
        EventKind::KvmExit => size_of::<KvmExitEvent>(),
        EventKind::Command => size_of::<CommandEvent>(),
        EventKind::Queue => size_of::<QueueRecord>(),
        EventKind::Mmap => size_of::<MmapEvent>(),
        EventKind::KFunc => size_of::<KFuncEvent>(),
        EventKind::Iommu => size_of::<IommuEvent>(),
        EventKind::HostBatch => size_of::<HostBatchEvent>(),
        EventKind::HostCommand => size_of::<HostCommandEvent>(),
        EventKind::Lost => size_of::<LostEvent>(),
    };
    total - HEADER_LEN
}

/// The record kind of a payload.
pub fn kind_of(payload: &Payload) -> EventKind {
    match payload {
        Payload::Ioctl { .. } => EventKind::Ioctl,
        Payload::Mmio { .. } => EventKind::Mmio,
        Payload::KvmMmio { .. } => EventKind::KvmMmio,
        Payload::KvmExit(_) => EventKind::KvmExit,
        Payload::Command { .. } => EventKind::Command,
        Payload::Queue { .. } => EventKind::Queue,
        Payload::Mmap { .. } => EventKind::Mmap,
        Payload::KFunc { .. } => EventKind::KFunc,
        Payload::Iommu { .. } => EventKind::Iommu,
        Payload::HostBatch(_) => EventKind::HostBatch,
        Payload::HostCommand(_) => EventKind::HostCommand,
        Payload::Lost { .. } => EventKind::Lost,
    }
}

/// Bytes of the record that encodes `payload` (header included).
pub fn record_len(payload: &Payload) -> usize {
    HEADER_LEN + payload_len(kind_of(payload))
}

// ----------------------------------------------------------------------------------------------
// Decoding
// ----------------------------------------------------------------------------------------------

/// A bounds-checked little-endian cursor over a byte slice whose length was already checked;
/// reads past the end still return an error instead of panicking.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    kind: u16,
}

impl<'a> Reader<'a> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let end = self.pos.checked_add(N);
        match end.and_then(|e| self.buf.get(self.pos..e)) {
            Some(s) => {
                let mut out = [0u8; N];
                out.copy_from_slice(s);
                self.pos += N;
                Ok(out)
            }
            None => Err(DecodeError::Truncated {
                kind: self.kind,
                need: self.pos.saturating_add(N),
                got: self.buf.len(),
            }),
        }
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.take()?))
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.take()?))
    }
    fn i32(&mut self) -> Result<i32, DecodeError> {
        Ok(i32::from_le_bytes(self.take()?))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.take()?))
    }
    fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_le_bytes(self.take()?))
    }
    /// A 0/1 flag the ABI stores in `N` bytes.
    fn flag<const N: usize>(&mut self, field: &'static str) -> Result<bool, DecodeError> {
        let mut v = [0u8; 8];
        v[..N].copy_from_slice(&self.take::<N>()?);
        match u64::from_le_bytes(v) {
            0 => Ok(false),
            1 => Ok(true),
            value => Err(DecodeError::BadField { field, value }),
        }
    }
}

/// Decode only the header (checks length, not version or kind).
pub fn decode_header(record: &[u8]) -> Result<EventHeader, DecodeError> {
    if record.len() < HEADER_LEN {
        return Err(DecodeError::Truncated {
            kind: 0,
            need: HEADER_LEN,
            got: record.len(),
        });
    }
    let mut r = Reader {
        buf: record,
        pos: 0,
        kind: 0,
    };
    Ok(EventHeader {
        kind: r.u16()?,
        version: r.u16()?,
        cpu: r.u32()?,
        ts_ns: r.u64()?,
        pid: r.u32()?,
        tid: r.u32()?,
    })
}

/// Decode one record into an [`Event`].
///
/// Longer records than the kind requires are accepted (the ring buffer may pad); shorter ones
/// are [`DecodeError::Truncated`].
pub fn decode(record: &[u8]) -> Result<Event, DecodeError> {
    decode_trimmed(record).map(|(ev, _)| ev)
}

/// [`decode`], also giving the record cut to its kind's length (without the padding a ring
/// buffer may add): the bytes a recorder keeps.
#[inline(always)]
pub fn decode_trimmed(record: &[u8]) -> Result<(Event, &[u8]), DecodeError> {
    let h = decode_header(record)?;
    if h.version != ABI_VERSION {
        return Err(DecodeError::BadVersion {
            got: h.version,
            expected: ABI_VERSION,
        });
    }
    let kind = EventKind::from_u16(h.kind).ok_or(DecodeError::UnknownKind(h.kind))?;
    let need = HEADER_LEN + payload_len(kind);
    if record.len() < need {
        return Err(DecodeError::Truncated {
            kind: h.kind,
            need,
            got: record.len(),
        });
    }
    let record = &record[..need];
    let mut r = Reader {
        buf: record,
        pos: HEADER_LEN,
        kind: h.kind,
    };
    let payload = match kind {
        EventKind::Ioctl => decode_ioctl(r)?,
        EventKind::Mmio => decode_mmio(r)?,
        EventKind::KvmMmio => Payload::KvmMmio {
            kind: r.u32()?,
            len: r.u32()?,
            gpa: r.u64()?,
            value: r.u64()?,
        },
        EventKind::KvmExit => decode_kvm_exit(r)?,
        EventKind::Command => Payload::Command {
            queue: r.u32()?,
            index: r.u32()?,
            w0: r.u64()?,
            w1: r.u64()?,
        },
        EventKind::Queue => {
            let queue = r.u32()?;
            let (op, a, b) = (r.u32()?, r.u64()?, r.u64()?);
            Payload::Queue {
                queue,
                event: queue_event(op, a, b)?,
            }
        }
        EventKind::Mmap => decode_mmap(r)?,
        EventKind::KFunc => decode_kfunc(r)?,
        EventKind::Iommu => decode_iommu(r)?,
        EventKind::HostBatch => decode_host_batch(r)?,
        EventKind::HostCommand => Payload::HostCommand(HostCommand {
            cmdq: r.u64()?,
            index: r.u32()?,
            appended_sync: r.flag::<4>("host_command.appended_sync")?,
            w0: r.u64()?,
            w1: r.u64()?,
        }),
        EventKind::Lost => Payload::Lost { count: r.u64()? },
    };
    let ev = Event {
        ts_ns: h.ts_ns,
        pid: h.pid,
        tid: h.tid,
        cpu: h.cpu,
        payload,
    };
    Ok((ev, record))
}

fn decode_ioctl(mut r: Reader<'_>) -> Result<Payload, DecodeError> {
    let (fd, cmd, ret, duration_ns) = (r.i32()?, r.u32()?, r.i64()?, r.u64()?);
    let arg_len = r.u32()?;
    let _pad = r.u32()?;
    if arg_len as usize > IOCTL_ARG_BYTES {
        return Err(DecodeError::BadField {
            field: "ioctl.arg_len",
            value: arg_len.into(),
        });
    }
    Ok(Payload::Ioctl {
        fd,
        cmd,
        ret,
        duration_ns,
        arg_len,
        arg: r.take::<IOCTL_ARG_BYTES>()?,
    })
}

fn decode_mmio(mut r: Reader<'_>) -> Result<Payload, DecodeError> {
    let (offset, value, size) = (r.u64()?, r.u64()?, r.u8()?);
    let is_write = r.u8()?;
    let _origin = r.u8()?;
    let device = match r.u8()? {
        0 => Device::Cmdqv,
        1 => Device::Smmu,
        d => {
            return Err(DecodeError::BadField {
                field: "mmio.device",
                value: d.into(),
            });
        }
    };
    if is_write > 1 {
        return Err(DecodeError::BadField {
            field: "mmio.is_write",
            value: is_write.into(),
        });
    }
    Ok(Payload::Mmio {
        device,
        offset,
        value,
        size,
        write: is_write == 1,
    })
}

fn decode_mmap(mut r: Reader<'_>) -> Result<Payload, DecodeError> {
    Ok(Payload::Mmap {
        addr: r.u64()?,
        len: r.u64()?,
        offset: r.u64()?,
        ret: r.i64()?,
        fd: r.i32()?,
        map: r.flag::<4>("mmap.is_map")?,
    })
}

fn decode_kvm_exit(mut r: Reader<'_>) -> Result<Payload, DecodeError> {
    let (reason, isa, vcpu, _pad) = (r.u32()?, r.u32()?, r.u32()?, r.u32()?);
    Ok(Payload::KvmExit(KvmExit {
        isa,
        reason,
        vcpu,
        pc: r.u64()?,
        info: r.u64()?,
    }))
}

fn decode_kfunc(mut r: Reader<'_>) -> Result<Payload, DecodeError> {
    let func = r.u32()?;
    let ret = r.flag::<4>("kfunc.is_ret")?;
    let mut args = [0u64; 5];
    for a in &mut args {
        *a = r.u64()?;
    }
    Ok(Payload::KFunc { func, ret, args })
}

fn decode_iommu(mut r: Reader<'_>) -> Result<Payload, DecodeError> {
    let raw = r.u32()?;
    let op = IommuOp::from_raw(raw).ok_or(DecodeError::BadField {
        field: "iommu.op",
        value: raw.into(),
    })?;
    Ok(Payload::Iommu {
        op,
        flags: r.i32()?,
        iova: r.u64()?,
        paddr: r.u64()?,
        size: r.u64()?,
        unmapped: r.u64()?,
        device: r.take::<IOMMU_DEV_NAME>()?,
    })
}

/// A host batch record: flags unpacked into the options they guard; a flag the ABI does not
/// define, or a ring size no SMMU has, is an error.
fn decode_host_batch(mut r: Reader<'_>) -> Result<Payload, DecodeError> {
    let (cmdq, smmu, duration_ns, wait_ns) = (r.u64()?, r.u64()?, r.u64()?, r.u64()?);
    let (prod, n, flags, log2size) = (r.u32()?, r.u32()?, r.u32()?, r.u32()?);
    let (ret, missed) = (r.i32()?, r.u32()?);
    if flags & !HOST_BATCH_FLAGS != 0 {
        return Err(DecodeError::BadField {
            field: "host_batch.flags",
            value: flags.into(),
        });
    }
    if log2size > 31 {
        return Err(DecodeError::BadField {
            field: "host_batch.log2size",
            value: log2size.into(),
        });
    }
    let has = |f: u32| flags & f != 0;
    Ok(Payload::HostBatch(HostBatch {
        cmdq,
        smmu,
        prod: has(HOST_BATCH_PROD).then_some(prod),
        n,
        sync: has(HOST_BATCH_SYNC),
        main: has(HOST_BATCH_MAIN_KNOWN).then_some(has(HOST_BATCH_MAIN)),
        log2size: (log2size != 0).then_some(log2size as u8),
        duration_ns,
        wait_ns: has(HOST_BATCH_WAIT).then_some(wait_ns),
        ret,
        missed,
    }))
}

/// A size the hook passed as u64: an impossible value stays impossible (saturates).
fn saturate_u8(v: u64) -> u8 {
    u8::try_from(v).unwrap_or(u8::MAX)
}

fn saturate_u32(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

/// Unpack a queue record's `op`, `a` and `b` (their meaning per op is documented on
/// `cmdqv_ebpf_common::QueueOp`). Only an unknown op is an error: PROD/CONS pointers and
/// GERRORN keep their 32-bit register width, sizes, errno and VINTF saturate (so an impossible
/// value never turns into a plausible one), flags are "non-zero".
#[inline]
pub fn queue_event(op: u32, a: u64, b: u64) -> Result<QueueEvent, DecodeError> {
    let op = QueueOp::from_raw(op).ok_or(DecodeError::BadField {
        field: "queue.op",
        value: op.into(),
    })?;
    Ok(match op {
        QueueOp::Doorbell => QueueEvent::Doorbell {
            prod: a as u32,
            cons: b as u32,
        },
        QueueOp::Consumed => QueueEvent::Consumed {
            cons: a as u32,
            prod: b as u32,
        },
        QueueOp::Error => QueueEvent::Error {
            index: a as u32,
            cerror: ErrCode::new(b),
        },
        QueueOp::ErrorAck => QueueEvent::ErrorAck { gerrorn: a as u32 },
        QueueOp::HwAlloc => QueueEvent::HwAlloc {
            log2size: saturate_u8(a),
            errno: NonZeroU32::new(saturate_u32(b)),
        },
        QueueOp::HwFree => QueueEvent::HwFree,
        QueueOp::Enable => QueueEvent::Enable {
            enabled: a != 0,
            log2size: saturate_u8(b),
        },
        QueueOp::Map => QueueEvent::Map {
            vintf: saturate_u32(a),
            lvcmdq: (b & MAP_LVCMDQ_MASK) as u16,
            alloc: b >> MAP_ALLOC_BIT & 1 != 0,
        },
        QueueOp::Handover => QueueEvent::Handover {
            handovers: a,
            view_mismatches: b as u32,
            commands_lost: (b >> HANDOVER_LOST_SHIFT) as u32,
        },
    })
}

/// Pack a queue event into the ABI's `op`, `a` and `b` (what the sim VMM's queue hook takes);
/// [`queue_event`] of the result gives the event back.
pub fn queue_words(ev: &QueueEvent) -> (u32, u64, u64) {
    let (a, b) = match *ev {
        QueueEvent::Doorbell { prod, cons } => (prod.into(), cons.into()),
        QueueEvent::Consumed { cons, prod } => (cons.into(), prod.into()),
        QueueEvent::Error { index, cerror } => (index.into(), cerror.code().into()),
        QueueEvent::ErrorAck { gerrorn } => (gerrorn.into(), 0),
        QueueEvent::HwAlloc { log2size, errno } => {
            (log2size.into(), errno.map_or(0, |e| e.get().into()))
        }
        QueueEvent::HwFree => (0, 0),
        QueueEvent::Enable { enabled, log2size } => (enabled.into(), log2size.into()),
        QueueEvent::Map {
            vintf,
            lvcmdq,
            alloc,
        } => (
            vintf.into(),
            u64::from(lvcmdq) | u64::from(alloc) << MAP_ALLOC_BIT,
        ),
        QueueEvent::Handover {
            handovers,
            view_mismatches,
            commands_lost,
        } => (
            handovers,
            u64::from(view_mismatches) | u64::from(commands_lost) << HANDOVER_LOST_SHIFT,
        ),
    };
    (ev.op().to_raw(), a, b)
}

// ----------------------------------------------------------------------------------------------
// Encoding
// ----------------------------------------------------------------------------------------------

/// A value the ABI stores little-endian, field by field.
trait Field {
    fn put(&self, out: &mut Vec<u8>);
}

macro_rules! le_field {
    ($($t:ty),*) => {
        $(impl Field for $t {
            fn put(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
        })*
    };
}
le_field!(u8, u16, u32, u64, i32, i64);

impl<const N: usize> Field for [u8; N] {
    fn put(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self);
    }
}

impl<const N: usize> Field for [u64; N] {
    fn put(&self, out: &mut Vec<u8>) {
        self.iter().for_each(|v| v.put(out));
    }
}

/// Append fields in order.
macro_rules! put {
    ($out:expr, $($f:expr),+ $(,)?) => {{
        $(Field::put(&$f, $out);)+
    }};
}

/// A host batch's fields in the order of its ABI struct, its options packed back into flags
/// (the inverse of [`decode_host_batch`]).
fn encode_host_batch(b: &HostBatch, out: &mut Vec<u8>) {
    let flag = |on: bool, f: u32| if on { f } else { 0 };
    let flags = flag(b.prod.is_some(), HOST_BATCH_PROD)
        | flag(b.sync, HOST_BATCH_SYNC)
        | flag(b.main.is_some(), HOST_BATCH_MAIN_KNOWN)
        | flag(b.main == Some(true), HOST_BATCH_MAIN)
        | flag(b.wait_ns.is_some(), HOST_BATCH_WAIT);
    let (prod, wait, log2) = (b.prod.unwrap_or(0), b.wait_ns.unwrap_or(0), b.log2size);
    put!(out, b.cmdq, b.smmu, b.duration_ns, wait, prod, b.n, flags);
    put!(out, u32::from(log2.unwrap_or(0)), b.ret, b.missed);
}

/// Encode an event as the eBPF programs would write it (the inverse of [`decode`]), for the
/// in-process fallback, tests and benchmarks. Kinds the kernel never writes (`Lost`) have no
/// ring-buffer record: `None` (the trace file uses [`encode_into`], which writes every kind).
pub fn encode(ev: &Event) -> Option<Vec<u8>> {
    if kind_of(&ev.payload) as u16 >= cmdqv_ebpf_common::USERSPACE_KINDS {
        return None;
    }
    let mut b = Vec::with_capacity(record_len(&ev.payload));
    encode_into(ev, &mut b);
    Some(b)
}

/// Append the record of any event, userspace-only kinds included.
pub fn encode_into(ev: &Event, out: &mut Vec<u8>) {
    let kind = kind_of(&ev.payload) as u16;
    put!(out, kind, ABI_VERSION, ev.cpu, ev.ts_ns, ev.pid, ev.tid);
    encode_payload(&ev.payload, out);
}

/// The payload's fields in the order (and with the padding) of its `#[repr(C)]` ABI struct;
/// patterns list them in that order too.
fn encode_payload(payload: &Payload, out: &mut Vec<u8>) {
    const PAD32: u32 = 0;
    match *payload {
        Payload::Ioctl {
            fd,
            cmd,
            ret,
            duration_ns,
            arg_len,
            arg,
        } => put!(out, fd, cmd, ret, duration_ns, arg_len, PAD32, arg),
        Payload::Mmio {
            offset,
            value,
            size,
            write,
            device,
        } => {
            let device: u8 = match device {
                Device::Cmdqv => 0,
                Device::Smmu => 1,
            };
            let origin = MmioOrigin::SimVmm as u8;
            put!(
                out,
                offset,
                value,
                size,
                u8::from(write),
                origin,
                device,
                PAD32
            )
        }
        Payload::KvmMmio {
            kind,
            len,
            gpa,
            value,
        } => put!(out, kind, len, gpa, value),
        Payload::KvmExit(e) => put!(out, e.reason, e.isa, e.vcpu, PAD32, e.pc, e.info),
        Payload::Command {
            queue,
            index,
            w0,
            w1,
        } => put!(out, queue, index, w0, w1),
        Payload::Queue { queue, event } => {
            let (op, a, b) = queue_words(&event);
            put!(out, queue, op, a, b)
        }
        Payload::Mmap {
            addr,
            len,
            offset,
            ret,
            fd,
            map,
        } => put!(out, addr, len, offset, ret, fd, u32::from(map)),
        Payload::KFunc { func, ret, args } => put!(out, func, u32::from(ret), args),
        Payload::Iommu {
            op,
            flags,
            iova,
            paddr,
            size,
            unmapped,
            device,
        } => put!(out, op.to_raw(), flags, iova, paddr, size, unmapped, device),
        Payload::HostBatch(b) => encode_host_batch(&b, out),
        Payload::HostCommand(c) => {
            put!(out, c.cmdq, c.index, u32::from(c.appended_sync), c.w0, c.w1)
        }
        Payload::Lost { count } => put!(out, count),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cmdqv_ebpf_common as abi;
    use proptest::prelude::*;

    /// View a `#[repr(C)]` ABI struct as its bytes (test only: the structs have no padding
    /// holes left uninitialised because every test value is built field by field from a zeroed
    /// struct via `Copy` and explicit `_pad` fields).
    fn as_bytes<T: Copy>(v: &T) -> Vec<u8> {
        // SAFETY: T is a plain-old-data #[repr(C)] struct from the ABI crate whose size has
        // been asserted and whose padding is explicit fields; reading size_of::<T>() bytes from
        // a valid reference is sound.
        unsafe {
            core::slice::from_raw_parts((v as *const T).cast::<u8>(), core::mem::size_of::<T>())
        }
        .to_vec()
    }

    fn hdr(kind: EventKind) -> abi::EventHeader {
        abi::EventHeader {
            kind: kind as u16,
            version: ABI_VERSION,
            cpu: 3,
            ts_ns: 0x1122_3344_5566_7788,
            pid: 4242,
            tid: 4243,
        }
    }

    fn check_meta(ev: &Event) {
        assert_eq!(ev.ts_ns, 0x1122_3344_5566_7788);
        assert_eq!((ev.pid, ev.tid, ev.cpu), (4242, 4243, 3));
    }

    fn all_kinds() -> Vec<(Vec<u8>, Payload)> {
        let mut arg = [0u8; IOCTL_ARG_BYTES];
        for (i, b) in arg.iter_mut().enumerate() {
            *b = i as u8 ^ 0x5a;
        }
        vec![
            (
                as_bytes(&abi::IoctlEvent {
                    hdr: hdr(EventKind::Ioctl),
                    fd: 5,
                    cmd: 0x3b90,
                    ret: -25,
                    duration_ns: 3100,
                    arg_len: 48,
                    _pad: 0,
                    arg,
                }),
                Payload::Ioctl {
                    fd: 5,
                    cmd: 0x3b90,
                    ret: -25,
                    duration_ns: 3100,
                    arg_len: 48,
                    arg,
                },
            ),
            (
                as_bytes(&abi::MmioEvent {
                    hdr: hdr(EventKind::Mmio),
                    offset: 0x10000,
                    value: 0xdead_beef,
                    size: 4,
                    is_write: 1,
                    origin: abi::MmioOrigin::SimVmm as u8,
                    device: 1,
                    _pad: 0,
                }),
                Payload::Mmio {
                    device: Device::Smmu,
                    offset: 0x10000,
                    value: 0xdead_beef,
                    size: 4,
                    write: true,
                },
            ),
            (
                as_bytes(&abi::KvmMmioEvent {
                    hdr: hdr(EventKind::KvmMmio),
                    mmio_type: 2,
                    len: 4,
                    gpa: 0x5000_0000,
                    val: 7,
                }),
                Payload::KvmMmio {
                    kind: 2,
                    len: 4,
                    gpa: 0x5000_0000,
                    value: 7,
                },
            ),
            (
                as_bytes(&abi::KvmExitEvent {
                    hdr: hdr(EventKind::KvmExit),
                    reason: 49,
                    isa: abi::KVM_ISA_VMX,
                    vcpu: 1,
                    _pad: 0,
                    pc: 0x300_0042,
                    info: 0x900_0098,
                }),
                Payload::KvmExit(KvmExit {
                    isa: 1,
                    reason: 49,
                    vcpu: 1,
                    pc: 0x300_0042,
                    info: 0x900_0098,
                }),
            ),
            (
                as_bytes(&abi::CommandEvent {
                    hdr: hdr(EventKind::Command),
                    queue: 3,
                    index: 0x81,
                    w0: 0x0001_0003_0000_0012,
                    w1: 0x1000,
                }),
                Payload::Command {
                    queue: 3,
                    index: 0x81,
                    w0: 0x0001_0003_0000_0012,
                    w1: 0x1000,
                },
            ),
            (
                as_bytes(&abi::QueueEvent {
                    hdr: hdr(EventKind::Queue),
                    queue: abi::MAIN_CMDQ,
                    op: abi::QueueOp::Error as u32,
                    a: 9,
                    b: 1,
                }),
                Payload::Queue {
                    queue: abi::MAIN_CMDQ,
                    event: QueueEvent::Error {
                        index: 9,
                        cerror: crate::regs::Cerror::Ill.into(),
                    },
                },
            ),
            (
                as_bytes(&abi::MmapEvent {
                    hdr: hdr(EventKind::Mmap),
                    addr: 0x7f00_0000_0000,
                    len: 0x10000,
                    offset: 0x3000,
                    ret: 0x7f00_0000_0000,
                    fd: 9,
                    is_map: 1,
                }),
                Payload::Mmap {
                    fd: 9,
                    addr: 0x7f00_0000_0000,
                    len: 0x10000,
                    offset: 0x3000,
                    ret: 0x7f00_0000_0000,
                    map: true,
                },
            ),
            (
                as_bytes(&abi::KFuncEvent {
                    hdr: hdr(EventKind::KFunc),
                    func: 2,
                    is_ret: 1,
                    args: [1, 2, 3, 4, u64::MAX],
                }),
                Payload::KFunc {
                    func: 2,
                    ret: true,
                    args: [1, 2, 3, 4, u64::MAX],
                },
            ),
            (
                as_bytes(&abi::IommuEvent {
                    hdr: hdr(EventKind::Iommu),
                    op: abi::IommuOp::IoPageFault as u32,
                    flags: -2,
                    iova: 0xfeed_0000,
                    paddr: 0x8_0000_0000,
                    size: 0x2000,
                    unmapped: 0x1000,
                    device: dev_name(),
                }),
                Payload::Iommu {
                    op: IommuOp::IoPageFault,
                    iova: 0xfeed_0000,
                    paddr: 0x8_0000_0000,
                    size: 0x2000,
                    unmapped: 0x1000,
                    flags: -2,
                    device: dev_name(),
                },
            ),
            (as_bytes(&host_batch_record()), host_batch_payload()),
            (
                as_bytes(&abi::HostCommandEvent {
                    hdr: hdr(EventKind::HostCommand),
                    cmdq: 0xffff_0000_1234_5680,
                    index: 0x1_0003,
                    appended_sync: 1,
                    w0: 0x46 | 1 << 12,
                    w1: 0x4000_0010,
                }),
                Payload::HostCommand(crate::event::HostCommand {
                    cmdq: 0xffff_0000_1234_5680,
                    index: 0x1_0003,
                    appended_sync: true,
                    w0: 0x46 | 1 << 12,
                    w1: 0x4000_0010,
                }),
            ),
        ]
    }

    fn host_batch_record() -> abi::HostBatchEvent {
        abi::HostBatchEvent {
            hdr: hdr(EventKind::HostBatch),
            cmdq: 0xffff_0000_1234_5680,
            smmu: 0xffff_0000_1234_0000,
            duration_ns: 41_000,
            wait_ns: 0,
            prod: 0x1_0002,
            n: 1,
            flags: abi::HOST_BATCH_SYNC
                | abi::HOST_BATCH_PROD
                | abi::HOST_BATCH_MAIN_KNOWN
                | abi::HOST_BATCH_MAIN,
            log2size: 16,
            ret: -110,
            missed: 0,
        }
    }

    fn host_batch_payload() -> Payload {
        Payload::HostBatch(crate::event::HostBatch {
            cmdq: 0xffff_0000_1234_5680,
            smmu: 0xffff_0000_1234_0000,
            prod: Some(0x1_0002),
            n: 1,
            sync: true,
            main: Some(true),
            log2size: Some(16),
            duration_ns: 41_000,
            wait_ns: None,
            ret: -110,
            missed: 0,
        })
    }

    #[test]
    fn host_batch_flags_unpack_into_options_and_unknown_flags_are_errors() {
        let mut r = host_batch_record();
        r.flags = abi::HOST_BATCH_WAIT | abi::HOST_BATCH_MAIN_KNOWN;
        r.wait_ns = 9_000;
        r.log2size = 0;
        let Payload::HostBatch(crate::event::HostBatch {
            prod,
            sync,
            main,
            log2size,
            wait_ns,
            ..
        }) = decode(&as_bytes(&r)).unwrap().payload
        else {
            panic!("not a host batch");
        };
        assert_eq!(
            (prod, sync, main, log2size, wait_ns),
            (None, false, Some(false), None, Some(9_000))
        );
        r.flags = 1 << 5;
        assert_eq!(
            decode(&as_bytes(&r)),
            Err(DecodeError::BadField {
                field: "host_batch.flags",
                value: 32
            })
        );
        r.flags = 0;
        r.log2size = 32;
        assert!(matches!(
            decode(&as_bytes(&r)),
            Err(DecodeError::BadField {
                field: "host_batch.log2size",
                ..
            })
        ));
    }

    fn dev_name() -> [u8; IOMMU_DEV_NAME] {
        let mut d = [0u8; IOMMU_DEV_NAME];
        d[..12].copy_from_slice(b"0009:01:00.0");
        d
    }

    #[test]
    fn every_iommu_op_decodes_and_unknown_ops_are_typed_errors() {
        for op in [
            abi::IommuOp::Map,
            abi::IommuOp::Unmap,
            abi::IommuOp::IoPageFault,
            abi::IommuOp::Attach,
        ] {
            let mut ev = abi::IommuEvent {
                hdr: hdr(EventKind::Iommu),
                op: op as u32,
                flags: 0,
                iova: 1,
                paddr: 2,
                size: 3,
                unmapped: 4,
                device: dev_name(),
            };
            match decode(&as_bytes(&ev)).unwrap().payload {
                Payload::Iommu { op: got, .. } => assert_eq!(got.to_raw(), op as u32),
                p => panic!("wrong payload {p:?}"),
            }
            ev.op = 99;
            assert_eq!(
                decode(&as_bytes(&ev)),
                Err(DecodeError::BadField {
                    field: "iommu.op",
                    value: 99
                })
            );
        }
    }

    #[test]
    fn every_kind_round_trips_from_the_abi_structs() {
        let all = all_kinds();
        assert_eq!(all.len(), 11, "one case per EventKind");
        for (bytes, payload) in all {
            let ev = decode(&bytes).unwrap();
            check_meta(&ev);
            assert_eq!(ev.payload, payload);
        }
    }

    #[test]
    fn encode_writes_the_same_bytes_as_the_abi_structs() {
        for (bytes, payload) in all_kinds() {
            let ev = Event {
                ts_ns: 0x1122_3344_5566_7788,
                pid: 4242,
                tid: 4243,
                cpu: 3,
                payload,
            };
            let mut enc = encode(&ev).unwrap();
            if let Payload::Mmio { .. } = payload {
                // `origin` is not part of the event; the encoder says SimVmm like the test.
                enc[HEADER_LEN + 18] = bytes[HEADER_LEN + 18];
            }
            assert_eq!(enc, bytes, "{payload:?}");
        }
        let lost = Event {
            ts_ns: 0,
            pid: 0,
            tid: 0,
            cpu: 0,
            payload: Payload::Lost { count: 1 },
        };
        assert_eq!(encode(&lost), None);
    }

    #[test]
    fn every_queue_op_decodes() {
        for op in [
            abi::QueueOp::Consumed,
            abi::QueueOp::Error,
            abi::QueueOp::ErrorAck,
            abi::QueueOp::HwAlloc,
            abi::QueueOp::HwFree,
            abi::QueueOp::Doorbell,
            abi::QueueOp::Enable,
            abi::QueueOp::Map,
            abi::QueueOp::Handover,
        ] {
            let b = as_bytes(&abi::QueueEvent {
                hdr: hdr(EventKind::Queue),
                queue: 1,
                op: op as u32,
                a: 1,
                b: 2,
            });
            match decode(&b).unwrap().payload {
                Payload::Queue { event, .. } => {
                    let got = event.op();
                    assert_eq!(got.to_raw(), op as u32)
                }
                p => panic!("wrong payload {p:?}"),
            }
        }
    }

    #[test]
    fn every_proper_prefix_is_truncated() {
        for (bytes, _) in all_kinds() {
            for n in 0..bytes.len() {
                match decode(&bytes[..n]) {
                    Err(DecodeError::Truncated { need, got, .. }) => {
                        assert_eq!(got, n);
                        assert!(need > n);
                    }
                    other => panic!("prefix of {n} bytes gave {other:?}"),
                }
            }
        }
    }

    #[test]
    fn trailing_padding_is_accepted() {
        for (mut bytes, payload) in all_kinds() {
            bytes.extend_from_slice(&[0xff; 8]);
            assert_eq!(decode(&bytes).unwrap().payload, payload);
        }
    }

    #[test]
    fn bad_version_kind_and_fields_are_typed_errors() {
        let (bytes, _) = all_kinds().remove(3);
        let mut b = bytes.clone();
        b[2] = 9; // version
        assert_eq!(
            decode(&b),
            Err(DecodeError::BadVersion {
                got: 9,
                expected: ABI_VERSION
            })
        );
        let mut b = bytes.clone();
        b[0] = 99; // kind
        assert_eq!(decode(&b), Err(DecodeError::UnknownKind(99)));

        let mut q = abi::QueueEvent {
            hdr: hdr(EventKind::Queue),
            queue: 1,
            op: 77,
            a: 0,
            b: 0,
        };
        assert_eq!(
            decode(&as_bytes(&q)),
            Err(DecodeError::BadField {
                field: "queue.op",
                value: 77
            })
        );
        q.op = 0;
        assert!(matches!(
            decode(&as_bytes(&q)),
            Err(DecodeError::BadField { .. })
        ));

        let m = abi::MmioEvent {
            hdr: hdr(EventKind::Mmio),
            offset: 0,
            value: 0,
            size: 4,
            is_write: 0,
            origin: 1,
            device: 2,
            _pad: 0,
        };
        assert_eq!(
            decode(&as_bytes(&m)),
            Err(DecodeError::BadField {
                field: "mmio.device",
                value: 2
            })
        );
    }

    #[test]
    fn lost_is_a_userspace_record_of_its_own() {
        let lost = Event {
            ts_ns: 0x1122_3344_5566_7788,
            pid: 4242,
            tid: 4243,
            cpu: 3,
            payload: Payload::Lost { count: 77 },
        };
        let want = as_bytes(&abi::LostEvent {
            hdr: hdr(EventKind::Lost),
            count: 77,
        });
        let mut got = Vec::new();
        encode_into(&lost, &mut got);
        assert_eq!(got, want);
        assert_eq!(record_len(&lost.payload), want.len());
        assert_eq!(decode(&got), Ok(lost));
        assert_eq!(EventKind::from_u16(abi::KIND_TRACE_META), None);
        assert_eq!(encode(&lost), None, "the kernel never writes it");
    }

    #[test]
    fn queue_words_unpack_into_typed_events_and_pack_back() {
        use crate::regs::Cerror;
        let errno = |e| NonZeroU32::new(e);
        let cases = [
            (
                6,
                0x12,
                0x8,
                QueueEvent::Doorbell {
                    prod: 0x12,
                    cons: 8,
                },
            ),
            (
                1,
                0x100_0012,
                0x12,
                QueueEvent::Consumed {
                    cons: 0x100_0012,
                    prod: 0x12,
                },
            ),
            (
                2,
                5,
                2,
                QueueEvent::Error {
                    index: 5,
                    cerror: Cerror::Abt.into(),
                },
            ),
            (3, 1, 0, QueueEvent::ErrorAck { gerrorn: 1 }),
            (
                4,
                10,
                0,
                QueueEvent::HwAlloc {
                    log2size: 10,
                    errno: None,
                },
            ),
            (
                4,
                10,
                12,
                QueueEvent::HwAlloc {
                    log2size: 10,
                    errno: errno(12),
                },
            ),
            (5, 0, 0, QueueEvent::HwFree),
            (
                7,
                1,
                19,
                QueueEvent::Enable {
                    enabled: true,
                    log2size: 19,
                },
            ),
            (
                7,
                0,
                4,
                QueueEvent::Enable {
                    enabled: false,
                    log2size: 4,
                },
            ),
            (
                8,
                2,
                3 | 1 << 16,
                QueueEvent::Map {
                    vintf: 2,
                    lvcmdq: 3,
                    alloc: true,
                },
            ),
            (
                8,
                2,
                3,
                QueueEvent::Map {
                    vintf: 2,
                    lvcmdq: 3,
                    alloc: false,
                },
            ),
            (
                9,
                7,
                4 | 5 << 32,
                QueueEvent::Handover {
                    handovers: 7,
                    view_mismatches: 4,
                    commands_lost: 5,
                },
            ),
        ];
        for (op, a, b, want) in cases {
            assert_eq!(queue_event(op, a, b), Ok(want), "op {op}");
            assert_eq!(queue_words(&want), (op, a, b), "{want:?}");
        }
    }

    #[test]
    fn impossible_queue_words_stay_impossible() {
        // Sizes, errno and VINTF saturate: a failure never reads as success, a huge size never
        // as a plausible one. CERROR keeps its 7 bits; an unnamed code keeps its number.
        let ev = |op, a, b| queue_event(op, a, b).unwrap();
        assert_eq!(
            ev(4, 300, 1 << 32),
            QueueEvent::HwAlloc {
                log2size: u8::MAX,
                errno: NonZeroU32::new(u32::MAX)
            }
        );
        assert!(matches!(
            ev(8, 1 << 40, 0),
            QueueEvent::Map {
                vintf: u32::MAX,
                ..
            }
        ));
        assert!(matches!(
            ev(7, 2, 0),
            QueueEvent::Enable { enabled: true, .. }
        ));
        let QueueEvent::Error { cerror, .. } = ev(2, 0, 0x185) else {
            panic!("not an error");
        };
        assert_eq!((cerror.code(), cerror.name().as_ref()), (5, "CERROR(5)"));
        assert_eq!(cerror.cerror(), None);
        assert_eq!(
            queue_event(0, 0, 0),
            Err(DecodeError::BadField {
                field: "queue.op",
                value: 0
            })
        );
    }

    proptest! {
        /// Whatever words a VMM reports, their typed event packs to words that decode to it.
        #[test]
        fn typed_queue_events_survive_packing(op in 1u32..=9, a in any::<u64>(), b in any::<u64>()) {
            let ev = queue_event(op, a, b).unwrap();
            let (op2, a2, b2) = queue_words(&ev);
            prop_assert_eq!(op2, op);
            prop_assert_eq!(queue_event(op2, a2, b2), Ok(ev));
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn valid_header_with_garbage_payload_never_panics(
            kind in 0u16..12,
            payload in proptest::collection::vec(any::<u8>(), 0..120),
        ) {
            let mut b = as_bytes(&abi::EventHeader { kind, ..hdr(EventKind::Ioctl) });
            b.extend_from_slice(&payload);
            if let Ok(ev) = decode(&b) {
                // Whatever decoded came from a record long enough for its kind.
                let k = EventKind::from_u16(kind).unwrap();
                prop_assert!(b.len() >= HEADER_LEN + payload_len(k));
                prop_assert_eq!(ev.pid, 4242);
            }
        }
    }
}
