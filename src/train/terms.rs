//! Training a model on the loss terms it computes itself (a variational
//! autoencoder, a functional model with an [`Objective::Terms`]): epochs over
//! shuffled samples, each term's mean on the training and test samples after every
//! epoch, a step limit, and [`Backup`] of the whole state after every complete
//! epoch, so a stopped run resumes with the results it would have had.
//!
//! A resumed run replays the completed epochs' shuffles from the seed; noise and
//! dropout follow from the step number, which the backup restores, so the resumed
//! run's numbers equal an uninterrupted run's bit for bit.

use std::collections::BTreeMap;
use std::time::Instant;

use rand::SeedableRng;
use rand::seq::SliceRandom;

use crate::error::{Error, Result};
use crate::gpu::Context;
use crate::graph::{Objective, WeightedTerm};
use crate::nn::GraphModel;
use crate::train::backup::{self, Backup};

/// How [`fit_terms`] trains.
#[derive(Clone, Debug, PartialEq)]
pub struct TermsConfig {
    /// Epochs to train (a resumed run counts those already done).
    pub epochs: usize,
    /// Samples per step.
    pub batch_size: usize,
    /// The learning rate.
    pub lr: f32,
    /// Seed of the shuffles.
    pub seed: u64,
    /// Shuffle the samples every epoch.
    pub shuffle: bool,
    /// Stop after this many optimizer steps in all.
    pub max_steps: Option<u64>,
    /// Samples per step when evaluating.
    pub eval_batch: usize,
    /// Keep the training state here after every complete epoch and resume from it.
    pub backup: Option<Backup>,
    /// Describes the model in the backup's settings (a resumed run must describe
    /// its model the same way), e.g. its JSON.
    pub model: String,
}

/// One epoch's record.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TermsEpoch {
    /// The epoch, from 1.
    pub epoch: usize,
    /// Each term's mean per sample over the epoch's training steps.
    pub train: Vec<f64>,
    /// Each term's mean per sample over the test samples after the epoch.
    pub test: Vec<f64>,
    /// Seconds the epoch's training took.
    pub seconds: f64,
    /// Samples trained on.
    pub samples: usize,
}

/// What a backup records of the loop.
#[derive(serde::Serialize, serde::Deserialize)]
struct TermsProgress {
    step: u32,
    history: Vec<TermsEpoch>,
}

/// What [`fit_terms`] tells its caller.
pub enum TermsEvent<'a> {
    /// The run continues from a backup holding `epochs` epochs.
    Resumed {
        /// The backup file.
        path: &'a std::path::Path,
        /// The epochs it holds.
        epochs: &'a [TermsEpoch],
    },
    /// An epoch ended.
    Epoch(&'a TermsEpoch),
}

/// The weighted sum of the term values `values` of `terms`: the loss trained (terms
/// of weight 0 are reported only and take no part, even when not finite).
pub fn weighted_total(terms: &[WeightedTerm], values: &[f64]) -> f64 {
    terms
        .iter()
        .zip(values)
        .filter(|(t, _)| t.weight != 0.0)
        .map(|(t, v)| f64::from(t.weight) * v)
        .sum()
}

/// [`weighted_total`] of `net`'s terms (0 unless its objective is `Terms`).
pub fn total(net: &GraphModel, values: &[f64]) -> f64 {
    match &net.objective {
        Objective::Terms(terms) => weighted_total(terms, values),
        _ => 0.0,
    }
}

