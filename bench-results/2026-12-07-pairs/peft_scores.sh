#!/bin/bash
# After run.sh: the regression BERT of part 3 fine-tuned one epoch with --lora 4,
# its PEFT adapter (the one-score head in modules_to_save) loaded by PEFT onto the
# base folder with num_labels 1 and scored against `wgml predict`.
set -e
W=target/release/wgml; D=/tmp/pairs
$W train --model $D/r.safetensors --data $D/sts --epochs 1 --lr 1e-3 --lora 4 --save $D/rl.safetensors
$W export $D/rl.safetensors --peft --save $D/rpeft
$W predict --weights $D/rl.safetensors $D/sts/test.csv --output $D/rlpred.csv
/tmp/pyenv/bin/python bench-results/2026-12-07-pairs/check_peft_scores.py $D/fresh $D/rpeft $D/sts/test.csv $D/rlpred.csv
