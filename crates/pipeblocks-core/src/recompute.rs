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

/// `s` with every microbatch of the stages marked in `stages` recomputed: an R right before
/// each of their backwards (B or BW; before the pair when the backward is an overlapped pair's
/// second half, so the pair stays together). Stages that already recompute are left as they
/// are.
pub fn with_recompute(s: &Schedule, stages: &[bool]) -> Schedule {
    let mut out = s.clone();
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

/// Recomputes stages of `s` until every device's peak is within `limits`: each round, on every
/// device above its limit, the stage not yet recomputed that holds the most activation. The
/// schedule and its simulation once it fits (`s` itself when it already does), `None` when
/// recomputing every stage of the devices above their limits is not enough.
pub fn fit(
    s: &Schedule,
    costs: &StageCosts,
    limits: &[f64],
) -> Result<Option<(Schedule, SimResult)>, Error> {
    if limits.len() != s.devices as usize {
        return Err(Error::config(format!(
            "recompute: the memory limits must list {} devices",
            s.devices
        )));
    }
    let table = costs.for_placement(&s.placement, s.devices)?;
    let mut chosen = vec![false; s.stages as usize];
    let mut current = s.clone();
    loop {
        let net = Net::of(&current, costs)?;
        let r = simulate_net(&current, &net)?;
        let over: Vec<usize> = (0..limits.len())
            .filter(|&d| r.peak_activation[d] > limits[d] + EPS)
            .collect();
        if over.is_empty() {
            return Ok(Some((current, r)));
        }
        let mut added = false;
        for d in over {
            let heaviest = s
                .stages_of(d as u32)
                .into_iter()
                .filter(|&st| !chosen[st as usize])
                .max_by(|&a, &b| table.act[a as usize].total_cmp(&table.act[b as usize]));
            if let Some(st) = heaviest {
                chosen[st as usize] = true;
                added = true;
            }
        }
        if !added {
            return Ok(None);
        }
        current = with_recompute(s, &chosen);
    }
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
