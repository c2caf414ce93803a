//! A microbatch-by-microbatch scheduler for the sequential placement: the construction the
//! zero-bubble paper's own code uses for ZB-H1 and ZB-H2 under real costs and a memory limit.
//!
//! Device `d` holds stage `d`. The scheduler places passes in device lists on the
//! [event engine](crate::engine), which times them as it goes, one microbatch at a time:
//! 1. **first microbatch**: its F runs on every device; then, from the last device back, each
//!    device runs as many more forwards as fit (in memory, and in time before the gradient of
//!    the first microbatch comes back), at most one fewer than the device before it; then the
//!    first microbatch's B runs from the last device to the first;
//! 2. **each later microbatch**: a forward on every device that has forwards left (with
//!    *B priority*, a device already two forwards ahead of the next one skips its forward when
//!    running it would delay the next device's B), from the first device on; then its input
//!    backward from the last device back. Before each F and each B, pending Ws run while they
//!    fit into the wait for the pass's input, and while the device's memory would overflow;
//!    one more W runs when the wait would exceed the bubble allowance (with *greedy filling*,
//!    also when it would not);
//! 3. the Ws still pending run last, oldest first.
//!
//! [`variants`] lists the eight runs worth trying (first-B bubble, B priority, greedy filling);
//! the caller keeps the shortest one that fits its limit.

use crate::engine::{Engine, Net};
use crate::error::{Error, Param};
use crate::ir::{Pass, PassKind, Placement, Schedule};
use crate::params::{Params, EPS};

/// Options of one run of the chain scheduler.
#[derive(Clone, Debug, PartialEq)]
pub struct ChainOptions {
    /// Memory limit per device, in units.
    pub limit: Vec<f64>,
    /// During the first microbatch, a device may start a forward that ends after the first
    /// gradient arrives (a bubble before its first B); otherwise it stops as soon as its
    /// forwards reach that arrival.
    pub bubble_before_first_b: bool,
    /// A device two or more forwards ahead of the next one skips its forward when that would
    /// hold back the next device's input backward.
    pub prioritize_b: bool,
    /// Run one more W into a wait even when the wait fits within the device's bubble allowance.
    pub greedy_fill: bool,
}

/// The eight runs worth trying within `limit` units on each device.
pub fn variants(limit: &[f64]) -> Vec<ChainOptions> {
    let mut v = Vec::with_capacity(8);
    for bubble_before_first_b in [true, false] {
        for prioritize_b in [true, false] {
            for greedy_fill in [true, false] {
                v.push(ChainOptions {
                    limit: limit.to_vec(),
                    bubble_before_first_b,
                    prioritize_b,
                    greedy_fill,
                });
            }
        }
    }
    v
}

struct State<'n> {
    e: Engine<'n>,
    m: usize,
    /// Forwards, input backwards and Ws placed per device.
    f: Vec<usize>,
    b: Vec<usize>,
    w: Vec<usize>,
    /// Idle time before each device's passes since its first forward.
    bubble: Vec<f64>,
}

impl State<'_> {
    fn net(&self) -> &Net {
        self.e.state().net
    }

    fn next(&self, kind: PassKind, d: usize) -> Pass {
        let mb = match kind {
            PassKind::F => self.f[d],
            PassKind::W => self.w[d],
            _ => self.b[d],
        };
        Pass::new(kind, d as u32, mb as u32)
    }

    fn cost(&self, kind: PassKind, d: usize) -> f64 {
        self.net().table.dur[d][kind.index()]
    }

    fn act(&self, d: usize) -> f64 {
        self.net().table.act[d]
    }

    fn clock(&self, d: usize) -> f64 {
        self.e.state().clock[d]
    }

    /// When every input of the next `kind` pass of `d` has arrived; infinity if one is not
    /// placed yet.
    fn arrival(&self, kind: PassKind, d: usize) -> f64 {
        self.e
            .state()
            .ready(self.next(kind, d))
            .unwrap_or(f64::INFINITY)
    }

    fn max_bubble(&self) -> f64 {
        self.bubble.iter().cloned().fold(0.0, f64::max)
    }

    fn put(&mut self, kind: PassKind, d: usize) -> Result<(), Error> {
        let pass = self.next(kind, d);
        let clock = self.clock(d);
        let end = self.e.run_ready(d, pass).map_err(|slot| {
            Error::config(format!(
                "the chain scheduler placed {pass} before its input {slot:?} (a bug)"
            ))
        })?;
        let start = end - self.net().duration(pass);
        if self.f[d] > 0 {
            self.bubble[d] += start - clock;
        }
        match kind {
            PassKind::F => self.f[d] += 1,
            PassKind::W => self.w[d] += 1,
            _ => self.b[d] += 1,
        }
        Ok(())
    }

    /// Ws while memory would overflow with `extra` more units on `d`.
    fn make_room(&mut self, d: usize, extra: f64, limit: f64) -> Result<(), Error> {
        while self.e.state().level[d] + extra > limit + EPS {
            if self.w[d] >= self.b[d] {
                return Err(Error::change(
                    format!(
                        "the chain scheduler cannot fit {} microbatches on device {d} within {limit:.3} memory units",
                        self.m
                    ),
                    Param::Budget,
                ));
            }
            self.put(PassKind::W, d)?;
        }
        Ok(())
    }

    /// Ws into the wait of `d` for the input of its next `kind` pass.
    fn fill_wait(&mut self, kind: PassKind, d: usize, greedy: bool) -> Result<(), Error> {
        let arrival = self.arrival(kind, d);
        while self.w[d] < self.b[d] && self.clock(d) + self.cost(PassKind::W, d) <= arrival + EPS {
            self.put(PassKind::W, d)?;
        }
        if self.w[d] < self.b[d] && self.clock(d) + EPS < arrival {
            let wait = arrival - self.clock(d);
            if greedy || wait > self.max_bubble() - self.bubble[d] + EPS {
                self.put(PassKind::W, d)?;
            }
        }
        Ok(())
    }
}

