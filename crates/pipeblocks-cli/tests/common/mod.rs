//! What the command-line tests share: running the binary and reading its JSON.

// Each test binary includes this module and uses a part of it.
#![allow(dead_code)]

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_pipeblocks");

/// Runs `pipeblocks args`: exit code, standard output, standard error.
pub fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .output()
        .expect("run pipeblocks");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `pipeblocks args`, which must succeed, and parses its standard output as JSON.
pub fn json(args: &[&str]) -> serde_json::Value {
    let (rc, out, err) = run(args);
    assert_eq!(rc, 0, "{args:?}: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
}

/// A number field of a JSON object.
pub fn num(v: &serde_json::Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or_else(|| panic!("no {key} in {v}"))
}
