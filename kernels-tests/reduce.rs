//! reduce kernels against `wgml::reference::reduce`.
