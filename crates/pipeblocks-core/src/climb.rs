//! Hill climbing over device orders.
//!
//! The block search, the list scheduler and the round scheduler each build a schedule from a
//! rule; [`crate::block::reorder`] and [`crate::block::polish`] then mend it where the rule
//! left time unused. Neither mend looks further than a swap of neighbours or a pass moved into
//! a gap, and both stop at the first schedule no such step improves. [`climb`] goes on from
//! there: it moves one pass a few places along its device's list, keeps the move when the
//! step gets no longer and every device stays within its memory limit, and repeats for a
//! fixed number of moves. Moves that keep the makespan are kept too, so the search walks
//! across the many orders of equal makespan until one of them opens a shorter step.
//!
//! The moves are drawn from a fixed-seed generator: the same schedule and count give the same
//! answer on every machine. A move that puts a pass before its own input on the device (a B
//! before its F, a W before its B) is refused without simulating. The others are judged by a
//! compact copy of the simulator (passes numbered in list order, dependencies looked up once)
//! that keeps the times of the last schedule kept and runs again only the passes that started
//! after the moved stretch began, giving up as soon as a device's remaining work shows the step
//! must grow. The result is simulated again by [`crate::simulate`] before it is returned.

use crate::error::Error;
use crate::ir::{Pass, Schedule};
use crate::simulate::{activation_change, simulate_graph, SimConfig, SimResult};
use crate::validate::{validate, Graph};

const EPS: f64 = 1e-9;
const NONE: u32 = u32::MAX;
/// The farthest a move takes a pass along its list, in places.
const REACH: usize = 8;

/// A pass as the compact simulator sees it.
#[derive(Clone, Copy, Debug)]
struct Node {
    /// Duration on its device.
    len: f64,
    /// Change of its device's activation: added at the start of an F, removed at the end of
    /// a B (its released part), W or BW. Only the order on a device matters for the peak.
    mem: f64,
    /// Inputs (`NONE` when absent).
    deps: [u32; 2],
    /// Whether each input comes from another device (and so adds the latency).
    remote: [bool; 2],
    /// Its device.
    dev: u32,
}

/// The schedule in dense numbers, the times of its last simulation, and the buffers one
/// simulation needs.
///
/// A simulation after a move runs again only the passes that started after the moved region
/// began (see [`Compact::resimulate`]). Instead of clearing the tables of those passes first, it
/// stamps every pass it runs with the simulation's number: a pass has run in this simulation when
/// it carries the stamp or sits before the first pass run again on its device.
struct Compact {
    /// The passes, numbered in the order of the lists they came in (device by device), so that
    /// a simulation walks the tables nearly in order.
    nodes: Vec<Node>,
    /// The pass of each number.
    passes: Vec<Pass>,
    /// Latency between devices.
    comm: f64,
    lists: Vec<Vec<u32>>,
    /// Position of each pass in its device's list.
    pos: Vec<u32>,
    /// Start and end of each pass in the last simulation kept.
    start: Vec<f64>,
    end: Vec<f64>,
    /// `suffix[d][i]`: the busy time of device `d` from position `i` of its list to the end.
    suffix: Vec<Vec<f64>>,
    /// The simulation that last ran each pass, and that last had a device wait on it.
    ran: Vec<u32>,
    waited: Vec<u32>,
    /// The simulation's number.
    round: u32,
    /// Devices waiting on each pass (a linked list through `wait_next`).
    wait_head: Vec<u32>,
    wait_next: Vec<u32>,
    /// First position each device runs again, and the next one to run.
    first: Vec<usize>,
    ptr: Vec<usize>,
    free: Vec<f64>,
    stack: Vec<u32>,
    /// Passes run by the last [`Compact::resimulate`], with their old times.
    undo: Vec<(u32, f64, f64)>,
}

