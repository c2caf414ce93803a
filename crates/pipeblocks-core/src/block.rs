//! Building blocks: a schedule as one microbatch's passes repeated every `T` slots.
//!
//! A [`Block`] gives, for one microbatch, the start offset (in unit time slots) of every pass of
//! every stage, a period `T` and a placement. The engine turns it into a schedule in four steps,
//! all of them shared by every block-based schedule:
//!
//! 1. **check** ([`Block::analyse`]): every stage has its F and its backward (B and W, or BW),
//!    the offsets respect the dependencies of one microbatch, and the repeats of the block every
//!    `T` slots never put two passes in the same slot of one device;
//! 2. **measure**: the lifespan `l` of each stage (start of F to end of W or BW) and the bound on
//!    each device's peak activation, `Σ ⌈l_s / T⌉ · m_s` over its stages (`m_s = p/S` units);
//! 3. **truncate** ([`Block::expand`]): microbatch `k` starts every pass at `offset + k·T`; the
//!    passes of `m` microbatches sorted by slot give each device's ordered list;
//! 4. **squeeze** ([`squeeze`]) and **reorder** ([`reorder`]): the simulator runs each list in
//!    order at the earliest time the real costs and latencies allow (idle slots vanish, the order
//!    stays), then warm-up and cool-down passes move into earlier free time when that neither
//!    raises the peak nor lengthens the step.
//!
//! Because a device runs its passes one after another, the peak activation depends only on the
//! order of each list, not on the timings: the bound of step 2 therefore holds for the squeezed
//! schedule too, and [`reorder`] never lets the peak rise.
//!
//! Named blocks: [`one_f_one_b`], [`zb_h1`], [`v_min`], [`v_half`], [`v_zb`] and the general
//! V-shape family [`v_shape`]. User blocks are read from JSON ([`Block::from_json`]).

use serde::{Deserialize, Serialize};
use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::error::Error;
use crate::ir::{Pass, PassKind, Placement, Schedule};
use crate::simulate::{activation_change, simulate_graph, SimConfig, SimResult};
use crate::validate::validate;

/// The value of the `format` field of a block file.
pub const FORMAT: &str = "pipeblocks-block";
/// The current version of the block file format.
pub const VERSION: u32 = 1;

/// Slots each pass kind occupies in a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlotLengths {
    /// Forward.
    #[serde(rename = "F", default = "one")]
    pub f: u32,
    /// Input backward.
    #[serde(rename = "B", default = "one")]
    pub b: u32,
    /// Weight backward.
    #[serde(rename = "W", default = "one")]
    pub w: u32,
    /// Fused backward.
    #[serde(rename = "BW", default = "two")]
    pub bw: u32,
}

fn one() -> u32 {
    1
}
fn two() -> u32 {
    2
}

impl Default for SlotLengths {
    fn default() -> Self {
        SlotLengths {
            f: 1,
            b: 1,
            w: 1,
            bw: 2,
        }
    }
}

impl SlotLengths {
    /// Slots of a pass kind.
    pub fn of(&self, k: PassKind) -> u32 {
        match k {
            PassKind::F => self.f,
            PassKind::B => self.b,
            PassKind::W => self.w,
            PassKind::BW => self.bw,
        }
    }
}

/// One pass of the block: a kind on a stage, starting `offset` slots after the block's origin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockPass {
    /// Pass kind.
    pub kind: PassKind,
    /// Global stage index.
    pub stage: u32,
    /// Start slot within the block.
    pub offset: u32,
}

/// A building block: one microbatch's passes with their offsets, repeated every `period` slots.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Block {
    /// Name given to the schedules built from it.
    pub name: String,
    /// Devices `p`.
    pub devices: u32,
    /// Stage → device map.
    pub placement: Placement,
    /// Period `T` in slots: microbatch `k` is offset by `k·T`.
    pub period: u32,
    /// Slots per pass kind (default F, B, W 1 and BW 2).
    #[serde(default)]
    pub slots: SlotLengths,
    /// Every pass of one microbatch.
    pub passes: Vec<BlockPass>,
}

/// What [`Block::analyse`] finds out about a block.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BlockInfo {
    /// Lifespan of each stage in slots: start of F to end of W (or BW).
    pub lifespan: Vec<u32>,
    /// Activation units one microbatch leaves on each stage (`p/S`).
    pub activation: f64,
    /// Bound on each device's peak activation: `Σ ⌈l_s/T⌉ · p/S` over its stages.
    pub memory_bound: Vec<f64>,
    /// Slots from the first start to the last end of one microbatch.
    pub length: u32,
    /// Busy slots per device in one period.
    pub busy: Vec<u32>,
}

