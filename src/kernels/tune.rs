//! Kernel choices measured on the adapter at hand (autotuning).
//!
//! The first time a product of a given layout and shape is launched without a
//! forced variant, wgml times the candidates (every matmul variant the adapter
//! may run, each with the split-K factors that could fill the device) on that
//! adapter and keeps the fastest. Choices are remembered by the
//! [`Context`] and saved in the tuning cache on disk (per adapter, driver and
//! wgml version; see [`crate::gpu::cache_dir`]), so the next run starts with
//! them. Every candidate is a variant the kernel tests prove equal to the CPU
//! twin, so tuning changes speed, never results beyond f32 rounding. (Under
//! [`crate::gpu::MatmulPrecision::Medium`] the tensor-core variants join, equal
//! to their own twin, f16 inputs; their choices are kept under other keys:
//! [`context_key`].)
//!
//! When it runs, from `WGML_TUNE` ([`TUNE_ENV`]):
//! - `auto` (default): on GPUs, at most [`AUTO_TOTAL_BUDGET`] per process (what
//!   is not measured in one run is measured in the next). Not on CPU adapters
//!   (lavapipe), where compiling one candidate pipeline costs about a second:
//!   there the built-in cost model measured on lavapipe chooses
//!   ([`super::matmul::auto_variant`]).
//! - `on`: everywhere, each product's measurement bounded by [`budget`].
//! - `off`: never, and the cache is not consulted: the built-in rules choose, so
//!   runs that must be identical across machines take the same kernels.
//!
//! The same holds for one-row products through `kernels::matvec` (a key/value
//! cached decoder's Dense layers): [`matvec_variant`] times its variants.
//!
//! `wgml tune` measures a model's products ahead of a run; `wgml info` lists
//! the cache.

use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::gpu::{Context, Dispatch, Tensor, Timer, TunedEntry};
use crate::kernels::attention_decode::{DecodeDims, DecodePosition, attention_decode};
use crate::kernels::matmul::{self, MatmulChoice, MatmulDesc, MatmulVariant};
use crate::kernels::matvec::{self as mv, MatvecVariant};

/// Environment variable choosing when kernels are tuned: `auto`, `on` or `off`.
pub const TUNE_ENV: &str = "WGML_TUNE";

/// When the tuner measures (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TuneMode {
    /// Never; the built-in rules choose and the cache is ignored.
    Off,
    /// On GPUs, not on CPU adapters.
    Auto,
    /// On every adapter.
    On,
}

impl TuneMode {
    /// Parses `auto`, `on` or `off` (also `1`/`0`, `true`/`false`).
    pub fn parse(value: &str) -> Result<TuneMode> {
        match value.trim().to_ascii_lowercase().as_str() {
            "" | "auto" => Ok(TuneMode::Auto),
            "on" | "1" | "true" => Ok(TuneMode::On),
            "off" | "0" | "false" => Ok(TuneMode::Off),
            other => Err(Error::invalid(format!(
                "{TUNE_ENV}={other} is not a tuning mode; use auto (tune on GPUs), on or off"
            ))),
        }
    }

    /// The mode `WGML_TUNE` asks for (`auto` when unset).
    pub fn from_env() -> Result<TuneMode> {
        match std::env::var(TUNE_ENV) {
            Ok(v) => TuneMode::parse(&v),
            Err(std::env::VarError::NotPresent) => Ok(TuneMode::Auto),
            Err(std::env::VarError::NotUnicode(_)) => Err(Error::invalid(format!(
                "{TUNE_ENV} is not valid text; use auto, on or off"
            ))),
        }
    }

    /// Whether this mode measures on `ctx`'s adapter.
    pub fn measures_on(self, ctx: &Context) -> bool {
        match self {
            TuneMode::Off => false,
            TuneMode::Auto => !ctx.is_cpu_device(),
            TuneMode::On => true,
        }
    }
}

