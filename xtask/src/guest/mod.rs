//! `cargo xtask guest`: a real arm64 Linux guest whose arm-smmu-v3 driver issues commands into the
//! command queue of stock QEMU's emulated SMMUv3 — the project's external ground truth
//! (../shared/reference/real-qemu-guest.md).
//!
//! Everything comes from Debian's package registry without touching the system's apt state: a
//! private apt root per architecture and release under `~/.cache/cmdqv/guest` (arm64 for the
//! kernel and busybox, bookworm's or trixie's; this host's architecture for QEMU and the
//! libraries this machine lacks), `apt-get download`, `dpkg -x`.
//! Every step leaves a stamp, so a second run does no network work and takes well under a second
//! before the boot.
//!
//! ```text
//! cargo xtask guest [--qemu 7.2|10.0] [--kernel 6.12|6.1|16k] [--out DIR] [--timeout SECS]
//!                   [--disk-mib N]
//! cargo xtask guest --prepare-only      # one JSON line: qemu, env, kernel, initrd, disk, argv
//! cargo xtask guest --bench N           # N untraced + N traced boots (privileged test harness)
//! cargo xtask guest --inside [--kernel 6.12|16k] [--out DIR]   # cmdqv (aarch64) in the guest
//! ```

mod apt;
mod checks;
mod initramfs;
pub mod inside;
mod machine;
mod packages;
mod prepare;
mod qemu_log;
mod schema_check;
mod steps;
mod tar;
mod versions;

