//! End to end: training on the GPU equals training on the CPU reference path;
//! a training step is one submission and creates nothing; divergence and bad
//! models are reported as errors.

use wgml::data::Dataset;
use wgml::graph::reference::ReferenceExecutor;
use wgml::kernels::optim::Optimizer;
use wgml::nn::model::Batch;
use wgml::nn::{Layer, LayerActivation as A, Loss, Sequential, zoo};
use wgml::train::{FitConfig, Monitor, ReduceLrOnPlateau, fit};

use crate::common::*;

/// `recipe`'s model compiled on `ctx` with its loss and optimizer, from `seed`.
fn compiled(ctx: &wgml::Context, recipe: &zoo::Recipe, seed: u64) -> wgml::nn::Model {
    recipe
        .model
        .compile(ctx, recipe.loss, recipe.optimizer.clone(), seed)
        .unwrap()
}

fn batch_of<'a>(x: &'a [f32], labels: &'a [u32], values: &'a [f32], len: usize) -> Batch<'a> {
    Batch {
        x,
        labels,
        values,
        len,
    }
}

/// Both lowerings of Conv2D → MaxPool2D: fused (where the adapter takes the
/// fused kernels, as lavapipe does) and the im2col path.
#[test]
fn cnn_training_on_gpu_matches_the_reference_path_step_by_step() {
    for fuse in [true, false] {
        cnn_matches_reference(fuse);
    }
}

/// With Adam (the recipe's) and with SGD + momentum, whose step follows the
/// gradient's scale: Adam's first step is lr·sign(g), so a gradient off by a
/// constant factor would pass with Adam alone.
fn cnn_matches_reference(fuse: bool) {
    let (_g, ctx) = gpu();
    for optimizer in [zoo::cnn().optimizer, Optimizer::sgd(0.05, 0.9)] {
        let recipe = zoo::Recipe {
            optimizer: optimizer.clone(),
            ..zoo::cnn()
        };
        let mut model = compiled(ctx, &recipe, 7);
        model.fuse = fuse;
        let kernels = kernel_names(&mut model, ctx, 16);
        let fused_here = fuse && ctx.is_cpu() && wgml::kernels::conv_pool::supported(ctx);
        assert_eq!(
            kernels.contains(&"conv_pool_forward"),
            fused_here,
            "fuse {fuse}: kernels {kernels:?}"
        );
        matches_reference(
            ctx,
            &format!("cnn, fuse {fuse}, {optimizer:?}"),
            &mut model,
            optimizer.lr(),
            16,
            6,
        );
    }
}

/// The paths real GPUs take, run here: the context plans as on a GPU with
/// subgroups (register_small, split-K for the Dense forward and the conv weight
/// gradient, no CPU fusions) and as on one without (the tiled kernels, vec4 loads,
/// split-K and the batch-reduce through the split reduction). The seed CNN trains
/// as the reference path step by step with Adam and with SGD + momentum (whose
/// step follows the gradient's scale, so a wrong magnitude shows).
#[test]
fn cnn_planned_as_on_a_gpu_matches_the_reference_path() {
    let (_g, ctx) = gpu();
    let _restore = PlanAs(ctx);
    for class in GPU_CLASSES {
        ctx.set_adapter_class(class);
        assert!(!ctx.is_cpu(), "{class:?}");
        for optimizer in [Optimizer::adam(1e-3), Optimizer::sgd(0.05, 0.9)] {
            let mut recipe = zoo::cnn();
            recipe.optimizer = optimizer.clone();
            let mut model = compiled(ctx, &recipe, 11);
            // Entry points and profile labels (where the Adam epilogue shows) of one plan.
            let (kernels, labels): (Vec<&str>, Vec<&str>) = model
                .train_dispatches(ctx, 16)
                .unwrap()
                .iter()
                .map(|d| (d.kernel.entry, d.kernel.label()))
                .unzip();
            assert!(
                kernels.contains(&"matmul_split_reduce"),
                "{class:?}: no split-K product in {kernels:?}"
            );
            assert!(
                !labels
                    .iter()
                    .any(|k| k.contains("conv_pool") || k.ends_with("+adam")),
                "{class:?}: a CPU fusion in {labels:?}"
            );
            let register = kernels.iter().any(|k| k.starts_with("matmul_register"));
            assert_eq!(
                register,
                class == wgml::gpu::AdapterClass::Gpu && wgml::kernels::matmul::has_subgroups(ctx),
                "{class:?}: {kernels:?}"
            );
            matches_reference(
                ctx,
                &format!("cnn planned as {class:?}, {optimizer:?}"),
                &mut model,
                optimizer.lr(),
                16,
                4,
            );
        }
    }
}

/// Keras' MNIST convnet: two conv blocks (the second needs its input's gradient,
/// so it takes the im2col path even where the first is fused) and Dropout(0.5),
/// whose masks the reference path draws bit for bit.
#[test]
fn convnet_with_dropout_matches_the_reference_path_step_by_step() {
    let (_g, ctx) = gpu();
    let recipe = zoo::convnet();
    let mut model = compiled(ctx, &recipe, 11);
    let kernels = kernel_names(&mut model, ctx, 16);
    assert_eq!(
        kernels.iter().filter(|k| **k == "dropout").count(),
        2,
        "{kernels:?}"
    );
    matches_reference(ctx, "convnet", &mut model, recipe.optimizer.lr(), 16, 4);
    // SGD: the dropout gradient's 1/(1 - rate) scale shows in the step.
    let sgd = Optimizer::sgd(0.05, 0.9);
    let mut with_sgd = recipe.model.compile(ctx, recipe.loss, sgd.clone(), 11).unwrap();
    matches_reference(ctx, "convnet, SGD", &mut with_sgd, sgd.lr(), 16, 4);
    // Evaluating, dropout is the identity: no dropout kernel, and predictions do
    // not change from one call to the next.
    let eval: Vec<&str> = model
        .eval_dispatches(ctx, 16)
        .unwrap()
        .iter()
        .map(|d| d.kernel.entry)
        .collect();
    assert!(!eval.contains(&"dropout"), "{eval:?}");
    // The same weights in the same model with Dropout(0.0) predict the same.
    let mut spec = recipe.model.clone();
    for layer in &mut spec.layers {
        if let Layer::Dropout { rate } = layer {
            *rate = 0.0;
        }
    }
    let twin = spec
        .compile(ctx, recipe.loss, recipe.optimizer.clone(), 11)
        .unwrap();
    twin.load_params(ctx, &model.store.download(ctx).unwrap())
        .unwrap();
    let mut twin = twin;
    let data = Dataset::mnist_10k().unwrap();
    let x = &data.test.x[..16 * 784];
    let with_dropout = model.predict(ctx, x, 16).unwrap();
    let without = twin.predict(ctx, x, 16).unwrap();
    assert_close(
        "predictions with Dropout(0.5) vs Dropout(0.0)",
        &with_dropout,
        &without,
        0.0,
        0.0,
    );
}

/// BatchNormalization after a convolution (per channel over N·H·W) and after a
/// Dense layer (per feature over the batch), one before its ReLU and one after.
/// SGD with momentum: a bias just before a batch normalization has a zero
/// gradient in exact arithmetic, which Adam's normalised step would turn into
/// steps of rounding noise no twin can match. Training on batch statistics with
/// the moving ones updated, step by step equal to the reference path (moving
/// statistics included, as parameters); evaluating on the moving statistics, as
/// the reference evaluates; both plans built for a partial batch too.
#[test]
fn batch_normalization_matches_the_reference_path_training_and_evaluating() {
    let (_g, ctx) = gpu();
    let spec = Sequential::new(&[1, 28, 28])
        .add(Layer::conv2d(8, 3, A::Linear))
        .add(Layer::BatchNormalization {
            momentum: 0.5,
            epsilon: 1e-3,
            trainable: true,
        })
        .add(Layer::Activation(A::Relu))
        .add(Layer::max_pool(2))
        .add(Layer::Flatten)
        .add(Layer::dense(32, A::Relu))
        .add(Layer::batch_norm())
        .add(Layer::dense(10, A::Softmax));
    let optimizer = Optimizer::sgd(0.05, 0.9);
    let mut model = spec
        .compile(ctx, Loss::SparseCategoricalCrossentropy, optimizer.clone(), 5)
        .unwrap();
    let kernels = kernel_names(&mut model, ctx, 16);
    assert_eq!(
        kernels
            .iter()
            .filter(|k| k.starts_with("batchnorm_train"))
            .count(),
        2,
        "{kernels:?}"
    );
    assert_eq!(
        kernels
            .iter()
            .filter(|k| k.starts_with("batchnorm_backward"))
            .count(),
        2,
        "{kernels:?}"
    );
    // The Activation layer after the first one runs inside its kernels (the one
    // act_bwd is the Dense layer's own ReLU).
    assert!(!kernels.contains(&"act_fwd"), "{kernels:?}");
    assert_eq!(
        kernels.iter().filter(|k| **k == "act_bwd").count(),
        1,
        "{kernels:?}"
    );
    matches_reference(ctx, "batch norm", &mut model, optimizer.lr(), 16, 4);
    // The convolution's bias feeds the batch normalization directly, so its exact
    // gradient is zero (normalizing removes any per-channel offset): both paths
    // move it only by rounding noise, far less than one real step (lr · 1e-1).
    let bias = model.store.params.iter().find(|p| p.name == "0.bias").unwrap();
    let moved = bias.value.to_f32(ctx).unwrap();
    assert!(moved.iter().all(|v| v.abs() < 5e-3 * optimizer.lr()), "{moved:?}");
    // The moving statistics moved away from (0, 1).
    let running = model
        .store
        .params
        .iter()
        .find(|p| p.name == "1.running_var")
        .unwrap();
    assert!(!running.trainable && running.state.is_empty());
    let running = running.value.clone();
    let var = running.to_f32(ctx).unwrap();
    assert!(var.iter().all(|v| (v - 1.0).abs() > 1e-3), "{var:?}");

    // Evaluating, 13 samples (a batch size no training step used).
    let data = Dataset::mnist_10k().unwrap();
    let n = 13;
    let x = &data.test.x[..n * 784];
    let eval: Vec<&str> = model
        .eval_dispatches(ctx, n)
        .unwrap()
        .iter()
        .map(|d| d.kernel.entry)
        .collect();
    assert!(
        eval.contains(&"batchnorm_eval") && !eval.iter().any(|k| k.starts_with("batchnorm_train")),
        "{eval:?}"
    );
    let got = model.predict(ctx, x, n).unwrap();
    let mut cpu = ReferenceExecutor::from_model(&model, ctx).unwrap();
    let logits = cpu.eval_output(x, n).unwrap();
    let mut want = vec![0.0; logits.len()];
    wgml::reference::softmax::softmax(&logits, 10, &mut want);
    assert_close("evaluation probabilities", &got, &want, 1e-5, 1e-4);
    // Evaluating leaves the moving statistics as they were.
    assert_eq!(running.to_f32(ctx).unwrap(), var);
}

/// Keras' `use_bias=False` before each batch normalization (the usual pattern:
/// the normalization's β is the offset), trained with Adam: no bias tensors in the
/// model or its checkpoint names, the convolution without a bias takes the im2col
/// path, and the GPU steps equal the reference path's, every parameter included.
#[test]
fn layers_without_bias_train_as_the_reference_path() {
    let (_g, ctx) = gpu();
    let spec = Sequential::new(&[1, 28, 28])
        .add(Layer::conv2d(6, 3, A::Linear).without_bias())
        .add(Layer::batch_norm())
        .add(Layer::Activation(A::Relu))
        .add(Layer::max_pool(2))
        .add(Layer::Flatten)
        .add(Layer::dense(16, A::Linear).without_bias())
        .add(Layer::batch_norm())
        .add(Layer::Activation(A::Tanh))
        .add(Layer::dense(10, A::Softmax));
    let loss = Loss::SparseCategoricalCrossentropy;
    let summary = spec.summary(loss).unwrap();
    assert_eq!(summary.layers[0].param_names, vec!["0.weight"]);
    assert_eq!(summary.layers[0].params, 6 * 9);
    assert_eq!(summary.layers[5].param_names, vec!["5.weight"]);
    assert_eq!(summary.layers[5].params, 16 * 6 * 13 * 13);
    let optimizer = Optimizer::adam(1e-3);
    let mut model = spec.compile(ctx, loss, optimizer.clone(), 9).unwrap();
    let names: Vec<&str> = model.store.params.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "0.weight",
            "1.weight",
            "1.bias",
            "1.running_mean",
            "1.running_var",
            "5.weight",
            "6.weight",
            "6.bias",
            "6.running_mean",
            "6.running_var",
            "8.weight",
            "8.bias"
        ]
    );
    let kernels = kernel_names(&mut model, ctx, 16);
    assert!(!kernels.contains(&"conv_pool_forward"), "{kernels:?}");
    matches_reference(ctx, "no bias", &mut model, optimizer.lr(), 16, 4);
    let sgd = Optimizer::sgd(0.05, 0.9);
    let mut with_sgd = spec.compile(ctx, loss, sgd.clone(), 9).unwrap();
    matches_reference(ctx, "no bias, SGD", &mut with_sgd, sgd.lr(), 16, 4);
}

