//! The timer, the benchmark rows behind `wgml bench`, their JSON and CSV, the
//! training-step profile, and the command line's argument errors. Sizes are tiny:
//! these check that the measurements are well formed, not how fast anything is.

use std::process::Command;

use wgml::bench::{self, Bench, BenchOptions, BenchRow, Size};
use wgml::gpu::{Clock, Dispatch, Timer};
use wgml::kernels::conv::Padding;
use wgml::kernels::matmul::{self, MatmulDesc};
use wgml::nn::zoo;
use wgml::train::profile;
use wgml::{Context, Error, Tensor};

use crate::common::*;

fn matmul_dispatch(ctx: &Context, s: usize) -> Dispatch {
    let mut r = rng(s as u64);
    let a = Tensor::from_f32(ctx, &uniform(&mut r, s * s, -1.0, 1.0), &[s * s]).unwrap();
    let b = Tensor::from_f32(ctx, &uniform(&mut r, s * s, -1.0, 1.0), &[s * s]).unwrap();
    let c = nan_tensor(ctx, &[s * s]);
    // One dispatch (no split-K), so the tests time exactly one kernel.
    let mut list = matmul::matmul(ctx, &MatmulDesc::new(s, s, s).split_k(1), &a, &b, None, &c).unwrap();
    assert_eq!(list.len(), 1, "an unsplit product is one dispatch");
    list.remove(0)
}

fn assert_positive(what: &str, times: &[f64]) {
    assert!(!times.is_empty(), "{what}: no times");
    for (i, &t) in times.iter().enumerate() {
        assert!(t.is_finite() && t > 0.0, "{what}: time {i} is {t} ms");
    }
}

fn median(v: &[f64]) -> f64 {
    bench::median(v)
}

#[test]
fn timer_uses_timestamps_when_the_device_has_them() {
    let (_g, ctx) = gpu();
    let t = Timer::new(ctx);
    let want = if ctx.has_timestamps() {
        Clock::GpuTimestamps
    } else {
        Clock::WallClock
    };
    assert_eq!(t.clock(), want);
    let wall = Timer::with_clock(ctx, Clock::WallClock).unwrap();
    assert_eq!(wall.clock(), Clock::WallClock);
    assert_eq!(Clock::GpuTimestamps.name(), "gpu-timestamps");
    assert_eq!(Clock::WallClock.to_string(), "wall-clock");
}

/// Times are positive and follow the work: a 256³ matmul takes longer than a
/// 16³ one, and the same dispatch twice in one pass takes longer than once.
#[test]
fn timer_times_follow_the_work_with_either_clock() {
    let (_g, ctx) = gpu_exclusive();
    let small = matmul_dispatch(ctx, 16);
    let big = matmul_dispatch(ctx, 256);
    for clock in [Clock::GpuTimestamps, Clock::WallClock] {
        if clock == Clock::GpuTimestamps && !ctx.has_timestamps() {
            continue;
        }
        let mut t = Timer::with_clock(ctx, clock).unwrap();
        t.time(&[&big]).unwrap(); // warm-up
        assert_eq!(t.time_repeats(&[&big], 3).unwrap().len(), 3);
        // Interleaved, and the fastest of each compared: other tests run on the
        // CPU at the same time, and on lavapipe they slow the GPU down too.
        let (mut once, mut twice) = (Vec::new(), Vec::new());
        for _ in 0..5 {
            once.extend(t.time_repeats(&[&big], 1).unwrap());
            twice.extend(t.time_repeats(&[&big, &big], 1).unwrap());
        }
        assert_positive(&format!("{clock}: big once"), &once);
        assert_positive(&format!("{clock}: big twice"), &twice);
        let fastest = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
        assert!(
            fastest(&twice) > 1.2 * fastest(&once),
            "{clock}: twice the work took {twice:?} ms, once {once:?} ms"
        );
        let mut each = Vec::new();
        for _ in 0..3 {
            let e = t.time_each(&[&small, &big, &small]).unwrap();
            assert_eq!(e.len(), 3);
            assert_positive(&format!("{clock}: each"), &e);
            each.push(e);
        }
        let per: Vec<f64> = (0..3)
            .map(|i| median(&each.iter().map(|e| e[i]).collect::<Vec<_>>()))
            .collect();
        assert!(
            per[1] > per[0] && per[1] > per[2],
            "{clock}: per-dispatch medians {per:?} ms: the 256³ matmul should be the slowest"
        );
    }
}

