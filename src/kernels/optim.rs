//! Optimizer launchers: one fused dispatch per parameter tensor for Adam/AdamW, SGD
//! (plain, momentum, Nesterov, L2 weight decay) and RMSprop (plain, momentum,
//! centered).
//!
//! The exact update rules are written in the header of `shaders/optim.wgsl`; the CPU
//! twins are in [`crate::reference::optim`].
//!
//! Values that change every step (learning rate, step number, Adam's bias
//! corrections) live in one [`StepUniform`] per model, bound to every optimizer
//! dispatch and rewritten once per step with [`StepUniform::write`]; the
//! hyper-parameters fixed for the run go in each dispatch's own params uniform. So a
//! training loop builds its optimizer dispatches once and replays them every step:
//!
//! ```no_run
//! # use wgml::{Context, Tensor};
//! # use wgml::kernels::optim::{Optimizer, StepUniform, optimizer_step};
//! # fn demo(ctx: &Context, param: &Tensor, grad: &Tensor, state: &[Tensor]) -> wgml::Result<()> {
//! let opt = Optimizer::adam(1e-3);
//! let step = StepUniform::new(ctx)?;
//! let update = optimizer_step(ctx, &opt, &step, param, grad, state)?;
//! for t in 1..=100 {
//!     // ... record forward and backward, filling `grad` ...
//!     step.write(ctx, &opt, t, opt.lr())?;
//!     ctx.run(&[&update])?;
//! }
//! # Ok(()) }
//! ```

use crate::error::{Error, Result};
use crate::gpu::{Context, DType, Dispatch, Tensor};
use crate::kernels::{Kernel, Shader, groups_for};

/// Invocations per workgroup of the optimizer kernels.
pub const WG: u32 = 256;

/// Where Adam's epsilon sits relative to the bias corrections.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum EpsilonPlacement {
    /// PyTorch (`torch.optim.Adam`): `p -= lr·m̂/(√v̂ + ε)` with `m̂ = m/(1−β1^t)`,
    /// `v̂ = v/(1−β2^t)`.
    PyTorch,
    /// Keras 3 (`keras.optimizers.Adam`): `p -= lr·√(1−β2^t)/(1−β1^t) · m/(√v + ε)`.
    Keras,
}

/// An optimizer and its hyper-parameters.
///
/// `lr` is the initial (or constant) learning rate; the rate actually used by a step
/// is the one given to [`StepUniform::write`], so schedules need no new dispatches.
///
/// In JSON (a checkpoint's architecture, `wgml train --model FILE.json`), fields left
/// out take Keras' defaults: Adam's β1 0.9, β2 0.999, ε 1e-7 (Keras placement),
/// RMSprop's ρ 0.9 and ε 1e-7, no momentum, no weight decay.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub enum Optimizer {
    /// Adam; AdamW (decoupled weight decay, as `torch.optim.AdamW`) when
    /// `weight_decay > 0`. State: `[m, v]`.
    Adam {
        /// Initial (or constant) learning rate.
        lr: f32,
        /// Decay rate of the first moment `m`.
        #[serde(default = "keras::beta1")]
        beta1: f32,
        /// Decay rate of the second moment `v`.
        #[serde(default = "keras::beta2")]
        beta2: f32,
        /// Added to the square root of the second moment (where exactly: `epsilon_placement`).
        #[serde(default = "keras::epsilon")]
        epsilon: f32,
        /// Decoupled: `p -= lr·weight_decay·p` before the Adam update.
        #[serde(default)]
        weight_decay: f32,
        /// Whether ε follows PyTorch's or Keras' formula.
        #[serde(default = "keras::placement")]
        epsilon_placement: EpsilonPlacement,
    },
    /// SGD as `torch.optim.SGD` (no dampening). State: `[]` when `momentum == 0`,
    /// else `[momentum buffer]`.
    Sgd {
        /// Initial (or constant) learning rate.
        lr: f32,
        /// Heavy-ball momentum factor (0: plain SGD, no state).
        #[serde(default)]
        momentum: f32,
        /// Nesterov momentum: step along `g + momentum·buf` instead of `buf`.
        #[serde(default)]
        nesterov: bool,
        /// L2, PyTorch style: added to the gradient as `weight_decay·p`.
        #[serde(default)]
        weight_decay: f32,
    },
    /// RMSprop as `torch.optim.RMSprop` (ε outside the square root). State:
    /// `[square average]`, then the momentum buffer when `momentum > 0`, then the
    /// gradient average when `centered`.
    RmsProp {
        /// Initial (or constant) learning rate.
        lr: f32,
        /// Decay rate of the square average.
        #[serde(default = "keras::rho")]
        rho: f32,
        /// Added to the square root of the square average (outside the root).
        #[serde(default = "keras::epsilon")]
        epsilon: f32,
        /// Momentum factor of the update buffer (0: none).
        #[serde(default)]
        momentum: f32,
        /// Centered: subtract the square of the running gradient average from the square
        /// average before the root.
        #[serde(default)]
        centered: bool,
    },
}

