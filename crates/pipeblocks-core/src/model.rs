//! A model-level cost model: from a transformer's shape and a device's speed to per-stage pass
//! times, activation bytes and parameter counts.
//!
//! Users describe the model (`layers=32,hidden=4096,heads=32,seq=4096,vocab=32000` or a preset
//! name such as `llama-7b`), the microbatch size `b` and the device
//! (`flops=989e12,memory=80GiB,bandwidth=50GB/s`); [`ModelCosts::for_stages`] splits the model into
//! `S` pipeline stages and gives absolute [`Costs`] in seconds; [`StageCosts::model`]
//! (crate::params::StageCosts::model) makes them the costs every generator and simulation takes.
//!
//! # Formulas (per transformer layer, per microbatch; `s` sequence, `b` microbatch size, `h`
//! hidden, `a` heads, `f` feed-forward width, `V` vocabulary)
//!
//! - Matmul parameters `P_m = 2h² + 2h·h_kv + 2hf` (GPT MLP) or `2h² + 2h·h_kv + 3hf` (gated
//!   MLP, LLaMA), `h_kv = h · kv_heads / heads` (`h` without grouped-query attention).
//!   Layer parameters add biases and norms: `P_m + 9h + f` for GPT (attention biases `4h`, MLP
//!   biases `f + h`, two layer norms `4h`), with `f = 4h` the familiar `12h² + 13h`; gated models
//!   have no biases and two RMS norms: `P_m + 2h`.
//! - Forward FLOPs `F = 2·s·b·P_m + 4·b·s²·h` (every matmul, plus `QKᵀ` and `AV`).
//! - Input backward `B = 2·s·b·P_m + 8·b·s²·h` (activation gradients of the matmuls and of attention).
//! - Weight backward `W = 2·s·b·P_m` (weight gradients of the matmuls). `B + W = 2F` up to the
//!   attention term, the usual "backward is twice the forward".
//! - The last stage also runs the output head: `F = B = W = 2·s·b·h·V`; the embedding lookup
//!   costs no FLOPs. Time = FLOPs / (peak FLOP/s × efficiency).
//! - Activations kept for the backward (16-bit, no recomputation, Korthikanti et al.):
//!   `34·s·b·h + 5·a·s²·b` bytes per layer; the last stage adds `4·s·b·V` bytes of logits.
//! - Parameters: the layers' parameters, plus the embedding `V·h` on the first stage and an
//!   untied output head `V·h` on the last one.
//! - Point-to-point latency between stages: the `2·s·b·h` bytes of a 16-bit activation over the
//!   point-to-point bandwidth, plus the device latency.
//!
//!
//! # Mixture of experts
//!
//! With `experts=E` (and `topk=k`, `expert_ffn=f_e`, `shared=n_s`, `ep=d`) every layer's MLP is
//! `E` routed experts and `n_s` shared ones, each an MLP of width `f_e` (default `f`), and a
//! router `h·E`; each token runs `k` routed experts and the shared ones:
//! - `P_m` counts what a token runs: attention, the router and `k + n_s` expert MLPs; the layer's
//!   parameters count all `E + n_s` experts (on `d` expert-parallel devices each holds `1/d` of
//!   the routed ones, which this module does not divide).
//! - Activations: the MLP's `19·s·b·h` of the dense formula become
//!   `s·b·h·(2k' + 17k'·f_e/4h)`, `k' = k + n_s`.
//! - **All-to-all**: with `d > 1`, each MoE layer's forward sends its tokens to their experts
//!   and back (dispatch and combine), `s·b·k·h·2·(d−1)/d` bytes each per device, over the
//!   node's link when the group fits in a node (`d ≤ 8`, the presets' nodes) and the network's
//!   otherwise, plus the device latency per exchange; the backward sends as much. It is part of
//!   the pass times (F, and B; not W) and the communication an overlapped pair hides
//!   ([`crate::params::StageTable::hidden`]).
//!
//! - **Recompute** (a stage's R pass): its layers' forward again, all-to-all included; a
//!   recomputed microbatch keeps its layers' inputs, `2·s·b·h` bytes each (and the last
//!   stage's logits) until then.
//!
//! Layers are split as evenly as possible, earlier stages taking the remainder
//! ([`layer_split`]); the runtime's model splits its layers with the same function.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Param};
use crate::fsdp::GIB;
use crate::params::Costs;

/// The layers of each of `stages` stages when `layers` layers are split as evenly as possible,
/// earlier stages taking the remainder (the last stage also carries the output head and the
/// loss). `None` when a stage would get no layer or there are no stages.
pub fn layer_split(layers: u32, stages: u32) -> Option<Vec<std::ops::Range<u32>>> {
    if stages == 0 || stages > layers {
        return None;
    }
    let (base, extra) = (layers / stages, layers % stages);
    let mut start = 0;
    Some(
        (0..stages)
            .map(|s| {
                let n = base + u32::from(s < extra);
                start += n;
                start - n..start
            })
            .collect(),
    )
}

