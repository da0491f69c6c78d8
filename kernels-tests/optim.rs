//! optim kernels against `wgml::reference::optim`.
//!
//! Every optimizer and option runs 10 consecutive steps on the GPU and on its twin,
//! with a fresh random gradient and a new learning rate each step, replaying one
//! `Dispatch` built before the first step: between steps only the gradient upload and
//! `StepUniform::write` happen, and the context's counters prove nothing (buffer,
//! bind group, pipeline) was created meanwhile.

use std::time::Instant;

use wgml::kernels::optim::{self, EpsilonPlacement, Optimizer, StepUniform};
use wgml::{Context, DType, Error, Tensor, reference};

use crate::common::*;

const STEPS: u32 = 10;

/// Every optimizer and option the kernels implement.
fn all_optimizers() -> Vec<(&'static str, Optimizer)> {
    let adam = |wd: f32, placement: EpsilonPlacement| Optimizer::Adam {
        lr: 0.01,
        beta1: 0.9,
        beta2: 0.999,
        epsilon: 1e-8,
        weight_decay: wd,
        epsilon_placement: placement,
    };
    let sgd = |momentum: f32, nesterov: bool, weight_decay: f32| Optimizer::Sgd {
        lr: 0.1,
        momentum,
        nesterov,
        weight_decay,
    };
    let rms = |momentum: f32, centered: bool| Optimizer::RmsProp {
        lr: 0.01,
        rho: 0.9,
        epsilon: 1e-7,
        momentum,
        centered,
    };
    vec![
        ("adam pytorch placement", adam(0.0, EpsilonPlacement::PyTorch)),
        ("adam keras placement", adam(0.0, EpsilonPlacement::Keras)),
        ("adam keras defaults", Optimizer::adam(0.01)),
        ("adamw pytorch placement", adam(0.1, EpsilonPlacement::PyTorch)),
        ("adamw keras placement", adam(0.1, EpsilonPlacement::Keras)),
        ("sgd plain", Optimizer::sgd(0.1, 0.0)),
        ("sgd weight decay", sgd(0.0, false, 0.05)),
        ("sgd momentum", Optimizer::sgd(0.1, 0.9)),
        ("sgd momentum weight decay", sgd(0.9, false, 0.05)),
        ("sgd nesterov", sgd(0.9, true, 0.0)),
        ("sgd nesterov weight decay", sgd(0.9, true, 0.05)),
        ("rmsprop", Optimizer::rmsprop(0.01)),
        ("rmsprop momentum", rms(0.9, false)),
        ("rmsprop centered", rms(0.0, true)),
        ("rmsprop centered momentum", rms(0.9, true)),
    ]
}

/// The learning rate of step `t`: a decaying schedule, so a dispatch that ignored the
/// step uniform's lr would fail.
fn lr_at(opt: &Optimizer, t: u32) -> f32 {
    opt.lr() * (1.0 - 0.05 * t as f32)
}

/// Runs `STEPS` steps of `opt` over `n` elements on the GPU (workgroup size `wg`) and
/// on the twin, and compares the parameter and every state tensor.
fn check_steps(ctx: &Context, what: &str, opt: &Optimizer, n: usize, wg: u32, steps: u32, seed: u64) {
    let mut r = rng(seed);
    let mut param = uniform(&mut r, n, -1.0, 1.0);
    let mut state = vec![vec![0.0f32; n]; opt.state_count()];

    let p = Tensor::from_f32(ctx, &param, &[n]).unwrap();
    let g = nan_tensor(ctx, &[n]);
    let s: Vec<Tensor> = (0..opt.state_count())
        .map(|_| Tensor::zeros(ctx, &[n], DType::F32).unwrap())
        .collect();
    let step = StepUniform::new(ctx).unwrap();
    let update = optim::optimizer_step_wg(ctx, opt, &step, &p, &g, &s, wg).unwrap();
    if n > (65_535 * wg) as usize {
        assert!(update.groups[1] > 1, "{what}: the large case must fold the grid");
    }

    let before = ctx.counters();
    for t in 1..=steps {
        let grad = uniform(&mut r, n, -1.0, 1.0);
        let lr = lr_at(opt, t);
        g.write(ctx, &grad).unwrap();
        step.write(ctx, opt, t, lr).unwrap();
        ctx.run(&[&update]).unwrap();
        reference::optim::optimizer_step(opt, t, lr, &mut param, &grad, &mut state);
    }
    let after = ctx.counters();
    assert_eq!(
        after.buffers_created, before.buffers_created,
        "{what}: a step created buffers"
    );
    assert_eq!(
        after.bind_groups_created, before.bind_groups_created,
        "{what}: a step rebuilt a bind group"
    );
    assert_eq!(
        after.pipelines_created, before.pipelines_created,
        "{what}: a step created a pipeline"
    );
    assert_eq!(after.submissions - before.submissions, steps as u64);

    check_tensor(
        &format!("{what} n={n} param after {steps} steps"),
        &p.to_f32(ctx).unwrap(),
        &param,
    );
    for ((tensor, want), name) in s.iter().zip(&state).zip(opt.state_names()) {
        check_tensor(
            &format!("{what} n={n} state {name} after {steps} steps"),
            &tensor.to_f32(ctx).unwrap(),
            want,
        );
    }
}

