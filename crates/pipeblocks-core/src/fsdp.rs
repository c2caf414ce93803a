//! Fully sharded data parallelism (FSDP) on top of a pipeline schedule: collective actions, their
//! plan, and a simulator where communication is a resource of its own.
//!
//! # Model
//!
//! Every pipeline device is replicated `d` times (the data-parallel group); each replica keeps a
//! `1/d` shard of its stages' parameters, gradients and optimizer state. Before a stage computes,
//! its parameters are **all-gathered** into a full buffer; the buffer is **released** after the
//! last pass that uses it; the full gradients accumulated by the weight backwards are
//! **reduce-scattered** back to the shards. The replicas of one pipeline device run the same
//! lists in lockstep, so one replica is simulated and the group only enters through the costs.
//!
//! # Representation
//!
//! A [`Schedule`] stays compute-only. An [`FsdpPlan`] is a second view of it: per device one list
//! of [`Action`]s, the device's compute passes in the schedule's order with collective actions
//! ([`Action::Unshard`], [`Action::Reshard`], [`Action::ReduceGrad`], per stage) inserted between
//! them. Keeping the plan beside the schedule leaves validation, simulation, formats and every
//! generator of compute-only schedules untouched, lets any schedule gain FSDP ([`FsdpPlan::derive`]),
//! and mirrors PyTorch, whose runtime lists `UNSHARD`, `RESHARD` and `REDUCE_GRAD` actions in the
//! same per-rank lists as the compute (written by
//! [`crate::format::torch_csv::write_with_collectives`]). [`validate_plan`] checks that a plan
//! matches its schedule and never computes on a stage whose parameters are not gathered.
//!
//! # Simulation ([`simulate_fsdp`])
//!
//! Each device has three resources: a **compute stream** running its passes in order, a
//! **collective stream** running its collectives in plan order, and the point-to-point link to its
//! neighbours (the schedule simulator's latency, not shared with collectives). Timing rules:
//! - an action is *issued* when the compute pass before it in the plan starts (time 0 if none):
//!   the control thread launches a pass and moves on;
//! - an all-gather starts at `max(issue, collective stream free)` and takes
//!   `latency + (d−1)/d · bytes / bandwidth` (ring); a pass of the stage waits for it;
//! - a release frees the buffer when the pass before it in the plan ends;
//! - a reduce-scatter starts when the pass before it ends and the collective stream is free; the
//!   gradient buffer lives from the stage's first weight backward after the previous
//!   reduce-scatter to the end of this one.
//!
//! Memory per device: the shards (`params · (2·param_bytes + state_bytes) / d`, parameters,
//! gradients and optimizer state), plus gathered parameter buffers (from the gather's issue to
//! the release), plus full gradient buffers, plus activations as in [`crate::simulate`].
//!
//! **Exposed communication** of a device is the time its compute stream waits for an all-gather
//! beyond what its other inputs impose, plus the collective time left after its last pass. With
//! infinite bandwidth and no latency every collective takes 0 and nothing is exposed.
//!
//! # Traffic
//!
//! A plan derived with units of `U` microbatches gathers each stage twice and reduce-scatters it
//! once per unit: `3 · ⌈N/U⌉` collectives of the stage's parameters per step. For a GPT layer
//! (`12h²` parameters, plus `13h` biases and norms) that is `36·N·h²/U` parameter elements per layer
//! and step when `U | N` (`72·N·h²/U` bytes in 16 bits); `U = N` is breadth-first.

use std::fmt;

use serde::Serialize;

use crate::engine::{bubble_rate, simulate_net, Engine, InOrder, Net, Observer, SimResult};
use crate::error::{Error, Param};
use crate::ir::{Pass, PassKind, Schedule};
use crate::model::{DeviceSpec, ModelCosts, ModelSpec};
use crate::params::{Params, StageCosts, StageTable};
use crate::registry;
use crate::validate::validate;