/// The shape of a transformer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    /// Preset name, when it came from one.
    pub name: String,
    /// Transformer layers `L`.
    pub layers: u32,
    /// Hidden size `h`.
    pub hidden: u64,
    /// Attention heads `a`.
    pub heads: u64,
    /// Key/value heads (grouped-query attention; `a` for multi-head attention).
    #[serde(default)]
    pub kv_heads: u64,
    /// Sequence length `s`.
    pub seq: u64,
    /// Vocabulary size `V`.
    pub vocab: u64,
    /// Feed-forward width `f` (default `4h`).
    pub ffn: u64,
    /// Gated MLP without biases (LLaMA) instead of GPT's MLP with biases.
    pub gated: bool,
    /// Mixture of experts in every layer's MLP; `None` for a dense model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moe: Option<Moe>,
}

/// A mixture-of-experts MLP (see the [module documentation](self)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Moe {
    /// Routed experts `E`.
    pub experts: u32,
    /// Routed experts each token runs, `k`.
    pub top_k: u32,
    /// Width of one expert's MLP, `f_e`.
    pub expert_ffn: u64,
    /// Shared experts every token runs.
    pub shared: u32,
    /// Expert-parallel degree: devices the routed experts are spread over (1: no all-to-all).
    pub ep: u32,
}

/// Devices per node: an expert-parallel group up to this size exchanges over the node's link.
pub const NODE_DEVICES: u32 = 8;

/// A named public model size.
struct Preset {
    moe: Option<Moe>,
    name: &'static str,
    layers: u32,
    hidden: u64,
    heads: u64,
    kv_heads: u64,
    seq: u64,
    vocab: u64,
    ffn: u64,
    gated: bool,
}

/// One row of [`PRESETS`], in the order of [`ModelSpec`]'s fields (`kv_heads` = `heads` without
/// grouped-query attention).
#[allow(clippy::too_many_arguments)]
const fn row(
    name: &'static str,
    layers: u32,
    hidden: u64,
    heads: u64,
    kv_heads: u64,
    seq: u64,
    vocab: u64,
    ffn: u64,
    gated: bool,
) -> Preset {
    Preset {
        moe: None,
        name,
        layers,
        hidden,
        heads,
        kv_heads,
        seq,
        vocab,
        ffn,
        gated,
    }
}

/// Named public model sizes: layers, hidden, heads, key/value heads, sequence, vocabulary,
/// feed-forward, gated. Sources in docs/plan.md: the GPT-3 paper's Table 2.1 (the `gpt3-*`
/// rows; context 2048, GPT-2's vocabulary), the Llama 2 and Llama 3 papers and their released
/// configurations.
const PRESETS: &[Preset] = &[
    row("gpt-1.3b", 24, 2048, 16, 16, 2048, 50257, 8192, false),
    row("gpt-2.7b", 32, 2560, 32, 32, 2048, 50257, 10240, false),
    row("gpt-7b", 32, 4096, 32, 32, 2048, 50257, 16384, false),
    row("gpt-13b", 40, 5120, 40, 40, 2048, 50257, 20480, false),
    row("llama-7b", 32, 4096, 32, 32, 4096, 32000, 11008, true),
    row("llama-13b", 40, 5120, 40, 40, 4096, 32000, 13824, true),
    row("gpt3-6.7b", 32, 4096, 32, 32, 2048, 50257, 16384, false),
    row("gpt3-175b", 96, 12288, 96, 96, 2048, 50257, 49152, false),
    row("llama2-7b", 32, 4096, 32, 32, 4096, 32000, 11008, true),
    row("llama2-13b", 40, 5120, 40, 40, 4096, 32000, 13824, true),
    row("llama2-70b", 80, 8192, 64, 8, 4096, 32000, 28672, true),
    row("llama3-8b", 32, 4096, 32, 8, 8192, 128256, 14336, true),
    row("llama3-70b", 80, 8192, 64, 8, 8192, 128256, 28672, true),
    row("llama3-405b", 126, 16384, 128, 8, 8192, 128256, 53248, true),
    // Mixtral 8x7B (arXiv:2401.04088 and its released configuration), trained at 4096 tokens.
    moe(
        row("mixtral-8x7b", 32, 4096, 32, 8, 4096, 32000, 14336, true),
        8,
        2,
        14336,
        0,
        8,
    ),
    // DeepSeek-V3 (arXiv:2412.19437): 256 routed experts of width 2048 and one shared, 8 per
    // token, expert-parallel over 64 devices (8 nodes) as trained; its multi-head latent
    // attention is taken as multi-head attention of the same width, and its first three dense
    // layers as MoE ones.
    moe(
        row("deepseek-v3", 61, 7168, 128, 128, 4096, 129280, 18432, true),
        256,
        8,
        2048,
        1,
        64,
    ),
];

