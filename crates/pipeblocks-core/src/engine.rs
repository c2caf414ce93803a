//! The event engine: one place that knows when a pass can start and what it does to memory.
//!
//! Every computation over time in pipeblocks runs here: simulating a schedule, checking that its
//! lists cannot deadlock, building a schedule with a list scheduler (greedy, ZeroPP, the round
//! scheduler), moving passes into gaps and climbing over device orders, and FSDP's collective
//! stream. The [`Engine`] owns
//! - **readiness**: a pass may start once its inputs have ended ([`Net::inputs`]: F after the
//!   previous stage's F, B or BW after its own F and the next stage's input gradient, W after
//!   its B), plus the latency of the link when the input comes from another device;
//! - **clocks**: each device runs one pass at a time, `start = max(free, inputs arrived)`, for
//!   the duration its stage's costs give ([`StageTable`]);
//! - **memory**: an F allocates its stage's activation as it starts; a B frees the part
//!   `release`, a W the rest, a BW all, as they end ([`StageTable::activation_change`]);
//! - **waking**: a device that waits for an input is woken when it is produced;
//! - **results**: start and end of every pass, busy time, peak and curve of the activation.
//!
//! A [`Policy`] chooses what a free device runs next: [`InOrder`] runs fixed lists (simulation,
//! validation, climbing); the list schedulers choose among the passes whose inputs have arrived.
//! Fixed lists run in any order of devices (a device runs on while it can, which is fast); a
//! [`Policy::TIMED`] policy sees devices in the order of their clocks, ties to the lowest index,
//! and may put a device to sleep until a known time (it is woken earlier when one of its inputs
//! is produced). An [`Observer`] rides beside the passes and may delay them (FSDP's gathers).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::ir::{Pass, PassKind, Placement, Schedule};
use crate::params::{StageCosts, StageTable};

const NONE: u32 = u32::MAX;

/// Kinds of [`Slot`]: F, B or BW, R, O and L outputs.
const SLOT_KINDS: usize = 5;

/// An output a pass waits for: the forward activation or the input gradient of one stage and
/// microbatch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Slot {
    /// The output of `F{stage}.{mb}`.
    Fwd(u32, u32),
    /// The input gradient of `{stage}.{mb}`: the output of its B or BW.
    Grad(u32, u32),
    /// The recomputed activation of `{stage}.{mb}`: the output of its R.
    Rec(u32, u32),
    /// The activation of `{stage}.{mb}` in host memory: the output of its O.
    Off(u32, u32),
    /// The activation of `{stage}.{mb}` back on the device: the output of its L.
    Load(u32, u32),
}

impl Slot {
    /// The pass that produces the slot, given the kind of the stage's input backward (B or BW).
    pub fn producer(self, backward: PassKind) -> Pass {
        match self {
            Slot::Fwd(s, mb) => Pass::f(s, mb),
            Slot::Grad(s, mb) => Pass::new(backward, s, mb),
            Slot::Rec(s, mb) => Pass::r(s, mb),
            Slot::Off(s, mb) => Pass::o(s, mb),
            Slot::Load(s, mb) => Pass::l(s, mb),
        }
    }

    /// The stage that produces the slot.
    pub fn stage(self) -> u32 {
        match self {
            Slot::Fwd(s, _)
            | Slot::Grad(s, _)
            | Slot::Rec(s, _)
            | Slot::Off(s, _)
            | Slot::Load(s, _) => s,
        }
    }
}

/// The inputs of a pass of a pipeline of `stages` stages per lane (at most two; see
/// [lanes](crate::ir)), in the order they are checked: an F waits for the previous stage's F, a B
/// or BW for its own F and the next stage's input gradient, a W for its B, an R for its F (the
/// input it kept). A lane's first stage takes its forward input from the data, its last its
/// gradient from the loss. A recomputed backward also waits for its R, and what an offloaded
/// activation feeds for its L ([`Net::inputs`]); an O waits for its F, an L for its O.
#[inline]
pub fn inputs(pass: Pass, stages: u32) -> [Option<Slot>; 2] {
    let (s, mb) = (pass.stage, pass.mb);
    match pass.kind {
        PassKind::F if s % stages != 0 => [Some(Slot::Fwd(s - 1, mb)), None],
        PassKind::F => [None, None],
        PassKind::B | PassKind::BW if (s + 1) % stages != 0 => {
            [Some(Slot::Fwd(s, mb)), Some(Slot::Grad(s + 1, mb))]
        }
        PassKind::B | PassKind::BW => [Some(Slot::Fwd(s, mb)), None],
        PassKind::W => [Some(Slot::Grad(s, mb)), None],
        PassKind::R | PassKind::O => [Some(Slot::Fwd(s, mb)), None],
        PassKind::L => [Some(Slot::Off(s, mb)), None],
    }
}

/// A problem in the engine's terms: sizes, which device holds each stage, and the costs.
#[derive(Clone, Debug)]
pub struct Net {
    /// Devices `p`.
    pub devices: u32,
    /// Stages `S`.
    pub stages: u32,
    /// Microbatches `m`.
    pub microbatches: u32,
    /// Stages per [lane](crate::ir) (`S` with one lane).
    pub lane_stages: u32,
    /// Per `stage · m + mb`, whether the microbatch is recomputed on the stage (its F keeps
    /// only its input, its backward waits for its R); empty when none is.
    pub recomputed: Vec<bool>,
    /// Per `stage · m + mb`, whether what the microbatch's F left on the stage is offloaded to
    /// host memory (an O after the F, an L before the pass that needs it back); empty when
    /// none is.
    pub offloaded: Vec<bool>,
    /// Per stage, whether its recompute passes are selective (the attention only,
    /// [`Schedule::selective`]); empty when none is.
    pub selective: Vec<bool>,
    /// Device of each stage.
    pub stage_device: Vec<u32>,
    /// Stages of each device, ascending.
    pub local: Vec<Vec<u32>>,
    /// The costs for these stages.
    pub table: StageTable,
    /// Latency before stage `s` receives its forward input, and its input gradient.
    lat_fwd: Vec<f64>,
    lat_grad: Vec<f64>,
}