impl Compact {
    /// The compact form of `s`, whose graph `g` its caller has checked.
    fn new(s: &Schedule, g: &Graph, cfg: &SimConfig) -> Self {
        let dur = cfg.durations(s);
        let act = cfg.activations(s);
        let speed = cfg.speeds(s);
        // Number the passes in list order; `number` maps the graph's dense index to it.
        let mut number = vec![NONE; g.index.len()];
        let mut passes = Vec::with_capacity(s.num_passes());
        for &q in s.lists.iter().flatten() {
            number[g.index.of(q)] = passes.len() as u32;
            passes.push(q);
        }
        let n = passes.len();
        let mut nodes = Vec::with_capacity(n);
        let mut pos = Vec::with_capacity(n);
        let mut lists = Vec::with_capacity(s.lists.len());
        for (d, list) in s.lists.iter().enumerate() {
            let mut ids = Vec::with_capacity(list.len());
            for (i, &q) in list.iter().enumerate() {
                let (deps, nd) = g.deps(q);
                let mut node = Node {
                    len: dur[q.stage as usize][q.kind.index()] / speed[d],
                    mem: activation_change(q.kind, act[q.stage as usize], cfg.b_release),
                    deps: [NONE; 2],
                    remote: [false; 2],
                    dev: d as u32,
                };
                for (slot, dep) in deps.iter().take(nd).flatten().enumerate() {
                    node.deps[slot] = number[g.index.of(*dep)];
                    node.remote[slot] = g.stage_device[dep.stage as usize] as usize != d;
                }
                ids.push(nodes.len() as u32);
                nodes.push(node);
                pos.push(i as u32);
            }
            lists.push(ids);
        }
        let p = lists.len();
        let mut c = Compact {
            nodes,
            passes,
            comm: cfg.costs.comm,
            lists,
            pos,
            start: vec![f64::NAN; n],
            end: vec![f64::NAN; n],
            suffix: vec![Vec::new(); p],
            ran: vec![0; n],
            waited: vec![0; n],
            round: 0,
            wait_head: vec![NONE; n],
            wait_next: vec![NONE; p],
            first: vec![0; p],
            ptr: vec![0; p],
            free: vec![0.0; p],
            stack: Vec::with_capacity(p),
            undo: Vec::new(),
        };
        for d in 0..p {
            c.suffix[d] = vec![0.0; c.lists[d].len() + 1];
            c.renumber(d, 0, c.lists[d].len());
        }
        c
    }

    /// Moves the pass at position `from` of device `d` to `to`, shifting the ones between,
    /// and brings the positions and busy-time suffixes of that stretch up to date.
    fn shift(&mut self, d: usize, from: usize, to: usize) {
        let list = &mut self.lists[d];
        if from < to {
            list[from..=to].rotate_left(1);
        } else {
            list[to..=from].rotate_right(1);
        }
        self.renumber(d, from.min(to), from.max(to) + 1);
    }

    /// Recomputes the positions and `suffix[d]` at positions `from..to` of device `d` (the
    /// later suffixes must be right).
    fn renumber(&mut self, d: usize, from: usize, to: usize) {
        for i in (from..to).rev() {
            let k = self.lists[d][i] as usize;
            self.pos[k] = i as u32;
            self.suffix[d][i] = self.suffix[d][i + 1] + self.nodes[k].len;
        }
    }

    /// Whether moving the pass at position `from` of device `d` to `to` puts it before one of
    /// its own inputs on that device, or after a pass that needs it: such orders block.
    fn blocks_locally(&self, d: usize, from: usize, to: usize) -> bool {
        let list = &self.lists[d];
        let k = list[from];
        if to < from {
            let deps = self.nodes[k as usize].deps;
            list[to..from].iter().any(|y| deps.contains(y))
        } else {
            list[from + 1..=to]
                .iter()
                .any(|&y| self.nodes[y as usize].deps.contains(&k))
        }
    }

    /// Whether pass `k` has run in the current simulation.
    #[inline]
    fn has_run(&self, k: usize) -> bool {
        self.ran[k] == self.round || (self.pos[k] as usize) < self.first[self.nodes[k].dev as usize]
    }

