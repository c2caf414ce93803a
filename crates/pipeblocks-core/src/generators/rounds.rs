//! A round-based scheduler for the V-shape placement: the construction behind ZB-V in the
//! zero-bubble paper, under real costs and a memory budget.
//!
//! On a V-shape each device holds two stages, so its passes belong to two *flows*: the
//! **down** flow (the forward of chunk 0 and the input backward of chunk 1) arrives from the
//! device before it, and the **up** flow (the forward of chunk 1 and the input backward of
//! chunk 0) from the device after it. The scheduler places passes in device lists on the
//! [event engine](crate::engine), which times them as it goes, in three phases:
//! 1. **warm-up**: every device starts a microbatch; then, from the bottom of the V upwards,
//!    each device runs more chunk-0 forwards while the chunk-1 forward it waits for has not
//!    arrived and its memory keeps room for what follows (`reserve + step·d` chunks);
//! 2. **fill**: devices lower in the V run forwards, alternating flows, until each holds at
//!    least as many forwards as the one above it;
//! 3. **rounds**: in every round each device runs one input backward (up flow first when its
//!    input is there), then one forward (chunk 1 first when its input is there). Before each
//!    of these, pending Ws fill the wait for the input when they fit in it, and one more W
//!    runs when the wait would exceed the device's share of bubble; Ws also run whenever the
//!    next forward would exceed the memory limit.
//!
//! [`variants`] and [`refined`] run it with both W-filling policies and a few warm-up reserves,
//! then again with the bubble each device showed as its allowance (the paper's "approved
//! bubble"), and keep the shortest step.

use std::collections::VecDeque;

use crate::engine::{Engine, Net, Slot};
use crate::error::{Error, Param};
use crate::ir::{Pass, PassKind, Placement, Schedule};
use crate::params::{Params, EPS};

/// When pending Ws may run ahead of a pass to fill the wait for its input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WFill {
    /// One more W before a forward when the wait would exceed the bubble allowance.
    pub before_f: bool,
    /// The same before a chunk-1 input backward.
    pub before_b: bool,
}

/// Options of one run of the round-based scheduler.
#[derive(Clone, Debug, PartialEq)]
pub struct RoundOptions {
    /// Memory limit per device, in units.
    pub limit: Vec<f64>,
    /// Warm-up: chunk-0 forwards continue on device `d` while its memory keeps
    /// `reserve + step·d` chunk activations free.
    pub reserve: u32,
    /// See `reserve`.
    pub step: u32,
    /// Extra W filling.
    pub fill: WFill,
    /// Bubble each device may show without W filling it; `None`: none.
    pub approved: Option<Vec<f64>>,
}

/// Pass categories.
const F: usize = 0;
const B: usize = 1;
const W: usize = 2;
/// Flows: down (from device `d - 1`) and up (from device `d + 1`).
const DOWN: usize = 0;
const UP: usize = 1;

struct State<'a, 'n> {
    o: &'a RoundOptions,
    e: Engine<'n>,
    p: usize,
    m: usize,
    /// Passes placed per device and `cat * 2 + flow`.
    count: Vec<[usize; 6]>,
    bubble: Vec<f64>,
    pending_w: Vec<VecDeque<usize>>,
    /// Half of what one microbatch holds on each device: one chunk's share.
    chunk: Vec<f64>,
    max_approved: f64,
}

impl State<'_, '_> {
    fn net(&self) -> &Net {
        self.e.state().net
    }

    /// The next `(cat, flow)` pass of device `d`.
    fn pass(&self, cat: usize, flow: usize, d: usize) -> Pass {
        let (p, dd) = (self.p as u32, d as u32);
        // A W belongs to the flow of its B.
        let chunk0 = (cat == F) == (flow == DOWN);
        let stage = if chunk0 { dd } else { 2 * p - 1 - dd };
        let kind = [PassKind::F, PassKind::B, PassKind::W][cat];
        Pass::new(kind, stage, self.count[d][cat * 2 + flow] as u32)
    }

    /// The input of another device that `pass` of `flow` on `d` waits for, if any.
    fn cross_input(&self, cat: usize, flow: usize, d: usize, pass: Pass) -> Option<Slot> {
        if cat == W || (flow == DOWN && d == 0) || (flow == UP && d + 1 == self.p) {
            return None;
        }
        self.net()
            .inputs(pass)
            .into_iter()
            .flatten()
            .find(|s| self.net().stage_device[s.stage() as usize] as usize != d)
    }

    /// Whether the next `(cat, flow)` pass of `d` can be placed now.
    fn ready(&self, cat: usize, flow: usize, d: usize) -> bool {
        let c = &self.count[d];
        let mb = c[cat * 2 + flow];
        if mb >= self.m {
            return false;
        }
        // Order on the device: F up after F down, B down after F up, B up after B down.
        let before = match (cat, flow) {
            (F, UP) => Some(F * 2 + DOWN),
            (B, DOWN) => Some(F * 2 + UP),
            (B, UP) => Some(B * 2 + DOWN),
            _ => None,
        };
        if before.is_some_and(|i| c[i] <= mb) {
            return false;
        }
        self.e.state().ready(self.pass(cat, flow, d)).is_ok()
    }