impl Net {
    /// The problem of `placement` on `devices` devices for `microbatches` microbatches.
    pub fn new(
        placement: &Placement,
        devices: u32,
        microbatches: u32,
        table: StageTable,
    ) -> Result<Net, Error> {
        placement.check(devices)?;
        crate::ir::check_lanes(placement, microbatches)?;
        let stages = placement.num_stages(devices);
        let lane_stages = placement.lane_stages(devices);
        crate::params::check_size(stages.into(), microbatches.into())?;
        if table.dur.len() != stages as usize {
            return Err(Error::config(format!(
                "the costs list {} stages, the schedule has {stages}",
                table.dur.len()
            )));
        }
        let stage_device = placement.stage_devices(devices);
        let mut local = vec![Vec::new(); devices as usize];
        for (s, &d) in stage_device.iter().enumerate() {
            local[d as usize].push(s as u32);
        }
        let n = stages as usize;
        let per_lane = lane_stages as usize;
        let cross = |a: usize, b: usize| {
            stage_device[a] != stage_device[b]
                && !b.is_multiple_of(per_lane)
                && a / per_lane == b / per_lane
        };
        let lat_fwd = (0..n)
            .map(|s| {
                if s > 0 && cross(s - 1, s) {
                    table.comm[s - 1]
                } else {
                    0.0
                }
            })
            .collect();
        let lat_grad = (0..n)
            .map(|s| {
                if s + 1 < n && cross(s, s + 1) {
                    table.comm[s]
                } else {
                    0.0
                }
            })
            .collect();
        Ok(Net {
            devices,
            stages,
            microbatches,
            lane_stages,
            recomputed: Vec::new(),
            offloaded: Vec::new(),
            selective: Vec::new(),
            stage_device,
            local,
            table,
            lat_fwd,
            lat_grad,
        })
    }

    /// The problem of a schedule under `costs` (with its recompute passes).
    pub fn of(s: &Schedule, costs: &StageCosts) -> Result<Net, Error> {
        let mut net = Net::new(
            &s.placement,
            s.devices,
            s.microbatches,
            costs.for_placement(&s.placement, s.devices)?,
        )?;
        net.recompute(&s.lists);
        if !s.selective.is_empty() {
            if net.table.selective.is_empty() {
                return Err(Error::change(
                    format!(
                        "{} recomputes stages selectively, but the costs do not say what selective recomputation keeps and costs; give the costs selective and selective_keep (a model gives them)",
                        s.name
                    ),
                    crate::error::Param::Costs,
                ));
            }
            net.selective = vec![false; net.stages as usize];
            for &st in &s.selective {
                if let Some(x) = net.selective.get_mut(st as usize) {
                    *x = true;
                }
            }
        }
        if !net.offloaded.is_empty() && net.table.offload.is_empty() {
            return Err(Error::change(
                format!(
                    "{} offloads activations (O and L passes), but the costs do not say how long the host link takes; give the costs an offload time (or a model's device its host bandwidth)",
                    s.name
                ),
                crate::error::Param::Costs,
            ));
        }
        Ok(net)
    }

    /// Marks the stages and microbatches that `lists` recompute (an R pass each) and offload
    /// (an O pass each).
    pub fn recompute(&mut self, lists: &[Vec<Pass>]) {
        let m = self.microbatches as usize;
        let n = self.stages as usize * m;
        self.recomputed.clear();
        self.offloaded.clear();
        for q in lists.iter().flatten() {
            if q.stage >= self.stages || (q.mb as usize) >= m {
                continue;
            }
            let marks = match q.kind {
                PassKind::R => &mut self.recomputed,
                PassKind::O => &mut self.offloaded,
                _ => continue,
            };
            if marks.is_empty() {
                *marks = vec![false; n];
            }
            marks[q.stage as usize * m + q.mb as usize] = true;
        }
    }

    /// Whether what `{stage}.{mb}`'s F left is offloaded.
    #[inline]
    pub fn is_offloaded(&self, stage: u32, mb: u32) -> bool {
        !self.offloaded.is_empty()
            && self.offloaded[stage as usize * self.microbatches as usize + mb as usize]
    }

    /// What `{stage}.{mb}`'s F leaves on the stage until its backward (or R): the stage's
    /// activation, or its [`Net::keep`] part when the microbatch is recomputed.
    #[inline]
    fn left_by_forward(&self, stage: u32, mb: u32) -> f64 {
        let s = stage as usize;
        if self.is_recomputed(stage, mb) {
            self.table.act[s] * self.keep(stage)
        } else {
            self.table.act[s]
        }
    }

    /// Whether `stage` recomputes selectively.
    #[inline]
    pub fn is_selective(&self, stage: u32) -> bool {
        !self.selective.is_empty() && self.selective[stage as usize]
    }

    /// The fraction of `stage`'s activation a recomputed microbatch keeps until its R: the
    /// selective one's ([`StageTable::selective`]) or the full one's ([`StageTable::keep`]).
    #[inline]
    pub fn keep(&self, stage: u32) -> f64 {
        let s = stage as usize;
        if self.is_selective(stage) {
            self.table.selective[s][1]
        } else {
            self.table.keep[s]
        }
    }

    /// Whether `{stage}.{mb}` is recomputed.
    #[inline]
    pub fn is_recomputed(&self, stage: u32, mb: u32) -> bool {
        !self.recomputed.is_empty()
            && self.recomputed[stage as usize * self.microbatches as usize + mb as usize]
    }

    /// The change a pass makes to its device's activation
    /// ([`StageTable::activation_change`]); a recomputed microbatch's F keeps only the
    /// [`StageTable::keep`] part.
    /// An O frees what the F left ([`Net::left_by_forward`]) as it ends, an L allocates it
    /// again as it starts.
    #[inline]
    pub fn activation_change(&self, pass: Pass) -> f64 {
        match pass.kind {
            PassKind::F | PassKind::O | PassKind::L => {
                let left = self.left_by_forward(pass.stage, pass.mb);
                if pass.kind == PassKind::O {
                    -left
                } else {
                    left
                }
            }
            PassKind::R => self.table.act[pass.stage as usize] * (1.0 - self.keep(pass.stage)),
            _ => self.table.activation_change(pass.kind, pass.stage),
        }
    }

    /// The inputs of a pass (at most three), in the order they are checked: [`inputs`], and
    /// a recomputed backward's R, or the L of what an offloaded microbatch's R or backward
    /// needs back.
    #[inline]
    pub fn inputs(&self, pass: Pass) -> [Option<Slot>; 3] {
        let [a, b] = inputs(pass, self.lane_stages);
        let (s, mb) = (pass.stage, pass.mb);
        let extra = match pass.kind {
            k if k.is_input_backward() && self.is_recomputed(s, mb) => Some(Slot::Rec(s, mb)),
            k if (k.is_input_backward() || k == PassKind::R) && self.is_offloaded(s, mb) => {
                Some(Slot::Load(s, mb))
            }
            _ => None,
        };
        [a, b, extra]
    }

