//! Searches: the best schedule within a memory budget (`auto`), the memory/bubble frontier,
//! `zb-v`, ZB-H1 and ZB-H2 under unequal costs, and ZeroPP's group size under FSDP.
//!
//! `auto` tries four kinds of candidate under the real per-stage costs, latencies and
//! activations, and a memory budget:
//! - **blocks**: the named blocks and the V-shape block family ([`block::v_shape_family`], periods
//!   6 to 12: longer periods lower the bound below V-Min's) whose memory bound fits the budget,
//!   squeezed, again with the memory left over spent on delaying Ws ([`Block::delay_ws`]) (of
//!   the longer periods only the few that squeeze shortest), and the best reordered with the
//!   budget as the peak limit;
//! - **greedy**: the list scheduler ([`crate::generators::greedy`]) on V-shape and sequential
//!   placements, with the budget as the memory limit and several in-flight caps;
//! - **rounds**: the round-based V-shape scheduler ([`crate::generators::rounds`], ZB-V's
//!   construction) with the budget as its memory limit, several warm-ups and W-filling policies;
//! - **named**: the registered 1F1B, ZB-H1, ZB-H2, V-Min, V-Half and V-ZB when they fit.
//!
//! Every candidate is simulated; the lowest bubble rate whose simulated peak stays within the
//! budget wins (with the uniform shorthand costs are per pass, so placements with more stages
//! run more work per microbatch and only their bubble rates compare), so `auto` never exceeds
//! the budget it was given. The best two, and the best block, list and round schedule, are
//! then polished on their critical paths and climbed over device orders
//! ([`crate::improve`]).

use serde::Serialize;

use crate::block::{self, Block, BlockInfo, DelaySplit, Finish, Member};
use crate::engine::{simulate, SimResult};
use crate::error::{Error, Param};
use crate::fsdp::{schedule_and_run, FsdpRun, FsdpSetup, GIB};
use crate::generators::greedy::{list_schedule, GreedyOptions};
use crate::generators::rounds::{self, RoundOptions};
use crate::improve;
use crate::ir::{PassKind, Placement, Schedule};
use crate::params::{limits, one_f_one_b_peak, Budget, Params, EPS};

/// The final polish may run `POLISH_WORK / passes²` simulations (at most 4000): its work grows
/// with the square of the schedule's size, so small problems get a thorough search and large
/// ones, whose bubble is already small, keep the search under a second.
const POLISH_WORK: f64 = 5e9;

/// Expands a block for `prm`, squeezes it under `prm`'s costs and reorders its warm-up and
/// cool-down within the block's memory bound. When the stages differ, the same block finished
/// under the cost-blind stand-ins ([`crate::params::StageCosts::stand_ins`]) is kept instead
/// when it is shorter under the true costs and within the true bound. The schedule keeps the
/// block's name.
pub fn from_block(b: &Block, prm: &Params) -> Result<Schedule, Error> {
    if b.devices != prm.devices() {
        return Err(Error::fix(
            format!(
                "the block is for {} devices but the schedule for {}",
                b.devices,
                prm.devices()
            ),
            Param::Devices,
            b.devices.to_string(),
        ));
    }
    let (mut s, mut r) = b.build(prm.microbatches(), &prm.costs, Finish::Reorder)?;
    // The block's promise is its highest per-device bound: the memory every device is given.
    // (Per device, the grid repair may lift a device below the highest to it, as the paper's
    // builders do; the peak a user allocates for does not change.)
    let cap = b
        .bound(&b.analyse()?, &prm.table(&b.placement)?.act)
        .into_iter()
        .fold(0.0, f64::max);
    let bound = vec![cap; prm.devices() as usize];
    if s.num_passes() as u64 > limits::REPAIR_PASSES {
        return Ok(s);
    }
    for other in prm.costs.stand_ins() {
        let (alike, _) = b.build(prm.microbatches(), &other, Finish::Reorder)?;
        let ra = simulate(&alike, &prm.costs)?;
        if ra.fits(&bound) && ra.makespan < r.makespan - EPS {
            (s, r) = (alike, ra);
        }
    }
    // The unit-grid repair (the paper's), kept where it is shorter at no more memory.
    if let Some((g, rg)) = grid_candidate(b, prm)? {
        if rg.fits(&bound) && rg.max_peak() <= r.max_peak() + EPS && rg.makespan < r.makespan - EPS
        {
            s = g;
        }
    }
    Ok(s)
}

/// The block compacted on the unit grid ([`crate::grid::compact`]) and squeezed under `prm`'s
/// costs, when the block has one-slot F, B and W passes.
pub fn grid_candidate(b: &Block, prm: &Params) -> Result<Option<(Schedule, SimResult)>, Error> {
    let table = prm.table(&b.placement)?;
    let Some(g) = crate::grid::compact(b, prm.microbatches(), &table)? else {
        return Ok(None);
    };
    let r = simulate(&g, &prm.costs)?;
    Ok(Some((g, r)))
}

/// Per device, `k` microbatches on all its stages under `placement`: the memory of a schedule
/// defined by how many microbatches each device holds (ZB-H1 `p`, ZB-H2 `2p - 1`, ZB-V `p`).
fn holding(prm: &Params, placement: &Placement, k: f64) -> Result<Vec<f64>, Error> {
    let need = prm.table(placement)?.need(placement, prm.devices());
    Ok(need.into_iter().map(|n| k * n).collect())
}

/// The direct schedule, or the sequential greedy list schedule or the
/// [chain scheduler](crate::generators::chain) holding as many microbatches (`held` per device)
/// when one is faster under `prm`'s costs (never at the reference costs, where the direct
/// schedules are optimal).
pub fn zero_bubble(direct: Schedule, prm: &Params, held: f64) -> Result<Schedule, Error> {
    if prm.costs.is_reference() {
        return Ok(direct);
    }
    let base = simulate(&direct, &prm.costs)?;
    let limit: Vec<f64> = holding(prm, &Placement::Sequential, held)?
        .iter()
        .zip(&base.peak_activation)
        .map(|(l, pk)| l.max(*pk))
        .collect();
    let p = prm.devices();
    let mut best = (base.makespan, direct);
    for pace in [None, Some(holding(prm, &Placement::Sequential, p as f64)?)] {
        let o = GreedyOptions {
            name: best.1.name.clone(),
            placement: Placement::Sequential,
            limit: limit.clone(),
            pace,
            split_backward: true,
            max_in_flight: None,
            reserve: false,
        };
        let Ok(s) = list_schedule(prm, &o) else {
            continue;
        };
        let Ok(r) = simulate(&s, &prm.costs) else {
            continue;
        };
        if r.makespan < best.0 - EPS && r.fits(&limit) {
            best = (r.makespan, s);
        }
    }
    for o in crate::generators::chain::variants(&limit) {
        let Ok(mut s) = crate::generators::chain::chain_schedule(prm, &o) else {
            continue;
        };
        let Ok(r) = simulate(&s, &prm.costs) else {
            continue;
        };
        if r.makespan < best.0 - EPS && r.fits(&limit) {
            s.name.clone_from(&best.1.name);
            best = (r.makespan, s);
        }
    }
    Ok(best.1)
}

