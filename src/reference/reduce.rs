//! CPU twins of the reduce kernels (f64 accumulation).
