//! Fused attention launchers (`shaders/attention.wgsl`): scaled dot-product
//! attention over heads straight from the projections' `[B, T, H·d]` layout, without
//! per-head copies or the `[B·H, Tq, Tk]` weights; the backward pass recomputes the
//! weights from each query row's log-sum-exp. Dropout on the weights while
//! training ([`AttentionDims::dropout`]) runs in the same kernels, its mask drawn
//! as the dropout kernel draws a `[B·H·Tq, Tk]` tensor's. CPU twins:
//! [`crate::reference::attention`].

use crate::error::{Error, Result};
use crate::gpu::{Context, DType, Dispatch, Tensor};
use crate::kernels::dropout::DropoutRate;
use crate::kernels::elementwise::{count_u32, expect_f32_sizes, expect_separate};
use crate::kernels::optim::StepUniform;
use crate::kernels::{Kernel, Shader, groups_for};

/// The largest per-head query/key or value size the fused kernels take (their
/// private row arrays); larger heads use the unfused path.
pub const MAX_HEAD_DIM: usize = 64;

/// Environment variable choosing the attention path: `auto` (default: fused on
/// GPUs, unfused on CPU adapters), `fused` (wherever the heads fit) or `unfused`;
/// for measuring one against the other on the adapter at hand.
pub const ATTENTION_ENV: &str = "WGML_ATTENTION";

/// Which attention kernels a plan uses (see [`ATTENTION_ENV`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttentionPath {
    /// Fused on GPUs, unfused on CPU adapters.
    Auto,
    /// The fused kernels wherever the heads fit ([`MAX_HEAD_DIM`]).
    Fused,
    /// Per-head copies, batched matmuls and the row softmax.
    Unfused,
}

impl AttentionPath {
    /// Parses `auto`, `fused` or `unfused`.
    pub fn parse(value: &str) -> Result<AttentionPath> {
        match value.trim().to_ascii_lowercase().as_str() {
            "" | "auto" => Ok(AttentionPath::Auto),
            "fused" => Ok(AttentionPath::Fused),
            "unfused" => Ok(AttentionPath::Unfused),
            other => Err(Error::invalid(format!(
                "{ATTENTION_ENV}={other} is not an attention path; use auto, fused or unfused"
            ))),
        }
    }

    /// The path `WGML_ATTENTION` asks for (`auto` when unset).
    pub fn from_env() -> Result<AttentionPath> {
        match std::env::var(ATTENTION_ENV) {
            Ok(v) => AttentionPath::parse(&v),
            Err(std::env::VarError::NotPresent) => Ok(AttentionPath::Auto),
            Err(std::env::VarError::NotUnicode(_)) => Err(Error::invalid(format!(
                "{ATTENTION_ENV} is not valid text; use auto, fused or unfused"
            ))),
        }
    }

    /// Whether attention of `dims` runs fused on `ctx` under this path.
    pub fn fuses(self, ctx: &Context, dims: &AttentionDims) -> bool {
        dims.fused_fits()
            && match self {
                AttentionPath::Auto => !ctx.is_cpu(),
                AttentionPath::Fused => true,
                AttentionPath::Unfused => false,
            }
    }
}

/// Rows per workgroup (one per invocation), as in the shader.
const WG: usize = 64;

const FORWARD: Kernel = Shader::Attention.kernel("attention_forward");
const DELTA: Kernel = Shader::Attention.kernel("attention_delta");
const BACKWARD_Q: Kernel = Shader::Attention.kernel("attention_backward_q");
const BACKWARD_KV: Kernel = Shader::Attention.kernel("attention_backward_kv");
const FORWARD_DROPOUT: Kernel = Shader::Attention.kernel("attention_forward_dropout");
const BACKWARD_Q_DROPOUT: Kernel = Shader::Attention.kernel("attention_backward_q_dropout");
const BACKWARD_KV_DROPOUT: Kernel = Shader::Attention.kernel("attention_backward_kv_dropout");

