//! Engine invariants: every generator's output is complete, dependency-safe and deadlock-free;
//! simulator figures match the closed forms; formats round-trip; bad schedules are refused with
//! precise reasons.

use pipeblocks_core::error::{Error, Param, ValidationError};
use pipeblocks_core::format::{json, read_any, torch_csv};
use pipeblocks_core::registry::{find, generate, registry};
use pipeblocks_core::Params;
use pipeblocks_core::{
    simulate, validate, Costs, Pass, PassKind, Placement, Schedule, StageCost, StageCosts,
};
use proptest::prelude::*;

fn sim(s: &Schedule) -> pipeblocks_core::SimResult {
    simulate(s, &StageCosts::default()).expect("simulate")
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9 * (1.0 + a.abs().max(b.abs()))
}

/// Independent completeness check: each (stage, mb) of one lane has F once and either BW or
/// B+W once (and at most one R); none of different lanes has any pass.
fn assert_complete(s: &Schedule) {
    let mut count = std::collections::HashMap::new();
    for (d, list) in s.lists.iter().enumerate() {
        for p in list {
            assert_eq!(s.device_of(p.stage) as usize, d, "{p} on wrong device");
            *count.entry(*p).or_insert(0) += 1;
        }
    }
    let per_lane = s.placement.lane_stages(s.devices);
    let mbs_per_lane = s.microbatches / s.placement.lanes();
    for st in 0..s.stages {
        for mb in 0..s.microbatches {
            if st / per_lane != mb / mbs_per_lane {
                assert!(
                    count.keys().all(|q| (q.stage, q.mb) != (st, mb)),
                    "{st}.{mb} in another lane"
                );
                continue;
            }
            assert!(
                count.get(&Pass::r(st, mb)).copied().unwrap_or(0) <= 1,
                "R{st}.{mb}"
            );
            assert_eq!(count.get(&Pass::f(st, mb)), Some(&1), "F{st}.{mb}");
            let bw = count.get(&Pass::bw(st, mb)).copied().unwrap_or(0);
            let b = count.get(&Pass::b(st, mb)).copied().unwrap_or(0);
            let w = count.get(&Pass::w(st, mb)).copied().unwrap_or(0);
            assert!(
                (bw == 1 && b == 0 && w == 0) || (bw == 0 && b == 1 && w == 1),
                "backward of stage {st} mb {mb}: BW {bw} B {b} W {w}"
            );
        }
    }
}

