//! `train`: train the runtime's GPT-style model with a schedule on threads of this machine.
//!
//! Everything that can be checked is checked before the first step: option ranges, the memory
//! the model and batch will need, the input files, and that the output files can be written, so
//! that a long run is not lost at its end.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use pipeblocks_core::StageCosts;
use pipeblocks_runtime::data::Corpus;
use pipeblocks_runtime::{
    checkpoint, AdamW, ModelConfig, RuntimeError, StepReport, TrainConfig, Trainer,
};
use serde_json::json;

use crate::common::{
    check_writable, one_line, real, whole, write_atomic, write_stdout, RuntimeFailure, ScheduleSpec,
};

/// Most transformer blocks.
pub const MAX_LAYERS: u64 = 256;
/// Widest residual stream.
pub const MAX_HIDDEN: u64 = 8192;
/// Most attention heads.
pub const MAX_HEADS: u64 = 8192;
/// Longest context.
pub const MAX_SEQ: u64 = 65536;
/// Most sequences per step.
pub const MAX_BATCH: u64 = 65536;
/// Most optimiser steps in one run.
pub const MAX_STEPS: u64 = 1_000_000;
/// Longest receive timeout, in seconds (about 11.6 days).
pub const MAX_TIMEOUT_S: f64 = 1e6;
/// Most memory the model, its optimiser state and one step's activations may need.
pub const MAX_TRAIN_BYTES: u64 = 4 << 30;
/// Largest `--data` file.
pub const MAX_DATA_BYTES: u64 = 1 << 30;
/// Steps an optimiser may count (its bias correction takes the step as an `i32` power).
const MAX_STEP_COUNT: u64 = checkpoint::MAX_STEPS;

/// A loss this many times a uniform guess's (ln vocab) is reported as divergence.
const DIVERGED_OVER_UNIFORM: f64 = 10.0;

/// `train` arguments.
#[derive(Args, Debug)]
pub struct TrainArgs {
    #[command(flatten)]
    spec: ScheduleSpec,
    /// Transformer blocks (at least the number of stages; at most 256).
    #[arg(long, default_value_t = 4, allow_negative_numbers = true,
          value_parser = whole::<usize>("--layers", "the number of layers", 1, Some(MAX_LAYERS)))]
    layers: usize,
    /// Width of the residual stream (at most 8192).
    #[arg(long, default_value_t = 64, allow_negative_numbers = true,
          value_parser = whole::<usize>("--hidden", "the width", 1, Some(MAX_HIDDEN)))]
    hidden: usize,
    /// Attention heads (must divide --hidden).
    #[arg(long, default_value_t = 4, allow_negative_numbers = true,
          value_parser = whole::<usize>("--heads", "the number of heads", 1, Some(MAX_HEADS)))]
    heads: usize,
    /// Context length in bytes (at most 65536).
    #[arg(long, default_value_t = 64, allow_negative_numbers = true,
          value_parser = whole::<usize>("--seq", "the context length", 1, Some(MAX_SEQ)))]
    seq: usize,
    /// Sequences per step (a multiple of -m; at most 65536). Model and batch together may need
    /// at most 4 GiB.
    #[arg(long, default_value_t = 8, allow_negative_numbers = true,
          value_parser = whole::<usize>("--batch", "the number of sequences per step", 1, Some(MAX_BATCH)))]
    batch: usize,
    /// Optimiser steps (at most 1000000).
    #[arg(long, default_value_t = 150, allow_negative_numbers = true,
          value_parser = whole::<u64>("--steps", "the number of steps", 0, Some(MAX_STEPS)))]
    steps: u64,
    /// AdamW learning rate.
    #[arg(long, default_value_t = 3e-3, allow_negative_numbers = true,
          value_parser = real("--lr", "the learning rate"))]
    lr: f64,
    /// Seed of the initial model and the data order.
    #[arg(long, default_value_t = 1, allow_negative_numbers = true,
          value_parser = whole::<u64>("--seed", "the seed", 0, None))]
    seed: u64,
    /// Train on this text file (bytes, at most 1 GiB) instead of the generated corpus.
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
    /// Write the last step's measured stage costs to FILE: the stage-cost file that `simulate`,
    /// `compare`, `auto` and `frontier` read with --stage-costs (times in seconds).
    #[arg(long, value_name = "FILE")]
    profile: Option<PathBuf>,
    /// Seconds a device may wait for a message before the run fails (at most 1000000).
    #[arg(long, default_value_t = 60.0, allow_negative_numbers = true,
          value_parser = real("--timeout", "the timeout in seconds"))]
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

