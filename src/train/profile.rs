//! Where a training step's time goes: every dispatch of one step timed, sorted by
//! time.
//!
//! With GPU timestamps (see [`Timer`]) the whole step is one submission, recorded
//! as `Model::train_step` records it, with a timestamp between consecutive
//! dispatches: each dispatch's time is measured inside the real step. Without
//! them each dispatch is submitted and waited on alone (wall clock), which adds
//! the submission overhead to every row. Either way each row is the median over
//! the repeats, after one untimed warm-up.

use crate::error::Result;
use crate::gpu::{Clock, Context, Dispatch, Timer};
use crate::nn::Model;

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
    Ok(Profile {
        rows,
        clock: timer.clock(),
        step_ms,
        repeats,
        batch,
    })
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
    out
}
