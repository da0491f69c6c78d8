//! Text as a language model's data (`--data text:FILE`). Tokens are bytes: a
//! vocabulary of [`BYTE_VOCAB`] that reads any file (UTF-8 or not) with no
//! tokenizer to ship or to keep beside a checkpoint, as byte-level models do.
//!
//! The file is cut into windows of T + 1 bytes, T the model's input length: the
//! first T bytes are a sample's token ids, the last T its labels (each byte's
//! next), so a causal model learns every position's next byte at once. Windows
//! start every T bytes, so each byte is a label once per epoch. The last tenth
//! of the file is the test split (as nanoGPT splits its character data); no
//! window crosses into it.

use std::path::Path;

use crate::data::{Dataset, Split, Targets};
use crate::error::{Error, Result};

/// Token ids of byte-level text: every byte value.
pub const BYTE_VOCAB: usize = 256;

/// Fraction of the text (its end) held out as the test split.
pub const TEST_FRACTION: f64 = 0.1;

/// The text file at `path` as windows of `sample_shape = [T]` tokens (see the
/// module docs). Errors name the file: unreadable, or too short for one
/// window in each split.
pub fn read_text(path: &Path, sample_shape: &[usize]) -> Result<Dataset> {
    let bytes = std::fs::read(path).map_err(|e| Error::Data {
        path: path.display().to_string(),
        message: format!("cannot read the text: {e}"),
    })?;
    let name = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    text_dataset(&name, &bytes, sample_shape).map_err(|e| match e {
        Error::Data { message, .. } => Error::Data {
            path: path.display().to_string(),
            message,
        },
        other => other,
    })
}

/// `bytes` as windows of `sample_shape = [T]` tokens, named `name` (see the
/// module docs).
pub fn text_dataset(name: &str, bytes: &[u8], sample_shape: &[usize]) -> Result<Dataset> {
    let tokens = match sample_shape {
        &[t] if t > 0 => t,
        other => {
            return Err(Error::invalid(format!(
                "text data needs a model whose input is [tokens] (byte ids, e.g. an Embedding of \
                 {BYTE_VOCAB}); this one takes {other:?}"
            )));
        }
    };
    let cut = ((bytes.len() as f64) * (1.0 - TEST_FRACTION)).round() as usize;
    let (train, test) = bytes.split_at(cut);
    let need = tokens + 1;
    if train.len() < need || test.len() < need {
        return Err(Error::Data {
            path: name.to_string(),
            message: format!(
                "{} bytes of text are too few: windows of {need} bytes (the model's {tokens} \
                 tokens and the next) need at least {} bytes, a tenth of them for the test split",
                bytes.len(),
                (need as f64 / TEST_FRACTION).ceil() as usize
            ),
        });
    }
    Ok(Dataset {
        name: name.to_string(),
        sample_shape: vec![tokens],
        train: windows(train, tokens),
        test: windows(test, tokens),
        class_names: Vec::new(),
    })
}

/// Every window of `tokens + 1` bytes of `text` starting at a multiple of
/// `tokens`: the first `tokens` as ids, the last `tokens` as labels.
fn windows(text: &[u8], tokens: usize) -> Split {
    let count = (text.len() - 1) / tokens;
    let mut x = Vec::with_capacity(count * tokens);
    let mut labels = Vec::with_capacity(count * tokens);
    for w in 0..count {
        let start = w * tokens;
        x.extend(text[start..start + tokens].iter().map(|&b| b as f32));
        labels.extend(text[start + 1..start + tokens + 1].iter().map(|&b| b as u32));
    }
    Split {
        x,
        sample_len: tokens,
        y: Targets::Classes {
            labels,
            classes: BYTE_VOCAB,
            positions: tokens,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_pair_each_byte_with_the_next() {
        let text: Vec<u8> = (0..=200u8).collect();
        let d = text_dataset("t", &text, &[4]).unwrap();
        // 201 bytes: 181 for training (45 windows of 4 + 1), 20 for testing (4).
        assert_eq!((d.train.len(), d.test.len()), (45, 4));
        assert_eq!(&d.train.x[4..8], &[4.0, 5.0, 6.0, 7.0]);
        let Targets::Classes {
            labels, positions, ..
        } = &d.train.y
        else {
            unreachable!()
        };
        assert_eq!((&labels[4..8], *positions), (&[5u32, 6, 7, 8][..], 4));
        // The test split starts after the training text: no window crosses.
        assert_eq!(d.test.x[0], 181.0);
    }

    #[test]
    fn short_text_and_non_sequence_models_are_refused() {
        let e = text_dataset("t", b"short", &[4]).unwrap_err().to_string();
        assert!(e.contains("too few") && e.contains("at least 50 bytes"), "{e}");
        let e = text_dataset("t", &[0; 1000], &[1, 28, 28])
            .unwrap_err()
            .to_string();
        assert!(e.contains("[tokens]"), "{e}");
    }
}