/// One entry of a device's FSDP plan list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum Action {
    /// A compute pass of the schedule.
    Compute(Pass),
    /// All-gather the parameters of a stage (PyTorch `UNSHARD`).
    Unshard(u32),
    /// Release the gathered parameters of a stage (PyTorch `RESHARD`).
    Reshard(u32),
    /// Reduce-scatter the accumulated gradients of a stage (PyTorch `REDUCE_GRAD`).
    ReduceGrad(u32),
}

impl Action {
    /// The stage the action concerns.
    pub fn stage(&self) -> u32 {
        match *self {
            Action::Compute(p) => p.stage,
            Action::Unshard(s) | Action::Reshard(s) | Action::ReduceGrad(s) => s,
        }
    }
}

impl fmt::Display for Action {
    /// pipeblocks' own spelling: the pass (`F3.7`), or `AG3` (gather), `RL3` (release), `RS3`
    /// (reduce-scatter).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Compute(p) => write!(f, "{p}"),
            Action::Unshard(s) => write!(f, "AG{s}"),
            Action::Reshard(s) => write!(f, "RL{s}"),
            Action::ReduceGrad(s) => write!(f, "RS{s}"),
        }
    }
}

/// The collective actions of a schedule, merged with its compute passes per device.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FsdpPlan {
    /// Microbatches per gather window (`m`: once per phase and step).
    pub unit: u32,
    /// Per device, the compute passes in schedule order with collectives in between.
    pub lists: Vec<Vec<Action>>,
}

/// How many collectives of each kind a plan holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PlanCounts {
    /// All-gathers.
    pub gathers: usize,
    /// Releases of gathered parameters.
    pub releases: usize,
    /// Reduce-scatters.
    pub reduce_scatters: usize,
}

/// FSDP settings of a simulation.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FsdpConfig {
    /// Data-parallel group size `d` (1: nothing is sharded, collectives are free).
    pub dp: u32,
    /// Collective bandwidth per device, bytes per time unit of the costs; may be infinite.
    pub bandwidth: f64,
    /// Latency of one collective, in time units.
    pub latency: f64,
    /// Parameters of each stage (length `S`).
    pub stage_params: Vec<f64>,
    /// Bytes per gathered parameter and per gradient element (2 for 16-bit).
    pub param_bytes: f64,
    /// Optimizer bytes per parameter, sharded (12: fp32 master copy and two Adam moments).
    pub state_bytes: f64,
    /// Prefetch: a gather is issued at least this many gather-durations of compute before the
    /// window's first pass (as far as the list allows).
    pub prefetch: f64,
}

impl FsdpConfig {
    /// Defaults for `stage_params`: 16-bit parameters and gradients, Adam state, prefetch 1.
    pub fn new(dp: u32, bandwidth: f64, latency: f64, stage_params: Vec<f64>) -> Self {
        FsdpConfig {
            dp,
            bandwidth,
            latency,
            stage_params,
            param_bytes: 2.0,
            state_bytes: 12.0,
            prefetch: 1.0,
        }
    }

    /// Bytes of a stage's full parameters (and of its full gradients).
    pub fn stage_bytes(&self, stage: u32) -> f64 {
        self.stage_params[stage as usize] * self.param_bytes
    }

    /// Time of one ring collective over `bytes`: `latency + (d−1)/d · bytes / bandwidth`, 0 when
    /// `d = 1`.
    pub fn collective_time(&self, bytes: f64) -> f64 {
        if self.dp <= 1 {
            return 0.0;
        }
        let d = self.dp as f64;
        let transfer = if self.bandwidth.is_infinite() {
            0.0
        } else {
            (d - 1.0) / d * bytes / self.bandwidth
        };
        self.latency + transfer
    }

