"""BERT-base fine-tuning in PyTorch eager, to time against
`examples/models/bert_base.json` (the architecture `wgml import` gives the Hub's
bert-base-uncased at a 128-token window with 2 labels): 12 post-norm blocks of width
768, 12 bidirectional heads (F.scaled_dot_product_attention, as Hugging Face's BERT
runs with sdpa), exact GELU MLP of 3,072, learned positions and one token type, the
[CLS] token through a tanh pooler, dropout 0.1 on the embeddings, the residual
branches, the attention weights and before the classifier; random weights
(N(0, 0.02), as Hugging Face initialises BERT).

Measures, after warm-up, with CUDA synchronisation around the timing: texts/s of
AdamW steps on batch BATCH (default 32) x 128 random token ids with no padding
(wgml's bert-base-b32 runs the whole window too), cross-entropy over 2 labels, in
f32 with TF32 off. Prints one JSON line.

    DEVICE=cuda python3 benches/bert_torch.py > OUT/torch-bert-base.json
"""

import json
import os
import time

import torch
import torch.nn.functional as F
from torch import nn

D, HEADS, LAYERS, T, V, INNER, CLASSES = 768, 12, 12, 128, 30522, 3072, 2
DEVICE = os.environ.get("DEVICE", "cpu")
BATCH = int(os.environ.get("BATCH", "32"))
STEPS = int(os.environ.get("STEPS", "10"))
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False


class Layer(nn.Module):
    def __init__(self):
        super().__init__()
        self.qkv, self.out = nn.Linear(D, 3 * D), nn.Linear(D, D)
        self.norm_1, self.norm_2 = nn.LayerNorm(D, eps=1e-12), nn.LayerNorm(D, eps=1e-12)
        self.up, self.down = nn.Linear(D, INNER), nn.Linear(INNER, D)
        self.drop = nn.Dropout(0.1)

    def forward(self, x):
        b, t, _ = x.shape
        heads = lambda z: z.view(b, t, HEADS, D // HEADS).transpose(1, 2)
        q, k, v = (heads(z) for z in self.qkv(x).split(D, dim=2))
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=0.1 if self.training else 0.0)
        x = self.norm_1(x + self.drop(self.out(y.transpose(1, 2).reshape(b, t, D))))
        return self.norm_2(x + self.drop(self.down(F.gelu(self.up(x)))))


class Bert(nn.Module):
    def __init__(self):
        super().__init__()
        self.words, self.positions = nn.Embedding(V, D), nn.Embedding(T, D)
        self.types = nn.Embedding(2, D)
        self.norm, self.drop = nn.LayerNorm(D, eps=1e-12), nn.Dropout(0.1)
        self.layers = nn.ModuleList(Layer() for _ in range(LAYERS))
        self.pooler, self.classifier = nn.Linear(D, D), nn.Linear(D, CLASSES)
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, 0.0, 0.02)
            if isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, ids):
        pos = torch.arange(ids.shape[1], device=ids.device)
        x = self.words(ids) + self.positions(pos) + self.types(torch.zeros_like(ids))
        x = self.drop(self.norm(x))
        for layer in self.layers:
            x = layer(x)
        return self.classifier(self.drop(torch.tanh(self.pooler(x[:, 0]))))


def main():
    torch.manual_seed(0)
    model = Bert().to(DEVICE).train()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-5)
    ids = torch.randint(1, 256, (BATCH, T), device=DEVICE)
    labels = torch.randint(0, CLASSES, (BATCH,), device=DEVICE)

    def step():
        loss = F.cross_entropy(model(ids), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    if DEVICE == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(STEPS):
        step()
    if DEVICE == "cuda":
        torch.cuda.synchronize()
    step_s = (time.perf_counter() - start) / STEPS
    print(json.dumps({
        "model": "bert-base", "device": DEVICE, "batch": BATCH, "tokens": T,
        "params": sum(p.numel() for p in model.parameters()),
        "step_ms": step_s * 1e3, "texts_per_s": BATCH / step_s,
        "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()
