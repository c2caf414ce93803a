//! `train`: train the runtime's GPT-style model with a schedule on threads of this machine.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use pipeblocks_core::StageCosts;
use pipeblocks_runtime::data::Corpus;
use pipeblocks_runtime::{
    checkpoint, AdamW, ModelConfig, RuntimeError, StepReport, TrainConfig, Trainer,
};
use serde_json::json;

use crate::common::{write_atomic, RuntimeFailure, ScheduleSpec};

/// `train` arguments.
#[derive(Args, Debug)]
pub struct TrainArgs {
    #[command(flatten)]
    spec: ScheduleSpec,
    /// Transformer blocks (at least the number of stages).
    #[arg(long, default_value_t = 4)]
    layers: usize,
    /// Width of the residual stream.
    #[arg(long, default_value_t = 64)]
    hidden: usize,
    /// Attention heads (must divide --hidden).
    #[arg(long, default_value_t = 4)]
    heads: usize,
    /// Context length in bytes.
    #[arg(long, default_value_t = 64)]
    seq: usize,
    /// Sequences per step (a multiple of -m).
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Optimiser steps.
    #[arg(long, default_value_t = 150)]
    steps: u64,
    /// AdamW learning rate.
    #[arg(long, default_value_t = 3e-3)]
    lr: f64,
    /// Seed of the initial model and the data order.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Train on this text file (bytes) instead of the generated corpus.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Print the summary as JSON (no progress bar).
    #[arg(long)]
    json: bool,
    /// Write a checkpoint to FILE at the end (atomically).
    #[arg(long)]
    save: Option<PathBuf>,
    /// Start from the checkpoint in FILE (same model sizes; any schedule).
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Write the last step's measured timeline (simulator JSON shape) to FILE.
    #[arg(long)]
    timeline: Option<PathBuf>,
    /// Seconds a device may wait for a message before the run fails.
    #[arg(long, default_value_t = 60.0)]
    timeout: f64,
    /// Run each device on its own CUDA GPU (build with `--features cuda`).
    #[arg(long)]
    cuda: bool,
}

/// Turns a runtime error into bad input (exit 2) or a run failure (exit 1).
fn classify(e: RuntimeError) -> anyhow::Error {
    if e.is_input_error() {
        anyhow::Error::new(e)
    } else {
        anyhow::Error::new(RuntimeFailure(e.to_string()))
    }
}

