//! Padded sequences (`shaders/sequence.wgsl`, `kernels::sequence`, and padding in
//! attention): the lengths and pools against their CPU twins on odd shapes and
//! folded grids; classifiers on padded token ids (an Embedding with `mask_id`,
//! attention with and without a causal mask, either pool) train equal to the
//! reference executor as lavapipe and GPUs plan them; the padding changes no
//! output (a padded sample predicts what the same model without padding predicts
//! on its real tokens); what would read padding as tokens is refused.

use wgml::Tensor;
use wgml::gpu::AdapterClass;
use wgml::graph::Loss;
use wgml::graph::reference::ReferenceExecutor;
use wgml::kernels::optim::Optimizer;
use wgml::kernels::sequence::{self, SequenceDims, SequencePool};
use wgml::nn::model::{Batch, ModelSpec};
use wgml::nn::{Functional, GraphOp, Layer, LayerActivation};
use wgml::reference;

use crate::common::*;

/// The vocabulary of the models; id 0 pads.
const V: usize = 7;

#[test]
fn lengths_and_pools_match_their_twins() {
    let (_g, ctx) = gpu();
    for (n, &(batch, tokens, features)) in [(1usize, 1usize, 1usize), (5, 7, 3), (3, 40, 33), (300, 2, 5)]
        .iter()
        .enumerate()
    {
        // Ids 1..V with a tail of padding of every length in turn, and a pad id
        // inside some samples (an ordinary token there).
        let mut r = rng(20 + n as u64);
        let mut ids = uniform(&mut r, batch * tokens, 1.0, V as f32);
        ids.iter_mut().for_each(|v| *v = v.floor());
        for b in 0..batch {
            let len = (b * 3) % (tokens + 1);
            ids[b * tokens + len..(b + 1) * tokens].fill(0.0);
            if len >= 2 && b % 2 == 0 {
                ids[b * tokens] = 0.0;
            }
        }
        let want_lengths = reference::sequence::sequence_lengths(&ids, tokens, 0);
        let x = uniform(&mut r, batch * tokens * features, -2.0, 2.0);
        let dy = uniform(&mut r, batch * features, -1.0, 1.0);
        let d = SequenceDims {
            batch,
            tokens,
            features,
        };
        for fold in [0, 4] {
            ctx.set_max_groups_per_dim(fold);
            let t = |v: &[f32]| Tensor::from_f32(ctx, v, &[v.len()]).unwrap();
            let lengths = nan_tensor(ctx, &[batch]);
            ctx.run(&[&sequence::sequence_lengths(ctx, &t(&ids), tokens, 0, &lengths).unwrap()])
                .unwrap();
            let got = lengths.to_f32(ctx).unwrap();
            assert_eq!(got, want_lengths, "{d:?} fold {fold}: lengths");
            for pool in [SequencePool::Mean, SequencePool::Last, SequencePool::First] {
                for masked in [false, true] {
                    let l = masked.then_some(&lengths);
                    let lv = masked.then_some(&want_lengths[..]);
                    let (y, dx) = (nan_tensor(ctx, &[batch * features]), nan_tensor(ctx, &[x.len()]));
                    ctx.run(&[
                        &sequence::sequence_pool(ctx, &d, pool, &t(&x), l, &y).unwrap(),
                        &sequence::sequence_pool_backward(ctx, &d, pool, &t(&dy), l, &dx).unwrap(),
                    ])
                    .unwrap();
                    let what = |s: &str| format!("{d:?} {pool:?} masked {masked} fold {fold}: {s}");
                    let want_y = reference::sequence::sequence_pool(&d, pool, &x, lv);
                    assert_close(&what("y"), &y.to_f32(ctx).unwrap(), &want_y, 1e-6, 1e-5);
                    let want_dx = reference::sequence::sequence_pool_backward(&d, pool, &dy, lv);
                    assert_close(&what("dx"), &dx.to_f32(ctx).unwrap(), &want_dx, 1e-6, 1e-5);
                }
            }
        }
        ctx.set_max_groups_per_dim(0);
    }
    // The twins by hand: [a b 0] pads one token; [0 0 0] is all padding.
    let ids = [3.0, 5.0, 0.0, 0.0, 0.0, 0.0, 0.0, 2.0, 0.0];
    let lengths = reference::sequence::sequence_lengths(&ids, 3, 0);
    assert_eq!(lengths, [2.0, 0.0, 2.0]);
    let d = SequenceDims {
        batch: 3,
        tokens: 3,
        features: 1,
    };
    let x = [1.0, 2.0, 9.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0];
    let mean = reference::sequence::sequence_pool(&d, SequencePool::Mean, &x, Some(&lengths));
    assert_eq!(mean, [1.5, 0.0, 7.5]);
    let last = reference::sequence::sequence_pool(&d, SequencePool::Last, &x, Some(&lengths));
    assert_eq!(
        last,
        [2.0, 4.0, 8.0],
        "an all-padding sample gives its first token"
    );
    let dx =
        reference::sequence::sequence_pool_backward(&d, SequencePool::Mean, &[2.0, 1.0, 4.0], Some(&lengths));
    assert_eq!(dx, [1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 2.0, 2.0, 0.0]);
}

