//! # wgml
//!
//! A GPU compute-shader deep-learning engine: hand-written WGSL kernels launched
//! through wgpu on any GPU it reaches (Vulkan, Metal, DX12, GL), each proven equal to
//! a plain CPU twin.
//!
//! ## Dimension names
//! - `N` batch, `C` channels, `H` height, `W` width; images are NCHW, conv weights
//!   OIHW (PyTorch's layouts).
//! - Matmul: `C[M, N] = op(A)[M, K] · op(B)[K, N]`.
//! - All tensors are dense and row-major; the last dimension is contiguous.
//!
//! ## Modules
//! - [`gpu`]: context, tensors, pipeline cache, dispatches.
//! - [`kernels`]: typed launchers, one per shader file in `shaders/`.
//! - [`reference`]: the CPU twin of every kernel.
//! - [`report`]: pictures of a training run (curves, confusion matrix, misclassified images).
//! - [`bench`]: kernel and training-step benchmarks (`wgml bench`, `benches/`).

pub mod bench;
pub mod checkpoint;
pub mod data;
pub mod error;
pub mod gpu;
pub mod graph;
pub mod kernels;
pub mod nn;
pub mod reference;
pub mod report;
pub mod selftest;
pub mod train;

pub use error::{Error, Result};
pub use gpu::{Context, ContextOptions, DType, Tensor};
