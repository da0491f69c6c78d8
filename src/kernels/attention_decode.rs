//! One step of a key/value-cache decoder's attention (`shaders/attention_decode.wgsl`):
//! the query of the decoder's position over the cached keys and values, with that
//! position's key and value appended to the cache by the same dispatch, and
//! grouped key/value heads read in place. The position comes from a uniform shared
//! by every kernel of the step ([`DecodePosition`]), so a step's dispatches are
//! recorded once and never rewritten. A long cache can be split over several
//! workgroups per head ([`DecodeDims::splits`], flash-decoding's second level)
//! and their results combined by a second dispatch. CPU twin:
//! [`crate::reference::attention_decode`].

use crate::error::{Error, Result};
use crate::gpu::{Context, DType, Dispatch, Tensor};
use crate::kernels::elementwise::{count_u32, expect_f32_sizes, expect_separate};
use crate::kernels::{Kernel, Shader};

/// The largest per-head query/key or value size the decode kernel takes.
pub const MAX_DECODE_HEAD_DIM: usize = 256;

/// Invocations per workgroup, as in the shader.
const WG: usize = 64;
/// Workgroup floats of the key/value tile, as in the shader.
const TILE_FLOATS: usize = 3776;

const DECODE: Kernel = Shader::AttentionDecode.kernel("attention_decode");
const DECODE_SPLIT: Kernel = Shader::AttentionDecode.kernel("attention_decode_split");
const DECODE_COMBINE: Kernel = Shader::AttentionDecode.kernel("attention_decode_combine");

/// Keys per split that [`DecodeDims::splits_for`] aims at.
const KEYS_PER_SPLIT: usize = 256;
/// Most splits [`DecodeDims::splits_for`] gives a head.
const MAX_SPLITS: usize = 32;

/// Mirrors `Position` in `shaders/position.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct PositionValues {
    at: u32,
    _pad: [u32; 3],
}

/// The position a decoder's step is at, in a uniform every kernel of the step
/// binds (the attention's key count, the rotary embedding's angles). Positions
/// are below the capacity given at creation, which the kernels binding it are
/// checked against, so no kernel reads or writes past its cache.
pub struct DecodePosition {
    /// `UNIFORM | COPY_DST`, holding the position.
    pub buffer: wgpu::Buffer,
    capacity: usize,
}

impl DecodePosition {
    /// A position uniform for caches of `capacity` positions, at position 0.
    pub fn new(ctx: &Context, capacity: usize) -> Result<Self> {
        count_u32("DecodePosition", "positions", capacity)?;
        let buffer = ctx.create_buffer(
            "decode position",
            std::mem::size_of::<PositionValues>() as u64,
            wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        )?;
        ctx.queue
            .write_buffer(&buffer, 0, bytemuck::bytes_of(&PositionValues::default()));
        Ok(DecodePosition { buffer, capacity })
    }

    /// Positions the caches hold.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Sets the position the next submission's kernels read (queued with
    /// `queue.write_buffer`); an error from `capacity` on.
    pub fn set(&self, ctx: &Context, at: usize) -> Result<()> {
        if at >= self.capacity {
            return Err(Error::invalid(format!(
                "decode position {at} is past the key/value cache's {} positions",
                self.capacity
            )));
        }
        ctx.check()?;
        let values = PositionValues {
            at: at as u32,
            ..Default::default()
        };
        ctx.queue
            .write_buffer(&self.buffer, 0, bytemuck::bytes_of(&values));
        Ok(())
    }
}

/// The shape of one decoding attention: `heads` query heads sharing `kv_heads`
/// key/value heads (`heads` a multiple of it; equal without grouping), per-head
/// sizes `dk` (queries and keys) and `dv` (values), scores scaled by `scale`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DecodeDims {
    /// Query heads.
    pub heads: usize,
    /// Key/value heads; query head `h` reads head `h / (heads / kv_heads)`.
    pub kv_heads: usize,
    /// Per-head size of queries and keys.
    pub dk: usize,
    /// Per-head size of values.
    pub dv: usize,
    /// Factor of the scores `q·k` (usually `1/√dk`).
    pub scale: f32,
    /// Workgroups per head over the cached keys: 1 runs one dispatch; more
    /// give each workgroup a share of the keys and combine the shares in a
    /// second dispatch.
    pub splits: usize,
}

impl DecodeDims {
    /// `heads` query heads over `kv_heads` key/value heads, scores scaled by
    /// `1/√dk`.
    pub fn new(heads: usize, kv_heads: usize, (dk, dv): (usize, usize)) -> Self {
        DecodeDims {
            heads,
            kv_heads,
            dk,
            dv,
            scale: 1.0 / (dk as f32).sqrt(),
            splits: 1,
        }
    }

    /// The same attention over `splits` workgroups per head.
    pub fn with_splits(self, splits: usize) -> Self {
        DecodeDims { splits, ..self }
    }

    /// The built-in rule, which the tuner measures against
    /// (`kernels::tune::decode_splits`): for a cache of `capacity` positions on a
    /// GPU, one split per 256 keys
    /// (at most 32), so that a long cache keeps many workgroups busy where
    /// `heads` alone would leave most of a GPU idle; 1 on CPU adapters, whose few
    /// threads the heads already fill (a second dispatch would only add its cost).
    pub fn splits_for(ctx: &Context, capacity: usize) -> usize {
        if ctx.is_cpu() {
            1
        } else {
            capacity.div_ceil(KEYS_PER_SPLIT).clamp(1, MAX_SPLITS)
        }
    }

