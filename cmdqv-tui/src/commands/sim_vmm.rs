//! `cmdqv sim-vmm` (hidden): the sim VMM process that `cmdqv sim` starts and traces. It waits
//! for `go ebpf` or `go pipe` on stdin, runs the scenario, and exits when the duration elapses
//! or stdin closes (the tracer went away).

use std::{
    io::BufRead as _,
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use clap::Args;
use cmdqv_core::{analysis::SimReport, sim};
use serde::{Deserialize, Serialize};

use crate::kvm::exits::VcpuThread;

/// Start line: the events are traced by eBPF uprobes on the VMM's hooks.
pub const GO_EBPF: &str = "go ebpf";
/// Start line: the VMM reports its events itself over stdout (no eBPF).
pub const GO_PIPE: &str = "go pipe";

#[derive(Args, Clone, Debug)]
pub struct SimVmmArgs {
    #[arg(long)]
    pub scenario: String,
    #[arg(long)]
    pub duration_ms: Option<u64>,
    #[arg(long)]
    pub rate: Option<u32>,
    #[arg(long)]
    pub vcpus: Option<u32>,
    /// Run the guest's hot path in KVM vCPUs (falls back to vCPU threads, saying why). Without
    /// it, the start line decides (`go ebpf kvm`).
    #[arg(long)]
    pub kvm: bool,
    /// Write the end-of-run report (guest engine, comparison, notes) here as JSON.
    #[arg(long)]
    pub report: Option<std::path::PathBuf>,
    /// The name discovery gives this VMM (`vm` label; default `sim-<scenario>`), as QEMU's
    /// `-name` does.
    #[arg(long)]
    pub name: Option<String>,
}

/// Applies `--rate` / `--vcpus` to a scenario; vCPUs are capped at the LVCMDQs of the VINTF
/// because each vCPU owns one queue's software state (as Linux picks a queue per CPU).
pub fn apply_overrides(
    sc: &mut sim::Scenario,
    rate: Option<u32>,
    vcpus: Option<u32>,
) -> Result<()> {
    if let Some(r) = rate {
        if r == 0 || r > 100_000 {
            bail!("--rate must be 1..=100000 batches per second per vCPU");
        }
        sc.rate_hz = r;
    }
    if let Some(v) = vcpus {
        let max = sc.geometry.lvcmdqs_per_vintf() as u32;
        if v == 0 || v > max {
            bail!(
                "--vcpus must be 1..={max} for scenario {} (one LVCMDQ per vCPU)",
                sc.name
            );
        }
        sc.vcpus = v;
        sc.lvcmdqs = sc.lvcmdqs.max(v);
    }
    Ok(())
}

pub fn run(a: SimVmmArgs) -> Result<()> {
    let mut sc =
        sim::scenario(&a.scenario).with_context(|| format!("unknown scenario `{}`", a.scenario))?;
    apply_overrides(&mut sc, a.rate, a.vcpus)?;
    let mut report = VmmReport::default();
    report.sim.guest_engine = "user".into();
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    // `go ebpf|pipe [kvm|user]`: the tracer's choice of guest engine follows the mode.
    let (go, asked) = match line.trim().rsplit_once(' ') {
        Some((go, e @ ("kvm" | "user"))) => (go, e),
        _ => (line.trim(), "user"),
    };
    let kvm = a.kvm || asked == "kvm";
    let engine = kvm.then(|| engine::choose(&sc, &mut report)).flatten();
    let modelled = sc.costs;
    if engine.is_some() {
        // Real exits replace the modelled trap cost; what cannot run here (the host SMMU, the
        // VCMDQ hardware's own latency) is reported as modelled, not spun into the figures.
        sc.costs = sim::scenario::Costs::default();
    }
    let (emit, writer) = match go {
        GO_PIPE => {
            let (p, h) = sim::emit::PipeSink::spawn(std::io::stdout());
            (sim::emit::Emitter::with_pipe(&p), Some((p, h)))
        }
        GO_EBPF => (sim::emit::Emitter::hooks_only(), None),
        other => bail!("sim VMM: unexpected start command `{other}`"),
    };
    let mut opts = sim::vmm::VmmOptions::for_scenario(&sc);
    if engine.is_some() {
        // The hardware notices a doorbell by polling: a tight poll keeps that delay to a few µs
        // of the direct path without taking a core from the vCPUs.
        opts.host.idle_poll_ns = 0;
    }
    let vmm = sim::vmm::Vmm::with_options(&sc, emit, opts).context("creating the sim VMM")?;
    let vmm = Arc::new(vmm);
    for n in vmm.notes() {
        eprintln!("cmdqv sim-vmm: {n}");
    }
    stop_when_stdin_closes(&vmm);
    let d = a
        .duration_ms
        .map_or(Duration::from_secs(u32::MAX as u64), Duration::from_millis);
    let st = match engine {
        Some(e) => engine::run(e, &vmm, &sc, d, modelled, &mut report)?,
        None => sim::vmm::run(&vmm, &sc, d).map_err(|e| anyhow::anyhow!("sim VMM: {e}"))?,
    };
    if st.driver_errors > 0 {
        eprintln!(
            "cmdqv sim-vmm: {} batches failed in the guest driver",
            st.driver_errors
        );
    }
    drop(vmm);
    // Before the pipe closes: `cmdqv sim` reads the report once the events end.
    if let Some(path) = &a.report {
        report.write(path)?;
    }
    if let Some((p, h)) = writer {
        drop(p);
        let _ = h.join();
    }
    Ok(())
}

/// What the sim VMM tells `cmdqv sim` at the end, beside its events: the guest engine that ran,
/// the comparison it measured, and notes for the summary.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct VmmReport {
    pub sim: SimReport,
    pub notes: Vec<String>,
    /// The KVM engine's vCPU threads and their paths, for the tracer's per-thread exit counts.
    #[serde(default)]
    pub vcpus: Vec<VcpuThread>,
}

