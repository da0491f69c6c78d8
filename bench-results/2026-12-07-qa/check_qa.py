"""Checks wgml's question answerer against transformers: the exported folder
reads the dev questions as run_qa.py's prepare_validation_features reads them
(windows of WINDOW tokens sharing STRIDE), its start and end logits pick each
answer as utils_qa.py's postprocess_qa_predictions does (SQuAD 2.0: the empty
answer where [CLS] scores better), and those answers are the ones `wgml predict
--allow-no-answer` wrote. Exact match and F1 are recomputed here after the
official SQuAD 2.0 evaluation script's definitions and compared with what
`wgml train --metrics` wrote. With --peft BASE, HF_DIR is a PEFT adapter (wgml
export --peft) loaded onto BASE's encoder.

  python check_qa.py HF_DIR DEV.json PRED.jsonl METRICS.json STRIDE [--peft BASE]
"""
import collections
import json
import re
import string
import sys

import numpy as np
import torch
from transformers import AutoModelForQuestionAnswering, AutoTokenizer

hf, dev, pred, metrics, stride = sys.argv[1:6]
stride = int(stride)
if "--peft" in sys.argv:
    from peft import PeftModel
    base = sys.argv[sys.argv.index("--peft") + 1]
    model = PeftModel.from_pretrained(AutoModelForQuestionAnswering.from_pretrained(base), hf)
    # PEFT 0.21.2's PeftModelForQuestionAnswering.forward does not pass
    # token_type_ids on to the model (BERT would read every token as type 0);
    # the LoRA model beneath it does.
    model = model.base_model
    tokenizer = AutoTokenizer.from_pretrained(base)
    window = model.model.config.max_position_embeddings
else:
    model = AutoModelForQuestionAnswering.from_pretrained(hf)
    tokenizer = AutoTokenizer.from_pretrained(hf)
    window = model.config.max_position_embeddings
model = model.double().eval()
examples = [dict(q, context=p["context"]) for a in json.load(open(dev))["data"]
            for p in a["paragraphs"] for q in p["qas"]]
enc = tokenizer([e["question"].lstrip() for e in examples], [e["context"] for e in examples],
                truncation="only_second", max_length=window, stride=stride,
                return_overflowing_tokens=True, return_offsets_mapping=True,
                padding="max_length", return_tensors="pt")
with torch.no_grad():
    kwargs = {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc}
    out = model(**kwargs)
starts, ends = out.start_logits.float().numpy(), out.end_logits.float().numpy()
windows = collections.defaultdict(list)
for f, x in enumerate(enc["overflow_to_sample_mapping"].tolist()):
    seq = enc.sequence_ids(f)
    offsets = [tuple(o) if seq[k] == 1 else None for k, o in enumerate(enc["offset_mapping"][f].tolist())]
    windows[x].append((f, offsets))


def answer(x, e, n_best=20, longest=30):
    null, found = None, []
    for f, offsets in windows[x]:
        s, t = starts[f], ends[f]
        null = s[0] + t[0] if null is None or null > s[0] + t[0] else null
        for a in np.argsort(s)[::-1][:n_best]:
            for b in np.argsort(t)[::-1][:n_best]:
                if offsets[a] is None or offsets[b] is None or b < a or b - a + 1 > longest:
                    continue
                found.append((s[a] + t[b], s[a] + t[b], e["context"][offsets[a][0]:offsets[b][1]]))
    found = sorted(found + [(null, null, "")], key=lambda p: -p[0])[:n_best]
    best = next((p for p in found if p[2] != ""), None)
    return "" if best is None or null > best[1] else best[2]


def normalize(s):
    s = "".join(c for c in s.lower() if c not in set(string.punctuation))
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", s).split())


def f1(pred, gold):
    p, g = normalize(pred).split(), normalize(gold).split()
    if not p or not g:
        return float(p == g)
    same = sum((collections.Counter(p) & collections.Counter(g)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(p), same / len(g)
    return 2 * precision * recall / (precision + recall)


ours = {r["id"]: r["answer"] for r in map(json.loads, open(pred))}
theirs = {e["id"]: answer(x, e) for x, e in enumerate(examples)}
agree = sum(ours[k] == v for k, v in theirs.items())
ems, f1s = [], []
for e in examples:
    golds = [a["text"] for a in e["answers"] if normalize(a["text"])] or [""]
    ems.append(max(float(normalize(theirs[e["id"]]) == normalize(g)) for g in golds))
    f1s.append(max(f1(theirs[e["id"]], g) for g in golds))
em, f = 100 * np.mean(ems), 100 * np.mean(f1s)
reported = json.load(open(metrics))["answers"]
print(f"{len(enc['input_ids'])} windows of {window} tokens (stride {stride}); transformers' answers "
      f"agree with wgml predict's on {agree}/{len(examples)} questions")
print(f"SQuAD 2.0 metric of transformers' answers: exact {em:.2f}, F1 {f:.2f}; wgml reported "
      f"exact {reported['exact_match']:.2f}, F1 {reported['f1']:.2f}")
assert agree == len(examples), [(k, ours[k], v) for k, v in theirs.items() if ours[k] != v][:5]
assert abs(em - reported["exact_match"]) < 1e-6 and abs(f - reported["f1"]) < 1e-6
