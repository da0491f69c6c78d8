//! BERT from a Hugging Face folder, as a classifier of texts.
//!
//! [`import_bert`] reads a folder `save_pretrained` wrote for `model_type`
//! "bert" (`BertModel`, `BertForPreTraining`, `BertForMaskedLM` or
//! `BertForSequenceClassification`: the Hub's `bert-base-uncased`,
//! `bert-base-cased`, `bert-large-*`, multilingual BERT and their fine-tuned
//! classifiers) and describes `BertForSequenceClassification` as a functional
//! wgml model:
//!
//! ```text
//! bert.embeddings.word_embeddings (Embedding, padding masked)
//!   + bert.embeddings.token_type_embeddings (Embedding of the token types, op
//!     TokenTypes: the [SEP]s before each token)
//!   → bert.embeddings.position_embeddings (AddPositionEmbedding)
//!   → bert.embeddings.LayerNorm → dropout
//! num_hidden_layers × { attention (MultiHeadAttention, not causal) → dropout → +
//!                       → attention.output.LayerNorm → intermediate.dense
//!                       (hidden_act) → output.dense → dropout → +
//!                       → output.LayerNorm }
//! first_token (FirstTokenPooling1D, the [CLS] token) → bert.pooler.dense (tanh)
//!   → dropout (classifier_dropout) → classifier (Dense, softmax)
//! under sparse categorical cross-entropy
//! ```
//!
//! The layer norms come after each residual sum, as BERT places them. A token's
//! type is its segment: BERT's tokenizer types `[CLS] A [SEP] B [SEP]` 0 through
//! the first `[SEP]` and 1 after it, so wgml computes each token's type from the
//! ids, as the number of `[SEP]`s before it (the separator is the tokenizer's,
//! checked against its pair template), and a single text is all type 0.
//! RoBERTa's one token type is folded into the position table instead, which
//! then trains as their sum (the same gradient reaches both in PyTorch). BERT's
//! Linear weights are `[out, in]`, as wgml's Dense weights are, so they are taken
//! as they are. The tokenizer frames each text as BERT's does (`[CLS] … [SEP]`,
//! cut to the window with the frame kept, padded with `[PAD]`), so training,
//! `eval` and `predict` read texts as `BertTokenizer(text, truncation=True)`,
//! and pairs as `BertTokenizer(a, b, truncation=True)`.
//!
//! RoBERTa ([`Family::Roberta`]: `roberta-base`, `xlm-roberta-base`, CamemBERT)
//! has the same blocks under `roberta.`; its positions start at row
//! `pad_token_id + 1`, and its head reads the `<s>` token through dropout,
//! `classifier.dense` (tanh), dropout and `classifier.out_proj`, with no pooler.
//!
//! DistilBERT ([`Family::DistilBert`]) has the same blocks under its own names
//! (`distilbert.transformer.layer.N`: `attention.q_lin`, `sa_layer_norm`,
//! `ffn.lin1`, `ffn.lin2`, `output_layer_norm`), no token types and no dropout
//! after attention; its head is `pre_classifier` (ReLU), dropout and
//! `classifier`.
//!
//! ELECTRA's discriminator ([`Family::Electra`]) has BERT's blocks under
//! `electra.`; embeddings narrower than the blocks (`embedding_size`) are
//! widened by `embeddings_project`, and its head reads `[CLS]` through dropout,
//! `classifier.dense` (GELU), dropout and `classifier.out_proj`, with no pooler.
//!
//! A head of one output (`num_labels` 1) is a regression: one score under mean
//! squared error, as Hugging Face reads it.
//!
//! A token classifier (`*ForTokenClassification`, or [`Task::TokenClassification`])
//! puts dropout and `classifier` on every token. A question answerer
//! (`*ForQuestionAnswering`, [`Task::QuestionAnswering`]) puts `qa_outputs` (two
//! scores, start and end; DistilBERT's after dropout at `qa_dropout`) on every
//! token, then `start_end_logits` (`Permute([2, 1])`) turns them into two rows
//! whose classes are the window's positions, the padding's masked; the loss is
//! the mean of the two rows' cross-entropies, as Hugging Face's
//! `(start_loss + end_loss) / 2`.
//!
//! A file without a classifier (a pretrained BERT) gets a new head of the
//! classes asked for (Hugging Face's `num_labels`, 2 by default), drawn as
//! Hugging Face draws it (normal with `initializer_range`, bias 0); its
//! pretraining heads (`cls.*`, RoBERTa's `lm_head.*` and unused pooler,
//! DistilBERT's `vocab_*`, ELECTRA's `discriminator_predictions.*`) are left
//! out.

use std::collections::HashMap;
use std::path::Path;

use rand::SeedableRng;
use safetensors::SafeTensors;
use serde_json::{Value, json};

use super::{ACTIVATIONS, Imported, Settings, layer, op, to_f32};
use crate::checkpoint::FunctionalArchitecture;
use crate::error::{Error, Result};
use crate::graph::params::NamedValues;

/// The new head of a BERT classifier: Hugging Face's `classifier`.
pub const BERT_CLASSIFIER_HEAD: &str = "classifier";

/// The most classes a new head may have.
const MAX_CLASSES: usize = 100_000;

/// The `architectures` a folder may name: the bare encoder, its pretraining
/// models and its sequence classifier (others have heads of another shape).
const READ_ARCHITECTURES: [&str; 6] = [
    "Model",
    "ForPreTraining",
    "ForMaskedLM",
    "ForSequenceClassification",
    "ForTokenClassification",
    "ForQuestionAnswering",
];

/// The head of a token classifier (`*ForTokenClassification`, every family's):
/// dropout, then `classifier` on every token.
const TOKEN_HEAD: [&str; 1] = [BERT_CLASSIFIER_HEAD];

/// The head of a question answerer (`*ForQuestionAnswering`, every family's):
/// `qa_outputs`, a start and an end score for every token.
const ANSWER_HEAD: [&str; 1] = ["qa_outputs"];

/// The output of a question answerer: `qa_outputs`' `[T, 2]` turned `[2, T]`,
/// each row (the start's, the end's) a softmax over the window's positions.
pub const ANSWER_SCORES: &str = "start_end_logits";

/// What an encoder's head does: Hugging Face's tasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Task {
    /// `*ForSequenceClassification`: the classes of each text (or pair of
    /// texts), or one score, from its first token.
    #[default]
    TextClassification,
    /// `*ForTokenClassification`: the classes of each token (named entities,
    /// parts of speech); the loss is the mean over the tokens with a label.
    TokenClassification,
    /// `*ForQuestionAnswering` (extractive, SQuAD's): where a question's answer
    /// starts and ends in the context that follows it, each a softmax over the
    /// window's positions; the loss is the mean of the two cross-entropies.
    QuestionAnswering,
}

impl Task {
    /// The task of a model whose `architectures` entry is `name`, if a head's.
    fn of_architecture(name: &str) -> Option<Task> {
        [
            ("ForSequenceClassification", Task::TextClassification),
            ("ForTokenClassification", Task::TokenClassification),
            ("ForQuestionAnswering", Task::QuestionAnswering),
        ]
        .into_iter()
        .find(|(suffix, _)| name.ends_with(suffix))
        .map(|(_, task)| task)
    }

