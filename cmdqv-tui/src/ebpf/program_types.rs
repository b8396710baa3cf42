//! Which eBPF program types this kernel loads and attaches, for `cmdqv doctor`: one program of
//! each type is loaded, attached to a harmless hook and detached right after.

use std::path::Path;

use aya::{
    Btf, Ebpf, EbpfLoader,
    programs::{
        BtfTracePoint, FEntry, KProbe, ProgramError, RawTracePoint, TracePoint, UProbe,
        uprobe::UProbeScope,
    },
};

use crate::ebpf::{
    attach::{classify, ensure_tracefs, typed_program},
    loader::OBJECT,
};

/// The program types `cmdqv doctor` checks, in the order it reports them.
pub const PROGRAM_TYPES: [&str; 6] = [
    "tracepoint",
    "raw_tracepoint",
    "tp_btf",
    "uprobe",
    "kprobe",
    "fentry",
];

/// What each of [`PROGRAM_TYPES`] means for the user: (when it works, when it does not).
const MEANINGS: [(&str, &str); 6] = [
    (
        "syscall (iommufd ioctl/mmap) and kvm:kvm_mmio probes work",
        "no syscall or kvm_mmio probes: only uprobes/in-process events",
    ),
    (
        "raw tracepoints usable",
        "raw tracepoints unavailable (not needed by default)",
    ),
    (
        "BTF-typed tracepoints usable (iommu:* with typed args)",
        "BTF tracepoints unavailable",
    ),
    (
        "VMM MMIO probes (sim VMM, QEMU) work",
        "uprobes unavailable: VMM MMIO tracing falls back to in-process events",
    ),
    (
        "kernel-side probes can attach: `cmdqv host` (the SMMUv3 driver), tegra241_*/iommufd_*",
        "kprobe unavailable: `cmdqv host` cannot run; kernel-side CMDQV probes will be skipped",
    ),
    (
        "fentry probes usable (cheaper kernel-side probes)",
        "fentry unavailable: kernel-side probes use kprobes or are skipped",
    ),
];

/// Result of trying one program type (for `cmdqv doctor`).
pub struct TypeCheck {
    pub program_type: &'static str,
    pub available: bool,
    pub reason: String,
    pub meaning: String,
}

/// Every program type reported unavailable for one reason.
pub fn all_unavailable(reason: &str, meaning: &str) -> Vec<TypeCheck> {
    PROGRAM_TYPES
        .iter()
        .map(|t| TypeCheck {
            program_type: t,
            available: false,
            reason: reason.into(),
            meaning: meaning.into(),
        })
        .collect()
}

/// Loads and attaches one program of each type, detaching right after, to tell the user what
/// works on this kernel.
pub fn check_program_types() -> Vec<TypeCheck> {
    if OBJECT.is_empty() {
        return all_unavailable(
            "binary built without the eBPF object",
            "rebuild with `cargo xtask build`",
        );
    }
    let mut ebpf = match EbpfLoader::new().load(OBJECT) {
        Ok(e) => e,
        Err(e) => {
            return all_unavailable(
                &format!("object does not load: {e}"),
                "no eBPF: `cmdqv sim` falls back to in-process events",
            );
        }
    };
    ensure_tracefs();
    let exe = std::env::current_exe().unwrap_or_default();
    let outcomes = [
        outcome(try_tracepoint(&mut ebpf)),
        outcome(try_raw_tracepoint(&mut ebpf)),
        with_btf(|btf| try_tp_btf(&mut ebpf, btf)),
        outcome(try_uprobe(&mut ebpf, &exe)),
        outcome(try_kprobe(&mut ebpf)),
        with_btf(|btf| try_fentry(&mut ebpf, btf)),
    ];
    PROGRAM_TYPES
        .into_iter()
        .zip(MEANINGS)
        .zip(outcomes)
        .map(|((program_type, (yes, no)), r)| TypeCheck {
            program_type,
            available: r.is_ok(),
            meaning: if r.is_ok() { yes } else { no }.into(),
            reason: r.err().unwrap_or_else(|| "loaded and attached".into()),
        })
        .collect()
}

fn outcome(r: Result<(), ProgramError>) -> Result<(), String> {
    r.map_err(|e| classify(&e).1)
}

/// A check that needs the kernel's BTF; without it the type is unavailable.
fn with_btf(check: impl FnOnce(&Btf) -> Result<(), ProgramError>) -> Result<(), String> {
    match Btf::from_sys_fs() {
        Ok(btf) => outcome(check(&btf)),
        Err(e) => Err(format!("no kernel BTF: {e}")),
    }
}

fn try_tracepoint(ebpf: &mut Ebpf) -> Result<(), ProgramError> {
    let tp: &mut TracePoint = typed_program(ebpf, "cmdqv_ioctl_enter")?;
    tp.load()?;
    let id = tp.attach("syscalls", "sys_enter_ioctl")?;
    tp.detach(id)
}

fn try_raw_tracepoint(ebpf: &mut Ebpf) -> Result<(), ProgramError> {
    let p: &mut RawTracePoint = typed_program(ebpf, "cmdqv_doctor_raw_tp")?;
    p.load()?;
    let id = p.attach("sys_enter")?;
    p.detach(id)
}

fn try_tp_btf(ebpf: &mut Ebpf, btf: &Btf) -> Result<(), ProgramError> {
    let p: &mut BtfTracePoint = typed_program(ebpf, "cmdqv_doctor_tp_btf")?;
    p.load("sys_enter", btf)?;
    let id = p.attach()?;
    p.detach(id)
}

fn try_uprobe(ebpf: &mut Ebpf, exe: &Path) -> Result<(), ProgramError> {
    let p: &mut UProbe = typed_program(ebpf, "cmdqv_vmm_mmio")?;
    p.load()?;
    let id = p.attach("cmdqv_vmm_mmio", exe, UProbeScope::CallingProcess)?;
    // Fire it once so the probe is exercised, not only attached.
    cmdqv_core::sim::hooks::cmdqv_vmm_mmio(0, 0, 0, 4, 0);
    p.detach(id)
}

fn try_kprobe(ebpf: &mut Ebpf) -> Result<(), ProgramError> {
    let p: &mut KProbe = typed_program(ebpf, "cmdqv_kfunc_entry")?;
    p.load()?;
    let id = p.attach("do_sys_openat2", 0)?;
    p.detach(id)
}

fn try_fentry(ebpf: &mut Ebpf, btf: &Btf) -> Result<(), ProgramError> {
    let p: &mut FEntry = typed_program(ebpf, "cmdqv_kfunc_fentry")?;
    p.load("do_sys_openat2", btf)?;
    let id = p.attach()?;
    p.detach(id)
}
