//! `wgml selftest`: every kernel family against its CPU twin on the chosen adapter
//! at a few shapes. The first thing to run on a new GPU or driver.
//!
//! The error of a check is `max |gpu − ref| / max |ref|` over its outputs (so
//! tiny reference values do not dominate); a check passes below [`TOLERANCE`].

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::error::Result;
use crate::gpu::{Context, DType, Dispatch, Tensor};
use crate::kernels::attention::{self, AttentionDims, AttentionGrads};
use crate::kernels::batchnorm::{self, BatchNormDesc};
use crate::kernels::conv::{Conv2dDesc, Padding};
use crate::kernels::conv_pool::{self, ConvPoolDesc};
use crate::kernels::embedding;
use crate::kernels::matmul::{Activation, MatmulDesc};
use crate::kernels::matvec::{self, MatvecVariant};
use crate::kernels::optim::{Optimizer, StepUniform};
use crate::kernels::pool::Pool2dDesc;
use crate::kernels::sequence::{self, SequenceDims, SequencePool};
use crate::kernels::swap_axes::{self, SwapView};
use crate::kernels::{conv, elementwise, layer_norm, loss, matmul, optim, pool, reduce, softmax};
use crate::reference as r;

/// Largest normalised error a check may have.
pub const TOLERANCE: f64 = 1e-4;

/// One line of the self-test table.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Check {
    /// What was checked (kernel and variant).
    pub kernel: String,
    /// The problem size as printed, e.g. `MxNxK` for a product.
    pub shape: String,
    /// Largest normalised error over the outputs.
    pub error: f64,
    /// Whether the error is below [`TOLERANCE`].
    pub pass: bool,
}

fn error(gpu: &[f32], want: &[f32]) -> f64 {
    let scale = want.iter().fold(0f64, |m, &v| m.max(v.abs() as f64)).max(1e-30);
    let worst = gpu
        .iter()
        .zip(want)
        .map(|(&g, &w)| {
            let e = (g as f64 - w as f64).abs();
            if e.is_nan() { f64::INFINITY } else { e }
        })
        .fold(0f64, f64::max);
    if gpu.len() != want.len() {
        f64::INFINITY
    } else {
        worst / scale
    }
}

struct Runner<'a> {
    ctx: &'a Context,
    rng: StdRng,
    checks: Vec<Check>,
}