#[test]
fn timer_rejects_empty_work() {
    let (_g, ctx) = gpu();
    let d = matmul_dispatch(ctx, 4);
    let mut t = Timer::new(ctx);
    let e = t.time(&[]).unwrap_err();
    assert!(e.to_string().contains("no dispatches"), "{e}");
    let e = t.time_each(&[]).unwrap_err();
    assert!(e.to_string().contains("no dispatches"), "{e}");
    let e = t.time_repeats(&[&d], 0).unwrap_err();
    assert!(
        matches!(e, Error::InvalidArgument(_)) && e.to_string().contains("repeats"),
        "{e}"
    );
}

fn tiny_options() -> BenchOptions {
    BenchOptions {
        repeat: 3,
        warmup: 1,
        peak_gflops: Some(100.0),
        peak_gbps: Some(50.0),
        ..BenchOptions::default()
    }
}

fn tiny_rows(ctx: &Context, b: Bench, sizes: &[&str]) -> Vec<BenchRow> {
    let sizes: Vec<Size> = sizes.iter().map(|s| b.parse_size(s).unwrap()).collect();
    bench::run(ctx, &sizes, &tiny_options()).unwrap()
}

/// Checks a row's keys (in order) and that every number is positive and finite.
fn check_row(row: &BenchRow, kernel: &str, shape_keys: &[&str], throughput: &str) {
    assert_eq!(row.kernel, kernel);
    let json = serde_json::to_value(row).unwrap();
    let obj = json.as_object().unwrap();
    let mut want: Vec<&str> = vec!["kernel", "variant"];
    want.extend(shape_keys);
    want.extend(["ms", "min_ms", throughput]);
    if throughput != "images_per_s" {
        want.push("fraction_of_peak");
    }
    want.extend(["repeat", "clock", "adapter"]);
    let keys: Vec<&str> = row.fields().iter().map(|(k, _)| *k).collect();
    assert_eq!(keys, want, "{kernel}: keys");
    assert_eq!(obj.len(), want.len(), "{kernel}: JSON keys {obj:?}");
    for key in want
        .iter()
        .filter(|k| !["kernel", "variant", "clock", "adapter"].contains(k))
    {
        let v = obj[*key].as_f64().unwrap_or(f64::NAN);
        assert!(v.is_finite() && v > 0.0, "{kernel}: {key} = {:?}", obj[*key]);
    }
    assert!(
        row.min_ms <= row.ms,
        "{kernel}: min {} > median {}",
        row.min_ms,
        row.ms
    );
    assert_eq!(row.repeat, 3);
    assert!(!row.variant.is_empty() && !row.adapter.is_empty());
    let peak = match throughput {
        "gflops" => row.gflops.map(|g| g / 100.0),
        "gbps" => row.gbps.map(|g| g / 50.0),
        _ => None,
    };
    assert_eq!(row.fraction_of_peak, peak, "{kernel}: fraction_of_peak");
}

#[test]
fn matmul_rows_keep_their_keys_and_sizes() {
    let (_g, ctx) = gpu();
    let rows = tiny_rows(ctx, Bench::Matmul, &["8", "8x16x24"]);
    assert_eq!(rows.len(), 2);
    for r in &rows {
        check_row(r, "matmul_nn", &["m", "n", "k"], "gflops");
    }
    assert_eq!(
        (rows[0].dim("m"), rows[0].dim("n"), rows[0].dim("k")),
        (Some(8), Some(8), Some(8))
    );
    assert_eq!(
        (rows[1].dim("m"), rows[1].dim("n"), rows[1].dim("k")),
        (Some(8), Some(16), Some(24))
    );
    let want = 2.0 * 8.0 * 16.0 * 24.0 / (rows[1].ms * 1e-3) / 1e9;
    assert!(
        (rows[1].gflops.unwrap() - want).abs() <= 1e-9 * want,
        "gflops from ms"
    );
}

