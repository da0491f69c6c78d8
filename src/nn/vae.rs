//! A variational autoencoder (Kingma & Welling) on flat inputs in [0, 1], as Keras'
//! and PyTorch's MNIST examples build it:
//!
//! ```text
//! x ─ Dense(hidden, relu) ─┬─ Dense(latent) = mean
//!                          └─ Dense(latent) = log_var
//! z = mean + exp(log_var / 2) · ε,   ε ~ N(0, I) drawn anew every step
//! z ─ Dense(hidden, relu) ─ Dense(input) = logits,  reconstruction = sigmoid(logits)
//! loss = Σ_pixels BCE(logits, x) + KL(N(mean, e^log_var) ‖ N(0, I)), averaged over the batch
//! ```
//!
//! The graph uses the general ops (Add, Mul, Exp, Noise, loss terms) and trains
//! towards an [`Objective::Terms`] of the two terms, each reported on its own. Tensor
//! names are those of the PyTorch module with submodules `encoder`
//! (`nn.Sequential(Linear, ReLU)`), `mean`, `log_var` (`nn.Linear`) and `decoder`
//! (`nn.Sequential(Linear, ReLU, Linear)`).

use rand::SeedableRng;

use crate::error::{Error, Result};
use crate::gpu::Context;
use crate::graph::{Graph, NodeId, Objective, ParamStore};
use crate::kernels::loss::Term;
use crate::kernels::matmul::Activation;
use crate::kernels::optim::Optimizer;
use crate::nn::functional::{Functional, GraphOp};
use crate::nn::graph_model::GraphModel;
use crate::nn::{Layer, LayerActivation};

/// The shape of a variational autoencoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Vae {
    /// Values per sample (784 for MNIST), each in [0, 1].
    pub input: usize,
    /// Units of the encoder's and the decoder's hidden layer.
    pub hidden: usize,
    /// Dimensions of the latent space.
    pub latent: usize,
}

/// The nodes of a VAE's graph that users read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VaeNodes {
    /// The batch, `[input]` per sample.
    pub x: NodeId,
    /// The latent means, `[latent]`.
    pub mean: NodeId,
    /// The latent log-variances, `[latent]`.
    pub log_var: NodeId,
    /// The sampled latent point, `[latent]`.
    pub z: NodeId,
    /// The reconstruction, `sigmoid(logits)`, `[input]`.
    pub reconstruction: NodeId,
    /// The reconstruction term (BCE summed over the input), `[1]`.
    pub reconstruction_loss: NodeId,
    /// The KL term, `[1]`.
    pub kl: NodeId,
}

impl Vae {
    /// Keras' MNIST example: 784 → 512 → 2 and back.
    pub const MNIST: Vae = Vae {
        input: 784,
        hidden: 512,
        latent: 2,
    };

    /// The model as a functional description: the input `image`, layers
    /// `encoder.0`, `mean`, `log_var`, `z` (sampling), `decoder.0`, `decoder.2`
    /// (logits) and `reconstruction`, and the terms `reconstruction` and `kl`
    /// (`examples/models/vae.json` is [`Vae::MNIST`]'s).
    pub fn functional(&self) -> Functional {
        let dense = |units, activation| Layer::Dense {
            units,
            activation,
            use_bias: true,
            trainable: true,
        };
        Functional::new("image", &[self.input])
            .layer("encoder.0", dense(self.hidden, LayerActivation::Relu), &["image"])
            .layer(
                "mean",
                dense(self.latent, LayerActivation::Linear),
                &["encoder.0"],
            )
            .layer(
                "log_var",
                dense(self.latent, LayerActivation::Linear),
                &["encoder.0"],
            )
            .op("z", GraphOp::Sampling, &["mean", "log_var"])
            .layer("decoder.0", dense(self.hidden, LayerActivation::Relu), &["z"])
            .layer(
                "decoder.2",
                dense(self.input, LayerActivation::Linear),
                &["decoder.0"],
            )
            .layer(
                "reconstruction",
                Layer::Activation(LayerActivation::Sigmoid),
                &["decoder.2"],
            )
            .output("reconstruction")
            .loss_term("reconstruction", Term::BceSum, &["decoder.2", "image"], 1.0)
            .loss_term("kl", Term::KlNormal, &["mean", "log_var"], 1.0)
    }

    /// Builds the graph and its objective (reconstruction + KL, weight 1 each).
    pub fn graph(&self) -> Result<(Graph, VaeNodes, Objective)> {
        if self.input == 0 || self.hidden == 0 || self.latent == 0 {
            return Err(Error::invalid(format!(
                "a VAE needs at least one input, hidden unit and latent dimension, got {self:?}"
            )));
        }
        let f = self.functional().graph()?;
        let Objective::Terms(terms) = &f.objective else {
            unreachable!("a VAE is trained on loss terms")
        };
        let nodes = VaeNodes {
            x: f.node("image")?,
            mean: f.node("mean")?,
            log_var: f.node("log_var")?,
            z: f.node("z")?,
            reconstruction: f.node("reconstruction")?,
            reconstruction_loss: terms[0].node,
            kl: terms[1].node,
        };
        Ok((f.graph, nodes, f.objective))
    }