/// Keras' defaults for fields a JSON description leaves out.
mod keras {
    use super::EpsilonPlacement;
    pub fn beta1() -> f32 {
        0.9
    }
    pub fn beta2() -> f32 {
        0.999
    }
    pub fn epsilon() -> f32 {
        1e-7
    }
    pub fn rho() -> f32 {
        0.9
    }
    pub fn placement() -> EpsilonPlacement {
        EpsilonPlacement::Keras
    }
}

impl Optimizer {
    /// Adam with Keras' defaults: β1 0.9, β2 0.999, ε 1e-7, Keras ε placement, no
    /// weight decay.
    pub fn adam(lr: f32) -> Self {
        Optimizer::Adam {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-7,
            weight_decay: 0.0,
            epsilon_placement: EpsilonPlacement::Keras,
        }
    }

    /// SGD with heavy-ball momentum `momentum` (0 for plain SGD), no Nesterov, no
    /// weight decay.
    pub fn sgd(lr: f32, momentum: f32) -> Self {
        Optimizer::Sgd {
            lr,
            momentum,
            nesterov: false,
            weight_decay: 0.0,
        }
    }

    /// RMSprop with Keras' defaults: ρ 0.9, ε 1e-7, no momentum, not centered.
    pub fn rmsprop(lr: f32) -> Self {
        Optimizer::RmsProp {
            lr,
            rho: 0.9,
            epsilon: 1e-7,
            momentum: 0.0,
            centered: false,
        }
    }

    /// The initial learning rate.
    pub fn lr(&self) -> f32 {
        match *self {
            Optimizer::Adam { lr, .. } | Optimizer::Sgd { lr, .. } | Optimizer::RmsProp { lr, .. } => lr,
        }
    }

    /// The same optimizer with another learning rate.
    pub fn with_lr(&self, new_lr: f32) -> Self {
        let mut o = self.clone();
        match &mut o {
            Optimizer::Adam { lr, .. } | Optimizer::Sgd { lr, .. } | Optimizer::RmsProp { lr, .. } => {
                *lr = new_lr
            }
        }
        o
    }

    /// The weight decay: AdamW's decoupled decay, SGD's L2 term; 0 for RMSprop,
    /// which has none.
    pub fn weight_decay(&self) -> f32 {
        match *self {
            Optimizer::Adam { weight_decay, .. } | Optimizer::Sgd { weight_decay, .. } => weight_decay,
            Optimizer::RmsProp { .. } => 0.0,
        }
    }

    /// The same optimizer without weight decay: what updates a parameter excluded
    /// from it (Keras' `exclude_from_weight_decay`, a PyTorch parameter group with
    /// `weight_decay=0`).
    pub fn without_weight_decay(&self) -> Self {
        let mut o = self.clone();
        if let Optimizer::Adam { weight_decay, .. } | Optimizer::Sgd { weight_decay, .. } = &mut o {
            *weight_decay = 0.0;
        }
        o
    }

