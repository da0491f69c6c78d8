//! Datasets from folders of images, as Keras' `image_dataset_from_directory` and
//! PyTorch's `ImageFolder`:
//!
//! ```text
//! DIR/train/<class>/*.png|jpg|jpeg
//! DIR/test/<class>/*.png|jpg|jpeg
//! DIR/val/<class>/*.png|jpg|jpeg       (optional; also `valid/` or `validation/`)
//! ```
//!
//! Classes are the subfolder names in sorted order (label 0 is the first), and every
//! split must have the same ones. A validation folder becomes the dataset's
//! `validation` split (`train::fit_validated` validates on it; `wgml train` does);
//! two at once (`val/` and `valid/`) are refused as ambiguous. Each image is
//! converted to the model's input
//! `[C, H, W]`: grey (`C = 1`, luma) or RGB (`C = 3`), resized to `H × W` with a
//! triangle (bilinear) filter, each value `pixel / 255` in `[0, 1]`, channels first.
//! Images are read in sorted file order; nothing else is normalised or shuffled here
//! (`fit` shuffles each epoch).

use std::path::{Path, PathBuf};

use crate::data::{Dataset, Split, Targets};
use crate::error::{Error, Result};

/// The names a validation folder may have, in the order they are looked for.
pub(crate) const VALIDATION_FOLDERS: [&str; 3] = ["val", "valid", "validation"];

/// File extensions read as images (case-insensitive).
pub(crate) const EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

pub(crate) fn err(path: &Path, message: String) -> Error {
    Error::Data {
        path: path.display().to_string(),
        message,
    }
}

fn io(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Whether `dir` is laid out as an image folder (has `train/` and `test/` folders).
pub fn is_image_folder(dir: &Path) -> bool {
    dir.join("train").is_dir() && dir.join("test").is_dir()
}

/// The entries of `dir` that satisfy `keep`, sorted by name.
pub(crate) fn sorted_entries(dir: &Path, keep: impl Fn(&Path) -> bool) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io(dir, e))? {
        let path = entry.map_err(|e| io(dir, e))?.path();
        if keep(&path) {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

fn is_image(path: &Path) -> bool {
    path.is_file()
        && path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| EXTENSIONS.iter().any(|x| e.eq_ignore_ascii_case(x)))
}

pub(crate) fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// One image as `[C, H, W]` values in `[0, 1]` (grey when `C = 1`, else RGB), as
/// the folders' images are read.
pub fn pixels(path: &Path, [c, h, w]: [usize; 3]) -> Result<Vec<f32>> {
    let bytes = std::fs::read(path).map_err(|e| err(path, format!("cannot read the image: {e}")))?;
    let img = decode(path, &bytes)?;
    let resize =
        |i: &image::DynamicImage| i.resize_exact(w as u32, h as u32, image::imageops::FilterType::Triangle);
    Ok(match c {
        1 => resize(&img)
            .to_luma8()
            .pixels()
            .map(|p| p.0[0] as f32 / 255.0)
            .collect(),
        _ => {
            let rgb = resize(&img).to_rgb8();
            let mut x = vec![0.0; 3 * h * w];
            for (i, p) in rgb.pixels().enumerate() {
                for ch in 0..3 {
                    x[ch * h * w + i] = p.0[ch] as f32 / 255.0;
                }
            }
            x
        }
    })
}

/// Most bytes a decoder may allocate per byte of the file: PNG's deflate cannot
/// expand data more than ~1,032 times, and a JPEG of flat 8×8 blocks about as
/// much, so an image claiming more is corrupt or hostile (a 200-byte file whose
/// header declares 60,000 × 60,000 pixels).
pub const MAX_EXPANSION: u64 = 1_100;
/// Decoding allowance independent of the file's size (small files, headers).
pub const BASE_ALLOWANCE: u64 = 1 << 20;
/// Largest width or height read.
pub const MAX_SIDE: u32 = 16_384;

/// Decodes image `bytes` (`path` names them in errors) with the decoder's
/// allocations bounded by the file's real size (see [`MAX_EXPANSION`]), so a
/// header that lies about the image's size is an error, never a huge allocation.
pub fn decode(path: &Path, bytes: &[u8]) -> Result<image::DynamicImage> {
    let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| err(path, format!("cannot read the image: {e}")))?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some((bytes.len() as u64).saturating_mul(MAX_EXPANSION) + BASE_ALLOWANCE);
    reader.limits(limits);
    reader.decode().map_err(|e| {
        err(
            path,
            format!("cannot read the image ({} bytes): {e}", bytes.len()),
        )
    })
}

