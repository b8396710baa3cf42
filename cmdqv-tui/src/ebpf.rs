//! The eBPF loader: embeds the object that build.rs built, loads it, attaches every probe
//! independently and records each one's status as data (attached, symbol not found, hook not
//! supported by this kernel, permission denied). Nothing here is fatal except "the object does
//! not load at all"; a probe that cannot attach is reported, never a crash.
//!
//! Links are owned by the `aya::Ebpf` value: dropping a [`Tracer`] detaches everything, which is
//! what happens on exit, on Ctrl-C (`live::stop_on_signals` turns SIGINT/SIGTERM into a normal
//! return of the collection loop, which drops the feed) and on panic (unwinding drops). Nothing
//! is pinned, so even a killed process leaves no probe behind: the kernel closes its fds.
//!
//! The ring buffer is read either synchronously ([`Tracer::poll`]) or through tokio
//! ([`Tracer::into_async`] → [`AsyncTracer::next_batch`]). mmap/munmap records are filtered to
//! iommufd fds in userspace ([`crate::iommufd_fds`]). The programs use no aya-log: nothing from
//! the kernel side ever reaches the terminal.

use std::{
    io,
    os::fd::{AsRawFd, RawFd},
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context as _, bail};
use aya::{
    Btf, Ebpf, EbpfLoader,
    maps::{Array, MapData, PerCpuArray, RingBuf},
    programs::{
        BtfTracePoint, FEntry, KProbe, ProgramError, RawTracePoint, TracePoint, UProbe,
        uprobe::UProbeScope,
    },
};
use cmdqv_core::analysis::ProbeStatus;

use crate::iommufd_fds::IommufdFds;
use cmdqv_ebpf_common::{DROP_RINGBUF_FULL, FilterConfig};

/// The eBPF object built by build.rs (empty when built with AYA_BUILD_SKIP=1).
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/cmdqv-ebpf"));

/// Tracepoints of the syscall probes: (program, category, name).
pub const SYSCALL_TRACEPOINTS: &[(&str, &str, &str)] = &[
    ("cmdqv_ioctl_enter", "syscalls", "sys_enter_ioctl"),
    ("cmdqv_ioctl_exit", "syscalls", "sys_exit_ioctl"),
    ("cmdqv_mmap_enter", "syscalls", "sys_enter_mmap"),
    ("cmdqv_mmap_exit", "syscalls", "sys_exit_mmap"),
    ("cmdqv_munmap_enter", "syscalls", "sys_enter_munmap"),
];

/// The generic `iommu:*` tracepoints: (program, category, name). map/unmap report only for a
/// chosen pid (they also fire for every DMA-API mapping on the host); faults and attaches always.
pub const IOMMU_TRACEPOINTS: &[(&str, &str, &str)] = &[
    ("cmdqv_iommu_map", "iommu", "map"),
    ("cmdqv_iommu_unmap", "iommu", "unmap"),
    ("cmdqv_iommu_fault", "iommu", "io_page_fault"),
    ("cmdqv_iommu_attach", "iommu", "attach_device_to_domain"),
];

/// The sim VMM's exported trace points: (program, symbol).
pub const SIM_VMM_UPROBES: &[(&str, &str)] = &[
    ("cmdqv_vmm_mmio", "cmdqv_vmm_mmio"),
    ("cmdqv_vmm_command", "cmdqv_vmm_command"),
    ("cmdqv_vmm_queue", "cmdqv_vmm_queue"),
];

