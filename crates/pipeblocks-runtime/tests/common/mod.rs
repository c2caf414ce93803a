//! Shared helpers of the integration tests: a tiny model and data.

#![allow(dead_code)]

use pipeblocks_core::registry::{generate, registry};
use pipeblocks_core::Params;
use pipeblocks_core::Schedule;
use pipeblocks_runtime::data::{Batch, Corpus};
use pipeblocks_runtime::exec::NamedGrads;
use pipeblocks_runtime::{ModelConfig, TrainConfig, Trainer};

/// A model small enough for fast tests, with 4 blocks so V-shape and looped placements fit at p=2.
pub fn tiny(layers: usize, batch: usize) -> TrainConfig {
    TrainConfig {
        model: ModelConfig {
            vocab: 256,
            hidden: 16,
            heads: 2,
            layers,
            seq: 8,
        },
        batch,
        seed: 11,
        ..TrainConfig::default()
    }
}

pub fn corpus() -> Corpus {
    Corpus::generated(5, 4000)
}

pub fn batch(cfg: &TrainConfig, step: u64) -> Batch {
    corpus().batch(cfg.batch, cfg.model.seq, cfg.seed, step)
}

/// Every registered schedule that accepts `p` devices and `m` microbatches (others are skipped:
/// they refuse the configuration) and runs one pipeline (the runtime refuses DualPipe's two).
pub fn all_schedules(p: u32, m: u32) -> Vec<Schedule> {
    registry()
        .iter()
        .filter_map(|g| generate(g.name, &Params::new(p, m).unwrap()).ok())
        .filter(|s| s.placement.lanes() == 1)
        .collect()
}

/// Checks a trainer's accumulated step, of loss `loss`, against the unpipelined model's loss
/// and gradients: the loss within 1e-5 relative, every gradient in the same order and within
/// 1e-5 relative error.
pub fn assert_matches_reference(
    name: &str,
    t: &mut Trainer,
    loss: f64,
    ref_loss: f64,
    reference: &NamedGrads,
) {
    assert!(
        (loss - ref_loss).abs() <= 1e-5 * ref_loss.abs(),
        "{name}: loss {loss} vs {ref_loss}"
    );
    let grads = t.gradients().unwrap();
    assert_eq!(grads.len(), reference.len(), "{name}: parameter count");
    for ((n, g), (rn, rg)) in grads.iter().zip(reference) {
        assert_eq!(n, rn, "{name}: parameter order");
        let e = rel_err(g, rg);
        assert!(
            e <= 1e-5,
            "{name}: gradient of {n} off by {e:.2e} (relative)"
        );
    }
}

/// `‖a - b‖ / ‖b‖` over all elements.
pub fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    let num: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2))
        .sum();
    let den: f64 = b.iter().map(|y| f64::from(*y).powi(2)).sum();
    (num / den.max(1e-30)).sqrt()
}
