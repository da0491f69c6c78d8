"""The fine-tuning measurement of benches/finetune.sh, in PyTorch: the same model
(Keras initialisers: Glorot-uniform weights, zero biases), data, arms, epochs, batch,
optimizer and early stopping, so that wgml's figures can be told apart from what the
recipe itself gives. The labelled images per class are drawn by numpy, not wgml's
generator: compare means over seeds, not single runs.

    python3 benches/finetune_torch.py digits|fashion [SEEDS...] > OUT/torch-<experiment>.tsv
"""

import gzip
import struct
import sys

import numpy as np
import torch
from torch import nn

torch.set_num_threads(2)


def idx(path):
    with gzip.open(path) as f:
        data = f.read()
    dims = data[3]
    shape = struct.unpack(">" + "I" * dims, data[4 : 4 + 4 * dims])
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)


def load(folder):
    def split(kind):
        x = idx(f"{folder}/{kind}-images-idx3-ubyte.gz").astype(np.float32) / 255.0
        y = idx(f"{folder}/{kind}-labels-idx1-ubyte.gz").astype(np.int64)
        return x[:, None], y

    return split("train"), split("t10k")


def keep(xy, classes):
    x, y = xy
    mask = np.isin(y, classes)
    relabel = {c: i for i, c in enumerate(classes)}
    return x[mask], np.array([relabel[v] for v in y[mask]])


def cnn(outputs):
    m = nn.Sequential(
        nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(5408, 64), nn.ReLU(), nn.Linear(64, outputs),
    )
    for layer in m:
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)
    return m


def evaluate(model, x, y):
    model.eval()
    with torch.no_grad():
        logits = model(torch.from_numpy(x))
        loss = nn.functional.cross_entropy(logits, torch.from_numpy(y)).item()
        acc = (logits.argmax(1).numpy() == y).mean()
    return acc, loss


def fit(model, x, y, epochs, lr, seed, val=None, patience=5):
    """Adam, batch 32, shuffled each epoch; early stopping on val (or training) loss,
    best weights restored, as the wgml recipe."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr, eps=1e-7)
    rng = np.random.default_rng(seed)
    best, best_state, waited = float("inf"), None, 0
    for _ in range(epochs):
        model.train()
        order = rng.permutation(len(x))
        total = 0.0
        for i in range(0, len(x), 32):
            b = order[i : i + 32]
            loss = nn.functional.cross_entropy(model(torch.from_numpy(x[b])), torch.from_numpy(y[b]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(b)
        watched = evaluate(model, *val)[1] if val is not None else total / len(x)
        if watched < best:
            best, waited = watched, 0
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
        else:
            waited += 1
            if waited >= patience:
                break
    model.load_state_dict(best_state)


def main():
    what = sys.argv[1]
    seeds = [int(s) for s in sys.argv[2:]] or [1, 2, 3, 4, 5]
    mnist = load("data/mnist-10k")
    if what == "digits":
        pre_train, pre_classes = keep(mnist[0], [0, 1, 2, 3, 4]), 5
        fine_train, fine_test = keep(mnist[0], [5, 6, 7, 8, 9]), keep(mnist[1], [5, 6, 7, 8, 9])
    else:
        pre_train, pre_classes = mnist[0], 10
        fine_train, fine_test = load("/usr/share/datasets/fashion-mnist")
    classes = int(fine_train[1].max()) + 1
    print("seed\tarm\ttest_accuracy\ttest_loss")
    for seed in seeds:
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        base = cnn(pre_classes)
        n_val = len(pre_train[0]) // 5
        px, py = pre_train
        fit(base, px[:-n_val], py[:-n_val], 5, 1e-3, seed, val=(px[-n_val:], py[-n_val:]))
        fx, fy = fine_train
        pick = np.sort(np.concatenate([rng.choice(np.flatnonzero(fy == c), 50, replace=False) for c in range(classes)]))
        fx, fy = fx[pick], fy[pick]
        for arm in ["scratch", "head", "head-lr1e-2", "conv-frozen", "all"]:
            torch.manual_seed(seed)
            model = cnn(classes)
            if arm != "scratch":
                state = {k: v for k, v in base.state_dict().items() if not k.startswith("6.")}
                model.load_state_dict(state, strict=False)
            frozen = {"head": ["0.", "4."], "head-lr1e-2": ["0.", "4."], "conv-frozen": ["0."]}.get(arm, [])
            for name, p in model.named_parameters():
                p.requires_grad_(not any(name.startswith(f) for f in frozen))
            fit(model, fx, fy, 30, 1e-2 if arm == "head-lr1e-2" else 1e-3, seed)
            acc, loss = evaluate(model, *fine_test)
            print(f"{seed}\t{arm}\t{acc:.4f}\t{loss:.4f}", flush=True)


main()
