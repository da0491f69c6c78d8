//! Shared test harness: one GPU context for the whole test binary, seeded random
//! data, NaN-filled outputs, and the closeness check that prints the worst element.

#![allow(dead_code)]

use std::sync::{Mutex, MutexGuard, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard, TryLockError};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use wgml::{Context, ContextOptions, Tensor};

/// Tests that may run side by side hold this shared; tests that need the machine
/// to themselves (timings) hold it exclusively.
static GPU_LOCK: RwLock<()> = RwLock::new(());

/// One context per test thread that can run at once (up to 4), each used by one test at a
/// time. Separate devices matter on lavapipe: it compiles a pipeline's machine
/// code (LLVM) at its first dispatch, on the device's one queue thread, so tests
/// sharing a device would compile one after another however many cores there are.
/// A test holds its context alone, so the context's counters see only its work.
static CONTEXTS: OnceLock<Vec<(Mutex<()>, OnceLock<Context>)>> = OnceLock::new();

/// What a test holds while it uses the GPU.
pub struct GpuGuard {
    _context: MutexGuard<'static, ()>,
    _gpu: GpuLock,
}

enum GpuLock {
    Shared(#[allow(dead_code)] RwLockReadGuard<'static, ()>),
    Exclusive(#[allow(dead_code)] RwLockWriteGuard<'static, ()>),
}

fn contexts() -> &'static [(Mutex<()>, OnceLock<Context>)] {
    CONTEXTS.get_or_init(|| {
        // At most 4: each lavapipe device starts its own worker threads, and more
        // devices than cores only add compile jobs competing for them.
        let n = std::thread::available_parallelism().map_or(1, |n| n.get()).min(4);
        (0..n).map(|_| (Mutex::new(()), OnceLock::new())).collect()
    })
}

/// A free context of the pool (waiting for the first one when none is free),
/// created on first use.
fn take_context(gpu: GpuLock) -> (GpuGuard, &'static Context) {
    let pool = contexts();
    let (guard, slot) = pool
        .iter()
        .find_map(|(lock, slot)| match lock.try_lock() {
            Ok(g) => Some((g, slot)),
            // A test that failed while holding it leaves the context usable.
            Err(TryLockError::Poisoned(p)) => Some((p.into_inner(), slot)),
            Err(TryLockError::WouldBlock) => None,
        })
        .unwrap_or_else(|| (pool[0].0.lock().unwrap_or_else(|p| p.into_inner()), &pool[0].1));
    let ctx = slot.get_or_init(|| match Context::new(&ContextOptions::default()) {
        Ok(c) => c,
        Err(e) => panic!(
            "GPU tests need a wgpu adapter: {e}\n\
             On Linux without a GPU: apt-get install mesa-vulkan-drivers (lavapipe)"
        ),
    });
    (
        GpuGuard {
            _context: guard,
            _gpu: gpu,
        },
        ctx,
    )
}

/// A GPU context for this test alone; other tests may run at the same time on
/// their own contexts. Fails, never skips, when there is no adapter.
pub fn gpu() -> (GpuGuard, &'static Context) {
    take_context(GpuLock::Shared(
        GPU_LOCK.read().unwrap_or_else(|p| p.into_inner()),
    ))
}

/// A GPU context with no other GPU test running: for timings.
pub fn gpu_exclusive() -> (GpuGuard, &'static Context) {
    take_context(GpuLock::Exclusive(
        GPU_LOCK.write().unwrap_or_else(|p| p.into_inner()),
    ))
}

/// Seeded generator; every test names its seed.
pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// `n` uniform values in [lo, hi).
pub fn uniform(rng: &mut StdRng, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(lo..hi)).collect()
}

/// A GPU f32 tensor of `shape` filled with NaN, so unwritten elements fail checks.
pub fn nan_tensor(ctx: &Context, shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    Tensor::from_f32(ctx, &vec![f32::NAN; n], shape).expect("allocating a NaN-filled tensor")
}

