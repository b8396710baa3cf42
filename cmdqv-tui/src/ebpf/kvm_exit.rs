//! The `kvm:kvm_exit` probe: its fields differ per architecture (x86: `exit_reason`, `isa`,
//! `guest_rip`, `info1`, `vcpu_id`; arm64: `ret`, `esr_ec`, `vcpu_pc`), so their offsets are read
//! from this kernel's tracepoint format, written to the program's `KVM_EXIT_LAYOUT` map, and the
//! program attached; every step that fails is the probe's status, never an error. Beside it,
//! `kvm:kvm_userspace_exit` (generic): the exits that reach the VMM, which a KVM that never
//! fires `kvm_exit` (PVM) still reports.

use aya::{Ebpf, maps::Array};
use cmdqv_core::analysis::ProbeStatus;
use cmdqv_ebpf_common::{KVM_ISA_ARM64, KvmExitLayout};

use crate::ebpf::attach::{attach_tracepoint, status, tracefs_path};

/// The program and its tracepoint.
pub const PROGRAM: &str = "cmdqv_kvm_exit";
pub const LABEL: &str = "tracepoint:kvm/kvm_exit";
pub const USERSPACE_PROGRAM: &str = "cmdqv_kvm_userspace_exit";
pub const USERSPACE_LABEL: &str = "tracepoint:kvm/kvm_userspace_exit";

/// `(offset, size)` of field `name` in a tracepoint format text (`field:TYPE NAME; offset:N;
/// size:N; ...` lines); arrays and dynamic fields do not match a plain name.
fn field(format: &str, name: &str) -> Option<(u32, u32)> {
    format.lines().find_map(|l| {
        let mut parts = l.trim().split(';').map(str::trim);
        let decl = parts.next()?.strip_prefix("field:")?;
        if decl.rsplit(' ').next()? != name {
            return None;
        }
        let num = |key: &str, p: Option<&str>| p?.strip_prefix(key)?.parse::<u32>().ok();
        Some((num("offset:", parts.next())?, num("size:", parts.next())?))
    })
}

/// The layout of `kvm_exit` records in `format`, or why this format cannot be read.
pub fn layout(format: &str) -> Result<KvmExitLayout, String> {
    let off = |name| field(format, name).map_or(0, |(o, _)| o);
    if let Some((reason, 4)) = field(format, "exit_reason") {
        let (info_off, info_size) = field(format, "info1").unwrap_or((0, 8));
        return Ok(KvmExitLayout {
            enabled: 1,
            isa: 0,
            reason_off: reason,
            isa_off: off("isa"),
            vcpu_off: off("vcpu_id"),
            pc_off: off("guest_rip"),
            info_off,
            info_size,
        });
    }
    if let Some((reason, 4)) = field(format, "esr_ec") {
        let (info_off, info_size) = field(format, "ret").unwrap_or((0, 4));
        return Ok(KvmExitLayout {
            enabled: 1,
            isa: KVM_ISA_ARM64,
            reason_off: reason,
            isa_off: 0,
            vcpu_off: 0,
            pc_off: off("vcpu_pc"),
            info_off,
            info_size,
        });
    }
    Err("its format has neither x86's exit_reason nor arm64's esr_ec (a 4-byte field)".into())
}

/// Reads this kernel's `kvm_exit` format, configures the program and attaches it.
pub fn attach(ebpf: &mut Ebpf) -> ProbeStatus {
    let Some(tracefs) = tracefs_path() else {
        return status(LABEL, "unsupported", "tracefs is not mounted");
    };
    let path = format!("{tracefs}/events/kvm/kvm_exit/format");
    let format = match std::fs::read_to_string(&path) {
        Ok(f) => f,
        Err(e) => {
            return status(
                LABEL,
                "unsupported",
                format!("this kernel has no kvm:kvm_exit tracepoint ({path}: {e})"),
            );
        }
    };
    let l = match layout(&format) {
        Ok(l) => l,
        Err(why) => return status(LABEL, "unsupported", format!("kvm:kvm_exit: {why}")),
    };
    if let Err(why) = write_layout(ebpf, l) {
        return status(LABEL, "failed", why);
    }
    attach_tracepoint(ebpf, PROGRAM, "kvm", "kvm_exit")
}