/// The mode in force for `ctx`: its own override ([`Context::set_tune_mode`]) or
/// the environment's.
pub fn mode(ctx: &Context) -> Result<TuneMode> {
    match ctx.tune_mode_override() {
        Some(m) => TuneMode::parse(&m),
        None => TuneMode::from_env(),
    }
}

/// Most time one product's measurement may take (compiling its candidates
/// included) before the tuner settles for the best so far: 0.4 s on a GPU, so
/// a model's handful of products tune in about a second; 20 s on a CPU adapter,
/// where each candidate pipeline compiles for about a second.
pub fn budget(ctx: &Context) -> Duration {
    if ctx.is_cpu_device() {
        Duration::from_secs(20)
    } else {
        Duration::from_millis(400)
    }
}

/// Measures how long a candidate's dispatches take. The real clock times them on
/// the GPU; tests substitute a fake one to check that the tuner keeps what the
/// clock says is fastest.
pub trait TuneClock {
    /// Milliseconds `dispatches` (the launch of the candidate named `choice`, as
    /// the cache names it: [`MatmulChoice::name`], [`MatvecVariant::name`]) take.
    fn time(&mut self, ctx: &Context, choice: &str, dispatches: &[&Dispatch]) -> Result<f64>;
}

/// The real clock: one warm-up run, then the fastest of three timed runs (GPU
/// timestamps where the adapter has them, else wall clock). One timer serves
/// every candidate, so its query set is made once.
pub struct GpuClock<'a> {
    timer: Timer<'a>,
}

impl<'a> GpuClock<'a> {
    /// A clock timing on `ctx`.
    pub fn new(ctx: &'a Context) -> GpuClock<'a> {
        GpuClock {
            timer: Timer::new(ctx),
        }
    }
}

impl TuneClock for GpuClock<'_> {
    fn time(&mut self, _ctx: &Context, _choice: &str, dispatches: &[&Dispatch]) -> Result<f64> {
        self.timer.time(dispatches)?;
        let runs = self.timer.time_repeats(dispatches, 3)?;
        Ok(runs.into_iter().fold(f64::INFINITY, f64::min))
    }
}

/// The cache key of `desc`'s product: layout, sizes, batch and whether the
/// batch is reduced (offsets, strides and the epilogue do not change which
/// kernel is fastest enough to tell apart).
pub fn matmul_key(desc: &MatmulDesc) -> String {
    format!(
        "{} m{} n{} k{} b{}{}",
        desc.layout_name(),
        desc.m,
        desc.n,
        desc.k,
        desc.batch,
        if desc.reduce_batch { " reduce" } else { "" }
    )
}

/// The cache key of `desc` under `ctx`'s matmul precision: [`matmul_key`],
/// with ` f16in` appended where tensor cores may serve it (their choices differ
/// and must never serve a full-precision run).
pub fn context_key(ctx: &Context, desc: &MatmulDesc) -> String {
    if crate::kernels::matmul_coop::tensor_cores_allowed(ctx) {
        format!("{} f16in", matmul_key(desc))
    } else {
        matmul_key(desc)
    }
}

/// Reads a choice as [`MatmulChoice::name`] writes it.
pub fn parse_choice(name: &str) -> Option<MatmulChoice> {
    let (variant, splits) = match name.split_once("/split") {
        Some((v, s)) => (v, s.parse().ok().filter(|&s| s >= 1)?),
        None => (name, 1),
    };
    Some(MatmulChoice {
        variant: MatmulVariant::from_name(variant)?,
        splits,
    })
}

