//! CPU twins of the fused attention kernels (`shaders/attention.wgsl`): plain loops
//! over samples, heads and rows, f64 sums, the weights `P` built per query row;
//! dropout on the weights draws [`crate::reference::dropout`]'s mask of a
//! `[B·H·Tq, Tk]` tensor at step `t`. Optional key lengths (one per sample, whole
//! numbers as f32) exclude each sample's keys from its length on (padding).

use crate::error::Result;
use crate::kernels::attention::AttentionDims;
use crate::kernels::dropout::DropoutRate;
use crate::reference::dropout::keep;

/// Offset of head `h`'s `d`-wide slice of token `t` of sample `b` in `[B, T, H·d]`.
fn at(dims: &AttentionDims, b: usize, tokens: usize, t: usize, h: usize, d: usize) -> usize {
    (b * tokens + t) * dims.heads * d + h * d
}

/// The keys query `i` of sample `b` sees: the first ones, up to the causal mask's
/// bound and the sample's length.
fn keys_seen(dims: &AttentionDims, lengths: Option<&[f32]>, b: usize, i: usize) -> usize {
    let causal = if dims.causal {
        (i + 1).min(dims.tk)
    } else {
        dims.tk
    };
    lengths.map_or(causal, |l| causal.min(l[b].max(0.0) as usize))
}

/// Query row `i`'s scaled scores against its first `n` keys.
fn scores(
    dims: &AttentionDims,
    q: &[f32],
    k: &[f32],
    (b, h, i): (usize, usize, usize),
    n: usize,
) -> Vec<f64> {
    let (qi, dk) = (at(dims, b, dims.tq, i, h, dims.dk), dims.dk);
    (0..n)
        .map(|j| {
            let kj = at(dims, b, dims.tk, j, h, dk);
            let dot: f64 = (0..dk).map(|d| q[qi + d] as f64 * k[kj + d] as f64).sum();
            dims.scale as f64 * dot
        })
        .collect()
}

/// The dropout factors `M_ij` of query row `i` of (sample, head) `bh` at step `t`
/// over `n` keys: 0 or `1 / (1 − rate)` (`rate` from [`rate`]); all 1 without
/// dropout.
fn mask(dims: &AttentionDims, rate: Option<DropoutRate>, t: u32, bh: usize, i: usize, n: usize) -> Vec<f64> {
    let (Some(d), Some(r)) = (dims.dropout, rate) else {
        return vec![1.0; n];
    };
    (0..n)
        .map(|j| {
            let e = ((bh * dims.tq + i) * dims.tk + j) as u32;
            if keep(d.seed, t, e, r.threshold) {
                r.scale as f64
            } else {
                0.0
            }
        })
        .collect()
}

/// The threshold and scale of `dims`' dropout, if it has one; an error for a
/// rate outside `[0, 1)`.
fn rate(dims: &AttentionDims) -> Result<Option<DropoutRate>> {
    dims.dropout.map(|d| DropoutRate::new(d.rate)).transpose()
}

/// Query row `i`'s attention weights over its first `n` keys, and the
/// log-sum-exp of its scores (0 when it sees none).
fn weights(
    dims: &AttentionDims,
    q: &[f32],
    k: &[f32],
    row: (usize, usize, usize),
    n: usize,
) -> (Vec<f64>, f64) {
    let s = scores(dims, q, k, row, n);
    if s.is_empty() {
        return (s, 0.0);
    }
    let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let l: f64 = s.iter().map(|x| (x - m).exp()).sum();
    (s.iter().map(|x| (x - m).exp() / l).collect(), m + l.ln())
}

