//! The SMMUv3 main register page: the trapped path's device beside the CMDQV model
//! ([`crate::model`]). Its command queue runs through the same queue engine as every VCMDQ
//! ([`engine::consume`], [`QueueKind::SmmuMain`]): one engine, two devices.
//!
//! Registers come from the one table in [`crate::regs::smmu`]: reset values, read-only refusal,
//! write masks, 64-bit access and names all derive from it, so this file only spells out the
//! registers with a side effect, one function each, as QEMU's `smmu_writel` does: CR0 (CR0ACK,
//! the queue enable), IRQ_CTRL (IRQ_CTRLACK), GERRORN (acknowledge, resume), CMDQ_PROD (the
//! doorbell) and GBPA (UPDATE). Behaviour is QEMU's `hw/arm/smmuv3.c` throughout.

use crate::engine::{
    self, DeviceKind, EnableTarget, EngineOptions, ExecCtx, GuestErrorKind, InvalidationSink,
    IrqLine, MAIN_CMDQ_ID, ModelEvent, Observer, Outcome, QueueKind, QueueRegs,
};
use crate::mem::GuestMemory;
use crate::queue::Ring;
use crate::regs::smmu::{self as sr, Access, Reg, RegAt, TABLE, WORDS, Width};

/// SMMU_GBPA after reset (QEMU `SMMU_GBPA_RESET_VAL`).
pub const GBPA_RESET: u32 = sr::GBPA_RESET;

/// Size of the SMMU MMIO region the model answers (page0 + its page1 alias).
pub const SMMU_MMIO_SIZE: u64 = sr::MMIO_SIZE;

/// Counters of the SMMU main-page model.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SmmuStats {
    pub commands: u64,
    pub queue_errors: u64,
    pub gerror_irqs: u64,
    pub cmd_sync_irqs: u64,
    pub guest_errors: [u64; GuestErrorKind::COUNT],
}

/// The SMMUv3 main register page: every register of [`crate::regs::smmu::TABLE`] reads back what
/// was stored; CR0/CR0ACK, IRQ_CTRL/IRQ_CTRLACK, GERROR/GERRORN, CMDQ_BASE/PROD/CONS and GBPA
/// behave as in QEMU, and the command queue is consumed by [`engine::consume`].
#[derive(Clone, Debug)]
pub struct Smmu {
    /// The register file, one 32-bit word per offset / 4 (a 64-bit register takes two).
    words: [u32; WORDS],
    pub stats: SmmuStats,
    opts: EngineOptions,
}

impl Default for Smmu {
    fn default() -> Self {
        Self::new()
    }
}

impl Smmu {
    /// An SMMU with QEMU's ID registers and reset values (`smmuv3_init_regs`, stage "nested"):
    /// stage 1+2, AArch64 tables, 16-bit ASID/VMID, no stall, terminate = abort, 2-level stream
    /// table, HAD/XNX/RIL/BBML=2, 16-bit SIDs, CMDQS = EVENTQS = 19, 44-bit OAS, 4K/16K/64K
    /// granules, AIDR = SMMUv3.1; CMDQ_BASE/EVENTQ_BASE LOG2SIZE = 19, GBPA = 0x1000.
    pub fn new() -> Self {
        let mut s = Self {
            words: [0; WORDS],
            stats: SmmuStats::default(),
            opts: EngineOptions::default(),
        };
        for d in TABLE {
            s.set(d.reg, d.reset);
        }
        s
    }

    /// A register's whole value (both words of a 64-bit one).
    pub fn reg(&self, r: Reg) -> u64 {
        let w = r.word();
        match r.def().width {
            Width::W32 => self.words[w] as u64,
            Width::W64 => self.words[w] as u64 | (self.words[w + 1] as u64) << 32,
        }
    }

