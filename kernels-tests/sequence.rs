//! A class label per position: under sparse categorical cross-entropy a model
//! whose output is `[T, V]` takes T labels per sample (Keras' `[batch, T]` labels
//! for `[batch, T, V]` outputs), and its loss and accuracy are means over every
//! token. A small causal language model trains equal to the reference executor
//! step by step, as lavapipe and as GPUs plan it, and learns its data's rule
//! through `fit`; data with another number of labels per sample is refused.

use std::ops::ControlFlow;

use rand::SeedableRng;
use wgml::data::{Split, Targets};
use wgml::gpu::AdapterClass;
use wgml::graph::Loss;
use wgml::graph::reference::ReferenceExecutor;
use wgml::kernels::optim::Optimizer;
use wgml::nn::generate::{self, Sampling};
use wgml::nn::model::{Batch, ModelSpec};
use wgml::nn::{Functional, GraphOp, Layer, LayerActivation};
use wgml::train::{FitConfig, fit};

use crate::common::*;

/// Tokens per sample and the vocabulary.
const T: usize = 6;
const V: usize = 9;

/// ids [T] → Embedding(V, 8) → learned positions → attention (2 heads of 4;
/// causal unless said otherwise) → Add → LayerNormalization → Dense(V, softmax)
/// per token.
fn language_model(causal: bool) -> ModelSpec {
    language_model_with_rows(causal, V)
}

