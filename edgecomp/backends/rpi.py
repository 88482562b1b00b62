"""Raspberry Pi backend: an ONNX Runtime (or LiteRT) bundle with a runner and a latency probe.

``write_rpi_bundle(model, "rpi4", out)`` writes, atomically::

    model.onnx | model.tflite   the model (float32, or int8 QDQ S8S8 from ORT's quantize_static)
    run.py                      standalone runner (numpy + the runtime only): .npy/.npz in, .npy out
    probe.py                    latency probe: warm-up, timed runs, thread sweep, CPU state, profile
    requirements.txt            pinned runtime with aarch64 wheels for CPython 3.11 and 3.13
    README.md                   for the person at the Pi
    manifest.json               target, runtime, inputs/outputs, quantization, sha256 of every file

The same model compiled twice gives the same bytes (no timestamps, no absolute paths).
The host side reads the probe's JSON back (:func:`read_probe`) and renders it as a table
(:func:`render_probe_table`) or a PNG chart (:func:`plot_probe`).
"""
from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

from ..bundle import atomic_dir, write_manifest
from ..errors import EdgecompError, ModelError, ToolError, UnsupportedError
from ..resources import templates_dir

# ---------------------------------------------------------------------------- pins
# onnxruntime: 1.27.0 is the newest release that we could run end to end as an aarch64
# build under QEMU 7.2 user mode (tests/test_rpi_aarch64.py runs the bundle there with
# -cpu cortex-a72, i.e. the Pi 4's instruction set).  Why not newer: 1.28-1.32 crash on
# import under qemu-aarch64 7.2: QEMU passes the host's x86 /proc/cpuinfo through to the
# guest, the newer pytorch/cpuinfo inside ORT then finds no Arm cores and dereferences NULL
# while reading the cache topology from /sys (SIGSEGV at address 0 right after reading
# /sys/devices/system/cpu/cpu1/cache/index2/shared_cpu_list).  The same 1.32 wheel imports
# fine once an aarch64 /proc/cpuinfo is bind-mounted, so a real Pi is not affected; we
# pin the version that our emulated check actually exercises.  Why not older than 1.22:
# 1.21.0's aarch64 wheel dies with SIGILL on the Pi 4's Cortex-A72 (onnxruntime issues
# #23957, #24112; reproduced here with qemu -cpu cortex-a72; fixed in 1.22).
ORT_PIN = "onnxruntime==1.27.0"
NUMPY_PIN = "numpy==2.2.6"
LITERT_PIN = "ai-edge-litert==2.3.0"

PIN_NOTE = (
    f"`{ORT_PIN}` and `{NUMPY_PIN}` have manylinux aarch64 wheels for CPython 3.11 and 3.13"
    f" (`{LITERT_PIN}` too, for .tflite bundles).  onnxruntime 1.27.0 is the newest release"
    " that edgecomp checks end to end as an aarch64 build (under `qemu-aarch64-static -cpu"
    " cortex-a72`, the Pi 4's instruction set, with Debian's arm64 Python 3.11): float32 outputs"
    " match the x86 build within 1e-5 and int8 outputs equal the exact QDQ arithmetic bit for bit"
    " (x86 ONNX Runtime on CPUs without VNNI can be a few LSB off, its u8s8 kernels saturate"
    " 16-bit pair sums; Arm's do not).  Releases 1.28 to 1.32 crash"
    " on import under QEMU 7.2's user mode because QEMU shows the guest the host's x86"
    " /proc/cpuinfo and the newer cpuinfo library inside onnxruntime then dereferences a"
    " NULL pointer while reading the cache topology; on a real Pi /proc/cpuinfo lists Arm"
    " cores and they import fine, but they are not what edgecomp tested.  Avoid 1.21.0:"
    " its aarch64 wheel uses instructions the Pi 4's Cortex-A72 lacks (Illegal instruction"
    " on import, onnxruntime issues #23957 and #24112; fixed in 1.22).  LiteRT (ai-edge-litert) carries the"
    " same cpuinfo library: under QEMU 7.2 it needs an Arm /proc/cpuinfo too, which edgecomp's tests"
    " provide (a Pi 4's, bind-mounted); on a Pi nothing is needed.")

QDQ_OPS = {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger",
           "DynamicQuantizeLinear"}
PROBE_SCHEMA = "edgecomp.rpi.probe/1"
TEMPLATE_FILES = ("run.py", "probe.py")


