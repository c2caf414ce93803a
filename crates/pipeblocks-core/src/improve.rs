//! Schedule repairs: moving passes into gaps ([`reorder`]), swapping neighbours on the critical
//! path ([`polish`]), hill climbing over device orders ([`climb`]) and overlapping adjacent
//! forwards and backwards in pairs ([`pair_up`]).
//!
//! A generator builds a schedule from a rule (a building block, a list scheduler's priorities,
//! rounds); these mends then take time the rule left unused. Each keeps a result only when the
//! engine confirms that every device stays within its memory limit and the step gets shorter,
//! so none ever makes a schedule worse. All of them run on the [event engine](crate::engine):
//! [`reorder`] as a timed policy choosing from a window of each device's list, [`polish`] as
//! repeated simulations, [`climb`] as fixed lists simulated again from the moved pass on.

use crate::engine::{
    critical_path, simulate_net, Alarm, Blocked, Engine, Flow, InOrder, Net, Policy, SimResult,
    State, Step,
};
use crate::error::Error;
use crate::ir::{Pass, PassKind, Schedule};
use crate::params::{StageCosts, EPS};
use crate::validate::validate;

/// Each device's memory limit for a mend of a schedule whose simulation is `r`: `peak_limit`
/// (default: the peak itself), never below the device's own peak, with the tolerance added.
/// `what` names the mend in the error when the limits do not list every device.
pub(crate) fn mend_limits(
    what: &str,
    r: &SimResult,
    peak_limit: Option<&[f64]>,
) -> Result<Vec<f64>, Error> {
    let devices = r.peak_activation.len();
    if peak_limit.is_some_and(|l| l.len() != devices) {
        return Err(Error::config(format!(
            "{what}: the peak limits must list {devices} devices"
        )));
    }
    Ok(r.peak_activation
        .iter()
        .enumerate()
        .map(|(d, &pk)| peak_limit.map_or(pk, |l| l[d]).max(pk) + EPS)
        .collect())
}

/// Whether every device's simulated peak stays within its limit (the limits carry the tolerance).
fn within(r: &SimResult, limits: &[f64]) -> bool {
    r.peak_activation.iter().zip(limits).all(|(pk, l)| pk <= l)
}

/// Whether the cool-down Ws of the last microbatches may wait for a ready B or F behind them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LateWs {
    Wait,
    InOrder,
}

/// The look-ahead windows [`reorder`] tries, in order.
const WINDOWS: [(usize, LateWs); 4] = [
    (3, LateWs::Wait),
    (4, LateWs::InOrder),
    (4, LateWs::Wait),
    (16, LateWs::InOrder),
];

/// Moves warm-up and cool-down passes into earlier free time.
///
/// The lists run in time order as in the simulator, except where a device would wait: there a
/// later pass of one of the first or last `edge` microbatches (default `p`: the warm-up and the
/// cool-down, where the repeats of a block are incomplete) runs instead when its inputs are
/// there and its activation fits under the device's `peak_limit` (default: its peak in the
/// squeezed schedule; never below that).
/// In the cool-down (no forward left on the device) a ready backward goes ahead of the pending
/// Ws, which fill the waits, as in ZB-H1. Several look-ahead windows are tried; a result is kept
/// only when the simulator confirms that the peak stays within the limit and the makespan
/// shrinks. Returns the schedule and its simulation.
pub fn reorder(
    mut s: Schedule,
    costs: &StageCosts,
    peak_limit: Option<&[f64]>,
    edge: Option<u32>,
) -> Result<(Schedule, SimResult), Error> {
    if !s.pairs.is_empty() {
        return as_it_is(s, costs);
    }
    validate(&s)?;
    let net = Net::of(&s, costs)?;
    let mut r = simulate_net(&s, &net)?;
    let limits = mend_limits("reorder", &r, peak_limit)?;
    let edge = edge.unwrap_or(s.devices);
    let base = s.clone();
    for (window, late_ws) in WINDOWS {
        let mut policy = FillGaps::new(&base, &limits, edge, window, late_ws);
        let mut e = Engine::new(&net).recording_lists().without_memory_curves();
        e.reserve(&base.lists.iter().map(Vec::len).collect::<Vec<_>>());
        if e.drive(&mut policy).is_err() {
            continue;
        }
        let mut c = base.clone();
        c.lists = e.into_lists();
        // The simulator checks the new lists' completeness and finds any block itself.
        let Ok(cr) = crate::engine::simulate(&c, costs) else {
            continue;
        };
        if within(&cr, &limits) && cr.makespan < r.makespan - EPS {
            s = c;
            r = cr;
        }
    }
    Ok((s, r))
}