/// rtol 1e-5 per element, plus an atol of 1e-6 times the tensor's scale (its largest
/// magnitude, at least 1). Momentum buffers are sums of O(1) terms that can cancel to
/// a small result whose f32 rounding error still scales with the terms: a relative
/// check alone would fail on those elements for reasons that are not defects.
#[track_caller]
fn check_tensor(what: &str, got: &[f32], want: &[f32]) {
    let scale = want.iter().fold(1.0f32, |m, w| m.max(w.abs()));
    assert_close(what, got, want, 1e-6 * scale, 1e-5);
}

#[test]
fn every_optimizer_matches_its_twin_over_ten_steps() {
    let (_g, ctx) = gpu();
    for (k, (what, opt)) in all_optimizers().iter().enumerate() {
        for (j, n) in [1usize, 7, 1000, 4099].into_iter().enumerate() {
            check_steps(ctx, what, opt, n, optim::WG, STEPS, 100 + (k * 10 + j) as u64);
        }
    }
}

/// More than 65,535 workgroups, so the grid folds into 2-D. Lavapipe is slow, so the
/// kernels run with 4-invocation workgroups here (a bit over 262,000 elements fold);
/// `default_workgroup_folds` covers the 256-wide launcher on 16.8 million elements.
/// Lavapipe pays ~0.7 µs per workgroup, so this runs every entry point of the shader
/// (indexing is per entry point; the flags are covered by the smaller sizes above)
/// rather than all 15 configurations: about 0.6 s each.
#[test]
fn every_entry_point_matches_its_twin_on_a_folded_grid() {
    let (_g, ctx) = gpu();
    let wg = 4;
    let n = 65_535 * wg as usize + 1_001;
    let chosen = [
        "adam pytorch placement",
        "adamw keras placement",
        "sgd weight decay",
        "sgd nesterov weight decay",
        "rmsprop",
        "rmsprop momentum",
        "rmsprop centered",
        "rmsprop centered momentum",
    ];
    for (k, (what, opt)) in all_optimizers().iter().enumerate() {
        if !chosen.contains(what) {
            continue;
        }
        let start = Instant::now();
        check_steps(ctx, what, opt, n, wg, STEPS, 300 + k as u64);
        eprintln!(
            "{what}: n={n} wg={wg} {STEPS} steps + twin + check in {:.2?}",
            start.elapsed()
        );
    }
}

/// The default launcher (256-wide workgroups) on more than 65,535·256 elements: one
/// AdamW step (the optimizer with the most work per element), against the twin.
#[test]
fn default_workgroup_folds() {
    let (_g, ctx) = gpu();
    let n = 65_535 * optim::WG as usize + 3;
    let start = Instant::now();
    let opt = Optimizer::Adam {
        lr: 0.01,
        beta1: 0.9,
        beta2: 0.999,
        epsilon: 1e-8,
        weight_decay: 0.01,
        epsilon_placement: EpsilonPlacement::PyTorch,
    };
    check_steps(ctx, "adamw large", &opt, n, optim::WG, 1, 400);
    eprintln!("adamw: n={n} 1 step + twin + check in {:.2?}", start.elapsed());
}

