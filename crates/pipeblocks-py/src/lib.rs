//! # pipeblocks-py: the engine as the Python module `pipeblocks._native`
//!
//! A thin PyO3 layer over [`pipeblocks_core`]: it generates, reads, simulates and exports
//! schedules and hands Python plain values (lists of strings, dicts). Everything that touches
//! PyTorch lives in the pure-Python part of the package (`python/pipeblocks/torch.py`), which
//! builds on the action strings and stage lists exposed here.
//!
//! Errors of the engine surface as `ValueError` carrying the engine's message, worded for Python
//! (the keyword to change, `pipeblocks.names()` instead of the CLI's `pipeblocks list`). The crate
//! is built by maturin (`scripts/python-ci.sh`) and is not a member of the main Cargo workspace.

use pipeblocks_core::compare::{baseline, summarize};
use pipeblocks_core::error::Param;
use pipeblocks_core::format::{json, read_any, stage_costs, torch_csv};
use pipeblocks_core::{
    registry, simulate as sim, validate, Budget, Costs, Error, Params, PassKind, Placement,
    StageCosts,
};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// Turns an engine error into a Python `ValueError` with the engine's message and, when it
/// names a parameter to change, that keyword argument.
fn value_error(e: Error) -> PyErr {
    if let Error::UnknownSchedule {
        name, suggestion, ..
    } = &e
    {
        // The engine's message points to the command line (`pipeblocks list`).
        let near = suggestion
            .as_ref()
            .map(|s| format!(" (did you mean `{s}`?)"))
            .unwrap_or_default();
        return PyValueError::new_err(format!(
            "unknown schedule `{name}`{near}; pipeblocks.names() lists every name"
        ));
    }
    let hint = e.suggestion().map(|fix| match fix.value {
        Some(v) => format!(" ({}={v})", keyword(fix.param)),
        None => format!(" (see {})", keyword(fix.param)),
    });
    PyValueError::new_err(format!("{e}{}", hint.unwrap_or_default()))
}

/// The keyword argument of an engine parameter.
fn keyword(p: Param) -> &'static str {
    match p {
        Param::Devices => "devices",
        Param::Microbatches => "microbatches",
        Param::Chunks => "chunks",
        Param::Budget => "memory",
        Param::Group => "group",
        Param::Costs => "f, b, w, comm",
        Param::StageCosts => "stage_costs",
        Param::BRelease => "b_release",
        Param::Model => "model",
        Param::MicrobatchSize => "microbatch_size",
        Param::Replicas => "replicas",
        Param::Iterations => "iterations",
    }
}

/// A serializable result as Python objects (through the `json` module: dicts, lists, floats).
fn to_python<'py, T: serde::Serialize + ?Sized>(
    py: Python<'py>,
    value: &T,
) -> PyResult<Bound<'py, PyAny>> {
    let text = serde_json::to_string(value)
        .map_err(|e| PyValueError::new_err(format!("cannot encode the result: {e}")))?;
    py.import("json")?.call_method1("loads", (text,))
}

/// Checks a Python integer is a count in `1..=u32::MAX`.
fn count(what: &str, v: i64) -> PyResult<u32> {
    u32::try_from(v)
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| PyValueError::new_err(format!("{what} must be a positive integer, got {v}")))
}

/// The stages' costs from keyword values: a stage-cost file's JSON text, or the uniform
/// `f, b, w, bw, comm` with the host link (`offload`) and selective recomputation's figures;
/// `b_release` and `overlap` (the cost of an overlapped pair beyond its longer half, as a
/// fraction of the shorter; default 1) for either.
#[allow(clippy::too_many_arguments)]
fn stage_costs_of(
    table: Option<&str>,
    f: f64,
    b: f64,
    w: f64,
    bw: Option<f64>,
    comm: f64,
    b_release: Option<f64>,
    overlap: Option<f64>,
    more: More,
) -> PyResult<StageCosts> {
    let o = overlap.map(overlap_fraction).transpose()?;
    let mut c = match table {
        Some(text) => {
            more.refuse_with_table()?;
            stage_costs::read(text).map_err(value_error)?
        }
        None => StageCosts::uniform(costs(f, b, w, bw, comm, o.unwrap_or(1.0), more)?),
    };
    if let Some(r) = b_release {
        c = c.with_b_release(r).map_err(value_error)?;
    }
    match o {
        Some(o) if table.is_some() => c.with_overlap(o).map_err(value_error),
        _ => Ok(c),
    }
}

/// The uniform costs' figures beyond the passes: the host link's time (`offload`) and
/// selective recomputation's time and kept fraction (`selective`, `selective_keep`), checked.
#[derive(Clone, Copy, Default)]
struct More {
    offload: Option<f64>,
    selective: Option<[f64; 2]>,
}

