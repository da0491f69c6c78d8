//! Extractive question answering data: questions about a context whose answer
//! is a span of it, as SQuAD (1.1 and 2.0, whose unanswerable questions have
//! no answer) publishes them.
//!
//! ```text
//! FILE                             one file: every tenth example is the test split
//! DIR/train.EXT  DIR/test.EXT      split by file; DIR/validation, valid, val or
//!   (DIR/validation.EXT)           dev is the validation split, or the test
//!                                  split where there is no test file (SQuAD's
//!                                  train-v1.1.json and dev-v1.1.json)
//! ```
//!
//! A file is SQuAD's JSON (`{"data": [{"paragraphs": [{"context", "qas": [{"id",
//! "question", "answers": [{"text", "answer_start"}]}]}]}]}`) or JSON Lines as
//! Hugging Face's `Dataset.to_json` writes the `squad` datasets (`id`,
//! `question`, `context`, `answers: {"text": [...], "answer_start": [...]}`).
//! `answer_start` counts characters, as Python does.
//!
//! [`QaReader`] reads an example as `run_qa.py`'s `prepare_train_features` and
//! `prepare_validation_features` do: the question, stripped of leading spaces,
//! and the context as `tokenizer(question, context, truncation="only_second",
//! max_length=T, stride=S, return_overflowing_tokens=True,
//! return_offsets_mapping=True, padding="max_length")` reads them, one
//! feature per window of the context, consecutive windows sharing S tokens.
//! A feature's labels are the tokens where the first answer starts and ends,
//! or the `[CLS]` token's position (0) where the window does not hold the whole
//! answer or there is none. One difference: where the answer's first token is
//! the window's last context token, Hugging Face's search runs on past the
//! context into `[SEP]` and the padding (their offsets are 0) and labels the
//! window's last position; wgml labels the answer's token.

use std::path::Path;

use serde_json::Value;
use tokenizers::utils::truncation::{TruncationDirection, TruncationParams, TruncationStrategy};

use crate::data::split_files::{every_nth, split_file, validation_file};
use crate::data::text::Vocabulary;
use crate::data::{Split, Targets};
use crate::error::{Error, Result};

/// Every how many examples of a single file one goes to the test split.
const TEST_EVERY: usize = 10;

/// One answer of a question: its text and where it starts in the context, in
/// characters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// The answer's text.
    pub text: String,
    /// Its first character's index in the context.
    pub start: usize,
}

/// A question about a context.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QaExample {
    /// The question's id (SQuAD's; the line or position where the data has none).
    pub id: String,
    /// The question.
    pub question: String,
    /// The text the answer is taken from.
    pub context: String,
    /// The answers the data gives (several annotators' in SQuAD's evaluation
    /// splits; the first is trained on); none for an unanswerable question.
    pub answers: Vec<Answer>,
}

impl QaExample {
    /// The context's characters `start..end` (indices as Python counts them),
    /// clamped to the context.
    pub fn context_span(&self, start: usize, end: usize) -> &str {
        let byte = |char_index: usize| {
            self.context
                .char_indices()
                .nth(char_index)
                .map_or(self.context.len(), |(b, _)| b)
        };
        let (a, b) = (byte(start), byte(end.max(start)));
        &self.context[a..b]
    }
}

/// The examples of the training, test and (maybe) validation splits.
#[derive(Clone, Debug, Default)]
pub struct QaSplits {
    /// Trained on.
    pub train: Vec<QaExample>,
    /// Evaluated on at the end.
    pub test: Vec<QaExample>,
    /// Evaluated on after each epoch, when the data has one.
    pub validation: Option<Vec<QaExample>>,
}

impl QaSplits {
    /// Whether some question has no answer (SQuAD 2.0): answers are then
    /// chosen against the empty one, as `--version_2_with_negative` does.
    pub fn has_unanswerable(&self) -> bool {
        self.train
            .iter()
            .chain(&self.test)
            .chain(self.validation.iter().flatten())
            .any(|e| e.answers.is_empty())
    }
}

fn err(path: &Path, message: String) -> Error {
    Error::Data {
        path: path.display().to_string(),
        message,
    }
}

