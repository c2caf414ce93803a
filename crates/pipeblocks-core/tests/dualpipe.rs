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

proptest! {
    /// DualPipe (bidirectional, `p` even): complete, dependency-safe and deadlock-free; twice
    /// 1F1B's parameters per device; DualPipe's published `PP + 1` chunk activations (here a
    /// chunk is a unit: one lane stage is `1/p` of the model); every device does both of its
    /// stages' work for its lane's half of the microbatches.
    #[test]
    fn dualpipe_is_valid_with_two_parameter_copies_and_pp_plus_one_chunks(half in 1u32..=5, extra in 0u32..=6, b in 0.5f64..2.0, w in 0.25f64..1.5) {
        let p = 2 * half;
        let m = 2 * p + 2 * extra;
        let (b, w) = ((b * 100.0).round() / 100.0, (w * 100.0).round() / 100.0);
        let costs = Costs::parse(&format!("f=1,b={b:.2},w={w:.2}")).unwrap();
        let prm = Params::new(p, m).unwrap().with_costs(StageCosts::uniform(costs));
        let s = generate("dualpipe", &prm).unwrap();
        prop_assert!(validate(&s).is_ok());
        prop_assert_eq!(s.placement.lanes(), 2);
        for share in s.parameter_share() {
            prop_assert!((share - 2.0 / f64::from(p)).abs() < 1e-12);
        }
        let r = simulate(&s, &prm.costs).unwrap();
        prop_assert!((r.max_peak() - f64::from(p + 1)).abs() < 1e-9, "peak {} chunks, PP + 1 = {}", r.max_peak(), p + 1);
        let work = f64::from(m) * (1.0 + b + w);
        for busy in &r.busy {
            prop_assert!((busy - work).abs() < 1e-6 * work);
        }
    }
}

/// DualPipe's closed form, `(PP/2 − 1)(F&B + B − 3W)`, on its own placement (F, B and W alike).
#[test]
fn dualpipe_bubble_is_its_closed_form() {
    for half in 1..=5u32 {
        let p = 2 * half;
        for m in [2 * p, 2 * p + 2, 4 * p] {
            for o in [1.0, 0.5, 0.0] {
                let costs = Costs::parse(&format!("f=1,b=1,w=1,overlap={o}")).unwrap();
                let prm = Params::new(p, m)
                    .unwrap()
                    .with_costs(StageCosts::uniform(costs));
                let s = generate("dualpipe", &prm).unwrap();
                let r = simulate(&s, &prm.costs).unwrap();
                let fb = 2.0 + o;
                let closed = f64::from(p / 2 - 1) * (fb + 2.0 - 3.0);
                // The two middle devices run the most pairs (DualPipeV's last device); their
                // idle time is the formula.
                for d in [p / 2 - 1, p / 2] {
                    let idle = r.makespan - r.busy[d as usize];
                    assert!(
                        (idle - closed).abs() < 1e-9,
                        "p={p} m={m} overlap={o} device {d}: {idle} vs {closed}"
                    );
                }
            }
        }
    }
}

#[test]
fn dualpipe_refuses_odd_sizes_with_the_count_to_use() {
    let e = generate("dualpipe", &Params::new(3, 12).unwrap()).unwrap_err();
    assert!(e.to_string().contains("even device count"), "{e}");
    let e = generate("dualpipe", &Params::new(4, 9).unwrap()).unwrap_err();
    assert!(e.to_string().contains("use 10"), "{e}");
    let e = generate("dualpipe", &Params::new(4, 6).unwrap()).unwrap_err();
    assert!(e.to_string().contains("use 8"), "{e}");
}

/// A microbatch of one lane listed on a stage of the other is refused with the lanes named; the
/// CSV PyTorch reads cannot carry lanes, so writing one is refused.
#[test]
fn lanes_are_checked_and_not_written_to_torch_csv() {
    let mut s = generate("dualpipe", &Params::new(2, 4).unwrap()).unwrap();
    // Microbatch 0 runs in lane 0 (stages 0, 1); stage 3 belongs to lane 1.
    let i = s.lists[0]
        .iter()
        .position(|q| q.to_string() == "F3.2")
        .unwrap();
    s.lists[0][i] = pipeblocks_core::Pass::f(3, 0);
    let e = validate(&s).unwrap_err().to_string();
    assert!(e.contains("lane 0 on a stage of lane 1"), "{e}");
    let s = generate("dualpipe", &Params::new(2, 4).unwrap()).unwrap();
    let e = pipeblocks_core::format::torch_csv::check(&s).unwrap_err();
    assert!(e.to_string().contains("write pipeblocks JSON"), "{e}");
    let back =
        pipeblocks_core::format::json::read(&pipeblocks_core::format::json::write(&s)).unwrap();
    assert_eq!(back, s);
}
