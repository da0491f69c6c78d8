//! Pretrained models from other programs' files, turned into wgml checkpoints.
//!
//! [`import_gpt2`] reads a Hugging Face GPT-2 folder (`config.json`,
//! `model.safetensors`, `tokenizer.json`: what `save_pretrained` writes and what
//! the Hub's `gpt2`, `gpt2-medium`, `gpt2-large`, `gpt2-xl` and `distilgpt2`
//! hold) and describes the same network as a functional wgml model:
//!
//! ```text
//! wte (Embedding) → wpe (AddPositionEmbedding) → drop (embd_pdrop)
//! n_layer × { h.i.ln_1 → h.i.attn (causal MultiHeadAttention) → h.i.attn.drop → + ,
//!             h.i.ln_2 → h.i.mlp.c_fc (activation_function) → h.i.mlp.c_proj
//!             → h.i.mlp.drop → + }
//! ln_f → lm_head (Dense, no bias, softmax) under sparse categorical cross-entropy
//! ```
//!
//! GPT-2's `Conv1D` weights are `[in, out]`; wgml's Dense weights are PyTorch
//! Linear's `[out, in]`, so each is transposed, and the fused `c_attn` projection
//! `[D, 3D]` is split into the query, key and value projections. `lm_head` reads
//! `wte` as its weight (tied, as `tie_word_embeddings` says, true unless a config
//! sets it false): one tensor, stored and updated once, whose gradient sums the
//! embedding's and the head's, as in PyTorch. An untied GPT-2's `lm_head.weight`
//! is its own tensor. The three dropouts are kept: after the embeddings
//! (`embd_pdrop`), on the attention weights (`attn_pdrop`, the attention layer's
//! `dropout`) and on the residual branches (`resid_pdrop`). The checkpoint keeps the tokenizer, so `wgml generate`,
//! `eval` and `train` read text as GPT-2 does.

pub mod bert;
pub mod llama;

use std::collections::HashMap;
use std::path::Path;

use safetensors::{Dtype, SafeTensors};
use serde_json::{Value, json};

use crate::checkpoint::FunctionalArchitecture;
use crate::data::chat::ChatSettings;
use crate::data::text::Vocabulary;
use crate::error::{Error, Result};
use crate::graph::params::NamedValues;

/// A model read from another program's files: its description, its tensors
/// (named and laid out as wgml's checkpoints), and its tokenizer.
pub struct Imported {
    /// What kind of model it was (e.g. `gpt2`), the checkpoint's model name.
    pub kind: String,
    /// The wgml model.
    pub architecture: FunctionalArchitecture,
    /// Its parameters.
    pub tensors: Vec<NamedValues>,
    /// How its text becomes token ids.
    pub vocabulary: Vocabulary,
    /// The padding id `config.json` gives (`pad_token_id`), if any.
    pub pad_token_id: Option<u32>,
    /// One line on what was read.
    pub summary: String,
}

impl Imported {
    /// The imported model compiled onto `ctx` with its parameters loaded (its
    /// own optimizer, the import's Adam; dropout seeded from 0): ready to
    /// predict, or to fine-tune.
    pub fn model(&self, ctx: &crate::gpu::Context) -> Result<crate::nn::Model> {
        let model =
            self.architecture
                .functional
                .compile_supervised(ctx, self.architecture.optimizer.clone(), 0)?;
        model.load_params(ctx, &self.tensors)?;
        Ok(model)
    }
}

/// GPT-2's `activation_function` names and the wgml layer activation (its JSON
/// name) each one is; the first name of an activation is what export writes.
pub(crate) const ACTIVATIONS: [(&str, &str); 9] = [
    ("gelu_new", "GeluTanh"),
    ("gelu_pytorch_tanh", "GeluTanh"),
    ("gelu_fast", "GeluTanh"),
    ("gelu", "Gelu"),
    ("relu", "Relu"),
    ("tanh", "Tanh"),
    ("sigmoid", "Sigmoid"),
    ("silu", "Silu"),
    ("swish", "Silu"),
];

