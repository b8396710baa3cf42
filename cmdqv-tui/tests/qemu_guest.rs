//! Privileged end to end: a real arm64 Linux guest on stock Debian QEMU (7.2 and 10.0.2), booted
//! under cmdqv's QEMU uprobes. The commands cmdqv decodes must match QEMU's own trace log of the
//! same run exactly: per opcode, in total, and in CMDQ_PROD writes. Every command must decode to
//! a known opcode.
//!
//! The guest comes from `cargo xtask guest --prepare-only` (Debian packages, cached under
//! ~/.cache/cmdqv/guest). Needs root; CMDQV_SKIP_PRIVILEGED=1 skips it knowingly.
//! CMDQV_QEMU_FIXTURE_DIR=DIR also writes the captured command stream there (how
//! cmdqv-core/tests/data/qemu-guest-commands.bin was made).
//!
//! `bench_tracing_cost` (ignored; `cargo xtask guest --bench N` runs it) measures boot→poweroff
//! wall time untraced and traced.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use cmdqv_core::{
    command::{command_name, opcode_name},
    event::{Device, MAIN_CMDQ, Payload},
    qemu::{parse_trace_log, smmu_reg, write_command_stream},
};
use cmdqv_tui::qemu::{QemuOptions, QemuSession, qmp_cont, spawn_paused};

mod common;

fn privileged() -> bool {
    if std::env::var_os("CMDQV_SKIP_PRIVILEGED").is_some_and(|v| v == "1") {
        eprintln!("CMDQV_SKIP_PRIVILEGED=1: skipping a privileged eBPF test");
        return false;
    }
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test loads eBPF and needs root (set CMDQV_SKIP_PRIVILEGED=1 to skip it knowingly)"
    );
    true
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The prepared guest, as `cargo xtask guest --prepare-only` prints it.
struct Guest {
    qemu: PathBuf,
    ld_library_path: String,
    argv: Vec<String>,
    done_marker: String,
}

