//! The graph executor.
//!
//! - [`Graph`]: ops with static per-sample shapes, inferred when a node is added
//!   (a mismatch is an error naming the layer and both shapes).
//! - [`autodiff`]: which nodes need gradients and in what order the backward rules run.
//! - [`plan`]: lowers forward, loss, backward and optimizer update for one batch size
//!   to prepared dispatches, allocating every buffer and bind group once.
//! - [`ops`]: every op family's builder, GPU lowering, backward rule and CPU
//!   reference, side by side.
//! - [`params`]: parameters, their gradients and optimizer state, resident on the GPU.

pub mod autodiff;
pub mod decode;
mod loss;
pub mod ops;
pub mod params;
pub mod plan;
pub mod reference;

pub use loss::Loss;

use crate::error::{Error, Result};
use crate::kernels::conv::Padding;
use crate::kernels::elementwise::GatedUnit;
use crate::kernels::matmul::Activation;

pub use ops::batchnorm::{batch_norm_desc, batch_norm_view};
pub use ops::conv::conv_desc;
pub use ops::pool::pool_desc;
pub use params::{Param, ParamStore};
pub use plan::{ClipNorm, Ema, LabelSmoothing, Plan, PlanOptions};

/// Index of a node in its graph.
pub type NodeId = usize;

/// How a parameter is initialised.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    /// Keras' default for kernels: U(−l, l), l = √(6 / (fan_in + fan_out)).
    GlorotUniform {
        /// Inputs feeding each output unit (`in`, or `C·kh·kw` for a convolution).
        fan_in: usize,
        /// Outputs each input unit feeds (`out`, or `O·kh·kw` for a convolution).
        fan_out: usize,
    },
    /// Keras' default for biases (and BatchNormalization's beta and moving mean).
    Zeros,
    /// BatchNormalization's gamma and moving variance.
    Ones,
    /// U(−limit, limit): Keras' `Embedding` default (`limit` 0.05).
    Uniform {
        /// Half the interval's width (positive).
        limit: f32,
    },
}

/// 2-D window geometry without the batch (filled in when a plan is built).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// Window size, `(height, width)`.
    pub kernel: (usize, usize),
    /// Step between windows, `(height, width)`.
    pub stride: (usize, usize),
    /// Padding of the input (pooling takes 'valid' or explicit padding).
    pub padding: Padding,
}

