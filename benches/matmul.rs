//! Square matmuls (256, 512, 1024) timed by wgml's GPU timer.
//! `cargo bench --bench matmul -- --measurement-time 2 --warm-up-time 1`

mod common;

use criterion::{Criterion, criterion_group, criterion_main};
use wgml::bench::{self, BenchOptions, Size};

fn matmul(c: &mut Criterion) {
    let Some(ctx) = common::context() else { return };
    let opts = BenchOptions::default();
    for s in [256, 512, 1024] {
        let cases = bench::prepare(&ctx, &Size::Matmul { m: s, n: s, k: s }, &opts)
            .unwrap_or_else(|e| panic!("preparing matmul {s}: {e}"));
        for case in &cases {
            common::bench_case(c, &ctx, &case.kernel, &s.to_string(), case);
        }
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = matmul
}
criterion_main!(benches);
