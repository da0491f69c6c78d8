//! Datasets held in CPU memory as f32 samples and targets, ready to be batched.
//!
//! Images arrive as the seed trainers prepare them: pixel / 255 in [0, 1], NCHW
//! with one channel, no other normalisation.

use std::path::{Path, PathBuf};

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use crate::data::idx::{IdxArray, parse_idx, read_idx_file};
use crate::error::{Error, Result};

/// The label of a position with no target (PyTorch's `ignore_index` -100): a
/// token classifier's padding, special tokens and the sub-word tokens after a
/// word's first. Its loss and gradient are 0, it counts neither in the mean
/// loss nor in accuracy.
pub const NO_LABEL: u32 = u32::MAX;

/// What a model is trained to predict.
#[derive(Clone, Debug, PartialEq)]
pub enum Targets {
    /// Class indices, each `< classes`: one per sample, or one per position of
    /// a sequence sample (a language model's next tokens, a token classifier's
    /// tags, where [`NO_LABEL`] marks a position with no target).
    Classes {
        /// The class indices, `positions` per sample, one sample after another.
        labels: Vec<u32>,
        /// Number of classes.
        classes: usize,
        /// Labels per sample: 1, or a sequence model's positions (see
        /// [`crate::graph::Loss::label_positions`]).
        positions: usize,
    },
    /// `dim` real values per sample (regression, binary targets in {0, 1}).
    Values {
        /// The values, `dim` per sample, one sample after another.
        values: Vec<f32>,
        /// Number of values per sample.
        dim: usize,
    },
}

impl Targets {
    /// Number of samples the targets cover.
    pub fn len(&self) -> usize {
        match self {
            Targets::Classes {
                labels, positions, ..
            } => labels.len() / positions.max(&1),
            Targets::Values { values, dim } => values.len() / dim.max(&1),
        }
    }

    /// Whether there are no targets.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The labels a mean loss and accuracy count: class labels other than
    /// [`NO_LABEL`] (every position of a sequence's), or one per sample of
    /// target values.
    pub fn counted(&self) -> usize {
        self.counted_by_sample().iter().sum()
    }

    /// [`Targets::counted`] of each sample.
    pub fn counted_by_sample(&self) -> Vec<usize> {
        match self {
            Targets::Classes {
                labels, positions, ..
            } => labels
                .chunks((*positions).max(1))
                .map(|s| s.iter().filter(|&&l| l != NO_LABEL).count())
                .collect(),
            Targets::Values { .. } => vec![1; self.len()],
        }
    }

    fn select(&self, idx: &[usize]) -> Targets {
        match self {
            Targets::Classes {
                labels,
                classes,
                positions,
            } => Targets::Classes {
                labels: idx
                    .iter()
                    .flat_map(|&i| labels[i * positions..(i + 1) * positions].iter().copied())
                    .collect(),
                classes: *classes,
                positions: *positions,
            },
            Targets::Values { values, dim } => Targets::Values {
                values: idx
                    .iter()
                    .flat_map(|&i| values[i * dim..(i + 1) * dim].iter().copied())
                    .collect(),
                dim: *dim,
            },
        }
    }
}

/// Samples (flattened, `sample_len` f32 each) and their targets.
#[derive(Clone, Debug, PartialEq)]
pub struct Split {
    /// The samples, `sample_len` values each, one after another.
    pub x: Vec<f32>,
    /// Number of f32 values in one sample.
    pub sample_len: usize,
    /// The samples' targets, in the same order.
    pub y: Targets,
}