/// Keras' GlobalAveragePooling2D (an all-convolutional head): per-channel means,
/// [C, H, W] → [C], one PyTorch module pair in the checkpoint names, trained step by
/// step as the reference path; a flat input is an error naming the layer.
#[test]
fn global_average_pooling_trains_as_the_reference_path() {
    let (_g, ctx) = gpu();
    let loss = Loss::SparseCategoricalCrossentropy;
    let spec = Sequential::new(&[1, 28, 28])
        .add(Layer::conv2d(8, 3, A::Relu))
        .add(Layer::max_pool(2))
        .add(Layer::conv2d(12, 3, A::Relu))
        .add(Layer::global_avg_pool())
        .add(Layer::dense(10, A::Softmax));
    let summary = spec.summary(loss).unwrap();
    let shapes: Vec<&[usize]> = summary.layers.iter().map(|l| l.output_shape.as_slice()).collect();
    assert_eq!(
        shapes,
        vec![&[8, 26, 26][..], &[8, 13, 13], &[12, 11, 11], &[12], &[10]]
    );
    // Conv2D(relu) 0-1, MaxPool 2, Conv2D(relu) 3-4, pooling + flatten 5-6, Dense 7.
    assert_eq!(summary.layers[4].param_names, vec!["7.weight", "7.bias"]);
    let optimizer = Optimizer::adam(1e-3);
    let mut model = spec.compile(ctx, loss, optimizer.clone(), 4).unwrap();
    matches_reference(ctx, "global average pooling", &mut model, optimizer.lr(), 16, 4);
    // SGD: the pooling gradient's 1/(H·W) scale shows in the step.
    let sgd = Optimizer::sgd(0.05, 0.9);
    let mut with_sgd = spec.compile(ctx, loss, sgd.clone(), 4).unwrap();
    matches_reference(ctx, "global average pooling, SGD", &mut with_sgd, sgd.lr(), 16, 4);
    let e = Sequential::new(&[10])
        .add(Layer::global_avg_pool())
        .graph(Loss::MeanSquaredError)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("GlobalAveragePooling2D #1") && e.contains("[10]"),
        "{e}"
    );
}

/// Every plan a fit and the test evaluation use, prepared at once, leaves nothing
/// to build later; a preparation that fails leaves nothing half-built behind.
#[test]
fn prepared_plans_serve_the_whole_run_and_a_failed_preparation_leaves_none() {
    let (_g, ctx) = gpu();
    let data = Dataset::two_blobs(3);
    let recipe = zoo::binary();
    let mut model = compiled(ctx, &recipe, 5);
    let cfg = FitConfig {
        epochs: 2,
        batch_size: 16,
        validation_split: 0.25,
        verbose: false,
        ..FitConfig::default()
    };
    // A failing preparation (a batch of 0 among good ones) is an error, and the
    // good plans it had built are dropped: the next step builds its own and runs.
    let bad = [model.options(16, true), model.options(0, true)];
    assert!(model.prepare(ctx, &bad).is_err());
    let x = &data.train.x[..16 * 2];
    let l: Vec<u32> = Vec::new();
    let v = vec![1.0f32; 16];
    model
        .train_step(ctx, &batch_of(x, &l, &v, 16), 0.01, |_, _| {})
        .unwrap();

    let mut plans = wgml::train::fit_plans(&model, &data.train, &cfg).unwrap();
    plans.extend(wgml::train::eval_plans(&model, data.test.len(), 16));
    model.prepare(ctx, &plans).unwrap();
    let before = ctx.counters();
    fit(&mut model, ctx, &data.train, &cfg).unwrap();
    wgml::train::evaluate(&mut model, ctx, &data.test, 16).unwrap();
    let d = ctx.counters() - before;
    assert_eq!(d.pipelines_created, 0, "a plan was built after prepare");
}

fn kernel_names(model: &mut wgml::nn::Model, ctx: &wgml::Context, b: usize) -> Vec<&'static str> {
    model
        .train_dispatches(ctx, b)
        .unwrap()
        .iter()
        .map(|d| d.kernel.entry)
        .collect()
}

/// Trains `model` for `steps` steps of `b` embedded MNIST digits on the GPU and on
/// the reference executor: losses within 1e-5 relative at every step, parameters
/// close after (but for biases that feed a batch normalization directly: their
/// exact gradient is zero, so both paths hold rounding noise there).
fn matches_reference(
    ctx: &wgml::Context,
    what: &str,
    model: &mut wgml::nn::Model,
    lr: f32,
    b: usize,
    steps: usize,
) {
    matches_reference_with(ctx, what, model, lr, b, steps, |l| l);
}

/// [`matches_reference`] with the digits' labels mapped by `label`.
fn matches_reference_with(
    ctx: &wgml::Context,
    what: &str,
    model: &mut wgml::nn::Model,
    lr: f32,
    b: usize,
    steps: usize,
    label: impl Fn(u32) -> u32,
) {
    let data = Dataset::mnist_10k().unwrap();
    let mut cpu = ReferenceExecutor::from_model(model, ctx).unwrap();
    let (mut x, mut l, mut v) = (Vec::new(), Vec::new(), Vec::new());
    for step in 0..steps {
        let idx: Vec<usize> = (step * b..(step + 1) * b).collect();
        data.train.gather(&idx, &mut x, &mut l, &mut v);
        l.iter_mut().for_each(|l| *l = label(*l));
        model.acc.reset(ctx).unwrap();
        model
            .train_step(ctx, &batch_of(&x, &l, &v, b), lr, |_, _| {})
            .unwrap();
        let gpu_loss = model.acc.read(ctx).unwrap().0 / b as f64;
        let cpu_loss = cpu.train_step(&x, &l, &v, b, lr).unwrap();
        let rel = (gpu_loss - cpu_loss).abs() / cpu_loss.abs();
        assert!(
            rel < 1e-5,
            "{what}, step {step}: GPU loss {gpu_loss} vs reference {cpu_loss} (rel {rel:e})"
        );
    }
    // The parameters after these steps agree too.
    let graph = &model.graph;
    let feeds_batch_norm = |node: usize| {
        use wgml::graph::Op;
        use wgml::kernels::matmul::Activation::Identity;
        graph.nodes.iter().any(|n| match &n.op {
            Op::BatchNorm { x, .. } => matches!(
                graph.nodes[*x].op,
                Op::Dense { b, act: Identity, .. } | Op::Conv2d { b, act: Identity, .. } if b == Some(node)
            ),
            _ => false,
        })
    };
    for p in model.store.params.iter().filter(|p| !feeds_batch_norm(p.node)) {
        let gpu = p.value.to_f32(ctx).unwrap();
        let want = &cpu.params()[p.node];
        let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        // Looser than the losses: over several steps, Adam's lr·g/(|g| + ε) turns
        // the f32 rounding of near-zero gradients into whole steps (seen: 6e-6 on a
        // weight of 1e-4 after 6 steps). The one-step comparison with PyTorch
        // float64 in golden.rs holds every tensor to 1e-5.
        assert_close(&format!("{what}: {}", p.name), &gpu, want, 1e-4 * scale, 1e-3);
    }
}

#[test]
fn a_training_step_is_one_submission_and_creates_nothing() {
    let (_g, ctx) = gpu();
    let recipe = zoo::cnn();
    let mut model = compiled(ctx, &recipe, 1);
    let b = 8;
    let x = vec![0.5f32; b * 784];
    let l: Vec<u32> = (0..b as u32).collect();
    let batch = batch_of(&x, &l, &[], b);
    model.train_step(ctx, &batch, 0.001, |_, _| {}).unwrap();
    ctx.wait().unwrap();
    let before = ctx.counters();
    for _ in 0..3 {
        model.train_step(ctx, &batch, 0.001, |_, _| {}).unwrap();
    }
    let after = ctx.counters();
    ctx.wait().unwrap();
    let d = after - before;
    assert_eq!(d.submissions, 3, "one submission per step");
    assert_eq!(d.buffers_created, 0, "no buffer created after the first step");
    assert_eq!(
        d.bind_groups_created, 0,
        "no bind group created after the first step"
    );
    assert_eq!(d.pipelines_created, 0);
}

#[test]
fn a_diverging_loss_stops_training_naming_epoch_and_step() {
    let (_g, ctx) = gpu();
    let mut data = Dataset::linear_regression(3);
    // A non-finite target makes the loss infinite from the third batch on.
    if let wgml::data::Targets::Values { values, .. } = &mut data.train.y {
        values[2 * 20 + 1] = f32::INFINITY;
    }
    let model = Sequential::new(&[3]).add(Layer::dense(1, A::Linear));
    let mut m = model
        .compile(ctx, Loss::MeanSquaredError, Optimizer::sgd(0.01, 0.0), 1)
        .unwrap();
    let cfg = FitConfig {
        epochs: 2,
        batch_size: 20,
        shuffle: false,
        verbose: false,
        ..FitConfig::default()
    };
    let e = fit(&mut m, ctx, &data.train, &cfg).unwrap_err().to_string();
    assert!(e.contains("epoch 1, step 3"), "{e}");
}

/// Early stopping as Keras' EarlyStopping: the watched value, its direction,
/// min_delta, patience and restore-best.
#[test]
fn early_stopping_watches_the_chosen_value() {
    let (_g, ctx) = gpu();
    let data = Dataset::two_blobs(9);
    let recipe = zoo::binary();
    let run = |monitor: Monitor, min_delta: f64| {
        let mut model = compiled(ctx, &recipe, 2);
        let cfg = FitConfig {
            epochs: 12,
            batch_size: 16,
            validation_split: 0.25,
            patience: Some(2),
            monitor,
            min_delta,
            verbose: false,
            ..FitConfig::default()
        };
        fit(&mut model, ctx, &data.train, &cfg).unwrap()
    };
    for monitor in [
        Monitor::ValLoss,
        Monitor::ValAccuracy,
        Monitor::Loss,
        Monitor::Accuracy,
    ] {
        let h = run(monitor, 0.0);
        let value = |e: &wgml::train::EpochStats| match monitor {
            Monitor::ValLoss => -e.val_loss.unwrap(),
            Monitor::ValAccuracy => e.val_accuracy.unwrap(),
            Monitor::Loss => -e.loss,
            Monitor::Accuracy => e.accuracy.unwrap(),
            Monitor::ValF1 | Monitor::ValExactMatch => unreachable!("not a tagger or question answerer"),
        };
        // The best epoch is the first with the best value (higher is better here).
        let best = h
            .epochs
            .iter()
            .fold((0, f64::NEG_INFINITY), |(bi, bv), e| {
                if value(e) > bv {
                    (e.epoch, value(e))
                } else {
                    (bi, bv)
                }
            })
            .0;
        assert_eq!(h.best_epoch, Some(best), "{monitor:?}: {:?}", h.epochs);
        // Stopped early exactly when patience ran out after the best epoch.
        let ran = h.epochs.len();
        assert_eq!(h.stopped_early, ran < 12, "{monitor:?}");
        if h.stopped_early {
            assert_eq!(ran, best + 2, "{monitor:?}: patience 2 after epoch {best}");
        }
    }
    // A min_delta larger than any change: only the first epoch ever counts.
    let h = run(Monitor::ValLoss, 1e9);
    assert_eq!(
        (h.best_epoch, h.epochs.len(), h.stopped_early),
        (Some(1), 3, true)
    );
}

/// ReduceLROnPlateau: the rate each epoch ran at, and that the GPU steps use it
/// (a reduction to almost nothing freezes the regression's loss).
#[test]
fn the_learning_rate_drops_on_a_plateau_and_the_steps_use_it() {
    let (_g, ctx) = gpu();
    let data = Dataset::linear_regression(4);
    let recipe = zoo::regression();
    let mut model = compiled(ctx, &recipe, 3);
    let cfg = FitConfig {
        epochs: 5,
        batch_size: 20,
        // No epoch counts as better after the first: reduce after one.
        reduce_lr: Some(ReduceLrOnPlateau {
            monitor: Monitor::Loss,
            factor: 1e-6,
            patience: 1,
            min_delta: 1e9,
            ..ReduceLrOnPlateau::default()
        }),
        verbose: false,
        ..FitConfig::default()
    };
    let h = fit(&mut model, ctx, &data.train, &cfg).unwrap();
    let lr0 = recipe.optimizer.lr() as f64;
    let lrs: Vec<f64> = h.epochs.iter().map(|e| e.lr).collect();
    let want = [lr0, lr0, lr0 * 1e-6, lr0 * 1e-12, lr0 * 1e-18];
    for (got, want) in lrs.iter().zip(want) {
        assert!((got - want).abs() <= 1e-9 * want, "{lrs:?}");
    }
    let losses: Vec<f64> = h.epochs.iter().map(|e| e.loss).collect();
    assert!((losses[1] - losses[0]).abs() > 1e-3 * losses[0], "{losses:?}");
    // From epoch 4 on the weights barely move: the loss repeats.
    assert!((losses[4] - losses[3]).abs() <= 1e-4 * losses[3], "{losses:?}");
}

