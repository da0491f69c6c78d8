//! CPU twins of the conv kernels (f64 accumulation).
