//! Compaction on the unit grid: a block's repeats, tightened slot by slot before any cost is
//! known.
//!
//! [`crate::improve::reorder`] repairs a squeezed block under the real costs. This module gives
//! the other repair a block schedule can get, the one the Controllable Memory paper's V-Min and
//! V-Half builders use: every F and B keeps the unit slot its block gives it, the Ws fill the
//! first idle slots after their Bs, and then, walking the passes in slot order,
//!
//! 1. **with the Ws as passes**: each warm-up and cool-down pass moves to the earliest free slot
//!    after its inputs (and after the pass of the same kind and stage before it) that keeps
//!    every device within the highest peak of the original repeats;
//! 2. **with the Ws dropped**: the same for the cool-down's Fs and Bs, the Ws refilling the idle
//!    slots after each move;
//! 3. the Ws are placed one final time, the later stage's first on a device with two, and each
//!    device's list is its passes in slot order.
//!
//! The warm-up is every pass before the first B of stage 0 in slot order, the cool-down every
//! pass after the first forward of the last microbatch on a first-chunk stage (one of stages
//! `0..p`) that comes after it. The steady state in between is the
//! block's own pattern and stays. The order does not depend on the costs; the caller squeezes
//! it under them ([`crate::improve::squeeze`]) and keeps it only where it is shorter than the
//! cost-aware repair at no more memory: neither repair wins everywhere.
//!
//! Memory is counted in the costs' activation units (an F adds its stage's, a B frees the part
//! its stage releases, a W the rest), so unequal stages are honoured.

use std::collections::VecDeque;

use crate::block::Block;
use crate::engine::inputs;
use crate::error::{Error, Param};
use crate::ir::{Pass, PassKind, Schedule};
use crate::params::StageTable;

const EPS: f64 = crate::params::EPS;

/// Which order Ws fill a device's idle slots in.
#[derive(Clone, Copy, PartialEq, Eq)]
enum WOrder {
    /// First in, first out over all the device's Bs.
    Fifo,
    /// The pending W of the device's highest stage first (chunk 1 of a V-shape device), first in
    /// first out within a stage.
    LaterStageFirst,
}

/// A walk along a device's timeline: its activation now, its peak so far, and the stages of
/// its Bs whose Ws have not run yet, oldest first.
#[derive(Clone, Default)]
struct Scan {
    cur: f64,
    peak: f64,
    pending: VecDeque<u32>,
}

impl Scan {
    /// One slot further. See [`Grid::peak`].
    fn step(&mut self, cell: Option<Pass>, implicit: bool, table: &StageTable) {
        match cell {
            Some(q) if q.kind == PassKind::W => self.free_one(table),
            Some(q) => {
                self.cur += table.activation_change(q.kind, q.stage);
                if q.kind == PassKind::B {
                    self.pending.push_back(q.stage);
                }
                self.peak = self.peak.max(self.cur);
            }
            None if implicit => self.free_one(table),
            None => {}
        }
    }

    fn free_one(&mut self, table: &StageTable) {
        if let Some(st) = self.pending.pop_front() {
            self.cur += table.activation_change(PassKind::W, st);
        }
    }
}

/// Scans of a device's timeline from its start, kept every [`MARK_EVERY`] slots so that the
/// scan up to any slot starts from the last mark before it.
#[derive(Clone, Default)]
struct Marks {
    /// `at[k]`: the scan of slots `0..k * MARK_EVERY` of the timeline as it is now.
    at: Vec<Scan>,
}

/// See [`Marks`].
const MARK_EVERY: usize = 64;

impl Marks {
    /// The scan of `line[..slot]`.
    fn before(
        &mut self,
        line: &[Option<Pass>],
        slot: usize,
        implicit: bool,
        t: &StageTable,
    ) -> Scan {
        if self.at.is_empty() {
            self.at.push(Scan::default());
        }
        while self.at.len() * MARK_EVERY <= slot {
            let k = self.at.len() - 1;
            let mut next = self.at[k].clone();
            for &cell in &line[k * MARK_EVERY..(k + 1) * MARK_EVERY] {
                next.step(cell, implicit, t);
            }
            self.at.push(next);
        }
        let k = slot / MARK_EVERY;
        let mut scan = self.at[k].clone();
        for &cell in &line[k * MARK_EVERY..slot] {
            scan.step(cell, implicit, t);
        }
        scan
    }