#[test]
fn early_stopping_on_a_value_the_run_lacks_is_an_error() {
    let (_g, ctx) = gpu();
    let data = Dataset::linear_regression(1);
    let recipe = zoo::regression();
    let mut model = compiled(ctx, &recipe, 1);
    let cfg = |monitor, validation_split| FitConfig {
        epochs: 2,
        patience: Some(1),
        monitor,
        validation_split,
        verbose: false,
        ..FitConfig::default()
    };
    let e = fit(&mut model, ctx, &data.train, &cfg(Monitor::Accuracy, 0.2)).unwrap_err();
    assert!(e.to_string().contains("has no accuracy"), "{e}");
    let blobs = Dataset::two_blobs(1);
    let recipe = zoo::binary();
    let mut model = compiled(ctx, &recipe, 1);
    let e = fit(&mut model, ctx, &blobs.train, &cfg(Monitor::ValAccuracy, 0.0)).unwrap_err();
    assert!(e.to_string().contains("validation split"), "{e}");
    let bad = FitConfig {
        min_delta: -1.0,
        ..FitConfig::default()
    };
    assert!(bad.validate().unwrap_err().to_string().contains("min_delta"));
    assert!(
        Monitor::parse("val_acc")
            .unwrap_err()
            .to_string()
            .contains("val_accuracy")
    );
}

#[test]
fn bad_models_are_errors_naming_the_layer() {
    let e = Sequential::new(&[1, 28, 28])
        .add(Layer::dense(10, A::Relu))
        .graph(Loss::SparseCategoricalCrossentropy)
        .unwrap_err()
        .to_string();
    assert!(e.contains("Dense #1") && e.contains("Flatten"), "{e}");
    let e = Sequential::new(&[1, 5, 5])
        .add(Layer::conv2d(4, 7, A::Relu))
        .graph(Loss::MeanSquaredError)
        .unwrap_err()
        .to_string();
    assert!(e.contains("Conv2D #1"), "{e}");
    let e = Sequential::new(&[4])
        .add(Layer::dense(3, A::Softmax))
        .add(Layer::dense(2, A::Linear))
        .graph(Loss::SparseCategoricalCrossentropy)
        .unwrap_err()
        .to_string();
    assert!(e.contains("softmax"), "{e}");
    let e = Sequential::new(&[4])
        .add(Layer::dense(3, A::Relu))
        .add(Layer::dropout(1.0))
        .graph(Loss::MeanSquaredError)
        .unwrap_err()
        .to_string();
    assert!(e.contains("Dropout #2") && e.contains("dropout rate 1"), "{e}");
    for (layer, needle) in [
        (
            Layer::BatchNormalization {
                momentum: 1.5,
                epsilon: 1e-3,
                trainable: true,
            },
            "momentum 1.5",
        ),
        (
            Layer::BatchNormalization {
                momentum: 0.99,
                epsilon: -1.0,
                trainable: true,
            },
            "epsilon -1",
        ),
    ] {
        let e = Sequential::new(&[4])
            .add(Layer::dense(3, A::Relu))
            .add(layer)
            .add(Layer::dense(2, A::Linear))
            .graph(Loss::MeanSquaredError)
            .unwrap_err()
            .to_string();
        assert!(e.contains("BatchNormalization #2") && e.contains(needle), "{e}");
    }
}

#[test]
fn partial_last_batch_is_trained_and_counted() {
    let (_g, ctx) = gpu();
    let data = Dataset::two_blobs(5);
    let recipe = zoo::binary();
    let mut m = recipe
        .model
        .compile(ctx, recipe.loss, recipe.optimizer, 1)
        .unwrap();
    let cfg = FitConfig {
        epochs: 1,
        batch_size: 32,
        verbose: false,
        ..FitConfig::default()
    };
    let h = fit(&mut m, ctx, &data.train, &cfg).unwrap();
    // 80 samples at batch 32: 32 + 32 + 16, every sample counted once.
    assert_eq!(h.epochs[0].steps, 3);
    assert_eq!(m.step, 3);
    let acc = h.epochs[0].accuracy.unwrap();
    assert!(
        (acc * 80.0 - (acc * 80.0).round()).abs() < 1e-9,
        "accuracy {acc} is not k/80"
    );
}

#[test]
fn selftest_passes_every_check_on_this_adapter() {
    let (_g, ctx) = gpu();
    let checks = wgml::selftest::run(ctx).unwrap();
    assert!(checks.len() >= 20, "only {} checks", checks.len());
    let failed: Vec<_> = checks.iter().filter(|c| !c.pass).collect();
    assert!(failed.is_empty(), "failed: {failed:?}");
}

/// The epoch statistics a resumed run must reproduce: all but the timings.
fn measured(h: &wgml::train::History) -> Vec<wgml::train::EpochStats> {
    h.epochs
        .iter()
        .map(|e| wgml::train::EpochStats {
            seconds: 0.0,
            images_per_second: 0.0,
            ..e.clone()
        })
        .collect()
}

/// Every parameter and optimizer-state value of `model`, read back.
fn training_state(model: &wgml::nn::Model, ctx: &wgml::Context) -> Vec<Vec<f32>> {
    let mut all = Vec::new();
    for p in &model.store.params {
        all.push(p.value.to_f32(ctx).unwrap());
        for s in &p.state {
            all.push(s.to_f32(ctx).unwrap());
        }
    }
    all
}

