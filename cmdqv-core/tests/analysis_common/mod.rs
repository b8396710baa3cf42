//! Event streams shared by the analysis, record and export tests.
#![allow(dead_code)]

use cmdqv_core::command::op;
use cmdqv_core::event::{
    Device, Event, HostBatch, HostCommand, IommuOp, KvmExit, MAIN_CMDQ, Payload, QueueEvent,
    QueueOp,
};
use cmdqv_core::probe_abi;
use cmdqv_core::regs::Cerror;

pub const PID: u32 = 4321;

pub fn ev(ts_ns: u64, payload: Payload) -> Event {
    Event {
        ts_ns,
        pid: PID,
        tid: PID + 1,
        cpu: 1,
        payload,
    }
}

/// One event of every payload kind (and every queue op).
pub fn every_kind() -> Vec<Event> {
    let mut arg = [0u8; 48];
    for (i, b) in arg.iter_mut().enumerate() {
        *b = i as u8 * 3;
    }
    let mut v = vec![
        ev(
            1,
            Payload::Mmio {
                device: Device::Cmdqv,
                offset: 0x10000,
                value: 1,
                size: 4,
                write: true,
            },
        ),
        ev(
            2,
            Payload::Mmio {
                device: Device::Smmu,
                offset: 0x98,
                value: u64::MAX,
                size: 8,
                write: false,
            },
        ),
        ev(
            3,
            Payload::KvmMmio {
                kind: 2,
                len: 4,
                gpa: 0x5002_0000,
                value: 0x12,
            },
        ),
        ev(
            4,
            Payload::Command {
                queue: 3,
                index: 0x8000_0001,
                w0: u64::MAX,
                w1: 0x1234,
            },
        ),
        ev(
            5,
            Payload::Ioctl {
                fd: -1,
                cmd: 0x3b94,
                ret: -25,
                duration_ns: 3100,
                arg_len: 17,
                arg,
            },
        ),
        ev(
            6,
            Payload::Mmap {
                fd: 7,
                addr: 0x7f00_0000_0000,
                len: 0x10000,
                offset: 0,
                ret: -12,
                map: true,
            },
        ),
        ev(
            7,
            Payload::Mmap {
                fd: 7,
                addr: 0x7f00_0000_0000,
                len: 0x10000,
                offset: 0,
                ret: 0,
                map: false,
            },
        ),
        ev(
            8,
            Payload::KFunc {
                func: 9,
                ret: true,
                args: [1, 2, 3, u64::MAX, 0],
            },
        ),
        ev(9, Payload::Lost { count: 12 }),
        ev(
            9,
            Payload::Iommu {
                op: IommuOp::Map,
                iova: 0x1000_0000,
                paddr: 0x8_0000_0000,
                size: 0x20_0000,
                unmapped: 0,
                flags: 0,
                device: [0; 32],
            },
        ),
        ev(9, {
            let mut device = [0u8; 32];
            device[..12].copy_from_slice(b"0009:01:00.0");
            Payload::Iommu {
                op: IommuOp::IoPageFault,
                iova: 0xdead_0000,
                paddr: 0,
                size: 0,
                unmapped: 0,
                flags: 2,
                device,
            }
        }),
        ev(
            9,
            Payload::HostCommand(HostCommand {
                cmdq: 0xffff_0000_0415_70c0,
                index: 0x1_0000,
                appended_sync: true,
                w0: 0x46 | 2 << 12,
                w1: 0,
            }),
        ),
        ev(
            9,
            Payload::HostBatch(HostBatch {
                cmdq: 0xffff_0000_0415_70c0,
                smmu: 0xffff_0000_0415_7080,
                prod: Some(0xffff),
                n: 1,
                sync: true,
                main: Some(true),
                log2size: Some(16),
                duration_ns: 20_351,
                wait_ns: None,
                ret: 0,
                missed: 0,
            }),
        ),
    ];
    // As the ABI decodes them from the words a = i, b = u64::MAX - i.
    for (i, op) in [
        QueueOp::Consumed,
        QueueOp::Error,
        QueueOp::ErrorAck,
        QueueOp::HwAlloc,
        QueueOp::HwFree,
        QueueOp::Doorbell,
        QueueOp::Enable,
        QueueOp::Map,
        QueueOp::Handover,
    ]
    .into_iter()
    .enumerate()
    {
        let event = probe_abi::queue_event(op.to_raw(), i as u64, u64::MAX - i as u64).unwrap();
        v.push(ev(
            10 + i as u64,
            Payload::Queue {
                queue: MAIN_CMDQ,
                event,
            },
        ));
    }
    v
}

