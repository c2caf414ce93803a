//! `simulate`/`compare` with `--fsdp`: reports, exports and exit codes.

mod common;

use common::run as pipeblocks;

#[test]
fn simulate_reports_per_device_fsdp_figures_and_writes_collectives() {
    let dir = std::env::temp_dir().join(format!("pipeblocks-fsdp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let csv = dir.join("z.csv");
    let (code, out, err) = pipeblocks(&[
        "simulate",
        "-s",
        "zeropp",
        "-p",
        "2",
        "-m",
        "4",
        "--unit",
        "2",
        "--fsdp",
        "4",
        "--model",
        "gpt-1.3b",
        "--device",
        "bandwidth=10GB/s",
        "--torch-csv",
        csv.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("exposed comm (ms)"), "{out}");
    assert!(
        out.contains("16 all-gathers, 8 reduce-scatters"),
        "2 units × 2 phases × 4 stages: {out}"
    );
    let text = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(text.lines().count(), 2);
    assert!(text.starts_with("0UNSHARD,"), "{text}");
    assert!(text.contains("0RESHARD"));
    assert!(text.contains("REDUCE_GRAD"));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn compare_lists_every_schedule_in_json() {
    let (code, out, err) = pipeblocks(&[
        "compare", "-p", "2", "-m", "4", "--fsdp", "2", "--model", "gpt-1.3b", "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["schedule"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"zeropp") && names.contains(&"bfs") && names.contains(&"1f1b"));
}

#[test]
fn bad_fsdp_input_exits_2_with_one_line() {
    for args in [
        &[
            "simulate", "-s", "zeropp", "-p", "2", "-m", "4", "--fsdp", "2",
        ][..],
        &[
            "simulate", "-s", "zeropp", "-p", "2", "-m", "4", "--fsdp", "2", "--model", "gpt-9b",
        ],
        &[
            "simulate", "-s", "zeropp", "-p", "2", "-m", "4", "--fsdp", "2", "--model", "gpt-1.3b",
            "--unit", "5",
        ],
        &[
            "compare",
            "-p",
            "2",
            "-m",
            "4",
            "--fsdp",
            "2",
            "--model",
            "gpt-1.3b",
            "--device",
            "bandwidth=fast",
        ],
    ] {
        let (code, _, err) = pipeblocks(args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.starts_with("error: "), "{err}");
    }
}
