//! wgml checkpoints written as other programs' files, the way back of
//! [`crate::import`].
//!
//! [`export_gpt2`] writes a GPT-2 checkpoint (one `wgml import` made, fine-tuned
//! or not, or a model trained from `examples/models/gpt2_small.json`) as a
//! Hugging Face folder: `config.json`, `model.safetensors` in
//! `GPT2LMHeadModel.save_pretrained`'s names and layouts (Conv1D weights `[in,
//! out]`, the query, key and value side by side in `c_attn`, no `lm_head.weight`
//! for a head tied to `wte`) and `tokenizer.json`, so `transformers` loads it with
//! `GPT2LMHeadModel.from_pretrained(FOLDER)`. A checkpoint qualifies when its
//! model is exactly what [`Gpt2Config::architecture`] describes for some
//! settings; anything else is refused, naming the first layer that differs.
//!
//! A GPT-2 made a classifier of texts ([`Functional::sequence_classifier`])
//! exports as `GPT2ForSequenceClassification`: its `score.weight`, no head, and
//! `config.json` with `pad_token_id` and the class names as `id2label`, so
//! `AutoModelForSequenceClassification.from_pretrained(FOLDER)` loads it.

pub mod bert;
pub mod llama;

use std::collections::HashMap;
use std::path::Path;

use serde_json::json;

use crate::checkpoint::{self, Checkpoint};
use crate::error::{Error, Result};
use crate::graph::params::NamedValues;
use crate::import::{ACTIVATIONS, Gpt2Config};
use crate::nn::functional::{FunctionalLayer, LayerOrOp};
use crate::nn::{Functional, Layer};

/// The classes and padding id of functional model `f` when it is a classifier
/// [`Functional::sequence_classifier`] made (its last layer the new head, its
/// `wte` masking padding); `None` otherwise.
pub fn gpt2_classifier_of(f: &Functional) -> Option<(usize, u32)> {
    let last = f.layers.last()?;
    let LayerOrOp::Layer(Layer::Dense { units, .. }) = &last.what else {
        return None;
    };
    if last.name != crate::nn::transfer::CLASSIFIER_HEAD {
        return None;
    }
    f.layers.iter().find_map(|l| match &l.what {
        LayerOrOp::Layer(Layer::Embedding {
            mask_id: Some(pad), ..
        }) if l.name == "wte" => Some((*units, *pad)),
        _ => None,
    })
}