    /// Whether the decode kernel takes heads of this size.
    pub fn fits(&self) -> bool {
        self.dk <= MAX_DECODE_HEAD_DIM && self.dv <= MAX_DECODE_HEAD_DIM
    }

    fn params(&self, op: &'static str, capacity: usize) -> Result<Params> {
        let ok = self.heads > 0
            && self.kv_heads > 0
            && self.heads.is_multiple_of(self.kv_heads)
            && self.dk > 0
            && self.dv > 0;
        if !ok {
            return Err(Error::shape(
                op,
                format!("{self:?}: heads must be a positive multiple of kv_heads, and dk, dv at least 1"),
            ));
        }
        if !self.fits() {
            return Err(Error::shape(
                op,
                format!(
                    "heads of {} query/key and {} value values exceed the decode kernel's \
                     {MAX_DECODE_HEAD_DIM}",
                    self.dk, self.dv
                ),
            ));
        }
        if !self.scale.is_finite() {
            return Err(Error::invalid(format!(
                "{op}: scale must be finite, got {}",
                self.scale
            )));
        }
        if self.splits == 0 || self.splits > capacity || self.splits > u16::MAX as usize {
            return Err(Error::invalid(format!(
                "{op}: {} splits of a cache of {capacity} positions; give 1 to {}",
                self.splits,
                capacity.min(u16::MAX as usize)
            )));
        }
        let stride = self.dk.max(self.dv) | 1;
        Ok(Params {
            heads: count_u32(op, "heads", self.heads)?,
            kv_heads: self.kv_heads as u32,
            dk: self.dk as u32,
            dv: self.dv as u32,
            scale: self.scale,
            tile: WG.min(TILE_FLOATS / stride) as u32,
            stride: stride as u32,
            splits: self.splits as u32,
            chunk: count_u32(op, "keys per split", capacity.div_ceil(self.splits))?,
            ..Params::default()
        })
    }
}

/// Mirrors `Params` in `shaders/attention_decode.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    heads: u32,
    kv_heads: u32,
    dk: u32,
    dv: u32,
    scale: f32,
    tile: u32,
    stride: u32,
    splits: u32,
    chunk: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

/// At the position `position` holds when it runs (P): appends `k_new`
/// `[kv_heads·dk]` and `v_new` `[kv_heads·dv]` to row P of `k_cache`
/// `[T, kv_heads·dk]` and `v_cache` `[T, kv_heads·dv]` (T the position's
/// capacity), and writes `out` `[heads·dv]`: each query head of `q` `[heads·dk]`
/// attending over rows `0..=P`. The caches and `out` are separate from each other
/// and from the inputs. One dispatch, or with [`DecodeDims::splits`] above 1
/// two: the splits, then their combination (with a buffer of their own).
pub fn attention_decode(
    ctx: &Context,
    dims: &DecodeDims,
    q: &Tensor,
    (k_new, v_new): (&Tensor, &Tensor),
    (k_cache, v_cache): (&Tensor, &Tensor),
    position: &DecodePosition,
    out: &Tensor,
) -> Result<Vec<Dispatch>> {
    const OP: &str = "attention_decode";
    let t = position.capacity;
    let params = dims.params(OP, t)?;
    let (kw, vw) = (dims.kv_heads * dims.dk, dims.kv_heads * dims.dv);
    let cache = |width: usize| {
        t.checked_mul(width).ok_or_else(|| {
            Error::shape(
                OP,
                format!("{t} positions of {width} values do not fit in memory"),
            )
        })
    };
    expect_f32_sizes(
        OP,
        dims,
        &[
            ("q", q, dims.heads * dims.dk),
            ("k_new", k_new, kw),
            ("v_new", v_new, vw),
            ("k_cache", k_cache, cache(kw)?),
            ("v_cache", v_cache, cache(vw)?),
            ("out", out, dims.heads * dims.dv),
        ],
    )?;
    count_u32(OP, "cached keys", k_cache.numel())?;
    count_u32(OP, "cached values", v_cache.numel())?;
    expect_separate(
        OP,
        &[("k_cache", k_cache), ("v_cache", v_cache), ("out", out)],
        &[q, k_new, v_new],
    )?;
    let mut bindings = vec![
        (1, &q.buffer),
        (2, &k_new.buffer),
        (3, &v_new.buffer),
        (4, &k_cache.buffer),
        (5, &v_cache.buffer),
        (6, &out.buffer),
        (7, &position.buffer),
    ];
    if dims.splits == 1 {
        return Ok(vec![ctx.dispatch(
            DECODE,
            &[],
            &params,
            &bindings,
            [params.heads, 1, 1],
        )?]);
    }
    // The splits write their shares, not the output.
    let partial = Tensor::zeros(ctx, &[dims.heads * dims.splits * (dims.dv + 2)], DType::F32)?;
    bindings.retain(|&(b, _)| b != 6);
    bindings.push((8, &partial.buffer));
    Ok(vec![
        ctx.dispatch(
            DECODE_SPLIT,
            &[],
            &params,
            &bindings,
            [params.heads, params.splits, 1],
        )?,
        ctx.dispatch(
            DECODE_COMBINE,
            &[],
            &params,
            &[(6, &out.buffer), (8, &partial.buffer)],
            [params.heads, 1, 1],
        )?,
    ])
}
