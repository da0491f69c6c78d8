//! Transfer learning: starting a model from another model's checkpoint whose layers
//! partly differ (another head, more layers), and freezing the layers that came from
//! it, as Keras users do with `load_weights(..., skip_mismatch=True)` and
//! `layer.trainable = False`.

use crate::error::{Error, Result};
use crate::gpu::Context;
use crate::graph::params::NamedValues;
use crate::graph::{Graph, Op};
use crate::nn::model::ModelSpec;
use crate::nn::{Layer, Loss, Model, Sequential};

/// What loading a checkpoint into a model did, tensor by tensor (PyTorch names).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InitReport {
    /// Tensors of the model that took the checkpoint's values.
    pub loaded: Vec<String>,
    /// Tensors of the model that kept their initial values, each with the reason
    /// (not in the checkpoint, or there with another shape).
    pub new: Vec<(String, String)>,
    /// Tensors of the checkpoint the model has no place for.
    pub unused: Vec<String>,
}

impl std::fmt::Display for InitReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "loaded {} tensor(s): {}",
            self.loaded.len(),
            self.loaded.join(", ")
        )?;
        for (name, why) in &self.new {
            write!(f, "\nnew {name}: {why}")?;
        }
        if !self.unused.is_empty() {
            write!(f, "\nunused from the checkpoint: {}", self.unused.join(", "))?;
        }
        Ok(())
    }
}

/// Which layers a freeze applies to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Freeze {
    /// Every layer whose tensors all come from the checkpoint (the pretrained base).
    Loaded,
    /// These layers, by number from 1 as the model's summary and messages count them.
    Layers(Vec<usize>),
}

impl Freeze {
    /// Parses `loaded`, or layer numbers and ranges such as `1,2,4-6`.
    pub fn parse(text: &str) -> Result<Freeze> {
        if text.trim() == "loaded" {
            return Ok(Freeze::Loaded);
        }
        crate::ranges::parse(text, 1).map(Freeze::Layers).map_err(|part| {
            Error::invalid(format!(
                "--freeze: '{part}' is not a layer number (from 1), a range such as 2-4, or 'loaded'"
            ))
        })
    }
}

/// The layer (from 0) that made each of `graph`'s parameters, as
/// [`Sequential::graph`] names layers (`"<kind> #<number from 1>"`).
fn layer_of(graph: &Graph, node: usize) -> Option<usize> {
    let name = &graph.nodes[node].layer;
    name.rsplit_once(" #")?.1.parse::<usize>().ok()?.checked_sub(1)
}

/// `(layer, name, shape)` of every tensor `spec` holds (trainable or not).
fn tensors(spec: &Sequential, loss: Loss) -> Result<Vec<(usize, String, Vec<usize>)>> {
    let (graph, _) = spec.graph(loss)?;
    Ok(graph
        .nodes
        .iter()
        .enumerate()
        .filter_map(|(id, n)| match &n.op {
            Op::Param { name, .. } => Some((layer_of(&graph, id)?, name.clone(), n.shape.clone())),
            _ => None,
        })
        .collect())
}

impl Sequential {
    /// The names of the tensors of the layers numbered `layers` (from 1). Errors
    /// name a number past the model's end and a layer without parameters.
    pub fn tensors_of_layers(&self, loss: Loss, layers: &[usize]) -> Result<Vec<String>> {
        let held = tensors(self, loss)?;
        let mut names = Vec::new();
        for &number in layers {
            let i = number
                .checked_sub(1)
                .filter(|&i| i < self.layers.len())
                .ok_or_else(|| {
                    Error::invalid(format!(
                        "layer {number} does not exist; the model has {} layers",
                        self.layers.len()
                    ))
                })?;
            let before = names.len();
            names.extend(held.iter().filter(|(l, _, _)| *l == i).map(|(_, n, _)| n.clone()));
            if names.len() == before {
                return Err(Error::invalid(format!(
                    "layer '{} #{number}' has no parameters",
                    self.layers[i].kind()
                )));
            }
        }
        Ok(names)
    }

    /// The same model with its last layer with parameters, which must be a Dense
    /// layer, giving `units` outputs: the head of a classifier of `units` classes.
    pub fn with_head_units(&self, units: usize) -> Result<Sequential> {
        let mut out = self.clone();
        match out.layers.iter_mut().rev().find(|l| {
            matches!(
                l,
                Layer::Dense { .. } | Layer::Conv2D { .. } | Layer::BatchNormalization { .. }
            )
        }) {
            Some(Layer::Dense { units: u, .. }) => *u = units,
            other => {
                return Err(Error::invalid(format!(
                    "the model's output layer must be Dense to be given {units} units, not {}",
                    other.map_or("missing", |l| l.kind())
                )));
            }
        }
        Ok(out)
    }

