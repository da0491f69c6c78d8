//! Llama-family decoders from Hugging Face's files (`LlamaForCausalLM`: Llama
//! 2 and 3, TinyLlama, SmolLM, Mistral without a sliding window; and
//! `Qwen2ForCausalLM`, the same with biases on the attention's query, key and
//! value projections), described as a functional wgml model:
//!
//! ```text
//! model.embed_tokens (Embedding)
//! num_hidden_layers × { model.layers.i.input_layernorm (RMSNormalization)
//!     → model.layers.i.self_attn (causal MultiHeadAttention: num_attention_heads
//!       query heads sharing num_key_value_heads key and value heads, rotary
//!       positions of rope_theta) → + ,
//!     model.layers.i.post_attention_layernorm → mlp.gate_proj (SiLU) ⊙ mlp.up_proj
//!     → mlp.down_proj → + }
//! model.norm → lm_head (Dense, no bias, softmax) under sparse categorical cross-entropy
//! ```
//!
//! The tensors keep Hugging Face's names and layouts (Linear weights `[out,
//! in]`), but for the attention's projections, which wgml's MultiHeadAttention
//! names `query`, `key`, `value` and `output` (`q_proj`, `k_proj`, `v_proj`,
//! `o_proj`). `lm_head` reads `model.embed_tokens.weight` where
//! `tie_word_embeddings` says so (Llama 3.2, SmolLM). Rotary positions follow
//! Hugging Face's `rotate_half` layout and its frequencies, scaled as the
//! "linear", "dynamic" (the default frequencies up to `max_position_embeddings`,
//! as far as wgml's contexts go), Llama 3.1's "llama3" and "yarn" (its cosines
//! and sines scaled too) rope types scale them; "longrope" is refused rather than
//! computed differently.

use std::collections::HashMap;
use std::path::Path;

use safetensors::SafeTensors;
use serde_json::{Value, json};

use super::{ACTIVATIONS, Folder, Imported, Settings, language_model, layer, op, to_f32};
use crate::checkpoint::FunctionalArchitecture;
use crate::error::{Error, Result};
use crate::graph::params::NamedValues;
use crate::nn::RopeScaling;

/// The context a model gets when `--context` is not given: its own positions,
/// at most this many (a window's plans grow with it; Llama 3's 131,072 would
/// not fit a GPU's memory for training).
pub const DEFAULT_CONTEXT: usize = 2048;

/// The settings of a Llama that wgml uses, from its `config.json`.
#[derive(Clone, Debug, PartialEq)]
pub struct LlamaConfig {
    /// Token ids (`vocab_size`).
    pub vocab: usize,
    /// Width (`hidden_size`).
    pub width: usize,
    /// Blocks (`num_hidden_layers`).
    pub layers: usize,
    /// Query heads (`num_attention_heads`).
    pub heads: usize,
    /// Key and value heads (`num_key_value_heads`, default the query heads).
    pub kv_heads: usize,
    /// Values per head (`head_dim`, default width / heads).
    pub head_dim: usize,
    /// Units of each block's MLP (`intermediate_size`).
    pub inner: usize,
    /// The RMS normalizations' epsilon (`rms_norm_eps`).
    pub epsilon: f64,
    /// The rotary positions' base (`rope_theta`, or `rope_parameters.rope_theta`).
    pub rope_theta: f64,
    /// How the rotary frequencies are scaled (`rope_parameters` or
    /// `rope_scaling` of type "linear" or "llama3"); `None` for "default".
    pub rope_scaling: Option<RopeScaling>,
    /// Positions it was trained on (`max_position_embeddings`).
    pub positions: usize,
    /// The MLP's gate activation as a wgml layer activation (`hidden_act`).
    pub activation: &'static str,
    /// Biases on the attention's query, key and value projections (a Llama's
    /// `attention_bias`; always for Qwen2).
    pub qkv_bias: bool,
    /// A bias on the attention's output projection (a Llama's
    /// `attention_bias`; never for Qwen2).
    pub output_bias: bool,
    /// Qwen3's RMS normalization of each query and key head (`q_norm`,
    /// `k_norm`, with `rms_norm_eps`).
    pub qk_norm: bool,
    /// Biases on the MLP's projections (`mlp_bias`).
    pub mlp_bias: bool,
    /// Dropout on the attention weights (`attention_dropout`).
    pub attention_dropout: f64,
    /// Whether the head is the token embedding (`tie_word_embeddings`).
    pub tied_head: bool,
    /// A Mistral's `sliding_window` (transformers' default 4,096 when the key
    /// is missing; `None` when null): each token attends to that many tokens
    /// at most, which equals wgml's full causal attention for contexts up to it.
    pub sliding_window: Option<usize>,
}