    /// Short name for messages and reports.
    pub fn name(&self) -> &'static str {
        match self {
            Optimizer::Adam { weight_decay, .. } if *weight_decay > 0.0 => "AdamW",
            Optimizer::Adam { .. } => "Adam",
            Optimizer::Sgd { .. } => "SGD",
            Optimizer::RmsProp { .. } => "RMSprop",
        }
    }

    /// How many state tensors of the parameter's shape this optimizer keeps (Adam 2,
    /// SGD 0 or 1, RMSprop 1 to 3).
    pub fn state_count(&self) -> usize {
        self.state_names().len()
    }

    /// Names of the state tensors in the order [`optimizer_step`] takes them
    /// (PyTorch's state-dict names).
    pub fn state_names(&self) -> Vec<&'static str> {
        match *self {
            Optimizer::Adam { .. } => vec!["exp_avg", "exp_avg_sq"],
            Optimizer::Sgd { momentum, .. } => {
                if momentum > 0.0 {
                    vec!["momentum_buffer"]
                } else {
                    vec![]
                }
            }
            Optimizer::RmsProp {
                momentum, centered, ..
            } => {
                let mut names = vec!["square_avg"];
                if momentum > 0.0 {
                    names.push("momentum_buffer");
                }
                if centered {
                    names.push("grad_avg");
                }
                names
            }
        }
    }

    /// Checks every hyper-parameter: learning rate and ε finite and ≥ 0, β and ρ in
    /// [0, 1), momentum in [0, 1], weight decay finite and ≥ 0, Nesterov only with
    /// momentum > 0. The error names the field.
    pub fn validate(&self) -> Result<()> {
        let name = self.name();
        let non_negative = |field: &str, v: f32| -> Result<()> {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                Err(Error::invalid(format!(
                    "{name}: {field} must be a finite number >= 0, got {v}"
                )))
            }
        };
        let unit_open = |field: &str, v: f32| -> Result<()> {
            if (0.0..1.0).contains(&v) {
                Ok(())
            } else {
                Err(Error::invalid(format!(
                    "{name}: {field} must be in [0, 1), got {v}"
                )))
            }
        };
        let unit_closed = |field: &str, v: f32| -> Result<()> {
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(Error::invalid(format!(
                    "{name}: {field} must be in [0, 1], got {v}"
                )))
            }
        };
        match *self {
            Optimizer::Adam {
                lr,
                beta1,
                beta2,
                epsilon,
                weight_decay,
                ..
            } => {
                non_negative("lr", lr)?;
                unit_open("beta1", beta1)?;
                unit_open("beta2", beta2)?;
                non_negative("epsilon", epsilon)?;
                non_negative("weight_decay", weight_decay)?;
            }
            Optimizer::Sgd {
                lr,
                momentum,
                nesterov,
                weight_decay,
            } => {
                non_negative("lr", lr)?;
                unit_closed("momentum", momentum)?;
                non_negative("weight_decay", weight_decay)?;
                if nesterov && momentum <= 0.0 {
                    return Err(Error::invalid(format!(
                        "{name}: nesterov needs momentum > 0, got momentum {momentum}"
                    )));
                }
            }
            Optimizer::RmsProp {
                lr,
                rho,
                epsilon,
                momentum,
                ..
            } => {
                non_negative("lr", lr)?;
                unit_open("rho", rho)?;
                non_negative("epsilon", epsilon)?;
                unit_closed("momentum", momentum)?;
            }
        }
        Ok(())
    }
}

/// Mirrors `Step` in `shaders/step.wgsl`: the values that change every step.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct StepValues {
    /// This step's learning rate.
    pub lr: f32,
    /// The step number, 1-based.
    pub t: u32,
    /// `1 − β1^t` (Adam; 1 otherwise).
    pub bc1: f32,
    /// `1 − β2^t` (Adam; 1 otherwise).
    pub bc2: f32,
    /// Adam's step size: `lr/(1 − β1^t)` (PyTorch placement) or
    /// `lr·√(1 − β2^t)/(1 − β1^t)` (Keras placement); `lr` otherwise.
    pub adam_step: f32,
    /// `√(1 − β2^t)` (Adam; 1 otherwise).
    pub bc2_sqrt: f32,
    /// The forward/backward pass number, 1-based: the counter of the random
    /// streams of dropout, noise and attention dropout. Equal to `t` unless
    /// gradients are accumulated over several passes per optimizer step.
    pub draw: u32,
    /// This pass' weight in an accumulated gradient ([`accumulate_gradient`]); 1
    /// otherwise.
    pub grad_scale: f32,
}

