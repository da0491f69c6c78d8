//! conv kernels against `wgml::reference::conv`.

use wgml::kernels::conv::{self, Activation, Conv2dDesc, Im2colForm, Padding};
use wgml::{Context, DType, Error, Tensor, reference};

use crate::common::*;

#[allow(clippy::too_many_arguments)]
pub(crate) fn desc(
    n: usize,
    c_in: usize,
    hw: (usize, usize),
    c_out: usize,
    k: (usize, usize),
    stride: (usize, usize),
    padding: Padding,
) -> Conv2dDesc {
    Conv2dDesc {
        n,
        c_in,
        h: hw.0,
        w: hw.1,
        c_out,
        kh: k.0,
        kw: k.1,
        stride,
        padding,
    }
}

/// Odd and prime image sizes (27×31), 1/3/32 channels, kernels 1, 3, 5 (and a
/// non-square one), strides 1 and 2, valid/same/explicit padding, batches 1..7.
fn sweep() -> Vec<Conv2dDesc> {
    use Padding::*;
    vec![
        desc(1, 1, (1, 1), 1, (1, 1), (1, 1), Valid),
        desc(3, 1, (27, 31), 32, (3, 3), (1, 1), Valid),
        desc(2, 3, (27, 31), 5, (5, 5), (2, 2), Same),
        desc(5, 32, (13, 11), 3, (1, 1), (1, 1), Valid),
        desc(3, 32, (9, 14), 32, (3, 3), (2, 2), Explicit(1, 1)),
        desc(2, 3, (8, 7), 4, (5, 5), (1, 1), Explicit(2, 1)),
        desc(1, 3, (6, 5), 2, (3, 5), (2, 1), Same),
        desc(7, 1, (28, 28), 32, (3, 3), (1, 1), Valid),
        desc(4, 3, (10, 10), 7, (5, 5), (2, 2), Valid),
        desc(2, 1, (5, 5), 3, (1, 1), (2, 2), Same),
        desc(3, 3, (27, 31), 1, (3, 3), (1, 2), Same),
    ]
}

const ACTS: [Activation; 4] = [
    Activation::Identity,
    Activation::Relu,
    Activation::Sigmoid,
    Activation::Tanh,
];

fn upload(ctx: &Context, data: &[f32], shape: &[usize]) -> Tensor {
    Tensor::from_f32(ctx, data, shape).unwrap()
}

fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// Random x, w, bias for `d`.
fn inputs(d: &Conv2dDesc, seed: u64) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let mut r = rng(seed);
    let x = uniform(&mut r, numel(&d.input_shape()), -1.0, 1.0);
    let w = uniform(&mut r, numel(&d.weight_shape()), -1.0, 1.0);
    let b = uniform(&mut r, d.c_out, -1.0, 1.0);
    (x, w, b)
}

/// Runs forward on the GPU (with `max_chunk_bytes`) and returns y.
fn gpu_forward(
    ctx: &Context,
    d: &Conv2dDesc,
    (x, w, b): (&[f32], &[f32], Option<&[f32]>),
    act: Activation,
    max_chunk_bytes: u64,
) -> Vec<f32> {
    let out = d.output_shape().unwrap();
    let (xt, wt) = (
        upload(ctx, x, &d.input_shape()),
        upload(ctx, w, &d.weight_shape()),
    );
    let bt = b.map(|b| upload(ctx, b, &[d.c_out]));
    let yt = nan_tensor(ctx, &out);
    let list =
        conv::conv2d_forward_chunked(ctx, d, &xt, &wt, bt.as_ref(), act, &yt, max_chunk_bytes).unwrap();
    ctx.run(&list.iter().collect::<Vec<_>>()).unwrap();
    yt.to_f32(ctx).unwrap()
}

struct Grads {
    dx: Vec<f32>,
    dw: Vec<f32>,
    db: Vec<f32>,
}

