//! `cmdqv qemu`: trace a stock or CMDQV-capable QEMU with uprobes.
//!
//! - [`QemuSession::attach`] — a running QEMU (`cmdqv qemu --pid PID`).
//! - [`QemuSession::launch`] / [`QemuSession::launch_command`] — start QEMU paused (`-S` plus a
//!   private QMP socket), attach the probes to its pid, then let the guest run (`cont`), so not
//!   one command of the boot is missed (`cmdqv qemu -- qemu-system-aarch64 ...`).
//!
//! The probe set is chosen from the binary's symbols ([`cmdqv_core::qemu::choose_probe_set`]);
//! each probe's attach status is data ([`ProbeStatus`]). On a stripped Debian QEMU the SMMU is
//! found in the kernel: the first CMDQ_BASE-shaped write names its MemoryRegion and the queue
//! window (see cmdqv-ebpf/probes/src/qemu.rs); [`QemuSession`] mirrors what it learns from the
//! decoded events, and [`set_window`] / [`set_region`] let a caller set both by hand.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use aya::{Ebpf, maps::Array};
use cmdqv_core::{
    analysis::ProbeStatus,
    event::{Device, Event, MAIN_CMDQ, Payload},
    probe_abi,
    qemu::{
        BinarySymbols, ProbeChoice, ProbeKind, ProbeSet, QueueWindow, choose_probe_set,
        decode_cmdq_base, discover_symbols, smmu_reg,
    },
};
use cmdqv_ebpf_common::{
    FilterConfig, QEMU_FETCH_UNWINDOWED, QEMU_LEARN_FROM_FETCH, QEMU_LEARN_REGION,
};

use crate::ebpf::{Tracer, TracerConfig};

/// What to attach to a QEMU binary (part of [`TracerConfig`]).
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

/// Options of a session.
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
        (if self.learn_region {
            QEMU_LEARN_REGION
        } else {
            0
        }) | (if self.fetch_unwindowed {
            QEMU_FETCH_UNWINDOWED | QEMU_LEARN_FROM_FETCH
        } else {
            0
        })
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

/// Attaches every planned probe; called by [`Tracer::load`].
pub fn attach_probes(ebpf: &mut Ebpf, cfg: &QemuProbeConfig, pid: u32) -> Vec<ProbeStatus> {
    let mut out = Vec::new();
    if cfg.choice.probes.is_empty() {
        out.push(ProbeStatus {
            name: format!("qemu:{}", cfg.binary.display()),
            status: "symbol-not-found".into(),
            reason: cfg.choice.reasons.join("; "),
        });
        return out;
    }
    for p in &cfg.choice.probes {
        let mut s = crate::ebpf::attach_uprobe(ebpf, &p.program, &p.symbol, &cfg.binary, pid);
        if p.kind == ProbeKind::Return {
            s.name = format!("uretprobe:{}", p.symbol);
        }
        out.push(s);
    }
    out
}

/// The convenience the brief names: load and attach the QEMU probe set for `pid`.
pub fn attach_qemu(pid: u32, binary: &Path) -> anyhow::Result<(Tracer, Vec<ProbeStatus>)> {
    let (mut q, _) = QemuProbeConfig::for_binary(binary, &QemuOptions::default())?;
    q.fetch_unwindowed = true;
    let tracer = Tracer::load(&TracerConfig {
        pid,
        qemu: Some(q),
        ..Default::default()
    })?;
    let probes = tracer.probes().to_vec();
    Ok((tracer, probes))
}

fn filter_map(tracer: &mut Tracer) -> anyhow::Result<Array<&mut aya::maps::MapData, FilterConfig>> {
    Ok(Array::try_from(
        tracer
            .ebpf_mut()
            .map_mut("FILTER")
            .context("FILTER map missing")?,
    )?)
}

/// The in-kernel filter as it is now (including what the kernel learnt).
pub fn read_filter(tracer: &mut Tracer) -> anyhow::Result<FilterConfig> {
    Ok(filter_map(tracer)?.get(&0, 0)?)
}

