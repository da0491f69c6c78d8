// matmul kernels: see src/kernels/matmul.rs for the launchers and src/reference/matmul.rs for the CPU twins.
