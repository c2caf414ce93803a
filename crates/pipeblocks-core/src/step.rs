//! The whole training step: consecutive iterations of a schedule with the optimizer step and
//! the data-parallel gradient synchronisation between them.
//!
//! A schedule is one pipeline flush. A training run repeats it, and between two flushes each
//! device synchronises its gradients with its data-parallel replicas (an all-reduce per stage,
//! its time an input) and runs the optimizer on its stages. Two ways of doing that are in use:
//!
//! - **synchronous** ([`OptimizerMode::Sync`]): every device waits for a global
//!   synchronisation (gradient-norm clipping, NaN checks) and the optimizer before any device
//!   starts the next iteration. Every iteration is the same, so the period is the closed form
//!   `max over devices (end of its gradient sync) + the optimizer's time`; the flush's
//!   makespan-based bubble rate is what predicts throughput.
//! - **overlapped** ([`OptimizerMode::Overlap`], the zero-bubble work's optimizer
//!   post-validation): each device runs its optimizer as soon as its own gradients are
//!   synchronised and starts its next iteration right after, so the next warm-up overlaps the
//!   previous cool-down. [`training_step`] runs `iterations` flushes back to back on the
//!   [event engine](crate::engine), each device's first pass of an iteration held until its
//!   optimizer is done, and reports the steady-state period; the per-device bubble within each
//!   device's own span ([`StepResult::stage_bubble_rate`]) is what predicts it.
//!
//! The gradient all-reduce of a stage starts after the device's last W (or BW) of that stage in
//! the iteration when it overlaps with the remaining backward passes, else after the device's
//! last pass; a device's all-reduces run one after the other on its network link.

use serde::Serialize;

use crate::engine::{simulate, Engine, InOrder, Net, Observer};
use crate::error::{Error, Param};
use crate::ir::{Pass, PassKind, Schedule};
use crate::params::{limits, StageCosts, EPS};

/// When the optimizer runs relative to the other devices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerMode {
    /// After a global synchronisation: every device starts the next iteration together.
    Sync,
    /// As soon as the device's own gradients are synchronised (optimizer post-validation).
    Overlap,
}

impl OptimizerMode {
    /// The mode's name as written on the command line and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            OptimizerMode::Sync => "sync",
            OptimizerMode::Overlap => "overlap",
        }
    }

    /// What a schedule search should minimise for a step in this mode: the makespan when a
    /// global synchronisation separates iterations, the longest device span when each device
    /// starts its next iteration on its own.
    pub fn objective(self) -> crate::params::Objective {
        match self {
            OptimizerMode::Sync => crate::params::Objective::Makespan,
            OptimizerMode::Overlap => crate::params::Objective::Span,
        }
    }
}

/// What sits between two flushes.
#[derive(Clone, Debug, PartialEq)]
pub struct StepModel {
    /// Synchronous or overlapped optimizer.
    pub mode: OptimizerMode,
    /// Time of the optimizer step on each device (all its stages).
    pub optimizer: Vec<f64>,
    /// Time of each stage's gradient all-reduce over its data-parallel replicas (0: none).
    pub grad_sync: Vec<f64>,
    /// A stage's all-reduce starts after its last W instead of after the device's last pass.
    pub overlap_grad_sync: bool,
    /// Flushes simulated in the overlapped mode (at least 2).
    pub iterations: u32,
}

impl StepModel {
    /// No optimizer time, no data parallelism, synchronous: the period is the makespan.
    pub fn plain(devices: u32, stages: u32) -> Self {
        StepModel {
            mode: OptimizerMode::Sync,
            optimizer: vec![0.0; devices as usize],
            grad_sync: vec![0.0; stages as usize],
            overlap_grad_sync: false,
            iterations: DEFAULT_ITERATIONS,
        }
    }

