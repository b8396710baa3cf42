//! Attach helpers: one program to one hook (tracepoint, uprobe, kprobe, fentry), each returning
//! its status as data (attached, symbol not found, hook not supported by this kernel, permission
//! denied) instead of an error. A probe that cannot attach is reported, never a crash.

use std::{collections::BTreeSet, path::Path};

use aya::{
    Btf, Ebpf,
    programs::{FEntry, KProbe, Program, ProgramError, TracePoint, UProbe, uprobe::UProbeScope},
};
use cmdqv_core::analysis::ProbeStatus;

/// Why a probe did not attach, in the words the UI shows.
pub fn classify(err: &ProgramError) -> (&'static str, String) {
    let text = format!("{err}");
    let source = std::error::Error::source(err)
        .map(|s| s.to_string())
        .unwrap_or_default();
    let all = format!("{text}: {source}");
    let lower = all.to_lowercase();
    if lower.contains("kprobe/type") || lower.contains("uprobe/type") {
        (
            "unsupported",
            format!("this kernel has no kprobe PMU (CONFIG_KPROBES off): {all}"),
        )
    } else if lower.contains("permission denied") || lower.contains("operation not permitted") {
        ("permission-denied", all)
    } else if lower.contains("symbol") && lower.contains("not found")
        || lower.contains("unknown symbol")
        || lower.contains("no such file")
    {
        ("symbol-not-found", all)
    } else if lower.contains("not supported")
        || lower.contains("invalid argument")
        || lower.contains("no such device")
        || lower.contains("unknown tracepoint")
    {
        ("unsupported", all)
    } else {
        ("failed", all)
    }
}

pub fn status(name: impl Into<String>, status: &str, reason: impl Into<String>) -> ProbeStatus {
    ProbeStatus {
        name: name.into(),
        status: status.into(),
        reason: reason.into(),
    }
}

/// The status of a program error, as [`classify`] names it.
fn failed(label: String, e: &ProgramError) -> ProbeStatus {
    let (s, r) = classify(e);
    status(label, s, r)
}

/// Mounts tracefs at /sys/kernel/tracing if it is not there (tracepoint attach by name needs it).
pub fn ensure_tracefs() -> bool {
    if tracefs_path().is_some() {
        return true;
    }
    let mounted = nix::mount::mount(
        Some("nodev"),
        "/sys/kernel/tracing",
        Some("tracefs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    );
    mounted.is_ok() && tracefs_path().is_some()
}

/// Where tracefs is mounted, if it is.
pub fn tracefs_path() -> Option<&'static str> {
    ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"]
        .into_iter()
        .find(|p| Path::new(p).join("events").is_dir())
}

/// A program of the object by name, as its type.
pub fn typed_program<'a, P>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut P, ProgramError>
where
    &'a mut P: TryFrom<&'a mut Program, Error = ProgramError>,
{
    ebpf.program_mut(name)
        .ok_or(ProgramError::NotLoaded)?
        .try_into()
}

/// [`typed_program`], or the status that says why it is not there.
fn program<'a, P>(ebpf: &'a mut Ebpf, prog: &str, label: &str) -> Result<&'a mut P, ProbeStatus>
where
    &'a mut P: TryFrom<&'a mut Program, Error = ProgramError>,
{
    if ebpf.program(prog).is_none() {
        return Err(status(
            label,
            "failed",
            format!("program {prog} missing from the object"),
        ));
    }
    typed_program(ebpf, prog).map_err(|e| status(label, "failed", e.to_string()))
}

/// [`program`], loaded into the kernel with `load`.
fn loaded<'a, P>(
    ebpf: &'a mut Ebpf,
    prog: &str,
    label: &str,
    load: impl FnOnce(&mut P) -> Result<(), ProgramError>,
) -> Result<&'a mut P, ProbeStatus>
where
    &'a mut P: TryFrom<&'a mut Program, Error = ProgramError>,
{
    let p = program(ebpf, prog, label)?;
    load(p).map_err(|e| failed(label.to_string(), &e))?;
    Ok(p)
}

pub fn attach_tracepoint(ebpf: &mut Ebpf, prog: &str, cat: &str, name: &str) -> ProbeStatus {
    let label = format!("tracepoint:{cat}/{name}");
    let tp = match loaded(ebpf, prog, &label, TracePoint::load) {
        Ok(tp) => tp,
        Err(s) => return s,
    };
    let Some(tracefs) = tracefs_path() else {
        return status(
            label,
            "unsupported",
            "tracefs is not mounted and could not be mounted",
        );
    };
    if !Path::new(tracefs)
        .join("events")
        .join(cat)
        .join(name)
        .exists()
    {
        return status(
            label,
            "unsupported",
            format!("this kernel has no {cat}:{name} tracepoint"),
        );
    }
    match tp.attach(cat, name) {
        Ok(_) => status(label, "attached", "ok"),
        Err(e) => failed(label, &e),
    }
}

pub fn attach_uprobe(ebpf: &mut Ebpf, prog: &str, sym: &str, bin: &Path, pid: u32) -> ProbeStatus {
    let label = format!("uprobe:{sym}");
    let up = match loaded(ebpf, prog, &label, UProbe::load) {
        Ok(u) => u,
        Err(s) => return s,
    };
    let scope = match std::num::NonZeroU32::new(pid) {
        Some(p) => UProbeScope::OneProcess(p),
        None => UProbeScope::AllProcesses,
    };
    match up.attach(sym, bin, scope) {
        Ok(_) => status(label, "attached", format!("{}", bin.display())),
        Err(e) => {
            let (s, r) = classify(&e);
            status(label, s, format!("{} in {}: {r}", sym, bin.display()))
        }
    }
}