/// Runs backward on the GPU (all three gradients) and returns them.
fn gpu_backward(
    ctx: &Context,
    d: &Conv2dDesc,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    max_chunk_bytes: u64,
) -> Grads {
    let (xt, wt) = (
        upload(ctx, x, &d.input_shape()),
        upload(ctx, w, &d.weight_shape()),
    );
    let dyt = upload(ctx, dy, &d.output_shape().unwrap());
    let dxt = nan_tensor(ctx, &d.input_shape());
    let dwt = nan_tensor(ctx, &d.weight_shape());
    let dbt = nan_tensor(ctx, &[d.c_out]);
    let list = conv::conv2d_backward_chunked(
        ctx,
        d,
        &xt,
        &wt,
        &dyt,
        Some(&dxt),
        &dwt,
        Some(&dbt),
        max_chunk_bytes,
    )
    .unwrap();
    // Twice: replaying the recorded dispatches must overwrite, not accumulate.
    let refs = list.iter().collect::<Vec<_>>();
    ctx.run(&refs).unwrap();
    ctx.run(&refs).unwrap();
    Grads {
        dx: dxt.to_f32(ctx).unwrap(),
        dw: dwt.to_f32(ctx).unwrap(),
        db: dbt.to_f32(ctx).unwrap(),
    }
}

fn ref_backward(d: &Conv2dDesc, x: &[f32], w: &[f32], dy: &[f32]) -> Grads {
    let mut g = Grads {
        dx: vec![0.0; x.len()],
        dw: vec![0.0; w.len()],
        db: vec![0.0; d.c_out],
    };
    reference::conv::conv2d_backward(d, x, w, dy, Some(&mut g.dx), &mut g.dw, Some(&mut g.db));
    g
}

fn assert_grads(what: &str, got: &Grads, want: &Grads, atol: f32, rtol: f32) {
    assert_close(&format!("{what} dx"), &got.dx, &want.dx, atol, rtol);
    assert_close(&format!("{what} dw"), &got.dw, &want.dw, atol, rtol);
    assert_close(&format!("{what} db"), &got.db, &want.db, atol, rtol);
}

#[test]
fn same_and_explicit_padding_follow_keras_and_pytorch() {
    // Keras "same": output ceil(h / s), the odd padding pixel at the bottom/right.
    let d = desc(1, 1, (5, 6), 1, (2, 3), (1, 1), Padding::Same);
    assert_eq!(d.out_hw().unwrap(), (5, 6));
    let p = d.pads().unwrap();
    assert_eq!((p.top, p.bottom, p.left, p.right), (0, 1, 1, 1));
    let d = desc(1, 1, (28, 27), 1, (3, 3), (2, 2), Padding::Same);
    assert_eq!(d.out_hw().unwrap(), (14, 14));
    let p = d.pads().unwrap();
    // h: (14-1)·2 + 3 - 28 = 1 -> (0, 1); w: (14-1)·2 + 3 - 27 = 2 -> (1, 1).
    assert_eq!((p.top, p.bottom, p.left, p.right), (0, 1, 1, 1));
    // A 1x1 kernel with stride 4 needs no padding: max(.., 0).
    let d = desc(1, 1, (6, 6), 1, (1, 1), (4, 4), Padding::Same);
    assert_eq!(d.out_hw().unwrap(), (2, 2));
    // PyTorch: (h + 2p - k) / s + 1.
    let d = desc(1, 1, (27, 31), 1, (5, 3), (2, 3), Padding::Explicit(2, 1));
    assert_eq!(d.out_hw().unwrap(), ((27 + 4 - 5) / 2 + 1, (31 + 2 - 3) / 3 + 1));
    assert_eq!(
        desc(1, 1, (28, 28), 1, (3, 3), (1, 1), Padding::Valid)
            .out_hw()
            .unwrap(),
        (26, 26)
    );
}

