#!/usr/bin/env bash
# Issue 16's fine-tuning measurement: pretrain the seed CNN on one task, adapt it to
# another from few labelled images, and compare with the same model trained from
# scratch on those images. Every run's full output goes to $OUT/<experiment>/;
# $OUT/<experiment>/summary.tsv holds one line per (seed, arm) with the test
# accuracy. Runs anywhere wgml runs (lavapipe: about 10 minutes for both experiments).
#
#   OUT=bench-results/<date>-finetune bash benches/finetune.sh [digits|fashion|all] [SEEDS...]
#
# digits:  pretrain on MNIST digits 0-4 (mnist-10k), fine-tune on 5-9 from 50 images
#          per class; tested on every 5-9 test image.
# fashion: pretrain on all of mnist-10k, fine-tune on Fashion-MNIST from 50 images per
#          class (apt-get install dataset-fashion-mnist); tested on its 10,000 test images.
#
# Arms (the same seed draws the same labelled images in every arm):
#   scratch      the seed CNN from its initialiser, Adam 1e-3
#   head         frozen pretrained base, a new output layer, Adam 1e-3
#   head-lr1e-2  the same with Adam 1e-2 (a lone linear head takes a higher rate)
#   conv-frozen  frozen pretrained conv layer, its Dense layer loaded and trained, a new head
#   all          every pretrained layer loaded and trained, a new head
# Every arm: 30 epochs, batch 32, no validation split (250 or 500 images are few),
# the recipe's early stopping on the training loss with the best weights restored.
set -euo pipefail
what="${1:-all}"
shift || true
seeds=("$@")
[ ${#seeds[@]} -gt 0 ] || seeds=(1 2 3 4 5)
OUT="${OUT:?set OUT to the folder that receives the results}"
wgml=$(realpath ./target/release/wgml)

experiment() {  # name, pretrain flags, fine-tune flags
    local name=$1 pre=$2 fine=$3 dir="$OUT/$1"
    mkdir -p "$dir"
    printf 'seed\tarm\ttest_accuracy\ttest_loss\n' > "$dir/summary.tsv"
    for s in "${seeds[@]}"; do
        # shellcheck disable=SC2086
        "$wgml" train --model cnn $pre --epochs 5 --seed "$s" --save "$dir/base-$s.safetensors" \
            > "$dir/pretrain-$s.log" 2>&1
        for arm in scratch head head-lr1e-2 conv-frozen all; do
            local flags
            case $arm in
                scratch) flags="" ;;
                head) flags="--init $dir/base-$s.safetensors --new-layers 5 --freeze loaded" ;;
                head-lr1e-2) flags="--init $dir/base-$s.safetensors --new-layers 5 --freeze loaded --lr 0.01" ;;
                conv-frozen) flags="--init $dir/base-$s.safetensors --new-layers 5 --freeze 1" ;;
                all) flags="--init $dir/base-$s.safetensors --new-layers 5" ;;
            esac
            local log="$dir/$arm-$s.log"
            # shellcheck disable=SC2086
            "$wgml" train --model cnn $fine --per-class 50 --val-split 0 --epochs 30 --seed "$s" \
                --metrics "$dir/$arm-$s.json" $flags > "$log" 2>&1
            local line
            line=$(grep '^test loss' "$log")
            local loss acc
            loss=$(sed -E 's/test loss: ([0-9.]+).*/\1/' <<< "$line")
            acc=$(sed -E 's/.*test accuracy: ([0-9.]+).*/\1/' <<< "$line")
            printf '%s\t%s\t%s\t%s\n' "$s" "$arm" "$acc" "$loss" | tee -a "$dir/summary.tsv"
        done
        rm -f "$dir/base-$s.safetensors"
    done
    # Mean and spread of each arm over the seeds.
    awk -F'\t' 'NR > 1 { n[$2]++; s[$2] += $3; q[$2] += $3 * $3; if (!($2 in o)) o[$2] = ++k }
        END { for (a in o) order[o[a]] = a
              for (i = 1; i <= k; i++) { a = order[i]; m = s[a] / n[a]; v = q[a] / n[a] - m * m
                  printf "%s\tmean %.4f\tsd %.4f\t(%d seeds)\n", a, m, sqrt(v > 0 ? v : 0), n[a] } }' \
        "$dir/summary.tsv" | tee "$dir/means.txt"
}

case $what in
    digits | all) experiment digits "--classes 0-4" "--classes 5-9" ;;&
    fashion | all) experiment fashion "" "--data fashion-mnist" ;;
    digits) ;;
    *) echo "usage: benches/finetune.sh [digits|fashion|all] [SEEDS...]" >&2; exit 2 ;;
esac