impl BlockInfo {
    /// Largest per-device bound.
    pub fn max_bound(&self) -> f64 {
        self.memory_bound.iter().cloned().fold(0.0, f64::max)
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct BlockFile {
    format: String,
    version: u32,
    #[serde(flatten)]
    block: Block,
}

impl Block {
    /// Number of stages of the placement.
    pub fn stages(&self) -> u32 {
        self.placement.num_stages(self.devices)
    }

    /// Reads a block from its JSON file format (see `docs/blocks.md`).
    pub fn from_json(text: &str) -> Result<Block, Error> {
        let v: serde_json::Value =
            serde_json::from_str(text).map_err(|e| Error::parse("JSON block", e.to_string()))?;
        match v.get("format").and_then(|f| f.as_str()) {
            Some(FORMAT) => {}
            Some(other) => {
                return Err(Error::parse(
                    "JSON block",
                    format!("`format` is `{other}`, expected `{FORMAT}`"),
                ))
            }
            None => {
                return Err(Error::parse(
                    "JSON block",
                    format!("missing `\"format\": \"{FORMAT}\"`"),
                ))
            }
        }
        let f: BlockFile =
            serde_json::from_value(v).map_err(|e| Error::parse("JSON block", e.to_string()))?;
        if f.version != VERSION {
            return Err(Error::parse(
                "JSON block",
                format!(
                    "version {} is not supported; this pipeblocks reads version {VERSION}",
                    f.version
                ),
            ));
        }
        Ok(f.block)
    }

    /// Writes the block in its JSON file format.
    pub fn to_json(&self) -> String {
        let f = BlockFile {
            format: FORMAT.into(),
            version: VERSION,
            block: self.clone(),
        };
        serde_json::to_string_pretty(&f).unwrap_or_default() + "\n"
    }

    /// Checks the block and measures it: completeness, dependencies, collisions of the repeats,
    /// lifespans and the memory bound.
    pub fn analyse(&self) -> Result<BlockInfo, Error> {
        let p = self.devices;
        self.placement.check(p)?;
        let n_st = self.stages();
        if self.period == 0 {
            return Err(Error::config(
                "block period is 0; use a period of at least 1 slot",
            ));
        }
        if [self.slots.f, self.slots.b, self.slots.w, self.slots.bw].contains(&0) {
            return Err(Error::config("block slot lengths must be at least 1"));
        }
        // start offset of [F, B, W, BW] per stage
        let mut at: Vec<[Option<u32>; 4]> = vec![[None; 4]; n_st as usize];
        for bp in &self.passes {
            if bp.stage >= n_st {
                return Err(Error::config(format!(
                    "block pass {}{} names stage {}, but the {} placement has stages 0..{n_st}",
                    bp.kind,
                    bp.stage,
                    bp.stage,
                    self.placement.describe()
                )));
            }
            let slot = &mut at[bp.stage as usize][bp.kind.index()];
            if slot.is_some() {
                return Err(Error::config(format!(
                    "block lists {}{} twice; each pass of a stage appears once",
                    bp.kind, bp.stage
                )));
            }
            *slot = Some(bp.offset);
        }
        let end = |k: PassKind, o: u32| o + self.slots.of(k);
        let mut bwd_end = vec![0u32; n_st as usize];
        let mut lifespan = vec![0u32; n_st as usize];
        for st in 0..n_st as usize {
            let [f, b, w, bw] = at[st];
            let Some(f) = f else {
                return Err(Error::config(format!("block has no F for stage {st}")));
            };
            let (b_start, b_kind, last_end) = match (b, w, bw) {
                (Some(b), Some(w), None) => {
                    if w < end(PassKind::B, b) {
                        return Err(Error::config(format!(
                            "block: W{st} at slot {w} starts before B{st} ends (slot {}); move it later",
                            end(PassKind::B, b)
                        )));
                    }
                    (b, PassKind::B, end(PassKind::W, w))
                }
                (None, None, Some(bw)) => (bw, PassKind::BW, end(PassKind::BW, bw)),
                _ => {
                    return Err(Error::config(format!(
                        "block stage {st} needs a backward: B and W, or BW alone"
                    )))
                }
            };
            if b_start < end(PassKind::F, f) {
                return Err(Error::config(format!(
                    "block: {b_kind}{st} at slot {b_start} starts before F{st} ends (slot {}); move it later",
                    end(PassKind::F, f)
                )));
            }
            if st > 0 {
                let pf = at[st - 1][0].unwrap_or(0);
                if f < end(PassKind::F, pf) {
                    return Err(Error::config(format!(
                        "block: F{st} at slot {f} starts before F{} ends (slot {}); move it later",
                        st - 1,
                        end(PassKind::F, pf)
                    )));
                }
            }
            bwd_end[st] = end(b_kind, b_start);
            lifespan[st] = last_end - f;
        }
        for st in 0..(n_st as usize).saturating_sub(1) {
            let start = at[st][1].or(at[st][3]).unwrap_or(0);
            if start < bwd_end[st + 1] {
                return Err(Error::config(format!(
                    "block: the backward of stage {st} at slot {start} starts before the backward of stage {} ends (slot {}); move it later",
                    st + 1,
                    bwd_end[st + 1]
                )));
            }
        }
        // Collisions of the repeats: slot residues modulo T per device.
        let t = self.period;
        let mut owner: Vec<Vec<Option<BlockPass>>> = vec![vec![None; t as usize]; p as usize];
        let mut busy = vec![0u32; p as usize];
        for bp in &self.passes {
            let d = self.placement.device_of(bp.stage, p) as usize;
            let len = self.slots.of(bp.kind);
            busy[d] += len;
            if busy[d] > t {
                return Err(Error::config(format!(
                    "block: device {d} has {} slots of work per microbatch but the period is {t}; raise the period",
                    self.passes
                        .iter()
                        .filter(|q| self.placement.device_of(q.stage, p) as usize == d)
                        .map(|q| self.slots.of(q.kind))
                        .sum::<u32>()
                )));
            }
            for j in bp.offset..bp.offset + len {
                let r = (j % t) as usize;
                if let Some(o) = owner[d][r] {
                    return Err(Error::config(format!(
                        "block repeats collide on device {d}: {}{} (slot {}) and {}{} (slot {}) both use slot {r} modulo the period {t}; change an offset",
                        o.kind, o.stage, o.offset, bp.kind, bp.stage, bp.offset
                    )));
                }
                owner[d][r] = Some(*bp);
            }
        }
        let activation = p as f64 / n_st as f64;
        let mut memory_bound = vec![0.0; p as usize];
        for (st, &l) in lifespan.iter().enumerate() {
            let d = self.placement.device_of(st as u32, p) as usize;
            memory_bound[d] += l.div_ceil(t) as f64 * activation;
        }
        let first = self.passes.iter().map(|q| q.offset).min().unwrap_or(0);
        let last = self
            .passes
            .iter()
            .map(|q| end(q.kind, q.offset))
            .max()
            .unwrap_or(0);
        Ok(BlockInfo {
            lifespan,
            activation,
            memory_bound,
            length: last - first,
            busy,
        })
    }

    /// Repeats the block for `m` microbatches and sorts each device's passes by slot.
    ///
    /// The result is valid by construction: the slots are a timing of it that meets every
    /// dependency and keeps each device to one pass at a time.
    pub fn expand(&self, m: u32) -> Result<Schedule, Error> {
        self.analyse()?;
        let mut s = Schedule::empty(&self.name, self.devices, m, self.placement.clone())?;
        // Pass j of microbatch k starts at o_j + kT = (q_j + k)·T + r_j: walking the rounds
        // n = q_j + k in order, and within a round the passes by residue r_j, lists every
        // device's passes in time order without sorting them all.
        let t = self.period;
        for d in 0..self.devices {
            let mut pats: Vec<(u32, u32, BlockPass)> = self
                .passes
                .iter()
                .filter(|q| self.placement.device_of(q.stage, self.devices) == d)
                .map(|q| (q.offset % t, q.offset / t, *q))
                .collect();
            pats.sort_by_key(|x| (x.0, x.1));
            let (Some(qmin), Some(qmax)) = (
                pats.iter().map(|x| x.1).min(),
                pats.iter().map(|x| x.1).max(),
            ) else {
                continue;
            };
            let list = &mut s.lists[d as usize];
            list.reserve(pats.len() * m as usize);
            for n in qmin..qmax + m {
                for &(_, q, bp) in &pats {
                    if n >= q && n - q < m {
                        list.push(Pass::new(bp.kind, bp.stage, n - q));
                    }
                }
            }
        }
        Ok(s)
    }

    /// Expands to `m` microbatches, squeezes under `cfg` and, when `reorder_passes`, reorders
    /// the warm-up and cool-down. Returns the schedule and its simulation.
    pub fn build(
        &self,
        m: u32,
        cfg: &SimConfig,
        reorder_passes: bool,
    ) -> Result<(Schedule, SimResult), Error> {
        let s = self.expand(m)?;
        if reorder_passes {
            let info = self.analyse()?;
            let edge = info.length.div_ceil(self.period);
            let peak = squeeze(&s, cfg)?.max_peak();
            let limits: Vec<f64> = info.memory_bound.iter().map(|b| b.min(peak)).collect();
            reorder(s, cfg, Some(&limits), Some(edge))
        } else {
            let r = squeeze(&s, cfg)?;
            Ok((s, r))
        }
    }

    /// A text description: per device the passes by offset, then lifespans and the bound.
    pub fn describe(&self) -> Result<String, Error> {
        let info = self.analyse()?;
        let p = self.devices;
        let mut out = format!(
            "block {}: {} devices, {} stages ({} placement), period {} slots, length {} slots\n",
            self.name,
            p,
            self.stages(),
            self.placement.describe(),
            self.period,
            info.length
        );
        for d in 0..p {
            let mut v: Vec<&BlockPass> = self
                .passes
                .iter()
                .filter(|q| self.placement.device_of(q.stage, p) == d)
                .collect();
            v.sort_by_key(|q| q.offset);
            let items: Vec<String> = v
                .iter()
                .map(|q| format!("{}{}@{}", q.kind, q.stage, q.offset))
                .collect();
            let spans: Vec<String> = (0..self.stages())
                .filter(|&s| self.placement.device_of(s, p) == d)
                .map(|s| format!("l{s}={}", info.lifespan[s as usize]))
                .collect();
            out.push_str(&format!(
                "device {d:>2}: {:<40} {}  bound {:.3}\n",
                items.join(" "),
                spans.join(" "),
                info.memory_bound[d as usize]
            ));
        }
        out.push_str(&format!(
            "memory bound (units, max over devices): {:.3}\n",
            info.max_bound()
        ));
        Ok(out)
    }
}

/// Squeezes a schedule: every pass at the earliest time the costs, latencies and list order
/// allow. This is what the simulator computes, so squeezing is simulating.
pub fn squeeze(s: &Schedule, cfg: &SimConfig) -> Result<SimResult, Error> {
    crate::simulate::simulate(s, cfg)
}

const EPS: f64 = 1e-9;

/// Moves warm-up and cool-down passes into earlier free time.
///
/// The lists run in time order as in the simulator, except where a device would wait: there a
/// later pass of one of the first or last `edge` microbatches (default `p`: the warm-up and the
/// cool-down, where the repeats of a block are incomplete) runs instead when its inputs are
/// there and its activation fits under the device's `peak_limit` (default: its peak in the
/// squeezed schedule; never below that).
/// In the cool-down (no forward left on the device) a ready backward goes ahead of the pending
/// Ws, which fill the waits, as in ZB-H1. Several look-ahead windows are tried; a result is kept
/// only when the simulator confirms that the peak stays within the limit and the makespan
/// shrinks. Returns the schedule and its simulation.
pub fn reorder(
    mut s: Schedule,
    cfg: &SimConfig,
    peak_limit: Option<&[f64]>,
    edge: Option<u32>,
) -> Result<(Schedule, SimResult), Error> {
    let g = validate(&s)?;
    let mut r = simulate_graph(&s, &g, cfg)?;
    let limits = mend_limits("reorder", &r, peak_limit)?;
    let edge = edge.unwrap_or(s.devices);
    let base = s.clone();
    for (window, defer_w) in [(3usize, true), (4, false), (4, true), (16, false)] {
        let Some(c) = fill_gaps(&base, &g, cfg, &limits, edge, window, defer_w) else {
            continue;
        };
        // The simulator checks the new lists' completeness and finds any block itself.
        let Ok(cr) = crate::simulate::simulate(&c, cfg) else {
            continue;
        };
        if within(&cr, &limits) && cr.makespan < r.makespan - EPS {
            s = c;
            r = cr;
        }
    }
    Ok((s, r))
}

/// Each device's memory limit for a mend of a schedule whose simulation is `r`: `peak_limit`
/// (default: the peak itself), never below the device's own peak, with the tolerance added.
/// `what` names the mend in the error when the limits do not list every device.
pub(crate) fn mend_limits(
    what: &str,
    r: &SimResult,
    peak_limit: Option<&[f64]>,
) -> Result<Vec<f64>, Error> {
    let devices = r.peak_activation.len();
    if peak_limit.is_some_and(|l| l.len() != devices) {
        return Err(Error::config(format!(
            "{what}: the peak limits must list {devices} devices"
        )));
    }
    Ok(r.peak_activation
        .iter()
        .enumerate()
        .map(|(d, &pk)| peak_limit.map_or(pk, |l| l[d]).max(pk) + EPS)
        .collect())
}

/// Local search on the critical path: swaps two neighbouring passes of a device list when the
/// second one started the moment the first ended (the device, not an input, held it back) and
/// the swap shortens the step, or keeps it and lets the passes end earlier in total; every swap
/// is confirmed by the simulator, including the peak against `peak_limit` (per device). Stops
/// when no swap helps or after `max_evals` simulations. Returns the schedule and its simulation.
pub fn polish(
    mut s: Schedule,
    cfg: &SimConfig,
    peak_limit: &[f64],
    max_evals: usize,
) -> Result<(Schedule, SimResult), Error> {
    // A swap keeps the set of passes, so one graph serves every simulation; a swap that breaks
    // an order on the device shows up as a blocked simulation and is undone.
    let g = validate(&s)?;
    let mut r = simulate_graph(&s, &g, cfg)?;
    if peak_limit.len() != s.devices as usize {
        return Err(Error::config(format!(
            "polish: the peak limits must list {} devices",
            s.devices
        )));
    }
    let limits: Vec<f64> = peak_limit.iter().map(|l| l + EPS).collect();
    let score = |r: &SimResult| {
        let ends: f64 = r.end.iter().flatten().sum();
        (r.makespan, ends)
    };
    let mut best = score(&r);
    let mut evals = 0;
    // Try the critical pairs first (the device held the critical path back there); only when
    // none of them helps, every pair where the device held a pass back.
    let mut critical_only = true;
    loop {
        let pairs: Vec<(usize, usize)> = if critical_only {
            critical_pairs(&s, &g, &r, cfg.costs.comm)
        } else {
            (0..s.devices as usize)
                .flat_map(|d| (1..s.lists[d].len()).map(move |i| (d, i)))
                .filter(|&(d, i)| (r.start[d][i] - r.end[d][i - 1]).abs() <= EPS)
                .collect()
        };
        let mut improved = false;
        for (d, i) in pairs {
            if evals >= max_evals {
                return Ok((s, r));
            }
            s.lists[d].swap(i - 1, i);
            evals += 1;
            let better = match simulate_graph(&s, &g, cfg) {
                Ok(c) if within(&c, &limits) => {
                    let k = score(&c);
                    let gain = k.0 < best.0 - EPS || (k.0 < best.0 + EPS && k.1 < best.1 - EPS);
                    gain.then_some((c, k))
                }
                _ => None,
            };
            match better {
                Some((c, k)) => {
                    r = c;
                    best = k;
                    improved = true;
                    if critical_only {
                        // The critical path moved: recompute it.
                        break;
                    }
                }
                None => s.lists[d].swap(i - 1, i),
            }
        }
        match (improved, critical_only) {
            (true, _) => critical_only = true,
            (false, true) => critical_only = false,
            (false, false) => return Ok((s, r)),
        }
    }
}

/// The positions `(device, i)` on one critical path where pass `i` started the moment pass
/// `i - 1` of the same device ended, walking back from the pass that ends last.
fn critical_pairs(
    s: &Schedule,
    g: &crate::validate::Graph,
    r: &SimResult,
    comm: f64,
) -> Vec<(usize, usize)> {
    let mut pos = vec![(u32::MAX, u32::MAX); g.index.len()];
    for (d, list) in s.lists.iter().enumerate() {
        for (i, &q) in list.iter().enumerate() {
            pos[g.index.of(q)] = (d as u32, i as u32);
        }
    }
    let mut out = Vec::new();
    let Some((mut d, mut i)) = (0..s.lists.len())
        .filter(|&d| !s.lists[d].is_empty())
        .map(|d| (d, s.lists[d].len() - 1))
        .max_by(|a, b| r.end[a.0][a.1].total_cmp(&r.end[b.0][b.1]))
    else {
        return out;
    };
    loop {
        let start = r.start[d][i];
        if i > 0 && (start - r.end[d][i - 1]).abs() <= EPS {
            out.push((d, i));
            i -= 1;
            continue;
        }
        let (deps, n) = g.deps(s.lists[d][i]);
        let from = deps.iter().take(n).flatten().find_map(|q| {
            let (dd, di) = pos[g.index.of(*q)];
            let lat = if dd as usize != d { comm } else { 0.0 };
            ((r.end[dd as usize][di as usize] + lat - start).abs() <= EPS)
                .then_some((dd as usize, di as usize))
        });
        match from {
            Some((dd, di)) => {
                d = dd;
                i = di;
            }
            None => return out,
        }
    }
}

/// Whether every device's simulated peak stays within its limit (the limits carry the tolerance).
fn within(r: &SimResult, limits: &[f64]) -> bool {
    r.peak_activation.iter().zip(limits).all(|(pk, l)| pk <= l)
}

/// 1F1B as a block: sequential placement, `T = 3` (F one slot, BW two); stage `s` runs F at
/// slot `s` and BW at `3p - 2 - 2s`. Lifespan `3(p - s)`, bound `p - s` units.
pub fn one_f_one_b(p: u32) -> Block {
    let mut passes = Vec::new();
    for s in 0..p {
        passes.push(BlockPass {
            kind: PassKind::F,
            stage: s,
            offset: s,
        });
        passes.push(BlockPass {
            kind: PassKind::BW,
            stage: s,
            offset: 3 * p - 2 - 2 * s,
        });
    }
    Block {
        name: "1f1b".into(),
        devices: p,
        placement: Placement::Sequential,
        period: 3,
        slots: SlotLengths::default(),
        passes,
    }
}

/// ZB-H1 as a block: 1F1B's block with the backward split, B at `3p - 2 - 2s` and W in the
/// slot after it but `s` periods later. Every stage's lifespan becomes `3p` (peak `p` units on
/// every device) and, truncated to `m` microbatches, the delayed Ws of the last microbatches fill
/// the cool-down: the lists are exactly those of the direct ZB-H1 generator.
pub fn zb_h1(p: u32) -> Block {
    let mut passes = Vec::new();
    for s in 0..p {
        let b = 3 * p - 2 - 2 * s;
        passes.push(BlockPass {
            kind: PassKind::F,
            stage: s,
            offset: s,
        });
        passes.push(BlockPass {
            kind: PassKind::B,
            stage: s,
            offset: b,
        });
        passes.push(BlockPass {
            kind: PassKind::W,
            stage: s,
            offset: b + 1 + 3 * s,
        });
    }
    Block {
        name: "zb-h1".into(),
        devices: p,
        placement: Placement::Sequential,
        period: 3,
        slots: SlotLengths::default(),
        passes,
    }
}

/// The offsets of a V-shape block with F, B and W one slot each, repeated every `period` slots.
///
/// The forward runs down chunk 0 with `f0` slots between adjacent stages, turns at the bottom
/// of the V (stage `p-1` to `p`, same device) in one slot, and runs up chunk 1 with `f1`. The
/// backward starts `gap_last + 1` slots after the last forward starts, runs down chunk 1 with `b1`,
/// turns in `1 + gap_turn` slots and runs up chunk 0 with `b0`. Each W takes the first free slot
/// (modulo the period) after its B, chunk 1 first.
///
/// A device runs six passes per microbatch, so a period of 6 keeps it busy; a longer period
/// leaves `period - 6` idle slots per repeat and divides the same lifespans into fewer periods:
/// the memory bound falls below V-Min's, at the price of a steady-state bubble (before the
/// squeeze closes what it can of it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VOffsets {
    /// Forward step between adjacent chunk-0 stages.
    pub f0: u32,
    /// Forward step between adjacent chunk-1 stages.
    pub f1: u32,
    /// Backward step between adjacent chunk-1 stages.
    pub b1: u32,
    /// Backward step between adjacent chunk-0 stages.
    pub b0: u32,
    /// Extra slots between the last stage's F and its B.
    pub gap_last: u32,
    /// Extra slots at the turn of the backward (stage `p` to `p-1`).
    pub gap_turn: u32,
    /// Period `T` in slots, at least 6.
    pub period: u32,
}

/// A V-shape block from its offsets; `Err` when its repeats collide.
pub fn v_shape(name: &str, p: u32, o: VOffsets) -> Result<Block, Error> {
    v_shape_analysed(name, p, o).map(|(b, _)| b)
}

/// [`v_shape`] with the block's analysis, which building it checks anyway.
fn v_shape_analysed(name: &str, p: u32, o: VOffsets) -> Result<(Block, BlockInfo), Error> {
    if p == 0 {
        return Err(Error::config(
            "the number of devices is 0; use at least 1 (-p 1)",
        ));
    }
    if o.f0 == 0 || o.f1 == 0 || o.b1 == 0 || o.b0 == 0 {
        return Err(Error::config("V-shape offsets must step at least 1 slot"));
    }
    if o.period < 6 {
        return Err(Error::config(format!(
            "a V-shape block runs 6 one-slot passes per device, so its period must be at least 6 slots (got {})",
            o.period
        )));
    }
    let n = 2 * p;
    let mut f = vec![0u32; n as usize];
    for s in 1..n {
        let step = if s < p {
            o.f0
        } else if s == p {
            1
        } else {
            o.f1
        };
        f[s as usize] = f[s as usize - 1] + step;
    }
    let mut b = vec![0u32; n as usize];
    b[n as usize - 1] = f[n as usize - 1] + 1 + o.gap_last;
    for s in (0..n - 1).rev() {
        let step = if s >= p {
            o.b1
        } else if s == p - 1 {
            1 + o.gap_turn
        } else {
            o.b0
        };
        b[s as usize] = b[s as usize + 1] + step;
    }
    let t = o.period;
    let mut passes = Vec::with_capacity(6 * p as usize);
    for d in 0..p {
        let (s0, s1) = (d, n - 1 - d);
        let mut used = vec![false; t as usize];
        let mark = |x: u32, used: &mut [bool]| -> Result<(), Error> {
            let r = (x % t) as usize;
            if used[r] {
                return Err(Error::config(format!(
                    "V-shape block {name} collides on device {d} at slot {r} modulo {t}; try other offsets"
                )));
            }
            used[r] = true;
            Ok(())
        };
        for x in [
            f[s0 as usize],
            f[s1 as usize],
            b[s0 as usize],
            b[s1 as usize],
        ] {
            mark(x, &mut used)?;
        }
        // Ws: chunk-1 B comes first in time (it is further down the backward chain).
        let mut order = [(b[s1 as usize], s1), (b[s0 as usize], s0)];
        order.sort();
        let mut ws = Vec::new();
        for (bs, st) in order {
            let mut x = bs + 1;
            while used[(x % t) as usize] {
                x += 1;
            }
            used[(x % t) as usize] = true;
            ws.push((st, x));
        }
        for st in [s0, s1] {
            passes.push(BlockPass {
                kind: PassKind::F,
                stage: st,
                offset: f[st as usize],
            });
            passes.push(BlockPass {
                kind: PassKind::B,
                stage: st,
                offset: b[st as usize],
            });
        }
        for (st, x) in ws {
            passes.push(BlockPass {
                kind: PassKind::W,
                stage: st,
                offset: x,
            });
        }
    }
    let blk = Block {
        name: name.into(),
        devices: p,
        placement: Placement::VShape,
        period: t,
        slots: SlotLengths::default(),
        passes,
    };
    let info = blk.analyse()?;
    Ok((blk, info))
}

/// V-Min: the reference's stable pattern (all steps 1; F0 at `i`, F1 at `2p-1-i`, B1 at
/// `2p+x+i`, B0 at `4p+x-1-i`, `x = 2` when `3 | p`). Peak `⌊(p+4)/3⌋` units.
pub fn v_min(p: u32) -> Result<Block, Error> {
    let x = if p.is_multiple_of(3) { 2 } else { 0 };
    v_shape(
        "v-min",
        p,
        VOffsets {
            f0: 1,
            f1: 1,
            b1: 1,
            b0: 1,
            gap_last: x,
            gap_turn: 0,
            period: 6,
        },
    )
}

/// V-Half: the reference's stable pattern (F0 at `2i`, F1 at `3p-i-2`, B1 at `3p+x+2i-1`, B0 at
/// `6p+x-i-2`, `x = 3` when `p` is even). Peak `⌊(p+2)/2⌋` units.
pub fn v_half(p: u32) -> Result<Block, Error> {
    let x = if p.is_multiple_of(2) { 3 } else { 0 };
    v_shape(
        "v-half",
        p,
        VOffsets {
            f0: 2,
            f1: 1,
            b1: 2,
            b0: 1,
            gap_last: x,
            gap_turn: 1,
            period: 6,
        },
    )
}

/// Runs each device's list in time order like the simulator, but when the next pass of a list
/// must wait, runs instead a later pass of an edge microbatch (first or last `edge`) whose
/// inputs are there and whose activation fits under `limit`. `g` is the graph of `s`. Returns
/// the new lists, or `None` when the run gets stuck (the caller then keeps the squeezed
/// schedule).
fn fill_gaps(
    s: &Schedule,
    g: &crate::validate::Graph,
    cfg: &SimConfig,
    limit: &[f64],
    edge: u32,
    window: usize,
    defer_w: bool,
) -> Option<Schedule> {
    let p = s.devices as usize;
    let m = s.microbatches;
    let dur = cfg.durations(s);
    let act = cfg.activations(s);
    let comm = cfg.costs.comm;
    let mut end = vec![f64::INFINITY; g.index.len()];
    let mut done: Vec<Vec<bool>> = s.lists.iter().map(|l| vec![false; l.len()]).collect();
    let mut head = vec![0usize; p];
    let mut t = vec![0.0f64; p];
    let mut level = vec![0.0f64; p];
    // Devices waiting for an input, with the clock at which they went to sleep.
    let mut asleep: Vec<Option<f64>> = vec![None; p];
    let mut out: Vec<Vec<Pass>> = s
        .lists
        .iter()
        .map(|l| Vec::with_capacity(l.len()))
        .collect();
    let in_edge = |mb: u32| mb < edge || mb + edge >= m;
    let tail: Vec<usize> = s
        .lists
        .iter()
        .map(|l| {
            l.iter()
                .rposition(|q| q.kind == PassKind::F)
                .map_or(0, |i| i + 1)
        })
        .collect();
    // Readiness of a pass on device d: Some(time) when every input is done.
    let ready_at = |pass: Pass, d: usize, end: &Vec<f64>| -> Option<f64> {
        let (deps, k) = g.deps(pass);
        let mut r = 0.0f64;
        for dep in deps.iter().take(k).flatten() {
            let e = end[g.index.of(*dep)];
            if e == f64::INFINITY {
                return None;
            }
            let dd = g.stage_device[dep.stage as usize] as usize;
            r = r.max(e + if dd != d { comm } else { 0.0 });
        }
        Some(r)
    };
    // The next device to act is the one with the earliest clock (ties: the lowest index), kept
    // in a heap: every change of a clock pushes a new entry and outdated ones are skipped. A
    // clock is never negative, so its bits order like its value (infinity last).
    let key = |x: f64| if x > 0.0 { x.to_bits() } else { 0 };
    let mut queue: BinaryHeap<Reverse<(u64, usize)>> = (0..p).map(|d| Reverse((0, d))).collect();
    let next = |queue: &mut BinaryHeap<Reverse<(u64, usize)>>, t: &[f64], head: &[usize]| {
        while let Some(Reverse((k, d))) = queue.pop() {
            if head[d] < s.lists[d].len() && k == key(t[d]) {
                return Some(d);
            }
        }
        None
    };
    while let Some(d) = next(&mut queue, &t, &head) {
        let now = t[d];
        if now == f64::INFINITY {
            return None;
        }
        asleep[d] = None;
        let list = &s.lists[d];
        let mut wake = f64::INFINITY;
        let mut choice = None;
        // Cool-down (no forward left): a ready backward goes first, Ws fill the waits.
        if head[d] >= tail[d] {
            for i in head[d]..list.len() {
                let pass = list[i];
                if done[d][i] || !pass.kind.is_input_backward() {
                    continue;
                }
                if let Some(r) = ready_at(pass, d, &end) {
                    if r <= now + EPS {
                        choice = Some(i);
                        break;
                    }
                    wake = wake.min(r);
                }
                break;
            }
        }
        let mut seen = 0;
        let mut i = head[d];
        // A W of the cool-down that could wait for a ready B or F behind it.
        let mut deferred = None;
        while choice.is_none() && i < list.len() && seen < window {
            if done[d][i] {
                i += 1;
                continue;
            }
            seen += 1;
            let pass = list[i];
            let r = ready_at(pass, d, &end);
            if let Some(r) = r {
                if r > now + EPS {
                    wake = wake.min(r);
                }
            }
            let ok = r.is_some_and(|r| r <= now + EPS);
            let fits =
                pass.kind != PassKind::F || level[d] + act[pass.stage as usize] <= limit[d] + EPS;
            if ok && defer_w && pass.kind == PassKind::W && pass.mb + edge >= m {
                if deferred.is_none() {
                    deferred = Some(i);
                }
            } else if i == head[d] || deferred == Some(head[d]) && i > head[d] {
                if ok && (i == head[d] || fits) {
                    choice = Some(i);
                    break;
                }
            } else if ok && in_edge(pass.mb) && fits {
                choice = Some(i);
                break;
            }
            i += 1;
        }
        if choice.is_none() {
            choice = deferred;
        }
        let Some(i) = choice else {
            // Sleep until a known arrival, or until an input of this device is produced.
            t[d] = wake;
            queue.push(Reverse((key(wake), d)));
            asleep[d] = Some(now);
            continue;
        };
        let pass = list[i];
        level[d] += activation_change(pass.kind, act[pass.stage as usize], cfg.b_release);
        let e = now + dur[pass.stage as usize][pass.kind.index()];
        end[g.index.of(pass)] = e;
        t[d] = e;
        queue.push(Reverse((key(e), d)));
        done[d][i] = true;
        out[d].push(pass);
        while head[d] < list.len() && done[d][head[d]] {
            head[d] += 1;
        }
        // Wake the device that consumes this pass's output.
        let consumer = match pass.kind {
            PassKind::F if pass.stage + 1 < s.stages => Some(pass.stage + 1),
            PassKind::B | PassKind::BW if pass.stage > 0 => Some(pass.stage - 1),
            _ => None,
        };
        if let Some(c) = consumer {
            let cd = g.stage_device[c as usize] as usize;
            if let Some(base) = asleep[cd] {
                let arr = e + if cd != d { comm } else { 0.0 };
                let woken = t[cd].min(base.max(arr));
                if woken != t[cd] {
                    t[cd] = woken;
                    queue.push(Reverse((key(woken), cd)));
                }
            }
        }
    }
    let mut r = s.clone();
    r.lists = out;
    Some(r)
}

/// Every collision-free V-shape block with steps in `1..=max_step`, extra gaps in
/// `0..=max_gap` and a period in `6..=max_period` whose memory bound stays within `limit` units,
/// with its analysis: shortest period first, then shortest block, then lowest bound.
pub fn v_shape_family(
    p: u32,
    limit: f64,
    max_step: u32,
    max_gap: u32,
    max_period: u32,
) -> Vec<(VOffsets, Block, BlockInfo)> {
    let mut out = Vec::new();
    for period in 6..=max_period {
        for f0 in 1..=max_step {
            for f1 in 1..=max_step {
                for b1 in 1..=max_step {
                    for b0 in 1..=max_step {
                        for gap_last in 0..=max_gap {
                            for gap_turn in 0..=max_gap {
                                let o = VOffsets {
                                    f0,
                                    f1,
                                    b1,
                                    b0,
                                    gap_last,
                                    gap_turn,
                                    period,
                                };
                                let Ok((b, info)) = v_shape_analysed("v-block", p, o) else {
                                    continue;
                                };
                                if info.max_bound() <= limit + EPS {
                                    out.push((o, b, info));
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    out.sort_by(|a, b| {
        (a.0.period, a.2.length)
            .cmp(&(b.0.period, b.2.length))
            .then(a.2.max_bound().total_cmp(&b.2.max_bound()))
    });
    out
}

/// Most periods [`Block::delay_ws`] delays a device's Ws by in all: far more than any delay
/// that still changes a schedule of a practical number of microbatches, and small enough that
/// offsets stay far from overflowing.
pub const MAX_W_DELAY: u32 = 1 << 16;

/// Which of a device's stages takes the extra W delay in [`Block::delay_ws`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DelaySplit {
    /// All to the stage whose W comes last in the block (last in the cool-down).
    Last,
    /// All to the stage whose W comes first.
    First,
    /// Alternately, one period at a time, starting with the last.
    Even,
}

impl Block {
    /// Delays the W of `stage` by `periods` whole periods: the slots modulo the period do not
    /// change, so no collision appears, and the lifespan grows by `periods · T`.
    /// Offsets saturate at `u32::MAX` rather than wrap.
    pub fn delay_w(&mut self, stage: u32, periods: u32) {
        for q in &mut self.passes {
            if q.stage == stage && q.kind == PassKind::W {
                q.offset = q.offset.saturating_add(periods.saturating_mul(self.period));
            }
        }
    }

    /// Spends each device's memory slack under `limit` units on delaying its Ws by whole
    /// periods (the zero-bubble trick: late Ws fill the cool-down), at most
    /// [`MAX_W_DELAY`] periods per device: a huge limit costs no more than a large one. Blocks
    /// with fused backward are returned unchanged.
    pub fn delay_ws(&self, limit: f64, split: DelaySplit) -> Result<Block, Error> {
        let info = self.analyse()?;
        let mut out = self.clone();
        let p = self.devices;
        for d in 0..p {
            let slack = ((limit - info.memory_bound[d as usize]) / info.activation + EPS)
                .floor()
                .min(MAX_W_DELAY as f64);
            if slack < 1.0 {
                continue;
            }
            let mut ws: Vec<(u32, u32)> = self
                .passes
                .iter()
                .filter(|q| q.kind == PassKind::W && self.placement.device_of(q.stage, p) == d)
                .map(|q| (q.offset, q.stage))
                .collect();
            if ws.is_empty() {
                continue;
            }
            ws.sort();
            let n = slack as u32;
            match split {
                DelaySplit::Last => out.delay_w(ws[ws.len() - 1].1, n),
                DelaySplit::First => out.delay_w(ws[0].1, n),
                DelaySplit::Even => {
                    // One period at a time from the last W back: the `j`-th from the end gets
                    // `n / len` periods, plus one while `j < n % len`.
                    let len = ws.len() as u32;
                    for j in 0..len {
                        let periods = n / len + u32::from(j < n % len);
                        out.delay_w(ws[(len - 1 - j) as usize].1, periods);
                    }
                }
            }
        }
        Ok(out)
    }
}

/// V-ZB: forward steps of 4 slots between adjacent chunk-0 stages and 2 between chunk-1 stages,
/// backward steps of 4 down chunk 1 and 2 up chunk 0. The lifespan of stage 0 is `12p - 6`
/// slots, the bound and the peak `p` units; after the reorder the bubble is nearly zero at
/// F = B = W.
pub fn v_zb(p: u32) -> Result<Block, Error> {
    v_shape(
        "v-zb",
        p,
        VOffsets {
            f0: 4,
            f1: 2,
            b1: 4,
            b0: 2,
            gap_last: 0,
            gap_turn: 0,
            period: 6,
        },
    )
}

/// The named blocks: `1f1b`, `zb-h1`, `v-min`, `v-half`, `v-zb`.
pub const NAMED: [&str; 5] = ["1f1b", "zb-h1", "v-min", "v-half", "v-zb"];

/// A named block for `p` devices (see [`NAMED`]).
pub fn named(name: &str, p: u32) -> Result<Block, Error> {
    if p == 0 {
        return Err(Error::config(
            "the number of devices is 0; use at least 1 (-p 1)",
        ));
    }
    match name.trim().to_ascii_lowercase().as_str() {
        "1f1b" => Ok(one_f_one_b(p)),
        "zb-h1" => Ok(zb_h1(p)),
        "v-min" => v_min(p),
        "v-half" => v_half(p),
        "v-zb" => v_zb(p),
        other => Err(Error::config(format!(
            "no block for `{other}`; blocks exist for {}",
            NAMED.join(", ")
        ))),
    }
}