/// Options of the list scheduler for a placement and a per-device limit.
fn greedy_options(
    name: &str,
    placement: Placement,
    limit: Vec<f64>,
    cap: Option<u32>,
    reserve: bool,
) -> GreedyOptions {
    GreedyOptions {
        name: name.into(),
        placement,
        limit,
        pace: None,
        split_backward: true,
        max_in_flight: cap,
        reserve,
    }
}

/// The in-flight caps tried for a budget of `microbatches` (whole microbatches per device).
fn caps(microbatches: f64, m: u32) -> Vec<Option<u32>> {
    let b = microbatches.floor().clamp(1.0, u32::MAX as f64 / 4.0) as u32;
    let mut v = vec![
        None,
        Some(b),
        Some(b + 1),
        Some(b + 2),
        Some(b + b / 2),
        Some(2 * b),
    ];
    v.retain(|c| c.is_none_or(|c| c <= m));
    v.dedup();
    v
}

/// How many microbatches the most loaded device of `placement` holds within `units`.
fn microbatches_within(prm: &Params, placement: &Placement, units: f64) -> Result<f64, Error> {
    let need = holding(prm, placement, 1.0)?;
    Ok(units / need.iter().cloned().fold(0.0, f64::max))
}

/// Refines one run of the round scheduler and keeps its shortest schedule under `prm`'s costs.
fn best_of_rounds(prm: &Params, o: RoundOptions) -> Option<(Schedule, SimResult)> {
    let mut best: Option<(Schedule, SimResult)> = None;
    for s in rounds::refined(prm, o, 2) {
        let Ok(r) = simulate(&s, &prm.costs) else {
            continue;
        };
        if best
            .as_ref()
            .is_none_or(|(_, b)| r.makespan < b.makespan - EPS)
        {
            best = Some((s, r));
        }
    }
    best
}

/// ZB-V: V-shape placement, B/W split, holding `p` microbatches per device (1F1B's memory),
/// under `prm`'s costs: the best of the round-based scheduler and the greedy list scheduler
/// (B first, F while memory allows, W fills the waits) with a few in-flight caps. When the
/// stages differ, the same built under the cost-blind stand-ins competes too, scored on the
/// true costs.
pub fn zb_v(prm: &Params) -> Result<Schedule, Error> {
    let passes = 6 * u64::from(prm.devices()) * u64::from(prm.microbatches());
    if passes > limits::ZB_V_PASSES {
        return Err(Error::TooLarge {
            what: format!(
                "the number of passes zb-v searches for {} devices and {} microbatches",
                prm.devices(),
                prm.microbatches()
            ),
            value: passes,
            limit: limits::ZB_V_PASSES,
            hint:
                "use v-zb (a building block with the same memory, any size) or fewer microbatches"
                    .into(),
            param: Some(Param::Microbatches),
        });
    }
    let limits = holding(prm, &Placement::VShape, prm.devices() as f64)?;
    let variants = |prm: &Params| {
        let st = Search::new(prm, limits.clone())?;
        let mut tasks = Vec::new();
        for cap in caps(prm.devices() as f64, prm.microbatches()) {
            for reserve in [false, true] {
                let placement = Placement::VShape;
                let tag = "v-shape";
                tasks.push(Task::Greedy {
                    placement,
                    tag,
                    cap,
                    reserve,
                });
            }
        }
        tasks.extend(rounds::variants(&limits).into_iter().map(Task::Rounds));
        Ok::<_, Error>(run_all(&st, tasks).into_iter().flatten())
    };
    let mut found: Vec<Candidate> = variants(prm)?.collect();
    for other in prm.costs.stand_ins() {
        for mut c in variants(&prm.clone().with_costs(other))? {
            c.result = simulate(&c.schedule, &prm.costs)?;
            found.push(c);
        }
    }
    let mut best: Option<Candidate> = None;
    for c in found.into_iter().filter(|c| c.result.fits(&limits)) {
        if best
            .as_ref()
            .is_none_or(|b| c.result.makespan < b.result.makespan - EPS)
        {
            best = Some(c);
        }
    }
    let mut s = best
        .ok_or_else(|| Error::config("zb-v: no schedule holds p microbatches per device"))?
        .schedule;
    s.name = "zb-v".into();
    Ok(s)
}

/// One schedule found by the search, with its simulation.
#[derive(Clone, Debug)]
pub struct Candidate {
    /// Family and variant that produced it, e.g. `block v-half` or `greedy v-shape cap 5`.
    pub family: String,
    /// The schedule.
    pub schedule: Schedule,
    /// Its simulation under the search's costs.
    pub result: SimResult,
}

/// A block the search may squeeze, with its label and its analysis (done once, its bound
/// under the search's activations).
#[derive(Clone)]
struct Labelled {
    label: String,
    block: Block,
    info: BlockInfo,
}

/// Whether [`Search::block_tasks`] also squeezes each block with its Ws delayed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Delays {
    Too,
    No,
}

/// One unit of the search's work, independent of the others.
enum Task {
    /// Expand a block (its Ws delayed by `split`, when given) and squeeze it.
    Squeeze {
        label: String,
        block: Block,
        split: Option<DelaySplit>,
    },
    /// Run the list scheduler.
    Greedy {
        placement: Placement,
        tag: &'static str,
        cap: Option<u32>,
        reserve: bool,
    },
    /// Generate a registered schedule.
    Direct(&'static str),
    /// Run the round-based V-shape scheduler, refined.
    Rounds(RoundOptions),
    /// Run the zero-bubble authors' sequential construction
    /// ([chain](crate::generators::chain)) at the budget: their ZB-1p/ZB-2p at 1x/2x.
    Chain(crate::generators::chain::ChainOptions),
    /// Reorder a squeezed schedule's warm-up and cool-down under the budget.
    Reorder(String, Schedule),
    /// Compact a block's repeats on the unit grid ([`crate::grid`]).
    Grid(String, Block),
    /// Rebuild a block's warm-up and cool-down the paper's way ([`crate::rebuild`]) within
    /// this many chunk activations.
    Rebuild(String, Block, i64),
    /// Local search on a candidate's critical path, with at most this many simulations.
    Polish(Candidate, usize),
    /// Hill climbing over a candidate's device orders: this many moves, drawn from this seed.
    Climb(Candidate, usize, u64),
}

struct Search<'a> {
    prm: &'a Params,
    budget: f64,
    /// The budget as every device's peak limit, for the mends (reorder, polish, climb).
    limits: Vec<f64>,
    /// Activation units per stage of the V-shape placement.
    act_v: Vec<f64>,
    /// The best few candidates within the budget, best first (ties: first offered first); the
    /// first is the search's answer, all of them start the final polish.
    top: Vec<Candidate>,
}

