// reduce kernels: see src/kernels/reduce.rs for the launchers and src/reference/reduce.rs for the CPU twins.