/// The measured choice for `desc` on `ctx` when the tuner has one, measuring it
/// now if the mode allows and nothing is known; `None` leaves the choice to the
/// built-in rules. Never fails because of a candidate: one that does not
/// compile or run is skipped.
pub fn matmul_choice(ctx: &Context, desc: &MatmulDesc) -> Result<Option<MatmulChoice>> {
    let mode = mode(ctx)?;
    if mode == TuneMode::Off {
        return Ok(None);
    }
    let key = context_key(ctx, desc);
    if let Some(entry) = ctx.tuned(&key)
        && let Some(choice) = parse_choice(&entry.choice)
        && matmul::variant_allowed(ctx, choice.variant)
    {
        return Ok(Some(choice));
    }
    if !may_measure(ctx, mode) {
        return Ok(None);
    }
    let candidates = matmul_candidates(ctx, desc);
    let report = tune_matmul_among(ctx, desc, &candidates, &mut GpuClock::new(ctx), budget(ctx))?;
    ctx.add_tuning_spent(Duration::from_secs_f64(report.elapsed_ms / 1e3));
    Ok(report.best.map(|(choice, _)| choice))
}

/// Whether `mode` lets the tuner measure something new on `ctx` now: it measures
/// on this adapter, and automatic tuning, which may not hold a run up for long,
/// has not spent its total budget (past it the built-in rules serve, unrecorded,
/// so a later run measures what is left).
fn may_measure(ctx: &Context, mode: TuneMode) -> bool {
    mode.measures_on(ctx) && !(mode == TuneMode::Auto && ctx.tuning_spent() >= AUTO_TOTAL_BUDGET)
}

/// Most time automatic tuning (`WGML_TUNE=auto`) spends in one process: a new
/// model's first run pays at most this much (plus the last product's own budget);
/// `wgml tune` and `WGML_TUNE=on` have no such cap.
pub const AUTO_TOTAL_BUDGET: Duration = Duration::from_millis(1500);

/// What the tuner may choose among for `desc` on `ctx`, the built-in rule's
/// choice first (so it is measured even when the budget runs out): every
/// available variant, each unsplit and, where its output tiles cannot fill the
/// device, with the automatic split factor and its quarter, half and double.
pub fn matmul_candidates(ctx: &Context, desc: &MatmulDesc) -> Vec<MatmulChoice> {
    let variant = matmul::auto_variant(ctx, desc);
    let first = MatmulChoice {
        variant,
        splits: matmul::auto_splits(ctx, desc, variant),
    };
    let mut out = vec![first];
    let mut variants = matmul::available_variants(ctx);
    if crate::kernels::matmul_coop::tensor_cores_allowed(ctx) {
        variants.extend(matmul::available_reduced_variants(ctx));
    }
    for variant in variants {
        let h = matmul::gpu_splits(desc, variant);
        let splits: &[usize] = if h > 1 { &[1, h / 4, h / 2, h, 2 * h] } else { &[1] };
        for &splits in splits {
            let c = MatmulChoice { variant, splits };
            if (splits == 1 || (splits >= 2 && splits <= matmul::max_splits(desc))) && !out.contains(&c) {
                out.push(c);
            }
        }
    }
    out
}

/// One tuning run: every candidate's time (or why it could not run) and the
/// fastest; candidates are matmul choices or (for one-row products) matvec
/// variants.
#[derive(Clone, Debug)]
pub struct TuneReport<C = MatmulChoice> {
    /// The cache key measured.
    pub key: String,
    /// Each candidate measured, in order, with its time in ms or the reason it
    /// was skipped.
    pub results: Vec<(C, std::result::Result<f64, String>)>,
    /// Candidates left unmeasured because the budget ran out.
    pub unmeasured: usize,
    /// The fastest candidate and its time, if any ran.
    pub best: Option<(C, f64)>,
    /// Wall time of the whole run (compiling included), ms.
    pub elapsed_ms: f64,
}