/// Runs the scheduler once for `prm`'s sizes and costs on the sequential placement.
pub fn chain_schedule(prm: &Params, o: &ChainOptions) -> Result<Schedule, Error> {
    let (pu, mu) = (prm.devices(), prm.microbatches());
    let (p, m) = (pu as usize, mu as usize);
    let net = Net::new(
        &Placement::Sequential,
        pu,
        mu,
        prm.table(&Placement::Sequential)?,
    )?;
    if o.limit.len() != p {
        return Err(Error::config(
            "the chain scheduler's limits must list every device",
        ));
    }
    if let Some(d) = (0..p).find(|&d| o.limit[d] + EPS < net.table.act[d]) {
        return Err(Error::fix(
            format!(
                "a memory limit of {:.3} units cannot hold one microbatch on device {d} ({:.3} units); raise the budget",
                o.limit[d], net.table.act[d]
            ),
            Param::Budget,
            format!("{:.3}", net.table.act[d]),
        ));
    }
    let mut st = State {
        e: Engine::new(&net).recording_lists().without_memory_curves(),
        m,
        f: vec![0; p],
        b: vec![0; p],
        w: vec![0; p],
        bubble: vec![0.0; p],
    };
    st.e.reserve(&vec![3 * m; p]);
    let comm = |st: &State, d: usize| {
        if d + 1 < p {
            st.net().table.comm[d]
        } else {
            0.0
        }
    };
    for i in 0..m {
        if i == 0 {
            // 1. The first microbatch, and the warm-up forwards that fit before its gradient.
            for d in 0..p {
                st.put(PassKind::F, d)?;
            }
            let mut extra = vec![0usize; p];
            let mut back = st.clock(p - 1) + st.cost(PassKind::B, p - 1);
            for d in (0..p.saturating_sub(1)).rev() {
                let (mut level, mut t) = (st.e.state().level[d], st.clock(d));
                let (cf, act) = (st.cost(PassKind::F, d), st.act(d));
                let arrive = back + comm(&st, d);
                while st.f[d] + extra[d] < m && level + act <= o.limit[d] + EPS {
                    let stop = if o.bubble_before_first_b {
                        t + cf > arrive + EPS
                    } else {
                        t + EPS >= arrive
                    };
                    if stop {
                        break;
                    }
                    level += act;
                    t += cf;
                    extra[d] += 1;
                }
                back = t.max(arrive) + st.cost(PassKind::B, d);
            }
            for d in 1..p {
                while extra[d] > 0 && extra[d] >= extra[d - 1] && st.f[d] + extra[d] < m {
                    extra[d] -= 1;
                }
            }
            for (d, &k) in extra.iter().enumerate() {
                for _ in 0..k {
                    st.make_room(d, st.act(d), o.limit[d])?;
                    st.put(PassKind::F, d)?;
                }
            }
            for d in (0..p).rev() {
                st.put(PassKind::B, d)?;
            }
            continue;
        }
        // 2. One forward per device, then the microbatch's input backward.
        // With B priority, a device two forwards ahead of the next skips its forward when
        // that would hold back the next device's input backward beyond its bubble allowance.
        let skip = |st: &State, d: usize| -> bool {
            if !(o.prioritize_b && d + 1 < p && st.f[d] >= st.f[d + 1] + 2) {
                return false;
            }
            let next_b = st.clock(d + 1)
                + st.cost(PassKind::F, d + 1)
                + st.cost(PassKind::B, d + 1)
                + comm(st, d);
            if st.clock(d) >= next_b {
                return true;
            }
            // Ws the forward would need first to fit in memory.
            let (mut level, mut w_cost, mut k) = (st.e.state().level[d] + st.act(d), 0.0, 0);
            while level > o.limit[d] + EPS && st.w[d] + k < st.b[d] {
                w_cost += st.cost(PassKind::W, d);
                level += st.net().table.activation_change(PassKind::W, d as u32);
                k += 1;
            }
            st.clock(d) + st.cost(PassKind::F, d) + w_cost > next_b + EPS
                && next_b - st.clock(d) <= st.max_bubble() - st.bubble[d] + EPS
        };
        let mut want: Vec<bool> = (0..p).map(|d| st.f[d] < m && !skip(&st, d)).collect();
        for d in (0..p.saturating_sub(1)).rev() {
            want[d] = want[d] && want[d + 1];
        }
        for (d, _) in want.iter().enumerate().filter(|(_, &w)| w) {
            st.make_room(d, st.act(d), o.limit[d])?;
            if d > 0 {
                st.fill_wait(PassKind::F, d, o.greedy_fill)?;
            }
            st.put(PassKind::F, d)?;
        }
        for d in (0..p).rev() {
            let freed = st.net().table.activation_change(PassKind::B, d as u32);
            st.make_room(d, freed, o.limit[d])?;
            if d + 1 < p {
                st.fill_wait(PassKind::B, d, o.greedy_fill)?;
            }
            if d == 0 && st.f[0] == m {
                while st.w[0] < st.b[0] {
                    st.put(PassKind::W, 0)?;
                }
            }
            if st.b[d] >= st.f[d] {
                return Err(Error::change(
                    format!(
                        "the chain scheduler left device {d} without a forward for microbatch {i}"
                    ),
                    Param::Budget,
                ));
            }
            st.put(PassKind::B, d)?;
        }
    }
    // 3. The Ws left.
    for d in 0..p {
        while st.w[d] < m {
            st.put(PassKind::W, d)?;
        }
    }
    let mut s = Schedule::empty("zb-h2", pu, mu, Placement::Sequential)?;
    s.lists = st.e.into_lists();
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::{Costs, StageCosts};
    use crate::validate::validate;

    fn prm(p: u32, m: u32, f: f64, b: f64, w: f64, c: f64) -> Params {
        let costs = Costs::parse(&format!("f={f},b={b},w={w},c={c}")).unwrap();
        Params::new(p, m)
            .unwrap()
            .with_costs(StageCosts::uniform(costs))
    }

    #[test]
    fn every_variant_is_complete_and_within_its_limit() {
        for (p, m) in [(1, 3), (2, 2), (4, 4), (4, 11), (7, 20), (8, 8)] {
            for (f, b, w, c) in [
                (1.0, 1.0, 1.0, 0.0),
                (1.0, 2.0, 0.5, 0.1),
                (2.0, 1.0, 1.5, 0.3),
            ] {
                let prm = prm(p, m, f, b, w, c);
                for held in [p as f64, (2 * p - 1) as f64] {
                    let limit = vec![held; p as usize];
                    for o in variants(&limit) {
                        let s = chain_schedule(&prm, &o).unwrap();
                        validate(&s).unwrap();
                        let r = crate::engine::simulate(&s, &prm.costs).unwrap();
                        assert!(r.fits(&limit), "p={p} m={m} {o:?}: {:?}", r.peak_activation);
                    }
                }
            }
        }
    }

    #[test]
    fn reaches_the_lagged_schedules_at_equal_costs() {
        // At F = B = W the lagged ZB-H1 / ZB-H2 are optimal for their memory; the chain's best
        // variant must be as short.
        for (p, m) in [(3u32, 9u32), (4, 12), (6, 6), (8, 24)] {
            let prm = prm(p, m, 1.0, 1.0, 1.0, 0.0);
            for (held, warm, lag) in [(p, 1, 1), (2 * p - 1, 2, 2)] {
                let direct = crate::generators::classic::zero_bubble_lagged(
                    "direct",
                    &prm,
                    |i| warm * (p - 1 - i),
                    |i| lag * i,
                )
                .unwrap();
                let target = crate::engine::simulate(&direct, &prm.costs)
                    .unwrap()
                    .makespan;
                let limit = vec![held as f64; p as usize];
                let best = variants(&limit)
                    .iter()
                    .map(|o| {
                        let s = chain_schedule(&prm, o).unwrap();
                        crate::engine::simulate(&s, &prm.costs).unwrap().makespan
                    })
                    .fold(f64::INFINITY, f64::min);
                assert!(
                    best <= target + EPS,
                    "p={p} m={m} held={held}: {best} > {target}"
                );
            }
        }
    }

    #[test]
    fn a_limit_below_one_microbatch_is_refused() {
        let prm = prm(3, 6, 1.0, 1.0, 1.0, 0.0);
        let e = chain_schedule(&prm, &variants(&[0.5; 3])[0]).unwrap_err();
        assert!(e.to_string().contains("raise the budget"), "{e}");
    }
}