def _target(name: str):
    from ..targets import load_target
    tgt = load_target(name)
    if tgt.kind != "rpi":
        raise UnsupportedError(f"target {tgt.name!r} is a {tgt.kind} target, not a Raspberry Pi", where=tgt.path,
                               fix="Use --target rpi4 or rpi5 for an ONNX Runtime bundle")
    return tgt


def target_info(tgt) -> dict[str, Any]:
    raw = tgt.raw
    return {"name": tgt.name, "kind": tgt.kind, "description": tgt.description, "cpu": tgt.cpu, "arch": tgt.arch,
            "cores": int(raw.get("cores", 4)), "clock_hz": tgt.clock_hz, "dotprod": bool(raw.get("dotprod", False)),
            "i8mm": bool(raw.get("i8mm", False)), "fp16": bool(raw.get("fp16", False)),
            "os": dict(raw.get("os", {})), "qemu_cpu": raw.get("emulate", {}).get("qemu_cpu")}


def session_options(tgt) -> dict[str, Any]:
    s = {"graph_optimization_level": "all", "execution_mode": "sequential",
         "intra_op_num_threads": int(tgt.raw.get("cores", 4)), "inter_op_num_threads": 1}
    s.update(tgt.raw.get("session", {}))
    if s["graph_optimization_level"] not in ("disable", "basic", "extended", "all"):
        raise EdgecompError(f"session.graph_optimization_level {s['graph_optimization_level']!r} is not one of "
                            "disable, basic, extended, all", where=tgt.path, fix="Fix the target file")
    return s


# ---------------------------------------------------------------------------- model inspection
def onnx_is_quantized(model) -> bool:
    return any(n.op_type in QDQ_OPS for n in model.graph.node)


def _load_onnx(path: Path):
    """The model with its external data (confined to the model's folder, loaded into memory) and the
    checks any runtime needs (frontends/onnx/load.py: load_onnx, check_for_runtime)."""
    from ..frontends.onnx import check_for_runtime, load_onnx
    model = load_onnx(path)
    check_for_runtime(model, str(path))
    return model


def _uses_external_data(path: Path) -> bool:
    import onnx
    from onnx.external_data_helper import uses_external_data
    from ..frontends.onnx.load import _all_initializers
    model = onnx.load(str(path), load_external_data=False)  # load_onnx already refused a bad file
    return any(uses_external_data(t) for t in _all_initializers(model))


def _ort_io(path: Path) -> tuple[list[dict], list[dict]]:
    """Inputs/outputs as ONNX Runtime sees them; also proves ORT can load the model."""
    import numpy as np
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.log_severity_level = 3
    try:
        sess = ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])
    except Exception as e:
        raise UnsupportedError(f"ONNX Runtime cannot load the model: {str(e).splitlines()[0]}", where=str(path),
                               fix="Use ops and an opset ONNX Runtime supports (opset 13-21)") from None
    types = {"tensor(float)": "float32", "tensor(int8)": "int8", "tensor(uint8)": "uint8",
             "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(float16)": "float16",
             "tensor(double)": "float64", "tensor(bool)": "bool"}

    def one(a) -> dict:
        if a.type not in types:
            raise UnsupportedError(f"tensor {a.name!r} has type {a.type}", where=str(path),
                                   fix="Use float32 or int8 inputs and outputs")
        shape = [d if isinstance(d, int) else -1 for d in a.shape]
        return {"name": a.name, "shape": shape, "dtype": str(np.dtype(types[a.type])), "quantization": None}
    return [one(a) for a in sess.get_inputs()], [one(a) for a in sess.get_outputs()]


def _tflite_io(path: Path) -> tuple[list[dict], list[dict], dict]:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise ToolError("LiteRT is not installed", fix="pip install ai-edge-litert") from None
    try:
        interp = Interpreter(model_path=str(path))
        interp.allocate_tensors()
    except Exception as e:
        raise ModelError(f"LiteRT cannot load the model: {str(e).splitlines()[0] if str(e) else type(e).__name__}",
                         where=str(path), fix="Give a valid .tflite file (int8 or float32)") from None

    def one(d) -> dict:
        scale, zp = d.get("quantization", (0.0, 0))
        # same shape as ir.Quant.to_json() in Cortex-M manifests: per-tensor lists
        q = {"scale": [float(scale)], "zero_point": [int(zp)]} if scale else None
        return {"name": d["name"], "shape": [int(x) for x in d["shape"]], "dtype": str(d["dtype"].__name__),
                "quantization": q}
    ops: Counter = Counter()
    try:
        for op in interp._get_ops_details():
            ops[op["op_name"]] += 1
    except Exception:  # private API; the op census is informative only
        pass
    return [one(d) for d in interp.get_input_details()], [one(d) for d in interp.get_output_details()], dict(ops)


