//! CPU twin of the decoding step's attention (`shaders/attention_decode.wgsl`):
//! the cache row appended, then each query head's softmax over its key/value
//! head's rows, with f64 sums.

use crate::kernels::attention_decode::DecodeDims;

/// At position `at`: writes `k_new` and `v_new` into row `at` of `k_cache`
/// `[T, kv_heads·dk]` and `v_cache` `[T, kv_heads·dv]`, and returns `[heads·dv]`,
/// each query head of `q` `[heads·dk]` attending over rows `0..=at` of its
/// key/value head (`h / (heads / kv_heads)`).
pub fn attention_decode(
    dims: &DecodeDims,
    at: usize,
    q: &[f32],
    (k_new, v_new): (&[f32], &[f32]),
    (k_cache, v_cache): (&mut [f32], &mut [f32]),
) -> Vec<f32> {
    let (kw, vw) = (dims.kv_heads * dims.dk, dims.kv_heads * dims.dv);
    k_cache[at * kw..(at + 1) * kw].copy_from_slice(k_new);
    v_cache[at * vw..(at + 1) * vw].copy_from_slice(v_new);
    let group = dims.heads / dims.kv_heads;
    let mut out = vec![0f32; dims.heads * dims.dv];
    for h in 0..dims.heads {
        let g = h / group;
        let qh = &q[h * dims.dk..(h + 1) * dims.dk];
        let scores: Vec<f64> = (0..=at)
            .map(|j| {
                let kj = &k_cache[j * kw + g * dims.dk..][..dims.dk];
                let dot: f64 = qh.iter().zip(kj).map(|(&a, &b)| a as f64 * b as f64).sum();
                dims.scale as f64 * dot
            })
            .collect();
        let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
        let total: f64 = weights.iter().sum();
        for d in 0..dims.dv {
            let sum: f64 = (0..=at)
                .map(|j| weights[j] * v_cache[j * vw + g * dims.dv + d] as f64)
                .sum();
            out[h * dims.dv + d] = (sum / total) as f32;
        }
    }
    out
}
