//! The QEMU probe plan: which of a QEMU binary's symbols get which probes (chosen from its
//! symbol table by [`cmdqv_core::qemu::choose_probe_set`]), the in-kernel filter settings that go
//! with them, and the setters a session uses to tell the kernel what it learnt.
//!
//! On a stripped Debian QEMU the SMMU is found in the kernel: the first CMDQ_BASE-shaped write
//! names its MemoryRegion and the queue window (see cmdqv-ebpf/probes/src/qemu.rs);
//! [`set_window`] / [`set_region`] let a caller set both by hand.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use aya::Ebpf;
use cmdqv_core::{
    analysis::ProbeStatus,
    qemu::{
        BinarySymbols, ProbeChoice, ProbeKind, QueueWindow, choose_probe_set, discover_symbols,
    },
};
use cmdqv_ebpf_common::{
    FilterConfig, QEMU_FETCH_UNWINDOWED, QEMU_LEARN_FROM_FETCH, QEMU_LEARN_REGION,
};

use crate::ebpf::{
    attach::{attach_uprobe, status},
    loader::Tracer,
};

/// What to attach to a QEMU binary (part of a `TracerConfig`).
#[derive(Clone, Debug)]
pub struct QemuProbeConfig {
    /// The QEMU executable the uprobes go into.
    pub binary: PathBuf,
    /// The chosen probes (from the binary's symbols).
    pub choice: ProbeChoice,
    /// Learn the SMMU's MemoryRegion in the kernel from its CMDQ_BASE write (needs a pid).
    pub learn_region: bool,
    /// Report 16-byte DMA reads as commands while the queue window is unknown, and learn the
    /// SMMU's region from the write that triggered such a fetch (attach to a running QEMU whose
    /// guest programmed CMDQ_BASE before the probes existed).
    pub fetch_unwindowed: bool,
    /// Known MemoryRegion pointer of the SMMU (0 = learn).
    pub region_ptr: u64,
    /// Known queue window.
    pub window: Option<QueueWindow>,
}

/// Options of a QEMU trace.
#[derive(Clone, Debug, Default)]
pub struct QemuOptions {
    /// Also trace SMMU register reads (a uprobe + uretprobe on every MMIO read of every device:
    /// the costliest probe; off by default).
    pub mmio_reads: bool,
}

impl QemuProbeConfig {
    /// Reads the binary's symbols and chooses the probe set.
    pub fn for_binary(binary: &Path, opts: &QemuOptions) -> anyhow::Result<(Self, BinarySymbols)> {
        let syms = discover_symbols(binary).with_context(|| {
            format!(
                "cannot read the symbols of {}: is it a QEMU binary?",
                binary.display()
            )
        })?;
        let choice = choose_probe_set(&syms, opts.mmio_reads);
        Ok((
            Self {
                binary: binary.to_path_buf(),
                choice,
                learn_region: true,
                fetch_unwindowed: false,
                region_ptr: 0,
                window: None,
            },
            syms,
        ))
    }

    /// `FilterConfig::qemu_flags` for this configuration.
    pub fn flags(&self) -> u32 {
        let learn = if self.learn_region {
            QEMU_LEARN_REGION
        } else {
            0
        };
        let unwindowed = if self.fetch_unwindowed {
            QEMU_FETCH_UNWINDOWED | QEMU_LEARN_FROM_FETCH
        } else {
            0
        };
        learn | unwindowed
    }

    /// Applies the QEMU fields to the filter the loader writes before attaching.
    pub fn apply(&self, f: &mut FilterConfig) {
        f.qemu_flags = self.flags();
        f.region_ptr = self.region_ptr;
        if let Some(w) = self.window {
            f.q_lo = w.base;
            f.q_hi = w.end();
        }
    }
}

/// Attaches every planned probe; called by `Tracer::load`.
pub fn attach_probes(ebpf: &mut Ebpf, cfg: &QemuProbeConfig, pid: u32) -> Vec<ProbeStatus> {
    if cfg.choice.probes.is_empty() {
        return vec![status(
            format!("qemu:{}", cfg.binary.display()),
            "symbol-not-found",
            cfg.choice.reasons.join("; "),
        )];
    }
    cfg.choice
        .probes
        .iter()
        .map(|p| {
            let mut s = attach_uprobe(ebpf, &p.program, &p.symbol, &cfg.binary, pid);
            if p.kind == ProbeKind::Return {
                s.name = format!("uretprobe:{}", p.symbol);
            }
            s
        })
        .collect()
}

/// The in-kernel filter as it is now (including what the kernel learnt).
pub fn read_filter(tracer: &mut Tracer) -> anyhow::Result<FilterConfig> {
    tracer.filter()
}

/// Sets the command-queue window the fetch probe accepts.
pub fn set_window(tracer: &mut Tracer, w: QueueWindow) -> anyhow::Result<()> {
    tracer.update_filter(|f| {
        f.q_lo = w.base;
        f.q_hi = w.end();
    })
}

/// Sets the SMMU's MemoryRegion pointer the MMIO probes keep.
pub fn set_region(tracer: &mut Tracer, region_ptr: u64) -> anyhow::Result<()> {
    tracer.update_filter(|f| f.region_ptr = region_ptr)
}

#[cfg(test)]
mod tests {
    use cmdqv_core::qemu::{ProbeSet, decode_cmdq_base};

    use super::*;

    #[test]
    fn flags_follow_the_config() {
        let q = QemuProbeConfig {
            binary: "/x".into(),
            choice: ProbeChoice {
                set: ProbeSet::Dispatch,
                probes: vec![],
                reasons: vec![],
            },
            learn_region: true,
            fetch_unwindowed: true,
            region_ptr: 7,
            window: Some(decode_cmdq_base(0x7ab0_0010)),
        };
        let mut f = FilterConfig::default();
        q.apply(&mut f);
        assert_eq!(
            f.qemu_flags,
            QEMU_LEARN_REGION | QEMU_FETCH_UNWINDOWED | QEMU_LEARN_FROM_FETCH
        );
        assert_eq!(
            (f.region_ptr, f.q_lo, f.q_hi),
            (7, 0x7ab0_0000, 0x7ac0_0000)
        );
    }

    #[test]
    fn missing_binary_is_a_clear_error() {
        let e =
            QemuProbeConfig::for_binary(Path::new("/nonexistent/qemu"), &QemuOptions::default())
                .unwrap_err();
        assert!(format!("{e:#}").contains("/nonexistent/qemu"));
    }
}
