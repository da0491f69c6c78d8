//! GPU plumbing: the [`Context`], tensors, the pipeline cache, prepared dispatches
//! and the [`Timer`] that measures them.

mod context;
mod dispatch;
mod once_map;
mod pipeline;
mod tensor;
mod timer;

pub use context::{
    AdapterSummary, Context, ContextOptions, CounterSnapshot, Counters, OPTIONAL_FEATURES, parse_backend,
};
pub use dispatch::{Binding, Dispatch, MAX_GROUPS_PER_DIM, fold_groups};
pub use pipeline::{PipelineKey, PipelineSlot, group0_bindings};
pub use tensor::{DType, Tensor, numel, read_buffer};
pub use timer::{Clock, Timer};
