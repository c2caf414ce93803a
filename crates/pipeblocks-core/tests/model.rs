//! The model-level cost model: presets, parsing, and per-stage costs from the formulas.

use pipeblocks_core::model::{DeviceSpec, ModelCosts, ModelSpec};

#[test]
fn gpt_layer_params_are_12h2_plus_13h() {
    let m = ModelSpec::parse("layers=2,hidden=1024,heads=16,seq=512").unwrap();
    let h = 1024.0;
    assert_eq!(m.layer_params(), 12.0 * h * h + 13.0 * h);
}

#[test]
fn presets_have_their_public_sizes() {
    let l7 = ModelSpec::preset("llama-7b").unwrap();
    let n = l7.total_params();
    assert!((6.5e9..7.0e9).contains(&n), "llama-7b has {n} parameters");
    let l13 = ModelSpec::preset("llama-13b").unwrap();
    let n = l13.total_params();
    assert!(
        (12.8e9..13.3e9).contains(&n),
        "llama-13b has {n} parameters"
    );
    let g = ModelSpec::preset("gpt-1.3b").unwrap();
    let n = g.total_params();
    assert!((1.2e9..1.5e9).contains(&n), "gpt-1.3b has {n} parameters");
}

#[test]
fn overrides_and_errors() {
    let m = ModelSpec::parse("llama-7b,seq=2048").unwrap();
    assert_eq!(m.seq, 2048);
    assert_eq!(m.hidden, 4096);
    assert!(ModelSpec::parse("llama-8b").is_err());
    assert!(ModelSpec::parse("layers=2,hidden=100").is_err());
    assert!(ModelSpec::parse("layers=2,hidden=100,heads=3,seq=4").is_err());
    assert!(ModelSpec::parse("layers=2,hidden=96,heads=3,seq=4,depth=1").is_err());
}

#[test]
fn device_parsing() {
    let d = DeviceSpec::parse("flops=989e12,memory=80GiB,bandwidth=50GB/s").unwrap();
    assert_eq!(d.memory, 80.0 * 1024f64.powi(3));
    assert_eq!(d.bandwidth, 50e9);
    let inf = DeviceSpec::parse("bandwidth=inf").unwrap();
    assert!(inf.bandwidth.is_infinite());
    assert!(DeviceSpec::parse("flops=-1").is_err());
    assert!(DeviceSpec::parse("speed=3").is_err());
    assert!(DeviceSpec::parse("memory=lots").is_err());
}

#[test]
fn stage_costs_follow_the_formulas() {
    let m = ModelSpec::parse("layers=4,hidden=1024,heads=16,seq=2048,vocab=0").unwrap();
    let d = DeviceSpec::parse("flops=1e15,eff=1").unwrap();
    let c = ModelCosts::for_stages(&m, 2, &d, 2).unwrap();
    let (s, b, h) = (2048.0, 2.0, 1024.0);
    let f_layer = 24.0 * s * b * h * h + 4.0 * b * s * s * h;
    assert!((c.costs[0].f - 2.0 * f_layer / 1e15).abs() < 1e-12);
    // W is the weight-gradient matmuls only; B + W is twice F up to the attention term.
    let w_layer = 24.0 * s * b * h * h;
    assert!((c.costs[1].w - 2.0 * w_layer / 1e15).abs() < 1e-12);
    let act = 34.0 * s * b * h + 5.0 * 16.0 * s * s * b;
    assert!((c.activation_bytes[0] - 2.0 * act).abs() < 1e-3);
    assert_eq!(c.layers, vec![2, 2]);
    assert!(ModelCosts::for_stages(&m, 1, &d, 5).is_err());
    assert!(ModelCosts::for_stages(&m, 0, &d, 2).is_err());
}
