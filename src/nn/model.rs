//! `Sequential` (the description) and `Model` (the description compiled onto a GPU:
//! graph, parameters, optimizer state and one plan per batch size).

use std::collections::HashMap;

use rand::SeedableRng;

use crate::error::{Error, Result};
use crate::gpu::{Context, Dispatch, Tensor};
use crate::graph::plan::{Accumulators, Pass};
use crate::graph::{ClipNorm, Ema, Graph, LabelSmoothing, NodeId, ParamStore, Plan, PlanOptions};
use crate::kernels::optim::{Optimizer, StepUniform, StepValues};
use crate::nn::build::LayerBuild;
use crate::nn::dynamic_padding;
use crate::nn::functional::LayerOrOp;
use crate::nn::{Functional, Layer, LoraConfig, Loss};

/// A stack of layers on an input of a given per-sample shape, as Keras' Sequential.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Sequential {
    /// Shape of one sample, e.g. `[C, H, W]` for images or `[F]` for features.
    pub input_shape: Vec<usize>,
    /// The layers, first to last.
    pub layers: Vec<Layer>,
    /// Low-rank adapters on some of its Dense layers, every other tensor frozen
    /// (see [`crate::nn::lora`]); `None` trains the layers themselves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lora: Option<LoraConfig>,
}

impl Sequential {
    /// An empty model on samples of shape `input_shape`; add layers with [`Sequential::add`].
    pub fn new(input_shape: &[usize]) -> Sequential {
        Sequential {
            input_shape: input_shape.to_vec(),
            layers: Vec::new(),
            lora: None,
        }
    }

    /// Appends a layer.
    #[allow(clippy::should_implement_trait)]
    pub fn add(mut self, layer: Layer) -> Sequential {
        self.layers.push(layer);
        self
    }

    /// Builds the graph for training with `loss`. Parameter names follow the
    /// `state_dict` of the equivalent PyTorch `nn.Sequential`, where every
    /// non-linear activation is a module of its own (so Conv2D(relu) is `0` and its
    /// ReLU `1`). Returns the graph and its output node (the logits when the final
    /// softmax or sigmoid is folded into the loss).
    pub fn graph(&self, loss: Loss) -> Result<(Graph, NodeId)> {
        let mut g = Graph::new();
        let mut x = g.input(&self.input_shape)?;
        if self.layers.is_empty() {
            return Err(Error::invalid("the model has no layers"));
        }
        if let Some(lora) = &self.lora {
            lora.validate()?;
        }
        // PyTorch's module index of the next layer's first module.
        let mut index = 0usize;
        // Set by a layer that ran the next one (an Activation) inside its own node.
        let mut fold_next = false;
        for (i, layer) in self.layers.iter().enumerate() {
            if std::mem::take(&mut fold_next) {
                index += 1; // the folded Activation keeps its module index
                continue;
            }
            let count = self.layers.len();
            let added = layer.add_to(&mut LayerBuild {
                g: &mut g,
                x,
                name: format!("{} #{}", layer.kind(), i + 1),
                prefix: index.to_string(),
                last: i + 1 == count,
                loss: Some(loss),
                others: Vec::new(),
                tied: Vec::new(),
                lora: self.lora.as_ref(),
                next: self
                    .layers
                    .get(i + 1)
                    .map(|next| (next, format!("{} #{}", next.kind(), i + 2), i + 2 == count)),
            })?;
            x = added.x;
            index += added.modules;
            fold_next = added.folds_next;
        }
        check_output(&g, x, loss)?;
        if let Some(lora) = &self.lora {
            lora.check_matched(&g)?;
        }
        Ok((g, x))
    }

    /// Compiles the model onto `ctx`: builds the graph, initialises the parameters
    /// (Glorot uniform weights, zero biases, drawn from `seed`), seeds the dropout
    /// masks from `seed`, and allocates the optimizer state.
    pub fn compile(&self, ctx: &Context, loss: Loss, optimizer: Optimizer, seed: u64) -> Result<Model> {
        let (graph, output) = self.graph(loss)?;
        Model::from_graph(
            ctx,
            ModelSpec::Sequential(self.clone()),
            graph,
            output,
            loss,
            optimizer,
            seed,
        )
    }
}

/// Checks that a model's output of per-sample shape `out` suits `loss`:
/// `[classes >= 2]` for categorical cross-entropy, or `[T, classes]` for a label
/// per position (a sequence model's next tokens); flat `[features]` for the
/// other losses. Padded sequences must be read only by what skips the padding
/// ([`Graph::check_padding`](crate::graph::Graph)), and the output must not be one,
/// as the losses count every token, except a label per position under
/// categorical cross-entropy: a token classifier's, whose data gives padding
/// no label ([`crate::data::NO_LABEL`], as
/// [`crate::data::tagged_words`] reads it), which the loss skips; and a padded
/// sequence's positions as the classes (a question-answering head's `[2, T]`
/// start and end scores, see [`Graph::check_padding`](crate::graph::Graph)).
pub(crate) fn check_output(g: &Graph, output: NodeId, loss: Loss) -> Result<()> {
    let scored = (loss == Loss::SparseCategoricalCrossentropy).then_some(output);
    g.check_padding(scored)?;
    let out = g.shape(output);
    if !(loss == Loss::SparseCategoricalCrossentropy && out.len() == 2) {
        g.refuse_padded(
            output,
            "the loss, which counts every token,",
            &g.nodes[output].layer,
        )?;
    }
    match loss {
        Loss::SparseCategoricalCrossentropy if !(1..=2).contains(&out.len()) || out[out.len() - 1] < 2 => {
            Err(Error::shape(
                "model",
                format!(
                    "categorical cross-entropy needs an output of [classes >= 2], or [positions, \
                     classes] for a label per position (a sequence); the model gives {out:?}: add \
                     Flatten (or a Reshape) before the last layer"
                ),
            ))
        }
        Loss::SparseCategoricalCrossentropy => Ok(()),
        _ if out.len() != 1 => Err(Error::shape(
            "model",
            format!("the model's output must be flat [features], got {out:?}; add Flatten"),
        )),
        _ => Ok(()),
    }
}

/// Whether `output` scores a padded sequence's positions (a question
/// answerer's start and end: [`crate::graph::Op::MaskPositions`]).
fn scores_positions(g: &Graph, output: NodeId) -> bool {
    matches!(g.nodes[output].op, crate::graph::Op::MaskPositions { .. })
}

/// What a [`Model`] was compiled from: a stack of layers or a functional model
/// with a supervised loss.
#[derive(Clone, Debug, PartialEq)]
pub enum ModelSpec {
    /// A [`Sequential`] stack.
    Sequential(Sequential),
    /// A [`Functional`] model with a supervised objective.
    Functional(Functional),
}

/// Whether `outputs` values per sample under `loss` are one score (a regression).
fn gives_scores(loss: Loss, outputs: usize) -> bool {
    loss == Loss::MeanSquaredError && outputs == 1
}

/// Whether `outputs` values per sample under `loss` are a multi-label
/// classifier's (a sigmoid per class).
fn gives_sets(loss: Loss, outputs: usize) -> bool {
    loss == Loss::BinaryCrossentropy && outputs >= 2
}

/// What a table's labels are to a model of output `shape` (one sample's)
/// under `loss`, reading token ids padded when `pads`: a tag per word for a
/// padded model classifying every token, numbers for one score, sets of classes
/// for a multi-label classifier, else one class each.
fn table_labels_of(
    loss: Loss,
    shape: &[usize],
    pads: bool,
    answers: bool,
) -> crate::data::text_table::TableLabels {
    use crate::data::text_table::TableLabels;
    let outputs = shape.iter().product::<usize>();
    if answers {
        TableLabels::Answers
    } else if pads && loss.label_positions(shape) > 1 {
        TableLabels::Tags
    } else if gives_scores(loss, outputs) {
        TableLabels::Score
    } else if gives_sets(loss, outputs) {
        TableLabels::Set
    } else {
        TableLabels::Class
    }
}

