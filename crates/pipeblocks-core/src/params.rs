//! What every generator, search and simulator takes: sizes that cannot be zero, per-stage costs
//! ([`StageCosts`]) and a memory budget ([`Budget`]).
//!
//! **Costs.** [`StageCosts`] describes the passes of the model's stages and comes from one of
//! three sources:
//! - the uniform shorthand ([`Costs`], `f=1,b=1.3,w=0.7,c=0.05`): every pass of every stage of
//!   any schedule costs the same, the papers' convention (a V-shape stage then does as much work
//!   as a 1F1B stage, so placements compare by bubble rate);
//! - a table, one entry per stage of the model (the `pipeblocks-stage-costs` file,
//!   [`crate::format::stage_costs`]): a schedule with as many stages uses it as it is; one with a
//!   multiple of that count splits every stage evenly, one with a divisor merges consecutive
//!   stages (the model stays the same, so makespans compare across placements);
//! - a transformer and a device ([`crate::model`]): the layers are split for each stage count.
//!
//! [`StageCosts::resolve`] turns any of them into a [`StageTable`] for one schedule's `S` stages
//! on `p` devices: durations per stage and kind, activation units per stage, the fraction B
//! releases, and the latency of each link between adjacent stages.
//!
//! **Memory unit**: the activation one microbatch leaves on one device under 1F1B (the model's
//! activation for one microbatch over `p`). A stage of a uniform `S`-stage split holds `p/S`.
//! [`one_f_one_b_peak`] is 1F1B's peak under the costs, the reference of [`Budget::Of1f1b`].

use std::num::NonZeroU32;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Fix, Param};
use crate::ir::{PassKind, Placement};
use crate::model::{DeviceSpec, ModelCosts, ModelSpec};

/// Tolerance of the engine's time and memory comparisons.
pub(crate) const EPS: f64 = 1e-9;

/// The largest sizes pipeblocks accepts, checked before anything is allocated. They sit far
/// above real pipelines and keep every table the engine builds within a few GiB and every
/// figure finite (the README's "Limits" table).
pub mod limits {
    /// Devices `p`.
    pub const DEVICES: u32 = 16_384;
    /// Microbatches `m` per step.
    pub const MICROBATCHES: u32 = 1 << 24;
    /// Chunks (stages) per device of a looped placement.
    pub const CHUNKS: u32 = 1_024;
    /// Stages `S` of one schedule.
    pub const STAGES: u32 = 65_536;
    /// Passes of one schedule (`S · m` times 2 or 3): memory for the engine's tables.
    pub const PASSES: u64 = 1 << 26;
    /// Passes of a schedule that `auto`, the frontier and `zb-v` search: each tries tens to
    /// hundreds of candidate schedules.
    pub const SEARCH_PASSES: u64 = 1 << 19;
    /// Passes of the V-shape schedule the memory/bubble frontier searches: one search per
    /// budget, up to 32 of them.
    pub const FRONTIER_PASSES: u64 = 1 << 16;
    /// Devices a search takes (its block family grows with `p`).
    pub const SEARCH_DEVICES: u32 = 512;
    /// Passes of a `zb-v` schedule: it runs a few dozen greedy candidates and keeps the best.
    pub const ZB_V_PASSES: u64 = 1 << 21;
    /// Passes above which generators skip their optional repairs (the block schedules' warm-up
    /// and cool-down reorder, the cost-blind stand-ins): each costs whole simulations, and what
    /// it saves is bounded by the warm-up and cool-down, a constant that is under 0.1% of a
    /// step this long.
    pub const REPAIR_PASSES: u64 = 1 << 21;
    /// Any cost, latency or activation given, in its own unit.
    pub const VALUE: f64 = 1e15;
    /// Any cost computed for a stage (merged table entries, a model's pass times): sums over
    /// every pass of a schedule stay finite.
    pub const STAGE_VALUE: f64 = 1e30;
}

/// Refuses a schedule of `stages` stages and `microbatches` microbatches that is beyond
/// [`limits`] (its passes, up to three per stage and microbatch, counted without overflow).
pub fn check_size(stages: u64, microbatches: u64) -> Result<(), Error> {
    if stages > limits::STAGES as u64 {
        return Err(Error::TooLarge {
            what: "the number of stages".into(),
            value: stages,
            limit: limits::STAGES as u64,
            hint: "use fewer devices or chunks".into(),
            param: Some(Param::Devices),
        });
    }
    let passes = 3 * stages * microbatches;
    if passes > limits::PASSES {
        return Err(Error::TooLarge {
            what: format!("the number of passes of a schedule of {stages} stages and {microbatches} microbatches (up to 3 each)"),
            value: passes,
            limit: limits::PASSES,
            hint: "use fewer microbatches or devices".into(),
            param: Some(Param::Microbatches),
        });
    }
    Ok(())
}

/// The uniform shorthand: one cost per pass kind for every stage, and one latency.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Costs {
    /// Forward.
    pub f: f64,
    /// Input backward.
    pub b: f64,
    /// Weight backward.
    pub w: f64,
    /// Fused backward; `None` means `b + w`.
    pub bw: Option<f64>,
    /// Latency of a transfer between two devices.
    pub comm: f64,
    /// What an overlapped pair of a forward and a backward costs beyond the longer half, as a
    /// fraction of the shorter: a pair takes `max(F, B) + overlap · min(F, B)`. 1 (the
    /// default) hides nothing, as when both halves are computation sharing one device; below 1
    /// when part of each half is communication the other's computation hides.
    #[serde(default = "one")]
    pub overlap: f64,
    /// Recompute (R): the stage's forward again before its backward; `None` means `f`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r: Option<f64>,
    /// Fraction of a stage's activation a recomputed microbatch keeps (its input) between its F
    /// and its R; `None` means [`KEEP`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep: Option<f64>,
    /// Time to move a stage's whole activation of one microbatch over the device's host link,
    /// one way (an O or an L, [`PassKind::O`]); `None`: the link is not known, and nothing is
    /// offloaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offload: Option<f64>,
    /// Selective recomputation ([`Schedule::selective`](crate::ir::Schedule::selective)): the
    /// time of an R that recomputes the attention only, and the fraction of the activation a
    /// microbatch keeps for it; `None` when not known (then no stage recomputes selectively).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selective: Option<[f64; 2]>,
}

