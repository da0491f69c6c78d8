"""wgml's predictions on a multi-label table against transformers on the folder
`wgml export` wrote (problem_type multi_label_classification): the sigmoid of
each class's logit must equal the probability `wgml predict` printed (6
decimals) to 1e-5, and the predicted set (classes above 0.5) must be the same.

  python check_multilabel.py HF_FOLDER TABLE.jsonl PREDICTIONS.csv
"""
import csv
import json
import sys

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

folder, table, predictions = sys.argv[1:4]
texts = [json.loads(line)["text"] for line in open(table) if line.strip()]
ours = list(csv.DictReader(open(predictions)))
tokenizer = AutoTokenizer.from_pretrained(folder)
model = AutoModelForSequenceClassification.from_pretrained(folder).double().eval()
assert model.config.problem_type == "multi_label_classification", model.config.problem_type
names = [model.config.id2label[i] for i in range(model.config.num_labels)]
enc = tokenizer(texts, truncation=True, padding=True, return_tensors="pt")
with torch.no_grad():
    p = torch.sigmoid(model(**enc).logits)
worst, same = 0.0, 0
for i, row in enumerate(ours):
    mine = torch.tensor([float(row[n]) for n in names], dtype=torch.float64)
    worst = max(worst, (mine - p[i]).abs().max().item())
    theirs = ";".join(n for j, n in enumerate(names) if p[i, j] > 0.5)
    same += theirs == row["prediction"]
print(f"{len(texts)} texts: {same} predicted the same set, largest probability difference {worst:.2e}")
assert same == len(texts) and worst < 1e-5, "wgml and transformers differ"
