//! PyTorch's compute-only schedule CSV, as read by `_PipelineScheduleRuntime._load_csv`.
//!
//! One row per rank, one action per cell, blank cells idle. An action is `{stage}{letter}{mb}`
//! where the letter is PyTorch's: `F` forward, `I` input backward (our `B`), `W` weight backward,
//! `B` full backward (our `BW`). This is the only place where the two vocabularies meet.
//!
//! An overlapped pair ([`Schedule::pairs`]) is one cell in PyTorch's `OVERLAP_F_B` form, its two
//! actions in brackets: `(0F3;1B1)OVERLAP_F_B`.
//!
//! The CSV carries no placement: [`read`] infers it from which row each stage appears in, and
//! names it after the standard placement it matches (sequential, looped, V-shape) or keeps it
//! explicit. Microbatch count and stage count are inferred from the largest indices.

use crate::error::{Error, ValidationError};
use crate::ir::{Pass, PassKind, Placement, Schedule};

/// Formats one pass as a PyTorch action string.
pub fn action(p: Pass) -> String {
    let letter = match p.kind {
        PassKind::F => "F",
        PassKind::B => "I",
        PassKind::W => "W",
        PassKind::BW => "B",
        // Not PyTorch actions: [`check`] refuses schedules with recompute or transfer passes.
        PassKind::R => "R",
        PassKind::O => "O",
        PassKind::L => "L",
    };
    format!("{}{}{}", p.stage, letter, p.mb)
}

/// Parses one PyTorch compute action string (`3I7`); `None` for a blank cell.
pub fn parse_action(cell: &str) -> Result<Option<Pass>, String> {
    let c = cell.trim();
    if c.is_empty() {
        return Ok(None);
    }
    let digits_end = c.find(|ch: char| !ch.is_ascii_digit()).unwrap_or(c.len());
    let (stage, rest) = c.split_at(digits_end);
    let letter_end = rest
        .find(|ch: char| ch.is_ascii_digit())
        .unwrap_or(rest.len());
    let (letter, mb) = rest.split_at(letter_end);
    let kind = match letter {
        "F" => PassKind::F,
        "I" => PassKind::B,
        "W" => PassKind::W,
        "B" => PassKind::BW,
        _ => {
            return Err(format!(
                "`{c}` is not a compute action; expected {{stage}}{{F|I|W|B}}{{microbatch}}, e.g. `3I7`"
            ))
        }
    };
    let stage = stage
        .parse()
        .map_err(|_| format!("`{c}` has no stage number before its letter"))?;
    let mb = mb
        .parse()
        .map_err(|_| format!("`{c}` has no microbatch number after its letter"))?;
    Ok(Some(Pass::new(kind, stage, mb)))
}

/// The cells of one device's list: one action per pass, one `OVERLAP_F_B` cell per pair.
pub fn cells(list: &[Pass], starts: Option<&[bool]>) -> Vec<String> {
    let mut out = Vec::with_capacity(list.len());
    let mut i = 0;
    while i < list.len() {
        if starts.is_some_and(|v| v[i]) && i + 1 < list.len() {
            out.push(format!(
                "({};{}){OVERLAP}",
                action(list[i]),
                action(list[i + 1])
            ));
            i += 2;
        } else {
            out.push(action(list[i]));
            i += 1;
        }
    }
    out
}

/// PyTorch's name of an overlapped forward-backward pair.
pub const OVERLAP: &str = "OVERLAP_F_B";

/// Parses one cell: `None` when blank, one pass, or the two passes of an `OVERLAP_F_B` pair.
pub fn parse_cell(cell: &str) -> Result<Option<(Pass, Option<Pass>)>, String> {
    let c = cell.trim();
    let Some(inner) = c.strip_prefix('(') else {
        return Ok(parse_action(c)?.map(|p| (p, None)));
    };
    let bad = || {
        format!(
            "`{c}` is not an overlapped pair; write ({{forward}};{{backward}}){OVERLAP}, e.g. `(0F3;1B1){OVERLAP}`"
        )
    };
    let (body, kind) = inner.split_once(')').ok_or_else(bad)?;
    if kind.trim() != OVERLAP {
        return Err(bad());
    }
    let (a, b) = body.split_once(';').ok_or_else(bad)?;
    if b.contains(';') {
        return Err(format!(
            "`{c}` overlaps more than two actions; a pair has two"
        ));
    }
    match (parse_action(a)?, parse_action(b)?) {
        (Some(x), Some(y)) => Ok(Some((x, Some(y)))),
        _ => Err(bad()),
    }
}

/// Whether PyTorch's CSV can carry the schedule: it cannot say that microbatches run in two
/// [lanes](crate::ir) (the bidirectional placement), recompute a stage (an R pass) nor offload
/// an activation (O and L), so such schedules are refused.
pub fn check(s: &Schedule) -> Result<(), Error> {
    if s.lists.iter().flatten().any(|q| q.kind.is_transfer()) {
        return Err(Error::config(format!(
            "PyTorch's schedule CSV has no offload action, so {}'s O and L passes cannot be written to it; write pipeblocks JSON",
            s.name
        )));
    }
    if s.lists.iter().flatten().any(|q| q.kind == PassKind::R) {
        return Err(Error::config(format!(
            "PyTorch's schedule CSV has no recompute action (its activation checkpointing belongs to the stage's module), so {}'s recompute passes cannot be written to it; write pipeblocks JSON",
            s.name
        )));
    }
    if s.placement.lanes() > 1 {
        return Err(Error::config(format!(
            "PyTorch's schedule CSV sends every microbatch through every stage, so {}'s {} placement (two pipelines) cannot be written to it; write pipeblocks JSON",
            s.name,
            s.placement.describe()
        )));
    }
    Ok(())
}

