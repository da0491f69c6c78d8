"""The PEFT cross-check of BENCHMARKS.md's "Low-rank adapters" section. Made by:
  wgml import kernels-tests/golden/gpt2-tiny --save /tmp/l/g.safetensors
  wgml train --model /tmp/l/g.safetensors --data text:README.md --lora 4 \
      --lora-targets attn.query,attn.value,mlp.c_fc --lora-dropout 0.1 --steps 5 --lr 1e-2 \
      --batch-size 4 --save /tmp/l/t.safetensors
  wgml export /tmp/l/t.safetensors --save /tmp/l/peft --peft
  wgml export /tmp/l/t.safetensors --save /tmp/l/hf
then this script from the repo root (torch, transformers, peft, tokenizers).
"""
import torch
from peft import PeftModel
from transformers import GPT2LMHeadModel
from tokenizers import Tokenizer
base = GPT2LMHeadModel.from_pretrained("kernels-tests/golden/gpt2-tiny").eval()
peft = PeftModel.from_pretrained(base, "/tmp/l/peft").eval()
merged = GPT2LMHeadModel.from_pretrained("/tmp/l/hf").eval()
tok = Tokenizer.from_file("kernels-tests/golden/gpt2-tiny/tokenizer.json")
ids = torch.tensor([tok.encode("The engine trains real models on any GPU; it reads text.").ids[:32]])
with torch.no_grad():
    a = peft(ids).logits
    b = merged(ids).logits
    c = GPT2LMHeadModel.from_pretrained("kernels-tests/golden/gpt2-tiny").eval()(ids).logits
print("peft vs merged max abs diff", (a - b).abs().max().item(), "adapter effect", (a - c).abs().max().item())
p = torch.tensor([tok.encode("The engine").ids])
g = peft.generate(input_ids=p, max_new_tokens=12, do_sample=False, pad_token_id=0)
print(repr(tok.decode(g[0].tolist())))
