//! Functional models on the GPU: a residual block (two convolutions, a batch
//! normalization and a skip connection merged by Add) built from a functional
//! description trains equal to the reference executor step by step, and the
//! reference gradient through the skip connection equals central differences.

use wgml::kernels::conv::Padding;
use wgml::kernels::loss::Term;
use wgml::kernels::optim::Optimizer;
use wgml::nn::{Functional, GraphOp, Layer, LayerActivation};

use crate::common::*;

/// A 3×3 'same' convolution; without a bias before a batch normalization, whose
/// gradient is zero there (Adam would turn its rounding noise into full steps).
fn conv(filters: usize, activation: LayerActivation, use_bias: bool) -> Layer {
    Layer::Conv2D {
        filters,
        kernel: (3, 3),
        stride: (1, 1),
        padding: Padding::Same,
        activation,
        use_bias,
        trainable: true,
    }
}

/// image [1, 6, 6] → c1 (conv, act) → c2 (conv, no bias) → bn → Add(bn, c1) → act →
/// Flatten → Dense(36) logits; loss: BCE of the logits against the image itself.
fn residual_autoencoder(act: LayerActivation) -> Functional {
    Functional::new("image", &[1, 6, 6])
        .layer("c1", conv(3, act, true), &["image"])
        .layer("c2", conv(3, LayerActivation::Linear, false), &["c1"])
        .layer(
            "bn",
            Layer::BatchNormalization {
                momentum: 0.9,
                epsilon: 1e-3,
                trainable: true,
            },
            &["c2"],
        )
        .op("skip", GraphOp::Add, &["bn", "c1"])
        .layer("act", Layer::Activation(act), &["skip"])
        .layer("flat", Layer::Flatten, &["act"])
        .layer(
            "logits",
            Layer::Dense {
                units: 36,
                activation: LayerActivation::Linear,
                use_bias: true,
                trainable: true,
            },
            &["flat"],
        )
        .layer("targets", Layer::Flatten, &["image"])
        .loss_term("reconstruction", Term::BceSum, &["logits", "targets"], 1.0)
}

#[test]
fn a_residual_block_trains_equal_to_the_reference() {
    let (_g, ctx) = gpu();
    let b = 4;
    let x = uniform(&mut rng(7), b * 36, 0.0, 1.0);
    for optimizer in [Optimizer::adam(1e-2), Optimizer::sgd(0.05, 0.9)] {
        let mut model = residual_autoencoder(LayerActivation::Relu)
            .compile(ctx, optimizer.clone(), 3)
            .unwrap();
        let cpu = steps_equal_reference(ctx, &format!("{optimizer:?}"), &mut model.net, &x, b, 3);
        params_match_reference(ctx, &format!("{optimizer:?}"), &model.net.store, &cpu, 1e-5, 1e-4);
        let names: Vec<&str> = model.net.store.params.iter().map(|p| p.name.as_str()).collect();
        for want in [
            "c1.weight",
            "c1.bias",
            "c2.weight",
            "bn.weight",
            "bn.running_var",
            "logits.weight",
        ] {
            assert!(names.contains(&want), "{want} in {names:?}");
        }
    }
    // The first convolution's gradient flows through both branches of the Add
    // (tanh: central differences across a ReLU's kink are not the gradient).
    let model = residual_autoencoder(LayerActivation::Tanh)
        .compile(ctx, Optimizer::sgd(1.0, 0.0), 4)
        .unwrap();
    gradients_match_differences(ctx, &model.net, &["c1.weight"], &x, b, 1e-3, 1e-4, 3e-3);
}

/// x [5] → h = Dense(5, tanh); loss = mean((h − x)²) + 0.1 · Σ log(1 + h²), written
/// with the model's ops (Multiply by a constant −1, Add, Square, Mean, Log, Sum)
/// and `Value` terms: GPU steps equal the reference, whose gradient equals central
/// differences.
fn ops_loss() -> Functional {
    use wgml::nn::functional::TermKind;
    let constant = |value| GraphOp::Constant {
        value,
        shape: vec![5],
    };
    Functional::new("x", &[5])
        .layer(
            "h",
            Layer::Dense {
                units: 5,
                activation: LayerActivation::Tanh,
                use_bias: true,
                trainable: true,
            },
            &["x"],
        )
        .op("minus_one", constant(-1.0), &[])
        .op("negated", GraphOp::Multiply, &["x", "minus_one"])
        .op("error", GraphOp::Add, &["h", "negated"])
        .op("squared", GraphOp::Square, &["error"])
        .op("mse", GraphOp::Mean, &["squared"])
        .op("one", constant(1.0), &[])
        .op("h2", GraphOp::Square, &["h"])
        .op("shifted", GraphOp::Add, &["h2", "one"])
        .op("logged", GraphOp::Log, &["shifted"])
        .op("penalty", GraphOp::Sum, &["logged"])
        .loss_term("mse", TermKind::Value, &["mse"], 1.0)
        .loss_term("penalty", TermKind::Value, &["penalty"], 0.1)
}

#[test]
fn losses_written_with_ops_train_equal_to_the_reference() {
    let (_g, ctx) = gpu();
    let b = 6;
    let x = uniform(&mut rng(11), b * 5, -1.0, 1.0);
    for optimizer in [Optimizer::adam(1e-2), Optimizer::sgd(0.1, 0.9)] {
        let mut model = ops_loss().compile(ctx, optimizer.clone(), 3).unwrap();
        let cpu = steps_equal_reference(ctx, &format!("{optimizer:?}"), &mut model.net, &x, b, 3);
        params_match_reference(ctx, &format!("{optimizer:?}"), &model.net.store, &cpu, 1e-6, 1e-4);
    }
    let model = ops_loss().compile(ctx, Optimizer::sgd(1.0, 0.0), 5).unwrap();
    gradients_match_differences(ctx, &model.net, &["h.weight", "h.bias"], &x, b, 1e-3, 2e-4, 3e-3);
}

/// A loss term's gradient is the same constant every step: a term read through a
/// Reshape and an Add (whose backward hand it on as views) and a Dense(1) output
/// (whose backward takes buffers of the batch's size from the same pool) trains
/// equal to the reference over several steps, not just the first.
#[test]
fn a_loss_terms_gradient_stays_constant_over_steps() {
    use wgml::nn::functional::TermKind;
    let (_g, ctx) = gpu();
    let b = 7;
    let x = uniform(&mut rng(12), b * 3, -1.0, 1.0);
    let one = Layer::Dense {
        units: 1,
        activation: LayerActivation::Linear,
        use_bias: true,
        trainable: true,
    };
    let model = Functional::new("x", &[3])
        .layer("a", one.clone(), &["x"])
        .layer("b", one, &["x"])
        .op("sum", GraphOp::Add, &["a", "b"])
        .op("squared", GraphOp::Square, &["sum"])
        .op("mse", GraphOp::Mean, &["squared"])
        .op("both", GraphOp::Add, &["mse", "a"])
        .loss_term("both", TermKind::Value, &["both"], 1.0);
    let mut model = model.compile(ctx, Optimizer::sgd(0.05, 0.0), 3).unwrap();
    let cpu = steps_equal_reference(ctx, "constant term gradient", &mut model.net, &x, b, 5);
    params_match_reference(ctx, "constant term gradient", &model.net.store, &cpu, 1e-6, 1e-5);
}