/// With a constant gradient g = 1 and β1 = 0.5, β2 = 0.75 (exact in binary), m̂ = v̂ = 1
/// at every step, so PyTorch-placement Adam moves p by exactly lr/(1 + ε) per step.
#[test]
fn adam_pytorch_first_steps_match_hand_computed_values() {
    let (_g, ctx) = gpu();
    let (lr, eps) = (0.5f32, 0.25f32);
    let opt = Optimizer::Adam {
        lr,
        beta1: 0.5,
        beta2: 0.75,
        epsilon: eps,
        weight_decay: 0.0,
        epsilon_placement: EpsilonPlacement::PyTorch,
    };
    let p = Tensor::from_f32(ctx, &[1.0, -2.0, 0.0], &[3]).unwrap();
    let g = Tensor::from_f32(ctx, &[1.0, 1.0, 1.0], &[3]).unwrap();
    let s = [
        Tensor::zeros(ctx, &[3], DType::F32).unwrap(),
        Tensor::zeros(ctx, &[3], DType::F32).unwrap(),
    ];
    let step = StepUniform::new(ctx).unwrap();
    let update = optim::optimizer_step(ctx, &opt, &step, &p, &g, &s).unwrap();

    // Step 1: m = 0.5, v = 0.25, p -= 0.5 / 1.25 = 0.4.
    step.write(ctx, &opt, 1, lr).unwrap();
    ctx.run(&[&update]).unwrap();
    assert_close(
        "p after step 1",
        &p.to_f32(ctx).unwrap(),
        &[0.6, -2.4, -0.4],
        1e-7,
        1e-7,
    );
    assert_eq!(s[0].to_f32(ctx).unwrap(), vec![0.5; 3], "m after step 1");
    assert_eq!(s[1].to_f32(ctx).unwrap(), vec![0.25; 3], "v after step 1");

    // Steps 2 and 3: m = 1 − 0.5^t, v = 1 − 0.75^t, p moves by 0.4 again each step.
    for t in 2..=3 {
        step.write(ctx, &opt, t, lr).unwrap();
        ctx.run(&[&update]).unwrap();
    }
    assert_close(
        "p after step 3",
        &p.to_f32(ctx).unwrap(),
        &[-0.2, -3.2, -1.2],
        1e-6,
        1e-6,
    );
    assert_eq!(s[0].to_f32(ctx).unwrap(), vec![0.875; 3], "m after step 3");
    assert_eq!(
        s[1].to_f32(ctx).unwrap(),
        vec![1.0 - 0.421875; 3],
        "v after step 3"
    );

    // Usual betas: after one step with g = 1, p moves by lr·1/(1 + ε).
    let opt = Optimizer::Adam {
        lr: 0.1,
        beta1: 0.9,
        beta2: 0.999,
        epsilon: 1e-3,
        weight_decay: 0.0,
        epsilon_placement: EpsilonPlacement::PyTorch,
    };
    let p = Tensor::from_f32(ctx, &[1.0], &[1]).unwrap();
    let g = Tensor::from_f32(ctx, &[1.0], &[1]).unwrap();
    let s = [
        Tensor::zeros(ctx, &[1], DType::F32).unwrap(),
        Tensor::zeros(ctx, &[1], DType::F32).unwrap(),
    ];
    let update = optim::optimizer_step(ctx, &opt, &step, &p, &g, &s).unwrap();
    step.write(ctx, &opt, 1, 0.1).unwrap();
    ctx.run(&[&update]).unwrap();
    let moved = 1.0 - p.to_f32(ctx).unwrap()[0] as f64;
    let want = 0.1 / (1.0 + 1e-3);
    assert!(
        (moved - want).abs() < 1e-7,
        "p moved by {moved}, expected lr/(1+eps) = {want}"
    );
}

/// Keras placement with g = 1: m/bc1 = 1 and √v = √bc2, so the move is
/// lr·√bc2/(√bc2 + ε); with β2 = 0.75 at step 1 that is 0.5·0.5/0.75 = 1/3.
#[test]
fn adam_keras_first_step_matches_hand_computed_value() {
    let (_g, ctx) = gpu();
    let opt = Optimizer::Adam {
        lr: 0.5,
        beta1: 0.5,
        beta2: 0.75,
        epsilon: 0.25,
        weight_decay: 0.0,
        epsilon_placement: EpsilonPlacement::Keras,
    };
    let p = Tensor::from_f32(ctx, &[1.0], &[1]).unwrap();
    let g = Tensor::from_f32(ctx, &[1.0], &[1]).unwrap();
    let s = [
        Tensor::zeros(ctx, &[1], DType::F32).unwrap(),
        Tensor::zeros(ctx, &[1], DType::F32).unwrap(),
    ];
    let step = StepUniform::new(ctx).unwrap();
    let update = optim::optimizer_step(ctx, &opt, &step, &p, &g, &s).unwrap();
    step.write(ctx, &opt, 1, 0.5).unwrap();
    ctx.run(&[&update]).unwrap();
    assert_close(
        "p after step 1",
        &p.to_f32(ctx).unwrap(),
        &[2.0 / 3.0],
        1e-7,
        1e-6,
    );
}

