//! Privileged: the probes' own diagnostics reach userspace through aya-log. An iommufd-numbered
//! ioctl whose argument pointer cannot be read still arrives as an event (with no argument
//! bytes), and the probe says why in the tracer's probe log.
//!
//! Set CMDQV_SKIP_PRIVILEGED=1 to skip it knowingly.

use std::{
    os::fd::AsRawFd,
    time::{Duration, Instant},
};

use cmdqv_core::{event::Payload, probe_abi};
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
fn an_unreadable_ioctl_argument_is_logged_by_the_probe() {
    if !privileged() {
        return;
    }
    let mut tracer = Tracer::load(&TracerConfig {
        pid: std::process::id(),
        syscalls: true,
        ..Default::default()
    })
    .expect("load eBPF object");
    assert_eq!(tracer.probe_log().total(), 0);
    let null = std::fs::File::open("/dev/null").unwrap();
    // IOMMU_VIOMMU_ALLOC with an argument address no process can have mapped.
    let bad_arg = 0x10usize;
    let r = unsafe { libc::ioctl(null.as_raw_fd(), 0x3b90 as _, bad_arg) };
    assert_eq!(r, -1);

    let mut arg_len = None;
    let deadline = Instant::now() + Duration::from_secs(5);
    while arg_len.is_none() && Instant::now() < deadline {
        tracer
            .poll(Duration::from_millis(100), |rec| {
                if let Ok(ev) = probe_abi::decode(rec) {
                    if let Payload::Ioctl {
                        fd,
                        cmd,
                        arg_len: n,
                        ..
                    } = ev.payload
                    {
                        if fd == null.as_raw_fd() && cmd == 0x3b90 {
                            arg_len = Some(n);
                        }
                    }
                }
            })
            .unwrap();
    }
    assert_eq!(
        arg_len,
        Some(0),
        "the ioctl arrives, without argument bytes"
    );
    // The log record was written before the ioctl record; one more drain flushes it for sure.
    tracer.drain(|_| {});
    assert_eq!(tracer.probe_log().total(), 1);
    let logged = tracer.probe_log().take();
    assert_eq!(logged.len(), 1, "{logged:?}");
    assert!(
        logged[0].starts_with("WARN ")
            && logged[0].contains("3b90: its argument at 10 could not be read"),
        "{logged:?}"
    );
}