    fn check(&self, s: &Schedule) -> Result<(), Error> {
        if let Some(q) = s
            .lists
            .iter()
            .flatten()
            .find(|q| matches!(q.kind, PassKind::R | PassKind::O | PassKind::L))
        {
            return Err(Error::config(format!(
                "FSDP's simulation takes F, B, W and BW passes only, and {} lists {q}; simulate the schedule without FSDP, or drop its recompute and offload passes",
                s.name
            )));
        }
        if self.dp == 0 {
            return Err(Error::Zero(Param::Replicas));
        }
        if self.stage_params.len() != s.stages as usize {
            return Err(Error::config(format!(
                "FSDP parameter sizes list {} stages, the schedule has {}",
                self.stage_params.len(),
                s.stages
            )));
        }
        let bad = |x: f64| x.is_nan() || x < 0.0;
        if self.bandwidth.is_nan() || self.bandwidth <= 0.0 {
            return Err(Error::config(
                "the collective bandwidth must be positive (or inf)",
            ));
        }
        if bad(self.latency) || !self.latency.is_finite() || bad(self.prefetch) {
            return Err(Error::config(
                "latency and prefetch must be finite and not negative",
            ));
        }
        if self.stage_params.iter().any(|&x| bad(x) || !x.is_finite())
            || bad(self.param_bytes)
            || bad(self.state_bytes)
        {
            return Err(Error::config(
                "parameter sizes must be finite and not negative",
            ));
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug)]
struct GatherWindow {
    stage: u32,
    first: usize,
    last: usize,
    backward: bool,
}

impl FsdpPlan {
    /// Derives the plan of any schedule: for each stage, one window per unit of `unit`
    /// microbatches and phase (forward; backward), from the window's first pass to its last.
    /// Windows of one stage that overlap in the list are merged (a stage is never gathered twice
    /// at once). Each window gets a gather, prefetched backwards over enough compute to cover
    /// `prefetch ×` its duration (never before the previous window of the stage is released), a
    /// release after its last pass, and a reduce-scatter there when it holds weight backwards.
    pub fn derive(
        s: &Schedule,
        unit: u32,
        costs: &StageCosts,
        f: &FsdpConfig,
    ) -> Result<FsdpPlan, Error> {
        if unit == 0 {
            return Err(Error::Zero(Param::Group));
        }
        f.check(s)?;
        let dur = costs.for_placement(&s.placement, s.devices)?.dur;
        let mut lists = Vec::with_capacity(s.devices as usize);
        for list in &s.lists {
            // Windows keyed by (stage, unit, backward), in order of first appearance.
            let mut windows: Vec<GatherWindow> = Vec::new();
            let mut key_of: std::collections::HashMap<(u32, u32, bool), usize> = Default::default();
            for (i, p) in list.iter().enumerate() {
                let bwd = p.kind != PassKind::F;
                let key = (p.stage, p.mb / unit, bwd);
                match key_of.get(&key) {
                    Some(&w) => windows[w].last = i,
                    None => {
                        key_of.insert(key, windows.len());
                        windows.push(GatherWindow {
                            stage: p.stage,
                            first: i,
                            last: i,
                            backward: bwd,
                        });
                    }
                }
            }
            // Merge overlapping windows of one stage.
            windows.sort_by_key(|w| (w.stage, w.first));
            let mut merged: Vec<GatherWindow> = Vec::new();
            for w in windows {
                match merged.last_mut() {
                    Some(prev) if prev.stage == w.stage && w.first <= prev.last => {
                        prev.last = prev.last.max(w.last);
                        prev.backward |= w.backward;
                    }
                    _ => merged.push(w),
                }
            }
            let n = list.len();
            let mut before: Vec<Vec<(usize, u32)>> = vec![Vec::new(); n + 1];
            let mut release_after: Vec<Vec<u32>> = vec![Vec::new(); n];
            let mut reduce_after: Vec<Vec<u32>> = vec![Vec::new(); n];
            let mut prev_last: Option<(u32, usize)> = None;
            for w in &merged {
                let lb = match prev_last {
                    Some((st, last)) if st == w.stage => last + 1,
                    _ => 0,
                };
                let need = f.prefetch * f.collective_time(f.stage_bytes(w.stage));
                let mut q = w.first;
                // Compute overlapping a gather placed before position q: passes q-1 .. first-1.
                let mut overlap: f64 = if q >= 1 {
                    (q - 1..w.first)
                        .map(|j| dur[list[j].stage as usize][list[j].kind.index()])
                        .sum()
                } else {
                    0.0
                };
                while q > lb && overlap < need {
                    q -= 1;
                    if q >= 1 {
                        let x = list[q - 1];
                        overlap += dur[x.stage as usize][x.kind.index()];
                    }
                }
                before[q].push((w.first, w.stage));
                release_after[w.last].push(w.stage);
                if w.backward {
                    reduce_after[w.last].push(w.stage);
                }
                prev_last = Some((w.stage, w.last));
            }
            let mut out = Vec::with_capacity(n + 3 * merged.len());
            for i in 0..=n {
                if i > 0 {
                    out.extend(release_after[i - 1].iter().map(|&st| Action::Reshard(st)));
                }
                before[i].sort();
                out.extend(before[i].iter().map(|&(_, st)| Action::Unshard(st)));
                if i > 0 {
                    out.extend(reduce_after[i - 1].iter().map(|&st| Action::ReduceGrad(st)));
                }
                if i < n {
                    out.push(Action::Compute(list[i]));
                }
            }
            lists.push(out);
        }
        Ok(FsdpPlan { unit, lists })
    }

