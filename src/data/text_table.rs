//! Text classification data from tables of labelled texts, as Hugging Face
//! datasets and Kaggle publish them (`load_dataset("csv", ...)`): CSV files with
//! a header row, or JSON Lines files of objects (`.jsonl`, or `.json` as
//! `Dataset.to_json` writes them).
//!
//! ```text
//! FILE.csv | FILE.jsonl | FILE.json             one table: each label's every
//!                                                tenth row (its 10th, 20th, ...) is
//!                                                the test split; no validation split
//! DIR/train.csv|jsonl  DIR/test.csv|jsonl        split by file; DIR/validation,
//!                      (DIR/validation.csv|jsonl) valid or val becomes the
//!                                                validation split
//! ```
//!
//! The text is the column `text` (else the first of `review`, `sentence`,
//! `content`, `document` the table has), or a pair of texts read together
//! (sentence-pair tasks: GLUE's MRPC, QQP, QNLI, MNLI, RTE; SNLI) from the first
//! pair of columns the table has of `sentence1`/`sentence2`,
//! `question1`/`question2`, `premise`/`hypothesis`, `question`/`sentence`,
//! `question`/`passage` and `text`/`text_pair` (pairs take precedence over a
//! single text column); the label the column `label` (else
//! `labels`, `sentiment`, `class`, `category`, `target`). Labels are strings or
//! numbers (`1.0` is `1`); an empty one is an error naming the row. What they
//! mean is the model's ([`TableLabels`]): one class each (below), a number (a
//! regression's score; a single table's every tenth row is the test split), or
//! a set of classes (a multi-label classifier's; every tenth row too). The classes
//! are the distinct labels in sorted order (numerically when every label is a
//! whole number), label 0 the first; each must appear in the training and the
//! test split (a test table labelled `-1`, GLUE's "unlabelled", is refused). Each text is read as
//! [`text_classes`](crate::data::text_classes) reads a document: token ids of the
//! vocabulary, cut to the model's `T` tokens and padded with `pad`. A pair is
//! framed by the tokenizer's pair template (BERT's `[CLS] A [SEP] B [SEP]`) and
//! cut as Hugging Face cuts pairs, the longer text first
//! ([`Vocabulary::encode_pair`]); bytes and tokenizers without that template
//! (GPT-2's) refuse pairs. Rows keep their order (`fit` shuffles each epoch).
//! Errors name the file and row.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::data::text::Vocabulary;
use crate::data::text_classes::{Reader, TextClassesReport};
use crate::data::{Dataset, Split, Targets};
use crate::error::{Error, Result};

/// Column names taken as the text, in order of preference.
const TEXT_COLUMNS: [&str; 5] = ["text", "review", "sentence", "content", "document"];
/// What a table's labels are, by the model that reads them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableLabels {
    /// One class per text (a classifier's softmax).
    Class,
    /// A number per text (a regression's score, STS-B's similarity).
    Score,
    /// A tag per word (a token classifier's, its output a class per token):
    /// the data is tagged words ([`crate::data::tagged_words`]), not a table of
    /// texts.
    Tags,
    /// Where each question's answer starts and ends in its context (a
    /// question answerer's scores of the positions): the data is questions
    /// ([`crate::data::squad`]), not a table of texts.
    Answers,
    /// Any number of classes per text (a multi-label classifier's sigmoids):
    /// a JSON array (`["joy", "love"]`, `[2, 27]`; a JSON Lines table's own
    /// array, or a CSV cell holding one), or class names separated by commas
    /// or semicolons (as `wgml predict` writes sets).
    Set,
}

/// Pairs of column names taken as a pair of texts, in order of preference.
const PAIR_COLUMNS: [(&str, &str); 6] = [
    ("sentence1", "sentence2"),
    ("question1", "question2"),
    ("premise", "hypothesis"),
    ("question", "sentence"),
    ("question", "passage"),
    ("text", "text_pair"),
];
/// Column names taken as the label, in order of preference.
const LABEL_COLUMNS: [&str; 6] = ["label", "labels", "sentiment", "class", "category", "target"];

/// What a row of a table gives a classifier: a text, or a pair of texts read
/// together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableText {
    /// The text (a pair's first).
    pub text: String,
    /// A pair's second text.
    pub second: Option<String>,
}

/// A row of a table: its text (or pair) and its label.
type Row = (TableText, String);

/// Every how many rows of a single table one goes to the test split.
const TEST_EVERY: usize = 10;