/// One split (`DIR/train` or `DIR/test`): its class names and samples.
fn read_split(dir: &Path, shape: [usize; 3]) -> Result<(Vec<String>, Split)> {
    let classes = sorted_entries(dir, Path::is_dir)?;
    if classes.len() < 2 {
        return Err(err(
            dir,
            format!(
                "holds {} class folder(s); an image dataset needs one folder per class, at least two",
                classes.len()
            ),
        ));
    }
    let (mut x, mut labels) = (Vec::new(), Vec::new());
    for (label, class) in classes.iter().enumerate() {
        let files = sorted_entries(class, is_image)?;
        if files.is_empty() {
            return Err(err(class, "holds no .png, .jpg or .jpeg image".into()));
        }
        for f in files {
            x.extend(pixels(&f, shape)?);
            labels.push(label as u32);
        }
    }
    let names = classes.iter().map(|c| file_name(c)).collect();
    let split = Split {
        x,
        sample_len: shape.iter().product(),
        y: Targets::Classes {
            classes: classes.len(),
            labels,
            positions: 1,
        },
    };
    Ok((names, split))
}

/// `dir`'s validation folder ([`VALIDATION_FOLDERS`]), if it has one; two at
/// once are refused as ambiguous.
pub(crate) fn validation_folder(dir: &Path) -> Result<Option<PathBuf>> {
    let folders: Vec<PathBuf> = VALIDATION_FOLDERS
        .iter()
        .map(|v| dir.join(v))
        .filter(|v| v.is_dir())
        .collect();
    if folders.len() > 1 {
        let names: Vec<String> = folders.iter().map(|f| file_name(f)).collect();
        return Err(err(
            dir,
            format!(
                "holds {} validation folders ({}); keep one",
                folders.len(),
                names.join(", ")
            ),
        ));
    }
    Ok(folders.into_iter().next())
}

