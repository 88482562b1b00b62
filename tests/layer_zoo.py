"""One-layer PyTorch models, one per op under test, shared by the per-op tests
(tests/test_ops_vs_onnxruntime.py for int8/float32, tests/test_int16.py for int16).
Input [N, 4, 6, 6]."""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F


class Layer(nn.Module):
    def __init__(self, kind):
        super().__init__()
        self.kind = kind
        self.conv = nn.Conv2d(4, 6, 3, stride=1, padding=1)
        self.conv_s2 = nn.Conv2d(4, 6, 3, stride=2, padding=(0, 1))
        self.conv_dil = nn.Conv2d(4, 6, 3, padding=2, dilation=2)
        self.dw = nn.Conv2d(4, 4, 3, padding=1, groups=4)
        self.dw_m2 = nn.Conv2d(4, 8, 3, stride=2, padding=1, groups=4)
        self.fc = nn.Linear(4 * 6 * 6, 10)
        self.pw = nn.Conv2d(4, 4, 1)

    def forward(self, x):
        k = self.kind
        if k == "conv":
            return self.conv(x)
        if k == "conv_stride2_asym_pad":
            return self.conv_s2(x)
        if k == "conv_relu_stride2":
            return torch.relu(self.conv_s2(x))
        if k == "conv_dilated":
            return self.conv_dil(x)
        if k == "depthwise":
            return self.dw(x)
        if k == "depthwise_mult2_stride2":
            return self.dw_m2(x)
        if k in ("gemm_flatten", "fc_flatten"):
            return self.fc(torch.flatten(x, 1))
        if k == "fc_clip":
            return torch.clamp(self.fc(torch.flatten(x, 1)), -0.5, 0.75)
        if k == "relu":
            return torch.relu(self.pw(x))
        if k == "clip":
            return torch.clamp(self.pw(x), -0.5, 0.75)
        if k == "maxpool":
            return F.max_pool2d(self.pw(x), 3, 2, padding=1)
        if k == "avgpool":
            return F.avg_pool2d(self.pw(x), 2)
        if k == "avgpool_3x3_s2_pad":
            return F.avg_pool2d(self.pw(x), 3, 2, padding=1, count_include_pad=False)
        if k == "global_avgpool":
            return F.adaptive_avg_pool2d(self.pw(x), 1)
        if k == "add":
            return self.pw(x) + x
        if k == "add_relu":
            return torch.relu(self.pw(x) + x)
        if k == "concat":
            return torch.cat([x, self.pw(x)], 1)
        if k == "softmax":
            return torch.softmax(self.fc(torch.flatten(x, 1)), -1)
        raise ValueError(k)


def export_small_cnn(path: Path) -> Path:
    """A small MNIST-shaped CNN (1x28x28 -> 10), fixed weights."""
    import torch
    from edgecomp.frontends.torch import export_onnx
    torch.manual_seed(0)
    m = torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(8, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(16 * 7 * 7, 10)).eval()
    return export_onnx(m, torch.zeros(1, 1, 28, 28), path)
