//! A BERT classifier ([`crate::import::bert`]) written back as a Hugging Face
//! `BertForSequenceClassification` folder: `config.json`, `model.safetensors`
//! in its names (the query, key and value under `attention.self`, the attention's
//! output projection as `attention.output.dense`) and `tokenizer.json`, so
//! `AutoModelForSequenceClassification.from_pretrained(FOLDER)` gives wgml's
//! logits.
//!
//! The import folded token type 0 into the position table, and wgml keeps only
//! the sum: the folder's `position_embeddings` is that sum, of the model's
//! window (`max_position_embeddings` is the window), and its
//! `token_type_embeddings` are 2 rows of zeros. Single texts (every
//! `token_type_ids` 0, the tokenizer's default) read exactly as in wgml; a pair
//! of texts reads its second text as type 0 too.

use std::path::Path;

use serde_json::json;

use super::{labels, merged_tensors, same_model, write_folder};
use crate::checkpoint::Checkpoint;
use crate::error::{Error, Result};
use crate::graph::params::NamedValues;
use crate::import::ACTIVATIONS;
use crate::import::bert::{BERT_CLASSIFIER_HEAD, BertConfig, bert_classifier_of};
use crate::nn::functional::LayerOrOp;
use crate::nn::{Functional, Layer};

/// Token types of the exported folder (BERT's usual 2), all rows zero.
const TYPES: usize = 2;

/// The BERT settings and window of functional model `f`, when it is a BERT
/// classifier as [`BertConfig::architecture`] writes one; else what differs.
pub fn bert_config_of(f: &Functional) -> std::result::Result<(BertConfig, usize), String> {
    let layer = |name: &str| {
        f.layers.iter().find_map(|l| match &l.what {
            LayerOrOp::Layer(layer) if l.name == name => Some(layer),
            _ => None,
        })
    };
    let missing = |name: &str| format!("has no layer '{name}' (is it a BERT classifier?)");
    let classes = bert_classifier_of(f).ok_or_else(|| missing(BERT_CLASSIFIER_HEAD))?;
    let &[context] = f.input.shape.as_slice() else {
        return Err(format!(
            "reads samples of shape {:?}; a BERT reads [tokens] of token ids",
            f.input.shape
        ));
    };
    let words = "bert.embeddings.word_embeddings";
    let Some(&Layer::Embedding {
        input_dim: vocab,
        output_dim: width,
        mask_id: Some(pad),
        ..
    }) = layer(words)
    else {
        return Err(missing(&format!("{words} (an Embedding masking padding)")));
    };
    let layers = (0..)
        .take_while(|i| layer(&format!("bert.encoder.layer.{i}.attention")).is_some())
        .count();
    let first = "bert.encoder.layer.0";
    let Some(&Layer::MultiHeadAttention {
        num_heads: heads,
        dropout: attn_dropout,
        ..
    }) = layer(&format!("{first}.attention"))
    else {
        return Err(missing(&format!("{first}.attention (MultiHeadAttention)")));
    };
    let Some(Layer::Dense {
        units: inner,
        activation,
        ..
    }) = layer(&format!("{first}.intermediate.dense"))
    else {
        return Err(missing(&format!("{first}.intermediate.dense (Dense)")));
    };
    let wgml_name = serde_json::to_value(activation)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let activation = ACTIVATIONS
        .iter()
        .find(|(_, w)| *w == wgml_name)
        .map(|(_, w)| *w)
        .ok_or_else(|| format!("its MLP's activation {wgml_name} is none BERT has"))?;
    let Some(&Layer::LayerNormalization { epsilon, .. }) = layer("bert.embeddings.LayerNorm") else {
        return Err(missing("bert.embeddings.LayerNorm (LayerNormalization)"));
    };
    let rate = |name: &str| match layer(name) {
        Some(&Layer::Dropout { rate }) => super::decimal(rate),
        _ => 0.0,
    };
    let config = BertConfig {
        vocab,
        positions: context,
        types: TYPES,
        width,
        layers,
        heads,
        inner: *inner,
        activation,
        epsilon: super::decimal(epsilon),
        hidden_dropout: rate("bert.embeddings.dropout"),
        attn_dropout: super::decimal(attn_dropout),
        classifier_dropout: rate("dropout"),
        pad,
        init_std: 0.02,
        labels: None,
    };
    if heads == 0 || width % heads != 0 || layers == 0 {
        return Err(format!(
            "has {layers} blocks of width {width} with {heads} heads; a BERT has at least one block \
             and a width its heads divide"
        ));
    }
    let want = config
        .architecture(context, classes, 1e-4)
        .map_err(|e| e.to_string())?
        .functional;
    same_model(&want, f, "BERT classifier")?;
    Ok((config, context))
}

