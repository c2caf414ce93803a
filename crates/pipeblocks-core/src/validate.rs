//! Validation: completeness, placement, dependency order and deadlock-freedom.
//!
//! The execution model is the one the runtime uses: each device runs its list strictly in order;
//! sends never block, receives block until the data is there. A schedule is valid when every pass
//! is present exactly once (F once; B and W once each, or BW once), every pass sits on the device
//! holding its stage, and running the lists in that model finishes.

use crate::error::{ValidationError, Wait};
use crate::ir::{Pass, PassKind, Schedule};

const NONE: u32 = u32::MAX;

/// Dense indexing of all possible passes of a schedule, `((stage * m + mb) * 4 + kind)`.
#[derive(Clone, Copy, Debug)]
pub struct PassIndex {
    /// Number of stages.
    pub stages: u32,
    /// Number of microbatches.
    pub microbatches: u32,
}

impl PassIndex {
    /// Size of the dense table.
    pub fn len(&self) -> usize {
        self.stages as usize * self.microbatches as usize * 4
    }
    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Index of a pass.
    #[inline]
    pub fn of(&self, p: Pass) -> usize {
        (p.stage as usize * self.microbatches as usize + p.mb as usize) * 4 + p.kind.index()
    }
}

/// A checked schedule's dependency structure, shared by the validator and the simulator.
#[derive(Clone, Debug)]
pub struct Graph {
    /// Dense indexing.
    pub index: PassIndex,
    /// Kind of the input-gradient pass of each `(stage, mb)`: `B` or `BW`.
    bwd_kind: Vec<PassKind>,
    /// Device of each stage.
    pub stage_device: Vec<u32>,
}

impl Graph {
    /// The passes `pass` waits for (at most two).
    #[inline]
    pub fn deps(&self, pass: Pass) -> ([Option<Pass>; 2], usize) {
        let mut out = [None, None];
        let mut n = 0;
        let s = pass.stage;
        let mb = pass.mb;
        match pass.kind {
            PassKind::F => {
                if s > 0 {
                    out[0] = Some(Pass::f(s - 1, mb));
                    n = 1;
                }
            }
            PassKind::B | PassKind::BW => {
                out[0] = Some(Pass::f(s, mb));
                n = 1;
                if s + 1 < self.index.stages {
                    out[1] = Some(Pass::new(self.bwd_of(s + 1, mb), s + 1, mb));
                    n = 2;
                }
            }
            PassKind::W => {
                out[0] = Some(Pass::b(s, mb));
                n = 1;
            }
        }
        (out, n)
    }

    /// Kind of the input-gradient pass for `(stage, mb)`.
    #[inline]
    pub fn bwd_of(&self, stage: u32, mb: u32) -> PassKind {
        self.bwd_kind[stage as usize * self.index.microbatches as usize + mb as usize]
    }
}

/// Validates a schedule; on success returns its dependency graph.
pub fn validate(s: &Schedule) -> Result<Graph, ValidationError> {
    let (graph, where_) = structure(s)?;
    // Deadlock freedom: run the lists in order. A pass listed before one of its inputs on the
    // same device also blocks here; it is then reported as that ordering fault.
    let mut order = InOrder::new(s, &graph);
    order.run(|_, _| {});
    if let Some(waits) = order.blocked() {
        return Err(explain_block(s, &graph, &where_, waits));
    }
    Ok(graph)
}

