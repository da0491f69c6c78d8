//! matmul kernels against `wgml::reference::matmul`, every variant forced on this
//! adapter (the register kernel lavapipe uses by default and the workgroup-memory
//! tiled kernels real GPUs use), all layouts, odd shapes, batches with offsets,
//! strides and broadcast, epilogues, accumulation, folded grids and bad inputs.

use rand::Rng;
use wgml::kernels::matmul::{self, Activation, MatmulDesc, MatmulVariant};
use wgml::{Context, DType, Error, Tensor, reference};

use crate::common::*;

/// Layouts as (trans_a, trans_b): NN, NT, TN, TT.
pub(crate) const LAYOUTS: [(bool, bool); 4] = [(false, false), (false, true), (true, false), (true, true)];

/// Elements each operand of `desc` needs (offsets, strides and the last batch).
fn extents(desc: &MatmulDesc) -> (usize, usize, usize) {
    let last = desc.batch - 1;
    let c_last = if desc.reduce_batch { 0 } else { last };
    (
        desc.a_offset + last * desc.a_batch_stride + desc.m * desc.k,
        desc.b_offset + last * desc.b_batch_stride + desc.k * desc.n,
        desc.c_offset + c_last * desc.c_batch_stride + desc.m * desc.n,
    )
}

/// Inputs of one case: A, B, optional bias and the initial C (NaN unless accumulating).
pub(crate) struct Case {
    pub(crate) a: Vec<f32>,
    pub(crate) b: Vec<f32>,
    pub(crate) bias: Option<Vec<f32>>,
    pub(crate) c0: Vec<f32>,
}

pub(crate) fn random_case(desc: &MatmulDesc, with_bias: bool, seed: u64) -> Case {
    let mut r = rng(seed);
    let (na, nb, nc) = extents(desc);
    let c0 = if desc.accumulate {
        uniform(&mut r, nc, -1.0, 1.0)
    } else {
        vec![f32::NAN; nc]
    };
    Case {
        a: uniform(&mut r, na, -1.0, 1.0),
        b: uniform(&mut r, nb, -1.0, 1.0),
        bias: with_bias.then(|| uniform(&mut r, desc.n, -1.0, 1.0)),
        c0,
    }
}

/// A, B, the bias (if any) and C's initial values of `case` on the GPU.
pub(crate) fn upload_case(ctx: &Context, case: &Case) -> (Tensor, Tensor, Option<Tensor>, Tensor) {
    let t = |v: &[f32]| Tensor::from_f32(ctx, v, &[v.len()]).unwrap();
    (t(&case.a), t(&case.b), case.bias.as_deref().map(t), t(&case.c0))
}

/// Runs `desc` on the GPU and returns C.
fn run_gpu(ctx: &Context, desc: &MatmulDesc, case: &Case) -> Vec<f32> {
    let (a, b, bias, c) = upload_case(ctx, case);
    let d = matmul::matmul(ctx, desc, &a, &b, bias.as_ref(), &c).unwrap();
    ctx.run_all(&d).unwrap();
    c.to_f32(ctx).unwrap()
}

fn run_reference(desc: &MatmulDesc, case: &Case) -> Vec<f32> {
    let mut want = case.c0.clone();
    reference::matmul::matmul(desc, &case.a, &case.b, case.bias.as_deref(), &mut want).unwrap();
    want
}

/// Compares element by element; where the reference left C untouched (NaN: gaps
/// between batches, the offset prefix) the GPU must have left it untouched too.
#[track_caller]
pub(crate) fn assert_matches(what: &str, got: &[f32], want: &[f32], atol: f32, rtol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        if w.is_nan() {
            assert!(
                g.is_nan(),
                "{what}: element {i} outside the output was written ({g})"
            );
        }
    }
    let (g, w): (Vec<f32>, Vec<f32>) = got
        .iter()
        .zip(want)
        .filter(|(_, w)| !w.is_nan())
        .map(|(&g, &w)| (g, w))
        .unzip();
    assert_close(what, &g, &w, atol, rtol);
}

/// Absolute tolerance for f32 sums of `k` products of values in [-1, 1].
pub(crate) fn atol_for(k: usize) -> f32 {
    2e-6 * (k as f32).sqrt()
}

/// Checks `desc` (GPU vs reference) with random inputs.
#[track_caller]
fn check(ctx: &Context, desc: &MatmulDesc, with_bias: bool, seed: u64) {
    let mut checks = Checks::default();
    checks.add(desc.clone(), with_bias, seed);
    checks.run(ctx);
}

/// A sweep of GPU-vs-reference checks. Each combination of variant, layout and
/// epilogue is its own pipeline (seconds of LLVM on lavapipe with a cold shader
/// cache), so `run` builds every dispatch first and compiles their pipelines
/// together, one thread per core, before running and checking them in order.
#[derive(Default)]
struct Checks {
    cases: Vec<(MatmulDesc, bool, u64)>,
}

impl Checks {
    fn add(&mut self, desc: MatmulDesc, with_bias: bool, seed: u64) {
        self.cases.push((desc, with_bias, seed));
    }

