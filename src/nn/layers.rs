//! Layer descriptions, as in Keras: what a user writes to describe a model.

use crate::kernels::conv::Padding;
use crate::kernels::elementwise::GatedUnit;
use crate::kernels::matmul::Activation;

/// A layer's activation. `Softmax` is allowed only as the last layer's activation
/// with categorical cross-entropy, where the loss kernel computes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
pub enum LayerActivation {
    /// No activation: the identity.
    #[default]
    Linear,
    /// Rectified linear unit, `max(x, 0)`.
    Relu,
    /// Logistic sigmoid, `1 / (1 + e^-x)`.
    Sigmoid,
    /// Hyperbolic tangent.
    Tanh,
    /// Softmax over the features; only as the last layer's activation (see above).
    Softmax,
    /// The exact Gaussian error linear unit `x·Φ(x)` (Keras' `gelu`, PyTorch's
    /// `nn.GELU()`), the transformers' activation: a node of its own after the
    /// layer's product, since its gradient needs the input.
    Gelu,
    /// GELU's tanh approximation `x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))/2`
    /// (Keras' `gelu(approximate=True)`, PyTorch's `nn.GELU(approximate='tanh')`,
    /// GPT-2's `gelu_new`), a node of its own as [`LayerActivation::Gelu`].
    GeluTanh,
    /// SiLU (swish) `x·σ(x)` (Keras' `silu`, PyTorch's `nn.SiLU()`, the gate
    /// of Llama's MLP), a node of its own as [`LayerActivation::Gelu`].
    Silu,
}

impl LayerActivation {
    /// The activation a kernel applies in its epilogue; `None` for softmax (the
    /// loss computes it) and GELU (an op of its own).
    pub fn kernel(self) -> Option<Activation> {
        match self {
            LayerActivation::Linear => Some(Activation::Identity),
            LayerActivation::Relu => Some(Activation::Relu),
            LayerActivation::Sigmoid => Some(Activation::Sigmoid),
            LayerActivation::Tanh => Some(Activation::Tanh),
            LayerActivation::Softmax
            | LayerActivation::Gelu
            | LayerActivation::GeluTanh
            | LayerActivation::Silu => None,
        }
    }

    /// The kernel of an activation `x·g(x)` (GELU, SiLU: a node of its own,
    /// whose gradient reads its input), `None` for the others.
    pub fn gated_unit(self) -> Option<GatedUnit> {
        match self {
            LayerActivation::Gelu => Some(GatedUnit::Gelu),
            LayerActivation::GeluTanh => Some(GatedUnit::GeluTanh),
            LayerActivation::Silu => Some(GatedUnit::Silu),
            _ => None,
        }
    }
}

/// How a rotary embedding's frequencies are scaled for contexts longer than a
/// model was first trained on: Hugging Face's `rope_type`s, computed in f32 as
/// transformers computes them. YaRN also scales the cosines and sines
/// ([`RopeScaling::attention_scaling`]).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub enum RopeScaling {
    /// Every frequency divided by `factor` (positions interpolated; "linear").
    Linear {
        /// The divisor, at least 1.
        factor: f64,
    },
    /// Llama 3.1's ("llama3"): frequencies whose wavelength is longer than
    /// `original_max_position_embeddings / low_freq_factor` divided by
    /// `factor`, those shorter than `original_max_position_embeddings /
    /// high_freq_factor` kept, those between blended smoothly.
    Llama3 {
        /// The divisor of the low frequencies (8 for Llama 3.1, 32 for 3.2).
        factor: f64,
        /// Wavelengths past `original_max_position_embeddings` over this are low.
        low_freq_factor: f64,
        /// Wavelengths under `original_max_position_embeddings` over this are high.
        high_freq_factor: f64,
        /// The context the frequencies were first trained for (8,192).
        original_max_position_embeddings: usize,
    },
    /// Dynamic NTK ("dynamic"): the base grows with the sequence past
    /// `max_position_embeddings`; up to it, which is as far as wgml's contexts
    /// go, the frequencies are the default ones.
    Dynamic {
        /// How far past `max_position_embeddings` the base stretches.
        factor: f64,
    },
    /// YaRN ("yarn"): frequencies that turn more than `beta_fast` times over the
    /// original context kept, those that turn fewer than `beta_slow` times
    /// divided by `factor`, those between blended along a linear ramp over the
    /// pairs; the cosines and sines scaled by the attention factor.
    Yarn {
        /// The divisor of the long wavelengths' frequencies.
        factor: f64,
        /// The context the frequencies were first trained for.
        original_max_position_embeddings: usize,
        /// Turns over the original context above which a frequency is kept (32).
        beta_fast: f64,
        /// Turns below which it is divided (1).
        beta_slow: f64,
        /// The cosines' and sines' factor; `None`: `0.1·ln(factor) + 1` (or,
        /// with `mscale` and `mscale_all_dim`, their ratio of such terms).
        attention_factor: Option<f64>,
        /// DeepSeek's numerator weight of `ln(factor)` in the attention factor.
        mscale: Option<f64>,
        /// DeepSeek's denominator weight.
        mscale_all_dim: Option<f64>,
        /// Whether the ramp's ends are rounded to whole pairs (true).
        truncate: bool,
    },
}