    fn check(&self, s: &Schedule) -> Result<(), Error> {
        if self.optimizer.len() != s.devices as usize || self.grad_sync.len() != s.stages as usize {
            return Err(Error::config(format!(
                "the step model lists {} optimizer times and {} gradient syncs for a schedule of {} devices and {} stages",
                self.optimizer.len(),
                self.grad_sync.len(),
                s.devices,
                s.stages
            )));
        }
        let bad = self
            .optimizer
            .iter()
            .chain(&self.grad_sync)
            .find(|x| !x.is_finite() || **x < 0.0 || **x > limits::VALUE);
        if let Some(x) = bad {
            return Err(Error::config(format!(
                "optimizer and gradient-sync times must be finite, at least 0 and at most {:e}; got {x}",
                limits::VALUE
            )));
        }
        if !(2..=MAX_ITERATIONS).contains(&self.iterations) {
            return Err(Error::fix(
                format!(
                    "a training step of {} iteration(s): the steady state needs at least 2, and at most {MAX_ITERATIONS} are simulated",
                    self.iterations
                ),
                Param::Iterations,
                DEFAULT_ITERATIONS.to_string(),
            ));
        }
        Ok(())
    }
}

/// A step model independent of the schedule's shape, as a user gives it: [`StepSpec::model_for`]
/// turns it into a [`StepModel`] for one schedule.
#[derive(Clone, Debug, PartialEq)]
pub struct StepSpec {
    /// Synchronous or overlapped optimizer.
    pub mode: OptimizerMode,
    /// Optimizer time per device; `None`: the stage costs' own (`optimizer` of each stage,
    /// summed per device), else 0.
    pub optimizer: Option<f64>,
    /// Gradient all-reduce time of one device's share of the model: the `p` devices together
    /// sync `p · grad_sync`, shared among the stages in proportion to their W time (a stage's
    /// gradients are as large as its weights, whose gradient W computes).
    pub grad_sync: f64,
    /// A stage's all-reduce starts after its last W instead of after the device's last pass.
    pub overlap_grad_sync: bool,
    /// Flushes simulated in the overlapped mode.
    pub iterations: u32,
}

impl Default for StepSpec {
    fn default() -> Self {
        StepSpec {
            mode: OptimizerMode::Sync,
            optimizer: None,
            grad_sync: 0.0,
            overlap_grad_sync: false,
            iterations: DEFAULT_ITERATIONS,
        }
    }
}

impl StepSpec {
    /// The step model for schedule `s` under `costs`.
    pub fn model_for(&self, s: &Schedule, costs: &StageCosts) -> Result<StepModel, Error> {
        let (p, n) = (s.devices as usize, s.stages as usize);
        let optimizer = match self.optimizer {
            Some(t) => vec![t; p],
            None => {
                let mut per = vec![0.0; p];
                if let Some(stages) = costs.optimizer(s.stages)? {
                    for (st, t) in stages.into_iter().enumerate() {
                        per[s.device_of(st as u32) as usize] += t;
                    }
                }
                per
            }
        };
        let table = costs.for_placement(&s.placement, s.devices)?;
        let w: Vec<f64> = table.dur.iter().map(|d| d[PassKind::W.index()]).collect();
        let total: f64 = w.iter().sum();
        let total_sync = self.grad_sync * p as f64;
        let grad_sync = if total > 0.0 {
            w.iter().map(|x| total_sync * x / total).collect()
        } else {
            vec![total_sync / n.max(1) as f64; n]
        };
        Ok(StepModel {
            mode: self.mode,
            optimizer,
            grad_sync,
            overlap_grad_sync: self.overlap_grad_sync,
            iterations: self.iterations,
        })
    }
}

/// Flushes simulated by default in the overlapped mode.
pub const DEFAULT_ITERATIONS: u32 = 6;
/// The most flushes simulated.
pub const MAX_ITERATIONS: u32 = 64;

/// The training step of a schedule.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StepResult {
    /// Synchronous or overlapped optimizer.
    pub mode: OptimizerMode,
    /// One flush, time 0 to its last pass (no optimizer).
    pub makespan: f64,
    /// Steady-state time per iteration, optimizer and gradient sync included.
    pub period: f64,
    /// Idle share of the devices over the flush's makespan.
    pub bubble_rate: f64,
    /// Idle share within each device's own span (its first pass's start to its last pass's end),
    /// summed over the devices: the zero-bubble papers' bubble rate.
    pub stage_bubble_rate: f64,
    /// The same per device.
    pub stage_bubble: Vec<f64>,
    /// Idle share of the devices over the period: `1 - Σ busy / (p · period)`.
    pub period_bubble_rate: f64,
    /// Per device, how long its gradient sync runs past its last pass in a flush.
    pub grad_sync_exposed: Vec<f64>,
    /// Flushes simulated (1 in the synchronous mode, where every iteration is the same).
    pub iterations: u32,
    /// When each simulated iteration was done on every device (optimizer included).
    pub iteration_ends: Vec<f64>,
}

