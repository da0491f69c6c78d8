// softmax kernels: see src/kernels/softmax.rs for the launchers and src/reference/softmax.rs for the CPU twins.
