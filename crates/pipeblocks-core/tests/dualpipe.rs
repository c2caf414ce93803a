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