    #[track_caller]
    fn run(self, ctx: &Context) {
        let prepared = ctx
            .deferring_pipelines(|| {
                self.cases
                    .into_iter()
                    .map(|(desc, with_bias, seed)| {
                        let case = random_case(&desc, with_bias, seed);
                        let (a, b, bias, c) = upload_case(ctx, &case);
                        let dispatch = matmul::matmul(ctx, &desc, &a, &b, bias.as_ref(), &c)?;
                        Ok((desc, with_bias, case, c, dispatch))
                    })
                    .collect::<wgml::Result<Vec<_>>>()
            })
            .unwrap();
        for (desc, with_bias, case, c, dispatch) in prepared {
            ctx.run_all(&dispatch).unwrap();
            let got = c.to_f32(ctx).unwrap();
            let want = run_reference(&desc, &case);
            assert_matches(
                &describe(&desc, with_bias),
                &got,
                &want,
                atol_for(terms(&desc)),
                1e-5,
            );
        }
    }
}

/// One case in an assertion message: layout, variant, sizes and epilogue.
pub(crate) fn describe(desc: &MatmulDesc, with_bias: bool) -> String {
    format!(
        "{} {} m={} n={} k={} batch={} bias={with_bias} act={:?} acc={} split={:?} reduce={}",
        desc.layout_name(),
        desc.variant.map_or("auto", |v| v.name()),
        desc.m,
        desc.n,
        desc.k,
        desc.batch,
        desc.activation,
        desc.accumulate,
        desc.split_k,
        desc.reduce_batch
    )
}

/// Products summed into each output of `desc` (a batch-reduce sums the batch's too).
pub(crate) fn terms(desc: &MatmulDesc) -> usize {
    if desc.reduce_batch {
        desc.k * desc.batch
    } else {
        desc.k
    }
}

/// The variants with distinct code: every available one less `register_mid` and
/// `register_wide`, which are the small and large kernels with another row count.
/// Sweeps of the epilogue, batching and exactness use these (each variant, layout and
/// epilogue is its own pipeline, ~3 s of LLVM on lavapipe with a cold shader cache);
/// the shape sweep, the fold test and the Adam epilogue test take all of them.
fn epilogue_variants(ctx: &Context) -> Vec<MatmulVariant> {
    matmul::available_variants(ctx)
        .into_iter()
        .filter(|v| !matches!(v, MatmulVariant::RegisterMid | MatmulVariant::RegisterWide))
        .collect()
}

pub(crate) fn layout(desc: MatmulDesc, (ta, tb): (bool, bool)) -> MatmulDesc {
    let d = if ta { desc.trans_a() } else { desc };
    if tb { d.trans_b() } else { d }
}

#[test]
fn reference_matches_hand_computed_values() {
    // [1 2; 3 4] · [5 6; 7 8] = [19 22; 43 50]; with A stored transposed and B
    // stored transposed the same product comes out.
    let a = [1.0, 2.0, 3.0, 4.0];
    let b = [5.0, 6.0, 7.0, 8.0];
    let at = [1.0, 3.0, 2.0, 4.0];
    let bt = [5.0, 7.0, 6.0, 8.0];
    let mut c = [0.0; 4];
    let d = MatmulDesc::new(2, 2, 2);
    reference::matmul::matmul(&d, &a, &b, None, &mut c).unwrap();
    assert_eq!(c, [19.0, 22.0, 43.0, 50.0]);
    reference::matmul::matmul(&d.clone().trans_a().trans_b(), &at, &bt, None, &mut c).unwrap();
    assert_eq!(c, [19.0, 22.0, 43.0, 50.0]);
    // Bias then ReLU: [19-20, 22-20, ...] clipped.
    let relu = d.clone().activation(Activation::Relu);
    reference::matmul::matmul(&relu, &a, &b, Some(&[-20.0, -30.0]), &mut c).unwrap();
    assert_eq!(c, [0.0, 0.0, 23.0, 20.0]);
    // Accumulate adds onto C.
    reference::matmul::matmul(&d.accumulate(), &a, &b, None, &mut c).unwrap();
    assert_eq!(c, [19.0, 22.0, 66.0, 70.0]);
    assert_eq!(reference::matmul::activation(Activation::Sigmoid, 0.0), 0.5);
    assert_eq!(reference::matmul::activation(Activation::Tanh, 0.0), 0.0);
}

#[test]
fn every_variant_and_layout_on_odd_shapes() {
    let (_g, ctx) = gpu();
    let mut checks = Checks::default();
    // 1×1×1, primes, vectors (m = 1, n = 1), and sizes just past the register
    // block (4, 64 columns), the K tile (8/16) and the 64/128 block tiles.
    let shapes = [
        (1, 1, 1),
        (7, 13, 17),
        (1, 37, 5),
        (29, 1, 11),
        (1, 1, 300),
        (5, 66, 3),
        (67, 5, 33),
        (131, 129, 17),
        (65, 130, 65),
    ];
    let mut seed = 100;
    for variant in matmul::available_variants(ctx) {
        for lay in LAYOUTS {
            for &(m, n, k) in &shapes {
                seed += 1;
                checks.add(
                    layout(MatmulDesc::new(m, n, k).variant(variant), lay),
                    false,
                    seed,
                );
            }
        }
    }
    checks.run(ctx);
}