impl More {
    /// Checks the keywords `offload`, `selective` and `selective_keep`.
    fn of(
        offload: Option<f64>,
        selective: Option<f64>,
        selective_keep: Option<f64>,
    ) -> PyResult<Self> {
        let time = |k: &str, v: f64, what: &str| {
            if v.is_finite() && v >= 0.0 {
                Ok(v)
            } else {
                Err(PyValueError::new_err(format!(
                    "{k}={v} is not a time: give {what}, a finite number not below 0 in the \
                     units of f, b and w"
                )))
            }
        };
        let offload = offload
            .map(|v| {
                time(
                    "offload",
                    v,
                    "the time to move one stage's activation of one microbatch over the \
                     device's host link, one way",
                )
            })
            .transpose()?;
        let selective = match (selective, selective_keep) {
            (None, None) => None,
            (Some(t), Some(k)) => {
                let t = time(
                    "selective",
                    t,
                    "the time of a recompute pass that recomputes the attention only",
                )?;
                if !(0.0..=1.0).contains(&k) {
                    return Err(PyValueError::new_err(format!(
                        "selective_keep={k} is not a fraction: give the share of a stage's \
                         activation a selectively recomputed microbatch keeps, from 0 to 1"
                    )));
                }
                Some([t, k])
            }
            (t, _) => {
                let (given, missing) = if t.is_some() {
                    ("selective", "selective_keep")
                } else {
                    ("selective_keep", "selective")
                };
                return Err(PyValueError::new_err(format!(
                    "{given} without {missing}: selective recomputation needs both its time \
                     (selective=) and the fraction of the activation it keeps (selective_keep=); \
                     give selective and selective_keep together, or neither"
                )));
            }
        };
        Ok(More { offload, selective })
    }

    /// Refuses the figures with a stage-cost file, which gives them per stage.
    fn refuse_with_table(&self) -> PyResult<()> {
        let given: Vec<&str> = [
            (self.offload.is_some(), "offload"),
            (self.selective.is_some(), "selective"),
            (self.selective.is_some(), "selective_keep"),
        ]
        .into_iter()
        .filter_map(|(on, k)| on.then_some(k))
        .collect();
        let (what, verb) = match given.as_slice() {
            [] => return Ok(()),
            [one] => (format!("{one}="), "applies"),
            [rest @ .., last] => (format!("{}= and {last}=", rest.join("=, ")), "apply"),
        };
        Err(PyValueError::new_err(format!(
            "{what} {verb} to the uniform costs f, b, w, not to stage_costs: a stage-cost file \
             gives these figures for each stage (the keys `offload`, `selective` and \
             `selective_keep` of its stages)"
        )))
    }
}

/// Checks the `overlap` keyword is a fraction in `0..=1`.
fn overlap_fraction(o: f64) -> PyResult<f64> {
    if (0.0..=1.0).contains(&o) {
        Ok(o)
    } else {
        Err(PyValueError::new_err(format!(
            "overlap={o} is not a fraction: an overlapped pair costs max(F, B) + overlap·min(F, B), \
             so give a number from 0 (the shorter half is hidden entirely) to 1 (nothing is \
             hidden, the default)"
        )))
    }
}

/// Builds costs from keyword values, with the same checks as the CLI's `--cost` (`overlap`
/// already checked by [`overlap_fraction`], `more` by [`More::of`]).
fn costs(
    f: f64,
    b: f64,
    w: f64,
    bw: Option<f64>,
    comm: f64,
    overlap: f64,
    more: More,
) -> PyResult<Costs> {
    for (k, v) in [("f", f), ("b", b), ("w", w), ("comm", comm)]
        .into_iter()
        .chain(bw.map(|v| ("bw", v)))
    {
        if !v.is_finite() || v < 0.0 {
            return Err(PyValueError::new_err(format!(
                "cost {k}={v}: costs must be finite and not negative"
            )));
        }
    }
    if f + b + w == 0.0 {
        return Err(PyValueError::new_err(
            "all pass costs are 0; give at least one positive cost",
        ));
    }
    Ok(Costs {
        f,
        b,
        w,
        bw,
        comm,
        overlap,
        // R costs a forward and keeps the engine's default share of the activation.
        r: None,
        keep: None,
        offload: more.offload,
        selective: more.selective,
    })
}

/// A complete pipeline schedule: a placement (which rank holds which stage) and one ordered list
/// of passes per rank.
///
/// Made by `pipeblocks.generate`, `pipeblocks.parse_torch_csv` or `pipeblocks.load`; always valid
/// (complete, dependency-ordered and deadlock-free).
#[pyclass(name = "Schedule", module = "pipeblocks", frozen)]
pub struct PySchedule {
    inner: pipeblocks_core::Schedule,
}

