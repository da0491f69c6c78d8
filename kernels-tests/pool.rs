//! pool kernels against `wgml::reference::pool`.
