//! Where a training step's time goes: every dispatch of one step timed, sorted by
//! time.
//!
//! With GPU timestamps (see [`Timer`]) the whole step is one submission, recorded
//! as `Model::train_step` records it, with a timestamp between consecutive
//! dispatches: each dispatch's time is measured inside the real step. Without
//! them each dispatch is submitted and waited on alone (wall clock), which adds
//! the submission overhead to every row. Either way each row is the median over
//! the repeats, after one untimed warm-up.
//!
//! Then the host's side, on the wall clock: what one real `Model::train_step`
//! costs the CPU (uploading the batch, writing the step uniform, recording and
//! submitting the pass), and the pace of steps submitted back to back until the
//! GPU is done. When the first is close to the second, the CPU sets the pace
//! and faster kernels would not help; a small model on a fast GPU (the seed MLP)
//! can be there.

use std::time::Instant;

use crate::error::Result;
use crate::gpu::{Clock, Context, Dispatch, Timer};
use crate::graph::Loss;
use crate::nn::Model;
use crate::nn::model::Batch;

/// Steps submitted back to back for [`Profile::steady_ms`].
pub const STEADY_STEPS: usize = 20;

/// One row of a profile.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ProfileRow {
    /// Position in the step.
    pub index: usize,
    /// The dispatch's kernel, by its profile label.
    pub kernel: &'static str,
    /// Workgroups dispatched in x, y and z.
    pub workgroups: [u32; 3],
    /// Median time of this dispatch, milliseconds.
    pub ms: f64,
}

/// A training step's profile.
#[derive(Clone, Debug, PartialEq)]
pub struct Profile {
    /// One row per dispatch, in step order.
    pub rows: Vec<ProfileRow>,
    /// The clock every time here was measured with.
    pub clock: Clock,
    /// Median time of the whole step recorded as one compute pass, milliseconds.
    pub step_ms: f64,
    /// Timed runs behind each median.
    pub repeats: usize,
    /// Batch size of the profiled step.
    pub batch: usize,
    /// Median wall-clock time the host spends in one real training step
    /// (upload, step uniform, recording, submit; no wait), milliseconds.
    pub host_ms: f64,
    /// Of `host_ms`, the mean time inside `queue.submit`, milliseconds: small
    /// on GPUs; on CPU adapters the driver runs the step there, so `host_ms`
    /// is then no measure of the host's own cost.
    pub submit_ms: f64,
    /// Wall-clock time per step of [`STEADY_STEPS`] steps submitted back to back,
    /// until the GPU is done (median over the repeats), milliseconds: the pace
    /// of a training run, less the data loading.
    pub steady_ms: f64,
}

impl Profile {
    /// Sum of the per-dispatch times, milliseconds.
    pub fn total_ms(&self) -> f64 {
        self.rows.iter().map(|r| r.ms).sum()
    }
}

/// Profiles one training step at `batch` with the best clock the device has
/// (`repeats` timed runs after a warm-up; medians). The parameters change while
/// this runs: profile a model you do not need afterwards, or reload its weights.
pub fn profile_step(model: &mut Model, ctx: &Context, batch: usize, repeats: usize) -> Result<Profile> {
    let mut timer = Timer::new(ctx);
    profile_step_with(model, ctx, batch, repeats, &mut timer)
}

/// [`profile_step`] measured with `timer` (e.g. one forced to the wall clock).
pub fn profile_step_with(
    model: &mut Model,
    ctx: &Context,
    batch: usize,
    repeats: usize,
    timer: &mut Timer<'_>,
) -> Result<Profile> {
    let repeats = repeats.max(1);
    let dispatches = model.train_dispatches(ctx, batch)?;
    model
        .step_uniform
        .write(ctx, &model.optimizer, model.step.max(1), model.optimizer.lr())?;
    let refs: Vec<&Dispatch> = dispatches.iter().collect();
    timer.time_each(&refs)?;
    let mut per_dispatch: Vec<Vec<f64>> = vec![Vec::with_capacity(repeats); refs.len()];
    for _ in 0..repeats {
        for (times, t) in per_dispatch.iter_mut().zip(timer.time_each(&refs)?) {
            times.push(t);
        }
    }
    let step_ms = crate::bench::median(&timer.time_repeats(&refs, repeats)?);
    let rows = dispatches
        .iter()
        .zip(&per_dispatch)
        .enumerate()
        .map(|(index, (d, times))| ProfileRow {
            index,
            kernel: d.kernel.label(),
            workgroups: d.groups,
            ms: crate::bench::median(times),
        })
        .collect();
    let (host_ms, submit_ms, steady_ms) = host_and_steady(model, ctx, batch, repeats)?;
    Ok(Profile {
        rows,
        clock: timer.clock(),
        step_ms,
        repeats,
        batch,
        host_ms,
        submit_ms,
        steady_ms,
    })
}

