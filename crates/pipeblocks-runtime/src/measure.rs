//! What a step measured: pass timings, activation bytes, bubbles; and the same figures from the
//! simulator fed with the measured costs, for side-by-side comparison.

use pipeblocks_core::engine::{Net, Slot};
use pipeblocks_core::{simulate, Pass, PassKind, Schedule, SimResult, StageCost, StageCosts};
use serde::{Deserialize, Serialize};

use crate::error::Result;

/// One executed pass.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PassRecord {
    /// The pass.
    #[serde(with = "pass_text")]
    pub pass: pipeblocks_core::Pass,
    /// Start, seconds since the step began.
    pub start: f64,
    /// End, seconds since the step began.
    pub end: f64,
    /// Activation bytes the device held for pending backward passes once the pass finished.
    pub held_after: usize,
}

mod pass_text {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(p: &pipeblocks_core::Pass, s: S) -> Result<S::Ok, S::Error> {
        p.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<pipeblocks_core::Pass, D::Error> {
        pipeblocks_core::Pass::deserialize(d)
    }
}

/// The figures of one training step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepReport {
    /// Mean cross-entropy per token over the whole batch (nats).
    pub loss: f64,
    /// Per device, its passes in list order.
    pub timeline: Vec<Vec<PassRecord>>,
    /// Per device, the most activation bytes held at once.
    pub peak_activation_bytes: Vec<usize>,
    /// Per device, seconds spent inside passes.
    pub busy_s: Vec<f64>,
    /// From the first pass's start to the last pass's end.
    pub makespan_s: f64,
    /// Wall time of the whole step, optimiser included.
    pub step_time_s: f64,
    /// Tokens in the batch.
    pub tokens: usize,
}

impl StepReport {
    /// Builds the report from the per-device records.
    pub fn new(loss: f64, timeline: Vec<Vec<PassRecord>>, step_time_s: f64, tokens: usize) -> Self {
        let peak = timeline
            .iter()
            .map(|l| l.iter().map(|r| r.held_after).max().unwrap_or(0))
            .collect();
        let busy = timeline
            .iter()
            .map(|l| l.iter().map(|r| r.end - r.start).sum())
            .collect();
        let first = timeline
            .iter()
            .flatten()
            .map(|r| r.start)
            .fold(f64::INFINITY, f64::min);
        let last = timeline.iter().flatten().map(|r| r.end).fold(0.0, f64::max);
        StepReport {
            loss,
            timeline,
            peak_activation_bytes: peak,
            busy_s: busy,
            makespan_s: if first.is_finite() { last - first } else { 0.0 },
            step_time_s,
            tokens,
        }
    }

    /// `1 - Σ busy / (p · makespan)`, as the simulator defines it.
    pub fn bubble_rate(&self) -> f64 {
        let p = self.busy_s.len() as f64;
        if self.makespan_s <= 0.0 || p == 0.0 {
            return 0.0;
        }
        1.0 - self.busy_s.iter().sum::<f64>() / (p * self.makespan_s)
    }

    /// Tokens per second of wall time.
    pub fn tokens_per_s(&self) -> f64 {
        if self.step_time_s > 0.0 {
            self.tokens as f64 / self.step_time_s
        } else {
            0.0
        }
    }

    /// The measured step in the simulator's result shape (times in seconds from the first pass,
    /// activations in bytes), so renderers can draw it next to a prediction.
    pub fn as_sim_result(&self, schedule: &Schedule) -> SimResult {
        let t0 = self
            .timeline
            .iter()
            .flatten()
            .map(|r| r.start)
            .fold(f64::INFINITY, f64::min);
        let t0 = if t0.is_finite() { t0 } else { 0.0 };
        let start = self
            .timeline
            .iter()
            .map(|l| l.iter().map(|r| r.start - t0).collect())
            .collect();
        let end = self
            .timeline
            .iter()
            .map(|l| l.iter().map(|r| r.end - t0).collect())
            .collect();
        let memory = self
            .timeline
            .iter()
            .map(|l| {
                let mut curve = vec![(0.0, 0.0)];
                let mut prev = 0usize;
                for r in l {
                    if r.held_after != prev {
                        // Allocation counts from the start of F, releases from the end (as simulated).
                        let t = if r.held_after > prev { r.start } else { r.end };
                        curve.push((t - t0, r.held_after as f64));
                        prev = r.held_after;
                    }
                }
                curve
            })
            .collect();
        SimResult {
            start,
            end,
            makespan: self.makespan_s,
            busy: self.busy_s.clone(),
            overlap_saved: Vec::new(),
            recompute_time: Vec::new(),
            transfer_time: Vec::new(),
            bubble_rate: self.bubble_rate(),
            peak_activation: self
                .peak_activation_bytes
                .iter()
                .map(|&b| b as f64)
                .collect(),
            memory,
            p2p_transfers: schedule.p2p_transfers(),
        }
    }