impl VmmReport {
    fn write(&self, path: &std::path::Path) -> Result<()> {
        let j = serde_json::to_vec(self)?;
        std::fs::write(path, j).with_context(|| format!("writing {}", path.display()))
    }

    /// Reads the report a sim VMM wrote (`None` if it wrote none, e.g. it was killed).
    pub fn read(path: &std::path::Path) -> Option<Self> {
        serde_json::from_slice(&std::fs::read(path).ok()?).ok()
    }
}

/// Says in one line (on stderr and in the report's notes) why the KVM guest engine is off.
fn engine_off(why: &dyn std::fmt::Display, report: &mut VmmReport) {
    let note = engine_off_note(why);
    eprintln!("cmdqv sim-vmm: {note}");
    report.notes.push(note);
}

/// The one line that says why the guest does not run in KVM vCPUs.
pub fn engine_off_note(why: &dyn std::fmt::Display) -> String {
    format!("KVM guest engine off ({why}): the guest runs in vCPU threads")
}

/// `cmdqv sim`'s guest engine flags: `--kvm`, `--no-kvm`, or neither (auto).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EngineMode {
    Auto,
    Kvm,
    User,
}

/// Whether the KVM guest program reproduces `sc`'s guest workload as the user-space driver runs
/// it: the program repeats one fixed batch at one rate per vCPU and has no error handler, so a
/// scenario with varied batches (several TLBIs, periodic ASID flushes or configuration
/// invalidations), skewed rates, injected errors or queues moving under load keeps its
/// user-space figures unless `--kvm` asks otherwise.
pub fn reproduces(sc: &sim::Scenario) -> Result<(), String> {
    let varied = sc.max_tlbi > 1 || sc.asid_every > 0 || sc.cfgi_every > 0 || sc.rate_skew != 0.0;
    if varied {
        return Err(format!(
            "scenario {}'s batches vary, the KVM guest program repeats one; --kvm forces it",
            sc.name
        ));
    }
    engine::supports(sc)
}

