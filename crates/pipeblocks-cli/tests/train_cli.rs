//! `pipeblocks train` end to end with a tiny model: JSON summary, checkpoints, exit codes.

use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pipeblocks"))
}

const TINY: &[&str] = &[
    "train", "--layers", "2", "--hidden", "16", "--heads", "2", "--seq", "8", "--batch", "4",
];

fn tmp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("pipeblocks-cli-train-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn json_summary_has_the_promised_fields() {
    let out = bin()
        .args(TINY)
        .args(["-s", "zb-h1", "--steps", "6", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["losses"].as_array().unwrap().len(), 6);
    assert_eq!(v["peak_activation_bytes"].as_array().unwrap().len(), 2);
    for k in [
        "step_time_s",
        "bubble_rate_measured",
        "bubble_rate_simulated",
        "tokens_per_s",
    ] {
        assert!(v[k].as_f64().unwrap() >= 0.0, "{k}");
    }
}

#[test]
fn save_and_resume_and_bad_checkpoints() {
    let ck = tmp("run.ckpt");
    let out = bin()
        .args(TINY)
        .args(["--steps", "2", "--json", "--save"])
        .arg(&ck)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = bin()
        .args(TINY)
        .args(["-s", "gpipe", "--steps", "1", "--json", "--resume"])
        .arg(&ck)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let bytes = std::fs::read(&ck).unwrap();
    let cut = tmp("cut.ckpt");
    std::fs::write(&cut, &bytes[..bytes.len() - 100]).unwrap();
    let out = bin()
        .args(TINY)
        .args(["--steps", "1", "--resume"])
        .arg(&cut)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("truncated") && err.lines().count() == 1,
        "{err}"
    );

    let out = bin()
        .args([
            "train", "--layers", "2", "--hidden", "32", "--heads", "2", "--seq", "8", "--batch",
            "4",
        ])
        .args(["--steps", "1", "--resume"])
        .arg(&ck)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("hidden=32"));
}

#[test]
fn bad_input_exits_2_with_one_line() {
    for args in [
        vec!["-m", "3"],
        vec!["-s", "nope"],
        vec!["-p", "0"],
        vec!["-s", "interleaved-1f1b"],
    ] {
        let mut full: Vec<&str> = TINY.to_vec();
        full.extend(args.iter());
        full.extend(["--steps", "1"]);
        let out = bin().args(&full).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.starts_with("error:") && err.trim().lines().count() == 1,
            "{args:?}: {err}"
        );
    }
    let out = bin()
        .args(TINY)
        .args(["--steps", "1", "--data", "/nonexistent/file.txt"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn profile_writes_the_measured_stage_costs_the_engine_reads() {
    let path = tmp("profile.json");
    let out = bin()
        .args(TINY)
        .args(["-s", "zb-h1", "-p", "2", "-m", "4", "--steps", "2"])
        .arg("--profile")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&path).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["format"], "pipeblocks-stage-costs");
    let stages = v["stages"].as_array().unwrap();
    assert_eq!(stages.len(), 2);
    for s in stages {
        // zb-h1 runs split backwards: F, B and W all measured, in seconds.
        for k in ["f", "b", "w"] {
            let t = s[k].as_f64().unwrap();
            assert!(t > 0.0 && t < 10.0, "{k} = {t}");
        }
    }
    assert!(v["activation_bytes"].as_f64().unwrap() > 0.0);
    // simulate reads it back, on 2 devices and merged onto 1.
    for p in ["2", "1"] {
        let sim = bin()
            .args([
                "simulate",
                "-s",
                "1f1b",
                "-p",
                p,
                "-m",
                "4",
                "--stage-costs",
            ])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            sim.status.success(),
            "{}",
            String::from_utf8_lossy(&sim.stderr)
        );
    }
    // Nothing to profile without a step, and one file cannot be two outputs.
    let none = bin()
        .args(TINY)
        .args(["--steps", "0", "--profile"])
        .arg(tmp("never.json"))
        .output()
        .unwrap();
    assert_eq!(none.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&none.stderr).contains("--steps 1"));
    let same = bin()
        .args(TINY)
        .args(["--steps", "1", "--profile"])
        .arg(&path)
        .arg("--timeline")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(same.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&same.stderr).contains("give them different files"));
}
