//! Helpers shared by the subcommands: input, output, errors.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use pipeblocks_core::error::{Fix, Param};
use pipeblocks_core::model::{DeviceSpec, ModelSpec};
use pipeblocks_core::registry::{find, registry, Uses};
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
/// A cause whose text is already part of the line (an error that repeats its source's message)
/// is not repeated.
pub fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string().replace(['\n', '\r'], " ");
        let text = text.trim();
        if text.is_empty() || line.contains(text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(text);
    }
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
        Param::Iterations => "--iterations",
    }
}

/// A command-line value one of our parsers refuses; `main` prints its text as the whole error
/// line (it names the flag, the value and what is expected).
#[derive(Debug)]
pub struct ArgError(pub String);

impl std::fmt::Display for ArgError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ArgError {}

/// A parser of whole numbers for `flag` (`what` says what it counts, `least` is the smallest
/// sensible value, `most` a documented limit if any): negative numbers, fractions and words get
/// one clear line instead of clap's generic ones. Values below `least` pass, so that the engine
/// can say why they cannot work.
pub fn whole<T>(
    flag: &'static str,
    what: &'static str,
    least: u64,
    most: Option<u64>,
) -> impl Fn(&str) -> std::result::Result<T, ArgError> + Clone + Send + Sync + 'static
where
    T: TryFrom<u64> + Clone + Send + Sync + 'static,
{
    move |s: &str| {
        let t = s.trim();
        let t = t.strip_prefix('+').unwrap_or(t);
        let range = match most {
            Some(m) => format!("from {least} to {m}"),
            None => format!("from {least} up"),
        };
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ArgError(format!(
                "{flag} {s}: {what} must be a whole number {range}"
            )));
        }
        let too_large = || match most {
            Some(m) => ArgError(format!("{flag} {s}: {what} is at most {m}")),
            None => ArgError(format!("{flag} {s}: too large for {what}")),
        };
        let v: u64 = t.parse().map_err(|_| too_large())?;
        if most.is_some_and(|m| v > m) {
            return Err(too_large());
        }
        T::try_from(v).map_err(|_| too_large())
    }
}

/// A parser of real numbers for `flag` (ranges are checked where the value is used).
pub fn real(
    flag: &'static str,
    what: &'static str,
) -> impl Fn(&str) -> std::result::Result<f64, ArgError> + Clone + Send + Sync + 'static {
    move |s: &str| {
        s.trim()
            .parse::<f64>()
            .map_err(|_| ArgError(format!("{flag} {s}: {what} must be a number")))
    }
}

/// When the optimizer runs (`--optimizer`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptimizerArg {
    /// After a global synchronisation: all devices start the next iteration together.
    Sync,
    /// Each device as soon as its own gradients are synchronised (optimizer post-validation).
    Overlap,
}

/// The training step around a flush: optimizer and data-parallel gradient sync (see
/// docs/step.md).
#[derive(Args, Debug, Clone, Default)]
pub struct StepArgs {
    /// Optimizer between iterations: `sync` (all devices wait for each other) or `overlap`
    /// (each device on its own); reports the steady-state `period`.
    #[arg(long = "optimizer", value_enum)]
    pub optimizer: Option<OptimizerArg>,
    /// Time of the optimizer step on each device (default: the stage-cost file's `optimizer`
    /// times, else 0).
    #[arg(long = "optimizer-cost", value_name = "T", allow_negative_numbers = true,
          value_parser = real("--optimizer-cost", "the optimizer's time"))]
    pub optimizer_cost: Option<f64>,
    /// Time of the data-parallel gradient all-reduce of one device's share of the model (an
    /// even split); default 0 (no data parallelism).
    #[arg(long = "grad-sync", value_name = "T", allow_negative_numbers = true,
          value_parser = real("--grad-sync", "the gradient all-reduce's time"))]
    pub grad_sync: Option<f64>,
    /// Start each stage's gradient all-reduce after its last W, overlapping the device's
    /// remaining backward passes (default: after the device's last pass).
    #[arg(long = "grad-sync-overlap")]
    pub grad_sync_overlap: bool,
    /// Iterations simulated back to back with `--optimizer overlap` (default 6).
    #[arg(long = "iterations", allow_negative_numbers = true,
          value_parser = whole::<u32>("--iterations", "the number of iterations", 2, Some(pipeblocks_core::step::MAX_ITERATIONS as u64)))]
    pub iterations: Option<u32>,
}