/// [`language_model`] with an Embedding of `rows` rows (the head still gives V).
fn language_model_with_rows(causal: bool, rows: usize) -> ModelSpec {
    let attention = Layer::MultiHeadAttention {
        num_heads: 2,
        key_dim: 4,
        value_dim: None,
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
    ModelSpec::Functional(
        Functional::new("ids", &[T])
            .layer(
                "embed",
                Layer::Embedding {
                    input_dim: rows,
                    output_dim: 8,
                    mask_id: None,
                    trainable: true,
                },
                &["ids"],
            )
            .layer("pos", Layer::AddPositionEmbedding { trainable: true }, &["embed"])
            .layer("att", attention, &["pos"])
            .op("res", GraphOp::Add, &["pos", "att"])
            .layer("ln", Layer::layer_norm(), &["res"])
            .layer(
                "head",
                Layer::Dense {
                    units: V,
                    activation: LayerActivation::Softmax,
                    use_bias: true,
                    trainable: true,
                },
                &["ln"],
            )
            .supervised("head", Loss::SparseCategoricalCrossentropy),
    )
}

/// `n` sequences of T + 1 tokens following `next = (prev + 2) mod V` from random
/// starts: the first T are a sample, the last T its labels (each token's next).
fn sequences(n: usize, seed: u64) -> Split {
    let starts = uniform(&mut rng(seed), n, 0.0, V as f32);
    let (mut x, mut labels) = (Vec::new(), Vec::new());
    for s in starts {
        let tokens: Vec<u32> = (0..=T as u32).map(|t| (s as u32 + 2 * t) % V as u32).collect();
        x.extend(tokens[..T].iter().map(|&t| t as f32));
        labels.extend(&tokens[1..]);
    }
    Split {
        x,
        sample_len: T,
        y: Targets::Classes {
            labels,
            classes: V,
            positions: T,
        },
    }
}

#[test]
fn a_language_model_trains_per_token_equal_to_the_reference() {
    let (_g, ctx) = gpu();
    let _restore = PlanAs(ctx);
    let b = 4;
    let data = sequences(b, 3);
    for class in [AdapterClass::Native, AdapterClass::GpuWithoutSubgroups] {
        ctx.set_adapter_class(class);
        let mut model = language_model(true)
            .compile(ctx, Loss::SparseCategoricalCrossentropy, Optimizer::adam(0.01), 5)
            .unwrap();
        assert_eq!(model.label_positions(), T);
        assert_eq!(model.output_dim(), T * V);
        model.check_data(&data).unwrap();
        let mut cpu = ReferenceExecutor::from_model(&model, ctx).unwrap();
        let (mut x, mut l, mut v) = (Vec::new(), Vec::new(), Vec::new());
        data.gather(&(0..b).collect::<Vec<_>>(), &mut x, &mut l, &mut v);
        assert_eq!(l.len(), b * T);
        let batch = Batch {
            x: &x,
            labels: &l,
            values: &v,
            len: b,
        };
        for step in 0..4 {
            // The GPU sums every token's loss; the mean is over b·T tokens.
            let (gpu, want) = step_losses(ctx, &mut model, &mut cpu, &batch, 0.01);
            assert!(
                (gpu - want).abs() < 1e-5 * want.abs(),
                "{class:?} step {step}: GPU loss {gpu} vs reference {want}"
            );
            if step == 0 {
                // A mean per token, not a sum per sample: near ln V (2.2) at the
                // start, where a sum over T tokens would be about 13.
                let ln_v = (V as f64).ln();
                assert!(want > 0.5 * ln_v && want < 2.0 * ln_v, "step 0 loss {want}");
            }
        }
        params_match_reference(ctx, &format!("{class:?}"), &model.store, &cpu, 1e-5, 1e-4);
    }
}

#[test]
fn a_language_model_learns_its_rule_with_fit_and_refuses_other_labels() {
    let (_g, ctx) = gpu();
    let train = sequences(256, 7);
    let test = sequences(64, 8);
    let mut model = language_model(true)
        .compile(ctx, Loss::SparseCategoricalCrossentropy, Optimizer::adam(0.02), 1)
        .unwrap();
    let config = FitConfig {
        epochs: 6,
        batch_size: 32,
        verbose: false,
        ..FitConfig::default()
    };
    let history = fit(&mut model, ctx, &train, &config).unwrap();
    let (first, last) = (&history.epochs[0], history.epochs.last().unwrap());
    assert!(last.loss < 0.5 * first.loss, "{:?}", history.epochs);
    let eval = wgml::train::evaluate(&mut model, ctx, &test, 16).unwrap();
    assert_eq!((eval.samples, eval.positions), (64, T));
    // No per-class tables for a label per position (a vocabulary squared).
    assert!(eval.confusion.is_empty() && eval.per_class.is_empty() && eval.macro_f1.is_none());
    assert!(eval.accuracy.unwrap() > 0.9, "{eval:?}");
    assert!(eval.loss < 0.5, "{eval:?}");

    // Greedy generation follows the rule past T tokens (the window slides).
    let mut seen = Vec::new();
    let mut r = rand::rngs::StdRng::seed_from_u64(0);
    let new = generate::generate(&mut model, ctx, &[1], 10, Sampling::GREEDY, &mut r, |t| {
        seen.push(t);
        ControlFlow::Continue(())
    })
    .unwrap();
    let want: Vec<u32> = (1..=10).map(|i| (1 + 2 * i) % V as u32).collect();
    assert_eq!((&new, &seen), (&want, &want));
    let e = generate::generate(&mut model, ctx, &[V as u32], 1, Sampling::GREEDY, &mut r, |_| {
        ControlFlow::Continue(())
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("outside the model's vocabulary of 9"), "{e}");
    let recipe = wgml::nn::zoo::cnn();
    let cnn = recipe
        .model
        .compile(ctx, recipe.loss, recipe.optimizer, 1)
        .unwrap();
    let e = generate::lm_shape(&cnn).unwrap_err().to_string();
    assert!(e.contains("needs a language model"), "{e}");
    // Attention that sees the whole window cannot continue a text.
    let mut seeing = language_model(false)
        .compile(ctx, Loss::SparseCategoricalCrossentropy, Optimizer::adam(0.02), 1)
        .unwrap();
    let e = generate::generate(&mut seeing, ctx, &[1], 1, Sampling::GREEDY, &mut r, |_| {
        ControlFlow::Continue(())
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("not causal") && e.contains("position"), "{e}");
    // The causal model's ops prove it causal; the other's do not.
    assert!(generate::causal_by_construction(&model));
    assert!(!generate::causal_by_construction(&seeing));
    // Run, the probe agrees: the causal model passes it, the other fails it.
    generate::probe_causal(&mut model, ctx).unwrap();
    let e = generate::probe_causal(&mut seeing, ctx).unwrap_err().to_string();
    assert!(e.contains("not causal"), "{e}");
    // on_token may stop the generation early.
    let mut calls = 0;
    let three = generate::generate(&mut model, ctx, &[1], 10, Sampling::GREEDY, &mut r, |_| {
        calls += 1;
        if calls == 3 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
    .unwrap();
    assert_eq!(three, want[..3]);
    // A model whose Embedding has 5 rows takes and draws ids 0-4 only, though
    // its head gives 9 (an id past the rows would fail the next step).
    let mut narrow = language_model_with_rows(true, 5)
        .compile(ctx, Loss::SparseCategoricalCrossentropy, Optimizer::adam(0.02), 1)
        .unwrap();
    let plain = Sampling {
        temperature: 1.0,
        top_k: None,
        top_p: None,
        vocabulary: None,
        repetition_penalty: None,
        no_repeat_ngram: None,
        min_p: None,
    };
    let drawn = generate::generate(&mut narrow, ctx, &[1], 40, plain, &mut r, |_| {
        ControlFlow::Continue(())
    })
    .unwrap();
    assert!(drawn.iter().all(|&id| id < 5), "{drawn:?}");
    // No bigram of the text repeats under no_repeat_ngram 2, greedy or not, and a
    // strong repetition penalty changes the greedy text.
    for temperature in [0.0, 1.0] {
        let rule = Sampling {
            temperature,
            no_repeat_ngram: Some(2),
            min_p: None,
            ..Sampling::GREEDY
        };
        let prompt = [1u32, 2, 1];
        let new = generate::generate(&mut narrow, ctx, &prompt, 12, rule, &mut r, |_| {
            ControlFlow::Continue(())
        })
        .unwrap();
        let text: Vec<u32> = prompt.iter().chain(&new).copied().collect();
        let mut pairs: Vec<&[u32]> = text.windows(2).collect();
        let all = pairs.len();
        pairs.sort();
        pairs.dedup();
        // 5 drawable tokens hold 25 bigrams: 14 tokens fit without a forced repeat.
        assert_eq!(pairs.len(), all, "temperature {temperature}: {text:?}");
    }
    let greedy = generate::generate(&mut narrow, ctx, &[1], 8, Sampling::GREEDY, &mut r, |_| {
        ControlFlow::Continue(())
    })
    .unwrap();
    let penalised = Sampling {
        repetition_penalty: Some(100.0),
        ..Sampling::GREEDY
    };
    let other = generate::generate(&mut narrow, ctx, &[1], 8, penalised, &mut r, |_| {
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_ne!(greedy, other, "a penalty of 100 changes the greedy text");

    // One label per sample (or any other count) does not fit a [T, V] output.
    let mut one = test.clone();
    one.y = Targets::Classes {
        labels: vec![0; 64],
        classes: V,
        positions: 1,
    };
    let e = model.check_data(&one).unwrap_err().to_string();
    assert!(
        e.contains("1 class label(s) per sample") && e.contains("takes 6"),
        "{e}"
    );
}

/// What does not fit is refused by name, before any step: a split whose labels
/// are not whole samples or not below its classes, token ids the Embedding has
/// no row for, a batch with one label per
/// sample for a `[T, V]` model (a short write would train on the last batch's
/// labels), and a `[C, H, W]` output under categorical cross-entropy.
#[test]
fn labels_that_do_not_fit_are_refused() {
    let (_g, ctx) = gpu();
    let mut model = language_model(true)
        .compile(ctx, Loss::SparseCategoricalCrossentropy, Optimizer::adam(0.01), 5)
        .unwrap();
    let good = sequences(4, 3);
    let broken = |labels: Vec<u32>, positions: usize| Split {
        y: Targets::Classes {
            labels,
            classes: V,
            positions,
        },
        ..good.clone()
    };
    for (split, want) in [
        (broken(vec![0; 4 * T - 1], T), "need 24 labels, the data has 23"),
        (broken(vec![0; 4 * T], 0), "with 0 label(s) each"),
        (
            broken(vec![V as u32; 4 * T], T),
            "label 9 at index 0 is not below the 9 classes",
        ),
    ] {
        let e = model.check_data(&split).unwrap_err().to_string();
        assert!(e.contains(want), "{want:?}: {e}");
    }
    // Token ids the Embedding has no row for (PyTorch's index out of range) are
    // refused by fit, evaluate and predict, with the input_dim they need.
    for (id, want) in [
        (
            V as f32 + 3.0,
            "Embedding 'embed' has a row for: it has 9 rows (ids 0 to 8); the largest id in the data is 12: give the layer an input_dim of at least 13",
        ),
        (1.5, "the data's value 1.5 (sample 2, position 1)"),
        (-1.0, "the data's value -1 (sample 2, position 1)"),
    ] {
        let mut split = good.clone();
        split.x[2 * T + 1] = id;
        let e = model.check_data(&split).unwrap_err().to_string();
        assert!(e.contains(want), "{want:?}: {e}");
        let e = model.predict(ctx, &split.x, 4).unwrap_err().to_string();
        assert!(e.contains(want), "{want:?}: {e}");
    }
    let (mut x, mut l, mut v) = (Vec::new(), Vec::new(), Vec::new());
    good.gather(&[0, 1], &mut x, &mut l, &mut v);
    let short = Batch {
        x: &x,
        labels: &l[..2],
        values: &v,
        len: 2,
    };
    let e = model
        .train_step(ctx, &short, 0.01, |_, _| {})
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("12 targets") && e.contains("the batch has 12 and 2"),
        "{e}"
    );
    assert_eq!(model.step, 0);
    let maps = Functional::new("x", &[2, 3, 3])
        .layer("conv", Layer::conv2d(4, 1, LayerActivation::Linear), &["x"])
        .supervised("conv", Loss::SparseCategoricalCrossentropy);
    let e = match ModelSpec::Functional(maps).compile(
        ctx,
        Loss::SparseCategoricalCrossentropy,
        Optimizer::adam(0.01),
        1,
    ) {
        Ok(_) => panic!("a [C, H, W] output was accepted"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("add Flatten"), "{e}");
}
