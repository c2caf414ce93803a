//! Overlapped pairs (issue 21): a forward and a backward of another microbatch that one device
//! runs as one unit. They validate like any pass, cost what the table says, keep the memory
//! rules, and survive pipeblocks' JSON and PyTorch's CSV (`OVERLAP_F_B`).

use pipeblocks_core::format::{json, torch_csv};
use pipeblocks_core::params::StageCost;
use pipeblocks_core::{
    generate, simulate, validate, Costs, Params, Pass, Placement, Schedule, StageCosts,
    ValidationError,
};

/// Two devices, two stages, three microbatches; device 0 overlaps F0.2 with BW0.0 and device 1
/// runs 1F1B.
fn two_stage(pairs: Vec<[&str; 2]>, lists: [&[&str]; 2]) -> Schedule {
    let parse = |x: &str| Pass::parse(x).unwrap();
    let mut s = Schedule::empty("t", 2, 3, Placement::Sequential).unwrap();
    for (d, l) in lists.iter().enumerate() {
        s.lists[d] = l.iter().map(|x| parse(x)).collect();
    }
    s.pairs = pairs.into_iter().map(|p| p.map(parse)).collect();
    s
}

const DEV0: &[&str] = &["F0.0", "F0.1", "F0.2", "BW0.0", "BW0.1", "BW0.2"];
const DEV1: &[&str] = &["F1.0", "BW1.0", "F1.1", "BW1.1", "F1.2", "BW1.2"];

#[test]
fn a_pair_runs_as_one_unit_at_its_cost() {
    let s = two_stage(vec![["F0.2", "BW0.0"]], [DEV0, DEV1]);
    validate(&s).unwrap();
    let costs = StageCosts::uniform(Costs::parse("f=1,b=2,w=0,overlap=0.5").unwrap());
    let r = simulate(&s, &costs).unwrap();
    // F0.2 waits for BW1.0 (ends at 4): the pair starts there and lasts max(1, 2) + 0.5 · 1.
    assert_eq!((r.start[0][2], r.end[0][2]), (4.0, 6.5));
    assert_eq!((r.start[0][3], r.end[0][3]), (4.0, 6.5));
    assert!((r.busy[0] - (2.0 + 2.5 + 4.0)).abs() < 1e-12);
    // The forward's activation is there from the pair's start, the backward's freed at its end.
    assert_eq!(r.peak_activation[0], 3.0);
    // Without the pair the same lists take the two passes in turn.
    let mut plain = s.clone();
    plain.pairs.clear();
    let q = simulate(&plain, &costs).unwrap();
    assert_eq!((q.start[0][2], q.end[0][2]), (2.0, 3.0));
    assert_eq!((q.start[0][3], q.end[0][3]), (4.0, 6.0));
    assert!((q.busy[0] - 9.0).abs() < 1e-12);
}

#[test]
fn a_pair_of_one_microbatch_is_refused_with_why() {
    let s = two_stage(
        vec![["F0.2", "BW0.2"]],
        [&["F0.0", "F0.1", "BW0.0", "BW0.1", "F0.2", "BW0.2"], DEV1],
    );
    let e = validate(&s).unwrap_err();
    assert!(matches!(e, ValidationError::Pair { .. }), "{e:?}");
    let text = e.to_string();
    assert!(
        text.contains("(F0.2, BW0.2)")
            && text.contains("needs F0.2")
            && text.contains("different microbatches"),
        "{text}"
    );
}

#[test]
fn pairs_that_cannot_run_as_a_unit_are_refused() {
    let cases: Vec<(Vec<[&str; 2]>, &str)> = vec![
        (vec![["BW0.0", "F0.2"]], "forward then a backward"),
        (vec![["F0.1", "BW0.0"]], "positions 1 and 3"),
        (vec![["F0.2", "BW1.0"]], "devices 0 and 1"),
        (
            vec![["F0.2", "BW0.0"], ["F0.2", "BW0.1"]],
            "in another pair",
        ),
        (vec![["F0.2", "W0.0"]], "forward then a backward"),
    ];
    for (pairs, why) in cases {
        let s = two_stage(pairs.clone(), [DEV0, DEV1]);
        let text = validate(&s).unwrap_err().to_string();
        assert!(text.contains(why), "{pairs:?}: {text}");
        assert!(simulate(&s, &StageCosts::default()).is_err());
    }
}

