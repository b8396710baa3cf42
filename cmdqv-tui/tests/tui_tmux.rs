//! The live TUI as a person sees it: `cmdqv sim` in a real terminal (tmux), the VCMDQ table on
//! screen with numbers that change, `q` quits cleanly and the terminal is restored (not left in
//! the alternate screen). Needs tmux (`cargo xtask test` installs it) and root for eBPF.

use std::{
    process::Command,
    time::{Duration, Instant},
};

fn tmux(args: &[&str]) -> String {
    let out = Command::new("tmux")
        .args(args)
        .output()
        .expect("tmux is installed (cargo xtask bootstrap)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn wait_for(what: &str, session: &str, mut f: impl FnMut(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let screen = tmux(&["capture-pane", "-p", "-t", session]);
        if f(&screen) {
            return screen;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; screen:\n{screen}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The "events N" figure of the header.
fn events(screen: &str) -> Option<String> {
    let line = screen.lines().find(|l| l.contains("events "))?;
    let rest = &line[line.find("events ")? + 7..];
    Some(rest.split_whitespace().next()?.to_string())
}

#[test]
fn live_tui_shows_changing_vcmdq_table_and_quits_cleanly() {
    if std::env::var_os("CMDQV_SKIP_PRIVILEGED").is_some_and(|v| v == "1") {
        return;
    }
    let session = format!("cmdqv-e2e-{}", std::process::id());
    let marker = std::env::temp_dir().join(format!("{session}.exit"));
    let _ = std::fs::remove_file(&marker);
    // A plain shell inside tmux, so the terminal state after cmdqv exits can be inspected.
    tmux(&[
        "new-session",
        "-d",
        "-s",
        &session,
        "-x",
        "160",
        "-y",
        "45",
        "sh",
    ]);
    let cmd = format!(
        "{} sim; echo $? > {}",
        env!("CARGO_BIN_EXE_cmdqv"),
        marker.display()
    );
    tmux(&["send-keys", "-t", &session, &cmd, "Enter"]);

    let first = wait_for("the VCMDQ table", &session, |s| {
        s.contains("VCMDQs")
            && s.contains("vcmdq0")
            && s.contains("vcmdq1")
            && events(s).is_some_and(|e| e != "0")
    });
    assert!(
        first.contains("source: eBPF") || first.contains("in-process"),
        "{first}"
    );
    assert_eq!(
        tmux(&["display", "-p", "-t", &session, "#{alternate_on}"]).trim(),
        "1"
    );
    let e1 = events(&first).unwrap();
    let second = wait_for("changing numbers", &session, |s| {
        events(s).is_some_and(|e| e != e1)
    });
    assert!(second.contains("smmu-cmdq"));

    tmux(&["send-keys", "-t", &session, "q"]);
    let deadline = Instant::now() + Duration::from_secs(15);
    while !marker.exists() {
        assert!(Instant::now() < deadline, "cmdqv did not exit after q");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(200));
    let code = std::fs::read_to_string(&marker).unwrap();
    assert_eq!(code.trim(), "0", "cmdqv exited with {code}");
    // Restored: out of the alternate screen, cursor visible, the shell usable again.
    assert_eq!(
        tmux(&["display", "-p", "-t", &session, "#{alternate_on}"]).trim(),
        "0"
    );
    assert_eq!(
        tmux(&["display", "-p", "-t", &session, "#{cursor_flag}"]).trim(),
        "1"
    );
    tmux(&["send-keys", "-t", &session, "echo restored-ok", "Enter"]);
    wait_for("the shell to answer", &session, |s| {
        s.lines().any(|l| l.trim() == "restored-ok")
    });
    tmux(&["kill-session", "-t", &session]);
    let _ = std::fs::remove_file(&marker);
}
