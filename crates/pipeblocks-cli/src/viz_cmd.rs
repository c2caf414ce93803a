//! `plot` (one schedule as SVG) and `report` (every applicable schedule in one HTML page).

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;
use pipeblocks_core::compare::{baseline, summarize, Row};
use pipeblocks_core::{generate, simulate, Schedule, SimResult};
use pipeblocks_viz::html::{report as render_report, Entry, Report};
use pipeblocks_viz::svg::{auto_width, memory_without, render, SvgOptions};

use crate::common::{check_output, real, whole, write_output, CostArg, ScheduleSpec, SimInput};

/// Width of the time axis, checked.
fn width(w: f64) -> Result<f64> {
    if !(w.is_finite() && (100.0..=20000.0).contains(&w)) {
        bail!("--width {w} is out of range; give a pixel width from 100 to 20000");
    }
    Ok(w)
}

/// `plot` arguments.
#[derive(Args, Debug)]
pub struct PlotArgs {
    #[command(flatten)]
    input: SimInput,
    /// Width of the time axis in pixels (default: wide enough to number the shortest pass,
    /// 1100 to 6000).
    #[arg(long, allow_negative_numbers = true, value_parser = real("--width", "the width in pixels"))]
    width: Option<f64>,
    /// Write the SVG to FILE (atomically) instead of standard output (`-`).
    #[arg(short = 'o', long = "output")]
    output: Option<PathBuf>,
}

/// `report` arguments.
#[derive(Args, Debug)]
pub struct ReportArgs {
    /// Number of devices p.
    #[arg(short = 'p', long = "devices", allow_negative_numbers = true,
          value_parser = whole::<u32>("-p", "the number of devices", 1, None))]
    devices: u32,
    /// Number of microbatches m.
    #[arg(short = 'm', long = "microbatches", allow_negative_numbers = true,
          value_parser = whole::<u32>("-m", "the number of microbatches", 1, None))]
    microbatches: u32,
    /// Chunks per device for looped schedules (interleaved-1f1b, bfs, zeropp; default 2).
    #[arg(long = "chunks", allow_negative_numbers = true,
          value_parser = whole::<u32>("--chunks", "the number of chunks per device", 1, None))]
    chunks: Option<u32>,
    /// Memory budget for memory-aware schedules (units or `0.5x`).
    #[arg(long = "memory", allow_hyphen_values = true)]
    memory: Option<String>,
    #[command(flatten)]
    cost: CostArg,
    /// Width of each timeline's time axis in pixels.
    #[arg(long, default_value_t = 1100.0, allow_negative_numbers = true,
          value_parser = real("--width", "the width in pixels"))]
    width: f64,
    /// Write the HTML to FILE (atomically) instead of standard output (`-`).
    #[arg(short = 'o', long = "output")]
    output: Option<PathBuf>,
}

/// `pipeblocks plot`.
pub fn plot(a: PlotArgs) -> Result<()> {
    check_output(a.output.as_ref())?;
    let fixed = a.width.map(width).transpose()?;
    let (s, costs) = a.input.load()?;
    let r = simulate(&s, &costs)?;
    let (base_peak, _) = baseline(s.devices, s.microbatches, &costs)?;
    let width = fixed.unwrap_or_else(|| auto_width(&s, &r));
    let svg = render(
        &s,
        &r,
        &SvgOptions {
            width,
            baseline_peak: Some(base_peak),
            baseline_memory: memory_without(&s, &costs)?,
            ..Default::default()
        },
    )?;
    write_output(a.output.as_ref(), &svg)
}

/// `pipeblocks report`.
pub fn report(a: ReportArgs) -> Result<()> {
    check_output(a.output.as_ref())?;
    let width = width(a.width)?;
    let spec = ScheduleSpec {
        schedule: None,
        devices: Some(a.devices),
        microbatches: Some(a.microbatches),
        chunks: a.chunks,
        memory: a.memory.clone(),
        objective: pipeblocks_core::Objective::Makespan,
    };
    let costs = a.cost.costs()?;
    let prm = spec.params(costs)?;
    // Every schedule is drawn: refuse before generating them when the largest cannot be (up to
    // three passes per stage and microbatch, on V-shape or looped placements' stages).
    let stages = u64::from(prm.devices()) * u64::from(prm.chunks_or(2).max(2));
    let most = 3 * stages * u64::from(prm.microbatches());
    if most > pipeblocks_viz::MAX_PICTURE_PASSES as u64 {
        anyhow::bail!(
            "-p {} -m {}: the report draws every schedule, and the largest would have up to {most} passes, more than the {} a picture takes; use fewer microbatches (the steady state repeats)",
            prm.devices(),
            prm.microbatches(),
            pipeblocks_viz::MAX_PICTURE_PASSES
        );
    }
    let rows = crate::common::compare_all(&prm, None)?;
    let base = baseline(prm.devices(), prm.microbatches(), &prm.costs)?;
    let mut drawn: Vec<(Schedule, SimResult, _, _)> = Vec::new();
    for row in &rows {
        if let Row::Ok(sum) = row {
            let s = generate(&sum.schedule, &prm)?;
            let r = simulate(&s, &prm.costs)?;
            let summary = summarize(&s, &r, &prm.costs, base)?;
            let without = memory_without(&s, &prm.costs)?;
            drawn.push((s, r, summary, without));
        }
    }
    let rep = Report {
        title: format!(
            "Pipeline schedules for p={}, m={}",
            prm.devices(),
            prm.microbatches()
        ),
        subtitle: format!(
            "{} (c = p2p latency) · {} of {} schedules apply · made by pipeblocks {}",
            a.cost.describe(),
            drawn.len(),
            rows.len(),
            env!("CARGO_PKG_VERSION")
        ),
        rows: &rows,
        entries: drawn
            .iter()
            .map(|(schedule, result, summary, without)| Entry {
                schedule,
                result,
                summary,
                baseline_memory: without.as_deref(),
            })
            .collect(),
        baseline_peak: Some(base.0),
        width,
    };
    let html = render_report(&rep)?;
    write_output(a.output.as_ref(), &html)
}
