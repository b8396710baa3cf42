//! `cargo xtask guest --inside`: cmdqv built for aarch64 runs as root inside the arm64 guest,
//! whose kernel (kprobes, BTF, a built-in arm-smmu-v3 driver) is then the host cmdqv traces.
//!
//! The initramfs carries the static aarch64 `cmdqv`, busybox, the virtio modules, the step list
//! of [`super::steps`] and inside-init.sh as /init. The guest writes its results as a tar to a
//! second raw virtio disk (serial [`OUT_SERIAL`]), which xtask reads back after poweroff: the
//! serial console, which the kernel writes to as well, carries only progress lines. QEMU's own
//! `smmuv3_cmdq_*` trace log of the same run lands beside the results.

use std::{
    env, fs,
    net::{TcpStream, ToSocketAddrs as _},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use super::{
    checks::{
        Check, SAMPLED_LVCMDQS, doctor_kernel_probes, host_matches_qemu, page_size, sample_page0,
        sim_ebpf,
    },
    initramfs::{ExtraFile, GUEST_MODULES, module_names, resolve_modules, write_initramfs},
    machine::{DONE_MARKER, Guest, boot},
    packages::config_facts,
    prepare::{DISK_MIB, cached, prepare, say},
    schema_check::matches_schema,
    steps::{STEPS, parse_results, results_json, steps_file},
    tar::read_tar,
    versions::{KernelVersion, QemuVersion},
};
use crate::{
    bootstrap::Toolchain,
    cross,
    sh::{target_dir, which},
};

/// The serial of the raw disk the guest writes its results to.
pub const OUT_SERIAL: &str = "cmdqv-out";

/// Default QEMU timeout of an `--inside` run (TCG on a loaded 2-core machine is slow).
pub const TIMEOUT_SECS: u64 = 600;

/// Size of that disk (sparse; the results take well under 1 MiB).
const OUT_DISK_MIB: u64 = 16;

/// The /init template (its @…@ fields are filled in by [`init_script`]).
const INIT_TEMPLATE: &str = include_str!("inside-init.sh");

/// Files of a run besides the steps' outputs and their `.stderr`, removed before the next.
const RUN_FILES: &[&str] = &[
    "uname.txt",
    "steps.txt",
    "steps.json",
    "dmesg.txt",
    "kernel-config.txt",
    "console.log",
    "qemu-trace.log",
];

/// One `--inside` run.
pub struct Inside {
    pub qemu: QemuVersion,
    pub kernel: KernelVersion,
    pub out: PathBuf,
    pub timeout: Duration,
    pub disk_mib: u64,
}

/// The default results folder of a kernel.
pub fn default_out(kernel: KernelVersion) -> PathBuf {
    target_dir().join(format!("guest/inside-{}", kernel.label()))
}

/// Boots the guest with `cmdqv` (an aarch64 build) inside, brings the results out into
/// `o.out` and checks them; fails when a step failed, a JSON file does not parse, or a check
/// does not hold.
pub fn run(o: &Inside, cmdqv: &Path) -> Result<()> {
    let t_all = Instant::now();
    let mut g = prepare(o.qemu, o.kernel, o.disk_mib, true)?;
    fs::create_dir_all(&o.out).with_context(|| format!("creating {}", o.out.display()))?;
    clear_previous(&o.out)?;
    let work = target_dir().join(format!("guest/inside-work-{}", o.kernel.label()));
    fs::create_dir_all(&work)?;
    let t = Instant::now();
    g.initrd = work.join("initramfs.cpio");
    write_inside_initramfs(&g, cmdqv, &g.initrd)?;
    let disk = work.join("out.img");
    let _ = fs::remove_file(&disk);
    fs::File::create(&disk)?.set_len(OUT_DISK_MIB << 20)?;
    let msg = format!("with {} ({} steps)", cmdqv.display(), STEPS.len());
    say("inside: initramfs", &msg, t);
    let facts = config_facts(&fs::read_to_string(&g.kernel_config).unwrap_or_default());
    fs::write(o.out.join("kernel-config.txt"), facts.join("\n") + "\n")?;

    let t = Instant::now();
    let trace = o.out.join("qemu-trace.log");
    let r = boot(&g, &o.out, Some(&trace), &out_disk_args(&disk), o.timeout)?;
    let console = o.out.join("console.log");
    if !r.completed {
        bail!(
            "the guest did not reach {DONE_MARKER} within {}s (console: {})",
            o.timeout.as_secs(),
            console.display()
        );
    }
    let msg = format!(
        "{} to poweroff; console {}",
        g.kernel_version,
        console.display()
    );
    say("inside: boot", &msg, t);
    collect(&disk, &o.out, &trace)?;
    let checks = checks(&o.out, o.kernel)?;
    let msg = format!("results in {}", o.out.display());
    say("inside: whole run", &msg, t_all);
    verdict(&checks)
}

/// The kernels `cargo xtask test` runs the in-guest checks under: 4 KiB and 16 KiB pages.
const TEST_KERNELS: [KernelVersion; 2] = [KernelVersion::V6_12, KernelVersion::V6_12_16k];

/// The QEMU they run on.
const TEST_QEMU: QemuVersion = QemuVersion::V7_2;

/// The in-guest part of `cargo xtask test`: the aarch64 build, then an `--inside` run under each
/// of [`TEST_KERNELS`]. Skipped, with one line saying why, where the guest cannot be had.
pub fn test_in_guests(tc: &Toolchain) -> Result<()> {
    let reachable = || debian_reachable(Duration::from_secs(5));
    let prepared = cached(TEST_QEMU, &TEST_KERNELS) && cross::aarch64_tools_present();
    let has_apt = which("apt-get").is_some() && which("dpkg").is_some();
    if let Some(why) = skip_reason(env::consts::ARCH, has_apt, prepared, reachable) {
        println!("[xtask] test: in-guest checks skipped: {why}");
        return Ok(());
    }
    cross::bootstrap_aarch64()?;
    let cmdqv = cross::build_aarch64(tc)?;
    let mut times = Vec::new();
    for kernel in TEST_KERNELS {
        let t = Instant::now();
        let o = Inside {
            qemu: TEST_QEMU,
            kernel,
            out: default_out(kernel),
            timeout: Duration::from_secs(TIMEOUT_SECS),
            disk_mib: DISK_MIB,
        };
        run(&o, &cmdqv).with_context(|| format!("in-guest checks, kernel {}", kernel.label()))?;
        times.push(format!(
            "{} {:.1}s",
            kernel.label(),
            t.elapsed().as_secs_f64()
        ));
    }
    println!("[xtask] test: in-guest checks ok ({})", times.join(", "));
    Ok(())
}

/// Why the in-guest checks cannot run here, if they cannot: a host other than x86_64 or
/// aarch64, no apt, or Debian's archive out of reach while something is still to be fetched.
fn skip_reason(
    arch: &str,
    has_apt: bool,
    prepared: bool,
    reachable: impl FnOnce() -> bool,
) -> Option<String> {
    if arch != "x86_64" && arch != "aarch64" {
        return Some(format!("this host is {arch}, not x86_64 or aarch64"));
    }
    if !has_apt {
        return Some("no apt-get/dpkg here: the guest and cross tools come from Debian".into());
    }
    if !prepared && !reachable() {
        return Some(
            "Debian's archive (deb.debian.org) is unreachable and the cache is cold".into(),
        );
    }
    None
}

/// Whether deb.debian.org answers on port 80 within `timeout`.
fn debian_reachable(timeout: Duration) -> bool {
    let Ok(addrs) = ("deb.debian.org", 80).to_socket_addrs() else {
        return false;
    };
    addrs
        .into_iter()
        .any(|a| TcpStream::connect_timeout(&a, timeout).is_ok())
}

/// Removes the files an earlier run left in `out`.
fn clear_previous(out: &Path) -> Result<()> {
    let mut names: Vec<String> = RUN_FILES.iter().map(|s| s.to_string()).collect();
    for s in STEPS {
        names.push(s.out.into());
        names.push(format!("{}.stderr", s.name));
    }
    for n in names {
        let p = out.join(n);
        if p.exists() {
            fs::remove_file(&p).with_context(|| format!("removing {}", p.display()))?;
        }
    }
    Ok(())
}

/// /init with the module list, the output disk's serial and the done marker filled in.
fn init_script(modules: &[String]) -> String {
    INIT_TEMPLATE
        .replace("@MODULES@", &modules.join(" "))
        .replace("@OUT_SERIAL@", OUT_SERIAL)
        .replace("@DONE@", DONE_MARKER)
}

fn write_inside_initramfs(g: &Guest, cmdqv: &Path, path: &Path) -> Result<()> {
    let mods = resolve_modules(&g.modules, GUEST_MODULES)?;
    let bin = fs::read(cmdqv).with_context(|| format!("reading {}", cmdqv.display()))?;
    let steps = steps_file(STEPS);
    let extra: [ExtraFile; 2] = [
        ("bin/cmdqv", 0o755, &bin),
        ("etc/cmdqv-steps", 0o644, steps.as_bytes()),
    ];
    let init = init_script(&module_names(&mods));
    write_initramfs(path, &g.busybox, &mods, &init, &extra)
}

/// The output disk: raw, behind the SMMU like the others, found by its serial in the guest.
fn out_disk_args(disk: &Path) -> Vec<String> {
    vec![
        "-drive".into(),
        format!("file={},format=raw,if=none,id=dout", disk.display()),
        "-device".into(),
        format!(
            "virtio-blk-pci,drive=dout,disable-legacy=on,iommu_platform=on,serial={OUT_SERIAL}"
        ),
    ]
}

/// Extracts the guest's archive into `out`, writes steps.json, checks that every JSON file
/// parses and reports each step and QEMU's command count.
fn collect(disk: &Path, out: &Path, trace: &Path) -> Result<()> {
    let t = Instant::now();
    let files = read_tar(&fs::read(disk)?).context("reading the guest's results disk")?;
    if files.is_empty() {
        bail!(
            "the guest wrote no results (see {})",
            out.join("console.log").display()
        );
    }
    for (name, data) in &files {
        fs::write(out.join(name), data)?;
    }
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    say("inside: results", &names.join(" "), t);
    let text = fs::read_to_string(out.join("steps.txt")).context("the guest wrote no steps.txt")?;
    let results = parse_results(&text)?;
    let json = serde_json::to_string_pretty(&results_json(&results))?;
    fs::write(out.join("steps.json"), json + "\n")?;
    for r in &results {
        let exit = r.exit.map_or("-".into(), |e| e.to_string());
        println!(
            "[xtask] guest: inside: step {}: {} (exit {exit}, {:.1}s) {}",
            r.name, r.status, r.secs, r.note
        );
    }
    for (name, data) in files.iter().filter(|(n, _)| n.ends_with(".json")) {
        serde_json::from_slice::<serde_json::Value>(data)
            .with_context(|| format!("{name} from the guest is not one JSON document"))?;
    }
    let consumed = fs::read_to_string(trace)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("smmuv3_cmdq_opcode"))
        .count();
    println!("[xtask] guest: inside: QEMU's trace log: {consumed} commands consumed");
    let failed: Vec<&str> = results
        .iter()
        .filter(|r| r.status == "failed")
        .map(|r| r.name.as_str())
        .collect();
    if !failed.is_empty() {
        bail!(
            "steps failed in the guest: {} (their .stderr in {})",
            failed.join(", "),
            out.display()
        );
    }
    Ok(())
}