/// The settings of a GPT-2 that wgml uses, from its `config.json`.
#[derive(Clone, Debug, PartialEq)]
pub struct Gpt2Config {
    /// Token ids (`vocab_size`).
    pub vocab: usize,
    /// Positions of its learned position embedding (`n_positions`).
    pub positions: usize,
    /// Width (`n_embd`).
    pub width: usize,
    /// Blocks (`n_layer`).
    pub layers: usize,
    /// Attention heads (`n_head`).
    pub heads: usize,
    /// Units of each block's MLP (`n_inner`, default 4 × width).
    pub inner: usize,
    /// Layer normalizations' epsilon (`layer_norm_epsilon`).
    pub epsilon: f64,
    /// The MLP's activation as a wgml layer activation (`activation_function`).
    pub activation: &'static str,
    /// Dropout after the embeddings (`embd_pdrop`).
    pub embd_dropout: f64,
    /// Dropout on each block's two residual branches (`resid_pdrop`).
    pub resid_dropout: f64,
    /// Dropout on the attention weights (`attn_pdrop`).
    pub attn_dropout: f64,
    /// Whether the head is the token embedding (`tie_word_embeddings`, default true).
    pub tied_head: bool,
}

impl Gpt2Config {
    /// Reads the settings from `config.json`'s text, refusing the variants wgml
    /// does not compute as Hugging Face does.
    pub fn parse(text: &str) -> std::result::Result<Gpt2Config, String> {
        let c: Value = serde_json::from_str(text).map_err(|e| format!("is not JSON: {e}"))?;
        if let Some(t) = c.get("model_type").and_then(Value::as_str)
            && t != "gpt2"
        {
            return Err(format!(
                "describes a '{t}' model; wgml imports GPT-2 (model_type \"gpt2\"), Llama (\"llama\", \
                 \"mistral\", \"qwen2\") and, as classifiers of texts, BERT (\"bert\"), RoBERTa (\"roberta\", \"xlm-roberta\", \"camembert\"), \
                 DistilBERT (\"distilbert\") and ELECTRA (\"electra\")"
            ));
        }
        let settings = Settings(&c);
        let size = |key: &str| settings.size(key);
        let float = |key: &str, default: f64| settings.float(key, default);
        let flag = |key: &str, default: bool| c.get(key).and_then(Value::as_bool).unwrap_or(default);
        for (key, default, want) in [
            ("scale_attn_weights", true, true),
            ("scale_attn_by_inverse_layer_idx", false, false),
            ("add_cross_attention", false, false),
        ] {
            if flag(key, default) != want {
                return Err(format!(
                    "sets {key} to {}, which wgml's attention does not compute (it scales \
                     scores by 1/√key_dim only, and has no cross-attention)",
                    !want
                ));
            }
        }
        let width = size("n_embd")?;
        let heads = size("n_head")?;
        if width % heads != 0 {
            return Err(format!("n_embd {width} is not a multiple of n_head {heads}"));
        }
        let inner = match c.get("n_inner") {
            None | Some(Value::Null) => 4 * width,
            Some(_) => size("n_inner")?,
        };
        let activation = match c.get("activation_function").and_then(Value::as_str) {
            None => "GeluTanh",
            Some(name) => ACTIVATIONS
                .iter()
                .find(|(hf, _)| *hf == name)
                .map(|(_, wgml)| *wgml)
                .ok_or_else(|| {
                    format!(
                        "uses activation_function '{name}'; wgml has gelu_new (tanh GELU), gelu, \
                         relu, tanh, sigmoid and silu"
                    )
                })?,
        };
        let positions = size("n_positions").or_else(|_| size("n_ctx"))?;
        let dropout = |key: &str| settings.rate(key, 0.1);
        Ok(Gpt2Config {
            vocab: size("vocab_size")?,
            positions,
            width,
            layers: size("n_layer")?,
            heads,
            inner,
            epsilon: float("layer_norm_epsilon", 1e-5)?,
            activation,
            embd_dropout: dropout("embd_pdrop")?,
            resid_dropout: dropout("resid_pdrop")?,
            attn_dropout: dropout("attn_pdrop")?,
            tied_head: flag("tie_word_embeddings", true),
        })
    }

