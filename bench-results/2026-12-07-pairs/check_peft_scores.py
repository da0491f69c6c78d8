"""A PEFT adapter `wgml export CKPT --peft DIR` wrote for a BERT regression
head (one score) fine-tuned with --lora, loaded by PEFT itself onto the base
folder (read with num_labels 1, Hugging Face's regression), scored on a table
of sentence pairs against `wgml predict`'s score column (to 1e-5).

  python check_peft_scores.py BASE ADAPTER TABLE.csv PREDICTIONS.csv
"""
import csv
import sys

import torch
from peft import PeftModel
from transformers import AutoModelForSequenceClassification, AutoTokenizer

base, adapter, table, predictions = sys.argv[1:5]
rows = list(csv.DictReader(open(table)))
ours = torch.tensor([float(r["score"]) for r in csv.DictReader(open(predictions))],
                    dtype=torch.float64)
model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1)
model = PeftModel.from_pretrained(model, adapter).double().eval()
tokenizer = AutoTokenizer.from_pretrained(base)
enc = tokenizer([r["premise"] for r in rows], [r["hypothesis"] for r in rows], truncation=True,
                padding=True, return_tensors="pt")
with torch.no_grad():
    scores = model(**enc).logits[:, 0]
worst = (scores - ours).abs().max().item()
print(f"{adapter}: PEFT on {base}: {len(rows)} pairs scored, largest score difference {worst:.2e}")
assert len(rows) == len(ours) and worst < 1e-5, "PEFT and wgml differ"
