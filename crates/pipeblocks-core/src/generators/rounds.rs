//! A round-based scheduler for the V-shape placement: the construction behind ZB-V in the
//! zero-bubble paper, under real costs and a memory budget.
//!
//! On a V-shape each device holds two stages, so its passes belong to two *flows*: the
//! **down** flow (the forward of chunk 0 and the input backward of chunk 1) arrives from the
//! device before it, and the **up** flow (the forward of chunk 1 and the input backward of
//! chunk 0) from the device after it. The scheduler places passes in device lists while it
//! computes their times (the same times the simulator gives), in three phases:
//! 1. **warm-up**: every device starts a microbatch; then, from the bottom of the V upwards,
//!    each device runs more chunk-0 forwards while the chunk-1 forward it waits for has not
//!    arrived and its memory keeps room for what follows (`reserve + step·d` half-chunks);
//! 2. **fill**: devices lower in the V run forwards, alternating flows, until each holds at
//!    least as many forwards as the one above it;
//! 3. **rounds**: in every round each device runs one input backward (up flow first when its
//!    input is there), then one forward (chunk 1 first when its input is there). Before each
//!    of these, pending Ws fill the wait for the input when they fit in it, and one more W
//!    runs when the wait would exceed the device's share of bubble; Ws also run whenever the
//!    next forward would exceed the memory limit.
//!
//! [`variants`] and [`refined`] run it with both W-filling policies and a few warm-up reserves, then again with
//! the bubble each device showed as its allowance (the paper's "approved bubble"), and keeps
//! the shortest step.

use std::collections::VecDeque;

use crate::error::Error;
use crate::ir::{Pass, PassKind, Placement, Schedule};

const EPS: f64 = 1e-9;

/// Options of one run of the round-based scheduler.
#[derive(Clone, Debug)]
pub struct RoundOptions {
    /// Devices `p`.
    pub devices: u32,
    /// Microbatches `m`.
    pub microbatches: u32,
    /// Cost of a chunk's F, B and W.
    pub cost: [f64; 3],
    /// Latency between devices.
    pub comm: f64,
    /// Memory limit per device, in chunk activations (half a unit each on a V-shape).
    pub limit: u32,
    /// Warm-up: chunk-0 forwards continue on device `d` while its memory keeps
    /// `reserve + step·d` chunk activations free.
    pub reserve: u32,
    /// See `reserve`.
    pub step: u32,
    /// Run a W before a forward when the wait would exceed the bubble allowance.
    pub fill_f: bool,
    /// The same before a chunk-1 input backward.
    pub fill_b: bool,
    /// Bubble each device may show without W filling it; `None`: none.
    pub approved: Option<Vec<f64>>,
}

/// Pass categories in the flow tables.
const F: usize = 0;
const B: usize = 1;
const W: usize = 2;
/// Flows: down (from device `d - 1`) and up (from device `d + 1`).
const DOWN: usize = 0;
const UP: usize = 1;

struct State<'a> {
    o: &'a RoundOptions,
    p: usize,
    m: usize,
    /// End time of `(cat, flow, device, mb)`, NaN until placed.
    end: Vec<f64>,
    /// Passes placed per device and `cat * 2 + flow`.
    count: Vec<[usize; 6]>,
    clock: Vec<f64>,
    mem: Vec<u32>,
    bubble: Vec<f64>,
    pending_w: Vec<VecDeque<usize>>,
    lists: Vec<Vec<Pass>>,
    max_approved: f64,
}

impl State<'_> {
    fn key(&self, cat: usize, flow: usize, d: usize, mb: usize) -> usize {
        ((cat * 2 + flow) * self.p + d) * self.m + mb
    }

    /// The pass of another device that `(cat, flow)` on `d` waits for, if any.
    fn input(&self, cat: usize, flow: usize, d: usize, mb: usize) -> Option<usize> {
        if cat == W {
            return None;
        }
        match flow {
            DOWN if d > 0 => Some(self.key(cat, DOWN, d - 1, mb)),
            UP if d + 1 < self.p => Some(self.key(cat, UP, d + 1, mb)),
            _ => None,
        }
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
        self.input(cat, flow, d, mb)
            .is_none_or(|k| !self.end[k].is_nan())
    }

    /// The stage a pass of `flow` runs on, on device `d`.
    fn stage(&self, cat: usize, flow: usize, d: usize) -> u32 {
        let (p, d) = (self.p as u32, d as u32);
        let chunk0 = (cat == F) == (flow == DOWN);
        if chunk0 {
            d
        } else {
            2 * p - 1 - d
        }
    }

    fn put(&mut self, cat: usize, flow: usize, d: usize) {
        let mb = self.count[d][cat * 2 + flow];
        let dur = self.o.cost[cat];
        let earliest = self.clock[d] + dur;
        let mut t = earliest;
        if let Some(k) = self.input(cat, flow, d, mb) {
            t = t.max(self.end[k] + self.o.comm + dur);
        }
        if self.count[d][F * 2 + DOWN] > 0 {
            self.bubble[d] += t - earliest;
        }
        let k = self.key(cat, flow, d, mb);
        self.end[k] = t;
        self.clock[d] = t;
        match cat {
            F => self.mem[d] += 1,
            W => self.mem[d] -= 1,
            _ => self.pending_w[d].push_back(flow),
        }
        let kind = [PassKind::F, PassKind::B, PassKind::W][cat];
        let stage = self.stage(if cat == W { B } else { cat }, flow, d);
        self.lists[d].push(Pass::new(kind, stage, mb as u32));
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
        let mb = self.count[d][cat * 2 + flow];
        let Some(k) = self.input(cat, flow, d, mb) else {
            return;
        };
        let arrival = self.end[k] + self.o.comm;
        while !self.pending_w[d].is_empty() && arrival + EPS >= self.clock[d] + self.o.cost[W] {
            self.put_w(d);
        }
        if allow_extra
            && !self.pending_w[d].is_empty()
            && arrival - self.clock[d] > self.max_bubble(d) - self.bubble[d] + EPS
        {
            self.put_w(d);
        }
    }

    fn total(&self, d: usize) -> usize {
        self.count[d].iter().sum()
    }
}

