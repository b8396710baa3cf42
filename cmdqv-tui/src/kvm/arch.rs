//! What differs per architecture in running the sim's guest under KVM: putting a new vCPU at
//! the guest program with the parameter block's address in its first register, and the
//! frequency of the counter the program timestamps batches with. Which exit paces or stops the
//! guest is in `vcpu` (a port write and `hlt` on x86, stores to the pacing page on aarch64).

use kvm_ioctls::{VcpuFd, VmFd};

#[cfg(target_arch = "x86_64")]
pub use x86::*;

#[cfg(target_arch = "aarch64")]
pub use aarch64::*;

#[cfg(target_arch = "x86_64")]
mod x86 {
    use kvm_bindings::kvm_segment;

    use super::*;

    /// Sets flat 4 GiB code and data segments with CR0.PE, and points the vCPU at the program.
    pub fn setup(_vm: &VmFd, vcpu: &VcpuFd, rip: u64, block: u64) -> Result<(), String> {
        let mut s = vcpu
            .get_sregs()
            .map_err(|e| format!("KVM_GET_SREGS: {e}"))?;
        let seg = |selector: u16, type_: u8| kvm_segment {
            base: 0,
            limit: 0xffff_ffff,
            selector,
            type_,
            present: 1,
            dpl: 0,
            db: 1,
            s: 1,
            l: 0,
            g: 1,
            ..Default::default()
        };
        s.cs = seg(0x8, 0xb);
        let data = seg(0x10, 0x3);
        (s.ds, s.es, s.fs, s.gs, s.ss) = (data, data, data, data, data);
        s.cr0 |= 1;
        vcpu.set_sregs(&s)
            .map_err(|e| format!("KVM_SET_SREGS: {e}"))?;
        let mut r = vcpu.get_regs().map_err(|e| format!("KVM_GET_REGS: {e}"))?;
        r.rip = rip;
        r.rsi = block;
        r.rflags = 2;
        vcpu.set_regs(&r).map_err(|e| format!("KVM_SET_REGS: {e}"))
    }

    /// The TSC's frequency (the x86 program reads `rdtsc`).
    pub fn counter_khz(vcpu: &VcpuFd) -> Result<u64, String> {
        let khz = vcpu
            .get_tsc_khz()
            .map_err(|e| format!("KVM_GET_TSC_KHZ: {e}"))?;
        Ok(khz as u64)
    }
}

#[cfg(target_arch = "aarch64")]
mod aarch64 {
    use kvm_bindings::{KVM_REG_ARM_CORE, KVM_REG_ARM64, KVM_REG_SIZE_U64, kvm_vcpu_init};

    use super::*;

    /// `KVM_REG_ARM_CORE` id of the u64 at `offset` bytes into `struct kvm_regs` (whose
    /// `user_pt_regs` starts with x0..x30, sp, pc).
    const fn core_reg(offset: u64) -> u64 {
        KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM_CORE as u64 | (offset / 4)
    }
    const X0: u64 = core_reg(0);
    const PC: u64 = core_reg(32 * 8);

    /// Initialises the vCPU as the host's preferred target (EL1h, interrupts masked, MMU off),
    /// then sets PC to the program and x0 to the parameter block.
    pub fn setup(vm: &VmFd, vcpu: &VcpuFd, pc: u64, block: u64) -> Result<(), String> {
        let mut kvi = kvm_vcpu_init::default();
        vm.get_preferred_target(&mut kvi)
            .map_err(|e| format!("KVM_ARM_PREFERRED_TARGET: {e}"))?;
        vcpu.vcpu_init(&kvi)
            .map_err(|e| format!("KVM_ARM_VCPU_INIT: {e}"))?;
        for (id, v, name) in [(PC, pc, "PC"), (X0, block, "x0")] {
            vcpu.set_one_reg(id, &v.to_le_bytes())
                .map_err(|e| format!("KVM_SET_ONE_REG {name}: {e}"))?;
        }
        Ok(())
    }

    /// The generic timer's frequency (the aarch64 program reads CNTVCT_EL0), from CNTFRQ_EL0,
    /// which the host and its guests share.
    pub fn counter_khz(_: &VcpuFd) -> Result<u64, String> {
        let hz: u64;
        // SAFETY: reading CNTFRQ_EL0 has no side effect and is allowed at EL0 on Linux.
        unsafe { std::arch::asm!("mrs {}, cntfrq_el0", out(reg) hz) };
        match hz / 1000 {
            0 => Err("CNTFRQ_EL0 reads 0: no counter frequency".into()),
            khz => Ok(khz),
        }
    }
}
