//! `cmdqv bench-probes` (hidden; `cargo xtask bench-probes` runs it): what our uprobe costs per
//! probed event compared with bpftrace on the same uprobe, and the highest event rate that
//! reaches userspace without drops. Numbers go to BENCHMARKS.md (## eBPF probes).
//!
//! The target is `cmdqv bench-hook`, a child process that calls the sim VMM's
//! `cmdqv_vmm_command` hook N times, either in a tight loop or paced at a rate, and prints how
//! long that took. Every traced variant attaches to that child only (pid-scoped uprobe), and our
//! collector drains the ring buffer through the async runtime (an `AsyncTracer`)
//! while the child runs.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use clap::Args;
use nix::{sys::signal::Signal, unistd::Pid};

use crate::{
    commands::bench_hook::HookRun,
    ebpf::{BATCHED_WAKEUP_BYTES, Tracer, TracerConfig},
};

#[derive(Args, Clone, Debug)]
pub struct BenchProbesArgs {
    /// Hook calls per cost run (a uprobe hit costs ~10 µs in a VM: keep it ≤ 1e5).
    #[arg(long, default_value_t = 100_000)]
    pub calls: u64,
    /// Repetitions of each cost run (the median is reported).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Offered rates in events/s, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "10000,50000,100000,200000"
    )]
    pub rates: Vec<u64>,
    /// Seconds per offered rate.
    #[arg(long, default_value_t = 1.0)]
    pub rate_secs: f64,
    /// Do not compare with bpftrace.
    #[arg(long)]
    pub no_bpftrace: bool,
}

fn spawn_hook(exe: &Path, calls: u64, rate: Option<u64>, wait: bool) -> Result<Child> {
    let mut c = Command::new(exe);
    c.arg("bench-hook").arg("--calls").arg(calls.to_string());
    if let Some(r) = rate {
        c.arg("--rate").arg(r.to_string());
    }
    if wait {
        c.arg("--wait");
    }
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting cmdqv bench-hook")
}

fn hook_result(child: Child) -> Result<HookRun> {
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("cmdqv bench-hook failed: {}", out.status);
    }
    serde_json::from_slice(&out.stdout).context("reading cmdqv bench-hook's result")
}

fn go(child: &mut Child) -> Result<()> {
    let stdin = child.stdin.as_mut().context("bench-hook stdin")?;
    writeln!(stdin, "go")?;
    stdin.flush()?;
    Ok(())
}

/// One run under our probe: (hook run, records delivered, records dropped). With `drain` false
/// the collector reads only after the child exits: the kernel then never has to wake a waiting
/// reader (the ring holds ~87k command records), which isolates the cost of wakeups.
fn run_ours(
    exe: &Path,
    calls: u64,
    rate: Option<u64>,
    drain: bool,
    wakeup_bytes: u64,
) -> Result<(HookRun, u64, u64)> {
    let mut child = spawn_hook(exe, calls, rate, true)?;
    let tracer = Tracer::load(&TracerConfig {
        pid: child.id(),
        sim_vmm: Some(exe.to_path_buf()),
        wakeup_bytes,
        ..Default::default()
    })?;
    for p in tracer.probes() {
        if p.status != "attached" {
            bail!("probe {} did not attach: {}", p.name, p.reason);
        }
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let mut at = tracer.into_async()?;
        go(&mut child)?;
        let mut done = tokio::task::spawn_blocking(move || hook_result(child));
        let mut delivered = 0u64;
        let run = if drain {
            loop {
                tokio::select! {
                    r = at.next_batch(|_| delivered += 1) => { r?; }
                    r = &mut done => break r??,
                }
            }
        } else {
            done.await??
        };
        // What the kernel wrote before the child exited is in the ring already.
        delivered += at.get_mut().drain(|_| {}) as u64;
        Ok((run, delivered, at.get_ref().drops()))
    })
}

/// One run under bpftrace counting the same uprobe; returns (hook run, bpftrace's count).
fn run_bpftrace(exe: &Path, calls: u64) -> Result<(HookRun, u64)> {
    let mut child = spawn_hook(exe, calls, None, true)?;
    let prog = format!(
        "uprobe:{}:cmdqv_vmm_command {{ @c = count(); }}",
        exe.display()
    );
    // bpftrace can hang on some probe types and ignore SIGTERM: a hard deadline.
    let mut bt = Command::new("timeout")
        .args(["-s", "KILL", "120", "bpftrace", "-p"])
        .arg(child.id().to_string())
        .arg("-e")
        .arg(&prog)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting bpftrace")?;
    let mut out = BufReader::new(bt.stdout.take().context("bpftrace stdout")?);
    let mut line = String::new();
    loop {
        line.clear();
        if out.read_line(&mut line)? == 0 {
            let _ = child.kill();
            let err = bt
                .wait_with_output()
                .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
                .unwrap_or_default();
            bail!("bpftrace exited before attaching: {}", err.trim());
        }
        if line.starts_with("Attaching") {
            break;
        }
    }
    // "Attaching 1 probe..." is printed before the attach itself: let it finish.
    std::thread::sleep(Duration::from_millis(500));
    go(&mut child)?;
    let run = hook_result(child)?;
    // bpftrace -p exits when the target does; SIGINT it if it has not yet.
    let deadline = Instant::now() + Duration::from_secs(5);
    while bt.try_wait()?.is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if bt.try_wait()?.is_none() {
        // SIGINT reaches `timeout`, which passes it on to bpftrace.
        let _ = nix::sys::signal::kill(Pid::from_raw(bt.id() as i32), Signal::SIGINT);
    }
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest)?;
    let _ = bt.wait();
    let count = rest
        .lines()
        .find_map(|l| l.trim().strip_prefix("@c:"))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("no @c count in bpftrace's output: {rest:?}"))?;
    Ok((run, count))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn per_call(r: &HookRun) -> f64 {
    r.elapsed_ns as f64 / r.calls.max(1) as f64
}

