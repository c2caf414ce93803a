//! `simulate` and `compare` with fully sharded data parallelism (`--fsdp D`) and a model-level
//! cost model (`--model`, `--microbatch-size`, `--device`), and ZeroPP's `--unit U|auto`.

use anyhow::{anyhow, bail, Result};
use clap::Args;
use pipeblocks_core::format::torch_csv;
use pipeblocks_core::fsdp::{run, schedule_and_run, FsdpResult, FsdpRun, FsdpSetup, GIB};
use pipeblocks_core::registry::{find, registry};
use pipeblocks_core::search::zeropp_group;
use pipeblocks_core::{Params, Schedule};
use serde_json::json;

use crate::common::{
    check_target, read_schedule, unit_does_not_apply, whole, write_atomic, write_output,
    write_stdout, CostArg, SimInput,
};

/// Options for fully sharded data parallelism and ZeroPP's groups.
#[derive(Args, Debug, Clone, Default)]
pub struct FsdpArgs {
    /// Fully sharded data parallelism over D replicas of every pipeline device: simulate the
    /// parameter all-gathers and gradient reduce-scatters (needs --model).
    #[arg(long = "fsdp", value_name = "D", allow_negative_numbers = true,
          value_parser = whole::<u32>("--fsdp", "the number of data-parallel replicas", 1, None))]
    pub fsdp: Option<u32>,
    /// ZeroPP scheduling unit: microbatches per group, or `auto` (the fastest group whose peak
    /// memory fits the device).
    #[arg(long = "unit", allow_negative_numbers = true)]
    pub unit: Option<String>,
    /// With `simulate`: write the schedule with its collectives as a PyTorch CSV
    /// (`{stage}UNSHARD`, `{stage}RESHARD`, `{stage}REDUCE_GRAD`) to FILE.
    #[arg(long = "torch-csv", value_name = "FILE")]
    pub torch_csv: Option<std::path::PathBuf>,
}

/// The parsed `--unit`.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Unit {
    Default,
    Fixed(u32),
    Auto,
}

impl FsdpArgs {
    /// Whether the FSDP path handles the command: `--fsdp`, or a `--model` (whose step it
    /// reports in seconds and bytes).
    pub fn active(&self, cost: &CostArg) -> bool {
        self.fsdp.is_some() || cost.model.is_some()
    }

    fn setup(&self, cost: &CostArg) -> Result<FsdpSetup> {
        let (model, device) = cost.model_spec()?.ok_or_else(|| {
            anyhow!("--fsdp needs --model: a preset such as --model gpt-7b, or --model layers=32,hidden=4096,heads=32,seq=4096,vocab=32000")
        })?;
        let dp = self.fsdp.unwrap_or(1);
        if dp == 0 {
            bail!("--fsdp 0: the data-parallel group needs at least 1 replica (--fsdp 1 or more)");
        }
        if cost.b_release.is_some() {
            bail!("--b-release does not apply with --fsdp or --model: the model's memory model is used; drop it");
        }
        Ok(FsdpSetup {
            model,
            microbatch_size: cost.microbatch_size,
            device,
            dp,
        })
    }

    /// The options without `--fsdp` or `--model` (a plain simulation): `--unit U` sets ZeroPP's
    /// group; `--unit auto` and `--torch-csv` need the model and are refused.
    pub fn plain_group(&self) -> Result<Option<u32>> {
        if self.torch_csv.is_some() {
            bail!("--torch-csv writes the schedule with its FSDP collectives and needs --fsdp D or --model; for the plain schedule use `pipeblocks generate --format torch-csv`");
        }
        match self.unit()? {
            Unit::Default => Ok(None),
            Unit::Fixed(u) => Ok(Some(u)),
            Unit::Auto => bail!("--unit auto picks the group whose peak memory fits the device of a --model; give --model (and --fsdp D), or a number of microbatches"),
        }
    }

    /// Refuses `--torch-csv` where no single schedule is simulated.
    pub fn refuse_torch_csv(&self, command: &str) -> Result<()> {
        if self.torch_csv.is_some() {
            bail!("--torch-csv does not apply to `{command}`; it writes one schedule: use `pipeblocks simulate -s NAME ... --torch-csv FILE`");
        }
        Ok(())
    }