/// Shape, placement, duplicates and completeness; the graph and where each pass is listed.
fn structure(s: &Schedule) -> Result<(Graph, Vec<(u32, u32)>), ValidationError> {
    let p = s.devices;
    if p == 0 {
        return Err(ValidationError::Shape(
            "the schedule has 0 devices; it needs at least 1".into(),
        ));
    }
    if s.microbatches == 0 {
        return Err(ValidationError::Shape(
            "the schedule has 0 microbatches; it needs at least 1".into(),
        ));
    }
    if s.lists.len() != p as usize {
        return Err(ValidationError::Shape(format!(
            "the schedule declares {p} devices but has {} device lists",
            s.lists.len()
        )));
    }
    if s.placement.num_stages(p) != s.stages {
        return Err(ValidationError::Shape(format!(
            "the schedule declares {} stages but its placement ({}) has {}",
            s.stages,
            s.placement.describe(),
            s.placement.num_stages(p)
        )));
    }
    s.placement
        .check(p)
        .map_err(|e| ValidationError::Shape(e.to_string()))?;
    let index = PassIndex {
        stages: s.stages,
        microbatches: s.microbatches,
    };
    let stage_device = s.placement.stage_devices(p);
    // Position of each pass: (device, position).
    let mut where_: Vec<(u32, u32)> = vec![(NONE, NONE); index.len()];
    for (d, list) in s.lists.iter().enumerate() {
        for (i, &pass) in list.iter().enumerate() {
            if pass.stage >= s.stages || pass.mb >= s.microbatches {
                return Err(ValidationError::OutOfRange {
                    device: d as u32,
                    position: i,
                    pass,
                    stages: s.stages,
                    microbatches: s.microbatches,
                });
            }
            let expected = stage_device[pass.stage as usize];
            if expected != d as u32 {
                return Err(ValidationError::WrongDevice {
                    device: d as u32,
                    position: i,
                    pass,
                    expected,
                });
            }
            let k = index.of(pass);
            if where_[k].0 != NONE {
                return Err(ValidationError::Duplicate {
                    device: d as u32,
                    position: i,
                    pass,
                    why: format!("appears twice (first at position {})", where_[k].1),
                });
            }
            let clash = match pass.kind {
                PassKind::BW => [PassKind::B, PassKind::W]
                    .into_iter()
                    .find(|&k2| where_[index.of(Pass::new(k2, pass.stage, pass.mb))].0 != NONE),
                PassKind::B | PassKind::W => {
                    let bw = Pass::bw(pass.stage, pass.mb);
                    (where_[index.of(bw)].0 != NONE).then_some(PassKind::BW)
                }
                PassKind::F => None,
            };
            if let Some(k2) = clash {
                return Err(ValidationError::Duplicate {
                    device: d as u32,
                    position: i,
                    pass,
                    why: format!(
                        "mixes split and fused backward: {} is also listed; use B and W, or BW alone",
                        Pass::new(k2, pass.stage, pass.mb)
                    ),
                });
            }
            where_[k] = (d as u32, i as u32);
        }
    }
    // Completeness.
    let mut bwd_kind = vec![PassKind::BW; s.stages as usize * s.microbatches as usize];
    for st in 0..s.stages {
        let dev = stage_device[st as usize];
        for mb in 0..s.microbatches {
            let has = |k: PassKind| where_[index.of(Pass::new(k, st, mb))].0 != NONE;
            if !has(PassKind::F) {
                return Err(ValidationError::Missing {
                    pass: Pass::f(st, mb),
                    device: dev,
                    why: "every stage runs F once per microbatch".into(),
                });
            }
            let (b, w, bw) = (has(PassKind::B), has(PassKind::W), has(PassKind::BW));
            let kind = match (b, w, bw) {
                (_, _, true) => PassKind::BW,
                (true, true, false) => PassKind::B,
                (true, false, false) => {
                    return Err(ValidationError::Missing {
                        pass: Pass::w(st, mb),
                        device: dev,
                        why: format!("{} is listed, so its W must be too", Pass::b(st, mb)),
                    })
                }
                (false, true, false) => {
                    return Err(ValidationError::Missing {
                        pass: Pass::b(st, mb),
                        device: dev,
                        why: format!("{} is listed, so its B must be too", Pass::w(st, mb)),
                    })
                }
                (false, false, false) => {
                    return Err(ValidationError::Missing {
                        pass: Pass::bw(st, mb),
                        device: dev,
                        why: "every stage runs a backward (BW, or B and W) once per microbatch"
                            .into(),
                    })
                }
            };
            bwd_kind[st as usize * s.microbatches as usize + mb as usize] = kind;
        }
    }
    let graph = Graph {
        index,
        bwd_kind,
        stage_device,
    };
    Ok((graph, where_))
}

