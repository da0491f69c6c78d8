//! `wgml::report`: the pictures of a run are valid PNGs that show something (not
//! one flat colour), the variants (one epoch, no validation, regression, nothing
//! misclassified, RGB images) work, bad folders and inputs give errors naming the
//! path, and the per-sample predictions of `evaluate_with_predictions` agree with
//! the confusion matrix and with `Model::predict`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use image::RgbImage;
use wgml::Error;
use wgml::data::Dataset;
use wgml::nn::zoo;
use wgml::report::{self, Samples};
use wgml::train::{self, EpochStats, Evaluation, FitConfig, History};

use crate::common::*;

const TRAIN_BLUE: [u8; 3] = [31, 119, 180];
const VAL_ORANGE: [u8; 3] = [230, 110, 20];
const BEST_GREEN: [u8; 3] = [44, 160, 44];

/// A fresh, empty folder for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wgml-report-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn history(epochs: usize, validation: bool, accuracy: bool) -> History {
    History {
        epochs: (1..=epochs)
            .map(|e| {
                let t = e as f64;
                EpochStats {
                    epoch: e,
                    loss: 1.5 / t,
                    accuracy: accuracy.then(|| 1.0 - 0.4 / t),
                    val_loss: validation.then(|| 1.2 / t + 0.1),
                    val_accuracy: (validation && accuracy).then(|| 0.95 - 0.3 / t),
                    val_f1: None,
                    val_exact_match: None,
                    seconds: 1.0,
                    images_per_second: 1000.0,
                    lr: 0.001,
                    steps: 10,
                    labels_per_sample: 1,
                    texts: false,
                }
            })
            .collect(),
        best_epoch: None,
        stopped_early: false,
    }
}

fn evaluation(confusion: Vec<Vec<u64>>) -> Evaluation {
    let samples = confusion.iter().flatten().sum::<u64>() as usize;
    Evaluation {
        loss: 0.3,
        accuracy: (!confusion.is_empty()).then_some(0.9),
        top_k: None,
        samples,
        positions: 1,
        confusion,
        per_class: Vec::new(),
        macro_precision: None,
        macro_recall: None,
        macro_f1: None,
        correlation: None,
        entities: None,
        answers: None,
        tags: false,
    }
}

/// Decodes `path` as PNG and checks it is a real picture: not empty and more than
/// a few colours.
fn decode(path: &Path) -> RgbImage {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        &bytes[..8],
        b"\x89PNG\r\n\x1a\n",
        "{} is not a PNG",
        path.display()
    );
    let img = image::load_from_memory_with_format(&bytes, image::ImageFormat::Png)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .to_rgb8();
    assert!(
        img.width() > 100 && img.height() > 100,
        "{}: {:?}",
        path.display(),
        img.dimensions()
    );
    let colours: HashSet<[u8; 3]> = img.pixels().map(|p| p.0).collect();
    assert!(
        colours.len() > 8,
        "{}: only {} colours, the picture is (nearly) flat",
        path.display(),
        colours.len()
    );
    img
}

fn count(img: &RgbImage, rgb: [u8; 3]) -> usize {
    img.pixels().filter(|p| p.0 == rgb).count()
}

/// Dark pixels (text) inside the rectangle `x0..x1, y0..y1`.
fn ink(img: &RgbImage, (x0, y0, x1, y1): (u32, u32, u32, u32)) -> usize {
    let mut n = 0;
    for y in y0..y1.min(img.height()) {
        for x in x0..x1.min(img.width()) {
            let p = img.get_pixel(x, y).0;
            if p.iter().all(|&c| c < 100) {
                n += 1;
            }
        }
    }
    n
}

/// `n` 1×12×12 images: a bright square whose place depends on the sample.
fn images(n: usize, channels: usize) -> Vec<f32> {
    let mut x = vec![0.0f32; n * channels * 144];
    for i in 0..n {
        for c in 0..channels {
            for y in 0..12 {
                for xx in 0..12 {
                    let on = (y / 4 + xx / 4 + i) % 3 == c % 3;
                    x[((i * channels + c) * 12 + y) * 12 + xx] = if on { 0.9 } else { 0.05 };
                }
            }
        }
    }
    x
}

