//! The fit loop. Per step: write the batch, write the optimizer's step uniform,
//! submit one command buffer. Loss and correct-prediction sums accumulate on the
//! GPU and are read once per epoch, together with a per-step trace of the running
//! loss sum (copied on the GPU) that names the first step whose loss was not finite.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use rand::SeedableRng;
use rand::seq::SliceRandom;

use crate::data::Split;
use crate::data::augment::Augment;
use crate::error::{Error, Result};
use crate::gpu::{Context, DType, Tensor};
use crate::graph::PlanOptions;
use crate::graph::plan::Accumulators;
use crate::nn::Model;
use crate::nn::dynamic_padding::buckets_between;
use crate::nn::model::Batch;
use crate::train::answers::Questions;
use crate::train::backup::{self, Backup};
use crate::train::callbacks::{BatchEnd, Callback, Control, FitEvent, PrintProgress};
use crate::train::evaluate::{eval_plans, evaluate_sums};
use crate::train::schedule::LrSchedule;

/// The quantity early stopping watches, as Keras' `EarlyStopping(monitor=...)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Monitor {
    /// Validation loss (Keras' default); the training loss when there is no
    /// validation split.
    #[default]
    ValLoss,
    /// Validation accuracy (higher is better); needs a validation split and a
    /// classification loss.
    ValAccuracy,
    /// Training loss.
    Loss,
    /// Training accuracy (higher is better); needs a classification loss.
    Accuracy,
    /// A token classifier's validation entity F1 (higher is better; seqeval's
    /// overall, Hugging Face's `metric_for_best_model="f1"`; needs a
    /// validation split and [`FitConfig::entity_tags`]), or a question
    /// answerer's validation F1 of its answers (SQuAD's, in percent; needs
    /// [`FitConfig::answers`]).
    ValF1,
    /// A question answerer's validation exact match of its answers (SQuAD's,
    /// in percent; higher is better); needs [`FitConfig::answers`].
    ValExactMatch,
}

impl Monitor {
    /// Parses Keras' names: `val_loss`, `val_accuracy`, `loss`, `accuracy`.
    pub fn parse(name: &str) -> Result<Monitor> {
        match name {
            "val_loss" => Ok(Monitor::ValLoss),
            "val_accuracy" => Ok(Monitor::ValAccuracy),
            "loss" => Ok(Monitor::Loss),
            "accuracy" => Ok(Monitor::Accuracy),
            "val_f1" => Ok(Monitor::ValF1),
            "val_exact_match" => Ok(Monitor::ValExactMatch),
            other => Err(Error::invalid(format!(
                "unknown monitor '{other}': choose val_loss, val_accuracy, loss, accuracy, val_f1 \
                 (a token classifier's entity F1 or a question answerer's F1) or val_exact_match \
                 (a question answerer's)"
            ))),
        }
    }

    /// Keras' name of the quantity (what [`Monitor::parse`] reads).
    pub fn name(self) -> &'static str {
        match self {
            Monitor::ValLoss => "val_loss",
            Monitor::ValAccuracy => "val_accuracy",
            Monitor::Loss => "loss",
            Monitor::Accuracy => "accuracy",
            Monitor::ValF1 => "val_f1",
            Monitor::ValExactMatch => "val_exact_match",
        }
    }

    fn higher_is_better(self) -> bool {
        matches!(
            self,
            Monitor::ValAccuracy | Monitor::Accuracy | Monitor::ValF1 | Monitor::ValExactMatch
        )
    }

    /// The watched value of an epoch, oriented so that lower is better.
    fn score(self, s: &EpochStats) -> Option<f64> {
        let v = match self {
            Monitor::ValLoss => Some(s.val_loss.unwrap_or(s.loss)),
            Monitor::ValAccuracy => s.val_accuracy,
            Monitor::Loss => Some(s.loss),
            Monitor::Accuracy => s.accuracy,
            Monitor::ValF1 => s.val_f1,
            Monitor::ValExactMatch => s.val_exact_match,
        }?;
        Some(if self.higher_is_better() { -v } else { v })
    }
}

/// Keras' `ReduceLROnPlateau`: multiply the learning rate by `factor` after
/// `patience` epochs without a better `monitor` value (better by more than
/// `min_delta`), then wait `cooldown` epochs before counting again; never below
/// `min_lr`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReduceLrOnPlateau {
    /// The quantity watched.
    pub monitor: Monitor,
    /// Multiplier applied to the rate at each reduction, in (0, 1).
    pub factor: f64,
    /// Epochs without improvement before a reduction, at least 1.
    pub patience: usize,
    /// An epoch improves on the best only by more than this.
    pub min_delta: f64,
    /// Epochs to wait after a reduction before counting again.
    pub cooldown: usize,
    /// The lowest rate a reduction goes to.
    pub min_lr: f64,
}

impl Default for ReduceLrOnPlateau {
    /// Keras' defaults.
    fn default() -> Self {
        ReduceLrOnPlateau {
            monitor: Monitor::ValLoss,
            factor: 0.1,
            patience: 10,
            min_delta: 1e-4,
            cooldown: 0,
            min_lr: 0.0,
        }
    }
}

