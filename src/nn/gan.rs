//! A generative adversarial network (Goodfellow et al.) of two multilayer
//! perceptrons, as PyTorch's and Keras' MNIST examples train it:
//!
//! ```text
//! generator:     z ~ N(0, I) (latent) ─ Dense(h, relu) ─ Dense(2h, relu) ─ Dense(output, tanh)
//! discriminator: image ─ Dense(2h, relu) ─ Dense(h, relu) ─ Dense(1) = logit, D = sigmoid(logit)
//! ```
//!
//! Training alternates two steps, each one submission with its own Adam state:
//! - the discriminator's: real images (scaled to [-1, 1]) and as many generated
//!   ones, loss BCE(D(real), 1) + BCE(D(fake), 0), the generator frozen;
//! - the generator's: generated images through the frozen discriminator, loss
//!   BCE(D(fake), 1) (the non-saturating loss).
//!
//! Both steps are graphs over one set of parameters ([`ParamStore::sharing`]): the
//! discriminator applied to real and generated images is one set of weights used
//! twice, its gradients summed. Weights and images never leave the GPU during
//! training. Tensor names are those of PyTorch modules `generator` and
//! `discriminator` (`nn.Sequential` with their activations as modules).

use rand::SeedableRng;

use crate::error::{Error, Result};
use crate::gpu::Context;
use crate::graph::{Graph, NodeId, Objective, ParamStore, WeightedTerm};
use crate::kernels::loss::Term;
use crate::kernels::matmul::Activation;
use crate::kernels::noise::Distribution;
use crate::kernels::optim::Optimizer;
use crate::nn::graph_model::GraphModel;

/// The shape of a GAN.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Gan {
    /// Dimensions of the generator's noise.
    pub latent: usize,
    /// Units of the narrower hidden layer (the wider one has twice as many).
    pub hidden: usize,
    /// Values per image (784 for MNIST), in [-1, 1].
    pub output: usize,
}

/// The parameter nodes of a network already in a graph, to apply it again.
#[derive(Clone, Copy, Debug)]
struct Layers {
    params: [(NodeId, NodeId); 3],
}

impl Gan {
    /// PyTorch's MNIST GAN size: 100 → 256 → 512 → 784 and back to 1.
    pub const MNIST: Gan = Gan {
        latent: 100,
        hidden: 256,
        output: 784,
    };

    fn check(&self) -> Result<()> {
        if self.latent == 0 || self.hidden == 0 || self.output == 0 {
            return Err(Error::invalid(format!(
                "a GAN needs at least one latent dimension, hidden unit and output, got {self:?}"
            )));
        }
        Ok(())
    }

    /// The generator on `z`: its output image.
    fn generator(&self, g: &mut Graph, z: NodeId, trainable: bool) -> Result<NodeId> {
        let h = GraphModel::dense(g, z, "generator.0", self.hidden, Activation::Relu, trainable)?;
        let h = GraphModel::dense(g, h, "generator.2", 2 * self.hidden, Activation::Relu, trainable)?;
        GraphModel::dense(g, h, "generator.4", self.output, Activation::Tanh, trainable)
    }

    /// The discriminator on `x`: its logit, and its layers to apply again.
    fn discriminator(&self, g: &mut Graph, x: NodeId, trainable: bool) -> Result<(NodeId, Layers)> {
        let names = ["discriminator.0", "discriminator.2", "discriminator.4"];
        let units = [2 * self.hidden, self.hidden, 1];
        let acts = [Activation::Relu, Activation::Relu, Activation::Identity];
        let mut params = [(0, 0); 3];
        let mut h = x;
        for k in 0..3 {
            h = GraphModel::dense(g, h, names[k], units[k], acts[k], trainable)?;
            if let crate::graph::Op::Dense { w, b: Some(b), .. } = g.nodes[h].op {
                params[k] = (w, b);
            }
        }
        Ok((h, Layers { params }))
    }

    /// The discriminator with the parameters of `layers` (already in `g`) on `x`.
    fn discriminator_again(&self, g: &mut Graph, x: NodeId, layers: Layers) -> Result<NodeId> {
        let acts = [Activation::Relu, Activation::Relu, Activation::Identity];
        let mut h = x;
        for (k, &(w, b)) in layers.params.iter().enumerate() {
            h = g.dense(
                h,
                w,
                Some(b),
                acts[k],
                &format!("discriminator.{} (on generated)", 2 * k),
            )?;
        }
        Ok(h)
    }

