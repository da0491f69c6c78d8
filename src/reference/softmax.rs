//! CPU twins of the softmax kernels (f64 accumulation).
