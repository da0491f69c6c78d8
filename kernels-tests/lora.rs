//! Low-rank adapters (`wgml::nn::lora`): an encoder block with adapters on its
//! attention's query and value projections and on a Dense layer, and a new head
//! trained in full, trains equal to the reference executor (dropout on the
//! adapters' inputs included) while every base tensor keeps its bits; the
//! adapters' reference gradients equal central differences; a fresh adapter
//! leaves the base model's outputs as they were, and the merged weights give the
//! adapted model's outputs without adapters; a Sequential MLP with adapters on
//! every Dense layer but its head trains as the reference; a checkpoint keeps the
//! adapters; targets that name nothing are refused by name.

use wgml::data::Dataset;
use wgml::gpu::AdapterClass;
use wgml::graph::params::NamedValues;
use wgml::graph::reference::ReferenceExecutor;
use wgml::kernels::optim::Optimizer;
use wgml::nn::functional::TermKind;
use wgml::nn::model::Batch;
use wgml::nn::{Functional, GraphOp, Layer, LayerActivation, LoraConfig, Loss, Sequential, lora};

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

/// x [5, 8] → pos → att (2 heads of 3) → Add(att, pos) → ln → ff (Dense 8 per
/// token, tanh) → pool → out Dense(3); loss: mean(out²).
fn encoder(lora: Option<LoraConfig>) -> Functional {
    let mut f = Functional::new("x", &[TOKENS, FEATURES])
        .layer("pos", Layer::AddPositionEmbedding { trainable: true }, &["x"])
        .layer("att", Layer::attention(2, 3), &["pos"])
        .op("res", GraphOp::Add, &["att", "pos"])
        .layer("ln", Layer::layer_norm(), &["res"])
        .layer("ff", dense(FEATURES, LayerActivation::Tanh), &["ln"])
        .layer("pool", Layer::GlobalAveragePooling1D, &["ff"])
        .layer("out", dense(3, LayerActivation::Linear), &["pool"])
        .op("sq", GraphOp::Square, &["out"])
        .op("loss", GraphOp::Mean, &["sq"])
        .loss_term("loss", TermKind::Value, &["loss"], 1.0);
    f.lora = lora;
    f
}

/// Rank 2, α 3, on the query and value projections and `ff` (the value's of
/// rank 3, `ff`'s α 5); `out` trains in full.
fn adapters(dropout: f32) -> LoraConfig {
    LoraConfig {
        rank: 2,
        alpha: 3.0,
        dropout,
        targets: vec!["query".into(), "value".into(), "ff".into()],
        train: vec!["out".into()],
        // The value's adapter of rank 3, the Dense's scaled by 5/2 (PEFT's patterns).
        rank_pattern: [("value".to_string(), 3)].into(),
        alpha_pattern: [("ff".to_string(), 5.0)].into(),
    }
}

/// `values` with every adapter's B drawn from U(−0.5, 0.5) (a fresh B is zero,
/// which leaves A no gradient).
fn with_random_b(values: &[NamedValues], seed: u64) -> Vec<NamedValues> {
    let mut r = rng(seed);
    values
        .iter()
        .map(|(n, s, v)| {
            let v = if n.ends_with(lora::LORA_B) {
                uniform(&mut r, v.len(), -0.5, 0.5)
            } else {
                v.clone()
            };
            (n.clone(), s.clone(), v)
        })
        .collect()
}

#[test]
fn adapters_train_equal_to_the_reference_and_the_base_keeps_its_bits() {
    let (_g, ctx) = gpu();
    let _restore = PlanAs(ctx);
    let b = 3;
    let x = uniform(&mut rng(5), b * TOKENS * FEATURES, -1.0, 1.0);
    for class in [AdapterClass::Native, AdapterClass::GpuWithoutSubgroups] {
        ctx.set_adapter_class(class);
        for dropout in [0.0, 0.25] {
            for optimizer in [Optimizer::adam(1e-2), Optimizer::sgd(0.1, 0.9)] {
                let what = format!("{class:?} dropout {dropout} {optimizer:?}");
                let mut model = encoder(Some(adapters(dropout)))
                    .compile(ctx, optimizer, 3)
                    .unwrap();
                let mut trainable: Vec<&str> = model
                    .net
                    .store
                    .params
                    .iter()
                    .filter(|p| p.trainable)
                    .map(|p| p.name.as_str())
                    .collect();
                trainable.sort();
                assert_eq!(
                    trainable,
                    [
                        "att.query.lora_A.weight",
                        "att.query.lora_B.weight",
                        "att.value.lora_A.weight",
                        "att.value.lora_B.weight",
                        "ff.lora_A.weight",
                        "ff.lora_B.weight",
                        "out.bias",
                        "out.weight",
                    ],
                    "{what}"
                );
                // The query's and value's adapters read one input: one mask (PEFT's
                // c_attn draws one); ff's has its own.
                let masks = model
                    .net
                    .graph
                    .nodes
                    .iter()
                    .filter(|n| matches!(n.op, wgml::graph::Op::Dropout { .. }))
                    .count();
                assert_eq!(masks, if dropout > 0.0 { 2 } else { 0 }, "{what}");
                let start = with_random_b(&model.net.store.download(ctx).unwrap(), 6);
                model.net.store.load(ctx, &start).unwrap();
                let cpu = steps_equal_reference(ctx, &what, &mut model.net, &x, b, 3);
                params_match_reference(ctx, &what, &model.net.store, &cpu, 1e-5, 1e-4);
                let after = model.net.store.download(ctx).unwrap();
                for ((name, _, was), (_, _, now)) in start.iter().zip(&after) {
                    let trains = name.contains(".lora_") || name.starts_with("out.");
                    assert_eq!(was != now, trains, "{what}: {name} after training");
                }
            }
        }
    }
}