/// The tiled kernels' vec4 loads (taken when every contiguous dimension, offset
/// and batch stride is a multiple of 4): every layout, tiles cut at every edge,
/// batches with aligned offsets and strides, split-K ranges, and vectors and
/// sizes of exactly one vec4.
#[test]
fn tiled_vec4_loads_on_aligned_shapes() {
    let (_g, ctx) = gpu();
    let mut checks = Checks::default();
    let mut seed = 1400;
    for variant in [
        MatmulVariant::Tiled64,
        MatmulVariant::Tiled128,
        MatmulVariant::Tiled128x64,
    ] {
        for lay in LAYOUTS {
            for (m, n, k) in [
                (4, 4, 4),
                (68, 132, 36),
                (132, 4, 20),
                (4, 260, 8),
                (128, 128, 64),
            ] {
                seed += 1;
                checks.add(
                    layout(MatmulDesc::new(m, n, k).variant(variant), lay),
                    false,
                    seed,
                );
            }
            seed += 1;
            let batched = MatmulDesc::new(36, 44, 28)
                .batched(3)
                .offsets(8, 4, 3)
                .batch_strides(36 * 28 + 4, 0, 36 * 44 + 1)
                .variant(variant);
            checks.add(layout(batched, lay), true, seed);
            seed += 1;
            let split = MatmulDesc::new(20, 36, 1000).variant(variant).split_k(16);
            checks.add(layout(split, lay), false, seed);
        }
    }
    checks.run(ctx);
}

#[test]
fn automatic_variant_choice_is_correct() {
    let (_g, ctx) = gpu();
    for (i, lay) in LAYOUTS.into_iter().enumerate() {
        check(
            ctx,
            &layout(MatmulDesc::new(33, 47, 70), lay),
            false,
            200 + i as u64,
        );
    }
}

#[test]
fn batched_with_offsets_strides_and_broadcast() {
    let (_g, ctx) = gpu();
    let mut checks = Checks::default();
    let (m, n, k) = (9, 70, 19);
    let mut seed = 300;
    for variant in epilogue_variants(ctx) {
        for lay in LAYOUTS {
            // Dense batches.
            seed += 1;
            checks.add(
                layout(MatmulDesc::new(m, n, k).batched(3).variant(variant), lay),
                false,
                seed,
            );
            // Offsets and padded strides (gaps between batches stay NaN in C).
            seed += 1;
            let d = MatmulDesc::new(m, n, k)
                .batched(3)
                .offsets(5, 3, 7)
                .batch_strides(m * k + 11, k * n + 2, m * n + 13)
                .variant(variant);
            checks.add(layout(d, lay), false, seed);
            // One B shared by every batch (a Dense layer over a sequence) and one A.
            seed += 1;
            let d = MatmulDesc::new(m, n, k)
                .batched(4)
                .batch_strides(m * k, 0, m * n)
                .variant(variant);
            checks.add(layout(d, lay), true, seed);
            seed += 1;
            let d = MatmulDesc::new(m, n, k)
                .batched(2)
                .offsets(1, 0, 0)
                .batch_strides(0, k * n, m * n)
                .variant(variant);
            checks.add(layout(d, lay), false, seed);
        }
    }
    checks.run(ctx);
}

/// Every epilogue (activation × bias) on every variant. `register_mid` and
/// `register_wide` are the small and large kernels with another row count (the
/// epilogue code is the same), so they take three combinations rather than all
/// sixteen: each combination is its own pipeline, seconds of LLVM on lavapipe.
#[test]
fn bias_and_every_activation() {
    let (_g, ctx) = gpu();
    let mut checks = Checks::default();
    let mut seed = 400;
    let mut all = Vec::new();
    for act in Activation::ALL {
        for with_bias in [false, true] {
            for lay in [(false, false), (false, true)] {
                all.push((act, with_bias, lay));
            }
        }
    }
    let some = [
        (Activation::Relu, true, (false, false)),
        (Activation::Tanh, false, (false, true)),
        (Activation::Sigmoid, true, (false, true)),
    ];
    for variant in matmul::available_variants(ctx) {
        let combos = match variant {
            MatmulVariant::RegisterMid | MatmulVariant::RegisterWide => &some[..],
            _ => &all[..],
        };
        for &(act, with_bias, lay) in combos {
            seed += 1;
            let d = layout(MatmulDesc::new(23, 71, 31).activation(act).variant(variant), lay);
            checks.add(d, with_bias, seed);
        }
    }
    checks.run(ctx);
}

#[test]
fn activations_saturate_without_nan() {
    // Sums far outside tanh's and sigmoid's linear range, and tiny ones.
    let (_g, ctx) = gpu();
    for variant in epilogue_variants(ctx) {
        for act in [Activation::Sigmoid, Activation::Tanh] {
            let d = MatmulDesc::new(1, 6, 1).activation(act).variant(variant);
            let case = Case {
                a: vec![1.0],
                b: vec![-200.0, -20.0, -1e-3, 1e-6, 20.0, 200.0],
                bias: None,
                c0: vec![f32::NAN; 6],
            };
            let got = run_gpu(ctx, &d, &case);
            let want = run_reference(&d, &case);
            assert_close(&format!("{act:?} {}", variant.name()), &got, &want, 1e-7, 1e-5);
        }
    }
}