    /// The slot a pass produces (a W produces nothing another pass waits for).
    #[inline]
    pub fn output(&self, pass: Pass) -> Option<Slot> {
        match pass.kind {
            PassKind::F => Some(Slot::Fwd(pass.stage, pass.mb)),
            PassKind::B | PassKind::BW => Some(Slot::Grad(pass.stage, pass.mb)),
            PassKind::R => Some(Slot::Rec(pass.stage, pass.mb)),
            PassKind::O => Some(Slot::Off(pass.stage, pass.mb)),
            PassKind::L => Some(Slot::Load(pass.stage, pass.mb)),
            PassKind::W => None,
        }
    }

    /// Latency between the end of `slot` and its use by `consumer`.
    #[inline]
    pub fn latency(&self, slot: Slot, consumer: Pass) -> f64 {
        match slot {
            Slot::Fwd(s, _) if s != consumer.stage => self.lat_fwd[consumer.stage as usize],
            Slot::Grad(s, _) if s != consumer.stage => self.lat_grad[consumer.stage as usize],
            _ => 0.0,
        }
    }

    /// The device that waits for `slot` on another stage: the next stage's for a forward
    /// output, the previous stage's for an input gradient.
    #[inline]
    fn consumer(&self, slot: Slot) -> Option<(u32, f64)> {
        match slot {
            Slot::Fwd(s, _) if (s + 1) % self.lane_stages != 0 => Some((
                self.stage_device[s as usize + 1],
                self.lat_fwd[s as usize + 1],
            )),
            Slot::Grad(s, _) if s % self.lane_stages != 0 => Some((
                self.stage_device[s as usize - 1],
                self.lat_grad[s as usize - 1],
            )),
            _ => None,
        }
    }

    /// Dense index of the slot a pass produces (see [`Net::output`]).
    #[inline]
    fn output_index(&self, pass: Pass) -> Option<usize> {
        let m = self.microbatches as usize;
        let row = match pass.kind {
            PassKind::F => pass.stage as usize,
            PassKind::B | PassKind::BW => self.stages as usize + pass.stage as usize,
            PassKind::R => 2 * self.stages as usize + pass.stage as usize,
            PassKind::O => 3 * self.stages as usize + pass.stage as usize,
            PassKind::L => 4 * self.stages as usize + pass.stage as usize,
            PassKind::W => return None,
        };
        Some(row * m + pass.mb as usize)
    }

    /// Number of slots, `5·S·m` ([`Net::index`]).
    #[inline]
    pub fn slots(&self) -> usize {
        SLOT_KINDS * self.stages as usize * self.microbatches as usize
    }

    /// Dense index of a slot, `0..5·S·m`.
    #[inline]
    pub fn index(&self, slot: Slot) -> usize {
        let m = self.microbatches as usize;
        let n = self.stages as usize;
        let (row, s, mb) = match slot {
            Slot::Fwd(s, mb) => (0, s, mb),
            Slot::Grad(s, mb) => (1, s, mb),
            Slot::Rec(s, mb) => (2, s, mb),
            Slot::Off(s, mb) => (3, s, mb),
            Slot::Load(s, mb) => (4, s, mb),
        };
        (row * n + s as usize) * m + mb as usize
    }

    /// Duration of a pass; a transfer moves what the F left ([`StageTable::offload`] for the
    /// whole activation).
    #[inline]
    pub fn duration(&self, pass: Pass) -> f64 {
        if pass.kind.is_transfer() {
            let s = pass.stage as usize;
            let act = self.table.act[s];
            let share = if act > 0.0 {
                self.left_by_forward(pass.stage, pass.mb) / act
            } else {
                1.0
            };
            self.table.offload.get(s).copied().unwrap_or(f64::INFINITY) * share
        } else if pass.kind == PassKind::R && self.is_selective(pass.stage) {
            self.table.selective[pass.stage as usize][0]
        } else {
            self.table.duration(pass.kind, pass.stage)
        }
    }

    /// Duration of an overlapped pair, its forward and its backward in either order
    /// ([`StageTable::pair`]).
    #[inline]
    pub fn pair_duration(&self, a: Pass, b: Pass) -> f64 {
        if a.kind == PassKind::F {
            self.table.pair(a, b)
        } else {
            self.table.pair(b, a)
        }
    }
}

/// What a policy tells a free device to do.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Step {
    /// Run this pass, as soon as its inputs are there.
    Run(Pass),
    /// Run these two passes as one overlapped unit, as soon as the inputs of both are there.
    Pair(Pass, Pass),
    /// Nothing now: wait until this time (infinite: until an input arrives).
    Sleep(f64),
    /// The device has nothing left to run.
    Done,
}

/// What a timed policy saw while choosing at `now`: whether each candidate's inputs have
/// arrived, and the earliest later arrival, which it sleeps until when nothing can run.
#[derive(Clone, Copy, Debug)]
pub struct Alarm {
    now: f64,
    wake: f64,
}

impl Alarm {
    /// Nothing seen yet at `now`.
    pub fn new(now: f64) -> Self {
        Alarm {
            now,
            wake: f64::INFINITY,
        }
    }

    /// Whether the inputs of `pass` have arrived by now; a later arrival is kept when it is the
    /// earliest seen.
    #[inline]
    pub fn arrived(&mut self, st: &State, pass: Pass) -> bool {
        let r = st.ready(pass).unwrap_or(f64::INFINITY);
        if r > self.now + crate::params::EPS && r < self.wake {
            self.wake = r;
        }
        r <= self.now + crate::params::EPS
    }

    /// Run `choice`, or sleep until the earliest arrival seen.
    pub fn step(self, choice: Option<Pass>) -> Step {
        choice.map_or(Step::Sleep(self.wake), Step::Run)
    }
}

/// Whether the engine goes on after a pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Go on.
    Go,
    /// Stop the run here.
    Stop,
}

/// Chooses what a free device runs next.
pub trait Policy {
    /// Whether choices depend on time: devices then act in the order of their clocks.
    const TIMED: bool;
    /// Device `d` is free at `now`.
    fn next(&mut self, d: usize, now: f64, st: &State) -> Step;
    /// The engine ran `pass` on `d`; the policy updates its own bookkeeping.
    fn ran(&mut self, d: usize, pass: Pass, st: &State) -> Flow;
}

/// Rides beside the passes: may delay a pass and sees each one run (both halves of an
/// overlapped pair, with the pair's start and end).
pub trait Observer {
    /// Device `d` could start `pass` at `ready`; returns when it really starts.
    fn start(&mut self, d: usize, pass: Pass, ready: f64) -> f64 {
        let _ = (d, pass);
        ready
    }
    /// `pass` ran on `d` from `start` to `end`.
    fn ran(&mut self, d: usize, pass: Pass, start: f64, end: f64) {
        let _ = (d, pass, start, end);
    }
}

