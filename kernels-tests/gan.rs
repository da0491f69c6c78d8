//! The GAN on the general graph: a weight read by two ops sums both gradients
//! (GPU equal to the reference executor); each of the GAN's alternating steps,
//! from the same state, equals the reference executor's (the discriminator on real
//! and generated images with one set of weights, the generator through the frozen
//! discriminator); the frozen half keeps its weights bit for bit; a step is one
//! submission; a short run moves the generator and keeps its images in [-1, 1].

use wgml::data::Dataset;
use wgml::graph::{Graph, Init, Objective, ParamStore, WeightedTerm};
use wgml::kernels::loss::Term;
use wgml::kernels::matmul::Activation;
use wgml::kernels::optim::Optimizer;
use wgml::nn::{Gan, GraphModel};

use crate::common::*;

const SMALL: Gan = Gan {
    latent: 8,
    hidden: 16,
    output: 784,
};

/// `y = W·relu(W·x)` with one square W: its gradient is the sum over both uses.
/// GPU steps (Adam and SGD) equal the reference executor's, and the reference's
/// gradient equals central differences of its loss.
#[test]
fn a_weight_used_twice_sums_both_gradients() {
    let (_g, ctx) = gpu();
    let build = || {
        let mut g = Graph::new();
        let x = g.input(&[6]).unwrap();
        let w = g.param(
            "w",
            &[6, 6],
            Init::GlorotUniform {
                fan_in: 6,
                fan_out: 6,
            },
            "shared",
        );
        let h = g.dense(x, w, None, Activation::Relu, "first use").unwrap();
        let y = g.dense(h, w, None, Activation::Identity, "second use").unwrap();
        let t = g.constant(&[6], 1.0, "target").unwrap();
        let l = g.loss_term(Term::BceSum, y, t, "loss").unwrap();
        let objective = Objective::Terms(vec![WeightedTerm {
            name: "loss".into(),
            node: l,
            weight: 1.0,
        }]);
        (g, objective)
    };
    let b = 5;
    let x = uniform(&mut rng(3), b * 6, -1.0, 1.0);
    for optimizer in [Optimizer::adam(1e-2), Optimizer::sgd(0.1, 0.0)] {
        let (g, objective) = build();
        let mut r = rng(1);
        let store = ParamStore::new(ctx, &g, optimizer.state_count(), &mut r).unwrap();
        let mut model = GraphModel::new(ctx, g, objective, store, optimizer.clone()).unwrap();
        let cpu = steps_equal_reference(
            ctx,
            &format!("shared weight, {optimizer:?}"),
            &mut model,
            &x,
            b,
            3,
        );
        let p = &model.store.params[0];
        assert_close(
            "shared w",
            &p.value.to_f32(ctx).unwrap(),
            &cpu.params()[p.node],
            1e-6,
            1e-4,
        );
    }
    // The reference gradient (one SGD step of rate 1) against central differences.
    let (g, objective) = build();
    let mut r = rng(2);
    let store = ParamStore::new(ctx, &g, 0, &mut r).unwrap();
    let node = store.params[0].node;
    let start = GraphModel::new(ctx, g, objective, store, Optimizer::sgd(1.0, 0.0))
        .unwrap()
        .reference(ctx)
        .unwrap();
    let (grad, fd) = gradient_and_differences(&start, node, &x, b, 1e-3);
    assert_close("shared w gradient vs finite differences", &grad, &fd, 1e-4, 2e-3);
}