/// A preset row with a mixture of experts.
const fn moe(
    base: Preset,
    experts: u32,
    top_k: u32,
    expert_ffn: u64,
    shared: u32,
    ep: u32,
) -> Preset {
    Preset {
        moe: Some(Moe {
            experts,
            top_k,
            expert_ffn,
            shared,
            ep,
        }),
        ..base
    }
}

impl ModelSpec {
    /// Names of the presets.
    pub fn preset_names() -> Vec<&'static str> {
        PRESETS.iter().map(|p| p.name).collect()
    }

    /// A preset by name (`gpt-1.3b`, `gpt-7b`, `llama-7b`, `llama-13b`, ...).
    pub fn preset(name: &str) -> Option<ModelSpec> {
        let key = name.trim().to_ascii_lowercase();
        PRESETS.iter().find(|p| p.name == key).map(|p| ModelSpec {
            name: p.name.to_string(),
            layers: p.layers,
            hidden: p.hidden,
            heads: p.heads,
            kv_heads: p.kv_heads,
            seq: p.seq,
            vocab: p.vocab,
            ffn: p.ffn,
            gated: p.gated,
            moe: p.moe,
        })
    }

    /// Parses a preset name, `key=value` pairs, or a preset followed by overrides
    /// (`llama-7b,seq=2048`). Keys: `layers`, `hidden`, `heads`, `kv_heads` (default `heads`),
    /// `seq`, `vocab`, `ffn`, `gated` (0 or 1), and for a mixture of experts `experts`
    /// (0: dense), `topk` (default 2), `expert_ffn` (default `ffn`), `shared` (default 0) and
    /// `ep` (default 1). Without a preset, `layers`, `hidden`, `heads` and `seq` are required.
    pub fn parse(text: &str) -> Result<ModelSpec, Error> {
        let presets = Self::preset_names().join(", ");
        let bad = |detail: String| Error::parse("model", detail);
        let (head, rest) = text.split_once(',').unwrap_or((text, ""));
        let base = match head.trim() {
            h if h.contains('=') || h.is_empty() => None,
            h => Some(Self::preset(h).ok_or_else(|| bad(format!("unknown model preset `{h}`; use one of {presets}, or layers=..,hidden=..,heads=..,seq=..,vocab=..")))?),
        };
        let overrides = if base.is_some() { rest } else { text };
        let mut m = base.clone().unwrap_or(ModelSpec {
            name: "custom".into(),
            layers: 0,
            hidden: 0,
            heads: 0,
            kv_heads: 0,
            seq: 0,
            vocab: 0,
            ffn: 0,
            gated: false,
            moe: None,
        });
        let mut moe = m.moe;
        let mut moe_keys = Vec::new();
        let (mut given, mut ffn_given, mut kv_given) = (Vec::new(), false, false);
        for (k, v, part) in crate::params::pairs(
            overrides,
            "model",
            "layers=32,hidden=4096,heads=32,seq=4096,vocab=32000",
        )? {
            let n = || {
                v.parse::<u64>()
                    .map_err(|_| bad(format!("`{v}` in `{part}` is not a whole number")))
            };
            match k.as_str() {
                "layers" => {
                    m.layers =
                        u32::try_from(n()?).map_err(|_| bad(format!("layers={v} is too large")))?
                }
                "hidden" => {
                    let h = n()?;
                    if !ffn_given && Some(m.ffn) == m.hidden.checked_mul(4) {
                        m.ffn = h.saturating_mul(4);
                    }
                    m.hidden = h;
                }
                "heads" => {
                    let a = n()?;
                    if !kv_given {
                        m.kv_heads = a;
                    }
                    m.heads = a;
                }
                "kv_heads" | "kv" => (m.kv_heads, kv_given) = (n()?, true),
                "seq" => m.seq = n()?,
                "vocab" => m.vocab = n()?,
                "ffn" => (m.ffn, ffn_given) = (n()?, true),
                "experts" | "topk" | "top_k" | "expert_ffn" | "shared" | "ep" => {
                    let x = n()?;
                    let small = |x: u64| {
                        u32::try_from(x).map_err(|_| bad(format!("{k}={v} is too large")))
                    };
                    let e = moe.get_or_insert(Moe {
                        experts: 0,
                        top_k: 2,
                        expert_ffn: 0,
                        shared: 0,
                        ep: 1,
                    });
                    match k.as_str() {
                        "experts" => e.experts = small(x)?,
                        "topk" | "top_k" => e.top_k = small(x)?,
                        "expert_ffn" => e.expert_ffn = x,
                        "shared" => e.shared = small(x)?,
                        _ => e.ep = small(x)?,
                    }
                    moe_keys.push(k.clone());
                }
                "gated" => {
                    m.gated = match v {
                        "1" | "true" | "yes" => true,
                        "0" | "false" | "no" => false,
                        _ => return Err(bad(format!("gated={v}: write gated=1 or gated=0"))),
                    }
                }
                other => {
                    return Err(bad(format!(
                    "unknown key `{other}`; use layers, hidden, heads, kv_heads, seq, vocab, ffn, gated, and for experts experts, topk, expert_ffn, shared and ep"
                )))
                }
            }
            given.push(k);
        }
        if base.is_none() {
            if let Some(name) = ["layers", "hidden", "heads", "seq"]
                .into_iter()
                .find(|k| !given.iter().any(|g| g == k))
            {
                return Err(bad(format!("missing `{name}=`; give layers, hidden, heads and seq (or a preset: {presets})")));
            }
        }
        if let Some(mut e) = moe {
            if e.experts == 0 {
                if moe_keys.iter().any(|k| k != "experts") {
                    return Err(bad(format!(
                        "{} describe experts, but the model has none; add experts=<count>",
                        moe_keys.join(", ")
                    )));
                }
                m.moe = None;
            } else {
                if e.expert_ffn == 0 {
                    e.expert_ffn = m.ffn;
                }
                m.moe = Some(e);
            }
        }
        if base.is_some_and(|b| b != m) {
            m.name = format!("{} (modified)", m.name);
        }
        m.check()?;
        Ok(m)
    }

    /// Checks the sizes: every one at least 1, heads dividing hidden, key/value heads dividing
    /// heads, none beyond what pipeblocks handles.
    pub fn check(&self) -> Result<(), Error> {
        if self.layers == 0 || self.hidden == 0 || self.heads == 0 || self.seq == 0 {
            return Err(Error::parse(
                "model",
                "layers, hidden, heads and seq must all be at least 1",
            ));
        }
        if self.kv_heads == 0 || !self.heads.is_multiple_of(self.kv_heads) {
            return Err(Error::parse(
                "model",
                format!(
                    "kv_heads={} must be at least 1 and divide heads={}",
                    self.kv_heads, self.heads
                ),
            ));
        }
        if !self.hidden.is_multiple_of(self.heads) {
            return Err(Error::parse(
                "model",
                format!(
                    "hidden={} is not a multiple of heads={}; pick sizes where heads divides hidden",
                    self.hidden, self.heads
                ),
            ));
        }
        if let Some(e) = self.moe {
            if e.top_k == 0 || e.top_k > e.experts || e.ep == 0 || e.expert_ffn == 0 {
                return Err(Error::parse(
                    "model",
                    format!(
                        "experts={}, topk={}, expert_ffn={}, ep={}: a token runs 1 to `experts` experts, experts have a width and ep is at least 1",
                        e.experts, e.top_k, e.expert_ffn, e.ep
                    ),
                ));
            }
            if !e.experts.is_multiple_of(e.ep) {
                return Err(Error::parse(
                    "model",
                    format!(
                        "ep={} does not divide experts={}; spread the experts evenly",
                        e.ep, e.experts
                    ),
                ));
            }
            if e.experts > 1 << 16 || e.expert_ffn > 1 << 24 || e.shared > 1 << 10 {
                return Err(Error::parse(
                    "model",
                    "experts, expert_ffn or shared is beyond what pipeblocks handles (65536 experts, 16M width, 1024 shared)",
                ));
            }
        }
        // Far above any real model, and low enough that no size overflows.
        let largest = [
            ("layers", u64::from(self.layers), 1 << 16),
            ("hidden", self.hidden, 1 << 20),
            ("seq", self.seq, 1 << 24),
            ("vocab", self.vocab, 1 << 24),
            ("ffn", self.ffn, 1 << 24),
        ];
        for (key, value, limit) in largest {
            if value > limit {
                return Err(Error::parse(
                    "model",
                    format!("{key}={value} is more than the {limit} pipeblocks handles"),
                ));
            }
        }
        Ok(())
    }

    /// Width of the key and value projections, `h · kv_heads / heads` (`h` without grouped-query
    /// attention).
    pub fn kv_width(&self) -> f64 {
        self.hidden as f64 * self.kv_heads as f64 / self.heads as f64
    }

    /// Matmul parameters of one layer a token runs, `P_m = 2h² + 2h·h_kv + (2 or 3)·h·f`
    /// (`4h² + 2hf` for GPT: query and output `2h²`, key and value `2h·h_kv`); with experts
    /// the MLP term is the router `h·E` and `k + n_s` expert MLPs of width `f_e`.
    pub fn matmul_params(&self) -> f64 {
        let h = self.hidden as f64;
        let attention = 2.0 * h * h + 2.0 * h * self.kv_width();
        attention + self.mlp_params(|e| f64::from(e.top_k + e.shared))
    }

    /// Matmul parameters of one MLP of width `w`.
    fn one_mlp(&self, w: u64) -> f64 {
        (if self.gated { 3.0 } else { 2.0 }) * self.hidden as f64 * w as f64
    }

    /// The MLP's matmul parameters: the dense MLP, or the router and `count(moe)` experts.
    fn mlp_params(&self, count: impl Fn(&Moe) -> f64) -> f64 {
        match &self.moe {
            None => self.one_mlp(self.ffn),
            Some(e) => {
                self.hidden as f64 * f64::from(e.experts) + count(e) * self.one_mlp(e.expert_ffn)
            }
        }
    }

    /// All parameters of one layer: `12h² + 13h` for GPT with `f = 4h`; with experts, all of
    /// them.
    pub fn layer_params(&self) -> f64 {
        let h = self.hidden as f64;
        let f = self.ffn as f64;
        if self.moe.is_some() {
            let attention = 2.0 * h * h + 2.0 * h * self.kv_width();
            let biases = if self.gated {
                2.0 * h
            } else {
                7.0 * h + 2.0 * self.kv_width()
            };
            attention + self.mlp_params(|e| f64::from(e.experts + e.shared)) + biases
        } else if self.gated {
            self.matmul_params() + 2.0 * h
        } else {
            // QKV and output biases (2h + 2h_kv), MLP biases (f + h), two layer norms (4h).
            self.matmul_params() + 7.0 * h + 2.0 * self.kv_width() + f
        }
    }

    /// Parameters of the whole model (layers, embedding, untied head).
    pub fn total_params(&self) -> f64 {
        self.layers as f64 * self.layer_params() + 2.0 * self.vocab as f64 * self.hidden as f64
    }
}

