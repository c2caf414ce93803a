//! Per-stage costs: every generator under uneven stages, the engine against an independent
//! longest-path computation, `auto` and the frontier on a heavier last stage, and the cost file.

use pipeblocks_core::error::{Error, Param};
use pipeblocks_core::format::stage_costs;
use pipeblocks_core::params::one_f_one_b_peak;
use pipeblocks_core::registry::registry;
use pipeblocks_core::search::frontier;
use pipeblocks_core::{
    generate, simulate, Budget, Params, Pass, PassKind, Schedule, SimResult, StageCost, StageCosts,
};
use proptest::prelude::*;
use std::collections::HashMap;

fn stage(f: f64, b: f64, w: f64, activation: f64) -> StageCost {
    StageCost {
        f,
        b,
        w,
        bw: None,
        activation,
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
    }
}

/// The makespan of `s` under `costs` as the longest path through its passes, computed apart from
/// the engine: a pass starts when its device's previous pass and its inputs (plus the link's
/// latency across devices) have ended; passes are settled in any order that respects both. An
/// overlapped pair starts when both halves' inputs are there and lasts the pair's cost; a
/// lane's first and last stages take no input from the lane before or after.
fn longest_path(s: &Schedule, costs: &StageCosts) -> f64 {
    let t = costs.for_placement(&s.placement, s.devices).unwrap();
    let lane = s.placement.lane_stages(s.devices);
    let recomputed: std::collections::HashSet<(u32, u32)> = s
        .lists
        .iter()
        .flatten()
        .filter(|q| q.kind == PassKind::R)
        .map(|q| (q.stage, q.mb))
        .collect();
    let mut end: HashMap<Pass, f64> = HashMap::new();
    let mut pos = vec![0usize; s.lists.len()];
    let grad = |end: &HashMap<Pass, f64>, st: u32, mb: u32| {
        end.get(&Pass::b(st, mb))
            .or_else(|| end.get(&Pass::bw(st, mb)))
            .copied()
    };
    let across = |a: u32, b: u32| {
        if s.device_of(a) != s.device_of(b) {
            t.comm[a.min(b) as usize]
        } else {
            0.0
        }
    };
    // When the inputs of `q` have all arrived, or `None` while one is missing.
    let ready = |end: &HashMap<Pass, f64>, q: Pass| -> Option<f64> {
        let (st, mb) = (q.stage, q.mb);
        let inputs: Vec<Option<f64>> = match q.kind {
            PassKind::F if st % lane != 0 => {
                vec![end
                    .get(&Pass::f(st - 1, mb))
                    .map(|e| e + across(st - 1, st))]
            }
            PassKind::F => vec![],
            PassKind::B | PassKind::BW => {
                let mut v = vec![end.get(&Pass::f(st, mb)).copied()];
                if (st + 1) % lane != 0 {
                    v.push(grad(end, st + 1, mb).map(|e| e + across(st, st + 1)));
                }
                if recomputed.contains(&(st, mb)) {
                    v.push(end.get(&Pass::r(st, mb)).copied());
                }
                v
            }
            PassKind::W => vec![end.get(&Pass::b(st, mb)).copied()],
            PassKind::R => vec![end.get(&Pass::f(st, mb)).copied()],
            PassKind::O | PassKind::L => panic!("this reference simulator has no host links"),
        };
        inputs
            .into_iter()
            .try_fold(0.0, |a: f64, x| x.map(|x| a.max(x)))
    };
    loop {
        let mut progressed = false;
        for d in 0..s.lists.len() {
            while let Some(&q) = s.lists[d].get(pos[d]) {
                let pair = s.lists[d]
                    .get(pos[d] + 1)
                    .copied()
                    .filter(|&n| s.pairs.contains(&[q, n]));
                let free = if pos[d] > 0 {
                    end[&s.lists[d][pos[d] - 1]]
                } else {
                    0.0
                };
                let Some(mut start) = ready(&end, q) else {
                    break;
                };
                let len = match pair {
                    Some(n) => {
                        let Some(r) = ready(&end, n) else {
                            break;
                        };
                        start = start.max(r);
                        t.pair(q, n)
                    }
                    None => t.duration(q.kind, q.stage),
                };
                let start = start.max(free);
                end.insert(q, start + len);
                pos[d] += 1;
                if let Some(n) = pair {
                    end.insert(n, start + len);
                    pos[d] += 1;
                }
                progressed = true;
            }
        }
        if !progressed {
            break;
        }
    }
    assert!(
        (0..s.lists.len()).all(|d| pos[d] == s.lists[d].len()),
        "the lists block"
    );
    end.values().cloned().fold(0.0, f64::max)
}