/// Whether the file at `path` looks like question-answering data: SQuAD's JSON
/// or JSON Lines whose first row has a `context` and a `question` (a folder:
/// its train file does).
pub fn is_squad(path: &Path) -> bool {
    let file = if path.is_dir() {
        match split_file(path, "train") {
            Some(f) => f,
            None => return false,
        }
    } else {
        path.to_path_buf()
    };
    let Ok(mut f) = std::fs::File::open(&file) else {
        return false;
    };
    let mut head = vec![0u8; 1 << 16];
    let n = std::io::Read::read(&mut f, &mut head).unwrap_or(0);
    let head = String::from_utf8_lossy(&head[..n]);
    let first = head.lines().next().unwrap_or("");
    (head.trim_start().starts_with('{') && head.contains("\"paragraphs\""))
        || (first.contains("\"context\"") && first.contains("\"question\""))
}

/// The examples in the file at `path` (see the module docs).
pub fn read_examples(path: &Path) -> Result<Vec<QaExample>> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })?;
    let examples = match serde_json::from_str::<Value>(&text) {
        Ok(json) if json.get("data").is_some() => squad_json(&json).map_err(|m| err(path, m))?,
        _ => json_lines(path, &text)?,
    };
    for e in &examples {
        let chars = e.context.chars().count();
        if let Some(a) = e
            .answers
            .iter()
            .find(|a| a.start + a.text.chars().count() > chars)
        {
            return Err(err(
                path,
                format!(
                    "question '{}': answer '{}' at character {} runs past its context's {chars} \
                     characters (answer_start counts characters of the context)",
                    e.id, a.text, a.start
                ),
            ));
        }
    }
    if examples.is_empty() {
        return Err(err(path, "holds no questions".into()));
    }
    Ok(examples)
}

/// SQuAD's JSON: articles of paragraphs of questions.
fn squad_json(json: &Value) -> std::result::Result<Vec<QaExample>, String> {
    let articles = json
        .get("data")
        .and_then(Value::as_array)
        .ok_or("its 'data' is not a list of articles")?;
    let mut out = Vec::new();
    for (a, article) in articles.iter().enumerate() {
        let paragraphs = article
            .get("paragraphs")
            .and_then(Value::as_array)
            .ok_or_else(|| format!("article {a} has no 'paragraphs' list"))?;
        for (p, paragraph) in paragraphs.iter().enumerate() {
            let context = paragraph
                .get("context")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("article {a}, paragraph {p} has no 'context' text"))?;
            let questions = paragraph
                .get("qas")
                .and_then(Value::as_array)
                .ok_or_else(|| format!("article {a}, paragraph {p} has no 'qas' list"))?;
            for (q, qa) in questions.iter().enumerate() {
                let place = format!("article {a}, paragraph {p}, question {q}");
                let question = qa
                    .get("question")
                    .and_then(Value::as_str)
                    .ok_or_else(|| format!("{place} has no 'question' text"))?;
                let id = qa
                    .get("id")
                    .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
                    .unwrap_or_else(|| out.len().to_string());
                let impossible = qa.get("is_impossible").and_then(Value::as_bool) == Some(true);
                let answers = match qa.get("answers") {
                    _ if impossible => Vec::new(),
                    None | Some(Value::Null) => Vec::new(),
                    Some(list) => answer_list(list).map_err(|m| format!("{place}: {m}"))?,
                };
                out.push(QaExample {
                    id,
                    question: question.into(),
                    context: context.into(),
                    answers,
                });
            }
        }
    }
    Ok(out)
}

/// Answers given as a list of `{text, answer_start}` (SQuAD's JSON) or as
/// `{text: [...], answer_start: [...]}` (Hugging Face's datasets).
fn answer_list(v: &Value) -> std::result::Result<Vec<Answer>, String> {
    let start = |s: &Value| -> std::result::Result<usize, String> {
        s.as_u64()
            .map(|n| n as usize)
            .ok_or_else(|| format!("answer_start {s} is not a character index"))
    };
    let text = |t: &Value| -> std::result::Result<String, String> {
        t.as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("answer text {t} is not text"))
    };
    match v {
        Value::Array(items) => items
            .iter()
            .map(|a| {
                Ok(Answer {
                    text: text(a.get("text").ok_or("an answer has no 'text'")?)?,
                    start: start(a.get("answer_start").ok_or("an answer has no 'answer_start'")?)?,
                })
            })
            .collect(),
        Value::Object(m) => {
            let (Some(Value::Array(texts)), Some(Value::Array(starts))) =
                (m.get("text"), m.get("answer_start"))
            else {
                return Err("'answers' has no 'text' and 'answer_start' lists".into());
            };
            if texts.len() != starts.len() {
                return Err(format!(
                    "'answers' has {} texts but {} answer_starts",
                    texts.len(),
                    starts.len()
                ));
            }
            texts
                .iter()
                .zip(starts)
                .map(|(t, s)| {
                    Ok(Answer {
                        text: text(t)?,
                        start: start(s)?,
                    })
                })
                .collect()
        }
        other => Err(format!("'answers' is {other}, not a list of answers")),
    }
}

