//! Activation offload as a schedule choice: which microbatches' activations wait in host memory.
//!
//! An offloaded stage and microbatch runs two transfers on its device's host link, beside the
//! computation ([`PassKind::O`], [`PassKind::L`]): an O after its F moves what the F left to
//! host memory and frees it on the device as it ends; an L, listed before the pass that needs
//! the activation again (its R, or else its backward), brings it back and holds it from its
//! start. Each direction of the link runs one transfer at a time, in list order, for the
//! stage's [`StageTable::offload`](crate::params::StageTable::offload) time (the share the F
//! left when the microbatch is recomputed). The device's computation does not wait for a
//! transfer, only the pass that needs the loaded activation does; so an offload costs nothing
//! when the activation would wait on the device anyway for longer than the two transfers.
//!
//! [`fit`] offloads, round by round, what a schedule needs to fit a memory limit per device:
//! at each device's peak, the microbatches held there whose transfers fit best in the time they
//! wait. [`with_offload`] places the transfers: the O right after the F, the L as late as it
//! can be issued and still arrive before it is needed. [`best`] mixes offload with
//! recomputation over the named schedules and keeps the fastest: how `auto` and the frontier
//! reach budgets below what any schedule holds on the device.

use crate::engine::{heap_key, simulate_net, Net, SimResult};
use crate::error::Error;
use crate::ir::{Pass, PassKind, Schedule};
use crate::params::{Params, StageCosts, EPS};

/// Where each pass of a schedule sits: `(device, position)` by `(kind, stage, mb)`.
struct Positions {
    at: std::collections::HashMap<Pass, (usize, usize)>,
}

impl Positions {
    fn of(s: &Schedule) -> Self {
        let at = s
            .lists
            .iter()
            .enumerate()
            .flat_map(|(d, l)| l.iter().enumerate().map(move |(i, &q)| (q, (d, i))))
            .collect();
        Positions { at }
    }

    fn get(&self, q: Pass) -> Option<(usize, usize)> {
        self.at.get(&q).copied()
    }

    /// The pass that needs `{stage}.{mb}`'s activation back: its R, or its backward.
    fn consumer(&self, stage: u32, mb: u32) -> Option<(Pass, (usize, usize))> {
        [Pass::r(stage, mb), Pass::b(stage, mb), Pass::bw(stage, mb)]
            .into_iter()
            .find_map(|q| self.get(q).map(|at| (q, at)))
    }
}

/// `s` with the activations of `picks` (`(stage, mb)`, not yet offloaded) offloaded: an O right
/// after each F (after its pair, when the F is an overlapped pair's first half), and an L
/// placed from `r`, the simulation of `s` on `net`: before the last computation the device
/// starts in time for the transfer to end when the activation is needed (never between an
/// overlapped pair's halves, never before the O). Picks not in the schedule are skipped.
pub fn with_offload(s: &Schedule, net: &Net, r: &SimResult, picks: &[(u32, u32)]) -> Schedule {
    let pos = Positions::of(s);
    let starts = s.pair_starts();
    let pair_first = |d: usize, i: usize| starts.as_ref().is_some_and(|v| v[d][i]);
    let mut inserts: Vec<Vec<Insert>> = vec![Vec::new(); s.lists.len()];
    let mut seen = std::collections::HashSet::new();
    for &(stage, mb) in picks {
        if net.is_offloaded(stage, mb) || !seen.insert((stage, mb)) {
            continue;
        }
        let Some((d, i_f)) = pos.get(Pass::f(stage, mb)) else {
            continue;
        };
        let Some((_, (dc, i_c))) = pos.consumer(stage, mb) else {
            continue;
        };
        if dc != d || i_c <= i_f {
            continue;
        }
        let o_at = if pair_first(d, i_f) { i_f + 2 } else { i_f + 1 };
        let list = &s.lists[d];
        let t_c = r.start[d][i_c];
        let x = net.duration(Pass::l(stage, mb));
        let target = t_c - x;
        // The latest position j in (o_at, i_c] whose issue time (the end of the computation
        // before it) lets the transfer end by t_c.
        let issue = |j: usize| {
            (0..j)
                .rev()
                .find(|&k| !list[k].kind.is_transfer())
                .map_or(0.0, |k| r.end[d][k])
        };
        let mut j = i_c;
        while j > o_at && (issue(j) > target + EPS || pair_first(d, j - 1)) {
            j -= 1;
        }
        inserts[d].push((o_at, (0, 0), Pass::o(stage, mb)));
        inserts[d].push((j.max(o_at), (1, heap_key(t_c)), Pass::l(stage, mb)));
    }
    let mut out = s.clone();
    for (d, mut ins) in inserts.into_iter().enumerate() {
        if ins.is_empty() {
            continue;
        }
        ins.sort_by_key(|&(at, order, _)| (at, order));
        let old = &s.lists[d];
        let mut list = Vec::with_capacity(old.len() + ins.len());
        let mut k = 0;
        for (i, &q) in old.iter().enumerate() {
            while k < ins.len() && ins[k].0 == i {
                list.push(ins[k].2);
                k += 1;
            }
            list.push(q);
        }
        list.extend(ins[k..].iter().map(|x| x.2));
        out.lists[d] = list;
    }
    out
}

