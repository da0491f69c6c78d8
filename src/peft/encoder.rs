//! PEFT LoRA adapters of the BERT family's classifiers (BERT, RoBERTa,
//! DistilBERT, ELECTRA, as [`crate::import::bert`] reads them; `task_type`
//! `SEQ_CLS`, or `TOKEN_CLS` for a token classifier), read into and written
//! from wgml's low-rank adapters.
//!
//! Each PEFT module is one wgml module: the attention's projections under
//! wgml's names (`attention.self.query` or `attention.q_lin` is wgml's
//! `attention.query`, `attention.output.dense` or `attention.out_lin` its
//! `attention.output`), every other Linear under its own name. Adapters keep
//! PyTorch's layout (A `[r, in]`, B `[out, r]`) on both sides. The classifier's
//! head, trained in full, travels in `modules_to_save`: PEFT saves the module
//! named `classifier` (BERT's and DistilBERT's Linear, RoBERTa's whole head), and
//! DistilBERT's `pre_classifier` when it is listed, as wgml writes it (wgml
//! trains it in full too).

use std::collections::BTreeMap;
use std::path::Path;

use safetensors::SafeTensors;
use serde_json::{Value, json};

use super::{CONFIG_FILE, PREFIX, TENSORS_FILE, settings_of};
use crate::checkpoint::{self, Checkpoint};
use crate::error::{Error, Result};
use crate::graph::params::NamedValues;
use crate::import::bert::{EncoderHead, Family, Task, encoder_head_of};
use crate::nn::LoraConfig;
use crate::nn::lora::{LORA_A, LORA_B, is_adapter};

/// Layers saved whole beside the head (PEFT's `modules_to_save`, by the module
/// name PEFT matches): BERT's pooler, which wgml keeps frozen but may have drawn
/// anew (a file without one), so the adapter carries it to be exact.
/// A token classifier has no pooler.
fn saved_beside_head(head: EncoderHead) -> &'static [(&'static str, &'static str)] {
    match head.family {
        Family::Bert if !head.task.per_token() => &[("bert.pooler.dense", "pooler")],
        _ => &[],
    }
}

/// A pattern key of `rank_pattern` or `alpha_pattern` names module `hf` (PEFT's
/// full name): the name itself or its last parts at a dot.
fn names_module(key: &str, hf: &str) -> bool {
    hf == key || hf.ends_with(&format!(".{key}"))
}

/// wgml's names of the attention's projections under a block, in the order of
/// [`crate::import::bert::Names::hf`].
const PROJECTIONS: [&str; 4] = [
    "attention.query",
    "attention.key",
    "attention.value",
    "attention.output",
];

/// The wgml module of PEFT module `hf` (a full name, as PEFT saves it), with
/// `renamed` the modules whose last parts differ (wgml's, Hugging Face's).
fn wgml_module(hf: &str, renamed: &[(String, String)]) -> String {
    for (ours, theirs) in renamed {
        if let Some(stem) = hf.strip_suffix(&format!(".{theirs}")) {
            return format!("{stem}.{ours}");
        }
    }
    hf.to_string()
}

/// The PEFT (Hugging Face) module of wgml module `module`.
fn hf_module(module: &str, renamed: &[(String, String)]) -> String {
    for (ours, theirs) in renamed {
        if let Some(stem) = module.strip_suffix(&format!(".{ours}")) {
            return format!("{stem}.{theirs}");
        }
    }
    module.to_string()
}

/// What reading or writing a PEFT adapter needs to know of the model it adapts.
pub(crate) struct AdapterModel<'a> {
    /// The model's name in messages ("BERT", "Llama").
    pub name: &'a str,
    /// PEFT's `task_type` of its adapters.
    pub task: &'static str,
    /// Layers trained in full beside the adapters, saved whole (a classifier's head).
    pub heads: Vec<&'a str>,
    /// Layers saved whole beside the head: wgml's layer and PEFT's module name.
    pub beside: &'a [(&'static str, &'static str)],
    /// Modules whose last parts wgml names otherwise: (wgml's, Hugging Face's).
    pub renamed: Vec<(String, String)>,
}

/// The BERT family's adapted model of classifier `head`.
fn encoder_model(head: EncoderHead) -> AdapterModel<'static> {
    AdapterModel {
        name: head.family.name(),
        task: head.task.peft_task_type(),
        heads: head.layers().to_vec(),
        beside: saved_beside_head(head),
        renamed: PROJECTIONS
            .iter()
            .zip(head.family.names().hf)
            .map(|(ours, theirs)| (ours.to_string(), theirs.to_string()))
            .collect(),
    }
}