#[test]
fn report_writes_three_valid_pictures() {
    let dir = scratch("full");
    let k = 10;
    let confusion: Vec<Vec<u64>> = (0..k)
        .map(|t| {
            (0..k)
                .map(|p| {
                    if t == p {
                        180 + t as u64
                    } else {
                        ((t * 7 + p * 3) % 5) as u64
                    }
                })
                .collect()
        })
        .collect();
    let n = 100;
    let x = images(n, 1);
    let truth: Vec<usize> = (0..n).map(|i| i % 10).collect();
    let predicted: Vec<usize> = (0..n)
        .map(|i| if i % 3 == 0 { (i + 1) % 10 } else { i % 10 })
        .collect();
    let samples = Samples {
        x: &x,
        shape: &[1, 12, 12],
        truth: &truth,
        predicted: &predicted,
    };
    // A nested folder that does not exist yet is created.
    let nested = dir.join("a").join("b");
    let mut h = history(6, true, true);
    h.best_epoch = Some(4);
    let written = report::write_report(&nested, &h, &evaluation(confusion), Some(&samples)).unwrap();
    let names: Vec<String> = written
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["curves.png", "confusion.png", "misclassified.png"]);
    for p in &written {
        assert!(
            p.starts_with(&nested),
            "{} outside {}",
            p.display(),
            nested.display()
        );
    }

    let curves = decode(&written[0]);
    assert!(curves.width() > curves.height(), "loss and accuracy side by side");
    assert!(count(&curves, TRAIN_BLUE) > 200, "train curves are drawn in blue");
    assert!(
        count(&curves, VAL_ORANGE) > 200,
        "validation curves are drawn in orange"
    );
    // Both halves hold a curve of each colour (loss left, accuracy right).
    let half = curves.width() / 2;
    for (what, range) in [("loss", 0..half), ("accuracy", half..curves.width())] {
        let blue = curves
            .enumerate_pixels()
            .filter(|(x, _, p)| range.contains(x) && p.0 == TRAIN_BLUE)
            .count();
        assert!(blue > 100, "{what} panel has no train curve ({blue} pixels)");
    }
    assert!(
        ink(&curves, (0, 0, curves.width(), 40)) > 200,
        "the title is written"
    );
    assert!(count(&curves, BEST_GREEN) > 100, "the best epoch is marked");

    let conf = decode(&written[1]);
    // Dark cells on the diagonal carry light text; light cells carry dark text.
    let dark = conf.pixels().filter(|p| p.0[2] > 90 && p.0[0] < 40).count();
    assert!(dark > 10 * 40 * 40, "the diagonal cells are dark ({dark} pixels)");
    let light_text = conf
        .pixels()
        .filter(|p| p.0[0] > 200 && p.0[1] > 200 && p.0[2] > 200)
        .count();
    assert!(light_text > 0);
    assert!(
        ink(&conf, (0, 0, conf.width(), conf.height())) > 1000,
        "counts and labels are written"
    );

    let mis = decode(&written[2]);
    // 34 of the 100 samples are wrong: 5 rows of 8 (the last one partly filled).
    let bright = count(&mis, [230, 230, 230]);
    assert!(
        bright > 34 * 36 * 36 / 3,
        "the scaled images are drawn ({bright} bright pixels)"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn one_epoch_without_validation_works_and_regression_draws_only_loss() {
    let dir = scratch("one");
    // Classifier, 1 epoch, no validation: both panels, only train curves.
    let written = report::write_report(
        &dir,
        &history(1, false, true),
        &evaluation(vec![vec![3, 1], vec![0, 4]]),
        None,
    )
    .unwrap();
    assert_eq!(written, [dir.join("curves.png"), dir.join("confusion.png")]);
    let curves = decode(&written[0]);
    assert!(count(&curves, TRAIN_BLUE) > 50, "the single epoch is marked");
    assert_eq!(count(&curves, VAL_ORANGE), 0, "no validation curve or legend");
    assert_eq!(
        count(&curves, BEST_GREEN),
        0,
        "no best epoch without early stopping"
    );
    let two_panels = curves.width();
    decode(&written[1]);

    // Regression: no accuracy, no confusion matrix, no images: only the loss panel.
    let dir2 = scratch("regression");
    let written =
        report::write_report(&dir2, &history(3, true, false), &evaluation(Vec::new()), None).unwrap();
    assert_eq!(written, [dir2.join("curves.png")]);
    let curves = decode(&written[0]);
    assert!(
        curves.width() < two_panels * 2 / 3,
        "one panel is narrower than two"
    );
    assert!(count(&curves, VAL_ORANGE) > 100);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&dir2);
}

