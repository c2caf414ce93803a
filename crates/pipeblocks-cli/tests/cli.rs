//! End-to-end tests of the `pipeblocks` binary: outputs, files and every bad-input path.

use std::path::PathBuf;
use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pipeblocks"))
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("run pipeblocks")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pipeblocks-cli-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// One error line on stderr, exit code 2, nothing on stdout, no panic.
fn assert_bad_input(args: &[&str], needle: &str) {
    let o = run(args);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
    assert!(
        err.contains(needle),
        "{args:?}: expected `{needle}` in: {err}"
    );
    assert!(!err.contains("panicked"), "{args:?}: {err}");
    assert!(stdout(&o).is_empty(), "{args:?}");
}

fn assert_one_error_line(args: &[&str], needle: &str) {
    assert_bad_input(args, needle);
    let err = stderr(&run(args));
    assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
    assert!(err.starts_with("error: "), "{err}");
}

#[test]
fn list_names_every_schedule() {
    let o = run(&["list"]);
    assert!(o.status.success());
    let out = stdout(&o);
    for name in ["gpipe", "1f1b", "interleaved-1f1b", "bfs", "zb-h1", "zb-h2"] {
        assert!(
            out.lines()
                .any(|l| l.split_whitespace().next() == Some(name)),
            "{name} missing from list"
        );
    }
}