impl LlamaConfig {
    /// Reads the settings from `config.json`'s text, refusing the variants wgml
    /// does not compute as Hugging Face does.
    pub fn parse(text: &str) -> std::result::Result<LlamaConfig, String> {
        let c: Value = serde_json::from_str(text).map_err(|e| format!("is not JSON: {e}"))?;
        let model_type = c.get("model_type").and_then(Value::as_str);
        let flag = |key: &str| c.get(key).and_then(Value::as_bool).unwrap_or(false);
        let sliding_layers = c
            .get("layer_types")
            .and_then(Value::as_array)
            .is_some_and(|types| types.iter().any(|t| t.as_str() == Some("sliding_attention")));
        if sliding_layers || (matches!(model_type, Some("qwen2" | "qwen3")) && flag("use_sliding_window")) {
            return Err(
                "attends within a sliding window on some layers, which wgml's attention does not compute \
                 (each token sees every earlier one)"
                    .into(),
            );
        }
        match model_type {
            Some("llama" | "qwen2" | "qwen3") => {}
            Some("mistral") => {}
            other => {
                return Err(format!(
                    "describes a '{}' model, not a Llama (model_type \"llama\", \"mistral\", \"qwen2\" \
                     or \"qwen3\")",
                    other.unwrap_or("unnamed")
                ));
            }
        }
        let settings = Settings(&c);
        let size = |key: &str| settings.size(key);
        let width = size("hidden_size")?;
        let heads = size("num_attention_heads")?;
        let kv_heads = match c.get("num_key_value_heads") {
            None | Some(Value::Null) => heads,
            Some(_) => size("num_key_value_heads")?,
        };
        if !heads.is_multiple_of(kv_heads) {
            return Err(format!(
                "num_key_value_heads {kv_heads} does not divide num_attention_heads {heads}"
            ));
        }
        let head_dim = match c.get("head_dim") {
            None | Some(Value::Null) if width.is_multiple_of(heads) => width / heads,
            None | Some(Value::Null) => {
                return Err(format!(
                    "hidden_size {width} is not a multiple of num_attention_heads {heads}"
                ));
            }
            Some(_) => size("head_dim")?,
        };
        if head_dim % 2 != 0 {
            return Err(format!(
                "head_dim {head_dim} is odd; rotary positions turn pairs of values"
            ));
        }
        let activation = match c.get("hidden_act").and_then(Value::as_str) {
            None => "Silu",
            Some(name) => ACTIVATIONS
                .iter()
                .find(|(hf, _)| *hf == name)
                .map(|(_, wgml)| *wgml)
                .ok_or_else(|| {
                    format!("uses hidden_act '{name}'; wgml has silu, gelu, gelu_new, relu, tanh and sigmoid")
                })?,
        };
        Ok(LlamaConfig {
            vocab: size("vocab_size")?,
            width,
            layers: size("num_hidden_layers")?,
            heads,
            kv_heads,
            head_dim,
            inner: size("intermediate_size")?,
            epsilon: settings.float("rms_norm_eps", 1e-6)?,
            rope_theta: rope_theta(&c)?,
            rope_scaling: rope_scaling(&c)?,
            positions: size("max_position_embeddings")?,
            activation,
            // Qwen2: biases on the query, key and value, none on the output.
            qkv_bias: model_type == Some("qwen2") || flag("attention_bias"),
            output_bias: model_type != Some("qwen2") && flag("attention_bias"),
            qk_norm: model_type == Some("qwen3"),
            mlp_bias: flag("mlp_bias"),
            attention_dropout: settings.rate("attention_dropout", 0.0)?,
            tied_head: flag("tie_word_embeddings"),
            sliding_window: match c.get("sliding_window") {
                _ if model_type != Some("mistral") => None,
                None => Some(4096),
                Some(Value::Null) => None,
                Some(v) => Some(
                    v.as_u64()
                        .filter(|&w| w > 0)
                        .ok_or("'sliding_window' is not a positive whole number")?
                        as usize,
                ),
            },
        })
    }

