//! Activation offload as a schedule choice (issue 22): O and L transfers run on each device's
//! host link beside its computation, free and hold memory when they say, validate like any
//! pass, and take `auto` and the frontier below what a schedule holds on its devices.

use pipeblocks_core::engine::{Net, SimResult};
use pipeblocks_core::model::{DeviceSpec, ModelCosts, ModelSpec};
use pipeblocks_core::offload::{fit, offloaded, with_offload};
use pipeblocks_core::recompute::with_recompute;
use pipeblocks_core::search::{search, search_on_device};
use pipeblocks_core::{
    generate, simulate, validate, Costs, Params, Pass, PassKind, Schedule, StageCosts,
    ValidationError,
};
use proptest::prelude::*;

fn costs(text: &str) -> StageCosts {
    StageCosts::uniform(Costs::parse(text).unwrap())
}

/// `s` with `(stage, mb)` offloaded by hand: O right after the F, L right before the pass that
/// needs the activation (its R, or its backward).
fn offload_by_hand(s: &Schedule, stage: u32, mb: u32) -> Schedule {
    let mut out = s.clone();
    for list in &mut out.lists {
        let Some(i) = list.iter().position(|q| *q == Pass::f(stage, mb)) else {
            continue;
        };
        list.insert(i + 1, Pass::o(stage, mb));
        let j = list
            .iter()
            .position(|q| {
                q.stage == stage
                    && q.mb == mb
                    && matches!(q.kind, PassKind::R | PassKind::B | PassKind::BW)
            })
            .unwrap();
        list.insert(j, Pass::l(stage, mb));
    }
    out
}

/// The peak activation of each device recomputed from the simulated times alone, by the rules
/// of the memory model: an F allocates what it leaves at its start (its `keep` share when the
/// microbatch is recomputed), an R the rest at its start, an L what the F left at its start; an
/// O frees that at its end, a BW (or B and W, with release 0) everything at its end.
fn peaks_by_sweep(s: &Schedule, r: &SimResult, act: f64, keep: f64) -> Vec<f64> {
    let recomputed: std::collections::HashSet<(u32, u32)> = s
        .lists
        .iter()
        .flatten()
        .filter(|q| q.kind == PassKind::R)
        .map(|q| (q.stage, q.mb))
        .collect();
    s.lists
        .iter()
        .enumerate()
        .map(|(d, list)| {
            let mut ev: Vec<(f64, f64)> = Vec::new();
            for (i, q) in list.iter().enumerate() {
                let left = if recomputed.contains(&(q.stage, q.mb)) {
                    act * keep
                } else {
                    act
                };
                let (t0, t1) = (r.start[d][i], r.end[d][i]);
                match q.kind {
                    PassKind::F | PassKind::L => ev.push((t0, left)),
                    PassKind::R => ev.push((t0, act - act * keep)),
                    PassKind::O => ev.push((t1, -left)),
                    PassKind::BW | PassKind::W => ev.push((t1, -act)),
                    PassKind::B => {}
                }
            }
            // Frees before allocations at the same time.
            ev.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
            let (mut level, mut peak) = (0.0f64, 0.0f64);
            for (_, x) in ev {
                level += x;
                peak = peak.max(level);
            }
            peak
        })
        .collect()
}

