//! How each Keras-style layer adds its nodes to a `Sequential`'s graph: its
//! parameters (named as the equivalent PyTorch `nn.Sequential`'s `state_dict`, where
//! every non-linear activation is a module of its own, so Conv2D(relu) is module `0`
//! and its ReLU `1`), its op, and the checks that name the layer. One function per
//! layer kind; [`Layer::add_to`] picks it.

use crate::error::{Error, Result};
use crate::graph::{Graph, Init, NodeId, Window};
use crate::kernels::conv::Padding;
use crate::kernels::matmul::Activation;
use crate::nn::{Layer, LayerActivation, Loss};

/// One layer being added to a `Sequential`'s graph.
pub(crate) struct LayerBuild<'a> {
    /// The graph so far.
    pub g: &'a mut Graph,
    /// The previous layer's output.
    pub x: NodeId,
    /// The layer's number from 1 (its name is `"<kind> #<number>"`).
    pub number: usize,
    /// PyTorch's module index of the layer's first module (its tensors' prefix).
    pub index: usize,
    /// How many layers the model has.
    pub count: usize,
    /// The loss the model trains with (a final softmax or sigmoid folds into it).
    pub loss: Loss,
    /// The next layer, if any (an Activation after a batch normalization folds in).
    pub next: Option<&'a Layer>,
}

/// What adding a layer did.
pub(crate) struct Added {
    /// The layer's output node.
    pub x: NodeId,
    /// PyTorch modules it takes (2 for a layer with a non-linear activation).
    pub modules: usize,
    /// Whether it ran the next layer (an Activation) inside its own node.
    pub folds_next: bool,
}

impl LayerBuild<'_> {
    fn name_of(&self, layer: &Layer, number: usize) -> String {
        format!("{} #{number}", layer.kind())
    }

    /// The kernel activation of `a` in layer `number` (a final softmax or sigmoid
    /// is folded into the loss; softmax elsewhere is refused).
    fn kernel_activation(&self, a: LayerActivation, name: &str, number: usize) -> Result<Activation> {
        let last = number == self.count;
        match (a, last, self.loss) {
            (LayerActivation::Softmax, true, Loss::SparseCategoricalCrossentropy) => Ok(Activation::Identity),
            (LayerActivation::Sigmoid, true, Loss::BinaryCrossentropy) => Ok(Activation::Identity),
            (LayerActivation::Softmax, _, _) => Err(Error::invalid(format!(
                "layer '{name}': softmax is supported only as the last layer's activation with \
                 sparse categorical cross-entropy"
            ))),
            (a, _, _) => Ok(a.kernel().expect("not softmax")),
        }
    }

    /// A parameter of the layer, trainable or frozen.
    fn param(&mut self, suffix: &str, shape: &[usize], init: Init, trainable: bool, name: &str) -> NodeId {
        let full = format!("{}.{suffix}", self.index);
        if trainable {
            self.g.param(&full, shape, init, name)
        } else {
            self.g.frozen_param(&full, shape, init, name)
        }
    }
}

/// PyTorch modules of a layer with activation `a`.
fn modules(a: LayerActivation) -> usize {
    1 + usize::from(a != LayerActivation::Linear)
}

fn one(x: NodeId) -> Added {
    Added {
        x,
        modules: 1,
        folds_next: false,
    }
}

impl Layer {
    /// Adds the layer's parameters and nodes after `b.x`.
    pub(crate) fn add_to(&self, b: &mut LayerBuild<'_>) -> Result<Added> {
        let name = b.name_of(self, b.number);
        match self {
            Layer::Dense {
                units,
                activation,
                use_bias,
                trainable,
            } => dense(b, &name, *units, *activation, *use_bias, *trainable),
            Layer::Conv2D {
                filters,
                kernel,
                stride,
                padding,
                activation,
                use_bias,
                trainable,
            } => conv2d(
                b,
                &name,
                (*filters, *kernel, *stride, *padding),
                *activation,
                *use_bias,
                *trainable,
            ),
            Layer::MaxPool2D { pool, stride } | Layer::AvgPool2D { pool, stride } => {
                let window = Window {
                    kernel: *pool,
                    stride: *stride,
                    padding: Padding::Valid,
                };
                let x = if matches!(self, Layer::MaxPool2D { .. }) {
                    b.g.max_pool2d(b.x, window, &name)?
                } else {
                    b.g.avg_pool2d(b.x, window, &name)?
                };
                Ok(one(x))
            }
            Layer::Flatten => Ok(one(b.g.flatten(b.x, &name))),
            Layer::GlobalAveragePooling2D => global_average_pooling(b, &name),
            Layer::BatchNormalization {
                momentum,
                epsilon,
                trainable,
            } => batch_normalization(b, &name, *momentum, *epsilon, *trainable),
            // nn.Dropout is a module of its own (no parameters).
            Layer::Dropout { rate } => Ok(one(b.g.dropout(b.x, *rate, &name)?)),
            Layer::Activation(a) => {
                let act = b.kernel_activation(*a, &name, b.number)?;
                let x = if act == Activation::Identity {
                    b.x
                } else {
                    b.g.activation(b.x, act, &name)
                };
                Ok(one(x))
            }
        }
    }
}