    /// Whether `d` has room for the forward of `flow`, plus `extra` chunks.
    fn room(&self, flow: usize, d: usize, extra: f64) -> bool {
        let pass = self.pass(F, flow, d);
        let act = self.net().table.act[pass.stage as usize];
        self.e.state().level[d] + act + extra * self.chunk[d] <= self.o.limit[d] + EPS
    }

    fn put(&mut self, cat: usize, flow: usize, d: usize) {
        let pass = self.pass(cat, flow, d);
        let clock = self.e.state().clock[d];
        // Every caller has checked the inputs are there.
        if self.e.run_ready(d, pass).is_ok() {
            let start = self.e.state().start[d].last().copied().unwrap_or(clock);
            if self.count[d][F * 2 + DOWN] > 0 {
                self.bubble[d] += start - clock;
            }
        }
        if cat == B {
            self.pending_w[d].push_back(flow);
        }
        self.count[d][cat * 2 + flow] += 1;
    }

    /// Runs the oldest pending W of `d`; false when there is none.
    fn put_w(&mut self, d: usize) -> bool {
        match self.pending_w[d].pop_front() {
            Some(flow) => {
                self.put(W, flow, d);
                true
            }
            None => false,
        }
    }

    fn max_bubble(&self, d: usize) -> f64 {
        let own = self
            .o
            .approved
            .as_ref()
            .map_or(0.0, |a| self.max_approved - a[d]);
        self.bubble.iter().cloned().fold(own, f64::max)
    }

    /// Ws into the wait for the input of the next `(cat, flow)` pass of `d`.
    fn fill_wait(&mut self, cat: usize, flow: usize, d: usize, allow_extra: bool) {
        let pass = self.pass(cat, flow, d);
        let Some(slot) = self.cross_input(cat, flow, d, pass) else {
            return;
        };
        let Some(end) = self.e.state().ended(slot) else {
            return;
        };
        let arrival = end + self.net().latency(slot, pass);
        let w_len = |st: &Self| {
            st.pending_w[d]
                .front()
                .map(|&f| st.net().duration(st.pass(W, f, d)))
        };
        while let Some(len) = w_len(self) {
            if arrival + EPS < self.e.state().clock[d] + len {
                break;
            }
            self.put_w(d);
        }
        if allow_extra
            && !self.pending_w[d].is_empty()
            && arrival - self.e.state().clock[d] > self.max_bubble(d) - self.bubble[d] + EPS
        {
            self.put_w(d);
        }
    }

    fn total(&self, d: usize) -> usize {
        self.count[d].iter().sum()
    }
}

