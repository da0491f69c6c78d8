//! CPU twins of the pool kernels (f64 accumulation).
