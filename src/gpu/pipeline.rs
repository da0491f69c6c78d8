//! Pipelines, shader modules and bind-group layouts, each created once and shared.
//!
//! - One shader module per shader file.
//! - One bind-group layout per kernel (entry point), read from the WGSL with naga:
//!   group 0 holds every buffer the entry point uses, with the access its shader
//!   declares. Because the layout does not come from a compiled pipeline, a bind
//!   group can be made before its pipeline exists.
//! - One compute pipeline per (kernel, override constants).
//!
//! Compiling a pipeline is the slow part (on lavapipe 0.4–1.1 s for a register
//! matmul even with Mesa's shader cache warm: it lowers SPIR-V to NIR each time).
//! Inside [`Context::deferring_pipelines`] the dispatches made on that thread take
//! an empty [`PipelineSlot`]; when the closure returns, every pipeline they need is
//! compiled at once on one thread per core and the slots are filled.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use crate::error::{Error, Result};
use crate::gpu::Context;
use crate::gpu::{Kernel, ShaderSource};

/// Cache key: the kernel and its override constants (values as f64 bit patterns).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PipelineKey {
    kernel: Kernel,
    constants: Vec<(&'static str, u64)>,
}

impl PipelineKey {
    fn new(kernel: Kernel, constants: &[(&'static str, f64)]) -> PipelineKey {
        PipelineKey {
            kernel,
            constants: constants.iter().map(|&(n, v)| (n, v.to_bits())).collect(),
        }
    }
}

/// The pipeline of a [`Dispatch`](crate::gpu::Dispatch): filled when the dispatch
/// is made, or, for dispatches made inside [`Context::deferring_pipelines`], before
/// that call returns `Ok`.
pub type PipelineSlot = Arc<OnceLock<Arc<wgpu::ComputePipeline>>>;

/// The layouts of one kernel: its group-0 bind-group layout and the pipeline layout
/// made of it.
#[derive(Debug)]
pub(crate) struct KernelLayout {
    pub bind_group: wgpu::BindGroupLayout,
    pipeline: wgpu::PipelineLayout,
}

/// A pipeline a deferred build still needs.
struct Pending {
    key: PipelineKey,
    constants: Vec<(&'static str, f64)>,
    slot: PipelineSlot,
}

/// A deferral in progress on one thread: the context it belongs to (its address)
/// and the pipelines requested so far.
struct Deferral {
    context: usize,
    pending: Vec<Pending>,
}

thread_local! {
    /// The deferral in progress on this thread, if any.
    static DEFERRED: RefCell<Option<Deferral>> = const { RefCell::new(None) };
}

/// Ends a deferral on drop, so a panic inside the closure does not leave this
/// thread deferring forever.
struct DeferralGuard;

impl Drop for DeferralGuard {
    fn drop(&mut self) {
        DEFERRED.with(|d| d.borrow_mut().take());
    }
}

impl Context {
    /// The compute pipeline of `kernel` with WGSL `override` constants set to
    /// `constants`; created on first use, then served from the cache.
    pub fn pipeline(
        &self,
        kernel: Kernel,
        constants: &[(&'static str, f64)],
    ) -> Result<Arc<wgpu::ComputePipeline>> {
        let key = PipelineKey::new(kernel, constants);
        self.pipelines.get_or_make(&key, || {
            let module = self.module(kernel.shader)?;
            let layout = self.kernel_layout(kernel)?;
            let label = format!("{}::{}", kernel.shader.name, kernel.entry);
            let pipeline = self
                .scoped(&format!("creating pipeline {label} {constants:?}"), || {
                    self.device
                        .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                            label: Some(&label),
                            layout: Some(&layout.pipeline),
                            module: &module,
                            entry_point: Some(kernel.entry),
                            compilation_options: wgpu::PipelineCompilationOptions {
                                constants,
                                zero_initialize_workgroup_memory: false,
                            },
                            cache: None,
                        })
                })
                .map_err(|e| match e {
                    Error::Gpu { message, .. } => Error::Shader {
                        shader: kernel.shader.name,
                        message: format!("entry point {}: {message}", kernel.entry),
                    },
                    other => other,
                })?;
            self.counters.pipelines_created.fetch_add(1, Ordering::Relaxed);
            Ok(Arc::new(pipeline))
        })
    }

    /// Runs `build`; the pipelines of the dispatches it makes on this thread with
    /// this context are compiled together, in parallel, after it returns. The
    /// dispatches may be recorded once this call has returned `Ok`; if `build` or a
    /// compilation fails, the error is returned (the first one, when several
    /// pipelines fail) and those dispatches must be dropped. Nested calls join the
    /// outermost one; dispatches of another context made inside compile at once,
    /// as they would outside.
    pub fn deferring_pipelines<T>(&self, build: impl FnOnce() -> Result<T>) -> Result<T> {
        let outermost = DEFERRED.with(|d| {
            let mut d = d.borrow_mut();
            let free = d.is_none();
            if free {
                *d = Some(Deferral {
                    context: self.id(),
                    pending: Vec::new(),
                });
            }
            free
        });
        if !outermost {
            return build();
        }
        let guard = DeferralGuard;
        let value = build();
        let pending = DEFERRED
            .with(|d| d.borrow_mut().take())
            .map(|d| d.pending)
            .unwrap_or_default();
        drop(guard);
        let value = value?;
        self.compile_pending(pending)?;
        Ok(value)
    }

    /// The slot a new dispatch of `kernel` holds: filled from the cache or by
    /// compiling now, or left empty and queued inside a deferral.
    pub(crate) fn pipeline_slot(
        &self,
        kernel: Kernel,
        constants: &[(&'static str, f64)],
    ) -> Result<PipelineSlot> {
        let slot = PipelineSlot::default();
        let key = PipelineKey::new(kernel, constants);
        let pipeline = match self.cached_pipeline(&key) {
            Some(p) => p,
            None => {
                let queued = DEFERRED.with(|d| match d.borrow_mut().as_mut() {
                    Some(deferral) if deferral.context == self.id() => {
                        deferral.pending.push(Pending {
                            key,
                            constants: constants.to_vec(),
                            slot: slot.clone(),
                        });
                        true
                    }
                    _ => false,
                });
                if queued {
                    return Ok(slot);
                }
                self.pipeline(kernel, constants)?
            }
        };
        let _ = slot.set(pipeline);
        Ok(slot)
    }

    /// Compiles what the deferral in progress on this thread has queued for this
    /// context so far (the deferral goes on, empty). Nothing to do outside one.
    pub(crate) fn compile_deferred(&self) -> Result<()> {
        let pending = DEFERRED.with(|d| match d.borrow_mut().as_mut() {
            Some(deferral) if deferral.context == self.id() => std::mem::take(&mut deferral.pending),
            _ => Vec::new(),
        });
        self.compile_pending(pending)
    }

    /// Compiles what a deferral queued (each distinct pipeline once, one worker
    /// per core) and fills the slots.
    fn compile_pending(&self, pending: Vec<Pending>) -> Result<()> {
        if pending.is_empty() {
            return Ok(());
        }
        let mut distinct: Vec<(PipelineKey, Vec<(&'static str, f64)>)> = Vec::new();
        for p in &pending {
            if !distinct.iter().any(|(k, _)| *k == p.key) {
                distinct.push((p.key.clone(), p.constants.clone()));
            }
        }
        // Shader modules first, one per shader: workers that missed the module
        // cache together would each create and validate the same one.
        let mut shaders: Vec<ShaderSource> = distinct.iter().map(|(k, _)| k.kernel.shader).collect();
        shaders.sort_unstable();
        shaders.dedup();
        for shader in shaders {
            self.module(shader)?;
        }
        let workers = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(distinct.len());
        let next = AtomicUsize::new(0);
        let results: Mutex<Vec<Option<Result<Arc<wgpu::ComputePipeline>>>>> =
            Mutex::new((0..distinct.len()).map(|_| None).collect());
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some((key, constants)) = distinct.get(i) else {
                            break;
                        };
                        let r = self.pipeline(key.kernel, constants);
                        results.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(r);
                    }
                });
            }
        });
        let results = results.into_inner().unwrap_or_else(|p| p.into_inner());
        let mut compiled = HashMap::new();
        for ((key, _), result) in distinct.into_iter().zip(results) {
            let pipeline = result
                .unwrap_or_else(|| Err(Error::invalid("internal: a queued pipeline was not compiled")))?;
            compiled.insert(key, pipeline);
        }
        for p in pending {
            if let Some(pipeline) = compiled.get(&p.key) {
                let _ = p.slot.set(pipeline.clone());
            }
        }
        Ok(())
    }

    /// An identity for this context while it lives (its address).
    fn id(&self) -> usize {
        self as *const Context as usize
    }

    /// The pipeline of `key` if it is compiled (not waiting for one being compiled).
    fn cached_pipeline(&self, key: &PipelineKey) -> Option<Arc<wgpu::ComputePipeline>> {
        self.pipelines.get(key)
    }

    /// The bind-group and pipeline layouts of `kernel`, created on first use.
    pub(crate) fn kernel_layout(&self, kernel: Kernel) -> Result<Arc<KernelLayout>> {
        self.layouts.get_or_make(&kernel, || {
            let bindings = group0_bindings(kernel.shader)?;
            let entries = bindings
                .iter()
                .find(|(name, _)| name == kernel.entry)
                .map(|(_, e)| e)
                .ok_or_else(|| Error::Shader {
                    shader: kernel.shader.name,
                    message: format!("there is no entry point '{}'", kernel.entry),
                })?;
            let label = format!("{}::{}", kernel.shader.name, kernel.entry);
            let layout = self.scoped(&format!("creating the layouts of {label}"), || {
                let bind_group = self
                    .device
                    .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                        label: Some(&label),
                        entries,
                    });
                let pipeline = self
                    .device
                    .create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                        label: Some(&label),
                        bind_group_layouts: &[Some(&bind_group)],
                        immediate_size: 0,
                    });
                KernelLayout { bind_group, pipeline }
            })?;
            Ok(Arc::new(layout))
        })
    }

    fn module(&self, shader: ShaderSource) -> Result<Arc<wgpu::ShaderModule>> {
        self.modules.get_or_make(&shader, || {
            let desc = wgpu::ShaderModuleDescriptor {
                label: Some(shader.name),
                source: wgpu::ShaderSource::Wgsl(shader.wgsl.into()),
            };
            let checks = shader_runtime_checks();
            let module = self
                .scoped(&format!("compiling shader {}", shader.name), || {
                    // SAFETY: only wgml's own shaders (compiled in, never user
                    // text) come here, and `shader_runtime_checks` documents what
                    // each of them guarantees for the checks it leaves out.
                    unsafe { self.device.create_shader_module_trusted(desc, checks) }
                })
                .map_err(|e| Error::Shader {
                    shader: shader.name,
                    message: e.to_string(),
                })?;
            Ok(Arc::new(module))
        })
    }
}