/// JSON Lines of `id`, `question`, `context` and `answers`.
fn json_lines(path: &Path, text: &str) -> Result<Vec<QaExample>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |m: String| err(path, format!("line {}: {m}", i + 1));
        let row: Value = serde_json::from_str(line).map_err(|e| {
            bad(format!(
                "is not JSON ({e}); question-answering data is SQuAD's JSON or JSON Lines of id, \
                 question, context and answers"
            ))
        })?;
        let field = |name: &str| {
            row.get(name)
                .and_then(Value::as_str)
                .ok_or_else(|| bad(format!("has no '{name}' text")))
        };
        let answers = match row.get("answers") {
            None | Some(Value::Null) => Vec::new(),
            Some(list) => answer_list(list).map_err(&bad)?,
        };
        out.push(QaExample {
            id: row
                .get("id")
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
                .unwrap_or_else(|| format!("line {}", i + 1)),
            question: field("question")?.into(),
            context: field("context")?.into(),
            answers,
        });
    }
    Ok(out)
}

/// The questions and contexts of the training split at `path` (to train a
/// tokenizer on), each context once.
pub fn training_texts(path: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for e in read_splits(path)?.train {
        if out.last() != Some(&e.context) {
            out.push(e.context.clone());
        }
        out.push(e.question);
    }
    Ok(out)
}

/// The splits at `path` (see the module docs).
pub fn read_splits(path: &Path) -> Result<QaSplits> {
    if path.is_file() {
        let (train, test) = every_nth(read_examples(path)?, TEST_EVERY);
        return Ok(QaSplits {
            train,
            test,
            validation: None,
        });
    }
    let train = split_file(path, "train").ok_or_else(|| {
        err(
            path,
            "has no train file: a folder of questions holds train and test (or dev) files, SQuAD's \
             JSON or JSON Lines"
                .into(),
        )
    })?;
    let validation = validation_file(path)?;
    let (test, validation) = match (split_file(path, "test"), validation) {
        (Some(test), validation) => (test, validation),
        (None, Some(dev)) => (dev, None),
        (None, None) => {
            return Err(err(
                path,
                "has no test or dev file to evaluate on: a folder of questions holds train and test \
                 (or dev) files"
                    .into(),
            ));
        }
    };
    Ok(QaSplits {
        train: read_examples(&train)?,
        test: read_examples(&test)?,
        validation: validation.map(|v| read_examples(&v)).transpose()?,
    })
}

/// One window of an example's context, as the model reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Feature {
    /// Which example (its index in the list read).
    pub example: usize,
    /// The token ids: `[CLS] question [SEP] window [SEP]`, padded to T.
    pub ids: Vec<u32>,
    /// The tokens where the answer starts and ends (the `[CLS]` token's
    /// position where this window does not hold it).
    pub start: u32,
    /// See `start`.
    pub end: u32,
    /// Each position's characters of the context, `None` outside it (the
    /// question, the frame, the padding).
    pub offsets: Vec<Option<(usize, usize)>>,
}

/// The features of a list of examples: what the model trains on and what
/// picking answers needs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QaFeatures {
    /// The features, in the order of their examples.
    pub features: Vec<Feature>,
    /// Examples whose windows missed part of their answer (labelled `[CLS]`
    /// in those windows).
    pub answers_cut: usize,
}

impl QaFeatures {
    /// The features as a split: ids `[F, T]`, two labels each (start, end), of
    /// `T` classes (the positions).
    pub fn split(&self, tokens: usize) -> Split {
        Split {
            x: self
                .features
                .iter()
                .flat_map(|f| f.ids.iter().map(|&id| id as f32))
                .collect(),
            sample_len: tokens,
            y: Targets::Classes {
                labels: self.features.iter().flat_map(|f| [f.start, f.end]).collect(),
                classes: tokens,
                positions: 2,
            },
        }
    }
}

/// Reads examples into features of `T` tokens (see the module docs).
pub struct QaReader {
    tokenizer: tokenizers::Tokenizer,
    /// The tokenizer without its post-processor.
    unframed: tokenizers::Tokenizer,
    /// T, the window.
    pub tokens: usize,
    /// Tokens consecutive windows share.
    pub stride: usize,
    pad: u32,
    /// The frame's tokens around a question and its context.
    added: usize,
    /// The id of `[CLS]` (`<s>`), the unanswerable label's token.
    cls: Option<u32>,
}