/// The idle share within each device's own span (its first pass's start to its last pass's
/// end) of a simulated flush, and the same over all devices (idle over the summed spans).
pub fn stage_bubble(r: &crate::engine::SimResult) -> (Vec<f64>, f64) {
    let (mut idle, mut span_sum) = (0.0, 0.0);
    let per: Vec<f64> = r
        .spans()
        .into_iter()
        .zip(&r.busy)
        .map(|(span, busy)| {
            idle += (span - busy).max(0.0);
            span_sum += span;
            if span > EPS {
                ((span - busy) / span).max(0.0)
            } else {
                0.0
            }
        })
        .collect();
    let rate = if span_sum > EPS { idle / span_sum } else { 0.0 };
    (per, rate)
}

impl StepModel {
    /// End of a device's gradient syncs, given the end of its last pass and the end of its last
    /// W (or BW) of each of its stages.
    fn sync_end(&self, last_pass: f64, last_w: &[(u32, f64)]) -> f64 {
        let overlap = self.overlap_grad_sync;
        let mut order: Vec<(f64, u32)> = last_w.iter().map(|&(s, t)| (t, s)).collect();
        order.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let mut t = if overlap { 0.0 } else { last_pass };
        for (ready, s) in order {
            let cost = self.grad_sync[s as usize];
            if cost > 0.0 {
                t = t.max(if overlap { ready } else { last_pass }) + cost;
            }
        }
        t.max(last_pass)
    }
}

/// Records that `pass` ended at `end` in a device's last W (or BW) per stage.
fn note_w(last_w: &mut Vec<(u32, f64)>, pass: Pass, end: f64) {
    if !matches!(pass.kind, PassKind::W | PassKind::BW) {
        return;
    }
    match last_w.iter_mut().find(|(s, _)| *s == pass.stage) {
        Some(x) => x.1 = x.1.max(end),
        None => last_w.push((pass.stage, end)),
    }
}

/// Per device, the end of its last W (or BW) on each of its stages in a flush.
fn last_ws(s: &Schedule, r: &crate::engine::SimResult) -> Vec<Vec<(u32, f64)>> {
    s.lists
        .iter()
        .zip(&r.end)
        .map(|(list, ends)| {
            let mut out = Vec::new();
            for (&q, &e) in list.iter().zip(ends) {
                note_w(&mut out, q, e);
            }
            out
        })
        .collect()
}

/// Holds each device's first pass of an iteration until its gradient sync and optimizer of
/// the iteration before are done.
struct Gate<'a> {
    m: u32,
    model: &'a StepModel,
    /// Per device: the iteration it is in, the end of its last pass, its last W per stage.
    iteration: Vec<u32>,
    last_end: Vec<f64>,
    last_w: Vec<Vec<(u32, f64)>>,
    /// Per device and iteration: when its optimizer finished.
    done: Vec<Vec<f64>>,
}

impl Gate<'_> {
    /// Device `d`'s gradient sync and optimizer after its passes so far: when it is free for
    /// the next iteration (also recorded).
    fn close_iteration(&mut self, d: usize) -> f64 {
        let free = self.model.sync_end(self.last_end[d], &self.last_w[d]) + self.model.optimizer[d];
        self.done[d].push(free);
        self.last_w[d].clear();
        free
    }
}

impl Observer for Gate<'_> {
    fn start(&mut self, d: usize, pass: Pass, ready: f64) -> f64 {
        let k = pass.mb / self.m;
        if k == self.iteration[d] {
            return ready;
        }
        self.iteration[d] = k;
        ready.max(self.close_iteration(d))
    }

    fn ran(&mut self, d: usize, pass: Pass, _start: f64, end: f64) {
        self.last_end[d] = end;
        note_w(&mut self.last_w[d], pass, end);
    }
}

/// The training step of `s` under `costs` and `model`. See the [module documentation](self).
pub fn training_step(
    s: &Schedule,
    costs: &StageCosts,
    model: &StepModel,
) -> Result<StepResult, Error> {
    let r = simulate(s, costs)?;
    step_of(s, costs, model, &r)
}