    /// Stores a register's value as is (no write mask, no side effect).
    fn set(&mut self, r: Reg, v: u64) {
        let w = r.word();
        self.words[w] = v as u32;
        if r.def().width == Width::W64 {
            self.words[w + 1] = (v >> 32) as u32;
        }
    }

    pub fn cr0(&self) -> u32 {
        self.words[Reg::Cr0.word()]
    }
    pub fn cmdq_base(&self) -> u64 {
        self.reg(Reg::CmdqBase)
    }
    pub fn cmdq_prod(&self) -> u32 {
        self.words[Reg::CmdqProd.word()]
    }
    pub fn cmdq_cons(&self) -> u32 {
        self.words[Reg::CmdqCons.word()]
    }

    /// IDR1.CMDQS: the largest LOG2SIZE the command queue honours.
    pub fn cmdqs(&self) -> u8 {
        (self.words[Reg::Idr1.word()] >> sr::IDR1_CMDQS_SHIFT & sr::IDR1_CMDQS_MASK) as u8
    }
    /// Lower IDR1.CMDQS (a VMM caps it so rings fit its RAM pages, §12.1).
    pub fn set_cmdqs(&mut self, log2: u8) {
        let v = (log2.min(19) as u32) << sr::IDR1_CMDQS_SHIFT;
        let idr1 = &mut self.words[Reg::Idr1.word()];
        *idr1 = *idr1 & !(sr::IDR1_CMDQS_MASK << sr::IDR1_CMDQS_SHIFT) | v;
    }
    /// The command ring as CMDQ_BASE describes it, LOG2SIZE capped by IDR1.CMDQS.
    pub fn cmdq_ring(&self) -> Ring {
        let base = self.cmdq_base();
        let log2 = (base & sr::Q_BASE_LOG2SIZE_MASK) as u32;
        Ring::new(base & sr::Q_BASE_ADDR_MASK, log2.min(self.cmdqs() as u32))
    }

    fn guest_error<O: Observer + ?Sized>(&mut self, obs: &mut O, kind: GuestErrorKind, at: u64) {
        let counts = &mut self.stats.guest_errors;
        engine::count_guest_error(counts, DeviceKind::Smmu, kind, at, obs);
    }

    /// The register at `offset`, or a counted unassigned access.
    fn locate<O: Observer + ?Sized>(&mut self, offset: u64, obs: &mut O) -> Option<RegAt> {
        let at = if offset < SMMU_MMIO_SIZE {
            sr::decode(offset)
        } else {
            None
        };
        if at.is_none() {
            self.guest_error(obs, GuestErrorKind::UnassignedOffset, offset);
        }
        at
    }

    /// An MMIO read of `size` bytes at `offset` (page1 aliases page0, as in QEMU).
    pub fn read<O: Observer + ?Sized>(&mut self, offset: u64, size: u8, obs: &mut O) -> u64 {
        let v = self.read_inner(offset, size, obs);
        obs.event(ModelEvent::mmio(DeviceKind::Smmu, offset, size, v, false));
        v
    }

    fn read_inner<O: Observer + ?Sized>(&mut self, offset: u64, size: u8, obs: &mut O) -> u64 {
        let Some(at) = self.locate(offset, obs) else {
            return 0;
        };
        match size {
            4 => self.words[at.word()] as u64,
            8 if at.takes_64bit_access() => self.reg(at.reg),
            8 => {
                self.guest_error(obs, GuestErrorKind::Ignored64BitAccess, offset);
                0
            }
            _ => {
                self.guest_error(obs, GuestErrorKind::BadAccessSize, offset);
                0
            }
        }
    }