/// YaRN's `0.1·m·ln(scale) + 1` (1 for a scale up to 1).
fn yarn_mscale(scale: f64, m: f64) -> f64 {
    if scale <= 1.0 {
        1.0
    } else {
        0.1 * m * scale.ln() + 1.0
    }
}

impl RopeScaling {
    /// An error unless the factors are finite, `factor` at least 1 and
    /// Llama 3's low factor below its high factor.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let ok = match *self {
            RopeScaling::Linear { factor } => factor.is_finite() && factor >= 1.0,
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            } => {
                factor.is_finite()
                    && factor >= 1.0
                    && low_freq_factor > 0.0
                    && high_freq_factor.is_finite()
                    && low_freq_factor < high_freq_factor
                    && original_max_position_embeddings > 0
            }
            RopeScaling::Dynamic { factor } => factor.is_finite() && factor >= 1.0,
            RopeScaling::Yarn {
                factor,
                original_max_position_embeddings,
                beta_fast,
                beta_slow,
                attention_factor,
                mscale,
                mscale_all_dim,
                ..
            } => {
                factor.is_finite()
                    && factor >= 1.0
                    && original_max_position_embeddings > 0
                    && beta_fast.is_finite()
                    && beta_slow.is_finite()
                    && beta_slow > 0.0
                    && beta_fast > 0.0
                    && attention_factor.is_none_or(|a| a.is_finite() && a > 0.0)
                    && mscale.is_none_or(f64::is_finite)
                    && mscale_all_dim.is_none_or(f64::is_finite)
            }
        };
        if ok {
            Ok(())
        } else {
            Err(format!(
                "rotary scaling {self:?}: factor must be at least 1 (and Llama 3's low_freq_factor \
                 positive and below a finite high_freq_factor, original_max_position_embeddings at \
                 least 1; YaRN's betas positive, its attention factor positive)"
            ))
        }
    }

    /// The frequencies of heads of `head_dim` values under base `theta`
    /// (`1/θ^(2j/d)`, [`crate::reference::rotary::frequencies`]) as `scaling`
    /// scales them.
    pub fn frequencies(scaling: Option<&RopeScaling>, theta: f64, head_dim: usize) -> Vec<f32> {
        let mut freqs = crate::reference::rotary::frequencies(theta, head_dim);
        match scaling {
            Some(&RopeScaling::Yarn {
                factor,
                original_max_position_embeddings,
                beta_fast,
                beta_slow,
                truncate,
                ..
            }) => {
                // transformers' _compute_yarn_parameters: the ramp's ends in f64,
                // the frequencies and the ramp in f32.
                let dim = head_dim as f64;
                let turns_at = |turns: f64| {
                    dim * (original_max_position_embeddings as f64 / (turns * 2.0 * std::f64::consts::PI))
                        .ln()
                        / (2.0 * theta.ln())
                };
                let (mut low, mut high) = (turns_at(beta_fast), turns_at(beta_slow));
                if truncate {
                    (low, high) = (low.floor(), high.ceil());
                }
                let (low, mut high) = (low.max(0.0), high.min(dim - 1.0));
                if low == high {
                    high += 0.001;
                }
                for (j, f) in freqs.iter_mut().enumerate() {
                    let base = (theta as f32).powf((2 * j) as f32 / head_dim as f32);
                    let (kept, divided) = (1.0 / base, 1.0 / (factor as f32 * base));
                    let ramp = ((j as f32 - low as f32) / (high - low) as f32).clamp(0.0, 1.0);
                    let keep = 1.0 - ramp;
                    *f = divided * (1.0 - keep) + kept * keep;
                }
            }
            Some(s) => s.apply(&mut freqs),
            None => {}
        }
        freqs
    }

    /// The factor of the cosines and sines: YaRN's attention factor, 1 for the
    /// other types.
    pub fn attention_scaling(&self) -> f32 {
        match *self {
            RopeScaling::Yarn {
                factor,
                attention_factor,
                mscale,
                mscale_all_dim,
                ..
            } => attention_factor.unwrap_or_else(|| match (mscale, mscale_all_dim) {
                (Some(m), Some(all)) if m != 0.0 && all != 0.0 => {
                    yarn_mscale(factor, m) / yarn_mscale(factor, all)
                }
                _ => yarn_mscale(factor, 1.0),
            }) as f32,
            _ => 1.0,
        }
    }

    /// `freqs` (one per pair, `1/θ^(2j/d)`) scaled by the types that scale each
    /// frequency alone (YaRN needs the base: [`RopeScaling::frequencies`]).
    fn apply(&self, freqs: &mut [f32]) {
        match *self {
            RopeScaling::Dynamic { .. } | RopeScaling::Yarn { .. } => {}
            RopeScaling::Linear { factor } => freqs.iter_mut().for_each(|f| *f /= factor as f32),
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            } => {
                let (factor, low, high) = (factor as f32, low_freq_factor as f32, high_freq_factor as f32);
                let old = original_max_position_embeddings as f32;
                let (low_wavelen, high_wavelen) = (old / low, old / high);
                for f in freqs {
                    let wavelen = 2.0 * std::f32::consts::PI / *f;
                    if wavelen > low_wavelen {
                        *f /= factor;
                    } else if wavelen >= high_wavelen {
                        let smooth = (old / wavelen - low) / (high - low);
                        *f = (1.0 - smooth) * *f / factor + smooth * *f;
                    }
                }
            }
        }
    }
}