/// [`reorder`]'s policy: each device's list in order, but where the next pass must wait, a
/// later pass of an edge microbatch within the window whose inputs are there and that fits.
struct FillGaps<'a> {
    s: &'a Schedule,
    limit: &'a [f64],
    edge: u32,
    window: usize,
    late_ws: LateWs,
    done: Vec<Vec<bool>>,
    /// First position not run yet, per device.
    head: Vec<usize>,
    /// Position after the last F of each list: the cool-down starts there.
    tail: Vec<usize>,
    /// The position each device chose last.
    chosen: Vec<usize>,
}

impl<'a> FillGaps<'a> {
    fn new(s: &'a Schedule, limit: &'a [f64], edge: u32, window: usize, late_ws: LateWs) -> Self {
        FillGaps {
            s,
            limit,
            edge,
            window,
            late_ws,
            done: s.lists.iter().map(|l| vec![false; l.len()]).collect(),
            head: vec![0; s.lists.len()],
            tail: s
                .lists
                .iter()
                .map(|l| {
                    l.iter()
                        .rposition(|q| q.kind == PassKind::F)
                        .map_or(0, |i| i + 1)
                })
                .collect(),
            chosen: vec![0; s.lists.len()],
        }
    }

    fn choose(&self, d: usize, st: &State, alarm: &mut Alarm) -> Option<usize> {
        let list = &self.s.lists[d];
        let m = self.s.microbatches;
        let in_edge = |mb: u32| mb < self.edge || mb + self.edge >= m;
        // Cool-down (no forward left): a ready backward goes first, Ws fill the waits.
        if self.head[d] >= self.tail[d] {
            if let Some(i) = (self.head[d]..list.len())
                .find(|&i| !self.done[d][i] && list[i].kind.is_input_backward())
            {
                if alarm.arrived(st, list[i]) {
                    return Some(i);
                }
            }
        }
        let mut seen = 0;
        // A W of the cool-down that could wait for a ready B or F behind it.
        let mut deferred = None;
        for (i, &pass) in list.iter().enumerate().skip(self.head[d]) {
            if seen >= self.window {
                break;
            }
            if self.done[d][i] {
                continue;
            }
            seen += 1;
            let ok = alarm.arrived(st, pass);
            let fits = pass.kind != PassKind::F
                || st.level[d] + st.net.table.act[pass.stage as usize] <= self.limit[d] + EPS;
            if ok
                && self.late_ws == LateWs::Wait
                && pass.kind == PassKind::W
                && pass.mb + self.edge >= m
            {
                deferred = deferred.or(Some(i));
            } else if i == self.head[d] || deferred == Some(self.head[d]) && i > self.head[d] {
                if ok && (i == self.head[d] || fits) {
                    return Some(i);
                }
            } else if ok && in_edge(pass.mb) && fits {
                return Some(i);
            }
        }
        deferred
    }
}

impl Policy for FillGaps<'_> {
    const TIMED: bool = true;

    fn next(&mut self, d: usize, now: f64, st: &State) -> Step {
        if self.head[d] >= self.s.lists[d].len() {
            return Step::Done;
        }
        let mut alarm = Alarm::new(now);
        let choice = self.choose(d, st, &mut alarm).map(|i| {
            self.chosen[d] = i;
            self.s.lists[d][i]
        });
        alarm.step(choice)
    }

    fn ran(&mut self, d: usize, _: Pass, _: &State) -> Flow {
        self.done[d][self.chosen[d]] = true;
        while self.head[d] < self.done[d].len() && self.done[d][self.head[d]] {
            self.head[d] += 1;
        }
        Flow::Go
    }
}

