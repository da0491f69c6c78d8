//! matmul launchers.
