//! The names of KVM's exit reasons as `kvm:kvm_exit` reports them: x86 (VMX basic exit reasons,
//! SVM exit codes; the record's `isa` says which) and arm64 (the ESR exception class of a trap,
//! or the kind of exception when the exit was not a trap); and of the KVM_EXIT_* codes
//! `kvm:kvm_userspace_exit` reports (`isa` [`USERSPACE_EXIT`]). Only the reasons a VMM's guest
//! commonly causes are named; the rest print as numbers.

use std::borrow::Cow;

/// The record's `isa`: the kernel's `KVM_ISA_VMX` / `KVM_ISA_SVM`, and cmdqv's own arm64 value.
pub use cmdqv_ebpf_common::{
    KVM_ISA_ARM64 as ISA_ARM64, KVM_ISA_SVM as ISA_SVM, KVM_ISA_VMX as ISA_VMX,
    KVM_USERSPACE_EXIT as USERSPACE_EXIT,
};

/// arm64's `ret` (ARM_EXCEPTION_*) for an exit that is a trap (its `esr_ec` says which).
pub const ARM64_EXCEPTION_TRAP: u64 = 2;

const VMX: &[(u32, &str)] = &[
    (0, "EXCEPTION_NMI"),
    (1, "EXTERNAL_INTERRUPT"),
    (2, "TRIPLE_FAULT"),
    (7, "INTERRUPT_WINDOW"),
    (10, "CPUID"),
    (12, "HLT"),
    (16, "RDTSC"),
    (18, "VMCALL"),
    (28, "CR_ACCESS"),
    (30, "IO_INSTRUCTION"),
    (31, "MSR_READ"),
    (32, "MSR_WRITE"),
    (40, "PAUSE_INSTRUCTION"),
    (48, "EPT_VIOLATION"),
    (49, "EPT_MISCONFIG"),
    (52, "PREEMPTION_TIMER"),
];

const SVM: &[(u32, &str)] = &[
    (0x060, "interrupt"),
    (0x061, "nmi"),
    (0x072, "cpuid"),
    (0x078, "hlt"),
    (0x07b, "io"),
    (0x07c, "msr"),
    (0x07f, "shutdown"),
    (0x081, "hypercall"),
    (0x400, "npf"),
];

/// ESR_ELx exception classes.
const ARM64_EC: &[(u32, &str)] = &[
    (0x00, "UNKNOWN"),
    (0x01, "WFx"),
    (0x07, "FP_ASIMD"),
    (0x16, "HVC64"),
    (0x17, "SMC64"),
    (0x18, "SYS64"),
    (0x20, "IABT_LOW"),
    (0x24, "DABT_LOW"),
    (0x2f, "SERROR"),
];

/// KVM_RUN's return codes to the VMM (`struct kvm_run::exit_reason`).
const USERSPACE: &[(u32, &str)] = &[
    (2, "KVM_EXIT_IO"),
    (5, "KVM_EXIT_HLT"),
    (6, "KVM_EXIT_MMIO"),
    (8, "KVM_EXIT_SHUTDOWN"),
    (9, "KVM_EXIT_FAIL_ENTRY"),
    (10, "KVM_EXIT_INTR"),
    (17, "KVM_EXIT_INTERNAL_ERROR"),
];

/// arm64 exits that are not traps, by `ret`.
const ARM64_RET: &[(u64, &str)] = &[(0, "IRQ"), (1, "SERROR"), (3, "ILLEGAL")];

fn lookup<K: PartialEq + Copy>(table: &[(K, &'static str)], k: K) -> Option<&'static str> {
    table.iter().find(|(v, _)| *v == k).map(|(_, n)| *n)
}

/// The exit's name: `EPT_MISCONFIG`, `npf`, `DABT_LOW`, `IRQ`; or `reason 0x..` when unnamed.
pub fn reason_name(isa: u32, reason: u32, info: u64) -> Cow<'static, str> {
    let named = match isa {
        // VMX keeps flags (e.g. a failed VM entry) above the basic reason's 16 bits.
        ISA_VMX => lookup(VMX, reason & 0xffff),
        ISA_SVM => lookup(SVM, reason),
        // A signal (the watchdog's kick) ends KVM_RUN with EINTR whatever the stale reason.
        USERSPACE_EXIT if info as i64 == -4 => Some("KVM_RUN interrupted (EINTR)"),
        USERSPACE_EXIT if info != 0 => {
            return Cow::Owned(format!("KVM_RUN error {}", info as i64));
        }
        USERSPACE_EXIT => lookup(USERSPACE, reason),
        ISA_ARM64 if info == ARM64_EXCEPTION_TRAP => lookup(ARM64_EC, reason),
        ISA_ARM64 => {
            return lookup(ARM64_RET, info)
                .map(Cow::Borrowed)
                .unwrap_or_else(|| Cow::Owned(format!("exception {info:#x}")));
        }
        _ => None,
    };
    named.map_or_else(|| Cow::Owned(format!("reason {reason:#x}")), Cow::Borrowed)
}

/// Whether the exit is a guest access to memory no memslot backs (an MMIO exit: the VMM or
/// an in-kernel device handles it).
pub fn is_mmio(isa: u32, reason: u32, info: u64) -> bool {
    match isa {
        ISA_VMX => matches!(reason & 0xffff, 48 | 49),
        ISA_SVM => reason == 0x400,
        USERSPACE_EXIT => info == 0 && reason == 6,
        ISA_ARM64 => info == ARM64_EXCEPTION_TRAP && reason == 0x24,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_isa_names_its_own_reasons() {
        assert_eq!(reason_name(ISA_VMX, 49, 0), "EPT_MISCONFIG");
        assert_eq!(reason_name(ISA_VMX, 0x8000_0021, 0), "reason 0x80000021");
        assert_eq!(reason_name(ISA_SVM, 0x400, 0), "npf");
        assert_eq!(reason_name(ISA_SVM, 49, 0), "reason 0x31");
        assert_eq!(reason_name(ISA_ARM64, 0x24, 2), "DABT_LOW");
        // Not a trap: the exception class is stale, the kind of exception names the exit.
        assert_eq!(reason_name(ISA_ARM64, 0x24, 0), "IRQ");
        assert_eq!(reason_name(ISA_ARM64, 0, 0x99), "exception 0x99");
        assert_eq!(reason_name(7, 1, 0), "reason 0x1");
        assert_eq!(reason_name(USERSPACE_EXIT, 6, 0), "KVM_EXIT_MMIO");
        assert_eq!(
            reason_name(USERSPACE_EXIT, 6, -4i64 as u64),
            "KVM_RUN interrupted (EINTR)"
        );
        assert_eq!(
            reason_name(USERSPACE_EXIT, 0, -14i64 as u64),
            "KVM_RUN error -14"
        );
    }

    #[test]
    fn mmio_exits_are_recognised_on_every_isa() {
        assert!(is_mmio(ISA_VMX, 49, 0) && is_mmio(ISA_VMX, 48, 0));
        assert!(!is_mmio(ISA_VMX, 30, 0));
        assert!(is_mmio(ISA_SVM, 0x400, 0) && !is_mmio(ISA_SVM, 0x7b, 0));
        assert!(is_mmio(ISA_ARM64, 0x24, 2) && !is_mmio(ISA_ARM64, 0x24, 0));
        assert!(is_mmio(USERSPACE_EXIT, 6, 0) && !is_mmio(USERSPACE_EXIT, 2, 0));
    }
}