def _tflite_params(path: Path) -> int | None:
    """Elements of the constant tensors (weights, biases) of a .tflite model."""
    try:
        import tflite
        import numpy as np
        m = tflite.Model.GetRootAsModel(path.read_bytes(), 0)
        total = 0
        for si in range(m.SubgraphsLength()):
            g = m.Subgraphs(si)
            for ti in range(g.TensorsLength()):
                t = g.Tensors(ti)
                b = m.Buffers(t.Buffer()) if t.Buffer() < m.BuffersLength() else None
                if b is not None and (b.DataLength() > 0 or b.Size() > 0):
                    total += int(np.prod(t.ShapeAsNumpy())) if t.ShapeLength() else 1
        return total
    except Exception:  # informative only; LiteRT has already accepted the file
        return None


def _quantize(src: Path, calib: Any, out: Path, method: str, per_channel: bool) -> Path:
    from ..compress.quantize import quantize_onnx
    _load_onnx(src)  # every check before calibration runs the model
    try:
        return quantize_onnx(src, calib, out, method=method, per_channel=per_channel, progress=False)
    except EdgecompError:
        raise
    except Exception as e:  # ORT's quantizer on a model it cannot handle
        raise UnsupportedError(f"int8 quantization failed: {str(e).splitlines()[0] if str(e) else type(e).__name__}",
                               where=str(src), fix="Try --precision float32, or check the calibration samples") from None


# ---------------------------------------------------------------------------- the bundle
def _render(template: str, **ctx) -> str:
    from ..resources import template_env
    return template_env("rpi").get_template(template).render(**ctx)