/// Each alternating step, from the same state, equals the reference executor's:
/// its losses, D(real) and D(fake), and the weights it trains; the other network's
/// weights do not move.
#[test]
fn each_gan_step_equals_the_reference_and_leaves_the_other_network() {
    let (_g, ctx) = gpu();
    let data = Dataset::mnist_10k().unwrap();
    let b = 8;
    let mut gan = SMALL.compile(ctx, Optimizer::adam(2e-4), 7).unwrap();
    let names = |m: &GraphModel| -> Vec<(String, bool)> {
        m.store
            .params
            .iter()
            .map(|p| (p.name.clone(), p.trainable))
            .collect()
    };
    assert!(
        names(&gan.discriminator)
            .iter()
            .all(|(n, t)| *t == n.starts_with("discriminator"))
    );
    assert!(
        names(&gan.generator)
            .iter()
            .all(|(n, t)| *t == n.starts_with("generator"))
    );
    for step in 0..3 {
        let real: Vec<f32> = data.train.x[step * b * 784..(step + 1) * b * 784]
            .iter()
            .map(|v| 2.0 * v - 1.0)
            .collect();
        for which in ["discriminator", "generator"] {
            let model = if which == "discriminator" {
                &mut gan.discriminator
            } else {
                &mut gan.generator
            };
            let input = if which == "discriminator" {
                real.clone()
            } else {
                vec![0.0; b]
            };
            let mut cpu = model.reference(ctx).unwrap();
            let before = model.store.download(ctx).unwrap();
            model.acc.reset(ctx).unwrap();
            model.train_step(ctx, &input, b, 2e-4).unwrap();
            let gpu = model.acc.read(ctx).unwrap().0 / b as f64;
            let want = cpu.train_step(&input, &[], &[], b, 2e-4).unwrap();
            assert!(
                (gpu - want).abs() < 1e-5 * want,
                "{which} step {step}: GPU loss {gpu} vs reference {want}"
            );
            let terms = model.read_terms(ctx, b).unwrap();
            let p_fake = *terms.last().unwrap();
            assert!(p_fake > 0.0 && p_fake < 1.0, "{which}: D(fake) {p_fake}");
            let after = model.store.download(ctx).unwrap();
            for (p, ((name, _, was), (_, _, now))) in model.store.params.iter().zip(before.iter().zip(&after))
            {
                assert_eq!(was == now, !p.trainable, "{which} step: {name} moved or not");
                if p.trainable {
                    let scale = cpu.params()[p.node].iter().fold(0.0f32, |m, v| m.max(v.abs()));
                    assert_close(
                        &format!("{which} {name}"),
                        now,
                        &cpu.params()[p.node],
                        1e-4 * scale,
                        1e-3,
                    );
                }
            }
        }
    }
}

#[test]
fn a_gan_step_pair_is_two_submissions_and_a_short_run_moves_the_generator() {
    let (_g, ctx) = gpu();
    let data = Dataset::mnist_10k().unwrap();
    let images: Vec<f32> = data.train.x[..512 * 784].iter().map(|v| 2.0 * v - 1.0).collect();
    let mut gan = SMALL.compile(ctx, Optimizer::adam(2e-4), 1).unwrap();
    let z = uniform(&mut rng(9), 4 * SMALL.latent, -1.0, 1.0);
    let before = gan.generate(ctx, &z, 4).unwrap();
    gan.train_step(ctx, &images[..32 * 784], 32, 2e-4).unwrap();
    ctx.wait().unwrap();
    let counters = ctx.counters();
    gan.train_step(ctx, &images[..32 * 784], 32, 2e-4).unwrap();
    let d = ctx.counters() - counters;
    ctx.wait().unwrap();
    assert_eq!(d.submissions, 2, "one submission per step");
    assert_eq!(d.buffers_created, 0);
    let order: Vec<usize> = (0..512).collect();
    let stats = gan.train_epoch(ctx, &images, &order, 32, 2e-4).unwrap();
    assert!(
        stats.d_loss.is_finite() && stats.g_loss.is_finite() && (0.0..1.0).contains(&stats.d_real),
        "{stats:?}"
    );
    let after = gan.generate(ctx, &z, 4).unwrap();
    assert_ne!(before, after);
    assert!(
        after.iter().all(|v| (-1.0..=1.0).contains(v)),
        "tanh output out of [-1, 1]"
    );
    let e = gan
        .train_epoch(ctx, &images[..10 * 784], &order[..10], 32, 2e-4)
        .unwrap_err()
        .to_string();
    assert!(e.contains("at least one full batch of 32"), "{e}");
}

