#!/bin/bash
# Dynamic padding on lavapipe: the text classifier at T = 256 and T = 1024, with
# the whole window, with dynamic padding alone, and with batches grouped by length.
# Data: python3 bench-results/2026-12-07-padding/make_texts.py /tmp/texts
set -u
cd "$(dirname "$0")/../.."
out=bench-results/2026-12-07-dynamic-padding
w=./target/release/wgml
common="--data /tmp/texts --lr 3e-3 --seed 42"
for b in 32 16; do
  $w train --model examples/models/text_classifier.json $common --epochs 6 --batch-size $b --no-dynamic-padding > $out/t256-b$b-whole.log 2>&1
  $w train --model examples/models/text_classifier.json $common --epochs 6 --batch-size $b > $out/t256-b$b-dynamic.log 2>&1
  $w train --model examples/models/text_classifier.json $common --epochs 6 --batch-size $b --group-by-length > $out/t256-b$b-grouped.log 2>&1
done
# Longer windows. Lavapipe binds at most 128 MiB, and the unfused attention's
# scores take B·H·T² floats: batch 16 at T = 512, batch 4 at T = 1024.
for spec in "512 16 3" "1024 4 2"; do
  set -- $spec
  $w train --model $out/text_classifier_$1.json $common --epochs $3 --batch-size $2 --no-dynamic-padding > $out/t$1-b$2-whole.log 2>&1
  $w train --model $out/text_classifier_$1.json $common --epochs $3 --batch-size $2 --group-by-length > $out/t$1-b$2-grouped.log 2>&1
done