/// Per size: the im2col forward and forward + backward rows, then, on CPU adapters
/// that train with the fused conv + ReLU + max-pool pair, its two rows (the second
/// size's 4x4 output pools to 2x2).
#[test]
fn conv_rows_are_forward_and_forward_backward_with_3x_flops() {
    let (_g, ctx) = gpu();
    let rows = tiny_rows(ctx, Bench::Conv, &["2", "2x3x9x9x4x3x2"]);
    let keys = ["n", "c_in", "h", "w", "c_out", "kh", "kw", "stride"];
    let fused = ctx.is_cpu() && wgml::kernels::conv_pool::supported(ctx);
    let per_size = if fused { 4 } else { 2 };
    assert_eq!(rows.len(), 2 * per_size);
    let mut names = vec!["conv2d_forward", "conv2d_forward_backward"];
    if fused {
        names.extend(["conv_relu_maxpool_forward", "conv_relu_maxpool_forward_dw"]);
    }
    for size in 0..2 {
        for (i, name) in names.iter().enumerate() {
            check_row(&rows[size * per_size + i], name, &keys, "gflops");
        }
    }
    // "2" is the seed CNN's first layer at batch 2.
    let dims: Vec<usize> = keys.iter().map(|k| rows[0].dim(k).unwrap()).collect();
    assert_eq!(dims, [2, 1, 28, 28, 32, 3, 3, 1]);
    assert_eq!(rows[per_size].dim("stride"), Some(2));
    // Flops: forward 2·N·C_out·OH·OW·C_in·KH·KW, forward+backward 3x; the fused
    // pair's forward + weight gradient 2x.
    let fwd = 2.0 * (2 * 32 * 26 * 26) as f64 * 9.0;
    let mut expected = vec![(&rows[0], fwd), (&rows[1], 3.0 * fwd)];
    if fused {
        expected.extend([(&rows[2], fwd), (&rows[3], 2.0 * fwd)]);
    }
    for (r, flops) in expected {
        let want = flops / (r.ms * 1e-3) / 1e9;
        assert!(
            (r.gflops.unwrap() - want).abs() <= 1e-9 * want,
            "{}: gflops",
            r.kernel
        );
    }
}

#[test]
fn memory_bound_rows_report_bandwidth() {
    let (_g, ctx) = gpu();
    let pool = tiny_rows(ctx, Bench::Pool, &["2x3x8x8x2"]);
    assert_eq!(pool.len(), 2);
    let keys = ["n", "c", "h", "w", "k"];
    check_row(&pool[0], "max_pool2d_forward", &keys, "gbps");
    check_row(&pool[1], "max_pool2d_backward", &keys, "gbps");
    // Forward: x read (4 B x 384) + y and indices written (8 B x 96).
    let want = (4.0 * 384.0 + 8.0 * 96.0) / (pool[0].ms * 1e-3) / 1e9;
    assert!((pool[0].gbps.unwrap() - want).abs() <= 1e-9 * want, "pool gbps");

    let soft = tiny_rows(ctx, Bench::Softmax, &["5x7", "3"]);
    assert_eq!(soft.len(), 2);
    check_row(&soft[0], "softmax", &["rows", "cols"], "gbps");
    check_row(&soft[1], "softmax", &["rows", "cols"], "gbps");
    assert_eq!((soft[1].dim("rows"), soft[1].dim("cols")), (Some(3), Some(10)));

    let bn = tiny_rows(ctx, Bench::BatchNorm, &["2x3x5", "4"]);
    assert_eq!(bn.len(), 6);
    let kernels: Vec<&str> = bn.iter().map(|r| r.kernel.as_str()).collect();
    assert_eq!(
        kernels[..3],
        ["batchnorm_train", "batchnorm_eval", "batchnorm_backward"]
    );
    for row in &bn {
        check_row(row, &row.kernel, &["n", "c", "s"], "gbps");
    }
    // Backward: x and dy read, dx written, 4 B each per element (2·3·5 of them).
    let want = 12.0 * 30.0 / (bn[2].ms * 1e-3) / 1e9;
    assert!(
        (bn[2].gbps.unwrap() - want).abs() <= 1e-9 * want,
        "batchnorm gbps"
    );
    // N alone is cnn-bn's first normalization at batch N.
    assert_eq!((bn[3].dim("c"), bn[3].dim("s")), (Some(32), Some(676)));
    // The row names the form the launcher chose: per channel, or per invocation for
    // a Dense layer's backward (s = 1).
    assert!(bn.iter().all(|r| r.variant == "channel"), "{bn:?}");
    let dense = tiny_rows(ctx, Bench::BatchNorm, &["2x3x1"]);
    let variants: Vec<&str> = dense.iter().map(|r| r.variant.as_str()).collect();
    assert_eq!(variants, ["channel", "channel", "rows"]);

    let adam = tiny_rows(ctx, Bench::Adam, &["1000"]);
    assert_eq!(adam.len(), 1);
    check_row(&adam[0], "adam", &["params"], "gbps");
    let want = 28.0 * 1000.0 / (adam[0].ms * 1e-3) / 1e9;
    assert!((adam[0].gbps.unwrap() - want).abs() <= 1e-9 * want, "adam gbps");

    let emb = tiny_rows(ctx, Bench::Embedding, &["300x70x3"]);
    let variants: Vec<&str> = emb.iter().map(|r| r.variant.as_str()).collect();
    assert_eq!(variants, ["scan", "sorted"]);
    for r in &emb {
        check_row(r, "embedding_backward", &["tokens", "vocab", "dim"], "gbps");
        let want = 4.0 * ((300 + 70) * 3) as f64 / (r.ms * 1e-3) / 1e9;
        assert!((r.gbps.unwrap() - want).abs() <= 1e-9 * want, "embedding gbps");
    }
}