/// No observer.
impl Observer for () {}

/// The engine's state, which policies read.
#[derive(Clone, Debug)]
pub struct State<'n> {
    /// The problem.
    pub net: &'n Net,
    /// End time of each slot, NaN until produced.
    done: Vec<f64>,
    /// When each device is free (its clock).
    pub clock: Vec<f64>,
    /// Activation each device holds now, its peak and its busy time.
    pub level: Vec<f64>,
    /// Peak activation per device.
    pub peak: Vec<f64>,
    /// Busy time per device.
    pub busy: Vec<f64>,
    /// Per device, the time overlapped pairs saved: their halves' durations less theirs.
    pub saved: Vec<f64>,
    /// Per device, the time spent recomputing (R passes).
    pub recomputing: Vec<f64>,
    /// Per device, when its host links are free: `[device to host (O), host to device (L)]`.
    pub link: Vec<[f64; 2]>,
    /// Per device, the time its host links were busy (O and L), beside its computation.
    pub transferring: Vec<f64>,
    /// The passes each device ran, in order (when the engine records them).
    pub lists: Vec<Vec<Pass>>,
    /// Start and end of each pass run, per device, in order.
    pub start: Vec<Vec<f64>>,
    /// See `start`.
    pub end: Vec<Vec<f64>>,
    /// Activation over time per device: `(time, units from then on)` at every change.
    pub memory: Vec<Vec<(f64, f64)>>,
}

impl State<'_> {
    /// When `slot` was produced, if it was.
    #[inline]
    pub fn ended(&self, slot: Slot) -> Option<f64> {
        let e = self.done[self.net.index(slot)];
        (!e.is_nan()).then_some(e)
    }

    /// When every input of `pass` has arrived, or the first input not produced yet (checked in
    /// the order of [`Net::inputs`]).
    #[inline(always)]
    pub fn ready(&self, pass: Pass) -> Result<f64, Slot> {
        let net = self.net;
        let m = net.microbatches as usize;
        let (s, mb) = (pass.stage as usize, pass.mb as usize);
        let fwd = |st: usize| st * m + mb;
        let grad = |st: usize| (net.stages as usize + st) * m + mb;
        let first = s % net.lane_stages as usize == 0;
        match pass.kind {
            PassKind::F if first => Ok(0.0),
            PassKind::F => {
                let e = self.done[fwd(s - 1)];
                if e.is_nan() {
                    return Err(Slot::Fwd(pass.stage - 1, pass.mb));
                }
                Ok(e + net.lat_fwd[s])
            }
            PassKind::B | PassKind::BW => {
                let mut e = self.done[fwd(s)];
                if e.is_nan() {
                    return Err(Slot::Fwd(pass.stage, pass.mb));
                }
                if (s + 1) % net.lane_stages as usize != 0 {
                    let g = self.done[grad(s + 1)];
                    if g.is_nan() {
                        return Err(Slot::Grad(pass.stage + 1, pass.mb));
                    }
                    e = e.max(g + net.lat_grad[s]);
                }
                if net.is_recomputed(pass.stage, pass.mb) {
                    let r = self.done[(2 * net.stages as usize + s) * m + mb];
                    if r.is_nan() {
                        return Err(Slot::Rec(pass.stage, pass.mb));
                    }
                    e = e.max(r);
                } else if net.is_offloaded(pass.stage, pass.mb) {
                    e = e.max(self.loaded(pass)?);
                }
                Ok(e)
            }
            PassKind::R | PassKind::O => {
                let mut e = self.done[fwd(s)];
                if e.is_nan() {
                    return Err(Slot::Fwd(pass.stage, pass.mb));
                }
                if pass.kind == PassKind::R && net.is_offloaded(pass.stage, pass.mb) {
                    e = e.max(self.loaded(pass)?);
                }
                Ok(e)
            }
            PassKind::L => {
                let e = self.done[(3 * net.stages as usize + s) * m + mb];
                if e.is_nan() {
                    return Err(Slot::Off(pass.stage, pass.mb));
                }
                Ok(e)
            }
            PassKind::W => {
                let e = self.done[grad(s)];
                if e.is_nan() {
                    return Err(Slot::Grad(pass.stage, pass.mb));
                }
                Ok(e)
            }
        }
    }
}

impl State<'_> {
    /// When `pass`'s stage and microbatch's offloaded activation is back (its L's end).
    #[inline]
    fn loaded(&self, pass: Pass) -> Result<f64, Slot> {
        let slot = Slot::Load(pass.stage, pass.mb);
        let e = self.done[self.net.index(slot)];
        if e.is_nan() {
            Err(slot)
        } else {
            Ok(e)
        }
    }
}

/// Why a run could not finish.
#[derive(Clone, Debug, PartialEq)]
pub enum Blocked {
    /// Devices wait for inputs that never come: `(device, pass it cannot start, the input)`.
    Waiting(Vec<(usize, Pass, Slot)>),
    /// A timed policy left every unfinished device asleep with nothing to wake it.
    Asleep(Vec<usize>),
    /// The policy stopped the run.
    Stopped,
}

/// The event engine. See the [module documentation](self).
pub struct Engine<'n, O: Observer = ()> {
    st: State<'n>,
    observer: O,
    record_lists: bool,
    track_memory: bool,
    curves: bool,
    /// Devices waiting on each slot (a linked list through `wait_next`).
    wait_head: Vec<u32>,
    wait_next: Vec<u32>,
    /// The pass each waiting device waits to start.
    waiting_for: Vec<Option<(Pass, Slot)>>,
    /// Sleeping devices (timed policies), with the clock at which they went to sleep.
    asleep: Vec<Option<f64>>,
    finished: Vec<bool>,
    /// What [`Engine::rewind`] cleared, for [`Engine::restore`]: slot ends, and per device the
    /// position it rewound to with the start and end times from there.
    undo: Vec<(usize, f64)>,
    undo_times: Vec<(usize, Vec<f64>, Vec<f64>)>,
    /// Per device, what the clock and the host links were before the last rewind.
    undo_clocks: Vec<(f64, [f64; 2])>,
    /// Per device, memory changes of transfers not yet reached by its computation's clock:
    /// `(time, delta)` in the order they apply (by time, frees first), before any later
    /// change.
    pending: Vec<Vec<(f64, f64)>>,
}

impl<'n> Engine<'n, ()> {
    /// An engine at time 0 with nothing run, tracking memory.
    pub fn new(net: &'n Net) -> Self {
        Engine::with_observer(net, ())
    }
}

