//! Privileged: loads the real eBPF object, attaches the syscall tracepoints, issues
//! iommufd-numbered ioctls on /dev/null (they fail with ENOTTY) and checks that the decoded
//! events arrive with the right command, errno, fd and pid.
//!
//! Runs for real in CI (root). On a machine without privileges it fails with a clear message;
//! set CMDQV_SKIP_PRIVILEGED=1 to skip it knowingly.

use std::{
    os::fd::AsRawFd,
    time::{Duration, Instant},
};

use cmdqv_core::{
    event::{Payload, errno_name, iommufd_ioctl_name},
    probe_abi,
};
use cmdqv_tui::ebpf::{Tracer, TracerConfig};

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

#[test]
fn iommufd_ioctls_on_dev_null_are_seen_with_command_errno_and_pid() {
    if !privileged() {
        return;
    }
    let pid = std::process::id();
    let mut tracer = Tracer::load(&TracerConfig {
        pid,
        syscalls: true,
        ..Default::default()
    })
    .expect("load eBPF object");
    for p in tracer.probes() {
        if p.name.contains("ioctl") {
            assert_eq!(p.status, "attached", "{p:?}");
        }
    }

    let f = std::fs::File::open("/dev/null").unwrap();
    let fd = f.as_raw_fd();
    // IOMMU_VIOMMU_ALLOC, IOMMU_HW_QUEUE_ALLOC, IOMMU_DESTROY; a non-iommufd ioctl (TCGETS) that
    // the in-kernel filter must drop.
    let wanted = [0x3b90u32, 0x3b94, 0x3b80];
    let mut arg = [0u8; 64];
    arg[0..4].copy_from_slice(&40u32.to_le_bytes());
    arg[4..8].copy_from_slice(&0xabcd_0123u32.to_le_bytes());
    for cmd in wanted.iter().chain([0x5401u32].iter()) {
        let r = unsafe { libc::ioctl(fd, *cmd as _, arg.as_mut_ptr()) };
        assert_eq!(r, -1);
        assert_eq!(
            std::io::Error::last_os_error().raw_os_error(),
            Some(libc::ENOTTY)
        );
    }

    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while seen.len() < wanted.len() && Instant::now() < deadline {
        tracer
            .poll(Duration::from_millis(100), |rec| {
                // mmap/munmap records of this process arrive too; only ioctls matter here (an
                // undecodable ioctl record makes the test fail by never being seen).
                let Ok(ev) = probe_abi::decode(rec) else {
                    return;
                };
                if let Payload::Ioctl {
                    fd: efd,
                    cmd,
                    ret,
                    arg,
                    arg_len,
                    duration_ns,
                } = ev.payload
                {
                    assert_ne!(
                        cmd, 0x5401,
                        "the in-kernel filter let a non-iommufd ioctl through"
                    );
                    if efd == fd {
                        assert_eq!(ev.pid, pid);
                        assert_eq!(ret, -(libc::ENOTTY as i64));
                        assert_eq!(arg_len, 48);
                        assert_eq!(&arg[0..8], &arg_copy()[0..8]);
                        assert!(duration_ns < 1_000_000_000);
                        seen.push((cmd, ret));
                    }
                }
            })
            .unwrap();
    }
    let names: Vec<_> = seen
        .iter()
        .map(|(c, r)| {
            format!(
                "{} -> {}",
                iommufd_ioctl_name(*c).unwrap_or("?"),
                errno_name(-r)
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            "IOMMU_VIOMMU_ALLOC -> ENOTTY",
            "IOMMU_HW_QUEUE_ALLOC -> ENOTTY",
            "IOMMU_DESTROY -> ENOTTY"
        ]
    );
    assert_eq!(tracer.drops(), 0);
}

fn arg_copy() -> [u8; 8] {
    let mut a = [0u8; 8];
    a[0..4].copy_from_slice(&40u32.to_le_bytes());
    a[4..8].copy_from_slice(&0xabcd_0123u32.to_le_bytes());
    a
}

#[test]
fn mmap_and_munmap_of_an_fd_are_seen_with_fd_len_offset_and_address() {
    if !privileged() {
        return;
    }
    let pid = std::process::id();
    let mut tracer = Tracer::load(&TracerConfig {
        pid,
        syscalls: true,
        ..Default::default()
    })
    .expect("load eBPF object");
    for p in tracer.probes() {
        if p.name.contains("mmap") {
            assert_eq!(p.status, "attached", "{p:?}");
        }
    }
    // A 4-page file, mapped 3 pages from page 1: sizes nobody else in this process uses.
    let path = std::env::temp_dir().join(format!("cmdqv-mmap-test-{pid}"));
    std::fs::write(&path, vec![0u8; 4 * 4096]).unwrap();
    let f = std::fs::File::open(&path).unwrap();
    let fd = f.as_raw_fd();
    const LEN: usize = 3 * 4096;
    // SAFETY: a fresh shared read-only mapping of our own file, unmapped below.
    let addr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            LEN,
            libc::PROT_READ,
            libc::MAP_SHARED,
            fd,
            4096,
        )
    };
    assert_ne!(addr, libc::MAP_FAILED);
    // SAFETY: the mapping from above.
    assert_eq!(unsafe { libc::munmap(addr, LEN) }, 0);
    let _ = std::fs::remove_file(&path);

    let (mut mapped, mut unmapped) = (None, None);
    let deadline = Instant::now() + Duration::from_secs(5);
    while (mapped.is_none() || unmapped.is_none()) && Instant::now() < deadline {
        tracer
            .poll(Duration::from_millis(100), |rec| {
                let Ok(ev) = probe_abi::decode(rec) else {
                    return;
                };
                assert_eq!(ev.pid, pid, "the pid filter let another process through");
                if let Payload::Mmap {
                    fd: efd,
                    addr: eaddr,
                    len,
                    offset,
                    ret,
                    map,
                } = ev.payload
                {
                    if map && efd == fd && len == LEN as u64 {
                        mapped = Some((offset, ret, eaddr));
                    } else if !map && eaddr == addr as u64 && len == LEN as u64 {
                        unmapped = Some(efd);
                    }
                }
            })
            .unwrap();
    }
    assert_eq!(
        mapped,
        Some((4096, addr as i64, addr as u64)),
        "mmap event (offset, ret, addr)"
    );
    assert_eq!(unmapped, Some(-1), "munmap event (it carries no fd)");
    assert_eq!(tracer.drops(), 0);
}
