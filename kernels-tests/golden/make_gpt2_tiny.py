"""A tiny GPT-2 in Hugging Face's files, and what Hugging Face computes with it,
for kernels-tests/gpt2.rs (wgml's importer of GPT-2 checkpoints).

Writes kernels-tests/golden/gpt2-tiny/:
  config.json, model.safetensors   GPT2LMHeadModel.save_pretrained: 2 layers,
                                   4 heads of 8, 32 positions, 300 tokens,
                                   gelu_new; random weights drawn larger than
                                   GPT-2's init so every part shows in the output
  tokenizer.json                   a byte-level BPE of 300 tokens (GPT-2's scheme)
                                   trained on the README
  expected.safetensors             ids [T] (f32 token ids of the text below, cut
                                   to 32), log_probs [T, 300] (HF's log-softmax of
                                   the logits, float64 forward), greedy [G] (f32:
                                   HF generate(do_sample=False) from the first 8
                                   ids, G new tokens), greedy_margin (the smallest
                                   gap between the top two logits on the way),
                                   loss [1] and wte_grad [300, 32]: HF's mean
                                   next-token cross-entropy of the ids (labels =
                                   ids, dropout off, float64) and its gradient
                                   with respect to wte, which the tied head's
                                   gradient is summed into

Needs torch, transformers, tokenizers and safetensors (pip). Run from the repo root:
  python3 kernels-tests/golden/make_gpt2_tiny.py
The tokenizer is trained on README.md, so the ids follow the README of the day; the
fixture's was README.md at commit 889c31b (run from a folder holding that file and a
kernels-tests/golden/ to rewrite the fixture byte for byte).
"""
import json
import os

import torch
from safetensors.torch import save_file
from tokenizers import ByteLevelBPETokenizer
from transformers import GPT2Config, GPT2LMHeadModel

OUT = "kernels-tests/golden/gpt2-tiny"
TEXT = "The engine trains real models on any GPU; it reads text as tokens."
NEW = 16

os.makedirs(OUT, exist_ok=True)
tok = ByteLevelBPETokenizer()
tok.train(files=["README.md"], vocab_size=300, min_frequency=2, show_progress=False)
tok.save(os.path.join(OUT, "tokenizer.json"))
vocab = tok.get_vocab_size()

torch.manual_seed(7)
config = GPT2Config(vocab_size=vocab, n_positions=32, n_embd=32, n_layer=2, n_head=4,
                    activation_function="gelu_new", layer_norm_epsilon=1e-5)
model = GPT2LMHeadModel(config)
with torch.no_grad():
    for name, p in model.named_parameters():
        if name.endswith("ln_1.weight") or name.endswith("ln_2.weight") or name.endswith("ln_f.weight"):
            p.copy_(1.0 + 0.2 * torch.randn_like(p))
        elif name.endswith("bias"):
            p.copy_(0.1 * torch.randn_like(p))
        else:
            p.copy_(0.25 * torch.randn_like(p))
model.save_pretrained(OUT, safe_serialization=True)
# Only the files the importer reads.
for f in os.listdir(OUT):
    if f not in ("config.json", "model.safetensors", "tokenizer.json"):
        os.remove(os.path.join(OUT, f))

ids = tok.encode(TEXT).ids[:32]
model = model.double().eval()
with torch.no_grad():
    logits = model(torch.tensor([ids])).logits[0]
    log_probs = torch.log_softmax(logits, dim=-1)
    prompt = torch.tensor([ids[:8]])
    out = model.generate(prompt, max_new_tokens=NEW, do_sample=False, pad_token_id=0,
                         output_logits=True, return_dict_in_generate=True)
    greedy = out.sequences[0, 8:]
    margin = min(float(torch.topk(l[0], 2).values[0] - torch.topk(l[0], 2).values[1])
                 for l in out.logits)
model.zero_grad()
loss = model(torch.tensor([ids]), labels=torch.tensor([ids])).loss
loss.backward()
wte_grad = model.transformer.wte.weight.grad
assert model.lm_head.weight is model.transformer.wte.weight, "GPT-2's head is tied"
save_file({
    "ids": torch.tensor(ids, dtype=torch.float32),
    "log_probs": log_probs.float(),
    "greedy": greedy.float(),
    "greedy_margin": torch.tensor([margin], dtype=torch.float32),
    "loss": loss.detach().float().reshape(1),
    "wte_grad": wte_grad.float(),
}, os.path.join(OUT, "expected.safetensors"), metadata={"text": TEXT})
print(f"{len(ids)} ids, vocabulary {vocab}, greedy {greedy.tolist()}, smallest margin {margin:.4f}, "
      f"loss {loss.item():.6f}")
