//! `plan`: from a model and a cluster to the fastest configuration that fits, with its exports
//! (the schedule as PyTorch CSV and pipeblocks JSON, the stage-cost file, a torchtitan TOML
//! fragment and Megatron-LM arguments).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use pipeblocks_core::fsdp::GIB;
use pipeblocks_core::model::{DeviceSpec, ModelSpec};
use pipeblocks_core::plan::{
    self, describe, Cluster, Evaluation, Fixed, Recompute, Request, Sharding,
};

use crate::common::{whole, write_atomic, write_stdout};

/// `plan` arguments.
#[derive(Args, Debug)]
pub struct PlanArgs {
    /// Model: a preset (llama3-70b, llama2-7b, gpt3-175b, ... see docs/plan.md) or
    /// layers=..,hidden=..,heads=..,seq=..,vocab=.. (optional kv_heads=.., ffn=.., gated=1)
    #[arg(long)]
    model: String,
    /// Accelerators in all.
    #[arg(long, allow_negative_numbers = true,
          value_parser = whole::<u32>("--gpus", "the number of accelerators", 1, Some(1 << 20)))]
    gpus: u32,
    /// Accelerators per node (tensor parallelism stays within a node).
    #[arg(long = "gpus-per-node", default_value_t = 8, allow_negative_numbers = true,
          value_parser = whole::<u32>("--gpus-per-node", "accelerators per node", 1, Some(1024)))]
    gpus_per_node: u32,
    /// Accelerator: a preset (a100-40gb, a100-80gb, h100, h200, mi300x), optionally with
    /// overrides (`h100,eff=0.45`), or flops=..,memory=..,intra=..,inter=..
    #[arg(long, default_value = "h100")]
    device: String,
    /// Sequence length (default: the model's).
    #[arg(long, allow_negative_numbers = true,
          value_parser = whole::<u64>("--seq", "the sequence length", 1, Some(1 << 24)))]
    seq: Option<u64>,
    /// Sequences per iteration, all data-parallel replicas together.
    #[arg(long = "global-batch", allow_negative_numbers = true,
          value_parser = whole::<u32>("--global-batch", "the global batch in sequences", 1, Some(1 << 24)))]
    global_batch: u32,
    /// Schedules to try, comma-separated (default: all the planner knows, and auto).
    #[arg(long, value_delimiter = ',')]
    schedules: Option<Vec<String>>,
    /// Fix the schedule (same as --schedules with one name).
    #[arg(long, conflicts_with = "schedules")]
    schedule: Option<String>,
    /// Fix the tensor-parallel degree.
    #[arg(long, allow_negative_numbers = true,
          value_parser = whole::<u32>("--tp", "the tensor-parallel degree", 1, Some(1024)))]
    tp: Option<u32>,
    /// Fix the pipeline degree.
    #[arg(long, allow_negative_numbers = true,
          value_parser = whole::<u32>("--pp", "the pipeline degree", 1, Some(4096)))]
    pp: Option<u32>,
    /// Fix the data-parallel degree.
    #[arg(long, allow_negative_numbers = true,
          value_parser = whole::<u32>("--dp", "the data-parallel degree", 1, Some(1 << 20)))]
    dp: Option<u32>,
    /// Fix the chunks per device of interleaved 1F1B.
    #[arg(long, allow_negative_numbers = true,
          value_parser = whole::<u32>("--chunks", "the chunks per device", 1, Some(64)))]
    chunks: Option<u32>,
    /// Fix the microbatch size (sequences).
    #[arg(long = "microbatch-size", allow_negative_numbers = true,
          value_parser = whole::<u32>("--microbatch-size", "the microbatch size", 1, Some(4096)))]
    microbatch_size: Option<u32>,
    /// Fix the activation recompute: none, selective or full.
    #[arg(long)]
    recompute: Option<String>,
    /// Fix the data-parallel sharding: ddp, zero1, zero2, zero3 (fsdp).
    #[arg(long)]
    sharding: Option<String>,
    /// Turn sequence parallelism off (it is on with tensor parallelism by default).
    #[arg(long = "no-sequence-parallel")]
    no_sequence_parallel: bool,
    /// Point-to-point sends: `blocking` (each send holds its device, as Megatron-LM's do; the
    /// default) or `overlapped` (asynchronous sends only delay their receiver).
    #[arg(long, default_value = "blocking", value_parser = ["blocking", "overlapped"])]
    p2p: String,
    /// How many configurations to print.
    #[arg(long, default_value_t = 5, allow_negative_numbers = true,
          value_parser = whole::<usize>("--top", "the configurations to print", 1, Some(1000)))]
    top: usize,
    /// Print the steps of the best configuration's cost.
    #[arg(long)]
    explain: bool,
    /// Print one JSON object per configuration (an array), and the search's figures.
    #[arg(long)]
    json: bool,
    /// Write the best configuration's schedule (schedule.csv, schedule.json), stage costs
    /// (stage_costs.json), torchtitan.toml and megatron.args into DIR.
    #[arg(long, value_name = "DIR")]
    export: Option<PathBuf>,
}

