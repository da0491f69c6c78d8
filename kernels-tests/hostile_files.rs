//! Hostile files: seeded mutations (truncations, bit flips, overwritten bytes,
//! huge values written into headers, deleted and repeated ranges, and numbers
//! swapped in JSON) of a valid file of every kind wgml reads from users — IDX
//! datasets (raw and gzip), checkpoints (safetensors + the architecture JSON),
//! JSON model descriptions, image-folder images and training backups. Over
//! 10,000 inputs in all: none may panic, every refusal is an `Error` with a
//! message, and no parse allocates more than the file's real size allows (a header
//! that declares 2^40 elements must not get them).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use wgml::checkpoint::{self, Architecture};
use wgml::data::{Dataset, idx, image_folder};
use wgml::kernels::optim::Optimizer;
use wgml::nn::{Layer, LayerActivation as A, Loss, Sequential, zoo};
use wgml::train::{Backup, FitConfig, fit};

use crate::alloc::largest_allocation;
use crate::common::*;

/// Values that break sizes and offsets when a header trusts them.
const HUGE_U32: [u32; 6] = [u32::MAX, 0x7fff_ffff, 0x8000_0000, 1 << 30, 0x0001_0000, 0];
const HUGE_U64: [u64; 5] = [u64::MAX, 1 << 40, 1 << 62, u32::MAX as u64 + 1, 0];
/// Numbers swapped into JSON texts.
const JSON_NUMBERS: [&str; 11] = [
    "0",
    "-1",
    "4294967296",
    "18446744073709551616",
    "1e308",
    "-1e308",
    "99999999",
    "2147483648",
    "1.5",
    "1099511627776",
    "340282366920938463463374607431768211456",
];

/// Seeded mutations of byte strings.
struct Mutator {
    rng: StdRng,
}

