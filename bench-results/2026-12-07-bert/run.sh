#!/bin/bash
# BERT export checked by transformers itself (lavapipe; peft 0.21.2, transformers
# 5.25.0, torch 2.15 CPU in /tmp/pyenv). Texts: make_texts.py from the padding run.
set -e
W=target/release/wgml; D=/tmp/bcli; rm -rf $D; mkdir -p $D
python3 bench-results/2026-12-07-padding/make_texts.py /tmp/texts
# 1. The fixture imported and exported untouched.
$W import kernels-tests/golden/bert-tiny-cls --save $D/fx.safetensors --context 16
$W export $D/fx.safetensors --save $D/fx-hf
# 2. Fine-tuned with LoRA (merged on export), then predicted by wgml.
$W import kernels-tests/golden/bert-tiny-cls --save $D/b.safetensors --context 24
$W train --model $D/b.safetensors --data /tmp/texts --epochs 2 --lora 4 --save $D/t.safetensors
$W export $D/t.safetensors --save $D/hf
$W predict --weights $D/t.safetensors /tmp/texts/test/*/*.txt > $D/pred.txt
/tmp/pyenv/bin/python bench-results/2026-12-07-bert/check_export.py kernels-tests/golden/bert-tiny-cls \
    $D/fx-hf $D/hf $D/pred.txt
# 3. The RoBERTa fixture imported and exported untouched.
$W import kernels-tests/golden/roberta-tiny-cls --save $D/rx.safetensors --context 16
$W export $D/rx.safetensors --save $D/rx-hf
/tmp/pyenv/bin/python bench-results/2026-12-07-bert/check_export.py kernels-tests/golden/roberta-tiny-cls $D/rx-hf
# 4. The DistilBERT fixture imported and exported untouched.
$W import kernels-tests/golden/distilbert-tiny-cls --save $D/dx.safetensors --context 16
$W export $D/dx.safetensors --save $D/dx-hf
/tmp/pyenv/bin/python bench-results/2026-12-07-bert/check_export.py kernels-tests/golden/distilbert-tiny-cls $D/dx-hf
