//! The decoding step's attention (`kernels::attention_decode`) against
//! `wgml::reference::attention_decode`: step after step over odd head sizes,
//! grouped key/value heads, several tiles of keys (the online softmax's
//! rescaling), heads up to 256 values; the cache rows it appends; and the
//! errors of shapes it does not take.

use wgml::kernels::attention_decode::{DecodeDims, DecodePosition, attention_decode};

use crate::common::*;

#[test]
fn decoding_attention_matches_its_twin_step_after_step() {
    let (_g, ctx) = gpu();
    // (heads, kv_heads, dk, dv, positions): one value; a group of two over
    // two tiles; SmolLM2's 9 heads sharing 3 of 64 values over three tiles of 58;
    // Llama 3's 128-value heads (tiles of 29); 256/200-value heads (tiles of 14,
    // four output values per invocation); values wider than keys. Each also
    // split over workgroups: splits that begin empty and fill as the positions
    // pass them, and as many splits as positions (the long caches below give
    // chunks of several tiles).
    let shapes = [
        (1, 1, 1, 1, 3, 3),
        (4, 2, 8, 6, 70, 2),
        (9, 3, 64, 64, 130, 3),
        (2, 1, 128, 128, 40, 7),
        (3, 3, 256, 200, 20, 4),
        (6, 2, 5, 130, 9, 9),
    ];
    for (s, &(heads, kv_heads, dk, dv, t, splits)) in shapes.iter().enumerate() {
        for splits in [1, splits] {
            let dims = DecodeDims::new(heads, kv_heads, (dk, dv)).with_splits(splits);
            let what = format!("{dims:?} over {t} positions");
            let (kw, vw) = (kv_heads * dk, kv_heads * dv);
            let position = DecodePosition::new(ctx, t).unwrap();
            let (k_cache, v_cache) = (nan_tensor(ctx, &[t, kw]), nan_tensor(ctx, &[t, vw]));
            let (mut k_want, mut v_want) = (vec![f32::NAN; t * kw], vec![f32::NAN; t * vw]);
            let q = nan_tensor(ctx, &[heads * dk]);
            let (k_new, v_new) = (nan_tensor(ctx, &[kw]), nan_tensor(ctx, &[vw]));
            let out = nan_tensor(ctx, &[heads * dv]);
            let step = attention_decode(
                ctx,
                &dims,
                &q,
                (&k_new, &v_new),
                (&k_cache, &v_cache),
                &position,
                &out,
            )
            .unwrap();
            let mut r = rng(600 + s as u64);
            for at in 0..t {
                // Keys grow with the position, so later tiles raise the running max.
                // (Scores reach about ±15: f32 rounds them to about 2e-6, which
                // bounds the outputs' absolute error, values being at most 1.)
                let grow = 1.0 + at as f32 / 40.0;
                let qv = uniform(&mut r, heads * dk, -1.5, 1.5);
                let kv: Vec<f32> = uniform(&mut r, kw, -1.5, 1.5).iter().map(|x| x * grow).collect();
                let vv = uniform(&mut r, vw, -1.0, 1.0);
                q.write(ctx, &qv).unwrap();
                k_new.write(ctx, &kv).unwrap();
                v_new.write(ctx, &vv).unwrap();
                position.set(ctx, at).unwrap();
                ctx.run(&step.iter().collect::<Vec<_>>()).unwrap();
                let want = wgml::reference::attention_decode::attention_decode(
                    &dims,
                    at,
                    &qv,
                    (&kv, &vv),
                    (&mut k_want, &mut v_want),
                );
                assert_close(
                    &format!("{what}, position {at}"),
                    &out.to_f32(ctx).unwrap(),
                    &want,
                    4e-6,
                    1e-5,
                );
            }
            // The appended rows are the keys and values, bit for bit; every row written.
            assert_eq!(k_cache.to_f32(ctx).unwrap(), k_want, "{what}: keys");
            assert_eq!(v_cache.to_f32(ctx).unwrap(), v_want, "{what}: values");
        }
    }
}

