//! `cmdqv bench-serve` (hidden; `cargo xtask bench-serve`): what `cmdqv serve` costs on a host
//! with 128 queues. A sim VMM runs the `many-queues` scenario (128 hardware-backed LVCMDQs on
//! one VINTF, all consuming), `cmdqv serve` follows it as it would any VMM, a scraper takes
//! `/metrics` every `--scrape`, and serve's CPU time (user + system, every thread, from
//! /proc/PID/stat) over `--duration` is divided by the wall time: the share of one core.

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::TcpStream,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use clap::Args;
use serde::Serialize;

use crate::live::parse_duration;

#[derive(Args, Clone, Debug)]
pub struct BenchServeArgs {
    /// How long serve's CPU time is measured.
    #[arg(long, value_parser = parse_duration, default_value = "60s")]
    pub duration: Duration,
    /// Scrape interval.
    #[arg(long, value_parser = parse_duration, default_value = "15s")]
    pub scrape: Duration,
    /// The sim scenario that provides the queues.
    #[arg(long, default_value = "many-queues")]
    pub scenario: String,
    /// Queues the VMM must show before the measurement starts.
    #[arg(long, default_value_t = 128)]
    pub queues: usize,
    /// One JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct BenchReport {
    scenario: String,
    queues: usize,
    scrape_s: f64,
    wall_s: f64,
    cpu_s: f64,
    /// Percent of one core.
    cpu_percent: f64,
    scrapes: u64,
    exposition_bytes: usize,
    rss_kib: u64,
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// utime + stime of every thread of `pid`, in seconds.
fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("malformed /proc stat")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of stat(5); `rest` starts at field 3.
    let ticks: u64 = f[11].parse::<u64>()? + f[12].parse::<u64>()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Ok(ticks as f64 / hz)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn scrape(port: u16) -> Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nAccept: application/openmetrics-text; version=1.0.0\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    if !out.starts_with("HTTP/1.1 200") {
        bail!("scrape failed: {}", out.lines().next().unwrap_or(""));
    }
    Ok(out)
}

/// Starts `cmdqv serve` on a free port; returns it and the port.
fn start_serve(exe: &std::path::Path) -> Result<(Killed, u16)> {
    let mut child = Command::new(exe)
        .args([
            "serve",
            "--metrics-listen",
            "127.0.0.1:0",
            "--log2size",
            "10",
        ])
        .args(["--metrics-max-queues", "128"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting cmdqv serve")?;
    let stderr = child.stderr.take().context("serve's stderr")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(p) = l.split("metrics at http://127.0.0.1:").nth(1) {
                let _ = tx.send(p.trim_end_matches("/metrics").parse::<u16>());
            }
        }
    });
    let port = rx
        .recv_timeout(Duration::from_secs(30))
        .context("serve never said where its metrics are")??;
    Ok((Killed(child), port))
}

/// Waits until serve exposes `want` queues of the sim VMM.
fn wait_for_queues(port: u16, vm: &str, want: usize) -> Result<()> {
    let end = Instant::now() + Duration::from_secs(60);
    let label = format!("vm=\"{vm}\"");
    loop {
        let text = scrape(port)?;
        let n = text
            .lines()
            .filter(|l| l.starts_with("cmdqv_commands_total{") && l.contains(&label))
            .count();
        if n >= want {
            return Ok(());
        }
        if Instant::now() > end {
            bail!("serve shows {n} queues of {vm}, not {want}");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

pub fn run(a: BenchServeArgs) -> Result<()> {
    let exe = std::env::current_exe().context("locating the cmdqv binary")?;
    let run_ms = (a.duration + Duration::from_secs(120))
        .as_millis()
        .to_string();
    let mut vmm = Killed(
        Command::new(&exe)
            .args([
                "sim-vmm",
                "--scenario",
                &a.scenario,
                "--duration-ms",
                &run_ms,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .context("starting the sim VMM")?,
    );
    let mut vmm_in = vmm.0.stdin.take().context("sim VMM stdin")?;
    writeln!(vmm_in, "go ebpf")?;
    vmm_in.flush()?;
    let (serve, port) = start_serve(&exe)?;
    let pid = serve.0.id();
    wait_for_queues(port, &format!("sim:{}", a.scenario), a.queues)?;
    let (cpu0, t0) = (cpu_seconds(pid)?, Instant::now());
    let (mut scrapes, mut bytes) = (0u64, 0usize);
    while t0.elapsed() < a.duration {
        bytes = scrape(port)?.len();
        scrapes += 1;
        let left = a.duration.saturating_sub(t0.elapsed());
        std::thread::sleep(a.scrape.min(left));
    }
    let (cpu1, wall) = (cpu_seconds(pid)?, t0.elapsed().as_secs_f64());
    let r = BenchReport {
        scenario: a.scenario.clone(),
        queues: a.queues,
        scrape_s: a.scrape.as_secs_f64(),
        wall_s: wall,
        cpu_s: cpu1 - cpu0,
        cpu_percent: 100.0 * (cpu1 - cpu0) / wall,
        scrapes,
        exposition_bytes: bytes,
        rss_kib: rss_kib(pid),
    };
    drop(vmm_in);
    if a.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        println!(
            "cmdqv serve, {} queues ({}), scrape every {:.1} s: {:.3} s CPU in {:.1} s = {:.3} % of one core (budget 1 %); {} scrapes of {} bytes; RSS {} KiB",
            r.queues,
            r.scenario,
            r.scrape_s,
            r.cpu_s,
            r.wall_s,
            r.cpu_percent,
            r.scrapes,
            r.exposition_bytes,
            r.rss_kib
        );
    }
    Ok(())
}
