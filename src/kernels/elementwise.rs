//! Elementwise launchers: fill, activations forward/backward, add, mul, scale, axpy,
//! exp_scale and mul_scale, log and div, repeat_scale,
//! bias add (+ activation) per row and per channel.
//!
//! All tensors here are f32. Binary ops require equal shapes (reshape first when a
//! view differs). The output may share its buffer with an input: the launcher then
//! picks the `*_inplace` entry point of `shaders/elementwise.wgsl`, because one
//! buffer cannot be bound both read-only and writable in one dispatch.

use crate::error::{Error, Result};
use crate::gpu::{Context, DType, Dispatch, Tensor};
pub use crate::kernels::matmul::Activation;
use crate::kernels::{Kernel, Shader, groups_for};

/// Invocations per workgroup of the elementwise kernels.
pub const WG: u32 = 256;

/// Mirrors `Params` in `shaders/elementwise.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    alpha: f32,
    beta: f32,
    act: u32,
    c: u32,
    s: u32,
    _pad0: u32,
    _pad1: u32,
}

const FILL: Kernel = Shader::Elementwise.kernel("fill");
const ACT_FWD: Kernel = Shader::Elementwise.kernel("act_fwd");
const ACT_FWD_INPLACE: Kernel = Shader::Elementwise.kernel("act_fwd_inplace");
const ACT_BWD: Kernel = Shader::Elementwise.kernel("act_bwd");
const ACT_BWD_INPLACE: Kernel = Shader::Elementwise.kernel("act_bwd_inplace");
const ACT_BWD_OVER_OUTPUT: Kernel = Shader::Elementwise.kernel("act_bwd_over_output");
const ADD: Kernel = Shader::Elementwise.kernel("add");
const ADD_INPLACE: Kernel = Shader::Elementwise.kernel("add_inplace");
const MUL: Kernel = Shader::Elementwise.kernel("mul");
const MUL_INPLACE: Kernel = Shader::Elementwise.kernel("mul_inplace");
const SQUARE_INPLACE: Kernel = Shader::Elementwise.kernel("square_inplace");
const SCALE: Kernel = Shader::Elementwise.kernel("scale");
const SCALE_INPLACE: Kernel = Shader::Elementwise.kernel("scale_inplace");
const AXPY: Kernel = Shader::Elementwise.kernel("axpy");
const EXP_SCALE: Kernel = Shader::Elementwise.kernel("exp_scale");
const MUL_SCALE: Kernel = Shader::Elementwise.kernel("mul_scale");
const LOG: Kernel = Shader::Elementwise.kernel("log_fwd");
const DIV: Kernel = Shader::Elementwise.kernel("div");
const GELU_FWD: Kernel = Shader::Elementwise.kernel("gelu_fwd");
const GELU_BWD: Kernel = Shader::Elementwise.kernel("gelu_bwd");
const GELU_TANH_FWD: Kernel = Shader::Elementwise.kernel("gelu_tanh_fwd");
const GELU_TANH_BWD: Kernel = Shader::Elementwise.kernel("gelu_tanh_bwd");
const SILU_FWD: Kernel = Shader::Elementwise.kernel("silu_fwd");
const SILU_BWD: Kernel = Shader::Elementwise.kernel("silu_bwd");
const REPEAT_SCALE: Kernel = Shader::Elementwise.kernel("repeat_scale");
const REPEAT_BLOCKS: Kernel = Shader::Elementwise.kernel("repeat_blocks");
const SUM_BLOCKS: Kernel = Shader::Elementwise.kernel("sum_blocks");
const BIAS_ACT: Kernel = Shader::Elementwise.kernel("bias_act");
const BIAS_ACT_INPLACE: Kernel = Shader::Elementwise.kernel("bias_act_inplace");

/// The code of `act` in the shaders (`p.act`): 0 identity, 1 relu, 2 sigmoid, 3 tanh.
pub fn activation_code(act: Activation) -> u32 {
    match act {
        Activation::Identity => 0,
        Activation::Relu => 1,
        Activation::Sigmoid => 2,
        Activation::Tanh => 3,
    }
}