#[test]
fn adapter_gradients_equal_central_differences() {
    let (_g, ctx) = gpu();
    let b = 2;
    let x = uniform(&mut rng(9), b * TOKENS * FEATURES, -1.0, 1.0);
    let model = encoder(Some(adapters(0.0)))
        .compile(ctx, Optimizer::sgd(1.0, 0.0), 4)
        .unwrap();
    let values = with_random_b(&model.net.store.download(ctx).unwrap(), 10);
    model.net.store.load(ctx, &values).unwrap();
    let names = [
        "att.query.lora_A.weight",
        "att.query.lora_B.weight",
        "att.value.lora_A.weight",
        "att.value.lora_B.weight",
        "ff.lora_A.weight",
        "ff.lora_B.weight",
    ];
    gradients_match_differences(ctx, &model.net, &names, &x, b, 1e-3, 2e-4, 5e-3);
}

/// The tensors of `into` with the base tensors (every name `from` has) of `from`.
fn base_into(into: &[NamedValues], from: &[NamedValues]) -> Vec<NamedValues> {
    into.iter()
        .map(|t| from.iter().find(|f| f.0 == t.0).unwrap_or(t).clone())
        .collect()
}

#[test]
fn a_fresh_adapter_keeps_the_base_outputs_and_merging_keeps_the_adapted_ones() {
    let (_g, ctx) = gpu();
    let b = 4;
    let x = uniform(&mut rng(11), b * TOKENS * FEATURES, -1.0, 1.0);
    let mut base = encoder(None).compile(ctx, Optimizer::sgd(0.1, 0.0), 1).unwrap();
    let base_values = base.net.store.download(ctx).unwrap();
    let base_out = base.values(ctx, "out", &x, b).unwrap();
    let config = adapters(0.0);
    let mut adapted = encoder(Some(config.clone()))
        .compile(ctx, Optimizer::adam(5e-2), 2)
        .unwrap();
    let fresh = adapted.net.store.download(ctx).unwrap();
    // PEFT's start: A from U(±1/√in) (Kaiming-uniform, a = √5), B zero.
    for (name, shape, v) in fresh.iter().filter(|t| t.0.contains(".lora_")) {
        if name.ends_with(lora::LORA_B) {
            assert!(v.iter().all(|&x| x == 0.0), "{name} starts at zero");
        } else {
            let limit = 1.0 / (shape[1] as f32).sqrt();
            let top = v.iter().fold(0.0f32, |m, x| m.max(x.abs()));
            assert!(
                top <= limit && top > 0.7 * limit,
                "{name}: |A| up to {top}, limit {limit}"
            );
        }
    }
    let start = base_into(&fresh, &base_values);
    adapted.net.store.load(ctx, &start).unwrap();
    assert_close(
        "a fresh adapter's outputs",
        &adapted.values(ctx, "out", &x, b).unwrap(),
        &base_out,
        1e-6,
        1e-6,
    );
    for _ in 0..4 {
        adapted.net.train_step(ctx, &x, b, 5e-2).unwrap();
    }
    let trained = adapted.net.store.download(ctx).unwrap();
    let moved = trained
        .iter()
        .zip(&start)
        .filter(|(now, was)| now.2 != was.2)
        .count();
    assert_eq!(moved, 6 + 2, "every adapter and the head move");
    let adapted_out = adapted.values(ctx, "out", &x, b).unwrap();
    assert!(adapted_out != base_out, "training changed the outputs");
    // Folded into the base weights, the adapters give the same outputs without them.
    let merged = lora::merged(&trained, &config).unwrap();
    assert_eq!(merged.len(), base_values.len());
    base.net.store.load(ctx, &merged).unwrap();
    assert_close(
        "the merged model's outputs",
        &base.values(ctx, "out", &x, b).unwrap(),
        &adapted_out,
        1e-5,
        1e-4,
    );
}