/// Batch-reduce products (one C summed over the batch: a convolution's weight
/// gradient over images): the register variants sum in registers (every layout
/// on the small kernel, the NT layout the convolution uses on the others), the
/// tiled ones through the split-K reduction; offsets, padded and broadcast
/// strides, a bias with an activation, and accumulate. (Each combination is its
/// own pipeline: seconds of LLVM in CI.)
#[test]
fn reduce_batch_sums_the_batch_into_one_c() {
    let (_g, ctx) = gpu();
    let mut checks = Checks::default();
    let (m, n, k) = (37, 70, 19);
    let mut seed = 900;
    for variant in matmul::available_variants(ctx) {
        let layouts: &[(bool, bool)] = if variant == MatmulVariant::RegisterSmall {
            &LAYOUTS
        } else {
            &[(false, true)]
        };
        for &lay in layouts {
            seed += 1;
            let d = MatmulDesc::new(m, n, k)
                .batched(5)
                .offsets(3, 5, 7)
                .batch_strides(m * k + 2, k * n + 1, 0)
                .reduce_batch()
                .variant(variant);
            checks.add(layout(d, lay), false, seed);
        }
    }
    for variant in [MatmulVariant::RegisterSmall, MatmulVariant::Tiled64] {
        if !matmul::variant_available(ctx, variant) {
            continue;
        }
        // One A for every entry (a_batch_stride 0), a bias and ReLU after the sum.
        let d = MatmulDesc::new(m, n, k)
            .batched(4)
            .batch_strides(0, k * n, 0)
            .activation(Activation::Relu)
            .reduce_batch()
            .variant(variant);
        checks.add(d, true, 990);
        // Added onto C.
        let d = MatmulDesc::new(m, n, k)
            .batched(3)
            .accumulate()
            .reduce_batch()
            .variant(variant)
            .trans_b();
        checks.add(d, false, 991);
        // A batch of one is a plain product.
        checks.add(
            MatmulDesc::new(m, n, k).reduce_batch().variant(variant).trans_b(),
            false,
            992,
        );
    }
    checks.run(ctx);
}

/// Split-K products (K cut into ranges whose partial products are summed in a
/// fixed order by a second dispatch) equal the reference: every layout on the
/// small register kernel and both tiled kernels, the NT layout on the others;
/// factors that divide K unevenly, more ranges asked than K has 16-element steps
/// (rounded down), batches with offsets and padded strides, a bias with tanh,
/// accumulate, and a batch-reduce product split too.
#[test]
fn split_k_matches_reference_in_every_variant_and_layout() {
    let (_g, ctx) = gpu();
    let mut checks = Checks::default();
    let mut seed = 1200;
    for variant in matmul::available_variants(ctx) {
        let all_layouts = matches!(
            variant,
            MatmulVariant::RegisterSmall
                | MatmulVariant::Tiled64
                | MatmulVariant::Tiled128
                | MatmulVariant::Tiled128x64
        );
        let layouts: &[(bool, bool)] = if all_layouts { &LAYOUTS } else { &[(false, true)] };
        for &lay in layouts {
            for (m, n, k, splits) in [(7, 13, 300, 3), (33, 65, 1000, 16), (5, 9, 40, 8), (1, 1, 257, 2)] {
                seed += 1;
                let d = MatmulDesc::new(m, n, k).variant(variant).split_k(splits);
                checks.add(layout(d, lay), false, seed);
            }
            seed += 1;
            let d = MatmulDesc::new(19, 23, 211)
                .batched(3)
                .offsets(5, 3, 2)
                .batch_strides(19 * 211 + 4, 211 * 23 + 1, 19 * 23 + 6)
                .variant(variant)
                .split_k(5);
            checks.add(layout(d, lay), false, seed);
        }
        seed += 1;
        let epilogue = MatmulDesc::new(21, 35, 333)
            .activation(Activation::Tanh)
            .variant(variant)
            .split_k(4)
            .trans_b();
        checks.add(epilogue, true, seed);
        seed += 1;
        let added = MatmulDesc::new(21, 35, 333)
            .accumulate()
            .variant(variant)
            .split_k(6)
            .trans_b();
        checks.add(added, false, seed);
        seed += 1;
        let reduced = MatmulDesc::new(10, 32, 676)
            .batched(4)
            .reduce_batch()
            .variant(variant)
            .split_k(3)
            .trans_b();
        checks.add(reduced, false, seed);
    }
    checks.run(ctx);
}

/// A split product is two dispatches whose result is the same bit for bit on
/// every run (fixed summation order, no atomics), and a factor of 1 is one
/// dispatch.
#[test]
fn split_k_is_deterministic_and_one_split_is_one_dispatch() {
    let (_g, ctx) = gpu();
    let variant = matmul::available_variants(ctx)[0];
    let d = MatmulDesc::new(32, 64, 5408).variant(variant).split_k(21);
    let case = random_case(&d, false, 1300);
    let (a, b, _, c) = upload_case(ctx, &case);
    let list = matmul::matmul(ctx, &d, &a, &b, None, &c).unwrap();
    assert_eq!(
        list.len(),
        2,
        "a split product is the partials and their reduction"
    );
    ctx.run_all(&list).unwrap();
    let first = c.to_f32(ctx).unwrap();
    for _ in 0..3 {
        c.write(ctx, &vec![f32::NAN; first.len()]).unwrap();
        ctx.run_all(&list).unwrap();
        let again = c.to_f32(ctx).unwrap();
        assert!(
            first.iter().zip(&again).all(|(x, y)| x.to_bits() == y.to_bits()),
            "a split-K product changed between runs"
        );
    }
    assert_matches(
        "split 21",
        &first,
        &run_reference(&d, &case),
        atol_for(5408),
        1e-5,
    );
    let one = matmul::matmul(ctx, &d.clone().split_k(1), &a, &b, None, &c).unwrap();
    assert_eq!(one.len(), 1, "split_k(1) is one dispatch");
}

