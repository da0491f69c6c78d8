"""Writes the golden cases that `kernels-tests/golden.rs` checks wgml against.

Each case is one small model (one layer kind, activation or loss at a time, and the
seed models), a batch of inputs and targets, and what PyTorch computes for it in
float64 on the CPU: the loss, the forward output, every parameter's gradient, the
parameters (and batch-normalization statistics) after one SGD step and after one
Adam step, and the evaluation-mode prediction after the SGD step. The models are
real `torch.nn` modules, so the parameter names are PyTorch's own `state_dict` names
and the convolution, pooling and loss arithmetic is PyTorch's, written by other
people than wgml's twins; wgml's graph lowering, kernels and optimizers are checked
against it, not against themselves.

Where wgml follows Keras rather than PyTorch, the modules here do the same, each
saying so: 'same' padding puts the odd pixel bottom/right (TensorFlow's rule, also
for strides > 1), batch normalization's moving variance is the biased one, and its
momentum is Keras' (the weight of the old statistics). Dropout's mask is wgml's
documented hash (PCG, `shaders/dropout.wgsl`), recomputed here from the seed the
case gives the layer; the test first checks that wgml draws that very mask.

Every file is safetensors, every tensor float32 (inputs and initial weights are
drawn, rounded to float32, and only then promoted to float64, so both sides start
from the same numbers; results are rounded to float32 once, at the end):

    input, target               the batch (class labels as floats)
    init.<name>                 the initial parameters and statistics
    loss, output                the training-mode loss (mean) and forward output
    grad.<name>                 d loss / d parameter, at the initial parameters
    sgd.<name>, adam.<name>     every parameter and statistic after one step (but
                                tensors over 65,536 values: see run())
    predict                     evaluation-mode probabilities after the SGD step
    mask.<k>                    the k-th dropout layer's mask (1 kept, 0 dropped)

and the metadata holds the wgml model description (`architecture`, as wgml's own
checkpoints), the two optimizers (`sgd`, `adam`, wgml's JSON), the dropout seeds,
and the PyTorch version that computed it. Regenerate with

    pip install torch safetensors numpy
    python3 kernels-tests/golden/make_golden.py [CASE...]

(written with PyTorch 2.15.0 on CPU; naming cases writes only those); the files are
committed, so the test never needs Python. The transposed convolution is
`nn.ConvTranspose2d`, cropped as Keras crops 'same' (see KerasConvTranspose2d).
"""

import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT / "examples"))
from numpy_forward import find, read_idx  # noqa: E402

nn = torch.nn
# Tensors with more elements than this keep no after-step copies (see run()).
LARGE = 65536
SCE, BCE, MSE = "SparseCategoricalCrossentropy", "BinaryCrossentropy", "MeanSquaredError"
SGD = {"Sgd": {"lr": 0.1, "momentum": 0.9}}
# Adam's first step is lr * g / (|g| + eps): for a gradient much smaller than eps it
# is proportional to g, for one much larger it is lr * sign(g). With Keras' eps of
# 1e-7 a gradient of 1e-9, whose f32 rounding differs from float64's by 1e-10, would
# move its weight by lr * 1e-3 more or less, and the comparison would grade rounding,
# not arithmetic; eps = 1e-3 keeps both regimes in the cases and the step's
# sensitivity to a gradient error d at most lr * d / eps.
ADAM = {"Adam": {"lr": 0.01, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-3,
                 "epsilon_placement": "PyTorch"}}


# --- Keras conventions wgml follows, as torch modules --------------------------------

