"""PEFT LoRA adapters of the tiny BERT-family classifiers (task_type SEQ_CLS) and
their logits, for kernels-tests/bert.rs (wgml's reading of such adapters).

For each of bert-tiny-cls, roberta-tiny-cls and distilbert-tiny-cls (run
make_bert_tiny.py, make_roberta_tiny.py and make_distilbert_tiny.py first), writes
kernels-tests/golden/<name>-lora/:
  adapter_config.json,        PeftModel.save_pretrained of LoraConfig(r=4, lora_alpha=6,
  adapter_model.safetensors   PEFT's default targets for the family (query and value;
                              q_lin and v_lin), task_type SEQ_CLS, so the head is saved
                              whole: modules_to_save "classifier", and DistilBERT's
                              pre_classifier added); A and B drawn N(0, 0.3^2), the
                              saved head's weights moved by N(0, 0.2^2)
  expected.safetensors        ids [4, 16] (the base fixture's) and the adapted model's
                              logits [4, 3] (float64, dropout off)

Needs torch, transformers, peft and safetensors (pip). Run from the repo root:
  python3 kernels-tests/golden/make_encoder_cls_lora.py
"""
import os

import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import load_file, save_file
from transformers import AutoModelForSequenceClassification

for name, targets, extra in [("bert-tiny-cls", ["query", "value"], []),
                             ("roberta-tiny-cls", ["query", "value"], []),
                             ("distilbert-tiny-cls", ["q_lin", "v_lin"], ["pre_classifier"])]:
    base_dir = f"kernels-tests/golden/{name}"
    out = f"kernels-tests/golden/{name}-lora"
    base = AutoModelForSequenceClassification.from_pretrained(base_dir)
    lora = LoraConfig(r=4, lora_alpha=6, lora_dropout=0.0, target_modules=targets,
                      task_type="SEQ_CLS", modules_to_save=extra or None)
    model = get_peft_model(base, lora)
    torch.manual_seed(19)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_" in n:
                p.copy_(0.3 * torch.randn_like(p))
            elif p.requires_grad:
                p.add_(0.2 * torch.randn_like(p))
    os.makedirs(out, exist_ok=True)
    model.save_pretrained(out)
    for f in os.listdir(out):
        if f not in ("adapter_config.json", "adapter_model.safetensors"):
            os.remove(os.path.join(out, f))
    ids = load_file(f"{base_dir}/expected.safetensors")["ids"].long()
    pad = base.config.pad_token_id
    mask = torch.ones_like(ids)
    for b in range(ids.shape[0]):
        n = ids.shape[1]
        while n > 0 and ids[b, n - 1] == pad:
            n -= 1
        mask[b, n:] = 0
    model = model.double().eval()
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask).logits.float()
    save_file({"ids": ids.float(), "logits": logits}, os.path.join(out, "expected.safetensors"))
    print(name, sorted(load_file(os.path.join(out, "adapter_model.safetensors")).keys()))
    print("logits", logits.numpy().round(4).tolist())
