//! The planner: from a model, a cluster and a global batch to the fastest configuration that
//! fits.
//!
//! A [`Config`] fixes the tensor-parallel degree `t` (within a node, with or without sequence
//! parallelism), the pipeline degree `p`, the data-parallel degree `d` (plain replicas or
//! sharded: ZeRO-1, ZeRO-2, ZeRO-3), the microbatch size `b` and count `m` (the global batch is
//! `d · b · m` sequences), the schedule and its chunks per device, the layer split, and the
//! activation recompute (none, selective, full). [`evaluate`] turns one into per-stage costs
//! ([`StageCosts`]), runs the schedule on the event engine and the training step ([`crate::step`])
//! on top, and reads off the iteration time, the throughput, the model FLOPs utilisation and
//! the peak memory of every device; [`plan`] searches the configurations.
//!
//! # Cost model (per transformer layer and microbatch; docs/plan.md has the derivations)
//!
//! - Compute: the FLOPs of [`crate::model`] divided by `t` and by the device's sustained rate.
//! - Tensor parallelism: four collectives of the layer's `2·s·b·h`-byte activation in the
//!   forward and four in the input backward (all-gathers and reduce-scatters with sequence
//!   parallelism, two all-reduces without: the same volume), each moving `(t−1)/t` of it over
//!   the node's link, not overlapped with compute (as in Megatron-LM's default).
//! - Recompute: *full* keeps each layer's input and reruns the forward (and its collectives)
//!   in the input backward; *selective* reruns the attention core (`4·b·s²·h` FLOPs).
//! - Activations (Korthikanti et al.): `34·s·b·h/t + 5·a·s²·b/t` bytes per layer with sequence
//!   parallelism (`s·b·h·(10 + 24/t)` for the first term without); selective drops the
//!   `5·a·s²·b` term, full keeps `2·s·b·h/t`; the last stage adds `4·s·b·V/t` of logits. The
//!   input backward frees all but what W needs, `32·s·b·h/t` (the zero-bubble paper's split).
//! - Data parallelism: the gradients of a device's stages (2 bytes per parameter) are
//!   all-reduced over `d` replicas (reduce-scatter and all-gather for ZeRO-1/2), each stage's
//!   starting after its last W, on the node's link when the replicas share a node and on the
//!   network otherwise. ZeRO-3 gathers a stage's parameters before its F and its B and
//!   reduce-scatters after its W, per microbatch, overlapped with the pass before: only what
//!   exceeds it is added to the pass.
//! - Optimizer: Adam over the device's (shard of the) parameters, bound by memory bandwidth
//!   (28 bytes read and written per parameter).
//! - Memory per device: parameters 2, gradients 2 and optimizer state 12 bytes per parameter
//!   (ZeRO's mixed-precision Adam), divided by `d` as the sharding says, plus the activation
//!   peak of the simulated schedule, plus [`RESERVE_BYTES`] and [`RESERVE_FRACTION`] of the
//!   device for the runtime's buffers.
//!
//! # Search
//!
//! Every configuration the fixed dimensions allow is enumerated with a lower bound on its
//! iteration time (its busiest device's work with no bubble, plus its optimizer). They are
//! evaluated in increasing order of that bound and the search stops when the bound of the next
//! one is no better than the `K`-th best found: pruning that cannot drop a configuration that
//! would have made the top `K`. `auto` (the memory-budgeted search) then refines the best few.

use serde::Serialize;

use crate::error::Error;
use crate::fsdp::GIB;
use crate::model::{DeviceSpec, ModelSpec};
use crate::params::{Params, StageCost, StageCosts};
use crate::step::{step_of, OptimizerMode, StepModel};
use crate::{generate, simulate, Schedule};

/// Memory set aside on every device for the runtime (CUDA context, communication buffers,
/// workspaces), bytes.
pub const RESERVE_BYTES: f64 = 2.0 * 1024.0 * 1024.0 * 1024.0;
/// Fraction of the device's memory set aside for the allocator's fragmentation.
pub const RESERVE_FRACTION: f64 = 0.05;
/// The memory a device sets aside for the runtime: [`RESERVE_BYTES`] plus [`RESERVE_FRACTION`]
/// of it.
fn reserve(dev: &DeviceSpec) -> f64 {
    RESERVE_BYTES + RESERVE_FRACTION * dev.memory
}

/// Bytes per parameter: 16-bit parameters and gradients, 32-bit master weights and Adam moments.
const PARAM_BYTES: f64 = 2.0;
const GRAD_BYTES: f64 = 2.0;
const OPTIMIZER_BYTES: f64 = 12.0;
/// Bytes read and written per parameter by an Adam step (master, moments, gradient, parameter).
const ADAM_TRAFFIC: f64 = 28.0;

/// The cluster: how many accelerators, how many per node, and what each is.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Cluster {
    /// Accelerators in all.
    pub gpus: u32,
    /// Accelerators per node (tensor parallelism stays within one).
    pub gpus_per_node: u32,
    /// The accelerator and its links.
    pub device: DeviceSpec,
}

/// Activation recomputation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Recompute {
    /// Keep every activation.
    None,
    /// Recompute the attention core (Korthikanti et al.'s selective recomputation).
    Selective,
    /// Keep each layer's input and rerun its forward in the backward.
    Full,
}

impl Recompute {
    /// Every kind.
    pub const ALL: [Recompute; 3] = [Recompute::None, Recompute::Selective, Recompute::Full];

    /// Its name: `none`, `selective`, `full`.
    pub fn name(self) -> &'static str {
        match self {
            Recompute::None => "none",
            Recompute::Selective => "selective",
            Recompute::Full => "full",
        }
    }

    /// Parses a name.
    pub fn parse(text: &str) -> Result<Self, Error> {
        Self::ALL
            .into_iter()
            .find(|r| r.name() == text.trim().to_ascii_lowercase())
            .ok_or_else(|| {
                Error::parse(
                    "recompute",
                    format!("`{text}`; use none, selective or full"),
                )
            })
    }
}

/// How the data-parallel replicas hold the parameters, gradients and optimizer state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Sharding {
    /// Plain replicas: everything on every replica, gradients all-reduced.
    Ddp,
    /// Optimizer state sharded (Megatron's distributed optimizer).
    Zero1,
    /// Optimizer state and gradients sharded.
    Zero2,
    /// Everything sharded, parameters gathered per pass (FSDP).
    Zero3,
}

impl Sharding {
    /// Every kind.
    pub const ALL: [Sharding; 4] = [
        Sharding::Ddp,
        Sharding::Zero1,
        Sharding::Zero2,
        Sharding::Zero3,
    ];

