"""What Hugging Face's GPT2ForSequenceClassification computes on the tiny GPT-2 of
kernels-tests/golden/gpt2-tiny/ (run make_gpt2_tiny.py first), for
kernels-tests/gpt2.rs (wgml's sequence classifier: LastTokenPooling1D over the
padded ids, a head 'score' without bias).

Writes kernels-tests/golden/gpt2-tiny-cls/expected.safetensors:
  score.weight  [3, n_embd]: the new head, drawn N(0, 0.5^2) (seed 5)
  ids           [4, 16]: four samples of 16, 9, 1 and 5 real ids (below 299),
                right-padded with 299, the padding id (pad_token_id)
  labels        [4]: 0, 2, 1, 2
  logits        [4, 3]: the model's logits (float64, dropout off), read at each
                sample's last real token; the attention mask is the tokenizer's
                (1 on real ids, 0 on padding)
  loss          [1]: the mean cross-entropy of the logits against the labels
  grad.*        the loss's gradient with respect to score.weight, wte.weight,
                wpe.weight and h.0.attn.c_attn.weight (Conv1D layout [in, out])

Needs torch, transformers and safetensors (pip). Run from the repo root:
  python3 kernels-tests/golden/make_gpt2_cls.py
"""
import os

import torch
from safetensors.torch import save_file
from transformers import GPT2Config, GPT2ForSequenceClassification

BASE = "kernels-tests/golden/gpt2-tiny"
OUT = "kernels-tests/golden/gpt2-tiny-cls"
PAD = 299

config = GPT2Config.from_pretrained(BASE, num_labels=3, pad_token_id=PAD,
                                    embd_pdrop=0.0, resid_pdrop=0.0, attn_pdrop=0.0)
model = GPT2ForSequenceClassification.from_pretrained(BASE, config=config).double().eval()
torch.manual_seed(5)
with torch.no_grad():
    model.score.weight.copy_(0.5 * torch.randn_like(model.score.weight))

lengths = [16, 9, 1, 5]
gen = torch.Generator().manual_seed(7)
ids = torch.full((4, 16), PAD, dtype=torch.long)
for b, n in enumerate(lengths):
    ids[b, :n] = torch.randint(0, PAD, (n,), generator=gen)
mask = (torch.arange(16)[None, :] < torch.tensor(lengths)[:, None]).long()
labels = torch.tensor([0, 2, 1, 2])

out = model(input_ids=ids, attention_mask=mask, labels=labels)
out.loss.backward()
names = ["score.weight", "transformer.wte.weight", "transformer.wpe.weight",
         "transformer.h.0.attn.c_attn.weight"]
params = dict(model.named_parameters())
grads = {"grad." + n.removeprefix("transformer."): params[n].grad.float() for n in names}
os.makedirs(OUT, exist_ok=True)
save_file({"score.weight": model.score.weight.detach().float(),
           "ids": ids.float(), "labels": labels.float(),
           "logits": out.logits.detach().float(), "loss": out.loss.detach().float().reshape(1),
           **grads}, os.path.join(OUT, "expected.safetensors"))
print(f"loss {out.loss.item():.6f}, logits {out.logits.detach().numpy().round(4).tolist()}")
