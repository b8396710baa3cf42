//! Device-model benchmarks (numbers and commands in BENCHMARKS.md, "Device model"):
//! fully emulated VCMDQ consumption of a TLBI_NH_VA + CMD_SYNC mix (63 + 1 per batch, a full
//! 2^19 ring per PROD write), the SMMU main CMDQ through the same engine, MMIO dispatch per
//! access, and the same full-ring doorbell through the qtest text protocol.

use std::hint::black_box;
use std::time::Duration;

use cmdqv_core::command::Command;
use cmdqv_core::engine::{CountingSink, NullSink};
use cmdqv_core::mem::{GuestMemory, VecMemory};
use cmdqv_core::model::{Cmdqv, ModelConfig};
use cmdqv_core::qtest::{DEFAULT_MMIO_BASE, QtestConfig, QtestServer, RAM_BASE};
use cmdqv_core::regs::alloc_map;
use cmdqv_core::smmu::Smmu;
use criterion::measurement::{Measurement, ValueFormatter};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// Thread CPU time (CLOCK_THREAD_CPUTIME_ID) instead of wall time: on the shared 2-core machine
/// other jobs steal the CPU, which inflates wall time but much less the time this thread ran.
struct CpuTime;

fn thread_cpu_ns() -> u64 {
    use nix::time::{ClockId, clock_gettime};
    // The clock exists on every Linux; a failure would only make this sample read 0.
    clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID).map_or(0, |ts| {
        ts.tv_sec() as u64 * 1_000_000_000 + ts.tv_nsec() as u64
    })
}

impl Measurement for CpuTime {
    type Intermediate = u64;
    type Value = u64;
    fn start(&self) -> u64 {
        thread_cpu_ns()
    }
    fn end(&self, i: u64) -> u64 {
        thread_cpu_ns().saturating_sub(i)
    }
    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }
    fn zero(&self) -> u64 {
        0
    }
    fn to_f64(&self, v: &u64) -> f64 {
        *v as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &CpuFormatter
    }
}

struct CpuFormatter;

impl ValueFormatter for CpuFormatter {
    fn scale_values(&self, ns: f64, values: &mut [f64]) -> &'static str {
        let (f, unit) = match ns {
            x if x < 1e3 => (1.0, "ns (cpu)"),
            x if x < 1e6 => (1e-3, "µs (cpu)"),
            _ => (1e-6, "ms (cpu)"),
        };
        values.iter_mut().for_each(|v| *v *= f);
        unit
    }
    fn scale_throughputs(&self, typical: f64, t: &Throughput, values: &mut [f64]) -> &'static str {
        let n = match *t {
            Throughput::Bytes(n) | Throughput::BytesDecimal(n) | Throughput::Elements(n) => {
                n as f64
            }
        };
        let (div, unit) = if n * 1e9 / typical >= 1e6 {
            (1e6, "M/s (cpu)")
        } else {
            (1e3, "K/s (cpu)")
        };
        values.iter_mut().for_each(|v| *v = n * 1e9 / *v / div);
        unit
    }
    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}

const LOG2: u32 = 19;
const RING: u64 = RAM_BASE; // 8 MiB ring at the start of RAM

/// 63 TLBI_NH_VA then one CMD_SYNC (CS=NONE), repeated over the whole ring.
fn fill_ring<M: GuestMemory>(mem: &mut M, base: u64) {
    for i in 0..1u64 << LOG2 {
        let c = if i % 64 == 63 {
            Command::sync_none()
        } else {
            Command::tlbi_nh_va(0, 1, (i & 0xffff) << 12, true)
        };
        mem.write_cmd(base + 16 * i, c.encode()).unwrap();
    }
}

/// VINTF0 + VCMDQ0 live with a 2^19 ring, through MMIO as Linux would.
fn live_model(cfg: ModelConfig, mem: &VecMemory) -> Cmdqv {
    let mut m = Cmdqv::new(cfg);
    let w = |m: &mut Cmdqv, off: u64, size: u8, v: u64| {
        m.write(off, size, v, mem, &mut NullSink, &mut ())
    };
    w(&mut m, 0x0, 4, 1);
    w(&mut m, 0x1000, 4, 1 << 17 | 1);
    w(&mut m, 0x200, 4, alloc_map::encode(0, 0, true) as u64);
    w(&mut m, 0x40000, 8, RING | LOG2 as u64);
    w(&mut m, 0x30008, 4, 1);
    m
}

