//! How each Keras-style layer adds its nodes to a graph: its parameters (named
//! `<prefix>.<tensor>`: in a `Sequential`, the prefix is the equivalent PyTorch
//! `nn.Sequential`'s module index, where every non-linear activation is a module of
//! its own, so Conv2D(relu) is module `0` and its ReLU `1`; in a functional model,
//! the layer's name), its op, and the checks that name the layer. One function per
//! layer kind; [`Layer::add_to`] picks it.

use crate::error::{Error, Result};
use crate::graph::{Graph, Init, NodeId, Op, Window};
use crate::kernels::conv::Padding;
use crate::kernels::matmul::Activation;
use crate::kernels::sequence::SequencePool;
use crate::nn::lora::{LORA_A, LORA_B};
use crate::nn::{Layer, LayerActivation, LoraConfig, Loss, RopeScaling};

/// One layer being added to a graph.
pub(crate) struct LayerBuild<'a> {
    /// The graph so far.
    pub g: &'a mut Graph,
    /// The layer's input.
    pub x: NodeId,
    /// The layer's name in messages (`"Dense #3"`, or a functional layer's name).
    pub name: String,
    /// Its tensors' names' prefix (PyTorch's module index of the layer's first module
    /// in a `Sequential`, the layer's name in a functional model).
    pub prefix: String,
    /// Whether its output is the one the loss reads.
    pub last: bool,
    /// The loss reading the model's output, if the model has one (a final softmax
    /// or sigmoid folds into it); `None` for models trained on loss terms.
    pub loss: Option<Loss>,
    /// The next layer, its name and whether it is last, when it may fold into this
    /// one (an Activation after a batch normalization).
    pub next: Option<(&'a Layer, String, bool)>,
    /// A functional layer's inputs after the first (MultiHeadAttention's value and
    /// key); empty in a Sequential model.
    pub others: Vec<NodeId>,
    /// The layer's tensors that are earlier layers' (a functional layer's
    /// [`tied`](crate::nn::FunctionalLayer::tied)); empty in a Sequential model.
    pub tied: Vec<TiedTensor>,
    /// The model's low-rank adapters, if it has them: targeted Dense layers and
    /// projections get one, and only the adapters and the layers it trains in full
    /// keep trainable tensors.
    pub lora: Option<&'a LoraConfig>,
}

/// A tensor of the layer being added that is an earlier layer's parameter.
pub(crate) struct TiedTensor {
    /// The layer's own name for it (`weight`).
    pub tensor: String,
    /// The earlier parameter's node.
    pub node: NodeId,
    /// Whether the layer asked for it (a tie to a tensor the layer lacks is an error).
    pub used: bool,
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
    /// The kernel activation of `a` in layer `name`, `last` if its output is the one
    /// the loss reads (a final softmax or sigmoid is folded into the loss; softmax
    /// elsewhere is refused).
    fn kernel_activation(&self, a: LayerActivation, name: &str, last: bool) -> Result<Activation> {
        match (a, last, self.loss) {
            (LayerActivation::Softmax, true, Some(Loss::SparseCategoricalCrossentropy)) => {
                Ok(Activation::Identity)
            }
            (LayerActivation::Sigmoid, true, Some(Loss::BinaryCrossentropy)) => Ok(Activation::Identity),
            (LayerActivation::Softmax, _, _) => Err(Error::invalid(format!(
                "layer '{name}': softmax is supported only as the activation of the output the \
                 loss reads, with sparse categorical cross-entropy"
            ))),
            (a, _, _) => a.kernel().ok_or_else(|| {
                Error::invalid(format!(
                    "layer '{name}': {a:?} cannot run inside a kernel's epilogue"
                ))
            }),
        }
    }

    /// The kernel epilogue's activation of a layer applying `a` after its op
    /// (Identity for GELU and SiLU, which have no epilogue: their gradients need
    /// the input; [`LayerBuild::gated_unit_after`] adds their node).
    fn epilogue_activation(&self, a: LayerActivation, name: &str, last: bool) -> Result<Activation> {
        if a.gated_unit().is_some() {
            return Ok(Activation::Identity);
        }
        self.kernel_activation(a, name, last)
    }

