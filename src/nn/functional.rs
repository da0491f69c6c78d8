//! Functional models, as Keras' functional API: named layers wired to earlier ones
//! by name, so a model can branch, merge and carry its own loss terms (a
//! variational autoencoder's reconstruction and KL divergence), in Rust or in JSON.
//!
//! ```json
//! {
//!   "input": { "name": "image", "shape": [784] },
//!   "layers": [
//!     { "name": "encoder.0", "inputs": ["image"], "layer": { "Dense": { "units": 512, "activation": "Relu" } } },
//!     { "name": "mean", "inputs": ["encoder.0"], "layer": { "Dense": { "units": 2 } } },
//!     { "name": "log_var", "inputs": ["encoder.0"], "layer": { "Dense": { "units": 2 } } },
//!     { "name": "z", "inputs": ["mean", "log_var"], "op": "Sampling" },
//!     ...
//!   ],
//!   "outputs": ["reconstruction"],
//!   "objective": { "Terms": [
//!     { "name": "reconstruction", "term": "BceSum", "inputs": ["logits", "image"] },
//!     { "name": "kl", "term": "KlNormal", "inputs": ["mean", "log_var"] }
//!   ] }
//! }
//! ```
//!
//! Contract:
//! - Layers are listed after every layer they read (as Keras writes a functional
//!   model's config); each name is unique and differs from the input's.
//! - A `layer` entry is any [`Layer`] of a `Sequential` on exactly one input; its
//!   tensors are named `<layer name>.<tensor>` (`encoder.0.weight`), so a PyTorch
//!   module with the same attribute names loads the checkpoint; a tensor the
//!   layer ties to an earlier layer's ([`FunctionalLayer::tied`]) is stored once,
//!   under that layer's name, so the PyTorch module ties it too. An `op` entry is a
//!   [`GraphOp`] (merges, slices, reshapes, exp/log/square, sums and means, noise,
//!   constants, sampling).
//! - The objective is either `Supervised` (a loss of the last layer against each
//!   batch's targets: [`Functional::compile_supervised`] gives a `Model` that `fit`
//!   trains) or `Terms` (a weighted sum of per-sample terms the model computes from
//!   the batch alone: [`Functional::compile`]; a `Value` term is any layer of shape
//!   `[1]`, so losses can be written with the ops).
//! - Every layer's output is read by a later layer, a loss or `outputs` (the values a
//!   user reads, such as reconstructions); anything else is an error naming it, as is
//!   a loss or output naming a layer that does not exist.
//! - Loss terms are computed after every layer (they read layers; nothing reads them).

use std::collections::{BTreeMap, HashMap};

use rand::SeedableRng;

use crate::error::{Error, Result};
use crate::gpu::Context;
use crate::graph::{Graph, NodeId, Objective, Op, ParamStore, WeightedTerm, shape_err};
use crate::kernels::loss::Term;
use crate::kernels::noise::Distribution;
use crate::kernels::optim::Optimizer;
use crate::nn::GraphModel;
use crate::nn::build::{LayerBuild, TiedTensor};
use crate::nn::model::ModelSpec;
use crate::nn::{Layer, Loss, Model};

/// The model's input: the batch fed each step.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionalInput {
    /// The name later layers read it by.
    pub name: String,
    /// Shape of one sample, e.g. `[784]` or `[1, 28, 28]`.
    pub shape: Vec<usize>,
}

/// A graph operation that is not a layer: no parameters, one or several inputs.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub enum GraphOp {
    /// Keras' `Add`: the elementwise sum of two or more inputs of one shape.
    Add,
    /// Keras' `Multiply`: the elementwise product of two or more inputs of one shape.
    Multiply,
    /// Keras' `Concatenate` along the first per-sample axis (features, or channels
    /// of `[C, H, W]`); the other axes agree.
    Concatenate,
    /// Entries `start..start + len` of the input's first per-sample axis.
    Slice {
        /// First entry kept.
        start: usize,
        /// Entries kept.
        len: usize,
    },
    /// Keras' `Reshape`: the same values with another per-sample shape.
    Reshape {
        /// The new per-sample shape (same number of values).
        shape: Vec<usize>,
    },
    /// `exp(scale · x)` elementwise (scale ½ turns a log-variance into a deviation).
    Exp {
        /// Factor applied before the exponential.
        #[serde(default = "one")]
        scale: f32,
    },
    /// Values drawn anew every step (training and evaluating), seeded from the
    /// model's seed like dropout masks; no inputs.
    Noise {
        /// The distribution drawn from.
        distribution: Distribution,
        /// Per-sample shape.
        shape: Vec<usize>,
    },
    /// `value` in every element (a loss term's targets); no inputs.
    Constant {
        /// The value.
        value: f32,
        /// Per-sample shape.
        shape: Vec<usize>,
    },
    /// `ln(x)` elementwise (keep the input positive: an exponential, a sigmoid).
    Log,
    /// `x²` elementwise.
    Square,
    /// The sum of each sample's values: `[1]` per sample (a loss term's `Value`).
    Sum,
    /// The mean of each sample's values: `[1]` per sample.
    Mean,
    /// Each token's type (BERT's `token_type_ids`, `[T]` per sample) from token
    /// ids `[T]`: the number of `separator` ids before it, at most `types − 1`,
    /// as BERT's tokenizer types `[CLS] A [SEP] B [SEP]` (0 through the first
    /// `[SEP]`, 1 after it; a single text is all 0). Read by an Embedding of
    /// `types` rows (BERT's `token_type_embeddings`). With `pad` (the word
    /// Embedding's `mask_id`), the types share the ids' padding.
    TokenTypes {
        /// The id ending a segment (BERT's `[SEP]`).
        separator: u32,
        /// The number of token types (BERT's `type_vocab_size`).
        types: usize,
        /// The padding id of the ids, if they are padded.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pad: Option<u32>,
    },
    /// The reparameterised sample of a variational autoencoder from its inputs
    /// `[mean, log_var]`: `mean + exp(log_var / 2) · ε`, ε ~ N(0, I) drawn anew
    /// every step (Keras' example `Sampling` layer).
    Sampling,
}