/// The GPT-2 settings and context (positions) of functional model `f`, when it is
/// a GPT-2 as [`Gpt2Config::architecture`] writes one, or such a GPT-2 made a
/// classifier ([`gpt2_classifier_of`]); else what differs.
pub fn gpt2_config_of(f: &Functional) -> std::result::Result<(Gpt2Config, usize), String> {
    let layer = |name: &str| {
        f.layers.iter().find_map(|l: &FunctionalLayer| match &l.what {
            LayerOrOp::Layer(layer) if l.name == name => Some(layer),
            _ => None,
        })
    };
    let missing = |name: &str| format!("has no layer '{name}' (is it a GPT-2?)");
    let &[context] = f.input.shape.as_slice() else {
        return Err(format!(
            "reads samples of shape {:?}; a GPT-2 reads [positions] of token ids",
            f.input.shape
        ));
    };
    let Some(&Layer::Embedding {
        input_dim: vocab,
        output_dim: width,
        ..
    }) = layer("wte")
    else {
        return Err(missing("wte (an Embedding)"));
    };
    let layers = (0..)
        .take_while(|i| layer(&format!("h.{i}.ln_1")).is_some())
        .count();
    let Some(&Layer::MultiHeadAttention {
        num_heads: heads,
        dropout: attn_dropout,
        ..
    }) = layer("h.0.attn")
    else {
        return Err(missing("h.0.attn (a MultiHeadAttention)"));
    };
    let Some(&Layer::Dense {
        units: inner,
        activation,
        ..
    }) = layer("h.0.mlp.c_fc")
    else {
        return Err(missing("h.0.mlp.c_fc (a Dense layer)"));
    };
    let Some(&Layer::LayerNormalization { epsilon, .. }) = layer("h.0.ln_1") else {
        return Err(missing("h.0.ln_1 (a LayerNormalization)"));
    };
    let json_name = serde_json::to_value(activation).ok();
    let activation = ACTIVATIONS
        .iter()
        .map(|(_, wgml)| *wgml)
        .find(|wgml| json_name.as_ref().and_then(|v| v.as_str()) == Some(*wgml))
        .ok_or_else(|| format!("h.0.mlp.c_fc uses {activation:?}, which GPT-2 has not"))?;
    let rate = |name: &str| match layer(name) {
        Some(&Layer::Dropout { rate }) => decimal(rate),
        _ => 0.0,
    };
    let classifier = gpt2_classifier_of(f);
    // A classifier has no language-model head: GPT-2's default, tied, stands for it.
    let head_tied = classifier.is_some()
        || f.layers
            .iter()
            .any(|l| l.name == "lm_head" && l.tied.get("weight").map(String::as_str) == Some("wte.weight"));
    let config = Gpt2Config {
        vocab,
        positions: context,
        width,
        layers,
        heads,
        inner,
        epsilon: decimal(epsilon),
        activation,
        embd_dropout: rate("drop"),
        resid_dropout: rate("h.0.attn.drop"),
        attn_dropout: decimal(attn_dropout),
        tied_head: head_tied,
    };
    if heads == 0 || width % heads != 0 || layers == 0 {
        return Err(format!(
            "has {layers} blocks of width {width} with {heads} heads; a GPT-2 has at least one \
             block and a width its heads divide"
        ));
    }
    let mut want = config
        .architecture(context, 1e-4)
        .map_err(|e| e.to_string())?
        .functional;
    if let Some((classes, pad)) = classifier {
        want = want
            .sequence_classifier(classes, pad)
            .map_err(|e| e.to_string())?;
    }
    same_model(&want, f, "GPT-2")?;
    Ok((config, context))
}

/// Whether `f` is the model `want` describes (`what` names it in errors), once
/// its frozen layers are thawed and its low-rank adapters dropped (they are
/// merged on export); else the first layer that differs.
pub(crate) fn same_model(want: &Functional, f: &Functional, what: &str) -> std::result::Result<(), String> {
    let mut f = f.clone();
    f.lora = None;
    for l in &mut f.layers {
        if let LayerOrOp::Layer(layer) = &l.what {
            l.what = LayerOrOp::Layer(layer.clone().with_trainable(true));
        }
    }
    if *want == f {
        return Ok(());
    }
    let differs = want
        .layers
        .iter()
        .zip(&f.layers)
        .find(|(w, g)| w != g)
        .map(|(w, _)| format!("layer '{}'", w.name))
        .unwrap_or_else(|| {
            if want.layers.len() != f.layers.len() {
                format!(
                    "{} layers where a {what} of its size has {}",
                    f.layers.len(),
                    want.layers.len()
                )
            } else {
                "its input, outputs or objective".into()
            }
        });
    Err(format!(
        "is not a {what} as wgml import describes one: {differs} differs from {what}'s"
    ))
}

/// The checkpoint's tensors, its low-rank adapters merged when it has some.
pub(crate) fn merged_tensors<'a>(
    c: &'a Checkpoint,
    f: &Functional,
    path: &Path,
) -> Result<std::borrow::Cow<'a, [NamedValues]>> {
    Ok(match &f.lora {
        Some(lora) => std::borrow::Cow::Owned(
            crate::nn::lora::merged(&c.tensors, lora).map_err(|e| e.in_file(path, "its adapters"))?,
        ),
        None => std::borrow::Cow::Borrowed(&c.tensors),
    })
}

