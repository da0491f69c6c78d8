//! Evaluation: loss, accuracy, per-class precision/recall/F1 and the confusion
//! matrix. Predictions of every batch are copied on the GPU into one buffer and
//! read once at the end.

use crate::data::{Split, Targets};
use crate::error::{Error, Result};
use crate::gpu::{Context, DType, Tensor};
use crate::graph::PlanOptions;
use crate::kernels::sequence::MASKED_SCORE;
use crate::nn::Model;
use crate::nn::model::Batch;
use crate::train::answers::Questions;

/// Precision, recall and F1 of one class.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ClassMetrics {
    /// The class index.
    pub class: usize,
    /// Fraction of the samples predicted as this class that belong to it (0 when none is predicted).
    pub precision: f64,
    /// Fraction of this class's samples predicted as it (0 when it has none).
    pub recall: f64,
    /// Harmonic mean of precision and recall (0 when both are 0).
    pub f1: f64,
    /// Number of samples whose true class this is.
    pub support: usize,
}

/// What `evaluate` measured.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Evaluation {
    /// Mean loss per label (per sample; per token for a sequence model).
    pub loss: f64,
    /// Fraction of labels predicted correctly (for a multi-label classifier,
    /// of samples whose every class is right: subset accuracy); `None` for
    /// regression.
    pub accuracy: Option<f64>,
    /// `(k, fraction of labels among the k largest outputs)` when the model
    /// measures it ([`Model::top_k`]).
    pub top_k: Option<(usize, f64)>,
    /// Number of samples evaluated.
    pub samples: usize,
    /// Labels per sample: 1, or a sequence model's positions.
    pub positions: usize,
    /// Whether the model tags words (a token classifier,
    /// [`crate::data::text_table::TableLabels::Tags`]): its loss and accuracy
    /// are per tagged word, and it has no perplexity.
    pub tags: bool,
    /// `confusion[true][predicted]` (classification with one label per sample;
    /// binary uses classes 0/1). Empty for regression, for a multi-label
    /// classifier (each class a yes/no of its own) and for a label per
    /// position: a language model's would be its vocabulary squared (20 GB for
    /// GPT-2's 50,257 tokens).
    pub confusion: Vec<Vec<u64>>,
    /// Metrics of each class, in class order (a multi-label classifier's each
    /// class as a yes/no; empty for regression and a label per position).
    pub per_class: Vec<ClassMetrics>,
    /// Unweighted mean of the per-class precisions; `None` where `per_class` is empty.
    pub macro_precision: Option<f64>,
    /// Unweighted mean of the per-class recalls; `None` where `per_class` is empty.
    pub macro_recall: Option<f64>,
    /// Unweighted mean of the per-class F1 scores; `None` where `per_class` is empty.
    pub macro_f1: Option<f64>,
    /// Pearson's r and Spearman's ρ between the predictions and the targets of a
    /// regression of one value per sample (GLUE's STS-B metrics); `None`
    /// otherwise, or when either side is constant.
    pub correlation: Option<(f64, f64)>,
    /// A token classifier's entity scores (named entities' spans, as `seqeval`
    /// counts them): set by the caller, who knows the tags' names
    /// ([`crate::train::entities::entity_scores`]); `None` otherwise.
    pub entities: Option<crate::train::entities::EntityMetrics>,
    /// A question answerer's exact match and F1 of its answers (SQuAD's
    /// metrics): set by the caller, who has the questions
    /// ([`crate::train::answers`]); `None` otherwise. Its loss and accuracy are
    /// over the start and end tokens of each window.
    pub answers: Option<crate::train::answers::AnswerScores>,
}

/// Class `class`'s precision, recall and F1 from its true positives `tp`, the
/// samples predicted as it and its samples (`support`).
fn class_metrics(class: usize, tp: u64, predicted: u64, support: u64) -> ClassMetrics {
    let tp = tp as f64;
    let precision = if predicted > 0 { tp / predicted as f64 } else { 0.0 };
    let recall = if support > 0 { tp / support as f64 } else { 0.0 };
    let f1 = if precision + recall > 0.0 {
        2.0 * precision * recall / (precision + recall)
    } else {
        0.0
    };
    ClassMetrics {
        class,
        precision,
        recall,
        f1,
        support: support as usize,
    }
}