impl StepArgs {
    /// Whether any step option is given.
    pub fn given(&self) -> bool {
        self.optimizer.is_some()
            || self.optimizer_cost.is_some()
            || self.grad_sync.is_some()
            || self.grad_sync_overlap
            || self.iterations.is_some()
    }

    /// With `--fsdp`/`--model`, whose simulation models the gradient reduce-scatters itself: the
    /// synchronous optimizer's time (seconds, 0 without `--optimizer-cost`); the options that
    /// path does not model are refused.
    pub fn fsdp_optimizer(&self) -> Result<f64> {
        if self.optimizer == Some(OptimizerArg::Overlap) || self.iterations.is_some() {
            bail!("--optimizer overlap and --iterations are not modelled with --fsdp or --model (their step is one flush with its collectives); use --optimizer sync, or simulate with --cost or --stage-costs");
        }
        if self.grad_sync.is_some() || self.grad_sync_overlap {
            bail!("--grad-sync does not apply with --fsdp or --model: the gradient reduce-scatters are simulated from the model; drop it");
        }
        Ok(self.spec()?.optimizer.unwrap_or(0.0))
    }

    /// The step these options describe; the stage costs' optimizer times apply when
    /// `--optimizer-cost` is not given.
    pub fn spec(&self) -> Result<pipeblocks_core::step::StepSpec> {
        use pipeblocks_core::step::{OptimizerMode, StepSpec};
        let time = |flag: &str, v: Option<f64>| -> Result<Option<f64>> {
            match v {
                Some(x) if !x.is_finite() || !(0.0..=pipeblocks_core::params::limits::VALUE).contains(&x) => bail!(
                    "{flag} {x}: a time must be finite, at least 0 and at most {:e}; for example {flag} 0.5",
                    pipeblocks_core::params::limits::VALUE
                ),
                v => Ok(v),
            }
        };
        let mode = match self.optimizer {
            Some(OptimizerArg::Overlap) => OptimizerMode::Overlap,
            _ => OptimizerMode::Sync,
        };
        if self.iterations.is_some() && mode != OptimizerMode::Overlap {
            bail!("--iterations applies to --optimizer overlap (with a synchronous optimizer every iteration is the same); add --optimizer overlap or drop --iterations");
        }
        if self.grad_sync_overlap && self.grad_sync.is_none() {
            bail!("--grad-sync-overlap needs the all-reduce's time: add --grad-sync T");
        }
        Ok(StepSpec {
            mode,
            optimizer: time("--optimizer-cost", self.optimizer_cost)?,
            grad_sync: time("--grad-sync", self.grad_sync)?.unwrap_or(0.0),
            overlap_grad_sync: self.grad_sync_overlap,
            iterations: self
                .iterations
                .unwrap_or(pipeblocks_core::step::DEFAULT_ITERATIONS),
        })
    }
}

/// Options that name a generated schedule.
#[derive(Args, Debug, Clone)]
pub struct ScheduleSpec {
    /// Schedule name (see `pipeblocks list`).
    #[arg(short = 's', long = "schedule")]
    pub schedule: Option<String>,
    /// Number of devices p.
    #[arg(short = 'p', long = "devices", allow_negative_numbers = true,
          value_parser = whole::<u32>("-p", "the number of devices", 1, None))]
    pub devices: Option<u32>,
    /// Number of microbatches m.
    #[arg(short = 'm', long = "microbatches", allow_negative_numbers = true,
          value_parser = whole::<u32>("-m", "the number of microbatches", 1, None))]
    pub microbatches: Option<u32>,
    /// Chunks per device for looped schedules (interleaved-1f1b, bfs, zeropp; default 2).
    #[arg(long = "chunks", allow_negative_numbers = true,
          value_parser = whole::<u32>("--chunks", "the number of chunks per device", 1, None))]
    pub chunks: Option<u32>,
    /// Memory budget per device for memory-aware schedules (auto, zeropp): units (`4`) or a
    /// multiple of 1F1B's peak (`0.5x`).
    #[arg(long = "memory", allow_hyphen_values = true)]
    pub memory: Option<String>,
    /// What `auto` minimises: set from the step options (`--optimizer overlap`: the longest
    /// device span), not a flag of its own.
    #[arg(skip)]
    pub objective: pipeblocks_core::Objective,
}

