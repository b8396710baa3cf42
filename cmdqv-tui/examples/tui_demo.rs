//! The live UI on a fake collector whose numbers move: for trying the TUI in a real terminal
//! without a VM, probes or the sim. `AYA_BUILD_SKIP=1 cargo run -p cmdqv-tui --example tui_demo`
//! (`-- --queues 128` for a big table). Quits on q / Ctrl-C.

#[path = "../tests/tui_fixture.rs"]
mod tui_fixture;

use std::time::Instant;

use cmdqv_core::analysis::{LogLine, QueueState, Summary};
use cmdqv_tui::tui::{self, Control, SnapshotSource, TuiOptions};

/// Makes a new snapshot from the fixture and the wall clock on every call.
struct FakeSource {
    base: Summary,
    start: Instant,
    paused: bool,
    frozen: Option<Summary>,
    recording: Option<String>,
    controls: Vec<Control>,
    seq: u64,
}

impl FakeSource {
    fn snapshot(&mut self) -> Summary {
        let t = self.start.elapsed().as_secs_f64();
        let mut s = self.base.clone();
        s.elapsed_s += t;
        let wobble = |phase: f64| 1.0 + 0.5 * (t * 0.7 + phase).sin();
        s.events_per_s *= wobble(0.0);
        s.events += (t * 45_678.9) as u64;
        for (i, q) in s.queues.iter_mut().enumerate() {
            if matches!(q.state, QueueState::Disabled | QueueState::Error) {
                continue;
            }
            let w = wobble(i as f64);
            q.commands_per_s *= w;
            q.syncs_per_s *= w;
            q.commands += (t * q.commands_per_s) as u64;
            q.prod = q.prod.wrapping_add((t * 37.0) as u32) & 0x1ff;
            q.cons = q.prod.wrapping_sub(2) & 0x1ff;
            q.batch_latency_ns.p99 = (q.batch_latency_ns.p99 as f64 * w) as u64;
            let n = q.rate_history.len();
            q.rate_history.rotate_left((t * 4.0) as usize % n.max(1));
            if let Some(last) = q.rate_history.last_mut() {
                *last = q.commands_per_s as u64;
            }
        }
        self.seq += 1;
        let ts = 90_000_000_000 + (t * 1e9) as u64;
        s.log.push(LogLine {
            ts_ns: ts,
            pid: 4242,
            kind: "mmio".into(),
            text: format!("W VINTF0.LVCMDQ0.PROD_INDX = {:#010x}", self.seq & 0x1ff),
            is_error: false,
        });
        for c in &self.controls {
            s.notes.push(format!("demo collector got {c:?}"));
        }
        s
    }
}

impl SnapshotSource for FakeSource {
    fn latest(&mut self) -> Option<Summary> {
        // For checking that a panic restores the terminal: TUI_DEMO_PANIC_AFTER=<frames>.
        if let Some(n) = std::env::var("TUI_DEMO_PANIC_AFTER")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
        {
            assert!(self.seq < n, "demo panic after {n} frames, as asked");
        }
        if self.paused {
            return self.frozen.clone();
        }
        Some(self.snapshot())
    }

    fn control(&mut self, c: Control) {
        match &c {
            Control::Pause(p) => {
                self.paused = *p;
                self.frozen = p.then(|| self.snapshot());
            }
            Control::ToggleRecording => {
                self.recording = match self.recording {
                    Some(_) => None,
                    None => Some("cmdqv-demo.trace".into()),
                }
            }
            Control::RefreshHz(_) | Control::Quit => {}
        }
        self.controls.push(c);
        let n = self.controls.len();
        self.controls.drain(..n.saturating_sub(3));
    }

    fn recording(&self) -> Option<String> {
        self.recording.clone()
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let queues = args
        .iter()
        .position(|a| a == "--queues")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok());
    let base = match queues {
        Some(n) => tui_fixture::many_queues(n),
        None => tui_fixture::summary(),
    };
    let source = FakeSource {
        base,
        start: Instant::now(),
        paused: false,
        frozen: None,
        recording: None,
        controls: Vec::new(),
        seq: 0,
    };
    tui::run(
        Box::new(source),
        TuiOptions {
            refresh_hz: 10,
            no_color: args.iter().any(|a| a == "--no-color"),
        },
    )
}