fn bench_consumption(c: &mut Criterion<CpuTime>) {
    let mut mem = VecMemory::new(RAM_BASE, 16 << 20);
    fill_ring(&mut mem, RING);
    let n = 1u64 << LOG2;
    let mut g = c.benchmark_group("model/consume");
    g.throughput(Throughput::Elements(n));
    g.sample_size(20).measurement_time(Duration::from_secs(4));
    for (name, cfg) in [
        ("guest-vcmdq", ModelConfig::guest()),
        ("host-vcmdq", ModelConfig::host()),
    ] {
        let mut m = live_model(cfg, &mem);
        let mut prod = 0u64;
        g.bench_function(format!("{name}/null-sink/full-ring"), |b| {
            b.iter(|| {
                // One PROD write of a full ring: toggle the wrap bit.
                prod ^= n;
                m.write(0x30004, 4, prod, &mem, &mut NullSink, &mut ());
            })
        });
        assert_eq!(m.page0_state(0).unwrap().cons, prod as u32);
        assert_eq!(m.stats.queue_errors, 0);
    }
    let mut m = live_model(ModelConfig::guest(), &mem);
    let mut sink = CountingSink::default();
    let mut prod = 0u64;
    g.bench_function("guest-vcmdq/counting-sink/full-ring", |b| {
        b.iter(|| {
            prod ^= n;
            m.write(0x30004, 4, prod, &mem, &mut sink, &mut ());
        })
    });
    black_box(sink.total());

    let mut s = Smmu::new();
    s.write(0x90, 8, RING | LOG2 as u64, &mem, &mut NullSink, &mut ());
    s.write(0x20, 4, 0x8, &mem, &mut NullSink, &mut ());
    let mut prod = 0u64;
    g.bench_function("smmu-main-cmdq/null-sink/full-ring", |b| {
        b.iter(|| {
            prod ^= n;
            s.write(0x98, 4, prod, &mem, &mut NullSink, &mut ());
        })
    });
    assert_eq!(s.cmdq_cons(), prod as u32);
    g.finish();
}

fn bench_mmio(c: &mut Criterion<CpuTime>) {
    let mem = VecMemory::new(RAM_BASE, 1 << 20);
    let mut m = live_model(ModelConfig::guest(), &mem);
    let mut g = c.benchmark_group("model/mmio");
    g.throughput(Throughput::Elements(1));
    g.sample_size(30).measurement_time(Duration::from_secs(2));
    g.bench_function("read32/logical-page0-CONS_INDX", |b| {
        b.iter(|| m.read(black_box(0x30000), 4, &mut ()))
    });
    g.bench_function("read32/config-CONFIG", |b| {
        b.iter(|| m.read(black_box(0x0), 4, &mut ()))
    });
    g.bench_function("read32/VI_ERR_MAP_0 (computed)", |b| {
        b.iter(|| m.read(black_box(0x14), 4, &mut ()))
    });
    g.bench_function("write32/VI_INT_MASK_0", |b| {
        b.iter(|| m.write(black_box(0x1c), 4, 0, &mem, &mut NullSink, &mut ()))
    });
    g.bench_function("write32/logical-page0-PROD (empty doorbell)", |b| {
        b.iter(|| m.write(black_box(0x30004), 4, 0, &mem, &mut NullSink, &mut ()))
    });
    g.bench_function("write64/logical-page1-BASE", |b| {
        b.iter(|| {
            m.write(
                black_box(0x40000),
                8,
                RING | LOG2 as u64,
                &mem,
                &mut NullSink,
                &mut (),
            )
        })
    });
    g.bench_function("regs::decode+name", |b| {
        b.iter(|| cmdqv_core::regs::decode(black_box(0x30084)).map(|r| r.name()))
    });
    g.finish();
}

fn bench_qtest(c: &mut Criterion<CpuTime>) {
    let mut q = QtestServer::new(&QtestConfig {
        ram_size: 16 << 20,
        ..Default::default()
    });
    fill_ring(&mut q.machine.ram, RING);
    let b0 = DEFAULT_MMIO_BASE;
    let mut out = Vec::new();
    for line in [
        format!("writel {:#x} 1", b0),
        format!("writel {:#x} 0x20001", b0 + 0x1000),
        format!("writel {:#x} 1", b0 + 0x200),
        format!("writeq {:#x} {:#x}", b0 + 0x40000, RING | LOG2 as u64),
        format!("writel {:#x} 1", b0 + 0x30008),
    ] {
        q.handle_line(line.as_bytes(), &mut out);
    }
    assert!(!String::from_utf8_lossy(&out).contains("ERR"));
    let n = 1u64 << LOG2;
    let lines = [
        format!("writel {:#x} {:#x}", b0 + 0x30004, n),
        format!("writel {:#x} 0x0", b0 + 0x30004),
    ];
    let read = format!("readl {:#x}", b0 + 0x30000);
    let mut g = c.benchmark_group("model/qtest");
    g.sample_size(20).measurement_time(Duration::from_secs(4));
    g.throughput(Throughput::Elements(n));
    let mut k = 0;
    g.bench_function("writel-PROD/full-ring", |b| {
        b.iter(|| {
            out.clear();
            q.handle_line(lines[k & 1].as_bytes(), &mut out);
            k += 1;
        })
    });
    g.throughput(Throughput::Elements(1));
    g.bench_function("readl-CONS/round-trip", |b| {
        b.iter(|| {
            out.clear();
            q.handle_line(read.as_bytes(), &mut out);
        })
    });
    g.finish();
    assert_eq!(q.machine.cmdqv.stats.queue_errors, 0);
}

criterion_group! {
    name = benches;
    config = Criterion::default().with_measurement(CpuTime);
    targets = bench_consumption, bench_mmio, bench_qtest
}
criterion_main!(benches);