impl<'n, O: Observer> Engine<'n, O> {
    /// [`Engine::new`] with an observer.
    pub fn with_observer(net: &'n Net, observer: O) -> Self {
        let p = net.devices as usize;
        let slots = net.slots();
        Engine {
            st: State {
                net,
                done: vec![f64::NAN; slots],
                clock: vec![0.0; p],
                level: vec![0.0; p],
                peak: vec![0.0; p],
                busy: vec![0.0; p],
                saved: vec![0.0; p],
                recomputing: vec![0.0; p],
                link: vec![[0.0; 2]; p],
                transferring: vec![0.0; p],
                lists: vec![Vec::new(); p],
                start: vec![Vec::new(); p],
                end: vec![Vec::new(); p],
                memory: vec![vec![(0.0, 0.0)]; p],
            },
            observer,
            record_lists: false,
            track_memory: true,
            curves: true,
            wait_head: vec![NONE; slots],
            wait_next: vec![NONE; p],
            waiting_for: vec![None; p],
            asleep: vec![None; p],
            finished: vec![false; p],
            undo: Vec::new(),
            undo_times: vec![(0, Vec::new(), Vec::new()); p],
            undo_clocks: vec![(0.0, [0.0; 2]); p],
            pending: vec![Vec::new(); p],
        }
    }

    /// Records the order in which each device runs its passes (for policies that choose it).
    pub fn recording_lists(mut self) -> Self {
        self.record_lists = true;
        self
    }

    /// Stops tracking memory: levels, peaks and curves (for many runs of the same lists).
    pub fn without_memory(mut self) -> Self {
        self.track_memory = false;
        self.curves = false;
        self
    }

    /// Tracks each device's activation level and peak but draws no curves.
    pub fn without_memory_curves(mut self) -> Self {
        self.curves = false;
        self
    }

