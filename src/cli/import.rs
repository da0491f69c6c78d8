//! `wgml import`: a pretrained model from another program's files, saved as a
//! wgml checkpoint that `generate`, `eval` and `train` (fine-tuning) take.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use wgml::checkpoint;
use wgml::import::bert::Task;
use wgml::{Error, Result};

#[derive(Args, Debug, Clone)]
pub struct ImportArgs {
    /// A Hugging Face GPT-2, Llama, BERT, RoBERTa, DistilBERT or ELECTRA folder: config.json,
    /// model.safetensors and tokenizer.json (what `save_pretrained` writes; the
    /// Hub's gpt2, gpt2-medium, gpt2-large, gpt2-xl and distilgpt2; Llama-family
    /// LlamaForCausalLM, Qwen2ForCausalLM and Qwen3ForCausalLM folders, sharded ones included
    /// (TinyLlama, SmolLM, Llama 2, 3.1 and 3.2, Qwen2.5, Qwen3); bert-base-uncased, bert-base-cased, bert-large-*, roberta-base,
    /// xlm-roberta-base, distilbert-base-uncased and their fine-tuned
    /// classifiers). A BERT, RoBERTa, DistilBERT or ELECTRA becomes a classifier of texts.
    pub folder: PathBuf,
    /// The wgml checkpoint to write.
    #[arg(long)]
    pub save: PathBuf,
    /// Positions the wgml model reads (default: the model's own, 1,024 for GPT-2,
    /// 512 for BERT, at most 2,048 for a Llama); fewer keep the first rows of the
    /// position embedding and cost less per token.
    #[arg(long, value_name = "N")]
    pub context: Option<usize>,
    /// Learning rate of the model's Adam when it is fine-tuned without --lr
    /// (default: 1e-4 for GPT-2; 5e-5 for the BERT family, Hugging Face Trainer's
    /// default, as full fine-tuning of an encoder takes small steps).
    #[arg(long)]
    pub lr: Option<f64>,
    /// A PEFT LoRA adapter folder for this GPT-2, Llama, BERT, RoBERTa, DistilBERT or ELECTRA (adapter_config.json and
    /// adapter_model.safetensors, what PeftModel.save_pretrained writes): the
    /// checkpoint keeps the adapters beside the frozen base, so `generate` runs the
    /// adapted model and `train` goes on training the adapters.
    #[arg(long, value_name = "DIR")]
    pub peft: Option<PathBuf>,
    /// BERT, RoBERTa, DistilBERT, ELECTRA: the classes of the new head a
    /// pretrained model (one without a classifier) gets, as Hugging Face's
    /// num_labels (default 2; 1 is a regression head, one score); a file's
    /// classifier of other classes gets a new output layer of this many (Hugging
    /// Face's ignore_mismatched_sizes).
    #[arg(long, value_name = "N")]
    pub num_labels: Option<usize>,
    /// BERT family: the head is multi-label (Hugging Face's problem_type
    /// multi_label_classification): a sigmoid per class under binary
    /// cross-entropy, each text in any number of classes.
    #[arg(long)]
    pub multi_label: bool,
    /// BERT family: the head classifies every token (Hugging Face's
    /// *ForTokenClassification: named entities, parts of speech), a softmax
    /// over each token's classes; a file whose architectures name
    /// *ForTokenClassification is one already. Train it on tagged words (CoNLL
    /// files, or JSON Lines of tokens and tags).
    #[arg(long, conflicts_with = "question_answering")]
    pub token_classification: bool,
    /// BERT family: the head answers questions from a context (Hugging Face's
    /// *ForQuestionAnswering, extractive as SQuAD's): qa_outputs scores where
    /// the answer starts and ends; a file whose architectures name
    /// *ForQuestionAnswering is one already. Train it on SQuAD files (its JSON,
    /// or JSON Lines of id, context, question and answers).
    #[arg(long, conflicts_with_all = ["num_labels", "multi_label"])]
    pub question_answering: bool,
    /// BERT, RoBERTa, DistilBERT, ELECTRA: the seed a new head's weights are drawn with.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

pub fn run(args: &ImportArgs) -> Result<ExitCode> {
    let start = std::time::Instant::now();
    let bert = wgml::import::model_type(&args.folder)?
        .as_deref()
        .and_then(wgml::import::bert::Family::of)
        .is_some();
    if !bert
        && (args.num_labels.is_some()
            || args.multi_label
            || args.token_classification
            || args.question_answering)
    {
        return Err(Error::invalid(
            "--num-labels, --multi-label, --token-classification and --question-answering give a \
             BERT-family model its new head; a GPT-2 becomes a classifier when `wgml train` \
             fine-tunes it on texts by class",
        ));
    }
    let model_type = wgml::import::model_type(&args.folder)?;
    let llama = matches!(
        model_type.as_deref(),
        Some("llama" | "mistral" | "qwen2" | "qwen3")
    );
    let mut imported = if bert {
        let how = wgml::import::bert::BertImport {
            context: args.context,
            lr: args.lr.unwrap_or(5e-5),
            classes: args.num_labels,
            seed: args.seed,
            multi_label: args.multi_label,
            task: if args.question_answering {
                Task::QuestionAnswering
            } else if args.token_classification {
                Task::TokenClassification
            } else {
                Task::TextClassification
            },
        };
        wgml::import::bert::import_bert(&args.folder, &how)?
    } else if llama {
        wgml::import::llama::import_llama(&args.folder, args.context, args.lr.unwrap_or(1e-4))?
    } else {
        wgml::import::import_gpt2(&args.folder, args.context, args.lr.unwrap_or(1e-4))?
    };
    let adapter = match &args.peft {
        Some(dir) if bert => Some(wgml::peft::encoder::add_adapter(&mut imported, dir)?),
        Some(dir) if llama => Some(wgml::peft::decoder::add_adapter(&mut imported, dir)?),
        Some(dir) => Some(wgml::peft::add_adapter(&mut imported, dir)?),
        None => None,
    };
    checkpoint::save_functional_tensors(
        &args.save,
        &imported.kind,
        &imported.architecture,
        &imported.tensors,
        &imported.vocabulary,
    )?;
    println!("{}", imported.summary);
    if let Some(line) = adapter {
        println!("{line}");
    }
    let classifier = bert || wgml::export::gpt2_classifier_of(&imported.architecture.functional).is_some();
    let task = wgml::import::bert::encoder_head_of(&imported.architecture.functional).map(|h| h.task);
    if task == Some(Task::QuestionAnswering) {
        println!(
            "saved {} in {:.1} s: answer questions with `wgml predict --weights {0} QUESTIONS.jsonl` \
             (a question and its context per line), fine-tune it with `wgml train --model {0} --data \
             DIR|FILE` (SQuAD's JSON, or JSON Lines of id, context, question and answers)",
            args.save.display(),
            start.elapsed().as_secs_f64()
        );
    } else if task == Some(Task::TokenClassification) {
        println!(
            "saved {} in {:.1} s: tag words with `wgml predict --weights {0} FILE`, fine-tune it with \
             `wgml train --model {0} --data DIR|FILE` (CoNLL files, or JSON Lines of tokens and tags)",
            args.save.display(),
            start.elapsed().as_secs_f64()
        );
    } else if classifier {
        println!(
            "saved {} in {:.1} s: classify texts with `wgml predict --weights {0} FILE.txt`, fine-tune \
             it with `wgml train --model {0} --data DIR|FILE.csv`",
            args.save.display(),
            start.elapsed().as_secs_f64()
        );
    } else {
        println!(
            "saved {} in {:.1} s: continue a text with `wgml generate --weights {0}`, fine-tune it \
             with `wgml train --model {0} --data text:PATH`",
            args.save.display(),
            start.elapsed().as_secs_f64()
        );
    }
    Ok(ExitCode::SUCCESS)
}
