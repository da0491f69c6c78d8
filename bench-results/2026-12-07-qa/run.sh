#!/bin/bash
# Extractive question answering (SQuAD 2.0's format): a fresh tiny BERT
# (transformers' init; bench-results/2026-12-07-pairs/make_fresh_bert.py)
# imported with a new question-answering head, fine-tuned on make_squad.py's
# questions (train-v2.0.json, evaluated on dev-v2.0.json), its answers and
# SQuAD scores checked against transformers (its export) (lavapipe). Then LoRA,
# exported as a PEFT QUESTION_ANS adapter and checked on PEFT's model.
set -e
W=target/release/wgml; D=/tmp/qa-bench; rm -rf $D; mkdir -p $D
python3 bench-results/2026-12-07-qa/make_squad.py $D/squad
/tmp/pyenv/bin/python bench-results/2026-12-07-pairs/make_fresh_bert.py $D/fresh
$W import $D/fresh --save $D/m.safetensors --seed 1 --question-answering
$W train --model $D/m.safetensors --data $D/squad --epochs 8 --lr 1e-3 --batch-size 16 \
  --save $D/t.safetensors --metrics $D/metrics.json
$W predict --weights $D/t.safetensors --allow-no-answer $D/squad/dev-v2.0.json --output $D/pred.jsonl
$W export $D/t.safetensors --save $D/hf
# The window is 32 tokens, so wgml's default stride is 32 / 3 = 10.
/tmp/pyenv/bin/python bench-results/2026-12-07-qa/check_qa.py $D/hf $D/squad/dev-v2.0.json \
  $D/pred.jsonl $D/metrics.json 10
$W train --model $D/m.safetensors --data $D/squad --epochs 8 --lr 5e-3 --batch-size 16 --lora 8 \
  --save $D/lora.safetensors --metrics $D/lora-metrics.json
$W predict --weights $D/lora.safetensors --allow-no-answer $D/squad/dev-v2.0.json --output $D/lora-pred.jsonl
$W export $D/lora.safetensors --peft --save $D/adapter
/tmp/pyenv/bin/python bench-results/2026-12-07-qa/check_qa.py $D/adapter $D/squad/dev-v2.0.json \
  $D/lora-pred.jsonl $D/lora-metrics.json 10 --peft $D/fresh