/// Token types (BERT's segments) from the separators before each token, against
/// the twin on odd shapes and folded grids (with 1, 2 and 3 types), and by hand.
#[test]
fn token_types_match_their_twin() {
    let (_g, ctx) = gpu();
    let separator = 3u32;
    for (n, &(batch, tokens)) in [(1usize, 1usize), (5, 7), (3, 300), (700, 2)].iter().enumerate() {
        let mut r = rng(40 + n as u64);
        let mut ids = uniform(&mut r, batch * tokens, 0.0, 6.0);
        ids.iter_mut().for_each(|v| *v = v.floor());
        for types in [1, 2, 3] {
            let want = reference::sequence::token_types(&ids, tokens, separator, types);
            for fold in [0, 4] {
                ctx.set_max_groups_per_dim(fold);
                let got = nan_tensor(ctx, &[ids.len()]);
                let x = Tensor::from_f32(ctx, &ids, &[ids.len()]).unwrap();
                ctx.run(&[&sequence::token_types(ctx, &x, tokens, separator, types, &got).unwrap()])
                    .unwrap();
                assert_eq!(
                    got.to_f32(ctx).unwrap(),
                    want,
                    "batch {batch} tokens {tokens} types {types} fold {fold}"
                );
            }
        }
        ctx.set_max_groups_per_dim(0);
    }
    // [CLS] a [SEP] b c [SEP] pad: 0 through the first [SEP], 1 after; a single
    // text [CLS] a b [SEP] is all 0 (its padding reads 1, and nothing reads
    // padding); a third segment stays 1 with 2 types.
    let ids = [
        2.0, 7.0, 3.0, 8.0, 9.0, 3.0, 0.0, /* */ 2.0, 7.0, 8.0, 3.0, 0.0, 0.0, 0.0,
    ];
    assert_eq!(
        reference::sequence::token_types(&ids, 7, 3, 2),
        [
            0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, /* */ 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0
        ]
    );
    assert_eq!(
        reference::sequence::token_types(&[3.0, 1.0, 3.0, 1.0, 3.0, 1.0], 6, 3, 3),
        [0.0, 1.0, 1.0, 2.0, 2.0, 2.0]
    );
    let x = Tensor::from_f32(ctx, &ids, &[14]).unwrap();
    let e = sequence::token_types(ctx, &x, 7, 3, 0, &nan_tensor(ctx, &[14])).unwrap_err();
    assert!(e.to_string().contains("give at least 1"), "{e}");
    let e = sequence::token_types(ctx, &x, 7, 3, 2, &nan_tensor(ctx, &[13])).unwrap_err();
    assert!(e.to_string().contains("types"), "{e}");
}

#[test]
fn pools_refuse_mismatched_tensors() {
    let (_g, ctx) = gpu();
    let d = SequenceDims {
        batch: 2,
        tokens: 3,
        features: 4,
    };
    let (x, y) = (nan_tensor(ctx, &[24]), nan_tensor(ctx, &[8]));
    let three = nan_tensor(ctx, &[3]);
    let e = sequence::sequence_pool(ctx, &d, SequencePool::Mean, &x, Some(&three), &y)
        .unwrap_err()
        .to_string();
    assert!(e.contains("3 lengths for 2 samples"), "{e}");
    let e = sequence::sequence_pool(ctx, &d, SequencePool::Last, &x, None, &three)
        .unwrap_err()
        .to_string();
    assert!(e.contains("y has 3 elements"), "{e}");
    let e = sequence::sequence_pool(ctx, &d, SequencePool::Last, &x, None, &x)
        .unwrap_err()
        .to_string();
    assert!(e.contains("y has 24 elements"), "{e}");
    let e = sequence::sequence_lengths(ctx, &x, 8, (1 << 24) + 1, &three)
        .unwrap_err()
        .to_string();
    assert!(e.contains("not exact as f32"), "{e}");
}

/// ids `[tokens]` → Embedding(V, 8, `mask_id`) + an Embedding(2, 8) of the
/// token types (BERT's segments, split at id 3) → learned positions → attention (2
/// heads of 4) → Add → LayerNormalization → Dense(8, relu) per token → `pool` →
/// Dense(2, softmax).
fn classifier(tokens: usize, mask_id: Option<u32>, causal: bool, pool: Layer) -> ModelSpec {
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
    let dense = |units, activation| Layer::Dense {
        units,
        activation,
        use_bias: true,
        trainable: true,
    };
    ModelSpec::Functional(
        Functional::new("ids", &[tokens])
            .layer(
                "embed",
                Layer::Embedding {
                    input_dim: V,
                    output_dim: 8,
                    mask_id,
                    trainable: true,
                },
                &["ids"],
            )
            // BERT's segments: id 3 separates them.
            .op(
                "types",
                GraphOp::TokenTypes {
                    separator: 3,
                    types: 2,
                    pad: mask_id,
                },
                &["ids"],
            )
            .layer(
                "type_embed",
                Layer::Embedding {
                    input_dim: 2,
                    output_dim: 8,
                    mask_id: None,
                    trainable: true,
                },
                &["types"],
            )
            .op("typed", GraphOp::Add, &["embed", "type_embed"])
            .layer("pos", Layer::AddPositionEmbedding { trainable: true }, &["typed"])
            .layer("att", attention, &["pos"])
            .op("res", GraphOp::Add, &["pos", "att"])
            .layer("ln", Layer::layer_norm(), &["res"])
            .layer("mlp", dense(8, LayerActivation::Relu), &["ln"])
            .layer("pool", pool, &["mlp"])
            .layer("head", dense(2, LayerActivation::Softmax), &["pool"])
            .supervised("head", Loss::SparseCategoricalCrossentropy),
    )
}