#[test]
fn accumulate_adds_onto_c() {
    let (_g, ctx) = gpu();
    let mut checks = Checks::default();
    let mut seed = 500;
    for variant in epilogue_variants(ctx) {
        for lay in LAYOUTS {
            seed += 1;
            let d = layout(MatmulDesc::new(19, 67, 23).accumulate().variant(variant), lay);
            checks.add(d, false, seed);
            seed += 1;
            let d = layout(
                MatmulDesc::new(5, 6, 7)
                    .batched(2)
                    .offsets(2, 3, 4)
                    .batch_strides(0, 50, 40)
                    .accumulate()
                    .variant(variant),
                lay,
            );
            checks.add(d, false, seed);
        }
    }
    checks.run(ctx);
}

#[test]
fn small_integers_are_exact() {
    // Integer inputs in [-3, 3]: every partial sum is an integer below 2^24, so
    // the result is exact in f32 whatever the summation order.
    let (_g, ctx) = gpu();
    let mut r = rng(600);
    for variant in epilogue_variants(ctx) {
        for lay in LAYOUTS {
            let d = layout(MatmulDesc::new(37, 75, 517).variant(variant), lay);
            let (na, nb, nc) = extents(&d);
            let mut ints =
                |n: usize| -> Vec<f32> { (0..n).map(|_| r.random_range(-3i32..=3) as f32).collect() };
            let case = Case {
                a: ints(na),
                b: ints(nb),
                bias: None,
                c0: vec![f32::NAN; nc],
            };
            let got = run_gpu(ctx, &d, &case);
            let want = run_reference(&d, &case);
            assert_close(
                &format!("exact {} {}", d.layout_name(), variant.name()),
                &got,
                &want,
                0.0,
                0.0,
            );
        }
    }
}

#[test]
fn large_case_matches_reference() {
    let (_g, ctx) = gpu();
    check(ctx, &MatmulDesc::new(1000, 1100, 900), true, 700);
}

#[test]
fn large_case_tiled_nt() {
    // The GPU kernel at size, in the Dense layer's layout (X·Wᵀ + b).
    let (_g, ctx) = gpu();
    let d = MatmulDesc::new(300, 260, 700)
        .trans_b()
        .activation(Activation::Relu)
        .variant(MatmulVariant::Tiled128);
    check(ctx, &d, true, 701);
}

/// Over 65,535 workgroups in a dimension: `fold_groups` spreads them over a 2-D/3-D
/// grid and every kernel recovers its tile from the flattened workgroup id.
fn check_folding(ctx: &Context, variants: &[MatmulVariant], tiles: usize, seed0: u64) {
    let mut seed = seed0;
    let mut checks = Checks::default();
    // The CPU-only register blocks are not offered on GPUs.
    for &variant in variants.iter().filter(|&&v| matmul::variant_available(ctx, v)) {
        let (_, bn) = variant.block();
        // M = 1 and `tiles` column tiles of this variant.
        seed += 1;
        checks.add(MatmulDesc::new(1, tiles * bn, 1).variant(variant), false, seed);
        // `tiles` tiny batches.
        seed += 1;
        checks.add(
            MatmulDesc::new(1, 2, 3).batched(tiles).variant(variant),
            false,
            seed,
        );
        // Split-K over folded tiles, then its reduction (small grids only: C holds
        // every split's partial sums).
        if tiles < 1000 {
            seed += 1;
            checks.add(
                MatmulDesc::new(3, tiles / 4 * bn, 300)
                    .variant(variant)
                    .split_k(4),
                false,
                seed,
            );
        }
    }
    checks.run(ctx);
}

/// Grids over the device's 65,535 workgroups per dimension fold into 2-D grids:
/// 70,000 workgroups of the register kernels (lavapipe's default; the tiled ones
/// cost ~0.7 ms a workgroup here, a minute a case, so the next test folds them).
#[test]
fn grids_over_65535_workgroups_fold() {
    let (_g, ctx) = gpu();
    check_folding(
        ctx,
        &[
            MatmulVariant::RegisterLarge,
            MatmulVariant::RegisterSmall,
            MatmulVariant::RegisterMid,
            MatmulVariant::RegisterWide,
        ],
        70_000,
        800,
    );
}

/// Every variant's grids folded into 2-D and 3-D at a cap of 5 workgroups per
/// dimension (the folding arithmetic of 65,535, with dispatches small enough for
/// lavapipe), as planned here and as GPUs plan.
#[test]
fn every_variant_folds_its_grid_in_two_and_three_dimensions() {
    let (_g, ctx) = gpu();
    let _restore = PlanAs(ctx);
    ctx.set_max_groups_per_dim(5);
    for class in [
        wgml::gpu::AdapterClass::Native,
        wgml::gpu::AdapterClass::GpuWithoutSubgroups,
    ] {
        ctx.set_adapter_class(class);
        check_folding(ctx, &MatmulVariant::ALL, 41, 820);
    }
}

