#!/bin/bash
# Test accuracy with and without grouping by length over seeds (T = 256, batch 16).
cd "$(dirname "$0")/../.."
w=./target/release/wgml
for seed in 1 2 3 4; do
  for mode in no-dynamic-padding group-by-length; do
    acc=$($w train --model examples/models/text_classifier.json --data /tmp/texts --lr 3e-3 \
      --seed $seed --epochs 6 --batch-size 16 --$mode 2>&1 | grep -E "Epoch 6|test accuracy" | tr '\n' ' ')
    echo "seed $seed $mode: $acc"
  done
done