/// A token classifier of 3 tags (BERT's token classification head: a Dense
/// softmax on every token of [`classifier`]'s blocks, no pool).
fn tagger(tokens: usize, causal: bool) -> ModelSpec {
    let ModelSpec::Functional(f) = classifier(tokens, Some(0), causal, Layer::GlobalAveragePooling1D) else {
        unreachable!("classifier is functional")
    };
    let mut f = f;
    f.layers.retain(|l| l.name != "pool" && l.name != "head");
    let head = Layer::Dense {
        units: 3,
        activation: LayerActivation::Softmax,
        use_bias: true,
        trainable: true,
    };
    ModelSpec::Functional(
        f.layer("tags", head, &["mlp"])
            .supervised("tags", Loss::SparseCategoricalCrossentropy),
    )
}

/// Tags for samples of `lengths` real tokens in `tokens`: a tag for each real
/// token but every third (a word's second piece), no label on padding.
fn tags_of(lengths: &[usize], tokens: usize) -> Vec<u32> {
    lengths
        .iter()
        .flat_map(|&len| {
            (0..tokens).map(move |t| match t {
                t if t >= len || t % 3 == 2 => wgml::data::NO_LABEL,
                t => (t as u32 * 7 + len as u32) % 3,
            })
        })
        .collect()
}

/// A token classifier (a label per token, none on padding and on a word's
/// later pieces) trains equal to the reference executor under dynamic padding
/// (short batches run plans of 8 or 16 of its 20 tokens, their labels cut
/// with their tokens), and predicts and evaluates as the whole window does.
#[test]
fn a_token_classifier_trains_and_predicts_under_dynamic_padding_as_the_whole_window() {
    use wgml::data::{Split, Targets};
    let (_g, ctx) = gpu();
    let _restore = PlanAs(ctx);
    let tokens = 20;
    let steps: [&[usize]; 3] = [&[5, 3, 1, 0], &[20, 3, 7, 2], &[12, 2, 9, 16]];
    for causal in [false, true] {
        let what = format!("causal {causal}");
        let mut model = tagger(tokens, causal)
            .compile(ctx, Loss::SparseCategoricalCrossentropy, Optimizer::adam(0.02), 3)
            .unwrap();
        assert_eq!(model.label_positions(), tokens);
        let batches: Vec<(Vec<f32>, Vec<u32>)> = steps
            .iter()
            .enumerate()
            .map(|(step, lengths)| {
                (
                    padded_ids(lengths, tokens, 31 + step as u64),
                    tags_of(lengths, tokens),
                )
            })
            .collect();
        trains_as_the_reference(ctx, &what, &mut model, &batches);
        // Predictions and evaluation: every real token's as the whole window's.
        let lengths = [3, 20, 1, 9, 0, 17, 5];
        let (x, n) = (padded_ids(&lengths, tokens, 41), lengths.len());
        let data = Split {
            x: x.clone(),
            sample_len: tokens,
            y: Targets::Classes {
                labels: tags_of(&lengths, tokens),
                classes: 3,
                positions: tokens,
            },
        };
        let real = |p: &[f32]| -> Vec<f32> {
            p.chunks(3)
                .zip(&x)
                .filter(|&(_, &id)| id != 0.0)
                .flat_map(|(row, _)| row.to_vec())
                .collect()
        };
        let labelled = |p: &[usize]| -> Vec<usize> {
            let Targets::Classes { labels, .. } = &data.y else {
                unreachable!()
            };
            p.iter()
                .zip(labels)
                .filter(|&(_, &l)| l != wgml::data::NO_LABEL)
                .map(|(&c, _)| c)
                .collect()
        };
        let dynamic = model.predict(ctx, &x, n).unwrap();
        let (dyn_eval, dyn_pred) = wgml::train::evaluate_with_predictions(&mut model, ctx, &data, 2).unwrap();
        model.dynamic_padding = false;
        let whole = model.predict(ctx, &x, n).unwrap();
        let (eval, pred) = wgml::train::evaluate_with_predictions(&mut model, ctx, &data, 2).unwrap();
        assert_close(&what, &real(&dynamic), &real(&whole), 1e-6, 1e-5);
        assert_eq!(
            labelled(&dyn_pred),
            labelled(&pred),
            "{what}: tags in the data's order"
        );
        assert!((dyn_eval.loss - eval.loss).abs() < 1e-5 * eval.loss, "{what}");
        assert_eq!(dyn_eval.accuracy, eval.accuracy, "{what}");
        // The means are over the labelled tokens: accuracy is a fraction of them.
        let count = data.y.counted() as f64;
        let right = eval.accuracy.unwrap() * count;
        assert!(
            (right - right.round()).abs() < 1e-9,
            "{what}: accuracy {right} of {count}"
        );
        // A label on padding (sample 0 has 3 real tokens) is refused.
        let mut bad = data.clone();
        if let Targets::Classes { labels, .. } = &mut bad.y {
            labels[tokens - 1] = 0;
        }
        let e = model.check_data(&bad).unwrap_err().to_string();
        assert!(e.contains("sample 0: position 19 is padding"), "{e}");
    }
}

