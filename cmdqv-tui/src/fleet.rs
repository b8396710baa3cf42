//! Following every VMM on the host through its VINTF page0 (`cmdqv sample --all`, `cmdqv
//! serve`): a rescan of /proc finds the VMMs that map one (an iommufd's or the sim VMM's memfd)
//! and attaches a page0 sampler to each new one; a VMM that exits is let go; a VMM that cannot
//! be attached (no permission, gone meanwhile) is reported once and the rest go on.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    path::PathBuf,
    sync::Mutex,
    time::{Duration, Instant},
};

use cmdqv_core::{
    analysis::ProbeStatus,
    host::{
        LVCMDQ_STRIDE, PAGE0_LEN,
        discover::{self, FoundVmm, ScanError},
        sampler::{LvcmdqSample, Sampler},
    },
};

use crate::metrics::{self, MetricsState, model::Page0Queue};

/// The probe name a followed VMM's page0 mapping is reported under.
pub const PAGE0_PROBE: &str = "page0";

/// What a rescan or a sample saw change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FleetEvent {
    Followed {
        pid: u32,
        vm: String,
        page0: String,
    },
    Gone {
        pid: u32,
        vm: String,
    },
    /// A VMM (or a process that may be one) that cannot be followed; reported once per pid.
    Refused {
        pid: u32,
        vm: String,
        reason: &'static str,
        error: String,
    },
}

impl FleetEvent {
    /// One line for stderr.
    pub fn line(&self) -> String {
        match self {
            Self::Followed { pid, vm, page0 } => {
                format!("following vm {vm} (pid {pid}, page0 {page0})")
            }
            Self::Gone { pid, vm } => format!("vm {vm} (pid {pid}) went away"),
            Self::Refused { pid, vm, error, .. } => {
                format!("vm {vm} (pid {pid}) not followed: {error}")
            }
        }
    }
}

/// One VMM's sample.
pub struct Sampled<'a> {
    pub pid: u32,
    pub vm: &'a str,
    /// Seconds since the VMM was first followed.
    pub t_s: f64,
    /// Seconds since its previous sample.
    pub interval_s: f64,
    pub queues: Vec<LvcmdqSample>,
}

struct Followed {
    vm: String,
    sampler: Sampler,
    since: Instant,
    last: Instant,
}

/// Every followed VMM.
pub struct Fleet {
    proc_root: PathBuf,
    lvcmdqs: usize,
    log2size: Option<u8>,
    vmms: BTreeMap<u32, Followed>,
    /// Pids reported as not followable: reported once, retried at every rescan.
    reported: BTreeSet<u32>,
    /// Processes seen without a page0: when to look again, and the gap before that.
    plain: HashMap<u32, (Instant, Duration)>,
}

/// A process seen without a page0 is looked at again after 1 s, then 2 s, 4 s … and at most
/// every [`RECHECK`]: a VMM maps its page0 when its guest enables the VINTF, usually seconds
/// after it starts, so it is found about as late as it was old, while a rescan reads the maps of
/// new processes and of a few old ones, not of every process on the host.
pub const RECHECK: Duration = Duration::from_secs(30);
const FIRST_RECHECK: Duration = Duration::from_secs(1);

/// The `reason` of a sampler attach failure.
fn attach_reason(e: &str) -> &'static str {
    if e.contains("EPERM") || e.contains("ermission") || e.contains("not permitted") {
        "permission"
    } else if e.contains("No such process") || e.contains("No such file") {
        "gone"
    } else {
        "other"
    }
}

