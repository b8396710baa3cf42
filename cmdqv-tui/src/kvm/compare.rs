//! The trapped-versus-direct comparison from a KVM run: each path's measured figures (the
//! guest's own batch latencies, the exits the VMM saw) and, separately, the modelled components
//! that cannot run here, never folded into a measured figure.

use cmdqv_core::{
    analysis::{Comparison, PathFigures},
    sim::scenario::Costs,
};

use super::{
    breakdown::percentiles,
    run::{KvmRun, PathRun},
};

/// What the measured figures contain.
const MEASURED: [&str; 4] = [
    "batch_latency_ns: guest-visible, the guest's rdtsc before it writes the batch into its ring and after CONS caught up (ring stores, doorbell, CONS polls and every exit they cause included)",
    "exits, exits_by_reason: every VM exit of the path's vCPU threads, counted by the kvm:kvm_exit probe (exits_source; without eBPF, KVM_RUN returns counted by the VMM); doorbell_exits: kvm:kvm_mmio at the doorbell addresses; pacing_exits: the VMM's count of the guest's pacing port writes",
    "vmm_ns_per_exit: VMM time from KVM_RUN's return to the next KVM_RUN for an MMIO exit (device models included)",
    "direct path consumption: the simulated host's hardware thread polling the mapped page0 (no modelled delay)",
];

/// The comparison when the run had both a trapped and a direct vCPU.
pub fn comparison(run: &KvmRun, modelled: Costs) -> Option<Comparison> {
    let trapped: Vec<&PathRun> = run.vcpus.iter().filter(|r| r.trapped).collect();
    let direct: Vec<&PathRun> = run.vcpus.iter().filter(|r| r.direct).collect();
    if trapped.is_empty() || direct.is_empty() {
        return None;
    }
    let secs = run.elapsed.as_secs_f64();
    let (t, d) = (figures(&trapped, secs), figures(&direct, secs));
    let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    Some(Comparison {
        speedup_p50: ratio(t.batch_latency_ns.p50, d.batch_latency_ns.p50),
        speedup_p99: ratio(t.batch_latency_ns.p99, d.batch_latency_ns.p99),
        trapped: t,
        direct: d,
        measured: MEASURED.iter().map(|s| s.to_string()).collect(),
        modelled: vec![
            format!(
                "trapped host_invalidate_ns: {} (HWPT_INVALIDATE + the host SMMU's CMD_SYNC through iommufd; not run here)",
                modelled.batch_forward_ns
            ),
            format!(
                "direct hw_latency_ns: {} + {} per command (the VCMDQ hardware's own consumption; not run here)",
                modelled.hw_latency_ns, modelled.hw_ns_per_cmd
            ),
        ],
    })
}

/// One path's figures over its vCPUs.
pub fn figures(runs: &[&PathRun], secs: f64) -> PathFigures {
    let batches: u64 = runs.iter().map(|r| r.batches).sum();
    let commands: u64 = runs.iter().map(|r| r.commands).sum();
    let mmio: u64 = runs.iter().map(|r| r.exits.mmio_exits).sum();
    let pacing: u64 = runs.iter().map(|r| r.exits.pio_exits).sum();
    let mmio_ns: u64 = runs.iter().map(|r| r.exits.mmio_ns).sum();
    let mut lat: Vec<u64> = runs
        .iter()
        .flat_map(|r| r.latency_ns.iter().copied())
        .collect();
    let latency = percentiles(&mut lat);
    let per = |a: f64, b: u64| if b == 0 { 0.0 } else { a / b as f64 };
    PathFigures {
        batches,
        commands,
        exits: mmio + pacing,
        exits_source: "vmm".into(),
        exits_per_batch: per((mmio + pacing) as f64, batches),
        doorbell_exits: runs.iter().map(|r| r.exits.doorbell_exits).sum(),
        pacing_exits: pacing,
        batch_latency_ns: latency,
        vmm_ns_per_exit: per(mmio_ns as f64, mmio),
        ns_per_command: per(latency.p50 as f64 * batches as f64, commands),
        commands_per_s: if secs > 0.0 {
            commands as f64 / secs
        } else {
            0.0
        },
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kvm::vcpu::VcpuOutcome;

    fn path(trapped: bool, lat: &[u64], mmio: u64, doorbells: u64) -> PathRun {
        PathRun {
            cpu: trapped as u32,
            trapped,
            direct: !trapped,
            batches: lat.len() as u64,
            commands: 2 * lat.len() as u64,
            latency_ns: lat.to_vec(),
            exits: VcpuOutcome {
                mmio_exits: mmio,
                pio_exits: lat.len() as u64,
                doorbell_exits: doorbells,
                mmio_ns: 1000 * mmio,
                ..Default::default()
            },
            stuck: false,
        }
    }

    #[test]
    fn the_comparison_divides_trapped_by_direct_and_keeps_exits_apart() {
        let run = KvmRun {
            vcpus: vec![
                path(true, &[40, 50, 60, 70], 8, 4),
                path(false, &[10, 10, 20, 30], 0, 0),
            ],
            elapsed: std::time::Duration::from_secs(2),
            ..Default::default()
        };
        let c = comparison(&run, Costs::default()).unwrap();
        assert_eq!(c.trapped.batch_latency_ns.p50, 60);
        assert_eq!(c.direct.batch_latency_ns.p50, 20);
        assert_eq!(c.speedup_p50, 3.0);
        assert_eq!((c.trapped.exits, c.trapped.doorbell_exits), (12, 4));
        assert_eq!((c.direct.exits, c.direct.doorbell_exits), (4, 0));
        assert_eq!(c.trapped.exits_per_batch, 3.0);
        assert_eq!(c.trapped.vmm_ns_per_exit, 1000.0);
        assert_eq!(c.direct.commands_per_s, 4.0);
        assert!(!c.modelled.is_empty() && !c.measured.is_empty());
    }

    #[test]
    fn without_both_paths_there_is_no_comparison() {
        let run = KvmRun {
            vcpus: vec![path(true, &[1], 2, 1)],
            ..Default::default()
        };
        assert!(comparison(&run, Costs::default()).is_none());
    }
}
