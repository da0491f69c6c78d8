//! Embedding lookup and its gradient against their CPU twins: repeated ids, ids no
//! token uses, ids outside the table or not whole (zero rows, no gradient), rows
//! wider than a workgroup, folded grids; vocabularies small enough for the
//! one-dispatch gradient and large enough to sort (one, two and three radix
//! passes, a row holding half the tokens), each summing in token order exactly;
//! bad shapes and aliasing refused.

use wgml::Tensor;
use wgml::kernels::embedding::{
    EmbeddingGradient, embedding_backward, embedding_backward_with, embedding_forward,
};
use wgml::reference;

use crate::common::*;

#[test]
fn embedding_and_its_gradient_match_their_twins() {
    let (_g, ctx) = gpu();
    let _restore = PlanAs(ctx);
    // (tokens, vocab, dim): up to SORT_ABOVE_VOCAB (64) one dispatch; above it
    // a sort of one (65, 255), two (256, 1000) or three (70000) 8-bit passes
    // (rows run to vocab, for ids that select none).
    assert_eq!(wgml::kernels::embedding::SORT_ABOVE_VOCAB, 64);
    for (k, &(tokens, vocab, dim)) in [
        (1, 1, 1),
        (7, 5, 3),
        (200, 13, 70),
        (3000, 50, 8),
        (3000, 64, 5),
        (700, 65, 70),
        (1, 255, 2),
        (513, 256, 3),
        (3000, 1000, 8),
        (1500, 70_000, 2),
    ]
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
        // A frequent token: half the ids are 3 (a long run for one row).
        if tokens >= 700 && vocab > 3 {
            for id in ids.iter_mut().skip(8).step_by(2) {
                *id = 3.0;
            }
        }
        let table = uniform(&mut r, vocab * dim, -1.0, 1.0);
        let dy = uniform(&mut r, tokens * dim, -1.0, 1.0);
        let (mut want_y, mut want_dt) = (vec![0.0; tokens * dim], vec![0.0; vocab * dim]);
        reference::embedding::embedding_forward(&ids, &table, dim, &mut want_y);
        reference::embedding::embedding_backward(&ids, &dy, dim, &mut want_dt);
        // The kernels add in token order in f32: exactly these sums.
        let mut in_order = vec![0f32; vocab * dim];
        for (t, &id) in ids.iter().enumerate() {
            if id >= 0.0 && id < vocab as f32 && id == id.floor() {
                let v = id as usize;
                for d in 0..dim {
                    in_order[v * dim + d] += dy[t * dim + d];
                }
            }
        }
        // Folded to 12 per axis where 12³ workgroups cover a row each.
        for fold in [0, 12].into_iter().filter(|&f| f == 0 || vocab <= 12 * 12 * 12) {
            ctx.set_max_groups_per_dim(fold);
            let idt = Tensor::from_f32(ctx, &ids, &[tokens]).unwrap();
            let tt = Tensor::from_f32(ctx, &table, &[vocab, dim]).unwrap();
            let dyt = Tensor::from_f32(ctx, &dy, &[tokens, dim]).unwrap();
            let (y, dt) = (nan_tensor(ctx, &[tokens, dim]), nan_tensor(ctx, &[vocab, dim]));
            let mut dispatches = vec![embedding_forward(ctx, &idt, &tt, &y).unwrap()];
            dispatches.extend(embedding_backward(ctx, &idt, &dyt, &dt).unwrap());
            ctx.run_all(&dispatches).unwrap();
            let what = format!("tokens {tokens} vocab {vocab} dim {dim} fold {fold}");
            assert_close(&format!("{what}: y"), &y.to_f32(ctx).unwrap(), &want_y, 0.0, 0.0);
            // The other way of finding each row's tokens gives the same bits.
            let other = match EmbeddingGradient::for_vocab(vocab) {
                EmbeddingGradient::Scan => EmbeddingGradient::Sorted,
                EmbeddingGradient::Sorted => EmbeddingGradient::Scan,
            };
            let dt2 = nan_tensor(ctx, &[vocab, dim]);
            ctx.run_all(&embedding_backward_with(ctx, &idt, &dyt, &dt2, other).unwrap())
                .unwrap();
            assert_close(
                &format!("{what}: dtable by {}", other.name()),
                &dt2.to_f32(ctx).unwrap(),
                &in_order,
                0.0,
                0.0,
            );
            let got = dt.to_f32(ctx).unwrap();
            // Against the f64 twin, f32 rounding over a run of up to 1,500 tokens;
            // against the same sums in f32 token order, exactly.
            assert_close(&format!("{what}: dtable"), &got, &want_dt, 1e-4, 1e-5);
            assert_close(
                &format!("{what}: dtable in token order"),
                &got,
                &in_order,
                0.0,
                0.0,
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
