//! Property tests of the device model against arbitrary guest behaviour: random MMIO sequences
//! over both apertures (garbage offsets, sizes and values included) interleaved with random
//! guest-memory contents. Invariants: the global and logical views agree for every mapped queue,
//! unmapped logical slots read 0, registers stay within their fields, the error maps only name
//! mapped and enabled queues, a doorbell on a live queue leaves it empty or stopped on an error,
//! and consumption stops exactly at the first faulting command.

use cmdqv_core::command::{CmdSync, Command, SyncCs};
use cmdqv_core::engine::{CountingSink, GuestErrorKind, Invalidation, InvalidationSink, NullSink};
use cmdqv_core::mem::{GuestMemory, VecMemory};
use cmdqv_core::model::{Access64, Cmdqv, ModelConfig, Personality};
use cmdqv_core::regs::{
    self, Cerror, Geometry, MAX_LVCMDQS_PER_VINTF, Page0Reg, alloc_map, cons_indx, gerror,
};
use cmdqv_core::smmu::Smmu;
use proptest::prelude::*;

const RAM: u64 = 0x4000_0000;
const RAM_SIZE: usize = 0x4000; // 1024 commands

#[derive(Clone, Debug)]
enum Op {
    Mmio {
        offset: u64,
        size: u8,
        value: u64,
        write: bool,
    },
    Poke {
        slot: u16,
        cmd: [u64; 2],
    },
    /// A guest's queue set-up as a burst of MMIO writes: VINTF enable, map, BASE, enable.
    Setup {
        q: u8,
        vintf: u8,
        lidx: u8,
        base: u64,
        global: bool,
    },
    /// A doorbell through either aperture.
    Doorbell {
        q: u8,
        prod: u32,
        global: bool,
    },
}

fn small_geometry() -> Geometry {
    Geometry {
        num_vintf_log2: 1,
        num_vcmdq_log2: 2,
        num_sid_per_vintf_log2: 4,
    }
}

fn geometry() -> impl Strategy<Value = Geometry> {
    prop_oneof![
        Just(Geometry::guest()),
        Just(small_geometry()),
        Just(Geometry::host())
    ]
}

fn config() -> impl Strategy<Value = ModelConfig> {
    (geometry(), any::<bool>(), any::<bool>(), any::<bool>()).prop_map(
        |(g, host, qemu64, sticky)| ModelConfig {
            geometry: g,
            personality: if host {
                Personality::Host
            } else {
                Personality::Guest
            },
            access64: if qemu64 {
                Access64::QemuCompat
            } else {
                Access64::Split
            },
            maps_clear_on_ack: !sticky,
            ..ModelConfig::guest()
        },
    )
}

/// Register offsets worth hitting often: the config page, and page0/page1 of the first slots
/// in the global aperture and the first two VINTF apertures.
fn interesting_offsets() -> Vec<u64> {
    let mut v = vec![0x0, 0x4, 0x8, 0x14, 0x18, 0x1c, 0x20, 0x24, 0x30];
    for q in 0..4 {
        v.push(0x200 + 4 * q);
    }
    for vi in 0..2u64 {
        let blk = 0x1000 + 0x100 * vi;
        v.extend([blk, blk + 4, blk + 0x40, blk + 0x80, blk + 0xc0, blk + 0xc4]);
    }
    for page0 in [0x10000u64, 0x30000, 0x50000] {
        for slot in 0..4u64 {
            for r in [0x0, 0x4, 0x8, 0xc, 0x10, 0x14] {
                v.push(page0 + 0x80 * slot + r);
            }
            for r in [0x0, 0x4, 0x8, 0xc] {
                v.push(page0 + 0x10000 + 0x80 * slot + r);
            }
        }
    }
    v
}

