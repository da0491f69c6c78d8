//! 2-D convolution launchers: im2col + the tiled matmul, forward and backward,
//! over NCHW images with OIHW weights (PyTorch's layouts). Helper kernels in
//! `shaders/conv.wgsl` (its header documents the im2col layout and the matmul
//! each pass uses), CPU twins in [`crate::reference::conv`].
//!
//! - The bias rides along as an extra row of ones in the im2col matrix (and an
//!   extra weight column), and the activation runs in the matmul epilogue, so the
//!   forward pass is `pack_weights`, then per chunk `im2col` + one batched matmul.
//! - The weight gradient is one batched matmul per chunk (a `[CKK(+1), c_out]`
//!   product per image) and a small reduction over the chunk's images, which also
//!   yields the bias gradient from the ones row. The first chunk overwrites `dw`
//!   and `db`, later chunks add.
//! - The input gradient is a batched matmul `W^T · dy_img` and a gather `col2im`.
//!
//! The im2col scratch of a whole batch can exceed what one storage binding may
//! hold, so the launchers process the batch in chunks of images sized from
//! `ctx.max_binding_bytes()` and [`DEFAULT_MAX_CHUNK_BYTES`]; every chunk is a
//! few dispatches addressing its images through matmul offsets. A single image
//! whose im2col matrix exceeds the binding limit is rejected with
//! [`Error::TooLarge`] (images are not split). Each launcher allocates its own
//! scratch once and returns the dispatch list that uses it, so the list can be
//! recorded and replayed any number of times.

use crate::error::{Error, Result};
use crate::gpu::{Context, DType, Dispatch, Tensor};
use crate::kernels::matmul::{MatmulDesc, matmul};
use crate::kernels::{Kernel, Shader, groups_for};

pub use crate::kernels::matmul::Activation;

/// Invocations per workgroup of the elementwise conv helpers, and the most per
/// workgroup of `im2col`/`col2im` (one workgroup per row; shorter rows get a
/// smaller power of two, at least 8).
pub const WG: u32 = 64;

/// Padded image sides must stay below this: the kernels divide coordinates
/// through f32, exact below 2^20.
const MAX_SIDE: usize = 1 << 20;

/// Scratch size (bytes) up to which [`conv2d_forward`] and [`conv2d_backward`]
/// batch images into one chunk: bounds the memory a conv layer holds for its
/// im2col matrix whatever the batch size. A soft cap: a chunk always holds at
/// least one image, limited only by the device's binding size.
pub const DEFAULT_MAX_CHUNK_BYTES: u64 = 128 << 20;

/// Sentinel for "the soft default cap" in the chunked launchers' internals.
const SOFT_DEFAULT: u64 = 0;

const IM2COL: Kernel = Shader::Conv.kernel("im2col");
const IM2COL_SCATTER: Kernel = Shader::Conv.kernel("im2col_scatter");
const COL2IM: Kernel = Shader::Conv.kernel("col2im");
const PACK_WEIGHTS: Kernel = Shader::Conv.kernel("pack_weights");
const REDUCE_DW: Kernel = Shader::Conv.kernel("reduce_dw");
const REDUCE_DW_DB: Kernel = Shader::Conv.kernel("reduce_dw_db");

/// How a convolution pads its input.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Padding {
    /// No padding.
    #[default]
    Valid,
    /// Keras/TensorFlow "same": output `ceil(h / s)`; total padding
    /// `max((ceil(h/s) - 1)·s + k - h, 0)`, the odd pixel on the bottom/right.
    Same,
    /// PyTorch's symmetric padding: `(ph, pw)` zeros on each side.
    Explicit(usize, usize),
}