/// Local search on the critical path: swaps two neighbouring passes of a device list when the
/// second one started the moment the first ended (the device, not an input, held it back) and
/// the swap shortens the step, or keeps it and lets the passes end earlier in total; every swap
/// is confirmed by the simulator, including the peak against `peak_limit` (per device). Stops
/// when no swap helps or after `max_evals` simulations. Returns the schedule and its simulation.
pub fn polish(
    mut s: Schedule,
    costs: &StageCosts,
    peak_limit: &[f64],
    max_evals: usize,
) -> Result<(Schedule, SimResult), Error> {
    if !s.pairs.is_empty() {
        return as_it_is(s, costs);
    }
    // A swap keeps the set of passes, so one problem serves every simulation; a swap that breaks
    // an order on the device shows up as a blocked simulation and is undone.
    validate(&s)?;
    let net = Net::of(&s, costs)?;
    let mut r = simulate_net(&s, &net)?;
    if peak_limit.len() != s.devices as usize {
        return Err(Error::config(format!(
            "polish: the peak limits must list {} devices",
            s.devices
        )));
    }
    let limits: Vec<f64> = peak_limit.iter().map(|l| l + EPS).collect();
    let score = |r: &SimResult| {
        let ends: f64 = r.end.iter().flatten().sum();
        (r.makespan, ends)
    };
    let mut best = score(&r);
    let mut evals = 0;
    // Try the critical pairs first (the device held the critical path back there); only when
    // none of them helps, every pair where the device held a pass back.
    let mut critical_only = true;
    loop {
        let pairs: Vec<(usize, usize)> = if critical_only {
            let path = critical_path(&s, &net, &r);
            path.windows(2)
                .filter(|w| w[0].0 == w[1].0 && w[1].1 + 1 == w[0].1)
                .map(|w| w[0])
                .collect()
        } else {
            (0..s.devices as usize)
                .flat_map(|d| (1..s.lists[d].len()).map(move |i| (d, i)))
                .filter(|&(d, i)| (r.start[d][i] - r.end[d][i - 1]).abs() <= EPS)
                .collect()
        };
        let mut improved = false;
        for (d, i) in pairs {
            if evals >= max_evals {
                return Ok((s, r));
            }
            s.lists[d].swap(i - 1, i);
            evals += 1;
            let better = match simulate_net(&s, &net) {
                Ok(c) if within(&c, &limits) => {
                    let k = score(&c);
                    let gain = k.0 < best.0 - EPS || (k.0 < best.0 + EPS && k.1 < best.1 - EPS);
                    gain.then_some((c, k))
                }
                _ => None,
            };
            match better {
                Some((c, k)) => {
                    r = c;
                    best = k;
                    improved = true;
                    if critical_only {
                        // The critical path moved: recompute it.
                        break;
                    }
                }
                None => s.lists[d].swap(i - 1, i),
            }
        }
        match (improved, critical_only) {
            (true, _) => critical_only = true,
            (false, true) => critical_only = false,
            (false, false) => return Ok((s, r)),
        }
    }
}

/// The farthest a climbing move takes a pass along its list, in places.
const REACH: usize = 8;

/// A xorshift generator: small, fast and the same everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// [`climb`]'s lists as a fixed-list policy that gives up as soon as a device's remaining work
/// shows the step must exceed `bound`.
struct Climber {
    order: InOrder<Vec<Vec<Pass>>>,
    /// `suffix[d][i]`: the busy time of device `d` from position `i` of its list to the end.
    suffix: Vec<Vec<f64>>,
    bound: f64,
}

