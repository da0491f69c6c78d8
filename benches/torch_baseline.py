"""PyTorch baselines for the GPU figures of the performance issue, to run next to
`wgml bench` on the same GPU in the same call (see ../shared/docs/GPU.md and
benches/gpu_session.sh):

    python3 benches/torch_baseline.py [DATA_DIR] > torch.json
    python3 benches/torch_baseline.py --quick          # small sizes: a smoke test on a CPU

Writes one JSON array of rows, keyed like `wgml bench --json` so the two line up:
- matmul f32 (TF32 off) at 1024, 2048, 4096: kernel, m, n, k, ms, gflops; on CUDA
  also with TF32 on and in f16 with f32 accumulation (the peers of
  `--matmul-precision medium`)
- conv2d forward and forward+backward (dx, dw, db) for the seed CNN's layer
  (batch 32, 1 -> 32 channels, 3x3, 28x28) and 32x32x14x14 -> 64, 3x3:
  kernel, n, c_in, h, w, c_out, kh, kw, ms, gflops (forward 2*N*C_out*OH*OW*C_in*KH*KW
  flops, forward+backward 3x that, as wgml counts)
- the seed CNN's training throughput in PyTorch eager at batch 32 and 128 on the
  embedded MNIST subset (Conv2d(1, 32, 3) ReLU MaxPool2d(2) Flatten Linear(5408, 64)
  ReLU Linear(64, 10), Adam lr 1e-3 with Keras' epsilon 1e-7, cross-entropy): kernel
  "train_epoch", batch, images, seconds, images_per_second, for the epoch after a
  warm-up epoch; and the seed MLP's (Flatten Linear(784, 128) ReLU Linear(128, 10),
  same optimizer and loss) as kernel "torch_mlp_train_epoch".

GPU times come from CUDA events after warm-up (median of the repeats); inputs are
random, never zeros. Runs on the CPU (with a note on stderr) where CUDA is absent, so
the script can be tried anywhere PyTorch is installed.
"""

import json
import os
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "examples"))
from numpy_forward import find, read_idx  # noqa: E402

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
QUICK = "--quick" in sys.argv
REPEATS = 3 if QUICK else 20


def timed(fn, repeats=REPEATS, warmup=3):
    """Median milliseconds of fn() over `repeats` runs after `warmup` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if DEVICE.type == "cuda":
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def matmul_rows():
    rows = []

    def row(kernel, s, ms):
        rows.append({"kernel": kernel, "m": s, "n": s, "k": s, "ms": ms,
                     "gflops": 2.0 * s ** 3 / (ms * 1e6)})

    for s in (128, 256) if QUICK else (1024, 2048, 4096):
        a = torch.randn(s, s, device=DEVICE)
        b = torch.randn(s, s, device=DEVICE)
        c = torch.empty(s, s, device=DEVICE)
        row("torch_matmul_fp32", s, timed(lambda: torch.matmul(a, b, out=c)))
        if DEVICE.type != "cuda":
            continue
        # The peers of wgml's reduced precision (--matmul-precision medium: f16
        # inputs, f32 sums): TF32 tensor cores on f32 tensors, and f16 tensors
        # with f32 accumulation.
        torch.backends.cuda.matmul.allow_tf32 = True
        row("torch_matmul_tf32", s, timed(lambda: torch.matmul(a, b, out=c)))
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction = False
        ah, bh, ch = a.half(), b.half(), c.half()
        row("torch_matmul_fp16_fp32acc", s, timed(lambda: torch.matmul(ah, bh, out=ch)))
    return rows


def conv_rows():
    rows = []
    for (n, c_in, hw, c_out, k) in ((32, 1, 28, 32, 3), (32, 32, 14, 64, 3)):
        x = torch.randn(n, c_in, hw, hw, device=DEVICE, requires_grad=True)
        w = torch.randn(c_out, c_in, k, k, device=DEVICE, requires_grad=True)
        b = torch.randn(c_out, device=DEVICE, requires_grad=True)
        oh = hw - k + 1
        flops = 2.0 * n * c_out * oh * oh * c_in * k * k
        gy = torch.randn(n, c_out, oh, oh, device=DEVICE)
        shape = {"n": n, "c_in": c_in, "h": hw, "w": hw, "c_out": c_out, "kh": k, "kw": k}

        def forward():
            with torch.no_grad():
                F.conv2d(x, w, b)

        def forward_backward():
            y = F.conv2d(x, w, b)
            torch.autograd.grad(y, (x, w, b), gy)

        for name, fn, f in (("torch_conv2d_forward", forward, flops),
                            ("torch_conv2d_forward_backward", forward_backward, 3 * flops)):
            ms = timed(fn)
            rows.append({"kernel": name, **shape, "ms": ms, "gflops": f / (ms * 1e6)})
    return rows


def cnn():
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 32, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(),
        torch.nn.Linear(5408, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10),
    ).to(DEVICE)


def mlp():
    return torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(784, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10),
    ).to(DEVICE)


def train_rows(folder):
    from pathlib import Path

    f = Path(folder)
    x = torch.tensor(read_idx(find(f, "train-images-idx3-ubyte")) / 255.0,
                     dtype=torch.float32).unsqueeze(1)
    y = torch.tensor(read_idx(find(f, "train-labels-idx1-ubyte")).astype(np.int64))
    # Keras' validation split: the first 80% train.
    n_train = 640 if QUICK else int(len(x) * 0.8)
    x, y = x[:n_train].to(DEVICE), y[:n_train].to(DEVICE)
    rows = []
    for kernel, make, batch in (("torch_train_epoch", cnn, 32), ("torch_train_epoch", cnn, 128),
                                ("torch_mlp_train_epoch", mlp, 32),
                                ("torch_mlp_train_epoch", mlp, 128)):
        torch.manual_seed(0)
        model = make()
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)

        def epoch():
            perm = torch.randperm(n_train, device=DEVICE)
            for i in range(0, n_train, batch):
                idx = perm[i:i + batch]
                opt.zero_grad(set_to_none=True)
                loss = F.cross_entropy(model(x[idx]), y[idx])
                loss.backward()
                opt.step()
            if DEVICE.type == "cuda":
                torch.cuda.synchronize()

        epoch()  # warm-up (cuDNN autotuning, allocator)
        t0 = time.perf_counter()
        epoch()
        s = time.perf_counter() - t0
        rows.append({"kernel": kernel, "batch": batch, "images": n_train,
                     "seconds": s, "images_per_second": n_train / s})
    return rows


def main():
    args = [a for a in sys.argv[1:] if a != "--quick"]
    folder = args[0] if args else "data/mnist-10k"
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    if DEVICE.type != "cuda":
        print("torch_baseline: no CUDA device; timing on the CPU", file=sys.stderr)
    rows = matmul_rows() + conv_rows() + train_rows(folder)
    for r in rows:
        r["device"] = torch.cuda.get_device_name() if DEVICE.type == "cuda" else "cpu"
        r["torch"] = torch.__version__
    json.dump(rows, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