/// More than 65,535 planes (and col rows), so both im2col forms fold their grids:
/// the spare workgroups of a folded grid must write nothing (no ones row when there
/// is none). The automatic choice is the scatter form for 3x3 windows and the
/// gather form for a 1x1 kernel with stride 2.
#[test]
fn im2col_forms_fold_large_grids() {
    let (_g, ctx) = gpu();
    let d = desc(1, 66_000, (3, 4), 1, (3, 3), (1, 1), Padding::Valid);
    assert!(Im2colForm::scatter_loads_less(&d).unwrap());
    assert!(!Im2colForm::scatter_loads_less(&desc(1, 1, (8, 8), 1, (1, 1), (2, 2), Padding::Valid)).unwrap());
    let (x, _, _) = inputs(&d, 77);
    let np = 2;
    let xt = upload(ctx, &x, &d.input_shape());
    for ones_row in [false, true] {
        let ld = d.ckk() + ones_row as usize;
        let mut col = vec![0.0; ld * np];
        reference::conv::im2col(&d, &x, 0, 1, ones_row, &mut col);
        for form in [Im2colForm::Gather, Im2colForm::Scatter] {
            // One spare row past the end: it must stay NaN.
            let colt = nan_tensor(ctx, &[(ld + 1) * np]);
            let a = conv::im2col_with(ctx, &d, &xt, &colt, 0, 1, ones_row, form).unwrap();
            assert!(a.groups[1] > 1, "{form:?}: the grid must fold");
            ctx.run(&[&a]).unwrap();
            let got = colt.to_f32(ctx).unwrap();
            assert_close(
                &format!("im2col {form:?} ones={ones_row}"),
                &got[..ld * np],
                &col,
                0.0,
                0.0,
            );
            assert!(
                got[ld * np..].iter().all(|v| v.is_nan()),
                "{form:?}: wrote past col"
            );
        }
    }
}

#[test]
fn im2col_and_col2im_match_reference() {
    let (_g, ctx) = gpu();
    for (case, d) in sweep().into_iter().enumerate() {
        let (x, _, _) = inputs(&d, 10 + case as u64);
        let (oh, ow) = d.out_hw().unwrap();
        let np = oh * ow;
        // A chunk in the middle of the batch when there is one.
        let (first, images) = if d.n >= 3 { (1, d.n - 2) } else { (0, d.n) };
        let ones_row = case % 2 == 1;
        let ld = d.ckk() + ones_row as usize;
        let xt = upload(ctx, &x, &d.input_shape());
        let mut col = vec![0.0; images * ld * np];
        reference::conv::im2col(&d, &x, first, images, ones_row, &mut col);
        // Both forms, whichever the automatic choice is, on every shape.
        let mut colt = nan_tensor(ctx, &[images * ld * np]);
        for form in [Im2colForm::Gather, Im2colForm::Scatter, Im2colForm::Auto] {
            colt = nan_tensor(ctx, &[images * ld * np]);
            let a = conv::im2col_with(ctx, &d, &xt, &colt, first, images, ones_row, form).unwrap();
            ctx.run(&[&a]).unwrap();
            assert_close(
                &format!("im2col {form:?} {d:?} ones={ones_row}"),
                &colt.to_f32(ctx).unwrap(),
                &col,
                0.0,
                0.0,
            );
        }

        // col2im of an independent random col (CKK rows per image).
        let dcol = uniform(&mut rng(15 + case as u64), images * d.ckk() * np, -1.0, 1.0);
        let dcolt = upload(ctx, &dcol, &[dcol.len()]);
        let dxt = nan_tensor(ctx, &d.input_shape());
        let b = conv::col2im(ctx, &d, &dcolt, &dxt, first, images).unwrap();
        ctx.run(&[&b]).unwrap();
        let mut dx = vec![f32::NAN; x.len()];
        reference::conv::col2im(&d, &dcol, first, images, &mut dx);
        let got = dxt.to_f32(ctx).unwrap();
        let image = d.c_in * d.h * d.w;
        let range = first * image..(first + images) * image;
        assert_close(
            &format!("col2im {d:?}"),
            &got[range.clone()],
            &dx[range.clone()],
            1e-6,
            1e-5,
        );
        let outside = got.iter().enumerate().filter(|(i, _)| !range.contains(i));
        assert!(
            outside.into_iter().all(|(_, v)| v.is_nan()),
            "col2im wrote outside its images"
        );
        // For a 1x1 kernel with stride 1 and no padding col2im(im2col(x)) == x.
        if d.kh == 1 && d.kw == 1 && d.stride == (1, 1) && !ones_row {
            let c = conv::col2im(ctx, &d, &colt, &dxt, first, images).unwrap();
            ctx.run(&[&c]).unwrap();
            let got = dxt.to_f32(ctx).unwrap();
            assert_close(
                "col2im(im2col(x)) == x for 1x1",
                &got[range.clone()],
                &x[range],
                0.0,
                0.0,
            );
        }
    }
}

