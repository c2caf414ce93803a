//! A cost- and memory-aware greedy list scheduler, the generalisation of ZB-H1 and ZB-H2.
//!
//! A policy of the [event engine](crate::engine): devices act in the order of their clocks.
//! When a device is free it picks, among the passes whose inputs have arrived:
//! 1. a B (input gradient: on the critical path of the device before it),
//! 2. else an F, if its activation fits under the device's memory limit,
//! 3. else the oldest pending W (filling a wait; this is also how W is flushed when memory runs
//!    out, since W frees the activation),
//! 4. else it sleeps until the next pass it could run arrives.
//!
//! Works on any placement; F and B of a stage follow microbatch order.

use std::collections::VecDeque;

use crate::engine::{Alarm, Blocked, Engine, Flow, Net, Policy, Slot, State, Step};
use crate::error::{Error, Param};
use crate::ir::{Pass, PassKind, Placement, Schedule};
use crate::params::{Params, EPS};

/// Options of the list scheduler.
#[derive(Clone, Debug)]
pub struct GreedyOptions {
    /// Schedule name.
    pub name: String,
    /// Placement.
    pub placement: Placement,
    /// Memory limit per device, in units.
    pub limit: Vec<f64>,
    /// Pacing per device, in units: an F is admitted only while the activations still waiting
    /// for their B stay within it (1F1B's warm-up rule). `None`: only `limit` applies.
    pub pace: Option<Vec<f64>>,
    /// Split the backward into B and W (otherwise BW).
    pub split_backward: bool,
    /// At most this many microbatches in flight: a forward of stage 0 (a new microbatch) is
    /// admitted only while fewer microbatches have entered than have finished the backward of
    /// stage 0, plus this cap. Tight budgets need it, or the devices fill up with forwards that
    /// can never finish. `None`: no cap.
    pub max_in_flight: Option<u32>,
    /// On a device holding several stages, start a microbatch on its first local stage only
    /// while the device can also hold that microbatch's later local stages and those of every
    /// microbatch already started there (pending Ws counted as freed). Rules out the memory
    /// deadlock of V-shape schedules, where device 0 fills up with chunk-0 forwards and cannot
    /// run the chunk-1 forward of the microbatches it holds.
    pub reserve: bool,
}

/// The scheduler's bookkeeping beside the engine's clocks and memory.
struct Greedy<'a> {
    o: &'a GreedyOptions,
    m: usize,
    next_f: Vec<usize>,
    next_b: Vec<usize>,
    pending_w: Vec<VecDeque<(u32, u32)>>,
    /// Activation held by Ws not yet run, and allocations still to come for admitted
    /// microbatches, per device.
    pending_mem: Vec<f64>,
    reserved: Vec<f64>,
    /// One microbatch on all of a device's stages.
    need: Vec<f64>,
    /// Activations whose B has not run yet, per device.
    awaiting_b: Vec<f64>,
    pace: Vec<f64>,
    left: Vec<usize>,
}

impl Greedy<'_> {
    fn choose(&mut self, d: usize, now: f64, st: &State, alarm: &mut Alarm) -> Option<Pass> {
        let net = st.net;
        let o = self.o;
        // 1. B (or BW) whose gradient has arrived.
        let mut choice: Option<Pass> = None;
        let kind = if o.split_backward {
            PassKind::B
        } else {
            PassKind::BW
        };
        for &s in net.local[d].iter().rev() {
            let mb = self.next_b[s as usize];
            if mb >= self.m
                || st
                    .ended(Slot::Fwd(s, mb as u32))
                    .is_none_or(|e| e > now + EPS)
            {
                continue;
            }
            let pass = Pass::new(kind, s, mb as u32);
            if alarm.arrived(st, pass) && choice.is_none_or(|c| mb < c.mb as usize) {
                choice = Some(pass);
            }
        }
        if choice.is_some() {
            return choice;
        }
        // 2. F that fits in memory.
        for &s in net.local[d].iter().rev() {
            let su = s as usize;
            let mb = self.next_f[su];
            if mb >= self.m {
                continue;
            }
            let a = net.table.act[su];
            let fits = st.level[d] + a <= o.limit[d] + EPS
                && self.awaiting_b[d] + a <= self.pace[d] + EPS
                && (su != 0
                    || o.max_in_flight
                        .is_none_or(|k| self.next_f[0] < self.next_b[0] + k as usize))
                && (!o.reserve
                    || s != net.local[d][0]
                    || st.level[d] - self.pending_mem[d] + self.reserved[d] + self.need[d]
                        <= o.limit[d] + EPS);
            let pass = Pass::f(s, mb as u32);
            if alarm.arrived(st, pass) && fits && choice.is_none_or(|c| mb < c.mb as usize) {
                choice = Some(pass);
            }
        }
        if choice.is_some() {
            return choice;
        }
        // 3. The oldest pending W.
        self.pending_w[d].pop_front().map(|(s, mb)| Pass::w(s, mb))
    }
}

