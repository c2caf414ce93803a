//! Typed errors of the runtime.

use pipeblocks_core::Pass;
use thiserror::Error;

/// Everything the runtime can fail with.
#[derive(Debug, Error)]
pub enum RuntimeError {
    /// A configuration that cannot run (sizes that do not fit, a schedule that is refused).
    #[error("{0}")]
    Config(String),
    /// The schedule failed validation; nothing was computed.
    #[error("refusing to run an invalid schedule: {0}")]
    InvalidSchedule(#[from] pipeblocks_core::ValidationError),
    /// A tensor operation failed.
    #[error("tensor error: {0}")]
    Tensor(#[from] candle_core::Error),
    /// A pass failed on a device.
    #[error("device {device}, pass {pass}: {message}")]
    Pass {
        /// The device whose worker failed.
        device: u32,
        /// The pass it was running.
        pass: Pass,
        /// What went wrong.
        message: String,
    },
    /// A worker panicked inside a pass.
    #[error("device {device} panicked in pass {pass}: {message}")]
    Panic {
        /// The device whose worker panicked.
        device: u32,
        /// The pass it was running.
        pass: Pass,
        /// The panic message.
        message: String,
    },
    /// A receive waited longer than the timeout.
    #[error(
        "device {device}, pass {pass}: timed out after {seconds:.1} s waiting for {waited_for}"
    )]
    Timeout {
        /// The waiting device.
        device: u32,
        /// The pass that needed the data.
        pass: Pass,
        /// What it waited for.
        waited_for: String,
        /// How long it waited.
        seconds: f64,
    },
    /// Another worker failed, so this one stopped.
    #[error("device {device} stopped before pass {pass} because another device failed")]
    Aborted {
        /// The device that stopped.
        device: u32,
        /// The pass it would have run next.
        pass: Pass,
    },
    /// A checkpoint that cannot be used.
    #[error("checkpoint {path}: {message}")]
    Checkpoint {
        /// File name.
        path: String,
        /// Why it is refused, and what to do.
        message: String,
    },
    /// The runtime's own bookkeeping found a state it cannot continue from (for example a
    /// backward pass with no stored forward).
    #[error("{0}")]
    State(String),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// File name.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl RuntimeError {
    /// Shorthand for [`RuntimeError::Config`].
    pub fn config(msg: impl Into<String>) -> Self {
        RuntimeError::Config(msg.into())
    }

    /// Whether the error is bad input (configuration, schedule, checkpoint, file) rather than a
    /// failure while running.
    pub fn is_input_error(&self) -> bool {
        matches!(
            self,
            RuntimeError::Config(_)
                | RuntimeError::InvalidSchedule(_)
                | RuntimeError::Checkpoint { .. }
                | RuntimeError::Io { .. }
        )
    }
}

/// Result alias of the runtime.
pub type Result<T> = std::result::Result<T, RuntimeError>;
