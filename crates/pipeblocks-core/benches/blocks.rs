//! Building blocks at scale: V-Half for p = 64, m = 1024 (393 216 passes).
//!
//! `v-half expand+squeeze+simulate`: the block repeated and truncated (generate), run in order at
//! the earliest times (squeeze) and measured (simulate); the target is under 50 ms.
//! `v-half with reorder`: the registry's `v-half`, whose warm-up and cool-down are also
//! reordered, then simulated.
//! `auto 0.5x p=32 m=256`: the whole budgeted search under unequal costs; the target is under 1 s.
//! `auto 0.5x p=8 m=32`: the example, where the final hill climb runs its full course.
//! `v-min|v-half|v-zb p=32 m=256 (costs)`: the named V schedules under unequal costs, with both
//! repairs (reorder and unit grid); the target is under 0.1 s each. Run auto on one core with
//! `taskset -c 0 cargo bench -p pipeblocks-core --bench blocks -- auto` (target under 2 s).

use criterion::{criterion_group, criterion_main, Criterion};
use pipeblocks_core::block;
use pipeblocks_core::{generate, Params};
use pipeblocks_core::{simulate, StageCosts};

fn bench(c: &mut Criterion) {
    let cfg = StageCosts::default();
    let mut g = c.benchmark_group("blocks");
    g.sample_size(10);
    g.bench_function("v-half expand+squeeze+simulate p=64 m=1024", |b| {
        b.iter(|| {
            let blk = block::v_half(64).expect("v-half block");
            let s = blk.expand(1024).expect("expand");
            let r = pipeblocks_core::improve::squeeze(&s, &cfg).expect("squeeze");
            std::hint::black_box(r.bubble_rate)
        })
    });
    g.bench_function("v-half with reorder p=64 m=1024", |b| {
        b.iter(|| {
            let s = generate("v-half", &Params::new(64, 1024).unwrap()).expect("v-half");
            let r = simulate(&s, &cfg).expect("simulate");
            std::hint::black_box(r.bubble_rate)
        })
    });
    let mut prm = Params::new(32, 256).unwrap();
    prm = prm.with_costs(pipeblocks_core::StageCosts::uniform(
        pipeblocks_core::Costs::parse("f=1,b=1.3,w=0.7,c=0.05").expect("costs"),
    ));
    prm = prm.with_budget(pipeblocks_core::Budget::Of1f1b(0.5));
    g.bench_function("auto 0.5x p=32 m=256 f=1,b=1.3,w=0.7,c=0.05", |b| {
        b.iter(|| std::hint::black_box(generate("auto", &prm).expect("auto").num_passes()))
    });
    for name in ["v-min", "v-half", "v-zb"] {
        let named = Params::new(32, 256).unwrap().with_costs(prm.costs.clone());
        g.bench_function(format!("{name} p=32 m=256 f=1,b=1.3,w=0.7,c=0.05"), |b| {
            b.iter(|| std::hint::black_box(generate(name, &named).expect(name).num_passes()))
        });
    }
    let small = prm.resized(8, 32).expect("sizes");
    g.bench_function("auto 0.5x p=8 m=32 f=1,b=1.3,w=0.7,c=0.05", |b| {
        b.iter(|| std::hint::black_box(generate("auto", &small).expect("auto").num_passes()))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