/// True when two tensors are views of one GPU buffer.
pub(crate) fn same_buffer(a: &Tensor, b: &Tensor) -> bool {
    a.buffer == b.buffer
}

/// Checks that each `(name, tensor, expected)` is f32 with `expected` elements;
/// errors name the tensor and `dims`, the shape that needs them.
pub(crate) fn expect_f32_sizes(
    op: &'static str,
    dims: &dyn std::fmt::Debug,
    tensors: &[(&'static str, &Tensor, usize)],
) -> Result<()> {
    for &(what, t, want) in tensors {
        t.expect_dtype(op, what, DType::F32)?;
        if t.numel() != want {
            return Err(Error::shape(
                op,
                format!(
                    "{what} has {} elements ({:?}); {dims:?} needs {want}",
                    t.numel(),
                    t.shape()
                ),
            ));
        }
    }
    Ok(())
}

/// Errors when one of `distinct` (outputs, or inputs a kernel needs apart) shares
/// a buffer with any other tensor given; `others` may share among themselves.
pub(crate) fn expect_separate(
    op: &'static str,
    distinct: &[(&str, &Tensor)],
    others: &[&Tensor],
) -> Result<()> {
    for (k, &(what, t)) in distinct.iter().enumerate() {
        let clash = others.iter().any(|o| same_buffer(t, o))
            || distinct[k + 1..].iter().any(|(_, o)| same_buffer(t, o));
        if clash {
            return Err(Error::invalid(format!(
                "{op}: {what} shares a buffer with another operand; it must be a separate tensor"
            )));
        }
    }
    Ok(())
}

/// Errors unless `a` and `b` have the same shape.
pub(crate) fn expect_same_shape(
    op: &'static str,
    what_a: &str,
    a: &Tensor,
    what_b: &str,
    b: &Tensor,
) -> Result<()> {
    if a.shape() != b.shape() {
        return Err(Error::shape(
            op,
            format!(
                "{what_a} has shape {:?} but {what_b} has shape {:?}; they must be equal",
                a.shape(),
                b.shape()
            ),
        ));
    }
    Ok(())
}

/// Converts an element count to the u32 the shaders index with.
pub(crate) fn count_u32(op: &'static str, what: &str, n: usize) -> Result<u32> {
    u32::try_from(n).map_err(|_| Error::TooLarge {
        what: format!("{op}: {what} ({n} elements)"),
        bytes: (n as u64).saturating_mul(4),
        limit: u32::MAX as u64 * 4,
    })
}

fn launch(
    ctx: &Context,
    kernel: Kernel,
    params: Params,
    buffers: &[(u32, &wgpu::Buffer)],
) -> Result<Dispatch> {
    ctx.dispatch(
        kernel,
        &[("WG", WG as f64)],
        &params,
        buffers,
        groups_for(ctx, params.n as usize, WG)?,
    )
}

/// `y[i] = value` for every element of `y`.
pub fn fill(ctx: &Context, y: &Tensor, value: f32) -> Result<Dispatch> {
    y.expect_dtype("fill", "y", DType::F32)?;
    let params = Params {
        n: count_u32("fill", "y", y.numel())?,
        alpha: value,
        ..Params::default()
    };
    launch(ctx, FILL, params, &[(1, &y.buffer)])
}

/// `y = act(x)` elementwise. `y` may be `x` itself.
pub fn activation_forward(ctx: &Context, act: Activation, x: &Tensor, y: &Tensor) -> Result<Dispatch> {
    const OP: &str = "activation_forward";
    x.expect_dtype(OP, "x", DType::F32)?;
    y.expect_dtype(OP, "y", DType::F32)?;
    expect_same_shape(OP, "x", x, "y", y)?;
    let params = Params {
        n: count_u32(OP, "x", x.numel())?,
        act: activation_code(act),
        ..Params::default()
    };
    if same_buffer(x, y) {
        launch(ctx, ACT_FWD_INPLACE, params, &[(1, &y.buffer)])
    } else {
        launch(ctx, ACT_FWD, params, &[(1, &y.buffer), (2, &x.buffer)])
    }
}

/// `dx = dy * act'(x)`, with the derivative written through the forward OUTPUT
/// `y = act(x)`: relu `y > 0`, sigmoid `y(1 - y)`, tanh `1 - y²`, identity 1.
/// `dx` may share its buffer with `dy` or with `y` (not both).
pub fn activation_backward(
    ctx: &Context,
    act: Activation,
    y: &Tensor,
    dy: &Tensor,
    dx: &Tensor,
) -> Result<Dispatch> {
    const OP: &str = "activation_backward";
    y.expect_dtype(OP, "y", DType::F32)?;
    dy.expect_dtype(OP, "dy", DType::F32)?;
    dx.expect_dtype(OP, "dx", DType::F32)?;
    expect_same_shape(OP, "y", y, "dy", dy)?;
    expect_same_shape(OP, "y", y, "dx", dx)?;
    let params = Params {
        n: count_u32(OP, "y", y.numel())?,
        act: activation_code(act),
        ..Params::default()
    };
    match (same_buffer(dx, y), same_buffer(dx, dy)) {
        (false, false) => launch(
            ctx,
            ACT_BWD,
            params,
            &[(1, &dx.buffer), (2, &y.buffer), (3, &dy.buffer)],
        ),
        (false, true) => launch(ctx, ACT_BWD_INPLACE, params, &[(1, &dx.buffer), (2, &y.buffer)]),
        (true, false) => launch(
            ctx,
            ACT_BWD_OVER_OUTPUT,
            params,
            &[(1, &dx.buffer), (3, &dy.buffer)],
        ),
        (true, true) => Err(Error::invalid(
            "activation_backward: y, dy and dx are all one buffer; dx may share a buffer \
             with y or with dy, not both",
        )),
    }
}

/// Which shader entry a commutative binary op uses for these buffers, and its bindings.
fn binary<'a>(
    op: &'static str,
    a: &'a Tensor,
    b: &'a Tensor,
    out: &'a Tensor,
) -> Result<(u32, BinaryForm<'a>)> {
    a.expect_dtype(op, "a", DType::F32)?;
    b.expect_dtype(op, "b", DType::F32)?;
    out.expect_dtype(op, "out", DType::F32)?;
    expect_same_shape(op, "a", a, "b", b)?;
    expect_same_shape(op, "a", a, "out", out)?;
    let n = count_u32(op, "a", a.numel())?;
    let form = match (same_buffer(out, a), same_buffer(out, b)) {
        (false, false) => BinaryForm::Fresh(&a.buffer, &b.buffer),
        (true, false) => BinaryForm::InPlace(&b.buffer),
        (false, true) => BinaryForm::InPlace(&a.buffer),
        (true, true) => BinaryForm::SelfOp,
    };
    Ok((n, form))
}

enum BinaryForm<'a> {
    /// `out` is a separate buffer: `(a, b)`.
    Fresh(&'a wgpu::Buffer, &'a wgpu::Buffer),
    /// `out` is one operand; the other is given.
    InPlace(&'a wgpu::Buffer),
    /// `out`, `a` and `b` are one buffer.
    SelfOp,
}

/// `out = a + b` elementwise (equal shapes). `out` may be `a` and/or `b`.
pub fn add(ctx: &Context, a: &Tensor, b: &Tensor, out: &Tensor) -> Result<Dispatch> {
    let (n, form) = binary("add", a, b, out)?;
    let params = Params {
        n,
        ..Params::default()
    };
    match form {
        BinaryForm::Fresh(a, b) => launch(ctx, ADD, params, &[(1, &out.buffer), (2, a), (3, b)]),
        BinaryForm::InPlace(other) => launch(ctx, ADD_INPLACE, params, &[(1, &out.buffer), (3, other)]),
        BinaryForm::SelfOp => launch(
            ctx,
            SCALE_INPLACE,
            Params { alpha: 2.0, ..params },
            &[(1, &out.buffer)],
        ),
    }
}

/// `out = a * b` elementwise (equal shapes). `out` may be `a` and/or `b`.
pub fn mul(ctx: &Context, a: &Tensor, b: &Tensor, out: &Tensor) -> Result<Dispatch> {
    let (n, form) = binary("mul", a, b, out)?;
    let params = Params {
        n,
        ..Params::default()
    };
    match form {
        BinaryForm::Fresh(a, b) => launch(ctx, MUL, params, &[(1, &out.buffer), (2, a), (3, b)]),
        BinaryForm::InPlace(other) => launch(ctx, MUL_INPLACE, params, &[(1, &out.buffer), (3, other)]),
        BinaryForm::SelfOp => launch(ctx, SQUARE_INPLACE, params, &[(1, &out.buffer)]),
    }
}

/// `y = exp(alpha · x)`; `y` and `x` are distinct buffers of one shape.
pub fn exp_scale(ctx: &Context, x: &Tensor, alpha: f32, y: &Tensor) -> Result<Dispatch> {
    const OP: &str = "exp_scale";
    distinct_unary(OP, x, y)?;
    let params = Params {
        n: count_u32(OP, "x", x.numel())?,
        alpha,
        ..Params::default()
    };
    launch(ctx, EXP_SCALE, params, &[(1, &y.buffer), (2, &x.buffer)])
}

/// `out = alpha · a · b` elementwise (equal shapes; `out` distinct from both): the
/// backward of [`exp_scale`] with `a` its output and `b` the output's gradient.
pub fn mul_scale(ctx: &Context, alpha: f32, a: &Tensor, b: &Tensor, out: &Tensor) -> Result<Dispatch> {
    const OP: &str = "mul_scale";
    let (n, form) = binary(OP, a, b, out)?;
    let BinaryForm::Fresh(a, b) = form else {
        return Err(Error::invalid("mul_scale: out must be distinct from a and b"));
    };
    let params = Params {
        n,
        alpha,
        ..Params::default()
    };
    launch(ctx, MUL_SCALE, params, &[(1, &out.buffer), (2, a), (3, b)])
}

/// `y = ln(x)`; `y` and `x` are distinct buffers of one shape (the caller keeps `x`
/// positive).
pub fn log(ctx: &Context, x: &Tensor, y: &Tensor) -> Result<Dispatch> {
    const OP: &str = "log";
    distinct_unary(OP, x, y)?;
    let params = Params {
        n: count_u32(OP, "x", x.numel())?,
        ..Params::default()
    };
    launch(ctx, LOG, params, &[(1, &y.buffer), (2, &x.buffer)])
}

/// An activation `x·g(x)` whose gate `g` is smooth, so its gradient needs the
/// input: GELU in PyTorch's two forms, and SiLU.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum GatedUnit {
    /// GELU, `x·Φ(x)`, Φ the standard normal CDF (PyTorch's
    /// `nn.GELU(approximate='none')`, Keras' `gelu`).
    #[default]
    Gelu,
    /// GELU's tanh approximation `x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))/2`
    /// (PyTorch's `approximate='tanh'`, Keras' `gelu(approximate=True)`,
    /// GPT-2's `gelu_new`); it differs from the exact form by up to about 5e-4.
    GeluTanh,
    /// SiLU (swish), `x·σ(x)` (PyTorch's `nn.SiLU`, Keras' `silu`, Hugging
    /// Face's `silu`: the gate of Llama's MLP).
    Silu,
}