/// Asserts `|got - want| <= atol + rtol * |want|` element by element; on failure
/// prints the worst element, its index, and how many failed.
#[track_caller]
pub fn assert_close(what: &str, got: &[f32], want: &[f32], atol: f32, rtol: f32) {
    assert_eq!(
        got.len(),
        want.len(),
        "{what}: length {} != expected {}",
        got.len(),
        want.len()
    );
    let mut worst: Option<(usize, f32)> = None;
    let mut failures = 0usize;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g - w).abs();
        let allowed = atol + rtol * w.abs();
        // NaN fails: `!(err <= allowed)` is true for NaN.
        if err.is_nan() || err > allowed {
            failures += 1;
            let excess = if err.is_nan() {
                f32::INFINITY
            } else {
                err - allowed
            };
            if worst.is_none_or(|(_, e)| excess > e) {
                worst = Some((i, excess));
            }
        }
    }
    if let Some((i, _)) = worst {
        panic!(
            "{what}: {failures} of {} elements out of tolerance (atol {atol}, rtol {rtol}); \
             worst at index {i}: got {}, expected {}",
            got.len(),
            got[i],
            want[i]
        );
    }
}

/// Largest relative error max(|g-w| / max(|w|, floor)).
pub fn max_rel_err(got: &[f32], want: &[f32], floor: f32) -> f32 {
    got.iter()
        .zip(want)
        .map(|(&g, &w)| (g - w).abs() / w.abs().max(floor))
        .fold(0.0, f32::max)
}

/// Central finite difference of a scalar function `f` at `x` for every element.
pub fn finite_diff(x: &[f32], eps: f64, f: impl Fn(&[f32]) -> f64) -> Vec<f32> {
    let mut x = x.to_vec();
    (0..x.len())
        .map(|i| {
            let orig = x[i];
            x[i] = (orig as f64 + eps) as f32;
            let up = f(&x);
            x[i] = (orig as f64 - eps) as f32;
            let down = f(&x);
            x[i] = orig;
            let h = (orig as f64 + eps) as f32 as f64 - (orig as f64 - eps) as f32 as f64;
            ((up - down) / h) as f32
        })
        .collect()
}

/// Environment variable naming the `wgml` binary the CLI tests start, for a test
/// binary copied to another machine (the GPU machine has no build tree).
pub const WGML_BIN_ENV: &str = "WGML_BIN";

/// The `wgml` binary the CLI tests start: `$WGML_BIN` when set, else the one Cargo
/// built beside this test binary.
pub fn wgml_bin() -> std::path::PathBuf {
    if let Some(p) = std::env::var_os(WGML_BIN_ENV).filter(|p| !p.is_empty()) {
        return p.into();
    }
    let built = std::path::PathBuf::from(env!("CARGO_BIN_EXE_wgml"));
    assert!(
        built.exists(),
        "the wgml binary is not at its build path {}: set {WGML_BIN_ENV} to a wgml binary",
        built.display()
    );
    built
}

/// A file of the repository: under the checkout Cargo built from, or, when this
/// test binary runs elsewhere, under the current directory (run it from a
/// checkout's root).
pub fn repo_file(relative: &str) -> std::path::PathBuf {
    let built = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    if built.exists() {
        built
    } else {
        std::path::PathBuf::from(relative)
    }
}

/// A new empty directory for this test process under the system's temporary one
/// (`wgml-NAME-PID`; a leftover of the same name is removed first).
pub fn fresh_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("wgml-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The CPU-adapter and GPU rules of the row kernels and reductions, as adapter
/// classes: on a CPU adapter its native plan and a GPU's; on a GPU its native
/// plan only (which is the GPU one), so nothing runs twice there.
pub fn cpu_and_gpu_rules(ctx: &Context) -> Vec<wgml::gpu::AdapterClass> {
    use wgml::gpu::AdapterClass;
    if ctx.is_cpu_device() {
        vec![AdapterClass::Native, AdapterClass::GpuWithoutSubgroups]
    } else {
        vec![AdapterClass::Native]
    }
}

/// The adapter classes real GPUs plan as (with subgroups and without), for tests that
/// run the GPU paths on any adapter with [`Context::set_adapter_class`].
pub const GPU_CLASSES: [wgml::gpu::AdapterClass; 2] = [
    wgml::gpu::AdapterClass::Gpu,
    wgml::gpu::AdapterClass::GpuWithoutSubgroups,
];

/// Restores a pooled context's adapter class and grid cap when the test ends (or
/// fails), so the next test on that context plans as usual.
pub struct PlanAs<'a>(pub &'a Context);

