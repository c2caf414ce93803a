//! ZeroPP: blockwise task-interleaved pipeline schedules for fully sharded data parallelism.
//!
//! Looped placement with `v` chunks per device (stage `s` on device `s mod p`), backward split into
//! B and W. The `m` microbatches are grouped into *scheduling units* of `U` consecutive
//! microbatches (the last unit takes the remainder when `U` does not divide `m`). For every stage
//! the passes of one unit form two *blocks*: the F block (the unit's forwards) and the B/W block
//! (its input and weight backwards). Under FSDP each block is one window of gathered parameters
//! ([`crate::fsdp`]): all-gather before the block, release after it, and a reduce-scatter after
//! the B/W block's last W — 3 collectives per stage and unit.
//!
//! The order is built by an event-driven list scheduler over the pass costs. A free device picks,
//! among the passes whose inputs have arrived:
//! 1. a B, lowest unit first, then the highest stage (the critical path runs backwards);
//! 2. a W whose block keeps a ready F or B of the same stage waiting (flushes the block);
//! 3. an F, lowest `(unit, stage, microbatch)` first: breadth-first over the device's chunks
//!    inside a unit;
//! 4. the oldest pending W, filling a gap;
//!
//! subject to the block rules, per stage:
//! - one block at a time (so a stage is never gathered twice at once): the F block of unit `u`
//!   runs to its end before the B/W block of `u` opens, and the F block of `u+1` opens either
//!   before the B/W block of `u` opens or after it closes — this is how consecutive units overlap;
//! - at most two units in flight: the F block of `u+1` waits until the B/W block of `u−1` closed;
//! - with a memory budget (`--memory`, in activation units), an F block of a unit later than the
//!   device's oldest unfinished unit opens only when all its forwards fit within the budget; the
//!   oldest unit and open blocks are never held back, so the budget cannot deadlock the schedule.
//!
//! The rules cannot deadlock: a block only waits for blocks of earlier units or for an open block
//! of the same unit upstream, which completes on its own. `U = m` gives breadth-first pipeline
//! parallelism with the backward split.

use std::collections::VecDeque;

use crate::error::Error;
use crate::ir::{Pass, PassKind, Placement, Schedule};

use super::Params;

/// Options of the ZeroPP generator beyond [`Params`].
#[derive(Clone, Debug, PartialEq)]
pub struct ZeroppOptions {
    /// Microbatches per scheduling unit, `U ≥ 1`.
    pub unit: u32,
    /// Absolute durations per stage `[F, B, W, BW]` (length `S`); `None`: `Params::costs` for
    /// every stage, as in the simulator.
    pub durations: Option<Vec<[f64; 4]>>,
    /// Activation budget per device in units (one microbatch on one 1F1B stage); `None`:
    /// `Params::memory`, else unlimited.
    pub limit: Option<f64>,
}

/// The default unit: the smallest divisor of `m` that is at least `p` (a unit that fills the
/// pipeline), or `m` when there is none.
pub fn default_unit(p: u32, m: u32) -> u32 {
    (p.max(1)..=m)
        .find(|u| m.is_multiple_of(*u))
        .unwrap_or(m)
        .max(1)
}

