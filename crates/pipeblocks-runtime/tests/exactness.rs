//! Every schedule computes exactly the gradients of the unpipelined model.

mod common;

use common::{all_schedules, assert_matches_reference, batch, rel_err, tiny};
use pipeblocks_core::{generate, Params};
use pipeblocks_runtime::{reference_gradients, Trainer};

#[test]
fn every_schedule_matches_full_batch_gradients() {
    let cfg = tiny(4, 4);
    let b = batch(&cfg, 0);
    let (ref_loss, reference) = reference_gradients(&cfg, &b).unwrap();
    let schedules = all_schedules(2, 4);
    assert!(
        schedules.len() >= 4,
        "expected the classic schedules at p=2, m=4"
    );
    for s in schedules {
        let name = s.name.clone();
        let mut t = Trainer::new(cfg.clone(), s).unwrap();
        let report = t.accumulate(&b).unwrap();
        assert_matches_reference(&name, &mut t, report.loss, ref_loss, &reference);
    }
}

#[test]
fn three_devices_and_more_microbatches_match_too() {
    let cfg = tiny(6, 6);
    let b = batch(&cfg, 1);
    let (_, reference) = reference_gradients(&cfg, &b).unwrap();
    for s in all_schedules(3, 6) {
        let name = s.name.clone();
        let mut t = Trainer::new(cfg.clone(), s).unwrap();
        t.accumulate(&b).unwrap();
        for ((n, g), (_, rg)) in t.gradients().unwrap().iter().zip(&reference) {
            let e = rel_err(g, rg);
            assert!(e <= 1e-5, "{name}: gradient of {n} off by {e:.2e}");
        }
    }
}

#[test]
fn losses_agree_across_schedules_over_several_steps() {
    let cfg = tiny(4, 4);
    let steps = 5;
    let mut curves: Vec<(String, Vec<f64>)> = Vec::new();
    for s in all_schedules(2, 4) {
        let name = s.name.clone();
        let mut t = Trainer::new(cfg.clone(), s).unwrap();
        let losses = (0..steps)
            .map(|i| t.step(&batch(&cfg, i)).unwrap().loss)
            .collect();
        curves.push((name, losses));
    }
    let (base_name, base) = &curves[0];
    assert!(
        base[steps as usize - 1] < base[0],
        "{base_name}: the loss did not fall"
    );
    for (name, c) in &curves[1..] {
        for (i, (x, y)) in c.iter().zip(base).enumerate() {
            assert!(
                (x - y).abs() <= 1e-5 * y.abs(),
                "{name} step {i}: loss {x} vs {base_name} {y}"
            );
        }
    }
}

mod properties {
    use super::common::{batch, rel_err, tiny};
    use pipeblocks_core::registry::{generate, registry};
    use pipeblocks_core::Params;
    use pipeblocks_runtime::model::layer_range;
    use pipeblocks_runtime::{reference_gradients, Trainer};
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

        /// Any registered schedule, any small p and m, any seed: the pipelined gradients are the
        /// whole-batch gradients.
        #[test]
        fn random_configurations_are_exact(
            which in 0usize..64, p in 1u32..4, m in 1u32..5, seed in 0u64..1000,
        ) {
            let gens = registry();
            let g = &gens[which % gens.len()];
            let Ok(s) = generate(g.name, &Params::new(p, m).unwrap()) else {
                return Ok(()); // the schedule refuses this configuration
            };
            if s.placement.lanes() > 1 {
                // Two pipelines: refused, see `two_pipelines_are_refused_with_the_alternative`.
                return Ok(());
            }
            let mut cfg = tiny(s.stages as usize, m as usize);
            cfg.seed = seed;
            let b = batch(&cfg, seed);
            let (_, reference) = reference_gradients(&cfg, &b).unwrap();
            let mut t = Trainer::new(cfg, s).unwrap();
            t.accumulate(&b).unwrap();
            for ((n, x), (_, y)) in t.gradients().unwrap().iter().zip(&reference) {
                let e = rel_err(x, y);
                prop_assert!(e <= 1e-5, "{}: {} off by {:e}", g.name, n, e);
            }
        }

        /// The stage split covers every block once, in order, with no stage empty.
        #[test]
        fn layer_ranges_partition_the_layers(stages in 1u32..12, extra in 0usize..20) {
            let layers = stages as usize + extra;
            let mut next = 0;
            for i in 0..stages {
                let r = layer_range(layers, stages, i);
                prop_assert_eq!(r.start, next);
                prop_assert!(r.end > r.start);
                next = r.end;
            }
            prop_assert_eq!(next, layers);
        }
    }
}

/// DualPipe's two pipelines (two parameter copies) are refused before anything runs, with the
/// schedule to train instead.
#[test]
fn two_pipelines_are_refused_with_the_alternative() {
    let s = generate("dualpipe", &Params::new(2, 4).unwrap()).unwrap();
    let cfg = tiny(s.stages as usize, 4);
    let e = Trainer::new(cfg, s).err().expect("refused").to_string();
    assert!(e.contains("train dualpipev"), "{e}");
}
