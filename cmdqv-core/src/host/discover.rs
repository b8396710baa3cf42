//! Finding the VMMs on this host: every process that maps a VINTF page0 (an iommufd's, or the
//! simulated host's memfd), found by reading `/proc/*/maps`, and the name it goes by (the `vm`
//! label): QEMU's `-name` (or `guest=` in it), else its `-uuid`; the sim VMM's scenario
//! (`sim:<scenario>`); else the pid.

use std::{fs, io, path::Path};

use super::sampler::{Page0Mapping, parse_maps};

/// A process with a VINTF page0 mapped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FoundVmm {
    pub pid: u32,
    /// The `vm` label: see [`vm_name_from_cmdline`].
    pub name: String,
    pub mappings: Vec<Page0Mapping>,
}

/// Why a process could not be looked at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScanError {
    /// Its maps are not readable by this user (needs ptrace access: root or CAP_SYS_PTRACE).
    Permission,
    /// It went away meanwhile.
    Gone,
    Other(String),
}

impl ScanError {
    /// The `reason` label of the discovery error counter.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Permission => "permission",
            Self::Gone => "gone",
            Self::Other(_) => "other",
        }
    }

    pub fn from_io(e: &io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::PermissionDenied => Self::Permission,
            io::ErrorKind::NotFound => Self::Gone,
            // A process that exited between listing and reading: ESRCH from the kernel.
            _ if e.raw_os_error() == Some(libc::ESRCH) => Self::Gone,
            _ => Self::Other(e.to_string()),
        }
    }
}

impl std::fmt::Display for ScanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Permission => {
                f.write_str("permission denied (needs ptrace access: root or CAP_SYS_PTRACE)")
            }
            Self::Gone => f.write_str("the process went away"),
            Self::Other(e) => f.write_str(e),
        }
    }
}

/// The value after `flag` (as `-flag v` or `-flag=v`, with one or two dashes).
fn flag_value<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let bare = a.trim_start_matches('-');
        if !a.starts_with('-') {
            continue;
        }
        if bare == flag {
            return it.next().map(String::as_str);
        }
        if let Some(v) = bare.strip_prefix(flag).and_then(|r| r.strip_prefix('=')) {
            return Some(v);
        }
    }
    None
}

/// The name a VMM gives its VM on its command line: QEMU's `-name guest=NAME,…` or `-name
/// NAME[,opts]` (QEMU doubles a comma to escape it), else `-uuid UUID`; the sim VMM (`cmdqv
/// sim-vmm --scenario S`) its `--name`, else `sim:S`, as its target is named. None when it names none.
pub fn vm_from_argv(args: &[String]) -> Option<String> {
    if args.iter().any(|a| a == "sim-vmm") {
        let named = flag_value(args, "name").filter(|n| !n.is_empty());
        return named
            .map(str::to_string)
            .or_else(|| flag_value(args, "scenario").map(|s| format!("sim:{s}")));
    }
    let name = flag_value(args, "name").and_then(qemu_name);
    name.or_else(|| {
        flag_value(args, "uuid")
            .filter(|u| !u.is_empty())
            .map(str::to_string)
    })
}

/// The `vm` label of a VMM: [`vm_from_argv`], else its pid.
pub fn vm_name_from_cmdline(args: &[String], pid: u32) -> String {
    vm_from_argv(args).unwrap_or_else(|| pid.to_string())
}

/// QEMU's `-name` value: `guest=X,debug-threads=on`, or `X,process=…` (the first bare word).
fn qemu_name(v: &str) -> Option<String> {
    let parts = split_qemu_opts(v);
    let named = parts.iter().find_map(|p| p.strip_prefix("guest="));
    let bare = parts.first().filter(|p| !p.contains('='));
    named
        .or(bare.map(String::as_str))
        .filter(|n| !n.is_empty())
        .map(str::to_string)
}

/// QEMU's option list split at single commas (`,,` is a literal comma).
fn split_qemu_opts(v: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut chars = v.chars().peekable();
    while let Some(c) = chars.next() {
        if c == ',' && chars.peek() != Some(&',') {
            parts.push(String::new());
            continue;
        }
        if c == ',' {
            chars.next();
        }
        if let Some(p) = parts.last_mut() {
            p.push(c);
        }
    }
    parts
}

/// `/proc/PID/cmdline` split at its NULs.
pub fn read_cmdline(proc_root: &Path, pid: u32) -> io::Result<Vec<String>> {
    let raw = fs::read(proc_root.join(pid.to_string()).join("cmdline"))?;
    Ok(raw
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect())
}

/// The name of process `pid` (the pid when its command line cannot be read).
pub fn vm_name(pid: u32) -> String {
    vm_of_pid(pid).unwrap_or_else(|| pid.to_string())
}

/// The VM name process `pid` gives on its command line ([`vm_from_argv`]); None when it names
/// none or its command line cannot be read.
pub fn vm_of_pid(pid: u32) -> Option<String> {
    vm_from_argv(&read_cmdline(Path::new("/proc"), pid).ok()?)
}

/// Whether process `pid` still runs: it exists and is not a zombie (a VMM killed but not yet
/// reaped by its parent keeps its /proc entry, without an address space).
pub fn process_alive(proc_root: &Path, pid: u32) -> bool {
    let Ok(stat) = fs::read_to_string(proc_root.join(pid.to_string()).join("stat")) else {
        return false;
    };
    // The state follows the command name, which is in parentheses and may hold anything.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next());
    !matches!(state, Some('Z' | 'X' | 'x') | None)
}

