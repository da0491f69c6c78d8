//! Parameters resident on the GPU: values, gradients, optimizer state, and the
//! snapshot kept for early stopping's restore-best.

use rand::Rng;

use crate::error::{Error, Result};
use crate::gpu::{Context, DType, Tensor};
use crate::graph::{Graph, Init, NodeId, Op};

/// One tensor of the model.
#[derive(Debug)]
pub struct Param {
    /// PyTorch `state_dict` name, e.g. `0.weight`.
    pub name: String,
    /// The graph node it was made from.
    pub node: NodeId,
    /// Its full shape.
    pub shape: Vec<usize>,
    /// Current values (f32).
    pub value: Tensor,
    /// False for state the forward pass updates (moving statistics): no optimizer
    /// step, no optimizer state, a gradient buffer nothing writes.
    pub trainable: bool,
    /// Gradient of the loss with respect to the values, same shape.
    pub grad: Tensor,
    /// Optimizer state tensors (zero at start), as many as the optimizer keeps.
    pub state: Vec<Tensor>,
    /// The gradient accumulated over the passes of one optimizer step, same shape;
    /// allocated by [`ParamStore::ensure_accumulators`] for trainable parameters
    /// once a plan accumulates, `None` before.
    pub accum: Option<Tensor>,
    /// Whether the optimizer's weight decay applies to it (true unless excluded:
    /// biases and normalization scales often are). Plans read it when built; set
    /// through the nn layer's `Model::exclude_from_weight_decay`.
    pub(crate) decay: bool,
    /// The exponential moving average of the values, for trainable parameters once
    /// a plan keeps one ([`ParamStore::ensure_averages`]); `None` before.
    pub(crate) ema: Option<Tensor>,
}

impl Param {
    /// The optimizer that updates this parameter: `optimizer`, without its weight
    /// decay when the parameter is excluded from it.
    pub fn optimizer(
        &self,
        optimizer: &crate::kernels::optim::Optimizer,
    ) -> crate::kernels::optim::Optimizer {
        if self.decay {
            optimizer.clone()
        } else {
            optimizer.without_weight_decay()
        }
    }
}

/// A parameter read back to the CPU: `(name, shape, values)`.
pub type NamedValues = (String, Vec<usize>, Vec<f32>);

/// Every parameter of a model.
#[derive(Debug, Default)]
pub struct ParamStore {
    /// The parameters, in graph node order.
    pub params: Vec<Param>,
    /// The optimizer step at which the moving averages started (their first step
    /// takes the values themselves); 0 before any ([`ParamStore::ensure_averages`]).
    /// Plans keep the value they were built with.
    pub(crate) ema_start: u32,
}

/// Initial values of a parameter, drawn from `rng`.
pub fn initial_values(init: Init, n: usize, rng: &mut impl Rng) -> Vec<f32> {
    match init {
        Init::Zeros => vec![0.0; n],
        Init::Ones => vec![1.0; n],
        Init::GlorotUniform { fan_in, fan_out } => {
            let limit = (6.0 / (fan_in + fan_out) as f64).sqrt() as f32;
            (0..n).map(|_| rng.random_range(-limit..limit)).collect()
        }
        // An empty range (a limit that is not positive and finite) draws zeros.
        Init::Uniform { limit } if !(limit > 0.0 && limit.is_finite()) => vec![0.0; n],
        Init::Uniform { limit } => (0..n).map(|_| rng.random_range(-limit..limit)).collect(),
    }
}

