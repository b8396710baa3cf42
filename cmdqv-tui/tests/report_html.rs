//! `cmdqv report FILE -o report.html`: one self-contained page (nothing fetched when opened)
//! whose plots are there by title, rendered in headless Chromium (`cargo xtask test` installs
//! Debian's package) to a screenshot that is not blank.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cmdqv_core::report::PLOT_TITLES;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_cmdqv")
}

fn tmp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("cmdqv-report-{}-{name}", std::process::id()))
}

fn cmdqv(args: &[&str]) -> String {
    let out = Command::new(bin()).args(args).output().expect("run cmdqv");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "cmdqv {args:?} failed: {stderr}");
    stderr
}

/// `chromium --headless --screenshot` of `page`, killed if it takes longer than two minutes.
fn screenshot(page: &Path, png: &Path) {
    let profile = tmp("chromium-profile");
    let mut child = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", png.display()))
        .arg("--window-size=1280,2000")
        .arg(format!("file://{}", page.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromium is installed (cargo xtask bootstrap installs Debian's chromium)");
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!("chromium did not finish the screenshot in 120 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = std::fs::remove_dir_all(&profile);
    assert!(status.success(), "chromium failed: {status}");
}

/// The contents of every SVG `<text>` element.
fn svg_texts(page: &str) -> impl Iterator<Item = String> + '_ {
    page.split("<text").skip(1).filter_map(|t| {
        let inner = &t[t.find('>')? + 1..t.find("</text>")?];
        Some(inner.trim().to_owned())
    })
}

/// (pixels, not white, strongly coloured, distinct colours) of an RGB(A) PNG.
fn pixels(png: &Path) -> (usize, usize, usize, usize) {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(png).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let frame = reader.next_frame(&mut buf).unwrap();
    let channels = frame.color_type.samples();
    assert!(channels >= 3, "{:?}", frame.color_type);
    let px = &buf[..frame.buffer_size()];
    let mut colours = std::collections::HashSet::new();
    let (mut total, mut inked, mut coloured) = (0, 0, 0);
    for p in px.chunks(channels) {
        let (r, g, b) = (p[0], p[1], p[2]);
        total += 1;
        inked += usize::from(r < 240 || g < 240 || b < 240);
        coloured += usize::from(r.max(g).max(b) - r.min(g).min(b) > 80);
        colours.insert((r >> 4, g >> 4, b >> 4));
    }
    (total, inked, coloured, colours.len())
}

#[test]
fn the_report_is_self_contained_renders_in_chromium_and_shows_its_plots() {
    let file = tmp("storm.cmdqv");
    let f = file.to_str().unwrap();
    cmdqv(&[
        "record",
        "-o",
        f,
        "sim",
        "--scenario",
        "error-storm",
        "--no-ebpf",
        "--headless",
        "--duration",
        "1s",
    ]);
    let html = tmp("report.html");
    let stderr = cmdqv(&["report", f, "-o", html.to_str().unwrap()]);
    assert!(stderr.contains("wrote"), "{stderr}");

    let page = std::fs::read_to_string(&html).unwrap();
    for bad in [
        "src=\"http",
        "href=\"http",
        "src='http",
        "href='http",
        "url(http",
        "@import",
        "<script",
        "<link",
    ] {
        assert!(!page.contains(bad), "the report fetches something: {bad}");
    }
    assert_eq!(
        page.matches("<svg").count(),
        PLOT_TITLES.len(),
        "one inline SVG per plot"
    );
    for t in PLOT_TITLES {
        assert!(
            page.contains(&format!("<h2>{t}</h2>")),
            "section {t} missing"
        );
        assert!(
            svg_texts(&page).any(|x| x == t),
            "plot caption {t} missing from its SVG"
        );
    }
    for q in ["vcmdq0", "vcmdq1", "smmu-cmdq", "CERROR_ILL"] {
        assert!(page.contains(q), "{q} missing");
    }

    let png = tmp("report.png");
    screenshot(&html, &png);
    let (total, inked, coloured, colours) = pixels(&png);
    assert_eq!(total, 1280 * 2000, "the screenshot has the window's size");
    assert!(
        inked > total / 50,
        "mostly blank: {inked} of {total} pixels drawn"
    );
    assert!(
        coloured > 2000,
        "no coloured plot lines: {coloured} coloured pixels"
    );
    assert!(colours >= 16, "only {colours} colours");
    for p in [&file, &html, &png] {
        let _ = std::fs::remove_file(p);
    }
}

#[test]
fn a_report_of_garbage_fails_clearly_and_writes_nothing() {
    let junk = tmp("junk.cmdqv");
    std::fs::write(&junk, b"not a trace file\n").unwrap();
    let html = tmp("junk.html");
    let out = Command::new(bin())
        .args([
            "report",
            junk.to_str().unwrap(),
            "-o",
            html.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("junk.cmdqv") && !stderr.contains("panicked"),
        "{stderr}"
    );
    assert!(!html.exists(), "no report is left behind");
    let _ = std::fs::remove_file(&junk);
}