impl ModelSpec {
    /// Shape of one input sample.
    pub fn input_shape(&self) -> &[usize] {
        match self {
            ModelSpec::Sequential(s) => &s.input_shape,
            ModelSpec::Functional(f) => &f.input.shape,
        }
    }

    /// Compiles the model onto `ctx` (see [`Sequential::compile`] and
    /// [`Functional::compile_supervised`]); `loss` is the `Sequential`'s, and must be
    /// the functional model's own.
    pub fn compile(&self, ctx: &Context, loss: Loss, optimizer: Optimizer, seed: u64) -> Result<Model> {
        match self {
            ModelSpec::Sequential(s) => s.compile(ctx, loss, optimizer, seed),
            ModelSpec::Functional(f) => {
                match f.supervised_loss() {
                    Some(own) if own == loss => {}
                    Some(own) => {
                        return Err(Error::invalid(format!(
                            "the functional model trains with {}, not {}",
                            own.name(),
                            loss.name()
                        )));
                    }
                    None => {
                        return Err(Error::invalid(
                            "the functional model trains on its own loss terms, not a supervised loss",
                        ));
                    }
                }
                f.compile_supervised(ctx, optimizer, seed)
            }
        }
    }

    /// The model's summary (see [`Sequential::summary`], [`Functional::summary`]).
    pub fn summary(&self, loss: Loss) -> Result<crate::nn::Summary> {
        match self {
            ModelSpec::Sequential(s) => s.summary(loss),
            ModelSpec::Functional(f) => f.summary(),
        }
    }

    /// The padding id of the model's token ids: the `mask_id` of an Embedding
    /// reading the input (a `Sequential`'s first layer); `None` when the model
    /// masks no padding. Data padded to the model's tokens pads with it.
    pub fn padding_id(&self) -> Option<u32> {
        let mask = |l: &Layer| match l {
            Layer::Embedding { mask_id, .. } => *mask_id,
            _ => None,
        };
        match self {
            ModelSpec::Sequential(s) => s.layers.first().and_then(mask),
            ModelSpec::Functional(f) => f.layers.iter().find_map(|l| match &l.what {
                crate::nn::functional::LayerOrOp::Layer(layer) if l.inputs == [f.input.name.as_str()] => {
                    mask(layer)
                }
                _ => None,
            }),
        }
    }

    /// The graph this description builds on samples of `tokens` token ids
    /// instead of its own T, and its output node (for dynamic padding,
    /// [`crate::nn::dynamic_padding`]).
    pub(crate) fn graph_with_tokens(&self, loss: Loss, tokens: usize) -> Result<(Graph, NodeId)> {
        match self {
            ModelSpec::Sequential(s) => Sequential {
                input_shape: vec![tokens],
                ..s.clone()
            }
            .graph(loss),
            ModelSpec::Functional(f) => {
                let mut f = f.clone();
                f.input.shape = vec![tokens];
                let built = f.graph()?;
                match built.objective {
                    crate::graph::Objective::Supervised { output, .. } => Ok((built.graph, output)),
                    _ => Err(Error::invalid("the functional model has no supervised output")),
                }
            }
        }
    }

    /// Whether the model gives one score per sample under mean squared error (a
    /// regression, as Hugging Face's `num_labels` 1 heads): a table of texts'
    /// labels are then read as numbers, not classes.
    pub fn scores(&self, loss: Loss) -> bool {
        self.outputs(loss)
            .is_some_and(|s| gives_scores(loss, s.iter().product()))
    }

    /// Whether the model is a multi-label classifier: two or more outputs under
    /// binary cross-entropy (a sigmoid each, Hugging Face's
    /// `multi_label_classification`); a table of texts' labels are then sets
    /// of classes.
    pub fn multi_label(&self, loss: Loss) -> bool {
        self.outputs(loss)
            .is_some_and(|s| gives_sets(loss, s.iter().product()))
    }

    /// What a table of texts' labels are to the model trained with `loss`
    /// (one graph built).
    pub fn table_labels(&self, loss: Loss) -> crate::data::text_table::TableLabels {
        let pads = self.padding_id().is_some();
        self.output_graph(loss)
            .map_or(crate::data::text_table::TableLabels::Class, |(g, out)| {
                table_labels_of(loss, g.shape(out), pads, scores_positions(&g, out))
            })
    }

    /// The shape of one sample's output, when the model's graph builds.
    fn outputs(&self, loss: Loss) -> Option<Vec<usize>> {
        self.output_graph(loss).map(|(g, out)| g.shape(out).to_vec())
    }

    /// The model's graph and its output, when it builds.
    fn output_graph(&self, loss: Loss) -> Option<(Graph, NodeId)> {
        let built = match self {
            ModelSpec::Sequential(s) => s.graph(loss),
            ModelSpec::Functional(f) => f.graph().and_then(|b| match b.objective {
                crate::graph::Objective::Supervised { output, .. } => Ok((b.graph, output)),
                _ => Err(Error::invalid("no supervised output")),
            }),
        };
        built.ok()
    }

    /// The stack of layers, for a `Sequential` model.
    pub fn sequential(&self) -> Option<&Sequential> {
        match self {
            ModelSpec::Sequential(s) => Some(s),
            ModelSpec::Functional(_) => None,
        }
    }

    /// The layer description named `layer` in `graph` messages (`"Dense #3"` in a
    /// `Sequential`, the layer's name in a functional model), if it is a layer with
    /// parameters' kind.
    pub(crate) fn layer_named(&self, layer: &str) -> Option<&Layer> {
        match self {
            ModelSpec::Sequential(s) => {
                let number = layer.rsplit_once(" #")?.1.parse::<usize>().ok()?;
                s.layers.get(number.checked_sub(1)?)
            }
            ModelSpec::Functional(f) => {
                f.layers
                    .iter()
                    .find(|l| l.name == layer)
                    .and_then(|l| match &l.what {
                        LayerOrOp::Layer(l) => Some(l),
                        LayerOrOp::Op(_) => None,
                    })
            }
        }
    }
}

impl Model {
    /// A model of `graph` (built from `spec`) trained with `loss` of node `output`:
    /// the parameters initialised from `seed` (Glorot-uniform weights, zero
    /// biases), dropout and noise seeded from it, the optimizer's state allocated.
    pub(crate) fn from_graph(
        ctx: &Context,
        spec: ModelSpec,
        mut graph: Graph,
        output: NodeId,
        loss: Loss,
        optimizer: Optimizer,
        seed: u64,
    ) -> Result<Model> {
        optimizer.validate()?;
        graph.seed_random(seed);
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let store = ParamStore::new(ctx, &graph, optimizer.state_count(), &mut rng)?;
        // Token ids [T] an Embedding masks: batches may run shorter.
        let padding = match spec.input_shape() {
            &[t] => spec.padding_id().map(|pad| (pad, t)),
            _ => None,
        };
        let mut model = Model {
            padding,
            dynamic_padding: true,
            short_graphs: HashMap::new(),
            unshortened: None,
            spec,
            loss,
            step_uniform: StepUniform::new(ctx)?,
            acc: Accumulators::new(ctx)?,
            optimizer,
            graph,
            output,
            store,
            plans: HashMap::new(),
            step: 0,
            draws: 0,
            fuse: true,
            clip_norm: None,
            no_decay: Vec::new(),
            label_smoothing: None,
            class_weights: None,
            ema: None,
            top_k: None,
        };
        model.shorten();
        Ok(model)
    }
}