/// Mirrors `Params` in `shaders/attention.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    bh: u32,
    heads: u32,
    tq: u32,
    tk: u32,
    dk: u32,
    dv: u32,
    causal: u32,
    scale: f32,
    blocks: u32,
    drop_threshold: u32,
    drop_scale: f32,
    drop_seed: u32,
    masked: u32,
}

/// Dropout on the attention weights while training (Keras' MultiHeadAttention
/// `dropout`, GPT-2's `attn_pdrop`): `O = (P ⊙ M)·V`, `M` inverted dropout's mask
/// of the weights as a `[B·H·Tq, Tk]` tensor (element `(bh·Tq + i)·Tk + j`) drawn
/// from `seed` and the draw number, as `kernels::dropout` draws it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttentionDropout {
    /// Fraction of the weights dropped, in `[0, 1)`.
    pub rate: f32,
    /// Mask seed (a graph node's, `kernels::dropout::layer_seed`).
    pub seed: u32,
}

/// The shape of one attention: `batch` samples of queries `[tq, heads·dk]`, keys
/// `[tk, heads·dk]` and values `[tk, heads·dv]`; output `[tq, heads·dv]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttentionDims {
    /// Samples.
    pub batch: usize,
    /// Heads.
    pub heads: usize,
    /// Query tokens per sample.
    pub tq: usize,
    /// Key (and value) tokens per sample.
    pub tk: usize,
    /// Per-head size of queries and keys.
    pub dk: usize,
    /// Per-head size of values.
    pub dv: usize,
    /// Query `i` sees keys `j ≤ i` only (needs `tq == tk`).
    pub causal: bool,
    /// Factor of the scores `q·k` (usually `1/√dk`).
    pub scale: f32,
    /// Dropout on the weights (training only); `None` for none.
    pub dropout: Option<AttentionDropout>,
}

impl AttentionDims {
    /// Keras' attention of `batch` samples over `heads` heads: scores scaled by
    /// `1/√dk`.
    pub fn new(
        batch: usize,
        heads: usize,
        (tq, tk): (usize, usize),
        (dk, dv): (usize, usize),
        causal: bool,
    ) -> Self {
        AttentionDims {
            batch,
            heads,
            tq,
            tk,
            dk,
            dv,
            causal,
            scale: 1.0 / (dk as f32).sqrt(),
            dropout: None,
        }
    }

    /// The same attention with dropout of `rate` on its weights, masks drawn from
    /// `seed` (none at rate 0; a rate outside `[0, 1)` is refused where the
    /// dims are used).
    pub fn with_dropout(self, rate: f32, seed: u32) -> Self {
        AttentionDims {
            dropout: (rate != 0.0).then_some(AttentionDropout { rate, seed }),
            ..self
        }
    }

    /// Per-head products: samples times heads.
    pub fn bh(&self) -> usize {
        self.batch * self.heads
    }

    /// Rows per matrix of a causal mask over the `[B·H·Tq, Tk]` scores (`None`
    /// without a mask), as `softmax_attention` takes it.
    pub fn causal_rows(&self) -> Option<usize> {
        self.causal.then_some(self.tq)
    }

    /// Whether the fused kernels take heads of this size.
    pub fn fused_fits(&self) -> bool {
        self.dk <= MAX_HEAD_DIM && self.dv <= MAX_HEAD_DIM
    }

    /// Elements of the queries, keys, values and output; an error when a count
    /// does not fit in `usize`.
    fn sizes(&self, op: &'static str) -> Result<[usize; 4]> {
        let product = |dims: &[usize]| {
            dims.iter()
                .try_fold(1usize, |a, &d| a.checked_mul(d))
                .ok_or_else(|| {
                    Error::shape(
                        op,
                        format!("{self:?} describes more elements than this machine can address"),
                    )
                })
        };
        let (b, h) = (self.batch, self.heads);
        Ok([
            product(&[b, self.tq, h, self.dk])?,
            product(&[b, self.tk, h, self.dk])?,
            product(&[b, self.tk, h, self.dv])?,
            product(&[b, self.tq, h, self.dv])?,
        ])
    }

