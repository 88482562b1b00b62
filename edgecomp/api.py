"""The Python API behind the CLI: model in, bundle out, bundle run.

    from edgecomp import api
    manifest = api.compile_model(net, "cortex-m4", "out/bundle", example_input=x[:1], calib=x_train[:200])
    result = api.run_bundle("out/bundle", x_test)          # QEMU (or host gcc for target "host")
    logits = result.outputs_float
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import ir
from .errors import EdgecompError, ModelError
from .samples import dequantize_output, quantize_input  # noqa: F401  (part of the API)

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
                 calibrate_method: str = "minmax", per_channel: bool = True, keep_float=(), validate=None,
                 notes: dict | None = None, runtime: bool = False) -> Path:
    """Return the ONNX file to lower: exported from torch and/or quantized with ORT as asked.

    Calibration executes the model, so every check that can refuse it runs first: the C
    backend's full import (structure, ops, attribute bounds, shapes: the float path's checks),
    or with ``runtime=True`` (ONNX Runtime targets) the checks that hold for any runtime
    (:func:`edgecomp.frontends.onnx.check_for_runtime`).  Calibration itself then runs in a
    child process with time and memory limits (compress/calibrate.py).

    ``notes`` (a dict), when given, receives what the quantization report needs: ``float_onnx``
    (the float model quantized), ``samples`` (calibration, loaded), ``validate`` (loaded),
    ``warnings`` (about the calibration data) and ``auto_float`` ({layer: reason} of the output means
    the output-resolution rule left in float, int8 only: compress/output_resolution.py; the rule
    applies only when ``notes`` is given, so that its reason reaches the report).
    """
    from .compress.quantize import quantize_onnx
    from .frontends.onnx import check_for_runtime, from_onnx, load_onnx
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
    check_for_runtime(load_onnx(src), str(src))
    if not runtime:
        from_onnx(src)  # the C backend's full checks: refuses in seconds what calibration would run (or hang on)
    samples, checked = _checked_calibration(src, calib, validate)
    if notes is not None:
        notes.update(checked)
    # the output-resolution rule, where its decisions reach the report (notes)
    auto_float: dict | None = {} if precision == "int8" and notes is not None else None
    out = quantize_onnx(src, samples, workdir / f"model.{precision}.onnx", method=calibrate_method,
                        per_channel=per_channel, keep_float=keep_float or (),
                        activations="int16" if precision == "int16" else "int8", auto_float=auto_float)
    if auto_float:
        notes["auto_float"] = auto_float
    return out


def _checked_calibration(src: Path, calib: Any, validate: Any = None) -> tuple[list[np.ndarray], dict]:
    """Load the calibration (and validation) samples, refuse NaN/Inf, warn about data unlike the model's inputs."""
    import onnx

    from .compress.quant_report import calibration_warnings, check_finite
    from .compress.quantize import _input_info, load_calibration

    name, shape = _input_info(onnx.load(str(src), load_external_data=False))
    where = str(calib) if isinstance(calib, (str, Path)) else None
    samples = load_calibration(calib, name, shape)
    check_finite(samples, "calibration data", where)
    val = None
    if validate is not None:
        val = load_calibration(validate, name, shape)
        check_finite(val, "validation data", str(validate) if isinstance(validate, (str, Path)) else None)
    warns = calibration_warnings(samples, val)
    for w in warns:
        print(f"edgecomp: warning: {w}", file=sys.stderr)
    return samples, {"float_onnx": src, "samples": samples, "validate": val, "warnings": warns}


def _labels(labels: Any, n: int | None) -> np.ndarray | None:
    """--labels: one integer class per validation sample."""
    if labels is None:
        return None
    where = str(labels) if isinstance(labels, (str, Path)) else None
    if where is not None:
        try:
            labels = np.load(where, allow_pickle=False)
        except Exception as e:
            raise ModelError(f"cannot read the labels: {str(e)[:200]}", where, "Give a .npy of integer classes") from None
    y = np.asarray(labels)
    if y.ndim == 2 and y.shape[1] > 1:  # one-hot
        y = y.argmax(1)
    if y.ndim != 1 or y.dtype.kind not in "iub":
        raise ModelError(f"labels must be one integer class per sample, got {y.dtype} of shape {y.shape}", where,
                         "Give a 1-D .npy of class indices (--labels)")
    if n is not None and len(y) != n:
        raise ModelError(f"{len(y)} labels for {n} validation samples", where, "Give one label per --validate sample")
    return y