    /// Hugging Face's name of the head, after `{Family}For`.
    pub fn architecture(self) -> &'static str {
        match self {
            Task::TextClassification => "SequenceClassification",
            Task::TokenClassification => "TokenClassification",
            Task::QuestionAnswering => "QuestionAnswering",
        }
    }

    /// The `transformers` class that loads such a model.
    pub fn auto_class(self) -> &'static str {
        match self {
            Task::TextClassification => "AutoModelForSequenceClassification",
            Task::TokenClassification => "AutoModelForTokenClassification",
            Task::QuestionAnswering => "AutoModelForQuestionAnswering",
        }
    }

    /// PEFT's `task_type` of the task.
    pub fn peft_task_type(self) -> &'static str {
        match self {
            Task::TextClassification => "SEQ_CLS",
            Task::TokenClassification => "TOKEN_CLS",
            Task::QuestionAnswering => "QUESTION_ANS",
        }
    }

    /// Whether the head reads every token (no pooling, no pooler).
    pub fn per_token(self) -> bool {
        self != Task::TextClassification
    }
}

/// The encoders of BERT's design that wgml reads: the same blocks, named alike,
/// differing in their positions and their classification head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// BERT (`model_type` "bert"): positions from 0, the `[CLS]` token through a
    /// tanh pooler, then dropout and `classifier`.
    Bert,
    /// RoBERTa (`model_type` "roberta", "xlm-roberta", "camembert"): positions
    /// from `pad_token_id + 1` (the rows before serve padding), no pooler; the
    /// `<s>` token through `classifier.dense` (tanh) and `classifier.out_proj`,
    /// each after dropout.
    Roberta,
    /// DistilBERT (`model_type` "distilbert"): BERT's blocks under other names
    /// (`transformer.layer.N.attention.q_lin`, `sa_layer_norm`, `ffn.lin1`...), no
    /// dropout after attention, no token types; the `[CLS]` token through
    /// `pre_classifier` (ReLU), dropout and `classifier`.
    DistilBert,
    /// ELECTRA's discriminator (`model_type` "electra"): BERT's blocks under
    /// `electra.`, its embeddings narrower than the blocks where
    /// `embedding_size` says so (then `embeddings_project` widens them), no
    /// pooler; the `[CLS]` token through dropout, `classifier.dense` (GELU),
    /// dropout and `classifier.out_proj`.
    Electra,
}

/// Where a family keeps each part of a block: wgml's layer names (which are
/// also Hugging Face's, less what [`Names::hf`] renames) under `blocks`N.
pub struct Names {
    /// The blocks' prefix, the block's index after it.
    pub blocks: &'static str,
    /// The dropout after attention's output projection, if the family has one.
    pub attention_dropout: Option<&'static str>,
    /// The layer norm after attention's residual sum.
    pub norm1: &'static str,
    /// The MLP's first and second Dense layers.
    pub inner: &'static str,
    /// The MLP's second Dense layer.
    pub outer: &'static str,
    /// The dropout after the MLP.
    pub outer_dropout: &'static str,
    /// The MLP's residual sum.
    pub outer_residual: &'static str,
    /// The layer norm after it.
    pub norm2: &'static str,
    /// Hugging Face's names of the query, key, value and output projections
    /// under a block (wgml's are `attention.query`, `.key`, `.value`, `.output`).
    pub hf: [&'static str; 4],
}

impl Family {
    /// Every family.
    pub const ALL: [Family; 4] = [Family::Bert, Family::Roberta, Family::DistilBert, Family::Electra];

    /// The family of a `config.json`'s `model_type`, if wgml reads it here.
    pub fn of(model_type: &str) -> Option<Family> {
        match model_type {
            "bert" => Some(Family::Bert),
            "roberta" | "xlm-roberta" | "camembert" => Some(Family::Roberta),
            "distilbert" => Some(Family::DistilBert),
            "electra" => Some(Family::Electra),
            _ => None,
        }
    }

    /// Where its blocks keep their parts.
    pub fn names(self) -> Names {
        match self {
            Family::Bert | Family::Roberta | Family::Electra => Names {
                blocks: match self {
                    Family::Bert => "bert.encoder.layer.",
                    Family::Roberta => "roberta.encoder.layer.",
                    _ => "electra.encoder.layer.",
                },
                attention_dropout: Some("attention.output.dropout"),
                norm1: "attention.output.LayerNorm",
                inner: "intermediate.dense",
                outer: "output.dense",
                outer_dropout: "output.dropout",
                outer_residual: "output.residual",
                norm2: "output.LayerNorm",
                hf: [
                    "attention.self.query",
                    "attention.self.key",
                    "attention.self.value",
                    "attention.output.dense",
                ],
            },
            Family::DistilBert => Names {
                blocks: "distilbert.transformer.layer.",
                attention_dropout: None,
                norm1: "sa_layer_norm",
                inner: "ffn.lin1",
                outer: "ffn.lin2",
                outer_dropout: "ffn.dropout",
                outer_residual: "ffn.residual",
                norm2: "output_layer_norm",
                hf: [
                    "attention.q_lin",
                    "attention.k_lin",
                    "attention.v_lin",
                    "attention.out_lin",
                ],
            },
        }
    }

    /// The prefix of the encoder's tensors in wgml's checkpoints (and in the
    /// `*For*` models' files).
    pub fn prefix(self) -> &'static str {
        match self {
            Family::Bert => "bert.",
            Family::Roberta => "roberta.",
            Family::DistilBert => "distilbert.",
            Family::Electra => "electra.",
        }
    }

    /// Its `model_type` (and wgml's checkpoint kind).
    pub fn model_type(self) -> &'static str {
        match self {
            Family::Bert => "bert",
            Family::Roberta => "roberta",
            Family::DistilBert => "distilbert",
            Family::Electra => "electra",
        }
    }

    /// Its name in messages.
    pub fn name(self) -> &'static str {
        match self {
            Family::Bert => "BERT",
            Family::Roberta => "RoBERTa",
            Family::DistilBert => "DistilBERT",
            Family::Electra => "ELECTRA",
        }
    }

    /// The layers of its classification head, trained in full under LoRA (PEFT's
    /// `modules_to_save` "classifier"); the last is the output.
    pub fn head(self) -> &'static [&'static str] {
        match self {
            Family::Bert => &[BERT_CLASSIFIER_HEAD],
            Family::Roberta | Family::Electra => &["classifier.dense", "classifier.out_proj"],
            Family::DistilBert => &["pre_classifier", BERT_CLASSIFIER_HEAD],
        }
    }

    /// The first row of the position table the first token reads (padding id
    /// `pad`).
    pub fn first_position(self, pad: u32) -> usize {
        match self {
            Family::Bert | Family::DistilBert | Family::Electra => 0,
            Family::Roberta => pad as usize + 1,
        }
    }

    /// The prefix of the pretraining heads' tensors, left out.
    fn pretraining(self) -> &'static str {
        match self {
            Family::Bert => "cls.",
            Family::Roberta => "lm_head.",
            Family::DistilBert => "vocab_",
            // ElectraForPreTraining's discriminator head.
            Family::Electra => "discriminator_predictions.",
        }
    }
}