impl PySchedule {
    fn rank(&self, rank: i64) -> PyResult<usize> {
        usize::try_from(rank)
            .ok()
            .filter(|&r| r < self.inner.devices as usize)
            .ok_or_else(|| {
                PyValueError::new_err(format!(
                    "rank {rank} is out of range: the schedule has {} ranks (0..{})",
                    self.inner.devices, self.inner.devices
                ))
            })
    }

    /// Refuses a schedule PyTorch's CSV cannot carry, with the engine's message: two
    /// [lanes](pipeblocks_core::ir) (the bidirectional placement), transfers (O and L) or
    /// recompute passes (R), the latter two with the Python way out.
    fn torch_expressible(&self) -> PyResult<()> {
        torch_csv::check(&self.inner).map_err(|e| {
            if self.has_transfer() {
                self.offload_refused(e)
            } else if self.has_recompute() {
                PyValueError::new_err(format!(
                    "{e} (Schedule.to_json()), or write Schedule.without_recompute(), the same \
                     order without its R passes, and checkpoint the activations of stages {:?} \
                     instead (pipeblocks.torch.schedule runs this schedule that way)",
                    self.recomputed()
                ))
            } else {
                value_error(e)
            }
        })
    }

    /// The engine's refusal of a schedule with transfers (O and L) for PyTorch, with the way
    /// out: [`without_offload`](Self::without_offload).
    fn offload_refused(&self, e: Error) -> PyErr {
        let then = if self.has_recompute() {
            " once without_recompute() drops its R passes too"
        } else {
            ""
        };
        PyValueError::new_err(format!(
            "{e} (Schedule.to_json()), or take Schedule.without_offload(): the same order with \
             every activation kept on the device (more device memory than this schedule \
             needs), which PyTorch can run{then}"
        ))
    }

    /// Whether any pass is a transfer to or from host memory (O or L).
    fn has_transfer(&self) -> bool {
        self.inner
            .lists
            .iter()
            .flatten()
            .any(|q| q.kind.is_transfer())
    }

    /// Whether any pass is a recompute (R).
    fn has_recompute(&self) -> bool {
        self.inner
            .lists
            .iter()
            .flatten()
            .any(|q| q.kind == PassKind::R)
    }

    /// The stages with an R pass, ascending.
    fn recomputed(&self) -> Vec<u32> {
        pipeblocks_core::recompute::recomputed_stages(&self.inner)
    }

    /// The schedule with its R passes left out (the same schedule when it has none): what
    /// PyTorch runs, the recomputation being activation checkpointing of the stages' modules.
    fn stripped(&self) -> pipeblocks_core::Schedule {
        let mut s = self.inner.clone();
        for list in &mut s.lists {
            list.retain(|q| q.kind != PassKind::R);
        }
        // Without R passes no stage recomputes, selectively or not.
        s.selective.clear();
        s
    }

    /// Refuses simulating under uniform costs that lack a figure the schedule needs (the host
    /// link's time for O and L, selective recomputation's figures), naming the keywords.
    fn check_uniform(&self, table: bool, more: More) -> PyResult<()> {
        if table {
            return Ok(());
        }
        let s = &self.inner;
        if more.offload.is_none() && self.has_transfer() {
            return Err(PyValueError::new_err(format!(
                "{} offloads activations (O and L passes, Schedule.offloaded), but the costs do \
                 not say how long the host link takes: give offload=, the time to move one \
                 stage's activation of one microbatch to host memory (or back), in the units of \
                 f, b and w",
                s.name
            )));
        }
        if more.selective.is_none() && !s.selective.is_empty() {
            return Err(PyValueError::new_err(format!(
                "{} recomputes stages {:?} selectively (Schedule.selective), but the costs do \
                 not say what selective recomputation costs and keeps: give selective= (the time \
                 of its recompute pass) and selective_keep= (the fraction of the activation it \
                 keeps)",
                s.name, s.selective
            )));
        }
        Ok(())
    }

    /// Simulates under the costs of keyword values.
    fn simulated(
        &self,
        table: Option<&str>,
        c: &StageCosts,
        more: More,
    ) -> PyResult<pipeblocks_core::engine::SimResult> {
        self.check_uniform(table.is_some(), more)?;
        sim(&self.inner, c).map_err(value_error)
    }

    fn new_checked(inner: pipeblocks_core::Schedule) -> PyResult<Self> {
        validate(&inner).map_err(|e| value_error(e.into()))?;
        Ok(PySchedule { inner })
    }
}

#[pymethods]
impl PySchedule {
    /// Name of the generator or file the schedule came from.
    #[getter]
    fn name(&self) -> &str {
        &self.inner.name
    }