/// One layer of a [`Sequential`](super::Sequential) model.
///
/// In JSON (a checkpoint's architecture, `wgml train --model FILE.json`), fields left
/// out take Keras' defaults: activation linear, bias used, convolution stride 1,
/// 'valid' padding, batch normalization's momentum 0.99 and epsilon 0.001. Pools
/// name their stride (Keras' default is the pool size: `"stride"` equal to `"pool"`).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub enum Layer {
    /// `use_bias` as Keras' (true by default; false before a batch normalization,
    /// which removes any offset: the bias would only learn rounding noise).
    Dense {
        /// Number of output features.
        units: usize,
        /// Activation applied to the output.
        #[serde(default)]
        activation: LayerActivation,
        /// Whether the layer adds a learned bias.
        #[serde(default = "keras::use_bias")]
        use_bias: bool,
        /// False to freeze the layer (Keras' `trainable = False`): no gradient
        /// into its parameters, no optimizer state, no update.
        #[serde(default = "keras::trainable", skip_serializing_if = "keras::is_true")]
        trainable: bool,
    },
    /// Keras' `Conv2D` (PyTorch's `nn.Conv2d`): a 2-D convolution over `[C, H, W]` inputs.
    Conv2D {
        /// Number of output channels.
        filters: usize,
        /// Kernel size `(height, width)`.
        kernel: (usize, usize),
        /// Stride `(vertical, horizontal)`.
        #[serde(default = "keras::stride")]
        stride: (usize, usize),
        /// Padding mode ('valid', 'same', or explicit).
        #[serde(default)]
        padding: Padding,
        /// Activation applied to the output.
        #[serde(default)]
        activation: LayerActivation,
        /// Whether the layer adds a learned bias per filter.
        #[serde(default = "keras::use_bias")]
        use_bias: bool,
        /// False to freeze the layer (Keras' `trainable = False`): no gradient
        /// into its parameters, no optimizer state, no update.
        #[serde(default = "keras::trainable", skip_serializing_if = "keras::is_true")]
        trainable: bool,
    },
    /// Keras' `Conv2DTranspose` (PyTorch's `nn.ConvTranspose2d`, `output_padding`
    /// 0): the transposed convolution, which grows `[C, H, W]` by the stride; the
    /// decoder's counterpart of Conv2D. Weights `[C_in, filters, kh, kw]` (PyTorch's
    /// layout). Output side: 'valid' `(H − 1)·s + k`, 'same' `H·s`, explicit `p`
    /// `(H − 1)·s + k − 2p`.
    Conv2DTranspose {
        /// Number of output channels.
        filters: usize,
        /// Kernel size `(height, width)`.
        kernel: (usize, usize),
        /// Stride `(vertical, horizontal)`.
        #[serde(default = "keras::stride")]
        stride: (usize, usize),
        /// Padding of the convolution it transposes ('valid', 'same', or explicit).
        #[serde(default)]
        padding: Padding,
        /// Activation applied to the output.
        #[serde(default)]
        activation: LayerActivation,
        /// Whether the layer adds a learned bias per filter.
        #[serde(default = "keras::use_bias")]
        use_bias: bool,
        /// False to freeze the layer (Keras' `trainable = False`).
        #[serde(default = "keras::trainable", skip_serializing_if = "keras::is_true")]
        trainable: bool,
    },
    /// Keras' `MaxPooling2D` (PyTorch's `nn.MaxPool2d`): the maximum over each
    /// window, no padding.
    MaxPool2D {
        /// Window size `(height, width)`.
        pool: (usize, usize),
        /// Stride `(vertical, horizontal)`.
        stride: (usize, usize),
    },
    /// Keras' `AveragePooling2D` (PyTorch's `nn.AvgPool2d`): the mean over each
    /// window, no padding.
    AvgPool2D {
        /// Window size `(height, width)`.
        pool: (usize, usize),
        /// Stride `(vertical, horizontal)`.
        stride: (usize, usize),
    },
    /// Keras' `Flatten` (PyTorch's `nn.Flatten`): reshapes each sample to one dimension.
    Flatten,
    /// Keras' `GlobalAveragePooling2D`: the mean of each channel's plane, `[C, H, W]`
    /// to `[C]` (PyTorch: `nn.AdaptiveAvgPool2d(1)` then `nn.Flatten()`, two modules).
    GlobalAveragePooling2D,
    /// Keras' `Activation`: applies an activation on its own.
    Activation(LayerActivation),
    /// Keras' `Dropout(rate)`: while training, zeroes each unit with probability
    /// `rate` and scales the rest by `1 / (1 − rate)`; the identity otherwise.
    Dropout {
        /// Fraction of units dropped while training, in `[0, 1)`.
        rate: f32,
    },
    /// Keras' `BatchNormalization` over the channel axis (channels first: axis 1 of
    /// `[N, C, H, W]`, the features of `[N, F]`): learns a scale γ and offset β per
    /// channel; normalizes with the batch's statistics while training and with
    /// moving statistics (`moving = momentum · moving + (1 − momentum) · batch`)
    /// when evaluating. PyTorch's `BatchNorm1d/2d(C, eps=epsilon,
    /// momentum=1 − momentum)`, except that the moving variance is the biased one,
    /// as Keras keeps it.
    BatchNormalization {
        /// Weight of the old moving statistics in each update (Keras' convention).
        #[serde(default = "keras::bn_momentum")]
        momentum: f32,
        /// Small constant added to the variance before its square root.
        #[serde(default = "keras::bn_epsilon")]
        epsilon: f32,
        /// False to freeze the layer, as Keras' `trainable = False` (not supported
        /// yet: wgml refuses the model, see [`Layer::frozen`]).
        #[serde(default = "keras::trainable", skip_serializing_if = "keras::is_true")]
        trainable: bool,
    },
    /// Keras' `LayerNormalization()` (axis −1; PyTorch's `nn.LayerNorm(features,
    /// eps=epsilon)`): normalizes each sample's last axis (each token of a
    /// sequence) to mean 0 and variance 1 with its own statistics, in training and
    /// evaluation alike, then applies a learned scale γ (`.weight`) and shift β
    /// (`.bias`) of that axis' length.
    LayerNormalization {
        /// Small constant added to the variance before its square root (Keras'
        /// default 0.001; PyTorch's is 1e-5).
        #[serde(default = "keras::ln_epsilon")]
        epsilon: f32,
        /// False to freeze γ and β.
        #[serde(default = "keras::trainable", skip_serializing_if = "keras::is_true")]
        trainable: bool,
    },
    /// Keras' `RMSNormalization()` (axis −1; PyTorch's `nn.RMSNorm(features,
    /// eps)`, Llama's `LlamaRMSNorm`): each sample's last axis divided by its
    /// root mean square, `x/√(mean(x²) + ε)`, in training and evaluation alike,
    /// then scaled by a learned γ (`.weight`, starting at 1) of that axis' length.
    RMSNormalization {
        /// Small constant added to the mean square before its square root
        /// (Keras' default 1e-6; Llama's `rms_norm_eps` is 1e-5 or 1e-6).
        #[serde(default = "keras::rms_epsilon")]
        epsilon: f32,
        /// False to freeze γ.
        #[serde(default = "keras::trainable", skip_serializing_if = "keras::is_true")]
        trainable: bool,
    },
    /// Keras' `MultiHeadAttention(num_heads, key_dim)` on sequences `[tokens,
    /// features]`: queries, keys and values are Dense projections of the inputs
    /// (`.query`: `num_heads·key_dim` units; `.key` and `.value`:
    /// `num_key_value_heads·key_dim` and `num_key_value_heads·value_dim`, the
    /// same heads as the queries by default), each head attends with `softmax(Q·Kᵀ/√key_dim)·V`, and a Dense
    /// `.output` projection maps the heads back to the query's features. In a
    /// Sequential model it is self-attention; in a functional model its inputs are
    /// `[query]`, `[query, value]` or `[query, value, key]` (Keras' call order, key
    /// defaulting to value). Every projection starts as a Dense layer of its size.
    MultiHeadAttention {
        /// Number of attention heads.
        num_heads: usize,
        /// Size of each head's queries and keys.
        key_dim: usize,
        /// Size of each head's values (default: `key_dim`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        value_dim: Option<usize>,
        /// Whether the projections add a learned bias (the output's: see
        /// `output_bias`).
        #[serde(default = "keras::use_bias")]
        use_bias: bool,
        /// Keras' `use_causal_mask=True`: token `i` attends to tokens `j ≤ i` only.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        causal: bool,
        /// Keras' `dropout` (GPT-2's `attn_pdrop`): the fraction of the attention
        /// weights dropped while training, in `[0, 1)`; none when evaluating.
        #[serde(default, skip_serializing_if = "keras::is_zero")]
        dropout: f32,
        /// Grouped-query attention (Keras' `GroupedQueryAttention`, Llama's
        /// `num_key_value_heads`): keys and values have this many heads, each
        /// shared by `num_heads / num_key_value_heads` query heads (it divides
        /// `num_heads`). Default: `num_heads`, one key and value head per query head.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        num_key_value_heads: Option<usize>,
        /// Rotary position embedding of the queries and keys after their
        /// projections (Llama's `rope_theta`, keras_hub's `RotaryEmbedding`'s
        /// `max_wavelength`): pair `j` of a head's `key_dim` values turns by
        /// `position / rope_theta^(2j/key_dim)`, Hugging Face's halves layout.
        /// `None`: no rotation.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rope_theta: Option<f64>,
        /// How the rotary frequencies are scaled for contexts longer than the
        /// model was first trained on (Hugging Face's `rope_type`); `None`: as
        /// they are. Needs `rope_theta`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rope_scaling: Option<RopeScaling>,
        /// Whether the output projection adds a bias; default `use_bias`
        /// (Qwen2's attention has biases on its query, key and value
        /// projections only).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        output_bias: Option<bool>,
        /// RMS normalization of each head of the queries and of the keys after
        /// their projections, before the rotary turn, with this epsilon (Qwen3's
        /// `q_norm` and `k_norm`; scales `.query_norm` and `.key_norm` of
        /// `key_dim` values). `None`: none.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        qk_norm: Option<f32>,
        /// False to freeze the projections.
        #[serde(default = "keras::trainable", skip_serializing_if = "keras::is_true")]
        trainable: bool,
    },
    /// Keras' `Embedding(input_dim, output_dim)` (PyTorch's `nn.Embedding`): each
    /// value of the input, a token id, replaced by its learned row (`.weight`
    /// `[input_dim, output_dim]`, uniform in ±0.05 as Keras draws it), so ids `[T]`
    /// become a sequence `[T, output_dim]`. Ids are the input's f32 values; one
    /// that is not a whole number below `input_dim` gives a row of zeros.
    Embedding {
        /// Vocabulary size: ids run from 0 to `input_dim − 1`.
        input_dim: usize,
        /// Values per row.
        output_dim: usize,
        /// The padding id (Keras' `mask_zero=True` is `mask_id: 0`; GPT-2 is
        /// usually padded with its end-of-text id, 50256): the run of it that ends a
        /// sample of ids `[T]` is padding, which attention keys, GlobalAveragePooling1D
        /// and LastTokenPooling1D downstream skip (the same id before a real token
        /// is an ordinary token). Layers that mix tokens (Flatten, Permute, a
        /// convolution...) refuse a padded sequence. `None`: no padding.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mask_id: Option<u32>,
        /// False to freeze the table.
        #[serde(default = "keras::trainable", skip_serializing_if = "keras::is_true")]
        trainable: bool,
    },
    /// Keras' `Permute(dims)`: the per-sample axes reordered, output axis `k`
    /// being input axis `dims[k]` (1-based, the batch axis not counted; e.g.
    /// `[2, 1]` turns a conv's `[channels, positions]` into tokens `[positions,
    /// channels]`). No parameters.
    Permute {
        /// A permutation of `1..=rank`.
        dims: Vec<usize>,
    },
    /// Keras' `GlobalAveragePooling1D`: the mean over the tokens of a sequence,
    /// `[tokens, features]` to `[features]`.
    GlobalAveragePooling1D,
    /// The last token of a sequence, `[tokens, features]` to `[features]`: with
    /// padding (an Embedding's `mask_id`), each sample's last real token (its
    /// first of an all-padding sample), as Hugging Face's
    /// `GPT2ForSequenceClassification` reads a causal model's sequence.
    LastTokenPooling1D,
    /// The first token of a sequence, `[tokens, features]` to `[features]`, padded
    /// or not: BERT's `[CLS]`, which its pooler and Hugging Face's
    /// `BertForSequenceClassification` read.
    FirstTokenPooling1D,
    /// A learned position embedding added to a sequence: a parameter `.weight` of
    /// the sample's shape `[tokens, features]` (initialised as Keras'
    /// `Embedding`, uniform in ±0.05) added to every sample, so each position gets
    /// its own offset (keras_hub's `PositionEmbedding` followed by `Add`).
    AddPositionEmbedding {
        /// False to freeze the embedding.
        #[serde(default = "keras::trainable", skip_serializing_if = "keras::is_true")]
        trainable: bool,
    },
}

