"""A PEFT LoRA adapter of a GPT-2 classifier of texts (task_type SEQ_CLS: the
adapters plus the new head `score` trained in full, PEFT's modules_to_save) on
the tiny GPT-2 of kernels-tests/golden/gpt2-tiny/, and its logits, for
kernels-tests/peft.rs (wgml's import of such adapters).

Writes kernels-tests/golden/gpt2-tiny-cls-lora/:
  adapter_config.json,        PeftModel.save_pretrained of LoraConfig(r=4,
  adapter_model.safetensors   lora_alpha=6, target_modules c_attn, task_type
                              SEQ_CLS) on GPT2ForSequenceClassification(num_labels
                              3, pad_token_id 299); A and B drawn N(0, 0.3^2), the
                              head `score` N(0, 0.5^2)
  expected.safetensors        ids [4, 16] (as make_gpt2_cls.py draws them: 16, 9, 1
                              and 5 real ids right-padded with 299) and the
                              adapted model's logits [4, 3] (float64, dropout off)

Needs torch, transformers, peft and safetensors (pip). Run from the repo root:
  python3 kernels-tests/golden/make_gpt2_cls_lora.py
"""
import os

import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import load_file, save_file
from transformers import GPT2Config, GPT2ForSequenceClassification

BASE = "kernels-tests/golden/gpt2-tiny"
OUT = "kernels-tests/golden/gpt2-tiny-cls-lora"
PAD = 299

config = GPT2Config.from_pretrained(BASE, num_labels=3, pad_token_id=PAD,
                                    embd_pdrop=0.0, resid_pdrop=0.0, attn_pdrop=0.0)
base = GPT2ForSequenceClassification.from_pretrained(BASE, config=config)
lora = LoraConfig(r=4, lora_alpha=6, lora_dropout=0.0, target_modules=["c_attn"],
                  fan_in_fan_out=True, task_type="SEQ_CLS")
model = get_peft_model(base, lora)
torch.manual_seed(13)
with torch.no_grad():
    for name, p in model.named_parameters():
        if "lora_" in name:
            p.copy_(0.3 * torch.randn_like(p))
        elif "score" in name and p.requires_grad:
            p.copy_(0.5 * torch.randn_like(p))
os.makedirs(OUT, exist_ok=True)
model.save_pretrained(OUT)
for f in os.listdir(OUT):
    if f not in ("adapter_config.json", "adapter_model.safetensors"):
        os.remove(os.path.join(OUT, f))

ids = load_file("kernels-tests/golden/gpt2-tiny-cls/expected.safetensors")["ids"].long()
mask = (ids != PAD).long()
model = model.double().eval()
with torch.no_grad():
    logits = model(input_ids=ids, attention_mask=mask).logits.float()
save_file({"ids": ids.float(), "logits": logits}, os.path.join(OUT, "expected.safetensors"))
print(sorted(load_file(os.path.join(OUT, "adapter_model.safetensors")).keys())[:3], "...")
print("logits", logits.numpy().round(4).tolist())