/// A backup kept after training, in an empty folder of its own.
fn kept_backup(name: &str) -> wgml::train::Backup {
    let dir = std::env::temp_dir().join(format!("wgml-backup-{name}-{}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    wgml::train::Backup {
        dir,
        delete_when_done: false,
    }
}

/// Keras' BackupAndRestore: a run stopped in the middle of an epoch and started
/// again from its backup ends with the history, weights, optimizer state and step
/// count of the run that never stopped. The model has dropout (masks follow the
/// pass number), the run a partial last batch, a validation split, a learning rate
/// that drops on a plateau and early stopping with restore-best, so every piece of
/// the saved progress matters.
#[test]
fn a_run_resumed_from_its_backup_equals_the_run_that_never_stopped() {
    let (_g, ctx) = gpu();
    let data = Dataset::two_blobs(5);
    let spec = Sequential::new(&[2])
        .add(Layer::dense(16, A::Relu))
        .add(Layer::dropout(0.25))
        .add(Layer::dense(1, A::Sigmoid));
    let model = || {
        spec.compile(ctx, Loss::BinaryCrossentropy, Optimizer::adam(0.05), 7)
            .unwrap()
    };
    let kept = kept_backup("resumed");
    let dir = kept.dir.clone();
    // 60 training samples at batch 16: 4 steps per epoch, the last one of 12.
    let cfg = FitConfig {
        epochs: 12,
        batch_size: 16,
        validation_split: 0.25,
        patience: Some(2),
        reduce_lr: Some(ReduceLrOnPlateau {
            factor: 0.5,
            patience: 1,
            min_delta: 0.0,
            ..ReduceLrOnPlateau::default()
        }),
        verbose: false,
        ..FitConfig::default()
    };

    let mut whole = model();
    let want = fit(&mut whole, ctx, &data.train, &cfg).unwrap();
    // Every rule of the run acts: the plateau lowers the rate, early stopping ends
    // the run and restore-best puts an earlier epoch back.
    assert!(
        want.epochs.iter().any(|e| e.lr < 0.05)
            && want.stopped_early
            && want.best_epoch.is_some_and(|b| b < want.epochs.len()),
        "{:?} best {:?}",
        measured(&want),
        want.best_epoch
    );

    // Stopped two steps into epoch 3: the backup holds epochs 1 and 2.
    let mut stopped = model();
    let cut = FitConfig {
        max_steps: Some(10),
        backup: Some(kept.clone()),
        ..cfg.clone()
    };
    let h = fit(&mut stopped, ctx, &data.train, &cut).unwrap();
    assert_eq!((h.epochs.len(), stopped.step), (3, 10));
    assert!(kept.path().exists());

    // Started again on a model whose weights are not the run's: the backup's replace them.
    let mut resumed = model();
    for p in &resumed.store.params {
        p.value.write(ctx, &vec![0.5f32; p.value.numel()]).unwrap();
    }
    let again = FitConfig {
        backup: Some(wgml::train::Backup::new(&dir)),
        ..cfg.clone()
    };
    let got = fit(&mut resumed, ctx, &data.train, &again).unwrap();
    assert_eq!(measured(&got), measured(&want));
    assert_eq!(
        (got.best_epoch, got.stopped_early),
        (want.best_epoch, want.stopped_early)
    );
    assert_eq!(resumed.step, whole.step);
    assert_eq!(training_state(&resumed, ctx), training_state(&whole, ctx));
    // Training ended normally: the backup is gone.
    assert!(!kept.path().exists());
    std::fs::remove_dir_all(&dir).ok();
}

/// A backup written with other settings, another model or another file format is
/// refused with a message naming the difference and the way out; nothing is trained.
#[test]
fn a_backup_that_does_not_match_the_run_is_refused() {
    let (_g, ctx) = gpu();
    let data = Dataset::two_blobs(3);
    let recipe = zoo::binary();
    let backup = kept_backup("refused");
    let dir = backup.dir.clone();
    let cfg = FitConfig {
        epochs: 1,
        batch_size: 16,
        backup: Some(backup.clone()),
        verbose: false,
        ..FitConfig::default()
    };
    fit(&mut compiled(ctx, &recipe, 1), ctx, &data.train, &cfg).unwrap();
    let refused = |model: &mut wgml::nn::Model, cfg: &FitConfig, data: &wgml::data::Split| {
        let before = training_state(model, ctx);
        let e = fit(model, ctx, data, cfg).unwrap_err().to_string();
        assert_eq!(model.step, 0, "{e}");
        assert_eq!(training_state(model, ctx), before, "{e}");
        assert!(
            e.contains("training-state.safetensors") && e.contains("to start over"),
            "{e}"
        );
        e
    };
    let other_batch = FitConfig {
        batch_size: 8,
        epochs: 2,
        ..cfg.clone()
    };
    let e = refused(&mut compiled(ctx, &recipe, 1), &other_batch, &data.train);
    assert!(
        e.contains("batch_size = 16") && e.contains("batch_size = 8"),
        "{e}"
    );
    let e = refused(
        &mut compiled(ctx, &recipe, 1),
        &FitConfig {
            epochs: 2,
            ..cfg.clone()
        },
        &Dataset::two_blobs(4).train,
    );
    assert!(e.contains("data_crc32"), "{e}");
    let wider = Sequential::new(&[2])
        .add(Layer::dense(12, A::Sigmoid))
        .add(Layer::dense(1, A::Sigmoid));
    let mut m = wider
        .compile(ctx, recipe.loss, recipe.optimizer.clone(), 1)
        .unwrap();
    let e = refused(
        &mut m,
        &FitConfig {
            epochs: 2,
            ..cfg.clone()
        },
        &data.train,
    );
    assert!(e.contains("model = "), "{e}");
    // A cosine decay over "the whole run" changes with the number of epochs, so
    // raising them is refused; a schedule with its own decay steps may run on.
    std::fs::remove_file(backup.path()).unwrap();
    let cosine = |decay_steps| FitConfig {
        lr_schedule: Some(wgml::train::LrSchedule::Cosine {
            decay_steps,
            alpha: 0.0,
            warmup_steps: 0,
        }),
        ..cfg.clone()
    };
    fit(&mut compiled(ctx, &recipe, 1), ctx, &data.train, &cosine(None)).unwrap();
    let e = refused(
        &mut compiled(ctx, &recipe, 1),
        &FitConfig {
            epochs: 2,
            ..cosine(None)
        },
        &data.train,
    );
    assert!(
        e.contains("lr_schedule = Some(Cosine { decay_steps: Some(5)"),
        "{e}"
    );
    std::fs::remove_file(backup.path()).unwrap();
    let first = fit(
        &mut compiled(ctx, &recipe, 1),
        ctx,
        &data.train,
        &cosine(Some(50)),
    )
    .unwrap();
    let mut m = compiled(ctx, &recipe, 1);
    let h = fit(
        &mut m,
        ctx,
        &data.train,
        &FitConfig {
            epochs: 2,
            ..cosine(Some(50))
        },
    )
    .unwrap();
    assert_eq!((h.epochs.len(), m.step), (2, 10));
    // Epoch 1 came from the backup, timings included, not from training again.
    assert_eq!(h.epochs[0], first.epochs[0]);
    // A plain weights checkpoint is not a training state; garbage is not safetensors.
    let plain = compiled(ctx, &recipe, 1);
    wgml::checkpoint::save(&backup.path(), "binary", &plain.store.download(ctx).unwrap(), 0).unwrap();
    let e = refused(&mut compiled(ctx, &recipe, 1), &cfg, &data.train);
    assert!(e.contains("not a wgml training state"), "{e}");
    std::fs::write(backup.path(), b"not a state").unwrap();
    let e = fit(&mut compiled(ctx, &recipe, 1), ctx, &data.train, &cfg)
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a valid safetensors file"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

/// A learning-rate schedule sets every step's rate: a fit with a cosine decay (and
/// warmup) ends with the weights of the same steps taken one by one at the rates of
/// Keras' formula; each epoch records the rate of its last step.
#[test]
fn a_learning_rate_schedule_sets_the_rate_of_every_step() {
    let (_g, ctx) = gpu();
    let data = Dataset::two_blobs(6);
    let recipe = zoo::binary();
    let schedule = wgml::train::LrSchedule::Cosine {
        decay_steps: None,
        alpha: 0.1,
        warmup_steps: 3,
    };
    // 80 samples at batch 16, in order: 5 steps per epoch, 15 in all.
    let cfg = FitConfig {
        epochs: 3,
        batch_size: 16,
        shuffle: false,
        lr_schedule: Some(schedule),
        verbose: false,
        ..FitConfig::default()
    };
    let mut fitted = compiled(ctx, &recipe, 4);
    let h = fit(&mut fitted, ctx, &data.train, &cfg).unwrap();
    let lr0 = recipe.optimizer.lr() as f64;
    let rate = |t: u64| schedule.rate(lr0, t, 15);
    let recorded: Vec<f64> = h.epochs.iter().map(|e| e.lr).collect();
    assert_eq!(recorded, vec![rate(4), rate(9), rate(14)]);
    assert!(rate(0) == 0.0 && rate(3) == lr0 && (rate(14) - 0.1 * lr0).abs() < 0.02 * lr0);

    let mut stepped = compiled(ctx, &recipe, 4);
    let idx: Vec<usize> = (0..80).collect();
    let (mut x, mut labels, mut values) = (Vec::new(), Vec::new(), Vec::new());
    for t in 0..15u64 {
        let chunk = &idx[(t as usize % 5) * 16..][..16];
        data.train.gather(chunk, &mut x, &mut labels, &mut values);
        let batch = batch_of(&x, &labels, &values, 16);
        stepped
            .train_step(ctx, &batch, rate(t) as f32, |_, _| {})
            .unwrap();
    }
    assert_eq!(training_state(&fitted, ctx), training_state(&stepped, ctx));
    // Different from a constant rate, so the test could fail.
    let mut constant = compiled(ctx, &recipe, 4);
    let cfg = FitConfig {
        lr_schedule: None,
        ..cfg
    };
    fit(&mut constant, ctx, &data.train, &cfg).unwrap();
    assert_ne!(training_state(&fitted, ctx), training_state(&constant, ctx));
    // Keras refuses a schedule together with ReduceLROnPlateau; so does wgml.
    let both = FitConfig {
        lr_schedule: Some(schedule),
        reduce_lr: Some(ReduceLrOnPlateau::default()),
        ..FitConfig::default()
    };
    assert!(
        both.validate()
            .unwrap_err()
            .to_string()
            .contains("ReduceLROnPlateau")
    );
}

/// Keras' `model.save` / `load_model`: a trained model saved with its architecture
/// comes back, from the file alone, as the same model (layers, loss, optimizer)
/// with the same weights and moving statistics, and predicts the same.
#[test]
fn a_saved_model_loads_back_from_the_file_alone() {
    let (_g, ctx) = gpu();
    let spec = Sequential::new(&[1, 9, 9])
        .add(Layer::Conv2D {
            filters: 4,
            kernel: (3, 3),
            stride: (2, 2),
            padding: wgml::kernels::conv::Padding::Same,
            activation: A::Linear,
            use_bias: false,
            trainable: true,
        })
        .add(Layer::batch_norm())
        .add(Layer::Activation(A::Relu))
        .add(Layer::dropout(0.2))
        .add(Layer::Flatten)
        .add(Layer::dense(3, A::Softmax));
    let optimizer = Optimizer::RmsProp {
        lr: 0.01,
        rho: 0.8,
        epsilon: 1e-6,
        momentum: 0.5,
        centered: true,
    };
    let mut model = spec
        .compile(ctx, Loss::SparseCategoricalCrossentropy, optimizer.clone(), 3)
        .unwrap();
    let x = uniform(&mut rng(5), 12 * 81, -1.0, 1.0);
    let labels = vec![0u32, 1, 2, 1, 0, 2, 2, 1, 0, 0, 1, 2];
    for _ in 0..3 {
        model
            .train_step(ctx, &batch_of(&x, &labels, &[], 12), 0.01, |_, _| {})
            .unwrap();
    }
    let path = std::env::temp_dir().join(format!("wgml-saved-model-{}.safetensors", std::process::id()));
    wgml::checkpoint::save_model(&path, ctx, &model, "custom", &[]).unwrap();
    let (mut loaded, file) = wgml::checkpoint::load_model(ctx, &path).unwrap();
    assert_eq!(file.model.as_deref(), Some("custom"));
    assert_eq!(
        (loaded.spec.sequential(), loaded.loss, &loaded.optimizer),
        (Some(&spec), Loss::SparseCategoricalCrossentropy, &optimizer)
    );
    assert_eq!(
        loaded.store.download(ctx).unwrap(),
        model.store.download(ctx).unwrap()
    );
    let want = model.predict(ctx, &x, 12).unwrap();
    assert_eq!(loaded.predict(ctx, &x, 12).unwrap(), want);
    // A weights-only checkpoint does not describe its model.
    wgml::checkpoint::save(&path, "custom", &model.store.download(ctx).unwrap(), 3).unwrap();
    let e = wgml::checkpoint::load_model(ctx, &path).unwrap_err().to_string();
    assert!(e.contains("does not describe its model"), "{e}");
    std::fs::remove_file(&path).ok();
}

/// Gradient clipping by global norm (`Model::clip_norm`): the GPU run equals the
/// reference path step by step with the clipping active (SGD, so the scale shows in
/// every update), the last step's factor is min(1, limit / norm), and the optimizer
/// no longer runs inside the backward pass (it must wait for the norm).
#[test]
fn clipped_training_matches_the_reference_path() {
    let (_g, ctx) = gpu();
    let recipe = zoo::cnn();
    let mut model = recipe
        .model
        .compile(ctx, recipe.loss, Optimizer::sgd(0.1, 0.9), 5)
        .unwrap();
    let limit = 0.05;
    model.clip_norm = Some(wgml::graph::ClipNorm::new(limit).unwrap());
    matches_reference(ctx, "cnn, clipped", &mut model, 0.1, 16, 3);
    let plan = model.plan(ctx, model.options(16, true)).unwrap();
    let factor = plan.clip_factor.as_ref().unwrap().to_f32(ctx).unwrap();
    let (scale, norm) = (factor[0], factor[1]);
    assert!(norm > 4.0 * limit && scale < 0.25, "[scale, norm] = {factor:?}");
    assert!(
        (scale - limit / (norm + 1e-6)).abs() <= 1e-6 * scale,
        "{factor:?}"
    );
    assert!(kernel_names(&mut model, ctx, 16).contains(&"clip_factor"));
    // With Adam, the Dense weight gradient's fused update (taken on CPU adapters)
    // gives way to the separate one, after the clipping.
    let labels = |clip: Option<f32>| {
        let mut m = compiled(ctx, &recipe, 5);
        m.clip_norm = clip.map(|c| wgml::graph::ClipNorm::new(c).unwrap());
        let d = m.train_dispatches(ctx, 16).unwrap();
        d.iter().map(|d| d.kernel.label()).collect::<Vec<_>>()
    };
    let clipped = labels(Some(limit));
    assert!(clipped.iter().all(|k| !k.contains("+adam")), "{clipped:?}");
    if ctx.is_cpu() {
        assert!(labels(None).iter().any(|k| k.contains("+adam")));
    }
    // Without clipping the same steps end elsewhere.
    let mut free = recipe
        .model
        .compile(ctx, recipe.loss, Optimizer::sgd(0.1, 0.9), 5)
        .unwrap();
    matches_reference(ctx, "cnn, not clipped", &mut free, 0.1, 16, 3);
    assert_ne!(training_state(&model, ctx), training_state(&free, ctx));
}

/// Data whose targets do not fit the model is refused before any step, naming both.
#[test]
fn targets_that_do_not_fit_the_model_are_refused() {
    let (_g, ctx) = gpu();
    let digits = Dataset::mnist_10k().unwrap();
    let three = Sequential::new(&[1, 28, 28])
        .add(Layer::Flatten)
        .add(Layer::dense(3, A::Softmax));
    let mut m = three
        .compile(ctx, Loss::SparseCategoricalCrossentropy, Optimizer::adam(1e-3), 1)
        .unwrap();
    let cfg = FitConfig {
        epochs: 1,
        verbose: false,
        ..FitConfig::default()
    };
    let e = fit(&mut m, ctx, &digits.train, &cfg).unwrap_err().to_string();
    assert!(e.contains("10 classes") && e.contains("3 outputs"), "{e}");
    let e = wgml::train::evaluate(&mut m, ctx, &digits.test, 256)
        .unwrap_err()
        .to_string();
    assert!(e.contains("10 classes"), "{e}");
    assert_eq!(m.step, 0);
    let blobs = Dataset::two_blobs(1);
    let e = fit(&mut m, ctx, &blobs.train, &cfg).unwrap_err().to_string();
    assert!(e.contains("needs class labels"), "{e}");
    let recipe = zoo::binary();
    let mut b = compiled(ctx, &recipe, 1);
    let e = fit(&mut b, ctx, &digits.train, &cfg).unwrap_err().to_string();
    assert!(e.contains("binary_crossentropy needs target values"), "{e}");
}

/// Image augmentation (`FitConfig::augment`): it changes what the model sees, yet a
/// run is reproducible and a run resumed from its backup mid-way draws the same
/// shifts and flips as the run that never stopped.
#[test]
fn augmented_training_is_reproducible_and_resumes_exactly() {
    let (_g, ctx) = gpu();
    let mut r = rng(8);
    let images = wgml::data::Split {
        x: uniform(&mut r, 48 * 64, 0.0, 1.0),
        sample_len: 64,
        y: wgml::data::Targets::Classes {
            labels: (0..48).map(|i| (i % 3) as u32).collect(),
            classes: 3,
            positions: 1,
        },
    };
    let spec = Sequential::new(&[1, 8, 8])
        .add(Layer::conv2d(4, 3, A::Relu))
        .add(Layer::max_pool(2))
        .add(Layer::Flatten)
        .add(Layer::dense(3, A::Softmax));
    let model = || {
        spec.compile(ctx, Loss::SparseCategoricalCrossentropy, Optimizer::adam(0.01), 2)
            .unwrap()
    };
    let augment = wgml::data::augment::Augment {
        shift: 2,
        flip_horizontal: true,
    };
    // 48 samples at batch 16: 3 steps per epoch.
    let cfg = FitConfig {
        epochs: 4,
        batch_size: 16,
        augment: Some(augment),
        verbose: false,
        ..FitConfig::default()
    };
    let run = |cfg: &FitConfig| {
        let mut m = model();
        let h = fit(&mut m, ctx, &images, cfg).unwrap();
        (measured(&h), training_state(&m, ctx))
    };
    let want = run(&cfg);
    assert_eq!(run(&cfg), want, "the same augmented run twice");
    let plain = run(&FitConfig {
        augment: None,
        ..cfg.clone()
    });
    assert_ne!(plain.1, want.1, "augmentation changed nothing");
    // Stopped in epoch 2, resumed.
    let kept = kept_backup("augmented");
    run(&FitConfig {
        max_steps: Some(5),
        backup: Some(kept.clone()),
        ..cfg.clone()
    });
    let resumed = run(&FitConfig {
        backup: Some(kept.clone()),
        ..cfg.clone()
    });
    assert_eq!(resumed, want);
    std::fs::remove_dir_all(&kept.dir).ok();
}

/// Records what `fit_with` tells it and stops where it is told to.
#[derive(Default)]
struct Recorder {
    batches: Vec<wgml::train::BatchEnd>,
    epochs: Vec<wgml::train::EpochStats>,
    events: Vec<String>,
    stop_after_steps: Option<u64>,
    stop_after_epochs: Option<usize>,
}

impl wgml::train::Callback for Recorder {
    fn on_batch_end(&mut self, batch: &wgml::train::BatchEnd) -> wgml::train::Control {
        self.batches.push(*batch);
        match self.stop_after_steps {
            Some(n) if batch.total_steps >= n => wgml::train::Control::Stop,
            _ => wgml::train::Control::Continue,
        }
    }

    fn on_epoch_end(&mut self, stats: &wgml::train::EpochStats, _epochs: usize) -> wgml::train::Control {
        self.epochs.push(stats.clone());
        match self.stop_after_epochs {
            Some(n) if stats.epoch >= n => wgml::train::Control::Stop,
            _ => wgml::train::Control::Continue,
        }
    }

    fn on_event(&mut self, event: &wgml::train::FitEvent<'_>) {
        self.events.push(format!("{event:?}"));
    }
}

/// Keras-style callbacks: every step and epoch reported as the history has them,
/// the plateau's rate cuts and early stopping as events, and a callback can stop
/// the run after a step (the epoch then covers the steps taken) or after an epoch.
#[test]
fn callbacks_follow_and_stop_the_run() {
    let (_g, ctx) = gpu();
    let data = Dataset::linear_regression(4);
    let recipe = zoo::regression();
    let cfg = FitConfig {
        epochs: 6,
        batch_size: 20,
        patience: Some(3),
        monitor: Monitor::Loss,
        min_delta: 1e9,
        reduce_lr: Some(ReduceLrOnPlateau {
            monitor: Monitor::Loss,
            factor: 0.5,
            patience: 1,
            min_delta: 1e9,
            ..ReduceLrOnPlateau::default()
        }),
        verbose: false,
        ..FitConfig::default()
    };
    let mut model = compiled(ctx, &recipe, 3);
    let mut rec = Recorder::default();
    let h = wgml::train::fit_with(&mut model, ctx, &data.train, &cfg, &mut [&mut rec]).unwrap();
    // Every step, numbered within its epoch and in the run.
    let steps_per_epoch = h.epochs[0].steps;
    assert_eq!(
        rec.batches.len() as u64,
        h.epochs.iter().map(|e| e.steps).sum::<u64>()
    );
    for (i, b) in rec.batches.iter().enumerate() {
        let i = i as u64;
        assert_eq!(
            (b.epoch as u64, b.step, b.total_steps, b.steps_per_epoch),
            (
                i / steps_per_epoch + 1,
                i % steps_per_epoch + 1,
                i + 1,
                steps_per_epoch
            )
        );
    }
    assert_eq!(rec.epochs, h.epochs);
    // No epoch improves by 1e9: the rate halves after each epoch from the second,
    // and early stopping ends the run after the fourth.
    assert!(h.stopped_early && h.epochs.len() == 4, "{:?}", h.epochs.len());
    let cuts = rec
        .events
        .iter()
        .filter(|e| e.starts_with("LearningRateReduced"))
        .count();
    assert_eq!(cuts, 3, "{:?}", rec.events);
    // Then restore-best (on by default) puts the first epoch's weights back.
    let tail: Vec<&str> = rec.events[3..].iter().map(String::as_str).collect();
    assert_eq!(
        tail,
        [
            "EarlyStopped { epoch: 4, epochs_without_improvement: 3 }",
            "RestoredBest { epoch: 1 }"
        ]
    );

    // Stopped two steps into the second epoch: that epoch covers the 2 it took.
    let cut = steps_per_epoch + 2;
    let mut model = compiled(ctx, &recipe, 3);
    let mut stop = Recorder {
        stop_after_steps: Some(cut),
        ..Recorder::default()
    };
    let cfg = FitConfig {
        patience: None,
        reduce_lr: None,
        ..cfg
    };
    let h = wgml::train::fit_with(&mut model, ctx, &data.train, &cfg, &mut [&mut stop]).unwrap();
    assert_eq!(model.step as u64, cut);
    assert_eq!(h.epochs.len(), 2);
    assert_eq!(h.epochs[1].steps, 2);
    // Stopped after the second epoch.
    let mut model = compiled(ctx, &recipe, 3);
    let mut stop = Recorder {
        stop_after_epochs: Some(2),
        ..Recorder::default()
    };
    let h = wgml::train::fit_with(&mut model, ctx, &data.train, &cfg, &mut [&mut stop]).unwrap();
    assert_eq!((h.epochs.len(), model.step), (2, 2 * steps_per_epoch as u32));
}

/// Inference on the host's own buffers: 300 test digits (two batches) go from a
/// host buffer through the model into another host buffer, recorded into the
/// host's encoder or submitted by wgml, with the same values as `predict` on host
/// slices; buffers that are too small or lack the copy usage are refused.
#[test]
fn predict_on_buffers_the_host_owns() {
    let (_g, ctx) = gpu();
    let data = Dataset::mnist_10k().unwrap();
    let mut model = compiled(ctx, &zoo::mlp(), 4);
    let n = 300;
    let x = &data.test.x[..n * 784];
    let want = model.predict(ctx, x, n).unwrap();
    let host = |bytes: usize, usage: wgpu::BufferUsages| {
        ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("host"),
            size: bytes as u64,
            usage,
            mapped_at_creation: false,
        })
    };
    use wgpu::BufferUsages as U;
    let input = host(n * 784 * 4, U::STORAGE | U::COPY_SRC | U::COPY_DST);
    ctx.queue.write_buffer(&input, 0, bytemuck::cast_slice(x));
    for own_encoder in [true, false] {
        let output = host(n * 10 * 4, U::STORAGE | U::COPY_DST | U::COPY_SRC);
        if own_encoder {
            let mut enc = ctx.device.create_command_encoder(&Default::default());
            model
                .predict_on_buffers(ctx, &input, n, &output, Some(&mut enc))
                .unwrap();
            ctx.queue.submit(Some(enc.finish()));
        } else {
            model.predict_on_buffers(ctx, &input, n, &output, None).unwrap();
        }
        let got: Vec<f32> = wgml::gpu::read_buffer(ctx, &output, n * 10).unwrap();
        assert_eq!(got, want, "own encoder: {own_encoder}");
    }
    let small = host(n * 10 * 4 - 4, U::COPY_DST);
    let e = model
        .predict_on_buffers(ctx, &input, n, &small, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("output buffer") && e.contains("12000"), "{e}");
    let no_copy = host(n * 10 * 4, U::STORAGE);
    let e = model
        .predict_on_buffers(ctx, &input, n, &no_copy, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("COPY_DST"), "{e}");
}