/// Kernel functions worth a kprobe on a CMDQV host (../shared/reference/cmdqv-hw.md §14).
pub const KERNEL_FUNCTIONS: &[&str] = &[
    "tegra241_cmdqv_isr",
    "tegra241_vintf0_handle_error",
    "tegra241_vintf_user_handle_error",
    "tegra241_vcmdq_hw_init",
    "tegra241_vcmdq_hw_deinit",
    "tegra241_vintf_hw_init",
    "tegra241_vintf_hw_deinit",
    "tegra241_cmdqv_hw_reset",
    "tegra241_vintf_alloc_lvcmdq_user",
    "tegra241_vintf_destroy_lvcmdq_user",
    "tegra241_cmdqv_init_vintf_user",
    "tegra241_cmdqv_destroy_vintf_user",
    "tegra241_vintf_init_vsid",
    "tegra241_vintf_destroy_vsid",
    "iommufd_viommu_alloc_ioctl",
    "iommufd_hw_queue_alloc_ioctl",
    "iommufd_hw_queue_destroy",
    "iommufd_hwpt_invalidate",
    "iommufd_veventq_alloc",
    "iommufd_viommu_report_event",
    "_iommufd_alloc_mmap",
    "_iommufd_destroy_mmap",
    "arm_vsmmu_cache_invalidate",
];

/// What to attach.
#[derive(Clone, Debug, Default)]
pub struct TracerConfig {
    /// Only report this process (0 = all).
    pub pid: u32,
    /// Report every ioctl, not only iommufd ones.
    pub all_ioctls: bool,
    /// Attach the syscall tracepoints (ioctl, mmap, munmap).
    pub syscalls: bool,
    /// Deliver mmap/munmap records of every fd, not only iommufd ones (tests and debugging).
    /// By default [`crate::iommufd_fds::IommufdFds`] keeps only iommufd mappings.
    pub all_mmaps: bool,
    /// Attach `kvm:kvm_mmio`, filtered to `[gpa_lo, gpa_hi)` when `gpa_hi != 0`.
    pub kvm_mmio: bool,
    pub gpa_lo: u64,
    pub gpa_hi: u64,
    /// Attach the `iommu:*` tracepoints (reported unsupported where the kernel has none).
    pub iommu: bool,
    /// Attach the sim VMM uprobes to this binary (only in `pid` if non-zero).
    pub sim_vmm: Option<PathBuf>,
    /// Try kprobes on the CMDQV/iommufd kernel functions.
    pub kernel: bool,
    /// 0: the kernel wakes the reader on every record. N: only once N bytes wait; the reader
    /// then also drains on a timer ([`Tracer::poll`]'s timeout, [`WAKEUP_TICK`] in
    /// [`AsyncTracer`]). Per-record wakeups cost more than the probe itself in a VM (BENCHMARKS.md).
    pub wakeup_bytes: u64,
    /// Attach the QEMU probe set (see [`crate::qemu_target`]).
    pub qemu: Option<crate::qemu_target::QemuProbeConfig>,
}

/// A good [`TracerConfig::wakeup_bytes`] for a live view: ~1100 command records, 1/64 of the ring.
pub const BATCHED_WAKEUP_BYTES: u64 = 64 << 10;

/// How often an [`AsyncTracer`] with batched wakeups drains without being woken.
pub const WAKEUP_TICK: Duration = Duration::from_millis(20);

/// A loaded, attached set of probes and the ring buffer they write to.
pub struct Tracer {
    // Field order matters: the ring buffer map must drop before the Ebpf that owns the links.
    ring: RingBuf<MapData>,
    drops: PerCpuArray<MapData, u64>,
    ebpf: Ebpf,
    probes: Vec<ProbeStatus>,
    /// Userspace filter of mmap/munmap records (None with `all_mmaps`).
    fds: Option<IommufdFds>,
    /// The kernel does not wake the reader per record (`wakeup_bytes` != 0).
    batched_wakeups: bool,
}

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

fn status(name: impl Into<String>, status: &str, reason: impl Into<String>) -> ProbeStatus {
    ProbeStatus {
        name: name.into(),
        status: status.into(),
        reason: reason.into(),
    }
}

