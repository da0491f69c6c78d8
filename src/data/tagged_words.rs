//! Token classification data: sentences of words, each word tagged (named
//! entities in IOB2 as CoNLL-2003 and WNUT-17 tag them, parts of speech,
//! chunks), as the CoNLL shared tasks and Hugging Face datasets publish them.
//!
//! ```text
//! FILE                          one file: every tenth sentence is the test
//!                               split; no validation split
//! DIR/train.EXT  DIR/test.EXT   split by file; DIR/validation, valid, val or
//!   (DIR/validation.EXT)        dev becomes the validation split
//! ```
//!
//! A `.jsonl` or `.json` file is JSON Lines (`Dataset.to_json`), one sentence
//! per line: its words in `tokens` (else `words`) and their tags in `ner_tags`
//! (else `tags`, `labels`, `pos_tags`, `chunk_tags`), names (`"B-PER"`) or
//! class numbers. Any other file is CoNLL text: a word per line with its tag in
//! the last of its whitespace-separated columns (CoNLL-2003's four, WNUT's
//! two), a blank line between sentences, `-DOCSTART-` lines left out.
//!
//! The classes are the distinct tags in sorted order (numerically when every
//! tag is a whole number, as Hugging Face's `run_ner` sorts them). Class
//! numbers take their names from a folder's `dataset_info.json` (what
//! `Dataset.save_to_disk` writes: `features.ner_tags.feature.names`), or from
//! the checkpoint a model starts from (its `id2label`). Each
//! sentence is read as Hugging Face's `tokenizer(words,
//! is_split_into_words=True, truncation=True)` reads it
//! ([`Vocabulary::encode_words`]): the words' tokens framed by the tokenizer
//! (`[CLS] … [SEP]`), cut to the model's T tokens and padded with `pad`. A
//! word's first token carries its tag; its other tokens, the frame and the
//! padding carry [`NO_LABEL`] (Hugging Face's -100), so the loss, accuracy and
//! entity scores count each word once. Words cut off by the window are not
//! read (the report counts the sentences cut). Errors name the file and line.

use std::path::Path;

use serde_json::Value;

use crate::data::split_files::{every_nth, split_file, validation_file};
use crate::data::text::Vocabulary;
use crate::data::text_classes::TextClassesReport;
use crate::data::{Dataset, NO_LABEL, Split, Targets};
use crate::error::{Error, Result};

/// Column names taken as a JSON line's words, in order of preference.
const WORD_COLUMNS: [&str; 2] = ["tokens", "words"];
/// Column names taken as its tags, in order of preference.
const TAG_COLUMNS: [&str; 5] = ["ner_tags", "tags", "labels", "pos_tags", "chunk_tags"];
/// Every how many sentences of a single file one goes to the test split.
const TEST_EVERY: usize = 10;

/// A sentence: its words and their tags, and where it starts (a line number).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sentence {
    /// The words.
    pub words: Vec<String>,
    /// Each word's tag (empty where the data gives none, to tag).
    pub tags: Vec<String>,
    /// The line the sentence starts on, 1-based.
    pub line: usize,
}

fn err(path: &Path, message: String) -> Error {
    Error::Data {
        path: path.display().to_string(),
        message,
    }
}

fn is_json(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("jsonl") || e.eq_ignore_ascii_case("json"))
}

/// A tag as read: trimmed, a whole number in any notation written as one.
fn normal_tag(tag: &str) -> String {
    let tag = tag.trim();
    match tag.parse::<f64>() {
        Ok(v) if v.is_finite() && v.fract() == 0.0 && v.abs() < 9.0e15 => format!("{}", v as i64),
        _ => tag.to_string(),
    }
}

/// The sentences of the file at `path`. With `need_tags`, a word without a tag
/// is an error; without, CoNLL lines of one column are words to tag.
pub fn read_sentences(path: &Path, need_tags: bool) -> Result<Vec<Sentence>> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })?;
    let text = String::from_utf8(bytes).map_err(|e| err(path, format!("is not UTF-8 text: {e}")))?;
    let text = text.trim_start_matches('\u{feff}');
    let sentences = if is_json(path) {
        json_sentences(path, text, need_tags)?
    } else {
        conll_sentences(path, text, need_tags)?
    };
    if sentences.is_empty() {
        return Err(err(path, "holds no sentence of words".into()));
    }
    Ok(sentences)
}

