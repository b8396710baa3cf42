//! No Summary content and no terminal size makes the UI panic.

#[path = "tui_fixture.rs"]
mod tui_fixture;

use std::collections::BTreeMap;

use cmdqv_core::analysis::{
    Handover, Latency, LogLine, PhaseLatency, ProbeStatus, QueueError, QueueState, QueueSummary,
    RecentCommand, Summary, VintfSummary,
};
use cmdqv_core::event::Source;
use cmdqv_tui::tui::{App, TuiOptions};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

fn empty() -> Summary {
    Summary {
        source: Source::Replay,
        target: String::new(),
        elapsed_s: 0.0,
        events: 0,
        events_per_s: 0.0,
        drops: 0,
        probes: vec![],
        queues: vec![],
        vintfs: vec![],
        ioctls: BTreeMap::new(),
        handover: None,
        interval: None,
        log: vec![],
        notes: vec![],
        sim: None,
    }
}

fn extreme() -> Summary {
    let long = "x".repeat(2_000);
    let wide = "界".repeat(300);
    let q = |i: u32, state| QueueSummary {
        name: if i.is_multiple_of(2) {
            long.clone()
        } else {
            wide.clone()
        },
        global_id: Some(u32::MAX - i),
        vintf: Some(u32::MAX),
        lvcmdq: Some(u32::MAX),
        state,
        log2size: u8::MAX,
        prod: u32::MAX,
        cons: u32::MAX,
        occupancy: f64::NAN,
        commands: u64::MAX,
        syncs: u64::MAX,
        errors: u64::MAX,
        errors_by_code: BTreeMap::from([(long.clone(), u64::MAX)]),
        batches: u64::MAX,
        commands_per_s: f64::INFINITY,
        syncs_per_s: f64::NEG_INFINITY,
        mean_batch_size: f64::NAN,
        batch_latency_ns: Latency {
            count: u64::MAX,
            p50: u64::MAX,
            p99: u64::MAX,
            max: u64::MAX,
            mean: f64::INFINITY,
        },
        phases_ns: BTreeMap::from([(
            long.clone(),
            PhaseLatency {
                count: u64::MAX,
                p50: u64::MAX,
                p99: u64::MAX,
            },
        )]),
        opcodes: BTreeMap::from([(String::new(), u64::MAX), (long.clone(), 0)]),
        last_error: Some(QueueError {
            ts_ns: u64::MAX,
            code: u8::MAX,
            name: long.clone(),
            index: u32::MAX,
            command: Some([u64::MAX; 2]),
            acknowledged: false,
        }),
        rate_history: vec![u64::MAX; 1_000],
        latency_histogram: (0..200).map(|i| (u64::MAX - i, u64::MAX - i)).collect(),
        recent: vec![
            RecentCommand {
                ts_ns: u64::MAX,
                index: u32::MAX,
                w0: u64::MAX,
                w1: u64::MAX,
                text: wide.clone(),
            };
            40
        ],
        host: None,
    };
    let states = [
        QueueState::Disabled,
        QueueState::Emulated,
        QueueState::Hardware,
        QueueState::Error,
    ];
    Summary {
        source: Source::Ebpf,
        target: long.clone(),
        elapsed_s: f64::INFINITY,
        events: u64::MAX,
        events_per_s: f64::NAN,
        drops: u64::MAX,
        probes: vec![
            ProbeStatus {
                name: long.clone(),
                status: String::new(),
                reason: wide.clone(),
            };
            50
        ],
        queues: (0..300).map(|i| q(i, states[i as usize % 4])).collect(),
        vintfs: vec![
            VintfSummary {
                index: u32::MAX,
                enabled: true,
                hyp_own: true,
                vmid: u16::MAX,
                sids: vec![(u32::MAX, u32::MAX, u32::MAX); 500],
                lvcmdq_err_map: [u64::MAX; 2],
            };
            20
        ],
        ioctls: BTreeMap::from([(long.clone(), (u64::MAX, u64::MAX))]),
        handover: Some(Handover {
            handovers: u64::MAX,
            commands_lost: u64::MAX,
            view_mismatches: u64::MAX,
        }),
        interval: Some(u64::MAX),
        log: vec![
            LogLine {
                ts_ns: u64::MAX,
                pid: u32::MAX,
                kind: wide.clone(),
                text: long.clone(),
                is_error: true,
            };
            500
        ],
        notes: vec![wide.clone(); 30],
        sim: None,
    }
}

const SIZES: [(u16, u16); 9] = [
    (0, 0),
    (1, 1),
    (20, 5),
    (59, 15),
    (60, 14),
    (60, 15),
    (61, 16),
    (80, 24),
    (300, 100),
];

/// Key sequences that reach every view and popup.
fn journeys() -> Vec<Vec<KeyCode>> {
    use KeyCode::*;
    vec![
        vec![],
        vec![Enter],
        vec![Down, Down, Down, Enter, Down, Up],
        vec![Char('?')],
        vec![Char('/'), Char('x')],
        vec![Char('2')],
        vec![Char('2'), PageUp, PageUp, Up],
        vec![Char('2'), Char('/'), Char('z')],
        vec![Char('3'), End, Down],
        vec![Char('s'), Char('s'), Char('S'), End, Enter],
    ]
}

fn exercise(s: &Summary) {
    for (w, h) in SIZES {
        for keys in journeys() {
            let mut a = App::new(TuiOptions::default());
            a.update(s.clone());
            for k in keys {
                a.on_key(KeyEvent::new(k, KeyModifiers::NONE));
            }
            let mut term = Terminal::new(TestBackend::new(w, h)).unwrap();
            term.draw(|f| a.draw(f)).unwrap();
            // A second snapshot and frame, as in the live loop.
            a.update(s.clone());
            term.draw(|f| a.draw(f)).unwrap();
        }
    }
}

#[test]
fn empty_summary_renders_everywhere() {
    exercise(&empty());
}

#[test]
fn extreme_summary_renders_everywhere() {
    exercise(&extreme());
}

#[test]
fn many_queues_render() {
    exercise(&tui_fixture::many_queues(300));
}

#[test]
fn no_snapshot_yet_renders_everywhere() {
    for (w, h) in SIZES {
        let mut a = App::new(TuiOptions::default());
        let mut term = Terminal::new(TestBackend::new(w, h)).unwrap();
        term.draw(|f| a.draw(f)).unwrap();
        for k in [
            KeyCode::Enter,
            KeyCode::Char('?'),
            KeyCode::Down,
            KeyCode::Char('2'),
        ] {
            a.on_key(KeyEvent::new(k, KeyModifiers::NONE));
            term.draw(|f| a.draw(f)).unwrap();
        }
    }
}

#[test]
fn queues_vanishing_under_an_open_detail_view() {
    let mut a = App::new(TuiOptions::default());
    a.update(tui_fixture::summary());
    a.on_key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
    a.update(empty());
    let mut term = Terminal::new(TestBackend::new(80, 24)).unwrap();
    term.draw(|f| a.draw(f)).unwrap();
    assert!(format!("{}", term.backend()).contains("no longer reported"));
}

#[test]
fn too_small_message_names_both_sizes() {
    let mut a = App::new(TuiOptions::default());
    a.update(tui_fixture::summary());
    let mut term = Terminal::new(TestBackend::new(59, 15)).unwrap();
    term.draw(|f| a.draw(f)).unwrap();
    let text = format!("{}", term.backend());
    assert!(
        text.contains("terminal too small (need 60×15, have 59×15)"),
        "{text}"
    );
}
