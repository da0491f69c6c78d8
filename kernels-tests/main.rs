//! GPU kernels against their CPU twins. One module per kernel family, named as the
//! shader, launcher and reference it checks. Run with `cargo test --release`.

mod alloc;
mod common;

#[global_allocator]
static ALLOCATOR: alloc::Recording = alloc::Recording;

mod attention;
mod attention_decode;
mod batchnorm;
mod bench;
mod bert;
mod chat;
mod cli;
mod clip;
mod context;
mod conv;
mod conv_pool;
mod conv_transpose;
mod copy;
mod crash_safe;
mod device_lost;
mod dropout;
mod elementwise;
mod embedding;
mod functional;
mod gan;
mod golden;
mod gpt2;
mod graph_ops;
mod hostile_files;
mod layer_norm;
mod llama;
mod lora;
mod loss;
mod matmul;
mod matmul_coop;
mod matvec;
mod noise;
mod optim;
mod padding;
mod peft;
mod pipeline;
mod pool;
mod reduce;
mod report;
mod rotary;
mod sequence;
mod soak;
mod softmax;
mod swap_axes;
mod train;
mod transformer;
mod tune;
mod vae;
mod wgsl;
