//! A BERT, RoBERTa, DistilBERT or ELECTRA classifier ([`crate::import::bert`];
//! a regression or multi-label head too, with its `problem_type`) written back
//! as a Hugging Face `BertForSequenceClassification`,
//! `RobertaForSequenceClassification`, `DistilBertForSequenceClassification` or
//! `ElectraForSequenceClassification` folder: `config.json`, `model.safetensors`
//! in its names (the query, key and value under `attention.self`, the attention's
//! output projection as `attention.output.dense`) and `tokenizer.json`, so
//! `AutoModelForSequenceClassification.from_pretrained(FOLDER)` gives wgml's
//! logits.
//!
//! The folder's `position_embeddings` are the model's window
//! (`max_position_embeddings` is the window; RoBERTa's padding rows before it
//! are zeros, as nothing reads them). BERT's `token_type_embeddings` are the
//! model's own table, so single texts and pairs of texts read as in wgml.
//! Where the import folded the only token type into the position table
//! (RoBERTa's, and BERTs imported before wgml computed token types), the
//! positions are that sum and the token-type rows zeros: single texts read
//! exactly as in wgml. DistilBERT has no token types. XLM-R and CamemBERT keep
//! their `model_type` and class (`XLMRobertaForSequenceClassification`).

use std::path::Path;

use serde_json::json;

use super::{labels, merged_tensors, same_model, write_folder};
use crate::checkpoint::Checkpoint;
use crate::error::{Error, Result};
use crate::graph::params::NamedValues;
use crate::import::ACTIVATIONS;
use crate::import::bert::{BertConfig, Family, Task, encoder_head_of};
use crate::nn::functional::LayerOrOp;
use crate::nn::{Functional, GraphOp, Layer};

