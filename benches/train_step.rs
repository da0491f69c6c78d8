//! One training step of the seed CNN at batch 32 (forward, loss, backward, Adam
//! update in one compute pass), timed by wgml's GPU timer; throughput in images.
//! `cargo bench --bench train_step -- --measurement-time 2 --warm-up-time 1`

mod common;

use criterion::{Criterion, criterion_group, criterion_main};
use wgml::bench::{self, BenchOptions, Size};

fn train_step(c: &mut Criterion) {
    let Some(ctx) = common::context() else { return };
    let cases = bench::prepare(&ctx, &Size::TrainStep { batch: 32 }, &BenchOptions::default())
        .unwrap_or_else(|e| panic!("preparing the training step: {e}"));
    for case in &cases {
        common::bench_case(c, &ctx, "train_step_cnn", "batch32", case);
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = train_step
}
criterion_main!(benches);
