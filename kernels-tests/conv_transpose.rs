//! The transposed convolution: `conv2d_backward_input` (its forward) against the
//! CPU twin on odd shapes; the layer's output on hand-computed cases (PyTorch's
//! `ConvTranspose2d` definition); a decoder of Conv2DTranspose layers trains equal
//! to the reference executor, whose gradients equal central differences; bad
//! geometry is an error naming the layer.

use wgml::kernels::conv::{self, Conv2dDesc, Padding};
use wgml::kernels::loss::Term;
use wgml::kernels::optim::Optimizer;
use wgml::nn::{Functional, Layer, LayerActivation};
use wgml::{Tensor, reference};

use crate::common::*;
use crate::conv::desc;

#[test]
fn backward_input_alone_equals_the_twin() {
    let (_g, ctx) = gpu();
    use Padding::*;
    let descs: [Conv2dDesc; 5] = [
        desc(1, 1, (1, 1), 1, (1, 1), (1, 1), Valid),
        desc(3, 2, (9, 7), 5, (3, 3), (2, 2), Same),
        desc(2, 4, (8, 11), 3, (5, 3), (1, 2), Explicit(2, 1)),
        desc(5, 1, (7, 7), 6, (2, 2), (2, 2), Valid),
        desc(2, 32, (14, 14), 64, (3, 3), (2, 2), Same),
    ];
    for (i, d) in descs.iter().enumerate() {
        let out = d.output_shape().unwrap();
        let mut r = rng(i as u64);
        let w = uniform(&mut r, d.weight_shape().iter().product(), -1.0, 1.0);
        let dy = uniform(&mut r, out.iter().product(), -1.0, 1.0);
        let mut want = vec![0.0; d.input_shape().iter().product()];
        reference::conv::conv2d_backward_input(d, &w, &dy, &mut want);
        let wt = Tensor::from_f32(ctx, &w, &d.weight_shape()).unwrap();
        let dyt = Tensor::from_f32(ctx, &dy, &out).unwrap();
        // Filled with garbage first: the launcher overwrites every element.
        let garbage = vec![7.0; want.len()];
        let dx = Tensor::from_f32(ctx, &garbage, &d.input_shape()).unwrap();
        let list = conv::conv2d_backward_input(ctx, d, &wt, &dyt, &dx).unwrap();
        ctx.run(&list.iter().collect::<Vec<_>>()).unwrap();
        assert_close(&format!("{d:?}"), &dx.to_f32(ctx).unwrap(), &want, 1e-5, 1e-5);
    }
}

fn transpose(filters: usize, k: usize, s: usize, padding: Padding, activation: LayerActivation) -> Layer {
    Layer::Conv2DTranspose {
        filters,
        kernel: (k, k),
        stride: (s, s),
        padding,
        activation,
        use_bias: true,
        trainable: true,
    }
}

/// One transposed convolution of `x` ([1, 2, 2]) by a 2×2 kernel of ones with no
/// bias, on the GPU and the reference path.
fn upsample(ctx: &wgml::Context, stride: usize) -> (Vec<f32>, Vec<f32>) {
    let layer = transpose(1, 2, stride, Padding::Valid, LayerActivation::Linear).without_bias();
    let f = Functional::new("x", &[1, 2, 2])
        .layer("t", layer, &["x"])
        .layer("flat", Layer::Flatten, &["t"])
        .loss_term("p", Term::SigmoidMean, &["flat"], 1.0);
    let mut model = f.compile(ctx, Optimizer::sgd(0.0, 0.0), 1).unwrap();
    let w = model
        .net
        .store
        .params
        .iter()
        .find(|p| p.name == "t.weight")
        .unwrap();
    w.value.write(ctx, &[1.0f32; 4]).unwrap();
    let x = [1.0, 2.0, 3.0, 4.0];
    let gpu = model.values(ctx, "t", &x, 1).unwrap();
    let mut cpu = model.net.reference(ctx).unwrap();
    let node = model.nodes["t"];
    let reference = cpu.eval_values(&x, 1).unwrap()[node].clone();
    (gpu, reference)
}

#[test]
fn the_output_is_pytorchs_conv_transpose() {
    let (_g, ctx) = gpu();
    // Stride 2 with a 2×2 kernel of ones: every pixel becomes a 2×2 block.
    let want2 = [
        1.0, 1.0, 2.0, 2.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 4.0, 3.0, 3.0, 4.0, 4.0,
    ];
    // Stride 1: overlapping blocks add up (torch.nn.functional.conv_transpose2d).
    let want1 = [1.0, 3.0, 2.0, 4.0, 10.0, 6.0, 3.0, 7.0, 4.0];
    for (stride, want) in [(2, &want2[..]), (1, &want1[..])] {
        let (gpu, cpu) = upsample(ctx, stride);
        assert_eq!(gpu, want, "GPU, stride {stride}");
        assert_eq!(cpu, want, "reference, stride {stride}");
    }
}