impl Split {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.y.len()
    }

    /// Whether the split holds no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checks that the parts agree: `x` holds whole samples, as many as the
    /// targets (labels `positions >= 1` per sample, each `< classes`, or `dim`
    /// values per sample).
    pub fn validate(&self) -> Result<()> {
        let bad = |message: String| Err(Error::shape("data", message));
        if self.sample_len == 0 || !self.x.len().is_multiple_of(self.sample_len) {
            return bad(format!(
                "{} input values are not whole samples of {}",
                self.x.len(),
                self.sample_len
            ));
        }
        let n = self.x.len() / self.sample_len;
        match &self.y {
            Targets::Classes {
                labels,
                classes,
                positions,
            } => {
                if *positions == 0 || labels.len() != n * positions {
                    return bad(format!(
                        "{n} samples with {positions} label(s) each need {} labels, the data has {}",
                        n * positions,
                        labels.len()
                    ));
                }
                if let Some((i, l)) = labels
                    .iter()
                    .enumerate()
                    .find(|&(_, &l)| l as usize >= *classes && !(*positions > 1 && l == NO_LABEL))
                {
                    return bad(format!(
                        "label {l} at index {i} is not below the {classes} classes"
                    ));
                }
            }
            Targets::Values { values, dim } => {
                if *dim == 0 || values.len() != n * dim {
                    return bad(format!(
                        "{n} samples with {dim} target value(s) each need {} values, the data has {}",
                        n * dim,
                        values.len()
                    ));
                }
            }
        }
        Ok(())
    }

    /// The samples at `idx`, in that order.
    pub fn select(&self, idx: &[usize]) -> Split {
        let s = self.sample_len;
        Split {
            x: idx
                .iter()
                .flat_map(|&i| self.x[i * s..(i + 1) * s].iter().copied())
                .collect(),
            sample_len: s,
            y: self.y.select(idx),
        }
    }

    /// How many samples [`Split::split_validation`] leaves for training and for
    /// validation, without copying any.
    pub fn validation_sizes(&self, fraction: f64) -> Result<(usize, usize)> {
        if !(0.0..1.0).contains(&fraction) {
            return Err(Error::invalid(format!(
                "validation split {fraction} is outside [0, 1)"
            )));
        }
        let n = self.len();
        let n_val = (n as f64 * fraction).floor() as usize;
        if n_val == n && n > 0 {
            return Err(Error::invalid(format!(
                "validation split {fraction} leaves no training samples out of {n}"
            )));
        }
        Ok((n - n_val, n_val))
    }

    /// Splits off the last `fraction` of the samples as a validation set, as Keras'
    /// `validation_split` does (taken before any shuffling).
    pub fn split_validation(&self, fraction: f64) -> Result<(Split, Option<Split>)> {
        let (n_train, n_val) = self.validation_sizes(fraction)?;
        if n_val == 0 {
            return Ok((self.clone(), None));
        }
        let n = n_train + n_val;
        let train: Vec<usize> = (0..n - n_val).collect();
        let val: Vec<usize> = (n - n_val..n).collect();
        Ok((self.select(&train), Some(self.select(&val))))
    }

    /// Copies the samples at `idx` into `x` and their targets into `labels` or
    /// `values` (whichever the targets are), reusing the vectors' memory.
    pub fn gather(&self, idx: &[usize], x: &mut Vec<f32>, labels: &mut Vec<u32>, values: &mut Vec<f32>) {
        let s = self.sample_len;
        x.clear();
        labels.clear();
        values.clear();
        for &i in idx {
            x.extend_from_slice(&self.x[i * s..(i + 1) * s]);
        }
        match &self.y {
            Targets::Classes {
                labels: l, positions, ..
            } => {
                for &i in idx {
                    labels.extend_from_slice(&l[i * positions..(i + 1) * positions]);
                }
            }
            Targets::Values { values: v, dim } => {
                for &i in idx {
                    values.extend_from_slice(&v[i * dim..(i + 1) * dim]);
                }
            }
        }
    }
}

/// A named dataset: train and test splits and the shape of one sample.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// The dataset's name, e.g. `mnist-10k` or the folder's name.
    pub name: String,
    /// Shape of one sample, e.g. `[1, 28, 28]` or `[2]`.
    pub sample_shape: Vec<usize>,
    /// The training samples.
    pub train: Split,
    /// The test samples.
    pub test: Split,
    /// Validation samples of the dataset's own (an image folder's `val/`, a text
    /// corpus' validation files): give them to
    /// [`fit_validated`](crate::train::fit_validated) (as `wgml train` does) to
    /// validate on them instead of splitting some off the training samples;
    /// `None` for most datasets.
    pub validation: Option<Split>,
    /// Names of the classes by label, where the data names them (an image folder's
    /// class folders); empty when the classes are just numbered.
    pub class_names: Vec<String>,
}

