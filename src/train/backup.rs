//! Keras' `BackupAndRestore` for [`fit`](super::fit()): after every complete epoch the
//! whole training state goes to one file, so a run that stops (killed, crashed, out
//! of time) continues where it was when started again, with the results it would
//! have had without stopping.
//!
//! The file, `DIR/training-state.safetensors`, holds
//! - `param/NAME`: every parameter (moving statistics included), PyTorch names;
//! - `optimizer/NAME/K`: the optimizer's state tensor `K` of each trainable
//!   parameter (Adam: 0 = m, 1 = v);
//! - `best/NAME`: the best epoch's weights, when early stopping restores them;
//! - `ema/NAME`: the moving average of each trainable weight, when the model keeps one;
//!
//! and, as safetensors metadata, the settings a resumed run must share with the
//! run that wrote it (`settings`, a JSON object of strings) and the loop's progress
//! (`progress`, JSON: steps, learning rate, early-stopping and plateau counters,
//! the history so far). What it does not hold follows from what it does: each
//! epoch's shuffle from the seed (replayed), dropout masks from the pass number.
//! It is written atomically: a crash while saving leaves the previous epoch's
//! state.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use crate::checkpoint::{self, f32_entry};
use crate::data::{Split, Targets};
use crate::error::{Error, Result};
use crate::gpu::{Context, Tensor};
use crate::graph::{Graph, Op, ParamStore};
use crate::nn::Model;
use crate::train::fit::{FitConfig, Progress};
use crate::train::schedule::LrSchedule;

/// The file a backup folder holds.
pub const FILE_NAME: &str = "training-state.safetensors";
const FORMAT_KEY: &str = "format";
const FORMAT: &str = "wgml-training-state-1";
const SETTINGS_KEY: &str = "settings";
const PROGRESS_KEY: &str = "progress";
/// Settings [`settings`] records only where they are not their default (so backups
/// written before they existed still match), with that default.
const OPTIONAL_SETTINGS: [(&str, &str); 6] = [
    ("accumulate", "1"),
    ("no_decay", "[]"),
    ("label_smoothing", "0"),
    ("class_weights", "[]"),
    ("ema", "none"),
    ("validation_data", "none"),
];

/// Where [`fit`](super::fit()) keeps its training state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backup {
    /// Folder of the state file (created when missing).
    pub dir: PathBuf,
    /// Remove the state file when `fit` returns normally (Keras'
    /// `delete_checkpoint=True`); keep it to train for more epochs later.
    pub delete_when_done: bool,
}

impl Backup {
    /// A backup in `dir`, removed when training ends normally.
    pub fn new(dir: impl Into<PathBuf>) -> Backup {
        Backup {
            dir: dir.into(),
            delete_when_done: true,
        }
    }

    /// The state file.
    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE_NAME)
    }

    fn create_dir(&self) -> Result<()> {
        std::fs::create_dir_all(&self.dir).map_err(|source| Error::Io {
            path: self.dir.display().to_string(),
            source,
        })
    }
}

