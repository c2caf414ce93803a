//! Helpers shared by the subcommands: input, output, errors.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use pipeblocks_core::error::{Fix, Param};
use pipeblocks_core::model::{DeviceSpec, ModelSpec};
use pipeblocks_core::{generate, Budget, Costs, Params, Schedule, StageCosts};

/// A failure while running (not bad input): exits with code 1.
#[derive(Debug)]
pub struct RuntimeFailure(pub String);

impl std::fmt::Display for RuntimeFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RuntimeFailure {}

/// Exit code for an error: 1 for runtime failures, 2 for everything else (bad input).
pub fn exit_code(e: &anyhow::Error) -> u8 {
    if e.downcast_ref::<RuntimeFailure>().is_some() {
        1
    } else {
        2
    }
}

/// The error and its causes on one line, with the flag that fixes it when the engine names one.
pub fn one_line(e: &anyhow::Error) -> String {
    let parts: Vec<String> = e.chain().map(|c| c.to_string()).collect();
    let mut line = parts.join(": ").replace('\n', " ");
    if let Some(fix) = e.chain().find_map(suggestion) {
        line.push_str(&match fix.value {
            Some(v) => format!(" ({} {v})", flag(fix.param)),
            None => format!(" ({})", flag(fix.param)),
        });
    }
    line
}

/// The fix an engine error inside `e` suggests.
fn suggestion(e: &(dyn std::error::Error + 'static)) -> Option<Fix> {
    e.downcast_ref::<pipeblocks_core::Error>()?.suggestion()
}

/// The command-line flag of an engine parameter.
pub fn flag(p: Param) -> &'static str {
    match p {
        Param::Devices => "-p",
        Param::Microbatches => "-m",
        Param::Chunks => "--chunks",
        Param::Budget => "--memory",
        Param::Group => "--unit",
        Param::Costs => "--cost",
        Param::StageCosts => "--stage-costs",
        Param::BRelease => "--b-release",
        Param::Model => "--model",
        Param::MicrobatchSize => "--microbatch-size",
        Param::Replicas => "--fsdp",
    }
}

/// Options that name a generated schedule.
#[derive(Args, Debug, Clone)]
pub struct ScheduleSpec {
    /// Schedule name (see `pipeblocks list`).
    #[arg(short = 's', long = "schedule")]
    pub schedule: Option<String>,
    /// Number of devices p.
    #[arg(short = 'p', long = "devices")]
    pub devices: Option<u32>,
    /// Number of microbatches m.
    #[arg(short = 'm', long = "microbatches")]
    pub microbatches: Option<u32>,
    /// Chunks per device for looped schedules (default 2).
    #[arg(long = "chunks")]
    pub chunks: Option<u32>,
    /// Memory budget per device for memory-aware schedules: units (`4`) or a multiple of
    /// 1F1B's peak (`0.5x`).
    #[arg(long = "memory", allow_hyphen_values = true)]
    pub memory: Option<String>,
}

/// The uniform shorthand's default, as the help and the headers print it.
pub const DEFAULT_COST: &str = "f=1,b=1,w=1,c=0";

/// Where the stages' costs come from: `--cost`, `--stage-costs FILE` or `--model`.
#[derive(Args, Debug, Clone, Default)]
pub struct CostArg {
    /// Cost of one pass of any stage and p2p latency: `f=1,b=1,w=1,c=0` (bw defaults to b+w).
    #[arg(long = "cost", conflicts_with_all = ["stage_costs", "model"])]
    pub cost: Option<String>,
    /// Per-stage costs from a `pipeblocks-stage-costs` JSON file (see docs/costs.md).
    #[arg(long = "stage-costs", value_name = "FILE", conflicts_with = "model")]
    pub stage_costs: Option<PathBuf>,
    /// Fraction of a stage's activation released at B (default 0, or the stage-cost file's).
    #[arg(long = "b-release")]
    pub b_release: Option<f64>,
    /// Model: a preset (gpt-1.3b, gpt-2.7b, gpt-7b, gpt-13b, llama-7b, llama-13b) or
    /// layers=..,hidden=..,heads=..,seq=..,vocab=.. (optional ffn=.., gated=1); costs in seconds.
    #[arg(long = "model")]
    pub model: Option<String>,
    /// Samples per microbatch (with --model).
    #[arg(long = "microbatch-size", default_value_t = 1)]
    pub microbatch_size: u32,
    /// Device (with --model): flops=989e12,eff=0.5,memory=80GiB,bandwidth=50GB/s (p2p=..,
    /// latency=..).
    #[arg(long = "device")]
    pub device: Option<String>,
}

