"""The encoder of `examples/models/transformer.json` in PyTorch, to compare what
wgml's transformer layers learn: each image's 28 rows are 28 tokens of 28 pixels ->
Dense 64 per token -> + a learned position embedding [28, 64] (uniform +-0.05) ->
MultiHeadAttention (4 heads of 16, self-attention, biases) + residual ->
LayerNorm (eps 1e-3) -> Dense 128 relu -> Dense 64 + residual -> LayerNorm -> mean
over tokens -> Dense 10, cross-entropy. Every Linear starts Glorot-uniform with
zero bias, as Keras' Dense; the attention's four projections with Keras' fans for
its 3-D kernels (as wgml). Same data (mnist-10k: 8,000 train / 2,000 test, pixels / 255),
Adam (lr 1e-3, eps 1e-7), batch 32 (BATCH=...), shuffled epochs, 2 CPU threads or
DEVICE=cuda (the data on the GPU, losses summed there and read once an epoch).
Prints one JSON line per seed: each epoch's training loss, accuracy and seconds,
and the test loss and accuracy at the end.

    python3 benches/transformer_torch.py EPOCHS SEEDS... > OUT/torch-transformer.jsonl
    DEVICE=cuda BATCH=128 python3 benches/transformer_torch.py 3 1   # benches/gpu_session.sh
"""

import gzip
import json
import os
import struct
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

torch.set_num_threads(2)


def idx(path):
    with gzip.open(path) as f:
        data = f.read()
    dims = data[3]
    shape = struct.unpack(">" + "I" * dims, data[4 : 4 + 4 * dims])
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)


class Encoder(nn.Module):
    def __init__(self, tokens=28, pixels=28, features=64, heads=4, key_dim=16, hidden=128, classes=10):
        super().__init__()
        self.embed = nn.Linear(pixels, features)
        self.pos = nn.Parameter(torch.empty(tokens, features).uniform_(-0.05, 0.05))
        self.query = nn.Linear(features, heads * key_dim)
        self.key = nn.Linear(features, heads * key_dim)
        self.value = nn.Linear(features, heads * key_dim)
        self.output = nn.Linear(heads * key_dim, features)
        self.ln1 = nn.LayerNorm(features, eps=1e-3)
        self.ff0 = nn.Linear(features, hidden)
        self.ff1 = nn.Linear(hidden, features)
        self.ln2 = nn.LayerNorm(features, eps=1e-3)
        self.head = nn.Linear(features, classes)
        self.heads, self.key_dim = heads, key_dim
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        # Keras' MultiHeadAttention draws its 3-D kernels with Glorot fans that count
        # the leading axis as a receptive field (wgml does the same).
        for m in (self.query, self.key, self.value):
            limit = (6 / (features * heads + features * key_dim)) ** 0.5
            nn.init.uniform_(m.weight, -limit, limit)
        limit = (6 / (heads * key_dim + heads * features)) ** 0.5
        nn.init.uniform_(self.output.weight, -limit, limit)

    def forward(self, images):
        b = images.shape[0]
        x = self.embed(images.view(b, 28, 28)) + self.pos
        split = lambda y: y.view(b, 28, self.heads, self.key_dim).transpose(1, 2)  # noqa: E731
        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        att = F.scaled_dot_product_attention(q, k, v)
        att = self.output(att.transpose(1, 2).reshape(b, 28, -1))
        h = self.ln1(x + att)
        h = self.ln2(h + self.ff1(torch.relu(self.ff0(h))))
        return self.head(h.mean(dim=1))


def main():
    epochs = int(sys.argv[1])
    seeds = [int(s) for s in sys.argv[2:]] or [1, 2, 3]
    device = torch.device(os.environ.get("DEVICE", "cpu"))
    size = int(os.environ.get("BATCH", "32"))
    root = "data/mnist-10k/"

    def images(name):
        return torch.from_numpy(idx(root + name).astype(np.float32) / 255).to(device)

    def labels(name):
        return torch.from_numpy(idx(root + name).astype(np.int64)).to(device)

    x, y = images("train-images-idx3-ubyte.gz"), labels("train-labels-idx1-ubyte.gz")
    tx, ty = images("t10k-images-idx3-ubyte.gz"), labels("t10k-labels-idx1-ubyte.gz")

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    for seed in seeds:
        torch.manual_seed(seed)
        model = Encoder().to(device)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
        history = []
        for _ in range(epochs):
            sync()
            start = time.perf_counter()
            model.train()
            order = torch.randperm(len(x), device=device)
            total = torch.zeros((), device=device)
            correct = torch.zeros((), device=device, dtype=torch.int64)
            for i in range(0, len(x), size):
                batch = order[i : i + size]
                logits = model(x[batch])
                loss = F.cross_entropy(logits, y[batch])
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += loss.detach() * len(batch)
                correct += (logits.argmax(1) == y[batch]).sum()
            sync()
            history.append({"loss": total.item() / len(x), "accuracy": correct.item() / len(x),
                            "seconds": time.perf_counter() - start,
                            "images_per_s": len(x) / (time.perf_counter() - start)})
        model.eval()
        with torch.no_grad():
            logits = model(tx)
        print(json.dumps({
            "seed": seed, "epochs": history,
            "test_loss": F.cross_entropy(logits, ty).item(),
            "test_accuracy": (logits.argmax(1) == ty).float().mean().item(),
            "torch": torch.__version__, "device": str(device), "batch": size,
        }), flush=True)


if __name__ == "__main__":
    main()
