//! DualPipe and DualPipeV: DeepSeek's bidirectional schedule (the DeepSeek-V3 report) and its
//! V-shape "cut in half" (the cut-in-half construction is Sea AI Lab's).
//!
//! - **DualPipeV** on `n` devices: each holds two stages of one V, stage `d` (phase 0, the V's
//!   way down) and stage `2n − 1 − d` (phase 1, the way back); every microbatch enters and
//!   leaves at device 0; at least `2n` microbatches.
//! - **DualPipe** on `p = 2n` devices (even): the [bidirectional](crate::ir) placement, two
//!   pipelines of `p` stages in opposite directions, so each device holds two copies' worth of
//!   parameters (its chunk of each direction); microbatches `0..m/2` enter at device 0, `m/2..m`
//!   at device `p − 1`; at least `2p` microbatches, an even count. Device `d` runs the same
//!   phases as DualPipeV's device `r = min(d, p − 1 − d)` with `m/2` microbatches per phase:
//!   its phase 0 is the direction it is early in (device 0's way for the first half of the
//!   devices, the other way for the second half), its phase 1 the other.
//!
//! Each device runs eight named phases, as the authors' `step()` does (`r` the device, `m` the
//! microbatches of each phase, at least `2n`):
//!
//! 1. `warm_forward`: `2(n − r − 1)` forwards of phase 0;
//! 2. `fill`: `r + 1` pairs of forwards, phase 0 then phase 1;
//! 3. `early_split`: `n − r − 1` times: phase 1's input backward, its weight backward at once,
//!    a phase-1 forward (zero-bubble style, to reach the steady state without a gap);
//! 4. `steady`: `m − 2n + r + 1` times: a phase-0 forward with a phase-1 backward, then a
//!    phase-1 forward with a phase-0 backward: the overlapped pairs of DualPipe
//!    ([`Schedule::pairs`]; the authors run the last device's first pair in turn, which the
//!    costs of a pair can make shorter);
//! 5. `drain_forward`: `n − r − 1` times: a phase-1 backward, then a phase-1 forward with a
//!    phase-0 backward;
//! 6. `drain_backward`: `r + 1` times: a phase-1 backward then a phase-0 backward, each fused
//!    until half-way, then split (its weight backward deferred);
//! 7. `drain_split`: `n − r − 1` times: a deferred weight backward, then a split phase-0
//!    backward;
//! 8. `flush_weights`: the remaining deferred weight backwards, oldest first.
//!
//! Backwards are fused (BW) except where a phase says split: then the input backward (B) runs
//! and its weight backward (W) joins a first-in-first-out queue that later phases drain, as the
//! authors' `WeightGradStore` does.

use std::collections::VecDeque;

use crate::error::{Error, Param};
use crate::ir::{Pass, Placement, Schedule};
use crate::params::Params;

/// One device's order under construction: the stage and first microbatch of each phase, the
/// next microbatch of each phase's forward and backward, and the deferred weight backwards.
struct Device {
    stage: [u32; 2],
    base: [u32; 2],
    next_f: [u32; 2],
    next_b: [u32; 2],
    deferred: VecDeque<Pass>,
    list: Vec<Pass>,
    pairs: Vec<[Pass; 2]>,
}

impl Device {
    fn new(stage: [u32; 2], base: [u32; 2]) -> Self {
        Device {
            stage,
            base,
            next_f: [0; 2],
            next_b: [0; 2],
            deferred: VecDeque::new(),
            list: Vec::new(),
            pairs: Vec::new(),
        }
    }

    fn forward(&mut self, phase: usize) {
        let mb = self.base[phase] + self.next_f[phase];
        self.next_f[phase] += 1;
        self.list.push(Pass::f(self.stage[phase], mb));
    }

    /// A backward of `phase`: fused, or split with its weight backward deferred.
    fn backward(&mut self, phase: usize, split: bool) {
        let mb = self.base[phase] + self.next_b[phase];
        self.next_b[phase] += 1;
        let stage = self.stage[phase];
        if split {
            self.list.push(Pass::b(stage, mb));
            self.deferred.push_back(Pass::w(stage, mb));
        } else {
            self.list.push(Pass::bw(stage, mb));
        }
    }

    /// The oldest deferred weight backward.
    fn weight(&mut self) {
        if let Some(w) = self.deferred.pop_front() {
            self.list.push(w);
        }
    }

    /// One overlapped pair of DualPipe: a forward of `fwd` and a fused backward of `bwd`, run as
    /// one unit.
    fn pair(&mut self, fwd: usize, bwd: usize) {
        self.forward(fwd);
        self.backward(bwd, false);
        let n = self.list.len();
        self.pairs.push([self.list[n - 2], self.list[n - 1]]);
    }

