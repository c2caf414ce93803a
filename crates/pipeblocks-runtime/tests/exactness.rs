//! Every schedule computes exactly the gradients of the unpipelined model.

mod common;

use common::{all_schedules, batch, rel_err, tiny};
use pipeblocks_runtime::{reference_gradients, Trainer};

#[test]
fn every_schedule_matches_full_batch_gradients() {
    let cfg = tiny(4, 4);
    let b = batch(&cfg, 0);
    let (ref_loss, reference) = reference_gradients(&cfg, &b).unwrap();
    let schedules = all_schedules(2, 4);
    assert!(
        schedules.len() >= 4,
        "expected the classic schedules at p=2, m=4"
    );
    for s in schedules {
        let name = s.name.clone();
        let mut t = Trainer::new(cfg.clone(), s).unwrap();
        let report = t.accumulate(&b).unwrap();
        assert!(
            (report.loss - ref_loss).abs() <= 1e-5 * ref_loss.abs(),
            "{name}: loss {} vs {ref_loss}",
            report.loss
        );
        let grads = t.gradients().unwrap();
        assert_eq!(grads.len(), reference.len(), "{name}: parameter count");
        for ((n, g), (rn, rg)) in grads.iter().zip(&reference) {
            assert_eq!(n, rn, "{name}: parameter order");
            let e = rel_err(g, rg);
            assert!(
                e <= 1e-5,
                "{name}: gradient of {n} off by {e:.2e} (relative)"
            );
        }
    }
}

#[test]
fn three_devices_and_more_microbatches_match_too() {
    let cfg = tiny(6, 6);
    let b = batch(&cfg, 1);
    let (_, reference) = reference_gradients(&cfg, &b).unwrap();
    for s in all_schedules(3, 6) {
        let name = s.name.clone();
        let mut t = Trainer::new(cfg.clone(), s).unwrap();
        t.accumulate(&b).unwrap();
        for ((n, g), (_, rg)) in t.gradients().unwrap().iter().zip(&reference) {
            let e = rel_err(g, rg);
            assert!(e <= 1e-5, "{name}: gradient of {n} off by {e:.2e}");
        }
    }
}

#[test]
fn losses_agree_across_schedules_over_several_steps() {
    let cfg = tiny(4, 4);
    let steps = 5;
    let mut curves: Vec<(String, Vec<f64>)> = Vec::new();
    for s in all_schedules(2, 4) {
        let name = s.name.clone();
        let mut t = Trainer::new(cfg.clone(), s).unwrap();
        let losses = (0..steps)
            .map(|i| t.step(&batch(&cfg, i)).unwrap().loss)
            .collect();
        curves.push((name, losses));
    }
    let (base_name, base) = &curves[0];
    assert!(
        base[steps as usize - 1] < base[0],
        "{base_name}: the loss did not fall"
    );
    for (name, c) in &curves[1..] {
        for (i, (x, y)) in c.iter().zip(base).enumerate() {
            assert!(
                (x - y).abs() <= 1e-5 * y.abs(),
                "{name} step {i}: loss {x} vs {base_name} {y}"
            );
        }
    }
}