impl Runner<'_> {
    fn data(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.rng.random_range(-1.0f32..1.0)).collect()
    }

    fn upload(&self, v: &[f32], shape: &[usize]) -> Result<Tensor> {
        Tensor::from_f32(self.ctx, v, shape)
    }

    /// NaN-filled output so an unwritten element fails.
    fn out(&self, shape: &[usize]) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        Tensor::from_f32(self.ctx, &vec![f32::NAN; n], shape)
    }

    fn run(&self, d: &[Dispatch]) -> Result<()> {
        self.ctx.run(&d.iter().collect::<Vec<_>>())
    }

    fn record(&mut self, kernel: &str, shape: String, gpu: &[(Vec<f32>, Vec<f32>)]) {
        let err = gpu.iter().map(|(g, w)| error(g, w)).fold(0f64, f64::max);
        self.checks.push(Check {
            kernel: kernel.to_string(),
            shape,
            error: err,
            pass: err < TOLERANCE,
        });
    }

    fn matmul(&mut self, m: usize, n: usize, k: usize, ta: bool, tb: bool, act: Activation) -> Result<()> {
        let mut d = MatmulDesc::new(m, n, k);
        d.trans_a = ta;
        d.trans_b = tb;
        d.activation = act;
        self.matmul_desc(d)
    }

    /// A product with a bias and `d`'s activation, as `d` describes it (variant and
    /// split-K factor included).
    /// A tensor-core variant gets inputs that are f16 values already, so its
    /// own rounding is exact and only the order of f32 sums differs from its twin.
    fn matmul_desc(&mut self, d: MatmulDesc) -> Result<()> {
        let (m, n, k, act) = (d.m, d.n, d.k, d.activation);
        let (mut a, mut b, bias) = (self.data(m * k), self.data(k * n), self.data(n));
        let coop = d.variant.is_some_and(|v| v.is_coop());
        if coop {
            for x in a.iter_mut().chain(b.iter_mut()) {
                *x = half::f16::from_f32(*x).to_f32();
            }
        }
        let c = self.out(&[m, n])?;
        let (at, bt, biast) = (
            self.upload(&a, &[m * k])?,
            self.upload(&b, &[k * n])?,
            self.upload(&bias, &[n])?,
        );
        self.run(&matmul::matmul(self.ctx, &d, &at, &bt, Some(&biast), &c)?)?;
        let mut want = vec![0.0; m * n];
        // (For a tensor-core variant the inputs are f16 values, so the twins agree.)
        r::matmul::matmul(&d, &a, &b, Some(&bias), &mut want)?;
        let layout = d.layout_name();
        let split = match d.split_k {
            Some(s) if s > 1 => format!(" split-K {s}"),
            _ => String::new(),
        };
        let variant = match d.variant {
            Some(v) if coop => format!(" {} (tensor cores)", v.name()),
            _ => String::new(),
        };
        self.record(
            &format!("{layout} +bias {}{split}{variant}", act.name()),
            format!("{m}x{n}x{k}"),
            &[(c.to_f32(self.ctx)?, want)],
        );
        Ok(())
    }

    fn activations(&mut self, n: usize) -> Result<()> {
        for act in [Activation::Relu, Activation::Sigmoid, Activation::Tanh] {
            let (x, dy) = (self.data(n), self.data(n));
            let (xt, dyt) = (self.upload(&x, &[n])?, self.upload(&dy, &[n])?);
            let (y, dx) = (self.out(&[n])?, self.out(&[n])?);
            self.run(&[elementwise::activation_forward(self.ctx, act, &xt, &y)?])?;
            self.run(&[elementwise::activation_backward(self.ctx, act, &y, &dyt, &dx)?])?;
            let mut wy = vec![0.0; n];
            r::elementwise::activation_forward(act, &x, &mut wy);
            let mut wdx = vec![0.0; n];
            r::elementwise::activation_backward(act, &wy, &dy, &mut wdx);
            self.record(
                &format!("{} forward+backward", act.name()),
                format!("{n}"),
                &[(y.to_f32(self.ctx)?, wy), (dx.to_f32(self.ctx)?, wdx)],
            );
        }
        // GELU, both forms, and SiLU: their own kernels, the gradient from the
        // input; over ±6.
        let x: Vec<f32> = self.data(n).iter().map(|v| 6.0 * v).collect();
        let dy = self.data(n);
        let (xt, dyt) = (self.upload(&x, &[n])?, self.upload(&dy, &[n])?);
        for (form, name) in [
            (elementwise::GatedUnit::Gelu, "gelu forward+backward"),
            (elementwise::GatedUnit::GeluTanh, "gelu (tanh) forward+backward"),
            (elementwise::GatedUnit::Silu, "silu forward+backward"),
        ] {
            let (y, dx) = (self.out(&[n])?, self.out(&[n])?);
            self.run(&[
                elementwise::gated_unit(self.ctx, &xt, &y, form)?,
                elementwise::gated_unit_backward(self.ctx, &dyt, &xt, &dx, form)?,
            ])?;
            let (mut wy, mut wdx) = (vec![0.0; n], vec![0.0; n]);
            r::elementwise::gated_unit(&x, &mut wy, form);
            r::elementwise::gated_unit_backward(&dy, &x, &mut wdx, form);
            self.record(
                name,
                format!("{n}"),
                &[(y.to_f32(self.ctx)?, wy), (dx.to_f32(self.ctx)?, wdx)],
            );
        }
        // matvec, both variants: two rows through a Dense weight, bias and tanh.
        let (m, n, k) = (2, 200, 77);
        let (x, w, b) = (self.data(m * k), self.data(n * k), self.data(n));
        let (xt, wt, bt) = (
            self.upload(&x, &[m, k])?,
            self.upload(&w, &[n, k])?,
            self.upload(&b, &[n])?,
        );
        for variant in MatvecVariant::ALL {
            let y = self.out(&[m, n])?;
            self.run(&[matvec::matvec(
                self.ctx,
                variant,
                &xt,
                &wt,
                Some(&bt),
                Activation::Tanh,
                &y,
            )?])?;
            let want = r::matvec::matvec(&x, &w, Some(&b), Activation::Tanh, n, k);
            self.record(
                &format!("matvec ({variant:?})"),
                format!("{m}x{n}x{k}"),
                &[(y.to_f32(self.ctx)?, want)],
            );
        }
        Ok(())
    }

    fn softmax_and_losses(&mut self, rows: usize, cols: usize) -> Result<()> {
        let x: Vec<f32> = self.data(rows * cols).iter().map(|v| v * 8.0).collect();
        let xt = self.upload(&x, &[rows, cols])?;
        let y = self.out(&[rows, cols])?;
        self.run(&[softmax::softmax(self.ctx, &xt, &y)?])?;
        let mut want = vec![0.0; rows * cols];
        r::softmax::softmax(&x, cols, &mut want);
        self.record(
            "softmax",
            format!("{rows}x{cols}"),
            &[(y.to_f32(self.ctx)?, want)],
        );

        let labels: Vec<u32> = (0..rows).map(|_| self.rng.random_range(0..cols as u32)).collect();
        let lt = Tensor::from_u32(self.ctx, &labels, &[rows])?;
        let (l, g) = (self.out(&[rows])?, self.out(&[rows, cols])?);
        let scale = 1.0 / rows as f32;
        self.run(&[loss::softmax_cross_entropy(
            self.ctx,
            &xt,
            &lt,
            &l,
            Some(&g),
            scale,
        )?])?;
        let (mut wl, mut wg) = (vec![0.0; rows], vec![0.0; rows * cols]);
        r::loss::softmax_cross_entropy(&x, cols, &labels, &mut wl, Some(&mut wg), scale);
        self.record(
            "softmax cross-entropy + grad",
            format!("{rows}x{cols}"),
            &[(l.to_f32(self.ctx)?, wl), (g.to_f32(self.ctx)?, wg)],
        );

        let t: Vec<f32> = (0..rows * cols)
            .map(|_| self.rng.random_range(0.0f32..1.0))
            .collect();
        let tt = self.upload(&t, &[rows, cols])?;
        for name in ["binary cross-entropy + grad", "mean squared error + grad"] {
            let (l, g) = (self.out(&[rows])?, self.out(&[rows, cols])?);
            let (mut wl, mut wg) = (vec![0.0; rows], vec![0.0; rows * cols]);
            if name.starts_with("binary") {
                self.run(&[loss::bce_with_logits(self.ctx, &xt, &tt, &l, Some(&g), scale)?])?;
                r::loss::bce_with_logits(&x, &t, cols, &mut wl, Some(&mut wg), scale);
            } else {
                self.run(&[loss::mse(self.ctx, &xt, &tt, &l, Some(&g), scale)?])?;
                r::loss::mse(&x, &t, cols, &mut wl, Some(&mut wg), scale);
            }
            self.record(
                name,
                format!("{rows}x{cols}"),
                &[(l.to_f32(self.ctx)?, wl), (g.to_f32(self.ctx)?, wg)],
            );
        }
        let out = self.out(&[cols])?;
        self.run(&[reduce::channel_sum(self.ctx, &xt, rows, cols, 1, &out, false)?])?;
        let mut want = vec![0.0; cols];
        r::reduce::channel_sum(&x, rows, cols, 1, &mut want, false);
        self.record(
            "channel sum",
            format!("{rows}x{cols}"),
            &[(out.to_f32(self.ctx)?, want)],
        );
        Ok(())
    }

    /// Layer normalization forward and backward (its input gradient) over `rows`
    /// rows of `cols`.
    fn layer_norm(&mut self, rows: usize, cols: usize) -> Result<()> {
        let (x, dy) = (self.data(rows * cols), self.data(rows * cols));
        let gamma: Vec<f32> = self.data(cols).iter().map(|v| 1.0 + 0.5 * v).collect();
        let beta = self.data(cols);
        let eps = 1e-3;
        let (xt, gt, bt, dyt) = (
            self.upload(&x, &[rows, cols])?,
            self.upload(&gamma, &[cols])?,
            self.upload(&beta, &[cols])?,
            self.upload(&dy, &[rows, cols])?,
        );
        let (y, stats) = (self.out(&[rows, cols])?, self.out(&[rows, 2])?);
        let (dx, dyx) = (self.out(&[rows, cols])?, self.out(&[rows, cols])?);
        self.run(&[
            layer_norm::layer_norm_forward(self.ctx, &xt, &gt, &bt, eps, &y, &stats)?,
            layer_norm::layer_norm_backward(self.ctx, &xt, &gt, &stats, eps, &dyt, &dx, &dyx)?,
        ])?;
        let (mut wy, mut ws) = (vec![0.0; rows * cols], vec![0.0; 2 * rows]);
        r::layer_norm::layer_norm_forward(&x, &gamma, &beta, eps, &mut wy, &mut ws);
        let (mut wdx, mut wg, mut wb) = (vec![0.0; rows * cols], vec![0.0; cols], vec![0.0; cols]);
        r::layer_norm::layer_norm_backward(&x, &gamma, eps, &dy, &mut wdx, &mut wg, &mut wb);
        self.record(
            "layer norm + input gradient",
            format!("{rows}x{cols}"),
            &[(y.to_f32(self.ctx)?, wy), (dx.to_f32(self.ctx)?, wdx)],
        );
        // Its uncentred form, RMS normalization (Llama's).
        let (y, stats) = (self.out(&[rows, cols])?, self.out(&[rows, 2])?);
        let (dx, dyx) = (self.out(&[rows, cols])?, self.out(&[rows, cols])?);
        self.run(&[
            layer_norm::rms_norm_forward(self.ctx, &xt, &gt, eps, &y, &stats)?,
            layer_norm::rms_norm_backward(self.ctx, &xt, &gt, &stats, eps, &dyt, &dx, &dyx)?,
        ])?;
        let (mut wy, mut ws) = (vec![0.0; rows * cols], vec![0.0; 2 * rows]);
        r::layer_norm::rms_norm_forward(&x, &gamma, eps, &mut wy, &mut ws);
        let (mut wdx, mut wg) = (vec![0.0; rows * cols], vec![0.0; cols]);
        r::layer_norm::rms_norm_backward(&x, &gamma, eps, &dy, &mut wdx, &mut wg);
        self.record(
            "rms norm + input gradient",
            format!("{rows}x{cols}"),
            &[(y.to_f32(self.ctx)?, wy), (dx.to_f32(self.ctx)?, wdx)],
        );
        Ok(())
    }

    /// Rotary positions turned forward and back on `rows` rows of `tokens`
    /// tokens by `heads` heads of `d`, and those heads repeated `times` times
    /// (grouped-query attention's keys) and summed back.
    fn rotary(&mut self, rows: usize, (tokens, heads, d): (usize, usize, usize), times: usize) -> Result<()> {
        use crate::kernels::rotary::{Turn, rotary};
        let x = self.data(rows * heads * d);
        let table = r::rotary::angle_table(&r::rotary::frequencies(10_000.0, d), 0, tokens);
        let (xt, tt) = (
            self.upload(&x, &[rows, heads * d])?,
            self.upload(&table, &[table.len()])?,
        );
        let (y, back) = (self.out(&[rows, heads * d])?, self.out(&[rows, heads * d])?);
        let (many, summed) = (
            self.out(&[rows * heads * d * times])?,
            self.out(&[rows * heads * d])?,
        );
        let flat = xt.reshape(&[x.len()])?;
        self.run(&[
            rotary(self.ctx, &xt, &tt, (tokens, heads), Turn::Forward, &y)?,
            rotary(self.ctx, &y, &tt, (tokens, heads), Turn::Back, &back)?,
            elementwise::repeat_blocks(self.ctx, &flat, d, times, &many)?,
            elementwise::sum_blocks(self.ctx, &many, d, times, &summed)?,
        ])?;
        let want = r::rotary::rotary(&x, &table, (tokens, heads), false);
        self.record(
            "rotary positions, forward and back",
            format!("{rows}x{heads}x{d}"),
            &[(y.to_f32(self.ctx)?, want), (back.to_f32(self.ctx)?, x.clone())],
        );
        let repeated = r::elementwise::repeat_blocks(&x, d, times);
        let sums = r::elementwise::sum_blocks(&repeated, d, times);
        self.record(
            "repeated heads + their sums",
            format!("{rows}x{heads}x{d} x{times}"),
            &[
                (many.to_f32(self.ctx)?, repeated),
                (summed.to_f32(self.ctx)?, sums),
            ],
        );
        Ok(())
    }

    /// One decoding step at position `at` of a cache of `positions`: a query
    /// and key turned at that position (`rotary_at`), then the query over the
    /// cache of `kv_heads` heads of `d` shared by `heads` query heads
    /// (`attention_decode`, over `splits` workgroups per head), the earlier
    /// rows written straight into the cache.
    fn decode_step(
        &mut self,
        (heads, kv_heads, d): (usize, usize, usize),
        splits: usize,
        positions: usize,
        at: usize,
    ) -> Result<()> {
        use crate::kernels::attention_decode::{DecodeDims, DecodePosition, attention_decode};
        use crate::kernels::rotary::{Turn, rotary_at};
        let dims = DecodeDims::new(heads, kv_heads, (d, d)).with_splits(splits);
        let w = kv_heads * d;
        let (q, k, v) = (self.data(heads * d), self.data(w), self.data(w));
        let (mut kc, mut vc) = (self.data(positions * w), self.data(positions * w));
        let table = r::rotary::angle_table(&r::rotary::frequencies(10_000.0, d), 0, positions);
        let (qt, kt, vt, tt) = (
            self.upload(&q, &[1, heads * d])?,
            self.upload(&k, &[1, w])?,
            self.upload(&v, &[w])?,
            self.upload(&table, &[table.len()])?,
        );
        let (k_cache, v_cache) = (self.upload(&kc, &[kc.len()])?, self.upload(&vc, &[vc.len()])?);
        let (qr, kr, out) = (
            self.out(&[1, heads * d])?,
            self.out(&[1, w])?,
            self.out(&[heads * d])?,
        );
        let position = DecodePosition::new(self.ctx, positions)?;
        position.set(self.ctx, at)?;
        let mut step = vec![
            rotary_at(self.ctx, &qt, &tt, heads, Turn::Forward, &position, &qr)?,
            rotary_at(self.ctx, &kt, &tt, kv_heads, Turn::Forward, &position, &kr)?,
        ];
        step.extend(attention_decode(
            self.ctx,
            &dims,
            &qr.reshape(&[heads * d])?,
            (&kr.reshape(&[w])?, &vt),
            (&k_cache, &v_cache),
            &position,
            &out,
        )?);
        self.run(&step)?;
        let want_q = r::rotary::rotary_at(&q, &table, (positions, at), heads, false);
        let want_k = r::rotary::rotary_at(&k, &table, (positions, at), kv_heads, false);
        let want =
            r::attention_decode::attention_decode(&dims, at, &want_q, (&want_k, &v), (&mut kc, &mut vc));
        self.record(
            "decoding step: rotary at position + cached attention",
            format!("{heads}/{kv_heads} heads of {d}, {at} of {positions}, {splits} split(s)"),
            &[
                (qr.to_f32(self.ctx)?, want_q),
                (out.to_f32(self.ctx)?, want),
                (k_cache.to_f32(self.ctx)?, kc),
            ],
        );
        Ok(())
    }

    /// Padded sequences: each sample's length from its ids (padding id 0 ending
    /// samples of every length), then the masked mean and last-token pools and
    /// their gradients over `batch` samples of `tokens × features`.
    fn sequence(&mut self, batch: usize, tokens: usize, features: usize) -> Result<()> {
        let ids: Vec<f32> = (0..batch * tokens)
            .map(|i| {
                if i % tokens < (i / tokens) % (tokens + 1) {
                    1.0 + (i % 5) as f32
                } else {
                    0.0
                }
            })
            .collect();
        let (x, dy) = (self.data(batch * tokens * features), self.data(batch * features));
        let d = SequenceDims {
            batch,
            tokens,
            features,
        };
        let (idt, xt, dyt) = (
            self.upload(&ids, &[batch, tokens])?,
            self.upload(&x, &[x.len()])?,
            self.upload(&dy, &[dy.len()])?,
        );
        let lengths = self.out(&[batch])?;
        self.run(&[sequence::sequence_lengths(self.ctx, &idt, tokens, 0, &lengths)?])?;
        let want_lengths = r::sequence::sequence_lengths(&ids, tokens, 0);
        let mut outputs = vec![(lengths.to_f32(self.ctx)?, want_lengths.clone())];
        for pool in [SequencePool::Mean, SequencePool::Last, SequencePool::First] {
            let (y, dx) = (self.out(&[batch * features])?, self.out(&[x.len()])?);
            self.run(&[
                sequence::sequence_pool(self.ctx, &d, pool, &xt, Some(&lengths), &y)?,
                sequence::sequence_pool_backward(self.ctx, &d, pool, &dyt, Some(&lengths), &dx)?,
            ])?;
            let l = Some(&want_lengths[..]);
            outputs.push((y.to_f32(self.ctx)?, r::sequence::sequence_pool(&d, pool, &x, l)));
            outputs.push((
                dx.to_f32(self.ctx)?,
                r::sequence::sequence_pool_backward(&d, pool, &dy, l),
            ));
        }
        self.record(
            "padded lengths + pools, grads",
            format!("{batch}x{tokens}x{features}"),
            &outputs,
        );
        Ok(())
    }

    /// Embedding lookup and its table gradient: `tokens` ids (repeats included)
    /// into a `[vocab, dim]` table.
    fn embedding(&mut self, tokens: usize, vocab: usize, dim: usize) -> Result<()> {
        let ids: Vec<f32> = (0..tokens)
            .map(|_| self.rng.random_range(0..vocab) as f32)
            .collect();
        let (table, dy) = (self.data(vocab * dim), self.data(tokens * dim));
        let (idt, tt, dyt) = (
            self.upload(&ids, &[tokens])?,
            self.upload(&table, &[vocab, dim])?,
            self.upload(&dy, &[tokens, dim])?,
        );
        let (y, dt) = (self.out(&[tokens, dim])?, self.out(&[vocab, dim])?);
        let mut dispatches = vec![embedding::embedding_forward(self.ctx, &idt, &tt, &y)?];
        dispatches.extend(embedding::embedding_backward(self.ctx, &idt, &dyt, &dt)?);
        self.run(&dispatches)?;
        let (mut wy, mut wdt) = (vec![0.0; tokens * dim], vec![0.0; vocab * dim]);
        r::embedding::embedding_forward(&ids, &table, dim, &mut wy);
        r::embedding::embedding_backward(&ids, &dy, dim, &mut wdt);
        self.record(
            "embedding + table gradient",
            format!("{tokens} ids, {vocab}x{dim}"),
            &[(y.to_f32(self.ctx)?, wy), (dt.to_f32(self.ctx)?, wdt)],
        );
        Ok(())
    }

    /// Fused attention forward and backward (with dropout on the weights when `d`
    /// has it, at step 3), and the unfused path's row kernels (head split,
    /// weights' softmax and its backward); `padded`: the last sample's keys are
    /// padding past half its length.
    fn attention(&mut self, d: AttentionDims, padded: bool) -> Result<()> {
        const T: u32 = 3;
        let step = StepUniform::new(self.ctx)?;
        let opt = Optimizer::sgd(0.1, 0.0);
        step.write(self.ctx, &opt, T, opt.lr())?;
        let (b, h) = (d.batch, d.heads);
        let q = self.data(b * d.tq * h * d.dk);
        let k = self.data(b * d.tk * h * d.dk);
        let v = self.data(b * d.tk * h * d.dv);
        let g = self.data(b * d.tq * h * d.dv);
        let (qt, kt, vt, gt) = (
            self.upload(&q, &[q.len()])?,
            self.upload(&k, &[k.len()])?,
            self.upload(&v, &[v.len()])?,
            self.upload(&g, &[g.len()])?,
        );
        let mut lengths = vec![d.tk as f32; b];
        lengths[b - 1] = d.tk.div_ceil(2) as f32;
        let lengths = padded.then_some(lengths);
        let lt = lengths.as_ref().map(|l| self.upload(l, &[b])).transpose()?;
        let (o, stats) = (self.out(&[g.len()])?, self.out(&[d.stats_len()])?);
        let (dq, dk, dv) = (
            self.out(&[q.len()])?,
            self.out(&[k.len()])?,
            self.out(&[v.len()])?,
        );
        let mut run = vec![attention::attention_forward(
            self.ctx,
            &d,
            (&qt, &kt, &vt),
            lt.as_ref(),
            &o,
            &stats,
            Some(&step),
        )?];
        let grads = AttentionGrads {
            dq: Some(&dq),
            dkv: Some((&dk, &dv)),
        };
        run.extend(attention::attention_backward(
            self.ctx,
            &d,
            (&qt, &kt, &vt),
            lt.as_ref(),
            &o,
            &stats,
            &gt,
            grads,
            Some(&step),
        )?);
        self.run(&run)?;
        let (mut wo, mut ws) = (vec![0.0; g.len()], vec![0.0; d.stats_len()]);
        r::attention::attention_forward(&d, (&q, &k, &v), lengths.as_deref(), &mut wo, &mut ws, T)?;
        let (mut wq, mut wk, mut wv) = (vec![0.0; q.len()], vec![0.0; k.len()], vec![0.0; v.len()]);
        r::attention::attention_backward(
            &d,
            (&q, &k, &v),
            lengths.as_deref(),
            &g,
            &mut wq,
            &mut wk,
            &mut wv,
            T,
        )?;
        let padding = if padded { ", padded" } else { "" };
        let shape = format!("{}x{}x{}x{} d{}{padding}", b, h, d.tq, d.tk, d.dk);
        self.record(
            if d.dropout.is_some() {
                "fused attention + dropout, grads"
            } else {
                "fused attention + gradients"
            },
            shape.clone(),
            &[
                (o.to_f32(self.ctx)?, wo),
                (dq.to_f32(self.ctx)?, wq),
                (dk.to_f32(self.ctx)?, wk),
                (dv.to_f32(self.ctx)?, wv),
            ],
        );

        // Unfused: queries split into heads, scores' softmax, its backward.
        let view = SwapView {
            outer: b,
            a: d.tq,
            b: h,
            inner: d.dk,
        };
        let split = self.out(&[q.len()])?;
        let rows = b * h * d.tq;
        let scores: Vec<f32> = self.data(rows * d.tk).iter().map(|v| 4.0 * v).collect();
        let dp = self.data(rows * d.tk);
        let (st, dpt) = (
            self.upload(&scores, &[rows, d.tk])?,
            self.upload(&dp, &[rows, d.tk])?,
        );
        self.run(&[
            swap_axes::swap_axes(self.ctx, &qt, 0, &split, 0, view)?,
            softmax::softmax_attention(
                self.ctx,
                &st,
                d.scale,
                d.causal_rows(),
                lt.as_ref().map(|l| (l, h * d.tq)),
            )?,
            softmax::softmax_backward_rows(self.ctx, &st, &dpt, d.scale)?,
        ])?;
        let mut wsplit = vec![0.0; q.len()];
        r::swap_axes::swap_axes(&q, 0, &mut wsplit, 0, view);
        let mut wp = scores;
        r::softmax::softmax_attention(
            &mut wp,
            d.tk,
            d.scale,
            d.causal_rows(),
            lengths.as_deref().map(|l| (l, h * d.tq)),
        );
        let mut wdp = dp;
        r::softmax::softmax_backward_rows(&wp, &mut wdp, d.tk, d.scale);
        self.record(
            "attention heads + softmax rows",
            shape,
            &[
                (split.to_f32(self.ctx)?, wsplit),
                (st.to_f32(self.ctx)?, wp),
                (dpt.to_f32(self.ctx)?, wdp),
            ],
        );
        Ok(())
    }

    fn conv(&mut self, desc: Conv2dDesc) -> Result<()> {
        let (oh, ow) = desc.out_hw()?;
        let xs = [desc.n, desc.c_in, desc.h, desc.w];
        let ws = [desc.c_out, desc.c_in, desc.kh, desc.kw];
        let ys = [desc.n, desc.c_out, oh, ow];
        let (x, w, b) = (
            self.data(xs.iter().product()),
            self.data(ws.iter().product()),
            self.data(desc.c_out),
        );
        let dy = self.data(ys.iter().product());
        let (xt, wt, bt, dyt) = (
            self.upload(&x, &xs)?,
            self.upload(&w, &ws)?,
            self.upload(&b, &[desc.c_out])?,
            self.upload(&dy, &ys)?,
        );
        let (y, dx, dw, db) = (
            self.out(&ys)?,
            self.out(&xs)?,
            self.out(&ws)?,
            self.out(&[desc.c_out])?,
        );
        self.run(&conv::conv2d_forward(
            self.ctx,
            &desc,
            &xt,
            &wt,
            Some(&bt),
            Activation::Relu,
            &y,
        )?)?;
        self.run(&conv::conv2d_backward(
            self.ctx,
            &desc,
            &xt,
            &wt,
            &dyt,
            Some(&dx),
            &dw,
            Some(&db),
        )?)?;
        let mut wy = vec![0.0; y.numel()];
        r::conv::conv2d_forward(&desc, &x, &w, Some(&b), Activation::Relu, &mut wy);
        let (mut wdx, mut wdw, mut wdb) = (
            vec![0.0; dx.numel()],
            vec![0.0; dw.numel()],
            vec![0.0; desc.c_out],
        );
        r::conv::conv2d_backward(&desc, &x, &w, &dy, Some(&mut wdx), &mut wdw, Some(&mut wdb));
        let shape = format!(
            "{}x{}x{}x{} k{}x{} s{:?} {:?}",
            desc.n, desc.c_in, desc.h, desc.w, desc.kh, desc.kw, desc.stride, desc.padding
        );
        self.record("conv2d forward", shape.clone(), &[(y.to_f32(self.ctx)?, wy)]);
        self.record(
            "conv2d backward (dx, dw, db)",
            shape,
            &[
                (dx.to_f32(self.ctx)?, wdx),
                (dw.to_f32(self.ctx)?, wdw),
                (db.to_f32(self.ctx)?, wdb),
            ],
        );
        Ok(())
    }

    fn pools(&mut self, desc: Pool2dDesc) -> Result<()> {
        let (oh, ow) = desc.out_hw()?;
        let xs = [desc.n, desc.c, desc.h, desc.w];
        let ys = [desc.n, desc.c, oh, ow];
        let (x, dy) = (self.data(xs.iter().product()), self.data(ys.iter().product()));
        let (xt, dyt) = (self.upload(&x, &xs)?, self.upload(&dy, &ys)?);
        let shape = format!(
            "{}x{}x{}x{} k{}x{} s{:?}",
            desc.n, desc.c, desc.h, desc.w, desc.kh, desc.kw, desc.stride
        );
        let (y, idx, dx) = (
            self.out(&ys)?,
            Tensor::zeros(self.ctx, &ys, DType::U32)?,
            self.out(&xs)?,
        );
        self.run(&[pool::max_pool2d_forward(self.ctx, &desc, &xt, &y, &idx)?])?;
        self.run(&pool::max_pool2d_backward(self.ctx, &desc, &dyt, &idx, &dx)?)?;
        let (mut wy, mut widx, mut wdx) =
            (vec![0.0; y.numel()], vec![0u32; y.numel()], vec![0.0; dx.numel()]);
        r::pool::max_pool2d_forward(&desc, &x, &mut wy, &mut widx);
        r::pool::max_pool2d_backward(&desc, &dy, &widx, &mut wdx);
        self.record(
            "max pool forward+backward",
            shape.clone(),
            &[(y.to_f32(self.ctx)?, wy), (dx.to_f32(self.ctx)?, wdx)],
        );
        let (y, dx) = (self.out(&ys)?, self.out(&xs)?);
        self.run(&[pool::avg_pool2d_forward(self.ctx, &desc, &xt, &y)?])?;
        self.run(&[pool::avg_pool2d_backward(self.ctx, &desc, &dyt, &dx)?])?;
        let (mut wy, mut wdx) = (vec![0.0; y.numel()], vec![0.0; dx.numel()]);
        r::pool::avg_pool2d_forward(&desc, &x, &mut wy);
        r::pool::avg_pool2d_backward(&desc, &dy, &mut wdx);
        self.record(
            "avg pool forward+backward",
            shape,
            &[(y.to_f32(self.ctx)?, wy), (dx.to_f32(self.ctx)?, wdx)],
        );
        Ok(())
    }

    /// The fused conv + ReLU + 2×2 max-pool pair (CPU adapters with subgroups).
    fn conv_pool(&mut self, conv: Conv2dDesc) -> Result<()> {
        let desc = ConvPoolDesc {
            conv,
            activation: Activation::Relu,
        };
        let c = &desc.conv;
        let (xs, ws, ys) = (c.input_shape(), c.weight_shape(), desc.pooled_shape()?);
        let (x, w, b) = (
            self.data(xs.iter().product()),
            self.data(ws.iter().product()),
            self.data(c.c_out),
        );
        let dy = self.data(ys.iter().product());
        let (xt, wt, bt, dyt) = (
            self.upload(&x, &xs)?,
            self.upload(&w, &ws)?,
            self.upload(&b, &[c.c_out])?,
            self.upload(&dy, &ys)?,
        );
        let (y, dw, db) = (self.out(&ys)?, self.out(&ws)?, self.out(&[c.c_out])?);
        let idx = Tensor::zeros(self.ctx, &desc.index_shape()?, DType::U32)?;
        self.run(&[conv_pool::conv_pool_forward(
            self.ctx, &desc, &xt, &wt, &bt, &y, &idx,
        )?])?;
        self.run(&conv_pool::conv_pool_backward(
            self.ctx, &desc, &xt, &dyt, &y, &idx, &dw, &db,
        )?)?;
        let (gy, gidx) = (y.to_f32(self.ctx)?, idx.to_u32(self.ctx)?);
        let mut wy = vec![0.0; gy.len()];
        let mut widx = vec![0; gidx.len()];
        r::conv_pool::conv_pool_forward(&desc, &x, &w, &b, &mut wy, &mut widx);
        // The backward twin gets the GPU's y and windows, so a near-tie that
        // rounded the other way on the GPU cannot fail the check.
        let (mut wdw, mut wdb) = (vec![0.0; dw.numel()], vec![0.0; c.c_out]);
        r::conv_pool::conv_pool_backward(&desc, &x, &dy, &gy, &gidx, &mut wdw, &mut wdb);
        let shape = format!(
            "{}x{}x{}x{} k{}x{} ->{}",
            c.n, c.c_in, c.h, c.w, c.kh, c.kw, c.c_out
        );
        self.record("conv+relu+pool fused forward", shape.clone(), &[(gy, wy)]);
        self.record(
            "conv+relu+pool fused dw, db",
            shape,
            &[(dw.to_f32(self.ctx)?, wdw), (db.to_f32(self.ctx)?, wdb)],
        );
        Ok(())
    }

    /// The weight gradient with Adam in the epilogue (register kernels).
    fn matmul_adam(&mut self, m: usize, n: usize, k: usize, steps: u32) -> Result<()> {
        let opt = Optimizer::adam(0.001);
        let mut d = MatmulDesc::new(m, n, k);
        d.trans_a = true;
        let p0 = self.data(m * n);
        let param = self.upload(&p0, &[m, n])?;
        let (mt, vt) = (
            Tensor::zeros(self.ctx, &[m, n], DType::F32)?,
            Tensor::zeros(self.ctx, &[m, n], DType::F32)?,
        );
        let (at, bt) = (
            Tensor::zeros(self.ctx, &[k * m], DType::F32)?,
            Tensor::zeros(self.ctx, &[k * n], DType::F32)?,
        );
        let step = StepUniform::new(self.ctx)?;
        let dispatch = matmul::matmul_adam(self.ctx, &d, &at, &bt, &param, &mt, &vt, &opt, &step)?;
        let mut want = p0.clone();
        let mut state = vec![vec![0.0; m * n]; 2];
        let mut near_zero = vec![false; m * n];
        for t in 1..=steps {
            let (a, b) = (self.data(k * m), self.data(k * n));
            at.write(self.ctx, &a)?;
            bt.write(self.ctx, &b)?;
            step.write(self.ctx, &opt, t, opt.lr())?;
            self.ctx.run(&[&dispatch])?;
            let mut g = vec![0.0; m * n];
            r::matmul::matmul(&d, &a, &b, None, &mut g)?;
            r::optim::mark_ill_conditioned(&mut near_zero, &g, r::optim::sum_noise(k));
            r::optim::optimizer_step(&opt, t, opt.lr(), &mut want, &g, &mut state);
        }
        let moved = |v: &[f32]| v.iter().zip(&p0).map(|(a, b)| a - b).collect::<Vec<f32>>();
        let got = param.to_f32(self.ctx)?;
        let want = r::optim::accept_ill_conditioned(&got, &want, &near_zero, 2.0 * steps as f32 * opt.lr());
        self.record(
            &format!("tn dW + Adam epilogue x{steps}"),
            format!("{m}x{n}x{k}"),
            &[(moved(&got), moved(&want))],
        );
        Ok(())
    }

    /// Gradient clipping by global norm of tensors of `sizes`, to a third of their
    /// norm: the scaled gradients and `[scale, norm]`.
    fn clip(&mut self, sizes: &[usize]) -> Result<()> {
        let values: Vec<Vec<f32>> = sizes.iter().map(|&n| self.data(n)).collect();
        let tensors = values
            .iter()
            .map(|v| self.upload(v, &[v.len()]))
            .collect::<Result<Vec<_>>>()?;
        let norm = values.iter().flatten().map(|&v| v * v).sum::<f32>().sqrt();
        let grads: Vec<&Tensor> = tensors.iter().collect();
        let clip = crate::kernels::clip::clip_by_global_norm(self.ctx, &grads, norm / 3.0)?;
        self.run(&clip.dispatches)?;
        let mut want = values;
        let mut views: Vec<&mut [f32]> = want.iter_mut().map(|v| v.as_mut_slice()).collect();
        let (scale, want_norm) = r::clip::clip_by_global_norm(&mut views, norm / 3.0);
        let mut pairs = vec![(clip.factor.to_f32(self.ctx)?, vec![scale, want_norm])];
        for (t, w) in tensors.iter().zip(want) {
            pairs.push((t.to_f32(self.ctx)?, w));
        }
        self.record("clip_by_global_norm", format!("{sizes:?}"), &pairs);
        Ok(())
    }

    /// Dropout forward (and so backward: the same map) at step `t`.
    fn dropout(&mut self, n: usize, rate: f32, t: u32) -> Result<()> {
        let x = self.data(n);
        let xt = self.upload(&x, &[n])?;
        let y = self.out(&[n])?;
        let step = StepUniform::new(self.ctx)?;
        step.write(self.ctx, &Optimizer::sgd(0.1, 0.0), t, 0.1)?;
        let seed = crate::kernels::dropout::layer_seed(2024, 7);
        self.run(&[crate::kernels::dropout::dropout(
            self.ctx, &xt, &y, rate, seed, &step,
        )?])?;
        let mut want = vec![0.0; n];
        r::dropout::dropout(&x, &mut want, rate, seed, t)?;
        self.record(
            &format!("dropout {rate}"),
            format!("{n} step {t}"),
            &[(y.to_f32(self.ctx)?, want)],
        );
        Ok(())
    }

    /// Batch normalization: training forward (output, saved and moving statistics),
    /// evaluation forward, backward (dx, dγ, dβ).
    fn batchnorm(&mut self, d: BatchNormDesc) -> Result<()> {
        let act = format!("{:?}", d.activation).to_lowercase();
        let (n, c) = (d.numel(), d.c);
        let (x, dy, beta) = (self.data(n), self.data(n), self.data(c));
        let gamma: Vec<f32> = self.data(c).iter().map(|v| 1.0 + 0.5 * v).collect();
        let (mm, mv) = (self.data(c), vec![1.5f32; c]);
        let (xt, dyt) = (self.upload(&x, &[n])?, self.upload(&dy, &[n])?);
        let (gt, bt) = (self.upload(&gamma, &[c])?, self.upload(&beta, &[c])?);
        let (mmt, mvt) = (self.upload(&mm, &[c])?, self.upload(&mv, &[c])?);
        let (y, ye, dx) = (self.out(&[n])?, self.out(&[n])?, self.out(&[n])?);
        let (stats, dg, db) = (self.out(&[2 * c])?, self.out(&[c])?, self.out(&[c])?);
        let ctx = self.ctx;
        self.run(&[
            batchnorm::batchnorm_eval(ctx, &d, &xt, &gt, &bt, &mmt, &mvt, &ye)?,
            batchnorm::batchnorm_train(ctx, &d, &xt, &gt, &bt, &y, &stats, &mmt, &mvt)?,
            batchnorm::batchnorm_backward(ctx, &d, &xt, &gt, &bt, &stats, &dyt, Some(&dx), &dg, &db)?,
        ])?;
        let mut want_ye = vec![0.0; n];
        r::batchnorm::batchnorm_eval(&d, &x, &gamma, &beta, &mm, &mv, &mut want_ye)?;
        let (mut want_y, mut want_stats) = (vec![0.0; n], vec![0.0; 2 * c]);
        let (mut want_mm, mut want_mv) = (mm.clone(), mv.clone());
        r::batchnorm::batchnorm_train(
            &d,
            &x,
            &gamma,
            &beta,
            &mut want_y,
            &mut want_stats,
            &mut want_mm,
            &mut want_mv,
        )?;
        let (mut want_dx, mut want_dg, mut want_db) = (vec![0.0; n], vec![0.0; c], vec![0.0; c]);
        r::batchnorm::batchnorm_backward(
            &d,
            &x,
            &gamma,
            &beta,
            &want_stats,
            &dy,
            Some(&mut want_dx),
            &mut want_dg,
            &mut want_db,
        )?;
        let shape = format!("{}x{}x{}", d.n, d.c, d.s);
        self.record(
            &format!("batchnorm eval {act}"),
            shape.clone(),
            &[(ye.to_f32(ctx)?, want_ye)],
        );
        self.record(
            &format!("batchnorm train {act}"),
            shape.clone(),
            &[
                (y.to_f32(ctx)?, want_y),
                (stats.to_f32(ctx)?, want_stats),
                (mmt.to_f32(ctx)?, want_mm),
                (mvt.to_f32(ctx)?, want_mv),
            ],
        );
        self.record(
            &format!("batchnorm backward {act}"),
            shape,
            &[
                (dx.to_f32(ctx)?, want_dx),
                (dg.to_f32(ctx)?, want_dg),
                (db.to_f32(ctx)?, want_db),
            ],
        );
        Ok(())
    }

    /// One C summed over a batch (the conv weight gradient's product on CPU
    /// adapters).
    fn matmul_reduce_batch(&mut self, d: &MatmulDesc) -> Result<()> {
        let (m, n, k, batch) = (d.m, d.n, d.k, d.batch);
        let (a, b) = (self.data(batch * m * k), self.data(batch * n * k));
        let (at, bt) = (self.upload(&a, &[a.len()])?, self.upload(&b, &[b.len()])?);
        let c = self.out(&[m, n])?;
        self.run(&matmul::matmul(self.ctx, d, &at, &bt, None, &c)?)?;
        let mut want = vec![0.0; m * n];
        r::matmul::matmul(d, &a, &b, None, &mut want)?;
        self.record(
            "nt summed over the batch",
            format!("{m}x{n}x{k} x{batch}"),
            &[(c.to_f32(self.ctx)?, want)],
        );
        Ok(())
    }

    fn optimizer(&mut self, opt: Optimizer, n: usize, steps: u32) -> Result<()> {
        let p0 = self.data(n);
        let param = self.upload(&p0, &[n])?;
        let grad = Tensor::zeros(self.ctx, &[n], DType::F32)?;
        let state: Vec<Tensor> = (0..opt.state_count())
            .map(|_| Tensor::zeros(self.ctx, &[n], DType::F32))
            .collect::<Result<_>>()?;
        let step = StepUniform::new(self.ctx)?;
        let d = optim::optimizer_step(self.ctx, &opt, &step, &param, &grad, &state)?;
        let mut want = p0.clone();
        let mut wstate = vec![vec![0.0; n]; opt.state_count()];
        for t in 1..=steps {
            let g = self.data(n);
            grad.write(self.ctx, &g)?;
            step.write(self.ctx, &opt, t, opt.lr())?;
            self.ctx.run(&[&d])?;
            r::optim::optimizer_step(&opt, t, opt.lr(), &mut want, &g, &mut wstate);
        }
        // Compare the parameters' movement, not their values, so the error is
        // relative to what the optimizer did.
        let moved = |v: &[f32]| v.iter().zip(&p0).map(|(a, b)| a - b).collect::<Vec<f32>>();
        let got = param.to_f32(self.ctx)?;
        self.record(
            &format!("{} x{steps} steps", opt.name()),
            format!("{n}"),
            &[(moved(&got), moved(&want))],
        );
        Ok(())
    }
}

