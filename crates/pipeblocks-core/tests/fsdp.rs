//! The FSDP simulator's traffic, exposure and memory, and the ZeroPP comparison.

use pipeblocks_core::fsdp::{
    run, schedule_and_run, simulate_fsdp, validate_plan, Action, FsdpConfig, FsdpPlan, FsdpResult,
    FsdpSetup,
};
use pipeblocks_core::model::{DeviceSpec, ModelSpec};
use pipeblocks_core::registry::{generate, registry};
use pipeblocks_core::{validate, Budget, Params, Schedule, StageCosts};

fn setup(model: &str, device: &str, dp: u32) -> FsdpSetup {
    FsdpSetup {
        model: ModelSpec::parse(model).unwrap(),
        microbatch_size: 1,
        device: DeviceSpec::parse(device).unwrap(),
        dp,
    }
}

fn simulate(name: &str, prm: &Params, unit: Option<u32>, st: &FsdpSetup) -> FsdpResult {
    let prm = match unit {
        Some(u) => prm.clone().with_group(u).unwrap(),
        None => prm.clone(),
    };
    let run = schedule_and_run(name, &prm, st).unwrap();
    let (s, window, r) = (run.schedule, run.window, run.result);
    validate(&s).unwrap();
    let want = if name == "zeropp" {
        unit.unwrap_or(window)
    } else {
        prm.microbatches()
    };
    assert_eq!(window, want, "{name}'s gather window");
    r
}

/// Parameter traffic of a middle stage, per layer, in parameter elements: 2 all-gathers and
/// 1 reduce-scatter of the layer's 12h² + 13h parameters per unit, i.e. 36·N·h²/U (+ the 13h
/// biases and norms) when U divides N.
#[test]
fn zeropp_traffic_is_36_n_h2_over_u_per_layer() {
    let h = 256.0;
    let st = setup(
        "layers=16,hidden=256,heads=4,seq=128,vocab=1000",
        "bandwidth=50GB/s",
        4,
    );
    let n = 16u32;
    for unit in [1, 2, 4, 8, 16] {
        let mut prm = Params::new(2, n).unwrap();
        prm = prm.with_chunks(2).unwrap();
        for name in ["zeropp", "bfs"] {
            if name == "bfs" && unit != n {
                continue;
            }
            let r = simulate(name, &prm, Some(unit), &st);
            // Stage 1 of 4 holds 4 layers and no embedding or head.
            let per_layer = r.stage_traffic[1] / 2.0 / 4.0;
            let formula = 36.0 * n as f64 * h * h / unit as f64;
            let rel = (per_layer - formula).abs() / formula;
            assert!(
                rel < 0.01,
                "{name} U={unit}: {per_layer} vs {formula} ({rel})"
            );
        }
    }
}

#[test]
fn infinite_bandwidth_exposes_nothing_and_memory_stays_sane() {
    let st = setup("gpt-1.3b", "bandwidth=inf", 8);
    for p in [2u32, 4] {
        let prm = Params::new(p, 8).unwrap();
        for g in registry() {
            let prm = if g.uses.group {
                prm.clone().with_group(4).unwrap()
            } else {
                prm.clone()
            };
            let Ok(s) = generate(g.name, &prm.clone().with_costs(st.costs())) else {
                continue;
            };
            let done = run(s, g.fsdp_window(&prm), &st).unwrap();
            let (plan, r) = (done.plan, done.result);
            assert!(plan.counts().gathers > 0);
            assert!(
                r.max_exposed_comm() == 0.0,
                "{}: {:?}",
                g.name,
                r.exposed_comm
            );
            assert!(
                (r.makespan - r.compute_only_makespan).abs() < 1e-12,
                "{}",
                g.name
            );
            for (d, curve) in r.memory.iter().enumerate() {
                let shard = r.shard_memory[d];
                for pt in curve {
                    assert!(pt.params >= shard * (1.0 - 1e-9), "{}: {pt:?}", g.name);
                    assert!(pt.activation >= -1e-6, "{}: {pt:?}", g.name);
                }
                let last = curve.last().unwrap();
                assert!((last.params - shard).abs() < 1e-3 * shard, "{}", g.name);
                assert!(last.activation.abs() < 1.0, "{}", g.name);
            }
        }
    }
}

#[test]
fn finite_bandwidth_costs_time_and_zeropp_moves_more_than_bfs() {
    let st = setup("gpt-1.3b", "bandwidth=10GB/s", 8);
    let mut prm = Params::new(4, 8).unwrap();
    prm = prm.with_chunks(2).unwrap();
    let z = simulate("zeropp", &prm, Some(2), &st);
    let b = simulate("bfs", &prm, None, &st);
    assert!(z.makespan > z.compute_only_makespan);
    assert!(z.max_exposed_comm() > 0.0);
    let total = |r: &FsdpResult| r.comm_bytes.iter().sum::<f64>();
    assert!(
        (total(&z) / total(&b) - 4.0).abs() < 1e-9,
        "U=2 of m=8 moves 4x bfs"
    );
}