/// Puts the PEFT adapter in folder `dir` on `imported`, a BERT-family classifier
/// [`crate::import::bert::import_bert`] read: its model gets the adapters (every
/// other tensor frozen but the head), its tensors the adapter's, and the head
/// the adapter saved replaces the file's. Returns one line on what was read.
pub fn add_adapter(imported: &mut crate::import::Imported, dir: &Path) -> Result<String> {
    let head = encoder_head_of(&imported.architecture.functional)
        .ok_or_else(|| Error::invalid("the model is not a BERT-family classifier"))?;
    let what = match head.task {
        Task::TextClassification => "a classifier of texts",
        Task::TokenClassification => "a classifier of tokens",
        Task::QuestionAnswering => "a question answerer",
    };
    let model = encoder_model(head);
    let (lora, modules, saved) = read_onto(imported, dir, &model, what)?;
    Ok(format!(
        "LoRA adapter: rank {}, alpha {}, dropout {}, on {modules} {} modules; the head's {saved} tensors \
         from the adapter",
        lora.rank, lora.alpha, lora.dropout, model.name
    ))
}

/// Puts the PEFT adapter in folder `dir` on `imported`, a `model` (`what` says
/// which, in messages): its model gets the adapters (every other tensor frozen
/// but the head), its tensors the adapter's, and the layers the adapter saved
/// whole replace the file's. Returns the adapters' settings, how many modules
/// they adapt and how many tensors the adapter saved whole.
pub(crate) fn read_onto(
    imported: &mut crate::import::Imported,
    dir: &Path,
    model: &AdapterModel<'_>,
    what: &str,
) -> Result<(LoraConfig, usize, usize)> {
    let file_err = |name: &str, message: String| Error::Data {
        path: dir.join(name).display().to_string(),
        message,
    };
    let read = |name: &str| {
        std::fs::read(dir.join(name)).map_err(|source| Error::Io {
            path: dir.join(name).display().to_string(),
            source,
        })
    };
    let settings: Value = serde_json::from_slice(&read(CONFIG_FILE)?)
        .map_err(|e| file_err(CONFIG_FILE, format!("is not JSON: {e}")))?;
    let heads = &model.heads;
    let mut allowed = heads.clone();
    allowed.extend(model.beside.iter().map(|(_, peft)| *peft));
    let mut lora = settings_of(&settings, &allowed).map_err(|m| file_err(CONFIG_FILE, m))?;
    // Patterns by PEFT's module names, resolved on the adapted modules below.
    let pattern = |name: &str| -> Vec<(String, Value)> {
        settings
            .get(name)
            .and_then(Value::as_object)
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default()
    };
    let (rank_keys, alpha_keys) = (pattern("rank_pattern"), pattern("alpha_pattern"));
    lora.rank_pattern.clear();
    lora.alpha_pattern.clear();
    let task = model.task;
    if settings.get("task_type").and_then(Value::as_str) != Some(task) {
        return Err(file_err(
            CONFIG_FILE,
            format!(
                "is not an adapter of this {} (task_type {task}, {what}); give an adapter made for \
                 this model",
                model.name
            ),
        ));
    }
    let bytes = read(TENSORS_FILE)?;
    let file = SafeTensors::deserialize(&bytes)
        .map_err(|e| file_err(TENSORS_FILE, format!("is not a safetensors file: {e}")))?;
    let shape_of: BTreeMap<String, Vec<usize>> = imported
        .tensors
        .iter()
        .map(|(n, s, _)| (n.clone(), s.clone()))
        .collect();
    let mut adapters: Vec<NamedValues> = Vec::new();
    let mut saved: Vec<NamedValues> = Vec::new();
    let mut modules = Vec::new();
    for (name, view) in file.tensors() {
        let bad = |m: String| file_err(TENSORS_FILE, m);
        let short = name.strip_prefix(PREFIX).unwrap_or(&name);
        let values = crate::import::to_f32(view.dtype(), view.data())
            .map_err(|m| bad(format!("tensor '{name}': {m}")))?;
        let shape = view.shape().to_vec();
        if let Some((hf, suffix)) = [LORA_A, LORA_B]
            .iter()
            .find_map(|s| short.strip_suffix(&format!(".{s}")).map(|m| (m, *s)))
        {
            let module = wgml_module(hf, &model.renamed);
            // The longest key naming the module wins, as in wgml's patterns.
            let best = |keys: &[(String, Value)]| {
                keys.iter()
                    .filter(|(k, _)| names_module(k, hf))
                    .max_by_key(|(k, _)| k.len())
                    .map(|(_, v)| v.clone())
            };
            if let Some(r) = best(&rank_keys) {
                let r = r
                    .as_u64()
                    .filter(|&r| r > 0)
                    .ok_or_else(|| bad(format!("rank_pattern gives '{hf}' the rank {r}")))?;
                lora.rank_pattern.insert(module.clone(), r as usize);
            }
            if let Some(a) = best(&alpha_keys) {
                let a = a
                    .as_f64()
                    .ok_or_else(|| bad(format!("alpha_pattern gives '{hf}' the alpha {a}")))?;
                lora.alpha_pattern.insert(module.clone(), a as f32);
            }
            let Some([out, n_in]) = shape_of
                .get(&format!("{module}.weight"))
                .and_then(|s| <[usize; 2]>::try_from(s.as_slice()).ok())
            else {
                return Err(bad(format!(
                    "has an adapter on '{hf}', which is no Linear layer of this {}: an adapter for \
                     another model?",
                    model.name
                )));
            };
            let r = lora.rank_of(&module);
            let want = if suffix == LORA_A { [r, n_in] } else { [out, r] };
            if shape != want {
                return Err(bad(format!(
                    "tensor '{name}' has shape {shape:?}; rank {r} on '{hf}' takes {want:?}"
                )));
            }
            if suffix == LORA_A {
                modules.push(module.clone());
            }
            adapters.push((format!("{module}.{suffix}"), shape, values));
        } else if heads
            .iter()
            .chain(model.beside.iter().map(|(layer, _)| layer))
            .any(|h| short.starts_with(&format!("{h}.")))
        {
            let Some(own) = shape_of.get(short) else {
                return Err(bad(format!("holds '{name}', which the model has not")));
            };
            if own != &shape {
                return Err(bad(format!(
                    "holds '{name}' of shape {shape:?}, where the model has {own:?}: import the base \
                     with --num-labels {} to match the adapter",
                    shape.first().copied().unwrap_or(0)
                )));
            }
            saved.push((short.to_string(), shape, values));
        } else {
            return Err(bad(format!(
                "holds '{name}', which is no LoRA A or B weight and no part of a layer the model \
                 trains in full (a classifier's head)"
            )));
        }
    }
    if modules.is_empty() {
        return Err(file_err(TENSORS_FILE, "holds no adapter tensors".into()));
    }
    for module in &modules {
        if !adapters.iter().any(|(n, ..)| *n == format!("{module}.{LORA_B}")) {
            return Err(file_err(
                TENSORS_FILE,
                format!("has only {LORA_A} for '{}'", hf_module(module, &model.renamed)),
            ));
        }
    }
    lora.targets = modules.clone();
    lora.train = heads.iter().map(|h| h.to_string()).collect();
    let saved_count = saved.len();
    for (name, shape, values) in saved {
        if let Some(t) = imported.tensors.iter_mut().find(|(n, ..)| *n == name) {
            *t = (name, shape, values);
        }
    }
    imported.architecture.functional.lora = Some(lora.clone());
    imported.tensors.extend(adapters);
    Ok((lora, modules.len(), saved_count))
}

