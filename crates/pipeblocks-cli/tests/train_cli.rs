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