/// The longest period of the V-shape blocks searched: a period of 6 keeps a device busy, longer
/// ones trade a steady-state bubble for a lower memory bound (down to about half of V-Min's at
/// 12), which is what budgets below V-Min's need; under unequal costs the squeeze closes much
/// of that bubble, and a stretched block can win above V-Min's memory too.
const MAX_PERIOD: u32 = 12;

/// The blocks of the paper's family ([`block::paper_family`]) squeezed: about
/// `PAPER_WORK / passes` of them, shortest first.
const PAPER_WORK: f64 = 1.0e6;

/// The paper's own repair ([`crate::rebuild`]) runs on the blocks of its family, shortest
/// first, as many as `REBUILD_WORK / cells` (each rebuild walks its grid of `6p·max(m, 2p)`
/// unit cells a dozen times, then is simulated once): every block up to p = 8, m = 32 and
/// about 40 of them at p = 32, m = 256.
const REBUILD_WORK: f64 = 2.0e6;

/// Phase 1 runs about `SQUEEZE_WORK / passes` squeezes (each one simulation, linear in the
/// passes of a V-shape schedule): no limit for small schedules, about 70 at p = 32, m = 256.
/// Every period-6 block is squeezed as it is even beyond that; its delayed-W variants, and the
/// longer periods after them, only within it.
const SQUEEZE_WORK: f64 = 3.5e6;

/// How many blocks with a period above 6 (the shortest after their plain squeeze) are squeezed
/// again with their Ws delayed, three ways each; every period-6 block that leaves memory over
/// is. Stretched blocks fit many budgets, and delaying all of them would double the search's
/// time at p = 32, m = 256.
const DELAY_STRETCHED: usize = 6;

/// Candidates the final polish starts from (in parallel).
const POLISH_STARTS: usize = 2;

/// The final hill climb ([`crate::improve::climb`]) makes about `CLIMB_WORK / passes` moves
/// from each of the best candidates (a move simulates again the passes after it, so the climb
/// costs about the same at every size), at most `CLIMB_MAX_MOVES`. It is skipped below
/// `CLIMB_MIN_MOVES` moves (from about 4 600 passes: p = 8, m = 96 or p = 16, m = 48) and above
/// `CLIMB_MAX_DEVICES` devices: there it gained nothing measurable (p = 24 to 32, m = 16 to
/// 64), which `auto`'s second at p = 32, m = 256 cannot afford.
const CLIMB_WORK: f64 = 4.6e7;
/// See [`CLIMB_WORK`].
const CLIMB_MAX_MOVES: usize = 30_000;
/// See [`CLIMB_WORK`].
const CLIMB_MIN_MOVES: usize = 10_000;
/// See [`CLIMB_WORK`].
const CLIMB_MAX_DEVICES: u32 = 16;

/// Simulations [`crate::improve::pair_up`] may spend one pair at a time on each of the best
/// schedules, and on each other start.
const PAIR_EVALS_BEST: usize = 4000;
/// See [`PAIR_EVALS_BEST`].
const PAIR_EVALS_OTHERS: usize = 200;

/// The kinds of candidate whose best is always polished (named schedules are not searched).
const POLISHED_KINDS: [&str; 4] = ["block", "grid", "greedy", "rounds"];

/// The kind of a candidate: the first word of its family label (`block`, `grid`, `greedy`, `rounds`,
/// `named`).
fn kind_of(family: &str) -> &str {
    family.split_whitespace().next().unwrap_or("")
}

/// The reorder phase reorders the distinct squeezed blocks with the lowest bubble rates, as
/// many as `REORDER_WORK / passes` (one reorder costs a few simulations, each linear in the
/// passes), at least `REORDER_MIN` and at most `REORDER_MAX`: reordering changes the blocks'
/// ranking, so small schedules reorder many, and p = 32, m = 256 still reorders six.
const REORDER_WORK: f64 = 3.2e5;
/// See [`REORDER_WORK`].
const REORDER_MIN: usize = 6;
/// See [`REORDER_WORK`].
const REORDER_MAX: usize = 24;

impl<'a> Search<'a> {
    /// A search for `prm` within `limits` units per device (the budget is the largest).
    fn new(prm: &'a Params, limits: Vec<f64>) -> Result<Self, Error> {
        Ok(Search {
            prm,
            budget: limits.iter().cloned().fold(0.0, f64::max),
            act_v: prm.table(&Placement::VShape)?.act,
            limits,
            top: Vec::new(),
        })
    }

    /// The best of each of [`POLISHED_KINDS`] among `found` within the budget (the first of
    /// equals).
    fn best_of_kinds(&self, found: &[Candidate]) -> Vec<Candidate> {
        POLISHED_KINDS
            .iter()
            .filter_map(|&kind| {
                found
                    .iter()
                    .filter(|f| kind_of(&f.family) == kind && self.fits(&f.result))
                    .fold(None, |best: Option<&Candidate>, f| match best {
                        Some(b) if self.score(&f.result) >= self.score(&b.result) - EPS => Some(b),
                        _ => Some(f),
                    })
                    .cloned()
            })
            .collect()
    }

    /// The starts of a local search: the best so far, then each of `best_of_kind` whose kind
    /// is not among them.
    fn starts(&self, best_of_kind: Vec<Candidate>) -> Vec<Candidate> {
        let mut starts = self.top.clone();
        for c in best_of_kind {
            let kind = kind_of(&c.family);
            if !starts.iter().any(|t| kind_of(&t.family) == kind) {
                starts.push(c);
            }
        }
        starts
    }

    /// Whether a simulated schedule stays within the budget.
    fn fits(&self, r: &SimResult) -> bool {
        r.max_peak() <= self.budget + 1e-6
    }

    /// What the search ranks by: the idle share of [`Params::objective`] (of the work as if
    /// overlapped pairs ran their halves in turn, so that a pair's saving counts as time gained,
    /// not as idle time).
    fn score(&self, r: &SimResult) -> f64 {
        self.prm.objective.bubble(r)
    }

    fn offer(&mut self, c: Candidate) {
        if !self.fits(&c.result) {
            return;
        }
        let score = self.score(&c.result);
        let at = self
            .top
            .iter()
            .position(|t| score < self.score(&t.result) - EPS)
            .unwrap_or(self.top.len());
        if at < POLISH_STARTS {
            self.top.insert(at, c);
            self.top.truncate(POLISH_STARTS);
        }
    }

