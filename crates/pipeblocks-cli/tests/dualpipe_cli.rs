//! DualPipe and overlapped pairs on the command line: the overlap fraction, the pairs and the
//! parameter copies in the summary, and the refusals.

mod common;
use common::{json, num, run};

#[test]
fn overlap_shortens_dualpipev_and_the_summary_names_pairs_and_copies() {
    let base = [
        "simulate",
        "-s",
        "dualpipev",
        "-p",
        "4",
        "-m",
        "12",
        "--json",
    ];
    let plain = json(&base);
    let mut args = base.to_vec();
    args.extend(["--overlap", "0.5"]);
    let half = json(&args);
    assert!(num(&half, "makespan") < num(&plain, "makespan"));
    assert_eq!(num(&half, "pairs") as usize, num(&plain, "pairs") as usize);
    assert!(num(&half, "pairs") > 0.0);
    // The same through the cost string.
    let via_cost = json(&[
        "simulate",
        "-s",
        "dualpipev",
        "-p",
        "4",
        "-m",
        "12",
        "--json",
        "--cost",
        "f=1,b=1,w=1,overlap=0.5",
    ]);
    assert_eq!(num(&via_cost, "makespan"), num(&half, "makespan"));
    let (rc, out, err) = run(&["simulate", "-s", "dualpipe", "-p", "4", "-m", "8"]);
    assert_eq!(rc, 0, "{err}");
    assert!(
        out.contains("parameters    2.000x 1F1B's per device"),
        "{out}"
    );
    assert!(out.contains("placement     bidirectional"), "{out}");
    assert!(
        out.contains("forward/backward pairs run overlapped"),
        "{out}"
    );
}

#[test]
fn bad_overlap_and_dualpipe_sizes_get_one_error_line() {
    for (args, needle) in [
        (
            vec![
                "simulate",
                "-s",
                "dualpipev",
                "-p",
                "4",
                "-m",
                "8",
                "--overlap",
                "2",
            ],
            "not a fraction",
        ),
        (
            vec![
                "simulate",
                "-s",
                "dualpipev",
                "-p",
                "4",
                "-m",
                "8",
                "--cost",
                "overlap=-1",
            ],
            "not a fraction",
        ),
        (
            vec!["generate", "-s", "dualpipe", "-p", "3", "-m", "12"],
            "even device count",
        ),
        (
            vec!["generate", "-s", "dualpipe", "-p", "4", "-m", "9"],
            "use 10",
        ),
        (
            vec![
                "generate",
                "-s",
                "dualpipe",
                "-p",
                "4",
                "-m",
                "8",
                "--format",
                "torch-csv",
            ],
            "write pipeblocks JSON",
        ),
    ] {
        let (rc, out, err) = run(&args);
        assert_eq!(rc, 2, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?}");
    }
}

#[test]
fn pairs_round_trip_through_the_torch_csv_file() {
    let dir = std::env::temp_dir().join(format!("pipeblocks-dualpipe-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let csv = dir.join("dpv.csv");
    let (rc, _, err) = run(&[
        "generate",
        "-s",
        "dualpipev",
        "-p",
        "4",
        "-m",
        "10",
        "-o",
        csv.to_str().unwrap(),
    ]);
    assert_eq!(rc, 0, "{err}");
    let text = std::fs::read_to_string(&csv).unwrap();
    assert!(text.contains("OVERLAP_F_B"), "{text}");
    let from_file = json(&[
        "simulate",
        "--from",
        csv.to_str().unwrap(),
        "--overlap",
        "0.25",
        "--json",
    ]);
    let direct = json(&[
        "simulate",
        "-s",
        "dualpipev",
        "-p",
        "4",
        "-m",
        "10",
        "--overlap",
        "0.25",
        "--json",
    ]);
    assert_eq!(num(&from_file, "makespan"), num(&direct, "makespan"));
    let (rc, out, err) = run(&["validate", csv.to_str().unwrap()]);
    assert_eq!(rc, 0, "{out}{err}");
    std::fs::remove_dir_all(&dir).ok();
}
