//! Typed errors of the schedule engine.

use thiserror::Error;

use crate::ir::Pass;

/// A parameter a user sets; errors name it so that each front end can word the fix in its own
/// terms (a command-line flag, a keyword argument).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Param {
    /// The number of devices `p`.
    Devices,
    /// The number of microbatches `m`.
    Microbatches,
    /// Chunks per device of a looped placement.
    Chunks,
    /// The memory budget per device.
    Budget,
    /// Microbatches per ZeroPP group (scheduling unit).
    Group,
    /// The uniform pass costs.
    Costs,
    /// The per-stage cost table.
    StageCosts,
    /// The fraction of an activation freed by B.
    BRelease,
    /// The model's shape.
    Model,
    /// Samples per microbatch.
    MicrobatchSize,
    /// The data-parallel (FSDP) group size.
    Replicas,
    /// Training iterations simulated back to back.
    Iterations,
}

impl Param {
    /// The parameter in words, for messages without a front end.
    pub fn words(self) -> &'static str {
        match self {
            Param::Devices => "devices",
            Param::Microbatches => "microbatches",
            Param::Chunks => "chunks per device",
            Param::Budget => "memory budget",
            Param::Group => "microbatches per ZeroPP group",
            Param::Costs => "pass costs",
            Param::StageCosts => "stage costs",
            Param::BRelease => "fraction released at B",
            Param::Model => "model",
            Param::MicrobatchSize => "samples per microbatch",
            Param::Replicas => "data-parallel replicas",
            Param::Iterations => "iterations",
        }
    }
}

/// A fix an error suggests: set a parameter, to a value when one is known.
#[derive(Clone, Debug, PartialEq)]
pub struct Fix {
    /// The parameter.
    pub param: Param,
    /// The value to give it, as text (`"8"`, `"1x"`); `None`: the message says which way.
    pub value: Option<String>,
}

impl Fix {
    /// Set `param` to `value`.
    pub fn new(param: Param, value: impl Into<String>) -> Self {
        Fix {
            param,
            value: Some(value.into()),
        }
    }
    /// Change `param` as the message says.
    pub fn change(param: Param) -> Self {
        Fix { param, value: None }
    }
}

/// Everything the engine can refuse.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum Error {
    /// A count that must be at least 1 is 0.
    #[error("the number of {} is 0; use at least 1", .0.words())]
    Zero(Param),
    /// Impossible or unsupported configuration (sizes, options), with the fix when there is one.
    #[error("{why}")]
    Config {
        /// What is wrong, and how to fix it in words.
        why: String,
        /// The parameter to change, for front ends to word as their own flag.
        fix: Option<Fix>,
    },
    /// A size beyond what pipeblocks handles ([`crate::params::limits`]).
    #[error("{what} is {value}, more than the {limit} pipeblocks handles; {hint}")]
    TooLarge {
        /// What is too large, in words.
        what: String,
        /// Its value.
        value: u64,
        /// The largest accepted.
        limit: u64,
        /// How to get within it, in words.
        hint: String,
        /// The parameter to change, when a parameter sets it.
        param: Option<Param>,
    },
    /// A per-stage cost table that fits neither a schedule's stage count nor a divisor of it.
    #[error("the stage costs describe {table} stages, which a schedule of {stages} stages can use neither as they are, split evenly nor merged; give a table whose stage count divides {stages} or is a multiple of it")]
    StageCount {
        /// Stages in the table.
        table: u32,
        /// Stages of the schedule.
        stages: u32,
    },
    /// A schedule name that is not in the registry.
    #[error("unknown schedule `{name}`{}; run `pipeblocks list` for all names", suggestion.as_ref().map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default())]
    UnknownSchedule {
        /// The name given.
        name: String,
        /// The nearest registered name, if any is close.
        suggestion: Option<String>,
    },
    /// A file or string that could not be read.
    #[error("malformed {what}: {detail}")]
    Parse {
        /// What was being read (`JSON schedule`, `torch CSV`, `cost`...).
        what: String,
        /// Where and why.
        detail: String,
    },
    /// A schedule that fails validation.
    #[error("invalid schedule: {0}")]
    Invalid(#[from] ValidationError),
    /// An FSDP plan that does not fit its schedule or misuses a collective.
    #[error("FSDP plan, device {device}, position {position}: {why}")]
    Plan {
        /// Device of the list.
        device: u32,
        /// Position in the device's plan list.
        position: usize,
        /// What is wrong, and how to fix it.
        why: String,
    },
}

