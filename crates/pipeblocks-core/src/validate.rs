//! Validation: completeness, placement, dependency order and deadlock-freedom.
//!
//! The execution model is the one the runtime uses: each device runs its list strictly in order;
//! sends never block, receives block until the data is there. A schedule is valid when every pass
//! is present exactly once (F once; B and W once each, or BW once), every pass sits on the device
//! holding its stage, and running the lists in that model finishes.
//!
//! An overlapped pair ([`Schedule::pairs`]) is a forward then a backward (B or BW) listed next to
//! each other on one device, of two different microbatches (every backward of a microbatch
//! needs all of its forwards, so halves of one microbatch would wait for each other), each pass
//! in at most one pair; it runs as one unit, once the inputs of both halves are there.

use crate::engine::{Blocked, Engine, InOrder, Net, Slot};
use crate::error::{ValidationError, Wait};
use crate::ir::{Pass, PassKind, Schedule};
use crate::params::{Costs, StageCosts};

const NONE: u32 = u32::MAX;

/// Kinds of pass, [`PassKind::index`]'s range.
const KINDS: usize = PassKind::EVERY.len();

/// Dense index of a pass of a schedule: `((stage * m + mb) * 7 + kind)`.
#[inline]
fn index_of(s: &Schedule, p: Pass) -> usize {
    (p.stage as usize * s.microbatches as usize + p.mb as usize) * KINDS + p.kind.index()
}

/// Where each pass of a checked schedule is listed, and the kind of each stage's input backward.
pub(crate) struct Structure {
    /// `(device, position)` of every pass by [`index_of`], `NONE` where absent.
    pub(crate) at: Vec<(u32, u32)>,
    /// B or BW, per `(stage, mb)`.
    pub(crate) backward: Vec<PassKind>,
}

impl Structure {
    /// The pass that produces `slot`.
    pub(crate) fn producer(&self, s: &Schedule, slot: Slot) -> Pass {
        let (st, mb) = match slot {
            Slot::Fwd(st, mb)
            | Slot::Grad(st, mb)
            | Slot::Rec(st, mb)
            | Slot::Off(st, mb)
            | Slot::Load(st, mb) => (st, mb),
        };
        slot.producer(self.backward[st as usize * s.microbatches as usize + mb as usize])
    }
}

/// Validates a schedule.
pub fn validate(s: &Schedule) -> Result<(), ValidationError> {
    let found = structure(s)?;
    // Deadlock freedom: run the lists in order. A pass listed before one of its inputs on the
    // same device also blocks here; it is then reported as that ordering fault.
    // Unit costs, with a host link and selective recomputation so that every pass runs.
    let unit = StageCosts::uniform(Costs {
        offload: Some(1.0),
        selective: Some([1.0, 0.5]),
        ..Costs::default()
    });
    let net = Net::of(s, &unit).map_err(|e| ValidationError::Shape(e.to_string()))?;
    let mut e = Engine::new(&net).without_memory();
    match e.drive(&mut InOrder::of(s)) {
        Ok(()) => Ok(()),
        Err(Blocked::Waiting(waits)) => Err(explain_block(s, &net, &found, waits)),
        Err(_) => Err(ValidationError::Shape("the lists cannot run".into())),
    }
}