/// A compiled model: everything resident on one GPU.
#[derive(Debug)]
pub struct Model {
    /// The description the model was compiled from.
    pub spec: ModelSpec,
    /// The loss it trains with.
    pub loss: Loss,
    /// The optimizer and its hyperparameters.
    pub optimizer: Optimizer,
    /// The computation graph built from `spec`.
    pub graph: Graph,
    /// The padding id of the model's token-id input and its T, when an
    /// Embedding masks padding.
    padding: Option<(u32, usize)>,
    /// Run each batch of a padded model at the length its longest sample
    /// needs, rounded up to a power of two ([`crate::nn::dynamic_padding`]),
    /// instead of the model's whole T. On by default; models without padding,
    /// and those it does not apply to ([`Model::dynamic_padding_unavailable`]),
    /// ignore it. Host-buffer steps ([`Model::train_step_on_buffers`],
    /// [`Model::predict_on_buffers`]) always run the whole T.
    pub dynamic_padding: bool,
    /// `graph` on shorter samples, at every bucket below T, by tokens (built
    /// when the model is compiled; empty where dynamic padding does not apply).
    short_graphs: HashMap<usize, Graph>,
    /// Why dynamic padding does not apply to this padded model, if it does not.
    unshortened: Option<String>,
    /// The graph's output node (the logits when the final activation is folded into the loss).
    pub output: NodeId,
    /// Every parameter's value, gradient and optimizer state on the GPU.
    pub store: ParamStore,
    /// The per-step uniform (step and draw numbers, learning rate, a pass' weight)
    /// read by the optimizer, gradient-accumulation, dropout and noise dispatches.
    pub step_uniform: StepUniform,
    /// GPU-resident loss and correct-prediction sums, read once per epoch.
    pub acc: Accumulators,
    plans: HashMap<PlanOptions, Plan>,
    /// Optimizer steps taken (the `t` of bias correction).
    pub step: u32,
    /// Forward/backward passes taken while training: the counter of dropout's and
    /// noise's random draws. Equal to `step` unless gradients were accumulated
    /// ([`Model::train_step_accumulated`] takes a pass per batch).
    pub draws: u32,
    /// Let the planner fuse layers where a fused kernel serves this adapter better
    /// (see [`PlanOptions::fuse`]); set before the first step. On by default.
    pub fuse: bool,
    /// Clip every training step's gradients to this global norm, as PyTorch's
    /// `clip_grad_norm_` (Keras' `global_clipnorm`); off by default. Plans are
    /// built for the value at hand, so it may change between steps.
    pub clip_norm: Option<ClipNorm>,
    /// The patterns of [`Model::exclude_from_weight_decay`] in force (empty: every
    /// trainable tensor decays).
    no_decay: Vec<String>,
    /// Smooth the labels of the sparse categorical cross-entropy, as PyTorch's
    /// `CrossEntropyLoss(label_smoothing=ε)` and Keras' `label_smoothing`; off by
    /// default. The loss of training and evaluation steps includes it (as Keras'
    /// `val_loss` does); plans are built for the value at hand.
    pub label_smoothing: Option<LabelSmoothing>,
    /// Per-class weights of the training loss ([`Model::set_class_weights`]).
    class_weights: Option<Vec<f32>>,
    /// The exponential moving average of the weights kept, if any
    /// ([`Model::set_ema`]).
    ema: Option<Ema>,
    /// Evaluations also measure the top-k accuracy (Keras'
    /// `SparseTopKCategoricalAccuracy(k)`): the share of labels among the k
    /// largest outputs, ties counting. Sparse categorical cross-entropy only; off
    /// by default.
    pub top_k: Option<usize>,
}

/// One batch on the CPU: samples and their targets (labels or values).
#[derive(Clone, Copy, Debug)]
pub struct Batch<'a> {
    /// The samples, `len × sample` values.
    pub x: &'a [f32],
    /// Class labels for categorical cross-entropy, [`Model::label_positions`]
    /// per sample (one, or one per position of a sequence output); empty otherwise.
    pub labels: &'a [u32],
    /// Target values, `len × output_dim`, for the other losses; used when `labels` is empty.
    pub values: &'a [f32],
    /// Number of samples in the batch.
    pub len: usize,
}

impl Model {
    /// What the model trains: its loss of its output against the batch's targets.
    pub fn objective(&self) -> crate::graph::Objective {
        crate::graph::Objective::Supervised {
            output: self.output,
            loss: self.loss,
            class_weights: self.class_weights.clone(),
        }
    }

    /// Weighs each training sample's loss by the weight of its class, as Keras'
    /// `fit(class_weight=...)`: `weights` holds one weight per class for sparse
    /// categorical cross-entropy, `[w0, w1]` (targets below 0.5, from 0.5) for a
    /// binary cross-entropy of one output; each finite and ≥ 0. The batch loss is
    /// Σ weight·loss / B (Keras' sum over the batch size, not PyTorch's division by
    /// Σ weight), and the training loss reported is that; evaluation and validation
    /// are unweighted. `None` removes the weights. Drops
    /// the plans built before.
    pub fn set_class_weights(&mut self, weights: Option<Vec<f32>>) -> Result<()> {
        if let Some(w) = &weights {
            // Classes per label (a sequence output has a label per position).
            let out = self.output_dim() / self.label_positions();
            let (want, what) = match self.loss {
                Loss::SparseCategoricalCrossentropy => (out, "one per class"),
                Loss::BinaryCrossentropy if out == 1 => (2, "of targets 0 and 1"),
                _ => {
                    return Err(Error::invalid(format!(
                        "class weights apply to a classifier (sparse categorical cross-entropy, or \
                         binary cross-entropy of one output); this model trains with {} of {out} \
                         output(s)",
                        self.loss.name()
                    )));
                }
            };
            if w.len() != want {
                return Err(Error::invalid(format!(
                    "{want} class weights are needed ({what}); {} given",
                    w.len()
                )));
            }
            if let Some(bad) = w.iter().find(|v| !(v.is_finite() && **v >= 0.0)) {
                return Err(Error::invalid(format!(
                    "class weight {bad} must be a finite number >= 0"
                )));
            }
        }
        self.class_weights = weights;
        self.plans.clear();
        Ok(())
    }

    /// Keeps an exponential moving average of the trained weights with this
    /// momentum (Keras' `use_ema=True, ema_momentum=m`), updated on the GPU after
    /// every optimizer step from the next one on (which takes the weights
    /// themselves, as Keras' first step); `None` keeps none. A change drops the
    /// averages kept so far (a new momentum starts a new average) and the plans
    /// built for the old setting. [`Model::finalize_ema`] puts the averages in the
    /// weights' place, as [`fit`] does at its end.
    ///
    /// [`fit`]: crate::train::fit()
    pub fn set_ema(&mut self, ema: Option<Ema>) {
        if ema == self.ema {
            return;
        }
        for p in &mut self.store.params {
            p.ema = None;
        }
        self.ema = ema;
        self.plans.clear();
    }

    /// The model's low-rank adapters, if its description has them.
    pub fn spec_lora(&self) -> Option<&LoraConfig> {
        match &self.spec {
            ModelSpec::Sequential(s) => s.lora.as_ref(),
            ModelSpec::Functional(f) => f.lora.as_ref(),
        }
    }

    /// The moving average kept, if any ([`Model::set_ema`]).
    pub fn ema(&self) -> Option<Ema> {
        self.ema
    }

    /// Replaces each trainable weight with its moving average (Keras' optimizer
    /// `finalize_variable_values` with `use_ema`); nothing when the model keeps no
    /// average. Queued, nothing read back.
    pub fn finalize_ema(&self, ctx: &Context) -> Result<()> {
        if self.ema.is_none() {
            return Ok(());
        }
        self.store.finalize_averages(ctx)
    }

    /// The weight-decay exclusion patterns in force ([`Model::exclude_from_weight_decay`]).
    pub fn no_decay(&self) -> &[String] {
        &self.no_decay
    }

