"""PyTorch frontend: a ``torch.nn.Module`` plus an example input, through ``torch.onnx.export``."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from ..errors import ModelError, UnsupportedError


def export_onnx(module, example_input, path: str | Path, *, input_name: str = "input",
                output_name: str = "output", opset: int = 17) -> Path:
    """Export ``module`` (in eval mode) to ONNX at ``path``; batch-norm is folded by the exporter."""
    import torch

    if not isinstance(module, torch.nn.Module):
        raise ModelError(f"expected a torch.nn.Module, got {type(module).__name__}")
    if isinstance(example_input, np.ndarray):
        example_input = torch.from_numpy(example_input)
    if not isinstance(example_input, torch.Tensor):
        raise ModelError("the example input must be a torch.Tensor or numpy array",
                         fix="Pass one input tensor with the batch dimension, e.g. torch.zeros(1, 1, 8, 8)")
    path = Path(path)
    was_training = module.training
    module.eval()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, (example_input,), str(path), input_names=[input_name],
                              output_names=[output_name], opset_version=opset, dynamo=False,
                              do_constant_folding=True)
    except Exception as e:
        raise UnsupportedError(f"torch.onnx.export failed: {str(e).splitlines()[0]}",
                               where=type(module).__name__,
                               fix="Make the module exportable to ONNX (static shapes, standard layers)") from None
    finally:
        module.train(was_training)
    return path
