//! pipeblocks' JSON schedule format, version 1.
//!
//! ```json
//! {
//!   "format": "pipeblocks-schedule",
//!   "version": 1,
//!   "name": "1f1b",
//!   "devices": 2,
//!   "stages": 2,
//!   "microbatches": 2,
//!   "placement": { "kind": "sequential" },
//!   "lists": [["F0.0", "F0.1", "BW0.0", "BW0.1"], ["F1.0", "BW1.0", "F1.1", "BW1.1"]]
//! }
//! ```
//!
//! A schedule with overlapped pairs ([`Schedule::pairs`]) adds `"pairs"`: a list of two-pass
//! lists, e.g. `[["F0.3", "BW1.1"]]`, each two passes adjacent in one device's list. One that
//! recomputes selectively ([`Schedule::selective`]) adds `"selective"`: the stages whose R passes
//! recompute the attention only, e.g. `[0, 3]`.
//!
//! `placement.kind` is `sequential`, `looped` (with `chunks`), `v-shape`, `bidirectional` or
//! `explicit` (with `devices`, the device of each stage). A pass is written
//! `{kind}{stage}.{microbatch}` with kind `F`, `B` (input gradient), `W` (weight gradient), `BW`
//! (fused backward), `R` (recompute), `O` (offload to host memory) or `L` (load back).

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::ir::{Pass, Placement, Schedule};

/// The value of the `format` field.
pub const FORMAT: &str = "pipeblocks-schedule";
/// The current version.
pub const VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    format: String,
    version: u32,
    name: String,
    devices: u32,
    stages: u32,
    microbatches: u32,
    placement: Placement,
    lists: Vec<Vec<Pass>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pairs: Vec<[Pass; 2]>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    selective: Vec<u32>,
}

/// Writes a schedule as pretty JSON (one device list per line).
pub fn write(s: &Schedule) -> String {
    let lists: Vec<String> = s
        .lists
        .iter()
        .map(|l| {
            let items: Vec<String> = l.iter().map(|p| format!("\"{p}\"")).collect();
            format!("    [{}]", items.join(", "))
        })
        .collect();
    let placement = serde_json::to_string(&s.placement).unwrap_or_else(|_| "null".into());
    let pairs = if s.pairs.is_empty() {
        String::new()
    } else {
        let items: Vec<String> = s
            .pairs
            .iter()
            .map(|[a, b]| format!("[\"{a}\", \"{b}\"]"))
            .collect();
        format!(",\n  \"pairs\": [{}]", items.join(", "))
    };
    let selective = if s.selective.is_empty() {
        String::new()
    } else {
        let items: Vec<String> = s.selective.iter().map(u32::to_string).collect();
        format!(",\n  \"selective\": [{}]", items.join(", "))
    };
    format!(
        "{{\n  \"format\": \"{FORMAT}\",\n  \"version\": {VERSION},\n  \"name\": {},\n  \"devices\": {},\n  \"stages\": {},\n  \"microbatches\": {},\n  \"placement\": {placement},\n  \"lists\": [\n{}\n  ]{pairs}{selective}\n}}\n",
        serde_json::Value::String(s.name.clone()),
        s.devices,
        s.stages,
        s.microbatches,
        lists.join(",\n")
    )
}

/// Reads a schedule from JSON. The result is not validated; see [`crate::validate()`].
pub fn read(text: &str) -> Result<Schedule, Error> {
    let f: File = super::read_versioned(text, "JSON schedule", FORMAT, VERSION.into())?;
    Ok(Schedule {
        name: f.name,
        devices: f.devices,
        stages: f.stages,
        microbatches: f.microbatches,
        placement: f.placement,
        lists: f.lists,
        pairs: f.pairs,
        selective: f.selective,
    })
}
