//! Simulator throughput at p = 128, m = 4096 (target: ≥ 5 million simulated passes per second on
//! one core): the event engine running fixed lists, and validation plus simulation.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use pipeblocks_core::engine::{simulate_net, Net};
use pipeblocks_core::{generate, simulate, validate, Params, StageCosts};

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("simulate");
    group.sample_size(10);
    let costs = StageCosts::default();
    for name in ["1f1b", "zb-h1"] {
        let s = generate(name, &Params::new(128, 4096).expect("sizes")).expect("generate");
        let net = Net::of(&s, &costs).expect("costs");
        group.throughput(Throughput::Elements(s.num_passes() as u64));
        group.bench_function(format!("{name}/p128/m4096"), |b| {
            b.iter(|| simulate_net(black_box(&s), &net).expect("sim"))
        });
        group.bench_function(format!("{name}/p128/m4096/validate+simulate"), |b| {
            b.iter(|| {
                validate(black_box(&s)).expect("valid");
                simulate(&s, &costs).expect("sim")
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
