//! The training step on the command line (issue 19): `period` and `stage_bubble_rate` in
//! `simulate --json`, the optimizer modes, the gradient sync, `compare`'s period column, and one
//! clear line for each bad option.

mod common;

use common::{json, num, run};

#[test]
fn plain_simulation_reports_period_and_both_bubble_rates() {
    let v = json(&["simulate", "-s", "1f1b", "-p", "4", "-m", "8", "--json"]);
    assert_eq!(num(&v, "period"), num(&v, "makespan"));
    // 1F1B at equal costs: 3/11 idle over the makespan; within its own span device 0 idles
    // only in the steady state's waits, device 3 none of its cool-down.
    assert!((num(&v, "bubble_rate") - 3.0 / 11.0).abs() < 1e-9);
    let stage = num(&v, "stage_bubble_rate");
    assert!(stage > 0.0 && stage < num(&v, "bubble_rate"), "{stage}");
    assert!(
        v.get("step").is_none(),
        "no step object without step options"
    );
}

#[test]
fn sync_optimizer_and_exposed_grad_sync_add_to_the_makespan() {
    let base = [
        "simulate",
        "-s",
        "zb-h1",
        "-p",
        "4",
        "-m",
        "12",
        "--cost",
        "f=1,b=1.2,w=0.8,c=0.05",
    ];
    let flush = json(&[&base[..], &["--json"]].concat());
    let v = json(
        &[
            &base[..],
            &[
                "--optimizer",
                "sync",
                "--optimizer-cost",
                "3",
                "--grad-sync",
                "2",
                "--json",
            ],
        ]
        .concat(),
    );
    // Every stage's all-reduce after the device's last pass: 2 exposed, then the optimizer.
    let want = num(&flush, "makespan") + 2.0 + 3.0;
    assert!(
        (num(&v, "period") - want).abs() < 1e-9,
        "{} vs {want}",
        num(&v, "period")
    );
    assert_eq!(v["step"]["mode"], "sync");
    let exposed = v["step"]["grad_sync_exposed"].as_array().expect("array");
    assert!(exposed
        .iter()
        .all(|x| (x.as_f64().unwrap_or(-1.0) - 2.0).abs() < 1e-9));
}

#[test]
fn overlapped_optimizer_hides_what_the_sync_one_waits_for() {
    // V-Half: a device's chunk-1 Ws end before its chunk-0 ones, so an overlapped all-reduce
    // and an overlapped optimizer both shorten the period.
    let base = [
        "simulate",
        "-s",
        "v-half",
        "-p",
        "4",
        "-m",
        "16",
        "--optimizer-cost",
        "2",
        "--grad-sync",
        "1",
        "--json",
    ];
    let sync = json(&base);
    let overlapped_sync = json(&[&base[..], &["--grad-sync-overlap"]].concat());
    let over = json(
        &[
            &base[..],
            &[
                "--grad-sync-overlap",
                "--optimizer",
                "overlap",
                "--iterations",
                "8",
            ],
        ]
        .concat(),
    );
    let (a, b, c) = (
        num(&sync, "period"),
        num(&overlapped_sync, "period"),
        num(&over, "period"),
    );
    assert!(b < a - 1e-9, "{b} !< {a}");
    assert!(c <= b + 1e-9, "{c} > {b}");
    assert_eq!(over["step"]["iterations"], 8);
    assert_eq!(
        over["step"]["iteration_ends"].as_array().map(Vec::len),
        Some(8)
    );
}

#[test]
fn compare_shows_the_period_when_asked() {
    let (rc, out, err) = run(&["compare", "-p", "4", "-m", "8", "--optimizer-cost", "1"]);
    assert_eq!(rc, 0, "{err}");
    assert!(
        out.lines().nth(1).is_some_and(|h| h.contains("period")),
        "{out}"
    );
    let (rc, out, _) = run(&["compare", "-p", "4", "-m", "8"]);
    assert_eq!(rc, 0);
    assert!(!out.contains("period"), "{out}");
}

#[test]
fn bad_step_options_get_one_clear_line() {
    for (args, needle) in [
        (
            vec!["--optimizer", "overlap", "--iterations", "1"],
            "at least 2",
        ),
        (vec!["--optimizer-cost", "-1"], "--optimizer-cost"),
        (vec!["--optimizer-cost", "inf"], "finite"),
        (vec!["--grad-sync", "nan"], "--grad-sync"),
        (vec!["--grad-sync-overlap"], "--grad-sync T"),
        (vec!["--iterations", "4"], "--optimizer overlap"),
        (
            vec!["--optimizer", "overlap", "--iterations", "100"],
            "at most 64",
        ),
        (
            vec!["--optimizer", "overlap", "--format", "chrome-trace"],
            "chrome-trace",
        ),
        (
            vec!["--optimizer", "overlap", "--model", "gpt-1.3b"],
            "not modelled",
        ),
        (
            vec!["--grad-sync", "1", "--fsdp", "2", "--model", "gpt-1.3b"],
            "reduce-scatters",
        ),
    ] {
        let mut all = vec!["simulate", "-s", "1f1b", "-p", "4", "-m", "8"];
        all.extend(&args);
        let (rc, out, err) = run(&all);
        assert_eq!(rc, 2, "{args:?}: {out}{err}");
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 1, "{args:?}: {err}");
        assert!(
            lines[0].starts_with("error: ") && lines[0].contains(needle),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn fsdp_step_adds_a_synchronous_optimizer() {
    let base = [
        "simulate", "-s", "zb-v", "-p", "4", "-m", "8", "--model", "gpt-1.3b", "--fsdp", "2",
        "--json",
    ];
    let plain = json(&base);
    let v = json(&[&base[..], &["--optimizer-cost", "0.05"]].concat());
    assert_eq!(num(&plain, "period_seconds"), num(&plain, "step_seconds"));
    assert!((num(&v, "period_seconds") - num(&v, "step_seconds") - 0.05).abs() < 1e-12);
    let stage = num(&v, "stage_bubble_rate");
    assert!(stage >= 0.0 && stage <= num(&v, "bubble_rate") + 1e-12);
}
