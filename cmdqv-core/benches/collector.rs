//! Collector throughput: decode of eBPF ring-buffer records + correlation + aggregation, on a
//! realistic mix (guest doorbell, a batch of 8–64 commands ending in a CMD_SYNC, the consumption
//! pass, a few MMIO accesses and ioctls). Budget (ARCHITECTURE.md): ≥ 2 M events/s on one core.
//!
//! `decode+ingest` is the path every live source takes (`Collector::ingest_raw` on the records
//! the probes write); `decode` and `ingest` are its two halves. The trace file stores the same
//! records, so `record-write` / `trace-read` run the same codec plus framing and CRC.
//!
//! Run: `cargo bench -p cmdqv-core --bench collector`

use std::hint::black_box;

use cmdqv_core::analysis::{Collector, CollectorConfig};
use cmdqv_core::command::op;
use cmdqv_core::event::{Device, Event, MAIN_CMDQ, Payload, QueueEvent, Source};
use cmdqv_core::probe_abi;
use cmdqv_core::record::{TraceMeta, TraceReader, TraceWriter};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn mix(batches: u32) -> Vec<Event> {
    let mut v = Vec::new();
    let mut ts = 1_000_000u64;
    let mut push = |d: u64, payload: Payload, v: &mut Vec<Event>| {
        ts += d;
        v.push(Event {
            ts_ns: ts,
            pid: 1234,
            tid: 1235,
            cpu: 2,
            payload,
        });
    };
    let mut prod = [0u64; 5];
    for i in 0..batches {
        let qi = (i % 5) as usize;
        let queue = if qi == 4 { MAIN_CMDQ } else { qi as u32 * 2 };
        let n = 8 + (i * 13) % 57;
        let cons = prod[qi];
        let p = (cons + u64::from(n)) & 0x1ff;
        if i % 4 == 0 {
            let mmio = Payload::Mmio {
                device: Device::Cmdqv,
                offset: 0x10004,
                value: p,
                size: 4,
                write: true,
            };
            push(40, mmio, &mut v);
        }
        push(
            5,
            Payload::Queue {
                queue,
                event: QueueEvent::Doorbell {
                    prod: p as u32,
                    cons: cons as u32,
                },
            },
            &mut v,
        );
        for k in 0..n {
            let w0 = if k + 1 == n {
                op::CMD_SYNC as u64
            } else {
                op::TLBI_NH_VA as u64 | 1 << 32 | u64::from(k % 8) << 48
            };
            let index = ((cons + u64::from(k)) & 0x1ff) as u32;
            let cmd = Payload::Command {
                queue,
                index,
                w0,
                w1: (0x1000 * u64::from(k)) | (1 << 10),
            };
            push(7, cmd, &mut v);
        }
        push(
            300,
            Payload::Queue {
                queue,
                event: QueueEvent::Consumed {
                    cons: p as u32,
                    prod: p as u32,
                },
            },
            &mut v,
        );
        if i % 64 == 0 {
            let io = Payload::Ioctl {
                fd: 5,
                cmd: 0x3b8d,
                ret: 0,
                duration_ns: 4_000,
                arg_len: 48,
                arg: [0; 48],
            };
            push(20, io, &mut v);
        }
        prod[qi] = p;
    }
    v
}

fn bench(c: &mut Criterion) {
    let events = mix(2_000);
    let records: Vec<Vec<u8>> = events.iter().filter_map(probe_abi::encode).collect();
    let mut g = c.benchmark_group("collector");
    g.throughput(Throughput::Elements(records.len() as u64));

    g.bench_function("decode+ingest", |b| {
        let mut col = Collector::new(CollectorConfig::new(Source::Ebpf, "bench"));
        b.iter(|| {
            for r in &records {
                let _ = black_box(col.ingest_raw(black_box(r)));
            }
        });
        black_box(col.snapshot(col.last_ts()));
    });

    g.bench_function("decode", |b| {
        b.iter(|| {
            for r in &records {
                let _ = black_box(probe_abi::decode(black_box(r)));
            }
        });
    });

    g.bench_function("ingest", |b| {
        let mut col = Collector::new(CollectorConfig::new(Source::Ebpf, "bench"));
        b.iter(|| {
            for e in &events {
                col.ingest(black_box(e));
            }
        });
    });

    g.bench_function("record-write", |b| {
        b.iter(|| {
            let meta = TraceMeta::new(Source::Ebpf, "bench");
            let mut w = TraceWriter::new(std::io::sink(), &meta).unwrap();
            for e in &events {
                w.write(black_box(e)).unwrap();
            }
            w.finish().unwrap();
        });
    });

    let file = {
        let mut w = TraceWriter::new(Vec::new(), &TraceMeta::new(Source::Ebpf, "bench")).unwrap();
        for e in &events {
            w.write(e).unwrap();
        }
        w.finish().unwrap()
    };
    g.bench_function("trace-read", |b| {
        b.iter(|| {
            let r = TraceReader::new(black_box(&file[..])).unwrap();
            black_box(r.filter(|r| r.is_ok()).count())
        });
    });
    g.finish();

    let mut g = c.benchmark_group("collector-snapshot");
    let mut col = Collector::new(CollectorConfig::new(Source::Ebpf, "bench"));
    for e in &events {
        col.ingest(e);
    }
    g.bench_function("snapshot (5 queues, full log)", |b| {
        b.iter(|| black_box(col.snapshot(col.last_ts())));
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