/// One operation. Inputs are earlier nodes.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// The batch of samples fed each step.
    Input,
    /// A tensor of the model (no batch dimension). `name` follows PyTorch's
    /// `state_dict` naming of the equivalent `nn.Sequential` (e.g. `4.weight`).
    /// Trainable ones get a gradient and an optimizer step; the others (a batch
    /// normalization's moving statistics) are state the forward pass updates, saved
    /// and restored with the rest.
    Param {
        /// `state_dict` name, e.g. `4.weight`.
        name: String,
        /// How the values are initialised.
        init: Init,
        /// Whether the optimizer updates it.
        trainable: bool,
    },
    /// `act(x · wᵀ + b)`, x `[B, in]`, w `[out, in]` (PyTorch's Linear layout), b
    /// `[out]` when the layer has a bias.
    Dense {
        /// Input, `[in]` per sample.
        x: NodeId,
        /// Weight parameter, `[out, in]`.
        w: NodeId,
        /// Bias parameter, `[out]`, if any.
        b: Option<NodeId>,
        /// Activation applied after the bias.
        act: Activation,
    },
    /// `act(conv2d(x, w) + b)`, x `[B, C, H, W]`, w `[O, C, kh, kw]`, b `[O]` when
    /// the layer has a bias.
    Conv2d {
        /// Input, `[C, H, W]` per sample.
        x: NodeId,
        /// Weight parameter, `[O, C, kh, kw]`.
        w: NodeId,
        /// Bias parameter, `[O]`, if any.
        b: Option<NodeId>,
        /// Step between windows, `(height, width)`.
        stride: (usize, usize),
        /// Padding of the input.
        padding: Padding,
        /// Activation applied after the bias.
        act: Activation,
    },
    /// `act(conv_transpose2d(x, w) + b)`, x `[B, C_in, H, W]`, w `[C_in, C_out, kh,
    /// kw]` (PyTorch's `ConvTranspose2d` layout), b `[C_out]` when the layer has a
    /// bias (see `graph::ops::conv_transpose`).
    Conv2dTranspose {
        /// Input, `[C_in, H, W]` per sample.
        x: NodeId,
        /// Weight parameter, `[C_in, C_out, kh, kw]`.
        w: NodeId,
        /// Bias parameter, `[C_out]`, if any.
        b: Option<NodeId>,
        /// Stride, `(height, width)`: the output grows by it.
        stride: (usize, usize),
        /// Padding of the convolution it transposes.
        padding: Padding,
        /// Activation applied after the bias.
        act: Activation,
    },
    /// Maximum over each window of `x` (`[C, H, W]` per sample).
    MaxPool2d {
        /// Input, `[C, H, W]` per sample.
        x: NodeId,
        /// Pooling window geometry.
        window: Window,
    },
    /// Mean over each window of `x` (`[C, H, W]` per sample).
    AvgPool2d {
        /// Input, `[C, H, W]` per sample.
        x: NodeId,
        /// Pooling window geometry.
        window: Window,
    },
    /// A view with another per-sample shape (Flatten): no data moves.
    Reshape {
        /// Input viewed with the new shape.
        x: NodeId,
    },
    /// Elementwise activation.
    Act {
        /// Input.
        x: NodeId,
        /// Activation applied to each element.
        act: Activation,
    },
    /// `act(batch_norm(x))` over the first per-sample axis (channels of
    /// `[C, H, W]`, features of `[F]`): batch statistics while training (moving
    /// `moving_mean`/`moving_var`, non-trainable parameters, toward them), the moving
    /// statistics when evaluating. `gamma`, `beta` and the statistics have `[C]`.
    BatchNorm {
        /// Input, normalised over its first per-sample axis.
        x: NodeId,
        /// Trainable scale, `[C]`.
        gamma: NodeId,
        /// Trainable shift, `[C]`.
        beta: NodeId,
        /// Non-trainable moving mean, `[C]`.
        moving_mean: NodeId,
        /// Non-trainable moving variance, `[C]`.
        moving_var: NodeId,
        /// Weight of the old moving statistics in each update (Keras' `momentum`).
        momentum: f32,
        /// Added to the variance before its square root.
        epsilon: f32,
        /// Activation applied after the normalization.
        act: Activation,
        /// Frozen (γ and β non-trainable, Keras' `trainable = False`): the moving
        /// statistics normalise in training too and stay unchanged, as Keras runs a
        /// frozen layer in inference mode; only the input gets a gradient.
        frozen: bool,
    },
    /// Inverted dropout of a fraction `rate` of the units while training (mask
    /// drawn from `seed` and the pass (draw) number, see `kernels::dropout`); the
    /// identity when evaluating.
    Dropout {
        /// Input.
        x: NodeId,
        /// Fraction of units dropped, in [0, 1).
        rate: f32,
        /// Mask seed (see [`Graph::seed_random`]).
        seed: u32,
    },
    /// `a + b`, elementwise over equal shapes.
    Add {
        /// First operand.
        a: NodeId,
        /// Second operand.
        b: NodeId,
    },
    /// `a · b`, elementwise over equal shapes.
    Mul {
        /// First operand.
        a: NodeId,
        /// Second operand.
        b: NodeId,
    },
    /// `exp(scale · x)` elementwise (`scale` ½ turns a log-variance into a deviation).
    Exp {
        /// Input.
        x: NodeId,
        /// Factor applied before the exponential.
        scale: f32,
    },
    /// `factor · x` elementwise (a low-rank adapter's `alpha / r`, see `nn::lora`).
    Scale {
        /// Input.
        x: NodeId,
        /// The factor (finite).
        factor: f32,
    },
    /// `ln(x)` elementwise.
    Log {
        /// Input (positive).
        x: NodeId,
    },
    /// An activation `x·g(x)` elementwise, its gate `g` smooth: GELU (the
    /// exact `x·Φ(x)`, Φ the standard normal CDF, or its tanh approximation) or
    /// SiLU (`x·σ(x)`); its backward reads `x`, not the output (neither is
    /// monotonic).
    GatedUnit {
        /// Input.
        x: NodeId,
        /// Which activation.
        form: GatedUnit,
    },
    /// `x²` elementwise.
    Square {
        /// Input.
        x: NodeId,
    },
    /// The sum of each sample's values (their mean with `mean`): `[1]` per sample.
    Sum {
        /// Input.
        x: NodeId,
        /// Divide by the number of values per sample.
        mean: bool,
    },
    /// Values of `dist` for every sample, drawn anew every step (training and
    /// evaluating) from `seed` and the pass (draw) number, like dropout's masks; no inputs.
    Noise {
        /// The distribution drawn from.
        dist: crate::kernels::noise::Distribution,
        /// Stream seed (see [`Graph::seed_random`]).
        seed: u32,
    },
    /// The inputs side by side along the first per-sample axis (the other axes agree).
    Concat {
        /// The inputs, in order.
        xs: Vec<NodeId>,
    },
    /// Entries `start..start + len` of the input's first per-sample axis.
    Slice {
        /// Input.
        x: NodeId,
        /// First entry kept.
        start: usize,
        /// Entries kept.
        len: usize,
    },
    /// Normalization of each sample's last axis: `(x − mean)/√(var + ε)·γ + β`
    /// (Keras' `LayerNormalization`, PyTorch's `nn.LayerNorm`).
    LayerNorm {
        /// Input, normalised over its last per-sample axis.
        x: NodeId,
        /// Trainable scale, the last axis' length.
        gamma: NodeId,
        /// Trainable shift, the last axis' length.
        beta: NodeId,
        /// Added to the variance before its square root.
        epsilon: f32,
    },
    /// RMS normalization of each sample's last axis, the uncentred
    /// [`Op::LayerNorm`]: `x/√(mean(x²) + ε)·γ` (Keras' `RMSNormalization`,
    /// PyTorch's `nn.RMSNorm`, Llama's `LlamaRMSNorm`); with a `γ` shorter than
    /// the axis, of each group of its length in the axis (Qwen3's heads).
    RmsNorm {
        /// Input, normalised over its last per-sample axis.
        x: NodeId,
        /// Trainable scale, the last axis' length.
        gamma: NodeId,
        /// Added to the mean square before its square root.
        epsilon: f32,
    },
    /// Rotary position embedding of a sequence `[T, heads·d]` of queries or keys
    /// (see `graph::ops::rotary`): each head's halves rotated by its token's
    /// angles, position × `frequencies[j]` for pair `j < d/2`.
    Rotary {
        /// Input.
        x: NodeId,
        /// Heads per token.
        heads: usize,
        /// One per pair of a head's values.
        frequencies: Vec<f32>,
        /// Factor of the cosines and sines (YaRN's attention factor; 1 otherwise).
        scale: f32,
    },
    /// Each head of a sequence `[T, H·head_dim]` repeated `times` times in a row:
    /// `[T, H·times·head_dim]` (grouped-query attention's keys and values).
    RepeatHeads {
        /// Input.
        x: NodeId,
        /// Values per head.
        head_dim: usize,
        /// Copies of each head.
        times: usize,
    },
    /// Scaled dot-product attention over `heads` heads (see `graph::ops::attention`):
    /// `q` `[Tq, H·dk]`, `k` `[Tk, H·dk]`, `v` `[Tk, H·dv]` → `[Tq, H·dv]`.
    Attention {
        /// Queries.
        q: NodeId,
        /// Keys.
        k: NodeId,
        /// Values.
        v: NodeId,
        /// Number of heads.
        heads: usize,
        /// Query `i` sees keys `j ≤ i` only.
        causal: bool,
        /// Fraction of the weights dropped while training, in `[0, 1)` (0: none).
        dropout: f32,
        /// The dropout mask seed (see [`Graph::seed_random`]).
        seed: u32,
        /// Each sample's key count (an [`Op::SequenceLengths`]): keys from it on are
        /// padding, seen by no query; `None`: every key is seen.
        lengths: Option<NodeId>,
    },
    /// A sequence `[T, F]` read down to `[F]`: the mean of its tokens (Keras'
    /// GlobalAveragePooling1D) or its last token, over the first `lengths` tokens
    /// when the sequence is padded.
    SequencePool {
        /// Input, `[tokens, features]` per sample.
        x: NodeId,
        /// Mean or last.
        pool: crate::kernels::sequence::SequencePool,
        /// Each sample's real token count (an [`Op::SequenceLengths`]), if padded.
        lengths: Option<NodeId>,
    },
    /// A padded sequence's positions as the classes of `[R, T]` per sample
    /// (`x`, a `[T, R]` sequence turned): each row's scores at the padding
    /// replaced by a score a softmax gives nothing
    /// ([`crate::kernels::sequence::MASKED_SCORE`]), so that a question
    /// answerer's start and end softmaxes run over the real tokens, as Hugging
    /// Face's pipeline masks them. Their gradient is 0 there.
    MaskPositions {
        /// Input, `[rows, positions]` per sample.
        x: NodeId,
        /// Each sample's real positions (an [`Op::SequenceLengths`]).
        lengths: NodeId,
    },
    /// Each sample's unpadded length `[1]`: 1 + the last token of `ids` (`[T]`) whose
    /// id is not `pad` (see `kernels::sequence`). No gradient.
    SequenceLengths {
        /// Token ids, `[T]` per sample.
        ids: NodeId,
        /// The padding id.
        pad: u32,
    },
    /// Each token's type (BERT's segment, `[T]` per sample, f32) from the token ids
    /// `ids` (`[T]`): the number of `separator` ids before it, at most `types − 1`
    /// (see `kernels::sequence`). No gradient. With `lengths`, the types are a
    /// padded sequence of the ids' padding.
    TokenTypes {
        /// Token ids, `[T]` per sample.
        ids: NodeId,
        /// The id that ends a segment (BERT's `[SEP]`).
        separator: u32,
        /// The number of token types (at least 1).
        types: u32,
        /// The ids' lengths (an [`Op::SequenceLengths`]) when they are padded.
        lengths: Option<NodeId>,
    },
    /// Rows of the `[vocab, dim]` parameter `table` picked by the token ids in `ids`
    /// (f32 values; ids carry no gradient).
    Embedding {
        /// Token ids, any per-sample shape.
        ids: NodeId,
        /// The table, `[vocab, dim]`.
        table: NodeId,
        /// The ids' lengths when the Embedding masks padding (Keras' `mask_zero`):
        /// the sequence it makes, and what is computed from it token by token, is
        /// padded past them (see [`Graph::lengths_of`]).
        lengths: Option<NodeId>,
    },
    /// The per-sample axes reordered: output axis `k` is input axis `perm[k]`
    /// (Keras' `Permute`, 0-based).
    Permute {
        /// Input.
        x: NodeId,
        /// A permutation of `0..rank`.
        perm: Vec<usize>,
    },
    /// `x + p` for every sample, `p` a parameter of the sample's shape (a learned
    /// position embedding).
    AddBroadcast {
        /// Input.
        x: NodeId,
        /// The parameter added.
        p: NodeId,
    },
    /// `value` in every element (targets of loss terms); no inputs, no gradient.
    Constant {
        /// The value.
        value: f32,
    },
    /// A per-sample loss term `[1]` of `a` and `b` computed inside the graph (see
    /// [`crate::kernels::loss::Term`]); trained as part of an [`Objective::Terms`].
    LossTerm {
        /// What it computes.
        term: crate::kernels::loss::Term,
        /// The mean (KL) or the logits (BCE).
        a: NodeId,
        /// The log-variance (KL) or the targets (BCE; they take no gradient).
        b: NodeId,
    },
}

