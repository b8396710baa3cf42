//! The frame loop on a TestBackend with scripted input: one snapshot pull per frame, keys become
//! control messages for the collector, q ends the loop after sending Quit, input waits never
//! exceed one frame.

#[path = "tui_fixture.rs"]
mod tui_fixture;

use std::time::Duration;

use cmdqv_core::analysis::Summary;
use cmdqv_tui::tui::{App, Control, SnapshotSource, TuiOptions, run_loop};
use crossterm::event::{Event, KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

#[derive(Default)]
struct Scripted {
    pulls: u64,
    controls: Vec<Control>,
    recording: Option<String>,
}

impl SnapshotSource for Scripted {
    fn latest(&mut self) -> Option<Summary> {
        self.pulls += 1;
        // Nothing for the first frames, as before the collector's first snapshot.
        (self.pulls > 2).then(|| {
            let mut s = tui_fixture::summary();
            s.events = self.pulls;
            s
        })
    }

    fn control(&mut self, c: Control) {
        if c == Control::ToggleRecording {
            self.recording = Some("x.trace".into());
        }
        self.controls.push(c);
    }

    fn recording(&self) -> Option<String> {
        self.recording.clone()
    }

    fn finished(&self) -> bool {
        self.pulls > 5
    }
}

fn k(c: char) -> Option<Event> {
    Some(Event::Key(KeyEvent::new(
        KeyCode::Char(c),
        KeyModifiers::NONE,
    )))
}

#[test]
fn loop_pulls_every_frame_and_forwards_controls() {
    let mut term = Terminal::new(TestBackend::new(100, 30)).unwrap();
    let mut src = Scripted::default();
    let mut app = App::new(TuiOptions::default());
    // None = that frame's wait ran out without input.
    let mut script = vec![
        None,
        None,
        None,
        k(' '),
        None,
        k('+'),
        k('r'),
        None,
        k('x'),
        None,
        k('q'),
    ]
    .into_iter();
    let mut waits = Vec::new();
    run_loop(&mut term, &mut src, &mut app, |timeout| {
        waits.push(timeout);
        Ok(script.next().expect("loop went on after q"))
    })
    .unwrap();
    assert_eq!(
        src.controls,
        [
            Control::Pause(true),
            Control::RefreshHz(15),
            Control::ToggleRecording,
            Control::Quit
        ]
    );
    // One pull per frame; a timeout or any key (redrawn at once) ends a frame.
    assert_eq!(src.pulls, 11);
    assert!(
        waits.iter().all(|w| *w <= Duration::from_millis(100)),
        "{waits:?}"
    );
    assert!(app.should_quit());
    // The recording indicator came from the source.
    let screen = format!("{}", term.backend());
    assert!(screen.contains("REC x.trace"), "{screen}");
    assert!(screen.contains("PAUSED"), "{screen}");
    assert!(screen.contains("ENDED"), "{screen}");
}

#[test]
fn ctrl_c_quits_the_loop() {
    let mut term = Terminal::new(TestBackend::new(80, 24)).unwrap();
    let mut src = Scripted::default();
    let mut app = App::new(TuiOptions::default());
    let mut script = vec![
        None,
        Some(Event::Resize(80, 24)),
        Some(Event::Key(KeyEvent::new(
            KeyCode::Char('c'),
            KeyModifiers::CONTROL,
        ))),
    ]
    .into_iter();
    run_loop(&mut term, &mut src, &mut app, |_| {
        Ok(script.next().unwrap())
    })
    .unwrap();
    assert_eq!(src.controls, [Control::Quit]);
}

#[test]
fn channel_source_takes_the_newest_and_never_waits() {
    use cmdqv_tui::tui::ChannelSource;
    use std::sync::{Arc, Mutex, mpsc};
    let (snap_tx, snap_rx) = mpsc::channel();
    let (ctl_tx, ctl_rx) = mpsc::channel();
    let rec = Arc::new(Mutex::new(None));
    let mut src = ChannelSource::new(snap_rx, ctl_tx, Arc::clone(&rec));
    assert!(src.latest().is_none(), "nothing yet, and no waiting");
    for events in 1..=3 {
        let mut s = tui_fixture::summary();
        s.events = events;
        snap_tx.send(s).unwrap();
    }
    assert_eq!(src.latest().map(|s| s.events), Some(3));
    assert!(src.latest().is_none());
    src.control(Control::ToggleRecording);
    assert_eq!(ctl_rx.try_recv(), Ok(Control::ToggleRecording));
    *rec.lock().unwrap() = Some("a.trace".into());
    assert_eq!(src.recording().as_deref(), Some("a.trace"));
    drop(snap_tx);
    assert!(!src.finished());
    assert!(src.latest().is_none());
    assert!(src.is_closed());
    assert!(src.finished());
    drop(ctl_rx);
    src.control(Control::Quit); // a gone collector is not an error
}
