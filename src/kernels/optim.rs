//! optim launchers.