    /// The squeeze tasks of the blocks whose bound fits the budget: each block as it is and,
    /// with [`Delays::Too`] and memory left over, right after it with its Ws delayed in three
    /// ways ([`DelaySplit`]).
    fn block_tasks(&self, blocks: &[Labelled], delays: Delays) -> Vec<Task> {
        let mut tasks = Vec::new();
        for b in blocks {
            if b.info.max_bound() > self.budget + EPS {
                continue;
            }
            tasks.push(Task::Squeeze {
                label: b.label.clone(),
                block: b.block.clone(),
                split: None,
            });
            if delays == Delays::Too && self.leaves_memory(b) {
                for split in [DelaySplit::Last, DelaySplit::First, DelaySplit::Even] {
                    tasks.push(Task::Squeeze {
                        label: b.label.clone(),
                        block: b.block.clone(),
                        split: Some(split),
                    });
                }
            }
        }
        tasks
    }

    /// Whether a block has Ws and its bound leaves memory over for delaying them.
    fn leaves_memory(&self, b: &Labelled) -> bool {
        b.block.passes.iter().any(|q| q.kind == PassKind::W)
            && b.info.max_bound() + EPS < self.budget
    }

    /// The delayed-W squeeze tasks (three ways each) of the `DELAY_STRETCHED` blocks whose plain
    /// squeeze (`plain`, from [`Search::block_tasks`] without delays) ran shortest and whose
    /// bound leaves memory over.
    fn delay_tasks(&self, blocks: &[Labelled], plain: &[Option<Candidate>]) -> Vec<Task> {
        let mut ranked: Vec<(&str, f64)> = plain
            .iter()
            .flatten()
            .map(|c| (c.family.as_str(), c.result.makespan))
            .collect();
        ranked.sort_by(|a, b| a.1.total_cmp(&b.1));
        let mut tasks = Vec::new();
        let mut taken = 0;
        for (label, _) in ranked {
            if taken == DELAY_STRETCHED {
                break;
            }
            let Some(b) = blocks.iter().find(|b| b.label == label) else {
                continue;
            };
            if !self.leaves_memory(b) {
                continue;
            }
            taken += 1;
            for split in [DelaySplit::Last, DelaySplit::First, DelaySplit::Even] {
                tasks.push(Task::Squeeze {
                    label: label.to_string(),
                    block: b.block.clone(),
                    split: Some(split),
                });
            }
        }
        tasks
    }

    /// The list scheduler's variants: V-shape and sequential placements, in-flight caps, with
    /// and without the V-shape reservation.
    fn greedy_tasks(&self) -> Vec<Task> {
        let mut tasks = Vec::new();
        for (placement, tag) in [
            (Placement::VShape, "v-shape"),
            (Placement::Sequential, "sequential"),
        ] {
            let Ok(held) = microbatches_within(self.prm, &placement, self.budget) else {
                continue;
            };
            let mut cs = caps(held, self.prm.microbatches());
            if placement == Placement::Sequential {
                // The sequential placement only wins at the smallest budgets; two caps do.
                cs.truncate(2);
            }
            for cap in cs {
                for reserve in [false, true] {
                    if reserve && placement == Placement::Sequential {
                        continue;
                    }
                    tasks.push(Task::Greedy {
                        placement: placement.clone(),
                        tag,
                        cap,
                        reserve,
                    });
                }
            }
        }
        tasks
    }

    /// Runs one task; `None` when it yields no schedule (a block that does not expand, a
    /// generator that refuses the sizes).
    fn run(&self, task: Task) -> Option<Candidate> {
        let costs = &self.prm.costs;
        let found = |family: String, schedule: Schedule, result: SimResult| {
            Some(Candidate {
                family,
                schedule,
                result,
            })
        };
        match task {
            Task::Squeeze {
                label,
                block,
                split,
            } => {
                let (bb, tag) = match split {
                    None => (block, String::new()),
                    Some(sp) => (
                        block.delay_ws(self.budget, sp, &self.act_v).ok()?,
                        format!(", W delayed ({sp:?})"),
                    ),
                };
                let s = bb.expand(self.prm.microbatches()).ok()?;
                let r = simulate(&s, costs).ok()?;
                found(format!("{label}{tag}"), s, r)
            }
            Task::Greedy {
                placement,
                tag,
                cap,
                reserve,
            } => {
                let o = greedy_options("auto", placement, self.limits.clone(), cap, reserve);
                let s = list_schedule(self.prm, &o).ok()?;
                let r = simulate(&s, costs).ok()?;
                let label = format!(
                    "greedy {tag}{}{}",
                    cap.map(|c| format!(", at most {c} in flight"))
                        .unwrap_or_default(),
                    if reserve { ", reserving" } else { "" }
                );
                found(label, s, r)
            }
            Task::Direct(name) => {
                let mut prm = self.prm.clone();
                prm.budget = None;
                let s = crate::registry::generate(name, &prm).ok()?;
                let r = simulate(&s, costs).ok()?;
                found(format!("named {name}"), s, r)
            }
            Task::Rounds(o) => {
                let label = format!(
                    "rounds v-shape, warm-up reserve {}+{}d{}{}",
                    o.reserve,
                    o.step,
                    if o.fill.before_f { ", W before F" } else { "" },
                    if o.fill.before_b { ", W before B" } else { "" }
                );
                let (s, r) = best_of_rounds(self.prm, o)?;
                found(label, s, r)
            }
            Task::Chain(o) => {
                let s = crate::generators::chain::chain_schedule(self.prm, &o).ok()?;
                let r = simulate(&s, costs).ok()?;
                let label = format!(
                    "chain sequential{}{}{}",
                    if o.bubble_before_first_b {
                        ", bubble before the first B"
                    } else {
                        ""
                    },
                    if o.prioritize_b { ", B first" } else { "" },
                    if o.greedy_fill { ", greedy W" } else { "" }
                );
                found(label, s, r)
            }
            Task::Reorder(label, s) => {
                let (s, r) =
                    improve::reorder(s, costs, Some(&self.limits), Some(self.prm.microbatches()))
                        .ok()?;
                found(format!("{label}, reordered"), s, r)
            }
            Task::Grid(label, block) => {
                let (s, r) = grid_candidate(&block, self.prm).ok()??;
                // Its own kind: a grid schedule that squeezes best must not take the polish
                // from the best reordered block, which can polish further.
                found(format!("grid {label}"), s, r)
            }
            Task::Rebuild(label, block, chunks) => {
                let s = crate::rebuild::rebuild(&block, self.prm.microbatches(), chunks)?;
                let r = simulate(&s, costs).ok()?;
                found(format!("rebuilt {label}"), s, r)
            }
            Task::Polish(c, evals) => {
                let (s, r) = improve::polish(c.schedule, costs, &self.limits, evals).ok()?;
                found(format!("{}, polished", c.family), s, r)
            }
            Task::Climb(c, moves, seed) => {
                let (s, r) = improve::climb(&c.schedule, costs, &self.limits, moves, seed).ok()?;
                found(format!("{}, climbed", c.family), s, r)
            }
        }
    }
}

