//! The schedule model: passes, placements and schedules.
//!
//! A [`Schedule`] is a [`Placement`] (which device holds which stage) plus one ordered list of
//! [`Pass`]es per device. Stages are numbered in model order: stage 0 holds the embedding, stage
//! `S-1` the head and the loss. Microbatches are numbered `0..m`.
//!
//! **Lanes.** Every placement but one sends every microbatch through all `S` stages. The
//! [`Placement::Bidirectional`] one (DualPipe's) holds two pipelines, *lanes*, over the same
//! devices in opposite directions: lane 0 is stages `0..p` (devices `0..p`), lane 1 stages
//! `p..2p` (devices `p-1` down to 0), each a full copy of the model's `p` chunks; microbatches
//! `0..m/2` run in lane 0 and `m/2..m` in lane 1. A pass exists only for a stage and a
//! microbatch of the same lane ([`Schedule::runs`]).

use serde::{Deserialize, Serialize};
use std::fmt;

use crate::error::{Error, Param};

/// The kind of a pass.
///
/// `B` computes the gradient for the stage's input (on the critical path), `W` the gradient for its
/// weights (can be delayed), `BW` is the fused backward doing both. `R` recomputes a stage's
/// forward for one microbatch from the input it kept (activation recomputation): a stage and
/// microbatch with an R keeps only that input after its F, and its backward waits for the R.
/// `O` and `L` are transfers on the device's host link, beside its computation: `O` offloads
/// what a microbatch's F left on the stage to host memory (device to host), `L` loads it back
/// (host to device) before the pass that needs it (its R, or else its backward). PyTorch spells
/// `B` as `I` and `BW` as `B`; that translation happens only in [`crate::format::torch_csv`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PassKind {
    /// Forward.
    F,
    /// Backward for the input (activation gradient).
    B,
    /// Backward for the weights.
    W,
    /// Fused backward (input and weights).
    BW,
    /// Recompute: the stage's forward again, from its kept input, before its backward.
    R,
    /// Offload: what the F left on the stage goes to host memory (the device-to-host link).
    O,
    /// Load: an offloaded activation comes back from host memory (the host-to-device link).
    L,
}

impl PassKind {
    /// The kinds with a cost of their own in a stage's table (an R costs the stage's
    /// recompute time, [`crate::params::StageTable::recompute`]).
    pub const ALL: [PassKind; 4] = [PassKind::F, PassKind::B, PassKind::W, PassKind::BW];

    /// Every kind, in [`PassKind::index`] order.
    pub const EVERY: [PassKind; 7] = [
        PassKind::F,
        PassKind::B,
        PassKind::W,
        PassKind::BW,
        PassKind::R,
        PassKind::O,
        PassKind::L,
    ];

    /// Dense index `0..7` (R, O and L last), used to address per-kind tables.
    pub fn index(self) -> usize {
        match self {
            PassKind::F => 0,
            PassKind::B => 1,
            PassKind::W => 2,
            PassKind::BW => 3,
            PassKind::R => 4,
            PassKind::O => 5,
            PassKind::L => 6,
        }
    }

    /// Whether this is a transfer on the host link (O or L), which runs beside the device's
    /// computation rather than on it.
    #[inline]
    pub fn is_transfer(self) -> bool {
        matches!(self, PassKind::O | PassKind::L)
    }

    /// The letter(s) used in pipeblocks' own formats.
    pub fn as_str(self) -> &'static str {
        match self {
            PassKind::F => "F",
            PassKind::B => "B",
            PassKind::W => "W",
            PassKind::BW => "BW",
            PassKind::R => "R",
            PassKind::O => "O",
            PassKind::L => "L",
        }
    }

    /// Whether this pass computes an input gradient that the previous stage waits for.
    pub fn is_input_backward(self) -> bool {
        matches!(self, PassKind::B | PassKind::BW)
    }
}

impl fmt::Display for PassKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One pass: a kind applied to one stage for one microbatch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pass {
    /// What the pass computes.
    pub kind: PassKind,
    /// Global stage index, in model order.
    pub stage: u32,
    /// Microbatch index.
    pub mb: u32,
}

