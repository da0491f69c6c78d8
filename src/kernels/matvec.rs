//! Matrix-vector launchers (`shaders/matvec.wgsl`): a few rows times a Dense
//! weight, `y = act(x·wᵀ + bias)`, for the one-position steps of key/value-cached
//! decoding, where a general matmul's tiles are mostly padding. CPU twin:
//! [`crate::reference::matvec`].

use crate::error::{Error, Result};
use crate::gpu::{Context, DType, Dispatch, Tensor};
use crate::kernels::elementwise::{count_u32, expect_separate};
use crate::kernels::matmul::Activation;
use crate::kernels::{Kernel, Shader, groups_for};

/// Mirrors `Params` in `shaders/matvec.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    m: u32,
    n: u32,
    k: u32,
    has_bias: u32,
    act: u32,
    _pad: [u32; 3],
}

const ROWS: Kernel = Shader::Matvec.kernel("matvec_rows");
const LANES: Kernel = Shader::Matvec.kernel("matvec_lanes");
/// Invocations per workgroup of `matvec_rows` (its `WG`).
const ROWS_WG: u32 = 64;
/// Columns per workgroup of `matvec_lanes` (256 invocations, 32 per column).
const LANES_COLUMNS: u32 = 8;

/// How a product is spread over invocations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatvecVariant {
    /// One invocation per output column, walking its row of `w` alone: CPU
    /// adapters, whose workgroups run as SIMD lanes.
    Rows,
    /// 32 invocations per column, reading `w` coalesced, summed in workgroup
    /// memory: GPUs.
    Lanes,
}

impl MatvecVariant {
    /// Both: the tuner's candidates.
    pub const ALL: [MatvecVariant; 2] = [MatvecVariant::Rows, MatvecVariant::Lanes];

    /// Its name in the tuning cache and in messages: `rows` or `lanes`.
    pub fn name(self) -> &'static str {
        match self {
            MatvecVariant::Rows => "rows",
            MatvecVariant::Lanes => "lanes",
        }
    }

    /// The variant [`MatvecVariant::name`] names.
    pub fn from_name(name: &str) -> Option<MatvecVariant> {
        MatvecVariant::ALL.into_iter().find(|v| v.name() == name)
    }

    /// The built-in rule for `ctx`'s adapter, where the tuner does not measure
    /// (`kernels::tune::matvec_variant`): `Rows` on CPU adapters, `Lanes` on GPUs.
    /// On lavapipe (2-core Xeon) a 1×3072×768 product takes 4.4 ms with `Rows`
    /// (the register matmul's time: both read `w` at about 2 GB/s) and 14.7 ms
    /// with `Lanes` (its barriers); on GPUs `Lanes` gives N/8 workgroups reading
    /// `w` coalesced against the tiled matmul's N/64, not yet measured.
    pub fn auto(ctx: &Context) -> MatvecVariant {
        if ctx.is_cpu() {
            MatvecVariant::Rows
        } else {
            MatvecVariant::Lanes
        }
    }
}

/// `y[m, j] = act(Σ_k x[m, k]·w[j, k] + bias[j])`: `x` `[M, K]` (any shape whose
/// last axis is K), `w` `[N, K]` (a Dense weight, PyTorch Linear's `[out, in]`),
/// `bias` `[N]` if given, `y` M·N values separate from the inputs. Meant for small
/// M (each invocation walks every row).
pub fn matvec(
    ctx: &Context,
    variant: MatvecVariant,
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    act: Activation,
    y: &Tensor,
) -> Result<Dispatch> {
    const OP: &str = "matvec";
    for (what, t) in [("x", x), ("w", w), ("y", y)] {
        t.expect_dtype(OP, what, DType::F32)?;
    }
    let &[n, k] = w.shape() else {
        return Err(Error::shape(OP, format!("w must be [N, K], got {:?}", w.shape())));
    };
    if k == 0 || n == 0 || !x.numel().is_multiple_of(k) || x.numel() == 0 {
        return Err(Error::shape(
            OP,
            format!("x has {} values, not rows of w's K = {k}", x.numel()),
        ));
    }
    let m = x.numel() / k;
    if y.numel() != m * n {
        return Err(Error::shape(
            OP,
            format!("y has {} values; {m} rows of {n} need {}", y.numel(), m * n),
        ));
    }
    if let Some(b) = bias {
        b.expect_dtype(OP, "bias", DType::F32)?;
        if b.numel() != n {
            return Err(Error::shape(
                OP,
                format!("bias has {} values, w has {n} rows", b.numel()),
            ));
        }
    }
    expect_separate(
        OP,
        &[("y", y)],
        &[x, w].into_iter().chain(bias).collect::<Vec<_>>(),
    )?;
    let params = Params {
        m: count_u32(OP, "rows", m)?,
        n: count_u32(OP, "w", n)?,
        k: count_u32(OP, "w's rows", k)?,
        has_bias: bias.is_some() as u32,
        act: act.code(),
        _pad: [0; 3],
    };
    // Without a bias the binding still needs a buffer; the kernel does not read it.
    let b = bias.unwrap_or(w);
    let buffers = [(1, &x.buffer), (2, &w.buffer), (3, &b.buffer), (4, &y.buffer)];
    match variant {
        MatvecVariant::Rows => ctx.dispatch(
            ROWS,
            &[("WG", ROWS_WG as f64)],
            &params,
            &buffers,
            groups_for(ctx, n, ROWS_WG)?,
        ),
        MatvecVariant::Lanes => {
            ctx.dispatch(LANES, &[], &params, &buffers, groups_for(ctx, n, LANES_COLUMNS)?)
        }
    }
}
