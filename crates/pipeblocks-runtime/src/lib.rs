//! # pipeblocks-runtime: run schedules, not only simulate them
//!
//! The layer above `pipeblocks-core`: it trains a real model with any schedule the engine
//! produces, on threads of one machine, and measures what the simulator predicts.
//!
//! - [`model`]: a GPT-style decoder (token and position embeddings, pre-LayerNorm blocks with
//!   causal multi-head attention and a GELU MLP, final LayerNorm, LM head, cross-entropy) on
//!   candle tensors, with a hand-written backward split into B (input gradient) and W (weight
//!   gradient), and [`model::Stage`], a slice of it for one pipeline stage;
//! - [`exec`]: the [`Trainer`], one worker thread per device running its list in order;
//! - [`transport`]: the [`Transport`] trait and its in-process channel implementation;
//! - [`measure`]: pass timings, activation bytes, bubbles, and the simulator fed with them;
//! - [`data`]: byte-level corpora and deterministic batches; [`checkpoint`]: save and resume.
//!
//! ```
//! use pipeblocks_core::{generate, Params};
//! use pipeblocks_runtime::{data::Corpus, ModelConfig, TrainConfig, Trainer};
//! let schedule = generate("1f1b", &Params::new(2, 2).unwrap()).unwrap();
//! let cfg = TrainConfig {
//!     model: ModelConfig { vocab: 256, hidden: 16, heads: 2, layers: 2, seq: 8 },
//!     batch: 2,
//!     ..TrainConfig::default()
//! };
//! let mut trainer = Trainer::new(cfg, schedule).unwrap();
//! let corpus = Corpus::generated(1, 2000);
//! let report = trainer.step(&corpus.batch(2, 8, 1, 0)).unwrap();
//! assert!(report.loss > 5.0 && report.loss < 6.0); // about ln 256 at the start
//! ```

pub mod checkpoint;
pub mod data;
pub mod error;
pub mod exec;
pub mod measure;
pub mod model;
pub mod transport;

pub use error::{Result, RuntimeError};
pub use exec::{reference_gradients, Fault, TrainConfig, Trainer};
pub use measure::{PassRecord, StepReport};
pub use model::{AdamW, ModelConfig};
pub use transport::{channels, ChannelEndpoint, Key, Transport};