#[test]
fn pairs_survive_json_and_torch_csv() {
    let s = generate("dualpipev", &Params::new(4, 10).unwrap()).unwrap();
    assert!(!s.pairs.is_empty());
    let back = json::read(&json::write(&s)).unwrap();
    assert_eq!(back, s);
    let csv = torch_csv::write(&s);
    assert!(csv.contains("(0F"), "{csv}");
    assert!(csv.contains(")OVERLAP_F_B"), "{csv}");
    let mut back = torch_csv::read(&csv, "dualpipev").unwrap();
    back.placement = s.placement.clone();
    assert_eq!(back.lists, s.lists);
    let mut want = s.pairs.clone();
    let mut got = back.pairs.clone();
    want.sort();
    got.sort();
    assert_eq!(got, want);
    assert_eq!(
        simulate(
            &back,
            &StageCosts::uniform(Costs::parse("overlap=0.3").unwrap())
        )
        .unwrap(),
        simulate(
            &s,
            &StageCosts::uniform(Costs::parse("overlap=0.3").unwrap())
        )
        .unwrap()
    );
}

#[test]
fn torch_overlap_cells_are_parsed_or_refused_with_the_form() {
    assert_eq!(
        torch_csv::parse_cell(" (0F3;1B1)OVERLAP_F_B ").unwrap(),
        Some((Pass::f(0, 3), Some(Pass::bw(1, 1))))
    );
    for bad in [
        "(0F3;1B1)",
        "(0F3)OVERLAP_F_B",
        "(0F3;1B1;2W0)OVERLAP_F_B",
        "(0F3;1B1",
    ] {
        let e = torch_csv::parse_cell(bad).unwrap_err();
        assert!(e.contains("OVERLAP_F_B") || e.contains("two"), "{bad}: {e}");
    }
}

/// A pair's halves hide the communication inside them behind each other's computation: with an
/// all-to-all as long as the computation, a pair of F = 2 (1 of it communication) and BW = 4
/// (2 of it) takes the computations in turn, 3, which the communications (also 3) fit under.
#[test]
fn table_costs_hide_the_communication_a_pair_overlaps() {
    let stage = StageCost {
        f: 2.0,
        b: 4.0,
        w: 0.0,
        bw: None,
        activation: 1.0,
        b_release: None,
        comm: None,
        optimizer: None,
        comm_f: Some(1.0),
        comm_b: Some(2.0),
        r: None,
        keep: None,
        offload: None,
        selective: None,
        selective_keep: None,
    };
    let costs = StageCosts::table(vec![stage; 2], 0.0, 0.0).unwrap();
    let t = costs.resolve(2, 2).unwrap();
    assert_eq!(t.pair(Pass::f(0, 1), Pass::bw(1, 0)), 3.0);
    // Without communication the computations share the device: nothing is hidden.
    let dense = StageCost {
        comm_f: None,
        comm_b: None,
        r: None,
        keep: None,
        offload: None,
        selective: None,
        selective_keep: None,
        ..stage
    };
    let t = StageCosts::table(vec![dense; 2], 0.0, 0.0)
        .unwrap()
        .resolve(2, 2)
        .unwrap();
    assert_eq!(t.pair(Pass::f(0, 1), Pass::bw(1, 0)), 6.0);
    // A stage's communication cannot exceed its pass.
    let wrong = StageCost {
        comm_f: Some(3.0),
        ..stage
    };
    let e = StageCosts::table(vec![wrong; 2], 0.0, 0.0).unwrap_err();
    assert!(e.to_string().contains("at most f and b"), "{e}");
}

#[test]
fn the_overlap_fraction_is_checked() {
    let e = Costs::parse("overlap=1.5").unwrap_err().to_string();
    assert!(e.contains("not a fraction"), "{e}");
}
