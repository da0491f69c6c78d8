//! A Hugging Face question answerer run from Rust (extractive, as SQuAD's: a
//! BERT, RoBERTa, DistilBERT or ELECTRA `*ForQuestionAnswering` folder, as
//! `save_pretrained` writes it) imported in memory: the question and context
//! read as `run_qa.py` reads them (the context in windows of the model's
//! tokens sharing a third of a window), each window's start and end scores,
//! and the best span across the windows, as `utils_qa.py` picks it.
//!
//! `cargo run --release --example question_answerer -- FOLDER "Who wrote it?" "CONTEXT"`
//!
//! Without arguments it runs the repository's tiny random fixture
//! (`kernels-tests/golden/bert-tiny-qa`), whose answers are noise; a real
//! answerer such as `distilbert-base-cased-distilled-squad` gives real ones.

use std::path::PathBuf;

use wgml::data::squad::{QaExample, QaReader};
use wgml::import::bert::{BertImport, import_bert};
use wgml::train::answers::{AnswerOptions, best_answers};
use wgml::{Context, ContextOptions};

fn main() -> wgml::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let folder = args.first().map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("kernels-tests/golden/bert-tiny-qa"),
        PathBuf::from,
    );
    let (question, context) = match (args.get(1), args.get(2)) {
        (Some(q), Some(c)) => (q.clone(), c.clone()),
        _ => (
            "who liked the film?".to_string(),
            "the story is too long. tia liked the film, and the actors were very good.".to_string(),
        ),
    };
    let ctx = Context::new(&ContextOptions::default())?;
    // The folder's own window and head (its architectures name the question
    // answerer).
    let imported = import_bert(&folder, &BertImport::default())?;
    println!("{}", imported.summary);
    let mut model = imported.model(&ctx)?;
    let tokens = model.spec.input_shape()[0];
    let pad = imported.pad_token_id.unwrap_or(0);
    let reader = QaReader::new(&imported.vocabulary, tokens, tokens / 3, pad)?;
    let examples = [QaExample {
        id: "0".into(),
        question,
        context,
        answers: Vec::new(),
    }];
    let read = reader.features(&examples)?;
    let split = read.split(tokens);
    // Scores before the softmax: windows compare by them.
    let logits = model.predict_logits(&ctx, &split.x, read.features.len())?;
    let answers = best_answers(
        &examples,
        &read.features,
        &logits,
        tokens,
        &AnswerOptions::default(),
    );
    for a in &answers {
        println!(
            "{} windows of {tokens} tokens; answer: {:?} (characters {:?}, probability {:.3})",
            read.features.len(),
            a.answer,
            a.span,
            a.probability
        );
    }
    Ok(())
}