/// Runs `tasks` on the machine's cores (a scoped work queue) and returns the results in task
/// order, so the search's outcome does not depend on the timing of its threads.
fn run_all(st: &Search<'_>, tasks: Vec<Task>) -> Vec<Option<Candidate>> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
    let n = tasks.len();
    let threads = std::thread::available_parallelism()
        .map_or(1, |t| t.get())
        .min(n);
    if threads <= 1 {
        return tasks.into_iter().map(|t| st.run(t)).collect();
    }
    let queue: Vec<Mutex<Option<Task>>> = tasks.into_iter().map(|t| Mutex::new(Some(t))).collect();
    let out: Vec<Mutex<Option<Candidate>>> = (0..n).map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    std::thread::scope(|sc| {
        for _ in 0..threads {
            sc.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                // Each slot is taken by exactly one thread (the counter hands out each index
                // once), so these locks never contend; a poisoned lock only means another task
                // panicked, and that panic is re-raised when the scope ends.
                let task = queue[i].lock().ok().and_then(|mut q| q.take());
                if let Some(task) = task {
                    let r = st.run(task);
                    if let Ok(mut o) = out[i].lock() {
                        *o = r;
                    }
                }
            });
        }
    });
    out.into_iter()
        .map(|m| m.into_inner().ok().flatten())
        .collect()
}

/// The budget in units for `prm` (default: 1F1B's peak).
pub fn budget_units(prm: &Params) -> Result<f64, Error> {
    prm.budget.unwrap_or(Budget::Of1f1b(1.0)).units_for(prm)
}

/// The V-shape blocks the search squeezes first, from `family` (sorted shortest period first,
/// then shortest block, as [`block::v_shape_family`] returns it): the picks of [`picks_of`]
/// among the period-6 blocks, then among the longer periods; and the rest of the family, in
/// family order, squeezed after them where the work allows. Picking the two groups apart keeps
/// the period-6 picks what they are without longer periods, whose bounds would otherwise change
/// the bound levels picked from.
fn family_picks(family: Vec<Member>) -> (Vec<Member>, Vec<Member>) {
    let (six, longer): (Vec<_>, Vec<_>) = family.into_iter().partition(|x| x.offsets.period <= 6);
    let (mut picked, mut rest) = picks_of(six);
    let (picked_longer, rest_longer) = picks_of(longer);
    picked.extend(picked_longer);
    rest.extend(rest_longer);
    (picked, rest)
}

/// The six first blocks of `family` and the four first at each of its three highest memory
/// bounds, then the others. Without the per-bound picks a larger budget lets shorter blocks
/// with a higher bound push out the blocks a smaller budget would try, and `auto` could answer
/// worse at 4.5 units than at 4.
fn picks_of(family: Vec<Member>) -> (Vec<Member>, Vec<Member>) {
    let mut bounds: Vec<f64> = family.iter().map(|x| x.info.max_bound()).collect();
    bounds.sort_by(|a, b| b.total_cmp(a));
    bounds.dedup_by(|a, b| (*a - *b).abs() <= EPS);
    let mut picked = vec![false; family.len()];
    for x in picked.iter_mut().take(6) {
        *x = true;
    }
    for &level in bounds.iter().take(3) {
        family
            .iter()
            .enumerate()
            .filter(|(_, x)| (x.info.max_bound() - level).abs() <= EPS)
            .take(4)
            .for_each(|(i, _)| picked[i] = true);
    }
    let (keep, rest): (Vec<_>, Vec<_>) = family.into_iter().zip(picked).partition(|x| x.1);
    (
        keep.into_iter().map(|x| x.0).collect(),
        rest.into_iter().map(|x| x.0).collect(),
    )
}

/// The search's label of a family block.
fn labelled(m: Member) -> Labelled {
    let o = m.offsets;
    Labelled {
        label: format!(
            "block v-shape steps {}/{}/{}/{} gaps {}/{} period {}",
            o.f0, o.f1, o.b1, o.b0, o.gap_last, o.gap_turn, o.period
        ),
        block: m.block,
        info: m.info,
    }
}

/// The `n` distinct schedules of `squeezed` with the lowest bubble rates that are not in
/// `taken` (costs may be per pass, so makespans do not compare across placements; named blocks
/// and family members can be the same block: v-min is steps 1/1/1/1, gaps 0/0).
fn best_distinct<'f>(
    squeezed: &'f [Option<Candidate>],
    n: usize,
    taken: &[&Candidate],
) -> Vec<&'f Candidate> {
    let mut ranked: Vec<&Candidate> = squeezed.iter().flatten().collect();
    ranked.sort_by(|a, b| a.result.bubble_rate.total_cmp(&b.result.bubble_rate));
    let mut out: Vec<&Candidate> = Vec::new();
    for f in ranked {
        if out.len() == n {
            break;
        }
        let same = |g: &&Candidate| g.schedule.lists == f.schedule.lists;
        if !out.iter().any(same) && !taken.iter().any(same) {
            out.push(f);
        }
    }
    out
}

/// Refuses a search beyond `passes_limit` passes (of a V-shape schedule) or
/// [`limits::SEARCH_DEVICES`] devices: it builds and simulates hundreds of candidates.
fn check_search_size(prm: &Params, passes_limit: u64, hint: &str) -> Result<(), Error> {
    let (p, m) = (u64::from(prm.devices()), u64::from(prm.microbatches()));
    let too_large = |what: String, value, limit, param| Error::TooLarge {
        what,
        value,
        limit,
        hint: hint.into(),
        param: Some(param),
    };
    if p > limits::SEARCH_DEVICES.into() {
        let what = "the number of devices a memory-budgeted search takes".into();
        return Err(too_large(
            what,
            p,
            limits::SEARCH_DEVICES.into(),
            Param::Devices,
        ));
    }
    if 6 * p * m > passes_limit {
        let what = format!(
            "the number of passes of a searched schedule of {p} devices and {m} microbatches"
        );
        return Err(too_large(
            what,
            6 * p * m,
            passes_limit,
            Param::Microbatches,
        ));
    }
    Ok(())
}

/// The least memory any placement the search tries runs with: one microbatch on all of a
/// device's stages, on the most loaded device (1 unit at uniform activations).
fn least_memory(prm: &Params) -> Result<f64, Error> {
    let mut least = f64::INFINITY;
    for placement in [Placement::VShape, Placement::Sequential] {
        least = least.min(microbatches_within(prm, &placement, 1.0).map(|x| 1.0 / x)?);
    }
    Ok(least)
}