    /// Number of collectives of each kind in the plan.
    pub fn counts(&self) -> PlanCounts {
        let mut c = PlanCounts::default();
        for a in self.lists.iter().flatten() {
            match a {
                Action::Unshard(_) => c.gathers += 1,
                Action::Reshard(_) => c.releases += 1,
                Action::ReduceGrad(_) => c.reduce_scatters += 1,
                Action::Compute(_) => {}
            }
        }
        c
    }
}

/// Checks that a plan fits its schedule: the compute passes of each device list are the
/// schedule's in the same order, collectives name stages of their device, a stage computes only
/// while gathered, is never gathered twice at once, and ends the step released with every weight
/// gradient reduce-scattered.
pub fn validate_plan(s: &Schedule, plan: &FsdpPlan) -> Result<(), Error> {
    if plan.lists.len() != s.devices as usize {
        return Err(Error::config(format!(
            "the FSDP plan has {} device lists, the schedule {} devices",
            plan.lists.len(),
            s.devices
        )));
    }
    let n_st = s.stages as usize;
    for (d, (acts, passes)) in plan.lists.iter().zip(&s.lists).enumerate() {
        let err = |position: usize, why: String| Error::Plan {
            device: d as u32,
            position,
            why,
        };
        let mut gathered = vec![false; n_st];
        let mut grads = vec![false; n_st];
        let mut k = 0;
        for (i, a) in acts.iter().enumerate() {
            let st = a.stage();
            if st as usize >= n_st || s.device_of(st) != d as u32 {
                return Err(err(
                    i,
                    format!("{a} concerns stage {st}, which device {d} does not hold"),
                ));
            }
            match *a {
                Action::Compute(p) => {
                    if passes.get(k) != Some(&p) {
                        let want = passes
                            .get(k)
                            .map(|x| x.to_string())
                            .unwrap_or_else(|| "nothing more".into());
                        return Err(err(
                            i,
                            format!("{p} differs from the schedule, which runs {want} here"),
                        ));
                    }
                    k += 1;
                    if !gathered[st as usize] {
                        return Err(err(
                            i,
                            format!("{p} runs while stage {st} is not gathered; gather (AG{st}) before it"),
                        ));
                    }
                    if matches!(p.kind, PassKind::W | PassKind::BW) {
                        grads[st as usize] = true;
                    }
                }
                Action::Unshard(_) => {
                    if gathered[st as usize] {
                        return Err(err(
                            i,
                            format!("AG{st} gathers stage {st} again before releasing it"),
                        ));
                    }
                    gathered[st as usize] = true;
                }
                Action::Reshard(_) => {
                    if !gathered[st as usize] {
                        return Err(err(
                            i,
                            format!("RL{st} releases stage {st}, which is not gathered"),
                        ));
                    }
                    gathered[st as usize] = false;
                }
                Action::ReduceGrad(_) => {
                    if !grads[st as usize] {
                        return Err(err(
                            i,
                            format!("RS{st} reduce-scatters stage {st} with no new weight gradient since the last one"),
                        ));
                    }
                    grads[st as usize] = false;
                }
            }
        }
        if k != passes.len() {
            return Err(err(
                acts.len(),
                format!(
                    "the plan lists {k} compute passes, the schedule {}",
                    passes.len()
                ),
            ));
        }
        if let Some(st) = (0..n_st).find(|&st| gathered[st]) {
            return Err(err(
                acts.len(),
                format!("stage {st} is still gathered at the end of the step; release it (RL{st})"),
            ));
        }
        if let Some(st) = (0..n_st).find(|&st| grads[st]) {
            return Err(err(
                acts.len(),
                format!("stage {st}'s last gradients are never reduce-scattered; add RS{st} after its last weight backward"),
            ));
        }
    }
    Ok(())
}

/// Kind of a simulated collective.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum CollectiveKind {
    /// All-gather of parameters.
    AllGather,
    /// Reduce-scatter of gradients.
    ReduceScatter,
}