/// Whether auto may run `sc` in KVM: the program reproduces it, and the scenario has no modelled
/// costs. Under KVM real exits replace the modelled trap cost and the rest (HWPT_INVALIDATE, the
/// VCMDQ hardware's latency) is listed as modelled instead of spun, so the per-queue figures a
/// scenario with modelled costs reports (e.g. `trapped-vs-vcmdq`'s SMMU queue including its 28 µs
/// of forwarding) would change under the user's feet. Of the built-in scenarios none qualifies
/// today: `--kvm` measures `trapped-vs-vcmdq`.
pub fn auto_fits(sc: &sim::Scenario) -> Result<(), String> {
    reproduces(sc)?;
    if sc.costs != sim::scenario::Costs::default() {
        return Err(format!(
            "scenario {}'s per-queue figures include modelled costs that KVM's real exits replace; --kvm measures it",
            sc.name
        ));
    }
    Ok(())
}

/// Whether the KVM guest program can run `sc` at all (no injected errors, no handover).
pub fn kvm_supports(sc: &sim::Scenario) -> bool {
    engine::supports(sc).is_ok()
}

/// Whether KVM opens and creates a VM here, or why not (one line).
pub fn kvm_usable() -> Result<(), String> {
    engine::usable()
}

/// The guest engine of a run (`kvm` or `user`) and, when it is `user` though KVM was asked for
/// or could have run, why (one line). Auto runs KVM when KVM opens, eBPF traces the run (so the
/// kernel counts the exits; the in-process fallback keeps the scenario's modelled costs) and
/// [`auto_fits`] the scenario; `--kvm` whenever the scenario can run there.
pub fn choose_engine(
    mode: EngineMode,
    sc: &sim::Scenario,
    traced: bool,
) -> (&'static str, Option<String>) {
    let why = match mode {
        EngineMode::User => return ("user", None),
        EngineMode::Kvm => engine::supports(sc),
        // KVM itself first: without it, that is the reason worth a line.
        EngineMode::Auto => engine::usable()
            .and_then(|()| match traced {
                true => Ok(()),
                false => Err("the run is not traced by eBPF, the kernel could not count its exits; --kvm forces it".into()),
            })
            .and_then(|()| auto_fits(sc)),
    };
    match why {
        Ok(()) => ("kvm", None),
        Err(why) => ("user", Some(engine_off_note(&why))),
    }
}

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
mod engine {
    //! The KVM guest engine's place in the sim VMM (x86_64 and aarch64 hosts).
    use std::time::Duration;

    use anyhow::{Result, anyhow};
    use cmdqv_core::sim::{self, scenario::Costs, vmm::RunStats};

    use super::VmmReport;
    use crate::kvm::{KvmEngine, compare};

    /// Whether the guest program can run `sc` (see [`KvmEngine::supports`]).
    pub fn supports(sc: &sim::Scenario) -> Result<(), String> {
        KvmEngine::supports(sc)
    }

    /// Whether KVM opens and creates a VM here (the VM is closed again).
    pub fn usable() -> Result<(), String> {
        KvmEngine::open().map(drop)
    }

    /// Opens KVM for `sc`, or says in one line why the guest runs in vCPU threads instead.
    pub fn choose(sc: &sim::Scenario, report: &mut VmmReport) -> Option<KvmEngine> {
        match KvmEngine::supports(sc).and_then(|()| KvmEngine::open()) {
            Ok(e) => {
                report.sim.guest_engine = "kvm".into();
                Some(e)
            }
            Err(why) => {
                super::engine_off(&why, report);
                None
            }
        }
    }

    /// Runs the scenario in KVM vCPUs and fills in the comparison.
    pub fn run(
        e: KvmEngine,
        vmm: &sim::vmm::Vmm,
        sc: &sim::Scenario,
        d: Duration,
        modelled: Costs,
        report: &mut VmmReport,
    ) -> Result<RunStats> {
        let run = e
            .run(vmm, sc, d)
            .map_err(|e| anyhow!("sim VMM (KVM): {e}"))?;
        for v in &run.vcpus {
            report.vcpus.push(crate::kvm::exits::VcpuThread {
                tid: v.exits.tid,
                trapped: v.trapped,
                direct: v.direct,
            });
            if let Some(f) = &v.exits.fault {
                report.notes.push(format!("vCPU {}: {f}", v.cpu));
            }
            if v.exits.wild_mmio > 0 {
                let n = v.exits.wild_mmio;
                report.notes.push(format!(
                    "vCPU {}: {n} MMIO accesses outside every device",
                    v.cpu
                ));
            }
            if v.stuck {
                report
                    .notes
                    .push(format!("vCPU {}: a batch was never consumed", v.cpu));
            }
        }
        report.sim.comparison = compare::comparison(&run, modelled);
        Ok(run.stats)
    }
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
mod engine {
    //! No KVM guest code for this architecture yet: the guest runs in vCPU threads.
    use std::time::Duration;

