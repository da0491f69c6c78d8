//! Timing GPU work: timestamp queries when the device has them, host wall time
//! of submit-and-wait otherwise.
//!
//! With [`Clock::GpuTimestamps`] a [`Timer`] records the dispatches with
//! timestamps around them (the beginning and end of a compute pass, or
//! `write_timestamp` between dispatches inside one pass), resolves the queries
//! into a buffer, copies that to a mappable buffer and reads it back once per
//! submission; ticks become milliseconds through `Queue::get_timestamp_period`.
//! These times are the GPU's own: they leave out submission overhead, driver
//! latency and the readback. With [`Clock::WallClock`] each timed unit is its own
//! submission and the time is the host's, from submit until the wait returns.
//!
//! Timestamps are written at the bottom of the pipe (Vulkan), so the difference
//! between two of them is the time the work recorded between them took to
//! finish. A device whose timestamps go backwards (some drivers reset the counter
//! on a power-state change) gives a time of 0 for that interval, never a
//! negative one.

use std::time::Instant;

use crate::error::{Error, Result};
use crate::gpu::{Context, Dispatch};

/// Which clock measured a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Clock {
    /// GPU timestamp queries: the device's own time between the start and end of
    /// the work.
    GpuTimestamps,
    /// Host wall time from submit until the wait returns: includes submission
    /// overhead and driver latency.
    WallClock,
}

impl Clock {
    /// Short name, as written in JSON and CSV: `gpu-timestamps` or `wall-clock`.
    pub fn name(self) -> &'static str {
        match self {
            Clock::GpuTimestamps => "gpu-timestamps",
            Clock::WallClock => "wall-clock",
        }
    }

    /// A sentence for people: what the clock measures.
    pub fn describe(self) -> &'static str {
        match self {
            Clock::GpuTimestamps => "GPU timestamp queries (device time, no submit/readback overhead)",
            Clock::WallClock => "host wall clock of submit + wait (includes submission overhead)",
        }
    }
}

impl std::fmt::Display for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Most timestamps one query set may hold (wgpu's `QUERY_SET_MAX_QUERIES`).
const MAX_QUERIES: u32 = wgpu::QUERY_SET_MAX_QUERIES;

/// The query set and the buffers its results travel through, sized for
/// `capacity` timestamps; reused across measurements and grown when needed.
struct Queries {
    set: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    readback: wgpu::Buffer,
    capacity: u32,
}

/// Times sequences of prepared dispatches; see the module docs.
pub struct Timer<'a> {
    ctx: &'a Context,
    clock: Clock,
    /// Nanoseconds per timestamp tick.
    period_ns: f64,
    queries: Option<Queries>,
}

impl std::fmt::Debug for Timer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Timer")
            .field("clock", &self.clock)
            .field("period_ns", &self.period_ns)
            .finish()
    }
}