/// What a recomputed microbatch keeps of a stage's activation by default: a transformer layer's
/// input, `2·s·b·h` bytes, of its `34·s·b·h` without the attention scores.
pub const KEEP: f64 = 2.0 / 34.0;

impl Default for Costs {
    fn default() -> Self {
        Costs {
            f: 1.0,
            b: 1.0,
            w: 1.0,
            bw: None,
            comm: 0.0,
            overlap: 1.0,
            r: None,
            keep: None,
            offload: None,
            selective: None,
        }
    }
}

/// Checks one cost: finite, not negative and within [`limits::VALUE`].
fn check_cost(what: &str, v: f64) -> Result<f64, Error> {
    if v.is_finite() && (0.0..=limits::VALUE).contains(&v) {
        Ok(v)
    } else {
        Err(Error::parse(
            what,
            format!("{v:e} is not a cost; costs must be finite, not negative and at most 1e15"),
        ))
    }
}

/// The `key=value` pairs of a comma-separated list, keys in lower case: `(key, value, pair)`.
/// `what` and `example` word the error for a pair without `=`.
pub(crate) fn pairs<'t>(
    text: &'t str,
    what: &str,
    example: &str,
) -> Result<Vec<(String, &'t str, &'t str)>, Error> {
    text.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|part| match part.split_once('=') {
            Some((k, v)) => Ok((k.trim().to_ascii_lowercase(), v.trim(), part)),
            None => Err(Error::parse(
                what,
                format!("`{part}` has no `=`; write e.g. {example}"),
            )),
        })
        .collect()
}

impl Costs {
    /// Parses `f=1,b=1.3,w=0.7,c=0.05` (keys `f`, `b`, `w`, `bw`, `c` and `overlap`, the
    /// fraction of [`Costs::overlap`]; any subset, the rest default).
    pub fn parse(text: &str) -> Result<Self, Error> {
        let mut c = Costs::default();
        for (k, v, part) in pairs(text, "cost", "f=1,b=1,w=1,c=0")? {
            let v: f64 = v
                .parse()
                .map_err(|_| Error::parse("cost", format!("`{v}` in `{part}` is not a number")))?;
            if matches!(k.as_str(), "overlap" | "o") {
                check_overlap(v)?;
                c.overlap = v;
                continue;
            }
            if k == "selective_keep" {
                if !(0.0..=1.0).contains(&v) {
                    return Err(Error::parse(
                        "cost",
                        format!("selective_keep={v} is not a fraction; give the share of a stage's activation a selectively recomputed microbatch keeps, 0 to 1"),
                    ));
                }
                c.selective.get_or_insert([f64::NAN; 2])[1] = v;
                continue;
            }
            if k == "selective" {
                c.selective.get_or_insert([f64::NAN; 2])[0] = check_cost("cost selective", v)?;
                continue;
            }
            if k == "keep" {
                if !(0.0..=1.0).contains(&v) {
                    return Err(Error::parse(
                        "cost",
                        format!("keep={v} is not a fraction; give the share of a stage's activation a recomputed microbatch keeps, 0 to 1"),
                    ));
                }
                c.keep = Some(v);
                continue;
            }
            *match k.as_str() {
                "f" => &mut c.f,
                "b" => &mut c.b,
                "w" => &mut c.w,
                "bw" => c.bw.insert(0.0),
                "r" => c.r.insert(0.0),
                "offload" => c.offload.insert(0.0),
                "c" | "comm" => &mut c.comm,
                other => {
                    return Err(Error::parse(
                        "cost",
                        format!(
                        "unknown key `{other}`; use f, b, w, bw, r, c, overlap, keep, offload, selective and selective_keep"
                    ),
                    ))
                }
            } = check_cost(&format!("cost {k}"), v)?;
        }
        if c.selective.is_some_and(|x| x.iter().any(|v| v.is_nan())) {
            return Err(Error::parse(
                "cost",
                "selective recomputation needs both its time and what it keeps; give selective=T and selective_keep=K together",
            ));
        }
        c.check()?;
        Ok(c)
    }

    /// Checks every cost is finite and not negative, and some pass costs something.
    pub fn check(&self) -> Result<(), Error> {
        for (k, v) in [
            ("f", self.f),
            ("b", self.b),
            ("w", self.w),
            ("c", self.comm),
        ]
        .into_iter()
        .chain(self.bw.map(|v| ("bw", v)))
        {
            check_cost(&format!("cost {k}"), v)?;
        }
        check_overlap(self.overlap)?;
        if self.f + self.b + self.w == 0.0 {
            return Err(Error::parse(
                "cost",
                "all pass costs are 0; give at least one positive cost",
            ));
        }
        Ok(())
    }

    /// Cost of the fused backward.
    pub fn bw_cost(&self) -> f64 {
        self.bw.unwrap_or(self.b + self.w)
    }

    /// Cost of a pass kind.
    pub fn of(&self, kind: PassKind) -> f64 {
        match kind {
            PassKind::F => self.f,
            PassKind::B => self.b,
            PassKind::W => self.w,
            PassKind::BW => self.bw_cost(),
            PassKind::R => self.r.unwrap_or(self.f),
            // Without a known link a transfer never ends: nothing is offloaded.
            PassKind::O | PassKind::L => self.offload.unwrap_or(f64::INFINITY),
        }
    }
}