#[test]
fn forward_matches_reference() {
    let (_g, ctx) = gpu();
    for (case, d) in sweep().into_iter().enumerate() {
        let (x, w, b) = inputs(&d, 20 + case as u64);
        let act = ACTS[case % 4];
        // Alternate bias on/off so both the fused-activation and the bias_act paths run.
        let bias = (case % 3 != 0).then_some(&b[..]);
        let got = gpu_forward(ctx, &d, (&x, &w, bias), act, u64::MAX);
        let mut want = vec![0.0; numel(&d.output_shape().unwrap())];
        reference::conv::conv2d_forward(&d, &x, &w, bias, act, &mut want);
        assert_close(
            &format!("conv2d forward {d:?} {act:?} bias={}", bias.is_some()),
            &got,
            &want,
            1e-5,
            1e-4,
        );
    }
}

#[test]
fn backward_matches_reference() {
    let (_g, ctx) = gpu();
    for (case, d) in sweep().into_iter().enumerate() {
        let (x, w, _) = inputs(&d, 30 + case as u64);
        let dy = uniform(
            &mut rng(40 + case as u64),
            numel(&d.output_shape().unwrap()),
            -1.0,
            1.0,
        );
        let got = gpu_backward(ctx, &d, &x, &w, &dy, u64::MAX);
        let want = ref_backward(&d, &x, &w, &dy);
        assert_grads(&format!("conv2d backward {d:?}"), &got, &want, 1e-4, 1e-4);
    }
}

#[test]
fn backward_without_dx_and_db_writes_only_dw() {
    let (_g, ctx) = gpu();
    let d = desc(3, 3, (9, 8), 4, (3, 3), (1, 1), Padding::Same);
    let (x, w, _) = inputs(&d, 50);
    let dy = uniform(&mut rng(51), numel(&d.output_shape().unwrap()), -1.0, 1.0);
    let (xt, wt) = (
        upload(ctx, &x, &d.input_shape()),
        upload(ctx, &w, &d.weight_shape()),
    );
    let dyt = upload(ctx, &dy, &d.output_shape().unwrap());
    let dwt = nan_tensor(ctx, &d.weight_shape());
    let list = conv::conv2d_backward(ctx, &d, &xt, &wt, &dyt, None, &dwt, None).unwrap();
    ctx.run(&list.iter().collect::<Vec<_>>()).unwrap();
    let want = ref_backward(&d, &x, &w, &dy);
    assert_close("dw alone", &dwt.to_f32(ctx).unwrap(), &want.dw, 1e-4, 1e-4);
    // Replaying the same dispatches gives the same dw (overwritten, not accumulated).
    ctx.run(&list.iter().collect::<Vec<_>>()).unwrap();
    assert_close("dw replayed", &dwt.to_f32(ctx).unwrap(), &want.dw, 1e-4, 1e-4);
}