    /// The class weights in force ([`Model::set_class_weights`]).
    pub fn class_weights(&self) -> Option<&[f32]> {
        self.class_weights.as_deref()
    }

    /// Excludes from the optimizer's weight decay every trainable tensor whose
    /// PyTorch name matches one of `patterns`, as Keras'
    /// `exclude_from_weight_decay(var_names=...)` and a PyTorch parameter group with
    /// `weight_decay=0` do: each pattern is a regular expression searched in the
    /// names (`bias` matches every bias, `ln_` GPT-2's layer norms, `^0\.weight$`
    /// one tensor). Each pattern must match a trainable tensor. Replaces an earlier
    /// exclusion (none given: every tensor decays again) and drops the plans built
    /// before, which hold the old decays. Returns the names excluded.
    pub fn exclude_from_weight_decay(&mut self, patterns: &[&str]) -> Result<Vec<String>> {
        let compiled = patterns
            .iter()
            .map(|p| {
                regex::Regex::new(p).map_err(|e| {
                    Error::invalid(format!(
                        "weight-decay exclusion '{p}' is not a regular expression: {e}"
                    ))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let trainable = || self.store.params.iter().filter(|p| p.trainable);
        for (p, re) in patterns.iter().zip(&compiled) {
            if !trainable().any(|t| re.is_match(&t.name)) {
                let names: Vec<&str> = trainable().take(8).map(|t| t.name.as_str()).collect();
                return Err(Error::invalid(format!(
                    "weight-decay exclusion '{p}' matches no trainable tensor; the model's are named \
                     like {}{}",
                    names.join(", "),
                    if trainable().count() > names.len() {
                        ", …"
                    } else {
                        ""
                    }
                )));
            }
        }
        let mut excluded = Vec::new();
        for t in self.store.params.iter_mut().filter(|p| p.trainable) {
            t.decay = !compiled.iter().any(|re| re.is_match(&t.name));
            if !t.decay {
                excluded.push(t.name.clone());
            }
        }
        self.no_decay = patterns.iter().map(|p| p.to_string()).collect();
        self.plans.clear();
        Ok(excluded)
    }

    /// The plan options for a batch of `batch` samples.
    pub fn options(&self, batch: usize, train: bool) -> PlanOptions {
        PlanOptions {
            batch,
            train,
            fuse: self.fuse,
            clip_norm: self.clip_norm.filter(|_| train),
            accumulate: false,
            label_smoothing: self.label_smoothing,
            ema: self.ema.filter(|_| train),
            top_k: self.top_k.filter(|_| !train),
            tokens: None,
        }
    }

    /// The plan options of a training pass on `batch` samples that may accumulate
    /// gradients ([`Model::train_step_accumulated`]).
    pub fn accumulating_options(&self, batch: usize) -> PlanOptions {
        PlanOptions {
            accumulate: true,
            ..self.options(batch, true)
        }
    }

    /// Builds the plans of `options` that do not exist yet, compiling all the
    /// pipelines they need together, in parallel (one worker per core), instead of
    /// one plan's at a time when each is first used. Returns how many pipelines
    /// were compiled.
    pub fn prepare(&mut self, ctx: &Context, options: &[PlanOptions]) -> Result<u64> {
        let before = ctx.counters().pipelines_created;
        let new: Vec<PlanOptions> = options
            .iter()
            .copied()
            .filter(|o| !self.plans.contains_key(o))
            .collect();
        let built = ctx.deferring_pipelines(|| {
            for &o in &new {
                self.plan(ctx, o)?;
            }
            Ok(())
        });
        if let Err(e) = built {
            // Plans built before the failure have pipelines that will never be
            // compiled: drop them, so a later use builds them again.
            for o in &new {
                self.plans.remove(o);
            }
            return Err(e);
        }
        Ok(ctx.counters().pipelines_created - before)
    }

    /// The plan for `options`, built on first use.
    pub fn plan(&mut self, ctx: &Context, options: PlanOptions) -> Result<&Plan> {
        if !self.plans.contains_key(&options) {
            if let Some(t) = options.tokens
                && !self.short_graphs.contains_key(&t)
            {
                return Err(Error::invalid(format!(
                    "no plan runs {t} tokens: the model has no graph at that length (dynamic \
                     padding builds them at powers of two below its T, where it applies)"
                )));
            }
            if options.accumulate {
                self.store.ensure_accumulators(ctx)?;
            }
            if options.ema.is_some() {
                // Averages made now start at the next step.
                self.store.ensure_averages(ctx, self.step + 1)?;
            }
            // The plan's pipelines compile together, one thread per core.
            let plan = ctx.deferring_pipelines(|| {
                Plan::build(
                    ctx,
                    options.tokens.map_or(&self.graph, |t| &self.short_graphs[&t]),
                    &self.objective(),
                    &self.store,
                    &self.optimizer,
                    &self.step_uniform,
                    &self.acc,
                    options,
                )
            })?;
            self.plans.insert(options, plan);
        }
        Ok(&self.plans[&options])
    }

    /// Whether the samples are texts: token ids an Embedding pads.
    pub fn pads_texts(&self) -> bool {
        self.padding.is_some()
    }

    /// The options of every plan built so far, in no particular order.
    pub fn built_plans(&self) -> Vec<PlanOptions> {
        self.plans.keys().copied().collect()
    }

    /// Builds the model's graph at every bucket below its T (checked against its
    /// own, [`dynamic_padding::shortened`]). Where one does not apply, dynamic
    /// padding is off for the model and the reason kept.
    fn shorten(&mut self) {
        let Some((_, full)) = self.padding else {
            return;
        };
        for tokens in dynamic_padding::buckets_between(0, full - 1, full) {
            let short = self
                .spec
                .graph_with_tokens(self.loss, tokens)
                .map_err(|e| Error::invalid(format!("the model does not build on {tokens} tokens ({e})")))
                .and_then(|(rebuilt, output)| {
                    dynamic_padding::shortened(&self.graph, self.output, &rebuilt, output)
                });
            match short {
                Ok(graph) => {
                    self.short_graphs.insert(tokens, graph);
                }
                Err(e) => {
                    self.short_graphs.clear();
                    self.unshortened = Some(e.to_string());
                    return;
                }
            }
        }
    }

    /// Why dynamic padding does not apply to this model of padded token ids
    /// (a layer that reads the ids or their sequence without skipping the
    /// padding); `None` where it applies or the model pads nothing. Its
    /// batches then run the whole window.
    pub fn dynamic_padding_unavailable(&self) -> Option<&str> {
        self.unshortened.as_deref()
    }

    /// The padding id and T when batches may run shorter: the model pads, dynamic
    /// padding applies to it, and is on.
    fn shortening(&self) -> Option<(u32, usize)> {
        self.padding
            .filter(|_| self.dynamic_padding && self.unshortened.is_none())
    }

    /// The real tokens of each sample of `x` (token ids, the model's T per
    /// sample) when the model pads dynamically ([`Model::dynamic_padding`]);
    /// `None` otherwise.
    pub fn sample_lengths(&self, x: &[f32]) -> Option<Vec<usize>> {
        let (pad, full) = self.shortening()?;
        Some(dynamic_padding::sample_lengths(x, full, pad).collect())
    }

    /// The tokens each sample of `x` would run at alone when the model pads
    /// dynamically: its bucket ([`dynamic_padding::bucket`]), or the model's T;
    /// `None` when the model does not pad dynamically. A batch runs at its
    /// samples' largest.
    pub fn sample_buckets(&self, x: &[f32]) -> Option<Vec<usize>> {
        let (_, full) = self.padding?;
        let lengths = self.sample_lengths(x)?;
        Some(
            lengths
                .into_iter()
                .map(|l| dynamic_padding::bucket(l, full).unwrap_or(full))
                .collect(),
        )
    }

    /// The tokens a batch of the samples `x` runs at: its bucket
    /// ([`dynamic_padding::bucket`]) when the model pads dynamically and the
    /// batch needs less than its T; `None` (the whole T) otherwise.
    pub fn batch_tokens(&self, x: &[f32]) -> Option<usize> {
        let (pad, full) = self.shortening()?;
        if x.is_empty() || !x.len().is_multiple_of(full) {
            return None;
        }
        dynamic_padding::bucket(dynamic_padding::sample_lengths(x, full, pad).max()?, full)
    }

    /// `options` and `batch` for the tokens the batch runs at
    /// ([`Model::batch_tokens`]): the samples cut to them into `cut`.
    fn at_batch_tokens<'a>(
        &self,
        options: PlanOptions,
        batch: &Batch<'a>,
        (cut, cut_labels): (&'a mut Vec<f32>, &'a mut Vec<u32>),
    ) -> (PlanOptions, Batch<'a>) {
        match (self.batch_tokens(batch.x), self.padding) {
            (Some(t), Some((_, full))) => {
                dynamic_padding::cut(batch.x, full, t, cut);
                // A label per token (a token classifier's) is cut with its token;
                // the positions cut off are padding, which has no target.
                let labels = if batch.labels.len() == batch.len * full && full > 1 {
                    dynamic_padding::cut(batch.labels, full, t, cut_labels);
                    &cut_labels[..]
                } else {
                    batch.labels
                };
                let options = PlanOptions {
                    tokens: Some(t),
                    ..options
                };
                (
                    options,
                    Batch {
                        x: cut,
                        labels,
                        ..*batch
                    },
                )
            }
            _ => (options, *batch),
        }
    }

    /// Checks that `data`'s targets fit this model: class labels (fewer classes than
    /// outputs) for categorical cross-entropy, as many values per sample as outputs
    /// for the other losses.
    pub fn check_data(&self, data: &crate::data::Split) -> Result<()> {
        use crate::data::Targets;
        data.validate()?;
        let positions = self.label_positions();
        let out = self.output_dim() / positions;
        let problem = match (&data.y, self.loss) {
            (
                Targets::Classes {
                    classes,
                    positions: given,
                    ..
                },
                Loss::SparseCategoricalCrossentropy,
            ) => {
                if *given != positions {
                    Some(format!(
                        "the data has {given} class label(s) per sample but the model's output {:?} \
                         takes {positions} (one per position before its last axis)",
                        self.graph.shape(self.output)
                    ))
                } else {
                    (*classes > out).then(|| {
                        format!(
                            "the data has {classes} classes but the model has {out} outputs: give \
                             its last Dense layer {classes} units"
                        )
                    })
                }
            }
            (Targets::Values { dim, .. }, Loss::SparseCategoricalCrossentropy) => Some(format!(
                "{} needs class labels; the data has {dim} value(s) per sample",
                self.loss.name()
            )),
            (Targets::Classes { .. }, loss) => Some(format!(
                "{} needs target values; the data has class labels",
                loss.name()
            )),
            (Targets::Values { dim, .. }, _) => (*dim != out).then(|| {
                format!("the data has {dim} target value(s) per sample but the model has {out} outputs")
            }),
        };
        if let Some(message) = problem {
            return Err(Error::shape("data", message));
        }
        let sample: usize = self.spec.input_shape().iter().product();
        if data.sample_len != sample {
            return Err(Error::shape(
                "data",
                format!(
                    "the data's samples have {} values but the model takes {sample} ({:?})",
                    data.sample_len,
                    self.spec.input_shape()
                ),
            ));
        }
        self.check_token_ids(&data.x)?;
        self.check_padding_unlabelled(data)
    }

    /// Checks that a padded model with a label per token (a token classifier)
    /// gives padding no label ([`crate::data::NO_LABEL`]): the loss would count
    /// a labelled pad in a batch run at the whole window, and not in one run
    /// shortened to its longest sample (dynamic padding).
    fn check_padding_unlabelled(&self, data: &crate::data::Split) -> Result<()> {
        let (
            crate::data::Targets::Classes {
                labels, positions, ..
            },
            Some(pad),
        ) = (&data.y, self.spec.padding_id())
        else {
            return Ok(());
        };
        if scores_positions(&self.graph, self.output) {
            // A question answerer's labels are positions: real tokens only
            // (padding scores nothing).
            let (t, rows) = (data.sample_len, *positions);
            let lengths = dynamic_padding::sample_lengths(&data.x, t, pad);
            for (i, (len, sample)) in lengths.zip(labels.chunks(rows)).enumerate() {
                if let Some(&p) = sample
                    .iter()
                    .find(|&&p| p != crate::data::NO_LABEL && p as usize >= len)
                {
                    return Err(Error::shape(
                        "data",
                        format!(
                            "sample {i}: label {p} is a position past its {len} real tokens \
                             (padding, id {pad}), which the model scores nothing; label a real \
                             token (the [CLS] token, 0, where there is no answer)"
                        ),
                    ));
                }
            }
            return Ok(());
        }
        let t = *positions;
        if t < 2 || data.sample_len != t {
            return Ok(());
        }
        let lengths = dynamic_padding::sample_lengths(&data.x, t, pad);
        for (i, (len, sample)) in lengths.zip(labels.chunks(t)).enumerate() {
            if let Some(p) = (len..t).find(|&p| sample[p] != crate::data::NO_LABEL) {
                return Err(Error::shape(
                    "data",
                    format!(
                        "sample {i}: position {p} is padding (id {pad}) but is labelled {}; padding \
                         takes no label (NO_LABEL, PyTorch's -100), or the loss and accuracy would \
                         count it",
                        sample[p]
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Checks that samples `x` hold token ids every Embedding reading the model's
    /// input has a row for (whole numbers from 0 to its rows − 1), as PyTorch's
    /// `nn.Embedding` refuses an index out of range; the kernel would give such a
    /// token a row of zeros and no gradient, silently.
    pub fn check_token_ids(&self, x: &[f32]) -> Result<()> {
        let Some((rows, layer)) = self.input_embedding_rows() else {
            return Ok(());
        };
        let bad = x
            .iter()
            .position(|&id| !(id >= 0.0 && id < rows as f32 && id == id.floor()));
        match bad {
            None => Ok(()),
            Some(i) => {
                let top = x.iter().copied().filter(|v| v.is_finite()).fold(0f32, f32::max);
                Err(Error::shape(
                    "data",
                    format!(
                        "the data's value {} (sample {}, position {}) is not a token id Embedding \
                         '{layer}' has a row for: it has {rows} rows (ids 0 to {}){}",
                        x[i],
                        i / self.spec.input_shape().iter().product::<usize>().max(1),
                        i % self.spec.input_shape().iter().product::<usize>().max(1),
                        rows - 1,
                        if top >= rows as f32 && top == top.floor() {
                            format!(
                                "; the largest id in the data is {top}: give the layer an input_dim \
                                 of at least {} (a row for every id the data can hold)",
                                top as f64 + 1.0
                            )
                        } else {
                            String::new()
                        }
                    ),
                ))
            }
        }
    }

    /// The rows of the smallest Embedding table that reads the model's input
    /// directly, with its layer's name: the token ids the model takes are
    /// `0..rows`. `None` when no Embedding reads the input.
    pub fn input_embedding_rows(&self) -> Option<(usize, &str)> {
        use crate::graph::Op;
        self.graph
            .nodes
            .iter()
            .filter_map(|n| match n.op {
                Op::Embedding { ids, table, .. } if matches!(self.graph.nodes[ids].op, Op::Input) => {
                    Some((self.graph.shape(table)[0], n.layer.as_str()))
                }
                _ => None,
            })
            .min_by_key(|&(rows, _)| rows)
    }

    /// Class labels per sample: one per position of a sequence output under
    /// sparse categorical cross-entropy (a `[T, V]` output takes T), else 1
    /// (see [`Loss::label_positions`]).
    pub fn label_positions(&self) -> usize {
        self.loss.label_positions(self.graph.shape(self.output))
    }

    /// Number of output values per sample (classes for classification; a
    /// sequence output's positions × classes).
    pub fn output_dim(&self) -> usize {
        self.graph.shape(self.output).iter().product()
    }

    /// [`ModelSpec::scores`] of the compiled model (no graph rebuilt).
    pub fn scores(&self) -> bool {
        gives_scores(self.loss, self.output_dim())
    }

    /// [`ModelSpec::multi_label`] of the compiled model (no graph rebuilt).
    pub fn multi_label(&self) -> bool {
        gives_sets(self.loss, self.output_dim())
    }

    /// [`ModelSpec::table_labels`] of the compiled model (no graph rebuilt).
    pub fn table_labels(&self) -> crate::data::text_table::TableLabels {
        table_labels_of(
            self.loss,
            self.graph.shape(self.output),
            self.spec.padding_id().is_some(),
            scores_positions(&self.graph, self.output),
        )
    }

    fn upload(ctx: &Context, plan: &Plan, batch: &Batch<'_>) -> Result<()> {
        // Whole batches only: a short write would leave the last batch's values
        // in the rest of the input or targets.
        let (x, targets) = (plan.input.numel(), plan.targets.numel());
        let given = if batch.labels.is_empty() {
            batch.values.len()
        } else {
            batch.labels.len()
        };
        if batch.x.len() != x || given != targets {
            return Err(Error::shape(
                "batch",
                format!(
                    "{} samples need {x} input values and {targets} targets (labels or values); \
                     the batch has {} and {given}",
                    batch.len,
                    batch.x.len()
                ),
            ));
        }
        plan.input.write(ctx, batch.x)?;
        if batch.labels.is_empty() {
            plan.targets.write(ctx, batch.values)
        } else {
            plan.targets.write(ctx, batch.labels)
        }
    }

    /// Queues one training step on `batch`: upload, step uniform, and one command
    /// buffer holding forward, loss, backward and update, submitted once. After it,
    /// `extra` may append copies (e.g. the loss trace) to the same encoder. Nothing
    /// is read back.
    pub fn train_step(
        &mut self,
        ctx: &Context,
        batch: &Batch<'_>,
        lr: f32,
        extra: impl FnOnce(&mut wgpu::CommandEncoder, &Accumulators),
    ) -> Result<()> {
        // The step counts once its work is submitted (Adam's t and the dropout
        // masks' draw number stay in step with the reference executor if anything fails).
        let t = self.step + 1;
        let values = StepValues::new(&self.optimizer, t, lr)?;
        let options = self.options(batch.len, true);
        self.run_pass(ctx, options, batch, values, Pass::Whole, extra)?;
        self.step = t;
        Ok(())
    }

    /// Runs one pass of a training step on `batch` with the plan of `options`:
    /// upload, the step uniform (`values` at the next draw number and the batch's
    /// weight `values.grad_scale` as given), one submission; counts the draw.
    fn run_pass(
        &mut self,
        ctx: &Context,
        options: PlanOptions,
        batch: &Batch<'_>,
        values: StepValues,
        pass: Pass,
        extra: impl FnOnce(&mut wgpu::CommandEncoder, &Accumulators),
    ) -> Result<()> {
        let (mut cut, mut cut_labels) = (Vec::new(), Vec::new());
        let (options, batch) = self.at_batch_tokens(options, batch, (&mut cut, &mut cut_labels));
        self.plan(ctx, options)?;
        let plan = &self.plans[&options];
        plan.ready(ctx, true)?;
        Self::upload(ctx, plan, &batch)?;
        let values = values.for_pass(self.draws + 1, values.grad_scale)?;
        self.step_uniform.write_values(ctx, &values)?;
        submit_pass(ctx, plan, Some(pass), |encoder| extra(encoder, &self.acc))?;
        self.draws += 1;
        Ok(())
    }

    /// Queues one optimizer step on the gradient summed over `batches` (gradient
    /// accumulation: PyTorch's several `backward()` calls before `step()`, Keras'
    /// `gradient_accumulation_steps`), so a step can follow more samples than one
    /// batch holds. Each batch is one pass (forward, loss, backward) and one
    /// submission; its gradient counts by its share of all the batches' samples,
    /// so the step follows their mean gradient, as one batch of them all would
    /// (batch normalization excepted: it normalizes by each batch's statistics;
    /// a label per token, a token classifier's, takes each batch's mean over
    /// its labelled tokens, so batches count by their samples, not their
    /// labelled tokens).
    /// Dropout and noise draw anew in every pass. Clipping, when the model clips,
    /// applies to the summed gradient. After pass `i` (from 0), `extra(encoder,
    /// sums, i)` may append copies to its encoder. Nothing is read back.
    pub fn train_step_accumulated(
        &mut self,
        ctx: &Context,
        batches: &[Batch<'_>],
        lr: f32,
        mut extra: impl FnMut(&mut wgpu::CommandEncoder, &Accumulators, usize),
    ) -> Result<()> {
        let total: usize = batches.iter().map(|b| b.len).sum();
        if batches.is_empty() || batches.iter().any(|b| b.len == 0) {
            return Err(Error::invalid(
                "an accumulated step needs at least one batch, each of at least one sample",
            ));
        }
        let t = self.step + 1;
        let values = StepValues::new(&self.optimizer, t, lr)?;
        let last = batches.len() - 1;
        for (i, batch) in batches.iter().enumerate() {
            let pass = match i {
                _ if last == 0 => Pass::Whole,
                0 => Pass::First,
                _ if i == last => Pass::Last,
                _ => Pass::Middle,
            };
            let share = (batch.len as f64 / total as f64) as f32;
            let values = StepValues {
                grad_scale: share,
                ..values
            };
            let options = self.accumulating_options(batch.len);
            self.run_pass(ctx, options, batch, values, pass, |encoder, acc| {
                extra(encoder, acc, i)
            })?;
        }
        self.step = t;
        Ok(())
    }

    /// Queues forward + loss + predictions on `batch` (no gradient, no update).
    /// Afterwards the plan's `probabilities` and `predictions` hold this batch's
    /// results. Returns the options of the plan that ran (its tokens, under
    /// dynamic padding).
    pub fn eval_step(
        &mut self,
        ctx: &Context,
        batch: &Batch<'_>,
        extra: impl FnOnce(&mut wgpu::CommandEncoder, &Plan),
    ) -> Result<PlanOptions> {
        let (mut cut, mut cut_labels) = (Vec::new(), Vec::new());
        let (options, batch) =
            self.at_batch_tokens(self.options(batch.len, false), batch, (&mut cut, &mut cut_labels));
        self.plan(ctx, options)?;
        let plan = &self.plans[&options];
        plan.ready(ctx, false)?;
        Self::upload(ctx, plan, &batch)?;
        submit_plan(ctx, plan, false, |encoder| extra(encoder, plan))?;
        Ok(options)
    }

    /// Probabilities for `n` samples `x` (softmax over classes, sigmoid for binary
    /// cross-entropy, the raw output for regression), `n × output_dim` values. A
    /// model with an output per token gives 0 at the padding a batch's shortened
    /// plan leaves out (dynamic padding); padding's outputs mean nothing anyway.
    /// Runs batches of up to 256 samples, fewer where the adapter cannot hold a
    /// batch of 256 (a long window's attention); under dynamic padding, samples
    /// run shortest first and come back in their own order.
    pub fn predict(&mut self, ctx: &Context, x: &[f32], n: usize) -> Result<Vec<f32>> {
        self.predict_from(ctx, x, n, |plan| &plan.probabilities, 0.0)
    }

    /// [`Model::predict`]'s outputs before the folded softmax or sigmoid (the
    /// logits; a regression's scores as they are): what a question-answering
    /// head's answers are scored by, start and end logits added across a
    /// text's windows as Hugging Face adds them.
    pub fn predict_logits(&mut self, ctx: &Context, x: &[f32], n: usize) -> Result<Vec<f32>> {
        self.predict_from(
            ctx,
            x,
            n,
            |plan| &plan.output,
            crate::kernels::sequence::MASKED_SCORE,
        )
    }

    /// [`Model::predict`], reading `which` of each batch's plan; a shortened
    /// plan's scores of positions (a question answerer's) are widened with
    /// `masked` at the positions it left out.
    fn predict_from(
        &mut self,
        ctx: &Context,
        x: &[f32],
        n: usize,
        which: fn(&Plan) -> &Tensor,
        masked: f32,
    ) -> Result<Vec<f32>> {
        let sample: usize = self.spec.input_shape().iter().product();
        if x.len() != n * sample {
            return Err(Error::shape(
                "predict",
                format!("{} values given for {n} samples of {sample}", x.len()),
            ));
        }
        self.check_token_ids(x)?;
        let mut order: Vec<usize> = (0..n).collect();
        if let Some(lengths) = self.sample_lengths(x) {
            order.sort_by_key(|&i| lengths[i]);
        }
        let dim = self.output_dim();
        let mut out = vec![0f32; n * dim];
        let (mut start, mut batch, mut rows) = (0, n.min(256), Vec::new());
        // A question answerer's output: rows of the window's positions.
        let rows_of_positions = scores_positions(&self.graph, self.output);
        let positions = self.label_positions();
        while start < n {
            let idx = &order[start..(start + batch).min(n)];
            rows.clear();
            for &i in idx {
                rows.extend_from_slice(&x[i * sample..(i + 1) * sample]);
            }
            let options = match self.forward(ctx, &rows, idx.len()) {
                Err(Error::TooLarge { .. }) if batch > 1 => {
                    batch /= 2;
                    continue;
                }
                done => done?,
            };
            let probabilities = which(&self.plans[&options]).to_f32(ctx)?;
            // A shortened plan (dynamic padding) of a model with an output per
            // token gives fewer positions: its first ones, the rest (padding) 0.
            let ran = probabilities.len() / idx.len().max(1);
            for (&i, p) in idx.iter().zip(probabilities.chunks(ran.max(1))) {
                let sample = &mut out[i * dim..(i + 1) * dim];
                if ran < dim && rows_of_positions {
                    // Rows of positions: each row's first ones, the rest masked.
                    let (full, short) = (dim / positions, ran / positions);
                    for (row, got) in sample.chunks_mut(full).zip(p.chunks(short)) {
                        row[..short].copy_from_slice(got);
                        row[short..].fill(masked);
                    }
                } else {
                    sample[..ran.min(dim)].copy_from_slice(&p[..ran.min(dim)]);
                }
            }
            start += idx.len();
        }
        Ok(out)
    }

    /// [`Model::predict`]'s probabilities of one sample `x` at one output position
    /// (`output_dim / label_positions` values): a language model's next-token
    /// probabilities after token `position`, read back without the other
    /// positions' (for GPT-2, 200 kB instead of 200 MB).
    pub fn predict_position(&mut self, ctx: &Context, x: &[f32], position: usize) -> Result<Vec<f32>> {
        let per = self.check_position("predict_position", x, position)?;
        let options = self.forward(ctx, x, 1)?;
        self.plans[&options]
            .probabilities
            .to_f32_range(ctx, position * per, per)
    }

    /// Checks one sample `x` and a `position` of its output for `op`; returns the
    /// outputs per position.
    fn check_position(&self, op: &'static str, x: &[f32], position: usize) -> Result<usize> {
        let sample: usize = self.spec.input_shape().iter().product();
        let positions = self.label_positions();
        if x.len() != sample || position >= positions {
            return Err(Error::shape(
                op,
                format!(
                    "{} values for a sample of {sample}, position {position} of {positions}",
                    x.len()
                ),
            ));
        }
        self.check_token_ids(x)?;
        Ok(self.output_dim() / positions)
    }

    /// The model's output before its folded activation (the logits of a
    /// classifier or language model) at `position` of the one sample `x`: what
    /// [`Model::predict_position`] gives before the softmax.
    pub fn logits_at_position(&mut self, ctx: &Context, x: &[f32], position: usize) -> Result<Vec<f32>> {
        let per = self.check_position("logits_at_position", x, position)?;
        let options = self.forward(ctx, x, 1)?;
        self.plans[&options].output.to_f32_range(ctx, position * per, per)
    }

    /// Runs the evaluation plan on `len` samples `x` and returns its options: its
    /// `probabilities` hold the results.
    fn forward(&mut self, ctx: &Context, x: &[f32], len: usize) -> Result<PlanOptions> {
        let dim = self.output_dim();
        let sparse = self.loss == Loss::SparseCategoricalCrossentropy;
        let labels = vec![0u32; if sparse { len * self.label_positions() } else { 0 }];
        let values = vec![0f32; if sparse { 0 } else { len * dim }];
        let batch = Batch {
            x,
            labels: &labels,
            values: &values,
            len,
        };
        self.eval_step(ctx, &batch, |_, _| {})
    }

    /// One training step on buffers the host owns, with no CPU round trip: the `n`
    /// samples in `input` (f32, `n × sample` values) and their targets in
    /// `targets` (u32 class labels for sparse categorical cross-entropy, as many
    /// per sample as [`Model::label_positions`], else f32
    /// `n × output_dim` values), both from byte 0 and with `COPY_SRC` usage, at
    /// learning rate `lr`. The step is recorded into `encoder` when the host gives
    /// one, else wgml submits it. Its step counter and rate go through a uniform
    /// written when the step is recorded, so a host recording several steps must
    /// submit each encoder before recording the next. Nothing is read back; the
    /// loss and correct-count sums accumulate as [`Model::train_step`]'s do.
    pub fn train_step_on_buffers(
        &mut self,
        ctx: &Context,
        input: &wgpu::Buffer,
        targets: &wgpu::Buffer,
        n: usize,
        lr: f32,
        encoder: Option<&mut wgpu::CommandEncoder>,
    ) -> Result<()> {
        const OP: &str = "train_step_on_buffers";
        let sample: usize = self.spec.input_shape().iter().product();
        let per_target = if self.loss == Loss::SparseCategoricalCrossentropy {
            self.label_positions()
        } else {
            self.output_dim()
        };
        if n == 0 {
            return Err(Error::shape(OP, "no samples (n = 0)"));
        }
        for (name, buffer, need) in [
            ("input", input, n * sample * 4),
            ("targets", targets, n * per_target * 4),
        ] {
            check_host_buffer(OP, name, buffer, need, wgpu::BufferUsages::COPY_SRC)?;
        }
        let options = self.options(n, true);
        self.plan(ctx, options)?;
        let plan = &self.plans[&options];
        plan.ready(ctx, true)?;
        let t = self.step + 1;
        let values = StepValues::new(&self.optimizer, t, lr)?.for_pass(self.draws + 1, 1.0)?;
        self.step_uniform.write_values(ctx, &values)?;
        record_or_submit(ctx, encoder, "train step on buffers", |encoder| {
            encoder.copy_buffer_to_buffer(input, 0, &plan.input.buffer, 0, (n * sample * 4) as u64);
            encoder.copy_buffer_to_buffer(targets, 0, &plan.targets.buffer, 0, (n * per_target * 4) as u64);
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("train step on buffers"),
                timestamp_writes: None,
            });
            plan.record_train(ctx, &mut pass);
        })?;
        self.step = t;
        self.draws += 1;
        Ok(())
    }

    /// Inference on buffers the host owns, with no CPU round trip: the `n` samples
    /// in `input` (f32, `n × sample` values from byte 0; `COPY_SRC` usage) go
    /// through the model in batches of up to 256, and their outputs (as
    /// [`Model::predict`] gives them: probabilities, or the raw output for
    /// regression) land in `output` (f32, `n × output_dim` values from byte 0;
    /// `COPY_DST` usage). The work is recorded into `encoder` when the host gives
    /// one (it submits it, with its own work before and after), else wgml submits
    /// it. Nothing is read back or waited for.
    pub fn predict_on_buffers(
        &mut self,
        ctx: &Context,
        input: &wgpu::Buffer,
        n: usize,
        output: &wgpu::Buffer,
        encoder: Option<&mut wgpu::CommandEncoder>,
    ) -> Result<()> {
        const OP: &str = "predict_on_buffers";
        let sample: usize = self.spec.input_shape().iter().product();
        let dim = self.output_dim();
        if n == 0 {
            return Err(Error::shape(OP, "no samples (n = 0)"));
        }
        for (name, buffer, need, usage) in [
            ("input", input, n * sample * 4, wgpu::BufferUsages::COPY_SRC),
            ("output", output, n * dim * 4, wgpu::BufferUsages::COPY_DST),
        ] {
            check_host_buffer(OP, name, buffer, need, usage)?;
        }
        let chunks: Vec<(usize, usize)> = (0..n).step_by(256).map(|s| (s, (n - s).min(256))).collect();
        for &(_, len) in &chunks {
            let options = self.options(len, false);
            self.plan(ctx, options)?;
            self.plans[&options].ready(ctx, false)?;
        }
        let plans = &self.plans;
        let options = |len| self.options(len, false);
        record_or_submit(ctx, encoder, "predict on buffers", |encoder| {
            for (start, len) in chunks {
                let plan = &plans[&options(len)];
                let (x, y) = ((len * sample * 4) as u64, (len * dim * 4) as u64);
                encoder.copy_buffer_to_buffer(input, (start * sample * 4) as u64, &plan.input.buffer, 0, x);
                {
                    let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                        label: Some("predict on buffers"),
                        timestamp_writes: None,
                    });
                    plan.record_eval(ctx, &mut pass);
                }
                encoder.copy_buffer_to_buffer(
                    &plan.probabilities.buffer,
                    0,
                    output,
                    (start * dim * 4) as u64,
                    y,
                );
            }
        })
    }

    /// Copies every parameter into `into` (same order and shapes) on the GPU.
    pub fn copy_params(&self, encoder: &mut wgpu::CommandEncoder, into: &[Tensor], restore: bool) {
        for (p, t) in self.store.params.iter().zip(into) {
            let bytes = (p.value.numel() * 4) as u64;
            if restore {
                encoder.copy_buffer_to_buffer(&t.buffer, 0, &p.value.buffer, 0, bytes);
            } else {
                encoder.copy_buffer_to_buffer(&p.value.buffer, 0, &t.buffer, 0, bytes);
            }
        }
    }

    /// Replaces the parameter values with `values` (name, shape, data) after checking
    /// that every name and shape matches.
    pub fn load_params(&self, ctx: &Context, values: &[crate::graph::params::NamedValues]) -> Result<()> {
        self.store.load(ctx, values)
    }

    /// Every dispatch of a training step at `batch` (for profiling and tests).
    pub fn train_dispatches(&mut self, ctx: &Context, batch: usize) -> Result<Vec<Dispatch>> {
        let plan = self.plan(ctx, self.options(batch, true))?;
        Ok(plan.train_dispatches().cloned().collect())
    }

    /// The dispatches one evaluation step of `batch` samples records, in order
    /// (forward, loss, predictions).
    pub fn eval_dispatches(&mut self, ctx: &Context, batch: usize) -> Result<Vec<Dispatch>> {
        let plan = self.plan(ctx, self.options(batch, false))?;
        Ok(plan.eval_dispatches().cloned().collect())
    }
}

/// Records `plan`'s training step (`train`) or evaluation step into one compute
/// pass of a new command encoder, lets `extra` append to the encoder (copies for
/// readback), and submits it: one submission per step.
pub(crate) fn submit_plan(
    ctx: &Context,
    plan: &Plan,
    train: bool,
    extra: impl FnOnce(&mut wgpu::CommandEncoder),
) -> Result<()> {
    submit_pass(ctx, plan, train.then_some(Pass::Whole), extra)
}

/// [`submit_plan`] of one pass of a training step (`Some`) or of an evaluation step.
fn submit_pass(
    ctx: &Context,
    plan: &Plan,
    train: Option<Pass>,
    extra: impl FnOnce(&mut wgpu::CommandEncoder),
) -> Result<()> {
    let label = if train.is_some() {
        "train step"
    } else {
        "eval step"
    };
    let mut encoder = ctx
        .device
        .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(label) });
    {
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some(label),
            timestamp_writes: None,
        });
        match train {
            Some(which) => plan.record_pass(ctx, &mut pass, which)?,
            None => plan.record_eval(ctx, &mut pass),
        }
    }
    extra(&mut encoder);
    ctx.submit(encoder.finish())
}

/// Records `work` into the host's `encoder` when there is one; otherwise into an
/// encoder of wgml's (labelled `label`), which is then submitted.
fn record_or_submit(
    ctx: &Context,
    encoder: Option<&mut wgpu::CommandEncoder>,
    label: &str,
    work: impl FnOnce(&mut wgpu::CommandEncoder),
) -> Result<()> {
    match encoder {
        Some(encoder) => {
            work(encoder);
            Ok(())
        }
        None => {
            let mut own = ctx
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(label) });
            work(&mut own);
            ctx.submit(own.finish())
        }
    }
}