/// One stage of a per-stage cost table.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageCost {
    /// Forward.
    pub f: f64,
    /// Input backward.
    pub b: f64,
    /// Weight backward.
    pub w: f64,
    /// Fused backward (default `b + w`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bw: Option<f64>,
    /// Activation one microbatch leaves on the stage, in units of a uniform stage's: 1.0 is
    /// what a stage of an evenly split model holds (`p/S` activation units for `S` stages).
    #[serde(default = "one")]
    pub activation: f64,
    /// Fraction of the stage's activation that B frees (W frees the rest); default: the table's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub b_release: Option<f64>,
    /// Latency of the link to the next stage; default: the table's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comm: Option<f64>,
    /// Time of the optimizer step on the stage's parameters, once per iteration (the training
    /// step's model, [`crate::step`]); default: not known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optimizer: Option<f64>,
    /// Communication inside F (an MoE layer's all-to-all dispatch and combine) that an
    /// overlapped pair hides behind its other half's computation; part of `f`; default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comm_f: Option<f64>,
    /// The same inside the backward (B, or BW); part of `b`; default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comm_b: Option<f64>,
    /// Time of the stage's recompute pass (R); default `f`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r: Option<f64>,
    /// Fraction of the stage's activation a recomputed microbatch keeps until its R; default
    /// [`KEEP`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep: Option<f64>,
    /// Time to move the stage's whole activation of one microbatch over the host link, one
    /// way (O or L); a table offloads only when every stage gives it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offload: Option<f64>,
    /// Time of a selective R (the attention only) on the stage; with `selective_keep`, on every
    /// stage, or no stage recomputes selectively.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selective: Option<f64>,
    /// Fraction of the stage's activation a selectively recomputed microbatch keeps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selective_keep: Option<f64>,
}

fn one() -> f64 {
    1.0
}

impl StageCost {
    fn bw_cost(&self) -> f64 {
        self.bw.unwrap_or(self.b + self.w)
    }
}

/// Where a [`StageCosts`] comes from.
#[derive(Clone, Debug, PartialEq)]
enum Source {
    Uniform(Costs),
    Table {
        stages: Vec<StageCost>,
        comm: f64,
        b_release: f64,
        /// Bytes one microbatch leaves on the average stage, when known.
        activation_bytes: Option<f64>,
    },
    Model {
        model: ModelSpec,
        microbatch_size: u32,
        device: DeviceSpec,
    },
}

/// The costs of a model's pipeline stages: what every generator, search and simulator takes.
/// See the [module documentation](self) for its three sources and how a table fits a schedule.
#[derive(Clone, Debug, PartialEq)]
pub struct StageCosts {
    source: Source,
    /// Fraction of every stage's activation B frees, overriding the source's.
    b_release: Option<f64>,
    /// [`StageTable::overlap`], overriding the source's.
    overlap: Option<f64>,
    /// What the costs forget of the stages' differences.
    blind: Blind,
}

/// What a [`StageCosts`] forgets of the stages' differences: stand-ins that know less, to build
/// heuristic orders with and keep whichever runs best under the true costs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Blind {
    /// Every stage's passes take the stages' mean time, every link the mean latency.
    durations: bool,
    /// Every stage holds the mean activation, B frees the activation-weighted mean fraction.
    activations: bool,
    /// No latency on any link.
    latency: bool,
}

impl Default for StageCosts {
    fn default() -> Self {
        StageCosts::uniform(Costs::default())
    }
}

/// Per-stage costs resolved for one schedule's `S` stages on `p` devices: what the engine reads.
#[derive(Clone, Debug, PartialEq)]
pub struct StageTable {
    /// Duration of each pass kind on each stage, `[stage][PassKind::index()]`.
    pub dur: Vec<[f64; 4]>,
    /// Activation units one microbatch leaves on each stage.
    pub act: Vec<f64>,
    /// Fraction of each stage's activation its B frees (its W the rest).
    pub release: Vec<f64>,
    /// Latency of the link between stage `s` and `s + 1` (`S - 1` entries), paid only when the
    /// two stages sit on different devices.
    pub comm: Vec<f64>,
    /// Bytes per activation unit, when the costs come from a model.
    pub unit_bytes: Option<f64>,
    /// Communication inside each stage's forward and backward that an overlapped pair can hide
    /// (`[F, B or BW]`, part of their durations); empty when there is none.
    pub hidden: Vec<[f64; 2]>,
    /// An overlapped pair's cost beyond its longer half, as a fraction of the shorter half's
    /// computation ([`Costs::overlap`]).
    pub overlap: f64,
    /// Duration of each stage's recompute pass (R).
    pub recompute: Vec<f64>,
    /// Fraction of each stage's activation a recomputed microbatch keeps until its R.
    pub keep: Vec<f64>,
    /// Time to move each stage's whole activation of one microbatch over its device's host
    /// link, one way (an O or an L moves what the F left, a share of it when recomputed);
    /// empty when the costs do not know the link (uniform costs without `offload`, a table
    /// without it on every stage), and then nothing can be offloaded.
    pub offload: Vec<f64>,
    /// Selective recomputation per stage: `[time of its R, fraction of the activation a
    /// microbatch keeps]`; empty when the costs do not know it, and then no stage recomputes
    /// selectively.
    pub selective: Vec<[f64; 2]>,
}

