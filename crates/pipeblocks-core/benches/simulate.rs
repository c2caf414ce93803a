//! Simulator throughput at p = 128, m = 4096 (target: ≥ 5 million simulated passes per second).

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use pipeblocks_core::generators::{generate, Params};
use pipeblocks_core::simulate::{simulate_graph, SimConfig};
use pipeblocks_core::validate;

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("simulate");
    group.sample_size(10);
    for name in ["1f1b", "zb-h1"] {
        let s = generate(name, &Params::new(128, 4096)).expect("generate");
        let g = validate(&s).expect("valid");
        group.throughput(Throughput::Elements(s.num_passes() as u64));
        group.bench_function(format!("{name}/p128/m4096"), |b| {
            b.iter(|| simulate_graph(black_box(&s), &g, &SimConfig::default()).expect("sim"))
        });
        group.bench_function(format!("{name}/p128/m4096/validate+simulate"), |b| {
            b.iter(|| {
                let g = validate(black_box(&s)).expect("valid");
                simulate_graph(&s, &g, &SimConfig::default()).expect("sim")
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
