//! `wgml train --model FILE.json` for a functional model (a file with a
//! `functional` entry, see `examples/models/vae.json`): trained on its loss terms,
//! each reported every epoch; and the epoch loop every model trained on loss terms
//! shares (the VAE's too).

use std::path::Path;
use std::process::ExitCode;

use wgml::checkpoint::{self, FunctionalArchitecture};
use wgml::data::Dataset;
use wgml::graph::{Objective, Op, WeightedTerm};
use wgml::kernels::loss::Term;
use wgml::nn::GraphModel;
use wgml::train::Backup;
use wgml::train::terms::{TermsConfig, TermsEvent, fit_terms, weighted_total};
use wgml::{Context, Error, Result};

use super::GpuArgs;
use super::train::{TrainArgs, load_data, refuse_supervised_flags, write_json};

/// Whether the JSON text describes a functional model (has a `functional` entry).
pub fn is_functional(text: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(text).is_ok_and(|v| v.get("functional").is_some())
}

/// The batch size, learning rate and epochs of a run on loss terms, from the
/// arguments and the model's defaults; errors for values out of range.
pub struct TermsRun {
    /// Epochs to train.
    pub epochs: usize,
    /// Samples per step.
    pub batch: usize,
    /// The learning rate.
    pub lr: f32,
}

impl TermsRun {
    pub fn new(args: &TrainArgs, epochs: usize, batch: usize, lr: f32) -> Result<TermsRun> {
        let run = TermsRun {
            epochs: args.epochs.unwrap_or(epochs),
            batch: args.batch_size.unwrap_or(batch),
            lr: args.lr.unwrap_or(lr),
        };
        if run.batch == 0 {
            return Err(Error::invalid("batch size must be at least 1"));
        }
        if !(run.lr.is_finite() && run.lr > 0.0) {
            return Err(Error::invalid(format!(
                "learning rate {} must be a positive number",
                run.lr
            )));
        }
        Ok(run)
    }
}

/// The terms `values` by name with their weighted total first, as `loss`.
struct TermNames {
    terms: Vec<WeightedTerm>,
}

impl TermNames {
    fn of(net: &GraphModel) -> TermNames {
        let terms = match &net.objective {
            Objective::Terms(t) => t.clone(),
            _ => Vec::new(),
        };
        TermNames { terms }
    }

    fn named(&self, values: &[f64]) -> Vec<(String, f64)> {
        let total = weighted_total(&self.terms, values);
        std::iter::once(("loss".to_string(), total))
            .chain(
                self.terms
                    .iter()
                    .map(|t| t.name.clone())
                    .zip(values.iter().copied()),
            )
            .collect()
    }
}

fn to_json(pairs: &[(String, f64)]) -> serde_json::Value {
    serde_json::Value::Object(pairs.iter().map(|(k, v)| (k.clone(), (*v).into())).collect())
}