/// Keras' defaults for fields a JSON description leaves out.
mod keras {
    pub fn use_bias() -> bool {
        true
    }
    pub fn stride() -> (usize, usize) {
        (1, 1)
    }
    pub fn bn_momentum() -> f32 {
        0.99
    }
    pub fn bn_epsilon() -> f32 {
        1e-3
    }
    pub fn ln_epsilon() -> f32 {
        1e-3
    }
    pub fn rms_epsilon() -> f32 {
        1e-6
    }
    pub fn trainable() -> bool {
        true
    }
    pub fn is_true(v: &bool) -> bool {
        *v
    }
    pub fn is_zero(v: &f32) -> bool {
        *v == 0.0
    }
}

impl Layer {
    /// Keras' `Dense(units, activation=...)` with a bias.
    pub fn dense(units: usize, activation: LayerActivation) -> Layer {
        Layer::Dense {
            units,
            activation,
            use_bias: true,
            trainable: true,
        }
    }

    /// The same Dense or Conv2D layer without its bias (Keras' `use_bias=False`;
    /// PyTorch's `bias=False`: no `.bias` in checkpoints). Other layers have no
    /// bias and are returned unchanged.
    pub fn without_bias(mut self) -> Layer {
        if let Layer::Dense { use_bias, .. }
        | Layer::Conv2D { use_bias, .. }
        | Layer::Conv2DTranspose { use_bias, .. } = &mut self
        {
            *use_bias = false;
        }
        self
    }

