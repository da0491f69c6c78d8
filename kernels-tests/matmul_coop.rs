//! The tensor-core matmul (`shaders/matmul_coop.wgsl`, `MatmulVariant::REDUCED`)
//! against its twin `reference::matmul::matmul_f16_inputs`: every layout, odd
//! shapes cut at every fragment, tile and K-step edge, batches with offsets and
//! broadcast, every epilogue, split-K and batch-reduce products. Runs where the
//! adapter offers cooperative matrices (NVIDIA, AMD and Apple GPUs; Mesa's
//! lavapipe from Mesa 25.1, which `.ci/run` fetches for this test); elsewhere
//! each test says it has nothing to check.

use wgml::data::Dataset;
use wgml::gpu::ContextOptions;
use wgml::gpu::{AdapterClass, MatmulPrecision};
use wgml::graph::reference::ReferenceExecutor;
use wgml::kernels::matmul::{self, Activation, MatmulDesc, MatmulVariant};
use wgml::kernels::matmul_coop;
use wgml::nn::model::Batch;
use wgml::nn::zoo;
use wgml::{Context, reference};

use crate::common::*;
use crate::matmul::{
    Case, LAYOUTS, assert_matches, atol_for, describe, layout, random_case, terms, upload_case,
};

/// The tensor-core variants of this adapter, or none (with a note).
fn coop_variants(ctx: &Context) -> Vec<MatmulVariant> {
    let list = matmul::available_reduced_variants(ctx);
    if list.is_empty() {
        eprintln!(
            "no cooperative matrices on '{}' ({}): nothing to check",
            ctx.info.name, ctx.info.driver_info
        );
    }
    list
}

/// `x` rounded to the nearest f16, so the kernel's own conversion is exact.
fn to_f16(x: &[f32]) -> Vec<f32> {
    x.iter().map(|&v| half::f16::from_f32(v).to_f32()).collect()
}

/// Runs every case on the GPU and compares it with the twin; returns each
/// case's inputs and GPU output. With `exact` inputs (already f16) the only
/// difference left is the order of f32 sums, so the tolerance is the
/// full-precision kernels'; otherwise the kernel's f32 → f16 conversion may
/// round the other way than the twin's (WGSL leaves it to the device), one f16
/// step (2^-11 relative) per element at most.
#[track_caller]
fn check_all(
    ctx: &Context,
    cases: Vec<(MatmulDesc, bool, u64)>,
    exact: bool,
) -> Vec<(MatmulDesc, Case, Vec<f32>)> {
    let mut ran = Vec::new();
    for (desc, with_bias, seed) in cases {
        let mut case = random_case(&desc, with_bias, seed);
        if exact {
            case = Case {
                a: to_f16(&case.a),
                b: to_f16(&case.b),
                ..case
            };
        }
        let (a, b, bias, c) = upload_case(ctx, &case);
        let d = matmul::matmul(ctx, &desc, &a, &b, bias.as_ref(), &c).unwrap();
        ctx.run_all(&d).unwrap();
        let got = c.to_f32(ctx).unwrap();
        let mut want = case.c0.clone();
        reference::matmul::matmul_f16_inputs(&desc, &case.a, &case.b, case.bias.as_deref(), &mut want)
            .unwrap();
        // Inputs are in [-1, 1]: each product moves by at most 2·2^-11 when
        // both factors round the other way.
        let terms = terms(&desc);
        let atol = if exact {
            atol_for(terms)
        } else {
            atol_for(terms) + terms as f32 * 2.0 * 2f32.powi(-11)
        };
        assert_matches(&describe(&desc, with_bias), &got, &want, atol, 1e-5);
        ran.push((desc, case, got));
    }
    ran
}

