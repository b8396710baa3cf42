//! Text for people: log lines, queue and duration names. Command and CERROR names come from
//! the codec ([`Command::describe`](crate::command::Command::describe)) and the register map
//! ([`crate::regs::Cerror`]); nothing here decodes bits by hand.

use crate::analysis::summary::LogLine;
use crate::command::describe;
use crate::event::{
    Device, Event, HostBatch, IommuOp, MAIN_CMDQ, Payload, QueueEvent, errno_name,
    iommu_device_name, iommufd_ioctl_name,
};

/// Register-name hook: `(device, offset)` → e.g. `VINTF0.LVCMDQ1.PROD_INDX`.
pub type RegNameFn = fn(Device, u64) -> Option<String>;

/// Display name of a queue id: `smmu-cmdq` or `vcmdq<N>`.
pub fn queue_name(queue: u32) -> String {
    if queue == MAIN_CMDQ {
        "smmu-cmdq".into()
    } else {
        format!("vcmdq{queue}")
    }
}

/// `850 ns`, `3.1 µs`, `1.20 ms`, `2.50 s`.
pub fn format_duration_ns(ns: u64) -> String {
    if ns < 1_000 {
        format!("{ns} ns")
    } else if ns < 1_000_000 {
        format!("{:.1} µs", ns as f64 / 1e3)
    } else if ns < 1_000_000_000 {
        format!("{:.2} ms", ns as f64 / 1e6)
    } else {
        format!("{:.2} s", ns as f64 / 1e9)
    }
}

/// An ioctl's name: the iommufd name, or `{unknown}(0x…)` with the caller's spelling.
pub fn ioctl_name(cmd: u32, unknown: &str) -> String {
    match iommufd_ioctl_name(cmd) {
        Some(n) => n.to_string(),
        None => format!("{unknown}({cmd:#x})"),
    }
}

/// What the log line and the Perfetto export say of an ioctl: its name ([`ioctl_name`], `ioctl`
/// when unknown) and its result (the value, or the errno's name).
pub fn ioctl_text(cmd: u32, ret: i64) -> (String, String) {
    (
        ioctl_name(cmd, "ioctl"),
        result_text(ret, |r| r.to_string()),
    )
}

/// A syscall result: the value, or the errno's name when negative.
fn result_text(ret: i64, ok: impl FnOnce(i64) -> String) -> String {
    if ret < 0 {
        errno_name(ret.saturating_neg()).to_string()
    } else {
        ok(ret)
    }
}

/// What happened to a queue, without the queue's name (the Perfetto export's instant names,
/// and the start of the log line).
pub fn queue_event_title(ev: &QueueEvent) -> String {
    match *ev {
        QueueEvent::Doorbell { .. } => "doorbell".into(),
        QueueEvent::Consumed { .. } => "consumed".into(),
        QueueEvent::Error { cerror, .. } => format!("stopped: {}", cerror.name()),
        QueueEvent::ErrorAck { .. } => "error acknowledged".into(),
        QueueEvent::HwAlloc { errno: None, .. } => "host queue allocated".into(),
        QueueEvent::HwAlloc { errno: Some(e), .. } => format!(
            "host queue allocation failed: {}",
            errno_name(e.get().into())
        ),
        QueueEvent::HwFree => "host queue freed".into(),
        QueueEvent::Enable { enabled: true, .. } => "enabled".into(),
        QueueEvent::Enable { enabled: false, .. } => "disabled".into(),
        QueueEvent::Map {
            vintf,
            lvcmdq,
            alloc,
        } => {
            let how = if alloc { "mapped to" } else { "unmapped from" };
            format!("{how} VINTF{vintf}.LVCMDQ{lvcmdq}")
        }
        QueueEvent::Handover { .. } => "passthrough handover".into(),
    }
}