#[test]
fn state_names_and_counts() {
    assert_eq!(Optimizer::adam(1e-3).state_names(), ["exp_avg", "exp_avg_sq"]);
    assert_eq!(Optimizer::sgd(0.1, 0.0).state_count(), 0);
    assert_eq!(Optimizer::sgd(0.1, 0.9).state_names(), ["momentum_buffer"]);
    assert_eq!(Optimizer::rmsprop(1e-3).state_names(), ["square_avg"]);
    let rms = |momentum: f32, centered: bool| Optimizer::RmsProp {
        lr: 1e-3,
        rho: 0.9,
        epsilon: 1e-7,
        momentum,
        centered,
    };
    assert_eq!(rms(0.9, false).state_names(), ["square_avg", "momentum_buffer"]);
    assert_eq!(rms(0.0, true).state_names(), ["square_avg", "grad_avg"]);
    assert_eq!(
        rms(0.9, true).state_names(),
        ["square_avg", "momentum_buffer", "grad_avg"]
    );
    match Optimizer::adam(0.002) {
        Optimizer::Adam {
            lr,
            beta1,
            beta2,
            epsilon,
            weight_decay,
            epsilon_placement,
        } => {
            assert_eq!(
                (lr, beta1, beta2, epsilon, weight_decay),
                (0.002, 0.9, 0.999, 1e-7, 0.0)
            );
            assert_eq!(epsilon_placement, EpsilonPlacement::Keras);
        }
        other => panic!("adam() built {other:?}"),
    }
    assert_eq!(Optimizer::rmsprop(0.003).lr(), 0.003);
}

/// Parameter, gradient and `count` zeroed state tensors of `n` elements.
fn tensors(ctx: &Context, n: usize, count: usize) -> (Tensor, Tensor, Vec<Tensor>) {
    let z = || Tensor::zeros(ctx, &[n], DType::F32).unwrap();
    (z(), z(), (0..count).map(|_| z()).collect())
}

#[track_caller]
fn expect_invalid(result: wgml::Result<impl std::fmt::Debug>, needle: &str) {
    match result {
        Err(Error::InvalidArgument(message)) => {
            assert!(
                message.contains(needle),
                "message '{message}' does not name '{needle}'"
            )
        }
        other => panic!("expected an invalid-argument error naming '{needle}', got {other:?}"),
    }
}

#[track_caller]
fn expect_shape(result: wgml::Result<impl std::fmt::Debug>, needle: &str) {
    match result {
        Err(Error::Shape { message, .. }) => {
            assert!(
                message.contains(needle),
                "message '{message}' does not name '{needle}'"
            )
        }
        other => panic!("expected a shape error naming '{needle}', got {other:?}"),
    }
}

#[test]
fn rejects_wrong_state_count() {
    let (_g, ctx) = gpu();
    let step = StepUniform::new(ctx).unwrap();
    let cases = [
        (Optimizer::adam(1e-3), 1),
        (Optimizer::adam(1e-3), 3),
        (Optimizer::sgd(0.1, 0.0), 1),
        (Optimizer::sgd(0.1, 0.9), 0),
        (Optimizer::rmsprop(1e-3), 2),
    ];
    for (opt, count) in cases {
        let (p, g, s) = tensors(ctx, 5, count);
        let want = format!("keeps {} state tensor(s)", opt.state_count());
        expect_invalid(optim::optimizer_step(ctx, &opt, &step, &p, &g, &s), &want);
    }
}