/// Where Debian's `dataset-fashion-mnist` package installs Fashion-MNIST.
pub const FASHION_MNIST_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// The standard IDX file names, tried with and without `.gz`.
const TRAIN_IMAGES: &str = "train-images-idx3-ubyte";
const TRAIN_LABELS: &str = "train-labels-idx1-ubyte";
const TEST_IMAGES: &str = "t10k-images-idx3-ubyte";
const TEST_LABELS: &str = "t10k-labels-idx1-ubyte";

static EMBEDDED: [(&str, &[u8]); 4] = [
    (
        TRAIN_IMAGES,
        include_bytes!("../../data/mnist-10k/train-images-idx3-ubyte.gz"),
    ),
    (
        TRAIN_LABELS,
        include_bytes!("../../data/mnist-10k/train-labels-idx1-ubyte.gz"),
    ),
    (
        TEST_IMAGES,
        include_bytes!("../../data/mnist-10k/t10k-images-idx3-ubyte.gz"),
    ),
    (
        TEST_LABELS,
        include_bytes!("../../data/mnist-10k/t10k-labels-idx1-ubyte.gz"),
    ),
];

fn image_split(name: &str, images: IdxArray, labels: IdxArray) -> Result<(Split, [usize; 2])> {
    let err = |message: String| Error::Data {
        path: name.to_string(),
        message,
    };
    if images.dims.len() != 3 {
        return Err(err(format!(
            "images must have 3 dimensions [N, H, W], found {:?}",
            images.dims
        )));
    }
    if labels.dims.len() != 1 {
        return Err(err(format!(
            "labels must have 1 dimension [N], found {:?}",
            labels.dims
        )));
    }
    let (n, h, w) = (images.dims[0], images.dims[1], images.dims[2]);
    if n != labels.dims[0] {
        return Err(err(format!("{n} images but {} labels", labels.dims[0])));
    }
    if n == 0 || h == 0 || w == 0 {
        return Err(err(format!("empty image set {:?}", images.dims)));
    }
    if let Some((i, &l)) = labels.data.iter().enumerate().find(|&(_, &l)| l >= 10) {
        return Err(err(format!("label {l} at index {i} is not a digit class 0-9")));
    }
    let x = images.data.iter().map(|&p| p as f32 / 255.0).collect();
    let split = Split {
        x,
        sample_len: h * w,
        y: Targets::Classes {
            labels: labels.data.iter().map(|&l| l as u32).collect(),
            classes: 10,
            positions: 1,
        },
    };
    Ok((split, [h, w]))
}

fn assemble(name: &str, files: [(String, IdxArray); 4]) -> Result<Dataset> {
    let [(tin, ti), (_, tl), (sin, si), (_, sl)] = files;
    let (train, hw) = image_split(&tin, ti, tl)?;
    let (test, hw_test) = image_split(&sin, si, sl)?;
    if hw != hw_test {
        return Err(Error::Data {
            path: sin,
            message: format!("test images are {hw_test:?}, training images {hw:?}"),
        });
    }
    Ok(Dataset {
        name: name.to_string(),
        sample_shape: vec![1, hw[0], hw[1]],
        train,
        test,
        class_names: Vec::new(),
        validation: None,
    })
}

impl Dataset {
    /// The embedded MNIST subset (8,000 train / 2,000 test), compiled into wgml.
    pub fn mnist_10k() -> Result<Dataset> {
        let files = EMBEDDED.map(|(file, bytes)| {
            let name = format!("embedded mnist-10k/{file}.gz");
            parse_idx(&name, bytes).map(|a| (name, a))
        });
        let [a, b, c, d] = files;
        assemble("mnist-10k", [a?, b?, c?, d?])
    }

