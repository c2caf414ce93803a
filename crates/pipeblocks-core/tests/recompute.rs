//! Activation recomputation as a schedule choice (issue 22): R passes validate like any pass,
//! keep the memory model's promise (a recomputed microbatch keeps only its input until its R),
//! cost their time, and take `auto` and the frontier below what any schedule holds without them.

use pipeblocks_core::model::{DeviceSpec, ModelCosts, ModelSpec};
use pipeblocks_core::recompute::{fit, with_kinds, with_recompute, Recompute};
use pipeblocks_core::search::{frontier, search, search_on_device};
use pipeblocks_core::{
    generate, simulate, validate, Budget, Costs, Params, Pass, StageCosts, ValidationError,
};

/// 1F1B with every stage recomputed: device 0 holds the kept inputs of its `p` microbatches in
/// flight and one full activation between an R and its backward, `1 + (p − 1)·keep` units; the
/// R runs while the device would wait for the gradient, and adds its time elsewhere.
#[test]
fn one_f_one_b_recomputed_holds_its_inputs_and_one_activation() {
    for (p, keep) in [(4u32, 0.1), (8, 2.0 / 34.0), (6, 0.25)] {
        let costs = StageCosts::uniform(Costs::parse(&format!("keep={keep}")).unwrap());
        let prm = Params::new(p, 4 * p).unwrap();
        let s = generate("1f1b", &prm).unwrap();
        let rs = with_recompute(&s, &vec![true; p as usize]);
        validate(&rs).unwrap();
        assert_eq!(rs.num_passes(), s.num_passes() + (p * 4 * p) as usize);
        let (a, b) = (
            simulate(&s, &costs).unwrap(),
            simulate(&rs, &costs).unwrap(),
        );
        let want = 1.0 + f64::from(p - 1) * keep;
        assert!(
            (b.peak_activation[0] - want).abs() < 1e-9,
            "p={p}: {} vs {want}",
            b.peak_activation[0]
        );
        assert!(b.max_peak() < a.max_peak());
        assert!(b.makespan > a.makespan);
        let r: f64 = b.recompute_time.iter().sum();
        assert!((r - f64::from(p * 4 * p)).abs() < 1e-9, "R time {r}");
        assert!((b.busy.iter().sum::<f64>() - a.busy.iter().sum::<f64>() - r).abs() < 1e-9);
    }
}

#[test]
fn r_passes_validate_like_any_pass() {
    let s = generate("1f1b", &Params::new(2, 2).unwrap()).unwrap();
    let rs = with_recompute(&s, &[true, false]);
    // An R after its backward waits forever for nothing: refused as an order on the device.
    let mut late = rs.clone();
    let i = late.lists[0]
        .iter()
        .position(|q| *q == Pass::r(0, 0))
        .unwrap();
    let r = late.lists[0].remove(i);
    let j = late.lists[0]
        .iter()
        .position(|q| *q == Pass::bw(0, 0))
        .unwrap();
    late.lists[0].insert(j + 1, r);
    let e = validate(&late).unwrap_err();
    assert!(matches!(e, ValidationError::OrderOnDevice { .. }), "{e}");
    assert!(e.to_string().contains("R0.0"), "{e}");
    // Twice: a duplicate.
    let mut twice = rs.clone();
    twice.lists[0].insert(0, Pass::r(0, 1));
    let e = validate(&twice).unwrap_err();
    assert!(matches!(e, ValidationError::Duplicate { .. }), "{e}");
    // On a device that does not hold the stage.
    let mut wrong = rs.clone();
    wrong.lists[1].insert(0, Pass::r(0, 1));
    assert!(validate(&wrong).is_err());
    // The pass parses and prints as R.
    assert_eq!(Pass::parse("R3.7").unwrap(), Pass::r(3, 7));
    let json = pipeblocks_core::format::json::write(&rs);
    assert_eq!(pipeblocks_core::format::json::read(&json).unwrap(), rs);
    let e = pipeblocks_core::format::torch_csv::check(&rs).unwrap_err();
    assert!(e.to_string().contains("no recompute action"), "{e}");
}

#[test]
fn fit_recomputes_stage_by_stage_until_the_limits_hold() {
    let prm = Params::new(4, 16).unwrap();
    let costs = StageCosts::default();
    let s = generate("1f1b", &prm).unwrap();
    // 1F1B's device 0 holds 4 units, device 3 one; a limit of 2.5 needs only devices 0 and 1.
    let (fitted, r) = fit(&s, &costs, &[2.5; 4]).unwrap().unwrap();
    assert!(r.max_peak() <= 2.5 + 1e-9);
    assert_eq!(
        pipeblocks_core::recompute::recomputed_stages(&fitted),
        vec![0, 1]
    );
    assert!(fitted.lists[2]
        .iter()
        .all(|q| q.kind != pipeblocks_core::PassKind::R));
    // Already within: as it is.
    let (same, _) = fit(&s, &costs, &[4.0; 4]).unwrap().unwrap();
    assert_eq!(same, s);
    // Below one activation nothing fits.
    assert!(fit(&s, &costs, &[0.5; 4]).unwrap().is_none());
}

