//! DualPipeV (issue 21, first part): its order is complete, dependency-safe and deadlock-free at
//! every size it accepts, it holds DualPipe's published activation memory (`PP + 1` chunk
//! activations per device for `PP = 2p` stages), and it refuses fewer than `2p` microbatches.

use pipeblocks_core::{generate, simulate, validate, Costs, Params, StageCosts};
use proptest::prelude::*;

proptest! {
    #[test]
    fn dualpipev_is_valid_and_holds_pp_plus_one_chunks(p in 1u32..=10, extra in 0u32..=12, b in 0.5f64..2.0, w in 0.25f64..1.5) {
        let m = 2 * p + extra;
        let (b, w) = ((b * 100.0).round() / 100.0, (w * 100.0).round() / 100.0);
        let costs = Costs::parse(&format!("f=1,b={b:.2},w={w:.2}")).unwrap();
        let prm = Params::new(p, m).unwrap().with_costs(StageCosts::uniform(costs));
        let s = generate("dualpipev", &prm).unwrap();
        prop_assert!(validate(&s).is_ok());
        prop_assert_eq!(s.stages, 2 * p);
        let r = simulate(&s, &prm.costs).unwrap();
        // One unit is a microbatch on a stage of a p-stage split: two chunks of this V.
        let chunks = 2.0 * r.max_peak();
        prop_assert!((chunks - f64::from(2 * p + 1)).abs() < 1e-9, "peak {} chunks, PP + 1 = {}", chunks, 2 * p + 1);
        // Every device does all of both its stages' work.
        let work = 2.0 * f64::from(m) * (1.0 + b + w);
        for busy in &r.busy {
            prop_assert!((busy - work).abs() < 1e-6 * work);
        }
    }
}

#[test]
fn too_few_microbatches_are_refused_with_the_smallest_count() {
    let e = generate("dualpipev", &Params::new(4, 7).unwrap()).unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("at least twice") && text.contains("use 8"),
        "{text}"
    );
}

/// The idle time of DualPipeV's last device (the one with the most overlapped pairs): makespan
/// less its work, each pair at its cost `F&B`.
fn last_device_bubble(p: u32, m: u32, costs: Costs) -> (f64, f64) {
    let prm = Params::new(p, m)
        .unwrap()
        .with_costs(StageCosts::uniform(costs));
    let s = generate("dualpipev", &prm).unwrap();
    let r = simulate(&s, &prm.costs).unwrap();
    let fb = costs.f.max(costs.bw_cost()) + costs.overlap * costs.f.min(costs.bw_cost());
    let closed = f64::from(p - 1) * (fb + costs.bw_cost() - 3.0 * costs.w);
    (r.makespan - r.busy[p as usize - 1], closed)
}

/// DualPipe's published bubble, `(PP/2 − 1)(F&B + B − 3W)` in its notation (`B` the full
/// backward, `W` its weight part, `F&B` an overlapped pair; `PP/2 = p` for DualPipeV), is exact
/// where its derivation's costs hold (F, B and W alike) for any overlap.
#[test]
fn dualpipev_bubble_is_dualpipes_closed_form() {
    for p in 1..=8u32 {
        for m in [2 * p, 2 * p + 1, 3 * p + 2, 6 * p] {
            for (t, o) in [(1.0, 1.0), (1.0, 0.5), (2.0, 0.25), (0.5, 0.0)] {
                let costs = Costs::parse(&format!("f={t},b={t},w={t},overlap={o}")).unwrap();
                let (bubble, closed) = last_device_bubble(p, m, costs);
                assert!(
                    (bubble - closed).abs() < 1e-9,
                    "p={p} m={m} t={t} overlap={o}: bubble {bubble}, closed form {closed}"
                );
            }
        }
    }
}

proptest! {
    /// Elsewhere, in the regime the authors' figures sit in (an input backward at least the
    /// forward, a weight backward at most it), the closed form bounds the bubble from above;
    /// a backward shorter than the forward can exceed it.
    #[test]
    fn dualpipev_bubble_is_at_most_the_closed_form(p in 1u32..=8, extra in 0u32..=10, b in 1.0f64..2.5, w in 0.2f64..1.0, o in 0.0f64..=1.0) {
        let costs = Costs::parse(&format!("f=1,b={b},w={w},overlap={o}")).unwrap();
        let (bubble, closed) = last_device_bubble(p, 2 * p + extra, costs);
        prop_assert!(bubble <= closed + 1e-9, "bubble {} above the closed form {}", bubble, closed);
    }
}