/// What a resumed run of these loops must share with the run that wrote the
/// backup: the model's description, the optimizer (at `config.lr`), the dropout and
/// noise seeds of `nets`, the batch size, shuffling and its seed, and the `samples`
/// training samples `data` (count and CRC-32).
pub(crate) fn settings(
    nets: &[&GraphModel],
    data: &[f32],
    samples: usize,
    config: &TermsConfig,
) -> BTreeMap<String, String> {
    let optimizer = nets
        .first()
        .map(|n| format!("{:?}", n.optimizer.with_lr(config.lr)));
    let seeds: Vec<String> = nets.iter().map(|n| backup::random_seeds(&n.graph)).collect();
    let entries = [
        ("model", config.model.clone()),
        ("optimizer", optimizer.unwrap_or_default()),
        ("random_seeds", seeds.join(" ")),
        ("batch_size", config.batch_size.to_string()),
        ("seed", config.seed.to_string()),
        ("shuffle", config.shuffle.to_string()),
        ("samples", samples.to_string()),
        ("data_crc32", backup::data_crc32(data)),
    ];
    let mut settings: BTreeMap<String, String> =
        entries.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    // Only where an average is kept, so earlier backups keep matching.
    let averages: Vec<String> = nets
        .iter()
        .filter_map(|n| n.ema().map(|m| m.get().to_string()))
        .collect();
    if !averages.is_empty() {
        settings.insert("ema".into(), averages.join(" "));
    }
    settings
}

/// Trains `net` on the samples `train` (flat, `net.sample_len()` values each) and
/// evaluates it on `test` after every epoch, as `config` says; `on_event` hears of
/// a resumption and of every epoch. Returns every epoch's record (a resumed run's
/// included). A non-finite loss stops the run with an error.
pub fn fit_terms(
    ctx: &Context,
    net: &mut GraphModel,
    train: &[f32],
    test: &[f32],
    config: &TermsConfig,
    mut on_event: impl FnMut(TermsEvent<'_>),
) -> Result<Vec<TermsEpoch>> {
    if config.batch_size == 0 || config.eval_batch == 0 {
        return Err(Error::invalid("batch size must be at least 1"));
    }
    let sample = net.sample_len().max(1);
    if !train.len().is_multiple_of(sample) || !test.len().is_multiple_of(sample) || train.is_empty() {
        return Err(Error::shape(
            "fit_terms",
            format!(
                "{} training and {} test values are not whole samples of {sample} (at least one training sample)",
                train.len(),
                test.len()
            ),
        ));
    }
    let settings = match &config.backup {
        Some(_) => settings(&[net], train, train.len() / sample, config),
        None => BTreeMap::new(),
    };
    let mut history = Vec::new();
    if let Some(b) = &config.backup
        && let Some(p) = backup::read_state::<TermsProgress>(b, ctx, &net.store, &[], &settings, |_| false)?
    {
        net.step = p.step;
        history = p.history;
        on_event(TermsEvent::Resumed {
            path: &b.path(),
            epochs: &history,
        });
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(config.seed);
    let mut order: Vec<usize> = (0..train.len() / sample).collect();
    // Each epoch's shuffle follows from the previous ones: replay those done.
    if config.shuffle {
        for _ in 0..history.len() {
            order.shuffle(&mut rng);
        }
    }
    for epoch in history.len() + 1..=config.epochs {
        if config.shuffle {
            order.shuffle(&mut rng);
        }
        let take = match config.max_steps {
            Some(s) => order
                .len()
                .min((s as usize).saturating_sub(net.step as usize) * config.batch_size),
            None => order.len(),
        };
        if take == 0 {
            break;
        }
        let start = Instant::now();
        let train_terms = net.train_epoch(ctx, train, &order[..take], config.batch_size, config.lr)?;
        let seconds = start.elapsed().as_secs_f64();
        let test_terms = if test.is_empty() {
            Vec::new()
        } else {
            net.evaluate(ctx, test, config.eval_batch)?
        };
        let loss = total(net, &train_terms);
        history.push(TermsEpoch {
            epoch,
            train: train_terms,
            test: test_terms,
            seconds,
            samples: take,
        });
        on_event(TermsEvent::Epoch(history.last().expect("pushed")));
        if !loss.is_finite() {
            return Err(Error::invalid(format!(
                "the loss is {loss} after epoch {epoch}: lower the learning rate"
            )));
        }
        // A backup holds whole epochs only: a run cut short by max_steps resumes
        // from the last complete one.
        if let Some(b) = &config.backup
            && take == order.len()
        {
            let progress = TermsProgress {
                step: net.step,
                history: history.clone(),
            };
            backup::write_state(b, ctx, &net.store, None, &settings, &progress)?;
        }
    }
    ctx.wait()?;
    if let Some(b) = &config.backup {
        backup::finish(b);
    }
    Ok(history)
}