/// `fit_gan` with a backup: a run stopped after 2 of 3 epochs (its state kept) and
/// resumed into a model with other weights ends with the same weights and the same
/// epochs as one that never stopped, bit for bit; a backup of another batch size
/// is refused naming it.
#[test]
fn a_resumed_gan_run_equals_an_uninterrupted_one() {
    use wgml::train::{Backup, GanEvent, TermsConfig, fit_gan};
    let (_g, ctx) = gpu();
    let data = Dataset::mnist_10k().unwrap();
    let images: Vec<f32> = data.train.x[..96 * 784].iter().map(|v| 2.0 * v - 1.0).collect();
    let dir = std::env::temp_dir().join(format!("wgml-gan-backup-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let config = |epochs, backup: Option<Backup>| TermsConfig {
        epochs,
        batch_size: 32,
        lr: 2e-4,
        seed: 3,
        shuffle: true,
        max_steps: None,
        eval_batch: 32,
        backup,
        model: format!("{SMALL:?}"),
    };
    let compile = |seed| SMALL.compile(ctx, Optimizer::adam(2e-4), seed).unwrap();
    let weights = |g: &wgml::nn::GanModel| -> Vec<Vec<f32>> {
        g.store
            .params
            .iter()
            .map(|p| p.value.to_f32(ctx).unwrap())
            .collect()
    };
    let mut straight = compile(5);
    let want = fit_gan(ctx, &mut straight, &images, &config(3, None), |_, _| Ok(())).unwrap();
    let kept = Backup {
        dir: dir.clone(),
        delete_when_done: false,
    };
    let mut first = compile(5);
    fit_gan(
        ctx,
        &mut first,
        &images,
        &config(2, Some(kept.clone())),
        |_, _| Ok(()),
    )
    .unwrap();

    let mut other = config(3, Some(kept.clone()));
    other.batch_size = 16;
    let e = fit_gan(ctx, &mut compile(5), &images, &other, |_, _| Ok(()))
        .unwrap_err()
        .to_string();
    assert!(e.contains("batch_size = 32"), "{e}");

    let mut resumed = compile(5);
    resumed
        .store
        .load(ctx, &compile(6).store.download(ctx).unwrap())
        .unwrap();
    let mut resumptions = 0;
    let got = fit_gan(
        ctx,
        &mut resumed,
        &images,
        &config(3, Some(Backup::new(&dir))),
        |e, _| {
            if let GanEvent::Resumed { epochs, .. } = e {
                assert_eq!(epochs.len(), 2);
                resumptions += 1;
            }
            Ok(())
        },
    )
    .unwrap();
    assert_eq!(resumptions, 1);
    assert_eq!(got, want);
    assert_eq!(weights(&resumed), weights(&straight));
    assert_eq!(
        (resumed.discriminator.step, resumed.generator.step),
        (straight.discriminator.step, straight.generator.step)
    );
    assert!(
        !kept.path().exists(),
        "a finished run removes its backup unless kept"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `GanModel::set_ema`: after every generator step the generator's averages equal
/// the ones computed on the CPU from its weights (the first step takes them); the
/// discriminator keeps none; `finalize_ema` puts the averages in the generator's
/// weights only. A run resumed from its backup keeps its averages: it ends equal
/// to the run that never stopped, averages included.
#[test]
fn the_generators_moving_average_follows_its_weights_and_resumes() {
    use wgml::graph::Ema;
    use wgml::train::{Backup, TermsConfig, fit_gan};
    let (_g, ctx) = gpu();
    let data = Dataset::mnist_10k().unwrap();
    let images: Vec<f32> = data.train.x[..64 * 784].iter().map(|v| 2.0 * v - 1.0).collect();
    let momentum = 0.8;
    let ema = Some(Ema::new(momentum).unwrap());
    let mut gan = SMALL.compile(ctx, Optimizer::adam(1e-3), 4).unwrap();
    gan.set_ema(ctx, ema).unwrap();
    let averaged: Vec<String> = gan
        .store
        .params
        .iter()
        .filter(|p| gan.store.average(p.node).is_some())
        .map(|p| p.name.clone())
        .collect();
    assert_eq!(averaged.len(), 6, "{averaged:?}");
    assert!(
        averaged.iter().all(|n| n.starts_with("generator.")),
        "{averaged:?}"
    );
    let values = |gan: &wgml::nn::GanModel| -> Vec<Vec<f32>> {
        gan.store
            .params
            .iter()
            .map(|p| p.value.to_f32(ctx).unwrap())
            .collect()
    };
    let averages = |gan: &wgml::nn::GanModel| -> Vec<Vec<f32>> {
        gan.store
            .params
            .iter()
            .filter_map(|p| gan.store.average(p.node).map(|a| a.to_f32(ctx).unwrap()))
            .collect()
    };
    let generator: Vec<usize> = (0..gan.store.params.len())
        .filter(|&i| gan.store.average(gan.store.params[i].node).is_some())
        .collect();
    let mut want: Vec<Vec<f32>> = Vec::new();
    for step in 0..4 {
        let real = &images[(step % 2) * 32 * 784..][..32 * 784];
        gan.train_step(ctx, real, 32, 1e-3).unwrap();
        let now = values(&gan);
        for (k, &i) in generator.iter().enumerate() {
            if step == 0 {
                want.push(now[i].clone());
            } else {
                wgml::reference::optim::ema_update(&mut want[k], &now[i], momentum, false);
            }
        }
        for (k, got) in averages(&gan).iter().enumerate() {
            assert_close(
                &format!("step {step}: {}", averaged[k]),
                got,
                &want[k],
                1e-7,
                1e-5,
            );
        }
    }
    let before = values(&gan);
    gan.finalize_ema(ctx).unwrap();
    let after = values(&gan);
    for (i, (was, now)) in before.iter().zip(&after).enumerate() {
        match generator.iter().position(|&g| g == i) {
            Some(k) => assert_eq!(now, &want[k], "{} takes its average", averaged[k]),
            None => assert_eq!(was, now, "the discriminator keeps its weights"),
        }
    }

    // Resumed from a backup after 2 of 3 epochs: averages restored, the end equal.
    let dir = fresh_dir("gan-ema-backup");
    let config = |epochs, backup: Option<Backup>| TermsConfig {
        epochs,
        batch_size: 32,
        lr: 1e-3,
        seed: 3,
        shuffle: true,
        max_steps: None,
        eval_batch: 32,
        backup,
        model: format!("{SMALL:?}"),
    };
    let compile = || {
        let mut gan = SMALL.compile(ctx, Optimizer::adam(1e-3), 5).unwrap();
        gan.set_ema(ctx, ema).unwrap();
        gan
    };
    let mut straight = compile();
    fit_gan(ctx, &mut straight, &images, &config(3, None), |_, _| Ok(())).unwrap();
    let kept = Backup {
        dir: dir.clone(),
        delete_when_done: false,
    };
    fit_gan(
        ctx,
        &mut compile(),
        &images,
        &config(2, Some(kept.clone())),
        |_, _| Ok(()),
    )
    .unwrap();
    let mut resumed = compile();
    fit_gan(ctx, &mut resumed, &images, &config(3, Some(kept)), |_, _| Ok(())).unwrap();
    assert_eq!(values(&resumed), values(&straight));
    assert_eq!(averages(&resumed), averages(&straight));
    // Another momentum does not resume that backup.
    let mut other = SMALL.compile(ctx, Optimizer::adam(1e-3), 5).unwrap();
    other.set_ema(ctx, Some(Ema::new(0.5).unwrap())).unwrap();
    let e = fit_gan(
        ctx,
        &mut other,
        &images,
        &config(
            3,
            Some(Backup {
                dir,
                delete_when_done: false,
            }),
        ),
        |_, _| Ok(()),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("ema"), "{e}");
}
