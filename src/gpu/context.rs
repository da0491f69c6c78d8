//! The GPU context: adapter choice, device creation with the adapter's real limits,
//! error capture, device-lost tracking, the single place that waits on the GPU, and
//! counters that tests use to prove a training step creates nothing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::gpu::once_map::OnceMap;
use crate::gpu::pipeline::{KernelLayout, PipelineKey};

/// How to choose an adapter.
#[derive(Clone, Debug, Default)]
pub struct ContextOptions {
    /// Restrict to one backend: "vulkan", "metal", "dx12" or "gl". `None` tries all
    /// (and reads `WGML_BACKEND` when set).
    pub backend: Option<String>,
    /// Pick the first adapter whose name contains this (case-insensitive).
    pub adapter: Option<String>,
}

/// One adapter as seen during selection, for `wgml info`.
#[derive(Clone, Debug)]
pub struct AdapterSummary {
    /// The adapter's name, vendor, device type, driver and backend, as wgpu reports them.
    pub info: wgpu::AdapterInfo,
    /// Preference from device type and backend (higher is chosen first).
    pub score: u32,
}

/// Counts of GPU work and object creation since the context was made.
#[derive(Debug, Default)]
pub struct Counters {
    /// Command buffers submitted through [`Context::submit`].
    pub submissions: AtomicU64,
    /// Buffers created through [`Context::create_buffer`].
    pub buffers_created: AtomicU64,
    /// Bind groups created (one per prepared [`Dispatch`](crate::gpu::Dispatch)).
    pub bind_groups_created: AtomicU64,
    /// Compute pipelines compiled.
    pub pipelines_created: AtomicU64,
    /// Wall-clock nanoseconds the host spent inside `queue.submit` of
    /// [`Context::submit`] (drivers of CPU adapters run the work there).
    pub submit_nanos: AtomicU64,
}

/// A snapshot of [`Counters`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CounterSnapshot {
    /// Command buffers submitted.
    pub submissions: u64,
    /// Buffers created.
    pub buffers_created: u64,
    /// Bind groups created.
    pub bind_groups_created: u64,
    /// Compute pipelines compiled.
    pub pipelines_created: u64,
    /// Nanoseconds the host spent submitting.
    pub submit_nanos: u64,
}

impl std::ops::Sub for CounterSnapshot {
    type Output = CounterSnapshot;
    fn sub(self, rhs: Self) -> Self {
        CounterSnapshot {
            submissions: self.submissions - rhs.submissions,
            buffers_created: self.buffers_created - rhs.buffers_created,
            bind_groups_created: self.bind_groups_created - rhs.bind_groups_created,
            pipelines_created: self.pipelines_created - rhs.pipelines_created,
            submit_nanos: self.submit_nanos - rhs.submit_nanos,
        }
    }
}

/// How planning and kernel choice treat an adapter ([`Context::set_adapter_class`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AdapterClass {
    /// As it is: a CPU adapter gets the CPU-shaped kernels and fusions.
    Native = 0,
    /// As a GPU: split-K, GPU variants only, no CPU fusions; subgroups if the
    /// device has them.
    Gpu = 1,
    /// As a GPU without subgroup operations (the tiled kernels only), as GL and
    /// some other backends are.
    GpuWithoutSubgroups = 2,
}

/// How exactly automatically chosen matmuls compute (PyTorch's
/// `torch.set_float32_matmul_precision`; [`Context::set_matmul_precision`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum MatmulPrecision {
    /// f32 throughout: every kernel equals the f32 CPU twin to f32 rounding.
    #[default]
    Highest = 0,
    /// Where the adapter has cooperative matrices (tensor cores), products may
    /// round A and B to f16 (11 significant bits, magnitudes up to 65504) and
    /// sum in f32; elsewhere the same as `Highest`.
    Medium = 1,
}