/// Any host batch the ABI can carry (a ring size of 0 is how it says "unknown").
fn arb_host_batch() -> impl proptest::strategy::Strategy<Value = Payload> {
    use proptest::{option::of, prelude::*};
    (
        any::<[u64; 3]>(),
        of(any::<u32>()),
        any::<u32>(),
        any::<bool>(),
        of(any::<bool>()),
        of(1u8..=31),
        of(any::<u64>()),
        any::<i32>(),
        any::<u32>(),
    )
        .prop_map(
            |([cmdq, smmu, duration_ns], prod, n, sync, main, log2size, wait_ns, ret, missed)| {
                Payload::HostBatch(HostBatch {
                    cmdq,
                    smmu,
                    prod,
                    n,
                    sync,
                    main,
                    log2size,
                    duration_ns,
                    wait_ns,
                    ret,
                    missed,
                })
            },
        )
}

/// A realistic run: two VCMDQs and the SMMU's own queue, batches of 8–64 commands ending in a
/// CMD_SYNC, a few MMIO accesses and ioctls, one error and its acknowledgement.
pub fn workload(batches: u32) -> Vec<Event> {
    let mut v = Vec::new();
    let mut ts = 1_000_000u64;
    let mut next = |d: u64| {
        ts += d;
        ts
    };
    v.push(ev(
        next(10),
        Payload::Ioctl {
            fd: 5,
            cmd: 0x3b90,
            ret: 0,
            duration_ns: 5_000,
            arg_len: 0,
            arg: [0; 48],
        },
    ));
    v.push(ev(
        next(10),
        Payload::Ioctl {
            fd: 5,
            cmd: 0x3b94,
            ret: -25,
            duration_ns: 3_100,
            arg_len: 0,
            arg: [0; 48],
        },
    ));
    for q in [0u32, 3, MAIN_CMDQ] {
        v.push(ev(
            next(100),
            Payload::Queue {
                queue: q,
                event: QueueEvent::Enable {
                    enabled: true,
                    log2size: 8,
                },
            },
        ));
    }
    v.push(ev(
        next(100),
        Payload::Queue {
            queue: 3,
            event: QueueEvent::HwAlloc {
                log2size: 8,
                errno: None,
            },
        },
    ));
    let mut prod = [0u64; 3];
    for i in 0..batches {
        let qi = (i % 3) as usize;
        let queue = [0u32, 3, MAIN_CMDQ][qi];
        let n = 8 + (i * 7) % 57;
        let cons = prod[qi];
        let p = (cons + u64::from(n)) & 0x1ff;
        v.push(ev(
            next(50),
            Payload::Mmio {
                device: Device::Cmdqv,
                offset: 0x10004,
                value: p,
                size: 4,
                write: true,
            },
        ));
        v.push(ev(
            next(5),
            Payload::Queue {
                queue,
                event: QueueEvent::Doorbell {
                    prod: p as u32,
                    cons: cons as u32,
                },
            },
        ));
        for k in 0..n {
            let w0 = if k + 1 == n {
                op::CMD_SYNC as u64
            } else if k % 5 == 4 {
                op::ATC_INV as u64 | 0x10 << 32
            } else {
                op::TLBI_NH_VA as u64 | 1 << 32 | u64::from(i % 4) << 48
            };
            let index = ((cons + u64::from(k)) & 0x1ff) as u32;
            v.push(ev(
                next(7),
                Payload::Command {
                    queue,
                    index,
                    w0,
                    w1: 0x1000 * u64::from(k),
                },
            ));
        }
        if i == batches / 2 {
            let index = (cons + u64::from(n) - 1) & 0x1ff;
            v.push(ev(
                next(100),
                Payload::Queue {
                    queue,
                    event: QueueEvent::Error {
                        index: index as u32,
                        cerror: Cerror::Ill.into(),
                    },
                },
            ));
            v.push(ev(
                next(2_000),
                Payload::Queue {
                    queue,
                    event: QueueEvent::ErrorAck { gerrorn: 1 },
                },
            ));
        }
        v.push(ev(
            next(200 + u64::from(i % 13) * 97),
            Payload::Queue {
                queue,
                event: QueueEvent::Consumed {
                    cons: p as u32,
                    prod: p as u32,
                },
            },
        ));
        prod[qi] = p;
        if i % 50 == 0 {
            v.push(ev(
                next(10),
                Payload::Mmio {
                    device: Device::Smmu,
                    offset: 0x9c,
                    value: p,
                    size: 4,
                    write: false,
                },
            ));
        }
    }
    v.push(ev(next(10), Payload::Lost { count: 3 }));
    v.push(ev(
        next(10),
        Payload::Queue {
            queue: 3,
            event: QueueEvent::HwFree,
        },
    ));
    v
}

