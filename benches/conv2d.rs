//! The seed CNN's first convolution (batch 32, 1 -> 32 channels, 3x3, 28x28,
//! valid), forward and forward + backward, timed by wgml's GPU timer.
//! `cargo bench --bench conv2d -- --measurement-time 2 --warm-up-time 1`

mod common;

use criterion::{Criterion, criterion_group, criterion_main};
use wgml::bench::{self, BenchOptions, Size};

fn conv2d(c: &mut Criterion) {
    let Some(ctx) = common::context() else { return };
    let cases = bench::prepare(&ctx, &Size::Conv(bench::seed_conv(32)), &BenchOptions::default())
        .unwrap_or_else(|e| panic!("preparing conv2d: {e}"));
    for case in &cases {
        common::bench_case(c, &ctx, &case.kernel, "seed_cnn_layer1_batch32", case);
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = conv2d
}
criterion_main!(benches);