/// Sets the command-queue window the fetch probe accepts.
pub fn set_window(tracer: &mut Tracer, w: QueueWindow) -> anyhow::Result<()> {
    let mut m = filter_map(tracer)?;
    let mut f = m.get(&0, 0)?;
    f.q_lo = w.base;
    f.q_hi = w.end();
    m.set(0, f, 0)?;
    Ok(())
}

/// Sets the SMMU's MemoryRegion pointer the MMIO probes keep.
pub fn set_region(tracer: &mut Tracer, region_ptr: u64) -> anyhow::Result<()> {
    let mut m = filter_map(tracer)?;
    let mut f = m.get(&0, 0)?;
    f.region_ptr = region_ptr;
    m.set(0, f, 0)?;
    Ok(())
}

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
        if let Err(e) = s.resume() {
            if let Some(c) = s.child.as_mut() {
                let _ = c.kill();
                let _ = c.wait();
            }
            return Err(e);
        }
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
    pub fn tracer_mut(&mut self) -> &mut Tracer {
        &mut self.tracer
    }

    /// Waits up to `timeout` for records, decodes them into `f`, and learns from them (queue
    /// window). Returns the number of events delivered.
    pub fn poll(&mut self, timeout: Duration, mut f: impl FnMut(Event)) -> anyhow::Result<usize> {
        let mut events = Vec::new();
        let mut errors = 0;
        self.tracer.poll(timeout, |rec| match decode_record(rec) {
            Ok(e) => events.push(e),
            Err(_) => errors += 1,
        })?;
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

/// Spawns `cmd` with `-S` (guest paused) and a private QMP socket appended; returns the child
/// and the socket path for [`qmp_cont`].
pub fn spawn_paused(cmd: &mut Command) -> anyhow::Result<(Child, PathBuf)> {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let qmp = std::env::temp_dir().join(format!(
        "cmdqv-qmp-{}-{}.sock",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let _ = std::fs::remove_file(&qmp);
    cmd.arg("-S")
        .arg("-qmp")
        .arg(format!("unix:{},server=on,wait=off", qmp.display()));
    let child = cmd
        .spawn()
        .with_context(|| format!("starting {}", cmd.get_program().to_string_lossy()))?;
    Ok((child, qmp))
}

/// Lets a QEMU started by [`spawn_paused`] run: `qmp_capabilities`, then `cont` (waits up to
/// 10 s for QEMU to create the socket).
pub fn qmp_cont(path: &Path, child: &mut Child) -> anyhow::Result<()> {
    let t = Instant::now();
    let stream = loop {
        match UnixStream::connect(path) {
            Ok(s) => break s,
            Err(e) => {
                if let Some(st) = child.try_wait()? {
                    bail!("QEMU exited with {st} before it could be resumed");
                }
                if t.elapsed() > Duration::from_secs(10) {
                    bail!("QEMU's QMP socket {} did not appear: {e}", path.display());
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    };
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut w = stream.try_clone()?;
    let mut r = BufReader::new(stream);
    let mut line = String::new();
    r.read_line(&mut line).context("reading QMP greeting")?;
    for cmd in ["qmp_capabilities", "cont"] {
        writeln!(w, "{{\"execute\":\"{cmd}\"}}")?;
        loop {
            line.clear();
            if r.read_line(&mut line)? == 0 {
                bail!("QMP closed during {cmd}");
            }
            if line.contains("\"return\"") {
                break;
            }
            if line.contains("\"error\"") {
                bail!("QMP {cmd} failed: {}", line.trim());
            }
        }
    }
    Ok(())
}

/// A program name as `Command` would run it: a path as is, a bare name from PATH.
fn resolve_program(p: &Path) -> Option<PathBuf> {
    if p.components().count() > 1 {
        return p.exists().then(|| p.to_path_buf());
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(p))
        .find(|c| c.is_file())
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