/// Training steps on the host's own buffers equal steps on host slices bit for
/// bit (recorded into the host's encoder or submitted by wgml); a targets buffer
/// that is too small is refused.
#[test]
fn train_steps_on_buffers_the_host_owns() {
    let (_g, ctx) = gpu();
    let data = Dataset::mnist_10k().unwrap();
    let recipe = zoo::mlp();
    let mut slices = compiled(ctx, &recipe, 6);
    let mut buffers = compiled(ctx, &recipe, 6);
    let b = 32;
    use wgpu::BufferUsages as U;
    let host = |bytes: &[u8]| {
        let buffer = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("host"),
            size: bytes.len() as u64,
            usage: U::STORAGE | U::COPY_SRC | U::COPY_DST,
            mapped_at_creation: false,
        });
        ctx.queue.write_buffer(&buffer, 0, bytes);
        buffer
    };
    let (mut x, mut l, mut v) = (Vec::new(), Vec::new(), Vec::new());
    for step in 0..3 {
        let idx: Vec<usize> = (step * b..(step + 1) * b).collect();
        data.train.gather(&idx, &mut x, &mut l, &mut v);
        slices
            .train_step(ctx, &batch_of(&x, &l, &v, b), 1e-3, |_, _| {})
            .unwrap();
        let (input, targets) = (host(bytemuck::cast_slice(&x)), host(bytemuck::cast_slice(&l)));
        if step % 2 == 0 {
            let mut enc = ctx.device.create_command_encoder(&Default::default());
            buffers
                .train_step_on_buffers(ctx, &input, &targets, b, 1e-3, Some(&mut enc))
                .unwrap();
            ctx.queue.submit(Some(enc.finish()));
        } else {
            buffers
                .train_step_on_buffers(ctx, &input, &targets, b, 1e-3, None)
                .unwrap();
        }
    }
    assert_eq!(buffers.step, slices.step);
    for (p, q) in slices.store.params.iter().zip(&buffers.store.params) {
        assert_eq!(
            p.value.to_f32(ctx).unwrap(),
            q.value.to_f32(ctx).unwrap(),
            "{}",
            p.name
        );
    }
    assert_eq!(slices.acc.read(ctx).unwrap(), buffers.acc.read(ctx).unwrap());
    let input = host(bytemuck::cast_slice(&x));
    let short = host(&[0u8; 4 * 31]);
    let e = buffers
        .train_step_on_buffers(ctx, &input, &short, b, 1e-3, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("targets buffer") && e.contains("128"), "{e}");
}

/// A base (Flatten → Dense 32 relu) and a head of `classes`.
fn base_with_head(classes: usize) -> Sequential {
    Sequential::new(&[1, 28, 28])
        .add(Layer::Flatten)
        .add(Layer::dense(32, A::Relu))
        .add(Layer::dense(classes, A::Softmax))
}

/// Fine-tuning: a checkpoint of a 10-class model starts a 5-class one; the base
/// loads (the head, of another shape, starts anew) and, frozen, keeps its weights
/// bit for bit while the head trains; the step equals the reference path's with
/// Adam (whose CPU-adapter lowering fuses the update into the weight gradient) and
/// with SGD.
#[test]
fn a_frozen_base_keeps_its_weights_while_a_new_head_trains() {
    let (_g, ctx) = gpu();
    let loss = Loss::SparseCategoricalCrossentropy;
    let base = base_with_head(10)
        .compile(ctx, loss, Optimizer::adam(1e-3), 3)
        .unwrap();
    let values = base.store.download(ctx).unwrap();
    for optimizer in [Optimizer::adam(1e-2), Optimizer::sgd(0.1, 0.9)] {
        let spec = base_with_head(5)
            .freeze(loss, &wgml::nn::Freeze::Loaded, &values)
            .unwrap();
        assert!(!spec.layers[1].is_trainable() && spec.layers[2].is_trainable());
        let summary = spec.summary(loss).unwrap();
        assert_eq!(summary.non_trainable_params(), 784 * 32 + 32, "{summary}");
        let mut model = spec.compile(ctx, loss, optimizer.clone(), 4).unwrap();
        let report = model.load_matching(ctx, &values).unwrap();
        assert_eq!(report.loaded, ["1.weight", "1.bias"]);
        let new: Vec<&str> = report.new.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(new, ["3.weight", "3.bias"]);
        assert!(report.new[0].1.contains("[10, 32]"), "{report}");
        assert_eq!(report.unused, Vec::<String>::new());
        let before = model.store.download(ctx).unwrap();
        // Digits' labels modulo 5 stand in for the new task.
        matches_reference_with(
            ctx,
            &format!("frozen base, {optimizer:?}"),
            &mut model,
            optimizer.lr(),
            8,
            3,
            |l| l % 5,
        );
        let after = model.store.download(ctx).unwrap();
        for ((name, _, was), (_, _, now)) in before.iter().zip(&after) {
            assert_eq!(was == now, name.starts_with("1."), "{name} after training");
        }
    }
}

/// `--new-layers`: a head of the same shape as the checkpoint's starts from its
/// initialiser anyway, the rest loads, and the numbers given are checked.
#[test]
fn a_new_layer_starts_from_its_initialiser_though_the_checkpoint_fits_it() {
    let (_g, ctx) = gpu();
    let loss = Loss::SparseCategoricalCrossentropy;
    let values = base_with_head(5)
        .compile(ctx, loss, Optimizer::adam(1e-3), 3)
        .unwrap()
        .store
        .download(ctx)
        .unwrap();
    let model = base_with_head(5)
        .compile(ctx, loss, Optimizer::adam(1e-3), 4)
        .unwrap();
    let initial = model.store.download(ctx).unwrap();
    let report = model.load_matching_except(ctx, &values, &[3]).unwrap();
    assert_eq!(report.loaded, ["1.weight", "1.bias"]);
    assert_eq!(report.new.len(), 2);
    assert!(report.new[0].1.contains("a new layer"), "{report}");
    let after = model.store.download(ctx).unwrap();
    for (((name, _, init), (_, _, loaded)), (_, _, now)) in initial.iter().zip(&values).zip(&after) {
        let expect = if name.starts_with("3.") { init } else { loaded };
        assert_eq!(now, expect, "{name}");
    }
    assert_ne!(initial[2].2, values[2].2, "the two seeds' heads differ");
    let e = model
        .load_matching_except(ctx, &values, &[1])
        .unwrap_err()
        .to_string();
    assert!(e.contains("'Flatten #1' has no parameters"), "{e}");
    let e = model
        .load_matching_except(ctx, &values, &[4])
        .unwrap_err()
        .to_string();
    assert!(e.contains("layer 4 does not exist"), "{e}");
    let head = Sequential::new(&[4])
        .add(Layer::dense(3, A::Relu))
        .add(Layer::Dropout { rate: 0.5 });
    assert!(matches!(
        head.with_head_units(7).unwrap().layers[0],
        Layer::Dense { units: 7, .. }
    ));
    let e = Sequential::new(&[1, 4, 4])
        .add(Layer::conv2d(2, 3, A::Relu))
        .with_head_units(7)
        .unwrap_err()
        .to_string();
    assert!(e.contains("must be Dense") && e.contains("Conv2D"), "{e}");
}