/// Shape of a 2-D convolution: input `x[n, c_in, h, w]`, weights
/// `w[c_out, c_in, kh, kw]`, output `y[n, c_out, oh, ow]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conv2dDesc {
    /// Batch size (images).
    pub n: usize,
    /// Input channels.
    pub c_in: usize,
    /// Input height in pixels.
    pub h: usize,
    /// Input width in pixels.
    pub w: usize,
    /// Output channels (filters).
    pub c_out: usize,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// Stride as (vertical, horizontal).
    pub stride: (usize, usize),
    /// How the input is padded.
    pub padding: Padding,
}

/// Padding on each side, as resolved from [`Padding`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pads {
    /// Zero rows above the image.
    pub top: usize,
    /// Zero rows below the image.
    pub bottom: usize,
    /// Zero columns left of the image.
    pub left: usize,
    /// Zero columns right of the image.
    pub right: usize,
}

fn same_pad(size: usize, k: usize, s: usize) -> (usize, usize) {
    let out = size.div_ceil(s);
    let total = ((out - 1) * s + k).saturating_sub(size);
    (total / 2, total - total / 2)
}

impl Conv2dDesc {
    /// Checks every size and the stride, resolves the padding and returns it.
    pub fn pads(&self) -> Result<Pads> {
        let dims = [
            ("n", self.n),
            ("c_in", self.c_in),
            ("h", self.h),
            ("w", self.w),
            ("c_out", self.c_out),
            ("kh", self.kh),
            ("kw", self.kw),
        ];
        for (name, v) in dims {
            if v == 0 {
                return Err(Error::invalid(format!("conv2d: {name} is 0 in {self:?}")));
            }
        }
        let (sh, sw) = self.stride;
        if sh == 0 || sw == 0 {
            return Err(Error::invalid(format!(
                "conv2d: stride {:?} has a zero component",
                self.stride
            )));
        }
        let pads = match self.padding {
            Padding::Valid => Pads {
                top: 0,
                bottom: 0,
                left: 0,
                right: 0,
            },
            Padding::Same => {
                let (top, bottom) = same_pad(self.h, self.kh, sh);
                let (left, right) = same_pad(self.w, self.kw, sw);
                Pads {
                    top,
                    bottom,
                    left,
                    right,
                }
            }
            Padding::Explicit(ph, pw) => Pads {
                top: ph,
                bottom: ph,
                left: pw,
                right: pw,
            },
        };
        let hp = self.h + pads.top + pads.bottom;
        let wp = self.w + pads.left + pads.right;
        if hp >= MAX_SIDE || wp >= MAX_SIDE {
            return Err(Error::invalid(format!(
                "conv2d: the padded {hp}x{wp} input exceeds the largest supported side ({MAX_SIDE})"
            )));
        }
        if self.kh > hp || self.kw > wp {
            return Err(Error::shape(
                "conv2d",
                format!(
                    "the {}x{} kernel is larger than the padded {hp}x{wp} input ({}x{} with padding {:?})",
                    self.kh, self.kw, self.h, self.w, self.padding
                ),
            ));
        }
        Ok(pads)
    }

    /// Output height and width: `(h + pad_top + pad_bottom - kh) / sh + 1`.
    pub fn out_hw(&self) -> Result<(usize, usize)> {
        let p = self.pads()?;
        Ok((
            (self.h + p.top + p.bottom - self.kh) / self.stride.0 + 1,
            (self.w + p.left + p.right - self.kw) / self.stride.1 + 1,
        ))
    }

    /// Checks the description (sizes, stride, kernel against the padded input).
    pub fn validate(&self) -> Result<()> {
        self.pads().map(|_| ())
    }

    /// `[n, c_in, h, w]`.
    pub fn input_shape(&self) -> [usize; 4] {
        [self.n, self.c_in, self.h, self.w]
    }

    /// `[c_out, c_in, kh, kw]`.
    pub fn weight_shape(&self) -> [usize; 4] {
        [self.c_out, self.c_in, self.kh, self.kw]
    }

    /// `[n, c_out, oh, ow]`.
    pub fn output_shape(&self) -> Result<[usize; 4]> {
        let (oh, ow) = self.out_hw()?;
        Ok([self.n, self.c_out, oh, ow])
    }

