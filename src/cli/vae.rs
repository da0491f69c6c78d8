//! `wgml train --model vae`: the variational autoencoder on an image dataset (MNIST
//! by default), reporting the reconstruction and KL terms every epoch.

use std::process::ExitCode;
use std::time::Instant;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use wgml::kernels::optim::Optimizer;
use wgml::nn::{Vae, VaeLosses};
use wgml::{Error, Result, checkpoint};

use super::GpuArgs;
use super::train::{TrainArgs, load_data, refuse_supervised_flags, write_json};

fn print_epoch(epoch: usize, epochs: usize, secs: f64, images: usize, train: &VaeLosses, test: &VaeLosses) {
    println!(
        "Epoch {epoch}/{epochs} - {secs:.2}s - loss: {:.4} - reconstruction: {:.4} - kl: {:.4} - test_loss: {:.4} \
         - test_reconstruction: {:.4} - test_kl: {:.4} - {:.0} images/s",
        train.total(),
        train.reconstruction,
        train.kl,
        test.total(),
        test.reconstruction,
        test.kl,
        images as f64 / secs.max(1e-9)
    );
}

pub fn run(gpu: &GpuArgs, args: &TrainArgs) -> Result<ExitCode> {
    refuse_supervised_flags(args, "it trains with Adam on the whole training set")?;
    let data = load_data(
        args.data.as_deref().unwrap_or("mnist-10k"),
        args.seed,
        &[1, 28, 28],
    )?;
    let input: usize = data.sample_shape.iter().product();
    let spec = Vae {
        input,
        hidden: 512,
        latent: args.latent.unwrap_or(2),
    };
    let epochs = args.epochs.unwrap_or(10);
    let batch = args.batch_size.unwrap_or(128);
    if batch == 0 {
        return Err(Error::invalid("batch size must be at least 1"));
    }
    let lr = args.lr.unwrap_or(1e-3);
    if !(lr.is_finite() && lr > 0.0) {
        return Err(Error::invalid(format!(
            "learning rate {lr} must be a positive number"
        )));
    }
    if data
        .train
        .x
        .iter()
        .chain(&data.test.x)
        .any(|v| !(0.0..=1.0).contains(v))
    {
        return Err(Error::invalid(format!(
            "the VAE reconstructs values in [0, 1]; dataset '{}' has values outside",
            data.name
        )));
    }
    if let Some(dir) = &args.report {
        // Fail before training, not after it, when the pictures cannot be written.
        wgml::report::prepare(dir)?;
    }
    let ctx = gpu.context()?;
    println!(
        "wgml: training vae ({input} → {} → {} → {} → {input}) on {} ({} train / {} test) on {} ({:?})",
        spec.hidden,
        spec.latent,
        spec.hidden,
        data.name,
        data.train.len(),
        data.test.len(),
        ctx.info.name,
        ctx.info.backend
    );
    let mut model = spec.compile(&ctx, Optimizer::adam(lr), args.seed)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(args.seed);
    let mut order: Vec<usize> = (0..data.train.len()).collect();
    let steps_limit = args.steps;
    let mut history = Vec::new();
    for epoch in 1..=epochs {
        if !args.no_shuffle {
            order.shuffle(&mut rng);
        }
        let take = match steps_limit {
            Some(s) => order
                .len()
                .min((s as usize).saturating_sub(model.net.step as usize) * batch),
            None => order.len(),
        };
        if take == 0 {
            break;
        }
        let start = Instant::now();
        let train = model.train_epoch(&ctx, &data.train.x, &order[..take], batch, lr)?;
        let secs = start.elapsed().as_secs_f64();
        let test = model.evaluate(&ctx, &data.test.x, 256.max(batch))?;
        print_epoch(epoch, epochs, secs, take, &train, &test);
        if !train.total().is_finite() {
            return Err(Error::invalid(format!(
                "the loss is {} after epoch {epoch}: lower --lr",
                train.total()
            )));
        }
        history.push(serde_json::json!({"epoch": epoch, "train": train, "test": test, "seconds": secs}));
    }
    let test = model.evaluate(&ctx, &data.test.x, 256.max(batch))?;
    println!(
        "test loss: {:.4} (reconstruction {:.4} + kl {:.4}, {} samples)",
        test.total(),
        test.reconstruction,
        test.kl,
        data.test.len()
    );
    if let Some(dir) = &args.report {
        for path in write_report(&ctx, &mut model, &data, dir)? {
            println!("report: {}", path.display());
        }
    }
    if let Some(path) = &args.save {
        let tensors = model.net.store.download(&ctx)?;
        checkpoint::save(path, "vae", &tensors, model.net.step as u64)?;
        println!("weights saved to {}", path.display());
    }
    if let Some(path) = &args.metrics {
        let json = serde_json::json!({
            "model": "vae",
            "spec": spec,
            "epochs": history,
            "test": test,
            "adapter": ctx.info.name,
            "backend": format!("{:?}", ctx.info.backend),
        });
        write_json(path, &json)?;
        println!("metrics written to {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Side of the decoded latent grid and the extent of latent values it spans.
const GRID_SIDE: usize = 15;
const GRID_EXTENT: f32 = 3.0;

/// The VAE's pictures of the test split (see [`wgml::report::write_vae_report`]).
fn write_report(
    ctx: &wgml::Context,
    model: &mut wgml::nn::VaeModel,
    data: &wgml::data::Dataset,
    dir: &std::path::Path,
) -> Result<Vec<std::path::PathBuf>> {
    let d = model.spec.input;
    let n = data.test.len();
    let shown = n.min(32);
    let originals = &data.test.x[..shown * d];
    let reconstructions = model.values(ctx, model.nodes.reconstruction, originals, shown)?;
    let latent = model.spec.latent;
    let grid = if latent == 2 {
        let step = 2.0 * GRID_EXTENT / (GRID_SIDE - 1) as f32;
        let z: Vec<f32> = (0..GRID_SIDE * GRID_SIDE)
            .flat_map(|k| {
                let (row, col) = (k / GRID_SIDE, k % GRID_SIDE);
                [-GRID_EXTENT + col as f32 * step, GRID_EXTENT - row as f32 * step]
            })
            .collect();
        Some(model.decode(ctx, &z, GRID_SIDE * GRID_SIDE)?)
    } else {
        None
    };
    let means = model.values(ctx, model.nodes.mean, &data.test.x, 256)?;
    let points: Vec<[f32; 2]> = means
        .chunks(latent)
        .map(|m| [m[0], m.get(1).copied().unwrap_or(0.0)])
        .collect();
    let classes = wgml::train::true_classes(&data.test);
    wgml::report::write_vae_report(
        dir,
        &wgml::report::VaeReport {
            shape: &data.sample_shape,
            originals,
            reconstructions: &reconstructions,
            latent_grid: grid.as_deref().map(|g| (g, GRID_SIDE, GRID_EXTENT)),
            means: &points,
            classes: &classes,
        },
    )
}
