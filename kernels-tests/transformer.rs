//! Transformer layers on the GPU: an encoder block (learned positions,
//! MultiHeadAttention with a residual connection, LayerNormalization, a per-token
//! Dense, GlobalAveragePooling1D) trains equal to the reference executor step by
//! step, planned as lavapipe and as real GPUs plan; causal self-attention and
//! cross-attention to another sequence too; the reference gradients of every
//! projection, the position embedding and the normalization equal central
//! differences.

use wgml::gpu::AdapterClass;
use wgml::kernels::optim::{EpsilonPlacement, Optimizer};
use wgml::nn::functional::TermKind;
use wgml::nn::{Functional, GraphOp, Layer, LayerActivation};

use crate::common::*;

const TOKENS: usize = 5;
const FEATURES: usize = 8;

fn dense(units: usize, activation: LayerActivation) -> Layer {
    Layer::Dense {
        units,
        activation,
        use_bias: true,
        trainable: true,
    }
}

/// x [5, 8] → pos → att (2 heads, key_dim 3, value_dim 4; self-attention, or
/// attending to the raw input with `cross`; `dropout` of its weights) → Add(att,
/// pos) → ln → ff (Dense 8 per token, tanh) → pool (mean over tokens) → out
/// Dense(3); loss: mean(out²).
fn encoder(causal: bool, cross: bool, dropout: f32) -> Functional {
    let attention = Layer::MultiHeadAttention {
        num_heads: 2,
        key_dim: 3,
        value_dim: Some(4),
        use_bias: true,
        causal,
        dropout,
        num_key_value_heads: None,
        rope_theta: None,
        rope_scaling: None,
        output_bias: None,
        qk_norm: None,
        trainable: true,
    };
    let att_inputs: &[&str] = if cross { &["pos", "x"] } else { &["pos"] };
    Functional::new("x", &[TOKENS, FEATURES])
        .layer("pos", Layer::AddPositionEmbedding { trainable: true }, &["x"])
        .layer("att", attention, att_inputs)
        .op("res", GraphOp::Add, &["att", "pos"])
        .layer("ln", Layer::layer_norm(), &["res"])
        .layer("ff", dense(FEATURES, LayerActivation::Tanh), &["ln"])
        .layer("pool", Layer::GlobalAveragePooling1D, &["ff"])
        .layer("out", dense(3, LayerActivation::Linear), &["pool"])
        .op("sq", GraphOp::Square, &["out"])
        .op("loss", GraphOp::Mean, &["sq"])
        .loss_term("loss", TermKind::Value, &["loss"], 1.0)
}

#[test]
fn an_encoder_block_trains_equal_to_the_reference() {
    let (_g, ctx) = gpu();
    let _restore = PlanAs(ctx);
    let b = 3;
    let x = uniform(&mut rng(5), b * TOKENS * FEATURES, -1.0, 1.0);
    let cases = [
        (false, false, 0.0),
        (true, false, 0.0),
        (false, true, 0.0),
        (true, false, 0.3),
    ];
    // Adam divides each gradient by its own magnitude, so an element whose gradient
    // is near zero (the key bias's is zero up to rounding: it adds q·b to a whole
    // row of scores, which softmax ignores) turns rounding noise into ±lr steps.
    // A larger epsilon keeps the comparison about the arithmetic, not the noise.
    let adam = Optimizer::Adam {
        lr: 1e-2,
        beta1: 0.9,
        beta2: 0.999,
        epsilon: 1e-4,
        weight_decay: 0.0,
        epsilon_placement: EpsilonPlacement::Keras,
    };
    for class in [AdapterClass::Native, AdapterClass::GpuWithoutSubgroups] {
        ctx.set_adapter_class(class);
        for (causal, cross, dropout) in cases {
            for optimizer in [adam.clone(), Optimizer::sgd(0.1, 0.9)] {
                let what = format!("{class:?} causal {causal} cross {cross} dropout {dropout} {optimizer:?}");
                let mut model = encoder(causal, cross, dropout)
                    .compile(ctx, optimizer, 3)
                    .unwrap();
                let cpu = steps_equal_reference(ctx, &what, &mut model.net, &x, b, 3);
                params_match_reference(ctx, &what, &model.net.store, &cpu, 1e-5, 1e-4);
            }
        }
    }
}