fn prepare(qemu: &str) -> Guest {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(root())
        .args(["xtask", "guest", "--prepare-only", "--qemu", qemu])
        .stderr(Stdio::inherit())
        .output()
        .expect("run cargo xtask guest --prepare-only");
    assert!(
        out.status.success(),
        "cargo xtask guest --prepare-only failed (Debian's package registry must be reachable)"
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(line).expect("prepare-only JSON");
    let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
    Guest {
        qemu: PathBuf::from(s("qemu")),
        ld_library_path: s("ld_library_path"),
        argv: v["argv"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect(),
        done_marker: s("done_marker"),
    }
}

fn out_dir(name: &str) -> PathBuf {
    let d = root().join("target/guest-test").join(name);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn qemu_command(g: &Guest, console: &Path, trace: Option<&Path>) -> Command {
    let mut c = Command::new(&g.qemu);
    c.env("LD_LIBRARY_PATH", &g.ld_library_path)
        .args(&g.argv)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(console).unwrap())
        .stderr(Stdio::inherit());
    if let Some(t) = trace {
        let _ = std::fs::remove_file(t);
        c.args([
            "-trace",
            "smmuv3_cmdq_*",
            "-trace",
            "smmuv3_*_mmio",
            "-D",
            &t.display().to_string(),
        ]);
    }
    c
}

struct Captured {
    commands: Vec<[u64; 2]>,
    indices: Vec<u32>,
    prod_writes: u64,
    mmio_writes: u64,
    cons_reads: u64,
    wall: Duration,
    drops: u64,
    decode_errors: u64,
}

fn traced_boot(g: &Guest, dir: &Path, with_log: bool, opts: &QemuOptions) -> Captured {
    let console = dir.join("console.log");
    let trace = dir.join("qemu-trace.log");
    let cmd = qemu_command(g, &console, with_log.then_some(trace.as_path()));
    let t = Instant::now();
    let mut s = QemuSession::launch_command(cmd, opts).expect("launch QEMU");
    for p in s.probes() {
        eprintln!("  {} {} {}", p.name, p.status, p.reason);
        assert_eq!(p.status, "attached", "{p:?}");
    }
    let mut c = Captured {
        commands: Vec::new(),
        indices: Vec::new(),
        prod_writes: 0,
        mmio_writes: 0,
        cons_reads: 0,
        wall: Duration::ZERO,
        drops: 0,
        decode_errors: 0,
    };
    let status = s
        .run_to_exit(Duration::from_secs(120), |e| match e.payload {
            Payload::Command {
                queue,
                index,
                w0,
                w1,
            } if queue == MAIN_CMDQ => {
                c.commands.push([w0, w1]);
                c.indices.push(index);
            }
            Payload::Mmio {
                device: Device::Smmu,
                offset,
                write: true,
                ..
            } => {
                c.mmio_writes += 1;
                if offset & !smmu_reg::PAGE1_BIT == smmu_reg::CMDQ_PROD {
                    c.prod_writes += 1;
                }
            }
            Payload::Mmio {
                device: Device::Smmu,
                offset,
                write: false,
                ..
            } if offset & !smmu_reg::PAGE1_BIT == smmu_reg::CMDQ_CONS => c.cons_reads += 1,
            _ => {}
        })
        .expect("poll");
    c.wall = t.elapsed();
    c.drops = s.drops();
    c.decode_errors = s.counts().decode_errors;
    assert!(status.is_some(), "QEMU did not power off within 120 s");
    let text = std::fs::read_to_string(&console).unwrap_or_default();
    assert!(
        text.contains(&g.done_marker),
        "the guest did not complete; console: {}",
        console.display()
    );
    c
}

/// One guest at a time: the tests share the cached guest and two boots would share 2 cores.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn check_against_qemu_log(qemu: &str, opts: &QemuOptions) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let t = Instant::now();
    let g = prepare(qemu);
    let dir = out_dir(&format!(
        "qemu{qemu}{}",
        if opts.mmio_reads { "-reads" } else { "" }
    ));
    let c = traced_boot(&g, &dir, true, opts);
    let log = std::fs::read_to_string(dir.join("qemu-trace.log")).expect("QEMU trace log");
    let q = parse_trace_log(&log);

    let mut ours: BTreeMap<String, u64> = BTreeMap::new();
    for [w0, _] in &c.commands {
        *ours.entry(command_name(*w0).into_owned()).or_default() += 1;
    }
    eprintln!(
        "QEMU {qemu}: {} commands captured, QEMU logged {}; PROD writes {} vs {}; boot {:.2}s; \
         total {:.1}s",
        c.commands.len(),
        q.commands,
        c.prod_writes,
        q.prod_writes,
        c.wall.as_secs_f64(),
        t.elapsed().as_secs_f64()
    );
    assert_eq!(c.drops, 0, "ring buffer drops");
    assert_eq!(c.decode_errors, 0);
    assert!(q.commands > 100, "suspiciously few commands: {q:?}");
    assert_eq!(ours, q.opcodes, "per-opcode counts (cmdqv vs QEMU's log)");
    assert_eq!(c.commands.len() as u64, q.commands);
    for [w0, w1] in &c.commands {
        assert!(
            opcode_name(*w0 as u8).is_some(),
            "unknown opcode in {w0:#018x} {w1:#018x}"
        );
    }
    assert_eq!(c.prod_writes, q.prod_writes, "CMDQ_PROD writes");
    if opts.mmio_reads {
        eprintln!("CMDQ_CONS reads {} vs {}", c.cons_reads, q.cons_reads);
        assert_eq!(c.cons_reads, q.cons_reads, "CMDQ_CONS reads");
    }
    assert_eq!(q.consume_errors, 0);
    // The window was learnt in the kernel before the first fetch: every index is known.
    assert!(c.indices.iter().all(|&i| i != u32::MAX));

    if let Some(d) = std::env::var_os("CMDQV_QEMU_FIXTURE_DIR") {
        let d = PathBuf::from(d);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join("qemu-guest-commands.bin"),
            write_command_stream(&c.commands),
        )
        .unwrap();
        let counts = serde_json::json!({
            "qemu": qemu,
            "commands": c.commands.len(),
            "prod_writes": c.prod_writes,
            "opcodes": ours,
        });
        std::fs::write(
            d.join("qemu-guest-commands.json"),
            serde_json::to_string_pretty(&counts).unwrap() + "\n",
        )
        .unwrap();
    }
}