impl Mutator {
    fn new(seed: u64) -> Mutator {
        Mutator {
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// A position, biased to the first 64 bytes, where headers live.
    fn position(&mut self, len: usize) -> usize {
        if len == 0 {
            return 0;
        }
        if self.rng.random_bool(0.6) {
            self.rng.random_range(0..len.min(64))
        } else {
            self.rng.random_range(0..len)
        }
    }

    /// One to three mutations of `base`.
    fn bytes(&mut self, base: &[u8]) -> Vec<u8> {
        let mut v = base.to_vec();
        for _ in 0..self.rng.random_range(1..=3) {
            let len = v.len();
            match self.rng.random_range(0..9) {
                0 => {
                    let at = self.rng.random_range(0..=len);
                    v.truncate(at);
                }
                1 if len > 0 => {
                    let at = self.position(len);
                    v[at] ^= 1 << self.rng.random_range(0..8);
                }
                2 if len > 0 => {
                    let at = self.position(len);
                    v[at] = [0x00, 0xff, 0x7f, 0x80, self.rng.random()][self.rng.random_range(0..5)];
                }
                3 if len >= 4 => {
                    let at = self.position(len - 3).min(len - 4);
                    let x = HUGE_U32[self.rng.random_range(0..HUGE_U32.len())];
                    let b = if self.rng.random_bool(0.5) {
                        x.to_be_bytes()
                    } else {
                        x.to_le_bytes()
                    };
                    v[at..at + 4].copy_from_slice(&b);
                }
                4 if len >= 8 => {
                    let at = self.position(len - 7).min(len - 8);
                    let x = HUGE_U64[self.rng.random_range(0..HUGE_U64.len())];
                    v[at..at + 8].copy_from_slice(&x.to_le_bytes());
                }
                5 if len > 0 => {
                    let at = self.position(len);
                    let n = self.rng.random_range(1..=(len - at).min(64));
                    v.drain(at..at + n);
                }
                6 if len > 0 => {
                    let at = self.position(len);
                    let n = self.rng.random_range(1..=(len - at).min(64));
                    let chunk: Vec<u8> = v[at..at + n].to_vec();
                    let to = self.rng.random_range(0..=len);
                    v.splice(to..to, chunk);
                }
                7 => {
                    let at = self.rng.random_range(0..=len);
                    let n = self.rng.random_range(1..=16);
                    let junk: Vec<u8> = (0..n).map(|_| self.rng.random()).collect();
                    v.splice(at..at, junk);
                }
                _ => {
                    v.extend((0..self.rng.random_range(1..=8)).map(|_| self.rng.random::<u8>()));
                }
            }
        }
        v
    }

    /// A JSON text with one to three numbers swapped for hostile ones, or a
    /// structural character removed, or (one time in four) mutated as bytes.
    fn json(&mut self, base: &str) -> Vec<u8> {
        if self.rng.random_ratio(1, 4) {
            return self.bytes(base.as_bytes());
        }
        let mut text = base.to_string();
        for _ in 0..self.rng.random_range(1..=3) {
            let numbers: Vec<(usize, usize)> = number_spans(&text);
            if self.rng.random_ratio(1, 5) || numbers.is_empty() {
                let structural: Vec<usize> = text
                    .char_indices()
                    .filter(|(_, c)| matches!(c, '{' | '}' | '[' | ']' | ',' | ':' | '"'))
                    .map(|(i, _)| i)
                    .collect();
                if let Some(&at) = structural.get(self.rng.random_range(0..structural.len().max(1))) {
                    text.remove(at);
                }
            } else {
                let (a, b) = numbers[self.rng.random_range(0..numbers.len())];
                let n = JSON_NUMBERS[self.rng.random_range(0..JSON_NUMBERS.len())];
                text.replace_range(a..b, n);
            }
        }
        text.into_bytes()
    }
}

/// Byte ranges of the numbers in a JSON text (digit runs with sign, point and
/// exponent).
fn number_spans(text: &str) -> Vec<(usize, usize)> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_digit() || (b[i] == b'-' && b.get(i + 1).is_some_and(u8::is_ascii_digit)) {
            let start = i;
            i += 1;
            while i < b.len() && (b[i].is_ascii_digit() || matches!(b[i], b'.' | b'e' | b'E' | b'+' | b'-')) {
                i += 1;
            }
            out.push((start, i));
        } else {
            i += 1;
        }
    }
    out
}

/// Runs `parse` on every one of `inputs`: it must not panic, and its largest
/// allocation must stay within `bound(input length)`. Returns how many parsed
/// and how many were refused.
#[track_caller]
fn survive<T>(
    what: &str,
    inputs: impl IntoIterator<Item = Vec<u8>>,
    bound: impl Fn(usize) -> usize,
    mut parse: impl FnMut(&[u8]) -> wgml::Result<T>,
) -> (usize, usize) {
    let (mut ok, mut refused) = (0, 0);
    for (i, input) in inputs.into_iter().enumerate() {
        let outcome = catch_unwind(AssertUnwindSafe(|| largest_allocation(|| parse(&input))));
        let (result, largest) = match outcome {
            Ok(r) => r,
            Err(p) => {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                let path = std::env::temp_dir().join(format!("wgml-hostile-{what}-{i}.bin"));
                std::fs::write(&path, &input).ok();
                panic!("{what}: input {i} panicked: {msg} (saved to {})", path.display());
            }
        };
        assert!(
            largest <= bound(input.len()),
            "{what}: input {i} of {} bytes allocated {largest} bytes at once",
            input.len()
        );
        match result {
            Ok(_) => ok += 1,
            Err(e) => {
                assert!(
                    !e.to_string().trim().is_empty(),
                    "{what}: input {i}: an empty error"
                );
                refused += 1;
            }
        }
    }
    println!("{what}: {ok} parsed, {refused} refused, no panic");
    (ok, refused)
}