    /// A dataset from any folder holding the four standard IDX files (raw or `.gz`).
    pub fn from_idx_dir(dir: &Path) -> Result<Dataset> {
        if !dir.is_dir() {
            return Err(Error::Data {
                path: dir.display().to_string(),
                message: "is not a folder; give a folder holding train-images-idx3-ubyte[.gz], \
                          train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz] and t10k-labels-idx1-ubyte[.gz]"
                    .into(),
            });
        }
        let load = |stem: &str| -> Result<(String, IdxArray)> {
            let candidates = [dir.join(format!("{stem}.gz")), dir.join(stem)];
            let path: &PathBuf = candidates
                .iter()
                .find(|p| p.is_file())
                .ok_or_else(|| Error::Data {
                    path: dir.display().to_string(),
                    message: format!("missing {stem}.gz (or {stem})"),
                })?;
            Ok((path.display().to_string(), read_idx_file(path)?))
        };
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| dir.display().to_string());
        assemble(
            &name,
            [
                load(TRAIN_IMAGES)?,
                load(TRAIN_LABELS)?,
                load(TEST_IMAGES)?,
                load(TEST_LABELS)?,
            ],
        )
    }

    /// Fashion-MNIST as installed by `apt-get install dataset-fashion-mnist`.
    pub fn fashion_mnist() -> Result<Dataset> {
        let dir = Path::new(FASHION_MNIST_DIR);
        if !dir.is_dir() {
            return Err(Error::Data {
                path: FASHION_MNIST_DIR.into(),
                message: "Fashion-MNIST is not installed: run `apt-get install dataset-fashion-mnist`, \
                          or pass the folder holding its IDX files"
                    .into(),
            });
        }
        let mut d = Self::from_idx_dir(dir)?;
        d.name = "fashion-mnist".into();
        Ok(d)
    }

    /// `mnist-10k`, `fashion-mnist`, `text:PATH` (a text file or a folder of them,
    /// as byte-level windows of `sample_shape = [tokens]` for a language model,
    /// see [`crate::data::text`]),
    /// or a folder: of the four IDX files, or of images (`train/<class>/*`,
    /// `test/<class>/*`, see [`crate::data::image_folder`]) read as samples of
    /// `sample_shape`.
    pub fn open(name: &str, sample_shape: &[usize]) -> Result<Dataset> {
        let dir = Path::new(name);
        if let Some(path) = name.strip_prefix("text:") {
            return crate::data::text::read_text(Path::new(path), sample_shape);
        }
        match name {
            "mnist-10k" | "mnist" | "fashion-mnist" | "fashion" => Self::by_name(name),
            _ if crate::data::text_classes::is_text_classes(dir) => Err(Error::Data {
                path: name.to_string(),
                message: "holds texts by class, which need a tokenizer and a padding id: read it with \
                          data::text_classes::read_text_classes (wgml train pads with the model's \
                          Embedding mask_id)"
                    .into(),
            }),
            _ if crate::data::text_table::is_text_table(dir) => Err(Error::Data {
                path: name.to_string(),
                message: "holds labelled texts in tables, which need a tokenizer and a padding id: read \
                          it with data::text_table::read_text_table (wgml train pads with the model's \
                          Embedding mask_id)"
                    .into(),
            }),
            _ if crate::data::image_folder::is_image_folder(dir) => {
                crate::data::image_folder::read_image_folder(dir, sample_shape)
            }
            _ => Self::from_idx_dir(dir),
        }
    }

    /// `mnist-10k`, `fashion-mnist`, or a folder path.
    pub fn by_name(name: &str) -> Result<Dataset> {
        match name {
            "mnist-10k" | "mnist" => Self::mnist_10k(),
            "fashion-mnist" | "fashion" => Self::fashion_mnist(),
            path => Self::from_idx_dir(Path::new(path)),
        }
    }

    /// The binary classifier's set: 100 samples of two features in two Gaussian
    /// blobs (class 0 around (-1, -1), class 1 around (1, 1), σ = 0.7), 80 train /
    /// 20 test, seeded.
    pub fn two_blobs(seed: u64) -> Dataset {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut x = Vec::with_capacity(200);
        let mut y = Vec::with_capacity(100);
        for i in 0..100 {
            let class = (i % 2) as f32;
            let centre = if class == 0.0 { -1.0 } else { 1.0 };
            for _ in 0..2 {
                x.push(centre + 0.7 * gaussian(&mut rng));
            }
            y.push(class);
        }
        let all = Split {
            x,
            sample_len: 2,
            y: Targets::Values { values: y, dim: 1 },
        };
        let mut order: Vec<usize> = (0..100).collect();
        order.shuffle(&mut rng);
        Dataset {
            name: "two-blobs".into(),
            sample_shape: vec![2],
            train: all.select(&order[..80]),
            test: all.select(&order[80..]),
            class_names: Vec::new(),
            validation: None,
        }
    }

    /// The regression set: y = 0.5·x0 − 1.5·x1 + 2·x2 + 0.3 + noise(σ 0.05) with x
    /// uniform in [0, 1)³; 200 train / 50 test, seeded.
    pub fn linear_regression(seed: u64) -> Dataset {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut make = |n: usize| {
            let mut x = Vec::with_capacity(n * 3);
            let mut y = Vec::with_capacity(n);
            for _ in 0..n {
                let v: [f32; 3] = [rng.random(), rng.random(), rng.random()];
                x.extend_from_slice(&v);
                y.push(0.5 * v[0] - 1.5 * v[1] + 2.0 * v[2] + 0.3 + 0.05 * gaussian(&mut rng));
            }
            Split {
                x,
                sample_len: 3,
                y: Targets::Values { values: y, dim: 1 },
            }
        };
        let train = make(200);
        let test = make(50);
        Dataset {
            name: "linear-regression".into(),
            sample_shape: vec![3],
            train,
            test,
            class_names: Vec::new(),
            validation: None,
        }
    }
}

