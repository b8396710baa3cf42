//! Sorting, filtering, pausing, log scrollback and NO_COLOR: the logic behind the views.

#[path = "tui_fixture.rs"]
mod tui_fixture;

use cmdqv_core::analysis::{LogLine, QueueState};
use cmdqv_tui::tui::{App, SortColumn, TuiOptions, View, no_color_env};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::style::Color;

fn app() -> App {
    let mut a = App::new(TuiOptions::default());
    a.update(tui_fixture::summary());
    a
}

fn names(a: &App) -> Vec<String> {
    a.visible_queues().iter().map(|q| q.name.clone()).collect()
}

#[test]
fn default_sort_is_by_global_id_smmu_first() {
    assert_eq!(
        names(&app()),
        [
            "smmu-cmdq",
            "vcmdq0",
            "vcmdq1",
            "vcmdq2",
            "vcmdq3",
            "vcmdq4"
        ]
    );
}

#[test]
fn sort_by_rate_descending_and_reversed() {
    let mut a = app();
    a.set_sort(SortColumn::CmdRate, true);
    assert_eq!(names(&a)[..3], ["vcmdq3", "vcmdq0", "vcmdq2"]);
    a.set_sort(SortColumn::CmdRate, false);
    // Ties (0/s) are broken by name, so the order is stable.
    assert_eq!(names(&a)[..2], ["vcmdq1", "vcmdq4"]);
}

#[test]
fn sort_by_p99_and_state() {
    let mut a = app();
    a.set_sort(SortColumn::P99, true);
    assert_eq!(names(&a)[0], "vcmdq1");
    a.set_sort(SortColumn::State, false);
    let states: Vec<_> = a.visible_queues().iter().map(|q| q.state).collect();
    assert_eq!(states[0], QueueState::Error);
    assert_eq!(*states.last().unwrap(), QueueState::Disabled);
}

#[test]
fn every_sort_column_orders_consistently() {
    let mut a = App::new(TuiOptions::default());
    a.update(tui_fixture::many_queues(40));
    for col in SortColumn::ALL {
        for desc in [false, true] {
            a.set_sort(col, desc);
            let v = a.visible_queues();
            for w in v.windows(2) {
                let o = col.compare(w[0], w[1]);
                let o = if desc { o.reverse() } else { o };
                assert_ne!(o, std::cmp::Ordering::Greater, "{col:?} desc={desc}");
            }
        }
    }
}

#[test]
fn filter_matches_name_and_state_case_insensitively() {
    let mut a = app();
    a.set_filter(View::Queues, "HW");
    assert_eq!(names(&a), ["vcmdq0", "vcmdq3"]);
    a.set_filter(View::Queues, "hardware-backed");
    assert_eq!(names(&a), ["vcmdq0", "vcmdq3"]);
    a.set_filter(View::Queues, "error");
    assert_eq!(names(&a), ["vcmdq1"]);
    a.set_filter(View::Queues, "smmu");
    assert_eq!(names(&a), ["smmu-cmdq"]);
    a.set_filter(View::Queues, "disabled");
    assert_eq!(names(&a), ["vcmdq4"]);
    a.set_filter(View::Queues, "nothing-like-this");
    assert!(names(&a).is_empty());
    a.set_filter(View::Queues, "");
    assert_eq!(names(&a).len(), 6);
}

#[test]
fn log_filter_matches_kind_and_text() {
    let mut a = app();
    a.set_filter(View::Log, "ERROR");
    let lines = a.filtered_log();
    assert_eq!(lines.len(), 1);
    assert!(lines[0].is_error);
    a.set_filter(View::Log, "ioctl");
    assert!(a.filtered_log().iter().all(|l| l.kind == "ioctl"));
    assert!(a.filtered_log().iter().any(|l| l.text.contains("ENOTTY")));
}

#[test]
fn pause_freezes_the_view() {
    let mut a = app();
    a.on_key(KeyEvent::new(KeyCode::Char(' '), KeyModifiers::NONE));
    let mut s = tui_fixture::summary();
    s.events = 1;
    a.update(s.clone());
    assert_eq!(a.summary().unwrap().events, 1_234_567);
    a.on_key(KeyEvent::new(KeyCode::Char(' '), KeyModifiers::NONE));
    a.update(s);
    assert_eq!(a.summary().unwrap().events, 1);
}