/// One device, one stage, three microbatches, the first one's backward last: offloading it
/// frees it when its O ends, the load back holds it again from its start, and the computation
/// never waits for the link.
#[test]
fn an_offload_frees_at_its_end_and_a_load_holds_from_its_start() {
    let mut s = generate("gpipe", &Params::new(1, 3).unwrap()).unwrap();
    s.lists[0] = ["F0.0", "F0.1", "BW0.1", "F0.2", "BW0.2", "BW0.0"]
        .map(|t| Pass::parse(t).unwrap())
        .to_vec();
    let c = costs("f=1,b=1,w=1,offload=0.5");
    let plain = simulate(&s, &c).unwrap();
    assert!((plain.peak_activation[0] - 2.0).abs() < 1e-9);
    assert!((plain.makespan - 9.0).abs() < 1e-9);
    let o = offload_by_hand(&s, 0, 0);
    validate(&o).unwrap();
    let r = simulate(&o, &c).unwrap();
    // F0.0 0..1, O0.0 1..1.5 (frees at 1.5), F0.1 1..2 (holds from 1: two units until 1.5),
    // BW0.1 2..4, F0.2 4..5, BW0.2 5..7, L0.0 issued at 7 (7..7.5), BW0.0 7.5..9.5.
    let at = |q: Pass| o.lists[0].iter().position(|x| *x == q).unwrap();
    assert!((r.start[0][at(Pass::o(0, 0))] - 1.0).abs() < 1e-9);
    assert!((r.end[0][at(Pass::o(0, 0))] - 1.5).abs() < 1e-9);
    assert!(
        (r.start[0][at(Pass::f(0, 1))] - 1.0).abs() < 1e-9,
        "F waits for no link"
    );
    assert!((r.start[0][at(Pass::l(0, 0))] - 7.0).abs() < 1e-9);
    assert!((r.start[0][at(Pass::bw(0, 0))] - 7.5).abs() < 1e-9);
    assert!((r.makespan - 9.5).abs() < 1e-9);
    assert!(
        (r.peak_activation[0] - 2.0).abs() < 1e-9,
        "{:?}",
        r.peak_activation
    );
    let curve = &r.memory[0];
    let level_at = |t: f64| {
        curve
            .iter()
            .rfind(|x| x.0 <= t + 1e-12)
            .map_or(0.0, |x| x.1)
    };
    assert!((level_at(1.2) - 2.0).abs() < 1e-9, "{curve:?}");
    assert!((level_at(3.0) - 1.0).abs() < 1e-9, "{curve:?}");
    assert!((level_at(6.0) - 1.0).abs() < 1e-9, "{curve:?}");
    assert!((level_at(7.2) - 1.0).abs() < 1e-9, "{curve:?}");
    assert_eq!(r.transfer_time, vec![1.0]);
    // Busy time is the computation's only.
    assert!((r.busy[0] - plain.busy[0]).abs() < 1e-9);
    // An instant link frees it before F0.1 allocates: one unit at most.
    let r0 = simulate(&o, &costs("f=1,b=1,w=1,offload=0")).unwrap();
    assert!(
        (r0.peak_activation[0] - 1.0).abs() < 1e-9,
        "{:?}",
        r0.peak_activation
    );
    assert!((r0.makespan - 9.0).abs() < 1e-9);
    // Without a link the schedule is refused with one line.
    let e = simulate(&o, &costs("")).unwrap_err();
    assert!(e.to_string().contains("offload time"), "{e}");
}

/// 1F1B's first device holds `p` microbatches; with a fast link offloading brings it to any
/// limit down to two, at no cost in time (the transfers hide in the wait for the gradients).
#[test]
fn fit_offloads_1f1b_to_its_limit_without_losing_time() {
    for p in [4u32, 6, 8] {
        let c = costs("f=1,b=1,w=1,offload=0.1");
        let s = generate("1f1b", &Params::new(p, 3 * p).unwrap()).unwrap();
        let plain = simulate(&s, &c).unwrap();
        for limit in [2.0, f64::from(p) / 2.0, f64::from(p) - 1.0] {
            let (o, r) = fit(&s, &c, &vec![limit; p as usize]).unwrap().unwrap();
            validate(&o).unwrap();
            assert!(
                r.max_peak() <= limit + 1e-9,
                "p={p} limit {limit}: {}",
                r.max_peak()
            );
            assert!(offloaded(&o) > 0);
            assert!(
                (r.makespan - plain.makespan).abs() < 1e-9,
                "p={p} limit {limit}: {} vs {}",
                r.makespan,
                plain.makespan
            );
        }
    }
}

/// 1F1B at p = 4 (F 1, BW 2): device 0 starts its fourth forward at t = 3 holding three
/// microbatches unless the second one's O (it ends its F at 2) is over by then: a link that
/// moves a stage's activation in 0.5 fits a limit of 2, one that takes 1.5 cannot (the
/// computation never waits for memory), but fits 3, and without a link nothing is offloaded.
#[test]
fn a_link_too_slow_to_empty_the_device_before_its_peak_fits_nothing() {
    let s = generate("1f1b", &Params::new(4, 12).unwrap()).unwrap();
    let plain = simulate(&s, &costs("")).unwrap();
    let (_, fast) = fit(&s, &costs("offload=0.5"), &[2.0; 4]).unwrap().unwrap();
    assert!(fast.max_peak() <= 2.0 + 1e-9);
    assert!(fit(&s, &costs("offload=1.5"), &[2.0; 4]).unwrap().is_none());
    let (_, slow) = fit(&s, &costs("offload=1.5"), &[3.0; 4]).unwrap().unwrap();
    assert!(slow.max_peak() <= 3.0 + 1e-9);
    assert!((slow.makespan - plain.makespan).abs() < 1e-9);
    assert!(fit(&s, &costs(""), &[3.0; 4]).unwrap().is_none());
}