#[test]
fn forced_chunking_matches_reference() {
    let (_g, ctx) = gpu();
    // 7 images; a cap that fits 3 images' scratch gives chunks of 3, 3 and 1.
    for (case, d) in [
        desc(7, 3, (11, 9), 5, (3, 3), (1, 1), Padding::Same),
        desc(5, 2, (27, 31), 64, (5, 5), (2, 2), Padding::Explicit(2, 2)),
    ]
    .into_iter()
    .enumerate()
    {
        let (oh, ow) = d.out_hw().unwrap();
        // The largest scratch per image is the im2col matrix with its ones row.
        let per_image = (oh * ow * (d.ckk() + 1)) as u64 * 4;
        let cap = 3 * per_image + 4;
        let (x, w, b) = inputs(&d, 60 + case as u64);
        let got = gpu_forward(ctx, &d, (&x, &w, Some(&b)), Activation::Relu, cap);
        let mut want = vec![0.0; numel(&d.output_shape().unwrap())];
        reference::conv::conv2d_forward(&d, &x, &w, Some(&b), Activation::Relu, &mut want);
        assert_close(&format!("chunked forward {d:?}"), &got, &want, 1e-5, 1e-4);

        let dy = uniform(&mut rng(70 + case as u64), want.len(), -1.0, 1.0);
        let got = gpu_backward(ctx, &d, &x, &w, &dy, cap);
        assert_grads(
            &format!("chunked backward {d:?}"),
            &got,
            &ref_backward(&d, &x, &w, &dy),
            1e-4,
            1e-4,
        );

        // The cap really split the batch: fewer dispatches without it.
        let (xt, wt) = (
            upload(ctx, &x, &d.input_shape()),
            upload(ctx, &w, &d.weight_shape()),
        );
        let yt = nan_tensor(ctx, &d.output_shape().unwrap());
        let one = conv::conv2d_forward(ctx, &d, &xt, &wt, None, Activation::Identity, &yt).unwrap();
        let three =
            conv::conv2d_forward_chunked(ctx, &d, &xt, &wt, None, Activation::Identity, &yt, cap).unwrap();
        let fwd_chunk = (cap / (oh * ow * d.ckk()) as u64 / 4) as usize;
        assert!(fwd_chunk < d.n);
        assert_eq!(
            (one.len(), three.len()),
            (2, 2 * d.n.div_ceil(fwd_chunk)),
            "im2col + matmul per chunk"
        );
        let (dxt, dwt) = (
            nan_tensor(ctx, &d.input_shape()),
            nan_tensor(ctx, &d.weight_shape()),
        );
        let bwd = conv::conv2d_backward_chunked(ctx, &d, &xt, &wt, &yt, Some(&dxt), &dwt, None, cap).unwrap();
        assert_eq!(bwd.len(), 5 * d.n.div_ceil(3), "backward chunks");
    }
}

#[test]
fn chunk_of_a_single_image_too_large_is_a_clear_error() {
    let (_g, ctx) = gpu();
    let d = desc(2, 3, (16, 16), 4, (3, 3), (1, 1), Padding::Same);
    let (xt, wt) = (
        nan_tensor(ctx, &d.input_shape()),
        nan_tensor(ctx, &d.weight_shape()),
    );
    let yt = nan_tensor(ctx, &d.output_shape().unwrap());
    let e =
        conv::conv2d_forward_chunked(ctx, &d, &xt, &wt, None, Activation::Identity, &yt, 1024).unwrap_err();
    assert!(matches!(e, Error::TooLarge { .. }), "{e:?}");
    assert!(e.to_string().contains("im2col"), "{e}");
}

#[test]
fn large_case_matches_reference() {
    let (_g, ctx) = gpu();
    // CKK = 144, P = 1024, dW's K = 8·1024: several matmul tiles in every direction.
    let d = desc(8, 16, (32, 32), 32, (3, 3), (1, 1), Padding::Same);
    let (x, w, b) = inputs(&d, 80);
    let got = gpu_forward(ctx, &d, (&x, &w, Some(&b)), Activation::Tanh, u64::MAX);
    let mut want = vec![0.0; numel(&d.output_shape().unwrap())];
    reference::conv::conv2d_forward(&d, &x, &w, Some(&b), Activation::Tanh, &mut want);
    assert_close("large forward", &got, &want, 1e-5, 1e-4);
    let dy = uniform(&mut rng(81), want.len(), -1.0, 1.0);
    let got = gpu_backward(ctx, &d, &x, &w, &dy, u64::MAX);
    assert_grads("large backward", &got, &ref_backward(&d, &x, &w, &dy), 5e-4, 1e-4);
}

/// L = Σ r · conv(x, w) + bias (identity activation), computed by the reference.
fn loss(d: &Conv2dDesc, x: &[f32], w: &[f32], b: &[f32], r: &[f32]) -> f64 {
    let mut y = vec![0.0; r.len()];
    reference::conv::conv2d_forward(d, x, w, Some(b), Activation::Identity, &mut y);
    y.iter().zip(r).map(|(&a, &b)| a as f64 * b as f64).sum()
}

