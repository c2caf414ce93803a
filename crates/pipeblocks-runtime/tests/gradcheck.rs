//! The hand-written backward against finite differences of the loss.

use candle_core::{Device, Tensor};
use pipeblocks_runtime::data::Corpus;
use pipeblocks_runtime::model::{Rng, Stage, StageOutput};
use pipeblocks_runtime::ModelConfig;

fn loss(st: &mut Stage, tokens: &Tensor, targets: &Tensor) -> f64 {
    match st.forward(0, tokens, Some(targets)).unwrap() {
        StageOutput::Loss(l) => {
            st.clear();
            l
        }
        StageOutput::Activation(_) => panic!("one stage ends in the loss"),
    }
}

#[test]
fn gradients_match_finite_differences() {
    let cfg = ModelConfig {
        vocab: 256,
        hidden: 8,
        heads: 2,
        layers: 2,
        seq: 6,
    };
    let dev = Device::Cpu;
    let mut st = Stage::new(&cfg, 0, 1, 4, &dev).unwrap();
    let b = Corpus::generated(2, 1000).batch(2, cfg.seq, 4, 0);
    let micro = b.whole(&dev).unwrap();
    st.forward(0, &micro.tokens, Some(&micro.targets)).unwrap();
    st.backward(0, None).unwrap();
    let mut rng = Rng::new(9);
    let n_params = st.params_mut().len();
    let mut checked = 0;
    for pi in 0..n_params {
        let (name, grad, value) = {
            let p = &mut st.params_mut()[pi];
            (
                p.name.clone(),
                p.grad.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                p.value.clone(),
            )
        };
        let flat = value.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        // The coordinate with the largest gradient, and one at random.
        let big = (0..grad.len())
            .max_by(|&a, &b| grad[a].abs().total_cmp(&grad[b].abs()))
            .unwrap();
        for i in [big, rng.below(grad.len())] {
            if grad[i].abs() < 5e-2 {
                continue;
            }
            let h = 2e-3f32;
            let mut eval = |delta: f32| {
                let mut v = flat.clone();
                v[i] += delta;
                st.params_mut()[pi].value = Tensor::from_vec(v, value.dims(), &dev).unwrap();
                loss(&mut st, &micro.tokens, &micro.targets)
            };
            let numeric = (eval(h) - eval(-h)) / (2.0 * f64::from(h));
            st.params_mut()[pi].value = value.clone();
            let analytic = f64::from(grad[i]);
            let rel = (numeric - analytic).abs() / analytic.abs().max(numeric.abs());
            assert!(
                rel < 0.05,
                "{name}[{i}]: analytic {analytic} vs numeric {numeric}"
            );
            checked += 1;
        }
    }
    assert!(
        checked >= n_params / 3,
        "only {checked} coordinates had a usable gradient"
    );
}
