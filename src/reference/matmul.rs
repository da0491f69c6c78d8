//! CPU twins of the matmul kernels (f64 accumulation).