/// Parses a size in bytes: `80GiB`, `80GB`, `512MiB`, `1e9`, `inf`.
pub fn parse_bytes(text: &str) -> Result<f64, String> {
    let t = text.trim();
    let lower = t.to_ascii_lowercase();
    if lower == "inf" || lower == "infinite" {
        return Ok(f64::INFINITY);
    }
    let units: [(&str, f64); 9] = [
        ("kib", 1024.0),
        ("mib", 1024f64.powi(2)),
        ("gib", 1024f64.powi(3)),
        ("tib", 1024f64.powi(4)),
        ("kb", 1e3),
        ("mb", 1e6),
        ("gb", 1e9),
        ("tb", 1e12),
        ("b", 1.0),
    ];
    let (num, mult) = units
        .iter()
        .find_map(|&(u, k)| lower.strip_suffix(u).map(|n| (n, k)))
        .unwrap_or((lower.as_str(), 1.0));
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("`{t}` is not a size; write e.g. 80GiB, 50GB or 1e9"))?;
    if !(v.is_finite() && v > 0.0) {
        return Err(format!("`{t}`: a size must be a positive number"));
    }
    Ok(v * mult)
}

/// The accelerator and its links.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeviceSpec {
    /// Preset name, when it came from one.
    #[serde(default)]
    pub name: String,
    /// Peak FLOP/s (dense, 16-bit).
    pub flops: f64,
    /// Fraction of the peak a pass reaches (default 0.5; 0.6 for the presets).
    pub efficiency: f64,
    /// Memory per device, bytes.
    pub memory: f64,
    /// Collective (data-parallel) bandwidth per device between nodes, bytes/s; may be infinite.
    pub bandwidth: f64,
    /// Point-to-point bandwidth between pipeline neighbours, bytes/s (default: `bandwidth`).
    pub p2p_bandwidth: f64,
    /// Bandwidth per device, one direction, to the other devices of its node (NVLink, Infinity
    /// Fabric), bytes/s (default: `bandwidth`).
    #[serde(default)]
    pub intra_bandwidth: f64,
    /// Memory bandwidth, bytes/s (the optimizer step is bound by it; default 3.35 TB/s).
    #[serde(default)]
    pub memory_bandwidth: f64,
    /// Latency of one collective or transfer, seconds.
    pub latency: f64,
    /// Bandwidth of the device's link to host memory, one direction, bytes/s (PCIe; what an
    /// offloaded activation crosses, [`PassKind::O`](crate::ir::PassKind::O)); default 50 GB/s.
    #[serde(default = "default_host")]
    pub host_bandwidth: f64,
}

