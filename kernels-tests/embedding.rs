//! Embedding lookup and its gradient against their CPU twins: repeated ids, ids no
//! token uses, ids outside the table or not whole (zero rows, no gradient), rows
//! wider than a workgroup, folded grids; bad shapes and aliasing refused.

use wgml::Tensor;
use wgml::kernels::embedding::{embedding_backward, embedding_forward};
use wgml::reference;

use crate::common::*;

#[test]
fn embedding_and_its_gradient_match_their_twins() {
    let (_g, ctx) = gpu();
    let _restore = PlanAs(ctx);
    // (tokens, vocab, dim)
    for (k, &(tokens, vocab, dim)) in [(1, 1, 1), (7, 5, 3), (200, 13, 70), (3000, 50, 8)]
        .iter()
        .enumerate()
    {
        let mut r = rng(80 + k as u64);
        let mut ids: Vec<f32> = uniform(&mut r, tokens, 0.0, vocab as f32)
            .iter()
            .map(|v| v.floor().min(vocab as f32 - 1.0))
            .collect();
        // Ids that select nothing: past the table, negative, not whole.
        if tokens >= 7 {
            ids[1] = vocab as f32;
            ids[3] = -1.0;
            ids[5] = 0.5;
        }
        let table = uniform(&mut r, vocab * dim, -1.0, 1.0);
        let dy = uniform(&mut r, tokens * dim, -1.0, 1.0);
        let (mut want_y, mut want_dt) = (vec![0.0; tokens * dim], vec![0.0; vocab * dim]);
        reference::embedding::embedding_forward(&ids, &table, dim, &mut want_y);
        reference::embedding::embedding_backward(&ids, &dy, dim, &mut want_dt);
        for fold in [0, 12] {
            ctx.set_max_groups_per_dim(fold);
            let idt = Tensor::from_f32(ctx, &ids, &[tokens]).unwrap();
            let tt = Tensor::from_f32(ctx, &table, &[vocab, dim]).unwrap();
            let dyt = Tensor::from_f32(ctx, &dy, &[tokens, dim]).unwrap();
            let (y, dt) = (nan_tensor(ctx, &[tokens, dim]), nan_tensor(ctx, &[vocab, dim]));
            ctx.run_all(&[
                embedding_forward(ctx, &idt, &tt, &y).unwrap(),
                embedding_backward(ctx, &idt, &dyt, &dt).unwrap(),
            ])
            .unwrap();
            let what = format!("tokens {tokens} vocab {vocab} dim {dim} fold {fold}");
            assert_close(&format!("{what}: y"), &y.to_f32(ctx).unwrap(), &want_y, 0.0, 0.0);
            assert_close(
                &format!("{what}: dtable"),
                &dt.to_f32(ctx).unwrap(),
                &want_dt,
                1e-6,
                1e-5,
            );
        }
        if tokens >= 7 {
            assert!(
                want_y[dim..2 * dim].iter().all(|&v| v == 0.0),
                "an id past the table gives zeros"
            );
        }
    }
}

#[test]
fn embedding_refuses_bad_shapes_and_aliasing() {
    let (_g, ctx) = gpu();
    let ids = nan_tensor(ctx, &[4]);
    let table = nan_tensor(ctx, &[5, 3]);
    let e = embedding_forward(ctx, &ids, &nan_tensor(ctx, &[15]), &nan_tensor(ctx, &[12]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("[vocab, dim]"), "{e}");
    let e = embedding_forward(ctx, &ids, &table, &nan_tensor(ctx, &[4, 2]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("need 12 values"), "{e}");
    let dy = nan_tensor(ctx, &[4, 3]);
    let e = embedding_backward(ctx, &ids, &dy, &dy).unwrap_err().to_string();
    assert!(e.contains("separate"), "{e}");
}
