"""Checks `wgml predict --sentences` against Hugging Face's token-classification
pipeline (aggregation_strategy "first") on the exported folder: the same
entities (type, character span) for every line, scores within 1e-4.

  python check_pipeline.py HF_DIR SENTENCES.txt WGML.jsonl
"""
import json
import sys

from transformers import pipeline

hf, sentences, ours = sys.argv[1:]
tag = pipeline("token-classification", model=hf, aggregation_strategy="first")
lines = [l for l in open(sentences).read().splitlines() if l.strip()]
rows = [json.loads(l) for l in open(ours)]
assert len(rows) == len(lines), (len(rows), len(lines))
entities, worst = 0, 0.0
for line, row in zip(lines, rows):
    theirs = [(e["entity_group"], e["start"], e["end"], e["score"]) for e in tag(line)]
    mine = [(e["entity"], e["start"], e["end"], e["score"]) for e in row["entities"]]
    assert [t[:3] for t in theirs] == [m[:3] for m in mine], (line, theirs, mine)
    for t, m in zip(theirs, mine):
        worst = max(worst, abs(float(t[3]) - m[3]))
    entities += len(mine)
print(f"pipeline: {len(lines)} sentences, {entities} entities as transformers groups them; "
      f"scores within {worst:.2e}")
assert worst < 1e-4
