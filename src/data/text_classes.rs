//! Text classification datasets from folders of text files, as Keras'
//! `text_dataset_from_directory` reads them and as the IMDB reviews (`aclImdb`)
//! are laid out:
//!
//! ```text
//! DIR/train/<class>/*.txt
//! DIR/test/<class>/*.txt
//! DIR/val/<class>/*.txt       (optional; also `valid/` or `validation/`)
//! ```
//!
//! The classes are the folders of `test/` in sorted order (label 0 is the
//! first); `test/` needs at least two. `train/` (and a validation folder) must
//! hold a folder for every one of them; a class folder that `test/` lacks
//! (`aclImdb/train/unsup`, its unlabelled reviews) is left out and listed in
//! [`TextClassesReport::ignored`]. Files beside the class folders (aclImdb's
//! `urls_pos.txt`, `labeledBow.feat`) and hidden folders are not read. A
//! validation folder becomes the dataset's `validation` split
//! (`train::fit_validated` validates on it; `wgml train` does); two at once
//! (`val/` and `valid/`) are refused as ambiguous.
//!
//! A document is a file directly in a class folder whose extension is `txt`
//! (any case); hidden files (a name starting with a dot), other files and
//! subfolders are skipped. Each document is turned into token ids by the
//! [`Vocabulary`] (bytes, or a tokenizer that reads UTF-8 only), framed as its
//! tokenizer frames one text (BERT's `[CLS] … [SEP]`; bytes and GPT-2 add
//! nothing), cut to `T` tokens as Hugging Face truncates, the frame kept (`T` the
//! model's input length, `sample_shape = [T]`; the cuts are counted in
//! [`TextClassesReport::truncated`]) and padded at its end
//! with the id `pad` up to `T`. Its label is its class folder's.
//!
//! Padding is the run of `pad` ids at the end of a sample: a model whose
//! `Embedding` has `mask_id = pad` masks it (attention keys,
//! `GlobalAveragePooling1D`, `LastTokenPooling1D`). A document whose own text
//! ends in the pad id loses those tokens to the mask, so choose a `pad` no
//! document ends in (an id the tokenizer reserves, or byte 0 for text).
//!
//! Documents are read in sorted path order, class by class, and are not
//! shuffled here (`fit` shuffles each epoch).

use std::path::{Path, PathBuf};

use crate::data::image_folder::{EXTENSIONS, err, file_name, sorted_entries, validation_folder};
use crate::data::text::{TextFrames, Vocabulary, read_bytes};
use crate::data::{Dataset, Split, Targets};
use crate::error::{Error, Result};

/// What reading left out, for the CLI to print.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TextClassesReport {
    /// Class folders of train (or val) that test lacks, left out (aclImdb's train/unsup).
    pub ignored: Vec<PathBuf>,
    /// Documents longer than the model's tokens, cut to their first `tokens` tokens.
    pub truncated: usize,
    /// Documents in all splits.
    pub documents: usize,
    /// Of the documents, the pairs of texts read as one (sentence-pair tables).
    pub pairs: usize,
    /// Mean tokens per document before cutting (over all splits).
    pub mean_tokens: f64,
}

/// The layout's description, for errors.
const LAYOUT: &str = "a text-classes folder holds train/<class>/*.txt and test/<class>/*.txt";

/// Whether a file or folder name is hidden (starts with a dot).
fn hidden(path: &Path) -> bool {
    file_name(path).starts_with('.')
}

/// Whether `path` is a class folder: a folder, not hidden.
fn is_class_folder(path: &Path) -> bool {
    path.is_dir() && !hidden(path)
}

/// Whether a name has extension `txt` (any case).
fn has_txt_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("txt"))
}

/// Whether `path` is a document: a file, not hidden, named `*.txt` (any case).
fn is_document(path: &Path) -> bool {
    !hidden(path) && has_txt_extension(path) && path.is_file()
}