    /// Number of ranks (devices) `p`.
    #[getter]
    fn devices(&self) -> u32 {
        self.inner.devices
    }

    /// Number of stages `S` (model pieces), over all ranks.
    #[getter]
    fn stages(&self) -> u32 {
        self.inner.stages
    }

    /// Number of microbatches `m`.
    #[getter]
    fn microbatches(&self) -> u32 {
        self.inner.microbatches
    }

    /// Placement kind: `"sequential"`, `"looped"`, `"v-shape"`, `"bidirectional"` (DualPipe's two
    /// opposite pipelines) or `"explicit"`.
    #[getter]
    fn placement(&self) -> &'static str {
        match self.inner.placement {
            Placement::Sequential => "sequential",
            Placement::Looped { .. } => "looped",
            Placement::VShape => "v-shape",
            Placement::Bidirectional => "bidirectional",
            Placement::Explicit { .. } => "explicit",
        }
    }

    /// The rank of each stage, in stage order.
    #[getter]
    fn stage_ranks(&self) -> Vec<u32> {
        self.inner.placement.stage_devices(self.inner.devices)
    }

    /// Whether the backward is split into input (`I`) and weight (`W`) passes.
    #[getter]
    fn splits_backward(&self) -> bool {
        self.inner.splits_backward()
    }

    /// The stages held by `rank`, ascending.
    fn stage_ids(&self, rank: i64) -> PyResult<Vec<u32>> {
        let r = self.rank(rank)?;
        Ok(self.inner.stages_of(r as u32))
    }

    /// The ordered compute actions of `rank` in PyTorch's spelling (`"3I7"`: stage 3, input
    /// backward, microbatch 7; letters F, I, W and B for the fused backward), each overlapped
    /// pair as one action `"(0F3;1B1)OVERLAP_F_B"`: the cells of the rank's CSV row.
    /// Recompute passes (R) are left out: PyTorch has no such action, and on PyTorch the
    /// recomputation is activation checkpointing of the stage's module ([`recompute`](Self::recompute)).
    /// `ValueError` for a bidirectional schedule, which PyTorch's actions cannot express, and
    /// for one that offloads (O and L passes), naming [`without_offload`](Self::without_offload).
    fn actions(&self, rank: i64) -> PyResult<Vec<String>> {
        let r = self.rank(rank)?;
        let s = self.stripped();
        torch_csv::check(&s).map_err(|e| {
            if self.has_transfer() {
                self.offload_refused(e)
            } else {
                value_error(e)
            }
        })?;
        let starts = s.pair_starts();
        Ok(torch_csv::cells(
            &s.lists[r],
            starts.as_ref().map(|v| v[r].as_slice()),
        ))
    }

    /// The stages that recompute (have an R pass: they keep only their input after each
    /// forward and rerun the forward before the backward), ascending; empty for most schedules.
    /// `pipeblocks.torch.schedule` runs their modules under activation checkpointing.
    #[getter]
    fn recompute(&self) -> Vec<u32> {
        self.recomputed()
    }

    /// This schedule with every microbatch of `stages` recomputed: an R pass right before each
    /// of their backwards (stages that already recompute keep their R passes). `selective`:
    /// these stages recompute the attention only ([`selective`](Self::selective)), else in
    /// full (a selective stage among them becomes full). `ValueError` for a stage out of range.
    #[pyo3(signature = (stages, *, selective=false))]
    fn with_recompute(&self, stages: Vec<i64>, selective: bool) -> PyResult<Self> {
        use pipeblocks_core::recompute::{with_kinds, Recompute};
        let n = self.inner.stages;
        let mut kinds = vec![Recompute::None; n as usize];
        for s in stages {
            let i = usize::try_from(s)
                .ok()
                .filter(|&i| i < n as usize)
                .ok_or_else(|| {
                    PyValueError::new_err(format!(
                        "stage {s} is out of range: the schedule has {n} stages (0..{n})"
                    ))
                })?;
            kinds[i] = if selective {
                Recompute::Selective
            } else {
                Recompute::Full
            };
        }
        PySchedule::new_checked(with_kinds(&self.inner, &kinds))
    }

    /// This schedule without its recompute passes (R): the same order of F, B, W and BW, every
    /// activation kept until its backward. The order PyTorch's CSV can carry; the
    /// recomputation is then activation checkpointing of the stages in
    /// [`recompute`](Self::recompute).
    fn without_recompute(&self) -> PyResult<Self> {
        PySchedule::new_checked(self.stripped())
    }

    /// The stages whose R passes recompute the attention only (selective recomputation): their
    /// microbatches keep all of the activation but the attention's inner part. Ascending, a
    /// subset of [`recompute`](Self::recompute); empty for most schedules.
    #[getter]
    fn selective(&self) -> Vec<u32> {
        self.inner.selective.clone()
    }

    /// The `(stage, microbatch)` pairs whose activation waits in host memory (an O pass after
    /// the forward, an L pass before it is needed again), sorted; empty for most schedules.
    #[getter]
    fn offloaded(&self) -> Vec<(u32, u32)> {
        let mut v: Vec<(u32, u32)> = self
            .inner
            .lists
            .iter()
            .flatten()
            .filter(|q| q.kind == PassKind::O)
            .map(|q| (q.stage, q.mb))
            .collect();
        v.sort_unstable();
        v
    }

    /// This schedule without its offload (O) and load (L) passes: the same order of the other
    /// passes, every activation kept on the device (more memory). What PyTorch can run.
    fn without_offload(&self) -> PyResult<Self> {
        let mut s = self.inner.clone();
        for list in &mut s.lists {
            list.retain(|q| !q.kind.is_transfer());
        }
        PySchedule::new_checked(s)
    }

    /// The overlapped pairs (DualPipe's `F&B`), each `(forward, backward)` in pipeblocks'
    /// spelling (`("F0.3", "BW1.1")`): two passes adjacent in one rank's list that the rank runs
    /// as one unit. Empty for schedules without pairs.
    #[getter]
    fn pairs(&self) -> Vec<(String, String)> {
        self.inner
            .pairs
            .iter()
            .map(|[a, b]| (a.to_string(), b.to_string()))
            .collect()
    }

    /// The ordered passes of `rank` in pipeblocks' spelling (`"B3.7"`; kinds F, B, W, BW, R,
    /// and the host transfers O and L).
    fn passes(&self, rank: i64) -> PyResult<Vec<String>> {
        let r = self.rank(rank)?;
        Ok(self.inner.lists[r].iter().map(|p| p.to_string()).collect())
    }

    /// The schedule as PyTorch's compute-only CSV text (one row per rank); `ValueError` for a
    /// bidirectional schedule (two pipelines), one that offloads (O and L passes) or one with
    /// recompute passes (R), which the CSV cannot express.
    fn torch_csv(&self) -> PyResult<String> {
        self.torch_expressible()?;
        Ok(torch_csv::write(&self.inner))
    }

    /// Writes PyTorch's compute-only CSV to `path`, the file `_PipelineScheduleRuntime._load_csv`
    /// and torchtitan's `pipeline_parallel_schedule_csv` read; `ValueError` as for
    /// [`torch_csv`](Self::torch_csv).
    fn to_torch_csv(&self, path: std::path::PathBuf) -> PyResult<()> {
        self.torch_expressible()?;
        std::fs::write(&path, torch_csv::write(&self.inner)).map_err(|e| {
            pyo3::exceptions::PyOSError::new_err(format!("cannot write {}: {e}", path.display()))
        })
    }

    /// The schedule as pipeblocks' versioned JSON text.
    fn to_json(&self) -> String {
        json::write(&self.inner)
    }

    /// Simulates the schedule and returns the figures of `pipeblocks simulate --json` as a dict
    /// (`makespan`, `bubble_rate`, `peak_activation`, `max_peak_activation`, `peak_vs_1f1b`,
    /// `p2p_transfers`, `bottleneck`, ...). Costs are per pass, as on the command line, or
    /// per stage from `stage_costs` (the JSON text of a `pipeblocks-stage-costs` file);
    /// `overlap` is what an overlapped pair costs beyond its longer half, as a fraction of the
    /// shorter (0..=1, default 1: the halves' sum). `offload` is the uniform costs' host link
    /// (the time to move one stage's activation of a microbatch one way), needed by a schedule
    /// with O and L passes; `selective` and `selective_keep` (together) selective
    /// recomputation's time and kept fraction, needed by one with [`selective`](Self::selective)
    /// stages.
    #[pyo3(signature = (*, f=1.0, b=1.0, w=1.0, bw=None, comm=0.0, b_release=None, stage_costs=None, overlap=None, offload=None, selective=None, selective_keep=None))]
    #[allow(clippy::too_many_arguments)]
    fn simulate<'py>(
        &self,
        py: Python<'py>,
        f: f64,
        b: f64,
        w: f64,
        bw: Option<f64>,
        comm: f64,
        b_release: Option<f64>,
        stage_costs: Option<&str>,
        overlap: Option<f64>,
        offload: Option<f64>,
        selective: Option<f64>,
        selective_keep: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let more = More::of(offload, selective, selective_keep)?;
        let c = stage_costs_of(stage_costs, f, b, w, bw, comm, b_release, overlap, more)?;
        let s = &self.inner;
        let r = self.simulated(stage_costs, &c, more)?;
        let base = baseline(s.devices, s.microbatches, &c).map_err(value_error)?;
        let summary = summarize(s, &r, &c, base).map_err(value_error)?;
        to_python(py, &summary)
    }

    /// The simulated timeline under the same costs as [`simulate`]: a dict with `passes`
    /// (each rank's passes in pipeblocks' spelling, in order), `start` and `end` (their times).
    #[pyo3(signature = (*, f=1.0, b=1.0, w=1.0, bw=None, comm=0.0, b_release=None, stage_costs=None, overlap=None, offload=None, selective=None, selective_keep=None))]
    #[allow(clippy::too_many_arguments)]
    fn timeline<'py>(
        &self,
        py: Python<'py>,
        f: f64,
        b: f64,
        w: f64,
        bw: Option<f64>,
        comm: f64,
        b_release: Option<f64>,
        stage_costs: Option<&str>,
        overlap: Option<f64>,
        offload: Option<f64>,
        selective: Option<f64>,
        selective_keep: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let more = More::of(offload, selective, selective_keep)?;
        let c = stage_costs_of(stage_costs, f, b, w, bw, comm, b_release, overlap, more)?;
        let s = &self.inner;
        let r = self.simulated(stage_costs, &c, more)?;
        let passes: Vec<Vec<String>> = s
            .lists
            .iter()
            .map(|l| l.iter().map(|q| q.to_string()).collect())
            .collect();
        to_python(
            py,
            &serde_json::json!({"passes": passes, "start": r.start, "end": r.end}),
        )
    }

    /// Equal when sizes, placement, every rank's order, the overlapped pairs and the selective
    /// stages agree (the name is not compared).
    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        match other.cast::<PySchedule>() {
            Ok(o) => {
                let (a, b) = (&self.inner, &o.get().inner);
                a.devices == b.devices
                    && a.stages == b.stages
                    && a.microbatches == b.microbatches
                    && a.placement.stage_devices(a.devices) == b.placement.stage_devices(b.devices)
                    && a.lists == b.lists
                    && a.pair_starts() == b.pair_starts()
                    && a.selective == b.selective
            }
            Err(_) => false,
        }
    }

    fn __repr__(&self) -> String {
        let s = &self.inner;
        format!(
            "<pipeblocks.Schedule {} devices={} stages={} microbatches={} placement={}>",
            s.name,
            s.devices,
            s.stages,
            s.microbatches,
            s.placement.describe()
        )
    }
}

