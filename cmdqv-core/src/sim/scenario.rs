//! Named workloads for `cmdqv sim` (listed by `cmdqv sim --list`).

use std::time::Duration;

use crate::regs::Geometry;

/// Modelled costs. These are the simulation's inputs, not measurements of real hardware: the
/// defaults of the comparison scenario are chosen to match the published figures for a 4 KiB
/// DMA unmap (35.7 µs trapped, 5.3 µs through a VCMDQ).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Costs {
    /// Every trapped guest MMIO access (exit to the VMM and back).
    pub trap_ns: u64,
    /// Trapped SMMU queue: forwarding a batch to the host (HWPT_INVALIDATE + host CMD_SYNC).
    pub batch_forward_ns: u64,
    /// Hardware VCMDQ: fixed latency before a batch is consumed.
    pub hw_latency_ns: u64,
    pub hw_ns_per_cmd: u64,
}

/// How VCMDQs are backed.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Path {
    /// Fully emulated by the model (every access traps).
    Emulated,
    /// Backed by the simulated host's hardware from bring-up on.
    Passthrough,
    /// Moved between emulation and hardware every `period`, under load.
    Handover { period: Duration },
    /// vCPU 0 uses only the trapped SMMU queue, vCPU 1 a hardware-backed VCMDQ.
    Compare,
}

#[derive(Clone, Debug)]
pub struct Scenario {
    pub name: &'static str,
    pub about: &'static str,
    pub geometry: Geometry,
    pub vcpus: u32,
    /// LVCMDQs used (vCPU i uses LVCMDQ i % lvcmdqs, as Linux picks by CPU id).
    pub lvcmdqs: u32,
    pub log2size: u8,
    /// Batches per second per vCPU.
    pub rate_hz: u32,
    /// vCPU i runs at rate × (1 + skew × i).
    pub rate_skew: f64,
    /// 1..=max_tlbi TLBI_NH_VA per batch.
    pub max_tlbi: u32,
    /// Every Nth batch is a TLBI_NH_ASID (ASID flush) instead (0 = never).
    pub asid_every: u32,
    /// Every Nth batch carries an illegal command (0 = never).
    pub error_every: u32,
    /// Every Nth batch is followed by CFGI_STE + CFGI_CD on the trapped SMMU queue (0 = never).
    pub cfgi_every: u32,
    /// The simulated host's hardware fails every Nth command with CERROR_ABT (0 = never): a
    /// hardware error the guest learns of through a vEVENT.
    pub hw_abt_every: u64,
    pub path: Path,
    pub costs: Costs,
}

fn guest_geometry(vcmdq_log2: u8) -> Geometry {
    Geometry {
        num_vintf_log2: 0,
        num_vcmdq_log2: vcmdq_log2,
        num_sid_per_vintf_log2: 4,
    }
}

const BASE: Scenario = Scenario {
    name: "",
    about: "",
    geometry: Geometry {
        num_vintf_log2: 0,
        num_vcmdq_log2: 1,
        num_sid_per_vintf_log2: 4,
    },
    vcpus: 2,
    lvcmdqs: 2,
    log2size: 10,
    rate_hz: 400,
    rate_skew: 0.0,
    max_tlbi: 8,
    asid_every: 50,
    error_every: 0,
    cfgi_every: 200,
    hw_abt_every: 0,
    path: Path::Emulated,
    costs: Costs {
        trap_ns: 0,
        batch_forward_ns: 0,
        hw_latency_ns: 2_000,
        hw_ns_per_cmd: 50,
    },
};

/// Every scenario, in `--list` order. The first is the default.
pub fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "steady-unmap",
            about: "2 vCPUs doing DMA-unmap batches (TLBI_NH_VA ranges + CMD_SYNC) on fully emulated VCMDQs, ASID flushes, CFGI on the SMMU queue",
            ..BASE
        },
        Scenario {
            name: "multi-queue",
            about: "4 vCPUs on 4 LVCMDQs (1 VINTF, 8 VCMDQs) at different rates",
            geometry: guest_geometry(3),
            vcpus: 4,
            lvcmdqs: 4,
            rate_hz: 200,
            rate_skew: 0.75,
            ..BASE
        },
        Scenario {
            name: "error-storm",
            about: "illegal commands every 5th batch: CERROR_ILL, error maps, interrupt, and Linux's recovery (CMD_SYNC over the bad entry, GERRORN := GERROR)",
            error_every: 5,
            rate_hz: 300,
            ..BASE
        },
        Scenario {
            name: "handover",
            about: "passthrough handover under load: queues move between emulation and the simulated host's hardware every 250 ms; reports commands_lost and view_mismatches",
            path: Path::Handover {
                period: Duration::from_millis(250),
            },
            ..BASE
        },
        Scenario {
            name: "hw-errors",
            about: "hardware-backed VCMDQs whose simulated host aborts every 50th command fetch: vEVENT, error maps and interrupt in the VMM, Linux's acknowledgement through the mapped page0, the hardware retries",
            path: Path::Passthrough,
            hw_abt_every: 50,
            ..BASE
        },
        Scenario {
            name: "many-queues",
            about: "128 vCPUs on all 128 LVCMDQs of one VINTF (128 VCMDQs), hardware-backed from bring-up, 10 batches/s each: a host at the scale `cmdqv serve`'s budget is measured at",
            geometry: guest_geometry(7),
            vcpus: 128,
            lvcmdqs: 128,
            rate_hz: 10,
            path: Path::Passthrough,
            ..BASE
        },
        Scenario {
            name: "trapped-vs-vcmdq",
            about: "vCPU 0 invalidates through the trapped SMMU queue (modelled exit + HWPT_INVALIDATE), vCPU 1 through a hardware-backed VCMDQ (no exit): compare batch latency",
            path: Path::Compare,
            max_tlbi: 1,
            asid_every: 0,
            cfgi_every: 0,
            rate_hz: 200,
            costs: Costs {
                trap_ns: 4_000,
                batch_forward_ns: 28_000,
                hw_latency_ns: 4_500,
                hw_ns_per_cmd: 100,
            },
            ..BASE
        },
    ]
}

/// Looks a scenario up by name.
pub fn scenario(name: &str) -> Option<Scenario> {
    scenarios().into_iter().find(|s| s.name == name)
}