/// Searches blocks, the greedy list scheduler and the direct schedules for the shortest step
/// whose simulated peak stays within `budget` units per device, and the named schedules with
/// the activations offloaded and the stages recomputed that they need to fit
/// ([`crate::offload::best`]) where the budget is below 1F1B's peak (above it every one of them
/// fits as it is): below what any schedule holds on the device only these. Recomputation ranks
/// as lost time and transfers by the delays they cause, so they are chosen only where they
/// shorten the step or nothing fits without them.
pub fn search(prm: &Params, budget: f64) -> Result<Candidate, Error> {
    let plain = search_on_device(prm, budget);
    let below_1f1b = || {
        one_f_one_b_peak(prm.devices(), prm.microbatches(), &prm.costs)
            .map_or(true, |peak| budget < peak - EPS)
    };
    let valid = budget.is_finite() && budget > 0.0;
    let rec = match &plain {
        Err(Error::Config { .. }) if valid => crate::offload::best(prm, budget).unwrap_or(None),
        Ok(_) if below_1f1b() => crate::offload::best(prm, budget).unwrap_or(None),
        _ => None,
    };
    match (plain, rec) {
        (Ok(c), Some((family, schedule, result)))
            if prm.objective.bubble(&result) < prm.objective.bubble(&c.result) - EPS =>
        {
            Ok(Candidate {
                family,
                schedule,
                result,
            })
        }
        (Ok(c), _) => Ok(c),
        (Err(_), Some((family, schedule, result))) => Ok(Candidate {
            family,
            schedule,
            result,
        }),
        (Err(e), None) => match least_memory(prm) {
            // Below what any schedule holds on its devices, and nothing recomputed or
            // offloaded fits either: say so rather than name the held minimum as the floor.
            Ok(least) if valid && budget < least - EPS => Err(Error::fix(
                format!(
                    "a memory budget of {budget:.3} units per device fits no schedule: holding its activations takes at least {least:.3} units, and no named schedule recomputing every stage (and offloading, where the costs give the host link) gets under {budget:.3}; raise it (to {least:.3} units, all held, at the most)"
                ),
                Param::Budget,
                format!("{least:.3}"),
            )),
            _ => Err(e),
        },
    }
}