#[test]
fn generate_text_json_and_csv() {
    let o = run(&["generate", "-s", "1f1b", "-p", "4", "-m", "8"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert_eq!(text.lines().filter(|l| l.starts_with("dev")).count(), 4);

    let dir = tmpdir("gen");
    let json = dir.join("s.json");
    let csv = dir.join("s.csv");
    let o = run(&[
        "generate", "-s", "zb-h1", "-p", "4", "-m", "8", "--format", "json", "-o",
    ])
    .status;
    assert!(!o.success(), "-o needs a value");
    for (fmt, path) in [("json", &json), ("torch-csv", &csv)] {
        let o = run(&[
            "generate",
            "-s",
            "zb-h1",
            "-p",
            "4",
            "-m",
            "8",
            "--format",
            fmt,
            "-o",
            path.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let v = run(&["validate", path.to_str().unwrap()]);
        assert!(stdout(&v).contains("valid"), "{}", stderr(&v));
    }
    // Both files simulate to the same figures.
    let a = stdout(&run(&[
        "simulate",
        "--from",
        json.to_str().unwrap(),
        "--json",
    ]));
    let b = stdout(&run(&[
        "simulate",
        "--from",
        csv.to_str().unwrap(),
        "--json",
    ]));
    let ja: serde_json::Value = serde_json::from_str(&a).unwrap();
    let jb: serde_json::Value = serde_json::from_str(&b).unwrap();
    for key in [
        "makespan",
        "bubble_rate",
        "peak_activation",
        "max_peak_activation",
    ] {
        assert_eq!(ja[key], jb[key], "{key}");
    }
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn simulate_json_has_the_public_fields() {
    let o = run(&[
        "simulate",
        "-s",
        "1f1b",
        "-p",
        "4",
        "-m",
        "8",
        "--cost",
        "f=1,b=2,w=0,c=0",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    for key in [
        "schedule",
        "devices",
        "stages",
        "microbatches",
        "makespan",
        "bubble_rate",
        "peak_activation",
        "max_peak_activation",
        "peak_vs_1f1b",
    ] {
        assert!(v.get(key).is_some(), "missing {key}");
    }
    assert_eq!(v["schedule"], "1f1b");
    assert_eq!(v["peak_activation"].as_array().unwrap().len(), 4);
    let rate = v["bubble_rate"].as_f64().unwrap();
    assert!((rate - 3.0 / 11.0).abs() < 1e-9, "{rate}");
    assert_eq!(v["peak_vs_1f1b"].as_f64(), Some(1.0));
}

#[test]
fn compare_lists_every_applicable_schedule() {
    let o = run(&["compare", "-p", "4", "-m", "8", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let rows = v.as_array().unwrap();
    let names: Vec<&str> = rows
        .iter()
        .map(|r| r["schedule"].as_str().unwrap())
        .collect();
    for name in ["gpipe", "1f1b", "interleaved-1f1b", "bfs", "zb-h1", "zb-h2"] {
        assert!(names.contains(&name), "{name}");
    }
    let one = rows.iter().find(|r| r["schedule"] == "1f1b").unwrap();
    assert_eq!(one["peak_vs_1f1b"].as_f64(), Some(1.0));
    assert_eq!(one["p2p_vs_1f1b"].as_f64(), Some(1.0));
    let text = stdout(&run(&["compare", "-p", "4", "-m", "6"]));
    assert!(text.contains("interleaved-1f1b") && text.contains("not applicable"));
}

#[test]
fn bad_sizes_and_names() {
    assert_one_error_line(
        &["generate", "-s", "1f1b", "-p", "0", "-m", "4"],
        "devices is 0",
    );
    assert_one_error_line(
        &["generate", "-s", "1f1b", "-p", "4", "-m", "0"],
        "microbatches is 0",
    );
    assert_one_error_line(&["simulate", "-s", "1f1b", "-p", "0", "-m", "4"], "-p 1");
    assert_one_error_line(&["compare", "-p", "4", "-m", "0"], "-m 1");
    assert_one_error_line(
        &["generate", "-s", "1fb1", "-p", "4", "-m", "4"],
        "did you mean `1f1b`",
    );
    assert_one_error_line(
        &["generate", "-s", "interleaved-1f1b", "-p", "4", "-m", "6"],
        "multiple of the devices",
    );
    assert_one_error_line(
        &[
            "generate", "-s", "bfs", "-p", "2", "-m", "2", "--chunks", "0",
        ],
        "chunk",
    );
    assert_one_error_line(
        &[
            "simulate", "-s", "1f1b", "-p", "2", "-m", "2", "--cost", "f=x",
        ],
        "not a number",
    );
    assert_one_error_line(&["generate", "-s", "1f1b", "-m", "2"], "missing -p");
    assert_one_error_line(&["simulate"], "--from FILE");
    // Usage errors also exit 2, on one line: a value that is not a count names the flag and
    // what it expects, and clap's own errors keep their text.
    assert_one_error_line(
        &["generate", "-s", "1f1b", "-p", "x", "-m", "2"],
        "-p x: the number of devices must be a whole number",
    );
    assert_one_error_line(&["frobnicate"], "unrecognized subcommand");
}

#[test]
fn bad_files() {
    let dir = tmpdir("bad");
    let write = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };
    let cases = [
        (
            "trunc.json",
            "{\"format\": \"pipeblocks-schedule\", \"version\": 1,",
            "malformed JSON schedule",
        ),
        ("bad.csv", "0F0,0Q0\n", "row 1 column 2"),
        (
            "two.csv",
            "0F0,0B0\n0F1,0B1\n",
            "stage 0 appears on device 0 and on device 1",
        ),
        (
            "missing.csv",
            "0F0,0B0\n1F0\n",
            "missing pass BW1.0 (on device 1)",
        ),
        (
            "deadlock.csv",
            "0F0,0B0,0F1,0B1\n1F0,1F1,1B0,1B1\n",
            "deadlock: device 0 at position 1 (BW0.0) waits for BW1.0 on device 1",
        ),
        ("empty.csv", "", "no rows"),
    ];
    for (name, text, needle) in cases {
        let path = write(name, text);
        assert_one_error_line(&["validate", &path], needle);
        assert_one_error_line(&["simulate", "--from", &path], needle);
    }
    assert_one_error_line(
        &["validate", dir.join("absent.json").to_str().unwrap()],
        "cannot read",
    );
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn failed_run_leaves_existing_output_untouched() {
    let dir = tmpdir("keep");
    let out = dir.join("keep.json");
    std::fs::write(&out, "precious").unwrap();
    let o = run(&[
        "generate",
        "-s",
        "nope",
        "-p",
        "2",
        "-m",
        "2",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "precious");
    let o = run(&[
        "generate",
        "-s",
        "1f1b",
        "-p",
        "2",
        "-m",
        "2",
        "--format",
        "json",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success());
    assert!(std::fs::read_to_string(&out)
        .unwrap()
        .contains("pipeblocks-schedule"));
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn generate_picks_the_format_from_the_output_extension() {
    let dir = tmpdir("ext");
    // `generate -s 1f1b -p 2 -m 4 [extra...] -o path`, which must succeed.
    let generate = |path: &std::path::Path, extra: &[&str]| {
        let mut args = vec!["generate", "-s", "1f1b", "-p", "2", "-m", "4"];
        args.extend_from_slice(extra);
        args.extend(["-o", path.to_str().unwrap()]);
        let o = run(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        std::fs::read_to_string(path).unwrap()
    };
    for (name, first) in [("s.json", "{"), ("s.csv", "0F0"), ("s.txt", "1f1b:")] {
        let path = dir.join(name);
        let text = generate(&path, &[]);
        assert!(text.starts_with(first), "{name}: {text}");
        if name != "s.txt" {
            // Written files read back.
            let v = run(&["simulate", "--from", path.to_str().unwrap(), "--json"]);
            assert!(v.status.success(), "{name}: {}", stderr(&v));
        }
    }
    // An explicit --format wins over the extension.
    let text = generate(&dir.join("t.json"), &["--format", "text"]);
    assert!(text.starts_with("1f1b:"), "{text}");
}