impl StepValues {
    /// The values for step `t` (1-based) at learning rate `lr`; bias corrections are
    /// computed in f64 and rounded once to f32.
    pub fn new(optimizer: &Optimizer, t: u32, lr: f32) -> Result<Self> {
        optimizer.validate()?;
        if t == 0 {
            return Err(Error::invalid(
                "optimizer step t is 1-based; t = 0 would divide by a zero bias correction",
            ));
        }
        if !(lr.is_finite() && lr >= 0.0) {
            return Err(Error::invalid(format!(
                "{}: the step's lr must be a finite number >= 0, got {lr}",
                optimizer.name()
            )));
        }
        let lr64 = lr as f64;
        let (bc1, bc2, adam_step) = match *optimizer {
            Optimizer::Adam {
                beta1,
                beta2,
                epsilon_placement,
                ..
            } => {
                let bc1 = 1.0 - (beta1 as f64).powf(t as f64);
                let bc2 = 1.0 - (beta2 as f64).powf(t as f64);
                let step = match epsilon_placement {
                    EpsilonPlacement::PyTorch => lr64 / bc1,
                    EpsilonPlacement::Keras => lr64 * bc2.sqrt() / bc1,
                };
                (bc1, bc2, step)
            }
            _ => (1.0, 1.0, lr64),
        };
        Ok(StepValues {
            lr,
            t,
            bc1: bc1 as f32,
            bc2: bc2 as f32,
            adam_step: adam_step as f32,
            bc2_sqrt: bc2.sqrt() as f32,
            draw: t,
            grad_scale: 1.0,
        })
    }

    /// These values for pass `draw` (1-based) of an accumulated optimizer step,
    /// weighted `grad_scale` in the accumulated gradient; errors for a zero draw or
    /// a weight that is not a finite number in (0, 1].
    pub fn for_pass(self, draw: u32, grad_scale: f32) -> Result<Self> {
        if draw == 0 {
            return Err(Error::invalid("the pass number (draw) is 1-based, got 0"));
        }
        if !(grad_scale > 0.0 && grad_scale <= 1.0) {
            return Err(Error::invalid(format!(
                "a pass' weight in an accumulated gradient must be in (0, 1], got {grad_scale}"
            )));
        }
        Ok(StepValues {
            draw,
            grad_scale,
            ..self
        })
    }
}

/// The per-step uniform shared by every optimizer dispatch of a model, and read
/// by its dropout, noise and attention-dropout dispatches for the draw number.
#[derive(Debug, Clone)]
pub struct StepUniform {
    /// Created with `ctx.create_buffer`, `UNIFORM | COPY_DST`, holding [`StepValues`].
    pub buffer: wgpu::Buffer,
}

impl StepUniform {
    /// Allocates the uniform (zeroed: write it before the first step).
    pub fn new(ctx: &Context) -> Result<Self> {
        let buffer = ctx.create_buffer(
            "per-step uniform",
            std::mem::size_of::<StepValues>() as u64,
            wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        )?;
        Ok(StepUniform { buffer })
    }

    /// Writes the values for optimizer step `t` (1-based) at learning rate `lr`
    /// (queued with `queue.write_buffer`, ordered before later submissions; no
    /// readback). `optimizer` must be the one the dispatches were built with.
    pub fn write(&self, ctx: &Context, optimizer: &Optimizer, t: u32, lr: f32) -> Result<()> {
        self.write_values(ctx, &StepValues::new(optimizer, t, lr)?)
    }

    /// Writes `values` (queued, as [`StepUniform::write`]).
    pub fn write_values(&self, ctx: &Context, values: &StepValues) -> Result<()> {
        ctx.check()?;
        ctx.queue
            .write_buffer(&self.buffer, 0, bytemuck::bytes_of(values));
        Ok(())
    }
}

/// Mirrors `OptimParams` in `shaders/adam.wgsl`: hyper-parameters fixed for the run.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct Params {
    n: u32,
    flags: u32,
    beta1: f32,
    beta2: f32,
    epsilon: f32,
    weight_decay: f32,
    momentum: f32,
    rho: f32,
}