/// Not privileged: the stripped Debian binaries lack the SMMU's static handlers, so the
/// dispatch probe set is chosen, with every symbol it needs found in the dynamic symbols.
#[test]
fn stock_debian_qemu_binaries_choose_the_dispatch_probe_set() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    for v in ["7.2", "10.0"] {
        let g = prepare(v);
        let syms = cmdqv_core::qemu::discover_symbols(&g.qemu).expect("read QEMU's symbols");
        assert!(syms.stripped, "Debian ships QEMU stripped");
        for s in [
            "memory_region_dispatch_write",
            "memory_region_dispatch_read",
            "address_space_rw",
            "qemu_log",
        ] {
            assert_eq!(
                syms.found.get(s).map(|i| i.table.as_str()),
                Some("dynsym"),
                "{s}"
            );
        }
        assert!(!syms.has("smmu_write_mmio"));
        let c = cmdqv_core::qemu::choose_probe_set(&syms, true);
        assert_eq!(c.set, cmdqv_core::qemu::ProbeSet::Dispatch, "{c:?}");
        assert_eq!(c.probes.len(), 5);
    }
}

#[test]
fn real_guest_on_qemu_7_2_commands_match_qemu_trace_log() {
    if !privileged() {
        return;
    }
    check_against_qemu_log("7.2", &QemuOptions::default());
}

#[test]
fn real_guest_on_qemu_7_2_register_reads_match_qemu_trace_log() {
    if !privileged() {
        return;
    }
    check_against_qemu_log("7.2", &QemuOptions { mmio_reads: true });
}