    /// Rows of one image's im2col matrix, `c_in·kh·kw`.
    pub fn ckk(&self) -> usize {
        self.c_in * self.kh * self.kw
    }
}

/// Mirrors `Params` in `shaders/conv.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    c: u32,
    h: u32,
    w: u32,
    oh: u32,
    ow: u32,
    kh: u32,
    kw: u32,
    sh: u32,
    sw: u32,
    pt: u32,
    pl: u32,
    c_out: u32,
    images: u32,
    x_offset: u32,
    ld: u32,
    accumulate: u32,
}

pub(crate) fn u32_of(what: &str, v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::TooLarge {
        what: format!("conv2d: {what} ({v}, indexed with 32 bits)"),
        bytes: (v as u64).saturating_mul(4),
        limit: u32::MAX as u64,
    })
}

/// Params for a chunk of `images` images whose first element in the indexed
/// tensor is `x_offset`, with `ld` im2col rows per image.
fn params(desc: &Conv2dDesc, images: usize, x_offset: usize, ld: usize, accumulate: bool) -> Result<Params> {
    let pads = desc.pads()?;
    let (oh, ow) = desc.out_hw()?;
    Ok(Params {
        c: u32_of("c_in", desc.c_in)?,
        h: u32_of("h", desc.h)?,
        w: u32_of("w", desc.w)?,
        oh: u32_of("oh", oh)?,
        ow: u32_of("ow", ow)?,
        kh: u32_of("kh", desc.kh)?,
        kw: u32_of("kw", desc.kw)?,
        sh: u32_of("stride", desc.stride.0)?,
        sw: u32_of("stride", desc.stride.1)?,
        pt: u32_of("padding", pads.top)?,
        pl: u32_of("padding", pads.left)?,
        c_out: u32_of("c_out", desc.c_out)?,
        images: u32_of("images", images)?,
        x_offset: u32_of("element offset", x_offset)?,
        ld: u32_of("im2col rows", ld)?,
        accumulate: accumulate as u32,
    })
}

/// `dw[o, r] = Σ_c parts[c, r, o]` for `r < CKK` and `db[o] = Σ_c parts[c, CKK, o]`
/// over the `count` partial products in `parts` (`[count, CKK + 1, c_out]`),
/// overwriting `dw` and `db`, or adding to them when `accumulate`.
pub(crate) fn reduce_weight_parts(
    ctx: &Context,
    desc: &Conv2dDesc,
    parts: &Tensor,
    count: usize,
    dw: &Tensor,
    db: &Tensor,
    accumulate: bool,
) -> Result<Dispatch> {
    let ld = desc.ckk() + 1;
    let reduce = params(desc, count, 0, ld, accumulate)?;
    ctx.dispatch(
        REDUCE_DW_DB,
        &[("WG", WG as f64)],
        &reduce,
        &[(8, &parts.buffer), (9, &dw.buffer), (10, &db.buffer)],
        groups_for(ctx, desc.c_out * ld, WG)?,
    )
}

/// Workgroups for one workgroup per row (`rows` of them), folded.
fn row_groups(ctx: &Context, rows: usize) -> Result<[u32; 3]> {
    groups_for(ctx, rows, 1)
}

/// Workgroup size for a row of `len` elements.
fn row_wg(len: usize) -> f64 {
    len.next_power_of_two().clamp(8, WG as usize) as f64
}

