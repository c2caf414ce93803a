//! Recomputation and offload on the command line (issue 22): the costs that give them, what
//! `simulate` says about them, the frontier down to 0.05x, and one error line for what cannot
//! be simulated.

mod common;
use common::{json, num, run};

fn tmp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("pipeblocks-offload-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir.join(name)
}

#[test]
fn auto_offloads_only_with_a_link_and_simulate_names_it() {
    let file = tmp("auto.json");
    let path = file.to_str().expect("path");
    let gen = |cost: &str| {
        run(&[
            "generate", "-s", "auto", "-p", "4", "-m", "8", "--memory", "0.3x", "--cost", cost,
            "-o", path,
        ])
    };
    // With a link: the schedule offloads and fits.
    let (rc, _, err) = gen("f=1,b=1,w=1,offload=0.5");
    assert_eq!(rc, 0, "{err}");
    let with = [
        "simulate",
        "--from",
        path,
        "--cost",
        "f=1,b=1,w=1,offload=0.5",
    ];
    let (rc, out, err) = run(&with);
    assert_eq!(rc, 0, "{err}");
    assert!(out.contains("offload       "), "{out}");
    let mut as_json = with.to_vec();
    as_json.push("--json");
    let v = json(&as_json);
    assert!(num(&v, "offloaded") > 0.0);
    assert!(num(&v, "transfer_time") > 0.0);
    assert!(num(&v, "peak_vs_1f1b") <= 0.3 + 1e-9);
    // The same file without the link's time: one error line naming the fix, exit 2.
    let (rc, out, err) = run(&["simulate", "--from", path]);
    assert_eq!(rc, 2, "{out}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("host link") && err.contains("--cost"), "{err}");
    // PyTorch's CSV cannot carry it.
    let csv = tmp("auto.csv");
    let (rc, _, err) = run(&[
        "generate",
        "-s",
        "auto",
        "-p",
        "4",
        "-m",
        "8",
        "--memory",
        "0.3x",
        "--cost",
        "f=1,b=1,w=1,offload=0.5",
        "-o",
        csv.to_str().expect("path"),
    ]);
    assert_eq!(rc, 2, "{err}");
    assert!(err.contains("offload"), "{err}");
    assert!(!csv.exists(), "nothing written");
    // Without a link: it recomputes instead, and says so.
    let (rc, _, err) = gen("f=1,b=1,w=1");
    assert_eq!(rc, 0, "{err}");
    let (rc, out, err) = run(&["simulate", "--from", path]);
    assert_eq!(rc, 0, "{err}");
    assert!(out.contains("recompute     "), "{out}");
    assert!(!out.contains("offload       "), "{out}");
}

/// At p = 4 the finest stage (four chunks) holds 0.25 units, above 0.05x's 0.2: neither
/// frontier reaches it and both say why; the host link takes the first point from 0.15x (every
/// stage recomputed) down to 0.1x.
#[test]
fn the_frontier_goes_lower_with_a_link_and_says_why_it_stops() {
    let first = |out: &str| -> f64 {
        let line = out.lines().nth(2).expect("a first point");
        let x = line.split_whitespace().nth(1).expect("vs 1F1B");
        x.trim_end_matches('x').parse().expect("a number")
    };
    let with = run(&[
        "frontier",
        "-p",
        "4",
        "-m",
        "8",
        "--cost",
        "f=1,b=1,w=1,offload=1",
    ]);
    assert_eq!(with.0, 0, "{}", with.2);
    let without = run(&["frontier", "-p", "4", "-m", "8"]);
    assert_eq!(without.0, 0, "{}", without.2);
    assert!(
        first(&with.1) < first(&without.1),
        "{}\n{}",
        with.1,
        without.1
    );
    assert!(
        with.1.lines().nth(2).expect("first").contains("offloading"),
        "{}",
        with.1
    );
    for out in [&with.1, &without.1] {
        assert!(out.contains("nothing fits: at 0.05x"), "{out}");
        assert!(
            out.lines().nth(1).expect("header").contains("step"),
            "{out}"
        );
    }
}

#[test]
fn bad_recompute_and_offload_costs_exit_2_with_one_line() {
    for (args, needle) in [
        (vec!["--cost", "offload=-1"], "not a cost"),
        (vec!["--cost", "selective=0.1"], "selective_keep"),
        (
            vec!["--cost", "selective=0.1,selective_keep=2"],
            "not a fraction",
        ),
        (
            vec!["--model", "llama2-7b", "--device", "h100,host=0"],
            "host=0",
        ),
    ] {
        let mut all = vec!["simulate", "-s", "1f1b", "-p", "4", "-m", "8"];
        all.extend(args.iter().copied());
        let (rc, out, err) = run(&all);
        assert_eq!(rc, 2, "{args:?}: {out}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}