impl StageTable {
    /// The change a pass makes to its device's activation: an F adds the stage's units, a B
    /// frees the part `release`, a W the rest, a BW all.
    #[inline]
    pub fn activation_change(&self, kind: PassKind, stage: u32) -> f64 {
        let s = stage as usize;
        let units = self.act[s];
        match kind {
            PassKind::F => units,
            PassKind::B => -units * self.release[s],
            PassKind::W => -units * (1.0 - self.release[s]),
            PassKind::BW => -units,
            PassKind::R => units * (1.0 - self.keep[s]),
            PassKind::O => -units,
            PassKind::L => units,
        }
    }

    /// Duration of a pass kind on a stage.
    #[inline]
    pub fn duration(&self, kind: PassKind, stage: u32) -> f64 {
        let s = stage as usize;
        match kind {
            PassKind::R => self.recompute[s],
            PassKind::O | PassKind::L => self.offload.get(s).copied().unwrap_or(f64::INFINITY),
            _ => self.dur[s][kind.index()],
        }
    }

    /// The duration of an overlapped pair: forward `f` and backward `b` (B or BW) run as one
    /// unit. Each half's computation is its duration less its hidden communication
    /// ([`StageTable::hidden`]); the computations share the device, the longer one plus
    /// [`StageTable::overlap`] of the shorter, and the communications run beside them: the
    /// pair takes the longer of the two.
    #[inline]
    pub fn pair(&self, f: crate::ir::Pass, b: crate::ir::Pass) -> f64 {
        let (df, db) = (
            self.dur[f.stage as usize][f.kind.index()],
            self.dur[b.stage as usize][b.kind.index()],
        );
        let (kf, kb) = match (
            self.hidden.get(f.stage as usize),
            self.hidden.get(b.stage as usize),
        ) {
            (Some(x), Some(y)) => (x[0].min(df), y[1].min(db)),
            _ => (0.0, 0.0),
        };
        let (cf, cb) = (df - kf, db - kb);
        let compute = cf.max(cb) + self.overlap * cf.min(cb);
        compute.max(kf + kb)
    }

    /// Per device, the units one microbatch holds on all its stages at once (each stage's
    /// lifespan contains the later ones'): the least memory a device can run with.
    pub fn need(&self, placement: &Placement, devices: u32) -> Vec<f64> {
        let mut need = vec![0.0; devices as usize];
        for (s, &a) in self.act.iter().enumerate() {
            need[placement.device_of(s as u32, devices) as usize] += a;
        }
        need
    }

    /// Total work of one microbatch on each stage (F, B and W).
    pub fn work(&self) -> Vec<f64> {
        self.dur.iter().map(|d| d[0] + d[1] + d[2]).collect()
    }
}

impl StageCosts {
    /// The uniform shorthand: `costs` for every pass of every stage.
    pub fn uniform(costs: Costs) -> Self {
        StageCosts {
            source: Source::Uniform(costs),
            b_release: None,
            overlap: None,
            blind: Blind::default(),
        }
    }

    /// A table of the model's stages with a default latency and B release; checks every value.
    pub fn table(stages: Vec<StageCost>, comm: f64, b_release: f64) -> Result<Self, Error> {
        let what = "stage costs";
        if stages.is_empty() {
            return Err(Error::parse(
                what,
                "the table lists no stages; give one entry per stage",
            ));
        }
        if stages.len() > limits::STAGES as usize {
            return Err(Error::parse(
                what,
                format!(
                    "{} stages; a table lists at most {}",
                    stages.len(),
                    limits::STAGES
                ),
            ));
        }
        check_cost(what, comm)?;
        check_fraction(b_release)?;
        for (i, s) in stages.iter().enumerate() {
            let at = |e: Error| Error::parse(what, format!("stage {i}: {}", e.detail()));
            for v in [s.f, s.b, s.w, s.activation]
                .into_iter()
                .chain(s.bw)
                .chain(s.comm)
                .chain(s.optimizer)
                .chain(s.comm_f)
                .chain(s.comm_b)
                .chain(s.r)
                .chain(s.offload)
                .chain(s.selective)
            {
                check_cost(what, v).map_err(at)?;
            }
            if let Some(r) = s.b_release {
                check_fraction(r).map_err(at)?;
            }
            if s.keep.is_some_and(|k| !(0.0..=1.0).contains(&k))
                || s.selective_keep.is_some_and(|k| !(0.0..=1.0).contains(&k))
            {
                return Err(at(Error::parse(
                    what,
                    "keep is the fraction of the activation a recomputed microbatch keeps; give 0 to 1",
                )));
            }
            if s.comm_f.unwrap_or(0.0) > s.f || s.comm_b.unwrap_or(0.0) > s.b {
                return Err(at(Error::parse(
                    what,
                    "comm_f and comm_b are the communication inside f and b; give at most f and b",
                )));
            }
        }
        if stages.iter().all(|s| s.f + s.b + s.w == 0.0) {
            return Err(Error::parse(
                what,
                "every pass costs 0; give some stage a positive cost",
            ));
        }
        if stages.iter().all(|s| s.activation == 0.0) {
            return Err(Error::parse(
                what,
                "every stage's activation is 0; give them their sizes",
            ));
        }
        Ok(StageCosts {
            source: Source::Table {
                stages,
                comm,
                b_release,
                activation_bytes: None,
            },
            b_release: None,
            overlap: None,
            blind: Blind::default(),
        })
    }

    /// The optimizer time of each of `stages` stages, when the table gives every stage's (a
    /// table stage split in `k` gives each part `1/k` of it; merged stages add theirs); `None`
    /// for other sources or when a stage lacks it.
    pub fn optimizer(&self, stages: u32) -> Result<Option<Vec<f64>>, Error> {
        let Source::Table { stages: tab, .. } = &self.source else {
            return Ok(None);
        };
        let Some(per): Option<Vec<f64>> = tab.iter().map(|c| c.optimizer).collect() else {
            return Ok(None);
        };
        let (n, s) = (per.len(), stages as usize);
        if s > 0 && s.is_multiple_of(n) {
            let k = s / n;
            Ok(Some(
                per.iter()
                    .flat_map(|&t| std::iter::repeat_n(t / k as f64, k))
                    .collect(),
            ))
        } else if s > 0 && n.is_multiple_of(s) {
            Ok(Some(per.chunks(n / s).map(|g| g.iter().sum()).collect()))
        } else {
            Err(Error::StageCount {
                table: n as u32,
                stages,
            })
        }
    }