use std::{
    fs,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use clap::Args;

use self::{
    machine::{Guest, boot},
    prepare::{DISK_MIB, prepare, say},
    versions::{KernelVersion, QemuVersion},
};
use crate::{
    bootstrap::bootstrap,
    cross,
    sh::{cargo, target_dir},
    tasks::cmdqv_binary,
};

/// Options of `cargo xtask guest`.
#[derive(Debug, Args)]
pub struct GuestArgs {
    /// QEMU from Debian: 7.2 (bookworm) or 10.0 (bookworm-backports)
    #[arg(long, value_name = "7.2|10.0", default_value = "7.2", value_parser = QemuVersion::parse)]
    qemu: QemuVersion,
    /// Guest kernel from Debian: 6.12 (bookworm-backports), 6.1 (bookworm) or 16k (trixie's
    /// 6.12 built for 16 KiB pages)
    #[arg(long, value_name = "6.12|6.1|16k", default_value = "6.12", value_parser = KernelVersion::parse)]
    kernel: KernelVersion,
    /// Folder for the console log, QEMU's trace log and cmdqv's trace file
    /// [default: target/guest/<kernel>-qemu<qemu>]
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Stop the boot (kill QEMU) after this many seconds [default: 120, with --inside 600]
    #[arg(long, value_name = "SECS")]
    timeout: Option<u64>,
    /// Size of the zero-filled disk the guest reads whole, in MiB
    #[arg(long, value_name = "N", default_value_t = DISK_MIB)]
    disk_mib: u64,
    /// Only prepare; print one JSON line: qemu, ld_library_path, kernel, initrd, disk, argv
    #[arg(long)]
    prepare_only: bool,
    /// Boot without `cmdqv qemu` (QEMU's own trace log only)
    #[arg(long)]
    untraced: bool,
    /// N untraced and N traced boots, interleaved, through the privileged test harness
    #[arg(long, value_name = "N")]
    bench: Option<u32>,
    /// Run cmdqv (built for aarch64) as root inside the guest, the steps of
    /// xtask/src/guest/steps.rs: doctor, sim, sample beside a sim VMM, and the host view around
    /// a DMA workload; results, steps.json, uname.txt and QEMU's trace log in --out
    /// [default: target/guest/inside-<kernel>]
    #[arg(long, conflicts_with_all = ["prepare_only", "untraced", "bench"])]
    inside: bool,
}

/// Entry point of `cargo xtask guest`.
pub fn main(o: GuestArgs) -> Result<()> {
    if o.inside {
        let tc = bootstrap(false)?;
        cross::bootstrap_aarch64()?;
        let cmdqv = cross::build_aarch64(&tc)?;
        let run = inside::Inside {
            qemu: o.qemu,
            kernel: o.kernel,
            out: o.out.unwrap_or_else(|| inside::default_out(o.kernel)),
            timeout: Duration::from_secs(o.timeout.unwrap_or(inside::TIMEOUT_SECS)),
            disk_mib: o.disk_mib,
        };
        return inside::run(&run, &cmdqv);
    }
    let g = prepare(o.qemu, o.kernel, o.disk_mib, !o.prepare_only)?;
    if o.prepare_only {
        println!("{}", g.to_json());
        return Ok(());
    }
    if let Some(n) = o.bench {
        return bench(&g, n);
    }
    let out = o.out.unwrap_or_else(|| {
        target_dir().join(format!("guest/{}-qemu{}", o.kernel.label(), o.qemu.label()))
    });
    fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let trace = out.join("qemu-trace.log");
    let timeout = Duration::from_secs(o.timeout.unwrap_or(120));
    if o.untraced {
        untraced(&g, &out, &trace, timeout)
    } else {
        traced_by_cmdqv(&g, &out, &trace, timeout)
    }
}

fn count_lines(text: &str, f: impl Fn(&str) -> bool) -> u64 {
    text.lines().filter(|l| f(l)).count() as u64
}

/// QEMU's trace-log line for each command it takes off the SMMU's command queue.
fn is_opcode_line(l: &str) -> bool {
    l.contains("smmuv3_cmdq_opcode")
}

/// One boot with QEMU's own trace log only.
fn untraced(g: &Guest, out: &Path, trace: &Path, timeout: Duration) -> Result<()> {
    let t = Instant::now();
    let r = boot(g, out, Some(trace), &[], timeout)?;
    let console = out.join("console.log");
    let outcome = if r.completed {
        "guest ran to poweroff"
    } else {
        "guest did NOT complete"
    };
    let msg = format!(
        "{outcome} in {:.2}s; console {}",
        r.wall.as_secs_f64(),
        console.display()
    );
    say("boot", &msg, t);
    let text = fs::read_to_string(trace).unwrap_or_default();
    let opcodes = count_lines(&text, is_opcode_line);
    let prods = count_lines(&text, |l| l.starts_with("smmuv3_write_mmio addr: 0x98 "));
    println!(
        "[xtask] guest: QEMU trace log {} ({opcodes} commands, {prods} CMDQ_PROD writes)",
        trace.display()
    );
    if !r.completed {
        bail!(
            "the guest did not reach poweroff within {}s (see {})",
            timeout.as_secs(),
            console.display()
        );
    }
    Ok(())
}

/// Boots the guest under `cmdqv record … qemu`, so the cmdqv trace file and QEMU's own trace log
/// of the same run sit side by side, and compares their per-opcode command counts.
fn traced_by_cmdqv(g: &Guest, out: &Path, trace: &Path, timeout: Duration) -> Result<()> {
    let cmdqv = cmdqv_binary()?;
    let rec = out.join("boot.cmdqv");
    let _ = fs::remove_file(trace);
    let t = Instant::now();
    let summary = record_boot(&cmdqv, g, out, &rec, trace, timeout)?;
    fs::write(out.join("cmdqv-summary.json"), &summary)?;
    say(
        "boot",
        &format!("traced by cmdqv qemu; trace file {}", rec.display()),
        t,
    );
    let ours = smmu_commands(&summary);
    let theirs = count_lines(
        &fs::read_to_string(trace).unwrap_or_default(),
        is_opcode_line,
    );
    let verdict = if ours == theirs {
        " (equal)"
    } else {
        " (DIFFERENT)"
    };
    println!(
        "[xtask] guest: cmdqv decoded {ours} commands, QEMU's trace log {} has {theirs}{verdict}",
        trace.display(),
    );
    println!(
        "[xtask] guest: replay with `{} replay {}` or export with `… export --perfetto out.json {}`",
        cmdqv.display(),
        rec.display(),
        rec.display()
    );
    if ours != theirs {
        bail!("cmdqv and QEMU disagree on the number of commands");
    }
    Ok(())
}

/// Runs `cmdqv record -o REC qemu --json …  -- QEMU ARGV`; returns its final JSON summary line.
fn record_boot(
    cmdqv: &Path,
    g: &Guest,
    out: &Path,
    rec: &Path,
    trace: &Path,
    timeout: Duration,
) -> Result<String> {
    let o = std::process::Command::new(cmdqv)
        .env("LD_LIBRARY_PATH", &g.lib_path)
        .arg("record")
        .arg("-o")
        .arg(rec)
        .args(["qemu", "--json", "--duration"])
        .arg(format!("{}s", timeout.as_secs()))
        .arg("--console")
        .arg(out.join("console.log"))
        .arg("--")
        .arg(&g.qemu)
        .args(g.argv())
        .args(Guest::trace_argv(trace))
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("running cmdqv qemu")?;
    if !o.status.success() {
        bail!(
            "cmdqv qemu failed (console: {})",
            out.join("console.log").display()
        );
    }
    let text = String::from_utf8_lossy(&o.stdout);
    let summary = text.lines().rev().find(|l| l.starts_with('{'));
    Ok(summary.unwrap_or("{}").to_string())
}

/// cmdqv's count of commands on the SMMU's command queue, from its JSON summary.
fn smmu_commands(summary: &str) -> u64 {
    summary
        .split("\"name\":\"smmu-cmdq\"")
        .nth(1)
        .and_then(|r| r.split("\"commands\":").nth(1))
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0)
}

/// Untraced and traced boots, interleaved, through the privileged test harness (which owns the
/// eBPF loader), so both are measured by the same clock on the same machine.
fn bench(g: &Guest, n: u32) -> Result<()> {
    // The test harness embeds the eBPF object: bpf-linker and rust-src must be in place.
    let tc = bootstrap(false)?;
    let status = cargo(&tc.path)
        .args([
            "test",
            "--release",
            "-p",
            "cmdqv-tui",
            "--test",
            "qemu_guest",
        ])
        .args(["--", "--ignored", "--nocapture", "bench_tracing_cost"])
        .env("CMDQV_BENCH_RUNS", n.to_string())
        .env("CMDQV_BENCH_QEMU", g.qemu_version)
        .status()?;
    if !status.success() {
        bail!(
            "the benchmark failed (it needs root and the eBPF object: run `cargo xtask bootstrap`)"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_smmu_queue_command_count_from_the_summary() {
        let s = r#"{"queues":[{"name":"vcmdq0","commands":5},{"name":"smmu-cmdq","commands":1234,"batches":9}]}"#;
        assert_eq!(smmu_commands(s), 1234);
        assert_eq!(smmu_commands("{}"), 0);
    }
}
