//! `cmdqv doctor`: what this machine can trace (kernel, BTF, privileges, tracefs, program
//! types, /dev/iommu, /dev/kvm), and what each finding means for the user.

use std::path::Path;

use anyhow::Result;
use clap::Args;
use schemars::JsonSchema;
use serde::Serialize;

use crate::{ebpf, live::identity::TargetId};

#[derive(Args, Clone, Debug)]
pub struct DoctorArgs {
    /// Print one JSON document instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: DoctorArgs) -> Result<()> {
    let r = report();
    for c in &r.checks {
        tracing::debug!(check = %c.name, ok = c.ok, value = %c.value, "doctor");
    }
    if a.json {
        let doc = TargetId::default().stamped(&r);
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        print_text(&r);
    }
    Ok(())
}

#[derive(Serialize, JsonSchema)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub value: String,
    /// What it means for the user, in one line.
    pub meaning: String,
}

#[derive(Serialize, JsonSchema)]
pub struct ProgramType {
    pub program_type: String,
    pub available: bool,
    pub reason: String,
    pub meaning: String,
}

#[derive(Serialize, JsonSchema)]
pub struct Report {
    pub checks: Vec<Check>,
    pub program_types: Vec<ProgramType>,
}

fn check(name: &str, ok: bool, value: impl Into<String>, meaning: impl Into<String>) -> Check {
    Check {
        name: name.into(),
        ok,
        value: value.into(),
        meaning: meaning.into(),
    }
}

/// Effective capabilities from /proc/self/status.
fn cap_eff() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("CapEff:"))?;
    u64::from_str_radix(line.split_whitespace().nth(1)?, 16).ok()
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// Everything doctor checks, in the order it reports it.
pub fn report() -> Report {
    let euid = nix::unistd::geteuid().as_raw();
    let privileged = privileges(euid);
    let mut checks = vec![
        check(
            "kernel",
            true,
            kernel_release(),
            "tracepoints, uprobes and ring buffers need ≥ 5.8",
        ),
        btf(),
    ];
    let priv_ok = privileged.ok;
    checks.push(privileged);
    checks.push(tracefs(euid));
    checks.extend(devices());
    checks.push(iommu_tracepoints());
    checks.extend(build());
    let checked = if priv_ok {
        ebpf::check_program_types()
    } else {
        ebpf::all_unavailable("insufficient privileges", "run as root to use eBPF probes")
    };
    let program_types = checked
        .into_iter()
        .map(|t| ProgramType {
            program_type: t.program_type.into(),
            available: t.available,
            reason: t.reason,
            meaning: t.meaning,
        })
        .collect();
    Report {
        checks,
        program_types,
    }
}

fn btf() -> Check {
    let btf = Path::new("/sys/kernel/btf/vmlinux").exists();
    check(
        "btf",
        btf,
        if btf {
            "/sys/kernel/btf/vmlinux"
        } else {
            "absent"
        },
        if btf {
            "BTF-typed probes (tp_btf, fentry) can be loaded"
        } else {
            "no kernel BTF: tp_btf/fentry probes skipped"
        },
    )
}

fn privileges(euid: u32) -> Check {
    let caps = cap_eff().unwrap_or(0);
    let has = |bit: u32| caps & (1u64 << bit) != 0;
    let (cap_sys_admin, cap_perfmon, cap_bpf) = (has(21), has(38), has(39));
    let priv_ok = euid == 0 || cap_sys_admin || (cap_bpf && cap_perfmon);
    check(
        "privileges",
        priv_ok,
        format!(
            "euid={euid} CAP_SYS_ADMIN={cap_sys_admin} CAP_BPF={cap_bpf} CAP_PERFMON={cap_perfmon}"
        ),
        if priv_ok {
            "can load eBPF"
        } else {
            "cannot load eBPF: run as root (or with CAP_BPF+CAP_PERFMON); `cmdqv sim` falls back to in-process events"
        },
    )
}

fn tracefs(euid: u32) -> Check {
    let tracefs = ebpf::tracefs_path().is_some() || (euid == 0 && ebpf::ensure_tracefs());
    check(
        "tracefs",
        tracefs,
        ebpf::tracefs_path().unwrap_or("not mounted"),
        if tracefs {
            "tracepoints can be attached by name"
        } else {
            "tracefs not mounted: `mount -t tracefs nodev /sys/kernel/tracing` (as root)"
        },
    )
}

/// /dev/iommu and /dev/kvm.
fn devices() -> [Check; 2] {
    let iommu = Path::new("/dev/iommu").exists();
    let kvm = Path::new("/dev/kvm").exists();
    let present = |yes| if yes { "present" } else { "absent" };
    [
        check(
            "/dev/iommu",
            iommu,
            present(iommu),
            if iommu {
                "iommufd available: the real passthrough backend can be tried"
            } else {
                "no iommufd here: passthrough uses the simulated host"
            },
        ),
        check(
            "/dev/kvm",
            kvm,
            present(kvm),
            if kvm {
                "kvm:kvm_mmio can fire for guests on this host"
            } else {
                "no KVM: kvm:kvm_mmio will never fire here"
            },
        ),
    ]
}

fn iommu_tracepoints() -> Check {
    let iommu_tps: Vec<&str> = ebpf::IOMMU_TRACEPOINTS
        .iter()
        .map(|(_, _, name)| *name)
        .filter(|name| {
            ebpf::tracefs_path()
                .is_some_and(|t| Path::new(t).join("events/iommu").join(name).is_dir())
        })
        .collect();
    let all_iommu = iommu_tps.len() == ebpf::IOMMU_TRACEPOINTS.len();
    check(
        "iommu tracepoints",
        all_iommu,
        if iommu_tps.is_empty() {
            "absent".to_string()
        } else {
            iommu_tps.join(", ")
        },
        if all_iommu {
            "iommu:map/unmap/io_page_fault/attach_device_to_domain can be traced"
        } else {
            "some iommu:* tracepoints are missing: those probes are reported unsupported"
        },
    )
}

/// The toolchain that built the embedded eBPF object, and the object itself.
fn build() -> [Check; 3] {
    [
        check(
            "nightly (eBPF build)",
            !env!("CMDQV_BUILD_NIGHTLY").is_empty(),
            env!("CMDQV_BUILD_NIGHTLY"),
            "the toolchain that built the embedded eBPF object",
        ),
        check(
            "bpf-linker",
            !env!("CMDQV_BUILD_BPF_LINKER").is_empty(),
            env!("CMDQV_BUILD_BPF_LINKER"),
            "the linker that built the embedded eBPF object",
        ),
        check(
            "ebpf object",
            !ebpf::OBJECT.is_empty(),
            format!("{} bytes embedded", ebpf::OBJECT.len()),
            if ebpf::OBJECT.is_empty() {
                "built with AYA_BUILD_SKIP: no probes; rebuild with `cargo xtask build`"
            } else {
                "probes available"
            },
        ),
    ]
}

pub fn print_text(r: &Report) {
    println!("cmdqv doctor");
    for c in &r.checks {
        let mark = if c.ok { " ok " } else { "MISS" };
        print_finding(mark, &c.name, 22, &c.value, &c.meaning);
    }
    println!("program types:");
    for t in &r.program_types {
        let mark = if t.available { " ok " } else { " no " };
        print_finding(mark, &t.program_type, 15, &t.reason, &t.meaning);
    }
}

fn print_finding(mark: &str, name: &str, width: usize, value: &str, meaning: &str) {
    println!("  [{mark}] {name:<width$} {value}\n        → {meaning}");
}