    /// The same model with `freeze`'s layers frozen ([`Layer::frozen`](super::Layer::frozen)),
    /// `values` being the checkpoint the model starts from (for [`Freeze::Loaded`]).
    /// Errors name a layer number past the model's end, a layer without parameters,
    /// and a frozen layer whose tensor the checkpoint holds with another shape.
    pub fn freeze(&self, loss: Loss, freeze: &Freeze, values: &[NamedValues]) -> Result<Sequential> {
        let held = tensors(self, loss)?;
        let matches = |name: &str, shape: &[usize]| values.iter().any(|(n, s, _)| n == name && s == shape);
        let layers: Vec<usize> = match freeze {
            Freeze::Loaded => (0..self.layers.len())
                .filter(|&i| {
                    let mine: Vec<_> = held.iter().filter(|(l, _, _)| *l == i).collect();
                    !mine.is_empty() && mine.iter().all(|(_, n, s)| matches(n, s))
                })
                .collect(),
            Freeze::Layers(numbers) => numbers.iter().map(|n| n - 1).collect(),
        };
        let mut out = self.clone();
        for i in layers {
            let layer = out.layers.get(i).ok_or_else(|| {
                Error::invalid(format!(
                    "--freeze: layer {} does not exist; the model has {} layers",
                    i + 1,
                    self.layers.len()
                ))
            })?;
            let name = format!("{} #{}", layer.kind(), i + 1);
            if !held.iter().any(|(l, _, _)| *l == i) {
                return Err(Error::invalid(format!(
                    "layer '{name}' has no parameters to freeze"
                )));
            }
            for (_, n, s) in held.iter().filter(|(l, _, _)| *l == i) {
                if let Some((_, other, _)) = values.iter().find(|(vn, vs, _)| vn == n && vs != s) {
                    return Err(Error::invalid(format!(
                        "layer '{name}' is frozen but the checkpoint's '{n}' has shape {other:?}, the layer \
                         {s:?}: a frozen layer must load its weights"
                    )));
                }
            }
            out.layers[i] = out.layers[i].clone().frozen();
        }
        Ok(out)
    }
}

impl Model {
    /// Loads every tensor of `values` whose name and shape match one of the model's;
    /// the others keep their initial values (a new head, new layers), and the
    /// report says which is which. Errors when nothing matches (not a checkpoint of
    /// a related model) and when a frozen layer's tensor is missing or has another
    /// shape (a frozen layer that kept random weights would never learn them).
    pub fn load_matching(&self, ctx: &Context, values: &[NamedValues]) -> Result<InitReport> {
        self.load_matching_except(ctx, values, &[])
    }

    /// [`Model::load_matching`], except that the layers numbered `new_layers` (counted
    /// from 1) start from their initialisers even where the checkpoint holds tensors that
    /// fit them: a new head of the same shape as the old one (PyTorch users assign a
    /// new `nn.Linear`, Keras users pop the last layer and add another). Errors name a
    /// number past the model's end or a layer without parameters.
    pub fn load_matching_except(
        &self,
        ctx: &Context,
        values: &[NamedValues],
        new_layers: &[usize],
    ) -> Result<InitReport> {
        let fresh = match (&self.spec, new_layers) {
            (_, []) => Vec::new(),
            (ModelSpec::Sequential(s), _) => s.tensors_of_layers(self.loss, new_layers)?,
            (ModelSpec::Functional(_), _) => {
                return Err(Error::invalid(
                    "new layers are numbered in a Sequential model; a functional model's new layers \
                     are those whose names the checkpoint lacks",
                ));
            }
        };
        let mut report = InitReport::default();
        let frozen = |node: usize| {
            let layer = self.graph.nodes[node].layer.clone();
            self.spec
                .layer_named(&layer)
                .is_some_and(|l| !l.is_trainable())
                .then_some(layer)
        };
        for p in &self.store.params {
            if fresh.contains(&p.name) {
                if let Some(layer) = frozen(p.node) {
                    return Err(Error::invalid(format!(
                        "layer '{layer}' is both new and frozen: it would keep its random weights"
                    )));
                }
                report.new.push((
                    p.name.clone(),
                    "a new layer, starting from its initialiser".into(),
                ));
                continue;
            }
            match values.iter().find(|(n, _, _)| *n == p.name) {
                Some((_, shape, data)) if *shape == p.shape => {
                    p.value.write(ctx, data)?;
                    report.loaded.push(p.name.clone());
                }
                found => {
                    let why = match found {
                        Some((_, shape, _)) => {
                            format!("shape {shape:?} in the checkpoint, {:?} in the model", p.shape)
                        }
                        None => "not in the checkpoint".to_string(),
                    };
                    if let Some(layer) = frozen(p.node) {
                        return Err(Error::invalid(format!(
                            "layer '{layer}' is frozen but its tensor '{}' cannot load: {why}",
                            p.name
                        )));
                    }
                    report.new.push((p.name.clone(), why));
                }
            }
        }
        if report.loaded.is_empty() {
            let first = report
                .new
                .first()
                .map(|(n, why)| format!(" ('{n}': {why})"))
                .unwrap_or_default();
            return Err(Error::invalid(format!(
                "no tensor of the checkpoint matches the model by name and shape{first}: is it a checkpoint \
                 of a related model?"
            )));
        }
        report.unused = values
            .iter()
            .filter(|(n, _, _)| self.store.params.iter().all(|p| p.name != *n))
            .map(|(n, _, _)| n.clone())
            .collect();
        Ok(report)
    }
}