#[test]
fn backward_matches_finite_differences() {
    let (_g, ctx) = gpu();
    for (case, d) in [
        desc(2, 3, (7, 6), 4, (3, 3), (2, 2), Padding::Same),
        desc(3, 2, (5, 7), 3, (3, 2), (1, 2), Padding::Explicit(1, 1)),
        desc(2, 1, (6, 5), 2, (5, 5), (1, 1), Padding::Valid),
    ]
    .into_iter()
    .enumerate()
    {
        let (x, w, b) = inputs(&d, 90 + case as u64);
        let r = uniform(
            &mut rng(95 + case as u64),
            numel(&d.output_shape().unwrap()),
            -1.0,
            1.0,
        );
        // dy = ∂L/∂y = r.
        let got = gpu_backward(ctx, &d, &x, &w, &r, u64::MAX);
        let eps = 1e-2;
        let fdx = finite_diff(&x, eps, |xv| loss(&d, xv, &w, &b, &r));
        let fdw = finite_diff(&w, eps, |wv| loss(&d, &x, wv, &b, &r));
        let fdb = finite_diff(&b, eps, |bv| loss(&d, &x, &w, bv, &r));
        let what = format!("{d:?} vs finite differences");
        // The loss is linear in each of x, w and b, so central differences are
        // exact but for the f32 rounding of the twin's outputs y (|y| of a few
        // units, ~6e-8 relative, a few hundred of them in the sum) divided by
        // 2·eps: the worst measured here is 3.3e-5 on a value of 0.93.
        assert_close(&format!("dx {what}"), &got.dx, &fdx, 1e-4, 1e-4);
        assert_close(&format!("dw {what}"), &got.dw, &fdw, 1e-4, 1e-4);
        assert_close(&format!("db {what}"), &got.db, &fdb, 1e-4, 1e-4);
    }
}

fn expect_err<T: std::fmt::Debug>(r: wgml::Result<T>, needle: &str) -> Error {
    let e = r.expect_err("expected an error");
    assert!(
        e.to_string().contains(needle),
        "error '{e}' does not mention '{needle}'"
    );
    e
}

/// Tensors of the right shapes for `d` (NaN-filled; never run).
fn tensors(ctx: &Context, d: &Conv2dDesc) -> [Tensor; 4] {
    let out = d.output_shape().unwrap_or([1, 1, 1, 1]);
    [
        nan_tensor(ctx, &d.input_shape()),
        nan_tensor(ctx, &d.weight_shape()),
        nan_tensor(ctx, &[d.c_out]),
        nan_tensor(ctx, &out),
    ]
}

#[test]
fn rejects_kernel_larger_than_padded_input() {
    let (_g, ctx) = gpu();
    let d = desc(1, 1, (4, 9), 2, (5, 5), (1, 1), Padding::Valid);
    let [x, w, b, y] = tensors(ctx, &d);
    let e = expect_err(
        conv::conv2d_forward(ctx, &d, &x, &w, Some(&b), Activation::Identity, &y),
        "larger than the padded 4x9",
    );
    assert!(matches!(e, Error::Shape { .. }), "{e:?}");
    // With padding 1 the same kernel fits (4 + 2 >= 5).
    assert!(
        desc(1, 1, (4, 9), 2, (5, 5), (1, 1), Padding::Explicit(1, 0))
            .validate()
            .is_ok()
    );
    expect_err(
        conv::conv2d_backward(ctx, &d, &x, &w, &y, None, &w, None),
        "larger than the padded",
    );
}

#[test]
fn rejects_zero_stride() {
    let (_g, ctx) = gpu();
    let d = desc(1, 1, (4, 4), 1, (3, 3), (1, 0), Padding::Same);
    let [x, w, _, _] = tensors(ctx, &d);
    let y = nan_tensor(ctx, &[1, 1, 4, 4]);
    let e = expect_err(
        conv::conv2d_forward(ctx, &d, &x, &w, None, Activation::Identity, &y),
        "stride",
    );
    assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}");
    assert!(d.out_hw().is_err());
}