    /// Its name: `ddp`, `zero1`, `zero2`, `zero3`.
    pub fn name(self) -> &'static str {
        match self {
            Sharding::Ddp => "ddp",
            Sharding::Zero1 => "zero1",
            Sharding::Zero2 => "zero2",
            Sharding::Zero3 => "zero3",
        }
    }

    /// Parses a name (`fsdp` is `zero3`).
    pub fn parse(text: &str) -> Result<Self, Error> {
        let t = text.trim().to_ascii_lowercase();
        if t == "fsdp" {
            return Ok(Sharding::Zero3);
        }
        Self::ALL
            .into_iter()
            .find(|s| s.name() == t)
            .ok_or_else(|| {
                Error::parse(
                    "sharding",
                    format!("`{text}`; use ddp, zero1, zero2, zero3 (or fsdp)"),
                )
            })
    }

    /// Bytes per parameter a replica holds of (parameters, gradients, optimizer state).
    fn bytes(self, d: f64) -> (f64, f64, f64) {
        match self {
            Sharding::Ddp => (PARAM_BYTES, GRAD_BYTES, OPTIMIZER_BYTES),
            Sharding::Zero1 => (PARAM_BYTES, GRAD_BYTES, OPTIMIZER_BYTES / d),
            Sharding::Zero2 => (PARAM_BYTES, GRAD_BYTES / d, OPTIMIZER_BYTES / d),
            Sharding::Zero3 => (PARAM_BYTES / d, GRAD_BYTES / d, OPTIMIZER_BYTES / d),
        }
    }
}

/// The schedules the planner tries, with their chunks per device.
pub const SCHEDULES: &[(&str, u32)] = &[
    ("1f1b", 1),
    ("interleaved-1f1b", 2),
    ("interleaved-1f1b", 4),
    ("zb-h1", 1),
    ("zb-h2", 1),
    ("zb-v", 2),
    ("v-half", 2),
    ("v-min", 2),
    ("zeropp", 2),
];

/// One configuration.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Config {
    /// Tensor-parallel degree.
    pub tp: u32,
    /// Pipeline degree (devices of one pipeline).
    pub pp: u32,
    /// Data-parallel degree.
    pub dp: u32,
    /// How the replicas shard their state.
    pub sharding: Sharding,
    /// Sequences per microbatch.
    pub microbatch_size: u32,
    /// Microbatches per pipeline and iteration.
    pub microbatches: u32,
    /// Schedule name (`auto@X` for auto at a budget of X units).
    pub schedule: String,
    /// Stages per device (interleaved and V schedules: more than 1).
    pub chunks: u32,
    /// ZeroPP's scheduling unit, microbatches (its FSDP gather window); 0 for other schedules.
    pub group: u32,
    /// Activation recomputation.
    pub recompute: Recompute,
    /// Sequence parallelism with tensor parallelism.
    pub sequence_parallel: bool,
}

/// What a device's memory holds at its peak, bytes.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct MemoryBreakdown {
    /// Parameters (the replica's share).
    pub params: f64,
    /// Gradients.
    pub grads: f64,
    /// Optimizer state.
    pub optimizer: f64,
    /// Gathered parameters and full gradients of ZeRO-3.
    pub gathered: f64,
    /// Activations at the schedule's peak.
    pub activations: f64,
    /// The runtime's allowance.
    pub reserved: f64,
    /// All of it.
    pub total: f64,
}

/// The evaluation of one configuration.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Evaluation {
    /// The configuration.
    pub config: Config,
    /// Layers of each stage, in stage order.
    pub layers_per_stage: Vec<u32>,
    /// Predicted time per iteration, seconds.
    pub iteration_seconds: f64,
    /// Tokens per second per accelerator.
    pub tokens_per_second_per_gpu: f64,
    /// Model FLOPs utilisation (recomputation not counted as useful work).
    pub mfu: f64,
    /// Peak memory of each pipeline device, bytes.
    pub peak_memory_bytes: Vec<f64>,
    /// Its breakdown, per device.
    pub memory: Vec<MemoryBreakdown>,
    /// Whether every device fits the accelerator's memory.
    pub fits: bool,
    /// The pipeline flush alone: time 0 to its last pass, seconds.
    pub pipeline_seconds: f64,
    /// Idle share of the pipeline devices over the iteration.
    pub bubble_rate: f64,
    /// Tensor-parallel communication in the busiest device's passes, seconds per iteration.
    pub tp_comm_seconds: f64,
    /// Data-parallel synchronisation that runs past a device's last pass, seconds (largest).
    pub dp_exposed_seconds: f64,
    /// Optimizer step, seconds (largest device).
    pub optimizer_seconds: f64,
    /// Recomputation in the busiest device's passes, seconds per iteration.
    pub recompute_seconds: f64,
    /// What bounds this configuration most.
    pub binding: String,
}

impl Evaluation {
    /// Largest peak over the devices, bytes.
    pub fn max_peak(&self) -> f64 {
        self.peak_memory_bytes.iter().copied().fold(0.0, f64::max)
    }
}

/// Dimensions the user fixed (`None`: searched).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Fixed {
    /// Tensor-parallel degree.
    pub tp: Option<u32>,
    /// Pipeline degree.
    pub pp: Option<u32>,
    /// Data-parallel degree.
    pub dp: Option<u32>,
    /// Sharding.
    pub sharding: Option<Sharding>,
    /// Microbatch size.
    pub microbatch_size: Option<u32>,
    /// Schedules to try (names; `auto` included means the refinement runs).
    pub schedules: Option<Vec<String>>,
    /// Chunks per device for the looped schedules.
    pub chunks: Option<u32>,
    /// Recompute.
    pub recompute: Option<Recompute>,
    /// Sequence parallelism.
    pub sequence_parallel: Option<bool>,
}

/// A planning request.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    /// The model (its `seq` is the training sequence length).
    pub model: ModelSpec,
    /// The cluster.
    pub cluster: Cluster,
    /// Sequences per iteration, all replicas together.
    pub global_batch: u32,
    /// What is fixed.
    pub fixed: Fixed,
    /// How many configurations to return.
    pub top: usize,
    /// Whether a point-to-point send holds its device (Megatron-LM's synchronous p2p) or only
    /// delays the receiver (asynchronous sends).
    pub p2p_blocking: bool,
}

/// What [`plan`] found.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PlanResult {
    /// The fastest configurations that fit, fastest first.
    pub best: Vec<Evaluation>,
    /// The fastest configuration found that is faster than the best but does not fit.
    pub faster_but_too_big: Option<Evaluation>,
    /// Configurations enumerated.
    pub enumerated: usize,
    /// Configurations simulated.
    pub simulated: usize,
    /// Of the best, how many shapes `auto` refined.
    pub refined: usize,
}

/// Per-stage figures of one configuration, before the schedule runs.
struct Stages {
    costs: StageCosts,
    /// The table behind `costs` (activation relative to the mean stage), its p2p latency and
    /// the mean stage's activation bytes: what a stage-cost file of the configuration holds.
    table: Vec<StageCost>,
    comm: f64,
    activation_bytes: f64,
    layers: Vec<u32>,
    /// Parameters of each stage on one tensor-parallel rank.
    params: Vec<f64>,
    /// Per stage, the tensor-parallel communication and the recomputation inside one
    /// microbatch's passes, seconds.
    tp_comm: Vec<f64>,
    recompute: Vec<f64>,
    /// Gradient sync per stage at the end of the step, seconds (ZeRO-3: 0).
    grad_sync: Vec<f64>,
    /// Bandwidth of the data-parallel group's collectives, bytes/s.
    dp_bandwidth: f64,
    /// Model FLOPs of one iteration (no recomputation).
    model_flops: f64,
}

/// The bandwidth of the data-parallel group's collectives: the node's link when a whole group
/// shares a node (tensor ranks innermost, then data, then pipeline, as Megatron-LM orders
/// them), else the network.
fn dp_link(c: &Cluster, tp: u32, dp: u32) -> f64 {
    if tp.saturating_mul(dp) <= c.gpus_per_node {
        c.device.intra_bandwidth
    } else {
        c.device.bandwidth
    }
}

