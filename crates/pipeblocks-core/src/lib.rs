//! # pipeblocks-core: the schedule engine
//!
//! The bottom layer of pipeblocks, pure Rust with no heavy dependencies. It knows what a pipeline
//! schedule is and everything that can be computed about one without running a model:
//!
//! - [`params`]: sizes, per-stage costs ([`StageCosts`]) and the memory [`Budget`];
//! - [`ir`]: passes (F, B, W, BW), placements (sequential, looped, V-shape, explicit) and schedules;
//! - [`engine`]: the one event engine (readiness, clocks, memory, waking, results) driven by
//!   policies and observers, and [`simulate()`] on it;
//! - [`validate()`]: completeness, placement, dependency order and deadlock-freedom;
//! - [`generators`]: the schedules (classic, chain, greedy list scheduler, rounds, ZeroPP, V
//!   blocks);
//! - [`block`]: building blocks (one microbatch's passes repeated every `T` slots): collision
//!   check, lifespans, memory bound, expansion, W delays, the V-shape family;
//! - [`improve`]: repairs of a schedule: reorder, polish, hill climbing, overlapped pairs;
//! - [`recompute`]: activation recomputation as a schedule choice (R passes per stage);
//! - [`offload`]: activation offload to host memory as a schedule choice (O and L transfers on
//!   the host link, per stage and microbatch), mixed with recomputation;
//! - [`grid`] and [`rebuild`]: the Controllable Memory paper's two repairs of a block on the
//!   unit grid (its V-Min/V-Half builders' compaction; its block search's warm-up and cool-down
//!   rebuild);
//! - [`search`]: `auto`, the memory/bubble frontier, `zb-v`, ZB-H1/H2 under unequal costs;
//! - [`step`]: the whole training step: iterations back to back with the gradient sync and the
//!   optimizer between them, synchronous or overlapped, and the steady-state period;
//! - [`model`]: a transformer's per-stage costs from its shape and a device;
//! - [`plan`]: the planner: from a model, a cluster and a batch to the fastest configuration
//!   that fits (parallel degrees, sharding, microbatches, schedule, layer split, recompute);
//! - [`fsdp`]: fully sharded data parallelism as a plan beside a schedule and an engine observer;
//! - [`format`]: pipeblocks' versioned JSON, PyTorch's compute-only CSV, the stage-cost file;
//! - [`compare`]: every applicable schedule side by side;
//! - [`registry`]: the named schedules and what each reads.
//!
//! Renderers (`pipeblocks-viz`), the runtime (`pipeblocks-runtime`) and the `pipeblocks` binary
//! build on this crate; nothing here depends on them.
//!
//! ```
//! use pipeblocks_core::{generate, simulate, Params, StageCosts};
//! let s = generate("1f1b", &Params::new(4, 8).unwrap()).unwrap();
//! let r = simulate(&s, &StageCosts::default()).unwrap();
//! assert!((r.bubble_rate - 3.0 / 11.0).abs() < 1e-9);
//! assert_eq!(r.peak_activation[0], 4.0);
//! ```

pub mod block;
pub mod compare;
pub mod engine;
pub mod error;
pub mod format;
pub mod fsdp;
pub mod generators;
pub mod grid;
pub mod improve;
pub mod ir;
pub mod model;
pub mod offload;
pub mod params;
pub mod plan;
pub mod rebuild;
pub mod recompute;
pub mod registry;
pub mod search;
pub mod step;
pub mod validate;

pub use engine::{simulate, SimResult};
pub use error::{Error, ValidationError};
pub use ir::{Pass, PassKind, Placement, Schedule};
pub use params::{Budget, Costs, Objective, Params, StageCost, StageCosts};
pub use registry::generate;
pub use validate::validate;