/// The uniform shorthand's default, as the help and the headers print it.
pub const DEFAULT_COST: &str = "f=1,b=1,w=1,c=0";

/// Where the stages' costs come from: `--cost`, `--stage-costs FILE` or `--model`.
#[derive(Args, Debug, Clone, Default)]
pub struct CostArg {
    /// Cost of one pass of any stage and p2p latency: `f=1,b=1,w=1,c=0` (bw defaults to b+w;
    /// `overlap=0.5`: an overlapped forward/backward pair costs max(F, B) + 0.5·min(F, B),
    /// default 1, nothing hidden; `r=`, `keep=`: a recompute pass's time, default f, and the
    /// activation share a recomputed microbatch keeps, default 2/34; `offload=`: the time to
    /// move a stage's activation over the host link one way, default none: nothing is
    /// offloaded).
    #[arg(long = "cost", conflicts_with_all = ["stage_costs", "model"])]
    pub cost: Option<String>,
    /// What an overlapped forward/backward pair (dualpipe, dualpipev) costs beyond its longer
    /// half's computation, as a fraction of the shorter's: 1 (the default) when the two
    /// computations share the device, lower where they overlap; the communication inside the
    /// passes (a --model's expert all-to-all) is hidden in any case.
    #[arg(long = "overlap", allow_negative_numbers = true,
          value_parser = real("--overlap", "the fraction of the shorter half a pair adds"))]
    pub overlap: Option<f64>,
    /// Per-stage costs from a `pipeblocks-stage-costs` JSON file (see docs/costs.md).
    #[arg(long = "stage-costs", value_name = "FILE", conflicts_with = "model")]
    pub stage_costs: Option<PathBuf>,
    /// Fraction of a stage's activation released at B (default 0, or the stage-cost file's).
    #[arg(long = "b-release", allow_negative_numbers = true,
          value_parser = real("--b-release", "the fraction released at B"))]
    pub b_release: Option<f64>,
    /// Model: a preset (gpt-*, llama-*, llama2-*, llama3-*, gpt3-*; MoE: mixtral-8x7b,
    /// deepseek-v3) or layers=..,hidden=..,heads=..,seq=..,vocab=.. (optional ffn=.., gated=1;
    /// experts: experts=..,topk=..,expert_ffn=..,shared=..,ep=..), a preset takes overrides
    /// (mixtral-8x7b,ep=16); costs in seconds.
    #[arg(long = "model")]
    pub model: Option<String>,
    /// Samples per microbatch (with --model).
    #[arg(long = "microbatch-size", default_value_t = 1, allow_negative_numbers = true,
          value_parser = whole::<u32>("--microbatch-size", "the number of samples per microbatch", 1, None))]
    pub microbatch_size: u32,
    /// Device (with --model): a preset (h100, h200, a100-80gb, ...) or
    /// flops=989e12,eff=0.5,memory=80GiB,bandwidth=50GB/s (p2p=.., latency=.., host=50GB/s:
    /// the link to host memory activations are offloaded over).
    #[arg(long = "device")]
    pub device: Option<String>,
}