/// Twin of `attention_forward`: `o` and the log-sum-exp of each query row's
/// scores in `stats[2·(bh·tq + i)]` (the second value of each pair is 0); `t` is
/// the draw (pass) number dropout draws its mask at (unused without dropout);
/// `lengths`, if given, each sample's unpadded key count. Errors for a dropout
/// rate outside `[0, 1)`.
#[allow(clippy::too_many_arguments)]
pub fn attention_forward(
    dims: &AttentionDims,
    (q, k, v): (&[f32], &[f32], &[f32]),
    lengths: Option<&[f32]>,
    o: &mut [f32],
    stats: &mut [f32],
    t: u32,
) -> Result<()> {
    let rate = rate(dims)?;
    for b in 0..dims.batch {
        for h in 0..dims.heads {
            for i in 0..dims.tq {
                let n = keys_seen(dims, lengths, b, i);
                let (p, lse) = weights(dims, q, k, (b, h, i), n);
                let m = mask(dims, rate, t, b * dims.heads + h, i, p.len());
                let p: Vec<f64> = p.iter().zip(&m).map(|(p, m)| p * m).collect();
                let oi = at(dims, b, dims.tq, i, h, dims.dv);
                for d in 0..dims.dv {
                    let acc: f64 = p
                        .iter()
                        .enumerate()
                        .map(|(j, w)| w * v[at(dims, b, dims.tk, j, h, dims.dv) + d] as f64)
                        .sum();
                    o[oi + d] = acc as f32;
                }
                let r = (b * dims.heads + h) * dims.tq + i;
                stats[2 * r] = lse as f32;
                stats[2 * r + 1] = 0.0;
            }
        }
    }
    Ok(())
}

/// Twin of `attention_backward`: from the output's gradient `d_o`, the gradients
/// of the queries, keys and values (overwritten), the weights (and the dropout
/// mask of step `t`) recomputed exactly; `lengths` as the forward's. Errors as
/// [`attention_forward`].
#[allow(clippy::too_many_arguments)]
pub fn attention_backward(
    dims: &AttentionDims,
    (q, k, v): (&[f32], &[f32], &[f32]),
    lengths: Option<&[f32]>,
    d_o: &[f32],
    dq: &mut [f32],
    dk: &mut [f32],
    dv: &mut [f32],
    t: u32,
) -> Result<()> {
    let rate = rate(dims)?;
    let mut gq = vec![0f64; dq.len()];
    let mut gk = vec![0f64; dk.len()];
    let mut gv = vec![0f64; dv.len()];
    let scale = dims.scale as f64;
    for b in 0..dims.batch {
        for h in 0..dims.heads {
            for i in 0..dims.tq {
                let n = keys_seen(dims, lengths, b, i);
                let (p, _) = weights(dims, q, k, (b, h, i), n);
                let (qi, oi) = (
                    at(dims, b, dims.tq, i, h, dims.dk),
                    at(dims, b, dims.tq, i, h, dims.dv),
                );
                // dP_ij = M_ij·dO_i·v_j (the gradient of the weights before
                // dropout); dS_ij = P_ij·(dP_ij − Σ_l P_il·dP_il).
                let m = mask(dims, rate, t, b * dims.heads + h, i, p.len());
                let dp: Vec<f64> = (0..p.len())
                    .map(|j| {
                        let vj = at(dims, b, dims.tk, j, h, dims.dv);
                        let dot: f64 = (0..dims.dv).map(|d| d_o[oi + d] as f64 * v[vj + d] as f64).sum();
                        m[j] * dot
                    })
                    .collect();
                let delta: f64 = p.iter().zip(&dp).map(|(a, b)| a * b).sum();
                for j in 0..p.len() {
                    let ds = p[j] * (dp[j] - delta) * scale;
                    let (kj, vj) = (
                        at(dims, b, dims.tk, j, h, dims.dk),
                        at(dims, b, dims.tk, j, h, dims.dv),
                    );
                    for d in 0..dims.dk {
                        gq[qi + d] += ds * k[kj + d] as f64;
                        gk[kj + d] += ds * q[qi + d] as f64;
                    }
                    for d in 0..dims.dv {
                        gv[vj + d] += p[j] * m[j] * d_o[oi + d] as f64;
                    }
                }
            }
        }
    }
    for (out, g) in [(dq, gq), (dk, gk), (dv, gv)] {
        for (o, x) in out.iter_mut().zip(g) {
            *o = x as f32;
        }
    }
    Ok(())
}
