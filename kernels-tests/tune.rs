//! The kernel tuner driven by a fake clock: it keeps what the clock says is
//! fastest, the choice is then what `matmul` runs (and still equals the
//! reference), it survives a new context through the cache file, a corrupt file
//! is ignored, a failing candidate is skipped, the budget is kept, and
//! `WGML_TUNE=off` (per context here) returns to the built-in rules. The same for
//! the one-row product's variants (`kernels::matvec`) and the decoding
//! attention's split count (`kernels::attention_decode`).

use std::collections::HashMap;
use std::time::Duration;

use wgml::gpu::Dispatch;
use wgml::kernels::matmul::{self, MatmulChoice, MatmulDesc, MatmulVariant};
use wgml::kernels::matvec::{self, MatvecVariant};
use wgml::kernels::tune::{self, TuneClock, TuneMode};
use wgml::{Context, ContextOptions, Error, Tensor, reference};

use crate::common::*;

/// Says each candidate takes the time its name is given (10 ms otherwise), or
/// fails for the names in `fail`; remembers what it was asked to time.
#[derive(Default)]
struct FakeClock {
    times: HashMap<String, f64>,
    fail: Vec<String>,
    asked: Vec<String>,
}

impl TuneClock for FakeClock {
    fn time(&mut self, _ctx: &Context, choice: &str, dispatches: &[&Dispatch]) -> wgml::Result<f64> {
        assert!(!dispatches.is_empty(), "a candidate without dispatches");
        let name = choice.to_string();
        self.asked.push(name.clone());
        if self.fail.contains(&name) {
            return Err(Error::invalid(format!("{name} failed on purpose")));
        }
        Ok(self.times.get(&name).copied().unwrap_or(10.0))
    }
}

/// A context of its own (its tuning table must not leak into other tests'),
/// keeping its cache in `dir`.
fn own_context(dir: &std::path::Path) -> Context {
    let ctx = Context::new(&ContextOptions::default())
        .expect("a wgpu adapter (apt-get install mesa-vulkan-drivers)");
    ctx.set_tuning_cache_dir(Some(dir.to_path_buf()));
    ctx
}

fn choice(variant: MatmulVariant, splits: usize) -> MatmulChoice {
    MatmulChoice { variant, splits }
}

