//! # pipeblocks-core: the schedule engine
//!
//! The bottom layer of pipeblocks, pure Rust with no heavy dependencies. It knows what a pipeline
//! schedule is and everything that can be computed about one without running a model:
//!
//! - [`ir`]: passes (F, B, W, BW), placements (sequential, looped, V-shape, explicit) and schedules;
//! - [`generators`]: the registry of named schedules (`gpipe`, `1f1b`, `interleaved-1f1b`, `bfs`,
//!   `zb-h1`, `zb-h2`, `v-min`, `v-half`, `v-zb`, `zb-v`, `auto`, ...), the greedy list scheduler
//!   and the memory-budgeted search behind `auto` and the frontier;
//! - [`block`]: building blocks (one microbatch's passes repeated every `T` slots): collision
//!   check, lifespans, memory bound, expansion, squeeze and reorder; `v-min`, `v-half`, `v-zb`;
//! - [`climb`]: hill climbing over device orders within a memory limit, the last step of `auto`;
//! - [`validate()`]: completeness, placement, dependency order and deadlock-freedom;
//! - [`simulate()`]: event-driven timings, bubble rate and activation memory;
//! - [`format`]: pipeblocks' versioned JSON and PyTorch's compute-only CSV;
//! - [`compare`]: every applicable schedule side by side.
//!
//! Renderers (`pipeblocks-viz`), the runtime (`pipeblocks-runtime`) and the `pipeblocks` binary
//! build on this crate; nothing here depends on them.
//!
//! ```
//! use pipeblocks_core::{generators::{generate, Params}, simulate::{simulate, SimConfig}};
//! let s = generate("1f1b", &Params::new(4, 8)).unwrap();
//! let r = simulate(&s, &SimConfig::default()).unwrap();
//! assert!((r.bubble_rate - 3.0 / 11.0).abs() < 1e-9);
//! assert_eq!(r.peak_activation[0], 4.0);
//! ```

pub mod block;
pub mod climb;
pub mod compare;
pub mod error;
pub mod format;
pub mod fsdp;
pub mod generators;
pub mod ir;
pub mod model_cost;
pub mod simulate;
pub mod validate;

pub use error::{Error, ValidationError};
pub use ir::{Pass, PassKind, Placement, Schedule};
pub use simulate::{simulate, Costs, SimConfig, SimResult};
pub use validate::validate;