/// Whether `dir` is laid out as a text-classes folder (see the module docs):
/// `train/` and `test/` folders, a class folder of `test/` holding a `.txt`
/// file, and none holding an image (`.png`, `.jpg`, `.jpeg`). An image folder
/// passes [`is_image_folder`](crate::data::image_folder::is_image_folder) too,
/// so ask this first.
pub fn is_text_classes(dir: &Path) -> bool {
    if !(dir.join("train").is_dir() && dir.join("test").is_dir()) {
        return false;
    }
    let Ok(classes) = sorted_entries(&dir.join("test"), is_class_folder) else {
        return false;
    };
    let (mut text, mut images) = (false, false);
    for class in classes {
        let Ok(entries) = std::fs::read_dir(&class) else {
            return false;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if hidden(&path) {
                continue;
            }
            let extension = path.extension().and_then(|e| e.to_str()).unwrap_or_default();
            text |= has_txt_extension(&path);
            images |= EXTENSIONS.iter().any(|x| extension.eq_ignore_ascii_case(x));
        }
    }
    text && !images
}

/// `e` as an error about the file at `path` (data and argument errors), as the
/// text corpus reports a file that fails to encode.
fn in_file(path: &Path, e: Error) -> Error {
    match e {
        Error::Data { message, .. } | Error::InvalidArgument(message) => err(path, message),
        other => other,
    }
}

/// The folder `dir/name`, which must exist.
fn split_folder(dir: &Path, name: &str) -> Result<PathBuf> {
    let folder = dir.join(name);
    if !folder.is_dir() {
        return Err(err(dir, format!("has no {name}/ folder; {LAYOUT}")));
    }
    Ok(folder)
}

/// The class folders of `split` for `classes` (test's, in label order), and its
/// class folders that `classes` lacks, which go to `ignored`. `what` names the
/// split in errors.
fn matching_classes(
    split: &Path,
    classes: &[String],
    what: &str,
    ignored: &mut Vec<PathBuf>,
) -> Result<Vec<PathBuf>> {
    let found = sorted_entries(split, is_class_folder)?;
    let names: Vec<String> = found.iter().map(|f| file_name(f)).collect();
    if let Some(missing) = classes.iter().find(|c| !names.contains(c)) {
        return Err(err(
            split,
            format!(
                "has no folder for class \"{missing}\" of test/ (test's classes: {classes:?}; \
                 this folder has {names:?}); {what} needs a folder of .txt documents for every \
                 class of test/"
            ),
        ));
    }
    ignored.extend(
        found
            .into_iter()
            .zip(&names)
            .filter(|(_, n)| !classes.contains(n))
            .map(|(f, _)| f),
    );
    Ok(classes.iter().map(|c| split.join(c)).collect())
}

/// The training documents of text-classes folder `dir`: the `.txt` files of
/// `train/`'s folders of test's classes, as [`read_text_classes`] reads them
/// (what a tokenizer should be trained on: not the test split, not aclImdb's
/// `unsup/` or its other files). Errors as [`read_text_classes`]'s.
pub fn training_documents(dir: &Path) -> Result<Vec<Vec<u8>>> {
    let test_dir = split_folder(dir, "test")?;
    let classes: Vec<String> = sorted_entries(&test_dir, is_class_folder)?
        .iter()
        .map(|c| file_name(c))
        .collect();
    let folders = matching_classes(&split_folder(dir, "train")?, &classes, "train/", &mut Vec::new())?;
    let mut out = Vec::new();
    for folder in folders {
        for f in sorted_entries(&folder, is_document)? {
            out.push(read_bytes(&f)?);
        }
    }
    Ok(out)
}

/// A document's token ids as a sample of `tokens` ids (f32): its first
/// `tokens`, then `pad` to the end.
pub fn cut_and_pad(ids: &[u32], tokens: usize, pad: u32) -> Vec<f32> {
    let kept = ids.len().min(tokens);
    ids[..kept]
        .iter()
        .map(|&id| id as f32)
        .chain(std::iter::repeat_n(pad as f32, tokens - kept))
        .collect()
}

/// The text file at `path` as a sample of `tokens` ids of `vocabulary`, cut and
/// padded with `pad` as [`read_text_classes`] reads each document (for
/// classifying a text a model was not trained on).
pub fn read_document(path: &Path, vocabulary: &Vocabulary, tokens: usize, pad: u32) -> Result<Vec<f32>> {
    let (ids, _) = vocabulary
        .encode_document(&read_bytes(path)?, tokens)
        .map_err(|e| in_file(path, e))?;
    Ok(cut_and_pad(&ids, tokens, pad))
}