#[test]
fn rejects_zero_sizes() {
    let d = desc(1, 0, (4, 4), 1, (3, 3), (1, 1), Padding::Same);
    expect_err(d.validate(), "c_in is 0");
    let d = desc(1, 1, (4, 4), 1, (3, 0), (1, 1), Padding::Same);
    expect_err(d.validate(), "kw is 0");
    // Sides are limited to 2^20 (the kernels divide coordinates through f32).
    let d = desc(
        1,
        1,
        (4, (1 << 20) - 1),
        1,
        (3, 3),
        (1, 1),
        Padding::Explicit(0, 1),
    );
    expect_err(d.validate(), "largest supported side");
}

#[test]
fn rejects_channel_mismatch_between_input_and_weights() {
    let (_g, ctx) = gpu();
    let d = desc(2, 1, (8, 8), 4, (3, 3), (1, 1), Padding::Valid);
    let [x, _, b, y] = tensors(ctx, &d);
    // Weights made for 3 input channels.
    let w3 = nan_tensor(ctx, &[4, 3, 3, 3]);
    let e = expect_err(
        conv::conv2d_forward(ctx, &d, &x, &w3, Some(&b), Activation::Relu, &y),
        "take 3 input channels but the input has c_in = 1",
    );
    assert!(matches!(e, Error::Shape { .. }), "{e:?}");
    let dw = nan_tensor(ctx, &[4, 1, 3, 3]);
    expect_err(
        conv::conv2d_backward(ctx, &d, &x, &w3, &y, None, &dw, None),
        "input channels",
    );
    // An input with 3 channels against a description of 1.
    let x3 = nan_tensor(ctx, &[2, 3, 8, 8]);
    let w1 = nan_tensor(ctx, &d.weight_shape());
    expect_err(
        conv::conv2d_forward(ctx, &d, &x3, &w1, None, Activation::Identity, &y),
        "channel count (c_in) is 3, expected 1",
    );
}

#[test]
fn rejects_wrong_tensor_sizes() {
    let (_g, ctx) = gpu();
    let d = desc(2, 3, (8, 8), 4, (3, 3), (1, 1), Padding::Same);
    let [x, w, b, y] = tensors(ctx, &d);
    let fwd = |x: &Tensor, w: &Tensor, b: &Tensor, y: &Tensor| {
        conv::conv2d_forward(ctx, &d, x, w, Some(b), Activation::Identity, y)
    };
    expect_err(
        fwd(&x, &w, &b, &nan_tensor(ctx, &[2, 4, 6, 6])),
        "output height is 6, expected 8",
    );
    expect_err(
        fwd(&nan_tensor(ctx, &[2 * 3 * 64 - 1]), &w, &b, &y),
        "x has shape [383]",
    );
    expect_err(
        fwd(&x, &w, &nan_tensor(ctx, &[5]), &y),
        "expected [4] (one per output channel)",
    );
    expect_err(
        fwd(&x, &nan_tensor(ctx, &[4, 3, 3, 2]), &b, &y),
        "kernel width is 2, expected 3",
    );
    let e = expect_err(
        fwd(
            &Tensor::zeros(ctx, &d.input_shape(), DType::U32).unwrap(),
            &w,
            &b,
            &y,
        ),
        "x",
    );
    assert!(matches!(e, Error::DType { .. }), "{e:?}");
    let bwd = |dy: &Tensor, dx: Option<&Tensor>, dw: &Tensor, db: Option<&Tensor>| {
        conv::conv2d_backward(ctx, &d, &x, &w, dy, dx, dw, db)
    };
    expect_err(
        bwd(&nan_tensor(ctx, &[2, 4, 8, 7]), None, &w, None),
        "dy has shape",
    );
    expect_err(
        bwd(&y, Some(&nan_tensor(ctx, &[2, 3, 8])), &w, None),
        "dx has shape",
    );
    expect_err(bwd(&y, None, &nan_tensor(ctx, &[4, 3, 3]), None), "dw has shape");
    expect_err(bwd(&y, None, &w, Some(&nan_tensor(ctx, &[3]))), "db has shape");
    // im2col/col2im ranges and scratch sizes.
    let col = nan_tensor(ctx, &[10]);
    expect_err(
        conv::im2col(ctx, &d, &x, &col, 0, 1, false),
        "col has 10 elements",
    );
    expect_err(conv::col2im(ctx, &d, &col, &x, 1, 2), "not a non-empty range");
}

