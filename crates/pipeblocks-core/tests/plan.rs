//! The planner's invariants: its pruning never loses the best configuration, the layer split
//! is the best balance, and every configuration it returns fits and adds up.

use pipeblocks_core::model::{DeviceSpec, ModelSpec};
use pipeblocks_core::plan::{balanced_split, plan, Cluster, Fixed, Request};
use proptest::prelude::*;

fn request(top: usize, schedules: &[&str]) -> Request {
    Request {
        model: ModelSpec::parse("llama2-7b,seq=2048").unwrap(),
        cluster: Cluster {
            gpus: 16,
            gpus_per_node: 8,
            device: DeviceSpec::preset("a100-80gb").unwrap(),
        },
        global_batch: 32,
        fixed: Fixed {
            schedules: Some(schedules.iter().map(|s| s.to_string()).collect()),
            microbatch_size: Some(1),
            ..Fixed::default()
        },
        top,
        p2p_blocking: true,
    }
}

#[test]
fn pruning_keeps_the_best_configuration() {
    let schedules = ["1f1b", "zb-h1", "zb-v"];
    let pruned = plan(&request(1, &schedules), |_, _| {}).unwrap();
    let exhaustive = plan(&request(100_000, &schedules), |_, _| {}).unwrap();
    assert!(
        pruned.simulated < exhaustive.simulated,
        "nothing was pruned"
    );
    let (a, b) = (&pruned.best[0], &exhaustive.best[0]);
    assert_eq!(a.iteration_seconds, b.iteration_seconds, "{a:?}\n{b:?}");
    // The exhaustive list is sorted and every entry fits.
    let memory = DeviceSpec::preset("a100-80gb").unwrap().memory;
    for w in exhaustive.best.windows(2) {
        assert!(w[0].iteration_seconds <= w[1].iteration_seconds);
    }
    for e in &exhaustive.best {
        assert!(e.fits && e.max_peak() <= memory);
        let c = &e.config;
        assert_eq!(c.tp * c.pp * c.dp, 16);
        assert_eq!(c.dp * c.microbatch_size * c.microbatches, 32);
        assert_eq!(e.layers_per_stage.iter().sum::<u32>(), 32);
    }
}

proptest! {
    #[test]
    fn the_layer_split_is_the_best_balance(layers in 1u32..=40, stages in 1u32..=12, head in 0.0f64..3.0) {
        let Some(split) = balanced_split(layers, stages, head) else {
            prop_assert!(stages > layers || stages == 0);
            return Ok(());
        };
        prop_assert_eq!(split.len(), stages as usize);
        prop_assert_eq!(split.iter().sum::<u32>(), layers);
        prop_assert!(split.iter().all(|&n| n >= 1));
        let load = |s: &[u32]| -> f64 {
            s.iter().enumerate().map(|(i, &n)| f64::from(n) + if i + 1 == s.len() { head } else { 0.0 }).fold(0.0, f64::max)
        };
        // No split with one layer moved from any stage to any other is better.
        let best = load(&split);
        for from in 0..split.len() {
            for to in 0..split.len() {
                if from == to || split[from] <= 1 { continue; }
                let mut other = split.clone();
                other[from] -= 1;
                other[to] += 1;
                prop_assert!(load(&other) >= best - 1e-9, "{:?} beats {:?}", other, split);
            }
        }
    }
}