const KERAS_PLACEMENT: u32 = 1;
const NESTEROV: u32 = 2;

const ADAM: Kernel = Shader::Optim.kernel("adam");
const ADAM_VEC4: Kernel = Shader::Optim.kernel("adam_vec4");
const SGD: Kernel = Shader::Optim.kernel("sgd");
const SGD_MOMENTUM: Kernel = Shader::Optim.kernel("sgd_momentum");
const RMSPROP: Kernel = Shader::Optim.kernel("rmsprop");
const RMSPROP_MOMENTUM: Kernel = Shader::Optim.kernel("rmsprop_momentum");
const RMSPROP_CENTERED: Kernel = Shader::Optim.kernel("rmsprop_centered");
const RMSPROP_CENTERED_MOMENTUM: Kernel = Shader::Optim.kernel("rmsprop_centered_momentum");
const ACCUMULATE_FIRST: Kernel = Shader::Optim.kernel("accumulate_first");
const ACCUMULATE_ADD: Kernel = Shader::Optim.kernel("accumulate_add");
const ACCUMULATE_FINISH: Kernel = Shader::Optim.kernel("accumulate_finish");
const EMA: Kernel = Shader::Optim.kernel("ema");

/// The uniform of an Adam-family `opt` over `n` parameters (for the fused
/// epilogue of [`matmul_adam`](crate::kernels::matmul::matmul_adam)); an error
/// for other optimizers or an `n` past u32.
pub(crate) fn adam_hyper(opt: &Optimizer, n: usize) -> Result<Params> {
    opt.validate()?;
    let Optimizer::Adam {
        beta1,
        beta2,
        epsilon,
        weight_decay,
        epsilon_placement,
        ..
    } = *opt
    else {
        return Err(Error::invalid(format!(
            "the fused Adam epilogue applies Adam only, not {}",
            opt.name()
        )));
    };
    Ok(Params {
        n: u32::try_from(n).map_err(|_| Error::TooLarge {
            what: format!("an optimizer step over {n} elements"),
            bytes: (n as u64) * 4,
            limit: (u32::MAX as u64) * 4,
        })?,
        flags: if epsilon_placement == EpsilonPlacement::Keras {
            KERAS_PLACEMENT
        } else {
            0
        },
        beta1,
        beta2,
        epsilon,
        weight_decay,
        momentum: 0.0,
        rho: 0.0,
    })
}

/// One fused update of `param` from `grad`, using and updating `state`
/// ([`Optimizer::state_count`] tensors of `param`'s shape, in the order of
/// [`Optimizer::state_names`], zero-initialised by the caller before step 1).
///
/// The returned dispatch reads this step's learning rate and bias corrections from
/// `step` when it runs, so it is built once and replayed every step after
/// [`StepUniform::write`]. Adam over a multiple of 4 elements updates 4 per
/// invocation (the `adam_vec4` entry point), other lengths and optimizers one.
pub fn optimizer_step(
    ctx: &Context,
    opt: &Optimizer,
    step: &StepUniform,
    param: &Tensor,
    grad: &Tensor,
    state: &[Tensor],
) -> Result<Dispatch> {
    optimizer_step_wg(ctx, opt, step, param, grad, state, WG)
}