    /// Which of the family it is, by what it computes: "Qwen3" (normalized
    /// query and key heads), "Qwen2" (biases on the query, key and value
    /// only) or "Llama".
    pub fn family(&self) -> &'static str {
        if self.qk_norm {
            "Qwen3"
        } else if self.qkv_bias && !self.output_bias {
            "Qwen2"
        } else {
            "Llama"
        }
    }

    /// The wgml functional model of this Llama with `context` positions,
    /// trained with Adam at `lr`.
    pub fn architecture(&self, context: usize, lr: f64) -> Result<FunctionalArchitecture> {
        let norm = json!({ "RMSNormalization": { "epsilon": self.epsilon } });
        let mut attention = json!({
            "num_heads": self.heads,
            "key_dim": self.head_dim,
            "num_key_value_heads": self.kv_heads,
            "rope_theta": self.rope_theta,
            "use_bias": self.qkv_bias,
            "causal": true,
        });
        if self.attention_dropout > 0.0 {
            attention["dropout"] = json!(self.attention_dropout);
        }
        if let Some(scaling) = self.rope_scaling {
            attention["rope_scaling"] = json!(scaling);
        }
        if self.output_bias != self.qkv_bias {
            attention["output_bias"] = json!(self.output_bias);
        }
        if self.qk_norm {
            attention["qk_norm"] = json!(self.epsilon);
        }
        let dense = |units: usize, activation: &str| json!({ "Dense": { "units": units, "activation": activation, "use_bias": self.mlp_bias } });
        let mut layers = vec![layer(
            "model.embed_tokens",
            &["tokens"],
            json!({ "Embedding": { "input_dim": self.vocab, "output_dim": self.width } }),
        )];
        let mut x = "model.embed_tokens".to_string();
        for i in 0..self.layers {
            let l = format!("model.layers.{i}");
            let name = |part: &str| format!("{l}.{part}");
            layers.push(layer(&name("input_layernorm"), &[&x], norm.clone()));
            layers.push(layer(
                &name("self_attn"),
                &[&name("input_layernorm")],
                json!({ "MultiHeadAttention": attention }),
            ));
            layers.push(op(&name("res1"), &[&x, &name("self_attn")], "Add"));
            layers.push(layer(
                &name("post_attention_layernorm"),
                &[&name("res1")],
                norm.clone(),
            ));
            let normed = name("post_attention_layernorm");
            layers.push(layer(
                &name("mlp.gate_proj"),
                &[&normed],
                dense(self.inner, self.activation),
            ));
            layers.push(layer(
                &name("mlp.up_proj"),
                &[&normed],
                dense(self.inner, "Linear"),
            ));
            layers.push(op(
                &name("mlp.gated"),
                &[&name("mlp.gate_proj"), &name("mlp.up_proj")],
                "Multiply",
            ));
            layers.push(layer(
                &name("mlp.down_proj"),
                &[&name("mlp.gated")],
                dense(self.width, "Linear"),
            ));
            layers.push(op(&name("res2"), &[&name("res1"), &name("mlp.down_proj")], "Add"));
            x = name("res2");
        }
        layers.push(layer("model.norm", &[&x], norm));
        let tied = self.tied_head.then_some("model.embed_tokens.weight");
        language_model(
            layers,
            ("model.norm", self.vocab, tied),
            context,
            lr,
            self.family(),
        )
    }
}

