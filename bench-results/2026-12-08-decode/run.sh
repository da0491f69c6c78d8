#!/usr/bin/env bash
# Key/value-cache generation before and after the decoding step's own attention
# kernel (2026-12-08): the previous commit's binary (BASE: 359a6b4 plus the two
# lines that print the pace after the first token) against this one (NEW) on
# the same adapter, checkpoints and prompts, and both against transformers'
# greedy tokens (check.py, CPU). Models: SmolLM2-135M's shape
# (../2026-12-07-llama/make_model.py) at 1,024 positions, and a 4-block Llama with
# 128-value heads (make_wide.py). Prompts: 12 words, and 700 words (each new
# token's attention reads 700+ cached positions). Needs torch, transformers,
# tokenizers.
set -euo pipefail
cd "$(dirname "$0")"
BASE=${BASE:?the previous commit\'s wgml}
NEW=${NEW:-../../target/release/wgml}
PY=${PY:-python3}
$PY ../2026-12-07-llama/make_model.py
$PY make_wide.py
$NEW import model --save smol.safetensors --context 1024
$NEW import wide --save wide.safetensors --context 1024
long=$(cut -d' ' -f1-700 corpus.txt)
for w in smol wide; do
    for prompt in "$(cat prompt.txt)" "$long"; do
        n=$(echo $prompt | wc -w)
        echo "$prompt" > prompt-$n.txt
        for bin in BASE NEW; do
            # (A run that fails says why and leaves no tokens to check.)
            ${!bin} generate --weights $w.safetensors --prompt "$prompt" --tokens 33 --temperature 0 \
                > out-$bin-$w-$n.txt 2> err.txt || true
            echo "$bin $w, $n-word prompt: $(grep -v XDG_RUNTIME_DIR err.txt | tr '\n' ' ')"
        done
    done
done
$PY check.py
rm -f out-*.txt err.txt prompt-*.txt
