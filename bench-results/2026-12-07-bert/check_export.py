# Loads folders `wgml export` wrote for BERT classifiers with transformers and
# compares what they compute with what wgml computed.
#  1. FIXTURE_EXPORT: a tiny fixture (GOLDEN: kernels-tests/golden/bert-tiny-cls or
#     roberta-tiny-cls) imported and exported untouched; its logits on the
#     fixture's texts must be Hugging Face's own for the original folder
#     (GOLDEN/expected.safetensors).
#  2. TUNED_EXPORT PREDICTIONS: a classifier wgml fine-tuned (LoRA merged); each
#     line of PREDICTIONS is `wgml predict`'s "FILE: CLASS (class K, probability P)";
#     Hugging Face must pick class K with probability P.
# Usage: python check_export.py GOLDEN FIXTURE_EXPORT [TUNED_EXPORT PREDICTIONS]
import re, sys, torch
from safetensors import safe_open
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification, AutoTokenizer

golden = sys.argv[1] + "/expected.safetensors"
args = sys.argv[1:]
want = load_file(golden)
with safe_open(golden, "pt") as f:
    texts = f.metadata()["texts"].split("\n")
model = AutoModelForSequenceClassification.from_pretrained(args[1]).eval()
tok = AutoTokenizer.from_pretrained(args[1])
enc = tok(texts, padding="max_length", truncation=True, max_length=16, return_tensors="pt")
assert torch.equal(enc["input_ids"].float(), want["ids"]), "the exported tokenizer reads differently"
with torch.no_grad():
    got = model(**enc).logits
print(f"1. {args[0]} exported as {type(model).__name__}: max |logits - Hugging Face's of the original| =",
      (got - want["logits"]).abs().max().item())
assert (got - want["logits"]).abs().max().item() < 1e-5
if len(args) < 4:
    sys.exit(0)

model = AutoModelForSequenceClassification.from_pretrained(args[2]).eval()
tok = AutoTokenizer.from_pretrained(args[2])
worst, n = 0.0, 0
for line in open(args[3]):
    # "FILE: NAME (class K, probability P)", or "FILE: K (probability P)" for an
    # output the data's classes do not name.
    m = re.match(r"(.*): (\S+) \((?:class (\d+), )?probability ([0-9.]+)\)", line.strip())
    path, k, p = m.group(1), int(m.group(3) or m.group(2)), float(m.group(4))
    # No max_length: the exported tokenizer_config.json's model_max_length cuts.
    enc = tok(open(path).read(), truncation=True, return_tensors="pt")
    with torch.no_grad():
        probs = model(**enc).logits.softmax(-1)[0]
    assert probs.argmax().item() == k, (path, probs, k)
    worst = max(worst, abs(probs[k].item() - p))
    n += 1
assert worst < 1e-4, worst  # wgml prints 4 decimals: within 5e-5 plus f32 rounding
print(f"2. fine-tuned in wgml, exported: {n} files, same class each, max |probability - wgml's| = {worst:.2e}"
      " (wgml prints 4 decimals)")
