//! Training-step and matrix-product speed at p=2, and the measured bubble against the simulator
//! fed with the measured per-pass costs (printed before the timings).
//!
//! `cargo bench -p pipeblocks-runtime --bench train`. Each device's matrix products run on one
//! thread (`RAYON_NUM_THREADS=1`), one core per pipeline device.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use candle_core::{Device, Tensor};
use pipeblocks_core::{generate, Params};
use pipeblocks_runtime::data::Corpus;
use pipeblocks_runtime::{ModelConfig, StepReport, TrainConfig, Trainer};

fn config() -> TrainConfig {
    TrainConfig {
        model: ModelConfig::default(),
        batch: 8,
        ..TrainConfig::default()
    }
}

fn bubble_report() {
    let cfg = config();
    let corpus = Corpus::generated(cfg.seed, 200_000);
    for name in ["1f1b", "gpipe", "zb-h1", "interleaved-1f1b"] {
        let s = generate(name, &Params::new(2, 4).unwrap()).expect("registered schedule");
        let mut t = Trainer::new(cfg.clone(), s.clone()).expect("valid config");
        let reports: Vec<StepReport> = (0..30)
            .map(|i| {
                t.step(&corpus.batch(cfg.batch, cfg.model.seq, cfg.seed, i))
                    .expect("step")
            })
            .collect();
        let timed = &reports[10..];
        let n = timed.len() as f64;
        let measured = timed.iter().map(StepReport::bubble_rate).sum::<f64>() / n;
        let simulated = timed
            .iter()
            .map(|r| r.simulate_measured(&s).expect("simulates").bubble_rate)
            .sum::<f64>()
            / n;
        let step = timed.iter().map(|r| r.step_time_s).sum::<f64>() / n;
        let busy = timed
            .iter()
            .map(|r| r.busy_s.iter().sum::<f64>())
            .sum::<f64>()
            / n;
        let tokens = timed[0].tokens as f64;
        eprintln!(
            "{name:>17} p=2 m=4: bubble measured {:5.1}%  simulated {:5.1}%  step {:6.1} ms  {:6.0} tokens/s  {:5.2} GFLOP/s per device",
            100.0 * measured,
            100.0 * simulated,
            1e3 * step,
            tokens / step,
            cfg.model.matmul_flops(tokens as usize) / busy / 1e9
        );
    }
}

fn benches(c: &mut Criterion) {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        std::env::set_var("RAYON_NUM_THREADS", "1");
    }
    bubble_report();

    let cfg = config();
    let tokens = cfg.batch * cfg.model.seq / 4;
    let mut g = c.benchmark_group("matmul");
    for (k, n) in [(64usize, 192usize), (64, 256), (256, 64)] {
        let a = Tensor::randn(0f32, 1.0, (tokens, k), &Device::Cpu).expect("tensor");
        let b = Tensor::randn(0f32, 1.0, (k, n), &Device::Cpu).expect("tensor");
        g.throughput(Throughput::Elements((2 * tokens * k * n) as u64));
        g.bench_function(format!("{tokens}x{k}x{n}"), |bch| {
            bch.iter(|| a.matmul(&b).expect("matmul"))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("train_step");
    g.sample_size(10);
    let corpus = Corpus::generated(cfg.seed, 200_000);
    for name in ["1f1b", "zb-h1"] {
        let s = generate(name, &Params::new(2, 4).unwrap()).expect("registered schedule");
        let mut t = Trainer::new(cfg.clone(), s).expect("valid config");
        let batch = corpus.batch(cfg.batch, cfg.model.seq, cfg.seed, 0);
        g.throughput(Throughput::Elements((cfg.batch * cfg.model.seq) as u64));
        g.bench_function(format!("{name}_p2_m4"), |bch| {
            bch.iter(|| t.step(&batch).expect("step"))
        });
    }
    g.finish();
}

criterion_group!(train, benches);
criterion_main!(train);
