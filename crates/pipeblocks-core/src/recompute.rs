//! Activation recomputation as a schedule choice: which stages rerun their forward.
//!
//! A stage that recomputes a microbatch keeps only its input after its F (the
//! [`StageTable::keep`](crate::params::StageTable::keep) part of its activation) and runs a
//! recompute pass R, its forward again, before its backward ([`PassKind::R`]). That buys memory
//! with time: the R costs about a forward. Listed right before the backward, an R runs as soon as
//! its device is free, so where the device would wait for the backward's gradient it fills that
//! bubble and costs nothing.
//!
//! [`fit`] recomputes, stage by stage, what a schedule needs to fit a memory limit per device;
//! [`crate::offload::best`] does it for the named schedules, alone and mixed with offload, and
//! keeps the fastest, which is how `auto` and the frontier reach budgets below what any
//! schedule holds on its devices.

use crate::engine::{simulate_net, Net, SimResult};
use crate::error::Error;
use crate::ir::{Pass, PassKind, Schedule};
use crate::params::{StageCosts, EPS};

/// The schedules [`crate::offload::best`] starts from: the sequential and V-shape ones whose
/// memory is fixed.
pub const BASES: [&str; 6] = ["1f1b", "zb-h1", "zb-v", "v-zb", "v-half", "v-min"];

/// How a stage recomputes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Recompute {
    /// It keeps its activations.
    None,
    /// Its microbatches keep all but the attention's inner activations, and its R recomputes
    /// those ([`Schedule::selective`]); needs the costs' selective figures.
    Selective,
    /// Its microbatches keep only their input, and its R reruns the whole forward.
    Full,
}

/// `s` with every microbatch of the stages marked in `stages` recomputed: an R right before
/// each of their backwards (B or BW; before the pair when the backward is an overlapped pair's
/// second half, so the pair stays together). Stages that already recompute are left as they
/// are.
pub fn with_recompute(s: &Schedule, stages: &[bool]) -> Schedule {
    let kinds: Vec<Recompute> = stages
        .iter()
        .map(|&x| if x { Recompute::Full } else { Recompute::None })
        .collect();
    with_kinds(s, &kinds)
}

/// `s` with each stage recomputing as `kinds` says (stages past its end keep theirs): R passes
/// as [`with_recompute`] places them, and the selective stages listed in
/// [`Schedule::selective`]. A stage that already recomputes keeps its R passes, and becomes
/// selective or full as `kinds` says.
pub fn with_kinds(s: &Schedule, kinds: &[Recompute]) -> Schedule {
    let stages: Vec<bool> = kinds.iter().map(|&k| k != Recompute::None).collect();
    let mut out = s.clone();
    let mut selective: std::collections::BTreeSet<u32> = s.selective.iter().copied().collect();
    for (st, &k) in kinds.iter().enumerate() {
        match k {
            Recompute::Selective => {
                selective.insert(st as u32);
            }
            Recompute::Full => {
                selective.remove(&(st as u32));
            }
            Recompute::None => {}
        }
    }
    out.selective = selective.into_iter().collect();
    for list in &mut out.lists {
        let has_r: std::collections::HashSet<(u32, u32)> = list
            .iter()
            .filter(|q| q.kind == PassKind::R)
            .map(|q| (q.stage, q.mb))
            .collect();
        let mut new: Vec<Pass> = Vec::with_capacity(list.len() * 2);
        for &q in list.iter() {
            if q.kind.is_input_backward()
                && stages.get(q.stage as usize).copied().unwrap_or(false)
                && !has_r.contains(&(q.stage, q.mb))
            {
                let r = Pass::r(q.stage, q.mb);
                match new.last() {
                    Some(&f) if s.pairs.contains(&[f, q]) => new.insert(new.len() - 1, r),
                    _ => new.push(r),
                }
            }
            new.push(q);
        }
        *list = new;
    }
    out
}