    use anyhow::Result;
    use cmdqv_core::sim::{self, scenario::Costs, vmm::RunStats};

    use super::VmmReport;

    pub enum KvmEngine {}

    const WHY: &str = "its guest code runs on x86_64 and aarch64 hosts only";

    pub fn supports(_: &sim::Scenario) -> Result<(), String> {
        Err(WHY.into())
    }

    pub fn usable() -> Result<(), String> {
        Err(WHY.into())
    }

    pub fn choose(_: &sim::Scenario, report: &mut VmmReport) -> Option<KvmEngine> {
        super::engine_off(&WHY, report);
        None
    }

    pub fn run(
        e: KvmEngine,
        _: &sim::vmm::Vmm,
        _: &sim::Scenario,
        _: Duration,
        _: Costs,
        _: &mut VmmReport,
    ) -> Result<RunStats> {
        match e {}
    }
}

/// The tracer keeps our stdin open for as long as it runs: when it closes, stop.
fn stop_when_stdin_closes(vmm: &Arc<sim::vmm::Vmm>) {
    let v = Arc::downgrade(vmm);
    std::thread::spawn(move || {
        let mut sink = String::new();
        while std::io::stdin()
            .lock()
            .read_line(&mut sink)
            .map(|n| n > 0)
            .unwrap_or(false)
        {
            sink.clear();
        }
        if let Some(v) = v.upgrade() {
            v.stop.store(true, Ordering::Relaxed);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_runs_kvm_only_where_it_reproduces_the_scenarios_figures() {
        let traced = true;
        // Every built-in scenario keeps its user-space figures under auto, saying why.
        for sc in sim::scenarios() {
            let (engine, why) = choose_engine(EngineMode::Auto, &sc, traced);
            assert_eq!(engine, "user", "{}", sc.name);
            assert!(
                why.unwrap().starts_with("KVM guest engine off ("),
                "{}",
                sc.name
            );
        }
        let mut sc = sim::scenario("trapped-vs-vcmdq").unwrap();
        let why = choose_engine(EngineMode::Auto, &sc, traced).1.unwrap();
        let first = kvm_usable()
            .err()
            .unwrap_or_else(|| "modelled costs".into());
        assert!(why.contains(&first), "{why}");
        // Without modelled costs the program reproduces it: auto takes KVM where it opens.
        sc.costs = sim::scenario::Costs::default();
        let (engine, why) = choose_engine(EngineMode::Auto, &sc, traced);
        match kvm_usable() {
            Ok(()) => assert_eq!((engine, why), ("kvm", None)),
            Err(e) => assert_eq!((engine, why), ("user", Some(engine_off_note(&e)))),
        }
        // Not traced by eBPF: the kernel could not count the exits.
        let (engine, why) = choose_engine(EngineMode::Auto, &sc, false);
        assert_eq!(engine, "user");
        let want = kvm_usable()
            .err()
            .unwrap_or_else(|| "not traced by eBPF".into());
        assert!(why.unwrap().contains(&want));
        // --kvm takes any scenario the program can run; --no-kvm never.
        let storm = sim::scenario("error-storm").unwrap();
        assert_eq!(choose_engine(EngineMode::Kvm, &storm, traced).0, "user");
        assert_eq!(choose_engine(EngineMode::User, &sc, traced), ("user", None));
        let tvv = sim::scenario("trapped-vs-vcmdq").unwrap();
        let forced = choose_engine(EngineMode::Kvm, &tvv, traced);
        assert_eq!(
            forced.0 == "kvm",
            cfg!(target_arch = "x86_64"),
            "{forced:?}"
        );
    }
}