#[test]
fn rejects_state_of_another_shape() {
    let (_g, ctx) = gpu();
    let step = StepUniform::new(ctx).unwrap();
    let (p, g, mut s) = tensors(ctx, 6, 2);
    s[1] = Tensor::zeros(ctx, &[7], DType::F32).unwrap();
    expect_shape(
        optim::optimizer_step(ctx, &Optimizer::adam(1e-3), &step, &p, &g, &s),
        "exp_avg_sq has shape [7], differing from param shape [6]",
    );
    // Same element count, different shape.
    s[1] = Tensor::zeros(ctx, &[2, 3], DType::F32).unwrap();
    expect_shape(
        optim::optimizer_step(ctx, &Optimizer::adam(1e-3), &step, &p, &g, &s),
        "exp_avg_sq has shape [2, 3]",
    );
    let u = Tensor::from_u32(ctx, &[0; 6], &[6]).unwrap();
    let opt = Optimizer::sgd(0.1, 0.9);
    match optim::optimizer_step(ctx, &opt, &step, &p, &g, &[u]) {
        Err(Error::DType { what, .. }) => assert_eq!(what, "optimizer state"),
        other => panic!("expected a dtype error, got {other:?}"),
    }
}

#[test]
fn rejects_grad_of_another_shape() {
    let (_g, ctx) = gpu();
    let step = StepUniform::new(ctx).unwrap();
    let (p, _, s) = tensors(ctx, 6, 1);
    let g = Tensor::zeros(ctx, &[5], DType::F32).unwrap();
    expect_shape(
        optim::optimizer_step(ctx, &Optimizer::rmsprop(1e-3), &step, &p, &g, &s),
        "grad shape [5] differs from param shape [6]",
    );
    let g = Tensor::from_u32(ctx, &[0; 6], &[6]).unwrap();
    match optim::optimizer_step(ctx, &Optimizer::rmsprop(1e-3), &step, &p, &g, &s) {
        Err(Error::DType { what, .. }) => assert_eq!(what, "grad"),
        other => panic!("expected a dtype error, got {other:?}"),
    }
}

#[test]
fn rejects_aliased_buffers() {
    let (_g, ctx) = gpu();
    let step = StepUniform::new(ctx).unwrap();
    let (p, g, s) = tensors(ctx, 4, 2);
    let opt = Optimizer::adam(1e-3);
    expect_invalid(
        optim::optimizer_step(ctx, &opt, &step, &p, &p, &s),
        "param and grad are the same buffer",
    );
    let shared = [s[0].clone(), s[0].clone()];
    expect_invalid(
        optim::optimizer_step(ctx, &opt, &step, &p, &g, &shared),
        "exp_avg and exp_avg_sq are the same buffer",
    );
}

#[test]
fn rejects_invalid_hyper_parameters() {
    let (_g, ctx) = gpu();
    let step = StepUniform::new(ctx).unwrap();
    let adam = |f: &dyn Fn(&mut Optimizer)| {
        let mut o = Optimizer::adam(1e-3);
        f(&mut o);
        o
    };
    let set_adam = |field: &'static str, value: f32| {
        adam(&move |o| {
            if let Optimizer::Adam {
                lr,
                beta1,
                beta2,
                epsilon,
                weight_decay,
                ..
            } = o
            {
                *match field {
                    "lr" => lr,
                    "beta1" => beta1,
                    "beta2" => beta2,
                    "epsilon" => epsilon,
                    _ => weight_decay,
                } = value;
            }
        })
    };
    let rms = |rho: f32, epsilon: f32, momentum: f32| Optimizer::RmsProp {
        lr: 1e-3,
        rho,
        epsilon,
        momentum,
        centered: false,
    };
    let cases: Vec<(Optimizer, &str)> = vec![
        (set_adam("lr", -1e-3), "lr"),
        (set_adam("lr", f32::NAN), "lr"),
        (set_adam("lr", f32::INFINITY), "lr"),
        (set_adam("beta1", 1.0), "beta1"),
        (set_adam("beta1", -0.1), "beta1"),
        (set_adam("beta1", f32::NAN), "beta1"),
        (set_adam("beta2", 1.5), "beta2"),
        (set_adam("epsilon", -1e-8), "epsilon"),
        (set_adam("epsilon", f32::NAN), "epsilon"),
        (set_adam("weight_decay", -0.1), "weight_decay"),
        (Optimizer::sgd(-0.1, 0.0), "lr"),
        (Optimizer::sgd(0.1, -0.5), "momentum"),
        (Optimizer::sgd(0.1, 1.5), "momentum"),
        (Optimizer::sgd(0.1, f32::NAN), "momentum"),
        (
            Optimizer::Sgd {
                lr: 0.1,
                momentum: 0.0,
                nesterov: true,
                weight_decay: 0.0,
            },
            "nesterov",
        ),
        (
            Optimizer::Sgd {
                lr: 0.1,
                momentum: 0.9,
                nesterov: false,
                weight_decay: f32::NAN,
            },
            "weight_decay",
        ),
        (Optimizer::rmsprop(f32::NAN), "lr"),
        (rms(1.0, 1e-7, 0.0), "rho"),
        (rms(-0.1, 1e-7, 0.0), "rho"),
        (rms(0.9, -1e-7, 0.0), "epsilon"),
        (rms(0.9, 1e-7, -0.9), "momentum"),
    ];
    for (opt, field) in cases {
        expect_invalid(opt.validate(), field);
        let (p, g, s) = tensors(ctx, 3, opt.state_count());
        expect_invalid(optim::optimizer_step(ctx, &opt, &step, &p, &g, &s), field);
        expect_invalid(step.write(ctx, &opt, 1, 1e-3), field);
    }
    for (_, opt) in all_optimizers() {
        opt.validate().unwrap();
    }
}

