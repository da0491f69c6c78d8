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

MODEL=vit runs `examples/models/vit.json` instead (the Vit class below).
"""

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
from numpy_forward import find, read_idx  # noqa: E402

torch.set_num_threads(2)


class SelfAttention(nn.Module):
    """Keras' MultiHeadAttention as self-attention: four projections, heads side by
    side in their columns, softmax(q.k / sqrt(key_dim)) v per head (each position
    attending to itself and earlier ones only with `causal`)."""

    def __init__(self, features, heads, key_dim, causal=False):
        super().__init__()
        self.query = nn.Linear(features, heads * key_dim)
        self.key = nn.Linear(features, heads * key_dim)
        self.value = nn.Linear(features, heads * key_dim)
        self.output = nn.Linear(heads * key_dim, features)
        self.heads, self.key_dim, self.causal = heads, key_dim, causal

    def forward(self, x):
        b, t, _ = x.shape
        split = lambda y: y.view(b, t, self.heads, self.key_dim).transpose(1, 2)  # noqa: E731
        att = F.scaled_dot_product_attention(
            split(self.query(x)), split(self.key(x)), split(self.value(x)), is_causal=self.causal
        )
        return self.output(att.transpose(1, 2).reshape(b, t, -1))


def keras_init(model):
    """Glorot-uniform Linear and Conv2d weights (fans in·k², out·k² for a
    convolution) and zero biases, as Keras' Dense and Conv2D; the attention's
    projections with the fans of Keras' 3-D kernels [features, heads, dim] and
    [heads, dim, features] (as wgml)."""
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
    # A second pass: modules() yields a SelfAttention before its projections, which
    # the first pass would otherwise draw again.
    for m in model.modules():
        if isinstance(m, SelfAttention):
            features, width = m.query.in_features, m.query.out_features
            limit = (6 / (features * m.heads + features * m.key_dim)) ** 0.5
            for p in (m.query, m.key, m.value):
                nn.init.uniform_(p.weight, -limit, limit)
            limit = (6 / (width + m.heads * features)) ** 0.5
            nn.init.uniform_(m.output.weight, -limit, limit)


class Encoder(nn.Module):
    """`examples/models/transformer.json` (post-norm, each row a token)."""

    def __init__(self, tokens=28, pixels=28, features=64, heads=4, key_dim=16, hidden=128, classes=10):
        super().__init__()
        self.embed = nn.Linear(pixels, features)
        self.pos = nn.Parameter(torch.empty(tokens, features).uniform_(-0.05, 0.05))
        self.att = SelfAttention(features, heads, key_dim)
        self.ln1 = nn.LayerNorm(features, eps=1e-3)
        self.ff0 = nn.Linear(features, hidden)
        self.ff1 = nn.Linear(hidden, features)
        self.ln2 = nn.LayerNorm(features, eps=1e-3)
        self.head = nn.Linear(features, classes)
        keras_init(self)

    def forward(self, images):
        x = self.embed(images.view(-1, 28, 28)) + self.pos
        h = self.ln1(x + self.att(x))
        h = self.ln2(h + self.ff1(torch.relu(self.ff0(h))))
        return self.head(h.mean(dim=1))


class Vit(nn.Module):
    """`examples/models/vit.json`: 4x4 patches by a stride-4 Conv2D (64 filters) ->
    49 tokens [49, 64] -> + position embedding -> pre-norm block (LayerNorm ->
    attention 4x16 -> + residual; LayerNorm -> Dense 128 GELU -> Dense 64 -> +
    residual) -> LayerNorm -> mean over tokens -> Dense 10."""

    def __init__(self, features=64, heads=4, key_dim=16, hidden=128, classes=10):
        super().__init__()
        self.patches = nn.Conv2d(1, features, 4, stride=4)
        self.pos = nn.Parameter(torch.empty(49, features).uniform_(-0.05, 0.05))
        self.ln1 = nn.LayerNorm(features, eps=1e-3)
        self.att = SelfAttention(features, heads, key_dim)
        self.ln2 = nn.LayerNorm(features, eps=1e-3)
        self.mlp0 = nn.Linear(features, hidden)
        self.mlp1 = nn.Linear(hidden, features)
        self.ln3 = nn.LayerNorm(features, eps=1e-3)
        self.head = nn.Linear(features, classes)
        keras_init(self)

    def forward(self, images):
        x = self.patches(images.view(-1, 1, 28, 28)).flatten(2).transpose(1, 2) + self.pos
        x = x + self.att(self.ln1(x))
        x = x + self.mlp1(F.gelu(self.mlp0(self.ln2(x))))
        return self.head(self.ln3(x).mean(dim=1))


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def train_epoch(model, opt, x, y, size, device):
    """One shuffled epoch of cross-entropy training on (x, y) in batches of `size`
    (y: a class per sample, or one per position for [N, T] labels); returns the
    mean loss and accuracy per label and the seconds it took (synchronised on
    CUDA; the sums stay on the device until the end)."""
    sync(device)
    start = time.perf_counter()
    model.train()
    order = torch.randperm(len(x), device=device)
    total = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    for i in range(0, len(x), size):
        batch = order[i : i + size]
        logits = model(x[batch])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y[batch].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        total += loss.detach() * y[batch].numel()
        correct += (logits.argmax(-1) == y[batch]).sum()
    sync(device)
    return total.item() / y.numel(), correct.item() / y.numel(), time.perf_counter() - start


def main():
    epochs = int(sys.argv[1])
    seeds = [int(s) for s in sys.argv[2:]] or [1, 2, 3]
    device = torch.device(os.environ.get("DEVICE", "cpu"))
    size = int(os.environ.get("BATCH", "32"))
    root = Path("data/mnist-10k")

    def images(name):
        return torch.from_numpy(read_idx(find(root, name)).astype(np.float32) / 255).to(device)

    def labels(name):
        return torch.from_numpy(read_idx(find(root, name)).astype(np.int64)).to(device)

    x, y = images("train-images-idx3-ubyte"), labels("train-labels-idx1-ubyte")
    tx, ty = images("t10k-images-idx3-ubyte"), labels("t10k-labels-idx1-ubyte")

    for seed in seeds:
        torch.manual_seed(seed)
        model = (Vit() if os.environ.get("MODEL") == "vit" else Encoder()).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
        history = []
        for _ in range(epochs):
            loss, accuracy, seconds = train_epoch(model, opt, x, y, size, device)
            history.append({"loss": loss, "accuracy": accuracy, "seconds": seconds,
                            "images_per_s": len(x) / seconds})
        model.eval()
        with torch.no_grad():
            logits = model(tx)
        print(json.dumps({
            "seed": seed, "epochs": history,
            "test_loss": F.cross_entropy(logits, ty).item(),
            "test_accuracy": (logits.argmax(1) == ty).float().mean().item(),
            "torch": torch.__version__, "device": str(device), "batch": size,
            "model": os.environ.get("MODEL", "rows"),
        }), flush=True)


if __name__ == "__main__":
    main()
