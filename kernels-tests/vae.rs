//! The variational autoencoder on the general graph: its GPU training steps equal
//! the CPU reference executor's (loss terms, noise, Add/Mul/Exp, a hidden layer read
//! by two heads), one submission and no allocation per step, a short run learns,
//! and bad graphs are errors naming the layer.

use wgml::data::Dataset;
use wgml::graph::Graph;
use wgml::kernels::loss::Term;
use wgml::kernels::matmul::Activation;
use wgml::kernels::optim::Optimizer;
use wgml::nn::Vae;

use crate::common::*;

const SMALL: Vae = Vae {
    input: 784,
    hidden: 32,
    latent: 2,
};

/// Three steps of 8 real digits on both paths, with Adam (fused into the Dense
/// weight gradients on CPU adapters) and SGD: every step's loss within 1e-5, the
/// parameters after them within the tolerance the other models' comparisons use.
#[test]
fn vae_training_equals_the_reference_step_by_step() {
    let (_g, ctx) = gpu();
    let data = Dataset::mnist_10k().unwrap();
    let b = 8;
    for optimizer in [Optimizer::adam(1e-3), Optimizer::sgd(0.01, 0.9)] {
        let mut model = SMALL.compile(ctx, optimizer.clone(), 5).unwrap();
        let mut cpu = model.reference(ctx).unwrap();
        for step in 0..3 {
            let x = &data.train.x[step * b * 784..(step + 1) * b * 784];
            let one_step: Vec<usize> = (0..b).collect();
            let gpu = model.train_epoch(ctx, x, &one_step, b, optimizer.lr()).unwrap();
            let cpu_loss = cpu.train_step(x, &[], &[], b, optimizer.lr()).unwrap();
            let rel = (gpu.total() - cpu_loss).abs() / cpu_loss.abs();
            assert!(
                rel < 1e-5,
                "{optimizer:?} step {step}: GPU {gpu:?} (total {}) vs reference {cpu_loss} (rel {rel:e})",
                gpu.total()
            );
            assert!(gpu.kl > 0.0 && gpu.reconstruction > 100.0, "{gpu:?}");
        }
        for p in &model.net.store.params {
            let got = p.value.to_f32(ctx).unwrap();
            let want = &cpu.params()[p.node];
            let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            assert_close(
                &format!("{optimizer:?} {}", p.name),
                &got,
                want,
                1e-4 * scale,
                1e-3,
            );
        }
        // Evaluating: the same terms as the reference's forward at the same step.
        let x = &data.test.x[..b * 784];
        let losses = model.evaluate(ctx, x, b).unwrap();
        let values = cpu.eval_values(x, b).unwrap();
        let mean = |node: usize| values[node].iter().map(|&v| v as f64).sum::<f64>() / b as f64;
        let (rec, kl) = (mean(model.nodes.reconstruction_loss), mean(model.nodes.kl));
        assert!(
            (losses.reconstruction - rec).abs() < 1e-5 * rec && (losses.kl - kl).abs() < 1e-5 * kl.max(1.0),
            "eval {losses:?} vs reference ({rec}, {kl})"
        );
    }
}

/// The reference executor's VAE gradient (read from one SGD step of rate 1) is the
/// derivative of its loss (central differences at the same step, so the same ε):
/// this checks the backward rules of Add, Mul, Exp and both loss terms, and the
/// sum of two heads' gradients into one hidden layer, on a model small enough for
/// differences to be exact to about 1e-6.
#[test]
fn the_vae_gradient_is_the_derivative_of_its_loss() {
    let (_g, ctx) = gpu();
    let tiny = Vae {
        input: 6,
        hidden: 5,
        latent: 3,
    };
    let b = 4;
    let x = uniform(&mut rng(1), b * tiny.input, 0.0, 1.0);
    let model = tiny.compile(ctx, Optimizer::sgd(1.0, 0.0), 2).unwrap();
    let start = model.reference(ctx).unwrap();
    let mut checked = 0;
    for p in &model.net.store.params {
        let (grad, fd) = gradient_and_differences(&start, p.node, &x, b, 1e-2);
        // f32 forward values and a step of 1e-2: differences good to ~1e-4 of
        // the gradient's scale (a wrong rule is off by its whole size).
        let scale = fd.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        assert_close(
            &format!("{} gradient vs finite differences", p.name),
            &grad,
            &fd,
            2e-3 * scale.max(1e-3),
            2e-3,
        );
        checked += grad.len();
    }
    assert!(checked > 100, "{checked} parameters checked");
}