    /// The state.
    pub fn state(&self) -> &State<'n> {
        &self.st
    }

    /// The observer.
    pub fn observer(&self) -> &O {
        &self.observer
    }

    /// Reserves room for `n` passes per device.
    pub fn reserve(&mut self, n: &[usize]) {
        for (d, &k) in n.iter().enumerate() {
            self.st.start[d].reserve(k);
            self.st.end[d].reserve(k);
            if self.curves {
                self.st.memory[d].reserve(k);
            }
            if self.record_lists {
                self.st.lists[d].reserve(k);
            }
        }
    }

    /// Runs `pass` on device `d` from `start`; returns its end. The caller has checked its
    /// inputs are there. A transfer (O, L) runs on the device's host link, not its clock.
    #[inline]
    pub fn run(&mut self, d: usize, pass: Pass, start: f64) -> f64 {
        let net = self.st.net;
        let len = net.duration(pass);
        let end = start + len;
        if pass.kind.is_transfer() {
            return self.transfer(d, pass, start, end);
        }
        self.st.clock[d] = end;
        self.st.busy[d] += len;
        if pass.kind == PassKind::R {
            self.st.recomputing[d] += len;
        }
        if self.track_memory {
            let delta = net.activation_change(pass);
            self.change_memory(d, if delta > 0.0 { start } else { end }, delta);
        }
        self.record(d, pass, start, end);
        end
    }

    /// The transfer `pass` on `d`'s host link from `start` to `end` (O device to host, L host
    /// to device): the link is busy until `end`, the device's clock does not move, and its
    /// memory changes when the computation's clock reaches the transfer (an O frees at its
    /// end, an L allocates at its start).
    fn transfer(&mut self, d: usize, pass: Pass, start: f64, end: f64) -> f64 {
        let net = self.st.net;
        let dir = usize::from(pass.kind == PassKind::L);
        self.st.link[d][dir] = end;
        self.st.transferring[d] += end - start;
        if self.track_memory {
            let delta = net.activation_change(pass);
            if delta != 0.0 {
                let at = if delta > 0.0 { start } else { end };
                // Kept in the order they apply: by time, frees before allocations.
                let q = &mut self.pending[d];
                let i =
                    q.partition_point(|&(t, x)| t.total_cmp(&at).then(x.total_cmp(&delta)).is_le());
                q.insert(i, (at, delta));
            }
        }
        self.record(d, pass, start, end);
        end
    }

    /// `pass` ran on `d` from `start` to `end`: its output is there, its times and place in
    /// the device's run are kept, and the observer sees it (not a transfer: observers ride
    /// beside the computation).
    #[inline]
    fn record(&mut self, d: usize, pass: Pass, start: f64, end: f64) {
        if let Some(k) = self.st.net.output_index(pass) {
            self.st.done[k] = end;
        }
        self.st.start[d].push(start);
        self.st.end[d].push(end);
        if self.record_lists {
            self.st.lists[d].push(pass);
        }
        if !pass.kind.is_transfer() {
            self.observer.ran(d, pass, start, end);
        }
    }

    /// Applies `d`'s pending transfer changes up to `until` (frees at a time before allocations
    /// at that time).
    #[inline]
    fn settle(&mut self, d: usize, until: f64) {
        if self.pending[d].is_empty() {
            return;
        }
        let n = self.pending[d].partition_point(|&(t, _)| t <= until);
        for k in 0..n {
            let (at, delta) = self.pending[d][k];
            self.apply_memory(d, at, delta);
        }
        self.pending[d].drain(..n);
    }

    /// Applies every pending transfer change (after a run).
    fn settle_all(&mut self) {
        for d in 0..self.pending.len() {
            self.settle(d, f64::INFINITY);
        }
    }

    /// Device `d`'s activation changes by `delta` at `at`: its level, peak and curve, after
    /// the pending transfer changes due by then.
    #[inline]
    fn change_memory(&mut self, d: usize, at: f64, delta: f64) {
        if delta == 0.0 {
            return;
        }
        self.settle(d, at);
        self.apply_memory(d, at, delta);
    }

    #[inline]
    fn apply_memory(&mut self, d: usize, at: f64, delta: f64) {
        let level = self.st.level[d] + delta;
        self.st.level[d] = level;
        if level > self.st.peak[d] {
            self.st.peak[d] = level;
        }
        if self.curves {
            self.st.memory[d].push((at, level.max(0.0)));
        }
    }

    /// Runs the overlapped pair `a`, `b` on device `d` from `start`; returns its end. Both
    /// halves start and end together, the pair lasting [`Net::pair_duration`]; a forward's
    /// activation is allocated at the start, a backward's freed at the end. The caller has
    /// checked the inputs of both are there.
    pub fn run_pair(&mut self, d: usize, a: Pass, b: Pass, start: f64) -> f64 {
        let net = self.st.net;
        let len = net.pair_duration(a, b);
        let end = start + len;
        self.st.clock[d] = end;
        self.st.busy[d] += len;
        self.st.saved[d] += net.duration(a) + net.duration(b) - len;
        if self.track_memory {
            let mut changes = [a, b].map(|q| {
                let delta = net.activation_change(q);
                (if delta > 0.0 { start } else { end }, delta)
            });
            changes.sort_by(|x, y| x.0.total_cmp(&y.0));
            for (at, delta) in changes {
                self.change_memory(d, at, delta);
            }
        }
        self.record(d, a, start, end);
        self.record(d, b, start, end);
        end
    }

    /// Runs the pair `a`, `b` on `d` as soon as the device and the inputs of both allow (and
    /// the observer lets both start). `Err` names the first input not produced yet.
    pub fn run_pair_ready(&mut self, d: usize, a: Pass, b: Pass) -> Result<f64, Slot> {
        let ready = self.st.ready(a)?.max(self.st.ready(b)?);
        let t = self.st.clock[d].max(ready);
        let t = self.observer.start(d, a, t);
        let t = self.observer.start(d, b, t);
        Ok(self.run_pair(d, a, b, t))
    }

    /// Runs what a policy chose: one pass or a pair. `Err` names the first input missing.
    #[inline]
    fn run_step(&mut self, d: usize, a: Pass, b: Option<Pass>) -> Result<f64, Slot> {
        match b {
            None => self.run_ready(d, a),
            Some(b) => self.run_pair_ready(d, a, b),
        }
    }

    /// Runs `pass` on `d` as soon as the device and the pass's inputs allow (and the observer
    /// lets it). `Err` names the first input not produced yet.
    #[inline]
    pub fn run_ready(&mut self, d: usize, pass: Pass) -> Result<f64, Slot> {
        let ready = self.st.ready(pass)?;
        let t = self.st.clock[d].max(ready);
        if pass.kind.is_transfer() {
            // Issued when the device reaches it in its list, queued on its link.
            let dir = usize::from(pass.kind == PassKind::L);
            return Ok(self.run(d, pass, t.max(self.st.link[d][dir])));
        }
        let t = self.observer.start(d, pass, t);
        Ok(self.run(d, pass, t))
    }

    /// Runs the policy until every device is done.
    pub fn drive<P: Policy>(&mut self, policy: &mut P) -> Result<(), Blocked> {
        let p = self.st.clock.len();
        if P::TIMED {
            self.drive_timed(policy, p)
        } else {
            let stack: Vec<u32> = (0..p as u32).rev().collect();
            self.drive_untimed(policy, stack)
        }
    }

    fn drive_untimed<P: Policy>(
        &mut self,
        policy: &mut P,
        mut stack: Vec<u32>,
    ) -> Result<(), Blocked> {
        while let Some(d) = stack.pop() {
            let d = d as usize;
            loop {
                let (pass, second) = match policy.next(d, self.st.clock[d], &self.st) {
                    Step::Run(pass) => (pass, None),
                    Step::Pair(a, b) => (a, Some(b)),
                    Step::Done => {
                        self.finished[d] = true;
                        break;
                    }
                    Step::Sleep(_) => break,
                };
                match self.run_step(d, pass, second) {
                    Err(slot) => {
                        let k = self.st.net.index(slot);
                        self.wait_next[d] = self.wait_head[k];
                        self.wait_head[k] = d as u32;
                        self.waiting_for[d] = Some((pass, slot));
                        break;
                    }
                    Ok(_) => {
                        for q in std::iter::once(pass).chain(second) {
                            if policy.ran(d, q, &self.st) == Flow::Stop {
                                return Err(Blocked::Stopped);
                            }
                            if let Some(k) = self.st.net.output_index(q) {
                                let mut w = std::mem::replace(&mut self.wait_head[k], NONE);
                                while w != NONE {
                                    stack.push(w);
                                    w = self.wait_next[w as usize];
                                }
                            }
                        }
                    }
                }
            }
        }
        let waits: Vec<(usize, Pass, Slot)> = (0..self.finished.len())
            .filter(|&d| !self.finished[d])
            .filter_map(|d| self.waiting_for[d].map(|(pass, slot)| (d, pass, slot)))
            .collect();
        if self.finished.iter().all(|&f| f) {
            self.settle_all();
            Ok(())
        } else {
            Err(Blocked::Waiting(waits))
        }
    }

    fn drive_timed<P: Policy>(&mut self, policy: &mut P, p: usize) -> Result<(), Blocked> {
        // The device with the earliest clock acts next (ties: the lowest index), kept in a heap
        // where every change of a clock pushes a new entry and outdated ones are skipped.
        let key = heap_key;
        let mut queue: BinaryHeap<Reverse<(u64, usize)>> = (0..p)
            .map(|d| Reverse((key(self.st.clock[d]), d)))
            .collect();
        while let Some(Reverse((k, d))) = queue.pop() {
            if self.finished[d] || k != key(self.st.clock[d]) {
                continue;
            }
            let now = self.st.clock[d];
            if now == f64::INFINITY {
                let asleep = (0..p).filter(|&e| !self.finished[e]).collect();
                return Err(Blocked::Asleep(asleep));
            }
            self.asleep[d] = None;
            let (pass, second) = match policy.next(d, now, &self.st) {
                Step::Done => {
                    self.finished[d] = true;
                    self.settle(d, f64::INFINITY);
                    continue;
                }
                Step::Sleep(t) => {
                    self.sleep(d, now, t, &mut queue);
                    continue;
                }
                Step::Run(pass) => (pass, None),
                Step::Pair(a, b) => (a, Some(b)),
            };
            let Ok(end) = self.run_step(d, pass, second) else {
                self.sleep(d, now, f64::INFINITY, &mut queue);
                continue;
            };
            for q in std::iter::once(pass).chain(second) {
                self.after_timed(policy, d, q, end, &mut queue)?;
            }
        }
        Ok(())
    }

    /// After a timed run of `pass` on `d` ending at `end`: the policy's bookkeeping, the
    /// device's next turn, and waking the device that consumes its output on another stage.
    fn after_timed<P: Policy>(
        &mut self,
        policy: &mut P,
        d: usize,
        pass: Pass,
        end: f64,
        queue: &mut BinaryHeap<Reverse<(u64, usize)>>,
    ) -> Result<(), Blocked> {
        if policy.ran(d, pass, &self.st) == Flow::Stop {
            return Err(Blocked::Stopped);
        }
        queue.push(Reverse((heap_key(end), d)));
        let net = self.st.net;
        if let Some((c, lat)) = net.output(pass).and_then(|s| net.consumer(s)) {
            let c = c as usize;
            if let Some(base) = self.asleep[c] {
                let arrival = if c != d { end + lat } else { end };
                let woken = self.st.clock[c].min(base.max(arrival));
                if woken != self.st.clock[c] {
                    self.st.clock[c] = woken;
                    queue.push(Reverse((heap_key(woken), c)));
                }
            }
        }
        Ok(())
    }

    fn sleep(
        &mut self,
        d: usize,
        now: f64,
        until: f64,
        queue: &mut BinaryHeap<Reverse<(u64, usize)>>,
    ) {
        self.st.clock[d] = until;
        self.asleep[d] = Some(now);
        queue.push(Reverse((heap_key(until), d)));
    }

    /// Forgets what each device `d` ran from position `from[d]` of its run on (`lists` are the
    /// passes it ran), so that a fixed-list policy can run them again from there; clocks go
    /// back to the end of the pass before. What is cleared is kept until [`Engine::restore`]
    /// or the next rewind. Busy times, peaks and curves are not rewound: use an engine
    /// [`without_memory`](Engine::without_memory).
    pub fn rewind(&mut self, lists: &[Vec<Pass>], from: &[usize]) {
        self.undo.clear();
        let net = self.st.net;
        for (d, list) in lists.iter().enumerate() {
            let f = from[d].min(list.len());
            for &pass in &list[f..] {
                if let Some(slot) = net.output(pass) {
                    let k = net.index(slot);
                    self.undo.push((k, self.st.done[k]));
                    self.st.done[k] = f64::NAN;
                    self.wait_head[k] = NONE;
                }
            }
            let (at, start, end) = &mut self.undo_times[d];
            *at = f;
            start.clear();
            start.extend(self.st.start[d].drain(f..));
            end.clear();
            end.extend(self.st.end[d].drain(f..));
            self.undo_clocks[d] = (self.st.clock[d], self.st.link[d]);
            // The clock is the end of the last computation before `f`, each link that of its
            // last transfer.
            let last_end = |keep: &dyn Fn(PassKind) -> bool| {
                (0..f)
                    .rev()
                    .find(|&j| keep(list[j].kind))
                    .map_or(0.0, |j| self.st.end[d][j])
            };
            let clock = last_end(&|k: PassKind| !k.is_transfer());
            let link = [
                last_end(&|k: PassKind| k == PassKind::O),
                last_end(&|k: PassKind| k == PassKind::L),
            ];
            self.st.clock[d] = clock;
            self.st.link[d] = link;
            self.finished[d] = false;
            self.waiting_for[d] = None;
        }
    }

    /// Puts back what the last [`Engine::rewind`] cleared, undoing any run since.
    pub fn restore(&mut self) {
        for &(k, e) in &self.undo {
            self.st.done[k] = e;
            self.wait_head[k] = NONE;
        }
        for (d, (at, start, end)) in self.undo_times.iter().enumerate() {
            self.st.start[d].truncate(*at);
            self.st.start[d].extend_from_slice(start);
            self.st.end[d].truncate(*at);
            self.st.end[d].extend_from_slice(end);
            (self.st.clock[d], self.st.link[d]) = self.undo_clocks[d];
        }
        self.finished.iter_mut().for_each(|f| *f = true);
    }

    /// Runs a fixed-list policy again after a [`Engine::rewind`], starting with the devices
    /// that have passes left.
    pub fn resume<P: Policy>(&mut self, policy: &mut P) -> Result<(), Blocked> {
        let p = self.st.clock.len();
        let stack: Vec<u32> = (0..p as u32).rev().collect();
        self.drive_untimed(policy, stack)
    }

    /// The result of a finished run (`p2p_transfers` from the schedule).
    pub fn result(self, p2p_transfers: u64) -> SimResult {
        let st = self.st;
        let makespan = st
            .end
            .iter()
            .filter_map(|e| e.last().copied())
            .fold(0.0, f64::max);
        SimResult {
            bubble_rate: bubble_rate(&st.busy, makespan),
            start: st.start,
            end: st.end,
            makespan,
            busy: st.busy,
            overlap_saved: nonzero_or_empty(st.saved),
            recompute_time: nonzero_or_empty(st.recomputing),
            transfer_time: nonzero_or_empty(st.transferring),
            peak_activation: st.peak,
            memory: st.memory,
            p2p_transfers,
        }
    }

    /// The passes each device ran, in order (see [`Engine::recording_lists`]).
    pub fn into_lists(self) -> Vec<Vec<Pass>> {
        self.st.lists
    }

    /// The state and the observer, after a run.
    pub fn into_parts(self) -> (State<'n>, O) {
        (self.st, self.observer)
    }
}

