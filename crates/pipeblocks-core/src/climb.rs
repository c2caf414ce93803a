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
//! answer on every machine. Each move is judged by a compact copy of the simulator (dense
//! pass numbers, dependencies and latencies looked up once) that returns the makespan only;
//! the result is simulated again by [`crate::simulate`] before it is returned.

use crate::error::Error;
use crate::ir::{Pass, PassKind, Schedule};
use crate::simulate::{simulate_graph, SimConfig, SimResult};
use crate::validate::validate;

const EPS: f64 = 1e-9;
const NONE: u32 = u32::MAX;
/// The farthest a move takes a pass along its list, in places.
const REACH: usize = 8;

/// A pass as the compact simulator sees it.
#[derive(Clone, Copy, Debug)]
struct Node {
    /// Duration on its device.
    len: f64,
    /// Inputs (dense numbers, `NONE` when absent) and the latency each adds.
    deps: [(u32, f64); 2],
    /// Change of its device's activation: added at the start of an F, removed at the end of
    /// a B (its released part), W or BW. Only the order on a device matters for the peak.
    mem: f64,
}

/// The schedule in dense numbers, the times of its last simulation, and the buffers one
/// simulation needs.
struct Compact {
    nodes: Vec<Node>,
    lists: Vec<Vec<u32>>,
    /// Start and end of each pass in the last simulation kept.
    start: Vec<f64>,
    end: Vec<f64>,
    /// `suffix[d][i]`: the busy time of device `d` from position `i` of its list to the end.
    suffix: Vec<Vec<f64>>,
    wait_head: Vec<u32>,
    wait_next: Vec<u32>,
    ptr: Vec<usize>,
    free: Vec<f64>,
    stack: Vec<u32>,
    /// Passes simulated again by the last [`Compact::resimulate`], with their old times.
    undo: Vec<(u32, f64, f64)>,
}

impl Compact {
    fn new(s: &Schedule, cfg: &SimConfig) -> Result<Self, Error> {
        let g = validate(s)?;
        let dur = cfg.durations(s);
        let act = cfg.activations(s);
        let speed = cfg.speeds(s);
        let n = g.index.len();
        let mut nodes = vec![
            Node {
                len: 0.0,
                deps: [(NONE, 0.0); 2],
                mem: 0.0,
            };
            n
        ];
        let mut lists = Vec::with_capacity(s.lists.len());
        for (d, list) in s.lists.iter().enumerate() {
            let mut ids = Vec::with_capacity(list.len());
            for &q in list {
                let k = g.index.of(q);
                let (deps, nd) = g.deps(q);
                let mut node = Node {
                    len: dur[q.stage as usize][q.kind.index()] / speed[d],
                    deps: [(NONE, 0.0); 2],
                    mem: 0.0,
                };
                for (slot, dep) in node.deps.iter_mut().zip(deps.iter().take(nd).flatten()) {
                    let lat = if g.stage_device[dep.stage as usize] as usize != d {
                        cfg.costs.comm
                    } else {
                        0.0
                    };
                    *slot = (g.index.of(*dep) as u32, lat);
                }
                let a = act[q.stage as usize];
                node.mem = match q.kind {
                    PassKind::F => a,
                    PassKind::B => -a * cfg.b_release,
                    PassKind::W => -a * (1.0 - cfg.b_release),
                    PassKind::BW => -a,
                };
                nodes[k] = node;
                ids.push(k as u32);
            }
            lists.push(ids);
        }
        let p = lists.len();
        let mut c = Compact {
            nodes,
            lists,
            start: vec![f64::NAN; n],
            end: vec![f64::NAN; n],
            suffix: vec![Vec::new(); p],
            wait_head: vec![NONE; n],
            wait_next: vec![NONE; p],
            ptr: vec![0; p],
            free: vec![0.0; p],
            stack: Vec::with_capacity(p),
            undo: Vec::new(),
        };
        for d in 0..p {
            c.suffix[d] = vec![0.0; c.lists[d].len() + 1];
            c.update_suffix(d, 0, c.lists[d].len());
        }
        Ok(c)
    }