impl Climber {
    /// Moves the pass at position `from` of device `d` to `to`, shifting the ones between, and
    /// brings the busy-time suffixes of that stretch up to date.
    fn shift(&mut self, net: &Net, d: usize, from: usize, to: usize) {
        let list = &mut self.order.lists[d];
        if from < to {
            list[from..=to].rotate_left(1);
        } else {
            list[to..=from].rotate_right(1);
        }
        for i in (from.min(to)..=from.max(to)).rev() {
            self.suffix[d][i] = self.suffix[d][i + 1] + net.duration(self.order.lists[d][i]);
        }
    }

    /// Whether moving the pass at position `from` of device `d` to `to` puts it before one of
    /// its own inputs on that device, or after a pass that needs it: such orders block.
    fn blocks_locally(&self, net: &Net, d: usize, from: usize, to: usize) -> bool {
        let list = &self.order.lists[d];
        let k = list[from];
        if to < from {
            let inputs = net.inputs(k);
            list[to..from]
                .iter()
                .any(|&y| net.output(y).is_some_and(|o| inputs.contains(&Some(o))))
        } else {
            net.output(k).is_some_and(|o| {
                list[from + 1..=to]
                    .iter()
                    .any(|&y| net.inputs(y).contains(&Some(o)))
            })
        }
    }

    /// Whether device `d`'s activation stays within `limit` along its list.
    fn fits(&self, net: &Net, d: usize, limit: f64) -> bool {
        let mut level = 0.0;
        for q in &self.order.lists[d] {
            level += net.table.activation_change(q.kind, q.stage);
            if level > limit {
                return false;
            }
        }
        true
    }
}

impl Policy for Climber {
    const TIMED: bool = false;
    #[inline]
    fn next(&mut self, d: usize, now: f64, st: &State) -> Step {
        self.order.next(d, now, st)
    }
    #[inline]
    fn ran(&mut self, d: usize, pass: Pass, st: &State) -> Flow {
        self.order.ran(d, pass, st);
        // The device still has its later passes to run.
        let end = st.end[d].last().copied().unwrap_or(0.0);
        if end + self.suffix[d][self.order.ptr[d]] > self.bound {
            Flow::Stop
        } else {
            Flow::Go
        }
    }
}

/// The step of a finished run of fixed lists: the last end.
fn last_end(st: &State) -> f64 {
    st.end
        .iter()
        .filter_map(|e| e.last().copied())
        .fold(0.0, f64::max)
}