fn one() -> f32 {
    1.0
}

/// What a functional layer is: a parameterised [`Layer`] or a [`GraphOp`].
#[derive(Clone, Debug, PartialEq)]
pub enum LayerOrOp {
    /// A layer of a `Sequential` (Dense, Conv2D, pooling, BatchNormalization, ...).
    Layer(Layer),
    /// A graph operation.
    Op(GraphOp),
}

/// One named layer of a [`Functional`] model and the layers it reads. In JSON, it
/// has exactly one of `layer` (a [`Layer`]) and `op` (a [`GraphOp`]), and a layer
/// may tie tensors: `"tied": { "weight": "wte.weight" }`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "LayerJson", into = "LayerJson")]
pub struct FunctionalLayer {
    /// Its name: how later layers, losses and outputs name it, the prefix of its
    /// tensors' names, and the name messages give.
    pub name: String,
    /// The names of the layers (or the input) it reads, in order.
    pub inputs: Vec<String>,
    /// What it computes.
    pub what: LayerOrOp,
    /// Tensors of the layer that are an earlier layer's (weight tying, as PyTorch's
    /// `lm_head.weight = wte.weight`): its own tensor's name (`weight`) → the full
    /// name of the tensor it reads instead (`wte.weight`). A tied tensor is one
    /// parameter: it is stored, counted and updated once, and its gradient is the
    /// sum of both layers'. Shapes and trainability must agree; only a `layer` has
    /// tensors to tie.
    pub tied: BTreeMap<String, String>,
}

/// A [`FunctionalLayer`] as JSON writes it.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct LayerJson {
    name: String,
    #[serde(default)]
    inputs: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    layer: Option<Layer>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    op: Option<GraphOp>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    tied: BTreeMap<String, String>,
}

impl TryFrom<LayerJson> for FunctionalLayer {
    type Error = String;

    fn try_from(j: LayerJson) -> std::result::Result<Self, String> {
        let what = match (j.layer, j.op) {
            (Some(l), None) => LayerOrOp::Layer(l),
            (None, Some(_)) if !j.tied.is_empty() => {
                return Err(format!(
                    "layer '{}' ties tensors but is an 'op', which has none; only a 'layer' can \
                     tie its tensors",
                    j.name
                ));
            }
            (None, Some(o)) => LayerOrOp::Op(o),
            (l, _) => {
                return Err(format!(
                    "layer '{}' has {} of 'layer' and 'op'; give exactly one",
                    j.name,
                    if l.is_some() { "both" } else { "neither" }
                ));
            }
        };
        Ok(FunctionalLayer {
            name: j.name,
            inputs: j.inputs,
            what,
            tied: j.tied,
        })
    }
}

impl From<FunctionalLayer> for LayerJson {
    fn from(f: FunctionalLayer) -> LayerJson {
        let (layer, op) = match f.what {
            LayerOrOp::Layer(l) => (Some(l), None),
            LayerOrOp::Op(o) => (None, Some(o)),
        };
        LayerJson {
            name: f.name,
            inputs: f.inputs,
            layer,
            op,
            tied: f.tied,
        }
    }
}

/// What a [`TermLoss`] computes per sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum TermKind {
    /// KL divergence of N(mean, exp(log_var)) from N(0, I), summed over features.
    KlNormal,
    /// Binary cross-entropy of logits against targets, summed over features.
    BceSum,
    /// The mean of the sigmoid of logits over features (reported, weight 0).
    SigmoidMean,
    /// The value of a layer of shape `[1]` per sample (a `Sum` or `Mean`): a loss
    /// written with the model's ops (a mean squared error, a regulariser).
    Value,
}

impl From<Term> for TermKind {
    fn from(t: Term) -> TermKind {
        match t {
            Term::KlNormal => TermKind::KlNormal,
            Term::BceSum => TermKind::BceSum,
            Term::SigmoidMean => TermKind::SigmoidMean,
        }
    }
}

/// A loss term of a [`FunctionalObjective::Terms`].
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TermLoss {
    /// Its name in reports (`reconstruction`, `kl`).
    pub name: String,
    /// What it computes per sample.
    pub term: TermKind,
    /// The layers it reads: `[mean, log_var]` for `KlNormal`, `[logits, targets]`
    /// for `BceSum`, `[logits]` for `SigmoidMean`, `[layer]` for `Value`.
    pub inputs: Vec<String>,
    /// Its weight in the loss; 0 reports it without training on it.
    #[serde(default = "one")]
    pub weight: f32,
}

/// What a functional model is trained to minimise.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum FunctionalObjective {
    /// The weighted sum of loss terms computed from the batch alone (no labels),
    /// averaged over the batch; compiled with [`Functional::compile`].
    Terms(Vec<TermLoss>),
    /// `loss` of layer `output` against the targets fed with each batch (labels or
    /// values), as a `Sequential`'s; compiled with [`Functional::compile_supervised`]
    /// into a [`Model`] that `fit`, `evaluate` and checkpoints take. `output` is the
    /// last layer listed; a final softmax (sigmoid) folds into categorical (binary)
    /// cross-entropy.
    Supervised {
        /// The layer the loss reads.
        output: String,
        /// The loss.
        loss: Loss,
    },
}

