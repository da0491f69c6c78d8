//! Long runs: after the first steps, training creates no GPU buffer, bind group or
//! pipeline and the process's memory stays flat. The run happens in a child
//! process (this test binary started again on `soak_child`), so the resident
//! memory measured is the training's alone, not the other tests'. CI runs 5,000
//! steps; `soak_100k` (ignored: about a minute on lavapipe; .ci/run runs it) runs 100,000.

use std::process::Command;

use wgml::data::Dataset;
use wgml::kernels::optim::Optimizer;
use wgml::nn::{Layer, LayerActivation as A, Loss, Sequential};
use wgml::train::{FitConfig, fit};
use wgml::{Context, ContextOptions};

/// Environment variable that makes `soak_child` run, with its number of steps.
const STEPS_ENV: &str = "WGML_SOAK_STEPS";

/// Resident memory of this process, KiB (Linux: /proc/self/statm).
fn rss_kib() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm (Linux)");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap();
    pages * 4
}

/// The soak itself, when started by `soak` in a child process with the number of
/// steps in its environment (it prints its figures); in the suite's own run it has
/// nothing to do and passes.
#[test]
fn soak_child() {
    let Ok(steps) = std::env::var(STEPS_ENV) else {
        return;
    };
    let steps: u64 = steps.parse().unwrap();
    let ctx = Context::new(&ContextOptions::default()).unwrap();
    let data = Dataset::two_blobs(4);
    let spec = Sequential::new(&[2])
        .add(Layer::dense(8, A::Relu))
        .add(Layer::dense(1, A::Sigmoid));
    let mut model = spec
        .compile(&ctx, Loss::BinaryCrossentropy, Optimizer::adam(0.01), 2)
        .unwrap();
    // Batches of 7 over 75 samples: a partial last batch every epoch, so both
    // plans and the epoch-end reads run throughout.
    let cfg = |max_steps| FitConfig {
        epochs: usize::MAX / 2,
        batch_size: 7,
        validation_split: 0.2,
        verbose: false,
        max_steps: Some(max_steps),
        ..FitConfig::default()
    };
    // Live buffers and their bytes, as wgpu counts them (the readbacks of the
    // epoch-end metrics make short-lived staging buffers; those must come and go).
    let live = || {
        ctx.wait().unwrap();
        let c = ctx.device.get_internal_counters();
        (c.hal.buffers.read() as u64, c.hal.buffer_memory.read() as u64)
    };
    fit(&mut model, &ctx, &data.train, &cfg(500)).unwrap();
    let (c0, (b0, bytes0), m0) = (ctx.counters(), live(), rss_kib());
    fit(&mut model, &ctx, &data.train, &cfg(steps)).unwrap();
    let (c1, (b1, bytes1), m1) = (ctx.counters(), live(), rss_kib());
    println!(
        "SOAK steps {} bind_groups {} pipelines {} live_buffers {b0} {b1} live_bytes {bytes0} {bytes1} rss_kib {m0} {m1}",
        model.step - 500,
        c1.bind_groups_created - c0.bind_groups_created,
        c1.pipelines_created - c0.pipelines_created,
    );
}

/// Runs `soak_child` for `steps` steps in a child process and checks its figures.
fn soak(steps: u64) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "soak::soak_child",
            "--include-ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(STEPS_ENV, steps.to_string())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the soak child failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("SOAK ").map(|(_, rest)| rest))
        .unwrap_or_else(|| panic!("no SOAK line in: {stdout}"));
    let f: Vec<u64> = line.split_whitespace().filter_map(|w| w.parse().ok()).collect();
    let [
        ran,
        groups,
        pipelines,
        buffers0,
        buffers1,
        bytes0,
        bytes1,
        rss0,
        rss1,
    ] = f[..]
    else {
        panic!("unexpected soak line: {line}");
    };
    println!("SOAK {line}");
    assert_eq!(ran, steps, "{line}");
    assert_eq!(
        (groups, pipelines),
        (0, 0),
        "bind groups or pipelines created while training: {line}"
    );
    assert_eq!(
        (buffers1, bytes1),
        (buffers0, bytes0),
        "live GPU buffers changed: {line}"
    );
    // Flat: under 8 MiB of growth however long the run (allocator noise and
    // wgpu's first-use caches fit in that; a leak of a few hundred bytes a step
    // does not, at 5,000 steps and more).
    assert!(
        rss1 < rss0 + 8 * 1024,
        "resident memory grew from {rss0} to {rss1} KiB over {steps} steps"
    );
}

#[test]
fn training_memory_stays_flat_over_5000_steps() {
    soak(5_000);
}

#[test]
#[ignore = "about a minute on lavapipe: run by .ci/run with --ignored; every run soaks 5,000 steps"]
fn soak_100k() {
    soak(100_000);
}