impl Drop for PlanAs<'_> {
    fn drop(&mut self) {
        self.0.set_adapter_class(wgml::gpu::AdapterClass::Native);
        self.0.set_max_groups_per_dim(0);
        self.0.set_matmul_precision(wgml::gpu::MatmulPrecision::Highest);
    }
}

/// One training step of a supervised `model` on the GPU and of `cpu`, its
/// reference executor, on `batch` at rate `lr`: their mean losses per label
/// (per token for a sequence model), `(gpu, reference)`.
pub fn step_losses(
    ctx: &Context,
    model: &mut wgml::nn::Model,
    cpu: &mut wgml::graph::reference::ReferenceExecutor,
    batch: &wgml::nn::model::Batch<'_>,
    lr: f32,
) -> (f64, f64) {
    model.acc.reset(ctx).unwrap();
    model.train_step(ctx, batch, lr, |_, _| {}).unwrap();
    // A sequence's mean is over its positions with a label.
    let labels = match model.label_positions() {
        1 => batch.len,
        _ => batch
            .labels
            .iter()
            .filter(|&&l| l != wgml::data::NO_LABEL)
            .count()
            .max(1),
    };
    let gpu = model.acc.read(ctx).unwrap().0 / labels as f64;
    let want = cpu
        .train_step(batch.x, batch.labels, batch.values, batch.len, lr)
        .unwrap();
    (gpu, want)
}

/// Takes `steps` training steps of `model` on the batch `x` of `b` samples on the
/// GPU and on a reference executor made from the model's state, asserting each
/// step's loss within 1e-5 relative; returns the executor (to compare parameters).
pub fn steps_equal_reference(
    ctx: &Context,
    what: &str,
    model: &mut wgml::nn::GraphModel,
    x: &[f32],
    b: usize,
    steps: usize,
) -> wgml::graph::reference::ReferenceExecutor {
    let lr = model.optimizer.lr();
    let mut cpu = model.reference(ctx).unwrap();
    for step in 0..steps {
        model.acc.reset(ctx).unwrap();
        model.train_step(ctx, x, b, lr).unwrap();
        let gpu = model.acc.read(ctx).unwrap().0 / b as f64;
        let want = cpu.train_step(x, &[], &[], b, lr).unwrap();
        assert!(
            (gpu - want).abs() < 1e-5 * want.abs(),
            "{what} step {step}: GPU loss {gpu} vs reference {want}"
        );
    }
    cpu
}

/// Every parameter of `store` within `atol` + `rtol`·|value| of the reference
/// executor `cpu`'s (after both took the same steps).
pub fn params_match_reference(
    ctx: &Context,
    what: &str,
    store: &wgml::graph::ParamStore,
    cpu: &wgml::graph::reference::ReferenceExecutor,
    atol: f32,
    rtol: f32,
) {
    for p in &store.params {
        assert_close(
            &format!("{what} {}", p.name),
            &p.value.to_f32(ctx).unwrap(),
            &cpu.params()[p.node],
            atol,
            rtol,
        );
    }
}

/// For each parameter named in `names` of `net` (compiled with
/// `Optimizer::sgd(1.0, 0.0)`): its reference gradient on the batch `x` of `b`
/// samples within `atol` + `rtol`·|value| of central differences of step `eps`.
#[allow(clippy::too_many_arguments)]
pub fn gradients_match_differences(
    ctx: &Context,
    net: &wgml::nn::GraphModel,
    names: &[&str],
    x: &[f32],
    b: usize,
    eps: f32,
    atol: f32,
    rtol: f32,
) {
    let start = net.reference(ctx).unwrap();
    for &name in names {
        let node = net
            .store
            .params
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no parameter {name}"))
            .node;
        let (grad, fd) = gradient_and_differences(&start, node, x, b, eps);
        assert_close(
            &format!("{name} gradient vs finite differences"),
            &grad,
            &fd,
            atol,
            rtol,
        );
    }
}

