//! `cargo xtask run -- ARGS` end to end: the real xtask binary, clap parsing included, hands
//! ARGS to cmdqv unchanged. A stand-in cmdqv (XTASK_CMDQV) writes the argv it received.

use std::{
    fs,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::Command,
};

/// A folder of its own for each test, with a stand-in `cmdqv` that writes its argv,
/// NUL-separated, to `argv` beside it.
fn stand_in(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("xtask-{test}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let script = dir.join("cmdqv");
    fs::write(
        &script,
        format!(
            "#!/bin/sh\nprintf '%s\\0' \"$@\" > '{}'\n",
            dir.join("argv").display()
        ),
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// Runs `xtask ARGS` with the stand-in; returns the argv cmdqv received.
fn cmdqv_argv(dir: &Path, args: &[&str]) -> Vec<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .env("XTASK_CMDQV", dir.join("cmdqv"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("[xtask] run: "), "{text}");
    let argv = fs::read(dir.join("argv")).unwrap();
    let _ = fs::remove_dir_all(dir);
    let argv = String::from_utf8(argv).unwrap();
    argv.strip_suffix('\0')
        .map(|a| a.split('\0').map(str::to_string).collect())
        .unwrap_or_default()
}

#[test]
fn a_qemu_command_line_reaches_cmdqv_unchanged() {
    let qemu = [
        "qemu-system-aarch64",
        "-M",
        "virt,iommu=smmuv3",
        "-device",
        "x,y=z",
        "-append",
        "a b",
        "--",
        "-nographic",
        "",
        "--help",
    ];
    let mut args = vec!["run", "--", "qemu", "--"];
    args.extend(qemu);
    let mut want = vec!["qemu", "--"];
    want.extend(qemu);
    assert_eq!(cmdqv_argv(&stand_in("qemu"), &args), want);
}

#[test]
fn run_without_arguments_starts_the_simulated_host() {
    assert_eq!(cmdqv_argv(&stand_in("default"), &["run"]), ["sim"]);
}
