//! `pipeblocks plan` (issue 20): the JSON it promises, configurations that fit and add up, the
//! exported schedule simulating to the predicted time, fixed dimensions, and one clear line
//! for each impossible request.

mod common;

use common::{json, num, run};

/// A small search: a 7B model on 16 accelerators with the pipeline degree and sharding fixed.
const SMALL: &[&str] = &[
    "plan",
    "--model",
    "llama2-7b",
    "--gpus",
    "16",
    "--global-batch",
    "64",
    "--pp",
    "2",
    "--sharding",
    "zero1",
    "--recompute",
    "selective",
];

#[test]
fn json_configurations_fit_and_add_up() {
    let mut args = SMALL.to_vec();
    args.extend(["--json", "--top", "4"]);
    let v = json(&args);
    let memory = v["cluster"]["device"]["memory"].as_f64().unwrap();
    let configs = v["configurations"].as_array().unwrap();
    assert!(!configs.is_empty() && configs.len() <= 4);
    let mut last = 0.0;
    for c in configs {
        let (tp, pp, dp) = (num(c, "tp"), num(c, "pp"), num(c, "dp"));
        assert_eq!(tp * pp * dp, 16.0, "{c}");
        assert_eq!(pp, 2.0);
        assert_eq!(c["sharding"], "zero1");
        let (b, m) = (num(c, "microbatch_size"), num(c, "microbatches"));
        assert_eq!(dp * b * m, 64.0, "{c}");
        let it = num(c, "iteration_seconds");
        assert!(it >= last, "not sorted: {it} after {last}");
        last = it;
        // tokens per second per accelerator = global batch × sequence / time / accelerators
        let tok = num(c, "tokens_per_second_per_gpu");
        assert!((tok - 64.0 * 4096.0 / it / 16.0).abs() < 1e-6 * tok);
        let mfu = num(c, "mfu");
        assert!(
            mfu > 0.0 && mfu < 0.6,
            "MFU {mfu} above the device's 0.6 efficiency"
        );
        let peaks = c["peak_memory_bytes"].as_array().unwrap();
        assert_eq!(peaks.len(), 2, "one peak per pipeline device");
        for p in peaks {
            assert!(p.as_f64().unwrap() <= memory);
        }
        // The breakdown adds up to the peak.
        for (mb, p) in c["memory"].as_array().unwrap().iter().zip(peaks) {
            let parts: f64 = [
                "params",
                "grads",
                "optimizer",
                "gathered",
                "activations",
                "reserved",
            ]
            .iter()
            .map(|k| num(mb, k))
            .sum();
            assert!((parts - p.as_f64().unwrap()).abs() < 1.0);
        }
        assert!(num(c, "pipeline_seconds") <= it);
    }
}