/// Looks at one process: `Ok(None)` when it maps no page0.
pub fn inspect(proc_root: &Path, pid: u32) -> Result<Option<FoundVmm>, ScanError> {
    let maps = fs::read_to_string(proc_root.join(pid.to_string()).join("maps"))
        .map_err(|e| ScanError::from_io(&e))?;
    let mappings = parse_maps(&maps);
    if mappings.is_empty() {
        return Ok(None);
    }
    let args = read_cmdline(proc_root, pid).map_err(|e| ScanError::from_io(&e))?;
    Ok(Some(FoundVmm {
        pid,
        name: vm_name_from_cmdline(&args, pid),
        mappings,
    }))
}

/// What one pass over /proc found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scan {
    /// Processes with a page0 mapped, by pid.
    pub found: Vec<FoundVmm>,
    /// Processes that could not be looked at.
    pub errors: Vec<(u32, ScanError)>,
    /// Processes looked at that map no page0.
    pub plain: Vec<u32>,
    /// Every pid listed (looked at or not).
    pub listed: Vec<u32>,
}

/// Every process under `proc_root` (skipping `skip`, this process, and those `inspect_pid`
/// declines) that maps a VINTF page0, and the processes that could not be looked at. A process
/// that exits during the scan is neither.
pub fn scan(
    proc_root: &Path,
    skip: u32,
    mut inspect_pid: impl FnMut(u32) -> bool,
) -> io::Result<Scan> {
    let mut out = Scan::default();
    for e in fs::read_dir(proc_root)?.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        out.listed.push(pid);
        if pid == skip || !inspect_pid(pid) {
            continue;
        }
        match inspect(proc_root, pid) {
            Ok(Some(v)) => out.found.push(v),
            Ok(None) => out.plain.push(pid),
            Err(ScanError::Gone) => {}
            Err(err) => out.errors.push((pid, err)),
        }
    }
    out.found.sort_by_key(|v| v.pid);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split(' ').map(String::from).collect()
    }

    #[test]
    fn names_come_from_qemu_flags_the_sim_scenario_or_the_pid() {
        let n = |s: &str| vm_name_from_cmdline(&args(s), 42);
        assert_eq!(
            n("qemu-system-aarch64 -M virt -name guest=web1,debug-threads=on"),
            "web1"
        );
        assert_eq!(n("qemu-system-aarch64 -name db2 -uuid 1234"), "db2");
        assert_eq!(n("qemu-system-aarch64 -name db3,process=x"), "db3");
        assert_eq!(n("qemu-system-aarch64 --uuid=5c6e-77"), "5c6e-77");
        assert_eq!(
            n("/usr/bin/cmdqv sim-vmm --scenario hw-errors --rate 5"),
            "sim:hw-errors"
        );
        assert_eq!(n("qemu-system-aarch64 -M virt"), "42");
        assert_eq!(n("qemu-system-aarch64 -name"), "42");
    }

    #[test]
    fn io_errors_map_to_the_reasons_reported() {
        let e = |k| ScanError::from_io(&io::Error::from(k)).reason();
        assert_eq!(e(io::ErrorKind::PermissionDenied), "permission");
        assert_eq!(e(io::ErrorKind::NotFound), "gone");
        assert_eq!(
            ScanError::from_io(&io::Error::from_raw_os_error(libc::ESRCH)),
            ScanError::Gone
        );
        assert_eq!(e(io::ErrorKind::InvalidData), "other");
    }

    #[test]
    fn a_fake_proc_tree_yields_the_vmm_and_skips_the_rest() {
        let root = std::env::temp_dir().join(format!("cmdqv-proc-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let vmm = root.join("100");
        fs::create_dir_all(&vmm).unwrap();
        fs::write(
            vmm.join("maps"),
            "7f0000020000-7f0000030000 rw-s 00001000 00:01 456 /memfd:cmdqv-vintf-page0 (deleted)\n",
        )
        .unwrap();
        fs::write(vmm.join("cmdline"), b"cmdqv\0sim-vmm\0--scenario\0x\0").unwrap();
        let other = root.join("200");
        fs::create_dir_all(&other).unwrap();
        fs::write(
            other.join("maps"),
            "00400000-00452000 r-xp 00000000 08:02 1 /bin/sh\n",
        )
        .unwrap();
        fs::write(other.join("stat"), "200 (a) b) Z 1 200").unwrap();
        fs::write(vmm.join("stat"), "100 (cmdqv) S 1 100").unwrap();
        assert!(process_alive(&root, 100));
        assert!(!process_alive(&root, 200), "a zombie is gone");
        assert!(
            !process_alive(&root, 300),
            "so is a process without /proc entry"
        );
        fs::create_dir_all(root.join("300")).unwrap();
        fs::create_dir_all(root.join("self")).unwrap();
        let all = scan(&root, 1, |_| true).unwrap();
        let none = scan(&root, 1, |pid| pid != 100).unwrap();
        fs::remove_dir_all(&root).unwrap();
        let (found, errors) = (all.found, all.errors);
        assert!(none.found.is_empty(), "declined pids are not looked at");
        assert_eq!(none.plain, vec![200]);
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].pid, found[0].name.as_str()), (100, "sim:x"));
        assert_eq!(found[0].mappings[0].offset, 0x1000);
        assert!(
            errors.is_empty(),
            "a process without maps is gone: {errors:?}"
        );
    }
}