/// Each class's metrics of a multi-label classifier: its outputs `got` (a
/// probability per class and sample, `dim` classes) against the 0/1 `want`,
/// each class predicted where its probability is above 0.5.
fn set_metrics(got: &[f32], want: &[f32], dim: usize) -> Vec<ClassMetrics> {
    (0..dim)
        .map(|c| {
            let (mut tp, mut predicted, mut support) = (0, 0, 0);
            for (g, w) in got.chunks(dim).zip(want.chunks(dim)) {
                let (p, t) = (g[c] > 0.5, w[c] > 0.5);
                tp += u64::from(p && t);
                predicted += u64::from(p);
                support += u64::from(t);
            }
            class_metrics(c, tp, predicted, support)
        })
        .collect()
}

/// Pearson's correlation of `a` and `b` (f64 sums); `None` when either is
/// constant or they are shorter than 2.
pub fn pearson(a: &[f64], b: &[f64]) -> Option<f64> {
    let n = a.len().min(b.len());
    if n < 2 {
        return None;
    }
    let mean = |v: &[f64]| v[..n].iter().sum::<f64>() / n as f64;
    let (ma, mb) = (mean(a), mean(b));
    let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
    for i in 0..n {
        let (x, y) = (a[i] - ma, b[i] - mb);
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    (aa > 0.0 && bb > 0.0).then(|| ab / (aa * bb).sqrt())
}

/// Spearman's rank correlation of `a` and `b`: Pearson's of their ranks, tied
/// values sharing their mean rank (as SciPy's `spearmanr`).
pub fn spearman(a: &[f64], b: &[f64]) -> Option<f64> {
    let ranks = |v: &[f64]| {
        let mut order: Vec<usize> = (0..v.len()).collect();
        order.sort_by(|&i, &j| v[i].total_cmp(&v[j]));
        let mut r = vec![0.0; v.len()];
        let mut i = 0;
        while i < order.len() {
            let mut j = i;
            while j + 1 < order.len() && v[order[j + 1]] == v[order[i]] {
                j += 1;
            }
            for &k in &order[i..=j] {
                r[k] = (i + j) as f64 / 2.0 + 1.0;
            }
            i = j + 1;
        }
        r
    };
    pearson(&ranks(a), &ranks(b))
}

/// The plans evaluating `samples` samples in batches of `batch_size` uses (a full
/// batch and, when `samples` is not a multiple, the last partial one).
pub fn eval_plans(model: &Model, samples: usize, batch_size: usize) -> Vec<PlanOptions> {
    if samples == 0 {
        return Vec::new();
    }
    let b = batch_size.clamp(1, samples);
    let mut plans = vec![model.options(b, false)];
    if !samples.is_multiple_of(b) {
        plans.push(model.options(samples % b, false));
    }
    plans
}

/// What an evaluation copies of each batch besides the loss sums.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Copied {
    /// Each label's predicted class (classes), or the outputs (values).
    Predictions,
    /// The outputs before the folded softmax: a question answerer's start and
    /// end logits.
    Logits,
}

/// The values per sample `copied` holds of `model`'s predictions of `data`
/// (a shortened plan's fewer, see [`widen`]).
fn copied_per_sample(model: &Model, data: &Split, copied: Copied) -> usize {
    match (copied, &data.y) {
        (Copied::Logits, _) => model.output_dim(),
        (Copied::Predictions, Targets::Classes { positions, .. }) => *positions,
        (Copied::Predictions, Targets::Values { dim, .. }) => *dim,
    }
}