/// The host link of [`DeviceSpec::default`]: PCIe 5.0 x16, about 50 GB/s achieved one way.
pub const HOST_BANDWIDTH: f64 = 50e9;

fn default_host() -> f64 {
    HOST_BANDWIDTH
}

impl Default for DeviceSpec {
    /// An H100-class device: 989 TFLOP/s (16-bit dense), 80 GiB, 50 GB/s between nodes.
    fn default() -> Self {
        DeviceSpec {
            name: "custom".into(),
            flops: 989e12,
            efficiency: 0.5,
            memory: 80.0 * 1024f64.powi(3),
            bandwidth: 50e9,
            p2p_bandwidth: 50e9,
            intra_bandwidth: 50e9,
            memory_bandwidth: 3.35e12,
            latency: 0.0,
            host_bandwidth: HOST_BANDWIDTH,
        }
    }
}

/// A named accelerator: dense 16-bit peak FLOP/s, memory, memory bandwidth, bandwidth within a
/// node (one direction) and per device between nodes. Sources in docs/plan.md (the vendors'
/// data sheets; the network is the usual one NIC of that generation per device).
struct DevicePreset {
    name: &'static str,
    flops: f64,
    memory: f64,
    memory_bandwidth: f64,
    intra: f64,
    inter: f64,
    /// Host link, one direction (PCIe 4.0 x16 about 25 GB/s achieved, 5.0 about 50).
    host: f64,
}