/// The bandwidth between pipeline devices `a` and `b`: their first ranks are `tp · dp` apart
/// per pipeline position, on one node or not.
fn p2p_link(c: &Cluster, tp: u32, dp: u32, a: u32, b: u32) -> f64 {
    let stride = u64::from(tp) * u64::from(dp);
    let node = u64::from(c.gpus_per_node.max(1));
    if u64::from(a) * stride / node == u64::from(b) * stride / node {
        c.device.intra_bandwidth
    } else {
        c.device.p2p_bandwidth
    }
}

/// Layers per stage for `stages` stages, the last one also carrying the output head worth
/// `head` layers of time: the split that minimises the slowest stage, earlier stages taking
/// the remainder. `None` if a stage would get no layer.
pub fn balanced_split(layers: u32, stages: u32, head: f64) -> Option<Vec<u32>> {
    if stages == 0 || stages > layers {
        return None;
    }
    if stages == 1 {
        return Some(vec![layers]);
    }
    // The smallest load c such that the last stage holds floor(c - head) ≥ 1 layers and the
    // others floor(c) each, enough for all layers.
    let fits = |c: f64| -> bool {
        let last = (c - head + 1e-9).floor();
        let other = (c + 1e-9).floor();
        last >= 1.0 && last + other * f64::from(stages - 1) >= f64::from(layers)
    };
    let mut candidates: Vec<f64> = (1..=layers)
        .flat_map(|k| [f64::from(k), f64::from(k) + head])
        .collect();
    candidates.sort_by(f64::total_cmp);
    let c = candidates.into_iter().find(|&c| fits(c))?;
    let last = ((c - head + 1e-9).floor() as u32).min(layers - (stages - 1));
    let rest = layers - last;
    let (base, extra) = (rest / (stages - 1), rest % (stages - 1));
    if base == 0 {
        return None;
    }
    let mut out: Vec<u32> = (0..stages - 1)
        .map(|s| base + u32::from(s < extra))
        .collect();
    out.push(last);
    Some(out)
}

/// The per-stage costs of a configuration.
fn stages_of(req: &Request, cfg: &Config) -> Result<Stages, Error> {
    let m = &req.model;
    let dev = &req.cluster.device;
    let (t, b) = (f64::from(cfg.tp), f64::from(cfg.microbatch_size));
    let (s, h, a, v) = (
        m.seq as f64,
        m.hidden as f64,
        m.heads as f64,
        m.vocab as f64,
    );
    let n_stages = cfg.pp * cfg.chunks;
    let rate = dev.sustained() * t;
    let pm = m.matmul_params();
    let attn = 4.0 * b * s * s * h;
    let lf = 2.0 * s * b * pm + attn;
    let lb = 2.0 * s * b * pm + 2.0 * attn;
    let lw = 2.0 * s * b * pm;
    let head_flops = 2.0 * s * b * h * v;
    // Tensor-parallel collectives of one pass of a layer.
    let tp_pass = if cfg.tp > 1 {
        4.0 * ((t - 1.0) / t * 2.0 * s * b * h / dev.intra_bandwidth + dev.latency)
    } else {
        0.0
    };
    let (f_l, b_l, w_l) = (lf / rate + tp_pass, lb / rate + tp_pass, lw / rate);
    let (re_l, act_l) = {
        let sp = cfg.sequence_parallel || cfg.tp == 1;
        let first = if sp {
            34.0 * s * b * h / t
        } else {
            s * b * h * (10.0 + 24.0 / t)
        };
        let scores = 5.0 * a * s * s * b / t;
        match cfg.recompute {
            Recompute::None => (0.0, first + scores),
            Recompute::Selective => (attn / rate, first),
            Recompute::Full => (lf / rate + tp_pass, 2.0 * s * b * h / t),
        }
    };
    let head = 3.0 * head_flops / rate / (f_l + b_l + w_l + re_l);
    let layers = balanced_split(m.layers, n_stages, head).ok_or_else(|| {
        Error::config(format!(
            "{} layers cannot fill {n_stages} pipeline stages",
            m.layers
        ))
    })?;
    // What W still needs after B (the zero-bubble paper's 32·s·b·h), as a share of a layer's.
    let w_keeps = (32.0 * s * b * h / t).min(act_l);
    let split = !matches!(cfg.schedule.as_str(), "1f1b" | "interleaved-1f1b" | "gpipe");
    let (act_l, release) = if cfg.recompute == Recompute::Full && split {
        // B reruns the forward, then W needs its inputs: held from F on, conservatively.
        (act_l + w_keeps, 1.0 - w_keeps / (act_l + w_keeps))
    } else {
        (act_l, 1.0 - w_keeps / act_l)
    };
    let dp_bw = dp_link(&req.cluster, cfg.tp, cfg.dp);
    let placement = placement_of(cfg);
    let act_bytes = 2.0 * s * b * h / t;
    // Each stage's link to the next: the node's when the two pipeline devices share a node.
    let link = |st: usize| -> f64 {
        let a = placement.device_of(st as u32, cfg.pp);
        let bdev = placement.device_of(st as u32 + 1, cfg.pp);
        act_bytes / p2p_link(&req.cluster, cfg.tp, cfg.dp, a, bdev) + dev.latency
    };
    // The table's default latency: the slowest link (every stage below names its own).
    let comm = (0..n_stages as usize - 1)
        .map(link)
        .fold(dev.latency, f64::max);
    let d = f64::from(cfg.dp);
    let mut out = Stages {
        costs: StageCosts::default(),
        table: Vec::new(),
        comm,
        activation_bytes: 0.0,
        layers: layers.clone(),
        params: Vec::new(),
        tp_comm: Vec::new(),
        recompute: Vec::new(),
        grad_sync: Vec::new(),
        dp_bandwidth: dp_bw,
        model_flops: 0.0,
    };
    let mut table = Vec::new();
    let mut acts = Vec::new();
    for (st, &n) in layers.iter().enumerate() {
        let nf = f64::from(n);
        let last = st + 1 == layers.len();
        let mut params = nf * m.layer_params() / t;
        let (mut f, mut bb, mut w) = (nf * f_l, nf * b_l + nf * re_l, nf * w_l);
        if req.p2p_blocking {
            // The F's send of its output and the B's send of its input gradient hold the
            // device when they leave it (docs/published.md: what explains Megatron's
            // interleaved runs).
            let here = placement.device_of(st as u32, cfg.pp);
            let crosses = |other: usize| placement.device_of(other as u32, cfg.pp) != here;
            if st + 1 < layers.len() && crosses(st + 1) {
                f += link(st);
            }
            if st > 0 && crosses(st - 1) {
                bb += link(st - 1);
            }
        }
        let mut act = nf * act_l;
        if st == 0 {
            params += v * h / t;
        }
        if last {
            params += v * h / t;
            f += head_flops / rate;
            bb += head_flops / rate;
            w += head_flops / rate;
            act += 4.0 * s * b * v / t;
        }
        let ring = |factor: f64| {
            if cfg.dp > 1 {
                factor * (d - 1.0) / d * params * GRAD_BYTES / dp_bw + dev.latency
            } else {
                0.0
            }
        };
        // ZeRO-3's gathers and reduce-scatters are simulated with the schedule (`finish`).
        let grad_sync = if cfg.sharding == Sharding::Zero3 {
            0.0
        } else {
            ring(2.0)
        };
        out.params.push(params);
        out.tp_comm.push(nf * 2.0 * tp_pass);
        out.recompute.push(nf * re_l);
        out.grad_sync.push(grad_sync);
        acts.push(act);
        table.push(StageCost {
            f,
            b: bb,
            w,
            bw: None,
            activation: act,
            b_release: Some(release),
            comm: (st + 1 < layers.len()).then(|| link(st)),
            optimizer: None,
            comm_f: None,
            comm_b: None,
            r: None,
            keep: None,
            offload: None,
            selective: None,
            selective_keep: None,
        });
    }
    let mean = acts.iter().sum::<f64>() / acts.len() as f64;
    for c in &mut table {
        c.activation /= mean;
    }
    out.costs = StageCosts::table(table.clone(), comm, 0.0)?.with_activation_bytes(mean)?;
    out.table = table;
    out.activation_bytes = mean;
    let per_sequence = |x: f64| x / b;
    out.model_flops = f64::from(req.global_batch)
        * (f64::from(m.layers) * per_sequence(lf + lb + lw) + 3.0 * per_sequence(head_flops));
    Ok(out)
}

