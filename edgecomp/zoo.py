"""A zoo of edge vision architectures at microcontroller sizes, written from their papers (no
downloads): the integration test of the operator coverage (tests/test_zoo.py) and the models of
the coverage benchmark (bench/coverage.py).

Every model is a ``torch.nn.Module`` with random weights made well-conditioned by LSUV
(layer-sequential unit variance: each conv/linear rescaled in forward order so its output has
unit variance on random inputs, Mishkin & Matas 2016), 3 input channels, 10 classes.
``ZOO`` maps a name to a :class:`ZooModel` (builder, input size, what the model exercises, how
its "top-1" is read from the output).

- ``mobilenetv3_small``: MobileNetV3-Small (Howard et al. 2019, table 2): bneck blocks with
  squeeze-excite (hard-sigmoid gate), HardSwish, width multiplier 0.5 by default.
- ``efficientnet_mbconv``: EfficientNet-B0 stages (Tan & Le 2019, table 1), MBConv with SiLU and
  squeeze-excite (sigmoid gate), width 0.5, one block per stage.
- ``shufflenetv2``: ShuffleNetV2 0.5x units (Ma et al. 2018, fig. 3 c/d): channel split,
  reshape-transpose-reshape channel shuffle, concat; ReduceMean global pool.
- ``squeezenet``: SqueezeNet fire modules (Iandola et al. 2016) at half width, MaxPool with
  ``ceil_mode`` at odd sizes where it changes the output size.
- ``regnet``: RegNetX blocks (Radosavovic et al. 2020): 1x1, 3x3 grouped (group width 8), 1x1,
  residual; RegNetX-200MF widths for three stages.
- ``mnasnet``: MNASNet-A1 (Tan et al. 2019, fig. 7): SepConv, MBConv3/6 with squeeze-excite,
  ReLU, ReduceMean pool; width 0.5, one block per stage.
- ``tiny_detector``: a YOLO-style two-scale head (Redmon & Farhadi 2018) on a small backbone:
  sigmoid box/objectness/class maps, flattened and concatenated over the scales.
- (tests/zoo_tflite.py) a Keras-style int8 TFLite network: PAD, HARD_SWISH, MEAN, against TFLM.
- ``encoder_decoder``: a small U-Net-like segmenter (Ronneberger et al. 2015): strided convs down,
  ConvTranspose and nearest Resize up, skip by concat; 10 classes per pixel.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def _div8(v: float, divisor: int = 8) -> int:
    """Channels rounded to a multiple of 8, never below 90 % of ``v`` (the MobileNet rule)."""
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


def conv_bn(cin: int, cout: int, k: int, s: int = 1, groups: int = 1, act: type | None = nn.ReLU) -> nn.Sequential:
    layers = [nn.Conv2d(cin, cout, k, s, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


class SqueezeExcite(nn.Module):
    """Global pool -> 1x1 reduce -> act -> 1x1 expand -> gate, multiplied into the input (Hu et al.)."""

    def __init__(self, c: int, squeeze: int, act=nn.ReLU, gate=nn.Sigmoid, pool: str = "adaptive"):
        super().__init__()
        self.pool = pool
        self.fc1, self.act = nn.Conv2d(c, squeeze, 1), act()
        self.fc2, self.gate = nn.Conv2d(squeeze, c, 1), gate()

    def forward(self, x):
        s = F.adaptive_avg_pool2d(x, 1) if self.pool == "adaptive" else x.mean((2, 3), keepdim=True)
        return x * self.gate(self.fc2(self.act(self.fc1(s))))


class InvertedResidual(nn.Module):
    """MobileNetV2/V3, MNASNet and EfficientNet's MBConv: expand 1x1, depthwise kxk, [SE], project 1x1."""

    def __init__(self, cin, exp, cout, k, s, act=nn.ReLU, se: int = 0, se_kw: dict | None = None):
        super().__init__()
        layers = [] if exp == cin else [conv_bn(cin, exp, 1, act=act)]
        layers.append(conv_bn(exp, exp, k, s, groups=exp, act=act))
        if se:
            layers.append(SqueezeExcite(exp, se, **(se_kw or {})))
        layers.append(conv_bn(exp, cout, 1, act=None))
        self.block = nn.Sequential(*layers)
        self.residual = s == 1 and cin == cout

    def forward(self, x):
        y = self.block(x)
        return x + y if self.residual else y