impl MatmulPrecision {
    /// Parses `highest` or `medium` (as PyTorch names them; `high` is refused:
    /// there is no TF32 in WGSL).
    pub fn parse(name: &str) -> Result<MatmulPrecision> {
        match name.trim().to_ascii_lowercase().as_str() {
            "highest" | "f32" => Ok(MatmulPrecision::Highest),
            "medium" | "f16" => Ok(MatmulPrecision::Medium),
            other => Err(Error::invalid(format!(
                "matmul precision '{other}' is not one wgml has: use highest (f32) or medium \
                 (f16 inputs with f32 sums on tensor cores, where the GPU has them)"
            ))),
        }
    }

    /// Lower-case name, as [`MatmulPrecision::parse`] reads it.
    pub fn name(self) -> &'static str {
        match self {
            MatmulPrecision::Highest => "highest",
            MatmulPrecision::Medium => "medium",
        }
    }
}

/// The GPU: device, queue, limits and caches. Cheap to share by reference; all
/// methods take `&self`.
pub struct Context {
    /// The device every buffer, bind group and pipeline is created on.
    pub device: wgpu::Device,
    /// The device's queue: uploads and submissions go through it.
    pub queue: wgpu::Queue,
    /// The adapter's name, vendor, device type, driver and backend, as wgpu reports them.
    pub info: wgpu::AdapterInfo,
    /// The device's limits (the adapter's own when wgml created the device).
    pub limits: wgpu::Limits,
    /// Features enabled on the device (the optional ones the adapter offers when wgml
    /// created it).
    pub features: wgpu::Features,
    /// Why this adapter was chosen (for `wgml info`).
    pub choice: String,
    /// Every adapter seen during selection.
    pub adapters: Vec<AdapterSummary>,
    /// Creation and submission counts since the context was made (see [`Context::counters`]).
    pub counters: Counters,
    pub(crate) modules: OnceMap<super::ShaderSource, Arc<wgpu::ShaderModule>>,
    pub(crate) pipelines: OnceMap<PipelineKey, Arc<wgpu::ComputePipeline>>,
    pub(crate) layouts: OnceMap<super::Kernel, Arc<KernelLayout>>,
    /// Kernel choices measured on this adapter (the tuner above this layer decides
    /// what they mean).
    pub(crate) tuning: super::tune_cache::TuneStore,
    /// The cooperative-matrix product the tensor-core matmul uses, when the
    /// device offers it (see [`Context::coop_matrix`]).
    coop_matrix: Option<CoopMatrix>,
    /// The verdict of the tensor-core matmul's check on this device, once the
    /// kernel library has run it (see [`Context::coop_check_or_run`]).
    coop_check: std::sync::OnceLock<std::result::Result<(), String>>,
    /// [`MatmulPrecision`] of automatically chosen matmuls, as a u8.
    precision: std::sync::atomic::AtomicU8,
    /// How planning and kernel choice see the adapter (see [`AdapterClass`]).
    class: std::sync::atomic::AtomicU8,
    /// A cap on grid dimensions below the device's (0: none; see
    /// [`Context::set_max_groups_per_dim`]).
    grid_cap: std::sync::atomic::AtomicU32,
    lost: Arc<Mutex<Option<(String, String)>>>,
    uncaptured: Arc<Mutex<Option<String>>>,
    poll_lock: Mutex<()>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("adapter", &self.info.name)
            .field("backend", &self.info.backend)
            .finish()
    }
}

/// The cooperative-matrix product (tensor cores on NVIDIA, matrix cores on AMD,
/// simdgroup matrices on Apple) that `matmul_coop` is written for: 16×16×16 or
/// 8×8×8 with f16 A and B and an f32 accumulator, scoped to one subgroup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CoopMatrix {
    /// Fragment side: 16 (16×16×16, NVIDIA and AMD) where the adapter offers it,
    /// else 8 (8×8×8, Apple and Mesa's lavapipe).
    pub frag: u32,
    /// How many cooperative-matrix configurations the adapter reports in all.
    pub offered: usize,
}