fn expect_err(result: wgml::Result<Vec<wgml::gpu::Dispatch>>, needles: &[&str]) -> Error {
    let e = match result {
        Ok(_) => panic!("expected an error mentioning {needles:?}"),
        Err(e) => e,
    };
    let msg = e.to_string();
    for n in needles {
        assert!(msg.contains(n), "error '{msg}' should mention '{n}'");
    }
    e
}

#[test]
fn bad_inputs_are_rejected() {
    let (_g, ctx) = gpu();
    let t = |n: usize| Tensor::from_f32(ctx, &vec![1.0; n], &[n]).unwrap();
    let (a, b, c) = (t(6), t(12), t(8));
    let ok = MatmulDesc::new(2, 4, 3);
    assert!(matmul::matmul(ctx, &ok, &a, &b, None, &c).is_ok());

    // Zero sizes.
    for d in [
        MatmulDesc::new(0, 4, 3),
        MatmulDesc::new(2, 0, 3),
        MatmulDesc::new(2, 4, 0),
        ok.clone().batched(0),
    ] {
        let e = expect_err(matmul::matmul(ctx, &d, &a, &b, None, &c), &["at least 1"]);
        assert!(matches!(e, Error::Shape { .. }), "{e:?}");
    }
    // K mismatch: B holds [3, 4] but K = 4 needs [4, 4].
    let e = expect_err(
        matmul::matmul(ctx, &MatmulDesc::new(2, 4, 4), &t(8), &b, None, &c),
        &["B holds 12", "needs 16"],
    );
    assert!(matches!(e, Error::Shape { .. }));
    // Too-small A, C, and an offset pushing B past its end.
    expect_err(
        matmul::matmul(ctx, &ok, &t(5), &b, None, &c),
        &["A holds 5", "needs 6"],
    );
    expect_err(
        matmul::matmul(ctx, &ok, &a, &b, None, &t(7)),
        &["C holds 7", "needs 8"],
    );
    expect_err(
        matmul::matmul(ctx, &ok.clone().offsets(0, 1, 0), &a, &b, None, &c),
        &["B holds 12", "needs 13", "offset 1"],
    );
    // Batches that do not fit, and overlapping C batches.
    expect_err(
        matmul::matmul(ctx, &ok.clone().batched(2), &a, &b, None, &c),
        &["A holds 6", "needs 12"],
    );
    expect_err(
        matmul::matmul(
            ctx,
            &ok.clone().batched(2).batch_strides(0, 0, 4),
            &a,
            &b,
            None,
            &t(16),
        ),
        &["overlap"],
    );
    // Accumulate with a bias or an activation.
    let bias = t(4);
    let e = expect_err(
        matmul::matmul(ctx, &ok.clone().accumulate(), &a, &b, Some(&bias), &c),
        &["accumulate", "bias"],
    );
    assert!(matches!(e, Error::InvalidArgument(_)));
    expect_err(
        matmul::matmul(
            ctx,
            &ok.clone().accumulate().activation(Activation::Relu),
            &a,
            &b,
            None,
            &c,
        ),
        &["accumulate", "relu"],
    );
    // Bias of the wrong length.
    expect_err(
        matmul::matmul(ctx, &ok, &a, &b, Some(&t(3)), &c),
        &["bias has 3", "N=4"],
    );
    // Wrong dtype for each operand.
    let u = |n: usize| Tensor::zeros(ctx, &[n], DType::U32).unwrap();
    for (which, r) in [
        ("A", matmul::matmul(ctx, &ok, &u(6), &b, None, &c)),
        ("B", matmul::matmul(ctx, &ok, &a, &u(12), None, &c)),
        ("C", matmul::matmul(ctx, &ok, &a, &b, None, &u(8))),
        ("bias", matmul::matmul(ctx, &ok, &a, &b, Some(&u(4)), &c)),
    ] {
        let e = expect_err(r, &[which, "u32"]);
        assert!(matches!(e, Error::DType { .. }), "{e:?}");
    }
    // C aliasing an input.
    let big = t(64);
    expect_err(
        matmul::matmul(ctx, &ok, &big, &b, None, &big),
        &["shares its buffer with A"],
    );
    // The reference rejects the same inputs.
    let mut cv = vec![0.0; 8];
    assert!(
        reference::matmul::matmul(&MatmulDesc::new(2, 4, 4), &[0.0; 8], &[0.0; 12], None, &mut cv).is_err()
    );
    assert!(
        reference::matmul::matmul(
            &ok.clone().accumulate(),
            &[0.0; 6],
            &[0.0; 12],
            Some(&[0.0; 4]),
            &mut cv
        )
        .is_err()
    );
}

