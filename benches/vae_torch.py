"""The VAE of `wgml train --model vae` in PyTorch, for issue 16's comparison: the
same model (784 -> 512 relu -> mean, log_var (latent) ; z = mean + exp(log_var/2) eps
-> 512 relu -> 784 logits), initialisers (Glorot-uniform weights, zero biases),
data (mnist-10k: 8,000 train / 2,000 test, pixels / 255), loss (BCE summed over
pixels + KL, averaged over the batch), optimizer (Adam, lr 1e-3, eps 1e-7 as
Keras'), batch 128, shuffled epochs. Prints one JSON line per seed with every
epoch's train terms and the final test terms (a fresh eps per test batch, as wgml).

    python3 benches/vae_torch.py EPOCHS SEEDS... > OUT/torch-vae.jsonl
    VAE=conv python3 benches/vae_torch.py EPOCHS SEEDS... > OUT/torch-conv-vae.jsonl

With VAE=conv, the convolutional VAE of `examples/models/conv_vae.json` (Keras'
example): Conv2D 32 and 64 (3x3, stride 2, 'same', relu) -> Dense 16 relu -> mean,
log_var (2); Dense 3136 relu -> [64, 7, 7] -> Conv2DTranspose 64 and 32 (3x3,
stride 2, 'same', relu) -> Conv2DTranspose 1 (3x3, 'same') logits. 'same' is
TensorFlow's (the odd padding pixel at the bottom/right), which PyTorch's symmetric
padding cannot express: the stride-2 convolutions pad by hand and the stride-2
transposed ones crop their (2H + 1)-pixel output to 2H, so both engines compute the
same function.
"""

import os

import gzip
import json
import struct
import sys

import numpy as np
import torch
from torch import nn

torch.set_num_threads(2)


def idx(path):
    with gzip.open(path) as f:
        data = f.read()
    dims = data[3]
    shape = struct.unpack(">" + "I" * dims, data[4 : 4 + 4 * dims])
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)


class Vae(nn.Module):
    def __init__(self, latent=2, hidden=512, d=784):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(d, hidden), nn.ReLU())
        self.mean = nn.Linear(hidden, latent)
        self.log_var = nn.Linear(hidden, latent)
        self.decoder = nn.Sequential(nn.Linear(latent, hidden), nn.ReLU(), nn.Linear(hidden, d))
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def terms(self, x):
        h = self.encoder(x)
        mean, log_var = self.mean(h), self.log_var(h)
        z = mean + torch.exp(0.5 * log_var) * torch.randn_like(mean)
        logits = self.decoder(z)
        rec = nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(1)
        kl = -0.5 * (1 + log_var - mean**2 - log_var.exp()).sum(1)
        return rec, kl


class ConvVae(nn.Module):
    def __init__(self, latent=2):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, stride=2)
        self.conv2 = nn.Conv2d(32, 64, 3, stride=2)
        self.dense = nn.Linear(64 * 7 * 7, 16)
        self.mean = nn.Linear(16, latent)
        self.log_var = nn.Linear(16, latent)
        self.up = nn.Linear(latent, 64 * 7 * 7)
        self.t1 = nn.ConvTranspose2d(64, 64, 3, stride=2)
        self.t2 = nn.ConvTranspose2d(64, 32, 3, stride=2)
        self.t3 = nn.ConvTranspose2d(32, 1, 3, padding=1)
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.ConvTranspose2d):
                # Keras' kernel (kh, kw, out, in): fan in kh*kw*out, fan out kh*kw*in.
                fan_in = 9 * m.out_channels
                fan_out = 9 * m.in_channels
                bound = (6 / (fan_in + fan_out)) ** 0.5
                nn.init.uniform_(m.weight, -bound, bound)
                nn.init.zeros_(m.bias)

    def terms(self, x):
        img = x.view(-1, 1, 28, 28)
        relu = nn.functional.relu
        pad = nn.functional.pad
        h = relu(self.conv1(pad(img, (0, 1, 0, 1))))
        h = relu(self.conv2(pad(h, (0, 1, 0, 1))))
        h = relu(self.dense(h.flatten(1)))
        mean, log_var = self.mean(h), self.log_var(h)
        z = mean + torch.exp(0.5 * log_var) * torch.randn_like(mean)
        d = relu(self.up(z)).view(-1, 64, 7, 7)
        d = relu(self.t1(d)[:, :, :14, :14])
        d = relu(self.t2(d)[:, :, :28, :28])
        logits = self.t3(d).flatten(1)
        rec = nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(1)
        kl = -0.5 * (1 + log_var - mean**2 - log_var.exp()).sum(1)
        return rec, kl


def main():
    epochs = int(sys.argv[1])
    seeds = [int(s) for s in sys.argv[2:]] or [1, 2, 3]
    x = torch.from_numpy(idx("data/mnist-10k/train-images-idx3-ubyte.gz").reshape(-1, 784).astype(np.float32) / 255)
    t = torch.from_numpy(idx("data/mnist-10k/t10k-images-idx3-ubyte.gz").reshape(-1, 784).astype(np.float32) / 255)
    for seed in seeds:
        torch.manual_seed(seed)
        model = ConvVae() if os.environ.get("VAE") == "conv" else Vae()
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
        history = []
        for _ in range(epochs):
            order = torch.randperm(len(x))
            sums = [0.0, 0.0]
            for i in range(0, len(x), 128):
                b = x[order[i : i + 128]]
                rec, kl = model.terms(b)
                loss = (rec + kl).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
                sums[0] += rec.sum().item()
                sums[1] += kl.sum().item()
            history.append({"reconstruction": sums[0] / len(x), "kl": sums[1] / len(x)})
        with torch.no_grad():
            rec, kl = zip(*(model.terms(t[i : i + 256]) for i in range(0, len(t), 256)))
            test = {"reconstruction": torch.cat(rec).mean().item(), "kl": torch.cat(kl).mean().item()}
        test["total"] = test["reconstruction"] + test["kl"]
        print(json.dumps({"seed": seed, "epochs": history, "test": test}), flush=True)


main()
