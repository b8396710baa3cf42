//! `cmdqv bench-hook` (hidden): the probe benchmark's target. It calls the sim VMM's
//! `cmdqv_vmm_command` hook N times, in a tight loop or paced at a rate, and prints how long
//! that took as one JSON line.

use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Args;
use cmdqv_core::sim::hooks::cmdqv_vmm_command;
use serde::{Deserialize, Serialize};

#[derive(Args, Clone, Debug)]
pub struct BenchHookArgs {
    #[arg(long)]
    pub calls: u64,
    /// Pace the calls at this many per second (default: a tight loop).
    #[arg(long)]
    pub rate: Option<u64>,
    /// Wait for a line on stdin first (so probes can attach).
    #[arg(long)]
    pub wait: bool,
}

/// What `cmdqv bench-hook` prints (one JSON line).
#[derive(Debug, Serialize, Deserialize)]
pub struct HookRun {
    pub calls: u64,
    pub elapsed_ns: u64,
}

/// Waits for a line on stdin if `wait` (so probes attach first), then calls the hook `calls`
/// times, paced at `rate` calls/s when given, and prints a [`HookRun`].
pub fn run(a: BenchHookArgs) -> Result<()> {
    if a.wait {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
    }
    let t0 = Instant::now();
    match a.rate {
        None => {
            for i in 0..a.calls {
                cmdqv_vmm_command(0, i as u32, i, !i);
            }
        }
        Some(rate) => paced(a.calls, rate, t0),
    }
    let elapsed_ns = t0.elapsed().as_nanos() as u64;
    let run = HookRun {
        calls: a.calls,
        elapsed_ns,
    };
    println!("{}", serde_json::to_string(&run)?);
    Ok(())
}

/// Calls in ticks of ~1 ms, sleeping off the rest of each tick.
fn paced(calls: u64, rate: u64, t0: Instant) {
    let rate = rate.max(1);
    let per_tick = (rate / 1000).max(1);
    let tick = Duration::from_secs_f64(per_tick as f64 / rate as f64);
    let mut next = t0;
    let mut i = 0;
    while i < calls {
        for _ in 0..per_tick.min(calls - i) {
            cmdqv_vmm_command(0, i as u32, i, !i);
            i += 1;
        }
        next += tick;
        if let Some(d) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
    }
}
