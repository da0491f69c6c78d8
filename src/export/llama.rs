//! A Llama checkpoint (one `wgml import` made from a `LlamaForCausalLM`,
//! fine-tuned or not) written back as a Hugging Face folder that
//! `LlamaForCausalLM.from_pretrained` loads: `config.json`, `model.safetensors`
//! in Hugging Face's names (the attention's `query`, `key`, `value` and
//! `output` as `q_proj`, `k_proj`, `v_proj` and `o_proj`; no `lm_head.weight`
//! for a head tied to the embedding) and the tokenizer. A checkpoint qualifies
//! when its model is exactly what [`LlamaConfig::architecture`] describes for
//! some settings; `max_position_embeddings` is the context the model was
//! imported with.

use std::collections::HashMap;
use std::path::Path;

use serde_json::json;

use super::{decimal, merged_tensors, same_model, write_folder};
use crate::checkpoint::Checkpoint;
use crate::error::{Error, Result};
use crate::graph::params::NamedValues;
use crate::import::ACTIVATIONS;
use crate::import::llama::LlamaConfig;
use crate::nn::functional::{FunctionalLayer, LayerOrOp};
use crate::nn::{Functional, Layer};

/// The Llama settings and context of functional model `f`, when it is a Llama
/// as [`LlamaConfig::architecture`] writes one; else what differs.
pub fn llama_config_of(f: &Functional) -> std::result::Result<(LlamaConfig, usize), String> {
    let layer = |name: &str| {
        f.layers.iter().find_map(|l: &FunctionalLayer| match &l.what {
            LayerOrOp::Layer(layer) if l.name == name => Some(layer),
            _ => None,
        })
    };
    let missing = |name: &str| format!("has no layer '{name}' (is it a Llama?)");
    let &[context] = f.input.shape.as_slice() else {
        return Err(format!(
            "reads samples of shape {:?}; a Llama reads [positions] of token ids",
            f.input.shape
        ));
    };
    let Some(&Layer::Embedding {
        input_dim: vocab,
        output_dim: width,
        ..
    }) = layer("model.embed_tokens")
    else {
        return Err(missing("model.embed_tokens (an Embedding)"));
    };
    let layers = (0..)
        .take_while(|i| layer(&format!("model.layers.{i}.input_layernorm")).is_some())
        .count();
    let Some(&Layer::MultiHeadAttention {
        num_heads: heads,
        key_dim: head_dim,
        num_key_value_heads,
        rope_theta: Some(rope_theta),
        rope_scaling,
        use_bias: qkv_bias,
        output_bias,
        qk_norm,
        dropout,
        ..
    }) = layer("model.layers.0.self_attn")
    else {
        return Err(missing(
            "model.layers.0.self_attn (a MultiHeadAttention with rotary positions)",
        ));
    };
    let Some(&Layer::Dense {
        units: inner,
        activation,
        use_bias: mlp_bias,
        ..
    }) = layer("model.layers.0.mlp.gate_proj")
    else {
        return Err(missing("model.layers.0.mlp.gate_proj (a Dense layer)"));
    };
    let Some(&Layer::RMSNormalization { epsilon, .. }) = layer("model.norm") else {
        return Err(missing("model.norm (an RMSNormalization)"));
    };
    let json_name = serde_json::to_value(activation).ok();
    let activation = ACTIVATIONS
        .iter()
        .map(|(_, wgml)| *wgml)
        .find(|wgml| json_name.as_ref().and_then(|v| v.as_str()) == Some(*wgml))
        .ok_or_else(|| format!("model.layers.0.mlp.gate_proj uses {activation:?}, which a Llama has not"))?;
    let tied_head = f.layers.iter().any(|l| {
        l.name == "lm_head" && l.tied.get("weight").map(String::as_str) == Some("model.embed_tokens.weight")
    });
    let config = LlamaConfig {
        vocab,
        width,
        layers,
        heads,
        kv_heads: num_key_value_heads.unwrap_or(heads),
        head_dim,
        inner,
        epsilon: decimal(epsilon),
        rope_theta,
        rope_scaling,
        positions: context,
        activation,
        qkv_bias,
        output_bias: output_bias.unwrap_or(qkv_bias),
        qk_norm: qk_norm.is_some(),
        mlp_bias,
        attention_dropout: decimal(dropout),
        tied_head,
        sliding_window: None,
    };
    if layers == 0 {
        return Err("has no block (model.layers.0.input_layernorm)".into());
    }
    if config.output_bias && !config.qkv_bias {
        return Err(
            "has a bias on its attention's output projection alone: neither a Llama (all four or \
             none) nor a Qwen2 (the query, key and value only)"
                .into(),
        );
    }
    let want = config
        .architecture(context, 1e-4)
        .map_err(|e| e.to_string())?
        .functional;
    same_model(&want, f, "Llama")?;
    Ok((config, context))
}

