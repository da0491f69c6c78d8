//! Where a training step's time goes: every dispatch of one step timed on its own
//! (submit and wait, median of repeats), sorted by time.

use std::time::Instant;

use crate::error::Result;
use crate::gpu::Context;
use crate::nn::Model;

/// One row of a profile.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ProfileRow {
    /// Position in the step.
    pub index: usize,
    pub kernel: &'static str,
    pub workgroups: [u32; 3],
    pub ms: f64,
}

/// Times each dispatch of a training step at `batch` (`repeats` runs each after a
/// warm-up run; median). The parameters change while this runs: profile a model
/// you do not need afterwards, or reload its weights.
pub fn profile_step(
    model: &mut Model,
    ctx: &Context,
    batch: usize,
    repeats: usize,
) -> Result<Vec<ProfileRow>> {
    let dispatches = model.train_dispatches(ctx, batch)?;
    model
        .step_uniform
        .write(ctx, &model.optimizer, model.step.max(1), model.optimizer.lr())?;
    let mut rows = Vec::with_capacity(dispatches.len());
    for (index, d) in dispatches.iter().enumerate() {
        ctx.run(&[d])?;
        let mut times: Vec<f64> = (0..repeats.max(1))
            .map(|_| {
                let t = Instant::now();
                ctx.run(&[d]).map(|_| t.elapsed().as_secs_f64() * 1e3)
            })
            .collect::<Result<_>>()?;
        times.sort_by(f64::total_cmp);
        rows.push(ProfileRow {
            index,
            kernel: d.kernel.entry,
            workgroups: d.groups,
            ms: times[times.len() / 2],
        });
    }
    Ok(rows)
}

/// The profile as a table sorted by time, with each row's share of the total.
pub fn profile_table(rows: &[ProfileRow]) -> String {
    let total: f64 = rows.iter().map(|r| r.ms).sum();
    let mut sorted = rows.to_vec();
    sorted.sort_by(|a, b| b.ms.total_cmp(&a.ms));
    let mut out = format!(
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
    out += &format!(
        "     {:<28} {:>20} {:>10.3}\n",
        "total (each dispatch alone)", "", total
    );
    out
}