/// Runs `train`.
pub fn train(a: TrainArgs) -> Result<()> {
    // One core per pipeline device: keep candle's matrix products single-threaded inside each
    // worker unless the user asked otherwise.
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        std::env::set_var("RAYON_NUM_THREADS", "1");
    }
    let mut spec = a.spec.clone();
    spec.schedule.get_or_insert_with(|| "1f1b".into());
    spec.devices.get_or_insert(2);
    spec.microbatches.get_or_insert(4);
    let schedule = spec.generate(&StageCosts::default())?;
    if !(a.timeout.is_finite() && a.timeout > 0.0) {
        anyhow::bail!("--timeout must be a positive number of seconds");
    }
    if !(a.lr.is_finite() && a.lr > 0.0) {
        anyhow::bail!("--lr must be a positive number");
    }
    let cfg = TrainConfig {
        model: ModelConfig {
            vocab: 256,
            hidden: a.hidden,
            heads: a.heads,
            layers: a.layers,
            seq: a.seq,
        },
        batch: a.batch,
        seed: a.seed,
        opt: AdamW {
            lr: a.lr,
            ..AdamW::default()
        },
        recv_timeout: Duration::from_secs_f64(a.timeout),
        cuda: a.cuda,
        fault: None,
    };
    let corpus = match &a.data {
        Some(p) => Corpus::from_file(p, a.seq).map_err(classify)?,
        None => Corpus::generated(a.seed, 200_000),
    };
    let mut trainer = Trainer::new(cfg.clone(), schedule).map_err(classify)?;
    if let Some(p) = &a.resume {
        checkpoint::load(&mut trainer, p).map_err(classify)?;
    }
    let first = trainer.steps_done();
    let bar = if a.json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(a.steps)
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} steps  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut losses = Vec::with_capacity(a.steps as usize);
    let mut reports: Vec<StepReport> = Vec::new();
    for i in 0..a.steps {
        let batch = corpus.batch(cfg.batch, cfg.model.seq, cfg.seed, first + i);
        let r = trainer.step(&batch).map_err(classify)?;
        losses.push(r.loss);
        bar.set_message(format!(
            "loss {:.3}  {:.0} tokens/s",
            r.loss,
            r.tokens_per_s()
        ));
        bar.inc(1);
        reports.push(r);
    }
    bar.finish_and_clear();
    if let Some(p) = &a.save {
        checkpoint::save(&mut trainer, p).map_err(classify)?;
    }
    let schedule = trainer.schedule().clone();
    let Some(last) = reports.last() else {
        if !a.json {
            println!("0 steps: nothing trained");
        } else {
            println!("{}", json!({"losses": [], "steps": 0}));
        }
        return Ok(());
    };
    // Timings skip the first steps (warm-up) when there are enough of them.
    let warm = if reports.len() > 4 {
        reports.len() / 4
    } else {
        0
    };
    let timed = &reports[warm..];
    let n = timed.len() as f64;
    let step_time = timed.iter().map(|r| r.step_time_s).sum::<f64>() / n;
    let bubble_measured = timed.iter().map(StepReport::bubble_rate).sum::<f64>() / n;
    let mut bubble_sim = 0.0;
    for r in timed {
        bubble_sim += r
            .simulate_measured(&schedule)
            .map_err(classify)?
            .bubble_rate
            / n;
    }
    let tokens_per_s = last.tokens as f64 / step_time;
    let busy: f64 = timed
        .iter()
        .map(|r| r.busy_s.iter().sum::<f64>())
        .sum::<f64>()
        / n;
    // Matrix-product FLOPs of the step over the device-seconds spent in passes.
    let gflops = cfg.model.matmul_flops(last.tokens) / busy / 1e9;
    let peak = &last.peak_activation_bytes;
    if let Some(p) = &a.timeline {
        let measured = last.as_sim_result(&schedule);
        let predicted = last.simulate_measured(&schedule).map_err(classify)?;
        let doc = json!({"schedule": schedule.name, "measured": measured, "simulated": predicted});
        write_atomic(p, serde_json::to_string_pretty(&doc)?.as_bytes())
            .with_context(|| "cannot write the timeline")?;
    }
    if a.json {
        let doc = json!({
            "schedule": schedule.name,
            "devices": schedule.devices,
            "stages": schedule.stages,
            "microbatches": schedule.microbatches,
            "model": cfg.model,
            "params": cfg.model.num_params(),
            "batch": cfg.batch,
            "steps": a.steps,
            "losses": losses,
            "peak_activation_bytes": peak,
            "busy_s": last.busy_s,
            "step_time_s": step_time,
            "tokens_per_s": tokens_per_s,
            "matmul_gflops_per_device": gflops,
            "bubble_rate_measured": bubble_measured,
            "bubble_rate_simulated": bubble_sim,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    let head = &losses[..losses.len().min(1)];
    println!(
        "{} on {} devices, {} stages, {} microbatches; model {} params ({} layers, hidden {})",
        schedule.name,
        schedule.devices,
        schedule.stages,
        schedule.microbatches,
        cfg.model.num_params(),
        cfg.model.layers,
        cfg.model.hidden
    );
    println!(
        "loss: {:.4} at step {} → {:.4} at step {}",
        head[0],
        first + 1,
        losses[losses.len() - 1],
        first + a.steps
    );
    println!(
        "step time {:.1} ms, {:.0} tokens/s, matmuls {:.2} GFLOP/s per device",
        step_time * 1e3,
        tokens_per_s,
        gflops
    );
    let peaks: Vec<String> = peak
        .iter()
        .enumerate()
        .map(|(d, b)| format!("d{d} {:.1} KiB", *b as f64 / 1024.0))
        .collect();
    println!("peak activation: {}", peaks.join(", "));
    println!(
        "bubble rate: measured {:.1}%, simulated with measured pass costs {:.1}%",
        100.0 * bubble_measured,
        100.0 * bubble_sim
    );
    if let Some(p) = &a.save {
        println!("checkpoint written to {}", p.display());
    }
    Ok(())
}