fn value() -> impl Strategy<Value = u64> {
    prop_oneof![
        3 => 0u64..8,
        2 => (0u32..2, 0u32..4, any::<bool>()).prop_map(|(v, l, a)| alloc_map::encode(v, l, a) as u64),
        2 => (0u64..RAM_SIZE as u64 / 0x100, prop_oneof![0u64..10, Just(19), Just(31)])
            .prop_map(|(k, log2)| (RAM + 0x100 * k) | log2),
        3 => 0u64..2048,
        2 => any::<u64>(),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let offs = interesting_offsets();
    let offset = prop_oneof![
        6 => proptest::sample::select(offs),
        2 => 0u64..0x90_0000,
        1 => any::<u64>(),
    ];
    let size = prop_oneof![8 => Just(4u8), 4 => Just(8u8), 1 => Just(1u8), 1 => Just(2u8), 1 => Just(3u8), 1 => Just(16u8)];
    prop_oneof![
        8 => (offset, size, value(), prop::bool::weighted(0.7))
            .prop_map(|(offset, size, value, write)| Op::Mmio { offset, size, value, write }),
        2 => (0u16..1024, command_words()).prop_map(|(slot, cmd)| Op::Poke { slot, cmd }),
        1 => (0u8..4, 0u8..2, 0u8..4, (0u64..RAM_SIZE as u64 / 0x100, 0u64..10), any::<bool>())
            .prop_map(|(q, vintf, lidx, (k, log2), global)| Op::Setup { q, vintf, lidx, base: (RAM + 0x100 * k) | log2, global }),
        2 => (0u8..4, 0u32..2048, any::<bool>()).prop_map(|(q, prod, global)| Op::Doorbell { q, prod, global }),
    ]
}

/// Commands: mostly ones a guest VCMDQ accepts, some it refuses, some garbage.
fn command_words() -> impl Strategy<Value = [u64; 2]> {
    prop_oneof![
        4 => (any::<u16>(), any::<u64>()).prop_map(|(a, va)| Command::tlbi_nh_va(0, a, va, false).encode()),
        3 => Just(Command::sync_none().encode()),
        1 => Just(Command::TlbiNhAsid { vmid: 1, asid: 2 }.encode()),
        1 => Just(Command::CfgiSte { sid: 1, ssec: false, leaf: true }.encode()),
        1 => Just(Command::decode(0x46 | 1 << 12, 0).encode()),
        1 => (any::<u64>(), any::<u64>()).prop_map(|(a, b)| [a, b]),
    ]
}

fn read_quiet(m: &mut Cmdqv, off: u64) -> u32 {
    m.read(off, 4, &mut ()) as u32
}

/// Check every invariant of the model's state.
fn check(m: &mut Cmdqv) -> Result<(), TestCaseError> {
    let g = m.geometry();
    // Views agree for every mapped queue; unmapped logical slots read 0.
    for vi in 0..g.num_vintfs() {
        for l in 0..MAX_LVCMDQS_PER_VINTF {
            let logical0 =
                regs::VINTF_PAGE0 + regs::VINTF_APERTURE_STRIDE * vi as u64 + 0x80 * l as u64;
            let mapped = m.vintf(vi).unwrap().lvcmdq(l);
            match mapped {
                Some(q) => {
                    prop_assert_eq!(m.mapping(q as usize), Some((vi as u8, l as u8)));
                    let global0 = regs::GLOBAL_PAGE0 + 0x80 * q as u64;
                    for r in [0x0, 0x4, 0x8, 0xc, 0x10, 0x14] {
                        prop_assert_eq!(read_quiet(m, logical0 + r), read_quiet(m, global0 + r));
                    }
                    for r in [0x0, 0x4, 0x8, 0xc] {
                        prop_assert_eq!(
                            read_quiet(m, logical0 + 0x10000 + r),
                            read_quiet(m, global0 + 0x10000 + r)
                        );
                    }
                }
                None if l < 4 => {
                    prop_assert_eq!(read_quiet(m, logical0 + 0x4), 0);
                    prop_assert_eq!(read_quiet(m, logical0 + 0x10000), 0);
                }
                None => {}
            }
        }
    }
    // Fields in range; STATUS follows CONFIG.
    for q in 0..g.num_vcmdqs() {
        let p = m.page0_state(q).unwrap();
        prop_assert!(p.prod <= regs::prod_indx::WR_MASK);
        prop_assert_eq!(p.cons & !cons_indx::WRITABLE, 0);
        prop_assert!(p.config <= 1 && p.status == p.config);
        prop_assert_eq!(p.gerror & !gerror::MASK, 0);
        prop_assert_eq!(p.gerrorn & !gerror::MASK, 0);
    }
    prop_assert_eq!(read_quiet(m, 0x8), read_quiet(m, 0x0) & 1);
    // Error maps: only mapped, enabled queues of enabled VINTFs; the three maps agree.
    let cmdq_map = m.cmdq_err_map();
    for q in 0..g.num_vcmdqs() {
        if cmdq_map >> q & 1 == 1 {
            let (vi, l) = m.mapping(q).expect("error bit for an unmapped queue");
            prop_assert!(m.vintf(vi as usize).unwrap().enabled());
            prop_assert_eq!(m.page0_state(q).unwrap().config, 1);
            prop_assert_eq!(m.lvcmdq_err_map(vi as usize) >> l & 1, 1);
        }
    }
    prop_assert!(g.num_vcmdqs() == 128 || cmdq_map >> g.num_vcmdqs() == 0);
    let vi_map = m.vi_err_map();
    for vi in 0..g.num_vintfs() {
        let lmap = m.lvcmdq_err_map(vi);
        prop_assert_eq!(vi_map >> vi & 1 == 1, lmap != 0);
        for l in 0..MAX_LVCMDQS_PER_VINTF {
            if lmap >> l & 1 == 1 {
                let q = m
                    .vintf(vi)
                    .unwrap()
                    .lvcmdq(l)
                    .expect("LVCMDQ bit for an empty slot");
                prop_assert_eq!(cmdq_map >> q & 1, 1);
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_mmio_keeps_the_model_coherent(cfg in config(), ops in prop::collection::vec(op(), 1..200)) {
        let mut m = Cmdqv::new(cfg);
        let mut mem = VecMemory::new(RAM, RAM_SIZE);
        // RAM starts full of commands a guest VCMDQ accepts; Poke ops plant the faults.
        for i in 0..(RAM_SIZE / 16) as u64 {
            let c = if i % 8 == 7 { Command::sync_none() } else { Command::tlbi_nh_va(0, i as u16, i << 12, false) };
            mem.write_cmd(RAM + 16 * i, c.encode()).unwrap();
        }
        let mut sink = CountingSink::default();
        let mut errors_before = 0;
        for op in ops {
            let op = lower(&m, op);
            for op in op {
            match op {
                Op::Poke { slot, cmd } => mem.write_cmd(RAM + 16 * slot as u64, cmd).unwrap(),
                Op::Mmio { offset, size, write: false, .. } => {
                    m.read(offset, size, &mut ());
                }
                Op::Setup { .. } | Op::Doorbell { .. } => unreachable!("lowered"),
                Op::Mmio { offset, size, value, write: true } => {
                    m.write(offset, size, value, &mem, &mut sink, &mut ());
                    // A doorbell on a live queue leaves it empty or stopped on an error.
                    if size == 4 && offset & 0x7f == 4 && offset < m.mmio_size() {
                        if let Some(q) = doorbell_queue(&m, offset) {
                            if m.queue_live(q) {
                                let p = m.page0_state(q).unwrap();
                                let ring = m.vcmdq(q).unwrap().ring();
                                let pending = (p.gerror ^ p.gerrorn) & gerror::CMDQ_ERR != 0;
                                prop_assert!(pending || ring.is_empty(p.prod, p.cons), "q{} {:?}", q, p);
                            }
                        }
                    }
                }
            }
            check(&mut m)?;
            }
            let errs = m.stats.queue_errors;
            prop_assert!(errs >= errors_before);
            errors_before = errs;
        }
        prop_assert_eq!(m.stats.irq_pulses + m.stats.irq_masked, m.stats.queue_errors);
    }

    /// The SMMU page under garbage: no panic, CONS within its fields.
    #[test]
    fn random_smmu_mmio_is_harmless(ops in prop::collection::vec((0u64..0x20100, prop_oneof![Just(4u8), Just(8u8), Just(1u8)], value(), any::<bool>()), 1..200)) {
        let mut s = Smmu::new();
        let mem = VecMemory::new(RAM, RAM_SIZE);
        for (off, size, v, write) in ops {
            let off = off & !3;
            if write {
                s.write(off, size, v, &mem, &mut NullSink, &mut ());
            } else {
                s.read(off, size, &mut ());
            }
            prop_assert_eq!(s.cmdq_cons() & !cons_indx::WRITABLE, 0);
            prop_assert!(s.cmdq_ring().log2size <= 19);
        }
    }
}

/// Expand the burst ops into plain MMIO writes (through the global or a logical aperture).
fn lower(m: &Cmdqv, op: Op) -> Vec<Op> {
    let wr = |offset: u64, value: u64, size: u8| Op::Mmio {
        offset,
        size,
        value,
        write: true,
    };
    // Page0 of queue q: through the global aperture, or through the logical slot it is mapped to
    // (falling back to global when unmapped, so the write lands somewhere meaningful).
    let page0 = |q: u8, global: bool| -> u64 {
        match m.mapping(q as usize) {
            Some((v, l)) if !global => {
                regs::VINTF_PAGE0 + regs::VINTF_APERTURE_STRIDE * v as u64 + 0x80 * l as u64
            }
            _ => regs::GLOBAL_PAGE0 + 0x80 * q as u64,
        }
    };
    match op {
        Op::Setup {
            q,
            vintf,
            lidx,
            base,
            global,
        } => {
            let mut v = vec![
                wr(0x1000 + 0x100 * vintf as u64, 1, 4),
                wr(
                    0x200 + 4 * q as u64,
                    alloc_map::encode(vintf as u32, lidx as u32, true) as u64,
                    4,
                ),
            ];
            let p0 = match (global, m.vintf(vintf as usize).is_some()) {
                (false, true) => {
                    regs::VINTF_PAGE0
                        + regs::VINTF_APERTURE_STRIDE * vintf as u64
                        + 0x80 * lidx as u64
                }
                _ => regs::GLOBAL_PAGE0 + 0x80 * q as u64,
            };
            v.push(wr(p0 + 0x10000, base, 8));
            v.push(wr(p0 + 4, 0, 4));
            v.push(wr(p0, 0, 4));
            v.push(wr(p0 + 8, 1, 4));
            v
        }
        Op::Doorbell { q, prod, global } => vec![wr(page0(q, global) + 4, prod as u64, 4)],
        other => vec![other],
    }
}

/// The global VCMDQ a PROD_INDX offset reaches, if any.
fn doorbell_queue(m: &Cmdqv, offset: u64) -> Option<usize> {
    match m.geometry().decode(offset)? {
        regs::RegRef::Vcmdq {
            aperture,
            slot,
            reg: regs::VcmdqReg::Page0(Page0Reg::ProdIndx),
        } => match aperture {
            regs::Aperture::Global => Some(slot as usize),
            regs::Aperture::Vintf(v) => m.vintf(v as usize)?.lvcmdq(slot as usize).map(usize::from),
        },
        _ => None,
    }
}

/// Records what was executed.
#[derive(Default)]
struct Log(Vec<Invalidation>);
impl InvalidationSink for Log {
    fn invalidate(&mut self, _q: u16, inv: Invalidation) -> Result<(), Cerror> {
        self.0.push(inv);
        Ok(())
    }
}

#[derive(Clone, Debug)]
enum Entry {
    Good(u8),
    Bad(u8),
}

fn entry() -> impl Strategy<Value = Entry> {
    prop_oneof![6 => (0u8..4).prop_map(Entry::Good), 1 => (0u8..5).prop_map(Entry::Bad)]
}

fn encode(e: &Entry) -> ([u64; 2], Cerror) {
    let atc = |sid| Command::AtcInv {
        sid,
        ssid: 0,
        ssv: false,
        global: false,
        size: 0,
        addr: 0x1000,
    };
    match *e {
        Entry::Good(0) => (
            Command::tlbi_nh_va(0, 1, 0x2000, true).encode(),
            Cerror::None,
        ),
        Entry::Good(1) => (
            Command::TlbiNhAsid { vmid: 9, asid: 3 }.encode(),
            Cerror::None,
        ),
        Entry::Good(2) => (atc(0x42).encode(), Cerror::None),
        Entry::Good(_) => (Command::sync_none().encode(), Cerror::None),
        Entry::Bad(0) => (Command::decode(0x07, 0).encode(), Cerror::Ill),
        Entry::Bad(1) => (
            Command::CfgiCdAll {
                sid: 1,
                ssec: false,
            }
            .encode(),
            Cerror::Ill,
        ),
        Entry::Bad(2) => (atc(0x43).encode(), Cerror::Ill),
        Entry::Bad(3) => (
            Command::Sync(CmdSync {
                cs: SyncCs::Sev,
                msh: 0,
                msiattr: 0,
                msidata: 0,
                msiaddr: 0,
            })
            .encode(),
            Cerror::Ill,
        ),
        Entry::Bad(_) => (Command::TlbiNhAll { vmid: 0 }.encode(), Cerror::Ill),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Fill a guest-owned LVCMDQ's ring, pick CONS and PROD, ring the doorbell: the model must
    /// execute exactly the good commands before the first bad one (or the first entry outside
    /// RAM, CERROR_ABT) and stop there with the right CERROR; after fixing the entry and
    /// acknowledging, it must go on to the next fault or PROD.
    #[test]
    fn consumption_stops_at_the_first_faulting_command(
        log2 in 1u32..8,
        entries in prop::collection::vec(entry(), 128),
        cons0 in any::<u32>(),
        k in 0u32..=256,
        tail_outside in any::<bool>(),
    ) {
        let size = 1u32 << log2;
        // Either the ring is wholly in RAM, or its upper half lies past the end of RAM.
        // (BASE keeps ADDR[47:5] only, so the split point stays 32-byte aligned.)
        let base = if tail_outside { RAM + RAM_SIZE as u64 - (16 * size as u64 / 2).max(32) } else { RAM };
        let mut mem = VecMemory::new(RAM, RAM_SIZE);
        let mut expect = Vec::new();
        for i in 0..size {
            let (w, cerr) = encode(&entries[i as usize % entries.len()]);
            let addr = base + 16 * i as u64;
            let cerr = if mem.write_cmd(addr, w).is_ok() { cerr } else { Cerror::Abt };
            expect.push(cerr);
        }
        let mut m = Cmdqv::new(ModelConfig::guest());
        let mut sink = Log::default();
        let ptr_mask = (size << 1) - 1;
        let cons0 = cons0 & ptr_mask;
        let k = k % (size + 1);
        let prod = (cons0 + k) & ptr_mask;
        let w = |m: &mut Cmdqv, mem: &VecMemory, sink: &mut Log, off: u64, v: u64| m.write(off, 4, v, mem, sink, &mut ());
        w(&mut m, &mem, &mut sink, 0x1040, 0x42 << 1 | 1); // SID_MATCH(0): vSID 0x42, enabled
        w(&mut m, &mem, &mut sink, 0x1080, 0x900); // SID_REPLACE(0)
        w(&mut m, &mem, &mut sink, 0x1000, 1); // VINTF0 enable (HYP_OWN masked: guest-owned)
        w(&mut m, &mem, &mut sink, 0x200, 1); // VCMDQ0 → VINTF0 LVCMDQ0
        m.write(0x40000, 8, base | log2 as u64, &mem, &mut sink, &mut ());
        w(&mut m, &mem, &mut sink, 0x30000, cons0 as u64);
        w(&mut m, &mem, &mut sink, 0x30004, cons0 as u64); // empty when enabled
        w(&mut m, &mem, &mut sink, 0x30008, 1);
        w(&mut m, &mem, &mut sink, 0x30004, prod as u64);

        let mut cons = cons0;
        let mut executed = 0usize;
        // Walk like the hardware should, fixing each fault like Linux's skip_err.
        for _round in 0..=size {
            let mut fault = None;
            while cons != prod {
                let idx = cons & (size - 1);
                if expect[idx as usize] != Cerror::None {
                    fault = Some(expect[idx as usize]);
                    break;
                }
                executed += 1;
                cons = (cons + 1) & ptr_mask;
            }
            let p = m.page0_state(0).unwrap();
            prop_assert_eq!(p.cons & ptr_mask, cons);
            prop_assert_eq!(sink.0.len(), executed);
            let Some(cerr) = fault else {
                prop_assert_eq!(p.gerror ^ p.gerrorn, 0);
                break;
            };
            prop_assert_eq!(cons_indx::err(p.cons), cerr as u32);
            prop_assert_eq!((p.gerror ^ p.gerrorn) & 1, 1);
            prop_assert_eq!(m.lvcmdq_err_map(0), 1);
            // Fix: outside RAM cannot be fixed, so give up there (the queue stays stopped).
            let idx = cons & (size - 1);
            let addr = base + 16 * idx as u64;
            if mem.write_cmd(addr, Command::sync_none().encode()).is_err() {
                break;
            }
            expect[idx as usize] = Cerror::None;
            w(&mut m, &mem, &mut sink, 0x30014, p.gerror as u64);
            prop_assert_eq!(m.lvcmdq_err_map(0), if m.page0_state(0).unwrap().gerror == m.page0_state(0).unwrap().gerrorn { 0 } else { 1 });
        }
        prop_assert_eq!(m.stats.guest_error(GuestErrorKind::SpuriousAck), 0);
    }
}
