//! ZeroPP: blockwise task-interleaved pipeline schedules for fully sharded data parallelism.
//!
//! Looped placement with `v` chunks per device (stage `s` on device `s mod p`), backward split into
//! B and W. The `m` microbatches are grouped into *groups* of `U` consecutive microbatches (the
//! paper's scheduling units; the last group takes the remainder when `U` does not divide `m`).
//! For every stage the passes of one group form two *windows*: the F window (the group's
//! forwards) and the B/W window (its input and weight backwards). Under FSDP each window is one
//! span of gathered parameters ([`crate::fsdp`]): all-gather before it, release after it, and a
//! reduce-scatter after the B/W window's last W — 3 collectives per stage and group.
//!
//! The order is built by a policy of the [event engine](crate::engine) over the pass costs. A
//! free device picks, among the passes whose inputs have arrived:
//! 1. a B, lowest group first, then the highest stage (the critical path runs backwards);
//! 2. a W whose window keeps a ready F or B of the same stage waiting (flushes the window);
//! 3. an F, lowest `(group, stage, microbatch)` first: breadth-first over the device's chunks
//!    inside a group;
//! 4. the oldest pending W, filling a gap;
//!
//! subject to the window rules, per stage:
//! - one window at a time (so a stage is never gathered twice at once): the F window of group
//!   `u` runs to its end before the B/W window of `u` opens, and the F window of `u+1` opens
//!   either before the B/W window of `u` opens or after it closes — this is how consecutive
//!   groups overlap;
//! - at most two groups in flight: the F window of `u+1` waits until the B/W window of `u−1`
//!   closed;
//! - with a memory budget, an F window of a group later than the device's oldest unfinished
//!   group opens only when all its forwards fit within the budget; the oldest group and open
//!   windows are never held back, so the budget cannot deadlock the schedule.
//!
//! The rules cannot deadlock: a window only waits for windows of earlier groups or for an open
//! window of the same group upstream, which completes on its own. `U = m` gives breadth-first
//! pipeline parallelism with the backward split.

use std::collections::VecDeque;

use crate::engine::{simulate, Alarm, Engine, Flow, Net, Policy, State, Step};
use crate::error::{Error, Param};
use crate::ir::{Pass, PassKind, Placement, Schedule};
use crate::params::{Params, EPS};

/// The default group: the smallest divisor of `m` that is at least `p` (a group that fills the
/// pipeline), or `m` when there is none.
pub fn default_group(p: u32, m: u32) -> u32 {
    (p.max(1)..=m)
        .find(|u| m.is_multiple_of(*u))
        .unwrap_or(m)
        .max(1)
}

/// The group `prm` asks for, or the default.
pub fn group_of(prm: &Params) -> u32 {
    prm.group.map_or_else(
        || default_group(prm.devices(), prm.microbatches()),
        |u| u.get(),
    )
}

/// A stage's gather window.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Window {
    Closed,
    /// F window of a group, with its forwards still to run.
    F(u32, u32),
    /// B/W window of a group, with its weight backwards still to run.
    Bw(u32, u32),
}

struct Zeropp {
    m: u32,
    unit: u32,
    groups: u32,
    limit: f64,
    next_f: Vec<u32>,
    next_b: Vec<u32>,
    window: Vec<Window>,
    /// B/W windows closed so far, per stage (they close in group order).
    bw_closed: Vec<u32>,
    pending_w: Vec<VecDeque<(u32, u32)>>,
    /// Weight backwards run per device and group, and each device's oldest group with some
    /// still to run.
    w_count: Vec<Vec<u32>>,
    w_done: Vec<u32>,
    chunks: u32,
    left: Vec<usize>,
}

impl Zeropp {
    fn group_size(&self, u: u32) -> u32 {
        self.unit.min(self.m - u * self.unit)
    }

