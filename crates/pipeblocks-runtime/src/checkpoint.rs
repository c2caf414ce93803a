//! Checkpoints: parameters, AdamW moments and the step counter, independent of the schedule (a
//! run may resume under another schedule or placement).
//!
//! Layout: the magic `PIPEBLK1`, a little-endian `u64` header length, a JSON header (format
//! version, model sizes, seed, steps done, parameter names and shapes), then for every parameter
//! its value, first and second moment as little-endian `f32`, and finally an FNV-1a 64 checksum
//! of everything before it. Files are written to a temporary name and renamed, so a crash never
//! leaves a half-written checkpoint under the real name; a truncated, corrupt or mismatched file
//! is refused with a message saying what differs.

use std::io::Write;
use std::path::Path;

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use crate::error::{Result, RuntimeError};
use crate::exec::Trainer;
use crate::model::ModelConfig;

const MAGIC: &[u8; 8] = b"PIPEBLK1";
const VERSION: u32 = 1;
/// Largest JSON header read: far above any real model's parameter list.
const MAX_HEADER_BYTES: u64 = 64 << 20;
/// Most optimiser steps a checkpoint may record (AdamW's bias correction counts in `i32`).
pub const MAX_STEPS: u64 = i32::MAX as u64;

#[derive(Serialize, Deserialize)]
struct Header {
    version: u32,
    model: ModelConfig,
    seed: u64,
    steps_done: u64,
    params: Vec<(String, Vec<usize>)>,
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn err(path: &Path, message: impl Into<String>) -> RuntimeError {
    RuntimeError::Checkpoint {
        path: path.display().to_string(),
        message: message.into(),
    }
}

fn io(path: &Path, source: std::io::Error) -> RuntimeError {
    RuntimeError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// What a checkpoint says about its run.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckpointInfo {
    /// Model sizes.
    pub model: ModelConfig,
    /// Seed of the run that wrote it.
    pub seed: u64,
    /// Optimiser steps done.
    pub steps_done: u64,
}

/// Writes the trainer's state to `path` atomically.
pub fn save(trainer: &mut Trainer, path: &Path) -> Result<()> {
    let model = trainer.config().model;
    let seed = trainer.config().seed;
    let steps_done = trainer.steps_done();
    let params = trainer.params_mut();
    let header = Header {
        version: VERSION,
        model,
        seed,
        steps_done,
        params: params
            .iter()
            .map(|p| (p.name.clone(), p.value.dims().to_vec()))
            .collect(),
    };
    let head = serde_json::to_vec(&header).map_err(|e| err(path, e.to_string()))?;
    let mut buf = Vec::new();
    buf.extend_from_slice(MAGIC);
    buf.extend_from_slice(&(head.len() as u64).to_le_bytes());
    buf.extend_from_slice(&head);
    for p in params {
        for t in [&p.value, &p.m, &p.v] {
            for x in t.flatten_all()?.to_vec1::<f32>()? {
                buf.extend_from_slice(&x.to_le_bytes());
            }
        }
    }
    let sum = fnv1a(&buf);
    buf.extend_from_slice(&sum.to_le_bytes());

    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| err(path, "is not a file name"))?
        .to_string_lossy()
        .into_owned();
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&buf)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io(path, e)
    })
}

