//! ZeroPP schedules validate for every size they accept.

use pipeblocks_core::error::Param;
use pipeblocks_core::generators::zeropp::{default_group, zeropp};
use pipeblocks_core::{
    generate, simulate, validate, Budget, Costs, Error, Params, PassKind, StageCosts,
};
use proptest::prelude::*;

fn make(p: u32, m: u32, v: u32, unit: u32, limit: Option<f64>) -> Result<(), String> {
    let mut prm = Params::new(p, m).unwrap().with_chunks(v).unwrap();
    prm = prm.with_group(unit).map_err(|e| e.to_string())?;
    if let Some(k) = limit {
        prm = prm.with_budget(Budget::Of1f1b(k));
    }
    let s = match zeropp(&prm) {
        Ok(s) => s,
        // A budget below what one group keeps alive is refused, naming the budget.
        Err(e) if limit.is_some() && e.suggestion().is_some_and(|f| f.param == Param::Budget) => {
            return Ok(());
        }
        Err(e) => return Err(e.to_string()),
    };
    validate(&s).map_err(|e| e.to_string())?;
    if let Some(k) = limit {
        let peak = simulate(&s, &prm.costs)
            .map_err(|e| e.to_string())?
            .max_peak();
        let want = Budget::Of1f1b(k)
            .units_for(&prm)
            .map_err(|e| e.to_string())?;
        if peak > want + 1e-9 {
            return Err(format!("peak {peak} over the budget {want}"));
        }
    }
    Ok(())
}

#[test]
fn a_budget_below_one_group_is_refused_and_a_budget_at_it_is_met() {
    // p=4, m=8, groups of 4 over 2 chunks: one group's forwards keep 4 units alive.
    let prm = Params::new(4, 8).unwrap().with_group(4).unwrap();
    let floor = simulate(&zeropp(&prm).unwrap(), &prm.costs)
        .unwrap()
        .max_peak();
    let tight = prm.clone().with_budget(Budget::Units(floor / 2.0));
    let e = zeropp(&tight).unwrap_err();
    assert_eq!(e.suggestion().map(|f| f.param), Some(Param::Budget), "{e}");
    assert!(e.to_string().contains("groups of 4"), "{e}");
    let at = prm.with_budget(Budget::Units(floor));
    assert!(zeropp(&at).is_ok());
    // Smaller groups keep less alive and meet the tighter budget.
    let small = tight.with_group(1).unwrap();
    let s = zeropp(&small).unwrap();
    assert!(simulate(&s, &small.costs).unwrap().max_peak() <= floor / 2.0 + 1e-9);
}

#[test]
fn default_group_fills_the_pipeline() {
    assert_eq!(default_group(4, 8), 4);
    assert_eq!(default_group(3, 8), 4);
    assert_eq!(default_group(4, 6), 6);
    assert_eq!(default_group(8, 4), 4);
    assert_eq!(default_group(1, 5), 1);
}

#[test]
fn windows_are_contiguous_in_group_order() {
    let prm = Params::new(4, 8).unwrap().with_group(2).unwrap();
    let s = zeropp(&prm).unwrap();
    validate(&s).unwrap();
    // Per stage, the sequence of (group, phase) windows never revisits a window.
    for (d, list) in s.lists.iter().enumerate() {
        for st in s.stages_of(d as u32) {
            let mut seen: Vec<(u32, bool)> = Vec::new();
            for x in list.iter().filter(|x| x.stage == st) {
                let key = (x.mb / 2, x.kind == PassKind::F);
                if seen.last() != Some(&key) {
                    assert!(!seen.contains(&key), "window {key:?} of stage {st} split");
                    seen.push(key);
                }
            }
            assert_eq!(seen.len(), 8, "4 groups × 2 phases on stage {st}");
        }
    }
}

#[test]
fn bad_groups_are_refused() {
    let prm = Params::new(2, 4).unwrap();
    assert_eq!(
        prm.clone().with_group(0),
        Err(Error::Zero(pipeblocks_core::error::Param::Group))
    );
    let e = zeropp(&prm.with_group(5).unwrap()).unwrap_err();
    assert!(matches!(e, Error::Config { .. }), "{e}");
    assert_eq!(e.suggestion().and_then(|f| f.value), Some("4".to_string()));
}

/// Latency of several forwards used to leave ZeroPP with no device to wake ("this is a bug");
/// on the engine a device sleeps until its input arrives.
#[test]
fn large_latencies_schedule() {
    for c in [0.3, 2.0, 5.0, 10.0] {
        for (p, m) in [(2, 1), (2, 2), (4, 8), (8, 16), (3, 7)] {
            let costs = Costs {
                f: 1.0,
                b: 1.0,
                w: 0.5,
                bw: None,
                comm: c,
                overlap: 1.0,
                r: None,
                keep: None,
                offload: None,
                selective: None,
            };
            let prm = Params::new(p, m)
                .unwrap()
                .with_costs(StageCosts::uniform(costs));
            let s = generate("zeropp", &prm).unwrap_or_else(|e| panic!("c={c} p={p} m={m}: {e}"));
            validate(&s).unwrap();
        }
    }
}

#[test]
fn small_grid_validates() {
    for p in 1..=6 {
        for m in 1..=12 {
            for v in 1..=3 {
                for unit in 1..=m {
                    for limit in [None, Some(1.0), Some(0.5)] {
                        if let Err(e) = make(p, m, v, unit, limit) {
                            panic!("p={p} m={m} v={v} U={unit} limit={limit:?}: {e}");
                        }
                    }
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn zeropp_validates(p in 1u32..=16, m in 1u32..=64, v in 1u32..=3, u in 1u32..=64,
                        limit in proptest::option::of(0.25f64..2.0)) {
        let unit = 1 + (u - 1) % m;
        prop_assert_eq!(make(p, m, v, unit, limit), Ok(()));
    }

    #[test]
    fn registry_zeropp_validates(p in 1u32..=16, m in 1u32..=64) {
        prop_assert!(generate("zeropp", &Params::new(p, m).unwrap()).is_ok());
    }
}