fn dense(
    b: &mut LayerBuild<'_>,
    name: &str,
    units: usize,
    activation: LayerActivation,
    use_bias: bool,
    trainable: bool,
) -> Result<Added> {
    let fan_in = b.g.shape(b.x).iter().product::<usize>();
    if units == 0 {
        return Err(Error::invalid(format!(
            "layer '{name}': Dense needs at least 1 unit"
        )));
    }
    let init = Init::GlorotUniform {
        fan_in,
        fan_out: units,
    };
    let w = b.param("weight", &[units, fan_in], init, trainable, name);
    let bias = use_bias.then(|| b.param("bias", &[units], Init::Zeros, trainable, name));
    let act = b.kernel_activation(activation, name, b.number)?;
    Ok(Added {
        x: b.g.dense(b.x, w, bias, act, name)?,
        modules: modules(activation),
        folds_next: false,
    })
}

fn conv2d(
    b: &mut LayerBuild<'_>,
    name: &str,
    (filters, kernel, stride, padding): (usize, (usize, usize), (usize, usize), Padding),
    activation: LayerActivation,
    use_bias: bool,
    trainable: bool,
) -> Result<Added> {
    let xs = b.g.shape(b.x).to_vec();
    if xs.len() != 3 {
        return Err(Error::shape(
            "model",
            format!("layer '{name}': Conv2D expects [channels, height, width] per sample, got {xs:?}"),
        ));
    }
    if filters == 0 || kernel.0 == 0 || kernel.1 == 0 {
        return Err(Error::invalid(format!(
            "layer '{name}': filters and kernel size must be at least 1"
        )));
    }
    let area = kernel.0 * kernel.1;
    let init = Init::GlorotUniform {
        fan_in: xs[0] * area,
        fan_out: filters * area,
    };
    let w = b.param(
        "weight",
        &[filters, xs[0], kernel.0, kernel.1],
        init,
        trainable,
        name,
    );
    let bias = use_bias.then(|| b.param("bias", &[filters], Init::Zeros, trainable, name));
    let act = b.kernel_activation(activation, name, b.number)?;
    Ok(Added {
        x: b.g.conv2d(b.x, w, bias, stride, padding, act, name)?,
        modules: modules(activation),
        folds_next: false,
    })
}

/// One average-pooling window over the whole plane, then `[C, 1, 1]` as `[C]`; two
/// PyTorch modules (`AdaptiveAvgPool2d(1)`, `Flatten`).
fn global_average_pooling(b: &mut LayerBuild<'_>, name: &str) -> Result<Added> {
    let xs = b.g.shape(b.x).to_vec();
    if xs.len() != 3 {
        return Err(Error::shape(
            "model",
            format!(
                "layer '{name}': GlobalAveragePooling2D expects [channels, height, width] per sample, got {xs:?}"
            ),
        ));
    }
    let window = Window {
        kernel: (xs[1], xs[2]),
        stride: (xs[1], xs[2]),
        padding: Padding::Valid,
    };
    let pooled = b.g.avg_pool2d(b.x, window, name)?;
    Ok(Added {
        x: b.g.flatten(pooled, name),
        modules: 2,
        folds_next: false,
    })
}

/// nn.BatchNorm1d/2d's tensors; frozen, γ and β are constants and the layer runs in
/// inference mode (Keras'). An Activation layer right after runs inside the
/// normalization's kernels (one pass over the data instead of two): it keeps its
/// own module index and makes no node of its own.
fn batch_normalization(
    b: &mut LayerBuild<'_>,
    name: &str,
    momentum: f32,
    epsilon: f32,
    trainable: bool,
) -> Result<Added> {
    let (c, _) = crate::graph::batch_norm_view(b.g.shape(b.x));
    let gamma = b.param("weight", &[c], Init::Ones, trainable, name);
    let beta = b.param("bias", &[c], Init::Zeros, trainable, name);
    let index = b.index;
    let mean =
        b.g.state(&format!("{index}.running_mean"), &[c], Init::Zeros, name);
    let var = b.g.state(&format!("{index}.running_var"), &[c], Init::Ones, name);
    let (act, folds_next) = match b.next {
        Some(next @ Layer::Activation(a)) => {
            let next_name = b.name_of(next, b.number + 1);
            (b.kernel_activation(*a, &next_name, b.number + 1)?, true)
        }
        _ => (Activation::Identity, false),
    };
    Ok(Added {
        x: b.g
            .batch_norm(b.x, gamma, beta, mean, var, momentum, epsilon, act, name)?,
        modules: 1,
        folds_next,
    })
}
