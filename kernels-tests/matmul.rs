//! matmul kernels against `wgml::reference::matmul`.