impl Policy for Greedy<'_> {
    const TIMED: bool = true;

    fn next(&mut self, d: usize, now: f64, st: &State) -> Step {
        if self.left[d] == 0 {
            return Step::Done;
        }
        // 4. Nothing: idle until a known arrival, or until an input of this device is produced.
        let mut alarm = Alarm::new(now);
        let choice = self.choose(d, now, st, &mut alarm);
        alarm.step(choice)
    }

    fn ran(&mut self, d: usize, pass: Pass, st: &State) -> Flow {
        let su = pass.stage as usize;
        let a = st.net.table.act[su];
        let kept = a * (1.0 - st.net.table.release[su]);
        self.left[d] -= 1;
        match pass.kind {
            PassKind::F => {
                self.next_f[su] += 1;
                self.awaiting_b[d] += a;
                if self.o.reserve {
                    if pass.stage == st.net.local[d][0] {
                        self.reserved[d] += self.need[d];
                    }
                    self.reserved[d] -= a;
                }
            }
            PassKind::B => {
                self.next_b[su] += 1;
                self.awaiting_b[d] -= a;
                self.pending_w[d].push_back((pass.stage, pass.mb));
                self.pending_mem[d] += kept;
            }
            PassKind::BW => {
                self.next_b[su] += 1;
                self.awaiting_b[d] -= a;
            }
            PassKind::W => self.pending_mem[d] -= kept,
            // The list scheduler lists no recompute or transfer passes.
            PassKind::R | PassKind::O | PassKind::L => {}
        }
        Flow::Go
    }
}

/// Runs the list scheduler for `prm`'s sizes and costs.
pub fn list_schedule(prm: &Params, o: &GreedyOptions) -> Result<Schedule, Error> {
    let (p, m) = (prm.devices(), prm.microbatches());
    let mut s = Schedule::empty(&o.name, p, m, o.placement.clone())?;
    let net = Net::new(&o.placement, p, m, prm.table(&o.placement)?)?;
    if o.limit.len() != p as usize || o.pace.as_ref().is_some_and(|x| x.len() != p as usize) {
        return Err(Error::config(
            "list scheduler: the memory limits and paces must list every device",
        ));
    }
    let need = net.table.need(&o.placement, p);
    for (d, (&lim, &need)) in o.limit.iter().zip(&need).enumerate() {
        // A microbatch holds its activation on every stage of the device at once (each stage's
        // lifespan contains the later ones'), so the device needs their sum, not the largest.
        if lim + EPS < need {
            return Err(Error::fix(
                format!("memory budget {lim:.3} units on device {d} is below one microbatch's activation ({need:.3} units); raise the budget"),
                Param::Budget,
                format!("{need:.3}"),
            ));
        }
    }
    let per_mb = if o.split_backward { 3 } else { 2 };
    let mut policy = Greedy {
        o,
        m: m as usize,
        next_f: vec![0; s.stages as usize],
        next_b: vec![0; s.stages as usize],
        pending_w: vec![VecDeque::new(); p as usize],
        pending_mem: vec![0.0; p as usize],
        reserved: vec![0.0; p as usize],
        need,
        awaiting_b: vec![0.0; p as usize],
        pace: o
            .pace
            .clone()
            .unwrap_or_else(|| vec![f64::INFINITY; p as usize]),
        left: net
            .local
            .iter()
            .map(|l| l.len() * m as usize * per_mb)
            .collect(),
    };
    let mut e = Engine::new(&net).recording_lists().without_memory_curves();
    e.reserve(&policy.left);
    match e.drive(&mut policy) {
        Ok(()) => {
            s.lists = e.into_lists();
            Ok(s)
        }
        Err(Blocked::Asleep(devices)) => Err(Error::change(
            format!(
                "the memory budget is too small for {}: device {} can neither start a forward nor wait for a backward; raise the budget",
                o.name,
                devices.first().copied().unwrap_or(0)
            ),
            Param::Budget,
        )),
        Err(_) => Err(Error::config(format!("{}: the list scheduler stopped", o.name))),
    }
}