/// Times each of `candidates` (named by `name`, launched by `launch`) with
/// `clock` until `budget` is spent since `start` (one at least), records the
/// fastest under `key` on `ctx` (and in the cache file), and reports.
#[allow(clippy::too_many_arguments)]
fn measure<C: Copy>(
    ctx: &Context,
    key: String,
    candidates: &[C],
    name: impl Fn(&C) -> String,
    mut launch: impl FnMut(&C) -> Result<Vec<Dispatch>>,
    clock: &mut dyn TuneClock,
    budget: Duration,
    start: Instant,
) -> TuneReport<C> {
    let mut results = Vec::new();
    let mut unmeasured = 0;
    for choice in candidates {
        if start.elapsed() > budget && !results.is_empty() {
            unmeasured += 1;
            continue;
        }
        let timed = launch(choice).and_then(|list| {
            let refs: Vec<&Dispatch> = list.iter().collect();
            clock.time(ctx, &name(choice), &refs)
        });
        results.push((*choice, timed.map_err(|e| e.to_string())));
    }
    let best = results
        .iter()
        .filter_map(|(c, t)| t.as_ref().ok().filter(|t| t.is_finite()).map(|&t| (*c, t)))
        .min_by(|x, y| x.1.total_cmp(&y.1));
    if let Some((choice, ms)) = &best {
        ctx.record_tuned(
            &key,
            TunedEntry {
                choice: name(choice),
                ms: *ms,
                candidates: results.len(),
            },
        );
    }
    TuneReport {
        key,
        results,
        unmeasured,
        best,
        elapsed_ms: start.elapsed().as_secs_f64() * 1e3,
    }
}

/// Times `candidates` for `desc`'s product on scratch operands of its sizes
/// (filled with non-zero values; the caller's tensors are never touched) with
/// `clock`, stopping when `budget` is spent, and records the fastest on `ctx`
/// (and in the cache file).
pub fn tune_matmul_among(
    ctx: &Context,
    desc: &MatmulDesc,
    candidates: &[MatmulChoice],
    clock: &mut dyn TuneClock,
    budget: Duration,
) -> Result<TuneReport> {
    let start = Instant::now();
    let key = context_key(ctx, desc);
    // The product alone: no epilogue, no offsets, dense C.
    let mut probe = MatmulDesc {
        a_batch_stride: desc.a_batch_stride,
        b_batch_stride: desc.b_batch_stride,
        batch: desc.batch,
        trans_a: desc.trans_a,
        trans_b: desc.trans_b,
        reduce_batch: desc.reduce_batch,
        ..MatmulDesc::new(desc.m, desc.n, desc.k)
    };
    let last = desc.batch - 1;
    let a = pattern(ctx, last * probe.a_batch_stride + desc.m * desc.k, 0.37)?;
    let b = pattern(ctx, last * probe.b_batch_stride + desc.k * desc.n, 0.61)?;
    let c_len = if desc.reduce_batch { 1 } else { desc.batch } * desc.m * desc.n;
    let c = Tensor::zeros(ctx, &[c_len], crate::gpu::DType::F32)?;
    // Compile every candidate's pipelines together, one thread per core (a
    // candidate that fails here fails again below and is skipped there).
    let _ = ctx.deferring_pipelines(|| {
        for &choice in candidates {
            let mut d = probe.clone();
            d.variant = Some(choice.variant);
            d.split_k = Some(choice.splits);
            let _ = matmul::matmul(ctx, &d, &a, &b, None, &c);
        }
        Ok(())
    });
    let launch = |choice: &MatmulChoice| {
        probe.variant = Some(choice.variant);
        probe.split_k = Some(choice.splits);
        matmul::matmul(ctx, &probe, &a, &b, None, &c)
    };
    Ok(measure(
        ctx,
        key,
        candidates,
        |c| c.name(),
        launch,
        clock,
        budget,
        start,
    ))
}

/// The cache key of a one-row product through `kernels::matvec`: `rows` rows of
/// `[.., k]` times a `[n, k]` weight.
pub fn matvec_key(rows: usize, n: usize, k: usize) -> String {
    format!("matvec m{rows} n{n} k{k}")
}