/// Deep into a long cache: positions 1,499 of 1,500 over 128-value heads (52
/// tiles of 29 keys) and 2,047 of 2,048 over 64-value heads, the earlier rows
/// written straight into the caches; whole, and split in 8 (chunks of several
/// tiles) as a GPU runs them.
#[test]
fn decoding_attention_reads_long_caches() {
    let (_g, ctx) = gpu();
    let cases = [(4, 2, 128, 1500, 1), (4, 2, 128, 1500, 8), (9, 3, 64, 2048, 8)];
    for (s, &(heads, kv_heads, d, t, splits)) in cases.iter().enumerate() {
        let dims = DecodeDims::new(heads, kv_heads, (d, d)).with_splits(splits);
        let w = kv_heads * d;
        let mut r = rng(620 + s as u64);
        let (mut kc, mut vc) = (
            uniform(&mut r, t * w, -1.5, 1.5),
            uniform(&mut r, t * w, -1.0, 1.0),
        );
        let (qv, kv, vv) = (
            uniform(&mut r, heads * d, -1.5, 1.5),
            uniform(&mut r, w, -1.5, 1.5),
            uniform(&mut r, w, -1.0, 1.0),
        );
        let tensor = |v: &[f32]| wgml::Tensor::from_f32(ctx, v, &[v.len()]).unwrap();
        let (k_cache, v_cache) = (tensor(&kc), tensor(&vc));
        let (q, k_new, v_new) = (tensor(&qv), tensor(&kv), tensor(&vv));
        let out = nan_tensor(ctx, &[heads * d]);
        let position = DecodePosition::new(ctx, t).unwrap();
        position.set(ctx, t - 1).unwrap();
        let step = attention_decode(
            ctx,
            &dims,
            &q,
            (&k_new, &v_new),
            (&k_cache, &v_cache),
            &position,
            &out,
        )
        .unwrap();
        ctx.run(&step.iter().collect::<Vec<_>>()).unwrap();
        let want = wgml::reference::attention_decode::attention_decode(
            &dims,
            t - 1,
            &qv,
            (&kv, &vv),
            (&mut kc, &mut vc),
        );
        assert_close(
            &format!("{dims:?} at {}", t - 1),
            &out.to_f32(ctx).unwrap(),
            &want,
            4e-6,
            1e-5,
        );
        assert_eq!(k_cache.to_f32(ctx).unwrap(), kc);
    }
}

/// Query heads of one group see the same keys; a query equal to another head's
/// gives that head's output only when they share their key/value head.
#[test]
fn grouped_heads_read_their_own_key_value_head() {
    let dims = DecodeDims::new(4, 2, (3, 2));
    let q = [0.5, -1.0, 2.0].repeat(4);
    let k: Vec<f32> = (0..3 * 6).map(|i| (i as f32 * 0.37).sin()).collect();
    let v: Vec<f32> = (0..3 * 4).map(|i| (i as f32 * 0.61).cos()).collect();
    let (mut kc, mut vc) = (k.clone(), v.clone());
    let out = wgml::reference::attention_decode::attention_decode(
        &dims,
        2,
        &q,
        (&k[12..], &v[8..]),
        (&mut kc, &mut vc),
    );
    assert_eq!(out[0..2], out[2..4], "heads 0 and 1 share key/value head 0");
    assert_eq!(out[4..6], out[6..8], "heads 2 and 3 share key/value head 1");
    assert!((out[0] - out[4]).abs() > 1e-3, "{out:?}");
}

#[test]
fn decoding_attention_refuses_what_it_cannot_take() {
    let (_g, ctx) = gpu();
    let position = DecodePosition::new(ctx, 4).unwrap();
    let e = position.set(ctx, 4).unwrap_err().to_string();
    assert!(
        e.contains("position 4 is past") && e.contains("4 positions"),
        "{e}"
    );
    let t = |n: usize| nan_tensor(ctx, &[n]);
    let run = |dims: DecodeDims, caches: (usize, usize)| {
        let (kw, vw) = (dims.kv_heads * dims.dk, dims.kv_heads * dims.dv);
        attention_decode(
            ctx,
            &dims,
            &t(dims.heads * dims.dk),
            (&t(kw), &t(vw)),
            (&t(caches.0), &t(caches.1)),
            &position,
            &t(dims.heads * dims.dv),
        )
        .map(|_| ())
        .unwrap_err()
        .to_string()
    };
    let e = run(DecodeDims::new(3, 2, (4, 4)), (32, 32));
    assert!(e.contains("multiple of kv_heads"), "{e}");
    let e = run(DecodeDims::new(1, 1, (300, 4)), (1200, 16));
    assert!(e.contains("exceed the decode kernel's 256"), "{e}");
    let e = run(DecodeDims::new(2, 1, (4, 4)), (12, 16));
    assert!(e.contains("k_cache has 12 elements"), "{e}");
    for splits in [0, 5] {
        let e = run(DecodeDims::new(1, 1, (4, 4)).with_splits(splits), (16, 16));
        assert!(
            e.contains(&format!("{splits} splits of a cache of 4 positions")),
            "{e}"
        );
    }
    // The caches are written: one may not be the other.
    let kc = t(16);
    let e = attention_decode(
        ctx,
        &DecodeDims::new(1, 1, (4, 4)),
        &t(4),
        (&t(4), &t(4)),
        (&kc, &kc),
        &position,
        &t(4),
    )
    .map(|_| ())
    .unwrap_err()
    .to_string();
    assert!(e.contains("k_cache shares a buffer"), "{e}");
}