    /// The discriminator's step: real images in, generated ones made inside, the
    /// generator frozen. Terms: BCE(real, 1), BCE(fake, 0), and D(real), D(fake)
    /// reported only.
    pub fn discriminator_step(&self) -> Result<(Graph, Objective)> {
        self.check()?;
        let mut g = Graph::new();
        let real = g.input(&[self.output])?;
        let z = g.noise(&[self.latent], Distribution::STANDARD_NORMAL, "noise")?;
        let fake = self.generator(&mut g, z, false)?;
        let (d_real, layers) = self.discriminator(&mut g, real, true)?;
        let d_fake = self.discriminator_again(&mut g, fake, layers)?;
        let ones = g.constant(&[1], 1.0, "label real")?;
        let zeros = g.constant(&[1], 0.0, "label fake")?;
        let loss_real = g.loss_term(Term::BceSum, d_real, ones, "loss on real")?;
        let loss_fake = g.loss_term(Term::BceSum, d_fake, zeros, "loss on generated")?;
        let p_real = g.loss_term(Term::SigmoidMean, d_real, d_real, "D(real)")?;
        let p_fake = g.loss_term(Term::SigmoidMean, d_fake, d_fake, "D(fake)")?;
        let term = |name: &str, node, weight| WeightedTerm {
            name: name.into(),
            node,
            weight,
        };
        let objective = Objective::Terms(vec![
            term("d_loss_real", loss_real, 1.0),
            term("d_loss_fake", loss_fake, 1.0),
            term("d_real", p_real, 0.0),
            term("d_fake", p_fake, 0.0),
        ]);
        Ok((g, objective))
    }

    /// The generator's step: generated images through the frozen discriminator,
    /// loss BCE(D(fake), 1); D(fake) reported.
    pub fn generator_step(&self) -> Result<(Graph, Objective)> {
        self.check()?;
        let mut g = Graph::new();
        // The generator's step reads no batch; its input is a placeholder of one
        // value per sample that nothing uses.
        g.input(&[1])?;
        let z = g.noise(&[self.latent], Distribution::STANDARD_NORMAL, "noise")?;
        let fake = self.generator(&mut g, z, true)?;
        let (d_fake, _) = self.discriminator(&mut g, fake, false)?;
        let ones = g.constant(&[1], 1.0, "label real")?;
        let loss = g.loss_term(Term::BceSum, d_fake, ones, "generator loss")?;
        let p_fake = g.loss_term(Term::SigmoidMean, d_fake, d_fake, "D(fake)")?;
        let objective = Objective::Terms(vec![
            WeightedTerm {
                name: "g_loss".into(),
                node: loss,
                weight: 1.0,
            },
            WeightedTerm {
                name: "d_fake".into(),
                node: p_fake,
                weight: 0.0,
            },
        ]);
        Ok((g, objective))
    }

    /// The generator alone on given noise (samples from a fixed batch of noise).
    fn sampler(&self) -> Result<(Graph, Objective)> {
        let mut g = Graph::new();
        let z = g.input(&[self.latent])?;
        let fake = self.generator(&mut g, z, false)?;
        Ok((g, Objective::Forward(vec![fake])))
    }

    /// Compiles the GAN: every parameter drawn from `seed` (Glorot-uniform weights,
    /// zero biases), each step with its own copy of `optimizer`'s state and its own
    /// noise stream.
    pub fn compile(&self, ctx: &Context, optimizer: Optimizer, seed: u64) -> Result<GanModel> {
        self.check()?;
        // Every parameter once, trainable, so that each has optimizer state.
        let mut all = Graph::new();
        let z = all.input(&[self.latent])?;
        let fake = self.generator(&mut all, z, true)?;
        self.discriminator(&mut all, fake, true)?;
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let store = ParamStore::new(ctx, &all, optimizer.state_count(), &mut rng)?;
        let step = |(mut graph, objective): (Graph, Objective), stream: u64| -> Result<GraphModel> {
            graph.seed_random(seed.wrapping_mul(3).wrapping_add(stream));
            let shared = ParamStore::sharing(&graph, &store)?;
            GraphModel::new(ctx, graph, objective, shared, optimizer.clone())
        };
        let discriminator = step(self.discriminator_step()?, 1)?;
        let generator = step(self.generator_step()?, 2)?;
        let sampler = step(self.sampler()?, 3)?;
        Ok(GanModel {
            spec: *self,
            discriminator,
            generator,
            sampler,
            store,
            placeholder: Vec::new(),
        })
    }
}

/// A compiled GAN: one set of parameters on the GPU and the three graphs over it.
#[derive(Debug)]
pub struct GanModel {
    /// Its shape.
    pub spec: Gan,
    /// The discriminator's step (its own Adam state and step count).
    pub discriminator: GraphModel,
    /// The generator's step.
    pub generator: GraphModel,
    /// The generator alone on given noise.
    pub sampler: GraphModel,
    /// Every parameter, with the optimizer state both steps update.
    pub store: ParamStore,
    /// The generator step's unused input for a batch (kept, not made every step).
    placeholder: Vec<f32>,
}

