//! Privileged: a tiny real-mode KVM guest (rust-vmm `kvm-ioctls`) stores into unmapped
//! guest-physical addresses, which KVM turns into MMIO exits and the `kvm:kvm_mmio` tracepoint.
//! The loader's window filter [gpa_lo, gpa_hi) must let the stores inside the window through
//! with the right gpa, length, value and type, and drop the store outside it in the kernel.
//!
//! Runs for real in CI (root, /dev/kvm). Set CMDQV_SKIP_PRIVILEGED=1 to skip it knowingly.
#![cfg(target_arch = "x86_64")]

use std::time::{Duration, Instant};

use cmdqv_core::{event::Payload, probe_abi};
use cmdqv_tui::ebpf::{Tracer, TracerConfig, kvm_exit};
use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::{Kvm, VcpuExit};

fn privileged() -> bool {
    if std::env::var_os("CMDQV_SKIP_PRIVILEGED").is_some_and(|v| v == "1") {
        eprintln!("CMDQV_SKIP_PRIVILEGED=1: skipping a privileged eBPF test");
        return false;
    }
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test loads eBPF and needs root (set CMDQV_SKIP_PRIVILEGED=1 to skip it knowingly)"
    );
    true
}

/// Both tests trace this process's guests: one guest at a time, or each sees the other's.
static ONE_GUEST: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The watched window (as if it were the CMDQV's guest-physical MMIO page).
const WINDOW: (u64, u64) = (0x8000, 0x9000);
/// Guest RAM: [0x1000, 0x5000); everything else is MMIO to KVM.
const RAM_BASE: u64 = 0x1000;
const RAM_SIZE: usize = 0x4000;

/// Real-mode code at RAM_BASE: two stores inside the window, one outside, then hlt.
const CODE: &[u8] = &[
    0xb0, 0x42, // mov al, 0x42
    0xa2, 0x00, 0x80, // mov [0x8000], al          (inside, 1 byte)
    0xb8, 0x34, 0x12, // mov ax, 0x1234
    0xa3, 0x10, 0x80, // mov [0x8010], ax          (inside, 2 bytes)
    0xb0, 0x43, // mov al, 0x43
    0xa2, 0x00, 0x90, // mov [0x9000], al          (outside)
    0xf4, // hlt
];

/// Runs the guest to its hlt; returns the MMIO writes KVM handed to userspace.
fn run_guest() -> Vec<(u64, Vec<u8>)> {
    let kvm = Kvm::new().expect("open /dev/kvm");
    let vm = kvm.create_vm().expect("KVM_CREATE_VM");
    // SAFETY: anonymous private mapping owned by this function until the VM is dropped (the VM
    // is dropped before the munmap at the end).
    let mem = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            RAM_SIZE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_ANONYMOUS | libc::MAP_PRIVATE | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    assert_ne!(mem, libc::MAP_FAILED);
    // SAFETY: `mem` is RAM_SIZE bytes, CODE is shorter.
    unsafe { std::ptr::copy_nonoverlapping(CODE.as_ptr(), mem.cast::<u8>(), CODE.len()) };
    let region = kvm_userspace_memory_region {
        slot: 0,
        guest_phys_addr: RAM_BASE,
        memory_size: RAM_SIZE as u64,
        userspace_addr: mem as u64,
        flags: 0,
    };
    // SAFETY: the region is valid mapped memory that outlives the VM.
    unsafe { vm.set_user_memory_region(region) }.expect("KVM_SET_USER_MEMORY_REGION");
    let mut vcpu = vm.create_vcpu(0).expect("KVM_CREATE_VCPU");
    let mut sregs = vcpu.get_sregs().unwrap();
    sregs.cs.base = 0;
    sregs.cs.selector = 0;
    sregs.ds.base = 0;
    sregs.ds.selector = 0;
    vcpu.set_sregs(&sregs).unwrap();
    let mut regs = vcpu.get_regs().unwrap();
    regs.rip = RAM_BASE;
    regs.rflags = 2;
    vcpu.set_regs(&regs).unwrap();

    let mut writes = Vec::new();
    for _ in 0..100 {
        match vcpu.run().expect("KVM_RUN") {
            VcpuExit::MmioWrite(addr, data) => writes.push((addr, data.to_vec())),
            VcpuExit::Hlt => break,
            other => panic!("unexpected vCPU exit {other:?}"),
        }
    }
    drop(vcpu);
    drop(vm);
    // SAFETY: the mapping from above; the VM that referenced it is gone.
    unsafe { libc::munmap(mem, RAM_SIZE) };
    writes
}

#[test]
fn kvm_mmio_fires_for_a_real_guest_and_is_filtered_to_the_window_in_the_kernel() {
    if !privileged() {
        return;
    }
    let _one = ONE_GUEST.lock().unwrap_or_else(|p| p.into_inner());
    let pid = std::process::id();
    let mut tracer = Tracer::load(&TracerConfig {
        pid,
        kvm_mmio: true,
        gpa_lo: WINDOW.0,
        gpa_hi: WINDOW.1,
        ..Default::default()
    })
    .expect("load eBPF object");
    let st = tracer
        .probes()
        .iter()
        .find(|p| p.name == "tracepoint:kvm/kvm_mmio")
        .expect("kvm_mmio status");
    assert_eq!(st.status, "attached", "{st:?}");

    let writes = run_guest();
    // The guest really performed all three stores, the outside one included: what the kernel
    // filter drops below is not missing from the guest.
    assert_eq!(
        writes,
        vec![
            (0x8000, vec![0x42]),
            (0x8010, vec![0x34, 0x12]),
            (0x9000, vec![0x43])
        ]
    );

    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        tracer
            .poll(Duration::from_millis(100), |rec| {
                let ev = probe_abi::decode(rec).expect("decodable kvm_mmio record");
                assert_eq!(ev.pid, pid);
                match ev.payload {
                    Payload::KvmMmio {
                        kind,
                        len,
                        gpa,
                        value,
                    } => seen.push((kind, len, gpa, value)),
                    p => panic!("only kvm_mmio was attached, got {p:?}"),
                }
            })
            .unwrap();
        if seen.len() >= 2 {
            // Give a leaked outside write the same chance to arrive before judging.
            tracer
                .poll(Duration::from_millis(200), |rec| {
                    if let Ok(ev) = probe_abi::decode(rec) {
                        if let Payload::KvmMmio {
                            kind,
                            len,
                            gpa,
                            value,
                        } = ev.payload
                        {
                            seen.push((kind, len, gpa, value));
                        }
                    }
                })
                .unwrap();
            break;
        }
    }
    for &(_, _, gpa, _) in &seen {
        assert!(
            (WINDOW.0..WINDOW.1).contains(&gpa),
            "the in-kernel window filter let gpa {gpa:#x} through: {seen:x?}"
        );
    }
    const WRITE: u32 = 2; // KVM_TRACE_MMIO_WRITE
    seen.dedup();
    assert_eq!(
        seen,
        vec![(WRITE, 1, 0x8000, 0x42), (WRITE, 2, 0x8010, 0x1234)],
        "kvm_mmio events (type, len, gpa, value)"
    );
    assert_eq!(tracer.drops(), 0);
}