/// A run failure (exit 1) with this message.
fn failure(msg: String) -> anyhow::Error {
    anyhow::Error::new(RuntimeFailure(msg))
}

/// About how many bytes training `model` on `batch` sequences per step needs at most: the
/// parameters with their gradients, AdamW moments and update (5 copies), and every
/// microbatch's stored activations at once (the worst schedule, GPipe, holds them all): per
/// token and layer the layer inputs and outputs (about 24 widths) and the attention
/// probabilities and their transients (4 per head and key), the head's logits and
/// probabilities, and each layer's causal mask. `None` when it does not even fit in 64 bits.
pub fn memory_estimate(model: &ModelConfig, batch: usize) -> Option<u64> {
    let n = |x: usize| u64::try_from(x).ok();
    let (v, c, h, t, l, b) = (
        n(model.vocab)?,
        n(model.hidden)?,
        n(model.heads)?,
        n(model.seq)?,
        n(model.layers)?,
        n(batch)?,
    );
    let cc = c.checked_mul(c)?;
    let block = cc.checked_mul(12)?.checked_add(c.checked_mul(13)?)?;
    let params = v
        .checked_mul(c)?
        .checked_mul(2)?
        .checked_add(t.checked_mul(c)?)?
        .checked_add(l.checked_mul(block)?)?
        .checked_add(c.checked_mul(2)?)?
        .checked_add(v)?;
    let param_floats = params.checked_mul(5)?;
    let tokens = b.checked_mul(t)?;
    let per_token_layer = c
        .checked_mul(24)?
        .checked_add(h.checked_mul(t)?.checked_mul(4)?)?;
    let per_token = l
        .checked_mul(per_token_layer)?
        .checked_add(v.checked_mul(4)?)?
        .checked_add(c.checked_mul(8)?)?;
    let act_floats = tokens.checked_mul(per_token)?;
    let masks = l.checked_mul(t.checked_mul(t)?)?;
    param_floats
        .checked_add(act_floats)?
        .checked_add(masks)?
        .checked_mul(4)
}

/// A number as typed in an option: plain, or in exponent form when very large or small.
fn show(x: f64) -> String {
    if x != 0.0 && x.is_finite() && !(1e-3..1e6).contains(&x.abs()) {
        format!("{x:e}")
    } else {
        format!("{x}")
    }
}

fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / f64::from(1u32 << 30))
}