/// Heads wider than the fused kernels take (65 query/key values) run the unfused
/// attention (per-head copies, batched matmuls, the weights kept): it trains equal
/// to the reference too, causal and not, as lavapipe and GPUs plan it.
#[test]
fn wide_heads_take_the_unfused_attention_and_train_equal_to_the_reference() {
    let (_g, ctx) = gpu();
    let _restore = PlanAs(ctx);
    let b = 2;
    let x = uniform(&mut rng(7), b * 3 * 4, -1.0, 1.0);
    for class in [AdapterClass::Native, AdapterClass::GpuWithoutSubgroups] {
        ctx.set_adapter_class(class);
        for causal in [false, true] {
            let attention = Layer::MultiHeadAttention {
                num_heads: 2,
                key_dim: wgml::kernels::attention::MAX_HEAD_DIM + 1,
                value_dim: Some(3),
                use_bias: true,
                causal,
                dropout: 0.0,
                num_key_value_heads: None,
                rope_theta: None,
                rope_scaling: None,
                output_bias: None,
                qk_norm: None,
                trainable: true,
            };
            let f = Functional::new("x", &[3, 4])
                .layer("att", attention, &["x"])
                .layer("pool", Layer::GlobalAveragePooling1D, &["att"])
                .op("sq", GraphOp::Square, &["pool"])
                .op("loss", GraphOp::Mean, &["sq"])
                .loss_term("loss", TermKind::Value, &["loss"], 1.0);
            let what = format!("{class:?} causal {causal}");
            let mut model = f.compile(ctx, Optimizer::sgd(0.1, 0.9), 5).unwrap();
            let cpu = steps_equal_reference(ctx, &what, &mut model.net, &x, b, 2);
            params_match_reference(ctx, &what, &model.net.store, &cpu, 1e-5, 1e-4);
        }
    }
}

/// A vision transformer's front: a strided convolution cuts the image into patches
/// (`[channels, 3, 3]`), Reshape and Permute([2, 1]) make them tokens `[9,
/// channels]`, attention and pooling follow; and a 3-D Permute([3, 1, 2]) of an
/// image (two swaps on the GPU). Trains equal to the reference, whose permutation
/// moves each value by its index directly.
#[test]
fn permuted_patches_train_equal_to_the_reference() {
    let (_g, ctx) = gpu();
    let _restore = PlanAs(ctx);
    let b = 2;
    let x = uniform(&mut rng(17), b * 2 * 6 * 6, -1.0, 1.0);
    let conv = Layer::Conv2D {
        filters: 4,
        kernel: (2, 2),
        stride: (2, 2),
        padding: wgml::kernels::conv::Padding::Valid,
        activation: LayerActivation::Gelu,
        use_bias: true,
        trainable: true,
    };
    let vit = Functional::new("x", &[2, 6, 6])
        .layer("patches", conv, &["x"])
        .op("flat", GraphOp::Reshape { shape: vec![4, 9] }, &["patches"])
        .layer("tokens", Layer::Permute { dims: vec![2, 1] }, &["flat"])
        .layer(
            "pos",
            Layer::AddPositionEmbedding { trainable: true },
            &["tokens"],
        )
        .layer("att", Layer::attention(2, 3), &["pos"])
        .layer("pool", Layer::GlobalAveragePooling1D, &["att"])
        .layer("out", dense(3, LayerActivation::Linear), &["pool"])
        .op("sq", GraphOp::Square, &["out"])
        .op("loss", GraphOp::Mean, &["sq"])
        .loss_term("loss", TermKind::Value, &["loss"], 1.0);
    let image = Functional::new("x", &[2, 6, 6])
        .layer("p", Layer::Permute { dims: vec![3, 1, 2] }, &["x"])
        .op("rows", GraphOp::Reshape { shape: vec![6, 12] }, &["p"])
        .layer("d", dense(3, LayerActivation::Tanh), &["rows"])
        .op("sq", GraphOp::Square, &["d"])
        .op("loss", GraphOp::Mean, &["sq"])
        .loss_term("loss", TermKind::Value, &["loss"], 1.0);
    for class in [AdapterClass::Native, AdapterClass::GpuWithoutSubgroups] {
        ctx.set_adapter_class(class);
        for (what, f) in [("vit", &vit), ("image", &image)] {
            let what = format!("{class:?} {what}");
            let mut model = f.clone().compile(ctx, Optimizer::sgd(0.1, 0.9), 9).unwrap();
            let cpu = steps_equal_reference(ctx, &what, &mut model.net, &x, b, 3);
            params_match_reference(ctx, &what, &model.net.store, &cpu, 1e-5, 1e-4);
        }
    }
    let built = image.graph().unwrap();
    assert_eq!(built.graph.shape(built.node("p").unwrap()), [6, 2, 6]);
    let bad = |dims: Vec<usize>| {
        Functional::new("x", &[2, 6, 6])
            .layer("p", Layer::Permute { dims }, &["x"])
            .op("m", GraphOp::Mean, &["p"])
            .loss_term("m", TermKind::Value, &["m"], 1.0)
            .graph()
            .err()
            .map(|e| e.to_string())
            .unwrap()
    };
    for dims in [vec![1, 2], vec![1, 1, 2], vec![0, 1, 2], vec![1, 2, 4]] {
        let e = bad(dims.clone());
        assert!(
            e.contains("layer 'p'") && e.contains("is not a permutation"),
            "{dims:?}: {e}"
        );
    }
}