/// Timing of one collective.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CollectiveTiming {
    /// Kind.
    pub kind: CollectiveKind,
    /// Stage.
    pub stage: u32,
    /// When it was issued.
    pub issue: f64,
    /// When it started on the collective stream.
    pub start: f64,
    /// When it ended.
    pub end: f64,
    /// Payload: the full buffer's bytes.
    pub bytes: f64,
}

/// A point of a device's memory curve.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct MemoryPoint {
    /// Time.
    pub time: f64,
    /// Parameter memory from then on: shards, gathered buffers, gradient buffers (bytes).
    pub params: f64,
    /// Activation memory from then on (the simulator's activation units; bytes with a model).
    pub activation: f64,
}

/// The FSDP simulator's figures.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FsdpResult {
    /// Compute timings, bubble and activation figures (as the compute-only simulator reports
    /// them, with the waits for gathers included).
    pub compute: SimResult,
    /// Step time: the last pass or collective to end.
    pub makespan: f64,
    /// Step time of the same schedule with free communication.
    pub compute_only_makespan: f64,
    /// Every collective, per device, in stream order.
    pub collectives: Vec<Vec<CollectiveTiming>>,
    /// Collective payload per device (full buffers gathered and reduce-scattered), bytes.
    pub comm_bytes: Vec<f64>,
    /// Bytes each device sends (and receives) in the ring: `(d−1)/d` of the payload.
    pub wire_bytes: Vec<f64>,
    /// Busy time of each device's collective stream.
    pub comm_time: Vec<f64>,
    /// Communication time not hidden behind compute, per device.
    pub exposed_comm: Vec<f64>,
    /// Static shard memory per device (parameters, gradients, optimizer state), bytes.
    pub shard_memory: Vec<f64>,
    /// Peak parameter memory per device: shards plus gathered and gradient buffers, bytes.
    pub peak_param_memory: Vec<f64>,
    /// Peak activation per device.
    pub peak_activation: Vec<f64>,
    /// Peak of parameter plus activation memory per device.
    pub peak_memory: Vec<f64>,
    /// Collective payload per stage, bytes.
    pub stage_traffic: Vec<f64>,
    /// Memory over time per device.
    pub memory: Vec<Vec<MemoryPoint>>,
}