/// A clock as a heap key: a clock is never negative, so its bits order like its value (infinity
/// last).
pub(crate) fn heap_key(x: f64) -> u64 {
    if x > 0.0 {
        x.to_bits()
    } else {
        0
    }
}

/// Runs fixed device lists in order (borrowed or owned), overlapped pairs as one unit.
pub struct InOrder<L> {
    /// The lists.
    pub lists: L,
    /// Next position of each device.
    pub ptr: Vec<usize>,
    /// Per device, whether the pass at each position starts an overlapped pair.
    pub pair_starts: Option<Vec<Vec<bool>>>,
}

impl<L: AsRef<[Vec<Pass>]>> InOrder<L> {
    /// From the start of every list, without pairs.
    pub fn new(lists: L) -> Self {
        let ptr = vec![0; lists.as_ref().len()];
        InOrder {
            lists,
            ptr,
            pair_starts: None,
        }
    }

    /// From the start of every list, running `pairs` ([`Schedule::pairs`]) as units.
    pub fn with_pairs(lists: L, pairs: &[[Pass; 2]]) -> Self {
        let starts = crate::ir::pair_starts(lists.as_ref(), pairs);
        InOrder {
            pair_starts: starts,
            ..InOrder::new(lists)
        }
    }
}

impl<'s> InOrder<&'s [Vec<Pass>]> {
    /// A schedule's lists and pairs.
    pub fn of(s: &'s Schedule) -> Self {
        InOrder::with_pairs(s.lists.as_slice(), &s.pairs)
    }
}

impl<L: AsRef<[Vec<Pass>]>> Policy for InOrder<L> {
    const TIMED: bool = false;
    #[inline]
    fn next(&mut self, d: usize, _: f64, _: &State) -> Step {
        let i = self.ptr[d];
        let list = &self.lists.as_ref()[d];
        match list.get(i) {
            Some(&pass) => match &self.pair_starts {
                Some(starts) if starts[d][i] => Step::Pair(pass, list[i + 1]),
                _ => Step::Run(pass),
            },
            None => Step::Done,
        }
    }
    #[inline]
    fn ran(&mut self, d: usize, _: Pass, _: &State) -> Flow {
        self.ptr[d] += 1;
        Flow::Go
    }
}