/// Reads documents into samples of `tokens` ids of a vocabulary, cut and padded
/// with `pad`, counting what the report needs (texts by class here, tables in
/// [`crate::data::text_table`]).
pub(crate) struct Reader<'a> {
    vocabulary: &'a Vocabulary,
    /// The tokenizer's frames of a document and of a pair ([`Vocabulary::text_frames`]).
    frames: TextFrames,
    tokens: usize,
    pad: u32,
    documents: usize,
    pairs: usize,
    truncated: usize,
    total_tokens: u64,
}

impl<'a> Reader<'a> {
    /// A reader of the data at `path` (named in errors) for a model taking
    /// `sample_shape`, which must be `[T]` with T > 0; `pad` must be a token of
    /// `vocabulary`.
    pub(crate) fn new(
        path: &Path,
        sample_shape: &[usize],
        vocabulary: &'a Vocabulary,
        pad: u32,
    ) -> Result<Reader<'a>> {
        let &[tokens] = sample_shape else {
            return Err(err(
                path,
                format!(
                    "holds text documents, but the model takes samples of shape {sample_shape:?}: \
                     a text classifier must take token ids [T]"
                ),
            ));
        };
        if tokens == 0 {
            return Err(err(
                path,
                "holds text documents, but the model takes samples of shape [0]: a text classifier \
                 must take token ids [T] with T > 0"
                    .into(),
            ));
        }
        let size = vocabulary.size();
        if pad as usize >= size {
            return Err(err(
                path,
                format!(
                    "the pad id {pad} is not a token of the vocabulary ({}, ids 0 to {}); the pad id \
                     must be below the vocabulary's size {size}",
                    vocabulary.describe(),
                    size.saturating_sub(1)
                ),
            ));
        }
        Ok(Reader {
            vocabulary,
            frames: vocabulary.text_frames()?,
            tokens,
            pad,
            documents: 0,
            pairs: 0,
            truncated: 0,
            total_tokens: 0,
        })
    }

    /// Tokens per sample.
    pub(crate) fn tokens(&self) -> usize {
        self.tokens
    }

    /// One document as a sample: encoded, counted, cut and padded. Errors are
    /// the vocabulary's (a tokenizer reads UTF-8 only), for the caller to place.
    pub(crate) fn sample(&mut self, text: &[u8]) -> Result<Vec<f32>> {
        self.sample_text(text, None)
    }

    /// One document, or a pair of texts (`second`) read as one, as a sample
    /// ([`Vocabulary::encode_text`]); counted as one document.
    pub(crate) fn sample_text(&mut self, text: &[u8], second: Option<&[u8]>) -> Result<Vec<f32>> {
        let (ids, whole) = self
            .vocabulary
            .encode_text(text, second, self.tokens, &self.frames)?;
        self.documents += 1;
        self.pairs += usize::from(second.is_some());
        self.total_tokens += whole as u64;
        self.truncated += usize::from(whole > self.tokens);
        Ok(cut_and_pad(&ids, self.tokens, self.pad))
    }

    /// What was read, with `ignored` (class folders left out).
    pub(crate) fn report(&self, ignored: Vec<PathBuf>) -> TextClassesReport {
        TextClassesReport {
            ignored,
            truncated: self.truncated,
            documents: self.documents,
            pairs: self.pairs,
            mean_tokens: self.total_tokens as f64 / self.documents.max(1) as f64,
        }
    }

    /// One split: every document of each class folder (`folders` in label
    /// order), labelled by its folder.
    fn split(&mut self, split: &Path, folders: &[PathBuf]) -> Result<Split> {
        let (mut x, mut labels) = (Vec::new(), Vec::new());
        for (label, class) in folders.iter().enumerate() {
            let files = sorted_entries(class, is_document)?;
            if files.is_empty() {
                return Err(err(
                    class,
                    "holds no .txt document (hidden files, other files and subfolders are not \
                     read); put the class's documents here as .txt files, or remove the folder \
                     from every split"
                        .into(),
                ));
            }
            for f in files {
                x.extend(self.sample(&read_bytes(&f)?).map_err(|e| in_file(&f, e))?);
                labels.push(label as u32);
            }
        }
        if labels.is_empty() {
            return Err(err(split, format!("holds no document; {LAYOUT}")));
        }
        Ok(Split {
            x,
            sample_len: self.tokens,
            y: Targets::Classes {
                labels,
                classes: folders.len(),
                positions: 1,
            },
        })
    }
}

