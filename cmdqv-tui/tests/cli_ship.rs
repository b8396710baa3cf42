//! What ships beside the binary, checked through the binary: `--version` names the commit it
//! was built from, `completions SHELL` prints a script for every shell clap_complete knows (the
//! bash one parses), `man` prints a man page groff accepts and writes one per visible
//! subcommand, `doctor --json` matches its schema, and `RUST_LOG` reaches the log stream on
//! stderr without touching stdout's JSON.

mod common;

use std::process::{Command, Output};

use cmdqv_tui::schema::RecordKind;
use serde_json::Value;

fn cmdqv(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_cmdqv"))
        .args(args)
        .output()
        .expect("run cmdqv");
    assert!(
        out.status.success(),
        "cmdqv {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn version_names_the_commit() {
    let v = stdout(&cmdqv(&["--version"]));
    let git = Command::new("git")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["describe", "--always", "--tags", "--abbrev=12"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let want = match std::env::var("CMDQV_GIT_COMMIT") {
        Ok(c) if !c.trim().is_empty() => c.trim().to_string(),
        _ => git.unwrap_or_else(|| "unknown".into()),
    };
    assert_eq!(
        v.trim(),
        format!("cmdqv {} ({want})", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn completions_exist_for_every_shell_and_bash_parses_its_script() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let s = stdout(&cmdqv(&["completions", shell]));
        for word in ["replay", "doctor", "completions", "headless"] {
            assert!(s.contains(word), "{shell} completions lack {word}");
        }
    }
    let script = std::env::temp_dir().join(format!("cmdqv-{}.bash", std::process::id()));
    std::fs::write(&script, stdout(&cmdqv(&["completions", "bash"]))).unwrap();
    let check = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&script);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let bad = Command::new(env!("CARGO_BIN_EXE_cmdqv"))
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(
        bad.status.code(),
        Some(2),
        "an unknown shell is a usage error"
    );
    assert!(String::from_utf8_lossy(&bad.stderr).contains("possible values"));
}

#[test]
fn man_pages_render_and_cover_every_visible_command() {
    let page = stdout(&cmdqv(&["man"]));
    assert!(page.contains(".TH cmdqv 1"), "{page}");
    assert!(page.contains(env!("CARGO_PKG_VERSION")));
    let dir = std::env::temp_dir().join(format!("cmdqv-man-{}", std::process::id()));
    cmdqv(&["man", "--dir", dir.to_str().unwrap()]);
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let _ = std::fs::remove_dir_all(&dir);
    for f in [
        "cmdqv.1",
        "cmdqv-sim.1",
        "cmdqv-replay.1",
        "cmdqv-record-sim.1",
    ] {
        assert!(files.iter().any(|x| x == f), "{f} missing from {files:?}");
    }
    assert!(
        !files
            .iter()
            .any(|f| f.contains("sim-vmm") || f.contains("bench"))
    );
    // groff (Debian's groff-base, which `cargo xtask bootstrap` installs) renders it without a
    // warning.
    let mut g = Command::new("groff")
        .args(["-man", "-Tutf8", "-ww", "-z"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("groff is missing: `cargo xtask bootstrap` installs groff-base");
    use std::io::Write as _;
    g.stdin.take().unwrap().write_all(page.as_bytes()).unwrap();
    let o = g.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && err.trim().is_empty(), "groff: {err}");
}

#[test]
fn doctor_json_carries_its_identity_and_matches_its_schema() {
    let v: Value = serde_json::from_slice(&cmdqv(&["doctor", "--json"]).stdout).unwrap();
    common::assert_schema(RecordKind::Doctor, &v);
    assert_eq!(v["schema"], 1);
    assert!(v.get("vm").is_none(), "doctor traces no VM");
}

#[test]
fn rust_log_reaches_stderr_and_leaves_stdout_alone() {
    let out = Command::new(env!("CARGO_BIN_EXE_cmdqv"))
        .args(["doctor", "--json"])
        .env("RUST_LOG", "cmdqv_tui=debug")
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).expect("stdout is only the JSON");
    common::assert_schema(RecordKind::Doctor, &v);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("DEBUG") && err.contains("doctor"), "{err}");
    let quiet = cmdqv(&["doctor", "--json"]);
    assert!(
        !String::from_utf8_lossy(&quiet.stderr).contains("DEBUG"),
        "debug lines without RUST_LOG"
    );
    let bad = Command::new(env!("CARGO_BIN_EXE_cmdqv"))
        .args(["doctor", "--json"])
        .env("RUST_LOG", "cmdqv_tui=loud[")
        .output()
        .unwrap();
    assert!(bad.status.success(), "a bad RUST_LOG is no reason to fail");
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not a valid filter"));
}