    /// The wgml functional model of this GPT-2 with `context` positions (at most
    /// its own), trained with Adam at `lr`.
    pub fn architecture(&self, context: usize, lr: f64) -> Result<FunctionalArchitecture> {
        let (d, heads) = (self.width, self.heads);
        let mut layers = vec![
            layer(
                "wte",
                &["tokens"],
                json!({ "Embedding": { "input_dim": self.vocab, "output_dim": d } }),
            ),
            layer("wpe", &["wte"], json!({ "AddPositionEmbedding": {} })),
        ];
        let dropout = |layers: &mut Vec<Value>, name: String, x: String, rate: f64| -> String {
            if rate > 0.0 {
                layers.push(layer(&name, &[&x], json!({ "Dropout": { "rate": rate } })));
                name
            } else {
                x
            }
        };
        let norm = json!({ "LayerNormalization": { "epsilon": self.epsilon } });
        let mut x = dropout(&mut layers, "drop".into(), "wpe".into(), self.embd_dropout);
        let mut attention = json!({ "num_heads": heads, "key_dim": d / heads, "causal": true });
        if self.attn_dropout > 0.0 {
            attention["dropout"] = json!(self.attn_dropout);
        }
        for i in 0..self.layers {
            let h = format!("h.{i}");
            layers.push(layer(&format!("{h}.ln_1"), &[&x], norm.clone()));
            layers.push(layer(
                &format!("{h}.attn"),
                &[&format!("{h}.ln_1")],
                json!({ "MultiHeadAttention": attention }),
            ));
            let attn = dropout(
                &mut layers,
                format!("{h}.attn.drop"),
                format!("{h}.attn"),
                self.resid_dropout,
            );
            layers.push(op(&format!("{h}.res1"), &[&x, &attn], "Add"));
            layers.push(layer(&format!("{h}.ln_2"), &[&format!("{h}.res1")], norm.clone()));
            layers.push(layer(
                &format!("{h}.mlp.c_fc"),
                &[&format!("{h}.ln_2")],
                json!({ "Dense": { "units": self.inner, "activation": self.activation } }),
            ));
            layers.push(layer(
                &format!("{h}.mlp.c_proj"),
                &[&format!("{h}.mlp.c_fc")],
                json!({ "Dense": { "units": d } }),
            ));
            let mlp = dropout(
                &mut layers,
                format!("{h}.mlp.drop"),
                format!("{h}.mlp.c_proj"),
                self.resid_dropout,
            );
            layers.push(op(&format!("{h}.res2"), &[&format!("{h}.res1"), &mlp], "Add"));
            x = format!("{h}.res2");
        }
        layers.push(layer("ln_f", &[&x], norm));
        let tied = self.tied_head.then_some("wte.weight");
        language_model(layers, ("ln_f", self.vocab, tied), context, lr, "GPT-2")
    }
}

/// The functional model of a decoder's `layers` (reading `[context]` token
/// ids as `tokens`) topped by `lm_head`, a Dense of `vocab` units without bias
/// after layer `last`, tied to the embedding `tied` names if any, under softmax
/// cross-entropy, trained with Adam at `lr`; `what` names the model in errors.
pub(crate) fn language_model(
    mut layers: Vec<Value>,
    (last, vocab, tied): (&str, usize, Option<&str>),
    context: usize,
    lr: f64,
    what: &str,
) -> Result<FunctionalArchitecture> {
    let mut head = layer(
        "lm_head",
        &[last],
        json!({ "Dense": { "units": vocab, "activation": "Softmax", "use_bias": false } }),
    );
    if let Some(weight) = tied {
        head["tied"] = json!({ "weight": weight });
    }
    layers.push(head);
    let description = json!({
        "functional": {
            "input": { "name": "tokens", "shape": [context] },
            "layers": layers,
            "objective": { "Supervised": { "output": "lm_head", "loss": "SparseCategoricalCrossentropy" } }
        },
        "optimizer": { "Adam": { "lr": lr } }
    });
    serde_json::from_value(description)
        .map_err(|e| Error::invalid(format!("the {what} description wgml wrote does not parse: {e}")))
}