/// Writes checkpoint `c` (read from `path`, named in errors) as a Hugging Face
/// Llama folder `dir` (created if missing; its `config.json`,
/// `model.safetensors` and tokenizer replaced), its LoRA adapters merged.
/// Returns a line on what was written.
pub fn export_llama(c: &Checkpoint, path: &Path, dir: &Path) -> Result<String> {
    let bad = |message: String| Error::Data {
        path: path.display().to_string(),
        message,
    };
    let a = c
        .functional_architecture(path)?
        .ok_or_else(|| bad("holds no functional model, so no Llama".into()))?;
    let (config, context) = llama_config_of(&a.functional).map_err(bad)?;
    let own = merged_tensors(c, &a.functional, path)?;
    let tensors = hf_tensors(&own, &config).map_err(bad)?;
    let tokenizer = write_folder(dir, &tensors, &hf_config(&config), &c.vocabulary(path)?, context)?;
    let count: usize = tensors.iter().map(|(_, _, v)| v.len()).sum();
    Ok(format!(
        "{}: {} blocks of width {}, {} query heads sharing {} key and value heads, {context} positions, \
         {} tokens; {count} parameters{}{}",
        config.family(),
        config.layers,
        config.width,
        config.heads,
        config.kv_heads,
        config.vocab,
        if config.tied_head {
            " (the head is model.embed_tokens, tied)"
        } else {
            ""
        },
        if tokenizer { ", with its tokenizer" } else { "" }
    ))
}

/// `config.json` for `c`: the settings wgml uses, the rotary base and scaling
/// both as transformers 5's `rope_parameters` and as the `rope_theta` and
/// `rope_scaling` earlier versions read.
fn hf_config(c: &LlamaConfig) -> serde_json::Value {
    let activation = ACTIVATIONS
        .iter()
        .find(|(_, wgml)| *wgml == c.activation)
        .map_or("silu", |(hf, _)| *hf);
    json!({
        "architectures": [format!("{}ForCausalLM", c.family())],
        "model_type": c.family().to_lowercase(),
        "vocab_size": c.vocab,
        "hidden_size": c.width,
        "intermediate_size": c.inner,
        "num_hidden_layers": c.layers,
        "num_attention_heads": c.heads,
        "num_key_value_heads": c.kv_heads,
        "head_dim": c.head_dim,
        "hidden_act": activation,
        "max_position_embeddings": c.positions,
        "rms_norm_eps": c.epsilon,
        "rope_theta": c.rope_theta,
        "rope_parameters": rope_parameters(c),
        "rope_scaling": c.rope_scaling.map(|_| {
            let mut old = rope_parameters(c);
            old.as_object_mut().map(|o| o.remove("rope_theta"));
            old
        }),
        "attention_bias": c.output_bias,
        "use_sliding_window": false,
        "mlp_bias": c.mlp_bias,
        "attention_dropout": c.attention_dropout,
        "tie_word_embeddings": c.tied_head,
        "initializer_range": 0.02,
    })
}

