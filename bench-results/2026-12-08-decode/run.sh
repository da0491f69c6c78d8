#!/usr/bin/env bash
# Key/value-cache generation before and after the decoding step's own attention
# kernel (2026-12-08): the previous commit's binary (BASE, built from 359a6b4)
# against this one (NEW) on the same adapter, the same checkpoints and prompts.
# Models: SmolLM2-135M's shape (../2026-12-07-llama/make_model.py) at 1,024
# positions, and a 4-block Llama with 128-value heads (make_wide.py). Prompts:
# 12 words, and 700 words (the attention then reads 700+ cached positions a
# token). Greedy, so both binaries must print the same tokens. Needs torch,
# transformers, tokenizers.
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
# Each generation runs twice, for 1 token and for 33: the difference is 32
# decoding steps alone, without the prompt's prefill.
secs() { sed -n 's/.* tokens in \([0-9.]*\) s.*/\1/p' "$1"; }
for w in smol wide; do
    for prompt in "$(cat prompt.txt)" "$long"; do
        for bin in BASE NEW; do
            ${!bin} generate --weights $w.safetensors --prompt "$prompt" --tokens 1 --temperature 0 \
                > /dev/null 2> one-$bin.txt
            ${!bin} generate --weights $w.safetensors --prompt "$prompt" --tokens 33 --temperature 0 \
                > out-$bin.txt 2> err-$bin.txt
            a=$(secs one-$bin.txt); b=$(secs err-$bin.txt)
            echo "$bin $w, $(echo $prompt | wc -w)-word prompt: 1 token $a s, 33 tokens $b s:" \
                "$(echo "32 / ($b - $a)" | bc -l | cut -c1-5) tokens/s decoding; $(tail -1 err-$bin.txt)"
        done
        cmp <(tail -c 400 out-BASE.txt) <(tail -c 400 out-NEW.txt) && echo "same tokens"
    done
done
rm -f out-*.txt err-*.txt one-*.txt
