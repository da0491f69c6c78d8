//! matmul launchers.

/// Activation applied elementwise (also in the matmul epilogue).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Activation {
    #[default]
    Identity,
    Relu,
    Sigmoid,
    Tanh,
}