/// The memory every generator promises, per device: auto its budget, the fixed patterns what
/// they hold (`None`: no promise beyond the schedule itself).
fn promise(name: &str, prm: &Params, s: &Schedule) -> Option<Vec<f64>> {
    let t = prm.costs.for_placement(&s.placement, s.devices).unwrap();
    let need = t.need(&s.placement, s.devices);
    let p = prm.devices() as f64;
    let m = prm.microbatches() as f64;
    match name {
        "auto" => {
            let units = prm.budget.unwrap().units_for(prm).unwrap();
            Some(vec![units; need.len()])
        }
        "zb-h1" | "zb-v" | "1f1b" => Some(need.iter().map(|n| p.min(m) * n).collect()),
        "zb-h2" => Some(
            need.iter()
                .map(|n| (2.0 * p - 1.0).min(m + p - 1.0) * n)
                .collect(),
        ),
        "gpipe" | "bfs" => Some(need.iter().map(|n| m * n).collect()),
        "v-min" | "v-half" | "v-zb" => {
            // The block's highest per-device memory bound under the true activations, on
            // every device.
            let b = pipeblocks_core::block::named(name, prm.devices()).unwrap();
            let bound = b.bound(&b.analyse().unwrap(), &t.act);
            let cap = bound.iter().cloned().fold(0.0, f64::max);
            Some(vec![cap; bound.len()])
        }
        _ => None,
    }
}

