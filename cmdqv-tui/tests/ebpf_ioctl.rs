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
        // Raw kernel-side view: every fd-backed mapping of this process.
        all_mmaps: true,
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

/// Maps 2 pages of a fresh temporary file at page 1 and unmaps them.
fn map_a_regular_file(tag: &str) -> (i32, u64) {
    let path = std::env::temp_dir().join(format!("cmdqv-{tag}-{}", std::process::id()));
    std::fs::write(&path, vec![0u8; 4 * 4096]).unwrap();
    let f = std::fs::File::open(&path).unwrap();
    // SAFETY: a fresh shared read-only mapping of our own file, unmapped right away.
    let addr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            2 * 4096,
            libc::PROT_READ,
            libc::MAP_SHARED,
            f.as_raw_fd(),
            4096,
        )
    };
    assert_ne!(addr, libc::MAP_FAILED);
    // SAFETY: the mapping from above.
    assert_eq!(unsafe { libc::munmap(addr, 2 * 4096) }, 0);
    let _ = std::fs::remove_file(&path);
    (f.as_raw_fd(), addr as u64)
}

#[test]
fn by_default_only_iommufd_mappings_reach_userspace_consumers() {
    if !privileged() {
        return;
    }
    let mut tracer = Tracer::load(&TracerConfig {
        pid: std::process::id(),
        syscalls: true,
        ..Default::default()
    })
    .expect("load eBPF object");
    let (fd, addr) = map_a_regular_file("filtered");
    // A marker after the mapping: the ring buffer keeps reservation order, so once the marker
    // is read, the mmap and munmap records have been read (and judged) too.
    let null = std::fs::File::open("/dev/null").unwrap();
    let marker = 0x3b87u32; // IOMMU_OPTION, fails with ENOTTY (so nothing is learnt from it)
    let mut arg = [0u8; 64];
    unsafe { libc::ioctl(null.as_raw_fd(), marker as _, arg.as_mut_ptr()) };
    let mut marker_seen = false;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !marker_seen && Instant::now() < deadline {
        tracer
            .poll(Duration::from_millis(100), |rec| {
                let Ok(ev) = probe_abi::decode(rec) else {
                    return;
                };
                match ev.payload {
                    Payload::Ioctl { fd: f, cmd, .. } if cmd == marker && f == null.as_raw_fd() => {
                        marker_seen = true
                    }
                    Payload::Mmap { fd: f, addr: a, .. } => assert!(
                        f != fd && a != addr,
                        "a regular file's mapping got through the iommufd filter: {ev:?}"
                    ),
                    _ => {}
                }
            })
            .unwrap();
    }
    assert!(marker_seen, "the marker ioctl never arrived");
    assert!(
        tracer.filtered() >= 2,
        "the mmap and munmap were filtered in userspace, not lost: {}",
        tracer.filtered()
    );
}

#[test]
fn the_ring_buffer_is_read_through_the_async_runtime() {
    async_reader_sees_ioctls(0);
}

#[test]
fn with_batched_wakeups_the_async_reader_still_gets_a_quiet_tail() {
    // Two records are far below the threshold: the kernel never wakes the reader, its timer must.
    async_reader_sees_ioctls(cmdqv_tui::ebpf::BATCHED_WAKEUP_BYTES);
}

fn async_reader_sees_ioctls(wakeup_bytes: u64) {
    if !privileged() {
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let tracer = Tracer::load(&TracerConfig {
            pid: std::process::id(),
            syscalls: true,
            wakeup_bytes,
            ..Default::default()
        })
        .expect("load eBPF object");
        let mut at = tracer
            .into_async()
            .expect("register the ring buffer with tokio");
        let null = std::fs::File::open("/dev/null").unwrap();
        let nfd = null.as_raw_fd();
        // Issued from another thread after the reader is already waiting.
        let issuer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            let mut arg = [0u8; 64];
            for cmd in [0x3b90u32, 0x3b8d] {
                unsafe { libc::ioctl(nfd, cmd as _, arg.as_mut_ptr()) };
            }
        });
        let mut seen = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while seen.len() < 2 {
            let batch = tokio::time::timeout_at(
                deadline,
                at.next_batch(|rec| {
                    if let Ok(ev) = probe_abi::decode(rec) {
                        if let Payload::Ioctl { fd, cmd, ret, .. } = ev.payload {
                            if fd == nfd {
                                seen.push((cmd, ret));
                            }
                        }
                    }
                }),
            )
            .await
            .expect("no batch within 5 s")
            .unwrap();
            assert!(batch > 0, "next_batch returns only with records");
        }
        issuer.join().unwrap();
        let enotty = -(libc::ENOTTY as i64);
        assert_eq!(seen, [(0x3b90, enotty), (0x3b8d, enotty)]);
        assert_eq!(at.get_ref().drops(), 0);
        drop(null);
    });
}
