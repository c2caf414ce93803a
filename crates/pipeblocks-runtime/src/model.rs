//! A GPT-style decoder with a hand-written, split backward.
//!
//! Every layer keeps, per microbatch, what its backward needs and nothing else:
//!
//! - `forward` (F) computes the output and stores the forward cache;
//! - `backward_input` (B) computes the gradient for the input, drops what only B needed and keeps
//!   exactly what the weight gradient needs: for every weight matrix its input and its output
//!   gradient;
//! - `backward_weight` (W) computes the weight-matrix gradients `dW = xᵀ·dy`, accumulates them and
//!   drops the rest;
//! - `backward` (BW) does both at once.
//!
//! A recomputed microbatch (a schedule with an R pass for it) runs
//! [`Stage::forward_checkpointed`] instead of `forward`: the stage keeps only its input (and, on
//! the last stage, the targets) and drops every activation; [`Stage::recompute`] (R) reruns the
//! forward from that input before the backward, restoring exactly what `forward` stored.
//!
//! The gradients of biases, LayerNorm gains and shifts and of the embedding tables are sums over
//! the output gradient, which B holds anyway; B accumulates them at once, so W keeps nothing but
//! the matrices' operands (as in the zero-bubble papers, W is the matrix-product half).
//!
//! Activations are 2-D `(tokens, channels)` tensors, tokens being `batch · seq` in row-major
//! order. The maths follows llm.c: a linear layer is `y = x·W + b`, so `dx = dy·Wᵀ`,
//! `dW = xᵀ·dy`, `db = Σ dy`.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::{Result, RuntimeError};

/// Sizes of the decoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// Vocabulary size (256 for bytes).
    pub vocab: usize,
    /// Width of the residual stream.
    pub hidden: usize,
    /// Attention heads; must divide `hidden`.
    pub heads: usize,
    /// Transformer blocks.
    pub layers: usize,
    /// Context length (tokens per sequence).
    pub seq: usize,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            vocab: 256,
            hidden: 64,
            heads: 4,
            layers: 4,
            seq: 64,
        }
    }
}

impl ModelConfig {
    /// Checks the sizes fit together.
    pub fn check(&self) -> Result<()> {
        if self.vocab == 0 || self.hidden == 0 || self.heads == 0 || self.seq == 0 {
            return Err(RuntimeError::config(
                "vocab, hidden, heads and seq must all be at least 1",
            ));
        }
        if !self.hidden.is_multiple_of(self.heads) {
            return Err(RuntimeError::config(format!(
                "--hidden {} is not a multiple of --heads {}; pick sizes where heads divides hidden",
                self.hidden, self.heads
            )));
        }
        Ok(())
    }

    /// Number of parameters.
    pub fn num_params(&self) -> usize {
        let (v, c, t) = (self.vocab, self.hidden, self.seq);
        let block =
            2 * 2 * c + (c * 3 * c + 3 * c) + (c * c + c) + (c * 4 * c + 4 * c) + (4 * c * c + c);
        v * c + t * c + self.layers * block + 2 * c + c * v + v
    }

    /// Floating-point operations of the matrix products of one forward and backward over
    /// `tokens` tokens (each product `2·m·n·k`, backward twice the forward).
    pub fn matmul_flops(&self, tokens: usize) -> f64 {
        let (v, c, t) = (self.vocab as f64, self.hidden as f64, self.seq as f64);
        let n = tokens as f64;
        let linear = 2.0 * n * (3.0 * c * c + c * c + 4.0 * c * c + 4.0 * c * c);
        // Scores and weighted values: 2 products of (T × hd) · (hd × T) per head per sequence.
        let attention = 2.0 * 2.0 * n * t * c;
        let head = 2.0 * n * c * v;
        3.0 * (self.layers as f64 * (linear + attention) + head)
    }
}

/// Bytes of a tensor's elements.
pub fn tensor_bytes(t: &Tensor) -> usize {
    t.elem_count() * t.dtype().size_in_bytes()
}

fn missing(what: &str, mb: u32) -> RuntimeError {
    RuntimeError::State(format!(
        "{what}: nothing stored for microbatch {mb} (its forward did not run, or its backward ran twice)"
    ))
}

