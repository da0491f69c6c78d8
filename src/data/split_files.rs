//! The splits of a dataset kept as files: one file split by position, or a
//! folder with a file per split, as Hugging Face datasets and the shared tasks
//! publish them (`train.jsonl`, `validation.jsonl`, `test.jsonl`; SQuAD's
//! `train-v1.1.json` and `dev-v1.1.json`).

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Names of a validation split's file.
pub const VALIDATION_NAMES: [&str; 4] = ["validation", "valid", "val", "dev"];

/// The file of split `name` in folder `dir`, if any: a file whose name without
/// its extension is `name`, or `name` then `-`, `_` or `.` and more
/// (`train-v1.1.json`), in any case; the first in name order.
pub fn split_file(dir: &Path, name: &str) -> Option<PathBuf> {
    let named = |p: &Path| {
        let Some(stem) = p.file_stem().and_then(|s| s.to_str()) else {
            return false;
        };
        let stem = stem.to_ascii_lowercase();
        stem == name
            || stem
                .strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(['-', '_', '.']))
    };
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && named(p))
        .collect();
    found.sort();
    found.into_iter().next()
}

/// The validation file of folder `dir` ([`VALIDATION_NAMES`]), if any; an error
/// when it holds several.
pub fn validation_file(dir: &Path) -> Result<Option<PathBuf>> {
    let found: Vec<PathBuf> = VALIDATION_NAMES
        .iter()
        .filter_map(|n| split_file(dir, n))
        .collect();
    match found.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(one.clone())),
        many => Err(Error::Data {
            path: dir.display().to_string(),
            message: format!("holds {} validation files ({many:?}); keep one", many.len()),
        }),
    }
}

/// Items read from one file split by position: every `every`-th (1-based) to
/// the test split, the others to training.
pub fn every_nth<T>(items: Vec<T>, every: usize) -> (Vec<T>, Vec<T>) {
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for (i, item) in items.into_iter().enumerate() {
        if (i + 1).is_multiple_of(every.max(1)) {
            test.push(item);
        } else {
            train.push(item);
        }
    }
    (train, test)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_files_are_found_by_name_and_suffix() {
        let dir = std::env::temp_dir().join(format!("wgml-split-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for name in ["train-v1.1.json", "DEV-v1.1.json", "training.txt", "test"] {
            std::fs::write(dir.join(name), "").unwrap();
        }
        let file = |name: &str| split_file(&dir, name).map(|p| p.file_name().unwrap().to_owned());
        assert_eq!(file("train").unwrap(), "train-v1.1.json");
        assert_eq!(file("test").unwrap(), "test");
        assert_eq!(file("dev").unwrap(), "DEV-v1.1.json");
        assert!(file("validation").is_none());
        assert_eq!(
            validation_file(&dir).unwrap().unwrap().file_name().unwrap(),
            "DEV-v1.1.json"
        );
        std::fs::write(dir.join("val.jsonl"), "").unwrap();
        assert!(
            validation_file(&dir)
                .unwrap_err()
                .to_string()
                .contains("2 validation files")
        );
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(every_nth((1..=7).collect(), 3), (vec![1, 2, 4, 5, 7], vec![3, 6]));
    }
}