    /// The timeline changed at `slot` and later: the marks past it are dropped.
    fn changed(&mut self, slot: usize) {
        self.at.truncate(slot / MARK_EVERY + 1);
    }
}

/// The passes on the grid: each pass's slot, and each device's slots with the pass in them.
struct Grid<'a> {
    stages: u32,
    m: u32,
    /// Stages of each device, ascending.
    local: Vec<Vec<u32>>,
    table: &'a StageTable,
    /// Slot of every F, B and W; `-1` when unset.
    slot: Vec<i64>,
    /// Each device's timeline: the pass in each slot.
    line: Vec<Vec<Option<Pass>>>,
}

impl Grid<'_> {
    fn idx(&self, p: Pass) -> usize {
        // F, B and W only: their indices are 0, 1 and 2.
        (p.kind.index() * self.stages as usize + p.stage as usize) * self.m as usize + p.mb as usize
    }

    fn at(&self, p: Pass) -> i64 {
        self.slot[self.idx(p)]
    }

    fn set(&mut self, p: Pass, t: i64) {
        let i = self.idx(p);
        self.slot[i] = t;
    }

    /// Rebuilds the timelines from the slots, with or without the Ws.
    fn relay(&mut self, with_ws: bool) {
        let kinds: &[PassKind] = if with_ws {
            &[PassKind::F, PassKind::B, PassKind::W]
        } else {
            &[PassKind::F, PassKind::B]
        };
        let mut line = vec![Vec::new(); self.local.len()];
        for (d, l) in line.iter_mut().enumerate() {
            for &k in kinds {
                for &st in &self.local[d] {
                    for mb in 0..self.m {
                        let q = Pass::new(k, st, mb);
                        let t = self.at(q) as usize;
                        if l.len() <= t {
                            l.resize(t + 1, None);
                        }
                        l[t] = Some(q);
                    }
                }
            }
        }
        self.line = line;
    }

    /// The device's F and B passes with the Ws in the first idle slots after their Bs, in
    /// `order`; Ws left when the Fs and Bs end go after them.
    fn with_ws(&self, d: usize, order: WOrder) -> Vec<(i64, Pass)> {
        let local = &self.local[d];
        let mut queues: Vec<VecDeque<Pass>> = vec![VecDeque::new(); local.len()];
        let queue_of = |st: u32| match order {
            WOrder::Fifo => 0,
            WOrder::LaterStageFirst => local.iter().position(|&s| s == st).unwrap_or(0),
        };
        // The later stage is the last in `local` (ascending).
        let pick =
            |queues: &mut Vec<VecDeque<Pass>>| queues.iter_mut().rev().find_map(|q| q.pop_front());
        let mut out = Vec::new();
        let line = &self.line[d];
        let mut t = 0i64;
        for cell in line {
            match cell {
                Some(q) if q.kind != PassKind::W => {
                    out.push((t, *q));
                    if q.kind == PassKind::B {
                        queues[queue_of(q.stage)].push_back(Pass::w(q.stage, q.mb));
                    }
                }
                _ => {
                    if let Some(w) = pick(&mut queues) {
                        out.push((t, w));
                    }
                }
            }
            t += 1;
        }
        while let Some(w) = pick(&mut queues) {
            out.push((t, w));
            t += 1;
        }
        out
    }

    /// Sets the slots of the Ws from [`Grid::with_ws`] in first-in-first-out order.
    fn place_ws(&mut self) {
        for d in 0..self.local.len() {
            for (t, w) in self.with_ws(d, WOrder::Fifo) {
                if w.kind == PassKind::W {
                    self.set(w, t);
                }
            }
        }
    }

    /// Peak activation of device `d` along its timeline. A W frees the oldest B's stage not
    /// yet freed (the Ws are anonymous while they move); with `implicit`, the Ws are not on
    /// the timeline and each idle slot runs one pending W.
    fn peak(&self, d: usize, implicit: bool) -> f64 {
        let mut scan = Scan::default();
        for &cell in &self.line[d] {
            scan.step(cell, implicit, self.table);
        }
        scan.peak
    }

    /// Slot of the `j`-th B (from 0) on device `d`'s timeline.
    fn nth_b(&self, d: usize, j: usize) -> i64 {
        self.line[d]
            .iter()
            .enumerate()
            .filter(|(_, c)| c.is_some_and(|q| q.kind == PassKind::B))
            .nth(j)
            .map_or(i64::MAX / 2, |(t, _)| t as i64)
    }

    /// First slot after every input of `q` (a W's input is its B).
    fn after_inputs(&self, q: Pass) -> i64 {
        if q.kind == PassKind::W {
            return self.at(Pass::b(q.stage, q.mb)) + 1;
        }
        inputs(q, self.stages)
            .into_iter()
            .flatten()
            .map(|slot| self.at(slot.producer(PassKind::B)) + 1)
            .fold(0, i64::max)
    }

    /// Earliest slot an F or B may take: after its inputs and after the pass of the same kind
    /// and stage for the previous microbatch.
    fn earliest(&self, q: Pass) -> i64 {
        let mut lo = self.after_inputs(q);
        if q.mb > 0 {
            lo = lo.max(self.at(Pass::new(q.kind, q.stage, q.mb - 1)) + 1);
        }
        lo
    }

    /// All passes on the timelines in slot order (device order within a slot).
    fn in_slot_order(&self) -> Vec<(usize, Pass)> {
        let len = self.line.iter().map(Vec::len).max().unwrap_or(0);
        let mut out = Vec::new();
        for t in 0..len {
            for (d, l) in self.line.iter().enumerate() {
                if let Some(Some(q)) = l.get(t) {
                    out.push((d, *q));
                }
            }
        }
        out
    }

    /// One compaction sweep over the timelines (with the Ws on them when `ws_on_line`, which
    /// also lets the warm-up move).
    fn sweep(&mut self, ws_on_line: bool, limit: f64) {
        let p = self.local.len();
        let order = self.in_slot_order();
        let last_mb = self.m - 1;
        let mut phase = 0u8;
        let mut w_seen = vec![0usize; p];
        let mut w_last = vec![-1i64; p];
        let implicit = !ws_on_line;
        let mut marks: Vec<Marks> = vec![Marks::default(); p];
        for (d, q) in order {
            let t = self.at(q);
            if phase == 0 && q.kind == PassKind::B && q.stage == 0 {
                phase = 1;
            }
            let movable = match phase {
                0 => ws_on_line,
                1 => false,
                _ => true,
            };
            if phase == 1 && q.kind == PassKind::F && (q.stage as usize) < p && q.mb == last_mb {
                phase = 2;
            }
            let mut at = t;
            if movable {
                let lo = if q.kind == PassKind::W {
                    // The j-th W of a device follows its j-th B and the W before it.
                    (self.nth_b(d, w_seen[d]) + 1).max(w_last[d] + 1)
                } else {
                    self.earliest(q)
                };
                self.line[d][t as usize] = None;
                // The scan of the slots before each trial is the same for every trial: it
                // starts from the device's last mark before the first free slot and advances
                // with the trial slot instead of starting over.
                let over = limit + EPS;
                // No scan at all when no slot before `t` is free.
                let lo = (lo.max(0)..t)
                    .find(|&s| self.line[d][s as usize].is_none())
                    .unwrap_or(t);
                let mut before = marks[d].before(&self.line[d], lo as usize, implicit, self.table);
                for s in lo..t {
                    if before.peak > over {
                        // Every trial from here on runs through this peak.
                        break;
                    }
                    let su = s as usize;
                    if self.line[d][su].is_none() {
                        let mut trial = before.clone();
                        trial.step(Some(q), implicit, self.table);
                        let fits = trial.peak <= over
                            && self.line[d][su + 1..].iter().all(|&cell| {
                                trial.step(cell, implicit, self.table);
                                trial.peak <= over
                            });
                        if fits {
                            at = s;
                            marks[d].changed(su);
                            break;
                        }
                    }
                    before.step(self.line[d][su], implicit, self.table);
                }
                self.line[d][at as usize] = Some(q);
                self.set(q, at);
            }
            if q.kind == PassKind::W {
                w_seen[d] += 1;
                w_last[d] = at;
            }
        }
        if ws_on_line {
            // The Ws get identities again: the j-th W of a device is its j-th B's.
            for d in 0..p {
                let mut bs = VecDeque::new();
                let mut cells = Vec::new();
                for (t, c) in self.line[d].iter().enumerate() {
                    match c {
                        Some(q) if q.kind == PassKind::B => bs.push_back(*q),
                        Some(q) if q.kind == PassKind::W => {
                            if let Some(b) = bs.pop_front() {
                                cells.push((t, Pass::w(b.stage, b.mb)));
                            }
                        }
                        _ => {}
                    }
                }
                for (t, w) in cells {
                    self.line[d][t] = Some(w);
                    self.set(w, t as i64);
                }
            }
        }
    }

    /// Runs every pass on the timelines as early as its device and its inputs allow, each one
    /// slot long, keeping each device's order: idle slots no dependency needs vanish.
    fn squeeze_unit(&mut self) {
        let mut free = vec![0i64; self.local.len()];
        for (d, q) in self.in_slot_order() {
            let t = free[d].max(self.after_inputs(q));
            self.set(q, t);
            free[d] = t + 1;
        }
    }
}

