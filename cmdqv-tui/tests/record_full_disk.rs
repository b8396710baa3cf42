//! Privileged (mounts a tmpfs): `cmdqv record` onto a filesystem that fills up stops with a
//! clear error naming the file and the cause, exits non-zero, and leaves a file that replays up
//! to its last complete record.
//!
//! Set CMDQV_SKIP_PRIVILEGED=1 to skip it knowingly.

mod common;

use std::{path::PathBuf, process::Command};

use serde_json::Value;

fn privileged() -> bool {
    if std::env::var_os("CMDQV_SKIP_PRIVILEGED").is_some_and(|v| v == "1") {
        eprintln!("CMDQV_SKIP_PRIVILEGED=1: skipping a test that mounts a tmpfs");
        return false;
    }
    assert_eq!(
        nix::unistd::geteuid().as_raw(),
        0,
        "mounting a small tmpfs needs root (CMDQV_SKIP_PRIVILEGED=1 skips knowingly)"
    );
    true
}

/// A 256 KiB tmpfs, unmounted (and removed) when dropped.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount() -> Self {
        let dir = std::env::temp_dir().join(format!("cmdqv-full-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
            .arg(&dir)
            .status()
            .unwrap();
        assert!(st.success(), "mount -t tmpfs failed");
        Self(dir)
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[test]
fn record_on_a_full_disk_stops_clearly_and_the_file_replays() {
    if !privileged() {
        return;
    }
    let disk = SmallDisk::mount();
    let file = disk.0.join("full.cmdqv");
    let f = file.to_str().unwrap();
    // ~8k events/s, each a framed record of 40+ bytes: 256 KiB fills within seconds, long
    // before the duration ends.
    let out = Command::new(env!("CARGO_BIN_EXE_cmdqv"))
        .args(["record", "-o", f, "sim", "--no-ebpf", "--rate", "2000"])
        .args(["--duration", "30s", "--headless", "--json"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(
        stderr.contains(&format!("recording to {f} failed"))
            && stderr.contains("No space left on device")
            && stderr.contains("replays up to its last complete record"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "no summary after a failed recording");
    let len = std::fs::metadata(&file).unwrap().len();
    assert!(len > 64 * 1024, "the file holds what fitted: {len} bytes");

    let rep = Command::new(env!("CARGO_BIN_EXE_cmdqv"))
        .args(["replay", f, "--json"])
        .output()
        .unwrap();
    let rerr = String::from_utf8_lossy(&rep.stderr);
    assert!(rep.status.success(), "replay failed: {rerr}");
    let line = String::from_utf8_lossy(&rep.stdout);
    let v: Value = serde_json::from_str(line.lines().last().unwrap()).unwrap();
    common::assert_summary(&v);
    assert!(v["events"].as_u64().unwrap() > 1000, "{v}");
    let commands: u64 = v["queues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["commands"].as_u64().unwrap())
        .sum();
    assert!(commands > 0, "{v}");
    // Whatever the kernel took of the last record is left out, and said so.
    assert!(
        !rerr.contains("corrupt records"),
        "a full disk must not corrupt records: {rerr}"
    );
}
