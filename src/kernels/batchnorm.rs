//! Batch-normalization launchers (`shaders/batchnorm.wgsl`): the training forward
//! (batch statistics, moving statistics updated), the evaluation forward (moving
//! statistics) and the backward passes of both, each with an optional activation after the
//! normalization (Keras' BatchNormalization → Activation in one pass). CPU twin:
//! [`crate::reference::batchnorm`].

use crate::error::{Error, Result};
use crate::gpu::{Context, DType, Dispatch, Tensor};
use crate::kernels::elementwise::{activation_code, count_u32, same_buffer};
use crate::kernels::matmul::Activation;
use crate::kernels::{Kernel, Shader, groups_for};

/// Invocations per workgroup.
pub const WG: u32 = 256;

const TRAIN: Kernel = Shader::Batchnorm.kernel("batchnorm_train");
const EVAL: Kernel = Shader::Batchnorm.kernel("batchnorm_eval");
const EVAL_BACKWARD: Kernel = Shader::Batchnorm.kernel("batchnorm_eval_backward");
const BACKWARD: Kernel = Shader::Batchnorm.kernel("batchnorm_backward");
const BACKWARD_ROWS: Kernel = Shader::Batchnorm.kernel("batchnorm_backward_rows");

/// Mirrors `Params` in `shaders/batchnorm.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    c: u32,
    s: u32,
    momentum: f32,
    epsilon: f32,
    act: u32,
    write_dx: u32,
    _pad: u32,
}

/// x viewed as `[n, c, s]`, normalized per channel `c` over `n · s` values (NCHW:
/// `s = H · W`; a Dense layer's `[batch, features]`: `s = 1`), then `activation`.
/// `momentum` and `epsilon` as Keras' BatchNormalization (defaults 0.99 and 0.001).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchNormDesc {
    /// Leading size `n` (batch).
    pub n: usize,
    /// Channels `c`: one mean and variance each.
    pub c: usize,
    /// Elements per channel of each item (`H · W` for NCHW, 1 for a Dense layer).
    pub s: usize,
    /// Weight of the old moving statistics in their update:
    /// `moving = momentum·moving + (1 − momentum)·batch`.
    pub momentum: f32,
    /// Added to the variance before its square root.
    pub epsilon: f32,
    /// Applied after the normalization (Identity for none).
    pub activation: Activation,
}

impl BatchNormDesc {
    /// Keras' defaults (momentum 0.99, epsilon 0.001) for the given view.
    pub fn new(n: usize, c: usize, s: usize) -> BatchNormDesc {
        BatchNormDesc {
            n,
            c,
            s,
            momentum: 0.99,
            epsilon: 1e-3,
            activation: Activation::Identity,
        }
    }

    /// The same with `activation` after the normalization.
    pub fn activation(self, activation: Activation) -> BatchNormDesc {
        BatchNormDesc { activation, ..self }
    }

    /// Number of elements of x, `n · c · s`.
    pub fn numel(&self) -> usize {
        self.n * self.c * self.s
    }

    /// Errors unless the view is non-empty, `momentum` is in [0, 1] and `epsilon`
    /// is positive and finite.
    pub fn validate(&self) -> Result<()> {
        if self.n == 0 || self.c == 0 || self.s == 0 {
            return Err(Error::shape(
                "batchnorm",
                format!("the view [n={}, c={}, s={}] is empty", self.n, self.c, self.s),
            ));
        }
        if !(0.0..=1.0).contains(&self.momentum) {
            return Err(Error::invalid(format!(
                "batch normalization momentum {} is outside [0, 1] (Keras' default is 0.99: \
                 the weight of the old moving statistics)",
                self.momentum
            )));
        }
        if !(self.epsilon > 0.0 && self.epsilon.is_finite()) {
            return Err(Error::invalid(format!(
                "batch normalization epsilon {} must be positive and finite (Keras' default is 0.001)",
                self.epsilon
            )));
        }
        Ok(())
    }