/// Environment variable that turns wgpu's injected shader checks back on
/// (`WGML_SHADER_CHECKS=1`): for chasing a suspected out-of-bounds access.
pub const SHADER_CHECKS_ENV: &str = "WGML_SHADER_CHECKS";

/// The run-time checks wgpu adds to wgml's shaders.
///
/// By default two are left out, because they cost GPUs real speed and wgml's
/// kernels make them redundant:
/// - bounds clamps on every dynamically indexed array, vector and workgroup
///   array: every kernel bounds-checks its own global indices against sizes the
///   launcher validated, and indexes its private and workgroup arrays only with
///   values its loops keep in range (the kernel tests run exactly this code with
///   outputs pre-filled with NaN, so a stray write shows);
/// - the counter wgpu adds to every loop to guard against infinite ones, which
///   keeps drivers from fully unrolling the matmul inner loops (and so keeping
///   the accumulator block in registers): every wgml loop is bounded by a
///   uniform size or an override constant.
///
/// Integer-division checks stay on (a divisor of 0 from a bad uniform would
/// otherwise be undefined behaviour). `WGML_SHADER_CHECKS=1` turns every check
/// back on.
pub fn shader_runtime_checks() -> wgpu::ShaderRuntimeChecks {
    let mut checks = wgpu::ShaderRuntimeChecks::checked();
    if std::env::var(SHADER_CHECKS_ENV).is_ok_and(|v| v == "1") {
        return checks;
    }
    checks.bounds_checks = false;
    checks.force_loop_bounding = false;
    checks
}