impl CoopMatrix {
    /// The product `matmul_coop` needs, if `adapter` reports it.
    fn from_adapter(adapter: &wgpu::Adapter) -> Option<CoopMatrix> {
        if !adapter
            .features()
            .contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX)
        {
            return None;
        }
        let configs = adapter.cooperative_matrix_properties();
        let offers = |side: u32| {
            configs.iter().any(|c| {
                (c.m_size, c.n_size, c.k_size) == (side, side, side)
                    && c.ab_type == wgpu::CooperativeScalarType::F16
                    && c.cr_type == wgpu::CooperativeScalarType::F32
            })
        };
        [16, 8]
            .into_iter()
            .find(|&side| offers(side))
            .map(|frag| CoopMatrix {
                frag,
                offered: configs.len(),
            })
    }
}

/// Parses a backend name as given on the command line.
pub fn parse_backend(name: &str) -> Result<wgpu::Backends> {
    match name.to_ascii_lowercase().as_str() {
        "vulkan" | "vk" => Ok(wgpu::Backends::VULKAN),
        "metal" | "mtl" => Ok(wgpu::Backends::METAL),
        "dx12" | "d3d12" => Ok(wgpu::Backends::DX12),
        "gl" | "gles" | "opengl" => Ok(wgpu::Backends::GL),
        _ => Err(Error::UnknownBackend(name.to_string())),
    }
}

/// Preference of a device type: discrete first, CPU last.
fn type_score(t: wgpu::DeviceType) -> u32 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 40,
        wgpu::DeviceType::IntegratedGpu => 30,
        wgpu::DeviceType::VirtualGpu => 20,
        wgpu::DeviceType::Other => 10,
        wgpu::DeviceType::Cpu => 5,
    }
}

/// Native backends beat GL at equal device type.
fn backend_score(b: wgpu::Backend) -> u32 {
    match b {
        wgpu::Backend::Vulkan | wgpu::Backend::Metal | wgpu::Backend::Dx12 => 2,
        wgpu::Backend::Gl => 1,
        _ => 0,
    }
}

/// Optional features wgml uses when the adapter offers them.
pub const OPTIONAL_FEATURES: wgpu::Features = wgpu::Features::TIMESTAMP_QUERY
    .union(wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS)
    .union(wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES)
    .union(wgpu::Features::SUBGROUP)
    .union(wgpu::Features::SHADER_F16)
    .union(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX);

impl Context {
    /// Chooses an adapter and creates a device on it (blocking).
    pub fn new(options: &ContextOptions) -> Result<Context> {
        pollster::block_on(Self::new_async(options))
    }

    /// Chooses an adapter and creates a device on it.
    pub async fn new_async(options: &ContextOptions) -> Result<Context> {
        let backend = options
            .backend
            .clone()
            .or_else(|| std::env::var("WGML_BACKEND").ok().filter(|s| !s.is_empty()));
        let backends = match &backend {
            Some(name) => parse_backend(name)?,
            None => wgpu::Backends::all(),
        };
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
        desc.backends = backends;
        let instance = wgpu::Instance::new(desc);
        // With no backend named, GL is only a fallback: probing it is slow and noisy
        // on headless machines, and it is never preferred over a native backend.
        let mut adapters = instance
            .enumerate_adapters(backends & wgpu::Backends::PRIMARY)
            .await;
        if adapters.is_empty() && backends.contains(wgpu::Backends::GL) {
            adapters = instance.enumerate_adapters(wgpu::Backends::GL).await;
        }
        if adapters.is_empty() {
            return Err(Error::NoAdapter {
                backends: format!("{backends:?}"),
            });
        }
        let mut summaries: Vec<AdapterSummary> = adapters
            .iter()
            .map(|a| {
                let info = a.get_info();
                let score = type_score(info.device_type) + backend_score(info.backend);
                AdapterSummary { info, score }
            })
            .collect();
        let chosen = match &options.adapter {
            Some(wanted) => {
                let w = wanted.to_ascii_lowercase();
                let idx = summaries
                    .iter()
                    .position(|s| s.info.name.to_ascii_lowercase().contains(&w))
                    .ok_or_else(|| Error::AdapterNotFound {
                        wanted: wanted.clone(),
                        found: summaries
                            .iter()
                            .map(|s| format!("'{}' ({:?})", s.info.name, s.info.backend))
                            .collect::<Vec<_>>()
                            .join(", "),
                    })?;
                (idx, format!("its name contains '{wanted}' (--adapter)"))
            }
            None => {
                let idx = (0..summaries.len())
                    .max_by_key(|&i| (summaries[i].score, std::cmp::Reverse(i)))
                    .expect("adapters is not empty");
                let s = &summaries[idx].info;
                (
                    idx,
                    format!(
                        "highest preference among {} adapter(s): {:?} on {:?} (discrete > integrated > virtual > CPU; Vulkan/Metal/DX12 > GL)",
                        summaries.len(),
                        s.device_type,
                        s.backend
                    ),
                )
            }
        };
        let adapter = &adapters[chosen.0];
        summaries.sort_by_key(|s| std::cmp::Reverse(s.score));
        let mut ctx = Self::from_adapter(adapter).await?;
        ctx.choice = chosen.1;
        ctx.adapters = summaries;
        Ok(ctx)
    }