/// `cmdqv qemu --pid`: attach to a QEMU whose guest programmed CMDQ_BASE before the probes
/// existed. Commands are still captured (16-byte fetches, index unknown), all of them known
/// opcodes, none of them invented: at most what QEMU logged for the whole run; the SMMU's
/// region is learnt from the first fetch, so CMDQ_PROD writes follow.
#[test]
fn attach_to_a_running_qemu_captures_commands_without_the_queue_base() {
    if !privileged() {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let g = prepare("7.2");
    let dir = out_dir("attach");
    let trace = dir.join("qemu-trace.log");
    let mut child = qemu_command(&g, &dir.join("console.log"), Some(&trace))
        .spawn()
        .expect("start QEMU");
    // Wait until the guest has programmed CMDQ_BASE (QEMU's log shows the write).
    let t = Instant::now();
    while !std::fs::read_to_string(&trace)
        .unwrap_or_default()
        .contains("addr: 0x90 ")
    {
        assert!(t.elapsed() < Duration::from_secs(60), "no CMDQ_BASE write");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut s = QemuSession::attach(child.id(), &QemuOptions::default()).expect("attach");
    let mut cmds = Vec::new();
    let mut prods = 0u64;
    let mut on_event = |e: cmdqv_core::event::Event| match e.payload {
        Payload::Command { index, w0, .. } => cmds.push((index, w0)),
        Payload::Mmio {
            offset,
            write: true,
            ..
        } if offset == smmu_reg::CMDQ_PROD => prods += 1,
        _ => {}
    };
    let t = Instant::now();
    loop {
        s.poll(Duration::from_millis(50), &mut on_event).unwrap();
        if child.try_wait().unwrap().is_some() {
            while s.poll(Duration::ZERO, &mut on_event).unwrap() > 0 {}
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(120), "QEMU did not exit");
    }
    let q = parse_trace_log(&std::fs::read_to_string(&trace).unwrap());
    eprintln!(
        "attached late: {} commands captured of {} in the whole run, {prods} of {} PROD writes",
        cmds.len(),
        q.commands,
        q.prod_writes
    );
    // The region was learnt from the first fetch: PROD writes are seen from then on.
    assert!(prods > 0 && prods < q.prod_writes);
    assert!(!cmds.is_empty());
    assert!(cmds.len() as u64 <= q.commands);
    assert!(cmds.iter().all(|&(i, _)| i == u32::MAX));
    assert!(cmds.iter().all(|&(_, w0)| opcode_name(w0 as u8).is_some()));
}

#[test]
fn real_guest_on_qemu_10_0_commands_match_qemu_trace_log() {
    if !privileged() {
        return;
    }
    check_against_qemu_log("10.0", &QemuOptions::default());
}

/// Started the way a traced boot is (paused, then `cont` over QMP), without probes.
fn untraced_boot(g: &Guest, dir: &Path) -> Duration {
    let console = dir.join("console.log");
    let t = Instant::now();
    let mut cmd = qemu_command(g, &console, None);
    let (mut child, qmp) = spawn_paused(&mut cmd).expect("start QEMU");
    qmp_cont(&qmp, &mut child).expect("resume QEMU");
    let _ = std::fs::remove_file(&qmp);
    let st = child.wait().expect("wait for QEMU");
    let wall = t.elapsed();
    assert!(st.success());
    assert!(
        std::fs::read_to_string(&console)
            .unwrap_or_default()
            .contains(&g.done_marker)
    );
    wall
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

/// CPU seconds (user + system) of this process's reaped children so far: QEMU's own cost,
/// including the uprobe handling the kernel charges to its threads, and far less sensitive than
/// wall time to other work on a shared machine.
fn children_cpu() -> f64 {
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid out pointer.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut u) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// Boot→poweroff wall time, untraced against traced (probes attached, events drained), without
/// QEMU's own trace log in either. Runs interleaved so drift hits both alike.
#[test]
#[ignore]
fn bench_tracing_cost() {
    if !privileged() {
        return;
    }
    let runs: usize = std::env::var("CMDQV_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let qemu = std::env::var("CMDQV_BENCH_QEMU").unwrap_or_else(|_| "7.2".into());
    let opts = QemuOptions {
        mmio_reads: std::env::var_os("CMDQV_BENCH_READS").is_some_and(|v| v == "1"),
    };
    let g = prepare(&qemu);
    let dir = out_dir("bench");
    let (mut plain, mut traced, mut plain_cpu, mut traced_cpu) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut cmds = 0;
    for i in 0..runs {
        let c0 = children_cpu();
        let u = untraced_boot(&g, &dir).as_secs_f64();
        let c1 = children_cpu();
        let c = traced_boot(&g, &dir, false, &opts);
        let c2 = children_cpu();
        cmds = c.commands.len();
        eprintln!(
            "bench run {}: untraced {u:.2}s wall {:.2}s cpu, traced {:.2}s wall {:.2}s cpu \
             ({} commands, {} SMMU writes)",
            i + 1,
            c1 - c0,
            c.wall.as_secs_f64(),
            c2 - c1,
            cmds,
            c.mmio_writes
        );
        plain.push(u);
        traced.push(c.wall.as_secs_f64());
        plain_cpu.push(c1 - c0);
        traced_cpu.push(c2 - c1);
    }
    println!(
        "BENCH qemu {qemu}{}, {runs} runs each: wall untraced median {:.2}s min {:.2}s, traced median \
         {:.2}s min {:.2}s, ratio of medians {:.3}, of minima {:.3}; QEMU cpu untraced median \
         {:.2}s, traced median {:.2}s, ratio {:.3} (last run {cmds} commands)",
        if opts.mmio_reads {
            " (with register reads)"
        } else {
            ""
        },
        median(&plain),
        min(&plain),
        median(&traced),
        min(&traced),
        median(&traced) / median(&plain),
        min(&traced) / min(&plain),
        median(&plain_cpu),
        median(&traced_cpu),
        median(&traced_cpu) / median(&plain_cpu),
    );
}

/// The product as a user runs it: `cmdqv record -o F qemu --json -- <qemu …>` reports the same
/// per-opcode counts as QEMU's own trace log of that boot, with batch latency on the SMMU
/// queue row; replaying the recording gives the same counts.
#[test]
fn cmdqv_qemu_cli_reports_qemus_own_opcode_counts_and_replays_them() {
    if !privileged() {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let g = prepare("7.2");
    let dir = out_dir("cli-7.2");
    let trace = dir.join("qemu-trace.log");
    let rec = dir.join("boot.cmdqv");
    let _ = std::fs::remove_file(&trace);
    let out = Command::new(env!("CARGO_BIN_EXE_cmdqv"))
        .env("LD_LIBRARY_PATH", &g.ld_library_path)
        .arg("record")
        .arg("-o")
        .arg(&rec)
        .args(["qemu", "--json", "--duration", "120s", "--console"])
        .arg(dir.join("console.log"))
        .arg("--")
        .arg(&g.qemu)
        .args(&g.argv)
        .args(["-trace", "smmuv3_cmdq_*", "-trace", "smmuv3_*_mmio", "-D"])
        .arg(&trace)
        .output()
        .expect("run cmdqv qemu");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let s: serde_json::Value = serde_json::from_str(
        text.lines()
            .rev()
            .find(|l| l.starts_with('{'))
            .expect("JSON"),
    )
    .unwrap();
    common::assert_summary(&s);
    assert_eq!(s["source"], "ebpf");
    assert_eq!(s["drops"], 0);
    let q = s["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == "smmu-cmdq")
        .expect("smmu-cmdq row");
    let log = parse_trace_log(&std::fs::read_to_string(&trace).expect("QEMU trace log"));
    let ours: BTreeMap<String, u64> = serde_json::from_value(q["opcodes"].clone()).unwrap();
    assert!(
        log.commands > 100,
        "the guest issued too few commands: {}",
        log.commands
    );
    assert_eq!(
        ours, log.opcodes,
        "cmdqv qemu --json opcodes vs QEMU's trace log"
    );
    assert_eq!(q["commands"].as_u64().unwrap(), log.commands);
    assert_eq!(q["log2size"], 16, "learnt from the guest's CMDQ_BASE write");
    let lat = &q["batch_latency_ns"];
    assert!(
        lat["count"].as_u64().unwrap() > 0 && lat["p50"].as_u64().unwrap() > 0,
        "{lat}"
    );

    let out = Command::new(env!("CARGO_BIN_EXE_cmdqv"))
        .arg("replay")
        .arg(&rec)
        .arg("--json")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let r: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    common::assert_summary(&r);
    let rq = r["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == "smmu-cmdq")
        .unwrap();
    for k in ["commands", "syncs", "opcodes", "batch_latency_ns"] {
        assert_eq!(rq[k], q[k], "replay {k}");
    }
}

/// `cmdqv qemu` in a real terminal: the SMMU queue row shows up live with its commands while
/// the guest boots, and `q` restores the terminal.
#[test]
fn cmdqv_qemu_shows_the_smmu_queue_row_live_in_the_tui() {
    if !privileged() {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let g = prepare("7.2");
    let dir = out_dir("tui-7.2");
    let session = format!("cmdqv-qemu-{}", std::process::id());
    let marker = dir.join("exit");
    let _ = std::fs::remove_file(&marker);
    let tmux = |args: &[&str]| {
        let o = Command::new("tmux").args(args).output().expect("tmux");
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    tmux(&[
        "new-session",
        "-d",
        "-s",
        &session,
        "-x",
        "160",
        "-y",
        "45",
        "sh",
    ]);
    let quoted: Vec<String> = g
        .argv
        .iter()
        .map(|a| format!("'{}'", a.replace('\'', "'\\''")))
        .collect();
    let cmd = format!(
        "LD_LIBRARY_PATH='{}' {} qemu --console {} -- {} {}; echo $? > {}",
        g.ld_library_path,
        env!("CARGO_BIN_EXE_cmdqv"),
        dir.join("console.log").display(),
        g.qemu.display(),
        quoted.join(" "),
        marker.display()
    );
    tmux(&["send-keys", "-t", &session, &cmd, "Enter"]);
    // The row appears with a growing command count; the count column is the 14th field.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    let screen = loop {
        let s = tmux(&["capture-pane", "-p", "-t", &session]);
        if let Some(line) = s.lines().find(|l| l.contains("smmu-cmdq")) {
            seen.push(line.to_string());
        }
        if seen.iter().collect::<std::collections::HashSet<_>>().len() >= 3
            && s.contains("source: eBPF")
        {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "no live smmu-cmdq row; screen:\n{s}"
        );
        std::thread::sleep(Duration::from_millis(150));
    };
    assert!(screen.contains("VCMDQs"), "{screen}");
    tmux(&["send-keys", "-t", &session, "q"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !marker.exists() {
        assert!(Instant::now() < deadline, "cmdqv qemu did not exit after q");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(std::fs::read_to_string(&marker).unwrap().trim(), "0");
    assert_eq!(
        tmux(&["display", "-p", "-t", &session, "#{alternate_on}"]).trim(),
        "0"
    );
    tmux(&["kill-session", "-t", &session]);
}