/// The check: at 0.25x of 1F1B's activation memory (below V-Min's) at p=8, m=32, the
/// frontier's best recomputes and its step, the recomputation counted, is shorter than the best
/// without recomputation; and wherever a schedule fits without recomputing, the frontier is
/// never worse than the search without it.
#[test]
fn below_v_min_recompute_beats_the_best_without() {
    let prm = Params::new(8, 32).unwrap();
    let budget = 0.25 * 8.0;
    let with = search(&prm, budget).unwrap();
    let without = search_on_device(&prm, budget).unwrap();
    assert!(with.family.contains("recomputing"), "{}", with.family);
    assert!(with.result.max_peak() <= budget + 1e-9);
    let obj = prm.objective;
    assert!(
        obj.bubble(&with.result) < obj.bubble(&without.result),
        "{} ({}) vs {} ({})",
        obj.bubble(&with.result),
        with.family,
        obj.bubble(&without.result),
        without.family
    );
    eprintln!(
        "0.25x: with {} makespan {} bubble {}; without {} makespan {} bubble {}",
        with.family,
        with.result.makespan,
        obj.bubble(&with.result),
        without.family,
        without.result.makespan,
        obj.bubble(&without.result)
    );
    // On the best's own V shape, step times compare as they are (the uniform costs are per
    // stage, so a looped schedule's four chunks do twice a V's work): V-Min recomputing what
    // it needs is shorter than the best on the device, the recomputation counted.
    assert_eq!(
        without.schedule.placement,
        pipeblocks_core::Placement::VShape
    );
    let vmin = generate("v-min", &prm).unwrap();
    let (_, r) = fit(&vmin, &prm.costs, &[budget; 8]).unwrap().unwrap();
    assert!(
        r.makespan < without.result.makespan,
        "{} vs {}",
        r.makespan,
        without.result.makespan
    );
    let auto = generate("auto", &prm.clone().with_budget(Budget::Of1f1b(0.25))).unwrap();
    assert_eq!(auto.lists, with.schedule.lists);
}

#[test]
fn the_frontier_reaches_below_v_min_and_is_never_worse_where_schedules_fit() {
    let prm = Params::new(4, 8).unwrap();
    let pts = frontier(&prm, |_, _| {}).unwrap();
    let first = &pts[0];
    assert!(first.budget_vs_1f1b < 0.3, "{first:?}");
    for pt in &pts {
        assert!(pt.peak <= pt.budget + 1e-9);
        if let Ok(plain) = search_on_device(&prm, pt.budget) {
            assert!(
                pt.bubble_rate <= prm.objective.bubble(&plain.result) + 1e-9,
                "{pt:?} vs {}",
                plain.result.bubble_rate
            );
        }
    }
}

/// An overlapped pair whose backward is recomputed gets its R before the pair: the pair stays
/// together and the schedule valid.
#[test]
fn recomputing_a_paired_backward_keeps_the_pair() {
    let s = generate("dualpipev", &Params::new(4, 10).unwrap()).unwrap();
    let rs = with_recompute(&s, &[true; 8]);
    validate(&rs).unwrap();
    assert_eq!(rs.pairs, s.pairs);
    let r = simulate(
        &rs,
        &StageCosts::uniform(Costs::parse("overlap=0.5").unwrap()),
    )
    .unwrap();
    assert!(r.makespan > 0.0);
}

/// Selective recomputation (Korthikanti et al.): a model keeps all but each layer's attention
/// scores (`5·a·s²·b` of `34·s·b·h + 5·a·s²·b` bytes) and recomputes only their `4·b·s²·h`
/// FLOPs.
#[test]
fn a_model_knows_what_selective_recomputation_keeps_and_costs() {
    let model = ModelSpec::preset("llama2-7b").unwrap();
    let dev = DeviceSpec::parse("h100").unwrap();
    let mc = ModelCosts::for_stages(&model, 1, &dev, 8).unwrap();
    let (s, h, a) = (model.seq as f64, model.hidden as f64, model.heads as f64);
    let per_layer = 34.0 * s * h + 5.0 * a * s * s;
    for st in 0..7 {
        let layers = f64::from(mc.layers[st]);
        assert!((mc.selective[st][1] - 34.0 * s * h / per_layer).abs() < 1e-9);
        let flops = layers * 4.0 * s * s * h;
        assert!((mc.selective[st][0] - flops / dev.sustained()).abs() < 1e-12);
        // Cheaper than the full recompute, and keeps more.
        assert!(mc.selective[st][0] < mc.recompute[st]);
        assert!(mc.selective[st][1] > mc.keep[st]);
    }
}

