//! Training a GAN: epochs of alternating discriminator and generator steps over
//! shuffled full batches, both losses and D(real), D(fake) per epoch, a step limit,
//! and [`Backup`](crate::train::Backup) of both networks' weights and optimizer state after every
//! complete epoch, so a stopped run resumes with the results it would have had
//! (shuffles replayed from the seed, noise from the restored step counts).

use std::time::Instant;

use rand::SeedableRng;
use rand::seq::SliceRandom;

use crate::error::{Error, Result};
use crate::gpu::Context;
use crate::nn::{GanModel, GanStats};
use crate::train::backup;
use crate::train::terms::{TermsConfig, settings};

/// What a GAN run's backup records of its loop.
#[derive(serde::Serialize, serde::Deserialize)]
struct GanProgress {
    discriminator_steps: u32,
    generator_steps: u32,
    history: Vec<GanStats>,
}

/// What [`fit_gan`] tells its caller.
pub enum GanEvent<'a> {
    /// The run continues from a backup holding these epochs.
    Resumed {
        /// The backup file.
        path: &'a std::path::Path,
        /// The epochs it holds.
        epochs: &'a [GanStats],
    },
    /// Epoch `epoch` (from 1) ended: its means, the seconds it took and the images
    /// it trained on.
    Epoch {
        /// The epoch, from 1.
        epoch: usize,
        /// Its means.
        stats: &'a GanStats,
        /// Seconds its training took.
        seconds: f64,
        /// Real images it trained on (whole batches).
        images: usize,
    },
}

/// Trains `gan` on `images` (`gan.spec.output` values each, in [-1, 1]) as
/// `config` says (its `eval_batch` is not used: a GAN has no test loss); `on_event`
/// hears of a resumption and of every epoch, with the model (to draw samples),
/// and may stop the run with an error. Returns every epoch's means (a resumed
/// run's included). Non-finite losses stop the run with an error.
pub fn fit_gan(
    ctx: &Context,
    gan: &mut GanModel,
    images: &[f32],
    config: &TermsConfig,
    mut on_event: impl FnMut(GanEvent<'_>, &mut GanModel) -> Result<()>,
) -> Result<Vec<GanStats>> {
    let d = gan.spec.output;
    let n = images.len() / d.max(1);
    if images.len() != n * d || config.batch_size == 0 || config.batch_size > n {
        return Err(Error::invalid(format!(
            "batch size {} must be between 1 and the {n} training images ({} values of {d})",
            config.batch_size,
            images.len()
        )));
    }
    let settings = match &config.backup {
        Some(_) => settings(&[&gan.discriminator, &gan.generator], images, n, config),
        None => Default::default(),
    };
    let mut history = Vec::new();
    if let Some(b) = &config.backup
        && let Some(p) = backup::read_state::<GanProgress>(b, ctx, &gan.store, &[], &settings, |_| false)?
    {
        gan.discriminator.step = p.discriminator_steps;
        gan.generator.step = p.generator_steps;
        history = p.history;
        on_event(
            GanEvent::Resumed {
                path: &b.path(),
                epochs: &history,
            },
            gan,
        )?;
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(config.seed);
    let mut order: Vec<usize> = (0..n).collect();
    // Each epoch's shuffle follows from the previous ones: replay those done.
    if config.shuffle {
        for _ in 0..history.len() {
            order.shuffle(&mut rng);
        }
    }
    let batch = config.batch_size;
    for epoch in history.len() + 1..=config.epochs {
        if config.shuffle {
            order.shuffle(&mut rng);
        }
        let take = match config.max_steps {
            Some(s) => n.min((s as usize).saturating_sub(gan.generator.step as usize) * batch),
            None => n,
        };
        if take < batch {
            break;
        }
        let start = Instant::now();
        let stats = gan.train_epoch(ctx, images, &order[..take], batch, config.lr)?;
        let seconds = start.elapsed().as_secs_f64();
        history.push(stats);
        on_event(
            GanEvent::Epoch {
                epoch,
                stats: &stats,
                seconds,
                images: take / batch * batch,
            },
            gan,
        )?;
        if !(stats.d_loss.is_finite() && stats.g_loss.is_finite()) {
            return Err(Error::invalid(format!(
                "the losses are not finite after epoch {epoch}: lower the learning rate"
            )));
        }
        // A backup holds whole epochs only (a run cut short by max_steps resumes
        // from the last complete one).
        if let Some(b) = &config.backup
            && take / batch == n / batch
        {
            let progress = GanProgress {
                discriminator_steps: gan.discriminator.step,
                generator_steps: gan.generator.step,
                history: history.clone(),
            };
            backup::write_state(b, ctx, &gan.store, None, &settings, &progress)?;
        }
    }
    ctx.wait()?;
    if let Some(b) = &config.backup {
        backup::finish(b);
    }
    Ok(history)
}
