# Loads a classifier adapter wgml wrote (wgml export CKPT --peft DIR) with PEFT
# itself onto the tiny GPT-2 and compares its logits with the ones PEFT gave for
# the adapter wgml read (kernels-tests/golden/gpt2-tiny-cls-lora/expected.safetensors).
# Usage: python check.py WRITTEN_ADAPTER_DIR
import sys, torch
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification
from peft import PeftModel

base = "kernels-tests/golden/gpt2-tiny"
golden = "kernels-tests/golden/gpt2-tiny-cls-lora"
want = load_file(f"{golden}/expected.safetensors")
model = AutoModelForSequenceClassification.from_pretrained(
    base, num_labels=3, pad_token_id=299, embd_pdrop=0.0, resid_pdrop=0.0, attn_pdrop=0.0)
model = PeftModel.from_pretrained(model, sys.argv[1]).eval()
ids = want["ids"].long().reshape(-1, 16)
with torch.no_grad():
    mask = (ids != 299).long()
    got = model(input_ids=ids, attention_mask=mask).logits
print("peft", __import__("peft").__version__, "transformers", __import__("transformers").__version__)
print("logits\n", got)
diff = (got - want["logits"].reshape(got.shape)).abs().max().item()
print("max |PEFT(wgml's adapter) - PEFT(original adapter)| =", diff)
assert diff < 1e-5