/// Runs `data` through `model` in batches of `batch_size` (fewer where the
/// adapter cannot hold that many: a long window's attention), copying what
/// `preds` asks for of each batch into its tensor one after the other. Returns
/// the order the samples ran in: `data`'s, or under dynamic padding
/// ([`Model::dynamic_padding`]) shortest first, so batches run short; and each
/// batch's size and the values per sample it copied: a shortened plan's of a
/// model that predicts every token hold fewer than the model's window (see
/// [`widen`]).
fn batches_ran(
    model: &mut Model,
    ctx: &Context,
    data: &Split,
    batch_size: usize,
    preds: Option<(&Tensor, Copied)>,
) -> Result<(Vec<usize>, Ran)> {
    let n = data.len();
    if n == 0 {
        return Err(Error::invalid("no samples to evaluate"));
    }
    model.check_data(data)?;
    let mut order: Vec<usize> = (0..n).collect();
    if let Some(lengths) = model.sample_lengths(&data.x) {
        order.sort_by_key(|&i| lengths[i]);
    }
    let mut b = batch_size.clamp(1, n);
    loop {
        match batches_of(model, ctx, data, (&order, b), preds) {
            Err(Error::TooLarge { .. }) if b > 1 => b = b.div_ceil(2),
            done => return done.map(|positions| (order, Ran { batch: b, positions })),
        }
    }
}

/// How [`batches_ran`] ran: batches of `batch` samples (the last may be
/// smaller), batch i's copies `positions[i]` values per sample.
struct Ran {
    batch: usize,
    positions: Vec<usize>,
}

/// Values of `full` per sample, in `rows` rows of positions each, as
/// [`batches_ran`] copied them: batch i in its slot of `batch · full` values,
/// its first `len · positions[i]` values its `[len, rows, positions[i] / rows]`
/// values. Each batch's samples are widened to `full` values in place, each
/// row's positions cut off (a shortened plan's padding, which has no target)
/// given `fill`.
fn widen<T: Copy>(values: &mut [T], (full, rows): (usize, usize), ran: &Ran, fill: T) {
    let slot = ran.batch * full;
    let (row, rows) = (full / rows.max(1), rows.max(1));
    for (i, &t) in ran.positions.iter().enumerate() {
        if t >= full {
            continue;
        }
        let short = t / rows;
        let start = i * slot;
        let len = (values.len() - start).min(slot) / full;
        // Back to front, so nothing is overwritten before it moves.
        for r in (0..len * rows).rev() {
            let to = start + r * row;
            values.copy_within(start + r * short..start + (r + 1) * short, to);
            values[to + short..to + row].fill(fill);
        }
    }
}

/// [`batches_ran`] of `b` samples in `order`, from zeroed sums.
fn batches_of(
    model: &mut Model,
    ctx: &Context,
    data: &Split,
    (order, b): (&[usize], usize),
    preds: Option<(&Tensor, Copied)>,
) -> Result<Vec<usize>> {
    let (mut xb, mut lb, mut vb) = (Vec::new(), Vec::new(), Vec::new());
    let mut ran = Vec::new();
    model.acc.reset(ctx)?;
    for (i, idx) in order.chunks(b).enumerate() {
        data.gather(idx, &mut xb, &mut lb, &mut vb);
        let batch = Batch {
            x: &xb,
            labels: &lb,
            values: &vb,
            len: idx.len(),
        };
        // Batch i's slot: b samples of `per` values (a sequence's whole window).
        let per = preds.map_or(0, |(_, copied)| copied_per_sample(model, data, copied));
        let mut positions = per;
        model.eval_step(ctx, &batch, |enc, plan| {
            if let Some((p, copied)) = preds {
                let src = match (copied, &data.y) {
                    (Copied::Logits, _) => &plan.output,
                    (Copied::Predictions, Targets::Classes { .. }) => &plan.predictions,
                    (Copied::Predictions, Targets::Values { .. }) => &plan.probabilities,
                };
                // A shortened plan predicts fewer positions per sample.
                positions = src.numel() / idx.len();
                enc.copy_buffer_to_buffer(
                    &src.buffer,
                    0,
                    &p.buffer,
                    (i * b * per * 4) as u64,
                    (src.numel() * 4) as u64,
                );
            }
        })?;
        ran.push(positions);
    }
    Ok(ran)
}