fn err(path: &Path, message: String) -> Error {
    Error::Data {
        path: path.display().to_string(),
        message,
    }
}

/// Table file extensions: CSV, and JSON Lines (`.json` too).
const TABLE_EXTENSIONS: [&str; 3] = ["csv", "jsonl", "json"];

/// Whether `path` is a table file by its extension.
fn is_table(path: &Path) -> bool {
    path.is_file()
        && path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| TABLE_EXTENSIONS.iter().any(|t| e.eq_ignore_ascii_case(t)))
}

/// The table of split `name` in folder `dir` (`name.csv`, `.jsonl`, `.json`), if any.
fn split_table(dir: &Path, name: &str) -> Option<PathBuf> {
    TABLE_EXTENSIONS
        .iter()
        .map(|e| dir.join(format!("{name}.{e}")))
        .find(|p| p.is_file())
}

/// Whether `path` is labelled texts in tables: a table file, or a folder with a
/// train and a test table (and no `train/` and `test/` folders: a folder of
/// images or texts by class may hold tables of metadata beside them).
pub fn is_text_table(path: &Path) -> bool {
    is_table(path)
        || (path.is_dir()
            && !(path.join("train").is_dir() && path.join("test").is_dir())
            && split_table(path, "train").is_some()
            && split_table(path, "test").is_some())
}

/// Whether the tables at `path` (a table, or a folder's train table) hold pairs
/// of texts: the pair columns of the CSV header or of the first JSON line.
pub fn has_pairs(path: &Path) -> Result<bool> {
    let table = match split_table(path, "train") {
        Some(train) if path.is_dir() => train,
        _ => path.to_path_buf(),
    };
    let names: Vec<String> = if table.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv")) {
        let mut reader = csv::Reader::from_path(&table)
            .map_err(|e| err(&table, format!("is not readable as CSV: {e}")))?;
        let header = reader
            .headers()
            .map_err(|e| err(&table, format!("has no CSV header row: {e}")))?;
        header.iter().map(str::to_string).collect()
    } else {
        use std::io::BufRead;
        let file = std::fs::File::open(&table).map_err(|source| Error::Io {
            path: table.display().to_string(),
            source,
        })?;
        let first = std::io::BufReader::new(file)
            .lines()
            .map_while(std::result::Result::ok)
            .find(|l| !l.trim().is_empty())
            .unwrap_or_default();
        serde_json::from_str::<serde_json::Map<String, Value>>(first.trim_start_matches('\u{feff}'))
            .map(|row| row.keys().cloned().collect())
            .unwrap_or_default()
    };
    let has = |c: &str| names.iter().any(|n| n.trim().eq_ignore_ascii_case(c));
    Ok(PAIR_COLUMNS.iter().any(|(a, b)| has(a) && has(b)))
}

/// A label as read: trimmed, a whole number in any notation (`1.0`, `1e0`)
/// written as one (`1`).
fn normal_label(label: &str) -> String {
    let label = label.trim();
    match label.parse::<f64>() {
        Ok(v) if v.is_finite() && v.fract() == 0.0 && v.abs() < 9.0e15 => format!("{}", v as i64),
        _ => label.to_string(),
    }
}

/// One table's rows as (text, label) pairs.
fn read_rows(path: &Path) -> Result<Vec<Row>> {
    read_columns(path, true)?
        .into_iter()
        .map(|(text, label)| Ok((text, label.unwrap_or_default())))
        .collect()
}

/// Each row's label, where it has one.
pub type RowLabels = Vec<Option<String>>;

/// The texts (or pairs) of the table at `path` (CSV, or JSON lines; its text
/// columns named as [`read_text_table`] names them), in row order, to classify,
/// with each row's label where the table has a label column (`None` for a row
/// whose label is empty or null, or a JSON line without one); no labels when no
/// row has one.
pub fn read_texts(path: &Path) -> Result<(Vec<TableText>, Option<RowLabels>)> {
    let rows = read_columns(path, false)?;
    let any = rows.iter().any(|(_, l)| l.is_some());
    let (texts, labels): (Vec<TableText>, Vec<Option<String>>) = rows.into_iter().unzip();
    Ok((texts, any.then_some(labels)))
}

/// The columns of a row's text: one, or a pair.
type TextColumns = (usize, Option<usize>);