/// Token ids through an Embedding, learned positions, causal attention with
/// dropout on its weights and a per-token Dense train equal to the reference; ids
/// computed by trainable layers are refused (ids carry no gradient).
#[test]
fn embedded_tokens_train_equal_to_the_reference() {
    let (_g, ctx) = gpu();
    let _restore = PlanAs(ctx);
    let b = 3;
    // Ids 0..=9 of a vocabulary of 11 (10 is never used), repeats included.
    let x: Vec<f32> = (0..b * 7).map(|i| ((i * 7 + i / 3) % 10) as f32).collect();
    // A fifth of the attention weights dropped (fused on GPUs, the dropout kernel
    // on the unfused path's weights elsewhere).
    let causal = Layer::MultiHeadAttention {
        num_heads: 2,
        key_dim: 4,
        value_dim: None,
        use_bias: true,
        causal: true,
        dropout: 0.2,
        num_key_value_heads: None,
        rope_theta: None,
        rope_scaling: None,
        output_bias: None,
        qk_norm: None,
        trainable: true,
    };
    let lm = Functional::new("ids", &[7])
        .layer(
            "embed",
            Layer::Embedding {
                input_dim: 11,
                output_dim: 6,
                mask_id: None,
                trainable: true,
            },
            &["ids"],
        )
        .layer("pos", Layer::AddPositionEmbedding { trainable: true }, &["embed"])
        .layer("att", causal, &["pos"])
        .layer("ff", dense(5, LayerActivation::Gelu), &["att"])
        .op("sq", GraphOp::Square, &["ff"])
        .op("loss", GraphOp::Mean, &["sq"])
        .loss_term("loss", TermKind::Value, &["loss"], 1.0);
    for class in [AdapterClass::Native, AdapterClass::GpuWithoutSubgroups] {
        ctx.set_adapter_class(class);
        let what = format!("{class:?}");
        let mut model = lm.clone().compile(ctx, Optimizer::sgd(0.1, 0.9), 3).unwrap();
        // Tables of ±0.05 (Keras' Embedding init) give outputs near 1e-3 and a loss
        // near 1e-5, too small for the comparison to see a wrong gradient: start
        // from tables 10× larger, ±0.5, so the loss and its updates are large.
        let larger: Vec<_> = model
            .net
            .store
            .download(ctx)
            .unwrap()
            .into_iter()
            .map(|(n, s, v)| {
                let k = if n == "embed.weight" || n == "pos.weight" {
                    10.0
                } else {
                    1.0
                };
                (n, s, v.iter().map(|x| k * x).collect())
            })
            .collect();
        model.net.store.load(ctx, &larger).unwrap();
        let cpu = steps_equal_reference(ctx, &what, &mut model.net, &x, b, 3);
        params_match_reference(ctx, &what, &model.net.store, &cpu, 1e-5, 1e-4);
    }
    let computed_ids = Functional::new("x", &[7])
        .layer("d", dense(7, LayerActivation::Relu), &["x"])
        .layer(
            "embed",
            Layer::Embedding {
                input_dim: 11,
                output_dim: 2,
                mask_id: None,
                trainable: true,
            },
            &["d"],
        )
        .op("m", GraphOp::Mean, &["embed"])
        .loss_term("m", TermKind::Value, &["m"], 1.0);
    // Refused when the step is planned (at compile or at the first step).
    let e = match computed_ids.compile(ctx, Optimizer::sgd(0.1, 0.0), 1) {
        Err(e) => e,
        Ok(mut model) => model.net.train_step(ctx, &x, b, 0.1).unwrap_err(),
    }
    .to_string();
    assert!(
        e.contains("layer 'embed'") && e.contains("ids carry no gradient"),
        "{e}"
    );
}

