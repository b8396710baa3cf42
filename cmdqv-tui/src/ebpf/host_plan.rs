//! The host target's probe plan: what the running kernel's BTF says about its SMMUv3 driver (the
//! form of `arm_smmu_cmdq_issue_cmdlist`, the struct offsets the probes read through), turned
//! into the probes' configuration ([`HostProbeConfig`]), and attaching the host programs in an
//! order that never pairs a return with a call whose entry was not seen.

use aya::{Ebpf, maps::Array};
use cmdqv_core::{
    analysis::ProbeStatus,
    btf::{Btf, BtfError, Param},
};
use cmdqv_ebpf_common::{HOST_ARG_NONE, HOST_OFFSET_UNKNOWN, HostConfig};

use crate::ebpf::attach::{attach_kprobe, kernel_functions, kprobe_pmu, status};

/// The driver's batch submission: every command the kernel issues goes through it.
pub const ISSUE_FN: &str = "arm_smmu_cmdq_issue_cmdlist";
/// Where a batch's commands are copied into the ring: gives its ring pointer.
pub const WRITE_FN: &str = "arm_smmu_cmdq_write_entries";
/// The CMD_SYNC wait, in kernels that keep it a function of its own.
pub const POLL_FN: &str = "arm_smmu_cmdq_poll_until_sync";

/// Where the kernel's BTF is, and where a modular arm-smmu-v3 driver's split BTF would be.
const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";
const MODULE_BTF: &str = "/sys/kernel/btf/arm_smmu_v3";

/// The host probes' configuration for this kernel, with what it was read from.
#[derive(Clone, Debug)]
pub struct HostProbeConfig {
    /// What the programs get (`enabled` only when the form of [`ISSUE_FN`] is known).
    pub config: HostConfig,
    /// [`ISSUE_FN`]'s form as read (`arm_smmu_cmdq_issue_cmdlist(smmu, cmdq, cmds, n, sync)`),
    /// or why it is not known.
    pub form: Result<String, String>,
    /// Facts the user should see in the summary (form, what is not known and what that costs).
    pub notes: Vec<String>,
}

/// `issue_cmdlist`'s argument positions (smmu, cmdq, cmds, n, sync): by name where the BTF names
/// the parameters, else by count (4: `(smmu, cmds, n, sync)` before Linux 6.12; 5: `(smmu, cmdq,
/// cmds, n, sync)` since).
pub fn argument_positions(params: &[Param]) -> Result<[u32; 5], String> {
    let by_name = |n: &str| params.iter().position(|p| p.name == n).map(|i| i as u32);
    let named = ["smmu", "cmdq", "cmds", "n", "sync"].map(by_name);
    let [smmu, cmdq, cmds, n, sync] = named;
    if let (Some(smmu), Some(cmds), Some(n), Some(sync)) = (smmu, cmds, n, sync) {
        return Ok([smmu, cmdq.unwrap_or(HOST_ARG_NONE), cmds, n, sync]);
    }
    match params.len() {
        4 => Ok([0, HOST_ARG_NONE, 1, 2, 3]),
        5 => Ok([0, 1, 2, 3, 4]),
        k => Err(format!(
            "{ISSUE_FN} has {k} parameters in this kernel's BTF, a form cmdqv does not know"
        )),
    }
}

fn signature(params: &[Param]) -> String {
    let names: Vec<&str> = params.iter().map(|p| p.name.as_str()).collect();
    format!("{ISSUE_FN}({})", names.join(", "))
}

/// A struct offset for the probes, or [`HOST_OFFSET_UNKNOWN`] with a note on what is lost.
fn offset(btf: &Btf, s: &str, path: &[&str], lost: &str, notes: &mut Vec<String>) -> u32 {
    btf.member_offset(s, path).unwrap_or_else(|e| {
        notes.push(format!("{e}: {lost}"));
        HOST_OFFSET_UNKNOWN
    })
}