#[test]
fn train_step_rows_report_images_per_second() {
    let (_g, ctx) = gpu();
    let rows = tiny_rows(ctx, Bench::TrainStep, &["2"]);
    assert_eq!(rows.len(), 1);
    check_row(&rows[0], "train_step", &["batch"], "images_per_s");
    let r = &rows[0];
    assert_eq!(r.variant, "cnn");
    let want = 2.0 / (r.ms * 1e-3);
    assert!((r.images_per_s.unwrap() - want).abs() <= 1e-9 * want);
    assert_eq!(r.gflops, None);
    assert_eq!(r.fraction_of_peak, None);
}

#[test]
fn seed_defaults_are_the_seed_cnn() {
    let (_g, ctx) = gpu();
    let conv = Bench::Conv.parse_sizes(None).unwrap();
    let Size::Conv(d) = &conv[0] else {
        panic!("conv sizes: {conv:?}")
    };
    assert_eq!(
        (d.n, d.c_in, d.h, d.w, d.c_out, d.kh, d.kw, d.stride, d.padding),
        (32, 1, 28, 28, 32, 3, 3, (1, 1), Padding::Valid)
    );
    let train = Bench::TrainStep.parse_sizes(None).unwrap();
    assert_eq!(
        train,
        [Size::TrainStep { batch: 32 }, Size::TrainStep { batch: 128 }]
    );
    let recipe = zoo::cnn();
    let model = recipe
        .model
        .compile(ctx, recipe.loss, recipe.optimizer.clone(), 1)
        .unwrap();
    assert_eq!(model.store.count(), bench::SEED_CNN_PARAMS);
    assert_eq!(Bench::Adam.default_sizes()[0], bench::SEED_CNN_PARAMS.to_string());
    for b in Bench::ALL {
        assert!(b.parse_sizes(None).is_ok(), "{}: defaults parse", b.name());
    }
}

fn sample_rows() -> Vec<BenchRow> {
    let base = BenchRow {
        kernel: "matmul_nn".into(),
        variant: "register".into(),
        shape: vec![("m", 64), ("n", 32), ("k", 16)],
        ms: 1.5,
        min_ms: 1.25,
        gflops: Some(2.0),
        gbps: None,
        images_per_s: None,
        fraction_of_peak: Some(0.25),
        repeat: 5,
        clock: Clock::GpuTimestamps,
        adapter: "llvmpipe (LLVM, 256 bits), \"quoted\"".into(),
    };
    let softmax = BenchRow {
        kernel: "softmax".into(),
        variant: "row".into(),
        shape: vec![("rows", 128), ("cols", 10)],
        gflops: None,
        gbps: Some(0.5),
        fraction_of_peak: None,
        clock: Clock::WallClock,
        ..base.clone()
    };
    vec![base, softmax]
}