/// What a graph is trained to minimise.
#[derive(Clone, Debug, PartialEq)]
pub enum Objective {
    /// `loss` of the `output` node against the targets fed with each batch.
    Supervised {
        /// The node the loss reads (the logits when the final activation is folded in).
        output: NodeId,
        /// The loss.
        loss: Loss,
        /// Per-class weights of the training loss (Keras' `fit(class_weight=...)`):
        /// one per class for sparse categorical cross-entropy, `[w0, w1]` for a binary
        /// cross-entropy of one output; evaluation is unweighted. `None`: all 1.
        class_weights: Option<Vec<f32>>,
    },
    /// The weighted sum of loss terms the graph computes itself from the batch
    /// (`Op::LossTerm` nodes, `[1]` per sample), averaged over the batch: a
    /// variational autoencoder's reconstruction and KL divergence.
    Terms(Vec<WeightedTerm>),
    /// No loss: plans evaluate these nodes only (a VAE's decoder run on latent
    /// points); training plans are refused.
    Forward(Vec<NodeId>),
}

/// One term of an [`Objective::Terms`].
#[derive(Clone, Debug, PartialEq)]
pub struct WeightedTerm {
    /// Its name in reports (e.g. `reconstruction`, `kl`).
    pub name: String,
    /// The node computing it, `[1]` per sample.
    pub node: NodeId,
    /// Its weight in the sum; 0 for a term only reported (a GAN's D(real)), which
    /// then takes no part in the gradient.
    pub weight: f32,
}