    /// The backward kernel and its grid: one workgroup per channel, or for `s = 1`
    /// one invocation per channel. (The training forward keeps one workgroup per
    /// channel at `s = 1` too: its one-invocation form measured 9× slower on
    /// lavapipe, see BENCHMARKS.md.)
    fn backward_kernel(&self, ctx: &Context) -> Result<(Kernel, [u32; 3])> {
        if self.s == 1 {
            Ok((BACKWARD_ROWS, groups_for(ctx, self.c, WG)?))
        } else {
            Ok((BACKWARD, groups_for(ctx, self.c, 1)?))
        }
    }

    fn params(&self, write_dx: bool) -> Result<Params> {
        self.validate()?;
        Ok(Params {
            n: count_u32("batchnorm", "n", self.n)?,
            c: count_u32("batchnorm", "c", self.c)?,
            s: count_u32("batchnorm", "s", self.s)?,
            momentum: self.momentum,
            epsilon: self.epsilon,
            act: activation_code(self.activation),
            write_dx: write_dx as u32,
            _pad: 0,
        })
    }
}

/// Checks that every tensor is f32 with `len` elements and that no written tensor
/// shares a buffer with any other one.
type Arg<'a> = (&'static str, &'a Tensor, usize);

fn check(d: &BatchNormDesc, read: &[Arg<'_>], written: &[Arg<'_>]) -> Result<()> {
    const OP: &str = "batchnorm";
    d.validate()?;
    for &(what, t, len) in read.iter().chain(written) {
        t.expect_dtype(OP, what, DType::F32)?;
        if t.numel() != len {
            return Err(Error::shape(
                OP,
                format!(
                    "{what} has shape {:?} ({} elements) but the view [n={}, c={}, s={}] needs {len}",
                    t.shape(),
                    t.numel(),
                    d.n,
                    d.c,
                    d.s
                ),
            ));
        }
    }
    for (i, &(what, t, _)) in written.iter().enumerate() {
        for &(other, u, _) in read.iter().chain(&written[i + 1..]) {
            if same_buffer(t, u) {
                return Err(Error::invalid(format!(
                    "batchnorm: {what} and {other} must be distinct buffers"
                )));
            }
        }
    }
    Ok(())
}

/// Training forward: `y = act(γ (x − mean) / √(var + ε) + β)` with this batch's
/// per-channel mean and biased variance; writes `saved` (`[2, c]`: the means, then
/// `1/√(var + ε)`, for [`batchnorm_backward`]) and moves `moving_mean`/`moving_var`
/// toward the batch's statistics (`moving = momentum · moving + (1 − momentum) · batch`).
#[allow(clippy::too_many_arguments)]
pub fn batchnorm_train(
    ctx: &Context,
    d: &BatchNormDesc,
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    y: &Tensor,
    saved: &Tensor,
    moving_mean: &Tensor,
    moving_var: &Tensor,
) -> Result<Dispatch> {
    let (n, c) = (d.numel(), d.c);
    check(
        d,
        &[("x", x, n), ("gamma", gamma, c), ("beta", beta, c)],
        &[
            ("y", y, n),
            ("saved", saved, 2 * c),
            ("moving_mean", moving_mean, c),
            ("moving_var", moving_var, c),
        ],
    )?;
    let params = d.params(false)?;
    ctx.dispatch(
        TRAIN,
        &[("WG", WG as f64)],
        &params,
        &[
            (1, &x.buffer),
            (2, &gamma.buffer),
            (3, &beta.buffer),
            (4, &y.buffer),
            (5, &saved.buffer),
            (7, &moving_mean.buffer),
            (8, &moving_var.buffer),
        ],
        groups_for(ctx, c, 1)?,
    )
}

