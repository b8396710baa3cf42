//! Snapshot tests: every view and popup at three sizes, from the fixed fixture.
//! Text only (styles are covered by the colour tests). Update with `INSTA_UPDATE=always`
//! (or `cargo insta review`) after an intended change, and read the diff.

#[path = "tui_fixture.rs"]
mod tui_fixture;

use cmdqv_tui::tui::{App, TuiOptions, View};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

const SIZES: [(u16, u16); 3] = [(80, 24), (120, 40), (200, 60)];

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

fn app() -> App {
    let mut app = App::new(TuiOptions::default());
    app.update(tui_fixture::summary());
    app
}

fn render(app: &mut App, w: u16, h: u16) -> TestBackend {
    let mut term = Terminal::new(TestBackend::new(w, h)).unwrap();
    term.draw(|f| app.draw(f)).unwrap();
    term.backend().clone()
}

/// Snapshot one state at every size; `setup` brings a fresh app into the state.
fn snap_all(name: &str, setup: impl Fn(&mut App)) {
    for (w, h) in SIZES {
        let mut a = app();
        setup(&mut a);
        let backend = render(&mut a, w, h);
        insta::assert_snapshot!(format!("{name}_{w}x{h}"), backend);
    }
}

#[test]
fn dashboard() {
    snap_all("dashboard", |_| {});
}

#[test]
fn dashboard_sorted_by_p99_with_selection() {
    snap_all("dashboard_sorted", |a| {
        for _ in 0..11 {
            a.on_key(key(KeyCode::Char('s')));
        }
        a.on_key(key(KeyCode::Down));
        a.on_key(key(KeyCode::Down));
    });
}

#[test]
fn detail_of_error_queue() {
    snap_all("detail_error", |a| {
        for _ in 0..2 {
            a.on_key(key(KeyCode::Down));
        }
        assert_eq!(a.selected_queue(), Some("vcmdq1"));
        a.on_key(key(KeyCode::Enter));
    });
}

#[test]
fn detail_of_hardware_queue() {
    snap_all("detail_hw", |a| {
        a.on_key(key(KeyCode::Down));
        assert_eq!(a.selected_queue(), Some("vcmdq0"));
        a.on_key(key(KeyCode::Enter));
    });
}

#[test]
fn log_view() {
    snap_all("log", |a| {
        a.on_key(key(KeyCode::Char('2'))).map_or((), |_| ())
    });
}

#[test]
fn log_scrolled_back() {
    snap_all("log_scrolled", |a| {
        a.on_key(key(KeyCode::Char('2')));
        let mut term = Terminal::new(TestBackend::new(80, 24)).unwrap();
        term.draw(|f| a.draw(f)).unwrap();
        a.on_key(key(KeyCode::PageUp));
        assert!(!a.log_follow());
    });
}

#[test]
fn probes_view() {
    snap_all("probes", |a| {
        a.on_key(key(KeyCode::Char('3')));
        assert_eq!(a.view(), View::Probes);
    });
}

#[test]
fn help_popup() {
    snap_all("help", |a| {
        a.on_key(key(KeyCode::Char('?')));
    });
}

#[test]
fn filter_input() {
    snap_all("filter_input", |a| {
        a.on_key(key(KeyCode::Char('/')));
        for c in "hw".chars() {
            a.on_key(key(KeyCode::Char(c)));
        }
        assert!(a.editing_filter());
    });
}

#[test]
fn log_filter_input() {
    snap_all("log_filter", |a| {
        a.on_key(key(KeyCode::Tab));
        a.on_key(key(KeyCode::Char('/')));
        for c in "ioctl".chars() {
            a.on_key(key(KeyCode::Char(c)));
        }
        a.on_key(key(KeyCode::Enter));
    });
}

#[test]
fn paused_recording_with_drops() {
    snap_all("paused_rec_drops", |a| {
        let mut s = tui_fixture::summary();
        s.drops = 1_234;
        s.source = cmdqv_core::event::Source::Ebpf;
        let mut fresh = App::new(TuiOptions::default());
        fresh.update(s);
        fresh.set_recording(Some("cmdqv-2026.trace".into()));
        fresh.on_key(key(KeyCode::Char(' ')));
        *a = fresh;
    });
}

#[test]
fn waiting_for_first_snapshot() {
    let mut a = App::new(TuiOptions::default());
    insta::assert_snapshot!("waiting_80x24", render(&mut a, 80, 24));
}

#[test]
fn too_small() {
    for (w, h) in [(59, 15), (80, 14), (30, 8)] {
        let mut a = app();
        insta::assert_snapshot!(format!("too_small_{w}x{h}"), render(&mut a, w, h));
    }
}

#[test]
fn a_kvm_run_shows_the_trapped_paths_exits_breakdown_and_modelled_part_under_the_queues() {
    use cmdqv_core::analysis::{Comparison, Latency, SimReport};
    let mut s = tui_fixture::summary();
    let mut c = Comparison::default();
    c.trapped.exits = 12_000;
    for (phase, p50) in [
        ("exit", 900),
        ("vmm_dispatch", 30_000),
        ("consumption", 68_000),
        ("resume", 34_000),
    ] {
        let l = Latency {
            p50,
            ..Default::default()
        };
        c.trapped.breakdown_ns.insert(phase.into(), l);
    }
    c.modelled = vec!["trapped host_invalidate_ns: 28000 (not run here)".into()];
    s.sim = Some(SimReport {
        guest_engine: "kvm".into(),
        comparison: Some(c),
    });
    let mut a = App::new(TuiOptions::default());
    a.update(s.clone());
    let text = format!("{}", render(&mut a, 200, 60));
    let want = format!(
        "trapped: {} exits/s · batch p50: exit 900ns, VMM dispatch 30.0µs, consumption 68.0µs, resume 34.0µs · modelled (not run here): host_invalidate_ns: 28000",
        cmdqv_tui::tui::format::rate(12_000.0 / s.elapsed_s)
    );
    assert!(text.contains(&want), "{want}\n{text}");
    // Without a KVM comparison the pane is as before.
    let mut a = app();
    assert!(!format!("{}", render(&mut a, 200, 60)).contains("trapped:"));
}
