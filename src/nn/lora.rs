//! Low-rank adapters (LoRA, Hu et al. 2021) for fine-tuning, as Hugging Face
//! PEFT's `LoraConfig` sets them up: every targeted Dense layer (or attention
//! projection) `y = act(x·Wᵀ + b)` becomes
//! `y = act(x·Wᵀ + b + (α/r)·(dropout(x)·Aᵀ)·Bᵀ)` with A `[r, in]` drawn as
//! PEFT draws it (Kaiming-uniform with a = √5: U(±1/√in)) and B `[out, r]` zero,
//! so training starts from the base model's outputs exactly. Only the adapters
//! (and the layers named in [`LoraConfig::train`], PEFT's `modules_to_save`) train;
//! every other tensor of the model is frozen, biases included (PEFT's
//! `bias="none"`).
//!
//! The adapters of the module `M` (a layer's name, or `NAME.query`, `.key`,
//! `.value`, `.output` inside a MultiHeadAttention) are the tensors
//! `M.lora_A.weight` and `M.lora_B.weight`: PEFT's names without its
//! `base_model.model.` prefix, in PyTorch's Linear layout. A checkpoint holds
//! them next to the frozen base; [`merged`] folds them into the base weights
//! (PEFT's `merge_and_unload`), which is what exporting to a plain model does.
//!
//! A targeted Conv2D gets PEFT's convolutional adapter: A `[r, C, kh, kw]` is a
//! convolution with the layer's window, stride and padding (U(±1/√(C·kh·kw))), B
//! `[out, r, 1, 1]` a 1×1 convolution back, so B·A has the weight's shape
//! (Conv2DTranspose layers take none). [`ALL_LINEAR`] names Dense layers and
//! projections only, as PEFT's does; a Conv2D is targeted by name.
//!
//! From Rust (compiled by `cargo test`, not run):
//! ```no_run
//! use wgml::kernels::optim::Optimizer;
//! use wgml::nn::{Layer, LayerActivation as A, LoraConfig, Loss, Sequential, lora};
//!
//! # fn main() -> wgml::Result<()> {
//! let ctx = wgml::Context::new(&Default::default())?;
//! let loss = Loss::SparseCategoricalCrossentropy;
//! let base = wgml::checkpoint::load(std::path::Path::new("base.safetensors"))?;
//! let mut spec = Sequential::new(&[784])
//!     .add(Layer::dense(256, A::Relu))
//!     .add(Layer::dense(10, A::Softmax));
//! let adapters = LoraConfig { dropout: 0.05, ..LoraConfig::new(8, &[lora::ALL_LINEAR]) };
//! spec.lora = Some(adapters.clone());
//! let model = spec.compile(&ctx, loss, Optimizer::adam(1e-3), 42)?;
//! model.load_matching(&ctx, &base.tensors)?; // the base; the adapters start anew
//! // ... train with wgml::train::fit ...
//! let plain = lora::merged(&model.store.download(&ctx)?, &adapters)?; // merge_and_unload
//! # Ok(())
//! # }
//! ```
//!
//! In the graph, the adapter is three small ops beside the frozen Dense: the
//! rank-r product, its scaling (on the `[r]` intermediate, where it costs
//! nothing) and the product back to `out`, added to the Dense's output before the
//! activation. A frozen Dense computes no weight gradient, so a LoRA step skips the
//! largest products of full fine-tuning.

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::graph::params::NamedValues;
use crate::graph::{Graph, Op};

/// The tensor name suffix of an adapter's A (`[r, in]`).
pub const LORA_A: &str = "lora_A.weight";
/// The tensor name suffix of an adapter's B (`[out, r]`).
pub const LORA_B: &str = "lora_B.weight";
/// The target that names every Dense layer and projection but the model's output
/// layer (PEFT's `"all-linear"`).
pub const ALL_LINEAR: &str = "all-linear";

/// Which layers get low-rank adapters, and their size (PEFT's `LoraConfig`).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoraConfig {
    /// The rank r of each adapter (PEFT's `r`), at least 1.
    pub rank: usize,
    /// α: the adapter's output is scaled by α / r (PEFT's `lora_alpha`).
    pub alpha: f32,
    /// Dropout on the adapter's input while training (PEFT's `lora_dropout`), in
    /// [0, 1).
    #[serde(default)]
    pub dropout: f32,
    /// The modules that get adapters (PEFT's `target_modules`): a module matches a
    /// target equal to its name or to a last part of it at a dot (`query` matches
    /// `h.0.attn.query`, `mlp.c_fc` matches `h.3.mlp.c_fc`); [`ALL_LINEAR`] names
    /// every Dense layer and projection but the output layer the loss reads.
    pub targets: Vec<String>,
    /// Layers trained in full beside the adapters (PEFT's `modules_to_save`, e.g.
    /// a new classification head), matched as targets are, by layer name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub train: Vec<String>,
    /// Ranks of the modules whose rank is not `rank` (PEFT's `rank_pattern`): a
    /// key names modules as a target does; where several name a module, the
    /// longest wins.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rank_pattern: BTreeMap<String, usize>,
    /// α of the modules whose α is not `alpha` (PEFT's `alpha_pattern`), keyed as
    /// `rank_pattern`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub alpha_pattern: BTreeMap<String, f32>,
}

