//! The planner at the scale: Llama 3 70B on 1024 H100s (global batch 2048), the whole
//! search with every schedule, sharding and recompute; the target is under 10 s (about 4 s on
//! this 2-core machine). `plan 256` is the README's example.

use criterion::{criterion_group, criterion_main, Criterion};
use pipeblocks_core::model::{DeviceSpec, ModelSpec};
use pipeblocks_core::plan::{plan, Cluster, Fixed, Request};

fn request(gpus: u32, batch: u32) -> Request {
    Request {
        model: ModelSpec::parse("llama3-70b").expect("preset"),
        cluster: Cluster {
            gpus,
            gpus_per_node: 8,
            device: DeviceSpec::preset("h100").expect("preset"),
        },
        global_batch: batch,
        fixed: Fixed::default(),
        top: 5,
        p2p_blocking: true,
    }
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("plan");
    g.sample_size(10);
    for (gpus, batch) in [(256, 1024), (1024, 2048)] {
        let req = request(gpus, batch);
        g.bench_function(format!("llama3-70b on {gpus} h100"), |b| {
            b.iter(|| {
                let r = plan(&req, |_, _| {}).expect("plan");
                std::hint::black_box(r.best[0].iteration_seconds)
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
