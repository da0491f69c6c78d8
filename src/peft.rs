//! Hugging Face PEFT LoRA adapters of GPT-2 (`adapter_config.json` and
//! `adapter_model.safetensors`, what `PeftModel.save_pretrained` writes), read into
//! and written from wgml's low-rank adapters ([`crate::nn::lora`]).
//!
//! GPT-2's modules map to wgml's as the importer maps their weights:
//! `h.N.attn.c_proj` is `h.N.attn.output`, `h.N.mlp.c_fc` and `h.N.mlp.c_proj` keep
//! their names, `lm_head` too; adapters keep PyTorch's Linear layout (A `[r, in]`,
//! B `[out, r]`) on both sides. `h.N.attn.c_attn` computes the query, key and value
//! side by side, where wgml has three projections:
//! - reading, its adapter becomes one adapter on each of the three with the same A
//!   and B's rows for that part, which computes exactly what PEFT's does (training
//!   then moves the three A's apart);
//! - writing, the adapters of the projections present (k of the three, rank r
//!   each) become one `c_attn` adapter of rank k·r: their A's stacked, their B's
//!   placed block-diagonally, α scaled by k so α/r stays (PEFT's `rank_pattern`
//!   and `alpha_pattern` for that module). That is exactly the sum of the three.
//!
//! With `lora_dropout`, the three projections' adapters share one mask on their
//! input, as PEFT's `c_attn` adapter draws one.
//!
//! A GPT-2 made a classifier ([`crate::nn::Functional::sequence_classifier`])
//! reads and writes PEFT's classifier adapters (`task_type` `SEQ_CLS`): the
//! adapters, and the head `score` trained in full (`modules_to_save`).
//!
//! The adapter's settings must be ones wgml computes as PEFT does: LoRA (no DoRA),
//! `bias` "none", no `modules_to_save` but a classifier's head (`use_rslora`'s α/√r
//! is kept as α' = α·√r);
//! anything else is refused, naming the setting. Ranks and α that differ by module
//! (`rank_pattern`, `alpha_pattern`) are read onto wgml's modules (a `c_attn` key
//! onto the query, key and value); their keys must be module names (PEFT takes
//! regular expressions).

pub mod decoder;
pub mod encoder;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use safetensors::SafeTensors;
use serde_json::{Value, json};

use crate::checkpoint::{self, Checkpoint};
use crate::error::{Error, Result};
use crate::graph::params::NamedValues;
use crate::import::Gpt2Config;
use crate::nn::LoraConfig;
use crate::nn::lora::{LORA_A, LORA_B};

/// The adapter file's tensor name prefix before the model's own names.
const PREFIX: &str = "base_model.model.";
/// The adapter settings file.
pub const CONFIG_FILE: &str = "adapter_config.json";
/// The adapter tensors file.
pub const TENSORS_FILE: &str = "adapter_model.safetensors";

/// A GPT-2 module with an adapter in PEFT's names (without `transformer.`), and the
/// wgml modules it stands for with the rows of B each takes (`None`: all).
fn wgml_modules(peft: &str, c: &Gpt2Config) -> Option<Vec<(String, Option<std::ops::Range<usize>>)>> {
    if peft == "lm_head" {
        return Some(vec![("lm_head".into(), None)]);
    }
    let rest = peft.strip_prefix("h.")?;
    let (block, module) = rest.split_once('.')?;
    let i: usize = block.parse().ok().filter(|&i| i < c.layers)?;
    let d = c.width;
    let h = format!("h.{i}");
    Some(match module {
        "attn.c_attn" => ["query", "key", "value"]
            .iter()
            .enumerate()
            .map(|(k, part)| (format!("{h}.attn.{part}"), Some(k * d..(k + 1) * d)))
            .collect(),
        "attn.c_proj" => vec![(format!("{h}.attn.output"), None)],
        "mlp.c_fc" | "mlp.c_proj" => vec![(format!("{h}.{module}"), None)],
        _ => return None,
    })
}