/// Runs the scheduler once. Returns the device lists' schedule and each device's bubble as the
/// scheduler saw it (idle time after its first pass).
pub fn round_schedule(o: &RoundOptions) -> Result<(Schedule, Vec<f64>), Error> {
    let p = o.devices as usize;
    let m = o.microbatches as usize;
    if p == 0 || m == 0 {
        return Err(Error::config(
            "the round scheduler needs at least one device and one microbatch",
        ));
    }
    if o.limit < 2 {
        return Err(Error::config(format!(
            "a memory limit of {} chunk activations cannot hold both stages of a V-shape device; raise the budget to at least 1 unit",
            o.limit
        )));
    }
    if o.approved.as_ref().is_some_and(|a| a.len() != p) {
        return Err(Error::config("approved bubbles must list every device"));
    }
    let stuck = || {
        Error::config(format!(
            "the round scheduler cannot fit {m} microbatches on {p} devices within {} chunk activations",
            o.limit
        ))
    };
    let mut st = State {
        o,
        p,
        m,
        end: vec![f64::NAN; 6 * p * m],
        count: vec![[0; 6]; p],
        clock: vec![0.0; p],
        mem: vec![0; p],
        bubble: vec![0.0; p],
        pending_w: vec![VecDeque::new(); p],
        lists: vec![Vec::with_capacity(6 * m); p],
        max_approved: o
            .approved
            .as_ref()
            .map_or(0.0, |a| a.iter().cloned().fold(0.0, f64::max)),
    };
    // 1. Warm-up.
    for d in 0..p {
        st.put(F, DOWN, d);
    }
    for d in (0..p).rev() {
        if d + 1 < p {
            let arrival = st.end[st.key(F, UP, d + 1, 0)] + o.comm;
            // Counts never grow down the V here, so placing devices 0..=d in order finds
            // every input already placed.
            while (0..=d).all(|j| {
                st.mem[j] + o.reserve + o.step * j as u32 <= o.limit
                    && st.count[j][F * 2 + DOWN] < m
            }) && st.clock[d] + o.cost[F] <= arrival + EPS
            {
                for j in 0..=d {
                    st.put(F, DOWN, j);
                }
            }
        }
        if st.mem[d] + 1 > o.limit || !st.ready(F, UP, d) {
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
                if st.ready(F, flow, j) && st.mem[j] < o.limit {
                    st.put(F, flow, j);
                    placed = true;
                }
            }
            flow = 1 - flow;
            idle_rounds = if placed { 0 } else { idle_rounds + 1 };
        }
    }
    // 3. Rounds: one input backward, then one forward, per device.
    let need = 6 * m;
    let mut rounds = 0usize;
    while (0..p).any(|d| st.total(d) < need) {
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
            } else if d + 1 == p
                || c[B * 2 + DOWN] >= m
                || st
                    .input(B, UP, d, c[B * 2 + UP])
                    .is_some_and(|k| !st.end[k].is_nan())
            {
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
            st.fill_wait(B, flow, d, flow == UP || o.fill_b);
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
            while st.mem[d] + 1 > o.limit && st.put_w(d) {}
            if st.mem[d] + 1 > o.limit {
                continue;
            }
            st.fill_wait(F, flow, d, o.fill_f);
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
    let mut s = Schedule::empty("zb-v", o.devices, o.microbatches, Placement::VShape)?;
    s.lists = st.lists;
    Ok((s, st.bubble))
}

/// The runs worth trying for a per-device budget of `limit` chunk activations: a few warm-up
/// reserves, each with both W-filling policies.
pub fn variants(
    devices: u32,
    microbatches: u32,
    cost: [f64; 3],
    comm: f64,
    limit: u32,
) -> Vec<RoundOptions> {
    let mut v = Vec::new();
    for (reserve, step) in [(2, 2), (3, 1)] {
        for fill_b in [true, false] {
            for fill_f in [true, false] {
                v.push(RoundOptions {
                    devices,
                    microbatches,
                    cost,
                    comm,
                    limit,
                    reserve,
                    step,
                    fill_f,
                    fill_b,
                    approved: None,
                });
            }
        }
    }
    v
}

/// Runs `o`, then again with the per-device bubble of the previous run as the allowance, while
/// that lowers the largest bubble (at most `times` more runs). Returns every schedule made.
pub fn refined(mut o: RoundOptions, times: usize) -> Vec<Schedule> {
    let mut out = Vec::new();
    let mut last = f64::INFINITY;
    for _ in 0..=times {
        let Ok((s, bubble)) = round_schedule(&o) else {
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
