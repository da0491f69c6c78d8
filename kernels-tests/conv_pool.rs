//! Fused conv + activation + 2×2 max-pool kernels against
//! `wgml::reference::conv_pool`, and that twin against the unfused references
//! (conv2d, activation, max-pool) it replaces.

use wgml::kernels::conv::{Activation, Padding};
use wgml::kernels::conv_pool::{self, ConvPoolDesc};
use wgml::kernels::pool::Pool2dDesc;
use wgml::{Context, DType, Error, Tensor, reference};

use crate::common::*;

/// A fused pair over `crate::conv::desc`'s convolution (square stride).
#[allow(clippy::too_many_arguments)]
fn desc(
    n: usize,
    c_in: usize,
    hw: (usize, usize),
    c_out: usize,
    k: (usize, usize),
    stride: usize,
    padding: Padding,
    activation: Activation,
) -> ConvPoolDesc {
    ConvPoolDesc {
        conv: crate::conv::desc(n, c_in, hw, c_out, k, (stride, stride), padding),
        activation,
    }
}

/// The seed CNN's layer; more than 16 taps (two tap blocks) and more than 32
/// channels (a partial second block); 17 channels (one word of the second half);
/// stride 2 with padding; odd convolution outputs (the last row/column is not
/// pooled); the smallest case; a position count that is not a multiple of 8.
fn sweep() -> Vec<ConvPoolDesc> {
    use Activation::*;
    use Padding::*;
    vec![
        desc(3, 1, (28, 28), 32, (3, 3), 1, Valid, Relu),
        desc(2, 2, (11, 13), 40, (3, 3), 1, Same, Tanh),
        desc(5, 3, (9, 10), 5, (3, 3), 2, Explicit(1, 1), Sigmoid),
        desc(7, 1, (7, 9), 17, (2, 3), 1, Valid, Identity),
        desc(1, 1, (2, 2), 1, (1, 1), 1, Valid, Relu),
        desc(3, 4, (6, 5), 33, (1, 2), 1, Valid, Relu),
    ]
}

fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

fn upload(ctx: &Context, data: &[f32], shape: &[usize]) -> Tensor {
    Tensor::from_f32(ctx, data, shape).unwrap()
}

struct Forward {
    y: Vec<f32>,
    idx: Vec<u32>,
}

fn inputs(d: &ConvPoolDesc, seed: u64) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let c = &d.conv;
    let mut r = rng(seed);
    let x = uniform(&mut r, numel(&c.input_shape()), -1.0, 1.0);
    let w = uniform(&mut r, numel(&c.weight_shape()), -1.0, 1.0);
    let b = uniform(&mut r, c.c_out, -1.0, 1.0);
    (x, w, b)
}

fn gpu_forward(ctx: &Context, d: &ConvPoolDesc, x: &[f32], w: &[f32], b: &[f32]) -> Forward {
    let c = &d.conv;
    let xt = upload(ctx, x, &c.input_shape());
    let wt = upload(ctx, w, &c.weight_shape());
    let bt = upload(ctx, b, &[c.c_out]);
    let yt = nan_tensor(ctx, &d.pooled_shape().unwrap());
    let shape = d.index_shape().unwrap();
    let it = Tensor::from_u32(ctx, &vec![u32::MAX; numel(&shape)], &shape).unwrap();
    let dispatch = conv_pool::conv_pool_forward(ctx, d, &xt, &wt, &bt, &yt, &it).unwrap();
    ctx.run(&[&dispatch]).unwrap();
    Forward {
        y: yt.to_f32(ctx).unwrap(),
        idx: it.to_u32(ctx).unwrap(),
    }
}