/// Group-0 layout entries per entry point of one shader.
type ShaderBindings = Vec<(String, Vec<wgpu::BindGroupLayoutEntry>)>;

/// For every entry point of `shader`: the group-0 layout entries of the buffers it
/// uses (directly or through the functions it calls), uniform or storage with the
/// declared access, as wgpu would derive them from the compiled pipeline. Read once
/// per process (the sources are compiled in).
pub fn group0_bindings(shader: ShaderSource) -> Result<Arc<ShaderBindings>> {
    static CACHE: OnceLock<Mutex<HashMap<ShaderSource, Arc<ShaderBindings>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(b) = cache.lock().unwrap_or_else(|p| p.into_inner()).get(&shader) {
        return Ok(b.clone());
    }
    let (module, info) = crate::gpu::parse_wgsl(shader)?;
    let fail = |message: String| Error::Shader {
        shader: shader.name,
        message,
    };
    let mut out = Vec::new();
    for (index, ep) in module.entry_points.iter().enumerate() {
        let uses = info.get_entry_point(index);
        let mut entries = Vec::new();
        for (handle, var) in module.global_variables.iter() {
            let Some(binding) = &var.binding else {
                continue;
            };
            if uses[handle].is_empty() {
                continue;
            }
            if binding.group != 0 {
                return Err(fail(format!(
                    "{} binds '{}' in group {}; wgml kernels use group 0 only",
                    ep.name,
                    var.name.as_deref().unwrap_or("?"),
                    binding.group
                )));
            }
            let ty = match var.space {
                naga::AddressSpace::Uniform => wgpu::BufferBindingType::Uniform,
                naga::AddressSpace::Storage { access } => wgpu::BufferBindingType::Storage {
                    read_only: access == naga::StorageAccess::LOAD,
                },
                other => {
                    return Err(fail(format!(
                        "{} binds '{}' in address space {other:?}; wgml kernels bind buffers only",
                        ep.name,
                        var.name.as_deref().unwrap_or("?")
                    )));
                }
            };
            entries.push(wgpu::BindGroupLayoutEntry {
                binding: binding.binding,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty,
                    has_dynamic_offset: false,
                    // As wgpu derives it: the type's size (a runtime array's
                    // element), so a too-small buffer fails at bind-group creation.
                    min_binding_size: std::num::NonZeroU64::new(
                        module.types[var.ty].inner.size(module.to_ctx()) as u64,
                    ),
                },
                count: None,
            });
        }
        out.push((ep.name.clone(), entries));
    }
    let out = Arc::new(out);
    cache
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(shader, out.clone());
    Ok(out)
}