/// Each row's text (or pair) and label (`None` where the table has no label
/// column, or the row none, and `need_label` is false).
fn read_columns(path: &Path, need_label: bool) -> Result<Vec<(TableText, Option<String>)>> {
    let is_csv = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    let columns = |names: &[String]| -> Result<(TextColumns, Option<usize>)> {
        let column = |c: &str| names.iter().position(|n| n.trim().eq_ignore_ascii_case(c));
        let find = |choices: &[&str], what: &str| {
            choices.iter().find_map(|c| column(c)).ok_or_else(|| {
                err(
                    path,
                    format!(
                        "has no {what} column: its columns are {names:?}; name the {what} column one \
                         of {choices:?}{}",
                        if what == "text" {
                            format!(", or a pair of texts' columns one of {PAIR_COLUMNS:?}")
                        } else {
                            String::new()
                        }
                    ),
                )
            })
        };
        let pair = PAIR_COLUMNS
            .iter()
            .find_map(|(a, b)| Some((column(a)?, Some(column(b)?))));
        let text = match pair {
            Some(pair) => pair,
            None => (find(&TEXT_COLUMNS, "text")?, None),
        };
        let label = find(&LABEL_COLUMNS, "label");
        Ok((text, if need_label { Some(label?) } else { label.ok() }))
    };
    let io = |source| Error::Io {
        path: path.display().to_string(),
        source,
    };
    // A label, which training needs in every row (an empty one is a missing
    // value, as pandas writes NaN); to predict, a row may lack it.
    let labelled = |label: String, row: usize| -> Result<Option<String>> {
        match (label.is_empty(), need_label) {
            (true, true) => Err(err(
                path,
                format!("row {row} has no label; give every row one, or remove the row"),
            )),
            (true, false) => Ok(None),
            (false, _) => Ok(Some(label)),
        }
    };
    let mut rows = Vec::new();
    if is_csv {
        let mut reader =
            csv::Reader::from_path(path).map_err(|e| err(path, format!("is not readable as CSV: {e}")))?;
        let header: Vec<String> = reader
            .headers()
            .map_err(|e| err(path, format!("has no CSV header row: {e}")))?
            .iter()
            .map(str::to_string)
            .collect();
        let (text, label) = columns(&header)?;
        for (i, record) in reader.records().enumerate() {
            let record = record.map_err(|e| err(path, format!("row {}: {e}", i + 1)))?;
            let field = |c: usize| {
                record
                    .get(c)
                    .map(str::to_string)
                    .ok_or_else(|| err(path, format!("row {} has no column {}", i + 1, header[c])))
            };
            let label = match label {
                Some(c) => labelled(normal_label(&field(c)?), i + 1)?,
                None => None,
            };
            let texts = TableText {
                text: field(text.0)?,
                second: text.1.map(field).transpose()?,
            };
            rows.push((texts, label));
        }
    } else {
        let content = std::fs::read_to_string(path).map_err(io)?;
        let content = content.strip_prefix('\u{feff}').unwrap_or(&content);
        for (i, line) in content.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let row: serde_json::Map<String, Value> = serde_json::from_str(line)
                .map_err(|e| err(path, format!("line {} is not a JSON object: {e}", i + 1)))?;
            let names: Vec<String> = row.keys().cloned().collect();
            let (text, label) = columns(&names).map_err(|e| err(path, format!("line {}: {e}", i + 1)))?;
            let value = |c: usize| match &row[&names[c]] {
                Value::String(s) => Ok(s.clone()),
                Value::Number(n) => Ok(n.to_string()),
                Value::Bool(b) => Ok(b.to_string()),
                // A multi-label row's classes, parsed by `label_set`.
                array @ Value::Array(_) if Some(c) == label => Ok(array.to_string()),
                other => Err(err(
                    path,
                    format!("line {}: '{}' is {other}, not text or a number", i + 1, names[c]),
                )),
            };
            let label = match label {
                Some(c) if !need_label && row[&names[c]].is_null() => None,
                Some(c) => labelled(normal_label(&value(c)?), i + 1)?,
                None => None,
            };
            let texts = TableText {
                text: value(text.0)?,
                second: text.1.map(value).transpose()?,
            };
            rows.push((texts, label));
        }
    }
    if rows.is_empty() {
        return Err(err(path, "holds no row of text".into()));
    }
    Ok(rows)
}