    fn choose(&mut self, d: usize, st: &State, alarm: &mut Alarm) -> Option<Pass> {
        let net = st.net;
        // Readiness of the next F and B of every local stage: (group, stage, mb).
        let mut f_ready: Vec<(u32, u32, u32)> = Vec::new();
        let mut b_ready: Vec<(u32, u32, u32)> = Vec::new();
        let mut waiting_on_window = vec![false; net.stages as usize];
        for &s in &net.local[d] {
            let su = s as usize;
            let mb = self.next_f[su];
            if mb < self.m {
                let u = mb / self.unit;
                // An open F window always completes; a new one of a later group than the
                // device's oldest needs room for all its forwards.
                let allowed = match self.window[su] {
                    Window::F(wu, _) => wu == u,
                    Window::Closed => {
                        u <= self.bw_closed[su] + 1
                            && (u <= self.w_done[d].min(self.groups)
                                || st.level[d] + self.group_size(u) as f64 * net.table.act[su]
                                    <= self.limit + EPS)
                    }
                    Window::Bw(..) => false,
                };
                if alarm.arrived(st, Pass::f(s, mb)) {
                    if allowed {
                        f_ready.push((u, s, mb));
                    } else {
                        waiting_on_window[su] = true;
                    }
                }
            }
            let mb = self.next_b[su];
            if mb < self.m && mb < self.next_f[su] {
                let u = mb / self.unit;
                let allowed = match self.window[su] {
                    Window::Bw(wu, _) => wu == u,
                    Window::Closed => true,
                    Window::F(..) => false,
                };
                if alarm.arrived(st, Pass::b(s, mb)) {
                    if allowed {
                        b_ready.push((u, s, mb));
                    } else {
                        waiting_on_window[su] = true;
                    }
                }
            }
        }
        // 1. B: lowest group, then highest stage.
        if let Some(&(_, s, mb)) = b_ready
            .iter()
            .min_by_key(|&&(u, s, _)| (u, std::cmp::Reverse(s)))
        {
            return Some(Pass::b(s, mb));
        }
        // 2. A W that keeps a ready pass of its stage waiting.
        let pw = &mut self.pending_w[d];
        if let Some(i) = pw.iter().position(|&(s, _)| waiting_on_window[s as usize]) {
            return pw.remove(i).map(|(s, mb)| Pass::w(s, mb));
        }
        // 3. F: breadth-first over the chunks inside the lowest group.
        if let Some(&(_, s, mb)) = f_ready.iter().min() {
            return Some(Pass::f(s, mb));
        }
        // 4. The oldest pending W.
        pw.pop_front().map(|(s, mb)| Pass::w(s, mb))
    }
}

impl Policy for Zeropp {
    const TIMED: bool = true;

    fn next(&mut self, d: usize, now: f64, st: &State) -> Step {
        if self.left[d] == 0 {
            return Step::Done;
        }
        let mut alarm = Alarm::new(now);
        let choice = self.choose(d, st, &mut alarm);
        alarm.step(choice)
    }

    fn ran(&mut self, d: usize, pass: Pass, _: &State) -> Flow {
        let su = pass.stage as usize;
        let u = pass.mb / self.unit;
        self.left[d] -= 1;
        match pass.kind {
            PassKind::F => {
                self.next_f[su] += 1;
                let left = match self.window[su] {
                    Window::F(_, left) => left,
                    _ => self.group_size(u),
                } - 1;
                self.window[su] = if left == 0 {
                    Window::Closed
                } else {
                    Window::F(u, left)
                };
            }
            PassKind::B => {
                self.next_b[su] += 1;
                if self.window[su] == Window::Closed {
                    self.window[su] = Window::Bw(u, self.group_size(u));
                }
                self.pending_w[d].push_back((pass.stage, pass.mb));
            }
            // ZeroPP lists no recompute or transfer passes.
            PassKind::R | PassKind::O | PassKind::L => {}
            PassKind::W => {
                self.w_count[d][u as usize] += 1;
                while self.w_done[d] < self.groups
                    && self.w_count[d][self.w_done[d] as usize]
                        == self.group_size(self.w_done[d]) * self.chunks
                {
                    self.w_done[d] += 1;
                }
                if let Window::Bw(wu, left) = self.window[su] {
                    self.window[su] = if left <= 1 {
                        self.bw_closed[su] += 1;
                        Window::Closed
                    } else {
                        Window::Bw(wu, left - 1)
                    };
                }
            }
            PassKind::BW => {}
        }
        Flow::Go
    }
}