/// [`search`] without recomputation or offload: the best schedule that holds every activation
/// it keeps on its devices.
pub fn search_on_device(prm: &Params, budget: f64) -> Result<Candidate, Error> {
    if !(budget.is_finite() && budget > 0.0) {
        return Err(Error::change(
            "the memory budget must be a positive number of units",
            Param::Budget,
        ));
    }
    let (p, m) = (prm.devices(), prm.microbatches());
    check_search_size(
        prm,
        limits::SEARCH_PASSES,
        "use a named schedule (v-zb, zb-v, v-half, ...) or a smaller size",
    )?;
    let least = least_memory(prm)?;
    if budget < least - EPS {
        // Every stage of a device holds a microbatch's activation until that microbatch's W, so
        // the device holds all of them at once.
        let one_f_one_b = one_f_one_b_peak(p, m, &prm.costs)?;
        return Err(Error::fix(
            format!(
                "a memory budget of {budget:.3} units per device is below one microbatch's activation on a device ({least:.3} units, held on all its stages at once); raise it to at least {least:.3} units ({:.3}x of 1F1B's peak)",
                least / one_f_one_b
            ),
            Param::Budget,
            format!("{least:.3}"),
        ));
    }
    // A device never holds more than every microbatch on all its stages, so a larger budget
    // searches exactly what that many units search: cap it, or the W delays and caps derived
    // from it grow with a budget that changes nothing.
    let most = m as f64
        / microbatches_within(prm, &Placement::VShape, 1.0)?.min(microbatches_within(
            prm,
            &Placement::Sequential,
            1.0,
        )?);
    let budget = budget.min(most);
    let mut st = Search::new(prm, vec![budget; p as usize])?;
    let mut blocks: Vec<Labelled> = Vec::new();
    for name in block::NAMED {
        if let Ok(b) = block::named(name, p) {
            if let (Ok(mut info), Ok(table)) = (b.analyse(), prm.table(&b.placement)) {
                info.memory_bound = b.bound(&info, &table.act);
                blocks.push(Labelled {
                    label: format!("block {name}"),
                    block: b,
                    info,
                });
            }
        }
    }
    let (picked, rest) = family_picks(block::v_shape_family(
        p, &st.act_v, budget, 3, 4, MAX_PERIOD,
    ));
    blocks.extend(picked.into_iter().map(labelled));
    let rest: Vec<Labelled> = rest.into_iter().map(labelled).collect();
    // The blocks of the paper's block search (two step sizes down the devices), shortest
    // first: those within the budget are squeezed in a room of their own so they take nothing
    // from the others; all of them are rebuilt the paper's way in phase 2.
    let paper_family = block::paper_family(p, &st.act_v, f64::INFINITY);
    let paper_blocks: Vec<Labelled> = paper_family
        .iter()
        .filter(|(_, _, info)| info.max_bound() <= budget + EPS)
        .map(|(label, block, info)| Labelled {
            label: label.clone(),
            block: block.clone(),
            info: info.clone(),
        })
        .collect();
    // Phase 1: squeeze the blocks, each one simulation, within SQUEEZE_WORK / passes of them
    // except that every period-6 (or named) block is squeezed as it is: first those, each
    // followed by its delayed-W variants, then the longer periods, which fit many more
    // budgets, and of them only the few that squeeze shortest with delayed Ws.
    let v_passes = 6 * p as usize * m as usize;
    let mut room = (SQUEEZE_WORK / v_passes.max(1) as f64) as usize;
    let (six, longer): (Vec<_>, Vec<_>) = blocks.into_iter().partition(|b| b.block.period <= 6);
    let tasks: Vec<Task> = st
        .block_tasks(&six, Delays::Too)
        .into_iter()
        .filter(|t| {
            let keep = room > 0 || matches!(t, Task::Squeeze { split: None, .. });
            room = room.saturating_sub(usize::from(keep));
            keep
        })
        .collect();
    let squeezed = run_all(&st, tasks);
    let mut within_room = |mut tasks: Vec<Task>| {
        tasks.truncate(room);
        room -= tasks.len();
        tasks
    };
    let mut stretched = run_all(&st, within_room(st.block_tasks(&longer, Delays::No)));
    let delayed = run_all(&st, within_room(st.delay_tasks(&longer, &stretched)));
    stretched.extend(delayed);
    // The rest of the family, as it is, while the room lasts (all of it for small schedules):
    // the picks keep the search's size fixed for large ones, but a block they leave out can
    // squeeze best of all (p = 8, m = 32, 4 units: steps 2/2/2/2, gaps 2/2, period 10, 0.334
    // squeezed and 0.208 reordered, against 0.247 for the best pick). They are reordered
    // besides the picks, not instead of them.
    let others = run_all(&st, within_room(st.block_tasks(&rest, Delays::No)));
    let mut paper_tasks = st.block_tasks(&paper_blocks, Delays::No);
    paper_tasks.truncate((PAPER_WORK / v_passes.max(1) as f64) as usize);
    let paper = run_all(&st, paper_tasks);
    // Phase 2, all independent: reorder the best few distinct squeezed blocks of each group
    // (as many as the reorder's work allows, a third as many of the longer periods, of the
    // rest and of the paper's family) and compact them on the unit grid, run the list
    // scheduler, the round scheduler and the named schedules (so that `auto` is never worse
    // than a named schedule that fits its budget). The reorders go first: they are the
    // longest tasks, and the others fill the cores around them.
    let n_reorder =
        ((REORDER_WORK / v_passes.max(1) as f64) as usize).clamp(REORDER_MIN, REORDER_MAX);
    let best_six = best_distinct(&squeezed, n_reorder, &[]);
    let best_longer = best_distinct(&stretched, (n_reorder / 3).max(1), &best_six);
    let mut taken: Vec<&Candidate> = best_six.iter().chain(&best_longer).copied().collect();
    for group in [&others, &paper] {
        let best = best_distinct(group, (n_reorder / 3).max(1), &taken);
        taken.extend(best);
    }
    // The named blocks as they are are reordered and compacted by their generators, which
    // run below as named schedules: not twice.
    let direct = [
        "1f1b",
        "zb-h1",
        "zb-h2",
        "v-min",
        "v-half",
        "v-zb",
        "zb-v",
        "dualpipev",
    ];
    let named_block = |label: &str| {
        label
            .strip_prefix("block ")
            .is_some_and(|n| direct.contains(&n))
    };
    let mut tasks: Vec<Task> = taken
        .iter()
        .filter(|c| !named_block(&c.family))
        .map(|c| Task::Reorder(c.family.clone(), c.schedule.clone()))
        .collect();
    // The same blocks compacted on the unit grid (the Ws are placed anew, so a block's
    // delayed-W variants are one block there).
    let mut gridded: Vec<&str> = Vec::new();
    for c in &taken {
        let base = c.family.split(", W delayed").next().unwrap_or(&c.family);
        if gridded.contains(&base) || named_block(base) {
            continue;
        }
        gridded.push(base);
        let block = [&six, &longer, &rest, &paper_blocks]
            .into_iter()
            .flatten()
            .find(|b| b.label == base);
        if let Some(b) = block {
            tasks.push(Task::Grid(base.to_string(), b.block.clone()));
        }
    }
    // The paper's block search: its family rebuilt its way (its memory test is the rebuilt
    // grid's peak, not the block's bound, so the family is taken whole).
    let chunk = st.act_v.iter().cloned().fold(0.0, f64::max);
    if chunk > 0.0 {
        let chunks = ((budget / chunk + EPS).floor() as i64).min(2 * i64::from(p));
        let cells = 6 * p as usize * (m as usize).max(2 * p as usize);
        let room = (REBUILD_WORK / cells.max(1) as f64) as usize;
        tasks.extend(
            paper_family
                .into_iter()
                .take(room)
                .map(|(label, b, _)| Task::Rebuild(label, b, chunks)),
        );
    }
    tasks.extend(st.greedy_tasks());
    if least <= budget + EPS {
        let limit = vec![budget; p as usize];
        tasks.extend(rounds::variants(&limit).into_iter().map(Task::Rounds));
    }
    // The zero-bubble authors' construction on the sequential placement at the budget (what
    // their ZB-1p and ZB-2p are at one and two times 1F1B's memory) when a device can hold one
    // microbatch of its stage.
    if !prm.costs.is_reference() && budget + EPS >= 1.0 {
        let limit = vec![budget.floor(); p as usize];
        tasks.extend(
            crate::generators::chain::variants(&limit)
                .into_iter()
                .map(Task::Chain),
        );
    }
    tasks.extend(direct.into_iter().map(Task::Direct));
    let found: Vec<Candidate> = squeezed
        .into_iter()
        .chain(stretched)
        .chain(others)
        .chain(paper)
        .chain(run_all(&st, tasks))
        .flatten()
        .collect();
    // The best of each searching kind within the budget, a possible polish start besides the
    // best two.
    let best_of_kind = st.best_of_kinds(&found);
    // Where pairs pay, the named schedules that fit are paired too (below), besides the best.
    let named: Vec<Candidate> = found
        .iter()
        .filter(|f| kind_of(&f.family) == "named" && st.fits(&f.result))
        .cloned()
        .collect();
    let mut pair_starts = best_of_kind.clone();
    pair_starts.extend(named);
    // Judge in a fixed order: squeezed period-6 and named blocks, longer periods, reorders,
    // greedy, rounds, named schedules.
    for f in found {
        st.offer(f);
    }
    // When the stages differ, what the same search finds under the cost-blind stand-ins,
    // judged on the true costs and memory: the answer is never worse than that.
    for other in prm.costs.stand_ins() {
        if let Ok(c) = search_on_device(&prm.clone().with_costs(other), budget) {
            if let Ok(result) = simulate(&c.schedule, &prm.costs) {
                st.offer(Candidate {
                    family: format!("{}, found blind to the stages", c.family),
                    schedule: c.schedule,
                    result,
                });
            }
        }
    }
    // Phase 3: local search on the critical paths of the best few, and of the best of each
    // searching kind not among them (a list schedule well behind the blocks can polish further
    // than they do: p=2, m=8, 1.5 units, 0.158 -> 0.059 against the blocks' 0.111), each within
    // a number of simulations that keeps the search near a fixed amount of work.
    let polish: Vec<Task> = st
        .starts(best_of_kind)
        .into_iter()
        .map(|c| {
            let passes = c.schedule.num_passes().max(1) as f64;
            let evals = (POLISH_WORK / (passes * passes)).min(4000.0) as usize;
            Task::Polish(c, evals)
        })
        .collect();
    for f in run_all(&st, polish).into_iter().flatten() {
        st.offer(f);
    }
    // Phase 4: hill climbing from the best few, in parallel, each with its own seed, where
    // the schedule is small enough for the moves to matter.
    let climb: Vec<Task> = st
        .top
        .iter()
        .zip(1u64..)
        .filter_map(|(c, seed)| {
            let passes = c.schedule.num_passes().max(1) as f64;
            let moves = ((CLIMB_WORK / passes) as usize).min(CLIMB_MAX_MOVES);
            (moves >= CLIMB_MIN_MOVES && p <= CLIMB_MAX_DEVICES)
                .then(|| Task::Climb(c.clone(), moves, seed))
        })
        .collect();
    for f in run_all(&st, climb).into_iter().flatten() {
        st.offer(f);
    }
    // Phase 5: where a pair of a forward and a backward hides time (communication inside the
    // passes, or an overlap fraction below 1), overlap the adjacent ones of the best schedules
    // (one at a time where all at once does not help) and of the best of each kind and the
    // named schedules (all at once, and a few one at a time).
    let starts: Vec<(Candidate, usize)> = st
        .top
        .iter()
        .map(|c| (c.clone(), PAIR_EVALS_BEST))
        .chain(pair_starts.into_iter().map(|c| (c, PAIR_EVALS_OTHERS)))
        .filter(|(c, _)| c.schedule.pairs.is_empty())
        .collect();
    let paired: Vec<Candidate> = starts
        .into_iter()
        .filter_map(|(c, evals)| {
            let (schedule, result) =
                crate::improve::pair_up(&c.schedule, &prm.costs, &st.limits, prm.objective, evals)
                    .ok()??;
            Some(Candidate {
                family: format!("{}, forwards and backwards overlapped", c.family),
                schedule,
                result,
            })
        })
        .collect();
    for c in paired {
        st.offer(c);
    }
    st.top.into_iter().next().ok_or_else(|| {
        Error::change(
            format!("no schedule fits a memory budget of {budget:.3} units per device for p={p}, m={m}; raise the budget"),
            Param::Budget,
        )
    })
}