    /// The same table, with `bytes` the activation one microbatch leaves on its average stage
    /// (so that [`StageTable::unit_bytes`] converts units to bytes). No effect on other sources.
    pub fn with_activation_bytes(mut self, bytes: f64) -> Result<Self, Error> {
        check_cost("activation bytes", bytes)?;
        if let Source::Table {
            activation_bytes, ..
        } = &mut self.source
        {
            *activation_bytes = Some(bytes);
        }
        Ok(self)
    }

    /// The costs of a transformer (`model`) with `microbatch_size` samples per microbatch on
    /// `device` ([`crate::model`]): the layers are split anew for every stage count.
    pub fn model(model: ModelSpec, microbatch_size: u32, device: DeviceSpec) -> Self {
        StageCosts {
            source: Source::Model {
                model,
                microbatch_size,
                device,
            },
            b_release: None,
            overlap: None,
            blind: Blind::default(),
        }
    }

    /// The same costs with B freeing `fraction` of every stage's activation.
    pub fn with_b_release(mut self, fraction: f64) -> Result<Self, Error> {
        check_fraction(fraction)?;
        self.b_release = Some(fraction);
        Ok(self)
    }

    /// The same costs with overlapped pairs costing `fraction` of their shorter half's
    /// computation beyond the longer half ([`Costs::overlap`]).
    pub fn with_overlap(mut self, fraction: f64) -> Result<Self, Error> {
        check_overlap(fraction)?;
        self.overlap = Some(fraction);
        Ok(self)
    }

    /// Whether these are the reference costs of the closed forms: F = B = W on every stage, no
    /// latency, no release at B (the direct schedules are optimal there).
    pub fn is_reference(&self) -> bool {
        matches!(&self.source, Source::Uniform(c) if c.f == c.b && c.b == c.w && c.comm == 0.0)
            && self.b_release.unwrap_or(0.0) == 0.0
    }

    /// Number of stages of the table, when these are a table.
    pub fn table_stages(&self) -> Option<u32> {
        match &self.source {
            Source::Table { stages, .. } => Some(stages.len() as u32),
            _ => None,
        }
    }

    /// The same costs with every stage alike: the stages' mean times, activation and release,
    /// and the links' mean latency (the model's totals kept). `None` when they are alike already
    /// (the uniform shorthand, or a table whose entries are all equal).
    pub fn flattened(&self) -> Option<StageCosts> {
        let alike = match &self.source {
            _ if self.blind != Blind::default() => true,
            Source::Uniform(_) => true,
            Source::Table { stages, .. } => stages.windows(2).all(|w| w[0] == w[1]),
            Source::Model { .. } => false,
        };
        (!alike).then(|| {
            self.blinded(Blind {
                durations: true,
                activations: true,
                latency: false,
            })
        })
    }

    fn blinded(&self, blind: Blind) -> StageCosts {
        StageCosts {
            blind,
            ..self.clone()
        }
    }

    /// The same costs knowing less: with every stage holding the same activation (the model's
    /// total shared evenly), without link latencies, and both; what a heuristic order is also
    /// built with, to keep whichever runs best under the true costs. Empty for the uniform
    /// shorthand (the papers' setting, taken as it is) and for stand-ins themselves.
    pub fn partly_blind(&self) -> Vec<StageCosts> {
        if matches!(self.source, Source::Uniform(_)) || self.blind != Blind::default() {
            return Vec::new();
        }
        [(true, false), (false, true), (true, true)]
            .into_iter()
            .map(|(activations, latency)| {
                self.blinded(Blind {
                    durations: false,
                    activations,
                    latency,
                })
            })
            .collect()
    }

    /// The cost-blind stand-ins a cost-aware generator also builds with, keeping what is best
    /// under these costs: the stages alike ([`StageCosts::flattened`]) and the reference costs
    /// (F = B = W = 1, what schedules are built with when the costs are unknown). Empty for the
    /// uniform shorthand, which generators take as it is, and for stand-ins themselves.
    pub fn stand_ins(&self) -> Vec<StageCosts> {
        let mut out: Vec<StageCosts> = self.flattened().into_iter().collect();
        if !matches!(self.source, Source::Uniform(_)) && self.blind == Blind::default() {
            let mut reference = StageCosts::uniform(Costs::default());
            reference.b_release = self.b_release;
            out.push(reference);
        }
        out
    }

    /// The costs for a schedule of `placement` on `devices` devices: [`StageCosts::resolve`]
    /// for its stages, or, with [lanes](crate::ir), for one lane's stages repeated in every
    /// lane (each lane is a copy of the model).
    pub fn for_placement(&self, placement: &Placement, devices: u32) -> Result<StageTable, Error> {
        let lanes = placement.lanes() as usize;
        let per_lane = placement.lane_stages(devices);
        let one = self.resolve(per_lane, devices)?;
        if lanes == 1 {
            return Ok(one);
        }
        let mut t = one.clone();
        for _ in 1..lanes {
            t.dur.extend_from_slice(&one.dur);
            t.act.extend_from_slice(&one.act);
            t.release.extend_from_slice(&one.release);
            t.hidden.extend_from_slice(&one.hidden);
            t.recompute.extend_from_slice(&one.recompute);
            t.keep.extend_from_slice(&one.keep);
            t.offload.extend_from_slice(&one.offload);
            t.selective.extend_from_slice(&one.selective);
            // No link between one lane's last stage and the next lane's first.
            t.comm.push(0.0);
            t.comm.extend_from_slice(&one.comm);
        }
        Ok(t)
    }