/// A deterministic pseudo-random generator (SplitMix64), used for initialisation and data.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x6a09_e667_f3bc_c909)
    }

    /// A generator from a seed and a name, independent of any other stream.
    pub fn named(seed: u64, name: &str) -> Self {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in name.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        Rng::new(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ h)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform integer in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(1e-300);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

/// A trainable tensor with its gradient and AdamW moments.
#[derive(Debug)]
pub struct Param {
    /// Name in model order (`h.2.fc.w`), stable across stage splits; checkpoints use it.
    pub name: String,
    /// Current value.
    pub value: Tensor,
    /// Gradient accumulated since the last optimiser step.
    pub grad: Tensor,
    /// AdamW first moment.
    pub m: Tensor,
    /// AdamW second moment.
    pub v: Tensor,
    /// Whether weight decay applies (matrices yes, biases and norms no).
    pub decay: bool,
}

impl Param {
    fn from_vec(
        name: String,
        data: Vec<f32>,
        shape: &[usize],
        decay: bool,
        dev: &Device,
    ) -> Result<Self> {
        let value = Tensor::from_vec(data, shape, dev)?;
        let zeros = value.zeros_like()?;
        Ok(Param {
            name,
            grad: zeros.clone(),
            m: zeros.clone(),
            v: zeros,
            value,
            decay,
        })
    }

    fn normal(name: String, shape: &[usize], std: f64, seed: u64, dev: &Device) -> Result<Self> {
        let mut rng = Rng::named(seed, &name);
        let n: usize = shape.iter().product();
        let data = (0..n).map(|_| (rng.normal() * std) as f32).collect();
        Param::from_vec(name, data, shape, shape.len() > 1, dev)
    }

    fn constant(name: String, shape: &[usize], x: f32, dev: &Device) -> Result<Self> {
        let n: usize = shape.iter().product();
        Param::from_vec(name, vec![x; n], shape, false, dev)
    }

    fn accumulate(&mut self, g: &Tensor) -> Result<()> {
        self.grad = (&self.grad + g)?;
        Ok(())
    }

    /// Resets the gradient to zero.
    pub fn zero_grad(&mut self) -> Result<()> {
        self.grad = self.grad.zeros_like()?;
        Ok(())
    }

    /// One AdamW update with the accumulated gradient (`step` counts from 1).
    pub fn adamw(&mut self, opt: &AdamW, step: u64) -> Result<()> {
        let g = &self.grad;
        self.m = (self.m.affine(opt.beta1, 0.0)? + g.affine(1.0 - opt.beta1, 0.0)?)?;
        self.v = (self.v.affine(opt.beta2, 0.0)? + g.sqr()?.affine(1.0 - opt.beta2, 0.0)?)?;
        let c1 = 1.0 - opt.beta1.powi(step as i32);
        let c2 = 1.0 - opt.beta2.powi(step as i32);
        let mhat = self.m.affine(1.0 / c1, 0.0)?;
        let denom = self.v.affine(1.0 / c2, 0.0)?.sqrt()?.affine(1.0, opt.eps)?;
        let mut update = (mhat / denom)?;
        if self.decay && opt.weight_decay > 0.0 {
            update = (update + self.value.affine(opt.weight_decay, 0.0)?)?;
        }
        self.value = (&self.value - update.affine(opt.lr, 0.0)?)?;
        Ok(())
    }
}

/// AdamW hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdamW {
    /// Learning rate.
    pub lr: f64,
    /// First-moment decay.
    pub beta1: f64,
    /// Second-moment decay.
    pub beta2: f64,
    /// Denominator guard.
    pub eps: f64,
    /// Decoupled weight decay (matrices only).
    pub weight_decay: f64,
}