/// Checks `t` is f32 with `shape`'s element count; when `t` is 4-D, every
/// dimension must match and a mismatch is named (`dim_names`).
pub(crate) fn check_tensor(
    op: &'static str,
    what: &'static str,
    t: &Tensor,
    shape: &[usize],
    dim_names: &[&str],
) -> Result<()> {
    t.expect_dtype(op, what, DType::F32)?;
    let n: usize = shape.iter().product();
    if t.shape().len() == shape.len() {
        for (d, (&got, &want)) in t.shape().iter().zip(shape).enumerate() {
            if got != want {
                return Err(Error::shape(
                    op,
                    format!(
                        "{what} has shape {:?} but the convolution expects {shape:?}: {} is {got}, expected {want}",
                        t.shape(),
                        dim_names.get(d).copied().unwrap_or("a dimension")
                    ),
                ));
            }
        }
    } else if t.numel() != n {
        return Err(Error::shape(
            op,
            format!(
                "{what} has shape {:?} ({} elements), expected {shape:?} ({n} elements)",
                t.shape(),
                t.numel()
            ),
        ));
    }
    Ok(())
}

pub(crate) const X_DIMS: [&str; 4] = [
    "the batch size",
    "the channel count (c_in)",
    "the height",
    "the width",
];
pub(crate) const W_DIMS: [&str; 4] = [
    "the output channel count (c_out)",
    "the input channel count (c_in, which must equal the input's channels)",
    "the kernel height",
    "the kernel width",
];
pub(crate) const Y_DIMS: [&str; 4] = [
    "the batch size",
    "the channel count (c_out)",
    "the output height",
    "the output width",
];

pub(crate) fn check_common(op: &'static str, desc: &Conv2dDesc, x: &Tensor, w: &Tensor) -> Result<()> {
    desc.validate()?;
    // Name the classic mistake first: weights made for another channel count.
    if w.shape().len() == 4 && w.shape()[1] != desc.c_in {
        return Err(Error::shape(
            op,
            format!(
                "the weights {:?} take {} input channels but the input has c_in = {} channels ({:?})",
                w.shape(),
                w.shape()[1],
                desc.c_in,
                x.shape()
            ),
        ));
    }
    check_tensor(op, "x", x, &desc.input_shape(), &X_DIMS)?;
    check_tensor(op, "w", w, &desc.weight_shape(), &W_DIMS)?;
    Ok(())
}

pub(crate) fn check_bias(op: &'static str, what: &'static str, desc: &Conv2dDesc, b: &Tensor) -> Result<()> {
    b.expect_dtype(op, what, DType::F32)?;
    if b.numel() != desc.c_out {
        return Err(Error::shape(
            op,
            format!(
                "{what} has shape {:?} ({} elements), expected [{}] (one per output channel)",
                b.shape(),
                b.numel(),
                desc.c_out
            ),
        ));
    }
    Ok(())
}

/// How many images one chunk holds so that each of its scratch buffers (whose
/// size per image in elements is `per_image`) fits `max_chunk_bytes` and the
/// device's binding limit.
fn chunk_images(
    ctx: &Context,
    desc: &Conv2dDesc,
    per_image: &[usize],
    max_chunk_bytes: u64,
) -> Result<usize> {
    let worst = per_image.iter().copied().max().unwrap_or(1) as u64 * 4;
    let cap = if max_chunk_bytes == SOFT_DEFAULT {
        DEFAULT_MAX_CHUNK_BYTES.max(worst)
    } else {
        max_chunk_bytes
    };
    let limit = ctx.max_binding_bytes().min(cap);
    let images = (limit / worst).min(desc.n as u64) as usize;
    if images == 0 {
        let (oh, ow) = desc.out_hw()?;
        return Err(Error::TooLarge {
            what: format!(
                "conv2d: the im2col scratch of one image ({} rows x {} output pixels, {desc:?})",
                desc.ckk(),
                oh * ow,
            ),
            bytes: worst,
            limit,
        });
    }
    Ok(images)
}

/// Chunks `(first image, images)` covering the batch.
fn chunks(n: usize, per_chunk: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..n)
        .step_by(per_chunk)
        .map(move |n0| (n0, per_chunk.min(n - n0)))
}