    /// Mean measured duration of each pass kind per stage, with each stage's activation
    /// relative to the average stage and the fraction of it B frees (from its device's trace).
    /// A kind the schedule never ran is derived from the others (`b = w = bw / 2`). Stages
    /// that recomputed a microbatch also get their mean R duration and the fraction of their
    /// activation a recomputed microbatch kept ([`StepReport::kept_fractions`]).
    pub fn stage_costs(&self, schedule: &Schedule) -> Vec<StageCost> {
        let s = schedule.stages as usize;
        let mut sum = vec![[0.0f64; 5]; s];
        let mut n = vec![[0usize; 5]; s];
        for r in self.timeline.iter().flatten() {
            let (st, k) = (r.pass.stage as usize, r.pass.kind.index());
            sum[st][k] += r.end - r.start;
            n[st][k] += 1;
        }
        let (activation, fractions) = self.activation_profile(schedule);
        let kept = self.kept_fractions(schedule);
        let mean_act = activation.iter().sum::<f64>() / s.max(1) as f64;
        (0..s)
            .map(|st| {
                let mean = |k: PassKind| {
                    let i = k.index();
                    (n[st][i] > 0).then(|| sum[st][i] / n[st][i] as f64)
                };
                let f = mean(PassKind::F).unwrap_or(0.0);
                let bw = mean(PassKind::BW);
                let (b, w) = match (mean(PassKind::B), mean(PassKind::W), bw) {
                    (Some(b), Some(w), _) => (b, w),
                    (_, _, Some(x)) => (x / 2.0, x / 2.0),
                    (b, w, None) => (b.unwrap_or(0.0), w.unwrap_or(0.0)),
                };
                let device = schedule.device_of(st as u32) as usize;
                StageCost {
                    f,
                    b,
                    w,
                    bw,
                    activation: if mean_act > 0.0 {
                        activation[st] / mean_act
                    } else {
                        1.0
                    },
                    b_release: fractions.get(device).copied(),
                    comm: None,
                    optimizer: None,
                    comm_f: None,
                    comm_b: None,
                    r: mean(PassKind::R),
                    keep: kept.get(st).copied().flatten(),
                    offload: None,
                    selective: None,
                    selective_keep: None,
                }
            })
            .collect()
    }

    /// This step's measured costs as a stage table ([`StepReport::stage_costs`]), the
    /// measured hand-over latency between devices, and the bytes of the average stage's
    /// activation.
    pub fn measured_costs(&self, schedule: &Schedule) -> Result<StageCosts> {
        let table = self.stage_costs(schedule);
        let (activation, _) = self.activation_profile(schedule);
        let mean_act = activation.iter().sum::<f64>() / activation.len().max(1) as f64;
        let comm = self.measured_latency(schedule);
        let config = |e: pipeblocks_core::Error| crate::error::RuntimeError::config(e.to_string());
        StageCosts::table(table, comm, 0.0)
            .and_then(|c| c.with_activation_bytes(mean_act))
            .map_err(config)
    }

    /// Activation bytes one microbatch leaves on each stage after F (after F and R for a
    /// recomputed microbatch), and per device the fraction of its stages' activation that B
    /// releases (what W does not need), read off the memory trace. The fraction is 0 on devices
    /// that run no split backward.
    pub fn activation_profile(&self, schedule: &Schedule) -> (Vec<f64>, Vec<f64>) {
        let p = self.profile(schedule);
        (p.activation, p.fractions)
    }

    /// Per stage, the fraction of its activation a recomputed microbatch kept between its F and
    /// its R (the stage input, and the targets on the last stage), read off the memory trace:
    /// what F allocated over what F and R allocated together. `None` for stages that
    /// recomputed nothing.
    pub fn kept_fractions(&self, schedule: &Schedule) -> Vec<Option<f64>> {
        self.profile(schedule).keep
    }