#[test]
fn coop_every_layout_on_odd_shapes_equals_the_f16_twin() {
    let (_g, ctx) = gpu();
    // Edges of an 8- and 16-wide fragment, a 32-long K step, the 64 and 128
    // tiles; vectors; K shorter than one fragment.
    let shapes = [
        (1, 1, 1),
        (7, 13, 17),
        (1, 37, 5),
        (29, 1, 11),
        (17, 9, 33),
        (67, 5, 65),
        (131, 129, 47),
        (65, 130, 96),
        // Multiples of 4 everywhere: the vec4 staging, with partial tiles and
        // a partial last K step.
        (68, 36, 100),
        (132, 260, 48),
    ];
    let mut cases = Vec::new();
    let mut seed = 5000;
    for variant in coop_variants(ctx) {
        for lay in LAYOUTS {
            for &(m, n, k) in &shapes {
                seed += 1;
                cases.push((
                    layout(MatmulDesc::new(m, n, k).variant(variant), lay),
                    false,
                    seed,
                ));
            }
        }
    }
    check_all(ctx, cases, true);
}

#[test]
fn coop_epilogues_batches_and_split_k_equal_the_f16_twin() {
    let (_g, ctx) = gpu();
    let mut cases = Vec::new();
    let mut seed = 6000;
    for variant in coop_variants(ctx) {
        seed += 10;
        let base = MatmulDesc::new(37, 70, 45).variant(variant);
        for act in Activation::ALL {
            cases.push((base.clone().activation(act), true, seed + act.code() as u64));
        }
        cases.push((base.clone().accumulate(), false, seed + 5));
        // Batches at offsets with a gap between C batches, and a broadcast B.
        let (m, n, k) = (19, 23, 21);
        cases.push((
            MatmulDesc::new(m, n, k)
                .variant(variant)
                .batched(3)
                .offsets(3, 5, 7)
                .batch_strides(m * k + 2, 0, m * n + 4)
                .trans_b(),
            true,
            seed + 6,
        ));
        // Split-K with every epilogue path through the reduction, and a
        // batch-reduce product (a convolution's weight gradient).
        cases.push((
            MatmulDesc::new(32, 64, 700)
                .variant(variant)
                .split_k(5)
                .activation(Activation::Relu),
            true,
            seed + 7,
        ));
        cases.push((
            MatmulDesc::new(9, 33, 300)
                .variant(variant)
                .trans_a()
                .split_k(3)
                .accumulate(),
            false,
            seed + 8,
        ));
        cases.push((
            MatmulDesc::new(10, 27, 50)
                .variant(variant)
                .batched(4)
                .reduce_batch()
                .trans_b(),
            false,
            seed + 9,
        ));
    }
    check_all(ctx, cases, true);
}

#[test]
fn coop_rounds_inputs_to_f16_and_no_further() {
    let (_g, ctx) = gpu();
    let mut cases = Vec::new();
    for variant in coop_variants(ctx) {
        for (i, lay) in LAYOUTS.into_iter().enumerate() {
            cases.push((
                layout(MatmulDesc::new(70, 66, 130).variant(variant), lay),
                true,
                7000 + i as u64,
            ));
        }
    }
    // Inputs that are not f16 values: the result is the twin's up to one f16
    // rounding step per element, and far from what full precision would give
    // only by that much (checked against the f32 twin too).
    for (desc, case, got) in check_all(ctx, cases, false) {
        let mut exact = case.c0.clone();
        reference::matmul::matmul(&desc, &case.a, &case.b, case.bias.as_deref(), &mut exact).unwrap();
        let worst = got
            .iter()
            .zip(&exact)
            .map(|(g, w)| (g - w).abs())
            .fold(0.0f32, f32::max);
        // Σ of K products of values in [-1, 1], each off by at most 2^-10.
        let bound = desc.k as f32 * 2f32.powi(-10);
        assert!(
            worst <= bound && worst > 0.0,
            "{}: differs from full precision by {worst} (bound {bound}; 0 would mean no rounding)",
            desc.layout_name()
        );
    }
}