    /// Values of the statistics tensor: (log-sum-exp, D) per query row and head.
    pub fn stats_len(&self) -> usize {
        2 * self.bh() * self.tq
    }

    fn params(&self, op: &'static str, rows: usize, lengths: Option<&Tensor>) -> Result<Params> {
        if let Some(l) = lengths {
            l.expect_dtype(op, "key lengths", DType::F32)?;
            if l.numel() != self.batch {
                return Err(Error::shape(
                    op,
                    format!(
                        "{} key lengths for {} samples; give one per sample",
                        l.numel(),
                        self.batch
                    ),
                ));
            }
        }
        let dims = [self.batch, self.heads, self.tq, self.tk, self.dk, self.dv];
        if dims.contains(&0) {
            return Err(Error::shape(
                op,
                format!("every dimension must be at least 1, got {self:?}"),
            ));
        }
        if !self.fused_fits() {
            return Err(Error::shape(
                op,
                format!(
                    "heads of {} query/key and {} value values exceed the fused kernels' {MAX_HEAD_DIM}; \
                     use the unfused attention (swap_axes, matmul, softmax_attention)",
                    self.dk, self.dv
                ),
            ));
        }
        if self.causal && self.tq != self.tk {
            return Err(Error::shape(
                op,
                format!(
                    "a causal mask needs as many queries as keys, got {} and {}",
                    self.tq, self.tk
                ),
            ));
        }
        if !self.scale.is_finite() {
            return Err(Error::invalid(format!(
                "{op}: scale must be finite, got {}",
                self.scale
            )));
        }
        let (drop_threshold, drop_scale, drop_seed) = match self.dropout {
            None => (0, 1.0, 0),
            Some(d) => {
                let r = DropoutRate::new(d.rate).map_err(|e| Error::invalid(format!("{op}: {e}")))?;
                // The mask's element index is a u32, as the dropout kernel's.
                count_u32(op, "attention weights", self.bh() * self.tq * self.tk)?;
                (r.threshold, r.scale, d.seed)
            }
        };
        Ok(Params {
            bh: count_u32(op, "batch·heads", self.bh())?,
            heads: count_u32(op, "heads", self.heads)?,
            tq: count_u32(op, "query tokens", self.tq)?,
            tk: count_u32(op, "key tokens", self.tk)?,
            dk: self.dk as u32,
            dv: self.dv as u32,
            causal: self.causal as u32,
            scale: self.scale,
            blocks: count_u32(op, "row blocks", rows.div_ceil(WG))?,
            drop_threshold,
            drop_scale,
            drop_seed,
            masked: lengths.is_some() as u32,
        })
    }

    /// `plain`, or its dropout entry point and the step uniform it binds when the
    /// weights drop out (an error without `step`).
    fn kernel(
        &self,
        op: &'static str,
        plain: Kernel,
        dropout: Kernel,
        step: Option<&StepUniform>,
    ) -> Result<(Kernel, Option<wgpu::Buffer>)> {
        match (self.dropout, step) {
            (None, _) => Ok((plain, None)),
            (Some(_), Some(step)) => Ok((dropout, Some(step.buffer.clone()))),
            (Some(_), None) => Err(Error::invalid(format!(
                "{op}: dropout on the attention weights needs the per-step uniform (its masks \
                 change every step)"
            ))),
        }
    }

    /// The grid of a kernel giving each (sample, head) `ceil(rows / WG)` workgroups.
    fn groups(&self, ctx: &Context, rows: usize) -> Result<[u32; 3]> {
        groups_for(ctx, rows.div_ceil(WG) * self.bh(), 1)
    }
}