/// Generates the named schedule for `devices` ranks and `microbatches` microbatches.
///
/// Options: `chunks` (stages per rank of looped schedules: interleaved-1f1b, bfs, zeropp),
/// `memory` (a per-rank activation budget of auto and zeropp: a number is activation units, at
/// least 1 without `stage_costs`; a string like `"0.5x"` is a multiple of 1F1B's peak), `group`
/// (microbatches per ZeroPP group), the pass costs `f`, `b`, `w`, `bw`, `comm` used by
/// cost-aware generators, or `stage_costs` (the JSON text of a `pipeblocks-stage-costs` file),
/// `b_release` and `overlap` (an overlapped pair's cost beyond its longer half, a fraction of
/// the shorter in 0..=1). With uniform costs, `offload` (the host link: the time to move one
/// stage's activation of a microbatch one way) lets auto offload activations below 1F1B's
/// memory, and `selective` with `selective_keep` (selective recomputation's time and kept
/// fraction) lets it recompute the attention only. `chunks`, `memory` or `group` given to a schedule that does not read
/// it is refused (`schedules()` lists what each reads). Raises `ValueError` with the engine's
/// message for unknown names or impossible sizes.
#[pyfunction]
#[pyo3(signature = (name, devices, microbatches, *, chunks=None, memory=None, f=1.0, b=1.0, w=1.0, bw=None, comm=0.0, stage_costs=None, b_release=None, group=None, overlap=None, offload=None, selective=None, selective_keep=None))]
#[allow(clippy::too_many_arguments)]
fn generate(
    name: &str,
    devices: i64,
    microbatches: i64,
    chunks: Option<i64>,
    memory: Option<&Bound<'_, PyAny>>,
    f: f64,
    b: f64,
    w: f64,
    bw: Option<f64>,
    comm: f64,
    stage_costs: Option<&str>,
    b_release: Option<f64>,
    group: Option<i64>,
    overlap: Option<f64>,
    offload: Option<f64>,
    selective: Option<f64>,
    selective_keep: Option<f64>,
) -> PyResult<PySchedule> {
    let generator = registry::find(name).map_err(value_error)?;
    refuse_unused(generator, chunks, memory, group)?;
    let mut prm = Params::new(
        count("devices", devices)?,
        count("microbatches", microbatches)?,
    )
    .map_err(value_error)?
    .with_costs(stage_costs_of(
        stage_costs,
        f,
        b,
        w,
        bw,
        comm,
        b_release,
        overlap,
        More::of(offload, selective, selective_keep)?,
    )?);
    if let Some(c) = chunks {
        prm = prm.with_chunks(count("chunks", c)?).map_err(value_error)?;
    }
    if let Some(u) = group {
        prm = prm.with_group(count("group", u)?).map_err(value_error)?;
    }
    if let Some(m) = memory {
        prm = prm.with_budget(budget(m, stage_costs.is_some())?);
    }
    let s = registry::generate(generator.name, &prm).map_err(value_error)?;
    Ok(PySchedule { inner: s })
}

