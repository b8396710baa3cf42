//! A traced QEMU session: the process (attached with `--pid`, or launched paused and resumed
//! once the probes are in), its tracer with the QEMU probe plan, and what the session learns
//! from the decoded events (the queue window, counts).
//!
//! - [`QemuSession::attach`] — a running QEMU (`cmdqv qemu --pid PID`).
//! - [`QemuSession::launch`] / [`QemuSession::launch_command`] — start QEMU paused (`-S` plus a
//!   private QMP socket), attach the probes to its pid, then let the guest run (`cont`), so not
//!   one command of the boot is missed (`cmdqv qemu -- qemu-system-aarch64 ...`).
//!
//! The probe set is chosen from the binary's symbols (`ebpf::qemu_plan`); each probe's attach
//! status is data ([`ProbeStatus`]).

use std::{
    os::fd::{AsRawFd, RawFd},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use cmdqv_core::{
    analysis::ProbeStatus,
    event::{Device, Event, MAIN_CMDQ, Payload},
    probe_abi,
    qemu::{ProbeChoice, ProbeSet, QueueWindow, decode_cmdq_base, smmu_reg},
};

use crate::{
    ebpf::{
        loader::{OwnsRingFd, Tracer},
        plan::TracerConfig,
        probe_log::ProbeLog,
        qemu_plan::{QemuOptions, QemuProbeConfig, set_window},
    },
    qemu::qmp::{qmp_cont, resolve_program, spawn_paused},
};

/// Decodes one ring-buffer record (the shared, length-checked decoder).
pub fn decode_record(rec: &[u8]) -> Result<Event, probe_abi::DecodeError> {
    probe_abi::decode(rec)
}

/// What a session has seen so far.
#[derive(Clone, Debug, Default)]
pub struct SessionCounts {
    pub commands: u64,
    pub mmio_writes: u64,
    pub mmio_reads: u64,
    pub prod_writes: u64,
    pub decode_errors: u64,
}

/// A traced QEMU: the probes, the process (when launched by us) and what was learnt.
pub struct QemuSession {
    tracer: Tracer,
    pid: u32,
    child: Option<Child>,
    exit: Option<ExitStatus>,
    choice: ProbeChoice,
    window: Option<QueueWindow>,
    counts: SessionCounts,
    qmp_path: Option<PathBuf>,
}

impl QemuSession {
    /// Attaches to a running QEMU (`cmdqv qemu --pid PID`). Its guest has most likely programmed
    /// CMDQ_BASE already, so commands are reported from the first 16-byte fetch on (index
    /// unknown until a CMDQ_BASE write is seen), and SMMU register writes from the second
    /// CMDQ_PROD write on (the first one names the SMMU's MemoryRegion in the kernel).
    pub fn attach(pid: u32, opts: &QemuOptions) -> anyhow::Result<Self> {
        let exe = PathBuf::from(format!("/proc/{pid}/exe"));
        let binary = std::fs::read_link(&exe)
            .ok()
            .filter(|p| p.exists())
            .unwrap_or(exe);
        let (mut q, _) = QemuProbeConfig::for_binary(&binary, opts)?;
        q.fetch_unwindowed = true;
        Self::with_config(pid, q, None)
    }

    /// Starts QEMU from a command line (`cmdv qemu -- qemu-system-aarch64 ...`), stdin closed,
    /// stdout/stderr inherited.
    pub fn launch(cmdline: &[String], opts: &QemuOptions) -> anyhow::Result<Self> {
        let Some((prog, args)) = cmdline.split_first() else {
            bail!("no QEMU command line given: `cmdqv qemu -- qemu-system-aarch64 ...`");
        };
        let mut c = Command::new(prog);
        c.args(args).stdin(Stdio::null());
        Self::launch_command(c, opts)
    }

    /// Starts a prepared [`Command`] (env, stdio set by the caller) with `-S` and a private QMP
    /// socket appended, attaches the probes to its pid, then resumes the guest.
    pub fn launch_command(mut cmd: Command, opts: &QemuOptions) -> anyhow::Result<Self> {
        let prog = PathBuf::from(cmd.get_program());
        let binary = resolve_program(&prog)
            .with_context(|| format!("cannot find QEMU binary {}", prog.display()))?;
        let (q, _) = QemuProbeConfig::for_binary(&binary, opts)?;
        let (mut child, qmp) = spawn_paused(&mut cmd)?;
        let pid = child.id();
        let mut s = match Self::with_config(pid, q, Some(qmp.clone())) {
            Ok(s) => s,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e);
            }
        };
        s.child = Some(child);
        // On failure the session is dropped, which kills and reaps the paused QEMU.
        s.resume()?;
        Ok(s)
    }

    fn with_config(
        pid: u32,
        q: QemuProbeConfig,
        qmp_path: Option<PathBuf>,
    ) -> anyhow::Result<Self> {
        let choice = q.choice.clone();
        if choice.set == ProbeSet::None {
            bail!(
                "nothing to probe in {}: {}",
                q.binary.display(),
                choice.reasons.join("; ")
            );
        }
        let window = q.window;
        let tracer = Tracer::load(&TracerConfig {
            pid,
            qemu: Some(q),
            ..Default::default()
        })?;
        Ok(Self {
            tracer,
            pid,
            child: None,
            exit: None,
            choice,
            window,
            counts: SessionCounts::default(),
            qmp_path,
        })
    }

    fn resume(&mut self) -> anyhow::Result<()> {
        let Some(path) = self.qmp_path.clone() else {
            return Ok(());
        };
        let r = match self.child.as_mut() {
            Some(c) => qmp_cont(&path, c),
            None => Ok(()),
        };
        let _ = std::fs::remove_file(&path);
        r
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }
    pub fn probes(&self) -> &[ProbeStatus] {
        self.tracer.probes()
    }
    pub fn choice(&self) -> &ProbeChoice {
        &self.choice
    }
    pub fn window(&self) -> Option<QueueWindow> {
        self.window
    }
    pub fn counts(&self) -> &SessionCounts {
        &self.counts
    }
    /// Ring-buffer records lost in the kernel.
    pub fn drops(&self) -> u64 {
        self.tracer.drops()
    }
    /// The probes' own diagnostics.
    pub fn probe_log(&self) -> &ProbeLog {
        self.tracer.probe_log()
    }
    pub fn tracer_mut(&mut self) -> &mut Tracer {
        &mut self.tracer
    }

    /// Waits up to `timeout` for records, decodes them into `f`, and learns from them (queue
    /// window). Returns the number of events delivered.
    pub fn poll(&mut self, timeout: Duration, f: impl FnMut(Event)) -> anyhow::Result<usize> {
        self.tracer.wait(timeout)?;
        self.take(f)
    }

    /// Like [`QemuSession::poll`] without waiting: what is in the ring buffer now.
    pub fn take(&mut self, mut f: impl FnMut(Event)) -> anyhow::Result<usize> {
        let mut events = Vec::new();
        let mut errors = 0;
        self.tracer.drain(|rec| match decode_record(rec) {
            Ok(e) => events.push(e),
            Err(_) => errors += 1,
        });
        self.counts.decode_errors += errors;
        let n = events.len();
        for e in events {
            self.learn(&e)?;
            f(e);
        }
        Ok(n)
    }

    fn learn(&mut self, e: &Event) -> anyhow::Result<()> {
        match e.payload {
            Payload::Command { queue, .. } if queue == MAIN_CMDQ => self.counts.commands += 1,
            Payload::Mmio {
                device: Device::Smmu,
                offset,
                value,
                size,
                write,
            } => {
                let off = offset & !smmu_reg::PAGE1_BIT;
                if !write {
                    self.counts.mmio_reads += 1;
                    return Ok(());
                }
                self.counts.mmio_writes += 1;
                if off == smmu_reg::CMDQ_PROD {
                    self.counts.prod_writes += 1;
                }
                if off == smmu_reg::CMDQ_BASE && size == 8 {
                    let w = decode_cmdq_base(value);
                    if w.log2size > 0 && self.window != Some(w) {
                        // The kernel already set it (no fetch lost); mirror it and make sure.
                        self.window = Some(w);
                        set_window(&mut self.tracer, w)?;
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The launched QEMU's exit status once it has exited (None while it runs, or if attached).
    pub fn try_exit(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        if self.exit.is_none() {
            if let Some(c) = self.child.as_mut() {
                self.exit = c.try_wait()?;
            } else if !Path::new(&format!("/proc/{}", self.pid)).exists() {
                bail!("process {} is gone", self.pid);
            }
        }
        Ok(self.exit)
    }

    /// Polls until the launched QEMU exits (or `timeout`, then kills it); drains what is left.
    /// Returns the exit status, or None after a kill.
    pub fn run_to_exit(
        &mut self,
        timeout: Duration,
        mut f: impl FnMut(Event),
    ) -> anyhow::Result<Option<ExitStatus>> {
        let t = Instant::now();
        loop {
            self.poll(Duration::from_millis(50), &mut f)?;
            if let Some(st) = self.try_exit()? {
                while self.poll(Duration::from_millis(0), &mut f)? > 0 {}
                return Ok(Some(st));
            }
            if t.elapsed() > timeout {
                self.kill();
                while self.poll(Duration::from_millis(0), &mut f)? > 0 {}
                return Ok(None);
            }
        }
    }

    /// Kills the launched QEMU (no effect on an attached one).
    pub fn kill(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            self.exit = c.wait().ok();
        }
    }
}

impl AsRawFd for QemuSession {
    fn as_raw_fd(&self) -> RawFd {
        self.tracer.ring_fd()
    }
}

// SAFETY: the fd is the ring buffer of the session's own Tracer, which lives as long as it does.
unsafe impl OwnsRingFd for QemuSession {}

impl Drop for QemuSession {
    fn drop(&mut self) {
        if self.exit.is_none() {
            self.kill();
        }
        if let Some(p) = &self.qmp_path {
            let _ = std::fs::remove_file(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_mmio_and_command_records() {
        let mut rec = vec![0u8; 48];
        rec[0..2].copy_from_slice(&4u16.to_le_bytes());
        rec[2..4].copy_from_slice(&cmdqv_ebpf_common::ABI_VERSION.to_le_bytes());
        rec[16..20].copy_from_slice(&77u32.to_le_bytes());
        rec[24..28].copy_from_slice(&MAIN_CMDQ.to_le_bytes());
        rec[28..32].copy_from_slice(&5u32.to_le_bytes());
        rec[32..40].copy_from_slice(&0x46u64.to_le_bytes());
        let e = decode_record(&rec).unwrap();
        assert_eq!(e.pid, 77);
        assert_eq!(
            e.payload,
            Payload::Command {
                queue: MAIN_CMDQ,
                index: 5,
                w0: 0x46,
                w1: 0
            }
        );
        rec[0..2].copy_from_slice(&2u16.to_le_bytes());
        rec[24..32].copy_from_slice(&0x98u64.to_le_bytes());
        rec[32..40].copy_from_slice(&3u64.to_le_bytes());
        rec[40] = 4;
        rec[41] = 1;
        rec[42] = 2;
        rec[43] = 1;
        match decode_record(&rec).unwrap().payload {
            Payload::Mmio {
                device,
                offset,
                value,
                size,
                write,
            } => {
                assert_eq!(
                    (device, offset, value, size, write),
                    (Device::Smmu, 0x98, 3, 4, true)
                );
            }
            p => panic!("{p:?}"),
        }
        assert!(decode_record(&rec[..40]).is_err());
    }
}
