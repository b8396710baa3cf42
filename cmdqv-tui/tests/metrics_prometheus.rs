//! `/metrics` against the real thing: a Prometheus server (Debian's `prometheus` package, which
//! `cargo xtask bootstrap`'s test tools install, with its `promtool`) scrapes `cmdqv sim` on the
//! simulated host, and a PromQL query through its HTTP API must return the same per-queue
//! command totals as cmdqv's own JSON summary of that run; promtool accepts the exposition and
//! the alerting rules; and `cmdqv serve` keeps serving while a followed VMM is killed, while
//! the host probes cannot attach, and under a scrape every 100 ms.

use std::{
    collections::BTreeMap,
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use serde_json::Value;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_cmdqv")
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The tool, or a failure saying how to get it: these tests must not pass without it.
fn tool(name: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/local/bin", "/bin"] {
        let p = Path::new(dir).join(name);
        if p.exists() {
            return p;
        }
    }
    panic!("{name} is missing: `cargo xtask bootstrap` installs it (apt-get install prometheus)");
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("cmdqv-prom-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Killed and reaped on drop, whatever the test's outcome.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A plain HTTP/1.0 GET on localhost; returns (status line, body).
fn http_get(port: u16, path: &str, accept: Option<&str>) -> std::io::Result<(String, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let accept = accept
        .map(|a| format!("Accept: {a}\r\n"))
        .unwrap_or_default();
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n{accept}\r\n")?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    Ok((
        head.lines().next().unwrap_or("").to_string(),
        body.to_string(),
    ))
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// An instant PromQL query: label `by` of each result → value.
fn promql(port: u16, query: &str, by: &str) -> BTreeMap<String, f64> {
    let path = format!("/api/v1/query?query={}", percent_encode(query));
    let Ok((_, body)) = http_get(port, &path, None) else {
        return BTreeMap::new();
    };
    let Ok(v) = serde_json::from_str::<Value>(&body) else {
        return BTreeMap::new();
    };
    v["data"]["result"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| {
            let key = r["metric"][by].as_str()?.to_string();
            let val = r["value"][1].as_str()?.parse().ok()?;
            Some((key, val))
        })
        .collect()
}

/// Starts cmdqv with `args` (which include `--metrics-listen 127.0.0.1:0`); returns it, its
/// metrics port (from the line it prints on stderr) and its stdout lines.
fn start_cmdqv(args: &[&str]) -> (Proc, u16, mpsc::Receiver<String>) {
    let mut child = Command::new(bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (out_tx, out_rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = out_tx.send(l);
        }
    });
    let (port_tx, port_rx) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("[cmdqv] {l}");
            if let Some(rest) = l.split("metrics at http://127.0.0.1:").nth(1) {
                let port: u16 = rest.trim_end_matches("/metrics").parse().unwrap();
                let _ = port_tx.send(port);
            }
        }
    });
    let port = port_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("cmdqv never said where its metrics are");
    (Proc(child), port, out_rx)
}

/// A Prometheus scraping `target_port` every `interval`, with its own config and storage.
fn start_prometheus(dir: &Path, target_port: u16, interval: &str) -> (Proc, u16) {
    let port = free_port();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: {interval}\n  scrape_timeout: {interval}\n\
             scrape_configs:\n  - job_name: cmdqv\n    static_configs:\n      - targets: ['127.0.0.1:{target_port}']\n"
        ),
    )
    .unwrap();
    let child = Command::new(tool("prometheus"))
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--log.level=warn")
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    (Proc(child), port)
}

