//! loss kernels against `wgml::reference::loss`.