impl GatedUnit {
    fn kernels(self) -> (Kernel, Kernel) {
        match self {
            GatedUnit::Gelu => (GELU_FWD, GELU_BWD),
            GatedUnit::GeluTanh => (GELU_TANH_FWD, GELU_TANH_BWD),
            GatedUnit::Silu => (SILU_FWD, SILU_BWD),
        }
    }
}

/// `y = x·g(x)`, the activation `form` (see [`GatedUnit`]); `y` and `x` are
/// distinct buffers of one shape.
pub fn gated_unit(ctx: &Context, x: &Tensor, y: &Tensor, form: GatedUnit) -> Result<Dispatch> {
    const OP: &str = "gated_unit";
    distinct_unary(OP, x, y)?;
    let params = Params {
        n: count_u32(OP, "x", x.numel())?,
        ..Params::default()
    };
    launch(ctx, form.kernels().0, params, &[(1, &y.buffer), (2, &x.buffer)])
}

/// `dx = dy·(x·g(x))'` (exact GELU: `Φ(x) + x·φ(x)`; SiLU: `σ(x)·(1 + x·(1 −
/// σ(x)))`): [`gated_unit()`]'s backward from its input `x` (neither activation
/// is monotonic, so its output cannot stand in). Equal shapes; `dx` distinct
/// from both.
pub fn gated_unit_backward(
    ctx: &Context,
    dy: &Tensor,
    x: &Tensor,
    dx: &Tensor,
    form: GatedUnit,
) -> Result<Dispatch> {
    const OP: &str = "gated_unit_backward";
    let (n, form_of_inputs) = binary(OP, dy, x, dx)?;
    let BinaryForm::Fresh(dy, x) = form_of_inputs else {
        return Err(Error::invalid(
            "gated_unit_backward: dx must be distinct from dy and x",
        ));
    };
    launch(
        ctx,
        form.kernels().1,
        Params {
            n,
            ..Params::default()
        },
        &[(1, &dx.buffer), (2, dy), (3, x)],
    )
}