/// Hill climbing over device orders: `moves` times, takes one pass at random and moves it up
/// to eight places along its device's list; keeps the move when the lists still run, the
/// makespan does not grow and the device's activation stays within `peak_limit` (per device,
/// in units, and never below the schedule's own peak); otherwise undoes it. `seed` picks the
/// moves (any value; the same value gives the same result). Returns the best schedule met and
/// its simulation, which is never worse than the input's.
///
/// A move that puts a pass before its own input on the device (a B before its F, a W before its
/// B) is refused without simulating. The others run again on the engine only from where they
/// can have changed: a pass that started before the moved stretch began cannot depend on it.
pub fn climb(
    s: &Schedule,
    costs: &StageCosts,
    peak_limit: &[f64],
    moves: usize,
    seed: u64,
) -> Result<(Schedule, SimResult), Error> {
    if !s.pairs.is_empty() {
        return as_it_is(s.clone(), costs);
    }
    validate(s)?;
    let net = Net::of(s, costs)?;
    let first = simulate_net(s, &net)?;
    let limits = mend_limits("climb", &first, Some(peak_limit))?;
    let p = s.lists.len();
    let mut c = Climber {
        order: InOrder::new(s.lists.clone()),
        suffix: s
            .lists
            .iter()
            .map(|l| {
                let mut suf = vec![0.0; l.len() + 1];
                for i in (0..l.len()).rev() {
                    suf[i] = suf[i + 1] + net.duration(l[i]);
                }
                suf
            })
            .collect(),
        bound: f64::INFINITY,
    };
    let mut e = Engine::new(&net).without_memory();
    if e.drive(&mut c).is_err() {
        return Ok((s.clone(), first));
    }
    let mut current = last_end(e.state());
    let mut best = current;
    let mut best_lists = c.order.lists.clone();
    let devices: Vec<usize> = (0..p).filter(|&d| c.order.lists[d].len() > 1).collect();
    if devices.is_empty() {
        return Ok((s.clone(), first));
    }
    let mut from = vec![0usize; p];
    // xorshift must not start at 0.
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    for _ in 0..moves {
        let d = devices[rng.below(devices.len())];
        let len = c.order.lists[d].len();
        let i = rng.below(len);
        let step = 1 + rng.below(REACH);
        let j = if rng.next() & 1 == 0 {
            i.saturating_sub(step)
        } else {
            (i + step).min(len - 1)
        };
        if i == j || c.blocks_locally(&net, d, i, j) {
            continue;
        }
        c.shift(&net, d, i, j);
        let mut kept = c.fits(&net, d, limits[d]);
        if kept {
            // Run again every pass that may have changed: on device d from the moved stretch
            // on, elsewhere from the first pass that started after the stretch began.
            let at = i.min(j);
            let st = e.state();
            let cut = if at > 0 {
                st.end[d][at - 1]
            } else {
                f64::NEG_INFINITY
            };
            for (x, f) in from.iter_mut().enumerate() {
                *f = if x == d {
                    at
                } else {
                    st.start[x].partition_point(|&t| t < cut - EPS)
                };
            }
            e.rewind(&c.order.lists, &from);
            c.order.ptr.clone_from(&from);
            c.bound = current + EPS;
            match e.resume(&mut c) {
                Ok(()) => current = last_end(e.state()),
                Err(Blocked::Stopped | Blocked::Waiting(_) | Blocked::Asleep(_)) => {
                    e.restore();
                    kept = false;
                }
            }
        }
        if !kept {
            c.shift(&net, d, j, i);
        } else if current < best - EPS {
            best = current;
            best_lists.clone_from(&c.order.lists);
        }
    }
    let mut out = s.clone();
    out.lists = best_lists;
    let r = simulate_net(&out, &net)?;
    // The engine, run again move by move, must agree with a whole simulation.
    debug_assert!(
        (r.makespan - best).abs() <= 1e-6 * best.max(1.0),
        "climb: {} against {best}",
        r.makespan
    );
    if r.makespan < first.makespan - EPS {
        Ok((out, r))
    } else {
        Ok((s.clone(), first))
    }
}

/// Most simulations [`pair_up`] runs, and most passes times simulations.
const PAIR_EVALS: usize = 4000;
/// See [`PAIR_EVALS`].
const PAIR_WORK: usize = 40_000_000;