fn check_range(
    op: &'static str,
    desc: &Conv2dDesc,
    first: usize,
    images: usize,
    col: &Tensor,
    need: usize,
) -> Result<()> {
    if images == 0 || first + images > desc.n {
        return Err(Error::shape(
            op,
            format!(
                "images {first}..{} is not a non-empty range of the batch of {}",
                first + images,
                desc.n
            ),
        ));
    }
    if col.numel() < need {
        return Err(Error::shape(
            op,
            format!("col has {} elements, {images} image(s) need {need}", col.numel()),
        ));
    }
    Ok(())
}

/// Writes `col[img][r][p]` (layout in `shaders/conv.wgsl`) for images
/// `first .. first + images` of `x`, with `CKK` rows per image, plus a row of
/// ones when `ones_row` (`CKK + 1` rows). `col` needs at least
/// `images·rows·P` elements; it is overwritten.
pub fn im2col(
    ctx: &Context,
    desc: &Conv2dDesc,
    x: &Tensor,
    col: &Tensor,
    first: usize,
    images: usize,
    ones_row: bool,
) -> Result<Dispatch> {
    im2col_with(ctx, desc, x, col, first, images, ones_row, Im2colForm::Auto)
}

/// How [`im2col_with`] fills `col` (the same result either way).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Im2colForm {
    /// Whichever loads fewer elements of `x` ([`Im2colForm::scatter_loads_less`]).
    Auto,
    /// One workgroup per col row, one load of `x` per col entry.
    Gather,
    /// One workgroup per input plane: each pixel of the padded window domain loaded
    /// once and stored to every col entry that reads it.
    Scatter,
}

impl Im2colForm {
    /// Whether the scatter form loads fewer pixels than the gather form for
    /// `desc`: `Hd·Wd` (the padded rows and columns some window reaches) against
    /// `KH·KW·OH·OW` per plane. True for overlapping windows (a 3x3 stride-1
    /// kernel: 7.8x fewer on 28x28), false for a 1x1 kernel with stride 2.
    pub fn scatter_loads_less(desc: &Conv2dDesc) -> Result<bool> {
        let (oh, ow) = desc.out_hw()?;
        let hd = (oh - 1) * desc.stride.0 + desc.kh;
        let wd = (ow - 1) * desc.stride.1 + desc.kw;
        Ok(hd * wd < desc.kh * desc.kw * oh * ow)
    }
}

/// [`im2col`] with the form chosen by the caller (tests and benchmarks compare
/// them).
#[allow(clippy::too_many_arguments)]
pub fn im2col_with(
    ctx: &Context,
    desc: &Conv2dDesc,
    x: &Tensor,
    col: &Tensor,
    first: usize,
    images: usize,
    ones_row: bool,
    form: Im2colForm,
) -> Result<Dispatch> {
    const OP: &str = "conv2d im2col";
    desc.validate()?;
    check_tensor(OP, "x", x, &desc.input_shape(), &X_DIMS)?;
    col.expect_dtype(OP, "col", DType::F32)?;
    let (oh, ow) = desc.out_hw()?;
    let ld = desc.ckk() + ones_row as usize;
    check_range(OP, desc, first, images, col, images * ld * oh * ow)?;
    let x_offset = first * desc.c_in * desc.h * desc.w;
    let params = params(desc, images, x_offset, ld, false)?;
    let scatter = match form {
        Im2colForm::Auto => Im2colForm::scatter_loads_less(desc)?,
        Im2colForm::Gather => false,
        Im2colForm::Scatter => true,
    };
    if scatter {
        let hd = (oh - 1) * desc.stride.0 + desc.kh;
        let wd = (ow - 1) * desc.stride.1 + desc.kw;
        // One workgroup per input plane, then one per ones row.
        let groups = images * desc.c_in + if ones_row { images } else { 0 };
        return ctx.dispatch(
            IM2COL_SCATTER,
            &[("WG", row_wg(hd * wd))],
            &params,
            &[(1, &x.buffer), (2, &col.buffer)],
            row_groups(ctx, groups)?,
        );
    }
    ctx.dispatch(
        IM2COL,
        &[("WG", row_wg(oh * ow))],
        &params,
        &[(1, &x.buffer), (2, &col.buffer)],
        row_groups(ctx, images * ld)?,
    )
}

