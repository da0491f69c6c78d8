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
# 5. Each family fine-tuned with --lora 4 in wgml (2 epochs), its adapter written
#    with --peft and loaded by PEFT onto the base folder, against wgml predict.
for name in bert roberta distilbert; do
    base=kernels-tests/golden/$name-tiny-cls
    $W import $base --save $D/$name.safetensors --context 16
    $W train --model $D/$name.safetensors --data /tmp/texts --epochs 2 --lora 4 --save $D/$name-lora.safetensors
    $W export $D/$name-lora.safetensors --peft --save $D/$name-peft
    $W predict --weights $D/$name-lora.safetensors /tmp/texts/test/*/*.txt > $D/$name-pred.txt
    /tmp/pyenv/bin/python bench-results/2026-12-07-bert/check_peft.py $base $D/$name-peft $D/$name-pred.txt 16
done
# 6. LoRA on every Linear (all-linear: the head's dense layer and DistilBERT's
#    pre_classifier too, whose adapters the export merges into the saved head).
for name in roberta distilbert; do
    base=kernels-tests/golden/$name-tiny-cls
    $W train --model $D/$name.safetensors --data /tmp/texts --epochs 1 --lora 2 --lora-targets all-linear \
        --save $D/$name-all.safetensors
    $W export $D/$name-all.safetensors --peft --save $D/$name-all-peft
    $W predict --weights $D/$name-all.safetensors /tmp/texts/test/*/*.txt > $D/$name-all-pred.txt
    /tmp/pyenv/bin/python bench-results/2026-12-07-bert/check_peft.py $base $D/$name-all-peft $D/$name-all-pred.txt 16
done