    fn profile(&self, schedule: &Schedule) -> Profile {
        let s = schedule.stages as usize;
        let m = schedule.microbatches as usize;
        let mut recomputed = vec![false; s * m];
        for q in self.timeline.iter().flatten() {
            if q.pass.kind == PassKind::R && (q.pass.stage as usize) < s && (q.pass.mb as usize) < m
            {
                recomputed[q.pass.stage as usize * m + q.pass.mb as usize] = true;
            }
        }
        let is_recomputed = |q: Pass| {
            (q.stage as usize) < s
                && (q.mb as usize) < m
                && recomputed[q.stage as usize * m + q.mb as usize]
        };
        let mut alloc = vec![0.0f64; s];
        let mut count = vec![0usize; s];
        // Per stage: what the Fs of recomputed microbatches kept, and what they and their Rs
        // allocated together.
        let mut kept = vec![0.0f64; s];
        let mut kept_full = vec![0.0f64; s];
        let mut fractions = Vec::with_capacity(self.timeline.len());
        for l in &self.timeline {
            let (mut stored, mut released_at_b) = (0.0f64, 0.0f64);
            let mut prev = 0i64;
            for r in l {
                let now = r.held_after as i64;
                let delta = (now - prev) as f64;
                let st = r.pass.stage as usize;
                match r.pass.kind {
                    PassKind::F => {
                        alloc[st] += delta;
                        count[st] += 1;
                        stored += delta;
                        if is_recomputed(r.pass) {
                            kept[st] += delta;
                            kept_full[st] += delta;
                        }
                    }
                    PassKind::R => {
                        alloc[st] += delta;
                        stored += delta;
                        kept_full[st] += delta;
                    }
                    PassKind::B => released_at_b -= delta,
                    _ => {}
                }
                prev = now;
            }
            let has_b = l.iter().any(|r| r.pass.kind == PassKind::B);
            fractions.push(if has_b && stored > 0.0 {
                (released_at_b / stored).clamp(0.0, 1.0)
            } else {
                0.0
            });
        }
        let per_stage = (0..s)
            .map(|i| {
                if count[i] > 0 {
                    alloc[i] / count[i] as f64
                } else {
                    0.0
                }
            })
            .collect();
        let keep = (0..s)
            .map(|i| (kept_full[i] > 0.0).then(|| (kept[i] / kept_full[i]).clamp(0.0, 1.0)))
            .collect();
        Profile {
            activation: per_stage,
            fractions,
            keep,
        }
    }

    /// Peak activation bytes per device as the simulator predicts them from this model's
    /// per-stage activation sizes and the fraction each device's B released.
    pub fn predicted_peaks(&self, schedule: &Schedule) -> Result<Vec<f64>> {
        Ok(self.simulate_measured(schedule)?.peak_activation)
    }

    /// Mean measured hand-over latency between devices: over every cross-device dependency where
    /// the receiver sat idle waiting, the time from the sender's end to the receiver's start.
    /// It includes waking the receiving thread (and, on a loaded machine, waiting for a core).
    pub fn measured_latency(&self, schedule: &Schedule) -> f64 {
        if pipeblocks_core::validate(schedule).is_err() {
            return 0.0;
        }
        let Ok(net) = Net::of(schedule, &StageCosts::default()) else {
            return 0.0;
        };
        let mut at: std::collections::HashMap<pipeblocks_core::Pass, (usize, f64, f64)> =
            std::collections::HashMap::new();
        for (d, l) in self.timeline.iter().enumerate() {
            for r in l {
                at.insert(r.pass, (d, r.start, r.end));
            }
        }
        let (mut sum, mut n) = (0.0, 0usize);
        for (d, l) in self.timeline.iter().enumerate() {
            for (i, r) in l.iter().enumerate() {
                let free = if i > 0 { l[i - 1].end } else { 0.0 };
                // The last input to finish is the one the pass waited for.
                let latest = net
                    .inputs(r.pass)
                    .into_iter()
                    .flatten()
                    .filter_map(|slot| producer(&at, slot))
                    .max_by(|a, b| a.2.total_cmp(&b.2));
                if let Some(&(sd, _, send)) = latest {
                    if sd != d && send >= free {
                        sum += (r.start - send).max(0.0);
                        n += 1;
                    }
                }
            }
        }
        if n > 0 {
            sum / n as f64
        } else {
            0.0
        }
    }

    /// The simulator's prediction for this schedule fed with this step's measured per-pass costs
    /// (mean per stage and kind), hand-over latency and activation sizes; activations in bytes.
    pub fn simulate_measured(&self, schedule: &Schedule) -> Result<SimResult> {
        let config = |e: pipeblocks_core::Error| crate::error::RuntimeError::config(e.to_string());
        let costs = self.measured_costs(schedule)?;
        let bytes = costs
            .for_placement(&schedule.placement, schedule.devices)
            .map_err(config)?
            .unit_bytes
            .unwrap_or(1.0);
        let mut r = simulate(schedule, &costs).map_err(config)?;
        r.peak_activation.iter_mut().for_each(|x| *x *= bytes);
        for curve in &mut r.memory {
            curve.iter_mut().for_each(|x| x.1 *= bytes);
        }
        Ok(r)
    }
}

/// The memory figures read off a step's trace ([`StepReport::activation_profile`],
/// [`StepReport::kept_fractions`]).
struct Profile {
    activation: Vec<f64>,
    fractions: Vec<f64>,
    keep: Vec<Option<f64>>,
}

/// Where and when the pass that produced `slot` ran: `(device, start, end)`.
fn producer(
    at: &std::collections::HashMap<Pass, (usize, f64, f64)>,
    slot: Slot,
) -> Option<&(usize, f64, f64)> {
    [PassKind::B, PassKind::BW]
        .into_iter()
        .find_map(|k| at.get(&slot.producer(k)))
}