/// [`optimizer_step`] with an explicit workgroup size (a power of two from 1 to 256),
/// for tests that exercise grid folding on small tensors and for tuning.
pub fn optimizer_step_wg(
    ctx: &Context,
    opt: &Optimizer,
    step: &StepUniform,
    param: &Tensor,
    grad: &Tensor,
    state: &[Tensor],
    wg: u32,
) -> Result<Dispatch> {
    const OP: &str = "optimizer_step";
    opt.validate()?;
    if !wg.is_power_of_two() || wg > 256 {
        return Err(Error::invalid(format!(
            "{OP}: workgroup size must be a power of two from 1 to 256, got {wg}"
        )));
    }
    param.expect_dtype(OP, "param", DType::F32)?;
    grad.expect_dtype(OP, "grad", DType::F32)?;
    if grad.shape() != param.shape() {
        return Err(Error::shape(
            OP,
            format!(
                "grad shape {:?} differs from param shape {:?}",
                grad.shape(),
                param.shape()
            ),
        ));
    }
    let names = opt.state_names();
    if state.len() != names.len() {
        return Err(Error::invalid(format!(
            "{OP}: {} keeps {} state tensor(s) [{}], got {}",
            opt.name(),
            names.len(),
            names.join(", "),
            state.len()
        )));
    }
    for (s, name) in state.iter().zip(&names) {
        s.expect_dtype(OP, "optimizer state", DType::F32)?;
        if s.shape() != param.shape() {
            return Err(Error::shape(
                OP,
                format!(
                    "state tensor {name} has shape {:?}, differing from param shape {:?}",
                    s.shape(),
                    param.shape()
                ),
            ));
        }
    }
    // A buffer may not be bound twice when one of the bindings is writable.
    let mut buffers: Vec<(&str, &wgpu::Buffer)> = vec![("param", &param.buffer), ("grad", &grad.buffer)];
    buffers.extend(names.iter().zip(state).map(|(n, s)| (*n, &s.buffer)));
    for (i, (a, ba)) in buffers.iter().enumerate() {
        if let Some((b, _)) = buffers[i + 1..].iter().find(|(_, bb)| *bb == *ba) {
            return Err(Error::invalid(format!(
                "{OP}: {a} and {b} are the same buffer; each needs its own"
            )));
        }
    }
    let n = param.numel();
    let n32 = u32::try_from(n).map_err(|_| Error::TooLarge {
        what: format!("an optimizer step over {n} elements"),
        bytes: (n as u64) * 4,
        limit: (u32::MAX as u64) * 4,
    })?;

    let mut params = Params {
        n: n32,
        flags: 0,
        beta1: 0.0,
        beta2: 0.0,
        epsilon: 0.0,
        weight_decay: 0.0,
        momentum: 0.0,
        rho: 0.0,
    };
    let mut bindings: Vec<(u32, &wgpu::Buffer)> =
        vec![(1, &step.buffer), (2, &param.buffer), (3, &grad.buffer)];
    let kernel = match *opt {
        Optimizer::Adam {
            beta1,
            beta2,
            epsilon,
            weight_decay,
            epsilon_placement,
            ..
        } => {
            params.beta1 = beta1;
            params.beta2 = beta2;
            params.epsilon = epsilon;
            params.weight_decay = weight_decay;
            if epsilon_placement == EpsilonPlacement::Keras {
                params.flags |= KERAS_PLACEMENT;
            }
            bindings.push((4, &state[0].buffer));
            bindings.push((5, &state[1].buffer));
            if n.is_multiple_of(4) {
                // 4 elements per invocation (see adam_vec4 in the shader).
                return ctx.dispatch(
                    ADAM_VEC4,
                    &[("WG", wg as f64)],
                    &params,
                    &bindings,
                    groups_for(ctx, n / 4, wg)?,
                );
            }
            ADAM
        }
        Optimizer::Sgd {
            momentum,
            nesterov,
            weight_decay,
            ..
        } => {
            params.momentum = momentum;
            params.weight_decay = weight_decay;
            if nesterov {
                params.flags |= NESTEROV;
            }
            if momentum > 0.0 {
                bindings.push((4, &state[0].buffer));
                SGD_MOMENTUM
            } else {
                SGD
            }
        }
        Optimizer::RmsProp {
            rho,
            epsilon,
            momentum,
            centered,
            ..
        } => {
            params.rho = rho;
            params.epsilon = epsilon;
            params.momentum = momentum;
            bindings.push((4, &state[0].buffer));
            let has_momentum = momentum > 0.0;
            if has_momentum {
                bindings.push((5, &state[1].buffer));
            }
            if centered {
                bindings.push((6, &state[if has_momentum { 2 } else { 1 }].buffer));
            }
            match (has_momentum, centered) {
                (false, false) => RMSPROP,
                (true, false) => RMSPROP_MOMENTUM,
                (false, true) => RMSPROP_CENTERED,
                (true, true) => RMSPROP_CENTERED_MOMENTUM,
            }
        }
    };
    ctx.dispatch(
        kernel,
        &[("WG", wg as f64)],
        &params,
        &bindings,
        groups_for(ctx, n, wg)?,
    )
}

