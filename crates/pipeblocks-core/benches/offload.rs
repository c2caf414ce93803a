//! Below what schedules hold: the engine with host-link transfers, and the searches that choose
//! what to offload and recompute.
//!
//! - `simulate/1f1b+offload/p128/m4096`: 1F1B with every other microbatch offloaded on every
//!   stage (an O and an L each) — the engine's throughput with transfers beside the
//!   computation, against `simulate`'s plain figures;
//! - `fit/v-half/p8/m32/0.25x`: offloading V-Half to a quarter of 1F1B's memory;
//! - `best/p8/m32/0.1x`: the mix of recomputation and offload over every base at a tenth.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use pipeblocks_core::engine::{simulate_net, Net};
use pipeblocks_core::offload::{best, fit, with_offload};
use pipeblocks_core::{generate, Costs, Params, StageCosts};

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("offload");
    group.sample_size(10);
    let costs = StageCosts::uniform(Costs::parse("f=1,b=1,w=1,offload=1").expect("costs"));

    let s = generate("1f1b", &Params::new(128, 4096).expect("sizes")).expect("generate");
    let net = Net::of(&s, &costs).expect("net");
    let r = simulate_net(&s, &net).expect("sim");
    let picks: Vec<(u32, u32)> = (0..128)
        .flat_map(|st| (0..4096).step_by(2).map(move |mb| (st, mb)))
        .collect();
    let o = with_offload(&s, &net, &r, &picks);
    let onet = Net::of(&o, &costs).expect("net");
    group.throughput(Throughput::Elements(o.num_passes() as u64));
    group.bench_function("simulate/1f1b+offload/p128/m4096", |b| {
        b.iter(|| simulate_net(black_box(&o), &onet).expect("sim"))
    });

    group.throughput(Throughput::Elements(1));
    let prm = Params::new(8, 32).expect("sizes").with_costs(costs.clone());
    let vhalf = generate("v-half", &prm).expect("generate");
    group.bench_function("fit/v-half/p8/m32/0.25x", |b| {
        b.iter(|| fit(black_box(&vhalf), &costs, &[2.0; 8]).expect("fit"))
    });
    group.bench_function("best/p8/m32/0.1x", |b| {
        b.iter(|| best(black_box(&prm), 0.8).expect("best"))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
