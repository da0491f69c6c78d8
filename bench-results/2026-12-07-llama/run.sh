#!/usr/bin/env bash
# A SmolLM2-135M-shaped Llama (random weights, make_model.py) through wgml on
# this machine's adapter: import, greedy generation with and without the
# key/value cache against transformers' (check.py, CPU, 2 threads), export back
# to a Hugging Face folder that transformers loads and continues the same way,
# and LoRA fine-tuning steps. Run from this folder after `cargo build --release`;
# needs torch, transformers and tokenizers.
set -euo pipefail
cd "$(dirname "$0")"
W=../../target/release/wgml
PY=${PY:-python3}
$PY make_model.py
/usr/bin/time -f "import: %e s, %M KiB" $W import model --save smol.safetensors --context 256
for cache in "" "--no-cache"; do
    echo "== wgml generate $cache"
    $W generate --weights smol.safetensors --prompt "$(cat prompt.txt)" --tokens 32 --temperature 0 $cache \
        > "generated${cache}.txt"
    cat "generated${cache}.txt"
done
cmp generated.txt generated--no-cache.txt && echo "cached and uncached continuations are the same text"
$W export smol.safetensors --save model-exported
$PY check.py prompt.json 32 | tee check.jsonl
$PY - <<'PY'
import json, re
ours = [int(t) for t in re.findall(r"t(\d+)", open("generated.txt").read())][12:]
for row in map(json.loads, open("check.jsonl")):
    print(f"{row['folder']}: wgml's {len(ours)} greedy tokens equal transformers': {ours == row['greedy']}")
PY
# Batch 2: four windows' logits ([4, 256, 49152] f32, 201 MB) exceed lavapipe's 128 MiB binding.
echo "== LoRA fine-tuning, rank 8 on q_proj and v_proj, 256 tokens × batch 2"
$W train --model smol.safetensors --data text:corpus.txt --lora 8 --steps 3 --batch-size 2 --lr 1e-3
echo "== PyTorch: PEFT LoRA on the same model and windows, CPU, 2 threads"
$PY torch_lora.py