/// The keyword arguments of `generate` a generator reads, as `schedules()` lists them: `chunks`,
/// `memory`, `group`, and `costs` for the cost keywords (`f`, `b`, `w`, `bw`, `comm`,
/// `stage_costs`, `b_release`, `overlap`, `offload`, `selective`, `selective_keep`) steering
/// the order.
fn uses(g: &registry::Generator) -> Vec<&'static str> {
    let u = g.uses;
    [
        (u.chunks, "chunks"),
        (u.budget, "memory"),
        (u.group, "group"),
        (u.costs, "costs"),
    ]
    .into_iter()
    .filter_map(|(on, k)| on.then_some(k))
    .collect()
}

/// Refuses `chunks`, `memory` and `group` for a generator that would ignore them, naming the
/// schedules that read the option.
fn refuse_unused(
    g: &registry::Generator,
    chunks: Option<i64>,
    memory: Option<&Bound<'_, PyAny>>,
    group: Option<i64>,
) -> PyResult<()> {
    let memory = match memory {
        Some(m) => Some(m.repr()?.to_string()),
        None => None,
    };
    let given = [
        ("chunks", chunks.map(|v| v.to_string())),
        ("memory", memory),
        ("group", group.map(|v| v.to_string())),
    ];
    for (key, value) in given {
        let Some(value) = value else { continue };
        if uses(g).contains(&key) {
            continue;
        }
        let users: Vec<&str> = registry::registry()
            .iter()
            .filter(|o| uses(o).contains(&key))
            .map(|o| o.name)
            .collect();
        let list = match users.as_slice() {
            [] => "no schedule uses it".to_string(),
            [one] => format!("only {one} uses it"),
            [rest @ .., last] => format!("only {} and {last} use it", rest.join(", ")),
        };
        return Err(PyValueError::new_err(format!(
            "{key}={value} does not apply to schedule `{}`, which would ignore it: {list}",
            g.name
        )));
    }
    Ok(())
}