/// The variant `kernels::matvec` should use for `rows` rows times a `[n, k]`
/// weight on `ctx`: the measured one when the tuner has it, measured now if the
/// mode allows and nothing is known (as [`matmul_choice`], within the same
/// budgets), else the built-in rule ([`MatvecVariant::auto`]).
pub fn matvec_variant(ctx: &Context, rows: usize, n: usize, k: usize) -> Result<MatvecVariant> {
    let mode = mode(ctx)?;
    if mode == TuneMode::Off {
        return Ok(MatvecVariant::auto(ctx));
    }
    let key = matvec_key(rows, n, k);
    if let Some(v) = ctx.tuned(&key).and_then(|e| MatvecVariant::from_name(&e.choice)) {
        return Ok(v);
    }
    if !may_measure(ctx, mode) {
        return Ok(MatvecVariant::auto(ctx));
    }
    let auto = MatvecVariant::auto(ctx);
    let candidates: Vec<MatvecVariant> = std::iter::once(auto)
        .chain(MatvecVariant::ALL.into_iter().filter(|&v| v != auto))
        .collect();
    let report = tune_matvec_among(ctx, rows, n, k, &candidates, &mut GpuClock::new(ctx), budget(ctx))?;
    ctx.add_tuning_spent(Duration::from_secs_f64(report.elapsed_ms / 1e3));
    Ok(report.best.map_or(auto, |(v, _)| v))
}

/// Times `candidates` for `rows` rows times a `[n, k]` weight on scratch
/// operands (no bias, no activation) with `clock` within `budget`, and records
/// the fastest on `ctx` (and in the cache file).
pub fn tune_matvec_among(
    ctx: &Context,
    rows: usize,
    n: usize,
    k: usize,
    candidates: &[MatvecVariant],
    clock: &mut dyn TuneClock,
    budget: Duration,
) -> Result<TuneReport<MatvecVariant>> {
    let start = Instant::now();
    let x = pattern(ctx, rows * k, 0.37)?.reshape(&[rows, k])?;
    let w = pattern(ctx, n * k, 0.61)?.reshape(&[n, k])?;
    let y = Tensor::zeros(ctx, &[rows, n], crate::gpu::DType::F32)?;
    let act = matmul::Activation::Identity;
    let launch = |v: &MatvecVariant| mv::matvec(ctx, *v, &x, &w, None, act, &y).map(|d| vec![d]);
    Ok(measure(
        ctx,
        matvec_key(rows, n, k),
        candidates,
        |v| v.name().to_string(),
        launch,
        clock,
        budget,
        start,
    ))
}

/// The cache key of a decoding step's attention (`kernels::attention_decode`):
/// `heads` query heads over `kv_heads`, heads of `dk`/`dv` values, a cache of
/// `capacity` positions.
pub fn decode_key(dims: &DecodeDims, capacity: usize) -> String {
    format!(
        "attention_decode h{}/{} d{}x{} t{capacity}",
        dims.heads, dims.kv_heads, dims.dk, dims.dv
    )
}

/// How many workgroups per head a decoding step's attention over a cache of
/// `capacity` positions should split its keys into on `ctx`: the measured
/// count when the tuner has it, measured now (at the cache's last position,
/// where splitting matters most) if the mode allows and nothing is known, as
/// [`matvec_variant`], else the built-in rule ([`DecodeDims::splits_for`]).
pub fn decode_splits(ctx: &Context, dims: &DecodeDims, capacity: usize) -> Result<usize> {
    let rule = DecodeDims::splits_for(ctx, capacity);
    let mode = mode(ctx)?;
    if mode == TuneMode::Off {
        return Ok(rule);
    }
    let key = decode_key(dims, capacity);
    if let Some(s) = ctx.tuned(&key).and_then(|e| parse_splits(&e.choice)) {
        return Ok(s);
    }
    if !may_measure(ctx, mode) {
        return Ok(rule);
    }
    let mut candidates = vec![rule];
    candidates.extend(
        [1, 2, 4, 8, 16, 32]
            .into_iter()
            .filter(|&s| s != rule && s <= capacity),
    );
    let report = tune_decode_among(
        ctx,
        dims,
        capacity,
        &candidates,
        &mut GpuClock::new(ctx),
        budget(ctx),
    )?;
    ctx.add_tuning_spent(Duration::from_secs_f64(report.elapsed_ms / 1e3));
    Ok(report.best.map_or(rule, |(s, _)| s))
}

