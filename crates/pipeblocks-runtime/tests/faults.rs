//! Failures stop the run quickly with a clear error; bad schedules and checkpoints are refused.

mod common;

use std::time::{Duration, Instant};

use common::{all_schedules, batch, tiny};
use pipeblocks_core::Pass;
use pipeblocks_core::{generate, Params};
use pipeblocks_runtime::{checkpoint, Fault, RuntimeError, Trainer};

#[test]
fn a_panicking_worker_stops_the_step_naming_device_and_pass() {
    for (device, pass) in [(1, Pass::f(1, 2)), (0, Pass::bw(0, 1)), (1, Pass::bw(1, 0))] {
        let mut cfg = tiny(2, 4);
        cfg.recv_timeout = Duration::from_secs(120);
        cfg.fault = Some(Fault { device, pass });
        let s = generate("1f1b", &Params::new(2, 4).unwrap()).unwrap();
        let mut t = Trainer::new(cfg.clone(), s).unwrap();
        let t0 = Instant::now();
        let e = t.step(&batch(&cfg, 0)).unwrap_err();
        // Far below the receive timeout: the abort flag, not the timeout, stopped the others.
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "took {:?}",
            t0.elapsed()
        );
        match &e {
            RuntimeError::Panic {
                device: d, pass: p, ..
            } => assert_eq!((*d, *p), (device, pass)),
            other => panic!("expected a panic error, got {other}"),
        }
        let msg = e.to_string();
        assert!(
            msg.contains(&format!("device {device}")) && msg.contains(&pass.to_string()),
            "{msg}"
        );
        // The trainer is usable again once the fault is gone.
        cfg.fault = None;
    }
}

#[test]
fn faults_stop_every_schedule() {
    for s in all_schedules(2, 4) {
        let last = s.lists[0][s.lists[0].len() - 1];
        let mut cfg = tiny(4, 4);
        cfg.fault = Some(Fault {
            device: 0,
            pass: last,
        });
        let name = s.name.clone();
        let mut t = Trainer::new(cfg.clone(), s).unwrap();
        let e = t.step(&batch(&cfg, 0)).unwrap_err();
        assert!(e.to_string().contains(&last.to_string()), "{name}: {e}");
    }
}

#[test]
fn an_invalid_schedule_is_refused_before_any_compute() {
    let mut s = generate("1f1b", &Params::new(2, 4).unwrap()).unwrap();
    // Device 1 runs its first backward before the forward it needs.
    let l = &mut s.lists[1];
    let f = l.iter().position(|p| *p == Pass::f(1, 0)).unwrap();
    let b = l.iter().position(|p| *p == Pass::bw(1, 0)).unwrap();
    l.swap(f, b);
    match Trainer::new(tiny(2, 4), s) {
        Err(e @ RuntimeError::InvalidSchedule(_)) => assert!(e.is_input_error()),
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("an invalid schedule was accepted"),
    }
    let mut s = generate("1f1b", &Params::new(2, 4).unwrap()).unwrap();
    s.lists[0].pop();
    assert!(matches!(
        Trainer::new(tiny(2, 4), s),
        Err(RuntimeError::InvalidSchedule(_))
    ));
}

#[test]
fn too_few_layers_or_uneven_batch_are_refused() {
    let s = generate("interleaved-1f1b", &Params::new(2, 4).unwrap()).unwrap();
    let e = Trainer::new(tiny(2, 4), s).err().unwrap();
    assert!(e.to_string().contains("--layers"), "{e}");
    let s = generate("1f1b", &Params::new(2, 4).unwrap()).unwrap();
    let e = Trainer::new(tiny(2, 6), s).err().unwrap();
    assert!(e.to_string().contains("--batch"), "{e}");
}

fn tmp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("pipeblocks-ckpt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn resume_continues_exactly_and_across_schedules() {
    let cfg = tiny(4, 4);
    let one = |name: &str| generate(name, &Params::new(2, 4).unwrap()).unwrap();
    let mut straight = Trainer::new(cfg.clone(), one("1f1b")).unwrap();
    let losses: Vec<f64> = (0..4)
        .map(|i| straight.step(&batch(&cfg, i)).unwrap().loss)
        .collect();

    let path = tmp("resume.ckpt");
    let mut a = Trainer::new(cfg.clone(), one("1f1b")).unwrap();
    for i in 0..2 {
        a.step(&batch(&cfg, i)).unwrap();
    }
    checkpoint::save(&mut a, &path).unwrap();
    // Resume under another schedule: the checkpoint does not depend on the split.
    let mut b = Trainer::new(cfg.clone(), one("zb-h1")).unwrap();
    let info = checkpoint::load(&mut b, &path).unwrap();
    assert_eq!(info.steps_done, 2);
    for i in 2..4 {
        let l = b.step(&batch(&cfg, i)).unwrap().loss;
        assert!(
            (l - losses[i as usize]).abs() <= 1e-5 * l,
            "step {i}: {l} vs {}",
            losses[i as usize]
        );
    }
}

#[test]
fn truncated_corrupt_or_mismatched_checkpoints_are_refused() {
    let cfg = tiny(2, 4);
    let s = generate("1f1b", &Params::new(2, 4).unwrap()).unwrap();
    let mut t = Trainer::new(cfg.clone(), s.clone()).unwrap();
    let path = tmp("bad.ckpt");
    checkpoint::save(&mut t, &path).unwrap();
    let good = std::fs::read(&path).unwrap();

    let cut = tmp("cut.ckpt");
    std::fs::write(&cut, &good[..good.len() / 2]).unwrap();
    let e = checkpoint::load(&mut t, &cut).unwrap_err();
    assert!(
        e.is_input_error() && e.to_string().contains("truncated"),
        "{e}"
    );

    let flip = tmp("flip.ckpt");
    let mut bytes = good.clone();
    let n = bytes.len();
    bytes[n - 20] ^= 0x40;
    std::fs::write(&flip, &bytes).unwrap();
    let e = checkpoint::load(&mut t, &flip).unwrap_err();
    assert!(e.to_string().contains("checksum"), "{e}");

    let junk = tmp("junk.ckpt");
    std::fs::write(&junk, b"hello, this is not a checkpoint at all").unwrap();
    assert!(checkpoint::load(&mut t, &junk)
        .unwrap_err()
        .to_string()
        .contains("not a pipeblocks checkpoint"));

    let mut other = tiny(2, 4);
    other.model.hidden = 32;
    let mut t2 = Trainer::new(other, s).unwrap();
    let e = checkpoint::load(&mut t2, &path).unwrap_err();
    assert!(
        e.to_string().contains("hidden=16") && e.to_string().contains("hidden=32"),
        "{e}"
    );
}
