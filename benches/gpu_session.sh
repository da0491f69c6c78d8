#!/usr/bin/env bash
# The GPU figures of the performance issue in as few device calls as possible
# (../shared/docs/GPU.md): wgml and PyTorch side by side on the same GPU, every raw
# output written under $OUT (the device tool brings that folder back; the stage
# packs its logs into one $OUT/<stage>.tgz as well, since only 8 files come back).
#
# Prepare once on the development machine (repo root), as GPU.md says, plus the
# test binary:
#   (GPU.md's two blocks: the Vulkan/EGL loader .debs into .gl/, `wgml` into .device/)
#   cp "$(ls -t target/release/deps/kernels-* | grep -v '\.d$' | head -1)" .device/kernels
# Then one device call per stage, carrying .gl and .device (`all` runs them in a row;
# every step has its own time limit so one hang cannot eat the call):
#   bash benches/gpu_session.sh wgml    # tuning from an empty cache, CNN/MLP/transformer epochs at
#                                       # batch 32/128, profiles, matmul 1024-4096 (tuned and forced),
#                                       # tensor cores (--matmul-precision medium), bench all
#   bash benches/gpu_session.sh torch   # benches/torch_baseline.py (cuBLAS, cuDNN, PyTorch eager),
#                                       # benches/transformer_torch.py, byte_lm_torch.py,
#                                       # gpt2_torch.py and bert_torch.py on the GPU
#   bash benches/gpu_session.sh tests   # every kernel test alone, 8 at a time, 60 s each at most
#   bash benches/gpu_session.sh llama   # (not in `all`) a SmolLM2-135M-shaped Llama from random
#                                       # weights: training and LoRA steps at batch 8 x 1,024,
#                                       # their profile, generation with and without the cache,
#                                       # and after a 700-token prompt
# Without .gl (e.g. a local try on lavapipe) the loader set-up is skipped.
set -uo pipefail
stage="${1:-all}"
OUT="${OUT:?set OUT to the folder that receives the results}"
mkdir -p "$OUT"
logs="$OUT/logs"
mkdir -p "$logs"

