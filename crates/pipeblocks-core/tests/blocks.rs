//! Building blocks, the V-shape schedules, `zb-v`, `auto` and the frontier.

use pipeblocks_core::block::{self, Block, BlockPass, Finish, SlotLengths};
use pipeblocks_core::generators::rounds;
use pipeblocks_core::improve::polish;
use pipeblocks_core::search::{frontier, search};
use pipeblocks_core::{
    generate, simulate, Budget, Costs, Error, Params, PassKind, Placement, StageCosts,
};
use proptest::prelude::*;

fn unit() -> StageCosts {
    StageCosts::default()
}

fn run(name: &str, p: u32, m: u32) -> (pipeblocks_core::Schedule, pipeblocks_core::SimResult) {
    let s =
        generate(name, &Params::new(p, m).unwrap()).unwrap_or_else(|e| panic!("{name} p={p}: {e}"));
    let r = simulate(&s, &unit()).unwrap();
    (s, r)
}

/// The reference's lower bound on the bubble of a V schedule whose peak is `k` half-chunk
/// activations, in unit passes per device (costs are per pass, so one pass is one time unit at
/// F = B = W = 1).
fn lower_bound_slots(p: u32, k: u32) -> f64 {
    let (p, k) = (p as f64, k as f64);
    3.0 * p - 1.0 - 3.0 * k + (3.0 * p).max(p - 1.0 + 2.0 * (1.0 + ((k + 1.0) / 2.0).floor()))
}

/// Idle time per device.
fn bubble_per_device(r: &pipeblocks_core::SimResult) -> f64 {
    let p = r.busy.len() as f64;
    r.makespan - r.busy.iter().sum::<f64>() / p
}

#[test]
fn peaks_match_the_reference_for_every_p() {
    for p in 2..=32u32 {
        for m in [2 * p, 3 * p] {
            let want = [
                ("v-min", ((p + 4) / 3) as f64),
                ("v-half", ((p + 2) / 2) as f64),
                ("v-zb", p as f64),
                ("zb-v", p as f64),
            ];
            for (name, peak) in want {
                let (_, r) = run(name, p, m);
                assert!(
                    (r.max_peak() - peak).abs() < 1e-9,
                    "{name} p={p} m={m}: peak {} units, expected {peak}",
                    r.max_peak()
                );
            }
        }
    }
}

#[test]
fn bubble_rates_at_p8_m32() {
    let (_, vmin) = run("v-min", 8, 32);
    assert!(vmin.bubble_rate <= 0.124, "v-min {}", vmin.bubble_rate);
    let (_, vhalf) = run("v-half", 8, 32);
    assert!(vhalf.bubble_rate <= 0.082, "v-half {}", vhalf.bubble_rate);
    for name in ["v-zb", "zb-v"] {
        let (_, r) = run(name, 8, 32);
        assert!(r.bubble_rate <= 0.036, "{name} {}", r.bubble_rate);
    }
}

#[test]
fn v_schedules_respect_the_lower_bound_and_auto_reaches_it() {
    let (p, m) = (8, 32);
    for name in ["v-min", "v-half", "v-zb", "zb-v"] {
        let (_, r) = run(name, p, m);
        let k = (r.max_peak() * 2.0).round() as u32;
        let lb = lower_bound_slots(p, k);
        assert!(
            bubble_per_device(&r) >= lb - 1e-9,
            "{name}: bubble {} below the bound {lb}",
            bubble_per_device(&r)
        );
    }
    // auto at V-Min's and V-Half's memory: since the search squeezes the whole V-shape family
    // it reaches the bound itself at both (at 4 units it was one unit pass above it).
    for units in [4.0, 5.0] {
        let c = search(&Params::new(p, m).unwrap(), units).unwrap();
        let k = (c.result.max_peak() * 2.0).round() as u32;
        let lb = lower_bound_slots(p, k);
        let b = bubble_per_device(&c.result);
        assert!(c.result.max_peak() <= units + 1e-9);
        assert!(
            b >= lb - 1e-9 && b <= lb + 1e-9,
            "auto at {units} units ({}): bubble {b} per device, bound {lb}",
            c.family
        );
    }
}

