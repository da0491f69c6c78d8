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
}