/// What a resumed run must share with the run that wrote the backup, each as text:
/// the model (layers, loss, optimizer and its hyper-parameters, dropout seeds), the
/// fit settings that shape the sequence of steps (the learning-rate `schedule` as
/// resolved for this fit), and the training data (sizes and a CRC-32 of its
/// values). The number of epochs and the step limit may differ, unless a schedule
/// spreads over them.
pub(crate) fn settings(
    model: &Model,
    data: &Split,
    validation: usize,
    config: &FitConfig,
    schedule: Option<LrSchedule>,
) -> BTreeMap<String, String> {
    let entries = [
        ("model", format!("{:?}", model.spec)),
        ("loss", model.loss.name().to_string()),
        ("optimizer", format!("{:?}", model.optimizer)),
        ("random_seeds", random_seeds(&model.graph)),
        ("clip_norm", format!("{:?}", model.clip_norm.map(|c| c.get()))),
        // Fused and separate kernels round differently.
        ("fuse", model.fuse.to_string()),
        ("batch_size", config.batch_size.to_string()),
        ("validation_split", config.validation_split.to_string()),
        ("seed", config.seed.to_string()),
        ("shuffle", config.shuffle.to_string()),
        ("patience", format!("{:?}", config.patience)),
        ("monitor", config.monitor.name().to_string()),
        ("min_delta", config.min_delta.to_string()),
        ("restore_best", config.restore_best.to_string()),
        ("reduce_lr", format!("{:?}", config.reduce_lr)),
        (
            "augment",
            format!("{:?}", config.augment.filter(|a| !a.is_identity())),
        ),
        ("lr_schedule", format!("{schedule:?}")),
        ("samples", format!("{} ({validation} for validation)", data.len())),
        ("data_crc32", split_crc32(data)),
    ];
    let mut settings: BTreeMap<String, String> =
        entries.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    // Only where batches are accumulated, so earlier backups keep matching.
    if config.accumulate != 1 {
        settings.insert("accumulate".into(), config.accumulate.to_string());
    }
    if config.group_by_length {
        settings.insert("group_by_length".into(), "true".into());
    }
    if !model.dynamic_padding && model.pads_texts() {
        settings.insert("dynamic_padding".into(), "false".into());
    }
    if !model.no_decay().is_empty() {
        settings.insert("no_decay".into(), format!("{:?}", model.no_decay()));
    }
    if let Some(e) = model.label_smoothing {
        settings.insert("label_smoothing".into(), e.get().to_string());
    }
    if let Some(w) = model.class_weights() {
        settings.insert("class_weights".into(), format!("{w:?}"));
    }
    if let Some(m) = model.ema() {
        settings.insert("ema".into(), m.get().to_string());
    }
    settings
}

/// A CRC-32 of `split`'s samples and targets, as backups record the data a run
/// trains (and validates) on.
pub(crate) fn split_crc32(split: &Split) -> String {
    let mut crc = crc32fast::Hasher::new();
    crc.update(bytemuck::cast_slice(&split.x));
    match &split.y {
        Targets::Classes {
            labels,
            classes,
            positions,
        } => {
            crc.update(bytemuck::cast_slice(labels));
            crc.update(&(*classes as u64).to_le_bytes());
            // Only where it is not 1, so backups of one label per sample keep
            // the checksum they were written with.
            if *positions != 1 {
                crc.update(&(*positions as u64).to_le_bytes());
            }
        }
        Targets::Values { values, dim } => {
            crc.update(bytemuck::cast_slice(values));
            crc.update(&(*dim as u64).to_le_bytes());
        }
    }
    format!("{:08x}", crc.finalize())
}

/// The seeds of `graph`'s dropout and noise streams, as backups record them (a
/// resumed run must draw the same masks and noise).
pub fn random_seeds(graph: &Graph) -> String {
    let seeds: Vec<u32> = graph
        .nodes
        .iter()
        .filter_map(|n| match n.op {
            Op::Dropout { seed, .. } | Op::Noise { seed, .. } => Some(seed),
            _ => None,
        })
        .collect();
    format!("{seeds:?}")
}

/// A CRC-32 of `x`'s values, as backups record the training data (a resumed run
/// must train on the same samples).
pub fn data_crc32(x: &[f32]) -> String {
    format!("{:08x}", crc32fast::hash(bytemuck::cast_slice(x)))
}

fn err(path: &Path, message: String) -> Error {
    Error::Data {
        path: path.display().to_string(),
        message,
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| Error::invalid(format!("training state: {e}")))
}

/// Writes the state of `model` after an epoch: parameters, optimizer state, the
/// best epoch's weights (`best`, when early stopping keeps them) and `progress`.
pub(crate) fn save(
    backup: &Backup,
    ctx: &Context,
    model: &Model,
    best: &[Tensor],
    settings: &BTreeMap<String, String>,
    progress: &Progress,
) -> Result<()> {
    let best = progress.history.best_epoch.is_some().then_some(best);
    write_state(backup, ctx, &model.store, best, settings, progress)
}

