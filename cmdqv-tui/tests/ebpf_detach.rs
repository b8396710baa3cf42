//! Privileged: Ctrl-C ends a `cmdqv sim` run through the normal path, headless (SIGINT: the
//! collection loop returns, the final summary is printed, the sim VMM child is reaped) and under
//! the TUI in a real terminal (tmux: the Ctrl-C key, and a SIGINT from outside); afterwards none
//! of the BPF programs or links the process held exists any more, and no legacy uprobe_events
//! entry names the binary.
//!
//! Set CMDQV_SKIP_PRIVILEGED=1 to skip it knowingly.

use std::{
    collections::BTreeSet,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

mod common;

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

/// BPF program and link ids held by `pid`'s fds (from /proc/PID/fdinfo).
fn bpf_ids(pid: u32) -> (BTreeSet<u32>, BTreeSet<u32>) {
    let (mut progs, mut links) = (BTreeSet::new(), BTreeSet::new());
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return (progs, links);
    };
    for e in dir.flatten() {
        let Ok(text) = std::fs::read_to_string(e.path()) else {
            continue;
        };
        for line in text.lines() {
            let mut kv = line.splitn(2, ':');
            let (k, v) = (kv.next().unwrap_or(""), kv.next().unwrap_or("").trim());
            match (k, v.parse::<u32>()) {
                ("prog_id", Ok(id)) if id != 0 => {
                    progs.insert(id);
                }
                ("link_id", Ok(id)) if id != 0 => {
                    links.insert(id);
                }
                _ => {}
            }
        }
    }
    (progs, links)
}

/// Whether a BPF object id still exists (BPF_PROG_GET_FD_BY_ID = 13, BPF_LINK_GET_FD_BY_ID = 30).
fn bpf_id_exists(cmd: libc::c_long, id: u32) -> bool {
    let mut attr = [0u8; 16];
    attr[..4].copy_from_slice(&id.to_le_bytes());
    // SAFETY: a bpf_attr-sized buffer whose first field is the id; the kernel only reads it.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), attr.len() as u32) };
    if fd >= 0 {
        // SAFETY: our own new fd.
        unsafe { libc::close(fd as i32) };
        return true;
    }
    std::io::Error::last_os_error().raw_os_error() != Some(libc::ENOENT)
}

fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|s| s.parse().ok())
        .collect()
}

#[test]
fn ctrl_c_on_headless_sim_stops_cleanly_and_leaves_no_probe_behind() {
    if !privileged() {
        return;
    }
    let exe = env!("CARGO_BIN_EXE_cmdqv");
    let mut child = Command::new(exe)
        .args(["sim", "--headless", "--duration", "60s", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start cmdqv sim");
    let pid = child.id();

    // Wait until the probes are attached (the process holds links) and the VMM runs.
    let (progs, links, vmm) = wait_attached(pid);
    // Let some events flow so the summary has content.
    std::thread::sleep(Duration::from_millis(500));

    // SAFETY: signalling our own child.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGINT) }, 0);
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "cmdqv sim ignored Ctrl-C for 20 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        status.success(),
        "Ctrl-C must end the run normally, got {status:?}; stderr: {stderr}"
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "no final JSON summary after Ctrl-C ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    assert!(summary.is_object(), "{summary}");
    common::assert_summary(&summary);

    assert_gone(exe, &vmm, &progs, &links);
}

/// After `cmdqv` exited: its sim VMM is gone, and so is every BPF program and link it held.
fn assert_gone(exe: &str, vmm: &[u32], progs: &BTreeSet<u32>, links: &BTreeSet<u32>) {
    for v in vmm {
        let stat = std::fs::read_to_string(format!("/proc/{v}/stat")).unwrap_or_default();
        assert!(
            stat.is_empty() || !stat.contains("cmdqv"),
            "the sim VMM child {v} outlived cmdqv: {stat}"
        );
    }

    // Programs and links are released when their last fd closes; give the kernel a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    let leftover = loop {
        let left: Vec<String> = progs
            .iter()
            .filter(|&&id| bpf_id_exists(13, id))
            .map(|id| format!("program {id}"))
            .chain(
                links
                    .iter()
                    .filter(|&&id| bpf_id_exists(30, id))
                    .map(|id| format!("link {id}")),
            )
            .collect();
        if left.is_empty() || Instant::now() > deadline {
            break left;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        leftover.is_empty(),
        "still in the kernel after exit: {leftover:?}"
    );

    for base in ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"] {
        let events = std::fs::read_to_string(format!("{base}/uprobe_events")).unwrap_or_default();
        assert!(
            !events.lines().any(|l| l.contains(exe)),
            "legacy uprobe_events still names {exe}: {events}"
        );
    }
}

/// Waits until `pid` holds at least three BPF links and has a child (the sim VMM).
fn wait_attached(pid: u32) -> (BTreeSet<u32>, BTreeSet<u32>, Vec<u32>) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let (mut progs, mut links, mut vmm) = (BTreeSet::new(), BTreeSet::new(), Vec::new());
    while Instant::now() < deadline {
        (progs, links) = bpf_ids(pid);
        vmm = children(pid);
        if links.len() >= 3 && !vmm.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        links.len() >= 3 && !progs.is_empty(),
        "cmdqv sim never attached its probes (links {links:?}, programs {progs:?})"
    );
    assert!(!vmm.is_empty(), "no sim VMM child");
    (progs, links, vmm)
}

