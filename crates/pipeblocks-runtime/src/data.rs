//! Byte-level training data: a generated default corpus, any text file, deterministic batches.

use std::path::Path;

use candle_core::{Device, Tensor};

use crate::error::{Result, RuntimeError};
use crate::model::Rng;

/// A byte corpus.
#[derive(Clone, Debug)]
pub struct Corpus {
    bytes: Vec<u8>,
}

const SUBJECTS: &[&str] = &[
    "the pipeline",
    "a stage",
    "every device",
    "the scheduler",
    "the first worker",
    "a microbatch",
    "the last stage",
    "the optimiser",
    "each layer",
    "the gradient",
];
const VERBS: &[&str] = &[
    "waits for",
    "sends",
    "receives",
    "computes",
    "releases",
    "stores",
    "delays",
    "fills",
];
const OBJECTS: &[&str] = &[
    "the activation",
    "a bubble",
    "the weight gradient",
    "its input",
    "the next pass",
    "the loss",
    "some memory",
    "the warm-up",
    "the cool-down",
    "a message",
];
const ENDINGS: &[&str] = &[
    "before the step ends",
    "while the others work",
    "in order",
    "without blocking",
    "after the forward",
    "and then rests",
    "as the schedule says",
    "on time",
];

impl Corpus {
    /// The default corpus: about `len` bytes of simple, regular English sentences about
    /// pipelines, generated deterministically from `seed` (structure a small model can learn).
    pub fn generated(seed: u64, len: usize) -> Self {
        let mut rng = Rng::named(seed, "corpus");
        let mut text = String::with_capacity(len + 128);
        let mut n = 0u64;
        while text.len() < len {
            n += 1;
            let pick = |rng: &mut Rng, words: &[&str]| words[rng.below(words.len())].to_string();
            let s = pick(&mut rng, SUBJECTS);
            let v = pick(&mut rng, VERBS);
            let o = pick(&mut rng, OBJECTS);
            let e = pick(&mut rng, ENDINGS);
            let mut sentence = format!("{s} {v} {o} {e}.");
            if let Some(first) = sentence.get(0..1) {
                sentence.replace_range(0..1, &first.to_uppercase());
            }
            text.push_str(&sentence);
            text.push(if n.is_multiple_of(4) { '\n' } else { ' ' });
        }
        Corpus {
            bytes: text.into_bytes(),
        }
    }

    /// Reads any file as bytes; it must hold more than `seq + 1` bytes.
    pub fn from_file(path: &Path, seq: usize) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|source| RuntimeError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Corpus::from_bytes(bytes, seq).map_err(|e| match e {
            RuntimeError::Config(m) => RuntimeError::config(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    /// A corpus from bytes; it must hold more than `seq + 1` bytes.
    pub fn from_bytes(bytes: Vec<u8>, seq: usize) -> Result<Self> {
        if bytes.len() < seq + 2 {
            return Err(RuntimeError::config(format!(
                "the data has {} bytes but one sequence needs {}; use a longer text or a smaller --seq",
                bytes.len(),
                seq + 2
            )));
        }
        Ok(Corpus { bytes })
    }

    /// Number of bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether the corpus is empty.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The batch of step `step`: `batch` random windows of `seq + 1` bytes, chosen from `seed`
    /// and `step` only (so a resumed run sees the same data as an uninterrupted one).
    pub fn batch(&self, batch: usize, seq: usize, seed: u64, step: u64) -> Batch {
        let mut rng = Rng::named(seed ^ step.wrapping_mul(0x2545_f491_4f6c_dd1d), "batch");
        let span = self.bytes.len() - seq - 1;
        let mut tokens = Vec::with_capacity(batch * seq);
        let mut targets = Vec::with_capacity(batch * seq);
        for _ in 0..batch {
            let o = rng.below(span + 1);
            tokens.extend(self.bytes[o..o + seq].iter().map(|&b| u32::from(b)));
            targets.extend(self.bytes[o + 1..o + seq + 1].iter().map(|&b| u32::from(b)));
        }
        Batch {
            rows: batch,
            seq,
            tokens,
            targets,
        }
    }
}

/// One step's data: `rows` sequences of `seq` input tokens and their next-token targets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    /// Sequences.
    pub rows: usize,
    /// Tokens per sequence.
    pub seq: usize,
    /// Inputs, row-major `(rows, seq)`.
    pub tokens: Vec<u32>,
    /// Targets, row-major `(rows, seq)`.
    pub targets: Vec<u32>,
}

/// The tensors of one microbatch.
#[derive(Clone, Debug)]
pub struct Micro {
    /// `(rows, seq)` input tokens.
    pub tokens: Tensor,
    /// `(rows·seq)` target tokens.
    pub targets: Tensor,
}

impl Batch {
    /// The whole batch as one microbatch.
    pub fn whole(&self, dev: &Device) -> Result<Micro> {
        Ok(self.split(1, dev)?.remove(0))
    }

    /// Splits into `m` equal microbatches of consecutive rows.
    pub fn split(&self, m: usize, dev: &Device) -> Result<Vec<Micro>> {
        if m == 0 || !self.rows.is_multiple_of(m) {
            return Err(RuntimeError::config(format!(
                "a batch of {} sequences cannot be split into {m} equal microbatches; make --batch a multiple of -m",
                self.rows
            )));
        }
        let r = self.rows / m;
        let n = r * self.seq;
        (0..m)
            .map(|i| {
                let tok = self.tokens[i * n..(i + 1) * n].to_vec();
                let tgt = self.targets[i * n..(i + 1) * n].to_vec();
                Ok(Micro {
                    tokens: Tensor::from_vec(tok, (r, self.seq), dev)?,
                    targets: Tensor::from_vec(tgt, n, dev)?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_deterministic_and_shifted_by_one() {
        let c = Corpus::generated(1, 4000);
        let a = c.batch(3, 16, 7, 5);
        assert_eq!(a, c.batch(3, 16, 7, 5));
        assert_ne!(a, c.batch(3, 16, 7, 6));
        for r in 0..3 {
            assert_eq!(
                a.tokens[r * 16 + 1..(r + 1) * 16],
                a.targets[r * 16..(r + 1) * 16 - 1]
            );
        }
    }

    #[test]
    fn short_data_and_uneven_split_are_refused() {
        assert!(Corpus::from_bytes(b"abc".to_vec(), 8).is_err());
        let c = Corpus::generated(1, 1000);
        assert!(c.batch(3, 8, 0, 0).split(2, &Device::Cpu).is_err());
    }
}
