//! A prepared kernel launch: pipeline, bind group (with its uniform parameters) and
//! workgroup grid, built once and recorded as often as needed.
//!
//! Launchers in `src/kernels/` return [`Dispatch`]es. Tests and one-off work run them
//! with [`Context::run`]; the graph executor records a whole training step's
//! dispatches into one compute pass and submits once.

use std::sync::atomic::Ordering;

use crate::error::{Error, Result};
use crate::gpu::Context;
use crate::gpu::Kernel;
use crate::gpu::pipeline::PipelineSlot;

/// Maximum workgroups per grid dimension guaranteed by WebGPU.
pub const MAX_GROUPS_PER_DIM: u32 = 65_535;

/// One kernel launch, ready to record.
#[derive(Debug, Clone)]
pub struct Dispatch {
    /// The shader entry point launched.
    pub kernel: Kernel,
    /// Filled before the dispatch can be recorded (see
    /// [`Context::deferring_pipelines`]).
    pub pipeline: PipelineSlot,
    /// Bind group 0: the bound buffers, with the params uniform at `@binding(0)` when
    /// there is one.
    pub bind_group: wgpu::BindGroup,
    /// Workgroups along x, y and z; a grid with a zero dimension is skipped when recorded.
    pub groups: [u32; 3],
    /// Keeps the uniform parameter buffer alive as long as the bind group.
    pub params: Option<wgpu::Buffer>,
}

/// Folds a 1-D count of workgroups into a grid whose dimensions stay within
/// `max_per_dim`. Kernels recover the linear id as
/// `wg.x + wg.y * num_wg.x + wg.z * num_wg.x * num_wg.y` and bounds-check it, since
/// the folded grid may hold a few more groups than asked.
pub fn fold_groups(total: u64, max_per_dim: u32) -> Result<[u32; 3]> {
    let max = max_per_dim.max(1) as u64;
    let total = total.max(1);
    if total <= max {
        return Ok([total as u32, 1, 1]);
    }
    let y = total.div_ceil(max);
    if y <= max {
        return Ok([max as u32, y as u32, 1]);
    }
    let z = y.div_ceil(max);
    if z <= max {
        return Ok([max as u32, max as u32, z as u32]);
    }
    Err(Error::TooLarge {
        what: format!("a dispatch of {total} workgroups"),
        bytes: total,
        limit: max * max * max,
    })
}

/// Something bound to a kernel: `(binding index in group 0, whole buffer)`.
pub type Binding<'a> = (u32, &'a wgpu::Buffer);