impl QaReader {
    /// A reader of `vocabulary` (a tokenizer that joins pairs) into windows of
    /// `tokens` ids padded with `pad`, consecutive windows sharing `stride`
    /// tokens (Hugging Face's `doc_stride`).
    pub fn new(vocabulary: &Vocabulary, tokens: usize, stride: usize, pad: u32) -> Result<QaReader> {
        let Vocabulary::Tokenizer(t) = vocabulary else {
            return Err(Error::invalid(
                "questions and contexts need a tokenizer that joins a pair of texts (BERT's [SEP], \
                 RoBERTa's </s></s>); bytes do not",
            ));
        };
        let frame = vocabulary.pair_frame()?.ok_or_else(|| {
            Error::invalid(format!(
                "the model reads text as {}, which puts nothing between a question and its context; \
                 answer questions with a model whose tokenizer joins pairs (BERT's [SEP], RoBERTa's \
                 </s></s>)",
                vocabulary.describe()
            ))
        })?;
        let added = frame.before.len() + frame.between.len() + frame.after.len();
        let mut tokenizer = t.tokenizer.clone();
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(None)
            .map_err(|e| Error::invalid(format!("the tokenizer's truncation: {e}")))?;
        let mut unframed = tokenizer.clone();
        unframed.with_post_processor(None::<tokenizers::processors::PostProcessorWrapper>);
        Ok(QaReader {
            tokenizer,
            unframed,
            tokens,
            stride,
            pad,
            added,
            cls: frame.before.first().copied(),
        })
    }

    /// The features of `examples` (see the module docs); errors name the
    /// question that does not fit.
    pub fn features(&self, examples: &[QaExample]) -> Result<QaFeatures> {
        let mut out = QaFeatures::default();
        for (i, e) in examples.iter().enumerate() {
            let features = self
                .example(i, e)
                .map_err(|m| Error::invalid(format!("question '{}': {m}", e.id)))?;
            let answered = features.iter().any(|f| f.start != 0 || f.end != 0);
            if !e.answers.is_empty() && !answered {
                out.answers_cut += 1;
            }
            out.features.extend(features);
        }
        Ok(out)
    }

    /// Example `e` (index `index`) as features.
    fn example(&self, index: usize, e: &QaExample) -> std::result::Result<Vec<Feature>, String> {
        let question = e.question.trim_start();
        // Tokenized without the post-processor, which frames (and trims the
        // offsets of) each window once it is cut, as the tokenizer's own
        // truncation does.
        let encode = |text: &str| {
            self.unframed
                .encode_char_offsets(text, false)
                .map_err(|m| format!("tokenizing: {m}"))
        };
        let asked = encode(question)?;
        let room = self.tokens.saturating_sub(self.added + asked.len());
        if room <= self.stride {
            return Err(format!(
                "its question takes {} tokens, which with the {} of the frame leave {room} of the \
                 window's {} for the context, not more than the {} consecutive windows share: give \
                 a smaller --doc-stride or a longer window, or shorten the question",
                asked.len(),
                self.added,
                self.tokens,
                self.stride
            ));
        }
        // The context cut into windows as the tokenizer's truncation cuts it
        // (`only_second`, with the stride), each then framed with the question:
        // what Hugging Face's overflowing encodings hold.
        let (asked, context) = tokenizers::utils::truncation::truncate_encodings(
            asked,
            Some(encode(&e.context)?),
            &TruncationParams {
                direction: TruncationDirection::Right,
                max_length: self.tokens - self.added,
                strategy: TruncationStrategy::OnlySecond,
                stride: self.stride,
            },
        )
        .map_err(|m| format!("cutting the context into windows: {m}"))?;
        let mut parts = Vec::new();
        if let Some(mut c) = context {
            let rest = c.take_overflowing();
            parts.push(c);
            parts.extend(rest);
        }
        let windows = parts
            .into_iter()
            .map(|part| {
                self.tokenizer
                    .post_process(asked.clone(), Some(part), true)
                    .map_err(|m| format!("framing a window: {m}"))
            })
            .collect::<std::result::Result<Vec<_>, String>>()?;
        let answer = e
            .answers
            .first()
            .map(|a| (a.start, a.start + a.text.chars().count()));
        windows
            .iter()
            .map(|w| {
                let mut ids = w.get_ids().to_vec();
                if ids.len() > self.tokens {
                    return Err(format!(
                        "the tokenizer made a window of {} tokens, more than {}",
                        ids.len(),
                        self.tokens
                    ));
                }
                ids.resize(self.tokens, self.pad);
                let sequence = w.get_sequence_ids();
                let mut offsets: Vec<Option<(usize, usize)>> = sequence
                    .iter()
                    .zip(w.get_offsets())
                    .map(|(s, &o)| (*s == Some(1)).then_some(o))
                    .collect();
                offsets.resize(self.tokens, None);
                let cls = self
                    .cls
                    .and_then(|c| ids.iter().position(|&id| id == c))
                    .unwrap_or(0) as u32;
                let (start, end) = answer
                    .and_then(|(a, b)| span_of(&offsets, a, b))
                    .map_or((cls, cls), |(s, t)| (s as u32, t as u32));
                Ok(Feature {
                    example: index,
                    ids,
                    start,
                    end,
                    offsets,
                })
            })
            .collect()
    }
}