/// Gathers `col` (layout of [`im2col`] with `CKK` rows per image) back into
/// images `first .. first + images` of `dx`, overwriting them: each pixel gets
/// the sum of the col entries that read it.
pub fn col2im(
    ctx: &Context,
    desc: &Conv2dDesc,
    col: &Tensor,
    dx: &Tensor,
    first: usize,
    images: usize,
) -> Result<Dispatch> {
    const OP: &str = "conv2d col2im";
    desc.validate()?;
    check_tensor(OP, "dx", dx, &desc.input_shape(), &X_DIMS)?;
    col.expect_dtype(OP, "col", DType::F32)?;
    let (oh, ow) = desc.out_hw()?;
    check_range(OP, desc, first, images, col, images * oh * ow * desc.ckk())?;
    let image = desc.c_in * desc.h * desc.w;
    ctx.dispatch(
        COL2IM,
        &[("WG", row_wg(desc.h * desc.w))],
        &params(desc, images, first * image, desc.ckk(), false)?,
        &[(3, &col.buffer), (4, &dx.buffer)],
        row_groups(ctx, images * desc.c_in)?,
    )
}

/// Forward convolution: `y[n, c_out, oh, ow] = act(conv(x, w) + bias[c_out])`,
/// `y` overwritten. `x` is `[n, c_in, h, w]`, `w` is `[c_out, c_in, kh, kw]`,
/// `bias` (optional) is `[c_out]`. Chunked as described in the module docs.
///
/// Dispatches: with a bias, one `pack_weights` (`[w | bias]` as `[c_out, CKK + 1]`)
/// first; then per chunk `im2col` (with a row of ones when there is a bias) and
/// one batched matmul `y_img = W' · col_img` with the activation in its epilogue.
pub fn conv2d_forward(
    ctx: &Context,
    desc: &Conv2dDesc,
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    act: Activation,
    y: &Tensor,
) -> Result<Vec<Dispatch>> {
    conv2d_forward_chunked(ctx, desc, x, w, bias, act, y, SOFT_DEFAULT)
}

/// [`conv2d_forward`] with the scratch buffer capped at `max_chunk_bytes` (a hard
/// cap, as is the device's binding limit: if one image's scratch exceeds it the
/// call fails with [`Error::TooLarge`]); tests use a small cap to force several
/// chunks. `0` means the soft default of [`conv2d_forward`].
#[allow(clippy::too_many_arguments)]
pub fn conv2d_forward_chunked(
    ctx: &Context,
    desc: &Conv2dDesc,
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    act: Activation,
    y: &Tensor,
    max_chunk_bytes: u64,
) -> Result<Vec<Dispatch>> {
    const OP: &str = "conv2d_forward";
    check_common(OP, desc, x, w)?;
    let out = desc.output_shape()?;
    check_tensor(OP, "y", y, &out, &Y_DIMS)?;
    if let Some(b) = bias {
        check_bias(OP, "bias", desc, b)?;
    }
    let (o, np) = (desc.c_out, out[2] * out[3]);
    let ld = desc.ckk() + bias.is_some() as usize;
    let per_chunk = chunk_images(ctx, desc, &[ld * np], max_chunk_bytes)?;
    let col = Tensor::zeros(ctx, &[per_chunk, ld, np], DType::F32)?;
    let mut list = Vec::new();
    let packed;
    let weights = match bias {
        Some(b) => {
            packed = Tensor::zeros(ctx, &[o, ld], DType::F32)?;
            list.push(ctx.dispatch(
                PACK_WEIGHTS,
                &[("WG", WG as f64)],
                &params(desc, 0, 0, ld, false)?,
                &[(5, &w.buffer), (6, &b.buffer), (7, &packed.buffer)],
                groups_for(ctx, o * ld, WG)?,
            )?);
            &packed
        }
        None => w,
    };
    for (n0, images) in chunks(desc.n, per_chunk) {
        list.push(im2col(ctx, desc, x, &col, n0, images, bias.is_some())?);
        // y_img[O, P] = W'[O, LD] · col_img[LD, P] for every image of the chunk.
        let m = MatmulDesc {
            batch: images,
            a_batch_stride: 0,
            b_batch_stride: ld * np,
            c_offset: n0 * o * np,
            c_batch_stride: o * np,
            activation: act,
            ..MatmulDesc::new(o, np, ld)
        };
        list.extend(matmul(ctx, &m, weights, &col, None, y)?);
    }
    Ok(list)
}

