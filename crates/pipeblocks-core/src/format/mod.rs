//! Reading and writing: pipeblocks' versioned schedule JSON, PyTorch's compute-only CSV, and
//! the versioned per-stage cost file.

pub mod json;
pub mod stage_costs;
pub mod torch_csv;

use crate::error::Error;
use crate::ir::Schedule;

/// Reads a schedule from text, guessing the format: JSON when it starts with `{`, torch CSV otherwise.
pub fn read_any(text: &str, name: &str) -> Result<Schedule, Error> {
    if text.trim_start().starts_with('{') {
        json::read(text)
    } else {
        torch_csv::read(text, name)
    }
}