/// A language model whose head reads its token embedding (tied, as GPT-2's):
/// one parameter, updated once, whose gradient sums the embedding's and the
/// head's; GPU steps equal the reference executor's (plain and fused-Adam
/// planning alike), and the summed gradient equals central differences.
#[test]
fn a_head_tied_to_the_embedding_trains_equal_to_the_reference() {
    let (_g, ctx) = gpu();
    let _restore = PlanAs(ctx);
    let b = 2;
    let x: Vec<f32> = (0..b * 5).map(|i| ((i * 3 + 1) % 9) as f32).collect();
    let lm = Functional::new("ids", &[5])
        .layer(
            "wte",
            Layer::Embedding {
                input_dim: 9,
                output_dim: 6,
                mask_id: None,
                trainable: true,
            },
            &["ids"],
        )
        .layer("wpe", Layer::AddPositionEmbedding { trainable: true }, &["wte"])
        .layer("att", Layer::attention(2, 3), &["wpe"])
        .tied_layer(
            "head",
            Layer::Dense {
                units: 9,
                activation: LayerActivation::Linear,
                use_bias: false,
                trainable: true,
            },
            &["att"],
            &[("weight", "wte.weight")],
        )
        .op("sq", GraphOp::Square, &["head"])
        .op("loss", GraphOp::Mean, &["sq"])
        .loss_term("loss", TermKind::Value, &["loss"], 1.0);
    for optimizer in [Optimizer::adam(1e-2), Optimizer::sgd(0.1, 0.9)] {
        let what = format!("{optimizer:?}");
        let mut model = lm.clone().compile(ctx, optimizer, 3).unwrap();
        assert!(
            model.net.store.params.iter().all(|p| p.name != "head.weight"),
            "{what}: the head has no weight of its own"
        );
        let cpu = steps_equal_reference(ctx, &what, &mut model.net, &x, b, 3);
        params_match_reference(ctx, &what, &model.net.store, &cpu, 1e-5, 1e-4);
    }
    let model = lm.compile(ctx, Optimizer::sgd(1.0, 0.0), 3).unwrap();
    gradients_match_differences(ctx, &model.net, &["wte.weight"], &x, b, 1e-3, 2e-4, 5e-3);
}

