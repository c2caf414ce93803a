//! Shared helpers of the integration tests: a tiny model and data.

#![allow(dead_code)]

use pipeblocks_core::registry::{generate, registry};
use pipeblocks_core::Params;
use pipeblocks_core::Schedule;
use pipeblocks_runtime::data::{Batch, Corpus};
use pipeblocks_runtime::{ModelConfig, TrainConfig};

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