/// A selective stage keeps `selective_keep` of each microbatch until its R, which costs the
/// selective time; `fit` takes the cheaper kind first and full recomputation only where that is
/// not enough.
#[test]
fn selective_recompute_is_tried_before_full() {
    let c = StageCosts::uniform(Costs::parse("selective=0.2,selective_keep=0.5").unwrap());
    let s = generate("1f1b", &Params::new(4, 8).unwrap()).unwrap();
    let sel = with_kinds(
        &s,
        &[
            Recompute::Selective,
            Recompute::None,
            Recompute::None,
            Recompute::None,
        ],
    );
    assert_eq!(sel.selective, vec![0]);
    validate(&sel).unwrap();
    let r = simulate(&sel, &c).unwrap();
    // Device 0: one microbatch whole between an R and its backward, three at half.
    assert!(
        (r.peak_activation[0] - 2.5).abs() < 1e-9,
        "{:?}",
        r.peak_activation
    );
    assert!((r.recompute_time.iter().sum::<f64>() - 8.0 * 0.2).abs() < 1e-9);
    let json = pipeblocks_core::format::json::write(&sel);
    assert!(json.contains("\"selective\": [0]"), "{json}");
    assert_eq!(pipeblocks_core::format::json::read(&json).unwrap(), sel);
    // Limit 3: the selective stage 0 is enough.
    let (f3, r3) = fit(&s, &c, &[3.0; 4]).unwrap().unwrap();
    assert_eq!(f3.selective, vec![0]);
    assert!(r3.max_peak() <= 3.0 + 1e-9);
    // Limit 2: selective on stage 0 keeps 2.5, so it goes full (1 + 3 · 2/34).
    let (f2, r2) = fit(&s, &c, &[2.0; 4]).unwrap().unwrap();
    assert!(!f2.selective.contains(&0), "{:?}", f2.selective);
    assert!(r2.max_peak() <= 2.0 + 1e-9);
    // Costs that do not know selective recomputation go straight to full.
    let (f, _) = fit(&s, &StageCosts::default(), &[3.0; 4]).unwrap().unwrap();
    assert!(f.selective.is_empty());
    let e = simulate(&sel, &StageCosts::default()).unwrap_err();
    assert!(e.to_string().contains("selective"), "{e}");
    // A selective stage without R passes, or past the last stage, is refused.
    let mut bad = s.clone();
    bad.selective = vec![1];
    assert!(validate(&bad)
        .unwrap_err()
        .to_string()
        .contains("recomputes no microbatch"));
    let mut bad = sel.clone();
    bad.selective = vec![0, 9];
    assert!(validate(&bad).unwrap_err().to_string().contains("4 stages"));
    assert!(Costs::parse("selective=0.2").is_err());
    assert!(Costs::parse("selective=0.2,selective_keep=1.5").is_err());
}

/// The frontier's lowest budget, 0.05x of 1F1B's activation, is reached for a real model at
/// p = 8: a looped schedule with four chunks per device recomputing every stage.
#[test]
fn a_model_reaches_a_twentieth_of_1f1bs_activation() {
    let costs = StageCosts::model(
        ModelSpec::preset("llama2-7b").unwrap(),
        1,
        DeviceSpec::parse("h100").unwrap(),
    );
    let prm = Params::new(8, 32).unwrap().with_costs(costs.clone());
    let base = pipeblocks_core::params::one_f_one_b_peak(8, 32, &costs).unwrap();
    let c = search(&prm, 0.05 * base).unwrap();
    assert!(c.result.max_peak() <= 0.05 * base + 1e-9);
    assert!(c.family.contains("recomputing"), "{}", c.family);
    validate(&c.schedule).unwrap();
    assert!(search_on_device(&prm, 0.05 * base).is_err());
}

/// Moving R passes earlier into idle time shortens a recomputing schedule's step without
/// leaving its memory limit, and keeps it valid.
#[test]
fn hoisting_r_into_idle_time_shortens_the_step_within_the_limit() {
    let prm = Params::new(8, 32).unwrap();
    let vmin = generate("v-min", &prm).unwrap();
    let limits = [2.0; 8];
    let (s, r) = fit(&vmin, &prm.costs, &limits).unwrap().unwrap();
    let t = std::time::Instant::now();
    let (h, hr) = pipeblocks_core::recompute::hoist(&s, &prm.costs, &limits, 64).unwrap();
    eprintln!(
        "v-min recomputing at 0.25x: {} -> {} in {:?}",
        r.makespan,
        hr.makespan,
        t.elapsed()
    );
    validate(&h).unwrap();
    assert!(
        hr.makespan < r.makespan,
        "{} vs {}",
        hr.makespan,
        r.makespan
    );
    assert!(hr.max_peak() <= 2.0 + 1e-9);
    assert_eq!(h.num_passes(), s.num_passes());
    let again = simulate(&h, &prm.costs).unwrap();
    assert_eq!(again.makespan, hr.makespan);
}