/// `(in, out)` of wgml module `module` of GPT-2 `c`.
fn dims(module: &str, c: &Gpt2Config) -> (usize, usize) {
    if module == "lm_head" {
        (c.width, c.vocab)
    } else if module.ends_with("mlp.c_fc") {
        (c.width, c.inner)
    } else if module.ends_with("mlp.c_proj") {
        (c.inner, c.width)
    } else {
        (c.width, c.width)
    }
}

/// Reads the PEFT LoRA adapter in folder `dir` for GPT-2 `c`: the wgml adapter
/// settings and tensors (wgml's names), and one line on what was read.
pub fn read_adapter(dir: &Path, c: &Gpt2Config) -> Result<(LoraConfig, Vec<NamedValues>, String)> {
    let file = |name: &str| dir.join(name);
    let bad = |name: &str, message: String| Error::Data {
        path: file(name).display().to_string(),
        message,
    };
    let read = |name: &str| {
        std::fs::read(file(name)).map_err(|source| Error::Io {
            path: file(name).display().to_string(),
            source,
        })
    };
    let settings: Value = serde_json::from_slice(&read(CONFIG_FILE)?)
        .map_err(|e| bad(CONFIG_FILE, format!("is not JSON: {e}")))?;
    let config =
        settings_of(&settings, &[crate::nn::transfer::CLASSIFIER_HEAD]).map_err(|m| bad(CONFIG_FILE, m))?;
    if !file(TENSORS_FILE).exists() && file("adapter_model.bin").exists() {
        return Err(bad(
            "adapter_model.bin",
            "is a pickle; wgml reads adapter_model.safetensors (save_pretrained with \
             safe_serialization=True, the default)"
                .into(),
        ));
    }
    let bytes = read(TENSORS_FILE)?;
    let tensors = SafeTensors::deserialize(&bytes)
        .map_err(|e| bad(TENSORS_FILE, format!("is not a safetensors file: {e}")))?;
    let (config, adapters) = adapter_tensors(&tensors, config, c).map_err(|m| bad(TENSORS_FILE, m))?;
    config.validate().map_err(|e| {
        bad(
            CONFIG_FILE,
            format!("does not describe adapters wgml computes: {e}"),
        )
    })?;
    let own: std::collections::BTreeSet<&String> = config
        .rank_pattern
        .keys()
        .chain(config.alpha_pattern.keys())
        .collect();
    let head = adapters
        .iter()
        .find(|(n, ..)| *n == format!("{}.weight", crate::nn::transfer::CLASSIFIER_HEAD))
        .map_or(String::new(), |(n, shape, _)| {
            format!(
                " and the head {} of {} classes",
                n.trim_end_matches(".weight"),
                shape[0]
            )
        });
    let summary = format!(
        "LoRA adapter: rank {}, alpha {}{}, dropout {}, on {}{head} ({} tensors)",
        config.rank,
        config.alpha,
        if own.is_empty() {
            String::new()
        } else {
            format!(" ({} modules of their own rank or alpha)", own.len())
        },
        config.dropout,
        config.targets.join(", "),
        adapters.len()
    );
    Ok((config, adapters, summary))
}

/// Puts the PEFT LoRA adapter in folder `dir` on `imported`, a GPT-2 that
/// [`crate::import::import_gpt2`] read: its model gets the adapters (every other
/// tensor frozen) and its tensors the adapter's. Returns one line on what was read.
pub fn add_adapter(imported: &mut crate::import::Imported, dir: &Path) -> Result<String> {
    let (config, _) =
        crate::export::gpt2_config_of(&imported.architecture.functional).map_err(Error::invalid)?;
    let (lora, tensors, summary) = read_adapter(dir, &config)?;
    let head = format!("{}.weight", crate::nn::transfer::CLASSIFIER_HEAD);
    if let Some((_, shape, _)) = tensors.iter().find(|(n, ..)| *n == head) {
        // A classifier's adapter: the GPT-2 becomes the classifier it adapts.
        let classes = shape[0];
        let functional = &imported.architecture.functional;
        match crate::export::gpt2_classifier_of(functional) {
            Some((own, _)) if own == classes => {}
            Some((own, _)) => {
                return Err(Error::invalid(format!(
                    "the adapter in {} classifies {classes} classes, the model {own}",
                    dir.display()
                )));
            }
            None => {
                let pad = imported
                    .pad_token_id
                    .or_else(|| imported.vocabulary.padding_id())
                    .ok_or_else(|| {
                        Error::invalid(format!(
                            "the adapter in {} is a classifier's, which reads each text at its last \
                             token before the padding, but the model's config.json has no pad_token_id \
                             and its tokenizer no padding or end-of-text token",
                            dir.display()
                        ))
                    })?;
                imported.architecture.functional = functional.sequence_classifier(classes, pad)?;
                imported.architecture.class_names = (0..classes).map(|i| format!("LABEL_{i}")).collect();
            }
        }
        imported.tensors.retain(|(n, ..)| *n != head);
    }
    imported.architecture.functional.lora = Some(lora);
    imported.tensors.extend(tensors);
    Ok(summary)
}

