//! Hardening of the `pipeblocks` binary (issue 17): no input, however large or strange, crashes,
//! hangs or misleads. Bad input gets one `error:` line and exit code 2, a failure while running
//! exit code 1, and nothing already written is lost.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_pipeblocks");

/// The longest any command here may take: none of them does real work.
const LIMIT: Duration = Duration::from_secs(60);

/// A fresh, empty directory of this test's own.
fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "pipeblocks-hardening-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// Waits for `cmd` (its output in files of `dir`), killing it after [`LIMIT`]: a hang fails
/// the test instead of blocking it.
fn finish(mut cmd: Command, dir: &Path) -> Output {
    let out_path = dir.join("stdout.log");
    let err_path = dir.join("stderr.log");
    let mut child = cmd
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("stderr file"))
        .spawn()
        .expect("spawn pipeblocks");
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if start.elapsed() > LIMIT {
            let _ = child.kill();
            panic!("{cmd:?} ran longer than {LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let o = Output {
        status,
        stdout: std::fs::read(&out_path).expect("stdout"),
        stderr: std::fs::read(&err_path).expect("stderr"),
    };
    let _ = std::fs::remove_file(out_path);
    let _ = std::fs::remove_file(err_path);
    o
}

/// Runs the binary in `dir` with `args`.
fn run_in(dir: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args).current_dir(dir);
    finish(cmd, dir)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Exactly one line on stderr, starting with `error: ` and containing `needle`; no panic.
fn one_error_line(o: &Output, needle: &str) -> String {
    let err = stderr(o);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "one line expected: {err}"
    );
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains(needle), "expected `{needle}` in: {err}");
    err
}

/// Bad input: exit 2, one error line with `needle`, nothing on stdout.
fn refused(dir: &Path, args: &[&str], needle: &str) -> String {
    let o = run_in(dir, args);
    assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
    assert!(stdout(&o).is_empty(), "{args:?}: {}", stdout(&o));
    one_error_line(&o, needle)
}

/// A failure while running: exit 1, one error line with `needle`.
fn failed(o: &Output, needle: &str) -> String {
    assert_eq!(o.status.code(), Some(1), "{}", stderr(o));
    one_error_line(o, needle)
}

/// The names in `dir` that look like temporary or probe files of an atomic write.
fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.') && (n.contains(".tmp") || n.contains(".probe")))
        .collect()
}

/// `sh -c 'trap "" XFSZ; ulimit -f 1; exec pipeblocks ARGS'`: any file the command writes
/// beyond one block fails with "File too large" (EFBIG) instead of killing the process.
fn run_with_tiny_file_limit(dir: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("trap '' XFSZ; ulimit -f 1 && exec \"$0\" \"$@\"")
        .arg(BIN)
        .args(args)
        .current_dir(dir);
    finish(cmd, dir)
}

const GEN: &[&str] = &["generate", "-s", "1f1b", "-p", "2", "-m", "4"];

fn with(base: &[&str], extra: &[&str]) -> Vec<String> {
    base.iter().chain(extra).map(|s| s.to_string()).collect()
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

// ---- 1. Writing files -------------------------------------------------------------------

#[test]
fn dash_means_standard_output() {
    let d = dir("dash");
    let o = run_in(&d, &strs(&with(GEN, &["--format", "json", "-o", "-"])));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("pipeblocks-schedule"), "{}", stdout(&o));
    assert!(!d.join("-").exists(), "-o - wrote a file named `-`");
    // Without --format, `-` is not an extension: the text timeline.
    let o = run_in(&d, &strs(&with(GEN, &["-o", "-"])));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).starts_with("1f1b:"), "{}", stdout(&o));
    // Only -o means standard output; a checkpoint or a CSV of collectives is not written there.
    refused(
        &d,
        &[
            "simulate",
            "-s",
            "zeropp",
            "-p",
            "2",
            "-m",
            "4",
            "--fsdp",
            "2",
            "--model",
            "gpt-1.3b",
            "--torch-csv",
            "-",
        ],
        "only -o writes to standard output",
    );
    assert!(!d.join("-").exists());
    std::fs::remove_dir_all(d).ok();
}