/// Reads `path` into the trainer, refusing truncated, corrupt or mismatched files.
pub fn load(trainer: &mut Trainer, path: &Path) -> Result<CheckpointInfo> {
    // A checkpoint of this model is at most its tensors, a generous header and the framing;
    // anything longer is refused before it is read into memory.
    let floats: u64 = trainer
        .params_mut()
        .iter()
        .map(|p| p.value.elem_count() as u64)
        .sum();
    let most = floats
        .saturating_mul(12)
        .saturating_add(MAX_HEADER_BYTES + 24);
    let size = std::fs::metadata(path).map_err(|e| io(path, e))?.len();
    if size > most {
        return Err(err(
            path,
            format!("is {size} bytes, more than a checkpoint of this model can be ({most}); it is not a checkpoint of this model"),
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| io(path, e))?;
    let truncated = |have: usize, need: usize| {
        err(
            path,
            format!("is truncated ({have} bytes, expected {need}); it was not written completely, resume from another checkpoint"),
        )
    };
    if bytes.len() < 16 {
        return Err(truncated(bytes.len(), 16));
    }
    if &bytes[..8] != MAGIC {
        return Err(err(
            path,
            "is not a pipeblocks checkpoint (wrong magic bytes)",
        ));
    }
    let mut len8 = [0u8; 8];
    len8.copy_from_slice(&bytes[8..16]);
    let hlen = u64::from_le_bytes(len8) as usize;
    let body = 16usize.saturating_add(hlen);
    if bytes.len() < body {
        return Err(truncated(bytes.len(), body));
    }
    let header: Header = serde_json::from_slice(&bytes[16..body])
        .map_err(|e| err(path, format!("has a corrupt header ({e})")))?;
    if header.version != VERSION {
        return Err(err(
            path,
            format!(
                "has format version {}, this build reads version {VERSION}",
                header.version
            ),
        ));
    }
    if header.steps_done > MAX_STEPS {
        return Err(err(
            path,
            format!(
                "records {} optimiser steps, more than the {MAX_STEPS} a run can take; the file is corrupt",
                header.steps_done
            ),
        ));
    }
    let want = trainer.config().model;
    if header.model != want {
        let h = header.model;
        return Err(err(
            path,
            format!(
                "was written for a model with layers={} hidden={} heads={} seq={} vocab={}, but this run builds layers={} hidden={} heads={} seq={} vocab={}; pass the same sizes or start without --resume",
                h.layers, h.hidden, h.heads, h.seq, h.vocab, want.layers, want.hidden, want.heads, want.seq, want.vocab
            ),
        ));
    }
    // Sizes from the header are checked as they multiply: a corrupt header must not overflow.
    let need = header
        .params
        .iter()
        .try_fold(0usize, |acc, (_, s)| {
            let n = s.iter().try_fold(1usize, |a, &d| a.checked_mul(d))?;
            acc.checked_add(n.checked_mul(12)?)
        })
        .and_then(|floats| floats.checked_add(body)?.checked_add(8))
        .ok_or_else(|| err(path, "has a corrupt header (its sizes overflow)"))?;
    if bytes.len() < need {
        return Err(truncated(bytes.len(), need));
    }
    if bytes.len() > need {
        return Err(err(
            path,
            format!(
                "has {} bytes after its end; the file is corrupt",
                bytes.len() - need
            ),
        ));
    }
    let mut sum8 = [0u8; 8];
    sum8.copy_from_slice(&bytes[need - 8..]);
    if fnv1a(&bytes[..need - 8]) != u64::from_le_bytes(sum8) {
        return Err(err(path, "fails its checksum; the file is corrupt"));
    }
    let params = trainer.params_mut();
    if params.len() != header.params.len()
        || params
            .iter()
            .zip(&header.params)
            .any(|(p, (n, s))| &p.name != n || p.value.dims() != s.as_slice())
    {
        return Err(err(
            path,
            "lists different parameters than this model; it was written by another model",
        ));
    }
    let mut off = body;
    let mut take = |n: usize, like: &Tensor| -> Result<Tensor> {
        let data: Vec<f32> = bytes[off..off + 4 * n]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        off += 4 * n;
        Ok(Tensor::from_vec(data, like.dims(), like.device())?)
    };
    for p in params {
        let n = p.value.elem_count();
        p.value = take(n, &p.value)?;
        p.m = take(n, &p.m)?;
        p.v = take(n, &p.v)?;
    }
    trainer.set_steps_done(header.steps_done);
    Ok(CheckpointInfo {
        model: header.model,
        seed: header.seed,
        steps_done: header.steps_done,
    })
}