/// Backward convolution. `dy` is the gradient with respect to `y` (the caller has
/// already applied the activation's backward). Overwrites `dw` with the weight
/// gradient, `dx` (if given) with the input gradient and `db` (if given) with the
/// bias gradient (the sum of `dy` over images and pixels).
///
/// Dispatches per chunk: `im2col` (with a row of ones when `db` is wanted), one
/// batched matmul `part_img = col_img · dy_img^T` (`[LD, c_out]` per image), a
/// `reduce_dw` summing the parts into `dw` (and `db`; the first chunk overwrites,
/// later ones add), and with `dx` a batched matmul `dcol_img = W^T · dy_img`
/// followed by `col2im`.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_backward(
    ctx: &Context,
    desc: &Conv2dDesc,
    x: &Tensor,
    w: &Tensor,
    dy: &Tensor,
    dx: Option<&Tensor>,
    dw: &Tensor,
    db: Option<&Tensor>,
) -> Result<Vec<Dispatch>> {
    conv2d_backward_chunked(ctx, desc, x, w, dy, dx, dw, db, SOFT_DEFAULT)
}

/// [`conv2d_backward`] with the scratch buffers capped at `max_chunk_bytes` (hard
/// cap; `0` means the soft default, as in [`conv2d_forward_chunked`]).
#[allow(clippy::too_many_arguments)]
pub fn conv2d_backward_chunked(
    ctx: &Context,
    desc: &Conv2dDesc,
    x: &Tensor,
    w: &Tensor,
    dy: &Tensor,
    dx: Option<&Tensor>,
    dw: &Tensor,
    db: Option<&Tensor>,
    max_chunk_bytes: u64,
) -> Result<Vec<Dispatch>> {
    const OP: &str = "conv2d_backward";
    check_common(OP, desc, x, w)?;
    let out = desc.output_shape()?;
    check_tensor(OP, "dy", dy, &out, &Y_DIMS)?;
    check_tensor(OP, "dw", dw, &desc.weight_shape(), &W_DIMS)?;
    if let Some(dx) = dx {
        check_tensor(OP, "dx", dx, &desc.input_shape(), &X_DIMS)?;
    }
    if let Some(db) = db {
        check_bias(OP, "db", desc, db)?;
    }
    let (o, np, ckk) = (desc.c_out, out[2] * out[3], desc.ckk());
    let ld = ckk + db.is_some() as usize;
    let per_chunk = chunk_images(ctx, desc, &[ld * np, ld * o], max_chunk_bytes)?;
    // part_img[LD, O] = col_img[LD, P] · dy_img[O, P]^T per image, or, for a chunk
    // of several images, their sum over the chunk's images in
    // one product: no per-image partials to write and read back.
    let weight_product = |n0: usize, images: usize| MatmulDesc {
        batch: images,
        trans_b: true,
        b_offset: n0 * o * np,
        a_batch_stride: ld * np,
        b_batch_stride: o * np,
        c_batch_stride: ld * o,
        ..MatmulDesc::new(ld, o, np)
    };
    let reduce = per_chunk > 1;
    let col = Tensor::zeros(ctx, &[per_chunk, ld, np], DType::F32)?;
    let parts = Tensor::zeros(ctx, &[if reduce { 1 } else { per_chunk }, ld, o], DType::F32)?;
    let mut list = Vec::new();
    for (chunk, (n0, images)) in chunks(desc.n, per_chunk).enumerate() {
        list.push(im2col(ctx, desc, x, &col, n0, images, db.is_some())?);
        let mut m = weight_product(n0, images);
        m.reduce_batch = reduce;
        list.extend(matmul(ctx, &m, &col, dy, None, &parts)?);
        let part_count = if reduce { 1 } else { images };
        list.push(match db {
            Some(db) => reduce_weight_parts(ctx, desc, &parts, part_count, dw, db, chunk > 0)?,
            None => ctx.dispatch(
                REDUCE_DW,
                &[("WG", WG as f64)],
                &params(desc, part_count, 0, ld, chunk > 0)?,
                &[(8, &parts.buffer), (9, &dw.buffer)],
                groups_for(ctx, o * ld, WG)?,
            )?,
        });
        if let Some(dx) = dx {
            list.extend(input_grad_chunk(ctx, desc, w, dy, &col, dx, n0, images)?);
        }
    }
    Ok(list)
}

