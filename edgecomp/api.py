"""The Python API behind the CLI: model in, bundle out, bundle run.

    from edgecomp import api
    manifest = api.compile_model(net, "cortex-m4", "out/bundle", example_input=x[:1], calib=x_train[:200])
    result = api.run_bundle("out/bundle", x_test)          # QEMU (or host gcc for target "host")
    logits = result.outputs_float
"""
from __future__ import annotations

import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import ir
from .errors import EdgecompError, ModelError

PRECISIONS = ("int8", "int16", "float32")  # int16: 16x8 (int16 activations, int8 weights)


def _is_torch_module(obj: Any) -> bool:
    # An nn.Module can only exist once torch is imported: do not pay torch's import (seconds)
    # for every .onnx/.tflite compile just to ask.
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.nn.Module)


def _onnx_is_quantized(path: Path) -> bool:
    import onnx
    m = onnx.load(str(path), load_external_data=False)
    return any(n.op_type in ("QuantizeLinear", "DequantizeLinear", "QLinearConv") for n in m.graph.node)


def _check_model_file(path: Path) -> None:
    """Fail early, with a clear message, on a missing or unreadable model file."""
    if not path.is_file():
        raise ModelError(f"model file {path} does not exist", fix="Check the path")
    suffix = path.suffix.lower()
    if suffix == ".tflite":
        from .frontends.tflite import load_tflite
        load_tflite(path)
    elif suffix == ".onnx":
        from .frontends.onnx import load_onnx
        load_onnx(path)
    else:
        raise ModelError(f"unknown model format {suffix!r}", where=str(path),
                         fix="Give a .onnx or .tflite file (or a torch.nn.Module from Python)")


def prepare_onnx(model: Any, workdir: Path, *, example_input=None, calib=None, precision: str = "int8",
                 calibrate_method: str = "minmax", per_channel: bool = True, keep_float=()) -> Path:
    """Return the ONNX file to lower: exported from torch and/or quantized with ORT as asked."""
    from .compress.quantize import quantize_onnx
    from .frontends.onnx import load_onnx
    from .frontends.torch import export_onnx

    if precision not in PRECISIONS:
        raise ModelError(f"unknown precision {precision!r}", fix=f"Use one of {', '.join(PRECISIONS)}")
    if _is_torch_module(model):
        if example_input is None:
            raise ModelError("a PyTorch model needs an example input", fix="Pass example_input=<tensor of shape [1, ...]>")
        src = export_onnx(model, example_input, workdir / "model.float.onnx")
    else:
        src = Path(model)
        load_onnx(src)  # clear errors for a bad file before anything else
    if precision == "float32" or _onnx_is_quantized(src):
        return src
    if calib is None:
        raise ModelError(f"{precision} quantization needs calibration data", where=str(src),
                         fix="Pass --calib samples.npy (a few hundred typical inputs), or --precision float32")
    return quantize_onnx(src, calib, workdir / f"model.{precision}.onnx", method=calibrate_method,
                         per_channel=per_channel, keep_float=keep_float or (),
                         activations="int16" if precision == "int16" else "int8")


def load_graph(model: Any, workdir: Path, *, dump_ir: str | Path | None = None, **kw) -> tuple[ir.Graph, Path]:
    """Any supported model -> (canonical IR graph, the model file it came from)."""
    from .pipeline import import_model
    if not _is_torch_module(model) and Path(str(model)).suffix.lower() == ".tflite":
        return import_model(model, dump=dump_ir), Path(model)
    path = prepare_onnx(model, workdir, **kw)
    name = Path(str(model)).stem if not _is_torch_module(model) else type(model).__name__.lower()
    return import_model(path, name=name, dump=dump_ir), path