/// The first and last positions of the tokens holding characters `a..b` of
/// the context, as `prepare_train_features` finds them (see the module docs);
/// `None` where the window's context does not hold all of them.
fn span_of(offsets: &[Option<(usize, usize)>], a: usize, b: usize) -> Option<(usize, usize)> {
    let context: Vec<usize> = (0..offsets.len()).filter(|&i| offsets[i].is_some()).collect();
    let (&lo, &hi) = (context.first()?, context.last()?);
    let at = |i: usize| offsets[i].unwrap_or((0, 0));
    if !(at(lo).0 <= a && at(hi).1 >= b) {
        return None;
    }
    let mut start = lo;
    while start <= hi && at(start).0 <= a {
        start += 1;
    }
    let mut end = hi;
    while end > lo && at(end).1 >= b {
        end -= 1;
    }
    // The loop stops one token before the answer's last, unless that is the
    // context's first token.
    let end = if at(end).1 >= b { end } else { end + 1 };
    Some((start - 1, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn squad_json_and_json_lines_read_alike() {
        let json = r#"{"version": "v2.0", "data": [{"title": "T", "paragraphs": [
            {"context": "Ñandú runs fast.", "qas": [
                {"id": "a", "question": "Who runs?", "answers": [{"text": "Ñandú", "answer_start": 0}]},
                {"id": "b", "question": "Why?", "answers": [], "is_impossible": true,
                 "plausible_answers": [{"text": "fast", "answer_start": 11}]}]}]}]}"#;
        let lines = concat!(
            r#"{"id": "a", "question": "Who runs?", "context": "Ñandú runs fast.", "answers": {"text": ["Ñandú"], "answer_start": [0]}}"#,
            "\n",
            r#"{"id": "b", "question": "Why?", "context": "Ñandú runs fast.", "answers": {"text": [], "answer_start": []}}"#,
            "\n"
        );
        let dir = std::env::temp_dir().join(format!("wgml-squad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("train-v2.0.json"), json).unwrap();
        std::fs::write(dir.join("dev.jsonl"), lines).unwrap();
        assert!(is_squad(&dir) && is_squad(&dir.join("dev.jsonl")));
        let splits = read_splits(&dir).unwrap();
        assert_eq!(splits.train, splits.test);
        assert!(splits.validation.is_none() && splits.has_unanswerable());
        let e = &splits.train[0];
        assert_eq!(e.context_span(0, 5), "Ñandú");
        assert_eq!(e.context_span(11, 99), "fast.");
        let bad = lines.replace("\"answer_start\": [0]", "\"answer_start\": [14]");
        std::fs::write(dir.join("dev.jsonl"), bad).unwrap();
        let e = read_splits(&dir).unwrap_err().to_string();
        assert!(
            e.contains("dev.jsonl") && e.contains("runs past its context's 16 characters"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn answer_spans_are_found_as_run_qa_finds_them() {
        // [CLS] q [SEP] "ab" "cd" "ef" [SEP] pad: characters 0-2, 3-5, 6-8.
        let o = [
            None,
            None,
            None,
            Some((0, 2)),
            Some((3, 5)),
            Some((6, 8)),
            None,
            None,
        ];
        assert_eq!(span_of(&o, 3, 5), Some((4, 4)));
        assert_eq!(span_of(&o, 0, 8), Some((3, 5)));
        assert_eq!(span_of(&o, 4, 7), Some((4, 5)));
        assert_eq!(span_of(&o, 0, 1), Some((3, 3)));
        // The window's last token.
        assert_eq!(span_of(&o, 6, 8), Some((5, 5)));
        // Outside the window.
        assert_eq!(span_of(&o, 6, 9), None);
        assert_eq!(span_of(&[None, None], 0, 1), None);
    }
}
