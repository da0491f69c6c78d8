#!/bin/bash
# Multi-label classification: a fresh tiny BERT (transformers' init; made by
# bench-results/2026-12-07-pairs/make_fresh_bert.py) imported with a new
# multi-label head of 3 classes, fine-tuned on make_emotions.py's table, its
# predictions checked against transformers on its export (lavapipe).
set -e
W=target/release/wgml; D=/tmp/multilabel; rm -rf $D; mkdir -p $D
python3 bench-results/2026-12-07-multilabel/make_emotions.py $D/emo
/tmp/pyenv/bin/python bench-results/2026-12-07-pairs/make_fresh_bert.py $D/fresh
$W import $D/fresh --save $D/m.safetensors --seed 1 --num-labels 3 --multi-label
$W train --model $D/m.safetensors --data $D/emo --epochs 8 --lr 1e-3 --save $D/t.safetensors
$W predict --weights $D/t.safetensors $D/emo/test.jsonl --output $D/pred.csv
$W export $D/t.safetensors --save $D/hf
/tmp/pyenv/bin/python bench-results/2026-12-07-multilabel/check_multilabel.py $D/hf $D/emo/test.jsonl $D/pred.csv