/// `out = a / b` elementwise (equal shapes; `out` distinct from both): the backward
/// of [`log()`] with `a` the output's gradient and `b` the input.
pub fn div(ctx: &Context, a: &Tensor, b: &Tensor, out: &Tensor) -> Result<Dispatch> {
    const OP: &str = "div";
    let (n, form) = binary(OP, a, b, out)?;
    let BinaryForm::Fresh(a, b) = form else {
        return Err(Error::invalid("div: out must be distinct from a and b"));
    };
    launch(
        ctx,
        DIV,
        Params {
            n,
            ..Params::default()
        },
        &[(1, &out.buffer), (2, a), (3, b)],
    )
}

/// Checks [`repeat_blocks`]' shapes (`few` the blocks once, `many` repeated)
/// and returns its uniform, `n` elements written.
fn blocks_params(
    op: &'static str,
    few: &Tensor,
    many: &Tensor,
    block: usize,
    times: usize,
    n: usize,
) -> Result<Params> {
    few.expect_dtype(op, "the blocks", DType::F32)?;
    many.expect_dtype(op, "the repeated blocks", DType::F32)?;
    if block == 0 || times == 0 || !few.numel().is_multiple_of(block) || few.numel() * times != many.numel() {
        return Err(Error::shape(
            op,
            format!(
                "{} values in blocks of {block}, each repeated {times} times, are not {}",
                few.numel(),
                many.numel()
            ),
        ));
    }
    if same_buffer(few, many) {
        return Err(Error::invalid(format!(
            "{op}: input and output must be distinct buffers"
        )));
    }
    Ok(Params {
        n: count_u32(op, "output", n)?,
        c: count_u32(op, "block", block)?,
        s: count_u32(op, "times", times)?,
        ..Params::default()
    })
}