/// A `config.json`'s settings read with errors that name the key.
pub(crate) struct Settings<'a>(pub(crate) &'a Value);

impl Settings<'_> {
    /// A whole number ≥ 1.
    pub(crate) fn size(&self, key: &str) -> std::result::Result<usize, String> {
        self.0
            .get(key)
            .and_then(Value::as_u64)
            .filter(|&v| v > 0)
            .map(|v| v as usize)
            .ok_or_else(|| format!("has no positive whole '{key}'"))
    }

    /// A number, `default` when absent or null.
    pub(crate) fn float(&self, key: &str, default: f64) -> std::result::Result<f64, String> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => v.as_f64().ok_or_else(|| format!("'{key}' is not a number")),
        }
    }

    /// A rate in [0, 1) (a dropout), `default` when absent or null.
    pub(crate) fn rate(&self, key: &str, default: f64) -> std::result::Result<f64, String> {
        let p = self.float(key, default)?;
        if (0.0..1.0).contains(&p) {
            Ok(p)
        } else {
            Err(format!("'{key}' {p} is not a rate in [0, 1)"))
        }
    }
}

/// The `model_type` a Hugging Face folder's `config.json` names (`None` when it
/// names none).
pub fn model_type(dir: &Path) -> Result<Option<String>> {
    let files = Folder(dir);
    let text = files.text("config.json")?;
    let c: Value =
        serde_json::from_str(&text).map_err(|e| files.bad("config.json", format!("is not JSON: {e}")))?;
    Ok(c.get("model_type").and_then(Value::as_str).map(str::to_string))
}

/// A Hugging Face model folder being read: its files by name, errors naming them.
pub(crate) struct Folder<'a>(pub(crate) &'a Path);

impl Folder<'_> {
    fn path(&self, name: &str) -> std::path::PathBuf {
        self.0.join(name)
    }

    /// An error about file `name`.
    pub(crate) fn bad(&self, name: &str, message: String) -> Error {
        Error::Data {
            path: self.path(name).display().to_string(),
            message,
        }
    }

    /// File `name`'s bytes.
    pub(crate) fn bytes(&self, name: &str) -> Result<Vec<u8>> {
        std::fs::read(self.path(name)).map_err(|source| Error::Io {
            path: self.path(name).display().to_string(),
            source,
        })
    }

    /// File `name` as UTF-8 text.
    pub(crate) fn text(&self, name: &str) -> Result<String> {
        String::from_utf8(self.bytes(name)?).map_err(|_| self.bad(name, "is not UTF-8 text".into()))
    }

    /// The folder's `tokenizer.json`, which must fit a model of `vocab` token ids
    /// (the model `what` names), with the chat template, special tokens and stop
    /// ids the folder's other files give it ([`ChatSettings::from_folder`]).
    pub(crate) fn tokenizer(&self, vocab: usize, what: &str) -> Result<Vocabulary> {
        let name = "tokenizer.json";
        if !self.path(name).exists() {
            return Err(self.bad(
                name,
                format!(
                    "is missing: wgml reads {what}'s tokenizer from it (in Python, \
                     AutoTokenizer.from_pretrained(NAME).save_pretrained(FOLDER) writes it)"
                ),
            ));
        }
        let mut vocabulary = Vocabulary::from_file(&self.path(name))?;
        vocabulary.set_chat(ChatSettings::from_folder(self.0)?)?;
        if vocabulary.size() > vocab {
            return Err(self.bad(
                name,
                format!(
                    "has {} tokens but the model only {vocab} (vocab_size): they do not belong together",
                    vocabulary.size()
                ),
            ));
        }
        Ok(vocabulary)
    }
}

fn layer(name: &str, inputs: &[&str], what: Value) -> Value {
    json!({ "name": name, "inputs": inputs, "layer": what })
}

fn op(name: &str, inputs: &[&str], what: &str) -> Value {
    json!({ "name": name, "inputs": inputs, "op": what })
}

