//! Event-driven simulation of a schedule: timings, bubbles and activation memory.
//!
//! Each device runs its list in order; a pass starts when the device is free and every pass it
//! depends on has finished (plus the p2p latency when that pass ran on another device). Sends
//! never block. This is exactly the runtime's execution model, so the simulated order is the one
//! the runtime would follow with the same costs.
//!
//! **Costs** are per pass: every F of every stage takes `f`, every B `b`, every W `w`, whatever
//! the placement (the papers' T_F, T_B, T_W). A V-shape or looped schedule therefore runs more
//! passes per microbatch than 1F1B; to compare placements of one model, give each stage its own
//! cost with [`SimConfig::stage_costs`] (what `--model` does).
//!
//! **Memory** follows the reference model: F allocates the stage's activation (`p/S` units by
//! default), B frees a fraction [`SimConfig::b_release`] of it, W (or BW) frees the rest. The
//! allocation counts from the start of F, the release from the end of B/W/BW.

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::ir::{PassKind, Schedule};
use crate::validate::{validate, Graph};

/// Costs of the passes of one stage.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Costs {
    /// Forward.
    pub f: f64,
    /// Input backward.
    pub b: f64,
    /// Weight backward.
    pub w: f64,
    /// Fused backward; `None` means `b + w`.
    pub bw: Option<f64>,
    /// Point-to-point latency between two devices.
    pub comm: f64,
}

impl Default for Costs {
    fn default() -> Self {
        Costs {
            f: 1.0,
            b: 1.0,
            w: 1.0,
            bw: None,
            comm: 0.0,
        }
    }
}

impl Costs {
    /// Parses `f=1,b=1.3,w=0.7,c=0.05` (keys `f`, `b`, `w`, `bw`, `c`; any subset, the rest default).
    pub fn parse(text: &str) -> Result<Self, Error> {
        let mut c = Costs::default();
        for part in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (k, v) = part.split_once('=').ok_or_else(|| {
                Error::parse(
                    "cost",
                    format!("`{part}` has no `=`; write e.g. --cost f=1,b=1,w=1,c=0"),
                )
            })?;
            let v: f64 = v
                .trim()
                .parse()
                .map_err(|_| Error::parse("cost", format!("`{v}` in `{part}` is not a number")))?;
            if !v.is_finite() || v < 0.0 {
                return Err(Error::parse(
                    "cost",
                    format!("`{part}`: costs must be finite and not negative"),
                ));
            }
            match k.trim().to_ascii_lowercase().as_str() {
                "f" => c.f = v,
                "b" => c.b = v,
                "w" => c.w = v,
                "bw" => c.bw = Some(v),
                "c" | "comm" => c.comm = v,
                other => {
                    return Err(Error::parse(
                        "cost",
                        format!("unknown key `{other}`; use f, b, w, bw and c"),
                    ))
                }
            }
        }
        if c.f + c.b + c.w == 0.0 {
            return Err(Error::parse(
                "cost",
                "all pass costs are 0; give at least one positive cost",
            ));
        }
        Ok(c)
    }

    /// Cost of the fused backward.
    pub fn bw_cost(&self) -> f64 {
        self.bw.unwrap_or(self.b + self.w)
    }

    /// Cost of a pass kind.
    pub fn of(&self, kind: PassKind) -> f64 {
        match kind {
            PassKind::F => self.f,
            PassKind::B => self.b,
            PassKind::W => self.w,
            PassKind::BW => self.bw_cost(),
        }
    }

    /// The same costs multiplied by `k` (latency unchanged).
    pub fn scaled(&self, k: f64) -> Costs {
        Costs {
            f: self.f * k,
            b: self.b * k,
            w: self.w * k,
            bw: self.bw.map(|x| x * k),
            comm: self.comm,
        }
    }
}

/// What the simulator needs besides the schedule.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SimConfig {
    /// Cost of one pass of any stage, and the p2p latency.
    pub costs: Costs,
    /// Absolute per-stage costs, overriding `costs` (length `S`). Latency still from `costs.comm`.
    pub stage_costs: Option<Vec<Costs>>,
    /// Per-device speed factor: a pass takes `cost / speed` (length `p`, default all 1).
    pub speed: Option<Vec<f64>>,
    /// Activation units one microbatch leaves on each stage (length `S`, default `p/S`).
    pub activation: Option<Vec<f64>>,
    /// Fraction of a stage's activation freed by B (default 0).
    pub b_release: f64,
}

