"""Writes a folder of texts by class from this repository's own sources, as
kernels-tests/cli.rs's texts_by_class does: Rust (three src files) and WGSL (three
shaders), frozen in kernels-tests/golden/texts/, cut into documents of 20 to 400
bytes at character boundaries, every fourth to test/, an unlabelled train/unsup/
beside them. Usage, from the repo root:
  python3 bench-results/2026-12-07-padding/make_texts.py OUT_DIR
"""
import os
import sys

OUT = sys.argv[1]
for cls in ["rust", "wgsl"]:
    text = open(f"kernels-tests/golden/texts/{cls}.txt", "rb").read()
    at = n = 0
    while at < len(text) and n < 160:
        end = min(at + 20 + (n * 97) % 380, len(text))
        while end < len(text) and (text[end] & 0xC0) == 0x80:
            end -= 1
        split = "test" if n % 4 == 3 else "train"
        os.makedirs(f"{OUT}/{split}/{cls}", exist_ok=True)
        open(f"{OUT}/{split}/{cls}/{n}.txt", "wb").write(text[at:end])
        at, n = end, n + 1
os.makedirs(f"{OUT}/train/unsup", exist_ok=True)
open(f"{OUT}/train/unsup/0.txt", "w").write("no label")