/// A functional model: see the module documentation.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Functional {
    /// The batch input.
    pub input: FunctionalInput,
    /// The layers, each after the layers it reads.
    pub layers: Vec<FunctionalLayer>,
    /// Layers whose values users read (besides those the loss reads).
    #[serde(default)]
    pub outputs: Vec<String>,
    /// What training minimises.
    pub objective: FunctionalObjective,
    /// Low-rank adapters on some of its Dense layers and attention projections,
    /// every other tensor frozen (see [`crate::nn::lora`]); `None` trains the
    /// layers themselves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lora: Option<crate::nn::LoraConfig>,
}

/// A functional model's graph: the graph, its objective, and every layer's node.
#[derive(Clone, Debug, PartialEq)]
pub struct FunctionalGraph {
    /// The graph (loss terms last).
    pub graph: Graph,
    /// Its objective.
    pub objective: Objective,
    /// The node of the input and of each layer, by name.
    pub nodes: HashMap<String, NodeId>,
}

impl FunctionalGraph {
    /// The node of layer (or input) `name`.
    pub fn node(&self, name: &str) -> Result<NodeId> {
        self.nodes
            .get(name)
            .copied()
            .ok_or_else(|| Error::invalid(format!("the model has no layer named '{name}'")))
    }
}

impl Functional {
    /// A model on an input `name` of per-sample shape `shape`, with no layers and
    /// no loss terms yet.
    pub fn new(name: &str, shape: &[usize]) -> Functional {
        Functional {
            input: FunctionalInput {
                name: name.into(),
                shape: shape.to_vec(),
            },
            layers: Vec::new(),
            outputs: Vec::new(),
            objective: FunctionalObjective::Terms(Vec::new()),
            lora: None,
        }
    }

    /// Appends layer `layer` named `name`, reading `inputs`.
    pub fn layer(self, name: &str, layer: Layer, inputs: &[&str]) -> Functional {
        self.tied_layer(name, layer, inputs, &[])
    }

    /// Appends layer `layer` named `name`, reading `inputs`, whose tensors named in
    /// `ties` are earlier layers' tensors: `(own tensor, earlier tensor's full
    /// name)`, such as `("weight", "wte.weight")` for a language model's head that
    /// reads its token embedding (see [`FunctionalLayer::tied`]).
    pub fn tied_layer(
        mut self,
        name: &str,
        layer: Layer,
        inputs: &[&str],
        ties: &[(&str, &str)],
    ) -> Functional {
        self.layers.push(FunctionalLayer {
            name: name.into(),
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            what: LayerOrOp::Layer(layer),
            tied: ties
                .iter()
                .map(|(t, to)| (t.to_string(), to.to_string()))
                .collect(),
        });
        self
    }

    /// Appends operation `op` named `name`, reading `inputs`.
    pub fn op(mut self, name: &str, op: GraphOp, inputs: &[&str]) -> Functional {
        self.layers.push(FunctionalLayer {
            name: name.into(),
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            what: LayerOrOp::Op(op),
            tied: BTreeMap::new(),
        });
        self
    }

    /// Marks layer `name` as an output users read.
    pub fn output(mut self, name: &str) -> Functional {
        self.outputs.push(name.into());
        self
    }

    /// Adds loss term `term` named `name` of `inputs`, weighted `weight` (replacing a
    /// supervised objective).
    pub fn loss_term(
        mut self,
        name: &str,
        term: impl Into<TermKind>,
        inputs: &[&str],
        weight: f32,
    ) -> Functional {
        if !matches!(self.objective, FunctionalObjective::Terms(_)) {
            self.objective = FunctionalObjective::Terms(Vec::new());
        }
        let FunctionalObjective::Terms(terms) = &mut self.objective else {
            unreachable!("set above")
        };
        terms.push(TermLoss {
            name: name.into(),
            term: term.into(),
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            weight,
        });
        self
    }

    /// Trains layer `output` with `loss` against each batch's targets (replacing any
    /// loss terms).
    pub fn supervised(mut self, output: &str, loss: Loss) -> Functional {
        self.objective = FunctionalObjective::Supervised {
            output: output.into(),
            loss,
        };
        self
    }

    /// The loss of a supervised model; `None` for one trained on loss terms.
    pub fn supervised_loss(&self) -> Option<Loss> {
        match &self.objective {
            FunctionalObjective::Supervised { loss, .. } => Some(*loss),
            FunctionalObjective::Terms(_) => None,
        }
    }

