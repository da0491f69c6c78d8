//! The multi-input and shape ops on a graph (Concat, Slice, Reshape, Add, Mul, Exp,
//! Constant and a loss term): GPU training steps equal the reference executor's,
//! and the reference gradient equals central differences of its loss; bad shapes
//! are errors naming the layer.

use wgml::graph::{Graph, Init, Objective, ParamStore, WeightedTerm};
use wgml::kernels::loss::Term;
use wgml::kernels::matmul::Activation;
use wgml::kernels::optim::Optimizer;
use wgml::nn::GraphModel;

use crate::common::*;

/// x [6] → two slices through their own Dense layers, concatenated, reshaped to
/// [2, 3], the second row taken, mixed with exp and a product, BCE against 1.
fn build() -> (Graph, Objective) {
    let mut g = Graph::new();
    let x = g.input(&[6]).unwrap();
    let a = g.slice(x, 0, 2, "left").unwrap();
    let b = g.slice(x, 2, 4, "right").unwrap();
    let glorot = |i, o| Init::GlorotUniform {
        fan_in: i,
        fan_out: o,
    };
    let w1 = g.param("w1", &[3, 2], glorot(2, 3), "d1");
    let w2 = g.param("w2", &[3, 4], glorot(4, 3), "d2");
    let h1 = g.dense(a, w1, None, Activation::Tanh, "d1").unwrap();
    let h2 = g.dense(b, w2, None, Activation::Identity, "d2").unwrap();
    let c = g.concat(&[h1, h2], "join").unwrap();
    let r = g.reshape(c, &[2, 3], "rows").unwrap();
    let second = g.slice(r, 1, 1, "second row").unwrap();
    let first = g.slice(r, 0, 1, "first row").unwrap();
    let e = g.exp(second, 0.5, "exp").unwrap();
    let m = g.mul(e, first, "gate").unwrap();
    let s = g.add(m, first, "skip").unwrap();
    let flat = g.flatten(s, "flat");
    let t = g.constant(&[3], 1.0, "target").unwrap();
    let l = g.loss_term(Term::BceSum, flat, t, "loss").unwrap();
    let objective = Objective::Terms(vec![WeightedTerm {
        name: "loss".into(),
        node: l,
        weight: 1.0,
    }]);
    (g, objective)
}

#[test]
fn shape_and_arithmetic_ops_train_equal_to_the_reference() {
    let (_g, ctx) = gpu();
    let b = 5;
    let x = uniform(&mut rng(1), b * 6, -1.0, 1.0);
    for optimizer in [Optimizer::adam(1e-2), Optimizer::sgd(0.1, 0.9)] {
        let (g, objective) = build();
        let store = ParamStore::new(ctx, &g, optimizer.state_count(), &mut rng(2)).unwrap();
        let mut model = GraphModel::new(ctx, g, objective, store, optimizer.clone()).unwrap();
        let cpu = steps_equal_reference(ctx, &format!("{optimizer:?}"), &mut model, &x, b, 3);
        params_match_reference(ctx, &format!("{optimizer:?}"), &model.store, &cpu, 1e-6, 1e-4);
    }
    // The reference gradient (one SGD step of rate 1) against central differences.
    let (g, objective) = build();
    let store = ParamStore::new(ctx, &g, 0, &mut rng(3)).unwrap();
    let start = GraphModel::new(ctx, g, objective, store, Optimizer::sgd(1.0, 0.0))
        .unwrap()
        .reference(ctx)
        .unwrap();
    for node in [3usize, 4] {
        let (grad, fd) = gradient_and_differences(&start, node, &x, b, 1e-3);
        assert_close(
            &format!("node {node} gradient vs finite differences"),
            &grad,
            &fd,
            1e-4,
            2e-3,
        );
    }
}

#[test]
fn bad_shapes_are_errors_naming_the_layer() {
    let mut g = Graph::new();
    let x = g.input(&[2, 3]).unwrap();
    let y = g.input(&[2, 4]).unwrap();
    let e = g.concat(&[x, y], "join").unwrap_err().to_string();
    assert!(
        e.contains("'join'") && e.contains("[2, 3]") && e.contains("[2, 4]"),
        "{e}"
    );
    let e = g.slice(x, 1, 2, "cut").unwrap_err().to_string();
    assert!(e.contains("'cut'") && e.contains("out of range"), "{e}");
    let e = g.reshape(x, &[4], "shape").unwrap_err().to_string();
    assert!(e.contains("'shape'") && e.contains("6 values"), "{e}");
    assert!(g.concat(&[], "none").is_err());
    let both = g.concat(&[x, x], "ok").unwrap();
    assert_eq!(g.shape(both), [4, 3]);
}
