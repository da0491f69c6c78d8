//! A Hugging Face token classifier run from Rust (named entities: a BERT,
//! RoBERTa, DistilBERT or ELECTRA `*ForTokenClassification` folder, as
//! `save_pretrained` writes it) imported in memory: each sentence's words read
//! as `tokenizer(words, is_split_into_words=True, truncation=True)` reads them,
//! each word tagged from its first token, and the entities the tags make.
//!
//! `cargo run --release --example token_tagger -- FOLDER "EU rejects German call" "..."`
//!
//! Words are the sentence split at whitespace (CoNLL keeps punctuation apart:
//! "call ." tags the full stop as its own word). Without arguments it runs the
//! repository's tiny random fixture (`kernels-tests/golden/bert-tiny-tokens`),
//! whose tags are noise; a real tagger such as `dslim/bert-base-NER` gives real
//! ones.

use std::path::PathBuf;

use wgml::data::tagged_words::WordReader;
use wgml::import::bert::{BertImport, Task, import_bert};
use wgml::train::entities::spans;
use wgml::{Context, ContextOptions};

fn main() -> wgml::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let folder = args.first().map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("kernels-tests/golden/bert-tiny-tokens"),
        PathBuf::from,
    );
    let sentences: Vec<String> = match args.get(1..) {
        Some(s) if !s.is_empty() => s.to_vec(),
        _ => vec![
            "Tia liked the film in Boston .".into(),
            "the actors were great".into(),
        ],
    };
    let ctx = Context::new(&ContextOptions::default())?;
    // The model's own window (its positions) and its head, read as a token
    // classifier's.
    let how = BertImport {
        task: Task::TokenClassification,
        ..BertImport::default()
    };
    let imported = import_bert(&folder, &how)?;
    println!("{}", imported.summary);
    let mut model = imported.model(&ctx)?;
    let tokens = model.spec.input_shape()[0];
    let pad = imported.pad_token_id.unwrap_or(0);
    let mut reader = WordReader::new(&[tokens], &imported.vocabulary, pad)?;
    let (mut x, mut firsts, mut words) = (Vec::new(), Vec::new(), Vec::new());
    for sentence in &sentences {
        let w: Vec<String> = sentence.split_whitespace().map(str::to_string).collect();
        let (ids, first) = reader.sample(&w)?;
        x.extend(ids);
        firsts.push(first);
        words.push(w);
    }
    let probabilities = model.predict(&ctx, &x, sentences.len())?;
    let names = &imported.architecture.class_names;
    let classes = names.len();
    for ((w, first), p) in words
        .iter()
        .zip(&firsts)
        .zip(probabilities.chunks(tokens * classes))
    {
        // Each word's tag: the most probable class at its first token.
        let mut tags = vec!["O"; w.len()];
        for (position, word) in first.iter().enumerate() {
            if let Some(word) = *word {
                let row = &p[position * classes..(position + 1) * classes];
                let best = (0..classes).fold(0, |b, i| if row[i] > row[b] { i } else { b });
                tags[word] = &names[best];
            }
        }
        let tagged: Vec<String> = w.iter().zip(&tags).map(|(w, t)| format!("{w}/{t}")).collect();
        println!("{}", tagged.join(" "));
        for (kind, a, b) in spans(&tags) {
            println!("  {kind}: {}", w[a..=b].join(" "));
        }
    }
    Ok(())
}