/// A pass to insert into a device's list: before which position, in which order among the
/// inserts there (O first, then L by the time they are needed), and the pass.
type Insert = (usize, (u8, u64), Pass);

/// Offloads activations of `s` until every device's peak is within `limits`: each round, on
/// every device above its limit, for each stretch of time above it, the microbatches held at
/// its highest point whose transfers end before that point and start again after it, the most
/// slack first (the time they wait beyond the two transfers), until they cover the excess.
/// The schedule and its simulation once it fits (`s` itself when it already does), `None` when
/// nothing held at a peak can leave in time.
pub fn fit(
    s: &Schedule,
    costs: &StageCosts,
    limits: &[f64],
) -> Result<Option<(Schedule, SimResult)>, Error> {
    crate::recompute::check_limits(s, limits)?;
    if costs
        .for_placement(&s.placement, s.devices)?
        .offload
        .is_empty()
    {
        // The costs do not know the host link: nothing can be offloaded.
        return Ok(None);
    }
    let mut current = s.clone();
    let rounds = (s.stages as usize * s.microbatches as usize).max(1);
    for _ in 0..=rounds {
        let net = Net::of(&current, costs)?;
        let r = simulate_net(&current, &net)?;
        let over = crate::recompute::over_limits(&r, limits);
        if over.is_empty() {
            return Ok(Some((current, r)));
        }
        let pos = Positions::of(&current);
        let mut picks = Vec::new();
        for d in over {
            // Every microbatch held on the device that could leave: the window its transfers
            // leave it away from the device, `(after its O, before its L)`.
            let mut cands: Vec<Candidate> = Vec::new();
            for (i, &q) in current.lists[d].iter().enumerate() {
                if q.kind != PassKind::F || net.is_offloaded(q.stage, q.mb) {
                    continue;
                }
                let Some((_, (dc, i_c))) = pos.consumer(q.stage, q.mb) else {
                    continue;
                };
                let x = net.duration(Pass::o(q.stage, q.mb));
                let (f_end, t_c) = (r.end[d][i], r.start[dc][i_c]);
                cands.push(Candidate {
                    slack: t_c - f_end - 2.0 * x,
                    left: net.activation_change(q),
                    away: (f_end + x, t_c - x),
                    pick: (q.stage, q.mb),
                });
            }
            cands.sort_by(|a, b| b.slack.total_cmp(&a.slack).then(b.left.total_cmp(&a.left)));
            // Each stretch above the limit, at its highest point: the most slack first among
            // those away then, until they cover its excess (with those already chosen).
            let mut taken = vec![false; cands.len()];
            for (t_star, level) in peaks_over(&r.memory[d], limits[d]) {
                let away = |c: &Candidate| c.away.0 <= t_star + EPS && c.away.1 > t_star + EPS;
                let mut freed: f64 = cands
                    .iter()
                    .zip(&taken)
                    .filter(|(c, &t)| t && away(c))
                    .map(|(c, _)| c.left)
                    .sum();
                let excess = level - limits[d];
                for (k, c) in cands.iter().enumerate() {
                    if freed >= excess - EPS {
                        break;
                    }
                    if !taken[k] && away(c) {
                        taken[k] = true;
                        freed += c.left;
                        picks.push(c.pick);
                    }
                }
            }
        }
        if picks.is_empty() {
            return Ok(None);
        }
        current = with_offload(&current, &net, &r, &picks);
    }
    Ok(None)
}

/// A microbatch [`fit`] may offload: the time it waits beyond its two transfers, what it
/// holds, when it would be away from the device, and which it is.
struct Candidate {
    slack: f64,
    left: f64,
    away: (f64, f64),
    pick: (u32, u32),
}