    /// `x` through a GELU or SiLU node when `a` is one, else `x` (see
    /// [`LayerBuild::epilogue_activation`]).
    fn gated_unit_after(&mut self, x: NodeId, a: LayerActivation, name: &str) -> NodeId {
        match a.gated_unit() {
            Some(form) => self.g.gated_unit(x, form, name),
            None => x,
        }
    }

    /// `act(x·wᵀ + bias)` for the layer's module `module` (`PREFIX` or
    /// `PREFIX.part`), with the module's low-rank adapter added before the
    /// activation when the model's LoRA targets it (see [`crate::nn::lora`]).
    fn linear(
        &mut self,
        (x, w, bias): (NodeId, NodeId, Option<NodeId>),
        act: Activation,
        module: &str,
        name: &str,
    ) -> Result<NodeId> {
        let Some(lora) = self.lora.filter(|l| l.targets_module(module, self.last)) else {
            return self.g.dense(x, w, bias, act, name);
        };
        if self.g.nodes[w].layer != name {
            let Op::Param { name: tied, .. } = &self.g.nodes[w].op else {
                unreachable!("a Dense weight is a parameter")
            };
            return Err(Error::invalid(format!(
                "LoRA: layer '{name}' reads '{tied}', another layer's weight (tied); a low-rank \
                 adapter on it would have no weight of its own to merge into: leave '{module}' out \
                 of the targets"
            )));
        }
        let base = self.g.dense(x, w, bias, Activation::Identity, name)?;
        self.adapt(base, x, w, act, (lora, module, name), |g, x, a| {
            g.dense(x, a, None, Activation::Identity, name)
        })
    }

    /// `act(conv2d(x, w) + bias)` for the layer's module `module`, with the module's
    /// low-rank adapter when the model's LoRA targets it: as PEFT's, A is a
    /// convolution of `w`'s window, stride and padding to `r` channels, B a 1×1
    /// convolution back.
    fn convolution(
        &mut self,
        (x, w, bias): (NodeId, NodeId, Option<NodeId>),
        (stride, padding): ((usize, usize), Padding),
        act: Activation,
        module: &str,
        name: &str,
    ) -> Result<NodeId> {
        let Some(lora) = self.lora.filter(|l| l.names_module(module)) else {
            return self.g.conv2d(x, w, bias, stride, padding, act, name);
        };
        let base = self
            .g
            .conv2d(x, w, bias, stride, padding, Activation::Identity, name)?;
        self.adapt(base, x, w, act, (lora, module, name), |g, x, a| {
            g.conv2d(x, a, None, stride, padding, Activation::Identity, name)
        })
    }

    /// `act(base + (α/r)·B(A(dropout(x))))`: the adapter of module `module` on a
    /// product `base` of `x` and weight `w` (`[out, in...]`), `down` applying A
    /// (`[r, in...]`, PEFT's U(±1/√fan_in)) as the base applies `w`; B is `[out, r]`
    /// (a 1×1 convolution's `[out, r, 1, 1]` after one) and starts at zero.
    fn adapt(
        &mut self,
        base: NodeId,
        x: NodeId,
        w: NodeId,
        act: Activation,
        (lora, module, name): (&LoraConfig, &str, &str),
        down: impl FnOnce(&mut Graph, NodeId, NodeId) -> Result<NodeId>,
    ) -> Result<NodeId> {
        let ws = self.g.shape(w).to_vec();
        let fan_in: usize = ws[1..].iter().product();
        let rank = lora.rank_of(module);
        let a_shape: Vec<usize> = std::iter::once(rank).chain(ws[1..].iter().copied()).collect();
        let a = self.g.param(
            &format!("{module}.{LORA_A}"),
            &a_shape,
            Init::Uniform {
                limit: 1.0 / (fan_in as f32).sqrt(),
            },
            name,
        );
        let convolution = ws.len() == 4;
        let b_shape = if convolution {
            vec![ws[0], rank, 1, 1]
        } else {
            vec![ws[0], rank]
        };
        let b = self
            .g
            .param(&format!("{module}.{LORA_B}"), &b_shape, Init::Zeros, name);
        // One layer's adapters on one input share its dropout mask, as PEFT's one
        // c_attn adapter draws one for the query, key and value.
        let shared = self
            .g
            .nodes
            .iter()
            .position(|n| n.layer == name && matches!(n.op, Op::Dropout { x: input, .. } if input == x));
        let x = match shared {
            _ if lora.dropout == 0.0 => x,
            Some(dropped) => dropped,
            None => self.g.dropout(x, lora.dropout, name)?,
        };
        let low = down(self.g, x, a)?;
        let low = self.g.scale(low, lora.scaling_of(module), name)?;
        let up = if convolution {
            self.g
                .conv2d(low, b, None, (1, 1), Padding::Valid, Activation::Identity, name)?
        } else {
            self.g.dense(low, b, None, Activation::Identity, name)?
        };
        let y = self.g.add(base, up, name)?;
        Ok(if act == Activation::Identity {
            y
        } else {
            self.g.activation(y, act, name)
        })
    }