    /// Builds the graph and its objective, checking the wiring (see the module
    /// documentation); errors name the layer at fault.
    pub fn graph(&self) -> Result<FunctionalGraph> {
        let mut g = Graph::new();
        let mut nodes = HashMap::new();
        let x = g.input(&self.input.shape)?;
        if let Some(lora) = &self.lora {
            lora.validate()?;
        }
        nodes.insert(self.input.name.clone(), x);
        let supervised = match &self.objective {
            FunctionalObjective::Supervised { output, loss } => {
                match self.layers.last() {
                    Some(last) if last.name == *output => {}
                    _ if self.layers.iter().any(|l| l.name == *output) => {
                        return Err(Error::invalid(format!(
                            "the loss reads layer '{output}', which must be the last layer listed"
                        )));
                    }
                    _ => {
                        return Err(Error::invalid(format!(
                            "the loss reads '{output}', which is not a layer of the model"
                        )));
                    }
                }
                Some((output.as_str(), *loss))
            }
            FunctionalObjective::Terms(_) => None,
        };
        for layer in &self.layers {
            if layer.name.is_empty() {
                return Err(Error::invalid("a layer of the model has an empty name"));
            }
            if nodes.contains_key(&layer.name) {
                return Err(Error::invalid(format!(
                    "layer '{}': the name is used twice (layer and input names must be unique)",
                    layer.name
                )));
            }
            let inputs = layer
                .inputs
                .iter()
                .map(|i| {
                    nodes.get(i).copied().ok_or_else(|| {
                        Error::invalid(format!(
                            "layer '{}': reads '{i}', which is neither the input nor a layer listed before it",
                            layer.name
                        ))
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let id = add_layer(&mut g, layer, &inputs, supervised, self.lora.as_ref())?;
            nodes.insert(layer.name.clone(), id);
        }
        let lookup = |what: &str, name: &str| {
            nodes.get(name).copied().ok_or_else(|| {
                Error::invalid(format!(
                    "{what} reads '{name}', which is neither the input nor a layer of the model"
                ))
            })
        };
        let outputs = self
            .outputs
            .iter()
            .map(|o| lookup("the model's outputs", o))
            .collect::<Result<Vec<_>>>()?;
        let terms = match &self.objective {
            FunctionalObjective::Terms(terms) => terms,
            FunctionalObjective::Supervised { output, loss } => {
                let out = nodes[output];
                crate::nn::model::check_output(&g, out, *loss)?;
                let objective = Objective::Supervised {
                    output: out,
                    loss: *loss,
                    class_weights: None,
                };
                check_every_layer_used(&g, &objective, &outputs)?;
                if let Some(lora) = &self.lora {
                    lora.check_matched(&g)?;
                }
                return Ok(FunctionalGraph {
                    graph: g,
                    objective,
                    nodes,
                });
            }
        };
        if terms.is_empty() {
            return Err(Error::invalid(
                "the model has no loss terms: add at least one to its objective",
            ));
        }
        let mut weighted: Vec<WeightedTerm> = Vec::new();
        for t in terms {
            let what = format!("loss term '{}'", t.name);
            if weighted.iter().any(|w| w.name == t.name) {
                return Err(Error::invalid(format!(
                    "{what}: the name is used twice (terms are reported by name)"
                )));
            }
            if !(t.weight.is_finite() && t.weight >= 0.0) {
                return Err(Error::invalid(format!(
                    "{what}: weight {} must be a finite number ≥ 0",
                    t.weight
                )));
            }
            let ins = t
                .inputs
                .iter()
                .map(|i| lookup(&what, i))
                .collect::<Result<Vec<_>>>()?;
            let node = match (t.term, &ins[..]) {
                (TermKind::Value, &[x]) if g.shape(x) == [1] => {
                    // A view of the layer, after every layer (as the other terms),
                    // named apart from the layers.
                    g.reshape(x, &[1], &format!("{} (term)", t.name))?
                }
                (TermKind::Value, &[x]) => {
                    return Err(Error::invalid(format!(
                        "{what}: a Value term reads a layer of shape [1] per sample (a Sum or Mean), \
                         '{}' has {:?}",
                        t.inputs[0],
                        g.shape(x)
                    )));
                }
                (TermKind::SigmoidMean, &[a]) => g.loss_term(Term::SigmoidMean, a, a, &t.name)?,
                (TermKind::KlNormal, &[a, b]) => g.loss_term(Term::KlNormal, a, b, &t.name)?,
                (TermKind::BceSum, &[a, b]) => g.loss_term(Term::BceSum, a, b, &t.name)?,
                (term, _) => {
                    let wanted = match term {
                        TermKind::KlNormal | TermKind::BceSum => 2,
                        TermKind::SigmoidMean | TermKind::Value => 1,
                    };
                    return Err(Error::invalid(format!(
                        "{what}: {term:?} reads {wanted} layers, {} given",
                        ins.len()
                    )));
                }
            };
            weighted.push(WeightedTerm {
                name: t.name.clone(),
                node,
                weight: t.weight,
            });
        }
        if weighted.iter().all(|t| t.weight == 0.0) {
            return Err(Error::invalid(
                "every loss term has weight 0: nothing would be trained",
            ));
        }
        let objective = Objective::Terms(weighted);
        // The loss terms read layers too.
        g.check_padding(None)?;
        check_every_layer_used(&g, &objective, &outputs)?;
        if let Some(lora) = &self.lora {
            lora.check_matched(&g)?;
        }
        Ok(FunctionalGraph {
            graph: g,
            objective,
            nodes,
        })
    }
}

/// Adds one layer's nodes; returns its output node. `supervised` names the layer
/// the loss reads and the loss (a final softmax or sigmoid folds into it).
fn add_layer(
    g: &mut Graph,
    layer: &FunctionalLayer,
    inputs: &[NodeId],
    supervised: Option<(&str, Loss)>,
    lora: Option<&crate::nn::LoraConfig>,
) -> Result<NodeId> {
    let name = &layer.name;
    let arity = |wanted: &str, ok: bool| {
        if ok {
            Ok(())
        } else {
            Err(Error::invalid(format!(
                "layer '{name}': reads {wanted}, {} given",
                inputs.len()
            )))
        }
    };
    match &layer.what {
        LayerOrOp::Layer(l) => {
            if matches!(l, Layer::MultiHeadAttention { .. }) {
                arity(
                    "[query], [query, value] or [query, value, key]",
                    (1..=3).contains(&inputs.len()),
                )?;
            } else {
                arity("one input", inputs.len() == 1)?;
            }
            let tied = layer
                .tied
                .iter()
                .map(|(tensor, to)| {
                    let node = g.param_named(to).ok_or_else(|| {
                        Error::invalid(format!(
                            "layer '{name}': its '{tensor}' is tied to '{to}', which no layer listed \
                             before it has"
                        ))
                    })?;
                    if g.is_moving_statistic(node) {
                        return Err(Error::invalid(format!(
                            "layer '{name}': its '{tensor}' is tied to '{to}', a batch \
                             normalization's moving statistic, which is no weight"
                        )));
                    }
                    Ok(TiedTensor {
                        tensor: tensor.clone(),
                        node,
                        used: false,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let mut build = LayerBuild {
                g,
                x: inputs[0],
                name: name.clone(),
                prefix: name.clone(),
                last: supervised.is_some_and(|(output, _)| output == name),
                loss: supervised.map(|(_, loss)| loss),
                next: None,
                others: inputs[1..].to_vec(),
                tied,
                lora,
            };
            let added = l.add_to(&mut build)?;
            if let Some(unused) = build.tied.iter().find(|t| !t.used) {
                let g = &build.g;
                let own: Vec<String> = g
                    .nodes
                    .iter()
                    .enumerate()
                    .filter(|(id, n)| n.layer == *name && !g.is_moving_statistic(*id))
                    .filter_map(|(_, n)| match &n.op {
                        Op::Param { name: full, .. } => {
                            full.strip_prefix(&format!("{name}.")).map(String::from)
                        }
                        _ => None,
                    })
                    .chain(build.tied.iter().filter(|t| t.used).map(|t| t.tensor.clone()))
                    .collect();
                return Err(Error::invalid(format!(
                    "layer '{name}' has no tensor '{}' to tie; its tensors are: {}",
                    unused.tensor,
                    if own.is_empty() {
                        "none".to_string()
                    } else {
                        own.join(", ")
                    }
                )));
            }
            Ok(added.x)
        }
        LayerOrOp::Op(op) => match op {
            GraphOp::Add | GraphOp::Multiply => {
                arity("two or more inputs", inputs.len() >= 2)?;
                let mut acc = inputs[0];
                for &x in &inputs[1..] {
                    acc = if *op == GraphOp::Add {
                        g.add(acc, x, name)?
                    } else {
                        g.mul(acc, x, name)?
                    };
                }
                Ok(acc)
            }
            GraphOp::Concatenate => {
                arity("one or more inputs", !inputs.is_empty())?;
                g.concat(inputs, name)
            }
            GraphOp::Slice { start, len } => {
                arity("one input", inputs.len() == 1)?;
                g.slice(inputs[0], *start, *len, name)
            }
            GraphOp::Reshape { shape } => {
                arity("one input", inputs.len() == 1)?;
                g.reshape(inputs[0], shape, name)
            }
            GraphOp::Exp { scale } => {
                arity("one input", inputs.len() == 1)?;
                g.exp(inputs[0], *scale, name)
            }
            GraphOp::Noise { distribution, shape } => {
                arity("no inputs", inputs.is_empty())?;
                g.noise(shape, *distribution, name)
            }
            GraphOp::Constant { value, shape } => {
                arity("no inputs", inputs.is_empty())?;
                g.constant(shape, *value, name)
            }
            GraphOp::Log => {
                arity("one input", inputs.len() == 1)?;
                Ok(g.log(inputs[0], name))
            }
            GraphOp::Square => {
                arity("one input", inputs.len() == 1)?;
                Ok(g.square(inputs[0], name))
            }
            GraphOp::Sum | GraphOp::Mean => {
                arity("one input", inputs.len() == 1)?;
                Ok(g.sum(inputs[0], *op == GraphOp::Mean, name))
            }
            GraphOp::TokenTypes {
                separator,
                types,
                pad,
            } => {
                arity("one input (token ids)", inputs.len() == 1)?;
                g.token_types(inputs[0], *separator, *types, *pad, name)
            }
            GraphOp::Sampling => {
                arity("two inputs (mean, log_var)", inputs.len() == 2)?;
                let (mean, log_var) = (inputs[0], inputs[1]);
                let std = g.exp(log_var, 0.5, name)?;
                let shape = g.shape(mean).to_vec();
                let eps = g.noise(&shape, Distribution::STANDARD_NORMAL, name)?;
                let scaled = g.mul(std, eps, name)?;
                g.add(mean, scaled, name)
            }
        },
    }
}

/// Every value node is read by a later node, the objective or `outputs`; else an
/// error naming the first layer whose output nothing reads.
fn check_every_layer_used(g: &Graph, objective: &Objective, outputs: &[NodeId]) -> Result<()> {
    let mut used = vec![false; g.nodes.len()];
    for id in 0..g.nodes.len() {
        for i in g.inputs(id) {
            used[i] = true;
        }
    }
    let read_by_objective = match objective {
        Objective::Terms(terms) => terms.iter().map(|t| t.node).collect(),
        other => other.roots(),
    };
    for id in read_by_objective.into_iter().chain(outputs.iter().copied()) {
        used[id] = true;
    }
    match (0..g.nodes.len()).find(|&id| g.nodes[id].batched() && !used[id]) {
        Some(id) => Err(shape_err(
            &g.nodes[id].layer,
            "its output is read by nothing (no later layer, loss or model output): remove it or \
             list it in the model's outputs"
                .into(),
        )),
        None => Ok(()),
    }
}

/// A functional model compiled onto one GPU: its description, its layers' nodes and
/// the [`GraphModel`] holding graph, parameters, optimizer state and plans.
#[derive(Debug)]
pub struct FunctionalModel {
    /// The description it was compiled from.
    pub spec: Functional,
    /// The node of the input and of each layer, by name.
    pub nodes: HashMap<String, NodeId>,
    /// The graph, its objective, parameters, optimizer and plans.
    pub net: GraphModel,
}

impl Functional {
    /// Compiles the model onto `ctx`: Glorot-uniform weights and zero biases drawn
    /// from `seed`, noise and dropout seeded from `seed`, the optimizer's state.
    pub fn compile(&self, ctx: &Context, optimizer: Optimizer, seed: u64) -> Result<FunctionalModel> {
        if let FunctionalObjective::Supervised { .. } = self.objective {
            return Err(Error::invalid(
                "a functional model with a supervised loss compiles into a Model: use compile_supervised",
            ));
        }
        let FunctionalGraph {
            mut graph,
            objective,
            nodes,
        } = self.graph()?;
        graph.seed_random(seed);
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let store = ParamStore::new(ctx, &graph, optimizer.state_count(), &mut rng)?;
        Ok(FunctionalModel {
            spec: self.clone(),
            nodes,
            net: GraphModel::new(ctx, graph, objective, store, optimizer)?,
        })
    }
}

impl Functional {
    /// Compiles a model with a [`FunctionalObjective::Supervised`] objective onto
    /// `ctx` as a [`Model`] (what `fit`, `evaluate`, `predict` and
    /// `checkpoint::save_model` take): weights drawn from `seed`, dropout and noise
    /// seeded from it, the optimizer's state.
    pub fn compile_supervised(&self, ctx: &Context, optimizer: Optimizer, seed: u64) -> Result<Model> {
        let FunctionalObjective::Supervised { loss, .. } = self.objective else {
            return Err(Error::invalid(
                "a functional model trained on loss terms compiles with compile (it has no targets)",
            ));
        };
        let FunctionalGraph { graph, objective, .. } = self.graph()?;
        let Objective::Supervised { output, .. } = objective else {
            unreachable!("a supervised objective builds a supervised graph")
        };
        Model::from_graph(
            ctx,
            ModelSpec::Functional(self.clone()),
            graph,
            output,
            loss,
            optimizer,
            seed,
        )
    }
}

impl FunctionalModel {
    /// The values of layer (or input) `name` for the samples `x`, evaluated in
    /// batches of `batch`.
    pub fn values(&mut self, ctx: &Context, name: &str, x: &[f32], batch: usize) -> Result<Vec<f32>> {
        let node = self
            .nodes
            .get(name)
            .copied()
            .ok_or_else(|| Error::invalid(format!("the model has no layer named '{name}'")))?;
        let sample = self.net.sample_len();
        self.net.values(ctx, node, x, sample, batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::FunctionalArchitecture;
    use crate::graph::Op;
    use crate::nn::{LayerActivation, Vae};

    fn dense(units: usize) -> Layer {
        Layer::Dense {
            units,
            activation: LayerActivation::Relu,
            use_bias: true,
            trainable: true,
        }
    }

    fn err(f: &Functional) -> String {
        f.graph().expect_err("the model is refused").to_string()
    }

    /// A model using every graph op: two branches merged by Add, Multiply and
    /// Concatenate, a slice, a reshape, a constant target and a sampled point.
    fn every_op() -> Functional {
        Functional::new("x", &[6])
            .layer("a", dense(4), &["x"])
            .layer("b", dense(4), &["x"])
            .op("sum", GraphOp::Add, &["a", "b", "a"])
            .op("product", GraphOp::Multiply, &["sum", "b"])
            .op("joined", GraphOp::Concatenate, &["product", "a"])
            .op("half", GraphOp::Slice { start: 2, len: 4 }, &["joined"])
            .op("square", GraphOp::Reshape { shape: vec![2, 2] }, &["half"])
            .layer("flat", Layer::Flatten, &["square"])
            .op("grown", GraphOp::Exp { scale: 0.5 }, &["flat"])
            .op("z", GraphOp::Sampling, &["flat", "grown"])
            .layer("logits", dense(4), &["z"])
            .op(
                "ones",
                GraphOp::Constant {
                    value: 1.0,
                    shape: vec![4],
                },
                &[],
            )
            .op(
                "noise",
                GraphOp::Noise {
                    distribution: Distribution::STANDARD_NORMAL,
                    shape: vec![4],
                },
                &[],
            )
            .op("noisy", GraphOp::Add, &["logits", "noise"])
            .op("logged", GraphOp::Log, &["grown"])
            .op("squared", GraphOp::Square, &["logged"])
            .op("total", GraphOp::Sum, &["squared"])
            .op("average", GraphOp::Mean, &["logits"])
            .loss_term("bce", Term::BceSum, &["noisy", "ones"], 1.0)
            .loss_term("kl", Term::KlNormal, &["flat", "grown"], 0.5)
            .loss_term("p", Term::SigmoidMean, &["logits"], 0.0)
            .loss_term("l2", TermKind::Value, &["total"], 0.1)
            .loss_term("avg", TermKind::Value, &["average"], 0.0)
    }

    #[test]
    fn the_example_vae_file_is_the_built_in_vae() {
        let text = include_str!("../../examples/models/vae.json");
        let a: FunctionalArchitecture = serde_json::from_str(text).unwrap();
        assert_eq!(a.functional, Vae::MNIST.functional());
        assert_eq!(a.optimizer, Optimizer::adam(1e-3));
    }

    /// `a` [4 → 3], then `b` reading `a`'s weight through `ties`; the graph or
    /// its error.
    fn tied(b: Layer, ties: &[(&str, &str)]) -> Result<FunctionalGraph> {
        Functional::new("x", &[4])
            .layer("a", dense(3), &["x"])
            .layer("mid", dense(4), &["a"])
            .tied_layer("b", b, &["mid"], ties)
            .op("m", GraphOp::Mean, &["b"])
            .loss_term("m", TermKind::Value, &["m"], 1.0)
            .graph()
    }

    #[test]
    fn a_tied_tensor_is_the_earlier_parameter_and_mismatches_are_named() {
        let built = tied(dense(3), &[("weight", "a.weight")]).unwrap();
        let g = &built.graph;
        let w = g.param_named("a.weight").unwrap();
        assert!(g.param_named("b.weight").is_none());
        assert!(g.param_named("b.bias").is_some());
        let reads = |layer: &str| {
            g.nodes
                .iter()
                .enumerate()
                .filter(|(_, n)| n.layer == layer && matches!(n.op, Op::Dense { .. }))
                .any(|(id, _)| g.inputs(id).contains(&w))
        };
        assert!(reads("a") && reads("b"));
        // JSON: "tied" on the layer, left out when empty.
        let f = Functional::new("x", &[4]).tied_layer("b", dense(3), &["x"], &[("weight", "a.weight")]);
        let json = serde_json::to_string(&f).unwrap();
        assert!(json.contains(r#""tied":{"weight":"a.weight"}"#), "{json}");
        assert_eq!(serde_json::from_str::<Functional>(&json).unwrap(), f);
        assert!(!serde_json::to_string(&every_op()).unwrap().contains("tied"));
        let e = |b: Layer, ties: &[(&str, &str)]| tied(b, ties).unwrap_err().to_string();
        let says = |e: String, want: &[&str]| {
            for w in want {
                assert!(e.contains(w), "{w:?} in {e}");
            }
        };
        says(
            e(dense(3), &[("weight", "z.weight")]),
            &["layer 'b'", "'z.weight'", "no layer listed before"],
        );
        says(
            e(dense(3), &[("weight", "b.weight")]),
            &["'b.weight'", "no layer listed before"],
        );
        says(
            e(dense(5), &[("weight", "a.weight")]),
            &["layer 'b'", "[5, 4]", "[3, 4]"],
        );
        says(
            e(dense(3), &[("kernel", "a.weight")]),
            &["no tensor 'kernel'", "weight, bias"],
        );
        says(
            e(dense(3).frozen(), &[("weight", "a.weight")]),
            &["layer 'b' is frozen", "'a.weight'", "trainable"],
        );
        // A batch normalization's moving statistics are state, not weights.
        let stats = Functional::new("x", &[4])
            .layer("bn", Layer::batch_norm(), &["x"])
            .tied_layer("d", dense(4).frozen(), &["bn"], &[("bias", "bn.running_mean")])
            .op("m", GraphOp::Mean, &["d"])
            .loss_term("m", TermKind::Value, &["m"], 1.0);
        says(
            err(&stats),
            &["layer 'd'", "'bn.running_mean'", "moving statistic"],
        );
        let op = r#"{"name": "s", "inputs": ["x"], "op": "Square", "tied": {"weight": "a.weight"}}"#;
        let e = serde_json::from_str::<FunctionalLayer>(op)
            .unwrap_err()
            .to_string();
        assert!(e.contains("only a 'layer'"), "{e}");
    }

    #[test]
    fn every_op_round_trips_through_json_and_builds() {
        let f = every_op();
        let json = serde_json::to_string_pretty(&f).unwrap();
        let back: Functional = serde_json::from_str(&json).unwrap();
        assert_eq!(back, f);
        let built = f.graph().unwrap();
        let Objective::Terms(terms) = &built.objective else {
            panic!("terms")
        };
        assert_eq!(
            terms
                .iter()
                .map(|t| (t.name.as_str(), t.weight))
                .collect::<Vec<_>>(),
            [("bce", 1.0), ("kl", 0.5), ("p", 0.0), ("l2", 0.1), ("avg", 0.0)]
        );
        // Loss terms come last; tensors are named after their layers.
        let first_term = terms[0].node;
        assert!(
            built.graph.nodes[first_term..]
                .iter()
                .all(|n| matches!(n.op, Op::LossTerm { .. } | Op::Reshape { .. }))
        );
        assert_eq!(built.graph.shape(built.node("total").unwrap()), [1]);
        let names: Vec<&str> = built
            .graph
            .nodes
            .iter()
            .filter_map(|n| match &n.op {
                Op::Param { name, .. } => Some(name.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(
            names,
            [
                "a.weight",
                "a.bias",
                "b.weight",
                "b.bias",
                "logits.weight",
                "logits.bias"
            ]
        );
        assert_eq!(built.graph.shape(built.node("joined").unwrap()), [8]);
        assert_eq!(built.graph.shape(built.node("square").unwrap()), [2, 2]);
    }

    #[test]
    fn wiring_mistakes_are_errors_naming_the_layer() {
        let base = || Functional::new("x", &[3]).layer("h", dense(2), &["x"]);
        let with_loss = |f: Functional| f.loss_term("kl", Term::KlNormal, &["h", "h"], 1.0);
        for (f, wanted) in [
            (
                with_loss(base().layer("g", dense(2), &["nothing"])),
                "layer 'g': reads 'nothing'",
            ),
            (
                with_loss(base().layer("h", dense(2), &["x"])),
                "layer 'h': the name is used twice",
            ),
            (
                with_loss(base().layer("x", dense(2), &["h"])),
                "layer 'x': the name is used twice",
            ),
            (
                with_loss(base().layer("unused", dense(2), &["h"])),
                "layer 'unused': its output is read by nothing",
            ),
            (
                with_loss(base().layer("two", dense(2), &["h", "x"])),
                "layer 'two': reads one input, 2 given",
            ),
            (
                with_loss(base().op("sum", GraphOp::Add, &["h", "x"])),
                "layer 'sum': Add needs inputs of one shape, got [2] and [3]",
            ),
            (
                with_loss(base().op("one", GraphOp::Add, &["h"])),
                "layer 'one': reads two or more inputs, 1 given",
            ),
            (
                with_loss(base().op(
                    "n",
                    GraphOp::Noise {
                        distribution: Distribution::STANDARD_NORMAL,
                        shape: vec![2],
                    },
                    &["h"],
                )),
                "layer 'n': reads no inputs, 1 given",
            ),
            (
                with_loss(base().output("missing")),
                "the model's outputs reads 'missing'",
            ),
            (
                base().loss_term("kl", Term::KlNormal, &["h", "gone"], 1.0),
                "loss term 'kl' reads 'gone'",
            ),
            (
                base().loss_term("kl", Term::KlNormal, &["h"], 1.0),
                "loss term 'kl': KlNormal reads 2 layers, 1 given",
            ),
            (
                base().loss_term("kl", Term::KlNormal, &["h", "h"], 0.0),
                "every loss term has weight 0",
            ),
            (
                base().loss_term("kl", Term::KlNormal, &["h", "h"], f32::NAN),
                "loss term 'kl': weight NaN",
            ),
            (
                base().loss_term("bce", Term::BceSum, &["h", "h"], 1.0),
                "the targets of a binary cross-entropy term take no gradient",
            ),
            (base(), "the model has no loss terms"),
            (
                with_loss(base()).loss_term("kl", Term::KlNormal, &["h", "h"], 1.0),
                "loss term 'kl': the name is used twice",
            ),
            (
                base().loss_term("v", TermKind::Value, &["h"], 1.0),
                "loss term 'v': a Value term reads a layer of shape [1] per sample",
            ),
            (
                with_loss(
                    base()
                        .layer(
                            "s",
                            Layer::Dense {
                                units: 2,
                                activation: LayerActivation::Softmax,
                                use_bias: true,
                                trainable: true,
                            },
                            &["x"],
                        )
                        .output("s"),
                ),
                "layer 's': softmax is supported only as the activation of the output the loss reads",
            ),
        ] {
            let got = err(&f);
            assert!(got.contains(wanted), "{wanted:?} in {got:?}");
        }
    }

    #[test]
    fn a_supervised_output_is_the_last_layer_and_folds_its_softmax() {
        let softmax = Layer::Dense {
            units: 3,
            activation: LayerActivation::Softmax,
            use_bias: true,
            trainable: true,
        };
        let scce = Loss::SparseCategoricalCrossentropy;
        let f = Functional::new("x", &[4])
            .layer("h", dense(5), &["x"])
            .layer("g", dense(5), &["x"])
            .op("sum", GraphOp::Add, &["h", "g"])
            .layer("out", softmax.clone(), &["sum"])
            .supervised("out", scce);
        let built = f.graph().unwrap();
        let out = built.node("out").unwrap();
        assert_eq!(
            built.objective,
            Objective::Supervised {
                output: out,
                loss: scce,
                class_weights: None
            }
        );
        assert!(matches!(
            built.graph.nodes[out].op,
            Op::Dense {
                act: crate::kernels::matmul::Activation::Identity,
                ..
            }
        ));
        let early = f.clone().layer("late", dense(2), &["out"]);
        assert!(err(&early).contains("layer 'out', which must be the last layer listed"));
        let missing = f.clone().supervised("nowhere", scce);
        assert!(err(&missing).contains("'nowhere', which is not a layer"));
        let inner = Functional::new("x", &[4])
            .layer("s", softmax, &["x"])
            .layer("out", dense(3), &["s"])
            .supervised("out", scce);
        assert!(err(&inner).contains("layer 's': softmax is supported only"));
        let image = Functional::new("x", &[1, 4, 4])
            .layer(
                "c",
                Layer::Conv2D {
                    filters: 2,
                    kernel: (3, 3),
                    stride: (1, 1),
                    padding: crate::kernels::conv::Padding::Valid,
                    activation: LayerActivation::Linear,
                    use_bias: true,
                    trainable: true,
                },
                &["x"],
            )
            .supervised("c", Loss::MeanSquaredError);
        assert!(err(&image).contains("add Flatten"), "{}", err(&image));
    }

    #[test]
    fn misspelt_fields_of_layers_ops_and_optimizers_are_errors() {
        for (bad, field) in [
            (r#"{"Dense": {"units": 3, "activaton": "Relu"}}"#, "activaton"),
            (
                r#"{"Conv2D": {"filters": 3, "kernel": [3, 3], "strides": [2, 2]}}"#,
                "strides",
            ),
        ] {
            let e = serde_json::from_str::<Layer>(bad).unwrap_err().to_string();
            assert!(e.contains(&format!("unknown field `{field}`")), "{e}");
        }
        let e = serde_json::from_str::<GraphOp>(r#"{"Exp": {"factor": 0.5}}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `factor`"), "{e}");
        let e = serde_json::from_str::<Optimizer>(r#"{"Adam": {"lr": 0.001, "beta_1": 0.5}}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `beta_1`"), "{e}");
        let e = serde_json::from_str::<Distribution>(r#"{"Normal": {"mean": 0, "sd": 1}}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `sd`"), "{e}");
    }

    #[test]
    fn bad_json_is_refused_with_serdes_reason() {
        let bad = r#"{ "input": { "name": "x", "shape": [3] }, "layers": [
            { "name": "h", "inputs": ["x"], "layer": { "Dense": { "units": 2 } }, "op": "Add" } ],
            "objective": { "Terms": [] } }"#;
        let e = serde_json::from_str::<Functional>(bad).unwrap_err().to_string();
        assert!(e.contains("layer 'h' has both of 'layer' and 'op'"), "{e}");
        let typo = bad.replace(r#", "op": "Add""#, "").replace("inputs", "inptus");
        let e = serde_json::from_str::<Functional>(&typo).unwrap_err().to_string();
        assert!(e.contains("unknown field `inptus`"), "{e}");
        let unknown = r#"{ "input": { "name": "x", "shape": [3] }, "layers": [
            { "name": "h", "inputs": ["x"], "op": "Subtract" } ], "objective": { "Terms": [] } }"#;
        assert!(serde_json::from_str::<Functional>(unknown).is_err());
    }
}
