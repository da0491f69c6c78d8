//! The training losses the planner lowers and the reference executor evaluates.

/// Training losses. Each folds the model's final activation where Keras users put
/// one: categorical cross-entropy is computed from logits (a final softmax is folded
/// into the loss kernel), binary cross-entropy from logits (a final sigmoid is folded
/// in), which is both faster and numerically stable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Loss {
    /// Integer class labels; Keras' `sparse_categorical_crossentropy`.
    SparseCategoricalCrossentropy,
    /// Targets in {0, 1}; Keras' `binary_crossentropy`.
    BinaryCrossentropy,
    /// Keras' `mean_squared_error`.
    MeanSquaredError,
}

impl Loss {
    /// Keras' name of the loss, e.g. `sparse_categorical_crossentropy`.
    pub fn name(self) -> &'static str {
        match self {
            Loss::SparseCategoricalCrossentropy => "sparse_categorical_crossentropy",
            Loss::BinaryCrossentropy => "binary_crossentropy",
            Loss::MeanSquaredError => "mean_squared_error",
        }
    }

    /// True when the loss has an accuracy metric.
    pub fn is_classification(self) -> bool {
        !matches!(self, Loss::MeanSquaredError)
    }

    /// How many class labels one sample has for a model whose output has
    /// `output_shape` (one sample's): for sparse categorical cross-entropy,
    /// one per position of every axis but the last, which holds the classes
    /// (a sequence model's `[T, V]` output has T labels, as Keras computes the
    /// loss over `[batch, T, V]` with `[batch, T]` labels); 1 otherwise.
    pub fn label_positions(self, output_shape: &[usize]) -> usize {
        match (self, output_shape.split_last()) {
            (Loss::SparseCategoricalCrossentropy, Some((_, lead))) => lead.iter().product::<usize>().max(1),
            _ => 1,
        }
    }
}
