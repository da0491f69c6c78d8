//! A question answerer on the command line: its data read as windows of the
//! context (`train`, `eval`), its answers scored as SQuAD's metrics score them,
//! and `wgml predict`'s answers to questions, as JSON Lines.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde_json::{Value, json};
use wgml::data::Dataset;
use wgml::data::squad::{QaExample, QaFeatures, QaReader, read_examples, read_splits};
use wgml::data::text::Vocabulary;
use wgml::train::answers::{AnswerScores, Questions};
use wgml::{Error, Result};

/// Tokens consecutive windows of a context share: Hugging Face's `doc_stride`
/// (128) where the window is at least 384 tokens, else a third of the window.
pub fn default_stride(tokens: usize) -> usize {
    128.min(tokens / 3)
}

/// The reader of a model of `tokens` ids padded with `pad`.
fn reader(vocabulary: &Vocabulary, tokens: usize, pad: u32, stride: Option<usize>) -> Result<QaReader> {
    QaReader::new(vocabulary, tokens, stride.unwrap_or(default_stride(tokens)), pad)
}

/// A question answerer's test and validation questions with their windows,
/// read once with the data: what scoring its answers needs.
pub struct AnswerSplits {
    /// The test questions.
    pub test: Questions,
    /// The validation questions: a validation file's, or those held out of the
    /// training questions.
    pub validation: Option<Questions>,
    /// Whether the validation questions were held out of the training ones.
    pub held_out: bool,
}

/// The questions at `path` as a question answerer's dataset (each split's
/// windows, [`wgml::data::squad`]) padded with `pad` (the model's Embedding's
/// `mask_id`), with a line on what was read; and the test and validation
/// questions, to score the answers. Without a validation file, the last
/// `hold_out` of the training questions (as Keras takes the last samples)
/// are the validation questions, all their windows with them.
pub fn read_answer_data(
    path: &Path,
    sample_shape: &[usize],
    vocabulary: &Vocabulary,
    pad: Option<u32>,
    (stride, hold_out): (Option<usize>, f64),
) -> Result<(Dataset, AnswerSplits)> {
    let pad = pad.ok_or_else(|| {
        Error::invalid("a question answerer's texts are padded: its Embedding needs a mask_id")
    })?;
    let &[tokens] = sample_shape else {
        return Err(Error::invalid(format!(
            "questions are read as token ids [T], but the model takes samples of {sample_shape:?}"
        )));
    };
    let mut splits = read_splits(path)?;
    // A negative share reaches held_out_questions, which refuses it.
    let held_out = splits.validation.is_none() && hold_out != 0.0;
    if held_out {
        splits.validation = held_out_questions(&mut splits.train, hold_out)?;
    }
    let reader = reader(vocabulary, tokens, pad, stride)?;
    let features = |examples: &[QaExample]| reader.features(examples).map_err(|e| in_file(path, e));
    let (train, test) = (features(&splits.train)?, features(&splits.test)?);
    let validation = splits.validation.as_deref().map(features).transpose()?;
    let cut = train.answers_cut + test.answers_cut;
    let unanswerable = splits.has_unanswerable();
    println!(
        "questions read as {}: {} training questions in {} windows, {} test questions in {} windows{} \
         ({} tokens each, consecutive windows sharing {}, padded with id {pad}){}{}",
        vocabulary.describe(),
        splits.train.len(),
        train.features.len(),
        splits.test.len(),
        test.features.len(),
        validation.as_ref().map_or(String::new(), |v| format!(
            ", {} validation questions in {} windows{}",
            splits.validation.as_ref().map_or(0, Vec::len),
            v.features.len(),
            if held_out {
                format!(" (the last {hold_out} of the training questions)")
            } else {
                String::new()
            }
        )),
        tokens,
        reader.stride,
        if unanswerable {
            "; some questions have no answer (SQuAD 2.0)"
        } else {
            ""
        },
        if cut > 0 {
            format!("; {cut} answers longer than a window, trained as none")
        } else {
            String::new()
        }
    );
    let questions = |examples: Vec<QaExample>, windows: QaFeatures| Questions {
        examples,
        windows,
        tokens,
        unanswerable,
    };
    let test = questions(splits.test, test);
    let validation = splits.validation.zip(validation).map(|(e, w)| questions(e, w));
    let dataset = Dataset {
        name: path.display().to_string(),
        sample_shape: sample_shape.to_vec(),
        train: train.split(tokens),
        test: test.split(),
        validation: validation.as_ref().map(Questions::split),
        class_names: Vec::new(),
    };
    let held_out = held_out && validation.is_some();
    Ok((
        dataset,
        AnswerSplits {
            test,
            validation,
            held_out,
        },
    ))
}