impl ParamStore {
    /// Allocates and initialises every parameter of `graph` (in node order, drawing
    /// from `rng`), with `state_count` zeroed optimizer-state tensors each.
    pub fn new(ctx: &Context, graph: &Graph, state_count: usize, rng: &mut impl Rng) -> Result<ParamStore> {
        let mut params = Vec::new();
        for (id, node) in graph.nodes.iter().enumerate() {
            if let Op::Param {
                name,
                init,
                trainable,
            } = &node.op
            {
                // Refuse what the device cannot hold before drawing it on the CPU.
                let n = node
                    .shape
                    .iter()
                    .try_fold(1usize, |a, &d| a.checked_mul(d))
                    .filter(|&n| (n as u64).saturating_mul(4) <= ctx.max_binding_bytes())
                    .ok_or_else(|| Error::TooLarge {
                        what: format!("parameter {name} of shape {:?}", node.shape),
                        bytes: node.shape.iter().fold(4u64, |a, &d| a.saturating_mul(d as u64)),
                        limit: ctx.max_binding_bytes(),
                    })?;
                let value = Tensor::from_f32(ctx, &initial_values(*init, n, rng), &node.shape)?;
                let grad = Tensor::zeros(ctx, &node.shape, DType::F32)?;
                let state_count = if *trainable { state_count } else { 0 };
                let state = (0..state_count)
                    .map(|_| Tensor::zeros(ctx, &node.shape, DType::F32))
                    .collect::<Result<_>>()?;
                params.push(Param {
                    name: name.clone(),
                    node: id,
                    shape: node.shape.clone(),
                    value,
                    trainable: *trainable,
                    grad,
                    state,
                    accum: None,
                    decay: true,
                    ema: None,
                });
            }
        }
        Ok(ParamStore { params, ema_start: 0 })
    }

    /// The parameters of `graph` as views of `from`'s tensors of the same name and
    /// shape (values, gradients, optimizer state: one copy on the GPU), so a second
    /// graph over some of a model's layers (a VAE's decoder alone) computes with
    /// the model's current weights. Errors name a parameter `from` lacks.
    pub fn sharing(graph: &Graph, from: &ParamStore) -> Result<ParamStore> {
        let mut params = Vec::new();
        for (id, node) in graph.nodes.iter().enumerate() {
            if let Op::Param { name, trainable, .. } = &node.op {
                let p = from
                    .params
                    .iter()
                    .find(|p| p.name == *name && p.shape == node.shape)
                    .ok_or_else(|| {
                        Error::invalid(format!(
                            "parameter '{name}' of shape {:?} is not among the shared ones",
                            node.shape
                        ))
                    })?;
                params.push(Param {
                    name: name.clone(),
                    node: id,
                    shape: node.shape.clone(),
                    value: p.value.clone(),
                    trainable: *trainable,
                    grad: p.grad.clone(),
                    state: p.state.clone(),
                    accum: p.accum.clone(),
                    decay: p.decay,
                    ema: p.ema.clone(),
                });
            }
        }
        Ok(ParamStore {
            params,
            ema_start: from.ema_start,
        })
    }

    /// Every parameter's values and optimizer state on the CPU, indexed by node id
    /// of a graph of `nodes` nodes (empty for other nodes): what a
    /// [`ReferenceExecutor`](crate::graph::reference::ReferenceExecutor) starts from.
    #[allow(clippy::type_complexity)]
    pub fn to_cpu(&self, ctx: &Context, nodes: usize) -> Result<(Vec<Vec<f32>>, Vec<Vec<Vec<f32>>>)> {
        let mut params = vec![Vec::new(); nodes];
        let mut state = vec![Vec::new(); nodes];
        for p in &self.params {
            params[p.node] = p.value.to_f32(ctx)?;
            state[p.node] = p.state.iter().map(|s| s.to_f32(ctx)).collect::<Result<_>>()?;
        }
        Ok((params, state))
    }