/// `o = softmax(scale·q·kᵀ)·v` per sample and head (see [`AttentionDims`] for the
/// layouts), and `stats` (`dims.stats_len()` values) the log-sum-exp of each query
/// row's scores, which [`attention_backward`] needs. `o` and `stats` are separate
/// from the inputs and each other. With [`AttentionDims::dropout`], `step` is the
/// model's per-step uniform (its draw number draws the mask); else unused.
/// With `lengths` (`[batch]`, whole numbers as f32: each sample's unpadded key
/// count), keys `j ≥ lengths[b]` are excluded (padding); a query that then sees
/// no key gets a zero output.
#[allow(clippy::too_many_arguments)]
pub fn attention_forward(
    ctx: &Context,
    dims: &AttentionDims,
    (q, k, v): (&Tensor, &Tensor, &Tensor),
    lengths: Option<&Tensor>,
    o: &Tensor,
    stats: &Tensor,
    step: Option<&StepUniform>,
) -> Result<Dispatch> {
    const OP: &str = "attention_forward";
    let [nq, nk, nv, no] = dims.sizes(OP)?;
    let params = dims.params(OP, dims.tq, lengths)?;
    expect_f32_sizes(
        OP,
        dims,
        &[
            ("q", q, nq),
            ("k", k, nk),
            ("v", v, nv),
            ("o", o, no),
            ("stats", stats, dims.stats_len()),
        ],
    )?;
    let key_lengths = lengths.unwrap_or(q);
    expect_separate(OP, &[("o", o), ("stats", stats)], &[q, k, v, key_lengths])?;
    let (kernel, step) = dims.kernel(OP, FORWARD, FORWARD_DROPOUT, step)?;
    let mut bindings = vec![
        (1, &q.buffer),
        (2, &k.buffer),
        (3, &v.buffer),
        (5, &o.buffer),
        (7, &stats.buffer),
        (9, &key_lengths.buffer),
    ];
    bindings.extend(step.as_ref().map(|s| (8, s)));
    ctx.dispatch(kernel, &[], &params, &bindings, dims.groups(ctx, dims.tq)?)
}

/// Rewrites the parameters of `forward`, a dispatch [`attention_forward`] made,
/// for `dims`, which may differ from its own in the key count only (at most the
/// rows its key and value buffers hold): a key/value cache's one query over a
/// growing number of keys, step after step, without a new dispatch. Takes effect
/// at the next submission.
pub fn set_forward_keys(ctx: &Context, forward: &Dispatch, dims: &AttentionDims, held: usize) -> Result<()> {
    const OP: &str = "set_forward_keys";
    if dims.tk > held {
        return Err(Error::shape(
            OP,
            format!("{} keys, but the buffers hold {held}", dims.tk),
        ));
    }
    let uniform = forward
        .params
        .as_ref()
        .ok_or_else(|| Error::invalid(format!("{OP}: not a dispatch with parameters")))?;
    ctx.queue
        .write_buffer(uniform, 0, bytemuck::bytes_of(&dims.params(OP, dims.tq, None)?));
    Ok(())
}

/// Where [`attention_backward`] writes: the gradient of the queries, and those of
/// the keys and values (computed together), each optional.
#[derive(Clone, Copy, Debug, Default)]
pub struct AttentionGrads<'a> {
    /// `dq`, `[B, tq, H·dk]`.
    pub dq: Option<&'a Tensor>,
    /// `(dk, dv)`, `[B, tk, H·dk]` and `[B, tk, H·dv]`.
    pub dkv: Option<(&'a Tensor, &'a Tensor)>,
}