#[test]
fn transfers_validate_like_any_pass() {
    let s = generate("1f1b", &Params::new(2, 2).unwrap()).unwrap();
    let o = offload_by_hand(&s, 0, 0);
    validate(&o).unwrap();
    // An O without its L.
    let mut no_l = o.clone();
    no_l.lists[0].retain(|q| *q != Pass::l(0, 0));
    let e = validate(&no_l).unwrap_err();
    assert!(
        matches!(e, ValidationError::Missing { pass, .. } if pass == Pass::l(0, 0)),
        "{e}"
    );
    // An L without its O.
    let mut no_o = o.clone();
    no_o.lists[0].retain(|q| *q != Pass::o(0, 0));
    let e = validate(&no_o).unwrap_err();
    assert!(
        matches!(e, ValidationError::Missing { pass, .. } if pass == Pass::o(0, 0)),
        "{e}"
    );
    // The backward before its L.
    let mut late = o.clone();
    let i = late.lists[0]
        .iter()
        .position(|q| *q == Pass::l(0, 0))
        .unwrap();
    let l = late.lists[0].remove(i);
    late.lists[0].push(l);
    let e = validate(&late).unwrap_err();
    assert!(matches!(e, ValidationError::OrderOnDevice { .. }), "{e}");
    assert!(e.to_string().contains("L0.0"), "{e}");
    // On the wrong device.
    let mut wrong = o.clone();
    wrong.lists[1].push(Pass::o(0, 1));
    wrong.lists[1].push(Pass::l(0, 1));
    assert!(matches!(
        validate(&wrong).unwrap_err(),
        ValidationError::WrongDevice { .. }
    ));
    // JSON keeps them; PyTorch's CSV refuses them with one line.
    let json = pipeblocks_core::format::json::write(&o);
    assert!(
        json.contains("\"O0.0\"") && json.contains("\"L0.0\""),
        "{json}"
    );
    let back = pipeblocks_core::format::json::read(&json).unwrap();
    assert_eq!(back.lists, o.lists);
    let e = pipeblocks_core::format::torch_csv::check(&o).unwrap_err();
    assert!(e.to_string().contains("offload"), "{e}");
    assert_eq!(Pass::parse("O3.7").unwrap(), Pass::o(3, 7));
    assert_eq!(Pass::parse("L0.2").unwrap().to_string(), "L0.2");
}

/// The case: at 0.25x of 1F1B's activation (below V-Min's) at p=8, m=32, the best
/// schedule with offload or recompute has a shorter step than the best without them, and
/// holds the budget.
#[test]
fn below_v_min_offload_beats_holding_everything() {
    // Without a host link (the uniform costs' default) by recomputing, with one by offloading.
    for (link, kind) in [("", "recomputing"), ("offload=1", "offloading")] {
        let prm = Params::new(8, 32).unwrap().with_costs(costs(link));
        below_v_min(&prm, kind);
    }
}

fn below_v_min(prm: &Params, kind: &str) {
    let budget = 2.0; // 0.25x of 1F1B's 8 units
    let without = search_on_device(prm, budget).unwrap();
    let with = search(prm, budget).unwrap();
    assert!(with.result.max_peak() <= budget + 1e-9);
    // The uniform costs are per stage, so step times compare only on one placement; the
    // objective's bubble (recomputation counted as lost time) compares any two.
    let obj = prm.objective;
    assert!(
        obj.bubble(&with.result) < obj.bubble(&without.result),
        "{} ({}) vs {} ({})",
        obj.bubble(&with.result),
        with.family,
        obj.bubble(&without.result),
        without.family
    );
    if with.schedule.placement == without.schedule.placement {
        assert!(with.result.makespan < without.result.makespan);
    }
    assert!(with.family.contains(kind), "{}", with.family);
    validate(&with.schedule).unwrap();
}