/// `mask_positions` equals its twin on odd shapes (rows of positions past each
/// sample's length, every length from 0 to all), forward and for the gradient.
#[test]
fn masked_positions_match_their_twin() {
    let (_g, ctx) = gpu();
    for (n, &(batch, rows, positions)) in [(1usize, 1usize, 1usize), (5, 2, 7), (3, 3, 300)]
        .iter()
        .enumerate()
    {
        let x = uniform(&mut rng(70 + n as u64), batch * rows * positions, -3.0, 3.0);
        let lengths: Vec<f32> = (0..batch).map(|b| ((b * 5) % (positions + 1)) as f32).collect();
        let d = SequenceDims {
            batch,
            tokens: positions,
            features: rows,
        };
        let t = |v: &[f32]| Tensor::from_f32(ctx, v, &[v.len()]).unwrap();
        for fill in [sequence::MASKED_SCORE, 0.0] {
            let y = t(&vec![7.0; x.len()]);
            ctx.run(&[&sequence::mask_positions(ctx, &d, &t(&x), &t(&lengths), fill, &y).unwrap()])
                .unwrap();
            let want = reference::sequence::mask_positions(&x, rows, positions, &lengths, fill);
            assert_eq!(y.to_f32(ctx).unwrap(), want, "{d:?} fill {fill}");
        }
    }
    let masked = reference::sequence::mask_positions(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 2, 3, &[2.0], -9.0);
    assert_eq!(masked, [1.0, 2.0, -9.0, 4.0, 5.0, -9.0]);
}

/// A span scorer (a question-answering head: two scores per token, `[T, 2]`
/// turned `[2, T]`, each row a softmax over the window's real positions, the
/// padding masked) trains equal to the reference
/// executor on padded samples, short batches on shorter plans; its logits are its
/// probabilities before the softmax; a Permute of a padded sequence anywhere
/// else is still refused.
#[test]
fn a_span_scorer_softmaxes_over_the_real_positions() {
    let (_g, ctx) = gpu();
    let _restore = PlanAs(ctx);
    let tokens = 12;
    let ModelSpec::Functional(f) = tagger(tokens, false) else {
        unreachable!("the tagger is functional")
    };
    let mut f = f;
    f.layers.retain(|l| l.name != "tags");
    let linear = |units| Layer::Dense {
        units,
        activation: LayerActivation::Linear,
        use_bias: true,
        trainable: true,
    };
    let spans = f
        .clone()
        .layer("qa_outputs", linear(2), &["mlp"])
        .layer(
            "span_logits",
            Layer::Permute { dims: vec![2, 1] },
            &["qa_outputs"],
        )
        .supervised("span_logits", Loss::SparseCategoricalCrossentropy);
    // SGD: the head's bias takes no gradient (a softmax over the positions
    // sums to 1 as each row's one-hot does), which Adam would blow up from
    // rounding noise into steps of either sign.
    let mut model = ModelSpec::Functional(spans)
        .compile(
            ctx,
            Loss::SparseCategoricalCrossentropy,
            Optimizer::sgd(0.5, 0.0),
            3,
        )
        .unwrap();
    assert_eq!(model.label_positions(), 2);
    assert_eq!(model.dynamic_padding_unavailable(), None);
    // Each sample's answer starts and ends within its real tokens; the last
    // batch runs a plan of 8 of the 12 tokens.
    let lengths: [&[usize]; 3] = [&[5, 12, 1, 9], &[3, 7, 12, 2], &[3, 8, 6, 2]];
    let mut cpu = ReferenceExecutor::from_model(&model, ctx).unwrap();
    for (step, lengths) in lengths.iter().enumerate() {
        let x = padded_ids(lengths, tokens, 51 + step as u64);
        let labels: Vec<u32> = lengths
            .iter()
            .flat_map(|&len| {
                let start = (len as u32 * 5 + 1) % len.max(1) as u32;
                [start, (start + 2).min(len.max(1) as u32 - 1)]
            })
            .collect();
        let batch = Batch {
            x: &x,
            labels: &labels,
            values: &[],
            len: lengths.len(),
        };
        let (gpu, want) = step_losses(ctx, &mut model, &mut cpu, &batch, 0.5);
        assert!(
            (gpu - want).abs() < 1e-5 * want.abs(),
            "step {step}: GPU loss {gpu} vs reference {want}"
        );
    }
    params_match_reference(ctx, "span scorer", &model.store, &cpu, 1e-5, 1e-4);
    assert!(model.built_plans().iter().any(|o| o.tokens == Some(8)));
    // A label on padding is refused.
    let bad = wgml::data::Split {
        x: padded_ids(&[4], tokens, 62),
        sample_len: tokens,
        y: wgml::data::Targets::Classes {
            labels: vec![1, 4],
            classes: tokens,
            positions: 2,
        },
    };
    let e = model.check_data(&bad).unwrap_err().to_string();
    assert!(
        e.contains("sample 0: label 4 is a position past its 4 real tokens"),
        "{e}"
    );
    // Predictions: a short batch's (the first) as the whole window's.
    let x = padded_ids(&[4, 12, 7], tokens, 61);
    let short = model.predict_logits(ctx, &x[..tokens], 1).unwrap();
    let logits = model.predict_logits(ctx, &x, 3).unwrap();
    let probabilities = model.predict(ctx, &x, 3).unwrap();
    assert_close(
        "a short batch's logits",
        &short,
        &logits[..2 * tokens],
        1e-5,
        1e-5,
    );
    model.dynamic_padding = false;
    let whole = model.predict(ctx, &x[..tokens], 1).unwrap();
    assert_close(
        "the whole window's",
        &whole,
        &probabilities[..2 * tokens],
        1e-6,
        1e-5,
    );
    assert_eq!(logits.len(), 3 * 2 * tokens);
    // The first sample's padding (4 real tokens) is masked: probability 0.
    assert_eq!(logits[4], wgml::kernels::sequence::MASKED_SCORE);
    assert_eq!(probabilities[tokens + 11], 0.0);
    assert!(probabilities[3] > 0.0);
    assert_close(
        "softmax of the logits",
        &probabilities,
        &softmax_rows(&logits, tokens),
        1e-6,
        1e-5,
    );
    // Only the loss' output may turn the positions into classes.
    let inner = f
        .layer("turned", Layer::Permute { dims: vec![2, 1] }, &["mlp"])
        .layer("flat", Layer::Flatten, &["turned"])
        .layer("out", linear(2), &["flat"])
        .supervised("out", Loss::SparseCategoricalCrossentropy);
    let e = ModelSpec::Functional(inner)
        .compile(ctx, Loss::SparseCategoricalCrossentropy, Optimizer::adam(0.02), 3)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("layer 'turned'") && e.contains("padded sequence"),
        "{e}"
    );
}