impl Context {
    /// Prepares a launch of `kernel`: `params` (a `#[repr(C)]` Pod struct) goes to a
    /// new uniform buffer at `@binding(0)`, each of `buffers` at its own binding.
    /// The bind group follows the entry point's layout (every buffer it uses, read
    /// from the shader), so exactly the bindings the entry point uses must be given.
    pub fn dispatch<P: bytemuck::Pod>(
        &self,
        kernel: Kernel,
        constants: &[(&'static str, f64)],
        params: &P,
        buffers: &[Binding<'_>],
        groups: [u32; 3],
    ) -> Result<Dispatch> {
        let uniform = self.create_buffer(
            &format!("{} params", kernel.entry),
            std::mem::size_of::<P>() as u64,
            wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        )?;
        self.queue.write_buffer(&uniform, 0, bytemuck::bytes_of(params));
        let mut all: Vec<Binding> = Vec::with_capacity(buffers.len() + 1);
        all.push((0, &uniform));
        all.extend_from_slice(buffers);
        let mut d = self.dispatch_raw(kernel, constants, &all, groups)?;
        d.params = Some(uniform);
        Ok(d)
    }

    /// Prepares a launch binding exactly `buffers`, with no parameter uniform of
    /// its own (for kernels whose uniforms are shared, e.g. the per-step
    /// optimizer values).
    pub fn dispatch_raw(
        &self,
        kernel: Kernel,
        constants: &[(&'static str, f64)],
        buffers: &[Binding<'_>],
        groups: [u32; 3],
    ) -> Result<Dispatch> {
        for (axis, &g) in groups.iter().enumerate() {
            if g > self.limits.max_compute_workgroups_per_dimension {
                return Err(Error::TooLarge {
                    what: format!("{} grid axis {axis} ({g} workgroups)", kernel.entry),
                    bytes: g as u64,
                    limit: self.limits.max_compute_workgroups_per_dimension as u64,
                });
            }
        }
        let layout = self.kernel_layout(kernel)?;
        let entries: Vec<wgpu::BindGroupEntry> = buffers
            .iter()
            .map(|&(binding, b)| wgpu::BindGroupEntry {
                binding,
                resource: b.as_entire_binding(),
            })
            .collect();
        let bind_group = self.scoped(&format!("binding buffers for {}", kernel.entry), || {
            self.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(kernel.entry),
                layout: &layout.bind_group,
                entries: &entries,
            })
        })?;
        self.counters.bind_groups_created.fetch_add(1, Ordering::Relaxed);
        // Last, so a dispatch refused above queues no pipeline in a deferral.
        let pipeline = self.pipeline_slot(kernel, constants)?;
        Ok(Dispatch {
            kernel,
            pipeline,
            bind_group,
            groups,
            params: None,
        })
    }

    /// Makes sure every one of `dispatches` has its pipeline: inside a deferral
    /// ([`Context::deferring_pipelines`]) on this thread, compiles what it has
    /// queued so far. Errors if a pipeline is still missing (its deferral failed,
    /// so the dispatch must be dropped).
    pub fn ready(&self, dispatches: &[&Dispatch]) -> Result<()> {
        if dispatches.iter().all(|d| d.pipeline.get().is_some()) {
            return Ok(());
        }
        self.compile_deferred()?;
        match dispatches.iter().find(|d| d.pipeline.get().is_none()) {
            None => Ok(()),
            Some(d) => Err(Error::invalid(format!(
                "the pipeline of {} was never compiled: the deferred build that made this \
                 dispatch failed; make the dispatch again",
                d.kernel.entry
            ))),
        }
    }

    /// Records `dispatches` in order into one compute pass.
    ///
    /// # Panics
    /// If a dispatch has no pipeline yet; call [`Context::ready`] first when the
    /// dispatches may come from a deferred build that has not finished (every
    /// recording path of wgml does).
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>, dispatches: &[&Dispatch]) {
        for d in dispatches {
            if d.groups.contains(&0) {
                continue;
            }
            let pipeline = d
                .pipeline
                .get()
                .expect("Context::ready before Context::record: a dispatch without its pipeline");
            pass.set_pipeline(pipeline);
            pass.set_bind_group(0, &d.bind_group, &[]);
            pass.dispatch_workgroups(d.groups[0], d.groups[1], d.groups[2]);
        }
    }

    /// [`Context::run`] for an owned list, as launchers return it.
    pub fn run_all(&self, dispatches: &[Dispatch]) -> Result<()> {
        self.run(&dispatches.iter().collect::<Vec<_>>())
    }

    /// Runs `dispatches` in order in one submission and waits for them.
    pub fn run(&self, dispatches: &[&Dispatch]) -> Result<()> {
        self.check()?;
        self.ready(dispatches)?;
        let mut encoder = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("wgml run"),
            });
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("wgml run"),
                timestamp_writes: None,
            });
            self.record(&mut pass, dispatches);
        }
        self.submit(encoder.finish())?;
        self.wait()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fold_keeps_small_grids_flat() {
        assert_eq!(fold_groups(10, 65_535).unwrap(), [10, 1, 1]);
        assert_eq!(fold_groups(0, 65_535).unwrap(), [1, 1, 1]);
    }

    #[test]
    fn fold_covers_every_group() {
        for total in [65_536u64, 200_000, 65_535 * 65_535 + 7] {
            let g = fold_groups(total, 65_535).unwrap();
            let cover = g.iter().map(|&x| x as u64).product::<u64>();
            assert!(
                cover >= total && g.iter().all(|&x| x <= 65_535),
                "{g:?} for {total}"
            );
            assert!(
                cover - total < (g[0] as u64) * (g[1] as u64),
                "too much slack: {g:?}"
            );
        }
        assert!(fold_groups(u64::MAX, 65_535).is_err());
    }
}
