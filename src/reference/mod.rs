//! CPU twins of every GPU kernel, with the same contracts as the launchers in
//! [`crate::kernels`]. Plain loops, f64 accumulation: slow and obviously right.

pub mod attention;
pub mod attention_decode;
pub mod batchnorm;
pub mod clip;
pub mod conv;
pub mod conv_pool;
pub mod copy;
pub mod dropout;
pub mod elementwise;
pub mod embedding;
pub mod layer_norm;
pub mod loss;
pub mod matmul;
pub mod matvec;
pub mod noise;
pub mod optim;
pub mod pool;
pub mod reduce;
pub mod rotary;
pub mod sequence;
pub mod softmax;
pub mod swap_axes;