/// Evaluates one configuration: simulates its schedule and its training step.
pub fn evaluate(req: &Request, cfg: &Config) -> Result<Evaluation, Error> {
    let st = stages_of(req, cfg)?;
    run_config(req, cfg, &st)
}

/// The microbatch counts a configuration is simulated at: its own when small, else two counts
/// in its steady state (`None`), between which [`run_config`] extrapolates.
fn sampled_counts(cfg: &Config) -> Option<(u32, u32)> {
    let step = if cfg.group > 0 {
        lcm(cfg.pp, cfg.group)
    } else {
        cfg.pp
    };
    let up = |x: u32| x.div_ceil(step) * step;
    // Past the warm-up of every schedule here (at most about 2·p·v microbatches in flight),
    // then at least one more full round of the pipeline.
    let m1 = up(4 * cfg.pp * cfg.chunks);
    let m2 = m1 + up(2 * cfg.pp * cfg.chunks);
    (cfg.microbatches > m2 + step).then_some((m1, m2))
}

fn lcm(a: u32, b: u32) -> u32 {
    let gcd = |mut x: u32, mut y: u32| {
        while y != 0 {
            (x, y) = (y, x % y);
        }
        x
    };
    a / gcd(a, b).max(1) * b
}

/// Evaluates a configuration whose stage costs are known. A long step (many microbatches) is
/// simulated at two microbatch counts `m1 < m2` in its steady state and extrapolated: every
/// schedule here repeats a fixed pattern once past its warm-up, so its time and memory grow by
/// the same amount per microbatch from then on (zero for bounded memory), and that slope, taken
/// from the simulator itself, carries them to `m`.
fn run_config(req: &Request, cfg: &Config, st: &Stages) -> Result<Evaluation, Error> {
    let Some((m1, m2)) = sampled_counts(cfg) else {
        let schedule = schedule_of(cfg, &st.costs)?;
        return finish(req, cfg, st, &schedule);
    };
    let at = |m: u32| -> Result<Evaluation, Error> {
        let mut c = cfg.clone();
        c.microbatches = m;
        if c.group == cfg.microbatches {
            c.group = m; // breadth-first: one unit of all microbatches
        }
        let schedule = schedule_of(&c, &st.costs)?;
        finish(req, &c, st, &schedule)
    };
    let (e1, e2) = (at(m1)?, at(m2)?);
    let k = f64::from(cfg.microbatches - m2) / f64::from(m2 - m1);
    let ext = |a: f64, b: f64| b + (b - a).max(0.0) * k;
    let mut ev = e2.clone();
    ev.config = cfg.clone();
    ev.iteration_seconds = ext(e1.iteration_seconds, e2.iteration_seconds);
    ev.pipeline_seconds = ext(e1.pipeline_seconds, e2.pipeline_seconds);
    ev.tp_comm_seconds = ext(e1.tp_comm_seconds, e2.tp_comm_seconds);
    ev.recompute_seconds = ext(e1.recompute_seconds, e2.recompute_seconds);
    for (m, (a, b)) in ev.memory.iter_mut().zip(e1.memory.iter().zip(&e2.memory)) {
        m.activations = ext(a.activations, b.activations);
        m.gathered = ext(a.gathered, b.gathered);
        m.total = m.params + m.grads + m.optimizer + m.gathered + m.activations + m.reserved;
    }
    ev.peak_memory_bytes = ev.memory.iter().map(|m| m.total).collect();
    let dev = &req.cluster.device;
    let gpus = f64::from(req.cluster.gpus);
    let period = ev.iteration_seconds;
    ev.fits = ev.peak_memory_bytes.iter().all(|&x| x <= dev.memory);
    ev.tokens_per_second_per_gpu =
        f64::from(req.global_batch) * req.model.seq as f64 / period / gpus;
    ev.mfu = st.model_flops / (period * gpus * dev.flops);
    // The idle share shrinks towards the steady state's: busy time grows by m's work.
    let busy2 = (1.0 - e2.bubble_rate) * e2.iteration_seconds;
    let busy = busy2 * f64::from(cfg.microbatches) / f64::from(m2);
    ev.bubble_rate = (1.0 - busy / period).max(0.0);
    ev.binding = binding(&ev, dev.memory);
    Ok(ev)
}

/// What a configuration runs: its schedule, and its stage costs as a stage-cost file (the
/// `pipeblocks-stage-costs` JSON that `simulate --stage-costs` reads: simulating the schedule
/// under it gives [`Evaluation::pipeline_seconds`]).
pub fn build(req: &Request, cfg: &Config) -> Result<(Schedule, String), Error> {
    let st = stages_of(req, cfg)?;
    let schedule = schedule_of(cfg, &st.costs)?;
    let text = crate::format::stage_costs::write_with_bytes(
        &st.table,
        st.comm,
        0.0,
        Some(st.activation_bytes),
    );
    crate::format::stage_costs::read(&text)?;
    Ok((schedule, text))
}

/// The schedule a configuration runs under its stage costs.
fn schedule_of(cfg: &Config, costs: &StageCosts) -> Result<Schedule, Error> {
    let mut prm = Params::new(cfg.pp, cfg.microbatches)?
        .with_chunks(cfg.chunks)?
        .with_costs(costs.clone());
    if cfg.group > 0 {
        prm = prm.with_group(cfg.group)?;
    }
    match cfg.schedule.strip_prefix("auto@") {
        Some(units) => {
            let u: f64 = units
                .parse()
                .map_err(|_| Error::config(format!("bad auto budget `{units}`")))?;
            // The planner chooses recomputation itself (per configuration, in its memory and
            // time model): auto here holds every activation on its devices.
            let mut s = crate::search::search_on_device(&prm, u)?.schedule;
            s.name = "auto".into();
            Ok(s)
        }
        None => generate(&cfg.schedule, &prm),
    }
}

