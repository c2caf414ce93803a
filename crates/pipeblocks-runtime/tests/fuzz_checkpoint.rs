//! Fuzzing the checkpoint reader: a real checkpoint of a tiny model, mutated (bytes flipped, cut,
//! repeated; the header length overwritten; numbers in the JSON header replaced by extreme ones,
//! with the checksum recomputed so the mutation reaches the checks behind it). Every input is
//! refused with an input error or loads into the trainer; nothing panics or allocates from a
//! size it read.
//!
//! CI runs `PIPEBLOCKS_FUZZ_CASES` cases (default 200); run longer with e.g.
//! `PIPEBLOCKS_FUZZ_CASES=20000 cargo test --release -p pipeblocks-runtime --test fuzz_checkpoint`.

mod common;

use common::tiny;
use pipeblocks_core::{generate, Params};
use pipeblocks_runtime::{checkpoint, Trainer};
use proptest::prelude::*;

fn cases() -> u32 {
    std::env::var("PIPEBLOCKS_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200)
}

fn trainer() -> Trainer {
    let s = generate("1f1b", &Params::new(2, 2).unwrap()).unwrap();
    Trainer::new(tiny(2, 2), s).unwrap()
}

/// The seed: a checkpoint of the tiny model, written once per test process.
fn seed() -> &'static [u8] {
    static SEED: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    SEED.get_or_init(|| {
        let path = scratch("seed.ckpt");
        checkpoint::save(&mut trainer(), &path).unwrap();
        std::fs::read(&path).unwrap()
    })
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("pipeblocks-fuzz-ckpt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// FNV-1a 64, the checkpoint's checksum.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Replaces the last 8 bytes by the checksum of the rest.
fn reseal(bytes: &mut [u8]) {
    if bytes.len() >= 8 {
        let n = bytes.len() - 8;
        let sum = fnv1a(&bytes[..n]);
        bytes[n..].copy_from_slice(&sum.to_le_bytes());
    }
}

const EXTREMES: [&str; 9] = [
    "0",
    "18446744073709551615",
    "4294967296",
    "-1",
    "1e308",
    "999999999999999999999999",
    "null",
    "[]",
    "\"x\"",
];

/// The seed with its JSON header rewritten by `edit`, re-framed and resealed so that only the
/// header is wrong.
fn with_header(edit: impl FnOnce(&str) -> String) -> Vec<u8> {
    let s = seed();
    let hlen = u64::from_le_bytes(s[8..16].try_into().unwrap()) as usize;
    let head = String::from_utf8_lossy(&s[16..16 + hlen]).into_owned();
    let new_head = edit(&head);
    let mut out = Vec::new();
    out.extend_from_slice(&s[..8]);
    out.extend_from_slice(&(new_head.len() as u64).to_le_bytes());
    out.extend_from_slice(new_head.as_bytes());
    out.extend_from_slice(&s[16 + hlen..]);
    reseal(&mut out);
    out
}

/// The seed's JSON header with the `k`-th number replaced by an extreme value.
fn header_mutant(k: usize, extreme: &str) -> Vec<u8> {
    with_header(|head| {
        let b = head.as_bytes();
        let mut numbers = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if b[i].is_ascii_digit() {
                let start = i;
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
                numbers.push((start, i));
            } else {
                i += 1;
            }
        }
        let (a, z) = numbers[k % numbers.len()];
        format!("{}{}{}", &head[..a], extreme, &head[z..])
    })
}

/// Loads `bytes` into a fresh trainer: an input error or a load, never a panic.
fn exercise(bytes: &[u8], name: &str) {
    let path = scratch(name);
    std::fs::write(&path, bytes).unwrap();
    let mut t = trainer();
    match checkpoint::load(&mut t, &path) {
        Ok(info) => assert_eq!(info.model, tiny(2, 2).model),
        Err(e) => assert!(e.is_input_error(), "not an input error: {e}"),
    }
}

#[test]
fn the_seed_loads_and_every_cut_is_refused() {
    let s = seed();
    exercise(s, "whole.ckpt");
    for cut in [0, 1, 8, 15, 16, 17, s.len() / 2, s.len() - 9, s.len() - 1] {
        let path = scratch("cut.ckpt");
        std::fs::write(&path, &s[..cut]).unwrap();
        assert!(
            checkpoint::load(&mut trainer(), &path).is_err(),
            "cut {cut}"
        );
    }
}

/// The seed with `from` in its header replaced by `to`.
fn header_edit(from: &str, to: &str) -> Vec<u8> {
    with_header(|head| {
        assert!(head.contains(from), "{from} not in {head}");
        head.replacen(from, to, 1)
    })
}

fn refusal(bytes: &[u8], name: &str) -> String {
    let path = scratch(name);
    std::fs::write(&path, bytes).unwrap();
    match checkpoint::load(&mut trainer(), &path) {
        Ok(_) => panic!("{name} loaded"),
        Err(e) => {
            assert!(e.is_input_error(), "not an input error: {e}");
            e.to_string()
        }
    }
}

#[test]
fn a_step_count_past_the_optimiser_is_refused() {
    let b = header_edit("\"steps_done\":0", "\"steps_done\":18446744073709551615");
    let e = refusal(&b, "steps.ckpt");
    assert!(e.contains("optimiser steps"), "{e}");
}

#[test]
fn a_file_longer_than_any_checkpoint_of_the_model_is_refused_unread() {
    let mut b = seed().to_vec();
    b.resize(b.len() + (65 << 20), 0);
    let e = refusal(&b, "long.ckpt");
    assert!(
        e.contains("more than a checkpoint of this model can be"),
        "{e}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn mutated_bytes_are_refused_or_loaded(
        edits in prop::collection::vec((any::<usize>(), any::<u8>(), 0u8..4), 1..6),
        resealed in any::<bool>(),
    ) {
        let mut b = seed().to_vec();
        for (at, byte, op) in edits {
            if b.is_empty() {
                break;
            }
            let i = at % b.len();
            match op {
                0 => b[i] ^= byte | 1,
                1 => b.truncate(i),
                2 => {
                    let span: Vec<u8> = b[i..(i + 64).min(b.len())].to_vec();
                    b.splice(i..i, span);
                }
                _ => b.insert(i, byte),
            }
        }
        if resealed {
            reseal(&mut b);
        }
        exercise(&b, "mutated.ckpt");
    }

    #[test]
    fn a_wrong_header_length_is_refused(len in any::<u64>()) {
        let mut b = seed().to_vec();
        b[8..16].copy_from_slice(&len.to_le_bytes());
        exercise(&b, "length.ckpt");
        reseal(&mut b);
        exercise(&b, "length-sealed.ckpt");
    }

    #[test]
    fn extreme_numbers_in_the_header_are_refused_or_harmless(k in 0usize..64, x in 0usize..EXTREMES.len()) {
        exercise(&header_mutant(k, EXTREMES[x]), "header.ckpt");
    }
}