    /// An MMIO write; CR0, GERRORN and CMDQ_PROD 32-bit writes run the command queue.
    pub fn write<M, S, O>(
        &mut self,
        offset: u64,
        size: u8,
        value: u64,
        mem: &M,
        sink: &mut S,
        obs: &mut O,
    ) where
        M: GuestMemory + ?Sized,
        S: InvalidationSink + ?Sized,
        O: Observer + ?Sized,
    {
        obs.event(ModelEvent::mmio(
            DeviceKind::Smmu,
            offset,
            size,
            value,
            true,
        ));
        let Some(at) = self.locate(offset, obs) else {
            return;
        };
        match size {
            4 => self.write32(at, value as u32, mem, sink, obs),
            // QEMU's 64-bit path only stores 64-bit registers and never triggers consumption.
            8 if at.takes_64bit_access() => self.set(at.reg, value & at.reg.def().write_mask),
            8 => self.guest_error(obs, GuestErrorKind::Ignored64BitAccess, offset),
            _ => self.guest_error(obs, GuestErrorKind::BadAccessSize, offset),
        }
    }

    /// Stores one 32-bit word under the register's write mask (the other word of a 64-bit
    /// register kept).
    fn store_word(&mut self, at: RegAt, v: u32) {
        let shift = if at.high { 32 } else { 0 };
        let old = self.reg(at.reg) & !(0xffff_ffffu64 << shift);
        self.set(
            at.reg,
            (old | (v as u64) << shift) & at.reg.def().write_mask,
        );
    }

    fn write32<M, S, O>(&mut self, at: RegAt, v: u32, mem: &M, sink: &mut S, obs: &mut O)
    where
        M: GuestMemory + ?Sized,
        S: InvalidationSink + ?Sized,
        O: Observer + ?Sized,
    {
        if at.reg.def().access == Access::ReadOnly {
            return self.guest_error(obs, GuestErrorKind::ReadOnlyWrite, at.offset());
        }
        match at.reg {
            Reg::Cr0 => self.write_cr0(v, mem, sink, obs),
            Reg::IrqCtrl => {
                self.store_word(at, v);
                self.set(Reg::IrqCtrlAck, v as u64);
            }
            Reg::Gerrorn => self.write_gerrorn(v, mem, sink, obs),
            Reg::CmdqProd => {
                self.store_word(at, v);
                obs.event(ModelEvent::Doorbell {
                    queue: MAIN_CMDQ_ID,
                    prod: self.cmdq_prod(),
                    cons: self.cmdq_cons(),
                });
                self.consume(mem, sink, obs);
            }
            // GBPA.UPDATE completes at once, as in QEMU: Linux's arm_smmu_update_gbpa polls
            // until it reads back clear (the write mask drops it). A write without UPDATE is
            // ignored (QEMU; the only behaviour SMMUv3.2 permits).
            Reg::Gbpa if v & sr::GBPA_UPDATE == 0 => {}
            _ => self.store_word(at, v),
        }
    }

    /// CR0 keeps every bit written; CR0ACK acknowledges it at once without the reserved bits
    /// (QEMU `smmu_writel`), and the queue runs if CMDQEN is set.
    fn write_cr0<M, S, O>(&mut self, v: u32, mem: &M, sink: &mut S, obs: &mut O)
    where
        M: GuestMemory + ?Sized,
        S: InvalidationSink + ?Sized,
        O: Observer + ?Sized,
    {
        let was = self.cr0() & sr::CR0_CMDQEN;
        self.set(Reg::Cr0, v as u64);
        self.set(Reg::Cr0Ack, (v & !sr::CR0_RESERVED) as u64);
        if was != v & sr::CR0_CMDQEN {
            obs.event(ModelEvent::Enable {
                target: EnableTarget::SmmuCmdq,
                on: was == 0,
            });
        }
        self.consume(mem, sink, obs);
    }