# ---- MobileNetV3-Small ---------------------------------------------------------------------------
# (kernel, expansion, out, SE, activation, stride) from the paper's table 2
_MNV3_SMALL = [(3, 16, 16, True, "RE", 2), (3, 72, 24, False, "RE", 2), (3, 88, 24, False, "RE", 1),
               (5, 96, 40, True, "HS", 2), (5, 240, 40, True, "HS", 1), (5, 240, 40, True, "HS", 1),
               (5, 120, 48, True, "HS", 1), (5, 144, 48, True, "HS", 1), (5, 288, 96, True, "HS", 2),
               (5, 576, 96, True, "HS", 1), (5, 576, 96, True, "HS", 1)]


class MobileNetV3Small(nn.Module):
    def __init__(self, width: float = 0.5, classes: int = 10, last: int = 1024):
        super().__init__()
        c = _div8(16 * width)
        layers = [conv_bn(3, c, 3, 2, act=nn.Hardswish)]
        for k, e, o, se, a, s in _MNV3_SMALL:
            exp, out = _div8(e * width), _div8(o * width)
            act = nn.ReLU if a == "RE" else nn.Hardswish
            layers.append(InvertedResidual(c, exp, out, k, s, act, se=_div8(exp / 4) if se else 0,
                                           se_kw=dict(gate=nn.Hardsigmoid)))
            c = out
        exp = _div8(576 * width)
        layers.append(conv_bn(c, exp, 1, act=nn.Hardswish))
        self.features = nn.Sequential(*layers)
        last = _div8(last * width)
        self.head = nn.Sequential(nn.Conv2d(exp, last, 1), nn.Hardswish(), nn.Conv2d(last, classes, 1))

    def forward(self, x):
        x = F.adaptive_avg_pool2d(self.features(x), 1)
        return self.head(x).flatten(1)


# ---- EfficientNet-B0 MBConv ----------------------------------------------------------------------
# (expansion, kernel, stride, out) per stage of table 1 (one block each at MCU depth)
_EFFNET_B0 = [(1, 3, 1, 16), (6, 3, 2, 24), (6, 5, 2, 40), (6, 3, 2, 80), (6, 5, 1, 112), (6, 5, 2, 192),
              (6, 3, 1, 320)]


