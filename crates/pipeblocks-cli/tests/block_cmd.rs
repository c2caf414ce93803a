//! `pipeblocks block`, `generate --block` and `frontier` from the outside: output and exit codes.

mod common;

use common::run as pipeblocks;

fn temp_file(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("pipeblocks-block-cmd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write temp file");
    path
}

#[test]
fn block_prints_lifespans_and_the_bound() {
    let (code, out, _) = pipeblocks(&["block", "-s", "v-min", "-p", "6"]);
    assert_eq!(code, 0);
    assert!(out.contains("period 6 slots"), "{out}");
    assert!(out.contains("l0="), "{out}");
    // The bound covers V-Min's peak, ⌊(6+4)/3⌋ = 3 units.
    let bound: f64 = out
        .lines()
        .find_map(|l| l.strip_prefix("memory bound (units, max over devices): "))
        .expect("bound line")
        .trim()
        .parse()
        .expect("number");
    assert!((3.0..=4.0).contains(&bound), "{out}");
}

#[test]
fn a_named_block_round_trips_through_generate_block() {
    let (code, json, _) = pipeblocks(&["block", "-s", "v-half", "-p", "4", "--json"]);
    assert_eq!(code, 0);
    let path = temp_file("v-half-4.json", &json);
    let p = path.to_str().expect("utf-8 path");
    let (code, from_file, err) =
        pipeblocks(&["generate", "--block", p, "-m", "8", "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let (code, named, _) = pipeblocks(&[
        "generate", "-s", "v-half", "-p", "4", "-m", "8", "--format", "json",
    ]);
    assert_eq!(code, 0);
    assert_eq!(from_file, named);
    let (code, _, err) = pipeblocks(&["generate", "--block", p, "-m", "8", "-p", "5"]);
    assert_eq!(code, 2);
    assert!(err.contains("the block is for 4 devices"), "{err}");
}

#[test]
fn bad_blocks_exit_2_with_one_line() {
    let clash = r#"{"format":"pipeblocks-block","version":1,"name":"clash","devices":1,
        "placement":{"kind":"sequential"},"period":2,
        "passes":[{"kind":"F","stage":0,"offset":0},{"kind":"BW","stage":0,"offset":1}]}"#;
    let path = temp_file("clash.json", clash);
    let (code, out, err) = pipeblocks(&[
        "generate",
        "--block",
        path.to_str().expect("utf-8"),
        "-m",
        "4",
    ]);
    assert_eq!(code, 2, "{out}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("period"), "{err}");
    let (code, _, err) = pipeblocks(&["block", "-s", "nope", "-p", "4"]);
    assert_eq!(code, 2);
    assert!(err.contains("blocks exist for"), "{err}");
}

#[test]
fn frontier_lists_budgets_and_families() {
    let (code, out, err) = pipeblocks(&["frontier", "-p", "4", "-m", "8", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    let pts = v.as_array().expect("array");
    assert!(!pts.is_empty());
    for pt in pts {
        assert!(
            pt["peak"].as_f64().expect("peak") <= pt["budget"].as_f64().expect("budget") + 1e-9
        );
        assert!(!pt["family"].as_str().expect("family").is_empty());
    }
}

#[test]
fn auto_respects_the_memory_flag() {
    let (code, out, err) = pipeblocks(&[
        "simulate",
        "-s",
        "auto",
        "--memory",
        "0.5x",
        "--cost",
        "f=1,b=1.3,w=0.7,c=0.05",
        "-p",
        "4",
        "-m",
        "8",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert!(v["max_peak_activation"].as_f64().expect("peak") <= 2.0 + 1e-9);
}

#[test]
fn bad_memory_budgets_exit_2_with_one_line() {
    // A negative budget reaches the budget parser (not clap's "unexpected argument"), a budget
    // under what recomputing every stage reaches (a looped stage's 0.25 units) says nothing
    // fits, and a huge one answers like `m` units.
    for (mem, needle) in [
        ("-1", "malformed memory budget"),
        ("abc", "malformed memory budget"),
        ("0.2", "fits no schedule"),
    ] {
        let (code, out, err) = pipeblocks(&[
            "generate", "-s", "auto", "--memory", mem, "-p", "4", "-m", "8",
        ]);
        assert_eq!(code, 2, "{mem}: {err}");
        assert!(out.is_empty(), "{mem}: {out}");
        assert_eq!(err.trim().lines().count(), 1, "{mem}: {err}");
        assert!(err.contains(needle), "{mem}: {err}");
    }
    let (code, _, err) = pipeblocks(&[
        "generate", "-s", "auto", "--memory", "1e300", "-p", "4", "-m", "8",
    ]);
    assert_eq!(code, 0, "{err}");
}