/// [`training_step`] given the flush `r` already simulated (`simulate(s, costs)`).
pub fn step_of(
    s: &Schedule,
    costs: &StageCosts,
    model: &StepModel,
    r: &crate::engine::SimResult,
) -> Result<StepResult, Error> {
    model.check(s)?;
    let p = s.devices as usize;
    let (stage_bubble, stage_bubble_rate) = stage_bubble(r);
    let ws = last_ws(s, r);
    let lasts: Vec<f64> = r
        .end
        .iter()
        .map(|e| e.last().copied().unwrap_or(0.0))
        .collect();
    let ends: Vec<f64> = (0..p).map(|d| model.sync_end(lasts[d], &ws[d])).collect();
    let grad_sync_exposed: Vec<f64> = ends
        .iter()
        .zip(&lasts)
        .map(|(e, l)| (e - l).max(0.0))
        .collect();
    let busy: f64 = r.busy.iter().sum();
    let finish = |period: f64, iterations: u32, iteration_ends: Vec<f64>| {
        let period_bubble_rate = if period > EPS {
            (1.0 - busy / (p as f64 * period)).max(0.0)
        } else {
            0.0
        };
        StepResult {
            mode: model.mode,
            makespan: r.makespan,
            period,
            bubble_rate: r.bubble_rate,
            stage_bubble_rate,
            stage_bubble: stage_bubble.clone(),
            period_bubble_rate,
            grad_sync_exposed: grad_sync_exposed.clone(),
            iterations,
            iteration_ends,
        }
    };
    if model.mode == OptimizerMode::Sync {
        // Everyone waits for the slowest device's sync, then runs the optimizer: every
        // iteration is this one, shifted.
        let barrier = ends.iter().cloned().fold(0.0, f64::max);
        let opt = model.optimizer.iter().cloned().fold(0.0, f64::max);
        let period = barrier + opt;
        return Ok(finish(period, 1, vec![period]));
    }
    // Overlapped: `iterations` flushes back to back, microbatches renumbered.
    let k = model.iterations;
    let m = s.microbatches;
    let total = u64::from(k) * u64::from(m);
    let passes = u64::from(k) * s.num_passes() as u64;
    if total > u64::from(limits::MICROBATCHES) || passes > limits::PASSES {
        return Err(Error::TooLarge {
            what: "the microbatches of the simulated iterations".into(),
            value: passes,
            limit: limits::PASSES,
            hint: "simulate fewer iterations or microbatches".into(),
            param: Some(Param::Iterations),
        });
    }
    let mut many = s.clone();
    many.microbatches = total as u32;
    many.lists = s
        .lists
        .iter()
        .map(|list| {
            (0..k)
                .flat_map(|i| {
                    list.iter()
                        .map(move |q| Pass::new(q.kind, q.stage, q.mb + i * m))
                })
                .collect()
        })
        .collect();
    many.pairs = (0..k)
        .flat_map(|i| {
            s.pairs
                .iter()
                .map(move |pair| pair.map(|q| Pass::new(q.kind, q.stage, q.mb + i * m)))
        })
        .collect();
    let net = Net::of(&many, costs)?;
    let gate = Gate {
        m,
        model,
        iteration: vec![0; p],
        last_end: vec![0.0; p],
        last_w: vec![Vec::new(); p],
        done: vec![Vec::new(); p],
    };
    let mut e = Engine::with_observer(&net, gate).without_memory();
    e.reserve(&many.lists.iter().map(Vec::len).collect::<Vec<_>>());
    e.drive(&mut InOrder::of(&many))
        .map_err(|_| Error::config("the repeated schedule's lists block; validate it first"))?;
    let (_, mut gate) = e.into_parts();
    // The last iteration's sync and optimizer.
    for d in 0..p {
        gate.close_iteration(d);
    }
    let iteration_ends: Vec<f64> = (0..k as usize)
        .map(|i| {
            gate.done
                .iter()
                .map(|v| v.get(i).copied().unwrap_or(0.0))
                .fold(0.0, f64::max)
        })
        .collect();
    // The steady state: the mean time between iteration ends over the second half.
    let from = (k as usize / 2).max(1);
    let last = k as usize - 1;
    let period = if last > from {
        (iteration_ends[last] - iteration_ends[from - 1]) / (last - from + 1) as f64
    } else {
        iteration_ends[last] - iteration_ends[last - 1]
    };
    Ok(finish(period, k, iteration_ends))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::{Costs, Params};

    fn uniform(f: f64, b: f64, w: f64, c: f64) -> StageCosts {
        StageCosts::uniform(Costs::parse(&format!("f={f},b={b},w={w},c={c}")).unwrap())
    }

    fn model(s: &Schedule, mode: OptimizerMode, opt: f64, sync: f64, overlap: bool) -> StepModel {
        StepModel {
            mode,
            optimizer: vec![opt; s.devices as usize],
            grad_sync: vec![sync; s.stages as usize],
            overlap_grad_sync: overlap,
            iterations: 6,
        }
    }

    #[test]
    fn plain_step_is_the_flush() {
        let s = crate::generate("1f1b", &Params::new(4, 8).unwrap()).unwrap();
        let c = StageCosts::default();
        let r = training_step(&s, &c, &StepModel::plain(4, 4)).unwrap();
        assert!((r.period - r.makespan).abs() < 1e-9);
        // 1F1B at equal costs: device d idles (p-1)(F+B+W) over the makespan, but within its
        // own span only the waits of the steady state and cool-down.
        assert!((r.bubble_rate - 3.0 / 11.0).abs() < 1e-9);
        assert!(r.stage_bubble_rate < r.bubble_rate);
    }

    #[test]
    fn sync_period_is_the_closed_form() {
        let s = crate::generate("zb-h1", &Params::new(4, 12).unwrap()).unwrap();
        let c = uniform(1.0, 1.2, 0.8, 0.05);
        let flush = simulate(&s, &c).unwrap();
        let r = training_step(&s, &c, &model(&s, OptimizerMode::Sync, 3.0, 0.0, false)).unwrap();
        assert!((r.period - (flush.makespan + 3.0)).abs() < 1e-9);
        // An all-reduce of 2 per stage after the last pass: exposed in full.
        let r2 = training_step(&s, &c, &model(&s, OptimizerMode::Sync, 3.0, 2.0, false)).unwrap();
        assert!((r2.period - (flush.makespan + 5.0)).abs() < 1e-9);
        assert!(r2.grad_sync_exposed.iter().all(|x| (x - 2.0).abs() < 1e-9));
    }

    #[test]
    fn overlapped_grad_sync_hides_behind_the_last_ws() {
        // On a V-shape device the chunk-1 stage's Ws end before the chunk-0 stage's: its
        // all-reduce overlaps them.
        let s = crate::generate("v-half", &Params::new(4, 16).unwrap()).unwrap();
        let c = uniform(1.0, 1.0, 1.0, 0.0);
        let after =
            training_step(&s, &c, &model(&s, OptimizerMode::Sync, 0.0, 0.5, false)).unwrap();
        let during =
            training_step(&s, &c, &model(&s, OptimizerMode::Sync, 0.0, 0.5, true)).unwrap();
        assert!(during.period < after.period - 1e-9);
        assert!(during.grad_sync_exposed.iter().all(|&x| x >= 0.5 - 1e-9));
    }

    #[test]
    fn overlapped_optimizer_is_between_the_device_bound_and_the_sync_period() {
        for name in [
            "1f1b",
            "zb-h1",
            "v-min",
            "v-half",
            "zb-v",
            "interleaved-1f1b",
        ] {
            let s = crate::generate(name, &Params::new(4, 8).unwrap()).unwrap();
            let c = uniform(1.0, 1.3, 0.7, 0.1);
            for opt in [0.0, 2.0] {
                let sync = training_step(&s, &c, &model(&s, OptimizerMode::Sync, opt, 0.0, false))
                    .unwrap();
                let over =
                    training_step(&s, &c, &model(&s, OptimizerMode::Overlap, opt, 0.0, false))
                        .unwrap();
                let flush = simulate(&s, &c).unwrap();
                let busiest = flush.busy.iter().cloned().fold(0.0, f64::max);
                assert!(
                    over.period <= sync.period + 1e-9,
                    "{name}: {over:?} vs {sync:?}"
                );
                assert!(
                    over.period >= busiest + opt - 1e-9,
                    "{name}: {}",
                    over.period
                );
                assert_eq!(over.iteration_ends.len(), 6);
                assert!(over.iteration_ends.windows(2).all(|w| w[1] > w[0]));
            }
        }
    }

    #[test]
    fn overlap_hides_an_uneven_optimizer() {
        // 1F1B at equal costs: the last device ends its flush 3 BWs before the first and waits
        // 3 Fs for the next flush's first forward, so its heavy optimizer (an LM head's) costs
        // nothing when it overlaps, and all of it when everyone waits for it.
        let (p, m) = (4u32, 8u32);
        let s = crate::generate("1f1b", &Params::new(p, m).unwrap()).unwrap();
        let c = StageCosts::default();
        let mut mdl = model(&s, OptimizerMode::Sync, 0.0, 0.0, false);
        mdl.optimizer = vec![0.0, 0.0, 0.0, 4.0];
        let flush = simulate(&s, &c).unwrap();
        let sync = training_step(&s, &c, &mdl).unwrap();
        mdl.mode = OptimizerMode::Overlap;
        let over = training_step(&s, &c, &mdl).unwrap();
        assert!((sync.period - (flush.makespan + 4.0)).abs() < 1e-9);
        assert!((over.period - flush.makespan).abs() < 1e-9, "{over:?}");
    }

    #[test]
    fn stage_cost_optimizer_times_follow_the_stages_to_their_devices() {
        use crate::params::StageCost;
        let stage = |opt: f64, w: f64| StageCost {
            f: 1.0,
            b: 1.0,
            w,
            bw: None,
            activation: 1.0,
            b_release: None,
            comm: None,
            optimizer: Some(opt),
            comm_f: None,
            comm_b: None,
            r: None,
            keep: None,
            offload: None,
            selective: None,
            selective_keep: None,
        };
        // Four table stages, the last (an LM head) with 4x the optimizer and 3x the W.
        let table = StageCosts::table(
            vec![
                stage(1.0, 1.0),
                stage(1.0, 1.0),
                stage(1.0, 1.0),
                stage(4.0, 3.0),
            ],
            0.0,
            0.0,
        )
        .unwrap();
        let prm = Params::new(2, 4).unwrap().with_costs(table.clone());
        // 1F1B on 2 devices merges stages in pairs: 2 and 5.
        let s = crate::generate("1f1b", &prm).unwrap();
        let spec = StepSpec {
            grad_sync: 1.0,
            ..StepSpec::default()
        };
        let m = spec.model_for(&s, &table).unwrap();
        assert_eq!(m.optimizer, vec![2.0, 5.0]);
        // 2 devices sync 2 in all, shared as the W times 2 : 4.
        assert!(
            (m.grad_sync[0] - 2.0 / 3.0).abs() < 1e-9 && (m.grad_sync[1] - 4.0 / 3.0).abs() < 1e-9
        );
        // V-shape on 2 devices splits nothing (4 stages): device 0 holds stages 0 and 3.
        let v = crate::generate("v-half", &prm).unwrap();
        assert_eq!(
            spec.model_for(&v, &table).unwrap().optimizer,
            vec![5.0, 2.0]
        );
        // An explicit time wins over the table's.
        let fixed = StepSpec {
            optimizer: Some(0.5),
            ..StepSpec::default()
        };
        assert_eq!(
            fixed.model_for(&s, &table).unwrap().optimizer,
            vec![0.5, 0.5]
        );
        // 8 stages split each table stage in two.
        assert_eq!(
            table.optimizer(8).unwrap().unwrap(),
            vec![0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 2.0, 2.0]
        );
        assert!(table.optimizer(3).is_err());
    }

    #[test]
    fn bad_models_are_refused() {
        let s = crate::generate("1f1b", &Params::new(2, 4).unwrap()).unwrap();
        let c = StageCosts::default();
        let mut m = StepModel::plain(2, 2);
        m.iterations = 1;
        assert!(training_step(&s, &c, &m).is_err());
        let mut m = StepModel::plain(2, 2);
        m.optimizer = vec![f64::NAN, 0.0];
        assert!(training_step(&s, &c, &m).is_err());
        let m = StepModel::plain(3, 3);
        assert!(training_step(&s, &c, &m).is_err());
    }
}