/// Times the matmuls of the seed CNN's training step (batch 32) with the
/// automatic variant: the conv forward (batched NN, A broadcast, ReLU epilogue,
/// K = 10), the conv weight gradient (NT, K = 676), and the Dense 5408 → 64 layer's
/// forward (NT, bias + ReLU), weight gradient (TN) and input gradient (NN). Interleaved
/// rounds (the shared machine's load drifts), median of 12 runs each.
/// `cargo test --release --test kernels matmul::bench_train_shapes -- --ignored --nocapture`
/// (`WGML_BENCH_ONLY=conv` times only the cases whose name contains "conv").
#[test]
#[ignore = "a timing harness: run by .ci/run with --ignored, and by hand with --nocapture"]
fn bench_train_shapes() {
    let (_g, ctx) = gpu_exclusive();
    let conv_fwd = MatmulDesc {
        batch: 32,
        a_batch_stride: 0,
        b_batch_stride: 10 * 676,
        c_batch_stride: 32 * 676,
        activation: Activation::Relu,
        ..MatmulDesc::new(32, 676, 10)
    };
    let conv_dw = MatmulDesc {
        batch: 32,
        trans_b: true,
        a_batch_stride: 10 * 676,
        b_batch_stride: 32 * 676,
        c_batch_stride: 10 * 32,
        ..MatmulDesc::new(10, 32, 676)
    };
    let cases = [
        ("conv fwd 32x676x10 b32 relu", conv_fwd, false),
        ("conv dW 10x32x676 b32 nt", conv_dw, false),
        (
            "dense fwd 32x64x5408 nt bias relu",
            MatmulDesc::new(32, 64, 5408)
                .trans_b()
                .activation(Activation::Relu),
            true,
        ),
        (
            "dense dW 64x5408x32 tn",
            MatmulDesc::new(64, 5408, 32).trans_a(),
            false,
        ),
        ("dense dx 32x5408x64 nn", MatmulDesc::new(32, 5408, 64), false),
    ];
    let mut prepared = Vec::new();
    let mut keep = Vec::new();
    let only = std::env::var("WGML_BENCH_ONLY").unwrap_or_default();
    // WGML_BENCH_VARIANTS=1: also time each case with every register variant forced.
    let forced: Vec<Option<MatmulVariant>> = if std::env::var("WGML_BENCH_VARIANTS").is_ok() {
        vec![
            None,
            Some(MatmulVariant::RegisterLarge),
            Some(MatmulVariant::RegisterSmall),
            Some(MatmulVariant::RegisterMid),
            Some(MatmulVariant::RegisterWide),
        ]
    } else {
        vec![None]
    };
    let forced: Vec<Option<MatmulVariant>> = forced
        .into_iter()
        .filter(|v| v.is_none_or(|v| matmul::variant_available(ctx, v)))
        .collect();
    for (i, (name, desc, bias)) in cases.iter().enumerate() {
        if !name.contains(only.as_str()) {
            continue;
        }
        let case = random_case(desc, *bias, 900 + i as u64);
        let (a, b, bias, c) = upload_case(ctx, &case);
        for v in &forced {
            let mut desc = desc.clone();
            desc.variant = *v;
            let t = std::time::Instant::now();
            let d = matmul::matmul(ctx, &desc, &a, &b, bias.as_ref(), &c).unwrap();
            ctx.run_all(&d).unwrap();
            println!(
                "{name}: first run (pipeline creation included) {:.1} s",
                t.elapsed().as_secs_f64()
            );
            let variant = match v {
                None => format!("auto: {}", matmul::choose(ctx, &desc).unwrap().name()),
                Some(v) => v.name().to_string(),
            };
            prepared.push((*name, variant, d));
        }
        keep.push((a, b, bias, c));
    }
    let mut ms = vec![Vec::new(); prepared.len()];
    for _ in 0..4 {
        for (k, (_, _, d)) in prepared.iter().enumerate() {
            for _ in 0..3 {
                let t = std::time::Instant::now();
                ctx.run_all(d).unwrap();
                ms[k].push(t.elapsed().as_secs_f64() * 1e3);
            }
        }
    }
    for ((name, variant, d), mut v) in prepared.iter().zip(ms) {
        v.sort_by(f64::total_cmp);
        println!(
            "{name} [{variant}, {:?} groups]: median {:.3} ms (min {:.3}, max {:.3})",
            d.iter().map(|d| d.groups).collect::<Vec<_>>(),
            v[v.len() / 2],
            v[0],
            v[v.len() - 1]
        );
    }
}