impl Objective {
    /// The nodes the gradient starts from: the output, or every term.
    pub fn roots(&self) -> Vec<NodeId> {
        match self {
            Objective::Supervised { output, .. } => vec![*output],
            Objective::Terms(terms) => terms.iter().filter(|t| t.weight != 0.0).map(|t| t.node).collect(),
            Objective::Forward(outputs) => outputs.clone(),
        }
    }

    /// The last node the objective needs computed.
    pub fn last_node(&self) -> NodeId {
        let reported = match self {
            Objective::Terms(terms) => terms.iter().map(|t| t.node).max(),
            _ => None,
        };
        self.roots().into_iter().chain(reported).max().unwrap_or(0)
    }
}

/// A node: its op, its per-sample shape (parameters: full shape), and the name of
/// the layer that made it (for messages).
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// The operation.
    pub op: Op,
    /// Per-sample shape (parameters: full shape).
    pub shape: Vec<usize>,
    /// Name of the layer that made it, for messages.
    pub layer: String,
}

impl Node {
    /// True for values with a batch dimension (everything but parameters).
    pub fn batched(&self) -> bool {
        !matches!(self.op, Op::Param { .. })
    }
}

/// A graph of ops with static shapes, built in topological order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Graph {
    /// The nodes, indexed by [`NodeId`], inputs before their consumers.
    pub nodes: Vec<Node>,
}