/// (kind, text) of a queue event's log line.
fn render_queue(queue: u32, ev: &QueueEvent) -> (&'static str, String) {
    let q = queue_name(queue);
    let title = queue_event_title(ev);
    match *ev {
        QueueEvent::Doorbell { prod, cons } => (
            "queue",
            format!("{q} {title} PROD={prod:#x} CONS={cons:#x}"),
        ),
        QueueEvent::Consumed { cons, prod } => (
            "queue",
            format!("{q} {title} CONS={cons:#x} PROD={prod:#x}"),
        ),
        QueueEvent::Error { index, .. } => ("error", format!("{q} {title} at CONS={index:#x}")),
        QueueEvent::ErrorAck { gerrorn } => ("queue", format!("{q} {title} GERRORN={gerrorn:#x}")),
        QueueEvent::HwAlloc {
            log2size,
            errno: None,
        } => ("queue", format!("{q} {title} log2size={log2size}")),
        QueueEvent::HwAlloc { .. } => ("error", format!("{q} {title}")),
        QueueEvent::Enable {
            enabled: true,
            log2size,
        } => ("queue", format!("{q} {title} log2size={log2size}")),
        QueueEvent::HwFree | QueueEvent::Enable { .. } | QueueEvent::Map { .. } => {
            ("queue", format!("{q} {title}"))
        }
        QueueEvent::Handover {
            handovers,
            view_mismatches,
            commands_lost,
        } => (
            "queue",
            format!(
                "passthrough: {handovers} handovers, {commands_lost} commands lost, {view_mismatches} view mismatches"
            ),
        ),
    }
}

/// Whether an event's log line is an error (kept longer in the live log).
pub fn is_error_event(ev: &Event) -> bool {
    match ev.payload {
        Payload::Queue { event, .. } => match event {
            QueueEvent::Error { .. } => true,
            QueueEvent::HwAlloc { errno, .. } => errno.is_some(),
            // A handover report is an error when it counts lost commands or view mismatches.
            QueueEvent::Handover {
                view_mismatches,
                commands_lost,
                ..
            } => view_mismatches != 0 || commands_lost != 0,
            _ => false,
        },
        Payload::Ioctl { ret, .. } | Payload::Mmap { ret, .. } => ret < 0,
        Payload::Lost { .. } => true,
        Payload::HostBatch(b) => b.ret < 0 || b.missed > 0,
        Payload::Iommu { op, .. } => op == IommuOp::IoPageFault,
        _ => false,
    }
}

fn hex_sized(v: u64, size: u8) -> String {
    match size {
        1 => format!("{v:#04x}"),
        2 => format!("{v:#06x}"),
        8 => format!("{v:#018x}"),
        _ => format!("{v:#010x}"),
    }
}

fn render_mmio(
    write: bool,
    device: Device,
    offset: u64,
    value: u64,
    size: u8,
    reg_name: Option<RegNameFn>,
) -> String {
    let dev = match device {
        Device::Cmdqv => "cmdqv",
        Device::Smmu => "smmu",
    };
    let reg = reg_name
        .and_then(|f| f(device, offset))
        .unwrap_or_else(|| format!("{dev}+{offset:#x}"));
    let rw = if write { "W" } else { "R" };
    format!("{rw} {reg} = {}", hex_sized(value, size))
}

fn render_kvm_mmio(kind: u32, len: u32, gpa: u64, value: u64) -> String {
    let k = match kind {
        0 => "read-unsatisfied",
        1 => "read",
        2 => "write",
        _ => "?",
    };
    format!("kvm_mmio {k} gpa={gpa:#x} len={len} val={value:#x}")
}

fn render_kvm_exit(e: &crate::event::KvmExit) -> String {
    let name = crate::kvm_exit::reason_name(e.isa, e.reason, e.info);
    if e.isa == crate::kvm_exit::USERSPACE_EXIT {
        return format!("kvm_userspace_exit {name}");
    }
    let vcpu = match e.vcpu {
        u32::MAX => String::new(),
        v => format!(" vcpu={v}"),
    };
    format!("kvm_exit {name}{vcpu} pc={:#x} info={:#x}", e.pc, e.info)
}

/// (kind, text) of an `iommu:*` tracepoint's log line.
fn render_iommu(
    op: IommuOp,
    dev: &str,
    iova: u64,
    paddr: u64,
    size: u64,
    unmapped: u64,
    flags: i32,
) -> (&'static str, String) {
    match op {
        IommuOp::Map => (
            "iommu",
            format!("iommu map iova={iova:#x} -> paddr={paddr:#x} size={size:#x}"),
        ),
        IommuOp::Unmap => (
            "iommu",
            format!("iommu unmap iova={iova:#x} size={size:#x} unmapped={unmapped:#x}"),
        ),
        IommuOp::IoPageFault => (
            "error",
            format!("iommu page fault {dev} iova={iova:#x} flags={flags:#x}"),
        ),
        IommuOp::Attach => ("iommu", format!("iommu attach {dev} to a domain")),
    }
}

