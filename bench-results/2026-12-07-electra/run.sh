#!/bin/bash
# ELECTRA checked by transformers and PEFT themselves (lavapipe; transformers
# 5.25.0, peft 0.21.2, torch CPU in /tmp/pyenv). Texts: make_texts.py from the
# padding run. The checks are bench-results/2026-12-07-bert's.
set -e
W=target/release/wgml; D=/tmp/electra; rm -rf $D; mkdir -p $D
G=kernels-tests/golden/electra-tiny-cls
python3 bench-results/2026-12-07-padding/make_texts.py /tmp/texts
# 1. The fixture imported and exported untouched; 2. fine-tuned in full (2
#    epochs), exported and predicted.
$W import $G --save $D/fx.safetensors --context 16
$W export $D/fx.safetensors --save $D/fx-hf
$W train --model $D/fx.safetensors --data /tmp/texts --epochs 2 --save $D/t.safetensors
$W export $D/t.safetensors --save $D/hf
$W predict --weights $D/t.safetensors /tmp/texts/test/*/*.txt > $D/pred.txt
/tmp/pyenv/bin/python bench-results/2026-12-07-bert/check_export.py $G $D/fx-hf $D/hf $D/pred.txt
# 3. Fine-tuned with --lora 4 (query and value; the head in full), its PEFT
#    adapter loaded by PEFT onto the fixture folder.
$W train --model $D/fx.safetensors --data /tmp/texts --epochs 2 --lora 4 --save $D/lora.safetensors
$W export $D/lora.safetensors --peft --save $D/peft
$W predict --weights $D/lora.safetensors /tmp/texts/test/*/*.txt > $D/lora-pred.txt
/tmp/pyenv/bin/python bench-results/2026-12-07-bert/check_peft.py $G $D/peft $D/lora-pred.txt 16