/// A split count as the tuner names it.
fn splits_name(splits: usize) -> String {
    format!("{splits} splits")
}

/// The split count a cached choice names, if it names one.
fn parse_splits(name: &str) -> Option<usize> {
    name.strip_suffix(" splits")?.parse().ok().filter(|&s| s > 0)
}

/// Times a decoding step's attention split `candidates` ways over a full cache
/// of `capacity` positions of scratch keys and values (the query at its last
/// position) with `clock` within `budget`, and records the fastest on `ctx`
/// (and in the cache file).
pub fn tune_decode_among(
    ctx: &Context,
    dims: &DecodeDims,
    capacity: usize,
    candidates: &[usize],
    clock: &mut dyn TuneClock,
    budget: Duration,
) -> Result<TuneReport<usize>> {
    let start = Instant::now();
    let (kw, vw) = (dims.kv_heads * dims.dk, dims.kv_heads * dims.dv);
    let q = pattern(ctx, dims.heads * dims.dk, 0.37)?;
    let (k_new, v_new) = (pattern(ctx, kw, 0.41)?, pattern(ctx, vw, 0.43)?);
    let k_cache = pattern(ctx, capacity * kw, 0.61)?;
    let v_cache = pattern(ctx, capacity * vw, 0.67)?;
    let out = Tensor::zeros(ctx, &[dims.heads * dims.dv], crate::gpu::DType::F32)?;
    let position = DecodePosition::new(ctx, capacity)?;
    position.set(ctx, capacity.saturating_sub(1))?;
    let launch = |&splits: &usize| {
        attention_decode(
            ctx,
            &dims.with_splits(splits),
            &q,
            (&k_new, &v_new),
            (&k_cache, &v_cache),
            &position,
            &out,
        )
    };
    Ok(measure(
        ctx,
        decode_key(dims, capacity),
        candidates,
        |&s| splits_name(s),
        launch,
        clock,
        budget,
        start,
    ))
}

/// A tensor of `len` values in [-0.5, 0.5) that are not all alike (GPUs can run
/// faster on zeros, so timing on zeros would flatter every candidate).
fn pattern(ctx: &Context, len: usize, step: f32) -> Result<Tensor> {
    let data: Vec<f32> = (0..len).map(|i| ((i as f32 * step).fract()) - 0.5).collect();
    Tensor::from_f32(ctx, &data, &[len])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_and_bad_ones_say_what_to_use() {
        assert_eq!(TuneMode::parse("auto").unwrap(), TuneMode::Auto);
        assert_eq!(TuneMode::parse("").unwrap(), TuneMode::Auto);
        assert_eq!(TuneMode::parse(" ON ").unwrap(), TuneMode::On);
        assert_eq!(TuneMode::parse("0").unwrap(), TuneMode::Off);
        let e = TuneMode::parse("maybe").unwrap_err().to_string();
        assert!(e.contains("auto") && e.contains("off"), "{e}");
    }

    #[test]
    fn choices_round_trip_through_their_names() {
        for variant in MatmulVariant::ALL {
            for splits in [1, 2, 17] {
                let c = MatmulChoice { variant, splits };
                assert_eq!(parse_choice(&c.name()), Some(c));
            }
        }
        assert_eq!(parse_choice("tiled64/split0"), None);
        assert_eq!(parse_choice("tiled64/splitx"), None);
        assert_eq!(parse_choice("tiled96"), None);
    }

    #[test]
    fn keys_name_layout_sizes_and_batch_reduction() {
        let d = MatmulDesc::new(32, 64, 5408);
        assert_eq!(matmul_key(&d), "matmul_nn m32 n64 k5408 b1");
        let d = MatmulDesc::new(10, 32, 676).batched(32).trans_b().reduce_batch();
        assert_eq!(matmul_key(&d), "matmul_nt m10 n32 k676 b32 reduce");
    }
}