impl<'a> Timer<'a> {
    /// A timer with the best clock `ctx` offers: GPU timestamps when the device
    /// has `TIMESTAMP_QUERY` (and a non-zero timestamp period), else wall clock.
    pub fn new(ctx: &'a Context) -> Timer<'a> {
        let clock = if Self::timestamps_usable(ctx) {
            Clock::GpuTimestamps
        } else {
            Clock::WallClock
        };
        Timer {
            ctx,
            clock,
            period_ns: ctx.queue.get_timestamp_period() as f64,
            queries: None,
        }
    }

    /// A timer using `clock`; asking for [`Clock::GpuTimestamps`] on a device
    /// without them is an error.
    pub fn with_clock(ctx: &'a Context, clock: Clock) -> Result<Timer<'a>> {
        if clock == Clock::GpuTimestamps && !Self::timestamps_usable(ctx) {
            return Err(Error::invalid(format!(
                "GPU timestamps are not available on '{}' (no TIMESTAMP_QUERY feature or a zero timestamp period); use the wall clock",
                ctx.info.name
            )));
        }
        let mut t = Timer::new(ctx);
        t.clock = clock;
        Ok(t)
    }

    fn timestamps_usable(ctx: &Context) -> bool {
        ctx.has_timestamps() && ctx.queue.get_timestamp_period() > 0.0
    }

    /// The clock this timer measures with.
    pub fn clock(&self) -> Clock {
        self.clock
    }

    /// Runs `dispatches` once, in order, in one compute pass of one submission,
    /// and returns how long they took, in milliseconds.
    pub fn time(&mut self, dispatches: &[&Dispatch]) -> Result<f64> {
        Ok(self.time_repeats(dispatches, 1)?[0])
    }

    /// Runs `dispatches` (in order, in one compute pass) `repeats` times and
    /// returns each run's time in milliseconds. With timestamps the runs are
    /// back-to-back passes of one submission (a few submissions past 2,048 runs)
    /// read back once; with the wall clock each run is its own submission.
    pub fn time_repeats(&mut self, dispatches: &[&Dispatch], repeats: usize) -> Result<Vec<f64>> {
        check_work("Timer::time_repeats", dispatches)?;
        self.ctx.ready(dispatches)?;
        if repeats == 0 {
            return Err(Error::invalid("Timer::time_repeats: repeats must be at least 1"));
        }
        if self.clock == Clock::WallClock {
            return (0..repeats).map(|_| self.wall(dispatches)).collect();
        }
        let per_submission = (MAX_QUERIES / 2) as usize;
        let mut out = Vec::with_capacity(repeats);
        let mut left = repeats;
        while left > 0 {
            let runs = left.min(per_submission);
            left -= runs;
            let ticks = self.with_queries(2 * runs as u32, |encoder, set| {
                for r in 0..runs as u32 {
                    let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                        label: Some("wgml timed"),
                        timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                            query_set: set,
                            beginning_of_pass_write_index: Some(2 * r),
                            end_of_pass_write_index: Some(2 * r + 1),
                        }),
                    });
                    self.ctx.record(&mut pass, dispatches);
                }
            })?;
            out.extend(ticks.chunks_exact(2).map(|t| self.ms(t[0], t[1])));
        }
        Ok(out)
    }

    /// Runs `dispatches` once, in order, and returns the time of each, in
    /// milliseconds. With `TIMESTAMP_QUERY_INSIDE_PASSES` they share one compute
    /// pass (as a training step records them) with a timestamp before the first
    /// and after each; otherwise each gets its own pass with timestamps at its
    /// beginning and end, all in one submission. With the wall clock each
    /// dispatch is its own submission.
    pub fn time_each(&mut self, dispatches: &[&Dispatch]) -> Result<Vec<f64>> {
        check_work("Timer::time_each", dispatches)?;
        self.ctx.ready(dispatches)?;
        if self.clock == Clock::WallClock {
            return dispatches.iter().map(|d| self.wall(&[d])).collect();
        }
        let inside = self
            .ctx
            .features
            .contains(wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES);
        let per_submission = if inside {
            MAX_QUERIES as usize - 1
        } else {
            MAX_QUERIES as usize / 2
        };
        let mut out = Vec::with_capacity(dispatches.len());
        for chunk in dispatches.chunks(per_submission) {
            let n = chunk.len() as u32;
            if inside {
                let ticks = self.with_queries(n + 1, |encoder, set| {
                    let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                        label: Some("wgml timed each"),
                        timestamp_writes: None,
                    });
                    pass.write_timestamp(set, 0);
                    for (i, d) in chunk.iter().enumerate() {
                        self.ctx.record(&mut pass, &[d]);
                        pass.write_timestamp(set, i as u32 + 1);
                    }
                })?;
                out.extend(ticks.windows(2).map(|t| self.ms(t[0], t[1])));
            } else {
                let ticks = self.with_queries(2 * n, |encoder, set| {
                    for (i, d) in chunk.iter().enumerate() {
                        let i = i as u32;
                        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                            label: Some("wgml timed each"),
                            timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                                query_set: set,
                                beginning_of_pass_write_index: Some(2 * i),
                                end_of_pass_write_index: Some(2 * i + 1),
                            }),
                        });
                        self.ctx.record(&mut pass, &[d]);
                    }
                })?;
                out.extend(ticks.chunks_exact(2).map(|t| self.ms(t[0], t[1])));
            }
        }
        Ok(out)
    }

    /// Milliseconds between two timestamps (0 if the counter went backwards).
    fn ms(&self, start: u64, end: u64) -> f64 {
        end.saturating_sub(start) as f64 * self.period_ns * 1e-6
    }

    /// One submission of `dispatches` in one pass, host-timed.
    fn wall(&self, dispatches: &[&Dispatch]) -> Result<f64> {
        let t0 = Instant::now();
        self.ctx.run(dispatches)?;
        Ok(t0.elapsed().as_secs_f64() * 1e3)
    }

    /// Records work with `count` timestamps through `record`, resolves and reads
    /// them back (one submission, one wait) and returns the raw ticks.
    fn with_queries(
        &mut self,
        count: u32,
        record: impl FnOnce(&mut wgpu::CommandEncoder, &wgpu::QuerySet),
    ) -> Result<Vec<u64>> {
        self.ensure_capacity(count)?;
        let q = self.queries.as_ref().expect("ensure_capacity filled it");
        let bytes = count as u64 * wgpu::QUERY_SIZE as u64;
        let ctx = self.ctx;
        let commands = ctx.scoped("recording timed GPU work", || {
            let mut encoder = ctx
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("wgml timer"),
                });
            record(&mut encoder, &q.set);
            encoder.resolve_query_set(&q.set, 0..count, &q.resolve, 0);
            encoder.copy_buffer_to_buffer(&q.resolve, 0, &q.readback, 0, bytes);
            encoder.finish()
        })?;
        ctx.submit(commands)?;
        let (sender, receiver) = futures_intrusive::channel::shared::oneshot_channel();
        q.readback
            .slice(..bytes)
            .map_async(wgpu::MapMode::Read, move |r| {
                let _ = sender.send(r);
            });
        ctx.wait()?;
        match pollster::block_on(receiver.receive()) {
            Some(Ok(())) => {}
            Some(Err(e)) => return Err(Error::Readback(e.to_string())),
            None => return Err(Error::Readback("the timestamp map callback never ran".into())),
        }
        let ticks = {
            let view = q
                .readback
                .slice(..bytes)
                .get_mapped_range()
                .map_err(|e| Error::Readback(e.to_string()))?;
            bytemuck::pod_collect_to_vec::<u8, u64>(&view)
        };
        q.readback.unmap();
        Ok(ticks)
    }

    /// Makes sure the query set holds at least `count` timestamps.
    fn ensure_capacity(&mut self, count: u32) -> Result<()> {
        if count > MAX_QUERIES {
            return Err(Error::invalid(format!(
                "timing needs {count} timestamps in one submission; a query set holds at most {MAX_QUERIES}"
            )));
        }
        if self.queries.as_ref().is_some_and(|q| q.capacity >= count) {
            return Ok(());
        }
        // Grow in powers of two so a sweep of sizes does not reallocate each time.
        let capacity = count.next_power_of_two().clamp(16, MAX_QUERIES);
        let bytes = capacity as u64 * wgpu::QUERY_SIZE as u64;
        let ctx = self.ctx;
        let set = ctx.scoped("creating a timestamp query set", || {
            ctx.device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("wgml timestamps"),
                ty: wgpu::QueryType::Timestamp,
                count: capacity,
            })
        })?;
        let resolve = ctx.create_buffer(
            "timestamp resolve",
            bytes,
            wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
        )?;
        let readback = ctx.create_buffer(
            "timestamp readback",
            bytes,
            wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        )?;
        self.queries = Some(Queries {
            set,
            resolve,
            readback,
            capacity,
        });
        Ok(())
    }
}

/// Rejects an empty list of dispatches: there would be nothing to time.
fn check_work(op: &str, dispatches: &[&Dispatch]) -> Result<()> {
    if dispatches.is_empty() {
        return Err(Error::invalid(format!("{op}: no dispatches to time")));
    }
    Ok(())
}