    /// The decoder on latent points `z`: its logits and the reconstruction.
    fn decoder(&self, g: &mut Graph, z: NodeId) -> Result<(NodeId, NodeId)> {
        let h = GraphModel::dense(g, z, "decoder.0", self.hidden, Activation::Relu, true)?;
        let logits = GraphModel::dense(g, h, "decoder.2", self.input, Activation::Identity, true)?;
        Ok((
            logits,
            g.activation(logits, Activation::Sigmoid, "reconstruction"),
        ))
    }

    /// Compiles the VAE onto `ctx`: Glorot-uniform weights and zero biases drawn
    /// from `seed`, the noise seeded from `seed`, the optimizer's state.
    pub fn compile(&self, ctx: &Context, optimizer: Optimizer, seed: u64) -> Result<VaeModel> {
        let (mut graph, nodes, objective) = self.graph()?;
        graph.seed_random(seed);
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let store = ParamStore::new(ctx, &graph, optimizer.state_count(), &mut rng)?;
        Ok(VaeModel {
            spec: *self,
            nodes,
            net: GraphModel::new(ctx, graph, objective, store, optimizer)?,
            decoder: None,
        })
    }
}

/// A compiled VAE: parameters, optimizer state and plans resident on one GPU.
#[derive(Debug)]
pub struct VaeModel {
    /// Its shape.
    pub spec: Vae,
    /// The nodes users read.
    pub nodes: VaeNodes,
    /// The graph, its objective (reconstruction + KL), parameters, optimizer and plans.
    pub net: GraphModel,
    /// The decoder alone, sharing `net`'s parameters, built on first use.
    decoder: Option<GraphModel>,
}

/// Mean reconstruction and KL terms per sample over some batches.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct VaeLosses {
    /// Binary cross-entropy summed over the input, per sample.
    pub reconstruction: f64,
    /// KL divergence from N(0, I), per sample.
    pub kl: f64,
}

impl VaeLosses {
    /// Their sum: the loss trained.
    pub fn total(&self) -> f64 {
        self.reconstruction + self.kl
    }
}

impl VaeModel {
    /// Queues one training step on the `n` samples `x` with learning rate `lr`: one
    /// submission, nothing read back; the term sums accumulate.
    pub fn train_step(&mut self, ctx: &Context, x: &[f32], n: usize, lr: f32) -> Result<()> {
        self.net.train_step(ctx, x, n, lr)
    }

    fn losses(t: Vec<f64>) -> VaeLosses {
        VaeLosses {
            reconstruction: t[0],
            kl: t[1],
        }
    }

    /// One epoch over the samples `x` in batches of `batch` in the order of
    /// `order` (a permutation of their indices); returns the epoch's mean terms.
    pub fn train_epoch(
        &mut self,
        ctx: &Context,
        x: &[f32],
        order: &[usize],
        batch: usize,
        lr: f32,
    ) -> Result<VaeLosses> {
        Ok(Self::losses(self.net.train_epoch(ctx, x, order, batch, lr)?))
    }

    /// The mean terms over the samples `x`, evaluated in batches of `batch`
    /// (each with a fresh ε at the current step).
    pub fn evaluate(&mut self, ctx: &Context, x: &[f32], batch: usize) -> Result<VaeLosses> {
        Ok(Self::losses(self.net.evaluate(ctx, x, batch)?))
    }

    /// Node `node`'s values (e.g. [`VaeNodes::mean`], [`VaeNodes::reconstruction`])
    /// for the samples `x`, in batches of `batch`.
    pub fn values(&mut self, ctx: &Context, node: NodeId, x: &[f32], batch: usize) -> Result<Vec<f32>> {
        self.net.values(ctx, node, x, self.spec.input, batch)
    }

    /// The images the decoder makes of the `n` latent points `z` (`n × latent`
    /// values), with the model's current weights: `n × input` values in (0, 1).
    pub fn decode(&mut self, ctx: &Context, z: &[f32], n: usize) -> Result<Vec<f32>> {
        let latent = self.spec.latent;
        if n == 0 || z.len() != n * latent {
            return Err(Error::shape(
                "vae decode",
                format!("{} values given for {n} latent points of {latent}", z.len()),
            ));
        }
        if self.decoder.is_none() {
            let mut graph = Graph::new();
            let input = graph.input(&[latent])?;
            let (_, reconstruction) = self.spec.decoder(&mut graph, input)?;
            let store = ParamStore::sharing(&graph, &self.net.store)?;
            let objective = Objective::Forward(vec![reconstruction]);
            self.decoder = Some(GraphModel::new(
                ctx,
                graph,
                objective,
                store,
                self.net.optimizer.clone(),
            )?);
        }
        let d = self.decoder.as_mut().expect("built above");
        let mut out = Vec::with_capacity(n * self.spec.input);
        for start in (0..n).step_by(256) {
            let len = (n - start).min(256);
            let plan = d.eval_step(ctx, &z[start * latent..(start + len) * latent], len)?;
            out.extend(plan.output.to_f32(ctx)?);
        }
        Ok(out)
    }

    /// A CPU executor of the same graph and objective from the model's current
    /// parameters and optimizer state (for tests and checks).
    pub fn reference(&self, ctx: &Context) -> Result<crate::graph::reference::ReferenceExecutor> {
        self.net.reference(ctx)
    }
}
