#!/usr/bin/env bash
# The GPU figures of the performance issue in as few device calls as possible
# (../shared/docs/GPU.md): wgml and PyTorch side by side on the same GPU, every raw
# output written under $OUT (the device tool brings that folder back).
#
# Prepare once on the development machine (repo root), as GPU.md says, plus the
# test binary:
#   (GPU.md's two blocks: the Vulkan/EGL loader .debs into .gl/, `wgml` into .device/)
#   cp "$(ls -t target/release/deps/kernels-* | grep -v '\.d$' | head -1)" .device/kernels
# Then one device call per stage, carrying .gl and .device (each stays under the
# 10-minute limit on an H100; `all` runs the three in a row):
#   bash benches/gpu_session.sh wgml    # info, bench all, matmul 1024-4096, CNN epochs at batch 32/128
#   bash benches/gpu_session.sh torch   # benches/torch_baseline.py (cuBLAS, cuDNN, PyTorch eager)
#   bash benches/gpu_session.sh tests   # every kernel test on NVIDIA Vulkan, ignored ones included
# Without .gl (e.g. a local try on lavapipe) the loader set-up is skipped.
set -uo pipefail
stage="${1:-all}"
OUT="${OUT:?set OUT to the folder that receives the results}"
mkdir -p "$OUT"

if [ -d .gl ]; then
    for f in .gl/*.deb; do dpkg -x "$f" /; done
    ldconfig
    export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
fi
command -v nvidia-smi >/dev/null && nvidia-smi -L | tee "$OUT/gpu.txt"
wgml=./.device/wgml
[ -x "$wgml" ] || wgml=./target/release/wgml

run() {  # name, command...: output to $OUT/name.log, status noted, never stops the stage
    local name=$1
    shift
    echo "== $name: $*"
    "$@" > "$OUT/$name.log" 2>&1
    echo "== $name: exit $?" | tee -a "$OUT/$name.log"
}

if [ "$stage" = wgml ] || [ "$stage" = all ]; then
    run info "$wgml" info
    run bench-all "$wgml" bench all --repeat 20 --json "$OUT/bench-all.json" \
        --csv "$OUT/bench-all.csv" --plot "$OUT/bench-all.png"
    run matmul "$wgml" bench matmul --sizes 1024,2048,4096 --layouts nn,nt,tn --repeat 20 \
        --json "$OUT/matmul.json"
    run train-step "$wgml" bench train-step --sizes 32,128 --repeat 20 --json "$OUT/train-step.json"
    run train-b32 "$wgml" train --epochs 3 --batch-size 32 --metrics "$OUT/train-b32.json"
    run train-b128 "$wgml" train --epochs 3 --batch-size 128 --metrics "$OUT/train-b128.json"
    run profile-b32 "$wgml" train --profile
fi
if [ "$stage" = torch ] || [ "$stage" = all ]; then
    echo "== torch_baseline"
    python3 benches/torch_baseline.py data/mnist-10k > "$OUT/torch.json" 2> "$OUT/torch.log"
    echo "== torch_baseline: exit $?" | tee -a "$OUT/torch.log"
fi
if [ "$stage" = tests ] || [ "$stage" = all ]; then
    if [ -x .device/kernels ]; then
        # cli::, report:: and the bench CLI test start the wgml binary at its build path
        # on the development machine (absent here); everything else runs.
        run tests ./.device/kernels --include-ignored --test-threads 1 \
            --skip cli:: --skip report:: --skip bench::cli_
    else
        echo "no .device/kernels: copy the kernels test binary there (see the header)"
    fi
fi
tail -n 3 "$OUT"/*.log
