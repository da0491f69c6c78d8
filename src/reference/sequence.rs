//! CPU twins of the padded-sequence kernels (`shaders/sequence.wgsl`).

use crate::kernels::sequence::{SequenceDims, SequencePool};

/// Twin of `sequence_lengths`: per sample of `tokens` ids, 1 + its last id that
/// is not `pad` (0 when all are).
pub fn sequence_lengths(ids: &[f32], tokens: usize, pad: u32) -> Vec<f32> {
    ids.chunks(tokens)
        .map(|s| {
            s.iter()
                .rposition(|&id| id != pad as f32)
                .map_or(0.0, |t| (t + 1) as f32)
        })
        .collect()
}

/// Twin of `token_types`: per sample of `tokens` ids, each token's count of
/// `separator` ids before it, at most `types − 1`.
pub fn token_types(ids: &[f32], tokens: usize, separator: u32, types: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(ids.len());
    for sample in ids.chunks(tokens) {
        let mut seen = 0usize;
        for &id in sample {
            out.push(seen.min(types.saturating_sub(1)) as f32);
            seen += usize::from(id == separator as f32);
        }
    }
    out
}

/// Twin of `mask_positions`: `x` (`[batch, rows, positions]`, `positions`
/// per row) with every position at or past its sample's length `fill`.
pub fn mask_positions(x: &[f32], rows: usize, positions: usize, lengths: &[f32], fill: f32) -> Vec<f32> {
    x.iter()
        .enumerate()
        .map(|(i, &v)| {
            let (b, t) = (i / (rows * positions), i % positions);
            if (t as f32) < lengths[b] { v } else { fill }
        })
        .collect()
}

/// Tokens pooled of sample `b`: all, or its length clamped to `[0, tokens]`.
fn count(dims: &SequenceDims, lengths: Option<&[f32]>, b: usize) -> usize {
    lengths.map_or(dims.tokens, |l| (l[b].max(0.0) as usize).min(dims.tokens))
}

/// Twin of `sequence_pool`: `[batch, features]` (f64 sums).
pub fn sequence_pool(
    dims: &SequenceDims,
    pool: SequencePool,
    x: &[f32],
    lengths: Option<&[f32]>,
) -> Vec<f32> {
    let (t, f) = (dims.tokens, dims.features);
    let mut y = vec![0.0; dims.batch * f];
    for (b, row) in y.chunks_mut(f).enumerate() {
        let n = count(dims, lengths, b);
        let token = |i: usize| &x[(b * t + i) * f..(b * t + i + 1) * f];
        match pool {
            SequencePool::Last => row.copy_from_slice(token(n.max(1) - 1)),
            SequencePool::First => row.copy_from_slice(token(0)),
            SequencePool::Mean if n > 0 => {
                for (c, out) in row.iter_mut().enumerate() {
                    *out = ((0..n).map(|i| token(i)[c] as f64).sum::<f64>() / n as f64) as f32;
                }
            }
            SequencePool::Mean => {}
        }
    }
    y
}

/// Twin of `sequence_pool_backward`: `dx` `[batch, tokens, features]`.
pub fn sequence_pool_backward(
    dims: &SequenceDims,
    pool: SequencePool,
    dy: &[f32],
    lengths: Option<&[f32]>,
) -> Vec<f32> {
    let (t, f) = (dims.tokens, dims.features);
    let mut dx = vec![0.0; dims.batch * t * f];
    for b in 0..dims.batch {
        let n = count(dims, lengths, b);
        let g = &dy[b * f..(b + 1) * f];
        let tokens = match pool {
            SequencePool::Last => n.max(1) - 1..n.max(1),
            SequencePool::First => 0..1,
            SequencePool::Mean => 0..n,
        };
        for i in tokens {
            for (c, out) in dx[(b * t + i) * f..(b * t + i + 1) * f].iter_mut().enumerate() {
                *out = match pool {
                    SequencePool::Last | SequencePool::First => g[c],
                    SequencePool::Mean => g[c] / n as f32,
                };
            }
        }
    }
    dx
}