impl SimConfig {
    /// A config with the given costs and the other settings at their defaults.
    pub fn with_costs(costs: Costs) -> Self {
        SimConfig {
            costs,
            ..Default::default()
        }
    }

    fn check(&self, s: &Schedule) -> Result<(), Error> {
        fn len_ok<T>(v: &Option<Vec<T>>, n: u32) -> bool {
            v.as_ref().is_none_or(|v| v.len() == n as usize)
        }
        if !len_ok(&self.stage_costs, s.stages) {
            return Err(Error::config(format!(
                "per-stage costs must list {} stages",
                s.stages
            )));
        }
        if !len_ok(&self.activation, s.stages) {
            return Err(Error::config(format!(
                "per-stage activations must list {} stages",
                s.stages
            )));
        }
        if let Some(sp) = &self.speed {
            if sp.len() != s.devices as usize {
                return Err(Error::config(format!(
                    "speed factors must list {} devices, got {}",
                    s.devices,
                    sp.len()
                )));
            }
            if sp.iter().any(|&x| !(x.is_finite() && x > 0.0)) {
                return Err(Error::config("speed factors must be positive numbers"));
            }
        }
        if !(0.0..=1.0).contains(&self.b_release) {
            return Err(Error::config("the fraction released at B must be in 0..=1"));
        }
        Ok(())
    }

    /// Duration table `[stage][kind]` for a schedule.
    pub fn durations(&self, s: &Schedule) -> Vec<[f64; 4]> {
        (0..s.stages as usize)
            .map(|st| {
                let c = match &self.stage_costs {
                    Some(v) => v[st],
                    None => self.costs,
                };
                PassKind::ALL.map(|k| c.of(k))
            })
            .collect()
    }

    /// Speed factor per device for a schedule (all 1 unless `speed` is set).
    pub fn speeds(&self, s: &Schedule) -> Vec<f64> {
        self.speed
            .clone()
            .unwrap_or_else(|| vec![1.0; s.devices as usize])
    }

    /// Activation units per stage for a schedule.
    pub fn activations(&self, s: &Schedule) -> Vec<f64> {
        self.activation
            .clone()
            .unwrap_or_else(|| vec![s.units_per_stage(); s.stages as usize])
    }
}

/// The simulator's figures for one schedule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SimResult {
    /// Start time of each pass, per device, in list order.
    pub start: Vec<Vec<f64>>,
    /// End time of each pass, per device, in list order.
    pub end: Vec<Vec<f64>>,
    /// Time from the first start to the last end.
    pub makespan: f64,
    /// Busy time per device.
    pub busy: Vec<f64>,
    /// `1 - Σ busy / (p · makespan)`.
    pub bubble_rate: f64,
    /// Peak activation per device, in units.
    pub peak_activation: Vec<f64>,
    /// Activation over time per device: `(time, units from then on)` at every change.
    pub memory: Vec<Vec<(f64, f64)>>,
    /// Cross-device transfers per step.
    pub p2p_transfers: u64,
}

impl SimResult {
    /// Largest per-device peak.
    pub fn max_peak(&self) -> f64 {
        self.peak_activation.iter().cloned().fold(0.0, f64::max)
    }
}

/// Compute time of each device: its passes' durations (`dur[stage][kind]`) over its speed.
pub fn busy_per_device(s: &Schedule, dur: &[[f64; 4]], speed: &[f64]) -> Vec<f64> {
    s.lists
        .iter()
        .zip(speed)
        .map(|(list, sp)| {
            list.iter()
                .map(|ps| dur[ps.stage as usize][ps.kind.index()] / sp)
                .sum()
        })
        .collect()
}

/// Validates and simulates a schedule.
///
/// The simulator's own in-order run finds any deadlock, so the validator's run is skipped; when
/// the simulation blocks, [`validate`] explains why.
pub fn simulate(s: &Schedule, cfg: &SimConfig) -> Result<SimResult, Error> {
    let g = crate::validate::graph_of(s)?;
    simulate_graph(s, &g, cfg).map_err(|e| match validate(s) {
        Err(v) => v.into(),
        Ok(_) => e,
    })
}