/// A frozen batch normalization runs in inference mode while training (Keras'):
/// its (loaded) moving statistics normalise and stay unchanged, γ and β too, and the
/// layers before it train through it; every step equals the reference path's, on
/// a conv-shaped and a Dense-shaped normalization, with Adam and SGD.
#[test]
fn a_frozen_batch_normalization_runs_in_inference_mode_while_training() {
    let (_g, ctx) = gpu();
    let loss = Loss::SparseCategoricalCrossentropy;
    for optimizer in [Optimizer::adam(1e-2), Optimizer::sgd(0.1, 0.9)] {
        let spec = Sequential::new(&[1, 28, 28])
            .add(Layer::conv2d(4, 3, A::Linear).without_bias())
            .add(Layer::batch_norm().frozen())
            .add(Layer::Activation(A::Relu))
            .add(Layer::max_pool(2))
            .add(Layer::Flatten)
            .add(Layer::dense(16, A::Linear))
            .add(Layer::batch_norm().frozen())
            .add(Layer::Activation(A::Tanh))
            .add(Layer::dense(10, A::Softmax));
        let summary = spec.summary(loss).unwrap();
        assert_eq!(summary.non_trainable_params(), 4 * 4 + 4 * 16, "{summary}");
        let mut model = spec.compile(ctx, loss, optimizer.clone(), 6).unwrap();
        // Statistics and scales as a pretrained model would bring them, far from
        // the identity so that the test tells inference mode from training mode.
        let mut values = model.store.download(ctx).unwrap();
        let mut r = rng(7);
        for (name, _, v) in values.iter_mut() {
            let (lo, hi) = match name.rsplit_once('.').map(|(_, t)| t) {
                Some("running_mean") => (-0.5, 0.5),
                Some("running_var") => (0.2, 3.0),
                _ if name.starts_with("1.") || name.starts_with("6.") => (0.5, 1.5),
                _ => continue,
            };
            *v = uniform(&mut r, v.len(), lo, hi);
        }
        model.load_params(ctx, &values).unwrap();
        matches_reference(
            ctx,
            &format!("frozen batch normalization, {optimizer:?}"),
            &mut model,
            optimizer.lr(),
            8,
            3,
        );
        let after = model.store.download(ctx).unwrap();
        for ((name, _, was), (_, _, now)) in values.iter().zip(&after) {
            let frozen = name.starts_with("1.") || name.starts_with("6.");
            assert_eq!(was == now, frozen, "{name} after training");
        }
    }
}

/// A frozen layer between trainable ones passes the gradient on to the layer
/// before it and keeps its own weights; the step equals the reference path's.
#[test]
fn a_frozen_layer_between_trainable_ones_passes_the_gradient_on() {
    let (_g, ctx) = gpu();
    let loss = Loss::SparseCategoricalCrossentropy;
    for optimizer in [Optimizer::adam(1e-2), Optimizer::sgd(0.1, 0.9)] {
        let spec = Sequential::new(&[1, 28, 28])
            .add(Layer::conv2d(4, 3, A::Relu))
            .add(Layer::conv2d(4, 3, A::Relu).frozen())
            .add(Layer::max_pool(2))
            .add(Layer::Flatten)
            .add(Layer::dense(16, A::Tanh).frozen())
            .add(Layer::dense(10, A::Softmax));
        let mut model = spec.compile(ctx, loss, optimizer.clone(), 5).unwrap();
        let before = model.store.download(ctx).unwrap();
        matches_reference(
            ctx,
            &format!("frozen middle, {optimizer:?}"),
            &mut model,
            optimizer.lr(),
            8,
            3,
        );
        let after = model.store.download(ctx).unwrap();
        for ((name, _, was), (_, _, now)) in before.iter().zip(&after) {
            let frozen = name.starts_with("2.") || name.starts_with("6.");
            assert_eq!(was == now, frozen, "{name} after training");
        }
    }
}

#[test]
fn freezing_what_cannot_be_frozen_is_an_error_naming_the_layer() {
    let (_g, ctx) = gpu();
    let loss = Loss::SparseCategoricalCrossentropy;
    let values = base_with_head(10)
        .compile(ctx, loss, Optimizer::adam(1e-3), 3)
        .unwrap()
        .store
        .download(ctx)
        .unwrap();
    let freeze = |text: &str| {
        base_with_head(5)
            .freeze(loss, &wgml::nn::Freeze::parse(text)?, &values)
            .map(|_| ())
    };
    let message = |r: wgml::Result<()>| r.unwrap_err().to_string();
    assert!(message(freeze("1")).contains("'Flatten #1' has no parameters"));
    assert!(message(freeze("4")).contains("layer 4 does not exist"));
    assert!(
        message(freeze("3")).contains("3.weight"),
        "a frozen head of another shape"
    );
    assert!(message(freeze("2-1")).contains("'2-1'"));
    assert!(message(freeze("x")).contains("'x'"));
    assert_eq!(
        wgml::nn::Freeze::parse("1,3-4").unwrap(),
        wgml::nn::Freeze::Layers(vec![1, 3, 4])
    );
    // A frozen layer that the checkpoint does not cover keeps random weights: refused.
    let spec = base_with_head(5).add(Layer::dense(3, A::Softmax));
    let spec = Sequential {
        layers: vec![
            spec.layers[0].clone(),
            spec.layers[1].clone().frozen(),
            Layer::dense(7, A::Relu).frozen(),
            Layer::dense(5, A::Softmax),
        ],
        ..spec
    };
    let model = spec.compile(ctx, loss, Optimizer::adam(1e-3), 3).unwrap();
    let e = model.load_matching(ctx, &values).unwrap_err().to_string();
    assert!(
        e.contains("'Dense #3' is frozen") && e.contains("3.weight"),
        "{e}"
    );
    // In JSON, as Keras writes it; left out, a layer trains.
    let json = r#"{"input_shape": [4], "layers": [{"Dense": {"units": 3, "trainable": false}}, {"Dense": {"units": 2}}]}"#;
    let spec: Sequential = serde_json::from_str(json).unwrap();
    assert!(!spec.layers[0].is_trainable() && spec.layers[1].is_trainable());
    let back = serde_json::to_string(&spec).unwrap();
    assert_eq!(back.matches("trainable").count(), 1, "{back}");
}

/// A functional model with a skip connection (`examples/models/residual.json`)
/// compiled as a supervised `Model` trains as the reference path, step by step.
#[test]
fn a_functional_residual_classifier_matches_the_reference_path() {
    let (_g, ctx) = gpu();
    let a: wgml::checkpoint::FunctionalArchitecture =
        serde_json::from_str(include_str!("../examples/models/residual.json")).unwrap();
    let mut model = a
        .functional
        .compile_supervised(ctx, a.optimizer.clone(), 3)
        .unwrap();
    matches_reference(ctx, "residual", &mut model, 1e-3, 16, 3);
}

/// The seed CNN written as a functional model (layers named as the Sequential's
/// PyTorch modules) is the same model: a fit gives the same history and weights
/// bit for bit, and `save_model` / `load_model` carry the functional description.
#[test]
fn the_seed_cnn_written_functionally_trains_as_the_sequential_one() {
    use wgml::nn::{Functional, Layer, LayerActivation as A};
    let (_g, ctx) = gpu();
    let recipe = zoo::cnn();
    let functional = Functional::new("image", &[1, 28, 28])
        .layer("0", Layer::conv2d(32, 3, A::Relu), &["image"])
        .layer("2", Layer::max_pool(2), &["0"])
        .layer("3", Layer::Flatten, &["2"])
        .layer("4", Layer::dense(64, A::Relu), &["3"])
        .layer("6", Layer::dense(10, A::Softmax), &["4"])
        .supervised("6", Loss::SparseCategoricalCrossentropy);
    let data = Dataset::mnist_10k()
        .unwrap()
        .train
        .select(&(0..256).collect::<Vec<_>>());
    let cfg = FitConfig {
        epochs: 2,
        batch_size: 32,
        validation_split: 0.25,
        verbose: false,
        ..FitConfig::default()
    };
    let mut sequential = compiled(ctx, &recipe, 5);
    let mut f = functional
        .compile_supervised(ctx, recipe.optimizer.clone(), 5)
        .unwrap();
    let want = fit(&mut sequential, ctx, &data, &cfg).unwrap();
    let got = fit(&mut f, ctx, &data, &cfg).unwrap();
    assert_eq!(measured(&got), measured(&want));
    assert_eq!(training_state(&f, ctx), training_state(&sequential, ctx));

    let path = std::env::temp_dir().join(format!("wgml-functional-{}.safetensors", std::process::id()));
    let names = vec!["zero".to_string(); 10];
    wgml::checkpoint::save_model(&path, ctx, &f, "functional-cnn", &names).unwrap();
    let (loaded, file) = wgml::checkpoint::load_model(ctx, &path).unwrap();
    assert_eq!(loaded.spec, wgml::nn::model::ModelSpec::Functional(functional));
    assert_eq!(file.build(ctx, &path).unwrap().unwrap().1, names);
    for (p, q) in loaded.store.params.iter().zip(&f.store.params) {
        assert_eq!(
            p.value.to_f32(ctx).unwrap(),
            q.value.to_f32(ctx).unwrap(),
            "{}",
            p.name
        );
    }
    let e = wgml::checkpoint::load_functional(ctx, &path)
        .unwrap_err()
        .to_string();
    assert!(e.contains("load_model"), "{e}");
    let _ = std::fs::remove_file(&path);
}

/// The first `n` test samples of `data`, their labels, and the logits the
/// reference executor gives for them with `model`'s weights.
fn first_test_samples(
    model: &wgml::nn::Model,
    ctx: &wgml::Context,
    data: &Dataset,
    n: usize,
) -> (wgml::data::Split, Vec<u32>, Vec<f32>) {
    let idx: Vec<usize> = (0..n).collect();
    let test = data.test.select(&idx);
    let (mut x, mut labels, mut values) = (Vec::new(), Vec::new(), Vec::new());
    test.gather(&idx, &mut x, &mut labels, &mut values);
    let logits = ReferenceExecutor::from_model(model, ctx)
        .unwrap()
        .eval_output(&x, n)
        .unwrap();
    (test, labels, logits)
}

/// A small MLP on 784 inputs, for the gradient-accumulation tests.
fn accumulation_mlp(dropout: f32) -> Sequential {
    let mut s = Sequential::new(&[784]).add(Layer::dense(24, A::Relu));
    if dropout > 0.0 {
        s = s.add(Layer::dropout(dropout));
    }
    s.add(Layer::dense(10, A::Softmax))
}