/// Each stretch of an activation curve above `limit`, by its highest point `(time, level)`
/// (the first, when it is reached more than once).
fn peaks_over(curve: &[(f64, f64)], limit: f64) -> Vec<(f64, f64)> {
    let mut out: Vec<(f64, f64)> = Vec::new();
    let mut inside = false;
    for &(t, level) in curve {
        if level > limit + EPS {
            match out.last_mut() {
                Some(top) if inside => {
                    if level > top.1 {
                        *top = (t, level);
                    }
                }
                _ => out.push((t, level)),
            }
            inside = true;
        } else {
            inside = false;
        }
    }
    out
}

/// How many stage and microbatch pairs of `s` offload (an O pass each).
pub fn offloaded(s: &Schedule) -> usize {
    s.lists
        .iter()
        .flatten()
        .filter(|q| q.kind == PassKind::O)
        .count()
}

/// The fastest of the [named bases](crate::recompute::BASES) made to fit `budget` units per
/// device by offloading ([`fit`]), by recomputing ([`crate::recompute::fit`]), or by both
/// (every stage recomputed, then the kept inputs offloaded where still needed), ranked by
/// `prm`'s objective with recomputation counted as lost time and transfers as the delays they
/// cause. Its label names the base and the mix. `None` when nothing fits.
pub fn best(prm: &Params, budget: f64) -> Result<Option<(String, Schedule, SimResult)>, Error> {
    let limits = vec![budget; prm.devices() as usize];
    let mut plain = prm.clone();
    plain.budget = None;
    let mut out: Option<(String, Schedule, SimResult)> = None;
    let mut consider = |name: &str, s: Schedule, r: SimResult| {
        if offloaded(&s) == 0 && crate::recompute::recomputed_stages(&s).is_empty() {
            // Holds everything on the device: not a saving.
            return;
        }
        let better = out
            .as_ref()
            .is_none_or(|(_, _, o)| prm.objective.bubble(&r) < prm.objective.bubble(o) - EPS);
        if better {
            out = Some((label(name, &s), s, r));
        }
    };
    // The named bases, and the looped schedule with four chunks per device: its stages hold a
    // quarter of a device's share each, the finest grain below the V shapes' halves.
    let looped = plain.clone().with_chunks(LOOPED_CHUNKS)?;
    let bases = crate::recompute::BASES
        .into_iter()
        .map(|name| (name, &plain))
        .chain([("interleaved-1f1b", &looped)]);
    for (name, prm_base) in bases {
        let Ok(base) = crate::registry::generate(name, prm_base) else {
            continue;
        };
        if let Some((s, r)) = fit(&base, &prm.costs, &limits)? {
            consider(name, s, r);
        }
        let recomputed = match crate::recompute::fit(&base, &prm.costs, &limits)? {
            Some((s, r)) => {
                consider(name, s.clone(), r);
                s
            }
            None => crate::recompute::with_recompute(&base, &vec![true; base.stages as usize]),
        };
        if let Some((s, r)) = fit(&recomputed, &prm.costs, &limits)? {
            consider(name, s, r);
        }
    }
    // Where the pick recomputes, its R passes may start earlier in idle time.
    if let Some((name, s, r)) = out.as_mut() {
        if !crate::recompute::recomputed_stages(s).is_empty() && s.num_passes() <= HOIST_PASSES {
            let (h, hr) = crate::recompute::hoist(s, &prm.costs, &limits, HOIST_ROUNDS)?;
            if hr.makespan < r.makespan - EPS {
                *name = format!("{name}, R hoisted");
                (*s, *r) = (h, hr);
            }
        }
    }
    Ok(out)
}

/// Rounds of [`crate::recompute::hoist`] on [`best`]'s pick.
const HOIST_ROUNDS: usize = 16;

/// The largest pick [`best`] hoists R passes in (each round simulates it up to a few times per
/// R on its critical path).
const HOIST_PASSES: usize = 20_000;

/// Chunks per device of the looped base [`best`] also tries.
pub const LOOPED_CHUNKS: u32 = 4;

/// `named {base}, recomputing k of S stages, offloading n of N activations`.
fn label(name: &str, s: &Schedule) -> String {
    let mut parts = vec![format!("named {name}")];
    let rec = crate::recompute::recomputed_stages(s).len();
    if rec > 0 {
        let selective = match s.selective.len() {
            0 => String::new(),
            k => format!(" ({k} selectively)"),
        };
        parts.push(format!(
            "recomputing {rec} of {} stages{selective}",
            s.stages
        ));
    }
    let off = offloaded(s);
    if off > 0 {
        let all: usize = s
            .lists
            .iter()
            .flatten()
            .filter(|q| q.kind == PassKind::F)
            .count();
        parts.push(format!("offloading {off} of {all} activations"));
    }
    parts.join(", ")
}
