//! The CPU twin of the executor: the same graph, forward, loss, backward and
//! optimizer update, computed with the reference kernels. Slow and obviously
//! right; tests train a model for a few steps on both paths and compare losses.

use crate::error::{Error, Result};
use crate::graph::Loss;
use crate::graph::autodiff::{backward_order, requires_grad};
use crate::graph::{Graph, NodeId, Op, batch_norm_desc, pool_desc};
use crate::kernels::conv::Conv2dDesc;
use crate::kernels::matmul::{Activation, MatmulDesc};
use crate::kernels::optim::Optimizer;
use crate::reference as r;

/// Parameters and optimizer state on the CPU, stepping a graph with reference kernels.
#[derive(Clone, Debug)]
pub struct ReferenceExecutor {
    graph: Graph,
    output: NodeId,
    loss: Loss,
    optimizer: Optimizer,
    /// Clip the gradients to this global norm before the update (the model's).
    clip_norm: Option<f32>,
    /// Parameter values by node id (empty for non-parameters).
    params: Vec<Vec<f32>>,
    state: Vec<Vec<Vec<f32>>>,
    step: u32,
}

/// The forward pass' values, pooling indices and batch normalizations' saved
/// `[mean | 1/std]`, by node id.
struct Forward {
    values: Vec<Vec<f32>>,
    aux: Vec<Vec<u32>>,
    saved: Vec<Vec<f32>>,
}

fn conv_desc(
    b: usize,
    xs: &[usize],
    ws: &[usize],
    stride: (usize, usize),
    padding: crate::kernels::conv::Padding,
) -> Conv2dDesc {
    Conv2dDesc {
        n: b,
        c_in: xs[0],
        h: xs[1],
        w: xs[2],
        c_out: ws[0],
        kh: ws[2],
        kw: ws[3],
        stride,
        padding,
    }
}