def write_rpi_bundle(model_path: str | Path, target_name: str, out_dir: str | Path, *, calib: Any = None,
                     calibrate_method: str = "minmax", precision: str = "int8",
                     options: dict | None = None, force: bool = False, extra: dict | None = None) -> dict:
    """Compile a float .onnx (quantized here when precision is int8), a QDQ .onnx or a .tflite
    into a Raspberry Pi bundle at ``out_dir``; return the manifest.  ``force`` and ``extra``: as
    :func:`edgecomp.backends.cortex_m.write_bundle`."""
    from .. import __version__
    options = dict(options or {})
    precision = options.get("precision", precision)
    calibrate_method = options.get("calibrate_method", calibrate_method)
    per_channel = bool(options.get("per_channel", True))
    if precision not in ("int8", "float32"):
        raise ModelError(f"unknown precision {precision!r}", fix="Use int8 or float32")
    tgt = _target(target_name)
    src = Path(model_path)
    if not src.is_file():
        raise ModelError(f"model file {src} does not exist", fix="Check the path")
    suffix = src.suffix.lower()
    if suffix not in (".onnx", ".tflite"):
        raise ModelError(f"unknown model format {suffix!r}", where=str(src), fix="Give a .onnx or .tflite file")
    name = src.stem
    for tail in (".int8", ".float", ".fp32", ".qdq"):
        if name.endswith(tail) and len(name) > len(tail):
            name = name[: -len(tail)]
    name = options.pop("name", name)
    from .cortex_m import check_model_name
    check_model_name(str(name))  # the same rule as the C path: it names files and folders

    from .. import workdirs
    from ..sanitize import markdown_code

    with workdirs.work_dir("rpi") as td:
        embedded = None
        if suffix == ".onnx":
            model = _load_onnx(src)
            if _uses_external_data(src):
                # the bundle holds one self-contained model.onnx (its external data, checked and loaded
                # from the model's own folder, embedded), so what the manifest lists is all the Pi needs
                import onnx
                from onnx.external_data_helper import convert_model_from_external_data
                convert_model_from_external_data(model)
                embedded = Path(td) / "model.embedded.onnx"
                try:
                    onnx.save(model, str(embedded))
                except ValueError as e:
                    raise ModelError(f"the model with its external data does not fit one ONNX file ({e})",
                                     where=str(src), fix="Models for a Raspberry Pi bundle must be under 2 GB") from None
                src = embedded
            quantized = onnx_is_quantized(model)
            if precision == "int8" and not quantized:
                if calib is None:
                    raise ModelError("int8 quantization needs calibration data", where=str(src),
                                     fix="Pass --calib samples.npy (a few hundred typical inputs), or --precision float32")
                src = _quantize(src, calib, Path(td) / "model.int8.onnx", calibrate_method, per_channel)
                model = _load_onnx(src)
                quantized = True
            inputs, outputs = _ort_io(src)
            ops = dict(sorted(Counter(n.op_type for n in model.graph.node).items()))
            import numpy as np
            params = int(sum(np.prod(i.dims, dtype=np.int64) for i in model.graph.initializer))
            runtime = {"name": "onnxruntime", "model_file": "model.onnx", "session": session_options(tgt)}
            reqs = [NUMPY_PIN, ORT_PIN]
            eff_precision = "int8" if quantized else "float32"
            precision_note = ("int8 QDQ, S8S8: int8 weights symmetric per channel, int8 activations"
                              if quantized else "float32")
            runtime_title, runtime_package = "ONNX Runtime", "onnxruntime"
        else:
            inputs, outputs, ops = _tflite_io(src)
            params = _tflite_params(src)
            runtime = {"name": "litert", "model_file": "model.tflite",
                       "session": {"intra_op_num_threads": int(tgt.raw.get("cores", 4))}}
            reqs = [NUMPY_PIN, LITERT_PIN]
            eff_precision = "int8" if any(io["dtype"] == "int8" for io in inputs) else "float32"
            precision_note = "TensorFlow Lite flatbuffer, " + eff_precision
            runtime_title, runtime_package = "LiteRT", "ai-edge-litert"
        runtime["requirements"] = reqs
        info = target_info(tgt)
        info["cpu_title"] = tgt.cpu.replace("cortex", "Cortex").replace("-a", "-A")
        info["dotprod_note"] = ("has the int8 dot-product instructions (SDOT/UDOT) that ONNX Runtime's int8 "
                                "kernels use, so int8 gains the most here" if info["dotprod"] else
                                "no int8 dot-product instructions (Armv8.0), so int8 speed-ups over "
                                "float32 are smaller than on a Pi 5")
        out_dir = Path(out_dir)
        with atomic_dir(out_dir, force=force) as tmp:
            shutil.copyfile(src, tmp / runtime["model_file"])
            for f in TEMPLATE_FILES:
                shutil.copyfile(templates_dir() / "rpi" / f, tmp / f)
            (tmp / "requirements.txt").write_text(_render("requirements.txt.j2", requirements=reqs))
            # model-derived text (names, shapes) goes into the README only as Markdown code spans
            # that render literally (no new line, heading, link or HTML can start inside one)
            # (dtypes come from a fixed list, shapes are integers, the name passed check_model_name)
            def md_io(ios):
                return [{**io, "name": markdown_code(io["name"])} for io in ios]
            (tmp / "README.md").write_text(_render(
                "README.md.j2", name=name, target=info, tool_version=__version__,
                precision=eff_precision, runtime_title=runtime_title, runtime_package=runtime_package,
                model_file=runtime["model_file"], precision_note=precision_note, inputs=md_io(inputs),
                outputs=md_io(outputs), pin_note=PIN_NOTE))
            info.pop("cpu_title")
            info.pop("dotprod_note")
            # a .tflite keeps its own precision (it is not re-quantized): record what the bundle holds
            options["precision"] = eff_precision if suffix == ".tflite" else precision
            data = {"name": name, "target": tgt.name, "target_info": info, "kind": "rpi", "runtime": runtime,
                    "precision": eff_precision, "options": _jsonable(options), "inputs": inputs,
                    "outputs": outputs, "ops": ops, "layers": []}
            if params is not None:
                data["params"] = params
            data.update(extra or {})
            manifest = write_manifest(tmp, data)
    return manifest


def _jsonable(d: dict) -> dict:
    out = {}
    for k, v in sorted(d.items()):
        if isinstance(v, (str, int, float, bool)) or v is None:
            out[k] = v
        elif isinstance(v, (list, tuple)):
            out[k] = [x if isinstance(x, (str, int, float, bool)) else str(x) for x in v]
        else:
            out[k] = str(v)
    return out


# ---------------------------------------------------------------------------- probe results on the host
def read_probe(data: str | bytes | Path | dict, where: str = "probe output") -> dict:
    """Parse and check the probe's JSON (text, path or dict)."""
    if isinstance(data, Path):
        where = str(data)
        data = data.read_text()
    if not isinstance(data, dict):
        try:
            data = json.loads(data)
        except (ValueError, TypeError) as e:
            raise ToolError(f"the probe did not return JSON ({e})", where=where,
                            fix="Run probe.py on the device by hand to see its error") from None
    if not isinstance(data, dict) or data.get("schema") != PROBE_SCHEMA or not isinstance(data.get("results"), list):
        raise ToolError("the probe's JSON is not an edgecomp probe result", where=where,
                        fix="Compile the bundle again with this edgecomp version")
    for r in data["results"]:
        if not isinstance(r, dict) or not all(isinstance(r.get(k), (int, float)) for k in
                                              ("threads", "p50_ms", "p90_ms", "p99_ms", "mean_ms", "min_ms")):
            raise ToolError("the probe's JSON lacks latency fields", where=where,
                            fix="Compile the bundle again with this edgecomp version")
    return data