/// Runs every check on `ctx` (seeded, so the same on every run).
pub fn run(ctx: &Context) -> Result<Vec<Check>> {
    let mut t = Runner {
        ctx,
        rng: StdRng::seed_from_u64(2024),
        checks: Vec::new(),
    };
    t.matmul(67, 45, 33, false, false, Activation::Identity)?;
    t.matmul(32, 64, 300, false, true, Activation::Relu)?;
    t.matmul(64, 300, 32, true, false, Activation::Identity)?;
    t.matmul(128, 128, 128, false, false, Activation::Sigmoid)?;
    // The seed CNN's Dense forward at batch 32 split over K (what GPUs run).
    t.matmul_desc(
        MatmulDesc::new(32, 64, 5408)
            .trans_b()
            .activation(Activation::Relu)
            .split_k(16),
    )?;
    // The tensor-core variants, where the adapter has cooperative matrices.
    for variant in matmul::available_reduced_variants(ctx) {
        t.matmul_desc(MatmulDesc::new(131, 70, 96).trans_b().variant(variant))?;
        t.matmul_desc(
            MatmulDesc::new(32, 64, 700)
                .activation(Activation::Relu)
                .split_k(5)
                .variant(variant),
        )?;
    }
    t.activations(10_007)?;
    t.softmax_and_losses(61, 10)?;
    t.softmax_and_losses(3, 1_000)?;
    t.conv(Conv2dDesc {
        n: 4,
        c_in: 1,
        h: 28,
        w: 28,
        c_out: 32,
        kh: 3,
        kw: 3,
        stride: (1, 1),
        padding: Padding::Valid,
    })?;
    t.conv(Conv2dDesc {
        n: 3,
        c_in: 3,
        h: 13,
        w: 11,
        c_out: 8,
        kh: 5,
        kw: 5,
        stride: (2, 2),
        padding: Padding::Same,
    })?;
    t.pools(Pool2dDesc {
        n: 2,
        c: 5,
        h: 26,
        w: 26,
        kh: 2,
        kw: 2,
        stride: (2, 2),
        padding: (0, 0),
    })?;
    t.pools(Pool2dDesc {
        n: 1,
        c: 3,
        h: 27,
        w: 31,
        kh: 3,
        kw: 3,
        stride: (2, 2),
        padding: (1, 1),
    })?;
    if conv_pool::supported(ctx) {
        t.conv_pool(Conv2dDesc {
            n: 3,
            c_in: 2,
            h: 13,
            w: 12,
            c_out: 40,
            kh: 3,
            kw: 3,
            stride: (1, 1),
            padding: Padding::Same,
        })?;
    }
    // The Adam epilogue exists for the register kernels, which wgml picks on CPU
    // adapters with subgroups.
    if ctx.is_cpu() && matmul::has_subgroups(ctx) {
        t.matmul_adam(64, 300, 32, 3)?;
    }
    t.matmul_reduce_batch(&MatmulDesc::new(73, 64, 49).batched(6).trans_b().reduce_batch())?;
    t.dropout(10_007, 0.5, 3)?;
    t.clip(&[288, 32, 346_112, 64, 650, 10])?;
    t.batchnorm(BatchNormDesc::new(16, 32, 169).activation(Activation::Relu))?;
    t.batchnorm(BatchNormDesc::new(7, 64, 1))?;
    t.embedding(32 * 28, 100, 64)?;
    t.embedding(300, 40, 24)?;
    t.layer_norm(61, 64)?;
    t.sequence(37, 33, 48)?;
    t.layer_norm(3, 1_000)?;
    t.rotary(2 * 37, (37, 3, 64), 3)?;
    t.decode_step((9, 3, 64), 1, 300, 237)?;
    t.decode_step((9, 3, 64), 5, 300, 237)?;
    t.decode_step((4, 1, 128), 1, 40, 39)?;
    for (tokens, causal, dropout, padded) in [
        (28, false, 0.0, false),
        (28, false, 0.0, true),
        (70, true, 0.0, false),
        (33, true, 0.25, true),
    ] {
        let d = AttentionDims::new(3, 4, (tokens, tokens), (16, 16), causal).with_dropout(dropout, 11);
        t.attention(d, padded)?;
    }
    t.optimizer(Optimizer::adam(0.001), 1000, 5)?;
    t.optimizer(Optimizer::sgd(0.01, 0.9), 1000, 5)?;
    t.optimizer(Optimizer::rmsprop(0.001), 1000, 5)?;
    Ok(t.checks)
}

/// The checks as a table.
pub fn table(checks: &[Check]) -> String {
    let mut s = format!("{:<34} {:<30} {:>11}  result\n", "kernel", "shape", "max error");
    for c in checks {
        s += &format!(
            "{:<34} {:<30} {:>11.2e}  {}\n",
            c.kernel,
            c.shape,
            c.error,
            if c.pass { "pass" } else { "FAIL" }
        );
    }
    s
}
