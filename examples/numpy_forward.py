"""Checks a wgml CNN checkpoint outside wgml: numpy + safetensors only.

Loads the safetensors file `wgml train --save` wrote (PyTorch state_dict names and
layouts: Conv2d weight [out, in, kh, kw], Linear weight [out, in], Flatten in C,H,W
order), runs the seed CNN's forward pass in plain numpy on the test split of an IDX
dataset folder and prints the test accuracy, to compare with `wgml eval`.

    pip install numpy safetensors
    cargo run --release -- train --save /tmp/cnn.safetensors
    python3 examples/numpy_forward.py /tmp/cnn.safetensors data/mnist-10k
    cargo run --release -- eval --model cnn --weights /tmp/cnn.safetensors --data mnist-10k
"""

import gzip
import struct
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (raw or .gz) as an array of its declared shape."""
    raw = path.read_bytes()
    if path.suffix == ".gz":
        raw = gzip.decompress(raw)
    zero, dtype, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    dims = struct.unpack(">" + "I" * ndim, raw[4 : 4 + 4 * ndim])
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def find(folder: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz"):
        if (folder / name).exists():
            return folder / name
    raise FileNotFoundError(f"{folder}: no {stem}[.gz]")


def conv2d_valid(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """NCHW input, OIHW weights, stride 1, no padding."""
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    ho, wo = h - kh + 1, wd - kw + 1
    patches = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(2, 3))
    # patches: [n, c, ho, wo, kh, kw] -> y[n, o, ho, wo]
    y = np.einsum("nchwij,ocij->nohw", patches, w, optimize=True)
    return y + b.reshape(1, o, 1, 1)


def max_pool_2x2(x: np.ndarray) -> np.ndarray:
    n, c, h, w = x.shape
    h2, w2 = h // 2, w // 2
    x = x[:, :, : 2 * h2, : 2 * w2].reshape(n, c, h2, 2, w2, 2)
    return x.max(axis=(3, 5))


def forward(p: dict, x: np.ndarray) -> np.ndarray:
    """The seed CNN: Conv2d(1, 32, 3) ReLU MaxPool(2) Flatten Linear(5408, 64) ReLU Linear(64, 10)."""
    y = np.maximum(conv2d_valid(x, p["0.weight"], p["0.bias"]), 0.0)
    y = max_pool_2x2(y).reshape(x.shape[0], -1)
    y = np.maximum(y @ p["4.weight"].T + p["4.bias"], 0.0)
    return y @ p["6.weight"].T + p["6.bias"]


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit("usage: numpy_forward.py CHECKPOINT.safetensors DATASET_FOLDER")
    params = {k: v.astype(np.float64) for k, v in load_file(sys.argv[1]).items()}
    folder = Path(sys.argv[2])
    images = read_idx(find(folder, "t10k-images-idx3-ubyte")).astype(np.float64) / 255.0
    labels = read_idx(find(folder, "t10k-labels-idx1-ubyte")).astype(np.int64)
    x = images.reshape(-1, 1, 28, 28)
    logits = np.concatenate([forward(params, x[i : i + 500]) for i in range(0, len(x), 500)])
    # Cross-entropy from logits, as wgml reports its test loss.
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = -log_probs[np.arange(len(labels)), labels].mean()
    accuracy = (logits.argmax(axis=1) == labels).mean()
    print(f"numpy forward: {len(labels)} test images, test loss {loss:.4f}, test accuracy {accuracy:.4f}")


if __name__ == "__main__":
    main()
