//! CPU twins of the optim kernels (f64 accumulation).
