//! The graph executor.
//!
//! - [`Graph`]: ops with static per-sample shapes, inferred when a node is added
//!   (a mismatch is an error naming the layer and both shapes).
//! - [`autodiff`]: which nodes need gradients and in what order the backward rules run.
//! - [`plan`]: lowers forward, loss, backward and optimizer update for one batch size
//!   to prepared dispatches, allocating every buffer and bind group once.
//! - [`params`]: parameters, their gradients and optimizer state, resident on the GPU.

pub mod autodiff;
mod loss;
pub mod params;
pub mod plan;
pub mod reference;

pub use loss::Loss;

use crate::error::{Error, Result};
use crate::kernels::batchnorm::BatchNormDesc;
use crate::kernels::conv::{Conv2dDesc, Padding};
use crate::kernels::matmul::Activation;
use crate::kernels::pool::Pool2dDesc;

pub use params::{Param, ParamStore};
pub use plan::{ClipNorm, Plan, PlanOptions};

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
    /// drawn from `seed` and the step number, see `kernels::dropout`); the
    /// identity when evaluating.
    Dropout {
        /// Input.
        x: NodeId,
        /// Fraction of units dropped, in [0, 1).
        rate: f32,
        /// Mask seed (see [`Graph::seed_dropout`]).
        seed: u32,
    },
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

