//! CPU twins of the loss kernels (f64 accumulation).