    /// Keras' `Conv2D(filters, kernel, activation=...)`: stride 1, 'valid' padding.
    pub fn conv2d(filters: usize, kernel: usize, activation: LayerActivation) -> Layer {
        Layer::Conv2D {
            filters,
            kernel: (kernel, kernel),
            stride: (1, 1),
            padding: Padding::Valid,
            activation,
            use_bias: true,
            trainable: true,
        }
    }

    /// Keras' `MaxPooling2D(pool)`: stride = pool, no padding.
    pub fn max_pool(pool: usize) -> Layer {
        Layer::MaxPool2D {
            pool: (pool, pool),
            stride: (pool, pool),
        }
    }

    /// Keras' `Dropout(rate)`.
    pub fn dropout(rate: f32) -> Layer {
        Layer::Dropout { rate }
    }

    /// Keras' `BatchNormalization()`: momentum 0.99, epsilon 0.001.
    pub fn batch_norm() -> Layer {
        Layer::BatchNormalization {
            momentum: 0.99,
            epsilon: 1e-3,
            trainable: true,
        }
    }

    /// Keras' `LayerNormalization()`: epsilon 0.001.
    pub fn layer_norm() -> Layer {
        Layer::LayerNormalization {
            epsilon: 1e-3,
            trainable: true,
        }
    }