impl Pass {
    /// Builds a pass.
    pub fn new(kind: PassKind, stage: u32, mb: u32) -> Self {
        Pass { kind, stage, mb }
    }
    /// A forward pass.
    pub fn f(stage: u32, mb: u32) -> Self {
        Pass::new(PassKind::F, stage, mb)
    }
    /// An input-gradient pass.
    pub fn b(stage: u32, mb: u32) -> Self {
        Pass::new(PassKind::B, stage, mb)
    }
    /// A weight-gradient pass.
    pub fn w(stage: u32, mb: u32) -> Self {
        Pass::new(PassKind::W, stage, mb)
    }
    /// A fused backward pass.
    pub fn bw(stage: u32, mb: u32) -> Self {
        Pass::new(PassKind::BW, stage, mb)
    }
    /// A recompute pass.
    pub fn r(stage: u32, mb: u32) -> Self {
        Pass::new(PassKind::R, stage, mb)
    }
    /// An offload (device to host).
    pub fn o(stage: u32, mb: u32) -> Self {
        Pass::new(PassKind::O, stage, mb)
    }
    /// A load back (host to device).
    pub fn l(stage: u32, mb: u32) -> Self {
        Pass::new(PassKind::L, stage, mb)
    }

    /// Parses pipeblocks' action syntax `{kind}{stage}.{mb}`, e.g. `F3.7` or `BW0.2`.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let t = text.trim();
        let bad = || {
            Error::Parse {
            what: "pass".into(),
            detail: format!(
                "`{t}` is not a pass; write {{kind}}{{stage}}.{{microbatch}} with kind F, B, W, BW, R, O or L, e.g. `F3.7`"
            ),
        }
        };
        let (kind, rest) = if let Some(r) = t.strip_prefix("BW") {
            (PassKind::BW, r)
        } else if let Some(r) = t.strip_prefix('F') {
            (PassKind::F, r)
        } else if let Some(r) = t.strip_prefix('B') {
            (PassKind::B, r)
        } else if let Some(r) = t.strip_prefix('W') {
            (PassKind::W, r)
        } else if let Some(r) = t.strip_prefix('R') {
            (PassKind::R, r)
        } else if let Some(r) = t.strip_prefix('O') {
            (PassKind::O, r)
        } else if let Some(r) = t.strip_prefix('L') {
            (PassKind::L, r)
        } else {
            return Err(bad());
        };
        let (s, m) = rest.split_once('.').ok_or_else(bad)?;
        let stage = s.parse().map_err(|_| bad())?;
        let mb = m.parse().map_err(|_| bad())?;
        Ok(Pass { kind, stage, mb })
    }
}

impl fmt::Display for Pass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}.{}", self.kind, self.stage, self.mb)
    }
}

impl Serialize for Pass {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Pass {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Pass::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Which device holds which stage.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Placement {
    /// Stage `i` on device `i`; `S = p`.
    Sequential,
    /// Stage `s` on device `s mod p`; `S = chunks * p`.
    Looped {
        /// Chunks (stages) per device, `v`.
        chunks: u32,
    },
    /// Device `i` holds stages `i` and `2p-1-i`; `S = 2p`.
    VShape,
    /// DualPipe's two pipelines in opposite directions ([lanes](self)): device `i` holds stage
    /// `i` of lane 0 and stage `2p-1-i` of lane 1 (the model's chunk `p-1-i`), so two copies of
    /// the parameters; `S = 2p`.
    Bidirectional,
    /// Any map: `devices[s]` is the device of stage `s`.
    Explicit {
        /// Device of each stage, in stage order.
        devices: Vec<u32>,
    },
}

impl Placement {
    /// Number of stages for `p` devices (at most `u32::MAX`: a larger count saturates, and
    /// [`Placement::check`] refuses it).
    pub fn num_stages(&self, p: u32) -> u32 {
        match self {
            Placement::Sequential => p,
            Placement::Looped { chunks } => chunks.saturating_mul(p),
            Placement::VShape | Placement::Bidirectional => p.saturating_mul(2),
            Placement::Explicit { devices } => u32::try_from(devices.len()).unwrap_or(u32::MAX),
        }
    }

    /// Device of `stage` for `p` devices.
    pub fn device_of(&self, stage: u32, p: u32) -> u32 {
        match self {
            Placement::Sequential => stage,
            Placement::Looped { .. } => stage % p,
            Placement::VShape | Placement::Bidirectional => {
                if stage < p {
                    stage
                } else {
                    2 * p - 1 - stage
                }
            }
            Placement::Explicit { devices } => devices[stage as usize],
        }
    }

