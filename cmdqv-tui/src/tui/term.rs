//! The real terminal: raw mode + alternate screen in, and back out on every exit path (normal
//! return, error, panic). The frame loop polls input with a timeout from the refresh rate and
//! pulls the newest snapshot each frame, so it never waits on the collector.

use std::io::{self, Stdout};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use crossterm::event::{
    self, DisableMouseCapture, EnableMouseCapture, Event, KeyCode, KeyEvent, KeyEventKind,
    KeyModifiers,
};
use crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use crossterm::{cursor, execute};
use ratatui::Terminal;
use ratatui::backend::{Backend, CrosstermBackend};

use super::app::App;
use super::config;
use super::options::TuiOptions;
use super::source::{Control, SnapshotSource};
use crate::live::logging;

type PanicHook = Box<dyn Fn(&std::panic::PanicHookInfo<'_>) + Sync + Send + 'static>;

/// Is the terminal in our raw/alternate-screen state?
static TAKEN_OVER: AtomicBool = AtomicBool::new(false);
/// Did we turn mouse capture on (so it must be turned off again)?
static MOUSE_ON: AtomicBool = AtomicBool::new(false);

/// Puts the terminal back: leave the alternate screen, show the cursor, cooked mode.
/// Only the first call after set-up acts: leaving the alternate screen twice would move the
/// cursor back over what was printed in between (the panic message).
fn restore_terminal() {
    if TAKEN_OVER.swap(false, Ordering::SeqCst) {
        if MOUSE_ON.swap(false, Ordering::SeqCst) {
            let _ = execute!(io::stdout(), DisableMouseCapture);
        }
        let _ = disable_raw_mode();
        let _ = execute!(io::stdout(), LeaveAlternateScreen, cursor::Show);
        // Log lines held while the screen was ours go to stderr now, on the restored screen.
        logging::ui_holds_terminal(false);
    }
}

/// Owns the terminal set-up; dropping it restores the terminal and the previous panic hook.
struct TerminalGuard {
    previous_hook: Option<Arc<PanicHook>>,
}

impl TerminalGuard {
    /// Take the terminal over; `mouse` also turns mouse capture on (never sent without it, so
    /// the terminal's own text selection keeps working).
    fn enter(mouse: bool) -> anyhow::Result<Self> {
        // Restore before the panic message is printed, so it lands on a usable screen.
        let previous: Arc<PanicHook> = Arc::new(std::panic::take_hook());
        let chained = Arc::clone(&previous);
        std::panic::set_hook(Box::new(move |info| {
            restore_terminal();
            chained(info);
        }));
        let guard = Self {
            previous_hook: Some(previous),
        };
        TAKEN_OVER.store(true, Ordering::SeqCst);
        logging::ui_holds_terminal(true);
        enable_raw_mode().context("cannot put the terminal in raw mode (is stdin a terminal?)")?;
        execute!(io::stdout(), EnterAlternateScreen, cursor::Hide)
            .context("cannot switch to the alternate screen")?;
        if mouse {
            MOUSE_ON.store(true, Ordering::SeqCst);
            execute!(io::stdout(), EnableMouseCapture).context("cannot turn mouse capture on")?;
        }
        Ok(guard)
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore_terminal();
        if let Some(prev) = self.previous_hook.take() {
            if !std::thread::panicking() {
                let _ = std::panic::take_hook();
                std::panic::set_hook(Box::new(move |info| prev(info)));
            }
        }
    }
}

/// Takes over the terminal (alternate screen, raw mode, mouse capture unless the installed
/// [`config`] turns it off), runs until q / Ctrl-C, restores the terminal on every exit path
/// including panic (a panic hook restores it first). The app is set up from the installed
/// config (first view, columns, theme, keys).
///
/// Every frame: pull [`SnapshotSource::latest`] (non-blocking), draw, then wait for input at most
/// until the next frame is due. Keys become [`Control`] messages sent to the source; `Quit` is
/// sent before returning.
pub fn run(mut source: Box<dyn SnapshotSource>, opts: TuiOptions) -> anyhow::Result<()> {
    let opts = opts.with_env();
    let cfg = config::installed();
    let _guard = TerminalGuard::enter(cfg.mouse)?;
    let mut terminal: Terminal<CrosstermBackend<Stdout>> =
        Terminal::new(CrosstermBackend::new(io::stdout())).context("cannot open the terminal")?;
    terminal.clear()?;
    let mut app = App::with_config(opts, &cfg);
    run_loop(&mut terminal, source.as_mut(), &mut app, |timeout| {
        if event::poll(timeout)? {
            event::read().map(Some)
        } else {
            Ok(None)
        }
    })
}

/// The frame loop of [`run`], on any backend and any input (tests drive it with a
/// `TestBackend` and scripted events). `next_event(timeout)` returns the next input event, or
/// `None` once `timeout` has passed without one; it must not wait longer than `timeout`.
/// [`SnapshotSource::stop_requested`] is asked before each wait.
pub fn run_loop<B: Backend>(
    terminal: &mut Terminal<B>,
    source: &mut dyn SnapshotSource,
    app: &mut App,
    mut next_event: impl FnMut(Duration) -> io::Result<Option<Event>>,
) -> anyhow::Result<()>
where
    B::Error: Send + Sync + 'static,
{
    loop {
        if let Some(s) = source.latest() {
            app.update(s);
        }
        app.set_recording(source.recording());
        app.set_finished(source.finished());
        terminal.draw(|f| app.draw(f))?;

        let frame = Duration::from_secs(1) / app.refresh_hz().max(1);
        let deadline = Instant::now() + frame;
        loop {
            let timeout = deadline.saturating_duration_since(Instant::now());
            if timeout.is_zero() {
                break;
            }
            // A stop signal from outside quits the way the Ctrl-C key does.
            let event = if source.stop_requested() {
                Some(Event::Key(KeyEvent::new(
                    KeyCode::Char('c'),
                    KeyModifiers::CONTROL,
                )))
            } else {
                next_event(timeout)?
            };
            match event {
                None => break,
                Some(Event::Key(key)) if key.kind != KeyEventKind::Release => {
                    if let Some(c) = app.on_key(key) {
                        let quit = c == Control::Quit;
                        source.control(c);
                        if quit {
                            return Ok(());
                        }
                    }
                    // Redraw at once so keys feel immediate.
                    break;
                }
                Some(Event::Resize(..)) => break,
                // A click or a wheel notch redraws at once, like a key; moves do not.
                Some(Event::Mouse(m)) if app.on_mouse(m) => break,
                Some(_) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use ratatui::backend::TestBackend;

    use super::*;
    use cmdqv_core::analysis::Summary;

    /// A source whose runner got a stop signal after two frames.
    #[derive(Default)]
    struct Stopping {
        pulls: u32,
        controls: Vec<Control>,
    }

    impl SnapshotSource for Stopping {
        fn latest(&mut self) -> Option<Summary> {
            self.pulls += 1;
            None
        }
        fn control(&mut self, c: Control) {
            self.controls.push(c);
        }
        fn stop_requested(&self) -> bool {
            self.pulls >= 2
        }
    }

    #[test]
    fn a_stop_signal_quits_like_ctrl_c() {
        let mut term = Terminal::new(TestBackend::new(80, 24)).unwrap();
        let mut src = Stopping::default();
        let mut app = App::new(TuiOptions::default());
        // Without the stop the loop would go on until this `q`, many frames later.
        let mut waits = 0;
        run_loop(&mut term, &mut src, &mut app, |_| {
            waits += 1;
            let q = KeyEvent::new(KeyCode::Char('q'), KeyModifiers::NONE);
            Ok((waits > 5).then_some(Event::Key(q)))
        })
        .unwrap();
        assert_eq!(src.pulls, 2);
        assert_eq!(src.controls, [Control::Quit]);
        assert!(app.should_quit());
    }
}