    /// GERRORN := GERROR acknowledges an error and resumes the queue; toggling a bit that is not
    /// pending is a counted guest error.
    fn write_gerrorn<M, S, O>(&mut self, v: u32, mem: &M, sink: &mut S, obs: &mut O)
    where
        M: GuestMemory + ?Sized,
        S: InvalidationSink + ?Sized,
        O: Observer + ?Sized,
    {
        let (gerror, gerrorn) = (self.reg(Reg::Gerror) as u32, self.reg(Reg::Gerrorn) as u32);
        if (gerrorn ^ v) & !(gerror ^ gerrorn) != 0 {
            self.guest_error(obs, GuestErrorKind::SpuriousAck, sr::GERRORN);
        }
        self.set(Reg::Gerrorn, v as u64);
        obs.event(ModelEvent::ErrorAck {
            queue: MAIN_CMDQ_ID,
            gerrorn: v,
        });
        self.consume(mem, sink, obs);
    }

    /// Run the command queue (QEMU: returns at once unless CR0.CMDQEN).
    // Out of line: the consumption loop it inlines compiles to faster code on its own than
    // inside the register dispatch (model bench, smmu-main-cmdq).
    #[inline(never)]
    pub fn consume<M, S, O>(&mut self, mem: &M, sink: &mut S, obs: &mut O) -> Outcome
    where
        M: GuestMemory + ?Sized,
        S: InvalidationSink + ?Sized,
        O: Observer + ?Sized,
    {
        if self.cr0() & sr::CR0_CMDQEN == 0 {
            return Outcome::default();
        }
        let ring = self.cmdq_ring();
        let mut q = QueueRegs {
            prod: self.cmdq_prod(),
            cons: self.cmdq_cons(),
            gerror: self.reg(Reg::Gerror) as u32,
            gerrorn: self.reg(Reg::Gerrorn) as u32,
        };
        let opts = self.opts;
        let ctx = ExecCtx {
            queue: MAIN_CMDQ_ID,
            kind: QueueKind::SmmuMain,
            opts: &opts,
        };
        let out = engine::consume(&ctx, ring, &mut q, mem, sink, obs);
        self.set(Reg::CmdqCons, q.cons as u64);
        self.set(Reg::Gerror, q.gerror as u64);
        self.signal(&out, obs);
        out
    }