/// Checks two f32 tensors of one shape in distinct buffers (`b` written apart
/// from `a`) for `op`; returns their length and the uniform of a dispatch over it,
/// every hyper-parameter 0.
fn elementwise_pair(
    op: &'static str,
    (a_name, a): (&'static str, &Tensor),
    (b_name, b): (&'static str, &Tensor),
) -> Result<(usize, Params)> {
    use crate::kernels::elementwise::{count_u32, expect_same_shape, same_buffer};
    a.expect_dtype(op, a_name, DType::F32)?;
    b.expect_dtype(op, b_name, DType::F32)?;
    expect_same_shape(op, a_name, a, b_name, b)?;
    if same_buffer(a, b) {
        return Err(Error::invalid(format!(
            "{op}: {a_name} and {b_name} are the same buffer; each needs its own"
        )));
    }
    let n = a.numel();
    let params = Params {
        n: count_u32(op, b_name, n)?,
        ..bytemuck::Zeroable::zeroed()
    };
    Ok((n, params))
}

/// Which pass of an accumulated gradient a dispatch of [`accumulate_gradient`] serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AccumulatePass {
    /// `acc = w·g`: the first pass of an optimizer step.
    First,
    /// `acc += w·g`: a middle pass.
    Add,
    /// `g = acc + w·g`: the last pass; the gradient then holds the whole sum, for
    /// clipping and the update.
    Finish,
}

/// One pass of gradient accumulation over `grad` into `acc` (see `shaders/optim.wgsl`),
/// weighted by the `grad_scale` of `step` when the dispatch runs
/// ([`StepValues::for_pass`]). `acc` and `grad` must be distinct f32 buffers of
/// one shape. CPU twins: `accumulate_first`, `accumulate_add` and
/// `accumulate_finish` in [`crate::reference::optim`].
pub fn accumulate_gradient(
    ctx: &Context,
    pass: AccumulatePass,
    step: &StepUniform,
    acc: &Tensor,
    grad: &Tensor,
) -> Result<Dispatch> {
    let (n, params) = elementwise_pair("accumulate_gradient", ("acc", acc), ("grad", grad))?;
    let kernel = match pass {
        AccumulatePass::First => ACCUMULATE_FIRST,
        AccumulatePass::Add => ACCUMULATE_ADD,
        AccumulatePass::Finish => ACCUMULATE_FINISH,
    };
    ctx.dispatch(
        kernel,
        &[("WG", WG as f64)],
        &params,
        &[(1, &step.buffer), (2, &acc.buffer), (3, &grad.buffer)],
        groups_for(ctx, n, WG)?,
    )
}

/// Updates `average`, the exponential moving average of `param` (Keras' `use_ema`
/// with `ema_momentum = momentum`), after the step's update: `average = momentum ·
/// average + (1 − momentum) · param`, except at optimizer step `start` (the step
/// read from `step` when the dispatch runs), where the average takes `param`
/// itself, as Keras' first step does. `momentum` must be in [0, 1); `average` and
/// `param` distinct f32 buffers of one shape. CPU twin:
/// [`crate::reference::optim::ema_update`].
pub fn ema_update(
    ctx: &Context,
    step: &StepUniform,
    param: &Tensor,
    average: &Tensor,
    momentum: f32,
    start: u32,
) -> Result<Dispatch> {
    if !(0.0..1.0).contains(&momentum) {
        return Err(Error::invalid(format!(
            "the moving average's momentum {momentum} is outside [0, 1)"
        )));
    }
    let (n, base) = elementwise_pair("ema_update", ("param", param), ("average", average))?;
    let params = Params {
        flags: start,
        momentum,
        ..base
    };
    ctx.dispatch(
        EMA,
        &[("WG", WG as f64)],
        &params,
        &[(1, &step.buffer), (2, &param.buffer), (4, &average.buffer)],
        groups_for(ctx, n, WG)?,
    )
}
