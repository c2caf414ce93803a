//! # pipeblocks-viz: renderers and exporters
//!
//! The second layer of pipeblocks: it turns a schedule from `pipeblocks-core`, and the
//! simulator's figures for it, into things people read:
//!
//! - [`text`]: a compact per-device timeline for the terminal;
//! - [`svg`]: a timeline picture (one row per device, time from the simulator, passes coloured
//!   by kind and shaded by chunk, offload transfers in a host-link lane under their device)
//!   with each device's activation memory over time under it;
//! - [`html`]: one self-contained HTML page comparing several schedules, timelines inline;
//! - [`chrome_trace`]: the Trace Event JSON that `chrome://tracing` and Perfetto open, with a
//!   compute and a communication track per device (and host-link tracks for offloads).
//!
//! Nothing here changes a schedule; everything is a pure function of a schedule and its
//! simulation. SVG and HTML are written by hand as strings, so the crate stays small.

pub mod chrome_trace;
pub mod html;
pub mod svg;
pub mod text;

mod common;

use thiserror::Error;

/// Most passes one picture draws (an SVG timeline, or one timeline of the HTML report): a
/// pass is a few hundred bytes of SVG, and beyond this many no one can tell them apart.
pub const MAX_PICTURE_PASSES: usize = 1 << 16;

/// Most passes a Chrome trace holds (it writes about 600 bytes per pass, with its transfers and
/// memory counters; trace viewers slow to a crawl beyond a few million events).
pub const MAX_TRACE_PASSES: usize = 1 << 19;

/// Why a schedule and a simulation result cannot be drawn together.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum VizError {
    /// The schedule is larger than the output can usefully hold.
    #[error("{what} of schedule `{schedule}` would hold {passes} passes, more than the {limit} it takes; {hint}")]
    TooLarge {
        /// The output, e.g. `a timeline picture`.
        what: &'static str,
        /// Schedule name.
        schedule: String,
        /// Passes of the schedule.
        passes: usize,
        /// The output's limit.
        limit: usize,
        /// What to do instead.
        hint: &'static str,
    },
    /// The simulation result does not belong to the schedule (other sizes).
    #[error("the simulation result does not match schedule `{schedule}`: {detail}; simulate this schedule again and pass its own result")]
    Mismatch {
        /// Schedule name.
        schedule: String,
        /// What differs.
        detail: String,
    },
}