#[test]
fn scrolled_back_log_stays_on_its_lines_as_new_ones_arrive() {
    let mut a = app();
    a.on_key(KeyEvent::new(KeyCode::Char('2'), KeyModifiers::NONE));
    let mut term = Terminal::new(TestBackend::new(80, 24)).unwrap();
    term.draw(|f| a.draw(f)).unwrap();
    a.on_key(KeyEvent::new(KeyCode::PageUp, KeyModifiers::NONE));
    let before = a.log_scroll();
    assert!(before > 0);
    let mut s = tui_fixture::summary();
    for i in 0..5 {
        s.log.push(LogLine {
            ts_ns: 90_000_000_000 + i,
            pid: 1,
            kind: "mmio".into(),
            text: format!("new {i}"),
            is_error: false,
        });
    }
    a.update(s);
    assert_eq!(a.log_scroll(), before + 5);
    assert!(!a.log_follow());
}

fn colours_used(no_color: bool) -> usize {
    let mut count = 0;
    for view in ['1', '2', '3'] {
        for extra in [None, Some(KeyCode::Enter), Some(KeyCode::Char('?'))] {
            let mut a = App::new(TuiOptions {
                refresh_hz: 10,
                no_color,
            });
            let mut s = tui_fixture::summary();
            s.drops = 3;
            a.update(s);
            a.set_recording(Some("t.trace".into()));
            a.on_key(KeyEvent::new(KeyCode::Char(view), KeyModifiers::NONE));
            a.on_key(KeyEvent::new(KeyCode::Down, KeyModifiers::NONE));
            a.on_key(KeyEvent::new(KeyCode::Down, KeyModifiers::NONE));
            if let Some(k) = extra {
                a.on_key(KeyEvent::new(k, KeyModifiers::NONE));
            }
            a.on_key(KeyEvent::new(KeyCode::Char(' '), KeyModifiers::NONE));
            let mut term = Terminal::new(TestBackend::new(120, 40)).unwrap();
            term.draw(|f| a.draw(f)).unwrap();
            count += term
                .backend()
                .buffer()
                .content()
                .iter()
                .filter(|c| {
                    c.fg != Color::Reset
                        || c.bg != Color::Reset
                        || c.underline_color != Color::Reset
                })
                .count();
        }
    }
    count
}

#[test]
fn no_color_means_no_colour_anywhere() {
    assert!(colours_used(false) > 100, "the colour theme uses colour");
    assert_eq!(colours_used(true), 0);
}

#[test]
fn no_color_env_follows_the_convention() {
    use std::ffi::OsStr;
    assert!(!no_color_env(None));
    assert!(!no_color_env(Some(OsStr::new(""))));
    assert!(no_color_env(Some(OsStr::new("1"))));
    assert!(
        no_color_env(Some(OsStr::new("0"))),
        "any non-empty value disables colour"
    );
}

#[test]
fn error_rows_carry_a_text_marker() {
    let mut a = App::new(TuiOptions {
        refresh_hz: 10,
        no_color: true,
    });
    a.update(tui_fixture::summary());
    let mut term = Terminal::new(TestBackend::new(120, 40)).unwrap();
    term.draw(|f| a.draw(f)).unwrap();
    let text = format!("{}", term.backend());
    let row = text.lines().find(|l| l.contains("vcmdq1 ")).unwrap();
    assert!(row.contains("! 1") && row.contains("error"), "{row}");
    let row = text.lines().find(|l| l.contains("vcmdq0 ")).unwrap();
    assert!(!row.contains('!') && row.contains("hardware"), "{row}");
}

#[test]
fn selection_scrolls_a_long_table() {
    let mut a = App::new(TuiOptions::default());
    a.update(tui_fixture::many_queues(128));
    let mut term = Terminal::new(TestBackend::new(80, 24)).unwrap();
    term.draw(|f| a.draw(f)).unwrap();
    a.on_key(KeyEvent::new(KeyCode::End, KeyModifiers::NONE));
    assert_eq!(a.selected_queue(), Some("vcmdq127"));
    term.draw(|f| a.draw(f)).unwrap();
    let text = format!("{}", term.backend());
    assert!(
        text.lines()
            .any(|l| l.contains(">") && l.contains("vcmdq127")),
        "{text}"
    );
    a.on_key(KeyEvent::new(KeyCode::PageUp, KeyModifiers::NONE));
    let after_page = a.selected_queue().unwrap().to_string();
    let idx = a
        .visible_queues()
        .iter()
        .position(|q| q.name == after_page)
        .unwrap();
    // 129 rows (smmu-cmdq + 128): PgUp from the last moves up by more than one row.
    assert!(idx < 127, "PgUp moved to row {idx}");
    term.draw(|f| a.draw(f)).unwrap();
    let text = format!("{}", term.backend());
    assert!(
        text.lines()
            .any(|l| l.contains(">") && l.contains(&after_page)),
        "{text}"
    );
    a.on_key(KeyEvent::new(KeyCode::Home, KeyModifiers::NONE));
    assert_eq!(a.selected_queue(), Some("smmu-cmdq"));
}