#[test]
fn tuner_keeps_the_fastest_and_matmul_runs_it() {
    let (_g, _) = gpu();
    let dir = fresh_dir("tune");
    let ctx = own_context(&dir);
    let reg = matmul::available_variants(&ctx)[0];
    let desc = MatmulDesc::new(3, 5, 777).trans_b();
    let candidates = [choice(reg, 1), choice(reg, 4), choice(MatmulVariant::Tiled64, 2)];
    let mut clock = FakeClock::default();
    clock.times.insert(choice(reg, 1).name(), 2.0);
    clock.times.insert(choice(reg, 4).name(), 0.9);
    clock.times.insert(choice(MatmulVariant::Tiled64, 2).name(), 0.5);
    let report =
        tune::tune_matmul_among(&ctx, &desc, &candidates, &mut clock, Duration::from_secs(600)).unwrap();
    let names: Vec<String> = candidates.iter().map(|c| c.name()).collect();
    assert_eq!(clock.asked, names, "every candidate timed once, in order");
    assert_eq!(report.best, Some((choice(MatmulVariant::Tiled64, 2), 0.5)));
    assert_eq!(report.unmeasured, 0);
    let key = tune::matmul_key(&desc);
    assert_eq!(key, "matmul_nt m3 n5 k777 b1");
    let entry = ctx.tuned(&key).expect("the choice is recorded");
    assert_eq!(
        (entry.choice.as_str(), entry.ms, entry.candidates),
        ("tiled64/split2", 0.5, 3)
    );

    // matmul now runs the tuned choice (two dispatches: split-K), still exact.
    assert_eq!(
        matmul::choose(&ctx, &desc).unwrap(),
        choice(MatmulVariant::Tiled64, 2)
    );
    let mut r = rng(7);
    let (av, bv) = (
        uniform(&mut r, 3 * 777, -1.0, 1.0),
        uniform(&mut r, 777 * 5, -1.0, 1.0),
    );
    let a = Tensor::from_f32(&ctx, &av, &[av.len()]).unwrap();
    let b = Tensor::from_f32(&ctx, &bv, &[bv.len()]).unwrap();
    let c = nan_tensor(&ctx, &[15]);
    let list = matmul::matmul(&ctx, &desc, &a, &b, None, &c).unwrap();
    assert_eq!(list.len(), 2);
    ctx.run_all(&list).unwrap();
    let mut want = vec![0.0; 15];
    reference::matmul::matmul(&desc, &av, &bv, None, &mut want).unwrap();
    assert_close("tuned product", &c.to_f32(&ctx).unwrap(), &want, 1e-5, 1e-5);
    // A forced variant or split still wins over the measurement.
    let forced = desc.clone().variant(reg).split_k(1);
    assert_eq!(matmul::choose(&ctx, &forced).unwrap(), choice(reg, 1));

    // A new context on the same adapter reads the choice from the file.
    let again = own_context(&dir);
    assert_eq!(again.tuned(&key), Some(entry.clone()));
    assert_eq!(
        matmul::choose(&again, &desc).unwrap(),
        choice(MatmulVariant::Tiled64, 2)
    );
    // Turned off, the built-in rules choose and the cache is not consulted.
    again.set_tune_mode(Some("off"));
    assert_eq!(tune::mode(&again).unwrap(), TuneMode::Off);
    let builtin = matmul::auto_variant(&again, &desc);
    assert_eq!(
        matmul::choose(&again, &desc).unwrap(),
        choice(builtin, matmul::auto_splits(&again, &desc, builtin))
    );
    again.set_tune_mode(Some("sometimes"));
    let e = matmul::choose(&again, &desc).unwrap_err().to_string();
    assert!(e.contains("WGML_TUNE") && e.contains("auto"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A decoding step's attention: the tuner keeps the split count the clock says
/// is fastest, `decode_splits` then returns it (from the file too), the step
/// split that way equals its twin, and with tuning off the built-in rule serves.
#[test]
fn the_decoding_split_is_the_one_measured_fastest() {
    use wgml::kernels::attention_decode::{DecodeDims, DecodePosition, attention_decode};
    let (_g, _) = gpu();
    let dir = fresh_dir("tune-decode");
    let ctx = own_context(&dir);
    let (dims, t) = (DecodeDims::new(4, 2, (16, 16)), 300);
    let rule = DecodeDims::splits_for(&ctx, t);
    let mut clock = FakeClock::default();
    clock.times.insert("1 splits".into(), 3.0);
    clock.times.insert("4 splits".into(), 1.0);
    clock.times.insert("8 splits".into(), 2.0);
    let report =
        tune::tune_decode_among(&ctx, &dims, t, &[1, 4, 8], &mut clock, Duration::from_secs(600)).unwrap();
    assert_eq!(clock.asked, ["1 splits", "4 splits", "8 splits"]);
    assert_eq!(report.best, Some((4, 1.0)));
    let key = tune::decode_key(&dims, t);
    assert_eq!(key, "attention_decode h4/2 d16x16 t300");
    assert_eq!(ctx.tuned(&key).unwrap().choice, "4 splits");
    let splits = tune::decode_splits(&ctx, &dims, t).unwrap();
    assert_eq!(splits, 4);
    // Split that way, the step computes its twin's attention.
    let mut r = rng(5);
    let w = dims.kv_heads * dims.dk;
    let (qv, kv, vv) = (
        uniform(&mut r, 64, -1.0, 1.0),
        uniform(&mut r, w, -1.0, 1.0),
        uniform(&mut r, w, -1.0, 1.0),
    );
    let (mut kc, mut vc) = (
        uniform(&mut r, t * w, -1.0, 1.0),
        uniform(&mut r, t * w, -1.0, 1.0),
    );
    let tensor = |v: &[f32]| Tensor::from_f32(&ctx, v, &[v.len()]).unwrap();
    let (k_cache, v_cache) = (tensor(&kc), tensor(&vc));
    let out = nan_tensor(&ctx, &[64]);
    let position = DecodePosition::new(&ctx, t).unwrap();
    position.set(&ctx, 200).unwrap();
    let dims = dims.with_splits(splits);
    let step = attention_decode(
        &ctx,
        &dims,
        &tensor(&qv),
        (&tensor(&kv), &tensor(&vv)),
        (&k_cache, &v_cache),
        &position,
        &out,
    )
    .unwrap();
    ctx.run_all(&step).unwrap();
    let want = reference::attention_decode::attention_decode(&dims, 200, &qv, (&kv, &vv), (&mut kc, &mut vc));
    assert_close(
        "tuned decoding step",
        &out.to_f32(&ctx).unwrap(),
        &want,
        4e-6,
        1e-5,
    );
    // A new context reads it from the file; off, the built-in rule serves.
    let again = own_context(&dir);
    assert_eq!(tune::decode_splits(&again, &dims, t).unwrap(), 4);
    again.set_tune_mode(Some("off"));
    assert_eq!(tune::decode_splits(&again, &dims, t).unwrap(), rule);
    let _ = std::fs::remove_dir_all(&dir);
}

/// One-row products: the tuner keeps the variant the clock says is fastest,
/// `matvec_variant` then returns it (from the file too), the variant it returns
/// computes the product exactly, and with tuning off the built-in rule serves.
#[test]
fn the_matvec_variant_is_the_one_measured_fastest() {
    let (_g, _) = gpu();
    let dir = fresh_dir("tune-matvec");
    let ctx = own_context(&dir);
    let (n, k) = (37, 70);
    let builtin = MatvecVariant::auto(&ctx);
    let other = MatvecVariant::ALL.into_iter().find(|&v| v != builtin).unwrap();
    let measure = |ctx: &Context, clock: &mut FakeClock| {
        tune::tune_matvec_among(ctx, 1, n, k, &MatvecVariant::ALL, clock, Duration::from_secs(600)).unwrap()
    };
    let mut clock = FakeClock::default();
    clock.times.insert(builtin.name().into(), 3.0);
    clock.times.insert(other.name().into(), 1.0);
    let report = measure(&ctx, &mut clock);
    assert_eq!(clock.asked, ["rows", "lanes"]);
    assert_eq!(report.best, Some((other, 1.0)));
    let key = tune::matvec_key(1, n, k);
    assert_eq!(key, "matvec m1 n37 k70");
    assert_eq!(ctx.tuned(&key).unwrap().choice, other.name());
    assert_eq!(tune::matvec_variant(&ctx, 1, n, k).unwrap(), other);
    // The chosen variant computes the product (against the twin).
    let mut r = rng(3);
    let (xv, wv) = (uniform(&mut r, k, -1.0, 1.0), uniform(&mut r, n * k, -1.0, 1.0));
    let x = Tensor::from_f32(&ctx, &xv, &[1, k]).unwrap();
    let w = Tensor::from_f32(&ctx, &wv, &[n, k]).unwrap();
    let y = nan_tensor(&ctx, &[1, n]);
    let variant = tune::matvec_variant(&ctx, 1, n, k).unwrap();
    let act = matmul::Activation::Identity;
    ctx.run_all(&[matvec::matvec(&ctx, variant, &x, &w, None, act, &y).unwrap()])
        .unwrap();
    let want = reference::matvec::matvec(&xv, &wv, None, act, n, k);
    assert_close("tuned matvec", &y.to_f32(&ctx).unwrap(), &want, 1e-5, 1e-5);
    // A new context reads it from the file; off, the built-in rule serves.
    let again = own_context(&dir);
    assert_eq!(tune::matvec_variant(&again, 1, n, k).unwrap(), other);
    again.set_tune_mode(Some("off"));
    assert_eq!(tune::matvec_variant(&again, 1, n, k).unwrap(), builtin);
    // A failing variant is skipped.
    ctx.clear_tuned();
    let mut clock = FakeClock {
        fail: vec![other.name().into()],
        ..Default::default()
    };
    let report = measure(&ctx, &mut clock);
    assert_eq!(report.best.map(|b| b.0), Some(builtin));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn failing_candidates_are_skipped_and_the_budget_is_kept() {
    let (_g, _) = gpu();
    let dir = fresh_dir("tune-budget");
    let ctx = own_context(&dir);
    let reg = matmul::available_variants(&ctx)[0];
    let desc = MatmulDesc::new(6, 10, 100);
    let candidates = [choice(reg, 1), choice(reg, 2), choice(MatmulVariant::Tiled64, 1)];
    // The fastest one fails: the next fastest is kept.
    let mut clock = FakeClock::default();
    clock.times.insert(choice(reg, 2).name(), 0.1);
    clock.times.insert(choice(MatmulVariant::Tiled64, 1).name(), 0.2);
    clock.fail.push(choice(reg, 2).name());
    let report =
        tune::tune_matmul_among(&ctx, &desc, &candidates, &mut clock, Duration::from_secs(600)).unwrap();
    assert_eq!(report.best, Some((choice(MatmulVariant::Tiled64, 1), 0.2)));
    assert!(
        report.results[1]
            .1
            .as_ref()
            .is_err_and(|e| e.contains("on purpose"))
    );
    // No time at all: the first candidate is still measured, the rest are not.
    ctx.clear_tuned();
    let mut clock = FakeClock::default();
    let report = tune::tune_matmul_among(&ctx, &desc, &candidates, &mut clock, Duration::ZERO).unwrap();
    assert_eq!(clock.asked, vec![choice(reg, 1).name()]);
    assert_eq!((report.results.len(), report.unmeasured), (1, 2));
    assert_eq!(report.best.map(|b| b.0), Some(choice(reg, 1)));
    // Every candidate failing leaves no choice: the built-in rules stay.
    ctx.clear_tuned();
    let mut clock = FakeClock {
        fail: candidates.iter().map(|c| c.name()).collect(),
        ..Default::default()
    };
    let report =
        tune::tune_matmul_among(&ctx, &desc, &candidates, &mut clock, Duration::from_secs(600)).unwrap();
    assert_eq!(report.best, None);
    assert_eq!(ctx.tuned(&tune::matmul_key(&desc)), None);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn corrupt_or_foreign_cache_files_are_ignored_and_replaced() {
    let (_g, _) = gpu();
    let dir = fresh_dir("tune-corrupt");
    let path = dir.join(wgml::gpu::CACHE_FILE);
    let key = "matmul_nn m2 n2 k2 b1";
    let entry = wgml::gpu::TunedEntry {
        choice: "tiled64".into(),
        ms: 0.25,
        candidates: 4,
    };
    for bad in [
        "not json at all".to_string(),
        r#"{"format": 99, "adapters": {}}"#.to_string(),
        r#"{"format": 1, "adapters": {"x": {"entries": {"k": {"choice": "tiled64", "ms": -1.0, "candidates": 1}}}}}"#
            .to_string(),
        "\u{0}\u{1}\u{2}".to_string(),
    ] {
        std::fs::write(&path, &bad).unwrap();
        let ctx = own_context(&dir);
        assert_eq!(ctx.tuned(key), None, "{bad}");
        assert!(ctx.tuned_entries().is_empty());
        // The next measurement replaces the file with a good one.
        ctx.record_tuned(key, entry.clone());
        let fresh = own_context(&dir);
        assert_eq!(fresh.tuned(key), Some(entry.clone()), "after replacing {bad}");
    }
    // Another adapter's (or driver's, or wgml version's) section is not used,
    // and saving keeps it.
    let text = std::fs::read_to_string(&path).unwrap();
    let foreign = text.replacen("\"adapters\": {", "\"adapters\": {\n    \"another GPU | wgml 0.0.1\": {\"entries\": {\"matmul_nn m9 n9 k9 b1\": {\"choice\": \"tiled128\", \"ms\": 1.0, \"candidates\": 2}}},", 1);
    assert_ne!(foreign, text);
    std::fs::write(&path, &foreign).unwrap();
    let ctx = own_context(&dir);
    assert_eq!(ctx.tuned("matmul_nn m9 n9 k9 b1"), None);
    ctx.record_tuned("matmul_nn m3 n3 k3 b1", entry.clone());
    assert!(
        std::fs::read_to_string(&path)
            .unwrap()
            .contains("another GPU | wgml 0.0.1")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn candidates_cover_the_variants_and_splits() {
    let (_g, ctx) = gpu();
    // The seed CNN's Dense forward at batch 32: one output tile, K = 5408.
    let dense = MatmulDesc::new(32, 64, 5408);
    let all = tune::matmul_candidates(ctx, &dense);
    let first = matmul::auto_variant(ctx, &dense);
    assert_eq!(all[0], choice(first, matmul::auto_splits(ctx, &dense, first)));
    for v in matmul::available_variants(ctx) {
        assert!(all.contains(&choice(v, 1)), "{} unsplit", v.name());
        let h = matmul::gpu_splits(&dense, v);
        assert!(
            h > 1,
            "{}: a one-tile product with K = 5408 splits on a GPU",
            v.name()
        );
        assert!(all.contains(&choice(v, h)), "{} split {h}", v.name());
    }
    let distinct: std::collections::HashSet<_> = all.iter().collect();
    assert_eq!(distinct.len(), all.len(), "no candidate twice");
    // A product whose tiles fill a GPU is not split.
    let big = MatmulDesc::new(2048, 2048, 64);
    assert!(tune::matmul_candidates(ctx, &big).iter().all(|c| c.splits == 1));
}