/// CoNLL text: a word per line, its tag last; blank lines end sentences.
fn conll_sentences(path: &Path, text: &str, need_tags: bool) -> Result<Vec<Sentence>> {
    let mut out = Vec::new();
    let mut current = Sentence {
        words: Vec::new(),
        tags: Vec::new(),
        line: 1,
    };
    for (i, line) in text.lines().enumerate() {
        let columns: Vec<&str> = line.split_whitespace().collect();
        if columns.is_empty() || columns[0] == "-DOCSTART-" {
            if !current.words.is_empty() {
                out.push(std::mem::take(&mut current));
            }
            current.line = i + 2;
            continue;
        }
        let tag = match columns.as_slice() {
            [_] if need_tags => {
                return Err(err(
                    path,
                    format!(
                        "line {}: '{line}' has one column; each line is a word and its tag (the last \
                         column), a blank line between sentences",
                        i + 1
                    ),
                ));
            }
            [_] => String::new(),
            [.., last] => normal_tag(last),
            [] => unreachable!("an empty line was handled above"),
        };
        current.words.push(columns[0].to_string());
        current.tags.push(tag);
    }
    if !current.words.is_empty() {
        out.push(current);
    }
    Ok(out)
}

/// JSON Lines: a sentence per line.
fn json_sentences(path: &Path, text: &str, need_tags: bool) -> Result<Vec<Sentence>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = |m: String| err(path, format!("line {}: {m}", i + 1));
        let row: serde_json::Map<String, Value> =
            serde_json::from_str(line).map_err(|e| at(format!("is not a JSON object: {e}")))?;
        let column = |names: &[&'static str]| names.iter().find_map(|&n| row.get(n).map(|v| (n, v)));
        let (_, words) = column(&WORD_COLUMNS).ok_or_else(|| {
            at(format!(
                "has no words: give them as an array in '{}' (keys: {:?})",
                WORD_COLUMNS[0],
                row.keys().collect::<Vec<_>>()
            ))
        })?;
        let words: Vec<String> = words
            .as_array()
            .and_then(|a| a.iter().map(|w| w.as_str().map(str::to_string)).collect())
            .ok_or_else(|| at("its words are not an array of strings".into()))?;
        let tags: Vec<String> = match column(&TAG_COLUMNS) {
            Some((name, tags)) => tags
                .as_array()
                .and_then(|a| {
                    a.iter()
                        .map(|t| match t {
                            Value::String(s) => Some(normal_tag(s)),
                            Value::Number(n) => Some(normal_tag(&n.to_string())),
                            _ => None,
                        })
                        .collect()
                })
                .ok_or_else(|| {
                    at(format!(
                        "its '{name}' is not an array of tags (strings or numbers)"
                    ))
                })?,
            None if need_tags => {
                return Err(at(format!(
                    "has no tags: give them as an array in '{}' (or {:?})",
                    TAG_COLUMNS[0],
                    &TAG_COLUMNS[1..]
                )));
            }
            None => vec![String::new(); words.len()],
        };
        if tags.len() != words.len() {
            return Err(at(format!(
                "has {} words but {} tags; each word needs one",
                words.len(),
                tags.len()
            )));
        }
        if words.is_empty() {
            continue;
        }
        out.push(Sentence {
            words,
            tags,
            line: i + 1,
        });
    }
    Ok(out)
}

/// The words of the training split at `path`, one string per sentence (words
/// joined by spaces), to train a tokenizer on.
pub fn training_texts(path: &Path) -> Result<Vec<String>> {
    let (train, _, _) = read_splits(path)?;
    Ok(train.into_iter().map(|s| s.words.join(" ")).collect())
}

/// The training, test and (maybe) validation sentences.
type Splits = (Vec<Sentence>, Vec<Sentence>, Option<Vec<Sentence>>);