fn request(a: &PlanArgs) -> Result<Request> {
    let mut model = ModelSpec::parse(&a.model)?;
    if let Some(s) = a.seq {
        if s == 0 {
            bail!("--seq 0: the sequence length must be at least 1");
        }
        model.seq = s;
    }
    if a.top == 0 {
        bail!("--top 0: print at least 1 configuration");
    }
    let device = DeviceSpec::parse(&a.device)?;
    let schedules = match (&a.schedule, &a.schedules) {
        (Some(s), _) => Some(vec![s.trim().to_string()]),
        (None, Some(v)) => Some(v.iter().map(|s| s.trim().to_string()).collect()),
        (None, None) => None,
    };
    let fixed = Fixed {
        tp: a.tp,
        pp: a.pp,
        dp: a.dp,
        sharding: a.sharding.as_deref().map(Sharding::parse).transpose()?,
        microbatch_size: a.microbatch_size,
        schedules,
        chunks: a.chunks,
        recompute: a.recompute.as_deref().map(Recompute::parse).transpose()?,
        sequence_parallel: a.no_sequence_parallel.then_some(false),
    };
    if a.gpus_per_node > a.gpus && !a.gpus_per_node.is_multiple_of(a.gpus) {
        bail!(
            "--gpus {} is fewer than one node of --gpus-per-node {}; give --gpus-per-node {} for a partial node",
            a.gpus,
            a.gpus_per_node,
            a.gpus
        );
    }
    Ok(Request {
        model,
        cluster: Cluster {
            gpus: a.gpus,
            gpus_per_node: a.gpus_per_node.min(a.gpus),
            device,
        },
        global_batch: a.global_batch,
        fixed,
        top: a.top,
        p2p_blocking: a.p2p == "blocking",
    })
}

/// `pipeblocks plan`.
pub fn plan(a: PlanArgs) -> Result<()> {
    let req = request(&a)?;
    let t0 = Instant::now();
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} configurations  {elapsed}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let result = plan::plan(&req, |done, all| {
        bar.set_length(all as u64);
        bar.set_position(done as u64);
    });
    bar.finish_and_clear();
    let result = result?;
    let seconds = t0.elapsed().as_secs_f64();
    if let Some(dir) = &a.export {
        export(&req, &result.best[0], dir)?;
    }
    if a.json {
        let doc = serde_json::json!({
            "model": req.model,
            "cluster": req.cluster,
            "global_batch": req.global_batch,
            "configurations": result.best.iter().map(json_of).collect::<Vec<_>>(),
            "faster_but_too_big": result.faster_but_too_big.as_ref().map(json_of),
            "enumerated": result.enumerated,
            "simulated": result.simulated,
            "refined_with_auto": result.refined,
            "seconds": seconds,
        });
        return write_stdout(&(serde_json::to_string_pretty(&doc)? + "\n"));
    }
    let mut out = String::new();
    let m = &req.model;
    let d = &req.cluster.device;
    out.push_str(&format!(
        "plan for {} ({} layers, hidden {}, {} heads, sequence {}) on {} × {} ({} per node), global batch {} sequences\n",
        m.name, m.layers, m.hidden, m.heads, m.seq, req.cluster.gpus, d.name, req.cluster.gpus_per_node, req.global_batch
    ));
    out.push_str(&format!(
        "{} configurations, {} simulated, {} refined with auto, {:.1} s (the rest pruned: their lower bound could not make the top {})\n\n",
        result.enumerated, result.simulated, result.refined, seconds, req.top
    ));
    out.push_str(&table(&result.best, d.memory));
    let best = &result.best[0];
    out.push_str(&format!(
        "\nbest: {}\n  layers per stage {:?}; bound by {}\n",
        describe(&best.config),
        best.layers_per_stage,
        best.binding
    ));
    out.push_str(&memory_line(best));
    match &result.faster_but_too_big {
        Some(t) => out.push_str(&format!(
            "faster but does not fit: {} ({:.2} s per iteration) needs {:.1} GiB on a {:.1} GiB device\n",
            describe(&t.config),
            t.iteration_seconds,
            t.max_peak() / GIB,
            d.memory / GIB
        )),
        None => out.push_str("no faster configuration was found that does not fit\n"),
    }
    if a.explain {
        out.push_str(&explain(&req, best));
    }
    if let Some(dir) = &a.export {
        out.push_str(&format!(
            "exported the best configuration to {}\n",
            dir.display()
        ));
    }
    write_stdout(&out)
}