const DEVICE_PRESETS: &[DevicePreset] = &[
    DevicePreset {
        name: "a100-40gb",
        flops: 312e12,
        memory: 40.0 * GIB,
        memory_bandwidth: 1.555e12,
        intra: 300e9,
        inter: 25e9,
        host: 25e9,
    },
    DevicePreset {
        name: "a100-80gb",
        flops: 312e12,
        memory: 80.0 * GIB,
        memory_bandwidth: 2.039e12,
        intra: 300e9,
        inter: 25e9,
        host: 25e9,
    },
    DevicePreset {
        name: "h100",
        flops: 989e12,
        memory: 80.0 * GIB,
        memory_bandwidth: 3.35e12,
        intra: 450e9,
        inter: 50e9,
        host: 50e9,
    },
    DevicePreset {
        name: "h200",
        flops: 989e12,
        memory: 141e9,
        memory_bandwidth: 4.8e12,
        intra: 450e9,
        inter: 50e9,
        host: 50e9,
    },
    DevicePreset {
        name: "mi300x",
        flops: 1307e12,
        memory: 192e9,
        memory_bandwidth: 5.3e12,
        intra: 448e9,
        inter: 50e9,
        host: 50e9,
    },
];

/// The fraction of the peak the device presets assume a transformer's passes reach.
pub const PRESET_EFFICIENCY: f64 = 0.6;

