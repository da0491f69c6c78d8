// optim kernels: see src/kernels/optim.rs for the launchers and src/reference/optim.rs for the CPU twins.