#[cfg(unix)]
#[test]
fn output_onto_a_symlink_leaves_link_and_target_alone() {
    let d = dir("symlink");
    let target = d.join("target.json");
    std::fs::write(&target, "precious").unwrap();
    let link = d.join("link.json");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let err = refused(
        &d,
        &strs(&with(GEN, &["-o", "link.json"])),
        "is a symbolic link, not a regular file",
    );
    assert!(err.contains("link.json"), "{err}");
    let meta = std::fs::symlink_metadata(&link).unwrap();
    assert!(meta.file_type().is_symlink(), "the link was replaced");
    assert_eq!(std::fs::read_link(&link).unwrap(), target);
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious");
    assert!(leftovers(&d).is_empty(), "{:?}", leftovers(&d));
    std::fs::remove_dir_all(d).ok();
}

#[cfg(unix)]
#[test]
fn output_onto_a_device_or_directory_is_refused() {
    use std::os::unix::fs::FileTypeExt;
    let d = dir("device");
    let err = refused(
        &d,
        &strs(&with(GEN, &["-o", "/dev/null"])),
        "-o /dev/null is a device, not a regular file",
    );
    assert!(
        err.contains("redirect"),
        "the line says how to discard: {err}"
    );
    let null = std::fs::metadata("/dev/null").unwrap();
    assert!(null.file_type().is_char_device());
    std::fs::create_dir(d.join("sub")).unwrap();
    refused(
        &d,
        &strs(&with(GEN, &["-o", "sub"])),
        "-o sub is a directory",
    );
    assert!(d.join("sub").is_dir());
    refused(
        &d,
        &strs(&with(GEN, &["-o", "missing/out.json"])),
        "the directory missing does not exist",
    );
    refused(
        &d,
        &["plot", "-s", "1f1b", "-p", "2", "-m", "2", "-o", "sub/"],
        "names a directory",
    );
    assert!(leftovers(&d).is_empty(), "{:?}", leftovers(&d));
    std::fs::remove_dir_all(d).ok();
}

#[cfg(unix)]
#[test]
fn a_failed_write_keeps_the_old_file_and_leaves_no_temporary() {
    let d = dir("efbig");
    let out = d.join("s.json");
    std::fs::write(&out, "precious").unwrap();
    // The schedule's JSON is far larger than the one block the limit allows.
    let o = run_with_tiny_file_limit(
        &d,
        &[
            "generate", "-s", "1f1b", "-p", "8", "-m", "64", "--format", "json", "-o", "s.json",
        ],
    );
    let err = failed(&o, "cannot write s.json");
    assert!(err.contains("left as it was"), "{err}");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "precious");
    assert!(leftovers(&d).is_empty(), "{:?}", leftovers(&d));
    std::fs::remove_dir_all(d).ok();
}

#[cfg(target_os = "linux")]
#[test]
fn a_full_standard_output_exits_1() {
    let d = dir("full");
    let mut cmd = Command::new(BIN);
    cmd.args(["compare", "-p", "4", "-m", "8"])
        .current_dir(&d)
        .stdout(
            std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/full")
                .expect("/dev/full"),
        )
        .stderr(Stdio::piped());
    let o = cmd.output().expect("run");
    failed(&o, "cannot write to standard output");
    std::fs::remove_dir_all(d).ok();
}

#[test]
fn a_closed_pipe_ends_quietly() {
    for args in [
        &["report", "-p", "4", "-m", "8"][..],
        &["generate", "-s", "zb-h1", "-p", "8", "-m", "64"],
        &["list"],
    ] {
        let mut child = Command::new(BIN)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        // Close the reading end at once: every write the command makes meets a closed pipe.
        drop(child.stdout.take());
        let o = child.wait_with_output().expect("wait");
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).is_empty(), "{args:?}: {}", stderr(&o));
    }
}