impl DeviceSpec {
    /// Names of the device presets.
    pub fn preset_names() -> Vec<&'static str> {
        DEVICE_PRESETS.iter().map(|p| p.name).collect()
    }

    /// A device preset by name (`a100-40gb`, `a100-80gb`, `h100`, `h200`, `mi300x`).
    pub fn preset(name: &str) -> Option<DeviceSpec> {
        let key = name.trim().to_ascii_lowercase();
        DEVICE_PRESETS
            .iter()
            .find(|p| p.name == key)
            .map(|p| DeviceSpec {
                name: p.name.into(),
                flops: p.flops,
                efficiency: PRESET_EFFICIENCY,
                memory: p.memory,
                bandwidth: p.inter,
                p2p_bandwidth: p.inter,
                intra_bandwidth: p.intra,
                memory_bandwidth: p.memory_bandwidth,
                latency: 0.0,
                host_bandwidth: p.host,
            })
    }

    /// Parses a preset name, `key=value` pairs, or a preset followed by overrides
    /// (`h100,eff=0.45`): `flops=989e12,memory=80GiB,bandwidth=50GB/s` (also `eff=0.5`,
    /// `p2p=100GB/s`, `intra=450GB/s`, `inter=` for `bandwidth`, `hbm=3.35TB/s`,
    /// `host=50GB/s` for the link to host memory, `latency=10e-6`); unspecified keys keep the preset's or [`DeviceSpec::default`]'s.
    pub fn parse(text: &str) -> Result<DeviceSpec, Error> {
        let bad = |detail: String| Error::parse("device", detail);
        let (head, rest) = text.split_once(',').unwrap_or((text, ""));
        let base = match head.trim() {
            h if h.contains('=') || h.is_empty() => None,
            h => Some(Self::preset(h).ok_or_else(|| {
                bad(format!(
                    "unknown device preset `{h}`; use one of {}, or flops=..,memory=..,bandwidth=..",
                    Self::preset_names().join(", ")
                ))
            })?),
        };
        let pairs_text = if base.is_some() { rest } else { text };
        let from_preset = base.is_some();
        let mut d = base.unwrap_or_default();
        let (mut p2p, mut intra) = (None, None);
        let mut inter_given = false;
        let example = "flops=989e12,memory=80GiB,bandwidth=50GB/s";
        let mut changed = false;
        for (k, v, part) in crate::params::pairs(pairs_text, "device", example)? {
            changed = true;
            let num = || -> Result<f64, Error> {
                let n: f64 = v
                    .parse()
                    .map_err(|_| bad(format!("`{v}` in `{part}` is not a number")))?;
                if n.is_nan() || n < 0.0 {
                    return Err(bad(format!("`{part}` must not be negative")));
                }
                Ok(n)
            };
            let bytes = |x: &str| {
                parse_bytes(x.trim_end_matches("/s").trim_end_matches("/S"))
                    .map_err(|e| bad(format!("in `{part}`: {e}")))
            };
            match k.as_str() {
                "flops" => d.flops = num()?,
                "eff" | "efficiency" => d.efficiency = num()?,
                "memory" | "mem" => d.memory = bytes(v)?,
                "bandwidth" | "bw" | "inter" => {
                    d.bandwidth = bytes(v)?;
                    inter_given = true;
                }
                "p2p" => p2p = Some(bytes(v)?),
                "intra" => intra = Some(bytes(v)?),
                "hbm" => d.memory_bandwidth = bytes(v)?,
                "host" => d.host_bandwidth = bytes(v)?,
                "latency" => d.latency = num()?,
                other => {
                    return Err(bad(format!(
                        "unknown key `{other}`; use flops, eff, memory, bandwidth (inter), p2p, intra, hbm, host and latency"
                    )))
                }
            }
        }
        if from_preset {
            // A preset's links stay its own unless overridden; a new inter-node bandwidth
            // also becomes the point-to-point one.
            if inter_given && p2p.is_none() {
                d.p2p_bandwidth = d.bandwidth;
            }
        } else {
            d.p2p_bandwidth = d.bandwidth;
            d.intra_bandwidth = d.bandwidth;
        }
        if let Some(x) = p2p {
            d.p2p_bandwidth = x;
        }
        if let Some(x) = intra {
            d.intra_bandwidth = x;
        }
        if from_preset && changed {
            d.name = format!("{} (modified)", d.name);
        }
        if !(d.flops.is_finite() && d.flops >= 1.0) {
            return Err(bad("flops must be a number of FLOP/s, at least 1".into()));
        }
        if d.bandwidth < 1.0 || d.p2p_bandwidth < 1.0 || d.intra_bandwidth < 1.0 {
            return Err(bad("bandwidths must be at least 1 byte/s".into()));
        }
        if d.memory_bandwidth < 1.0 {
            return Err(bad("hbm must be at least 1 byte/s".into()));
        }
        if d.host_bandwidth < 1.0 {
            return Err(bad("host must be at least 1 byte/s".into()));
        }
        if !(d.efficiency > 0.0 && d.efficiency <= 1.0) {
            return Err(bad("eff must be in (0, 1]".into()));
        }
        if !d.latency.is_finite() {
            return Err(bad("latency must be finite".into()));
        }
        Ok(d)
    }

    /// Sustained FLOP/s.
    pub fn sustained(&self) -> f64 {
        self.flops * self.efficiency
    }
}

/// Per-stage figures of a model split into `S` stages.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ModelCosts {
    /// Pass times per stage, seconds.
    pub costs: Vec<Costs>,
    /// Point-to-point latency between adjacent stages on different devices, seconds.
    pub comm: f64,
    /// Activation bytes one microbatch leaves on each stage.
    pub activation_bytes: Vec<f64>,
    /// Parameters of each stage.
    pub params: Vec<f64>,
    /// Transformer layers of each stage.
    pub layers: Vec<u32>,
    /// Communication inside each stage's forward and backward that an overlapped pair can hide
    /// (`[F, backward]`, seconds, part of the pass times); empty for a dense model.
    pub hidden: Vec<[f64; 2]>,
    /// Each stage's recompute pass (R), seconds: its layers' forward again (the head's logits
    /// are kept, not recomputed).
    pub recompute: Vec<f64>,
    /// Fraction of each stage's activation a recomputed microbatch keeps: its layers' inputs
    /// (`2·s·b·h` bytes each) and the logits.
    pub keep: Vec<f64>,
    /// Time to move each stage's activation of one microbatch over the host link, one way,
    /// seconds.
    pub offload: Vec<f64>,
    /// Selective recomputation per stage: `[seconds of an R that recomputes the attention's
    /// scores, softmax and weighted sum (the `4·b·s²·h` FLOPs of each layer's forward), the
    /// fraction of the activation kept: all but the `5·a·s²·b` bytes of each layer's
    /// attention]`.
    pub selective: Vec<[f64; 2]>,
}