/// The rank, α and dropout of `adapter_config.json` (targets are filled in from
/// the tensors), or what wgml cannot compute as PEFT does. A classifier's adapter
/// may save the head's layers `heads` (and PEFT's generic head names) in full.
fn settings_of(s: &Value, heads: &[&str]) -> std::result::Result<LoraConfig, String> {
    let field = |name: &str| s.get(name).filter(|v| !v.is_null());
    match field("peft_type").and_then(Value::as_str) {
        Some("LORA") => {}
        other => {
            return Err(format!(
                "describes a {} adapter; wgml reads LoRA adapters (peft_type \"LORA\")",
                other.unwrap_or("(no peft_type)")
            ));
        }
    }
    let refuse = |name: &str, why: &str| Err(format!("sets {name} ({why}), which wgml does not compute"));
    if field("use_dora").and_then(Value::as_bool) == Some(true) {
        return refuse("use_dora", "DoRA's weight-decomposed adapters");
    }
    if field("bias").and_then(Value::as_str).is_some_and(|b| b != "none") {
        return refuse("bias", "biases trained with the adapter");
    }
    if field("lora_bias").and_then(Value::as_bool) == Some(true) {
        return refuse("lora_bias", "a bias on lora_B");
    }
    // A classifier's adapter (task_type SEQ_CLS) trains its head in full: PEFT
    // lists its heads' names, ["classifier", "score"], and any others given.
    let classifier = field("task_type").and_then(Value::as_str) == Some("SEQ_CLS");
    let saved: Vec<&str> = field("modules_to_save")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let head_only = classifier
        && saved
            .iter()
            .all(|m| heads.contains(m) || *m == "score" || *m == "classifier");
    for name in ["modules_to_save", "trainable_token_indices", "target_parameters"] {
        if name == "modules_to_save" && head_only {
            continue;
        }
        if field(name).is_some_and(|v| v.as_array().is_none_or(|a| !a.is_empty())) {
            return refuse(name, "tensors trained beside the adapters");
        }
    }
    let rank = field("r")
        .and_then(Value::as_u64)
        .filter(|&r| r > 0)
        .ok_or("has no rank r (a whole number ≥ 1)")? as usize;
    let alpha = field("lora_alpha").and_then(Value::as_f64).unwrap_or(8.0) as f32;
    let rslora = field("use_rslora").and_then(Value::as_bool) == Some(true);
    let alpha = if rslora {
        // rsLoRA scales by α/√r: the same as α·√r over r.
        alpha * (rank as f32).sqrt()
    } else {
        alpha
    };
    let dropout = field("lora_dropout").and_then(Value::as_f64).unwrap_or(0.0) as f32;
    let mut rank_pattern = BTreeMap::new();
    for (key, v) in pattern_entries(field("rank_pattern"), "rank_pattern")? {
        let r = v
            .as_u64()
            .filter(|&r| r > 0)
            .ok_or_else(|| format!("rank_pattern gives '{key}' the rank {v}, not a whole number ≥ 1"))?;
        for module in wgml_pattern_keys(&key)? {
            rank_pattern.insert(module, r as usize);
        }
    }
    let mut alpha_pattern = BTreeMap::new();
    for (key, v) in pattern_entries(field("alpha_pattern"), "alpha_pattern")? {
        let a = v
            .as_f64()
            .ok_or_else(|| format!("alpha_pattern gives '{key}' the alpha {v}, not a number"))?
            as f32;
        for module in wgml_pattern_keys(&key)? {
            alpha_pattern.insert(module, a);
        }
    }
    if rslora && !(rank_pattern.is_empty() && alpha_pattern.is_empty()) {
        return refuse(
            "use_rslora with rank_pattern or alpha_pattern",
            "rsLoRA's α/√r with ranks that differ by module",
        );
    }
    Ok(LoraConfig {
        rank,
        alpha,
        dropout,
        targets: Vec::new(),
        train: if classifier {
            heads.iter().map(|h| h.to_string()).collect()
        } else {
            Vec::new()
        },
        rank_pattern,
        alpha_pattern,
    })
}