    /// Keras' `MultiHeadAttention(num_heads, key_dim)` with biases, values of
    /// `key_dim` per head, no causal mask.
    pub fn attention(num_heads: usize, key_dim: usize) -> Layer {
        Layer::MultiHeadAttention {
            num_heads,
            key_dim,
            value_dim: None,
            use_bias: true,
            causal: false,
            dropout: 0.0,
            num_key_value_heads: None,
            rope_theta: None,
            rope_scaling: None,
            output_bias: None,
            qk_norm: None,
            trainable: true,
        }
    }

    /// Keras' `GlobalAveragePooling2D()`.
    pub fn global_avg_pool() -> Layer {
        Layer::GlobalAveragePooling2D
    }

    /// Keras' `AveragePooling2D(pool)`: stride = pool, no padding.
    pub fn avg_pool(pool: usize) -> Layer {
        Layer::AvgPool2D {
            pool: (pool, pool),
            stride: (pool, pool),
        }
    }

    /// The same layer frozen (Keras' `layer.trainable = False`, PyTorch's
    /// `requires_grad_(False)` on its parameters): its parameters keep their values
    /// while the rest of the model trains. Layers without parameters are returned
    /// unchanged.
    pub fn frozen(self) -> Layer {
        self.with_trainable(false)
    }