/// `y` = each block of `block` consecutive values of `x` repeated `times` times
/// in a row (`y[i] = x[(i / (block·times))·block + i % block]`): grouped-query
/// attention's key and value heads, each shared by `times` query heads. `y`
/// has `times` times `x`'s values, in a distinct buffer.
pub fn repeat_blocks(ctx: &Context, x: &Tensor, block: usize, times: usize, y: &Tensor) -> Result<Dispatch> {
    let params = blocks_params("repeat_blocks", x, y, block, times, y.numel())?;
    launch(ctx, REPEAT_BLOCKS, params, &[(1, &y.buffer), (2, &x.buffer)])
}

/// The backward of [`repeat_blocks`]: `dx` = the sum of each block's `times`
/// copies in `dy`, in order (deterministic).
pub fn sum_blocks(ctx: &Context, dy: &Tensor, block: usize, times: usize, dx: &Tensor) -> Result<Dispatch> {
    let params = blocks_params("sum_blocks", dx, dy, block, times, dx.numel())?;
    launch(ctx, SUM_BLOCKS, params, &[(1, &dx.buffer), (2, &dy.buffer)])
}

/// `y[i] = alpha · x[i / times]`: each value of `x` repeated `times` times (`y` has
/// `x.numel() · times` elements, in a distinct buffer); the backward of a sum over
/// groups of `times` values.
pub fn repeat_scale(ctx: &Context, x: &Tensor, times: usize, alpha: f32, y: &Tensor) -> Result<Dispatch> {
    const OP: &str = "repeat_scale";
    x.expect_dtype(OP, "x", DType::F32)?;
    y.expect_dtype(OP, "y", DType::F32)?;
    if times == 0 || x.numel().checked_mul(times) != Some(y.numel()) {
        return Err(Error::shape(
            OP,
            format!(
                "y has {} elements, not {} × {times} (x's, each repeated {times} times)",
                y.numel(),
                x.numel()
            ),
        ));
    }
    if same_buffer(x, y) {
        return Err(Error::invalid("repeat_scale: x and y must be distinct buffers"));
    }
    let params = Params {
        n: count_u32(OP, "y", y.numel())?,
        alpha,
        s: count_u32(OP, "times", times)?,
        ..Params::default()
    };
    launch(ctx, REPEAT_SCALE, params, &[(1, &y.buffer), (2, &x.buffer)])
}