#[test]
fn zb_v_follows_unequal_costs() {
    // Under F=1, B=1.3, W=0.7, c=0.05 the round scheduler's ZB-V keeps every device busy through
    // the steady state (the greedy list scheduler alone left about twice this bubble).
    let mut prm = Params::new(8, 32).unwrap();
    prm = prm.with_costs(StageCosts::uniform(
        Costs::parse("f=1,b=1.3,w=0.7,c=0.05").unwrap(),
    ));
    let s = generate("zb-v", &prm).unwrap();
    let r = simulate(&s, &prm.costs.clone()).unwrap();
    assert!(r.bubble_rate < 0.056, "zb-v bubble {}", r.bubble_rate);
    assert!(r.max_peak() <= 8.0 + 1e-9);
    // ... and at equal costs it is ZB-V's p - 1 forwards of bubble per device.
    let (_, r) = run("zb-v", 8, 32);
    assert!(
        (bubble_per_device(&r) - 7.0).abs() < 1e-9,
        "{}",
        bubble_per_device(&r)
    );
}

#[test]
fn polish_never_lengthens_the_step_nor_breaks_the_limit() {
    let costs = Costs::parse("f=1,b=1.3,w=0.7,c=0.05").unwrap();
    let cfg = StageCosts::uniform(costs);
    for (name, p, m) in [
        ("v-half", 8, 32),
        ("zb-h1", 6, 12),
        ("v-min", 5, 15),
        ("1f1b", 4, 9),
    ] {
        let s = generate(name, &Params::new(p, m).unwrap()).unwrap();
        let before = simulate(&s, &cfg).unwrap();
        let limits = before.peak_activation.clone();
        let (t, after) = polish(s, &cfg, &limits, 500).unwrap();
        assert_eq!(
            simulate(&t, &cfg).unwrap(),
            after,
            "{name}: the result is its simulation"
        );
        assert!(after.makespan <= before.makespan + 1e-9, "{name}");
        for (pk, l) in after.peak_activation.iter().zip(&limits) {
            assert!(pk <= &(l + 1e-9), "{name}: peak {pk} over {l}");
        }
    }
    // v-half under unequal costs has room to gain.
    let s = generate("v-half", &Params::new(8, 32).unwrap()).unwrap();
    let before = simulate(&s, &cfg).unwrap();
    let (_, after) = polish(s, &cfg, &[5.0; 8], 2000).unwrap();
    assert!(
        after.makespan < before.makespan - 0.1,
        "{} -> {}",
        before.makespan,
        after.makespan
    );
}

#[test]
fn one_f_one_b_and_zb_h1_blocks_agree_with_the_direct_generators() {
    for p in 1..=8u32 {
        for m in [1, 2, p, 2 * p + 1, 4 * p] {
            let cfg = unit();
            let (s, r) = block::one_f_one_b(p)
                .build(m, &cfg, Finish::Squeeze)
                .unwrap();
            let d = generate("1f1b", &Params::new(p, m).unwrap()).unwrap();
            assert_eq!(s.lists, d.lists, "1f1b p={p} m={m}");
            let rd = simulate(&d, &cfg).unwrap();
            assert_eq!(r.makespan, rd.makespan);
            let (s, r) = block::zb_h1(p).build(m, &cfg, Finish::Squeeze).unwrap();
            let d = generate("zb-h1", &Params::new(p, m).unwrap()).unwrap();
            let rd = simulate(&d, &cfg).unwrap();
            assert_eq!(s.lists, d.lists, "zb-h1 p={p} m={m}");
            assert!((r.bubble_rate - rd.bubble_rate).abs() < 1e-12);
            assert_eq!(r.max_peak(), rd.max_peak());
        }
    }
}