/// The rotary scaling of transformers 5's `rope_parameters` or of earlier
/// files' `rope_scaling`: "default" (none), "linear", "dynamic", "llama3" or
/// "yarn"; "longrope" and a partial rotation are refused.
fn rope_scaling(c: &Value) -> std::result::Result<Option<RopeScaling>, String> {
    let parameters = c.get("rope_parameters").filter(|v| !v.is_null());
    let scaling = c.get("rope_scaling").filter(|v| !v.is_null());
    let mut found = None;
    for p in [parameters, scaling].into_iter().flatten() {
        let kind = p
            .get("rope_type")
            .or_else(|| p.get("type"))
            .and_then(Value::as_str)
            .unwrap_or("default");
        let number = |key: &str| {
            p.get(key)
                .and_then(Value::as_f64)
                .ok_or_else(|| format!("its {kind} rotary scaling has no number '{key}'"))
        };
        if p.get("partial_rotary_factor")
            .and_then(Value::as_f64)
            .is_some_and(|f| f != 1.0)
        {
            return Err("turns only part of each head (partial_rotary_factor), which wgml does not".into());
        }
        let this = match kind {
            "default" => None,
            "linear" => Some(RopeScaling::Linear {
                factor: number("factor")?,
            }),
            "llama3" => Some(RopeScaling::Llama3 {
                factor: number("factor")?,
                low_freq_factor: number("low_freq_factor")?,
                high_freq_factor: number("high_freq_factor")?,
                original_max_position_embeddings: number("original_max_position_embeddings")? as usize,
            }),
            // The default frequencies up to max_position_embeddings, past which
            // no wgml context goes.
            "dynamic" => Some(RopeScaling::Dynamic {
                factor: number("factor")?,
            }),
            "yarn" => {
                let optional = |key: &str| p.get(key).and_then(Value::as_f64);
                let positions = c.get("max_position_embeddings").and_then(Value::as_f64);
                let original = optional("original_max_position_embeddings")
                    .or(positions)
                    .ok_or("its yarn rotary scaling names no original_max_position_embeddings".to_string())?;
                Some(RopeScaling::Yarn {
                    // DeepSeek's files leave the factor to the ratio of the contexts.
                    factor: match optional("factor") {
                        Some(f) => f,
                        None => positions.ok_or("its yarn rotary scaling has no factor")? / original,
                    },
                    original_max_position_embeddings: original as usize,
                    beta_fast: optional("beta_fast").filter(|&b| b != 0.0).unwrap_or(32.0),
                    beta_slow: optional("beta_slow").filter(|&b| b != 0.0).unwrap_or(1.0),
                    attention_factor: optional("attention_factor"),
                    mscale: optional("mscale"),
                    mscale_all_dim: optional("mscale_all_dim"),
                    truncate: p.get("truncate").and_then(Value::as_bool).unwrap_or(true),
                })
            }
            other => {
                return Err(format!(
                    "scales its rotary positions ('{other}'), which wgml does not compute yet (it has \
                     the default frequencies, 'linear', 'dynamic', Llama 3's 'llama3' and 'yarn')"
                ));
            }
        };
        if let Some(s) = this {
            s.validate()?;
        }
        found = found.or(this);
    }
    Ok(found)
}

/// The rotary base: transformers 5's `rope_parameters.rope_theta`, or the
/// `rope_theta` of earlier files (default 10,000).
fn rope_theta(c: &Value) -> std::result::Result<f64, String> {
    let parameters = c.get("rope_parameters").filter(|v| !v.is_null());
    let theta = parameters
        .and_then(|p| p.get("rope_theta"))
        .or_else(|| c.get("rope_theta"))
        .map(|v| v.as_f64().ok_or("'rope_theta' is not a number"))
        .transpose()?
        .unwrap_or(10_000.0);
    if !(theta > 1.0 && theta.is_finite()) {
        return Err(format!("rope_theta {theta} is not above 1"));
    }
    Ok(theta)
}

/// The names wgml's MultiHeadAttention gives Hugging Face's projections.
pub(crate) const PROJECTIONS: [(&str, &str); 4] = [
    ("q_proj", "query"),
    ("k_proj", "key"),
    ("v_proj", "value"),
    ("o_proj", "output"),
];

