"""Loads the folder `wgml export` wrote for a GPT-2 made a classifier (the golden
test's, kernels-tests/gpt2.rs) with transformers' AutoModelForSequenceClassification
and compares its logits on the fixture's padded ids with the fixture's (Hugging
Face's own model with the same weights). Usage: python3 hf_check_classifier.py FOLDER
"""
import sys

import torch
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification

folder = sys.argv[1]
want = load_file("kernels-tests/golden/gpt2-tiny-cls/expected.safetensors")
model = AutoModelForSequenceClassification.from_pretrained(folder).double().eval()
ids = want["ids"].long()
mask = (ids != model.config.pad_token_id).long()
with torch.no_grad():
    logits = model(input_ids=ids, attention_mask=mask).logits.float()
print("architecture:", type(model).__name__, "labels:", model.config.id2label,
      "pad:", model.config.pad_token_id)
print("max |logits - golden|:", (logits - want["logits"]).abs().max().item())