/// Operands beyond f16's range: A near 1e6 (past f16's 65504) with B near 1e-7
/// (below its smallest normal, 6.1e-5), a tiny A (1e-9, below its smallest
/// subnormal, as a mean loss's gradients can be) with a plain B, and batches
/// whose unread elements (the offset prefix, the gap between A's batches) hold
/// ±1e30. Each operand's power-of-two scale keeps 11 bits of every element, so
/// the product is full precision's up to f16 rounding and equals the twin;
/// rounding without the scale would give infinities or zeros, and a scale
/// taken over unread elements would flush the real ones to zero.
#[test]
fn coop_scales_each_operand_into_f16_range() {
    let (_g, ctx) = gpu();
    for variant in coop_variants(ctx) {
        let (m, n, k) = (37, 45, 70);
        let plain = MatmulDesc::new(m, n, k).variant(variant);
        let gapped =
            plain
                .clone()
                .trans_b()
                .batched(2)
                .offsets(4, 0, 0)
                .batch_strides(m * k + 3, k * n, m * n);
        let runs = [
            (plain.clone(), 1e6f32, 1e-7f32),
            (plain.clone().trans_a(), 1e-9, 1.0),
            (gapped, 3e-3, 2e5),
        ];
        for (i, (desc, a_mag, b_mag)) in runs.into_iter().enumerate() {
            let mut case = random_case(&desc, false, 8000 + i as u64);
            case.a.iter_mut().for_each(|v| *v *= a_mag);
            case.b.iter_mut().for_each(|v| *v *= b_mag);
            if desc.batch > 1 {
                case.a[..4].fill(1e30);
                case.a[4 + m * k..4 + m * k + 3].fill(-1e30);
            }
            let what = format!("{} (|A| ≤ {a_mag:e}, |B| ≤ {b_mag:e})", describe(&desc, false));
            let (a, b, _, c) = upload_case(ctx, &case);
            ctx.run_all(&matmul::matmul(ctx, &desc, &a, &b, None, &c).unwrap())
                .unwrap();
            let got = c.to_f32(ctx).unwrap();
            let mut twin = case.c0.clone();
            reference::matmul::matmul_f16_inputs(&desc, &case.a, &case.b, None, &mut twin).unwrap();
            // As check_all's tolerance for inputs that are not f16 values, in
            // units of the operands' magnitudes.
            let unit = a_mag * b_mag;
            let terms = terms(&desc);
            let atol = (atol_for(terms) + terms as f32 * 2.0 * 2f32.powi(-11)) * unit;
            assert_matches(&what, &got, &twin, atol, 1e-5);
            let worst_vs = |other: &[f32]| {
                got.iter()
                    .zip(other)
                    .filter(|(g, _)| !g.is_nan())
                    .map(|(g, w)| (g - w).abs())
                    .fold(0.0f32, |x, y| if y.is_nan() { f32::INFINITY } else { x.max(y) })
            };
            let mut exact = case.c0.clone();
            reference::matmul::matmul(&desc, &case.a, &case.b, None, &mut exact).unwrap();
            let bound = terms as f32 * 2f32.powi(-10) * unit;
            let worst = worst_vs(&exact);
            assert!(
                worst <= bound && worst > 0.0,
                "{what}: differs from full precision by {worst} (bound {bound})"
            );
            // Plain f16 rounding of the same operands is far off.
            let mut unscaled = case.c0.clone();
            reference::matmul::matmul(&desc, &to_f16(&case.a), &to_f16(&case.b), None, &mut unscaled)
                .unwrap();
            let off = worst_vs(&unscaled);
            let largest = exact.iter().fold(0.0f32, |x, y| x.max(y.abs()));
            assert!(
                off > 0.5 * largest,
                "{what}: unscaled f16 rounding would be within {off} of the largest output \
                 {largest} (the test cannot tell scaled from unscaled)"
            );
        }
    }
}

