//! The `wgml` command line refuses bad arguments with a message that names the
//! problem, a non-zero exit status and no panic.

use std::process::{Command, Output};

fn wgml(args: &[&str]) -> Output {
    Command::new(crate::common::wgml_bin())
        .args(args)
        .output()
        .expect("the wgml binary runs")
}

/// Runs `args`, expecting failure with every one of `want` in stderr.
/// Runs wgml with `args`, which must succeed; its standard output.
fn succeeds(args: &[&str]) -> String {
    let out = wgml(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn fails_with(args: &[&str], want: &[&str]) {
    let out = wgml(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} succeeded; stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
    for w in want {
        assert!(
            stderr.contains(w),
            "{args:?}: expected {w:?} in stderr, got: {stderr}"
        );
    }
}

fn scratch(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("wgml-cli-test-{}-{name}", std::process::id()))
}

#[test]
fn train_arguments_out_of_range_are_refused() {
    fails_with(
        &["train", "--model", "resnet"],
        &["unknown model 'resnet'", "cnn, cnn-bn, convnet, mlp"],
    );
    fails_with(&["train", "--lr", "-0.1"], &["learning rate -0.1", "positive"]);
    fails_with(&["train", "--lr", "0"], &["learning rate 0"]);
    fails_with(&["train", "--batch-size", "0"], &["batch size", "at least 1"]);
    fails_with(&["train", "--accumulate", "0"], &["accumulation", "at least 1"]);
    fails_with(
        &["train", "--no-decay", "bias"],
        &["--no-decay", "give --weight-decay"],
    );
    fails_with(
        &["train", "--model", "binary", "--label-smoothing", "0.1"],
        &["--label-smoothing applies to sparse categorical"],
    );
    fails_with(
        &["train", "--label-smoothing", "1"],
        &["label smoothing 1", "[0, 1)"],
    );
    fails_with(
        &["train", "--model", "regression", "--class-weight", "balanced"],
        &["--class-weight applies to classifiers"],
    );
    fails_with(
        &["train", "--class-weight", "12=1"],
        &["class 12 is past the 10 classes"],
    );
    fails_with(&["train", "--ema", "1"], &["momentum 1 is outside [0, 1)"]);
    fails_with(
        &["train", "--group-by-length"],
        &["--group-by-length groups texts", "mask_id"],
    );
    fails_with(&["train", "--top-k", "0"], &["--top-k needs K of at least 1"]);
    fails_with(
        &["train", "--model", "binary", "--top-k", "2"],
        &["--top-k 2 applies to sparse categorical"],
    );
    fails_with(
        &["train", "--class-weight", "heavy"],
        &["'heavy'", "CLASS=WEIGHT"],
    );
    fails_with(
        &["train", "--weight-decay", "0.1", "--no-decay", "bias,ln_"],
        &["'ln_' matches no trainable tensor", "0.weight"],
    );
    fails_with(
        &["train", "--model", "vae", "--accumulate", "2"],
        &["--accumulate does not apply to --model vae"],
    );
    fails_with(
        &["train", "--val-split", "1.0"],
        &["validation split 1", "[0, 1)"],
    );
    fails_with(
        &["train", "--val-split", "-0.1"],
        &["validation split -0.1", "[0, 1)"],
    );
    fails_with(&["train", "--optimizer", "lbfgs"], &["lbfgs"]);
    fails_with(&["train", "--epochs", "many"], &["many"]);
    fails_with(
        &["train", "--monitor", "val_acc"],
        &["unknown monitor 'val_acc'", "val_accuracy"],
    );
    fails_with(&["train", "--min-delta", "-1"], &["min_delta -1"]);
    fails_with(
        &["train", "--lr-schedule", "exponential", "--decay-rate", "0.5"],
        &["needs --decay-steps"],
    );
    fails_with(&["train", "--decay-rate", "0.5"], &["need --lr-schedule"]);
    fails_with(
        &["train", "--lr-schedule", "cosine", "--staircase"],
        &["--staircase belongs to --lr-schedule exponential"],
    );
    fails_with(
        &["train", "--warmup-steps", "10"],
        &["--warmup-steps belongs to --lr-schedule cosine or linear"],
    );
    fails_with(
        &["train", "--lr-schedule", "linear", "--decay-rate", "0.5"],
        &["--decay-rate belongs to --lr-schedule exponential"],
    );
    fails_with(
        &["train", "--lr-schedule", "step"],
        &[
            "unknown learning-rate schedule 'step'",
            "cosine, linear or exponential",
        ],
    );
    fails_with(
        &["train", "--lr-schedule", "cosine", "--alpha", "2"],
        &["alpha 2"],
    );
    fails_with(
        &["train", "--optimizer", "rmsprop", "--weight-decay", "0.01"],
        &["--weight-decay applies to adam"],
    );
    fails_with(&["train", "--weight-decay", "-1"], &["weight_decay", "-1"]);
    fails_with(
        &["train", "--clip-norm", "0"],
        &["largest gradient norm", "positive"],
    );
    fails_with(&["train", "--augment-shift", "28"], &["out of sight"]);
    fails_with(&["train", "--model", "binary", "--augment-flip"], &["[C, H, W]"]);
}

#[test]
fn missing_files_are_named() {
    let nowhere = scratch("nowhere");
    let n = nowhere.to_str().unwrap();
    fails_with(&["train", "--data", n], &[n, "train-images-idx3-ubyte"]);
    let weights = format!("{n}.safetensors");
    fails_with(&["eval", "--model", "cnn", "--weights", &weights], &[&weights]);
    fails_with(&["train", "--steps", "1", "--init", &weights], &[&weights]);
    fails_with(
        &["predict", "--model", "cnn", "--weights", &weights, "x.png"],
        &[&weights],
    );
}

#[test]
fn checkpoints_that_do_not_fit_the_model_are_refused_naming_the_tensor() {
    // The binary classifier (2 → 10 → 1) and the regression (3 → 2 → 1) share
    // tensor names (0.weight, 0.bias, 2.weight, 2.bias) but not shapes.
    let ckpt = scratch("binary.safetensors");
    let c = ckpt.to_str().unwrap();
    let out = wgml(&["train", "--model", "binary", "--steps", "1", "--save", c]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // --init loads what matches (here only the last bias, [1] in both) and names
    // every tensor that starts anew, with both shapes.
    let out = wgml(&["train", "--model", "regression", "--steps", "1", "--init", c]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains("loaded 1 tensor(s): 2.bias")
            && stdout.contains("new 0.weight: shape [10, 2] in the checkpoint, [2, 3] in the model"),
        "{stdout}"
    );
    // Frozen, a layer whose tensor cannot load is refused, naming it.
    fails_with(
        &[
            "train",
            "--model",
            "regression",
            "--steps",
            "1",
            "--init",
            c,
            "--freeze",
            "1",
        ],
        &["Dense #1", "0.weight", "[10, 2]", "[2, 3]"],
    );
    fails_with(
        &["eval", "--model", "mlp", "--weights", c],
        &[c, "model 'binary', not 'mlp'"],
    );
    // Without --model, eval takes the model the checkpoint names.
    let out = wgml(&["eval", "--weights", c]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains("test accuracy") && stdout.contains("(20 samples)"),
        "{stdout}"
    );
    // A file that is not a checkpoint at all.
    let junk = scratch("junk.safetensors");
    std::fs::write(&junk, b"not a safetensors file").unwrap();
    let j = junk.to_str().unwrap();
    fails_with(&["eval", "--model", "binary", "--weights", j], &[j]);
    // predict needs an image model.
    fails_with(
        &["predict", "--model", "binary", "--weights", c, j],
        &["predict takes images", "'binary'"],
    );
    let _ = std::fs::remove_file(&ckpt);
    let _ = std::fs::remove_file(&junk);
}

/// The fine-tuning recipe from the command line: pretrain on digits 0-4, then a new
/// head on 5-9 from 10 labelled images each over the frozen base; eval of the
/// result on the same classes; mistakes in the new flags are refused by name.
#[test]
fn fine_tuning_on_other_classes_from_few_labels() {
    let base = scratch("base04.safetensors");
    let b = base.to_str().unwrap();
    let out = wgml(&["train", "--classes", "0-4", "--steps", "3", "--save", b]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for want in [
        "classes kept: 0 = 0, 1 = 1, 2 = 2, 3 = 3, 4 = 4",
        "(4113 train / 1018 test)",
        "Dense #5 (softmax)  [5]",
    ] {
        assert!(stdout.contains(want), "{want:?} in {stdout}");
    }
    let tuned = scratch("tuned59.safetensors");
    let t = tuned.to_str().unwrap();
    let fine = [
        "train",
        "--classes",
        "5-9",
        "--per-class",
        "10",
        "--val-split",
        "0",
        "--epochs",
        "1",
        "--init",
        b,
        "--new-layers",
        "5",
    ];
    let out = wgml(&[&fine[..], &["--freeze", "loaded", "--save", t]].concat());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for want in [
        "classes kept: 0 = 5, 1 = 6, 2 = 7, 3 = 8, 4 = 9",
        "(50 train / 982 test)",
        "325 trainable, 346,496 non-trainable",
        "loaded 4 tensor(s): 0.weight, 0.bias, 4.weight, 4.bias",
        "new 6.weight: a new layer, starting from its initialiser",
        "(982 samples)",
    ] {
        assert!(stdout.contains(want), "{want:?} in {stdout}");
    }
    // The saved 5-class model evaluates on the same classes, not on all ten.
    let out = wgml(&["eval", "--weights", t, "--classes", "5-9"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("(982 samples)"), "{stdout}");
    fails_with(
        &["eval", "--weights", t],
        &["10 classes but the model has 5 outputs"],
    );
    fails_with(
        &[&fine[..], &["--freeze", "5"]].concat(),
        &["'Dense #5' is both new and frozen"],
    );
    fails_with(
        &["train", "--classes", "3,10"],
        &["class 10 does not exist", "0-9"],
    );
    fails_with(&["train", "--classes", "4-2"], &["--classes: '4-2'"]);
    fails_with(
        &["train", "--classes", "0-1", "--per-class", "5000"],
        &["--per-class 5000", "class 0 has only"],
    );
    fails_with(&["train", "--new-layers", "5"], &["--init"]);
    fails_with(
        &["train", "--init", b, "--new-layers", "2"],
        &["'MaxPooling2D #2' has no parameters"],
    );
    fails_with(
        &["train", "--init", b, "--new-layers", "9"],
        &["layer 9 does not exist"],
    );
    let _ = std::fs::remove_file(&base);
    let _ = std::fs::remove_file(&tuned);
}

/// `wgml train --model vae`: trains, reports both terms, writes metrics and a
/// checkpoint with PyTorch's names; flags that mean nothing for it are refused.
#[test]
fn train_vae_reports_both_terms_and_saves_pytorch_names() {
    let ckpt = scratch("vae.safetensors");
    let metrics = scratch("vae.json");
    let pictures = scratch("vae-report");
    let (c, m, r) = (
        ckpt.to_str().unwrap(),
        metrics.to_str().unwrap(),
        pictures.to_str().unwrap(),
    );
    let out = wgml(&[
        "train",
        "--model",
        "vae",
        "--steps",
        "3",
        "--batch-size",
        "16",
        "--latent",
        "3",
        "--save",
        c,
        "--metrics",
        m,
        "--report",
        r,
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for want in [
        "784 → 512 → 3 → 512 → 784",
        "Epoch 1/10",
        "reconstruction:",
        "kl:",
        "test loss:",
    ] {
        assert!(stdout.contains(want), "{want:?} in {stdout}");
    }
    assert!(
        !stdout.contains("Epoch 2/10"),
        "--steps 3 stops within the first epoch: {stdout}"
    );
    // A 3-D latent space has no grid picture.
    for (file, written) in [
        ("reconstructions.png", true),
        ("latent_grid.png", false),
        ("latent_means.png", true),
    ] {
        assert_eq!(pictures.join(file).is_file(), written, "{file} in {stdout}");
    }
    let _ = std::fs::remove_dir_all(&pictures);
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&metrics).unwrap()).unwrap();
    let test = &json["test"];
    assert!(
        test["reconstruction"].as_f64().unwrap() > 100.0 && test["kl"].as_f64().unwrap() >= 0.0,
        "{json}"
    );
    let saved = wgml::checkpoint::load(&ckpt).unwrap();
    let names: Vec<(&str, &[usize])> = saved
        .tensors
        .iter()
        .map(|(n, s, _)| (n.as_str(), s.as_slice()))
        .collect();
    for want in [
        ("encoder.0.weight", &[512, 784][..]),
        ("mean.weight", &[3, 512][..]),
        ("log_var.bias", &[3][..]),
        ("decoder.2.weight", &[784, 512][..]),
    ] {
        assert!(names.contains(&want), "{want:?} in {names:?}");
    }
    fails_with(
        &["train", "--model", "vae", "--freeze", "1"],
        &["--freeze does not apply to --model vae"],
    );
    // --ema: the averages replace the weights, and the test is of them.
    let out = wgml(&[
        "train",
        "--model",
        "vae",
        "--steps",
        "3",
        "--batch-size",
        "16",
        "--latent",
        "3",
        "--ema",
        "0.5",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains("the weights are now their moving average (momentum 0.5): tested and saved so"),
        "{stdout}"
    );
    fails_with(&["train", "--model", "vae", "--batch-size", "0"], &["batch size"]);
    fails_with(
        &["train", "--latent", "3"],
        &["--latent applies to --model vae and gan"],
    );
    let _ = std::fs::remove_file(&ckpt);
    let _ = std::fs::remove_file(&metrics);
}

/// `wgml train --model examples/models/vae.json`: the functional VAE trains exactly
/// as `--model vae` (same losses, same bits), its checkpoint carries the functional
/// description and loads back; a functional file with a wiring mistake is refused
/// naming the layer, before any training.
#[test]
fn a_functional_json_model_trains_as_the_built_in_one_and_reloads() {
    let ckpt = scratch("fvae.safetensors");
    let c = ckpt.to_str().unwrap();
    let file = crate::common::repo_file("examples/models/vae.json");
    let f = file.to_str().unwrap();
    let epoch_line = |out: &Output| {
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        stdout
            .lines()
            .find(|l| l.starts_with("Epoch 1/"))
            .map(|l| {
                l.split(" - ")
                    .filter(|p| !p.ends_with('s'))
                    .collect::<Vec<_>>()
                    .join(" - ")
            })
            .unwrap_or_else(|| panic!("an epoch line in {stdout}"))
    };
    let pictures = scratch("fvae-report");
    let r = pictures.to_str().unwrap();
    let functional = wgml(&[
        "train",
        "--model",
        f,
        "--steps",
        "2",
        "--batch-size",
        "16",
        "--save",
        c,
        "--report",
        r,
    ]);
    let built_in = wgml(&["train", "--model", "vae", "--steps", "2", "--batch-size", "16"]);
    let (a, b) = (epoch_line(&functional), epoch_line(&built_in));
    assert!(a.contains("reconstruction:") && a.contains("test_kl:"), "{a}");
    assert_eq!(a, b, "the same model from JSON and from code");
    for file in ["reconstructions.png", "latent_means.png"] {
        assert!(pictures.join(file).is_file(), "{file}");
    }
    let _ = std::fs::remove_dir_all(&pictures);
    let (_g, ctx) = crate::common::gpu();
    let (model, saved) = wgml::checkpoint::load_functional(ctx, &ckpt).unwrap();
    assert_eq!(model.spec, wgml::nn::Vae::MNIST.functional());
    for p in &model.net.store.params {
        let (_, _, want) = saved.tensors.iter().find(|(n, _, _)| *n == p.name).unwrap();
        assert_eq!(&p.value.to_f32(ctx).unwrap(), want, "{}", p.name);
    }
    // A supervised loader says what the file is instead of failing to parse it.
    let e = wgml::checkpoint::load_model(ctx, &ckpt).unwrap_err().to_string();
    assert!(e.contains("load_functional"), "{e}");

    let text = std::fs::read_to_string(&file).unwrap();
    let unused = text.replace(r#""outputs": ["reconstruction"],"#, "");
    assert_ne!(unused, text);
    let bad = scratch("unused.json");
    std::fs::write(&bad, unused).unwrap();
    fails_with(
        &["train", "--model", bad.to_str().unwrap()],
        &["layer 'reconstruction'", "read by nothing"],
    );
    fails_with(
        &["train", "--model", f, "--freeze", "1"],
        &["--freeze does not apply"],
    );
    fails_with(&["train", "--model", f, "--data", "two-blobs"], &["takes [784]"]);
    let _ = std::fs::remove_file(&bad);
    let _ = std::fs::remove_file(&ckpt);
}

/// `wgml train --model examples/models/residual.json`: a functional classifier
/// trains through fit (summary with what each layer reads, accuracy), saves a
/// checkpoint `wgml eval` rebuilds from the file alone, and refuses the flags that
/// number a Sequential's layers.
#[test]
fn a_functional_classifier_trains_saves_and_evaluates() {
    let ckpt = scratch("residual.safetensors");
    let c = ckpt.to_str().unwrap();
    let file = crate::common::repo_file("examples/models/residual.json");
    let f = file.to_str().unwrap();
    let out = wgml(&[
        "train",
        "--model",
        f,
        "--data",
        "mnist-10k",
        "--steps",
        "5",
        "--save",
        c,
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for want in [
        "skip ← stem, block.2",
        "head (softmax) ← act",
        "Epoch 1/10",
        "test accuracy:",
    ] {
        assert!(stdout.contains(want), "{want:?} in {stdout}");
    }
    let out = wgml(&["eval", "--weights", c, "--data", "mnist-10k"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("test accuracy:"), "{stdout}");
    fails_with(
        &["train", "--model", f, "--data", "mnist-10k", "--freeze", "1"],
        &["freeze a functional model's layers in its file"],
    );
    fails_with(
        &["train", "--model", f, "--data", "mnist-10k", "--classes", "0-4"],
        &["--classes resizes the head of a Sequential model"],
    );
    let _ = std::fs::remove_file(&ckpt);
}

/// `wgml train --model gan`: trains both networks, reports losses and D(real),
/// D(fake), draws samples and curves, lets a classifier judge the generated digits,
/// saves PyTorch names; flags that mean nothing for it are refused.
#[test]
fn train_gan_reports_judges_and_saves_pytorch_names() {
    let judge = scratch("judge.safetensors");
    let j = judge.to_str().unwrap();
    let out = wgml(&["train", "--steps", "2", "--save", j]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let ckpt = scratch("gan.safetensors");
    let metrics = scratch("gan.json");
    let pictures = scratch("gan-report");
    let (c, m, r) = (
        ckpt.to_str().unwrap(),
        metrics.to_str().unwrap(),
        pictures.to_str().unwrap(),
    );
    let out = wgml(&[
        "train",
        "--model",
        "gan",
        "--steps",
        "2",
        "--batch-size",
        "16",
        "--latent",
        "8",
        "--judge",
        j,
        "--save",
        c,
        "--metrics",
        m,
        "--report",
        r,
        "--ema",
        "0.9",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for want in [
        "generator 8 → 256 → 512 → 784",
        "Epoch 1/30",
        "d_loss:",
        "D(real):",
        "D(fake):",
        "of 1000 generated digits",
        "the generator's weights are now their moving average (momentum 0.9)",
    ] {
        assert!(stdout.contains(want), "{want:?} in {stdout}");
    }
    for file in ["samples-epoch-001.png", "gan_losses.png", "gan_d_outputs.png"] {
        assert!(pictures.join(file).is_file(), "{file} in {stdout}");
    }
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&metrics).unwrap()).unwrap();
    let counts = json["judge"]["class_counts"].as_array().unwrap();
    assert_eq!(
        counts.iter().map(|c| c.as_u64().unwrap()).sum::<u64>(),
        1000,
        "{json}"
    );
    assert!(json["epochs"][0]["d_real"].as_f64().is_some(), "{json}");
    let saved = wgml::checkpoint::load(&ckpt).unwrap();
    let names: Vec<(&str, &[usize])> = saved
        .tensors
        .iter()
        .map(|(n, s, _)| (n.as_str(), s.as_slice()))
        .collect();
    for want in [
        ("generator.0.weight", &[256, 8][..]),
        ("generator.4.bias", &[784][..]),
        ("discriminator.4.weight", &[1, 256][..]),
    ] {
        assert!(names.contains(&want), "{want:?} in {names:?}");
    }
    fails_with(
        &["train", "--model", "gan", "--freeze", "1"],
        &["--freeze does not apply to --model gan"],
    );
    fails_with(&["train", "--model", "gan", "--ema", "1.5"], &["momentum 1.5"]);
    fails_with(&["train", "--judge", j], &["--judge applies to --model gan"]);
    let missing = scratch("missing.safetensors");
    let missing = missing.to_str().unwrap();
    fails_with(&["train", "--model", "gan", "--judge", missing], &[missing]);
    for p in [&judge, &ckpt, &metrics] {
        let _ = std::fs::remove_file(p);
    }
    let _ = std::fs::remove_dir_all(&pictures);
}

/// Each epoch's loss and accuracy in a `--metrics` file.
fn epoch_losses(metrics: &std::path::Path) -> Vec<(f64, f64)> {
    let text = std::fs::read_to_string(metrics).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json["epochs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["loss"].as_f64().unwrap(), e["accuracy"].as_f64().unwrap()))
        .collect()
}

/// `--backup`: a run of 3 epochs kept, then raised to 5, gives the epochs of a
/// 5-epoch run that never stopped; the finished run's backup is removed.
#[test]
fn train_resumes_from_its_backup() {
    let dir = scratch("backup");
    let d = dir.to_str().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let (whole, part) = (scratch("whole.json"), scratch("part.json"));
    let run = |args: &[&str]| {
        let out = wgml(args);
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    };
    let train = ["train", "--model", "binary", "--epochs"];
    run(&[&train[..], &["5", "--metrics", whole.to_str().unwrap()]].concat());
    let first = run(&[&train[..], &["3", "--backup", d, "--keep-backup"]].concat());
    assert!(!first.contains("resuming"), "{first}");
    let state = dir.join("training-state.safetensors");
    assert!(state.exists());
    let second = run(&[
        &train[..],
        &["5", "--backup", d, "--metrics", part.to_str().unwrap()],
    ]
    .concat());
    assert!(second.contains("3 of 5 epochs done, 15 steps"), "{second}");
    assert!(
        second.contains("Epoch 4/5") && !second.contains("Epoch 3/5"),
        "{second}"
    );
    assert_eq!(epoch_losses(&part), epoch_losses(&whole));
    assert!(!state.exists(), "the finished run's backup was kept");
    fails_with(&["train", "--keep-backup"], &["--backup"]);
    for f in [&whole, &part] {
        let _ = std::fs::remove_file(f);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `examples/models/cnn.json` is the seed CNN, written with Keras' defaults left out.
#[test]
fn the_example_model_file_is_the_seed_cnn() {
    let a: wgml::checkpoint::Architecture =
        serde_json::from_str(include_str!("../examples/models/cnn.json")).unwrap();
    let cnn = wgml::nn::zoo::cnn();
    assert_eq!(
        (a.model, a.loss, a.optimizer),
        (cnn.model, cnn.loss, cnn.optimizer)
    );
}

/// `--model FILE.json` trains the model the file describes (on the --data it needs),
/// and what it saves evaluates from the file alone: under a name that is not one of
/// wgml's models, only the file's description can rebuild it.
#[test]
fn train_takes_a_model_from_a_json_file() {
    let own = scratch("mine.json");
    std::fs::copy(crate::common::repo_file("examples/models/cnn.json"), &own).unwrap();
    let model = own.to_str().unwrap();
    fails_with(
        &["train", "--model", model, "--steps", "1"],
        &["has no dataset of its own", "--data"],
    );
    let broken = scratch("broken.json");
    std::fs::write(&broken, r#"{"model": {"layers": []}}"#).unwrap();
    let b = broken.to_str().unwrap();
    fails_with(
        &["train", "--model", b, "--data", "mnist-10k"],
        &[b, "not a model description"],
    );
    let saved = scratch("from-json.safetensors");
    let s = saved.to_str().unwrap();
    let out = wgml(&[
        "train",
        "--model",
        model,
        "--data",
        "mnist-10k",
        "--steps",
        "3",
        "--save",
        s,
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains("-mine on mnist-10k") && stdout.contains("347,146"),
        "{stdout}"
    );
    fails_with(
        &["eval", "--weights", s],
        &["mine' is not one of wgml's", "--data"],
    );
    let out = wgml(&["eval", "--weights", s, "--data", "mnist-10k"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("(2000 samples)"));
    // An absurd layer is an error, not an attempt to allocate it.
    std::fs::write(
        &broken,
        r#"{"model": {"input_shape": [1, 28, 28], "layers": ["Flatten", {"Dense": {"units": 2000000000}},
            {"Dense": {"units": 2, "activation": "Softmax"}}]},
          "loss": "SparseCategoricalCrossentropy", "optimizer": {"Adam": {"lr": 0.001}}}"#,
    )
    .unwrap();
    fails_with(
        &["train", "--model", b, "--data", "mnist-10k"],
        &["parameter 1.weight", "more than this device allows"],
    );
    for f in [&broken, &saved, &own] {
        let _ = std::fs::remove_file(f);
    }
}

/// A folder of images (`train/<class>/*.png`, `test/<class>/*.png`, and `val/` for
/// validation) trains a model of one's own end to end: classes named by their
/// folders, RGB images of another size resized to the model's input, bars told
/// apart by their direction, every epoch validated on `val/` (a --val-split on top
/// is refused).
#[test]
fn train_learns_a_folder_of_images() {
    use rand::{Rng, SeedableRng};
    let dir = scratch("bars");
    let _ = std::fs::remove_dir_all(&dir);
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    for (split, count) in [("train", 24), ("test", 8), ("val", 4)] {
        for class in ["horizontal", "vertical"] {
            let folder = dir.join(split).join(class);
            std::fs::create_dir_all(&folder).unwrap();
            for i in 0..count {
                let at = rng.random_range(1..7u32);
                let ink = image::Rgb([rng.random_range(150..=255), rng.random_range(150..=255), 200]);
                let img = image::RgbImage::from_fn(8, 8, |x, y| {
                    let on = if class == "horizontal" { y == at } else { x == at };
                    if on { ink } else { image::Rgb([10, 10, 10]) }
                });
                img.save(folder.join(format!("{i:02}.png"))).unwrap();
            }
        }
    }
    let model = scratch("bars.json");
    std::fs::write(
        &model,
        r#"{"model": {"input_shape": [3, 12, 12], "layers": [
            {"Conv2D": {"filters": 4, "kernel": [3, 3], "activation": "Relu"}},
            {"MaxPool2D": {"pool": [2, 2], "stride": [2, 2]}},
            "Flatten",
            {"Dense": {"units": 2, "activation": "Softmax"}}]},
          "loss": "SparseCategoricalCrossentropy", "optimizer": {"Adam": {"lr": 0.01}}}"#,
    )
    .unwrap();
    let metrics = scratch("bars-metrics.json");
    let saved = scratch("bars.safetensors");
    let args = [
        "train",
        "--model",
        model.to_str().unwrap(),
        "--data",
        dir.to_str().unwrap(),
    ];
    let out = wgml(
        &[
            &args[..],
            &[
                "--epochs",
                "15",
                "--batch-size",
                "8",
                "--metrics",
                metrics.to_str().unwrap(),
                "--save",
                saved.to_str().unwrap(),
            ],
        ]
        .concat(),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains("classes: 0 = horizontal, 1 = vertical"),
        "{stdout}"
    );
    assert!(stdout.contains("(48 train / 16 test)"), "{stdout}");
    assert!(
        stdout.contains("validating on the dataset's own validation split: 8 samples"),
        "{stdout}"
    );
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&metrics).unwrap()).unwrap();
    let epochs = json["epochs"].as_array().unwrap();
    assert!(
        epochs.len() == 15 && epochs.iter().all(|e| e["val_loss"].as_f64().is_some()),
        "{json}"
    );
    fails_with(
        &[&args[..], &["--val-split", "0.25"]].concat(),
        &["own validation split (8 samples)", "--val-split 0.25"],
    );
    assert_eq!(json["class_names"], serde_json::json!(["horizontal", "vertical"]));
    let accuracy = json["test_accuracy"].as_f64().unwrap();
    assert!(accuracy >= 0.9, "test accuracy {accuracy}: {stdout}");
    // The saved model names its classes, and predict uses them on new images.
    let (h, v) = (
        dir.join("test/horizontal/00.png"),
        dir.join("test/vertical/03.png"),
    );
    let out = wgml(&[
        "predict",
        "--weights",
        saved.to_str().unwrap(),
        h.to_str().unwrap(),
        v.to_str().unwrap(),
    ]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        said.contains("00.png: horizontal (class 0") && said.contains("03.png: vertical (class 1"),
        "{said}"
    );
    // A checkpoint that numbers the classes otherwise (--classes 1,0): training
    // from it renumbers the data to its order, so its head keeps its classes
    // (at a learning rate too small to relearn them, its accuracy stays).
    let swapped = scratch("bars-swapped.safetensors");
    let swapped = swapped.to_str().unwrap();
    let train = |extra: &[&str]| {
        let out = wgml(&[&args[..], extra].concat());
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        stdout
    };
    let stdout = train(&[
        "--classes",
        "1,0",
        "--epochs",
        "15",
        "--batch-size",
        "8",
        "--save",
        swapped,
    ]);
    assert!(
        stdout.contains("classes kept: 0 = vertical, 1 = horizontal"),
        "{stdout}"
    );
    let stdout = train(&["--init", swapped, "--steps", "1", "--lr", "1e-9"]);
    assert!(
        stdout.contains("classes as the checkpoint numbers them: vertical, horizontal"),
        "{stdout}"
    );
    let (_, rest) = stdout.split_once("test accuracy: ").unwrap();
    let kept = rest.split_whitespace().next().unwrap().parse::<f64>().unwrap();
    assert!(
        kept >= 0.9,
        "test accuracy {kept} from the swapped checkpoint: {stdout}"
    );
    let _ = std::fs::remove_file(swapped);
    let _ = std::fs::remove_file(&saved);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(&model);
    let _ = std::fs::remove_file(&metrics);
}

/// `--weight-decay` reaches the optimizer: the same run with it trains differently.
#[test]
fn weight_decay_changes_the_training() {
    let plain = scratch("plain.json");
    let decayed = scratch("decayed.json");
    for (file, extra) in [(&plain, None), (&decayed, Some("0.5"))] {
        let mut args = vec!["train", "--model", "binary", "--epochs", "2"];
        args.extend(["--metrics", file.to_str().unwrap()]);
        if let Some(wd) = extra {
            args.extend(["--weight-decay", wd]);
        }
        let out = wgml(&args);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let (a, b) = (epoch_losses(&plain), epoch_losses(&decayed));
    assert_eq!((a.len(), b.len()), (2, 2));
    assert_ne!(a[1], b[1], "{a:?} {b:?}");
    for f in [&plain, &decayed] {
        let _ = std::fs::remove_file(f);
    }
}

#[test]
fn eval_draws_the_confusion_matrix_and_misclassified_digits() {
    let ckpt = scratch("mlp.safetensors");
    let c = ckpt.to_str().unwrap();
    let out = wgml(&["train", "--model", "mlp", "--steps", "2", "--save", c]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let dir = scratch("eval-report");
    let d = dir.to_str().unwrap();
    let out = wgml(&["eval", "--model", "mlp", "--weights", c, "--report", d]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for png in ["confusion.png", "misclassified.png"] {
        let bytes = std::fs::read(dir.join(png)).unwrap_or_else(|e| panic!("{png}: {e}"));
        assert!(bytes.starts_with(b"\x89PNG"), "{png} is not a PNG");
    }
    // No training, no learning curves.
    assert!(!dir.join("curves.png").exists());
    // A report folder that cannot exist is refused before evaluating.
    let under_file = format!("{c}/report");
    fails_with(
        &["eval", "--model", "mlp", "--weights", c, "--report", &under_file],
        &[c],
    );
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(&ckpt);
}

/// `wgml tune` measures a model's products into the cache directory it is given,
/// `wgml info` lists them, a corrupt cache is ignored with a note, and a bad
/// WGML_TUNE is refused naming the modes.
#[test]
fn tune_fills_the_cache_and_info_lists_it() {
    let dir = scratch("tune-cache");
    let _ = std::fs::remove_dir_all(&dir);
    let run = |args: &[&str], tune: Option<&str>| {
        let mut c = Command::new(crate::common::wgml_bin());
        c.args(args).env("WGML_CACHE_DIR", &dir).env_remove("WGML_TUNE");
        if let Some(t) = tune {
            c.env("WGML_TUNE", t);
        }
        c.output().expect("the wgml binary runs")
    };
    let out = run(&["tune", "--model", "mlp"], None);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("measured choices for this adapter"), "{stdout}");
    // The MLP's Dense forward at its default batch of 128.
    assert!(stdout.contains("matmul_nt m128 n128 k784 b1"), "{stdout}");
    let cache = std::fs::read_to_string(dir.join("tune.json")).expect("tune writes the cache file");
    assert!(cache.contains("matmul_nt m128 n128 k784 b1"), "{cache}");
    let out = run(&["info"], None);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(stdout.contains("matmul_nt m128 n128 k784 b1"), "{stdout}");
    assert!(
        stdout.contains(&dir.join("tune.json").display().to_string()),
        "{stdout}"
    );
    std::fs::write(dir.join("tune.json"), "{ not json").unwrap();
    let out = run(&["info"], None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("ignoring the kernel tuning cache"), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 measured choices"));
    let out = run(&["train", "--model", "mlp", "--steps", "1"], Some("sometimes"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && !stderr.contains("panicked"), "{stderr}");
    assert!(
        stderr.contains("WGML_TUNE=sometimes") && stderr.contains("auto"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--data text:README.md` with the repository's README, wherever the test runs.
fn readme_as_text_data() -> String {
    format!("text:{}", crate::common::repo_file("README.md").display())
}

/// `wgml train --model examples/models/byte_lm.json --data text:README.md`: a
/// byte-level language model trains with per-token metrics and perplexity, `wgml
/// eval` rebuilds it from its checkpoint, `wgml generate` continues a prompt by
/// the bytes asked for; wrong weights, settings and files are refused by name.
#[test]
fn a_byte_language_model_trains_evaluates_and_generates() {
    let ckpt = scratch("byte_lm.safetensors");
    let c = ckpt.to_str().unwrap();
    let model = crate::common::repo_file("examples/models/byte_lm.json");
    let m = model.to_str().unwrap();
    let text = readme_as_text_data();
    let out = wgml(&[
        "train", "--model", m, "--data", &text, "--steps", "3", "--save", c,
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for want in ["tokens/s", "perplexity:", "samples of 64 tokens"] {
        assert!(stdout.contains(want), "{want:?} in {stdout}");
    }
    let out = wgml(&["eval", "--weights", c, "--data", &text]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("perplexity:"), "{stdout}");
    let out = wgml(&[
        "generate",
        "--weights",
        c,
        "--prompt",
        "wgml ",
        "--tokens",
        "12",
        "--temperature",
        "0",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The prompt, 12 bytes, a newline.
    assert!(out.stdout.starts_with(b"wgml "), "{:?}", out.stdout);
    assert_eq!(out.stdout.len(), 5 + 12 + 1, "{:?}", out.stdout);
    fails_with(
        &["generate", "--weights", c, "--temperature", "-1"],
        &["temperature -1"],
    );
    fails_with(
        &["generate", "--weights", c, "--prompt", ""],
        &["--prompt is empty"],
    );
    fails_with(
        &["train", "--model", m, "--data", "text:/no/such/file.txt"],
        &["/no/such/file.txt", "cannot read the text"],
    );
    fails_with(
        &["train", "--data", &text],
        &["text data needs a model whose input is [tokens]"],
    );
    // A classifier's weights are no language model.
    let cnn = scratch("cnn-for-generate.safetensors");
    let out = wgml(&["train", "--steps", "1", "--save", cnn.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    fails_with(
        &["generate", "--weights", cnn.to_str().unwrap()],
        &["needs a language model"],
    );
    let _ = std::fs::remove_file(&ckpt);
    let _ = std::fs::remove_file(&cnn);
    // A corpus naming its splits validates every epoch on its validation part.
    let readme = std::fs::read(crate::common::repo_file("README.md")).unwrap();
    let corpus = scratch("named-corpus");
    let _ = std::fs::remove_dir_all(&corpus);
    std::fs::create_dir_all(&corpus).unwrap();
    let third = readme.len() / 3;
    for (name, part) in [
        ("train.txt", &readme[..third]),
        ("valid.txt", &readme[third..2 * third]),
        ("test.txt", &readme[2 * third..]),
    ] {
        std::fs::write(corpus.join(name), part).unwrap();
    }
    let data = format!("text:{}", corpus.display());
    let out = wgml(&["train", "--model", m, "--data", &data, "--steps", "2"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let windows = (2 * third - third - 1) / 64;
    assert!(
        stdout.contains(&format!(
            "validating on the dataset's own validation split: {windows} samples"
        )) && stdout.contains("val_loss"),
        "{stdout}"
    );
    let _ = std::fs::remove_dir_all(&corpus);
}

/// `wgml train --model examples/models/bpe_lm.json --data text:README.md
/// --tokenizer bpe:1024`: a byte-level BPE is trained on the text's training part
/// and kept in the checkpoint, so `wgml eval` reads the text into the same tokens
/// (the same test loss as training printed) and `wgml generate` continues a
/// prompt in whole characters; tokenizers that do not fit are refused by name.
#[test]
fn a_bpe_language_model_keeps_its_tokenizer_in_the_checkpoint() {
    let ckpt = scratch("bpe_lm.safetensors");
    let c = ckpt.to_str().unwrap();
    let model = crate::common::repo_file("examples/models/bpe_lm.json");
    let m = model.to_str().unwrap();
    let text = readme_as_text_data();
    let out = wgml(&[
        "train",
        "--model",
        m,
        "--data",
        &text,
        "--tokenizer",
        "bpe:1024",
        "--steps",
        "2",
        "--save",
        c,
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("a byte-level BPE of"), "{stdout}");
    // The test loss, and the same in bits per byte (over 2 bytes per BPE token).
    let test_line = |stdout: &str| {
        stdout
            .lines()
            .filter(|l| l.starts_with("test loss:") || l.starts_with("test bits per byte:"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let trained = test_line(&stdout);
    assert!(
        trained.contains("bits per byte") && trained.contains(" bytes per token)"),
        "{stdout}"
    );
    let per_token: f64 = trained
        .rsplit_once('(')
        .and_then(|(_, r)| r.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("bytes per token");
    assert!(per_token > 2.0, "{trained}");
    let out = wgml(&["eval", "--weights", c, "--data", &text]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(test_line(&stdout), trained);
    let out = wgml(&[
        "generate",
        "--weights",
        c,
        "--prompt",
        "wgml ",
        "--tokens",
        "6",
        "--seed",
        "3",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let said = String::from_utf8(out.stdout).expect("whole characters");
    // The prompt, six BPE tokens of at least a byte each, a newline.
    assert!(said.starts_with("wgml ") && said.len() > 5 + 6, "{said:?}");
    // Fine-tuning from the checkpoint reads the text with its tokenizer; another
    // tokenizer would give the trained rows to other tokens, and is refused.
    let out = wgml(&[
        "train", "--model", m, "--data", &text, "--init", c, "--steps", "1",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains("text read as tokenizer of") && !stdout.contains("byte-level BPE of"),
        "{stdout}"
    );
    fails_with(
        &[
            "train",
            "--model",
            m,
            "--data",
            &text,
            "--init",
            c,
            "--tokenizer",
            "bytes",
        ],
        &["is not the tokenizer", "--new-layers"],
    );
    // An Embedding with fewer rows than the tokenizer has tokens.
    let narrow = scratch("bpe_lm_256_rows.json");
    let json = std::fs::read_to_string(&model).unwrap();
    assert!(json.contains("\"input_dim\": 1024"));
    std::fs::write(&narrow, json.replace("\"input_dim\": 1024", "\"input_dim\": 256")).unwrap();
    fails_with(
        &[
            "train",
            "--model",
            narrow.to_str().unwrap(),
            "--data",
            &text,
            "--tokenizer",
            "bpe:1024",
        ],
        &["Embedding 'embed' has 256 rows", "input_dim of 1024"],
    );
    let _ = std::fs::remove_file(&narrow);
    fails_with(
        &["train", "--model", m, "--data", &text, "--tokenizer", "bpe:many"],
        &["--tokenizer bpe:many", "e.g. bpe:1024"],
    );
    fails_with(
        &["train", "--model", "vae", "--tokenizer", "bytes"],
        &["give --data text:FILE"],
    );
    fails_with(
        &[
            "train",
            "--model",
            m,
            "--data",
            &text,
            "--tokenizer",
            "/no/tok.json",
        ],
        &["/no/tok.json"],
    );
    fails_with(&["train", "--tokenizer", "bpe:512"], &["give --data text:FILE"]);
    // A head of 256 outputs cannot give 1024 tokens.
    let small_head = scratch("bpe_lm_256_outputs.json");
    let json = std::fs::read_to_string(&model).unwrap();
    let head = "\"units\": 1024, \"activation\": \"Softmax\"";
    assert!(json.contains(head));
    std::fs::write(
        &small_head,
        json.replace(head, "\"units\": 256, \"activation\": \"Softmax\""),
    )
    .unwrap();
    fails_with(
        &[
            "train",
            "--model",
            small_head.to_str().unwrap(),
            "--data",
            &text,
            "--tokenizer",
            "bpe:1024",
        ],
        &["1024 classes", "256 outputs"],
    );
    let _ = std::fs::remove_file(&small_head);
    let _ = std::fs::remove_file(&ckpt);
}

/// `wgml import` of a Hugging Face GPT-2 folder (the tiny one of
/// `kernels-tests/gpt2.rs`), then `wgml generate` from the checkpoint, fine-tuning
/// with `wgml train --model CHECKPOINT` (every tensor loaded from it), and `wgml
/// eval` of the result with the tokenizer that came along.
#[test]
fn an_imported_gpt2_generates_and_fine_tunes() {
    let dir = crate::common::fresh_dir("cli-gpt2");
    let (ckpt, tuned) = (dir.join("gpt2.safetensors"), dir.join("tuned.safetensors"));
    let (c, t) = (ckpt.to_str().unwrap(), tuned.to_str().unwrap());
    let folder = crate::common::repo_file("kernels-tests/golden/gpt2-tiny");
    let out = wgml(&["import", folder.to_str().unwrap(), "--save", c, "--context", "16"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains("2 blocks of width 32")
            && stdout.contains("16 positions (of 32)")
            && stdout.contains("the head is wte, tied"),
        "{stdout}"
    );
    let generate = [
        "generate",
        "--weights",
        c,
        "--prompt",
        "The engine",
        "--tokens",
        "6",
        "--temperature",
        "0",
    ];
    let out = wgml(&generate);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.stdout.starts_with(b"The engine") && out.stdout.len() > 12,
        "{:?}",
        out.stdout
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("6 tokens in") && stderr.contains("tokens/s"),
        "{stderr}"
    );
    // Without the key/value cache: the same text, and the line says so.
    let uncached = wgml(&[&generate[..], &["--no-cache"]].concat());
    assert_eq!(uncached.stdout, out.stdout);
    assert!(String::from_utf8_lossy(&uncached.stderr).contains("no key/value cache"));
    // --stop: the same greedy text, cut after the first stop text it generates
    // (two ASCII bytes the 6 tokens above hold after the prompt's end).
    let new = &out.stdout[b"The engine".len()..out.stdout.len() - 1];
    let from = new
        .windows(2)
        .skip(1)
        .position(|w| w.is_ascii())
        .map(|i| i + 1)
        .unwrap_or_else(|| panic!("no two ASCII bytes in {new:?}"));
    let stop = std::str::from_utf8(&new[from..from + 2]).unwrap();
    let end = b"The engine".len() + new.windows(2).position(|w| w == stop.as_bytes()).unwrap() + 2;
    let stop_arg = format!("--stop={stop}");
    let stopped = wgml(&[&generate[..], &[&stop_arg, "--stop", "never generated"]].concat());
    assert!(
        stopped.status.success(),
        "{}",
        String::from_utf8_lossy(&stopped.stderr)
    );
    assert_eq!(stopped.stdout, [&out.stdout[..end], b"\n"].concat());
    assert!(String::from_utf8_lossy(&stopped.stderr).contains("stopped at"));
    fails_with(&[&generate[..], &["--top-p", "1.5"]].concat(), &["top-p 1.5"]);
    fails_with(
        &[&generate[..], &["--repetition-penalty", "0"]].concat(),
        &["repetition penalty 0"],
    );
    // Both rules reach the sampler from the command line (their effect is tested in
    // nn::generate and kernels-tests/sequence.rs).
    let fresh = wgml(
        &[
            &generate[..],
            &["--no-repeat-ngram", "1", "--repetition-penalty", "1.3"],
        ]
        .concat(),
    );
    assert!(
        fresh.status.success(),
        "{}",
        String::from_utf8_lossy(&fresh.stderr)
    );
    assert!(fresh.stdout.starts_with(b"The engine"), "{:?}", fresh.stdout);
    let text = readme_as_text_data();
    let out = wgml(&[
        "train",
        "--model",
        c,
        "--data",
        &text,
        "--steps",
        "3",
        "--lr",
        "1e-3",
        "--accumulate",
        "2",
        "--weight-decay",
        "0.01",
        "--no-decay",
        "bias,ln_",
        "--lr-schedule",
        "linear",
        "--warmup-steps",
        "1",
        "--label-smoothing",
        "0.1",
        "--save",
        t,
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // 36 tensors: the head reads wte (tied) and has none of its own.
    for want in [
        "loaded 36 tensor(s)",
        "wte.weight (tied)",
        "tokenizer of 300 tokens",
        "gradient accumulation: 2 batches of",
        // Biases and layer norms, as Hugging Face's Trainer leaves them: 2 layers of
        // 2 norms (4 tensors) and 6 biases, and the final norm.
        "no weight decay on 22 of 36 trainable tensors (bias, ln_)",
        "label smoothing 0.1: the training and validation losses above include it",
        "bits per byte",
    ] {
        assert!(stdout.contains(want), "{want:?} in {stdout}");
    }
    let out = wgml(&["eval", "--weights", t, "--data", &text]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("bits per byte"));
    // The fine-tuned model back as a Hugging Face folder, which imports again.
    let hf = dir.join("tuned-hf");
    let out = wgml(&["export", t, "--save", hf.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains("16 positions") && stdout.contains("from_pretrained"),
        "{stdout}"
    );
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        assert!(hf.join(f).is_file(), "{f}");
    }
    let again = dir.join("again.safetensors");
    let out = wgml(&["import", hf.to_str().unwrap(), "--save", again.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let missing = dir.join("missing.safetensors");
    fails_with(
        &[
            "export",
            missing.to_str().unwrap(),
            "--save",
            hf.to_str().unwrap(),
        ],
        &["missing.safetensors"],
    );
    fails_with(&["import", dir.to_str().unwrap(), "--save", c], &["config.json"]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// An instruct model's folder (llama-tiny with a chat template and a stop
/// list, golden/make_chat.py): `generate --chat` writes the conversation in
/// its template and stops at a stop token where transformers' generate stops,
/// printing the reply alone; fine-tuning keeps the settings, and the export
/// writes them where transformers reads them. A model without a template
/// refuses --chat.
#[test]
fn an_instruct_model_chats_in_its_template_and_stops_where_transformers_does() {
    let dir = crate::common::fresh_dir("cli-chat");
    let (folder, plain) = (
        dir.join("instruct"),
        crate::common::repo_file("kernels-tests/golden/llama-tiny"),
    );
    std::fs::create_dir_all(&folder).unwrap();
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(plain.join(f), folder.join(f)).unwrap();
    }
    let golden: serde_json::Value = serde_json::from_slice(
        &std::fs::read(crate::common::repo_file("kernels-tests/golden/chat.json")).unwrap(),
    )
    .unwrap();
    let g = &golden["generation"];
    let config = serde_json::json!({
        "chat_template": g["template"],
        "bos_token": "<|begin_of_text|>",
        "eos_token": "<|end_of_text|>",
    });
    std::fs::write(folder.join("tokenizer_config.json"), config.to_string()).unwrap();
    // Greedy by the model's own word: no --temperature below.
    let stops = serde_json::json!({ "eos_token_id": g["stop_ids"], "do_sample": false });
    std::fs::write(folder.join("generation_config.json"), stops.to_string()).unwrap();
    let ckpt = dir.join("instruct.safetensors");
    let c = ckpt.to_str().unwrap();
    succeeds(&["import", folder.to_str().unwrap(), "--save", c]);
    let chat = |weights: &str| {
        wgml(&[
            "generate",
            "--weights",
            weights,
            "--chat",
            "--system",
            g["system"].as_str().unwrap(),
            "--prompt",
            g["prompt"].as_str().unwrap(),
            "--tokens",
            "12",
        ])
    };
    let out = chat(c);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{}\n", g["reply"].as_str().unwrap()),
        "the reply alone, as transformers decodes it"
    );
    let stop = g["ids"].as_array().unwrap().last().unwrap();
    assert!(stderr.contains(&format!("stopped at token {stop} ")), "{stderr}");
    assert!(
        stderr.contains(r#"generation_config.json says {"do_sample":false}"#),
        "{stderr}"
    );
    // Fine-tuned, the checkpoint keeps its template and stops.
    let tuned = dir.join("tuned.safetensors");
    let text = readme_as_text_data();
    succeeds(&[
        "train",
        "--model",
        c,
        "--data",
        &text,
        "--steps",
        "1",
        "--save",
        tuned.to_str().unwrap(),
    ]);
    let kept = wgml::checkpoint::load(&tuned)
        .unwrap()
        .vocabulary(&tuned)
        .unwrap();
    let read = wgml::data::chat::ChatSettings::from_folder(&folder).unwrap();
    assert_eq!(kept.chat(), Some(&read));
    // Exported, transformers finds them where it reads them.
    let hf = dir.join("hf");
    succeeds(&["export", tuned.to_str().unwrap(), "--save", hf.to_str().unwrap()]);
    assert_eq!(wgml::data::chat::ChatSettings::from_folder(&hf).unwrap(), read);
    // A conversation on standard input: each line a message, each reply
    // transformers' (the second read with the first turn's keys and values
    // kept), printed a line each.
    let talk = &golden["conversation"];
    assert_eq!(talk["template"], g["template"]);
    let turns: Vec<&str> = talk["turns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    let replies: Vec<&str> = talk["replies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    let mut child = Command::new(crate::common::wgml_bin())
        .args(["chat", "--weights", c, "--tokens", "4"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let input = format!("{}\n\n{}\n", turns[0], turns[1]);
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{}\n{}\n", replies[0], replies[1])
    );
    // A template that reads messages[0] before anything else (Llama 3's
    // shape) starts a conversation without a system message too.
    let headers = serde_json::json!({ "chat_template": golden["templates"]["headers"] });
    std::fs::write(folder.join("tokenizer_config.json"), headers.to_string()).unwrap();
    let llama3 = dir.join("llama3.safetensors");
    let l3 = llama3.to_str().unwrap();
    succeeds(&["import", folder.to_str().unwrap(), "--save", l3]);
    let mut child = Command::new(crate::common::wgml_bin())
        .args(["chat", "--weights", l3, "--temperature", "0", "--tokens", "2"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), b"Hi\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        out.stdout.iter().filter(|&&b| b == b'\n').count(),
        1,
        "one reply line"
    );
    // A base model has no template to chat in.
    let base = dir.join("base.safetensors");
    succeeds(&[
        "import",
        plain.to_str().unwrap(),
        "--save",
        base.to_str().unwrap(),
    ]);
    let out = chat(base.to_str().unwrap());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("no chat template"),
        "{stderr}"
    );
    fails_with(
        &["generate", "--weights", c, "--system", "x"],
        &["--system", "--chat"],
    );
}

/// `wgml import` of a Hugging Face Llama folder (the tiny grouped-query one of
/// `kernels-tests/llama.rs`), `wgml generate` from it with and without the
/// key/value cache, LoRA fine-tuning on text (PEFT's default targets, q_proj
/// and v_proj), and `wgml export` of the result, merged, as a folder that
/// imports again, and its adapters alone, as a PEFT folder that imports back
/// onto the base.
#[test]
fn an_imported_llama_generates_fine_tunes_and_exports() {
    let dir = crate::common::fresh_dir("cli-llama");
    let (ckpt, tuned) = (dir.join("llama.safetensors"), dir.join("tuned.safetensors"));
    let (c, t) = (ckpt.to_str().unwrap(), tuned.to_str().unwrap());
    let folder = crate::common::repo_file("kernels-tests/golden/llama-tiny");
    let stdout = succeeds(&["import", folder.to_str().unwrap(), "--save", c, "--context", "16"]);
    assert!(
        stdout.contains("4 query heads of 8 sharing 2 key and value heads")
            && stdout.contains("16 positions (of 32)")
            && stdout.contains("continue a text with `wgml generate"),
        "{stdout}"
    );
    let generate = [
        "generate",
        "--weights",
        c,
        "--prompt",
        "The engine",
        "--tokens",
        "6",
        "--temperature",
        "0",
    ];
    let out = wgml(&generate);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stdout.starts_with(b"The engine"), "{:?}", out.stdout);
    // The prompt as Hugging Face's tokenizer reads it: <|begin_of_text|> first.
    let vocabulary = wgml::data::text::Vocabulary::from_file(&folder.join("tokenizer.json")).unwrap();
    let read = vocabulary.encode(b"The engine").unwrap().len() + 1;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("reading the prompt's {read} first")),
        "{stderr}"
    );
    let uncached = wgml(&[&generate[..], &["--no-cache"]].concat());
    assert_eq!(uncached.stdout, out.stdout);
    let text = readme_as_text_data();
    let stdout = succeeds(&[
        "train", "--model", c, "--data", &text, "--steps", "2", "--lr", "1e-3", "--lora", "4", "--save", t,
    ]);
    for want in ["self_attn.query", "self_attn.value", "bits per byte"] {
        assert!(stdout.contains(want), "{want:?} in {stdout}");
    }
    let hf = dir.join("tuned-hf");
    let stdout = succeeds(&["export", t, "--save", hf.to_str().unwrap()]);
    assert!(
        stdout.contains("AutoModelForCausalLM.from_pretrained"),
        "{stdout}"
    );
    let again = dir.join("again.safetensors");
    succeeds(&["import", hf.to_str().unwrap(), "--save", again.to_str().unwrap()]);
    // The adapters alone, as PEFT's folder, which imports back onto the base.
    let adapter = dir.join("adapter");
    let stdout = succeeds(&["export", t, "--save", adapter.to_str().unwrap(), "--peft"]);
    assert!(
        stdout.contains("on 4 modules") && stdout.contains("CAUSAL_LM"),
        "{stdout}"
    );
    let readapted = dir.join("readapted.safetensors");
    let stdout = succeeds(&[
        "import",
        folder.to_str().unwrap(),
        "--save",
        readapted.to_str().unwrap(),
        "--context",
        "16",
        "--peft",
        adapter.to_str().unwrap(),
    ]);
    assert!(
        stdout.contains("LoRA adapter: rank 4") && stdout.contains("on 4 modules"),
        "{stdout}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `wgml generate` stops at the tokenizer's end-of-text token without printing
/// it, and goes on with `--ignore-eos`. The tiny GPT-2's tokenizer has none, so
/// one of the tokens its greedy continuation draws (one that no merge and not
/// the prompt involves) becomes `<|endoftext|>`.
#[test]
fn generation_stops_at_the_end_of_text_token() {
    use std::ops::ControlFlow;
    use wgml::data::text::Vocabulary;
    use wgml::nn::generate::{Sampling, generate_with};
    let dir = crate::common::fresh_dir("cli-eos");
    let folder = crate::common::repo_file("kernels-tests/golden/gpt2-tiny");
    let imported = wgml::import::import_gpt2(&folder, Some(16), 1e-4).unwrap();
    let plain = dir.join("plain.safetensors");
    let save = |path: &std::path::Path, vocabulary: &Vocabulary| {
        wgml::checkpoint::save_functional_tensors(
            path,
            "gpt2",
            &imported.architecture,
            &imported.tensors,
            vocabulary,
        )
        .unwrap();
    };
    save(&plain, &imported.vocabulary);
    let (_g, ctx) = crate::common::gpu();
    let (mut model, _) = wgml::checkpoint::load_model(ctx, &plain).unwrap();
    let prompt = imported.vocabulary.encode(b"The engine").unwrap();
    let greedy = generate_with(
        &mut model,
        ctx,
        &prompt,
        8,
        Sampling::GREEDY,
        &mut crate::common::rng(1),
        |_| ControlFlow::Continue(()),
        true,
    )
    .unwrap();
    // The tokenizer with one drawn token (after the first, in no merge) renamed.
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(folder.join("tokenizer.json")).unwrap()).unwrap();
    let vocab = json["model"]["vocab"].as_object().unwrap().clone();
    let name_of = |id: u32| {
        vocab
            .iter()
            .find(|(_, v)| v.as_u64() == Some(id as u64))
            .map(|(k, _)| k.clone())
            .unwrap()
    };
    let merges = json["model"]["merges"].as_array().unwrap().clone();
    let in_merges = |name: &str| {
        merges.iter().any(|m| {
            let (a, b) = (m[0].as_str().unwrap(), m[1].as_str().unwrap());
            a == name || b == name || format!("{a}{b}") == name
        })
    };
    let (k, &eos) = greedy
        .iter()
        .enumerate()
        .skip(1)
        .find(|(k, id)| !in_merges(&name_of(**id)) && !greedy[..*k].contains(id) && !prompt.contains(id))
        .expect("a drawn token that no merge and not the prompt involves");
    let old = name_of(eos);
    let model_vocab = json["model"]["vocab"].as_object_mut().unwrap();
    model_vocab.remove(&old);
    model_vocab.insert("<|endoftext|>".into(), eos.into());
    json["added_tokens"] = serde_json::json!([{ "id": eos, "content": "<|endoftext|>", "single_word": false,
        "lstrip": false, "rstrip": false, "normalized": false, "special": true }]);
    let with_end = Vocabulary::from_json(&json.to_string()).unwrap();
    assert_eq!(with_end.end_of_text(), Some(eos));
    let ended = dir.join("ended.safetensors");
    save(&ended, &with_end);
    let run = |extra: &[&str]| {
        let e = ended.to_str().unwrap();
        let args = [
            &[
                "generate",
                "--weights",
                e,
                "--prompt",
                "The engine",
                "--tokens",
                "8",
                "--temperature",
                "0",
            ][..],
            extra,
        ]
        .concat();
        let out = wgml(&args);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        out
    };
    let stopped = run(&[]);
    let stderr = String::from_utf8_lossy(&stopped.stderr);
    assert!(
        stderr.contains(&format!("{} tokens in", k + 1)) && stderr.contains("end-of-text"),
        "stopped at token {k} (counted, not printed): {stderr}"
    );
    let went_on = run(&["--ignore-eos"]);
    assert!(String::from_utf8_lossy(&went_on.stderr).contains("8 tokens in"));
    // The same text up to the end-of-text token, then more.
    let cut = &stopped.stdout[..stopped.stdout.len() - 1];
    assert!(went_on.stdout.starts_with(cut) && went_on.stdout.len() > stopped.stdout.len());
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--class-weight`: `balanced` weighs each class by n / (k · n_c) of the training
/// labels (scikit-learn's formula: the weights' count-weighted mean is 1), and
/// CLASS=WEIGHT pairs set some weights, leaving the others at 1; `--ema` ends the
/// run with the moving average in the weights' place.
#[test]
fn class_weights_from_the_command_line() {
    let out = wgml(&[
        "train",
        "--model",
        "mlp",
        "--steps",
        "1",
        "--class-weight",
        "balanced",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let line = stdout
        .lines()
        .find(|l| l.starts_with("class weights: "))
        .unwrap_or_else(|| panic!("no class weights line in {stdout}"));
    let weights: Vec<f64> = line["class weights: ".len()..]
        .split(", ")
        .map(|p| p.split(" = ").nth(1).unwrap().parse().unwrap())
        .collect();
    let data = wgml::data::Dataset::mnist_10k().unwrap();
    let wgml::data::Targets::Classes { labels, .. } = &data.train.y else {
        panic!("mnist has class labels")
    };
    let mut counts = [0usize; 10];
    for &l in labels {
        counts[l as usize] += 1;
    }
    let n = labels.len() as f64;
    assert_eq!(weights.len(), 10, "{line}");
    for (c, (&w, &n_c)) in weights.iter().zip(&counts).enumerate() {
        let want = n / (10.0 * n_c as f64);
        assert!((w - want).abs() < 1e-4, "class {c}: {w} vs {want}");
    }
    let out = wgml(&[
        "train",
        "--model",
        "mlp",
        "--steps",
        "1",
        "--class-weight",
        "3=2,7=0.5",
        "--ema",
        "0.99",
        "--top-k",
        "3",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains("class weights: 0 = 1.0000, 1 = 1.0000, 2 = 1.0000, 3 = 2.0000")
            && stdout.contains("7 = 0.5000, 8 = 1.0000")
            && stdout.contains("weights replaced by their moving average (momentum 0.99)")
            && stdout.contains("top-3 accuracy: "),
        "{stdout}"
    );
}

/// LoRA from the command line: `wgml import --peft` reads a PEFT adapter onto
/// the tiny GPT-2 (it generates); `wgml train --lora` fine-tunes new adapters on
/// the imported model (only they train), goes on training them from its own
/// checkpoint without `--lora`, and `wgml export` writes the adapters merged or,
/// with `--peft`, alone; conflicting or empty choices are refused by name.
#[test]
fn a_gpt2_fine_tunes_low_rank_adapters_and_exports_them() {
    let dir = crate::common::fresh_dir("cli-lora");
    let path = |name: &str| dir.join(name).to_str().unwrap().to_string();
    let (base, peft_in, tuned, again) = (
        path("gpt2.safetensors"),
        path("peft-in.safetensors"),
        path("tuned.safetensors"),
        path("again.safetensors"),
    );
    let folder = crate::common::repo_file("kernels-tests/golden/gpt2-tiny");
    let folder = folder.to_str().unwrap();
    let adapter = crate::common::repo_file("kernels-tests/golden/gpt2-tiny-lora");
    let out = wgml(&[
        "import",
        folder,
        "--save",
        &peft_in,
        "--context",
        "16",
        "--peft",
        adapter.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("LoRA adapter: rank 4, alpha 6"), "{stdout}");
    let generate = |weights: &str| {
        wgml(&[
            "generate",
            "--weights",
            weights,
            "--prompt",
            "The engine",
            "--tokens",
            "4",
            "--temperature",
            "0",
        ])
    };
    let adapted = generate(&peft_in);
    assert!(
        adapted.status.success(),
        "{}",
        String::from_utf8_lossy(&adapted.stderr)
    );
    let out = wgml(&["import", folder, "--save", &base, "--context", "16"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_ne!(
        generate(&base).stdout,
        adapted.stdout,
        "the adapter changes the text"
    );

    let text = readme_as_text_data();
    let train = |model: &str, extra: &[&str], save: &str| {
        wgml(
            &[
                &[
                    "train", "--model", model, "--data", &text, "--steps", "2", "--lr", "1e-2", "--save",
                    save,
                ],
                extra,
            ]
            .concat(),
        )
    };
    let out = train(
        &base,
        &["--lora", "2", "--lora-targets", "attn.query,attn.value"],
        &tuned,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Rank 2 on 2 blocks' query and value: 4 · (2·32 + 32·2) trainable values.
    for want in [
        "512 trainable",
        "8 LoRA adapter tensors start anew",
        "loaded 36 tensor(s)",
        "LoRA: 4 adapters of rank 2, alpha 8 (scale 4), dropout 0 on attn.query, attn.value; every other tensor frozen",
    ] {
        assert!(stdout.contains(want), "{want:?} in {stdout}");
    }
    // Its own checkpoint describes the adapters: training goes on without --lora.
    let out = train(&tuned, &[], &again);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains("loaded 44 tensor(s)") && stdout.contains("512 trainable"),
        "{stdout}"
    );
    let out = wgml(&["export", &again, "--save", &path("peft"), "--peft"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for f in ["adapter_config.json", "adapter_model.safetensors"] {
        assert!(dir.join("peft").join(f).is_file(), "{f}");
    }
    // PEFT's adapter (which changes the text, above) merged: the plain model writes
    // what the adapted one writes.
    let out = wgml(&["export", &peft_in, "--save", &path("merged")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = wgml(&["import", &path("merged"), "--save", &path("merged.safetensors")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(generate(&path("merged.safetensors")).stdout, adapted.stdout);
    let out = wgml(&["export", &again, "--save", &path("merged-again")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    fails_with(
        &[
            &["train", "--model", &tuned, "--data", &text, "--steps", "1"][..],
            &["--lora", "2"],
        ]
        .concat(),
        &["already has adapters"],
    );
    fails_with(
        &[
            "train",
            "--model",
            &base,
            "--data",
            &text,
            "--lora",
            "2",
            "--lora-targets",
            "c_attn",
        ],
        &["'c_attn'", "h.0.attn.query"],
    );
    fails_with(
        &["train", "--model", "mlp", "--lora", "2", "--freeze", "1"],
        &["--lora freezes every tensor"],
    );
    fails_with(&["train", "--model", "mlp", "--lora-alpha", "4"], &["--lora"]);
    fails_with(
        &["train", "--model", "vae", "--lora", "2"],
        &["--lora does not apply"],
    );
    // A layer that starts anew must train: LoRA would freeze it at its initial values.
    let mlp = path("mlp.safetensors");
    let out = wgml(&["train", "--model", "mlp", "--steps", "1", "--save", &mlp]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    fails_with(
        &[
            "train",
            "--model",
            "mlp",
            "--init",
            &mlp,
            "--new-layers",
            "3",
            "--lora",
            "2",
        ],
        &["'3.weight' starts from its initialiser", "--lora-train 3"],
    );
    // Any model's adapters merge into a plain wgml checkpoint that evaluates the same.
    let (adapted_mlp, merged_mlp) = (path("mlp-lora.safetensors"), path("mlp-merged.safetensors"));
    let out = wgml(&[
        "train",
        "--model",
        "mlp",
        "--init",
        &mlp,
        "--steps",
        "3",
        "--lr",
        "1e-2",
        "--lora",
        "2",
        "--save",
        &adapted_mlp,
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = wgml(&["export", &adapted_mlp, "--save", &merged_mlp]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let merged = wgml::checkpoint::load(std::path::Path::new(&merged_mlp)).unwrap();
    assert!(
        merged.tensors.iter().all(|(n, ..)| !n.contains("lora")),
        "{:?}",
        merged.tensors
    );
    let test_line = |weights: &str| {
        let out = wgml(&["eval", "--weights", weights]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        stdout
            .lines()
            .find(|l| l.starts_with("test loss"))
            .unwrap()
            .to_string()
    };
    assert_eq!(test_line(&merged_mlp), test_line(&adapted_mlp));
    assert_ne!(
        test_line(&mlp),
        test_line(&adapted_mlp),
        "the adapters changed the model"
    );
    fails_with(
        &["export", &mlp, "--save", &path("none.safetensors")],
        &["no LoRA adapters to merge"],
    );
    fails_with(
        &["export", &base, "--save", &path("none"), "--peft"],
        &["no LoRA adapters"],
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Writes a folder of texts by class under `dir`: Rust source and WGSL shaders
/// of this repository, frozen in `kernels-tests/golden/texts/` (so editing the
/// sources does not change the test's data), cut into documents of 20 to 400
/// bytes (some longer than a model's 256 tokens, most shorter), in train/ and
/// test/, and an unlabelled train/unsup/ as aclImdb has.
fn texts_by_class(dir: &std::path::Path) {
    for class in ["rust", "wgsl"] {
        let file = crate::common::repo_file(&format!("kernels-tests/golden/texts/{class}.txt"));
        let text = std::fs::read_to_string(file).unwrap();
        let (mut at, mut n) = (0, 0);
        while at < text.len() && n < 160 {
            // Cut at a character boundary: a tokenizer reads UTF-8.
            let mut end = (at + 20 + (n * 97) % 380).min(text.len());
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            let (doc, len) = (&text[at..end], end - at);
            let split = if n % 4 == 3 { "test" } else { "train" };
            let folder = dir.join(split).join(class);
            std::fs::create_dir_all(&folder).unwrap();
            std::fs::write(folder.join(format!("{n}.txt")), doc).unwrap();
            at += len;
            n += 1;
        }
    }
    std::fs::create_dir_all(dir.join("train/unsup")).unwrap();
    std::fs::write(dir.join("train/unsup/0.txt"), "no label").unwrap();
}

/// `wgml train --data DIR` on texts by class: the example encoder (an Embedding
/// with mask_id 0) learns which are Rust and which WGSL and evaluates; a GPT-2
/// checkpoint becomes a classifier of its last real token with a new head; a
/// model that masks no padding is refused, saying what to add.
#[test]
fn texts_by_class_train_an_encoder_and_a_gpt2_classifier() {
    let dir = crate::common::fresh_dir("cli-texts");
    let data = dir.join("texts");
    texts_by_class(&data);
    let data = data.to_str().unwrap();
    let path = |name: &str| dir.join(name).to_str().unwrap().to_string();
    let model = crate::common::repo_file("examples/models/text_classifier.json");
    let model = model.to_str().unwrap();
    let ckpt = path("texts.safetensors");
    let out = wgml(&[
        "train",
        "--model",
        model,
        "--data",
        data,
        "--epochs",
        "6",
        "--batch-size",
        "16",
        "--lr",
        "3e-3",
        "--save",
        &ckpt,
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for want in [
        "classes: 0 = rust, 1 = wgsl",
        "left out, a class the test split lacks:",
        "unsup",
        "padded with id 0",
    ] {
        assert!(stdout.contains(want), "{want:?} in {stdout}");
    }
    let accuracy = |stdout: &str| -> f64 {
        let (_, rest) = stdout.split_once("test accuracy: ").expect("a test accuracy");
        rest.split_whitespace().next().unwrap().parse::<f64>().unwrap()
    };
    let trained = accuracy(&stdout);
    assert!(trained > 0.8, "Rust against WGSL: {trained} in {stdout}");
    let out = wgml(&["eval", "--weights", &ckpt, "--data", data]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(accuracy(&stdout), trained, "eval reads the texts as train did");
    // Predict reads a text file as training read each document.
    let (rust, wgsl) = (path("some.rs.txt"), path("some.wgsl.txt"));
    std::fs::write(&rust, "/// The mean of a slice.\npub fn mean(x: &[f32]) -> f32 {\n    x.iter().sum::<f32>() / x.len() as f32\n}\n").unwrap();
    std::fs::write(&wgsl, "@group(0) @binding(1) var<storage, read> x: array<f32>;\n@compute @workgroup_size(64)\nfn main(@builtin(global_invocation_id) id: vec3<u32>) {\n    let i = id.x;\n}\n").unwrap();
    let out = wgml(&["predict", "--weights", &ckpt, &rust, &wgsl]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("some.rs.txt: rust (class 0"), "{stdout}");
    assert!(stdout.contains("some.wgsl.txt: wgsl (class 1"), "{stdout}");

    // The same documents as one CSV table (quoted: they hold commas and newlines),
    // every tenth row the test split.
    let table = path("texts.csv");
    let mut writer = csv::Writer::from_path(&table).unwrap();
    writer.write_record(["text", "label"]).unwrap();
    for split in ["train", "test"] {
        for class in ["rust", "wgsl"] {
            let folder = std::path::Path::new(data).join(split).join(class);
            let mut files: Vec<_> = std::fs::read_dir(&folder)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            files.sort();
            for f in files {
                writer
                    .write_record([std::fs::read_to_string(f).unwrap(), class.to_string()])
                    .unwrap();
            }
        }
    }
    writer.flush().unwrap();
    let out = wgml(&[
        "train",
        "--model",
        model,
        "--data",
        &table,
        "--steps",
        "2",
        "--group-by-length",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for want in [
        "classes: 0 = rust, 1 = wgsl",
        "302 documents",
        "(272 train / 30 test)",
        "texts/s",
    ] {
        assert!(stdout.contains(want), "{want:?} in {stdout}");
    }
    // Without a mask_id the padding would be read as text.
    let unmasked = path("unmasked.json");
    let json = std::fs::read_to_string(model)
        .unwrap()
        .replace(", \"mask_id\": 0", "");
    std::fs::write(&unmasked, json).unwrap();
    fails_with(
        &["train", "--model", &unmasked, "--data", data, "--steps", "1"],
        &["holds labelled texts", "give the model's Embedding a mask_id"],
    );

    // A GPT-2 whose tokenizer has an end of text: the tiny one's last id, as
    // GPT-2's <|endoftext|> is its last (the merge that made that token goes).
    let gpt2 = dir.join("gpt2-tiny");
    std::fs::create_dir_all(&gpt2).unwrap();
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        let from = crate::common::repo_file(&format!("kernels-tests/golden/gpt2-tiny/{f}"));
        std::fs::copy(from, gpt2.join(f)).unwrap();
    }
    let tokenizer = gpt2.join("tokenizer.json");
    let mut t: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&tokenizer).unwrap()).unwrap();
    let vocab = t["model"]["vocab"].as_object_mut().unwrap();
    let last = vocab
        .iter()
        .find(|(_, id)| id.as_u64() == Some(299))
        .unwrap()
        .0
        .clone();
    vocab.remove(&last);
    vocab.insert("<|endoftext|>".into(), 299.into());
    t["model"]["merges"]
        .as_array_mut()
        .unwrap()
        .retain(|m| format!("{}{}", m[0].as_str().unwrap(), m[1].as_str().unwrap()) != last);
    t["added_tokens"] = serde_json::json!([{
        "id": 299, "content": "<|endoftext|>", "single_word": false, "lstrip": false,
        "rstrip": false, "normalized": false, "special": true
    }]);
    std::fs::write(&tokenizer, t.to_string()).unwrap();
    let (base, tuned) = (path("gpt2.safetensors"), path("gpt2-cls.safetensors"));
    let out = wgml(&[
        "import",
        gpt2.to_str().unwrap(),
        "--save",
        &base,
        "--context",
        "32",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = wgml(&[
        "train",
        "--model",
        &base,
        "--data",
        data,
        "--steps",
        "2",
        "--batch-size",
        "8",
        "--lora",
        "2",
        "--classes",
        "1,0",
        "--save",
        &tuned,
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for want in [
        "padded with id 299",
        "classes kept: 0 = wgsl, 1 = rust",
        "a sequence classifier: each text read at its last real token (last_token), a new head 'score' of 2 classes",
        "new score.weight",
        "LoRA: 6 adapters of rank 2",
        "on attn.query, attn.key, attn.value; trained in full: score;",
        "test accuracy:",
    ] {
        assert!(stdout.contains(want), "{want:?} in {stdout}");
    }
    // Trained on wgsl = 0, rust = 1: the folder's sorted classes are renumbered.
    let out = wgml(&["eval", "--weights", &tuned, "--data", data]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains("classes as the model numbers them: wgsl, rust"),
        "{stdout}"
    );
    assert!(stdout.contains("test accuracy:"), "{stdout}");
    // Hugging Face's classifier files, or PEFT's classifier adapter.
    let out = wgml(&["export", &tuned, "--save", &path("hf-cls")]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("AutoModelForSequenceClassification"), "{stdout}");
    let out = wgml(&["export", &tuned, "--peft", "--save", &path("peft-cls")]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains("the head score of 2 classes (PEFT's SEQ_CLS"),
        "{stdout}"
    );
}

/// A pretrained BERT (the tiny fixture without its classifier) imported from
/// the command line gets a new head of 2 classes, fine-tunes on texts by class
/// with LoRA on its queries and values (the head in full), and predicts a file
/// and tables of texts (CSV rows of probabilities); a RoBERTa imports too;
/// --num-labels is refused for a GPT-2.
#[test]
fn a_pretrained_bert_fine_tunes_and_predicts_from_the_command_line() {
    let dir = crate::common::fresh_dir("cli-bert");
    let data = dir.join("texts");
    texts_by_class(&data);
    let data = data.to_str().unwrap();
    let path = |name: &str| dir.join(name).to_str().unwrap().to_string();
    let fixture = crate::common::repo_file("kernels-tests/golden/bert-tiny-cls");
    std::fs::create_dir_all(dir.join("bert")).unwrap();
    crate::common::rewrite_fixture(&fixture, &dir.join("bert"), |t| {
        t.retain(|x| !x.0.starts_with("classifier."))
    });
    let (base, tuned) = (path("bert.safetensors"), path("bert-cls.safetensors"));
    let out = wgml(&["import", &path("bert"), "--save", &base, "--seed", "4"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains("24 positions (of 24)") && stdout.contains("a new head 'classifier' of 2 classes"),
        "{stdout}"
    );
    let out = wgml(&[
        "train",
        "--model",
        &base,
        "--data",
        data,
        "--steps",
        "2",
        "--batch-size",
        "8",
        "--lora",
        "2",
        "--save",
        &tuned,
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for want in [
        "padded with id 0",
        "LoRA: 4 adapters of rank 2",
        "on attention.query, attention.value; trained in full: classifier;",
        "test accuracy:",
    ] {
        assert!(stdout.contains(want), "{want:?} in {stdout}");
    }
    let doc = std::path::Path::new(data).join("test/rust/3.txt");
    let out = wgml(&["predict", "--weights", &tuned, doc.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains("3.txt: ") && stdout.contains("probability"),
        "{stdout}"
    );
    // A table of texts: one CSV row of predictions per text, its label kept.
    let table = dir.join("reviews.csv");
    std::fs::write(
        &table,
        "text,label\n\"fn main() { }\",rust\n@compute fn f() {},wgsl\nlet y = 2;,\n",
    )
    .unwrap();
    let out = wgml(&["predict", "--weights", &tuned, table.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    assert!(lines[3].starts_with("3,,"), "a row without a label: {stdout}");
    assert_eq!(lines[0], "row,label,prediction,probability,rust,wgsl", "{stdout}");
    assert!(
        lines[1].starts_with("1,rust,") && lines[2].starts_with("2,wgsl,"),
        "{stdout}"
    );
    let sum: f64 = lines[1]
        .split(',')
        .skip(4)
        .map(|p| p.parse::<f64>().unwrap())
        .sum();
    assert!((sum - 1.0).abs() < 1e-4, "{}", lines[1]);
    let jsonl = dir.join("reviews.jsonl");
    std::fs::write(&jsonl, "{\"review\": \"let x = 1;\"}\n").unwrap();
    let csv = path("predictions.csv");
    let out = wgml(&[
        "predict",
        "--weights",
        &tuned,
        jsonl.to_str().unwrap(),
        "--output",
        &csv,
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let written = std::fs::read_to_string(&csv).unwrap();
    assert!(
        written.starts_with("row,prediction,probability,rust,wgsl\n1,"),
        "{written}"
    );
    // Sentence pairs (GLUE's columns) train and predict as pairs.
    let pairs = dir.join("pairs.csv");
    let mut rows = String::from("sentence1,sentence2,label\n");
    for i in 0..20 {
        let class = ["rust", "wgsl"][i % 2];
        rows.push_str(&format!("fn f{i}() {{}},\"let x{i} = {i};\",{class}\n"));
    }
    std::fs::write(&pairs, rows).unwrap();
    let pairs = pairs.to_str().unwrap();
    let stdout = succeeds(&[
        "train",
        "--model",
        &tuned,
        "--data",
        pairs,
        "--steps",
        "1",
        "--batch-size",
        "4",
    ]);
    assert!(stdout.contains("20 documents (pairs of texts)"), "{stdout}");
    let stdout = succeeds(&["predict", "--weights", &tuned, pairs]);
    assert_eq!(stdout.lines().count(), 21, "{stdout}");
    assert!(stdout.lines().nth(2).unwrap().starts_with("2,wgsl,"), "{stdout}");
    // A regression head (one score, STS-B's pairs): numeric labels, Pearson's and
    // Spearman's correlations, a score column; text labels are refused.
    let reg = path("reg.safetensors");
    let fixture = crate::common::repo_file("kernels-tests/golden/bert-tiny-reg");
    succeeds(&[
        "import",
        fixture.to_str().unwrap(),
        "--save",
        &reg,
        "--context",
        "16",
    ]);
    let stsb = dir.join("stsb.csv");
    let mut rows = String::from("sentence1,sentence2,label\n");
    for i in 0..20 {
        let very = "very ".repeat(i % 7);
        rows.push_str(&format!(
            "the film was {very}good,it was good,{}\n",
            (i % 6) as f32 * 0.8
        ));
    }
    std::fs::write(&stsb, rows).unwrap();
    let stsb = stsb.to_str().unwrap();
    let stdout = succeeds(&[
        "train",
        "--model",
        &reg,
        "--data",
        stsb,
        "--steps",
        "2",
        "--batch-size",
        "4",
    ]);
    assert!(
        stdout.contains("Pearson r: ") && stdout.contains("Spearman rho: "),
        "{stdout}"
    );
    let stdout = succeeds(&["predict", "--weights", &reg, stsb]);
    assert_eq!(stdout.lines().next(), Some("row,label,score"), "{stdout}");
    assert!(stdout.lines().nth(2).unwrap().starts_with("2,0.8,"), "{stdout}");
    fails_with(
        &["train", "--model", &reg, "--data", pairs, "--steps", "1"],
        &["is labelled 'rust', not a number"],
    );
    // A multi-label head: sets of classes (JSON arrays), the rows whose every
    // class is right as accuracy, each class's metrics, a set per prediction.
    let multi = path("multi.safetensors");
    let fixture = crate::common::repo_file("kernels-tests/golden/bert-tiny-multilabel");
    succeeds(&[
        "import",
        fixture.to_str().unwrap(),
        "--save",
        &multi,
        "--context",
        "16",
    ]);
    let emotions = dir.join("emotions.jsonl");
    let sets = [r#"["joy"]"#, r#"["joy", "love"]"#, "[]", r#"["anger"]"#];
    let rows: String = (0..20)
        .map(|i| format!("{{\"text\": \"the film {i}\", \"labels\": {}}}\n", sets[i % 4]))
        .collect();
    std::fs::write(&emotions, rows).unwrap();
    let emotions = emotions.to_str().unwrap();
    let stdout = succeeds(&[
        "train",
        "--model",
        &multi,
        "--data",
        emotions,
        "--steps",
        "1",
        "--batch-size",
        "4",
    ]);
    assert!(
        stdout.contains("classes as the checkpoint numbers them: joy, love, anger")
            && stdout.contains("test accuracy")
            && !stdout.contains("confusion matrix"),
        "{stdout}"
    );
    let stdout = succeeds(&["predict", "--weights", &multi, emotions]);
    assert_eq!(
        stdout.lines().next(),
        Some("row,label,prediction,joy,love,anger"),
        "{stdout}"
    );
    // A RoBERTa folder is read as the same family's classifier.
    let roberta = crate::common::repo_file("kernels-tests/golden/roberta-tiny-cls");
    let out = wgml(&[
        "import",
        roberta.to_str().unwrap(),
        "--save",
        &path("roberta.safetensors"),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains("RoBERTa: 2 blocks") && stdout.contains("18 positions (of 18)"),
        "{stdout}"
    );
    let gpt2 = crate::common::repo_file("kernels-tests/golden/gpt2-tiny");
    fails_with(
        &[
            "import",
            gpt2.to_str().unwrap(),
            "--save",
            &path("x.safetensors"),
            "--num-labels",
            "3",
        ],
        &[
            "--num-labels, --multi-label, --token-classification and --question-answering give a \
             BERT-family model",
        ],
    );
}

/// A token classifier from the command line: a BERT imported with a new head
/// of tags (`--token-classification`), fine-tuned on CoNLL files (a JSON-lines
/// test file beside them), its entity scores printed and written; `eval`
/// scores it again and `predict` writes CoNLL text. A model of other heads
/// refuses the flag, and tags without a word are refused by line.
#[test]
fn a_token_classifier_trains_evaluates_and_tags_from_the_command_line() {
    let dir = crate::common::fresh_dir("cli-tokens");
    let data = dir.join("ner");
    std::fs::create_dir_all(&data).unwrap();
    let sentence = |i: usize| -> Vec<(&str, &str)> {
        match i % 3 {
            0 => vec![("Tia", "B-PER"), ("liked", "O"), ("the", "O"), ("film", "O")],
            1 => vec![("the", "O"), ("actors", "O"), ("in", "O"), ("Oslo", "B-LOC")],
            _ => vec![("Leo", "B-PER"), ("Kai", "I-PER"), ("was", "O"), ("good", "O")],
        }
    };
    let conll: String = (0..24)
        .map(|i| {
            sentence(i)
                .iter()
                .map(|(w, t)| format!("{w} {t}\n"))
                .collect::<String>()
                + "\n"
        })
        .collect();
    std::fs::write(data.join("train.conll"), format!("-DOCSTART- O\n\n{conll}")).unwrap();
    let jsonl: String = (0..6)
        .map(|i| {
            let s = sentence(i);
            let words: Vec<&str> = s.iter().map(|p| p.0).collect();
            let tags: Vec<&str> = s.iter().map(|p| p.1).collect();
            format!("{{\"tokens\": {words:?}, \"ner_tags\": {tags:?}}}\n")
        })
        .collect();
    std::fs::write(data.join("test.jsonl"), &jsonl).unwrap();
    let dev: Vec<&str> = conll.split_inclusive("\n\n").take(6).collect();
    std::fs::write(data.join("dev.conll"), dev.concat()).unwrap();
    let path = |name: &str| dir.join(name).to_str().unwrap().to_string();
    let fixture = crate::common::repo_file("kernels-tests/golden/bert-tiny-cls");
    let (base, tuned) = (path("tagger.safetensors"), path("tuned.safetensors"));
    let stdout = succeeds(&[
        "import",
        fixture.to_str().unwrap(),
        "--save",
        &base,
        "--token-classification",
        "--num-labels",
        "4",
    ]);
    assert!(
        stdout.contains("a new output layer of 4 classes of each token") && stdout.contains("tag words"),
        "{stdout}"
    );
    let metrics = path("metrics.json");
    let data = data.to_str().unwrap();
    // Early stopping watches the validation file's entity F1.
    let stdout = succeeds(&[
        "train",
        "--model",
        &base,
        "--data",
        data,
        "--epochs",
        "2",
        "--batch-size",
        "8",
        "--lr",
        "1e-3",
        "--monitor",
        "val_f1",
        "--patience",
        "1",
        "--save",
        &tuned,
        "--metrics",
        &metrics,
    ]);
    for want in [
        "36 sentences of tagged words",
        "Epoch 2/2",
        " - val_f1: ",
        "(per word; 6 sentences)",
        "entity  precision",
        "   all  ",
    ] {
        assert!(stdout.contains(want), "{want:?} in {stdout}");
    }
    let written: serde_json::Value = serde_json::from_slice(&std::fs::read(&metrics).unwrap()).unwrap();
    assert!(written["entities"]["overall"]["f1"].is_number(), "{written}");
    assert_eq!(
        written["entities"]["overall"]["support"], 6,
        "6 sentences hold an entity each"
    );
    let stdout = succeeds(&["eval", "--weights", &tuned, "--data", data]);
    assert!(stdout.contains("entity  precision"), "{stdout}");
    // predict: CoNLL text, the given tag beside the predicted one.
    let words = dir.join("words.conll");
    std::fs::write(&words, "Tia\nliked\nOslo\n\nLeo\n").unwrap();
    let stdout = succeeds(&["predict", "--weights", &tuned, words.to_str().unwrap()]);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 6, "{stdout}");
    assert!(
        lines[0].starts_with("Tia ") && lines[3].is_empty() && lines[4].starts_with("Leo "),
        "{stdout}"
    );
    let tags = ["B-LOC", "B-PER", "I-PER", "O"];
    assert!(
        lines[0].split(' ').nth(1).is_some_and(|t| tags.contains(&t)),
        "{stdout}"
    );
    let test = std::path::Path::new(data).join("test.jsonl");
    let stdout = succeeds(&["predict", "--weights", &tuned, test.to_str().unwrap()]);
    let first: Vec<&str> = stdout.lines().next().unwrap().split(' ').collect();
    assert_eq!(
        &first[..2],
        ["Tia", "B-PER"],
        "word, given tag, predicted: {stdout}"
    );
    assert_eq!(first.len(), 3, "{stdout}");
    // Plain text, a sentence per line: JSON Lines of entities.
    let text = dir.join("sentences.txt");
    std::fs::write(&text, "Tia liked the film in Oslo.\n\nLeo Kai was good\n").unwrap();
    let stdout = succeeds(&[
        "predict",
        "--weights",
        &tuned,
        "--sentences",
        text.to_str().unwrap(),
    ]);
    let rows: Vec<serde_json::Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 2, "{stdout}");
    assert_eq!(
        (rows[1]["line"].as_u64(), rows[1]["text"].as_str()),
        (Some(3), Some("Leo Kai was good"))
    );
    for e in rows.iter().flat_map(|r| r["entities"].as_array().unwrap()) {
        let (start, end) = (e["start"].as_u64().unwrap(), e["end"].as_u64().unwrap());
        assert!(
            start < end && ["PER", "LOC"].contains(&e["entity"].as_str().unwrap()),
            "{e}"
        );
    }
    // Refusals.
    fails_with(
        &["predict", "--weights", &base, "--sentences", "missing.txt"],
        &["missing.txt"],
    );
    let bad = dir.join("bad.conll");
    std::fs::write(&bad, "Tia B-PER\nliked\n").unwrap();
    fails_with(
        &[
            "train",
            "--model",
            &base,
            "--data",
            bad.to_str().unwrap(),
            "--steps",
            "1",
        ],
        &["line 2", "a word and its tag"],
    );
    let gpt2 = crate::common::repo_file("kernels-tests/golden/gpt2-tiny");
    fails_with(
        &[
            "import",
            gpt2.to_str().unwrap(),
            "--save",
            &path("g.safetensors"),
            "--token-classification",
        ],
        &["--token-classification", "BERT-family"],
    );
}

/// A question answerer from the command line: a BERT imported with a new
/// question-answering head trains on SQuAD's JSON (its test split a dev file
/// of JSON Lines), reports exact match and F1 (also in --metrics), evaluates,
/// and answers questions as JSON Lines whose spans are the answers' characters
/// in their contexts; what cannot be read is refused with what to do.
#[test]
fn a_question_answerer_trains_evaluates_and_answers_from_the_command_line() {
    let dir = crate::common::fresh_dir("cli-answers");
    let data = dir.join("squad");
    std::fs::create_dir_all(&data).unwrap();
    let names = ["tia", "jo", "sam"];
    let example = |i: usize| {
        let (who, what) = (names[i % 3], ["film", "plot"][i % 2]);
        let context = format!("{who} liked the {what}. it was very good.");
        let question = format!("who liked the {what}?");
        (i, context, question, who)
    };
    let paragraphs: Vec<serde_json::Value> = (0..24)
        .map(|i| {
            let (i, context, question, who) = example(i);
            serde_json::json!({ "context": context, "qas": [{ "id": format!("t{i}"), "question": question,
                "answers": [{ "text": who, "answer_start": 0 }] }] })
        })
        .collect();
    let squad =
        serde_json::json!({ "version": "v1.1", "data": [{ "title": "films", "paragraphs": paragraphs }] });
    std::fs::write(data.join("train-v1.1.json"), squad.to_string()).unwrap();
    let dev: String = (0..6)
        .map(|i| {
            let (i, context, question, who) = example(i);
            serde_json::json!({ "id": format!("d{i}"), "question": question, "context": context,
                "answers": { "text": [who], "answer_start": [0] } })
            .to_string()
                + "\n"
        })
        .collect();
    std::fs::write(data.join("dev.jsonl"), &dev).unwrap();
    let path = |name: &str| dir.join(name).to_str().unwrap().to_string();
    let fixture = crate::common::repo_file("kernels-tests/golden/bert-tiny-cls");
    let (base, tuned) = (path("qa.safetensors"), path("tuned.safetensors"));
    let stdout = succeeds(&[
        "import",
        fixture.to_str().unwrap(),
        "--save",
        &base,
        "--question-answering",
    ]);
    assert!(
        stdout.contains("a new head 'qa_outputs' of start and end scores")
            && stdout.contains("answer questions"),
        "{stdout}"
    );
    let metrics = path("metrics.json");
    let data = data.to_str().unwrap();
    let stdout = succeeds(&[
        "train",
        "--model",
        &base,
        "--data",
        data,
        "--epochs",
        "2",
        "--batch-size",
        "8",
        "--lr",
        "1e-3",
        "--save",
        &tuned,
        "--metrics",
        &metrics,
    ]);
    for want in [
        "24 training questions in 24 windows, 6 test questions in 6 windows (24 tokens each, consecutive \
         windows sharing 8",
        "Epoch 2/2",
        "(start and end tokens; 6 windows)",
        "answers: exact match ",
    ] {
        assert!(stdout.contains(want), "{want:?} in {stdout}");
    }
    let written: serde_json::Value = serde_json::from_slice(&std::fs::read(&metrics).unwrap()).unwrap();
    assert_eq!(written["answers"]["total"], 6, "{written}");
    assert!(
        written["answers"]["f1"].as_f64().unwrap() >= written["answers"]["exact_match"].as_f64().unwrap()
    );
    assert!(written["test_perplexity"].is_null(), "{written}");
    let stdout = succeeds(&["eval", "--weights", &tuned, "--data", data]);
    assert!(
        stdout.contains("answers: exact match ") && stdout.contains("(6 questions)"),
        "{stdout}"
    );
    // predict: an answer per question, its characters in the context.
    let questions = std::path::Path::new(data).join("dev.jsonl");
    let stdout = succeeds(&["predict", "--weights", &tuned, questions.to_str().unwrap()]);
    let rows: Vec<serde_json::Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 6, "{stdout}");
    for (i, row) in rows.iter().enumerate() {
        let (_, context, _, _) = example(i);
        assert_eq!(row["id"], format!("d{i}"));
        let (start, end) = (
            row["start"].as_u64().unwrap() as usize,
            row["end"].as_u64().unwrap() as usize,
        );
        assert_eq!(row["answer"].as_str().unwrap(), &context[start..end], "{row}");
        assert!((0.0..=1.0).contains(&row["score"].as_f64().unwrap()), "{row}");
    }
    // --val-split holds out the last questions whole; each epoch scores their
    // answers, as eval then scores the same questions with the saved weights.
    let watched = path("watched.safetensors");
    let stdout = succeeds(&[
        "train",
        "--model",
        &base,
        "--data",
        data,
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--lr",
        "1e-3",
        "--val-split",
        "0.25",
        "--monitor",
        "val_f1",
        "--patience",
        "2",
        "--save",
        &watched,
    ]);
    assert!(
        stdout.contains(
            "18 training questions in 18 windows, 6 test questions in 6 windows, 6 validation questions \
             in 6 windows (the last 0.25 of the training questions)"
        ),
        "{stdout}"
    );
    let epoch = stdout.lines().find(|l| l.starts_with("Epoch 1/1")).unwrap();
    let value = |name: &str| {
        epoch
            .split(&format!(" - {name}: "))
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
    };
    let held_out = dir.join("held-out");
    std::fs::create_dir_all(&held_out).unwrap();
    let lines: String = (18..24)
        .map(|i| {
            let (i, context, question, who) = example(i);
            serde_json::json!({ "id": format!("t{i}"), "question": question, "context": context,
                "answers": { "text": [who], "answer_start": [0] } })
            .to_string()
                + "\n"
        })
        .collect();
    for name in ["train.jsonl", "test.jsonl"] {
        std::fs::write(held_out.join(name), &lines).unwrap();
    }
    let stdout = succeeds(&[
        "eval",
        "--weights",
        &watched,
        "--data",
        held_out.to_str().unwrap(),
    ]);
    let scored = format!(
        "answers: exact match {}, F1 {} (6 questions)",
        value("val_exact_match"),
        value("val_f1")
    );
    assert!(stdout.contains(&scored), "{scored:?} in {stdout}");
    // Refusals: monitoring answers without validation questions; another model
    // given questions; a window the question fills.
    fails_with(
        &[
            "train",
            "--model",
            &base,
            "--data",
            data,
            "--steps",
            "1",
            "--patience",
            "1",
            "--monitor",
            "val_exact_match",
        ],
        &["val_exact_match needs a question answerer and its validation questions"],
    );
    fails_with(
        &["train", "--model", "mlp", "--data", data, "--steps", "1"],
        &["holds questions about contexts", "--question-answering"],
    );
    fails_with(
        &["eval", "--weights", &tuned, "--data", data, "--doc-stride", "20"],
        &[
            "leave",
            "not more than the 20 consecutive windows share",
            "--doc-stride",
        ],
    );
    fails_with(
        &[
            "import",
            fixture.to_str().unwrap(),
            "--save",
            &base,
            "--question-answering",
            "--num-labels",
            "3",
        ],
        &["--num-labels"],
    );
}