#[test]
fn encoder_gradients_equal_central_differences() {
    let (_g, ctx) = gpu();
    let b = 2;
    let x = uniform(&mut rng(9), b * TOKENS * FEATURES, -1.0, 1.0);
    for (causal, cross, dropout) in [(false, false, 0.0), (true, true, 0.0), (true, false, 0.3)] {
        let model = encoder(causal, cross, dropout)
            .compile(ctx, Optimizer::sgd(1.0, 0.0), 4)
            .unwrap();
        let names = [
            "pos.weight",
            "att.query.weight",
            "att.query.bias",
            "att.key.weight",
            "att.key.bias",
            "att.value.weight",
            "att.output.weight",
            "ln.weight",
            "ln.bias",
            "ff.weight",
        ];
        gradients_match_differences(ctx, &model.net, &names, &x, b, 1e-3, 2e-4, 5e-3);
    }
}

#[test]
fn transformer_layers_check_their_inputs() {
    let (_g, ctx) = gpu();
    let compile = |f: Functional| {
        f.compile(ctx, Optimizer::adam(1e-3), 1)
            .err()
            .map(|e| e.to_string())
    };
    let loss = |f: Functional, out: &str| {
        f.op("m", GraphOp::Mean, &[out])
            .loss_term("m", TermKind::Value, &["m"], 1.0)
    };
    // Heads that do not divide... are impossible by construction; images are not sequences.
    let e = compile(loss(
        Functional::new("x", &[1, 4, 4]).layer("att", Layer::attention(2, 2), &["x"]),
        "att",
    ))
    .unwrap();
    assert!(
        e.contains("layer 'att'") && e.contains("sequence [tokens, features]"),
        "{e}"
    );
    let e = compile(loss(
        Functional::new("x", &[4, 4]).layer("att", Layer::attention(0, 2), &["x"]),
        "att",
    ))
    .unwrap();
    assert!(e.contains("at least 1 head"), "{e}");
    let e = compile(loss(
        Functional::new("x", &[4, 4])
            .layer("y", dense(3, LayerActivation::Linear), &["x"])
            .layer("att", Layer::attention(1, 2), &["x", "y", "x", "y"]),
        "att",
    ))
    .unwrap();
    assert!(e.contains("[query, value, key]"), "{e}");
    // Causal attention needs as many queries as keys.
    let causal = Layer::MultiHeadAttention {
        num_heads: 1,
        key_dim: 2,
        value_dim: None,
        use_bias: false,
        causal: true,
        dropout: 0.0,
        num_key_value_heads: None,
        rope_theta: None,
        rope_scaling: None,
        output_bias: None,
        qk_norm: None,
        trainable: true,
    };
    let e = compile(loss(
        Functional::new("x", &[4, 4])
            .op("short", GraphOp::Slice { start: 0, len: 2 }, &["x"])
            .layer("att", causal, &["short", "x"]),
        "att",
    ))
    .unwrap();
    assert!(e.contains("as many queries as keys"), "{e}");
    let e = compile(loss(
        Functional::new("x", &[4]).layer("pool", Layer::GlobalAveragePooling1D, &["x"]),
        "pool",
    ))
    .unwrap();
    assert!(e.contains("GlobalAveragePooling1D expects a sequence"), "{e}");
}

/// A Llama block: token embedding → RMSNormalization → causal grouped-query
/// attention (4 query heads sharing 2 key and value heads, rotary positions, no
/// biases) → + → RMSNormalization → SiLU-gated MLP (gate·up → down) → + →
/// RMSNormalization → per-token head; loss: mean of squares.
fn llama_block() -> Functional {
    let plain = |units: usize, activation: LayerActivation| Layer::Dense {
        units,
        activation,
        use_bias: false,
        trainable: true,
    };
    let rms = || Layer::RMSNormalization {
        epsilon: 1e-5,
        trainable: true,
    };
    let attention = Layer::MultiHeadAttention {
        num_heads: 4,
        key_dim: 4,
        value_dim: None,
        use_bias: false,
        causal: true,
        dropout: 0.0,
        num_key_value_heads: Some(2),
        rope_theta: Some(10_000.0),
        rope_scaling: None,
        output_bias: None,
        qk_norm: None,
        trainable: true,
    };
    Functional::new("ids", &[6])
        .layer(
            "embed",
            Layer::Embedding {
                input_dim: 11,
                output_dim: 8,
                mask_id: None,
                trainable: true,
            },
            &["ids"],
        )
        .layer("norm1", rms(), &["embed"])
        .layer("att", attention, &["norm1"])
        .op("res1", GraphOp::Add, &["att", "embed"])
        .layer("norm2", rms(), &["res1"])
        .layer("gate", plain(12, LayerActivation::Silu), &["norm2"])
        .layer("up", plain(12, LayerActivation::Linear), &["norm2"])
        .op("gated", GraphOp::Multiply, &["gate", "up"])
        .layer("down", plain(8, LayerActivation::Linear), &["gated"])
        .op("res2", GraphOp::Add, &["down", "res1"])
        .layer("norm", rms(), &["res2"])
        .layer("head", plain(5, LayerActivation::Linear), &["norm"])
        .op("sq", GraphOp::Square, &["head"])
        .op("loss", GraphOp::Mean, &["sq"])
        .loss_term("loss", TermKind::Value, &["loss"], 1.0)
}