/// `v` when some entry is not 0, else empty (a result's per-device figures that most schedules
/// do not have).
pub(crate) fn nonzero_or_empty(v: Vec<f64>) -> Vec<f64> {
    if v.iter().any(|&x| x != 0.0) {
        v
    } else {
        Vec::new()
    }
}

/// `1 - Σ busy / (p · makespan)`: the idle share of the devices over the step.
pub fn bubble_rate(busy: &[f64], makespan: f64) -> f64 {
    if makespan > 0.0 {
        1.0 - busy.iter().sum::<f64>() / (busy.len() as f64 * makespan)
    } else {
        0.0
    }
}

/// The simulator's figures for one schedule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SimResult {
    /// Start time of each pass, per device, in list order.
    pub start: Vec<Vec<f64>>,
    /// End time of each pass, per device, in list order.
    pub end: Vec<Vec<f64>>,
    /// Time from the first start to the last end.
    pub makespan: f64,
    /// Busy time per device.
    pub busy: Vec<f64>,
    /// Per device, the time its overlapped pairs saved over running their halves in turn
    /// (empty when the schedule has no pairs, or they saved nothing).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overlap_saved: Vec<f64>,
    /// Per device, the time its recompute passes (R) took, part of its busy time (empty
    /// without R passes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recompute_time: Vec<f64>,
    /// Per device, the time its host links were busy offloading and loading back (O and L,
    /// beside its computation, not part of its busy time; empty without them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transfer_time: Vec<f64>,
    /// `1 - Σ busy / (p · makespan)`.
    pub bubble_rate: f64,
    /// Peak activation per device, in units.
    pub peak_activation: Vec<f64>,
    /// Activation over time per device: `(time, units from then on)` at every change.
    pub memory: Vec<Vec<(f64, f64)>>,
    /// Cross-device transfers per step.
    pub p2p_transfers: u64,
}

impl SimResult {
    /// Each device's span: its first pass's start to its last pass's end (0 without passes).
    pub fn spans(&self) -> Vec<f64> {
        self.start
            .iter()
            .zip(&self.end)
            .map(|(st, en)| match (st.first(), en.last()) {
                (Some(a), Some(b)) => (b - a).max(0.0),
                _ => 0.0,
            })
            .collect()
    }

    /// Largest per-device peak.
    pub fn max_peak(&self) -> f64 {
        self.peak_activation.iter().cloned().fold(0.0, f64::max)
    }

    /// Whether every device's peak stays within its limit (units, to the engine's tolerance).
    pub fn fits(&self, limits: &[f64]) -> bool {
        let eps = crate::params::EPS;
        self.peak_activation
            .iter()
            .zip(limits)
            .all(|(pk, l)| *pk <= l + eps)
    }
}

/// Simulates a schedule: each device runs its list in order, every pass as early as its inputs
/// and the device allow. The lists are checked first ([`crate::validate()`] explains a block).
pub fn simulate(s: &Schedule, costs: &StageCosts) -> Result<SimResult, Error> {
    crate::validate::structure(s)?;
    let net = Net::of(s, costs)?;
    simulate_net(s, &net).map_err(|e| match crate::validate::validate(s) {
        Err(v) => v.into(),
        Ok(()) => e,
    })
}

/// Simulates a schedule whose structure is checked, on its problem `net`.
pub fn simulate_net(s: &Schedule, net: &Net) -> Result<SimResult, Error> {
    let mut e = Engine::new(net);
    e.reserve(&s.lists.iter().map(Vec::len).collect::<Vec<_>>());
    match e.drive(&mut InOrder::of(s)) {
        Ok(()) => Ok(e.result(s.p2p_transfers())),
        Err(_) => Err(Error::config(
            "the schedule's lists block; validate it first",
        )),
    }
}

/// The positions `(device, i)` of one critical path of a simulated schedule, last pass first:
/// from the pass that ends last, back through whatever held each pass back (the device's
/// previous pass, or the input that arrived last).
pub fn critical_path(s: &Schedule, net: &Net, r: &SimResult) -> Vec<(usize, usize)> {
    let mut pos = vec![(0, 0); net.slots()];
    for (d, list) in s.lists.iter().enumerate() {
        for (i, &q) in list.iter().enumerate() {
            if let Some(slot) = net.output(q) {
                pos[net.index(slot)] = (d, i);
            }
        }
    }
    let starts = s.pair_starts();
    let mut out = Vec::new();
    let Some(mut at) = (0..s.lists.len())
        .filter(|&d| !s.lists[d].is_empty())
        .map(|d| (d, s.lists[d].len() - 1))
        .max_by(|a, b| r.end[a.0][a.1].total_cmp(&r.end[b.0][b.1]))
    else {
        return out;
    };
    loop {
        out.push(at);
        let (d, i) = at;
        let start = r.start[d][i];
        // The second half of an overlapped pair: the pair is the first half's entry too.
        let paired = |j: usize| j > 0 && starts.as_ref().is_some_and(|v| v[d][j - 1]);
        let first = if paired(i) { i - 1 } else { i };
        // What ran before it on its resource: the device's previous computation, or its link's
        // previous transfer of the same direction (a transfer is also issued when the
        // computation before it ends).
        let kind = s.lists[d][i].kind;
        let list = &s.lists[d];
        let last_before =
            |keep: &dyn Fn(PassKind) -> bool| (0..first).rev().find(|&j| keep(list[j].kind));
        let before = [
            last_before(&|k: PassKind| !k.is_transfer()),
            kind.is_transfer()
                .then(|| last_before(&|k: PassKind| k == kind))
                .flatten(),
        ];
        if let Some(j) = before
            .into_iter()
            .flatten()
            .find(|&j| (start - r.end[d][j]).abs() <= crate::params::EPS)
        {
            at = (d, j);
            continue;
        }
        let halves = if first < i {
            &s.lists[d][first..=i]
        } else {
            &s.lists[d][i..=i]
        };
        let from = halves.iter().find_map(|&pass| {
            net.inputs(pass).into_iter().flatten().find_map(|slot| {
                let (dd, di) = pos[net.index(slot)];
                ((r.end[dd][di] + net.latency(slot, pass) - start).abs() <= crate::params::EPS)
                    .then_some((dd, di))
            })
        });
        match from {
            Some(x) => at = x,
            None => return out,
        }
    }
}
