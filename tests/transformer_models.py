"""The small transformer encoder of issue 17 (2 layers, d=64, 4 heads, 32 tokens, GELU feed-forward,
batch_first), random weights, exported to ONNX with PyTorch's torch.export-based exporter (the
default since PyTorch 2.9; the legacy TorchScript exporter computes the attention reshapes from
Shape -> Mod -> Slice chains that leave shapes unknown).  Shared by tests and bench/sequence.py."""
from __future__ import annotations

import warnings
from pathlib import Path

D, HEADS, TOKENS, LAYERS, FF = 64, 4, 32, 2, 128


def encoder(activation: str = "gelu", seed: int = 0):
    import torch
    torch.manual_seed(seed)
    layer = torch.nn.TransformerEncoderLayer(D, HEADS, dim_feedforward=FF, dropout=0.0, activation=activation,
                                             batch_first=True)
    return torch.nn.TransformerEncoder(layer, LAYERS, enable_nested_tensor=False).eval()


def export_encoder(path: Path, activation: str = "gelu", seed: int = 0) -> Path:
    """The encoder as an ONNX file (input "x" [1, TOKENS, D], output "y")."""
    import torch
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(encoder(activation, seed), (torch.zeros(1, TOKENS, D),), str(path), opset_version=18,
                          dynamo=True, input_names=["x"], output_names=["y"], external_data=False, verbose=False)
    return Path(path)