/// The memory budget of a `memory` keyword: a number of activation units, or a string (`"4"`
/// units, `"0.5x"` a multiple of 1F1B's peak). Without per-stage costs every device needs at
/// least 1 unit, so a smaller number is refused with the string form it was likely meant as.
fn budget(m: &Bound<'_, PyAny>, stage_costs: bool) -> PyResult<Budget> {
    let wrong_type =
        || PyValueError::new_err("memory must be a number of units or a string like \"0.5x\"");
    let parsed = if let Ok(text) = m.extract::<String>() {
        Budget::parse(&text).map_err(value_error)?
    } else {
        if m.is_instance_of::<pyo3::types::PyBool>() {
            return Err(wrong_type());
        }
        let v: f64 = m.extract().map_err(|_| wrong_type())?;
        Budget::parse(&v.to_string()).map_err(value_error)?
    };
    match parsed {
        Budget::Units(u) if u < 1.0 && !stage_costs => Err(PyValueError::new_err(format!(
            "memory={} is {u} activation units, below the 1 unit any device needs; for {u} times \
             1F1B's peak memory write memory='{u}x'",
            m.repr()?
        ))),
        b => Ok(b),
    }
}

/// The planner (`pipeblocks plan`, docs/plan.md): the fastest configurations of `model` on
/// `gpus` accelerators for a global batch of `global_batch` sequences. `model` and `device` are
/// presets or `key=value` lists as on the command line; every fixed dimension left `None` is
/// searched. Returns a dict: `best` (fastest first), `faster_but_too_big`, `enumerated`,
/// `simulated`, `refined`; raises `ValueError` with one line naming the change when nothing
/// fits.
#[pyfunction]
#[pyo3(signature = (model, gpus, global_batch, *, gpus_per_node=8, device="h100", seq=None, tp=None, pp=None, dp=None, sharding=None, microbatch_size=None, schedules=None, chunks=None, recompute=None, sequence_parallel=None, p2p_blocking=true, top=5))]
#[allow(clippy::too_many_arguments)]
fn plan<'py>(
    py: Python<'py>,
    model: &str,
    gpus: i64,
    global_batch: i64,
    gpus_per_node: i64,
    device: &str,
    seq: Option<i64>,
    tp: Option<i64>,
    pp: Option<i64>,
    dp: Option<i64>,
    sharding: Option<&str>,
    microbatch_size: Option<i64>,
    schedules: Option<Vec<String>>,
    chunks: Option<i64>,
    recompute: Option<&str>,
    sequence_parallel: Option<bool>,
    p2p_blocking: bool,
    top: i64,
) -> PyResult<Bound<'py, PyAny>> {
    use pipeblocks_core::model::{DeviceSpec, ModelSpec};
    use pipeblocks_core::plan::{Cluster, Fixed, Recompute, Request, Sharding};
    let mut model = ModelSpec::parse(model).map_err(value_error)?;
    if let Some(s) = seq {
        model.seq = u64::from(count("seq", s)?);
    }
    let opt = |what: &str, v: Option<i64>| v.map(|x| count(what, x)).transpose();
    let gpus = count("gpus", gpus)?;
    let req = Request {
        model,
        cluster: Cluster {
            gpus,
            gpus_per_node: count("gpus_per_node", gpus_per_node)?.min(gpus),
            device: DeviceSpec::parse(device).map_err(value_error)?,
        },
        global_batch: count("global_batch", global_batch)?,
        fixed: Fixed {
            tp: opt("tp", tp)?,
            pp: opt("pp", pp)?,
            dp: opt("dp", dp)?,
            sharding: sharding
                .map(Sharding::parse)
                .transpose()
                .map_err(value_error)?,
            microbatch_size: opt("microbatch_size", microbatch_size)?,
            schedules,
            chunks: opt("chunks", chunks)?,
            recompute: recompute
                .map(Recompute::parse)
                .transpose()
                .map_err(value_error)?,
            sequence_parallel,
        },
        top: count("top", top)? as usize,
        p2p_blocking,
    };
    let r = pipeblocks_core::plan::plan(&req, |_, _| {}).map_err(value_error)?;
    to_python(py, &r)
}