    /// The same layer trainable (`true`) or frozen (`false`); layers without
    /// parameters are returned unchanged.
    pub fn with_trainable(mut self, value: bool) -> Layer {
        if let Layer::Dense { trainable, .. }
        | Layer::Conv2D { trainable, .. }
        | Layer::Conv2DTranspose { trainable, .. }
        | Layer::BatchNormalization { trainable, .. }
        | Layer::LayerNormalization { trainable, .. }
        | Layer::RMSNormalization { trainable, .. }
        | Layer::MultiHeadAttention { trainable, .. }
        | Layer::AddPositionEmbedding { trainable }
        | Layer::Embedding { trainable, .. } = &mut self
        {
            *trainable = value;
        }
        self
    }

    /// False for a frozen layer; true for the others (and for layers without
    /// parameters).
    pub fn is_trainable(&self) -> bool {
        match self {
            Layer::Dense { trainable, .. }
            | Layer::Conv2D { trainable, .. }
            | Layer::Conv2DTranspose { trainable, .. }
            | Layer::BatchNormalization { trainable, .. }
            | Layer::LayerNormalization { trainable, .. }
            | Layer::RMSNormalization { trainable, .. }
            | Layer::MultiHeadAttention { trainable, .. }
            | Layer::AddPositionEmbedding { trainable }
            | Layer::Embedding { trainable, .. } => *trainable,
            _ => true,
        }
    }