impl Tracer {
    /// Loads the object and attaches what `cfg` asks for. Fails only if the object itself cannot
    /// be loaded (no privileges, no BPF support, object missing).
    pub fn load(cfg: &TracerConfig) -> anyhow::Result<Self> {
        if OBJECT.is_empty() {
            bail!(
                "this cmdqv was built without its eBPF object (AYA_BUILD_SKIP=1); rebuild with `cargo xtask build`"
            );
        }
        let mut ebpf = EbpfLoader::new().load(OBJECT).map_err(|e| {
            let hint = if unsafe { libc::geteuid() } != 0 {
                " (not root: run as root or grant CAP_BPF+CAP_PERFMON)"
            } else {
                ""
            };
            anyhow::anyhow!("loading the eBPF object failed{hint}: {e}")
        })?;

        let mut filter = FilterConfig {
            pid: cfg.pid,
            all_ioctls: cfg.all_ioctls as u32,
            region_ptr: 0,
            gpa_lo: cfg.gpa_lo,
            gpa_hi: cfg.gpa_hi,
            ..Default::default()
        };
        if let Some(q) = &cfg.qemu {
            q.apply(&mut filter);
        }
        let mut fmap: Array<_, FilterConfig> =
            Array::try_from(ebpf.map_mut("FILTER").context("FILTER map missing")?)?;
        fmap.set(0, filter, 0).context("writing the filter map")?;
        if cfg.wakeup_bytes != 0 {
            let mut w: Array<_, u64> =
                Array::try_from(ebpf.map_mut("WAKEUP").context("WAKEUP map missing")?)?;
            w.set(0, cfg.wakeup_bytes, 0)
                .context("writing the wakeup map")?;
        }

        let mut probes = Vec::new();
        if cfg.syscalls {
            ensure_tracefs();
            for (prog, cat, name) in SYSCALL_TRACEPOINTS {
                probes.push(attach_tracepoint(&mut ebpf, prog, cat, name));
            }
        }
        if cfg.kvm_mmio {
            ensure_tracefs();
            probes.push(attach_tracepoint(
                &mut ebpf,
                "cmdqv_kvm_mmio",
                "kvm",
                "kvm_mmio",
            ));
        }
        if cfg.iommu {
            ensure_tracefs();
            for (prog, cat, name) in IOMMU_TRACEPOINTS {
                probes.push(attach_tracepoint(&mut ebpf, prog, cat, name));
            }
        }
        if let Some(bin) = &cfg.sim_vmm {
            for (prog, sym) in SIM_VMM_UPROBES {
                probes.push(attach_uprobe(&mut ebpf, prog, sym, bin, cfg.pid));
            }
        }
        if cfg.kernel {
            probes.extend(attach_kernel_functions(&mut ebpf));
            probes.push(attach_fentry(&mut ebpf));
        }
        if let Some(q) = &cfg.qemu {
            probes.extend(crate::qemu_target::attach_probes(&mut ebpf, q, cfg.pid));
        }

        let ring = RingBuf::try_from(ebpf.take_map("EVENTS").context("EVENTS map missing")?)?;
        let drops = PerCpuArray::try_from(ebpf.take_map("DROPS").context("DROPS map missing")?)?;
        Ok(Self {
            ring,
            drops,
            ebpf,
            probes,
            fds: (!cfg.all_mmaps).then(IommufdFds::default),
            batched_wakeups: cfg.wakeup_bytes != 0,
        })
    }

    /// Attach status of every probe that was requested.
    pub fn probes(&self) -> &[ProbeStatus] {
        &self.probes
    }

    /// Records that did not fit into the ring buffer, summed over CPUs.
    pub fn drops(&self) -> u64 {
        self.drops
            .get(&DROP_RINGBUF_FULL, 0)
            .map(|v| v.iter().copied().sum())
            .unwrap_or(0)
    }

    /// File descriptor that becomes readable when records are waiting (for poll/epoll/AsyncFd).
    pub fn ring_fd(&self) -> RawFd {
        self.ring.as_raw_fd()
    }