impl LoraConfig {
    /// Adapters of rank `rank` on `targets` with PEFT's defaults: α = 8, no
    /// dropout.
    pub fn new(rank: usize, targets: &[&str]) -> LoraConfig {
        LoraConfig {
            rank,
            alpha: 8.0,
            dropout: 0.0,
            targets: targets.iter().map(|t| t.to_string()).collect(),
            train: Vec::new(),
            rank_pattern: BTreeMap::new(),
            alpha_pattern: BTreeMap::new(),
        }
    }

    /// α / r, the factor of the output of every adapter without a pattern of its
    /// own.
    pub fn scaling(&self) -> f32 {
        self.alpha / self.rank as f32
    }

    /// The rank of module `module`'s adapter: its [`LoraConfig::rank_pattern`]
    /// entry, else `rank`.
    pub fn rank_of(&self, module: &str) -> usize {
        pattern(&self.rank_pattern, module).unwrap_or(self.rank)
    }

    /// α of module `module`'s adapter: its [`LoraConfig::alpha_pattern`] entry,
    /// else `alpha`.
    pub fn alpha_of(&self, module: &str) -> f32 {
        pattern(&self.alpha_pattern, module).unwrap_or(self.alpha)
    }

    /// The factor of module `module`'s adapter output: its α over its rank.
    pub fn scaling_of(&self, module: &str) -> f32 {
        self.alpha_of(module) / self.rank_of(module) as f32
    }

    /// Checks the settings; errors name the setting and what it needs.
    pub fn validate(&self) -> Result<()> {
        if self.rank == 0 {
            return Err(Error::invalid("LoRA: the rank r must be at least 1"));
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            return Err(Error::invalid(format!(
                "LoRA: alpha must be a finite number > 0, got {}",
                self.alpha
            )));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(Error::invalid(format!(
                "LoRA: dropout must be in [0, 1), got {}",
                self.dropout
            )));
        }
        if self.targets.is_empty() {
            return Err(Error::invalid(
                "LoRA: no target modules given (name the layers that get adapters, or all-linear)",
            ));
        }
        if let Some(t) = self
            .targets
            .iter()
            .chain(&self.train)
            .chain(self.rank_pattern.keys())
            .chain(self.alpha_pattern.keys())
            .find(|t| t.trim().is_empty())
        {
            return Err(Error::invalid(format!("LoRA: empty module name {t:?}")));
        }
        if let Some((m, _)) = self.rank_pattern.iter().find(|(_, r)| **r == 0) {
            return Err(Error::invalid(format!(
                "LoRA: the rank of '{m}' must be at least 1"
            )));
        }
        if let Some((m, a)) = self
            .alpha_pattern
            .iter()
            .find(|(_, a)| !(a.is_finite() && **a > 0.0))
        {
            return Err(Error::invalid(format!(
                "LoRA: the alpha of '{m}' must be a finite number > 0, got {a}"
            )));
        }
        Ok(())
    }

    /// Whether module `module` gets an adapter; `output` says whether it is the
    /// output layer the loss reads (which [`ALL_LINEAR`] leaves out).
    pub fn targets_module(&self, module: &str, output: bool) -> bool {
        self.targets.iter().any(|t| {
            if t == ALL_LINEAR {
                !output
            } else {
                names(module, t)
            }
        })
    }

    /// Whether a target names module `module` itself ([`ALL_LINEAR`] leaves
    /// convolutions out, as PEFT's does).
    pub fn names_module(&self, module: &str) -> bool {
        self.targets.iter().any(|t| t != ALL_LINEAR && names(module, t))
    }

    /// Keeps the pattern keys that name one of `modules` (PEFT ignores the others).
    pub(crate) fn retain_patterns_naming(&mut self, modules: &[String]) {
        let named = |key: &String| modules.iter().any(|m| names(m, key));
        self.rank_pattern.retain(|k, _| named(k));
        self.alpha_pattern.retain(|k, _| named(k));
    }