/// The input gradient of images `n0..n0 + images`: `dcol_img[CKK, P] =
/// W[O, CKK]^T · dy_img[O, P]` written over `col` (dense, CKK rows per image),
/// then gathered into `dx` (overwritten).
#[allow(clippy::too_many_arguments)]
fn input_grad_chunk(
    ctx: &Context,
    desc: &Conv2dDesc,
    w: &Tensor,
    dy: &Tensor,
    col: &Tensor,
    dx: &Tensor,
    n0: usize,
    images: usize,
) -> Result<Vec<Dispatch>> {
    let out = desc.output_shape()?;
    let (o, np, ckk) = (desc.c_out, out[2] * out[3], desc.ckk());
    let m = MatmulDesc {
        batch: images,
        trans_a: true,
        b_offset: n0 * o * np,
        a_batch_stride: 0,
        b_batch_stride: o * np,
        c_batch_stride: ckk * np,
        ..MatmulDesc::new(ckk, np, o)
    };
    let mut list = matmul(ctx, &m, w, dy, None, col)?;
    list.push(col2im(ctx, desc, col, dx, n0, images)?);
    Ok(list)
}

/// The input gradient alone, `dx` of the convolution `desc` from `dy` (`dx` is
/// overwritten): the transposed convolution of `dy` by `w`, which is what a
/// Conv2DTranspose layer computes forward. Per chunk of images (scratch capped as
/// in [`conv2d_forward_chunked`]): one batched matmul and `col2im`, as the `dx`
/// part of [`conv2d_backward`]. CPU twin: `reference::conv::conv2d_backward_input`.
pub fn conv2d_backward_input(
    ctx: &Context,
    desc: &Conv2dDesc,
    w: &Tensor,
    dy: &Tensor,
    dx: &Tensor,
) -> Result<Vec<Dispatch>> {
    const OP: &str = "conv2d_backward_input";
    desc.validate()?;
    check_tensor(OP, "w", w, &desc.weight_shape(), &W_DIMS)?;
    check_tensor(OP, "dy", dy, &desc.output_shape()?, &Y_DIMS)?;
    check_tensor(OP, "dx", dx, &desc.input_shape(), &X_DIMS)?;
    let out = desc.output_shape()?;
    let np = out[2] * out[3];
    let per_chunk = chunk_images(ctx, desc, &[desc.ckk() * np], SOFT_DEFAULT)?;
    let col = Tensor::zeros(ctx, &[per_chunk, desc.ckk(), np], DType::F32)?;
    let mut list = Vec::new();
    for (n0, images) in chunks(desc.n, per_chunk) {
        list.extend(input_grad_chunk(ctx, desc, w, dy, &col, dx, n0, images)?);
    }
    Ok(list)
}