fn table(rows: &[Evaluation], capacity: f64) -> String {
    let head = [
        "#",
        "tp",
        "pp",
        "dp",
        "sharding",
        "b",
        "m",
        "schedule",
        "recompute",
        "iter s",
        "tok/s/GPU",
        "MFU",
        "peak GiB",
        "binding",
    ];
    let lines: Vec<Vec<String>> = rows
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let c = &e.config;
            vec![
                (i + 1).to_string(),
                c.tp.to_string(),
                c.pp.to_string(),
                c.dp.to_string(),
                c.sharding.name().to_string(),
                c.microbatch_size.to_string(),
                c.microbatches.to_string(),
                plan::schedule_label(c),
                c.recompute.name().to_string(),
                seconds(e.iteration_seconds),
                format!("{:.0}", e.tokens_per_second_per_gpu),
                format!("{:.1}%", 100.0 * e.mfu),
                format!(
                    "{:.1} ({:.0}%)",
                    e.max_peak() / GIB,
                    100.0 * e.max_peak() / capacity
                ),
                e.binding.clone(),
            ]
        })
        .collect();
    let widths: Vec<usize> = head
        .iter()
        .enumerate()
        .map(|(i, h)| {
            lines
                .iter()
                .map(|l| l[i].chars().count())
                .max()
                .unwrap_or(0)
                .max(h.len())
        })
        .collect();
    let fmt = |cells: Vec<String>| -> String {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
            + "\n"
    };
    let mut out = fmt(head.iter().map(|s| s.to_string()).collect());
    for l in lines {
        out.push_str(&fmt(l));
    }
    out
}

/// A time in seconds with three significant figures at least.
fn seconds(t: f64) -> String {
    if t >= 1.0 {
        format!("{t:.3}")
    } else if t >= 1e-3 {
        format!("{t:.5}")
    } else {
        format!("{t:.3e}")
    }
}

fn memory_line(e: &Evaluation) -> String {
    let (i, m) = e
        .memory
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total.total_cmp(&b.1.total))
        .map(|(i, m)| (i, m.clone()))
        .unwrap_or_default();
    let gathered = if m.gathered > 0.0 {
        format!(", gathered {:.1}", m.gathered / GIB)
    } else {
        String::new()
    };
    format!(
        "  memory of the fullest device ({i}), GiB: parameters {:.1}, gradients {:.1}, optimizer {:.1}{gathered}, activations {:.1}, reserved {:.1}: {:.1}\n",
        m.params / GIB,
        m.grads / GIB,
        m.optimizer / GIB,
        m.activations / GIB,
        m.reserved / GIB,
        m.total / GIB
    )
}

