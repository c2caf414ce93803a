//! Reading and writing: pipeblocks' versioned schedule JSON, PyTorch's compute-only CSV, and
//! the versioned per-stage cost file.

pub mod json;
pub mod stage_costs;
pub mod torch_csv;

use crate::error::Error;
use crate::ir::Schedule;

/// Reads a schedule from text, guessing the format: JSON when it starts with `{` (after any
/// byte order mark and white space), torch CSV otherwise.
pub fn read_any(text: &str, name: &str) -> Result<Schedule, Error> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim_start().starts_with('{') {
        json::read(text)
    } else {
        torch_csv::read(text, name)
    }
}

/// Reads a versioned JSON file: checks its `format` and `version` fields first (a clear error
/// for another file or another version), then the rest as `T`. `what` names the file in errors.
pub(crate) fn read_versioned<T: serde::de::DeserializeOwned>(
    text: &str,
    what: &str,
    format: &str,
    version: u64,
) -> Result<T, Error> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| Error::parse(what, e.to_string()))?;
    match v.get("format").and_then(|f| f.as_str()) {
        Some(f) if f == format => {}
        Some(other) => {
            let detail = format!("`format` is `{other}`, expected `{format}`");
            return Err(Error::parse(what, detail));
        }
        None => {
            return Err(Error::parse(
                what,
                format!("missing `\"format\": \"{format}\"`"),
            ))
        }
    }
    match v.get("version").and_then(|x| x.as_u64()) {
        Some(n) if n == version => {}
        Some(n) => {
            let detail =
                format!("version {n} is not supported; this pipeblocks reads version {version}");
            return Err(Error::parse(what, detail));
        }
        None => {
            return Err(Error::parse(
                what,
                format!("missing `\"version\": {version}`"),
            ))
        }
    }
    serde_json::from_value(v).map_err(|e| Error::parse(what, e.to_string()))
}