/// transformers 5's `rope_parameters`: the base, the type and its factors.
fn rope_parameters(c: &LlamaConfig) -> serde_json::Value {
    use crate::nn::RopeScaling;
    let mut p = json!({ "rope_theta": c.rope_theta, "rope_type": "default" });
    match c.rope_scaling {
        None => {}
        Some(RopeScaling::Linear { factor }) => {
            p["rope_type"] = json!("linear");
            p["factor"] = json!(factor);
        }
        Some(RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings,
        }) => {
            p["rope_type"] = json!("llama3");
            p["factor"] = json!(factor);
            p["low_freq_factor"] = json!(low_freq_factor);
            p["high_freq_factor"] = json!(high_freq_factor);
            p["original_max_position_embeddings"] = json!(original_max_position_embeddings);
        }
        Some(RopeScaling::Dynamic { factor }) => {
            p["rope_type"] = json!("dynamic");
            p["factor"] = json!(factor);
        }
        Some(RopeScaling::Yarn {
            factor,
            original_max_position_embeddings,
            beta_fast,
            beta_slow,
            attention_factor,
            mscale,
            mscale_all_dim,
            truncate,
        }) => {
            p["rope_type"] = json!("yarn");
            p["factor"] = json!(factor);
            p["original_max_position_embeddings"] = json!(original_max_position_embeddings);
            // The defaults stay implicit, as the Hub's files leave them.
            if beta_fast != 32.0 {
                p["beta_fast"] = json!(beta_fast);
            }
            if beta_slow != 1.0 {
                p["beta_slow"] = json!(beta_slow);
            }
            if !truncate {
                p["truncate"] = json!(false);
            }
            for (key, value) in [
                ("attention_factor", attention_factor),
                ("mscale", mscale),
                ("mscale_all_dim", mscale_all_dim),
            ] {
                if let Some(v) = value {
                    p[key] = json!(v);
                }
            }
        }
    }
    p
}

/// The checkpoint's tensors in `LlamaForCausalLM`'s names: the inverse of the
/// importer's renaming.
fn hf_tensors(tensors: &[NamedValues], c: &LlamaConfig) -> std::result::Result<Vec<NamedValues>, String> {
    let by_name: HashMap<&str, (&[usize], &[f32])> = tensors
        .iter()
        .map(|(n, s, v)| (n.as_str(), (s.as_slice(), v.as_slice())))
        .collect();
    let mut out = Vec::new();
    let mut put = |ours: &str, theirs: String| -> std::result::Result<(), String> {
        let (shape, values) = by_name
            .get(ours)
            .ok_or_else(|| format!("has no tensor '{ours}'"))?;
        out.push((theirs, shape.to_vec(), values.to_vec()));
        Ok(())
    };
    put("model.embed_tokens.weight", "model.embed_tokens.weight".into())?;
    for i in 0..c.layers {
        let l = format!("model.layers.{i}");
        for norm in ["input_layernorm", "post_attention_layernorm"] {
            put(&format!("{l}.{norm}.weight"), format!("{l}.{norm}.weight"))?;
        }
        for (hf, ours) in crate::import::llama::PROJECTIONS {
            put(
                &format!("{l}.self_attn.{ours}.weight"),
                format!("{l}.self_attn.{hf}.weight"),
            )?;
            if if hf == "o_proj" { c.output_bias } else { c.qkv_bias } {
                put(
                    &format!("{l}.self_attn.{ours}.bias"),
                    format!("{l}.self_attn.{hf}.bias"),
                )?;
            }
        }
        if c.qk_norm {
            for (hf, ours) in [("q_norm", "query_norm"), ("k_norm", "key_norm")] {
                put(
                    &format!("{l}.self_attn.{ours}.weight"),
                    format!("{l}.self_attn.{hf}.weight"),
                )?;
            }
        }
        for part in ["gate_proj", "up_proj", "down_proj"] {
            put(
                &format!("{l}.mlp.{part}.weight"),
                format!("{l}.mlp.{part}.weight"),
            )?;
            if c.mlp_bias {
                put(&format!("{l}.mlp.{part}.bias"), format!("{l}.mlp.{part}.bias"))?;
            }
        }
    }
    put("model.norm.weight", "model.norm.weight".into())?;
    if !c.tied_head {
        put("lm_head.weight", "lm_head.weight".into())?;
    }
    Ok(out)
}