impl ReferenceExecutor {
    /// An executor of `graph` (its `output` trained with `loss` and `optimizer`,
    /// gradients clipped to `clip_norm`) from parameter values and optimizer
    /// state by node id, after `step` steps. The nn layer builds one from
    /// a model's current state (`ReferenceExecutor::from_model`).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        graph: Graph,
        output: NodeId,
        loss: Loss,
        optimizer: Optimizer,
        clip_norm: Option<f32>,
        params: Vec<Vec<f32>>,
        state: Vec<Vec<Vec<f32>>>,
        step: u32,
    ) -> ReferenceExecutor {
        ReferenceExecutor {
            graph,
            output,
            loss,
            optimizer,
            clip_norm,
            params,
            state,
            step,
        }
    }

    /// Parameter values by node id.
    pub fn params(&self) -> &[Vec<f32>] {
        &self.params
    }

    /// The model's output (before the loss' folded activation) for a batch of `b`
    /// samples, evaluating: dropout is the identity and batch normalization uses
    /// its moving statistics.
    pub fn eval_output(&mut self, x: &[f32], b: usize) -> Result<Vec<f32>> {
        let mut f = self.forward(x, b, None)?;
        Ok(std::mem::take(&mut f.values[self.output]))
    }

    /// The forward pass; `train` holds the step number while training (dropout
    /// masks; batch normalization on batch statistics, moving its moving ones).
    fn forward(&mut self, x: &[f32], b: usize, train: Option<u32>) -> Result<Forward> {
        let g = &self.graph;
        let n = g.nodes.len();
        let mut vals: Vec<Vec<f32>> = vec![Vec::new(); n];
        let mut aux: Vec<Vec<u32>> = vec![Vec::new(); n];
        let mut saved: Vec<Vec<f32>> = vec![Vec::new(); n];
        let numel = |id: NodeId| b * g.shape(id).iter().product::<usize>();
        for id in 0..=self.output {
            let v = match &g.nodes[id].op {
                Op::Input => {
                    if x.len() != numel(id) {
                        return Err(Error::shape(
                            "reference",
                            format!("batch has {} values, expected {}", x.len(), numel(id)),
                        ));
                    }
                    x.to_vec()
                }
                Op::Param { .. } => self.params[id].clone(),
                Op::Dense { x, w, b: bias, act } => {
                    let ws = g.shape(*w);
                    let mut d = MatmulDesc::new(b, ws[0], ws[1]);
                    d.trans_b = true;
                    d.activation = *act;
                    let mut y = vec![0.0; numel(id)];
                    let bias = bias.map(|b| self.params[b].as_slice());
                    r::matmul::matmul(&d, &vals[*x], &self.params[*w], bias, &mut y)?;
                    y
                }
                Op::Conv2d {
                    x,
                    w,
                    b: bias,
                    stride,
                    padding,
                    act,
                } => {
                    let desc = conv_desc(b, g.shape(*x), g.shape(*w), *stride, *padding);
                    let mut y = vec![0.0; numel(id)];
                    r::conv::conv2d_forward(
                        &desc,
                        &vals[*x],
                        &self.params[*w],
                        bias.map(|b| self.params[b].as_slice()),
                        *act,
                        &mut y,
                    );
                    y
                }
                Op::MaxPool2d { x, window } => {
                    let desc = pool_desc(b, g.shape(*x), *window)?;
                    let mut y = vec![0.0; numel(id)];
                    let mut idx = vec![0u32; numel(id)];
                    r::pool::max_pool2d_forward(&desc, &vals[*x], &mut y, &mut idx);
                    aux[id] = idx;
                    y
                }
                Op::AvgPool2d { x, window } => {
                    let desc = pool_desc(b, g.shape(*x), *window)?;
                    let mut y = vec![0.0; numel(id)];
                    r::pool::avg_pool2d_forward(&desc, &vals[*x], &mut y);
                    y
                }
                Op::Reshape { x } => vals[*x].clone(),
                Op::Act { x, act } => {
                    let mut y = vec![0.0; numel(id)];
                    r::elementwise::activation_forward(*act, &vals[*x], &mut y);
                    y
                }
                Op::Dropout { x, rate, seed } => match train {
                    Some(t) => {
                        let mut y = vec![0.0; numel(id)];
                        r::dropout::dropout(&vals[*x], &mut y, *rate, *seed, t)?;
                        y
                    }
                    None => vals[*x].clone(),
                },
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
                } => {
                    let d = batch_norm_desc(b, g.shape(*x), *momentum, *epsilon, *act);
                    let mut y = vec![0.0; numel(id)];
                    let p = &mut self.params;
                    if train.is_some() && !frozen {
                        let mut stats = vec![0.0; 2 * d.c];
                        let (mut mm, mut mv) = (p[*moving_mean].clone(), p[*moving_var].clone());
                        r::batchnorm::batchnorm_train(
                            &d, &vals[*x], &p[*gamma], &p[*beta], &mut y, &mut stats, &mut mm, &mut mv,
                        )?;
                        (p[*moving_mean], p[*moving_var]) = (mm, mv);
                        saved[id] = stats;
                    } else {
                        r::batchnorm::batchnorm_eval(
                            &d,
                            &vals[*x],
                            &p[*gamma],
                            &p[*beta],
                            &p[*moving_mean],
                            &p[*moving_var],
                            &mut y,
                        )?;
                    }
                    y
                }
            };
            vals[id] = v;
        }
        Ok(Forward {
            values: vals,
            aux,
            saved,
        })
    }

    /// One training step on a batch of `b` samples; returns the mean loss.
    pub fn train_step(
        &mut self,
        x: &[f32],
        labels: &[u32],
        values: &[f32],
        b: usize,
        lr: f32,
    ) -> Result<f64> {
        // This step's number, as the GPU's per-step uniform holds it (dropout masks).
        let t = self.step + 1;
        let Forward {
            values: vals,
            aux,
            saved,
        } = self.forward(x, b, Some(t))?;
        let g = &self.graph;
        let n = g.nodes.len();
        let numel = |id: NodeId| b * g.shape(id).iter().product::<usize>();
        let out = &vals[self.output];
        let cols = out.len() / b;
        let mut losses = vec![0.0; b];
        let mut dout = vec![0.0; out.len()];
        let scale = 1.0 / b as f32;
        match self.loss {
            Loss::SparseCategoricalCrossentropy => {
                r::loss::softmax_cross_entropy(out, cols, labels, &mut losses, Some(&mut dout), scale)
            }
            Loss::BinaryCrossentropy => {
                r::loss::bce_with_logits(out, values, cols, &mut losses, Some(&mut dout), scale)
            }
            Loss::MeanSquaredError => r::loss::mse(out, values, cols, &mut losses, Some(&mut dout), scale),
        }
        let mean_loss = losses.iter().map(|&l| l as f64).sum::<f64>() / b as f64;

        // Backward.
        let req = requires_grad(g);
        let mut grads: Vec<Option<Vec<f32>>> = vec![None; n];
        grads[self.output] = Some(dout);
        let add_grad = |grads: &mut Vec<Option<Vec<f32>>>, i: NodeId, d: Vec<f32>| match &mut grads[i] {
            Some(acc) => acc.iter_mut().zip(&d).for_each(|(a, v)| *a += v),
            slot => *slot = Some(d),
        };
        let pre_act = |act: Activation, y: &[f32], dy: &[f32]| -> Vec<f32> {
            if act == Activation::Identity {
                return dy.to_vec();
            }
            let mut dz = vec![0.0; dy.len()];
            r::elementwise::activation_backward(act, y, dy, &mut dz);
            dz
        };
        for id in backward_order(g, self.output) {
            let dy = grads[id].take().expect("gradient complete");
            match &g.nodes[id].op {
                Op::Dense { x, w, b: bias, act } => {
                    let dz = pre_act(*act, &vals[id], &dy);
                    let ws = g.shape(*w);
                    let mut d = MatmulDesc::new(ws[0], ws[1], b);
                    d.trans_a = true;
                    let mut dw = vec![0.0; ws[0] * ws[1]];
                    r::matmul::matmul(&d, &dz, &vals[*x], None, &mut dw)?;
                    if let Some(bias) = bias {
                        let mut db = vec![0.0; ws[0]];
                        r::reduce::channel_sum(&dz, b, ws[0], 1, &mut db, false);
                        add_grad(&mut grads, *bias, db);
                    }
                    if req[*x] {
                        let d = MatmulDesc::new(b, ws[1], ws[0]);
                        let mut dx = vec![0.0; numel(*x)];
                        r::matmul::matmul(&d, &dz, &self.params[*w], None, &mut dx)?;
                        add_grad(&mut grads, *x, dx);
                    }
                    add_grad(&mut grads, *w, dw);
                }
                Op::Conv2d {
                    x,
                    w,
                    b: bias,
                    stride,
                    padding,
                    act,
                } => {
                    let dz = pre_act(*act, &vals[id], &dy);
                    let desc = conv_desc(b, g.shape(*x), g.shape(*w), *stride, *padding);
                    let mut dw = vec![0.0; self.params[*w].len()];
                    let mut db = bias.map(|b| vec![0.0; self.params[b].len()]);
                    let mut dx = req[*x].then(|| vec![0.0; numel(*x)]);
                    r::conv::conv2d_backward(
                        &desc,
                        &vals[*x],
                        &self.params[*w],
                        &dz,
                        dx.as_deref_mut(),
                        &mut dw,
                        db.as_deref_mut(),
                    );
                    if let Some(dx) = dx {
                        add_grad(&mut grads, *x, dx);
                    }
                    add_grad(&mut grads, *w, dw);
                    if let (Some(bias), Some(db)) = (bias, db) {
                        add_grad(&mut grads, *bias, db);
                    }
                }
                Op::MaxPool2d { x, window } => {
                    if req[*x] {
                        let desc = pool_desc(b, g.shape(*x), *window)?;
                        let mut dx = vec![0.0; numel(*x)];
                        r::pool::max_pool2d_backward(&desc, &dy, &aux[id], &mut dx);
                        add_grad(&mut grads, *x, dx);
                    }
                }
                Op::AvgPool2d { x, window } => {
                    if req[*x] {
                        let desc = pool_desc(b, g.shape(*x), *window)?;
                        let mut dx = vec![0.0; numel(*x)];
                        r::pool::avg_pool2d_backward(&desc, &dy, &mut dx);
                        add_grad(&mut grads, *x, dx);
                    }
                }
                Op::Reshape { x } => {
                    if req[*x] {
                        add_grad(&mut grads, *x, dy);
                    }
                }
                Op::Act { x, act } => {
                    if req[*x] {
                        let mut dx = vec![0.0; dy.len()];
                        r::elementwise::activation_backward(*act, &vals[id], &dy, &mut dx);
                        add_grad(&mut grads, *x, dx);
                    }
                }
                Op::Dropout { x, rate, seed } => {
                    if req[*x] {
                        let mut dx = vec![0.0; dy.len()];
                        r::dropout::dropout(&dy, &mut dx, *rate, *seed, t)?;
                        add_grad(&mut grads, *x, dx);
                    }
                }
                Op::BatchNorm {
                    x,
                    gamma,
                    beta,
                    moving_mean,
                    moving_var,
                    momentum,
                    epsilon,
                    act,
                    frozen: true,
                } => {
                    if req[*x] {
                        let d = batch_norm_desc(b, g.shape(*x), *momentum, *epsilon, *act);
                        let p = &self.params;
                        let mut dx = vec![0.0; numel(*x)];
                        r::batchnorm::batchnorm_eval_backward(
                            &d,
                            &vals[*x],
                            &p[*gamma],
                            &p[*beta],
                            &p[*moving_mean],
                            &p[*moving_var],
                            &dy,
                            &mut dx,
                        )?;
                        add_grad(&mut grads, *x, dx);
                    }
                }
                Op::BatchNorm {
                    x,
                    gamma,
                    beta,
                    momentum,
                    epsilon,
                    act,
                    ..
                } => {
                    let d = batch_norm_desc(b, g.shape(*x), *momentum, *epsilon, *act);
                    let (mut dg, mut db) = (vec![0.0; d.c], vec![0.0; d.c]);
                    let mut dx = req[*x].then(|| vec![0.0; numel(*x)]);
                    r::batchnorm::batchnorm_backward(
                        &d,
                        &vals[*x],
                        &self.params[*gamma],
                        &self.params[*beta],
                        &saved[id],
                        &dy,
                        dx.as_deref_mut(),
                        &mut dg,
                        &mut db,
                    )?;
                    if let Some(dx) = dx {
                        add_grad(&mut grads, *x, dx);
                    }
                    add_grad(&mut grads, *gamma, dg);
                    add_grad(&mut grads, *beta, db);
                }
                Op::Input | Op::Param { .. } => unreachable!("not in backward order"),
            }
        }
        // Clipping, over every trainable parameter's gradient, as the GPU plan.
        if let Some(max_norm) = self.clip_norm {
            let trainable = |id: usize| matches!(g.nodes[id].op, Op::Param { trainable: true, .. });
            let mut views: Vec<&mut [f32]> = grads
                .iter_mut()
                .enumerate()
                .filter(|(id, _)| trainable(*id))
                .map(|(id, d)| {
                    d.get_or_insert_with(|| vec![0.0; self.params[id].len()])
                        .as_mut_slice()
                })
                .collect();
            r::clip::clip_by_global_norm(&mut views, max_norm);
        }
        // Update, in node order like the GPU plan.
        self.step = t;
        for (id, node) in g.nodes.iter().enumerate() {
            if let Op::Param { trainable: true, .. } = node.op {
                let grad = grads[id]
                    .take()
                    .unwrap_or_else(|| vec![0.0; self.params[id].len()]);
                r::optim::optimizer_step(
                    &self.optimizer,
                    self.step,
                    lr,
                    &mut self.params[id],
                    &grad,
                    &mut self.state[id],
                );
            }
        }
        Ok(mean_loss)
    }
}