fn finish(
    req: &Request,
    cfg: &Config,
    st: &Stages,
    schedule: &Schedule,
) -> Result<Evaluation, Error> {
    let dev = &req.cluster.device;
    let r0 = simulate(schedule, &st.costs)?;
    let p = cfg.pp as usize;
    let d = f64::from(cfg.dp);
    let (pb, gb, ob) = cfg.sharding.bytes(d);
    let mut dev_params = vec![0.0; p];
    let mut tp_comm = vec![0.0; p];
    let mut recompute = vec![0.0; p];
    // A table of more stages than the schedule's (auto may pick one chunk per device from a
    // two-chunk table) merges `k` consecutive table stages into each of the schedule's.
    let k = (st.params.len() / schedule.stages.max(1) as usize).max(1);
    for (i, &pr) in st.params.iter().enumerate() {
        let dv = schedule.device_of((i / k) as u32) as usize;
        dev_params[dv] += pr;
        tp_comm[dv] += st.tp_comm[i] * f64::from(cfg.microbatches);
        recompute[dv] += st.recompute[i] * f64::from(cfg.microbatches);
    }
    let optimizer: Vec<f64> = dev_params
        .iter()
        .map(|&ps| {
            let local = if cfg.sharding == Sharding::Ddp {
                ps
            } else {
                ps / d
            };
            local * ADAM_TRAFFIC / dev.memory_bandwidth
        })
        .collect();
    let model = StepModel {
        mode: OptimizerMode::Sync,
        optimizer: optimizer.clone(),
        grad_sync: st.grad_sync.chunks(k).map(|g| g.iter().sum()).collect(),
        overlap_grad_sync: true,
        iterations: crate::step::DEFAULT_ITERATIONS,
    };
    let unit = st
        .costs
        .for_placement(&schedule.placement, schedule.devices)?
        .unit_bytes
        .unwrap_or(0.0);
    let reserve = reserve(dev);
    let shards = |i: usize| MemoryBreakdown {
        params: dev_params[i] * pb,
        grads: dev_params[i] * gb,
        optimizer: dev_params[i] * ob,
        reserved: reserve,
        ..MemoryBreakdown::default()
    };
    // The flush, its period and each device's memory: with ZeRO-3 from the FSDP simulator
    // (`simulate --fsdp`'s: gathers and reduce-scatters on their own stream, gathered buffers
    // and full gradients counted while they live), else from the engine and the step model.
    let (r, pipeline, period, dp_exposed, memory) = if cfg.sharding == Sharding::Zero3 && cfg.dp > 1
    {
        let mut sched_params = vec![0.0; schedule.stages as usize];
        for (i, &pr) in st.params.iter().enumerate() {
            sched_params[i / k] += pr;
        }
        let f = crate::fsdp::FsdpConfig::new(cfg.dp, st.dp_bandwidth, dev.latency, sched_params);
        let window = if cfg.group > 0 {
            cfg.group
        } else {
            cfg.microbatches
        };
        let plan = crate::fsdp::FsdpPlan::derive(schedule, window, &st.costs, &f)?;
        let res = crate::fsdp::simulate_fsdp(schedule, &plan, &st.costs, &f)?;
        let opt = optimizer.iter().copied().fold(0.0, f64::max);
        let memory: Vec<MemoryBreakdown> = (0..p)
            .map(|i| {
                let mut mb = shards(i);
                mb.activations = res.peak_activation[i];
                let statics = mb.params + mb.grads + mb.optimizer;
                // The buffers at the device's peak: what the peak holds beyond the shards and
                // the activations' own peak (at least 0).
                mb.gathered = (res.peak_memory[i] - statics - mb.activations).max(0.0);
                mb.total = statics + mb.gathered + mb.activations + mb.reserved;
                mb
            })
            .collect();
        let exposed = res.max_exposed_comm();
        (
            res.compute.clone(),
            res.makespan,
            res.makespan + opt,
            exposed,
            memory,
        )
    } else {
        let step = step_of(schedule, &st.costs, &model, &r0)?;
        let memory: Vec<MemoryBreakdown> = (0..p)
            .map(|i| {
                let mut mb = shards(i);
                mb.activations = r0.peak_activation[i] * unit;
                mb.total = mb.params + mb.grads + mb.optimizer + mb.activations + mb.reserved;
                mb
            })
            .collect();
        let exposed = step.grad_sync_exposed.iter().copied().fold(0.0, f64::max);
        (r0.clone(), r0.makespan, step.period, exposed, memory)
    };
    let peak: Vec<f64> = memory.iter().map(|m| m.total).collect();
    let fits = peak.iter().all(|&x| x <= dev.memory);
    let gpus = f64::from(req.cluster.gpus);
    let tokens = f64::from(req.global_batch) * req.model.seq as f64;
    let busiest = (0..p)
        .max_by(|&x, &y| r.busy[x].total_cmp(&r.busy[y]))
        .unwrap_or(0);
    let opt_max = optimizer.iter().copied().fold(0.0, f64::max);
    let mut ev = Evaluation {
        config: cfg.clone(),
        layers_per_stage: st.layers.clone(),
        iteration_seconds: period,
        tokens_per_second_per_gpu: tokens / period / gpus,
        mfu: st.model_flops / (period * gpus * dev.flops),
        peak_memory_bytes: peak,
        memory,
        fits,
        pipeline_seconds: pipeline,
        bubble_rate: 1.0 - r.busy.iter().sum::<f64>() / (p as f64 * period),
        tp_comm_seconds: tp_comm[busiest],
        dp_exposed_seconds: dp_exposed,
        optimizer_seconds: opt_max,
        recompute_seconds: recompute[busiest],
        binding: String::new(),
    };
    ev.binding = binding(&ev, dev.memory);
    Ok(ev)
}

/// What bounds a configuration most: its memory when nearly full, else the largest share of
/// the iteration lost to something other than useful compute.
fn binding(ev: &Evaluation, capacity: f64) -> String {
    let used = ev.max_peak() / capacity;
    if used > 0.9 {
        return format!("memory ({:.0}% of the device)", 100.0 * used);
    }
    let t = ev.iteration_seconds;
    let losses = [
        ("pipeline bubble", ev.bubble_rate * t),
        ("tensor-parallel communication", ev.tp_comm_seconds),
        ("data-parallel synchronisation", ev.dp_exposed_seconds),
        ("recomputation", ev.recompute_seconds),
        ("optimizer step", ev.optimizer_seconds),
    ];
    let (what, x) = losses
        .into_iter()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap_or(("compute", 0.0));
    if x <= 0.01 * t {
        "compute".into()
    } else {
        format!("{what} ({:.0}% of the iteration)", 100.0 * x / t)
    }
}

/// Puts `ev` into the `top` fastest `best` (kept sorted, fastest first).
fn offer(best: &mut Vec<Evaluation>, ev: Evaluation, top: usize) {
    let at = best
        .iter()
        .position(|b| ev.iteration_seconds < b.iteration_seconds)
        .unwrap_or(best.len());
    best.insert(at, ev);
    best.truncate(top);
}

/// A configuration to evaluate, with the lower bound of its iteration time.
struct Candidate {
    cfg: Config,
    bound: f64,
    stages: Stages,
}

fn divisors(n: u32) -> Vec<u32> {
    (1..=n).filter(|k| n.is_multiple_of(*k)).collect()
}