/// Writes the adapters of BERT-family classifier checkpoint `c` (read from
/// `path`, named in errors) as a PEFT adapter folder `dir` (created if missing)
/// that `PeftModel.from_pretrained(AutoModelForSequenceClassification, dir)`
/// loads; returns one line on what was written.
pub fn write_adapter(c: &Checkpoint, path: &Path, dir: &Path) -> Result<String> {
    let bad = |message: &str| Error::Data {
        path: path.display().to_string(),
        message: message.into(),
    };
    let a = c
        .functional_architecture(path)?
        .ok_or_else(|| bad("holds no functional model"))?;
    let head = encoder_head_of(&a.functional).ok_or_else(|| bad("is not a BERT-family classifier"))?;
    let model = encoder_model(head);
    // PEFT saves the module named `classifier` for SEQ_CLS; DistilBERT's
    // pre_classifier, which wgml trains too, and BERT's pooler are listed by name.
    let mut saved = vec!["classifier"];
    saved.extend(model.heads.iter().filter(|h| !h.starts_with("classifier")));
    saved.extend(model.beside.iter().map(|(_, peft)| *peft));
    saved.push("score");
    let (lora, modules, head_tensors) = write_from((c, &a.functional), path, dir, &model, &saved)?;
    let classes = head.classes;
    let what = match classes {
        _ if head.task == Task::QuestionAnswering => "start and end scores of each token".to_string(),
        n if head.task.per_token() => format!("{n} classes of each token"),
        1 => "one score (a regression)".to_string(),
        n => format!("{n} classes"),
    };
    let auto = head.task.auto_class();
    Ok(format!(
        "LoRA adapter: rank {}, alpha {}, on {modules} {} modules, and the head ({head_tensors} tensors) of \
         {what} (PEFT's {}: load it onto {auto}.from_pretrained(BASE, num_labels={classes}))",
        lora.rank, lora.alpha, model.name, model.task
    ))
}