/// Independent dependency check on the simulated timeline: every pass starts after its inputs end.
fn assert_dependency_safe(s: &Schedule, r: &pipeblocks_core::SimResult) {
    let mut end = std::collections::HashMap::new();
    let mut start = std::collections::HashMap::new();
    for (d, list) in s.lists.iter().enumerate() {
        for (i, p) in list.iter().enumerate() {
            end.insert(*p, r.end[d][i]);
            start.insert(*p, r.start[d][i]);
            if i > 0 && s.pairs.contains(&[list[i - 1], *p]) {
                // An overlapped pair: its halves run together.
                assert_eq!(
                    (r.start[d][i], r.end[d][i]),
                    (r.start[d][i - 1], r.end[d][i - 1]),
                    "pair on device {d}"
                );
            } else if i > 0 {
                assert!(
                    r.start[d][i] >= r.end[d][i - 1] - 1e-9,
                    "overlap on device {d}"
                );
            }
        }
    }
    let grad = |st: u32, mb: u32| {
        end.get(&Pass::b(st, mb))
            .or_else(|| end.get(&Pass::bw(st, mb)))
            .copied()
            .expect("backward exists")
    };
    let lane = s.placement.lane_stages(s.devices);
    for (p, &t) in &start {
        let need = match p.kind {
            PassKind::F if p.stage % lane > 0 => Some(end[&Pass::f(p.stage - 1, p.mb)]),
            PassKind::F => None,
            PassKind::B | PassKind::BW => {
                let own = end[&Pass::f(p.stage, p.mb)];
                let own = end
                    .get(&Pass::r(p.stage, p.mb))
                    .or_else(|| end.get(&Pass::l(p.stage, p.mb)))
                    .map_or(own, |&r| own.max(r));
                Some(if (p.stage + 1) % lane > 0 {
                    own.max(grad(p.stage + 1, p.mb))
                } else {
                    own
                })
            }
            PassKind::W => Some(end[&Pass::b(p.stage, p.mb)]),
            PassKind::R => {
                let own = end[&Pass::f(p.stage, p.mb)];
                Some(
                    end.get(&Pass::l(p.stage, p.mb))
                        .map_or(own, |&l| own.max(l)),
                )
            }
            PassKind::O => Some(end[&Pass::f(p.stage, p.mb)]),
            PassKind::L => Some(end[&Pass::o(p.stage, p.mb)]),
        };
        if let Some(n) = need {
            assert!(t >= n - 1e-9, "{p} starts at {t} before its input at {n}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Every registered generator: valid output, or a clear configuration refusal.
    #[test]
    fn every_generator_is_valid_or_refuses(p in 1u32..=16, m in 1u32..=64, idx in 0usize..64) {
        let g = &registry()[idx % registry().len()];
        match generate(g.name, &Params::new(p, m).unwrap()) {
            Ok(s) => {
                prop_assert_eq!(s.devices, p);
                prop_assert_eq!(s.microbatches, m);
                validate(&s).expect("generate validated it");
                assert_complete(&s);
                let r = sim(&s);
                assert_dependency_safe(&s, &r);
                prop_assert!(r.bubble_rate >= -1e-9 && r.bubble_rate < 1.0);
            }
            Err(Error::Config { why: msg, .. }) => prop_assert!(msg.len() > 10, "unclear refusal: {}", msg),
            Err(e) => prop_assert!(false, "{} p={} m={}: unexpected error {}", g.name, p, m, e),
        }
    }

    /// Torch CSV and JSON round-trip unchanged, with identical simulated figures.
    #[test]
    fn formats_round_trip(p in 1u32..=8, m in 1u32..=16, idx in 0usize..64, f in 0.5f64..2.0, c in 0.0f64..0.3) {
        let g = &registry()[idx % registry().len()];
        let Ok(s) = generate(g.name, &Params::new(p, m).unwrap()) else { return Ok(()) };
        let cfg = StageCosts::uniform(Costs { f, b: 1.0, w: 0.7, bw: None, comm: c, overlap: 1.0, r: None, keep: None, offload: None, selective: None });
        let r0 = simulate(&s, &cfg).unwrap();
        let from_json = json::read(&json::write(&s)).unwrap();
        prop_assert_eq!(&from_json, &s);
        if s.placement.lanes() > 1 {
            // Two pipelines: PyTorch's CSV cannot say so, and writing one is refused.
            prop_assert!(torch_csv::check(&s).is_err());
            return Ok(());
        }
        torch_csv::check(&s).unwrap();
        let csv = torch_csv::write(&s);
        let from_csv = torch_csv::read(&csv, &s.name).unwrap();
        prop_assert_eq!(&from_csv.lists, &s.lists);
        prop_assert_eq!(from_csv.placement.stage_devices(p), s.placement.stage_devices(p));
        prop_assert_eq!(torch_csv::write(&from_csv), csv.clone());
        let r1 = simulate(&from_csv, &cfg).unwrap();
        prop_assert_eq!(r0, r1);
        prop_assert_eq!(read_any(&csv, &s.name).unwrap().lists, s.lists);
    }
}

#[test]
fn one_f_one_b_and_gpipe_closed_forms() {
    for p in 1..=12u32 {
        for m in [1, 2, 3, p, 2 * p + 1, 4 * p] {
            let expected = (p - 1) as f64 / (m + p - 1) as f64;
            for name in ["1f1b", "gpipe"] {
                let s = generate(name, &Params::new(p, m).unwrap()).unwrap();
                let r = sim(&s);
                assert!(
                    close(r.bubble_rate, expected),
                    "{name} p={p} m={m}: {}",
                    r.bubble_rate
                );
                let peak0 = if name == "1f1b" { p.min(m) } else { m };
                assert!(
                    close(r.peak_activation[0], peak0 as f64),
                    "{name} p={p} m={m}"
                );
            }
        }
    }
}

#[test]
fn breadth_first_keeps_every_microbatch_alive() {
    for (p, m, v) in [(4, 8, 2), (8, 32, 2), (3, 5, 3), (2, 1, 4)] {
        let mut prm = Params::new(p, m).unwrap();
        prm = prm.with_chunks(v).unwrap();
        let r = sim(&generate("bfs", &prm).unwrap());
        for d in 0..p as usize {
            assert!(close(r.peak_activation[d], m as f64), "p={p} m={m} v={v}");
        }
    }
}

#[test]
fn interleaved_bubble_falls_with_chunks() {
    let (p, m) = (8u32, 32u32);
    let mut last = 1.0;
    for v in [1u32, 2, 4] {
        let mut prm = Params::new(p, m).unwrap();
        prm = prm.with_chunks(v).unwrap();
        let r = sim(&generate("interleaved-1f1b", &prm).unwrap());
        let approx = (p - 1) as f64 / (v * m) as f64;
        assert!(
            r.bubble_rate <= approx * 1.05,
            "v={v}: {} vs {approx}",
            r.bubble_rate
        );
        assert!(
            r.bubble_rate >= approx * 0.7,
            "v={v}: {} vs {approx}",
            r.bubble_rate
        );
        assert!(
            r.bubble_rate < last,
            "v={v} does not improve on fewer chunks"
        );
        last = r.bubble_rate;
    }
    // v = 1 is exactly 1F1B.
    let mut prm = Params::new(p, m).unwrap();
    prm = prm.with_chunks(1).unwrap();
    let a = sim(&generate("interleaved-1f1b", &prm).unwrap());
    let b = sim(&generate("1f1b", &Params::new(p, m).unwrap()).unwrap());
    assert!(close(a.makespan, b.makespan));
}

#[test]
fn zb_h1_reference_figures() {
    let r = sim(&generate("zb-h1", &Params::new(8, 32).unwrap()).unwrap());
    assert!(r.bubble_rate <= 0.07, "{}", r.bubble_rate);
    assert!(close(r.max_peak(), 8.0));
    // About a third of 1F1B's bubble time.
    let one = sim(&generate("1f1b", &Params::new(8, 32).unwrap()).unwrap());
    let idle = |r: &pipeblocks_core::SimResult| r.bubble_rate * r.makespan;
    assert!(idle(&r) < 0.4 * idle(&one));
}

#[test]
fn costs_and_per_stage_costs_change_timings() {
    let s = generate("1f1b", &Params::new(4, 8).unwrap()).unwrap();
    let base = sim(&s);
    // Stage 1 twice as slow: its device is busy twice as long and the step grows.
    let stage = |k: f64| StageCost {
        f: k,
        b: k,
        w: k,
        bw: None,
        activation: 1.0,
        b_release: None,
        comm: None,
        optimizer: None,
        comm_f: None,
        comm_b: None,
        r: None,
        keep: None,
        offload: None,
        selective: None,
        selective_keep: None,
    };
    let table = StageCosts::table(
        vec![stage(1.0), stage(2.0), stage(1.0), stage(1.0)],
        0.0,
        0.0,
    )
    .unwrap();
    let slow = simulate(&s, &table).unwrap();
    assert!(slow.makespan > base.makespan);
    assert!(close(slow.busy[1], 2.0 * base.busy[1]));
    assert!(close(slow.busy[0], base.busy[0]));
    let comm = simulate(
        &s,
        &StageCosts::uniform(Costs {
            comm: 0.5,
            ..Costs::default()
        }),
    )
    .unwrap();
    // At least the F chain and the B chain of one microbatch each cross p-1 links.
    assert!(comm.makespan >= base.makespan + 2.0 * 3.0 * 0.5 - 1e-9);
    // Latency adds idle time, never work.
    assert_eq!(comm.busy, base.busy);
    assert!(comm.bubble_rate > base.bubble_rate);
    // Releasing half the activation at B lowers no peak (F allocates before any B) but changes the curve.
    let half = simulate(&s, &StageCosts::default().with_b_release(0.5).unwrap()).unwrap();
    assert!(half.peak_activation[0] <= base.peak_activation[0]);
    // With the backward split, B frees half: the curve drops earlier.
    let zb = generate("zb-h1", &Params::new(4, 8).unwrap()).unwrap();
    let (all, part) = (
        sim(&zb),
        simulate(&zb, &StageCosts::default().with_b_release(0.5).unwrap()).unwrap(),
    );
    assert_ne!(all.memory, part.memory);
    assert!(part.peak_activation[3] < all.peak_activation[3]);
}

fn sched(p: u32, m: u32, lists: Vec<Vec<&str>>) -> Schedule {
    Schedule {
        name: "t".into(),
        devices: p,
        stages: p,
        microbatches: m,
        placement: Placement::Sequential,
        lists: lists
            .into_iter()
            .map(|l| l.into_iter().map(|x| Pass::parse(x).unwrap()).collect())
            .collect(),
        pairs: Vec::new(),
        selective: Vec::new(),
    }
}

#[test]
fn refuses_missing_pass() {
    let s = sched(2, 1, vec![vec!["F0.0", "BW0.0"], vec!["F1.0"]]);
    match validate(&s) {
        Err(ValidationError::Missing { pass, device, .. }) => {
            assert_eq!(pass, Pass::bw(1, 0));
            assert_eq!(device, 1);
        }
        other => panic!("{other:?}"),
    }
    let s = sched(1, 1, vec![vec!["F0.0", "B0.0"]]);
    let e = validate(&s).unwrap_err().to_string();
    assert!(e.contains("W0.0"), "{e}");
}

#[test]
fn refuses_circular_wait_naming_device_position_and_dependency() {
    // Device 0 runs BW0.0 before F0.1; device 1 waits for F1.0... then F1.1 needs F0.1 which is
    // behind BW0.0, which needs BW1.0, which device 1 lists after F1.1.
    let s = sched(
        2,
        2,
        vec![
            vec!["F0.0", "BW0.0", "F0.1", "BW0.1"],
            vec!["F1.0", "F1.1", "BW1.0", "BW1.1"],
        ],
    );
    let e = validate(&s).unwrap_err();
    let ValidationError::Deadlock { waits } = &e else {
        panic!("{e:?}")
    };
    assert_eq!(waits.len(), 2);
    assert_eq!((waits[0].device, waits[0].position), (0, 1));
    assert_eq!(waits[0].waits_for, Pass::bw(1, 0));
    assert_eq!((waits[1].device, waits[1].position), (1, 1));
    assert_eq!(waits[1].waits_for, Pass::f(0, 1));
    let text = e.to_string();
    assert!(
        text.contains("device 0 at position 1 (BW0.0) waits for BW1.0 on device 1"),
        "{text}"
    );
    assert!(!text.contains('\n'));
}

#[test]
fn refuses_order_on_one_device_duplicates_and_wrong_device() {
    let s = sched(1, 1, vec![vec!["BW0.0", "F0.0"]]);
    assert!(matches!(
        validate(&s),
        Err(ValidationError::OrderOnDevice { position: 0, .. })
    ));
    let s = sched(1, 1, vec![vec!["F0.0", "F0.0", "BW0.0"]]);
    assert!(matches!(
        validate(&s),
        Err(ValidationError::Duplicate { position: 1, .. })
    ));
    let s = sched(1, 1, vec![vec!["F0.0", "B0.0", "W0.0", "BW0.0"]]);
    assert!(validate(&s)
        .unwrap_err()
        .to_string()
        .contains("mixes split and fused"));
    let s = sched(2, 1, vec![vec!["F0.0", "F1.0", "BW1.0", "BW0.0"], vec![]]);
    assert!(matches!(
        validate(&s),
        Err(ValidationError::WrongDevice { expected: 1, .. })
    ));
    let s = sched(1, 1, vec![vec!["F0.0", "BW0.0", "F0.3"]]);
    assert!(matches!(
        validate(&s),
        Err(ValidationError::OutOfRange { .. })
    ));
}

#[test]
fn torch_csv_refuses_stage_on_two_devices_and_bad_cells() {
    let e = torch_csv::read("0F0,0B0\n0F1\n", "x").unwrap_err();
    assert!(matches!(
        e,
        Error::Invalid(ValidationError::StageOnTwoDevices {
            stage: 0,
            first: 0,
            second: 1
        })
    ));
    for bad in ["0X0", "F0", "0F", "abc", "1I"] {
        let e = torch_csv::read(&format!("0F0,{bad}\n"), "x").unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.starts_with("malformed torch CSV: row 1 column 2"),
            "{msg}"
        );
    }
    assert!(torch_csv::read("", "x").is_err());
    assert!(torch_csv::read(",,\n", "x").is_err());
}

#[test]
fn torch_csv_uses_pytorch_letters() {
    let s = generate("zb-h1", &Params::new(2, 2).unwrap()).unwrap();
    let csv = torch_csv::write(&s);
    assert!(csv.contains("0I0") && csv.contains("0W0") && !csv.contains("0B0"));
    let g = torch_csv::write(&generate("1f1b", &Params::new(2, 2).unwrap()).unwrap());
    assert!(g.contains("0B0") && !g.contains('I'));
}

#[test]
fn json_refuses_malformed_and_other_versions() {
    let s = generate("1f1b", &Params::new(2, 2).unwrap()).unwrap();
    let good = json::write(&s);
    assert!(matches!(
        json::read("{\"format\": 3"),
        Err(Error::Parse { .. })
    ));
    let v2 = good.replace("\"version\": 1", "\"version\": 2");
    assert!(json::read(&v2)
        .unwrap_err()
        .to_string()
        .contains("version 2"));
    let badpass = good.replace("F0.0", "Q0.0");
    assert!(json::read(&badpass)
        .unwrap_err()
        .to_string()
        .contains("Q0.0"));
    let other = good.replace("pipeblocks-schedule", "other");
    assert!(json::read(&other).is_err());
}

#[test]
fn unknown_names_get_a_suggestion() {
    let e = find("1fb1").err().unwrap();
    assert!(e.to_string().contains("did you mean `1f1b`"), "{e}");
    let e = find("zb_h2").err().unwrap();
    assert!(e.to_string().contains("`zb-h2`"), "{e}");
    let e = find("completely-different").err().unwrap();
    assert!(!e.to_string().contains("did you mean"), "{e}");
}

#[test]
fn zero_sizes_are_refused_once_at_the_edge() {
    assert_eq!(Params::new(0, 4), Err(Error::Zero(Param::Devices)));
    assert_eq!(Params::new(4, 0), Err(Error::Zero(Param::Microbatches)));
    let e = Params::new(2, 4).unwrap().with_chunks(0).unwrap_err();
    assert_eq!(e, Error::Zero(Param::Chunks));
    assert_eq!(
        e.to_string(),
        "the number of chunks per device is 0; use at least 1"
    );
    assert_eq!(e.suggestion().and_then(|f| f.value), Some("1".to_string()));
}

#[test]
fn cost_strings_parse_and_refuse() {
    let c = Costs::parse("f=1,b=1.3,w=0.7,c=0.05").unwrap();
    assert_eq!((c.f, c.b, c.w, c.comm), (1.0, 1.3, 0.7, 0.05));
    assert!(close(c.bw_cost(), 2.0));
    assert_eq!(Costs::parse("bw=1.5").unwrap().bw_cost(), 1.5);
    for bad in ["f", "f=x", "q=1", "f=-1", "f=0,b=0,w=0", "f=inf"] {
        assert!(Costs::parse(bad).is_err(), "{bad}");
    }
}

/// Exhaustive over the whole range: every generator, p in 1..=16, m in 1..=64. `auto`
/// (a whole search, a second or so each in a test build) takes every m up to 16, which covers
/// m < p at every p, and then m = 24, 32, 48 and 64; its proptest draws sizes in between.
#[test]
fn every_generator_exhaustively_small_sizes() {
    for g in registry() {
        let mut accepted = 0;
        let ms: Vec<u32> = if g.name == "auto" {
            (1..=16).chain([24, 32, 48, 64]).collect()
        } else {
            (1..=64).collect()
        };
        for p in 1..=16u32 {
            for &m in &ms {
                match generate(g.name, &Params::new(p, m).unwrap()) {
                    Ok(s) => {
                        accepted += 1;
                        let r = sim(&s);
                        assert!(r.makespan > 0.0 && r.bubble_rate < 1.0);
                    }
                    Err(Error::Config { why: msg, .. }) => assert!(!msg.is_empty()),
                    Err(e) => panic!("{} p={p} m={m}: {e}", g.name),
                }
            }
        }
        assert!(accepted > 0, "{} accepts nothing", g.name);
    }
}

#[test]
fn simulate_reports_the_validators_error_for_blocked_lists() {
    // The simulator skips the validator's in-order run and relies on its own; a blocked schedule
    // must still come back as the validator's precise error, not as a generic one.
    let cfg = StageCosts::default();
    let deadlock = sched(
        2,
        2,
        vec![
            vec!["F0.0", "BW0.0", "F0.1", "BW0.1"],
            vec!["F1.0", "F1.1", "BW1.0", "BW1.1"],
        ],
    );
    let order = sched(1, 1, vec![vec!["BW0.0", "F0.0"]]);
    for (s, want) in [(&deadlock, "deadlock"), (&order, "order")] {
        let from_validate = validate(s).unwrap_err().to_string();
        let from_simulate = simulate(s, &cfg).unwrap_err().to_string();
        assert_eq!(
            from_simulate,
            format!("invalid schedule: {from_validate}"),
            "{want}"
        );
    }
    assert!(matches!(
        simulate(&order, &cfg),
        Err(Error::Invalid(ValidationError::OrderOnDevice { .. }))
    ));
}
