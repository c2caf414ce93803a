//! Fuzzing the readers (schedule JSON, PyTorch CSV, block JSON, stage-cost JSON) with arbitrary
//! bytes and with mutations of the seeds in `tests/fuzz_seeds/` (valid files and the inputs that
//! once crashed): every input is either refused with an error or read into something that
//! validates, simulates and builds within bounded time and memory; nothing panics.
//!
//! CI runs a short pass (`PIPEBLOCKS_FUZZ_CASES`, default 200 cases per target); run longer with
//! e.g. `PIPEBLOCKS_FUZZ_CASES=50000 cargo test --release -p pipeblocks-core --test fuzz_readers`.

use pipeblocks_core::block::Block;
use pipeblocks_core::format::{json, read_any, stage_costs, torch_csv};
use pipeblocks_core::{simulate, validate, StageCosts};
use proptest::prelude::*;

/// The seeds, read once.
fn seeds() -> Vec<(String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_seeds");
    let mut out: Vec<(String, String)> = std::fs::read_dir(&dir)
        .expect("tests/fuzz_seeds")
        .map(|e| {
            let path = e.expect("entry").path();
            let name = path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            let bytes = std::fs::read(&path).expect("seed");
            (name, String::from_utf8_lossy(&bytes).into_owned())
        })
        .collect();
    out.sort();
    out
}

fn cases() -> u32 {
    std::env::var("PIPEBLOCKS_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200)
}

/// Everything a schedule read from a file goes through.
fn exercise_schedule(text: &str) {
    let Ok(s) = read_any(text, "fuzz") else {
        return;
    };
    if validate(&s).is_ok() {
        let r = simulate(&s, &StageCosts::default()).expect("a valid schedule simulates");
        assert!(r.makespan.is_finite() && r.bubble_rate.is_finite());
    } else {
        assert!(simulate(&s, &StageCosts::default()).is_err());
    }
}

fn exercise_block(text: &str) {
    let Ok(b) = Block::from_json(text) else {
        return;
    };
    if b.analyse().is_ok() {
        for m in [1, 3] {
            if let Ok(s) = b.expand(m) {
                validate(&s).expect("an expanded block is valid by construction");
            }
        }
    }
}

fn exercise_costs(text: &str) {
    let Ok(c) = stage_costs::read(text) else {
        return;
    };
    for (stages, devices) in [(1, 1), (2, 2), (4, 2), (6, 3), (8, 4)] {
        if let Ok(t) = c.resolve(stages, devices) {
            assert!(t.dur.iter().flatten().all(|x| x.is_finite()));
            assert!(t.act.iter().all(|x| x.is_finite()));
        }
    }
}

/// A text edited at a few places: numbers replaced by extreme ones, spans cut or repeated.
fn mutate(text: &str, edits: &[(usize, u8)]) -> String {
    const EXTREMES: [&str; 12] = [
        "0",
        "-1",
        "4294967295",
        "4294967296",
        "2147483648",
        "18446744073709551615",
        "1e308",
        "1e-308",
        "NaN",
        "",
        "\"x\"",
        "999999999999",
    ];
    let mut out = text.to_string();
    for &(at, what) in edits {
        if out.is_empty() {
            break;
        }
        let mut i = at % out.len();
        while !out.is_char_boundary(i) {
            i -= 1;
        }
        let end = out[i..]
            .find(|c: char| !c.is_ascii_digit())
            .map_or(out.len(), |k| i + k.max(1));
        let mut j = end.min(out.len());
        while !out.is_char_boundary(j) {
            j += 1;
        }
        match what % 3 {
            0 => out.replace_range(i..j, EXTREMES[(what as usize / 3) % EXTREMES.len()]),
            1 => out.replace_range(i..j, ""),
            _ => {
                let piece = out[i..j].to_string();
                out.insert_str(i, &piece);
            }
        }
    }
    out
}

#[test]
fn every_seed_is_read_or_refused() {
    for (name, text) in seeds() {
        exercise_schedule(&text);
        exercise_block(&text);
        exercise_costs(&text);
        // The inputs that once crashed are refused with a message, not read.
        if name.starts_with("huge-") {
            let refused = read_any(&text, "x").map_or(true, |s| validate(&s).is_err())
                && Block::from_json(&text).map_or(true, |b| b.analyse().is_err());
            assert!(refused, "{name} was accepted");
        }
    }
    // A byte order mark does not turn JSON into CSV.
    let bom = seeds()
        .into_iter()
        .find(|(n, _)| n == "bom.json")
        .expect("bom seed");
    let s = read_any(&bom.1, "bom").expect("JSON after a byte order mark");
    validate(&s).expect("valid");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let text = String::from_utf8_lossy(&bytes);
        exercise_schedule(&text);
        let _ = torch_csv::read(&text, "fuzz");
        let _ = json::read(&text);
        exercise_block(&text);
        exercise_costs(&text);
    }

    #[test]
    fn mutated_seeds(which in 0usize..64, edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6)) {
        let seeds = seeds();
        let (_, text) = &seeds[which % seeds.len()];
        let text = mutate(text, &edits);
        exercise_schedule(&text);
        exercise_block(&text);
        exercise_costs(&text);
    }
}
