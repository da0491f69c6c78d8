"""A PEFT LoRA adapter on the tiny Llama of kernels-tests/golden/llama-tiny/
(run make_llama_tiny.py first), and what PEFT computes with it, for
kernels-tests/llama.rs (wgml's import and export of a Llama's PEFT adapters).

Writes kernels-tests/golden/llama-tiny-lora/:
  adapter_config.json,       PeftModel.save_pretrained of LoraConfig(r=4,
  adapter_model.safetensors  lora_alpha=6, rank_pattern {v_proj: 2},
                             target_modules q_proj, k_proj, v_proj, o_proj,
                             gate_proj, down_proj), A and B drawn N(0, 0.3^2)
                             (PEFT starts B at zero, which would hide a
                             misplaced B)
  expected.safetensors       log_probs [T, V]: the adapted model's log-softmax
                             of the fixture's ids (float64); loss [1]: its mean
                             next-token cross-entropy (labels = ids); and the
                             gradient of that loss with respect to every adapter
                             tensor, under the adapter file's names without
                             'base_model.model.'

Needs torch, transformers, peft and safetensors (pip). Run from the repo root:
  python3 kernels-tests/golden/make_llama_lora.py
"""
import os

import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import load_file, save_file
from transformers import LlamaForCausalLM

BASE = "kernels-tests/golden/llama-tiny"
OUT = "kernels-tests/golden/llama-tiny-lora"
PREFIX = "base_model.model."

torch.manual_seed(21)
base = LlamaForCausalLM.from_pretrained(BASE)
config = LoraConfig(r=4, lora_alpha=6, lora_dropout=0.0, rank_pattern={"v_proj": 2},
                    target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "down_proj"],
                    task_type="CAUSAL_LM")
model = get_peft_model(base, config)
with torch.no_grad():
    for name, p in model.named_parameters():
        if "lora_" in name:
            p.copy_(0.3 * torch.randn_like(p))
os.makedirs(OUT, exist_ok=True)
model.save_pretrained(OUT)
for f in os.listdir(OUT):
    if f not in ("adapter_config.json", "adapter_model.safetensors"):
        os.remove(os.path.join(OUT, f))

ids = load_file(os.path.join(BASE, "expected.safetensors"))["ids"].long().tolist()
model = model.double().eval()
x = torch.tensor([ids])
with torch.no_grad():
    log_probs = torch.log_softmax(model(x).logits[0], dim=-1)
model.zero_grad()
loss = model(x, labels=x).loss
loss.backward()
grads = {name[len(PREFIX):].replace(".default", ""): p.grad.float()
         for name, p in model.named_parameters() if "lora_" in name}
save_file({"log_probs": log_probs.float(), "loss": loss.detach().float().reshape(1), **grads},
          os.path.join(OUT, "expected.safetensors"))
print(f"{len(ids)} ids, loss {loss.item():.6f}, {len(grads)} adapter tensors: {sorted(grads)[:4]}...")