/// Checks that a host's buffer holds `need` bytes and has `usage`.
fn check_host_buffer(
    op: &'static str,
    name: &str,
    buffer: &wgpu::Buffer,
    need: usize,
    usage: wgpu::BufferUsages,
) -> Result<()> {
    if buffer.size() < need as u64 {
        return Err(Error::shape(
            op,
            format!("the {name} buffer holds {} bytes; it needs {need}", buffer.size()),
        ));
    }
    if !buffer.usage().contains(usage) {
        return Err(Error::invalid(format!(
            "{op}: the {name} buffer needs {usage:?} usage, it has {:?}",
            buffer.usage()
        )));
    }
    Ok(())
}

impl crate::graph::reference::ReferenceExecutor {
    /// A CPU copy of `model`'s current parameters (read back from the GPU) and
    /// step count, with fresh optimizer state when the model has not stepped yet.
    pub fn from_model(model: &Model, ctx: &Context) -> Result<Self> {
        let (params, state) = model.store.to_cpu(ctx, model.graph.nodes.len())?;
        let executor = Self::new(
            model.graph.clone(),
            model.objective(),
            model.optimizer.clone(),
            model.clip_norm.map(|c| c.get()),
            params,
            state,
            model.step,
        )
        .with_draws(model.draws)
        .with_label_smoothing(model.label_smoothing.map_or(0.0, |e| e.get()))
        .with_decay_excluded(
            model
                .store
                .params
                .iter()
                .filter(|p| !p.decay)
                .map(|p| p.node)
                .collect(),
        );
        let Some(ema) = model.ema else {
            return Ok(executor);
        };
        // The model's averages, or (none made yet) those its first plan will make:
        // copies of the weights, starting at the next step.
        let mut averages = vec![Vec::new(); model.graph.nodes.len()];
        let mut start = model.step + 1;
        for p in model.store.params.iter().filter(|p| p.trainable) {
            averages[p.node] = match &p.ema {
                Some(a) => {
                    start = model.store.ema_start;
                    a.to_f32(ctx)?
                }
                None => p.value.to_f32(ctx)?,
            };
        }
        Ok(executor.with_ema(ema.get(), start, averages))
    }
}