/// Reads the Hugging Face GPT-2 in folder `dir` (`config.json`,
/// `model.safetensors`, `tokenizer.json`) as a wgml model of `context` positions
/// (`None`: GPT-2's own, 1,024 for the Hub's models; fewer keep the first rows of
/// the position embedding and cost less per step), trained with Adam at `lr` when
/// fine-tuned. See the module documentation for the mapping.
pub fn import_gpt2(dir: &Path, context: Option<usize>, lr: f64) -> Result<Imported> {
    let files = Folder(dir);
    let bad = |name: &str, message: String| files.bad(name, message);
    let config_text = files.text("config.json")?;
    let config = Gpt2Config::parse(&config_text).map_err(|m| bad("config.json", m))?;
    let context = context.unwrap_or(config.positions);
    if context < 2 || context > config.positions {
        return Err(Error::invalid(format!(
            "a context of {context} positions: GPT-2 here has {} (give 2 to {0})",
            config.positions
        )));
    }
    let vocabulary = files.tokenizer(config.vocab, "GPT-2")?;
    let bytes = files.bytes("model.safetensors")?;
    let file = SafeTensors::deserialize(&bytes)
        .map_err(|e| bad("model.safetensors", format!("is not a safetensors file: {e}")))?;
    let (tensors, classes) =
        gpt2_tensors(&file, &config, context).map_err(|m| bad("model.safetensors", m))?;
    let mut architecture = config.architecture(context, lr)?;
    let settings: Value =
        serde_json::from_str(&config_text).map_err(|e| bad("config.json", e.to_string()))?;
    let pad_token_id = match settings.get("pad_token_id").and_then(Value::as_u64) {
        Some(id) if (id as usize) < config.vocab => Some(id as u32),
        Some(id) => {
            return Err(bad(
                "config.json",
                format!("its pad_token_id {id} is not below vocab_size {}", config.vocab),
            ));
        }
        None => None,
    };
    let mut classifier = String::new();
    if let Some(classes) = classes {
        // GPT2ForSequenceClassification: read at each text's last token before the
        // padding, its pad_token_id (else the tokenizer's padding or end of text).
        let pad = match pad_token_id {
            Some(id) => id,
            None => vocabulary.padding_id().ok_or_else(|| {
                bad(
                    "config.json",
                    "has no pad_token_id and the tokenizer no padding or end-of-text token: a \
                     classifier of texts needs one to find each text's last token"
                        .into(),
                )
            })?,
        };
        architecture.functional = architecture.functional.sequence_classifier(classes, pad)?;
        let labels = settings.get("id2label").and_then(Value::as_object);
        architecture.class_names = (0..classes)
            .map(|i| {
                labels
                    .and_then(|m| m.get(&i.to_string()))
                    .and_then(Value::as_str)
                    .map_or_else(|| format!("LABEL_{i}"), str::to_string)
            })
            .collect();
        classifier = format!(
            "; a classifier of {classes} classes ({}), padding id {pad}",
            architecture.class_names.join(", ")
        );
    }
    let count: usize = tensors.iter().map(|(_, _, v)| v.len()).sum();
    let summary = format!(
        "GPT-2: {} blocks of width {}, {} heads, MLP {} ({}), {} positions (of {}), {} tokens; \
         {count} parameters{}{classifier}",
        config.layers,
        config.width,
        config.heads,
        config.inner,
        config.activation,
        context,
        config.positions,
        config.vocab,
        match (classes, config.tied_head) {
            (Some(_), _) => "",
            (None, true) => " (the head is wte, tied)",
            (None, false) => " (the head untied)",
        }
    );
    Ok(Imported {
        kind: "gpt2".into(),
        architecture,
        tensors,
        vocabulary,
        pad_token_id,
        summary,
    })
}