/// Any event, with queue ids biased towards the interesting ones (small, MAIN_CMDQ, huge).
pub fn any_event() -> impl proptest::strategy::Strategy<Value = Event> {
    use proptest::prelude::*;
    let queue = prop_oneof![0u32..4, Just(MAIN_CMDQ), any::<u32>()];
    let op = prop_oneof![
        Just(QueueOp::Consumed),
        Just(QueueOp::Error),
        Just(QueueOp::ErrorAck),
        Just(QueueOp::HwAlloc),
        Just(QueueOp::HwFree),
        Just(QueueOp::Doorbell),
        Just(QueueOp::Enable),
        Just(QueueOp::Map),
        Just(QueueOp::Handover),
    ];
    // Queue events as the ABI decodes any words.
    let queue_event = |op: QueueOp, a, b| probe_abi::queue_event(op.to_raw(), a, b).unwrap();
    let small = prop_oneof![0u64..16, any::<u64>()];
    let payload = prop_oneof![
        (
            any::<bool>(),
            any::<u64>(),
            any::<u64>(),
            any::<u8>(),
            any::<bool>()
        )
            .prop_map(|(smmu, offset, value, size, write)| Payload::Mmio {
                device: if smmu { Device::Smmu } else { Device::Cmdqv },
                offset,
                value,
                size,
                write,
            }),
        (any::<u32>(), any::<u32>(), any::<u64>(), any::<u64>()).prop_map(
            |(kind, len, gpa, value)| Payload::KvmMmio {
                kind,
                len,
                gpa,
                value
            }
        ),
        (any::<[u32; 3]>(), any::<u64>(), any::<u64>()).prop_map(
            |([isa, reason, vcpu], pc, info)| {
                Payload::KvmExit(KvmExit {
                    isa,
                    reason,
                    vcpu,
                    pc,
                    info,
                })
            }
        ),
        (queue.clone(), 0u32..32, any::<u64>(), any::<u64>()).prop_map(|(queue, index, w0, w1)| {
            Payload::Command {
                queue,
                index,
                w0,
                w1,
            }
        }),
        (queue, op, small.clone(), small).prop_map(move |(queue, op, a, b)| Payload::Queue {
            queue,
            event: queue_event(op, a, b),
        }),
        (
            any::<i32>(),
            any::<u32>(),
            any::<i64>(),
            any::<u64>(),
            0u32..=48,
            any::<[u8; 32]>()
        )
            .prop_map(|(fd, cmd, ret, duration_ns, arg_len, a)| {
                let mut arg = [0u8; 48];
                arg[..32].copy_from_slice(&a);
                Payload::Ioctl {
                    fd,
                    cmd,
                    ret,
                    duration_ns,
                    arg_len,
                    arg,
                }
            }),
        (
            any::<i32>(),
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            any::<i64>(),
            any::<bool>()
        )
            .prop_map(|(fd, addr, len, offset, ret, map)| Payload::Mmap {
                fd,
                addr,
                len,
                offset,
                ret,
                map
            }),
        (any::<u32>(), any::<bool>(), any::<[u64; 5]>())
            .prop_map(|(func, ret, args)| Payload::KFunc { func, ret, args }),
        any::<u64>().prop_map(|count| Payload::Lost { count }),
        (any::<u64>(), any::<u32>(), any::<bool>(), any::<[u64; 2]>()).prop_map(
            |(cmdq, index, appended_sync, [w0, w1])| Payload::HostCommand(HostCommand {
                cmdq,
                index,
                appended_sync,
                w0,
                w1,
            })
        ),
        arb_host_batch(),
        (
            prop_oneof![
                Just(IommuOp::Map),
                Just(IommuOp::Unmap),
                Just(IommuOp::IoPageFault),
                Just(IommuOp::Attach)
            ],
            any::<[u64; 4]>(),
            any::<i32>(),
            any::<[u8; 32]>()
        )
            .prop_map(|(op, [iova, paddr, size, unmapped], flags, device)| {
                Payload::Iommu {
                    op,
                    iova,
                    paddr,
                    size,
                    unmapped,
                    flags,
                    device,
                }
            }),
    ];
    (
        any::<u64>(),
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        payload,
    )
        .prop_map(|(ts_ns, pid, tid, cpu, payload)| Event {
            ts_ns,
            pid,
            tid,
            cpu,
            payload,
        })
}