def load_graph(model: Any, workdir: Path, *, dump_ir: str | Path | None = None, **kw) -> tuple[ir.Graph, Path]:
    """Any supported model -> (canonical IR graph, the model file it came from)."""
    from .pipeline import import_model
    if not _is_torch_module(model) and Path(str(model)).suffix.lower() == ".tflite":
        return import_model(model, dump=dump_ir), Path(model)
    path = prepare_onnx(model, workdir, **kw)
    name = Path(str(model)).stem if not _is_torch_module(model) else type(model).__name__.lower()
    return import_model(path, name=name, dump=dump_ir), path


def check_output_writable(out_dir: str | Path) -> None:
    """Find out now, before any work, that the bundle can be written where it is asked for.

    The nearest existing folder above ``out_dir`` must be a folder in which a folder can be made
    (tried for real: as root, access(2) says yes on /proc and /sys and cannot be trusted).
    """
    out = Path(os.path.abspath(out_dir))
    parent = out.parent
    while not os.path.lexists(parent) and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise EdgecompError(f"cannot write the bundle {out}: {parent} is not a folder",
                            fix="Choose an output folder (-o) whose parent is a folder")
    try:
        probe = tempfile.mkdtemp(prefix=".edgecomp-write-test-", dir=parent)
        os.rmdir(probe)
    except OSError as e:
        raise EdgecompError(f"cannot write the bundle {out}: {e.strerror} in {parent}",
                            fix="Choose an output folder (-o) you can write to") from None


def compile_model(model: Any, target: str, out_dir: str | Path, *, example_input=None, calib=None,
                  precision: str = "int8", calibrate_method: str = "minmax", per_channel: bool = True,
                  options: dict | None = None, keep_onnx: str | Path | None = None, keep_float=None,
                  force: bool = False, validate=None, labels=None, dump_ir: str | Path | None = None) -> dict:
    """Compile ``model`` (nn.Module, .onnx or .tflite) for ``target`` into ``out_dir``; return the manifest.

    ``dump_ir``: a folder to write the graph into after every pass of the pipeline (debugging).

    ``keep_float``: layers left in float32 in an otherwise int8 model (mixed precision; see
    :func:`edgecomp.compress.quantize.resolve_layers` for how they are named).
    ``out_dir`` follows the output-folder rule of :mod:`edgecomp.outputs`, checked before any
    work: a missing, empty or edgecomp-written folder is replaced, anything else refused unless
    ``force`` (then written into, deleting only what edgecomp wrote).
    An int8 compile of a float model measures itself (:mod:`edgecomp.compress.quant_report`) on the
    calibration samples, or on ``validate`` (samples) with ``labels`` (classes): the manifest's
    ``quantization`` entry.
    """
    from .outputs import check_output_dir
    check_output_dir(out_dir, force=force)
    if isinstance(keep_float, str):
        keep_float = [k for k in keep_float.split(",") if k.strip()]
    keep_float = list(keep_float or [])
    opts = {"precision": precision, "calibrate_method": calibrate_method, "per_channel": per_channel,
            **({"keep_float": keep_float} if keep_float else {}), **(options or {})}
    if validate is None and labels is not None:
        raise ModelError("labels without validation samples", "--labels", "Give --validate X.npy with --labels Y.npy")
    labels = _labels(labels, None)  # a bad labels file is found before calibration
    from .refusals import both_paths
    if not _is_torch_module(model):
        with both_paths():
            _check_model_file(Path(model))
    check_output_writable(out_dir)
    from .targets import load_target
    tgt = load_target(target)
    if getattr(tgt, "kind", "mcu") != "rpi" and opts.get("kernels"):  # e.g. --kernels mve without MVE: refused now
        from .options import CodegenOptions
        CodegenOptions.for_target(tgt.dsp, opts["kernels"], None, target_mve=tgt.mve, target_name=tgt.name)
    notes: dict = {}
    from . import workdirs

    with workdirs.work_dir("compile") as work, both_paths():
        if getattr(tgt, "kind", "mcu") == "rpi":
            from .backends.rpi import write_rpi_bundle
            if precision == "int16":
                from .errors import UnsupportedError
                raise UnsupportedError("int16 activations on a Raspberry Pi target", where=f"target {tgt.name}",
                                       fix="Use --precision int8 or float32 there (int16 is for the C backend)")
            if _is_torch_module(model) or Path(str(model)).suffix.lower() != ".tflite":
                src = prepare_onnx(model, work, example_input=example_input, calib=calib, precision=precision,
                                   calibrate_method=calibrate_method, per_channel=per_channel, keep_float=keep_float,
                                   validate=validate, notes=notes, runtime=True)
            else:
                src = Path(model)
            name = type(model).__name__.lower() if _is_torch_module(model) else Path(str(model)).stem
            extra = _report(None, src, notes, labels, keep_float, precision)
            return write_rpi_bundle(src, tgt.name, out_dir, options={**opts, "name": name}, force=force,
                                    extra=extra)
        graph, src = load_graph(model, work, example_input=example_input, calib=calib, precision=precision,
                                calibrate_method=calibrate_method, per_channel=per_channel, keep_float=keep_float,
                                validate=validate, notes=notes, dump_ir=dump_ir)
        if keep_onnx is not None and src.suffix == ".onnx":
            shutil.copyfile(src, keep_onnx)
        extra = _report(graph, src, notes, labels, keep_float, precision)
        from .pipeline import compile_c
        return compile_c(graph, tgt, Path(out_dir), opts, dump=dump_ir, force=force, extra=extra)