/// A single table's rows split into (train, test): each label's every
/// [`TEST_EVERY`]th row to the test split, so every label is in both whatever
/// the rows' order; with `by_row` (a regression's numbers, a multi-label
/// classifier's sets), every [`TEST_EVERY`]th row.
fn split_by_label(rows: Vec<Row>, by_row: bool) -> (Vec<Row>, Vec<Row>) {
    let mut seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for row in rows {
        let key = if by_row { String::new() } else { row.1.clone() };
        let n = seen.entry(key).or_default();
        *n += 1;
        if n.is_multiple_of(TEST_EVERY) {
            &mut test
        } else {
            &mut train
        }
        .push(row);
    }
    (train, test)
}

/// The texts of the training split of tables `path` (see the module docs) whose
/// labels are `labels`, to train a tokenizer on: a single table's rows but the
/// test split's (as [`read_text_table`] splits it), or the train table's.
pub fn training_texts(path: &Path, labels: TableLabels) -> Result<Vec<String>> {
    if labels == TableLabels::Tags {
        return crate::data::tagged_words::training_texts(path);
    }
    if labels == TableLabels::Answers {
        return crate::data::squad::training_texts(path);
    }
    if is_table(path) {
        let (train, _) = split_by_label(read_rows(path)?, labels != TableLabels::Class);
        return Ok(train.into_iter().flat_map(|(t, _)| texts_of(t)).collect());
    }
    let train =
        split_table(path, "train").ok_or_else(|| err(path, "has no train.csv or train.jsonl".into()))?;
    Ok(read_rows(&train)?
        .into_iter()
        .flat_map(|(t, _)| texts_of(t))
        .collect())
}

/// A row's text, or both texts of a pair.
fn texts_of(t: TableText) -> impl Iterator<Item = String> {
    std::iter::once(t.text).chain(t.second)
}

/// The class names of `labels` in order: numerically when every one is a whole
/// number, else as text.
fn classes_of<'a>(labels: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut names: Vec<String> = labels.map(str::to_string).collect();
    names.sort();
    names.dedup();
    if names.iter().all(|n| n.parse::<i64>().is_ok()) {
        names.sort_by_key(|n| n.parse::<i64>().unwrap_or(0));
    }
    names
}

/// Reads labelled texts from tables (see the module docs) as samples of
/// `sample_shape = [T]` token ids of `vocabulary`, each text cut to its first T
/// tokens and padded at its end with `pad`. `labels` says what the labels are:
/// classes; numbers (a regression's targets, STS-B's similarity: one value per
/// sample, no classes); or sets of classes (multi-label: a 0/1 value per class
/// and sample).
pub fn read_text_table(
    path: &Path,
    sample_shape: &[usize],
    vocabulary: &Vocabulary,
    pad: u32,
    labels: TableLabels,
) -> Result<(Dataset, TextClassesReport)> {
    if labels == TableLabels::Tags {
        return crate::data::tagged_words::read_tagged_words(path, sample_shape, vocabulary, pad).map_err(
            |e| match e {
                Error::Data { path, message } => Error::Data {
                    path,
                    message: format!(
                        "{message} (the model tags each word, so its data is tagged words: CoNLL text or \
                     JSON Lines of tokens and tags)"
                    ),
                },
                other => other,
            },
        );
    }
    let reader = Reader::new(path, sample_shape, vocabulary, pad)?;
    // (file, rows) of the train, test and validation splits.
    let (train, test, validation) = if is_table(path) {
        let (train, test) = split_by_label(read_rows(path)?, labels != TableLabels::Class);
        (train, test, None)
    } else if is_text_table(path) {
        let table = |name: &str| split_table(path, name).map(|p| read_rows(&p)).transpose();
        let validation = match crate::data::image_folder::VALIDATION_FOLDERS
            .iter()
            .filter(|n| split_table(path, n).is_some())
            .collect::<Vec<_>>()[..]
        {
            [] => None,
            [one] => table(one)?,
            ref many => {
                return Err(err(
                    path,
                    format!("holds {} validation tables ({many:?}); keep one", many.len()),
                ));
            }
        };
        (
            table("train")?.unwrap_or_default(),
            table("test")?.unwrap_or_default(),
            validation,
        )
    } else {
        return Err(err(
            path,
            "is neither a table (.csv, .jsonl, .json) nor a folder of train and test tables".into(),
        ));
    };
    let splits = (train, test, validation);
    match labels {
        TableLabels::Class => read_classes(path, reader, splits),
        TableLabels::Score => read_scores(path, reader, splits),
        TableLabels::Set => read_sets(path, reader, splits),
        TableLabels::Tags | TableLabels::Answers => {
            unreachable!("tagged words and questions are read before")
        }
    }
}