/// Reads DIR as samples of `sample_shape = [T]` token ids of `vocabulary`, each document cut to its first T tokens and padded at its end with `pad` to T.
///
/// See the module docs for the layout, the padding and what is left out.
/// Errors name the folder or file at fault and say what to change.
pub fn read_text_classes(
    dir: &Path,
    sample_shape: &[usize],
    vocabulary: &Vocabulary,
    pad: u32,
) -> Result<(Dataset, TextClassesReport)> {
    let mut reader = Reader::new(dir, sample_shape, vocabulary, pad)?;

    // Every folder's classes are checked before any document is read.
    let train_dir = split_folder(dir, "train")?;
    let test_dir = split_folder(dir, "test")?;
    let test_folders = sorted_entries(&test_dir, is_class_folder)?;
    if test_folders.len() < 2 {
        return Err(err(
            &test_dir,
            format!(
                "holds {} class folder(s); text classification needs one folder of .txt \
                 documents per class, at least two (the classes are test/'s folders)",
                test_folders.len()
            ),
        ));
    }
    let classes: Vec<String> = test_folders.iter().map(|c| file_name(c)).collect();
    let mut ignored = Vec::new();
    let train_folders = matching_classes(&train_dir, &classes, "train/", &mut ignored)?;
    let validation_dir = validation_folder(dir)?;
    let validation_folders = match &validation_dir {
        Some(v) => Some(matching_classes(
            v,
            &classes,
            "a validation folder",
            &mut ignored,
        )?),
        None => None,
    };

    let train = reader.split(&train_dir, &train_folders)?;
    let validation = match (&validation_dir, &validation_folders) {
        (Some(v), Some(folders)) => Some(reader.split(v, folders)?),
        _ => None,
    };
    let test = reader.split(&test_dir, &test_folders)?;

    let name = match file_name(dir) {
        n if n.is_empty() => dir.display().to_string(),
        n => n,
    };
    let report = reader.report(ignored);
    let dataset = Dataset {
        name,
        sample_shape: vec![reader.tokens()],
        train,
        test,
        validation,
        class_names: classes,
    };
    Ok((dataset, report))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch folder for one test.
    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("wgml-text-classes-{name}-{}", std::process::id()));
        std::fs::remove_dir_all(&dir).ok();
        dir
    }

    /// Writes `text` to `path`, making its folders.
    fn write(path: &Path, text: impl AsRef<[u8]>) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    /// A split's labels and number of classes.
    fn labels(s: &Split) -> (Vec<u32>, usize) {
        match &s.y {
            Targets::Classes {
                labels,
                classes,
                positions,
            } => {
                assert_eq!(*positions, 1);
                (labels.clone(), *classes)
            }
            other => panic!("{other:?}"),
        }
    }

    /// `ids` as the f32 sample values.
    fn f(ids: &[u32]) -> Vec<f32> {
        ids.iter().map(|&id| id as f32).collect()
    }

    #[test]
    fn documents_become_cut_and_padded_byte_ids_labelled_by_sorted_class() {
        let dir = scratch("bytes");
        // Out of order on purpose.
        write(&dir.join("train/pos/c.txt"), "");
        write(&dir.join("train/neg/b.TXT"), "abcdef");
        write(&dir.join("train/neg/a.txt"), "hi");
        // Not documents: hidden, not .txt, in a subfolder, beside the classes.
        write(&dir.join("train/pos/.hidden.txt"), "nope");
        write(&dir.join("train/pos/notes.md"), "nope");
        write(&dir.join("train/pos/sub/d.txt"), "nope");
        write(&dir.join("train/urls_pos.txt"), "nope");
        write(&dir.join("train/.cache/e.txt"), "nope");
        write(&dir.join("test/pos/y.txt"), "ok!!");
        write(&dir.join("test/neg/x.txt"), "xyz");
        assert!(is_text_classes(&dir));

        let (d, report) = read_text_classes(&dir, &[4], &Vocabulary::Bytes, 0).unwrap();
        assert_eq!(d.name, file_name(&dir));
        assert_eq!(d.sample_shape, [4]);
        assert_eq!(d.class_names, ["neg", "pos"]);
        assert!(d.validation.is_none());
        assert_eq!(d.train.sample_len, 4);
        assert_eq!(labels(&d.train), (vec![0, 0, 1], 2));
        assert_eq!(labels(&d.test), (vec![0, 1], 2));
        let expected_train = [
            f(&[104, 105, 0, 0]),  // "hi", padded
            f(&[97, 98, 99, 100]), // "abcdef", cut
            f(&[0, 0, 0, 0]),      // "", all padding
        ]
        .concat();
        assert_eq!(d.train.x, expected_train);
        assert_eq!(
            d.test.x,
            [f(&[120, 121, 122, 0]), f(&[111, 107, 33, 33])].concat()
        );
        d.train.validate().unwrap();
        d.test.validate().unwrap();
        assert_eq!(
            report,
            TextClassesReport {
                ignored: vec![],
                truncated: 1,
                documents: 5,
                pairs: 0,
                // (2 + 6 + 0 + 3 + 4) / 5
                mean_tokens: 3.0,
            }
        );

        // Another pad id pads with it.
        let (d, _) = read_text_classes(&dir, &[3], &Vocabulary::Bytes, 255).unwrap();
        assert_eq!(&d.train.x[..3], &f(&[104, 105, 255]));

        // An image folder, a folder of nothing and a missing folder are not text classes.
        let images = scratch("images");
        write(&images.join("train/a/1.png"), "png");
        write(&images.join("test/a/1.png"), "png");
        write(&images.join("test/b/notes.txt"), "about the images");
        assert!(!is_text_classes(&images));
        assert!(!is_text_classes(&dir.join("train")));
        assert!(!is_text_classes(&dir.join("absent")));
        std::fs::remove_dir_all(&images).ok();
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn class_folders_test_lacks_are_ignored_and_a_validation_folder_is_read() {
        let dir = scratch("imdb");
        write(&dir.join("train/neg/0_3.txt"), "bad");
        write(&dir.join("train/pos/0_9.txt"), "good");
        write(&dir.join("train/unsup/0_0.txt"), "unlabelled");
        write(&dir.join("train/labeledBow.feat"), "0 0:1");
        write(&dir.join("test/neg/0_2.txt"), "awful");
        write(&dir.join("test/pos/0_10.txt"), "great");
        write(&dir.join("imdb.vocab"), "the\nand\n");
        write(&dir.join("validation/pos/1.txt"), "fine");
        write(&dir.join("validation/neg/1.txt"), "meh");
        write(&dir.join("validation/neg/2.txt"), "no");
        write(&dir.join("validation/maybe/1.txt"), "hm");
        assert!(is_text_classes(&dir));

        let (d, report) = read_text_classes(&dir, &[8], &Vocabulary::Bytes, 0).unwrap();
        assert_eq!(d.class_names, ["neg", "pos"]);
        assert_eq!(
            report.ignored,
            [dir.join("train/unsup"), dir.join("validation/maybe")]
        );
        assert_eq!(report.documents, 7);
        assert_eq!(report.truncated, 0); // "unlabelled", over 8, is not read
        let v = d.validation.unwrap();
        assert_eq!(labels(&v), (vec![0, 0, 1], 2));
        assert_eq!(&v.x[..8], &f(&[109, 101, 104, 0, 0, 0, 0, 0]));
        assert_eq!(&v.x[16..], &f(&[102, 105, 110, 101, 0, 0, 0, 0]));
        assert_eq!(labels(&d.train), (vec![0, 1], 2));
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn bad_folders_and_arguments_are_errors_that_name_the_problem() {
        let dir = scratch("bad");
        write(&dir.join("train/neg/1.txt"), "a");
        write(&dir.join("test/neg/1.txt"), "b");
        write(&dir.join("test/pos/1.txt"), "c");
        let e = |shape: &[usize], pad: u32| {
            read_text_classes(&dir, shape, &Vocabulary::Bytes, pad)
                .unwrap_err()
                .to_string()
        };
        // A class of test/ that train/ lacks.
        let m = e(&[4], 0);
        assert!(
            m.contains("train") && m.contains("no folder for class \"pos\""),
            "{m}"
        );
        // A class folder with no .txt document.
        std::fs::create_dir_all(dir.join("train/pos")).unwrap();
        write(&dir.join("train/pos/readme.md"), "not a document");
        let m = e(&[4], 0);
        assert!(
            m.contains(&dir.join("train/pos").display().to_string()) && m.contains("holds no .txt"),
            "{m}"
        );
        write(&dir.join("train/pos/1.txt"), "d");
        assert!(read_text_classes(&dir, &[4], &Vocabulary::Bytes, 0).is_ok());
        // The model's input is not [T].
        for shape in [&[2, 4][..], &[], &[1, 28, 28]] {
            let m = e(shape, 0);
            assert!(m.contains("must take token ids [T]"), "{m}");
        }
        assert!(e(&[0], 0).contains("T > 0"), "{}", e(&[0], 0));
        // A pad that is no token.
        let m = e(&[4], 256);
        assert!(
            m.contains("pad id 256") && m.contains("below the vocabulary's size 256"),
            "{m}"
        );
        // Two validation folders.
        write(&dir.join("val/neg/1.txt"), "e");
        write(&dir.join("val/pos/1.txt"), "f");
        write(&dir.join("valid/neg/1.txt"), "g");
        let m = e(&[4], 0);
        assert!(m.contains("2 validation folders (val, valid)"), "{m}");
        std::fs::remove_dir_all(dir.join("valid")).unwrap();
        // A validation folder lacking a class.
        std::fs::remove_dir_all(dir.join("val/pos")).unwrap();
        let m = e(&[4], 0);
        assert!(
            m.contains("val") && m.contains("no folder for class \"pos\"") && m.contains("validation"),
            "{m}"
        );
        std::fs::remove_dir_all(dir.join("val")).unwrap();
        // test/ with one class; no test/ at all.
        std::fs::remove_dir_all(dir.join("test/pos")).unwrap();
        assert!(e(&[4], 0).contains("1 class folder(s)"), "{}", e(&[4], 0));
        std::fs::remove_dir_all(dir.join("test")).unwrap();
        assert!(e(&[4], 0).contains("has no test/ folder"), "{}", e(&[4], 0));
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_tokenizer_encodes_each_whole_document_then_cuts_and_pads() {
        let text = "the cat sat on the mat. the dog sat on the log. the cat and the dog.\n".repeat(20);
        let vocabulary = Vocabulary::train_bpe(&text, 300).unwrap();
        assert!(vocabulary.size() > 256);
        let dir = scratch("bpe");
        let long = "the cat sat on the mat and the dog sat on the log, the cat and the dog.";
        let short = "the dog";
        write(&dir.join("train/cats/long.txt"), long);
        write(&dir.join("train/dogs/short.txt"), short);
        write(&dir.join("test/cats/1.txt"), "the cat");
        write(&dir.join("test/dogs/1.txt"), "a dog");
        let (long_ids, short_ids) = (
            vocabulary.encode(long.as_bytes()).unwrap(),
            vocabulary.encode(short.as_bytes()).unwrap(),
        );
        let t = 6;
        assert!(
            long_ids.len() > t && short_ids.len() < t,
            "{long_ids:?} {short_ids:?}"
        );
        let pad = vocabulary.size() as u32 - 1;

        let (d, report) = read_text_classes(&dir, &[t], &vocabulary, pad).unwrap();
        assert_eq!(&d.train.x[..t], &f(&long_ids[..t]));
        let mut padded = short_ids.clone();
        padded.resize(t, pad);
        assert_eq!(&d.train.x[t..], &f(&padded));
        assert_eq!(report.truncated, 1);
        assert_eq!(report.documents, 4);
        let test_tokens =
            vocabulary.encode(b"the cat").unwrap().len() + vocabulary.encode(b"a dog").unwrap().len();
        let mean = (long_ids.len() + short_ids.len() + test_tokens) as f64 / 4.0;
        assert_eq!(report.mean_tokens, mean);

        // A tokenizer reads UTF-8 only: the error names the file.
        write(&dir.join("test/dogs/2.txt"), [0xff, 0xfe, b'a']);
        let m = read_text_classes(&dir, &[t], &vocabulary, pad)
            .unwrap_err()
            .to_string();
        assert!(m.contains("2.txt") && m.contains("not UTF-8"), "{m}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