/// The last `share` of `train` (rounded down, as Keras' `validation_split`),
/// taken out as validation questions; `None` when that is none of them.
fn held_out_questions(train: &mut Vec<QaExample>, share: f64) -> Result<Option<Vec<QaExample>>> {
    if !(0.0..1.0).contains(&share) {
        return Err(Error::invalid(format!(
            "validation split {share} is outside [0, 1)"
        )));
    }
    let n = train.len();
    let n_val = (n as f64 * share).floor() as usize;
    if n_val == n && n > 0 {
        return Err(Error::invalid(format!(
            "validation split {share} leaves no training questions out of {n}"
        )));
    }
    Ok((n_val > 0).then(|| train.split_off(n - n_val)))
}

fn in_file(path: &Path, e: Error) -> Error {
    Error::Data {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// Prints `a`: exact match and F1, and SQuAD 2.0's split by answerability.
pub fn print_answer_scores(a: &AnswerScores) {
    println!(
        "answers: exact match {:.2}, F1 {:.2} ({} questions)",
        a.exact_match, a.f1, a.total
    );
    for (what, part) in [("with an answer", &a.answerable), ("without", &a.unanswerable)] {
        if let Some(p) = part {
            println!(
                "  {what}: exact match {:.2}, F1 {:.2} ({} questions)",
                p.exact_match, p.f1, p.total
            );
        }
    }
}

/// `wgml predict` for a question answerer: the questions of `files` (SQuAD's
/// JSON, or JSON Lines of `question` and `context`, `id` and `answers`
/// optional) answered as JSON Lines (`id`, `answer`, its characters `start`
/// and `end` in the context, `score`: its probability among the candidates),
/// to `output` or standard output. Questions may go unanswered ("") when
/// `unanswerable`.
pub fn answer_questions(
    ctx: &wgml::Context,
    model: &mut wgml::nn::Model,
    vocabulary: &Vocabulary,
    files: &[PathBuf],
    output: Option<&PathBuf>,
    stride: Option<usize>,
    unanswerable: bool,
) -> Result<ExitCode> {
    let (&[tokens], Some(pad)) = (model.spec.input_shape(), model.spec.padding_id()) else {
        return Err(Error::invalid("a question answerer reads padded token ids [T]"));
    };
    let reader = reader(vocabulary, tokens, pad, stride)?;
    let mut examples = Vec::new();
    for f in files {
        examples.extend(read_examples(f)?);
    }
    let questions = Questions {
        windows: reader.features(&examples)?,
        examples,
        tokens,
        unanswerable,
    };
    let logits = model.predict_logits(ctx, &questions.split().x, questions.len())?;
    let predicted = questions.answers(&logits);
    let mut out: Box<dyn Write> = match output {
        Some(path) => Box::new(std::io::BufWriter::new(std::fs::File::create(path).map_err(
            |source| Error::Io {
                path: path.display().to_string(),
                source,
            },
        )?)),
        None => Box::new(std::io::stdout().lock()),
    };
    let io = |source| Error::Io {
        path: output.map_or("standard output".into(), |p| p.display().to_string()),
        source,
    };
    for p in &predicted {
        let line: Value = json!({
            "id": p.id,
            "answer": p.answer,
            "start": p.span.map(|s| s.0),
            "end": p.span.map(|s| s.1),
            "score": p.probability,
        });
        writeln!(out, "{line}").map_err(io)?;
    }
    out.flush().map_err(io)?;
    if let Some(path) = output {
        eprintln!("{} answers written to {}", predicted.len(), path.display());
    }
    Ok(ExitCode::SUCCESS)
}