impl FsdpResult {
    /// Largest per-device peak memory.
    pub fn max_peak_memory(&self) -> f64 {
        self.peak_memory.iter().cloned().fold(0.0, f64::max)
    }
    /// Largest per-device exposed communication.
    pub fn max_exposed_comm(&self) -> f64 {
        self.exposed_comm.iter().cloned().fold(0.0, f64::max)
    }
}

/// Simulates a schedule with its FSDP plan (validating both): the engine runs the compute with
/// [`Collectives`] as its observer.
pub fn simulate_fsdp(
    s: &Schedule,
    plan: &FsdpPlan,
    costs: &StageCosts,
    f: &FsdpConfig,
) -> Result<FsdpResult, Error> {
    validate(s)?;
    f.check(s)?;
    validate_plan(s, plan)?;
    let net = Net::of(s, costs)?;
    // The compute-only run gives the free-communication step time.
    let base = simulate_net(s, &net)?;
    let p = s.devices as usize;
    let n_st = s.stages as usize;
    let observer = Collectives {
        f,
        plan,
        table: &net.table,
        unit_bytes: net.table.unit_bytes.unwrap_or(1.0),
        pos: vec![0; p],
        prev_start: vec![0.0; p],
        prev_end: vec![0.0; p],
        coll_free: vec![0.0; p],
        gather_ready: vec![f64::NAN; n_st],
        grad_open: vec![false; n_st],
        events: vec![Vec::new(); p],
        collectives: vec![Vec::new(); p],
        comm_bytes: vec![0.0; p],
        comm_time: vec![0.0; p],
        stage_traffic: vec![0.0; n_st],
        exposed: vec![0.0; p],
    };
    let mut e = Engine::with_observer(&net, observer);
    e.drive(&mut InOrder::of(s))
        .map_err(|_| Error::config("the schedule's lists block; validate it first"))?;
    let (st, mut obs) = e.into_parts();
    let free: Vec<f64> = st
        .end
        .iter()
        .map(|e| e.last().copied().unwrap_or(0.0))
        .collect();
    for (d, &f) in free.iter().enumerate() {
        obs.advance(d);
        obs.exposed[d] += (obs.coll_free[d] - f).max(0.0);
    }
    let makespan = (0..p)
        .map(|d| free[d].max(obs.coll_free[d]))
        .fold(0.0, f64::max);
    let compute_end = free.iter().cloned().fold(0.0, f64::max);
    let dp = f.dp.max(1) as f64;
    let shard_memory: Vec<f64> = (0..p as u32)
        .map(|d| {
            s.stages_of(d)
                .iter()
                .map(|&x| f.stage_params[x as usize] * (2.0 * f.param_bytes + f.state_bytes) / dp)
                .sum()
        })
        .collect();
    let mut memory = Vec::with_capacity(p);
    let mut peak_param = vec![0.0; p];
    let mut peak_act = vec![0.0; p];
    let mut peak_total = vec![0.0; p];
    let mut act_curves = Vec::with_capacity(p);
    for d in 0..p {
        let ev = &mut obs.events[d];
        // Releases before allocations at the same instant.
        ev.sort_by(|a, b| {
            a.0.total_cmp(&b.0)
                .then((a.1 + a.2 >= 0.0).cmp(&(b.1 + b.2 >= 0.0)))
        });
        let (mut pm, mut am) = (shard_memory[d], 0.0f64);
        peak_param[d] = pm;
        peak_total[d] = pm;
        let mut curve = vec![MemoryPoint {
            time: 0.0,
            params: pm,
            activation: 0.0,
        }];
        let mut acurve = vec![(0.0, 0.0)];
        for &(t, dpm, dam) in ev.iter() {
            pm += dpm;
            am += dam;
            peak_param[d] = f64::max(peak_param[d], pm);
            peak_act[d] = f64::max(peak_act[d], am);
            peak_total[d] = f64::max(peak_total[d], pm + am);
            curve.push(MemoryPoint {
                time: t,
                params: pm,
                activation: am,
            });
            if dam != 0.0 {
                acurve.push((t, am));
            }
        }
        memory.push(curve);
        act_curves.push(acurve);
    }
    let frac = if f.dp > 1 { (dp - 1.0) / dp } else { 0.0 };
    let compute = SimResult {
        bubble_rate: bubble_rate(&st.busy, makespan),
        start: st.start,
        end: st.end,
        makespan: compute_end,
        busy: st.busy,
        overlap_saved: crate::engine::nonzero_or_empty(st.saved),
        recompute_time: crate::engine::nonzero_or_empty(st.recomputing),
        transfer_time: crate::engine::nonzero_or_empty(st.transferring),
        peak_activation: peak_act.clone(),
        memory: act_curves,
        p2p_transfers: s.p2p_transfers(),
    };
    Ok(FsdpResult {
        compute,
        makespan,
        compute_only_makespan: base.makespan,
        collectives: obs.collectives,
        wire_bytes: obs.comm_bytes.iter().map(|b| b * frac).collect(),
        comm_bytes: obs.comm_bytes,
        comm_time: obs.comm_time,
        exposed_comm: obs.exposed,
        shard_memory,
        peak_param_memory: peak_param,
        peak_activation: peak_act,
        peak_memory: peak_total,
        stage_traffic: obs.stage_traffic,
        memory,
    })
}

