//! Where a batch's time goes (`phases_ns`): the collector splits each pass by the events a
//! source reports, and leaves out the phases it cannot see.

use cmdqv_core::analysis::*;
use cmdqv_core::command::op;
use cmdqv_core::event::{Device, Event, MAIN_CMDQ, Payload, QueueEvent, Source};

fn ev(ts_ns: u64, tid: u32, payload: Payload) -> Event {
    Event {
        ts_ns,
        pid: 100,
        tid,
        cpu: 0,
        payload,
    }
}

fn mmio(ts: u64, tid: u32, device: Device, offset: u64, value: u64, write: bool) -> Event {
    let payload = Payload::Mmio {
        device,
        offset,
        value,
        size: 4,
        write,
    };
    ev(ts, tid, payload)
}

fn pass(c: &mut Collector, t: u64, tid: u32, queue: u32, cons0: u32, n: u32) {
    let prod = cons0 + n;
    let db = QueueEvent::Doorbell { prod, cons: cons0 };
    c.ingest(&ev(t, tid, Payload::Queue { queue, event: db }));
    for i in 0..n {
        let w0 = if i + 1 == n {
            op::CMD_SYNC
        } else {
            op::TLBI_NH_VA
        };
        let command = Payload::Command {
            queue,
            index: cons0 + i,
            w0: w0.into(),
            w1: 0,
        };
        c.ingest(&ev(t + 1_000 + 100 * u64::from(i), tid, command));
    }
    let done = QueueEvent::Consumed { cons: prod, prod };
    let end = t + 1_000 + 100 * u64::from(n) + 500;
    c.ingest(&ev(end, tid, Payload::Queue { queue, event: done }));
}

fn phases(s: &Summary, name: &str) -> Vec<(String, u64)> {
    let q = s.queues.iter().find(|q| q.name == name).expect("queue");
    q.phases_ns
        .iter()
        .map(|(k, v)| (k.clone(), v.count))
        .collect()
}

#[test]
fn a_trapped_kvm_pass_has_every_phase_and_a_direct_one_only_what_it_shows() {
    let mut c = Collector::new(CollectorConfig::new(Source::Ebpf, "t"));
    let map = QueueEvent::Map {
        vintf: 0,
        lvcmdq: 1,
        alloc: true,
    };
    c.ingest(&ev(
        10,
        7,
        Payload::Queue {
            queue: 3,
            event: map,
        },
    ));
    for k in 0..10u32 {
        let t = 1_000_000 * u64::from(k + 1);
        // Trapped: KVM sees the store, the VMM's handler runs, the model consumes, the guest
        // polls CONS through VINTF0's logical page0 (LVCMDQ 1 = global VCMDQ 3).
        let kvm = Payload::KvmMmio {
            kind: 2,
            len: 4,
            gpa: 0x1_0003_0084,
            value: u64::from(4 * (k + 1)),
        };
        c.ingest(&ev(t - 3_000, 7, kvm));
        c.ingest(&mmio(t - 1_000, 7, Device::Cmdqv, 0x30084, 4, true));
        pass(&mut c, t, 7, 3, 4 * k, 4);
        c.ingest(&mmio(
            t + 9_000,
            7,
            Device::Cmdqv,
            0x30080,
            4 * u64::from(k + 1),
            false,
        ));
        // Direct: the host's hardware thread latches PROD; no VMM sees the doorbell.
        pass(&mut c, t + 200_000, 9, 5, 2 * k, 2);
        // The SMMU's own queue, with an ioctl forwarded while its pass is open.
        c.ingest(&mmio(t + 400_000, 11, Device::Smmu, 0x98, 2, true));
        let db = QueueEvent::Doorbell {
            prod: 2 * (k + 1),
            cons: 2 * k,
        };
        let main = |event| Payload::Queue {
            queue: MAIN_CMDQ,
            event,
        };
        c.ingest(&ev(t + 401_000, 11, main(db)));
        let io = Payload::Ioctl {
            fd: 3,
            cmd: 0x3b8d,
            ret: 0,
            duration_ns: 20_000,
            arg_len: 0,
            arg: [0; 48],
        };
        c.ingest(&ev(t + 402_000, 11, io));
        let command = Payload::Command {
            queue: MAIN_CMDQ,
            index: 2 * k,
            w0: op::CMD_SYNC.into(),
            w1: 0,
        };
        c.ingest(&ev(t + 430_000, 11, command));
        let done = QueueEvent::Consumed {
            cons: 2 * (k + 1),
            prod: 2 * (k + 1),
        };
        c.ingest(&ev(t + 431_000, 11, main(done)));
    }
    let s = c.snapshot(c.last_ts());
    let n = |names: &[&str]| -> Vec<(String, u64)> {
        names.iter().map(|s| (s.to_string(), 10)).collect()
    };
    assert_eq!(
        phases(&s, "vcmdq3"),
        n(&[
            "cons_update",
            "cons_visible",
            "consume",
            "doorbell_to_vmm",
            "vmm_to_consume"
        ])
    );
    assert_eq!(
        phases(&s, "vcmdq5"),
        n(&["cons_update", "consume", "doorbell_to_consume"])
    );
    assert_eq!(
        phases(&s, "smmu-cmdq"),
        n(&["cons_update", "consume", "ioctl", "vmm_to_consume"])
    );
    let q3 = &s
        .queues
        .iter()
        .find(|q| q.name == "vcmdq3")
        .unwrap()
        .phases_ns;
    let near = |v: u64, want: u64| v.abs_diff(want) <= want / 50 + 1;
    assert!(near(q3["doorbell_to_vmm"].p50, 2_000), "{q3:?}");
    assert!(near(q3["vmm_to_consume"].p50, 2_000), "{q3:?}");
    assert!(near(q3["consume"].p50, 300), "{q3:?}");
    assert!(near(q3["cons_update"].p50, 600), "{q3:?}");
    assert!(near(q3["cons_visible"].p50, 7_100), "{q3:?}");
    let main = &s.queues[0].phases_ns;
    assert!(near(main["ioctl"].p50, 20_000), "{main:?}");

    let json = serde_json::to_value(&s).unwrap();
    let q5 = json["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == "vcmdq5");
    let q5 = &q5.unwrap()["phases_ns"];
    assert!(q5["consume"]["p50"].is_u64() && q5["consume"]["p99"].is_u64());
    assert!(
        q5.get("vmm_to_consume").is_none(),
        "unseen phases are absent: {q5}"
    );
}