    /// Keras-style name for messages and summaries.
    pub fn kind(&self) -> &'static str {
        match self {
            Layer::Dense { .. } => "Dense",
            Layer::Conv2D { .. } => "Conv2D",
            Layer::Conv2DTranspose { .. } => "Conv2DTranspose",
            Layer::MaxPool2D { .. } => "MaxPooling2D",
            Layer::AvgPool2D { .. } => "AveragePooling2D",
            Layer::Flatten => "Flatten",
            Layer::GlobalAveragePooling2D => "GlobalAveragePooling2D",
            Layer::Dropout { .. } => "Dropout",
            Layer::BatchNormalization { .. } => "BatchNormalization",
            Layer::Activation(_) => "Activation",
            Layer::LayerNormalization { .. } => "LayerNormalization",
            Layer::RMSNormalization { .. } => "RMSNormalization",
            Layer::MultiHeadAttention { .. } => "MultiHeadAttention",
            Layer::GlobalAveragePooling1D => "GlobalAveragePooling1D",
            Layer::LastTokenPooling1D => "LastTokenPooling1D",
            Layer::FirstTokenPooling1D => "FirstTokenPooling1D",
            Layer::Permute { .. } => "Permute",
            Layer::Embedding { .. } => "Embedding",
            Layer::AddPositionEmbedding { .. } => "AddPositionEmbedding",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yarn(mscale: Option<f64>, mscale_all_dim: Option<f64>) -> RopeScaling {
        RopeScaling::Yarn {
            factor: 4.0,
            original_max_position_embeddings: 64,
            beta_fast: 32.0,
            beta_slow: 1.0,
            attention_factor: None,
            mscale,
            mscale_all_dim,
            truncate: true,
        }
    }

    /// transformers 5.25's `inv_freq` and `attention_scaling` for θ 10,000,
    /// heads of 8, factor 4 from 64 positions (golden/make_llama_yarn.py's):
    /// kept, blended halfway, divided twice.
    #[test]
    fn yarn_gives_transformers_frequencies_and_attention_factor() {
        let got = RopeScaling::frequencies(Some(&yarn(None, None)), 10_000.0, 8);
        assert_eq!(got, [1.0, 0.0625, 0.0025, 0.000_25]);
        assert!((yarn(None, None).attention_scaling() - 1.138_629_4).abs() < 1e-6);
        // DeepSeek's equal weights cancel; a given factor wins.
        assert_eq!(yarn(Some(1.0), Some(1.0)).attention_scaling(), 1.0);
        let mut given = yarn(None, None);
        if let RopeScaling::Yarn { attention_factor, .. } = &mut given {
            *attention_factor = Some(0.5);
        }
        assert_eq!(given.attention_scaling(), 0.5);
        // The others keep the cosines and sines; dynamic keeps the frequencies.
        assert_eq!(RopeScaling::Dynamic { factor: 2.0 }.attention_scaling(), 1.0);
        assert_eq!(
            RopeScaling::frequencies(Some(&RopeScaling::Dynamic { factor: 2.0 }), 10_000.0, 8),
            crate::reference::rotary::frequencies(10_000.0, 8)
        );
    }
}
