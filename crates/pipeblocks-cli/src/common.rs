//! Helpers shared by the subcommands: input, output, errors.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use pipeblocks_core::generators::{generate, MemoryBudget, Params};
use pipeblocks_core::{Costs, Schedule, SimConfig};

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

/// The error and its causes on one line.
pub fn one_line(e: &anyhow::Error) -> String {
    let parts: Vec<String> = e.chain().map(|c| c.to_string()).collect();
    parts.join(": ").replace('\n', " ")
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

/// The `--cost` option.
#[derive(Args, Debug, Clone)]
pub struct CostArg {
    /// Cost of one pass of any stage and p2p latency: `f=1,b=1,w=1,c=0` (bw defaults to b+w).
    #[arg(long = "cost", default_value = "f=1,b=1,w=1,c=0")]
    pub cost: String,
}

impl CostArg {
    /// Parsed costs.
    pub fn costs(&self) -> Result<Costs> {
        Ok(Costs::parse(&self.cost)?)
    }
}

impl ScheduleSpec {
    /// Generator parameters from the flags; `-p` and `-m` are required.
    pub fn params(&self, costs: Costs) -> Result<Params> {
        let p = self
            .devices
            .ok_or_else(|| anyhow::anyhow!("missing -p P (number of devices)"))?;
        let m = self
            .microbatches
            .ok_or_else(|| anyhow::anyhow!("missing -m M (number of microbatches)"))?;
        let memory = self
            .memory
            .as_deref()
            .map(MemoryBudget::parse)
            .transpose()?;
        let prm = Params {
            devices: p,
            microbatches: m,
            chunks: self.chunks,
            costs,
            memory,
        };
        prm.check()?;
        Ok(prm)
    }

    /// The schedule read from `from` when given, generated from these flags otherwise.
    pub fn schedule_or_file(&self, from: Option<&Path>, costs: Costs) -> Result<Schedule> {
        match from {
            Some(path) => read_schedule(path),
            None if self.schedule.is_none() => {
                anyhow::bail!("give -s NAME -p P -m M, or --from FILE")
            }
            None => self.generate(costs),
        }
    }

    /// Generates the named schedule.
    pub fn generate(&self, costs: Costs) -> Result<Schedule> {
        let name = self
            .schedule
            .as_deref()
            .ok_or_else(|| anyhow::anyhow!("missing -s NAME (see `pipeblocks list`)"))?;
        let prm = self.params(costs)?;
        Ok(generate(name, &prm)?)
    }
}

/// What a simulating command reads: a named or stored schedule, its costs and the memory model.
#[derive(Args, Debug, Clone)]
pub struct SimInput {
    #[command(flatten)]
    pub spec: ScheduleSpec,
    /// Read the schedule from FILE (JSON or torch CSV) instead of generating it.
    #[arg(long = "from", conflicts_with = "schedule")]
    pub from: Option<PathBuf>,
    #[command(flatten)]
    pub cost: CostArg,
    /// Fraction of a stage's activation released at B (default 0).
    #[arg(long = "b-release", default_value_t = 0.0)]
    pub b_release: f64,
}

impl SimInput {
    /// The schedule (read or generated) and the simulator configuration for it.
    pub fn load(&self) -> Result<(Schedule, SimConfig)> {
        let costs = self.cost.costs()?;
        let s = self.spec.schedule_or_file(self.from.as_deref(), costs)?;
        let cfg = SimConfig {
            costs,
            b_release: self.b_release,
            ..Default::default()
        };
        Ok((s, cfg))
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
