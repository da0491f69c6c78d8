//! optim kernels against `wgml::reference::optim`.