/// Writes a Hugging Face folder `dir` (created if missing): `model.safetensors`
/// of `tensors`, `config.json` of `settings`, and when the vocabulary is a
/// tokenizer `tokenizer.json` and `tokenizer_config.json` (its `model_max_length`
/// the model's `window`, so `tokenizer(text, truncation=True)` cuts texts to what
/// the model reads; the chat template and special tokens when the tokenizer has
/// them) and, when it has stop ids or sampling defaults, `generation_config.json`; returns whether
/// the tokenizer was written.
pub(crate) fn write_folder(
    dir: &Path,
    tensors: &[NamedValues],
    settings: &serde_json::Value,
    vocabulary: &crate::data::text::Vocabulary,
    window: usize,
) -> Result<bool> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Io {
        path: dir.display().to_string(),
        source,
    })?;
    let entries: Vec<checkpoint::Entry> = tensors
        .iter()
        .map(|(name, shape, v)| checkpoint::f32_entry(name.clone(), shape, v))
        .collect();
    // transformers reads only files whose metadata says they hold PyTorch tensors.
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    checkpoint::write_atomic(
        &dir.join("model.safetensors"),
        &checkpoint::serialize(&entries, metadata)?,
    )?;
    let text = serde_json::to_string_pretty(settings)
        .map_err(|e| Error::invalid(format!("writing config.json: {e}")))?;
    checkpoint::write_atomic(&dir.join("config.json"), text.as_bytes())?;
    Ok(match vocabulary.to_json()? {
        Some(json) => {
            checkpoint::write_atomic(&dir.join("tokenizer.json"), json.as_bytes())?;
            // BERT's tokenizer classes in transformers rebuild the normalizer from
            // do_lower_case (default true) unless told: give them the file's own.
            let mut config = json!({ "model_max_length": window });
            let parsed: serde_json::Value = serde_json::from_str(&json).unwrap_or_default();
            let normalizer = &parsed["normalizer"];
            if normalizer["type"] == "BertNormalizer" {
                config["do_lower_case"] = normalizer["lowercase"].clone();
                config["strip_accents"] = normalizer["strip_accents"].clone();
            }
            // The chat template and special tokens where transformers reads them,
            // and the ids that end a reply where generate reads them.
            if let Some(chat) = vocabulary.chat() {
                if let Some(template) = &chat.template {
                    config["chat_template"] = json!(template);
                }
                for (key, text) in &chat.special_tokens {
                    config[key] = json!(text);
                }
                let mut generation = chat.sampling.to_json();
                if !chat.stop_ids.is_empty() {
                    generation["eos_token_id"] = match chat.stop_ids.as_slice() {
                        [one] => json!(one),
                        many => json!(many),
                    };
                }
                if generation.as_object().is_some_and(|o| !o.is_empty()) {
                    checkpoint::write_atomic(
                        &dir.join("generation_config.json"),
                        generation.to_string().as_bytes(),
                    )?;
                }
            }
            checkpoint::write_atomic(&dir.join("tokenizer_config.json"), config.to_string().as_bytes())?;
            true
        }
        None => false,
    })
}

/// `id2label` and `label2id` of `classes` classes named `names` (`LABEL_i` past
/// their end), as `config.json` holds them.
pub(crate) fn labels(names: &[String], classes: usize) -> (serde_json::Value, serde_json::Value) {
    let label = |i: usize| names.get(i).cloned().unwrap_or_else(|| format!("LABEL_{i}"));
    let id2label: serde_json::Map<String, serde_json::Value> =
        (0..classes).map(|i| (i.to_string(), json!(label(i)))).collect();
    let label2id: serde_json::Map<String, serde_json::Value> =
        (0..classes).map(|i| (label(i), json!(i))).collect();
    (json!(id2label), json!(label2id))
}

/// `x` (an f32 read from JSON) as the decimal it was written as: 1e-5, not
/// 9.999999747378752e-6.
fn decimal(x: f32) -> f64 {
    x.to_string().parse().unwrap_or(x as f64)
}