impl CostArg {
    /// The stages' costs these options describe.
    pub fn costs(&self) -> Result<StageCosts> {
        let costs = match (&self.stage_costs, &self.model) {
            (Some(path), _) => {
                let text = read_text(path)?;
                pipeblocks_core::format::stage_costs::read(&text)
                    .with_context(|| format!("{}", path.display()))?
            }
            (None, Some(_)) => {
                let (model, device) = self
                    .model_spec()?
                    .ok_or_else(|| anyhow!("--model is missing"))?;
                StageCosts::model(model, self.microbatch_size, device)
            }
            (None, None) => {
                let text = self.cost.as_deref().unwrap_or(DEFAULT_COST);
                if text.split(',').all(|part| part.trim().is_empty()) {
                    bail!(
                        "--cost \"{text}\" sets no cost: give at least one of f, b, w, bw, c, for example --cost {DEFAULT_COST}"
                    );
                }
                StageCosts::uniform(Costs::parse(text)?)
            }
        };
        if self.device.is_some() && self.model.is_none() {
            bail!("--device describes the accelerator of a --model; give --model too");
        }
        let costs = match self.b_release {
            Some(r) => costs.with_b_release(r)?,
            None => costs,
        };
        Ok(match self.overlap {
            Some(o) => costs.with_overlap(o)?,
            None => costs,
        })
    }