    /// Replaces the parameter values with `values` (name, shape, data) after checking
    /// that every name and shape matches: a tensor missing, of another shape or
    /// belonging to no parameter is an error naming it.
    pub fn load(&self, ctx: &Context, values: &[NamedValues]) -> Result<()> {
        for p in &self.params {
            let (_, shape, data) =
                values
                    .iter()
                    .find(|(n, _, _)| *n == p.name)
                    .ok_or_else(|| Error::Data {
                        path: "weights".into(),
                        message: format!("tensor '{}' is missing", p.name),
                    })?;
            if *shape != p.shape {
                return Err(Error::Data {
                    path: "weights".into(),
                    message: format!(
                        "tensor '{}' has shape {shape:?}, the model expects {:?}",
                        p.name, p.shape
                    ),
                });
            }
            p.value.write(ctx, data)?;
        }
        if let Some((n, _, _)) = values
            .iter()
            .find(|(n, _, _)| self.params.iter().all(|p| p.name != *n))
        {
            return Err(Error::Data {
                path: "weights".into(),
                message: format!("tensor '{n}' does not belong to this model"),
            });
        }
        Ok(())
    }

    /// Gives every trainable parameter its gradient accumulator (zeroed; kept once
    /// made), for plans that accumulate gradients over several passes.
    pub fn ensure_accumulators(&mut self, ctx: &Context) -> Result<()> {
        for p in self
            .params
            .iter_mut()
            .filter(|p| p.trainable && p.accum.is_none())
        {
            p.accum = Some(Tensor::zeros(ctx, &p.shape, DType::F32)?);
        }
        Ok(())
    }

    /// Gives every trainable parameter a moving average of its values, starting at
    /// optimizer step `start` (the next step), each a copy of the current values.
    /// A store whose parameters already have theirs keeps them and their start
    /// (the nn layer's `Model::set_ema` drops them all together).
    pub fn ensure_averages(&mut self, ctx: &Context, start: u32) -> Result<()> {
        // Copies on the GPU, queued in one submission: nothing is read back.
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        let mut made = false;
        for p in self.params.iter_mut().filter(|p| p.trainable && p.ema.is_none()) {
            let average = Tensor::zeros(ctx, &p.shape, DType::F32)?;
            let bytes = (p.value.numel() * 4) as u64;
            encoder.copy_buffer_to_buffer(&p.value.buffer, 0, &average.buffer, 0, bytes);
            p.ema = Some(average);
            made = true;
        }
        if made {
            self.ema_start = start;
            ctx.submit(encoder.finish())?;
        }
        Ok(())
    }

    /// Replaces each trainable parameter that has a moving average with it (Keras'
    /// optimizer `finalize_variable_values` with `use_ema`). Queued, nothing read
    /// back.
    pub fn finalize_averages(&self, ctx: &Context) -> Result<()> {
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        let mut any = false;
        for p in self.params.iter().filter(|p| p.trainable) {
            if let Some(average) = &p.ema {
                let bytes = (p.value.numel() * 4) as u64;
                encoder.copy_buffer_to_buffer(&average.buffer, 0, &p.value.buffer, 0, bytes);
                any = true;
            }
        }
        if any {
            ctx.submit(encoder.finish())?;
        }
        Ok(())
    }

    /// The moving average of the parameter made from node `id`, when kept.
    pub fn average(&self, id: NodeId) -> Option<&Tensor> {
        self.by_node(id).and_then(|p| p.ema.as_ref())
    }

    /// The parameter made from node `id`.
    pub fn by_node(&self, id: NodeId) -> Option<&Param> {
        self.params.iter().find(|p| p.node == id)
    }

    /// Reads every parameter back: `(name, shape, values)`.
    pub fn download(&self, ctx: &Context) -> Result<Vec<NamedValues>> {
        self.params
            .iter()
            .map(|p| Ok((p.name.clone(), p.shape.clone(), p.value.to_f32(ctx)?)))
            .collect()
    }

    /// Total number of trainable values.
    pub fn count(&self) -> usize {
        self.params
            .iter()
            .filter(|p| p.trainable)
            .map(|p| p.value.numel())
            .sum()
    }

    /// Total number of non-trainable values (moving statistics).
    pub fn count_non_trainable(&self) -> usize {
        self.params
            .iter()
            .filter(|p| !p.trainable)
            .map(|p| p.value.numel())
            .sum()
    }
}