    /// The costs for a schedule of `stages` stages on `devices` devices.
    pub fn resolve(&self, stages: u32, devices: u32) -> Result<StageTable, Error> {
        if stages == 0 || devices == 0 {
            return Err(Error::config(
                "a schedule needs at least one device and one stage",
            ));
        }
        let n = stages as usize;
        let units = devices as f64 / stages as f64;
        let mut t = match &self.source {
            Source::Uniform(c) => StageTable {
                dur: vec![PassKind::ALL.map(|k| c.of(k)); n],
                act: vec![units; n],
                release: vec![0.0; n],
                comm: vec![c.comm; n - 1],
                unit_bytes: None,
                hidden: Vec::new(),
                overlap: c.overlap,
                recompute: vec![c.of(PassKind::R); n],
                keep: vec![c.keep.unwrap_or(KEEP); n],
                offload: c.offload.map_or_else(Vec::new, |x| vec![x; n]),
                selective: c.selective.map_or_else(Vec::new, |x| vec![x; n]),
            },
            Source::Table {
                stages: tab,
                comm,
                b_release,
                activation_bytes,
            } => {
                let mut t = resample(tab, *comm, *b_release, stages, units)?;
                t.unit_bytes = activation_bytes.map(|b| b * tab.len() as f64 / devices as f64);
                t
            }
            Source::Model {
                model,
                microbatch_size,
                device,
            } => {
                let mc = ModelCosts::for_stages(model, *microbatch_size, device, stages)?;
                let total: f64 = mc.activation_bytes.iter().sum();
                let unit_bytes = total / devices as f64;
                StageTable {
                    dur: mc
                        .costs
                        .iter()
                        .map(|c| PassKind::ALL.map(|k| c.of(k)))
                        .collect(),
                    act: mc
                        .activation_bytes
                        .iter()
                        .map(|&b| {
                            if unit_bytes > 0.0 {
                                b / unit_bytes
                            } else {
                                units
                            }
                        })
                        .collect(),
                    release: vec![0.0; n],
                    comm: vec![mc.comm; n - 1],
                    unit_bytes: Some(unit_bytes),
                    hidden: mc.hidden.clone(),
                    overlap: 1.0,
                    recompute: mc.recompute.clone(),
                    keep: mc.keep.clone(),
                    offload: mc.offload.clone(),
                    selective: mc.selective.clone(),
                }
            }
        };
        if let Some(r) = self.b_release {
            t.release = vec![r; n];
        }
        if let Some(o) = self.overlap {
            t.overlap = o;
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
        if self.blind.durations {
            let d: [f64; 4] =
                std::array::from_fn(|k| mean(&t.dur.iter().map(|x| x[k]).collect::<Vec<_>>()));
            t.dur = vec![d; n];
            t.comm = vec![mean(&t.comm); n - 1];
            if !t.hidden.is_empty() {
                let h: [f64; 2] = std::array::from_fn(|k| {
                    mean(&t.hidden.iter().map(|x| x[k]).collect::<Vec<_>>())
                });
                t.hidden = vec![h; n];
            }
        }
        if self.blind.activations {
            let act = mean(&t.act);
            let freed: f64 = t.act.iter().zip(&t.release).map(|(a, r)| a * r).sum();
            let release = if act > 0.0 {
                freed / (act * n as f64)
            } else {
                0.0
            };
            t.act = vec![act; n];
            t.release = vec![release; n];
        }
        if self.blind.latency {
            t.comm.iter_mut().for_each(|c| *c = 0.0);
        }
        // Every figure computed from the table must stay finite: refuse what could overflow.
        let values = t
            .dur
            .iter()
            .flatten()
            .chain(&t.act)
            .chain(&t.comm)
            .chain(&t.offload)
            .chain(t.hidden.iter().flatten());
        if let Some(x) = values
            .copied()
            .find(|x| !(0.0..=limits::STAGE_VALUE).contains(x))
        {
            let param = match self.source {
                Source::Model { .. } => Param::Model,
                _ => Param::Costs,
            };
            return Err(Error::change(
                format!("the stages' costs reach {x:e}, outside the 0 to 1e30 pipeblocks computes with; give a smaller model, a faster device or a smaller unit of time"),
                param,
            ));
        }
        Ok(t)
    }
}

/// A table of `tab.len()` stages fitted to `stages`: as it is, each stage split evenly into
/// `stages / n`, or `n / stages` consecutive stages merged.
fn resample(
    tab: &[StageCost],
    comm: f64,
    b_release: f64,
    stages: u32,
    units: f64,
) -> Result<StageTable, Error> {
    let n = tab.len();
    let s = stages as usize;
    let dur_of = |c: &StageCost| [c.f, c.b, c.w, c.bw_cost()];
    let release_of = |c: &StageCost| c.b_release.unwrap_or(b_release);
    let comm_of = |c: &StageCost| c.comm.unwrap_or(comm);
    let hidden_of = |c: &StageCost| [c.comm_f.unwrap_or(0.0), c.comm_b.unwrap_or(0.0)];
    let any_hidden = tab.iter().any(|c| c.comm_f.is_some() || c.comm_b.is_some());
    let mut t = StageTable {
        dur: Vec::with_capacity(s),
        act: Vec::with_capacity(s),
        release: Vec::with_capacity(s),
        comm: Vec::with_capacity(s.saturating_sub(1)),
        unit_bytes: None,
        hidden: Vec::new(),
        overlap: 1.0,
        recompute: Vec::with_capacity(s),
        keep: Vec::with_capacity(s),
        offload: Vec::with_capacity(s),
        selective: Vec::with_capacity(s),
    };
    if s.is_multiple_of(n) {
        let k = s / n;
        for (i, c) in tab.iter().enumerate() {
            for j in 0..k {
                t.dur.push(dur_of(c).map(|x| x / k as f64));
                t.recompute.push(c.r.unwrap_or(c.f) / k as f64);
                t.keep.push(c.keep.unwrap_or(KEEP));
                // A split stage's part holds 1/k of the activation: 1/k to move.
                t.offload.push(c.offload.unwrap_or(f64::NAN) / k as f64);
                let [sr, sk] = selective_of(c);
                t.selective.push([sr / k as f64, sk]);
                if any_hidden {
                    t.hidden.push(hidden_of(c).map(|x| x / k as f64));
                }
                t.act.push(c.activation * units);
                t.release.push(release_of(c));
                if i * k + j + 1 < s {
                    t.comm.push(if j + 1 < k { comm } else { comm_of(c) });
                }
            }
        }
    } else if n.is_multiple_of(s) {
        let k = n / s;
        for (g, group) in tab.chunks(k).enumerate() {
            let mut d = [0.0; 4];
            for c in group {
                for (x, y) in d.iter_mut().zip(dur_of(c)) {
                    *x += y;
                }
            }
            let rel: f64 = group.iter().map(|c| c.activation).sum();
            let freed: f64 = group.iter().map(|c| c.activation * release_of(c)).sum();
            t.dur.push(d);
            t.recompute
                .push(group.iter().map(|c| c.r.unwrap_or(c.f)).sum());
            let kept: f64 = group
                .iter()
                .map(|c| c.activation * c.keep.unwrap_or(KEEP))
                .sum();
            t.keep.push(if rel > 0.0 { kept / rel } else { KEEP });
            t.offload
                .push(group.iter().map(|c| c.offload.unwrap_or(f64::NAN)).sum());
            let sel_kept: f64 = group
                .iter()
                .map(|c| c.activation * selective_of(c)[1])
                .sum();
            t.selective.push([
                group.iter().map(|c| selective_of(c)[0]).sum(),
                if rel > 0.0 { sel_kept / rel } else { 1.0 },
            ]);
            if any_hidden {
                let mut h = [0.0; 2];
                for c in group {
                    h[0] += hidden_of(c)[0];
                    h[1] += hidden_of(c)[1];
                }
                t.hidden.push(h);
            }
            t.act.push(rel / k as f64 * units);
            t.release
                .push(if rel > 0.0 { freed / rel } else { b_release });
            if g + 1 < s {
                t.comm.push(group.last().map_or(comm, comm_of));
            }
        }
    } else {
        return Err(Error::StageCount {
            table: n as u32,
            stages,
        });
    }
    if t.offload.iter().any(|x| x.is_nan()) {
        // Some stage does not give its link: the table does not know it.
        t.offload.clear();
    }
    if t.selective.iter().flatten().any(|x| x.is_nan()) {
        t.selective.clear();
    }
    Ok(t)
}

/// A table stage's selective recomputation `[time, keep]`, NaN where it does not give both.
fn selective_of(c: &StageCost) -> [f64; 2] {
    match (c.selective, c.selective_keep) {
        (Some(r), Some(k)) => [r, k],
        _ => [f64::NAN; 2],
    }
}

fn check_overlap(o: f64) -> Result<(), Error> {
    if (0.0..=1.0).contains(&o) {
        Ok(())
    } else {
        Err(Error::parse(
            "cost",
            format!("overlap={o} is not a fraction; give a number from 0 (a pair hides its shorter half) to 1 (hides nothing)"),
        ))
    }
}

fn check_fraction(r: f64) -> Result<(), Error> {
    if (0.0..=1.0).contains(&r) {
        Ok(())
    } else {
        Err(Error::Config {
            why: format!(
                "{r} is not a fraction of the activation released at B; give a number from 0 to 1"
            ),
            fix: Some(Fix::new(Param::BRelease, "0")),
        })
    }
}

/// 1F1B's peak activation under `costs`, in units: device `d` holds `min(p - d, m)` microbatches
/// of its stage (`min(p, m)` units at uniform costs).
pub fn one_f_one_b_peak(p: u32, m: u32, costs: &StageCosts) -> Result<f64, Error> {
    let t = costs.resolve(p, p)?;
    Ok((0..p)
        .map(|d| (p - d).min(m) as f64 * t.act[d as usize])
        .fold(0.0, f64::max))
}

/// A memory budget per device.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Budget {
    /// Absolute activation units (1 unit = one microbatch on one 1F1B stage).
    Units(f64),
    /// A multiple of 1F1B's peak ([`one_f_one_b_peak`]).
    Of1f1b(f64),
}

