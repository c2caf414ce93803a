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

use crate::engine::SimResult;
use crate::error::Error;
use crate::improve::{reorder, squeeze};
use crate::ir::{Pass, PassKind, Placement, Schedule};
use crate::params::StageCosts;

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
            // A recompute reruns the forward.
            PassKind::R => self.f,
            // Transfers run beside the computation and take no slot.
            PassKind::O | PassKind::L => 0,
        }
    }
}

/// One pass of the block: a kind on a stage, starting `offset` slots after the block's origin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockPass {
    /// Pass kind.
    pub kind: PassKind,
    /// Global stage index.
    pub stage: u32,
    /// Start slot within the block.
    pub offset: u32,
}

/// The longest block period accepted, in slots.
pub const MAX_PERIOD: u32 = 1 << 16;
/// The latest start offset accepted in a block, in slots.
pub const MAX_OFFSET: u32 = 1 << 24;

/// What [`Block::build`] does after squeezing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finish {
    /// Nothing: the squeezed schedule.
    Squeeze,
    /// Reorder the warm-up and cool-down ([`crate::improve::reorder`]).
    Reorder,
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

    /// The block's passes on each device.
    fn by_device(&self) -> Vec<Vec<BlockPass>> {
        let mut out = vec![Vec::new(); self.devices as usize];
        for q in &self.passes {
            out[self.placement.device_of(q.stage, self.devices) as usize].push(*q);
        }
        out
    }

    /// Reads a block from its JSON file format (see `docs/blocks.md`).
    pub fn from_json(text: &str) -> Result<Block, Error> {
        let f: BlockFile =
            crate::format::read_versioned(text, "JSON block", FORMAT, VERSION.into())?;
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
        if self.period > MAX_PERIOD || self.passes.iter().any(|q| q.offset > MAX_OFFSET) {
            return Err(Error::config(format!(
                "a block's period is at most {MAX_PERIOD} slots and its offsets at most {MAX_OFFSET}; shorten the block"
            )));
        }
        let lengths = [self.slots.f, self.slots.b, self.slots.w, self.slots.bw];
        if lengths.contains(&0) || lengths.iter().any(|&l| l > self.period) {
            return Err(Error::config(
                "block slot lengths must be at least 1 and at most the period",
            ));
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
        let mut lifespan = vec![0u32; n_st as usize];
        for st in 0..n_st as usize {
            let [f, b, w, bw] = at[st];
            let Some(f) = f else {
                return Err(Error::config(format!("block has no F for stage {st}")));
            };
            lifespan[st] = match (b, w, bw) {
                (Some(_), Some(w), None) => end(PassKind::W, w) - f,
                (None, None, Some(bw)) => end(PassKind::BW, bw) - f,
                _ => {
                    return Err(Error::config(format!(
                        "block stage {st} needs a backward: B and W, or BW alone"
                    )))
                }
            };
        }
        // Dependencies of one microbatch: each pass starts after its inputs end (the engine's
        // rule, in slots).
        let backward = |st: u32| {
            if at[st as usize][1].is_some() {
                PassKind::B
            } else {
                PassKind::BW
            }
        };
        for bp in &self.passes {
            for slot in crate::engine::inputs(Pass::new(bp.kind, bp.stage, 0), n_st)
                .into_iter()
                .flatten()
            {
                let q = slot.producer(backward(slot.stage()));
                let qs = at[q.stage as usize][q.kind.index()].unwrap_or(0);
                if bp.offset < end(q.kind, qs) {
                    return Err(Error::config(format!(
                        "block: {}{} at slot {} starts before {}{} ends (slot {}); move it later",
                        bp.kind,
                        bp.stage,
                        bp.offset,
                        q.kind,
                        q.stage,
                        end(q.kind, qs)
                    )));
                }
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
        let first = self.passes.iter().map(|q| q.offset).min().unwrap_or(0);
        let last = self
            .passes
            .iter()
            .map(|q| end(q.kind, q.offset))
            .max()
            .unwrap_or(0);
        let mut info = BlockInfo {
            lifespan,
            activation,
            memory_bound: Vec::new(),
            length: last - first,
            busy,
        };
        info.memory_bound = self.bound(&info, &vec![activation; n_st as usize]);
        Ok(info)
    }

    /// Repeats the block for `m` microbatches and sorts each device's passes by slot.
    ///
    /// The result is valid by construction: the slots are a timing of it that meets every
    /// dependency and keeps each device to one pass at a time.
    pub fn expand(&self, m: u32) -> Result<Schedule, Error> {
        self.analyse()?;
        let mut s = Schedule::empty(&self.name, self.devices, m, self.placement.clone())?;
        // Pass j of microbatch k starts at o_j + kT = (q_j + k)·T + r_j: ordered by the round
        // q_j + k and, within a round, by the residue r_j (unique on a device: the repeats do not
        // collide), every device's passes come in time order.
        let t = self.period;
        for (d, passes) in self.by_device().into_iter().enumerate() {
            let mut keyed: Vec<(u64, u32, Pass)> = Vec::with_capacity(passes.len() * m as usize);
            for bp in passes {
                let (q, r) = (u64::from(bp.offset / t), bp.offset % t);
                keyed
                    .extend((0..m).map(|k| (q + u64::from(k), r, Pass::new(bp.kind, bp.stage, k))));
            }
            keyed.sort_unstable_by_key(|x| (x.0, x.1));
            s.lists[d] = keyed.into_iter().map(|x| x.2).collect();
        }
        Ok(s)
    }

    /// Expands to `m` microbatches and squeezes under `costs`; with [`Finish::Reorder`] also
    /// reorders the warm-up and cool-down within the block's memory bound under `costs`.
    /// Returns the schedule and its simulation.
    pub fn build(
        &self,
        m: u32,
        costs: &StageCosts,
        finish: Finish,
    ) -> Result<(Schedule, SimResult), Error> {
        let s = self.expand(m)?;
        let r = squeeze(&s, costs)?;
        match finish {
            Finish::Squeeze => Ok((s, r)),
            Finish::Reorder if s.num_passes() as u64 > crate::params::limits::REPAIR_PASSES => {
                Ok((s, r))
            }
            Finish::Reorder => {
                let info = self.analyse()?;
                let edge = info.length.div_ceil(self.period);
                let act = costs.resolve(self.stages(), self.devices)?.act;
                let peak = r.max_peak();
                let limits: Vec<f64> = self
                    .bound(&info, &act)
                    .iter()
                    .map(|b| b.min(peak))
                    .collect();
                reorder(s, costs, Some(&limits), Some(edge))
            }
        }
    }

    /// Each device's memory bound when stage `s` holds `act[s]` units per microbatch:
    /// `Σ ⌈l_s/T⌉ · act[s]` over its stages.
    pub fn bound(&self, info: &BlockInfo, act: &[f64]) -> Vec<f64> {
        let mut out = vec![0.0; self.devices as usize];
        for (st, &l) in info.lifespan.iter().enumerate() {
            let d = self.placement.device_of(st as u32, self.devices) as usize;
            out[d] += l.div_ceil(self.period) as f64 * act[st];
        }
        out
    }
}

const EPS: f64 = crate::params::EPS;

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
        return Err(Error::Zero(crate::error::Param::Devices));
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
        push_v_device(&mut passes, [s0, s1], &f, &b, &ws);
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

/// A V-shape block of a family, with its offsets and analysis.
#[derive(Clone, Debug)]
pub struct Member {
    /// The offsets that made it.
    pub offsets: VOffsets,
    /// The block.
    pub block: Block,
    /// Its analysis; `memory_bound` under the family's activations.
    pub info: BlockInfo,
}

/// Every collision-free V-shape block with steps in `1..=max_step`, extra gaps in
/// `0..=max_gap` and a period in `6..=max_period` whose memory bound, with `act[s]` units per
/// microbatch on stage `s`, stays within `limit` units: shortest period first, then shortest
/// block, then lowest bound.
pub fn v_shape_family(
    p: u32,
    act: &[f64],
    limit: f64,
    max_step: u32,
    max_gap: u32,
    max_period: u32,
) -> Vec<Member> {
    let mut out = Vec::new();
    let steps = || 1..=max_step;
    let gaps = || 0..=max_gap;
    for period in 6..=max_period {
        for [f0, f1, b1, b0] in steps().flat_map(|a| {
            steps().flat_map(move |b| steps().flat_map(move |c| steps().map(move |d| [a, b, c, d])))
        }) {
            for (gap_last, gap_turn) in gaps().flat_map(|g| gaps().map(move |h| (g, h))) {
                let offsets = VOffsets {
                    f0,
                    f1,
                    b1,
                    b0,
                    gap_last,
                    gap_turn,
                    period,
                };
                let Ok((block, mut info)) = v_shape_analysed("v-block", p, offsets) else {
                    continue;
                };
                info.memory_bound = block.bound(&info, act);
                if info.max_bound() <= limit + EPS {
                    out.push(Member {
                        offsets,
                        block,
                        info,
                    });
                }
            }
        }
    }
    out.sort_by(|a, b| {
        (a.offsets.period, a.info.length)
            .cmp(&(b.offsets.period, b.info.length))
            .then(a.info.max_bound().total_cmp(&b.info.max_bound()))
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
    /// periods (the zero-bubble trick: late Ws fill the cool-down), with `act[s]` units per
    /// microbatch on stage `s`; at most [`MAX_W_DELAY`] periods per device: a huge limit costs
    /// no more than a large one. Blocks with fused backward are returned unchanged.
    pub fn delay_ws(&self, limit: f64, split: DelaySplit, act: &[f64]) -> Result<Block, Error> {
        let info = self.analyse()?;
        let bound = self.bound(&info, act);
        // Periods of delay per stage, applied in one sweep at the end.
        let mut delay = vec![0u32; self.stages() as usize];
        for (d, passes) in self.by_device().into_iter().enumerate() {
            let mut ws: Vec<(u32, u32)> = passes
                .iter()
                .filter(|q| q.kind == PassKind::W)
                .map(|q| (q.offset, q.stage))
                .collect();
            ws.sort();
            // Stages in the order they take a period: from the last W back.
            let order: Vec<u32> = ws.iter().rev().map(|w| w.1).collect();
            let slack = limit - bound[d];
            let periods =
                |a: f64| ((slack / a + EPS).floor().min(MAX_W_DELAY as f64)).max(0.0) as u32;
            match (split, order.first(), order.last()) {
                (_, None, _) | (_, _, None) => {}
                (DelaySplit::Last, Some(&st), _) | (DelaySplit::First, _, Some(&st)) => {
                    delay[st as usize] += periods(act[st as usize])
                }
                (DelaySplit::Even, Some(&st), _) => {
                    for (stage, n) in even_split(&order, act, slack, periods(act[st as usize])) {
                        delay[stage as usize] += n;
                    }
                }
            }
        }
        let mut out = self.clone();
        for q in &mut out.passes {
            if q.kind == PassKind::W {
                let shift = delay[q.stage as usize].saturating_mul(self.period);
                q.offset = q.offset.saturating_add(shift);
            }
        }
        Ok(out)
    }
}

/// Periods of delay for each of `order`'s stages, given one at a time in turn while `slack`
/// units last (`act[s]` each). When their activations are equal this is arithmetic: `n` periods
/// in all, the `j`-th stage `n / len` plus one while `j < n % len`.
fn even_split(order: &[u32], act: &[f64], slack: f64, n: u32) -> Vec<(u32, u32)> {
    let len = order.len() as u32;
    let a0 = act[order[0] as usize];
    if order.iter().all(|&s| act[s as usize] == a0) {
        return (0..len)
            .map(|j| (order[j as usize], n / len + u32::from(j < n % len)))
            .collect();
    }
    let round: f64 = order.iter().map(|&s| act[s as usize]).sum();
    let full = ((slack / round + EPS).floor().max(0.0) as u32).min(MAX_W_DELAY / len);
    let mut left = slack - full as f64 * round;
    order
        .iter()
        .map(|&s| {
            let a = act[s as usize];
            let extra = left + EPS >= a;
            if extra {
                left -= a;
            } else {
                left = f64::NEG_INFINITY;
            }
            (s, full + u32::from(extra))
        })
        .collect()
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
        return Err(Error::Zero(crate::error::Param::Devices));
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

/// The building blocks of the Controllable Memory paper's block search, as blocks: device 0
/// runs its chunk-0 F at slot 0 and its chunk-1 F, chunk-1 B and chunk-0 B at three other
/// distinct slots of a period of 6; going down the devices, the chunk-0 F and chunk-1 B move by
/// `k` slots (modulo 6) and the chunk-1 F and chunk-0 B by −1, with `k = k0` for the first
/// `len0` device steps and `k1 ≤ k0` after; each W takes the first free slot after its B. A
/// pass of microbatch 0 starts at the first slot with its residue after the pass it waits for.
/// Blocks whose residues collide on a device are left out; equal blocks appear once. Bounds
/// are under `act[s]` units per microbatch on stage `s`; blocks above `limit` are left out.
pub fn paper_family(p: u32, act: &[f64], limit: f64) -> Vec<(String, Block, BlockInfo)> {
    let mut out: Vec<(String, Block, BlockInfo)> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    if p < 2 {
        return out;
    }
    let t = PAPER_PERIOD;
    for ff in 1..t {
        for b1 in 1..t {
            for b0 in 1..t {
                if ff == b1 || ff == b0 || b1 == b0 {
                    continue;
                }
                for k0 in 1..t {
                    for k1 in 1..=k0 {
                        // With one step size, where it changes makes no difference.
                        let lens = if k0 == k1 { 1..2 } else { 1..p };
                        for len0 in lens {
                            let Some(blk) = paper_block(p, [ff, b1, b0], [k0, k1], len0) else {
                                continue;
                            };
                            let Ok(mut info) = blk.analyse() else {
                                continue;
                            };
                            info.memory_bound = blk.bound(&info, act);
                            if info.max_bound() > limit + EPS || !seen.insert(blk.passes.clone()) {
                                continue;
                            }
                            let label = format!(
                                "block paper start {ff}/{b1}/{b0} steps {k0}x{len0} then {k1}"
                            );
                            out.push((label, blk, info));
                        }
                    }
                }
            }
        }
    }
    out.sort_by(|a, b| {
        (a.2.length, a.2.max_bound().to_bits()).cmp(&(b.2.length, b.2.max_bound().to_bits()))
    });
    out
}

/// The period of [`paper_family`]'s blocks.
const PAPER_PERIOD: u32 = 6;

/// One block of [`paper_family`]: device 0's residues `[chunk-1 F, chunk-1 B, chunk-0 B]`
/// (its chunk-0 F at 0), steps `[k0, k1]` and `len0` device steps of `k0`; `None` when two of
/// a device's F and B residues collide (the common case, refused here before any pass is
/// built; [`Block::analyse`] checks the rest).
fn paper_block(p: u32, start: [u32; 3], [k0, k1]: [u32; 2], len0: u32) -> Option<Block> {
    let t = PAPER_PERIOD;
    let n = 2 * p;
    // Residues per device of [F0, F1, B1, B0].
    let mut res = vec![[0u32, start[0], start[1], start[2]]];
    for i in 0..p - 1 {
        let k = if i < len0 { k0 } else { k1 };
        let r = res[i as usize];
        let next = [
            (r[0] + k) % t,
            (r[1] + t - 1) % t,
            (r[2] + k) % t,
            (r[3] + t - 1) % t,
        ];
        if (0..4).any(|a| (a + 1..4).any(|z| next[a] == next[z])) {
            return None;
        }
        res.push(next);
    }
    // The first slot after `prev` with residue `r`.
    let first_at = |prev: u32, r: u32| prev + 1 + (r + 2 * t - (prev + 1) % t) % t;
    // Residue of stage `s`'s F or B: chunk 0 on the way down, chunk 1 on the way back.
    let residue = |s: u32, chunk0: usize, chunk1: usize| {
        if s < p {
            res[s as usize][chunk0]
        } else {
            res[(n - 1 - s) as usize][chunk1]
        }
    };
    // Microbatch 0 along the dependency chain.
    let mut f = vec![0u32; n as usize];
    let mut b = vec![0u32; n as usize];
    for s in 1..n {
        f[s as usize] = first_at(f[s as usize - 1], residue(s, 0, 1));
    }
    b[n as usize - 1] = first_at(f[n as usize - 1], res[0][2]);
    for s in (0..n - 1).rev() {
        b[s as usize] = first_at(b[s as usize + 1], residue(s, 3, 2));
    }
    let mut passes = Vec::with_capacity(6 * p as usize);
    for d in 0..p {
        let (s0, s1) = (d, n - 1 - d);
        let mut used = [false; PAPER_PERIOD as usize];
        for x in res[d as usize] {
            used[x as usize] = true;
        }
        // Each W in the first free residue after its B: the chunk-1 B's first.
        let mut ws = Vec::new();
        for st in [s1, s0] {
            let bs = b[st as usize];
            let free = (1..=t).map(|j| (bs + j) % t).find(|&r| !used[r as usize]);
            if let Some(r) = free {
                used[r as usize] = true;
                ws.push((st, first_at(bs, r)));
            }
        }
        push_v_device(&mut passes, [s0, s1], &f, &b, &ws);
    }
    Some(Block {
        name: "v-block".into(),
        devices: p,
        placement: Placement::VShape,
        period: t,
        slots: SlotLengths::default(),
        passes,
    })
}

/// One V-shape device's passes of a block: the F and B of its two stages at the offsets `f`
/// and `b` (indexed by stage), and its Ws at the given offsets.
fn push_v_device(
    passes: &mut Vec<BlockPass>,
    stages: [u32; 2],
    f: &[u32],
    b: &[u32],
    ws: &[(u32, u32)],
) {
    for st in stages {
        for (kind, at) in [(PassKind::F, f), (PassKind::B, b)] {
            passes.push(BlockPass {
                kind,
                stage: st,
                offset: at[st as usize],
            });
        }
    }
    for &(stage, offset) in ws {
        passes.push(BlockPass {
            kind: PassKind::W,
            stage,
            offset,
        });
    }
}