fn mlp(lora: Option<LoraConfig>) -> Sequential {
    let mut s = Sequential::new(&[1, 28, 28])
        .add(Layer::Flatten)
        .add(Layer::dense(32, LayerActivation::Relu))
        .add(Layer::dense(16, LayerActivation::Relu))
        .add(Layer::dense(10, LayerActivation::Softmax));
    s.lora = lora;
    s
}

/// PyTorch's module indices: Flatten 0, Linear 1, ReLU 2, Linear 3, ReLU 4,
/// Linear 5: all-linear adapts 1 and 3, not the head 5.
#[test]
fn a_sequential_model_with_adapters_on_every_hidden_layer_trains_as_the_reference() {
    let (_g, ctx) = gpu();
    let loss = Loss::SparseCategoricalCrossentropy;
    let config = LoraConfig {
        dropout: 0.1,
        ..LoraConfig::new(4, &[lora::ALL_LINEAR])
    };
    let spec = mlp(Some(config));
    let summary = spec.summary(loss).unwrap();
    let adapters = 4 * 784 + 32 * 4 + 4 * 32 + 16 * 4;
    assert_eq!(
        summary.total_params() - summary.non_trainable_params(),
        adapters,
        "{summary}"
    );
    assert_eq!(
        summary.non_trainable_params(),
        784 * 32 + 32 + 32 * 16 + 16 + 16 * 10 + 10,
        "{summary}"
    );
    let mut model = spec.compile(ctx, loss, Optimizer::adam(1e-2), 7).unwrap();
    let (x, b) = trains_as_the_reference(ctx, &mut model);
    // The checkpoint describes the adapters: the model it rebuilds predicts the same.
    let path = fresh_dir("lora-checkpoint").join("mlp.safetensors");
    wgml::checkpoint::save_model(&path, ctx, &model, "mlp", &[]).unwrap();
    let (mut loaded, _) = wgml::checkpoint::load_model(ctx, &path).unwrap();
    assert_eq!(loaded.spec, model.spec);
    assert_eq!(
        loaded.predict(ctx, &x, b).unwrap(),
        model.predict(ctx, &x, b).unwrap()
    );
}

/// With every adapter's B drawn at random, three steps of 8 embedded digits on
/// the GPU equal the reference executor's (losses to 1e-5, parameters to 1e-4 of
/// their scale); returns the last batch's images and size.
fn trains_as_the_reference(ctx: &wgml::Context, model: &mut wgml::nn::Model) -> (Vec<f32>, usize) {
    let values = with_random_b(&model.store.download(ctx).unwrap(), 8);
    model.store.load(ctx, &values).unwrap();
    let data = Dataset::mnist_10k().unwrap();
    let mut cpu = ReferenceExecutor::from_model(model, ctx).unwrap();
    let (mut x, mut l, mut v) = (Vec::new(), Vec::new(), Vec::new());
    let b = 8;
    for step in 0..3 {
        let idx: Vec<usize> = (step * b..(step + 1) * b).collect();
        data.train.gather(&idx, &mut x, &mut l, &mut v);
        model.acc.reset(ctx).unwrap();
        let batch = Batch {
            x: &x,
            labels: &l,
            values: &v,
            len: b,
        };
        model.train_step(ctx, &batch, 1e-2, |_, _| {}).unwrap();
        let gpu_loss = model.acc.read(ctx).unwrap().0 / b as f64;
        let cpu_loss = cpu.train_step(&x, &l, &v, b, 1e-2).unwrap();
        let rel = (gpu_loss - cpu_loss).abs() / cpu_loss.abs();
        assert!(
            rel < 1e-5,
            "step {step}: GPU loss {gpu_loss} vs reference {cpu_loss}"
        );
    }
    for p in &model.store.params {
        let want = &cpu.params()[p.node];
        let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        assert_close(&p.name, &p.value.to_f32(ctx).unwrap(), want, 1e-4 * scale, 1e-3);
    }
    (x, b)
}

/// Conv2D(8, 3×3, relu) → MaxPool → Flatten → Dense(10): modules 0 (and its ReLU
/// 1), 2, 3, 4.
fn cnn(lora: Option<LoraConfig>) -> Sequential {
    let mut s = Sequential::new(&[1, 28, 28])
        .add(Layer::conv2d(8, 3, LayerActivation::Relu))
        .add(Layer::MaxPool2D {
            pool: (2, 2),
            stride: (2, 2),
        })
        .add(Layer::Flatten)
        .add(Layer::dense(10, LayerActivation::Softmax));
    s.lora = lora;
    s
}