    /// Whether layer `layer`'s own tensors train (it is in [`LoraConfig::train`]).
    pub fn trains_layer(&self, layer: &str) -> bool {
        self.train.iter().any(|t| names(layer, t))
    }

    /// Checks that every target and every layer to train names something in
    /// `graph` (built with this configuration); else an error listing what could be
    /// named.
    pub fn check_matched(&self, graph: &Graph) -> Result<()> {
        let params: Vec<(&str, bool)> = graph
            .nodes
            .iter()
            .filter_map(|n| match &n.op {
                Op::Param { name, trainable, .. } => Some((name.as_str(), *trainable)),
                _ => None,
            })
            .collect();
        let adapted: Vec<&str> = params
            .iter()
            .filter_map(|(p, _)| p.strip_suffix(&format!(".{LORA_A}")))
            .collect();
        let linear: Vec<&str> = graph
            .nodes
            .iter()
            .filter_map(|n| match &n.op {
                Op::Dense { w, .. } | Op::Conv2d { w, .. } => match &graph.nodes[*w].op {
                    Op::Param { name, .. } => name.strip_suffix(".weight"),
                    _ => None,
                },
                _ => None,
            })
            .filter(|m| !is_adapter(&format!("{m}.weight")))
            .collect();
        for t in &self.targets {
            let hit = if t == ALL_LINEAR {
                !adapted.is_empty()
            } else {
                adapted.iter().any(|m| names(m, t))
            };
            if !hit {
                return Err(Error::invalid(format!(
                    "LoRA target '{t}' names no Dense layer, Conv2D or attention projection of the \
                     model (its modules: {})",
                    linear.join(", ")
                )));
            }
        }
        for key in self.rank_pattern.keys().chain(self.alpha_pattern.keys()) {
            if !adapted.iter().any(|m| names(m, key)) {
                return Err(Error::invalid(format!(
                    "LoRA: the pattern key '{key}' names no module with an adapter (adapted: {})",
                    adapted.join(", ")
                )));
            }
        }
        for t in &self.train {
            // A trained layer's tensors are trainable and named `LAYER.…`.
            let hit = params.iter().any(|(p, trainable)| {
                *trainable && !is_adapter(p) && p.match_indices('.').any(|(at, _)| names(&p[..at], t))
            });
            if !hit {
                return Err(Error::invalid(format!(
                    "LoRA: the layer to train '{t}' names no layer with trainable tensors"
                )));
            }
        }
        Ok(())
    }
}

/// Whether tensor `name` is an adapter's A or B.
pub fn is_adapter(name: &str) -> bool {
    name.ends_with(&format!(".{LORA_A}")) || name.ends_with(&format!(".{LORA_B}"))
}

/// The value of the longest key of `map` that names `module`, if any.
fn pattern<T: Copy>(map: &BTreeMap<String, T>, module: &str) -> Option<T> {
    map.iter()
        .filter(|(key, _)| names(module, key))
        .max_by_key(|(key, _)| key.len())
        .map(|(_, v)| *v)
}

/// Whether `target` names `module`: equal, or a last part of it at a dot.
fn names(module: &str, target: &str) -> bool {
    module == target
        || module
            .strip_suffix(target)
            .is_some_and(|head| head.ends_with('.'))
}

/// `tensors` with every adapter folded into its base weight, `W + (α/r)·B·A`
/// (each module's own α and r under the patterns; PEFT's `merge_and_unload`), and the adapter tensors dropped: the tensors of
/// the same model without adapters. An adapter without its base weight, or of
/// shapes that do not fit it, is an error naming it.
pub fn merged(tensors: &[NamedValues], config: &LoraConfig) -> Result<Vec<NamedValues>> {
    config.validate()?;
    let find = |name: &str| tensors.iter().find(|(n, _, _)| n == name);
    let mut out = Vec::with_capacity(tensors.len());
    for (name, shape, values) in tensors {
        if is_adapter(name) {
            continue;
        }
        let mut values = values.clone();
        if let Some(module) = name.strip_suffix(".weight") {
            let a = find(&format!("{module}.{LORA_A}"));
            let b = find(&format!("{module}.{LORA_B}"));
            match (a, b) {
                (Some((_, sa, a)), Some((_, sb, b))) => {
                    // A [r, in...], B [out, r] (or [out, r, 1, 1]), W [out, in...].
                    let fits = sa.len() >= 2
                        && sb.len() >= 2
                        && sa.len() == shape.len()
                        && sb[1] == sa[0]
                        && sb[2..].iter().all(|&d| d == 1)
                        && sb[0] == shape[0]
                        && sa[1..] == shape[1..];
                    if !fits {
                        return Err(adapter_shape(module, sa, sb, shape));
                    }
                    let (o, r) = (shape[0], sa[0]);
                    let i = values.len() / o;
                    add_low_rank(&mut values, config.scaling_of(module), b, a, (o, r, i));
                }
                (None, None) => {}
                _ => {
                    return Err(Error::invalid(format!(
                        "LoRA: module '{module}' has only one of {LORA_A} and {LORA_B}"
                    )));
                }
            }
        }
        out.push((name.clone(), shape.clone(), values));
    }
    for (name, _, _) in tensors {
        if let Some(module) = name.strip_suffix(&format!(".{LORA_A}"))
            && find(&format!("{module}.weight")).is_none()
        {
            return Err(Error::invalid(format!(
                "LoRA: adapter '{name}' has no base weight '{module}.weight' to merge into"
            )));
        }
    }
    Ok(out)
}