#[test]
fn step_uniform_rejects_bad_step_values() {
    let (_g, ctx) = gpu();
    let step = StepUniform::new(ctx).unwrap();
    let opt = Optimizer::adam(1e-3);
    expect_invalid(step.write(ctx, &opt, 0, 1e-3), "1-based");
    expect_invalid(step.write(ctx, &opt, 1, -1e-3), "lr");
    expect_invalid(step.write(ctx, &opt, 1, f32::NAN), "lr");
    step.write(ctx, &opt, 1, 0.0).unwrap();
    let (p, g, s) = tensors(ctx, 3, 2);
    expect_invalid(
        optim::optimizer_step_wg(ctx, &opt, &step, &p, &g, &s, 48),
        "power of two",
    );
}

/// The step values are what the shader header says, with bias corrections from f64.
#[test]
fn step_values_hold_f64_bias_corrections() {
    let opt = Optimizer::Adam {
        lr: 0.1,
        beta1: 0.9,
        beta2: 0.999,
        epsilon: 1e-8,
        weight_decay: 0.0,
        epsilon_placement: EpsilonPlacement::PyTorch,
    };
    let v = optim::StepValues::new(&opt, 3, 0.1).unwrap();
    let bc1 = 1.0 - (0.9f32 as f64).powf(3.0);
    let bc2 = 1.0 - (0.999f32 as f64).powf(3.0);
    assert_eq!(v.t, 3);
    assert_eq!(v.bc1, bc1 as f32);
    assert_eq!(v.bc2, bc2 as f32);
    assert_eq!(v.bc2_sqrt, bc2.sqrt() as f32);
    assert_eq!(v.adam_step, (0.1f32 as f64 / bc1) as f32);
    let keras = Optimizer::adam(0.1);
    let k = optim::StepValues::new(&keras, 3, 0.1).unwrap();
    assert_eq!(k.adam_step, (0.1f32 as f64 * bc2.sqrt() / bc1) as f32);
    let s = optim::StepValues::new(&Optimizer::sgd(0.1, 0.9), 7, 0.05).unwrap();
    assert_eq!((s.lr, s.bc1, s.bc2, s.adam_step), (0.05, 1.0, 1.0, 0.05));
}

/// Adam over a multiple of 4 elements runs 4 per invocation (`adam_vec4`), other
/// lengths one per invocation: both forms against the twin, the vec4 one on a grid
/// that folds (4-invocation workgroups, more than 65,535 of them).
#[test]
fn adam_vec4_form_is_chosen_and_matches_its_twin() {
    let (_g, ctx) = gpu();
    let step = StepUniform::new(ctx).unwrap();
    for (n, entry) in [(1000, "adam_vec4"), (4, "adam_vec4"), (1001, "adam"), (6, "adam")] {
        let (p, g, s) = tensors(ctx, n, 2);
        let d = optim::optimizer_step(ctx, &Optimizer::adam(0.01), &step, &p, &g, &s).unwrap();
        assert_eq!(d.kernel.entry, entry, "n = {n}");
    }
    let n = 4 * (65_535 * 4 + 1_000);
    for (k, (what, opt)) in all_optimizers().iter().enumerate() {
        if what.starts_with("adam") {
            check_steps(ctx, what, opt, n, 4, 3, 500 + k as u64);
        }
    }
}