/// Trains `model` and a reference executor made from it on `batches` (ids
/// and labels) with Adam at 0.02: each step's loss within
/// 1e-5 relative, then the parameters; the short batches ran plans of 8 and
/// 16 tokens.
fn trains_as_the_reference(
    ctx: &wgml::Context,
    what: &str,
    model: &mut wgml::nn::Model,
    batches: &[(Vec<f32>, Vec<u32>)],
) {
    let mut cpu = ReferenceExecutor::from_model(model, ctx).unwrap();
    for (step, (x, labels)) in batches.iter().enumerate() {
        let batch = Batch {
            x,
            labels,
            values: &[],
            len: x.len() / model.spec.input_shape()[0],
        };
        let (gpu, want) = step_losses(ctx, model, &mut cpu, &batch, 0.02);
        assert!(
            (gpu - want).abs() < 1e-5 * want.abs(),
            "{what} step {step}: GPU loss {gpu} vs reference {want}"
        );
    }
    params_match_reference(ctx, what, &model.store, &cpu, 1e-5, 1e-4);
    let mut cut: Vec<_> = model.built_plans().iter().filter_map(|o| o.tokens).collect();
    cut.sort();
    assert_eq!(cut, vec![8, 16], "{what}: the short batches ran short plans");
}

/// Every combination the padding tests run: causal or not, each pool.
fn variants() -> Vec<(bool, Layer)> {
    let mut out = Vec::new();
    for causal in [false, true] {
        for pool in [
            Layer::GlobalAveragePooling1D,
            Layer::LastTokenPooling1D,
            Layer::FirstTokenPooling1D,
        ] {
            out.push((causal, pool));
        }
    }
    out
}

/// `lengths.len()` samples of `tokens` ids: ids 1..V up to each length, then 0s.
fn padded_ids(lengths: &[usize], tokens: usize, seed: u64) -> Vec<f32> {
    let mut x = uniform(&mut rng(seed), lengths.len() * tokens, 1.0, V as f32);
    for (b, &len) in lengths.iter().enumerate() {
        x[b * tokens..(b + 1) * tokens]
            .iter_mut()
            .for_each(|v| *v = v.floor());
        x[b * tokens + len..(b + 1) * tokens].fill(0.0);
    }
    x
}

#[test]
fn a_padded_classifier_trains_equal_to_the_reference() {
    let (_g, ctx) = gpu();
    let _restore = PlanAs(ctx);
    let tokens = 6;
    let lengths = [6, 3, 1, 0, 4];
    let x = padded_ids(&lengths, tokens, 5);
    let labels = [1, 0, 1, 0, 0];
    let batch = Batch {
        x: &x,
        labels: &labels,
        values: &[],
        len: lengths.len(),
    };
    for class in [AdapterClass::Native, AdapterClass::GpuWithoutSubgroups] {
        ctx.set_adapter_class(class);
        for (causal, pool) in variants() {
            let what = format!("{class:?} causal {causal} {}", pool.kind());
            let mut model = classifier(tokens, Some(0), causal, pool)
                .compile(ctx, Loss::SparseCategoricalCrossentropy, Optimizer::adam(0.02), 3)
                .unwrap();
            let mut cpu = ReferenceExecutor::from_model(&model, ctx).unwrap();
            for step in 0..3 {
                let (gpu, want) = step_losses(ctx, &mut model, &mut cpu, &batch, 0.02);
                assert!(
                    (gpu - want).abs() < 1e-5 * want.abs(),
                    "{what} step {step}: GPU loss {gpu} vs reference {want}"
                );
            }
            params_match_reference(ctx, &what, &model.store, &cpu, 1e-5, 1e-4);
        }
    }
}

