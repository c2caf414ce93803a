//! Typed errors of the schedule engine.

use thiserror::Error;

use crate::ir::Pass;

/// Everything the engine can refuse.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum Error {
    /// Impossible or unsupported configuration (sizes, options).
    #[error("{0}")]
    Config(String),
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
}

impl Error {
    /// Shorthand for [`Error::Config`].
    pub fn config(msg: impl Into<String>) -> Self {
        Error::Config(msg.into())
    }
    /// Shorthand for [`Error::Parse`].
    pub fn parse(what: impl Into<String>, detail: impl Into<String>) -> Self {
        Error::Parse {
            what: what.into(),
            detail: detail.into(),
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