/// FSDP's collective stream, an observer of the engine: per device, it runs the plan's
/// collectives between the compute passes, holds a pass back until its stage's gather ends,
/// and records parameter and activation memory (bytes) over time.
struct Collectives<'a> {
    f: &'a FsdpConfig,
    plan: &'a FsdpPlan,
    table: &'a StageTable,
    unit_bytes: f64,
    pos: Vec<usize>,
    prev_start: Vec<f64>,
    prev_end: Vec<f64>,
    coll_free: Vec<f64>,
    gather_ready: Vec<f64>,
    grad_open: Vec<bool>,
    /// (time, parameter-memory change, activation change).
    events: Vec<Vec<(f64, f64, f64)>>,
    collectives: Vec<Vec<CollectiveTiming>>,
    comm_bytes: Vec<f64>,
    comm_time: Vec<f64>,
    stage_traffic: Vec<f64>,
    exposed: Vec<f64>,
}

impl Observer for Collectives<'_> {
    fn start(&mut self, d: usize, pass: Pass, ready: f64) -> f64 {
        self.advance(d);
        // The plan's pointer now sits on this pass.
        self.pos[d] += 1;
        let gr = self.gather_ready[pass.stage as usize];
        if gr > ready {
            self.exposed[d] += gr - ready;
            gr
        } else {
            ready
        }
    }

    fn ran(&mut self, d: usize, pass: Pass, start: f64, end: f64) {
        let su = pass.stage as usize;
        if matches!(pass.kind, PassKind::W | PassKind::BW) && !self.grad_open[su] {
            self.grad_open[su] = true;
            self.events[d].push((start, self.f.stage_bytes(pass.stage), 0.0));
        }
        let at = if pass.kind == PassKind::F { start } else { end };
        let da = self.table.activation_change(pass.kind, pass.stage) * self.unit_bytes;
        if da != 0.0 {
            self.events[d].push((at, 0.0, da));
        }
        self.prev_start[d] = start;
        self.prev_end[d] = end;
    }
}

