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
use cmdqv_core::sim;

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
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let (emit, writer) = match line.trim() {
        GO_PIPE => {
            let (p, h) = sim::emit::PipeSink::spawn(std::io::stdout());
            (sim::emit::Emitter::with_pipe(&p), Some((p, h)))
        }
        GO_EBPF => (sim::emit::Emitter::hooks_only(), None),
        other => bail!("sim VMM: unexpected start command `{other}`"),
    };
    let vmm = Arc::new(sim::vmm::Vmm::new(&sc, emit).context("creating the sim VMM")?);
    for n in vmm.notes() {
        eprintln!("cmdqv sim-vmm: {n}");
    }
    stop_when_stdin_closes(&vmm);
    let d = a
        .duration_ms
        .map_or(Duration::from_secs(u32::MAX as u64), Duration::from_millis);
    let st = sim::vmm::run(&vmm, &sc, d).map_err(|e| anyhow::anyhow!("sim VMM: {e}"))?;
    if st.driver_errors > 0 {
        eprintln!(
            "cmdqv sim-vmm: {} batches failed in the guest driver",
            st.driver_errors
        );
    }
    drop(vmm);
    if let Some((p, h)) = writer {
        drop(p);
        let _ = h.join();
    }
    Ok(())
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