fn shape_err(layer: &str, message: String) -> Error {
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

    fn push(&mut self, op: Op, shape: Vec<usize>, layer: &str) -> NodeId {
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

    /// Batch normalization of `x` over its first per-sample axis, then `act` (see
    /// [`Op::BatchNorm`]); `gamma`, `beta`, `moving_mean` and `moving_var` must be
    /// `[C]` parameters, the statistics non-trainable, γ and β both trainable or both
    /// frozen (then the layer is frozen: inference mode while training too).
    #[allow(clippy::too_many_arguments)]
    pub fn batch_norm(
        &mut self,
        x: NodeId,
        gamma: NodeId,
        beta: NodeId,
        moving_mean: NodeId,
        moving_var: NodeId,
        momentum: f32,
        epsilon: f32,
        act: Activation,
        layer: &str,
    ) -> Result<NodeId> {
        let xs = self.shape(x).to_vec();
        let desc = batch_norm_desc(1, &xs, momentum, epsilon, act);
        desc.validate()
            .map_err(|e| Error::invalid(format!("layer '{layer}': {e}")))?;
        let c = desc.c;
        let used = autodiff::consumers(self);
        let frozen = matches!(self.nodes[gamma].op, Op::Param { trainable: false, .. });
        for (what, id, trainable) in [
            ("gamma", gamma, !frozen),
            ("beta", beta, !frozen),
            ("moving mean", moving_mean, false),
            ("moving variance", moving_var, false),
        ] {
            // A batch normalization owns its parameters: shared moving statistics
            // would be moved twice a step.
            if used[id] > 0 {
                return Err(shape_err(
                    layer,
                    format!(
                        "the {what} is already used by another op; each batch normalization needs its own"
                    ),
                ));
            }
            let fits = matches!(self.nodes[id].op, Op::Param { trainable: t, .. } if t == trainable);
            if !fits || self.shape(id) != [c] {
                return Err(shape_err(
                    layer,
                    format!(
                        "the {what} must be a {}parameter of [{c}] for an input of {xs:?}, got {:?}",
                        if trainable {
                            ""
                        } else {
                            "non-trainable (or frozen) "
                        },
                        self.shape(id)
                    ),
                ));
            }
        }
        Ok(self.push(
            Op::BatchNorm {
                x,
                gamma,
                beta,
                moving_mean,
                moving_var,
                momentum,
                epsilon,
                act,
                frozen,
            },
            xs,
            layer,
        ))
    }

    /// Dense layer on `x` (per-sample shape `[in]`).
    pub fn dense(
        &mut self,
        x: NodeId,
        w: NodeId,
        b: Option<NodeId>,
        act: Activation,
        layer: &str,
    ) -> Result<NodeId> {
        let xs = self.shape(x).to_vec();
        let ws = self.shape(w).to_vec();
        if xs.len() != 1 {
            return Err(shape_err(
                layer,
                format!(
                    "Dense expects a flat input [features], got per-sample shape {xs:?}; add Flatten first"
                ),
            ));
        }
        let bias_fits = b.is_none_or(|b| ws.len() == 2 && self.shape(b) == [ws[0]]);
        if ws.len() != 2 || ws[1] != xs[0] || !bias_fits {
            return Err(shape_err(
                layer,
                format!(
                    "input has {} features but the weight is {ws:?} and the bias {:?}",
                    xs[0],
                    b.map(|b| self.shape(b))
                ),
            ));
        }
        Ok(self.push(Op::Dense { x, w, b, act }, vec![ws[0]], layer))
    }

    /// Conv2D layer on `x` (per-sample shape `[C, H, W]`).
    #[allow(clippy::too_many_arguments)]
    pub fn conv2d(
        &mut self,
        x: NodeId,
        w: NodeId,
        b: Option<NodeId>,
        stride: (usize, usize),
        padding: Padding,
        act: Activation,
        layer: &str,
    ) -> Result<NodeId> {
        let xs = self.shape(x).to_vec();
        let ws = self.shape(w).to_vec();
        if xs.len() != 3 {
            return Err(shape_err(
                layer,
                format!("Conv2D expects [channels, height, width] per sample, got {xs:?}"),
            ));
        }
        let bias_fits = b.is_none_or(|b| ws.len() == 4 && self.shape(b) == [ws[0]]);
        if ws.len() != 4 || ws[1] != xs[0] || !bias_fits {
            return Err(shape_err(
                layer,
                format!("input has {} channels but the weight is {ws:?}", xs[0]),
            ));
        }
        let desc = Conv2dDesc {
            n: 1,
            c_in: xs[0],
            h: xs[1],
            w: xs[2],
            c_out: ws[0],
            kh: ws[2],
            kw: ws[3],
            stride,
            padding,
        };
        let (oh, ow) = desc
            .out_hw()
            .map_err(|e| shape_err(layer, format!("input {xs:?}, weight {ws:?}: {e}")))?;
        Ok(self.push(
            Op::Conv2d {
                x,
                w,
                b,
                stride,
                padding,
                act,
            },
            vec![ws[0], oh, ow],
            layer,
        ))
    }

    fn pool_out(&self, x: NodeId, window: Window, layer: &str) -> Result<Vec<usize>> {
        let xs = self.shape(x).to_vec();
        if xs.len() != 3 {
            return Err(shape_err(
                layer,
                format!("pooling expects [channels, height, width] per sample, got {xs:?}"),
            ));
        }
        let desc = pool_desc(1, &xs, window).map_err(|e| shape_err(layer, e.to_string()))?;
        let (oh, ow) = desc
            .out_hw()
            .map_err(|e| shape_err(layer, format!("input {xs:?}: {e}")))?;
        Ok(vec![xs[0], oh, ow])
    }

    /// Max pooling of `x` (per-sample shape `[C, H, W]`) over `window`.
    pub fn max_pool2d(&mut self, x: NodeId, window: Window, layer: &str) -> Result<NodeId> {
        let shape = self.pool_out(x, window, layer)?;
        Ok(self.push(Op::MaxPool2d { x, window }, shape, layer))
    }

    /// Average pooling of `x` (per-sample shape `[C, H, W]`) over `window`.
    pub fn avg_pool2d(&mut self, x: NodeId, window: Window, layer: &str) -> Result<NodeId> {
        let shape = self.pool_out(x, window, layer)?;
        Ok(self.push(Op::AvgPool2d { x, window }, shape, layer))
    }

    /// Flatten to `[features]`.
    pub fn flatten(&mut self, x: NodeId, layer: &str) -> NodeId {
        let n = self.shape(x).iter().product();
        self.push(Op::Reshape { x }, vec![n], layer)
    }

    /// Elementwise activation `act` of `x`.
    pub fn activation(&mut self, x: NodeId, act: Activation, layer: &str) -> NodeId {
        let shape = self.shape(x).to_vec();
        self.push(Op::Act { x, act }, shape, layer)
    }

    /// Dropout of a fraction `rate` (in [0, 1)) of `x`'s units while training.
    /// Its mask seed derives from seed 0 and the node's position until a model is
    /// compiled ([`Graph::seed_dropout`] with the model's seed).
    pub fn dropout(&mut self, x: NodeId, rate: f32, layer: &str) -> Result<NodeId> {
        crate::kernels::dropout::DropoutRate::new(rate)
            .map_err(|e| Error::invalid(format!("layer '{layer}': {e}")))?;
        let shape = self.shape(x).to_vec();
        let seed = crate::kernels::dropout::layer_seed(0, self.nodes.len());
        Ok(self.push(Op::Dropout { x, rate, seed }, shape, layer))
    }

    /// Gives every dropout node its own mask seed, derived from `seed` and the
    /// node's position.
    pub fn seed_dropout(&mut self, seed: u64) {
        for (id, node) in self.nodes.iter_mut().enumerate() {
            if let Op::Dropout { seed: s, .. } = &mut node.op {
                *s = crate::kernels::dropout::layer_seed(seed, id);
            }
        }
    }

    /// Inputs of a node.
    pub fn inputs(&self, id: NodeId) -> Vec<NodeId> {
        match &self.nodes[id].op {
            Op::Input | Op::Param { .. } => vec![],
            Op::Dense { x, w, b, .. } | Op::Conv2d { x, w, b, .. } => {
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
            | Op::Dropout { x, .. } => vec![*x],
        }
    }
}

/// A batch normalization's view of a per-sample shape: `(channels, values per
/// channel per sample)`, the first axis against the product of the rest.
pub fn batch_norm_view(shape: &[usize]) -> (usize, usize) {
    match shape.split_first() {
        Some((&c, rest)) => (c, rest.iter().product()),
        None => (0, 0),
    }
}

/// The kernel view of a batch normalization of per-sample shape `xs` over a
/// batch of `batch`, followed by `act`.
pub fn batch_norm_desc(
    batch: usize,
    xs: &[usize],
    momentum: f32,
    epsilon: f32,
    act: Activation,
) -> BatchNormDesc {
    let (c, s) = batch_norm_view(xs);
    BatchNormDesc {
        n: batch,
        c,
        s,
        momentum,
        epsilon,
        activation: act,
    }
}

/// Pooling geometry for a batch of `n` samples of per-sample shape `[C, H, W]`.
/// 'same' padding is only offered for convolutions; pooling takes explicit padding.
pub fn pool_desc(n: usize, xs: &[usize], window: Window) -> Result<Pool2dDesc> {
    let padding = match window.padding {
        Padding::Valid => (0, 0),
        Padding::Explicit(ph, pw) => (ph, pw),
        Padding::Same => {
            return Err(Error::invalid(
                "pooling supports 'valid' or explicit padding, not 'same'",
            ));
        }
    };
    Ok(Pool2dDesc {
        n,
        c: xs[0],
        h: xs[1],
        w: xs[2],
        kh: window.kernel.0,
        kw: window.kernel.1,
        stride: window.stride,
        padding,
    })
}