fn line(prefix: &str, pairs: &[(String, f64)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{prefix}{k}: {v:.4}"))
        .collect::<Vec<_>>()
        .join(" - ")
}

/// Trains `net` (described in backups as `model`) on the samples `train` as the
/// arguments say (epochs, batch, rate, seed, `--no-shuffle`, `--steps`, `--backup`),
/// printing every term on the training and the `test` samples after each epoch;
/// returns the history (one JSON object per epoch) and the final test terms.
pub fn train_on_terms(
    ctx: &Context,
    net: &mut GraphModel,
    train: &[f32],
    test: &[f32],
    args: &TrainArgs,
    run: &TermsRun,
    model: String,
) -> Result<(Vec<serde_json::Value>, Vec<f64>)> {
    let config = TermsConfig {
        epochs: run.epochs,
        batch_size: run.batch,
        lr: run.lr,
        seed: args.seed,
        shuffle: !args.no_shuffle,
        max_steps: args.steps,
        eval_batch: 256.max(run.batch),
        backup: args.backup.as_ref().map(|dir| Backup {
            dir: dir.clone(),
            delete_when_done: !args.keep_backup,
        }),
        model,
    };
    let terms = TermNames::of(net);
    let ema = args.ema.map(wgml::graph::Ema::new).transpose()?;
    net.set_ema(ctx, ema)?;
    let history = {
        let epochs = run.epochs;
        fit_terms(ctx, net, train, test, &config, |event| match event {
            TermsEvent::Resumed { path, epochs: done } => println!(
                "resuming from {} after epoch {} of {epochs}",
                path.display(),
                done.len()
            ),
            TermsEvent::Epoch(e) => println!(
                "Epoch {}/{epochs} - {:.2}s - {} - {} - {:.0} images/s",
                e.epoch,
                e.seconds,
                line("", &terms.named(&e.train)),
                line("test_", &terms.named(&e.test)),
                e.samples as f64 / e.seconds.max(1e-9)
            ),
        })?
    };
    let sample = net.sample_len().max(1);
    if let Some(m) = ema {
        net.finalize_ema(ctx)?;
        println!(
            "the weights are now their moving average (momentum {}): tested and saved so",
            m.get()
        );
    }
    // The last epoch's test terms are the final ones (no step since, the same
    // noise) unless the averages replaced the weights; a run that trained no
    // epoch evaluates now.
    let test_terms = match history.last() {
        Some(e) if !e.test.is_empty() && ema.is_none() => e.test.clone(),
        _ => net.evaluate(ctx, test, 256.max(run.batch))?,
    };
    let te = terms.named(&test_terms);
    let parts: Vec<String> = te[1..].iter().map(|(k, v)| format!("{k} {v:.4}")).collect();
    println!(
        "test loss: {:.4} ({}; {} samples)",
        te[0].1,
        parts.join(", "),
        test.len() / sample
    );
    let history = history
        .iter()
        .map(|e| {
            serde_json::json!({
                "epoch": e.epoch,
                "train": to_json(&terms.named(&e.train)),
                "test": to_json(&terms.named(&e.test)),
                "seconds": e.seconds,
            })
        })
        .collect();
    Ok((history, test_terms))
}

/// Refuses data outside [0, 1] when a binary cross-entropy term's targets are the
/// batch itself or a view of it (an autoencoder's reconstruction), naming the term.
fn check_bce_targets(net: &GraphModel, data: &Dataset) -> Result<()> {
    let Objective::Terms(terms) = &net.objective else {
        return Ok(());
    };
    let nodes = &net.graph.nodes;
    let is_batch = |mut id: usize| loop {
        match nodes[id].op {
            Op::Input => return true,
            Op::Reshape { x } => id = x,
            _ => return false,
        }
    };
    let on_batch = terms
        .iter()
        .find(|t| matches!(nodes[t.node].op, Op::LossTerm { term: Term::BceSum, b, .. } if is_batch(b)));
    let outside = data
        .train
        .x
        .iter()
        .chain(&data.test.x)
        .any(|v| !(0.0..=1.0).contains(v));
    match on_batch {
        Some(t) if outside => Err(Error::invalid(format!(
            "the loss term '{}' reads the batch as binary cross-entropy targets, which must be in [0, 1]; \
             dataset '{}' has values outside",
            t.name, data.name
        ))),
        _ => Ok(()),
    }
}

/// The functional model file `path` holds (`text`), its wiring checked.
pub fn architecture(path: &Path, text: &str) -> Result<FunctionalArchitecture> {
    let a: FunctionalArchitecture = serde_json::from_str(text).map_err(|e| Error::Data {
        path: path.display().to_string(),
        message: format!(
            "is not a functional model description (see examples/models/vae.json and residual.json): {e}"
        ),
    })?;
    // The wiring is checked before any data is read or any device opened.
    a.functional.graph()?;
    Ok(a)
}

/// `wgml train --model FILE.json` for the functional model trained on loss terms
/// that the file (`path`) holds.
pub fn run(gpu: &GpuArgs, args: &TrainArgs, path: &Path, a: FunctionalArchitecture) -> Result<ExitCode> {
    refuse_supervised_flags(args, "it trains on the loss terms its file names")?;
    let pictured = args
        .report
        .as_ref()
        .map(|_| reported_layers(&a.functional))
        .transpose()?;
    let input = &a.functional.input.shape;
    let data = load_data(args.data.as_deref().unwrap_or("mnist-10k"), args.seed, input)?;
    let want: usize = input.iter().product();
    let got: usize = data.sample_shape.iter().product();
    if want != got {
        return Err(Error::invalid(format!(
            "the model's input '{}' takes {input:?} ({want} values) per sample; dataset '{}' has {:?} ({got})",
            a.functional.input.name, data.name, data.sample_shape
        )));
    }
    if let Some(dir) = &args.report {
        // Fail before training, not after it, when the pictures cannot be written.
        wgml::report::prepare(dir)?;
    }
    let run = TermsRun::new(args, 10, 128, a.optimizer.lr())?;
    let name = path
        .file_stem()
        .map_or("functional".into(), |s| s.to_string_lossy().into_owned());
    let ctx = gpu.context()?;
    let mut model = a
        .functional
        .compile(&ctx, a.optimizer.with_lr(run.lr), args.seed)?;
    check_bce_targets(&model.net, &data)?;
    println!(
        "wgml: training {name} ({} layers, {} parameters; terms {}) on {} ({} train / {} test) on {} ({:?})",
        a.functional.layers.len(),
        model.net.store.count(),
        model.net.term_names().join(", "),
        data.name,
        data.train.len(),
        data.test.len(),
        ctx.info.name,
        ctx.info.backend
    );
    let description = serde_json::to_string(&a.functional).map_err(|e| Error::invalid(e.to_string()))?;
    let (history, test) = train_on_terms(
        &ctx,
        &mut model.net,
        &data.train.x,
        &data.test.x,
        args,
        &run,
        description,
    )?;
    if let (Some(dir), Some((reconstruction, mean))) = (&args.report, &pictured) {
        write_report(&ctx, &mut model, &data, dir, reconstruction, mean.as_deref())?;
    }
    if let Some(path) = &args.save {
        checkpoint::save_functional(path, &ctx, &model, &name)?;
        println!("weights saved to {}", path.display());
    }
    if let Some(path) = &args.metrics {
        let json = serde_json::json!({
            "model": name,
            "epochs": history,
            "test": to_json(&TermNames::of(&model.net).named(&test)),
            "adapter": ctx.info.name,
            "backend": format!("{:?}", ctx.info.backend),
        });
        write_json(path, &json)?;
        println!("metrics written to {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// What `--report` draws of a model trained on loss terms: its first output of the
/// input's size (a reconstruction) beside the input, and the first input of its
/// first KL term (the latent means), if any. A model without such an output is
/// refused before training.
fn reported_layers(f: &wgml::nn::Functional) -> Result<(String, Option<String>)> {
    let g = f.graph()?;
    let size = |name: &str| g.node(name).map(|id| g.graph.shape(id).iter().product::<usize>());
    let input: usize = f.input.shape.iter().product();
    let mut reconstruction = None;
    for o in &f.outputs {
        if size(o)? == input {
            reconstruction = Some(o.clone());
            break;
        }
    }
    let reconstruction = reconstruction.ok_or_else(|| {
        Error::invalid(format!(
            "--report draws the input beside a reconstruction: list a layer of the input's size ({input} \
             values) in the model's outputs"
        ))
    })?;
    let mean = match &f.objective {
        wgml::nn::functional::FunctionalObjective::Terms(terms) => terms
            .iter()
            .find(|t| t.term == wgml::nn::functional::TermKind::KlNormal)
            .and_then(|t| t.inputs.first().cloned()),
        _ => None,
    };
    Ok((reconstruction, mean))
}

/// Test images beside their reconstructions (layer `reconstruction`) and, when
/// `mean` names the latent means, the test set's means coloured by class.
fn write_report(
    ctx: &Context,
    model: &mut wgml::nn::FunctionalModel,
    data: &Dataset,
    dir: &Path,
    reconstruction: &str,
    mean: Option<&str>,
) -> Result<()> {
    let d: usize = data.sample_shape.iter().product();
    let shown = data.test.len().min(32);
    let originals = &data.test.x[..shown * d];
    let reconstructions = model.values(ctx, reconstruction, originals, shown)?;
    let points: Vec<[f32; 2]> = match mean {
        Some(m) => {
            let means = model.values(ctx, m, &data.test.x, 256)?;
            let latent = means.len() / data.test.len().max(1);
            means
                .chunks(latent.max(1))
                .map(|v| [v[0], v.get(1).copied().unwrap_or(0.0)])
                .collect()
        }
        None => Vec::new(),
    };
    let classes = wgml::train::true_classes(&data.test);
    let written = wgml::report::write_vae_report(
        dir,
        &wgml::report::VaeReport {
            shape: &data.sample_shape,
            originals,
            reconstructions: &reconstructions,
            latent_grid: None,
            means: &points,
            classes: &classes,
        },
    )?;
    for path in written {
        println!("report: {}", path.display());
    }
    Ok(())
}