/// The assertions on the results in `out`; the host check whenever the host step ran.
fn checks(out: &Path, kernel: KernelVersion) -> Result<Vec<Check>> {
    let read = |n: &str| fs::read_to_string(out.join(n)).with_context(|| format!("{n} missing"));
    let mut checks = vec![
        doctor_kernel_probes(&read("doctor.json")?),
        sim_ebpf(&read("sim.json")?),
        sample_page0(&read("sample.jsonl")?, SAMPLED_LVCMDQS),
        page_size(&read("uname.txt")?, kernel.page_size()),
    ];
    for (name, file, schema) in [
        (
            "doctor.json schema",
            "doctor.json",
            "cmdqv-doctor.schema.json",
        ),
        ("sim.json schema", "sim.json", "cmdqv-summary.schema.json"),
        (
            "sample.jsonl schema",
            "sample.jsonl",
            "cmdqv-sample.schema.json",
        ),
    ] {
        checks.push(matches_schema(name, schema, &read(file)?));
    }
    let steps: serde_json::Value = serde_json::from_str(&read("steps.json")?)?;
    let host_ran = steps
        .as_array()
        .into_iter()
        .flatten()
        .any(|s| s["name"] == "host" && s["status"] != "skipped");
    if host_ran {
        let host = read("host.json").unwrap_or_default();
        checks.push(matches_schema(
            "host.json schema",
            "cmdqv-summary.schema.json",
            &host,
        ));
        checks.push(host_matches_qemu(&host, &read("qemu-trace.log")?));
    }
    Ok(checks)
}