/// Reads PyTorch compute-only CSV text into a validated schedule; the placement is inferred from
/// which row holds each stage, and `OVERLAP_F_B` cells become overlapped pairs.
#[pyfunction]
#[pyo3(signature = (text, name="torch-csv"))]
fn parse_torch_csv(text: &str, name: &str) -> PyResult<PySchedule> {
    PySchedule::new_checked(torch_csv::read(text, name).map_err(value_error)?)
}

/// Reads a schedule file (pipeblocks JSON or PyTorch CSV, guessed from the content) and
/// validates it.
#[pyfunction]
fn load(path: std::path::PathBuf) -> PyResult<PySchedule> {
    let bytes = std::fs::read(&path).map_err(|e| {
        pyo3::exceptions::PyOSError::new_err(format!("cannot read {}: {e}", path.display()))
    })?;
    // A file that opens but is not text is a bad schedule file, like any other malformed one.
    let text = String::from_utf8(bytes).map_err(|e| {
        PyValueError::new_err(format!(
            "malformed schedule file {}: not UTF-8 text (invalid byte at offset {}); a schedule \
             file is pipeblocks JSON or PyTorch CSV",
            path.display(),
            e.utf8_error().valid_up_to()
        ))
    })?;
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    PySchedule::new_checked(read_any(&text, &name).map_err(value_error)?)
}

/// The engine's registry: one dict per generator with `name`, `summary`, `constraints` and
/// `uses` (the options of `generate` it reads: `chunks`, `memory`, `group`, `costs`).
#[pyfunction]
fn schedules(py: Python<'_>) -> PyResult<Vec<Bound<'_, PyDict>>> {
    registry::registry()
        .iter()
        .map(|g| {
            let d = PyDict::new(py);
            d.set_item("name", g.name)?;
            d.set_item("summary", g.summary)?;
            d.set_item("constraints", g.constraints)?;
            d.set_item("uses", uses(g))?;
            Ok(d)
        })
        .collect()
}

/// The native module; `pipeblocks/__init__.py` re-exports it.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PySchedule>()?;
    m.add_function(wrap_pyfunction!(generate, m)?)?;
    m.add_function(wrap_pyfunction!(parse_torch_csv, m)?)?;
    m.add_function(wrap_pyfunction!(load, m)?)?;
    m.add_function(wrap_pyfunction!(schedules, m)?)?;
    m.add_function(wrap_pyfunction!(plan, m)?)?;
    Ok(())
}