impl ReduceLrOnPlateau {
    /// Checks the rule: an error unless `factor` is in (0, 1), `patience` is at least
    /// 1, and `min_delta` and `min_lr` are finite and non-negative.
    pub fn validate(&self) -> Result<()> {
        if !(self.factor > 0.0 && self.factor < 1.0) {
            return Err(Error::invalid(format!(
                "learning-rate reduction factor {} must be in (0, 1)",
                self.factor
            )));
        }
        if self.patience == 0 {
            return Err(Error::invalid(
                "learning-rate reduction patience must be at least 1 epoch",
            ));
        }
        let non_negative = |v: f64| v.is_finite() && v >= 0.0;
        if !(non_negative(self.min_delta) && non_negative(self.min_lr)) {
            return Err(Error::invalid(format!(
                "learning-rate reduction: min_delta {} and min_lr {} must be finite numbers >= 0",
                self.min_delta, self.min_lr
            )));
        }
        Ok(())
    }
}

/// The running state of a [`ReduceLrOnPlateau`], stepped once per epoch.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Plateau {
    /// Best (lower-is-better) score so far; `None` before the first epoch.
    best: Option<f64>,
    wait: usize,
    cooldown: usize,
}

impl Plateau {
    /// The learning rate for the next epoch, given this epoch's (lower-is-better)
    /// score and rate; Keras' order of checks.
    fn step(&mut self, rule: &ReduceLrOnPlateau, score: f64, lr: f64) -> f64 {
        if self.cooldown > 0 {
            self.cooldown -= 1;
            self.wait = 0;
        }
        if improves(score, self.best, rule.min_delta) {
            self.best = Some(score);
            self.wait = 0;
        } else if self.cooldown == 0 {
            self.wait += 1;
            if self.wait >= rule.patience && lr > rule.min_lr {
                self.cooldown = rule.cooldown;
                self.wait = 0;
                return (lr * rule.factor).max(rule.min_lr);
            }
        }
        lr
    }
}

/// Whether a (lower-is-better) `score` beats `best` by more than `min_delta`, as
/// Keras compares against a best that starts at +inf: any finite score beats no
/// best at all, and NaN or +inf never improve (so a best is always finite, which a
/// backup's JSON can hold).
fn improves(score: f64, best: Option<f64>, min_delta: f64) -> bool {
    score < best.unwrap_or(f64::INFINITY) - min_delta
}

/// What [`fit`]'s loop carries from one epoch to the next besides the tensors on
/// the GPU: everything a [`Backup`] needs to continue the run exactly.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Progress {
    /// Optimizer steps of this fit (what `max_steps` counts).
    pub total_steps: u64,
    /// The model's step count (Adam's t).
    pub model_step: u32,
    /// The model's pass count (the dropout masks' draw number); absent in backups
    /// written before gradient accumulation, where it equals `model_step`.
    #[serde(default)]
    pub model_draws: Option<u32>,
    /// Learning rate of the next epoch (the schedule's base rate, with a schedule).
    pub lr: f64,
    /// Early stopping: the best (lower-is-better) score and the epochs since it.
    pub best_score: Option<f64>,
    pub since_best: usize,
    pub plateau: Plateau,
    /// Every epoch run so far; its length is the number of epochs done.
    pub history: History,
}

/// How to train.
#[derive(Clone, Debug, PartialEq)]
pub struct FitConfig {
    /// Number of epochs of the run (a resumed run's earlier ones included).
    pub epochs: usize,
    /// Samples per batch: per training pass, and per evaluation step of the
    /// validation split.
    pub batch_size: usize,
    /// Batches per optimizer step (gradient accumulation, as Hugging Face's
    /// `gradient_accumulation_steps`): their gradients are summed, each weighted by
    /// its share of the samples, so a step follows the mean gradient of
    /// `batch_size × accumulate` samples while memory holds one batch. An epoch's
    /// last step takes the batches left. 1 (the default) steps after every batch.
    pub accumulate: usize,
    /// Fraction of the training samples (the last ones, as Keras) held out.
    pub validation_split: f64,
    /// Stop after this many epochs without a better `monitor` value.
    pub patience: Option<usize>,
    /// What early stopping watches (and restore-best keeps the best of).
    pub monitor: Monitor,
    /// An epoch improves on the best only by more than this (Keras' `min_delta`).
    pub min_delta: f64,
    /// Lower the learning rate when the watched value stops improving.
    pub reduce_lr: Option<ReduceLrOnPlateau>,
    /// Change the learning rate every step (not with `reduce_lr`, as in Keras).
    pub lr_schedule: Option<LrSchedule>,
    /// With early stopping: put back the weights of the best epoch at the end.
    pub restore_best: bool,
    /// Seed of the per-epoch shuffles.
    pub seed: u64,
    /// Shuffle the training samples every epoch.
    pub shuffle: bool,
    /// Batch samples of similar length together (as Hugging Face's
    /// `group_by_length` and fairseq's length-sorted batches do), so a padded
    /// model's batches run short under dynamic padding
    /// ([`crate::nn::Model::dynamic_padding`]). Only the length a batch runs at
    /// matters (its longest sample's, rounded up to a power of two), so samples
    /// are grouped by that bucket, not sorted by exact length: each epoch's
    /// shuffled samples are sorted by bucket, longest first, keeping the shuffle
    /// within each bucket, then cut into batches, and the batches are shuffled.
    /// Batches thus change from epoch to epoch among all the samples of a bucket.
    /// Needs a model that pads dynamically. Off by default.
    pub group_by_length: bool,
    /// Stop after this many optimizer steps in total.
    pub max_steps: Option<u64>,
    /// Random shifts and flips of the training images (Keras' `RandomTranslation`,
    /// `RandomFlip`); `None` trains on the images as they are.
    pub augment: Option<Augment>,
    /// Print a line per epoch.
    pub verbose: bool,
    /// Keep the whole training state in this backup after every epoch, and resume
    /// from it when it holds one (Keras' `BackupAndRestore`).
    pub backup: Option<Backup>,
    /// The tag names of a token classifier whose tags are entity tags
    /// ([`crate::train::entities::are_entity_tags`]), by class: its validation
    /// then also measures the entity F1 (`val_f1`), which `monitor` may watch.
    /// Empty otherwise.
    pub entity_tags: Vec<String>,
    /// A question answerer's validation questions, whose windows are the
    /// validation split ([`fit_validated`]'s, given as [`Questions::split`]):
    /// its validation then also picks and scores the answers (`val_exact_match`,
    /// `val_f1`, SQuAD's in percent, as Hugging Face's `run_qa.py` evaluates),
    /// which `monitor` may watch. `None` otherwise.
    pub answers: Option<Arc<Questions>>,
}