/// Runs real training steps on a blank batch (zeros, label 0): the median host
/// time of one, the mean time of its submit, and the wall-clock time per step
/// of [`STEADY_STEPS`] back to back until the GPU is done, over `repeats`
/// rounds after a warm-up step.
fn host_and_steady(
    model: &mut Model,
    ctx: &Context,
    batch: usize,
    repeats: usize,
) -> Result<(f64, f64, f64)> {
    let sample: usize = model.spec.input_shape().iter().product();
    let x = vec![0f32; batch * sample];
    let (labels, values) = if model.loss == Loss::SparseCategoricalCrossentropy {
        (vec![0u32; batch * model.label_positions()], Vec::new())
    } else {
        (Vec::new(), vec![0f32; batch * model.output_dim()])
    };
    let blank = Batch {
        x: &x,
        labels: &labels,
        values: &values,
        len: batch,
    };
    let lr = model.optimizer.lr();
    model.train_step(ctx, &blank, lr, |_, _| {})?;
    ctx.wait()?;
    let mut host = Vec::with_capacity(repeats * STEADY_STEPS);
    let mut steady = Vec::with_capacity(repeats);
    let before = ctx.counters();
    for _ in 0..repeats {
        let round = Instant::now();
        for _ in 0..STEADY_STEPS {
            let step = Instant::now();
            model.train_step(ctx, &blank, lr, |_, _| {})?;
            host.push(step.elapsed().as_secs_f64() * 1e3);
        }
        ctx.wait()?;
        steady.push(round.elapsed().as_secs_f64() * 1e3 / STEADY_STEPS as f64);
    }
    let submitted = ctx.counters() - before;
    let submit_ms = submitted.submit_nanos as f64 * 1e-6 / submitted.submissions.max(1) as f64;
    Ok((
        crate::bench::median(&host),
        submit_ms,
        crate::bench::median(&steady),
    ))
}

/// The profile as a table sorted by time, with each row's share of the sum, the
/// whole step's time and the clock used.
pub fn profile_table(profile: &Profile) -> String {
    let total = profile.total_ms();
    let mut sorted = profile.rows.clone();
    sorted.sort_by(|a, b| b.ms.total_cmp(&a.ms));
    let mut out = format!(
        "training step at batch {}: {} dispatches; median of {} runs; clock: {}\n",
        profile.batch,
        profile.rows.len(),
        profile.repeats,
        profile.clock.describe()
    );
    out += &format!(
        "{:>3}  {:<28} {:>20} {:>10} {:>7}\n",
        "#", "kernel", "workgroups", "ms", "share"
    );
    for r in &sorted {
        out += &format!(
            "{:>3}  {:<28} {:>20} {:>10.3} {:>6.1}%\n",
            r.index,
            r.kernel,
            format!("{}x{}x{}", r.workgroups[0], r.workgroups[1], r.workgroups[2]),
            r.ms,
            100.0 * r.ms / total.max(1e-12)
        );
    }
    let sum_label = match profile.clock {
        Clock::GpuTimestamps => "sum of dispatches",
        Clock::WallClock => "sum (each dispatch alone)",
    };
    out += &format!("     {:<28} {:>20} {:>10.3}\n", sum_label, "", total);
    out += &format!(
        "     {:<28} {:>20} {:>10.3}\n",
        "whole step (one pass)", "", profile.step_ms
    );
    out += &format!(
        "     {:<49} {:>10.3}  of which {:.3} in queue.submit\n",
        "host per step (upload, record, submit)", profile.host_ms, profile.submit_ms
    );
    out += &format!(
        "     {:<49} {:>10.3}  {}\n",
        format!("per step, {STEADY_STEPS} back to back (wall clock)"),
        profile.steady_ms,
        pace(profile)
    );
    out
}

/// Who sets the pace of back-to-back steps: the host when recording and
/// submitting a step takes most of a step's wall time, unless the time is the
/// driver running the work inside submit (CPU adapters).
fn pace(profile: &Profile) -> String {
    let share = profile.host_ms / profile.steady_ms.max(1e-12);
    if profile.submit_ms >= 0.5 * profile.host_ms && share >= 0.8 {
        "the driver runs each step inside queue.submit (as CPU adapters do): no host/GPU split to see"
            .to_string()
    } else if share >= 0.8 {
        format!(
            "host-bound: the CPU's {:.0}% of each step sets the pace",
            100.0 * share
        )
    } else {
        format!("the GPU sets the pace (host {:.0}% of each step)", 100.0 * share)
    }
}
