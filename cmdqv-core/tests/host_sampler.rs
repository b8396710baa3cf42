//! A child process plays the VMM: it maps a simulated-host VINTF page0 (a memfd, as the
//! simulated host does) and advances two LVCMDQs. The sampler, from this process, finds the
//! mapping in /proc/PID/maps, duplicates the memfd with pidfd_getfd, maps it read-only and must
//! see the indices advance.

use std::{
    io::{BufRead, BufReader, Write},
    process::{Command, Stdio},
    time::Duration,
};

use cmdqv_core::host::{PAGE0_LEN, Page0, page0, sampler::Sampler};
use nix::sys::memfd::{MFdFlags, memfd_create};

const CHILD_ENV: &str = "CMDQV_SAMPLER_CHILD";

/// Re-runs this test binary as a child executing the ignored test `name` (with `env` set), and
/// waits until it prints "ready". The child's stdout stays open (returned) for its lifetime.
fn spawn_ready(
    name: &str,
    env: &str,
) -> (std::process::Child, BufReader<std::process::ChildStdout>) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            name,
            "--nocapture",
            "--test-threads=1",
        ])
        .env(env, "1")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("ready") {
        line.clear();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "child exited before it was ready"
        );
    }
    (child, out)
}

/// Not a test of its own: the body of the child process, run (ignored tests included) by the
/// sampler test below with CHILD_ENV set.
#[test]
#[ignore = "child-process body of sampler_sees_a_child_vmms_queues_advance_through_pidfd_getfd"]
fn helper_child_vmm() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let file = std::fs::File::from(memfd_create("cmdqv-vintf-page0", MFdFlags::empty()).unwrap());
    file.set_len(PAGE0_LEN as u64).unwrap();
    let map = memmap2::MmapOptions::new()
        .len(PAGE0_LEN)
        .map_raw(&file)
        .unwrap();
    let page = Page0::new(map, true).unwrap();
    let log2size = 4u32;
    let modulus = 1u32 << (log2size + 1);
    for l in 0..2 {
        page.write32(l, page0::CONFIG, 1);
        page.write32(l, page0::STATUS, 1);
    }
    println!("ready");
    std::io::stdout().flush().unwrap();
    let mut idx = [0u32; 2];
    for _ in 0..20_000 {
        for (l, i) in idx.iter_mut().enumerate() {
            let step = 3 + l as u32;
            let next = (*i + step) % modulus;
            page.write32(l, page0::PROD_INDX, next);
            page.write32(l, page0::CONS_INDX, next);
            *i = next;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
}

#[test]
fn sampler_sees_a_child_vmms_queues_advance_through_pidfd_getfd() {
    let (mut child, _stdout) = spawn_ready("helper_child_vmm", CHILD_ENV);
    let result = (|| {
        let mut s = Sampler::attach(child.id(), 2).map_err(|e| e.to_string())?;
        assert!(!s.mapping.is_iommufd());
        s.set_log2size(0, 4);
        s.set_log2size(1, 4);
        let mut consumed = [0u64; 2];
        let mut distinct = std::collections::HashSet::new();
        for _ in 0..40 {
            for q in s.sample() {
                assert!(q.enabled, "{q:?}");
                assert!(
                    q.prod < 32 && q.cons < 32,
                    "indices must stay inside a 2^5 space: {q:?}"
                );
                assert_eq!(q.cerror, 0);
                consumed[q.lidx] += q.consumed;
                distinct.insert((q.lidx, q.cons));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok::<_, String>((consumed, distinct.len()))
    })();
    let _ = child.kill();
    let _ = child.wait();
    let (consumed, distinct) = result.expect("sampler attach");
    assert!(
        consumed[0] > 0 && consumed[1] > 0,
        "no progress seen: {consumed:?}"
    );
    assert!(
        distinct > 4,
        "indices did not move: {distinct} distinct values"
    );
}

const SIM_CHILD_ENV: &str = "CMDQV_SAMPLER_SIM_CHILD";

/// Not a test of its own: the body of the second child (runs only with SIM_CHILD_ENV set). The
/// real sim VMM with its simulated host runs the trapped-vs-vcmdq scenario: vCPU 1 submits to
/// hardware-backed LVCMDQ 1 without trapping.
#[test]
#[ignore = "child-process body of sampler_sees_the_sim_vmms_hardware_backed_lvcmdq_advance"]
fn helper_child_sim_vmm() {
    use cmdqv_core::sim::{emit::Emitter, scenario, vmm};
    if std::env::var_os(SIM_CHILD_ENV).is_none() {
        return;
    }
    let sc = scenario("trapped-vs-vcmdq").unwrap();
    let v = vmm::Vmm::new(&sc, Emitter::hooks_only()).unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            while !v.is_backed(1) {
                std::thread::sleep(Duration::from_millis(1));
            }
            println!("ready");
            std::io::stdout().flush().unwrap();
        });
        vmm::run(&v, &sc, Duration::from_secs(20)).unwrap();
    });
}

#[test]
fn sampler_sees_the_sim_vmms_hardware_backed_lvcmdq_advance() {
    let (mut child, _stdout) = spawn_ready("helper_child_sim_vmm", SIM_CHILD_ENV);
    let result = (|| {
        let mut s = Sampler::attach(child.id(), 2).map_err(|e| e.to_string())?;
        assert!(!s.mapping.is_iommufd());
        // The scenario's rings hold 2^10 entries.
        s.set_log2size(0, 10);
        s.set_log2size(1, 10);
        let mut consumed = [0u64; 2];
        let mut distinct = std::collections::HashSet::new();
        for _ in 0..60 {
            for q in s.sample() {
                assert!(q.enabled, "the guest enabled both LVCMDQs: {q:?}");
                assert!(q.prod < 2048 && q.cons < 2048, "{q:?}");
                assert_eq!(q.cerror, 0);
                consumed[q.lidx] += q.consumed;
                distinct.insert((q.lidx, q.cons));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok::<_, String>((consumed, distinct.len()))
    })();
    let _ = child.kill();
    let _ = child.wait();
    let (consumed, distinct) = result.expect("sampler attach");
    // vCPU 0 uses only the trapped SMMU queue: LVCMDQ 0 is backed but idle.
    assert_eq!(consumed[0], 0, "{consumed:?}");
    assert!(consumed[1] > 10, "no progress seen: {consumed:?}");
    assert!(
        distinct > 4,
        "indices did not move: {distinct} distinct values"
    );
}