/// Per-epoch means of a GAN's losses and the discriminator's outputs.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GanStats {
    /// BCE(D(real), 1) + BCE(D(fake), 0), per sample.
    pub d_loss: f64,
    /// BCE(D(G(z)), 1), per sample.
    pub g_loss: f64,
    /// Mean D(real) in the discriminator's steps.
    pub d_real: f64,
    /// Mean D(fake) in the discriminator's steps.
    pub d_fake: f64,
}

impl GanModel {
    /// Keeps an exponential moving average of the generator's weights with this
    /// momentum, updated on the GPU after every generator step from the next one on
    /// (which takes the weights themselves), as GAN trainers keep a generator for
    /// sampling (Keras' `use_ema`, StyleGAN's G_ema); `None` keeps none. The
    /// averages live in [`GanModel::store`] (`ema/NAME` in backups);
    /// [`GanModel::finalize_ema`] puts them in the generator's weights' place. A
    /// change drops the averages kept so far.
    pub fn set_ema(&mut self, ctx: &Context, ema: Option<crate::graph::Ema>) -> Result<()> {
        // The generator's step makes the averages of its trainable weights; the
        // whole store holds them too, for backups and finalizing.
        self.generator.set_ema(ctx, ema)?;
        for p in &mut self.store.params {
            p.ema = self
                .generator
                .store
                .params
                .iter()
                .find(|g| g.trainable && g.name == p.name)
                .and_then(|g| g.ema.clone());
        }
        self.store.ema_start = self.generator.store.ema_start;
        Ok(())
    }

    /// The moving average kept of the generator's weights, if any.
    pub fn ema(&self) -> Option<crate::graph::Ema> {
        self.generator.ema()
    }

    /// Replaces the generator's weights with their moving averages; nothing when
    /// none is kept. Queued, nothing read back.
    pub fn finalize_ema(&self, ctx: &Context) -> Result<()> {
        self.generator.finalize_ema(ctx)
    }

    /// One discriminator step on the `n` real images `real` (in [-1, 1]) and one
    /// generator step on `n` generated ones: two submissions, nothing read back.
    pub fn train_step(&mut self, ctx: &Context, real: &[f32], n: usize, lr: f32) -> Result<()> {
        self.discriminator.train_step(ctx, real, n, lr)?;
        self.placeholder.resize(n, 0.0);
        self.generator.train_step(ctx, &self.placeholder, n, lr)
    }

    /// One epoch: for each full batch of `batch` images of `order` (indices into
    /// `images`, `output` values each, in [-1, 1]), a discriminator step and a
    /// generator step; returns the epoch's means.
    pub fn train_epoch(
        &mut self,
        ctx: &Context,
        images: &[f32],
        order: &[usize],
        batch: usize,
        lr: f32,
    ) -> Result<GanStats> {
        let d = self.spec.output;
        if batch == 0 || order.len() < batch {
            return Err(Error::invalid(format!(
                "a GAN epoch needs at least one full batch of {batch} images; {} given",
                order.len()
            )));
        }
        self.discriminator.acc.reset(ctx)?;
        self.generator.acc.reset(ctx)?;
        let mut buf = Vec::with_capacity(batch * d);
        let mut seen = 0;
        for chunk in order.chunks_exact(batch) {
            buf.clear();
            for &i in chunk {
                buf.extend_from_slice(&images[i * d..(i + 1) * d]);
            }
            self.train_step(ctx, &buf, batch, lr)?;
            seen += batch;
        }
        let dt = self.discriminator.read_terms(ctx, seen)?;
        let gt = self.generator.read_terms(ctx, seen)?;
        Ok(GanStats {
            d_loss: dt[0] + dt[1],
            g_loss: gt[0],
            d_real: dt[2],
            d_fake: dt[3],
        })
    }

    /// The generator's images (`output` values each, in [-1, 1]) for the `n` noise
    /// vectors `z`, with the current weights.
    pub fn generate(&mut self, ctx: &Context, z: &[f32], n: usize) -> Result<Vec<f32>> {
        let latent = self.spec.latent;
        if n == 0 || z.len() != n * latent {
            return Err(Error::shape(
                "gan generate",
                format!("{} values given for {n} noise vectors of {latent}", z.len()),
            ));
        }
        let mut out = Vec::with_capacity(n * self.spec.output);
        for start in (0..n).step_by(256) {
            let len = (n - start).min(256);
            let plan = self
                .sampler
                .eval_step(ctx, &z[start * latent..(start + len) * latent], len)?;
            out.extend(plan.output.to_f32(ctx)?);
        }
        Ok(out)
    }
}