/// A NaN in A: its row of C is NaN, as in f32, and the other rows are still
/// right, including one holding 1e6 (past f16's range): the scale comes from
/// the finite elements only, so the NaN does not leave that row unscaled.
#[test]
fn coop_nan_in_an_operand_stays_in_its_row() {
    let (_g, ctx) = gpu();
    for variant in coop_variants(ctx) {
        let desc = MatmulDesc::new(20, 24, 40).variant(variant);
        let mut case = random_case(&desc, false, 8100);
        case.a = to_f16(&case.a);
        case.b = to_f16(&case.b);
        case.a[3 * 40 + 7] = f32::NAN;
        case.a[5 * 40 + 2] = 1e6;
        let (a, b, _, c) = upload_case(ctx, &case);
        ctx.run_all(&matmul::matmul(ctx, &desc, &a, &b, None, &c).unwrap())
            .unwrap();
        let got = c.to_f32(ctx).unwrap();
        for (i, row) in got.chunks(24).enumerate() {
            assert_eq!(row.iter().all(|v| v.is_nan()), i == 3, "row {i}: {row:?}");
            assert!(i == 3 || row.iter().all(|v| v.is_finite()), "row {i}: {row:?}");
        }
        let mut twin = case.c0.clone();
        reference::matmul::matmul_f16_inputs(&desc, &case.a, &case.b, None, &mut twin).unwrap();
        // NaN rows in the twin are skipped by assert_matches after checking the
        // GPU's are NaN too. With A's scale set by 1e6 (2^-5), its smallest
        // values are f16 subnormals once scaled: each product may differ by one
        // such step (2^-24 scaled back: 2^-19) where a device rounds them
        // another way.
        assert_matches(
            &describe(&desc, false),
            &got,
            &twin,
            atol_for(40) + 40.0 * 2f32.powi(-19),
            1e-5,
        );
    }
}

/// The check that gates automatic choice: it passes here (the kernel equals
/// its twin on this adapter, as the tests above prove), its verdict is kept,
/// and on a context whose check failed, medium precision chooses f32 kernels
/// while a forced tensor-core variant still runs.
#[test]
fn tensor_cores_are_chosen_only_after_passing_their_check() {
    let (_g, ctx) = gpu();
    if coop_variants(ctx).is_empty() {
        return;
    }
    assert_eq!(matmul_coop::check(ctx).unwrap(), Ok(()));
    let large = MatmulDesc::new(512, 512, 256);
    let passed = Context::new(&ContextOptions::default()).unwrap();
    let failed = Context::new(&ContextOptions::default()).unwrap();
    assert!(failed.record_coop_check(Err("injected failure".into())).is_err());
    // Kept once: a later verdict does not replace it.
    assert!(failed.record_coop_check(Ok(())).is_err());
    for c in [&passed, &failed] {
        c.set_adapter_class(AdapterClass::Gpu);
        c.set_matmul_precision(MatmulPrecision::Medium);
    }
    assert!(matmul::auto_variant(&passed, &large).is_coop());
    assert_eq!(passed.coop_check(), Some(&Ok(())));
    assert!(matmul_coop::tensor_cores_allowed(&passed));
    assert!(!matmul_coop::tensor_cores_allowed(&failed));
    assert!(!matmul::auto_variant(&failed, &large).is_coop());
    for v in MatmulVariant::REDUCED {
        assert!(matmul::variant_allowed(&passed, v), "{}", v.name());
        assert!(!matmul::variant_allowed(&failed, v), "{}", v.name());
    }
    // Forced, it still runs on the context whose check failed.
    let desc = MatmulDesc::new(20, 24, 40).variant(MatmulVariant::Coop64);
    let case = random_case(&desc, false, 8200);
    let (a, b, _, c) = upload_case(&failed, &case);
    failed
        .run_all(&matmul::matmul(&failed, &desc, &a, &b, None, &c).unwrap())
        .unwrap();
}

