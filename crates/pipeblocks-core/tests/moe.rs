//! Mixture of experts in the model cost model (issue 21): parameters and all-to-all from the
//! shape, the communication an overlapped pair hides, and where DualPipe's overlap pays.

use pipeblocks_core::compare::{compare, Row};
use pipeblocks_core::model::{DeviceSpec, ModelCosts, ModelSpec};
use pipeblocks_core::{generate, simulate, Params, StageCosts};

#[test]
fn moe_presets_have_their_public_sizes() {
    // Mixtral 8x7B: 46.7B parameters, 12.9B active per token.
    let m = ModelSpec::preset("mixtral-8x7b").unwrap();
    let n = m.total_params();
    assert!((46.0e9..47.5e9).contains(&n), "mixtral has {n} parameters");
    let active = f64::from(m.layers) * m.matmul_params() + 2.0 * 32000.0 * 4096.0;
    assert!((12.5e9..13.3e9).contains(&active), "mixtral runs {active}");
    // DeepSeek-V3: 671B parameters, 37B active; its three dense layers taken as MoE ones add
    // 33B (5%), its latent attention taken as multi-head attention 1B.
    let d = ModelSpec::preset("deepseek-v3").unwrap();
    let n = d.total_params();
    assert!((671e9..1.06 * 671e9).contains(&n), "deepseek-v3 has {n}");
    let active = f64::from(d.layers) * d.matmul_params();
    assert!(
        (0.95 * 37e9..1.05 * 37e9).contains(&active),
        "deepseek-v3 runs {active}"
    );
}

#[test]
fn moe_keys_parse_and_bad_ones_are_refused() {
    let m = ModelSpec::parse("llama-7b,experts=8,topk=2,ep=4").unwrap();
    let e = m.moe.unwrap();
    assert_eq!((e.experts, e.top_k, e.expert_ffn, e.ep), (8, 2, 11008, 4));
    let dense = ModelSpec::parse("mixtral-8x7b,experts=0").unwrap();
    assert!(dense.moe.is_none());
    for (text, why) in [
        ("llama-7b,topk=2", "add experts="),
        ("llama-7b,experts=8,topk=9", "a token runs 1 to"),
        ("llama-7b,experts=8,ep=3", "ep=3 does not divide experts=8"),
        ("llama-7b,experts=8,ep=0", "ep is at least 1"),
    ] {
        let e = ModelSpec::parse(text).unwrap_err().to_string();
        assert!(e.contains(why), "{text}: {e}");
    }
}

/// The all-to-all per layer and microbatch: dispatch and combine of `s·b·k·h` 16-bit values,
/// `(d−1)/d` of them leaving the device, over the node's link up to 8 devices and the network's
/// beyond; none with one expert-parallel device or a dense model.
#[test]
fn the_all_to_all_follows_the_volume_and_the_link() {
    let dev = DeviceSpec::parse("flops=1e15,eff=1,bandwidth=50GB/s,intra=400GB/s").unwrap();
    let a2a = |ep: u32| {
        let m = ModelSpec::parse(&format!(
            "layers=4,hidden=1024,heads=8,seq=1024,vocab=1000,experts=16,topk=2,ep={ep}"
        ))
        .unwrap();
        let c = ModelCosts::for_stages(&m, 2, &dev, 2).unwrap();
        c.hidden.first().map_or(0.0, |h| h[0])
    };
    let bytes = |d: f64| 1024.0 * 2.0 * 2.0 * 1024.0 * 2.0 * (d - 1.0) / d;
    // Two layers per stage, two exchanges each.
    assert_eq!(a2a(1), 0.0);
    assert!(
        (a2a(8) - 4.0 * bytes(8.0) / 400e9).abs() < 1e-12,
        "{}",
        a2a(8)
    );
    assert!(
        (a2a(16) - 4.0 * bytes(16.0) / 50e9).abs() < 1e-12,
        "{}",
        a2a(16)
    );
    let dense = ModelSpec::parse("layers=4,hidden=1024,heads=8,seq=1024,vocab=1000").unwrap();
    assert!(ModelCosts::for_stages(&dense, 2, &dev, 2)
        .unwrap()
        .hidden
        .is_empty());
}

/// An MoE model whose expert all-to-all takes as long as its computation: the device's network
/// bandwidth is set so that the forward's exchange equals its computation.
fn balanced_moe() -> (ModelSpec, DeviceSpec) {
    let m = ModelSpec::parse("layers=32,hidden=4096,heads=32,seq=4096,vocab=32000,gated=1,ffn=14336,experts=64,topk=4,expert_ffn=4096,ep=16").unwrap();
    let probe = DeviceSpec::parse("h100").unwrap();
    let c = ModelCosts::for_stages(&m, 1, &probe, 16).unwrap();
    let (f, k) = (c.costs[1].f, c.hidden[1][0]);
    let bw = probe.bandwidth * k / (f - k);
    let dev = DeviceSpec::parse(&format!("h100,bandwidth={bw}")).unwrap();
    let c = ModelCosts::for_stages(&m, 1, &dev, 16).unwrap();
    let (f, k) = (c.costs[1].f, c.hidden[1][0]);
    assert!(
        (k / (f - k) - 1.0).abs() < 0.01,
        "exchange {k} vs computation {}",
        f - k
    );
    (m, dev)
}