/// Checks a schedule's shape, placement and completeness and builds its graph, without running
/// the lists: for the simulator, whose own run finds any block (and then calls [`validate`] to
/// explain it).
pub(crate) fn graph_of(s: &Schedule) -> Result<Graph, ValidationError> {
    structure(s).map(|(g, _)| g)
}

/// Why the in-order run blocked: the first pass listed before an input on its own device, or
/// else the deadlock itself.
fn explain_block(
    s: &Schedule,
    graph: &Graph,
    where_: &[(u32, u32)],
    waits: Vec<Wait>,
) -> ValidationError {
    let index = graph.index;
    for (d, list) in s.lists.iter().enumerate() {
        for (i, &pass) in list.iter().enumerate() {
            let (deps, n) = graph.deps(pass);
            for dep in deps.iter().take(n).flatten() {
                let (dd, di) = where_[index.of(*dep)];
                if dd == d as u32 && di as usize > i {
                    return ValidationError::OrderOnDevice {
                        device: d as u32,
                        position: i,
                        pass,
                        needs: *dep,
                        needs_position: di as usize,
                    };
                }
            }
        }
    }
    ValidationError::Deadlock { waits }
}

/// Runs the device lists in order, releasing a device when the pass it waits for completes.
///
/// `visit(device, position)` is called once per pass in an order that respects all dependencies.
pub(crate) struct InOrder<'a> {
    s: &'a Schedule,
    g: &'a Graph,
    done: Vec<bool>,
    ptr: Vec<usize>,
    /// Head of the list of devices waiting on each pass index.
    wait_head: Vec<u32>,
    /// Next device in the same wait list.
    wait_next: Vec<u32>,
}

impl<'a> InOrder<'a> {
    pub(crate) fn new(s: &'a Schedule, g: &'a Graph) -> Self {
        InOrder {
            s,
            g,
            done: vec![false; g.index.len()],
            ptr: vec![0; s.devices as usize],
            wait_head: vec![NONE; g.index.len()],
            wait_next: vec![NONE; s.devices as usize],
        }
    }

    pub(crate) fn run(&mut self, mut visit: impl FnMut(usize, usize)) {
        let mut stack: Vec<u32> = (0..self.s.devices).rev().collect();
        while let Some(d) = stack.pop() {
            let d = d as usize;
            let list = &self.s.lists[d];
            'advance: while self.ptr[d] < list.len() {
                let pass = list[self.ptr[d]];
                let (deps, n) = self.g.deps(pass);
                for dep in deps.iter().take(n).flatten() {
                    let k = self.g.index.of(*dep);
                    if !self.done[k] {
                        self.wait_next[d] = self.wait_head[k];
                        self.wait_head[k] = d as u32;
                        break 'advance;
                    }
                }
                visit(d, self.ptr[d]);
                let k = self.g.index.of(pass);
                self.done[k] = true;
                let mut w = std::mem::replace(&mut self.wait_head[k], NONE);
                while w != NONE {
                    stack.push(w);
                    w = self.wait_next[w as usize];
                }
                self.ptr[d] += 1;
            }
        }
    }

    /// After [`InOrder::run`]: the blocked devices, if any.
    pub(crate) fn blocked(&self) -> Option<Vec<Wait>> {
        let mut waits = Vec::new();
        for (d, list) in self.s.lists.iter().enumerate() {
            let i = self.ptr[d];
            if i >= list.len() {
                continue;
            }
            let pass = list[i];
            let (deps, n) = self.g.deps(pass);
            if let Some(dep) = deps
                .iter()
                .take(n)
                .flatten()
                .find(|dep| !self.done[self.g.index.of(**dep)])
            {
                waits.push(Wait {
                    device: d as u32,
                    position: i,
                    pass,
                    waits_for: *dep,
                    on_device: self.g.stage_device[dep.stage as usize],
                });
            }
        }
        (!waits.is_empty()).then_some(waits)
    }
}