/// Writes the schedule: one row per device, trailing blanks pad the rows to one length.
pub fn write(s: &Schedule) -> String {
    let starts = s.pair_starts();
    let rows: Vec<Vec<String>> = s
        .lists
        .iter()
        .enumerate()
        .map(|(d, list)| cells(list, starts.as_ref().map(|v| v[d].as_slice())))
        .collect();
    let width = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut out = String::new();
    for mut cells in rows {
        cells.resize(width, String::new());
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    out
}

/// Reads a compute-only CSV. `name` becomes the schedule's name. Not validated.
pub fn read(text: &str, name: &str) -> Result<Schedule, Error> {
    let mut lists: Vec<Vec<Pass>> = Vec::new();
    let mut pairs = Vec::new();
    for (row, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() && row > 0 && text.lines().skip(row).all(|l| l.trim().is_empty())
        {
            break;
        }
        let mut list = Vec::new();
        for (col, cell) in line.split(',').enumerate() {
            match parse_cell(cell) {
                Ok(Some((p, None))) => list.push(p),
                Ok(Some((p, Some(q)))) => {
                    list.push(p);
                    list.push(q);
                    pairs.push([p, q]);
                }
                Ok(None) => {}
                Err(e) => {
                    return Err(Error::parse(
                        "torch CSV",
                        format!("row {} column {}: {e}", row + 1, col + 1),
                    ))
                }
            }
        }
        lists.push(list);
    }
    if lists.is_empty() {
        return Err(Error::parse(
            "torch CSV",
            "the file has no rows; it needs one row per rank",
        ));
    }
    let p = u32::try_from(lists.len()).unwrap_or(u32::MAX);
    let limit = |what: &str, value: u64, limit: u32| Error::TooLarge {
        what: format!("the file's {what}"),
        value,
        limit: limit.into(),
        hint: "check the file".into(),
        param: None,
    };
    if p > crate::params::limits::DEVICES {
        return Err(limit(
            "number of rows (ranks)",
            p.into(),
            crate::params::limits::DEVICES,
        ));
    }
    let top = |f: fn(&Pass) -> u32| {
        lists
            .iter()
            .flatten()
            .map(|x| u64::from(f(x)) + 1)
            .max()
            .unwrap_or(0)
    };
    let (stages, m) = (top(|x| x.stage), top(|x| x.mb));
    if stages > crate::params::limits::STAGES.into() {
        return Err(limit("stage count", stages, crate::params::limits::STAGES));
    }
    if m > crate::params::limits::MICROBATCHES.into() {
        return Err(limit(
            "microbatch count",
            m,
            crate::params::limits::MICROBATCHES,
        ));
    }
    let (stages, m) = (stages as u32, m as u32);
    if stages == 0 || m == 0 {
        return Err(Error::parse("torch CSV", "the file lists no actions"));
    }
    let mut dev = vec![u32::MAX; stages as usize];
    for (d, list) in lists.iter().enumerate() {
        for x in list {
            let slot = &mut dev[x.stage as usize];
            if *slot == u32::MAX {
                *slot = d as u32;
            } else if *slot != d as u32 {
                return Err(ValidationError::StageOnTwoDevices {
                    stage: x.stage,
                    first: *slot,
                    second: d as u32,
                }
                .into());
            }
        }
    }
    if let Some(s) = dev.iter().position(|&d| d == u32::MAX) {
        return Err(Error::parse(
            "torch CSV",
            format!(
                "stage {s} has no action, but stage {} does; every stage needs its passes",
                stages - 1
            ),
        ));
    }
    let placement = [
        Placement::Sequential,
        Placement::VShape,
        Placement::Looped {
            chunks: stages.div_ceil(p).max(1),
        },
    ]
    .into_iter()
    .find(|pl| pl.num_stages(p) == stages && pl.stage_devices(p) == dev)
    .unwrap_or(Placement::Explicit { devices: dev });
    Ok(Schedule {
        name: name.to_string(),
        devices: p,
        stages,
        microbatches: m,
        placement,
        lists,
        pairs,
        selective: Vec::new(),
    })
}

/// Formats one FSDP plan action as a PyTorch action string: compute passes as [`action`],
/// collectives with PyTorch's names and no microbatch: `{stage}UNSHARD`, `{stage}RESHARD`,
/// `{stage}REDUCE_GRAD`.
pub fn plan_action(a: crate::fsdp::Action) -> String {
    use crate::fsdp::Action;
    match a {
        Action::Compute(p) => action(p),
        Action::Unshard(s) => format!("{s}UNSHARD"),
        Action::Reshard(s) => format!("{s}RESHARD"),
        Action::ReduceGrad(s) => format!("{s}REDUCE_GRAD"),
    }
}

/// Writes a schedule with its FSDP collectives, one row per rank as [`write`] does, with the
/// `UNSHARD`, `RESHARD` and `REDUCE_GRAD` actions of the plan between the compute actions.
/// [`read`] does not accept these actions: the compute-only CSV stays the interchange format.
pub fn write_with_collectives(plan: &crate::fsdp::FsdpPlan) -> String {
    let width = plan.lists.iter().map(Vec::len).max().unwrap_or(0);
    let mut out = String::new();
    for list in &plan.lists {
        let mut cells: Vec<String> = list.iter().map(|&a| plan_action(a)).collect();
        cells.resize(width, String::new());
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    out
}
