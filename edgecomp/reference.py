"""The real references edgecomp is held against: TFLite Micro and LiteRT, run on the host.

``tflm_run`` runs TFLM's reference kernels (``tflite-micro`` from PyPI), ``tflm_arena_bytes``
reads TFLM's recording allocator, ``litert_run`` runs LiteRT (``ai-edge-litert``).
Inputs are batches: one sample per row of the first axis, each run separately (state variables,
an LSTM's, reset to zero before each sample).
"""
from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from pathlib import Path

import numpy as np

from .errors import ModelError, ToolError


def _tflm():
    try:
        from tflite_micro.python.tflite_micro import runtime
    except ImportError as e:  # pragma: no cover - installed in CI
        raise ToolError("TFLite Micro is not installed", fix="pip install tflite-micro") from e
    return runtime


def _check_path(model_path) -> Path:
    """The model file, checked by edgecomp's importer first: the C++ runtimes may crash on a corrupt file."""
    from .errors import UnsupportedError
    from .frontends.tflite import load_tflite
    p = Path(model_path)
    if not p.is_file():
        raise ModelError(f"model file {p} does not exist", fix="Check the path")
    try:
        load_tflite(p)  # ModelError on a corrupt file
    except UnsupportedError:
        pass  # valid for the runtimes even if edgecomp cannot compile it
    return p


def _batch(inputs: np.ndarray, shape, dtype) -> np.ndarray:
    x = np.asarray(inputs)
    shape = tuple(int(d) for d in shape)
    if x.shape == shape:
        x = x[None]  # one sample given without the batch axis of N
    if x.ndim == len(shape) + 1 and x.shape[1:] == shape:
        x = x.reshape((-1,) + shape)
    elif x.ndim == len(shape) and x.shape[1:] == shape[1:]:
        x = x.reshape((x.shape[0],) + shape)
    else:
        raise ModelError(f"input of shape {x.shape} does not match the model input {shape}",
                         fix=f"Pass an array of shape [N, {', '.join(map(str, shape[1:]))}]")
    if x.dtype != np.dtype(dtype):
        raise ModelError(f"input dtype {x.dtype} does not match the model input {np.dtype(dtype)}",
                         fix="Quantize the input first (int8 models take int8 inputs)")
    return x


def tflm_run(model_path, inputs: np.ndarray) -> np.ndarray:
    """Run each sample of ``inputs`` [N, ...] through TFLite Micro; return outputs [N, ...]."""
    runtime = _tflm()
    path = _check_path(model_path)
    # the runtime's default arena (10x the file) is too small for a model of few weights and big maps
    interp = runtime.Interpreter.from_file(str(path), arena_size=max(10 * path.stat().st_size, 4 << 20))
    det_in, det_out = interp.get_input_details(0), interp.get_output_details(0)
    x = _batch(inputs, det_in["shape"], det_in["dtype"])
    outs = []
    for sample in x:
        interp.reset()  # state variables (an LSTM's) start from zero for every sample
        interp.set_input(sample, 0)
        interp.invoke()
        outs.append(np.array(interp.get_output(0), copy=True))
    out_shape = tuple(int(d) for d in det_out["shape"])
    return np.stack(outs).reshape((len(x),) + out_shape[1:])


@contextlib.contextmanager
def _capture_fds():
    """Capture what C++ code writes to file descriptors 1 and 2."""
    sys.stdout.flush()
    sys.stderr.flush()
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        saved = [os.dup(1), os.dup(2)]
        try:
            os.dup2(tmp.fileno(), 1)
            os.dup2(tmp.fileno(), 2)
            box: list[str] = []
            yield box
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
        tmp.seek(0)
        box.append(tmp.read().decode("utf-8", "replace"))


_ARENA = re.compile(r"Arena allocation (total|head|tail)\s+(\d+)\s+bytes")


def tflm_arena_usage(model_path) -> dict[str, int]:
    """TFLM's recording allocator: {"total", "head", "tail"} arena bytes after AllocateTensors."""
    runtime = _tflm()
    interp = runtime.Interpreter.from_file(str(_check_path(model_path)))
    with _capture_fds() as box:
        interp.print_allocations()
    found = {k: int(v) for k, v in _ARENA.findall(box[0] if box else "")}
    if "total" not in found:
        raise ToolError("could not read TFLite Micro's arena size from print_allocations()",
                        where=str(model_path), fix="Check the installed tflite-micro version")
    return found


def tflm_arena_bytes(model_path) -> int:
    """TFLM's arena total in bytes (3,984 for MLPerf Tiny ad01_int8)."""
    return tflm_arena_usage(model_path)["total"]


def litert_run(model_path, inputs: np.ndarray, *, xnnpack: bool = False) -> np.ndarray:
    """Run each sample of ``inputs`` [N, ...] through LiteRT (TFLite); return outputs [N, ...].

    By default LiteRT's builtin kernels run without the XNNPACK delegate: those are the kernels
    the TFLite numerics are defined by (XNNPACK quantizes the activations of dynamic-range
    "hybrid" layers differently).  ``xnnpack=True`` uses LiteRT's default delegates.
    """
    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
    except ImportError as e:  # pragma: no cover
        raise ToolError("LiteRT is not installed", fix="pip install ai-edge-litert") from e
    resolver = OpResolverType.AUTO if xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    interp = Interpreter(model_path=str(_check_path(model_path)), num_threads=1,
                         experimental_op_resolver_type=resolver)
    interp.allocate_tensors()
    di, do = interp.get_input_details()[0], interp.get_output_details()[0]
    x = _batch(inputs, di["shape"], di["dtype"])
    outs = []
    for sample in x:
        interp.reset_all_variables()  # state variables (an LSTM's) start from zero for every sample
        interp.set_tensor(di["index"], sample[None] if sample.shape != tuple(di["shape"]) else sample)
        interp.invoke()
        outs.append(np.array(interp.get_tensor(do["index"]), copy=True))
    return np.stack(outs).reshape((len(x),) + tuple(int(d) for d in do["shape"])[1:])
