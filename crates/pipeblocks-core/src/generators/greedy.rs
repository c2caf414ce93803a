//! A cost- and memory-aware greedy list scheduler, the generalisation of ZB-H1 and ZB-H2.
//!
//! Devices are advanced in order of their local clock. When a device is free it picks, among the
//! passes whose inputs have arrived:
//! 1. a B (input gradient: on the critical path of the device before it),
//! 2. else an F, if its activation fits under the device's memory limit,
//! 3. else the oldest pending W (filling a wait; this is also how W is flushed when memory runs
//!    out, since W frees the activation),
//! 4. else it idles until the next pass it could run arrives.
//!
//! Works on any placement; F and B of a stage follow microbatch order.

use crate::error::Error;
use crate::ir::{Pass, PassKind, Placement, Schedule};

/// Options of the list scheduler.
#[derive(Clone, Debug)]
pub struct GreedyOptions {
    /// Schedule name.
    pub name: String,
    /// Devices `p`.
    pub devices: u32,
    /// Microbatches `m`.
    pub microbatches: u32,
    /// Placement.
    pub placement: Placement,
    /// Duration of each pass kind, per stage: `[F, B, W, BW]`.
    pub durations: Vec<[f64; 4]>,
    /// Latency between devices.
    pub comm: f64,
    /// Activation units per stage.
    pub activation: Vec<f64>,
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

const EPS: f64 = 1e-9;
const UNKNOWN: f64 = f64::INFINITY;

/// Runs the list scheduler.
pub fn list_schedule(o: &GreedyOptions) -> Result<Schedule, Error> {
    let p = o.devices;
    let m = o.microbatches as usize;
    let mut s = Schedule::empty(&o.name, p, o.microbatches, o.placement.clone())?;
    let n_st = s.stages as usize;
    if o.durations.len() != n_st || o.activation.len() != n_st || o.limit.len() != p as usize {
        return Err(Error::config(
            "list scheduler: durations/activations must list every stage and limits every device",
        ));
    }
    for (d, &lim) in o.limit.iter().enumerate() {
        // A microbatch holds its activation on every stage of the device at once (each stage's
        // lifespan contains the later ones'), so the device needs their sum, not the largest.
        let need: f64 = s
            .stages_of(d as u32)
            .iter()
            .map(|&st| o.activation[st as usize])
            .sum();
        if lim + EPS < need {
            return Err(Error::config(format!(
                "memory budget {lim:.3} units on device {d} is below one microbatch's activation ({need:.3} units); raise the budget"
            )));
        }
    }
    let dev = s.placement.stage_devices(p);
    let local: Vec<Vec<u32>> = (0..p).map(|d| s.stages_of(d)).collect();
    // Completion times, UNKNOWN until scheduled.
    let mut end_f = vec![UNKNOWN; n_st * m];
    let mut end_b = vec![UNKNOWN; n_st * m];
    let mut next_f = vec![0usize; n_st];
    let mut next_b = vec![0usize; n_st];
    let mut pending_w: Vec<std::collections::VecDeque<(u32, u32)>> =
        vec![Default::default(); p as usize];
    let mut level = vec![0.0f64; p as usize];
    // Activation held by Ws not yet run, and allocations still to come for admitted microbatches.
    let mut pending_mem = vec![0.0f64; p as usize];
    let mut reserved = vec![0.0f64; p as usize];
    let mut need = vec![0.0f64; p as usize];
    for st in 0..n_st {
        need[dev[st] as usize] += o.activation[st];
    }
    // Activations whose B has not run yet, per device.
    let mut awaiting_b = vec![0.0f64; p as usize];
    let pace = o
        .pace
        .clone()
        .unwrap_or_else(|| vec![f64::INFINITY; p as usize]);
    let mut t = vec![0.0f64; p as usize];
    // Devices waiting for an input, with the clock at which they went to sleep.
    let mut asleep: Vec<Option<f64>> = vec![None; p as usize];
    let total_per_dev: Vec<usize> = local
        .iter()
        .map(|st| st.len() * m * if o.split_backward { 3 } else { 2 })
        .collect();
    let at = |st: usize, mb: usize| st * m + mb;
    let arrival = |end: f64, from: u32, to: u32| {
        if from == to {
            end
        } else {
            end + o.comm
        }
    };
    // The unfinished device with the earliest clock.
    while let Some(d) = (0..p as usize)
        .filter(|&d| s.lists[d].len() < total_per_dev[d])
        .min_by(|&a, &b| t[a].total_cmp(&t[b]).then(a.cmp(&b)))
    {
        let now = t[d];
        if now == UNKNOWN {
            return Err(Error::config(format!(
                "the memory budget is too small for {}: device {d} can neither start a forward nor wait for a backward; raise the budget",
                o.name
            )));
        }
        asleep[d] = None;
        let mut wake = UNKNOWN;
        let mut consider = |ready: f64| {
            if ready > now + EPS && ready < wake {
                wake = ready;
            }
        };
        // 1. B (or BW) whose gradient has arrived.
        let mut choice: Option<Pass> = None;
        for &st in local[d].iter().rev() {
            let (stu, mb) = (st as usize, next_b[st as usize]);
            if mb >= m || end_f[at(stu, mb)] > now + EPS {
                continue;
            }
            let ready = if stu + 1 == n_st {
                end_f[at(stu, mb)]
            } else {
                arrival(end_b[at(stu + 1, mb)], dev[stu + 1], d as u32)
            };
            consider(ready);
            if ready <= now + EPS && choice.is_none_or(|c: Pass| mb < c.mb as usize) {
                let kind = if o.split_backward {
                    PassKind::B
                } else {
                    PassKind::BW
                };
                choice = Some(Pass::new(kind, st, mb as u32));
            }
        }
        // 2. F that fits in memory.
        if choice.is_none() {
            for &st in local[d].iter().rev() {
                let (stu, mb) = (st as usize, next_f[st as usize]);
                if mb >= m {
                    continue;
                }
                let ready = if stu == 0 {
                    0.0
                } else {
                    arrival(end_f[at(stu - 1, mb)], dev[stu - 1], d as u32)
                };
                consider(ready);
                let fits = level[d] + o.activation[stu] <= o.limit[d] + EPS
                    && awaiting_b[d] + o.activation[stu] <= pace[d] + EPS
                    && (stu != 0
                        || o.max_in_flight
                            .is_none_or(|k| next_f[0] < next_b[0] + k as usize))
                    && (!o.reserve
                        || st != local[d][0]
                        || level[d] - pending_mem[d] + reserved[d] + need[d] <= o.limit[d] + EPS);
                if ready <= now + EPS && fits && choice.is_none_or(|c: Pass| mb < c.mb as usize) {
                    choice = Some(Pass::f(st, mb as u32));
                }
            }
        }
        // 3. The oldest pending W.
        if choice.is_none() {
            if let Some((st, mb)) = pending_w[d].pop_front() {
                choice = Some(Pass::w(st, mb));
            }
        }
        let Some(pass) = choice else {
            // 4. Idle until a known arrival, or until an input of this device is produced.
            t[d] = wake;
            asleep[d] = Some(now);
            continue;
        };
        let stu = pass.stage as usize;
        let dur = o.durations[stu][pass.kind.index()];
        let end = now + dur;
        let a = o.activation[stu];
        match pass.kind {
            PassKind::F => {
                end_f[at(stu, pass.mb as usize)] = end;
                next_f[stu] += 1;
                level[d] += a;
                awaiting_b[d] += a;
                if o.reserve {
                    if pass.stage == local[d][0] {
                        reserved[d] += need[d];
                    }
                    reserved[d] -= a;
                }
            }
            PassKind::B => {
                end_b[at(stu, pass.mb as usize)] = end;
                next_b[stu] += 1;
                awaiting_b[d] -= a;
                pending_w[d].push_back((pass.stage, pass.mb));
                pending_mem[d] += a;
            }
            PassKind::BW => {
                end_b[at(stu, pass.mb as usize)] = end;
                next_b[stu] += 1;
                awaiting_b[d] -= a;
                level[d] -= a;
            }
            PassKind::W => {
                level[d] -= a;
                pending_mem[d] -= a;
            }
        }
        s.lists[d].push(pass);
        t[d] = end;
        // Wake the device that consumes this pass's output.
        let consumer = match pass.kind {
            PassKind::F if stu + 1 < n_st => Some(stu + 1),
            PassKind::B | PassKind::BW if stu > 0 => Some(stu - 1),
            _ => None,
        };
        if let Some(c) = consumer {
            let cd = dev[c] as usize;
            if let Some(base) = asleep[cd] {
                t[cd] = t[cd].min(base.max(arrival(end, d as u32, cd as u32)));
            }
        }
    }
    Ok(s)
}