    fn unit(&self) -> Result<Unit> {
        match self.unit.as_deref().map(str::trim) {
            None => Ok(Unit::Default),
            Some(u) if u.eq_ignore_ascii_case("auto") => Ok(Unit::Auto),
            Some(u) => match u.parse::<u32>() {
                Ok(0) | Err(_) => {
                    bail!("--unit {u}: give a number of microbatches (1 or more) or `auto`")
                }
                Ok(n) => Ok(Unit::Fixed(n)),
            },
        }
    }
}

/// Generates `name` for FSDP under the model's costs, resolving ZeroPP's group, and runs it.
fn build(name: &str, prm: &Params, unit: Unit, setup: &FsdpSetup) -> Result<FsdpRun> {
    let grouped = find(name)?.uses.group;
    let prm = match (grouped, unit) {
        (true, Unit::Auto) => return Ok(zeropp_group(prm, setup, None)?.0),
        (true, Unit::Fixed(u)) => prm.clone().with_group(u)?,
        _ => prm.clone(),
    };
    Ok(schedule_and_run(name, &prm, setup)?)
}

fn gib(x: f64) -> String {
    format!("{:.2}", x / GIB)
}

fn list(v: &[f64], f: impl Fn(f64) -> String) -> String {
    v.iter().map(|&x| f(x)).collect::<Vec<_>>().join(" ")
}

fn summary_json(
    s: &Schedule,
    unit: u32,
    setup: &FsdpSetup,
    r: &FsdpResult,
    optimizer: f64,
) -> serde_json::Value {
    json!({
        "schedule": s.name,
        "placement": s.placement.describe(),
        "devices": s.devices,
        "stages": s.stages,
        "microbatches": s.microbatches,
        "unit": unit,
        "model": setup.model,
        "microbatch_size": setup.microbatch_size,
        "device": setup.device,
        "fsdp": setup.dp,
        "step_seconds": r.makespan,
        "step_seconds_free_comm": r.compute_only_makespan,
        // A synchronous optimizer after the step (its time from --optimizer-cost).
        "period_seconds": r.makespan + optimizer,
        "bubble_rate": r.compute.bubble_rate,
        "stage_bubble_rate": pipeblocks_core::step::stage_bubble(&r.compute).1,
        "shard_memory_bytes": r.shard_memory,
        "peak_param_memory_bytes": r.peak_param_memory,
        "peak_activation_bytes": r.peak_activation,
        "peak_memory_bytes": r.peak_memory,
        "comm_bytes": r.comm_bytes,
        "wire_bytes": r.wire_bytes,
        "comm_seconds": r.comm_time,
        "exposed_comm_seconds": r.exposed_comm,
    })
}

