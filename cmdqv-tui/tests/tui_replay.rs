//! Snapshot tests driven by a replayed trace: a recorded `error-storm` run of the sim (committed
//! in tests/data) is replayed through the collector and rendered at three sizes, in the views a
//! user walks through. Timestamps and pids are redacted so a re-recorded fixture only changes
//! what a person would notice.

use cmdqv_tui::tui::{App, TuiOptions};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::{Terminal, backend::TestBackend};

const SIZES: [(u16, u16); 3] = [(80, 24), (120, 40), (200, 60)];
const TRACE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/error-storm.cmdqv");

fn summary() -> cmdqv_core::analysis::Summary {
    let (s, info) =
        cmdqv_core::record::replay_with(TRACE, Some(cmdqv_tui::reg_name)).expect("replay fixture");
    assert!(info.truncated.is_none() && info.bad_records == 0);
    s
}

/// Replaces `1234.567890`-style timestamps and the traced pid with `#`s (same width).
fn redact(text: &str, pid: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let mut l = line.replace(pid, &"#".repeat(pid.len()));
        let b: Vec<char> = l.chars().collect();
        let mut r = b.clone();
        let mut i = 0;
        while i < b.len() {
            if b[i].is_ascii_digit() && (i == 0 || !b[i - 1].is_ascii_alphanumeric()) {
                let start = i;
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
                if i + 6 < b.len() + 1
                    && i < b.len()
                    && b[i] == '.'
                    && (i + 1..i + 7).all(|k| k < b.len() && b[k].is_ascii_digit())
                {
                    for c in r.iter_mut().take(i + 7).skip(start) {
                        if c.is_ascii_digit() {
                            *c = '#';
                        }
                    }
                    i += 7;
                }
            } else {
                i += 1;
            }
        }
        l = r.into_iter().collect();
        out.push_str(&l);
        out.push('\n');
    }
    out
}

fn key(c: KeyCode) -> KeyEvent {
    KeyEvent::new(c, KeyModifiers::NONE)
}

fn snap(name: &str, keys: &[KeyCode]) {
    let s = summary();
    let pid = s
        .target
        .split("pid ")
        .nth(1)
        .unwrap_or("")
        .trim_end_matches(')')
        .to_string();
    assert!(!pid.is_empty(), "target names the pid: {}", s.target);
    for (w, h) in SIZES {
        let mut app = App::new(TuiOptions {
            refresh_hz: 10,
            no_color: true,
        });
        app.update(s.clone());
        app.set_finished(true);
        for k in keys {
            app.on_key(key(*k));
        }
        let mut term = Terminal::new(TestBackend::new(w, h)).unwrap();
        term.draw(|f| app.draw(f)).unwrap();
        let text = redact(&format!("{}", term.backend()), &pid);
        insta::assert_snapshot!(format!("replay_{name}_{w}x{h}"), text);
    }
}

#[test]
fn redaction_masks_timestamps_and_pids_only() {
    assert_eq!(
        redact("  3698.608907   20878 mmio W x = 0x1", "20878"),
        "  ####.######   ##### mmio W x = 0x1\n"
    );
    assert_eq!(
        redact("vcmdq0 12 p50 1.5µs", "999"),
        "vcmdq0 12 p50 1.5µs\n"
    );
}

#[test]
fn replayed_dashboard() {
    snap("dashboard", &[]);
}

#[test]
fn replayed_error_queue_detail() {
    // Row 0 is the SMMU queue; vcmdq0 (with CERROR_ILL errors) is the next one.
    snap("detail_vcmdq0", &[KeyCode::Down, KeyCode::Enter]);
}

#[test]
fn replayed_log() {
    snap("log", &[KeyCode::Char('2')]);
}

#[test]
fn replayed_probes() {
    snap("probes", &[KeyCode::Char('3')]);
}
