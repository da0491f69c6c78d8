//! CPU twins of the softmax kernels (`shaders/softmax.wgsl`), f64 arithmetic.

/// `(max, log Σ exp(x - max))` of one row (non-empty).
pub fn row_max_logsumexp(row: &[f32]) -> (f64, f64) {
    let m = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
    let s: f64 = row.iter().map(|&v| (v as f64 - m).exp()).sum();
    (m, s.ln())
}

/// `y[r, :] = softmax(x[r, :])` for rows of `cols` elements.
pub fn softmax(x: &[f32], cols: usize, y: &mut [f32]) {
    assert_eq!(x.len(), y.len());
    for (xr, yr) in x.chunks(cols).zip(y.chunks_mut(cols)) {
        let (m, lse) = row_max_logsumexp(xr);
        for (o, &v) in yr.iter_mut().zip(xr) {
            *o = (v as f64 - m - lse).exp() as f32;
        }
    }
}

/// `y[r, :] = log_softmax(x[r, :])` for rows of `cols` elements.
pub fn log_softmax(x: &[f32], cols: usize, y: &mut [f32]) {
    assert_eq!(x.len(), y.len());
    for (xr, yr) in x.chunks(cols).zip(y.chunks_mut(cols)) {
        let (m, lse) = row_max_logsumexp(xr);
        for (o, &v) in yr.iter_mut().zip(xr) {
            *o = (v as f64 - m - lse) as f32;
        }
    }
}

/// `s[r, :] = softmax(scale·s[r, :])` in place for rows of `cols`; with
/// `causal = Some(T)`, row `r` keeps columns `j ≤ r mod T`, and with `lengths =
/// Some((l, R))` (rows of `R` per sample), columns `j < l[r / R]`; the rest become
/// 0 (a row keeping none is all 0).
pub fn softmax_attention(
    s: &mut [f32],
    cols: usize,
    scale: f32,
    causal: Option<usize>,
    lengths: Option<(&[f32], usize)>,
) {
    for (r, row) in s.chunks_mut(cols).enumerate() {
        let keep = |j: usize| {
            causal.is_none_or(|t| j <= r % t)
                && lengths.is_none_or(|(l, rows)| j < l[r / rows].max(0.0) as usize)
        };
        let scaled: Vec<f64> = row.iter().map(|&v| scale as f64 * v as f64).collect();
        let m = (0..cols)
            .filter(|&j| keep(j))
            .fold(f64::NEG_INFINITY, |m, j| m.max(scaled[j]));
        let sum: f64 = (0..cols)
            .filter(|&j| keep(j))
            .map(|j| (scaled[j] - m).exp())
            .sum();
        for (j, o) in row.iter_mut().enumerate() {
            *o = if keep(j) {
                ((scaled[j] - m).exp() / sum) as f32
            } else {
                0.0
            };
        }
    }
}

/// `d[r, j] = scale·p[r, j]·(d[r, j] − Σ_k d[r, k]·p[r, k])` in place, rows of `cols`.
pub fn softmax_backward_rows(p: &[f32], d: &mut [f32], cols: usize, scale: f32) {
    for (pr, dr) in p.chunks(cols).zip(d.chunks_mut(cols)) {
        let dot: f64 = pr.iter().zip(dr.iter()).map(|(&a, &b)| a as f64 * b as f64).sum();
        for (o, &pv) in dr.iter_mut().zip(pr) {
            *o = (scale as f64 * pv as f64 * (*o as f64 - dot)) as f32;
        }
    }
}