/// The block's schedule for `m` microbatches compacted on the unit grid (see the module
/// docs), or `None` when the block has other than one-slot F, B and W passes.
pub fn compact(block: &Block, m: u32, table: &StageTable) -> Result<Option<Schedule>, Error> {
    block.analyse()?;
    let sl = block.slots;
    if (sl.f, sl.b, sl.w) != (1, 1, 1) || block.passes.iter().any(|q| q.kind == PassKind::BW) {
        return Ok(None);
    }
    if m == 0 {
        return Err(Error::Zero(Param::Microbatches));
    }
    let p = block.devices;
    let stages = block.stages();
    let mut local = vec![Vec::new(); p as usize];
    for s in 0..stages {
        local[block.placement.device_of(s, p) as usize].push(s);
    }
    let n = 3usize
        .checked_mul(stages as usize)
        .and_then(|x| x.checked_mul(m as usize))
        .ok_or_else(|| Error::config("the block's grid is too large"))?;
    let mut g = Grid {
        stages,
        m,
        local,
        table,
        slot: vec![-1; n],
        line: Vec::new(),
    };
    let period = i64::from(block.period);
    for q in block.passes.iter().filter(|q| q.kind != PassKind::W) {
        for mb in 0..m {
            let t = i64::from(q.offset) + i64::from(mb) * period;
            g.set(Pass::new(q.kind, q.stage, mb), t);
        }
    }
    // The limit: the highest device peak of the repeats as the block gives them.
    g.relay(false);
    g.place_ws();
    g.relay(true);
    let limit = (0..p as usize)
        .map(|d| g.peak(d, false))
        .fold(0.0, f64::max);
    // 1. Warm-up and cool-down with the Ws as passes, then the unit squeeze.
    g.sweep(true, limit);
    g.squeeze_unit();
    // 2. The cool-down's Fs and Bs with the Ws refilling idle slots, the Ws placed, squeezed.
    g.relay(false);
    g.sweep(false, limit);
    g.place_ws();
    g.relay(true);
    g.squeeze_unit();
    // 3. The Ws placed one last time, the later stage's first.
    g.relay(false);
    let mut s = Schedule::empty(&block.name, p, m, block.placement.clone())?;
    for d in 0..p as usize {
        s.lists[d] = g
            .with_ws(d, WOrder::LaterStageFirst)
            .into_iter()
            .map(|x| x.1)
            .collect();
    }
    Ok(Some(s))
}
