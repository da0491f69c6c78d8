"""Checks wgml's token classifier against transformers and seqeval: the exported
folder tags every test word as `wgml predict` did (each word's tag read at its
first token, as run_ner reads them), and seqeval's entity scores of wgml's tags
are those `wgml train --metrics` wrote. With --peft BASE, HF_DIR is a PEFT
adapter (wgml export --peft) loaded onto BASE's encoder.

  python check_ner.py HF_DIR TEST.jsonl PRED.conll METRICS.json [--peft BASE]
"""
import json
import sys

import torch
from seqeval.metrics import f1_score, precision_score, recall_score
from transformers import AutoModelForTokenClassification, AutoTokenizer

hf, test, pred, metrics = sys.argv[1:5]
if "--peft" in sys.argv:
    from peft import PeftModel
    base = sys.argv[sys.argv.index("--peft") + 1]
    classes = json.load(open(metrics))["class_names"]
    names = dict(enumerate(classes))
    model = PeftModel.from_pretrained(
        AutoModelForTokenClassification.from_pretrained(base, num_labels=len(classes)), hf)
    model = model.double().eval()
    tokenizer = AutoTokenizer.from_pretrained(base)
    window = model.base_model.model.config.max_position_embeddings
else:
    model = AutoModelForTokenClassification.from_pretrained(hf).double().eval()
    tokenizer = AutoTokenizer.from_pretrained(hf)
    names = model.config.id2label
    window = model.config.max_position_embeddings
rows = [json.loads(line) for line in open(test) if line.strip()]
blocks = [b.splitlines() for b in open(pred).read().strip().split("\n\n")]
assert len(blocks) == len(rows), (len(blocks), len(rows))
gold, ours, agree, words = [], [], 0, 0
for row, block in zip(rows, blocks):
    enc = tokenizer(row["tokens"], is_split_into_words=True, truncation=True,
                    max_length=window, return_tensors="pt")
    with torch.no_grad():
        tags = model(**enc).logits[0].argmax(-1).tolist()
    theirs, previous = {}, None
    for position, w in enumerate(enc.word_ids(0)):
        if w is not None and w != previous:
            theirs[w] = names[tags[position]]
        previous = w
    lines = [line.split() for line in block]
    assert [l[0] for l in lines] == row["tokens"]
    for w, l in enumerate(lines):
        words += 1
        agree += theirs.get(w, "O") == l[2]
    gold.append([l[1] for l in lines])
    ours.append([l[2] for l in lines])
wrote = json.load(open(metrics))["entities"]["overall"]
scores = (precision_score(gold, ours), recall_score(gold, ours), f1_score(gold, ours))
print(f"tags: {agree}/{words} words as transformers tags them")
print(f"seqeval on wgml's tags: precision {scores[0]:.4f} recall {scores[1]:.4f} f1 {scores[2]:.4f}")
print(f"wgml --metrics:         precision {wrote['precision']:.4f} recall {wrote['recall']:.4f} "
      f"f1 {wrote['f1']:.4f}")
assert agree == words
assert all(abs(a - b) < 1e-9 for a, b in zip(scores, (wrote["precision"], wrote["recall"], wrote["f1"])))