/// Loads the backup's state into `model` (and `best`) when the backup holds one,
/// after checking that it was written with the same `settings` and holds every
/// tensor of this model and no other; returns its progress. Nothing is written to
/// the GPU unless every check passes.
pub(crate) fn restore(
    backup: &Backup,
    ctx: &Context,
    model: &mut Model,
    best: &[Tensor],
    settings: &BTreeMap<String, String>,
) -> Result<Option<Progress>> {
    let progress = read_state(backup, ctx, &model.store, best, settings, |p: &Progress| {
        p.history.best_epoch.is_some()
    })?;
    if let Some(p) = &progress {
        model.step = p.model_step;
        model.draws = p.model_draws.unwrap_or(p.model_step);
    }
    Ok(progress)
}

/// Writes the training state of the parameters in `store` (values and optimizer
/// state, PyTorch names), `best` (a copy of the values, when given), the run's
/// `settings` and its `progress` (any serialisable record of the loop), atomically.
/// What [`read_state`] reads back; the training loops of [`fit`](super::fit()) and
/// [`fit_terms`](super::fit_terms) both keep their state with it.
pub fn write_state<P: serde::Serialize>(
    backup: &Backup,
    ctx: &Context,
    store: &ParamStore,
    best: Option<&[Tensor]>,
    settings: &BTreeMap<String, String>,
    progress: &P,
) -> Result<()> {
    let mut entries = Vec::new();
    for p in &store.params {
        entries.push(f32_entry(
            format!("param/{}", p.name),
            &p.shape,
            &p.value.to_f32(ctx)?,
        ));
        for (k, s) in p.state.iter().enumerate() {
            entries.push(f32_entry(
                format!("optimizer/{}/{k}", p.name),
                &p.shape,
                &s.to_f32(ctx)?,
            ));
        }
        if let Some(average) = &p.ema {
            entries.push(f32_entry(
                format!("ema/{}", p.name),
                &p.shape,
                &average.to_f32(ctx)?,
            ));
        }
    }
    for (p, t) in store.params.iter().zip(best.unwrap_or_default()) {
        entries.push(f32_entry(format!("best/{}", p.name), &p.shape, &t.to_f32(ctx)?));
    }
    let metadata = HashMap::from([
        (FORMAT_KEY.to_string(), FORMAT.to_string()),
        (SETTINGS_KEY.to_string(), to_json(settings)?),
        (PROGRESS_KEY.to_string(), to_json(progress)?),
    ]);
    backup.create_dir()?;
    checkpoint::write_atomic(&backup.path(), &checkpoint::serialize(&entries, metadata)?)
}