/// A table's training, test and validation rows.
type Splits = (Vec<Row>, Vec<Row>, Option<Vec<Row>>);

/// The dataset of table `path`'s `splits`: each row's text (or pair) read by
/// `reader` into a sample, each split's labels made its targets by `targets`
/// (given the split's rows and its name, for errors); `class_names` by label.
fn table_dataset(
    path: &Path,
    mut reader: Reader<'_>,
    (train, test, validation): Splits,
    class_names: Vec<String>,
    targets: impl Fn(&[Row], &str) -> Result<Targets>,
) -> Result<(Dataset, TextClassesReport)> {
    let (train, test, validation) = {
        let mut split = |rows: &[Row], name: &str| -> Result<Split> {
            let mut x = Vec::new();
            for (i, (text, _)) in rows.iter().enumerate() {
                let second = text.second.as_ref().map(String::as_bytes);
                let sample = reader.sample_text(text.text.as_bytes(), second);
                x.extend(sample.map_err(|e| err(path, format!("{name} row {}: {e}", i + 1)))?);
            }
            Ok(Split {
                x,
                sample_len: reader.tokens(),
                y: targets(rows, name)?,
            })
        };
        (
            split(&train, "training")?,
            split(&test, "test")?,
            validation.map(|v| split(&v, "validation")).transpose()?,
        )
    };
    let name = path.file_stem().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    Ok((
        Dataset {
            name,
            sample_shape: vec![reader.tokens()],
            train,
            test,
            validation,
            class_names,
        },
        reader.report(Vec::new()),
    ))
}

/// The splits' rows read as texts of one class each.
fn read_classes(path: &Path, reader: Reader<'_>, splits: Splits) -> Result<(Dataset, TextClassesReport)> {
    let (train, test, validation) = &splits;
    let all = train.iter().chain(test).chain(validation.iter().flatten());
    // A set of classes (a JSON array) is a multi-label row, not one class.
    if let Some((_, set)) = all
        .clone()
        .find(|(_, l)| l.trim_start().starts_with('[') && label_set(l).is_ok())
    {
        return Err(err(
            path,
            format!(
                "its labels are sets of classes ({set}), but the model gives one class per text: \
                 give a multi-label model (sigmoids under binary cross-entropy; wgml import \
                 --multi-label for the BERT family)"
            ),
        ));
    }
    let classes = classes_of(all.map(|(_, l)| l.as_str()));
    if classes.len() < 2 {
        return Err(err(
            path,
            format!("has one label, {classes:?}: a classifier needs at least two"),
        ));
    }
    for (split, rows) in [("training", train), ("test", test)] {
        if let Some(missing) = classes.iter().find(|c| !rows.iter().any(|(_, l)| l == *c)) {
            return Err(err(
                path,
                format!(
                    "its {split} split has no text labelled '{missing}' (labels: {classes:?}); every \
                     label must be in both splits (a single table puts every tenth row of each label \
                     in the test split, so each needs 10 rows; a test table labelled -1 is unlabelled)"
                ),
            ));
        }
    }
    let n = classes.len();
    let label_of = |label: &String| classes.iter().position(|c| c == label).unwrap_or(0) as u32;
    table_dataset(path, reader, splits, classes.clone(), |rows, _| {
        Ok(Targets::Classes {
            labels: rows.iter().map(|(_, l)| label_of(l)).collect(),
            classes: n,
            positions: 1,
        })
    })
}

/// The classes of a multi-label row's label cell (see [`TableLabels::Set`]),
/// each as [`normal_label`] reads a label.
fn label_set(cell: &str) -> std::result::Result<Vec<String>, String> {
    let cell = cell.trim();
    if cell.starts_with('[') {
        let items: Vec<Value> = serde_json::from_str(cell)
            .map_err(|e| format!("'{cell}' is not a JSON array of classes: {e}"))?;
        return items
            .into_iter()
            .map(|v| match v {
                Value::String(s) => Ok(normal_label(&s)),
                Value::Number(n) => Ok(normal_label(&n.to_string())),
                other => Err(format!("'{cell}' holds {other}, not a class name or number")),
            })
            .collect();
    }
    Ok(cell
        .split([',', ';'])
        .map(normal_label)
        .filter(|c| !c.is_empty())
        .collect())
}