impl Error {
    /// A configuration error without a parameter to suggest.
    pub fn config(msg: impl Into<String>) -> Self {
        Error::Config {
            why: msg.into(),
            fix: None,
        }
    }
    /// A configuration error fixed by setting `param` to `value`.
    pub fn fix(msg: impl Into<String>, param: Param, value: impl Into<String>) -> Self {
        Error::Config {
            why: msg.into(),
            fix: Some(Fix::new(param, value)),
        }
    }
    /// A configuration error fixed by changing `param` as the message says.
    pub fn change(msg: impl Into<String>, param: Param) -> Self {
        Error::Config {
            why: msg.into(),
            fix: Some(Fix::change(param)),
        }
    }
    /// Shorthand for [`Error::Parse`].
    pub fn parse(what: impl Into<String>, detail: impl Into<String>) -> Self {
        Error::Parse {
            what: what.into(),
            detail: detail.into(),
        }
    }
    /// The fix the error suggests, if any.
    pub fn suggestion(&self) -> Option<Fix> {
        match self {
            Error::Zero(p) => Some(Fix::new(*p, "1")),
            Error::TooLarge { param, .. } => param.map(Fix::change),
            Error::Config { fix, .. } => fix.clone(),
            _ => None,
        }
    }
    /// The message without the `malformed ...:` prefix of a parse error.
    pub(crate) fn detail(&self) -> String {
        match self {
            Error::Parse { detail, .. } => detail.clone(),
            other => other.to_string(),
        }
    }
}

/// Why a schedule is rejected, with the device, position and pass concerned.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum ValidationError {
    /// Sizes that do not fit together.
    #[error("{0}")]
    Shape(String),
    /// A pass names a stage or microbatch out of range.
    #[error("device {device}, position {position}: {pass} is out of range (stages 0..{stages}, microbatches 0..{microbatches})")]
    OutOfRange {
        /// Device of the list.
        device: u32,
        /// Position in the list.
        position: usize,
        /// The pass.
        pass: Pass,
        /// Number of stages.
        stages: u32,
        /// Number of microbatches.
        microbatches: u32,
    },
    /// A stage's pass listed on a device that does not hold the stage.
    #[error("device {device}, position {position}: {pass} belongs to stage {} which the placement puts on device {expected}", pass.stage)]
    WrongDevice {
        /// Device of the list.
        device: u32,
        /// Position in the list.
        position: usize,
        /// The pass.
        pass: Pass,
        /// Device that holds the stage.
        expected: u32,
    },
    /// A pass of a microbatch on a stage of another lane (the bidirectional placement).
    #[error("device {device}, position {position}: {pass} puts a microbatch of lane {mb_lane} on a stage of lane {stage_lane}; each microbatch runs only through its own lane's stages")]
    OutOfLane {
        /// Device of the list.
        device: u32,
        /// Position in the list.
        position: usize,
        /// The pass.
        pass: Pass,
        /// Lane of the pass's stage.
        stage_lane: u32,
        /// Lane of the pass's microbatch.
        mb_lane: u32,
    },
    /// An overlapped pair that cannot run as one unit.
    #[error("overlapped pair ({}, {}): {why}", pair[0], pair[1])]
    Pair {
        /// The pair's two passes, as listed.
        pair: [Pass; 2],
        /// What is wrong, and how to fix it.
        why: String,
    },
    /// A stage found on two devices (torch CSV input without a placement).
    #[error("stage {stage} appears on device {first} and on device {second}; each stage must live on one device")]
    StageOnTwoDevices {
        /// The stage.
        stage: u32,
        /// First device seen.
        first: u32,
        /// Second device seen.
        second: u32,
    },
    /// The same pass twice, or B/W mixed with BW.
    #[error("device {device}, position {position}: {pass} {why}")]
    Duplicate {
        /// Device of the list.
        device: u32,
        /// Position in the list.
        position: usize,
        /// The pass.
        pass: Pass,
        /// Explanation.
        why: String,
    },
    /// A pass that must exist is missing.
    #[error("missing pass {pass} (on device {device}): {why}")]
    Missing {
        /// The missing pass.
        pass: Pass,
        /// Device that should run it.
        device: u32,
        /// Explanation.
        why: String,
    },
    /// A pass listed before a pass it depends on, on the same device.
    #[error("device {device}, position {position}: {pass} needs {needs}, which comes later on the same device (position {needs_position})")]
    OrderOnDevice {
        /// Device of the list.
        device: u32,
        /// Position of the pass.
        position: usize,
        /// The pass.
        pass: Pass,
        /// The dependency.
        needs: Pass,
        /// Position of the dependency.
        needs_position: usize,
    },
    /// Running the lists in order blocks forever.
    #[error("deadlock: {}", describe_waits(.waits))]
    Deadlock {
        /// Every blocked device with what it waits for.
        waits: Vec<Wait>,
    },
}

/// A device blocked at a position, waiting for a pass on another device.
#[derive(Debug, Clone, PartialEq)]
pub struct Wait {
    /// Blocked device.
    pub device: u32,
    /// Position in its list.
    pub position: usize,
    /// The pass it cannot start.
    pub pass: Pass,
    /// The dependency not yet done.
    pub waits_for: Pass,
    /// Device of that dependency.
    pub on_device: u32,
}

fn describe_waits(waits: &[Wait]) -> String {
    let parts: Vec<String> = waits
        .iter()
        .map(|w| {
            format!(
                "device {} at position {} ({}) waits for {} on device {}",
                w.device, w.position, w.pass, w.waits_for, w.on_device
            )
        })
        .collect();
    format!(
        "{}; reorder the lists so the wait can be met",
        parts.join("; ")
    )
}