def _system_line(s: Any) -> str:
    """'governor performance, 1500 MHz (max 1800), 52.1 C, throttled 0x0' with what is known only."""
    from ..sanitize import terminal_text

    if not isinstance(s, dict):
        return ""
    t = lambda v: terminal_text(v, limit=40)  # noqa: E731
    parts = []
    if s.get("governor") is not None:
        parts.append(f"governor {t(s['governor'])}")
    if s.get("freq_mhz") is not None:
        parts.append(f"{t(s['freq_mhz'])} MHz" + (f" (max {t(s['max_freq_mhz'])})"
                                                   if s.get("max_freq_mhz") is not None else ""))
    elif s.get("max_freq_mhz") is not None:
        parts.append(f"max {t(s['max_freq_mhz'])} MHz")
    if s.get("temp_c") is not None:
        parts.append(f"{t(s['temp_c'])} C")
    if s.get("throttled") is not None:
        parts.append(f"throttled {t(s['throttled'])}")
    return ", ".join(parts)


def render_probe_table(probe: dict) -> str:
    """The probe result as a markdown table (latency per thread count, then CPU state, profile, accuracy)."""
    from ..sanitize import terminal_text

    p = read_probe(probe)
    t = lambda v: terminal_text(v, limit=80)  # noqa: E731 - the device's text reaches the terminal escaped
    head = (f"{t(p.get('model', 'model'))} on {t(p.get('cpu_model') or p.get('machine', '?'))}: "
            f"{t(p.get('runtime', '?'))} {t(p.get('runtime_version', ''))}, {t(p.get('precision') or '?')}, "
            f"Python {t(p.get('python', '?'))}")
    lines = [head, "", "| threads | p50 ms | p90 ms | p99 ms | mean ms | min ms | runs |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for r in p["results"]:
        lines.append(f"| {r['threads']} | {r['p50_ms']:.3f} | {r['p90_ms']:.3f} | {r['p99_ms']:.3f} | "
                     f"{r['mean_ms']:.3f} | {r['min_ms']:.3f} | {r.get('runs', '?')} |")
    sysinfo = p.get("system") or {}
    for when in ("before", "after"):
        line = _system_line(sysinfo.get(when) if isinstance(sysinfo, dict) else None)
        if line:
            lines.append(f"\n{when}: {line}")
    if p.get("profile"):
        lines += ["", "| op type | nodes | time us | share |", "|---|---:|---:|---:|"]
        for r in p["profile"]:
            lines.append(f"| {t(r['op_type'])} | {t(r['nodes'])} | {t(r['total_us'])} | {100 * r['share']:.1f}% |")
    if p.get("accuracy"):
        a = p["accuracy"]
        lines.append(f"\naccuracy: {a['correct']}/{a['samples']} = {100 * a['top1']:.2f}% top-1")
    return "\n".join(lines)


def plot_probe(probe: dict, png: str | Path) -> Path | None:
    """Bar chart of p50 latency per thread count (p90/p99 as marks); None without matplotlib."""
    from ..sanitize import terminal_text

    p = read_probe(probe)
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    rs = p["results"]
    xs = [str(r["threads"]) for r in rs]
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=100)
    ax.bar(xs, [r["p50_ms"] for r in rs], color="#4878a8", label="p50")
    ax.scatter(xs, [r["p90_ms"] for r in rs], color="#e08020", marker="_", s=400, label="p90", zorder=3)
    ax.scatter(xs, [r["p99_ms"] for r in rs], color="#c03030", marker="_", s=400, label="p99", zorder=3)
    ax.set_xlabel("threads")
    ax.set_ylabel("latency (ms)")
    ax.set_title(terminal_text(f"{p.get('model', 'model')}: {p.get('runtime', '')} on "
                               f"{p.get('cpu_model') or p.get('machine', '')}", limit=120),
                 fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    if hasattr(png, "write"):  # a file object (edgecomp deploy writes the bytes itself, never through a link)
        fig.savefig(png, format="png")
    else:
        png = Path(png)
        fig.savefig(png)
    plt.close(fig)
    return png
