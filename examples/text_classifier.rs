//! A Hugging Face text classifier run from Rust: a BERT, RoBERTa, DistilBERT or ELECTRA
//! folder (`config.json`, `model.safetensors`, `tokenizer.json`, as
//! `save_pretrained` writes them) imported in memory, texts read as its
//! tokenizer reads them, each text's class printed with its probability.
//!
//! `cargo run --release --example text_classifier -- FOLDER "a text" "another"`
//!
//! A sentence-pair classifier (MNLI, MRPC, QQP: `roberta-large-mnli`,
//! `textattack/bert-base-uncased-MRPC`) reads an argument with ` ||| ` in it as
//! a pair, framed and cut as `tokenizer(first, second, truncation=True)` does:
//! `-- FOLDER "A man is eating. ||| Someone eats."`. A regression head (STS-B,
//! cross-encoder rerankers such as `cross-encoder/ms-marco-MiniLM-L-6-v2`)
//! prints each text's score.
//!
//! Without arguments it runs the repository's tiny random BERT fixture
//! (`kernels-tests/golden/bert-tiny-cls`), whose classes are noise; a real
//! classifier such as `distilbert-base-uncased-finetuned-sst-2-english` gives real
//! ones.

use std::path::PathBuf;

use wgml::data::text_classes::cut_and_pad;
use wgml::import::bert::{BertConfig, BertImport, import_bert};
use wgml::{Context, ContextOptions};

fn main() -> wgml::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let folder = args.first().map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("kernels-tests/golden/bert-tiny-cls"),
        PathBuf::from,
    );
    let texts: Vec<String> = match args.get(1..) {
        Some(t) if !t.is_empty() => t.to_vec(),
        _ => vec![
            "The film was very good!".into(),
            "Boring plot, too long.".into(),
            "The plot was good. ||| It is not boring.".into(),
        ],
    };
    let ctx = Context::new(&ContextOptions::default())?;
    // At most 128 tokens a text (fewer where the model has fewer positions).
    let config = std::fs::read_to_string(folder.join("config.json")).map_err(|source| wgml::Error::Io {
        path: folder.join("config.json").display().to_string(),
        source,
    })?;
    let config = BertConfig::parse(&config).map_err(wgml::Error::invalid)?;
    let positions = config.positions - config.family.first_position(config.pad);
    let how = BertImport {
        context: Some(positions.min(128)),
        ..BertImport::default()
    };
    let imported = import_bert(&folder, &how)?;
    println!("{}", imported.summary);
    let mut model = imported.model(&ctx)?;
    let tokens = model.spec.input_shape()[0];
    let pad = imported.pad_token_id.unwrap_or(0);
    let frames = imported.vocabulary.text_frames()?;
    let mut x = Vec::new();
    for text in &texts {
        let (first, second) = match text.split_once(" ||| ") {
            Some((a, b)) => (a, Some(b.as_bytes())),
            None => (text.as_str(), None),
        };
        let (ids, _) = imported
            .vocabulary
            .encode_text(first.as_bytes(), second, tokens, &frames)?;
        x.extend(cut_and_pad(&ids, tokens, pad));
    }
    let probabilities = model.predict(&ctx, &x, texts.len())?;
    let classes = &imported.architecture.class_names;
    if classes.is_empty() {
        // A regression head (num_labels 1: STS-B, a cross-encoder): one score each.
        for (text, score) in texts.iter().zip(&probabilities) {
            println!("{text:?}: score {score:.4}");
        }
        return Ok(());
    }
    if imported.architecture.functional.supervised_loss() == Some(wgml::nn::Loss::BinaryCrossentropy) {
        // A multi-label head: every class above 0.5.
        for (text, p) in texts.iter().zip(probabilities.chunks(classes.len())) {
            let set: Vec<String> = (0..p.len())
                .filter(|&i| p[i] > 0.5)
                .map(|i| format!("{} ({:.4})", classes[i], p[i]))
                .collect();
            println!(
                "{text:?}: {}",
                if set.is_empty() {
                    "no class".into()
                } else {
                    set.join(", ")
                }
            );
        }
        return Ok(());
    }
    for (text, p) in texts.iter().zip(probabilities.chunks(classes.len())) {
        let best = (0..p.len()).fold(0, |b, i| if p[i] > p[b] { i } else { b });
        println!("{text:?}: {} ({:.4})", classes[best], p[best]);
    }
    Ok(())
}