/// Runs the scheduler once for `prm`'s sizes and costs on a V-shape placement. Returns the
/// schedule and each device's bubble as the scheduler saw it (idle time after its first pass).
pub fn round_schedule(prm: &Params, o: &RoundOptions) -> Result<(Schedule, Vec<f64>), Error> {
    let (pu, mu) = (prm.devices(), prm.microbatches());
    let (p, m) = (pu as usize, mu as usize);
    let net = Net::new(&Placement::VShape, pu, mu, prm.table(&Placement::VShape)?)?;
    let need = net.table.need(&Placement::VShape, pu);
    if o.limit.len() != p || o.approved.as_ref().is_some_and(|a| a.len() != p) {
        return Err(Error::config(
            "the round scheduler's limits and approved bubbles must list every device",
        ));
    }
    if let Some(d) = (0..p).find(|&d| o.limit[d] + EPS < need[d]) {
        return Err(Error::fix(
            format!(
                "a memory limit of {:.3} units cannot hold one microbatch on both stages of V-shape device {d} ({:.3} units); raise the budget",
                o.limit[d], need[d]
            ),
            Param::Budget,
            format!("{:.3}", need[d]),
        ));
    }
    let stuck = || {
        Error::change(
            format!("the round scheduler cannot fit {m} microbatches on {p} devices within the memory budget"),
            Param::Budget,
        )
    };
    let mut st = State {
        o,
        e: Engine::new(&net).recording_lists().without_memory_curves(),
        p,
        m,
        count: vec![[0; 6]; p],
        bubble: vec![0.0; p],
        pending_w: vec![VecDeque::new(); p],
        chunk: need.iter().map(|n| n / 2.0).collect(),
        max_approved: o
            .approved
            .as_ref()
            .map_or(0.0, |a| a.iter().cloned().fold(0.0, f64::max)),
    };
    st.e.reserve(&vec![6 * m; p]);
    // 1. Warm-up.
    for d in 0..p {
        st.put(F, DOWN, d);
    }
    for d in (0..p).rev() {
        if d + 1 < p {
            let from = Pass::f(2 * pu - 2 - d as u32, 0);
            let arrival =
                st.e.state()
                    .ended(Slot::Fwd(from.stage, 0))
                    .unwrap_or(f64::INFINITY)
                    + net.latency(Slot::Fwd(from.stage, 0), Pass::f(from.stage + 1, 0));
            // Counts never grow down the V here, so placing devices 0..=d in order finds
            // every input already placed.
            while (0..=d).all(|j| {
                st.room(DOWN, j, (o.reserve + o.step * j as u32) as f64 - 1.0)
                    && st.count[j][F * 2 + DOWN] < m
            }) && st.e.state().clock[d] + net.duration(st.pass(F, DOWN, d)) <= arrival + EPS
            {
                for j in 0..=d {
                    st.put(F, DOWN, j);
                }
            }
        }
        if !st.room(UP, d, 0.0) || !st.ready(F, UP, d) {
            return Err(stuck());
        }
        st.put(F, UP, d);
    }
    // 2. Fill: each device at least as many forwards as the one above it.
    let mut flow = DOWN;
    for d in 1..p {
        let mut idle_rounds = 0;
        loop {
            let (cd, cu) = (&st.count[d], &st.count[d - 1]);
            let behind = cd[F * 2 + DOWN] + cd[F * 2 + UP] < cu[F * 2 + DOWN] + cu[F * 2 + UP];
            let up_behind = cd[F * 2 + UP] <= cu[F * 2 + UP] && cu[F * 2 + UP] < m;
            if !(behind || up_behind) || idle_rounds >= 2 {
                break;
            }
            let mut placed = false;
            for j in (d..p).rev() {
                if st.ready(F, flow, j) && st.room(flow, j, 0.0) {
                    st.put(F, flow, j);
                    placed = true;
                }
            }
            flow = 1 - flow;
            idle_rounds = if placed { 0 } else { idle_rounds + 1 };
        }
    }
    // 3. Rounds: one input backward, then one forward, per device.
    let need_passes = 6 * m;
    let mut rounds = 0usize;
    while (0..p).any(|d| st.total(d) < need_passes) {
        rounds += 1;
        if rounds > 16 * m + 4 * p + 16 {
            return Err(stuck());
        }
        let mut placed = false;
        let mut up = Vec::new();
        let mut down = Vec::new();
        for d in 0..p {
            let c = &st.count[d];
            let flow = if c[B * 2 + UP] >= c[B * 2 + DOWN] {
                DOWN
            } else if d + 1 == p || c[B * 2 + DOWN] >= m || {
                let pass = st.pass(B, UP, d);
                st.cross_input(B, UP, d, pass)
                    .is_some_and(|s| st.e.state().ended(s).is_some())
            } {
                UP
            } else {
                DOWN
            };
            if flow == UP {
                up.push(d);
            } else {
                down.push(d);
            }
        }
        let order: Vec<(usize, usize)> = up
            .into_iter()
            .rev()
            .map(|d| (d, UP))
            .chain(down.into_iter().map(|d| (d, DOWN)))
            .collect();
        for (d, flow) in order {
            if !st.ready(B, flow, d) {
                continue;
            }
            st.fill_wait(B, flow, d, flow == UP || o.fill.before_b);
            st.put(B, flow, d);
            placed = true;
        }
        for d in 0..p {
            let c = st.count[d];
            if c[F * 2 + UP] >= m {
                continue;
            }
            let flow = if c[F * 2 + UP] >= c[F * 2 + DOWN] || d + 1 < p && !st.ready(F, UP, d) {
                DOWN
            } else {
                UP
            };
            if !st.ready(F, flow, d) {
                continue;
            }
            while !st.room(flow, d, 0.0) && st.put_w(d) {}
            if !st.room(flow, d, 0.0) {
                continue;
            }
            st.fill_wait(F, flow, d, o.fill.before_f);
            st.put(F, flow, d);
            placed = true;
        }
        if !placed {
            let mut any = false;
            for d in 0..p {
                any |= st.put_w(d);
            }
            if !any {
                return Err(stuck());
            }
        }
    }
    for d in 0..p {
        while st.put_w(d) {}
    }
    let mut s = Schedule::empty("zb-v", pu, mu, Placement::VShape)?;
    let bubble = st.bubble;
    s.lists = st.e.into_lists();
    Ok((s, bubble))
}

/// The runs worth trying within `limit` units on each device: a few warm-up reserves, each with
/// both W-filling policies.
pub fn variants(limit: &[f64]) -> Vec<RoundOptions> {
    let mut v = Vec::new();
    for (reserve, step) in [(2, 2), (3, 1)] {
        for before_b in [true, false] {
            for before_f in [true, false] {
                v.push(RoundOptions {
                    limit: limit.to_vec(),
                    reserve,
                    step,
                    fill: WFill { before_f, before_b },
                    approved: None,
                });
            }
        }
    }
    v
}

/// Runs `o`, then again with the per-device bubble of the previous run as the allowance, while
/// that lowers the largest bubble (at most `times` more runs). Returns every schedule made.
pub fn refined(prm: &Params, mut o: RoundOptions, times: usize) -> Vec<Schedule> {
    let mut out = Vec::new();
    let mut last = f64::INFINITY;
    for _ in 0..=times {
        let Ok((s, bubble)) = round_schedule(prm, &o) else {
            break;
        };
        out.push(s);
        let worst = bubble.iter().cloned().fold(0.0, f64::max);
        if worst + EPS >= last {
            break;
        }
        last = worst;
        o.approved = Some(bubble);
    }
    out
}
