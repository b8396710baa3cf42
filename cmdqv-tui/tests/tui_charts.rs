//! The charts: a queue's commands/s and interval p99 over time in its detail view (labelled
//! time and value axes), and two marked queues compared with their latency distributions on one
//! axis. Snapshots at the three sizes from a run of fixture snapshots one second apart; the
//! keys (`m` marks, `c` compares, Esc closes) are in the keymap, so the footer and help show
//! them.

#[path = "tui_fixture.rs"]
mod tui_fixture;

use cmdqv_core::analysis::Summary;
use cmdqv_tui::tui::{App, Context, TuiOptions, help_text, keymap};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

const SIZES: [(u16, u16); 3] = [(80, 24), (120, 40), (200, 60)];

fn key(c: char) -> KeyEvent {
    KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE)
}

fn code(c: KeyCode) -> KeyEvent {
    KeyEvent::new(c, KeyModifiers::NONE)
}

/// The fixture at second `i` of a run: every queue's commands and latency histogram grow, at a
/// rate that changes over time; from second 60 on a burst triples the rate and grows the
/// latency tail (three buckets above the usual), so the interval p99 moves up. The
/// collector's own per-second counts are left out: the charts show only the run's intervals.
fn at(i: u64) -> Summary {
    let rate = |k: u64, n: u64| (200 + 40 * (k % 10) + 100 * n) * if k >= 60 { 3 } else { 1 };
    let mut s = tui_fixture::summary();
    s.elapsed_s = 10.0 + i as f64;
    for (n, q) in s.queues.iter_mut().enumerate() {
        q.rate_history.clear();
        q.commands = 1_000 + (0..=i).map(|k| rate(k, n as u64)).sum::<u64>();
        let center = q
            .latency_histogram
            .iter()
            .enumerate()
            .max_by_key(|b| b.1.1)
            .map_or(0, |b| b.0);
        for (j, b) in q.latency_histogram.iter_mut().enumerate() {
            let d = j.abs_diff(center) as u32;
            let usual = if j <= center + 2 {
                1000u64 >> (2 * d).min(63)
            } else {
                0
            };
            let tail = if j == center + 3 { 40 } else { 0 };
            b.1 += i * usual + i.saturating_sub(60) * tail;
        }
    }
    s
}

fn app_after(seconds: u64) -> App {
    let mut app = App::new(TuiOptions::default());
    for i in 0..=seconds {
        app.update(at(i));
    }
    app
}

fn render(app: &mut App, w: u16, h: u16) -> TestBackend {
    let mut term = Terminal::new(TestBackend::new(w, h)).unwrap();
    term.draw(|f| app.draw(f)).unwrap();
    term.backend().clone()
}

#[test]
fn detail_charts_have_time_axes() {
    for (w, h) in SIZES {
        let mut app = app_after(90);
        app.on_key(code(KeyCode::Down));
        assert_eq!(app.selected_queue(), Some("vcmdq0"));
        app.on_key(code(KeyCode::Enter));
        let backend = render(&mut app, w, h);
        let text = format!("{backend:?}");
        if h >= 40 {
            for want in [
                "commands/s, last ",
                "p99 batch latency, last ",
                "now",
                "cmd/s",
                "time",
                "p99",
            ] {
                assert!(text.contains(want), "{w}x{h}: {want:?} missing:\n{text}");
            }
        }
        insta::assert_snapshot!(format!("detail_charts_{w}x{h}"), backend);
    }
    let app = app_after(90);
    let points = app.history().queue("vcmdq0").unwrap().points();
    let last = points.back().unwrap();
    assert!(last.p99_ns.is_some());
    assert!(
        last.commands_per_s >= 600.0,
        "the burst: {}",
        last.commands_per_s
    );
}

#[test]
fn compare_two_marked_queues() {
    for (w, h) in SIZES {
        let mut app = app_after(30);
        app.on_key(key('m'));
        app.on_key(code(KeyCode::Down));
        app.on_key(key('m'));
        assert_eq!(app.marked_queues(), ["smmu-cmdq", "vcmdq0"]);
        app.on_key(key('c'));
        assert_eq!(app.contexts(), [Context::Compare, Context::Global]);
        let backend = render(&mut app, w, h);
        let text = format!("{backend:?}");
        assert!(text.contains("smmu-cmdq vs vcmdq0"), "{w}x{h}:\n{text}");
        if h >= 40 {
            assert!(text.contains("batch latency distribution"), "{text}");
            assert!(text.contains("% batches"), "{text}");
        }
        insta::assert_snapshot!(format!("compare_{w}x{h}"), backend);
        app.on_key(code(KeyCode::Esc));
        assert!(app.compare_open().is_none());
    }
}

#[test]
fn compare_takes_the_marked_and_the_selected_queue_and_marks_stay_two() {
    let mut app = app_after(2);
    app.on_key(key('c'));
    assert!(
        app.compare_open().is_none(),
        "nothing marked: nothing to compare"
    );
    app.on_key(key('m'));
    app.on_key(key('c'));
    assert!(
        app.compare_open().is_none(),
        "the marked queue is the selected one"
    );
    app.on_key(code(KeyCode::Down));
    app.on_key(code(KeyCode::Down));
    app.on_key(key('c'));
    assert_eq!(
        app.compare_open().map(|p| p.to_vec()),
        Some(vec!["smmu-cmdq".to_string(), "vcmdq1".to_string()])
    );
    app.on_key(code(KeyCode::Esc));
    for _ in 0..3 {
        app.on_key(key('m'));
        app.on_key(code(KeyCode::Down));
    }
    assert_eq!(
        app.marked_queues(),
        ["vcmdq2", "vcmdq3"],
        "a third mark drops the oldest"
    );
    app.on_key(code(KeyCode::Up));
    app.on_key(key('m'));
    assert_eq!(app.marked_queues(), ["vcmdq2"], "m again unmarks");
}

#[test]
fn footer_and_help_list_the_new_keys() {
    let app = app_after(0);
    let words: Vec<_> = keymap::hints(&app.contexts())
        .into_iter()
        .map(|h| h.1)
        .collect();
    assert!(
        words.contains(&"mark") && words.contains(&"compare"),
        "{words:?}"
    );
    let help = help_text();
    for line in [
        "  m  mark / unmark to compare (2)",
        "  c  compare the marked queues",
        "Compare view",
        "Mouse",
        "click header",
        "PROD CONS",
    ] {
        assert!(help.contains(line), "help lacks {line:?}:\n{help}");
    }
}
