//! The process's one log stream: `tracing` with tracing-subscriber, filtered by `RUST_LOG`
//! (EnvFilter syntax; default `warn`), written to stderr. `log` records join the same stream
//! through tracing-log, among them the probes' own aya-log diagnostics, which
//! [`ProbeLog`](crate::ebpf::probe_log::ProbeLog) passes on. While the terminal UI holds the
//! screen, a line written to stderr would tear it, so lines are held instead (bounded) and the
//! runner moves them into the UI's log pane; whatever is still held when the UI lets go of the
//! terminal goes to stderr then, so nothing is lost silently.

use std::{
    collections::VecDeque,
    io::Write,
    sync::{
        Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

use tracing_subscriber::{EnvFilter, fmt::MakeWriter};

/// Lines held while the UI owns the terminal; older ones are dropped and counted beyond this.
const HELD_CAP: usize = 256;

static UI_HOLDS_TERMINAL: AtomicBool = AtomicBool::new(false);
static HELD: Mutex<VecDeque<String>> = Mutex::new(VecDeque::new());
static HELD_DROPPED: AtomicU64 = AtomicU64::new(0);

/// Installs the stream once (later calls do nothing). `RUST_LOG` chooses what is written;
/// an unparsable `RUST_LOG` is reported and the default used.
pub fn init() {
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.trim().is_empty() => EnvFilter::try_new(&v).unwrap_or_else(|e| {
            eprintln!("cmdqv: RUST_LOG={v:?} is not a valid filter ({e}); using `warn`");
            EnvFilter::new("warn")
        }),
        _ => EnvFilter::new("warn"),
    };
    // try_init also routes the `log` crate's records here (tracing-log); it fails only when a
    // subscriber is already installed, which is then the one to keep.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(LogWriter)
        .with_ansi(false)
        .with_target(true)
        .try_init();
}

/// The UI takes (`true`) or gives back (`false`) the terminal. Giving it back writes what is
/// still held to stderr.
pub fn ui_holds_terminal(on: bool) {
    UI_HOLDS_TERMINAL.store(on, Ordering::SeqCst);
    if !on {
        let rest = take_held();
        let mut err = std::io::stderr().lock();
        for l in rest {
            let _ = writeln!(err, "{l}");
        }
    }
}

/// The lines held since the last call, oldest first, with a line saying how many were dropped.
pub fn take_held() -> Vec<String> {
    let mut held: Vec<String> = lock_held().drain(..).collect();
    let dropped = HELD_DROPPED.swap(0, Ordering::Relaxed);
    if dropped > 0 {
        held.insert(
            0,
            format!("{dropped} log lines dropped while the terminal UI held the screen"),
        );
    }
    held
}

fn lock_held() -> std::sync::MutexGuard<'static, VecDeque<String>> {
    HELD.lock().unwrap_or_else(|p| p.into_inner())
}

fn hold(line: String) {
    let mut h = lock_held();
    if h.len() == HELD_CAP {
        h.pop_front();
        HELD_DROPPED.fetch_add(1, Ordering::Relaxed);
    }
    h.push_back(line);
}

/// Hands each event's text to [`EventText`], which decides at its end where it goes.
struct LogWriter;

impl<'a> MakeWriter<'a> for LogWriter {
    type Writer = EventText;

    fn make_writer(&'a self) -> EventText {
        EventText(Vec::new())
    }
}

/// One formatted event, written out whole when dropped (so a held line is one line).
struct EventText(Vec<u8>);

impl Write for EventText {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for EventText {
    fn drop(&mut self) {
        if self.0.is_empty() {
            return;
        }
        if UI_HOLDS_TERMINAL.load(Ordering::SeqCst) {
            let text = String::from_utf8_lossy(&self.0);
            for l in text.lines().filter(|l| !l.is_empty()) {
                hold(l.to_string());
            }
        } else {
            let _ = std::io::stderr().lock().write_all(&self.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // One test owns the UI flag; other tests of this binary may log meanwhile, so only this
    // test's own lines (by their target) are counted.
    #[test]
    fn lines_are_held_while_the_ui_owns_the_terminal_and_bounded() {
        const T: &str = "cmdqv_logging_test";
        let mine =
            |v: Vec<String>| -> Vec<String> { v.into_iter().filter(|l| l.contains(T)).collect() };
        init();
        ui_holds_terminal(true);
        log::warn!(target: T, "probe said {}", 7);
        tracing::warn!(target: T, "from tracing");
        let got = mine(take_held());
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(
            got[0].contains("WARN cmdqv_logging_test: probe said 7"),
            "{got:?}"
        );
        assert!(got[1].contains("from tracing"), "{got:?}");
        for i in 0..(HELD_CAP + 3) {
            tracing::warn!(target: T, "line {i}");
        }
        let got = take_held();
        let dropped: u64 = got[0]
            .split_once(" log lines dropped")
            .and_then(|(n, _)| n.parse().ok())
            .unwrap_or_else(|| panic!("no drop count first: {:?}", &got[..2]));
        assert!(dropped >= 3, "{dropped}");
        assert!(got.len() <= HELD_CAP + 1);
        let last = format!("line {}", HELD_CAP + 2);
        assert!(
            got.iter().any(|l| l.ends_with(&last)),
            "the newest line is kept"
        );
        ui_holds_terminal(false);
        tracing::warn!(target: T, "to stderr");
        assert!(mine(take_held()).is_empty());
    }
}
