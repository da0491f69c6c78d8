//! wgml against an independent reference: golden cases computed once by PyTorch in
//! float64 on the CPU (`kernels-tests/golden/make_golden.py`, which says how they are
//! laid out and how to regenerate them), one per layer kind, padding, pool,
//! activation and loss, and the seed models. For each, wgml takes one training step
//! on the GPU from the case's initial weights and must give PyTorch's loss, every
//! gradient, the weights (and batch-normalization statistics) after one SGD step and
//! after one Adam step, and the evaluation-mode prediction after the SGD step.
//!
//! Nothing of wgml's lowering is shared with the reference: PyTorch builds the model
//! from torch.nn modules, names the parameters, pads, pools and differentiates.
//!
//! Tolerance: 1e-5 of each tensor's largest magnitude (the loss: 1e-5 relative).
//! The reference is float64; wgml accumulates in f32, whose rounding over the
//! longest sums here (the seed CNN's 5,408-long dot products) stays near 1e-6.

use std::path::{Path, PathBuf};

use wgml::checkpoint::{Architecture, Checkpoint};
use wgml::graph::Op;
use wgml::graph::params::NamedValues;
use wgml::kernels::optim::Optimizer;
use wgml::nn::Loss;
use wgml::nn::model::Batch;

use crate::common::*;

/// How far wgml may be from PyTorch float64, relative to each tensor's largest value.
const RTOL: f64 = 1e-5;

/// One golden case read from its file.
struct Golden {
    name: String,
    file: Checkpoint,
    arch: Architecture,
    sgd: Optimizer,
    adam: Optimizer,
    dropout_seeds: Vec<u32>,
    batch: usize,
}

impl Golden {
    fn load(path: &Path) -> Golden {
        let file = wgml::checkpoint::load(path).unwrap();
        let meta = |key: &str| -> &str {
            file.metadata
                .get(key)
                .unwrap_or_else(|| panic!("{}: no '{key}' metadata", path.display()))
        };
        let optimizer = |key: &str| serde_json::from_str(meta(key)).unwrap();
        Golden {
            name: path.file_stem().unwrap().to_string_lossy().into_owned(),
            arch: file.architecture(path).unwrap().expect("no architecture"),
            sgd: optimizer("sgd"),
            adam: optimizer("adam"),
            dropout_seeds: serde_json::from_str(meta("dropout_seeds")).unwrap(),
            batch: meta("batch").parse().unwrap(),
            file,
        }
    }

    fn get(&self, name: &str) -> Option<&[f32]> {
        self.file
            .tensors
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, _, v)| v.as_slice())
    }

    fn values(&self, name: &str) -> &[f32] {
        self.get(name)
            .unwrap_or_else(|| panic!("{}: no tensor '{name}'", self.name))
    }

    /// The tensors named `prefix` + a parameter name, with the prefix removed.
    fn group(&self, prefix: &str) -> Vec<NamedValues> {
        self.file
            .tensors
            .iter()
            .filter_map(|(n, s, v)| {
                n.strip_prefix(prefix)
                    .map(|n| (n.to_string(), s.clone(), v.clone()))
            })
            .collect()
    }

    /// PyTorch's value of parameter `name` after one step of `which` (`sgd` or
    /// `adam`). Large tensors are stored once (see make_golden.py); their first step
    /// is derived here in f64 from the stored initial value and gradient.
    fn after(&self, which: &str, name: &str, opt: &Optimizer) -> Vec<f32> {
        if let Some(v) = self.get(&format!("{which}.{name}")) {
            return v.to_vec();
        }
        let w = self.values(&format!("init.{name}"));
        let g = self.values(&format!("grad.{name}"));
        let lr = opt.lr() as f64;
        w.iter()
            .zip(g)
            .map(|(&w, &g)| {
                let (w, g) = (w as f64, g as f64);
                let step = match opt {
                    // First step with momentum: the buffer is the gradient.
                    Optimizer::Sgd { .. } => g,
                    // First step: m̂ = g, v̂ = g² (PyTorch's ε placement).
                    Optimizer::Adam { epsilon, .. } => g / (g.abs() + *epsilon as f64),
                    Optimizer::RmsProp { .. } => unreachable!("golden cases use SGD and Adam"),
                };
                (w - lr * step) as f32
            })
            .collect()
    }
}

/// The golden case files, sorted by name.
fn golden_files() -> Vec<PathBuf> {
    let dir = repo_file("kernels-tests/golden");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    files.sort();
    files
}

/// Largest `|got − want|` over the largest `|want|` (or `floor`, when larger),
/// asserted at most [`RTOL`].
#[track_caller]
fn check(what: &str, got: &[f32], want: &[f32]) -> f64 {
    check_above(what, got, want, 0.0)
}

#[track_caller]
fn check_above(what: &str, got: &[f32], want: &[f32], floor: f64) -> f64 {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(floor, |m, &w| m.max(w.abs() as f64));
    let (i, err) = got
        .iter()
        .zip(want)
        .map(|(&g, &w)| (g as f64 - w as f64).abs())
        .enumerate()
        .fold(
            (0, 0f64),
            |(bi, be), (i, e)| if e > be || e.is_nan() { (i, e) } else { (bi, be) },
        );
    let rel = err / scale.max(f64::MIN_POSITIVE);
    assert!(
        rel <= RTOL,
        "{what}: off by {err:e} at index {i} (got {}, PyTorch {}), {rel:e} of the largest value {scale:e}",
        got[i],
        want[i]
    );
    rel
}

