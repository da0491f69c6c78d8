//! GPU plumbing: the [`Context`], tensors, the pipeline cache, prepared dispatches
//! and the [`Timer`] that measures them.

mod context;
mod dispatch;
mod kernel;
mod once_map;
mod pipeline;
mod tensor;
mod timer;
mod tune_cache;

pub use context::{
    AdapterClass, AdapterSummary, Context, ContextOptions, CoopMatrix, CounterSnapshot, Counters,
    MatmulPrecision, OPTIONAL_FEATURES, parse_backend,
};
pub use dispatch::{Binding, Dispatch, MAX_GROUPS_PER_DIM, fold_groups};
pub use kernel::{Kernel, ShaderSource, parse_wgsl};
pub use pipeline::{PipelineKey, PipelineSlot, SHADER_CHECKS_ENV, group0_bindings, shader_runtime_checks};
pub use tensor::{DType, Tensor, numel, read_buffer, read_buffer_async};
pub use timer::{Clock, Timer};
pub use tune_cache::{CACHE_DIR_ENV, CACHE_FILE, TunedEntry, cache_dir};