fn adapter_shape(module: &str, a: &[usize], b: &[usize], w: &[usize]) -> Error {
    Error::invalid(format!(
        "LoRA: the adapter of '{module}' (A {a:?}, B {b:?}) does not fit its weight {w:?} \
         (A [r, in...], B [out, r] or [out, r, 1, 1], weight [out, in...])"
    ))
}

/// `w += s·b·a` for row-major `w` `[o, i]`, `b` `[o, r]`, `a` `[r, i]`, summed in f64.
pub(crate) fn add_low_rank(w: &mut [f32], s: f32, b: &[f32], a: &[f32], (o, r, i): (usize, usize, usize)) {
    for row in 0..o {
        for col in 0..i {
            let dot: f64 = (0..r)
                .map(|k| b[row * r + k] as f64 * a[k * i + col] as f64)
                .sum();
            w[row * i + col] += (s as f64 * dot) as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_match_whole_names_or_last_parts_at_a_dot() {
        let c = LoraConfig::new(4, &["query", "mlp.c_fc"]);
        assert!(c.targets_module("h.0.attn.query", false));
        assert!(c.targets_module("query", false));
        assert!(c.targets_module("h.11.mlp.c_fc", false));
        assert!(!c.targets_module("h.0.attn.subquery", false));
        assert!(!c.targets_module("h.0.attn.key", false));
        assert!(!c.targets_module("h.0.c_fc", false));
        let all = LoraConfig::new(4, &[ALL_LINEAR]);
        assert!(all.targets_module("h.0.attn.key", false));
        assert!(!all.targets_module("lm_head", true));
    }

    #[test]
    fn settings_out_of_range_are_refused_by_name() {
        let message = |c: LoraConfig| c.validate().unwrap_err().to_string();
        let base = LoraConfig::new(4, &["q"]);
        assert!(
            message(LoraConfig {
                rank: 0,
                ..base.clone()
            })
            .contains("rank")
        );
        assert!(
            message(LoraConfig {
                alpha: 0.0,
                ..base.clone()
            })
            .contains("alpha")
        );
        assert!(
            message(LoraConfig {
                dropout: 1.0,
                ..base.clone()
            })
            .contains("dropout")
        );
        assert!(
            message(LoraConfig {
                targets: vec![],
                ..base.clone()
            })
            .contains("target")
        );
        assert!(base.validate().is_ok());
    }

    #[test]
    fn merging_adds_the_scaled_low_rank_product_and_drops_the_adapters() {
        // W [2, 3], A [1, 3], B [2, 1], α/r = 2/1.
        let mut c = LoraConfig::new(1, &["fc"]);
        c.alpha = 2.0;
        let tensors: Vec<NamedValues> = vec![
            ("fc.bias".into(), vec![2], vec![0.5, 0.5]),
            ("fc.lora_A.weight".into(), vec![1, 3], vec![1.0, 2.0, 3.0]),
            ("fc.lora_B.weight".into(), vec![2, 1], vec![1.0, -1.0]),
            ("fc.weight".into(), vec![2, 3], vec![0.0; 6]),
        ];
        let m = merged(&tensors, &c).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].2, vec![0.5, 0.5]);
        assert_eq!(m[1].0, "fc.weight");
        assert_eq!(m[1].2, vec![2.0, 4.0, 6.0, -2.0, -4.0, -6.0]);
        let mut bad = tensors.clone();
        bad[1].1 = vec![1, 4];
        bad[1].2 = vec![0.0; 4];
        assert!(merged(&bad, &c).unwrap_err().to_string().contains("does not fit"));
        let orphan = vec![tensors[1].clone(), tensors[2].clone()];
        assert!(
            merged(&orphan, &c)
                .unwrap_err()
                .to_string()
                .contains("no base weight")
        );
    }
}