/// Shape, placement, duplicates and completeness: where each pass is listed.
pub(crate) fn structure(s: &Schedule) -> Result<Structure, ValidationError> {
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
    crate::params::check_size(s.stages.into(), s.microbatches.into())
        .map_err(|e| ValidationError::Shape(e.to_string()))?;
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
    crate::ir::check_lanes(&s.placement, s.microbatches)
        .map_err(|e| ValidationError::Shape(e.to_string()))?;
    let stage_device = s.placement.stage_devices(p);
    let index = |q: Pass| index_of(s, q);
    // Position of each pass: (device, position).
    let mut where_: Vec<(u32, u32)> =
        vec![(NONE, NONE); s.stages as usize * s.microbatches as usize * KINDS];
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
            if !s.runs(pass.stage, pass.mb) {
                return Err(ValidationError::OutOfLane {
                    device: d as u32,
                    position: i,
                    pass,
                    stage_lane: s.lane_of_stage(pass.stage),
                    mb_lane: s.lane_of_microbatch(pass.mb),
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
            let k = index(pass);
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
                    .find(|&k2| where_[index(Pass::new(k2, pass.stage, pass.mb))].0 != NONE),
                PassKind::B | PassKind::W => {
                    let bw = Pass::bw(pass.stage, pass.mb);
                    (where_[index(bw)].0 != NONE).then_some(PassKind::BW)
                }
                PassKind::F | PassKind::R | PassKind::O | PassKind::L => None,
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
    check_pairs(s, &where_, index)?;
    for (i, &st) in s.selective.iter().enumerate() {
        let why = if st >= s.stages {
            Some(format!("the schedule has {} stages", s.stages))
        } else if i > 0 && s.selective[i - 1] >= st {
            Some("list each stage once, ascending".to_string())
        } else if !(0..s.microbatches).any(|mb| where_[index(Pass::r(st, mb))].0 != NONE) {
            Some("it recomputes no microbatch (no R pass); recompute it or drop it".to_string())
        } else {
            None
        };
        if let Some(why) = why {
            return Err(ValidationError::Shape(format!(
                "stage {st} is listed as recomputing selectively, but {why}"
            )));
        }
    }
    // Completeness.
    let mut bwd_kind = vec![PassKind::BW; s.stages as usize * s.microbatches as usize];
    for st in 0..s.stages {
        let dev = stage_device[st as usize];
        for mb in (0..s.microbatches).filter(|&mb| s.runs(st, mb)) {
            let has = |k: PassKind| where_[index(Pass::new(k, st, mb))].0 != NONE;
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
            match (has(PassKind::O), has(PassKind::L)) {
                (true, false) => {
                    return Err(ValidationError::Missing {
                        pass: Pass::l(st, mb),
                        device: dev,
                        why: format!(
                            "{} offloads the activation, so an L must load it back before {}",
                            Pass::o(st, mb),
                            if has(PassKind::R) {
                                Pass::r(st, mb)
                            } else {
                                Pass::new(kind, st, mb)
                            }
                        ),
                    })
                }
                (false, true) => {
                    return Err(ValidationError::Missing {
                        pass: Pass::o(st, mb),
                        device: dev,
                        why: format!(
                            "{} loads an activation back, so an O must offload it after {}",
                            Pass::l(st, mb),
                            Pass::f(st, mb)
                        ),
                    })
                }
                _ => {}
            }
            bwd_kind[st as usize * s.microbatches as usize + mb as usize] = kind;
        }
    }
    Ok(Structure {
        at: where_,
        backward: bwd_kind,
    })
}

/// Each overlapped pair: a forward then a backward of another microbatch, next to each other in
/// one device's list, each pass in one pair at most.
fn check_pairs(
    s: &Schedule,
    where_: &[(u32, u32)],
    index: impl Fn(Pass) -> usize,
) -> Result<(), ValidationError> {
    let mut seen = std::collections::HashSet::new();
    for &[a, b] in &s.pairs {
        let bad = |why: String| ValidationError::Pair { pair: [a, b], why };
        if a.kind != PassKind::F || !b.kind.is_input_backward() {
            return Err(bad(
                "a pair is a forward then a backward (B or BW), as PyTorch's OVERLAP_F_B; list the forward first".into(),
            ));
        }
        if a.mb == b.mb {
            return Err(bad(format!(
                "both halves belong to microbatch {}, and {b} needs {a}'s output (a backward needs every forward of its microbatch); overlap passes of different microbatches",
                a.mb
            )));
        }
        for q in [a, b] {
            if q.stage >= s.stages || q.mb >= s.microbatches || where_[index(q)].0 == NONE {
                return Err(bad(format!("{q} is not in any device's list")));
            }
            if !seen.insert(q) {
                return Err(bad(format!(
                    "{q} is in another pair too; a pass overlaps with one other at most"
                )));
            }
        }
        let (da, ia) = where_[index(a)];
        let (db, ib) = where_[index(b)];
        if da != db {
            return Err(bad(format!(
                "the halves sit on devices {da} and {db}; a pair runs on one device"
            )));
        }
        if ib != ia + 1 {
            return Err(bad(format!(
                "on device {da} they sit at positions {ia} and {ib}; list the backward right after the forward"
            )));
        }
    }
    Ok(())
}

/// Why the in-order run blocked: the first pass listed before an input on its own device, or
/// else the deadlock itself.
fn explain_block(
    s: &Schedule,
    net: &Net,
    found: &Structure,
    waits: Vec<(usize, Pass, Slot)>,
) -> ValidationError {
    for (d, list) in s.lists.iter().enumerate() {
        for (i, &pass) in list.iter().enumerate() {
            for slot in net.inputs(pass).into_iter().flatten() {
                let needs = found.producer(s, slot);
                let (dd, di) = found.at[index_of(s, needs)];
                if dd == d as u32 && di as usize > i {
                    return ValidationError::OrderOnDevice {
                        device: d as u32,
                        position: i,
                        pass,
                        needs,
                        needs_position: di as usize,
                    };
                }
            }
        }
    }
    let waits = waits
        .into_iter()
        .map(|(d, pass, slot)| {
            let waits_for = found.producer(s, slot);
            Wait {
                device: d as u32,
                position: found.at[index_of(s, pass)].1 as usize,
                pass,
                waits_for,
                on_device: net.stage_device[slot.stage() as usize],
            }
        })
        .collect();
    ValidationError::Deadlock { waits }
}