/// Registry entry: ZeroPP with the default unit ([`default_unit`]) and `--chunks` (default 2).
pub fn zeropp(prm: &Params) -> Result<Schedule, Error> {
    build(
        prm,
        &ZeroppOptions {
            unit: default_unit(prm.devices, prm.microbatches),
            durations: None,
            limit: None,
        },
    )
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Block {
    Free,
    /// F block of a unit, with its forwards still to run.
    F(u32, u32),
    /// B/W block of a unit, with its weight backwards still to run.
    Bw(u32, u32),
}

const EPS: f64 = 1e-12;
const UNKNOWN: f64 = f64::INFINITY;

/// Builds a ZeroPP schedule with an explicit unit.
pub fn build(prm: &Params, o: &ZeroppOptions) -> Result<Schedule, Error> {
    prm.check()?;
    let (p, m) = (prm.devices, prm.microbatches);
    let v = prm.chunks.unwrap_or(2);
    if v == 0 {
        return Err(Error::config(
            "--chunks 0: zeropp needs at least 1 chunk per device",
        ));
    }
    if o.unit == 0 {
        return Err(Error::config(
            "--unit 0: a scheduling unit needs at least 1 microbatch",
        ));
    }
    if o.unit > m {
        return Err(Error::config(format!(
            "--unit {} is larger than the number of microbatches ({m}); use --unit {m} or less",
            o.unit
        )));
    }
    let mut s = Schedule::empty("zeropp", p, m, Placement::Looped { chunks: v })?;
    let n_st = s.stages as usize;
    let dur: Vec<[f64; 4]> = match &o.durations {
        Some(d) if d.len() == n_st => d.clone(),
        Some(d) => {
            return Err(Error::config(format!(
                "zeropp: durations list {} stages, the schedule has {n_st}",
                d.len()
            )))
        }
        None => {
            let c = prm.costs;
            vec![PassKind::ALL.map(|k| c.of(k)); n_st]
        }
    };
    let comm = prm.costs.comm;
    let unit = o.unit;
    let limit = o
        .limit
        .or_else(|| prm.memory.map(|b| b.units(p, m)))
        .unwrap_or(f64::INFINITY);
    let act = p as f64 / n_st as f64;
    let mut level = vec![0.0f64; p as usize];
    // Oldest unit whose weight backwards are not all done, per device.
    let mut w_done = vec![0u32; p as usize];
    let units_total = m.div_ceil(unit);
    let per_unit_dev = |u: u32| unit.min(m - u * unit) * v;
    let mu = m as usize;
    let unit_of = |mb: u32| mb / unit;
    let unit_size = |u: u32| unit.min(m - u * unit);
    let local: Vec<Vec<u32>> = (0..p).map(|d| s.stages_of(d)).collect();
    let dev = |st: usize| (st as u32) % p;
    let mut end_f = vec![UNKNOWN; n_st * mu];
    let mut end_b = vec![UNKNOWN; n_st * mu];
    let at = |st: usize, mb: u32| st * mu + mb as usize;
    let mut next_f = vec![0u32; n_st];
    let mut next_b = vec![0u32; n_st];
    let mut block = vec![Block::Free; n_st];
    // B/W blocks closed so far, per stage (they close in unit order).
    let mut bw_closed = vec![0u32; n_st];
    let mut pending_w: Vec<VecDeque<(u32, u32)>> = vec![VecDeque::new(); p as usize];
    let mut w_count = vec![vec![0u32; units_total as usize]; p as usize];
    let mut t = vec![0.0f64; p as usize];
    let mut blocked = vec![false; p as usize];
    let total = 3 * v as usize * mu;
    let arrival = |end: f64, from: usize, to: usize| {
        if dev(from) as usize == to {
            end
        } else {
            end + comm
        }
    };
    while let Some(d) = (0..p as usize)
        .filter(|&d| s.lists[d].len() < total && !blocked[d])
        .min_by(|&a, &b| t[a].total_cmp(&t[b]).then(a.cmp(&b)))
    {
        let now = t[d];
        let mut wake = UNKNOWN;
        let mut consider = |ready: f64| {
            if ready > now + EPS && ready < wake {
                wake = ready;
            }
        };
        // Readiness of the next F and B of every local stage: (pass, inputs arrived, block allows).
        let mut f_ready: Vec<(u32, u32, u32)> = Vec::new();
        let mut b_ready: Vec<(u32, u32, u32)> = Vec::new();
        let mut waiting_on_block = vec![false; n_st];
        for &st in &local[d] {
            let su = st as usize;
            let mb = next_f[su];
            if mb < m {
                let u = unit_of(mb);
                let ready = if su == 0 {
                    0.0
                } else {
                    arrival(end_f[at(su - 1, mb)], su - 1, d)
                };
                // An open F block always completes; a new one of a later unit than the
                // device's oldest needs room for all its forwards.
                let oldest = w_done_unit(&w_done, d, units_total);
                let allowed = match block[su] {
                    Block::F(bu, _) => bu == u,
                    Block::Free => {
                        u <= bw_closed[su] + 1
                            && (u <= oldest || level[d] + unit_size(u) as f64 * act <= limit + 1e-9)
                    }
                    Block::Bw(..) => false,
                };
                consider(ready);
                if ready <= now + EPS {
                    if allowed {
                        f_ready.push((u, st, mb));
                    } else {
                        waiting_on_block[su] = true;
                    }
                }
            }
            let mb = next_b[su];
            if mb < m && mb < next_f[su] {
                let u = unit_of(mb);
                let ready = if su + 1 == n_st {
                    end_f[at(su, mb)]
                } else {
                    arrival(end_b[at(su + 1, mb)], su + 1, d)
                };
                let allowed = match block[su] {
                    Block::Bw(bu, _) => bu == u,
                    Block::Free => true,
                    Block::F(..) => false,
                };
                consider(ready);
                if ready <= now + EPS {
                    if allowed {
                        b_ready.push((u, st, mb));
                    } else {
                        waiting_on_block[su] = true;
                    }
                }
            }
        }
        let pick_w = |flush_only: bool, pw: &VecDeque<(u32, u32)>| -> Option<usize> {
            pw.iter()
                .position(|&(st, _)| !flush_only || waiting_on_block[st as usize])
        };
        // 1. B: lowest unit, then highest stage.
        let mut choice: Option<Pass> = b_ready
            .iter()
            .min_by_key(|&&(u, st, _)| (u, std::cmp::Reverse(st)))
            .map(|&(_, st, mb)| Pass::b(st, mb));
        // 2. A W that keeps a ready pass of its stage waiting.
        if choice.is_none() {
            if let Some(i) = pick_w(true, &pending_w[d]) {
                let (st, mb) = pending_w[d].remove(i).unwrap_or_default();
                choice = Some(Pass::w(st, mb));
            }
        }
        // 3. F: breadth-first over the chunks inside the lowest unit.
        if choice.is_none() {
            choice = f_ready.iter().min().map(|&(_, st, mb)| Pass::f(st, mb));
        }
        // 4. The oldest pending W.
        if choice.is_none() {
            if let Some((st, mb)) = pending_w[d].pop_front() {
                choice = Some(Pass::w(st, mb));
            }
        }
        let Some(pass) = choice else {
            let mut tie = false;
            for (e, &te) in t.iter().enumerate() {
                if e != d && s.lists[e].len() < total {
                    consider(te);
                    tie |= !blocked[e] && te <= now + EPS;
                }
            }
            if tie {
                blocked[d] = true;
                continue;
            }
            if wake == UNKNOWN {
                return Err(Error::config(format!(
                    "zeropp could not make progress on device {d} (p={p}, m={m}, v={v}, U={unit}); this is a bug, please report it"
                )));
            }
            t[d] = wake;
            // A device that waited for this one's clock may act now.
            blocked.iter_mut().for_each(|b| *b = false);
            continue;
        };
        let su = pass.stage as usize;
        let end = now + dur[su][pass.kind.index()];
        let u = unit_of(pass.mb);
        match pass.kind {
            PassKind::F => {
                level[d] += act;
                end_f[at(su, pass.mb)] = end;
                next_f[su] += 1;
                let left = match block[su] {
                    Block::F(_, left) => left,
                    _ => unit_size(u),
                } - 1;
                block[su] = if left == 0 {
                    Block::Free
                } else {
                    Block::F(u, left)
                };
            }
            PassKind::B => {
                end_b[at(su, pass.mb)] = end;
                next_b[su] += 1;
                if block[su] == Block::Free {
                    block[su] = Block::Bw(u, unit_size(u));
                }
                pending_w[d].push_back((pass.stage, pass.mb));
            }
            PassKind::W => {
                level[d] -= act;
                w_count[d][u as usize] += 1;
                while w_done[d] < units_total
                    && w_count[d][w_done[d] as usize] == per_unit_dev(w_done[d])
                {
                    w_done[d] += 1;
                }
                if let Block::Bw(bu, left) = block[su] {
                    block[su] = if left <= 1 {
                        bw_closed[su] += 1;
                        Block::Free
                    } else {
                        Block::Bw(bu, left - 1)
                    };
                }
            }
            PassKind::BW => {}
        }
        s.lists[d].push(pass);
        t[d] = end;
        blocked.iter_mut().for_each(|b| *b = false);
    }
    Ok(s)
}

/// The oldest unit of device `d` with weight backwards still to run.
fn w_done_unit(w_done: &[u32], d: usize, units_total: u32) -> u32 {
    w_done[d].min(units_total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::validate;

    #[test]
    fn default_unit_fills_the_pipeline() {
        assert_eq!(default_unit(4, 8), 4);
        assert_eq!(default_unit(3, 8), 4);
        assert_eq!(default_unit(4, 6), 6);
        assert_eq!(default_unit(8, 4), 4);
        assert_eq!(default_unit(1, 5), 1);
    }

    #[test]
    fn blocks_are_contiguous_in_unit_order() {
        let prm = Params::new(4, 8);
        let s = build(
            &prm,
            &ZeroppOptions {
                unit: 2,
                durations: None,
                limit: None,
            },
        )
        .unwrap();
        validate(&s).unwrap();
        // Per stage, the sequence of (unit, phase) blocks never revisits a block.
        for (d, list) in s.lists.iter().enumerate() {
            for st in s.stages_of(d as u32) {
                let mut seen: Vec<(u32, bool)> = Vec::new();
                for x in list.iter().filter(|x| x.stage == st) {
                    let key = (x.mb / 2, x.kind == PassKind::F);
                    if seen.last() != Some(&key) {
                        assert!(!seen.contains(&key), "block {key:?} of stage {st} split");
                        seen.push(key);
                    }
                }
                assert_eq!(seen.len(), 8, "4 units × 2 phases on stage {st}");
            }
        }
    }

    #[test]
    fn bad_units_are_refused() {
        let prm = Params::new(2, 4);
        for unit in [0, 5] {
            let e = build(
                &prm,
                &ZeroppOptions {
                    unit,
                    durations: None,
                    limit: None,
                },
            );
            assert!(matches!(e, Err(Error::Config(_))));
        }
    }
}
