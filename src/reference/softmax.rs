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
