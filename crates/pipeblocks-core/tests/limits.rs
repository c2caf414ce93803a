//! Sizes and values beyond what pipeblocks handles are refused at the edge, before anything is
//! allocated, with an error naming the limit; large sizes within the limits are answered; every
//! figure stays finite.

use pipeblocks_core::block::Block;
use pipeblocks_core::error::{Error, Param};
use pipeblocks_core::format::{json, torch_csv};
use pipeblocks_core::model::{DeviceSpec, ModelSpec};
use pipeblocks_core::params::limits;
use pipeblocks_core::{generate, simulate, validate, Budget, Costs, Params, StageCosts};

fn too_large(e: &Error) -> bool {
    matches!(e, Error::TooLarge { .. })
}

#[test]
fn sizes_beyond_the_limits_are_refused_with_the_limit() {
    let e = Params::new(limits::DEVICES + 1, 4).unwrap_err();
    assert!(too_large(&e), "{e}");
    assert!(e.to_string().contains("16384"), "{e}");
    assert_eq!(e.suggestion().map(|f| f.param), Some(Param::Devices));
    assert!(too_large(
        &Params::new(4, limits::MICROBATCHES + 1).unwrap_err()
    ));
    let prm = Params::new(4, 4).unwrap();
    assert!(too_large(
        &prm.clone().with_chunks(limits::CHUNKS + 1).unwrap_err()
    ));
    assert!(too_large(&prm.with_chunks(u32::MAX).unwrap_err()));
    // Within each limit alone, but too many passes together: refused before allocating.
    let e = generate("v-half", &Params::new(16, 1_000_000).unwrap()).unwrap_err();
    assert!(too_large(&e) && e.to_string().contains("passes"), "{e}");
    // The frontier runs up to 32 searches.
    let prm = Params::new(8, (limits::FRONTIER_PASSES / 48 + 1) as u32).unwrap();
    let e = pipeblocks_core::search::frontier(&prm, |_, _| {}).unwrap_err();
    assert!(
        too_large(&e) && e.to_string().contains("fewer microbatches"),
        "{e}"
    );
    // zb-v runs dozens of candidates: it takes fewer passes, and points to its block twin.
    let e = generate("zb-v", &Params::new(8, 100_000).unwrap()).unwrap_err();
    assert!(too_large(&e) && e.to_string().contains("v-zb"), "{e}");
    let e = generate(
        "bfs",
        &Params::new(16_384, 1_000)
            .unwrap()
            .with_chunks(1_024)
            .unwrap(),
    );
    assert!(too_large(&e.unwrap_err()));
    // The searches take fewer.
    let e = generate("auto", &Params::new(limits::SEARCH_DEVICES + 1, 2).unwrap()).unwrap_err();
    assert!(too_large(&e), "{e}");
    assert!(e.to_string().contains("named schedule"), "{e}");
}

#[test]
fn large_sizes_within_the_limits_are_answered() {
    // p = 4096 devices: every schedule that scales to it (quadratic steps in p used to run for
    // minutes at p = 100 000, and a wrapped 2p panicked).
    for name in [
        "1f1b", "zb-h1", "zb-h2", "v-min", "v-half", "v-zb", "zb-v", "zeropp",
    ] {
        let s = generate(name, &Params::new(4_096, 2).unwrap()).unwrap();
        let r = simulate(&s, &StageCosts::default()).unwrap();
        assert!(r.makespan.is_finite(), "{name}");
    }
    // A million microbatches on a few devices.
    let s = generate("1f1b", &Params::new(2, 1_000_000).unwrap()).unwrap();
    let r = simulate(&s, &StageCosts::default()).unwrap();
    assert_eq!(r.peak_activation[0], 2.0);
    // A block schedule past the size where the warm-up repair is skipped: still complete,
    // within its block's memory bound, and its bubble no worse than the repaired one's at a
    // size just below (the edges are a constant; the steady state has no bubble).
    let prm = |m| Params::new(4, m).unwrap();
    let big = 1 + limits::REPAIR_PASSES / 24;
    let s = generate("v-half", &prm(big as u32)).unwrap();
    assert!(s.num_passes() as u64 > limits::REPAIR_PASSES);
    validate(&s).unwrap();
    let r = simulate(&s, &StageCosts::default()).unwrap();
    let small = simulate(
        &generate("v-half", &prm(64)).unwrap(),
        &StageCosts::default(),
    )
    .unwrap();
    assert!(r.max_peak() <= small.max_peak() + 1e-9);
    assert!(
        r.bubble_rate < small.bubble_rate,
        "{} {}",
        r.bubble_rate,
        small.bubble_rate
    );
}

#[test]
fn files_that_declare_huge_sizes_are_refused_not_allocated() {
    // A looped placement whose stage count wrapped to 0 used to validate as "0 stages".
    let text = r#"{"format": "pipeblocks-schedule", "version": 1, "name": "x", "devices": 2,
        "stages": 0, "microbatches": 1, "placement": {"kind": "looped", "chunks": 2147483648},
        "lists": [[], []]}"#;
    let s = json::read(text).unwrap();
    assert!(validate(&s).is_err());
    // A 27-byte CSV naming microbatch 4294967294 used to allocate 137 GB.
    let e = torch_csv::read("0F4294967294\n", "x").unwrap_err();
    assert!(too_large(&e), "{e}");
    assert!(too_large(
        &torch_csv::read("4294967295F0\n", "x").unwrap_err()
    ));
    // A block with a huge period or offsets.
    let block = r#"{"format": "pipeblocks-block", "version": 1, "name": "b", "devices": 1,
        "placement": {"kind": "sequential"}, "period": 4294967295,
        "passes": [{"kind": "F", "stage": 0, "offset": 4294967290},
                   {"kind": "BW", "stage": 0, "offset": 4294967294}]}"#;
    let e = Block::from_json(block).unwrap().analyse().unwrap_err();
    assert!(e.to_string().contains("period is at most"), "{e}");
}

#[test]
fn values_that_would_overflow_are_refused() {
    for bad in ["f=1e300", "c=1e16", "bw=inf"] {
        assert!(Costs::parse(bad).is_err(), "{bad}");
    }
    assert!(ModelSpec::parse("layers=2,hidden=4611686018427387904,heads=1,seq=8").is_err());
    assert!(DeviceSpec::parse("flops=1e-300").is_err());
    assert!(DeviceSpec::parse("bandwidth=1e-30GB/s").is_err());
    // The largest costs accepted still give finite figures.
    let costs = StageCosts::uniform(Costs {
        f: limits::VALUE,
        b: limits::VALUE,
        w: limits::VALUE,
        bw: None,
        comm: limits::VALUE,
        overlap: 1.0,
        r: None,
        keep: None,
        offload: None,
        selective: None,
    });
    let prm = Params::new(64, 512).unwrap().with_costs(costs.clone());
    for name in ["1f1b", "zb-h1", "v-half"] {
        let r = simulate(&generate(name, &prm).unwrap(), &costs).unwrap();
        assert!(
            r.makespan.is_finite() && r.bubble_rate.is_finite(),
            "{name}"
        );
    }
    // A huge budget is capped, not multiplied into infinity.
    let prm = Params::new(4, 8)
        .unwrap()
        .with_budget(Budget::Of1f1b(1e300));
    assert!(generate("auto", &prm).is_ok());
}