impl Default for FitConfig {
    fn default() -> Self {
        FitConfig {
            epochs: 10,
            batch_size: 32,
            accumulate: 1,
            validation_split: 0.0,
            patience: None,
            monitor: Monitor::ValLoss,
            min_delta: 0.0,
            reduce_lr: None,
            lr_schedule: None,
            restore_best: true,
            seed: 42,
            shuffle: true,
            group_by_length: false,
            max_steps: None,
            augment: None,
            verbose: true,
            backup: None,
            entity_tags: Vec::new(),
            answers: None,
        }
    }
}

impl FitConfig {
    /// Checks the settings: an error for a zero batch size or patience, a validation
    /// split outside [0, 1), a bad reduction rule or schedule, both of those at once,
    /// or a negative or non-finite `min_delta`.
    pub fn validate(&self) -> Result<()> {
        if self.batch_size == 0 {
            return Err(Error::invalid("batch size must be at least 1"));
        }
        if self.accumulate == 0 {
            return Err(Error::invalid(
                "gradient accumulation takes at least 1 batch per optimizer step",
            ));
        }
        if !(0.0..1.0).contains(&self.validation_split) {
            return Err(Error::invalid(format!(
                "validation split {} is outside [0, 1)",
                self.validation_split
            )));
        }
        if self.patience == Some(0) {
            return Err(Error::invalid("patience must be at least 1 epoch"));
        }
        if let Some(r) = &self.reduce_lr {
            r.validate()?;
        }
        if let Some(s) = &self.lr_schedule {
            s.validate()?;
            if self.reduce_lr.is_some() {
                return Err(Error::invalid(
                    "a learning-rate schedule and ReduceLROnPlateau both set the rate: use one \
                     of them (Keras refuses the pair too)",
                ));
            }
        }
        if !(self.min_delta.is_finite() && self.min_delta >= 0.0) {
            return Err(Error::invalid(format!(
                "min_delta {} must be a finite number >= 0",
                self.min_delta
            )));
        }
        Ok(())
    }
}

/// What one epoch measured.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EpochStats {
    /// The epoch, from 1.
    pub epoch: usize,
    /// Mean training loss per label over the epoch's steps (per sample; per
    /// token for a sequence model).
    pub loss: f64,
    /// Training accuracy (per label); `None` without a classification loss.
    pub accuracy: Option<f64>,
    /// Validation loss; `None` without a validation split.
    pub val_loss: Option<f64>,
    /// Validation accuracy; `None` without a validation split or a classification loss.
    pub val_accuracy: Option<f64>,
    /// A token classifier's validation entity F1 ([`FitConfig::entity_tags`]),
    /// or a question answerer's validation F1 of its answers
    /// ([`FitConfig::answers`], in percent); `None` otherwise.
    #[serde(default)]
    pub val_f1: Option<f64>,
    /// A question answerer's validation exact match of its answers
    /// ([`FitConfig::answers`], in percent); `None` otherwise.
    #[serde(default)]
    pub val_exact_match: Option<f64>,
    /// Wall-clock time of the epoch's training steps (validation not included), seconds.
    pub seconds: f64,
    /// Training samples per second over `seconds`.
    pub images_per_second: f64,
    /// Optimizer steps taken in this epoch.
    pub steps: u64,
    /// The learning rate of this epoch's steps (of its last step, with a schedule).
    pub lr: f64,
    /// Tokens per sample the epoch line counts: 1 (it then shows samples per
    /// second), a sequence model's labelled tokens, or a question answerer's
    /// window (its two labels, start and end, are no tokens).
    #[serde(default = "one_label")]
    pub labels_per_sample: usize,
    /// The samples are texts (token ids that a model pads, one label each): the
    /// epoch line shows texts per second rather than images.
    #[serde(default)]
    pub texts: bool,
}

fn one_label() -> usize {
    1
}

/// Every epoch of a fit.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct History {
    /// Statistics of every epoch run, in order.
    pub epochs: Vec<EpochStats>,
    /// Epoch (1-based) whose weights the model holds at the end when restored.
    pub best_epoch: Option<usize>,
    /// Whether early stopping ended the run.
    pub stopped_early: bool,
}

/// Every plan a [`fit`] of `data` with `config` uses: training on full and partial
/// batches, evaluating the validation split. [`fit`] builds them all before its
/// first step ([`Model::prepare`]), so their pipelines compile in parallel.
pub fn fit_plans(model: &Model, data: &Split, config: &FitConfig) -> Result<Vec<PlanOptions>> {
    fit_plans_validated(model, data, None, config)
}

