"""Samples in and out of a bundle: float values <-> the bundle's input / output dtype and layout.

One conversion for everything that feeds a bundle (``edgecomp run``, :func:`edgecomp.api.run_bundle`,
the quantization report), from the manifest's ``inputs`` / ``outputs`` entries.
"""
from __future__ import annotations

import numpy as np

from .errors import ModelError


def check_samples(x: np.ndarray, what: str = "samples", where: str | None = None) -> np.ndarray:
    """Numbers with a sample axis, finite: anything else (strings, records, a scalar, NaN) is one clear error."""
    x = np.asarray(x)
    if x.dtype.kind not in "biuf":
        raise ModelError(f"{what} are of type {x.dtype}, not numbers", where, "Give a numeric .npy array")
    if x.ndim == 0 or x.size == 0:
        raise ModelError(f"{what} hold no sample (shape {x.shape})", where, "Give an array [N, ...] of samples")
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        raise ModelError(f"{what} hold NaN or infinite values", where, "Remove or replace them before running")
    return x


def quantize_input(x: np.ndarray, io: dict) -> np.ndarray:
    """Float samples -> the bundle's input dtype and layout (per the manifest entry ``io``)."""
    x = np.asarray(x)
    if io.get("source_layout") == "NCHW" and x.ndim == 4:
        x = x.transpose(0, 2, 3, 1)
    if io.get("source_layout") == "NCW" and x.ndim == 3:  # a 1-D model's [N, C, L] -> [N, 1, L, C]
        x = x.transpose(0, 2, 1)[:, None]
    if io["dtype"] == "float32":
        return x.astype(np.float32)
    if x.dtype == np.dtype(io["dtype"]):
        return x
    q = io["quantization"]
    info = np.iinfo(np.dtype(io["dtype"]))
    # ONNX QuantizeLinear rounds half to even; the firmware's input is what ORT would have made
    v = np.rint(x.astype(np.float32) / np.float32(q["scale"][0])) + q["zero_point"][0]
    return np.clip(v, info.min, info.max).astype(io["dtype"])


def dequantize_output(y: np.ndarray, io: dict) -> np.ndarray:
    if io["dtype"] == "float32" or io.get("quantization") is None:  # (int32 indices: as they are)
        return y.astype(np.float32)
    q = io["quantization"]
    return ((y.astype(np.float32) - q["zero_point"][0]) * np.float32(q["scale"][0])).astype(np.float32)