impl Budget {
    /// Parses `0.5x` (a multiple of 1F1B's peak) or `4` (units).
    pub fn parse(text: &str) -> Result<Self, Error> {
        let t = text.trim();
        let bad = || {
            Error::parse(
                "memory budget",
                format!("`{t}`: write units (`4`) or a multiple of 1F1B's peak (`0.5x`)"),
            )
        };
        let (num, of) = match t.strip_suffix(['x', 'X']) {
            Some(n) => (n, true),
            None => (t, false),
        };
        let v: f64 = num.trim().parse().map_err(|_| bad())?;
        if !(v.is_finite() && v > 0.0) {
            return Err(bad());
        }
        Ok(if of {
            Budget::Of1f1b(v)
        } else {
            Budget::Units(v)
        })
    }

    /// The budget in units, given 1F1B's peak in units.
    pub fn units(self, one_f_one_b: f64) -> f64 {
        match self {
            Budget::Units(u) => u,
            Budget::Of1f1b(k) => k * one_f_one_b,
        }
    }

    /// The budget in units for `prm` (1F1B's peak under its costs).
    pub fn units_for(self, prm: &Params) -> Result<f64, Error> {
        Ok(match self {
            Budget::Units(u) => u,
            Budget::Of1f1b(_) => self.units(one_f_one_b_peak(
                prm.devices(),
                prm.microbatches(),
                &prm.costs,
            )?),
        })
    }
}