    /// The model and device of `--model` and `--device`, when a model is given.
    pub fn model_spec(&self) -> Result<Option<(ModelSpec, DeviceSpec)>> {
        let Some(model) = &self.model else {
            return Ok(None);
        };
        if self.microbatch_size == 0 {
            bail!("--microbatch-size 0: use at least 1 sample per microbatch");
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

/// The schedules whose generator reads an option, in words: `a, b and c`.
fn schedules_using(reads: fn(&Uses) -> bool) -> String {
    let names: Vec<&str> = registry()
        .iter()
        .filter(|g| reads(&g.uses))
        .map(|g| g.name)
        .collect();
    match names.split_last() {
        None => "no schedule".into(),
        Some((last, [])) => (*last).to_string(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
    }
}

/// The error for `flag` given with a schedule that does not read it: which schedules do.
pub fn does_not_apply(
    flag: &str,
    schedule: &str,
    role: &str,
    reads: fn(&Uses) -> bool,
) -> anyhow::Error {
    anyhow!(
        "{flag} does not apply to {schedule}; it sets {role} of {}",
        schedules_using(reads)
    )
}

/// The error for `--unit` on a schedule without groups.
pub fn unit_does_not_apply(schedule: &str) -> anyhow::Error {
    does_not_apply("--unit", schedule, "the microbatches per group", |u| {
        u.group
    })
}

impl ScheduleSpec {
    /// Generator parameters from the flags; `-p` and `-m` are required. With a schedule name,
    /// options that schedule does not read are refused.
    pub fn params(&self, costs: StageCosts) -> Result<Params> {
        if let Some(name) = self.schedule.as_deref() {
            self.check_uses(name)?;
        }
        let p = self
            .devices
            .ok_or_else(|| anyhow!("missing -p P (number of devices)"))?;
        let m = self
            .microbatches
            .ok_or_else(|| anyhow!("missing -m M (number of microbatches)"))?;
        let mut prm = Params::new(p, m)?.with_costs(costs);
        if let Some(v) = self.chunks {
            prm = prm.with_chunks(v)?;
        }
        if let Some(b) = self.memory.as_deref() {
            prm = prm.with_budget(Budget::parse(b)?);
        }
        Ok(prm.with_objective(self.objective))
    }

    /// Refuses `--chunks` and `--memory` when schedule `name` does not read them (they would
    /// be silently ignored).
    pub fn check_uses(&self, name: &str) -> Result<()> {
        let g = find(name)?;
        if self.chunks.is_some() && !g.uses.chunks {
            return Err(does_not_apply(
                "--chunks",
                g.name,
                "the chunks per device",
                |u| u.chunks,
            ));
        }
        if self.memory.is_some() && !g.uses.budget {
            return Err(does_not_apply(
                "--memory",
                g.name,
                "the memory budget",
                |u| u.budget,
            ));
        }
        Ok(())
    }

    /// Refuses the options that only shape generation for a schedule that is not generated
    /// (`source` says where it comes from, e.g. `a schedule read with --from`).
    pub fn refuse_generation_options(&self, source: &str) -> Result<()> {
        for (flag, given) in [
            ("--chunks", self.chunks.is_some()),
            ("--memory", self.memory.is_some()),
        ] {
            if given {
                bail!("{flag} does not apply to {source}: it only shapes generated schedules; drop {flag}");
            }
        }
        Ok(())
    }

    /// Checks the flags against a schedule read from `path`: no generation options, and `-p`
    /// and `-m`, when given, match the file.
    pub fn check_file(&self, path: &Path, s: &Schedule) -> Result<()> {
        self.refuse_generation_options("a schedule read with --from")?;
        let shown = path.display();
        if let Some(p) = self.devices.filter(|&p| p != s.devices) {
            bail!(
                "-p {p} does not match {shown}, a schedule for {} devices; drop -p (the file fixes it)",
                s.devices
            );
        }
        if let Some(m) = self.microbatches.filter(|&m| m != s.microbatches) {
            bail!(
                "-m {m} does not match {shown}, a schedule of {} microbatches; drop -m (the file fixes it)",
                s.microbatches
            );
        }
        Ok(())
    }

    /// The schedule read from `from` when given, generated from these flags otherwise.
    pub fn schedule_or_file(&self, from: Option<&Path>, costs: &StageCosts) -> Result<Schedule> {
        match from {
            Some(path) => {
                let s = read_schedule(path)?;
                self.check_file(path, &s)?;
                Ok(s)
            }
            None if self.schedule.is_none() => {
                bail!("give -s NAME -p P -m M, or --from FILE")
            }
            None => self.generate(costs),
        }
    }

    /// Generates the named schedule.
    pub fn generate(&self, costs: &StageCosts) -> Result<Schedule> {
        self.generate_grouped(costs, None)
    }

    /// Generates the named schedule, with ZeroPP groups of `group` microbatches when given
    /// (refused for schedules without groups).
    pub fn generate_grouped(&self, costs: &StageCosts, group: Option<u32>) -> Result<Schedule> {
        let name = self
            .schedule
            .as_deref()
            .ok_or_else(|| anyhow!("missing -s NAME (see `pipeblocks list`)"))?;
        let mut prm = self.params(costs.clone())?;
        if let Some(u) = group {
            let g = find(name)?;
            if !g.uses.group {
                return Err(unit_does_not_apply(g.name));
            }
            prm = prm.with_group(u)?;
        }
        // A search (auto, zb-v) can take seconds at large sizes, more below 1F1B's memory
        // where it also recomputes and offloads: a spinner on standard error (hidden when it is
        // not a terminal) says it is working.
        let spinner = indicatif::ProgressBar::new_spinner();
        spinner.set_style(
            indicatif::ProgressStyle::with_template("{spinner} generating {msg}  {elapsed}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        spinner.set_message(name.to_string());
        spinner.enable_steady_tick(std::time::Duration::from_millis(200));
        let out = generate(name, &prm);
        spinner.finish_and_clear();
        Ok(out?)
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
        self.load_grouped(None)
    }

    /// [`SimInput::load`] with ZeroPP groups of `group` microbatches (generated schedules
    /// only).
    pub fn load_grouped(&self, group: Option<u32>) -> Result<(Schedule, StageCosts)> {
        let costs = self.cost.costs()?;
        let s = match (&self.from, group) {
            (Some(_), Some(_)) => bail!(
                "--unit does not apply to a schedule read with --from (its order is fixed) unless --fsdp or --model simulates its gathers; drop --unit"
            ),
            (Some(path), None) => self.spec.schedule_or_file(Some(path), &costs)?,
            (None, _) if self.spec.schedule.is_none() => {
                bail!("give -s NAME -p P -m M, or --from FILE")
            }
            (None, g) => self.spec.generate_grouped(&costs, g)?,
        };
        Ok((s, costs))
    }
}

/// Largest input file read (schedules, blocks, stage costs).
pub const MAX_INPUT_BYTES: u64 = 1 << 30;

/// What a file system entry that is not a regular file is, in words.
fn kind_of(t: std::fs::FileType) -> &'static str {
    if t.is_dir() {
        return "a directory";
    }
    if t.is_symlink() {
        return "a symbolic link";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_char_device() || t.is_block_device() {
            return "a device";
        }
        if t.is_fifo() {
            return "a named pipe";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    "not a regular file"
}

/// Reads a text file given on the command line: UTF-8, a leading byte order mark dropped, at
/// most [`MAX_INPUT_BYTES`]; directories and devices are refused (a device such as /dev/zero
/// would never end). Named pipes are read (`--from /dev/stdin`).
pub fn read_text(path: &Path) -> Result<String> {
    let shown = path.display();
    let meta = std::fs::metadata(path).with_context(|| format!("cannot read {shown}"))?;
    let t = meta.file_type();
    let fifo = {
        #[cfg(unix)]
        {
            use std::os::unix::fs::FileTypeExt;
            t.is_fifo()
        }
        #[cfg(not(unix))]
        {
            false
        }
    };
    if !t.is_file() && !fifo {
        bail!(
            "cannot read {shown}: it is {}; give a schedule, block or cost file",
            kind_of(t)
        );
    }
    let file = File::open(path).with_context(|| format!("cannot read {shown}"))?;
    let mut bytes = Vec::new();
    file.take(MAX_INPUT_BYTES + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {shown}"))?;
    if bytes.len() as u64 > MAX_INPUT_BYTES {
        bail!(
            "{shown} is larger than {} MiB, more than any input pipeblocks reads; check the file name",
            MAX_INPUT_BYTES >> 20
        );
    }
    if bytes.starts_with(&[0xFF, 0xFE]) || bytes.starts_with(&[0xFE, 0xFF]) {
        bail!("{shown} is UTF-16 text; save it as UTF-8");
    }
    let body = bytes
        .strip_prefix(b"\xEF\xBB\xBF".as_slice())
        .unwrap_or(&bytes);
    match std::str::from_utf8(body) {
        Ok(text) => Ok(text.to_string()),
        Err(e) => bail!(
            "{shown} is not UTF-8 text (byte {} is not valid UTF-8); give a text file saved as UTF-8",
            e.valid_up_to() + (bytes.len() - body.len())
        ),
    }
}

/// Reads a schedule file (JSON or torch CSV) without validating it.
pub fn read_schedule(path: &Path) -> Result<Schedule> {
    let text = read_text(path)?;
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    pipeblocks_core::format::read_any(&text, &name).with_context(|| format!("{}", path.display()))
}

/// Whether an output path means standard output (`-o -`).
pub fn is_stdout(path: &Path) -> bool {
    path.as_os_str() == "-"
}

/// The directory a file path is in (`.` for a bare name).
fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Checks that `path`, given with `flag`, can be written as a regular file: a file name in an
/// existing directory, and not an existing directory, device, pipe or symbolic link (writing
/// would replace it with a regular file). Nothing is created.
pub fn check_target(flag: &str, path: &Path) -> Result<()> {
    let shown = path.display();
    if is_stdout(path) {
        bail!("{flag} -: only -o writes to standard output; give {flag} a file name");
    }
    let text = path.as_os_str().to_string_lossy();
    if text.is_empty() {
        bail!("{flag} is empty; give a file name");
    }
    if text.ends_with('/') || path.file_name().is_none() {
        bail!("{flag} {shown} names a directory; give a file name");
    }
    let dir = parent_dir(path);
    match std::fs::metadata(&dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => bail!(
            "{flag} {shown}: {} is not a directory; give a file in an existing directory",
            dir.display()
        ),
        Err(_) => bail!(
            "{flag} {shown}: the directory {} does not exist; create it first or write elsewhere",
            dir.display()
        ),
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_file() => Ok(()),
        Ok(m) => {
            let kind = kind_of(m.file_type());
            let hint = if flag == "-o" && kind == "a device" {
                " (to discard the output, leave out -o and redirect it)"
            } else {
                ""
            };
            bail!(
                "{flag} {shown} is {kind}, not a regular file; refusing to replace it: give the path of a regular or new file{hint}"
            )
        }
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => bail!("{flag} {shown}: cannot check the path ({e})"),
    }
}

/// Checks, before a long run, that a file can be created next to `path` (write permission, a
/// writable file system): creates and removes an empty probe file.
pub fn check_writable(flag: &str, path: &Path) -> Result<()> {
    check_target(flag, path)?;
    let dir = parent_dir(path);
    let (probe, file) = create_temp(&dir, path, "probe").map_err(|e| {
        anyhow!(
            "{flag} {}: cannot create files in {} ({e}); choose a writable directory",
            path.display(),
            dir.display()
        )
    })?;
    drop(file);
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// Creates a new, hidden file next to `path` (`.NAME.KINDpid-n`), never following or reusing an
/// existing entry.
fn create_temp(dir: &Path, path: &Path, kind: &str) -> std::io::Result<(PathBuf, File)> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "output".into());
    let mut last = std::io::Error::new(ErrorKind::AlreadyExists, "no free temporary name");
    for n in 0..100 {
        let tmp = dir.join(format!(".{name}.{kind}{}-{n}", std::process::id()));
        match OpenOptions::new().write(true).create_new(true).open(&tmp) {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => last = e,
            Err(e) => return Err(e),
        }
    }
    Err(last)
}

/// Checks an `-o` path before the work that produces its content (see [`check_target`]);
/// nothing to check for standard output.
pub fn check_output(path: Option<&PathBuf>) -> Result<()> {
    match path {
        Some(p) if !is_stdout(p) => check_target("-o", p),
        _ => Ok(()),
    }
}

/// Writes `text` to standard output; a closed pipe (`| head`) ends the output quietly, any other
/// failure is a run failure (exit 1).
pub fn write_stdout(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(RuntimeFailure(format!("cannot write to standard output: {e}")).into()),
    }
}

/// Writes `text` to `path` atomically (temporary file, then rename), or to standard output
/// when `None` or `-`.
pub fn write_output(path: Option<&PathBuf>, text: &str) -> Result<()> {
    match path {
        Some(p) if !is_stdout(p) => write_atomic("-o", p, text.as_bytes()),
        _ => write_stdout(text),
    }
}

/// Writes bytes to the file `path` (given with `flag`) atomically: a temporary file in the same
/// directory, flushed to disk, then renamed over `path`; a crash or an error never leaves a
/// half-written file, and the temporary file is removed on every failure. Refuses targets that
/// are not regular files (see [`check_target`]). A path that cannot be created is bad input
/// (exit 2); a failure while writing is a run failure (exit 1).
pub fn write_atomic(flag: &str, path: &Path, bytes: &[u8]) -> Result<()> {
    check_target(flag, path)?;
    let shown = path.display();
    let dir = parent_dir(path);
    let (tmp, mut file) =
        create_temp(&dir, path, "tmp").with_context(|| format!("cannot write {shown}"))?;
    if let Ok(old) = std::fs::metadata(path) {
        // Keep the permissions of the file being replaced.
        let _ = file.set_permissions(old.permissions());
    }
    let written = file.write_all(bytes).and_then(|()| file.sync_all());
    drop(file);
    let written = written.and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(RuntimeFailure(format!(
            "cannot write {shown}: {e}; the file was left as it was"
        ))
        .into());
    }
    // Make the rename itself durable (best effort: not every file system syncs directories).
    if let Ok(d) = File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Every registered schedule for `prm`, with a progress bar on standard error (hidden when it
/// is not a terminal): at large sizes each schedule takes seconds.
pub fn compare_all(
    prm: &Params,
    step: Option<&pipeblocks_core::step::StepSpec>,
) -> Result<Vec<pipeblocks_core::compare::Row>> {
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} schedules  {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let rows = pipeblocks_core::compare::compare_step(prm, step, |done, all, next| {
        bar.set_length(all as u64);
        bar.set_position(done as u64);
        bar.set_message(next.to_string());
    });
    bar.finish_and_clear();
    Ok(rows?)
}