/// Prints every check; fails unless all hold.
fn verdict(checks: &[Check]) -> Result<()> {
    for c in checks {
        let ok = if c.ok { "ok" } else { "FAILED" };
        println!("[xtask] guest: check {}: {ok}: {}", c.name, c.detail);
    }
    let failed: Vec<&str> = checks.iter().filter(|c| !c.ok).map(|c| c.name).collect();
    if !failed.is_empty() {
        bail!("in-guest checks failed: {}", failed.join("; "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_init_script_has_every_field_filled_in() {
        let s = init_script(&["virtio_blk".into(), "virtio_rng".into()]);
        assert!(s.starts_with("#!/bin/busybox sh\n"));
        assert!(s.contains("for m in virtio_blk virtio_rng; do insmod"));
        assert!(s.contains(&format!("= {OUT_SERIAL} ]")));
        assert!(s.contains(&format!("echo {DONE_MARKER}\npoweroff -f")));
        // Only the step placeholders, which /init itself replaces, are left.
        let fields: Vec<&str> = s
            .split('@')
            .skip(1)
            .filter(|w| !w.is_empty() && w.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
            .collect();
        assert_eq!(
            fields,
            [
                "READY", "READY", "STOP", "STOP", "VMM_PID", "VMM_PID", "READY", "STOP"
            ]
        );
    }

    #[test]
    fn skips_for_other_hosts_no_apt_or_no_archive_with_a_cold_cache() {
        let never = || panic!("reachability is only probed when something is to be fetched");
        assert!(skip_reason("x86_64", true, true, never).is_none());
        assert!(skip_reason("aarch64", true, false, || true).is_none());
        let r = skip_reason("riscv64", true, true, never).unwrap();
        assert!(r.contains("riscv64"), "{r}");
        assert!(
            skip_reason("x86_64", false, true, never)
                .unwrap()
                .contains("apt-get")
        );
        let r = skip_reason("x86_64", true, false, || false).unwrap();
        assert!(r.contains("unreachable"), "{r}");
    }

    #[test]
    fn the_output_disk_sits_behind_the_smmu_with_its_serial() {
        let a = out_disk_args(Path::new("/w/out.img")).join(" ");
        assert!(a.contains("file=/w/out.img,format=raw"));
        assert!(a.contains("iommu_platform=on,serial=cmdqv-out"));
    }
}