/// GPT-2's tensors renamed and laid out for [`Gpt2Config::architecture`]. Names
/// may carry `transformer.` (what `save_pretrained` of `GPT2LMHeadModel`
/// writes) or not (the Hub's original files); the causal-mask buffers
/// (`attn.bias`, `attn.masked_bias`) are skipped, and so is `lm_head.weight` of
/// a tied head (Hugging Face ties it to `wte` after loading, whatever the file
/// holds); an untied head's is required. A `GPT2ForSequenceClassification`'s
/// `score.weight` `[classes, width]` stands for the head: its classes are
/// returned too. Any other tensor is refused, as is a missing one or a shape
/// that differs from the config's.
fn gpt2_tensors(
    file: &SafeTensors<'_>,
    c: &Gpt2Config,
    context: usize,
) -> std::result::Result<(Vec<NamedValues>, Option<usize>), String> {
    let mut by_name: HashMap<String, (Vec<usize>, Vec<f32>)> = HashMap::new();
    for (name, view) in file.tensors() {
        let short = name.strip_prefix("transformer.").unwrap_or(&name).to_string();
        if short.ends_with(".attn.bias") || short.ends_with(".attn.masked_bias") {
            continue;
        }
        let values = to_f32(view.dtype(), view.data()).map_err(|m| format!("tensor '{name}': {m}"))?;
        by_name.insert(short, (view.shape().to_vec(), values));
    }
    // A classifier's head.
    let score_name = format!("{}.weight", crate::nn::transfer::CLASSIFIER_HEAD);
    let score = match by_name.remove(&score_name) {
        Some((shape, values)) if shape.len() == 2 && shape[0] >= 2 && shape[1] == c.width => {
            Some((score_name, shape, values))
        }
        Some((shape, _)) => {
            return Err(format!(
                "tensor '{score_name}' has shape {shape:?}; a classifier's head is [classes >= 2, {}]",
                c.width
            ));
        }
        None => None,
    };
    let mut take = |name: &str, shape: &[usize]| -> std::result::Result<Vec<f32>, String> {
        let (got, values) = by_name
            .remove(name)
            .ok_or_else(|| format!("has no tensor '{name}' (is it a GPT-2?)"))?;
        if got != shape {
            return Err(format!(
                "tensor '{name}' has shape {got:?}, but config.json makes it {shape:?}"
            ));
        }
        Ok(values)
    };
    let (d, v) = (c.width, c.vocab);
    let mut out: Vec<NamedValues> = Vec::new();
    let wte = take("wte.weight", &[v, d])?;
    out.push(("wte.weight".into(), vec![v, d], wte));
    let wpe = take("wpe.weight", &[c.positions, d])?;
    out.push(("wpe.weight".into(), vec![context, d], wpe[..context * d].to_vec()));
    for i in 0..c.layers {
        let h = format!("h.{i}");
        for norm in ["ln_1", "ln_2"] {
            for part in ["weight", "bias"] {
                let name = format!("{h}.{norm}.{part}");
                out.push((name.clone(), vec![d], take(&name, &[d])?));
            }
        }
        // c_attn: x·W + b with W [D, 3D], the query, key and value side by side.
        let w = take(&format!("{h}.attn.c_attn.weight"), &[d, 3 * d])?;
        let b = take(&format!("{h}.attn.c_attn.bias"), &[3 * d])?;
        for (k, part) in ["query", "key", "value"].iter().enumerate() {
            out.push((
                format!("{h}.attn.{part}.weight"),
                vec![d, d],
                transpose_columns(&w, d, 3 * d, k * d, d),
            ));
            out.push((
                format!("{h}.attn.{part}.bias"),
                vec![d],
                b[k * d..(k + 1) * d].to_vec(),
            ));
        }
        for (from, to, fan_in, fan_out) in [
            ("attn.c_proj", "attn.output", d, d),
            ("mlp.c_fc", "mlp.c_fc", d, c.inner),
            ("mlp.c_proj", "mlp.c_proj", c.inner, d),
        ] {
            let w = take(&format!("{h}.{from}.weight"), &[fan_in, fan_out])?;
            out.push((
                format!("{h}.{to}.weight"),
                vec![fan_out, fan_in],
                transpose_columns(&w, fan_in, fan_out, 0, fan_out),
            ));
            out.push((
                format!("{h}.{to}.bias"),
                vec![fan_out],
                take(&format!("{h}.{from}.bias"), &[fan_out])?,
            ));
        }
    }
    for part in ["weight", "bias"] {
        let name = format!("ln_f.{part}");
        out.push((name.clone(), vec![d], take(&name, &[d])?));
    }
    let classes = score.as_ref().map(|(_, shape, _)| shape[0]);
    out.extend(score);
    if c.tied_head || classes.is_some() {
        by_name.remove("lm_head.weight");
    } else {
        let head = take("lm_head.weight", &[v, d]).map_err(|m| {
            format!("{m}; config.json sets tie_word_embeddings false, so the head is its own tensor")
        })?;
        out.push(("lm_head.weight".into(), vec![v, d], head));
    }
    if let Some(extra) = by_name.keys().min() {
        return Err(format!(
            "holds tensor '{extra}' (and {} more), which a GPT-2 has not: another \
             architecture?",
            by_name.len() - 1
        ));
    }
    Ok((out, classes))
}