class KerasSameConv2d(nn.Conv2d):
    """Conv2d with Keras' 'same' padding: total padding max((ceil(h/s)-1)*s + k - h, 0),
    the odd pixel on the bottom/right (also for strides > 1)."""

    def forward(self, x):
        pads = []
        for size, k, s in zip(x.shape[2:], self.kernel_size, self.stride):
            out = -(-size // s)
            total = max((out - 1) * s + k - size, 0)
            pads.append((total // 2, total - total // 2))
        (top, bottom), (left, right) = pads
        return F.conv2d(F.pad(x, (left, right, top, bottom)), self.weight, self.bias, self.stride)


class KerasConvTranspose2d(nn.ConvTranspose2d):
    """ConvTranspose2d with Keras' padding: 'same' gives h*s outputs, the transpose
    of a 'same' convolution (its odd padding pixel at the bottom/right), so the full
    (h-1)*s + k output is cropped from the top/left by that convolution's top/left
    padding; 'valid' keeps the full output; explicit p is PyTorch's padding."""

    def __init__(self, *args, same=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.same = same

    def forward(self, x):
        y = super().forward(x)
        if not self.same:
            return y
        crops = []
        for size, k, s in zip(x.shape[2:], self.kernel_size, self.stride):
            out = size * s
            total = max((size - 1) * s + k - out, 0)
            crops.append((total // 2, out))
        (top, oh), (left, ow) = crops
        return y[:, :, top : top + oh, left : left + ow]


class KerasBatchNorm(nn.Module):
    """Batch normalization over the channel axis as Keras': batch statistics while
    training with the biased variance both for normalizing and for the moving
    variance; moving = momentum * moving + (1 - momentum) * batch. The state_dict
    names are nn.BatchNorm's (weight, bias, running_mean, running_var)."""

    def __init__(self, channels, momentum=0.99, eps=1e-3):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))
        self.momentum, self.eps = momentum, eps

    def forward(self, x):
        axes = [0] + list(range(2, x.dim()))
        view = [1, -1] + [1] * (x.dim() - 2)
        if self.training:
            mean = x.mean(dim=axes)
            var = x.var(dim=axes, unbiased=False)
            with torch.no_grad():
                self.running_mean.mul_(self.momentum).add_((1 - self.momentum) * mean)
                self.running_var.mul_(self.momentum).add_((1 - self.momentum) * var)
        else:
            mean, var = self.running_mean, self.running_var
        return (x - mean.view(view)) / torch.sqrt(var.view(view) + self.eps) * \
            self.weight.view(view) + self.bias.view(view)


class PositionEmbedding(nn.Module):
    """wgml's AddPositionEmbedding: a learned [tokens, features] `weight` added to
    every sample (keras_hub's PositionEmbedding followed by Add)."""

    def __init__(self, tokens, features):
        super().__init__()
        self.weight = nn.Parameter(torch.rand(tokens, features) - 0.5)

    def forward(self, x):
        return x + self.weight


class KerasMultiHeadAttention(nn.Module):
    """Keras' MultiHeadAttention as self-attention, with its projections as
    nn.Linear submodules named as wgml names them (query, key, value, output). The
    heads are the projections' columns in order (head h owns h*dim ... h*dim+dim-1,
    Keras' [features, heads, dim] kernel flattened); scores are q.k/sqrt(key_dim);
    the causal mask is top-left aligned (token i sees tokens j <= i)."""

    def __init__(self, features, heads, key_dim, value_dim, bias, causal):
        super().__init__()
        self.query = nn.Linear(features, heads * key_dim, bias=bias)
        self.key = nn.Linear(features, heads * key_dim, bias=bias)
        self.value = nn.Linear(features, heads * value_dim, bias=bias)
        self.output = nn.Linear(heads * value_dim, features, bias=bias)
        self.heads, self.key_dim, self.value_dim, self.causal = heads, key_dim, value_dim, causal

    def forward(self, x):
        b, t, _ = x.shape
        split = lambda y, d: y.view(b, t, self.heads, d).transpose(1, 2)  # noqa: E731
        q = split(self.query(x), self.key_dim)
        k = split(self.key(x), self.key_dim)
        v = split(self.value(x), self.value_dim)
        scores = q @ k.transpose(2, 3) / self.key_dim ** 0.5
        if self.causal:
            future = torch.ones(t, t, dtype=torch.bool).triu(1)
            scores = scores.masked_fill(future, float("-inf"))
        heads = torch.softmax(scores, dim=-1) @ v
        return self.output(heads.transpose(1, 2).reshape(b, t, self.heads * self.value_dim))


class IdEmbedding(nn.Embedding):
    """nn.Embedding reading the ids as wgml does: float values of whole numbers."""

    def forward(self, x):
        return super().forward(x.long())


class Permute(nn.Module):
    """Keras' Permute(dims): 1-based axes of a sample, the batch axis kept first."""

    def __init__(self, dims):
        super().__init__()
        self.dims = [0] + list(dims)

    def forward(self, x):
        return x.permute(*self.dims)


class GlobalAveragePooling1D(nn.Module):
    """The mean over the tokens of [batch, tokens, features]."""

    def forward(self, x):
        return x.mean(dim=1)


def pcg_hash(v):
    state = (v * 747796405 + 2891336453) & 0xFFFFFFFF
    word = (((state >> ((state >> 28) + 4)) ^ state) * 277803737) & 0xFFFFFFFF
    return (word >> 22) ^ word


class HashDropout(nn.Module):
    """wgml's dropout at training step 1: element i (of the whole batch, row-major) is
    kept when the top 24 bits of pcg_hash(i ^ pcg_hash(seed ^ pcg_hash(1))) are at
    least round(rate * 2^24); kept ones are scaled by 1 / (1 - rate)."""

    def __init__(self, rate, seed):
        super().__init__()
        self.rate, self.seed = rate, seed
        self.mask = None

    def forward(self, x):
        if not self.training:
            return x
        threshold = round(self.rate * (1 << 24))
        stream = pcg_hash(self.seed ^ pcg_hash(1))
        keep = [(pcg_hash(i ^ stream) >> 8) >= threshold for i in range(x.numel())]
        self.mask = torch.tensor(keep, dtype=x.dtype).view(x.shape)
        return x * self.mask / (1 - self.rate)


# --- wgml layer descriptions to torch modules ----------------------------------------

ACTIVATIONS = {"Relu": nn.ReLU, "Sigmoid": nn.Sigmoid, "Tanh": nn.Tanh, "Gelu": nn.GELU}


def pair(v):
    return tuple(v) if isinstance(v, (list, tuple)) else (v, v)


def build(input_shape, layers, loss, dropout_seeds):
    """The torch.nn.Sequential of a wgml layer list, laid out as wgml names its
    parameters: every non-linear activation a module of its own, a final softmax or
    sigmoid left to the loss."""
    modules, shape, seeds = [], list(input_shape), list(dropout_seeds)
    for i, layer in enumerate(layers):
        last = i + 1 == len(layers)
        kind, spec = (layer, {}) if isinstance(layer, str) else next(iter(layer.items()))
        act = spec.get("activation", "Linear") if isinstance(spec, dict) else spec
        if kind == "Dense":
            # On a sequence [tokens, features], per token (as Keras' Dense).
            modules.append(nn.Linear(shape[-1], spec["units"], bias=spec.get("use_bias", True)))
            shape = shape[:-1] + [spec["units"]]
        elif kind == "AddPositionEmbedding":
            modules.append(PositionEmbedding(*shape))
        elif kind == "MultiHeadAttention":
            key_dim = spec["key_dim"]
            modules.append(KerasMultiHeadAttention(
                shape[-1], spec["num_heads"], key_dim, spec.get("value_dim", key_dim),
                spec.get("use_bias", True), spec.get("causal", False)))
        elif kind == "LayerNormalization":
            modules.append(nn.LayerNorm(shape[-1], eps=spec.get("epsilon", 1e-3)))
        elif kind == "Embedding":
            modules.append(IdEmbedding(spec["input_dim"], spec["output_dim"]))
            shape = shape + [spec["output_dim"]]
        elif kind == "Permute":
            modules.append(Permute(spec["dims"]))
            shape = [shape[d - 1] for d in spec["dims"]]
        elif kind == "GlobalAveragePooling1D":
            modules.append(GlobalAveragePooling1D())
            shape = shape[-1:]
        elif kind == "Conv2D":
            k, s = pair(spec["kernel"]), pair(spec.get("stride", 1))
            padding = spec.get("padding", "Valid")
            if padding == "Same":
                conv = KerasSameConv2d(shape[0], spec["filters"], k, s, bias=spec.get("use_bias", True))
                oh, ow = -(-shape[1] // s[0]), -(-shape[2] // s[1])
            else:
                p = (0, 0) if padding == "Valid" else tuple(padding["Explicit"])
                conv = nn.Conv2d(shape[0], spec["filters"], k, s, p, bias=spec.get("use_bias", True))
                oh = (shape[1] + 2 * p[0] - k[0]) // s[0] + 1
                ow = (shape[2] + 2 * p[1] - k[1]) // s[1] + 1
            modules.append(conv)
            shape = [spec["filters"], oh, ow]
        elif kind == "Conv2DTranspose":
            k, s = pair(spec["kernel"]), pair(spec.get("stride", 1))
            padding = spec.get("padding", "Valid")
            bias = spec.get("use_bias", True)
            if padding == "Same":
                conv = KerasConvTranspose2d(shape[0], spec["filters"], k, s, bias=bias, same=True)
                oh, ow = shape[1] * s[0], shape[2] * s[1]
            else:
                p = (0, 0) if padding == "Valid" else tuple(padding["Explicit"])
                conv = KerasConvTranspose2d(shape[0], spec["filters"], k, s, p, bias=bias)
                oh = (shape[1] - 1) * s[0] + k[0] - 2 * p[0]
                ow = (shape[2] - 1) * s[1] + k[1] - 2 * p[1]
            modules.append(conv)
            shape = [spec["filters"], oh, ow]
        elif kind in ("MaxPool2D", "AvgPool2D"):
            k, s = pair(spec["pool"]), pair(spec["stride"])
            cls = nn.MaxPool2d if kind == "MaxPool2D" else nn.AvgPool2d
            modules.append(cls(k, s))
            shape = [shape[0], (shape[1] - k[0]) // s[0] + 1, (shape[2] - k[1]) // s[1] + 1]
        elif kind == "Flatten":
            modules.append(nn.Flatten())
            shape = [int(np.prod(shape))]
        elif kind == "GlobalAveragePooling2D":
            modules += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
            shape = [shape[0]]
        elif kind == "BatchNormalization":
            modules.append(KerasBatchNorm(shape[0], spec.get("momentum", 0.99), spec.get("epsilon", 1e-3)))
        elif kind == "Dropout":
            modules.append(HashDropout(spec["rate"], seeds.pop(0)))
        elif kind != "Activation":
            raise ValueError(f"layer kind {kind}")
        if last and (act, loss) in (("Softmax", SCE), ("Sigmoid", BCE)):
            modules.append(nn.Identity())  # folded into the loss, as wgml does
        elif act in ACTIVATIONS:
            modules.append(ACTIVATIONS[act]())
        elif act != "Linear":
            raise ValueError(f"activation {act}")
    return nn.Sequential(*modules)


def f32(t):
    """Rounds to float32 and back: both sides start from the same numbers."""
    return t.float().double()


def loss_of(loss, out, target):
    if loss == "SparseCategoricalCrossentropy":
        return F.cross_entropy(out, target.long())
    if loss == "BinaryCrossentropy":
        return F.binary_cross_entropy_with_logits(out, target)
    return F.mse_loss(out, target)


def probabilities(loss, out):
    if loss == "SparseCategoricalCrossentropy":
        return torch.softmax(out, dim=1)
    if loss == "BinaryCrossentropy":
        return torch.sigmoid(out)
    return out


def run(case):
    torch.manual_seed(case["seed"])
    model = build(case["input_shape"], case["layers"], case["loss"], case.get("dropout_seeds", [])).double()
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if name.endswith(("running_mean",)):
                t.copy_(torch.rand(t.shape, dtype=t.dtype) - 0.5)
            elif name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, dtype=t.dtype) + 0.5)
            elif isinstance(dict(model.named_modules()).get(name.rsplit(".", 1)[0]), KerasBatchNorm):
                t.copy_(torch.rand(t.shape, dtype=t.dtype) + (0.5 if name.endswith("weight") else -0.5))
            t.copy_(f32(t))
    n = case["batch"]
    x = case.get("input")
    if x is None:
        x = torch.randn([n] + case["input_shape"], dtype=torch.float64)
    x = f32(x)
    loss_name = case["loss"]
    if loss_name == "SparseCategoricalCrossentropy":
        classes = case["layers"][-1]["Dense"]["units"]
        target = case.get("target", torch.randint(0, classes, (n,))).double()
    elif loss_name == "BinaryCrossentropy":
        target = torch.randint(0, 2, (n, case["layers"][-1]["Dense"]["units"])).double()
    else:
        target = f32(torch.randn(n, case["layers"][-1]["Dense"]["units"], dtype=torch.float64))
    init = {k: v.clone() for k, v in model.state_dict().items()}
    out = {"input": x, "target": target}
    out.update({f"init.{k}": v for k, v in init.items()})

    def step(optimizer_spec):
        model.load_state_dict(init)
        model.train()
        params = [p for p in model.parameters()]
        if "Sgd" in optimizer_spec:
            s = optimizer_spec["Sgd"]
            opt = torch.optim.SGD(params, lr=s["lr"], momentum=s["momentum"])
        else:
            a = optimizer_spec["Adam"]
            opt = torch.optim.Adam(params, lr=a["lr"], betas=(a["beta1"], a["beta2"]), eps=a["epsilon"])
        opt.zero_grad()
        y = model(x)
        loss = loss_of(loss_name, y, target)
        loss.backward()
        grads = {name: p.grad.clone() for name, p in model.named_parameters()}
        opt.step()
        return y.detach(), loss.detach(), grads, {k: v.clone() for k, v in model.state_dict().items()}

    y, loss, grads, after_sgd = step(SGD)
    out["output"], out["loss"] = y, loss.reshape(1)
    out.update({f"grad.{k}": v for k, v in grads.items()})
    out.update({f"sgd.{k}": v for k, v in after_sgd.items()})
    for k, m in enumerate(m for m in model if isinstance(m, HashDropout)):
        out[f"mask.{k}"] = m.mask
    model.eval()
    with torch.no_grad():
        out["predict"] = probabilities(loss_name, model(x))
    _, loss_adam, _, after_adam = step(ADAM)
    assert torch.equal(loss_adam, loss)
    out.update({f"adam.{k}": v for k, v in after_adam.items()})
    # The seed models' large weight matrices are kept once (init and grad): after
    # one step they are PyTorch's first-step formulas of those two, which the test
    # applies in float64 (SGD: w - lr*g; Adam: w - lr*g/(|g| + eps)).
    big = [k for k in out if k.startswith(("sgd.", "adam.")) and out[k].numel() > LARGE]
    return {k: v.float().contiguous() for k, v in out.items()
            if "num_batches_tracked" not in k and k not in big}


def dense(units, activation="Linear", **kw):
    return {"Dense": {"units": units, "activation": activation, **kw}}


def conv(filters, kernel, activation="Linear", **kw):
    return {"Conv2D": {"filters": filters, "kernel": pair(kernel), "activation": activation, **kw}}


def transpose(filters, kernel, stride, padding, activation="Linear", **kw):
    return {"Conv2DTranspose": {"filters": filters, "kernel": pair(kernel), "stride": pair(stride),
                                "padding": padding, "activation": activation, **kw}}


def mnist(n):
    folder = ROOT / "data" / "mnist-10k"
    images = read_idx(find(folder, "train-images-idx3-ubyte"))[:n] / 255.0
    labels = read_idx(find(folder, "train-labels-idx1-ubyte"))[:n]
    return torch.tensor(images, dtype=torch.float64).unsqueeze(1), torch.tensor(labels.astype("int64"))


def cases():
    images, labels = mnist(8)
    img = [2, 7, 6]  # channels, height, width of the small convolution cases
    return [
        # Dense with every activation, and every loss.
        dict(name="dense_relu_sce", input_shape=[6], batch=5, loss=SCE,
             layers=[dense(7, "Relu"), dense(4, "Softmax")]),
        dict(name="dense_sigmoid_bce", input_shape=[5], batch=6, loss=BCE,
             layers=[dense(6, "Sigmoid"), dense(1, "Sigmoid")]),
        dict(name="dense_tanh_mse", input_shape=[4], batch=5, loss=MSE,
             layers=[dense(5, "Tanh"), dense(3)]),
        dict(name="dense_multilabel_bce", input_shape=[5], batch=4, loss=BCE,
             layers=[dense(6, "Relu"), dense(3, "Sigmoid")]),
        dict(name="dense_no_bias_activation_layers", input_shape=[6], batch=4, loss=SCE,
             layers=[dense(5, use_bias=False), {"Activation": "Tanh"}, dense(5),
                     {"Activation": "Sigmoid"}, dense(3, "Softmax")]),
        # Conv2D: each padding, strides, no bias.
        dict(name="conv_valid", input_shape=img, batch=3, loss=SCE,
             layers=[conv(3, 3, "Relu"), "Flatten", dense(4, "Softmax")]),
        dict(name="conv_same", input_shape=img, batch=3, loss=SCE,
             layers=[conv(3, 3, "Relu", padding="Same"), "Flatten", dense(4, "Softmax")]),
        dict(name="conv_same_stride2_even_kernel", input_shape=img, batch=3, loss=SCE,
             layers=[conv(4, (2, 4), "Tanh", padding="Same", stride=(2, 2)), "Flatten", dense(3, "Softmax")]),
        dict(name="conv_explicit_padding_stride", input_shape=img, batch=2, loss=MSE,
             layers=[conv(3, (3, 2), padding={"Explicit": [1, 2]}, stride=(2, 1)), "Flatten", dense(2)]),
        dict(name="conv_no_bias_stacked", input_shape=img, batch=2, loss=SCE,
             layers=[conv(3, 2, "Relu", use_bias=False), conv(2, 3, "Sigmoid"), "Flatten", dense(3, "Softmax")]),
        # Pools, Flatten, global average pooling.
        dict(name="max_pool", input_shape=img, batch=3, loss=SCE,
             layers=[conv(3, 2, "Relu"), {"MaxPool2D": {"pool": [2, 2], "stride": [2, 2]}}, "Flatten",
                     dense(3, "Softmax")]),
        dict(name="max_pool_overlapping", input_shape=img, batch=2, loss=MSE,
             layers=[{"MaxPool2D": {"pool": [3, 2], "stride": [2, 1]}}, "Flatten", dense(2)]),
        dict(name="avg_pool", input_shape=img, batch=3, loss=SCE,
             layers=[conv(3, 2, "Tanh"), {"AvgPool2D": {"pool": [2, 2], "stride": [2, 2]}}, "Flatten",
                     dense(3, "Softmax")]),
        dict(name="avg_pool_overlapping", input_shape=img, batch=2, loss=MSE,
             layers=[{"AvgPool2D": {"pool": [2, 3], "stride": [1, 2]}}, "Flatten", dense(2)]),
        dict(name="global_average_pooling", input_shape=img, batch=3, loss=SCE,
             layers=[conv(4, 3, "Relu"), "GlobalAveragePooling2D", dense(3, "Softmax")]),
        # Batch normalization after Dense (1-D) and Conv2D (2-D), with a folded activation.
        dict(name="batch_norm_dense", input_shape=[5], batch=6, loss=SCE,
             layers=[dense(6, use_bias=False), {"BatchNormalization": {"momentum": 0.9, "epsilon": 1e-3}},
                     {"Activation": "Relu"}, dense(3, "Softmax")]),
        dict(name="batch_norm_conv", input_shape=img, batch=3, loss=MSE,
             layers=[conv(3, 3, use_bias=False), {"BatchNormalization": {"momentum": 0.8, "epsilon": 1e-2}},
                     {"Activation": "Tanh"}, "Flatten", dense(2)]),
        # Dropout, with the mask of wgml's hash.
        dict(name="dropout", input_shape=[8], batch=6, loss=SCE, dropout_seeds=[12345],
             layers=[dense(10, "Relu"), {"Dropout": {"rate": 0.4}}, dense(3, "Softmax")]),
        # The seed models, on real digits.
        dict(name="seed_cnn", input_shape=[1, 28, 28], batch=8, loss=SCE, input=images, target=labels,
             layers=[conv(32, 3, "Relu"), {"MaxPool2D": {"pool": [2, 2], "stride": [2, 2]}}, "Flatten",
                     dense(64, "Relu"), dense(10, "Softmax")]),
        dict(name="seed_mlp", input_shape=[1, 28, 28], batch=8, loss=SCE, input=images, target=labels,
             layers=["Flatten", dense(128, "Relu"), dense(10, "Softmax")]),
        # Transposed convolutions: 'same' with stride 2 (an odd kernel and an even one),
        # 'valid', explicit padding, with and without bias.
        dict(name="conv_transpose", input_shape=[2, 3, 4], batch=3, loss=SCE,
             layers=[transpose(3, 3, 2, "Same", "Relu"), transpose(2, 2, 2, "Same", "Tanh"),
                     transpose(2, 2, 1, "Valid", use_bias=False), transpose(1, 3, 1, {"Explicit": [1, 2]}),
                     "Flatten", dense(3, "Softmax")]),
        # Transformer layers: learned positions, self-attention (value_dim != key_dim),
        # layer normalization, per-token Dense, mean over tokens; then causal attention
        # without biases.
        dict(name="transformer_encoder", input_shape=[5, 8], batch=3, loss=SCE,
             layers=[{"AddPositionEmbedding": {}},
                     {"MultiHeadAttention": {"num_heads": 2, "key_dim": 3, "value_dim": 4}},
                     {"LayerNormalization": {}}, dense(6, "Tanh"), "GlobalAveragePooling1D",
                     dense(3, "Softmax")]),
        dict(name="transformer_causal", input_shape=[4, 6], batch=2, loss=MSE,
             layers=[{"MultiHeadAttention": {"num_heads": 3, "key_dim": 2, "use_bias": False,
                                             "causal": True}},
                     {"LayerNormalization": {"epsilon": 1e-5}}, "GlobalAveragePooling1D", dense(2)]),
        # The exact GELU after a convolution, a Dense and a batch normalization (where
        # it cannot fold into the normalization's kernel).
        dict(name="gelu", input_shape=img, batch=3, loss=SCE,
             layers=[conv(3, 3, "Gelu"), "Flatten", dense(5, "Gelu", use_bias=False),
                     {"BatchNormalization": {"momentum": 0.9}}, {"Activation": "Gelu"},
                     dense(3, "Softmax")]),
        # Permute: a conv's channels moved last (two swaps on the GPU), so Flatten
        # reads them channels-last.
        dict(name="permute", input_shape=img, batch=3, loss=SCE,
             layers=[conv(3, 2, "Tanh"), {"Permute": {"dims": [2, 3, 1]}}, "Flatten",
                     dense(3, "Softmax")]),
        # Embedding: 6 token ids per sample (repeats, and ids no sample uses) into
        # rows of 4, then attention over the tokens.
        dict(name="embedding", input_shape=[6], batch=3, loss=SCE,
             input=torch.tensor([[0, 3, 3, 6, 1, 0], [5, 5, 5, 2, 0, 6], [1, 2, 3, 1, 2, 3]]).double(),
             layers=[{"Embedding": {"input_dim": 9, "output_dim": 4}},
                     {"MultiHeadAttention": {"num_heads": 2, "key_dim": 2}},
                     "GlobalAveragePooling1D", dense(3, "Softmax")]),
    ]


def main():
    """Writes every case, or only those named on the command line (the others keep
    the files an earlier torch wrote)."""
    torch.set_default_dtype(torch.float64)
    wanted = set(sys.argv[1:])
    for seed, case in enumerate(cases(), start=1):
        if wanted and case["name"] not in wanted:
            continue
        case["seed"] = seed
        tensors = run(case)
        architecture = {
            "model": {"input_shape": case["input_shape"], "layers": case["layers"]},
            "loss": case["loss"],
            "optimizer": SGD,
        }
        metadata = {
            "architecture": json.dumps(architecture),
            "sgd": json.dumps(SGD),
            "adam": json.dumps(ADAM),
            "dropout_seeds": json.dumps(case.get("dropout_seeds", [])),
            "batch": str(case["batch"]),
            "generator": f"kernels-tests/golden/make_golden.py, torch {torch.__version__}, float64 on CPU",
        }
        path = HERE / f"{case['name']}.safetensors"
        save_file(tensors, str(path), metadata=metadata)
        print(f"{path.name}: loss {tensors['loss'].item():.6f}, {len(tensors)} tensors, "
              f"{path.stat().st_size} bytes")


if __name__ == "__main__":
    main()