/// PEFT's convolutional adapter: A a 3×3 convolution to r channels, B a 1×1 one
/// back. It trains as the reference with the head trained in full, and merged
/// into the kernel it gives the adapted model's predictions.
#[test]
fn a_convolution_takes_an_adapter_of_convolutions() {
    let (_g, ctx) = gpu();
    let loss = Loss::SparseCategoricalCrossentropy;
    let config = LoraConfig {
        rank: 3,
        alpha: 4.0,
        dropout: 0.2,
        targets: vec!["0".into()],
        train: vec!["4".into()],
        rank_pattern: Default::default(),
        alpha_pattern: Default::default(),
    };
    let mut model = cnn(Some(config.clone()))
        .compile(ctx, loss, Optimizer::sgd(0.05, 0.9), 5)
        .unwrap();
    let shapes: Vec<(String, Vec<usize>, bool)> = model
        .store
        .params
        .iter()
        .map(|p| (p.name.clone(), p.value.shape().to_vec(), p.trainable))
        .collect();
    for (name, shape, trains) in [
        ("0.lora_A.weight", vec![3, 1, 3, 3], true),
        ("0.lora_B.weight", vec![8, 3, 1, 1], true),
        ("0.weight", vec![8, 1, 3, 3], false),
        ("4.weight", vec![10, 1352], true),
    ] {
        assert!(
            shapes.contains(&(name.to_string(), shape.clone(), trains)),
            "{name} {shape:?} trainable {trains} in {shapes:?}"
        );
    }
    let (x, b) = trains_as_the_reference(ctx, &mut model);
    let merged = lora::merged(&model.store.download(ctx).unwrap(), &config).unwrap();
    let mut plain = cnn(None)
        .compile(ctx, loss, Optimizer::sgd(0.05, 0.9), 5)
        .unwrap();
    plain.store.load(ctx, &merged).unwrap();
    assert_close(
        "the merged CNN's probabilities",
        &plain.predict(ctx, &x, b).unwrap(),
        &model.predict(ctx, &x, b).unwrap(),
        1e-6,
        1e-4,
    );
}

#[test]
fn targets_that_name_nothing_are_refused_by_name() {
    let (_g, ctx) = gpu();
    let message = |config: LoraConfig| {
        encoder(Some(config))
            .compile(ctx, Optimizer::adam(1e-3), 1)
            .expect_err("refused")
            .to_string()
    };
    let m = message(LoraConfig::new(2, &["c_attn"]));
    assert!(
        m.contains("'c_attn'") && m.contains("att.query") && m.contains("ff"),
        "{m}"
    );
    let m = message(LoraConfig {
        train: vec!["head".into()],
        ..LoraConfig::new(2, &["ff"])
    });
    assert!(m.contains("'head'"), "{m}");
    let m = message(LoraConfig {
        rank_pattern: [("mlp".to_string(), 3)].into(),
        ..LoraConfig::new(2, &["ff"])
    });
    assert!(
        m.contains("pattern key 'mlp' names no module with an adapter"),
        "{m}"
    );
    let m = message(LoraConfig::new(0, &["ff"]));
    assert!(m.contains("rank"), "{m}");
    // Adapter tensors are not a layer trained in full.
    let m = message(LoraConfig {
        train: vec!["query".into()],
        ..LoraConfig::new(2, &["query"])
    });
    assert!(m.contains("'query'") && m.contains("trainable"), "{m}");
    // A head tied to the embedding has no weight of its own to adapt.
    let tied = Functional::new("ids", &[4])
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
        .tied_layer(
            "head",
            Layer::Dense {
                units: 9,
                activation: LayerActivation::Linear,
                use_bias: false,
                trainable: true,
            },
            &["wte"],
            &[("weight", "wte.weight")],
        )
        .op("sq", GraphOp::Square, &["head"])
        .op("loss", GraphOp::Mean, &["sq"])
        .loss_term("loss", TermKind::Value, &["loss"], 1.0);
    let m = Functional {
        lora: Some(LoraConfig::new(2, &["head"])),
        ..tied
    }
    .compile(ctx, Optimizer::adam(1e-3), 1)
    .expect_err("refused")
    .to_string();
    assert!(m.contains("'wte.weight'") && m.contains("tied"), "{m}");
    // A Flatten has no product to adapt.
    let conv = Sequential {
        lora: Some(LoraConfig::new(2, &["2"])),
        ..Sequential::new(&[1, 6, 6])
            .add(Layer::conv2d(2, 3, LayerActivation::Relu))
            .add(Layer::Flatten)
            .add(Layer::dense(3, LayerActivation::Softmax))
    };
    let m = conv
        .compile(ctx, Loss::SparseCategoricalCrossentropy, Optimizer::adam(1e-3), 1)
        .expect_err("refused")
        .to_string();
    assert!(m.contains("'2'") && m.contains("modules: 0, 3"), "{m}");
}