/// The settings of a BERT that wgml uses, from its `config.json`.
#[derive(Clone, Debug, PartialEq)]
pub struct BertConfig {
    /// Which of BERT's kind.
    pub family: Family,
    /// Token ids (`vocab_size`).
    pub vocab: usize,
    /// Positions of the position embedding (`max_position_embeddings`).
    pub positions: usize,
    /// Token types (`type_vocab_size`; 0 for DistilBERT, which has none). With
    /// two or more (BERT's), each token's type is computed from the
    /// [`BertConfig::separator`]s before it (an op `TokenTypes`) and looks up
    /// `token_type_embeddings`; a single type (RoBERTa's) is folded into the
    /// position table.
    pub types: usize,
    /// The id ending the first text of a pair (BERT's `[SEP]`), from which the
    /// token types are computed: the tokenizer's (see [`import_bert`]). `None`:
    /// every text is of type 0, and that type's row is folded into the position
    /// table (as for a single type; BERTs imported before wgml computed token
    /// types).
    pub separator: Option<u32>,
    /// Width (`hidden_size`).
    pub width: usize,
    /// Width of the embeddings (ELECTRA's `embedding_size`; the blocks' width
    /// otherwise): a narrower one is widened by `embeddings_project`.
    pub embedding_width: usize,
    /// Blocks (`num_hidden_layers`).
    pub layers: usize,
    /// Attention heads (`num_attention_heads`).
    pub heads: usize,
    /// Units of each block's MLP (`intermediate_size`).
    pub inner: usize,
    /// The MLP's activation as a wgml layer activation (`hidden_act`).
    pub activation: &'static str,
    /// Layer normalizations' epsilon (`layer_norm_eps`).
    pub epsilon: f64,
    /// Dropout after the embeddings and on each residual branch (`hidden_dropout_prob`).
    pub hidden_dropout: f64,
    /// Dropout on the attention weights (`attention_probs_dropout_prob`).
    pub attn_dropout: f64,
    /// Dropout before the classifier (`classifier_dropout`, else `hidden_dropout_prob`).
    pub classifier_dropout: f64,
    /// The padding id (`pad_token_id`, default 0, BERT's `[PAD]`).
    pub pad: u32,
    /// The standard deviation new weights are drawn with (`initializer_range`).
    pub init_std: f64,
    /// The classifier's class names (`id2label`), when the config names them.
    pub labels: Option<Vec<String>>,
    /// Whether the head is multi-label (`problem_type`
    /// "multi_label_classification"): a sigmoid per class under binary
    /// cross-entropy, each text in any number of classes.
    pub multi_label: bool,
    /// The head's task: a classifier of texts (the family's head on the first
    /// token); of tokens (dropout and `classifier`, a softmax, on every token);
    /// or a question answerer (`qa_outputs` on every token, DistilBERT's after
    /// dropout at `qa_dropout`).
    pub task: Task,
    /// DistilBERT's dropout before `qa_outputs` (`qa_dropout`); 0 for the
    /// others, whose question answerers have none.
    pub qa_dropout: f64,
}

