// conv kernels: see src/kernels/conv.rs for the launchers and src/reference/conv.rs for the CPU twins.
