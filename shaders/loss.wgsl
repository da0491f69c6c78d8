// loss kernels: see src/kernels/loss.rs for the launchers and src/reference/loss.rs for the CPU twins.
