//! Shared by the criterion benches: the GPU context (or a message and no
//! benchmark when there is no adapter) and a criterion runner that measures
//! prepared dispatches with wgml's [`Timer`] (GPU timestamps when the device has
//! them, else submit + wait wall time) through `iter_custom`.

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput};
use wgml::bench::{Case, Work};
use wgml::gpu::{Dispatch, Timer};
use wgml::{Context, ContextOptions};

/// The default adapter, or `None` after printing why the benches are skipped.
pub fn context() -> Option<Context> {
    match Context::new(&ContextOptions::default()) {
        Ok(ctx) => {
            let clock = Timer::new(&ctx).clock();
            eprintln!(
                "wgml benches on {} ({:?}); clock: {}",
                ctx.info.name,
                ctx.info.backend,
                clock.describe()
            );
            Some(ctx)
        }
        Err(e) => {
            eprintln!("no GPU benchmark run: {e}");
            None
        }
    }
}

/// Benchmarks `case` as `group/parameter`; criterion's throughput is the case's
/// work (elements = flops, bytes, or images), so it reports FLOP/s, B/s or images/s.
pub fn bench_case(c: &mut Criterion, ctx: &Context, group: &str, parameter: &str, case: &Case) {
    let refs: Vec<&Dispatch> = case.dispatches.iter().collect();
    let mut timer = Timer::new(ctx);
    let mut g = c.benchmark_group(group);
    g.throughput(match case.work {
        Work::Flops(f) => Throughput::Elements(f as u64),
        Work::Bytes(b) => Throughput::Bytes(b as u64),
        Work::Images(n) => Throughput::Elements(n as u64),
    });
    g.bench_function(BenchmarkId::from_parameter(parameter), |b| {
        b.iter_custom(|iters| {
            let times = timer
                .time_repeats(&refs, iters as usize)
                .unwrap_or_else(|e| panic!("timing {group}/{parameter}: {e}"));
            Duration::from_secs_f64(times.iter().sum::<f64>() * 1e-3)
        })
    });
    g.finish();
}
