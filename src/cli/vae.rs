//! `wgml train --model vae`: the variational autoencoder on an image dataset (MNIST
//! by default), reporting the reconstruction and KL terms every epoch.

use std::process::ExitCode;

use wgml::kernels::optim::Optimizer;
use wgml::nn::Vae;
use wgml::{Error, Result, checkpoint};

use super::GpuArgs;
use super::functional::{TermsRun, train_on_terms};
use super::train::{TrainArgs, load_data, refuse_supervised_flags, write_json};

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
    let run = TermsRun::new(args, 10, 128, 1e-3)?;
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
    let mut model = spec.compile(&ctx, Optimizer::adam(run.lr), args.seed)?;
    let (history, test) = train_on_terms(
        &ctx,
        &mut model.net,
        &data.train.x,
        &data.test.x,
        args,
        &run,
        format!("{spec:?}"),
    )?;
    let test = wgml::nn::VaeLosses {
        reconstruction: test[0],
        kl: test[1],
    };
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
