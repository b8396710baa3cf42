//! The sim guest's MMIO exits as the kernel saw them: `kvm:kvm_mmio` records (filtered to the
//! sim VMM and to the devices' window in the kernel) counted per path, so the comparison's exit
//! counts come from the tracepoint rather than from the VMM's own bookkeeping.

use cmdqv_core::{
    analysis::{Comparison, PathFigures},
    event::Payload,
    probe_abi,
    regs::{self, smmu},
};

use super::layout::{CMDQV_GPA, CMDQV_LEN, SMMU_GPA, SMMU_LEN, VINTF0_PAGE0_GPA};

/// The guest-physical window the kvm_mmio probe reports (both devices).
pub const WINDOW: (u64, u64) = (SMMU_GPA, CMDQV_GPA + CMDQV_LEN);

/// `kvm_mmio` types: a read leaving KVM for the VMM, and a write (each is one exit); a read's
/// completion (type 1) is the same exit seen again.
const READ_UNSATISFIED: u32 = 0;
const WRITE: u32 = 2;

/// MMIO exits per path, and how many were doorbells.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct ExitCounts {
    pub trapped: u64,
    pub trapped_doorbells: u64,
    pub direct: u64,
    pub direct_doorbells: u64,
}

impl ExitCounts {
    /// Counts one raw ABI record if it is a `kvm_mmio` exit.
    pub fn count_raw(&mut self, raw: &[u8]) {
        if let Ok(ev) = probe_abi::decode(raw) {
            if let Payload::KvmMmio { kind, gpa, .. } = ev.payload {
                self.count(kind, gpa);
            }
        }
    }

    /// Counts one `kvm_mmio` event: the SMMU page is the trapped path, VINTF0's logical page0
    /// the direct one (no exit there while the host page is mapped).
    pub fn count(&mut self, kind: u32, gpa: u64) {
        if kind != READ_UNSATISFIED && kind != WRITE {
            return;
        }
        let write = kind == WRITE;
        if (SMMU_GPA..SMMU_GPA + SMMU_LEN).contains(&gpa) {
            self.trapped += 1;
            self.trapped_doorbells += (write && gpa == SMMU_GPA + smmu::CMDQ_PROD) as u64;
        } else if (VINTF0_PAGE0_GPA..VINTF0_PAGE0_GPA + 0x1_0000).contains(&gpa) {
            self.direct += 1;
            let reg = (gpa - VINTF0_PAGE0_GPA) % regs::VCMDQ_STRIDE;
            self.direct_doorbells += (write && reg == regs::off::page0::PROD_INDX) as u64;
        }
    }

    /// Puts the tracepoint's counts into the comparison (its `exits` become MMIO exits only:
    /// the pacing exits stay in `pacing_exits`).
    pub fn apply(&self, c: &mut Comparison) {
        let set = |p: &mut PathFigures, exits: u64, doorbells: u64| {
            p.exits = exits;
            p.doorbell_exits = doorbells;
            p.exits_per_batch = if p.batches == 0 {
                0.0
            } else {
                exits as f64 / p.batches as f64
            };
            p.exits_source = "ebpf:kvm:kvm_mmio (MMIO exits; pacing exits in pacing_exits)".into();
        };
        set(&mut c.trapped, self.trapped, self.trapped_doorbells);
        set(&mut c.direct, self.direct, self.direct_doorbells);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exits_are_counted_per_path_and_doorbells_apart() {
        let mut n = ExitCounts::default();
        n.count(WRITE, SMMU_GPA + smmu::CMDQ_PROD);
        n.count(READ_UNSATISFIED, SMMU_GPA + smmu::CMDQ_CONS);
        n.count(1, SMMU_GPA + smmu::CMDQ_CONS); // the same read, completed
        n.count(
            WRITE,
            VINTF0_PAGE0_GPA + regs::VCMDQ_STRIDE + regs::off::page0::PROD_INDX,
        );
        n.count(
            READ_UNSATISFIED,
            VINTF0_PAGE0_GPA + regs::off::page0::CONS_INDX,
        );
        n.count(WRITE, 0x2000_0000); // outside both paths
        assert_eq!(
            n,
            ExitCounts {
                trapped: 2,
                trapped_doorbells: 1,
                direct: 2,
                direct_doorbells: 1,
            }
        );
        let mut c = Comparison::default();
        c.trapped.batches = 1;
        n.apply(&mut c);
        assert_eq!((c.trapped.exits, c.trapped.exits_per_batch), (2, 2.0));
        assert_eq!((c.direct.exits, c.direct.exits_per_batch), (2, 0.0));
        assert!(c.direct.exits_source.starts_with("ebpf:"));
    }
}