fn json_of(e: &Evaluation) -> serde_json::Value {
    let c = &e.config;
    serde_json::json!({
        "tp": c.tp,
        "pp": c.pp,
        "dp": c.dp,
        "sharding": c.sharding,
        "schedule": c.schedule,
        "chunks": c.chunks,
        "group": c.group,
        "microbatch_size": c.microbatch_size,
        "microbatches": c.microbatches,
        "recompute": c.recompute,
        "sequence_parallel": c.sequence_parallel,
        "layers_per_stage": e.layers_per_stage,
        "iteration_seconds": e.iteration_seconds,
        "tokens_per_second_per_gpu": e.tokens_per_second_per_gpu,
        "mfu": e.mfu,
        "peak_memory_bytes": e.peak_memory_bytes,
        "memory": e.memory,
        "pipeline_seconds": e.pipeline_seconds,
        "bubble_rate": e.bubble_rate,
        "tp_comm_seconds": e.tp_comm_seconds,
        "dp_exposed_seconds": e.dp_exposed_seconds,
        "optimizer_seconds": e.optimizer_seconds,
        "recompute_seconds": e.recompute_seconds,
        "binding": e.binding,
    })
}

/// The steps of a configuration's cost, for `--explain`.
fn explain(req: &Request, e: &Evaluation) -> String {
    let c = &e.config;
    let m = &req.model;
    let d = &req.cluster.device;
    let mut out = String::from("\nhow the best configuration's time is made up:\n");
    out.push_str(&format!(
        "  device: {:.0} TFLOP/s peak × {:.2} efficiency = {:.0} TFLOP/s per pass, {:.0} GB/s within a node, {:.0} GB/s between nodes\n",
        d.flops / 1e12,
        d.efficiency,
        d.sustained() / 1e12,
        d.intra_bandwidth / 1e9,
        d.bandwidth / 1e9
    ));
    out.push_str(&format!(
        "  model: {:.2} B parameters, {:.2} B per layer; {} stages of {:?} layers ({} per device)\n",
        m.total_params() / 1e9,
        m.layer_params() / 1e9,
        c.pp * c.chunks.max(1),
        e.layers_per_stage,
        c.chunks
    ));
    out.push_str(&format!(
        "  pipeline: {} microbatches of {} sequences through {} ({}), flush {:.3} s\n",
        c.microbatches,
        c.microbatch_size,
        plan::schedule_label(c),
        c.recompute.name(),
        e.pipeline_seconds
    ));
    out.push_str(&format!(
        "  in the busiest device's passes: tensor-parallel collectives {:.3} s, recomputation {:.3} s\n",
        e.tp_comm_seconds, e.recompute_seconds
    ));
    out.push_str(&format!(
        "  data parallelism: {} replicas ({}), sync exposed after the last pass {:.3} s; optimizer {:.3} s\n",
        c.dp,
        c.sharding.name(),
        e.dp_exposed_seconds,
        e.optimizer_seconds
    ));
    out.push_str(&format!(
        "  iteration {:.3} s: idle share {:.1}%; {:.0} tokens/s per accelerator, MFU {:.1}%\n",
        e.iteration_seconds,
        100.0 * e.bubble_rate,
        e.tokens_per_second_per_gpu,
        100.0 * e.mfu
    ));
    out
}

