//! Prints the ZeroPP comparison table of `docs/zeropp.md` (markdown): `zeropp` against `bfs` and
//! `1f1b` with FSDP for a model on p pipeline devices and d data-parallel replicas.
//!
//! `cargo run --release -p pipeblocks-core --example zeropp_table -- [model] [p] [m] [d] [device]`
//! (defaults: `gpt-7b 8 32 8 bandwidth=25GB/s`).

use pipeblocks_core::fsdp::{schedule_and_run, FsdpSetup, GIB};
use pipeblocks_core::model::{DeviceSpec, ModelSpec};
use pipeblocks_core::Params;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, d: &str| args.get(i).cloned().unwrap_or_else(|| d.to_string());
    let model = ModelSpec::parse(&arg(0, "gpt-7b"))?;
    let p: u32 = arg(1, "8").parse()?;
    let m: u32 = arg(2, "32").parse()?;
    let dp: u32 = arg(3, "8").parse()?;
    let device = DeviceSpec::parse(&arg(4, "bandwidth=25GB/s"))?;
    let units: Vec<u32> = arg(5, "4,8")
        .split(',')
        .map(|x| x.parse())
        .collect::<Result<_, _>>()?;
    let setup = FsdpSetup {
        model,
        microbatch_size: 1,
        device,
        dp,
    };
    println!(
        "{}, p={p}, m={m}, FSDP d={dp}, {:.0} GB/s, {:.0} TFLOP/s x {}\n",
        setup.model.name,
        setup.device.bandwidth / 1e9,
        setup.device.flops / 1e12,
        setup.device.efficiency
    );
    println!("| schedule | step (ms) | step, free comm (ms) | zeropp (first row) faster by | bubble | peak memory (GiB) | activations (GiB) | parameters (GiB) | traffic/device (GiB) | exposed comm (ms) |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut rows = Vec::new();
    for &u in &units {
        rows.push((format!("zeropp U={u}"), "zeropp", Some(u)));
    }
    rows.push(("bfs + FSDP".to_string(), "bfs", None));
    rows.push(("1f1b + FSDP".to_string(), "1f1b", None));
    rows.push((
        "interleaved-1f1b + FSDP".to_string(),
        "interleaved-1f1b",
        None,
    ));
    let mem: Option<f64> = args.get(6).map(|x| x.parse()).transpose()?;
    let mut results = Vec::new();
    for (label, name, unit) in &rows {
        let mut prm = Params::new(p, m)?;
        if let (Some(u), Some(k)) = (unit, mem) {
            prm = prm
                .with_group(*u)?
                .with_budget(pipeblocks_core::Budget::Of1f1b(k));
        }
        let r = schedule_and_run(name, &prm, &setup)?.result;
        results.push((label.clone(), r));
    }
    let zero = results[0].1.makespan;
    for (label, r) in &results {
        let max = |v: &[f64]| v.iter().cloned().fold(0.0, f64::max);
        println!(
            "| {label} | {:.1} | {:.1} | {:+.0}% | {:.3} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
            r.makespan * 1e3,
            r.compute_only_makespan * 1e3,
            (r.makespan / zero - 1.0) * 100.0,
            r.compute.bubble_rate,
            r.max_peak_memory() / GIB,
            max(&r.peak_activation) / GIB,
            max(&r.peak_param_memory) / GIB,
            max(&r.comm_bytes) / GIB,
            r.max_exposed_comm() * 1e3,
        );
    }
    Ok(())
}
