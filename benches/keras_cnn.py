"""The baseline wgml's CNN is measured against: the seed CNN in Keras 3 (JAX backend)
on the same embedded data, same model, optimizer, batch size and validation split.

    pip install "jax[cpu]" keras numpy
    KERAS_BACKEND=jax python3 benches/keras_cnn.py data/mnist-10k [EPOCHS] [SEED] [cnn|cnn-bn|convnet]

`convnet` is Keras' "Simple MNIST convnet" example (wgml's `--model convnet`): two
conv blocks, Dropout(0.5), batch 128, validation split 0.1, no early stopping.
`cnn-bn` is the seed CNN with BatchNormalization before each hidden ReLU and no bias
in the layers it follows (wgml's `--model cnn-bn`), trained as the seed CNN.

Prints one line per epoch with its wall time and images/s (the first epoch includes
JAX's compilation), then the test loss and accuracy. Not part of the test suite.
"""

import os
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "examples"))
from numpy_forward import find, read_idx  # noqa: E402


class EpochTimer(keras.callbacks.Callback):
    def __init__(self, images: int):
        super().__init__()
        self.images = images

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        s = time.perf_counter() - self.start
        print(f"keras epoch {epoch + 1}: {s:.2f} s, {self.images / s:.0f} images/s, "
              f"val_accuracy {logs['val_accuracy']:.4f}", flush=True)


def main() -> None:
    folder = sys.argv[1] if len(sys.argv) > 1 else "data/mnist-10k"
    epochs = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    seed = int(sys.argv[3]) if len(sys.argv) > 3 else 42
    which = sys.argv[4] if len(sys.argv) > 4 else "cnn"
    keras.utils.set_random_seed(seed)
    from pathlib import Path

    f = Path(folder)
    load = lambda stem: read_idx(find(f, stem))  # noqa: E731
    x_train = (load("train-images-idx3-ubyte") / 255.0).astype("float32")[..., None]
    y_train = load("train-labels-idx1-ubyte").astype("int64")
    x_test = (load("t10k-images-idx3-ubyte") / 255.0).astype("float32")[..., None]
    y_test = load("t10k-labels-idx1-ubyte").astype("int64")

    if which == "convnet":
        model = keras.Sequential([
            keras.Input((28, 28, 1)),
            keras.layers.Conv2D(32, (3, 3), activation="relu"),
            keras.layers.MaxPooling2D((2, 2)),
            keras.layers.Conv2D(64, (3, 3), activation="relu"),
            keras.layers.MaxPooling2D((2, 2)),
            keras.layers.Flatten(),
            keras.layers.Dropout(0.5),
            keras.layers.Dense(10, activation="softmax"),
        ])
        batch, split, callbacks = 128, 0.1, []
    elif which == "cnn-bn":
        model = keras.Sequential([
            keras.Input((28, 28, 1)),
            keras.layers.Conv2D(32, (3, 3), use_bias=False),
            keras.layers.BatchNormalization(),
            keras.layers.Activation("relu"),
            keras.layers.MaxPooling2D((2, 2)),
            keras.layers.Flatten(),
            keras.layers.Dense(64, use_bias=False),
            keras.layers.BatchNormalization(),
            keras.layers.Activation("relu"),
            keras.layers.Dense(10, activation="softmax"),
        ])
        batch, split = 32, 0.2
        callbacks = [keras.callbacks.EarlyStopping(patience=5, restore_best_weights=True)]
    else:
        model = keras.Sequential([
            keras.Input((28, 28, 1)),
            keras.layers.Conv2D(32, (3, 3), activation="relu"),
            keras.layers.MaxPooling2D((2, 2)),
            keras.layers.Flatten(),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ])
        batch, split = 32, 0.2
        callbacks = [keras.callbacks.EarlyStopping(patience=5, restore_best_weights=True)]
    model.compile(optimizer=keras.optimizers.Adam(0.001),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    train_images = len(x_train) - int(len(x_train) * split)
    model.fit(x_train, y_train, batch_size=batch, epochs=epochs, validation_split=split,
              callbacks=callbacks + [EpochTimer(train_images)], verbose=0)
    loss, acc = model.evaluate(x_test, y_test, verbose=0)
    print(f"keras test loss {loss:.4f}, test accuracy {acc:.4f}")


if __name__ == "__main__":
    main()