/// The layer a sequence classifier made by
/// [`Functional::sequence_classifier`](crate::nn::Functional::sequence_classifier) pools its sequence with.
pub const CLASSIFIER_POOL: &str = "last_token";

/// The classification head [`Functional::sequence_classifier`](crate::nn::Functional::sequence_classifier) adds: Hugging
/// Face's `score` of `GPT2ForSequenceClassification` (no bias).
pub const CLASSIFIER_HEAD: &str = "score";

impl crate::nn::Functional {
    /// A language model turned into a classifier of whole sequences, as Hugging
    /// Face's `AutoModelForSequenceClassification` turns GPT-2: the per-token
    /// output layer (a Dense over a sequence, such as `lm_head`) gives way to
    /// [`LastTokenPooling1D`](Layer::LastTokenPooling1D) (`last_token`) and a new
    /// Dense head `score` of `classes` units without bias; the Embedding reading
    /// the token ids masks padding id `pad`, so each sample is read at its last
    /// real token. Under LoRA the new head trains in full (PEFT's `SEQ_CLS`).
    /// Errors name a model that is not a per-token language model.
    pub fn sequence_classifier(&self, classes: usize, pad: u32) -> Result<crate::nn::Functional> {
        use crate::nn::functional::{FunctionalObjective, LayerOrOp};
        let not = |why: String| {
            Error::invalid(format!(
                "only a language model becomes a sequence classifier: {why}"
            ))
        };
        if classes < 2 {
            return Err(not(format!("{classes} class(es); a classifier needs at least 2")));
        }
        let FunctionalObjective::Supervised {
            output,
            loss: Loss::SparseCategoricalCrossentropy,
        } = &self.objective
        else {
            return Err(not(
                "the model is not trained with sparse categorical cross-entropy".into(),
            ));
        };
        let graph = self.graph()?;
        let head = self.layers.last().filter(|l| &l.name == output);
        let source = match head {
            Some(l) if matches!(l.what, LayerOrOp::Layer(Layer::Dense { .. })) && l.inputs.len() == 1 => {
                l.inputs[0].clone()
            }
            _ => {
                return Err(not(format!(
                    "its output '{output}' is not a Dense layer over a sequence"
                )));
            }
        };
        if graph.graph.shape(graph.node(&source)?).len() != 2 {
            return Err(not(format!(
                "'{output}' reads '{source}', which is not a sequence [tokens, features]"
            )));
        }
        if let Some(l) = self
            .layers
            .iter()
            .find(|l| l.inputs.contains(output) && &l.name != output)
        {
            return Err(not(format!("layer '{}' reads the output '{output}'", l.name)));
        }
        for name in [CLASSIFIER_POOL, CLASSIFIER_HEAD] {
            if self.layers.iter().any(|l| l.name == name) {
                return Err(not(format!("it already has a layer named '{name}'")));
            }
        }
        let mut out = self.clone();
        out.layers.pop();
        out.outputs.retain(|o| o != output);
        let mut masked = 0;
        for l in &mut out.layers {
            if l.inputs != [self.input.name.as_str()] {
                continue;
            }
            if let LayerOrOp::Layer(Layer::Embedding { mask_id, .. }) = &mut l.what {
                match *mask_id {
                    Some(other) if other != pad => {
                        return Err(Error::invalid(format!(
                            "layer '{}' pads with id {other}, not {pad}: give the data its padding",
                            l.name
                        )));
                    }
                    _ => *mask_id = Some(pad),
                }
                masked += 1;
            }
        }
        if masked == 0 {
            return Err(not(format!("no Embedding reads its input '{}'", self.input.name)));
        }
        let dense = Layer::Dense {
            units: classes,
            activation: crate::nn::LayerActivation::Softmax,
            use_bias: false,
            trainable: true,
        };
        let mut out = out
            .layer(CLASSIFIER_POOL, Layer::LastTokenPooling1D, &[source.as_str()])
            .layer(CLASSIFIER_HEAD, dense, &[CLASSIFIER_POOL])
            .supervised(CLASSIFIER_HEAD, Loss::SparseCategoricalCrossentropy);
        if let Some(lora) = &mut out.lora
            && !lora.train.iter().any(|t| t == CLASSIFIER_HEAD)
        {
            lora.train.push(CLASSIFIER_HEAD.to_string());
        }
        Ok(out)
    }
}