/// `auto`: the best schedule the search finds within `prm`'s budget (default 1F1B's memory).
pub fn auto(prm: &Params) -> Result<Schedule, Error> {
    let c = search(prm, budget_units(prm)?)?;
    let mut s = c.schedule;
    s.name = "auto".into();
    Ok(s)
}

/// One point of the memory/bubble frontier.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct FrontierPoint {
    /// Budget in units per device.
    pub budget: f64,
    /// Budget as a multiple of 1F1B's peak.
    pub budget_vs_1f1b: f64,
    /// Best bubble rate found within the budget (recomputation counted as idle time: the step
    /// it lengthens, not work done).
    pub bubble_rate: f64,
    /// Its simulated peak, in units.
    pub peak: f64,
    /// Its makespan.
    pub makespan: f64,
    /// The family and variant that gave it.
    pub family: String,
}

/// The lowest budget the [`frontier`] searches, as a fraction of 1F1B's peak activation.
pub const FRONTIER_LOWEST: f64 = 0.05;

/// The memory/bubble frontier: for budgets from 0.05x of 1F1B's peak (0.05, 0.1, 0.15, 0.2,
/// 0.25x, reached by recomputing stages and offloading activations) and from the smallest
/// feasible to twice 1F1B's peak in steps of half a unit (coarser when 1F1B's peak is above 16
/// units), the best bubble rate found ([`search`]) and its step time; only budgets that
/// improve on the previous point are kept. `progress(done, all)` is called after each budget's
/// search.
pub fn frontier(
    prm: &Params,
    mut progress: impl FnMut(usize, usize),
) -> Result<Vec<FrontierPoint>, Error> {
    check_search_size(
        prm,
        limits::FRONTIER_PASSES,
        "use fewer microbatches (the frontier's shape settles within a few times p) or devices",
    )?;
    let base = one_f_one_b_peak(prm.devices(), prm.microbatches(), &prm.costs)?;
    let top = 2.0 * base;
    let mut out: Vec<FrontierPoint> = Vec::new();
    // Half-unit steps, coarser for large p so the frontier takes at most about 32 searches.
    let step = ((base / 16.0) * 2.0).round().max(1.0) / 2.0;
    let grid = ((top + EPS) / step).floor() as usize;
    let mut budgets: Vec<f64> = [FRONTIER_LOWEST, 0.1, 0.15, 0.2, 0.25]
        .into_iter()
        .map(|k| k * base)
        .chain((1..=grid).map(|i| i as f64 * step))
        .collect();
    budgets.sort_by(f64::total_cmp);
    budgets.dedup_by(|a, b| (*a - *b).abs() < 1e-6);
    let all = budgets.len();
    for (done, budget) in budgets.into_iter().enumerate() {
        if let Ok(c) = search(prm, budget) {
            let bubble = prm.objective.bubble(&c.result);
            if out.last().is_none_or(|l| bubble < l.bubble_rate - 1e-6) {
                out.push(FrontierPoint {
                    budget,
                    budget_vs_1f1b: budget / base,
                    bubble_rate: bubble,
                    peak: c.result.max_peak(),
                    makespan: c.result.makespan,
                    family: c.family,
                });
            }
        }
        progress(done + 1, all);
    }
    if out.is_empty() {
        return Err(Error::config(
            "no schedule fits any budget up to twice 1F1B's memory",
        ));
    }
    Ok(out)
}

/// One group size [`zeropp_group`] tried.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct GroupTrial {
    /// Microbatches per group.
    pub group: u32,
    /// Its simulated step time.
    pub step: f64,
    /// Its peak memory per device, bytes.
    pub peak_memory: f64,
}

/// Picks ZeroPP's group size under FSDP: among the divisors of `m`, the one with the shortest
/// simulated step whose peak memory fits `budget` bytes per device (the device's memory when
/// `None`); its run (the group is its gather window) and every group size tried. Larger groups
/// hide more of the pipeline bubble and move less parameter traffic; smaller groups keep fewer
/// activations alive.
pub fn zeropp_group(
    prm: &Params,
    setup: &FsdpSetup,
    budget: Option<f64>,
) -> Result<(FsdpRun, Vec<GroupTrial>), Error> {
    let m = prm.microbatches();
    let budget = budget.unwrap_or(setup.device.memory);
    let mut best: Option<FsdpRun> = None;
    let mut tried = Vec::new();
    for u in (1..=m).filter(|u| m.is_multiple_of(*u)) {
        let run = match schedule_and_run("zeropp", &prm.clone().with_group(u)?, setup) {
            Ok(run) => run,
            // A group too large for the activation budget in units is not a candidate.
            Err(e) if e.suggestion().is_some_and(|f| f.param == Param::Budget) => continue,
            Err(e) => return Err(e),
        };
        let (step, peak) = (run.result.makespan, run.result.max_peak_memory());
        tried.push(GroupTrial {
            group: u,
            step,
            peak_memory: peak,
        });
        if peak <= budget && best.as_ref().is_none_or(|b| step < b.result.makespan) {
            best = Some(run);
        }
    }
    if let Some(b) = best {
        return Ok((b, tried));
    }
    let (u, peak) = tried
        .iter()
        .min_by(|a, b| a.peak_memory.total_cmp(&b.peak_memory))
        .map_or((1, 0.0), |t| (t.group, t.peak_memory));
    Err(Error::change(
        format!(
            "no ZeroPP group size fits the memory budget of {:.2} GiB per device (the smallest peak is {:.2} GiB with groups of {u}); use more devices, a smaller microbatch or a larger budget",
            budget / GIB,
            peak / GIB
        ),
        Param::Budget,
    ))
}