/// [`fit_plans`] of a [`fit_validated`] run when `validation` is given.
pub fn fit_plans_validated(
    model: &Model,
    data: &Split,
    validation: Option<&Split>,
    config: &FitConfig,
) -> Result<Vec<PlanOptions>> {
    config.validate()?;
    let (n, n_val) = sizes(data, validation, config)?;
    if n == 0 {
        return Ok(Vec::new());
    }
    let b = config.batch_size.min(n);
    let k = config.accumulate.min(n.div_ceil(b));
    let train = |batch| match k {
        1 => model.options(batch, true),
        _ => model.accumulating_options(batch),
    };
    let mut plans = vec![train(b)];
    // Grouped by length, the batches take every bucket between the shortest
    // sample's and the longest's; others are built when a batch first needs them.
    if config.group_by_length
        && let Some(lengths) = model.sample_lengths(&data.x)
    {
        let (shortest, longest) = (lengths.iter().min(), lengths.iter().max());
        let full = model.spec.input_shape()[0];
        for t in buckets_between(*shortest.unwrap_or(&0), *longest.unwrap_or(&full), full) {
            plans.push(PlanOptions {
                tokens: Some(t),
                ..train(b)
            });
        }
    }
    // The partial last batch, unless a step limit ends training before it.
    let steps = n.div_ceil(b).div_ceil(k) as u64;
    if !n.is_multiple_of(b) && config.max_steps.is_none_or(|m| m >= steps) {
        plans.push(train(n % b));
    }
    plans.extend(eval_plans(model, n_val, b));
    Ok(plans)
}

/// How many samples a fit trains and validates on: the validation given, or the
/// share `config.validation_split` of `data` (not both).
fn sizes(data: &Split, validation: Option<&Split>, config: &FitConfig) -> Result<(usize, usize)> {
    match validation {
        Some(v) if config.validation_split > 0.0 => Err(Error::invalid(format!(
            "validation data of {} samples is given, and a validation split of {} too: use one",
            v.len(),
            config.validation_split
        ))),
        Some(v) if v.is_empty() => Err(Error::invalid(
            "the validation data holds no sample: give some, or train without validation data",
        )),
        // A question answerer's validation windows are its questions'.
        Some(v) if config.answers.as_ref().is_some_and(|q| q.split() != *v) => Err(Error::invalid(format!(
            "the validation data ({} samples) are not the windows of the validation questions \
             given to score the answers ({} windows): give those windows as the validation data",
            v.len(),
            config.answers.as_ref().map_or(0, |q| q.len())
        ))),
        Some(v) => Ok((data.len(), v.len())),
        None if config.answers.is_some() => Err(Error::invalid(
            "a question answerer's validation questions are given to score the answers, but no \
             validation data: give their windows as the validation data, so that no question \
             straddles the training and validation samples",
        )),
        None => data.validation_sizes(config.validation_split),
    }
}

/// Trains `model` on `data`.
pub fn fit(model: &mut Model, ctx: &Context, data: &Split, config: &FitConfig) -> Result<History> {
    fit_with(model, ctx, data, config, &mut [])
}

/// [`fit_with`] validating on `validation` after every epoch (Keras'
/// `validation_data`) instead of splitting some of `data` off; `config`'s
/// `validation_split` must be 0.
pub fn fit_validated(
    model: &mut Model,
    ctx: &Context,
    data: &Split,
    validation: &Split,
    config: &FitConfig,
    callbacks: &mut [&mut dyn Callback],
) -> Result<History> {
    run_fit(
        model,
        ctx,
        (data, Some(validation)),
        config,
        &mut Hooks::of(config, callbacks),
    )
}

/// [`fit`] calling `callbacks` after every step and epoch and at every event of
/// the run (see [`callbacks`](super::callbacks)); any of them may stop the run.
/// With `config.verbose`, [`PrintProgress`] comes first.
pub fn fit_with(
    model: &mut Model,
    ctx: &Context,
    data: &Split,
    config: &FitConfig,
    callbacks: &mut [&mut dyn Callback],
) -> Result<History> {
    run_fit(
        model,
        ctx,
        (data, None),
        config,
        &mut Hooks::of(config, callbacks),
    )
}

/// The callbacks of one run: the console's (when verbose) and the caller's.
struct Hooks<'a, 'b> {
    console: Option<PrintProgress>,
    user: &'a mut [&'b mut dyn Callback],
}

impl<'a, 'b> Hooks<'a, 'b> {
    /// The console's callback (when `config` is verbose), then `user`'s.
    fn of(config: &FitConfig, user: &'a mut [&'b mut dyn Callback]) -> Self {
        Hooks {
            console: config.verbose.then_some(PrintProgress),
            user,
        }
    }

    fn each(&mut self, mut f: impl FnMut(&mut dyn Callback) -> Control) -> Control {
        let mut control = Control::Continue;
        if let Some(c) = &mut self.console {
            control = f(c);
        }
        for c in self.user.iter_mut() {
            if f(&mut **c) == Control::Stop {
                control = Control::Stop;
            }
        }
        control
    }

    fn batch_end(&mut self, batch: &BatchEnd) -> bool {
        self.each(|c| c.on_batch_end(batch)) == Control::Stop
    }

    fn epoch_end(&mut self, stats: &EpochStats, epochs: usize) -> bool {
        self.each(|c| c.on_epoch_end(stats, epochs)) == Control::Stop
    }

    fn event(&mut self, event: FitEvent<'_>) {
        self.each(|c| {
            c.on_event(&event);
            Control::Continue
        });
    }
}