/// The entries of a `rank_pattern` or `alpha_pattern` object (none when absent).
fn pattern_entries(v: Option<&Value>, name: &str) -> std::result::Result<Vec<(String, Value)>, String> {
    match v {
        None => Ok(Vec::new()),
        Some(Value::Object(m)) => Ok(m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
        Some(other) => Err(format!("{name} is {other}, not an object of module names")),
    }
}

/// wgml's module names for a PEFT `rank_pattern`/`alpha_pattern` key (a GPT-2
/// module name or its last parts: `transformer.h.0.attn.c_attn`, `c_attn`,
/// `mlp.c_proj`...): `c_attn` stands for the query, key and value, `attn.c_proj`
/// for the output projection, a bare `c_proj` for both products it names. Keys
/// that are regular expressions are refused.
fn wgml_pattern_keys(key: &str) -> std::result::Result<Vec<String>, String> {
    if key.is_empty() || key.contains(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.')) {
        return Err(format!(
            "names '{key}' in a pattern, which is not a module name (wgml matches module names, not \
             regular expressions)"
        ));
    }
    let key = key.strip_prefix(PREFIX).unwrap_or(key);
    let key = key.strip_prefix("transformer.").unwrap_or(key);
    let (head, last) = match key.rsplit_once('.') {
        Some((head, last)) => (format!("{head}."), last),
        None => (String::new(), key),
    };
    Ok(match last {
        "c_attn" => ["query", "key", "value"]
            .iter()
            .map(|p| format!("{}{p}", if head.is_empty() { "attn." } else { &head }))
            .collect(),
        "c_proj" if head.is_empty() => vec!["attn.output".into(), "mlp.c_proj".into()],
        "c_proj" if head.ends_with("attn.") => vec![format!("{head}output")],
        _ => vec![key.to_string()],
    })
}

/// The adapter file's tensors in wgml's names, and `config` with the targets they
/// cover.
fn adapter_tensors(
    file: &SafeTensors<'_>,
    mut config: LoraConfig,
    c: &Gpt2Config,
) -> std::result::Result<(LoraConfig, Vec<NamedValues>), String> {
    // A and B of each module, as (shape, values).
    type Pair = [Option<(Vec<usize>, Vec<f32>)>; 2];
    let mut by_module: BTreeMap<String, Pair> = BTreeMap::new();
    let mut out: Vec<NamedValues> = Vec::new();
    let head = format!("{}.weight", crate::nn::transfer::CLASSIFIER_HEAD);
    for (name, view) in file.tensors() {
        let short = name.strip_prefix(PREFIX).unwrap_or(&name);
        let short = short.strip_prefix("transformer.").unwrap_or(short);
        // A classifier adapter's head, trained in full: [classes, width].
        if short == head && !config.train.is_empty() {
            let shape = view.shape().to_vec();
            if shape.len() != 2 || shape[0] < 2 || shape[1] != c.width {
                return Err(format!(
                    "holds '{name}' of shape {shape:?}; a classifier's head is [classes >= 2, {}]",
                    c.width
                ));
            }
            let values = crate::import::to_f32(view.dtype(), view.data())
                .map_err(|m| format!("tensor '{name}': {m}"))?;
            out.push((head.clone(), shape, values));
            continue;
        }
        let (module, which) = if let Some(m) = short.strip_suffix(&format!(".{LORA_A}")) {
            (m, 0)
        } else if let Some(m) = short.strip_suffix(&format!(".{LORA_B}")) {
            (m, 1)
        } else {
            return Err(format!(
                "holds '{name}', which is no LoRA A or B weight of a GPT-2 module"
            ));
        };
        let values =
            crate::import::to_f32(view.dtype(), view.data()).map_err(|m| format!("tensor '{name}': {m}"))?;
        by_module.entry(module.to_string()).or_default()[which] = Some((view.shape().to_vec(), values));
    }
    if by_module.is_empty() {
        return Err("holds no adapter tensors".into());
    }
    if !config.train.is_empty() && out.is_empty() {
        return Err(format!(
            "is a classifier's adapter (task_type SEQ_CLS) without its head '{head}'"
        ));
    }
    let mut modules: Vec<String> = Vec::new();
    for (peft, [a, b]) in by_module {
        let targets = wgml_modules(&peft, c).ok_or_else(|| {
            format!(
                "has an adapter on '{peft}', which is not a GPT-2 product wgml adapts (h.N.attn.c_attn, \
                 h.N.attn.c_proj, h.N.mlp.c_fc, h.N.mlp.c_proj for N below the model's {} blocks, \
                 lm_head): an adapter for another model?",
                c.layers
            )
        })?;
        let (Some((sa, a)), Some((sb, b))) = (a, b) else {
            return Err(format!("has only one of {LORA_A} and {LORA_B} for '{peft}'"));
        };
        // The rank the settings give the module (its parts agree: one key names them).
        let r = config.rank_of(&targets[0].0);
        let n_in = dims(&targets[0].0, c).0;
        let n_out: usize = targets
            .iter()
            .map(|(m, rows)| rows.as_ref().map_or(dims(m, c).1, |r| r.len()))
            .sum();
        if sa != [r, n_in] || sb != [n_out, r] {
            return Err(format!(
                "the adapter of '{peft}' has A {sa:?} and B {sb:?}; rank {r} on that module takes A \
                 [{r}, {n_in}] and B [{n_out}, {r}]"
            ));
        }
        for (module, rows) in targets {
            let rows = rows.unwrap_or(0..n_out);
            out.push((format!("{module}.{LORA_A}"), vec![r, n_in], a.clone()));
            out.push((
                format!("{module}.{LORA_B}"),
                vec![rows.len(), r],
                b[rows.start * r..rows.end * r].to_vec(),
            ));
            modules.push(module);
        }
    }
    config.targets = targets_of(&modules, c.layers);
    // A key naming no adapted module (a bare c_proj with only the MLP's adapted).
    config.retain_patterns_naming(&modules);
    Ok((config, out))
}

/// Targets naming exactly `modules`: a module's part (`attn.query`) when every
/// block has it, else its full name.
fn targets_of(modules: &[String], layers: usize) -> Vec<String> {
    let mut by_part: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for m in modules {
        let part = m
            .strip_prefix("h.")
            .and_then(|rest| rest.split_once('.'))
            .map_or(m.as_str(), |(_, part)| part);
        by_part.entry(part).or_default().push(m);
    }
    let mut targets = Vec::new();
    for (part, names) in by_part {
        if part == "lm_head" || names.len() == layers {
            targets.push(part.to_string());
        } else {
            targets.extend(names.iter().map(|n| n.to_string()));
        }
    }
    targets
}

/// Writes a PEFT adapter folder `dir` (created if missing): `entries` as
/// `adapter_model.safetensors`, `settings` as `adapter_config.json`.
fn write_folder(dir: &Path, entries: &[checkpoint::Entry], settings: &Value) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Io {
        path: dir.display().to_string(),
        source,
    })?;
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    checkpoint::write_atomic(
        &dir.join(TENSORS_FILE),
        &checkpoint::serialize(entries, metadata)?,
    )?;
    let text = serde_json::to_string_pretty(settings)
        .map_err(|e| Error::invalid(format!("writing {CONFIG_FILE}: {e}")))?;
    checkpoint::write_atomic(&dir.join(CONFIG_FILE), text.as_bytes())
}