    /// mmap/munmap records left out because their fd is not an iommufd (not a loss).
    pub fn filtered(&self) -> u64 {
        self.fds.as_ref().map_or(0, IommufdFds::filtered)
    }

    /// Drains every waiting record into `f` without blocking; returns how many were delivered.
    pub fn drain(&mut self, mut f: impl FnMut(&[u8])) -> usize {
        let mut n = 0;
        while let Some(item) = self.ring.next() {
            if self.fds.as_mut().is_none_or(|k| k.keep_raw(&item)) {
                f(&item);
                n += 1;
            }
        }
        n
    }

    /// The same tracer read through the tokio runtime (epoll on the ring buffer's fd). Call it
    /// inside a runtime with I/O enabled (tokio panics otherwise). On error the tracer is dropped,
    /// which detaches its probes.
    pub fn into_async(self) -> io::Result<AsyncTracer> {
        // SAFETY: the fd is the ring buffer map's, owned by `self.ring`: it stays open and the
        // same for as long as the Tracer lives, and the Tracer lives inside the AsyncFd.
        let fd = unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(self, tokio::io::Interest::READABLE)
        };
        Ok(AsyncTracer {
            fd: fd.map_err(|e| e.into_parts().1)?,
        })
    }

    /// Waits up to `timeout` for records, then drains them.
    pub fn poll(&mut self, timeout: Duration, f: impl FnMut(&[u8])) -> io::Result<usize> {
        let mut pfd = libc::pollfd {
            fd: self.ring_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut pfd, 1, ms) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        Ok(self.drain(f))
    }

    /// The underlying object (for doctor-style experiments).
    pub fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }
}

impl AsRawFd for Tracer {
    fn as_raw_fd(&self) -> RawFd {
        self.ring.as_raw_fd()
    }
}

/// A [`Tracer`] whose ring buffer is read through the async runtime: `next_batch` waits for
/// readiness without a thread blocked in poll(2). Must be created and used inside a tokio
/// runtime with I/O enabled. Dropping it drops the tracer (and detaches every probe).
pub struct AsyncTracer {
    fd: tokio::io::unix::AsyncFd<Tracer>,
}

impl AsyncTracer {
    /// Waits until records are waiting, hands each to `f`, and returns how many were delivered
    /// (at least one). Cancel-safe: a record is never half-delivered.
    pub async fn next_batch(&mut self, mut f: impl FnMut(&[u8])) -> io::Result<usize> {
        let tick = self.fd.get_ref().batched_wakeups.then_some(WAKEUP_TICK);
        loop {
            let ready = match tick {
                // Batched wakeups: a quiet tail below the threshold never wakes us; drain on a timer.
                Some(t) => tokio::time::timeout(t, self.fd.readable_mut()).await.ok(),
                None => Some(self.fd.readable_mut().await),
            };
            let n = match ready {
                Some(guard) => {
                    let mut guard = guard?;
                    let n = guard.get_inner_mut().drain(&mut f);
                    // The ring is empty now; tokio only clears readiness if no wakeup came in
                    // since the guard was taken, so a record submitted meanwhile is not missed.
                    guard.clear_ready();
                    n
                }
                None => self.fd.get_mut().drain(&mut f),
            };
            if n > 0 {
                return Ok(n);
            }
        }
    }

    pub fn get_ref(&self) -> &Tracer {
        self.fd.get_ref()
    }

    pub fn get_mut(&mut self) -> &mut Tracer {
        self.fd.get_mut()
    }

    /// Back to the synchronous tracer (deregisters from the runtime, keeps the probes).
    pub fn into_inner(self) -> Tracer {
        self.fd.into_inner()
    }
}