impl CostArg {
    /// The stages' costs these options describe.
    pub fn costs(&self) -> Result<StageCosts> {
        let costs = match (&self.stage_costs, &self.model) {
            (Some(path), _) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                pipeblocks_core::format::stage_costs::read(&text)
                    .with_context(|| format!("{}", path.display()))?
            }
            (None, Some(_)) => {
                let (model, device) = self
                    .model_spec()?
                    .ok_or_else(|| anyhow::anyhow!("--model is missing"))?;
                StageCosts::model(model, self.microbatch_size, device)
            }
            (None, None) => {
                StageCosts::uniform(Costs::parse(self.cost.as_deref().unwrap_or(DEFAULT_COST))?)
            }
        };
        if self.device.is_some() && self.model.is_none() {
            anyhow::bail!("--device describes the accelerator of a --model; give --model too");
        }
        Ok(match self.b_release {
            Some(r) => costs.with_b_release(r)?,
            None => costs,
        })
    }

    /// The model and device of `--model` and `--device`, when a model is given.
    pub fn model_spec(&self) -> Result<Option<(ModelSpec, DeviceSpec)>> {
        let Some(model) = &self.model else {
            return Ok(None);
        };
        if self.microbatch_size == 0 {
            anyhow::bail!("--microbatch-size 0: use at least 1 sample per microbatch");
        }
        let device = match &self.device {
            Some(d) => DeviceSpec::parse(d)?,
            None => DeviceSpec::default(),
        };
        Ok(Some((ModelSpec::parse(model)?, device)))
    }

    /// The costs in words, for headers.
    pub fn describe(&self) -> String {
        match (&self.stage_costs, &self.model) {
            (Some(p), _) => format!("stage costs {}", p.display()),
            (None, Some(m)) => format!("model {m}"),
            (None, None) => format!("cost {}", self.cost.as_deref().unwrap_or(DEFAULT_COST)),
        }
    }
}

impl ScheduleSpec {
    /// Generator parameters from the flags; `-p` and `-m` are required.
    pub fn params(&self, costs: StageCosts) -> Result<Params> {
        let p = self
            .devices
            .ok_or_else(|| anyhow::anyhow!("missing -p P (number of devices)"))?;
        let m = self
            .microbatches
            .ok_or_else(|| anyhow::anyhow!("missing -m M (number of microbatches)"))?;
        let mut prm = Params::new(p, m)?.with_costs(costs);
        if let Some(v) = self.chunks {
            prm = prm.with_chunks(v)?;
        }
        if let Some(b) = self.memory.as_deref() {
            prm = prm.with_budget(Budget::parse(b)?);
        }
        Ok(prm)
    }

    /// The schedule read from `from` when given, generated from these flags otherwise.
    pub fn schedule_or_file(&self, from: Option<&Path>, costs: &StageCosts) -> Result<Schedule> {
        match from {
            Some(path) => read_schedule(path),
            None if self.schedule.is_none() => {
                anyhow::bail!("give -s NAME -p P -m M, or --from FILE")
            }
            None => self.generate(costs),
        }
    }

    /// Generates the named schedule.
    pub fn generate(&self, costs: &StageCosts) -> Result<Schedule> {
        let name = self
            .schedule
            .as_deref()
            .ok_or_else(|| anyhow::anyhow!("missing -s NAME (see `pipeblocks list`)"))?;
        let prm = self.params(costs.clone())?;
        Ok(generate(name, &prm)?)
    }
}

/// What a simulating command reads: a named or stored schedule and its costs.
#[derive(Args, Debug, Clone)]
pub struct SimInput {
    #[command(flatten)]
    pub spec: ScheduleSpec,
    /// Read the schedule from FILE (JSON or torch CSV) instead of generating it.
    #[arg(long = "from", conflicts_with = "schedule")]
    pub from: Option<PathBuf>,
    #[command(flatten)]
    pub cost: CostArg,
}

impl SimInput {
    /// The schedule (read or generated) and the costs to simulate it under.
    pub fn load(&self) -> Result<(Schedule, StageCosts)> {
        let costs = self.cost.costs()?;
        let s = self.spec.schedule_or_file(self.from.as_deref(), &costs)?;
        Ok((s, costs))
    }
}

/// Reads a schedule file (JSON or torch CSV) without validating it.
pub fn read_schedule(path: &Path) -> Result<Schedule> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    pipeblocks_core::format::read_any(&text, &name).with_context(|| format!("{}", path.display()))
}

/// Writes `text` to `path` atomically (temporary file, then rename), or to stdout when `None`.
pub fn write_output(path: Option<&PathBuf>, text: &str) -> Result<()> {
    match path {
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())
                .or_else(|e| {
                    if e.kind() == std::io::ErrorKind::BrokenPipe {
                        Ok(())
                    } else {
                        Err(e)
                    }
                })
                .context("cannot write to standard output")
        }
        Some(p) => write_atomic(p, text.as_bytes()),
    }
}

/// Writes bytes to a file atomically: a crash never leaves a half-written file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| anyhow::anyhow!("{} is not a file name", path.display()))?;
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot write {}", path.display())
    })
}