/// Checks a request and names the smallest change when no configuration can exist.
fn check(req: &Request) -> Result<(), Error> {
    let c = &req.cluster;
    let m = &req.model;
    m.check()?;
    if m.moe.is_some() {
        return Err(Error::change(
            format!(
                "{} has experts, and the planner does not search expert parallelism yet; compare schedules for it with `compare --model`",
                m.name
            ),
            crate::error::Param::Model,
        ));
    }
    let f = &req.fixed;
    if let Some(names) = &f.schedules {
        let only_zeropp = !names.is_empty() && names.iter().all(|n| n == "zeropp");
        if only_zeropp && f.sharding.is_some_and(|s| s != Sharding::Zero3) {
            return Err(Error::config(
                "ZeroPP's units are gather windows of sharded parameters: it needs ZeRO-3 sharding; use zero3 or another schedule",
            ));
        }
    }
    if c.gpus == 0 || c.gpus_per_node == 0 || req.global_batch == 0 {
        return Err(Error::config(
            "the number of accelerators, accelerators per node and the global batch must be at least 1",
        ));
    }
    if !c.gpus.is_multiple_of(c.gpus_per_node) && c.gpus > c.gpus_per_node {
        return Err(Error::config(format!(
            "{} accelerators is not a whole number of nodes of {}; use a multiple of {}",
            c.gpus, c.gpus_per_node, c.gpus_per_node
        )));
    }
    if let Some(t) = req.fixed.tp {
        if t == 0
            || !m.heads.is_multiple_of(u64::from(t))
            || !m.kv_heads.is_multiple_of(u64::from(t))
        {
            let ok: Vec<String> = divisors(c.gpus_per_node.min(c.gpus))
                .into_iter()
                .filter(|k| {
                    m.heads.is_multiple_of(u64::from(*k))
                        && m.kv_heads.is_multiple_of(u64::from(*k))
                })
                .map(|k| k.to_string())
                .collect();
            return Err(Error::config(format!(
                "a tensor-parallel degree of {t} does not divide the model's {} attention heads ({} key/value heads); use {}",
                m.heads,
                m.kv_heads,
                ok.join(", ")
            )));
        }
        if t > c.gpus_per_node {
            return Err(Error::config(format!(
                "a tensor-parallel degree of {t} spans more than one node of {}; use at most {}",
                c.gpus_per_node, c.gpus_per_node
            )));
        }
    }
    Ok(())
}