impl HostProbeConfig {
    /// The configuration for the running kernel: vmlinux's BTF, and the arm_smmu_v3 module's
    /// split BTF on top of it when the driver is a module.
    pub fn from_kernel() -> Self {
        match kernel_btf() {
            Ok(btf) => Self::from_btf(&btf),
            Err(e) => Self::unknown(format!(
                "the form of {ISSUE_FN} could not be read from the kernel's BTF: {e}"
            )),
        }
    }

    fn unknown(why: String) -> Self {
        Self {
            config: HostConfig::default(),
            form: Err(why.clone()),
            notes: vec![why],
        }
    }

    /// The configuration a kernel with this BTF needs.
    pub fn from_btf(btf: &Btf) -> Self {
        let params = match btf.function_params(ISSUE_FN) {
            Ok(p) => p,
            Err(e) => return Self::unknown(e.to_string()),
        };
        let [arg_smmu, arg_cmdq, arg_cmds, arg_n, arg_sync] = match argument_positions(&params) {
            Ok(p) => p,
            Err(e) => return Self::unknown(e),
        };
        let mut notes = vec![format!(
            "{}: the form in this kernel's BTF",
            signature(&params)
        )];
        let q = "arm_smmu_cmdq";
        let config = HostConfig {
            enabled: 1,
            arg_smmu,
            arg_cmdq,
            arg_cmds,
            arg_n,
            arg_sync,
            main_cmdq_offset: offset(
                btf,
                "arm_smmu_device",
                &["cmdq"],
                "the SMMU's own queue is not told from others",
                &mut notes,
            ),
            max_n_shift_offset: offset(
                btf,
                q,
                &["q", "llq", "max_n_shift"],
                "ring sizes are unknown: no ring window, no appended CMD_SYNC",
                &mut notes,
            ),
            ring_base_offset: offset(
                btf,
                q,
                &["q", "base"],
                "the appended CMD_SYNCs are not read back from the ring",
                &mut notes,
            ),
            _pad: 0,
        };
        if arg_cmdq == HOST_ARG_NONE {
            notes.push(format!(
                "{ISSUE_FN} takes no queue in this kernel: each batch's queue comes from {WRITE_FN}"
            ));
        }
        Self {
            config,
            form: Ok(signature(&params)),
            notes,
        }
    }
}

/// The BTF that describes the SMMUv3 driver: vmlinux's, or the module's split BTF on it.
fn kernel_btf() -> Result<Btf, String> {
    let read = |p: &str| std::fs::read(p).map_err(|e| format!("{p}: {e}"));
    let vmlinux = Btf::parse(&read(VMLINUX_BTF)?).map_err(|e| format!("{VMLINUX_BTF}: {e}"))?;
    match vmlinux.function_params(ISSUE_FN) {
        Err(BtfError::NotFound { .. }) if std::path::Path::new(MODULE_BTF).exists() => {
            Btf::parse_split(&read(MODULE_BTF)?, &vmlinux).map_err(|e| format!("{MODULE_BTF}: {e}"))
        }
        _ => Ok(vmlinux),
    }
}

/// The host programs and what each one is for, in attach order: every return probe before the
/// entry probe, so a call whose entry was seen always has its return seen.
const PROGRAMS: [(&str, &str, &str); 5] = [
    ("cmdqv_host_issue_return", "kretprobe", ISSUE_FN),
    ("cmdqv_host_write_entries", "kprobe", WRITE_FN),
    ("cmdqv_host_poll_sync_return", "kretprobe", POLL_FN),
    ("cmdqv_host_poll_sync", "kprobe", POLL_FN),
    ("cmdqv_host_issue", "kprobe", ISSUE_FN),
];

/// How the CMD_SYNC wait is measured on this kernel.
fn wait_measure(poll: bool) -> String {
    if poll {
        format!("the CMD_SYNC wait is timed on {POLL_FN}")
    } else {
        format!(
            "the CMD_SYNC wait is measured as entry to return of {ISSUE_FN} for batches with a \
             CMD_SYNC (submission + wait): this kernel has no {POLL_FN} function (inlined)"
        )
    }
}