/// `cmdqv sim` under its TUI in a detached tmux session of a private server; returns the server
/// name, the cmdqv pid and the file its exit status is written to.
struct TmuxSim {
    server: String,
    pid: u32,
    status_file: std::path::PathBuf,
}

impl TmuxSim {
    fn start(tag: &str) -> Self {
        let exe = env!("CARGO_BIN_EXE_cmdqv");
        let server = format!("cmdqv-test-{tag}-{}", std::process::id());
        let status_file = std::env::temp_dir().join(format!("{server}.status"));
        let _ = std::fs::remove_file(&status_file);
        let cmd = format!("{exe} sim; echo $? > {}", status_file.display());
        let ok = Command::new("tmux")
            .args([
                "-L",
                &server,
                "new-session",
                "-d",
                "-x",
                "120",
                "-y",
                "40",
                &cmd,
            ])
            .status()
            .expect("tmux (apt-get install tmux; cargo xtask bootstrap installs it)");
        assert!(ok.success(), "tmux new-session failed");
        let shell: u32 = {
            let out = Command::new("tmux")
                .args(["-L", &server, "display-message", "-p", "#{pane_pid}"])
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
        };
        // The pane runs `sh -c "cmdqv sim; echo ..."`: cmdqv is the shell's child.
        let deadline = Instant::now() + Duration::from_secs(10);
        let pid = loop {
            if let Some(&p) = children(shell).first() {
                break p;
            }
            assert!(Instant::now() < deadline, "cmdqv did not start in tmux");
            std::thread::sleep(Duration::from_millis(20));
        };
        Self {
            server,
            pid,
            status_file,
        }
    }

    /// The exit status cmdqv reported, once it has exited (None after 20 s).
    fn exit_status(&self) -> Option<i32> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(s) = std::fs::read_to_string(&self.status_file) {
                if let Ok(v) = s.trim().parse() {
                    return Some(v);
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for TmuxSim {
    fn drop(&mut self) {
        // The server is usually gone already (its only session ended with cmdqv).
        let _ = Command::new("tmux")
            .args(["-L", &self.server, "kill-server"])
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_file(&self.status_file);
    }
}

#[test]
fn ctrl_c_key_in_the_tui_stops_cleanly_and_leaves_no_probe_behind() {
    if !privileged() {
        return;
    }
    let sim = TmuxSim::start("key");
    let (progs, links, vmm) = wait_attached(sim.pid);
    std::thread::sleep(Duration::from_millis(500));
    let ok = Command::new("tmux")
        .args(["-L", &sim.server, "send-keys", "C-c"])
        .status()
        .unwrap();
    assert!(ok.success());
    assert_eq!(
        sim.exit_status(),
        Some(0),
        "cmdqv sim did not quit on Ctrl-C"
    );
    assert_gone(env!("CARGO_BIN_EXE_cmdqv"), &vmm, &progs, &links);
}

#[test]
fn sigint_from_outside_quits_the_tui_cleanly_and_leaves_no_probe_behind() {
    if !privileged() {
        return;
    }
    let sim = TmuxSim::start("sigint");
    let (progs, links, vmm) = wait_attached(sim.pid);
    std::thread::sleep(Duration::from_millis(500));
    // Raw mode turns the terminal's Ctrl-C into a key; a SIGINT can still come from outside.
    // SAFETY: signalling a process this test started.
    assert_eq!(unsafe { libc::kill(sim.pid as i32, libc::SIGINT) }, 0);
    assert_eq!(
        sim.exit_status(),
        Some(0),
        "cmdqv sim did not quit on SIGINT"
    );
    assert_gone(env!("CARGO_BIN_EXE_cmdqv"), &vmm, &progs, &links);
}