/// Gradient accumulation trains as one large batch: batches of 8 accumulated 4 at
/// a time take exactly the steps of batches of 32 over the same shuffled samples
/// (75 of them: steps of 32, 32 and 11, the last accumulated from 8 and 3, each
/// weighted by its share), with and without clipping of the summed gradient. SGD
/// with momentum shows the sum exactly (unclipped, its size too); Adam, whose step
/// divides by the gradient's own size, is held to the losses. A step limit counts
/// optimizer steps.
#[test]
fn gradient_accumulation_trains_as_one_large_batch() {
    let (_g, ctx) = gpu();
    let data = Dataset::mnist_10k().unwrap();
    let split = data.train.select(&(0..75).collect::<Vec<_>>());
    let run = |(opt, clip): &(Optimizer, Option<f32>),
               batch_size: usize,
               accumulate: usize,
               max_steps: Option<u64>| {
        let mut model = accumulation_mlp(0.0)
            .compile(ctx, Loss::SparseCategoricalCrossentropy, opt.clone(), 9)
            .unwrap();
        model.clip_norm = clip.map(|c| wgml::graph::ClipNorm::new(c).unwrap());
        let cfg = FitConfig {
            epochs: 2,
            batch_size,
            accumulate,
            max_steps,
            verbose: false,
            ..FitConfig::default()
        };
        let history = fit(&mut model, ctx, &split, &cfg).unwrap();
        (model, history)
    };
    let sgd = Optimizer::sgd(0.1, 0.9);
    for case in [
        (sgd.clone(), None),
        (sgd, Some(0.5)),
        (Optimizer::adam(0.01), Some(0.5)),
    ] {
        let opt = &case.0;
        let (large, h_large) = run(&case, 32, 1, None);
        let (small, h_small) = run(&case, 8, 4, None);
        assert_eq!((large.step, large.draws), (6, 6));
        assert_eq!((small.step, small.draws), (6, 20));
        for (a, b) in h_large.epochs.iter().zip(&h_small.epochs) {
            assert_eq!((a.steps, b.steps), (3, 3));
            let rel = (a.loss - b.loss).abs() / a.loss;
            assert!(
                rel < 1e-5,
                "{}: epoch {} loss {} vs {}",
                opt.name(),
                a.epoch,
                a.loss,
                b.loss
            );
        }
        if matches!(opt, Optimizer::Sgd { .. }) {
            for (p, q) in large.store.params.iter().zip(&small.store.params) {
                let want = p.value.to_f32(ctx).unwrap();
                let got = q.value.to_f32(ctx).unwrap();
                let what = format!("accumulated SGD, clip {:?}: {}", case.1, p.name);
                assert_close(&what, &got, &want, 1e-6, 1e-4);
            }
        }
    }
    // max_steps counts optimizer steps: 2 of them take 8 batches.
    let (limited, h) = run(&(Optimizer::sgd(0.1, 0.0), None), 8, 4, Some(2));
    assert_eq!((limited.step, limited.draws, h.epochs[0].steps), (2, 8, 2));
    let bad = FitConfig {
        accumulate: 0,
        ..FitConfig::default()
    };
    let mut model = accumulation_mlp(0.0)
        .compile(ctx, Loss::SparseCategoricalCrossentropy, Optimizer::adam(0.01), 9)
        .unwrap();
    let e = fit(&mut model, ctx, &split, &bad).unwrap_err().to_string();
    assert!(e.contains("accumulation"), "{e}");
}

/// An accumulated step with dropout equals the reference executor's: every pass
/// draws its own masks (its own draw number, not the optimizer step's), the
/// passes' gradients are weighted by their shares and clipped together, then one
/// update; two such steps in a row, then a plain step (`Model::train_step`, at the
/// next draw number).
#[test]
fn an_accumulated_step_with_dropout_equals_the_reference() {
    let (_g, ctx) = gpu();
    let data = Dataset::mnist_10k().unwrap();
    for opt in [Optimizer::sgd(0.1, 0.9), Optimizer::adam(0.003)] {
        let mut model = accumulation_mlp(0.5)
            .compile(ctx, Loss::SparseCategoricalCrossentropy, opt.clone(), 3)
            .unwrap();
        model.clip_norm = Some(wgml::graph::ClipNorm::new(1.0).unwrap());
        let mut cpu = ReferenceExecutor::from_model(&model, ctx).unwrap();
        let sizes = [8usize, 8, 5];
        let mut start = 0;
        for step in 0..3 {
            let passes = if step < 2 { &sizes[..] } else { &sizes[..1] };
            let gathered: Vec<(Vec<f32>, Vec<u32>, Vec<f32>)> = passes
                .iter()
                .map(|&b| {
                    let idx: Vec<usize> = (start..start + b).collect();
                    start += b;
                    let (mut x, mut l, mut v) = (Vec::new(), Vec::new(), Vec::new());
                    data.train.gather(&idx, &mut x, &mut l, &mut v);
                    (x, l, v)
                })
                .collect();
            let batches: Vec<Batch> = gathered
                .iter()
                .zip(passes)
                .map(|((x, l, v), &b)| batch_of(x, l, v, b))
                .collect();
            model.acc.reset(ctx).unwrap();
            if step < 2 {
                model
                    .train_step_accumulated(ctx, &batches, opt.lr(), |_, _, _| {})
                    .unwrap();
            } else {
                model.train_step(ctx, &batches[0], opt.lr(), |_, _| {}).unwrap();
            }
            let total: usize = passes.iter().sum();
            let gpu_loss = model.acc.read(ctx).unwrap().0 / total as f64;
            let refs: Vec<wgml::graph::reference::RefBatch> = gathered
                .iter()
                .zip(passes)
                .map(|((x, l, v), &b)| wgml::graph::reference::RefBatch {
                    x,
                    labels: l,
                    values: v,
                    b,
                })
                .collect();
            let cpu_loss = if step < 2 {
                cpu.train_step_accumulated(&refs, opt.lr()).unwrap()
            } else {
                let (x, l, v) = &gathered[0];
                cpu.train_step(x, l, v, passes[0], opt.lr()).unwrap()
            };
            let rel = (gpu_loss - cpu_loss).abs() / cpu_loss;
            assert!(
                rel < 1e-5,
                "{} step {step}: loss {gpu_loss} vs {cpu_loss}",
                opt.name()
            );
        }
        assert_eq!((model.step, model.draws), (3, 7));
        for p in &model.store.params {
            let got = p.value.to_f32(ctx).unwrap();
            assert_close(
                &format!("{} {}", opt.name(), p.name),
                &got,
                &cpu.params()[p.node],
                1e-5,
                1e-4,
            );
        }
    }
}

/// An accumulating run with a moving average of its weights, stopped and resumed
/// from its backup, equals the run that never stopped: the backup keeps the pass
/// count, so dropout draws the masks it would have drawn, and the averages, which
/// end in the weights' place. A run with another accumulation is refused the backup.
#[test]
fn an_accumulating_run_resumes_from_its_backup_with_its_masks() {
    let (_g, ctx) = gpu();
    let data = Dataset::two_blobs(5);
    let spec = Sequential::new(&[2])
        .add(Layer::dense(16, A::Relu))
        .add(Layer::dropout(0.25))
        .add(Layer::dense(1, A::Sigmoid));
    let model = || {
        let mut m = spec
            .compile(ctx, Loss::BinaryCrossentropy, Optimizer::adam(0.05), 7)
            .unwrap();
        m.set_ema(Some(wgml::graph::Ema::new(0.9).unwrap()));
        m
    };
    let kept = kept_backup("accumulating");
    let dir = kept.dir.clone();
    // 80 samples at batch 12, 3 per step: 7 batches and 3 steps an epoch (3, 3, 1).
    let cfg = FitConfig {
        epochs: 3,
        batch_size: 12,
        accumulate: 3,
        verbose: false,
        ..FitConfig::default()
    };
    let mut whole = model();
    let want = fit(&mut whole, ctx, &data.train, &cfg).unwrap();
    assert_eq!((whole.step, whole.draws), (9, 21));
    // Stopped one step into epoch 2: the backup holds epoch 1.
    let mut stopped = model();
    let cut = FitConfig {
        max_steps: Some(4),
        backup: Some(kept.clone()),
        ..cfg.clone()
    };
    fit(&mut stopped, ctx, &data.train, &cut).unwrap();
    assert_eq!((stopped.step, stopped.draws), (4, 10));
    let other = FitConfig {
        accumulate: 1,
        backup: Some(kept.clone()),
        ..cfg.clone()
    };
    let e = fit(&mut model(), ctx, &data.train, &other)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("accumulate = 3") && e.contains("accumulate = 1"),
        "{e}"
    );
    let mut resumed = model();
    let again = FitConfig {
        backup: Some(kept.clone()),
        ..cfg.clone()
    };
    let got = fit(&mut resumed, ctx, &data.train, &again).unwrap();
    assert_eq!(measured(&got), measured(&want));
    assert_eq!((resumed.step, resumed.draws), (9, 21));
    assert_eq!(training_state(&resumed, ctx), training_state(&whole, ctx));
    std::fs::remove_dir_all(&dir).ok();
}

/// Excluding tensors from the weight decay (Keras' `exclude_from_weight_decay`, a
/// PyTorch parameter group with `weight_decay=0`): excluding every tensor trains
/// exactly as no decay (AdamW's decoupled decay and SGD's L2 term alike, through
/// the fused Adam epilogue where the adapter takes it); excluding the biases trains
/// as the reference executor excluding them; a pattern that matches nothing or is
/// no regular expression is refused by name.
#[test]
fn weight_decay_skips_the_excluded_tensors() {
    let (_g, ctx) = gpu();
    let data = Dataset::mnist_10k().unwrap();
    let decayed = |mut o: Optimizer| {
        if let Optimizer::Adam { weight_decay, .. } | Optimizer::Sgd { weight_decay, .. } = &mut o {
            *weight_decay = 0.3;
        }
        o
    };
    let compile = |o: &Optimizer| {
        accumulation_mlp(0.0)
            .compile(ctx, Loss::SparseCategoricalCrossentropy, o.clone(), 5)
            .unwrap()
    };
    let train = |model: &mut wgml::nn::Model| {
        let (mut x, mut l, mut v) = (Vec::new(), Vec::new(), Vec::new());
        for step in 0..3 {
            let idx: Vec<usize> = (step * 16..(step + 1) * 16).collect();
            data.train.gather(&idx, &mut x, &mut l, &mut v);
            let lr = model.optimizer.lr();
            model
                .train_step(ctx, &batch_of(&x, &l, &v, 16), lr, |_, _| {})
                .unwrap();
        }
        training_state(model, ctx)
    };
    for plain in [Optimizer::adam(0.01), Optimizer::sgd(0.1, 0.9)] {
        let with_decay = decayed(plain.clone());
        let mut all_excluded = compile(&with_decay);
        let names = all_excluded
            .exclude_from_weight_decay(&["weight", "bias"])
            .unwrap();
        // PyTorch's nn.Sequential indices: the ReLU between the Linears is module 1.
        assert_eq!(names, ["0.weight", "0.bias", "2.weight", "2.bias"]);
        let want = train(&mut compile(&plain));
        assert_eq!(train(&mut all_excluded), want, "{}", plain.name());
        // The decay itself moves the weights: the comparison can fail.
        assert_ne!(train(&mut compile(&with_decay)), want, "{}", plain.name());

        let mut biases_excluded = compile(&with_decay);
        biases_excluded.exclude_from_weight_decay(&["bias$"]).unwrap();
        let lr = with_decay.lr();
        matches_reference(ctx, "weight decay but on biases", &mut biases_excluded, lr, 16, 3);
    }
    let mut model = compile(&decayed(Optimizer::adam(0.01)));
    let e = model
        .exclude_from_weight_decay(&["bias", "ln_"])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("'ln_' matches no trainable tensor") && e.contains("0.weight"),
        "{e}"
    );
    let e = model.exclude_from_weight_decay(&["("]).unwrap_err().to_string();
    assert!(e.contains("'(' is not a regular expression"), "{e}");
}

/// Label smoothing (PyTorch's `CrossEntropyLoss(label_smoothing)`): training steps
/// equal the reference executor's with the same smoothing; evaluation reports the
/// smoothed loss (as Keras' `val_loss`), equal to the twin's on the reference
/// logits; other losses refuse it.
#[test]
fn label_smoothing_trains_and_evaluates_as_the_reference() {
    let (_g, ctx) = gpu();
    let smoothing = wgml::graph::LabelSmoothing::new(0.2).unwrap();
    assert!(wgml::graph::LabelSmoothing::new(0.0).unwrap().is_none());
    assert!(wgml::graph::LabelSmoothing::new(1.0).is_err());
    let opt = Optimizer::adam(0.01);
    let mut model = accumulation_mlp(0.0)
        .compile(ctx, Loss::SparseCategoricalCrossentropy, opt.clone(), 12)
        .unwrap();
    model.label_smoothing = smoothing;
    matches_reference(ctx, "label smoothing 0.2", &mut model, opt.lr(), 16, 3);

    let data = Dataset::mnist_10k().unwrap();
    let (test, labels, logits) = first_test_samples(&model, ctx, &data, 40);
    let smoothed = wgml::train::evaluate(&mut model, ctx, &test, 16).unwrap().loss;
    let mean = |e: f32| {
        let mut l = vec![0.0; 40];
        wgml::reference::loss::softmax_cross_entropy_with(&logits, 10, &labels, &mut l, None, 1.0, e, None);
        l.iter().map(|&v| v as f64).sum::<f64>() / 40.0
    };
    let (want, plain) = (mean(0.2), mean(0.0));
    assert!((smoothed - want).abs() < 1e-5 * want, "{smoothed} vs {want}");
    assert!(
        (smoothed - plain).abs() > 1e-3,
        "smoothing changes the loss: {smoothed} vs {plain}"
    );
    model.label_smoothing = None;
    let unsmoothed = wgml::train::evaluate(&mut model, ctx, &test, 16).unwrap().loss;
    assert!(
        (unsmoothed - plain).abs() < 1e-5 * plain,
        "{unsmoothed} vs {plain}"
    );

    let mut binary = compiled(ctx, &zoo::binary(), 3);
    binary.label_smoothing = smoothing;
    let blobs = Dataset::two_blobs(3);
    let e = wgml::train::evaluate(&mut binary, ctx, &blobs.test, 16)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("label smoothing") && e.contains("sparse categorical"),
        "{e}"
    );
}