impl Fleet {
    pub fn new(lvcmdqs: usize, log2size: Option<u8>) -> Self {
        Self {
            proc_root: PathBuf::from("/proc"),
            lvcmdqs: lvcmdqs.clamp(1, PAGE0_LEN / LVCMDQ_STRIDE),
            log2size,
            vmms: BTreeMap::new(),
            reported: BTreeSet::new(),
            plain: HashMap::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.vmms.len()
    }

    pub fn is_empty(&self) -> bool {
        self.vmms.is_empty()
    }

    /// The ring size queues are known to have (occupancy needs it).
    pub fn log2size(&self) -> Option<u8> {
        self.log2size
    }

    /// Finds new VMMs and attaches to them; lets go of those that went away.
    pub fn rescan(&mut self) -> Vec<FleetEvent> {
        let mut events = self.let_go_of_the_gone();
        let now = Instant::now();
        let (plain, vmms) = (&self.plain, &self.vmms);
        let due =
            |pid: u32| !vmms.contains_key(&pid) && plain.get(&pid).is_none_or(|&(at, _)| now >= at);
        let scan = match discover::scan(&self.proc_root, std::process::id(), due) {
            Ok(r) => r,
            Err(e) => {
                return vec![FleetEvent::Refused {
                    pid: 0,
                    vm: "-".into(),
                    reason: "other",
                    error: format!("cannot list {}: {e}", self.proc_root.display()),
                }];
            }
        };
        let listed: BTreeSet<u32> = scan.listed.iter().copied().collect();
        self.plain.retain(|p, _| listed.contains(p));
        for &p in &scan.plain {
            let gap = match self.plain.get(&p) {
                Some(&(_, gap)) => (gap * 2).min(RECHECK),
                None => FIRST_RECHECK,
            };
            self.plain.insert(p, (now + gap, gap));
        }
        let (found, errors) = (scan.found, scan.errors);
        self.reported.retain(|p| listed.contains(p));
        for (pid, err) in errors {
            if self.reported.insert(pid) {
                events.extend(self.refusal(pid, &err));
            }
        }
        for v in found {
            if !self.vmms.contains_key(&v.pid) {
                events.extend(self.follow(v));
            }
        }
        events
    }

    fn refusal(&self, pid: u32, err: &ScanError) -> Option<FleetEvent> {
        // A process that cannot be read is reported only when it may be a VMM: its name says
        // so, or (when that is unreadable too) it cannot be ruled out.
        let args = discover::read_cmdline(&self.proc_root, pid).unwrap_or_default();
        let vm = discover::vm_name_from_cmdline(&args, pid);
        let looks_like_vmm = args.is_empty()
            || args
                .iter()
                .take(2)
                .any(|a| a.contains("qemu") || a.contains("sim-vmm") || a.contains("hypervisor"));
        looks_like_vmm.then(|| FleetEvent::Refused {
            pid,
            vm,
            reason: err.reason(),
            error: err.to_string(),
        })
    }

    fn unique_name(&self, name: String, pid: u32) -> String {
        if self.vmms.values().any(|f| f.vm == name) {
            format!("{name}@{pid}")
        } else {
            name
        }
    }

    /// Attaches to a VMM; an error is an event the first time only.
    fn follow(&mut self, v: FoundVmm) -> Option<FleetEvent> {
        let vm = self.unique_name(v.name, v.pid);
        match Sampler::attach(v.pid, self.lvcmdqs) {
            Ok(mut s) => {
                if let Some(n) = self.log2size {
                    for l in 0..self.lvcmdqs {
                        s.set_log2size(l, n);
                    }
                }
                // The first sample only sets the baseline.
                s.sample();
                let page0 = format!("{} @ {:#x}", s.mapping.path, s.mapping.offset);
                let now = Instant::now();
                self.vmms.insert(
                    v.pid,
                    Followed {
                        vm: vm.clone(),
                        sampler: s,
                        since: now,
                        last: now,
                    },
                );
                self.reported.remove(&v.pid);
                Some(FleetEvent::Followed {
                    pid: v.pid,
                    vm,
                    page0,
                })
            }
            Err(e) => {
                let error = e.to_string();
                self.reported.insert(v.pid).then(|| FleetEvent::Refused {
                    pid: v.pid,
                    vm,
                    reason: attach_reason(&error),
                    error,
                })
            }
        }
    }

    fn let_go_of_the_gone(&mut self) -> Vec<FleetEvent> {
        let gone: Vec<u32> = self
            .vmms
            .keys()
            .copied()
            .filter(|&pid| !discover::process_alive(&self.proc_root, pid))
            .collect();
        gone.into_iter()
            .filter_map(|pid| self.vmms.remove(&pid).map(|f| (pid, f.vm)))
            .map(|(pid, vm)| FleetEvent::Gone { pid, vm })
            .collect()
    }

    /// Samples every followed VMM (those that went away are let go first).
    pub fn sample(&mut self) -> (Vec<Sampled<'_>>, Vec<FleetEvent>) {
        let gone = self.let_go_of_the_gone();
        let now = Instant::now();
        let out = self
            .vmms
            .iter_mut()
            .map(|(&pid, f)| {
                let interval_s = (now - f.last).as_secs_f64();
                f.last = now;
                Sampled {
                    pid,
                    vm: &f.vm,
                    t_s: (now - f.since).as_secs_f64(),
                    interval_s,
                    queues: f.sampler.sample(),
                }
            })
            .collect();
        (out, gone)
    }
}

/// How [`follow`] runs.
#[derive(Clone, Debug)]
pub struct FollowConfig {
    pub lvcmdqs: usize,
    pub log2size: Option<u8>,
    /// Samples per second.
    pub rate_hz: f64,
    /// How often /proc is scanned for VMMs that started.
    pub rescan: Duration,
    /// Stop after this long.
    pub duration: Option<Duration>,
}

/// Follows every VMM until `keep_going` says no or the duration ends: rescans, samples, hands
/// each VMM's sample to `on_sample`, reports every change on stderr and, with `metrics`, writes
/// it all there.
pub fn follow(
    cfg: &FollowConfig,
    metrics: Option<&Mutex<MetricsState>>,
    keep_going: impl Fn() -> bool,
    mut on_sample: impl FnMut(&Sampled) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut fleet = Fleet::new(cfg.lvcmdqs, cfg.log2size);
    let period = Duration::from_secs_f64(1.0 / cfg.rate_hz.clamp(0.01, 10_000.0));
    let start = Instant::now();
    let end = cfg.duration.map(|d| start + d);
    let mut next_rescan = start;
    let mut next_sample = start + period;
    while keep_going() && end.is_none_or(|e| Instant::now() < e) {
        let now = Instant::now();
        if now >= next_rescan {
            for e in fleet.rescan() {
                record(&e, metrics);
            }
            next_rescan = now + cfg.rescan;
        }
        let wake = next_sample.min(next_rescan);
        let now = Instant::now();
        if wake > now {
            std::thread::sleep((wake - now).min(Duration::from_millis(250)));
            continue;
        }
        if now < next_sample {
            continue;
        }
        next_sample += period;
        if next_sample < now {
            // Fell behind (a stopped process, a slow /proc): no burst to catch up.
            next_sample = now + period;
        }
        let (samples, gone) = fleet.sample();
        for s in &samples {
            if let Some(m) = metrics {
                let queues = page0_queues(&s.queues, cfg.log2size);
                metrics::lock(m).apply_page0(s.vm, s.pid, &queues);
            }
            on_sample(s)?;
        }
        for e in gone {
            record(&e, metrics);
        }
        if let Some(m) = metrics {
            metrics::lock(m).expire(Instant::now());
        }
    }
    Ok(())
}

/// Whether an LVCMDQ is in use (enabled, moved or stopped): the others are not reported.
pub fn active(s: &LvcmdqSample) -> bool {
    s.enabled || s.prod != 0 || s.cons != 0 || s.cerror != 0
}

/// The active LVCMDQs of one sample, as the metrics take them.
pub fn page0_queues(samples: &[LvcmdqSample], log2size: Option<u8>) -> Vec<Page0Queue> {
    samples
        .iter()
        .filter(|s| active(s))
        .map(|s| Page0Queue {
            vintf: 0,
            lidx: s.lidx,
            consumed: s.consumed,
            cerror: s.cerror,
            occupancy: log2size.map(|n| s.pending as f64 / (1u64 << n) as f64),
        })
        .collect()
}

/// Reports a change on stderr and in the metrics.
pub fn record(e: &FleetEvent, metrics: Option<&Mutex<MetricsState>>) {
    eprintln!("cmdqv: {}", e.line());
    let Some(m) = metrics else {
        return;
    };
    let mut m = metrics::lock(m);
    match e {
        FleetEvent::Followed { vm, page0, .. } => m.set_probes(vm, &[page0_probe(page0)]),
        FleetEvent::Gone { vm, .. } => m.vm_gone(vm, Instant::now()),
        FleetEvent::Refused { reason, .. } => m.discovery_error(reason),
    }
}

/// A followed VMM's probe list: its page0 mapping.
pub fn page0_probe(page0: &str) -> ProbeStatus {
    ProbeStatus {
        name: PAGE0_PROBE.into(),
        status: "attached".into(),
        reason: format!("VINTF page0 mapped read-only ({page0})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attach_failures_are_classified() {
        assert_eq!(
            attach_reason("pidfd_getfd(1, fd 3) failed: Operation not permitted (os error 1)"),
            "permission"
        );
        assert_eq!(
            attach_reason("cannot read /proc/9/maps: No such file or directory"),
            "gone"
        );
        assert_eq!(attach_reason("mmap failed: EINVAL"), "other");
    }

    #[test]
    fn an_unreadable_vmm_is_reported_once_and_the_rest_go_on() {
        let root = std::env::temp_dir().join(format!("cmdqv-fleet-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        // A QEMU whose maps cannot be read (a directory stands in for a refused read), and a
        // plain process beside it.
        let qemu = root.join("4242");
        std::fs::create_dir_all(qemu.join("maps")).unwrap();
        std::fs::write(qemu.join("cmdline"), b"qemu-system-aarch64\0-name\0web1\0").unwrap();
        let plain = root.join("7");
        std::fs::create_dir_all(&plain).unwrap();
        std::fs::write(
            plain.join("maps"),
            "00400000-00452000 r-xp 00000000 08:02 1 /bin/sh\n",
        )
        .unwrap();
        std::fs::write(plain.join("cmdline"), b"sh\0").unwrap();
        let mut f = Fleet::new(128, None);
        f.proc_root = root.clone();
        let first = f.rescan();
        let second = f.rescan();
        std::fs::remove_dir_all(&root).unwrap();
        assert_eq!(first.len(), 1, "{first:?}");
        let FleetEvent::Refused {
            pid, vm, reason, ..
        } = &first[0]
        else {
            panic!("{first:?}")
        };
        assert_eq!((*pid, vm.as_str(), *reason), (4242, "web1", "other"));
        assert!(first[0].line().contains("vm web1 (pid 4242) not followed"));
        assert!(second.is_empty(), "reported once: {second:?}");
        assert!(f.is_empty());
        assert!(
            f.plain.contains_key(&7),
            "the plain process is looked at later, not now"
        );
    }

    #[test]
    fn a_fleet_without_vmms_is_empty_and_quiet() {
        let mut f = Fleet::new(128, None);
        // This test process maps no page0; neither do its siblings (unless a sim runs).
        let events = f.rescan();
        assert!(
            events.iter().all(
                |e| !matches!(e, FleetEvent::Refused { pid, .. } if *pid == std::process::id())
            ),
            "{events:?}"
        );
        let (samples, gone) = f.sample();
        assert_eq!(samples.len(), f.vmms.len());
        assert!(gone.is_empty());
    }
}