/// What a probe that attached does, in the words the probe list shows.
fn purpose(prog: &str, poll: bool) -> String {
    match prog {
        "cmdqv_host_issue" => "attached: every batch the driver submits".into(),
        "cmdqv_host_issue_return" => {
            format!("attached: the end of each batch; {}", wait_measure(poll))
        }
        "cmdqv_host_write_entries" => "attached: the ring slot of each batch".into(),
        _ => format!("attached: {}", wait_measure(poll)),
    }
}

/// Writes the configuration and attaches the host programs; one status per program.
pub fn attach_probes(ebpf: &mut Ebpf, host: &HostProbeConfig) -> Vec<ProbeStatus> {
    let labels = PROGRAMS.map(|(_, kind, func)| format!("{kind}:{func}"));
    if let Err(why) = &host.form {
        let s = if why.contains("has no") {
            "symbol-not-found"
        } else {
            "unsupported"
        };
        // The submission probe also says whether a kprobe could attach here at all.
        let pmu = kprobe_pmu()
            .err()
            .map(|e| format!("; {e}"))
            .unwrap_or_default();
        let entry = format!("kprobe:{ISSUE_FN}");
        let reason = |l: &str| format!("{why}{}", if l == entry { pmu.as_str() } else { "" });
        return labels
            .into_iter()
            .map(|l| status(l.clone(), s, reason(&l)))
            .collect();
    }
    if let Err(e) = write_config(ebpf, &host.config) {
        return labels
            .into_iter()
            .map(|l| status(l, "failed", e.clone()))
            .collect();
    }
    let present = kernel_functions(&[ISSUE_FN, WRITE_FN, POLL_FN]);
    let poll = present.contains(POLL_FN);
    PROGRAMS
        .iter()
        .zip(labels)
        .map(|(&(prog, _, func), label)| {
            let mut s = attach_kprobe(ebpf, prog, func, label, present.contains(func));
            match s.status.as_str() {
                "attached" => s.reason = purpose(prog, poll),
                "symbol-not-found" if func == POLL_FN => s.reason = wait_measure(false),
                _ => {}
            }
            s
        })
        .collect()
}

fn write_config(ebpf: &mut Ebpf, c: &HostConfig) -> Result<(), String> {
    let map = ebpf
        .map_mut("HOST_CONFIG")
        .ok_or("HOST_CONFIG map missing from the object")?;
    let mut a: Array<_, HostConfig> = Array::try_from(map).map_err(|e| e.to_string())?;
    a.set(0, *c, 0)
        .map_err(|e| format!("writing HOST_CONFIG: {e}"))
}

/// Whether the probe that sees every batch attached (without it `cmdqv host` sees nothing).
/// The probe on the driver's batch submission, by the name the probe list gives it.
pub fn submission_probe_name() -> String {
    format!("kprobe:{ISSUE_FN}")
}

pub fn submission_attached(probes: &[ProbeStatus]) -> bool {
    let label = submission_probe_name();
    probes
        .iter()
        .any(|p| p.name == label && p.status == "attached")
}

#[cfg(test)]
mod tests {
    use super::*;
    use cmdqv_core::btf::build::Builder;

    fn params(names: &[&str]) -> Vec<Param> {
        names
            .iter()
            .map(|n| Param {
                name: n.to_string(),
            })
            .collect()
    }

    #[test]
    fn argument_positions_follow_the_names_or_the_count() {
        let new = argument_positions(&params(&["smmu", "cmdq", "cmds", "n", "sync"]));
        assert_eq!(new, Ok([0, 1, 2, 3, 4]));
        let old = argument_positions(&params(&["smmu", "cmds", "n", "sync"]));
        assert_eq!(old, Ok([0, HOST_ARG_NONE, 1, 2, 3]));
        // Renamed or reordered parameters are found by name ...
        let moved = argument_positions(&params(&["cmdq", "smmu", "cmds", "sync", "n"]));
        assert_eq!(moved, Ok([1, 0, 2, 4, 3]));
        // ... and unnamed ones by count.
        assert_eq!(
            argument_positions(&params(&["", "", "", "", ""])),
            Ok([0, 1, 2, 3, 4])
        );
        assert!(argument_positions(&params(&["a", "b", "c"])).is_err());
    }