/// x [6] → Dense(18, tanh) → [2, 3, 3] → Conv2DTranspose(3, 3×3, stride 2, same,
/// tanh) [3, 6, 6] → Conv2DTranspose(2, 2×2, valid) [2, 7, 7] → Conv2DTranspose(1,
/// 3×3, padding 1) [1, 7, 7] → BCE against 0.3 everywhere.
fn decoder() -> Functional {
    Functional::new("x", &[6])
        .layer(
            "d",
            Layer::Dense {
                units: 18,
                activation: LayerActivation::Tanh,
                use_bias: true,
                trainable: true,
            },
            &["x"],
        )
        .op("r", wgml::nn::GraphOp::Reshape { shape: vec![2, 3, 3] }, &["d"])
        .layer(
            "t1",
            transpose(3, 3, 2, Padding::Same, LayerActivation::Tanh),
            &["r"],
        )
        .layer(
            "t2",
            transpose(2, 2, 1, Padding::Valid, LayerActivation::Linear),
            &["t1"],
        )
        .layer(
            "t3",
            transpose(1, 3, 1, Padding::Explicit(1, 1), LayerActivation::Linear),
            &["t2"],
        )
        .layer("flat", Layer::Flatten, &["t3"])
        .op(
            "target",
            wgml::nn::GraphOp::Constant {
                value: 0.3,
                shape: vec![49],
            },
            &[],
        )
        .loss_term("bce", Term::BceSum, &["flat", "target"], 1.0)
}

#[test]
fn a_transposed_convolution_decoder_trains_equal_to_the_reference() {
    let (_g, ctx) = gpu();
    let b = 3;
    let x = uniform(&mut rng(4), b * 6, -1.0, 1.0);
    let shapes: Vec<Vec<usize>> = {
        let g = decoder().graph().unwrap();
        ["t1", "t2", "t3"]
            .iter()
            .map(|n| g.graph.shape(g.node(n).unwrap()).to_vec())
            .collect()
    };
    assert_eq!(shapes, [vec![3, 6, 6], vec![2, 7, 7], vec![1, 7, 7]]);
    for optimizer in [Optimizer::adam(1e-2), Optimizer::sgd(0.05, 0.9)] {
        let mut model = decoder().compile(ctx, optimizer.clone(), 2).unwrap();
        let cpu = steps_equal_reference(ctx, &format!("{optimizer:?}"), &mut model.net, &x, b, 3);
        params_match_reference(ctx, &format!("{optimizer:?}"), &model.net.store, &cpu, 1e-5, 1e-4);
        let w = model
            .net
            .store
            .params
            .iter()
            .find(|p| p.name == "t1.weight")
            .unwrap();
        assert_eq!(
            w.shape,
            [2, 3, 3, 3],
            "PyTorch's ConvTranspose2d layout [in, out, kh, kw]"
        );
    }
    let model = decoder().compile(ctx, Optimizer::sgd(1.0, 0.0), 6).unwrap();
    // A step of 1e-2: the loss (about 34 per sample) is f32, so smaller steps drown
    // the difference in rounding; tanh's curvature over 1e-2 is far below the
    // tolerance.
    let names = ["t1.weight", "t1.bias", "t3.weight", "d.weight"];
    gradients_match_differences(ctx, &model.net, &names, &x, b, 1e-2, 2e-4, 3e-3);
}

#[test]
fn geometry_without_an_output_is_an_error_naming_the_layer() {
    let f = Functional::new("x", &[1, 1, 1])
        .layer(
            "up",
            transpose(1, 3, 1, Padding::Explicit(2, 2), LayerActivation::Linear),
            &["x"],
        )
        .layer("flat", Layer::Flatten, &["up"])
        .loss_term("p", Term::SigmoidMean, &["flat"], 1.0);
    let e = f.graph().unwrap_err().to_string();
    assert!(e.contains("'up'") && e.contains("leaves no output"), "{e}");
    let flat = Functional::new("x", &[4])
        .layer(
            "up",
            transpose(1, 3, 1, Padding::Valid, LayerActivation::Linear),
            &["x"],
        )
        .loss_term("p", Term::SigmoidMean, &["up"], 1.0);
    let e = flat.graph().unwrap_err().to_string();
    assert!(
        e.contains("'up'") && e.contains("[channels, height, width]"),
        "{e}"
    );
}
