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
//! ## Training a model
//! (the same as README's "Using wgml from Rust"; compiled by `cargo test`, not run)
//! ```no_run
//! use wgml::kernels::optim::Optimizer;
//! use wgml::nn::{Layer, LayerActivation as A, Loss, Sequential};
//! use wgml::train::{FitConfig, Monitor, evaluate, fit};
//!
//! # fn main() -> wgml::Result<()> {
//! let ctx = wgml::Context::new(&Default::default())?; // or Context::from_device(...)
//! let data = wgml::data::Dataset::mnist_10k()?;
//! let spec = Sequential::new(&[1, 28, 28])
//!     .add(Layer::conv2d(32, 3, A::Relu))
//!     .add(Layer::max_pool(2))
//!     .add(Layer::Flatten)
//!     .add(Layer::dropout(0.25))
//!     .add(Layer::dense(10, A::Softmax));
//! println!("{}", spec.summary(Loss::SparseCategoricalCrossentropy)?);
//! let mut model = spec.compile(&ctx, Loss::SparseCategoricalCrossentropy, Optimizer::adam(1e-3), 42)?;
//! let cfg = FitConfig {
//!     epochs: 5,
//!     validation_split: 0.1,
//!     patience: Some(2),
//!     monitor: Monitor::ValAccuracy,
//!     ..FitConfig::default()
//! };
//! fit(&mut model, &ctx, &data.train, &cfg)?; // builds every plan first, pipelines in parallel
//! let e = evaluate(&mut model, &ctx, &data.test, 256)?;
//! println!("test accuracy {:?}", e.accuracy);
//! # Ok(())
//! # }
//! ```
//!
//! ## Features
//! - `cli` (default): the `wgml` command line and what only it needs (clap, the
//!   training progress bar, the report pictures). A program embedding the engine
//!   builds without it: `wgml = { version = "…", default-features = false }`.
//!
//! ## Modules
//! - [`gpu`]: context, tensors, pipeline cache, dispatches.
//! - [`kernels`]: typed launchers, one per shader file in `shaders/`.
//! - [`reference`](mod@reference): the CPU twin of every kernel.
//! - `report` (with the default `cli` feature): pictures of a training run (curves,
//!   confusion matrix, misclassified images).
//! - [`bench`](mod@bench): kernel and training-step benchmarks (`wgml bench`, `benches/`).
//! - [`graph`]: ops with static shapes, autodiff, the planner, the CPU reference executor.
//! - [`nn`]: Keras-style layers, `Sequential`, the seed models ([`nn::zoo`]).
//! - [`train`]: `fit` (early stopping, ReduceLROnPlateau, schedules, resumable backups),
//!   `evaluate`, step profiles.
//! - [`data`]: IDX files, folders of images, the embedded MNIST subset, synthetic sets.
//! - [`checkpoint`]: safetensors files in PyTorch's names, with the model's description.
//! - [`import`]: pretrained models from other programs' files (Hugging Face GPT-2);
//!   [`export`]: the way back.
#![warn(missing_docs)]

pub mod bench;
pub mod checkpoint;
pub mod data;
pub mod error;
pub mod export;
pub mod gpu;
pub mod graph;
pub mod import;
pub mod kernels;
pub mod nn;
pub mod peft;
pub mod ranges;
pub mod reference;
#[cfg(feature = "cli")]
pub mod report;
pub mod selftest;
pub mod train;

pub use error::{Error, Result};
pub use gpu::{Context, ContextOptions, DType, Tensor};
