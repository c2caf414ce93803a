//! `list`, `generate`, `simulate`, `validate` and `compare`.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, ValueEnum};
use pipeblocks_core::compare::{baseline, summarize, Row};
use pipeblocks_core::format::{json, torch_csv};
use pipeblocks_core::registry::registry;
use pipeblocks_core::{simulate as sim, validate as check, Schedule, SimResult, StageCosts};
use pipeblocks_viz::chrome_trace::{self, TraceOptions};

use crate::common::{
    check_output, compare_all, read_schedule, whole, write_output, write_stdout, CostArg,
    ScheduleSpec, SimInput, StepArgs,
};

/// Output formats of `generate`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Per-device timeline for the terminal.
    Text,
    /// pipeblocks JSON (versioned).
    Json,
    /// PyTorch compute-only CSV.
    TorchCsv,
    /// Chrome trace JSON of the simulated timeline (chrome://tracing, Perfetto).
    ChromeTrace,
}

/// Output formats of `simulate`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SimFormat {
    /// Summary for people.
    Text,
    /// JSON summary.
    Json,
    /// Chrome trace JSON (chrome://tracing, Perfetto): compute and p2p tracks per device.
    ChromeTrace,
}

/// `generate` arguments.
#[derive(Args, Debug)]
pub struct GenerateArgs {
    #[command(flatten)]
    spec: ScheduleSpec,
    #[command(flatten)]
    cost: CostArg,
    /// Output format (default: from the extension of -o, `.json` JSON and `.csv` torch CSV;
    /// text otherwise).
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// Write to FILE instead of standard output (atomically; `-` is standard output).
    #[arg(short = 'o', long = "output")]
    output: Option<PathBuf>,
    /// Build the schedule from a JSON building-block file (see docs/blocks.md) with -m M.
    #[arg(long = "block", conflicts_with = "schedule")]
    block: Option<PathBuf>,
}

/// `simulate` arguments.
#[derive(Args, Debug)]
pub struct SimulateArgs {
    #[command(flatten)]
    input: SimInput,
    /// Print the JSON summary (same as `--format json`).
    #[arg(long, conflicts_with = "format")]
    json: bool,
    #[command(flatten)]
    fsdp: crate::fsdp_cmd::FsdpArgs,
    #[command(flatten)]
    step: StepArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = SimFormat::Text)]
    format: SimFormat,
    /// Write to FILE instead of standard output (atomically; `-` is standard output).
    #[arg(short = 'o', long = "output")]
    output: Option<PathBuf>,
}

/// `validate` arguments.
#[derive(Args, Debug)]
pub struct ValidateArgs {
    /// Schedule file: pipeblocks JSON or PyTorch CSV.
    file: PathBuf,
}

/// `compare` arguments.
#[derive(Args, Debug)]
pub struct CompareArgs {
    /// Number of devices p.
    #[arg(short = 'p', long = "devices", default_value_t = 8, allow_negative_numbers = true,
          value_parser = whole::<u32>("-p", "the number of devices", 1, None))]
    devices: u32,
    /// Number of microbatches m.
    #[arg(short = 'm', long = "microbatches", default_value_t = 32, allow_negative_numbers = true,
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
    /// Print a JSON array of summaries.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    fsdp: crate::fsdp_cmd::FsdpArgs,
    #[command(flatten)]
    step: StepArgs,
}

/// `pipeblocks list`.
pub fn list() -> Result<()> {
    let width = registry().iter().map(|g| g.name.len()).max().unwrap_or(0);
    let mut out = String::new();
    for g in registry() {
        out.push_str(&format!(
            "{:width$}  {}\n{:width$}  constraints: {}\n",
            g.name, g.summary, "", g.constraints
        ));
    }
    write_stdout(&out)
}

/// The format `generate` writes to `path` when `--format` is not given: JSON for `.json`,
/// torch CSV for `.csv`, so that the file reads back with `--from`; text otherwise.
fn format_of(path: Option<&std::path::Path>) -> Format {
    match path
        .filter(|p| !crate::common::is_stdout(p))
        .and_then(|p| p.extension())
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase())
        .as_deref()
    {
        Some("json") => Format::Json,
        Some("csv") => Format::TorchCsv,
        _ => Format::Text,
    }
}