/// A model's transfer takes its stage's activation bytes over the host link.
#[test]
fn a_model_moves_its_activation_bytes_over_the_host_link() {
    let model = ModelSpec::preset("llama2-7b").unwrap();
    let fast = DeviceSpec::parse("h100").unwrap();
    let slow = DeviceSpec::parse("h100,host=25GB/s").unwrap();
    assert_eq!(fast.host_bandwidth, 50e9);
    let a = ModelCosts::for_stages(&model, 1, &fast, 8).unwrap();
    let b = ModelCosts::for_stages(&model, 1, &slow, 8).unwrap();
    for s in 0..8 {
        assert!((a.offload[s] - a.activation_bytes[s] / 50e9).abs() < 1e-12);
        assert!((b.offload[s] - 2.0 * a.offload[s]).abs() < 1e-12);
    }
    assert!(DeviceSpec::parse("h100,host=0").is_err());
    assert_eq!(DeviceSpec::parse("a100-80gb").unwrap().host_bandwidth, 25e9);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Any choice of offloaded microbatches, with or without recomputation, on any base: the
    /// schedule stays valid; the engine's peaks equal a sweep over the simulated times; the
    /// computation never overlaps itself nor either direction of the link; each O starts after
    /// its F, each L ends before the pass that needs it; free transfers change no time.
    #[test]
    fn offload_keeps_the_engine_honest(
        base in prop::sample::select(vec!["1f1b", "zb-h1", "v-half", "v-min", "gpipe", "zb-v", "dualpipev"]),
        p in 2u32..5,
        extra in 0u32..5,
        picks in prop::collection::vec((0u32..64, 0u32..64), 1..12),
        offload in prop::sample::select(vec![0.0, 0.3, 1.0, 2.5]),
        recompute in any::<bool>(),
    ) {
        let m = 2 * p + extra;
        let prm = Params::new(p, m).unwrap();
        let s = generate(base, &prm);
        prop_assume!(s.is_ok());
        let s = s.unwrap();
        let s = if recompute { with_recompute(&s, &vec![true; s.stages as usize]) } else { s };
        let keep = 0.25;
        let c = costs(&format!("f=1,b=1.2,w=0.8,keep={keep},offload={offload}"));
        let net = Net::of(&s, &c).unwrap();
        let r0 = simulate(&s, &c).unwrap();
        let picks: Vec<(u32, u32)> = picks.iter().map(|&(a, b)| (a % s.stages, b % m)).collect();
        let o = with_offload(&s, &net, &r0, &picks);
        prop_assert!(validate(&o).is_ok(), "{:?}", validate(&o));
        let r = simulate(&o, &c).unwrap();
        let act = f64::from(p) / f64::from(s.stages);
        let sweep = peaks_by_sweep(&o, &r, act, keep);
        for d in 0..p as usize {
            prop_assert!((sweep[d] - r.peak_activation[d]).abs() < 1e-9, "device {d}: {} vs {}", sweep[d], r.peak_activation[d]);
            let list = &o.lists[d];
            let mut spans: [Vec<(f64, f64)>; 3] = Default::default();
            let starts = o.pair_starts();
            for (i, q) in list.iter().enumerate() {
                if i > 0 && starts.as_ref().is_some_and(|v| v[d][i - 1]) {
                    continue; // an overlapped pair's second half shares the first's span
                }
                let k = match q.kind { PassKind::O => 1, PassKind::L => 2, _ => 0 };
                spans[k].push((r.start[d][i], r.end[d][i]));
            }
            for v in &mut spans {
                v.sort_by(|a, b| a.0.total_cmp(&b.0));
                for w in v.windows(2) {
                    prop_assert!(w[1].0 >= w[0].1 - 1e-9, "overlap on device {d}: {:?}", w);
                }
            }
            for (i, q) in list.iter().enumerate() {
                let find = |x: Pass| list.iter().position(|y| *y == x).unwrap();
                if q.kind == PassKind::O {
                    prop_assert!(r.start[d][i] >= r.end[d][find(Pass::f(q.stage, q.mb))] - 1e-9);
                }
                if q.kind == PassKind::L {
                    let c = [Pass::r(q.stage, q.mb), Pass::b(q.stage, q.mb), Pass::bw(q.stage, q.mb)]
                        .into_iter()
                        .find_map(|x| list.iter().position(|y| *y == x))
                        .unwrap();
                    prop_assert!(r.end[d][i] <= r.start[d][c] + 1e-9);
                }
            }
        }
        if offload == 0.0 {
            prop_assert!((r.makespan - r0.makespan).abs() < 1e-9);
        }
    }
}