// ---- 2. Options a schedule does not read -----------------------------------------------

#[test]
fn options_a_schedule_does_not_read_are_refused() {
    let d = dir("unused");
    refused(
        &d,
        &strs(&with(GEN, &["--chunks", "2"])),
        "--chunks does not apply to 1f1b; it sets the chunks per device of interleaved-1f1b, bfs and zeropp",
    );
    refused(
        &d,
        &[
            "simulate", "-s", "zb-h1", "-p", "2", "-m", "4", "--memory", "2",
        ],
        "--memory does not apply to zb-h1; it sets the memory budget of auto and zeropp",
    );
    refused(
        &d,
        &["plot", "-s", "gpipe", "-p", "2", "-m", "4", "--chunks", "3"],
        "--chunks does not apply to gpipe",
    );
    // --unit on a schedule without groups, with and without --fsdp (it used to be ignored).
    let unit = "--unit does not apply to 1f1b; it sets the microbatches per group of zeropp";
    refused(
        &d,
        &[
            "simulate", "-s", "1f1b", "-p", "2", "-m", "4", "--unit", "2",
        ],
        unit,
    );
    refused(
        &d,
        &[
            "simulate", "-s", "1f1b", "-p", "2", "-m", "4", "--unit", "2", "--fsdp", "2",
            "--model", "gpt-1.3b",
        ],
        unit,
    );
    // A schedule read from a file is not generated: generation options do not apply.
    let file = d.join("s.json");
    let o = run_in(&d, &strs(&with(GEN, &["--format", "json", "-o", "s.json"])));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(file.is_file());
    refused(
        &d,
        &["simulate", "--from", "s.json", "--chunks", "2"],
        "--chunks does not apply to a schedule read with --from",
    );
    refused(
        &d,
        &["plot", "--from", "s.json", "--memory", "0.5x"],
        "--memory does not apply to a schedule read with --from",
    );
    refused(
        &d,
        &["simulate", "--from", "s.json", "-p", "3"],
        "-p 3 does not match s.json, a schedule for 2 devices",
    );
    // With every schedule at once, an option applies to those that read it.
    let o = run_in(&d, &["compare", "-p", "2", "-m", "4", "--chunks", "2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    // Where it applies, --unit now shapes ZeroPP without --fsdp: smaller groups hold less.
    let peak = |u: &str| -> f64 {
        let o = run_in(
            &d,
            &[
                "simulate", "-s", "zeropp", "-p", "2", "-m", "4", "--unit", u, "--json",
            ],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        v["max_peak_activation"].as_f64().unwrap()
    };
    assert!(peak("1") < peak("4"));
    std::fs::remove_dir_all(d).ok();
}

// ---- 3. Empty costs and negative counts --------------------------------------------------

#[test]
fn empty_costs_and_negative_counts_get_one_line() {
    let d = dir("numbers");
    for cost in ["", ",", " , ,"] {
        refused(
            &d,
            &strs(&with(GEN, &["--cost", cost])),
            "give at least one of f, b, w, bw, c",
        );
    }
    let cases: &[(&[&str], &str)] = &[
        (
            &["generate", "-s", "1f1b", "-p", "-3", "-m", "4"],
            "-p -3: the number of devices must be a whole number from 1 up",
        ),
        (
            &["simulate", "-s", "1f1b", "-p", "2", "-m", "-1"],
            "-m -1: the number of microbatches must be a whole number",
        ),
        (
            &[
                "generate", "-s", "bfs", "-p", "2", "-m", "2", "--chunks", "-2",
            ],
            "--chunks -2: the number of chunks per device must be a whole number",
        ),
        (
            &["compare", "-p", "-1", "-m", "4"],
            "-p -1: the number of devices",
        ),
        (
            &["report", "-p", "2", "-m", "2.5"],
            "-m 2.5: the number of microbatches must be a whole number",
        ),
        (
            &["block", "-s", "v-min", "-p", "-4"],
            "-p -4: the number of devices",
        ),
        (
            &["frontier", "-p", "2", "-m", "-8"],
            "-m -8: the number of microbatches",
        ),
        (
            &["generate", "-s", "1f1b", "-p", "99999999999", "-m", "4"],
            "-p 99999999999: too large for the number of devices",
        ),
        (
            &[
                "simulate", "-s", "zeropp", "-p", "2", "-m", "4", "--fsdp", "-2", "--model",
                "gpt-1.3b",
            ],
            "--fsdp -2: the number of data-parallel replicas",
        ),
        (
            &[
                "simulate", "-s", "zeropp", "-p", "2", "-m", "4", "--fsdp", "2", "--model",
                "gpt-1.3b", "--unit", "-1",
            ],
            "--unit -1: give a number of microbatches",
        ),
        (
            &["plot", "-s", "1f1b", "-p", "2", "-m", "2", "--width", "-5"],
            "--width -5 is out of range",
        ),
        (
            &["train", "--layers", "-1"],
            "--layers -1: the number of layers",
        ),
        (
            &["train", "--lr", "-1"],
            "--lr -1: give a positive learning rate",
        ),
        // clap's own usage errors are one line too.
        (
            &[
                "generate", "-s", "1f1b", "-p", "2", "-m", "2", "--chunk", "2",
            ],
            "a similar argument exists: '--chunks'",
        ),
    ];
    for (args, needle) in cases {
        refused(&d, args, needle);
    }
    std::fs::remove_dir_all(d).ok();
}

// ---- 4. Errors do not repeat themselves --------------------------------------------------

#[test]
fn errors_do_not_repeat_their_causes() {
    let d = dir("repeat");
    std::fs::write(d.join("deadlock.csv"), "0F0,0B0,0F1,0B1\n1F0,1F1,1B0,1B1\n").unwrap();
    let err = refused(&d, &["simulate", "--from", "deadlock.csv"], "deadlock: ");
    assert_eq!(err.matches("deadlock:").count(), 1, "{err}");
    assert_eq!(err.matches("waits for BW1.0").count(), 1, "{err}");
    std::fs::write(d.join("missing.csv"), "0F0,0B0\n1F0\n").unwrap();
    let err = refused(&d, &["validate", "missing.csv"], "missing pass BW1.0");
    assert_eq!(err.matches("missing pass BW1.0").count(), 1, "{err}");
    let err = refused(&d, &["validate", "absent.json"], "cannot read absent.json");
    assert_eq!(err.matches("os error").count(), 1, "{err}");
    std::fs::remove_dir_all(d).ok();
}

// ---- 5. Byte order marks and non-UTF-8 files ---------------------------------------------

#[test]
fn json_files_with_a_byte_order_mark_are_read() {
    let d = dir("bom");
    let bom = |name: &str, text: &[u8]| {
        let mut bytes = b"\xEF\xBB\xBF".to_vec();
        bytes.extend_from_slice(text);
        std::fs::write(d.join(name), bytes).unwrap();
    };
    let o = run_in(&d, &strs(&with(GEN, &["--format", "json"])));
    assert!(o.status.success(), "{}", stderr(&o));
    bom("s.json", &o.stdout);
    let o = run_in(&d, &["validate", "s.json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("valid (2 devices"), "{}", stdout(&o));

    let o = run_in(&d, &["block", "-s", "v-half", "-p", "2", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    bom("b.json", &o.stdout);
    let o = run_in(&d, &["block", "--from", "b.json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("memory bound"), "{}", stdout(&o));

    bom(
        "c.json",
        br#"{"format": "pipeblocks-stage-costs", "version": 1, "stages": [{"f": 1, "b": 1, "w": 1}, {"f": 2, "b": 2, "w": 2}]}"#,
    );
    let o = run_in(
        &d,
        &[
            "simulate",
            "-s",
            "1f1b",
            "-p",
            "2",
            "-m",
            "4",
            "--stage-costs",
            "c.json",
            "--json",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["bottleneck"]["stage"], 1);

    std::fs::write(d.join("latin1.json"), b"{\"name\": \"caf\xE9\"}").unwrap();
    refused(
        &d,
        &["validate", "latin1.json"],
        "latin1.json is not UTF-8 text",
    );
    std::fs::write(d.join("utf16.csv"), b"\xFF\xFE0\x00F\x000\x00").unwrap();
    refused(
        &d,
        &["simulate", "--from", "utf16.csv"],
        "utf16.csv is UTF-16 text",
    );
    // A device as input: refused at once instead of read forever.
    #[cfg(unix)]
    refused(&d, &["validate", "/dev/zero"], "/dev/zero: it is a device");
    std::fs::remove_dir_all(d).ok();
}

// ---- 6. train checks everything before the first step ------------------------------------

const TINY: &[&str] = &[
    "train", "--layers", "2", "--hidden", "16", "--heads", "2", "--seq", "8", "--batch", "4",
];

#[test]
fn train_refuses_bad_sizes_and_paths_before_training() {
    let d = dir("train-pre");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            with(TINY, &["--timeout", "1e20"]),
            "--timeout 1e20: at most 1000000 seconds",
        ),
        (
            with(TINY, &["--timeout", "0"]),
            "--timeout 0: give a positive number of seconds",
        ),
        (
            with(&["train"], &["--hidden", "100000"]),
            "--hidden 100000: the width is at most 8192",
        ),
        (
            with(&["train"], &["--seq", "70000"]),
            "--seq 70000: the context length is at most 65536",
        ),
        (
            with(&["train"], &["--layers", "1000"]),
            "--layers 1000: the number of layers is at most 256",
        ),
        (
            with(&["train"], &["--batch", "100000"]),
            "--batch 100000: the number of sequences per step is at most 65536",
        ),
        (
            with(TINY, &["--steps", "2000000"]),
            "--steps 2000000: the number of steps is at most 1000000",
        ),
        // Each size within its limit, together far beyond memory.
        (
            with(
                &["train"],
                &[
                    "--hidden", "8192", "--layers", "256", "--seq", "65536", "--batch", "65536",
                ],
            ),
            "more than the 4.0 GiB `train` allows",
        ),
        (
            with(&["train"], &["--heads", "0"]),
            "--heads 0: give at least 1",
        ),
        (
            with(TINY, &["--chunks", "2"]),
            "--chunks does not apply to 1f1b",
        ),
        (
            with(TINY, &["--save", "missing/run.ckpt"]),
            "--save missing/run.ckpt: the directory missing does not exist",
        ),
        (
            with(TINY, &["--timeline", "."]),
            "--timeline . names a directory",
        ),
        (
            with(TINY, &["--save", "-"]),
            "only -o writes to standard output",
        ),
        (
            with(TINY, &["--resume", "absent.ckpt"]),
            "--resume absent.ckpt: cannot read it",
        ),
        (
            with(TINY, &["--save", "a.ckpt", "--timeline", "a.ckpt"]),
            "--save and --timeline both name a.ckpt",
        ),
        (
            with(TINY, &["--timeline", "t.json", "--steps", "0"]),
            "--timeline writes the last step's timeline",
        ),
    ];
    for (args, needle) in &cases {
        refused(&d, &strs(args), needle);
    }
    #[cfg(unix)]
    {
        refused(
            &d,
            &strs(&with(TINY, &["--save", "/dev/null"])),
            "--save /dev/null is a device",
        );
        refused(
            &d,
            &strs(&with(TINY, &["--data", "/dev/zero"])),
            "--data /dev/zero is not a regular file",
        );
        std::fs::write(d.join("old.ckpt"), "precious").unwrap();
        std::os::unix::fs::symlink(d.join("old.ckpt"), d.join("link.ckpt")).unwrap();
        refused(
            &d,
            &strs(&with(TINY, &["--save", "link.ckpt"])),
            "--save link.ckpt is a symbolic link",
        );
        assert_eq!(
            std::fs::read_to_string(d.join("old.ckpt")).unwrap(),
            "precious"
        );
    }
    assert!(leftovers(&d).is_empty(), "{:?}", leftovers(&d));
    std::fs::remove_dir_all(d).ok();
}

#[test]
fn a_diverging_run_stops_with_exit_1_and_keeps_the_old_checkpoint() {
    let d = dir("train-nan");
    std::fs::write(d.join("run.ckpt"), "precious").unwrap();
    let o = run_in(
        &d,
        &strs(&with(
            TINY,
            &[
                "--lr", "1e30", "--steps", "3", "--json", "--save", "run.ckpt",
            ],
        )),
    );
    let err = failed(&o, "the loss stopped being finite at step ");
    assert!(err.contains("lower --lr (it is 1e30)"), "{err}");
    assert!(!stdout(&o).contains("NaN") && !stdout(&o).contains("null"));
    assert!(stdout(&o).is_empty(), "{}", stdout(&o));
    assert_eq!(
        std::fs::read_to_string(d.join("run.ckpt")).unwrap(),
        "precious"
    );
    assert!(leftovers(&d).is_empty(), "{:?}", leftovers(&d));
    std::fs::remove_dir_all(d).ok();
}

#[test]
fn a_finite_but_exploding_loss_is_reported() {
    let d = dir("train-explode");
    let o = run_in(
        &d,
        &strs(&with(TINY, &["--lr", "1e6", "--steps", "4", "--json"])),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.starts_with("warning: the loss reached") && err.contains("lower --lr (it is 1e6)"),
        "{err}"
    );
    let doc: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert!(doc["diverged_at_step"].as_u64().is_some(), "{doc}");
    // A sane learning rate trains without the warning or the field.
    let o = run_in(&d, &strs(&with(TINY, &["--steps", "2", "--json"])));
    assert_eq!(o.status.code(), Some(0));
    assert!(!stderr(&o).contains("warning"), "{}", stderr(&o));
    let doc: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert!(doc.get("diverged_at_step").is_none(), "{doc}");
    std::fs::remove_dir_all(d).ok();
}

#[cfg(unix)]
#[test]
fn a_checkpoint_that_cannot_be_written_after_training_exits_1() {
    let d = dir("train-save");
    // The checkpoint of even the tiny model is far larger than one block.
    let o = run_with_tiny_file_limit(
        &d,
        &strs(&with(
            TINY,
            &["--steps", "1", "--json", "--save", "run.ckpt"],
        )),
    );
    let err = failed(
        &o,
        "training finished but the checkpoint could not be written",
    );
    assert!(err.contains("run.ckpt"), "{err}");
    assert!(!d.join("run.ckpt").exists());
    assert!(leftovers(&d).is_empty(), "{:?}", leftovers(&d));
    std::fs::remove_dir_all(d).ok();
}

#[test]
fn pictures_and_traces_too_large_to_use_are_refused() {
    let d = dir("pictures");
    // The report refuses before generating anything.
    refused(
        &d,
        &["report", "-p", "8", "-m", "5000", "-o", "r.html"],
        "more than the 65536 a picture takes",
    );
    refused(
        &d,
        &[
            "plot", "-s", "1f1b", "-p", "2", "-m", "20000", "-o", "p.svg",
        ],
        "timeline picture of schedule `1f1b` would hold 80000 passes",
    );
    refused(
        &d,
        &[
            "simulate",
            "-s",
            "1f1b",
            "-p",
            "8",
            "-m",
            "40000",
            "--format",
            "chrome-trace",
            "-o",
            "t.json",
        ],
        "Chrome trace of schedule `1f1b` would hold 640000 passes",
    );
    assert!(std::fs::read_dir(&d).unwrap().next().is_none());
    std::fs::remove_dir_all(d).ok();
}