/// Attaches `kvm:kvm_userspace_exit` (fixed offsets: the generic KVM tracepoint).
pub fn attach_userspace(ebpf: &mut Ebpf) -> ProbeStatus {
    attach_tracepoint(ebpf, USERSPACE_PROGRAM, "kvm", "kvm_userspace_exit")
}

fn write_layout(ebpf: &mut Ebpf, l: KvmExitLayout) -> Result<(), String> {
    let map = ebpf
        .map_mut("KVM_EXIT_LAYOUT")
        .ok_or("KVM_EXIT_LAYOUT map missing from the object")?;
    let mut a: Array<_, KvmExitLayout> = Array::try_from(map).map_err(|e| e.to_string())?;
    a.set(0, l, 0)
        .map_err(|e| format!("writing KVM_EXIT_LAYOUT: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cmdqv_ebpf_common::KVM_ISA_VMX;

    /// x86_64, Linux 6.18 (this machine's /sys/kernel/tracing/events/kvm/kvm_exit/format).
    const X86: &str = "name: kvm_exit
ID: 103
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:unsigned int exit_reason;\toffset:8;\tsize:4;\tsigned:0;
\tfield:unsigned long guest_rip;\toffset:16;\tsize:8;\tsigned:0;
\tfield:u32 isa;\toffset:24;\tsize:4;\tsigned:0;
\tfield:u64 info1;\toffset:32;\tsize:8;\tsigned:0;
\tfield:u64 info2;\toffset:40;\tsize:8;\tsigned:0;
\tfield:u32 intr_info;\toffset:48;\tsize:4;\tsigned:0;
\tfield:u32 error_code;\toffset:52;\tsize:4;\tsigned:0;
\tfield:unsigned int vcpu_id;\toffset:56;\tsize:4;\tsigned:0;
\tfield:u64 requests;\toffset:64;\tsize:8;\tsigned:0;

print fmt: \"vcpu %u reason %s%s%s rip 0x%lx\", REC->vcpu_id";

    /// arm64 (arch/arm64/kvm/trace_arm.h: `int ret; unsigned int esr_ec; unsigned long vcpu_pc`).
    const ARM64: &str = "name: kvm_exit
ID: 1370
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:int ret;\toffset:8;\tsize:4;\tsigned:1;
\tfield:unsigned int esr_ec;\toffset:12;\tsize:4;\tsigned:0;
\tfield:unsigned long vcpu_pc;\toffset:16;\tsize:8;\tsigned:0;

print fmt: \"%s: HSR_EC: 0x%04x (%s), PC: 0x%016lx\"";

    #[test]
    fn the_x86_format_gives_its_fields() {
        let l = layout(X86).unwrap();
        assert_eq!(
            l,
            KvmExitLayout {
                enabled: 1,
                isa: 0,
                reason_off: 8,
                isa_off: 24,
                vcpu_off: 56,
                pc_off: 16,
                info_off: 32,
                info_size: 8,
            }
        );
        assert_ne!(KVM_ISA_VMX, l.isa, "x86 reads its isa from the record");
    }

    #[test]
    fn the_arm64_format_gives_its_fields_and_no_vcpu() {
        let l = layout(ARM64).unwrap();
        assert_eq!(
            l,
            KvmExitLayout {
                enabled: 1,
                isa: KVM_ISA_ARM64,
                reason_off: 12,
                isa_off: 0,
                vcpu_off: 0,
                pc_off: 16,
                info_off: 8,
                info_size: 4,
            }
        );
    }

    #[test]
    fn a_format_without_a_reason_is_refused_with_why() {
        let e = layout("format:\n\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n");
        assert!(e.unwrap_err().contains("exit_reason"));
        // A prefix of a name is not the name.
        assert_eq!(field(X86, "info"), None);
        assert_eq!(field(X86, "info2"), Some((40, 8)));
    }

    #[test]
    fn this_kernels_format_reads_when_it_has_kvm() {
        let Some(t) = tracefs_path() else { return };
        let Ok(f) = std::fs::read_to_string(format!("{t}/events/kvm/kvm_exit/format")) else {
            return;
        };
        let l = layout(&f).unwrap();
        assert!(l.reason_off >= 8 && l.pc_off >= 8, "{l:?}");
    }
}