/// Writes the adapters of checkpoint `c` (read from `path`, named in errors),
/// whose functional model `f` is a `model`, as a PEFT adapter folder `dir`
/// (created if missing), the layers it trains in full saved whole under
/// `modules_to_save`; returns the adapters' settings, how many modules they
/// adapt and how many tensors were saved whole.
pub(crate) fn write_from(
    (c, f): (&Checkpoint, &crate::nn::Functional),
    path: &Path,
    dir: &Path,
    model: &AdapterModel<'_>,
    modules_to_save: &[&str],
) -> Result<(LoraConfig, usize, usize)> {
    let bad = |message: String| Error::Data {
        path: path.display().to_string(),
        message,
    };
    let lora = f.lora.as_ref().ok_or_else(|| {
        bad("has no LoRA adapters to write (train it with --lora, or export the whole model)".into())
    })?;
    let heads = &model.heads;
    if let Some(other) = lora.train.iter().find(|t| !heads.contains(&t.as_str())) {
        return Err(bad(format!(
            "trains '{other}' in full beside its adapters; a PEFT adapter folder holds adapters and \
             a classifier's head only: export the merged model instead"
        )));
    }
    // Layers saved whole (the head, BERT's pooler): PEFT puts no adapter on
    // them, so an adapter wgml trained there is merged into the saved weights.
    let saved_layers: Vec<&str> = heads
        .iter()
        .copied()
        .chain(model.beside.iter().map(|(layer, _)| *layer))
        .collect();
    let in_saved = |name: &str| saved_layers.iter().any(|h| name.starts_with(&format!("{h}.")));
    let merged = crate::nn::lora::merged(&c.tensors, lora).map_err(|e| e.in_file(path, "its adapters"))?;
    let mut entries: Vec<checkpoint::Entry> = Vec::new();
    let mut modules: Vec<String> = Vec::new();
    let mut rank_pattern = serde_json::Map::new();
    let mut alpha_pattern = serde_json::Map::new();
    for (name, shape, values) in c.tensors.iter().filter(|(n, ..)| is_adapter(n) && !in_saved(n)) {
        let (module, suffix) = [LORA_A, LORA_B]
            .iter()
            .find_map(|s| name.strip_suffix(&format!(".{s}")).map(|m| (m, *s)))
            .ok_or_else(|| bad(format!("tensor '{name}' is no adapter's A or B")))?;
        let hf = hf_module(module, &model.renamed);
        // Pattern keys drop the model's root (`bert.`), so that PEFT's match of a
        // key after a dot finds the module in every version.
        let key = hf
            .split_once('.')
            .map_or(hf.as_str(), |(_, rest)| rest)
            .to_string();
        if suffix == LORA_A {
            let r = lora.rank_of(module);
            if r != lora.rank {
                rank_pattern.insert(key.clone(), json!(r));
            }
            let alpha = lora.alpha_of(module);
            if alpha != lora.alpha {
                alpha_pattern.insert(key, json!(alpha));
            }
            modules.push(hf.clone());
        }
        entries.push(checkpoint::f32_entry(
            format!("{PREFIX}{hf}.{suffix}"),
            shape,
            values,
        ));
    }
    if modules.is_empty() {
        return Err(bad("holds no adapter tensors".into()));
    }
    let mut head_tensors = 0;
    for (name, shape, values) in &merged {
        if in_saved(name) {
            entries.push(checkpoint::f32_entry(format!("{PREFIX}{name}"), shape, values));
            head_tensors += 1;
        }
    }
    let settings = json!({
        "peft_type": "LORA",
        "task_type": model.task,
        "base_model_name_or_path": null,
        "r": lora.rank,
        "lora_alpha": lora.alpha,
        "lora_dropout": lora.dropout,
        "target_modules": modules,
        "rank_pattern": rank_pattern,
        "alpha_pattern": alpha_pattern,
        "fan_in_fan_out": false,
        "bias": "none",
        "modules_to_save": if heads.is_empty() { json!(null) } else { json!(modules_to_save) },
        "init_lora_weights": true,
        "inference_mode": true,
        "use_rslora": false,
        "use_dora": false,
    });
    super::write_folder(dir, &entries, &settings)?;
    Ok((lora.clone(), modules.len(), head_tensors))
}
