#!/bin/bash
# 1. Sentence pairs: the tiny BERT fixture (kernels-tests/golden/bert-tiny-cls, a new
# head) fine-tuned by wgml on a premise/hypothesis table whose label needs both
# texts, then exported and checked by transformers itself on the same pairs
# (lavapipe; transformers 5.25.0, torch CPU in /tmp/pyenv).
set -e
W=target/release/wgml; D=/tmp/pairs; rm -rf $D; mkdir -p $D
python3 bench-results/2026-12-07-pairs/make_pairs.py $D/nli
rm -rf $D/base && mkdir -p $D/base && cp kernels-tests/golden/bert-tiny-cls/{config.json,tokenizer.json,tokenizer_config.json} $D/base/
/tmp/pyenv/bin/python - <<'PY'
from safetensors.torch import load_file, save_file
t = load_file("kernels-tests/golden/bert-tiny-cls/model.safetensors")
save_file({k: v for k, v in t.items() if not k.startswith("classifier.")}, "/tmp/pairs/base/model.safetensors")
PY
$W import $D/base --save $D/b.safetensors --context 24 --seed 1
$W train --model $D/b.safetensors --data $D/nli --epochs 3 --lr 1e-3 --save $D/t.safetensors
$W predict --weights $D/t.safetensors $D/nli/test.csv --output $D/pred.csv
$W export $D/t.safetensors --save $D/hf
/tmp/pyenv/bin/python bench-results/2026-12-07-pairs/check_pairs.py $D/hf $D/nli/test.csv $D/pred.csv
# 2. Learning from pairs: a fresh tiny BERT (transformers' own init, width 64, 2
#    blocks) fine-tuned on the same table, whose label needs both texts.
/tmp/pyenv/bin/python bench-results/2026-12-07-pairs/make_fresh_bert.py $D/fresh
$W import $D/fresh --save $D/f.safetensors --seed 1
$W train --model $D/f.safetensors --data $D/nli --epochs 12 --lr 1e-3 --save $D/ft.safetensors
$W predict --weights $D/ft.safetensors $D/nli/test.csv --output $D/fpred.csv
$W export $D/ft.safetensors --save $D/fhf
/tmp/pyenv/bin/python bench-results/2026-12-07-pairs/check_pairs.py $D/fhf $D/nli/test.csv $D/fpred.csv
# 3. A regression head (num_labels 1, STS-B's scores 0 to 5): the fresh tiny BERT
#    imported with a new one-score head, fine-tuned on similarity scores of the
#    pairs, then scored by transformers on its export.
python3 bench-results/2026-12-07-pairs/make_pairs.py $D/sts --scores
$W import $D/fresh --save $D/r.safetensors --seed 1 --num-labels 1
$W train --model $D/r.safetensors --data $D/sts --epochs 12 --lr 1e-3 --save $D/rt.safetensors
$W predict --weights $D/rt.safetensors $D/sts/test.csv --output $D/rpred.csv
$W export $D/rt.safetensors --save $D/rhf
/tmp/pyenv/bin/python bench-results/2026-12-07-pairs/check_pairs.py $D/rhf $D/sts/test.csv $D/rpred.csv
