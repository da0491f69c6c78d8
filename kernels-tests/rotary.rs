//! Rotary position embedding (`kernels::rotary`) against
//! `wgml::reference::rotary`: odd shapes, both turns, Hugging Face's
//! `rotate_half` formula by hand, the relative-position property, the turn at a
//! decoder's position (`rotary_at`) equal to the turn of that position; and the
//! repeated key and value heads of grouped-query attention
//! (`elementwise::repeat_blocks`, `sum_blocks`).

use wgml::Tensor;
use wgml::kernels::attention_decode::DecodePosition;
use wgml::kernels::elementwise::{repeat_blocks, sum_blocks};
use wgml::kernels::rotary::{Turn, rotary, rotary_at};
use wgml::reference::elementwise as ew_ref;
use wgml::reference::rotary::{angle_table, frequencies};

use crate::common::*;

/// (samples, tokens, heads, head_dim): one pair, odd counts, Llama's 64-value heads.
const SHAPES: [(usize, usize, usize, usize); 4] =
    [(1, 1, 1, 2), (3, 5, 3, 6), (2, 17, 4, 64), (1, 300, 2, 10)];

#[test]
fn rotary_turns_match_their_twin_and_undo_each_other() {
    let (_g, ctx) = gpu();
    for (k, &(samples, tokens, heads, d)) in SHAPES.iter().enumerate() {
        let rows = samples * tokens;
        let x = uniform(&mut rng(200 + k as u64), rows * heads * d, -2.0, 2.0);
        // A start past 0, as a decoder's next tokens have.
        let table = angle_table(&frequencies(10_000.0, d), 3, tokens);
        let t = |v: &[f32], s: &[usize]| Tensor::from_f32(ctx, v, s).unwrap();
        let (xt, tt) = (t(&x, &[rows, heads * d]), t(&table, &[table.len()]));
        let (y, back) = (
            nan_tensor(ctx, &[rows, heads * d]),
            nan_tensor(ctx, &[rows, heads * d]),
        );
        ctx.run(&[
            &rotary(ctx, &xt, &tt, (tokens, heads), Turn::Forward, &y).unwrap(),
            &rotary(ctx, &y, &tt, (tokens, heads), Turn::Back, &back).unwrap(),
        ])
        .unwrap();
        let what = format!("{samples}x{tokens}x{heads}x{d}");
        let want = wgml::reference::rotary::rotary(&x, &table, (tokens, heads), false);
        assert_close(
            &format!("{what} forward"),
            &y.to_f32(ctx).unwrap(),
            &want,
            1e-6,
            1e-5,
        );
        assert_close(
            &format!("{what} back"),
            &back.to_f32(ctx).unwrap(),
            &x,
            1e-5,
            1e-5,
        );
        // Hugging Face's form: x·cos + rotate_half(x)·sin, cos and sin repeated
        // over both halves and rotate_half(x) = [−x2, x1], in f64.
        let half = d / 2;
        for (row, (xr, yr)) in x.chunks(heads * d).zip(want.chunks(heads * d)).enumerate() {
            let pos = (3 + row % tokens) as f64;
            for h in 0..heads {
                for i in 0..d {
                    let j = i % half;
                    let f = 1.0 / 10_000f64.powf((2 * j) as f64 / d as f64);
                    let rotated = if i < half {
                        -xr[h * d + i + half]
                    } else {
                        xr[h * d + i - half]
                    };
                    let hf = xr[h * d + i] as f64 * (pos * f).cos() + rotated as f64 * (pos * f).sin();
                    assert!(
                        (yr[h * d + i] as f64 - hf).abs() < 2e-4,
                        "{what} row {row}: {} vs {hf}",
                        yr[h * d + i]
                    );
                }
            }
        }
    }
}