if [ -d .gl ]; then
    for f in .gl/*.deb; do dpkg -x "$f" /; done
    ldconfig
    export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
fi
command -v nvidia-smi >/dev/null && nvidia-smi -L | tee "$logs/gpu.txt"
wgml=$(realpath ./.device/wgml 2>/dev/null)
[ -x "$wgml" ] || wgml=$(realpath ./target/release/wgml)
# A fresh tuning cache: the first run below measures everything, as a new user's would.
export WGML_CACHE_DIR="$logs/tune-cache"
rm -rf "$WGML_CACHE_DIR"

run() {  # name, limit in seconds, command...: output to $logs/name.log, never stops the stage
    local name=$1 limit=$2
    shift 2
    echo "== $name: $*"
    timeout -k 5 "$limit" "$@" > "$logs/$name.log" 2>&1
    echo "== $name: exit $? after ${SECONDS}s of the stage" | tee -a "$logs/$name.log"
}

if [ "$stage" = wgml ] || [ "$stage" = all ]; then
    run info-before 30 "$wgml" info
    # First run with an empty cache: pipelines and tuning are inside its first epoch.
    run train-b32 120 "$wgml" train --epochs 3 --batch-size 32 --metrics "$logs/train-b32.json"
    run train-b128 120 "$wgml" train --epochs 3 --batch-size 128 --metrics "$logs/train-b128.json"
    run mlp-b128 60 "$wgml" train --model mlp --epochs 3 --batch-size 128 --metrics "$logs/mlp-b128.json"
    run mlp-b32 60 "$wgml" train --model mlp --epochs 3 --batch-size 32 --metrics "$logs/mlp-b32.json"
    run profile-b32 60 "$wgml" train --profile --batch-size 32
    # The MLP, whose kernels are tiny: its profile's last lines say whether the
    # host (upload, record, submit) or the GPU sets the pace.
    run profile-mlp-b128 60 "$wgml" train --model mlp --profile --batch-size 128
    # The transformer encoder (MNIST rows as 28 tokens; benches/transformer_torch.py in torch).
    for b in 32 128; do
        run "transformer-b$b" 120 "$wgml" train --model examples/models/transformer.json \
            --data mnist-10k --epochs 3 --batch-size $b --metrics "$logs/transformer-b$b.json"
    done
    run profile-transformer-b32 60 "$wgml" train --model examples/models/transformer.json \
        --data mnist-10k --profile --batch-size 32
    # The byte-level language model on this repository's README (tokens/s, per-token
    # loss and perplexity), and where its step goes.
    run byte-lm-b32 120 "$wgml" train --model examples/models/byte_lm.json --data text:README.md \
        --epochs 3 --batch-size 32 --metrics "$logs/byte-lm-b32.json"
    run profile-byte-lm-b32 60 "$wgml" train --model examples/models/byte_lm.json \
        --data text:README.md --profile --batch-size 32
    # The same with a 1,024-token BPE, and the embedding gradient scanned against sorted
    # from the LM sizes up to GPT-2's (50,257 rows, 32 x 1,024 tokens, width 768).
    run bpe-lm-b32 120 "$wgml" train --model examples/models/bpe_lm.json --data text:README.md \
        --tokenizer bpe:1024 --epochs 3 --batch-size 32 --metrics "$logs/bpe-lm-b32.json"
    run embedding 120 "$wgml" bench embedding --sizes 2048x1024x64,32768x8192x512 \
        --json "$logs/embedding.json"
    run embedding-gpt2 120 "$wgml" bench embedding --sizes 32768x50257x768 \
        --json "$logs/embedding-gpt2.json"
    # GPT-2 small (examples/models/gpt2_small.json: what `wgml import` gives the Hub's
    # gpt2, random weights, bytes as tokens): training at batch 8 x 1,024 tokens, its
    # profile, and generation with the key/value cache against the whole window per
    # token (benches/gpt2_torch.py does the same in PyTorch eager).
    run gpt2-b8 240 "$wgml" train --model examples/models/gpt2_small.json --data text:README.md \
        --batch-size 8 --steps 20 --save /tmp/gpt2-small.safetensors --metrics "$logs/gpt2-b8.json"
    run profile-gpt2-b8 120 "$wgml" train --model examples/models/gpt2_small.json \
        --data text:README.md --profile --batch-size 8
    # Gradient accumulation: 4 passes of batch 2 per step (the same 8 sequences a
    # step as gpt2-b8): the predicted cost is gpt2-b8's step at batch 2, times 4, plus
    # < 1 ms of accumulation (BENCHMARKS.md, "Gradient accumulation").
    run gpt2-b2x4 240 "$wgml" train --model examples/models/gpt2_small.json --data text:README.md \
        --batch-size 2 --accumulate 4 --steps 5 --metrics "$logs/gpt2-b2x4.json"
    # LoRA rank 8 on q, k, v from gpt2-b8's checkpoint: the frozen weight gradients
    # and their Adam go (about a third of the step's products; BENCHMARKS.md, "Low-rank
    # adapters"); its profile shows what the adapters' small products cost here.
    run gpt2-lora-b8 240 "$wgml" train --model /tmp/gpt2-small.safetensors --data text:README.md \
        --batch-size 8 --steps 20 --lora 8 --lora-alpha 16 --save /tmp/gpt2-lora.safetensors \
        --metrics "$logs/gpt2-lora-b8.json"
    run profile-gpt2-lora-b8 120 "$wgml" train --model /tmp/gpt2-small.safetensors \
        --data text:README.md --profile --batch-size 8 --lora 8 --lora-alpha 16
    # Generation from the LoRA checkpoint merges the adapters at load: the same pace as
    # the plain model's (gpt2-generate).
    run gpt2-lora-generate 120 "$wgml" generate --weights /tmp/gpt2-lora.safetensors --prompt "Th" \
        --tokens 100 --temperature 0
    run gpt2-generate 120 "$wgml" generate --weights /tmp/gpt2-small.safetensors --prompt "Th" \
        --tokens 100 --temperature 0
    # Texts by class (the repository's Rust against its WGSL, padded to 256 bytes, ~26% padding):
    # the fused attention skips the padded keys; the profile shows attention's share.
    python3 bench-results/2026-12-07-padding/make_texts.py /tmp/texts
    run texts-b32 120 "$wgml" train --model examples/models/text_classifier.json --data /tmp/texts \
        --epochs 6 --batch-size 32 --lr 3e-3 --metrics "$logs/texts-b32.json"
    # Dynamic padding at a 1024-token window: the whole window against batches
    # grouped by length (lavapipe: bench-results/2026-12-07-dynamic-padding/).
    for mode in no-dynamic-padding group-by-length; do
        run texts-1024-b32-$mode 120 "$wgml" train \
            --model bench-results/2026-12-07-dynamic-padding/text_classifier_1024.json \
            --data /tmp/texts --epochs 3 --batch-size 32 --lr 3e-3 --$mode
    done
    run profile-texts-b32 60 "$wgml" train --model examples/models/text_classifier.json \
        --data /tmp/texts --profile --batch-size 32
    # BERT-base (examples/models/bert_base.json: what `wgml import` gives the Hub's
    # bert-base-uncased at a 128-token window, random weights, bytes as tokens)
    # fine-tuning steps at batch 32, and the profile of one (floor and prediction:
    # BENCHMARKS.md, "BERT").
    run bert-base-b32 180 "$wgml" train --model examples/models/bert_base.json --data /tmp/texts \
        --batch-size 32 --steps 20 --no-dynamic-padding --metrics "$logs/bert-base-b32.json"
    run profile-bert-base-b32 120 "$wgml" train --model examples/models/bert_base.json \
        --data /tmp/texts --profile --batch-size 32
    WGML_ATTENTION=unfused run profile-texts-b32-unfused 60 "$wgml" train \
        --model examples/models/text_classifier.json --data /tmp/texts --profile --batch-size 32
    run gpt2-generate-no-cache 120 "$wgml" generate --weights /tmp/gpt2-small.safetensors \
        --prompt "Th" --tokens 100 --temperature 0 --no-cache
    # A 500-byte prompt: its keys and values in one prefill pass, then one token
    # (gpt2_torch.py's prefill_500_s is PyTorch's time to the same first token).
    run gpt2-generate-prefill 120 "$wgml" generate --weights /tmp/gpt2-small.safetensors \
        --prompt "$(head -c 500 README.md | tr -cd '[:print:]\n')" --tokens 1 --temperature 0
    # The generation's one-row products measured (rows against lanes) and kept.
    run gpt2-tune 120 "$wgml" tune --model /tmp/gpt2-small.safetensors --data text:README.md \
        --batch-size 8
    # The fused attention (the default on GPUs) against the unfused path.
    WGML_ATTENTION=unfused run profile-transformer-b32-unfused 60 "$wgml" train \
        --model examples/models/transformer.json --data mnist-10k --profile --batch-size 32
    run profile-b128 60 "$wgml" train --profile --batch-size 128
    # The same runs with the built-in rules only (no tuning), for comparison.
    WGML_TUNE=off run train-b32-untuned 120 "$wgml" train --epochs 2 --batch-size 32
    WGML_TUNE=off run profile-b32-untuned 60 "$wgml" train --profile --batch-size 32
    run matmul 180 "$wgml" bench matmul --sizes 1024,2048,4096 --layouts nn,nt,tn --repeat 20 \
        --json "$logs/matmul.json"
    for v in register_small register_mid tiled64 tiled128; do
        run "matmul-$v" 60 "$wgml" bench matmul --sizes 1024,4096 --variant "$v" --split-k 1 \
            --repeat 10 --json "$logs/matmul-$v.json"
    done
    # The seed CNN's Dense forward (one output tile, K = 5408) at several split factors.
    for s in 1 8 16 32 64; do
        run "dense-split$s" 30 "$wgml" bench matmul --sizes 32x64x5408 --split-k "$s" --repeat 20 \
            --json "$logs/dense-split$s.json"
    done
    # Tensor cores (--matmul-precision medium: f16 inputs, f32 sums): whether they
    # pass wgml's check on this GPU, forced and as the automatic choice, and the
    # trainers with them.
    run info-medium 60 "$wgml" --matmul-precision medium info
    for v in coop64 coop128; do
        run "matmul-$v" 90 "$wgml" bench matmul --sizes 1024,2048,4096 --variant "$v" --split-k 1 \
            --repeat 10 --json "$logs/matmul-$v.json"
    done
    run matmul-medium 120 "$wgml" --matmul-precision medium bench matmul --sizes 1024,2048,4096 \
        --layouts nn,nt,tn --repeat 20 --json "$logs/matmul-medium.json"
    for b in 32 128; do
        run "train-b$b-medium" 120 "$wgml" --matmul-precision medium train --epochs 3 --batch-size $b \
            --metrics "$logs/train-b$b-medium.json"
    done
    run mlp-b128-medium 60 "$wgml" --matmul-precision medium train --model mlp --epochs 3 \
        --batch-size 128 --metrics "$logs/mlp-b128-medium.json"
    run transformer-b128-medium 120 "$wgml" --matmul-precision medium train \
        --model examples/models/transformer.json --data mnist-10k --epochs 3 --batch-size 128 \
        --metrics "$logs/transformer-b128-medium.json"
    run profile-b32-medium 60 "$wgml" --matmul-precision medium train --profile --batch-size 32
    run bench-all 180 "$wgml" bench all --repeat 20 --json "$logs/bench-all.json" --csv "$logs/bench-all.csv"
    run selftest 120 "$wgml" selftest
    run info-after 30 "$wgml" info
fi
if [ "$stage" = torch ] || [ "$stage" = all ]; then
    echo "== torch_baseline"
    timeout -k 5 300 python3 benches/torch_baseline.py data/mnist-10k > "$logs/torch.json" 2> "$logs/torch.log"
    echo "== torch_baseline: exit $?" | tee -a "$logs/torch.log"
    DEVICE=cuda timeout -k 5 180 python3 benches/gpt2_torch.py \
        > "$logs/torch-gpt2.json" 2> "$logs/torch-gpt2.log"
    echo "== torch GPT-2: exit $?" | tee -a "$logs/torch-gpt2.log"
    DEVICE=cuda timeout -k 5 120 python3 benches/bert_torch.py \
        > "$logs/torch-bert-base.json" 2> "$logs/torch-bert-base.log"
    echo "== torch BERT-base: exit $?" | tee -a "$logs/torch-bert-base.log"
    DEVICE=cuda timeout -k 5 120 python3 benches/byte_lm_torch.py README.md 3 1 \
        > "$logs/torch-byte-lm-b32.json" 2> "$logs/torch-byte-lm-b32.log"
    echo "== torch byte LM: exit $?" | tee -a "$logs/torch-byte-lm-b32.log"
    for b in 32 128; do
        DEVICE=cuda BATCH=$b timeout -k 5 120 python3 benches/transformer_torch.py 3 1 \
            > "$logs/torch-transformer-b$b.json" 2> "$logs/torch-transformer-b$b.log"
        echo "== torch transformer batch $b: exit $?" | tee -a "$logs/torch-transformer-b$b.log"
    done
fi
if [ "$stage" = llama ]; then
    # examples/models/smollm2_135m.json: what `wgml import` gives HuggingFaceTB/SmolLM2-135M at
    # 1,024 positions (random weights, bytes as tokens; lavapipe's figures and transformers'
    # agreement: bench-results/2026-12-07-llama/).
    run smollm2-b8 240 "$wgml" train --model examples/models/smollm2_135m.json --data text:README.md \
        --batch-size 8 --steps 20 --save /tmp/smollm2.safetensors --metrics "$logs/smollm2-b8.json"
    run profile-smollm2-b8 120 "$wgml" train --model examples/models/smollm2_135m.json \
        --data text:README.md --profile --batch-size 8
    run smollm2-lora-b8 240 "$wgml" train --model /tmp/smollm2.safetensors --data text:README.md \
        --batch-size 8 --steps 20 --lora 8 --metrics "$logs/smollm2-lora-b8.json"
    run smollm2-generate 120 "$wgml" generate --weights /tmp/smollm2.safetensors --prompt "Th" \
        --tokens 100 --temperature 0
    run smollm2-generate-no-cache 180 "$wgml" generate --weights /tmp/smollm2.safetensors \
        --prompt "Th" --tokens 100 --temperature 0 --no-cache
    # A long context: 700 prompt tokens (bytes), then 200 steps, each reading 700-900
    # cached positions through attention_decode (split over the keys on a GPU);
    # stderr gives the time to the first token and the pace after it.
    run smollm2-generate-long 120 "$wgml" generate --weights /tmp/smollm2.safetensors \
        --prompt "$(head -c 700 README.md | tr -cd '[:print:]\n')" --tokens 200 --temperature 0
fi
if [ "$stage" = tests ] || [ "$stage" = all ]; then
    if [ -x .device/kernels ]; then
        # Every test alone (ignored ones included), 8 at a time, 60 s each at most:
        # one line per test with its exit status (124: timed out) and seconds.
        export WGML_BIN="$wgml"
        start=$SECONDS
        # TESTS_FILTER=matmul:: runs only the tests whose names contain it (local tries).
        ./.device/kernels --list --include-ignored 2>/dev/null | sed -n 's/: test$//p' |
            grep -F -- "${TESTS_FILTER:-}" |
            grep -vE '_child$|soak_100k|200_kills' |  # child processes and long soaks: not for this run
            xargs -P "${TESTS_JOBS:-8}" -I{} bash -c \
                't0=$(date +%s%N); timeout -k 5 60 ./.device/kernels --exact "{}" --include-ignored \
                   > "'"$logs"'/test-{}.log" 2>&1; rc=$?; \
                 ms=$(( ($(date +%s%N) - t0) / 1000000 )); \
                 printf "%s %d.%03d %s\n" $rc $((ms / 1000)) $((ms % 1000)) "{}"' \
            > "$logs/tests-one-by-one.txt"
        echo "tests: $(grep -c '^0 ' "$logs/tests-one-by-one.txt") passed of \
$(wc -l < "$logs/tests-one-by-one.txt") in $((SECONDS - start)) s" | tee "$logs/tests-summary.txt"
        grep -v '^0 ' "$logs/tests-one-by-one.txt" | tee -a "$logs/tests-summary.txt"
    else
        echo "no .device/kernels: copy the kernels test binary there (see the header)"
    fi
fi
tail -n 2 "$logs"/*.log | tail -n 120
tar czf "$OUT/$stage.tgz" -C "$logs" .