/// Display name of a host kernel command queue by its `struct arm_smmu_cmdq` address.
pub fn host_queue_name(cmdq: u64) -> String {
    format!("cmdq@{cmdq:x}")
}

/// (kind, text) of a host batch's log line (what one `arm_smmu_cmdq_issue_cmdlist` call did).
fn render_host_batch(b: &HostBatch) -> (&'static str, String) {
    let q = host_queue_name(b.cmdq);
    let at = b.prod.map_or_else(|| "?".into(), |p| format!("{p:#x}"));
    let sync = if b.sync { " + CMD_SYNC" } else { "" };
    let res = result_text(b.ret.into(), |r| r.to_string());
    let took = format_duration_ns(b.duration_ns);
    let text = format!("{q} batch of {}{sync} at {at} -> {res} ({took})", b.n);
    match b.missed {
        0 => ("batch", text),
        m => ("error", format!("{text}, {m} commands not captured")),
    }
}

/// (kind, text) of a log line.
pub fn render(ev: &Event, reg_name: Option<RegNameFn>) -> (&'static str, String) {
    match ev.payload {
        // Fields in the order the line prints them.
        Payload::Mmio {
            write,
            device,
            offset,
            value,
            size,
        } => (
            "mmio",
            render_mmio(write, device, offset, value, size, reg_name),
        ),
        Payload::KvmMmio {
            kind,
            len,
            gpa,
            value,
        } => ("kvm", render_kvm_mmio(kind, len, gpa, value)),
        Payload::KvmExit(e) => ("kvm", render_kvm_exit(&e)),
        Payload::Command {
            queue,
            index,
            w0,
            w1,
        } => (
            "cmd",
            format!("{} [{index:#x}] {}", queue_name(queue), describe(w0, w1)),
        ),
        Payload::Queue { queue, event } => render_queue(queue, &event),
        Payload::Ioctl {
            cmd,
            fd,
            ret,
            duration_ns,
            ..
        } => {
            let (name, res) = ioctl_text(cmd, ret);
            let took = format_duration_ns(duration_ns);
            ("ioctl", format!("{name} fd={fd} -> {res} ({took})"))
        }
        Payload::Mmap {
            fd,
            len,
            offset,
            ret,
            map: true,
            ..
        } => {
            let res = result_text(ret, |r| format!("{r:#x}"));
            let text = format!("mmap fd={fd} len={len:#x} offset={offset:#x} -> {res}");
            ("mmap", text)
        }
        Payload::Mmap { addr, len, ret, .. } => (
            "mmap",
            format!("munmap addr={addr:#x} len={len:#x} -> {ret}"),
        ),
        Payload::KFunc { func, ret, args } => {
            let dir = if ret { "return" } else { "entry" };
            ("kfunc", format!("kfunc#{func} {dir} args={args:x?}"))
        }
        Payload::Iommu {
            op,
            device,
            iova,
            paddr,
            size,
            unmapped,
            flags,
        } => {
            let dev = iommu_device_name(&device);
            render_iommu(op, &dev, iova, paddr, size, unmapped, flags)
        }
        Payload::HostCommand(c) => {
            let (q, text) = (host_queue_name(c.cmdq), describe(c.w0, c.w1));
            ("cmd", format!("{q} [{:#x}] {text}", c.index))
        }
        Payload::HostBatch(b) => render_host_batch(&b),
        Payload::Lost { count } => ("lost", format!("{count} events lost")),
    }
}

/// One readable log line for an event.
pub fn log_line(ev: &Event, reg_name: Option<RegNameFn>) -> LogLine {
    let (kind, text) = render(ev, reg_name);
    LogLine {
        ts_ns: ev.ts_ns,
        pid: ev.pid,
        kind: kind.to_string(),
        text,
        is_error: is_error_event(ev),
    }
}