/// What [`export_gpt2`] wrote.
pub struct Exported {
    /// The settings written to `config.json`.
    pub config: Gpt2Config,
    /// Whether `tokenizer.json` was written (a model reading raw bytes has none).
    pub tokenizer: bool,
    /// Whether it is a classifier of texts (`GPT2ForSequenceClassification`).
    pub classifier: bool,
    /// One line on what was written.
    pub summary: String,
}

/// Writes checkpoint `c` (read from `path`, named in errors) as a Hugging Face
/// GPT-2 folder `dir` (created if missing; its `config.json`, `model.safetensors`
/// and `tokenizer.json` replaced). See the module documentation.
pub fn export_gpt2(c: &Checkpoint, path: &Path, dir: &Path) -> Result<Exported> {
    let bad = |message: String| Error::Data {
        path: path.display().to_string(),
        message,
    };
    let a = c.functional_architecture(path)?.ok_or_else(|| {
        bad(
            "holds no functional model: export writes GPT-2 checkpoints (from wgml import, or \
             trained from examples/models/gpt2_small.json)"
                .into(),
        )
    })?;
    let (config, context) = gpt2_config_of(&a.functional).map_err(bad)?;
    let classifier = gpt2_classifier_of(&a.functional);
    let own = merged_tensors(c, &a.functional, path)?;
    let tensors = hf_tensors(&own, &config, classifier.map(|(classes, _)| classes)).map_err(bad)?;
    let mut settings = hf_config(&config);
    if let Some((classes, pad)) = classifier {
        let (id2label, label2id) = labels(&a.class_names, classes);
        settings["architectures"] = json!(["GPT2ForSequenceClassification"]);
        settings["pad_token_id"] = json!(pad);
        settings["id2label"] = id2label;
        settings["label2id"] = label2id;
    }
    let tokenizer = write_folder(dir, &tensors, &settings, &c.vocabulary(path)?, context)?;
    let count: usize = tensors.iter().map(|(_, _, v)| v.len()).sum();
    let summary = format!(
        "GPT-2: {} blocks of width {}, {} heads, {context} positions, {} tokens; {count} parameters{}; {}",
        config.layers,
        config.width,
        config.heads,
        config.vocab,
        match classifier {
            Some((classes, pad)) => format!(" (a classifier of {classes} classes, padding id {pad})"),
            None if config.tied_head => " (the head is wte, tied)".into(),
            None => String::new(),
        },
        if tokenizer {
            "with its tokenizer"
        } else {
            "no tokenizer.json: the model reads raw bytes (token id = byte value)"
        }
    );
    Ok(Exported {
        config,
        tokenizer,
        classifier: classifier.is_some(),
        summary,
    })
}

/// `config.json` for `c`, as `GPT2Config.to_json_string` writes the settings
/// wgml uses (the others take transformers' defaults).
fn hf_config(c: &Gpt2Config) -> serde_json::Value {
    let activation = ACTIVATIONS
        .iter()
        .find(|(_, wgml)| *wgml == c.activation)
        .map_or("gelu_new", |(hf, _)| *hf);
    json!({
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": c.vocab,
        "n_positions": c.positions,
        "n_embd": c.width,
        "n_layer": c.layers,
        "n_head": c.heads,
        "n_inner": if c.inner == 4 * c.width { serde_json::Value::Null } else { json!(c.inner) },
        "activation_function": activation,
        "layer_norm_epsilon": c.epsilon,
        "embd_pdrop": c.embd_dropout,
        "resid_pdrop": c.resid_dropout,
        "attn_pdrop": c.attn_dropout,
        "scale_attn_weights": true,
        "scale_attn_by_inverse_layer_idx": false,
        "reorder_and_upcast_attn": false,
        "add_cross_attention": false,
        "tie_word_embeddings": c.tied_head,
        "initializer_range": 0.02,
    })
}