#[test]
fn coop_variants_are_refused_without_cooperative_matrices() {
    let (_g, ctx) = gpu();
    if !matmul::available_reduced_variants(ctx).is_empty() {
        return;
    }
    let case = random_case(&MatmulDesc::new(4, 4, 4), false, 1);
    let (a, b, _, c) = upload_case(ctx, &case);
    let err = matmul::matmul(
        ctx,
        &MatmulDesc::new(4, 4, 4).variant(MatmulVariant::Coop64),
        &a,
        &b,
        None,
        &c,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("tensor cores"), "{err}");
}

/// Medium precision on an adapter with tensor cores, planned as on a GPU: the
/// seed CNN's products run on them (and nowhere without medium precision), and
/// 30 Adam steps on embedded MNIST follow the f32 reference path's losses
/// (within 1e-4 at the first step, 3% after) while the loss falls.
#[test]
fn cnn_with_medium_precision_trains_on_tensor_cores_as_in_f32() {
    let (_g, ctx) = gpu();
    if coop_variants(ctx).is_empty() {
        return;
    }
    let _restore = PlanAs(ctx);
    ctx.set_adapter_class(AdapterClass::Gpu);
    let recipe = zoo::cnn();
    let entries = |model: &mut wgml::nn::Model| -> Vec<&'static str> {
        model
            .train_dispatches(ctx, 32)
            .unwrap()
            .iter()
            .map(|d| d.kernel.entry)
            .collect()
    };
    let mut f32_model = recipe
        .model
        .compile(ctx, recipe.loss, recipe.optimizer.clone(), 7)
        .unwrap();
    assert!(!entries(&mut f32_model).contains(&"matmul_coop"));
    ctx.set_matmul_precision(MatmulPrecision::Medium);
    let mut model = recipe
        .model
        .compile(ctx, recipe.loss, recipe.optimizer.clone(), 7)
        .unwrap();
    let kernels = entries(&mut model);
    assert!(kernels.contains(&"matmul_coop"), "{kernels:?}");
    let data = Dataset::mnist_10k().unwrap();
    let mut cpu = ReferenceExecutor::from_model(&model, ctx).unwrap();
    let (b, lr) = (32, recipe.optimizer.lr());
    let (mut x, mut l, mut v) = (Vec::new(), Vec::new(), Vec::new());
    let mut losses = Vec::new();
    let mut worst = 0.0f64;
    for step in 0..30 {
        let idx: Vec<usize> = (step * b..(step + 1) * b).collect();
        data.train.gather(&idx, &mut x, &mut l, &mut v);
        let batch = Batch {
            x: &x,
            labels: &l,
            values: &v,
            len: b,
        };
        let (gpu_loss, cpu_loss) = step_losses(ctx, &mut model, &mut cpu, &batch, lr);
        let rel = (gpu_loss - cpu_loss).abs() / cpu_loss.abs();
        // The first step starts from the same weights: only the forward's
        // rounding shows (1.1e-6 on Mesa 26.2 lavapipe). Later steps follow
        // weights that drifted apart by each step's rounding (up to 1.1%).
        let bound = if step == 0 { 1e-4 } else { 3e-2 };
        assert!(
            rel < bound,
            "step {step}: medium-precision loss {gpu_loss} vs f32 reference {cpu_loss} (rel {rel:e})"
        );
        worst = worst.max(rel);
        if step == 0 {
            eprintln!("medium-precision CNN: step 0 loss {gpu_loss} vs f32 {cpu_loss} (rel {rel:.2e})");
        }
        losses.push(gpu_loss);
    }
    eprintln!("medium-precision CNN: 30 steps within {worst:.2e} of f32, losses {losses:?}");
    let (first, last) = (losses[..5].iter().sum::<f64>(), losses[25..].iter().sum::<f64>());
    assert!(last < 0.7 * first, "the loss did not fall: {losses:?}");
}