#[test]
fn json_rows_parse_back_with_matmul_keys_unchanged() {
    let rows = sample_rows();
    let text = bench::to_json(&rows).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let arr = v.as_array().unwrap();
    assert_eq!(arr.len(), 2);
    let m = arr[0].as_object().unwrap();
    // The keys `wgml bench matmul --json` has always written.
    for key in [
        "kernel", "variant", "m", "n", "k", "ms", "min_ms", "gflops", "repeat", "adapter",
    ] {
        assert!(m.contains_key(key), "matmul row lacks {key}: {m:?}");
    }
    assert_eq!(m["kernel"], "matmul_nn");
    assert_eq!(m["m"], 64);
    assert_eq!(m["ms"], 1.5);
    assert_eq!(m["fraction_of_peak"], 0.25);
    assert_eq!(m["clock"], "gpu-timestamps");
    let s = arr[1].as_object().unwrap();
    assert_eq!((s["rows"].as_u64(), s["cols"].as_u64()), (Some(128), Some(10)));
    assert_eq!(s["gbps"], 0.5);
    assert_eq!(s["clock"], "wall-clock");
    assert!(!s.contains_key("gflops") && !s.contains_key("m"), "{s:?}");

    let path = std::env::temp_dir().join(format!("wgml-bench-test-{}.json", std::process::id()));
    bench::write_json(&path, &rows).unwrap();
    let back: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    std::fs::remove_file(&path).ok();
    assert_eq!(back, v);
}

#[test]
fn csv_rows_parse_back_with_the_union_of_columns() {
    let rows = sample_rows();
    let text = bench::to_csv(&rows).unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(
        header,
        [
            "kernel",
            "variant",
            "m",
            "n",
            "k",
            "rows",
            "cols",
            "ms",
            "min_ms",
            "gflops",
            "gbps",
            "fraction_of_peak",
            "repeat",
            "clock",
            "adapter"
        ]
    );
    let records: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(records.len(), 2);
    let get = |r: &csv::StringRecord, key: &str| r[header.iter().position(|h| h == key).unwrap()].to_string();
    assert_eq!(get(&records[0], "kernel"), "matmul_nn");
    assert_eq!(get(&records[0], "m"), "64");
    assert_eq!(get(&records[0], "rows"), "");
    assert_eq!(get(&records[0], "ms").parse::<f64>().unwrap(), 1.5);
    assert_eq!(get(&records[0], "adapter"), rows[0].adapter);
    assert_eq!(get(&records[1], "rows"), "128");
    assert_eq!(get(&records[1], "gbps").parse::<f64>().unwrap(), 0.5);
    assert_eq!(get(&records[1], "gflops"), "");
    assert_eq!(get(&records[1], "clock"), "wall-clock");

    let path = std::env::temp_dir().join(format!("wgml-bench-test-{}.csv", std::process::id()));
    bench::write_csv(&path, &rows).unwrap();
    let back = std::fs::read_to_string(&path).unwrap();
    std::fs::remove_file(&path).ok();
    assert_eq!(back, text);
}

#[test]
fn bad_names_sizes_and_options_are_clear_errors() {
    let e = Bench::parse("matmull").unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("'matmull'") && msg.contains("train-step") && msg.contains("all"),
        "{msg}"
    );
    assert_eq!(Bench::parse("all").unwrap(), Bench::ALL);
    assert_eq!(Bench::parse("train-step").unwrap(), [Bench::TrainStep]);

    let cases: [(Bench, &str, &str); 10] = [
        (Bench::Embedding, "300x70", "TOKENSxVOCABxDIM"),
        (Bench::Matmul, "0", "at least 1"),
        (Bench::Matmul, "64x0x8", "at least 1"),
        (Bench::Matmul, "12a", "malformed size '12a'"),
        (Bench::Matmul, "2x3", "MxNxK"),
        (Bench::Matmul, "", "malformed"),
        (Bench::Conv, "3x4", "NxC_INxHxWxC_OUTxK"),
        (Bench::Softmax, "-4x10", "malformed"),
        (Bench::Adam, "1.5", "malformed"),
        (Bench::TrainStep, "0", "at least 1"),
    ];
    for (b, size, want) in cases {
        let e = b.parse_size(size).unwrap_err();
        assert!(
            matches!(e, Error::InvalidArgument(_)),
            "{}: {size}: {e:?}",
            b.name()
        );
        assert!(e.to_string().contains(want), "{} '{size}': {e}", b.name());
    }
    // A kernel larger than its input is a shape error at parse time.
    let e = Bench::Conv.parse_size("1x1x2x2x1x3").unwrap_err();
    assert!(e.to_string().contains("larger than"), "{e}");
    assert!(Bench::Matmul.parse_sizes(Some(&[])).is_err());

    let bad: [(BenchOptions, &str); 5] = [
        (
            BenchOptions {
                peak_gflops: Some(-1.0),
                ..Default::default()
            },
            "--peak-gflops must be a positive number, got -1",
        ),
        (
            BenchOptions {
                peak_gbps: Some(0.0),
                ..Default::default()
            },
            "--peak-gbps must be a positive number",
        ),
        (
            BenchOptions {
                peak_gbps: Some(f64::NAN),
                ..Default::default()
            },
            "--peak-gbps",
        ),
        (
            BenchOptions {
                repeat: 0,
                ..Default::default()
            },
            "--repeat",
        ),
        (
            BenchOptions {
                layouts: vec!["nx".into()],
                ..Default::default()
            },
            "unknown matmul layout 'nx'",
        ),
    ];
    for (opts, want) in bad {
        let e = opts.validate().unwrap_err();
        assert!(e.to_string().contains(want), "{opts:?}: {e}");
    }
    assert!(BenchOptions::default().validate().is_ok());
    assert!(
        bench::parse_clock("sundial")
            .unwrap_err()
            .to_string()
            .contains("'sundial'")
    );
    assert_eq!(bench::parse_clock("wall").unwrap(), Some(Clock::WallClock));
    assert!(
        bench::parse_variant("tiled7")
            .unwrap_err()
            .to_string()
            .contains("'tiled7'")
    );
}

