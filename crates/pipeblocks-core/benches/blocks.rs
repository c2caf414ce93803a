//! Building blocks at scale: V-Half for p = 64, m = 1024 (393 216 passes).
//!
//! `v-half expand+squeeze+simulate`: the block repeated and truncated (generate), run in order at
//! the earliest times (squeeze) and measured (simulate); the target is under 50 ms.
//! `v-half with reorder`: the registry's `v-half`, whose warm-up and cool-down are also
//! reordered, then simulated.

use criterion::{criterion_group, criterion_main, Criterion};
use pipeblocks_core::block;
use pipeblocks_core::generators::{generate, Params};
use pipeblocks_core::{simulate, SimConfig};

fn bench(c: &mut Criterion) {
    let cfg = SimConfig::default();
    let mut g = c.benchmark_group("blocks");
    g.sample_size(10);
    g.bench_function("v-half expand+squeeze+simulate p=64 m=1024", |b| {
        b.iter(|| {
            let blk = block::v_half(64).expect("v-half block");
            let s = blk.expand(1024).expect("expand");
            let r = block::squeeze(&s, &cfg).expect("squeeze");
            std::hint::black_box(r.bubble_rate)
        })
    });
    g.bench_function("v-half with reorder p=64 m=1024", |b| {
        b.iter(|| {
            let s = generate("v-half", &Params::new(64, 1024)).expect("v-half");
            let r = simulate(&s, &cfg).expect("simulate");
            std::hint::black_box(r.bubble_rate)
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
