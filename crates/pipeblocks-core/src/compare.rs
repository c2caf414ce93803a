//! Every applicable schedule side by side, and the JSON summary of one simulation.

use serde::Serialize;

use crate::error::Error;
use crate::generators::{generate, registry, Params};
use crate::ir::Schedule;
use crate::simulate::{simulate, SimConfig, SimResult};

/// The public JSON summary of one simulated schedule (printed by `simulate --json` and, as array
/// elements, by `compare --json`).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Summary {
    /// Schedule name.
    pub schedule: String,
    /// Placement, in words.
    pub placement: String,
    /// Devices `p`.
    pub devices: u32,
    /// Stages `S`.
    pub stages: u32,
    /// Microbatches `m`.
    pub microbatches: u32,
    /// Number of passes.
    pub passes: usize,
    /// Simulated step time.
    pub makespan: f64,
    /// Idle fraction of the devices.
    pub bubble_rate: f64,
    /// Busy time per device.
    pub busy: Vec<f64>,
    /// Peak activation per device, in units.
    pub peak_activation: Vec<f64>,
    /// Largest per-device peak.
    pub max_peak_activation: f64,
    /// `max_peak_activation` over 1F1B's for the same p, m and costs.
    pub peak_vs_1f1b: f64,
    /// Cross-device transfers per step.
    pub p2p_transfers: u64,
    /// `p2p_transfers` over 1F1B's (1 when both are 0).
    pub p2p_vs_1f1b: f64,
}

/// 1F1B's reference figures for `p`, `m` under `cfg`: (max peak, p2p transfers).
pub fn baseline(p: u32, m: u32, cfg: &SimConfig) -> Result<(f64, u64), Error> {
    let s = generate("1f1b", &Params::new(p, m))?;
    let base_cfg = SimConfig {
        stage_costs: None,
        activation: None,
        ..cfg.clone()
    };
    let r = simulate(&s, &base_cfg)?;
    Ok((r.max_peak(), r.p2p_transfers))
}

/// Builds the summary of a simulated schedule.
pub fn summarize(s: &Schedule, r: &SimResult, base: (f64, u64)) -> Summary {
    let max_peak = r.max_peak();
    Summary {
        schedule: s.name.clone(),
        placement: s.placement.describe(),
        devices: s.devices,
        stages: s.stages,
        microbatches: s.microbatches,
        passes: s.num_passes(),
        makespan: r.makespan,
        bubble_rate: r.bubble_rate,
        busy: r.busy.clone(),
        peak_activation: r.peak_activation.clone(),
        max_peak_activation: max_peak,
        peak_vs_1f1b: if base.0 > 0.0 { max_peak / base.0 } else { 1.0 },
        p2p_transfers: r.p2p_transfers,
        p2p_vs_1f1b: if base.1 > 0 {
            r.p2p_transfers as f64 / base.1 as f64
        } else if r.p2p_transfers == 0 {
            1.0
        } else {
            f64::INFINITY
        },
    }
}

/// One row of a comparison: a summary, or why the schedule does not apply.
#[derive(Clone, Debug)]
pub enum Row {
    /// The schedule applied.
    Ok(Box<Summary>),
    /// It did not, and why.
    NotApplicable {
        /// Schedule name.
        schedule: String,
        /// Reason.
        reason: String,
    },
}

/// Generates and simulates every registered schedule for `prm` under `cfg`.
pub fn compare(prm: &Params, cfg: &SimConfig) -> Result<Vec<Row>, Error> {
    prm.check()?;
    let base = baseline(prm.devices, prm.microbatches, cfg)?;
    let mut rows = Vec::new();
    for g in registry() {
        let row = generate(g.name, prm)
            .and_then(|s| simulate(&s, cfg).map(|r| (s, r)))
            .map(|(s, r)| Row::Ok(Box::new(summarize(&s, &r, base))))
            .unwrap_or_else(|e| Row::NotApplicable {
                schedule: g.name.to_string(),
                reason: e.to_string(),
            });
        rows.push(row);
    }
    Ok(rows)
}