/// Largest allocation a parse of `len` bytes may make: a few copies of the input
/// and 1 MiB of working room.
fn copies(len: usize) -> usize {
    4 * len + (1 << 20)
}

/// A valid IDX file: `dims`, then their product of bytes.
fn idx_bytes(dims: &[u32]) -> Vec<u8> {
    let mut v = vec![0, 0, 8, dims.len() as u8];
    for d in dims {
        v.extend(d.to_be_bytes());
    }
    let n: u32 = dims.iter().product();
    v.extend((0..n).map(|i| (i * 7 % 256) as u8));
    v
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

#[test]
fn hostile_idx_files_are_errors_without_huge_allocations() {
    let raw = idx_bytes(&[3, 4, 5]);
    let labels = std::fs::read(repo_file("data/mnist-10k/t10k-labels-idx1-ubyte.gz")).unwrap();
    let mut m = Mutator::new(1);
    let (ok, refused) = survive("idx raw", (0..1500).map(|_| m.bytes(&raw)), copies, |b| {
        idx::parse_idx("m", b)
    });
    assert!(refused > 1000 && ok > 0, "raw: {ok} parsed, {refused} refused");
    // gzip: the decompressed size is the file's real size; deflate expands at most
    // ~1,032 times.
    let small_gz = gzip(&raw);
    let (ok, refused) = survive(
        "idx gzip",
        (0..1500).map(|i| {
            if i < 1000 {
                m.bytes(&small_gz)
            } else {
                m.bytes(&labels)
            }
        }),
        |len| 1100 * len + (1 << 20),
        |b| idx::parse_idx("m", b),
    );
    assert!(refused > 1000, "gzip: {ok} parsed, {refused} refused");
    // A header declaring 2^40 elements is refused from the header alone.
    let mut lie = idx_bytes(&[2, 2]);
    lie[4..8].copy_from_slice(&(1u32 << 20).to_be_bytes());
    lie[8..12].copy_from_slice(&(1u32 << 20).to_be_bytes());
    let (r, largest) = largest_allocation(|| idx::parse_idx("lie", &lie));
    assert!(r.is_err() && largest < 1 << 20, "{r:?}, {largest} bytes");
}

/// The seed CNN's description, as checkpoints and JSON model files carry it.
fn cnn_architecture() -> Architecture {
    let r = zoo::cnn();
    Architecture {
        model: r.model,
        loss: r.loss,
        optimizer: r.optimizer,
        class_names: vec!["zero".into(), "one".into()],
    }
}

/// A checkpoint whose metadata holds `architecture` (any text) and two tensors.
fn checkpoint_with(architecture: &[u8]) -> Vec<u8> {
    use safetensors::{Dtype, tensor::TensorView};
    let w: Vec<u8> = (0..32 * 9)
        .flat_map(|i| (i as f32 * 0.01).to_le_bytes())
        .collect();
    let b: Vec<u8> = (0..32).flat_map(|i| (i as f32).to_le_bytes()).collect();
    let views = vec![
        (
            "0.weight".to_string(),
            TensorView::new(Dtype::F32, vec![32, 1, 3, 3], &w).unwrap(),
        ),
        (
            "0.bias".to_string(),
            TensorView::new(Dtype::F32, vec![32], &b).unwrap(),
        ),
    ];
    let metadata = std::collections::HashMap::from([
        ("model".to_string(), "cnn".to_string()),
        (
            checkpoint::ARCHITECTURE_KEY.to_string(),
            String::from_utf8_lossy(architecture).into_owned(),
        ),
    ]);
    safetensors::serialize(views, Some(metadata)).unwrap()
}

/// What wgml does with a checkpoint before touching the GPU: parse it, read its
/// description, and check the described model's shapes and sizes.
fn read_checkpoint(bytes: &[u8]) -> wgml::Result<()> {
    let c = checkpoint::from_bytes("m.safetensors", bytes)?;
    if let Some(a) = c.architecture(Path::new("m.safetensors"))? {
        a.model.summary(a.loss)?;
    }
    Ok(())
}

#[test]
fn hostile_checkpoints_are_errors_without_huge_allocations() {
    let json = serde_json::to_string(&cnn_architecture()).unwrap();
    let valid = checkpoint_with(json.as_bytes());
    read_checkpoint(&valid).unwrap();
    let mut m = Mutator::new(2);
    let (ok, refused) = survive(
        "checkpoint bytes",
        (0..2000).map(|_| m.bytes(&valid)),
        copies,
        read_checkpoint,
    );
    assert!(refused > 1000, "{ok} parsed, {refused} refused");
    // The description itself, mutated inside an otherwise valid file.
    let (ok, refused) = survive(
        "checkpoint architecture",
        (0..1000).map(|_| checkpoint_with(&m.json(&json))),
        copies,
        read_checkpoint,
    );
    assert!(refused > 300 && ok > 0, "{ok} parsed, {refused} refused");
}

#[test]
fn hostile_json_models_are_errors_without_huge_allocations() {
    let text = std::fs::read_to_string(repo_file("examples/models/cnn.json")).unwrap();
    let read = |b: &[u8]| -> wgml::Result<()> {
        let text = std::str::from_utf8(b).map_err(|e| wgml::Error::invalid(format!("not UTF-8: {e}")))?;
        let a: Architecture = serde_json::from_str(text).map_err(|e| wgml::Error::invalid(format!("{e}")))?;
        a.model.summary(a.loss)?;
        Ok(())
    };
    read(text.as_bytes()).unwrap();
    let mut m = Mutator::new(3);
    let (ok, refused) = survive("json model", (0..2500).map(|_| m.json(&text)), copies, read);
    assert!(refused > 500 && ok > 100, "{ok} parsed, {refused} refused");
    // Absurd sizes are only counted while the description is read (compiling such
    // a model is refused before any parameter is drawn: see cli.rs).
    let huge = Sequential::new(&[1, 28, 28])
        .add(Layer::Flatten)
        .add(Layer::dense(1 << 30, A::Relu))
        .add(Layer::dense(1 << 30, A::Softmax));
    let (r, largest) = largest_allocation(|| huge.summary(Loss::SparseCategoricalCrossentropy));
    assert!(largest < 1 << 20, "{largest} bytes for a description");
    // 784·2^30 + 2^30 for the first layer, 2^60 + 2^30 for the second.
    assert_eq!(r.unwrap().total_params(), (1 << 60) + 786 * (1 << 30));
}

/// A small RGB picture, encoded as `format`.
fn picture(format: image::ImageFormat) -> Vec<u8> {
    let img = image::RgbImage::from_fn(16, 12, |x, y| image::Rgb([(x * 16) as u8, (y * 20) as u8, 128]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, format).unwrap();
    out.into_inner()
}

/// A PNG whose header declares `w` × `h` pixels (checksum fixed, so the
/// decoder believes it).
fn png_claiming(w: u32, h: u32) -> Vec<u8> {
    let mut png = picture(image::ImageFormat::Png);
    // Signature (8), IHDR length (4), "IHDR" (4), width, height, ...
    png[16..20].copy_from_slice(&w.to_be_bytes());
    png[20..24].copy_from_slice(&h.to_be_bytes());
    let crc = crc32fast::hash(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    png
}

#[test]
fn hostile_images_are_errors_without_huge_allocations() {
    let dir = fresh_dir("hostile-images");
    let bound = |len: usize| 1100 * len + (2 << 20);
    let mut m = Mutator::new(4);
    for (name, base, count) in [
        ("png", picture(image::ImageFormat::Png), 900),
        ("jpg", picture(image::ImageFormat::Jpeg), 600),
    ] {
        let path = dir.join(format!("x.{name}"));
        let (ok, refused) = survive(name, (0..count).map(|_| m.bytes(&base)), bound, |b| {
            std::fs::write(&path, b).unwrap();
            image_folder::pixels(&path, [3, 8, 8])?;
            image_folder::pixels(&path, [1, 28, 28])
        });
        assert!(
            refused > count / 4 && ok > 0,
            "{name}: {ok} parsed, {refused} refused"
        );
    }
    // Headers that lie about the size: refused without allocating it.
    for (w, h) in [(60_000, 60_000), (16_384, 16_384), (4_000, 4_000), (1, u32::MAX)] {
        let path = dir.join("lie.png");
        std::fs::write(&path, png_claiming(w, h)).unwrap();
        let (r, largest) = largest_allocation(|| image_folder::pixels(&path, [1, 28, 28]));
        assert!(r.is_err(), "{w}x{h}: decoded");
        assert!(largest < 4 << 20, "{w}x{h}: {largest} bytes allocated");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn hostile_backups_are_errors_and_never_panic() {
    let (_g, ctx) = gpu();
    let data = Dataset::two_blobs(3);
    let spec = Sequential::new(&[2])
        .add(Layer::dense(4, A::Relu))
        .add(Layer::dense(1, A::Sigmoid));
    let dir = fresh_dir("hostile-backup");
    let backup = Backup {
        dir: dir.clone(),
        delete_when_done: false,
    };
    let cfg = FitConfig {
        epochs: 2,
        batch_size: 32,
        verbose: false,
        backup: Some(backup.clone()),
        ..FitConfig::default()
    };
    let model = || {
        spec.compile(ctx, Loss::BinaryCrossentropy, Optimizer::adam(0.05), 1)
            .unwrap()
    };
    // One epoch kept: the file a later run with two epochs resumes from.
    fit(
        &mut model(),
        ctx,
        &data.train,
        &FitConfig {
            epochs: 1,
            ..cfg.clone()
        },
    )
    .unwrap();
    let valid = std::fs::read(backup.path()).unwrap();
    let mut m = Mutator::new(5);
    let mut fits = 0;
    let (ok, refused) = survive(
        "backup",
        (0..300).map(|_| m.bytes(&valid)),
        |len| copies(len) + (8 << 20),
        |b| {
            std::fs::write(backup.path(), b).unwrap();
            fits += 1;
            fit(&mut model(), ctx, &data.train, &cfg).map(|_| ())
        },
    );
    assert_eq!(fits, 300);
    assert!(refused > 150, "{ok} resumed, {refused} refused");
    // The recorded settings and progress (JSON in the metadata) mutated inside an
    // otherwise valid file: counters, steps and rates from the far end of u64/f64.
    let st = safetensors::SafeTensors::deserialize(&valid).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&valid).unwrap();
    let metadata = header.metadata().clone().unwrap();
    let tensors: Vec<(String, safetensors::tensor::TensorView)> = st
        .tensors()
        .into_iter()
        .map(|(n, t)| (n.to_string(), t))
        .collect();
    let with = |key: &str, text: Vec<u8>| {
        let mut meta = metadata.clone();
        meta.insert(key.to_string(), String::from_utf8_lossy(&text).into_owned());
        safetensors::serialize(tensors.clone(), Some(meta)).unwrap()
    };
    let mutants: Vec<Vec<u8>> = (0..200)
        .map(|i| {
            let key = if i % 4 == 0 { "settings" } else { "progress" };
            with(key, m.json(&metadata[key]))
        })
        .collect();
    let (ok, refused) = survive(
        "backup progress",
        mutants,
        |len| copies(len) + (8 << 20),
        |b| {
            std::fs::write(backup.path(), b).unwrap();
            fit(&mut model(), ctx, &data.train, &cfg).map(|_| ())
        },
    );
    assert!(refused > 50 && ok > 10, "{ok} resumed, {refused} refused");
    std::fs::remove_dir_all(&dir).ok();
}