/// Recomputes stages of `s` until every device's peak is within `limits`, the cheapest first:
/// each round, on every device above its limit, the stage that holds the most activation among
/// those not yet fully recomputed moves one step, to selective recomputation where the costs
/// know it, else (or next) to full. The schedule and its simulation once it fits (`s` itself
/// when it already does), `None` when recomputing every stage of the devices above their
/// limits in full is not enough.
pub fn fit(
    s: &Schedule,
    costs: &StageCosts,
    limits: &[f64],
) -> Result<Option<(Schedule, SimResult)>, Error> {
    check_limits(s, limits)?;
    let table = costs.for_placement(&s.placement, s.devices)?;
    let has_selective = !table.selective.is_empty();
    let mut chosen = vec![Recompute::None; s.stages as usize];
    let mut current = s.clone();
    loop {
        let net = Net::of(&current, costs)?;
        let r = simulate_net(&current, &net)?;
        let over = over_limits(&r, limits);
        if over.is_empty() {
            return Ok(Some((current, r)));
        }
        let mut added = false;
        for d in over {
            // What each stage still holds of a microbatch's activation: the heaviest moves.
            let held = |st: u32| {
                let st = st as usize;
                match chosen[st] {
                    Recompute::None => table.act[st],
                    Recompute::Selective => table.act[st] * table.selective[st][1],
                    Recompute::Full => 0.0,
                }
            };
            let heaviest = s
                .stages_of(d as u32)
                .into_iter()
                .filter(|&st| chosen[st as usize] != Recompute::Full)
                .max_by(|&a, &b| held(a).total_cmp(&held(b)));
            if let Some(st) = heaviest {
                let k = &mut chosen[st as usize];
                *k = match *k {
                    Recompute::None if has_selective => Recompute::Selective,
                    _ => Recompute::Full,
                };
                added = true;
            }
        }
        if !added {
            return Ok(None);
        }
        current = with_kinds(s, &chosen);
    }
}

/// Refuses memory limits that do not list one limit per device of `s`.
pub(crate) fn check_limits(s: &Schedule, limits: &[f64]) -> Result<(), Error> {
    if limits.len() == s.devices as usize {
        Ok(())
    } else {
        Err(Error::config(format!(
            "the memory limits list {} devices, the schedule has {}",
            limits.len(),
            s.devices
        )))
    }
}

/// The devices whose simulated peak in `r` is above their limit.
pub(crate) fn over_limits(r: &SimResult, limits: &[f64]) -> Vec<usize> {
    (0..limits.len())
        .filter(|&d| r.peak_activation[d] > limits[d] + EPS)
        .collect()
}

/// The stages of `s` that recompute some microbatch, ascending.
pub fn recomputed_stages(s: &Schedule) -> Vec<u32> {
    let stages: std::collections::BTreeSet<u32> = s
        .lists
        .iter()
        .flatten()
        .filter(|q| q.kind == PassKind::R)
        .map(|q| q.stage)
        .collect();
    stages.into_iter().collect()
}

/// How far [`hoist`] moves an R at most, in list positions.
pub const HOIST_REACH: usize = 6;

/// Moves R passes earlier into idle time where that shortens the step: round by round, each R
/// on the critical path of `s`'s simulation is tried one to [`HOIST_REACH`] positions earlier in
/// its device's list (never before its F or its load back, never between an overlapped pair's
/// halves), and the first move that ends the step sooner while every device stays within
/// `limits` is kept (an R moved earlier holds its rebuilt activation longer). At most `rounds`
/// rounds; the result and its simulation (`s`'s own when nothing helps).
pub fn hoist(
    s: &Schedule,
    costs: &StageCosts,
    limits: &[f64],
    rounds: usize,
) -> Result<(Schedule, SimResult), Error> {
    check_limits(s, limits)?;
    let mut current = s.clone();
    // Moving an R within its list changes what runs when, not what is recomputed or offloaded:
    // one problem serves every candidate.
    let net = Net::of(&current, costs)?;
    let mut r = simulate_net(&current, &net)?;
    for _ in 0..rounds {
        let path = crate::engine::critical_path(&current, &net, &r);
        let starts = current.pair_starts();
        let mut moved = false;
        'path: for (d, i) in path {
            let q = current.lists[d][i];
            if q.kind != PassKind::R {
                continue;
            }
            let list = &current.lists[d];
            let pair_first = |j: usize| starts.as_ref().is_some_and(|v| v[d][j]);
            // Its inputs sit before it on this device: it may not pass them.
            let floor = list[..i]
                .iter()
                .rposition(|x| {
                    x.stage == q.stage
                        && x.mb == q.mb
                        && matches!(x.kind, PassKind::F | PassKind::L)
                })
                .map_or(0, |k| k + 1);
            for k in 1..=HOIST_REACH.min(i.saturating_sub(floor)) {
                let j = i - k;
                if j > 0 && pair_first(j - 1) {
                    continue;
                }
                let mut cand = current.clone();
                let x = cand.lists[d].remove(i);
                cand.lists[d].insert(j, x);
                let Ok(cr) = simulate_net(&cand, &net) else {
                    continue;
                };
                if cr.makespan < r.makespan - EPS && over_limits(&cr, limits).is_empty() {
                    (current, r) = (cand, cr);
                    moved = true;
                    break 'path;
                }
            }
        }
        if !moved {
            break;
        }
    }
    Ok((current, r))
}