/// The tensors of a Llama, renamed for [`LlamaConfig::architecture`]; rotary
/// frequency buffers (`rotary_emb.inv_freq`, in older files) are skipped, and
/// so is `lm_head.weight` of a tied head. Any other tensor is refused, as is a
/// missing one or a shape that differs from the config's.
fn llama_tensors(
    files: &[SafeTensors<'_>],
    c: &LlamaConfig,
) -> std::result::Result<Vec<NamedValues>, String> {
    let mut by_name: HashMap<String, (Vec<usize>, Vec<f32>)> = HashMap::new();
    for file in files {
        for (name, view) in file.tensors() {
            if name.ends_with("rotary_emb.inv_freq") {
                continue;
            }
            let values = to_f32(view.dtype(), view.data()).map_err(|m| format!("tensor '{name}': {m}"))?;
            by_name.insert(name, (view.shape().to_vec(), values));
        }
    }
    let mut out: Vec<NamedValues> = Vec::new();
    let mut take = |from: &str, to: &str, shape: &[usize]| -> std::result::Result<(), String> {
        let (got, values) = by_name
            .remove(from)
            .ok_or_else(|| format!("has no tensor '{from}' (is it a Llama?)"))?;
        if got != shape {
            return Err(format!(
                "tensor '{from}' has shape {got:?}, but config.json makes it {shape:?}"
            ));
        }
        out.push((to.to_string(), shape.to_vec(), values));
        Ok(())
    };
    let (d, v) = (c.width, c.vocab);
    let (q, kv) = (c.heads * c.head_dim, c.kv_heads * c.head_dim);
    take("model.embed_tokens.weight", "model.embed_tokens.weight", &[v, d])?;
    for i in 0..c.layers {
        let l = format!("model.layers.{i}");
        for norm in ["input_layernorm", "post_attention_layernorm"] {
            let name = format!("{l}.{norm}.weight");
            take(&name, &name, &[d])?;
        }
        for (hf, ours) in PROJECTIONS {
            let (units, inputs) = match hf {
                "q_proj" => (q, d),
                "o_proj" => (d, q),
                _ => (kv, d),
            };
            let (from, to) = (format!("{l}.self_attn.{hf}"), format!("{l}.self_attn.{ours}"));
            take(
                &format!("{from}.weight"),
                &format!("{to}.weight"),
                &[units, inputs],
            )?;
            if if hf == "o_proj" { c.output_bias } else { c.qkv_bias } {
                take(&format!("{from}.bias"), &format!("{to}.bias"), &[units])?;
            }
        }
        if c.qk_norm {
            for (hf, ours) in [("q_norm", "query_norm"), ("k_norm", "key_norm")] {
                take(
                    &format!("{l}.self_attn.{hf}.weight"),
                    &format!("{l}.self_attn.{ours}.weight"),
                    &[c.head_dim],
                )?;
            }
        }
        for (part, units, inputs) in [
            ("gate_proj", c.inner, d),
            ("up_proj", c.inner, d),
            ("down_proj", d, c.inner),
        ] {
            let name = format!("{l}.mlp.{part}");
            take(
                &format!("{name}.weight"),
                &format!("{name}.weight"),
                &[units, inputs],
            )?;
            if c.mlp_bias {
                take(&format!("{name}.bias"), &format!("{name}.bias"), &[units])?;
            }
        }
    }
    take("model.norm.weight", "model.norm.weight", &[d])?;
    if c.tied_head {
        by_name.remove("lm_head.weight");
    } else {
        take("lm_head.weight", "lm_head.weight", &[v, d]).map_err(|m| {
            format!("{m}; config.json sets tie_word_embeddings false, so the head is its own tensor")
        })?;
    }
    if let Some(extra) = by_name.keys().min() {
        return Err(format!(
            "holds tensor '{extra}' (and {} more), which a Llama has not: another architecture?",
            by_name.len() - 1
        ));
    }
    Ok(out)
}

/// The safetensors files of folder `dir`: `model.safetensors`, or the shards
/// `model.safetensors.index.json` names (what `save_pretrained` writes for a
/// large model), each read once.
fn weight_files(files: &Folder<'_>) -> Result<Vec<Vec<u8>>> {
    let index = "model.safetensors.index.json";
    if !files.0.join(index).exists() {
        return Ok(vec![files.bytes("model.safetensors")?]);
    }
    let text = files.text(index)?;
    let map: Value =
        serde_json::from_str(&text).map_err(|e| files.bad(index, format!("is not JSON: {e}")))?;
    let mut shards: Vec<String> = map
        .get("weight_map")
        .and_then(Value::as_object)
        .ok_or_else(|| files.bad(index, "has no weight_map".into()))?
        .values()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect();
    shards.sort();
    shards.dedup();
    shards.iter().map(|s| files.bytes(s)).collect()
}

/// Reads the Hugging Face Llama in folder `dir` (`config.json`, its weights
/// and `tokenizer.json`) as a wgml model of `context` positions (`None`: its
/// own, at most [`DEFAULT_CONTEXT`]), trained with Adam at `lr` when
/// fine-tuned. See the module documentation for the mapping.
pub fn import_llama(dir: &Path, context: Option<usize>, lr: f64) -> Result<Imported> {
    let files = Folder(dir);
    let config_text = files.text("config.json")?;
    let config = LlamaConfig::parse(&config_text).map_err(|m| files.bad("config.json", m))?;
    let context = context.unwrap_or(config.positions.min(DEFAULT_CONTEXT));
    if context < 2 || context > config.positions {
        return Err(Error::invalid(format!(
            "a context of {context} positions: this Llama has {} (give 2 to {0})",
            config.positions
        )));
    }
    if let Some(window) = config.sliding_window.filter(|&w| context > w) {
        return Err(Error::invalid(format!(
            "a context of {context} positions: this Mistral attends within a sliding window of \
             {window} tokens, which wgml's attention does not compute (each token sees every \
             earlier one); give --context {window} or less, where the two are the same"
        )));
    }
    let vocabulary = files.tokenizer(config.vocab, "the Llama")?;
    let bytes = weight_files(&files)?;
    let parsed = bytes
        .iter()
        .map(|b| SafeTensors::deserialize(b))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| files.bad("model.safetensors", format!("is not a safetensors file: {e}")))?;
    let tensors = llama_tensors(&parsed, &config).map_err(|m| files.bad("model.safetensors", m))?;
    let architecture = config.architecture(context, lr)?;
    let count: usize = tensors.iter().map(|(_, _, v)| v.len()).sum();
    let family = config.family();
    let summary = format!(
        "{family}: {} blocks of width {}, {} query heads of {} sharing {} key and value heads, rotary \
         positions (θ {}), MLP {} ({}), {context} positions (of {}), {} tokens; {count} parameters{}",
        config.layers,
        config.width,
        config.heads,
        config.head_dim,
        config.kv_heads,
        config.rope_theta,
        config.inner,
        config.activation,
        config.positions,
        config.vocab,
        if config.tied_head {
            " (the head is model.embed_tokens, tied)"
        } else {
            ""
        }
    );
    Ok(Imported {
        kind: family.to_lowercase(),
        architecture,
        tensors,
        vocabulary,
        pad_token_id: None,
        summary,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> std::result::Result<LlamaConfig, String> {
        LlamaConfig::parse(&format!(
            r#"{{"model_type":"llama","vocab_size":10,"hidden_size":8,"num_hidden_layers":1,
               "num_attention_heads":4,"intermediate_size":12,"max_position_embeddings":16{extra}}}"#
        ))
    }

    /// `examples/models/smollm2_135m.json` is what importing the Hub's
    /// `HuggingFaceTB/SmolLM2-135M` describes at 1,024 positions (its
    /// config.json's settings), so the GPU session times a Llama of that shape
    /// from random weights.
    #[test]
    fn the_smollm2_example_is_the_imported_architecture() {
        let hub = r#"{"model_type":"llama","vocab_size":49152,"hidden_size":576,"intermediate_size":1536,
            "num_hidden_layers":30,"num_attention_heads":9,"num_key_value_heads":3,"head_dim":64,
            "max_position_embeddings":8192,"rms_norm_eps":1e-05,"rope_theta":100000,
            "rope_scaling":null,"tie_word_embeddings":true,"hidden_act":"silu","attention_bias":false,
            "mlp_bias":false}"#;
        let want = LlamaConfig::parse(hub).unwrap().architecture(1024, 1e-4).unwrap();
        let example: FunctionalArchitecture =
            serde_json::from_str(include_str!("../../examples/models/smollm2_135m.json")).unwrap();
        assert_eq!(example, want);
    }

    #[test]
    fn configs_read_both_rope_layouts_and_refuse_what_wgml_does_not_compute() {
        let plain = config("").unwrap();
        assert_eq!(
            (plain.kv_heads, plain.head_dim, plain.rope_theta, plain.activation),
            (4, 2, 10_000.0, "Silu")
        );
        let old = config(r#","rope_theta":500000.0,"rope_scaling":null,"num_key_value_heads":2"#).unwrap();
        assert_eq!((old.rope_theta, old.kv_heads), (500_000.0, 2));
        let new = config(r#","rope_parameters":{"rope_theta":1e6,"rope_type":"default"}"#).unwrap();
        assert_eq!((new.rope_theta, new.rope_scaling), (1e6, None));
        let llama3 = config(
            r#","rope_scaling":{"rope_type":"llama3","factor":32.0,"low_freq_factor":1.0,
               "high_freq_factor":4.0,"original_max_position_embeddings":8192}"#,
        )
        .unwrap();
        assert_eq!(
            llama3.rope_scaling,
            Some(RopeScaling::Llama3 {
                factor: 32.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_position_embeddings: 8192
            })
        );
        let linear =
            config(r#","rope_parameters":{"rope_theta":1e4,"rope_type":"linear","factor":2.0}"#).unwrap();
        assert_eq!(linear.rope_scaling, Some(RopeScaling::Linear { factor: 2.0 }));
        // YaRN: the Hub's defaults filled in; DeepSeek's factor from the contexts.
        let yarn = config(
            r#","rope_scaling":{"rope_type":"yarn","factor":4.0,"original_max_position_embeddings":32768}"#,
        )
        .unwrap();
        assert_eq!(
            yarn.rope_scaling,
            Some(RopeScaling::Yarn {
                factor: 4.0,
                original_max_position_embeddings: 32768,
                beta_fast: 32.0,
                beta_slow: 1.0,
                attention_factor: None,
                mscale: None,
                mscale_all_dim: None,
                truncate: true,
            })
        );
        let ratio =
            config(r#","rope_scaling":{"rope_type":"yarn","original_max_position_embeddings":4}"#).unwrap();
        assert!(matches!(
            ratio.rope_scaling,
            Some(RopeScaling::Yarn { factor: 4.0, .. })
        ));
        let dynamic = config(r#","rope_scaling":{"rope_type":"dynamic","factor":2.0}"#).unwrap();
        assert_eq!(dynamic.rope_scaling, Some(RopeScaling::Dynamic { factor: 2.0 }));
        for (extra, want) in [
            (
                r#","rope_scaling":{"rope_type":"longrope","factor":8.0}"#,
                "scales its rotary positions ('longrope')",
            ),
            (
                r#","rope_scaling":{"rope_type":"yarn","factor":0.5,"original_max_position_embeddings":8}"#,
                "at least 1",
            ),
            (
                r#","rope_scaling":{"rope_type":"llama3","factor":8.0}"#,
                "has no number 'low_freq_factor'",
            ),
            (
                r#","rope_scaling":{"rope_type":"linear","factor":0.5}"#,
                "at least 1",
            ),
            (r#","num_key_value_heads":3"#, "does not divide"),
            (r#","hidden_act":"mish""#, "hidden_act 'mish'"),
            (r#","head_dim":3"#, "odd"),
        ] {
            let e = config(extra).unwrap_err();
            assert!(e.contains(want), "{extra}: {e}");
        }
        let mistral = |extra: &str| {
            LlamaConfig::parse(&format!(
                r#"{{"model_type":"mistral","vocab_size":10,"hidden_size":8,"num_hidden_layers":1,
                   "num_attention_heads":4,"intermediate_size":12,"max_position_embeddings":16{extra}}}"#
            ))
        };
        assert_eq!(mistral("").unwrap().sliding_window, Some(4096));
        assert_eq!(mistral(r#","sliding_window":null"#).unwrap().sliding_window, None);
        assert_eq!(mistral(r#","sliding_window":8"#).unwrap().sliding_window, Some(8));
        assert_eq!(config(r#","sliding_window":8"#).unwrap().sliding_window, None);
        let e = LlamaConfig::parse(r#"{"model_type":"qwen2","use_sliding_window":true}"#).unwrap_err();
        assert!(e.contains("sliding window"), "{e}");
        let e =
            LlamaConfig::parse(r#"{"model_type":"llama","layer_types":["sliding_attention"]}"#).unwrap_err();
        assert!(e.contains("sliding window"), "{e}");
        let qwen = LlamaConfig::parse(
            r#"{"model_type":"qwen2","vocab_size":10,"hidden_size":8,"num_hidden_layers":1,
               "num_attention_heads":4,"intermediate_size":12,"max_position_embeddings":16,
               "use_sliding_window":false,"sliding_window":32768}"#,
        )
        .unwrap();
        assert_eq!((qwen.qkv_bias, qwen.output_bias), (true, false));
        let e = LlamaConfig::parse(r#"{"model_type":"gpt2"}"#).unwrap_err();
        assert!(e.contains("'gpt2'"), "{e}");
    }
}