/// Our variants: (label, drain while running, wakeup_bytes).
const VARIANTS: [(&str, bool, u64); 3] = [
    (
        "cmdqv uprobe → ring buffer → collector, a wakeup per record",
        true,
        0,
    ),
    (
        "cmdqv uprobe → ring buffer → collector, batched wakeups (64 KiB)",
        true,
        BATCHED_WAKEUP_BYTES,
    ),
    (
        "cmdqv uprobe, collector reading only after the run (no wakeups)",
        false,
        0,
    ),
];

/// Medians of the cost runs, in ns per call.
struct Costs {
    untraced: f64,
    /// One per [`VARIANTS`] entry.
    ours: Vec<f64>,
    /// (delivered, dropped) of the last run of each variant.
    fates: Vec<(u64, u64)>,
    bpftrace: Option<f64>,
}

/// Runs the benchmark and prints the tables (Markdown, ready for BENCHMARKS.md).
pub fn run(a: BenchProbesArgs) -> Result<()> {
    let exe: PathBuf = std::env::current_exe().context("locating the cmdqv binary")?;
    let runs = a.runs.max(1);
    println!(
        "## cost per probed event: {} calls of cmdqv_vmm_command, median of {runs} runs\n",
        a.calls
    );
    let bpftrace = !a.no_bpftrace;
    let have_bpftrace = bpftrace
        && Command::new("bpftrace")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
    let mut notes = Vec::new();
    if bpftrace && !have_bpftrace {
        notes.push(
            "bpftrace not installed: `apt-get install bpftrace` (cargo xtask bench-probes does it)"
                .to_string(),
        );
    }
    let costs = measure_costs(&exe, a.calls, runs, have_bpftrace, &mut notes)?;
    print_costs(&costs);
    for n in &notes {
        println!("\nnote: {n}");
    }
    print_delivery(&exe, &a.rates, a.rate_secs)
}

/// `runs` rounds of: untraced, each of our variants, bpftrace.
fn measure_costs(
    exe: &Path,
    n: u64,
    runs: usize,
    have_bpftrace: bool,
    notes: &mut Vec<String>,
) -> Result<Costs> {
    let mut untraced = Vec::new();
    let mut ours: Vec<Vec<f64>> = vec![Vec::new(); VARIANTS.len()];
    let mut fates = vec![(0u64, 0u64); VARIANTS.len()];
    let mut bpft = Vec::new();
    for _ in 0..runs {
        let c = spawn_hook(exe, n, None, false)?;
        untraced.push(per_call(&hook_result(c)?));
        for (i, &(label, drain, wake)) in VARIANTS.iter().enumerate() {
            let (r, delivered, dropped) = run_ours(exe, n, None, drain, wake)?;
            if delivered + dropped != n {
                notes.push(format!(
                    "{label}: {delivered} delivered + {dropped} dropped != {n} calls"
                ));
            }
            ours[i].push(per_call(&r));
            fates[i] = (delivered, dropped);
        }
        if have_bpftrace {
            let (r, count) = run_bpftrace(exe, n)?;
            if count != n {
                notes.push(format!("bpftrace counted {count} of {n} calls"));
            }
            bpft.push(per_call(&r));
        }
    }
    Ok(Costs {
        untraced: median(untraced),
        ours: ours.into_iter().map(median).collect(),
        fates,
        bpftrace: (!bpft.is_empty()).then(|| median(bpft)),
    })
}

fn print_costs(c: &Costs) {
    let base = c.untraced;
    println!(
        "| variant | ns per call | probe cost (ns/hit, minus untraced) | delivered / dropped (last run) |"
    );
    println!("|---|---|---|---|");
    println!("| untraced | {base:.1} | — | — |");
    for (((label, ..), cost), (d, x)) in VARIANTS.iter().zip(&c.ours).zip(&c.fates) {
        println!("| {label} | {cost:.0} | {:.0} | {d} / {x} |", cost - base);
    }
    if let Some(b) = c.bpftrace {
        println!(
            "| bpftrace `@c = count()` on the same uprobe | {b:.0} | {:.0} | counted in a map |",
            b - base
        );
        println!(
            "\nratio cmdqv / bpftrace (probe cost): {:.2} with a wakeup per record, {:.2} with batched wakeups",
            (c.ours[0] - base) / (b - base),
            (c.ours[1] - base) / (b - base)
        );
    }
}

/// The delivery table: each offered rate with per-record and batched wakeups.
fn print_delivery(exe: &Path, rates: &[u64], rate_secs: f64) -> Result<()> {
    println!(
        "\n## delivery at offered rates ({rate_secs} s each, collector draining through tokio)\n"
    );
    println!("| offered (events/s) | wakeups | achieved (events/s) | delivered | dropped |");
    println!("|---|---|---|---|---|");
    for &rate in rates {
        let calls = (rate as f64 * rate_secs).round() as u64;
        for (wake, label) in [(0, "per record"), (BATCHED_WAKEUP_BYTES, "batched 64 KiB")] {
            let (r, delivered, dropped) = run_ours(exe, calls, Some(rate), true, wake)?;
            let achieved = r.calls as f64 / (r.elapsed_ns as f64 / 1e9);
            println!("| {rate} | {label} | {achieved:.0} | {delivered} | {dropped} |");
        }
    }
    Ok(())
}
