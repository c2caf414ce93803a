//! Schedule quality: `auto` at a budget never has more bubble than a named schedule whose peak
//! fits that budget, and never exceeds the budget; the named V schedules keep their memory.
//!
//! Costs are drawn in the range users see: F, B and W each within 0.5 and 2 of the others, the
//! link latency up to 0.2 F. CI runs `PIPEBLOCKS_QUALITY_CASES` cases (default 12; each runs
//! the whole search); run more with e.g.
//! `PIPEBLOCKS_QUALITY_CASES=200 cargo test --release -p pipeblocks-core --test quality`.

use pipeblocks_core::{generate, simulate, Budget, Costs, Params, StageCosts};
use proptest::prelude::*;

const NAMED: [&str; 7] = ["1f1b", "zb-h1", "zb-h2", "v-min", "v-half", "v-zb", "zb-v"];

fn cases() -> u32 {
    std::env::var("PIPEBLOCKS_QUALITY_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12)
}

fn params(p: u32, m: u32, b: f64, w: f64, c: f64) -> Params {
    let costs = Costs::parse(&format!("f=1,b={b},w={w},c={c}")).unwrap();
    Params::new(p, m)
        .unwrap()
        .with_costs(StageCosts::uniform(costs))
}

/// Costs within 0.5 and 2 of each other: F = 1, B in [0.5, 2], W within [0.5, 2] of both.
fn costs() -> impl Strategy<Value = (f64, f64, f64)> {
    (0.5f64..=2.0, 0.0f64..=1.0, 0.0f64..=0.2).prop_map(|(b, t, c)| {
        let lo = (b / 2.0).max(0.5);
        let hi = (b * 2.0).min(2.0);
        let round = |x: f64| (x * 100.0).round() / 100.0;
        (round(b), round(lo + t * (hi - lo)), round(c))
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn auto_is_never_worse_than_a_named_schedule_that_fits(
        p in 2u32..=6,
        k in 1u32..=4,
        (b, w, c) in costs(),
        pick in 0usize..NAMED.len(),
        scale in 0.8f64..=1.2,
    ) {
        let m = p * k;
        let prm = params(p, m, b, w, c);
        let named: Vec<(&str, f64, f64)> = NAMED
            .iter()
            .map(|n| {
                let s = generate(n, &prm).unwrap();
                let r = simulate(&s, &prm.costs).unwrap();
                (*n, r.max_peak(), r.bubble_rate)
            })
            .collect();
        // A budget at a named schedule's peak, moved a little either way.
        let budget = named[pick].1 * scale;
        let auto_prm = prm.clone().with_budget(Budget::Units(budget));
        let s = match generate("auto", &auto_prm) {
            Ok(s) => s,
            Err(e) => {
                // Only a budget below every schedule may be refused.
                prop_assert!(named.iter().all(|x| x.1 > budget + 1e-9), "{e}");
                return Ok(());
            }
        };
        let r = simulate(&s, &prm.costs).unwrap();
        prop_assert!(r.max_peak() <= budget + 1e-6, "auto peak {} over {budget}", r.max_peak());
        // Bubble rates compare across placements (a uniform cost is per pass of any stage, so
        // a V-shape step does twice the work of a sequential one).
        for (name, peak, bubble) in &named {
            if *peak <= budget + 1e-9 {
                prop_assert!(
                    r.bubble_rate <= bubble + 1e-9,
                    "p={p} m={m} b={b} w={w} c={c} budget {budget}: auto bubble {} > {name} {bubble}",
                    r.bubble_rate
                );
            }
        }
    }

    #[test]
    fn named_v_schedules_stay_within_their_memory(
        p in 2u32..=12,
        k in 1u32..=8,
        (b, w, c) in costs(),
    ) {
        let m = p * k;
        let prm = params(p, m, b, w, c);
        // Peaks in units of one microbatch on a device's two stages (1F1B's peak is p):
        // V-Min about p/3, V-Half about p/2, V-ZB p.
        for (name, most) in [
            ("v-min", f64::from(p + 4) / 3.0),
            ("v-half", f64::from(p + 2) / 2.0),
            ("v-zb", f64::from(p)),
        ] {
            let s = generate(name, &prm).unwrap();
            let r = simulate(&s, &prm.costs).unwrap();
            prop_assert!(
                r.max_peak() <= most.floor() + 1e-9,
                "{name} p={p} m={m}: peak {} over {}", r.max_peak(), most.floor()
            );
        }
    }
}