/// Writes the best configuration's files into `dir`.
fn export(req: &Request, e: &Evaluation, dir: &PathBuf) -> Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("--export: cannot create {}", dir.display()))?;
    let (schedule, costs) = plan::build(req, &e.config)?;
    let c = &e.config;
    let csv = pipeblocks_core::format::torch_csv::write(&schedule);
    let json = pipeblocks_core::format::json::write(&schedule);
    let recompute = c.recompute.name();
    let (replicate, shard) = match c.sharding {
        Sharding::Zero3 => (1, c.dp),
        _ => (c.dp, 1),
    };
    // torchtitan places the stages by the schedule class: V-style for ZBVZeroBubble, looped
    // for the multi-stage classes, one stage per rank for the single ones; the CSV then gives
    // the order.
    let class = match schedule.placement {
        pipeblocks_core::Placement::VShape => "ZBVZeroBubble",
        pipeblocks_core::Placement::Looped { .. } => "Interleaved1F1B",
        _ => "1F1B",
    };
    let toml = format!(
        "# torchtitan configuration fragment written by `pipeblocks plan` for {model} on {gpus} accelerators.\n\
         # Predicted: {it:.3} s per iteration, {tok:.0} tokens/s per accelerator, MFU {mfu:.1}%.\n\
         # Layers per stage, in stage order: {layers:?} (give them as module_fqns_per_model_part when uneven).\n\
         [parallelism]\n\
         tensor_parallel_degree = {tp}\n\
         enable_sequence_parallel = {sp}\n\
         pipeline_parallel_degree = {pp}\n\
         data_parallel_replicate_degree = {replicate}\n\
         data_parallel_shard_degree = {shard}\n\
         pipeline_parallel_microbatch_size = {b}\n\
         pipeline_parallel_schedule = \"{class}\"\n\
         pipeline_parallel_schedule_csv = \"schedule.csv\"\n\
         \n\
         [training]\n\
         seq_len = {seq}\n\
         global_batch_size = {gb}\n\
         local_batch_size = {local}\n\
         \n\
         [activation_checkpoint]\n\
         mode = \"{recompute}\"\n",
        model = req.model.name,
        gpus = req.cluster.gpus,
        it = e.iteration_seconds,
        tok = e.tokens_per_second_per_gpu,
        mfu = 100.0 * e.mfu,
        layers = e.layers_per_stage,
        tp = c.tp,
        sp = c.sequence_parallel,
        pp = c.pp,
        b = c.microbatch_size,
        seq = req.model.seq,
        gb = req.global_batch,
        local = req.global_batch / c.dp.max(1),
    );
    let mut args = vec![
        format!("--tensor-model-parallel-size {}", c.tp),
        format!("--pipeline-model-parallel-size {}", c.pp),
        format!("--micro-batch-size {}", c.microbatch_size),
        format!("--global-batch-size {}", req.global_batch),
        format!("--seq-length {}", req.model.seq),
        format!("--num-layers {}", req.model.layers),
    ];
    if c.sequence_parallel {
        args.push("--sequence-parallel".into());
    }
    if c.schedule == "interleaved-1f1b" && c.chunks > 1 {
        if let Some(&n) = e.layers_per_stage.first() {
            args.push(format!("--num-layers-per-virtual-pipeline-stage {n}"));
        }
    }
    let (first, last) = (
        e.layers_per_stage.first().copied().unwrap_or(0),
        e.layers_per_stage.last().copied().unwrap_or(0),
    );
    if c.chunks == 1 && e.layers_per_stage.iter().any(|&n| n != first) {
        args.push(format!("--decoder-first-pipeline-num-layers {first}"));
        args.push(format!("--decoder-last-pipeline-num-layers {last}"));
    }
    match c.sharding {
        Sharding::Ddp => {}
        Sharding::Zero1 | Sharding::Zero2 => args.push("--use-distributed-optimizer".into()),
        Sharding::Zero3 => args.push("--use-torch-fsdp2".into()),
    }
    match c.recompute {
        Recompute::None => {}
        Recompute::Selective => args.push("--recompute-granularity selective".into()),
        Recompute::Full => args.push(
            "--recompute-granularity full --recompute-method uniform --recompute-num-layers 1"
                .into(),
        ),
    }
    let note = if matches!(c.schedule.as_str(), "1f1b" | "interleaved-1f1b") {
        String::new()
    } else {
        format!(
            "# Megatron-LM runs 1F1B and interleaved 1F1B; `{}` needs a runtime that reads schedule.csv\n# (torchtitan, PyTorch's pipelining) or the zero-bubble authors' Megatron fork.\n",
            c.schedule
        )
    };
    let megatron = format!(
        "# Megatron-LM arguments written by `pipeblocks plan` (predicted {:.3} s per iteration).\n{note}{}\n",
        e.iteration_seconds,
        args.join(" \\\n")
    );
    for (name, text) in [
        ("schedule.csv", csv),
        ("schedule.json", json),
        ("stage_costs.json", costs),
        ("torchtitan.toml", toml),
        ("megatron.args", megatron),
    ] {
        write_atomic("--export", &dir.join(name), text.as_bytes()).map_err(|err| {
            anyhow::anyhow!("--export: cannot write {}: {err}", dir.join(name).display())
        })?;
    }
    Ok(())
}