#[test]
fn forward_matches_reference() {
    let (_g, ctx) = gpu();
    for (case, d) in sweep().iter().enumerate() {
        let (x, w, b) = inputs(d, 100 + case as u64);
        let got = gpu_forward(ctx, d, &x, &w, &b);
        let [n, c_out, ph, pw] = d.pooled_shape().unwrap();
        let mut y = vec![0.0; n * c_out * ph * pw];
        let mut idx = vec![0; numel(&d.index_shape().unwrap())];
        reference::conv_pool::conv_pool_forward(d, &x, &w, &b, &mut y, &mut idx);
        assert_close(&format!("case {case} {d:?}: y"), &got.y, &y, 2e-5, 1e-4);

        // Windows must agree wherever the reference's best two differ clearly
        // (near-ties may round either way in f32).
        let z = reference::conv_pool::pre_activation(d, &x, &w, &b);
        let (oh, ow) = d.conv.out_hw().unwrap();
        let layout = reference::conv_pool::IndexLayout::new(d);
        let mut checked = 0;
        for img in 0..n {
            for o in 0..c_out {
                for i in 0..ph {
                    for j in 0..pw {
                        let k = ((img * c_out + o) * ph + i) * pw + j;
                        let want_pass = match d.activation {
                            Activation::Identity => true,
                            Activation::Relu => got.y[k] > 0.0,
                            Activation::Sigmoid | Activation::Tanh => false,
                        };
                        assert_eq!(
                            layout.passes(&got.idx, img, o, i, j),
                            want_pass,
                            "case {case}: gradient bit of (n {img}, c {o}, {i}, {j}), y {}",
                            got.y[k]
                        );
                        let at = |win: u32| {
                            let (a, bb) = ((win / 2) as usize, (win % 2) as usize);
                            z[((img * c_out + o) * oh + 2 * i + a) * ow + 2 * j + bb]
                        };
                        let mut v: Vec<f32> = (0..4).map(at).collect();
                        v.sort_by(|a, b| b.total_cmp(a));
                        if v[0] - v[1] < 1e-4 {
                            continue;
                        }
                        checked += 1;
                        let want = layout.window(&idx, img, o, i, j);
                        let have = layout.window(&got.idx, img, o, i, j);
                        assert_eq!(have, want, "case {case}: window of (n {img}, c {o}, {i}, {j})");
                    }
                }
            }
        }
        assert!(
            checked * 10 >= n * c_out * ph * pw * 9,
            "case {case}: too few clear windows"
        );
    }
}

#[test]
fn backward_matches_reference_and_overwrites() {
    let (_g, ctx) = gpu();
    for (case, d) in sweep().iter().enumerate() {
        let c = &d.conv;
        let (x, w, b) = inputs(d, 200 + case as u64);
        let fwd = gpu_forward(ctx, d, &x, &w, &b);
        let pooled = d.pooled_shape().unwrap();
        let dy = uniform(&mut rng(300 + case as u64), numel(&pooled), -1.0, 1.0);
        let xt = upload(ctx, &x, &c.input_shape());
        let dyt = upload(ctx, &dy, &pooled);
        let yt = upload(ctx, &fwd.y, &pooled);
        let it = Tensor::from_u32(ctx, &fwd.idx, &d.index_shape().unwrap()).unwrap();
        let dwt = nan_tensor(ctx, &c.weight_shape());
        let dbt = nan_tensor(ctx, &[c.c_out]);
        let list = conv_pool::conv_pool_backward(ctx, d, &xt, &dyt, &yt, &it, &dwt, &dbt).unwrap();
        let refs: Vec<_> = list.iter().collect();
        ctx.run(&refs).unwrap();
        ctx.run(&refs).unwrap();

        let mut dw = vec![0.0; numel(&c.weight_shape())];
        let mut db = vec![0.0; c.c_out];
        reference::conv_pool::conv_pool_backward(d, &x, &dy, &fwd.y, &fwd.idx, &mut dw, &mut db);
        let what = format!("case {case} {d:?}");
        assert_close(&format!("{what}: dw"), &dwt.to_f32(ctx).unwrap(), &dw, 1e-4, 1e-4);
        assert_close(&format!("{what}: db"), &dbt.to_f32(ctx).unwrap(), &db, 1e-4, 1e-4);
    }
}