/// One training step of the case with `which` optimizer, checked against PyTorch.
/// Returns the worst relative error seen.
fn check_case(ctx: &wgml::Context, g: &Golden, which: &str) -> f64 {
    let opt = if which == "sgd" { &g.sgd } else { &g.adam };
    let what = |s: &str| format!("{} ({which}, {:?}): {s}", g.name, ctx.adapter_class());
    let mut model = g
        .arch
        .model
        .compile(ctx, g.arch.loss, opt.clone(), 0)
        .unwrap_or_else(|e| panic!("{}: {e}", what("compile")));
    // Unfused for SGD, so every gradient lands in its buffer to be read; Adam runs
    // the lowering the adapter prefers (on CPU adapters, fused epilogues).
    model.fuse = which != "sgd";
    // The dropout layers take the case's seeds (as a PyTorch user seeds a generator).
    let mut seeds = g.dropout_seeds.iter();
    for node in &mut model.graph.nodes {
        if let Op::Dropout { seed, .. } = &mut node.op {
            *seed = *seeds.next().expect("a dropout layer without a seed in the case");
        }
    }
    let init = g.group("init.");
    model.load_params(ctx, &init).unwrap();

    // wgml draws the very mask the reference used.
    for (k, node) in model
        .graph
        .nodes
        .iter()
        .filter(|n| matches!(n.op, Op::Dropout { .. }))
        .enumerate()
    {
        let Op::Dropout { rate, seed, .. } = node.op else {
            unreachable!()
        };
        let threshold = wgml::kernels::dropout::DropoutRate::new(rate).unwrap().threshold;
        let mask = g.values(&format!("mask.{k}"));
        let ours: Vec<f32> = (0..mask.len() as u32)
            .map(|i| f32::from(u8::from(wgml::reference::dropout::keep(seed, 1, i, threshold))))
            .collect();
        assert_eq!(ours, mask, "{}", what(&format!("dropout mask {k}")));
    }

    let x = g.values("input");
    let target = g.values("target");
    let labels: Vec<u32> = target.iter().map(|&t| t as u32).collect();
    let sce = g.arch.loss == Loss::SparseCategoricalCrossentropy;
    let batch = Batch {
        x,
        labels: if sce { &labels } else { &[] },
        values: if sce { &[] } else { target },
        len: g.batch,
    };
    model.acc.reset(ctx).unwrap();
    model.train_step(ctx, &batch, opt.lr(), |_, _| {}).unwrap();
    let loss = model.acc.read(ctx).unwrap().0 / g.batch as f64;
    let want = g.values("loss")[0] as f64;
    let mut worst = (loss - want).abs() / want.abs();
    assert!(worst <= RTOL, "{}: {loss} vs PyTorch {want}", what("loss"));

    // A gradient that is zero by a symmetry (attention's key bias: softmax ignores
    // a shift of a whole row of scores) is a sum of terms that cancel, each as large
    // as the gradients around it, so its rounding is measured against those: every
    // gradient's error counts relative to at least 1e-3 of the case's largest (the
    // fused attention's key bias comes to 8.7e-6 of that on the embedding case: its
    // D = dO·O and Σ P·dP round differently).
    let grad_floor = 1e-3
        * g.group("grad.")
            .iter()
            .flat_map(|(_, _, v)| v.iter())
            .fold(0f64, |m, &w| m.max(w.abs() as f64));
    for p in &model.store.params {
        if which == "sgd" && p.trainable {
            let grad = p.grad.to_f32(ctx).unwrap();
            let want = g.values(&format!("grad.{}", p.name));
            let what = what(&format!("gradient of {}", p.name));
            worst = worst.max(check_above(&what, &grad, want, grad_floor));
        }
        let value = p.value.to_f32(ctx).unwrap();
        let want = g.after(which, &p.name, opt);
        worst = worst.max(check(&what(&format!("{} after one step", p.name)), &value, &want));
    }
    if which == "sgd" {
        let predicted = model.predict(ctx, x, g.batch).unwrap();
        worst = worst.max(check(
            &what("evaluation-mode prediction"),
            &predicted,
            g.values("predict"),
        ));
    }
    worst
}

fn check_all(ctx: &wgml::Context) {
    let files = golden_files();
    assert!(files.len() >= 20, "only {} golden cases", files.len());
    for path in files {
        let g = Golden::load(&path);
        let worst = ["sgd", "adam"]
            .iter()
            .map(|which| check_case(ctx, &g, which))
            .fold(0f64, f64::max);
        eprintln!("golden {} ({:?}): worst {worst:.1e}", g.name, ctx.adapter_class());
    }
}

#[test]
fn every_layer_kind_and_loss_matches_pytorch_float64() {
    let (_g, ctx) = gpu();
    check_all(ctx);
}

/// The same cases as real GPUs plan them (register or tiled matmuls, split-K, the
/// batch reductions without subgroups, no CPU fusions), run here on every commit.
#[test]
fn golden_cases_planned_as_on_a_gpu_match_pytorch_float64() {
    let (_g, ctx) = gpu();
    let _restore = PlanAs(ctx);
    for class in GPU_CLASSES {
        ctx.set_adapter_class(class);
        check_all(ctx);
    }
}

/// The same cases with every grid folded (at most 12 workgroups per dimension, so
/// any dispatch over 12 workgroups runs a 2-D grid and any over 144 a 3-D one): the
/// folding that dispatches over 65,535 workgroups need, proven for every kernel of
/// training and evaluation.
#[test]
fn golden_cases_with_every_grid_folded_match_pytorch_float64() {
    let (_g, ctx) = gpu();
    let _restore = PlanAs(ctx);
    ctx.set_max_groups_per_dim(12);
    check_all(ctx);
}