/// The splits' rows read as texts with sets of classes (multi-label): a 0/1
/// value per class, the classes in [`classes_of`]'s order.
fn read_sets(path: &Path, reader: Reader<'_>, splits: Splits) -> Result<(Dataset, TextClassesReport)> {
    let (train, test, validation) = &splits;
    let parse = |rows: &[Row], name: &str| -> Result<Vec<Vec<String>>> {
        rows.iter()
            .enumerate()
            .map(|(i, (_, label))| {
                label_set(label).map_err(|m| err(path, format!("{name} row {}: {m}", i + 1)))
            })
            .collect()
    };
    let mut all = parse(train, "training")?;
    all.extend(parse(test, "test")?);
    if let Some(v) = validation {
        all.extend(parse(v, "validation")?);
    }
    let classes = classes_of(all.iter().flatten().map(String::as_str));
    if classes.len() < 2 || train.is_empty() || test.is_empty() {
        return Err(err(
            path,
            format!(
                "has {} classes in {} training and {} test rows: a multi-label classifier needs at \
                 least two classes and rows in both splits (a single table puts every tenth row in \
                 the test split)",
                classes.len(),
                train.len(),
                test.len()
            ),
        ));
    }
    let n = classes.len();
    table_dataset(path, reader, splits, classes.clone(), |rows, name| {
        let mut values = vec![0.0; rows.len() * n];
        for (i, set) in parse(rows, name)?.iter().enumerate() {
            for class in set {
                if let Some(c) = classes.iter().position(|k| k == class) {
                    values[i * n + c] = 1.0;
                }
            }
        }
        Ok(Targets::Values { values, dim: n })
    })
}

