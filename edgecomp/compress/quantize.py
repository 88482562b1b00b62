"""Post-training int8 quantization with ONNX Runtime's quantization tool.

We do not re-implement calibration or QDQ insertion: ``onnxruntime.quantization``
does both.  This module only turns the user's calibration data into a
``CalibrationDataReader``, picks the TFLite-compatible scheme (int8 weights,
symmetric, per output channel; int8 activations, asymmetric, per tensor; int32
bias with scale s_in*s_w) and reports progress.
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import onnx

from ..errors import ModelError

METHODS = ("minmax", "entropy", "percentile")
ACTIVATIONS = ("int8", "int16")


def load_calibration(calib: Any, input_name: str, input_shape: tuple[int, ...] | None = None) -> list[np.ndarray]:
    """Calibration samples as a list of float32 batches of one sample each.

    ``calib`` may be a path to ``.npy`` (an array whose first axis is the sample
    axis) or ``.npz`` (the array named like the input, or ``x``, or the only one),
    read with :func:`edgecomp.arrays.load_samples` (sizes checked before loading,
    no pickles, no NaN/Inf/huge values), a numpy array, or any iterable of arrays.
    """
    from ..arrays import check_sample_values, load_samples

    if isinstance(calib, (str, Path)):
        calib = load_samples(calib, prefer=(input_name, "x"), what="calibration file")
    if isinstance(calib, np.ndarray):
        calib = check_sample_values(calib, "calibration data")
        samples = [calib[i:i + 1] for i in range(calib.shape[0])]
    else:
        try:
            samples = [check_sample_values(np.asarray(s), "calibration sample") for s in calib]
        except TypeError:
            raise ModelError(f"calibration data of type {type(calib).__name__} is not usable",
                             fix="Give a .npy/.npz path, a numpy array or an iterable of arrays") from None
    if not samples:
        raise ModelError("calibration data is empty", fix="Give at least one input sample (a few hundred is typical)")
    out = []
    for s in samples:
        s = s.astype(np.float32)
        if input_shape is not None and len(s.shape) == len(input_shape) - 1:
            s = s[None]
        if input_shape is not None and tuple(s.shape[1:]) != tuple(input_shape[1:]):
            raise ModelError(f"calibration sample has shape {tuple(s.shape)}, the model input {input_name!r} "
                             f"expects {tuple(input_shape)}", fix="Give samples with the model's input shape")
        out.append(s)
    return out


def _input_info(model: onnx.ModelProto) -> tuple[str, tuple[int, ...]]:
    inits = {i.name for i in model.graph.initializer}
    ins = [i for i in model.graph.input if i.name not in inits]
    if len(ins) != 1:
        raise ModelError(f"model has {len(ins)} inputs; quantization supports exactly one",
                         fix="Export the model with a single input tensor, or quantize it with onnxruntime."
                             "quantization.quantize_static (a reader of {input name: sample} dicts) and compile "
                             "the QDQ file (several inputs compile), or use --precision float32")
    dims = tuple(d.dim_value if d.dim_value > 0 else 1 for d in ins[0].type.tensor_type.shape.dim)
    return ins[0].name, dims


WEIGHTED_OPS = ("Conv", "Gemm", "MatMul", "ConvTranspose")


def resolve_layers(model: onnx.ModelProto, names: Any) -> list[str]:
    """ONNX node names of the weighted layers ``names`` designate (node names or module paths)."""
    if isinstance(names, str):
        names = [n for n in names.split(",") if n.strip()]
    nodes = [n.name for n in model.graph.node if n.op_type in WEIGHTED_OPS]
    out: list[str] = []
    for want in names:
        want = str(want).strip()
        hit = [n for n in nodes if n == want or f"/{want}/" in n or n.startswith(f"{want}/")]
        if not hit:
            shown = ", ".join(nodes[:20]) + (" ..." if len(nodes) > 20 else "")
            raise ModelError(f"no layer named {want!r} to keep in float32", where="--keep-float",
                             fix=f"Use an ONNX node name or a PyTorch module path; the weighted layers are: {shown}")
        out += [h for h in hit if h not in out]
    return out


def quantize_onnx(float_onnx_path: str | Path, calib: Any, out_path: str | Path, *,
                  method: str = "minmax", per_channel: bool = True, progress: bool = True,
                  percentile: float = 99.999, keep_float: Any = (), activations: str = "int8",
                  auto_float: dict | None = None) -> Path:
    """Quantize a float ONNX model to int8 QDQ (S8S8) with ORT's ``quantize_static``.

    ``activations="int16"``: 16x8 instead (int16 activations, symmetric with zero point 0,
    ``QuantType.QInt16``; int8 per-channel symmetric weights; int32 biases), which the C
    backend runs with its int16 kernels (``ec_kernels_s16``).

    ``keep_float``: layers to leave in float32 (mixed precision), each an ONNX node name
    or a PyTorch module path (``conv2`` or ``conv2.0`` selects ``/conv2/conv2.0/Conv``).
    The backends run those layers with float kernels between a dequantize and a quantize.

    ``auto_float`` (a dict, int8 only): apply the output-resolution rule
    (:mod:`edgecomp.compress.output_resolution`) and record in it {node name: reason} for each
    output mean it left in float32.
    """
    from .. import workdirs
    from ..frontends.onnx import load_onnx
    from .calibrate import job_paths, run_calibration

    method = method.lower().replace("-", "")
    if activations not in ACTIVATIONS:
        raise ModelError(f"unknown activation type {activations!r}", fix=f"Use one of {', '.join(ACTIVATIONS)}")
    if method not in METHODS:
        raise ModelError(f"unknown calibration method {method!r}", fix=f"Use one of {', '.join(METHODS)}")
    float_onnx_path, out_path = Path(float_onnx_path), Path(out_path)
    # external data confined to the model's folder, then held in memory: the child gets one file
    model = load_onnx(float_onnx_path)
    name, shape = _input_info(model)
    samples = load_calibration(calib, name, shape)
    with workdirs.work_dir("calib") as work:
        paths = job_paths(work)
        try:
            onnx.save(model, paths["model"])
        except ValueError as e:  # larger than protobuf's 2 GB
            raise ModelError(f"the model cannot be saved as one file ({e})", where=str(float_onnx_path),
                             fix="Models for small devices are far smaller; check the file") from None
        np.save(paths["samples"], np.concatenate(samples, axis=0), allow_pickle=False)
        job = {**paths, "input_name": name, "n_samples": len(samples), "method": method,
               "per_channel": bool(per_channel), "progress": bool(progress), "percentile": float(percentile),
               "keep_float": list(keep_float) if not isinstance(keep_float, str) else keep_float,
               "activations": activations, "resolve_output": auto_float is not None,
               "decisions": str(Path(work) / "decisions.json")}
        run_calibration(job, str(float_onnx_path), quantize_here)
        if auto_float is not None and Path(job["decisions"]).is_file():
            auto_float.update(json.loads(Path(job["decisions"]).read_text()))
        out_path.write_bytes(Path(paths["out"]).read_bytes())
    return out_path


def quantize_here(job: dict, counter=None, progress_stream=None) -> None:
    """ORT's ``quantize_static`` on the job's files (runs in the limited child, see calibrate.py)."""
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                          QuantType, quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    data = np.load(job["samples"], allow_pickle=False)
    samples = [data[i:i + 1] for i in range(data.shape[0])]
    name, method, progress = job["input_name"], job["method"], job["progress"]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.i = 0

        def get_next(self):
            if counter is not None:
                counter.value += 1  # the parent's stall timer: one step per sample (and the final None)
            if self.i >= len(samples):
                return None
            if progress and (self.i % max(1, len(samples) // 10) == 0 or self.i == len(samples) - 1):
                print(f"\rcalibrating ({method}): {self.i + 1}/{len(samples)}", end="",
                      file=progress_stream or sys.stderr, flush=True)
            s = samples[self.i]
            self.i += 1
            return {name: s}

        def rewind(self):
            self.i = 0

    cm = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
          "percentile": CalibrationMethod.Percentile}[method]
    extra: dict[str, Any] = {"ActivationSymmetric": job["activations"] == "int16", "WeightSymmetric": True}
    if method == "percentile":
        extra["CalibPercentile"] = job["percentile"]
    with tempfile.TemporaryDirectory(dir=str(Path(job["out"]).parent)) as td:
        pre = Path(td) / "pre.onnx"
        quant_pre_process(job["model"], str(pre), skip_symbolic_shape=True)
        keep_float = job["keep_float"]
        exclude = resolve_layers(onnx.load(str(pre)), keep_float) if keep_float else []
        def quantize(exclude):
            quantize_static(str(pre), job["out"], Reader(), quant_format=QuantFormat.QDQ,
                            activation_type=QuantType.QInt16 if job["activations"] == "int16" else QuantType.QInt8,
                            weight_type=QuantType.QInt8,
                            per_channel=job["per_channel"], calibrate_method=cm, extra_options=extra,
                            nodes_to_exclude=exclude)

        quantize(exclude)
        if job.get("resolve_output") and job["activations"] == "int8":
            from .output_resolution import means_to_keep_float
            tick = (lambda: setattr(counter, "value", counter.value + 1)) if counter is not None else (lambda: None)
            auto = means_to_keep_float(str(pre), job["out"], samples, name, tick)
            if auto:  # quantized again with those means left in float: the ranges of the rest are unchanged
                if progress:
                    print(f"\noutput resolution: {', '.join(auto)} left in float32 (see the report); calibrating again",
                          file=progress_stream or sys.stderr, flush=True)
                quantize(exclude + [n for n in auto if n not in exclude])
            Path(job["decisions"]).write_text(json.dumps(auto))
        if job["activations"] == "int8":  # the LSTM / GRU layers ORT leaves in float: calibrated QDQ pairs
            from .quantize_rnn import add_recurrent_qdq
            add_recurrent_qdq(pre, Path(job["out"]), name, samples)


def reference_session(onnx_path: str | Path, *, fused: bool = False):
    """An ONNX Runtime session that executes a QDQ model exactly as written.

    With ``fused=False`` (the default) graph optimizations are off, so every
    DequantizeLinear -> op -> QuantizeLinear runs as specified (float op on the
    dequantized values, then round-half-even quantization): the reference the
    integer kernels are held to (within 1 LSB).  ORT's fused int8 kernels
    (``fused=True``) are faster but on x86 CPUs without VNNI they compute S8S8
    convolutions with ``VPMADDUBSW``, whose int16 pair sums saturate, so their
    outputs can be tens of LSB away from the QDQ semantics.
    """
    import onnxruntime as ort

    so = ort.SessionOptions()
    if not fused:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