    /// A kernel's BTF with the 5-argument form and the driver's structs (offsets of Linux 6.12
    /// on arm64), or without `struct arm_smmu_device`.
    fn kernel(with_device: bool) -> Btf {
        let mut b = Builder::new();
        let u32t = b.int("unsigned int", 4);
        let u64t = b.int("long long unsigned int", 8);
        let llq = b.composite(
            false,
            "arm_smmu_ll_queue",
            128,
            &[("max_n_shift", u32t, 512)],
        );
        let base = b.ptr(u64t);
        let queue = b.composite(
            false,
            "arm_smmu_queue",
            192,
            &[("llq", llq, 0), ("base", base, 1088)],
        );
        let cmdq = b.composite(false, "arm_smmu_cmdq", 256, &[("q", queue, 0)]);
        let dev = if with_device {
            b.composite(false, "arm_smmu_device", 1024, &[("cmdq", cmdq, 2048)])
        } else {
            u64t
        };
        let (pd, pq, pc) = (b.ptr(dev), b.ptr(cmdq), b.ptr(u64t));
        let args = [
            ("smmu", pd),
            ("cmdq", pq),
            ("cmds", pc),
            ("n", u32t),
            ("sync", u32t),
        ];
        b.func(ISSUE_FN, u32t, &args);
        Btf::parse(&b.finish()).unwrap()
    }

    #[test]
    fn the_config_comes_from_the_kernels_btf() {
        let h = HostProbeConfig::from_btf(&kernel(true));
        let c = h.config;
        assert_eq!(c.enabled, 1);
        assert_eq!(
            (c.arg_smmu, c.arg_cmdq, c.arg_cmds, c.arg_n, c.arg_sync),
            (0, 1, 2, 3, 4)
        );
        assert_eq!(
            (c.main_cmdq_offset, c.max_n_shift_offset, c.ring_base_offset),
            (256, 64, 136)
        );
        assert_eq!(
            h.form.as_deref(),
            Ok("arm_smmu_cmdq_issue_cmdlist(smmu, cmdq, cmds, n, sync)")
        );
        assert_eq!(h.notes.len(), 1, "{:?}", h.notes);
        // Without the device struct the main queue is not identified, and the notes say so.
        let h = HostProbeConfig::from_btf(&kernel(false));
        assert_eq!(h.config.main_cmdq_offset, HOST_OFFSET_UNKNOWN);
        assert_eq!(h.config.max_n_shift_offset, 64);
        assert!(
            h.notes.iter().any(|n| n.contains("own queue")),
            "{:?}",
            h.notes
        );
    }

    #[test]
    fn a_kernel_without_the_driver_leaves_the_probes_disabled() {
        let mut b = Builder::new();
        let i = b.int("int", 4);
        b.func("do_sys_openat2", i, &[("dfd", i)]);
        let h = HostProbeConfig::from_btf(&Btf::parse(&b.finish()).unwrap());
        assert_eq!(h.config.enabled, 0);
        let why = h.form.unwrap_err();
        assert!(
            why.contains("has no function named arm_smmu_cmdq_issue_cmdlist"),
            "{why}"
        );
    }

    #[test]
    fn only_an_attached_entry_probe_counts_as_submission() {
        let p = |name: &str, s: &str| status(name.to_string(), s, "x");
        let entry = format!("kprobe:{ISSUE_FN}");
        assert!(submission_attached(&[p(&entry, "attached")]));
        let ret = format!("kretprobe:{ISSUE_FN}");
        assert!(!submission_attached(&[
            p(&ret, "attached"),
            p(&entry, "unsupported")
        ]));
        assert!(!submission_attached(&[]));
    }
}