/// `rotary_at` turns every row by the position the uniform holds, as `rotary`
/// turns a token at that position, both ways; a table of the wrong size is
/// refused.
#[test]
fn rotary_at_turns_rows_by_the_decoders_position() {
    let (_g, ctx) = gpu();
    let (rows, heads, d, positions) = (3, 3, 10, 37);
    let freqs = frequencies(500.0, d);
    let table = angle_table(&freqs, 0, positions);
    let x = uniform(&mut rng(240), rows * heads * d, -2.0, 2.0);
    let t = |v: &[f32], s: &[usize]| Tensor::from_f32(ctx, v, s).unwrap();
    let (xt, tt) = (t(&x, &[rows, heads * d]), t(&table, &[table.len()]));
    let position = DecodePosition::new(ctx, positions).unwrap();
    let (y, back) = (
        nan_tensor(ctx, &[rows, heads * d]),
        nan_tensor(ctx, &[rows, heads * d]),
    );
    let forward = rotary_at(ctx, &xt, &tt, heads, Turn::Forward, &position, &y).unwrap();
    let undo = rotary_at(ctx, &y, &tt, heads, Turn::Back, &position, &back).unwrap();
    for at in [0, 1, 20, positions - 1] {
        position.set(ctx, at).unwrap();
        ctx.run(&[&forward, &undo]).unwrap();
        let want = wgml::reference::rotary::rotary_at(&x, &table, (positions, at), heads, false);
        let one = wgml::reference::rotary::rotary(&x, &angle_table(&freqs, at, 1), (1, heads), false);
        assert_eq!(
            want, one,
            "position {at}: the twin turns as a table of that position alone"
        );
        assert_close(
            &format!("position {at}"),
            &y.to_f32(ctx).unwrap(),
            &want,
            1e-6,
            1e-5,
        );
        assert_close(
            &format!("position {at} back"),
            &back.to_f32(ctx).unwrap(),
            &x,
            1e-5,
            1e-5,
        );
    }
    let short = t(&table[..table.len() - 2 * (d / 2)], &[table.len() - d]);
    let e = rotary_at(ctx, &xt, &short, heads, Turn::Forward, &position, &y)
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(e.contains("37 positions of 5 angles need 370"), "{e}");
}

/// A rotated query's dot product with a rotated key depends on their
/// positions' difference only: the property RoPE exists for.
#[test]
fn rotated_dot_products_depend_on_relative_positions() {
    let d = 8;
    let freqs = frequencies(10_000.0, d);
    let (q, k) = (
        uniform(&mut rng(210), d, -1.0, 1.0),
        uniform(&mut rng(211), d, -1.0, 1.0),
    );
    let at = |v: &[f32], pos: usize| {
        wgml::reference::rotary::rotary(v, &angle_table(&freqs, pos, 1), (1, 1), false)
    };
    let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum::<f64>();
    let near = dot(&at(&q, 5), &at(&k, 2));
    let far = dot(&at(&q, 45), &at(&k, 42));
    assert!((near - far).abs() < 1e-5, "{near} vs {far}");
    assert!((near - dot(&at(&q, 5), &at(&k, 3))).abs() > 1e-3);
}

#[test]
fn repeated_heads_and_their_sums_match_their_twins() {
    let (_g, ctx) = gpu();
    for (k, &(rows, heads, d, times)) in [(1, 1, 1, 1), (5, 2, 3, 4), (33, 4, 64, 2), (7, 1, 5, 7)]
        .iter()
        .enumerate()
    {
        let x = uniform(&mut rng(220 + k as u64), rows * heads * d, -1.0, 1.0);
        let dy = uniform(&mut rng(230 + k as u64), rows * heads * d * times, -1.0, 1.0);
        let (xt, dyt) = (
            Tensor::from_f32(ctx, &x, &[x.len()]).unwrap(),
            Tensor::from_f32(ctx, &dy, &[dy.len()]).unwrap(),
        );
        let (y, dx) = (nan_tensor(ctx, &[dy.len()]), nan_tensor(ctx, &[x.len()]));
        ctx.run(&[
            &repeat_blocks(ctx, &xt, d, times, &y).unwrap(),
            &sum_blocks(ctx, &dyt, d, times, &dx).unwrap(),
        ])
        .unwrap();
        let what = format!("{rows}x{heads}x{d} ×{times}");
        assert_eq!(
            y.to_f32(ctx).unwrap(),
            ew_ref::repeat_blocks(&x, d, times),
            "{what}"
        );
        assert_close(
            &what,
            &dx.to_f32(ctx).unwrap(),
            &ew_ref::sum_blocks(&dy, d, times),
            1e-6,
            1e-6,
        );
        // Head h of the repeated rows is head h / times of x's.
        let got = ew_ref::repeat_blocks(&x, d, times);
        for h in 0..heads * times {
            assert_eq!(
                got[h * d..(h + 1) * d],
                x[(h / times) * d..(h / times + 1) * d],
                "{what}"
            );
        }
    }
    let (x, y) = (nan_tensor(ctx, &[6]), nan_tensor(ctx, &[10]));
    let e = repeat_blocks(ctx, &x, 3, 3, &y).unwrap_err().to_string();
    assert!(e.contains("are not 10"), "{e}");
    let e = rotary(
        ctx,
        &nan_tensor(ctx, &[2, 6]),
        &x,
        (2, 2),
        Turn::Forward,
        &nan_tensor(ctx, &[2, 6]),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("not rows of 2 tokens by 2 heads of an even size"),
        "{e}"
    );
}
