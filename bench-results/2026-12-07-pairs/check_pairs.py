"""wgml's predictions on a table of sentence pairs against transformers on the
folder `wgml export` wrote: the exported tokenizer reads each pair as
tokenizer(premise, hypothesis, truncation=True) (its model_max_length is wgml's
window), the model runs in float64, and the probabilities must equal the ones
`wgml predict` printed (6 decimals) to 1e-5, the predicted class too; for a
regression head (num_labels 1) the logit must equal wgml's score to 1e-5.

  python check_pairs.py HF_FOLDER TABLE.csv PREDICTIONS.csv
"""
import csv
import sys

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

folder, table, predictions = sys.argv[1:4]
rows = list(csv.DictReader(open(table)))
ours = list(csv.DictReader(open(predictions)))
assert len(rows) == len(ours), (len(rows), len(ours))
tokenizer = AutoTokenizer.from_pretrained(folder)
model = AutoModelForSequenceClassification.from_pretrained(folder).double().eval()
names = [model.config.id2label[i] for i in range(model.config.num_labels)]
enc = tokenizer([r["premise"] for r in rows], [r["hypothesis"] for r in rows], truncation=True,
                padding=True, return_tensors="pt")
with torch.no_grad():
    logits = model(**enc).logits
if model.config.num_labels == 1:
    # A regression head: wgml's score column against the logit.
    assert model.config.problem_type == "regression", model.config.problem_type
    ours_s = torch.tensor([float(r["score"]) for r in ours], dtype=torch.float64)
    worst = (ours_s - logits[:, 0]).abs().max().item()
    print(f"{len(rows)} pairs scored, largest score difference {worst:.2e}")
    assert worst < 1e-5, "wgml and transformers differ"
    sys.exit(0)
p = torch.softmax(logits, -1)
worst, same = 0.0, 0
for i, row in enumerate(ours):
    mine = torch.tensor([float(row[n]) for n in names], dtype=torch.float64)
    worst = max(worst, (mine - p[i]).abs().max().item())
    same += names[int(p[i].argmax())] == row["prediction"]
print(f"{len(rows)} pairs: {same} predicted the same class, largest probability difference {worst:.2e}")
assert same == len(rows) and worst < 1e-5, "wgml and transformers differ"