/// Everything a generator may use: sizes checked once, costs and options.
#[derive(Clone, Debug, PartialEq)]
pub struct Params {
    devices: NonZeroU32,
    microbatches: NonZeroU32,
    /// Chunks (stages) per device for looped placements (`None`: the schedule's default).
    pub chunks: Option<NonZeroU32>,
    /// The stages' costs, for cost-aware generators.
    pub costs: StageCosts,
    /// Memory budget, for memory-aware generators.
    pub budget: Option<Budget>,
    /// Microbatches per ZeroPP group (the paper's scheduling unit); `None`: ZeroPP's default.
    pub group: Option<NonZeroU32>,
    /// What a search (`auto`) minimises.
    pub objective: Objective,
}

/// What a schedule search minimises.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Objective {
    /// The flush's makespan (every device counted from time 0): the step time when a global
    /// synchronisation separates iterations.
    #[default]
    Makespan,
    /// The longest device span (first pass to last): the step time when each device starts
    /// its next iteration on its own (optimizer post-validation, [`crate::step`]'s overlap).
    Span,
}

impl Objective {
    /// The time this objective minimises: the makespan, or the longest device span.
    pub fn time(self, r: &crate::engine::SimResult) -> f64 {
        match self {
            Objective::Makespan => r.makespan,
            Objective::Span => r.spans().into_iter().fold(0.0, f64::max),
        }
    }

    /// The idle share this objective ranks by: one less the work over the devices' time, the
    /// makespan or the longest device span. The work counts overlapped pairs as their halves
    /// in turn ([`crate::engine::SimResult::overlap_saved`]), so that a pair's saving ranks as
    /// time gained, and leaves out recomputation ([`crate::engine::SimResult::recompute_time`]),
    /// so that it ranks as time lost (without either, the makespan's is the bubble rate).
    pub fn bubble(self, r: &crate::engine::SimResult) -> f64 {
        let time = self.time(r);
        let p = r.busy.len().max(1) as f64;
        let work: f64 = r.busy.iter().chain(&r.overlap_saved).sum::<f64>()
            - r.recompute_time.iter().sum::<f64>();
        if time > 0.0 {
            1.0 - work / (p * time)
        } else {
            0.0
        }
    }
}

/// Refuses `value` above `limit`.
fn at_most(value: u32, limit: u32, what: &str, param: Param) -> Result<(), Error> {
    if value > limit {
        return Err(Error::TooLarge {
            what: what.into(),
            value: value.into(),
            limit: limit.into(),
            hint: format!("use {limit} or fewer"),
            param: Some(param),
        });
    }
    Ok(())
}

/// A count that must be at least 1.
pub fn nonzero(n: u32, param: Param) -> Result<NonZeroU32, Error> {
    NonZeroU32::new(n).ok_or(Error::Zero(param))
}

impl Params {
    /// `p` devices and `m` microbatches at the uniform default costs, no budget.
    pub fn new(devices: u32, microbatches: u32) -> Result<Self, Error> {
        at_most(
            devices,
            limits::DEVICES,
            "the number of devices",
            Param::Devices,
        )?;
        at_most(
            microbatches,
            limits::MICROBATCHES,
            "the number of microbatches",
            Param::Microbatches,
        )?;
        Ok(Params {
            devices: nonzero(devices, Param::Devices)?,
            microbatches: nonzero(microbatches, Param::Microbatches)?,
            chunks: None,
            costs: StageCosts::default(),
            budget: None,
            group: None,
            objective: Objective::Makespan,
        })
    }

    /// Devices `p`.
    pub fn devices(&self) -> u32 {
        self.devices.get()
    }

    /// Microbatches `m`.
    pub fn microbatches(&self) -> u32 {
        self.microbatches.get()
    }

    /// Chunks per device, or `default`.
    pub fn chunks_or(&self, default: u32) -> u32 {
        self.chunks.map_or(default, NonZeroU32::get)
    }

    /// With `v` chunks per device.
    pub fn with_chunks(mut self, v: u32) -> Result<Self, Error> {
        at_most(
            v,
            limits::CHUNKS,
            "the number of chunks per device",
            Param::Chunks,
        )?;
        self.chunks = Some(nonzero(v, Param::Chunks)?);
        Ok(self)
    }

    /// With these costs.
    pub fn with_costs(mut self, costs: StageCosts) -> Self {
        self.costs = costs;
        self
    }

    /// With a memory budget.
    pub fn with_budget(mut self, budget: Budget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// With ZeroPP groups of `u` microbatches.
    pub fn with_group(mut self, u: u32) -> Result<Self, Error> {
        self.group = Some(nonzero(u, Param::Group)?);
        Ok(self)
    }

    /// With a search objective.
    pub fn with_objective(mut self, objective: Objective) -> Self {
        self.objective = objective;
        self
    }

    /// The same parameters for `p` devices and `m` microbatches.
    pub fn resized(&self, devices: u32, microbatches: u32) -> Result<Self, Error> {
        let sized = Params::new(devices, microbatches)?;
        Ok(Params {
            devices: sized.devices,
            microbatches: sized.microbatches,
            ..self.clone()
        })
    }

    /// The costs resolved for `placement`.
    pub fn table(&self, placement: &Placement) -> Result<StageTable, Error> {
        self.costs.for_placement(placement, self.devices())
    }
}