impl BertConfig {
    /// Reads the settings from `config.json`'s text, refusing the variants wgml
    /// does not compute as Hugging Face does.
    pub fn parse(text: &str) -> std::result::Result<BertConfig, String> {
        let c: Value = serde_json::from_str(text).map_err(|e| format!("is not JSON: {e}"))?;
        let model_type = c
            .get("model_type")
            .and_then(Value::as_str)
            .ok_or("has no model_type")?;
        let family = Family::of(model_type).ok_or_else(|| {
            format!(
                "describes a '{model_type}' model; wgml reads BERT (model_type \"bert\"), RoBERTa \
                 (\"roberta\", \"xlm-roberta\", \"camembert\"), DistilBERT (\"distilbert\") and \
                 ELECTRA (\"electra\") here"
            )
        })?;
        let settings = Settings(&c);
        let size = |key: &str| settings.size(key);
        let float = |key: &str, default: f64| settings.float(key, default);
        let rate = |key: &str, default: f64| settings.rate(key, default);
        let architectures = c
            .get("architectures")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str);
        if let Some(other) = architectures
            .clone()
            .find(|a| a.ends_with("LMHeadModel") || !READ_ARCHITECTURES.iter().any(|r| a.ends_with(r)))
        {
            return Err(format!(
                "describes a {other}, whose head is not a classifier of whole texts or of tokens nor \
                 a question answerer; wgml reads the encoder with one of those heads (architectures \
                 *Model, *ForPreTraining, *ForMaskedLM, *ForSequenceClassification, \
                 *ForTokenClassification, *ForQuestionAnswering): to fine-tune this encoder anyway, remove the architectures entry from config.json \
                 and import it with --num-labels N, which draws a new head"
            ));
        }
        let task = architectures
            .clone()
            .find_map(Task::of_architecture)
            .unwrap_or_default();
        let per_token = task.per_token();
        let num_labels = c
            .get("id2label")
            .and_then(Value::as_object)
            .map(|m| m.len())
            .or_else(|| c.get("num_labels").and_then(Value::as_u64).map(|n| n as usize));
        match c.get("problem_type").and_then(Value::as_str) {
            // A token classifier (and a question answerer) trains with
            // cross-entropy whatever problem_type says, as Hugging Face's does.
            _ if per_token => {}
            None | Some("single_label_classification" | "multi_label_classification") => {}
            Some("regression") if num_labels.is_none_or(|n| n == 1) => {}
            Some(p) => {
                return Err(format!(
                    "sets problem_type '{p}'{}; wgml reads classifiers of one class per text (softmax \
                     and cross-entropy), multi-label classifiers (sigmoids and binary cross-entropy) \
                     and regression heads of one score (num_labels 1, mean squared error), not \
                     regressions of several values",
                    num_labels.map_or_else(String::new, |n| format!(" with {n} labels"))
                ));
            }
        }
        for key in ["is_decoder", "add_cross_attention"] {
            if c.get(key).and_then(Value::as_bool) == Some(true) {
                return Err(format!(
                    "sets {key}: a BERT decoder (causal, with cross-attention) is not what wgml imports; \
                     it imports BERT encoders"
                ));
            }
        }
        if let Some(t) = c.get("position_embedding_type").and_then(Value::as_str)
            && t != "absolute"
        {
            return Err(format!(
                "uses position_embedding_type '{t}'; wgml computes BERT's absolute positions only"
            ));
        }
        // DistilBERT names its settings apart.
        let distil = family == Family::DistilBert;
        let key = |bert: &'static str, distilbert: &'static str| if distil { distilbert } else { bert };
        if distil && c.get("sinusoidal_pos_embds").and_then(Value::as_bool) == Some(true) {
            return Err(
                "sets sinusoidal_pos_embds: fixed sinusoidal positions are not what wgml's learned \
                 position table trains as"
                    .into(),
            );
        }
        let width = size(key("hidden_size", "dim"))?;
        let heads = size(key("num_attention_heads", "n_heads"))?;
        if width % heads != 0 {
            return Err(format!(
                "its width {width} is not a multiple of its {heads} attention heads"
            ));
        }
        let act_key = key("hidden_act", "activation");
        let activation = match c.get(act_key).and_then(Value::as_str) {
            None => "Gelu",
            Some(name) => ACTIVATIONS
                .iter()
                .find(|(hf, _)| *hf == name)
                .map(|(_, wgml)| *wgml)
                .ok_or_else(|| {
                    format!("uses {act_key} '{name}'; wgml has gelu, gelu_new, relu, tanh, sigmoid and silu")
                })?,
        };
        let hidden_dropout = rate(key("hidden_dropout_prob", "dropout"), 0.1)?;
        let vocab = size("vocab_size")?;
        let pad = match c.get("pad_token_id") {
            None | Some(Value::Null) => 0,
            Some(v) => v
                .as_u64()
                .filter(|&id| (id as usize) < vocab)
                .ok_or_else(|| format!("its pad_token_id {v} is not an id below vocab_size {vocab}"))?
                as u32,
        };
        let labels = c.get("id2label").and_then(Value::as_object).map(|m| {
            (0..m.len())
                .map(|i| {
                    m.get(&i.to_string())
                        .and_then(Value::as_str)
                        .map_or_else(|| format!("LABEL_{i}"), str::to_string)
                })
                .collect()
        });
        let positions = size("max_position_embeddings")?;
        if family.first_position(pad) >= positions {
            return Err(format!(
                "has {positions} positions, none left after the {} RoBERTa keeps for padding",
                family.first_position(pad)
            ));
        }
        Ok(BertConfig {
            family,
            vocab,
            positions,
            types: match c.get("type_vocab_size") {
                _ if distil => 0,
                None | Some(Value::Null) => 2,
                Some(_) => size("type_vocab_size")?,
            },
            separator: None,
            width,
            embedding_width: match c.get("embedding_size") {
                Some(v) if family == Family::Electra && !v.is_null() => size("embedding_size")?,
                _ => width,
            },
            layers: size(key("num_hidden_layers", "n_layers"))?,
            heads,
            inner: size(key("intermediate_size", "hidden_dim"))?,
            activation,
            // DistilBERT's layer norms take 1e-12 whatever the config says.
            epsilon: match float("layer_norm_eps", 1e-12)? {
                _ if distil => 1e-12,
                e if e > 0.0 => e,
                e => return Err(format!("layer_norm_eps {e} is not above 0")),
            },
            hidden_dropout,
            attn_dropout: rate(key("attention_probs_dropout_prob", "attention_dropout"), 0.1)?,
            classifier_dropout: if distil {
                rate("seq_classif_dropout", 0.2)?
            } else {
                rate("classifier_dropout", hidden_dropout)?
            },
            pad,
            init_std: float("initializer_range", 0.02)?,
            labels,
            multi_label: !per_token
                && c.get("problem_type").and_then(Value::as_str) == Some("multi_label_classification"),
            task,
            qa_dropout: if distil { rate("qa_dropout", 0.1)? } else { 0.0 },
        })
    }

    /// The layers of its head (the family's, a token classifier's
    /// `classifier` or a question answerer's `qa_outputs`), trained in full
    /// under LoRA; the last is the one with the classes.
    pub fn head(&self) -> &'static [&'static str] {
        head_of(self.family, self.task)
    }

    /// The wgml functional model of this BERT as a classifier of `classes`
    /// classes reading `context` tokens (at most its positions), trained with
    /// Adam at `lr`.
    pub fn architecture(&self, context: usize, classes: usize, lr: f64) -> Result<FunctionalArchitecture> {
        let (d, heads, de) = (self.width, self.heads, self.embedding_width);
        let prefix = self.family.prefix();
        let e = format!("{prefix}embeddings");
        let words = format!("{e}.word_embeddings");
        let mut layers = vec![layer(
            &words,
            &["tokens"],
            json!({ "Embedding": { "input_dim": self.vocab, "output_dim": de, "mask_id": self.pad } }),
        )];
        let embedded = if let (2.., Some(separator)) = (self.types, self.separator) {
            let (types, table, sum) = (
                format!("{e}.token_types"),
                format!("{e}.token_type_embeddings"),
                format!("{e}.token_type_sum"),
            );
            layers.push(json!({
                "name": types,
                "inputs": ["tokens"],
                "op": { "TokenTypes": { "separator": separator, "types": self.types, "pad": self.pad } },
            }));
            layers.push(layer(
                &table,
                &[&types],
                json!({ "Embedding": { "input_dim": self.types, "output_dim": de } }),
            ));
            layers.push(op(&sum, &[&words, &table], "Add"));
            sum
        } else {
            words
        };
        layers.push(layer(
            &format!("{e}.position_embeddings"),
            &[&embedded],
            json!({ "AddPositionEmbedding": {} }),
        ));
        let norm = json!({ "LayerNormalization": { "epsilon": self.epsilon } });
        layers.push(layer(
            &format!("{e}.LayerNorm"),
            &[&format!("{e}.position_embeddings")],
            norm.clone(),
        ));
        let mut x = dropout(
            &mut layers,
            format!("{e}.dropout"),
            format!("{e}.LayerNorm"),
            self.hidden_dropout,
        );
        if de != d {
            // ELECTRA's narrower embeddings, widened to the blocks.
            let project = format!("{prefix}embeddings_project");
            layers.push(layer(&project, &[&x], json!({ "Dense": { "units": d } })));
            x = project;
        }
        let mut attention = json!({ "num_heads": heads, "key_dim": d / heads });
        if self.attn_dropout > 0.0 {
            attention["dropout"] = json!(self.attn_dropout);
        }
        let names = self.family.names();
        for i in 0..self.layers {
            let p = format!("{}{i}", names.blocks);
            layers.push(layer(
                &format!("{p}.attention"),
                &[&x],
                json!({ "MultiHeadAttention": attention }),
            ));
            let branch = match names.attention_dropout {
                Some(name) => dropout(
                    &mut layers,
                    format!("{p}.{name}"),
                    format!("{p}.attention"),
                    self.hidden_dropout,
                ),
                None => format!("{p}.attention"),
            };
            layers.push(op(&format!("{p}.attention.residual"), &[&x, &branch], "Add"));
            let attended = format!("{p}.{}", names.norm1);
            layers.push(layer(
                &attended,
                &[&format!("{p}.attention.residual")],
                norm.clone(),
            ));
            let (inner, outer) = (format!("{p}.{}", names.inner), format!("{p}.{}", names.outer));
            layers.push(layer(
                &inner,
                &[&attended],
                json!({ "Dense": { "units": self.inner, "activation": self.activation } }),
            ));
            layers.push(layer(&outer, &[&inner], json!({ "Dense": { "units": d } })));
            let branch = dropout(
                &mut layers,
                format!("{p}.{}", names.outer_dropout),
                outer,
                self.hidden_dropout,
            );
            let residual = format!("{p}.{}", names.outer_residual);
            layers.push(op(&residual, &[&attended, &branch], "Add"));
            x = format!("{p}.{}", names.norm2);
            layers.push(layer(&x, &[&residual], norm.clone()));
        }
        let output = match self.task {
            Task::TokenClassification => {
                // Every token's classes: DistilBERT's head drops out at its
                // `dropout` (the hidden rate), the others' at classifier_dropout.
                let rate = match self.family {
                    Family::DistilBert => self.hidden_dropout,
                    _ => self.classifier_dropout,
                };
                let x = dropout(&mut layers, "dropout".into(), x, rate);
                layers.push(layer(BERT_CLASSIFIER_HEAD, &[&x], output_layer(classes, false)));
                BERT_CLASSIFIER_HEAD
            }
            Task::QuestionAnswering => {
                // A start and an end score per token, each row then a softmax
                // over the positions (padding's included, as Hugging Face's).
                let x = dropout(&mut layers, "dropout".into(), x, self.qa_dropout);
                layers.push(layer(ANSWER_HEAD[0], &[&x], json!({ "Dense": { "units": 2 } })));
                layers.push(layer(
                    ANSWER_SCORES,
                    &[ANSWER_HEAD[0]],
                    json!({ "Permute": { "dims": [2, 1] } }),
                ));
                ANSWER_SCORES
            }
            Task::TextClassification => self.sequence_head(&mut layers, &x, classes),
        };
        let description = json!({
            "functional": {
                "input": { "name": "tokens", "shape": [context] },
                "layers": layers,
                "objective": { "Supervised": { "output": output, "loss": loss_of(classes, self.multi_label) } }
            },
            "optimizer": { "Adam": { "lr": lr } }
        });
        serde_json::from_value(description).map_err(|e| {
            Error::invalid(format!(
                "the {} description wgml wrote does not parse: {e}",
                self.family.name()
            ))
        })
    }

    /// The layers of a classifier of whole texts (reading the first token of
    /// `x`) into `layers`; its output layer's name.
    fn sequence_head(&self, layers: &mut Vec<Value>, x: &str, classes: usize) -> &'static str {
        let (d, prefix) = (self.width, self.family.prefix());
        layers.push(layer("first_token", &[x], json!({ "FirstTokenPooling1D": null })));
        match self.family {
            Family::Bert => {
                let pooler = format!("{prefix}pooler.dense");
                layers.push(layer(
                    &pooler,
                    &["first_token"],
                    json!({ "Dense": { "units": d, "activation": "Tanh" } }),
                ));
                let pooled = dropout(layers, "dropout".into(), pooler, self.classifier_dropout);
                layers.push(layer(
                    BERT_CLASSIFIER_HEAD,
                    &[&pooled],
                    output_layer(classes, self.multi_label),
                ));
                BERT_CLASSIFIER_HEAD
            }
            Family::Roberta | Family::Electra => {
                let [dense, out] = ["classifier.dense", "classifier.out_proj"];
                // ELECTRA's head uses GELU where RoBERTa's uses tanh.
                let activation = if self.family == Family::Electra {
                    "Gelu"
                } else {
                    "Tanh"
                };
                let x = dropout(
                    layers,
                    "dropout".into(),
                    "first_token".into(),
                    self.classifier_dropout,
                );
                layers.push(layer(
                    dense,
                    &[&x],
                    json!({ "Dense": { "units": d, "activation": activation } }),
                ));
                let x = dropout(
                    layers,
                    "classifier.dropout".into(),
                    dense.into(),
                    self.classifier_dropout,
                );
                layers.push(layer(out, &[&x], output_layer(classes, self.multi_label)));
                out
            }
            Family::DistilBert => {
                layers.push(layer(
                    "pre_classifier",
                    &["first_token"],
                    json!({ "Dense": { "units": d, "activation": "Relu" } }),
                ));
                let x = dropout(
                    layers,
                    "dropout".into(),
                    "pre_classifier".into(),
                    self.classifier_dropout,
                );
                layers.push(layer(
                    BERT_CLASSIFIER_HEAD,
                    &[&x],
                    output_layer(classes, self.multi_label),
                ));
                BERT_CLASSIFIER_HEAD
            }
        }
    }
}