/// A Chrome trace of `s` simulated in `r` under `costs` (their link latencies).
fn trace(s: &Schedule, r: &SimResult, costs: &StageCosts) -> Result<String> {
    let comm = costs.for_placement(&s.placement, s.devices)?.comm;
    Ok(chrome_trace::export(s, r, &comm, &TraceOptions::default())?)
}

/// `pipeblocks generate`.
pub fn generate(a: GenerateArgs) -> Result<()> {
    check_output(a.output.as_ref())?;
    let costs = a.cost.costs()?;
    let s = match &a.block {
        Some(path) => {
            a.spec
                .refuse_generation_options("a schedule built from --block")?;
            crate::block_cmd::schedule_from_block(path, &a.spec, &costs)?
        }
        None => a.spec.generate(&costs)?,
    };
    let text = match a.format.unwrap_or_else(|| format_of(a.output.as_deref())) {
        Format::Json => json::write(&s),
        Format::TorchCsv => {
            torch_csv::check(&s)?;
            torch_csv::write(&s)
        }
        Format::Text => pipeblocks_viz::text::render(&s, &sim(&s, &costs)?),
        Format::ChromeTrace => trace(&s, &sim(&s, &costs)?, &costs)?,
    };
    write_output(a.output.as_ref(), &text)
}

/// `pipeblocks simulate`.
pub fn simulate(mut a: SimulateArgs) -> Result<()> {
    check_output(a.output.as_ref())?;
    let spec = a.step.spec()?;
    a.input.spec.objective = spec.mode.objective();
    if a.fsdp.active(&a.input.cost) {
        let optimizer = a.step.fsdp_optimizer()?;
        let json = match (a.json, a.format) {
            (true, _) | (_, SimFormat::Json) => true,
            (false, SimFormat::Text) => false,
            (false, SimFormat::ChromeTrace) => anyhow::bail!(
                "--format chrome-trace does not apply with --fsdp or --model; use --format text or json"
            ),
        };
        return crate::fsdp_cmd::simulate(&a.fsdp, &a.input, json, a.output.as_ref(), optimizer);
    }
    let group = a.fsdp.plain_group()?;
    let (s, costs) = a.input.load_grouped(group)?;
    let r = sim(&s, &costs)?;
    let base = baseline(s.devices, s.microbatches, &costs)?;
    let mut summary = summarize(&s, &r, &costs, base)?;
    let model = spec.model_for(&s, &costs)?;
    let step = pipeblocks_core::step::step_of(&s, &costs, &model, &r)?;
    summary.period = step.period;
    if a.step.given() {
        summary.step = Some(step.clone());
    }
    let format = if a.json { SimFormat::Json } else { a.format };
    let text = if format == SimFormat::ChromeTrace {
        if a.step.given() {
            anyhow::bail!("--format chrome-trace draws one flush; drop the step options (--optimizer, --optimizer-cost, --grad-sync, --iterations) or use --format text or json");
        }
        trace(&s, &r, &costs)?
    } else if format == SimFormat::Json {
        serde_json::to_string_pretty(&summary)? + "\n"
    } else {
        let peaks: Vec<String> = summary
            .peak_activation
            .iter()
            .map(|x| format!("{x:.3}"))
            .collect();
        let b = &summary.bottleneck;
        let mut extra = String::new();
        if summary.pairs > 0 {
            extra += &format!(
                "pairs         {} forward/backward pairs run overlapped\n",
                summary.pairs
            );
        }
        let [k, sel] = summary.recomputed_stages;
        if k > 0 {
            let selective = if sel > 0 {
                format!(", {sel} selectively")
            } else {
                String::new()
            };
            extra += &format!(
                "recompute     {k} of {} stages{selective}; at most {:.4} per device\n",
                summary.stages, summary.recompute_time
            );
        }
        if summary.offloaded > 0 {
            extra += &format!(
                "offload       {} activations to host memory; host link busy at most {:.4} per device, beside the computation\n",
                summary.offloaded, summary.transfer_time
            );
        }
        if (summary.parameters_vs_1f1b - 1.0).abs() > 1e-9 {
            extra += &format!(
                "parameters    {:.3}x 1F1B's per device\n",
                summary.parameters_vs_1f1b
            );
        }
        let step_lines = if a.step.given() {
            let opt = model.optimizer.iter().cloned().fold(0.0, f64::max);
            let exposed = step.grad_sync_exposed.iter().cloned().fold(0.0, f64::max);
            format!(
                "period        {:.4} per iteration ({} optimizer {opt:.4}, gradient sync exposed {exposed:.4}{}); idle {:.4} of it\n",
                step.period,
                step.mode.name(),
                if step.iterations > 1 {
                    format!(", {} iterations simulated", step.iterations)
                } else {
                    String::new()
                },
                step.period_bubble_rate
            )
        } else {
            String::new()
        };
        format!(
            "schedule      {}\nplacement     {}\ndevices       {}\nstages        {}\nmicrobatches  {}\nmakespan      {:.4}\nbubble rate   {:.4} (within each device's own span {:.4})\n{step_lines}peak (units)  {} (max {:.3}, {:.3}x 1F1B)\np2p transfers {} ({:.3}x 1F1B)\n{extra}bound by      stage {} on device {}: {:.0}% of the critical path; the device is busy {:.0}% of the step\n",
            summary.schedule,
            summary.placement,
            summary.devices,
            summary.stages,
            summary.microbatches,
            summary.makespan,
            summary.bubble_rate,
            summary.stage_bubble_rate,
            peaks.join(" "),
            summary.max_peak_activation,
            summary.peak_vs_1f1b,
            summary.p2p_transfers,
            summary.p2p_vs_1f1b,
            b.stage,
            b.device,
            100.0 * b.critical_share,
            100.0 * b.device_busy_share
        )
    };
    write_output(a.output.as_ref(), &text)
}

