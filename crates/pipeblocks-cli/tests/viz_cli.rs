//! End-to-end tests of `plot`, `report` and the Chrome-trace formats, through the binary.
//!
//! The report test opens the page in headless Chromium (`/usr/bin/chromium`). Without Chromium
//! it prints a notice and passes, unless `PIPEBLOCKS_REQUIRE_CHROMIUM=1`, where it fails: CI sets
//! that and installs the Debian packages `chromium` and `chromium-driver`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use pipeblocks_core::compare::{compare, Row};
use pipeblocks_core::{generate, Params};
use pipeblocks_core::{simulate, Costs, StageCosts};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pipeblocks"))
}

/// A fresh scratch directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pipeblocks-viz-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("the binary runs");
    assert!(
        out.status.success(),
        "{:?} failed: {}",
        cmd,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn plot_writes_an_svg_with_one_box_per_pass_at_the_simulated_times() {
    let dir = scratch("plot");
    let svg_path = dir.join("zb.svg");
    let cost = "f=1,b=1.2,w=0.6,c=0.05";
    run(bin()
        .args([
            "plot", "-s", "zb-h1", "-p", "4", "-m", "6", "--cost", cost, "-o",
        ])
        .arg(&svg_path));
    let text = std::fs::read_to_string(&svg_path).unwrap();
    let doc = roxmltree::Document::parse(&text).expect("the SVG parses as XML");
    let root = doc.root_element();
    let x0: f64 = root.attribute("data-x0").unwrap().parse().unwrap();
    let scale: f64 = root.attribute("data-scale").unwrap().parse().unwrap();

    let costs = Costs::parse(cost).unwrap();
    let s = generate(
        "zb-h1",
        &Params::new(4, 6)
            .unwrap()
            .with_costs(StageCosts::uniform(costs)),
    )
    .unwrap();
    let r = simulate(&s, &StageCosts::uniform(costs)).unwrap();
    let boxes: Vec<_> = doc
        .descendants()
        .filter(|n| {
            n.has_tag_name("rect") && n.attribute("class").is_some_and(|c| c.starts_with("pass "))
        })
        .collect();
    assert_eq!(boxes.len(), s.num_passes());
    for b in boxes {
        let d: usize = b.attribute("data-device").unwrap().parse().unwrap();
        let label = format!(
            "{}{}.{}",
            b.attribute("data-kind").unwrap(),
            b.attribute("data-stage").unwrap(),
            b.attribute("data-mb").unwrap()
        );
        let i = s.lists[d]
            .iter()
            .position(|p| p.to_string() == label)
            .unwrap();
        let x: f64 = b.attribute("x").unwrap().parse().unwrap();
        let w: f64 = b.attribute("width").unwrap().parse().unwrap();
        assert!((x - (x0 + r.start[d][i] * scale)).abs() < 0.01, "{label}");
        assert!((x + w - (x0 + r.end[d][i] * scale)).abs() < 0.02, "{label}");
    }
    assert!(text.contains("zb-h1 · p=4 m=6"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn chrome_trace_from_generate_and_simulate() {
    for sub in ["generate", "simulate"] {
        let out = run(bin().args([
            sub,
            "-s",
            "1f1b",
            "-p",
            "3",
            "-m",
            "4",
            "--cost",
            "c=0.1",
            "--format",
            "chrome-trace",
        ]));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let ev = v["traceEvents"].as_array().unwrap();
        let slices = ev.iter().filter(|e| e["ph"] == "X").count();
        // 3 devices × 4 microbatches × (F + BW) compute slices, and 2 boundaries × 4
        // microbatches × 2 directions transfers, each shown as send and receive.
        assert_eq!(slices, 24 + 2 * 16, "{sub}");
        let procs = ev
            .iter()
            .filter(|e| e["ph"] == "M" && e["name"] == "process_name")
            .count();
        assert_eq!(procs, 3);
    }
}

#[test]
fn bad_input_is_one_line_and_exit_code_2() {
    for args in [
        vec!["plot", "-p", "4", "-m", "4"],
        vec!["plot", "-s", "1f1c", "-p", "4", "-m", "4"],
        vec!["plot", "-s", "1f1b", "-p", "4", "-m", "4", "--width", "0"],
        vec!["report", "-p", "0", "-m", "4"],
        vec![
            "simulate", "-s", "1f1b", "-p", "2", "-m", "2", "--format", "svg",
        ],
    ] {
        let out = bin().args(&args).stdin(Stdio::null()).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

/// Chromium's path, or `None` (after a notice) when it is missing and not required.
fn chromium() -> Option<PathBuf> {
    let required = std::env::var("PIPEBLOCKS_REQUIRE_CHROMIUM").as_deref() == Ok("1");
    find_browser(Path::new("/usr/bin/chromium"), required)
}

/// `path` when it exists; otherwise a failure when `required`, else a notice and `None`.
fn find_browser(path: &Path, required: bool) -> Option<PathBuf> {
    if path.exists() {
        return Some(path.to_path_buf());
    }
    if required {
        panic!(
            "PIPEBLOCKS_REQUIRE_CHROMIUM=1 but {} is missing; install the Debian packages chromium and chromium-driver",
            path.display()
        );
    }
    eprintln!(
        "NOTICE: skipping the headless-browser test: {} is not installed (apt-get install chromium chromium-driver; set PIPEBLOCKS_REQUIRE_CHROMIUM=1 to make this a failure)",
        path.display()
    );
    None
}

#[test]
fn a_missing_browser_skips_unless_required() {
    let nowhere = Path::new("/nonexistent/pipeblocks/chromium");
    assert_eq!(find_browser(nowhere, false), None);
    let required = std::panic::catch_unwind(|| find_browser(nowhere, true));
    assert!(
        required.is_err(),
        "a required but missing browser must fail the test"
    );
}

/// Runs headless Chromium on `page` with `extra` flags, killing it after 120 s.
fn headless(chrome: &Path, profile: &Path, extra: &[String], page: &Path) -> Output {
    let mut child = Command::new(chrome)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chromium starts");
    // Drain the pipes on threads so a large DOM cannot block the browser.
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = std::io::Read::read_to_end(&mut so, &mut b);
        b
    });
    let t_err = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = std::io::Read::read_to_end(&mut se, &mut b);
        b
    });
    let began = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if began.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within 120 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: t_out.join().unwrap(),
        stderr: t_err.join().unwrap(),
    }
}

#[test]
fn report_renders_in_headless_chromium() {
    let Some(chrome) = chromium() else { return };
    let dir = scratch("report");
    let page = dir.join("report.html");
    let (p, m) = (4u32, 6u32);
    run(bin()
        .args([
            "report",
            "-p",
            &p.to_string(),
            "-m",
            &m.to_string(),
            "--width",
            "700",
            "-o",
        ])
        .arg(&page));

    // What the page must hold: every applicable schedule's passes.
    let prm = Params::new(p, m).unwrap();
    let expected: usize = compare(&prm)
        .unwrap()
        .iter()
        .filter_map(|r| match r {
            Row::Ok(s) => Some(generate(&s.schedule, &prm).unwrap().num_passes()),
            Row::NotApplicable { .. } => None,
        })
        .sum();
    assert!(expected > 0);

    // The DOM after the page's script ran.
    let out = headless(&chrome, &dir.join("profile"), &["--dump-dom".into()], &page);
    assert!(
        out.status.success(),
        "chromium --dump-dom failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dom = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        dom.matches("<rect class=\"pass ").count(),
        expected,
        "pass boxes in the DOM"
    );
    assert!(
        dom.contains(&format!("data-boxes=\"{expected}\"")),
        "the page's script did not run or counted otherwise"
    );
    assert_eq!(
        dom.matches("data-tip=").count(),
        expected,
        "hover details prepared for every box"
    );

    // A screenshot that is not blank.
    let png_path = dir.join("shot.png");
    let out = headless(
        &chrome,
        &dir.join("profile"),
        &[
            format!("--screenshot={}", png_path.display()),
            "--window-size=1100,900".into(),
        ],
        &page,
    );
    assert!(
        out.status.success(),
        "chromium --screenshot failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let decoder =
        png::Decoder::new(std::fs::File::open(&png_path).expect("a screenshot was written"));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!((info.width, info.height), (1100, 900));
    let channels = info.color_type.samples();
    let bytes = &buf[..info.buffer_size()];
    let lum: Vec<f64> = bytes
        .chunks(channels)
        .map(|px| {
            if channels >= 3 {
                0.299 * px[0] as f64 + 0.587 * px[1] as f64 + 0.114 * px[2] as f64
            } else {
                px[0] as f64
            }
        })
        .collect();
    let mean = lum.iter().sum::<f64>() / lum.len() as f64;
    let var = lum.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / lum.len() as f64;
    let inked = lum.iter().filter(|l| **l < 200.0).count() as f64 / lum.len() as f64;
    assert!(
        var > 200.0,
        "screenshot looks blank: luminance variance {var:.1}"
    );
    assert!(
        inked > 0.02,
        "screenshot looks blank: {:.3} of pixels dark",
        inked
    );
    // Pass colours are there: F's blue.
    let blue = bytes
        .chunks(channels)
        .filter(|px| channels >= 3 && px[2] > 150 && px[0] < 80)
        .count();
    assert!(
        blue > 100,
        "no forward-pass blue in the screenshot ({blue} pixels)"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