/// The fused weight-gradient + Adam epilogue equals the reference matmul into a
/// gradient followed by the reference Adam step, over 3 steps (replayed dispatch,
/// fresh factors each step), for every register variant, every layout, odd
/// shapes, both epsilon placements and AdamW.
#[test]
fn matmul_adam_equals_matmul_then_adam() {
    use wgml::kernels::optim::{EpsilonPlacement, Optimizer, StepUniform};
    let (_g, ctx) = gpu();
    if !matmul::available_variants(ctx)
        .iter()
        .any(|v| v.needs_subgroups())
    {
        // The fused epilogue needs the register kernels: say so rather than pass.
        let d = MatmulDesc::new(4, 4, 4);
        let t = Tensor::zeros(ctx, &[16], DType::F32).unwrap();
        let (p, m, v) = (t.clone(), t.clone(), t.clone());
        let step = StepUniform::new(ctx).unwrap();
        let err = matmul::matmul_adam(ctx, &d, &t, &t, &p, &m, &v, &Optimizer::adam(1e-3), &step);
        assert!(err.is_err());
        return;
    }
    let adamw = Optimizer::Adam {
        lr: 0.01,
        beta1: 0.8,
        beta2: 0.99,
        epsilon: 1e-6,
        weight_decay: 0.05,
        epsilon_placement: EpsilonPlacement::PyTorch,
    };
    let cases = [
        (
            MatmulDesc::new(64, 5408, 32),
            Optimizer::adam(1e-3),
            (true, false),
        ),
        (MatmulDesc::new(37, 28, 11), adamw.clone(), (true, false)),
        (MatmulDesc::new(3, 132, 17), Optimizer::adam(0.05), (false, false)),
        (MatmulDesc::new(33, 4, 5), adamw, (false, true)),
    ];
    let mut r = rng(1234);
    for (case, (base, opt, lay)) in cases.iter().enumerate() {
        // Every register variant on the planner's layout (TN); the automatic
        // choice on the others (each pipeline takes seconds to compile on lavapipe).
        let variants: Vec<Option<MatmulVariant>> = if case == 0 {
            matmul::available_variants(ctx)
                .into_iter()
                .filter(|v| v.needs_subgroups())
                .map(Some)
                .collect()
        } else {
            vec![None]
        };
        for variant in variants {
            let mut d = layout(base.clone(), *lay);
            d.variant = variant;
            let (mm, nn, kk) = (d.m, d.n, d.k);
            let p0 = uniform(&mut r, mm * nn, -1.0, 1.0);
            let (mut p_ref, mut state) = (p0.clone(), vec![vec![0.0f32; mm * nn]; 2]);
            let param = Tensor::from_f32(ctx, &p0, &[mm, nn]).unwrap();
            let m = Tensor::zeros(ctx, &[mm, nn], DType::F32).unwrap();
            let v = Tensor::zeros(ctx, &[mm, nn], DType::F32).unwrap();
            let a = Tensor::zeros(ctx, &[mm * kk], DType::F32).unwrap();
            let b = Tensor::zeros(ctx, &[kk * nn], DType::F32).unwrap();
            let step = StepUniform::new(ctx).unwrap();
            let dispatch = matmul::matmul_adam(ctx, &d, &a, &b, &param, &m, &v, opt, &step).unwrap();
            let mut near_zero = vec![false; mm * nn];
            for t in 1..=3u32 {
                let av = uniform(&mut r, mm * kk, -1.0, 1.0);
                let bv = uniform(&mut r, kk * nn, -1.0, 1.0);
                a.write(ctx, &av).unwrap();
                b.write(ctx, &bv).unwrap();
                step.write(ctx, opt, t, opt.lr()).unwrap();
                ctx.run(&[&dispatch]).unwrap();
                let mut grad = vec![0.0f32; mm * nn];
                reference::matmul::matmul(&d, &av, &bv, None, &mut grad).unwrap();
                reference::optim::mark_ill_conditioned(
                    &mut near_zero,
                    &grad,
                    reference::optim::sum_noise(kk),
                );
                reference::optim::optimizer_step(opt, t, opt.lr(), &mut p_ref, &grad, &mut state);
            }
            let what = format!("case {case} {lay:?} {variant:?}");
            // Where a gradient was within its rounding noise of zero the update
            // may go either way (up to the steps' size); the rest must agree.
            let got = param.to_f32(ctx).unwrap();
            let p_ref = reference::optim::accept_ill_conditioned(&got, &p_ref, &near_zero, 6.0 * opt.lr());
            assert_close(&format!("{what}: param"), &got, &p_ref, 1e-5, 1e-4);
            assert_close(
                &format!("{what}: m"),
                &m.to_f32(ctx).unwrap(),
                &state[0],
                1e-5,
                1e-4,
            );
            assert_close(
                &format!("{what}: v"),
                &v.to_f32(ctx).unwrap(),
                &state[1],
                1e-5,
                1e-4,
            );
        }
    }
    // Misuse is an error: an activation, N not a multiple of 4, SGD, shared buffers.
    let d = MatmulDesc::new(4, 4, 4);
    let t = |n| Tensor::zeros(ctx, &[n], DType::F32).unwrap();
    let (a, b, p, m, v) = (t(16), t(16), t(16), t(16), t(16));
    let step = StepUniform::new(ctx).unwrap();
    let mut relu = d.clone();
    relu.activation = Activation::Relu;
    let err = matmul::matmul_adam(ctx, &relu, &a, &b, &p, &m, &v, &Optimizer::adam(1e-3), &step).unwrap_err();
    assert!(err.to_string().contains("one plain product"), "{err}");
    let sgd = Optimizer::Sgd {
        lr: 0.1,
        momentum: 0.0,
        nesterov: false,
        weight_decay: 0.0,
    };
    let d6 = MatmulDesc::new(2, 6, 4);
    let (a8, p12, m12, v12) = (t(8), t(12), t(12), t(12));
    let err = matmul::matmul_adam(
        ctx,
        &d6,
        &a8,
        &t(24),
        &p12,
        &m12,
        &v12,
        &Optimizer::adam(1e-3),
        &step,
    )
    .unwrap_err();
    assert!(err.to_string().contains("N a multiple of 4"), "{err}");
    let err = matmul::matmul_adam(ctx, &d, &a, &b, &p, &m, &v, &sgd, &step).unwrap_err();
    assert!(err.to_string().contains("Adam only"), "{err}");
    let err = matmul::matmul_adam(ctx, &d, &a, &b, &p, &p, &v, &Optimizer::adam(1e-3), &step).unwrap_err();
    assert!(err.to_string().contains("five separate buffers"), "{err}");
}
