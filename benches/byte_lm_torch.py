"""`examples/models/byte_lm.json` in PyTorch, on the same byte windows as wgml's
`--data text:FILE`, to compare what the two learn and how fast: bytes as tokens
(256) -> Embedding 64 (uniform +-0.05, as Keras) + a learned position embedding
[64, 64] (uniform +-0.05) -> two pre-norm blocks (LayerNorm eps 1e-3 -> causal
attention 4x16 with biases -> + residual; LayerNorm -> Linear 256 GELU -> Linear 64
-> + residual) -> LayerNorm -> Linear 256 per token; cross-entropy over every
token. Linear layers start Glorot-uniform with zero bias, the attention's
projections with Keras' fans (benches/transformer_torch.py's keras_init).

Data as wgml cuts it (src/data/text.rs): the first 90% of the file (rounded) is
for training, the rest for testing; windows of 65 bytes start every 64 bytes, the
first 64 the sample, the last 64 its labels. Adam (lr LR=3e-3, eps 1e-7), batch 32
(BATCH=...), shuffled epochs, 2 CPU threads or DEVICE=cuda. Prints one JSON line:
each epoch's per-token training loss, accuracy, seconds and tokens/s, then the test
loss, accuracy and perplexity.

    python3 benches/byte_lm_torch.py FILE EPOCHS [SEED] > OUT/torch-byte-lm.json
"""

import json
import math
import os
import sys

import torch
import torch.nn.functional as F
from torch import nn

from transformer_torch import SelfAttention, keras_init, train_epoch

torch.set_num_threads(2)

TOKENS, FEATURES, HEADS, KEY_DIM, HIDDEN, VOCAB = 64, 64, 4, 16, 256, 256


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln1 = nn.LayerNorm(FEATURES, eps=1e-3)
        self.att = SelfAttention(FEATURES, HEADS, KEY_DIM, causal=True)
        self.ln2 = nn.LayerNorm(FEATURES, eps=1e-3)
        self.mlp0 = nn.Linear(FEATURES, HIDDEN)
        self.mlp1 = nn.Linear(HIDDEN, FEATURES)

    def forward(self, x):
        x = x + self.att(self.ln1(x))
        return x + self.mlp1(F.gelu(self.mlp0(self.ln2(x))))


class ByteLm(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, FEATURES)
        self.pos = nn.Parameter(torch.empty(TOKENS, FEATURES).uniform_(-0.05, 0.05))
        self.blocks = nn.Sequential(Block(), Block())
        self.ln_f = nn.LayerNorm(FEATURES, eps=1e-3)
        self.head = nn.Linear(FEATURES, VOCAB)
        keras_init(self)
        nn.init.uniform_(self.embed.weight, -0.05, 0.05)

    def forward(self, ids):
        return self.head(self.ln_f(self.blocks(self.embed(ids) + self.pos)))


def windows(text, device):
    count = (len(text) - 1) // TOKENS
    data = torch.tensor(list(text[: count * TOKENS + 1]), dtype=torch.int64)
    x = torch.stack([data[w * TOKENS : (w + 1) * TOKENS] for w in range(count)])
    y = torch.stack([data[w * TOKENS + 1 : (w + 1) * TOKENS + 1] for w in range(count)])
    return x.to(device), y.to(device)


def main():
    path, epochs = sys.argv[1], int(sys.argv[2])
    seed = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    device = torch.device(os.environ.get("DEVICE", "cpu"))
    size = int(os.environ.get("BATCH", "32"))
    text = open(path, "rb").read()
    cut = round(len(text) * 0.9)
    x, y = windows(text[:cut], device)
    tx, ty = windows(text[cut:], device)

    torch.manual_seed(seed)
    model = ByteLm().to(device)
    opt = torch.optim.Adam(model.parameters(), lr=float(os.environ.get("LR", "3e-3")), eps=1e-7)
    history = []
    for _ in range(epochs):
        loss, accuracy, seconds = train_epoch(model, opt, x, y, size, device)
        history.append({"loss": loss, "accuracy": accuracy, "seconds": seconds,
                        "tokens_per_s": y.numel() / seconds})
    model.eval()
    with torch.no_grad():
        logits = model(tx)
    test_loss = F.cross_entropy(logits.reshape(-1, VOCAB), ty.reshape(-1)).item()
    print(json.dumps({
        "seed": seed, "epochs": history, "test_loss": test_loss,
        "test_accuracy": (logits.argmax(-1) == ty).float().mean().item(),
        "test_perplexity": math.exp(test_loss), "train_windows": len(x), "test_windows": len(tx),
        "torch": torch.__version__, "device": str(device), "batch": size,
    }), flush=True)


if __name__ == "__main__":
    main()