impl Default for AdamW {
    fn default() -> Self {
        AdamW {
            lr: 3e-3,
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

/// A layer with a split backward. Caches are per microbatch, so any schedule order works.
pub trait Layer: Send {
    /// F: output for input `x`; stores what the backward needs.
    fn forward(&mut self, mb: u32, x: &Tensor) -> Result<Tensor>;
    /// B: gradient for the input; keeps exactly what [`Layer::backward_weight`] needs.
    fn backward_input(&mut self, mb: u32, dy: &Tensor) -> Result<Tensor>;
    /// W: accumulates the parameter gradients and frees the microbatch's cache.
    fn backward_weight(&mut self, mb: u32) -> Result<()>;
    /// BW: both backward halves in one go.
    fn backward(&mut self, mb: u32, dy: &Tensor) -> Result<Tensor> {
        let dx = self.backward_input(mb, dy)?;
        self.backward_weight(mb)?;
        Ok(dx)
    }
    /// The parameters, in model order.
    fn params_mut(&mut self) -> Vec<&mut Param>;
    /// Bytes of activations currently stored for backward passes.
    fn held_bytes(&self) -> usize;
    /// Drops every stored activation (after a failed step).
    fn clear(&mut self);
    /// Drops what the forward of microbatch `mb` stored (a recomputed microbatch, whose R
    /// stores it again; see [`Stage::forward_checkpointed`]).
    fn forget(&mut self, mb: u32);
}

fn sum_bytes<'a>(it: impl Iterator<Item = &'a Tensor>) -> usize {
    it.map(tensor_bytes).sum()
}

/// `y = x·W + b` with `W` of shape `(in, out)`.
#[derive(Debug)]
pub struct Linear {
    /// Weight `(in, out)`.
    pub w: Param,
    /// Bias `(out)`.
    pub b: Param,
    inputs: HashMap<u32, Tensor>,
    for_w: HashMap<u32, (Tensor, Tensor)>,
}

impl Linear {
    fn new(
        name: &str,
        fan_in: usize,
        fan_out: usize,
        std: f64,
        seed: u64,
        dev: &Device,
    ) -> Result<Self> {
        Ok(Linear {
            w: Param::normal(format!("{name}.w"), &[fan_in, fan_out], std, seed, dev)?,
            b: Param::constant(format!("{name}.b"), &[fan_out], 0.0, dev)?,
            inputs: HashMap::new(),
            for_w: HashMap::new(),
        })
    }
}

impl Layer for Linear {
    fn forward(&mut self, mb: u32, x: &Tensor) -> Result<Tensor> {
        let y = x.matmul(&self.w.value)?.broadcast_add(&self.b.value)?;
        self.inputs.insert(mb, x.clone());
        Ok(y)
    }

    fn backward_input(&mut self, mb: u32, dy: &Tensor) -> Result<Tensor> {
        let x = self
            .inputs
            .remove(&mb)
            .ok_or_else(|| missing("linear B", mb))?;
        let dx = dy.matmul(&self.w.value.t()?)?;
        self.b.accumulate(&dy.sum(0)?)?;
        self.for_w.insert(mb, (x, dy.clone()));
        Ok(dx)
    }

    fn backward_weight(&mut self, mb: u32) -> Result<()> {
        let (x, dy) = self
            .for_w
            .remove(&mb)
            .ok_or_else(|| missing("linear W", mb))?;
        self.w.accumulate(&x.t()?.matmul(&dy)?)?;
        Ok(())
    }

    fn backward(&mut self, mb: u32, dy: &Tensor) -> Result<Tensor> {
        let x = self
            .inputs
            .remove(&mb)
            .ok_or_else(|| missing("linear BW", mb))?;
        let dx = dy.matmul(&self.w.value.t()?)?;
        self.w.accumulate(&x.t()?.matmul(dy)?)?;
        self.b.accumulate(&dy.sum(0)?)?;
        Ok(dx)
    }

    fn params_mut(&mut self) -> Vec<&mut Param> {
        vec![&mut self.w, &mut self.b]
    }

    fn held_bytes(&self) -> usize {
        sum_bytes(self.inputs.values()) + sum_bytes(self.for_w.values().flat_map(|(a, b)| [a, b]))
    }

    fn clear(&mut self) {
        self.inputs.clear();
        self.for_w.clear();
    }

    fn forget(&mut self, mb: u32) {
        self.inputs.remove(&mb);
    }
}

/// Layer normalisation over the channels: `y = x̂·γ + β`, `x̂ = (x - μ)/σ`.
#[derive(Debug)]
pub struct LayerNorm {
    /// Scale γ.
    pub g: Param,
    /// Shift β.
    pub b: Param,
    fwd: HashMap<u32, (Tensor, Tensor)>,
}

const LN_EPS: f64 = 1e-5;

impl LayerNorm {
    fn new(name: &str, c: usize, dev: &Device) -> Result<Self> {
        Ok(LayerNorm {
            g: Param::constant(format!("{name}.g"), &[c], 1.0, dev)?,
            b: Param::constant(format!("{name}.b"), &[c], 0.0, dev)?,
            fwd: HashMap::new(),
        })
    }

    fn input_grad(&self, xhat: &Tensor, rstd: &Tensor, dy: &Tensor) -> Result<Tensor> {
        // dx = σ⁻¹ · (dx̂ - mean(dx̂) - x̂ · mean(dx̂ · x̂)), dx̂ = dy · γ
        let dxhat = dy.broadcast_mul(&self.g.value)?;
        let mean_d = dxhat.mean_keepdim(1)?;
        let mean_dx = (&dxhat * xhat)?.mean_keepdim(1)?;
        let inner = (dxhat.broadcast_sub(&mean_d)? - xhat.broadcast_mul(&mean_dx)?)?;
        Ok(inner.broadcast_mul(rstd)?)
    }

    fn weight_grad(&mut self, xhat: &Tensor, dy: &Tensor) -> Result<()> {
        self.g.accumulate(&(dy * xhat)?.sum(0)?)?;
        self.b.accumulate(&dy.sum(0)?)?;
        Ok(())
    }
}

impl Layer for LayerNorm {
    fn forward(&mut self, mb: u32, x: &Tensor) -> Result<Tensor> {
        let mean = x.mean_keepdim(1)?;
        let xc = x.broadcast_sub(&mean)?;
        let var = xc.sqr()?.mean_keepdim(1)?;
        let rstd = var.affine(1.0, LN_EPS)?.sqrt()?.recip()?;
        let xhat = xc.broadcast_mul(&rstd)?;
        let y = xhat
            .broadcast_mul(&self.g.value)?
            .broadcast_add(&self.b.value)?;
        self.fwd.insert(mb, (xhat, rstd));
        Ok(y)
    }

    fn backward_input(&mut self, mb: u32, dy: &Tensor) -> Result<Tensor> {
        // γ and β gradients are reductions over dy: done here, nothing is kept for W.
        let (xhat, rstd) = self
            .fwd
            .remove(&mb)
            .ok_or_else(|| missing("layernorm B", mb))?;
        let dx = self.input_grad(&xhat, &rstd, dy)?;
        self.weight_grad(&xhat, dy)?;
        Ok(dx)
    }

    fn backward_weight(&mut self, _mb: u32) -> Result<()> {
        Ok(())
    }

    fn params_mut(&mut self) -> Vec<&mut Param> {
        vec![&mut self.g, &mut self.b]
    }

    fn held_bytes(&self) -> usize {
        sum_bytes(self.fwd.values().flat_map(|(a, b)| [a, b]))
    }

    fn clear(&mut self) {
        self.fwd.clear();
    }

    fn forget(&mut self, mb: u32) {
        self.fwd.remove(&mb);
    }
}

/// GELU, tanh approximation: `½x(1 + tanh(√(2/π)(x + 0.044715x³)))`.
#[derive(Debug, Default)]
pub struct Gelu {
    inputs: HashMap<u32, Tensor>,
}

const GELU_C: f64 = 0.797_884_560_802_865_4; // √(2/π)
const GELU_K: f64 = 0.044_715;

impl Layer for Gelu {
    fn forward(&mut self, mb: u32, x: &Tensor) -> Result<Tensor> {
        let u = (x + x.powf(3.0)?.affine(GELU_K, 0.0)?)?.affine(GELU_C, 0.0)?;
        let y = (x * u.tanh()?.affine(0.5, 0.5)?)?;
        self.inputs.insert(mb, x.clone());
        Ok(y)
    }

    fn backward_input(&mut self, mb: u32, dy: &Tensor) -> Result<Tensor> {
        let x = self
            .inputs
            .remove(&mb)
            .ok_or_else(|| missing("gelu B", mb))?;
        // d/dx = ½(1 + tanh u) + ½x(1 - tanh²u)·√(2/π)(1 + 3·0.044715x²)
        let th = (x.clone() + x.powf(3.0)?.affine(GELU_K, 0.0)?)?
            .affine(GELU_C, 0.0)?
            .tanh()?;
        let left = th.affine(0.5, 0.5)?;
        let sech2 = th.sqr()?.affine(-1.0, 1.0)?;
        let du = x.sqr()?.affine(3.0 * GELU_K * GELU_C, GELU_C)?;
        let right = ((x.affine(0.5, 0.0)? * sech2)? * du)?;
        Ok((dy * (left + right)?)?)
    }

    fn backward_weight(&mut self, _mb: u32) -> Result<()> {
        Ok(())
    }

    fn params_mut(&mut self) -> Vec<&mut Param> {
        Vec::new()
    }

    fn held_bytes(&self) -> usize {
        sum_bytes(self.inputs.values())
    }

    fn clear(&mut self) {
        self.inputs.clear();
    }

    fn forget(&mut self, mb: u32) {
        self.inputs.remove(&mb);
    }
}

/// Causal multi-head self-attention on a packed `(tokens, 3·C)` q/k/v input (no parameters: the
/// projections are [`Linear`] layers around it).
#[derive(Debug)]
pub struct Attention {
    heads: usize,
    seq: usize,
    mask: Tensor,
    fwd: HashMap<u32, [Tensor; 4]>,
}

impl Attention {
    fn new(heads: usize, seq: usize, dev: &Device) -> Result<Self> {
        let mask: Vec<f32> = (0..seq * seq)
            .map(|i| {
                if i % seq > i / seq {
                    f32::NEG_INFINITY
                } else {
                    0.0
                }
            })
            .collect();
        Ok(Attention {
            heads,
            seq,
            mask: Tensor::from_vec(mask, (seq, seq), dev)?,
            fwd: HashMap::new(),
        })
    }

    /// `(N, C)` → `(B, H, T, hd)`.
    fn split_heads(&self, x: &Tensor) -> Result<Tensor> {
        let (n, c) = x.dims2()?;
        let hd = c / self.heads;
        Ok(x.reshape((n / self.seq, self.seq, self.heads, hd))?
            .transpose(1, 2)?
            .contiguous()?)
    }

    /// `(B, H, T, hd)` → `(N, C)`.
    fn merge_heads(&self, x: &Tensor) -> Result<Tensor> {
        let (b, h, t, hd) = x.dims4()?;
        Ok(x.transpose(1, 2)?.contiguous()?.reshape((b * t, h * hd))?)
    }
}

impl Layer for Attention {
    fn forward(&mut self, mb: u32, qkv: &Tensor) -> Result<Tensor> {
        let c = qkv.dim(1)? / 3;
        let q = self.split_heads(&qkv.narrow(1, 0, c)?)?;
        let k = self.split_heads(&qkv.narrow(1, c, c)?)?;
        let v = self.split_heads(&qkv.narrow(1, 2 * c, c)?)?;
        let scale = 1.0 / ((c / self.heads) as f64).sqrt();
        let scores = q
            .matmul(&k.t()?)?
            .affine(scale, 0.0)?
            .broadcast_add(&self.mask)?;
        let max = scores.max_keepdim(3)?;
        let e = scores.broadcast_sub(&max)?.exp()?;
        let p = e.broadcast_div(&e.sum_keepdim(3)?)?;
        let y = self.merge_heads(&p.matmul(&v)?)?;
        self.fwd.insert(mb, [q, k, v, p]);
        Ok(y)
    }

    fn backward_input(&mut self, mb: u32, dy: &Tensor) -> Result<Tensor> {
        let [q, k, v, p] = self
            .fwd
            .remove(&mb)
            .ok_or_else(|| missing("attention B", mb))?;
        let scale = 1.0 / (q.dim(3)? as f64).sqrt();
        let dy = self.split_heads(dy)?;
        let dp = dy.matmul(&v.t()?)?;
        let dv = p.t()?.matmul(&dy)?;
        // softmax backward: dS = P ⊙ (dP - Σ_j dP·P)
        let dot = (&dp * &p)?.sum_keepdim(3)?;
        let ds = (p * dp.broadcast_sub(&dot)?)?;
        let dq = ds.matmul(&k)?.affine(scale, 0.0)?;
        let dk = ds.t()?.matmul(&q)?.affine(scale, 0.0)?;
        Ok(Tensor::cat(
            &[
                self.merge_heads(&dq)?,
                self.merge_heads(&dk)?,
                self.merge_heads(&dv)?,
            ],
            1,
        )?)
    }

    fn backward_weight(&mut self, _mb: u32) -> Result<()> {
        Ok(())
    }

    fn params_mut(&mut self) -> Vec<&mut Param> {
        Vec::new()
    }

    fn held_bytes(&self) -> usize {
        sum_bytes(self.fwd.values().flatten())
    }

    fn clear(&mut self) {
        self.fwd.clear();
    }

    fn forget(&mut self, mb: u32) {
        self.fwd.remove(&mb);
    }
}

/// A pre-LayerNorm transformer block:
/// `h = x + proj(attn(qkv(ln1(x))))`, `out = h + fc2(gelu(fc(ln2(h))))`.
#[derive(Debug)]
pub struct DecoderLayer {
    ln1: LayerNorm,
    qkv: Linear,
    attn: Attention,
    proj: Linear,
    ln2: LayerNorm,
    fc: Linear,
    gelu: Gelu,
    fc2: Linear,
}

impl DecoderLayer {
    fn new(i: usize, cfg: &ModelConfig, seed: u64, dev: &Device) -> Result<Self> {
        let c = cfg.hidden;
        let std = 0.02;
        let res_std = 0.02 / (2.0 * cfg.layers as f64).sqrt();
        let n = |s: &str| format!("h.{i}.{s}");
        Ok(DecoderLayer {
            ln1: LayerNorm::new(&n("ln1"), c, dev)?,
            qkv: Linear::new(&n("qkv"), c, 3 * c, std, seed, dev)?,
            attn: Attention::new(cfg.heads, cfg.seq, dev)?,
            proj: Linear::new(&n("proj"), c, c, res_std, seed, dev)?,
            ln2: LayerNorm::new(&n("ln2"), c, dev)?,
            fc: Linear::new(&n("fc"), c, 4 * c, std, seed, dev)?,
            gelu: Gelu::default(),
            fc2: Linear::new(&n("fc2"), 4 * c, c, res_std, seed, dev)?,
        })
    }

    fn layers_mut(&mut self) -> [&mut dyn Layer; 8] {
        [
            &mut self.ln1,
            &mut self.qkv,
            &mut self.attn,
            &mut self.proj,
            &mut self.ln2,
            &mut self.fc,
            &mut self.gelu,
            &mut self.fc2,
        ]
    }

    fn layers(&self) -> [&dyn Layer; 8] {
        [
            &self.ln1, &self.qkv, &self.attn, &self.proj, &self.ln2, &self.fc, &self.gelu,
            &self.fc2,
        ]
    }

    fn backward_impl(&mut self, mb: u32, dout: &Tensor, fused: bool) -> Result<Tensor> {
        let step = |l: &mut dyn Layer, d: &Tensor| -> Result<Tensor> {
            if fused {
                l.backward(mb, d)
            } else {
                l.backward_input(mb, d)
            }
        };
        let mut d = step(&mut self.fc2, dout)?;
        d = step(&mut self.gelu, &d)?;
        d = step(&mut self.fc, &d)?;
        d = step(&mut self.ln2, &d)?;
        let dh = (dout + d)?;
        let mut e = step(&mut self.proj, &dh)?;
        e = step(&mut self.attn, &e)?;
        e = step(&mut self.qkv, &e)?;
        e = step(&mut self.ln1, &e)?;
        Ok((dh + e)?)
    }
}

impl Layer for DecoderLayer {
    fn forward(&mut self, mb: u32, x: &Tensor) -> Result<Tensor> {
        let mut a = self.ln1.forward(mb, x)?;
        a = self.qkv.forward(mb, &a)?;
        a = self.attn.forward(mb, &a)?;
        a = self.proj.forward(mb, &a)?;
        let h = (x + a)?;
        let mut b = self.ln2.forward(mb, &h)?;
        b = self.fc.forward(mb, &b)?;
        b = self.gelu.forward(mb, &b)?;
        b = self.fc2.forward(mb, &b)?;
        Ok((h + b)?)
    }

    fn backward_input(&mut self, mb: u32, dy: &Tensor) -> Result<Tensor> {
        self.backward_impl(mb, dy, false)
    }

    fn backward_weight(&mut self, mb: u32) -> Result<()> {
        for l in self.layers_mut() {
            l.backward_weight(mb)?;
        }
        Ok(())
    }

    fn backward(&mut self, mb: u32, dy: &Tensor) -> Result<Tensor> {
        self.backward_impl(mb, dy, true)
    }

    fn params_mut(&mut self) -> Vec<&mut Param> {
        let [ln1, qkv, _, proj, ln2, fc, _, fc2] = self.layers_mut();
        let mut v = ln1.params_mut();
        v.extend(qkv.params_mut());
        v.extend(proj.params_mut());
        v.extend(ln2.params_mut());
        v.extend(fc.params_mut());
        v.extend(fc2.params_mut());
        v
    }

    fn held_bytes(&self) -> usize {
        self.layers().iter().map(|l| l.held_bytes()).sum()
    }

    fn clear(&mut self) {
        for l in self.layers_mut() {
            l.clear();
        }
    }

    fn forget(&mut self, mb: u32) {
        for l in self.layers_mut() {
            l.forget(mb);
        }
    }
}

/// Token and position embeddings: `x = wte[token] + wpe[position]`.
#[derive(Debug)]
pub struct Embedding {
    wte: Param,
    wpe: Param,
    tokens: HashMap<u32, Tensor>,
}

impl Embedding {
    fn new(cfg: &ModelConfig, seed: u64, dev: &Device) -> Result<Self> {
        Ok(Embedding {
            wte: Param::normal("wte".into(), &[cfg.vocab, cfg.hidden], 0.02, seed, dev)?,
            wpe: Param::normal("wpe".into(), &[cfg.seq, cfg.hidden], 0.01, seed, dev)?,
            tokens: HashMap::new(),
        })
    }

    /// F on `(batch, seq)` token ids (u32).
    fn forward(&mut self, mb: u32, tokens: &Tensor) -> Result<Tensor> {
        let (b, t) = tokens.dims2()?;
        let flat = tokens.flatten_all()?;
        let x = self.wte.value.index_select(&flat, 0)?;
        let c = x.dim(1)?;
        let x = x
            .reshape((b, t, c))?
            .broadcast_add(&self.wpe.value.narrow(0, 0, t)?)?
            .reshape((b * t, c))?;
        self.tokens.insert(mb, flat);
        Ok(x)
    }

    /// B: tokens have no gradient; the table gradients are scatter-sums of `dy`, accumulated
    /// here so nothing is kept for W.
    fn backward_input(&mut self, mb: u32, dy: &Tensor) -> Result<()> {
        let tok = self
            .tokens
            .remove(&mb)
            .ok_or_else(|| missing("embedding B", mb))?;
        let dwte = self.wte.value.zeros_like()?.index_add(&tok, dy, 0)?;
        self.wte.accumulate(&dwte)?;
        let (n, c) = dy.dims2()?;
        let t = self.wpe.value.dim(0)?;
        let dwpe = dy.reshape((n / t, t, c))?.sum(0)?;
        self.wpe.accumulate(&dwpe)?;
        Ok(())
    }

    fn held_bytes(&self) -> usize {
        sum_bytes(self.tokens.values())
    }

    fn forget(&mut self, mb: u32) {
        self.tokens.remove(&mb);
    }
}

/// Final LayerNorm, LM head and cross-entropy.
#[derive(Debug)]
pub struct Head {
    lnf: LayerNorm,
    lm: Linear,
    vocab: usize,
    fwd: HashMap<u32, (Tensor, Tensor)>,
}

impl Head {
    fn new(cfg: &ModelConfig, seed: u64, dev: &Device) -> Result<Self> {
        Ok(Head {
            lnf: LayerNorm::new("lnf", cfg.hidden, dev)?,
            lm: Linear::new("lm_head", cfg.hidden, cfg.vocab, 0.02, seed, dev)?,
            vocab: cfg.vocab,
            fwd: HashMap::new(),
        })
    }

    /// F: the summed cross-entropy of the microbatch's tokens (`targets`: `(tokens)` u32).
    fn forward(&mut self, mb: u32, x: &Tensor, targets: &Tensor) -> Result<f64> {
        let h = self.lnf.forward(mb, x)?;
        let logits = self.lm.forward(mb, &h)?;
        let max = logits.max_keepdim(1)?;
        let shifted = logits.broadcast_sub(&max)?;
        let lse = shifted.exp()?.sum_keepdim(1)?.log()?;
        let logp = shifted.broadcast_sub(&lse)?;
        let picked = logp.gather(&targets.unsqueeze(1)?, 1)?;
        let loss = picked.sum_all()?.to_scalar::<f32>()?;
        self.fwd.insert(mb, (logp.exp()?, targets.clone()));
        Ok(-f64::from(loss))
    }

    /// `dlogits = (softmax - onehot) · scale`, then back through the head.
    fn dlogits(&mut self, mb: u32, scale: f64) -> Result<Tensor> {
        let (probs, targets) = self.fwd.remove(&mb).ok_or_else(|| missing("loss B", mb))?;
        let classes = Tensor::arange(0u32, self.vocab as u32, probs.device())?;
        let onehot = targets
            .unsqueeze(1)?
            .broadcast_eq(&classes.unsqueeze(0)?)?
            .to_dtype(DType::F32)?;
        Ok((probs - onehot)?.affine(scale, 0.0)?)
    }

    fn backward_input(&mut self, mb: u32, scale: f64) -> Result<Tensor> {
        let d = self.dlogits(mb, scale)?;
        let d = self.lm.backward_input(mb, &d)?;
        self.lnf.backward_input(mb, &d)
    }

    fn backward(&mut self, mb: u32, scale: f64) -> Result<Tensor> {
        let d = self.dlogits(mb, scale)?;
        let d = self.lm.backward(mb, &d)?;
        self.lnf.backward(mb, &d)
    }

    fn backward_weight(&mut self, mb: u32) -> Result<()> {
        self.lm.backward_weight(mb)
    }

    fn held_bytes(&self) -> usize {
        self.lnf.held_bytes()
            + self.lm.held_bytes()
            + sum_bytes(self.fwd.values().flat_map(|(a, b)| [a, b]))
    }

    fn forget(&mut self, mb: u32) {
        self.lnf.forget(mb);
        self.lm.forget(mb);
        self.fwd.remove(&mb);
    }
}

/// What a stage's forward produces.
#[derive(Debug)]
pub enum StageOutput {
    /// The activation for the next stage.
    Activation(Tensor),
    /// The summed loss of the microbatch (last stage).
    Loss(f64),
}

/// A contiguous slice of the model: optionally the embedding, some decoder layers, optionally
/// the head.
#[derive(Debug)]
pub struct Stage {
    /// Global stage index.
    pub index: u32,
    /// Indices of the decoder layers this stage holds.
    pub layer_range: std::ops::Range<usize>,
    embed: Option<Embedding>,
    layers: Vec<DecoderLayer>,
    head: Option<Head>,
    /// Loss gradient scale: `1 / tokens in the whole batch`.
    loss_scale: f64,
    /// Per recomputed microbatch between its F and its R: the stage input and, on the last
    /// stage, the targets.
    kept: HashMap<u32, (Tensor, Option<Tensor>)>,
}

impl Stage {
    /// Builds stage `index` of `stages`, its parameters initialised from `seed` by name (so the
    /// split does not change the initial model), on `dev`.
    pub fn new(
        cfg: &ModelConfig,
        index: u32,
        stages: u32,
        seed: u64,
        dev: &Device,
    ) -> Result<Self> {
        cfg.check()?;
        if stages == 0 || index >= stages {
            return Err(RuntimeError::config(format!(
                "stage {index} of {stages} does not exist"
            )));
        }
        if cfg.layers < stages as usize {
            return Err(RuntimeError::config(format!(
                "the schedule has {stages} stages but the model only {} layers; use --layers {stages} or more",
                cfg.layers
            )));
        }
        let range = layer_range(cfg.layers, stages, index);
        let layers = range
            .clone()
            .map(|i| DecoderLayer::new(i, cfg, seed, dev))
            .collect::<Result<Vec<_>>>()?;
        Ok(Stage {
            index,
            layer_range: range,
            embed: if index == 0 {
                Some(Embedding::new(cfg, seed, dev)?)
            } else {
                None
            },
            layers,
            head: if index + 1 == stages {
                Some(Head::new(cfg, seed, dev)?)
            } else {
                None
            },
            loss_scale: 1.0,
            kept: HashMap::new(),
        })
    }

    /// Sets the loss gradient scale (`1 / tokens of the whole batch`).
    pub fn set_loss_scale(&mut self, scale: f64) {
        self.loss_scale = scale;
    }

    /// Whether this stage holds the embedding (takes tokens).
    pub fn is_first(&self) -> bool {
        self.embed.is_some()
    }

    /// Whether this stage holds the head (produces the loss).
    pub fn is_last(&self) -> bool {
        self.head.is_some()
    }

    /// F: `input` is `(batch, seq)` tokens for the first stage, else the previous activation;
    /// `targets` (flattened token ids) are needed by the last stage.
    pub fn forward(
        &mut self,
        mb: u32,
        input: &Tensor,
        targets: Option<&Tensor>,
    ) -> Result<StageOutput> {
        let mut x = match &mut self.embed {
            Some(e) => e.forward(mb, input)?,
            None => input.clone(),
        };
        for b in &mut self.layers {
            x = b.forward(mb, &x)?;
        }
        match &mut self.head {
            Some(h) => {
                let t = targets.ok_or_else(|| {
                    RuntimeError::State(format!(
                        "stage {} has no targets for microbatch {mb}",
                        self.index
                    ))
                })?;
                Ok(StageOutput::Loss(h.forward(mb, &x, t)?))
            }
            None => Ok(StageOutput::Activation(x)),
        }
    }

    /// F of a recomputed microbatch: the same output as [`Stage::forward`], but afterwards the
    /// stage keeps only what [`Stage::recompute`] needs, the input and (last stage) the targets,
    /// and drops every activation the forward stored.
    pub fn forward_checkpointed(
        &mut self,
        mb: u32,
        input: &Tensor,
        targets: Option<&Tensor>,
    ) -> Result<StageOutput> {
        let out = self.forward(mb, input, targets)?;
        self.forget(mb);
        let targets = if self.is_last() {
            targets.cloned()
        } else {
            None
        };
        self.kept.insert(mb, (input.clone(), targets));
        Ok(out)
    }

    /// R: reruns the forward of microbatch `mb` from the input [`Stage::forward_checkpointed`]
    /// kept, storing again exactly the activations the backward needs (the arithmetic is the
    /// forward's, on the same parameters, so the backward sees the same values). The output and
    /// the loss are discarded: nothing is sent again and the loss is not counted twice. The
    /// kept input is released.
    pub fn recompute(&mut self, mb: u32) -> Result<()> {
        let (input, targets) = self.kept.remove(&mb).ok_or_else(|| {
            RuntimeError::State(format!(
                "recompute: nothing kept for microbatch {mb} on stage {} (its forward did not run as a recomputed one, or its R ran twice)",
                self.index
            ))
        })?;
        self.forward(mb, &input, targets.as_ref())?;
        Ok(())
    }

    /// Drops what microbatch `mb`'s forward stored in every layer.
    fn forget(&mut self, mb: u32) {
        if let Some(e) = &mut self.embed {
            e.forget(mb);
        }
        for b in &mut self.layers {
            b.forget(mb);
        }
        if let Some(h) = &mut self.head {
            h.forget(mb);
        }
    }

    /// Bytes a recomputed microbatch keeps between its F and its R (its input and, on the last
    /// stage, its targets), over all microbatches currently kept.
    pub fn kept_bytes(&self) -> usize {
        self.kept
            .values()
            .map(|(x, t)| tensor_bytes(x) + t.as_ref().map_or(0, tensor_bytes))
            .sum()
    }

    fn backward_impl(
        &mut self,
        mb: u32,
        dy: Option<&Tensor>,
        fused: bool,
    ) -> Result<Option<Tensor>> {
        let mut d = match (&mut self.head, dy) {
            (Some(h), _) if fused => h.backward(mb, self.loss_scale)?,
            (Some(h), _) => h.backward_input(mb, self.loss_scale)?,
            (None, Some(d)) => d.clone(),
            (None, None) => {
                return Err(RuntimeError::State(format!(
                    "stage {} got no output gradient for microbatch {mb}",
                    self.index
                )))
            }
        };
        for b in self.layers.iter_mut().rev() {
            d = if fused {
                b.backward(mb, &d)?
            } else {
                b.backward_input(mb, &d)?
            };
        }
        match &mut self.embed {
            Some(e) => {
                e.backward_input(mb, &d)?;
                Ok(None)
            }
            None => Ok(Some(d)),
        }
    }

    /// B: the gradient for the stage input (`None` for the first stage); `dy` is the output
    /// gradient (`None` for the last stage, which starts from the loss).
    pub fn backward_input(&mut self, mb: u32, dy: Option<&Tensor>) -> Result<Option<Tensor>> {
        self.backward_impl(mb, dy, false)
    }

    /// BW: fused backward.
    pub fn backward(&mut self, mb: u32, dy: Option<&Tensor>) -> Result<Option<Tensor>> {
        self.backward_impl(mb, dy, true)
    }

    /// W: accumulates the weight gradients of microbatch `mb`.
    pub fn backward_weight(&mut self, mb: u32) -> Result<()> {
        if let Some(h) = &mut self.head {
            h.backward_weight(mb)?;
        }
        for b in self.layers.iter_mut() {
            b.backward_weight(mb)?;
        }
        Ok(())
    }

    /// The parameters in model order.
    pub fn params_mut(&mut self) -> Vec<&mut Param> {
        let mut v = Vec::new();
        if let Some(e) = &mut self.embed {
            v.push(&mut e.wte);
            v.push(&mut e.wpe);
        }
        for b in &mut self.layers {
            v.extend(b.params_mut());
        }
        if let Some(h) = &mut self.head {
            v.extend(h.lnf.params_mut());
            v.extend(h.lm.params_mut());
        }
        v
    }

    /// Activation bytes held for pending backward passes, the inputs kept for recomputation
    /// included.
    pub fn held_bytes(&self) -> usize {
        self.embed.as_ref().map_or(0, Embedding::held_bytes)
            + self.layers.iter().map(Layer::held_bytes).sum::<usize>()
            + self.head.as_ref().map_or(0, Head::held_bytes)
            + self.kept_bytes()
    }

    /// Drops all stored activations and kept inputs.
    pub fn clear(&mut self) {
        self.kept.clear();
        if let Some(e) = &mut self.embed {
            e.tokens.clear();
        }
        for b in &mut self.layers {
            b.clear();
        }
        if let Some(h) = &mut self.head {
            h.lnf.clear();
            h.lm.clear();
            h.fwd.clear();
        }
    }
}

/// Decoder layers of stage `index` when `layers` layers are split over `stages` stages: the
/// split of core's cost model ([`pipeblocks_core::model::layer_split`]: as evenly as possible,
/// earlier stages taking the remainder), so prediction and run agree. Empty when the split is
/// impossible (more stages than layers, or sizes beyond `u32`).
pub fn layer_range(layers: usize, stages: u32, index: u32) -> std::ops::Range<usize> {
    u32::try_from(layers)
        .ok()
        .and_then(|l| pipeblocks_core::model::layer_split(l, stages))
        .and_then(|split| split.get(index as usize).cloned())
        .map_or(0..0, |r| r.start as usize..r.end as usize)
}