/// A sample padded to 7 tokens predicts what the same weights predict on its 3
/// real tokens with no padding at all: padding changes nothing; without the mask
/// it would (the test's own check that it can fail).
#[test]
fn padding_changes_no_prediction() {
    let (_g, ctx) = gpu();
    let _restore = PlanAs(ctx);
    let (long, short) = (7, 3);
    let real = padded_ids(&[short], short, 9);
    let mut padded = real.clone();
    padded.resize(long, 0.0);
    for class in [AdapterClass::Native, AdapterClass::GpuWithoutSubgroups] {
        ctx.set_adapter_class(class);
        for (causal, pool) in variants() {
            let what = format!("{class:?} causal {causal} {}", pool.kind());
            let compile = |tokens, mask| {
                classifier(tokens, mask, causal, pool.clone())
                    .compile(
                        ctx,
                        Loss::SparseCategoricalCrossentropy,
                        Optimizer::sgd(0.1, 0.0),
                        4,
                    )
                    .unwrap()
            };
            let mut masked = compile(long, Some(0));
            let mut unmasked = compile(long, None);
            let mut exact = compile(short, None);
            // The same weights everywhere; the short model's positions are the
            // first rows of the long one's.
            let values = masked.store.download(ctx).unwrap();
            unmasked.load_params(ctx, &values).unwrap();
            let cut: Vec<_> = values
                .iter()
                .map(|(name, shape, v)| match name.as_str() {
                    "pos.weight" => (
                        name.clone(),
                        vec![short, shape[1]],
                        v[..short * shape[1]].to_vec(),
                    ),
                    _ => (name.clone(), shape.clone(), v.clone()),
                })
                .collect();
            exact.load_params(ctx, &cut).unwrap();
            let want = exact.predict(ctx, &real, 1).unwrap();
            let got = masked.predict(ctx, &padded, 1).unwrap();
            assert_close(&format!("{what}: padded"), &got, &want, 1e-6, 1e-5);
            let unmasked = unmasked.predict(ctx, &padded, 1).unwrap();
            let moved = unmasked
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            // A causal model's last real token (and its first) sees no padding
            // even unmasked.
            if !(causal && pool != Layer::GlobalAveragePooling1D) {
                assert!(
                    moved > 1e-4,
                    "{what}: the unmasked model ignores padding too ({moved})"
                );
            }
        }
    }
}