    /// A parameter of the layer, trainable or frozen: a new one, or the earlier
    /// parameter it is tied to, which must have its shape and trainability. Under
    /// LoRA only the layers it trains in full keep trainable tensors.
    fn param(
        &mut self,
        suffix: &str,
        shape: &[usize],
        init: Init,
        trainable: bool,
        name: &str,
    ) -> Result<NodeId> {
        let trainable = trainable && self.lora.is_none_or(|l| l.trains_layer(&self.prefix));
        if let Some(tie) = self.tied.iter_mut().find(|t| t.tensor == suffix) {
            tie.used = true;
            let node = &self.g.nodes[tie.node];
            let Op::Param {
                name: to,
                trainable: trains,
                ..
            } = &node.op
            else {
                unreachable!("ties resolve to parameter nodes")
            };
            if node.shape != shape {
                return Err(Error::invalid(format!(
                    "layer '{name}': its {suffix} of shape {shape:?} is tied to '{to}' of shape {:?}; \
                     tied tensors have one shape",
                    node.shape
                )));
            }
            if *trains != trainable {
                let state = |t: bool| if t { "trainable" } else { "frozen" };
                let fix = if self.lora.is_some() {
                    "under LoRA, name both layers in --lora-train (the model's `train`) or neither"
                } else {
                    "freeze both layers or neither"
                };
                return Err(Error::invalid(format!(
                    "layer '{name}' is {} but '{to}', which its {suffix} is tied to, is {}; {fix}",
                    state(trainable),
                    state(*trains)
                )));
            }
            return Ok(tie.node);
        }
        let full = format!("{}.{suffix}", self.prefix);
        Ok(if trainable {
            self.g.param(&full, shape, init, name)
        } else {
            self.g.frozen_param(&full, shape, init, name)
        })
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
        let name = b.name.clone();
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
            }
            | Layer::Conv2DTranspose {
                filters,
                kernel,
                stride,
                padding,
                activation,
                use_bias,
                trainable,
            } => convolution(
                b,
                &name,
                if matches!(self, Layer::Conv2D { .. }) {
                    Direction::Forward
                } else {
                    Direction::Transposed
                },
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
            Layer::LayerNormalization { epsilon, trainable } => {
                let features = *b.g.shape(b.x).last().expect("per-sample shapes are non-empty");
                let gamma = b.param("weight", &[features], Init::Ones, *trainable, &name)?;
                let beta = b.param("bias", &[features], Init::Zeros, *trainable, &name)?;
                Ok(one(b.g.layer_norm(b.x, gamma, beta, *epsilon, &name)?))
            }
            Layer::RMSNormalization { epsilon, trainable } => {
                let features = *b.g.shape(b.x).last().expect("per-sample shapes are non-empty");
                let gamma = b.param("weight", &[features], Init::Ones, *trainable, &name)?;
                Ok(one(b.g.rms_norm(b.x, gamma, *epsilon, &name)?))
            }
            Layer::MultiHeadAttention {
                num_heads,
                key_dim,
                value_dim,
                use_bias,
                causal,
                dropout,
                num_key_value_heads,
                rope_theta,
                rope_scaling,
                output_bias,
                qk_norm,
                trainable,
            } => multi_head_attention(
                b,
                &name,
                Heads {
                    heads: *num_heads,
                    kv_heads: num_key_value_heads.unwrap_or(*num_heads),
                    key_dim: *key_dim,
                    value_dim: value_dim.unwrap_or(*key_dim),
                    rope_theta: *rope_theta,
                    rope_scaling: *rope_scaling,
                    qk_norm: *qk_norm,
                },
                *dropout,
                (*use_bias, output_bias.unwrap_or(*use_bias)),
                *causal,
                *trainable,
            ),
            Layer::GlobalAveragePooling1D => Ok(one(b.g.sequence_pool(b.x, SequencePool::Mean, &name)?)),
            Layer::LastTokenPooling1D => Ok(one(b.g.sequence_pool(b.x, SequencePool::Last, &name)?)),
            Layer::FirstTokenPooling1D => Ok(one(b.g.sequence_pool(b.x, SequencePool::First, &name)?)),
            Layer::AddPositionEmbedding { trainable } => {
                let shape = b.g.shape(b.x).to_vec();
                let p = b.param("weight", &shape, Init::Uniform { limit: 0.05 }, *trainable, &name)?;
                Ok(one(b.g.add_broadcast(b.x, p, &name)?))
            }
            Layer::BatchNormalization {
                momentum,
                epsilon,
                trainable,
            } => batch_normalization(b, &name, *momentum, *epsilon, *trainable),
            Layer::Embedding {
                input_dim,
                output_dim,
                mask_id,
                trainable,
            } => {
                if *input_dim == 0 || *output_dim == 0 {
                    return Err(Error::invalid(format!(
                        "layer '{name}': Embedding needs input_dim and output_dim of at least 1, got {input_dim} and {output_dim}"
                    )));
                }
                let shape = [*input_dim, *output_dim];
                let table = b.param("weight", &shape, Init::Uniform { limit: 0.05 }, *trainable, &name)?;
                Ok(one(b.g.embedding(b.x, table, *mask_id, &name)?))
            }
            Layer::Permute { dims } => {
                // Keras counts from 1; 0 can never name an axis.
                let perm: Vec<usize> = dims.iter().map(|&d| d.wrapping_sub(1)).collect();
                let turned = b.g.permute(b.x, &perm, &name)?;
                // A padded sequence's positions turned into classes: the
                // padding is masked (only the loss' output may be one).
                match b.g.lengths_of(b.x) {
                    Some(lengths) if perm == [1, 0] => Ok(one(b.g.mask_positions(turned, lengths, &name)?)),
                    _ => Ok(one(turned)),
                }
            }
            // nn.Dropout is a module of its own (no parameters).
            Layer::Dropout { rate } => Ok(one(b.g.dropout(b.x, *rate, &name)?)),
            Layer::Activation(a) => {
                let act = b.epilogue_activation(*a, &name, b.last)?;
                let x = if act == Activation::Identity {
                    b.gated_unit_after(b.x, *a, &name)
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
    // Features of each sample, or of each token of a sequence.
    let fan_in = *b.g.shape(b.x).last().expect("per-sample shapes are non-empty");
    if units == 0 {
        return Err(Error::invalid(format!(
            "layer '{name}': Dense needs at least 1 unit"
        )));
    }
    let init = Init::GlorotUniform {
        fan_in,
        fan_out: units,
    };
    let w = b.param("weight", &[units, fan_in], init, trainable, name)?;
    let bias = use_bias
        .then(|| b.param("bias", &[units], Init::Zeros, trainable, name))
        .transpose()?;
    let act = b.epilogue_activation(activation, name, b.last)?;
    let module = b.prefix.clone();
    let x = b.linear((b.x, w, bias), act, &module, name)?;
    let x = b.gated_unit_after(x, activation, name);
    Ok(Added {
        x,
        modules: modules(activation),
        folds_next: false,
    })
}

/// A MultiHeadAttention's heads: query heads, key and value heads, their sizes
/// and the rotary embedding's base and scaling.
struct Heads {
    heads: usize,
    kv_heads: usize,
    key_dim: usize,
    value_dim: usize,
    rope_theta: Option<f64>,
    rope_scaling: Option<RopeScaling>,
    qk_norm: Option<f32>,
}

/// MultiHeadAttention: `.query`, `.key` and `.value` Dense projections (no
/// activation), the rotary turn of the queries and keys, the key and value heads
/// repeated for grouped queries, the attention op, and the `.output` projection
/// back to the query's features.
fn multi_head_attention(
    b: &mut LayerBuild<'_>,
    name: &str,
    Heads {
        heads,
        kv_heads,
        key_dim,
        value_dim,
        rope_theta,
        rope_scaling,
        qk_norm,
    }: Heads,
    dropout: f32,
    (use_bias, output_bias): (bool, bool),
    causal: bool,
    trainable: bool,
) -> Result<Added> {
    if heads == 0 || key_dim == 0 || value_dim == 0 {
        return Err(Error::invalid(format!(
            "layer '{name}': MultiHeadAttention needs at least 1 head of at least 1 value \
             (num_heads {heads}, key_dim {key_dim}, value_dim {value_dim})"
        )));
    }
    if kv_heads == 0 || !heads.is_multiple_of(kv_heads) {
        return Err(Error::invalid(format!(
            "layer '{name}': num_key_value_heads {kv_heads} must divide num_heads {heads} (each key \
             and value head serves the same number of query heads)"
        )));
    }
    if let Some(theta) = rope_theta
        && !(theta > 1.0 && theta.is_finite() && key_dim.is_multiple_of(2))
    {
        return Err(Error::invalid(format!(
            "layer '{name}': rotary position embedding needs a rope_theta above 1 (Llama's 10000 or \
             500000) and an even key_dim; got {theta} and {key_dim}"
        )));
    }
    if b.others.len() > 2 {
        return Err(Error::invalid(format!(
            "layer '{name}': MultiHeadAttention reads [query], [query, value] or [query, value, key], \
             {} inputs given",
            b.others.len() + 1
        )));
    }
    let query = b.x;
    let value = b.others.first().copied().unwrap_or(query);
    let key = b.others.get(1).copied().unwrap_or(value);
    for (what, x) in [("query", query), ("value", value), ("key", key)] {
        if b.g.shape(x).len() != 2 {
            return Err(Error::shape(
                "model",
                format!(
                    "layer '{name}': MultiHeadAttention's {what} must be a sequence [tokens, features], got {:?}",
                    b.g.shape(x)
                ),
            ));
        }
    }
    // Keras' EinsumDense kernels are 3-D ([features, heads, dim] for the input
    // projections, [heads, dim, features] for the output) and Glorot's fans count
    // the leading axis as a receptive field: fan_in = features·heads and fan_out =
    // features·dim in, heads·dim and heads·features out. Each projection is stored
    // as a PyTorch Linear weight [units, inputs] but drawn with those fans.
    let project =
        |b: &mut LayerBuild<'_>, x: NodeId, part: &str, (heads, units): (usize, usize)| -> Result<NodeId> {
            let inputs = b.g.shape(x)[1];
            let init = if part == "output" {
                Init::GlorotUniform {
                    fan_in: inputs,
                    fan_out: heads * units,
                }
            } else {
                Init::GlorotUniform {
                    fan_in: inputs * heads,
                    fan_out: inputs * (units / heads),
                }
            };
            let w = b.param(&format!("{part}.weight"), &[units, inputs], init, trainable, name)?;
            let biased = if part == "output" { output_bias } else { use_bias };
            let bias = biased
                .then(|| b.param(&format!("{part}.bias"), &[units], Init::Zeros, trainable, name))
                .transpose()?;
            let module = format!("{}.{part}", b.prefix);
            b.linear((x, w, bias), Activation::Identity, &module, name)
        };
    let mut q = project(b, query, "query", (heads, heads * key_dim))?;
    let mut k = project(b, key, "key", (kv_heads, kv_heads * key_dim))?;
    let mut v = project(b, value, "value", (kv_heads, kv_heads * value_dim))?;
    if let Some(scaling) = rope_scaling {
        if rope_theta.is_none() {
            return Err(Error::invalid(format!(
                "layer '{name}': rope_scaling scales rotary positions, which need a rope_theta"
            )));
        }
        scaling
            .validate()
            .map_err(|e| Error::invalid(format!("layer '{name}': {e}")))?;
    }
    if let Some(epsilon) = qk_norm {
        let qg = b.param("query_norm.weight", &[key_dim], Init::Ones, trainable, name)?;
        let kg = b.param("key_norm.weight", &[key_dim], Init::Ones, trainable, name)?;
        q = b.g.rms_norm(q, qg, epsilon, name)?;
        k = b.g.rms_norm(k, kg, epsilon, name)?;
    }
    if let Some(theta) = rope_theta {
        let frequencies = RopeScaling::frequencies(rope_scaling.as_ref(), theta, key_dim);
        let scale = rope_scaling.map_or(1.0, |s| s.attention_scaling());
        q = b.g.rotary(q, heads, (&frequencies, scale), name)?;
        k = b.g.rotary(k, kv_heads, (&frequencies, scale), name)?;
    }
    if kv_heads < heads {
        k = b.g.repeat_heads(k, kv_heads, heads / kv_heads, name)?;
        v = b.g.repeat_heads(v, kv_heads, heads / kv_heads, name)?;
    }
    let attended = b.g.attention(q, k, v, heads, causal, dropout, name)?;
    let features = b.g.shape(query)[1];
    Ok(one(project(b, attended, "output", (heads, features))?))
}

/// Whether a convolution layer is Conv2D or Conv2DTranspose.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    Forward,
    Transposed,
}

/// A Conv2D layer (`nn.Conv2d`'s weight `[filters, C_in, kh, kw]`) or a
/// Conv2DTranspose layer (`nn.ConvTranspose2d`'s weight `[C_in, filters, kh, kw]`);
/// Glorot-uniform as Keras initialises either kernel: fan in `kh·kw·C_in` and fan out
/// `kh·kw·filters` for Conv2D, the other way round for Conv2DTranspose (its kernel
/// is `(kh, kw, filters, C_in)`).
fn convolution(
    b: &mut LayerBuild<'_>,
    name: &str,
    direction: Direction,
    (filters, kernel, stride, padding): (usize, (usize, usize), (usize, usize), Padding),
    activation: LayerActivation,
    use_bias: bool,
    trainable: bool,
) -> Result<Added> {
    let kind = match direction {
        Direction::Forward => "Conv2D",
        Direction::Transposed => "Conv2DTranspose",
    };
    let xs = b.g.shape(b.x).to_vec();
    if xs.len() != 3 {
        return Err(Error::shape(
            "model",
            format!("layer '{name}': {kind} expects [channels, height, width] per sample, got {xs:?}"),
        ));
    }
    if filters == 0 || kernel.0 == 0 || kernel.1 == 0 {
        return Err(Error::invalid(format!(
            "layer '{name}': filters and kernel size must be at least 1"
        )));
    }
    let area = kernel.0 * kernel.1;
    let (init, shape) = match direction {
        Direction::Forward => (
            Init::GlorotUniform {
                fan_in: xs[0] * area,
                fan_out: filters * area,
            },
            [filters, xs[0], kernel.0, kernel.1],
        ),
        Direction::Transposed => (
            Init::GlorotUniform {
                fan_in: filters * area,
                fan_out: xs[0] * area,
            },
            [xs[0], filters, kernel.0, kernel.1],
        ),
    };
    let w = b.param("weight", &shape, init, trainable, name)?;
    let bias = use_bias
        .then(|| b.param("bias", &[filters], Init::Zeros, trainable, name))
        .transpose()?;
    let act = b.epilogue_activation(activation, name, b.last)?;
    let module = b.prefix.clone();
    let x = match direction {
        Direction::Forward => b.convolution((b.x, w, bias), (stride, padding), act, &module, name)?,
        Direction::Transposed => b.g.conv2d_transpose(b.x, w, bias, stride, padding, act, name)?,
    };
    let x = b.gated_unit_after(x, activation, name);
    Ok(Added {
        x,
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
    let gamma = b.param("weight", &[c], Init::Ones, trainable, name)?;
    let beta = b.param("bias", &[c], Init::Zeros, trainable, name)?;
    let prefix = &b.prefix;
    let mean =
        b.g.state(&format!("{prefix}.running_mean"), &[c], Init::Zeros, name);
    let var =
        b.g.state(&format!("{prefix}.running_var"), &[c], Init::Ones, name);
    let (act, folds_next) = match &b.next {
        // GELU runs as a node of its own (the Activation layer adds it).
        Some((Layer::Activation(a), next_name, next_last)) if a.gated_unit().is_none() => {
            (b.kernel_activation(*a, next_name, *next_last)?, true)
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