#[test]
fn zb_h1_keeps_its_figures_at_equal_costs() {
    let (_, r) = run("zb-h1", 8, 32);
    // (p-1)(F+B-W) of bubble per device over 3m + p - 1 at F = B = W.
    assert!(
        (r.bubble_rate - 7.0 / 103.0).abs() < 1e-9,
        "{}",
        r.bubble_rate
    );
    assert_eq!(r.max_peak(), 8.0);
}

#[test]
fn zb_h1_uses_unequal_costs_without_losing_to_the_direct_schedule() {
    let costs = Costs::parse("f=1,b=1.3,w=0.7,c=0.05").unwrap();
    let mut prm = Params::new(8, 32).unwrap();
    prm.costs = StageCosts::uniform(costs);
    let cfg = StageCosts::uniform(costs);
    let s = generate("zb-h1", &prm).unwrap();
    let r = simulate(&s, &cfg).unwrap();
    let direct =
        pipeblocks_core::generators::classic::zero_bubble_lagged("zb-h1", &prm, |i| 7 - i, |i| i)
            .unwrap();
    let rd = simulate(&direct, &cfg).unwrap();
    assert!(r.makespan <= rd.makespan + 1e-9);
    assert!(r.max_peak() <= 8.0 + 1e-9);
}

#[test]
fn auto_under_unequal_costs_stays_in_budget_and_beats_the_fixed_patterns() {
    let costs = Costs::parse("f=1,b=1.3,w=0.7,c=0.05").unwrap();
    let cfg = StageCosts::uniform(costs);
    // The fixed V-Min pattern loses a bubble in every repeat when the costs differ (the issue's
    // "about 0.33"); auto must stay within each budget, beat the fixed pattern of that memory and
    // reach the issue's figures at 0.625x and 1x (0.5x is still above its 0.15).
    for (k, fixed, at_most) in [
        (0.5, "v-min", 0.21),
        (0.625, "v-half", 0.128),
        (1.0, "v-zb", 0.053),
    ] {
        let mut prm = Params::new(8, 32).unwrap();
        prm.costs = StageCosts::uniform(costs);
        prm = prm.with_budget(Budget::Of1f1b(k));
        let s = generate("auto", &prm).unwrap();
        let r = simulate(&s, &cfg).unwrap();
        assert!(
            r.max_peak() <= 8.0 * k + 1e-9,
            "auto at {k}x: peak {}",
            r.max_peak()
        );
        assert!(
            r.bubble_rate <= at_most,
            "auto at {k}x: bubble {}",
            r.bubble_rate
        );
        let f = simulate(&generate(fixed, &prm).unwrap(), &cfg).unwrap();
        if fixed == "v-min" {
            assert!(
                (f.bubble_rate - 0.327).abs() < 0.005,
                "v-min {}",
                f.bubble_rate
            );
        }
        assert!(
            r.bubble_rate <= f.bubble_rate + 1e-9,
            "auto at {k}x: {} vs {fixed} {}",
            r.bubble_rate,
            f.bubble_rate
        );
    }
}

#[test]
fn more_memory_never_gives_auto_a_worse_schedule() {
    // A schedule found at a budget also fits every larger one, so the search must not answer
    // worse with more memory; at 4.5 units it once did (0.258 against 0.247 at 4), because the
    // blocks it squeezed and reordered changed with the budget. Ranked as the search ranks:
    // recomputation (below V-Min's memory) counts as idle time, not work.
    let costs = Costs::parse("f=1,b=1.3,w=0.7,c=0.05").unwrap();
    let cfg = StageCosts::uniform(costs);
    let mut last = f64::INFINITY;
    for half_units in 6..=16u32 {
        let units = f64::from(half_units) / 2.0;
        let mut prm = Params::new(8, 32).unwrap();
        prm.costs = StageCosts::uniform(costs);
        prm = prm.with_budget(Budget::Units(units));
        let r = simulate(&generate("auto", &prm).unwrap(), &cfg).unwrap();
        assert!(
            r.max_peak() <= units + 1e-9,
            "{units} units: peak {}",
            r.max_peak()
        );
        let bubble = prm.objective.bubble(&r);
        assert!(
            bubble <= last + 1e-9,
            "{units} units: bubble {bubble} after {last} with less memory"
        );
        last = bubble;
    }
}

