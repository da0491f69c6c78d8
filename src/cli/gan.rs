//! `wgml train --model gan`: the GAN on an image dataset (MNIST by default), both
//! losses and D(real), D(fake) every epoch, samples of a fixed noise batch, and a
//! trained classifier's verdict on the generated digits (`--judge`).

use std::path::Path;
use std::process::ExitCode;

use wgml::kernels::noise::Distribution;
use wgml::kernels::optim::Optimizer;
use wgml::nn::{Gan, GanModel, GanStats};
use wgml::{Error, Result, checkpoint};

use wgml::train::{Backup, GanEvent, TermsConfig, fit_gan};

use super::GpuArgs;
use super::train::{TrainArgs, load_data, refuse_supervised_flags, write_json};

/// Samples drawn from the fixed noise after every epoch (an 8 × 8 grid).
const SAMPLES_SIDE: usize = 8;
/// Generated digits the judge classifies.
const JUDGED: usize = 1000;

pub fn run(gpu: &GpuArgs, args: &TrainArgs) -> Result<ExitCode> {
    refuse_supervised_flags(args, "it trains both networks with Adam, β1 = 0.5")?;
    let ema = args.ema.map(wgml::graph::Ema::new).transpose()?;
    let data = load_data(
        args.data.as_deref().unwrap_or("mnist-10k"),
        args.seed,
        &[1, 28, 28],
    )?;
    let output: usize = data.sample_shape.iter().product();
    let spec = Gan {
        latent: args.latent.unwrap_or(100),
        hidden: 256,
        output,
    };
    let epochs = args.epochs.unwrap_or(30);
    let batch = args.batch_size.unwrap_or(64);
    let lr = args.lr.unwrap_or(2e-4);
    if !(lr.is_finite() && lr > 0.0) {
        return Err(Error::invalid(format!(
            "learning rate {lr} must be a positive number"
        )));
    }
    if batch == 0 || batch > data.train.len() {
        return Err(Error::invalid(format!(
            "batch size {batch} must be between 1 and the {} training images",
            data.train.len()
        )));
    }
    if data.train.x.iter().any(|v| !(0.0..=1.0).contains(v)) {
        return Err(Error::invalid(format!(
            "the GAN learns images with values in [0, 1]; dataset '{}' has values outside",
            data.name
        )));
    }
    if let Some(dir) = &args.report {
        wgml::report::prepare(dir)?;
    }
    let ctx = gpu.context()?;
    // The judge loads before training, so that a bad file fails fast.
    let judge = args
        .judge
        .as_ref()
        .map(|p| checkpoint::load_model(&ctx, p).map(|(m, _)| (p, m)))
        .transpose()?;
    println!(
        "wgml: training gan (generator {} → {} → {} → {output}, discriminator {output} → {} → {} → 1) on {} \
         ({} train images) on {} ({:?})",
        spec.latent,
        spec.hidden,
        2 * spec.hidden,
        2 * spec.hidden,
        spec.hidden,
        data.name,
        data.train.len(),
        ctx.info.name,
        ctx.info.backend
    );
    let optimizer = match Optimizer::adam(lr) {
        Optimizer::Adam {
            beta2,
            epsilon,
            weight_decay,
            epsilon_placement,
            ..
        } => Optimizer::Adam {
            lr,
            beta1: 0.5,
            beta2,
            epsilon,
            weight_decay,
            epsilon_placement,
        },
        other => other,
    };
    let mut gan = spec.compile(&ctx, optimizer, args.seed)?;
    gan.set_ema(&ctx, ema)?;
    // Real images in the generator's range, [-1, 1].
    let images: Vec<f32> = data.train.x.iter().map(|v| 2.0 * v - 1.0).collect();
    let mut fixed = vec![0.0f32; SAMPLES_SIDE * SAMPLES_SIDE * spec.latent];
    wgml::reference::noise::noise(&mut fixed, Distribution::STANDARD_NORMAL, args.seed as u32, 0);
    let config = TermsConfig {
        epochs,
        batch_size: batch,
        lr,
        seed: args.seed,
        shuffle: !args.no_shuffle,
        max_steps: args.steps,
        eval_batch: batch,
        backup: args.backup.as_ref().map(|dir| Backup {
            dir: dir.clone(),
            delete_when_done: !args.keep_backup,
        }),
        model: format!("{spec:?}"),
    };
    let shape = (data.sample_shape[0], data.sample_shape[1], data.sample_shape[2]);
    let history = fit_gan(&ctx, &mut gan, &images, &config, |event, gan| match event {
        GanEvent::Resumed { path, epochs: done } => {
            println!(
                "resuming from {} after epoch {} of {epochs}",
                path.display(),
                done.len()
            );
            Ok(())
        }
        GanEvent::Epoch {
            epoch,
            stats,
            seconds,
            images,
        } => {
            println!(
                "Epoch {epoch}/{epochs} - {seconds:.2}s - d_loss: {:.4} - g_loss: {:.4} - D(real): {:.4} - \
                 D(fake): {:.4} - {:.0} images/s",
                stats.d_loss,
                stats.g_loss,
                stats.d_real,
                stats.d_fake,
                images as f64 / seconds.max(1e-9)
            );
            if let Some(dir) = &args.report {
                let samples = to_unit(gan.generate(&ctx, &fixed, SAMPLES_SIDE * SAMPLES_SIDE)?);
                let path = dir.join(format!("samples-epoch-{epoch:03}.png"));
                let title = format!("Generated digits after epoch {epoch}");
                wgml::report::write_image_grid(
                    &path,
                    (&title, "the same 64 noise vectors every epoch"),
                    &samples,
                    SAMPLES_SIDE,
                    shape,
                )?;
            }
            Ok(())
        }
    })?;
    if let Some(m) = ema {
        gan.finalize_ema(&ctx)?;
        println!(
            "the generator's weights are now their moving average (momentum {}): judged and saved so",
            m.get()
        );
    }
    let verdict = match judge {
        Some((path, mut classifier)) => {
            Some(judge_samples(&ctx, &mut gan, &mut classifier, path, args.seed)?)
        }
        None => None,
    };
    if let Some(dir) = &args.report {
        write_curves(dir, &history)?;
    }
    if let Some(path) = &args.save {
        let tensors = gan.store.download(&ctx)?;
        checkpoint::save(path, "gan", &tensors, gan.generator.step as u64)?;
        println!("weights saved to {}", path.display());
    }
    if let Some(path) = &args.metrics {
        let json = serde_json::json!({
            "model": "gan",
            "spec": spec,
            "epochs": history,
            "judge": verdict,
            "adapter": ctx.info.name,
            "backend": format!("{:?}", ctx.info.backend),
        });
        write_json(path, &json)?;
        println!("metrics written to {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// The generator's [-1, 1] as the classifier's and the pictures' [0, 1].
fn to_unit(images: Vec<f32>) -> Vec<f32> {
    images.into_iter().map(|v| 0.5 * (v + 1.0)).collect()
}

/// Loss and D curves, and the last samples, into the report folder.
fn write_curves(dir: &Path, history: &[GanStats]) -> Result<()> {
    if history.is_empty() {
        return Ok(());
    }
    let col = |f: fn(&GanStats) -> f64| history.iter().map(f).collect::<Vec<f64>>();
    let (d, g) = (col(|s| s.d_loss), col(|s| s.g_loss));
    let (dr, df) = (col(|s| s.d_real), col(|s| s.d_fake));
    let losses = dir.join("gan_losses.png");
    wgml::report::write_series(
        &losses,
        "GAN losses per epoch",
        "loss",
        &[("discriminator", &d), ("generator", &g)],
    )?;
    let outputs = dir.join("gan_d_outputs.png");
    wgml::report::write_series(
        &outputs,
        "Discriminator's mean output",
        "D",
        &[("D(real)", &dr), ("D(fake)", &df)],
    )?;
    println!("report: {}\nreport: {}", losses.display(), outputs.display());
    Ok(())
}

/// What a trained classifier makes of [`JUDGED`] generated images.
#[derive(Debug, serde::Serialize)]
struct Verdict {
    /// The classifier's checkpoint.
    classifier: String,
    /// Images judged.
    samples: usize,
    /// Share classified with probability ≥ 0.9.
    confident_share: f64,
    /// Images per predicted class.
    class_counts: Vec<usize>,
    /// Entropy of the class shares over ln(classes): 1 when every class appears
    /// equally often, 0 when one class takes all (mode collapse).
    evenness: f64,
}

fn judge_samples(
    ctx: &wgml::Context,
    gan: &mut GanModel,
    classifier: &mut wgml::nn::Model,
    path: &Path,
    seed: u64,
) -> Result<Verdict> {
    let sample: usize = classifier.spec.input_shape().iter().product();
    if sample != gan.spec.output || classifier.loss != wgml::nn::Loss::SparseCategoricalCrossentropy {
        return Err(Error::invalid(format!(
            "--judge {}: the classifier must take images of {} values and predict classes",
            path.display(),
            gan.spec.output
        )));
    }
    let mut z = vec![0.0f32; JUDGED * gan.spec.latent];
    wgml::reference::noise::noise(&mut z, Distribution::STANDARD_NORMAL, (seed as u32) ^ 0x5eed, 1);
    let images = to_unit(gan.generate(ctx, &z, JUDGED)?);
    let probabilities = classifier.predict(ctx, &images, JUDGED)?;
    let classes = classifier.output_dim();
    let mut counts = vec![0usize; classes];
    let mut confident = 0;
    for row in probabilities.chunks(classes) {
        let (best, p) =
            row.iter().copied().enumerate().fold(
                (0, f32::NEG_INFINITY),
                |a, (i, p)| if p > a.1 { (i, p) } else { a },
            );
        counts[best] += 1;
        confident += usize::from(p >= 0.9);
    }
    let entropy: f64 = counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let q = c as f64 / JUDGED as f64;
            -q * q.ln()
        })
        .sum();
    let verdict = Verdict {
        classifier: path.display().to_string(),
        samples: JUDGED,
        confident_share: confident as f64 / JUDGED as f64,
        class_counts: counts,
        evenness: entropy / (classes as f64).ln(),
    };
    println!(
        "judge {}: {:.1}% of {JUDGED} generated digits classified with probability ≥ 0.9; per class {:?}; \
         evenness {:.3} (1 = every class equally often)",
        verdict.classifier,
        100.0 * verdict.confident_share,
        verdict.class_counts,
        verdict.evenness
    );
    Ok(verdict)
}
