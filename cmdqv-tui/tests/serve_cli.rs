//! `cmdqv serve` as a service lives: it finds a sim VMM by its page0 memfd, keeps serving when
//! that VMM is killed and when the host kernel's probes cannot attach (as on this x86 machine;
//! where they do attach the run is the same), follows a VMM that starts later, answers a scrape
//! every 100 ms throughout, shrugs off bad and silent clients, and stops cleanly on SIGTERM.

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::TcpStream,
    process::{Child, ChildStdin, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_cmdqv")
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A standalone sim VMM (started with `go ebpf`: nothing traces it, its hooks cost nothing);
/// its stdin is kept open, or it stops.
fn sim_vmm(scenario: &str, name: &str) -> (Proc, ChildStdin) {
    let mut c = Command::new(bin())
        .args(["sim-vmm", "--scenario", scenario, "--duration-ms", "60000"])
        .args(["--name", name])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = c.stdin.take().unwrap();
    writeln!(stdin, "go ebpf").unwrap();
    stdin.flush().unwrap();
    (Proc(c), stdin)
}

fn get(port: u16, raw_request: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(raw_request.as_bytes())?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

fn scrape(port: u16) -> String {
    let r = get(port, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").expect("scrape");
    assert!(r.starts_with("HTTP/1.1 200 OK"), "{r}");
    r
}

/// The value of the first sample line starting with `prefix`.
fn value(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Scrapes every 100 ms until `done` holds for a scrape, or fails after `limit`.
fn scrape_until(port: u16, what: &str, limit: Duration, done: impl Fn(&str) -> bool) -> String {
    let end = Instant::now() + limit;
    loop {
        let text = scrape(port);
        if done(&text) {
            return text;
        }
        assert!(Instant::now() < end, "never saw {what}:\n{text}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn serve_survives_a_killed_vmm_unattachable_probes_bad_clients_and_100ms_scrapes() {
    // Names of their own: other sim VMMs on this machine are followed too, under theirs.
    let (vm_a, vm_b) = (
        format!("serve-test-a-{}", std::process::id()),
        format!("serve-test-b-{}", std::process::id()),
    );
    let (mut first, _first_in) = sim_vmm("trapped-vs-vcmdq", &vm_a);
    let mut serve = Proc(
        Command::new(bin())
            .args([
                "serve",
                "--metrics-listen",
                "127.0.0.1:0",
                "--rescan",
                "200ms",
            ])
            .args(["--log2size", "10"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let (tx, rx) = mpsc::channel();
    let stderr = serve.0.stderr.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("[serve] {l}");
            let _ = tx.send(l);
        }
    });
    let port: u16 = loop {
        let l = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("no metrics line");
        if let Some(p) = l.split("metrics at http://127.0.0.1:").nth(1) {
            break p.trim_end_matches("/metrics").parse().unwrap();
        }
    };
    // A scraper every 100 ms for the whole test, beside the checks' own scrapes.
    let stop_scraping = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let scraper = {
        let stop = stop_scraping.clone();
        std::thread::spawn(move || {
            let (mut ok, mut failed) = (0u32, Vec::new());
            // Bounded: at most 60 s of scrapes whatever happens to the test.
            for _ in 0..600 {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                match get(port, "GET /metrics HTTP/1.1\r\n\r\n") {
                    Ok(r) if r.starts_with("HTTP/1.1 200 OK") && r.contains("cmdqv_vm_up") => {
                        ok += 1
                    }
                    other => failed.push(format!("{other:?}")),
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            (ok, failed)
        })
    };
    let vm1 = r#"cmdqv_commands_total{host="#;
    let text = scrape_until(
        port,
        "the first VMM's LVCMDQ 1 consuming",
        Duration::from_secs(20),
        |t| {
            t.lines().any(|l| {
                l.starts_with(vm1)
                    && l.contains(&format!("vm=\"{vm_a}\""))
                    && l.contains(r#"queue="lvcmdq1""#)
                    && l.rsplit(' ')
                        .next()
                        .and_then(|v| v.parse::<f64>().ok())
                        .is_some_and(|v| v > 0.0)
            })
        },
    );
    assert!(text.contains(r#"probe="page0"} 1"#), "{text}");
    // The host kernel's submission probe: attached or not, it is reported, never fatal.
    scrape_until(
        port,
        "the host submission probe's state",
        Duration::from_secs(30),
        |t| t.contains(r#"probe="kprobe:arm_smmu_cmdq_issue_cmdlist"}"#),
    );
    // Bad and silent clients while scraping.
    let silent = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let bad = get(port, "NONSENSE\r\n\r\n").unwrap();
    assert!(bad.starts_with("HTTP/1.1 400"), "{bad}");
    let post = get(port, "POST /metrics HTTP/1.1\r\n\r\n").unwrap();
    assert!(post.starts_with("HTTP/1.1 405"), "{post}");
    let huge = format!("GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(20_000));
    let too_big = get(port, &huge).unwrap_or_default();
    assert!(
        too_big.is_empty() || too_big.starts_with("HTTP/1.1 431"),
        "{too_big}"
    );
    // Kill the VMM outright: serve notices, keeps its final figures up, says it is down.
    first.0.kill().unwrap();
    first.0.wait().unwrap();
    let up = r#"cmdqv_vm_up{host="#;
    scrape_until(
        port,
        "vm_up 0 for the killed VMM",
        Duration::from_secs(10),
        |t| {
            t.lines().any(|l| {
                l.starts_with(up) && l.contains(&format!("vm=\"{vm_a}\"")) && l.ends_with(" 0.0")
            })
        },
    );
    // A VMM that starts later is followed.
    let (_second, _second_in) = sim_vmm("hw-errors", &vm_b);
    let text = scrape_until(port, "the second VMM", Duration::from_secs(20), |t| {
        t.lines().any(|l| {
            l.starts_with(vm1)
                && l.contains(&format!("vm=\"{vm_b}\""))
                && l.rsplit(' ')
                    .next()
                    .and_then(|v| v.parse::<f64>().ok())
                    .is_some_and(|v| v > 0.0)
        })
    });
    assert!(value(&text, "cmdqv_vm_up{").is_some(), "{text}");
    drop(silent);
    assert!(serve.0.try_wait().unwrap().is_none(), "serve exited");
    stop_scraping.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, failed) = scraper.join().unwrap();
    assert!(
        failed.is_empty(),
        "{} of {} scrapes failed: {failed:?}",
        failed.len(),
        ok as usize + failed.len()
    );
    assert!(ok >= 3, "the 100 ms scraper got {ok} answers");
    // SIGTERM: a clean stop.
    unsafe { libc::kill(serve.0.id() as i32, libc::SIGTERM) };
    let end = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = serve.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < end, "serve did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
}