/// The twin equals what it replaces: conv2d(act) → max-pool forward, and
/// max-pool backward → activation backward → conv2d backward (dw, db).
#[test]
fn reference_equals_unfused_layers() {
    for (case, d) in sweep().iter().enumerate() {
        let c = &d.conv;
        let (x, w, b) = inputs(d, 400 + case as u64);
        let conv_out = c.output_shape().unwrap();
        let mut a = vec![0.0; numel(&conv_out)];
        reference::conv::conv2d_forward(c, &x, &w, Some(&b), d.activation, &mut a);
        let pool = Pool2dDesc {
            padding: (0, 0),
            ..Pool2dDesc::square(c.n, c.c_out, conv_out[2], conv_out[3], 2)
        };
        let pooled = d.pooled_shape().unwrap();
        let mut y_unfused = vec![0.0; numel(&pooled)];
        let mut pool_idx = vec![0; numel(&pooled)];
        reference::pool::max_pool2d_forward(&pool, &a, &mut y_unfused, &mut pool_idx);

        let mut y = vec![0.0; numel(&pooled)];
        let mut idx = vec![0; numel(&d.index_shape().unwrap())];
        reference::conv_pool::conv_pool_forward(d, &x, &w, &b, &mut y, &mut idx);
        assert_close(&format!("case {case}: y"), &y, &y_unfused, 1e-6, 1e-6);

        let dy = uniform(&mut rng(500 + case as u64), numel(&pooled), -1.0, 1.0);
        let mut da = vec![0.0; numel(&conv_out)];
        reference::pool::max_pool2d_backward(&pool, &dy, &pool_idx, &mut da);
        let mut dz = vec![0.0; numel(&conv_out)];
        reference::elementwise::activation_backward(d.activation, &a, &da, &mut dz);
        let mut dw_unfused = vec![0.0; w.len()];
        let mut db_unfused = vec![0.0; c.c_out];
        reference::conv::conv2d_backward(c, &x, &w, &dz, None, &mut dw_unfused, Some(&mut db_unfused));

        let mut dw = vec![0.0; w.len()];
        let mut db = vec![0.0; c.c_out];
        reference::conv_pool::conv_pool_backward(d, &x, &dy, &y, &idx, &mut dw, &mut db);
        assert_close(&format!("case {case}: dw"), &dw, &dw_unfused, 1e-5, 1e-5);
        assert_close(&format!("case {case}: db"), &db, &db_unfused, 1e-5, 1e-5);
    }
}

#[test]
fn bad_input_is_an_error() {
    let (_g, ctx) = gpu();
    let d = desc(2, 1, (8, 8), 4, (3, 3), 1, Padding::Valid, Activation::Relu);
    let c = &d.conv;
    let x = Tensor::zeros(ctx, &c.input_shape(), DType::F32).unwrap();
    let w = Tensor::zeros(ctx, &c.weight_shape(), DType::F32).unwrap();
    let b = Tensor::zeros(ctx, &[4], DType::F32).unwrap();
    let y = Tensor::zeros(ctx, &d.pooled_shape().unwrap(), DType::F32).unwrap();
    let idx = Tensor::zeros(ctx, &d.index_shape().unwrap(), DType::U32).unwrap();
    assert!(conv_pool::conv_pool_forward(ctx, &d, &x, &w, &b, &y, &idx).is_ok());

    // idx as f32, idx too small, y of the unpooled size, a 1x1 conv output.
    let idx_f32 = Tensor::zeros(ctx, &d.index_shape().unwrap(), DType::F32).unwrap();
    let err = conv_pool::conv_pool_forward(ctx, &d, &x, &w, &b, &y, &idx_f32).unwrap_err();
    assert!(matches!(err, Error::DType { .. }), "{err}");
    let small = Tensor::zeros(ctx, &[1], DType::U32).unwrap();
    let err = conv_pool::conv_pool_forward(ctx, &d, &x, &w, &b, &y, &small).unwrap_err();
    assert!(err.to_string().contains("four words per 32 channels"), "{err}");
    let big_y = Tensor::zeros(ctx, &c.output_shape().unwrap(), DType::F32).unwrap();
    let err = conv_pool::conv_pool_forward(ctx, &d, &x, &w, &b, &big_y, &idx).unwrap_err();
    assert!(err.to_string().contains("pooled height"), "{err}");
    let tiny = desc(1, 1, (3, 3), 1, (3, 3), 1, Padding::Valid, Activation::Relu);
    let err = tiny.pooled_shape().unwrap_err();
    assert!(err.to_string().contains("smaller than the 2x2"), "{err}");
    let dw_wrong = Tensor::zeros(ctx, &[4, 1, 3, 2], DType::F32).unwrap();
    let err = conv_pool::conv_pool_backward(ctx, &d, &x, &y, &y, &idx, &dw_wrong, &b).unwrap_err();
    assert!(err.to_string().contains("kernel width"), "{err}");
}