impl ModelCosts {
    /// Splits `model` into `stages` stages for microbatch size `mbs` on `device`.
    pub fn for_stages(
        model: &ModelSpec,
        mbs: u32,
        device: &DeviceSpec,
        stages: u32,
    ) -> Result<ModelCosts, Error> {
        model.check()?;
        if mbs == 0 {
            return Err(Error::Zero(Param::MicrobatchSize));
        }
        let Some(split) = layer_split(model.layers, stages) else {
            return Err(Error::config(format!(
                "the model has {} layers but the schedule has {stages} stages; use fewer devices or chunks (at most one stage per layer)",
                model.layers
            )));
        };
        let (s, b, h, a, v) = (
            model.seq as f64,
            mbs as f64,
            model.hidden as f64,
            model.heads as f64,
            model.vocab as f64,
        );
        let pm = model.matmul_params();
        let lf = 2.0 * s * b * pm + 4.0 * b * s * s * h;
        let lb = 2.0 * s * b * pm + 8.0 * b * s * s * h;
        let lw = 2.0 * s * b * pm;
        let head = 2.0 * s * b * h * v;
        let act_layer = match &model.moe {
            None => 34.0 * s * b * h + 5.0 * a * s * s * b,
            Some(e) => {
                let k = f64::from(e.top_k + e.shared);
                let mlp = s * b * h * (2.0 * k + 17.0 * k * e.expert_ffn as f64 / (4.0 * h));
                15.0 * s * b * h + 5.0 * a * s * s * b + mlp
            }
        };
        let rate = device.sustained();
        let comm = 2.0 * s * b * h / device.p2p_bandwidth + device.latency;
        let a2a = model.moe.filter(|e| e.ep > 1).map_or(0.0, |e| {
            let d = f64::from(e.ep);
            let bytes = s * b * f64::from(e.top_k) * h * 2.0 * (d - 1.0) / d;
            let link = if e.ep <= NODE_DEVICES {
                device.intra_bandwidth
            } else {
                device.bandwidth
            };
            // Dispatch and combine, each one exchange.
            2.0 * (bytes / link + device.latency)
        });
        let mut out = ModelCosts {
            costs: Vec::with_capacity(stages as usize),
            comm,
            activation_bytes: Vec::with_capacity(stages as usize),
            params: Vec::with_capacity(stages as usize),
            layers: Vec::with_capacity(stages as usize),
            hidden: Vec::new(),
            recompute: Vec::with_capacity(stages as usize),
            keep: Vec::with_capacity(stages as usize),
            offload: Vec::with_capacity(stages as usize),
            selective: Vec::with_capacity(stages as usize),
        };
        for (st, range) in (0..stages).zip(split) {
            let n = range.len() as u32;
            let nf = n as f64;
            let last = st + 1 == stages;
            let (mut f, mut bb, mut w) = (nf * lf, nf * lb, nf * lw);
            let mut act = nf * act_layer;
            let mut params = nf * model.layer_params();
            if st == 0 {
                params += v * h;
            }
            if last {
                f += head;
                bb += head;
                w += head;
                act += 4.0 * s * b * v;
                params += v * h;
            }
            let exchange = nf * a2a;
            out.recompute.push(nf * lf / rate + exchange);
            let kept = nf * 2.0 * s * b * h + if last { 4.0 * s * b * v } else { 0.0 };
            out.keep.push(if act > 0.0 {
                (kept / act).min(1.0)
            } else {
                0.0
            });
            out.costs.push(Costs {
                f: f / rate + exchange,
                b: bb / rate + exchange,
                w: w / rate,
                bw: None,
                comm: 0.0,
                overlap: 1.0,
                r: None,
                keep: None,
                offload: None,
                selective: None,
            });
            if a2a > 0.0 {
                out.hidden.push([exchange, exchange]);
            }
            out.offload
                .push(act / device.host_bandwidth + device.latency);
            let attention = nf * 5.0 * a * s * s * b;
            out.selective.push([
                nf * 4.0 * b * s * s * h / rate,
                if act > 0.0 {
                    ((act - attention) / act).clamp(0.0, 1.0)
                } else {
                    1.0
                },
            ]);
            out.activation_bytes.push(act);
            out.params.push(params);
            out.layers.push(n);
        }
        Ok(out)
    }
}