fn run_fit(
    model: &mut Model,
    ctx: &Context,
    (data, validation): (&Split, Option<&Split>),
    config: &FitConfig,
    hooks: &mut Hooks<'_, '_>,
) -> Result<History> {
    config.validate()?;
    model.check_data(data)?;
    sizes(data, validation, config)?;
    let (train, val): (Cow<Split>, Option<Cow<Split>>) = match validation {
        Some(v) => {
            model.check_data(v)?;
            (Cow::Borrowed(data), Some(Cow::Borrowed(v)))
        }
        None => {
            let (t, v) = data.split_validation(config.validation_split)?;
            (Cow::Owned(t), v.map(Cow::Owned))
        }
    };
    let n = train.len();
    if n == 0 {
        return Err(Error::invalid("no training samples"));
    }
    let b = config.batch_size.min(n);
    let batches_per_epoch = n.div_ceil(b);
    // Batches per optimizer step: an epoch's batches at most.
    let k = config.accumulate.min(batches_per_epoch);
    let steps_per_epoch = batches_per_epoch.div_ceil(k);
    let augment = match config.augment.filter(|a| !a.is_identity()) {
        Some(a) => {
            a.validate(model.spec.input_shape())?;
            let s = model.spec.input_shape();
            Some((a, [s[0], s[1], s[2]]))
        }
        None => None,
    };
    let buckets = match config.group_by_length {
        true => Some(model.sample_buckets(&train.x).ok_or_else(|| {
            let why = match model.dynamic_padding_unavailable() {
                Some(why) => format!(" ({why})"),
                None => String::new(),
            };
            Error::invalid(format!(
                "grouping batches by length needs a model of padded token ids (an Embedding \
                 with a mask_id reading the input) that pads dynamically{why}"
            ))
        })?),
        false => None,
    };
    let buckets = buckets.as_deref();
    let mut scratch = Vec::new();
    model.prepare(ctx, &fit_plans_validated(model, data, validation, config)?)?;
    // Running loss sum after every batch of an epoch, copied on the GPU.
    let trace = Tensor::zeros(ctx, &[batches_per_epoch], DType::F32)?;
    let early = config.patience.is_some();
    // With a moving average the run ends with the averages: no best snapshot.
    let best: Vec<Tensor> = if early && config.restore_best && model.ema().is_none() {
        model
            .store
            .params
            .iter()
            .map(|p| Tensor::zeros(ctx, &p.shape, DType::F32))
            .collect::<Result<_>>()?
    } else {
        Vec::new()
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(config.seed);
    let mut order: Vec<usize> = (0..n).collect();
    // One set of buffers per batch of an optimizer step.
    let mut gathered: Vec<Gathered> = (0..k).map(|_| Gathered::default()).collect();
    let classification = model.loss.is_classification();
    if early {
        let needs_accuracy = matches!(config.monitor, Monitor::ValAccuracy | Monitor::Accuracy);
        if needs_accuracy && !classification {
            return Err(Error::invalid(format!(
                "early stopping on {}: loss {} has no accuracy; monitor val_loss or loss",
                config.monitor.name(),
                model.loss.name()
            )));
        }
        if config.monitor == Monitor::ValAccuracy && val.is_none() {
            return Err(Error::invalid(
                "early stopping on val_accuracy needs a validation split (--val-split)",
            ));
        }
        if config.monitor == Monitor::ValF1
            && (val.is_none() || (config.entity_tags.is_empty() && config.answers.is_none()))
        {
            return Err(Error::invalid(
                "early stopping on val_f1 needs a token classifier of entity tags (B-PER, I-PER, \
                 O...) or a question answerer, and a validation split (--val-split, or a \
                 validation file)",
            ));
        }
        if config.monitor == Monitor::ValExactMatch && config.answers.is_none() {
            return Err(Error::invalid(
                "early stopping on val_exact_match needs a question answerer and its validation \
                 questions (--val-split, or a validation file)",
            ));
        }
    }
    // Steps this fit takes unless early stopping ends it: what a cosine decay
    // without decay steps spreads over.
    let planned = config
        .max_steps
        .unwrap_or(u64::MAX)
        .min((config.epochs * steps_per_epoch) as u64);
    let schedule = config.lr_schedule.map(|s| s.resolved(planned));
    let settings = match &config.backup {
        Some(_) => {
            let mut s = backup::settings(model, data, val.as_ref().map_or(0, |v| v.len()), config, schedule);
            if let Some(v) = validation {
                let crc = backup::split_crc32(v);
                s.insert("validation_data".into(), format!("{} samples, {crc}", v.len()));
            }
            s
        }
        None => Default::default(),
    };
    let mut p = Progress {
        lr: model.optimizer.lr() as f64,
        ..Progress::default()
    };
    if let Some(backup) = &config.backup {
        if let Some(restored) = backup::restore(backup, ctx, model, &best, &settings)? {
            p = restored;
            let path = backup.path();
            hooks.event(FitEvent::Resumed {
                path: &path,
                epochs_done: p.history.epochs.len(),
                epochs: config.epochs,
                steps: p.total_steps,
                finished: p.history.stopped_early,
            });
        }
        // Each epoch's shuffle follows from the previous ones: replay those done.
        for _ in 0..p.history.epochs.len() {
            next_epoch_order(&mut order, &mut rng, config, buckets, b);
        }
    }
    let finished =
        |p: &Progress| p.history.stopped_early || config.max_steps.is_some_and(|m| p.total_steps >= m);

    // Loss and accuracy are means over labels: per token for a sequence model.
    // The epoch line's rate counts tokens: the labelled ones, or a question
    // answerer's window (its two labels, start and end, are no tokens).
    let tokens_per_sample = if model.table_labels() == crate::data::text_table::TableLabels::Answers {
        model.spec.input_shape()[0]
    } else {
        model.label_positions()
    };
    // The labels each training sample counts in the means.
    let counted_by_sample = train.y.counted_by_sample();
    let first = p.history.epochs.len() + 1;
    let mut stop = false;
    for epoch in first..=config.epochs {
        if finished(&p) || stop {
            break;
        }
        let start = Instant::now();
        next_epoch_order(&mut order, &mut rng, config, buckets, b);
        model.acc.reset(ctx)?;
        let mut seen = 0usize;
        // The labels the means count (a sequence's positions with a target).
        let mut counted = 0usize;
        // Batches run this epoch (forward/backward passes).
        let mut passes = 0usize;
        let mut steps = 0u64;
        let mut step_lr = p.lr;
        let bar = progress_bar(config.verbose, steps_per_epoch as u64, epoch, config.epochs);
        let mut last_tick = Instant::now();
        let chunks: Vec<&[usize]> = order.chunks(b).collect();
        for (g, group) in chunks.chunks(k).enumerate() {
            if config.max_steps.is_some_and(|m| p.total_steps >= m) {
                break;
            }
            // Batch i of the epoch, for the augmentation's stream and the trace.
            let first = g * k;
            for (j, (idx, buf)) in group.iter().zip(&mut gathered).enumerate() {
                train.gather(idx, &mut buf.x, &mut buf.labels, &mut buf.values);
                if let Some((a, shape)) = &augment {
                    a.apply(
                        &mut buf.x,
                        *shape,
                        &mut Augment::rng(config.seed, epoch, first + j),
                        &mut scratch,
                    );
                }
            }
            let batches: Vec<Batch> = group
                .iter()
                .zip(&gathered)
                .map(|(idx, buf)| Batch {
                    x: &buf.x,
                    labels: &buf.labels,
                    values: &buf.values,
                    len: idx.len(),
                })
                .collect();
            if let Some(s) = &schedule {
                step_lr = s.rate(p.lr, p.total_steps, planned);
            }
            let trace_copy = |enc: &mut wgpu::CommandEncoder, acc: &Accumulators, i: usize| {
                enc.copy_buffer_to_buffer(&acc.loss_sum.buffer, 0, &trace.buffer, (i * 4) as u64, 4);
            };
            if k == 1 {
                model.train_step(ctx, &batches[0], step_lr as f32, |enc, acc| {
                    trace_copy(enc, acc, first)
                })?;
            } else {
                model.train_step_accumulated(ctx, &batches, step_lr as f32, |enc, acc, j| {
                    trace_copy(enc, acc, first + j)
                })?;
            }
            seen += group.iter().map(|idx| idx.len()).sum::<usize>();
            counted += group
                .iter()
                .flat_map(|idx| idx.iter())
                .map(|&i| counted_by_sample[i])
                .sum::<usize>();
            passes += group.len();
            steps += 1;
            p.total_steps += 1;
            let end = BatchEnd {
                epoch,
                step: steps,
                steps_per_epoch: steps_per_epoch as u64,
                total_steps: p.total_steps,
            };
            stop |= hooks.batch_end(&end);
            if let Some(bar) = &bar {
                bar.set_position(steps);
                // A progress update reads the two GPU sums, a few times a second.
                if last_tick.elapsed().as_secs_f64() > 0.3 {
                    last_tick = Instant::now();
                    let (l, c) = model.acc.read(ctx)?;
                    let labels = counted.max(1) as f64;
                    let mut msg = format!("loss: {:.4}", l / labels);
                    if classification {
                        msg += &format!(" - accuracy: {:.4}", c / labels);
                    }
                    bar.set_message(msg);
                }
            }
            if stop {
                break;
            }
        }
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        if steps == 0 {
            break;
        }
        p.model_step = model.step;
        p.model_draws = Some(model.draws);
        let (loss_sum, correct) = model.acc.read(ctx)?;
        let labels = counted.max(1) as f64;
        let loss = loss_sum / labels;
        if !loss.is_finite() {
            let sums = trace.to_f32(ctx)?;
            let batch = sums[..passes]
                .iter()
                .position(|s| !s.is_finite())
                .map_or(passes, |s| s + 1);
            let at = match k {
                1 => format!("step {batch} of {steps}"),
                k => format!("batch {batch} (step {} of {steps})", batch.div_ceil(k)),
            };
            return Err(Error::Training(format!(
                "the loss became {} at epoch {epoch}, {at}; lower the learning rate or check the data",
                if loss.is_nan() { "NaN" } else { "infinite" }
            )));
        }
        let seconds = start.elapsed().as_secs_f64();
        let (val_loss, val_accuracy, val_f1, val_exact_match) = match (&val, &config.answers) {
            // A question answerer: its answers too, from the same pass's logits.
            // The validation data are the questions' windows (checked in `sizes`).
            (Some(v), Some(questions)) => {
                let (e, _) = super::evaluate::evaluate_answers_of(model, ctx, (v, questions), b)?;
                let a = e.answers.as_ref();
                (
                    Some(e.loss),
                    e.accuracy,
                    a.map(|a| a.f1),
                    a.map(|a| a.exact_match),
                )
            }
            // A token classifier of entity tags: its tags too, for the entity F1.
            (Some(v), None) if !config.entity_tags.is_empty() => {
                let (e, tags) = super::evaluate::evaluate_with_predictions(model, ctx, v, b)?;
                let f1 = super::entities::entity_scores(v, &tags, &config.entity_tags).map(|m| m.overall.f1);
                (Some(e.loss), e.accuracy, f1, None)
            }
            (Some(v), None) => {
                let (l, c) = evaluate_sums(model, ctx, v, b)?;
                (Some(l), if classification { Some(c) } else { None }, None, None)
            }
            (None, _) => (None, None, None, None),
        };
        let stats = EpochStats {
            epoch,
            loss,
            accuracy: classification.then(|| correct / labels),
            val_loss,
            val_accuracy,
            val_f1,
            val_exact_match,
            seconds,
            images_per_second: seen as f64 / seconds,
            steps,
            lr: step_lr,
            labels_per_sample: tokens_per_sample,
            texts: model.pads_texts(),
        };
        stop |= hooks.epoch_end(&stats, config.epochs);
        let watched = config.monitor.score(&stats);
        if let Some(rule) = &config.reduce_lr {
            let score = rule.monitor.score(&stats).ok_or_else(|| {
                Error::invalid(format!(
                    "learning-rate reduction on {}: this run does not measure it (no \
                     validation split or no accuracy)",
                    rule.monitor.name()
                ))
            })?;
            let next = p.plateau.step(rule, score, p.lr);
            if next != p.lr {
                hooks.event(FitEvent::LearningRateReduced { epoch, lr: next });
            }
            p.lr = next;
        }
        p.history.epochs.push(stats);

        if early {
            let score = watched.ok_or_else(|| {
                Error::invalid(format!(
                    "early stopping on {}: not measured",
                    config.monitor.name()
                ))
            })?;
            if improves(score, p.best_score, config.min_delta) {
                p.best_score = Some(score);
                p.since_best = 0;
                p.history.best_epoch = Some(epoch);
                if !best.is_empty() {
                    let mut enc = ctx.device.create_command_encoder(&Default::default());
                    model.copy_params(&mut enc, &best, false);
                    ctx.submit(enc.finish())?;
                }
            } else {
                p.since_best += 1;
                if p.since_best >= config.patience.unwrap_or(usize::MAX) {
                    p.history.stopped_early = true;
                    hooks.event(FitEvent::EarlyStopped {
                        epoch,
                        epochs_without_improvement: p.since_best,
                    });
                }
            }
        }
        // A backup holds whole epochs only: a run cut short by max_steps (with its
        // backup kept) resumes from the last complete one.
        if let Some(b) = &config.backup
            && steps == steps_per_epoch as u64
        {
            backup::save(b, ctx, model, &best, &settings, &p)?;
        }
    }
    let history = p.history;
    // The moving average takes the weights' place (restore-best does not apply to
    // a run that keeps one: no snapshot was taken).
    if !history.epochs.is_empty() {
        model.finalize_ema(ctx)?;
    }
    if !best.is_empty() && history.best_epoch.is_some() {
        let last = history.epochs.len();
        if history.best_epoch != Some(last) {
            let mut enc = ctx.device.create_command_encoder(&Default::default());
            model.copy_params(&mut enc, &best, true);
            ctx.submit(enc.finish())?;
            hooks.event(FitEvent::RestoredBest {
                epoch: history.best_epoch.unwrap_or(last),
            });
        }
    }
    ctx.wait()?;
    if let Some(b) = &config.backup {
        backup::finish(b);
    }
    Ok(history)
}

/// Lays an epoch's samples out in `order` (batches of `b` in turn): shuffled
/// when `config.shuffle`; then, given each sample's bucket (the tokens it runs
/// at, [`Model::sample_buckets`]), grouped by it (see
/// [`FitConfig::group_by_length`]): sorted by bucket, largest first, the
/// shuffled order kept within each, and when shuffling the whole batches put in
/// a random order (a partial one stays last).
fn next_epoch_order(
    order: &mut [usize],
    rng: &mut rand::rngs::StdRng,
    config: &FitConfig,
    buckets: Option<&[usize]>,
    b: usize,
) {
    if config.shuffle {
        order.shuffle(rng);
    }
    let Some(buckets) = buckets else {
        return;
    };
    // Stable: samples of one bucket stay in their shuffled order.
    order.sort_by_key(|&i| std::cmp::Reverse(buckets[i]));
    if config.shuffle {
        let whole = order.len() / b * b;
        let mut batches: Vec<&[usize]> = order[..whole].chunks(b).collect();
        batches.shuffle(rng);
        let shuffled = batches.concat();
        order[..whole].copy_from_slice(&shuffled);
    }
}

/// One batch gathered on the CPU: samples, labels or target values.
#[derive(Default)]
struct Gathered {
    x: Vec<f32>,
    labels: Vec<u32>,
    values: Vec<f32>,
}

/// A progress bar for one epoch when output goes to a terminal; `None` otherwise
/// (plain epoch lines only, for logs and pipes).
#[cfg(feature = "cli")]
fn progress_bar(verbose: bool, steps: u64, epoch: usize, epochs: usize) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if !verbose || !std::io::stdout().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(steps);
    let style = indicatif::ProgressStyle::with_template(
        "Epoch {prefix} [{bar:30}] {pos}/{len} {elapsed_precise} eta {eta} - {msg}",
    )
    .map(|s| s.progress_chars("=> "))
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_prefix(format!("{epoch}/{epochs}"));
    Some(bar)
}

