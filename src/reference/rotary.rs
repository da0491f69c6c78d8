//! CPU twin of the rotary position embedding kernel (`shaders/rotary.wgsl`),
//! and the angle table both read.

/// Llama's rotary frequencies for heads of `head_dim` values: `1 / θ^(2j/d)`
/// for each pair `j < d/2`, in f32 as Hugging Face's `_compute_default_rope_parameters`
/// computes them (the exponent, the power and the quotient in f32).
pub fn frequencies(theta: f64, head_dim: usize) -> Vec<f32> {
    (0..head_dim / 2)
        .map(|j| {
            let exponent = (2 * j) as f32 / head_dim as f32;
            1.0 / (theta as f32).powf(exponent)
        })
        .collect()
}

/// The table the kernel reads for positions `start .. start + tokens`: the
/// cosines `[tokens, half]` of the angles `position·freq[j]`, then their sines.
/// Each angle is rounded to f32 first, as Hugging Face's f32 product is, and its
/// cosine and sine taken in f64.
pub fn angle_table(freqs: &[f32], start: usize, tokens: usize) -> Vec<f32> {
    let angle = |t: usize, f: f32| (((start + t) as f32) * f) as f64;
    let mut table = Vec::with_capacity(2 * tokens * freqs.len());
    for t in 0..tokens {
        table.extend(freqs.iter().map(|&f| angle(t, f).cos() as f32));
    }
    for t in 0..tokens {
        table.extend(freqs.iter().map(|&f| angle(t, f).sin() as f32));
    }
    table
}

/// Twin of `rotary`: `x` `[rows, heads·2·half]`, rows of `tokens` tokens, each
/// head's halves rotated by the table's angles (`back`: by minus them).
pub fn rotary(x: &[f32], table: &[f32], (tokens, heads): (usize, usize), back: bool) -> Vec<f32> {
    let half = table.len() / (2 * tokens);
    let width = heads * 2 * half;
    let sign = if back { -1.0 } else { 1.0 };
    let mut y = x.to_vec();
    for (row, (xr, yr)) in x.chunks(width).zip(y.chunks_mut(width)).enumerate() {
        let t = row % tokens;
        for h in 0..heads {
            for j in 0..half {
                let (c, s) = (
                    table[t * half + j] as f64,
                    sign * table[(tokens + t) * half + j] as f64,
                );
                let (i1, i2) = (h * 2 * half + j, h * 2 * half + half + j);
                let (x1, x2) = (xr[i1] as f64, xr[i2] as f64);
                yr[i1] = (x1 * c - x2 * s) as f32;
                yr[i2] = (x2 * c + x1 * s) as f32;
            }
        }
    }
    y
}

/// [`rotary`] with every row of `x` turned by the angles of table position `at`
/// (the decoder's position; `kernels::rotary::rotary_at`), `table` holding
/// `positions` positions' cosines, then their sines.
pub fn rotary_at(
    x: &[f32],
    table: &[f32],
    (positions, at): (usize, usize),
    heads: usize,
    back: bool,
) -> Vec<f32> {
    let half = table.len() / (2 * positions);
    let row = [
        &table[at * half..(at + 1) * half],
        &table[(positions + at) * half..(positions + at + 1) * half],
    ]
    .concat();
    rotary(x, &row, (1, heads), back)
}