    /// Simulates again every pass that may have changed since the last simulation kept, after
    /// device `d`'s list changed at positions `from` and later (`None`: simulate everything).
    /// A pass that started before the device's position `from - 1` ended cannot depend on a
    /// changed pass (it would have had to wait for it), so it keeps its times. Gives up, with
    /// `None`, as soon as the makespan must exceed `bound` or when the lists block; the times
    /// are then half updated and [`Compact::restore`] puts them back.
    fn resimulate(&mut self, changed: Option<(usize, usize)>, bound: f64) -> Option<f64> {
        let p = self.lists.len();
        self.round = self.round.wrapping_add(1);
        if self.round == 0 {
            // After 2^32 simulations the stamps would repeat: start them again.
            self.ran.iter_mut().for_each(|x| *x = 0);
            self.waited.iter_mut().for_each(|x| *x = 0);
            self.round = 1;
        }
        let round = self.round;
        let cut = match changed {
            Some((d, from)) if from > 0 => self.end[self.lists[d][from - 1] as usize],
            _ => f64::NEG_INFINITY,
        };
        self.undo.clear();
        for e in 0..p {
            let list = &self.lists[e];
            let first = match changed {
                Some((d, from)) if d == e => from,
                _ => list.partition_point(|&k| self.start[k as usize] < cut - EPS),
            };
            self.first[e] = first;
            self.ptr[e] = first;
            self.free[e] = if first > 0 {
                self.end[list[first - 1] as usize]
            } else {
                0.0
            };
        }
        self.stack.clear();
        self.stack.extend((0..p as u32).rev());
        while let Some(d) = self.stack.pop() {
            let d = d as usize;
            'advance: while self.ptr[d] < self.lists[d].len() {
                let k = self.lists[d][self.ptr[d]] as usize;
                let node = self.nodes[k];
                let mut t = self.free[d];
                for (&dep, &remote) in node.deps.iter().zip(&node.remote) {
                    if dep == NONE {
                        continue;
                    }
                    let dep = dep as usize;
                    let lat = if remote { self.comm } else { 0.0 };
                    if !self.has_run(dep) {
                        if self.waited[dep] != round {
                            self.waited[dep] = round;
                            self.wait_head[dep] = NONE;
                        }
                        self.wait_next[d] = self.wait_head[dep];
                        self.wait_head[dep] = d as u32;
                        break 'advance;
                    }
                    t = t.max(self.end[dep] + lat);
                }
                let e = t + node.len;
                self.ptr[d] += 1;
                // The device still has its later passes to run.
                if e + self.suffix[d][self.ptr[d]] > bound {
                    return None;
                }
                self.undo.push((k as u32, self.start[k], self.end[k]));
                self.start[k] = t;
                self.end[k] = e;
                self.ran[k] = round;
                self.free[d] = e;
                if self.waited[k] == round {
                    let mut w = std::mem::replace(&mut self.wait_head[k], NONE);
                    while w != NONE {
                        self.stack.push(w);
                        w = self.wait_next[w as usize];
                    }
                }
            }
        }
        if (0..p).any(|d| self.ptr[d] < self.lists[d].len()) {
            return None;
        }
        Some(
            self.lists
                .iter()
                .filter_map(|l| l.last())
                .map(|&k| self.end[k as usize])
                .fold(0.0, f64::max),
        )
    }

    /// Puts back the times the last [`Compact::resimulate`] changed.
    fn restore(&mut self) {
        for &(k, s, e) in &self.undo {
            self.start[k as usize] = s;
            self.end[k as usize] = e;
        }
    }

    /// Whether device `d`'s activation stays within `limit` along its list.
    fn fits(&self, d: usize, limit: f64) -> bool {
        let mut level = 0.0;
        for &k in &self.lists[d] {
            level += self.nodes[k as usize].mem;
            if level > limit {
                return false;
            }
        }
        true
    }
}

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

/// Hill climbing over device orders: `moves` times, takes one pass at random and moves it up
/// to eight places along its device's list; keeps the move when the lists still run, the
/// makespan does not grow and the device's activation stays within `peak_limit` (per device,
/// in units, and never below the schedule's own peak); otherwise undoes it. `seed` picks the
/// moves (any value; the same value gives the same result). Returns the best schedule met and
/// its simulation, which is never worse than the input's.
pub fn climb(
    s: &Schedule,
    cfg: &SimConfig,
    peak_limit: &[f64],
    moves: usize,
    seed: u64,
) -> Result<(Schedule, SimResult), Error> {
    let g = validate(s)?;
    let first = simulate_graph(s, &g, cfg)?;
    let limits = crate::block::mend_limits("climb", &first, Some(peak_limit))?;
    let mut c = Compact::new(s, &g, cfg);
    let Some(mut current) = c.resimulate(None, f64::INFINITY) else {
        return Ok((s.clone(), first));
    };
    let mut best = current;
    let mut best_lists = c.lists.clone();
    let devices: Vec<usize> = (0..c.lists.len())
        .filter(|&d| c.lists[d].len() > 1)
        .collect();
    if devices.is_empty() {
        return Ok((s.clone(), first));
    }
    // xorshift must not start at 0.
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    for _ in 0..moves {
        let d = devices[rng.below(devices.len())];
        let len = c.lists[d].len();
        let i = rng.below(len);
        let step = 1 + rng.below(REACH);
        let j = if rng.next() & 1 == 0 {
            i.saturating_sub(step)
        } else {
            (i + step).min(len - 1)
        };
        if i == j {
            continue;
        }
        if c.blocks_locally(d, i, j) {
            continue;
        }
        c.shift(d, i, j);
        let kept = c.fits(d, limits[d])
            && match c.resimulate(Some((d, i.min(j))), current + EPS) {
                Some(t) => {
                    current = t;
                    true
                }
                None => {
                    c.restore();
                    false
                }
            };
        if !kept {
            c.shift(d, j, i);
        } else if current < best - EPS {
            best = current;
            best_lists.clone_from(&c.lists);
        }
    }
    let mut out = s.clone();
    for (list, ids) in out.lists.iter_mut().zip(&best_lists) {
        *list = ids.iter().map(|&k| c.passes[k as usize]).collect();
    }
    let r = simulate_graph(&out, &g, cfg)?;
    // The compact simulator, updated move by move, must agree with the simulator.
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