/// ZeroPP with `prm`'s group ([`group_of`]), chunks (default 2), costs and budget. Its window
/// rules are heuristics, and under per-stage costs an order built knowing less
/// ([`crate::params::StageCosts::partly_blind`]: the activations evened, the latencies left
/// out) can run better: each is built too, and the shortest under the true costs kept, within
/// the budget (without one, within the as-is order's peak).
pub fn zeropp(prm: &Params) -> Result<Schedule, Error> {
    let mut s = zeropp_under(prm)?;
    let mut r = simulate(&s, &prm.costs)?;
    let limit = match prm.budget {
        Some(b) => b.units_for(prm)?.max(r.max_peak()),
        None => r.max_peak(),
    };
    for blind in prm.costs.partly_blind() {
        let Ok(other) = zeropp_under(&prm.clone().with_costs(blind)) else {
            continue;
        };
        let ro = simulate(&other, &prm.costs)?;
        if ro.max_peak() <= limit + EPS && ro.makespan < r.makespan - EPS {
            (s, r) = (other, ro);
        }
    }
    // The budget holds back later groups only: the oldest group's forwards always run, so a
    // budget below what one group keeps alive cannot be met. Say so instead of exceeding it.
    if let Some(b) = prm.budget {
        let want = b.units_for(prm)?;
        let peak = r.max_peak();
        if peak > want + EPS {
            let u = group_of(prm);
            return Err(Error::fix(
                format!(
                    "ZeroPP with groups of {u} microbatches keeps at least {peak:.3} units per device alive (a group's forwards all run before its backwards), above the memory budget of {want:.3} units; use a smaller group or a budget of at least {peak:.3} units"
                ),
                Param::Budget,
                format!("{peak:.3}"),
            ));
        }
    }
    Ok(s)
}

/// [`zeropp`] under `prm`'s costs as they are.
fn zeropp_under(prm: &Params) -> Result<Schedule, Error> {
    let (p, m) = (prm.devices(), prm.microbatches());
    let v = prm.chunks_or(2);
    let unit = group_of(prm);
    if unit > m {
        return Err(Error::fix(
            format!("a ZeroPP group of {unit} microbatches is larger than the {m} microbatches of the step; use {m} or fewer"),
            Param::Group,
            m.to_string(),
        ));
    }
    let placement = Placement::Looped { chunks: v };
    let mut s = Schedule::empty("zeropp", p, m, placement.clone())?;
    let net = Net::new(&placement, p, m, prm.table(&placement)?)?;
    let limit = match prm.budget {
        Some(b) => b.units_for(prm)?,
        None => f64::INFINITY,
    };
    let groups = m.div_ceil(unit);
    let n_st = s.stages as usize;
    let mut policy = Zeropp {
        m,
        unit,
        groups,
        limit,
        next_f: vec![0; n_st],
        next_b: vec![0; n_st],
        window: vec![Window::Closed; n_st],
        bw_closed: vec![0; n_st],
        pending_w: vec![VecDeque::new(); p as usize],
        w_count: vec![vec![0; groups as usize]; p as usize],
        w_done: vec![0; p as usize],
        chunks: v,
        left: vec![3 * v as usize * m as usize; p as usize],
    };
    let mut e = Engine::new(&net).recording_lists().without_memory_curves();
    e.reserve(&policy.left);
    e.drive(&mut policy).map_err(|_| {
        Error::config(format!(
            "zeropp could not place every pass (p={p}, m={m}, v={v}, group {unit}): its window rules left every device waiting"
        ))
    })?;
    s.lists = e.into_lists();
    Ok(s)
}
