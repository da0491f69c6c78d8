//! The seed models and their training settings, shared by `wgml train` and the
//! examples so both train exactly the same thing.

use crate::error::{Error, Result};
use crate::kernels::optim::Optimizer;
use crate::nn::{Layer, LayerActivation as A, Loss, Sequential};
use crate::train::FitConfig;

/// A model with the loss, optimizer and fit settings it is trained with by default.
#[derive(Clone, Debug)]
pub struct Recipe {
    /// The recipe's name, one of [`MODELS`].
    pub name: &'static str,
    /// The model to train.
    pub model: Sequential,
    /// The loss it trains with.
    pub loss: Loss,
    /// The optimizer, with its learning rate.
    pub optimizer: Optimizer,
    /// Epochs, batch size, validation split and the other fit settings.
    pub fit: FitConfig,
    /// Default dataset name (see `Dataset::by_name`), or a synthetic set.
    pub data: &'static str,
}

/// Names accepted by [`recipe`].
pub const MODELS: [&str; 6] = ["cnn", "cnn-bn", "convnet", "mlp", "binary", "regression"];

/// Conv2D(32, 3×3, relu) → MaxPool(2×2) → Flatten → Dense(64, relu) → Dense(10, softmax);
/// Adam lr 0.001; batch 32; validation split 0.2; early stopping patience 5 with
/// restore-best; up to 10 epochs.
pub fn cnn() -> Recipe {
    Recipe {
        name: "cnn",
        model: Sequential::new(&[1, 28, 28])
            .add(Layer::conv2d(32, 3, A::Relu))
            .add(Layer::max_pool(2))
            .add(Layer::Flatten)
            .add(Layer::dense(64, A::Relu))
            .add(Layer::dense(10, A::Softmax)),
        loss: Loss::SparseCategoricalCrossentropy,
        optimizer: Optimizer::adam(0.001),
        fit: FitConfig {
            epochs: 10,
            batch_size: 32,
            validation_split: 0.2,
            patience: Some(5),
            restore_best: true,
            ..FitConfig::default()
        },
        data: "mnist-10k",
    }
}

/// The seed CNN with batch normalization between each hidden layer and its ReLU
/// (Keras' usual `Conv2D(use_bias=False) → BatchNormalization → Activation('relu')`
/// pattern: the normalization's β is the offset): Conv2D(32, 3×3, no bias) → BN →
/// ReLU → MaxPool(2×2) → Flatten → Dense(64, no bias) → BN → ReLU → Dense(10,
/// softmax); trained as [`cnn`].
pub fn cnn_bn() -> Recipe {
    Recipe {
        name: "cnn-bn",
        model: Sequential::new(&[1, 28, 28])
            .add(Layer::conv2d(32, 3, A::Linear).without_bias())
            .add(Layer::batch_norm())
            .add(Layer::Activation(A::Relu))
            .add(Layer::max_pool(2))
            .add(Layer::Flatten)
            .add(Layer::dense(64, A::Linear).without_bias())
            .add(Layer::batch_norm())
            .add(Layer::Activation(A::Relu))
            .add(Layer::dense(10, A::Softmax)),
        ..cnn()
    }
}

/// Keras' "Simple MNIST convnet" example: Conv2D(32, 3×3, relu) → MaxPool(2×2) →
/// Conv2D(64, 3×3, relu) → MaxPool(2×2) → Flatten → Dropout(0.5) →
/// Dense(10, softmax) (34,826 parameters); Adam lr 0.001; batch 128; validation
/// split 0.1; 15 epochs.
pub fn convnet() -> Recipe {
    Recipe {
        name: "convnet",
        model: Sequential::new(&[1, 28, 28])
            .add(Layer::conv2d(32, 3, A::Relu))
            .add(Layer::max_pool(2))
            .add(Layer::conv2d(64, 3, A::Relu))
            .add(Layer::max_pool(2))
            .add(Layer::Flatten)
            .add(Layer::dropout(0.5))
            .add(Layer::dense(10, A::Softmax)),
        loss: Loss::SparseCategoricalCrossentropy,
        optimizer: Optimizer::adam(0.001),
        fit: FitConfig {
            epochs: 15,
            batch_size: 128,
            validation_split: 0.1,
            ..FitConfig::default()
        },
        data: "mnist-10k",
    }
}

/// Flatten → Dense(128, relu) → Dense(10, softmax); Adam lr 0.001; batch 128; 21 epochs.
pub fn mlp() -> Recipe {
    Recipe {
        name: "mlp",
        model: Sequential::new(&[1, 28, 28])
            .add(Layer::Flatten)
            .add(Layer::dense(128, A::Relu))
            .add(Layer::dense(10, A::Softmax)),
        loss: Loss::SparseCategoricalCrossentropy,
        optimizer: Optimizer::adam(0.001),
        fit: FitConfig {
            epochs: 21,
            batch_size: 128,
            validation_split: 0.0,
            ..FitConfig::default()
        },
        data: "mnist-10k",
    }
}

/// 2 inputs → Dense(10, sigmoid) → Dense(1, sigmoid); binary cross-entropy; Adam
/// lr 0.01; batch 16; 100 epochs, on 100 samples of two Gaussian blobs.
pub fn binary() -> Recipe {
    Recipe {
        name: "binary",
        model: Sequential::new(&[2])
            .add(Layer::dense(10, A::Sigmoid))
            .add(Layer::dense(1, A::Sigmoid)),
        loss: Loss::BinaryCrossentropy,
        optimizer: Optimizer::adam(0.01),
        fit: FitConfig {
            epochs: 100,
            batch_size: 16,
            ..FitConfig::default()
        },
        data: "two-blobs",
    }
}

/// 3 inputs → Dense(2, relu) → Dense(1); MSE; plain gradient descent (SGD without
/// momentum over the whole training set each step) at lr 0.1; 1000 epochs.
pub fn regression() -> Recipe {
    Recipe {
        name: "regression",
        model: Sequential::new(&[3])
            .add(Layer::dense(2, A::Relu))
            .add(Layer::dense(1, A::Linear)),
        loss: Loss::MeanSquaredError,
        optimizer: Optimizer::sgd(0.1, 0.0),
        fit: FitConfig {
            epochs: 1000,
            batch_size: 200,
            shuffle: false,
            ..FitConfig::default()
        },
        data: "linear-regression",
    }
}

/// The recipe called `name`.
pub fn recipe(name: &str) -> Result<Recipe> {
    match name {
        "cnn" => Ok(cnn()),
        "cnn-bn" => Ok(cnn_bn()),
        "convnet" => Ok(convnet()),
        "mlp" => Ok(mlp()),
        "binary" => Ok(binary()),
        "regression" => Ok(regression()),
        other => Err(Error::invalid(format!(
            "unknown model '{other}': choose one of {}",
            MODELS.join(", ")
        ))),
    }
}