pub(crate) fn shape_err(layer: &str, message: String) -> Error {
    Error::Shape {
        op: "model",
        message: format!("layer '{layer}': {message}"),
    }
}

impl Graph {
    /// An empty graph.
    pub fn new() -> Graph {
        Graph::default()
    }

    pub(crate) fn push(&mut self, op: Op, shape: Vec<usize>, layer: &str) -> NodeId {
        self.nodes.push(Node {
            op,
            shape,
            layer: layer.to_string(),
        });
        self.nodes.len() - 1
    }

    /// The shape of node `id` (per sample; parameters: full shape).
    pub fn shape(&self, id: NodeId) -> &[usize] {
        &self.nodes[id].shape
    }

    /// The batch input with per-sample shape `shape`.
    pub fn input(&mut self, shape: &[usize]) -> Result<NodeId> {
        if shape.is_empty() || shape.contains(&0) {
            return Err(shape_err(
                "input",
                format!("input shape {shape:?} must be non-empty with no zero"),
            ));
        }
        Ok(self.push(Op::Input, shape.to_vec(), "input"))
    }

    /// A trainable parameter of `shape`.
    pub fn param(&mut self, name: &str, shape: &[usize], init: Init, layer: &str) -> NodeId {
        self.push(
            Op::Param {
                name: name.to_string(),
                init,
                trainable: true,
            },
            shape.to_vec(),
            layer,
        )
    }