#[test]
fn a_vae_step_is_one_submission_and_creates_nothing() {
    let (_g, ctx) = gpu();
    let mut model = SMALL.compile(ctx, Optimizer::adam(1e-3), 1).unwrap();
    let x = vec![0.5f32; 4 * 784];
    model.train_step(ctx, &x, 4, 1e-3).unwrap();
    ctx.wait().unwrap();
    let before = ctx.counters();
    for _ in 0..3 {
        model.train_step(ctx, &x, 4, 1e-3).unwrap();
    }
    let d = ctx.counters() - before;
    ctx.wait().unwrap();
    assert_eq!(d.submissions, 3);
    assert_eq!(d.buffers_created, 0);
    assert_eq!(d.bind_groups_created, 0);
}

/// Two epochs on 1,000 digits lower the test loss well below the untrained one,
/// and the latent means spread the digits out.
#[test]
fn a_short_vae_run_learns() {
    let (_g, ctx) = gpu();
    let data = Dataset::mnist_10k().unwrap();
    let n = 1000;
    let x = &data.train.x[..n * 784];
    let test = &data.test.x[..200 * 784];
    let mut model = SMALL.compile(ctx, Optimizer::adam(1e-3), 3).unwrap();
    let before = model.evaluate(ctx, test, 100).unwrap();
    let order: Vec<usize> = (0..n).collect();
    for _ in 0..2 {
        model.train_epoch(ctx, x, &order, 32, 1e-3).unwrap();
    }
    let after = model.evaluate(ctx, test, 100).unwrap();
    assert!(
        after.total() < 0.6 * before.total(),
        "test loss {before:?} -> {after:?}"
    );
    let means = model.values(ctx, model.nodes.mean, test, 100).unwrap();
    assert_eq!(means.len(), 200 * 2);
    let spread = means.iter().map(|v| v * v).sum::<f32>() / means.len() as f32;
    assert!(spread > 0.01, "latent means all near 0: {spread}");
}

#[test]
fn bad_graphs_are_errors_naming_the_layer() {
    let mut g = Graph::new();
    let x = g.input(&[4]).unwrap();
    let y = g.input(&[3]).unwrap();
    let e = g.add(x, y, "merge").unwrap_err().to_string();
    assert!(
        e.contains("'merge'") && e.contains("[4]") && e.contains("[3]"),
        "{e}"
    );
    let e = g.mul(x, y, "gate").unwrap_err().to_string();
    assert!(e.contains("'gate'"), "{e}");
    let w = g.param("w", &[4, 4], wgml::graph::Init::Zeros, "dense");
    let h = g.dense(x, w, None, Activation::Identity, "dense").unwrap();
    let e = g.loss_term(Term::BceSum, x, h, "rec").unwrap_err().to_string();
    assert!(e.contains("'rec'") && e.contains("take no gradient"), "{e}");
    let e = g.loss_term(Term::KlNormal, x, y, "kl").unwrap_err().to_string();
    assert!(e.contains("'kl'") && e.contains("one shape"), "{e}");
    let bad = Vae {
        input: 784,
        hidden: 0,
        latent: 2,
    };
    assert!(bad.graph().is_err());
}

/// The decoder alone shares the VAE's weights: decoding the latent points the
/// whole model sampled gives its reconstructions, and after a training step the
/// decoder sees the new weights without any copy.
#[test]
fn the_decoder_alone_shares_the_weights() {
    let (_g, ctx) = gpu();
    let data = Dataset::mnist_10k().unwrap();
    let mut model = SMALL.compile(ctx, Optimizer::adam(1e-3), 4).unwrap();
    let n = 12;
    let x = &data.test.x[..n * 784];
    let z = model.values(ctx, model.nodes.z, x, n).unwrap();
    let reconstruction = model.values(ctx, model.nodes.reconstruction, x, n).unwrap();
    let decoded = model.decode(ctx, &z, n).unwrap();
    assert_close(
        "decode(z) vs the reconstruction",
        &decoded,
        &reconstruction,
        1e-6,
        1e-5,
    );
    model
        .train_step(ctx, &data.train.x[..32 * 784], 32, 1e-2)
        .unwrap();
    let after = model.decode(ctx, &z, n).unwrap();
    assert_ne!(after, decoded, "the decoder did not see the trained weights");
    let e = model.decode(ctx, &z[..5], 3).unwrap_err().to_string();
    assert!(e.contains("5 values given for 3 latent points of 2"), "{e}");
}