#[test]
fn exported_schedule_simulates_to_the_predicted_pipeline_time() {
    let dir = std::env::temp_dir().join(format!("pipeblocks-plan-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let d = dir.to_str().unwrap();
    let mut args = SMALL.to_vec();
    args.extend([
        "--schedules",
        "zb-v,1f1b",
        "--json",
        "--top",
        "1",
        "--export",
        d,
    ]);
    let v = json(&args);
    let best = &v["configurations"][0];
    for f in [
        "schedule.csv",
        "schedule.json",
        "stage_costs.json",
        "torchtitan.toml",
        "megatron.args",
    ] {
        assert!(dir.join(f).is_file(), "{f} not written");
    }
    let sim = json(&[
        "simulate",
        "--from",
        dir.join("schedule.json").to_str().unwrap(),
        "--stage-costs",
        dir.join("stage_costs.json").to_str().unwrap(),
        "--json",
    ]);
    let (ours, theirs) = (num(&sim, "makespan"), num(best, "pipeline_seconds"));
    assert!((ours - theirs).abs() <= 1e-9 * theirs, "{ours} vs {theirs}");
    let toml = std::fs::read_to_string(dir.join("torchtitan.toml")).unwrap();
    assert!(toml.contains("pipeline_parallel_schedule_csv = \"schedule.csv\""));
    assert!(toml.contains(&format!("pipeline_parallel_degree = {}", num(best, "pp"))));
    let args = std::fs::read_to_string(dir.join("megatron.args")).unwrap();
    assert!(args.contains(&format!("--tensor-model-parallel-size {}", num(best, "tp"))));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_fully_fixed_configuration_is_evaluated() {
    let v = json(&[
        "plan",
        "--model",
        "llama2-7b",
        "--gpus",
        "16",
        "--global-batch",
        "64",
        "--tp",
        "2",
        "--pp",
        "4",
        "--dp",
        "2",
        "--schedule",
        "interleaved-1f1b",
        "--chunks",
        "2",
        "--microbatch-size",
        "2",
        "--recompute",
        "full",
        "--sharding",
        "zero1",
        "--json",
    ]);
    let configs = v["configurations"].as_array().unwrap();
    assert_eq!(configs.len(), 1);
    let c = &configs[0];
    assert_eq!(
        (num(c, "tp"), num(c, "pp"), num(c, "dp"), num(c, "chunks")),
        (2.0, 4.0, 2.0, 2.0)
    );
    assert_eq!(c["schedule"], "interleaved-1f1b");
    assert_eq!(c["recompute"], "full");
    assert_eq!(num(c, "microbatches"), 16.0);
    // 32 layers over 8 stages, the last lighter for the head.
    let layers: Vec<u64> = c["layers_per_stage"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect();
    assert_eq!(layers.len(), 8);
    assert_eq!(layers.iter().sum::<u64>(), 32);
    assert!(layers[7] <= layers[0]);
}

#[test]
fn zero3_and_zeropp_run_on_the_fsdp_simulator() {
    let v = json(&[
        "plan",
        "--model",
        "llama2-7b",
        "--gpus",
        "16",
        "--global-batch",
        "64",
        "--tp",
        "2",
        "--pp",
        "2",
        "--sharding",
        "zero3",
        "--schedules",
        "zeropp,zb-v",
        "--microbatch-size",
        "1",
        "--recompute",
        "selective",
        "--top",
        "20",
        "--json",
    ]);
    let configs = v["configurations"].as_array().unwrap();
    let zeropp: Vec<_> = configs
        .iter()
        .filter(|c| c["schedule"] == "zeropp")
        .collect();
    assert!(
        !zeropp.is_empty(),
        "no ZeroPP configuration among {}",
        configs.len()
    );
    for c in configs {
        assert_eq!(c["sharding"], "zero3");
        let group = num(c, "group");
        if c["schedule"] == "zeropp" {
            assert!(group >= 1.0 && num(c, "microbatches") % group == 0.0, "{c}");
        } else {
            assert_eq!(group, 0.0);
        }
        // The gathered parameters and full gradients of a stage live during its windows.
        for mb in c["memory"].as_array().unwrap() {
            assert!(num(mb, "gathered") > 0.0, "{mb}");
            // Shards of 2 bytes of parameters and 12 of optimizer state per parameter.
            assert!(
                (num(mb, "optimizer") - 6.0 * num(mb, "params")).abs() < 1.0,
                "{mb}"
            );
        }
    }
}

fn refused(args: &[&str], needle: &str) {
    let (rc, out, err) = run(args);
    assert_eq!(rc, 2, "{args:?}: {out}{err}");
    assert!(out.is_empty(), "{out}");
    assert!(
        err.starts_with("error: ") && err.trim_end().lines().count() == 1,
        "{err}"
    );
    assert!(err.contains(needle), "{err} lacks {needle}");
}

#[test]
fn impossible_requests_get_one_line_naming_the_change() {
    let base = ["plan", "--model", "llama3-70b", "--global-batch", "64"];
    let with = |extra: &[&'static str]| -> Vec<&str> {
        let mut v = base.to_vec();
        v.extend_from_slice(extra);
        v
    };
    // A tensor-parallel degree that does not divide the heads.
    refused(&with(&["--gpus", "48", "--tp", "3"]), "use 1, 2, 4, 8");
    // A model that fits nowhere: a 405B model on one node of 40 GB accelerators.
    refused(
        &[
            "plan",
            "--model",
            "llama3-405b",
            "--gpus",
            "8",
            "--device",
            "a100-40gb",
            "--global-batch",
            "8",
        ],
        "use at least",
    );
    // More replicas than the batch can feed.
    refused(
        &[
            "plan",
            "--model",
            "llama3-70b",
            "--gpus",
            "64",
            "--dp",
            "64",
            "--global-batch",
            "8",
        ],
        "global batch",
    );
    // Names the planner does not know.
    refused(
        &with(&["--gpus", "16", "--schedule", "nope"]),
        "does not search",
    );
    refused(
        &with(&["--gpus", "16", "--recompute", "half"]),
        "none, selective or full",
    );
    refused(&with(&["--gpus", "16", "--sharding", "zero4"]), "zero3");
    refused(&with(&["--gpus", "16", "--device", "tpu"]), "h100");
    refused(&with(&["--gpus", "0"]), "--gpus");
    refused(&with(&["--gpus", "16", "--top", "0"]), "--top 0");
    refused(&with(&["--gpus", "16", "--seq", "0"]), "--seq 0");
    refused(
        &with(&[
            "--gpus",
            "16",
            "--schedule",
            "zeropp",
            "--sharding",
            "zero1",
        ]),
        "ZeRO-3",
    );
    refused(
        &with(&["--gpus", "16", "--microbatch-size", "3"]),
        "microbatch size of 3",
    );
}