/// Token types of the exported folder where the model folded them into the
/// positions (BERT's usual 2, RoBERTa's 1), all rows zero.
fn folded_types(family: Family) -> usize {
    match family {
        Family::Bert | Family::Electra => 2,
        Family::Roberta => 1,
        Family::DistilBert => 0,
    }
}

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
    let head = encoder_head_of(f).ok_or_else(|| missing("classifier"))?;
    let (family, classes) = (head.family, head.classes);
    let prefix = family.prefix();
    let &[context] = f.input.shape.as_slice() else {
        return Err(format!(
            "reads samples of shape {:?}; a BERT reads [tokens] of token ids",
            f.input.shape
        ));
    };
    let words = format!("{prefix}embeddings.word_embeddings");
    let Some(&Layer::Embedding {
        input_dim: vocab,
        output_dim: embedding_width,
        mask_id: Some(pad),
        ..
    }) = layer(&words)
    else {
        return Err(missing(&format!("{words} (an Embedding masking padding)")));
    };
    // ELECTRA's narrower embeddings are widened to the blocks by a projection.
    let width = match layer(&format!("{prefix}embeddings_project")) {
        Some(&Layer::Dense { units, .. }) => units,
        _ => embedding_width,
    };
    let names = family.names();
    let layers = (0..)
        .take_while(|i| layer(&format!("{}{i}.attention", names.blocks)).is_some())
        .count();
    let first = format!("{}0", names.blocks);
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
    }) = layer(&format!("{first}.{}", names.inner))
    else {
        return Err(missing(&format!("{first}.{} (Dense)", names.inner)));
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
    let norm = format!("{prefix}embeddings.LayerNorm");
    let Some(&Layer::LayerNormalization { epsilon, .. }) = layer(&norm) else {
        return Err(missing(&format!("{norm} (LayerNormalization)")));
    };
    let rate = |name: &str| match layer(name) {
        Some(&Layer::Dropout { rate }) => super::decimal(rate),
        _ => 0.0,
    };
    let token_types = format!("{prefix}embeddings.token_types");
    let (types, separator) = f
        .layers
        .iter()
        .find_map(|l| match &l.what {
            LayerOrOp::Op(GraphOp::TokenTypes { separator, types, .. }) if l.name == token_types => {
                Some((*types, Some(*separator)))
            }
            _ => None,
        })
        .unwrap_or((folded_types(family), None));
    let config = BertConfig {
        family,
        vocab,
        positions: context + family.first_position(pad),
        types,
        separator,
        width,
        embedding_width,
        layers,
        heads,
        inner: *inner,
        activation,
        epsilon: super::decimal(epsilon),
        hidden_dropout: rate(&format!("{prefix}embeddings.dropout")),
        attn_dropout: super::decimal(attn_dropout),
        classifier_dropout: rate("dropout"),
        pad,
        init_std: 0.02,
        labels: None,
        // Sigmoids under binary cross-entropy: Hugging Face's multi-label head.
        multi_label: f.supervised_loss() == Some(crate::nn::Loss::BinaryCrossentropy),
        task: head.task,
        qa_dropout: match (head.task, family) {
            (Task::QuestionAnswering, Family::DistilBert) => rate("dropout"),
            _ => 0.0,
        },
    };
    if heads == 0 || width % heads != 0 || layers == 0 {
        return Err(format!(
            "has {layers} blocks of width {width} with {heads} heads; a {} has at least one block \
             and a width its heads divide",
            family.name()
        ));
    }
    let want = config
        .architecture(context, classes, 1e-4)
        .map_err(|e| e.to_string())?
        .functional;
    same_model(&want, f, &format!("{} classifier", family.name()))?;
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
    let tensors = hf_tensors(&own, &config, context).map_err(bad)?;
    let classes = encoder_head_of(&a.functional).map_or(2, |h| h.classes);
    let task = config.task.architecture();
    // The checkpoint's own model_type where it is one of the family's (XLM-R,
    // CamemBERT), else the family's.
    let model_type = c
        .model
        .as_deref()
        .filter(|m| Family::of(m) == Some(config.family))
        .unwrap_or(config.family.model_type());
    let name = match model_type {
        "xlm-roberta" => "XLMRoberta",
        "camembert" => "Camembert",
        _ => match config.family {
            Family::Bert => "Bert",
            Family::Roberta => "Roberta",
            Family::DistilBert => "DistilBert",
            Family::Electra => "Electra",
        },
    };
    let (id2label, label2id) = labels(&a.class_names, classes);
    let activation = ACTIVATIONS
        .iter()
        .find(|(_, w)| *w == config.activation)
        .map_or("gelu", |(hf, _)| *hf);
    let mut settings = json!({
        "architectures": [format!("{name}For{task}")],
        "model_type": model_type,
        "vocab_size": config.vocab,
        "max_position_embeddings": config.positions,
        "pad_token_id": config.pad,
        "initializer_range": config.init_std,
        "id2label": id2label,
        "label2id": label2id,
    });
    if config.multi_label {
        settings["problem_type"] = json!("multi_label_classification");
    } else if classes == 1 {
        // One score: Hugging Face's regression (mean squared error).
        settings["problem_type"] = json!("regression");
    }
    let own_names = match config.family {
        Family::DistilBert => json!({
            "dim": config.width,
            "n_layers": config.layers,
            "n_heads": config.heads,
            "hidden_dim": config.inner,
            "activation": activation,
            "dropout": config.hidden_dropout,
            "attention_dropout": config.attn_dropout,
            "seq_classif_dropout": config.classifier_dropout,
            "sinusoidal_pos_embds": false,
        }),
        Family::Bert | Family::Roberta | Family::Electra => json!({
            "hidden_size": config.width,
            "num_hidden_layers": config.layers,
            "num_attention_heads": config.heads,
            "intermediate_size": config.inner,
            "hidden_act": activation,
            "hidden_dropout_prob": config.hidden_dropout,
            "attention_probs_dropout_prob": config.attn_dropout,
            "classifier_dropout": config.classifier_dropout,
            "type_vocab_size": config.types,
            "layer_norm_eps": config.epsilon,
            "position_embedding_type": "absolute",
        }),
    };
    if let (Some(all), Some(own)) = (settings.as_object_mut(), own_names.as_object()) {
        all.extend(own.clone());
    }
    if config.family == Family::Electra {
        settings["embedding_size"] = json!(config.embedding_width);
    }
    if config.task == Task::QuestionAnswering {
        // A question answerer has no classifier's dropout: DistilBERT's drops
        // out at qa_dropout before qa_outputs, the others' not at all.
        if let Some(all) = settings.as_object_mut() {
            all.remove("seq_classif_dropout");
            all.remove("classifier_dropout");
        }
        if config.family == Family::DistilBert {
            settings["qa_dropout"] = json!(config.qa_dropout);
        }
    }
    let tokenizer = write_folder(dir, &tensors, &settings, &c.vocabulary(path)?, context)?;
    let count: usize = own.iter().map(|(_, _, v)| v.len()).sum();
    let head = match classes {
        _ if config.task == Task::QuestionAnswering => {
            "a question answerer, start and end scores of each token".to_string()
        }
        n if config.task.per_token() => format!("a classifier of each token, {n} classes"),
        n if config.multi_label => format!("a multi-label classifier of {n} classes"),
        1 => "a regression head, one score".to_string(),
        n => format!("a classifier of {n} classes"),
    };
    Ok(format!(
        "{}: {} blocks of width {}, {} heads, {context} positions, {} tokens; {count} parameters \
         ({head}, padding id {}{}); {}",
        config.family.name(),
        config.layers,
        config.width,
        config.heads,
        config.vocab,
        config.pad,
        if config.types > 0 && config.separator.is_none() {
            "; token type 0 folded into the positions, token_type_embeddings written as zeros"
        } else {
            ""
        },
        if tokenizer {
            "with its tokenizer"
        } else {
            "no tokenizer.json"
        }
    ))
}