/// Every configuration the request allows, with its lower bound.
fn enumerate(req: &Request) -> Result<(Vec<Candidate>, usize), Error> {
    let c = &req.cluster;
    let m = &req.model;
    let f = &req.fixed;
    let mut out = Vec::new();
    let mut count = 0usize;
    let mut first_error: Option<Error> = None;
    let tps: Vec<u32> = divisors(c.gpus_per_node.min(c.gpus))
        .into_iter()
        .filter(|t| f.tp.is_none_or(|x| x == *t))
        .filter(|t| {
            m.heads.is_multiple_of(u64::from(*t)) && m.kv_heads.is_multiple_of(u64::from(*t))
        })
        .collect();
    let schedules: Vec<(String, u32)> = match &f.schedules {
        Some(names) => {
            let mut v = Vec::new();
            for n in names.iter().filter(|n| n.as_str() != "auto") {
                let listed: Vec<u32> = SCHEDULES
                    .iter()
                    .filter(|(s, _)| s == n)
                    .map(|(_, k)| *k)
                    .collect();
                if listed.is_empty() {
                    if crate::registry::find(n).is_err()
                        || n == "zeropp"
                        || n == "bfs"
                        || n == "gpipe"
                    {
                        return Err(Error::config(format!(
                            "the planner does not search `{n}`; it tries {} and auto",
                            planner_schedule_names().join(", ")
                        )));
                    }
                    v.push((n.clone(), 1));
                }
                for k in listed {
                    v.push((n.clone(), f.chunks.unwrap_or(k)));
                }
            }
            v.sort();
            v.dedup();
            v
        }
        None => {
            let mut v: Vec<(String, u32)> = SCHEDULES
                .iter()
                .map(|(s, k)| {
                    let k = if *k > 1 && *s == "interleaved-1f1b" {
                        f.chunks.unwrap_or(*k)
                    } else {
                        *k
                    };
                    ((*s).to_string(), k)
                })
                .collect();
            v.dedup();
            v
        }
    };
    let recomputes: Vec<Recompute> = match f.recompute {
        Some(r) => vec![r],
        None => Recompute::ALL.to_vec(),
    };
    let shardings: Vec<Sharding> = match f.sharding {
        Some(s) => vec![s],
        None => Sharding::ALL.to_vec(),
    };
    for &tp in &tps {
        let rest = c.gpus / tp;
        for pp in divisors(rest) {
            if f.pp.is_some_and(|x| x != pp) || pp > m.layers {
                continue;
            }
            let dp = rest / pp;
            if f.dp.is_some_and(|x| x != dp) || !req.global_batch.is_multiple_of(dp) {
                continue;
            }
            let per_replica = req.global_batch / dp;
            let sizes: Vec<u32> = match f.microbatch_size {
                Some(b) => vec![b],
                None => [1u32, 2, 4, 8, 16].to_vec(),
            };
            for b in sizes {
                if !per_replica.is_multiple_of(b) {
                    continue;
                }
                let mb = per_replica / b;
                for &(ref name, chunks) in &schedules {
                    let chunks = if pp == 1 { 1 } else { chunks };
                    if pp == 1 && name != "1f1b" {
                        continue;
                    }
                    if pp * chunks > m.layers {
                        continue;
                    }
                    if name == "interleaved-1f1b" && !mb.is_multiple_of(pp) {
                        continue;
                    }
                    // ZeroPP only with sharded parameters: its units are FSDP gather windows.
                    let groups: Vec<u32> = if name == "zeropp" {
                        zeropp_groups(mb)
                    } else {
                        vec![0]
                    };
                    for &group in &groups {
                        for &rc in &recomputes {
                            for sp in sp_options(tp, f.sequence_parallel) {
                                for &sh in &shardings {
                                    if (dp == 1 && sh != Sharding::Ddp)
                                        || (group > 0 && (sh != Sharding::Zero3 || dp == 1))
                                    {
                                        continue;
                                    }
                                    count += 1;
                                    let cfg = Config {
                                        tp,
                                        pp,
                                        dp,
                                        sharding: sh,
                                        microbatch_size: b,
                                        microbatches: mb,
                                        schedule: name.clone(),
                                        chunks,
                                        group,
                                        recompute: rc,
                                        sequence_parallel: sp,
                                    };
                                    // A configuration whose sizes are out of range (an
                                    // activation of exabytes) is not a candidate.
                                    match stages_of(req, &cfg) {
                                        Ok(stages) => {
                                            let bound =
                                                lower_bound(&cfg, &stages, &req.cluster.device);
                                            out.push(Candidate { cfg, bound, stages });
                                        }
                                        Err(e) => {
                                            first_error.get_or_insert(e);
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    if out.is_empty() {
        if let Some(e) = first_error {
            return Err(Error::config(format!(
                "no configuration can be evaluated: {}; use a shorter sequence, a smaller microbatch or more accelerators",
                e.detail()
            )));
        }
    }
    Ok((out, count))
}

/// ZeroPP's scheduling units tried for `m` microbatches: the divisors of `m` among 1, 2, 4, 8
/// and 16, and `m` itself (breadth-first).
fn zeropp_groups(m: u32) -> Vec<u32> {
    let mut v: Vec<u32> = [1u32, 2, 4, 8, 16]
        .into_iter()
        .filter(|u| *u <= m && m.is_multiple_of(*u))
        .collect();
    if !v.contains(&m) {
        v.push(m);
    }
    v
}

fn sp_options(tp: u32, fixed: Option<bool>) -> Vec<bool> {
    if tp == 1 {
        return vec![false];
    }
    match fixed {
        Some(x) => vec![x],
        None => vec![true],
    }
}

/// The names the planner searches.
pub fn planner_schedule_names() -> Vec<&'static str> {
    let mut v: Vec<&str> = SCHEDULES.iter().map(|(s, _)| *s).collect();
    v.dedup();
    v
}

/// A lower bound on the iteration time: the busiest device's work with no bubble, its static
/// memory aside; plus the smallest optimizer step.
fn lower_bound(cfg: &Config, st: &Stages, dev: &DeviceSpec) -> f64 {
    let Ok(table) = st.costs.resolve(cfg.pp * cfg.chunks, cfg.pp) else {
        return f64::INFINITY;
    };
    let placement = placement_of(cfg);
    let mut work = vec![0.0; cfg.pp as usize];
    for (s, w) in table.work().iter().enumerate() {
        work[placement.device_of(s as u32, cfg.pp) as usize] += w;
    }
    let busiest = work.iter().copied().fold(0.0, f64::max) * f64::from(cfg.microbatches);
    let params: f64 = st.params.iter().sum::<f64>() / f64::from(cfg.pp);
    let local = if cfg.sharding == Sharding::Ddp {
        params
    } else {
        params / f64::from(cfg.dp)
    };
    busiest + 0.5 * local * ADAM_TRAFFIC / dev.memory_bandwidth
}

/// The placement of a configuration's schedule: looped for interleaved 1F1B, V-shape for the
/// two-chunk V schedules (and auto's two-chunk table), sequential otherwise.
fn placement_of(cfg: &Config) -> crate::ir::Placement {
    if cfg.schedule.starts_with("interleaved") || cfg.schedule == "zeropp" {
        crate::ir::Placement::Looped { chunks: cfg.chunks }
    } else if cfg.chunks == 2 {
        crate::ir::Placement::VShape
    } else {
        crate::ir::Placement::Sequential
    }
}

/// A configuration's parameters, gradients and optimizer state on an average device, bytes.
fn static_memory(cand: &Candidate) -> f64 {
    let (pb, gb, ob) = cand.cfg.sharding.bytes(f64::from(cand.cfg.dp));
    let per_device = cand.stages.params.iter().sum::<f64>() / f64::from(cand.cfg.pp);
    per_device * (pb + gb + ob)
}

/// Searches the configurations; `progress(done, all)` after each evaluation.
pub fn plan(req: &Request, mut progress: impl FnMut(usize, usize)) -> Result<PlanResult, Error> {
    check(req)?;
    let (mut cands, enumerated) = enumerate(req)?;
    if cands.is_empty() {
        return Err(no_configuration(req));
    }
    cands.sort_by(|a, b| a.bound.total_cmp(&b.bound));
    let top = req.top.max(1);
    let mut best: Vec<Evaluation> = Vec::new();
    let mut too_big_all: Vec<Evaluation> = Vec::new();
    let mut simulated = 0usize;
    let all = cands.len();
    let mut smallest_static = f64::INFINITY;
    for (i, cand) in cands.iter().enumerate() {
        let kth = if best.len() >= top {
            best[top - 1].iteration_seconds
        } else {
            f64::INFINITY
        };
        if cand.bound >= kth {
            progress(all, all);
            break;
        }
        progress(i, all);
        // Whose parameters, gradients and optimizer state alone exceed the device.
        let statics = static_memory(cand);
        if statics + reserve(&req.cluster.device) > req.cluster.device.memory {
            smallest_static = smallest_static.min(statics);
            continue;
        }
        let Ok(ev) = run_config(req, &cand.cfg, &cand.stages) else {
            continue;
        };
        simulated += 1;
        if ev.fits {
            offer(&mut best, ev, top);
        } else {
            too_big_all.push(ev);
        }
    }
    progress(all, all);
    let wants_auto = req
        .fixed
        .schedules
        .as_ref()
        .is_none_or(|v| v.iter().any(|n| n == "auto"));
    let refined = if wants_auto {
        refine_with_auto(req, &mut best, top)?
    } else {
        0
    };
    // Of the configurations that do not fit, the one closest to fitting among those faster
    // than the best (or, when none fits, closest of all): what the next better one lacks.
    let fastest_fit = best.first().map_or(f64::INFINITY, |b| b.iteration_seconds);
    let too_big = too_big_all
        .into_iter()
        .filter(|t| t.iteration_seconds < fastest_fit)
        .min_by(|a, b| a.max_peak().total_cmp(&b.max_peak()));
    if best.is_empty() {
        return Err(match too_big {
            Some(t) => Error::config(format!(
                "no configuration fits: the closest needs {:.1} GiB on a device of {:.1} GiB ({}); use more accelerators, accelerators with more memory, or a shorter sequence",
                t.max_peak() / GIB,
                req.cluster.device.memory / GIB,
                describe(&t.config)
            )),
            None if smallest_static.is_finite() => Error::config(format!(
                "no configuration fits: the parameters, gradients and optimizer state alone need at least {:.1} GiB per device on a device of {:.1} GiB; use at least {} accelerators of this kind",
                smallest_static / GIB,
                req.cluster.device.memory / GIB,
                needed_gpus(req, smallest_static)
            )),
            None => no_configuration(req),
        });
    }
    Ok(PlanResult {
        best,
        faster_but_too_big: too_big,
        enumerated,
        simulated,
        refined,
    })
}

/// How many of the best configurations `auto` refines.
const AUTO_REFINED: usize = 3;
/// The largest schedule (passes) `auto` refines; its search grows fast with the size.
const AUTO_MAX_PASSES: u64 = 12_000;

/// Runs `auto` on the best few configurations' shapes at the activation memory each device has
/// left (sequential and V placements, one and two chunks), keeping what is faster and fits.
/// Returns the schedules simulated.
fn refine_with_auto(req: &Request, best: &mut Vec<Evaluation>, top: usize) -> Result<usize, Error> {
    let mut seen: Vec<Config> = Vec::new();
    let mut simulated = 0;
    let shapes: Vec<Evaluation> = best.iter().take(AUTO_REFINED).cloned().collect();
    for ev in shapes {
        let mut cfg = ev.config.clone();
        if cfg.pp == 1 || cfg.pp * 2 > req.model.layers {
            continue;
        }
        cfg.chunks = 2;
        cfg.group = 0;
        cfg.schedule = "auto".into();
        let key = Config {
            schedule: String::new(),
            ..cfg.clone()
        };
        if seen.contains(&key) {
            continue;
        }
        seen.push(key);
        let passes = u64::from(cfg.pp) * 2 * u64::from(cfg.microbatches) * 3;
        if passes > AUTO_MAX_PASSES {
            continue;
        }
        let st = stages_of(req, &cfg)?;
        let unit = st
            .costs
            .resolve(cfg.pp * 2, cfg.pp)?
            .unit_bytes
            .unwrap_or(0.0);
        if unit <= 0.0 {
            continue;
        }
        // The activation room of the tightest device, from the evaluation's static memory.
        let room = ev
            .memory
            .iter()
            .map(|m| req.cluster.device.memory - (m.total - m.activations))
            .fold(f64::INFINITY, f64::min);
        let units = (room / unit * 1000.0).floor() / 1000.0;
        if units <= 0.0 {
            continue;
        }
        cfg.schedule = format!("auto@{units}");
        let Ok(schedule) = schedule_of(&cfg, &st.costs) else {
            continue;
        };
        simulated += 1;
        let mut got = finish(req, &cfg, &st, &schedule)?;
        got.config.chunks = schedule.stages / schedule.devices;
        if got.fits {
            offer(best, got, top);
        }
    }
    Ok(simulated)
}

/// The accelerators needed for the static memory to fit, rounded up to whole nodes.
fn needed_gpus(req: &Request, per_device: f64) -> u32 {
    let dev = &req.cluster.device;
    let room = dev.memory - reserve(dev);
    let factor = if room > 0.0 {
        per_device / room
    } else {
        f64::INFINITY
    };
    let want = (f64::from(req.cluster.gpus) * factor).ceil();
    let node = f64::from(req.cluster.gpus_per_node);
    if want.is_finite() && want < f64::from(u32::MAX) {
        ((want / node).ceil() * node) as u32
    } else {
        u32::MAX
    }
}

/// Why nothing was enumerated, with the smallest change.
fn no_configuration(req: &Request) -> Error {
    let c = &req.cluster;
    let m = &req.model;
    let f = &req.fixed;
    if let Some(p) = f.pp {
        if p > m.layers {
            return Error::config(format!(
                "a pipeline of {p} devices has more stages than the model's {} layers; use a pipeline degree of at most {}",
                m.layers, m.layers
            ));
        }
    }
    let fixed_product = f.tp.unwrap_or(1) * f.pp.unwrap_or(1) * f.dp.unwrap_or(1);
    if fixed_product > 0 && !c.gpus.is_multiple_of(fixed_product) {
        return Error::config(format!(
            "the fixed parallel degrees multiply to {fixed_product}, which does not divide {} accelerators; fix degrees whose product divides it",
            c.gpus
        ));
    }
    if let Some(d) = f.dp {
        if !req.global_batch.is_multiple_of(d) {
            return Error::config(format!(
                "a data-parallel degree of {d} needs a global batch that is a multiple of {d} sequences (got {}); raise the global batch or lower the data-parallel degree",
                req.global_batch
            ));
        }
    }
    if let Some(b) = f.microbatch_size {
        let divides = divisors(c.gpus)
            .into_iter()
            .filter(|d| f.dp.is_none_or(|x| x == *d))
            .any(|d| {
                req.global_batch.is_multiple_of(d) && (req.global_batch / d).is_multiple_of(b)
            });
        if !divides {
            return Error::config(format!(
                "a microbatch size of {b} does not divide the sequences of any data-parallel replica (the global batch of {} over the data-parallel degree); use a microbatch size that divides them, or a global batch that is a multiple of {b}",
                req.global_batch
            ));
        }
    }
    // The fewest replicas any split allows: the accelerators over the largest model-parallel
    // group (a node of tensor parallelism times a pipeline of every layer).
    let least_dp = c.gpus / (c.gpus_per_node * m.layers).min(c.gpus).max(1);
    if req.global_batch < least_dp {
        return Error::config(format!(
            "a global batch of {} sequences cannot feed {} accelerators (at least {least_dp} data-parallel replicas); raise the global batch to {least_dp} or more, or use fewer accelerators",
            req.global_batch, c.gpus
        ));
    }
    Error::config(format!(
        "no split of {} accelerators into tensor, pipeline and data-parallel degrees divides the global batch of {} sequences into whole microbatches with the fixed dimensions; use a global batch that is a power of two, or fix fewer dimensions",
        c.gpus, req.global_batch
    ))
}

/// A configuration's schedule in a few characters: `interleaved-1f1b×4` (chunks per device),
/// `zeropp/4` (microbatches per unit), the name otherwise.
pub fn schedule_label(c: &Config) -> String {
    if c.chunks > 1 && c.schedule == "interleaved-1f1b" {
        format!("{}×{}", c.schedule, c.chunks)
    } else if c.group > 0 {
        format!("{}/{}", c.schedule, c.group)
    } else {
        c.schedule.clone()
    }
}

/// A configuration in one line: `tp8 pp4 dp8 zero1 b1 m32 interleaved-1f1b×2 selective`.
pub fn describe(c: &Config) -> String {
    let sched = schedule_label(c);
    format!(
        "tp{} pp{} dp{} {} b{} m{} {} recompute={}{}",
        c.tp,
        c.pp,
        c.dp,
        c.sharding.name(),
        c.microbatch_size,
        c.microbatches,
        sched,
        c.recompute.name(),
        if c.sequence_parallel { " sp" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> Request {
        Request {
            model: ModelSpec::parse("llama2-7b,seq=2048").unwrap(),
            cluster: Cluster {
                gpus: 32,
                gpus_per_node: 8,
                device: DeviceSpec::preset("h100").unwrap(),
            },
            global_batch: 512,
            fixed: Fixed::default(),
            top: 1,
            p2p_blocking: true,
        }
    }

    /// The extrapolation of a long step from two sampled microbatch counts agrees with the
    /// simulation of the whole step.
    #[test]
    fn extrapolated_steps_match_the_full_simulation() {
        let req = request();
        for (schedule, chunks, group, sharding) in [
            ("1f1b", 1, 0, Sharding::Zero1),
            ("zb-h1", 1, 0, Sharding::Zero1),
            ("interleaved-1f1b", 2, 0, Sharding::Ddp),
            ("zb-v", 2, 0, Sharding::Zero2),
            ("v-half", 2, 0, Sharding::Zero1),
            ("zeropp", 2, 4, Sharding::Zero3),
        ] {
            let cfg = Config {
                tp: 2,
                pp: 4,
                dp: 4,
                sharding,
                microbatch_size: 1,
                microbatches: 128,
                schedule: schedule.into(),
                chunks,
                group,
                recompute: Recompute::Selective,
                sequence_parallel: true,
            };
            assert!(
                sampled_counts(&cfg).is_some(),
                "{schedule}: not extrapolated"
            );
            let st = stages_of(&req, &cfg).unwrap();
            let ext = run_config(&req, &cfg, &st).unwrap();
            let full = finish(&req, &cfg, &st, &schedule_of(&cfg, &st.costs).unwrap()).unwrap();
            let rel = |a: f64, b: f64| (a - b).abs() / b;
            assert!(
                rel(ext.iteration_seconds, full.iteration_seconds) < 0.005,
                "{schedule}: {} extrapolated, {} simulated",
                ext.iteration_seconds,
                full.iteration_seconds
            );
            assert!(
                rel(ext.max_peak(), full.max_peak()) < 0.01,
                "{schedule}: peak {} extrapolated, {} simulated",
                ext.max_peak(),
                full.max_peak()
            );
        }
    }
}