/// The change a pass of `kind` makes to its device's activation, for a stage that holds `units`
/// per microbatch: an F adds them, a B frees the part `b_release`, a W the rest, a BW all.
pub(crate) fn activation_change(kind: PassKind, units: f64, b_release: f64) -> f64 {
    match kind {
        PassKind::F => units,
        PassKind::B => -units * b_release,
        PassKind::W => -units * (1.0 - b_release),
        PassKind::BW => -units,
    }
}

/// Simulates a schedule already validated into `g`.
pub fn simulate_graph(s: &Schedule, g: &Graph, cfg: &SimConfig) -> Result<SimResult, Error> {
    const NONE: u32 = u32::MAX;
    cfg.check(s)?;
    let dur = cfg.durations(s);
    let act = cfg.activations(s);
    let speed = cfg.speeds(s);
    let comm = cfg.costs.comm;
    let p = s.devices as usize;
    // Durations and each stage's device are looked up in the loop below and the inputs of a pass
    // come from `Graph::deps`, so nothing is built per pass.
    let stage_dev = &g.stage_device;
    let index = g.index;
    // End time of each pass by dense index; NaN until it has run.
    let mut end_of = vec![f64::NAN; index.len()];
    let mut wait_head = vec![NONE; index.len()];
    let mut wait_next = vec![NONE; p];
    let mut ptr = vec![0usize; p];
    let mut start: Vec<Vec<f64>> = s.lists.iter().map(|l| vec![0.0; l.len()]).collect();
    let mut end: Vec<Vec<f64>> = start.clone();
    let mut free = vec![0.0f64; p];
    // Busy time, activation level, peak and memory curve of each device, kept as its passes run
    // (in list order, so the curve comes out in time order).
    let mut busy = vec![0.0f64; p];
    let mut level = vec![0.0f64; p];
    let mut peak = vec![0.0f64; p];
    let mut memory: Vec<Vec<(f64, f64)>> = s
        .lists
        .iter()
        .map(|l| {
            let mut c = Vec::with_capacity(l.len() + 1);
            c.push((0.0, 0.0));
            c
        })
        .collect();
    let mut stack: Vec<u32> = (0..p as u32).rev().collect();
    while let Some(d) = stack.pop() {
        let d = d as usize;
        let list = &s.lists[d];
        'advance: while ptr[d] < list.len() {
            let pass = list[ptr[d]];
            let mut t = free[d];
            let (deps, n) = g.deps(pass);
            for dep in deps.iter().take(n).flatten() {
                let k = index.of(*dep);
                let e = end_of[k];
                if e.is_nan() {
                    wait_next[d] = wait_head[k];
                    wait_head[k] = d as u32;
                    break 'advance;
                }
                let lat = if stage_dev[dep.stage as usize] as usize != d {
                    comm
                } else {
                    0.0
                };
                t = t.max(e + lat);
            }
            let len = dur[pass.stage as usize][pass.kind.index()] / speed[d];
            let e = t + len;
            busy[d] += len;
            // An F allocates its activation as it starts; the rest free theirs as they end.
            let at = if pass.kind == PassKind::F { t } else { e };
            let delta = activation_change(pass.kind, act[pass.stage as usize], cfg.b_release);
            if delta != 0.0 {
                level[d] += delta;
                if level[d] > peak[d] {
                    peak[d] = level[d];
                }
                memory[d].push((at, level[d].max(0.0)));
            }
            start[d][ptr[d]] = t;
            end[d][ptr[d]] = e;
            let me = index.of(pass);
            end_of[me] = e;
            free[d] = e;
            let mut w = std::mem::replace(&mut wait_head[me], NONE);
            while w != NONE {
                stack.push(w);
                w = wait_next[w as usize];
            }
            ptr[d] += 1;
        }
    }
    if let Some(d) = (0..p).find(|&d| ptr[d] < s.lists[d].len()) {
        return Err(Error::config(format!(
            "the schedule blocks on device {d} at position {}; validate it first",
            ptr[d]
        )));
    }
    let makespan = free.iter().cloned().fold(0.0, f64::max);
    let total: f64 = busy.iter().sum();
    let bubble_rate = if makespan > 0.0 {
        1.0 - total / (p as f64 * makespan)
    } else {
        0.0
    };
    Ok(SimResult {
        start,
        end,
        makespan,
        busy,
        bubble_rate,
        peak_activation: peak,
        memory,
        p2p_transfers: s.p2p_transfers(),
    })
}