/// Checks the options and files before anything is built: ranges, the memory estimate, the
/// input files, and that the output files can be written.
fn preflight(a: &TrainArgs, model: &ModelConfig, p: u32, m: u32) -> Result<()> {
    if !(a.timeout.is_finite() && a.timeout > 0.0) {
        bail!(
            "--timeout {}: give a positive number of seconds",
            show(a.timeout)
        );
    }
    if a.timeout > MAX_TIMEOUT_S {
        bail!(
            "--timeout {}: at most {MAX_TIMEOUT_S:.0} seconds (about 11.6 days)",
            show(a.timeout)
        );
    }
    if !(a.lr.is_finite() && a.lr > 0.0) {
        bail!(
            "--lr {}: give a positive learning rate such as 3e-3",
            show(a.lr)
        );
    }
    for (flag, v) in [
        ("--layers", a.layers),
        ("--hidden", a.hidden),
        ("--heads", a.heads),
        ("--seq", a.seq),
        ("--batch", a.batch),
    ] {
        if v == 0 {
            bail!("{flag} 0: give at least 1");
        }
    }
    if !a.hidden.is_multiple_of(a.heads) {
        bail!(
            "--hidden {} is not a multiple of --heads {}; pick sizes where heads divides hidden",
            a.hidden,
            a.heads
        );
    }
    if a.layers < p as usize {
        bail!(
            "-p {p} needs at least {p} layers (one stage per device at least); use --layers {p} or more"
        );
    }
    if !a.batch.is_multiple_of(m as usize) {
        bail!(
            "--batch {} cannot be split into {m} equal microbatches; make --batch a multiple of -m",
            a.batch
        );
    }
    match memory_estimate(model, a.batch) {
        Some(bytes) if bytes <= MAX_TRAIN_BYTES => {}
        est => bail!(
            "--layers {} --hidden {} --heads {} --seq {} --batch {} need up to about {} (parameters, optimiser state and activations), more than the {} `train` allows; lower --hidden, --layers, --seq or --batch",
            a.layers,
            a.hidden,
            a.heads,
            a.seq,
            a.batch,
            est.map_or_else(|| "more than 16 EiB".to_string(), gib),
            gib(MAX_TRAIN_BYTES)
        ),
    }
    if a.timeline.is_some() && a.steps == 0 {
        bail!("--timeline writes the last step's timeline; give --steps 1 or more");
    }
    if a.profile.is_some() && a.steps == 0 {
        bail!("--profile writes the last step's measured costs; give --steps 1 or more");
    }
    if let Some(p) = &a.data {
        check_input("--data", p)?;
        let len = std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        if len > MAX_DATA_BYTES {
            bail!(
                "--data {}: the file has {len} bytes; `train` reads at most {} MiB, use a shorter text",
                p.display(),
                MAX_DATA_BYTES >> 20
            );
        }
    }
    if let Some(p) = &a.resume {
        check_input("--resume", p)?;
    }
    let outputs = [
        ("--save", &a.save),
        ("--timeline", &a.timeline),
        ("--profile", &a.profile),
    ];
    for (flag, path) in outputs {
        if let Some(p) = path {
            check_writable(flag, p)?;
        }
    }
    for (i, (f1, p1)) in outputs.iter().enumerate() {
        for (f2, p2) in &outputs[i + 1..] {
            if let (Some(x), Some(y)) = (p1, p2) {
                if same_file(x, y) {
                    bail!(
                        "{f1} and {f2} both name {}; give them different files",
                        x.display()
                    );
                }
            }
        }
    }
    Ok(())
}