    /// The full stage → device table for `p` devices.
    pub fn stage_devices(&self, p: u32) -> Vec<u32> {
        (0..self.num_stages(p))
            .map(|s| self.device_of(s, p))
            .collect()
    }

    /// Short human name.
    pub fn describe(&self) -> String {
        match self {
            Placement::Sequential => "sequential".into(),
            Placement::Looped { chunks } => format!("looped (v={chunks})"),
            Placement::VShape => "V-shape".into(),
            Placement::Bidirectional => "bidirectional".into(),
            Placement::Explicit { .. } => "explicit".into(),
        }
    }

    /// Number of [lanes](self): 2 for [`Placement::Bidirectional`], else 1.
    pub fn lanes(&self) -> u32 {
        match self {
            Placement::Bidirectional => 2,
            _ => 1,
        }
    }

    /// Stages of one lane: the model's chunks, each a copy of the parameters' `1/chunks`.
    pub fn lane_stages(&self, p: u32) -> u32 {
        self.num_stages(p) / self.lanes()
    }

    /// Checks the placement is usable with `p` devices, within [`crate::params::limits`].
    pub fn check(&self, p: u32) -> Result<(), Error> {
        if p == 0 {
            return Err(Error::Zero(Param::Devices));
        }
        let limits = crate::params::limits::DEVICES;
        if p > limits {
            return Err(Error::TooLarge {
                what: "the number of devices".into(),
                value: p.into(),
                limit: limits.into(),
                hint: format!("use {limits} or fewer"),
                param: Some(Param::Devices),
            });
        }
        crate::params::check_size(self.num_stages(p).into(), 1)?;
        match self {
            Placement::Looped { chunks: 0 } => Err(Error::Zero(Param::Chunks)),
            Placement::Explicit { devices } => {
                if devices.is_empty() {
                    return Err(Error::config("an explicit placement lists no stages"));
                }
                if let Some((s, d)) = devices.iter().enumerate().find(|(_, &d)| d >= p) {
                    return Err(Error::config(format!(
                        "stage {s} is placed on device {d}, but there are only {p} devices (0..{p})"
                    )));
                }
                for dev in 0..p {
                    if !devices.contains(&dev) {
                        return Err(Error::config(format!(
                            "device {dev} holds no stage; every device needs at least one"
                        )));
                    }
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// Refuses a microbatch count the placement's lanes cannot share evenly.
pub(crate) fn check_lanes(placement: &Placement, m: u32) -> Result<(), Error> {
    let lanes = placement.lanes();
    if !m.is_multiple_of(lanes) {
        return Err(Error::fix(
            format!(
                "the {} placement sends 1/{lanes} of the microbatches each way, but m={m} does not divide evenly",
                placement.describe()
            ),
            Param::Microbatches,
            (m + lanes - m % lanes).to_string(),
        ));
    }
    Ok(())
}

/// See [`Schedule::pair_starts`].
pub fn pair_starts(lists: &[Vec<Pass>], pairs: &[[Pass; 2]]) -> Option<Vec<Vec<bool>>> {
    if pairs.is_empty() {
        return None;
    }
    let set: std::collections::HashSet<(Pass, Pass)> = pairs.iter().map(|&[a, b]| (a, b)).collect();
    Some(
        lists
            .iter()
            .map(|list| {
                let mut v = vec![false; list.len()];
                for i in 1..list.len() {
                    if set.contains(&(list[i - 1], list[i])) {
                        v[i - 1] = true;
                    }
                }
                v
            })
            .collect(),
    )
}

/// A complete pipeline schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    /// Name of the generator or file it came from.
    pub name: String,
    /// Number of devices `p`.
    pub devices: u32,
    /// Number of stages `S`.
    pub stages: u32,
    /// Number of microbatches `m`.
    pub microbatches: u32,
    /// Stage → device map.
    pub placement: Placement,
    /// One ordered list of passes per device.
    pub lists: Vec<Vec<Pass>>,
    /// Overlapped pairs (DualPipe's `F&B`): each names two passes that sit next to each other,
    /// in this order, in one device's list and that the device runs as one unit, a forward of
    /// one microbatch with a backward (B or BW) of another. Empty for most schedules.
    pub pairs: Vec<[Pass; 2]>,
    /// Stages whose recompute passes are *selective*, ascending: their microbatches keep all
    /// but the attention's inner activations after their F, and their R recomputes only those
    /// (Korthikanti et al.'s selective recomputation); every other stage's R recomputes its
    /// whole forward. Empty for most schedules.
    pub selective: Vec<u32>,
}

impl Schedule {
    /// Builds an empty schedule (no passes yet) for a placement, checking the sizes.
    pub fn empty(name: &str, p: u32, m: u32, placement: Placement) -> Result<Self, Error> {
        placement.check(p)?;
        if m == 0 {
            return Err(Error::Zero(Param::Microbatches));
        }
        check_lanes(&placement, m)?;
        let stages = placement.num_stages(p);
        crate::params::check_size(stages.into(), m.into())?;
        Ok(Schedule {
            name: name.to_string(),
            devices: p,
            stages,
            microbatches: m,
            placement,
            lists: vec![Vec::new(); p as usize],
            pairs: Vec::new(),
            selective: Vec::new(),
        })
    }

    /// Device holding `stage`.
    pub fn device_of(&self, stage: u32) -> u32 {
        self.placement.device_of(stage, self.devices)
    }

    /// Stages held by `device`, ascending.
    pub fn stages_of(&self, device: u32) -> Vec<u32> {
        let p = self.devices;
        match &self.placement {
            Placement::Sequential => vec![device],
            Placement::Looped { chunks } => (0..*chunks).map(|c| c * p + device).collect(),
            Placement::VShape | Placement::Bidirectional => vec![device, 2 * p - 1 - device],
            Placement::Explicit { .. } => (0..self.stages)
                .filter(|&s| self.device_of(s) == device)
                .collect(),
        }
    }

    /// The [lane](self) of a stage.
    pub fn lane_of_stage(&self, stage: u32) -> u32 {
        stage / self.placement.lane_stages(self.devices).max(1)
    }

    /// The [lane](self) of a microbatch.
    pub fn lane_of_microbatch(&self, mb: u32) -> u32 {
        mb / (self.microbatches / self.placement.lanes()).max(1)
    }

    /// Whether `stage` runs passes of microbatch `mb` (both in one [lane](self); always, with
    /// one lane).
    pub fn runs(&self, stage: u32, mb: u32) -> bool {
        self.placement.lanes() == 1 || self.lane_of_stage(stage) == self.lane_of_microbatch(mb)
    }

    /// The share of the model's parameters each device holds: its stages over the model's
    /// chunks (`1/p` for 1F1B and V-shapes, `2/p` for the bidirectional placement's two copies).
    pub fn parameter_share(&self) -> Vec<f64> {
        let chunks = f64::from(self.placement.lane_stages(self.devices).max(1));
        (0..self.devices)
            .map(|d| self.stages_of(d).len() as f64 / chunks)
            .collect()
    }

    /// Total number of passes.
    pub fn num_passes(&self) -> usize {
        self.lists.iter().map(Vec::len).sum()
    }

    /// Appends a pass to the list of the device that holds its stage.
    pub fn push(&mut self, pass: Pass) {
        let d = self.device_of(pass.stage) as usize;
        self.lists[d].push(pass);
    }

    /// Appends two passes of one device that it runs as one overlapped unit (see
    /// [`Schedule::pairs`]).
    pub fn push_pair(&mut self, first: Pass, second: Pass) {
        self.push(first);
        self.push(second);
        self.pairs.push([first, second]);
    }

    /// For each device, whether the pass at each position starts an overlapped pair (`None`
    /// when the schedule has no pairs). Pairs whose halves are not adjacent in one list are
    /// ignored here; [`crate::validate()`] refuses them.
    pub fn pair_starts(&self) -> Option<Vec<Vec<bool>>> {
        pair_starts(&self.lists, &self.pairs)
    }

    /// Whether the schedule splits the backward into B and W.
    pub fn splits_backward(&self) -> bool {
        self.lists
            .iter()
            .flatten()
            .any(|p| matches!(p.kind, PassKind::B | PassKind::W))
    }

    /// Number of point-to-point transfers per step: each F output and B gradient crossing devices.
    pub fn p2p_transfers(&self) -> u64 {
        let lanes = self.placement.lanes();
        let per_lane = self.placement.lane_stages(self.devices).max(1);
        let crossings = (1..self.stages)
            .filter(|&s| s % per_lane != 0 && self.device_of(s) != self.device_of(s - 1))
            .count() as u64;
        2 * crossings * u64::from(self.microbatches / lanes)
    }
}