/// The README claim: a 7B-class GPT on p=8 pipeline devices, FSDP over d=8, 100 GB/s per device
/// (parameter traffic is ~10% of the step), m=8: ZeroPP with U=4 under 1F1B's activation budget
/// has a shorter step than bfs+FSDP and 1f1b+FSDP, at a lower peak memory than either.
#[test]
fn zeropp_beats_bfs_and_1f1b_with_fsdp_on_a_7b_gpt() {
    let st = setup("gpt-7b", "bandwidth=100GB/s", 8);
    let mut prm = Params::new(8, 8).unwrap();
    let bfs = simulate("bfs", &prm, None, &st);
    let ofob = simulate("1f1b", &prm, None, &st);
    prm = prm.with_budget(Budget::Of1f1b(1.0));
    let z = simulate("zeropp", &prm, Some(4), &st);
    assert!(z.max_exposed_comm() > 0.0, "traffic must matter");
    for (name, other) in [("bfs", &bfs), ("1f1b", &ofob)] {
        assert!(
            z.makespan < other.makespan,
            "zeropp {} vs {name} {}",
            z.makespan,
            other.makespan
        );
        assert!(
            z.max_peak_memory() <= other.max_peak_memory(),
            "zeropp peak {} vs {name} {}",
            z.max_peak_memory(),
            other.max_peak_memory()
        );
    }
}

fn unit_fsdp(s: &Schedule, dp: u32, bw: f64) -> FsdpConfig {
    FsdpConfig::new(dp, bw, 0.0, vec![1.0; s.stages as usize])
}

#[test]
fn derived_plans_validate_for_every_registered_schedule() {
    for g in registry() {
        let s = generate(g.name, &Params::new(4, 8).unwrap()).unwrap();
        let cfg = StageCosts::default();
        let f = unit_fsdp(&s, 4, 1.0);
        let plan = FsdpPlan::derive(&s, s.microbatches, &cfg, &f).unwrap();
        validate_plan(&s, &plan).unwrap();
        let r = simulate_fsdp(&s, &plan, &cfg, &f).unwrap();
        assert!(r.makespan >= r.compute_only_makespan - 1e-9, "{}", g.name);
    }
}

#[test]
fn plan_errors_name_the_problem() {
    let s = generate("1f1b", &Params::new(2, 2).unwrap()).unwrap();
    let cfg = StageCosts::default();
    let f = unit_fsdp(&s, 2, 1.0);
    let mut plan = FsdpPlan::derive(&s, 2, &cfg, &f).unwrap();
    // Drop the first gather of device 0.
    let i = plan.lists[0]
        .iter()
        .position(|a| matches!(a, Action::Unshard(_)))
        .unwrap();
    plan.lists[0].remove(i);
    let e = validate_plan(&s, &plan).unwrap_err().to_string();
    assert!(e.contains("not gathered"), "{e}");
    let mut plan = FsdpPlan::derive(&s, 2, &cfg, &f).unwrap();
    plan.lists[1].retain(|a| !matches!(a, Action::ReduceGrad(_)));
    let e = validate_plan(&s, &plan).unwrap_err().to_string();
    assert!(e.contains("never reduce-scattered"), "{e}");
    let mut plan = FsdpPlan::derive(&s, 2, &cfg, &f).unwrap();
    plan.lists[0].insert(0, Action::Unshard(1));
    let e = validate_plan(&s, &plan).unwrap_err().to_string();
    assert!(e.contains("does not hold"), "{e}");
}

#[test]
fn collective_time_is_the_ring_formula() {
    let f = FsdpConfig::new(8, 100.0, 0.5, vec![]);
    assert!((f.collective_time(800.0) - (0.5 + 7.0)).abs() < 1e-12);
    let one = FsdpConfig::new(1, 100.0, 0.5, vec![]);
    assert_eq!(one.collective_time(800.0), 0.0);
}

#[test]
fn a_slow_gather_is_exposed_once_at_the_start() {
    // One device, one stage, 1 microbatch: gather (4), F, B, W, reduce-scatter (4).
    let s = generate("zeropp", &Params::new(1, 1).unwrap()).unwrap();
    let cfg = StageCosts::default();
    let mut f = FsdpConfig::new(2, 1.0, 0.0, vec![4.0; s.stages as usize]);
    f.param_bytes = 2.0;
    let plan = FsdpPlan::derive(&s, 1, &cfg, &f).unwrap();
    let r = simulate_fsdp(&s, &plan, &cfg, &f).unwrap();
    assert!(r.exposed_comm[0] > 0.0);
    assert!(r.makespan > r.compute_only_makespan);
    // Collective time 1/2 · 8 bytes / 1 = 4 each; 6 collectives for 2 chunks.
    assert_eq!(r.collectives[0].len(), 6);
    assert!((r.comm_time[0] - 24.0).abs() < 1e-9);
}