/// The gradient of parameter node `node` that the reference executor `start`
/// (built with `Optimizer::sgd(1.0, 0.0)`) computes on the batch `x` of `b` samples
/// (read from one step: before − after), and central differences of its loss with
/// step `eps` (loss evaluated by steps of rate 0 at the same step number, so the
/// same noise).
pub fn gradient_and_differences(
    start: &wgml::graph::reference::ReferenceExecutor,
    node: usize,
    x: &[f32],
    b: usize,
    eps: f32,
) -> (Vec<f32>, Vec<f32>) {
    let mut stepped = start.clone();
    stepped.train_step(x, &[], &[], b, 1.0).unwrap();
    let before = &start.params()[node];
    let grad = before
        .iter()
        .zip(&stepped.params()[node])
        .map(|(a, c)| a - c)
        .collect();
    let fd = (0..before.len())
        .map(|i| {
            let at = |d: f32| {
                let mut e = start.clone();
                e.params_mut()[node][i] += d;
                e.train_step(x, &[], &[], b, 0.0).unwrap()
            };
            ((at(eps) - at(-eps)) / (2.0 * eps as f64)) as f32
        })
        .collect();
    (grad, fd)
}

/// Writes the tensors of the Hugging Face folder `fixture` to
/// `dir/model.safetensors` after `edit` (name, dtype, shape, bytes), with the
/// fixture's config and tokenizer beside it.
pub fn rewrite_fixture(fixture: &std::path::Path, dir: &std::path::Path, edit: impl Fn(&mut Vec<RawTensor>)) {
    use safetensors::{SafeTensors, tensor::TensorView};
    let bytes = std::fs::read(fixture.join("model.safetensors")).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<RawTensor> = file
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.dtype(), v.shape().to_vec(), v.data().to_vec()))
        .collect();
    edit(&mut tensors);
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    safetensors::serialize_to_file(views, None, &dir.join("model.safetensors")).unwrap();
    for f in ["config.json", "tokenizer.json"] {
        std::fs::copy(fixture.join(f), dir.join(f)).unwrap();
    }
}

/// A safetensors entry: name, dtype, shape, bytes.
pub type RawTensor = (String, safetensors::Dtype, Vec<usize>, Vec<u8>);

/// f32 values as little-endian bytes.
pub fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Little-endian f32 bytes as values.
pub fn values(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// The softmax of each row of `classes` logits (the reference twin's).
pub fn softmax_rows(logits: &[f32], classes: usize) -> Vec<f32> {
    logits
        .chunks(classes)
        .flat_map(|l| {
            let mut p = vec![0.0; classes];
            wgml::reference::softmax::softmax(l, classes, &mut p);
            p
        })
        .collect()
}

/// Saves a model `wgml::import` read as a wgml checkpoint at `path`.
pub fn save_imported(imported: &wgml::import::Imported, path: &std::path::Path) {
    wgml::checkpoint::save_functional_tensors(
        path,
        &imported.kind,
        &imported.architecture,
        &imported.tensors,
        &imported.vocabulary,
    )
    .unwrap();
}

/// Log probabilities from `probs` (a model's softmax outputs) against a
/// float64 reference's `want`, where the probability is not vanishing (f32
/// softmax underflows below e^-87): at least `min` of them compared, each within
/// 2e-4 + 1e-5 relative.
pub fn log_probs_match(what: &str, probs: &[f32], want: &[f32], min: usize) {
    assert_eq!(probs.len(), want.len(), "{what}: outputs");
    let (got, expect): (Vec<f32>, Vec<f32>) = probs
        .iter()
        .map(|&p| (p as f64).ln() as f32)
        .zip(want)
        .filter(|(_, w)| **w > -60.0)
        .map(|(g, w)| (g, *w))
        .unzip();
    assert!(
        got.len() > min,
        "{what}: {} of {} compared",
        got.len(),
        want.len()
    );
    assert_close(what, &got, &expect, 2e-4, 1e-5);
}
