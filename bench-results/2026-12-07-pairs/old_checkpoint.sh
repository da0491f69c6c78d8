#!/bin/bash
# A BERT checkpoint as imports before this session wrote it (type 0 folded into
# the positions, no TokenTypes op), made by editing a fresh import: it still
# exports, and `wgml train`, `eval` and `predict` refuse a pair table on it (it
# would read every token as type 0), saying to import again.
W=target/release/wgml; D=/tmp/pairs-old; rm -rf $D; mkdir -p $D
$W import kernels-tests/golden/bert-tiny-cls --save $D/new.safetensors --context 16
/tmp/pyenv/bin/python - <<'PY'
import json
from safetensors import safe_open
from safetensors.torch import load_file, save_file
p = "/tmp/pairs-old/new.safetensors"
meta, t = safe_open(p, "pt").metadata(), load_file(p)
a = json.loads(meta["functional_architecture"])
gone = ("bert.embeddings.token_types", "bert.embeddings.token_type_embeddings", "bert.embeddings.token_type_sum")
layers = [l for l in a["functional"]["layers"] if l["name"] not in gone]
for l in layers:
    if l["name"] == "bert.embeddings.position_embeddings":
        l["inputs"] = ["bert.embeddings.word_embeddings"]
a["functional"]["layers"] = layers
meta["functional_architecture"] = json.dumps(a)
types = t.pop("bert.embeddings.token_type_embeddings.weight")
t["bert.embeddings.position_embeddings.weight"] += types[0]
save_file(t, "/tmp/pairs-old/old.safetensors", metadata=meta)
PY
python3 - <<'PY'
import csv
w = csv.writer(open("/tmp/pairs-old/pairs.csv", "w"))
w.writerow(["sentence1", "sentence2", "label"])
for i in range(30):
    w.writerow([f"the film {i}", "it was good", ["neg", "neutral", "pos"][i % 3]])
PY
$W export $D/old.safetensors --save $D/old-hf
$W train --model $D/old.safetensors --data $D/pairs.csv --steps 1 && exit 1
$W eval --weights $D/old.safetensors --data $D/pairs.csv && exit 1
$W predict --weights $D/old.safetensors $D/pairs.csv && exit 1
$W train --model $D/new.safetensors --data $D/pairs.csv --steps 1 | grep 'pairs of texts'