/// Mounts tracefs at /sys/kernel/tracing if it is not there (tracepoint attach by name needs it).
pub fn ensure_tracefs() -> bool {
    if tracefs_path().is_some() {
        return true;
    }
    let target = c"/sys/kernel/tracing";
    // SAFETY: static C strings; failure is reported by the return value.
    let r = unsafe {
        libc::mount(
            c"nodev".as_ptr(),
            target.as_ptr(),
            c"tracefs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    r == 0 && tracefs_path().is_some()
}

/// Where tracefs is mounted, if it is.
pub fn tracefs_path() -> Option<&'static str> {
    ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"]
        .into_iter()
        .find(|p| Path::new(p).join("events").is_dir())
}

fn attach_tracepoint(ebpf: &mut Ebpf, prog: &str, cat: &str, name: &str) -> ProbeStatus {
    let label = format!("tracepoint:{cat}/{name}");
    let Some(p) = ebpf.program_mut(prog) else {
        return status(
            label,
            "failed",
            format!("program {prog} missing from the object"),
        );
    };
    let tp: &mut TracePoint = match p.try_into() {
        Ok(tp) => tp,
        Err(e) => return status(label, "failed", e.to_string()),
    };
    if let Err(e) = tp.load() {
        let (s, r) = classify(&e);
        return status(label, s, r);
    }
    if tracefs_path().is_none() {
        return status(
            label,
            "unsupported",
            "tracefs is not mounted and could not be mounted",
        );
    }
    if !Path::new(tracefs_path().unwrap_or("/sys/kernel/tracing"))
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
        Err(e) => {
            let (s, r) = classify(&e);
            status(label, s, r)
        }
    }
}