#[test]
fn without_a_window_every_guest_mmio_write_is_delivered() {
    // The control for the test above: the outside store does fire kvm:kvm_mmio, so its absence
    // there is the window filter's doing.
    if !privileged() {
        return;
    }
    let _one = ONE_GUEST.lock().unwrap_or_else(|p| p.into_inner());
    let pid = std::process::id();
    let mut tracer = Tracer::load(&TracerConfig {
        pid,
        kvm_mmio: true,
        ..Default::default()
    })
    .expect("load eBPF object");
    assert_eq!(run_guest().len(), 3);
    let mut gpas = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while gpas.len() < 3 && Instant::now() < deadline {
        tracer
            .poll(Duration::from_millis(100), |rec| {
                if let Ok(ev) = probe_abi::decode(rec) {
                    if let Payload::KvmMmio { gpa, kind: 2, .. } = ev.payload {
                        if !gpas.contains(&gpa) {
                            gpas.push(gpa);
                        }
                    }
                }
            })
            .unwrap();
    }
    assert_eq!(gpas, [0x8000, 0x8010, 0x9000]);
}

#[test]
fn every_exit_of_the_guest_reaches_the_exit_probes_with_its_reason() {
    if !privileged() {
        return;
    }
    let _one = ONE_GUEST.lock().unwrap_or_else(|p| p.into_inner());
    let pid = std::process::id();
    let mut tracer = Tracer::load(&TracerConfig {
        pid,
        kvm_exit: true,
        ..Default::default()
    })
    .expect("load eBPF object");
    for label in [kvm_exit::LABEL, kvm_exit::USERSPACE_LABEL] {
        let st = tracer.probes().iter().find(|p| p.name == label).unwrap();
        assert_eq!(st.status, "attached", "{st:?}");
    }
    // SAFETY: gettid has no preconditions; the guest runs on this thread.
    let tid = unsafe { libc::gettid() } as u32;
    assert_eq!(run_guest().len(), 3);
    // (isa, reason, info) of this thread's exits, the VMM-bound ones and the kernel's own.
    let (mut to_vmm, mut all) = (Vec::new(), Vec::new());
    let deadline = Instant::now() + Duration::from_secs(3);
    while to_vmm.len() < 4 && Instant::now() < deadline {
        tracer
            .poll(Duration::from_millis(100), |rec| {
                let ev = probe_abi::decode(rec).expect("decodable record");
                let Payload::KvmExit(e) = ev.payload else {
                    panic!("only exit probes were attached, got {:?}", ev.payload)
                };
                let (isa, reason, info) = (e.isa, e.reason, e.info);
                if ev.tid != tid {
                    return;
                }
                if isa == cmdqv_core::kvm_exit::USERSPACE_EXIT {
                    to_vmm.push((reason, info as i64));
                } else {
                    all.push((isa, reason, info));
                }
            })
            .unwrap();
    }
    // Three MMIO stores (KVM_EXIT_MMIO = 6), then the hlt (KVM_EXIT_HLT = 5), none failed.
    assert_eq!(to_vmm, [(6, 0), (6, 0), (6, 0), (5, 0)]);
    // Where this kernel fires kvm_exit (VMX, SVM, arm64; not PVM), it saw at least the
    // stores as MMIO exits, and the hlt.
    if !all.is_empty() {
        let mmio = all
            .iter()
            .filter(|&&(isa, r, i)| cmdqv_core::kvm_exit::is_mmio(isa, r, i))
            .count();
        assert!(mmio >= 3 && all.len() >= 4, "{all:?}");
    }
}
