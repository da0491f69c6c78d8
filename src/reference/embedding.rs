//! CPU twins of the embedding kernels (`shaders/embedding.wgsl`).

/// The row token id `id` selects in a table of `vocab` rows, if any.
fn row_of(id: f32, vocab: usize) -> Option<usize> {
    (id >= 0.0 && id < vocab as f32 && id == id.floor()).then_some(id as usize)
}

/// Twin of `embedding_forward`: `y[t, :] = table[ids[t], :]` (zeros for an id that
/// selects no row).
pub fn embedding_forward(ids: &[f32], table: &[f32], dim: usize, y: &mut [f32]) {
    let vocab = table.len() / dim;
    for (row, &id) in y.chunks_mut(dim).zip(ids) {
        match row_of(id, vocab) {
            Some(v) => row.copy_from_slice(&table[v * dim..(v + 1) * dim]),
            None => row.fill(0.0),
        }
    }
}

/// Twin of `embedding_backward`: `dtable[v, :]` the sum of `dy[t, :]` over the
/// tokens whose id is `v` (f64 sums), overwritten.
pub fn embedding_backward(ids: &[f32], dy: &[f32], dim: usize, dtable: &mut [f32]) {
    let vocab = dtable.len() / dim;
    let mut acc = vec![0f64; dtable.len()];
    for (row, &id) in dy.chunks(dim).zip(ids) {
        if let Some(v) = row_of(id, vocab) {
            for (a, &g) in acc[v * dim..(v + 1) * dim].iter_mut().zip(row) {
                *a += g as f64;
            }
        }
    }
    for (o, a) in dtable.iter_mut().zip(acc) {
        *o = a as f32;
    }
}
