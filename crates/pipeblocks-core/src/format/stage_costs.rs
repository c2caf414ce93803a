//! pipeblocks' per-stage cost file, version 1.
//!
//! ```json
//! {
//!   "format": "pipeblocks-stage-costs",
//!   "version": 1,
//!   "comm": 0.05,
//!   "stages": [
//!     {"f": 1.0, "b": 1.1, "w": 0.9, "activation": 1.0},
//!     {"f": 1.0, "b": 1.1, "w": 0.9},
//!     {"f": 1.5, "b": 1.6, "w": 1.4, "activation": 1.3, "b_release": 0.1}
//!   ]
//! }
//! ```
//!
//! One entry per stage of the model, in model order: `f`, `b`, `w` (required) and `bw` (default
//! `b + w`) are the times of the stage's passes, in any unit as long as all agree; `activation`
//! (default 1) is what one microbatch leaves on the stage in units of a uniform stage's (a stage
//! of the model split evenly into as many stages holds 1); `b_release` (default: the top-level
//! value, else 0) the fraction of it that B frees; `comm` the latency of the link to the next
//! stage (default: the top-level `comm`, else 0); `optimizer` (optional) the time of the
//! optimizer step on the stage's parameters ([`crate::step`]). The optional top-level `activation_bytes` is
//! the bytes of an activation of 1, for memory in bytes. A schedule whose stage count is a
//! multiple of the entries splits each stage evenly; one whose count divides it merges
//! consecutive stages ([`crate::params`]). Unknown keys and other versions are refused.

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::params::{StageCost, StageCosts};

/// The value of the `format` field.
pub const FORMAT: &str = "pipeblocks-stage-costs";
/// The current version.
pub const VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    format: String,
    version: u32,
    #[serde(default)]
    comm: f64,
    #[serde(default)]
    b_release: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    activation_bytes: Option<f64>,
    stages: Vec<StageCost>,
}

const WHAT: &str = "stage costs";

/// Reads a stage-cost file and checks every value.
pub fn read(text: &str) -> Result<StageCosts, Error> {
    let f: File = super::read_versioned(text, WHAT, FORMAT, VERSION.into())?;
    let costs = StageCosts::table(f.stages, f.comm, f.b_release)?;
    match f.activation_bytes {
        Some(b) => costs.with_activation_bytes(b),
        None => Ok(costs),
    }
}

/// Writes a stage table in the file format (pretty, one stage per line).
pub fn write(stages: &[StageCost], comm: f64, b_release: f64) -> String {
    write_with_bytes(stages, comm, b_release, None)
}

/// [`write`], with the bytes one microbatch leaves on the average stage when known (so that
/// peaks come out in bytes).
pub fn write_with_bytes(
    stages: &[StageCost],
    comm: f64,
    b_release: f64,
    activation_bytes: Option<f64>,
) -> String {
    let rows: Vec<String> = stages
        .iter()
        .map(|s| format!("    {}", serde_json::to_string(s).unwrap_or_default()))
        .collect();
    let bytes =
        activation_bytes.map_or(String::new(), |b| format!("  \"activation_bytes\": {b},\n"));
    format!(
        "{{\n  \"format\": \"{FORMAT}\",\n  \"version\": {VERSION},\n  \"comm\": {comm},\n  \"b_release\": {b_release},\n{bytes}  \"stages\": [\n{}\n  ]\n}}\n",
        rows.join(",\n")
    )
}