/// A standard normal sample (Box-Muller).
pub(crate) fn gaussian(rng: &mut impl Rng) -> f32 {
    let u1: f64 = rng.random::<f64>().max(1e-12);
    let u2: f64 = rng.random();
    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_mnist_loads_with_expected_sizes() {
        let d = Dataset::mnist_10k().unwrap();
        assert_eq!(d.sample_shape, vec![1, 28, 28]);
        assert_eq!(d.train.len(), 8000);
        assert_eq!(d.test.len(), 2000);
        assert!(d.train.x.iter().all(|&p| (0.0..=1.0).contains(&p)));
        let (tr, val) = d.train.split_validation(0.2).unwrap();
        assert_eq!((tr.len(), val.unwrap().len()), (6400, 1600));
    }

    #[test]
    fn missing_folder_and_files_are_errors() {
        let e = Dataset::by_name("/nonexistent/folder").unwrap_err().to_string();
        assert!(e.contains("is not a folder"), "{e}");
        let dir = std::env::temp_dir().join(format!("wgml-empty-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let e = Dataset::from_idx_dir(&dir).unwrap_err().to_string();
        assert!(e.contains("missing train-images-idx3-ubyte"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn image_and_label_counts_must_agree() {
        let images = IdxArray {
            dims: vec![2, 2, 2],
            data: vec![0; 8],
        };
        let labels = IdxArray {
            dims: vec![3],
            data: vec![0; 3],
        };
        let e = image_split("x", images, labels).unwrap_err().to_string();
        assert!(e.contains("2 images but 3 labels"), "{e}");
    }

    #[test]
    fn validation_split_outside_range_is_an_error() {
        let d = Dataset::two_blobs(1);
        assert!(d.train.split_validation(1.0).is_err());
        assert!(d.train.split_validation(-0.1).is_err());
        assert!(d.train.split_validation(0.0).unwrap().1.is_none());
    }
}
