// pool kernels: see src/kernels/pool.rs for the launchers and src/reference/pool.rs for the CPU twins.
