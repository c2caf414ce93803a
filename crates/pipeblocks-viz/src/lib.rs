//! # pipeblocks-viz: renderers and exporters
//!
//! The second layer of pipeblocks: it turns a schedule from `pipeblocks-core`, and the
//! simulator's figures for it, into things people read:
//!
//! - [`text`]: a compact per-device timeline for the terminal.
//!
//! Nothing here changes a schedule; everything is a pure function of a schedule and its
//! simulation.

pub mod text;