/// The checkpoint's tensors in the `*ForSequenceClassification` names: the
/// inverse of the importer's renaming, the position table with RoBERTa's
/// padding rows (zeros) before the window's, and a zero token-type table where
/// the model has none of its own (it folded the types into the positions).
fn hf_tensors(
    tensors: &[NamedValues],
    config: &BertConfig,
    context: usize,
) -> std::result::Result<Vec<NamedValues>, String> {
    let prefix = config.family.prefix();
    let names = config.family.names();
    let positions = format!("{prefix}embeddings.position_embeddings.weight");
    // The embedding tables' width (ELECTRA's may be narrower than the blocks).
    let d = config.embedding_width;
    let mut out: Vec<NamedValues> = Vec::new();
    for (name, shape, values) in tensors {
        let head = config.head().iter().any(|h| name.starts_with(&format!("{h}.")));
        if !name.starts_with(prefix) && !head {
            continue;
        }
        let mut hf = name.clone();
        let wgml = [
            "attention.query",
            "attention.key",
            "attention.value",
            "attention.output",
        ];
        for (ours, theirs) in wgml.iter().zip(names.hf) {
            for part in ["weight", "bias"] {
                if let Some(stem) = hf.strip_suffix(&format!(".{ours}.{part}")) {
                    hf = format!("{stem}.{theirs}.{part}");
                }
            }
        }
        if *name == positions {
            let mut table = vec![0.0; (config.positions - context) * d];
            table.extend_from_slice(values);
            out.push((hf, vec![config.positions, d], table));
        } else {
            out.push((hf, shape.clone(), values.clone()));
        }
    }
    if !out.iter().any(|(n, _, _)| *n == positions) {
        return Err(format!("has no tensor '{positions}'"));
    }
    let types = format!("{prefix}embeddings.token_type_embeddings.weight");
    if config.types > 0 && !out.iter().any(|(n, _, _)| *n == types) {
        out.push((types, vec![config.types, d], vec![0.0; config.types * d]));
    }
    Ok(out)
}