/// The gradients of [`attention_forward`] from the output's gradient `d_o`, with
/// the forward's output `o` and `stats` (whose second halves this fills with
/// `D_i = d_o_i·o_i`): one dispatch for `D`, one for `dq`, one for `dk` and `dv`
/// together. The gradients are overwritten (not accumulated) and are separate from
/// every input. With dropout, `step` is the forward's, unchanged since; `lengths`
/// is the forward's too.
#[allow(clippy::too_many_arguments)]
pub fn attention_backward<'a>(
    ctx: &Context,
    dims: &AttentionDims,
    (q, k, v): (&'a Tensor, &'a Tensor, &'a Tensor),
    lengths: Option<&'a Tensor>,
    o: &Tensor,
    stats: &'a Tensor,
    d_o: &'a Tensor,
    grads: AttentionGrads<'a>,
    step: Option<&StepUniform>,
) -> Result<Vec<Dispatch>> {
    const OP: &str = "attention_backward";
    let [nq, nk, nv, no] = dims.sizes(OP)?;
    let mut tensors = vec![
        ("q", q, nq),
        ("k", k, nk),
        ("v", v, nv),
        ("o", o, no),
        ("d_o", d_o, no),
        ("stats", stats, dims.stats_len()),
    ];
    let mut outputs = vec![("stats", stats)];
    if let Some(dq) = grads.dq {
        tensors.push(("dq", dq, nq));
        outputs.push(("dq", dq));
    }
    if let Some((dk, dv)) = grads.dkv {
        tensors.extend([("dk", dk, nk), ("dv", dv, nv)]);
        outputs.extend([("dk", dk), ("dv", dv)]);
    }
    expect_f32_sizes(OP, dims, &tensors)?;
    let key_lengths = lengths.unwrap_or(q);
    expect_separate(OP, &outputs, &[q, k, v, o, d_o, key_lengths])?;
    // `o` is bound writable (the delta kernel reads it through its output binding).
    expect_separate(OP, &[("o", o)], &[q, k, v, d_o])?;
    let params = dims.params(OP, dims.tq, lengths)?;
    let rows = dims.bh() * dims.tq;
    let mut out = vec![ctx.dispatch(
        DELTA,
        &[],
        &params,
        &[(4, &d_o.buffer), (5, &o.buffer), (7, &stats.buffer)],
        groups_for(ctx, rows, WG as u32)?,
    )?];
    let (backward_q, step) = dims.kernel(OP, BACKWARD_Q, BACKWARD_Q_DROPOUT, step)?;
    let backward_kv = if step.is_some() {
        BACKWARD_KV_DROPOUT
    } else {
        BACKWARD_KV
    };
    let inputs = [
        (1, &q.buffer),
        (2, &k.buffer),
        (3, &v.buffer),
        (4, &d_o.buffer),
        (7, &stats.buffer),
        (9, &key_lengths.buffer),
    ];
    let bindings = |extra: &[(u32, &'a Tensor)]| -> Vec<(u32, &wgpu::Buffer)> {
        let mut b: Vec<(u32, &wgpu::Buffer)> = inputs.to_vec();
        b.extend(extra.iter().map(|&(i, t)| (i, &t.buffer)));
        b.extend(step.as_ref().map(|s| (8, s)));
        b
    };
    if let Some(dq) = grads.dq {
        let groups = dims.groups(ctx, dims.tq)?;
        out.push(ctx.dispatch(backward_q, &[], &params, &bindings(&[(5, dq)]), groups)?);
    }
    if let Some((dk, dv)) = grads.dkv {
        // The same product, its row blocks over the keys.
        let params = Params {
            blocks: count_u32(OP, "row blocks", dims.tk.div_ceil(WG))?,
            ..params
        };
        let groups = dims.groups(ctx, dims.tk)?;
        out.push(ctx.dispatch(backward_kv, &[], &params, &bindings(&[(5, dk), (6, dv)]), groups)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_parse_and_bad_ones_say_what_to_use() {
        assert_eq!(AttentionPath::parse("").unwrap(), AttentionPath::Auto);
        assert_eq!(AttentionPath::parse(" Fused ").unwrap(), AttentionPath::Fused);
        assert_eq!(AttentionPath::parse("unfused").unwrap(), AttentionPath::Unfused);
        let e = AttentionPath::parse("flash").unwrap_err().to_string();
        assert!(e.contains("WGML_ATTENTION") && e.contains("unfused"), "{e}");
    }
}