    /// The parameter (or state) node named `name` (a full checkpoint name, such as
    /// `wte.weight`), if the graph has one.
    pub fn param_named(&self, name: &str) -> Option<NodeId> {
        self.nodes
            .iter()
            .position(|n| matches!(&n.op, Op::Param { name: own, .. } if own == name))
    }

    /// Whether node `id` is a batch normalization's moving mean or variance: state
    /// the forward pass updates, not a weight.
    pub fn is_moving_statistic(&self, id: NodeId) -> bool {
        self.nodes.iter().any(|n| {
            matches!(n.op, Op::BatchNorm { moving_mean, moving_var, .. } if moving_mean == id || moving_var == id)
        })
    }

    /// A parameter of `shape` that training leaves as it is (a frozen layer's: no
    /// gradient flows into it, no optimizer state, no update).
    pub fn frozen_param(&mut self, name: &str, shape: &[usize], init: Init, layer: &str) -> NodeId {
        self.state(name, shape, init, layer)
    }

    /// A non-trainable parameter of `shape` (state the forward pass updates).
    pub fn state(&mut self, name: &str, shape: &[usize], init: Init, layer: &str) -> NodeId {
        self.push(
            Op::Param {
                name: name.to_string(),
                init,
                trainable: false,
            },
            shape.to_vec(),
            layer,
        )
    }

    /// Inputs of a node.
    pub fn inputs(&self, id: NodeId) -> Vec<NodeId> {
        match &self.nodes[id].op {
            Op::Input | Op::Param { .. } => vec![],
            Op::Dense { x, w, b, .. } | Op::Conv2d { x, w, b, .. } | Op::Conv2dTranspose { x, w, b, .. } => {
                [*x, *w].into_iter().chain(*b).collect()
            }
            Op::BatchNorm {
                x,
                gamma,
                beta,
                moving_mean,
                moving_var,
                ..
            } => vec![*x, *gamma, *beta, *moving_mean, *moving_var],
            Op::MaxPool2d { x, .. }
            | Op::AvgPool2d { x, .. }
            | Op::Reshape { x }
            | Op::Act { x, .. }
            | Op::Dropout { x, .. }
            | Op::Exp { x, .. }
            | Op::Log { x }
            | Op::Scale { x, .. }
            | Op::GatedUnit { x, .. }
            | Op::Square { x }
            | Op::Sum { x, .. }
            | Op::Slice { x, .. }
            | Op::SequenceLengths { ids: x, .. }
            | Op::TokenTypes { ids: x, .. }
            | Op::Permute { x, .. }
            | Op::Rotary { x, .. }
            | Op::RepeatHeads { x, .. } => vec![*x],
            Op::SequencePool { x, lengths, .. } => std::iter::once(*x).chain(*lengths).collect(),
            Op::MaskPositions { x, lengths } => vec![*x, *lengths],
            Op::LayerNorm { x, gamma, beta, .. } => vec![*x, *gamma, *beta],
            Op::RmsNorm { x, gamma, .. } => vec![*x, *gamma],
            Op::Attention { q, k, v, lengths, .. } => [*q, *k, *v].into_iter().chain(*lengths).collect(),
            Op::AddBroadcast { x, p } => vec![*x, *p],
            Op::Embedding { ids, table, .. } => vec![*ids, *table],
            Op::Concat { xs } => xs.clone(),
            Op::Add { a, b } | Op::Mul { a, b } | Op::LossTerm { a, b, .. } => vec![*a, *b],
            Op::Noise { .. } | Op::Constant { .. } => vec![],
        }
    }
}