    /// A forward of `fwd` then a fused backward of `bwd`, in turn.
    fn in_turn(&mut self, fwd: usize, bwd: usize) {
        self.forward(fwd);
        self.backward(bwd, false);
    }
}

/// DualPipeV on `p` devices (`2p` stages, V-shape) for `m ≥ 2p` microbatches.
pub fn dualpipev(prm: &Params) -> Result<Schedule, Error> {
    let (n, m) = (prm.devices(), prm.microbatches());
    if m < 2 * n {
        return Err(Error::fix(
            format!(
                "dualpipev needs at least twice as many microbatches as devices (m={m}, p={n}); use {} microbatches",
                2 * n
            ),
            Param::Microbatches,
            (2 * n).to_string(),
        ));
    }
    let mut s = Schedule::empty("dualpipev", n, m, Placement::VShape)?;
    for r in 0..n {
        let d = step(Device::new([r, 2 * n - 1 - r], [0, 0]), r, n, m);
        s.lists[r as usize] = d.list;
        s.pairs.extend(d.pairs);
    }
    Ok(s)
}

/// DualPipe on `p` devices (even; the bidirectional placement, `2p` stages) for `m ≥ 2p`
/// microbatches (even).
pub fn dualpipe(prm: &Params) -> Result<Schedule, Error> {
    let (p, m) = (prm.devices(), prm.microbatches());
    if p % 2 != 0 {
        return Err(Error::fix(
            format!("dualpipe pairs device d with device p−1−d, so it needs an even device count (p={p}); use dualpipev for an odd count"),
            Param::Devices,
            (p + 1).to_string(),
        ));
    }
    if m < 2 * p || m % 2 != 0 {
        let want = (2 * p).max(m + m % 2);
        return Err(Error::fix(
            format!(
                "dualpipe sends half the microbatches each way and needs at least twice as many as devices, an even count (m={m}, p={p}); use {want} microbatches"
            ),
            Param::Microbatches,
            want.to_string(),
        ));
    }
    let (n, half) = (p / 2, m / 2);
    let mut s = Schedule::empty("dualpipe", p, m, Placement::Bidirectional)?;
    for d in 0..p {
        // Lane 0 (device 0 → p − 1) holds stage d here; lane 1 (p − 1 → 0) stage 2p − 1 − d.
        let lanes = [(d, 0), (2 * p - 1 - d, half)];
        let (early, late) = if d < n {
            (lanes[0], lanes[1])
        } else {
            (lanes[1], lanes[0])
        };
        let dev = Device::new([early.0, late.0], [early.1, late.1]);
        let r = d.min(p - 1 - d);
        let dev = step(dev, r, n, half);
        s.lists[d as usize] = dev.list;
        s.pairs.extend(dev.pairs);
    }
    Ok(s)
}

/// The authors' eight phases for the device at distance `r` from its phase-0 end, of `n`
/// devices per V, `m` microbatches per phase.
fn step(mut d: Device, r: u32, n: u32, m: u32) -> Device {
    {
        // 1. warm_forward
        for _ in 0..2 * (n - r - 1) {
            d.forward(0);
        }
        // 2. fill
        for _ in 0..=r {
            d.forward(0);
            d.forward(1);
        }
        // 3. early_split
        for _ in 0..n - r - 1 {
            d.backward(1, true);
            d.weight();
            d.forward(1);
        }
        // 4. steady (the last device runs its first forward and backward in turn: its
        // backward waits for that forward, on the same device, one stage on)
        for i in 0..m - 2 * n + r + 1 {
            if i == 0 && r == n - 1 {
                d.in_turn(0, 1);
            } else {
                d.pair(0, 1);
            }
            d.pair(1, 0);
        }
        // 5. drain_forward
        for _ in 0..n - r - 1 {
            d.backward(1, false);
            d.pair(1, 0);
        }
        // 6. drain_backward: split from half-way (odd devices from phase 1, even from phase 0)
        let rounds = r + 1;
        let half = rounds / 2;
        let mut split = false;
        for i in 0..rounds {
            if i == half && r % 2 == 1 {
                split = true;
            }
            d.backward(1, split);
            if i == half && r.is_multiple_of(2) {
                split = true;
            }
            d.backward(0, split);
        }
        // 7. drain_split
        for _ in 0..n - r - 1 {
            d.weight();
            d.backward(0, true);
        }
        // 8. flush_weights
        while !d.deferred.is_empty() {
            d.weight();
        }
        debug_assert!(d.next_f == [m, m] && d.next_b == [m, m]);
    }
    d
}