/// The checkpoint's tensors in `GPT2LMHeadModel`'s names and layouts: the
/// inverse of the importer's mapping; a classifier of `classes` classes has
/// `GPT2ForSequenceClassification`'s `score.weight` instead of a head.
fn hf_tensors(
    tensors: &[NamedValues],
    config: &Gpt2Config,
    classifier: Option<usize>,
) -> std::result::Result<Vec<NamedValues>, String> {
    let by_name: HashMap<&str, (&[usize], &[f32])> = tensors
        .iter()
        .map(|(n, s, v)| (n.as_str(), (s.as_slice(), v.as_slice())))
        .collect();
    let take = |name: &str, shape: &[usize]| -> std::result::Result<Vec<f32>, String> {
        match by_name.get(name) {
            Some((s, v)) if *s == shape => Ok(v.to_vec()),
            Some((s, _)) => Err(format!(
                "tensor '{name}' has shape {s:?}, the model makes it {shape:?}"
            )),
            None => Err(format!("has no tensor '{name}'")),
        }
    };
    let (d, v, inner) = (config.width, config.vocab, config.inner);
    let t = |name: &str| format!("transformer.{name}");
    let mut out = vec![
        (t("wte.weight"), vec![v, d], take("wte.weight", &[v, d])?),
        (
            t("wpe.weight"),
            vec![config.positions, d],
            take("wpe.weight", &[config.positions, d])?,
        ),
    ];
    for i in 0..config.layers {
        let h = format!("h.{i}");
        for norm in ["ln_1", "ln_2"] {
            for part in ["weight", "bias"] {
                let name = format!("{h}.{norm}.{part}");
                out.push((t(&name), vec![d], take(&name, &[d])?));
            }
        }
        // c_attn: [D, 3D] with the query, key and value side by side.
        let mut w = vec![0.0; d * 3 * d];
        let mut b = Vec::with_capacity(3 * d);
        for (k, part) in ["query", "key", "value"].iter().enumerate() {
            let pw = take(&format!("{h}.attn.{part}.weight"), &[d, d])?;
            for o in 0..d {
                for x in 0..d {
                    w[x * 3 * d + k * d + o] = pw[o * d + x];
                }
            }
            b.extend(take(&format!("{h}.attn.{part}.bias"), &[d])?);
        }
        out.push((t(&format!("{h}.attn.c_attn.weight")), vec![d, 3 * d], w));
        out.push((t(&format!("{h}.attn.c_attn.bias")), vec![3 * d], b));
        for (from, to, fan_in, fan_out) in [
            ("attn.output", "attn.c_proj", d, d),
            ("mlp.c_fc", "mlp.c_fc", d, inner),
            ("mlp.c_proj", "mlp.c_proj", inner, d),
        ] {
            let w = take(&format!("{h}.{from}.weight"), &[fan_out, fan_in])?;
            out.push((
                t(&format!("{h}.{to}.weight")),
                vec![fan_in, fan_out],
                crate::import::transpose_columns(&w, fan_out, fan_in, 0, fan_in),
            ));
            out.push((
                t(&format!("{h}.{to}.bias")),
                vec![fan_out],
                take(&format!("{h}.{from}.bias"), &[fan_out])?,
            ));
        }
    }
    for part in ["weight", "bias"] {
        let name = format!("ln_f.{part}");
        out.push((t(&name), vec![d], take(&name, &[d])?));
    }
    if let Some(classes) = classifier {
        let head = crate::nn::transfer::CLASSIFIER_HEAD;
        let name = format!("{head}.weight");
        out.push((name.clone(), vec![classes, d], take(&name, &[classes, d])?));
    } else if !config.tied_head {
        out.push((
            "lm_head.weight".into(),
            vec![v, d],
            take("lm_head.weight", &[v, d])?,
        ));
    }
    Ok(out)
}