    /// Creates a device on `adapter` with the adapter's own limits and the optional
    /// features it offers.
    pub async fn from_adapter(adapter: &wgpu::Adapter) -> Result<Context> {
        let info = adapter.get_info();
        let mut features = adapter.features() & OPTIONAL_FEATURES;
        // Cooperative matrices serve only the f16 → f32 product of the
        // tensor-core matmul (`matmul_coop`), and that needs f16 in shaders too.
        let coop =
            CoopMatrix::from_adapter(adapter).filter(|_| features.contains(wgpu::Features::SHADER_F16));
        if coop.is_none() {
            features.remove(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX);
        }
        let experimental = if features.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX) {
            // SAFETY: the one experimental feature wgml asks for is cooperative
            // matrices, used by one shader (`shaders/matmul_coop.wgsl`) whose
            // results the kernel tests and `wgml selftest` compare with the CPU
            // twin on the adapter; shaders that do not use the types compile as
            // without the feature (naga adds the capability per module).
            unsafe { wgpu::ExperimentalFeatures::enabled() }
        } else {
            wgpu::ExperimentalFeatures::disabled()
        };
        let limits = adapter.limits();
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("wgml"),
                required_features: features,
                required_limits: limits.clone(),
                experimental_features: experimental,
                memory_hints: wgpu::MemoryHints::Performance,
                trace: wgpu::Trace::Off,
            })
            .await
            .map_err(|e| Error::RequestDevice {
                adapter: info.name.clone(),
                message: e.to_string(),
            })?;
        let mut ctx = Self::from_device(info, device, queue);
        ctx.coop_matrix = coop;
        Ok(ctx)
    }

    /// Wraps a device and queue that a host program already owns, so wgml can run
    /// on the GPU of another wgpu application. wgml uses the device's own limits and
    /// features; it installs a device-lost callback and an uncaptured-error handler.
    pub fn from_device(info: wgpu::AdapterInfo, device: wgpu::Device, queue: wgpu::Queue) -> Self {
        let lost = Arc::new(Mutex::new(None));
        let lost_slot = lost.clone();
        device.set_device_lost_callback(move |reason, message| {
            if let Ok(mut slot) = lost_slot.lock() {
                *slot = Some((format!("{reason:?}"), message));
            }
        });
        let uncaptured = Arc::new(Mutex::new(None));
        let slot = uncaptured.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            if let Ok(mut s) = slot.lock() {
                s.get_or_insert_with(|| e.to_string());
            }
        }));
        Context {
            limits: device.limits(),
            features: device.features(),
            choice: "supplied by the host program".to_string(),
            adapters: Vec::new(),
            info,
            device,
            queue,
            counters: Counters::default(),
            modules: OnceMap::default(),
            pipelines: OnceMap::default(),
            layouts: OnceMap::default(),
            tuning: Default::default(),
            coop_matrix: None,
            coop_check: std::sync::OnceLock::new(),
            precision: std::sync::atomic::AtomicU8::new(MatmulPrecision::Highest as u8),
            class: std::sync::atomic::AtomicU8::new(AdapterClass::Native as u8),
            grid_cap: std::sync::atomic::AtomicU32::new(0),
            lost,
            uncaptured,
            poll_lock: Mutex::new(()),
        }
    }

    /// True when planning and kernel choice treat the adapter as a CPU
    /// implementation (lavapipe, WARP, SwiftShader): when it is one, unless
    /// [`Context::set_adapter_class`] says to plan as on a GPU.
    pub fn is_cpu(&self) -> bool {
        self.is_cpu_device() && self.adapter_class() == AdapterClass::Native
    }

    /// True when the adapter really is a CPU implementation, whatever planning
    /// pretends (compile and run costs follow the real device).
    pub fn is_cpu_device(&self) -> bool {
        self.info.device_type == wgpu::DeviceType::Cpu
    }

    /// True when kernels may use subgroup operations: the device has them and
    /// [`Context::set_adapter_class`] has not hidden them.
    pub fn subgroups(&self) -> bool {
        self.features.contains(wgpu::Features::SUBGROUP)
            && self.adapter_class() != AdapterClass::GpuWithoutSubgroups
    }

    /// The cooperative-matrix product of the tensor-core matmul, when the device
    /// has one (16×16×16 or 8×8×8, f16 inputs, f32 accumulator) and planning has not
    /// hidden it ([`AdapterClass::GpuWithoutSubgroups`] hides it with subgroups).
    pub fn coop_matrix(&self) -> Option<CoopMatrix> {
        self.coop_matrix.filter(|_| self.subgroups())
    }

    /// Sets how exactly automatically chosen matmuls compute, from the next plan
    /// or launch on (see [`MatmulPrecision`]; a variant forced in a description
    /// runs whatever this says).
    pub fn set_matmul_precision(&self, precision: MatmulPrecision) {
        self.precision
            .store(precision as u8, std::sync::atomic::Ordering::Relaxed);
    }

    /// How exactly automatically chosen matmuls compute.
    pub fn matmul_precision(&self) -> MatmulPrecision {
        match self.precision.load(std::sync::atomic::Ordering::Relaxed) {
            1 => MatmulPrecision::Medium,
            _ => MatmulPrecision::Highest,
        }
    }

    /// True when automatically chosen matmuls may run on tensor cores: the
    /// precision is [`MatmulPrecision::Medium`] and the device has them.
    pub fn reduced_matmuls(&self) -> bool {
        self.matmul_precision() == MatmulPrecision::Medium && self.coop_matrix().is_some()
    }

    /// The verdict of the kernel library's check that the tensor-core matmul
    /// agrees with the f32 one on this device, if it has run
    /// (`kernels::matmul_coop::tensor_cores_allowed` runs it, the first time
    /// automatic choice could pick tensor cores): `Err` says what failed.
    pub fn coop_check(&self) -> Option<&std::result::Result<(), String>> {
        self.coop_check.get()
    }

    /// Keeps `verdict` as the check's for the life of the context, unless one is
    /// kept already; returns the one kept.
    pub fn record_coop_check(
        &self,
        verdict: std::result::Result<(), String>,
    ) -> &std::result::Result<(), String> {
        self.coop_check.get_or_init(|| verdict)
    }

    /// True when a device loss or an uncaptured error is waiting for
    /// [`Context::check`] to report it (nothing is taken).
    pub fn has_pending_error(&self) -> bool {
        self.lost.lock().map_or(true, |s| s.is_some()) || self.uncaptured.lock().map_or(true, |s| s.is_some())
    }

    /// How planning and kernel choice see this adapter.
    pub fn adapter_class(&self) -> AdapterClass {
        match self.class.load(std::sync::atomic::Ordering::Relaxed) {
            1 => AdapterClass::Gpu,
            2 => AdapterClass::GpuWithoutSubgroups,
            _ => AdapterClass::Native,
        }
    }

    /// Makes planning and kernel choice on this context behave as `class` says,
    /// from the next plan or launch on (those made before keep their choices):
    /// the test suite runs the paths real GPUs take on a CPU adapter this way.
    /// Results stay exact; only speed and kernel choice change.
    pub fn set_adapter_class(&self, class: AdapterClass) {
        self.class
            .store(class as u8, std::sync::atomic::Ordering::Relaxed);
    }

    /// The most workgroups wgml puts in one grid dimension: the device's limit (at
    /// most 65,535), or the cap [`Context::set_max_groups_per_dim`] set.
    pub fn max_groups_per_dim(&self) -> u32 {
        let device = self
            .limits
            .max_compute_workgroups_per_dimension
            .min(super::MAX_GROUPS_PER_DIM);
        match self.grid_cap.load(std::sync::atomic::Ordering::Relaxed) {
            0 => device,
            cap => cap.min(device),
        }
    }

    /// Caps grid dimensions at `cap` workgroups (0 restores the device's limit) from
    /// the next plan or launch on: larger dispatches fold into 2-D and 3-D grids, as
    /// those over 65,535 workgroups do on every device. The test suite proves the
    /// folding of every kernel this way with small dispatches; results stay exact.
    pub fn set_max_groups_per_dim(&self, cap: u32) {
        self.grid_cap.store(cap, std::sync::atomic::Ordering::Relaxed);
    }

    /// Returns an error if the device was lost or an uncaptured error happened
    /// since the last check.
    pub fn check(&self) -> Result<()> {
        if let Some((reason, message)) = self.lost.lock().ok().and_then(|s| s.clone()) {
            return Err(Error::DeviceLost { reason, message });
        }
        if let Some(message) = self.uncaptured.lock().ok().and_then(|mut s| s.take()) {
            return Err(Error::Gpu {
                context: "running GPU work".into(),
                message,
            });
        }
        Ok(())
    }

    /// Runs `f` inside validation and out-of-memory error scopes and turns any
    /// captured error into an [`Error`].
    pub fn scoped<T>(&self, context: &str, f: impl FnOnce() -> T) -> Result<T> {
        self.check()?;
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let value = f();
        let v = pollster::block_on(validation.pop());
        let o = pollster::block_on(oom.pop());
        if o.is_some() {
            return Err(Error::OutOfMemory {
                context: context.to_string(),
            });
        }
        if let Some(e) = v {
            return Err(Error::Gpu {
                context: context.to_string(),
                message: e.to_string(),
            });
        }
        Ok(value)
    }

    /// Blocks until all submitted work is done. This is the one place wgml waits on
    /// the GPU; polls are serialised so two threads never poll the device at once
    /// (wgpu-core 30.0.1 can panic when they do, see DESIGN.md).
    pub fn wait(&self) -> Result<()> {
        let _guard = self.poll_lock.lock().unwrap_or_else(|p| p.into_inner());
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Gpu {
                context: "waiting for the GPU".into(),
                message: e.to_string(),
            })?;
        self.check()
    }

    /// Submits one command buffer and counts it.
    pub fn submit(&self, commands: wgpu::CommandBuffer) -> Result<()> {
        self.check()?;
        let start = std::time::Instant::now();
        self.queue.submit(Some(commands));
        let nanos = start.elapsed().as_nanos().min(u64::MAX as u128) as u64;
        self.counters.submissions.fetch_add(1, Ordering::Relaxed);
        self.counters.submit_nanos.fetch_add(nanos, Ordering::Relaxed);
        Ok(())
    }

    /// A snapshot of the creation and submission counters.
    pub fn counters(&self) -> CounterSnapshot {
        let c = &self.counters;
        CounterSnapshot {
            submissions: c.submissions.load(Ordering::Relaxed),
            buffers_created: c.buffers_created.load(Ordering::Relaxed),
            bind_groups_created: c.bind_groups_created.load(Ordering::Relaxed),
            pipelines_created: c.pipelines_created.load(Ordering::Relaxed),
            submit_nanos: c.submit_nanos.load(Ordering::Relaxed),
        }
    }

    /// Largest size in bytes a single storage binding may have on this device.
    pub fn max_binding_bytes(&self) -> u64 {
        self.limits
            .max_storage_buffer_binding_size
            .min(self.limits.max_buffer_size)
    }

    /// True when GPU timestamp queries can be written between passes.
    pub fn has_timestamps(&self) -> bool {
        self.features.contains(wgpu::Features::TIMESTAMP_QUERY)
    }
}