#[test]
fn named_block_bounds_cover_the_simulated_peak() {
    for p in 1..=12u32 {
        for name in block::NAMED {
            let Ok(b) = block::named(name, p) else {
                continue;
            };
            let info = b.analyse().unwrap();
            for m in [1, p, 2 * p + 1, 5 * p] {
                for finish in [Finish::Squeeze, Finish::Reorder] {
                    let (_, r) = b.build(m, &unit(), finish).unwrap();
                    for d in 0..p as usize {
                        assert!(
                            r.peak_activation[d] <= info.memory_bound[d] + 1e-9,
                            "{name} p={p} m={m} device {d}: peak {} > bound {}",
                            r.peak_activation[d],
                            info.memory_bound[d]
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn lifespans_and_bound_of_1f1b() {
    let info = block::one_f_one_b(4).analyse().unwrap();
    assert_eq!(info.lifespan, vec![12, 9, 6, 3]);
    assert_eq!(info.memory_bound, vec![4.0, 3.0, 2.0, 1.0]);
    assert_eq!(info.busy, vec![3; 4]);
}

fn tiny(passes: Vec<(PassKind, u32, u32)>, period: u32) -> Block {
    Block {
        name: "tiny".into(),
        devices: 2,
        placement: Placement::Sequential,
        period,
        slots: SlotLengths::default(),
        passes: passes
            .into_iter()
            .map(|(kind, stage, offset)| BlockPass {
                kind,
                stage,
                offset,
            })
            .collect(),
    }
}

#[test]
fn colliding_repeats_are_refused_with_a_clear_error() {
    // F1 at slot 1 and BW1 at slot 2..4: slot 4 ≡ 1 (mod 3) collides with F1's next repeat.
    let b = tiny(
        vec![
            (PassKind::F, 0, 0),
            (PassKind::F, 1, 1),
            (PassKind::BW, 1, 3),
            (PassKind::BW, 0, 5),
        ],
        3,
    );
    let e = b.analyse().unwrap_err();
    assert!(matches!(e, Error::Config { .. }));
    let msg = e.to_string();
    assert!(msg.contains("collide") && msg.contains("device 1"), "{msg}");
}

#[test]
fn broken_dependencies_and_missing_passes_are_refused() {
    let early = tiny(
        vec![
            (PassKind::F, 0, 0),
            (PassKind::F, 1, 0),
            (PassKind::BW, 1, 2),
            (PassKind::BW, 0, 4),
        ],
        3,
    );
    assert!(early.analyse().unwrap_err().to_string().contains("F1"));
    let missing = tiny(
        vec![
            (PassKind::F, 0, 0),
            (PassKind::F, 1, 1),
            (PassKind::BW, 1, 2),
        ],
        3,
    );
    assert!(missing
        .analyse()
        .unwrap_err()
        .to_string()
        .contains("stage 0 needs a backward"));
}

#[test]
fn block_json_round_trips_and_checks_its_header() {
    let b = block::v_half(4).unwrap();
    let text = b.to_json();
    assert_eq!(Block::from_json(&text).unwrap(), b);
    let wrong = text.replace("pipeblocks-block", "something-else");
    assert!(Block::from_json(&wrong).is_err());
    let v2 = text.replace("\"version\": 1", "\"version\": 2");
    assert!(Block::from_json(&v2)
        .unwrap_err()
        .to_string()
        .contains("version 2"));
    // Slot lengths default when left out.
    let short = r#"{"format":"pipeblocks-block","version":1,"name":"x","devices":1,
        "placement":{"kind":"sequential"},"period":3,
        "passes":[{"kind":"F","stage":0,"offset":0},{"kind":"BW","stage":0,"offset":1}]}"#;
    let b = Block::from_json(short).unwrap();
    assert_eq!(b.slots, SlotLengths::default());
    let s = b.expand(3).unwrap();
    pipeblocks_core::validate(&s).unwrap();
}

#[test]
fn w_delays_spend_memory_without_collisions() {
    let b = block::v_min(6).unwrap();
    let before = b.analyse().unwrap();
    let act = vec![0.5; 12];
    let after = b.delay_ws(6.0, block::DelaySplit::Last, &act).unwrap();
    let info = after.analyse().unwrap();
    assert!(info.max_bound() <= 6.0 + 1e-9);
    assert!(info.max_bound() > before.max_bound());
}

#[test]
fn a_longer_period_lowers_the_bound_and_refuses_less_than_six_slots() {
    // V-Min's steps, repeated every 8 slots instead of 6 (two slots later to the backward, so
    // the repeats do not collide): the bound falls below V-Min's.
    let p = 8;
    let o6 = block::VOffsets {
        f0: 1,
        f1: 1,
        b1: 1,
        b0: 1,
        gap_last: 0,
        gap_turn: 0,
        period: 6,
    };
    let o8 = block::VOffsets {
        period: 8,
        gap_last: 2,
        ..o6
    };
    let i6 = block::v_shape("six", p, o6).unwrap().analyse().unwrap();
    assert_eq!(i6, block::v_min(p).unwrap().analyse().unwrap());
    let b8 = block::v_shape("eight", p, o8).unwrap();
    assert_eq!(b8.period, 8);
    let i8 = b8.analyse().unwrap();
    assert!(
        i8.max_bound() < i6.max_bound(),
        "{} vs {}",
        i8.max_bound(),
        i6.max_bound()
    );
    let s = b8.expand(32).unwrap();
    let r = simulate(&s, &unit()).unwrap();
    assert!(r.max_peak() <= i8.max_bound() + 1e-9);
    let e = block::v_shape("five", p, block::VOffsets { period: 5, ..o6 }).unwrap_err();
    assert!(e.to_string().contains("at least 6"), "{e}");
}

#[test]
fn auto_below_v_mins_memory_uses_longer_periods() {
    // At 3 units (V-Min needs 4 at p = 8) the period-6 blocks do not fit; the list scheduler
    // alone gave 0.317 there, a block repeated every 8 slots gives under 0.2.
    let c = search(&Params::new(8, 32).unwrap(), 3.0).unwrap();
    assert!(c.result.max_peak() <= 3.0 + 1e-9);
    assert!(
        c.result.bubble_rate < 0.2,
        "{} ({})",
        c.result.bubble_rate,
        c.family
    );
    assert!(c.family.contains("period 8"), "{}", c.family);
}

#[test]
fn frontier_improves_with_memory_and_stays_in_budget() {
    let pts = frontier(&Params::new(4, 8).unwrap(), |_, _| {}).unwrap();
    assert!(!pts.is_empty());
    for w in pts.windows(2) {
        assert!(w[1].budget > w[0].budget);
        assert!(w[1].bubble_rate < w[0].bubble_rate);
    }
    for pt in &pts {
        assert!(pt.peak <= pt.budget + 1e-9);
        assert!(pt.budget <= 8.0 + 1e-9);
    }
}

#[test]
fn too_small_a_budget_is_a_clear_config_error() {
    let mut prm = Params::new(4, 8).unwrap();
    prm = prm.with_budget(Budget::Units(0.25));
    let e = generate("auto", &prm).unwrap_err();
    assert!(matches!(e, Error::Config { .. }), "{e}");
    assert!(e.to_string().contains("raise it"), "{e}");
    assert_eq!(
        e.suggestion().map(|f| f.param),
        Some(pipeblocks_core::error::Param::Budget)
    );
    // Above half a unit but below one: a V-shape stage holds 0.5 units, yet a device holds both
    // of its stages for a microbatch at once, so nothing holding everything fits below 1 unit;
    // recomputing every stage of the looped schedule with four chunks does.
    prm = prm.with_budget(Budget::Units(0.9));
    let s = generate("auto", &prm).unwrap();
    assert_eq!(
        s.placement,
        pipeblocks_core::Placement::Looped { chunks: 4 }
    );
    let r = simulate(&s, &StageCosts::default()).unwrap();
    assert!(r.max_peak() <= 0.9 + 1e-9, "{}", r.max_peak());
    assert!(pipeblocks_core::search::search_on_device(&prm, 0.9)
        .unwrap_err()
        .to_string()
        .contains("at least 1"));
    prm = prm.with_budget(Budget::Units(1.0));
    let s = generate("auto", &prm).unwrap();
    let r = simulate(&s, &StageCosts::default()).unwrap();
    assert!(r.max_peak() <= 1.0 + 1e-9, "{}", r.max_peak());
}

#[test]
fn a_budget_beyond_every_microbatch_searches_as_m_units() {
    // A device never holds more than m units (every microbatch on all its stages), so a huge
    // budget must answer what m units answer (it used to spend time growing with the budget on
    // W delays, and hang at 1e9 units).
    let mut prm = Params::new(4, 8).unwrap();
    prm = prm.with_costs(StageCosts::uniform(
        Costs::parse("f=1,b=1.3,w=0.7,c=0.05").unwrap(),
    ));
    let cfg = prm.costs.clone();
    let run = |budget: Budget| {
        let s = generate("auto", &prm.clone().with_budget(budget)).unwrap();
        simulate(&s, &cfg).unwrap()
    };
    let at_m = run(Budget::Units(8.0));
    for huge in [Budget::Units(1e12), Budget::Of1f1b(1e300)] {
        let r = run(huge);
        assert!(
            (r.makespan - at_m.makespan).abs() < 1e-9,
            "{} vs {}",
            r.makespan,
            at_m.makespan
        );
        assert!(r.max_peak() <= 8.0 + 1e-9);
    }
}

#[test]
fn even_w_delays_share_the_slack_one_period_at_a_time() {
    let b = block::v_min(4).unwrap();
    let info = b.analyse().unwrap();
    let limit = info.max_bound() + 5.0 * info.activation;
    let act = vec![info.activation; 8];
    let d = b.delay_ws(limit, block::DelaySplit::Even, &act).unwrap();
    // Each device has two Ws; its spare activations go one period at a time from the later W:
    // the later gets the odd one (on the device with the highest bound, 3 of 5 periods).
    let top = (0..4)
        .max_by(|&a, &b| info.memory_bound[a].total_cmp(&info.memory_bound[b]))
        .unwrap() as u32;
    for dev in 0..4 {
        let mut ws: Vec<(u32, u32)> = b
            .passes
            .iter()
            .filter(|q| q.kind == PassKind::W && b.placement.device_of(q.stage, 4) == dev)
            .map(|q| (q.offset, q.stage))
            .collect();
        ws.sort();
        let slack =
            ((limit - info.memory_bound[dev as usize]) / info.activation + 1e-9).floor() as u32;
        let moved = |stage: u32| {
            let at = |blk: &Block| {
                blk.passes
                    .iter()
                    .find(|q| q.kind == PassKind::W && q.stage == stage)
                    .unwrap()
                    .offset
            };
            (at(&d) - at(&b)) / b.period
        };
        assert_eq!(moved(ws[1].1), slack - slack / 2, "device {dev}");
        assert_eq!(moved(ws[0].1), slack / 2, "device {dev}");
        if dev == top {
            assert_eq!((moved(ws[1].1), moved(ws[0].1)), (3, 2));
        }
    }
    // A huge limit is capped, without overflowing the offsets.
    let h = b.delay_ws(1e300, block::DelaySplit::Even, &act).unwrap();
    assert!(h.passes.iter().all(|q| q.offset < u32::MAX / 2));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]

    #[test]
    fn block_schedules_validate_or_refuse(p in 1u32..=16, m in 1u32..=64) {
        for name in ["v-min", "v-half", "v-zb", "zb-v"] {
            match generate(name, &Params::new(p, m).unwrap()) {
                Ok(s) => {
                    let r = simulate(&s, &unit()).unwrap();
                    prop_assert!(r.makespan > 0.0);
                }
                Err(Error::Config { why: msg, .. }) => prop_assert!(!msg.is_empty()),
                Err(e) => prop_assert!(false, "{name} p={p} m={m}: {e}"),
            }
        }
    }

    #[test]
    fn every_v_block_bound_covers_its_simulated_peak(
        p in 1u32..=10,
        m in 1u32..=30,
        period in 6u32..=12,
        limit in 1.0f64..12.0,
        f in 0.2f64..2.0,
        b in 0.2f64..2.0,
        w in 0.1f64..1.5,
    ) {
        // The bound holds for any order-keeping squeeze: memory follows the device order only.
        let cfg = StageCosts::uniform(Costs { f, b, w, bw: None, comm: 0.05, overlap: 1.0, r: None, keep: None, offload: None, selective: None });
        let family = block::v_shape_family(p, &vec![0.5; 2 * p as usize], limit, 2, 2, period);
        for x in family.iter().filter(|x| x.offsets.period == period).take(4) {
            let (o, info) = (x.offsets, &x.info);
            prop_assert!(info.max_bound() <= limit + 1e-9);
            let s = x.block.expand(m).unwrap();
            let r = simulate(&s, &cfg).unwrap();
            prop_assert!(r.max_peak() <= info.max_bound() + 1e-9, "{o:?}: peak {} over bound {}", r.max_peak(), info.max_bound());
        }
    }

    #[test]
    fn round_scheduler_is_complete_valid_and_within_its_limit(
        p in 1u32..=10,
        m in 1u32..=24,
        extra in 0u32..=20,
        f in 0.2f64..2.0,
        b in 0.2f64..2.0,
        w in 0.1f64..1.5,
        c in 0.0f64..0.3,
        refine in 0usize..=2,
    ) {
        let limit = (2 + extra) as f64 / 2.0;
        let prm = Params::new(p, m)
            .unwrap()
            .with_costs(StageCosts::uniform(Costs { f, b, w, bw: None, comm: c, overlap: 1.0, r: None, keep: None, offload: None, selective: None }));
        let cfg = StageCosts::uniform(Costs { f: 2.0 * f, b: 2.0 * b, w: 2.0 * w, bw: None, comm: c, overlap: 1.0, r: None, keep: None, offload: None, selective: None });
        for o in rounds::variants(&vec![limit; p as usize]) {
            for s in rounds::refined(&prm, o, refine) {
                // simulate validates: every pass once, on its device, dependency-safe, no deadlock.
                let r = simulate(&s, &cfg).unwrap();
                prop_assert_eq!(s.num_passes(), 6 * (p * m) as usize);
                prop_assert!(r.max_peak() <= limit + 1e-9, "peak {} over {limit} units", r.max_peak());
            }
        }
    }

    #[test]
    fn auto_never_exceeds_its_budget(p in 1u32..=12, m in 1u32..=40, k in 0.2f64..2.0) {
        let mut prm = Params::new(p, m).unwrap();
        prm = prm.with_costs(StageCosts::uniform(Costs::parse("f=1,b=1.3,w=0.7,c=0.05").unwrap()));
        prm = prm.with_budget(Budget::Of1f1b(k));
        match generate("auto", &prm) {
            Ok(s) => {
                let r = simulate(&s, &prm.costs).unwrap();
                prop_assert!(r.max_peak() <= k * p.min(m) as f64 + 1e-9);
            }
            Err(Error::Config { why: msg, .. }) => prop_assert!(msg.contains("memory")),
            Err(e) => prop_assert!(false, "p={p} m={m} k={k}: {e}"),
        }
    }
}