/// `ran` (`per` values for each sample, in the order `order` ran them) in the
/// samples' own order.
fn in_data_order<T: Copy>(ran: Vec<T>, order: &[usize]) -> Vec<T> {
    let per = ran.len() / order.len().max(1);
    let mut out = ran.clone();
    for (j, &i) in order.iter().enumerate() {
        out[i * per..(i + 1) * per].copy_from_slice(&ran[j * per..(j + 1) * per]);
    }
    out
}

/// Mean loss and accuracy over `data` (accuracy 0 for regression).
pub fn evaluate_sums(
    model: &mut Model,
    ctx: &Context,
    data: &Split,
    batch_size: usize,
) -> Result<(f64, f64)> {
    batches_ran(model, ctx, data, batch_size, None)?;
    let (l, c) = model.acc.read(ctx)?;
    // Every label with a target (a sequence's positions without one do not count).
    let n = data.y.counted().max(1) as f64;
    Ok((l / n, c / n))
}

/// Full evaluation of `model` on `data`.
pub fn evaluate(model: &mut Model, ctx: &Context, data: &Split, batch_size: usize) -> Result<Evaluation> {
    evaluate_with_predictions(model, ctx, data, batch_size).map(|(e, _)| e)
}

/// The true class of every sample of `data` (of every position, for a
/// sequence): its label, or for 0/1 targets (binary classification) whether the
/// value is above 0.5.
pub fn true_classes(data: &Split) -> Vec<usize> {
    match &data.y {
        Targets::Classes { labels, .. } => labels.iter().map(|&l| l as usize).collect(),
        Targets::Values { values, .. } => values.iter().map(|&v| usize::from(v > 0.5)).collect(),
    }
}

/// [`evaluate`], also returning the predicted class of every sample in `data`'s
/// order (the same GPU pass: predictions are gathered on the GPU and read once).
/// For binary cross-entropy a class is whether the probability is above 0.5; for
/// regression the vector is empty.
pub fn evaluate_with_predictions(
    model: &mut Model,
    ctx: &Context,
    data: &Split,
    batch_size: usize,
) -> Result<(Evaluation, Vec<usize>)> {
    evaluated(model, ctx, data, batch_size, Copied::Predictions).map(|(e, predicted, _)| (e, predicted))
}

/// A question answerer's [`evaluate_with_predictions`] of the windows of
/// `questions` ([`Questions::split`]), its answers picked from the same pass's
/// logits and scored ([`Evaluation::answers`]).
pub fn evaluate_answers(
    model: &mut Model,
    ctx: &Context,
    questions: &Questions,
    batch_size: usize,
) -> Result<(Evaluation, Vec<usize>)> {
    evaluate_answers_of(model, ctx, (&questions.split(), questions), batch_size)
}

/// [`evaluate_answers`] of `windows`, the split of `questions` made once by
/// the caller (`fit`'s validation, every epoch).
pub(crate) fn evaluate_answers_of(
    model: &mut Model,
    ctx: &Context,
    (windows, questions): (&Split, &Questions),
    batch_size: usize,
) -> Result<(Evaluation, Vec<usize>)> {
    let (mut e, predicted, logits) = evaluated(model, ctx, windows, batch_size, Copied::Logits)?;
    e.answers = Some(questions.scores(&logits));
    Ok((e, predicted))
}