/// The training, test and validation sentences at `path` (see the module docs).
fn read_splits(path: &Path) -> Result<Splits> {
    if path.is_file() {
        let (train, test) = every_nth(read_sentences(path, true)?, TEST_EVERY);
        return Ok((train, test, None));
    }
    let file = |name: &str| {
        split_file(path, name).ok_or_else(|| {
            err(
                path,
                format!(
                    "has no {name} file: a folder of tagged words holds train and test files (CoNLL \
                     text, or .jsonl), and maybe a validation file"
                ),
            )
        })
    };
    let validation = validation_file(path)?
        .map(|f| read_sentences(&f, true))
        .transpose()?;
    Ok((
        read_sentences(&file("train")?, true)?,
        read_sentences(&file("test")?, true)?,
        validation,
    ))
}

/// The names of class-numbered tags, from `dataset_info.json` in folder `path`
/// (what `Dataset.save_to_disk` writes beside its data): the `names` of the
/// first tag column its features describe as a sequence of class labels.
/// `None` without such a file or column.
fn tag_names(path: &Path) -> Result<Option<Vec<String>>> {
    let info = path.join("dataset_info.json");
    if !path.is_dir() || !info.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&info).map_err(|source| Error::Io {
        path: info.display().to_string(),
        source,
    })?;
    let json: Value = serde_json::from_str(&text).map_err(|e| err(&info, format!("is not JSON: {e}")))?;
    let names = TAG_COLUMNS.iter().find_map(|c| {
        json.get("features")?
            .get(c)?
            .get("feature")?
            .get("names")?
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|n| n.as_str().map(str::to_string))
                    .collect::<Vec<_>>()
            })
    });
    Ok(names.filter(|n| !n.is_empty()))
}

/// The classes of `tags`: distinct, sorted (numerically when every one is a
/// whole number).
fn classes_of<'a>(tags: impl Iterator<Item = &'a String>) -> Vec<String> {
    let mut classes: Vec<String> = tags.cloned().collect();
    classes.sort();
    classes.dedup();
    if classes.iter().all(|c| c.parse::<i64>().is_ok()) {
        classes.sort_by_key(|c| c.parse::<i64>().unwrap_or(0));
    }
    classes
}

/// Reads sentences into samples of a model's T tokens.
pub struct WordReader<'a> {
    vocabulary: std::borrow::Cow<'a, Vocabulary>,
    frame: (Vec<u32>, Vec<u32>),
    tokens: usize,
    pad: u32,
    sentences: usize,
    truncated: usize,
    total_tokens: u64,
}