/// Without the `cli` feature there is no progress bar (plain epoch lines only).
#[cfg(not(feature = "cli"))]
fn progress_bar(_verbose: bool, _steps: u64, _epoch: usize, _epochs: usize) -> Option<NoBar> {
    None
}

/// Stands in for the progress bar without the `cli` feature.
#[cfg(not(feature = "cli"))]
struct NoBar;

#[cfg(not(feature = "cli"))]
impl NoBar {
    fn set_position(&self, _: u64) {}
    fn set_message(&self, _: String) {}
    fn finish_and_clear(&self) {}
}

/// A Keras-like epoch line.
pub fn epoch_line(s: &EpochStats, epochs: usize) -> String {
    let mut line = format!(
        "Epoch {}/{epochs} - {:.2}s - loss: {:.4}",
        s.epoch, s.seconds, s.loss
    );
    if let Some(a) = s.accuracy {
        line += &format!(" - accuracy: {a:.4}");
    }
    if let Some(l) = s.val_loss {
        line += &format!(" - val_loss: {l:.4}");
    }
    if let Some(a) = s.val_accuracy {
        line += &format!(" - val_accuracy: {a:.4}");
    }
    // A question answerer's scores are SQuAD's, in percent.
    if let Some(m) = s.val_exact_match {
        line += &format!(" - val_exact_match: {m:.2}");
    }
    if let Some(f) = s.val_f1 {
        match s.val_exact_match {
            Some(_) => line += &format!(" - val_f1: {f:.2}"),
            None => line += &format!(" - val_f1: {f:.4}"),
        }
    }
    if s.labels_per_sample > 1 {
        line += &format!(
            " - {} tokens/s",
            rate(s.images_per_second * s.labels_per_sample as f64)
        );
    } else {
        let noun = if s.texts { "texts" } else { "images" };
        line += &format!(" - {} {noun}/s", rate(s.images_per_second));
    }
    line
}