/// [`evaluate_with_predictions`], copying `copied` of every batch: the
/// evaluation, each label's predicted class in `data`'s order, and the logits
/// (in that order) when `copied` asks for them.
fn evaluated(
    model: &mut Model,
    ctx: &Context,
    data: &Split,
    batch_size: usize,
    copied: Copied,
) -> Result<(Evaluation, Vec<usize>, Vec<f32>)> {
    let n = data.len();
    let positions = model.label_positions();
    let truth = true_classes(data);
    let per = copied_per_sample(model, data, copied);
    let (preds, classes): (Tensor, usize) = match (&data.y, copied) {
        (Targets::Classes { classes, .. }, Copied::Predictions) => {
            (Tensor::zeros(ctx, &[n * per], DType::U32)?, *classes)
        }
        (Targets::Classes { classes, .. }, Copied::Logits) => {
            (Tensor::zeros(ctx, &[n * per], DType::F32)?, *classes)
        }
        (Targets::Values { .. }, _) => (
            Tensor::zeros(ctx, &[n * per], DType::F32)?,
            if model.loss.is_classification() { 2 } else { 0 },
        ),
    };
    let (order, ran) = batches_ran(model, ctx, data, batch_size, Some((&preds, copied)))?;
    let (loss_sum, correct) = model.acc.read(ctx)?;
    let mut correlation = None;
    // A multi-label classifier's per-class metrics (each class a yes/no).
    let mut sets = None;
    let mut logits = Vec::new();
    let predicted: Vec<usize> = match (&data.y, copied) {
        (Targets::Classes { .. }, Copied::Predictions) => {
            let mut ran_preds = preds.to_u32(ctx)?;
            widen(&mut ran_preds, (positions, 1), &ran, 0);
            in_data_order(ran_preds, &order)
                .into_iter()
                .map(|p| p as usize)
                .collect()
        }
        (Targets::Classes { .. }, Copied::Logits) => {
            let mut ran_logits = preds.to_f32(ctx)?;
            widen(&mut ran_logits, (per, positions), &ran, MASKED_SCORE);
            logits = in_data_order(ran_logits, &order);
            // Each label's class: its row's highest logit, the first of equals.
            logits
                .chunks(per / positions.max(1))
                .map(|row| (0..row.len()).fold(0, |best, c| if row[c] > row[best] { c } else { best }))
                .collect()
        }
        (Targets::Values { values, dim }, _) => {
            let values_out = in_data_order(preds.to_f32(ctx)?, &order);
            if *dim == 1 && !model.loss.is_classification() {
                let got: Vec<f64> = values_out.iter().map(|&v| f64::from(v)).collect();
                let want: Vec<f64> = values.iter().map(|&v| f64::from(v)).collect();
                correlation = pearson(&got, &want).zip(spearman(&got, &want));
            }
            if *dim > 1 && model.loss.is_classification() {
                sets = Some(set_metrics(&values_out, values, *dim));
            }
            values_out.into_iter().map(|p| usize::from(p > 0.5)).collect()
        }
    };
    // Per-class tables for one label per sample only (see Evaluation::confusion).
    let tabled = if positions > 1 || sets.is_some() {
        0
    } else {
        classes
    };
    let mut confusion = vec![vec![0u64; tabled]; tabled];
    if tabled > 0 {
        for (&t, &p) in truth.iter().zip(&predicted) {
            if t < tabled && p < tabled {
                confusion[t][p] += 1;
            }
        }
    }
    let per_class: Vec<ClassMetrics> = match sets {
        Some(sets) => sets,
        None => (0..tabled)
            .map(|c| {
                let predicted_c: u64 = (0..tabled).map(|t| confusion[t][c]).sum();
                class_metrics(c, confusion[c][c], predicted_c, confusion[c].iter().sum())
            })
            .collect(),
    };
    let mean = |f: fn(&ClassMetrics) -> f64| {
        (!per_class.is_empty()).then(|| per_class.iter().map(f).sum::<f64>() / per_class.len() as f64)
    };
    let labels = data.y.counted().max(1) as f64;
    let top_k = match model.top_k {
        Some(k) => Some((k, model.acc.read_top_k(ctx)? / labels)),
        None => None,
    };
    let evaluation = Evaluation {
        loss: loss_sum / labels,
        accuracy: model.loss.is_classification().then(|| correct / labels),
        top_k,
        samples: n,
        positions,
        tags: model.table_labels() == crate::data::text_table::TableLabels::Tags,
        macro_precision: mean(|m| m.precision),
        macro_recall: mean(|m| m.recall),
        macro_f1: mean(|m| m.f1),
        confusion,
        per_class,
        correlation,
        entities: None,
        answers: None,
    };
    let predicted = if classes > 0 { predicted } else { Vec::new() };
    Ok((evaluation, predicted, logits))
}