/// `simulate` with `--fsdp`/`--model`.
pub fn simulate(
    fa: &FsdpArgs,
    input: &SimInput,
    json: bool,
    output: Option<&std::path::PathBuf>,
    optimizer: f64,
) -> Result<()> {
    let setup = fa.setup(&input.cost)?;
    let unit = fa.unit()?;
    if let Some(path) = &fa.torch_csv {
        check_target("--torch-csv", path)?;
    }
    let mut tried = String::new();
    let done = match &input.from {
        Some(path) => {
            let s = read_schedule(path)?;
            input.spec.check_file(path, &s)?;
            let u = match unit {
                Unit::Fixed(u) => u,
                Unit::Auto => bail!("--unit auto needs a generated zeropp schedule, not --from"),
                Unit::Default => s.microbatches,
            };
            run(s, u, &setup)?
        }
        None => {
            let name = input
                .spec
                .schedule
                .as_deref()
                .ok_or_else(|| anyhow!("give -s NAME -p P -m M, or --from FILE"))?;
            let prm = input.spec.params(setup.costs())?;
            let g = find(name)?;
            if unit != Unit::Default && !g.uses.group {
                return Err(unit_does_not_apply(g.name));
            }
            if unit == Unit::Auto {
                let (a, trials) = zeropp_group(&prm, &setup, None)?;
                tried = trials
                    .iter()
                    .map(|t| {
                        format!(
                            "U={}: {:.2} ms, {:.2} GiB",
                            t.group,
                            t.step * 1e3,
                            t.peak_memory / GIB
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; ");
                a
            } else {
                build(name, &prm, unit, &setup)?
            }
        }
    };
    let FsdpRun {
        schedule: s,
        window: u,
        plan,
        result: r,
    } = done;
    if let Some(path) = &fa.torch_csv {
        write_atomic(
            "--torch-csv",
            path,
            torch_csv::write_with_collectives(&plan).as_bytes(),
        )?;
    }
    let text = if json {
        serde_json::to_string_pretty(&summary_json(&s, u, &setup, &r, optimizer))? + "\n"
    } else {
        let counts = plan.counts();
        let (ag, rs) = (counts.gathers, counts.reduce_scatters);
        let ms = |x: f64| format!("{:.2}", x * 1e3);
        format!(
            "schedule        {} ({}, unit {u})\nmodel           {} (microbatch size {}), FSDP d={}\ndevices/stages  {}/{}, {} microbatches\nstep            {} ms ({} ms with free communication){}\nbubble rate     {:.4}\ncollectives     {ag} all-gathers, {rs} reduce-scatters\nper device:\n  param memory peak (GiB)   {}\n  shards (GiB)              {}\n  activation peak (GiB)     {}\n  total peak (GiB)          {}\n  comm volume (GiB)         {}\n  comm time (ms)            {}\n  exposed comm (ms)         {}\n",
            s.name,
            s.placement.describe(),
            setup.model.name,
            setup.microbatch_size,
            setup.dp,
            s.devices,
            s.stages,
            s.microbatches,
            ms(r.makespan),
            ms(r.compute_only_makespan),
            if optimizer > 0.0 {
                format!(
                    "; period {} ms with the optimizer",
                    ms(r.makespan + optimizer)
                )
            } else {
                String::new()
            },
            r.compute.bubble_rate,
            list(&r.peak_param_memory, gib),
            list(&r.shard_memory, gib),
            list(&r.peak_activation, gib),
            list(&r.peak_memory, gib),
            list(&r.comm_bytes, gib),
            list(&r.comm_time, ms),
            list(&r.exposed_comm, ms),
        ) + &if tried.is_empty() {
            String::new()
        } else {
            format!("unit auto tried {tried} (budget {} GiB)\n", gib(setup.device.memory))
        }
    };
    write_output(output, &text)
}

/// `compare` with `--fsdp`/`--model`: every applicable schedule under the same setup.
pub fn compare(
    fa: &FsdpArgs,
    cost: &CostArg,
    prm: &Params,
    json: bool,
    optimizer: f64,
) -> Result<()> {
    fa.refuse_torch_csv("compare")?;
    let setup = fa.setup(cost)?;
    let unit = fa.unit()?;
    let mut rows = Vec::new();
    for g in registry() {
        rows.push((g.name, build(g.name, prm, unit, &setup)));
    }
    let text = if json {
        let ok: Vec<_> = rows
            .iter()
            .filter_map(|(_, r)| r.as_ref().ok())
            .map(|x| summary_json(&x.schedule, x.window, &setup, &x.result, optimizer))
            .collect();
        serde_json::to_string_pretty(&ok)? + "\n"
    } else {
        let max = |v: &[f64]| v.iter().cloned().fold(0.0, f64::max);
        let mut t = format!(
            "p={} m={} model {} (microbatch size {}), FSDP d={}, {:.0} GB/s\n{:<18} {:>5} {:>10} {:>10} {:>7} {:>10} {:>10} {:>10} {:>11}\n",
            prm.devices(),
            prm.microbatches(),
            setup.model.name,
            setup.microbatch_size,
            setup.dp,
            setup.device.bandwidth / 1e9,
            "schedule",
            "unit",
            "step(ms)",
            "free(ms)",
            "bubble",
            "peak(GiB)",
            "param(GiB)",
            "comm(GiB)",
            "exposed(ms)"
        );
        for (name, row) in &rows {
            match row {
                Ok(FsdpRun {
                    window: u,
                    result: r,
                    ..
                }) => t.push_str(&format!(
                    "{:<18} {:>5} {:>10.2} {:>10.2} {:>7.4} {:>10.2} {:>10.2} {:>10.2} {:>11.2}\n",
                    name,
                    u,
                    r.makespan * 1e3,
                    r.compute_only_makespan * 1e3,
                    r.compute.bubble_rate,
                    r.max_peak_memory() / GIB,
                    max(&r.peak_param_memory) / GIB,
                    max(&r.comm_bytes) / GIB,
                    r.max_exposed_comm() * 1e3
                )),
                Err(e) => t.push_str(&format!(
                    "{name:<18} not applicable: {}\n",
                    crate::common::one_line(e)
                )),
            }
        }
        t
    };
    write_stdout(&text)
}