class EfficientNetMBConv(nn.Module):
    def __init__(self, width: float = 0.5, classes: int = 10, head: int = 320):
        super().__init__()
        c = _div8(32 * width)
        layers = [conv_bn(3, c, 3, 2, act=nn.SiLU)]
        for e, k, s, o in _EFFNET_B0:
            out = _div8(o * width)
            layers.append(InvertedResidual(c, c * e, out, k, s, nn.SiLU, se=max(1, c // 4),
                                           se_kw=dict(act=nn.SiLU, gate=nn.Sigmoid)))
            c = out
        layers.append(conv_bn(c, head, 1, act=nn.SiLU))
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(head, classes)

    def forward(self, x):
        return self.fc(F.adaptive_avg_pool2d(self.features(x), 1).flatten(1))


# ---- ShuffleNetV2 --------------------------------------------------------------------------------
def channel_shuffle(x, groups: int = 2):
    n, c, h, w = x.shape
    return x.reshape(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class ShuffleUnit(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.stride = stride
        half = cout // 2
        if stride == 2:
            self.left = nn.Sequential(conv_bn(cin, cin, 3, 2, groups=cin, act=None), conv_bn(cin, half, 1))
            bin_ = cin
        else:
            bin_ = half
        self.right = nn.Sequential(conv_bn(bin_, half, 1), conv_bn(half, half, 3, stride, groups=half, act=None),
                                   conv_bn(half, half, 1))

    def forward(self, x):
        if self.stride == 1:
            a, b = x.chunk(2, dim=1)
            out = torch.cat([a, self.right(b)], 1)
        else:
            out = torch.cat([self.left(x), self.right(x)], 1)
        return channel_shuffle(out)


class ShuffleNetV2(nn.Module):
    def __init__(self, stages=(48, 96, 192), repeats=(2, 2, 2), classes: int = 10, last: int = 256):
        super().__init__()
        layers = [conv_bn(3, 24, 3, 2), nn.MaxPool2d(3, 2, 1)]
        c = 24
        for width, n in zip(stages, repeats):
            for i in range(n):
                layers.append(ShuffleUnit(c, width, 2 if i == 0 else 1))
                c = width
        layers.append(conv_bn(c, last, 1))
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(last, classes)

    def forward(self, x):
        return self.fc(self.features(x).mean((2, 3)))


# ---- SqueezeNet ----------------------------------------------------------------------------------
class Fire(nn.Module):
    def __init__(self, cin: int, squeeze: int, e1: int, e3: int):
        super().__init__()
        self.squeeze = nn.Conv2d(cin, squeeze, 1)
        self.e1, self.e3 = nn.Conv2d(squeeze, e1, 1), nn.Conv2d(squeeze, e3, 3, padding=1)

    def forward(self, x):
        s = F.relu(self.squeeze(x))
        return torch.cat([F.relu(self.e1(s)), F.relu(self.e3(s))], 1)


class SqueezeNet(nn.Module):
    """SqueezeNet v1.1 layout at half width; the stem is padded so that every ceil-mode pool
    (48 -> 24 -> 12 -> 6) rounds up where floor would not."""

    def __init__(self, classes: int = 10):
        super().__init__()
        pool = lambda: nn.MaxPool2d(3, 2, ceil_mode=True)  # noqa: E731
        self.features = nn.Sequential(
            nn.Conv2d(3, 32, 3, 2, padding=1), nn.ReLU(), pool(),
            Fire(32, 8, 32, 32), Fire(64, 8, 32, 32), pool(),
            Fire(64, 16, 64, 64), Fire(128, 16, 64, 64), pool(),
            Fire(128, 24, 96, 96), Fire(192, 32, 128, 128))
        self.classifier = nn.Sequential(nn.Conv2d(256, classes, 1), nn.ReLU())

    def forward(self, x):
        return F.adaptive_avg_pool2d(self.classifier(self.features(x)), 1).flatten(1)

    @torch.no_grad()
    def after_init(self):
        """Class scores start positive: behind the paper's final ReLU they die in the first steps otherwise."""
        self.classifier[0].bias.add_(2.0)


# ---- RegNetX -------------------------------------------------------------------------------------
class XBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, group_width: int = 8):
        super().__init__()
        self.body = nn.Sequential(conv_bn(cin, cout, 1), conv_bn(cout, cout, 3, stride, groups=cout // group_width),
                                  conv_bn(cout, cout, 1, act=None))
        self.short = conv_bn(cin, cout, 1, stride, act=None) if (stride != 1 or cin != cout) else nn.Identity()

    def forward(self, x):
        return F.relu(self.body(x) + self.short(x))


class RegNetX(nn.Module):
    def __init__(self, widths=(24, 56, 152), depths=(1, 1, 2), classes: int = 10):
        super().__init__()
        layers, c = [conv_bn(3, 16, 3, 2)], 16
        for w, d in zip(widths, depths):
            for i in range(d):
                layers.append(XBlock(c, w, 2 if i == 0 else 1))
                c = w
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(c, classes)

    def forward(self, x):
        return self.fc(F.adaptive_avg_pool2d(self.features(x), 1).flatten(1))


# ---- MNASNet-A1 ----------------------------------------------------------------------------------
# (expansion, kernel, stride, out, SE) per stage of figure 7(a)
_MNASNET_A1 = [(6, 3, 2, 24, False), (3, 5, 2, 40, True), (6, 3, 2, 80, False), (6, 3, 1, 112, True),
               (6, 5, 2, 160, True), (6, 3, 1, 320, False)]


class MNASNet(nn.Module):
    def __init__(self, width: float = 0.5, classes: int = 10):
        super().__init__()
        c = _div8(32 * width)
        sep = _div8(16 * width)
        layers = [conv_bn(3, c, 3, 2), conv_bn(c, c, 3, groups=c), conv_bn(c, sep, 1, act=None)]
        c = sep
        for e, k, s, o, se in _MNASNET_A1:
            out = _div8(o * width)
            layers.append(InvertedResidual(c, c * e, out, k, s, nn.ReLU, se=max(8, c * e // 4) if se else 0,
                                           se_kw=dict(pool="mean")))
            c = out
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(c, classes)

    def forward(self, x):
        return self.fc(self.features(x).mean((2, 3)))


# ---- tiny detector -------------------------------------------------------------------------------
class TinyDetector(nn.Module):
    """Backbone to strides 8 and 16, one 1x1 head per scale with ``anchors * (5 + classes)`` maps;
    the output is [N, 5 + classes, cells * anchors] of sigmoid scores (x, y, w, h, objectness, classes)."""

    def __init__(self, classes: int = 10, anchors: int = 2):
        super().__init__()
        self.a, self.k = anchors, 5 + classes
        self.b8 = nn.Sequential(conv_bn(3, 16, 3, 2), conv_bn(16, 16, 3, groups=16), conv_bn(16, 32, 1),
                                conv_bn(32, 32, 3, 2, groups=32), conv_bn(32, 48, 1),
                                conv_bn(48, 48, 3, 2, groups=48), conv_bn(48, 64, 1))
        self.b16 = nn.Sequential(conv_bn(64, 64, 3, 2, groups=64), conv_bn(64, 96, 1))
        self.h8, self.h16 = nn.Conv2d(64, anchors * self.k, 1), nn.Conv2d(96, anchors * self.k, 1)

    def forward(self, x):
        f8 = self.b8(x)
        f16 = self.b16(f8)
        outs = [torch.sigmoid(h(f)).reshape(x.shape[0], self.k, -1) for h, f in ((self.h8, f8), (self.h16, f16))]
        return torch.cat(outs, 2)


def detector_top1(out: np.ndarray) -> np.ndarray:
    """The top detection: the cell/anchor column of highest objectness (row 4)."""
    return out.reshape(out.shape[0], -1, out.shape[-1])[:, 4].argmax(-1)


def detector_agrees(want: np.ndarray, got: np.ndarray, lsb: float) -> np.ndarray:
    """The int8 top detection is the float one, or one whose float objectness is within one
    output step (``lsb``) of the float maximum: sigmoid scores near 1 tie once quantized, and
    which of two boxes tied at the output's resolution comes first is not a quantization error."""
    obj = want.reshape(want.shape[0], -1, want.shape[-1])[:, 4]
    pick = detector_top1(got)
    return obj[np.arange(len(obj)), pick] >= obj.max(-1) - lsb


# ---- encoder-decoder -----------------------------------------------------------------------------
class EncoderDecoder(nn.Module):
    def __init__(self, classes: int = 10):
        super().__init__()
        self.e1, self.e2 = conv_bn(3, 16, 3, 2), conv_bn(16, 32, 3, 2)
        self.e3 = conv_bn(32, 48, 3, 2)
        self.up = nn.ConvTranspose2d(48, 32, 2, 2)
        self.d2 = conv_bn(64, 24, 3)
        self.out = nn.Conv2d(24, classes, 1)

    def forward(self, x):
        s1 = self.e1(x)
        s2 = self.e2(s1)
        y = F.relu(self.up(self.e3(s2)))
        y = self.d2(torch.cat([y, s2], 1))
        return F.interpolate(self.out(y), scale_factor=4, mode="nearest")


def pixel_top1(out: np.ndarray) -> np.ndarray:
    """Per-pixel class (axis 1 of [N, classes, H, W]), flattened per sample."""
    return out.argmax(1).reshape(out.shape[0], -1)


# ---- registry ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ZooModel:
    name: str
    build: Callable[[], nn.Module]
    size: int  # input [1, 3, size, size]
    exercises: str  # the operators the model is in the zoo for
    top1: Callable[[np.ndarray], np.ndarray] = lambda out: out.reshape(out.shape[0], -1).argmax(-1)
    classifier: bool = True  # 10 logits (fitted to synthetic_task by build())
    agrees: Callable | None = None  # (float out, int8 out dequantized, output step) -> bool per sample

    def agreement(self, want: np.ndarray, got: np.ndarray, lsb: float) -> float:
        """Fraction of samples (pixels for a segmenter) whose int8 top-1 is the float model's."""
        if self.agrees is not None:
            return float(np.mean(self.agrees(want, got, lsb)))
        return float((self.top1(got) == self.top1(want)).mean())

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return (1, 3, self.size, self.size)


ZOO: dict[str, ZooModel] = {m.name: m for m in [
    ZooModel("mobilenetv3_small", MobileNetV3Small, 96, "HardSwish, SE (GlobalAveragePool, HardSigmoid, Mul)"),
    ZooModel("efficientnet_mbconv", EfficientNetMBConv, 96, "SiLU (Sigmoid, Mul), SE"),
    ZooModel("shufflenetv2", ShuffleNetV2, 96, "Split, channel shuffle (Reshape-Transpose-Reshape), ReduceMean"),
    ZooModel("squeezenet", SqueezeNet, 96, "fire modules (Concat), MaxPool ceil_mode"),
    ZooModel("regnet", RegNetX, 96, "grouped Conv (group width 8), residual Add"),
    ZooModel("mnasnet", MNASNet, 96, "MBConv, SE with ReduceMean, Sigmoid"),
    ZooModel("tiny_detector", TinyDetector, 96, "Sigmoid heads, Reshape, Concat on the last axis", detector_top1,
             agrees=detector_agrees,
             classifier=False),
    ZooModel("encoder_decoder", EncoderDecoder, 64, "ConvTranspose, Resize (nearest), skip Concat", pixel_top1,
             classifier=False),
]}


#: variants only the benchmark builds (bench/coverage.py): the narrower MobileNetV3-small
VARIANTS: dict[str, ZooModel] = {m.name: m for m in [
    ZooModel("mobilenetv3_small_035", lambda: MobileNetV3Small(width=0.35), 96, "MobileNetV3-small at width 0.35"),
]}


def spec_of(name: str) -> ZooModel:
    return ZOO[name] if name in ZOO else VARIANTS[name]


def random_images(n: int, size: int, seed: int = 0) -> np.ndarray:
    """Random inputs [n, 3, size, size] with image-like structure: white noise plus a smooth
    random field and a per-sample, per-channel offset (so global pools differ between samples)."""
    rng = np.random.default_rng(seed)
    coarse = rng.standard_normal((n, 3, 4, 4)).astype(np.float32)
    smooth = F.interpolate(torch.from_numpy(coarse), size=(size, size), mode="bilinear", align_corners=False).numpy()
    offset = rng.standard_normal((n, 3, 1, 1)).astype(np.float32)
    return (0.5 * rng.standard_normal((n, 3, size, size)) + 0.5 * smooth + 0.25 * offset).astype(np.float32)


@torch.no_grad()
def lsuv_init(model: nn.Module, x: torch.Tensor, iters: int = 3) -> nn.Module:
    """Rescale each Conv2d / ConvTranspose2d / Linear (forward order) so its output has unit std on ``x``."""
    model.eval()
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))]
    for layer in layers:
        seen = {}
        hook = layer.register_forward_hook(lambda m, i, o, seen=seen: seen.__setitem__("std", float(o.std())))
        for _ in range(iters):
            model(x)
            std = seen.get("std", 1.0)
            if not np.isfinite(std) or std < 1e-8:
                break
            layer.weight.div_(std)
            if layer.bias is not None:
                layer.bias.div_(std)
        hook.remove()
    return model


def synthetic_task(n: int, size: int, seed: int = 0, classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Random images of a 10-class task: class k is a fixed smooth random template (the same for
    every call) plus a random smooth field, a random offset and white noise (:func:`random_images`).
    Returns (x [n, 3, size, size] float32, labels [n])."""
    templates = random_images(classes, size, seed=12345)
    y = np.random.default_rng(seed + 7).integers(0, classes, n)
    return (templates[y] + random_images(n, size, seed=seed)).astype(np.float32), y


def build(name: str, seed: int = 0, steps: int = 60, size: int | None = None) -> nn.Module:
    """The zoo model ``name``, seeded, LSUV-initialised on ``size`` x ``size`` images (default: the
    zoo's size; the models are fully convolutional), then (classifiers) fitted for ``steps``
    Adam steps of batch 16 to :func:`synthetic_task` (random weights alone give logits that barely
    depend on the input, so top-1 agreement would measure a constant; a few steps give the margins
    a trained network has), batch-norm statistics re-estimated, in eval mode."""
    spec = spec_of(name)
    size = size or spec.size
    torch.manual_seed(seed)
    model = spec.build()
    with torch.no_grad():  # BN affine off its defaults: the folded convs carry a real affine
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    lsuv_init(model, torch.from_numpy(random_images(16, size, seed=seed + 1000)))
    if hasattr(model, "after_init"):
        model.after_init()
    if spec.classifier and steps:
        fit(model, size, steps, seed)
    return model.eval()


def fit(model: nn.Module, size: int, steps: int, seed: int = 0, batch: int = 16) -> nn.Module:
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for i in range(steps):
        x, y = synthetic_task(batch, size, seed=seed + 2000 + i)
        loss = F.cross_entropy(model(torch.from_numpy(x)), torch.from_numpy(y))
        opt.zero_grad()
        loss.backward()
        opt.step()
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for m in bns:  # statistics of the final weights (cumulative average over 64 images)
        m.reset_running_stats()
        m.momentum = None
    with torch.no_grad():
        for i in range(4):
            model(torch.from_numpy(synthetic_task(batch, size, seed=seed + 3000 + i)[0]))
    for m in bns:
        m.momentum = 0.1
    return model.eval()


def float_outputs(model: nn.Module, x: np.ndarray, batch: int = 32) -> np.ndarray:
    with torch.no_grad():
        return np.concatenate([model(torch.from_numpy(x[i:i + batch])).numpy() for i in range(0, len(x), batch)])


def measure(name: str, work, *, size: int | None = None, n_calib: int = 64, n_eval: int = 100, seed: int = 0,
            steps: int = 60) -> dict:
    """Compile zoo model ``name`` (:func:`build` at ``size``) for ``host`` in int8 into
    ``work``/host (calibrated on ``n_calib`` images of :func:`synthetic_task`), run ``n_eval`` other
    images through the host build and return: ``compile_s``, ``agreement`` (top-1 of the int8
    build equal to the float model's, fraction), ``ort_max_lsb`` / ``ort_mean_lsb`` (int8 outputs
    against ONNX Runtime running the QDQ file as written; ``ort_unit`` "float" where the output is
    float32, e.g. a mean the output-resolution rule left in float: then absolute differences), the
    manifest and the QDQ file."""
    import time
    from pathlib import Path

    from . import api
    from .demo import ort_outputs

    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    spec = spec_of(name)
    size = size or spec.size
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same trained weights whatever the caller set before
    try:
        model = build(name, seed, steps, size)
    finally:
        torch.set_num_threads(threads)
    calib = synthetic_task(n_calib, size, seed=seed + 1)[0]
    x = synthetic_task(n_eval, size, seed=seed + 2)[0]
    qdq = work / "model.int8.onnx"
    t0 = time.perf_counter()
    man = api.compile_model(model, "host", work / "host", example_input=torch.from_numpy(x[:1]), calib=calib,
                            keep_onnx=qdq)
    compile_s = time.perf_counter() - t0
    got = api.run_bundle(work / "host", x, emulate=False, progress=False)
    want = float_outputs(model, x)
    out = man["outputs"][0]
    lsb = out["quantization"]["scale"][0] if out["dtype"] == "int8" else 0.0
    agree = spec.agreement(want, got.outputs_float.reshape(want.shape), lsb)
    ort = ort_outputs(qdq, x)
    if out["dtype"] == "int8":
        qs = out["quantization"]
        ref = np.rint(ort / qs["scale"][0]).astype(np.int32) + qs["zero_point"][0]
        diff = np.abs(got.outputs.astype(np.int32).reshape(ref.shape) - ref)
    else:
        diff = np.abs(got.outputs_float.reshape(ort.shape) - ort)
    return {"name": name, "compile_s": compile_s, "agreement": agree, "ort_max_lsb": float(diff.max()),
            "ort_mean_lsb": float(diff.mean()), "ort_unit": "LSB" if out["dtype"] == "int8" else "float", "manifest": man, "qdq": qdq, "model": model, "x": x,
            "host_outputs": got.outputs}