/// The splits' rows read as texts with numeric labels (a regression's targets).
fn read_scores(path: &Path, reader: Reader<'_>, splits: Splits) -> Result<(Dataset, TextClassesReport)> {
    if splits.0.is_empty() || splits.1.is_empty() {
        return Err(err(
            path,
            "needs rows in both the training and the test split (a single table puts every tenth row \
             in the test split)"
                .into(),
        ));
    }
    table_dataset(path, reader, splits, Vec::new(), |rows, name| {
        let values = rows
            .iter()
            .enumerate()
            .map(|(i, (_, label))| {
                label
                    .trim()
                    .parse::<f32>()
                    .ok()
                    .filter(|v| v.is_finite())
                    .ok_or_else(|| {
                        err(
                            path,
                            format!(
                                "{name} row {} is labelled '{label}', not a number: the model gives one \
                             score (a regression), so its labels are numbers",
                                i + 1
                            ),
                        )
                    })
            })
            .collect::<Result<Vec<f32>>>()?;
        if values.iter().all(|&v| v == -1.0) {
            return Err(err(
                path,
                format!(
                    "its {name} split is labelled -1 throughout (GLUE's unlabelled test split): a \
                     regression needs real scores; evaluate on the validation table instead"
                ),
            ));
        }
        Ok(Targets::Values { values, dim: 1 })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("wgml-table-{name}-{}", std::process::id()));
        std::fs::remove_dir_all(&dir).ok();
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_csv_table_splits_each_labels_every_tenth_row_and_labels_by_sorted_class() {
        let dir = scratch("csv");
        let file = dir.join("reviews.csv");
        let mut csv = String::from("review,sentiment\n");
        for i in 0..20 {
            let label = if i % 2 == 0 { "positive" } else { "negative" };
            csv.push_str(&format!("\"good, {i}\",{label}\n"));
        }
        std::fs::write(&file, csv).unwrap();
        assert!(is_text_table(&file));
        assert!(!has_pairs(&file).unwrap());
        let (d, report) = read_text_table(&file, &[4], &Vocabulary::Bytes, 0, TableLabels::Class).unwrap();
        assert_eq!(d.class_names, ["negative", "positive"]);
        assert_eq!((d.train.len(), d.test.len(), report.documents), (18, 2, 20));
        // Row 0, "good, 0" (quoted: the comma is text), cut to 4 bytes; label positive.
        assert_eq!(&d.train.x[..4], &[103.0, 111.0, 111.0, 100.0]);
        assert_eq!(report.truncated, 20);
        let Targets::Classes { labels, .. } = &d.test.y else {
            panic!()
        };
        // Alternating labels: each label's 10th row (rows 18 and 19), not rows 9 and 19.
        assert_eq!(labels, &[1, 0]);
    }

    #[test]
    fn jsonl_tables_by_split_with_number_labels() {
        let dir = scratch("jsonl");
        let row = |t: &str, l: &str| format!("{{\"text\": \"{t}\", \"label\": {l}}}\n");
        // 10.0 is the label 10, and so is " 10 "; a byte-order mark is skipped.
        let train = format!(
            "\u{feff}{}{}{}",
            row("a", "10"),
            row("bb", "2"),
            row("ccc", "10.0")
        );
        std::fs::write(dir.join("train.jsonl"), train).unwrap();
        std::fs::write(dir.join("test.jsonl"), row("dddd", "2") + &row("x", "\" 10 \"")).unwrap();
        std::fs::write(dir.join("validation.jsonl"), row("e", "10")).unwrap();
        assert!(is_text_table(&dir));
        let (d, _) = read_text_table(&dir, &[3], &Vocabulary::Bytes, 0, TableLabels::Class).unwrap();
        assert_eq!(d.class_names, ["2", "10"], "numbers in numeric order");
        assert_eq!(&d.train.x[..6], &[97.0, 0.0, 0.0, 98.0, 98.0, 0.0]);
        let Targets::Classes { labels, .. } = &d.train.y else {
            panic!()
        };
        assert_eq!(labels, &[1, 0, 1]);
        assert_eq!(d.validation.map(|v| v.len()), Some(1));
    }

    /// GLUE's sentence-pair tables: the pair's columns are found before a single
    /// text column (QNLI's question and sentence), and a vocabulary that joins
    /// no pairs (bytes) refuses them naming the row.
    #[test]
    fn pair_columns_are_read_as_pairs() {
        let dir = scratch("pairs");
        let file = dir.join("qnli.csv");
        let mut csv = String::from("idx,question,sentence,label\n");
        for i in 0..20 {
            let label = ["entailment", "not_entailment"][i % 2];
            csv.push_str(&format!("{i},who {i}?,it was {i}.,{label}\n"));
        }
        std::fs::write(&file, &csv).unwrap();
        let (texts, labels) = read_texts(&file).unwrap();
        assert_eq!(
            texts[3],
            TableText {
                text: "who 3?".into(),
                second: Some("it was 3.".into())
            }
        );
        assert_eq!(labels.unwrap()[3].as_deref(), Some("not_entailment"));
        assert_eq!(
            training_texts(&file, TableLabels::Class).unwrap()[..2],
            ["who 0?", "it was 0."]
        );
        assert!(has_pairs(&file).unwrap());
        let e = read_text_table(&file, &[8], &Vocabulary::Bytes, 0, TableLabels::Class)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("row 1") && e.contains("puts nothing between two texts"),
            "{e}"
        );
        let lines = dir.join("mnli.jsonl");
        std::fs::write(
            &lines,
            "{\"premise\": \"a\", \"hypothesis\": \"b\", \"label\": 1}\n{\"text\": \"c\", \"label\": 0}\n",
        )
        .unwrap();
        let (texts, _) = read_texts(&lines).unwrap();
        assert!(has_pairs(&lines).unwrap());
        assert_eq!(texts[0].second.as_deref(), Some("b"));
        assert_eq!((texts[1].text.as_str(), texts[1].second.as_deref()), ("c", None));
    }

    /// Multi-label rows: JSON arrays (a JSON Lines table's own, or a CSV cell
    /// holding one) or comma-separated names, read as 0/1 per class in sorted
    /// order; scores as numbers, GLUE's unlabelled -1 refused.
    #[test]
    fn sets_of_classes_and_scores() {
        assert_eq!(label_set(r#"["joy", 2, 1.0]"#).unwrap(), ["joy", "2", "1"]);
        assert_eq!(label_set(" a, b ,").unwrap(), ["a", "b"]);
        assert_eq!(label_set("[]").unwrap(), Vec::<String>::new());
        assert!(label_set("[1,").unwrap_err().contains("not a JSON array"));
        assert!(label_set("[[1]]").unwrap_err().contains("not a class name"));
        let dir = scratch("sets");
        let file = dir.join("emotions.jsonl");
        let sets = [r#"["joy"]"#, r#"["joy", "love"]"#, "[]", r#"["anger"]"#];
        let rows: String = (0..20)
            .map(|i| format!("{{\"text\": \"t{i}\", \"labels\": {}}}\n", sets[i % 4]))
            .collect();
        std::fs::write(&file, rows).unwrap();
        let (d, _) = read_text_table(&file, &[4], &Vocabulary::Bytes, 0, TableLabels::Set).unwrap();
        assert_eq!(d.class_names, ["anger", "joy", "love"]);
        let Targets::Values { values, dim: 3 } = &d.train.y else {
            panic!("{:?}", d.train.y)
        };
        assert_eq!(&values[..12], &[0., 1., 0., 0., 1., 1., 0., 0., 0., 1., 0., 0.]);
        assert_eq!((d.train.len(), d.test.len()), (18, 2));
        let scores = dir.join("stsb.csv");
        let rows: String = (0..20).map(|i| format!("s{i},t,{}\n", i as f32 / 4.0)).collect();
        std::fs::write(&scores, format!("sentence1,sentence2,label\n{rows}")).unwrap();
        let e = read_text_table(&scores, &[4], &Vocabulary::Bytes, 0, TableLabels::Score)
            .unwrap_err()
            .to_string();
        assert!(e.contains("puts nothing between two texts"), "{e}");
        let text = dir.join("scores.csv");
        let rows: String = (0..20).map(|i| format!("s{i},{}\n", i as f32 / 4.0)).collect();
        std::fs::write(&text, format!("text,label\n{rows}")).unwrap();
        let (d, _) = read_text_table(&text, &[4], &Vocabulary::Bytes, 0, TableLabels::Score).unwrap();
        let Targets::Values { values, dim: 1 } = &d.test.y else {
            panic!("{:?}", d.test.y)
        };
        assert_eq!(values, &[2.25, 4.75], "every tenth row");
        // A tokenizer trains on the same training split.
        let training = training_texts(&text, TableLabels::Score).unwrap();
        assert_eq!(training.len(), 18);
        assert!(!training.iter().any(|t| t == "s9" || t == "s19"), "{training:?}");
        std::fs::write(dir.join("train.csv"), "text,label\na,1.5\nb,2\n").unwrap();
        std::fs::write(dir.join("test.csv"), "text,label\nc,-1\nd,-1\n").unwrap();
        let e = read_text_table(&dir, &[4], &Vocabulary::Bytes, 0, TableLabels::Score)
            .unwrap_err()
            .to_string();
        assert!(e.contains("labelled -1 throughout"), "{e}");
        std::fs::write(dir.join("test.csv"), "text,label\nc,high\n").unwrap();
        let e = read_text_table(&dir, &[4], &Vocabulary::Bytes, 0, TableLabels::Score)
            .unwrap_err()
            .to_string();
        assert!(e.contains("test row 1 is labelled 'high', not a number"), "{e}");
    }

    #[test]
    fn tables_that_do_not_fit_are_refused_by_name() {
        let dir = scratch("bad");
        let e = |path: &Path| {
            read_text_table(path, &[8], &Vocabulary::Bytes, 0, TableLabels::Class)
                .unwrap_err()
                .to_string()
        };
        let file = dir.join("t.csv");
        std::fs::write(&file, "body,label\nx,1\n").unwrap();
        assert!(e(&file).contains("has no text column"), "{}", e(&file));
        std::fs::write(&file, "text,label\nx,1\n").unwrap();
        assert!(e(&file).contains("one label"), "{}", e(&file));
        // Five rows of each label: no tenth row of either for the test split.
        let rows: String = (0..10).map(|i| format!("t{i},{}\n", i % 2)).collect();
        std::fs::write(&file, format!("text,label\n{rows}")).unwrap();
        assert!(
            e(&file).contains("its test split has no text labelled '0'"),
            "{}",
            e(&file)
        );
        std::fs::write(&file, "text,label\nx,1\ny,\n").unwrap();
        assert!(e(&file).contains("row 2 has no label"), "{}", e(&file));
        let lines = dir.join("t.jsonl");
        std::fs::write(&lines, "{\"text\": \"a\", \"label\": 1}\nnot json\n").unwrap();
        assert!(e(&lines).contains("line 2 is not a JSON object"), "{}", e(&lines));
        std::fs::write(&lines, "{\"text\": [1], \"label\": 1}\n").unwrap();
        assert!(e(&lines).contains("not text or a number"), "{}", e(&lines));
        let wide = read_text_table(&file, &[2, 4], &Vocabulary::Bytes, 0, TableLabels::Class)
            .unwrap_err()
            .to_string();
        assert!(wide.contains("token ids [T]"), "{wide}");
    }
}