/// Scales the Llama block's query and key projections 4×, so its attention
/// weights are far from uniform and the queries' and keys' gradients (through
/// the rotary turns) are large enough for the comparisons to see; and its
/// embedding 10×.
fn sharpen(ctx: &wgml::Context, net: &mut wgml::nn::GraphModel) {
    let sharper: Vec<_> = net
        .store
        .download(ctx)
        .unwrap()
        .into_iter()
        .map(|(n, s, v)| {
            let k = match n.as_str() {
                "att.query.weight" | "att.key.weight" => 4.0,
                // Rows 10× Keras' ±0.05: RMS normalization bends sharply near 0,
                // where central differences would need a far finer step.
                "embed.weight" => 10.0,
                _ => 1.0,
            };
            (n, s, v.iter().map(|x| k * x).collect())
        })
        .collect();
    net.store.load(ctx, &sharper).unwrap();
}

/// The Llama block trains equal to the reference executor, planned as lavapipe
/// and as real GPUs plan, and the reference gradients of its scales, grouped
/// projections, gate and embedding equal central differences.
#[test]
fn a_llama_block_trains_equal_to_the_reference() {
    let (_g, ctx) = gpu();
    let _restore = PlanAs(ctx);
    let b = 3;
    let x: Vec<f32> = (0..b * 6).map(|i| ((i * 5 + i / 4) % 11) as f32).collect();
    for class in [AdapterClass::Native, AdapterClass::GpuWithoutSubgroups] {
        ctx.set_adapter_class(class);
        let what = format!("llama {class:?}");
        let mut model = llama_block().compile(ctx, Optimizer::sgd(0.5, 0.9), 3).unwrap();
        sharpen(ctx, &mut model.net);
        let cpu = steps_equal_reference(ctx, &what, &mut model.net, &x, b, 3);
        params_match_reference(ctx, &what, &model.net.store, &cpu, 1e-5, 1e-4);
    }
    let mut model = llama_block().compile(ctx, Optimizer::sgd(1.0, 0.0), 4).unwrap();
    sharpen(ctx, &mut model.net);
    let names = [
        "norm1.weight",
        "att.query.weight",
        "att.key.weight",
        "att.value.weight",
        "att.output.weight",
        "gate.weight",
        "up.weight",
        "norm.weight",
        "embed.weight",
    ];
    gradients_match_differences(ctx, &model.net, &names, &x, b, 1e-3, 2e-4, 5e-3);
    // Grouped heads must divide the query heads.
    let mut bad = llama_block();
    bad = bad.layer(
        "att2",
        Layer::MultiHeadAttention {
            num_heads: 4,
            key_dim: 4,
            value_dim: None,
            use_bias: false,
            causal: true,
            dropout: 0.0,
            num_key_value_heads: Some(3),
            rope_theta: None,
            rope_scaling: None,
            output_bias: None,
            qk_norm: None,
            trainable: true,
        },
        &["norm"],
    );
    let e = bad
        .compile(ctx, Optimizer::sgd(1.0, 0.0), 1)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("num_key_value_heads 3 must divide num_heads 4"), "{e}");
}
