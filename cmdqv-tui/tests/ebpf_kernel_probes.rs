//! Privileged: kernel-side probes (kprobe on tegra241_*/iommufd_*, fentry) load where the kernel
//! allows and, where it does not, are reported as unavailable with a reason, never as a failure
//! of the loader. `cmdqv doctor --json` says the same about the program types.
//!
//! Set CMDQV_SKIP_PRIVILEGED=1 to skip these knowingly.

use std::path::Path;

use cmdqv_tui::ebpf::{Tracer, TracerConfig};

mod common;

fn privileged() -> bool {
    if std::env::var_os("CMDQV_SKIP_PRIVILEGED").is_some_and(|v| v == "1") {
        eprintln!("CMDQV_SKIP_PRIVILEGED=1: skipping a privileged eBPF test");
        return false;
    }
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test loads eBPF and needs root (set CMDQV_SKIP_PRIVILEGED=1 to skip it knowingly)"
    );
    true
}

/// Whether this kernel can attach kprobes at all (aya attaches through the kprobe PMU).
fn kprobe_pmu() -> bool {
    Path::new("/sys/bus/event_source/devices/kprobe/type").exists()
}

#[test]
fn kernel_probes_load_and_report_unavailable_as_data_not_failure() {
    if !privileged() {
        return;
    }
    let tracer = Tracer::load(&TracerConfig {
        pid: std::process::id(),
        kernel: true,
        ..Default::default()
    })
    .expect("Tracer::load with kernel probes must succeed even where they cannot attach");
    let kprobes: Vec<_> = tracer
        .probes()
        .iter()
        .filter(|p| p.name.starts_with("kprobe:"))
        .collect();
    assert_eq!(
        kprobes.len(),
        cmdqv_tui::ebpf::KERNEL_FUNCTIONS.len(),
        "one status per kernel function: {kprobes:?}"
    );
    for p in &kprobes {
        assert!(
            !p.reason.trim().is_empty(),
            "a status without a reason: {p:?}"
        );
        assert_ne!(p.status, "failed", "{p:?}");
        if kprobe_pmu() {
            assert!(
                ["attached", "unsupported", "symbol-not-found"].contains(&p.status.as_str()),
                "{p:?}"
            );
        } else {
            assert!(
                ["unsupported", "symbol-not-found"].contains(&p.status.as_str()),
                "no kprobe PMU here, so nothing can attach: {p:?}"
            );
        }
    }
    let fentry: Vec<_> = tracer
        .probes()
        .iter()
        .filter(|p| p.name.starts_with("fentry:"))
        .collect();
    assert!(!fentry.is_empty(), "the fentry attempt is reported");
    for p in fentry {
        assert!(!p.reason.trim().is_empty(), "{p:?}");
        assert!(
            ["attached", "unsupported", "symbol-not-found"].contains(&p.status.as_str()),
            "{p:?}"
        );
    }
}

#[test]
fn doctor_json_marks_kprobe_and_fentry_unavailable_with_reasons() {
    if !privileged() {
        return;
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cmdqv"))
        .args(["doctor", "--json"])
        .output()
        .expect("run cmdqv doctor --json");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("doctor prints JSON");
    common::assert_schema(cmdqv_tui::schema::RecordKind::Doctor, &v);
    let types = v["program_types"].as_array().expect("program_types array");
    let find = |t: &str| {
        types
            .iter()
            .find(|x| x["program_type"] == t)
            .unwrap_or_else(|| panic!("doctor reports no {t}: {types:?}"))
    };
    let iommu = v["checks"]
        .as_array()
        .expect("checks array")
        .iter()
        .find(|c| c["name"] == "iommu tracepoints")
        .expect("doctor reports the iommu tracepoints");
    let here = Path::new("/sys/kernel/tracing/events/iommu/io_page_fault").is_dir();
    assert_eq!(iommu["ok"], here, "{iommu}");
    for t in ["tracepoint", "uprobe"] {
        assert_eq!(find(t)["available"], true, "{t}: {}", find(t));
    }
    for t in ["kprobe", "fentry"] {
        let e = find(t);
        let reason = e["reason"].as_str().unwrap_or_default();
        assert!(!reason.is_empty(), "{t} without a reason: {e}");
        assert!(!e["meaning"].as_str().unwrap_or_default().is_empty(), "{e}");
        if kprobe_pmu() {
            // A kernel with kprobes (a typical Grace host): doctor may well say available. The
            // CI machine kind has neither kprobes nor fentry (toolchain.md).
            continue;
        }
        assert_eq!(e["available"], false, "{t}: {e}");
    }
}

#[test]
fn iommu_tracepoints_attach_where_the_kernel_has_them_and_are_reported_otherwise() {
    if !privileged() {
        return;
    }
    let tracer = Tracer::load(&TracerConfig {
        pid: std::process::id(),
        iommu: true,
        ..Default::default()
    })
    .expect("load eBPF object");
    let events = cmdqv_tui::ebpf::tracefs_path()
        .map(|p| Path::new(p).join("events/iommu"))
        .expect("tracefs mounted by the loader");
    for (_, cat, name) in cmdqv_tui::ebpf::IOMMU_TRACEPOINTS {
        let label = format!("tracepoint:{cat}/{name}");
        let p = tracer
            .probes()
            .iter()
            .find(|p| p.name == label)
            .unwrap_or_else(|| panic!("no status for {label}: {:?}", tracer.probes()));
        if events.join(name).is_dir() {
            assert_eq!(p.status, "attached", "{p:?}");
        } else {
            assert_eq!(p.status, "unsupported", "{p:?}");
            assert!(p.reason.contains(name), "{p:?}");
        }
    }
}