pub(crate) fn attach_uprobe(
    ebpf: &mut Ebpf,
    prog: &str,
    sym: &str,
    bin: &Path,
    pid: u32,
) -> ProbeStatus {
    let label = format!("uprobe:{sym}");
    let Some(p) = ebpf.program_mut(prog) else {
        return status(
            label,
            "failed",
            format!("program {prog} missing from the object"),
        );
    };
    let up: &mut UProbe = match p.try_into() {
        Ok(u) => u,
        Err(e) => return status(label, "failed", e.to_string()),
    };
    if let Err(e) = up.load() {
        let (s, r) = classify(&e);
        return status(label, s, r);
    }
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

/// Kernel functions present in this kernel (from available_filter_functions or kallsyms).
fn kernel_has_function(name: &str) -> bool {
    let files = [
        "/sys/kernel/tracing/available_filter_functions",
        "/sys/kernel/debug/tracing/available_filter_functions",
        "/proc/kallsyms",
    ];
    for f in files {
        if let Ok(text) = std::fs::read_to_string(f) {
            if text.lines().any(|l| {
                let mut parts = l.split_whitespace();
                if f.ends_with("kallsyms") {
                    parts.nth(2) == Some(name)
                } else {
                    parts.next() == Some(name)
                }
            }) {
                return true;
            }
        }
    }
    false
}

fn attach_kernel_functions(ebpf: &mut Ebpf) -> Vec<ProbeStatus> {
    let mut out = Vec::new();
    let loaded = match ebpf
        .program_mut("cmdqv_kfunc_entry")
        .map(<&mut KProbe>::try_from)
    {
        Some(Ok(kp)) => match kp.load() {
            Ok(()) => Ok(()),
            Err(e) => Err(classify(&e)),
        },
        _ => Err(("failed", "program cmdqv_kfunc_entry missing".to_string())),
    };
    for func in KERNEL_FUNCTIONS {
        let label = format!("kprobe:{func}");
        if let Err((s, r)) = &loaded {
            out.push(status(label, s, r.clone()));
            continue;
        }
        if !kernel_has_function(func) {
            out.push(status(label, "symbol-not-found", "this kernel has no such function (no CMDQV/iommufd support built in): kernel-side CMDQV probes skipped"));
            continue;
        }
        let kp: &mut KProbe = match ebpf.program_mut("cmdqv_kfunc_entry").map(|p| p.try_into()) {
            Some(Ok(k)) => k,
            _ => continue,
        };
        match kp.attach(func, 0) {
            Ok(_) => out.push(status(label, "attached", "ok")),
            Err(e) => {
                let (s, r) = classify(&e);
                out.push(status(label, s, r));
            }
        }
    }
    out
}

/// The fentry variant of the iommufd ioctl probe (cheaper than a kprobe where the kernel allows
/// BPF trampolines). Refusals are data: "unsupported" or "symbol-not-found", with the reason.
fn attach_fentry(ebpf: &mut Ebpf) -> ProbeStatus {
    const FUNC: &str = "iommufd_fops_ioctl";
    let label = format!("fentry:{FUNC}");
    let btf = match Btf::from_sys_fs() {
        Ok(b) => b,
        Err(e) => return status(label, "unsupported", format!("no kernel BTF: {e}")),
    };
    let Some(Ok(p)) = ebpf
        .program_mut("cmdqv_kfunc_fentry")
        .map(<&mut FEntry>::try_from)
    else {
        return status(label, "failed", "program cmdqv_kfunc_fentry missing");
    };
    let res = p.load(FUNC, &btf).and_then(|()| p.attach().map(|_| ()));
    match res {
        Ok(()) => status(label, "attached", "ok"),
        Err(e) => {
            let text = format!("{e:?}");
            let (s, r) = classify(&e);
            let (s, r) = if !kernel_has_function(FUNC) || text.contains("NotFound") {
                (
                    "symbol-not-found",
                    format!("{FUNC} is not in this kernel (no iommufd built in): {r}"),
                )
            } else if s == "permission-denied" {
                (
                    "unsupported",
                    format!(
                        "the kernel refuses fentry programs even to root (lockdown or no BPF trampoline): {r}"
                    ),
                )
            } else {
                (s, r)
            };
            status(label, s, r)
        }
    }
}

/// The program types `cmdqv doctor` checks, in the order it reports them.
pub const PROGRAM_TYPES: [&str; 6] = [
    "tracepoint",
    "raw_tracepoint",
    "tp_btf",
    "uprobe",
    "kprobe",
    "fentry",
];

/// Every program type reported unavailable for one reason.
pub fn all_unavailable(reason: &str, meaning: &str) -> Vec<TypeCheck> {
    PROGRAM_TYPES
        .iter()
        .map(|t| TypeCheck {
            program_type: t,
            available: false,
            reason: reason.into(),
            meaning: meaning.into(),
        })
        .collect()
}

/// Result of trying one program type (for `cmdqv doctor`).
pub struct TypeCheck {
    pub program_type: &'static str,
    pub available: bool,
    pub reason: String,
    pub meaning: String,
}

/// Loads and attaches one program of each type, detaching right after, to tell the user what
/// works on this kernel.
pub fn check_program_types() -> Vec<TypeCheck> {
    let mut out = Vec::new();
    let mut ebpf = match (!OBJECT.is_empty())
        .then(|| EbpfLoader::new().load(OBJECT))
        .transpose()
    {
        Ok(Some(e)) => e,
        Ok(None) => {
            return all_unavailable(
                "binary built without the eBPF object",
                "rebuild with `cargo xtask build`",
            );
        }
        Err(e) => {
            return all_unavailable(
                &format!("object does not load: {e}"),
                "no eBPF: `cmdqv sim` falls back to in-process events",
            );
        }
    };
    let r = |res: Result<(), ProgramError>| match res {
        Ok(()) => (true, "loaded and attached".to_string()),
        Err(e) => (false, classify(&e).1),
    };

    ensure_tracefs();
    let (ok, why) = r((|| {
        let tp: &mut TracePoint = ebpf
            .program_mut("cmdqv_ioctl_enter")
            .ok_or(ProgramError::NotLoaded)?
            .try_into()?;
        tp.load()?;
        let id = tp.attach("syscalls", "sys_enter_ioctl")?;
        tp.detach(id)
    })());
    out.push(TypeCheck {
        program_type: "tracepoint",
        available: ok,
        reason: why,
        meaning: if ok {
            "syscall (iommufd ioctl/mmap) and kvm:kvm_mmio probes work"
        } else {
            "no syscall or kvm_mmio probes: only uprobes/in-process events"
        }
        .into(),
    });

    let (ok, why) = r((|| {
        let p: &mut RawTracePoint = ebpf
            .program_mut("cmdqv_doctor_raw_tp")
            .ok_or(ProgramError::NotLoaded)?
            .try_into()?;
        p.load()?;
        let id = p.attach("sys_enter")?;
        p.detach(id)
    })());
    out.push(TypeCheck {
        program_type: "raw_tracepoint",
        available: ok,
        reason: why,
        meaning: if ok {
            "raw tracepoints usable"
        } else {
            "raw tracepoints unavailable (not needed by default)"
        }
        .into(),
    });

    let (ok, why) = match Btf::from_sys_fs() {
        Ok(btf) => r((|| {
            let p: &mut BtfTracePoint = ebpf
                .program_mut("cmdqv_doctor_tp_btf")
                .ok_or(ProgramError::NotLoaded)?
                .try_into()?;
            p.load("sys_enter", &btf)?;
            let id = p.attach()?;
            p.detach(id)
        })()),
        Err(e) => (false, format!("no kernel BTF: {e}")),
    };
    out.push(TypeCheck {
        program_type: "tp_btf",
        available: ok,
        reason: why,
        meaning: if ok {
            "BTF-typed tracepoints usable (iommu:* with typed args)"
        } else {
            "BTF tracepoints unavailable"
        }
        .into(),
    });

    let exe = std::env::current_exe().unwrap_or_default();
    let (ok, why) = r((|| {
        let p: &mut UProbe = ebpf
            .program_mut("cmdqv_vmm_mmio")
            .ok_or(ProgramError::NotLoaded)?
            .try_into()?;
        p.load()?;
        let id = p.attach("cmdqv_vmm_mmio", &exe, UProbeScope::CallingProcess)?;
        // Fire it once so the probe is exercised, not only attached.
        cmdqv_core::sim::hooks::cmdqv_vmm_mmio(0, 0, 0, 4, 0);
        p.detach(id)
    })());
    out.push(TypeCheck {
        program_type: "uprobe",
        available: ok,
        reason: why,
        meaning: if ok {
            "VMM MMIO probes (sim VMM, QEMU) work"
        } else {
            "uprobes unavailable: VMM MMIO tracing falls back to in-process events"
        }
        .into(),
    });

    let (ok, why) = r((|| {
        let p: &mut KProbe = ebpf
            .program_mut("cmdqv_kfunc_entry")
            .ok_or(ProgramError::NotLoaded)?
            .try_into()?;
        p.load()?;
        let id = p.attach("do_sys_openat2", 0)?;
        p.detach(id)
    })());
    out.push(TypeCheck {
        program_type: "kprobe",
        available: ok,
        reason: why,
        meaning: if ok {
            "kernel-side tegra241_*/iommufd_* probes can attach"
        } else {
            "kprobe unavailable: kernel-side CMDQV probes will be skipped"
        }
        .into(),
    });

    let (ok, why) = match Btf::from_sys_fs() {
        Ok(btf) => r((|| {
            let p: &mut FEntry = ebpf
                .program_mut("cmdqv_kfunc_fentry")
                .ok_or(ProgramError::NotLoaded)?
                .try_into()?;
            p.load("do_sys_openat2", &btf)?;
            let id = p.attach()?;
            p.detach(id)
        })()),
        Err(e) => (false, format!("no kernel BTF: {e}")),
    };
    out.push(TypeCheck {
        program_type: "fentry",
        available: ok,
        reason: why,
        meaning: if ok {
            "fentry probes usable (cheaper kernel-side probes)"
        } else {
            "fentry unavailable: kernel-side probes use kprobes or are skipped"
        }
        .into(),
    });
    out
}