/// Overlaps a schedule's adjacent forwards and backwards in pairs ([`Schedule::pairs`]) where
/// that does not lengthen its step (`objective`'s time) and every device stays within
/// `peak_limit`: first every such neighbour at once, then, a few rounds, without the pairs
/// whose halves' inputs arrived further apart than the pair saves (the earlier half waited
/// longer than the overlap gained), keeping the best set; then the remaining neighbours one at
/// a time, in list order, each kept unless the step grows, at most `evals` of them (and no
/// more than a fixed amount of work allows). `None` when a pair would hide nothing under `costs` (no communication inside the
/// passes and an overlap fraction of 1: a pair then costs its halves in turn and can only
/// wait longer) or no pair is kept.
pub fn pair_up(
    s: &Schedule,
    costs: &StageCosts,
    peak_limit: &[f64],
    objective: crate::params::Objective,
    evals: usize,
) -> Result<Option<(Schedule, SimResult)>, Error> {
    let net = Net::of(s, costs)?;
    let t = &net.table;
    let hides = t.overlap < 1.0 - EPS || t.hidden.iter().flatten().any(|&x| x > EPS);
    if !hides || peak_limit.len() != s.devices as usize {
        return Ok(None);
    }
    validate(s)?;
    let taken: std::collections::HashSet<Pass> = s.pairs.iter().flatten().copied().collect();
    let mut options = Vec::new();
    for list in &s.lists {
        let mut i = 0;
        while i + 1 < list.len() {
            let (a, b) = (list[i], list[i + 1]);
            if a.kind == PassKind::F
                && b.kind.is_input_backward()
                && a.mb != b.mb
                && !taken.contains(&a)
                && !taken.contains(&b)
            {
                options.push([a, b]);
                i += 2;
            } else {
                i += 1;
            }
        }
    }
    if options.is_empty() {
        return Ok(None);
    }
    let fits = |r: &SimResult| r.fits(peak_limit);
    let first = simulate_net(s, &net)?;
    let mut best = s.clone();
    let mut time = objective.time(&first);
    let mut result = None;
    let mut set = options.clone();
    for _ in 0..PAIR_ROUNDS {
        let mut trial = s.clone();
        trial.pairs.extend(set.iter().copied());
        let Ok(r) = simulate_net(&trial, &net) else {
            break;
        };
        if fits(&r) && objective.time(&r) <= time - EPS {
            time = objective.time(&r);
            best = trial.clone();
            result = Some(r.clone());
        }
        let kept = in_step(&trial, &net, &r);
        if kept.len() == set.len() {
            break;
        }
        set = kept;
    }
    {
        let chosen: std::collections::HashSet<[Pass; 2]> = best.pairs.iter().copied().collect();
        let evals = evals.min(PAIR_EVALS.min(PAIR_WORK / s.num_passes().max(1)));
        for pair in options
            .into_iter()
            .filter(|q| !chosen.contains(q))
            .take(evals)
        {
            best.pairs.push(pair);
            match simulate_net(&best, &net) {
                Ok(r) if fits(&r) && objective.time(&r) <= time + EPS => {
                    time = time.min(objective.time(&r));
                    result = Some(r);
                }
                _ => {
                    best.pairs.pop();
                }
            }
        }
    }
    Ok(result.map(|r| (best, r)))
}

/// Rounds of [`pair_up`]'s pruning.
const PAIR_ROUNDS: usize = 8;

/// The pairs of `s` (simulated in `r`) whose halves' inputs arrived no further apart than the
/// pair saves over running them in turn.
fn in_step(s: &Schedule, net: &Net, r: &SimResult) -> Vec<[Pass; 2]> {
    let mut end = std::collections::HashMap::new();
    for (d, list) in s.lists.iter().enumerate() {
        for (i, &q) in list.iter().enumerate() {
            if let Some(slot) = net.output(q) {
                end.insert(slot, r.end[d][i]);
            }
        }
    }
    let ready = |q: Pass| {
        net.inputs(q)
            .into_iter()
            .flatten()
            .map(|slot| end.get(&slot).copied().unwrap_or(0.0) + net.latency(slot, q))
            .fold(0.0, f64::max)
    };
    s.pairs
        .iter()
        .copied()
        .filter(|&[a, b]| {
            let saves = net.duration(a) + net.duration(b) - net.pair_duration(a, b);
            (ready(a) - ready(b)).abs() <= saves + EPS
        })
        .collect()
}

/// A schedule with overlapped pairs, which [`reorder`], [`polish`] and [`climb`] return as
/// they are (their moves do not keep a pair's halves together), with its simulation.
fn as_it_is(s: Schedule, costs: &StageCosts) -> Result<(Schedule, SimResult), Error> {
    let r = crate::engine::simulate(&s, costs)?;
    Ok((s, r))
}

/// Squeezes a schedule: every pass at the earliest time the costs, latencies and list order
/// allow. This is what the simulator computes, so squeezing is simulating.
pub fn squeeze(s: &Schedule, costs: &StageCosts) -> Result<SimResult, Error> {
    crate::engine::simulate(s, costs)
}
