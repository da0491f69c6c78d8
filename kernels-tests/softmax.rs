//! softmax kernels against `wgml::reference::softmax`.