/// Reads a [`write_state`] file into the parameters of `store` (and `best`, when
/// `uses_best` says the progress recorded one) when the backup holds one, after
/// checking that it was written with the same `settings` and holds every tensor
/// of this model and no other; returns its progress. Nothing is written to the
/// GPU unless every check passes; any mismatch is an error naming it and saying
/// how to start over.
pub fn read_state<P: serde::de::DeserializeOwned>(
    backup: &Backup,
    ctx: &Context,
    store: &ParamStore,
    best: &[Tensor],
    settings: &BTreeMap<String, String>,
    uses_best: impl Fn(&P) -> bool,
) -> Result<Option<P>> {
    // A folder that cannot be made fails the run now, not after its first epoch.
    backup.create_dir()?;
    let path = backup.path();
    if !path.exists() {
        return Ok(None);
    }
    let c = checkpoint::load(&path)?;
    let start_over = format!("remove {} to start over", path.display());
    if c.metadata.get(FORMAT_KEY).map(String::as_str) != Some(FORMAT) {
        return Err(err(
            &path,
            format!("is not a wgml training state (no '{FORMAT_KEY}: {FORMAT}' entry); {start_over}"),
        ));
    }
    let field = |key: &str| {
        c.metadata
            .get(key)
            .ok_or_else(|| err(&path, format!("has no '{key}' entry; {start_over}")))
    };
    let mut saved: BTreeMap<String, String> = serde_json::from_str(field(SETTINGS_KEY)?)
        .map_err(|e| err(&path, format!("unreadable settings ({e}); {start_over}")))?;
    // Settings recorded only where they differ from their default: absent is the default.
    let mut settings = settings.clone();
    for (key, default) in OPTIONAL_SETTINGS {
        for map in [&mut saved, &mut settings] {
            map.entry(key.to_string()).or_insert_with(|| default.to_string());
        }
    }
    for (key, value) in &settings {
        match saved.get(key) {
            Some(s) if s == value => {}
            Some(s) => {
                return Err(err(
                    &path,
                    format!(
                        "was written by a run with {key} = {s}, but this run has {key} = {value}; \
                         resume with the same settings, or {start_over}"
                    ),
                ));
            }
            None => return Err(err(&path, format!("does not record {key}; {start_over}"))),
        }
    }
    if let Some(key) = saved.keys().find(|k| !settings.contains_key(*k)) {
        return Err(err(
            &path,
            format!("records an unknown setting '{key}'; {start_over}"),
        ));
    }
    let progress: P = serde_json::from_str(field(PROGRESS_KEY)?)
        .map_err(|e| err(&path, format!("unreadable progress ({e}); {start_over}")))?;

    let tensors: HashMap<&str, (&[usize], &[f32])> = c
        .tensors
        .iter()
        .map(|(n, shape, v)| (n.as_str(), (shape.as_slice(), v.as_slice())))
        .collect();
    // Every tensor the model needs from the file, and where it goes.
    let mut needed: Vec<(String, &[usize], &Tensor)> = Vec::new();
    for p in &store.params {
        needed.push((format!("param/{}", p.name), &p.shape, &p.value));
        for (k, s) in p.state.iter().enumerate() {
            needed.push((format!("optimizer/{}/{k}", p.name), &p.shape, s));
        }
        if let Some(average) = &p.ema {
            needed.push((format!("ema/{}", p.name), &p.shape, average));
        }
    }
    if uses_best(&progress) {
        for (p, t) in store.params.iter().zip(best) {
            needed.push((format!("best/{}", p.name), &p.shape, t));
        }
    }
    let mut writes: Vec<(&Tensor, &[f32])> = Vec::new();
    for (name, shape, into) in &needed {
        match tensors.get(name.as_str()) {
            None => {
                return Err(err(
                    &path,
                    format!("has no tensor '{name}', which this model needs; {start_over}"),
                ));
            }
            Some((s, _)) if s != shape => {
                return Err(err(
                    &path,
                    format!("tensor '{name}' has shape {s:?}, the model expects {shape:?}; {start_over}"),
                ));
            }
            Some((_, v)) => writes.push((into, v)),
        }
    }
    let wanted: HashSet<&str> = needed.iter().map(|(n, _, _)| n.as_str()).collect();
    if let Some(extra) = tensors.keys().find(|n| !wanted.contains(**n)) {
        return Err(err(
            &path,
            format!("holds tensor '{extra}', which this model does not have; {start_over}"),
        ));
    }
    for (t, v) in writes {
        t.write(ctx, v)?;
    }
    Ok(Some(progress))
}

/// The end of a training run that returned normally: removes the state file unless the
/// backup is kept. A file that cannot be removed is reported, not an error (the
/// training it describes is done): a warning through the `log` crate.
pub fn finish(backup: &Backup) {
    if !backup.delete_when_done {
        return;
    }
    let path = backup.path();
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            log::warn!(
                "could not remove the finished run's backup {}: {e}",
                path.display()
            );
        }
        _ => {}
    }
}