fn makespans(prm: &Params) -> std::collections::HashMap<String, f64> {
    compare(prm)
        .unwrap()
        .into_iter()
        .filter_map(|r| match r {
            Row::Ok(s) => Some((s.schedule.clone(), s.makespan)),
            Row::NotApplicable { .. } => None,
        })
        .collect()
}

/// What the overlapped pairs of a schedule hide on its busiest device: each pair's halves in
/// turn less the pair.
fn hidden_by_pairs(prm: &Params, name: &str) -> f64 {
    let s = generate(name, prm).unwrap();
    let mut plain = s.clone();
    plain.pairs.clear();
    let (r, q) = (
        simulate(&s, &prm.costs).unwrap(),
        simulate(&plain, &prm.costs).unwrap(),
    );
    q.busy
        .iter()
        .zip(&r.busy)
        .map(|(a, b)| a - b)
        .fold(0.0, f64::max)
}

/// The check: on an MoE model whose all-to-all is as long as its compute, DualPipeV is
/// ahead of ZB-V and 1F1B by about the communication its pairs hide; on a dense model with
/// free communication its pairs hide nothing, and it gains nothing from them (it loses a
/// little: a pair starts when both halves can).
#[test]
fn dualpipev_wins_by_the_hidden_all_to_all_and_not_on_dense_models() {
    let (m, dev) = balanced_moe();
    let prm = Params::new(8, 32)
        .unwrap()
        .with_costs(StageCosts::model(m, 1, dev));
    let t = makespans(&prm);
    let hidden = hidden_by_pairs(&prm, "dualpipev");
    let (dpv, zbv, one) = (t["dualpipev"], t["zb-v"], t["1f1b"]);
    eprintln!("balanced MoE p=8 m=32: dualpipev {dpv} zb-v {zbv} 1f1b {one} hidden {hidden}");
    assert!(hidden > 0.2 * dpv, "pairs hide {hidden} of {dpv}");
    for (other, name) in [(zbv, "zb-v"), (one, "1f1b")] {
        let gain = other - dpv;
        assert!(gain > 0.0, "dualpipev {dpv} vs {name} {other}");
        if name == "zb-v" {
            // ZB-V's own bubble is smaller, so the gain is the hidden time less that.
            assert!(
                (0.6 * hidden..=1.1 * hidden).contains(&gain),
                "gain over zb-v {gain}, hidden {hidden}"
            );
        }
    }
    // Dense, communication free: the pairs change nothing.
    let dense = ModelSpec::preset("llama2-7b").unwrap();
    let prm = Params::new(8, 32).unwrap().with_costs(StageCosts::model(
        dense,
        1,
        DeviceSpec::parse("h100").unwrap(),
    ));
    assert!(hidden_by_pairs(&prm, "dualpipev").abs() < 1e-12);
    let s = generate("dualpipev", &prm).unwrap();
    let mut plain = s.clone();
    plain.pairs.clear();
    // A pair waits for the inputs of both halves, so with nothing to hide it can only cost.
    let (paired, in_turn) = (
        simulate(&s, &prm.costs).unwrap().makespan,
        simulate(&plain, &prm.costs).unwrap().makespan,
    );
    assert!(paired >= in_turn - 1e-12, "{paired} vs {in_turn}");
}

#[test]
fn the_planner_refuses_experts_with_the_command_to_use() {
    use pipeblocks_core::plan::{Cluster, Fixed, Request};
    let req = Request {
        model: ModelSpec::preset("mixtral-8x7b").unwrap(),
        cluster: Cluster {
            gpus: 64,
            gpus_per_node: 8,
            device: DeviceSpec::preset("h100").unwrap(),
        },
        global_batch: 512,
        fixed: Fixed::default(),
        top: 1,
        p2p_blocking: false,
    };
    let e = pipeblocks_core::plan::plan(&req, |_, _| {}).unwrap_err();
    assert!(e.to_string().contains("compare --model"), "{e}");
}

/// `auto` overlaps forwards and backwards where pairs hide the all-to-all, within its budget,
/// and beats every schedule without pairs that fits it.
#[test]
fn auto_pairs_where_they_pay_within_its_budget() {
    let (m, dev) = balanced_moe();
    let costs = StageCosts::model(m, 1, dev);
    let prm = Params::new(4, 16).unwrap().with_costs(costs.clone());
    let s = generate("auto", &prm).unwrap();
    let r = simulate(&s, &costs).unwrap();
    let budget = pipeblocks_core::params::one_f_one_b_peak(4, 16, &costs).unwrap();
    assert!(
        r.max_peak() <= budget + 1e-9,
        "{} over {budget}",
        r.max_peak()
    );
    assert!(!s.pairs.is_empty());
    for name in ["1f1b", "zb-h1", "zb-v", "v-zb"] {
        let other = simulate(&generate(name, &prm).unwrap(), &costs).unwrap();
        assert!(
            r.makespan < other.makespan,
            "auto {} vs {name} {}",
            r.makespan,
            other.makespan
        );
    }
}