#[test]
fn nothing_misclassified_and_rgb_images() {
    let dir = scratch("none");
    std::fs::create_dir_all(&dir).unwrap();
    let n = 20;
    let x = images(n, 1);
    let classes: Vec<usize> = (0..n).map(|i| i % 4).collect();
    let path = dir.join("none.png");
    let s = Samples {
        x: &x,
        shape: &[1, 12, 12],
        truth: &classes,
        predicted: &classes,
    };
    report::write_misclassified(&path, &s).unwrap();
    let img = decode(&path);
    // No image is drawn, only the sentence saying so (dark text on white).
    assert!(ink(&img, (0, 60, img.width(), img.height())) > 300);

    let x = images(n, 3);
    let wrong: Vec<usize> = classes.iter().map(|c| (c + 1) % 4).collect();
    let path = dir.join("rgb.png");
    let s = Samples {
        x: &x,
        shape: &[3, 12, 12],
        truth: &classes,
        predicted: &wrong,
    };
    report::write_misclassified(&path, &s).unwrap();
    let img = decode(&path);
    // Pixels where exactly one channel is on are saturated colours.
    let red = img
        .pixels()
        .filter(|p| p.0[0] > 200 && p.0[1] < 30 && p.0[2] < 30)
        .count();
    assert!(
        red > 20 * 9 * 9,
        "colour images keep their colours ({red} red pixels)"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_folder_under_a_regular_file_is_an_error_naming_it() {
    let dir = scratch("file");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("plain-file");
    std::fs::write(&file, b"not a folder").unwrap();
    let target = file.join("report");
    let e = report::write_report(
        &target,
        &history(2, false, true),
        &evaluation(vec![vec![1]]),
        None,
    )
    .unwrap_err();
    assert!(matches!(e, Error::Io { .. }), "{e:?}");
    assert!(e.to_string().contains(&target.display().to_string()), "{e}");
    // The regular file itself as DIR.
    let e =
        report::write_report(&file, &history(2, false, true), &evaluation(vec![vec![1]]), None).unwrap_err();
    assert!(e.to_string().contains(&file.display().to_string()), "{e}");
    // A picture path in a missing folder.
    let png = dir.join("missing").join("curves.png");
    let e = report::write_curves(&png, &history(2, false, true)).unwrap_err();
    assert!(e.to_string().contains(&png.display().to_string()), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_inputs_are_errors_naming_the_picture() {
    let dir = scratch("bad");
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("x.png");
    let name = p.display().to_string();
    let e = report::write_curves(&p, &History::default()).unwrap_err();
    assert!(
        e.to_string().contains(&name) && e.to_string().contains("no epoch"),
        "{e}"
    );
    let e = report::write_confusion(&p, &[vec![1, 2], vec![3]]).unwrap_err();
    assert!(
        e.to_string().contains(&name) && e.to_string().contains("square"),
        "{e}"
    );
    let x = [0.0f32; 4];
    let s = Samples {
        x: &x,
        shape: &[2],
        truth: &[0, 1],
        predicted: &[1, 0],
    };
    assert!(!s.is_image());
    let e = report::write_misclassified(&p, &s).unwrap_err();
    assert!(
        e.to_string().contains(&name) && e.to_string().contains("not images"),
        "{e}"
    );
    // write_report skips samples that are not images.
    let written =
        report::write_report(&dir, &history(1, false, false), &evaluation(Vec::new()), Some(&s)).unwrap();
    assert_eq!(written, [dir.join("curves.png")]);
    let s = Samples {
        x: &x,
        shape: &[1, 2, 2],
        truth: &[0, 1],
        predicted: &[1],
    };
    let e = report::write_misclassified(&p, &s).unwrap_err();
    assert!(e.to_string().contains("do not describe the same samples"), "{e}");
    assert!(!p.exists(), "nothing is written on error");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn font_lookup_names_what_to_install() {
    let missing = Path::new("/nonexistent/wgml-font.ttf");
    let e = report::find_font(Some(missing), report::FONT_CANDIDATES).unwrap_err();
    assert!(e.to_string().contains("/nonexistent/wgml-font.ttf"), "{e}");
    assert!(e.to_string().contains("WGML_FONT"), "{e}");
    let e = report::find_font(None, &["/nonexistent/a.ttf", "/nonexistent/b.ttf"]).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("fonts-dejavu-core") && msg.contains("WGML_FONT") && msg.contains("/nonexistent/b.ttf"),
        "{msg}"
    );
    // An existing file is taken as it is, and the first existing candidate wins.
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    assert_eq!(report::find_font(Some(&here), &[]).unwrap(), here);
    let here_s = here.display().to_string();
    assert_eq!(
        report::find_font(None, &["/nonexistent/a.ttf", &here_s]).unwrap(),
        here
    );
}

#[test]
fn predictions_per_sample_agree_with_the_confusion_matrix_and_predict() {
    let (_g, ctx) = gpu();
    let data = Dataset::mnist_10k().unwrap();
    let recipe = zoo::mlp();
    let mut model = recipe
        .model
        .compile(ctx, recipe.loss, recipe.optimizer.clone(), 3)
        .unwrap();
    let train_idx: Vec<usize> = (0..512).collect();
    let test_idx: Vec<usize> = (0..300).collect();
    let (train_set, test) = (data.train.select(&train_idx), data.test.select(&test_idx));
    let config = FitConfig {
        epochs: 2,
        batch_size: 128,
        validation_split: 0.25,
        verbose: false,
        ..FitConfig::default()
    };
    let history = train::fit(&mut model, ctx, &train_set, &config).unwrap();
    assert_eq!(history.epochs.len(), 2);
    // Batch 128 over 300 samples: the last batch is partial.
    let (eval, predicted) = train::evaluate_with_predictions(&mut model, ctx, &test, 128).unwrap();
    let again = train::evaluate(&mut model, ctx, &test, 128).unwrap();
    assert_eq!(eval.confusion, again.confusion);
    assert!(
        (eval.loss - again.loss).abs() <= 1e-5 * again.loss,
        "{} vs {}",
        eval.loss,
        again.loss
    );
    assert_eq!(predicted.len(), 300);
    let truth = train::true_classes(&test);
    let mut confusion = vec![vec![0u64; 10]; 10];
    for (&t, &p) in truth.iter().zip(&predicted) {
        confusion[t][p] += 1;
    }
    assert_eq!(confusion, eval.confusion);
    let probs = model.predict(ctx, &test.x, 300).unwrap();
    for (i, row) in probs.chunks(10).enumerate() {
        let best = (0..10).fold(0, |b, c| if row[c] > row[b] { c } else { b });
        assert!(
            predicted[i] == best || (row[predicted[i]] - row[best]).abs() < 1e-6,
            "sample {i}: evaluate predicts {}, predict's argmax is {best}",
            predicted[i]
        );
    }
    let wrong = truth.iter().zip(&predicted).filter(|(t, p)| t != p).count();
    assert!(wrong > 0, "after 6 steps some test digits are still wrong");
    let dir = scratch("mlp");
    let samples = Samples {
        x: &test.x,
        shape: &data.sample_shape,
        truth: &truth,
        predicted: &predicted,
    };
    let written = report::write_report(&dir, &history, &eval, Some(&samples)).unwrap();
    assert_eq!(written.len(), 3);
    for p in &written {
        decode(p);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn bench_row(kernel: &str, ms: f64, gflops: Option<f64>, gbps: Option<f64>) -> wgml::bench::BenchRow {
    wgml::bench::BenchRow {
        kernel: kernel.into(),
        variant: "v".into(),
        shape: vec![("m", 8)],
        ms,
        min_ms: ms,
        gflops,
        gbps,
        images_per_s: None,
        fraction_of_peak: None,
        repeat: 3,
        clock: wgml::gpu::Clock::WallClock,
        adapter: "test adapter".into(),
    }
}

#[test]
fn bench_plot_draws_compute_and_memory_rows() {
    let dir = scratch("bench-plot");
    std::fs::create_dir_all(&dir).unwrap();
    let rows = vec![
        bench_row("matmul_nn", 1.0, Some(2.0), None),
        bench_row("matmul_nn", 10.0, Some(6.0), None),
        bench_row("max_pool_forward", 2.0, None, Some(0.5)),
        bench_row("train_step", 5.0, None, None),
    ];
    let path = dir.join("bench.png");
    report::write_bench_plot(&path, &rows).unwrap();
    let img = decode(&path);
    // Two panels side by side, the first series of each in the first palette colour.
    assert!(
        img.width() > img.height(),
        "expected two panels, got {}x{}",
        img.width(),
        img.height()
    );
    assert!(img.pixels().any(|p| p.0 == TRAIN_BLUE), "no series drawn");

    // Rows without any throughput figure: an error naming the file, nothing written.
    let empty = dir.join("empty.png");
    match report::write_bench_plot(&empty, &rows[3..]) {
        Err(Error::Report { path, message }) => {
            assert!(
                path.contains("empty.png") && message.contains("GFLOP/s"),
                "{path}: {message}"
            )
        }
        other => panic!("expected a report error, got {other:?}"),
    }
    assert!(!empty.exists());
    let _ = std::fs::remove_dir_all(&dir);
}

/// The VAE's pictures: the pairs, the latent grid and the means are PNGs of the
/// expected sizes that show something; the means take each class's colour; images
/// of the wrong size are errors naming the folder.
#[test]
fn vae_pictures_show_pairs_grid_and_coloured_means() {
    let dir = scratch("vae");
    let d = Dataset::mnist_10k().unwrap();
    let n = 40;
    let originals = &d.test.x[..n * 784];
    let reconstructions: Vec<f32> = originals.iter().map(|v| 0.5 * v + 0.2).collect();
    let grid: Vec<f32> = d.train.x[..9 * 784].to_vec();
    let classes: Vec<usize> = (0..n).map(|i| i % 10).collect();
    let means: Vec<[f32; 2]> = (0..n).map(|i| [(i % 10) as f32, (i / 10) as f32]).collect();
    let r = report::VaeReport {
        shape: &[1, 28, 28],
        originals,
        reconstructions: &reconstructions,
        latent_grid: Some((&grid, 3, 3.0)),
        means: &means,
        classes: &classes,
    };
    let written = report::write_vae_report(&dir, &r).unwrap();
    let names: Vec<String> = written
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        ["reconstructions.png", "latent_grid.png", "latent_means.png"]
    );
    for p in &written {
        let img: RgbImage = image::open(p).unwrap().to_rgb8();
        let colours: HashSet<[u8; 3]> = img.pixels().map(|p| p.0).collect();
        assert!(colours.len() > 10, "{} is nearly flat", p.display());
    }
    let grid_img = image::open(dir.join("latent_grid.png")).unwrap();
    assert_eq!((grid_img.width(), grid_img.height()), (640, 70 + 3 * 56 + 40));
    let means_img: RgbImage = image::open(dir.join("latent_means.png")).unwrap().to_rgb8();
    for colour in [[31u8, 119, 180], [255, 127, 14], [23, 190, 207]] {
        assert!(
            means_img.pixels().any(|p| p.0 == colour),
            "class colour {colour:?} missing"
        );
    }
    let bad = report::VaeReport {
        reconstructions: &reconstructions[..100],
        ..r
    };
    let e = report::write_vae_report(&dir, &bad).unwrap_err().to_string();
    assert!(
        e.contains(&dir.display().to_string()) && e.contains("reconstructions"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
