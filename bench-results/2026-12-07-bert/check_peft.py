# Loads PEFT adapters `wgml export CKPT --peft DIR` wrote for BERT-family
# classifiers wgml fine-tuned with --lora, with PEFT itself onto the base folder,
# and compares the probabilities with `wgml predict`'s.
# Usage: python check_peft.py BASE ADAPTER PREDICTIONS WINDOW
import re, sys, torch
from peft import PeftModel
from transformers import AutoModelForSequenceClassification, AutoTokenizer

base, adapter, predictions, window = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
model = AutoModelForSequenceClassification.from_pretrained(base)
model = PeftModel.from_pretrained(model, adapter).eval()
tok = AutoTokenizer.from_pretrained(base)
worst, n = 0.0, 0
for line in open(predictions):
    # "FILE: NAME (class K, probability P)", or "FILE: K (probability P)".
    m = re.match(r"(.*): (\S+) \((?:class (\d+), )?probability ([0-9.]+)\)", line.strip())
    path, k, p = m.group(1), int(m.group(3) or m.group(2)), float(m.group(4))
    enc = tok(open(path).read(), truncation=True, max_length=window, return_tensors="pt")
    with torch.no_grad():
        probs = model(**enc).logits.softmax(-1)[0]
    assert probs.argmax().item() == k, (path, probs, k)
    worst = max(worst, abs(probs[k].item() - p))
    n += 1
assert n > 0 and worst < 1e-4, (n, worst)  # wgml prints 4 decimals
print(f"{adapter}: PEFT on {base}: {n} files, same class each, max |probability - wgml's| = {worst:.2e}"
      " (wgml prints 4 decimals)")
