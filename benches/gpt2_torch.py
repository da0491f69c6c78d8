"""GPT-2 small in PyTorch eager, to time against `examples/models/gpt2_small.json`
(the architecture `wgml import` gives the Hub's gpt2): 12 pre-norm blocks of width
768, 12 causal heads (F.scaled_dot_product_attention, as Hugging Face's GPT-2
runs), GELU tanh MLP of 3,072, learned positions [1024, 768], dropout 0.1 on the
embeddings, the residual branches and the attention weights, the head tied to the
token embedding (as GPT-2 and wgml's import), random weights.

Measures, after warm-up, with CUDA synchronisation around each timing:
  train   tokens/s of AdamW steps on batch BATCH (default 8) x 1,024 random token
          ids (cross-entropy over every position), in f32 with TF32 off;
  decode  tokens/s of greedy generation of NEW (default 100) tokens after a
          2-token prompt, with a key/value cache (each token one position) and
          without (each token the whole 1,024-position window, as `wgml generate
          --no-cache`);
  prefill seconds to the first new token after a PROMPT-token prompt (default
          500) with the cache: one forward over the prompt, as `wgml generate`
          prefills it.
Prints one JSON line.

    DEVICE=cuda python3 benches/gpt2_torch.py > OUT/torch-gpt2.json
"""

import json
import math
import os
import time

import torch
import torch.nn.functional as F
from torch import nn

D, HEADS, LAYERS, T, V, INNER = 768, 12, 12, 1024, 50257, 3072
DEVICE = os.environ.get("DEVICE", "cpu")
BATCH = int(os.environ.get("BATCH", "8"))
NEW = int(os.environ.get("NEW", "100"))
PROMPT = int(os.environ.get("PROMPT", "500"))
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(D, eps=1e-5), nn.LayerNorm(D, eps=1e-5)
        self.c_attn, self.c_proj = nn.Linear(D, 3 * D), nn.Linear(D, D)
        self.c_fc, self.mlp_proj = nn.Linear(D, INNER), nn.Linear(INNER, D)
        self.drop = nn.Dropout(0.1)

    def forward(self, x, cache=None):
        b, t, _ = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(D, dim=2)
        heads = lambda z: z.view(b, t, HEADS, D // HEADS).transpose(1, 2)
        q, k, v = heads(q), heads(k), heads(v)
        if cache is not None:
            if cache:
                k, v = torch.cat([cache[0], k], 2), torch.cat([cache[1], v], 2)
            cache[:] = [k, v]
        # One new query attends to every cached key; a window is causal.
        y = F.scaled_dot_product_attention(q, k, v, is_causal=t > 1,
                                           dropout_p=0.1 if self.training else 0.0)
        x = x + self.drop(self.c_proj(y.transpose(1, 2).reshape(b, t, D)))
        h = F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh")
        return x + self.drop(self.mlp_proj(h))


class Gpt2(nn.Module):
    def __init__(self):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(V, D), nn.Embedding(T, D)
        self.drop = nn.Dropout(0.1)
        self.h = nn.ModuleList(Block() for _ in range(LAYERS))
        self.ln_f = nn.LayerNorm(D, eps=1e-5)
        self.lm_head = nn.Linear(D, V, bias=False)
        self.lm_head.weight = self.wte.weight
        # GPT-2's initialisation (Hugging Face's _init_weights): N(0, 0.02) weights,
        # zero biases, unit LayerNorm scales.
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, 0.0, 0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)

    def forward(self, ids, caches=None, start=0):
        pos = torch.arange(start, start + ids.shape[1], device=ids.device)
        x = self.drop(self.wte(ids) + self.wpe(pos))
        for i, block in enumerate(self.h):
            x = block(x, None if caches is None else caches[i])
        return self.lm_head(self.ln_f(x))


def sync():
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def main():
    torch.manual_seed(0)
    model = Gpt2().to(DEVICE)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    ids = torch.randint(0, 256, (BATCH, T + 1), device=DEVICE)

    def step():
        logits = model(ids[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, V), ids[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    model.train()
    for _ in range(3):
        step()
    sync()
    steps, start = 10, time.perf_counter()
    for _ in range(steps):
        loss = step()
    sync()
    train_s = (time.perf_counter() - start) / steps

    model.eval()
    prompt = [1, 2]

    @torch.no_grad()
    def decode(cached):
        out, caches = list(prompt), [[] for _ in range(LAYERS)]
        fed = 0
        for _ in range(NEW):
            if cached:
                logits = model(torch.tensor([out[fed:]], device=DEVICE), caches, fed)
                fed = len(out)
            else:
                window = torch.zeros(1, T, dtype=torch.long, device=DEVICE)
                window[0, : len(out)] = torch.tensor(out, device=DEVICE)
                logits = model(window)[:, len(out) - 1 : len(out)]
            out.append(int(logits[0, -1].argmax()))
        return out

    results = {"device": torch.cuda.get_device_name() if DEVICE == "cuda" else "cpu",
               "batch": BATCH, "train_step_s": train_s,
               "train_tokens_per_s": BATCH * T / train_s, "final_loss": loss.item()}
    for cached in (True, False):
        decode(cached)  # warm-up
        sync()
        start = time.perf_counter()
        tokens = decode(cached)
        sync()
        seconds = time.perf_counter() - start
        key = "decode_cached" if cached else "decode_window"
        results[key + "_tokens_per_s"] = NEW / seconds
        results[key + "_tokens"] = tokens[len(prompt):][:10]
    # Time to the first token after a long prompt, with the cache.
    long_prompt = torch.randint(0, 256, (1, PROMPT), device=DEVICE)

    @torch.no_grad()
    def first_token():
        caches = [[] for _ in range(LAYERS)]
        return int(model(long_prompt, caches, 0)[0, -1].argmax())

    first_token()
    sync()
    start = time.perf_counter()
    first_token()
    sync()
    results[f"prefill_{PROMPT}_s"] = time.perf_counter() - start
    print(json.dumps(results))


if __name__ == "__main__":
    main()