def _report(graph: ir.Graph | None, src: Path, notes: dict, labels: Any, keep_float, precision: str) -> dict:
    """The manifest's ``quantization`` entry (empty for a float32 compile)."""
    from .compress.quant_report import float_layers, quantization_report

    if precision == "float32" or (graph is not None and not graph.quantized):
        if notes.get("validate") is not None:
            print("edgecomp: warning: --validate measures int8 quantization; this compile is float32", file=sys.stderr)
        return {}
    if graph is None:  # a Raspberry Pi bundle runs the QDQ file: measure its integer form
        try:
            from .frontends.onnx import from_onnx
            graph = from_onnx(src)
        except EdgecompError as e:
            return {"quantization": {"note": f"not measured: {e.what}", "warnings": notes.get("warnings", [])}}
    if not graph.quantized:
        return {}
    if "float_onnx" not in notes:  # the model came quantized: nothing to compare with
        return {"quantization": {"note": "the model came quantized: no float model to measure it against",
                                 "float_layers": float_layers(graph), "warnings": []}}
    if precision != "int8":
        return {"quantization": {"note": f"{precision}: per-layer SQNR is measured for int8 only",
                                 "warnings": notes.get("warnings", [])}}
    import onnx

    from .compress.quantize import resolve_layers
    kept = resolve_layers(onnx.load(str(notes["float_onnx"]), load_external_data=False), keep_float) \
        if keep_float else []
    val = notes.get("validate")
    y = _labels(labels, len(val) if val is not None else None)  # the count, now that the samples are loaded
    return {"quantization": quantization_report(
        notes["float_onnx"], graph, val if val is not None else notes["samples"],
        data="validation" if val is not None else "calibration", labels=y, keep_float=kept,
        reasons=notes.get("auto_float", {}), warnings=notes.get("warnings", []))}


# --------------------------------------------------------------------------- running
@dataclass
class Prediction:
    outputs: Any  # raw outputs (int8 or float32), batch first, in the source model's layout (several: a dict by name)
    outputs_float: Any  # dequantized
    result: Any  # backends.run.RunResult (ticks, unit, stack peak, ...)


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
    if isinstance(x, dict) or len(man["inputs"]) > 1 or len(man["outputs"]) > 1:
        return _run_several(bundle, man, x, emulate=emulate, progress=progress, cycles=cycles, clock_hz=clock_hz)
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


def _run_several(bundle: Path, man: dict, x: Any, **kw) -> Prediction:
    """run_bundle for a model of several inputs or outputs: ``x`` a dict {input name: samples [N, ...]}
    (one array is taken for a model of one input); the Prediction's outputs are dicts by output name."""
    from .backends.run import run_bundle as _run

    names = [io["name"] for io in man["inputs"]]
    if not isinstance(x, dict):
        if len(names) != 1:
            raise EdgecompError(f"the model takes {len(names)} inputs ({', '.join(names)})", where=str(bundle),
                                fix="Pass a dict {input name: samples [N, ...]}")
        x = {names[0]: x}
    if sorted(x) != sorted(names):
        raise EdgecompError(f"inputs {sorted(x)} given, the model takes {names}", where=str(bundle),
                            fix="Pass one array per input name (edgecomp run --input file.npz: one array per name)")
    xins = []
    for io in man["inputs"]:
        xi = quantize_input(x[io["name"]], io)
        if tuple(xi.shape[1:]) != tuple(io["shape"][1:]):
            raise EdgecompError(f"input {io['name']!r} samples have shape {tuple(np.shape(x[io['name']])[1:])}, "
                                f"the bundle expects {tuple(io['shape'][1:])}",
                                fix="Give samples of the model's input shape with the batch axis first")
        xins.append(xi)
    res = _run(bundle, xins, **kw)
    outs, floats = {}, {}
    for io, o in zip(man["outputs"], res.outputs):
        o = np.asarray(o).reshape((len(xins[0]),) + tuple(io["shape"][1:]))
        if io.get("source_layout") == "NCHW" and o.ndim == 4:
            o = o.transpose(0, 3, 1, 2)
        outs[io["name"]], floats[io["name"]] = o, dequantize_output(o, io)
    return Prediction(outs, floats, res)