/// Class weights (Keras' `fit(class_weight=...)`): training steps equal the
/// reference executor's for a classifier and a binary classifier; weighing every
/// class by 2 is SGD at twice the rate; evaluation is unweighted; a weight count
/// that does not fit the model is refused.
#[test]
fn class_weights_train_as_the_reference_and_leave_evaluation_alone() {
    let (_g, ctx) = gpu();
    let weights: Vec<f32> = (0..10).map(|c| 0.25 + 0.5 * c as f32).collect();
    let opt = Optimizer::adam(0.01);
    let mut model = accumulation_mlp(0.0)
        .compile(ctx, Loss::SparseCategoricalCrossentropy, opt.clone(), 21)
        .unwrap();
    model.set_class_weights(Some(weights.clone())).unwrap();
    matches_reference(ctx, "class weights", &mut model, opt.lr(), 16, 3);

    let data = Dataset::mnist_10k().unwrap();
    let test = data.test.select(&(0..64).collect::<Vec<_>>());
    let weighted = wgml::train::evaluate(&mut model, ctx, &test, 32).unwrap();
    model.set_class_weights(None).unwrap();
    let plain = wgml::train::evaluate(&mut model, ctx, &test, 32).unwrap();
    assert_eq!(weighted.loss, plain.loss, "evaluation is unweighted");

    // Every class weighted 2: the gradient doubles, as SGD at twice the rate.
    let sgd = |lr: f32, w: Option<Vec<f32>>| {
        let mut m = accumulation_mlp(0.0)
            .compile(
                ctx,
                Loss::SparseCategoricalCrossentropy,
                Optimizer::sgd(lr, 0.0),
                21,
            )
            .unwrap();
        m.set_class_weights(w).unwrap();
        let split = data.train.select(&(0..48).collect::<Vec<_>>());
        let cfg = FitConfig {
            epochs: 1,
            batch_size: 16,
            verbose: false,
            ..FitConfig::default()
        };
        fit(&mut m, ctx, &split, &cfg).unwrap();
        training_state(&m, ctx)
    };
    let doubled = sgd(0.05, Some(vec![2.0; 10]));
    let faster = sgd(0.1, None);
    for (a, b) in doubled.iter().zip(&faster) {
        assert_close("weights of 2 against twice the rate", a, b, 1e-6, 1e-5);
    }

    // A binary classifier: weights of targets 0 and 1.
    let recipe = zoo::binary();
    let mut binary = compiled(ctx, &recipe, 8);
    binary.set_class_weights(Some(vec![0.4, 3.0])).unwrap();
    let blobs = Dataset::two_blobs(4);
    let mut cpu = ReferenceExecutor::from_model(&binary, ctx).unwrap();
    let (mut x, mut l, mut v) = (Vec::new(), Vec::new(), Vec::new());
    for step in 0..3 {
        let idx: Vec<usize> = (step * 16..(step + 1) * 16).collect();
        blobs.train.gather(&idx, &mut x, &mut l, &mut v);
        binary.acc.reset(ctx).unwrap();
        let lr = recipe.optimizer.lr();
        binary
            .train_step(ctx, &batch_of(&x, &l, &v, 16), lr, |_, _| {})
            .unwrap();
        let gpu_loss = binary.acc.read(ctx).unwrap().0 / 16.0;
        let cpu_loss = cpu.train_step(&x, &l, &v, 16, lr).unwrap();
        assert!(
            (gpu_loss - cpu_loss).abs() < 1e-5 * cpu_loss,
            "step {step}: {gpu_loss} vs {cpu_loss}"
        );
    }
    for p in &binary.store.params {
        assert_close(
            &p.name,
            &p.value.to_f32(ctx).unwrap(),
            &cpu.params()[p.node],
            1e-6,
            1e-4,
        );
    }

    let e = binary
        .set_class_weights(Some(vec![1.0; 3]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("2 class weights"), "{e}");
    let e = binary
        .set_class_weights(Some(vec![1.0, -1.0]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("class weight -1"), "{e}");
    let mut regression = compiled(ctx, &zoo::regression(), 1);
    let e = regression
        .set_class_weights(Some(vec![1.0]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("apply to a classifier"), "{e}");
}

/// The moving average of the weights (Keras' `use_ema`): after each step it equals
/// the reference executor's (its first step takes the weights themselves), once
/// per accumulated step; `finalize_ema` puts it in the weights' place, which `fit`
/// does at its end, early stopping or not; a new momentum starts anew.
#[test]
fn the_moving_average_of_the_weights_follows_the_reference() {
    let (_g, ctx) = gpu();
    let data = Dataset::mnist_10k().unwrap();
    let compile = || {
        let mut m = accumulation_mlp(0.0)
            .compile(
                ctx,
                Loss::SparseCategoricalCrossentropy,
                Optimizer::adam(0.01),
                31,
            )
            .unwrap();
        m.set_ema(Some(wgml::graph::Ema::new(0.8).unwrap()));
        m
    };
    let mut model = compile();
    let mut cpu = ReferenceExecutor::from_model(&model, ctx).unwrap();
    let (mut x, mut l, mut v) = (Vec::new(), Vec::new(), Vec::new());
    let batches: Vec<Vec<usize>> = (0..4).map(|s| (s * 16..(s + 1) * 16).collect()).collect();
    for idx in &batches {
        data.train.gather(idx, &mut x, &mut l, &mut v);
        model
            .train_step(ctx, &batch_of(&x, &l, &v, 16), 0.01, |_, _| {})
            .unwrap();
        cpu.train_step(&x, &l, &v, 16, 0.01).unwrap();
    }
    let average =
        |m: &wgml::nn::Model, p: &wgml::graph::Param| m.store.average(p.node).unwrap().to_f32(ctx).unwrap();
    let averages = cpu.ema_values().unwrap().to_vec();
    for p in &model.store.params {
        let got = average(&model, p);
        assert_close(
            &format!("average of {}", p.name),
            &got,
            &averages[p.node],
            1e-6,
            1e-4,
        );
        // The average lags the weights: it is not a copy of them.
        assert_ne!(got, p.value.to_f32(ctx).unwrap(), "{}", p.name);
    }
    model.finalize_ema(ctx).unwrap();
    for p in &model.store.params {
        assert_eq!(p.value.to_f32(ctx).unwrap(), average(&model, p));
    }

    // An accumulated step (two passes) moves the averages once, as the reference's.
    let mut accumulating = compile();
    let mut cpu = ReferenceExecutor::from_model(&accumulating, ctx).unwrap();
    for pair in batches.chunks(2) {
        let gathered: Vec<(Vec<f32>, Vec<u32>, Vec<f32>)> = pair
            .iter()
            .map(|idx| {
                data.train.gather(idx, &mut x, &mut l, &mut v);
                (x.clone(), l.clone(), v.clone())
            })
            .collect();
        let gpu: Vec<Batch> = gathered.iter().map(|(x, l, v)| batch_of(x, l, v, 16)).collect();
        accumulating
            .train_step_accumulated(ctx, &gpu, 0.01, |_, _, _| {})
            .unwrap();
        let refs: Vec<wgml::graph::reference::RefBatch> = gathered
            .iter()
            .map(|(x, l, v)| wgml::graph::reference::RefBatch {
                x,
                labels: l,
                values: v,
                b: 16,
            })
            .collect();
        cpu.train_step_accumulated(&refs, 0.01).unwrap();
    }
    for p in &accumulating.store.params {
        let got = average(&accumulating, p);
        let want = &cpu.ema_values().unwrap()[p.node];
        assert_close(
            &format!("accumulated average of {}", p.name),
            &got,
            want,
            1e-6,
            1e-4,
        );
    }

    // A new momentum starts a new average.
    accumulating.set_ema(Some(wgml::graph::Ema::new(0.5).unwrap()));
    assert!(
        accumulating
            .store
            .params
            .iter()
            .all(|p| accumulating.store.average(p.node).is_none())
    );

    // fit ends with the averages in place: the same 4 steps, in order.
    let mut fitted = compile();
    let cfg = FitConfig {
        epochs: 1,
        batch_size: 16,
        shuffle: false,
        verbose: false,
        ..FitConfig::default()
    };
    let split = data.train.select(&(0..64).collect::<Vec<_>>());
    fit(&mut fitted, ctx, &split, &cfg).unwrap();
    assert_eq!(training_state(&fitted, ctx), training_state(&model, ctx));

    // With early stopping the run still ends with the averages (no best snapshot).
    let mut early = compile();
    let watched = FitConfig {
        epochs: 3,
        patience: Some(1),
        validation_split: 0.25,
        ..cfg.clone()
    };
    let h = fit(&mut early, ctx, &split, &watched).unwrap();
    assert!(h.best_epoch.is_some());
    for p in &early.store.params {
        assert_eq!(p.value.to_f32(ctx).unwrap(), average(&early, p), "{}", p.name);
    }
}

/// Validation data given apart (Keras' `validation_data`, an image folder's `val/`)
/// validates exactly as the same samples split off by `validation_split`: the same
/// history (validation measures included) and weights; asking for both is refused.
#[test]
fn validation_data_given_apart_equals_the_same_split() {
    let (_g, ctx) = gpu();
    let data = Dataset::two_blobs(9);
    let recipe = zoo::binary();
    let cfg = FitConfig {
        epochs: 3,
        batch_size: 16,
        validation_split: 0.25,
        patience: Some(5),
        verbose: false,
        ..FitConfig::default()
    };
    let mut split = compiled(ctx, &recipe, 2);
    let want = fit(&mut split, ctx, &data.train, &cfg).unwrap();
    let (train, val) = data.train.split_validation(0.25).unwrap();
    let val = val.unwrap();
    let apart = FitConfig {
        validation_split: 0.0,
        ..cfg.clone()
    };
    let mut given = compiled(ctx, &recipe, 2);
    let got = wgml::train::fit_validated(&mut given, ctx, &train, &val, &apart, &mut []).unwrap();
    assert!(
        want.epochs
            .iter()
            .all(|e| e.val_loss.is_some() && e.val_accuracy.is_some())
    );
    assert_eq!(measured(&got), measured(&want));
    assert_eq!(training_state(&given, ctx), training_state(&split, ctx));
    let mut both = compiled(ctx, &recipe, 2);
    let e = wgml::train::fit_validated(&mut both, ctx, &train, &val, &cfg, &mut [])
        .unwrap_err()
        .to_string();
    assert!(e.contains("validation split of 0.25 too"), "{e}");
    let none = val.select(&[]);
    let e = wgml::train::fit_validated(&mut both, ctx, &train, &none, &apart, &mut [])
        .unwrap_err()
        .to_string();
    assert!(e.contains("holds no sample"), "{e}");
}

/// Top-k accuracy (Keras' `SparseTopKCategoricalAccuracy`): an evaluation with
/// `Model::top_k` counts the labels among the k largest outputs as the twin does on
/// the reference's logits, at least the accuracy and all at k = classes; training
/// is unchanged by it; other losses refuse it.
#[test]
fn top_k_accuracy_counts_as_the_twin() {
    let (_g, ctx) = gpu();
    let data = Dataset::mnist_10k().unwrap();
    let mut model = accumulation_mlp(0.0)
        .compile(
            ctx,
            Loss::SparseCategoricalCrossentropy,
            Optimizer::adam(0.01),
            41,
        )
        .unwrap();
    let split = data.train.select(&(0..64).collect::<Vec<_>>());
    let cfg = FitConfig {
        epochs: 1,
        batch_size: 16,
        verbose: false,
        ..FitConfig::default()
    };
    fit(&mut model, ctx, &split, &cfg).unwrap();
    let (test, labels, logits) = first_test_samples(&model, ctx, &data, 100);
    let plain = wgml::train::evaluate(&mut model, ctx, &test, 32).unwrap();
    assert_eq!(plain.top_k, None);
    for k in [1usize, 3, 10] {
        model.top_k = Some(k);
        let e = wgml::train::evaluate(&mut model, ctx, &test, 32).unwrap();
        let mut want = 0.0;
        wgml::reference::reduce::count_in_top_k(&logits, 10, &labels, k, &mut want);
        let (got_k, got) = e.top_k.unwrap();
        assert_eq!(got_k, k);
        assert!(
            (got - want as f64 / 100.0).abs() < 1e-9,
            "top-{k}: {got} vs {want}"
        );
        assert!(got >= e.accuracy.unwrap(), "top-{k} {got} below the accuracy");
        assert_eq!(e.loss, plain.loss);
        if k == 10 {
            assert_eq!(got, 1.0);
        }
    }
    let mut binary = compiled(ctx, &zoo::binary(), 3);
    binary.top_k = Some(2);
    let e = wgml::train::evaluate(&mut binary, ctx, &Dataset::two_blobs(3).test, 16)
        .unwrap_err()
        .to_string();
    assert!(e.contains("top-2 accuracy applies to sparse categorical"), "{e}");
}