/// Times forward + backward of the seed CNN's first layer (batch 32, 1 -> 32
/// channels, 3x3, 28x28, valid, bias, ReLU; backward without dx as for an input
/// layer, and with dx for comparison). Median of 10 single-submission runs
/// after warm-up; also each dispatch alone, and a fill of y as a yardstick for
/// the machine's load (see BENCHMARKS.md).
/// `cargo test --release --test kernels conv::bench -- --ignored --nocapture`
#[test]
#[ignore = "a timing harness: run by .ci/run with --ignored, and by hand with --nocapture"]
fn bench() {
    let (_g, ctx) = gpu_exclusive();
    let d = desc(32, 1, (28, 28), 32, (3, 3), (1, 1), Padding::Valid);
    let (x, w, b) = inputs(&d, 1);
    let out = d.output_shape().unwrap();
    let (xt, wt, bt) = (
        upload(ctx, &x, &d.input_shape()),
        upload(ctx, &w, &d.weight_shape()),
        upload(ctx, &b, &[d.c_out]),
    );
    let yt = nan_tensor(ctx, &out);
    let dyt = upload(ctx, &uniform(&mut rng(2), numel(&out), -1.0, 1.0), &out);
    let (dxt, dwt, dbt) = (
        nan_tensor(ctx, &d.input_shape()),
        nan_tensor(ctx, &d.weight_shape()),
        nan_tensor(ctx, &[d.c_out]),
    );
    let fwd = conv::conv2d_forward(ctx, &d, &xt, &wt, Some(&bt), Activation::Relu, &yt).unwrap();
    let bwd = conv::conv2d_backward(ctx, &d, &xt, &wt, &dyt, None, &dwt, Some(&dbt)).unwrap();
    let bwd_dx = conv::conv2d_backward(ctx, &d, &xt, &wt, &dyt, Some(&dxt), &dwt, Some(&dbt)).unwrap();
    let time = |name: &str, lists: &[&[wgml::gpu::Dispatch]]| {
        let all: Vec<_> = lists.iter().flat_map(|l| l.iter()).collect();
        for _ in 0..3 {
            ctx.run(&all).unwrap();
        }
        let mut ms: Vec<f64> = (0..10)
            .map(|_| {
                let t = std::time::Instant::now();
                ctx.run(&all).unwrap();
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        ms.sort_by(f64::total_cmp);
        println!(
            "{name}: median {:.3} ms (min {:.3}, max {:.3}) over 10 runs, {} dispatches",
            ms[5],
            ms[0],
            ms[9],
            all.len()
        );
    };
    let fill = wgml::kernels::elementwise::fill(ctx, &yt, 1.0).unwrap();
    time("fill y", &[std::slice::from_ref(&fill)]);
    for d in fwd.iter().chain(bwd_dx.iter()) {
        time(d.kernel.entry, &[std::slice::from_ref(d)]);
    }
    // Both im2col forms on the forward's col (with the ones row), back to back.
    let colt = nan_tensor(ctx, &[d.n * (d.ckk() + 1) * numel(&out[2..])]);
    for form in [Im2colForm::Gather, Im2colForm::Scatter] {
        let a = conv::im2col_with(ctx, &d, &xt, &colt, 0, d.n, true, form).unwrap();
        time(&format!("im2col {form:?}"), &[std::slice::from_ref(&a)]);
    }
    time("forward", &[&fwd]);
    time("backward (dw, db)", &[&bwd]);
    time("forward + backward (dw, db)", &[&fwd, &bwd]);
    time("forward + backward (dx, dw, db)", &[&fwd, &bwd_dx]);
}