/// `fit_terms` with a backup: a run stopped after 2 of 3 epochs (its state kept)
/// and resumed ends with the same parameters and the same history as one that
/// never stopped, bit for bit (shuffles replayed from the seed, noise from the
/// restored step); a backup written with other settings is refused naming them.
#[test]
fn a_resumed_vae_run_equals_an_uninterrupted_one() {
    use wgml::train::{Backup, TermsConfig, fit_terms};
    let (_g, ctx) = gpu();
    let data = Dataset::mnist_10k().unwrap();
    let x = &data.train.x[..96 * 784];
    let test = &data.test.x[..32 * 784];
    let dir = std::env::temp_dir().join(format!("wgml-vae-backup-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let config = |epochs, backup: Option<Backup>| TermsConfig {
        epochs,
        batch_size: 32,
        lr: 1e-3,
        seed: 9,
        shuffle: true,
        max_steps: None,
        eval_batch: 32,
        backup,
        model: format!("{SMALL:?}"),
    };
    let params = |m: &wgml::nn::VaeModel| -> Vec<Vec<f32>> {
        m.net
            .store
            .params
            .iter()
            .map(|p| p.value.to_f32(ctx).unwrap())
            .collect()
    };
    let mut straight = SMALL.compile(ctx, Optimizer::adam(1e-3), 4).unwrap();
    let want = fit_terms(ctx, &mut straight.net, x, test, &config(3, None), |_| {}).unwrap();

    let kept = Backup {
        dir: dir.clone(),
        delete_when_done: false,
    };
    let mut first = SMALL.compile(ctx, Optimizer::adam(1e-3), 4).unwrap();
    fit_terms(
        ctx,
        &mut first.net,
        x,
        test,
        &config(2, Some(kept.clone())),
        |_| {},
    )
    .unwrap();
    assert!(kept.path().is_file());

    // A different batch size may not resume this state.
    let mut other = SMALL.compile(ctx, Optimizer::adam(1e-3), 4).unwrap();
    let mut wrong = config(3, Some(kept.clone()));
    wrong.batch_size = 16;
    let e = fit_terms(ctx, &mut other.net, x, test, &wrong, |_| {})
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("batch_size = 32") && e.contains("to start over"),
        "{e}"
    );

    // Another seed draws other noise: refused too.
    let mut reseeded = SMALL.compile(ctx, Optimizer::adam(1e-3), 77).unwrap();
    let e = fit_terms(
        ctx,
        &mut reseeded.net,
        x,
        test,
        &config(3, Some(kept.clone())),
        |_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("random_seeds"), "{e}");

    // A fresh process: the same model with other weights, resumed from the file.
    let mut resumed = SMALL.compile(ctx, Optimizer::adam(1e-3), 4).unwrap();
    resumed
        .net
        .store
        .load(ctx, &reseeded.net.store.download(ctx).unwrap())
        .unwrap();
    assert_ne!(params(&resumed), params(&first));
    let mut events = 0;
    let got = fit_terms(
        ctx,
        &mut resumed.net,
        x,
        test,
        &config(3, Some(Backup::new(&dir))),
        |e| {
            if let wgml::train::TermsEvent::Resumed { epochs, .. } = e {
                assert_eq!(epochs.len(), 2);
                events += 1;
            }
        },
    )
    .unwrap();
    assert_eq!(events, 1);
    assert_eq!(resumed.net.step, straight.net.step);
    let strip = |h: &[wgml::train::TermsEpoch]| -> Vec<(Vec<f64>, Vec<f64>)> {
        h.iter().map(|e| (e.train.clone(), e.test.clone())).collect()
    };
    assert_eq!(strip(&got), strip(&want));
    assert_eq!(params(&resumed), params(&straight));
    assert!(
        !kept.path().exists(),
        "a finished run removes its backup unless kept"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