    /// Recomputes `suffix[d]` at positions `from..to` (the later ones must be right).
    fn update_suffix(&mut self, d: usize, from: usize, to: usize) {
        for i in (from..to).rev() {
            let k = self.lists[d][i] as usize;
            self.suffix[d][i] = self.suffix[d][i + 1] + self.nodes[k].len;
        }
    }

    /// Simulates again every pass that may have changed since the last simulation kept, after
    /// device `d`'s list changed at positions `from` and later (`None`: simulate everything).
    /// A pass that started before the device's position `from - 1` ended cannot depend on a
    /// changed pass (it would have had to wait for it), so it keeps its times. Gives up, with
    /// `None`, as soon as the makespan must exceed `bound` or when the lists block; the times
    /// are then half updated and [`Compact::restore`] puts them back.
    fn resimulate(&mut self, changed: Option<(usize, usize)>, bound: f64) -> Option<f64> {
        let p = self.lists.len();
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
            self.ptr[e] = first;
            self.free[e] = if first > 0 {
                self.end[list[first - 1] as usize]
            } else {
                0.0
            };
            for &k in &list[first..] {
                self.undo
                    .push((k, self.start[k as usize], self.end[k as usize]));
                self.end[k as usize] = f64::NAN;
                self.wait_head[k as usize] = NONE;
            }
        }
        self.stack.clear();
        self.stack.extend((0..p as u32).rev());
        while let Some(d) = self.stack.pop() {
            let d = d as usize;
            'advance: while self.ptr[d] < self.lists[d].len() {
                let k = self.lists[d][self.ptr[d]] as usize;
                let node = self.nodes[k];
                let mut t = self.free[d];
                for &(dep, lat) in &node.deps {
                    if dep == NONE {
                        continue;
                    }
                    let e = self.end[dep as usize];
                    if e.is_nan() {
                        self.wait_next[d] = self.wait_head[dep as usize];
                        self.wait_head[dep as usize] = d as u32;
                        break 'advance;
                    }
                    t = t.max(e + lat);
                }
                let e = t + node.len;
                self.ptr[d] += 1;
                // The device still has its later passes to run.
                if e + self.suffix[d][self.ptr[d]] > bound {
                    return None;
                }
                self.start[k] = t;
                self.end[k] = e;
                self.free[d] = e;
                let mut w = std::mem::replace(&mut self.wait_head[k], NONE);
                while w != NONE {
                    self.stack.push(w);
                    w = self.wait_next[w as usize];
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
    if peak_limit.len() != s.devices as usize {
        return Err(Error::config(format!(
            "climb: the peak limits must list {} devices",
            s.devices
        )));
    }
    let limits: Vec<f64> = first
        .peak_activation
        .iter()
        .zip(peak_limit)
        .map(|(&pk, &l)| l.max(pk) + EPS)
        .collect();
    let mut c = Compact::new(s, cfg)?;
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
        let (lo, hi) = (i.min(j), i.max(j));
        move_within(&mut c.lists[d], i, j);
        let kept = c.fits(d, limits[d]) && {
            c.update_suffix(d, lo, hi + 1);
            match c.resimulate(Some((d, lo)), current + EPS) {
                Some(t) => {
                    current = t;
                    true
                }
                None => {
                    c.restore();
                    false
                }
            }
        };
        if !kept {
            move_within(&mut c.lists[d], j, i);
            c.update_suffix(d, lo, hi + 1);
        } else if current < best - EPS {
            best = current;
            best_lists.clone_from(&c.lists);
        }
    }
    let mut out = s.clone();
    for (list, ids) in out.lists.iter_mut().zip(&best_lists) {
        *list = ids.iter().map(|&k| pass_of(&g.index, k)).collect();
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

/// Moves the element at `from` to `to`, shifting the ones between.
fn move_within(list: &mut [u32], from: usize, to: usize) {
    if from < to {
        list[from..=to].rotate_left(1);
    } else {
        list[to..=from].rotate_right(1);
    }
}

/// The pass of a dense number.
fn pass_of(index: &crate::validate::PassIndex, k: u32) -> Pass {
    let k = k as usize;
    let kind = PassKind::ALL[k % 4];
    let sm = k / 4;
    let m = index.microbatches as usize;
    Pass::new(kind, (sm / m) as u32, (sm % m) as u32)
}