/// Writes the adapters of GPT-2 checkpoint `c` (read from `path`, named in errors)
/// as a PEFT adapter folder `dir` (created if missing) that
/// `PeftModel.from_pretrained(GPT2LMHeadModel, dir)` loads; returns one line on
/// what was written.
pub fn write_adapter(c: &Checkpoint, path: &Path, dir: &Path) -> Result<String> {
    let bad = |message: String| Error::Data {
        path: path.display().to_string(),
        message,
    };
    let a = c
        .functional_architecture(path)?
        .ok_or_else(|| bad("holds no functional model (a GPT-2 from wgml import)".into()))?;
    let (config, _) = crate::export::gpt2_config_of(&a.functional).map_err(bad)?;
    // A classifier's adapter (PEFT's SEQ_CLS) carries its head, trained in full.
    let classifier = crate::export::gpt2_classifier_of(&a.functional);
    let head = crate::nn::transfer::CLASSIFIER_HEAD;
    let lora = a.functional.lora.as_ref().ok_or_else(|| {
        bad("has no LoRA adapters to write (train it with --lora, or export the whole model)".into())
    })?;
    let head_only = classifier.is_some() && lora.train == [head];
    if !lora.train.is_empty() && !head_only {
        return Err(bad(format!(
            "trains {} in full beside its adapters; a PEFT adapter folder holds adapters{} only: \
             export the merged model instead",
            lora.train.join(", "),
            if classifier.is_some() {
                " and a classifier's head"
            } else {
                ""
            }
        )));
    }
    if classifier.is_some() && !head_only {
        return Err(bad(format!(
            "is a GPT-2 classifier whose head '{head}' does not train; PEFT's classifier adapters \
             (task_type SEQ_CLS) carry the head: export the merged classifier instead (wgml export \
             CKPT --save DIR)"
        )));
    }
    let by_name: HashMap<&str, &NamedValues> = c.tensors.iter().map(|t| (t.0.as_str(), t)).collect();
    let adapter = |module: &str| -> Option<(&NamedValues, &NamedValues)> {
        Some((
            by_name.get(format!("{module}.{LORA_A}").as_str())?,
            by_name.get(format!("{module}.{LORA_B}").as_str())?,
        ))
    };
    let (r, d) = (lora.rank, config.width);
    let mut entries: Vec<NamedValues> = Vec::new();
    let mut targets: Vec<String> = Vec::new();
    let mut ranks = serde_json::Map::new();
    let mut alphas = serde_json::Map::new();
    // Module `module`'s A and B, each (shape, values), with its α: its rank and α
    // go into the patterns where they are not the file's r and lora_alpha.
    type Part = (Vec<usize>, Vec<f32>);
    let mut push = |module: String, (a_shape, a): Part, (b_shape, b): Part, alpha: f32| {
        if a_shape[0] != r {
            ranks.insert(module.clone(), json!(a_shape[0]));
        }
        if (alpha - lora.alpha).abs() > 1e-6 * lora.alpha {
            alphas.insert(module.clone(), json!(alpha));
        }
        entries.push((format!("{PREFIX}{module}.{LORA_A}"), a_shape, a));
        entries.push((format!("{PREFIX}{module}.{LORA_B}"), b_shape, b));
        targets.push(module);
    };
    let part = |t: &NamedValues| (t.1.clone(), t.2.clone());
    for i in 0..config.layers {
        let h = format!("h.{i}");
        // The adapted parts' (part, scaling, A, B): the A's stacked and the B's
        // block-diagonal make one c_attn adapter of their ranks' sum, scaled as the
        // first part; the other parts' B's take their own scaling over it.
        let parts: Vec<(usize, f32, &NamedValues, &NamedValues)> = ["query", "key", "value"]
            .iter()
            .enumerate()
            .filter_map(|(k, p)| {
                let module = format!("{h}.attn.{p}");
                adapter(&module).map(|(a, b)| (k, lora.scaling_of(&module), a, b))
            })
            .collect();
        if let Some(&(_, first, ..)) = parts.first() {
            let total: usize = parts.iter().map(|(_, _, a, _)| a.1[0]).sum();
            let mut a = Vec::with_capacity(total * d);
            let mut b = vec![0.0f32; 3 * d * total];
            let mut at = 0;
            for &(part, scaling, pa, pb) in &parts {
                let rank = pa.1[0];
                a.extend_from_slice(&pa.2);
                let factor = scaling / first;
                for row in 0..d {
                    for col in 0..rank {
                        b[(part * d + row) * total + at + col] = factor * pb.2[row * rank + col];
                    }
                }
                at += rank;
            }
            let module = format!("transformer.{h}.attn.c_attn");
            push(
                module,
                (vec![total, d], a),
                (vec![3 * d, total], b),
                first * total as f32,
            );
        }
        for (wgml, peft) in [
            ("attn.output", "attn.c_proj"),
            ("mlp.c_fc", "mlp.c_fc"),
            ("mlp.c_proj", "mlp.c_proj"),
        ] {
            let module = format!("{h}.{wgml}");
            if let Some((a, b)) = adapter(&module) {
                push(
                    format!("transformer.{h}.{peft}"),
                    part(a),
                    part(b),
                    lora.alpha_of(&module),
                );
            }
        }
    }
    if let Some((a, b)) = adapter("lm_head") {
        push("lm_head".into(), part(a), part(b), lora.alpha_of("lm_head"));
    }
    // Every adapter of the checkpoint is written, or none is.
    let written = |module: &str| {
        module == "lm_head"
            || module
                .strip_prefix("h.")
                .and_then(|r| r.split_once('.'))
                .is_some_and(|(i, part)| {
                    i.parse::<usize>().is_ok_and(|i| i < config.layers)
                        && [
                            "attn.query",
                            "attn.key",
                            "attn.value",
                            "attn.output",
                            "mlp.c_fc",
                            "mlp.c_proj",
                        ]
                        .contains(&part)
                })
    };
    let names: Vec<&str> = c
        .tensors
        .iter()
        .filter_map(|(n, ..)| n.strip_suffix(&format!(".{LORA_A}")))
        .filter(|m| !written(m))
        .collect();
    if !names.is_empty() {
        return Err(bad(format!(
            "has adapters on modules a PEFT GPT-2 adapter cannot hold ({}): export the merged model \
             instead",
            names.join(", ")
        )));
    }
    if let Some((classes, _)) = classifier {
        let name = format!("{head}.weight");
        let (_, shape, values) = by_name
            .get(name.as_str())
            .ok_or_else(|| bad(format!("holds no '{name}', the classifier's head")))?;
        if shape != &[classes, d] {
            return Err(bad(format!(
                "holds '{name}' of shape {shape:?}, not the head of {classes} classes [{classes}, {d}]"
            )));
        }
        entries.push((format!("{PREFIX}{name}"), shape.clone(), values.clone()));
    }
    // PEFT lists a classifier's heads to save by the names models give them.
    let (task, saved) = match classifier {
        Some(_) => ("SEQ_CLS", json!(["classifier", head])),
        None => ("CAUSAL_LM", Value::Null),
    };
    let settings = json!({
        "peft_type": "LORA",
        "task_type": task,
        "base_model_name_or_path": null,
        "r": r,
        "lora_alpha": lora.alpha,
        "lora_dropout": lora.dropout,
        "target_modules": targets,
        "rank_pattern": ranks,
        "alpha_pattern": alphas,
        "fan_in_fan_out": true,
        "bias": "none",
        "modules_to_save": saved,
        "init_lora_weights": true,
        "inference_mode": true,
        "use_rslora": false,
        "use_dora": false,
    });
    let files: Vec<checkpoint::Entry> = entries
        .iter()
        .map(|(name, shape, v)| checkpoint::f32_entry(name.clone(), shape, v))
        .collect();
    write_folder(dir, &files, &settings)?;
    let head_line = match classifier {
        Some((classes, pad)) => format!(
            ", and the head {head} of {classes} classes (PEFT's SEQ_CLS: load it onto \
             AutoModelForSequenceClassification.from_pretrained(BASE, num_labels={classes}, \
             pad_token_id={pad}))"
        ),
        None => String::new(),
    };
    Ok(format!(
        "LoRA adapter: rank {r}, alpha {}, on {} GPT-2 modules{head_line} ({} tensors)",
        lora.alpha,
        targets.len(),
        entries.len()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_name_parts_every_block_has_and_whole_names_otherwise() {
        let m = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            targets_of(
                &m(&["h.0.attn.query", "h.1.attn.query", "h.0.mlp.c_fc", "lm_head"]),
                2
            ),
            m(&["attn.query", "lm_head", "h.0.mlp.c_fc"])
        );
    }

    #[test]
    fn settings_wgml_cannot_compute_are_refused_by_name() {
        let refused = |extra: Value| {
            let mut s = json!({"peft_type": "LORA", "r": 4, "lora_alpha": 8});
            s.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            settings_of(&s, &["score"]).unwrap_err()
        };
        assert!(refused(json!({"use_dora": true})).contains("use_dora"));
        assert!(refused(json!({"bias": "all"})).contains("bias"));
        assert!(refused(json!({"rank_pattern": {"h\\.[0-3]\\.attn": 8}})).contains("not a module name"));
        assert!(refused(json!({"rank_pattern": {"c_fc": 0}})).contains("not a whole number"));
        assert!(refused(json!({"alpha_pattern": ["c_fc"]})).contains("not an object"));
        let e = refused(json!({"use_rslora": true, "rank_pattern": {"c_fc": 8}}));
        assert!(e.contains("use_rslora with rank_pattern"), "{e}");
        assert!(refused(json!({"modules_to_save": ["score"]})).contains("modules_to_save"));
        // A classifier's adapter trains its head in full, and only that.
        let e = refused(json!({"task_type": "SEQ_CLS", "modules_to_save": ["score", "wte"]}));
        assert!(e.contains("modules_to_save"), "{e}");
        let mut s = json!({"peft_type": "LORA", "r": 4, "task_type": "SEQ_CLS",
                           "modules_to_save": ["classifier", "score"]});
        assert_eq!(settings_of(&s, &["score"]).unwrap().train, ["score"]);
        s["task_type"] = "CAUSAL_LM".into();
        assert!(settings_of(&s, &["score"]).is_err());
        assert!(refused(json!({"peft_type": "IA3"})).contains("IA3"));
        assert!(refused(json!({"r": 0})).contains("rank"));
        let ok = settings_of(
            &json!({"peft_type": "LORA", "r": 4, "lora_alpha": 8, "use_rslora": true,
                                     "modules_to_save": null, "rank_pattern": {}}),
            &["score"],
        )
        .unwrap();
        assert_eq!((ok.rank, ok.alpha), (4, 16.0));
        // Patterns land on wgml's modules: c_attn on the query, key and value, a
        // bare c_proj on both products it names.
        let ok = settings_of(
            &json!({"peft_type": "LORA", "r": 4, "lora_alpha": 8,
            "rank_pattern": {"transformer.h.1.attn.c_attn": 12, "c_fc": 2},
            "alpha_pattern": {"c_proj": 3}}),
            &["score"],
        )
        .unwrap();
        assert_eq!(ok.rank_of("h.1.attn.key"), 12);
        assert_eq!(ok.rank_of("h.0.attn.key"), 4);
        assert_eq!(ok.rank_of("h.0.mlp.c_fc"), 2);
        assert_eq!(ok.alpha_of("h.3.attn.output"), 3.0);
        assert_eq!(ok.alpha_of("h.3.mlp.c_proj"), 3.0);
        assert_eq!(ok.scaling_of("h.0.mlp.c_fc"), 4.0);
    }
}
