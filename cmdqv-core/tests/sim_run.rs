//! The sim VMM runs each scenario in-process: the synthetic guest brings the device up the way
//! Linux does, submits its workload, and every command it submitted is executed exactly once —
//! through the model, the SMMU queue or the simulated host — across handovers.

use std::{sync::atomic::Ordering, time::Duration};

use cmdqv_core::sim::{emit::Emitter, scenario, vmm};

fn run(name: &str, ms: u64) -> (vmm::RunStats, u64, vmm::HandoverStats) {
    let sc = scenario(name).unwrap();
    let v = vmm::Vmm::new(&sc, Emitter::hooks_only()).unwrap();
    let st = vmm::run(&v, &sc, Duration::from_millis(ms)).expect("bring-up");
    (st, v.executed.load(Ordering::Relaxed), v.handover_stats())
}

#[test]
fn steady_unmap_executes_every_submitted_command_once() {
    let (st, executed, _) = run("steady-unmap", 400);
    assert_eq!(st.driver_errors, 0, "{st:?}");
    assert!(st.batches > 50, "{st:?}");
    // Bring-up adds the deinit flush CMD_SYNCs on the SMMU queue (2 per LVCMDQ deinit, twice).
    assert_eq!(st.bringup_commands, 8);
    assert_eq!(executed, st.submitted + 8, "{st:?}");
    assert_eq!((st.commands_lost, st.commands_duplicated), (0, 0));
}

#[test]
fn error_storm_recovers_like_linux() {
    let (st, executed, _) = run("error-storm", 400);
    assert_eq!(st.driver_errors, 0, "{st:?}");
    assert!(st.errors_recovered > 0, "{st:?}");
    // The illegal entries are overwritten with CMD_SYNC and then executed.
    assert_eq!(executed, st.submitted + 8, "{st:?}");
}

#[test]
fn handover_under_load_loses_nothing_and_views_agree() {
    let (st, executed, h) = run("handover", 1200);
    assert_eq!(st.driver_errors, 0, "{st:?}");
    assert!(h.handovers >= 4, "{h:?}");
    assert_eq!(h.view_mismatches, 0, "{h:?}");
    assert_eq!(executed, st.submitted + 8, "{st:?} {h:?}");
    assert_eq!((st.commands_lost, st.commands_duplicated), (0, 0), "{st:?}");
}

#[test]
fn trapped_vs_vcmdq_runs_both_paths() {
    let (st, executed, h) = run("trapped-vs-vcmdq", 400);
    assert_eq!(st.driver_errors, 0, "{st:?}");
    assert!(h.handovers >= 2);
    assert_eq!(executed, st.submitted + 8, "{st:?}");
}

#[test]
fn hardware_errors_reach_the_guest_through_vevents_and_it_recovers() {
    use cmdqv_core::{
        host::simulated::Injection,
        regs::Cerror,
        sim::vmm::{Vmm, VmmOptions},
    };
    let sc = scenario("handover").unwrap();
    let mut o = VmmOptions::for_scenario(&sc);
    // ABT: Linux acknowledges and the hardware fetches the command again.
    o.host.inject = Some(Injection {
        every: 97,
        cerror: Cerror::Abt,
    });
    let v = Vmm::with_options(&sc, Emitter::hooks_only(), o).unwrap();
    let st = vmm::run(&v, &sc, Duration::from_millis(1200)).expect("bring-up");
    let p = v.pass_stats();
    assert_eq!(st.driver_errors, 0, "{st:?} {p:?}");
    assert!(p.vevents > 0 && st.errors_recovered > 0, "{st:?} {p:?}");
    assert_eq!(
        v.executed.load(Ordering::Relaxed),
        st.submitted + 8,
        "{st:?} {p:?}"
    );
    assert_eq!((st.commands_lost, st.commands_duplicated), (0, 0), "{st:?}");
    assert_eq!(v.handover_stats().view_mismatches, 0);
}

#[test]
fn a_host_without_hardware_queues_leaves_every_queue_emulated_and_working() {
    use cmdqv_core::sim::vmm::{Vmm, VmmOptions};
    let sc = scenario("trapped-vs-vcmdq").unwrap();
    let mut o = VmmOptions::for_scenario(&sc);
    // A ring larger than the host SMMU's CMDQS allows: every HW_QUEUE_ALLOC fails (EINVAL).
    o.host.cmdqs = 8;
    let v = Vmm::with_options(&sc, Emitter::hooks_only(), o).unwrap();
    let st = vmm::run(&v, &sc, Duration::from_millis(400)).expect("bring-up");
    assert_eq!(st.driver_errors, 0, "{st:?}");
    assert!(v.handover_stats().alloc_failures >= 1);
    assert_eq!(v.pass_stats().allocs, 0);
    assert_eq!(
        v.executed.load(Ordering::Relaxed),
        st.submitted + 8,
        "{st:?}"
    );
}

#[test]
fn the_same_vmm_on_a_kernel_without_iommufd_runs_emulated_and_says_why() {
    use cmdqv_core::{
        host::iommufd::IommufdBackend,
        sim::vmm::{Vmm, VmmOptions},
    };
    // /dev/null opens read-write but answers every iommufd ioctl with ENOTTY, exactly as a
    // kernel without vIOMMU support does: the real backend behind the same state machine.
    let sc = scenario("trapped-vs-vcmdq").unwrap();
    let mut o = VmmOptions::for_scenario(&sc);
    o.backend = Some(Box::new(IommufdBackend::open("/dev/null").unwrap()));
    let v = Vmm::with_options(&sc, Emitter::hooks_only(), o).unwrap();
    let notes = v.notes();
    assert!(
        notes.len() == 1 && notes[0].contains("ENOTTY") && notes[0].contains("6.17"),
        "{notes:?}"
    );
    let st = vmm::run(&v, &sc, Duration::from_millis(300)).expect("bring-up");
    assert_eq!(st.driver_errors, 0, "{st:?}");
    assert!(!v.is_backed(0) && !v.is_backed(1));
    assert_eq!(
        v.executed.load(Ordering::Relaxed),
        st.submitted + 8,
        "{st:?}"
    );
}

#[test]
fn hw_errors_scenario_recovers_through_vevents() {
    let sc = scenario("hw-errors").unwrap();
    let v = vmm::Vmm::new(&sc, Emitter::hooks_only()).unwrap();
    let st = vmm::run(&v, &sc, Duration::from_millis(600)).expect("bring-up");
    let p = v.pass_stats();
    assert_eq!(st.driver_errors, 0, "{st:?}");
    assert!(p.vevents > 0 && st.errors_recovered > 0, "{st:?} {p:?}");
    assert_eq!(
        v.executed.load(Ordering::Relaxed),
        st.submitted + 8,
        "{st:?} {p:?}"
    );
}