/// Evaluation forward: `y = act(γ (x − moving_mean) / √(moving_var + ε) + β)`.
#[allow(clippy::too_many_arguments)]
pub fn batchnorm_eval(
    ctx: &Context,
    d: &BatchNormDesc,
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    moving_mean: &Tensor,
    moving_var: &Tensor,
    y: &Tensor,
) -> Result<Dispatch> {
    let (n, c) = (d.numel(), d.c);
    check(
        d,
        &[
            ("x", x, n),
            ("gamma", gamma, c),
            ("beta", beta, c),
            ("moving_mean", moving_mean, c),
            ("moving_var", moving_var, c),
        ],
        &[("y", y, n)],
    )?;
    let params = d.params(false)?;
    ctx.dispatch(
        EVAL,
        &[("WG", WG as f64)],
        &params,
        &[
            (1, &x.buffer),
            (2, &gamma.buffer),
            (3, &beta.buffer),
            (4, &y.buffer),
            (7, &moving_mean.buffer),
            (8, &moving_var.buffer),
        ],
        groups_for(ctx, n, WG)?,
    )
}

/// Backward of [`batchnorm_eval`] for its input only (γ, β and the moving
/// statistics are constants: a frozen layer that later layers train through, as
/// Keras runs a layer with `trainable = False`): `dx = dy · act'(z) · γ / √(moving_var + ε)`.
#[allow(clippy::too_many_arguments)]
pub fn batchnorm_eval_backward(
    ctx: &Context,
    d: &BatchNormDesc,
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    moving_mean: &Tensor,
    moving_var: &Tensor,
    dy: &Tensor,
    dx: &Tensor,
) -> Result<Dispatch> {
    let (n, c) = (d.numel(), d.c);
    check(
        d,
        &[
            ("x", x, n),
            ("gamma", gamma, c),
            ("beta", beta, c),
            ("moving_mean", moving_mean, c),
            ("moving_var", moving_var, c),
            ("dy", dy, n),
        ],
        &[("dx", dx, n)],
    )?;
    let params = d.params(true)?;
    ctx.dispatch(
        EVAL_BACKWARD,
        &[("WG", WG as f64)],
        &params,
        &[
            (1, &x.buffer),
            (2, &gamma.buffer),
            (3, &beta.buffer),
            (7, &moving_mean.buffer),
            (8, &moving_var.buffer),
            (9, &dy.buffer),
            (10, &dx.buffer),
        ],
        groups_for(ctx, n, WG)?,
    )
}

/// Backward of [`batchnorm_train`] from the statistics it saved, given `dy`, the
/// gradient of its (activated) output: writes `dgamma` (`Σ g · x̂`), `dbeta`
/// (`Σ g`, with `g = dy · act'`) and, when given, `dx`.
#[allow(clippy::too_many_arguments)]
pub fn batchnorm_backward(
    ctx: &Context,
    d: &BatchNormDesc,
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    saved: &Tensor,
    dy: &Tensor,
    dx: Option<&Tensor>,
    dgamma: &Tensor,
    dbeta: &Tensor,
) -> Result<Dispatch> {
    let (n, c) = (d.numel(), d.c);
    let mut written = vec![("dgamma", dgamma, c), ("dbeta", dbeta, c)];
    if let Some(t) = dx {
        written.push(("dx", t, n));
    }
    check(
        d,
        &[
            ("x", x, n),
            ("gamma", gamma, c),
            ("beta", beta, c),
            ("saved", saved, 2 * c),
            ("dy", dy, n),
        ],
        &written,
    )?;
    let params = d.params(dx.is_some())?;
    let (kernel, groups) = d.backward_kernel(ctx)?;
    // Without dx the shader never touches binding 10, but the layout has it.
    let unused;
    let dx_buffer = match dx {
        Some(t) => t,
        None => {
            unused = Tensor::zeros(ctx, &[1], DType::F32)?;
            &unused
        }
    };
    ctx.dispatch(
        kernel,
        &[("WG", WG as f64)],
        &params,
        &[
            (1, &x.buffer),
            (2, &gamma.buffer),
            (3, &beta.buffer),
            (5, &saved.buffer),
            (9, &dy.buffer),
            (10, &dx_buffer.buffer),
            (11, &dgamma.buffer),
            (12, &dbeta.buffer),
        ],
        groups,
    )
}