/// Columns `first..first + count` of row-major `[rows, cols]` matrix `w`,
/// transposed: `[count, rows]`.
pub(crate) fn transpose_columns(w: &[f32], rows: usize, cols: usize, first: usize, count: usize) -> Vec<f32> {
    let mut t = Vec::with_capacity(count * rows);
    for j in first..first + count {
        t.extend((0..rows).map(|i| w[i * cols + j]));
    }
    t
}

/// Little-endian f32, f16 or bf16 values as f32.
pub(crate) fn to_f32(dtype: Dtype, data: &[u8]) -> std::result::Result<Vec<f32>, String> {
    let words = |n: usize| data.chunks_exact(n);
    Ok(match dtype {
        Dtype::F32 => words(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Dtype::F16 => words(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::BF16 => words(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        other => return Err(format!("is {other:?}; wgml reads f32, f16 and bf16 weights")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_columns_picks_and_transposes_a_block() {
        // [[0, 1, 2], [3, 4, 5]]: columns 1..3 transposed are [[1, 4], [2, 5]].
        let w = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(transpose_columns(&w, 2, 3, 1, 2), vec![1.0, 4.0, 2.0, 5.0]);
    }

    /// `examples/models/gpt2_small.json` is what importing the Hub's `gpt2`
    /// describes (its config.json's settings), so it trains GPT-2 small from
    /// scratch with the layers and names an import gives.
    #[test]
    fn the_gpt2_small_example_is_the_imported_architecture() {
        let hub = r#"{"model_type":"gpt2","vocab_size":50257,"n_positions":1024,"n_embd":768,
            "n_layer":12,"n_head":12,"activation_function":"gelu_new","resid_pdrop":0.1,
            "embd_pdrop":0.1,"attn_pdrop":0.1,"layer_norm_epsilon":1e-05}"#;
        let want = Gpt2Config::parse(hub).unwrap().architecture(1024, 1e-4).unwrap();
        let example: FunctionalArchitecture =
            serde_json::from_str(include_str!("../examples/models/gpt2_small.json")).unwrap();
        assert_eq!(example, want);
    }

    #[test]
    fn config_refuses_what_wgml_does_not_compute() {
        let base =
            r#"{"model_type":"gpt2","vocab_size":10,"n_positions":8,"n_embd":8,"n_layer":1,"n_head":2"#;
        let ok = Gpt2Config::parse(&format!("{base}}}")).unwrap();
        assert_eq!((ok.inner, ok.activation, ok.epsilon), (32, "GeluTanh", 1e-5));
        for (extra, says) in [
            (
                r#","scale_attn_by_inverse_layer_idx":true"#,
                "scale_attn_by_inverse_layer_idx",
            ),
            (r#","activation_function":"mish""#, "mish"),
            (r#","n_head":3"#, "multiple"),
            (r#","resid_pdrop":1.5"#, "resid_pdrop"),
        ] {
            let e = Gpt2Config::parse(&format!("{base}{extra}}}")).unwrap_err();
            assert!(e.contains(says), "{extra}: {e}");
        }
        let e = Gpt2Config::parse(r#"{"model_type":"llama"}"#).unwrap_err();
        assert!(e.contains("llama"), "{e}");
    }
}