/// A Dropout layer `name` at `rate` on `x` into `layers`, and its output's
/// name; none (`x` itself) at rate 0.
fn dropout(layers: &mut Vec<Value>, name: String, x: String, rate: f64) -> String {
    if rate > 0.0 {
        layers.push(layer(&name, &[&x], json!({ "Dropout": { "rate": rate } })));
        name
    } else {
        x
    }
}

/// The output layer of a head of `classes` classes: softmax over them, a
/// sigmoid each (`multi_label`), or one score (Hugging Face's `num_labels` 1, a
/// regression).
fn output_layer(classes: usize, multi_label: bool) -> Value {
    match classes {
        n if multi_label => json!({ "Dense": { "units": n, "activation": "Sigmoid" } }),
        1 => json!({ "Dense": { "units": 1 } }),
        n => json!({ "Dense": { "units": n, "activation": "Softmax" } }),
    }
}

/// The loss of a head of `classes` classes: cross-entropy, binary cross-entropy
/// of each class (`multi_label`, Hugging Face's `BCEWithLogitsLoss`), or mean
/// squared error for one score (Hugging Face's `problem_type` "regression").
fn loss_of(classes: usize, multi_label: bool) -> &'static str {
    match classes {
        _ if multi_label => "BinaryCrossentropy",
        1 => "MeanSquaredError",
        _ => "SparseCategoricalCrossentropy",
    }
}

/// The classes of functional model `f` when it is a BERT classifier (of texts
/// or of tokens) as [`import_bert`] makes one; `None` otherwise.
pub fn bert_classifier_of(f: &crate::nn::Functional) -> Option<usize> {
    encoder_classifier_of(f).map(|(_, classes)| classes)
}

/// The family and classes of functional model `f` when it is a classifier
/// [`import_bert`] makes, of texts or of tokens ([`encoder_head_of`]); `None`
/// otherwise.
pub fn encoder_classifier_of(f: &crate::nn::Functional) -> Option<(Family, usize)> {
    encoder_head_of(f).map(|h| (h.family, h.classes))
}

/// The layers of the head of `task` on an encoder of `family`, trained in
/// full under LoRA; the last is the one with the classes.
fn head_of(family: Family, task: Task) -> &'static [&'static str] {
    match task {
        Task::TextClassification => family.head(),
        Task::TokenClassification => &TOKEN_HEAD,
        Task::QuestionAnswering => &ANSWER_HEAD,
    }
}

/// The head of a model [`import_bert`] makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EncoderHead {
    /// The encoder's family.
    pub family: Family,
    /// The head's classes (1: a regression's score; a question answerer's 2,
    /// its start and end scores).
    pub classes: usize,
    /// What the head does.
    pub task: Task,
}

impl EncoderHead {
    /// The layers of the head, trained in full under LoRA; the last is the one
    /// with the classes.
    pub fn layers(&self) -> &'static [&'static str] {
        head_of(self.family, self.task)
    }
}

/// The head of functional model `f` when it is a model [`import_bert`] makes:
/// its last layer its family's head output read from the first token (a
/// classifier of texts), `classifier` on every token (of tokens, with no
/// pooling), or `qa_outputs` on every token turned into start and end scores
/// over the positions (a question answerer); `None` otherwise.
pub fn encoder_head_of(f: &crate::nn::Functional) -> Option<EncoderHead> {
    use crate::nn::Layer;
    use crate::nn::functional::LayerOrOp;
    let mut last = f.layers.last()?;
    let mut task = Task::TokenClassification;
    if last.name == ANSWER_SCORES
        && matches!(&last.what, LayerOrOp::Layer(Layer::Permute { dims }) if dims == &[2, 1])
        && last.inputs == [ANSWER_HEAD[0]]
    {
        task = Task::QuestionAnswering;
        last = f.layers.iter().rev().nth(1)?;
    }
    let LayerOrOp::Layer(Layer::Dense { units, .. }) = &last.what else {
        return None;
    };
    let pooled = f
        .layers
        .iter()
        .any(|l| l.name == "first_token" && matches!(l.what, LayerOrOp::Layer(Layer::FirstTokenPooling1D)));
    if pooled {
        task = Task::TextClassification;
    }
    let family = Family::ALL.into_iter().find(|&family| {
        // A head on every token reads the last block (through dropout).
        let on_tokens = last
            .inputs
            .first()
            .is_some_and(|i| i == "dropout" || i.starts_with(family.names().blocks));
        head_of(family, task).last() == Some(&last.name.as_str())
            && (!task.per_token() || on_tokens)
            && f.layers.iter().any(|l| {
                l.name == format!("{}embeddings.word_embeddings", family.prefix())
                    && matches!(l.what, LayerOrOp::Layer(Layer::Embedding { .. }))
            })
    })?;
    Some(EncoderHead {
        family,
        classes: *units,
        task,
    })
}

/// What to make of a BERT folder. The default reads the model's own window and
/// head, with Adam at 5e-5 (Hugging Face Trainer's rate).
#[derive(Clone, Debug)]
pub struct BertImport {
    /// Tokens the model reads (`None`: BERT's own positions, 512 for the Hub's
    /// models; fewer keep the first rows of the position embedding).
    pub context: Option<usize>,
    /// Learning rate of the model's Adam when it is fine-tuned without another.
    pub lr: f64,
    /// Classes of a new head, for a file without a classifier (default 2, as
    /// Hugging Face's `num_labels`); a file's classifier of other classes gets a
    /// new output layer of this many (Hugging Face's `ignore_mismatched_sizes`).
    pub classes: Option<usize>,
    /// Seed of a new head's (and a missing pooler's) weights.
    pub seed: u64,
    /// Whether a new head is multi-label (Hugging Face's `problem_type`
    /// "multi_label_classification"); a file's config may say so itself.
    pub multi_label: bool,
    /// The head's task where it is not the file's: a token classifier (Hugging
    /// Face's `*ForTokenClassification`) or a question answerer
    /// (`*ForQuestionAnswering`); the default
    /// ([`Task::TextClassification`]) keeps what the file's `architectures`
    /// say, a classifier of texts where they name no head.
    pub task: Task,
}

