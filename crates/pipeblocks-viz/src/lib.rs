//! # pipeblocks-viz: renderers and exporters
//!
//! The second layer of pipeblocks: it turns a schedule from `pipeblocks-core`, and the
//! simulator's figures for it, into things people read:
//!
//! - [`text`]: a compact per-device timeline for the terminal;
//! - [`svg`]: a timeline picture (one row per device, time from the simulator, passes coloured
//!   by kind and shaded by chunk) with each device's activation memory over time under it;
//! - [`html`]: one self-contained HTML page comparing several schedules, timelines inline;
//! - [`chrome_trace`]: the Trace Event JSON that `chrome://tracing` and Perfetto open, with a
//!   compute and a communication track per device.
//!
//! Nothing here changes a schedule; everything is a pure function of a schedule and its
//! simulation. SVG and HTML are written by hand as strings, so the crate stays small.

pub mod chrome_trace;
pub mod html;
pub mod svg;
pub mod text;

mod common;

use thiserror::Error;

/// Why a schedule and a simulation result cannot be drawn together.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum VizError {
    /// The simulation result does not belong to the schedule (other sizes).
    #[error("the simulation result does not match schedule `{schedule}`: {detail}; simulate this schedule again and pass its own result")]
    Mismatch {
        /// Schedule name.
        schedule: String,
        /// What differs.
        detail: String,
    },
}