/// Reads `DIR/train` and `DIR/test` (see the module docs) as samples of `shape`
/// (`[C, H, W]`, `C` 1 or 3).
pub fn read_image_folder(dir: &Path, shape: &[usize]) -> Result<Dataset> {
    let &[c, h, w] = shape else {
        return Err(err(
            dir,
            format!("holds images, but the model takes samples of shape {shape:?}, not [C, H, W]"),
        ));
    };
    if !(c == 1 || c == 3) || h == 0 || w == 0 {
        return Err(err(
            dir,
            format!("holds images, but the model takes {shape:?}: images give 1 (grey) or 3 (RGB) channels"),
        ));
    }
    let (train_classes, train) = read_split(&dir.join("train"), [c, h, w])?;
    let (test_classes, test) = read_split(&dir.join("test"), [c, h, w])?;
    if train_classes != test_classes {
        return Err(err(
            dir,
            format!(
                "train has classes {train_classes:?} but test has {test_classes:?}; they must be the same"
            ),
        ));
    }
    let validation = match validation_folder(dir)? {
        Some(folder) => {
            let (classes, split) = read_split(&folder, [c, h, w])?;
            if classes != train_classes {
                return Err(err(
                    &folder,
                    format!("has classes {classes:?} but train has {train_classes:?}; they must be the same"),
                ));
            }
            Some(split)
        }
        None => None,
    };
    Ok(Dataset {
        name: file_name(dir),
        sample_shape: shape.to_vec(),
        train,
        test,
        validation,
        class_names: train_classes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch folder for one test.
    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("wgml-images-{name}-{}", std::process::id()));
        std::fs::remove_dir_all(&dir).ok();
        dir
    }

    /// Writes a `w × h` image of one colour.
    fn write(path: &Path, w: u32, h: u32, rgb: [u8; 3]) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        image::RgbImage::from_pixel(w, h, image::Rgb(rgb))
            .save(path)
            .unwrap();
    }

    #[test]
    fn classes_come_from_sorted_folders_and_pixels_from_the_images() {
        let dir = scratch("read");
        // Out of order on purpose; sizes differ from the model's input.
        write(&dir.join("train/zebra/b.png"), 5, 3, [255, 0, 51]);
        write(&dir.join("train/zebra/a.png"), 5, 3, [0, 255, 0]);
        write(&dir.join("train/ant/x.PNG"), 9, 9, [51, 51, 51]);
        write(&dir.join("test/ant/y.png"), 2, 2, [204, 204, 204]);
        write(&dir.join("test/zebra/z.png"), 2, 2, [0, 0, 255]);
        std::fs::write(dir.join("train/zebra/notes.txt"), "not an image").unwrap();
        assert!(is_image_folder(&dir));

        let d = read_image_folder(&dir, &[3, 4, 4]).unwrap();
        assert_eq!(d.class_names, ["ant", "zebra"]);
        assert_eq!(d.sample_shape, [3, 4, 4]);
        let labels = |s: &Split| match &s.y {
            Targets::Classes { labels, classes, .. } => (labels.clone(), *classes),
            other => panic!("{other:?}"),
        };
        assert_eq!(labels(&d.train), (vec![0, 1, 1], 2));
        assert_eq!(labels(&d.test), (vec![0, 1], 2));
        // Channels first; a.png (green) comes before b.png within "zebra".
        let plane = |s: &Split, i: usize, c: usize| s.x[i * 48 + c * 16..][..16].to_vec();
        assert_eq!(plane(&d.train, 0, 0), vec![0.2; 16]);
        assert_eq!(plane(&d.train, 1, 1), vec![1.0; 16]);
        assert_eq!(plane(&d.train, 2, 0), vec![1.0; 16]);
        assert_eq!(plane(&d.train, 2, 2), vec![0.2; 16]);
        assert_eq!(plane(&d.test, 1, 2), vec![1.0; 16]);

        // Grey: luma of each colour.
        let g = read_image_folder(&dir, &[1, 2, 3]).unwrap();
        assert_eq!(g.train.sample_len, 6);
        assert_eq!(&g.train.x[..6], &[0.2; 6]);
        assert!(g.validation.is_none());

        // A validation folder (val/, valid/ or validation/) with the same classes.
        write(&dir.join("valid/zebra/v.png"), 3, 3, [0, 0, 0]);
        write(&dir.join("valid/ant/w.png"), 3, 3, [255, 255, 255]);
        let v = read_image_folder(&dir, &[1, 2, 2]).unwrap().validation.unwrap();
        assert_eq!(labels(&v), (vec![0, 1], 2));
        assert_eq!(v.x, [vec![1.0; 4], vec![0.0; 4]].concat());
        write(&dir.join("val/ant/t.png"), 3, 3, [0, 0, 0]);
        let e = read_image_folder(&dir, &[1, 2, 2]).unwrap_err().to_string();
        assert!(e.contains("2 validation folders (val, valid)"), "{e}");
        std::fs::remove_dir_all(dir.join("val")).unwrap();
        write(&dir.join("valid/yak/u.png"), 3, 3, [0, 0, 0]);
        let e = read_image_folder(&dir, &[1, 2, 2]).unwrap_err().to_string();
        assert!(e.contains("valid") && e.contains("\"yak\""), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn bad_folders_are_errors_that_name_the_problem() {
        let dir = scratch("bad");
        write(&dir.join("train/a/1.png"), 2, 2, [0, 0, 0]);
        write(&dir.join("train/b/1.png"), 2, 2, [9, 9, 9]);
        write(&dir.join("test/a/1.png"), 2, 2, [0, 0, 0]);
        let e = |shape: &[usize]| read_image_folder(&dir, shape).unwrap_err().to_string();
        // test/ has one class folder.
        assert!(e(&[1, 2, 2]).contains("1 class folder(s)"), "{}", e(&[1, 2, 2]));
        write(&dir.join("test/c/1.png"), 2, 2, [0, 0, 0]);
        let m = e(&[1, 2, 2]);
        assert!(
            m.contains("[\"a\", \"b\"]") && m.contains("[\"a\", \"c\"]"),
            "{m}"
        );
        std::fs::remove_dir_all(dir.join("test/c")).unwrap();
        std::fs::create_dir_all(dir.join("test/b")).unwrap();
        assert!(e(&[1, 2, 2]).contains("holds no .png"), "{}", e(&[1, 2, 2]));
        std::fs::write(dir.join("test/b/broken.png"), b"not a png").unwrap();
        let m = e(&[1, 2, 2]);
        assert!(
            m.contains("broken.png") && m.contains("cannot read the image"),
            "{m}"
        );
        assert!(e(&[2]).contains("not [C, H, W]"));
        assert!(e(&[2, 4, 4]).contains("1 (grey) or 3 (RGB)"));
        std::fs::remove_dir_all(&dir).ok();
    }
}
