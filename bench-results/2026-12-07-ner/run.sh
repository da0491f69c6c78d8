#!/bin/bash
# Token classification (named entities): a fresh tiny BERT (transformers' init;
# bench-results/2026-12-07-pairs/make_fresh_bert.py) imported with a new token
# classifier of 4 tags, fine-tuned on make_ner.py's sentences (CoNLL train and
# validation files, a JSON-lines test file), its tags and entity scores checked
# against transformers (its export) and seqeval (lavapipe).
set -e
W=target/release/wgml; D=/tmp/ner-bench; rm -rf $D; mkdir -p $D
python3 bench-results/2026-12-07-ner/make_ner.py $D/ner
/tmp/pyenv/bin/python bench-results/2026-12-07-pairs/make_fresh_bert.py $D/fresh
$W import $D/fresh --save $D/m.safetensors --seed 1 --num-labels 4 --token-classification
$W train --model $D/m.safetensors --data $D/ner --epochs 6 --lr 1e-3 --batch-size 16 \
  --save $D/t.safetensors --metrics $D/metrics.json
$W predict --weights $D/t.safetensors $D/ner/test.jsonl --output $D/pred.conll
$W export $D/t.safetensors --save $D/hf
/tmp/pyenv/bin/python bench-results/2026-12-07-ner/check_ner.py $D/hf $D/ner/test.jsonl $D/pred.conll $D/metrics.json
# Plain text (the test sentences joined, punctuation attached to its word):
# entities as transformers' token-classification pipeline groups them.
python3 -c "import json,sys; [print(' '.join(json.loads(l)['tokens']).replace(' .', '.').replace(' !', '!').replace(' ,', ',')) for l in open(sys.argv[1])]" $D/ner/test.jsonl > $D/sentences.txt
$W predict --weights $D/t.safetensors --sentences $D/sentences.txt --output $D/entities.jsonl
/tmp/pyenv/bin/python bench-results/2026-12-07-ner/check_pipeline.py $D/hf $D/sentences.txt $D/entities.jsonl
# LoRA (rank 4 on the query and value, the classifier trained in full), written
# as a PEFT TOKEN_CLS adapter and checked on PEFT's own model.
$W train --model $D/m.safetensors --data $D/ner --epochs 6 --lr 3e-3 --batch-size 16 --lora 4 \
  --save $D/lora.safetensors --metrics $D/lora-metrics.json
$W predict --weights $D/lora.safetensors $D/ner/test.jsonl --output $D/lora-pred.conll
$W export $D/lora.safetensors --peft --save $D/adapter
/tmp/pyenv/bin/python bench-results/2026-12-07-ner/check_ner.py $D/adapter $D/ner/test.jsonl \
  $D/lora-pred.conll $D/lora-metrics.json --peft $D/fresh