impl<'a> WordReader<'a> {
    /// A reader for a model taking `sample_shape` = `[T]` token ids of
    /// `vocabulary` (a tokenizer), padded with `pad`.
    pub fn new(sample_shape: &[usize], vocabulary: &'a Vocabulary, pad: u32) -> Result<WordReader<'a>> {
        let &[tokens] = sample_shape else {
            return Err(Error::invalid(format!(
                "tagged words are read as token ids [T], but the model takes samples of shape \
                 {sample_shape:?}"
            )));
        };
        let frame = vocabulary.document_frame()?;
        if tokens <= frame.0.len() + frame.1.len() {
            return Err(Error::invalid(format!(
                "a window of {tokens} tokens leaves no room for words beside the tokenizer's {} \
                 special tokens",
                frame.0.len() + frame.1.len()
            )));
        }
        if pad as usize >= vocabulary.size() {
            return Err(Error::invalid(format!(
                "the pad id {pad} is not a token of the vocabulary ({} tokens)",
                vocabulary.size()
            )));
        }
        Ok(WordReader {
            vocabulary: vocabulary.for_split_words()?,
            frame,
            tokens,
            pad,
            sentences: 0,
            truncated: 0,
            total_tokens: 0,
        })
    }

    /// `words` as a sample: T token ids (f32) and, for each id, the index of the
    /// word whose first token it is (`None` for the frame, a word's other tokens
    /// and the padding). Counted in the report.
    pub fn sample(&mut self, words: &[String]) -> Result<(Vec<f32>, Vec<Option<usize>>)> {
        let refs: Vec<&str> = words.iter().map(String::as_str).collect();
        let (ids, word_of) = self.vocabulary.encode_words(&refs)?;
        let (before, after) = &self.frame;
        let room = self.tokens - before.len() - after.len();
        let kept = ids.len().min(room);
        let whole = before.len() + ids.len() + after.len();
        self.sentences += 1;
        self.truncated += usize::from(whole > self.tokens);
        self.total_tokens += whole as u64;
        let mut x: Vec<f32> = before.iter().map(|&id| id as f32).collect();
        let mut first: Vec<Option<usize>> = vec![None; before.len()];
        for (i, (&id, &w)) in ids[..kept].iter().zip(&word_of).enumerate() {
            x.push(id as f32);
            first.push((i == 0 || word_of[i - 1] != w).then_some(w as usize));
        }
        x.extend(after.iter().map(|&id| id as f32));
        first.extend(std::iter::repeat_n(None, after.len()));
        x.resize(self.tokens, self.pad as f32);
        first.resize(self.tokens, None);
        Ok((x, first))
    }

    /// What was read.
    pub fn report(&self) -> TextClassesReport {
        TextClassesReport {
            ignored: Vec::new(),
            truncated: self.truncated,
            documents: self.sentences,
            pairs: 0,
            mean_tokens: self.total_tokens as f64 / self.sentences.max(1) as f64,
        }
    }
}

/// Reads the tagged words at `path` as a token classifier's dataset: samples of
/// `sample_shape = [T]` token ids of `vocabulary` padded with `pad`, a label per
/// token (see the module docs). The classes are the tags of every split.
pub fn read_tagged_words(
    path: &Path,
    sample_shape: &[usize],
    vocabulary: &Vocabulary,
    pad: u32,
) -> Result<(Dataset, TextClassesReport)> {
    let (mut train, mut test, mut validation) = read_splits(path)?;
    let numbered = train
        .iter()
        .chain(&test)
        .chain(validation.iter().flatten())
        .all(|s| s.tags.iter().all(|t| t.parse::<usize>().is_ok()));
    if let Some(names) = tag_names(path)?.filter(|_| numbered) {
        for s in train
            .iter_mut()
            .chain(&mut test)
            .chain(validation.iter_mut().flatten())
        {
            for tag in &mut s.tags {
                if let Some(name) = tag.parse::<usize>().ok().and_then(|k| names.get(k)) {
                    *tag = name.clone();
                } else {
                    return Err(err(
                        path,
                        format!(
                            "line {}: tag '{tag}' is not a class number of dataset_info.json's {} tag \
                             names",
                            s.line,
                            names.len()
                        ),
                    ));
                }
            }
        }
    }
    let all = train.iter().chain(&test).chain(validation.iter().flatten());
    let classes = classes_of(all.flat_map(|s| &s.tags));
    if classes.len() < 2 {
        return Err(err(
            path,
            format!("has one tag, {classes:?}: a token classifier needs at least two"),
        ));
    }
    let mut reader = WordReader::new(sample_shape, vocabulary, pad).map_err(|e| err(path, e.to_string()))?;
    let tokens = reader.tokens;
    let mut split = |sentences: &[Sentence], name: &str| -> Result<Split> {
        let (mut x, mut labels) = (Vec::new(), Vec::new());
        for s in sentences {
            let (ids, first) = reader
                .sample(&s.words)
                .map_err(|e| err(path, format!("{name} sentence at line {}: {e}", s.line)))?;
            x.extend(ids);
            labels.extend(first.iter().map(|w| match w {
                Some(w) => classes.iter().position(|c| *c == s.tags[*w]).unwrap_or(0) as u32,
                None => NO_LABEL,
            }));
        }
        Ok(Split {
            x,
            sample_len: tokens,
            y: Targets::Classes {
                labels,
                classes: classes.len(),
                positions: tokens,
            },
        })
    };
    let (train, test, validation) = (
        split(&train, "training")?,
        split(&test, "test")?,
        validation.map(|v| split(&v, "validation")).transpose()?,
    );
    if train.is_empty() || test.is_empty() {
        return Err(err(
            path,
            "needs sentences in both the training and the test split (a single file puts every tenth \
             sentence in the test split)"
                .into(),
        ));
    }
    let name = path.file_stem().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let report = reader.report();
    Ok((
        Dataset {
            name,
            sample_shape: vec![tokens],
            train,
            test,
            validation,
            class_names: classes,
        },
        report,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conll_and_json_lines_read_alike() {
        let conll = "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\nPeter NNP B-NP \
                     B-PER\nBlackburn NNP I-NP I-PER\n";
        let dir = std::env::temp_dir().join(format!("wgml-tagged-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (c, j) = (dir.join("a.conll"), dir.join("a.jsonl"));
        std::fs::write(&c, conll).unwrap();
        std::fs::write(
            &j,
            "{\"tokens\": [\"EU\", \"rejects\"], \"ner_tags\": [\"B-ORG\", \"O\"]}\n\n\
             {\"id\": \"1\", \"tokens\": [\"Peter\", \"Blackburn\"], \"ner_tags\": [\"B-PER\", \"I-PER\"]}\n",
        )
        .unwrap();
        let (a, b) = (
            read_sentences(&c, true).unwrap(),
            read_sentences(&j, true).unwrap(),
        );
        let strip = |v: Vec<Sentence>| -> Vec<(Vec<String>, Vec<String>)> {
            v.into_iter().map(|s| (s.words, s.tags)).collect()
        };
        assert_eq!(a[1].line, 6, "the second sentence starts on line 6");
        assert_eq!(strip(a), strip(b));
        // Errors name the line.
        std::fs::write(&c, "EU B-ORG\nrejects\n").unwrap();
        let e = read_sentences(&c, true).unwrap_err().to_string();
        assert!(e.contains("line 2"), "{e}");
        std::fs::write(&j, "{\"tokens\": [\"EU\"], \"ner_tags\": [1, 2]}\n").unwrap();
        let e = read_sentences(&j, true).unwrap_err().to_string();
        assert!(e.contains("line 1") && e.contains("1 words but 2 tags"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }

    /// Class numbers (conll2003's `ner_tags`) take the names `save_to_disk`
    /// wrote in `dataset_info.json`; a number beyond them is refused by line.
    #[test]
    fn class_numbers_take_the_names_of_dataset_info() {
        let dir = std::env::temp_dir().join(format!("wgml-tag-names-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let line = |tags: &str| format!("{{\"tokens\": [\"EU\", \"rejects\"], \"ner_tags\": {tags}}}\n");
        std::fs::write(dir.join("train.jsonl"), line("[3, 0]").repeat(3)).unwrap();
        std::fs::write(dir.join("test.jsonl"), line("[0, 0]")).unwrap();
        let info = r#"{"features": {"tokens": {"feature": {"dtype": "string"}},
            "ner_tags": {"feature": {"names": ["O", "B-PER", "I-PER", "B-ORG"], "_type": "ClassLabel"},
            "_type": "Sequence"}}}"#;
        std::fs::write(dir.join("dataset_info.json"), info).unwrap();
        assert_eq!(
            tag_names(&dir).unwrap().unwrap(),
            ["O", "B-PER", "I-PER", "B-ORG"]
        );
        let (mut train, ..) = read_splits(&dir).unwrap();
        assert_eq!(
            train.remove(0).tags,
            ["3", "0"],
            "read as numbers, named by read_tagged_words"
        );
        let bert =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("kernels-tests/golden/bert-tiny-cls/tokenizer.json");
        let vocabulary = Vocabulary::from_file(&bert).unwrap();
        let (data, _) = read_tagged_words(&dir, &[8], &vocabulary, 0).unwrap();
        assert_eq!(data.class_names, ["B-ORG", "O"]);
        std::fs::write(dir.join("test.jsonl"), line("[7, 0]")).unwrap();
        let e = read_tagged_words(&dir, &[8], &Vocabulary::Bytes, 0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 1: tag '7' is not a class number"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn tags_sort_as_names_or_numbers() {
        let tags: Vec<String> = ["O", "B-PER", "I-PER", "B-LOC", "O"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(classes_of(tags.iter()), ["B-LOC", "B-PER", "I-PER", "O"]);
        let numbers: Vec<String> = ["10", "2", "0", "2"].iter().map(|s| s.to_string()).collect();
        assert_eq!(classes_of(numbers.iter()), ["0", "2", "10"]);
    }
}
