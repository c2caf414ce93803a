//! ZeroPP schedules validate for every size they accept.

use pipeblocks_core::generators::zeropp::{build, ZeroppOptions};
use pipeblocks_core::generators::{generate, MemoryBudget, Params};
use pipeblocks_core::validate;
use proptest::prelude::*;

fn make(p: u32, m: u32, v: u32, unit: u32, limit: Option<f64>) -> Result<(), String> {
    let mut prm = Params::new(p, m);
    prm.chunks = Some(v);
    prm.memory = limit.map(MemoryBudget::Of1f1b);
    let s = build(
        &prm,
        &ZeroppOptions {
            unit,
            durations: None,
            limit: None,
        },
    )
    .map_err(|e| e.to_string())?;
    validate(&s).map_err(|e| e.to_string())?;
    Ok(())
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
        prop_assert!(generate("zeropp", &Params::new(p, m)).is_ok());
    }
}