def compile_model(model: Any, target: str, out_dir: str | Path, *, example_input=None, calib=None,
                  precision: str = "int8", calibrate_method: str = "minmax", per_channel: bool = True,
                  options: dict | None = None, keep_onnx: str | Path | None = None, keep_float=None,
                  dump_ir: str | Path | None = None) -> dict:
    """Compile ``model`` (nn.Module, .onnx or .tflite) for ``target`` into ``out_dir``; return the manifest.

    ``dump_ir``: a folder to write the graph into after every pass of the pipeline (debugging).

    ``keep_float``: layers left in float32 in an otherwise int8 model (mixed precision; see
    :func:`edgecomp.compress.quantize.resolve_layers` for how they are named).
    """
    if isinstance(keep_float, str):
        keep_float = [k for k in keep_float.split(",") if k.strip()]
    keep_float = list(keep_float or [])
    opts = {"precision": precision, "calibrate_method": calibrate_method, "per_channel": per_channel,
            **({"keep_float": keep_float} if keep_float else {}), **(options or {})}
    if not _is_torch_module(model):
        _check_model_file(Path(model))
    from .targets import load_target
    tgt = load_target(target)
    with tempfile.TemporaryDirectory(prefix="edgecomp-") as td:
        work = Path(td)
        if getattr(tgt, "kind", "mcu") == "rpi":
            from .backends.rpi import write_rpi_bundle
            if precision == "int16":
                from .errors import UnsupportedError
                raise UnsupportedError("int16 activations on a Raspberry Pi target", where=f"target {tgt.name}",
                                       fix="Use --precision int8 or float32 there (int16 is for the C backend)")
            if _is_torch_module(model) or Path(str(model)).suffix.lower() != ".tflite":
                src = prepare_onnx(model, work, example_input=example_input, calib=calib, precision=precision,
                                   calibrate_method=calibrate_method, per_channel=per_channel, keep_float=keep_float)
            else:
                src = Path(model)
            name = type(model).__name__.lower() if _is_torch_module(model) else Path(str(model)).stem
            return write_rpi_bundle(src, tgt.name, out_dir, options={**opts, "name": name})
        graph, src = load_graph(model, work, example_input=example_input, calib=calib, precision=precision,
                                calibrate_method=calibrate_method, per_channel=per_channel, keep_float=keep_float,
                                dump_ir=dump_ir)
        if keep_onnx is not None and src.suffix == ".onnx":
            shutil.copyfile(src, keep_onnx)
        from .pipeline import compile_c
        return compile_c(graph, tgt, Path(out_dir), opts, dump=dump_ir)


# --------------------------------------------------------------------------- running
@dataclass
class Prediction:
    outputs: np.ndarray  # raw outputs (int8 or float32), batch first, in the source model's layout
    outputs_float: np.ndarray  # dequantized
    result: Any  # backends.run.RunResult (ticks, unit, stack peak, ...)


def quantize_input(x: np.ndarray, io: dict) -> np.ndarray:
    """Float samples -> the bundle's input dtype and layout (per the manifest entry ``io``)."""
    x = np.asarray(x)
    if io.get("source_layout") == "NCHW" and x.ndim == 4:
        x = x.transpose(0, 2, 3, 1)
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


def run_bundle(bundle: str | Path, x: np.ndarray, *, emulate: bool = True, progress: bool = True,
               cycles: bool = False, clock_hz: float | None = None) -> Prediction:
    """Run float (or already quantized) samples ``x`` [N, ...] through a compiled bundle.

    ``cycles=True`` adds estimated cycles per layer of the first inference (``result.cycles``, an
    :class:`edgecomp.cycles.CycleReport`; estimated ms at ``clock_hz``, default the target's clock).
    """
    from .backends.run import run_bundle as _run
    from .bundle import read_manifest

    bundle = Path(bundle)
    if not (bundle / "manifest.json").is_file():
        raise EdgecompError(f"{bundle} is not an edgecomp bundle (no manifest.json)",
                            fix="Pass the folder written by `edgecomp compile`")
    man = read_manifest(bundle)
    io_in, io_out = man["inputs"][0], man["outputs"][0]
    xin = quantize_input(x, io_in)
    want = tuple(io_in["shape"][1:])
    if tuple(xin.shape[1:]) != want:
        raise EdgecompError(f"input samples have shape {tuple(x.shape[1:])}, the bundle expects {want}",
                            fix="Give samples of the model's input shape with the batch axis first")
    res = _run(bundle, xin, emulate=emulate, cycles=cycles, clock_hz=clock_hz)
    out = np.asarray(res.outputs).reshape((len(xin),) + tuple(io_out["shape"][1:]))
    if io_out.get("source_layout") == "NCHW" and out.ndim == 4:  # give ONNX users their layout back
        out = out.transpose(0, 3, 1, 2)
    return Prediction(out, dequantize_output(out, io_out), res)