fn promtool_check_metrics(text: &str) {
    let mut p = Command::new(tool("promtool"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    p.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = p.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The sim runs 4 s and then holds its final figures up for scrapers (`--metrics-hold`), so
/// what Prometheus last scraped is exactly the run's end: equal, not close. The wait for
/// Prometheus to have scraped the end is bounded (80 s) but generous: it needs one scrape after
/// the run ended, on a shared machine.
#[test]
fn prometheus_scrapes_the_sim_and_its_per_queue_totals_equal_the_json_summary() {
    let dir = tmp("sim");
    let (mut cmdqv, mport, stdout) = start_cmdqv(&[
        "sim",
        "--scenario",
        "multi-queue",
        "--no-ebpf",
        "--headless",
        "--json",
        "--duration",
        "4s",
        "--metrics-listen",
        "127.0.0.1:0",
        "--metrics-hold",
        "90s",
    ]);
    // Scrapes every 500 ms with as long to answer: six jobs share this machine's two cores.
    let (_prom, pport) = start_prometheus(&dir, mport, "500ms");
    let line = stdout
        .recv_timeout(Duration::from_secs(30))
        .expect("no JSON summary from cmdqv sim");
    let summary: Value = serde_json::from_str(&line).unwrap();
    let want: BTreeMap<String, f64> = summary["queues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| {
            (
                q["name"].as_str().unwrap().to_string(),
                q["commands"].as_f64().unwrap(),
            )
        })
        .collect();
    assert!(want.len() >= 5, "4 LVCMDQs and the SMMU queue: {want:?}");
    assert!(want.values().filter(|&&n| n > 0.0).count() >= 4, "{want:?}");
    let query = r#"cmdqv_commands_total{job="cmdqv",vm="sim:multi-queue"}"#;
    let deadline = Instant::now() + Duration::from_secs(80);
    let mut got = promql(pport, query, "queue");
    while got != want && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
        got = promql(pport, query, "queue");
    }
    let targets = http_get(pport, "/api/v1/targets", None).map(|(_, b)| b);
    assert_eq!(
        got, want,
        "PromQL {query} against the JSON summary; targets: {targets:?}"
    );
    let want_syncs: BTreeMap<String, f64> = summary["queues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| {
            (
                q["name"].as_str().unwrap().to_string(),
                q["syncs"].as_f64().unwrap(),
            )
        })
        .collect();
    let syncs = promql(
        pport,
        r#"sum by (queue) (cmdqv_syncs_total{job="cmdqv"})"#,
        "queue",
    );
    assert_eq!(
        syncs, want_syncs,
        "CMD_SYNCs per queue, from the same scrape"
    );
    let (_, text) = http_get(mport, "/metrics", None).unwrap();
    promtool_check_metrics(&text);
    let up = text
        .lines()
        .find(|l| l.starts_with("cmdqv_vm_up{") && l.contains(r#"vm="sim:multi-queue""#));
    assert!(
        up.is_some_and(|l| l.ends_with(" 0.0")),
        "the run is over while its figures are held up: {up:?}"
    );
    assert!(cmdqv.0.try_wait().unwrap().is_none(), "still holding");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn promtool_accepts_and_unit_tests_the_alerting_rules_and_the_dashboard_uses_exported_metrics() {
    let rules = repo().join("deploy/prometheus/cmdqv-alerts.yml");
    let out = Command::new(tool("promtool"))
        .args(["check", "rules"])
        .arg(&rules)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool check rules: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The rules' unit tests: each alert fires on the series it is for, and only there.
    let out = Command::new(tool("promtool"))
        .args(["test", "rules"])
        .arg(repo().join("deploy/prometheus/cmdqv-alerts.test.yml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool test rules: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&rules).unwrap();
    for alert in [
        "CmdqvCerrorRate",
        "CmdqvQueueNearFull",
        "CmdqvEventsDropped",
        "CmdqvProbeDetached",
    ] {
        assert!(text.contains(&format!("alert: {alert}")), "{alert} missing");
    }
    let dash: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("deploy/grafana/cmdqv.json")).unwrap(),
    )
    .unwrap();
    let exprs: Vec<&str> = dash["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().into_iter().flatten())
        .filter_map(|t| t["expr"].as_str())
        .collect();
    assert!(exprs.len() >= 6, "{exprs:?}");
    let exported = [
        "cmdqv_commands_total",
        "cmdqv_syncs_total",
        "cmdqv_errors_total",
        "cmdqv_batch_latency_seconds_bucket",
        "cmdqv_queue_occupancy_ratio",
        "cmdqv_events_dropped_total",
        "cmdqv_probe_attached",
        "cmdqv_vm_up",
    ];
    for e in &exprs {
        assert!(
            exported.iter().any(|m| e.contains(m)),
            "{e} uses no exported metric"
        );
    }
}