/// Writes checkpoint `c` (read from `path`, named in errors), a BERT classifier,
/// as a Hugging Face folder `dir` (see the module documentation); returns one
/// line on what was written.
pub fn export_bert(c: &Checkpoint, path: &Path, dir: &Path) -> Result<String> {
    let bad = |message: String| Error::Data {
        path: path.display().to_string(),
        message,
    };
    let a = c
        .functional_architecture(path)?
        .ok_or_else(|| bad("holds no functional model, so no BERT".into()))?;
    let (config, context) = bert_config_of(&a.functional).map_err(bad)?;
    let own = merged_tensors(c, &a.functional, path)?;
    let tensors = hf_tensors(&own, &config).map_err(bad)?;
    let classes = bert_classifier_of(&a.functional).unwrap_or(2);
    let (id2label, label2id) = labels(&a.class_names, classes);
    let activation = ACTIVATIONS
        .iter()
        .find(|(_, w)| *w == config.activation)
        .map_or("gelu", |(hf, _)| *hf);
    let settings = json!({
        "architectures": ["BertForSequenceClassification"],
        "model_type": "bert",
        "vocab_size": config.vocab,
        "hidden_size": config.width,
        "num_hidden_layers": config.layers,
        "num_attention_heads": config.heads,
        "intermediate_size": config.inner,
        "hidden_act": activation,
        "hidden_dropout_prob": config.hidden_dropout,
        "attention_probs_dropout_prob": config.attn_dropout,
        "classifier_dropout": config.classifier_dropout,
        "max_position_embeddings": context,
        "type_vocab_size": TYPES,
        "layer_norm_eps": config.epsilon,
        "pad_token_id": config.pad,
        "position_embedding_type": "absolute",
        "initializer_range": config.init_std,
        "id2label": id2label,
        "label2id": label2id,
    });
    let tokenizer = write_folder(dir, &tensors, &settings, &c.vocabulary(path)?)?;
    let count: usize = own.iter().map(|(_, _, v)| v.len()).sum();
    Ok(format!(
        "BERT: {} blocks of width {}, {} heads, {context} positions, {} tokens; {count} parameters \
         (a classifier of {classes} classes, padding id {}; token type 0 folded into the \
         positions, token_type_embeddings written as zeros); {}",
        config.layers,
        config.width,
        config.heads,
        config.vocab,
        config.pad,
        if tokenizer {
            "with its tokenizer"
        } else {
            "no tokenizer.json"
        }
    ))
}

/// The checkpoint's tensors in `BertForSequenceClassification`'s names: the
/// inverse of the importer's renaming, and the zero token-type table.
fn hf_tensors(tensors: &[NamedValues], config: &BertConfig) -> std::result::Result<Vec<NamedValues>, String> {
    let mut out: Vec<NamedValues> = tensors
        .iter()
        .filter(|(name, _, _)| name.starts_with("bert.") || name.starts_with("classifier."))
        .map(|(name, shape, values)| {
            let mut hf = name.clone();
            for part in ["query", "key", "value"] {
                hf = hf.replace(
                    &format!(".attention.{part}."),
                    &format!(".attention.self.{part}."),
                );
            }
            for part in ["weight", "bias"] {
                hf = hf.replace(
                    &format!(".attention.output.{part}"),
                    &format!(".attention.output.dense.{part}"),
                );
            }
            (hf, shape.clone(), values.clone())
        })
        .collect();
    if !out
        .iter()
        .any(|(n, _, _)| n == "bert.embeddings.position_embeddings.weight")
    {
        return Err("has no tensor 'bert.embeddings.position_embeddings.weight'".into());
    }
    out.push((
        "bert.embeddings.token_type_embeddings.weight".into(),
        vec![TYPES, config.width],
        vec![0.0; TYPES * config.width],
    ));
    Ok(out)
}
