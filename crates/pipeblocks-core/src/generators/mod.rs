//! Schedule generators: each takes [`Params`] and returns a [`Schedule`]; the
//! [registry](crate::registry) names them, validates their output and says which parameters
//! each reads.
//!
//! - [`classic`]: GPipe, 1F1B, interleaved 1F1B, breadth-first, and the lagged-W ZB-H1/ZB-H2;
//! - [`chain`]: the microbatch-by-microbatch sequential scheduler that ZB-H1/ZB-H2 try under
//!   unequal costs (the zero-bubble paper's own construction);
//! - [`greedy`]: the cost- and memory-aware list scheduler;
//! - [`rounds`]: the round-based V-shape scheduler behind ZB-V;
//! - [`zeropp`]: ZeroPP's windowed list scheduler;
//! - [`dualpipe`]: DeepSeek's DualPipeV, phase by phase as its authors' `step()`;
//! - here: V-Min, V-Half and V-ZB from their building blocks ([`crate::block`]).
//!
//! The list schedulers are policies of the [event engine](crate::engine); the searches that
//! combine generators (`auto`, `zb-v`, the frontier) live in [`crate::search`].

pub mod chain;
pub mod classic;
pub mod dualpipe;
pub mod greedy;
pub mod rounds;
pub mod zeropp;

use crate::block;
use crate::error::Error;
use crate::ir::Schedule;
use crate::params::Params;
use crate::search::{from_block, zero_bubble};

/// V-Min from its block: about 1/3 of 1F1B's activation memory.
pub fn v_min(prm: &Params) -> Result<Schedule, Error> {
    from_block(&block::v_min(prm.devices())?, prm)
}

/// V-Half from its block: about 1/2 of 1F1B's activation memory.
pub fn v_half(prm: &Params) -> Result<Schedule, Error> {
    from_block(&block::v_half(prm.devices())?, prm)
}

/// V-ZB from its block: 1F1B's memory, nearly no bubble.
pub fn v_zb(prm: &Params) -> Result<Schedule, Error> {
    from_block(&block::v_zb(prm.devices())?, prm)
}

/// ZB-H1: B/W split, 1F1B's warm-up; device `i` lets its W lag `i` microbatches behind its B so
/// the lagging Ws fill the cool-down. `p` microbatches held on every device. Under unequal costs
/// the greedy list scheduler and the [chain scheduler](chain) holding as many are tried too,
/// and the fastest kept.
pub fn zb_h1(prm: &Params) -> Result<Schedule, Error> {
    let p = prm.devices();
    let direct = classic::zero_bubble_lagged("zb-h1", prm, |i| p - 1 - i, |i| i)?;
    zero_bubble(direct, prm, p as f64)
}

/// ZB-H2: B/W split, `2(p-1-i)` warm-up forwards on device `i` and W lagging `2i`; `2p - 1`
/// microbatches held. Under unequal costs the greedy list and chain schedulers are tried too,
/// and ZB-H1, which holds less, is kept when it is shorter (with few microbatches, `m` near
/// `p`, the longer warm-up has nothing to overlap and can cost more than it saves).
pub fn zb_h2(prm: &Params) -> Result<Schedule, Error> {
    let (p, m) = (prm.devices(), prm.microbatches());
    let direct = classic::zero_bubble_lagged("zb-h2", prm, |i| 2 * (p - 1 - i), |i| 2 * i)?;
    let h2 = zero_bubble(direct, prm, (2 * p - 1).min(m + p - 1) as f64)?;
    let mut h1 = zb_h1(prm)?;
    let (r2, r1) = (
        crate::engine::simulate(&h2, &prm.costs)?,
        crate::engine::simulate(&h1, &prm.costs)?,
    );
    if r1.makespan < r2.makespan - crate::params::EPS {
        h1.name = h2.name;
        return Ok(h1);
    }
    Ok(h2)
}
