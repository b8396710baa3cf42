//! The mouse in a real terminal (tmux): `cmdqv replay` of the recorded error storm, driven by SGR
//! mouse sequences (`ESC [ < b ; x ; y M` press, `… m` release) written to the pane as bytes. A
//! click on a column header sorts by it, again reverses it; a click on a row selects it, a
//! second click opens its detail; a click on a tab shows it. With `--no-mouse` (or `mouse =
//! false` in the config file) the terminal's mouse modes stay off, which tmux reports per pane.
//! Needs tmux (`cargo xtask test` installs it); no privileges (replay traces nothing).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn tmux(args: &[&str]) -> String {
    let out = Command::new("tmux")
        .args(args)
        .output()
        .expect("tmux is installed (cargo xtask bootstrap)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A tmux session running `cmdqv <args> replay error-storm.cmdqv` with its own empty (or given)
/// config directory; killed on drop.
struct Session {
    name: String,
    dir: PathBuf,
}

impl Session {
    fn start(tag: &str, args: &str, config: Option<&str>) -> Session {
        let name = format!("cmdqv-mouse-{tag}-{}", std::process::id());
        let dir = std::env::temp_dir().join(&name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("cmdqv")).unwrap();
        if let Some(c) = config {
            std::fs::write(dir.join("cmdqv/config.toml"), c).unwrap();
        }
        let trace = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/error-storm.cmdqv");
        tmux(&["kill-session", "-t", &name]);
        tmux(&[
            "new-session",
            "-d",
            "-s",
            &name,
            "-x",
            "160",
            "-y",
            "45",
            "sh",
        ]);
        let cmd = format!(
            "XDG_CONFIG_HOME={} {} {args} replay {}",
            dir.display(),
            env!("CARGO_BIN_EXE_cmdqv"),
            trace.display()
        );
        tmux(&["send-keys", "-t", &name, &cmd, "Enter"]);
        let s = Session { name, dir };
        s.wait_for("the queue table", |s| {
            s.contains("VCMDQs") && s.contains("vcmdq1")
        });
        s
    }

    fn screen(&self) -> String {
        tmux(&["capture-pane", "-p", "-t", &self.name])
    }

    fn wait_for(&self, what: &str, mut f: impl FnMut(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let screen = self.screen();
            if f(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The pane's mouse modes as tmux tracks them from what the application wrote: standard
    /// (1000), button (1002), any (1003), SGR (1006), as `0`/`1` each.
    fn mouse_flags(&self) -> String {
        tmux(&[
            "display",
            "-p",
            "-t",
            &self.name,
            "#{mouse_standard_flag}#{mouse_button_flag}#{mouse_any_flag}#{mouse_sgr_flag}",
        ])
        .trim()
        .to_string()
    }

    /// Writes `bytes` to the pane's input exactly (as a terminal would send them).
    fn send_bytes(&self, bytes: &str) {
        let mut args = vec![
            "send-keys".to_string(),
            "-t".into(),
            self.name.clone(),
            "-H".into(),
        ];
        args.extend(bytes.bytes().map(|b| format!("{b:02x}")));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        tmux(&args);
    }

    /// A left click at 0-based screen cell `(col, row)`: SGR press and release (1-based).
    fn click(&self, col: usize, row: usize) {
        let (x, y) = (col + 1, row + 1);
        self.send_bytes(&format!("\x1b[<0;{x};{y}M\x1b[<0;{x};{y}m"));
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        tmux(&["kill-session", "-t", &self.name]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The 0-based `(column, row)` where `needle` first appears on a line that also contains `on`.
fn find(screen: &str, on: &str, needle: &str) -> (usize, usize) {
    screen
        .lines()
        .enumerate()
        .find_map(|(row, line)| {
            let byte = line.contains(on).then(|| line.find(needle)).flatten()?;
            Some((line[..byte].chars().count(), row))
        })
        .unwrap_or_else(|| panic!("no {needle:?} on a line with {on:?}:\n{screen}"))
}

/// The line of the table the selection marker `>` is on.
fn selected_line(screen: &str) -> String {
    screen
        .lines()
        .find(|l| l.starts_with("│>"))
        .unwrap_or_default()
        .to_string()
}

#[test]
fn clicks_sort_select_open_and_switch_tabs() {
    let s = Session::start("on", "", None);
    // crossterm asks for any-motion tracking (1003, which tmux keeps over 1000 and 1002) with
    // SGR reports (1006).
    assert_eq!(
        s.mouse_flags(),
        "0011",
        "mouse capture with SGR reporting is on"
    );
    let first = s.screen();
    assert!(first.contains("sort ID▲"), "{first}");
    assert!(selected_line(&first).contains("smmu-cmdq"), "{first}");

    // The header cell of p99: sorts by it (bigger first), a second click reverses.
    let (x, y) = find(&first, "NAME", "p99");
    s.click(x + 1, y);
    let sorted = s.wait_for("the sort by p99", |s| s.contains("sort p99▼"));
    assert!(
        sorted.contains("p99▼"),
        "the header marks the column:\n{sorted}"
    );
    s.click(x + 1, y);
    s.wait_for("the reversed sort", |s| s.contains("sort p99▲"));

    // A row: selected, not opened; the same row again: its detail.
    let screen = s.screen();
    let (x, y) = find(&screen, "│", "vcmdq1");
    s.click(x, y);
    let selected = s.wait_for("vcmdq1 selected", |s| selected_line(s).contains("vcmdq1"));
    assert!(!selected.contains("— detail"), "{selected}");
    s.click(x, y);
    s.wait_for("vcmdq1's detail", |s| s.contains("vcmdq1 — detail"));

    // Esc closes it; a click on the second tab shows the log.
    tmux(&["send-keys", "-t", &s.name, "Escape"]);
    let screen = s.wait_for("the table again", |s| !s.contains("— detail"));
    let (x, y) = find(&screen, "Queues", "2 Log");
    s.click(x, y);
    s.wait_for("the log view", |s| s.contains("Event log — following"));
    // The wheel (button 64: up) scrolls the log back.
    let (x, y) = find(&s.screen(), "Event log", "Event log");
    s.send_bytes(&format!("\x1b[<64;{};{}M", x + 1, y + 3));
    s.wait_for("the log scrolled back", |s| s.contains("scrolled back"));

    tmux(&["send-keys", "-t", &s.name, "q"]);
    s.wait_for("cmdqv to exit", |_| {
        tmux(&["display", "-p", "-t", &s.name, "#{alternate_on}"]).trim() == "0"
    });
    assert_eq!(s.mouse_flags(), "0000", "capture is turned off on exit");
}

#[test]
fn no_mouse_flag_and_config_leave_capture_off() {
    for (tag, args, config) in [
        ("flag", "--no-mouse", None),
        ("config", "", Some("[ui]\nmouse = false\n")),
    ] {
        let s = Session::start(tag, args, config);
        assert_eq!(
            s.mouse_flags(),
            "0000",
            "{tag}: no mouse mode was turned on"
        );
        // A click that would sort is just bytes the UI does not act on.
        let screen = s.screen();
        let (x, y) = find(&screen, "NAME", "p99");
        s.click(x + 1, y);
        std::thread::sleep(Duration::from_millis(500));
        assert!(s.screen().contains("sort ID▲"), "{tag}: nothing sorted");
    }
}