impl Collectives<'_> {
    /// Runs device `d`'s collective actions up to its next compute pass (or the list's end).
    fn advance(&mut self, d: usize) {
        let acts = &self.plan.lists[d];
        while let Some(a) = acts.get(self.pos[d]) {
            let (kind, stage) = match *a {
                Action::Compute(_) => return,
                Action::Reshard(stage) => {
                    self.events[d].push((self.prev_end[d], -self.f.stage_bytes(stage), 0.0));
                    self.gather_ready[stage as usize] = f64::NAN;
                    self.pos[d] += 1;
                    continue;
                }
                Action::Unshard(stage) => (CollectiveKind::AllGather, stage),
                Action::ReduceGrad(stage) => (CollectiveKind::ReduceScatter, stage),
            };
            let bytes = self.f.stage_bytes(stage);
            let time = self.f.collective_time(bytes);
            let issue = match kind {
                CollectiveKind::AllGather => self.prev_start[d],
                CollectiveKind::ReduceScatter => self.prev_end[d],
            };
            let start = issue.max(self.coll_free[d]);
            let end = start + time;
            self.coll_free[d] = end;
            match kind {
                CollectiveKind::AllGather => {
                    self.events[d].push((issue, bytes, 0.0));
                    self.gather_ready[stage as usize] = end;
                }
                CollectiveKind::ReduceScatter => {
                    self.events[d].push((end, -bytes, 0.0));
                    self.grad_open[stage as usize] = false;
                }
            }
            self.collectives[d].push(CollectiveTiming {
                kind,
                stage,
                issue,
                start,
                end,
                bytes,
            });
            self.comm_bytes[d] += bytes;
            self.comm_time[d] += time;
            self.stage_traffic[stage as usize] += bytes;
            self.pos[d] += 1;
        }
    }
}

/// A model, microbatch size, device and data-parallel degree: everything the FSDP simulation of
/// a schedule needs besides the schedule.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FsdpSetup {
    /// The model.
    pub model: ModelSpec,
    /// Samples per microbatch.
    pub microbatch_size: u32,
    /// The device.
    pub device: DeviceSpec,
    /// Data-parallel group size `d`.
    pub dp: u32,
}

impl FsdpSetup {
    /// The model's per-stage costs (seconds, activation units of its own bytes).
    pub fn costs(&self) -> StageCosts {
        StageCosts::model(
            self.model.clone(),
            self.microbatch_size,
            self.device.clone(),
        )
    }

    /// The FSDP settings for a schedule of this setup: the device's links and each stage's
    /// parameters.
    pub fn config(&self, s: &Schedule) -> Result<FsdpConfig, Error> {
        let mc = ModelCosts::for_stages(&self.model, self.microbatch_size, &self.device, s.stages)?;
        Ok(FsdpConfig::new(
            self.dp,
            self.device.bandwidth,
            self.device.latency,
            mc.params,
        ))
    }
}

/// A schedule run with FSDP: its gather window, plan and simulation.
#[derive(Clone, Debug)]
pub struct FsdpRun {
    /// The schedule.
    pub schedule: Schedule,
    /// Microbatches per gather window.
    pub window: u32,
    /// The collectives.
    pub plan: FsdpPlan,
    /// The simulation.
    pub result: FsdpResult,
}

/// Derives the plan of a schedule with gather windows of `window` microbatches and simulates it
/// under a setup.
pub fn run(schedule: Schedule, window: u32, setup: &FsdpSetup) -> Result<FsdpRun, Error> {
    let costs = setup.costs();
    let f = setup.config(&schedule)?;
    let plan = FsdpPlan::derive(&schedule, window, &costs, &f)?;
    let result = simulate_fsdp(&schedule, &plan, &costs, &f)?;
    Ok(FsdpRun {
        schedule,
        window,
        plan,
        result,
    })
}

/// Generates the named schedule under the setup's costs (ZeroPP with `prm`'s group) and runs it
/// with FSDP.
pub fn schedule_and_run(name: &str, prm: &Params, setup: &FsdpSetup) -> Result<FsdpRun, Error> {
    let g = registry::find(name)?;
    let prm = prm.clone().with_costs(setup.costs());
    let s = registry::generate(g.name, &prm)?;
    run(s, g.fsdp_window(&prm), setup)
}

/// Bytes in a GiB.
pub const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