/// `pipeblocks validate`.
pub fn validate(a: ValidateArgs) -> Result<()> {
    let s = read_schedule(&a.file)?;
    check(&s).map_err(|e| anyhow::anyhow!("{}: {e}", a.file.display()))?;
    write_stdout(&format!(
        "{}: valid ({} devices, {} stages, {} microbatches, {} passes, {} placement)\n",
        a.file.display(),
        s.devices,
        s.stages,
        s.microbatches,
        s.num_passes(),
        s.placement.describe()
    ))
}

/// `pipeblocks compare`.
pub fn compare(a: CompareArgs) -> Result<()> {
    let step = a.step.spec()?;
    let spec = ScheduleSpec {
        schedule: None,
        devices: Some(a.devices),
        microbatches: Some(a.microbatches),
        chunks: a.chunks,
        memory: a.memory.clone(),
        objective: step.mode.objective(),
    };
    let costs = a.cost.costs()?;
    let prm = spec.params(costs)?;
    if a.fsdp.active(&a.cost) {
        let optimizer = a.step.fsdp_optimizer()?;
        return crate::fsdp_cmd::compare(&a.fsdp, &a.cost, &prm, a.json, optimizer);
    }
    a.fsdp.refuse_torch_csv("compare")?;
    // Options apply to the schedules that read them: ZeroPP's group to ZeroPP.
    let prm = match a.fsdp.plain_group()? {
        Some(u) => prm.with_group(u)?,
        None => prm,
    };
    let rows = compare_all(&prm, a.step.given().then_some(&step))?;
    let text = if a.json {
        let ok: Vec<_> = rows
            .iter()
            .filter_map(|r| match r {
                Row::Ok(s) => Some(s.as_ref()),
                Row::NotApplicable { .. } => None,
            })
            .collect();
        serde_json::to_string_pretty(&ok)? + "\n"
    } else {
        let with_period = a.step.given();
        let mut t = format!(
            "p={} m={} {}\n{:<18} {:>10}{} {:>10} {:>12} {:>11} {:>10}\n",
            a.devices,
            a.microbatches,
            a.cost.describe(),
            "schedule",
            "makespan",
            if with_period {
                format!(" {:>10}", "period")
            } else {
                String::new()
            },
            "bubble",
            "peak(units)",
            "peak/1F1B",
            "p2p/1F1B"
        );
        for r in &rows {
            match r {
                Row::Ok(s) => t.push_str(&format!(
                    "{:<18} {:>10.3}{} {:>10.4} {:>12.3} {:>11.3} {:>10.3}\n",
                    s.schedule,
                    s.makespan,
                    if with_period {
                        format!(" {:>10.3}", s.period)
                    } else {
                        String::new()
                    },
                    s.bubble_rate,
                    s.max_peak_activation,
                    s.peak_vs_1f1b,
                    s.p2p_vs_1f1b
                )),
                Row::NotApplicable { schedule, reason } => {
                    t.push_str(&format!("{schedule:<18} not applicable: {reason}\n"))
                }
            }
        }
        t
    };
    write_stdout(&text)
}
