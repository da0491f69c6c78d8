//! CPU twins of the reduce kernels (`shaders/reduce.wgsl`), f64 accumulation.

/// `x` viewed as `[a, c, b]`: `out[j] (+)= Σ_{i,k} x[i, j, k]`.
pub fn channel_sum(x: &[f32], a: usize, c: usize, b: usize, out: &mut [f32], accumulate: bool) {
    assert_eq!(x.len(), a * c * b);
    assert_eq!(out.len(), c);
    for (j, o) in out.iter_mut().enumerate() {
        let mut s = 0.0f64;
        for i in 0..a {
            let row = &x[(i * c + j) * b..(i * c + j + 1) * b];
            s += row.iter().map(|&v| v as f64).sum::<f64>();
        }
        *o = if accumulate {
            (*o as f64 + s) as f32
        } else {
            s as f32
        };
    }
}

/// `x` viewed as `[outer, len, inner]`: `out[o, i] = Σ_l x[o, l, i]`.
pub fn sum_axis(x: &[f32], outer: usize, len: usize, inner: usize, out: &mut [f32]) {
    assert_eq!(x.len(), outer * len * inner);
    assert_eq!(out.len(), outer * inner);
    for o in 0..outer {
        for i in 0..inner {
            let s: f64 = (0..len).map(|l| x[(o * len + l) * inner + i] as f64).sum();
            out[o * inner + i] = s as f32;
        }
    }
}

/// Mean of every element (`x` non-empty).
pub fn mean(x: &[f32]) -> f32 {
    assert!(!x.is_empty());
    (x.iter().map(|&v| v as f64).sum::<f64>() / x.len() as f64) as f32
}

/// `acc += Σ x`.
pub fn accumulate_sum(x: &[f32], acc: &mut f32) {
    *acc = (*acc as f64 + x.iter().map(|&v| v as f64).sum::<f64>()) as f32;
}

/// First index of the largest value, NaN entries ignored; 0 for an all-NaN row.
pub fn argmax(row: &[f32]) -> u32 {
    let mut best: Option<(usize, f32)> = None;
    for (j, &v) in row.iter().enumerate() {
        if v.is_nan() {
            continue;
        }
        if best.is_none_or(|(_, b)| v > b) {
            best = Some((j, v));
        }
    }
    best.map_or(0, |(j, _)| j as u32)
}

/// `out[r] = argmax(x[r, ..])` for `x` of shape `[out.len(), cols]`.
pub fn argmax_rows(x: &[f32], cols: usize, out: &mut [u32]) {
    assert_eq!(x.len(), out.len() * cols);
    for (r, o) in out.iter_mut().enumerate() {
        *o = argmax(&x[r * cols..(r + 1) * cols]);
    }
}

/// `acc += #rows with argmax == label` (a label `≥ cols` never matches).
pub fn count_correct(logits: &[f32], cols: usize, labels: &[u32], acc: &mut f32) {
    assert_eq!(logits.len(), labels.len() * cols);
    let hits = labels
        .iter()
        .enumerate()
        .filter(|&(r, &l)| argmax(&logits[r * cols..(r + 1) * cols]) == l)
        .count();
    *acc = (*acc as f64 + hits as f64) as f32;
}

/// Adds to `acc` the number of rows whose label's logit has fewer than `k` logits
/// of its row strictly above it (twin of `kernels::reduce::count_in_top_k`; a
/// label `≥ cols` or a NaN logit never counts).
pub fn count_in_top_k(logits: &[f32], cols: usize, labels: &[u32], k: usize, acc: &mut f32) {
    assert_eq!(logits.len(), labels.len() * cols);
    let hits = labels
        .iter()
        .enumerate()
        .filter(|&(r, &l)| {
            let row = &logits[r * cols..(r + 1) * cols];
            row.get(l as usize)
                .is_some_and(|&v| !v.is_nan() && row.iter().filter(|&&x| x > v).count() < k)
        })
        .count();
    *acc = (*acc as f64 + hits as f64) as f32;
}

/// Twin of `count_correct_sets`: `acc += #rows (of `cols` logits) whose every
/// (logit > 0) == (target > 0.5)`.
pub fn count_correct_sets(logits: &[f32], targets: &[f32], cols: usize, acc: &mut f32) {
    assert_eq!(logits.len(), targets.len());
    let hits = logits
        .chunks(cols.max(1))
        .zip(targets.chunks(cols.max(1)))
        .filter(|(x, t)| x.iter().zip(*t).all(|(&x, &t)| (x > 0.0) == (t > 0.5)))
        .count();
    *acc = (*acc as f64 + hits as f64) as f32;
}

/// `acc += #rows with (logit > 0) == (target > 0.5)`.
pub fn count_correct_binary(logits: &[f32], targets: &[f32], acc: &mut f32) {
    assert_eq!(logits.len(), targets.len());
    let hits = logits
        .iter()
        .zip(targets)
        .filter(|&(&x, &t)| (x > 0.0) == (t > 0.5))
        .count();
    *acc = (*acc as f64 + hits as f64) as f32;
}