    /// Counts a pass and pulses its interrupts: one CMD_SYNC pulse per CMD_SYNC with CS=IRQ, as
    /// QEMU pulses the line once per command (a qtest client with the IRQ intercepted sees every
    /// pulse; bounded by the ring size), and GERROR when an error was raised and GERROR_IRQEN is
    /// set.
    fn signal<O: Observer + ?Sized>(&mut self, out: &Outcome, obs: &mut O) {
        self.stats.commands += out.consumed as u64;
        self.stats.cmd_sync_irqs += out.sync_irqs as u64;
        for _ in 0..out.sync_irqs {
            obs.event(ModelEvent::Irq {
                line: IrqLine::SmmuCmdSync,
            });
        }
        if out.raised {
            self.stats.queue_errors += 1;
            if self.reg(Reg::IrqCtrl) as u32 & sr::IRQ_CTRL_GERROR_IRQEN != 0 {
                self.stats.gerror_irqs += 1;
                obs.event(ModelEvent::Irq {
                    line: IrqLine::SmmuGerror,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::Command;
    use crate::engine::{CountingSink, NullSink};
    use crate::mem::VecMemory;

    const RAM: u64 = 0x4000_0000;

    fn smmu_setup(mem: &mut VecMemory) -> Smmu {
        let mut s = Smmu::new();
        let mut ev = Vec::new();
        s.write(sr::CMDQ_BASE, 8, RAM | 4, mem, &mut NullSink, &mut ev);
        s.write(sr::IRQ_CTRL, 4, 1, mem, &mut NullSink, &mut ev);
        s.write(
            sr::CR0,
            4,
            (sr::CR0_CMDQEN | sr::CR0_SMMUEN) as u64,
            mem,
            &mut NullSink,
            &mut ev,
        );
        assert_eq!(
            s.read(sr::CR0ACK, 4, &mut ev),
            (sr::CR0_CMDQEN | sr::CR0_SMMUEN) as u64
        );
        assert!(ev.contains(&ModelEvent::Enable {
            target: EnableTarget::SmmuCmdq,
            on: true
        }));
        s
    }

    #[test]
    fn smmu_bring_up_handshakes_complete_as_linux_polls_for_them() {
        let mem = VecMemory::new(RAM, 0x1000);
        let mut s = Smmu::new();
        // arm_smmu_update_gbpa: write with UPDATE set, poll until UPDATE reads back clear.
        s.write(
            sr::GBPA,
            4,
            (1 << 31) | (1 << 20),
            &mem,
            &mut NullSink,
            &mut (),
        );
        assert_eq!(s.read(sr::GBPA, 4, &mut ()), 1 << 20);
        // arm_smmu_write_reg_sync: IRQ_CTRL → IRQ_CTRLACK, CR0 → CR0ACK.
        s.write(sr::IRQ_CTRL, 4, 0x5, &mem, &mut NullSink, &mut ());
        assert_eq!(s.read(sr::IRQ_CTRLACK, 4, &mut ()), 0x5);
        s.write(sr::CR0, 4, 0xd, &mem, &mut NullSink, &mut ());
        assert_eq!(s.read(sr::CR0ACK, 4, &mut ()), 0xd);
    }

    #[test]
    fn smmu_cmdq_follows_qemu_semantics() {
        let mut mem = VecMemory::new(RAM, 0x1000);
        let mut s = smmu_setup(&mut mem);
        mem.write_cmd(
            RAM,
            Command::CfgiSte {
                sid: 3,
                ssec: false,
                leaf: true,
            }
            .encode(),
        )
        .unwrap();
        mem.write_cmd(RAM + 16, Command::decode(0x46 | 1 << 12, 0).encode())
            .unwrap();
        mem.write_cmd(RAM + 32, Command::decode(0x07, 0).encode())
            .unwrap();
        let mut sink = CountingSink::default();
        let mut ev = Vec::new();
        // a 64-bit PROD write is ignored (QEMU), a 32-bit one rings the doorbell
        s.write(sr::CMDQ_PROD, 8, 3, &mem, &mut sink, &mut ev);
        assert_eq!(s.cmdq_prod(), 0);
        s.write(sr::CMDQ_PROD + 0x10000, 4, 3, &mem, &mut sink, &mut ev); // page1 alias
        assert_eq!(s.read(sr::CMDQ_CONS, 4, &mut ev), 2 | 1 << 24);
        assert_eq!(s.read(sr::GERROR, 4, &mut ev), 1);
        assert_eq!(s.stats.gerror_irqs, 1);
        assert_eq!(s.stats.cmd_sync_irqs, 1);
        assert_eq!(sink.cfg, 1);
        assert!(ev.contains(&ModelEvent::Irq {
            line: IrqLine::SmmuCmdSync
        }));
        mem.write_cmd(RAM + 32, Command::sync_none().encode())
            .unwrap();
        s.write(sr::GERRORN, 4, 1, &mem, &mut sink, &mut ev);
        assert_eq!(s.read(sr::CMDQ_CONS, 4, &mut ev) & 0xfffff, 3);
        assert!(ev.contains(&ModelEvent::ErrorAck {
            queue: MAIN_CMDQ_ID,
            gerrorn: 1
        }));
        // acking a bit that is not pending is a counted guest error
        s.write(sr::GERRORN, 4, 3, &mem, &mut sink, &mut ev);
        assert_eq!(
            s.stats.guest_errors[GuestErrorKind::SpuriousAck as usize],
            1
        );
    }

    #[test]
    fn smmu_bad_accesses_are_counted_not_fatal() {
        let mem = VecMemory::new(RAM, 0x100);
        let mut s = Smmu::new();
        assert_eq!(s.read(0x3c, 4, &mut ()), 0);
        assert_eq!(s.read(sr::CR0, 2, &mut ()), 0);
        assert_eq!(s.read(sr::CR0, 8, &mut ()), 0);
        s.write(sr::IDR1, 4, 0, &mem, &mut NullSink, &mut ());
        s.write(0x30000, 4, 0, &mem, &mut NullSink, &mut ());
        assert_eq!(s.cmdqs(), 19);
        let g = &s.stats.guest_errors;
        assert_eq!(g[GuestErrorKind::UnassignedOffset as usize], 2);
        assert_eq!(g[GuestErrorKind::BadAccessSize as usize], 1);
        assert_eq!(g[GuestErrorKind::Ignored64BitAccess as usize], 1);
        assert_eq!(g[GuestErrorKind::ReadOnlyWrite as usize], 1);
        s.set_cmdqs(12);
        s.write(sr::CMDQ_BASE, 4, RAM | 19, &mem, &mut NullSink, &mut ());
        assert_eq!(s.cmdq_ring().log2size, 12);
    }

    #[test]
    fn smmu_reset_values_match_qemu_init_regs() {
        // hw/arm/smmuv3.c smmuv3_init_regs / smmu_writel (GBPA).
        let mem = VecMemory::new(RAM, 0x100);
        let mut s = Smmu::new();
        let idr0 = s.read(sr::IDR0, 4, &mut ()) as u32;
        assert_eq!(idr0 >> 24 & 3, 1, "STALL_MODEL = 1 (no stall)");
        assert_eq!(idr0 >> 26 & 1, 1, "TERM_MODEL = 1 (abort)");
        // IDR3: HAD, XNX (stage 2 advertised), RIL, BBML = 2
        assert_eq!(
            s.read(sr::IDR3, 4, &mut ()),
            1 << 2 | 1 << 4 | 1 << 10 | 2 << 11
        );
        // IDR5: OAS 44 bits, 4K/16K/64K granules
        assert_eq!(s.read(sr::IDR5, 4, &mut ()), 4 | 1 << 4 | 1 << 5 | 1 << 6);
        assert_eq!(s.read(sr::AIDR, 4, &mut ()), 1);
        // queue bases come out of reset with LOG2SIZE = CMDQS / EVENTQS = 19
        assert_eq!(s.read(sr::CMDQ_BASE, 8, &mut ()), 19);
        assert_eq!(s.read(sr::EVENTQ_BASE, 8, &mut ()), 19);
        // GBPA resets to "use incoming" (0x1000); a write without UPDATE is ignored
        assert_eq!(s.read(sr::GBPA, 4, &mut ()), 0x1000);
        s.write(sr::GBPA, 4, 1 << 20, &mem, &mut NullSink, &mut ());
        assert_eq!(s.read(sr::GBPA, 4, &mut ()), 0x1000);
        s.write(sr::GBPA, 4, 1 << 31 | 1 << 20, &mem, &mut NullSink, &mut ());
        assert_eq!(s.read(sr::GBPA, 4, &mut ()), 1 << 20);
    }

    #[test]
    fn smmu_cr0_reads_back_raw_and_cr0ack_drops_reserved_bits() {
        // smmu_writel A_CR0: s->cr[0] = data; s->cr0ack = data & ~SMMU_CR0_RESERVED (0xFFFFFC20).
        let mem = VecMemory::new(RAM, 0x100);
        let mut s = Smmu::new();
        s.write(sr::CR0, 4, 0xffff_ffe0 | 0x7, &mem, &mut NullSink, &mut ());
        assert_eq!(s.read(sr::CR0, 4, &mut ()), 0xffff_ffe7);
        assert_eq!(s.read(sr::CR0ACK, 4, &mut ()), 0x3c7);
        s.write(sr::IRQ_CTRL, 4, 0xf5, &mem, &mut NullSink, &mut ());
        assert_eq!(s.read(sr::IRQ_CTRLACK, 4, &mut ()), 0xf5);
    }
}