/// Whether two output paths name the same file (compared after resolving their directories).
fn same_file(a: &Path, b: &Path) -> bool {
    let resolve = |p: &Path| {
        let dir = match p.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::canonicalize(dir)
            .ok()
            .map(|d| (d, p.file_name().map(|n| n.to_owned())))
    };
    match (resolve(a), resolve(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

/// An input file given with `flag` must be a readable regular file.
fn check_input(flag: &str, path: &Path) -> Result<()> {
    let shown = path.display();
    let meta = std::fs::metadata(path)
        .map_err(|e| anyhow::anyhow!("{flag} {shown}: cannot read it ({e})"))?;
    if !meta.is_file() {
        bail!("{flag} {shown} is not a regular file; give the path of a file");
    }
    std::fs::File::open(path)
        .map_err(|e| anyhow::anyhow!("{flag} {shown}: cannot read it ({e})"))?;
    Ok(())
}

/// Averages over the timed steps (after the warm-up).
#[derive(Default)]
struct Timed {
    n: f64,
    step_time: f64,
    makespan: f64,
    bubble_measured: f64,
    bubble_sim: f64,
    busy: f64,
}

/// `x / y`, or 0 when `y` is not positive (no NaN or infinity in the summary).
fn ratio(x: f64, y: f64) -> f64 {
    if y > 0.0 && x.is_finite() && y.is_finite() {
        x / y
    } else {
        0.0
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
    let p = *spec.devices.get_or_insert(2);
    let m = *spec.microbatches.get_or_insert(4);
    let model = ModelConfig {
        vocab: 256,
        hidden: a.hidden,
        heads: a.heads,
        layers: a.layers,
        seq: a.seq,
    };
    // Cheap checks of the schedule's flags first (sizes, options the schedule does not read),
    // then everything else before building anything.
    spec.params(StageCosts::default())?;
    preflight(&a, &model, p, m)?;
    let schedule = spec.generate(&StageCosts::default())?;
    let cfg = TrainConfig {
        model,
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
    if first.saturating_add(a.steps) > MAX_STEP_COUNT {
        bail!(
            "--resume: the checkpoint has {first} steps done and --steps {} would pass the {MAX_STEP_COUNT} steps the optimiser counts; the checkpoint is corrupt, or start without --resume",
            a.steps
        );
    }
    let schedule = trainer.schedule().clone();
    let bar = if a.json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(a.steps)
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} steps  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    // Timings skip the first steps (warm-up) when there are enough of them.
    let warm = if a.steps > 4 { a.steps / 4 } else { 0 };
    let mut losses = Vec::with_capacity(a.steps.min(4096) as usize);
    let mut timed = Timed::default();
    let mut last: Option<StepReport> = None;
    for i in 0..a.steps {
        let step = first + i + 1;
        let batch = corpus.batch(cfg.batch, cfg.model.seq, cfg.seed, first + i);
        let r = trainer.step(&batch).map_err(classify)?;
        if !r.loss.is_finite() {
            bar.finish_and_clear();
            let kept = if a.save.is_some() {
                "; no checkpoint was written"
            } else {
                ""
            };
            return Err(failure(format!(
                "the loss stopped being finite at step {step} (it is {}): training diverged; lower --lr (it is {}){kept}",
                r.loss,
                show(a.lr)
            )));
        }
        losses.push(r.loss);
        bar.set_message(format!(
            "loss {:.3}  {:.0} tokens/s",
            r.loss,
            r.tokens_per_s()
        ));
        bar.inc(1);
        if i >= warm {
            timed.n += 1.0;
            timed.step_time += r.step_time_s;
            timed.makespan += r.makespan_s;
            timed.bubble_measured += r.bubble_rate();
            timed.bubble_sim += r
                .simulate_measured(&schedule)
                .map_err(classify)?
                .bubble_rate;
            timed.busy += r.busy_s.iter().sum::<f64>();
        }
        last = Some(r);
    }
    bar.finish_and_clear();
    if let Some(p) = &a.save {
        checkpoint::save(&mut trainer, p).map_err(|e| {
            failure(format!(
                "training finished but the checkpoint could not be written to {}: {}",
                p.display(),
                one_line(&anyhow::Error::new(e))
            ))
        })?;
    }
    let Some(last) = last else {
        let text = if a.json {
            format!("{}\n", json!({"losses": [], "steps": 0}))
        } else {
            "0 steps: nothing trained\n".to_string()
        };
        return write_stdout(&text);
    };
    // A uniform guess over the vocabulary scores ln(vocab); a loss far above it means the
    // updates are throwing the model away, not training it.
    let uniform = (cfg.model.vocab as f64).ln();
    let diverged = losses
        .iter()
        .enumerate()
        .find(|(_, &l)| l > DIVERGED_OVER_UNIFORM * uniform)
        .map(|(i, &l)| (first + i as u64 + 1, l));
    if let Some((step, loss)) = diverged {
        eprintln!(
            "warning: the loss reached {loss:.4e} at step {step}, more than {DIVERGED_OVER_UNIFORM}x a uniform guess over the vocabulary ({uniform:.2}): training diverged; lower --lr (it is {})",
            show(a.lr)
        );
    }
    let n = timed.n.max(1.0);
    let step_time = timed.step_time / n;
    let bubble_measured = timed.bubble_measured / n;
    let bubble_sim = timed.bubble_sim / n;
    let busy = timed.busy / n;
    let tokens_per_s = ratio(last.tokens as f64, step_time);
    // Matrix-product FLOPs of the step over the device-seconds spent in passes.
    let gflops = ratio(cfg.model.matmul_flops(last.tokens), busy) / 1e9;
    let peak = &last.peak_activation_bytes;
    if let Some(p) = &a.timeline {
        let measured = last.as_sim_result(&schedule);
        let predicted = last.simulate_measured(&schedule).map_err(classify)?;
        let doc = json!({"schedule": schedule.name, "measured": measured, "simulated": predicted});
        let saved = if a.save.is_some() {
            " (the checkpoint was written)"
        } else {
            ""
        };
        write_atomic(
            "--timeline",
            p,
            (serde_json::to_string_pretty(&doc)? + "\n").as_bytes(),
        )
        .map_err(|e| {
            failure(format!(
                "training finished but the timeline could not be written{saved}: {}",
                one_line(&e)
            ))
        })?;
    }
    if let Some(p) = &a.profile {
        let table = last.stage_costs(&schedule);
        let comm = last.measured_latency(&schedule);
        let (activation, _) = last.activation_profile(&schedule);
        let mean = activation.iter().sum::<f64>() / activation.len().max(1) as f64;
        // The average stage's activation bytes, so that figures come out in bytes.
        let text = pipeblocks_core::format::stage_costs::write_with_bytes(
            &table,
            comm,
            0.0,
            (mean > 0.0).then_some(mean),
        );
        // What the engine cannot read is a bug here, not a failed run: check before writing.
        pipeblocks_core::format::stage_costs::read(&text)
            .map_err(|e| failure(format!("the measured stage costs are not valid: {e}")))?;
        write_atomic("--profile", p, text.as_bytes()).map_err(|e| {
            failure(format!(
                "training finished but the profile could not be written: {}",
                one_line(&e)
            ))
        })?;
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
            "pipeline_makespan_s": timed.makespan / n,
            "tokens_per_s": tokens_per_s,
            "matmul_gflops_per_device": gflops,
            "bubble_rate_measured": bubble_measured,
            "bubble_rate_simulated": bubble_sim,
        });
        let mut doc = doc;
        if let (Some((step, _)), Some(o)) = (diverged, doc.as_object_mut()) {
            o.insert("diverged_at_step".into(), json!(step));
        }
        return write_stdout(&(serde_json::to_string_pretty(&doc)? + "\n"));
    }
    let mut out = format!(
        "{} on {} devices, {} stages, {} microbatches; model {} params ({} layers, hidden {})\n",
        schedule.name,
        schedule.devices,
        schedule.stages,
        schedule.microbatches,
        cfg.model.num_params(),
        cfg.model.layers,
        cfg.model.hidden
    );
    out.push_str(&format!(
        "loss: {:.4} at step {} → {:.4} at step {}\n",
        losses[0],
        first + 1,
        losses[losses.len() - 1],
        first + a.steps
    ));
    out.push_str(&format!(
        "step time {:.1} ms, {:.0} tokens/s, matmuls {:.2} GFLOP/s per device\n",
        step_time * 1e3,
        tokens_per_s,
        gflops
    ));
    let peaks: Vec<String> = peak
        .iter()
        .enumerate()
        .map(|(d, b)| format!("d{d} {:.1} KiB", *b as f64 / 1024.0))
        .collect();
    out.push_str(&format!("peak activation: {}\n", peaks.join(", ")));
    out.push_str(&format!(
        "bubble rate: measured {:.1}%, simulated with measured pass costs {:.1}%\n",
        100.0 * bubble_measured,
        100.0 * bubble_sim
    ));
    if let Some(p) = &a.save {
        out.push_str(&format!("checkpoint written to {}\n", p.display()));
    }
    write_stdout(&out)
}