/// `wgml bench` rejects bad arguments before touching a GPU, with a clear message.
#[test]
fn cli_bench_rejects_bad_arguments() {
    let cases: [(&[&str], &str); 6] = [
        (&["bench", "convolution"], "unknown benchmark 'convolution'"),
        (&["bench", "matmul", "--sizes", "0"], "at least 1"),
        (
            &["bench", "conv", "--sizes", "32,3x4"],
            "malformed size '3x4' for 'conv'",
        ),
        (
            &["bench", "pool", "--peak-gbps", "-5"],
            "--peak-gbps must be a positive number, got -5",
        ),
        (
            &["bench", "all", "--sizes", "4"],
            "--sizes applies to one benchmark",
        ),
        (
            &["bench", "softmax", "--clock", "sundial"],
            "unknown clock 'sundial'",
        ),
    ];
    for (args, want) in cases {
        let out = Command::new(crate::common::wgml_bin())
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(stderr.contains(want), "{args:?}: stderr was {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

#[test]
fn profile_times_every_dispatch_of_a_step() {
    let (_g, ctx) = gpu_exclusive();
    let recipe = zoo::cnn();
    for clock in [Clock::GpuTimestamps, Clock::WallClock] {
        if clock == Clock::GpuTimestamps && !ctx.has_timestamps() {
            continue;
        }
        let mut model = recipe
            .model
            .compile(ctx, recipe.loss, recipe.optimizer.clone(), 3)
            .unwrap();
        let n = model.train_dispatches(ctx, 2).unwrap().len();
        let mut timer = Timer::with_clock(ctx, clock).unwrap();
        let steps = model.step;
        let p = profile::profile_step_with(&mut model, ctx, 2, 2, &mut timer).unwrap();
        // The host's side ran real steps: a warm-up, then 2 rounds back to back.
        assert_eq!(model.step - steps, 1 + 2 * profile::STEADY_STEPS as u32);
        assert!(
            p.host_ms > 0.0 && p.steady_ms > 0.0 && p.submit_ms >= 0.0,
            "{clock}: {p:?}"
        );
        assert_eq!(p.clock, clock);
        assert_eq!(p.rows.len(), n);
        assert_eq!((p.batch, p.repeats), (2, 2));
        for (i, r) in p.rows.iter().enumerate() {
            assert_eq!(r.index, i);
            assert!(
                r.ms.is_finite() && r.ms >= 0.0,
                "{clock}: row {i} ({}) {} ms",
                r.kernel,
                r.ms
            );
        }
        assert!(p.total_ms() > 0.0 && p.step_ms > 0.0, "{clock}: {p:?}");
        let table = profile::profile_table(&p);
        assert!(table.contains(clock.describe()), "{table}");
        assert!(table.contains("whole step (one pass)"), "{table}");
        assert!(table.contains("in queue.submit"), "{table}");
        assert!(table.contains("back to back"), "{table}");
        // Sorted by time, slowest first.
        let times: Vec<f64> = table
            .lines()
            .skip(2)
            .take(n)
            .map(|l| l.split_whitespace().nth(3).unwrap().parse().unwrap())
            .collect();
        assert_eq!(times.len(), n, "{table}");
        assert!(times.windows(2).all(|w| w[0] >= w[1]), "{table}");
    }
}
