//! conv kernels against `wgml::reference::conv`.