/// Errors unless `x` and `y` are f32 of one shape in distinct buffers.
fn distinct_unary(op: &'static str, x: &Tensor, y: &Tensor) -> Result<()> {
    x.expect_dtype(op, "x", DType::F32)?;
    y.expect_dtype(op, "y", DType::F32)?;
    expect_same_shape(op, "x", x, "y", y)?;
    if same_buffer(x, y) {
        return Err(Error::invalid(format!("{op}: x and y must be distinct buffers")));
    }
    Ok(())
}

/// `y = alpha * x`. `y` may be `x`.
pub fn scale(ctx: &Context, x: &Tensor, alpha: f32, y: &Tensor) -> Result<Dispatch> {
    const OP: &str = "scale";
    x.expect_dtype(OP, "x", DType::F32)?;
    y.expect_dtype(OP, "y", DType::F32)?;
    expect_same_shape(OP, "x", x, "y", y)?;
    let params = Params {
        n: count_u32(OP, "x", x.numel())?,
        alpha,
        ..Params::default()
    };
    if same_buffer(x, y) {
        launch(ctx, SCALE_INPLACE, params, &[(1, &y.buffer)])
    } else {
        launch(ctx, SCALE, params, &[(1, &y.buffer), (2, &x.buffer)])
    }
}

/// `y += alpha * x`. When `x` is `y` this is `y *= 1 + alpha`.
pub fn axpy(ctx: &Context, alpha: f32, x: &Tensor, y: &Tensor) -> Result<Dispatch> {
    const OP: &str = "axpy";
    x.expect_dtype(OP, "x", DType::F32)?;
    y.expect_dtype(OP, "y", DType::F32)?;
    expect_same_shape(OP, "x", x, "y", y)?;
    let n = count_u32(OP, "x", x.numel())?;
    if same_buffer(x, y) {
        let params = Params {
            n,
            alpha: 1.0 + alpha,
            ..Params::default()
        };
        launch(ctx, SCALE_INPLACE, params, &[(1, &y.buffer)])
    } else {
        let params = Params {
            n,
            alpha,
            ..Params::default()
        };
        launch(ctx, AXPY, params, &[(1, &y.buffer), (2, &x.buffer)])
    }
}