impl Default for BertImport {
    fn default() -> Self {
        BertImport {
            context: None,
            lr: 5e-5,
            classes: None,
            seed: 0,
            multi_label: false,
            task: Task::TextClassification,
        }
    }
}

/// Reads the Hugging Face BERT in folder `dir` (`config.json`,
/// `model.safetensors`, `tokenizer.json`) as a classifier of texts: see the
/// module documentation for the mapping.
pub fn import_bert(dir: &Path, how: &BertImport) -> Result<Imported> {
    let files = super::Folder(dir);
    let text = files.text("config.json")?;
    let config = BertConfig::parse(&text).map_err(|m| files.bad("config.json", m))?;
    let name = config.family.name();
    let usable = config.positions - config.family.first_position(config.pad);
    let context = how.context.unwrap_or(usable);
    if context < 2 || context > usable {
        return Err(Error::invalid(format!(
            "a context of {context} tokens: this {name} has {usable} positions (give 2 to {usable})"
        )));
    }
    let vocabulary = files.tokenizer(config.vocab, name)?;
    // The classifier reads the first token: the tokenizer must put [CLS] (or <s>) there.
    if vocabulary.document_frame()?.0.is_empty() {
        return Err(files.bad(
            "tokenizer.json",
            format!(
                "puts nothing before a text (no post_processor template adding [CLS] or <s>), but the \
                 {name} classifier reads each text's first token as that: use the tokenizer saved \
                 with the model"
            ),
        ));
    }
    let mut config = config;
    config.multi_label |= how.multi_label;
    if how.task != Task::TextClassification {
        config.task = how.task;
    }
    match config.task {
        Task::TokenClassification if how.multi_label || how.classes == Some(1) => {
            return Err(Error::invalid(
                "a token classifier gives one class per token under cross-entropy (Hugging Face's \
                 *ForTokenClassification): leave out --multi-label, and give --num-labels 2 or more",
            ));
        }
        Task::QuestionAnswering if how.multi_label || how.classes.is_some_and(|n| n != 2) => {
            return Err(Error::invalid(
                "a question answerer scores where each answer starts and ends (Hugging Face's \
                 *ForQuestionAnswering, num_labels 2): leave out --multi-label and --num-labels",
            ));
        }
        _ => {}
    }
    // A file's multi-label text classifier made a head on every token.
    if config.task.per_token() {
        config.multi_label = false;
    }
    if config.multi_label && how.classes == Some(1) {
        return Err(Error::invalid(
            "a multi-label head of 1 class: give --num-labels 2 or more (one class is a binary \
             classifier; leave out --multi-label)",
        ));
    }
    if config.types >= 2 {
        let separator = token_type_separator(&vocabulary, config.types)?;
        config.separator = separator.map_err(|m| files.bad("tokenizer.json", m))?;
    }
    let bytes = files.bytes("model.safetensors")?;
    let file = SafeTensors::deserialize(&bytes)
        .map_err(|e| files.bad("model.safetensors", format!("is not a safetensors file: {e}")))?;
    let read = bert_tensors(&file, &config, context, how).map_err(|m| files.bad("model.safetensors", m))?;
    let mut architecture = config.architecture(context, read.classes, how.lr)?;
    architecture.class_names = match &config.labels {
        // A regression head gives a score, not a class.
        _ if read.classes == 1 && !config.multi_label => Vec::new(),
        Some(names) if read.head_read && names.len() == read.classes => names.clone(),
        _ => (0..read.classes).map(|i| format!("LABEL_{i}")).collect(),
    };
    let count: usize = read.tensors.iter().map(|(_, _, v)| v.len()).sum();
    let mut notes = Vec::new();
    let what = match read.classes {
        _ if config.task == Task::QuestionAnswering => "start and end scores of each token".to_string(),
        n if config.task.per_token() => format!("{n} classes of each token"),
        n if config.multi_label => format!("{n} classes, multi-label (a sigmoid each)"),
        1 => "a regression head (one score, mean squared error)".to_string(),
        n => format!("{n} classes"),
    };
    if let Some(n) = read.replaced {
        notes.push(format!(
            "the file's classifier of {n} classes replaced by a new output layer of {what} (Hugging \
             Face's ignore_mismatched_sizes; drawn with seed {}; fine-tune it)",
            how.seed
        ));
    } else if !read.head_read {
        notes.push(format!(
            "a new head '{}' of {what} (drawn with seed {}; fine-tune it)",
            config.head().join("', '"),
            how.seed
        ));
    } else if config.task == Task::QuestionAnswering {
        notes.push("its question answerer (start and end scores of each token)".into());
    } else if config.task.per_token() {
        notes.push(format!(
            "its token classifier of {} classes ({})",
            read.classes,
            architecture.class_names.join(", ")
        ));
    } else if config.multi_label {
        notes.push(format!(
            "its multi-label classifier of {} classes, a sigmoid each ({})",
            read.classes,
            architecture.class_names.join(", ")
        ));
    } else if read.classes == 1 {
        notes.push("its regression head (one score, mean squared error)".into());
    } else {
        notes.push(format!(
            "its classifier of {} classes ({})",
            read.classes,
            architecture.class_names.join(", ")
        ));
    }
    if !read.pooler_read && !config.task.per_token() {
        notes.push("a new pooler (the file has none)".into());
    }
    if read.skipped > 0 {
        notes.push(format!(
            "{} tensors of heads the classifier does not use ({}*{}) left out",
            read.skipped,
            config.family.pretraining(),
            if config.family == Family::Roberta || config.task.per_token() {
                ", pooler.*"
            } else {
                ""
            }
        ));
    }
    let summary = format!(
        "{name}: {} blocks of width {}, {} heads, MLP {} ({}), {} positions (of {}), {} tokens, \
         padding id {}; {count} parameters; {}",
        config.layers,
        config.width,
        config.heads,
        config.inner,
        config.activation,
        context,
        usable,
        config.vocab,
        config.pad,
        notes.join("; ")
    );
    Ok(Imported {
        // XLM-R and CamemBERT keep their own model_type (export writes it back).
        kind: serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|c| c.get("model_type").and_then(Value::as_str).map(str::to_string))
            .unwrap_or_else(|| config.family.model_type().into()),
        architecture,
        tensors: read.tensors,
        vocabulary,
        pad_token_id: Some(config.pad),
        summary,
    })
}

/// The id from which BERT's token types are computed (the types count it
/// before each token): the token between the two texts of the tokenizer's pair
/// template (`[CLS] A [SEP] B [SEP]`), checked to type the template's tokens as
/// the tokenizer does. `None` where the tokenizer types every token 0 (no pair
/// template, or one of type 0 only, as RoBERTa's): the one type in use is then
/// folded into the positions, exactly. The inner error says what in the
/// tokenizer does not fit.
fn token_type_separator(
    vocabulary: &crate::data::text::Vocabulary,
    types: usize,
) -> Result<std::result::Result<Option<u32>, String>> {
    let Some(frame) = vocabulary.pair_frame()? else {
        return Ok(Ok(None));
    };
    let (ids, want) = &frame.probe;
    if want.iter().all(|&t| t == 0) {
        return Ok(Ok(None));
    }
    let separator = frame.between[0];
    let ids: Vec<f32> = ids.iter().map(|&i| i as f32).collect();
    let got = crate::reference::sequence::token_types(&ids, ids.len(), separator, types);
    let want: Vec<f32> = want.iter().map(|&t| t as f32).collect();
    Ok(if got == want {
        Ok(Some(separator))
    } else {
        Err(format!(
            "types a pair of texts (ids {:?}) as {want:?}, but wgml computes token types from the \
             separators before each token ({got:?}); use a tokenizer whose pair template is \
             [CLS] $A [SEP] $B [SEP] with types 0 through the first [SEP]",
            frame.probe.0
        ))
    })
}

