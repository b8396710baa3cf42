//! One frame of the live UI at 200×60 with 128 VCMDQs (+ the SMMU queue), into a TestBackend.
//! Budget (ARCHITECTURE.md): ≤ 5 ms per frame. The first four re-use one snapshot's view model,
//! as frames between snapshots do; `update_and_draw` builds a new one every frame, as a live
//! collector that sends a snapshot per frame makes it.
//!
//! `AYA_BUILD_SKIP=1 cargo bench -p cmdqv-tui --bench render`

#[path = "../tests/tui_fixture.rs"]
mod tui_fixture;

use cmdqv_core::analysis::Summary;
use cmdqv_tui::tui::{App, TuiOptions};
use criterion::{Criterion, criterion_group, criterion_main};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

fn frame(c: &mut Criterion) {
    let summary = tui_fixture::many_queues(128);
    let mut group = c.benchmark_group("tui_frame_200x60_128q");
    for (name, keys) in [
        ("dashboard", vec![]),
        ("dashboard_sorted_p99", vec![KeyCode::Char('s'); 11]),
        ("detail", vec![KeyCode::Down, KeyCode::Enter]),
        ("log", vec![KeyCode::Char('2')]),
    ] {
        let mut app = App::new(TuiOptions::default());
        app.update(summary.clone());
        for k in keys {
            app.on_key(KeyEvent::new(k, KeyModifiers::NONE));
        }
        let mut term = Terminal::new(TestBackend::new(200, 60)).unwrap();
        group.bench_function(name, |b| {
            b.iter(|| {
                term.draw(|f| app.draw(f)).unwrap();
            })
        });
    }
    // The detail view's charts over a full history (600 one-second intervals), and the
    // compare view of two queues. The history is built inside the benchmark's closure, which
    // runs only when the benchmark is selected, and outside the timed loop.
    for (name, keys) in [
        (
            "detail_charts_600_points",
            vec![KeyCode::Down, KeyCode::Enter],
        ),
        (
            "compare",
            vec![
                KeyCode::Char('m'),
                KeyCode::Down,
                KeyCode::Char('m'),
                KeyCode::Char('c'),
            ],
        ),
    ] {
        group.bench_function(name, |b| {
            let mut app = charted(&summary);
            for k in &keys {
                app.on_key(KeyEvent::new(*k, KeyModifiers::NONE));
            }
            let mut term = Terminal::new(TestBackend::new(200, 60)).unwrap();
            b.iter(|| {
                term.draw(|f| app.draw(f)).unwrap();
            })
        });
    }
    // A new snapshot every frame, as in the live loop (update + draw).
    let mut app = App::new(TuiOptions::default());
    let mut term = Terminal::new(TestBackend::new(200, 60)).unwrap();
    group.bench_function("update_and_draw", |b| {
        b.iter_batched(
            || summary.clone(),
            |s| {
                app.update(s);
                term.draw(|f| app.draw(f)).unwrap();
            },
            criterion::BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// An app that saw 600 snapshots one second apart, every queue's commands and latency
/// histogram growing.
fn charted(summary: &Summary) -> App {
    let mut app = App::new(TuiOptions::default());
    for i in 0..600u64 {
        let mut s = summary.clone();
        s.elapsed_s = i as f64;
        for (n, q) in s.queues.iter_mut().enumerate() {
            q.commands += i * (1000 + 37 * ((i + n as u64) % 11));
            for (j, b) in q.latency_histogram.iter_mut().enumerate() {
                b.1 += i * (1 + (j as u64 + i) % 4);
            }
        }
        app.update(s);
    }
    app
}

criterion_group!(benches, frame);
criterion_main!(benches);