/// Times one Adam step over the seed CNN's Dense 5408 -> 64 weights (346,112
/// elements: the vec4 form) and over one element more (the scalar form), with a fill
/// of the weights as a yardstick. Interleaved rounds, median of 18 runs each.
/// `cargo test --release --test kernels optim::bench_adam -- --ignored --nocapture`
#[test]
#[ignore = "a timing harness: run by .ci/run with --ignored, and by hand with --nocapture"]
fn bench_adam() {
    let (_g, ctx) = gpu_exclusive();
    let opt = Optimizer::adam(1e-3);
    let step = StepUniform::new(ctx).unwrap();
    step.write(ctx, &opt, 1, 1e-3).unwrap();
    let mut keep = Vec::new();
    let mut items = Vec::new();
    for n in [5408 * 64, 5408 * 64 + 1] {
        let (p, g, s) = tensors(ctx, n, 2);
        let d = optim::optimizer_step(ctx, &opt, &step, &p, &g, &s).unwrap();
        items.push((format!("{} n={n}", d.kernel.entry), d));
        if n.is_multiple_of(4) {
            let fill = wgml::kernels::elementwise::fill(ctx, &p, 0.0).unwrap();
            items.push((format!("fill n={n}"), fill));
        }
        keep.push((p, g, s));
    }
    for (_, d) in &items {
        ctx.run(&[d]).unwrap();
    }
    let mut ms = vec![Vec::new(); items.len()];
    for _ in 0..6 {
        for (k, (_, d)) in items.iter().enumerate() {
            for _ in 0..3 {
                let t = Instant::now();
                ctx.run(&[d]).unwrap();
                ms[k].push(t.elapsed().as_secs_f64() * 1e3);
            }
        }
    }
    for ((name, d), mut v) in items.iter().zip(ms) {
        v.sort_by(f64::total_cmp);
        println!(
            "{name} {:?} groups: median {:.3} ms (min {:.3})",
            d.groups,
            v[v.len() / 2],
            v[0]
        );
    }
}

/// Gradient accumulation over 2 to 4 passes (first, middle ones, last) equals its
/// twins, each pass weighted by the per-step uniform's `grad_scale` when it runs:
/// the three dispatches are built once and replayed with new gradients and
/// weights. The accumulator starts as NaN, so a first pass that read it fails.
#[test]
fn gradient_accumulation_equals_its_twins() {
    let (_g, ctx) = gpu();
    let base = optim::StepValues::new(&Optimizer::sgd(0.1, 0.0), 3, 0.1).unwrap();
    // 1, primes, and more than 65,535 workgroups of 256 (a folded grid).
    for (n, passes) in [(1usize, 2usize), (7, 3), (1029, 4), (65_535 * 256 + 3, 2)] {
        let mut r = rng(n as u64 + 11);
        let grads: Vec<Vec<f32>> = (0..passes).map(|_| uniform(&mut r, n, -2.0, 2.0)).collect();
        // Unequal shares of the step's samples, summing to 1.
        let sizes: Vec<usize> = (0..passes).map(|i| 8 + 5 * i).collect();
        let total: usize = sizes.iter().sum();
        let shares: Vec<f32> = sizes.iter().map(|&s| (s as f64 / total as f64) as f32).collect();
        let acc = nan_tensor(ctx, &[n]);
        let grad = Tensor::zeros(ctx, &[n], DType::F32).unwrap();
        let step = StepUniform::new(ctx).unwrap();
        let [first, add, finish] = [
            optim::AccumulatePass::First,
            optim::AccumulatePass::Add,
            optim::AccumulatePass::Finish,
        ]
        .map(|p| optim::accumulate_gradient(ctx, p, &step, &acc, &grad).unwrap());
        let mut want_acc = Vec::new();
        let mut want = Vec::new();
        for (i, g) in grads.iter().enumerate() {
            grad.write(ctx, g).unwrap();
            step.write_values(ctx, &base.for_pass(i as u32 + 1, shares[i]).unwrap())
                .unwrap();
            let w = shares[i];
            let d = if i == 0 {
                want_acc = reference::optim::accumulate_first(g, w);
                &first
            } else if i + 1 < passes {
                reference::optim::accumulate_add(&mut want_acc, g, w);
                &add
            } else {
                want = reference::optim::accumulate_finish(&want_acc, g, w);
                &finish
            };
            ctx.run(&[d]).unwrap();
            if i + 1 < passes {
                // A fused multiply-add on the device rounds once where the twin rounds twice.
                let got = acc.to_f32(ctx).unwrap();
                assert_close(
                    &format!("accumulator n={n} after pass {i}"),
                    &got,
                    &want_acc,
                    1e-6,
                    1e-6,
                );
            }
        }
        let got = grad.to_f32(ctx).unwrap();
        assert_close(
            &format!("accumulated gradient n={n}, {passes} passes"),
            &got,
            &want,
            1e-6,
            1e-6,
        );
        // The sum is the shares' weighted mean of the passes' gradients.
        let j = n / 2;
        let mean: f64 = grads
            .iter()
            .zip(&shares)
            .map(|(g, &w)| g[j] as f64 * w as f64)
            .sum();
        assert!((got[j] as f64 - mean).abs() < 1e-5, "n={n}: {} vs {mean}", got[j]);
    }
}

