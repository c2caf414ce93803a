//! ZeroPP schedules validate for every size they accept.

use pipeblocks_core::generators::zeropp::{default_group, zeropp};
use pipeblocks_core::{generate, validate, Budget, Costs, Error, Params, PassKind, StageCosts};
use proptest::prelude::*;

fn make(p: u32, m: u32, v: u32, unit: u32, limit: Option<f64>) -> Result<(), String> {
    let mut prm = Params::new(p, m).unwrap().with_chunks(v).unwrap();
    prm = prm.with_group(unit).map_err(|e| e.to_string())?;
    if let Some(k) = limit {
        prm = prm.with_budget(Budget::Of1f1b(k));
    }
    let s = zeropp(&prm).map_err(|e| e.to_string())?;
    validate(&s).map_err(|e| e.to_string())?;
    Ok(())
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