fn within(r: &SimResult, limit: &[f64]) -> bool {
    r.peak_activation
        .iter()
        .zip(limit)
        .all(|(a, l)| *a <= l + 1e-9)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Random per-stage costs (first and last stage up to 2x heavier, random F/B/W, latency,
    /// activations and release at B): every generator's schedule validates, keeps the memory
    /// it promises under the memory model that reports it, and the engine's makespan is the
    /// longest path through its passes.
    #[test]
    fn every_generator_under_uneven_stages(
        p in 1u32..=5,
        m in 1u32..=10,
        first in 1.0f64..2.0,
        last in 1.0f64..2.0,
        fbw in proptest::collection::vec((0.3f64..2.0, 0.3f64..2.0, 0.1f64..1.5, 0.5f64..1.5), 10),
        comm in 0.0f64..0.3,
        release in 0.0f64..0.6,
        budget in 1.0f64..2.0,
    ) {
        let n = 2 * p as usize;
        let table: Vec<StageCost> = (0..n)
            .map(|i| {
                let (f, b, w, a) = fbw[i % fbw.len()];
                let k = if i == 0 { first } else if i + 1 == n { last } else { 1.0 };
                stage(k * f, k * b, k * w, if i + 1 == n { last * a } else { a })
            })
            .collect();
        let costs = StageCosts::table(table, comm, release).unwrap();
        for g in registry() {
            let mut prm = Params::new(p, m).unwrap().with_costs(costs.clone());
            if g.name == "auto" {
                prm = prm.with_budget(Budget::Of1f1b(budget));
            }
            let s = match generate(g.name, &prm) {
                Ok(s) => s,
                Err(Error::Config { .. }) => continue,
                Err(e) => return Err(TestCaseError::fail(format!("{}: {e}", g.name))),
            };
            let r = simulate(&s, &costs).unwrap();
            let lp = longest_path(&s, &costs);
            prop_assert!((r.makespan - lp).abs() <= 1e-9 * lp.max(1.0), "{}: engine {} vs longest path {}", g.name, r.makespan, lp);
            if let Some(limit) = promise(g.name, &prm, &s) {
                prop_assert!(within(&r, &limit), "{}: peaks {:?} over {:?}", g.name, r.peak_activation, limit);
            }
        }
    }
}

/// Four stages, the last one 1.5x the work and 1.3x the activation of the others.
fn heavy_last() -> StageCosts {
    let mut t = vec![stage(1.0, 1.1, 0.9, 1.0); 4];
    t[3] = stage(1.5, 1.65, 1.35, 1.3);
    StageCosts::table(t, 0.05, 0.0).unwrap()
}

#[test]
fn auto_uses_the_heavier_last_stage_and_beats_assuming_alike_stages() {
    let truth = heavy_last();
    let alike = truth.flattened().expect("the stages differ");
    let mut strictly_better = 0;
    for (p, m, k) in [(4, 16, 1.0), (4, 8, 1.0), (4, 16, 1.5), (4, 12, 0.75)] {
        let prm = Params::new(p, m).unwrap().with_budget(Budget::Of1f1b(k));
        let limit = k * one_f_one_b_peak(p, m, &truth).unwrap();
        let ours = generate("auto", &prm.clone().with_costs(truth.clone())).unwrap();
        let naive = generate("auto", &prm.clone().with_costs(alike.clone())).unwrap();
        assert_ne!(
            ours.lists, naive.lists,
            "p={p} m={m} {k}x: the same schedule"
        );
        let r = simulate(&ours, &truth).unwrap();
        let rn = simulate(&naive, &truth).unwrap();
        assert!(
            r.max_peak() <= limit + 1e-9,
            "over the budget: {}",
            r.max_peak()
        );
        // Scored on the true costs, never worse; the naive one may not even fit.
        if rn.max_peak() <= limit + 1e-9 {
            assert!(
                r.makespan <= rn.makespan + 1e-9,
                "{} vs {}",
                r.makespan,
                rn.makespan
            );
        }
        if r.makespan < rn.makespan - 1e-9 || rn.max_peak() > limit + 1e-9 {
            strictly_better += 1;
        }
    }
    assert!(
        strictly_better >= 2,
        "better in {strictly_better} of 4 cases"
    );
}

#[test]
fn the_frontier_follows_the_true_stages() {
    let truth = heavy_last();
    let prm = Params::new(4, 8).unwrap().with_costs(truth.clone());
    let pts = frontier(&prm, |_, _| {}).unwrap();
    let base = one_f_one_b_peak(4, 8, &truth).unwrap();
    assert!(
        (base - 4.0).abs() < 1e-9,
        "1F1B holds 4 microbatches of stage 0: {base}"
    );
    for w in pts.windows(2) {
        assert!(w[1].bubble_rate < w[0].bubble_rate);
    }
    for pt in &pts {
        assert!(pt.peak <= pt.budget + 1e-9, "{pt:?}");
    }
    let alike = Params::new(4, 8)
        .unwrap()
        .with_costs(truth.flattened().unwrap());
    let naive = frontier(&alike, |_, _| {}).unwrap();
    assert_ne!(
        pts.iter().map(|p| p.family.clone()).collect::<Vec<_>>(),
        naive.iter().map(|p| p.family.clone()).collect::<Vec<_>>()
    );
}

#[test]
fn a_table_splits_and_merges_keeping_the_model() {
    let t = vec![
        stage(1.0, 2.0, 3.0, 1.0),
        stage(2.0, 2.0, 2.0, 0.5),
        stage(1.0, 1.0, 1.0, 1.5),
        stage(4.0, 1.0, 1.0, 1.0),
    ];
    let c = StageCosts::table(t, 0.1, 0.0).unwrap();
    let total = |s: u32| {
        let r = c.resolve(s, 4).unwrap();
        let work: f64 = r.work().iter().sum();
        let act: f64 = r.act.iter().sum();
        (work, act, r.comm.len())
    };
    for s in [1, 2, 4, 8, 12] {
        let (work, act, links) = total(s);
        assert!((work - 21.0).abs() < 1e-9, "S={s}: work {work}");
        // 4 stages of 1 unit each on 4 devices: the model's activation is 4 units.
        assert!((act - 4.0).abs() < 1e-9, "S={s}: activation {act}");
        assert_eq!(links, s as usize - 1);
    }
    let e = c.resolve(3, 3).unwrap_err();
    assert!(
        matches!(
            e,
            Error::StageCount {
                table: 4,
                stages: 3
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("describe 4 stages"), "{e}");
}

#[test]
fn one_f_one_b_peak_follows_the_activations() {
    let mut t = vec![stage(1.0, 1.0, 1.0, 1.0); 4];
    t[0].activation = 2.0;
    let c = StageCosts::table(t, 0.0, 0.0).unwrap();
    // Device 0 holds min(p, m) microbatches of twice a uniform stage's activation.
    let want = 4.0 * 2.0;
    assert!((one_f_one_b_peak(4, 8, &c).unwrap() - want).abs() < 1e-9);
    assert_eq!(one_f_one_b_peak(4, 2, &StageCosts::default()).unwrap(), 2.0);
}

#[test]
fn the_cost_file_reads_and_refuses_clearly() {
    let good = r#"{"format": "pipeblocks-stage-costs", "version": 1, "comm": 0.05,
        "stages": [{"f": 1, "b": 1.1, "w": 0.9, "activation": 1.0},
                   {"f": 1.5, "b": 1.6, "w": 1.4, "b_release": 0.2, "comm": 0.1}]}"#;
    let c = stage_costs::read(good).unwrap();
    assert_eq!(c.table_stages(), Some(2));
    let t = c.resolve(2, 2).unwrap();
    assert_eq!(t.comm, vec![0.05]);
    assert_eq!(t.release, vec![0.0, 0.2]);
    // Written and read back, the same table.
    let rows = [stage(1.0, 1.1, 0.9, 1.0), stage(1.5, 1.6, 1.4, 2.0)];
    let again = stage_costs::read(&stage_costs::write(&rows, 0.05, 0.1)).unwrap();
    assert_eq!(again, StageCosts::table(rows.to_vec(), 0.05, 0.1).unwrap());
    for (bad, needle) in [
        (
            r#"{"format": "other", "version": 1, "stages": []}"#,
            "expected `pipeblocks-stage-costs`",
        ),
        (
            r#"{"format": "pipeblocks-stage-costs", "version": 2, "stages": []}"#,
            "version 2",
        ),
        (
            r#"{"format": "pipeblocks-stage-costs", "version": 1, "stages": []}"#,
            "no stages",
        ),
        (
            r#"{"format": "pipeblocks-stage-costs", "version": 1, "stages": [{"f": -1, "b": 1, "w": 1}]}"#,
            "stage 0",
        ),
        (
            r#"{"format": "pipeblocks-stage-costs", "version": 1, "stages": [{"f": 1, "b": 1e999, "w": 1}]}"#,
            "stage costs",
        ),
        (
            r#"{"format": "pipeblocks-stage-costs", "version": 1, "stages": [{"f": 1, "b": 1}]}"#,
            "missing field `w`",
        ),
        (
            r#"{"format": "pipeblocks-stage-costs", "version": 1, "stages": [{"f": 1, "b": 1, "w": 1, "fwd": 2}]}"#,
            "unknown field `fwd`",
        ),
        (
            r#"{"format": "pipeblocks-stage-costs", "version": 1, "stages": [{"f": 1, "b": 1, "w": 1, "b_release": 2}]}"#,
            "fraction",
        ),
        (
            r#"{"format": "pipeblocks-stage-costs", "version": 1, "stages": [{"f": 0, "b": 0, "w": 0}]}"#,
            "costs 0",
        ),
        ("[1, 2", "stage costs"),
    ] {
        let e = stage_costs::read(bad).unwrap_err().to_string();
        assert!(e.contains(needle), "{bad}: {e}");
        assert!(!e.contains('\n'), "{e}");
    }
    let e = StageCosts::default().with_b_release(1.5).unwrap_err();
    assert_eq!(e.suggestion().map(|f| f.param), Some(Param::BRelease));
}

#[test]
fn b_release_is_honoured_by_the_list_schedulers() {
    // B frees 60% at once: the list scheduler admits forwards against the memory that the
    // simulator reports, so it runs more of them within the same limit and stays within it.
    use pipeblocks_core::generators::greedy::{list_schedule, GreedyOptions};
    use pipeblocks_core::Placement;
    let o = GreedyOptions {
        name: "greedy".into(),
        placement: Placement::Sequential,
        limit: vec![2.5; 4],
        pace: None,
        split_backward: true,
        max_in_flight: None,
        reserve: false,
    };
    let none = Params::new(4, 16).unwrap();
    let freed = StageCosts::default().with_b_release(0.6).unwrap();
    let some = none.clone().with_costs(freed.clone());
    let (a, b) = (
        list_schedule(&none, &o).unwrap(),
        list_schedule(&some, &o).unwrap(),
    );
    assert!(a.lists != b.lists, "the release changed nothing");
    let (ra, rb) = (
        simulate(&a, &none.costs).unwrap(),
        simulate(&b, &freed).unwrap(),
    );
    assert!(ra.max_peak() <= 2.5 + 1e-9 && rb.max_peak() <= 2.5 + 1e-9);
    assert!(
        rb.makespan < ra.makespan,
        "{} vs {}",
        rb.makespan,
        ra.makespan
    );
    // auto plans with the same model it reports.
    let prm = some.with_budget(Budget::Units(2.5));
    let r = simulate(&generate("auto", &prm).unwrap(), &freed).unwrap();
    assert!(r.max_peak() <= 2.5 + 1e-9, "{}", r.max_peak());
}
