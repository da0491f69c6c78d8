"""Loads a wgml CNN checkpoint into PyTorch with `load_state_dict(strict=True)`.

`wgml train --save` writes safetensors with the names and layouts of the model's
`torch.nn.Sequential` state_dict. This script builds that Sequential (the seed CNN, or
with `cnn-bn` the CNN with batch normalization: bias-free layers before BatchNorm2d/1d
with eps=1e-3 and momentum=0.01, Keras' 0.99 the other way round), loads the file strictly (every name
and shape must match, nothing missing or extra, `num_batches_tracked` included),
evaluates the test split of an IDX dataset folder and prints the test loss and
accuracy, to compare with `wgml eval` on the same file.

    pip install torch safetensors numpy
    cargo run --release -- train --save /tmp/cnn.safetensors
    python3 examples/torch_load.py /tmp/cnn.safetensors data/mnist-10k
    cargo run --release -- eval --model cnn --weights /tmp/cnn.safetensors --data mnist-10k
    # the same with --model cnn-bn, and cnn-bn as this script's third argument
"""

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from numpy_forward import find, read_idx


def main() -> None:
    if len(sys.argv) not in (3, 4):
        sys.exit("usage: torch_load.py CHECKPOINT.safetensors DATASET_FOLDER [cnn|cnn-bn]")
    nn = torch.nn
    if len(sys.argv) == 4 and sys.argv[3] == "cnn-bn":
        model = nn.Sequential(
            nn.Conv2d(1, 32, 3, bias=False), nn.BatchNorm2d(32, eps=1e-3, momentum=0.01), nn.ReLU(),
            nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(5408, 64, bias=False), nn.BatchNorm1d(64, eps=1e-3, momentum=0.01), nn.ReLU(),
            nn.Linear(64, 10),
        )
    else:
        model = nn.Sequential(
            nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(5408, 64), nn.ReLU(), nn.Linear(64, 10),
        )
    model.load_state_dict(load_file(sys.argv[1]), strict=True)
    model.eval()
    folder = Path(sys.argv[2])
    x = torch.tensor(read_idx(find(folder, "t10k-images-idx3-ubyte")) / 255.0,
                     dtype=torch.float32).unsqueeze(1)
    y = torch.tensor(read_idx(find(folder, "t10k-labels-idx1-ubyte")).astype("int64"))
    with torch.no_grad():
        logits = model(x)
    loss = F.cross_entropy(logits, y).item()
    accuracy = (logits.argmax(dim=1) == y).float().mean().item()
    print(f"torch load_state_dict(strict=True): {len(y)} test images, "
          f"test loss {loss:.4f}, test accuracy {accuracy:.4f}")


if __name__ == "__main__":
    main()