#[test]
fn what_would_read_padding_as_tokens_is_refused() {
    let embed = |mask_id| Layer::Embedding {
        input_dim: V,
        output_dim: 4,
        mask_id,
        trainable: true,
    };
    let dense = Layer::Dense {
        units: 2,
        activation: LayerActivation::Softmax,
        use_bias: true,
        trainable: true,
    };
    let sequential = |layers: Vec<Layer>| {
        layers
            .into_iter()
            .fold(wgml::nn::Sequential::new(&[5]), |s, l| s.add(l))
            .graph(Loss::SparseCategoricalCrossentropy)
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    let e = sequential(vec![embed(Some(0)), Layer::Flatten, dense.clone()]).unwrap_err();
    assert!(
        e.contains("padded sequence") && e.contains("a reshape (Flatten, Reshape) would read"),
        "{e}"
    );
    let e = sequential(vec![
        embed(Some(0)),
        Layer::Permute { dims: vec![2, 1] },
        dense.clone(),
    ])
    .unwrap_err();
    assert!(e.contains("a permutation"), "{e}");
    let e = sequential(vec![
        embed(Some(0)),
        Layer::batch_norm(),
        Layer::GlobalAveragePooling1D,
        dense.clone(),
    ])
    .unwrap_err();
    assert!(e.contains("a batch normalization (its statistics)"), "{e}");
    // A class per token (a token classifier) builds: its data gives padding no
    // label, which Model::check_data enforces (the token-classifier test).
    assert_eq!(sequential(vec![embed(Some(0)), dense.clone()]), Ok(()));
    let e = sequential(vec![
        embed(Some(V as u32)),
        Layer::GlobalAveragePooling1D,
        dense.clone(),
    ])
    .unwrap_err();
    assert!(e.contains("mask_id 7 is not a row of the 7-row table"), "{e}");
    // Pooled first, or unmasked, they build.
    sequential(vec![embed(Some(0)), Layer::LastTokenPooling1D, dense.clone()]).unwrap();
    sequential(vec![embed(None), Layer::Flatten, dense.clone()]).unwrap();
    // In a functional model: a mean over the sample, and two paddings meeting.
    let functional = |second: Option<u32>| {
        Functional::new("ids", &[5])
            .layer("a", embed(Some(0)), &["ids"])
            .layer("b", embed(second), &["ids"])
            .op("sum", GraphOp::Add, &["a", "b"])
            .layer("pool", Layer::GlobalAveragePooling1D, &["sum"])
            .layer("head", dense.clone(), &["pool"])
            .supervised("head", Loss::SparseCategoricalCrossentropy)
            .graph()
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    let e = functional(Some(1)).unwrap_err();
    assert!(e.contains("'sum'") && e.contains("padded differently"), "{e}");
    functional(Some(0)).unwrap();
    functional(None).unwrap();
    let e = Functional::new("ids", &[5])
        .layer("a", embed(Some(0)), &["ids"])
        .op("m", GraphOp::Mean, &["a"])
        .layer("head", dense, &["m"])
        .supervised("head", Loss::SparseCategoricalCrossentropy)
        .graph()
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("'m'") && e.contains("a sum or mean over the sample"),
        "{e}"
    );
}

/// Dynamic padding: batches of short samples run plans cut to 8 or 16 of the
/// model's 20 tokens, and train equal to the reference executor, which runs all
/// 20. A long batch between short ones runs the whole window: a short plan that
/// left the position table's unread rows with the long step's gradient would
/// move them, and the comparison would fail.
#[test]
fn dynamic_padding_trains_equal_to_the_reference() {
    let (_g, ctx) = gpu();
    let _restore = PlanAs(ctx);
    let tokens = 20;
    let steps: [(&[usize], Option<usize>); 5] = [
        (&[5, 3, 1, 0], Some(8)),
        (&[20, 3, 7, 2], None),
        (&[12, 2, 9, 16], Some(16)),
        (&[8, 8, 4, 1], Some(8)),
        (&[1, 9, 0, 2], Some(16)),
    ];
    let labels = [1, 0, 1, 0];
    for class in [AdapterClass::Native, AdapterClass::GpuWithoutSubgroups] {
        ctx.set_adapter_class(class);
        for (causal, pool) in variants() {
            let what = format!("{class:?} causal {causal} {}", pool.kind());
            let mut model = classifier(tokens, Some(0), causal, pool)
                .compile(ctx, Loss::SparseCategoricalCrossentropy, Optimizer::adam(0.02), 3)
                .unwrap();
            assert!(model.dynamic_padding, "dynamic padding is on by default");
            let batches: Vec<(Vec<f32>, Vec<u32>)> = steps
                .iter()
                .enumerate()
                .map(|(step, &(lengths, bucket))| {
                    let x = padded_ids(lengths, tokens, 11 + step as u64);
                    assert_eq!(model.batch_tokens(&x), bucket, "{what} step {step}");
                    (x, labels.to_vec())
                })
                .collect();
            trains_as_the_reference(ctx, &what, &mut model, &batches);
        }
    }
}

/// Predictions and evaluations under dynamic padding (per-batch lengths,
/// evaluation sorted by length) equal the whole window's, in the data's order.
#[test]
fn dynamic_padding_predicts_and_evaluates_as_the_whole_window() {
    use wgml::data::{Split, Targets};
    let (_g, ctx) = gpu();
    let _restore = PlanAs(ctx);
    let tokens = 24;
    let lengths = [3, 24, 1, 9, 0, 17, 5, 2, 11];
    let x = padded_ids(&lengths, tokens, 21);
    let n = lengths.len();
    let data = Split {
        x: x.clone(),
        sample_len: tokens,
        y: Targets::Classes {
            labels: (0..n as u32).map(|i| i % 2).collect(),
            classes: 2,
            positions: 1,
        },
    };
    for (causal, pool) in variants() {
        let what = format!("causal {causal} {}", pool.kind());
        let mut model = classifier(tokens, Some(0), causal, pool)
            .compile(ctx, Loss::SparseCategoricalCrossentropy, Optimizer::adam(0.02), 8)
            .unwrap();
        let dynamic = model.predict(ctx, &x, n).unwrap();
        let (dyn_eval, dyn_pred) = wgml::train::evaluate_with_predictions(&mut model, ctx, &data, 2).unwrap();
        assert!(
            model.built_plans().iter().any(|o| o.tokens == Some(8)),
            "{what}: the short batches ran short plans"
        );
        model.dynamic_padding = false;
        let whole = model.predict(ctx, &x, n).unwrap();
        let (eval, pred) = wgml::train::evaluate_with_predictions(&mut model, ctx, &data, 2).unwrap();
        assert_close(&what, &dynamic, &whole, 1e-6, 1e-5);
        assert_eq!(dyn_pred, pred, "{what}: predicted classes in the data's order");
        assert_eq!(dyn_eval.confusion, eval.confusion, "{what}");
        assert!((dyn_eval.loss - eval.loss).abs() < 1e-5 * eval.loss, "{what}");
    }
}

/// Grouped by length, a fit's batches run at their bucket: the plans it
/// prepares include every bucket between the shortest and longest sample's,
/// and it trains as the whole window does. A model without padding refuses
/// the grouping.
#[test]
fn fit_groups_by_length() {
    use wgml::data::{Split, Targets};
    use wgml::train::{FitConfig, fit, fit_plans};
    let (_g, ctx) = gpu();
    let _restore = PlanAs(ctx);
    let tokens = 40;
    let lengths: Vec<usize> = (0..24).map(|i| [2, 5, 9, 14, 30, 40][i % 6]).collect();
    let x = padded_ids(&lengths, tokens, 31);
    let data = Split {
        x,
        sample_len: tokens,
        y: Targets::Classes {
            labels: lengths.iter().map(|&l| u32::from(l > 10)).collect(),
            classes: 2,
            positions: 1,
        },
    };
    let config = FitConfig {
        epochs: 2,
        batch_size: 4,
        group_by_length: true,
        verbose: false,
        ..FitConfig::default()
    };
    let spec = classifier(tokens, Some(0), false, Layer::GlobalAveragePooling1D);
    let compile = |spec: &ModelSpec| {
        spec.compile(ctx, Loss::SparseCategoricalCrossentropy, Optimizer::adam(0.01), 2)
            .unwrap()
    };
    let mut grouped = compile(&spec);
    let mut planned: Vec<_> = fit_plans(&grouped, &data, &config)
        .unwrap()
        .iter()
        .map(|o| o.tokens)
        .collect();
    planned.sort();
    assert_eq!(planned, vec![None, Some(8), Some(16), Some(32)]);
    let history = fit(&mut grouped, ctx, &data, &config).unwrap();
    assert_eq!(history.epochs.len(), 2);
    assert!(history.epochs.iter().all(|e| e.loss.is_finite() && e.steps == 6));
    let mut whole = compile(&spec);
    whole.dynamic_padding = false;
    let refused = fit(&mut whole, ctx, &data, &config).unwrap_err().to_string();
    assert!(refused.contains("pads dynamically"), "{refused}");
    let unpadded = classifier(tokens, None, false, Layer::GlobalAveragePooling1D);
    let refused = fit(&mut compile(&unpadded), ctx, &data, &config)
        .unwrap_err()
        .to_string();
    assert!(refused.contains("mask_id"), "{refused}");
    // In the data's order (batches of 2 to 14 tokens, then of 30 and 40 with
    // shorter ones), dynamic padding trains as the whole window does.
    let ordered = FitConfig {
        shuffle: false,
        group_by_length: false,
        ..config
    };
    let mut dynamic = compile(&spec);
    let short = fit(&mut dynamic, ctx, &data, &ordered).unwrap();
    assert!(dynamic.built_plans().iter().any(|o| o.tokens == Some(16)));
    let long = fit(&mut whole, ctx, &data, &ordered).unwrap();
    for (a, b) in short.epochs.iter().zip(&long.epochs) {
        assert!(
            (a.loss - b.loss).abs() < 1e-5 * b.loss,
            "{} vs {}",
            a.loss,
            b.loss
        );
    }
}

/// `predict` runs fewer samples at a time where its batch does not fit the
/// adapter: 80 samples of 512 tokens need 168 MB of attention scores on the
/// unfused path, more than lavapipe binds (128 MiB), and come back equal to
/// four predictions of 20.
#[test]
fn predict_splits_batches_the_adapter_cannot_hold() {
    let (_g, ctx) = gpu();
    let tokens = 512;
    let n = 80;
    let x = padded_ids(&vec![tokens; n], tokens, 41);
    let mut model = classifier(tokens, None, false, Layer::GlobalAveragePooling1D)
        .compile(ctx, Loss::SparseCategoricalCrossentropy, Optimizer::adam(0.01), 5)
        .unwrap();
    let all = model.predict(ctx, &x, n).unwrap();
    let mut parts = Vec::new();
    for part in x.chunks(20 * tokens) {
        parts.extend(model.predict(ctx, part, 20).unwrap());
    }
    assert_close("in one call", &all, &parts, 1e-6, 1e-5);
}

/// A model that also reads the ids without skipping padding (a second
/// Embedding without `mask_id`, averaged over all its tokens) would compute
/// something else on fewer tokens: dynamic padding does not apply to it, says
/// why, and its batches run the whole window.
#[test]
fn dynamic_padding_refuses_a_model_that_reads_padding() {
    let (_g, ctx) = gpu();
    let tokens = 24;
    let embedding = |mask_id| Layer::Embedding {
        input_dim: V,
        output_dim: 4,
        mask_id,
        trainable: true,
    };
    let spec = ModelSpec::Functional(
        Functional::new("ids", &[tokens])
            .layer("masked", embedding(Some(0)), &["ids"])
            .layer("pool", Layer::GlobalAveragePooling1D, &["masked"])
            .layer("plain", embedding(None), &["ids"])
            .layer("plain_pool", Layer::GlobalAveragePooling1D, &["plain"])
            .op("sum", GraphOp::Add, &["pool", "plain_pool"])
            .layer(
                "head",
                Layer::Dense {
                    units: 2,
                    activation: LayerActivation::Softmax,
                    use_bias: true,
                    trainable: true,
                },
                &["sum"],
            )
            .supervised("head", Loss::SparseCategoricalCrossentropy),
    );
    let mut model = spec
        .compile(ctx, Loss::SparseCategoricalCrossentropy, Optimizer::adam(0.01), 1)
        .unwrap();
    let why = model.dynamic_padding_unavailable().expect("refused");
    assert!(why.contains("'plain'"), "{why}");
    let x = padded_ids(&[3, 5], tokens, 2);
    assert_eq!(model.batch_tokens(&x), None);
    let dynamic = model.predict(ctx, &x, 2).unwrap();
    model.dynamic_padding = false;
    assert_eq!(dynamic, model.predict(ctx, &x, 2).unwrap());
    assert!(model.built_plans().iter().all(|o| o.tokens.is_none()));
}