#[cfg(test)]
mod correlation_tests {
    use super::*;

    #[test]
    fn pearson_and_spearman_by_hand() {
        let a = [1.0, 2.0, 3.0, 4.0];
        assert!((pearson(&a, &[2.0, 4.0, 6.0, 8.0]).unwrap() - 1.0).abs() < 1e-12);
        assert!((pearson(&a, &[4.0, 3.0, 2.0, 1.0]).unwrap() + 1.0).abs() < 1e-12);
        // x and x³: monotone (ρ = 1) but not linear (r < 1).
        let cubes = [1.0, 8.0, 27.0, 64.0];
        assert!(pearson(&a, &cubes).unwrap() < 0.99);
        assert!((spearman(&a, &cubes).unwrap() - 1.0).abs() < 1e-12);
        // Ties share their mean rank: ranks [1.5, 1.5, 3, 4] against [1, 2, 3, 4]
        // (SciPy's spearmanr gives 0.9486832980505138).
        let tied = spearman(&[5.0, 5.0, 6.0, 7.0], &a).unwrap();
        assert!((tied - 0.948_683_298_050_513_8).abs() < 1e-12, "{tied}");
        assert_eq!(pearson(&a, &[1.0; 4]), None, "a constant side");
        assert_eq!(pearson(&[1.0], &[2.0]), None);
    }
}

#[cfg(test)]
mod widen_tests {
    use super::*;

    /// Two batches of 2 samples and a last of 1, window 4: the first ran at 2
    /// positions, the second at the whole window, the last at 3.
    #[test]
    fn shortened_batches_widen_to_the_window() {
        let ran = Ran {
            batch: 2,
            positions: vec![2, 4, 3],
        };
        let mut preds = vec![
            1, 2, 3, 4, 9, 9, 9, 9, // batch 0: [[1, 2], [3, 4]], then unwritten
            5, 6, 7, 8, 5, 6, 7, 8, // batch 1: whole
            1, 2, 3, 9, // batch 2: [[1, 2, 3]]
        ];
        widen(&mut preds, (4, 1), &ran, 0);
        assert_eq!(
            preds,
            [1, 2, 0, 0, 3, 4, 0, 0, 5, 6, 7, 8, 5, 6, 7, 8, 1, 2, 3, 0]
        );
    }

    /// A question answerer's logits: 2 rows (start, end) of a 3-token window per
    /// sample; batches of 2 ran at 1, 3 and 2 tokens.
    #[test]
    fn shortened_rows_of_positions_widen_with_the_fill() {
        let ran = Ran {
            batch: 2,
            positions: vec![2, 6, 4],
        };
        let mut logits = vec![
            1, 2, 3, 4, 9, 9, 9, 9, 9, 9, 9, 9, // batch 0: [[[1], [2]], [[3], [4]]]
            1, 2, 3, 4, 5, 6, 1, 2, 3, 4, 5, 6, // batch 1: whole
            1, 2, 3, 4, 9, 9, // batch 2: [[[1, 2], [3, 4]]]
        ];
        widen(&mut logits, (6, 2), &ran, 0);
        assert_eq!(
            logits,
            [
                1, 0, 0, 2, 0, 0, 3, 0, 0, 4, 0, 0, // batch 0
                1, 2, 3, 4, 5, 6, 1, 2, 3, 4, 5, 6, // batch 1
                1, 2, 0, 3, 4, 0, // batch 2
            ]
        );
    }
}