#[test]
fn gradient_accumulation_refuses_bad_input() {
    let (_g, ctx) = gpu();
    let step = StepUniform::new(ctx).unwrap();
    let a = Tensor::zeros(ctx, &[4], DType::F32).unwrap();
    let b = Tensor::zeros(ctx, &[5], DType::F32).unwrap();
    let first = optim::AccumulatePass::First;
    expect_shape(optim::accumulate_gradient(ctx, first, &step, &a, &b), "acc");
    expect_invalid(
        optim::accumulate_gradient(ctx, first, &step, &a, &a),
        "same buffer",
    );
    let u = Tensor::from_u32(ctx, &[1, 2, 3, 4], &[4]).unwrap();
    assert!(optim::accumulate_gradient(ctx, first, &step, &u, &a).is_err());
    let base = optim::StepValues::new(&Optimizer::sgd(0.1, 0.0), 1, 0.1).unwrap();
    for (draw, w) in [(0u32, 0.5f32), (1, 0.0), (1, 1.5), (1, f32::NAN)] {
        assert!(base.for_pass(draw, w).is_err(), "draw {draw}, weight {w}");
    }
    assert_eq!(base.for_pass(7, 0.25).unwrap().draw, 7);
}

/// The moving average of the weights equals its twin over several steps of
/// changing weights, its start step taking the weights themselves (Keras' first
/// step); a momentum outside [0, 1) and a shared buffer are refused.
#[test]
fn the_moving_average_equals_its_twin() {
    let (_g, ctx) = gpu();
    for n in [1usize, 7, 1029, 65_535 * 256 + 3] {
        let mut r = rng(n as u64 + 5);
        let param = Tensor::zeros(ctx, &[n], DType::F32).unwrap();
        let average = nan_tensor(ctx, &[n]);
        let step = StepUniform::new(ctx).unwrap();
        let d = optim::ema_update(ctx, &step, &param, &average, 0.9, 3).unwrap();
        let mut want = vec![f32::NAN; n];
        for t in 3..7u32 {
            let x = uniform(&mut r, n, -2.0, 2.0);
            param.write(ctx, &x).unwrap();
            step.write(ctx, &Optimizer::sgd(0.1, 0.0), t, 0.1).unwrap();
            ctx.run(&[&d]).unwrap();
            reference::optim::ema_update(&mut want, &x, 0.9, t == 3);
        }
        let got = average.to_f32(ctx).unwrap();
        assert_close(&format!("moving average n={n}"), &got, &want, 1e-6, 1e-6);
    }
    let step = StepUniform::new(ctx).unwrap();
    let a = Tensor::zeros(ctx, &[4], DType::F32).unwrap();
    let b = Tensor::zeros(ctx, &[4], DType::F32).unwrap();
    for bad in [1.0f32, -0.1, f32::NAN] {
        expect_invalid(optim::ema_update(ctx, &step, &a, &b, bad, 1), "momentum");
    }
    expect_invalid(optim::ema_update(ctx, &step, &a, &a, 0.9, 1), "same buffer");
}