/// BERT's tensors as [`BertConfig::architecture`] names and lays them out.
struct BertTensors {
    tensors: Vec<NamedValues>,
    classes: usize,
    /// Whether the classifier came from the file (else it is new).
    head_read: bool,
    /// Whether the pooler came from the file (else it is new).
    pooler_read: bool,
    /// Pretraining heads' tensors left out.
    skipped: usize,
    /// The classes of the file's classifier, when a new one of other classes
    /// replaced its output layer.
    replaced: Option<usize>,
}

/// BERT's tensors renamed for [`BertConfig::architecture`]. Names may carry
/// `bert.` (`BertFor*` models) or not (`BertModel`); layer norms' `gamma` and
/// `beta` (older files) are read as `weight` and `bias`; the `position_ids`
/// buffer and the pretraining heads (`cls.*`) are skipped. Any other tensor is
/// refused, as is a missing one or a shape that differs from the config's.
fn bert_tensors(
    file: &SafeTensors<'_>,
    c: &BertConfig,
    context: usize,
    how: &BertImport,
) -> std::result::Result<BertTensors, String> {
    let prefix = c.family.prefix();
    let mut by_name: HashMap<String, (Vec<usize>, Vec<f32>)> = HashMap::new();
    let mut skipped = 0;
    for (name, view) in file.tensors() {
        let short = name.strip_prefix(prefix).unwrap_or(&name);
        // RoBERTa's classifier reads no pooler (RobertaModel's files hold one),
        // nor do heads on every token; a head made from another task's file
        // leaves the other's layers out (Hugging Face's unused weights).
        let unused_pooler =
            (c.family == Family::Roberta || c.task.per_token()) && short.starts_with("pooler.");
        let used = c.head();
        let in_layer = |layer: &str| name.starts_with(&format!("{layer}."));
        let unused_head = !used.iter().any(|u| in_layer(u))
            && [
                Task::TextClassification,
                Task::TokenClassification,
                Task::QuestionAnswering,
            ]
            .into_iter()
            .flat_map(|task| head_of(c.family, task))
            .any(|h| in_layer(h));
        if name.starts_with(c.family.pretraining()) || unused_pooler || unused_head {
            skipped += 1;
            continue;
        }
        if short == "embeddings.position_ids" || short == "embeddings.token_type_ids" {
            continue;
        }
        let short = short
            .replace("LayerNorm.gamma", "LayerNorm.weight")
            .replace("LayerNorm.beta", "LayerNorm.bias");
        let values = to_f32(view.dtype(), view.data()).map_err(|m| format!("tensor '{name}': {m}"))?;
        by_name.insert(short, (view.shape().to_vec(), values));
    }
    let mut file = Named(by_name);
    let (d, v, de) = (c.width, c.vocab, c.embedding_width);
    let mut out: Vec<NamedValues> = Vec::new();
    let keep = |out: &mut Vec<NamedValues>, name: &str, shape: Vec<usize>, values: Vec<f32>| {
        out.push((format!("{prefix}{name}"), shape, values));
    };
    let words = file.take("embeddings.word_embeddings.weight", &[v, de])?;
    keep(&mut out, "embeddings.word_embeddings.weight", vec![v, de], words);
    // A single token type's row joins each position's (RoBERTa's); two or more
    // keep their table (BERT's, read through the token types). The first token
    // reads row `first` (RoBERTa's rows before it serve padding).
    let positions = file.take("embeddings.position_embeddings.weight", &[c.positions, de])?;
    let types = match (c.types, c.separator) {
        (0, _) => vec![0.0; de],
        (n @ 2.., Some(_)) => {
            let table = file.take("embeddings.token_type_embeddings.weight", &[n, de])?;
            keep(
                &mut out,
                "embeddings.token_type_embeddings.weight",
                vec![n, de],
                table,
            );
            vec![0.0; de]
        }
        (n, _) => file.take("embeddings.token_type_embeddings.weight", &[n, de])?,
    };
    let first = c.family.first_position(c.pad);
    let folded: Vec<f32> = positions[first * de..(first + context) * de]
        .iter()
        .enumerate()
        .map(|(i, p)| p + types[i % de])
        .collect();
    keep(
        &mut out,
        "embeddings.position_embeddings.weight",
        vec![context, de],
        folded,
    );
    for part in ["weight", "bias"] {
        let name = format!("embeddings.LayerNorm.{part}");
        let values = file.take(&name, &[de])?;
        keep(&mut out, &name, vec![de], values);
    }
    if de != d {
        // ELECTRA's embeddings_project: Linear [d, de].
        let w = file.take("embeddings_project.weight", &[d, de])?;
        keep(&mut out, "embeddings_project.weight", vec![d, de], w);
        let b = file.take("embeddings_project.bias", &[d])?;
        keep(&mut out, "embeddings_project.bias", vec![d], b);
    }
    let mut norms = Vec::new();
    let names = c.family.names();
    let blocks = names.blocks.strip_prefix(prefix).unwrap_or(names.blocks);
    for i in 0..c.layers {
        let p = format!("{blocks}{i}");
        let [query, key, value, output] = names.hf;
        for (from, to, fan_in, fan_out) in [
            (query, "attention.query", d, d),
            (key, "attention.key", d, d),
            (value, "attention.value", d, d),
            (output, "attention.output", d, d),
            (names.inner, names.inner, d, c.inner),
            (names.outer, names.outer, c.inner, d),
        ] {
            let w = file.take(&format!("{p}.{from}.weight"), &[fan_out, fan_in])?;
            keep(&mut out, &format!("{p}.{to}.weight"), vec![fan_out, fan_in], w);
            let b = file.take(&format!("{p}.{from}.bias"), &[fan_out])?;
            keep(&mut out, &format!("{p}.{to}.bias"), vec![fan_out], b);
        }
        norms.push(format!("{p}.{}", names.norm1));
        norms.push(format!("{p}.{}", names.norm2));
    }
    for norm in norms {
        for part in ["weight", "bias"] {
            let name = format!("{norm}.{part}");
            let values = file.take(&name, &[d])?;
            keep(&mut out, &name, vec![d], values);
        }
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(how.seed);
    let mut draw = |n: usize| -> Vec<f32> {
        (0..n)
            .map(|_| crate::data::dataset::gaussian(&mut rng) * c.init_std as f32)
            .collect()
    };
    let mut pooler_read = true;
    if c.family == Family::Bert && !c.task.per_token() {
        pooler_read = file.0.contains_key("pooler.dense.weight");
        let (w, b) = if pooler_read {
            (
                file.take("pooler.dense.weight", &[d, d])?,
                file.take("pooler.dense.bias", &[d])?,
            )
        } else {
            (draw(d * d), vec![0.0; d])
        };
        keep(&mut out, "pooler.dense.weight", vec![d, d], w);
        keep(&mut out, "pooler.dense.bias", vec![d], b);
    }
    // The output layer, and RoBERTa's dense layer before it.
    let output = *c.head().last().unwrap_or(&BERT_CLASSIFIER_HEAD);
    let head = format!("{output}.weight");
    let bias = format!("{output}.bias");
    let new_classes = |n: usize| -> std::result::Result<usize, String> {
        if (1..=MAX_CLASSES).contains(&n) {
            Ok(n)
        } else {
            Err(format!(
                "a classifier of {n} classes: give 2 to {MAX_CLASSES}, or 1 for a regression head (one \
                 score)"
            ))
        }
    };
    let mut replaced = None;
    let (classes, head_read, w, b) = match file.0.remove(&head) {
        Some((shape, w)) if shape.len() == 2 && shape[0] >= 1 && shape[1] == d => {
            let n = shape[0];
            let b = file
                .0
                .remove(&bias)
                .filter(|(s, _)| s == &[n])
                .map(|(_, b)| b)
                .ok_or_else(|| format!("has no tensor '{bias}' of shape [{n}] beside '{head}'"))?;
            match how.classes.filter(|&k| k != n) {
                // Hugging Face's ignore_mismatched_sizes: a new output layer.
                Some(k) => {
                    let k = new_classes(k)?;
                    replaced = Some(n);
                    (k, false, draw(k * d), vec![0.0; k])
                }
                None => (n, true, w, b),
            }
        }
        Some((shape, _)) => {
            return Err(format!(
                "tensor '{head}' has shape {shape:?}; a classifier's head is [classes, {d}]"
            ));
        }
        None => {
            let n = new_classes(how.classes.unwrap_or(2))?;
            (n, false, draw(n * d), vec![0.0; n])
        }
    };
    if c.task == Task::QuestionAnswering && classes != 2 {
        return Err(format!(
            "tensor '{head}' scores {classes} things per token; a question answerer's scores the \
             start and the end of the answer, [2, {d}]"
        ));
    }
    // RoBERTa's classifier.dense and DistilBERT's pre_classifier, before the
    // output: the file's where it has them, else new.
    if let [before, _] = c.head() {
        let (wn, bn) = (format!("{before}.weight"), format!("{before}.bias"));
        let (w, b) = if file.0.contains_key(&wn) {
            (file.take(&wn, &[d, d])?, file.take(&bn, &[d])?)
        } else {
            (draw(d * d), vec![0.0; d])
        };
        out.push((wn, vec![d, d], w));
        out.push((bn, vec![d], b));
    }
    out.push((head, vec![classes, d], w));
    out.push((bias, vec![classes], b));
    if let Some(extra) = file.0.keys().min() {
        return Err(format!(
            "holds tensor '{extra}' (and {} more), which a {} has not: another architecture?",
            file.0.len() - 1,
            c.family.name()
        ));
    }
    Ok(BertTensors {
        tensors: out,
        classes,
        head_read,
        pooler_read,
        skipped,
        replaced,
    })
}

/// A file's tensors by name, taken one by one.
struct Named(HashMap<String, (Vec<usize>, Vec<f32>)>);

impl Named {
    /// Tensor `name`, which must have `shape`.
    fn take(&mut self, name: &str, shape: &[usize]) -> std::result::Result<Vec<f32>, String> {
        let (got, values) = self
            .0
            .remove(name)
            .ok_or_else(|| format!("has no tensor '{name}' (is it a BERT, a RoBERTa or a DistilBERT?)"))?;
        if got != shape {
            return Err(format!(
                "tensor '{name}' has shape {got:?}, but config.json makes it {shape:?}"
            ));
        }
        Ok(values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"{"model_type":"bert","vocab_size":30522,"hidden_size":768,
        "num_hidden_layers":12,"num_attention_heads":12,"intermediate_size":3072,
        "hidden_act":"gelu","hidden_dropout_prob":0.1,"attention_probs_dropout_prob":0.1,
        "max_position_embeddings":512,"type_vocab_size":2,"initializer_range":0.02,
        "layer_norm_eps":1e-12,"pad_token_id":0,"position_embedding_type":"absolute""#;

    /// `bert-base-uncased`'s settings give its shape, exact GELU and the three
    /// dropouts (the classifier's from hidden_dropout_prob).
    #[test]
    fn the_hubs_bert_base_is_read_with_its_dropouts() {
        let c = BertConfig::parse(&format!("{BASE}}}")).unwrap();
        assert_eq!((c.width, c.layers, c.heads, c.inner), (768, 12, 12, 3072));
        assert_eq!((c.activation, c.pad, c.classifier_dropout), ("Gelu", 0, 0.1));
        let a = c.architecture(128, 2, 2e-5).unwrap();
        let names: Vec<&str> = a.functional.layers.iter().map(|l| l.name.as_str()).collect();
        for want in [
            "bert.embeddings.dropout",
            "bert.encoder.layer.11.output.dropout",
            "first_token",
            "dropout",
            BERT_CLASSIFIER_HEAD,
        ] {
            assert!(names.contains(&want), "{want} in {names:?}");
        }
        assert_eq!(a.functional.input.shape, vec![128]);
    }

    /// `examples/models/bert_base.json` is what importing the Hub's
    /// `bert-base-uncased` with a 128-token window and 2 labels describes, so it
    /// trains BERT-base from scratch with the layers and names an import gives
    /// (`benches/gpu_session.sh` times it).
    #[test]
    fn the_bert_base_example_is_the_imported_architecture() {
        // bert-base-uncased's tokenizer puts [SEP] (102) between two texts.
        let config = BertConfig {
            separator: Some(102),
            ..BertConfig::parse(&format!("{BASE}}}")).unwrap()
        };
        let want = config.architecture(128, 2, 2e-5).unwrap();
        let example: FunctionalArchitecture =
            serde_json::from_str(include_str!("../../examples/models/bert_base.json")).unwrap();
        assert_eq!(example, want);
    }

    /// A token classifier's config: read as one whatever its problem_type says
    /// (Hugging Face's always takes cross-entropy per token); its head is
    /// dropout and `classifier` on every token, with no pooling.
    #[test]
    fn a_token_classifier_config_ignores_problem_type() {
        let c = BertConfig::parse(&format!(
            "{BASE},\"architectures\":[\"BertForTokenClassification\"],\"problem_type\":\"multi_label_classification\"}}"
        ))
        .unwrap();
        assert!(c.task == Task::TokenClassification && !c.multi_label);
        let a = c.architecture(64, 9, 2e-5).unwrap();
        let names: Vec<&str> = a.functional.layers.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names[names.len() - 2..], ["dropout", BERT_CLASSIFIER_HEAD]);
        assert!(!names.contains(&"first_token") && !names.iter().any(|n| n.contains("pooler")));
        let head = encoder_head_of(&a.functional).unwrap();
        assert_eq!((head.classes, head.task), (9, Task::TokenClassification));
    }

    #[test]
    fn config_refuses_what_wgml_does_not_compute() {
        for (extra, says) in [
            (r#","position_embedding_type":"relative_key""#, "relative_key"),
            (r#","is_decoder":true"#, "is_decoder"),
            (r#","hidden_act":"mish""#, "mish"),
            (r#","num_attention_heads":5"#, "multiple"),
            (r#","hidden_dropout_prob":1.0"#, "hidden_dropout_prob"),
            (r#","pad_token_id":40000"#, "pad_token_id"),
        ] {
            let e = BertConfig::parse(&format!("{BASE}{extra}}}")).unwrap_err();
            assert!(e.contains(says), "{extra}: {e}");
        }
        let e = BertConfig::parse(r#"{"model_type":"gpt2"}"#).unwrap_err();
        assert!(e.contains("gpt2"), "{e}");
    }
}
