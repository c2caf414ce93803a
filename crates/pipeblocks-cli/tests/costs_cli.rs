//! `--stage-costs FILE` and `--model` on every command that takes costs: the stage that bounds
//! the step, cost-aware generators, and one clear line for every bad cost file.

use std::path::PathBuf;
use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pipeblocks"))
        .args(args)
        .output()
        .expect("run pipeblocks")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Writes `text` to a file of its own and returns its path.
fn file(name: &str, text: &str) -> String {
    let dir = std::env::temp_dir().join(format!("pipeblocks-costs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path: PathBuf = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// A file of `n` stages at f=1, b=1.1, w=0.9, the last one `k` times heavier.
fn costs(n: usize, k: f64) -> String {
    let stages: Vec<String> = (0..n)
        .map(|i| {
            let x = if i + 1 == n { k } else { 1.0 };
            format!(
                r#"{{"f": {}, "b": {}, "w": {}, "activation": {x}}}"#,
                x,
                1.1 * x,
                0.9 * x
            )
        })
        .collect();
    format!(
        r#"{{"format": "pipeblocks-stage-costs", "version": 1, "comm": 0.05, "stages": [{}]}}"#,
        stages.join(", ")
    )
}

fn assert_one_error_line(args: &[&str], needle: &str) {
    let o = run(args);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
    assert!(
        err.contains(needle),
        "{args:?}: expected `{needle}` in: {err}"
    );
    assert!(err.starts_with("error: "), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
    assert!(stdout(&o).is_empty(), "{args:?}");
}

#[test]
fn a_heavier_last_stage_is_reported_as_the_bound() {
    let path = file("heavy.json", &costs(4, 1.5));
    let o = run(&[
        "simulate",
        "-s",
        "1f1b",
        "-p",
        "4",
        "-m",
        "16",
        "--stage-costs",
        &path,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("bound by      stage 3 on device 3"), "{out}");
    let o = run(&[
        "simulate",
        "-s",
        "zb-h1",
        "-p",
        "4",
        "-m",
        "16",
        "--stage-costs",
        &path,
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["bottleneck"]["stage"], 3);
    assert_eq!(v["bottleneck"]["device"], 3);
    // The device of the heavier stage is the busiest.
    let busy: Vec<f64> = v["busy"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    assert!(busy[3] > 1.4 * busy[0], "{busy:?}");
    // Uniform stages: no stage stands out as much.
    let even = file("even.json", &costs(4, 1.0));
    let o = run(&[
        "simulate",
        "-s",
        "1f1b",
        "-p",
        "4",
        "-m",
        "16",
        "--stage-costs",
        &even,
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert!(
        v["bottleneck"]["critical_share"].as_f64().unwrap() < 0.6,
        "{v}"
    );
}

#[test]
fn cost_aware_commands_take_the_table() {
    let path = file("heavy8.json", &costs(8, 2.0));
    for args in [
        vec![
            "generate", "-s", "auto", "-p", "4", "-m", "8", "--format", "json",
        ],
        vec![
            "generate", "-s", "v-half", "-p", "4", "-m", "8", "--format", "json",
        ],
        vec!["compare", "-p", "4", "-m", "8"],
        vec!["frontier", "-p", "4", "-m", "8"],
        vec!["plot", "-s", "zb-v", "-p", "4", "-m", "8"],
    ] {
        let mut a = args.clone();
        a.extend(["--stage-costs", &path]);
        let o = run(&a);
        assert!(o.status.success(), "{a:?}: {}", stderr(&o));
        assert!(!stdout(&o).is_empty());
    }
    let o = run(&["compare", "-p", "4", "-m", "8", "--stage-costs", &path]);
    assert!(stdout(&o).contains("stage costs"), "{}", stdout(&o));
}

#[test]
fn a_model_gives_every_command_its_stage_costs() {
    let model = "layers=8,hidden=256,heads=4,seq=128,vocab=1000";
    for args in [
        vec![
            "generate", "-s", "auto", "-p", "2", "-m", "4", "--format", "json",
        ],
        vec!["frontier", "-p", "2", "-m", "4"],
    ] {
        let mut a = args.clone();
        a.extend(["--model", model]);
        let o = run(&a);
        assert!(o.status.success(), "{a:?}: {}", stderr(&o));
    }
}

#[test]
fn bad_cost_files_get_one_line() {
    let three = file("three.json", &costs(3, 1.0));
    let negative = file(
        "neg.json",
        r#"{"format": "pipeblocks-stage-costs", "version": 1, "stages": [{"f": -1, "b": 1, "w": 1}]}"#,
    );
    let infinite = file(
        "inf.json",
        r#"{"format": "pipeblocks-stage-costs", "version": 1, "stages": [{"f": 1e400, "b": 1, "w": 1}]}"#,
    );
    let v9 = file(
        "v9.json",
        r#"{"format": "pipeblocks-stage-costs", "version": 9, "stages": [{"f": 1, "b": 1, "w": 1}]}"#,
    );
    let release = file("release.json", &costs(2, 1.0));
    let cases: [(&str, &[&str], &str); 6] = [
        ("simulate -s 1f1b -p 4 -m 4", &[&three], "describe 3 stages"),
        ("simulate -s 1f1b -p 1 -m 4", &[&negative], "not negative"),
        (
            "simulate -s 1f1b -p 1 -m 4",
            &[&infinite],
            "malformed stage costs",
        ),
        ("compare -p 1 -m 4", &[&v9], "version 9 is not supported"),
        (
            "generate -s auto -p 2 -m 4",
            &["/nonexistent/c.json"],
            "cannot read",
        ),
        (
            "simulate -s 1f1b -p 2 -m 4",
            &[&release, "--b-release", "1.5"],
            "(--b-release 0)",
        ),
    ];
    for (command, rest, needle) in cases {
        let mut args: Vec<&str> = command.split(' ').collect();
        args.push("--stage-costs");
        args.extend_from_slice(rest);
        assert_one_error_line(&args, needle);
    }
    let o = run(&[
        "simulate",
        "-s",
        "1f1b",
        "-p",
        "2",
        "-m",
        "4",
        "--stage-costs",
        &release,
        "--cost",
        "f=1",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("cannot be used with"), "{}", stderr(&o));
}
