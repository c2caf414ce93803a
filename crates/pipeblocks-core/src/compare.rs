//! Every applicable schedule side by side, and the JSON summary of one simulation.

use serde::Serialize;

use crate::engine::{critical_path, simulate, Net, SimResult};
use crate::error::Error;
use crate::ir::Schedule;
use crate::params::{one_f_one_b_peak, Params, StageCosts};
use crate::registry::{generate, registry};

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
    /// Idle fraction of the devices over the makespan.
    pub bubble_rate: f64,
    /// Idle fraction within each device's own span (first start to last end), over all
    /// devices: the zero-bubble papers' bubble rate ([`crate::step::stage_bubble`]).
    pub stage_bubble_rate: f64,
    /// Steady-state time per training iteration ([`crate::step`]); the makespan unless a step
    /// model (optimizer, gradient sync) is given.
    pub period: f64,
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
    /// The largest share of the model's parameters a device holds, over 1F1B's (`1/p`): 2 for
    /// DualPipe's two copies ([`Schedule::parameter_share`]).
    pub parameters_vs_1f1b: f64,
    /// Overlapped pairs ([`Schedule::pairs`]).
    pub pairs: usize,
    /// Stages with recompute passes, and of them those that recompute selectively.
    pub recomputed_stages: [usize; 2],
    /// The longest time a device spends recomputing (its R passes, part of its busy time).
    pub recompute_time: f64,
    /// Stage and microbatch activations offloaded (O and L pairs).
    pub offloaded: usize,
    /// The longest time a device's host link is busy (its O and L, beside its computation).
    pub transfer_time: f64,
    /// The stage that bounds the step.
    pub bottleneck: Bottleneck,
    /// The training step's details, when a step model was asked for ([`crate::step`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<crate::step::StepResult>,
}

/// The stage that bounds a simulated step: the one whose passes take the largest share of a
/// critical path (the chain of passes, each held back by the one before it, that ends last).
#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
pub struct Bottleneck {
    /// The stage.
    pub stage: u32,
    /// Its device.
    pub device: u32,
    /// Share of the makespan its passes take on the critical path.
    pub critical_share: f64,
    /// Share of the makespan its device is busy.
    pub device_busy_share: f64,
}

/// The stage that bounds `s`'s step as simulated in `r` on `net`.
pub fn bottleneck(s: &Schedule, net: &Net, r: &SimResult) -> Bottleneck {
    let mut on_path = vec![0.0; s.stages as usize];
    for (d, i) in critical_path(s, net, r) {
        let pass = s.lists[d][i];
        on_path[pass.stage as usize] += r.end[d][i] - r.start[d][i];
    }
    let stage = (0..on_path.len())
        .max_by(|&a, &b| on_path[a].total_cmp(&on_path[b]).then(b.cmp(&a)))
        .unwrap_or(0);
    let device = net.stage_device.get(stage).copied().unwrap_or(0);
    let share = |x: f64| {
        if r.makespan > 0.0 {
            x / r.makespan
        } else {
            0.0
        }
    };
    Bottleneck {
        stage: stage as u32,
        device,
        critical_share: share(on_path.get(stage).copied().unwrap_or(0.0)),
        device_busy_share: share(r.busy.get(device as usize).copied().unwrap_or(0.0)),
    }
}

/// 1F1B's reference figures for `p`, `m` under `costs`: (max peak, p2p transfers).
pub fn baseline(p: u32, m: u32, costs: &StageCosts) -> Result<(f64, u64), Error> {
    let p2p = 2 * u64::from(p.saturating_sub(1)) * u64::from(m);
    Ok((one_f_one_b_peak(p, m, costs)?, p2p))
}

/// Builds the summary of a schedule simulated under `costs`.
pub fn summarize(
    s: &Schedule,
    r: &SimResult,
    costs: &StageCosts,
    base: (f64, u64),
) -> Result<Summary, Error> {
    let max_peak = r.max_peak();
    let net = Net::of(s, costs)?;
    Ok(Summary {
        schedule: s.name.clone(),
        placement: s.placement.describe(),
        devices: s.devices,
        stages: s.stages,
        microbatches: s.microbatches,
        passes: s.num_passes(),
        makespan: r.makespan,
        bubble_rate: r.bubble_rate,
        stage_bubble_rate: crate::step::stage_bubble(r).1,
        period: r.makespan,
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
        parameters_vs_1f1b: s.parameter_share().into_iter().fold(0.0, f64::max)
            * f64::from(s.devices),
        pairs: s.pairs.len(),
        recomputed_stages: [
            crate::recompute::recomputed_stages(s).len(),
            s.selective.len(),
        ],
        recompute_time: r.recompute_time.iter().copied().fold(0.0, f64::max),
        offloaded: crate::offload::offloaded(s),
        transfer_time: r.transfer_time.iter().copied().fold(0.0, f64::max),
        bottleneck: bottleneck(s, &net, r),
        step: None,
    })
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

/// Generates and simulates every registered schedule for `prm` under its costs.
pub fn compare(prm: &Params) -> Result<Vec<Row>, Error> {
    compare_with(prm, |_, _, _| {})
}

/// [`compare`], calling `progress(done, all, next)` before each schedule (`next` is its name)
/// and once at the end (`next` empty): at large sizes each takes seconds.
pub fn compare_with(
    prm: &Params,
    progress: impl FnMut(usize, usize, &str),
) -> Result<Vec<Row>, Error> {
    compare_step(prm, None, progress)
}

/// [`compare_with`], each schedule's [`Summary::period`] from the training step `step` when
/// given ([`crate::step`]).
pub fn compare_step(
    prm: &Params,
    step: Option<&crate::step::StepSpec>,
    mut progress: impl FnMut(usize, usize, &str),
) -> Result<Vec<Row>, Error> {
    let base = baseline(prm.devices(), prm.microbatches(), &prm.costs)?;
    let mut rows = Vec::new();
    let all = registry().len();
    for (i, g) in registry().iter().enumerate() {
        progress(i, all, g.name);
        let row = generate(g.name, prm)
            .and_then(|s| simulate(&s, &prm.costs).map(|r| (s, r)))
            .and_then(|(s, r)| {
                let mut sum = summarize(&s, &r, &prm.costs, base)?;
                if let Some(spec) = step {
                    let model = spec.model_for(&s, &prm.costs)?;
                    sum.period = crate::step::step_of(&s, &prm.costs, &model, &r)?.period;
                }
                Ok(sum)
            })
            .map(|sum| Row::Ok(Box::new(sum)))
            .unwrap_or_else(|e| Row::NotApplicable {
                schedule: g.name.to_string(),
                reason: e.to_string(),
            });
        rows.push(row);
    }
    progress(all, all, "");
    Ok(rows)
}