/// A pace per second for the epoch line: whole numbers from 10 up, two decimals
/// below (a large model on a CPU adapter manages under one sample a second).
fn rate(per_second: f64) -> String {
    if per_second >= 10.0 {
        format!("{per_second:.0}")
    } else {
        format!("{per_second:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grouping_by_length_keeps_every_sample_and_mixes_each_bucket() {
        let (n, b) = (503, 4);
        let buckets: Vec<usize> = (0..n).map(|i| [8, 16, 32, 64][(i * 37) % 61 % 4]).collect();
        let config = FitConfig {
            group_by_length: true,
            ..FitConfig::default()
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut order: Vec<usize> = (0..n).collect();
        // The tokens an epoch runs: each batch at its largest bucket.
        let cost = |order: &[usize]| -> usize {
            order
                .chunks(b)
                .map(|c| c.len() * c.iter().map(|&i| buckets[i]).max().unwrap())
                .sum()
        };
        let mut shuffled = order.clone();
        shuffled.shuffle(&mut rng);
        let least: usize = buckets.iter().sum();
        let mut batches_seen = std::collections::HashSet::new();
        for epoch in 0..3 {
            next_epoch_order(&mut order, &mut rng, &config, Some(&buckets), b);
            let mut sorted = order.clone();
            sorted.sort();
            assert_eq!(sorted, (0..n).collect::<Vec<_>>(), "every sample once");
            // Batches mix buckets only where two meet: at most 3 of 126.
            let mixed = order
                .chunks(b)
                .filter(|c| c.iter().any(|&i| buckets[i] != buckets[c[0]]))
                .count();
            assert!(mixed <= 3, "{mixed} batches mix buckets");
            assert!(cost(&order) <= least + 3 * 3 * 64, "{} vs {least}", cost(&order));
            assert!(cost(&shuffled) > least * 3 / 2);
            // Within a bucket, each epoch makes new batches.
            let fresh = order
                .chunks(b)
                .filter(|c| {
                    let mut c = c.to_vec();
                    c.sort();
                    batches_seen.insert(c)
                })
                .count();
            assert!(epoch == 0 || fresh > 100, "epoch {epoch}: {fresh} new batches");
        }
        // Unshuffled: the data's order within each bucket, largest first.
        let plain = FitConfig {
            shuffle: false,
            ..config
        };
        let mut order: Vec<usize> = (0..n).collect();
        next_epoch_order(&mut order, &mut rng, &plain, Some(&buckets), b);
        assert!(
            order.windows(2).all(|w| {
                buckets[w[0]] > buckets[w[1]] || (buckets[w[0]] == buckets[w[1]] && w[0] < w[1])
            })
        );
    }

    #[test]
    fn plateau_reduces_as_keras_does() {
        let rule = ReduceLrOnPlateau {
            factor: 0.5,
            patience: 2,
            min_delta: 0.0,
            cooldown: 1,
            min_lr: 0.3,
            ..ReduceLrOnPlateau::default()
        };
        let mut p = Plateau::default();
        let mut lr = 1.0;
        let mut lrs = Vec::new();
        // Improves, then flat: reduce after 2 flat epochs; the next epoch ends the
        // cooldown and (as in Keras, which decrements first) already counts, so the
        // second reduction comes one epoch later; then min_lr holds.
        for score in [3.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0] {
            lr = p.step(&rule, score, lr);
            lrs.push(lr);
        }
        assert_eq!(lrs, vec![1.0, 1.0, 1.0, 0.5, 0.5, 0.3, 0.3, 0.3, 0.3, 0.3]);
        // An improvement resets the count.
        let rule = ReduceLrOnPlateau {
            patience: 2,
            factor: 0.5,
            min_delta: 0.0,
            ..ReduceLrOnPlateau::default()
        };
        let mut p = Plateau::default();
        let lrs: Vec<f64> = [5.0, 5.0, 4.0, 4.0, 4.0]
            .iter()
            .map(|&s| p.step(&rule, s, 1.0))
            .collect();
        assert_eq!(lrs, vec![1.0, 1.0, 1.0, 1.0, 0.5]);
    }

    #[test]
    fn bad_reduction_settings_are_errors() {
        for (factor, patience, min_lr) in [(1.0, 1, 0.0), (0.0, 1, 0.0), (0.5, 0, 0.0), (0.5, 1, -1.0)] {
            let r = ReduceLrOnPlateau {
                factor,
                patience,
                min_lr,
                ..ReduceLrOnPlateau::default()
            };
            assert!(r.validate().is_err(), "{r:?}");
        }
    }
}