/// Shared body of the two bias launchers: `y[i] = act(x[i] + bias[(i / s) % c])`.
fn bias_act(
    ctx: &Context,
    op: &'static str,
    x: &Tensor,
    bias: &Tensor,
    act: Activation,
    y: &Tensor,
    (c, s): (usize, usize),
) -> Result<Dispatch> {
    if same_buffer(bias, y) {
        return Err(Error::invalid(format!(
            "{op}: the output y shares a buffer with the bias"
        )));
    }
    let params = Params {
        n: count_u32(op, "x", x.numel())?,
        act: activation_code(act),
        c: count_u32(op, "bias", c)?.max(1),
        s: count_u32(op, "x", s)?.max(1),
        ..Params::default()
    };
    if same_buffer(x, y) {
        launch(
            ctx,
            BIAS_ACT_INPLACE,
            params,
            &[(1, &y.buffer), (3, &bias.buffer)],
        )
    } else {
        launch(
            ctx,
            BIAS_ACT,
            params,
            &[(1, &y.buffer), (2, &x.buffer), (3, &bias.buffer)],
        )
    }
}

fn bias_common(op: &'static str, x: &Tensor, bias: &Tensor, y: &Tensor) -> Result<()> {
    x.expect_dtype(op, "x", DType::F32)?;
    bias.expect_dtype(op, "bias", DType::F32)?;
    y.expect_dtype(op, "y", DType::F32)?;
    expect_same_shape(op, "x", x, "y", y)?;
    if bias.shape().len() != 1 {
        return Err(Error::shape(
            op,
            format!("bias must be 1-D [C], got shape {:?}", bias.shape()),
        ));
    }
    Ok(())
}

/// `y[r, c] = act(x[r, c] + bias[c])` for `x` of shape `[..., C]` (every leading
/// dimension is a row) and `bias` of shape `[C]`. `y` may be `x` itself.
pub fn bias_add_rows(
    ctx: &Context,
    x: &Tensor,
    bias: &Tensor,
    act: Activation,
    y: &Tensor,
) -> Result<Dispatch> {
    const OP: &str = "bias_add_rows";
    bias_common(OP, x, bias, y)?;
    let c = bias.numel();
    if x.shape().last() != Some(&c) {
        return Err(Error::shape(
            OP,
            format!(
                "x has shape {:?} but bias has shape {:?}; x's last dimension must equal the bias length",
                x.shape(),
                bias.shape()
            ),
        ));
    }
    bias_act(ctx, OP, x, bias, act, y, (c, 1))
}

/// `y[n, c, s] = act(x[n, c, s] + bias[c])` for `x` of shape `[N, C, S...]` (e.g.
/// NCHW; the trailing dimensions are flattened to S, and may be absent) and `bias` of
/// shape `[C]`. `y` may be `x` itself.
pub fn bias_add_channels(
    ctx: &Context,
    x: &Tensor,
    bias: &Tensor,
    act: Activation,
    y: &Tensor,
) -> Result<Dispatch> {
    const OP: &str = "bias_add_channels";
    bias_common(OP, x, bias, y)?;
    let c = bias.numel();
    if x.shape().len() < 2 || x.shape()[1] != c {
        return Err(Error::shape(
            OP,
            format!(
                "x has shape {:?} but bias has shape {:?}; x must be [N, C, ...] with C equal to the bias length",
                x.shape(),
                bias.shape()
            ),
        ));
    }
    let s: usize = x.shape()[2..].iter().product();
    bias_act(ctx, OP, x, bias, act, y, (c, s))
}