/// Which of `names` this kernel has as functions (available_filter_functions or kallsyms, each
/// file read once however many names are asked for: kallsyms is long, and slow to read in an
/// emulated guest).
pub fn kernel_functions<'a>(names: &[&'a str]) -> BTreeSet<&'a str> {
    let files = [
        "/sys/kernel/tracing/available_filter_functions",
        "/sys/kernel/debug/tracing/available_filter_functions",
        "/proc/kallsyms",
    ];
    let mut found = BTreeSet::new();
    for f in files {
        if found.len() == names.len() {
            break;
        }
        let Ok(text) = std::fs::read_to_string(f) else {
            continue;
        };
        // kallsyms lines are `address type name [module]`; the filter lists start with the name.
        let column = if f.ends_with("kallsyms") { 2 } else { 0 };
        for l in text.lines() {
            let Some(sym) = l.split_whitespace().nth(column) else {
                continue;
            };
            if let Some(n) = names.iter().find(|&&n| n == sym) {
                found.insert(*n);
            }
        }
    }
    found
}

/// Whether this kernel has the function `name` (see [`kernel_functions`]).
pub fn kernel_has_function(name: &str) -> bool {
    !kernel_functions(&[name]).is_empty()
}

/// Whether this kernel can attach kprobes at all: aya attaches them through the kprobe PMU,
/// which a kernel without CONFIG_KPROBES lacks.
pub fn kprobe_pmu() -> Result<(), String> {
    let pmu = "/sys/bus/event_source/devices/kprobe";
    if Path::new(pmu).join("type").exists() {
        Ok(())
    } else {
        Err(format!(
            "this kernel cannot attach kprobes: it has no kprobe PMU ({pmu} is missing; CONFIG_KPROBES off)"
        ))
    }
}

/// One kprobe or kretprobe program (`prog`, its kind fixed by the object) on `func`, reported
/// as `label`. `present`: whether the kernel has the function (a missing one is not tried).
pub fn attach_kprobe(
    ebpf: &mut Ebpf,
    prog: &str,
    func: &str,
    label: String,
    present: bool,
) -> ProbeStatus {
    let kp = match loaded(ebpf, prog, &label, KProbe::load) {
        Ok(kp) => kp,
        Err(s) => return s,
    };
    if !present {
        return status(
            label,
            "symbol-not-found",
            format!("this kernel has no {func}"),
        );
    }
    match kp.attach(func, 0) {
        Ok(_) => status(label, "attached", "ok"),
        Err(e) => failed(label, &e),
    }
}

/// One kprobe program (`prog`) on each of `funcs`; a function this kernel lacks is reported
/// as such without trying.
pub fn attach_kprobes(ebpf: &mut Ebpf, prog: &str, funcs: &[&str]) -> Vec<ProbeStatus> {
    let loaded = match program::<KProbe>(ebpf, prog, prog) {
        Ok(kp) => kp.load().map_err(|e| classify(&e)),
        Err(_) => Err(("failed", format!("program {prog} missing"))),
    };
    let present = kernel_functions(funcs);
    let mut out = Vec::new();
    for func in funcs {
        let label = format!("kprobe:{func}");
        if let Err((s, r)) = &loaded {
            out.push(status(label, s, r.clone()));
            continue;
        }
        if !present.contains(func) {
            out.push(status(label, "symbol-not-found", "this kernel has no such function (no CMDQV/iommufd support built in): kernel-side CMDQV probes skipped"));
            continue;
        }
        let Ok(kp) = program::<KProbe>(ebpf, prog, &label) else {
            continue;
        };
        out.push(match kp.attach(func, 0) {
            Ok(_) => status(label, "attached", "ok"),
            Err(e) => failed(label, &e),
        });
    }
    out
}

/// An fentry program on `func` (cheaper than a kprobe where the kernel allows BPF trampolines).
/// Refusals are data: "unsupported" or "symbol-not-found", with the reason.
pub fn attach_fentry(ebpf: &mut Ebpf, prog: &str, func: &str) -> ProbeStatus {
    let label = format!("fentry:{func}");
    let btf = match Btf::from_sys_fs() {
        Ok(b) => b,
        Err(e) => return status(label, "unsupported", format!("no kernel BTF: {e}")),
    };
    let p: &mut FEntry = match program(ebpf, prog, &label) {
        Ok(p) => p,
        Err(_) => return status(label, "failed", format!("program {prog} missing")),
    };
    let Err(e) = p.load(func, &btf).and_then(|()| p.attach().map(|_| ())) else {
        return status(label, "attached", "ok");
    };
    let text = format!("{e:?}");
    let (s, r) = classify(&e);
    if !kernel_has_function(func) || text.contains("NotFound") {
        status(
            label,
            "symbol-not-found",
            format!("{func} is not in this kernel (no iommufd built in): {r}"),
        )
    } else if s == "permission-denied" {
        status(
            label,
            "unsupported",
            format!(
                "the kernel refuses fentry programs even to root (lockdown or no BPF trampoline): {r}"
            ),
        )
    } else {
        status(label, s, r)
    }
}
