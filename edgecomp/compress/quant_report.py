"""What int8 quantization cost, measured at compile time: the quantization report.

Every int8 compile of a float model ends with numbers a user can act on, like STM32Cube.AI's
validation or ONNX Runtime's QDQ debugging (``onnxruntime.quantization.qdq_loss_debug``):

* per layer, the signal-to-quantization-noise ratio (SQNR, dB) of the int8 output -- computed by
  :mod:`edgecomp.interp`, the integer reference the generated C equals -- against the float
  model's tensor (ONNX Runtime on the float model, every intermediate tensor exposed by
  ``qdq_loss_debug.modify_model_output_intermediate_tensors``), on a bounded number of
  calibration samples or of the user's ``--validate`` samples;
* end to end: top-1 agreement between int8 and float (classifiers; accuracy of both when labels
  are given), output SQNR and cosine similarity (any output);
* the layers left in float (which, why, what they cost);
* warnings for what goes wrong in practice: calibration data that does not look like the model's
  inputs (raw 0..255 pixels, already-quantized data, a range unlike the validation data), too few
  samples, a layer whose SQNR is far below the others (keep it in float or use int16), and
  end-to-end disagreement.  NaN / Inf in calibration data is refused (:func:`check_finite`).

The text form is `edgecomp.report.quantization_lines`.  The calibration checks run on the samples
after they are loaded (loading them safely is
:func:`edgecomp.compress.quantize.load_calibration`'s job).
"""
from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from .. import ir
from ..errors import ModelError

#: Fewer calibration samples than this gets a warning (ONNX Runtime's docs: a few hundred).
FEW_SAMPLES = 50
#: Samples the per-layer SQNR is measured on (calibration data), and at most for --validate ...
REPORT_SAMPLES = 64
VALIDATE_SAMPLES = 512
#: ... and at most this many MACs of inference in all (about 5 s), but never fewer than 16 samples.
REPORT_MACS = 500_000_000
MIN_REPORT_SAMPLES = 16
#: The model input quantized keeping less signal than this gets a warning.
LOW_INPUT_SQNR_DB = 20.0
#: A layer this many dB below the best layer's SQNR, having lost this many dB itself, is flagged.
LOW_SQNR_BELOW_BEST_DB = 10.0
LOW_SQNR_OWN_DROP_DB = 10.0
#: Int8 agreeing with float on fewer top-1 answers than this gets a warning.
LOW_AGREEMENT = 0.9
#: Shown for a tensor the integer computation reproduces exactly.
EXACT_DB = 99.0
#: Ops the C backend has no int8 kernel for in some configurations, and why they stay float.
FLOAT_REASONS = {
    "softmax": "TFLite's int8 softmax needs output scale 1/256 and zero point -128",
    "avg_pool2d": "input and output quantization differ (an int8 mean would round twice)",
    "batch_matmul": "a matmul with a constant operand of rank > 2 has no integer kernel yet: float32",
    "layer_norm": "LayerNormalization has no integer kernel yet: float32",
}


# --------------------------------------------------------------------------- calibration checks
def check_finite(samples: Iterable[np.ndarray], what: str = "calibration data", where: str | None = None) -> None:
    """Refuse NaN or Inf in ``samples`` with one clear message (ranges from them are meaningless)."""
    bad_total, first = 0, None
    for i, s in enumerate(samples):
        s = np.asarray(s)
        if s.dtype.kind not in "fc":
            continue
        bad = int(s.size - np.count_nonzero(np.isfinite(s)))
        if bad and first is None:
            first = i
        bad_total += bad
    if bad_total:
        raise ModelError(f"{what} holds {bad_total:,} NaN or infinite value(s) (the first in sample {first})",
                         where, "Remove or replace those samples (e.g. numpy.nan_to_num) before calibrating")


def _range(samples: list[np.ndarray]) -> tuple[float, float]:
    return (float(min(np.min(s) for s in samples)), float(max(np.max(s) for s in samples)))


def calibration_warnings(samples: list[np.ndarray], validate: list[np.ndarray] | None = None) -> list[str]:
    """Warnings about calibration data that would quantize the model for other inputs than its real ones."""
    out: list[str] = []
    n = len(samples)
    if n < FEW_SAMPLES:
        out.append(f"only {n} calibration sample{'s' if n != 1 else ''}: activation ranges from so few inputs can "
                   "clip real data; give a few hundred typical inputs (--calib)")
    lo, hi = _range(samples)
    whole = all(np.array_equal(s, np.round(s)) for s in samples)
    if lo == hi:
        out.append(f"every calibration value is {lo:g}: constant data gives the int8 ranges nothing to measure; "
                   "give real input samples")
    elif whole and 0 <= lo and 1 < hi <= 255:
        out.append(f"calibration samples are whole numbers in [{lo:g}, {hi:g}] (raw 8-bit data, e.g. uint8 "
                   "pixels?): if the model was trained on scaled inputs (x / 255, or normalized), calibrate with "
                   "inputs scaled the same way, or int8 accuracy drops without any error; ignore this if the "
                   "model takes 0..255")
    elif whole and -128 <= lo < 0 and 0 < hi <= 127:
        out.append(f"calibration samples are whole numbers in [{lo:g}, {hi:g}] (already int8-quantized data?): "
                   "give the float inputs the model was trained on")
    if validate:
        vlo, vhi = _range(validate)
        span, vspan = hi - lo, vhi - vlo
        if span > 0 and vspan > 0 and (span > 4 * vspan or vspan > 4 * span):
            out.append(f"calibration data spans [{lo:g}, {hi:g}] but the validation data spans [{vlo:g}, {vhi:g}]: "
                       "the int8 ranges come from the calibration data, so give calibration samples like the "
                       "real inputs")
    return out


# --------------------------------------------------------------------------- the report
def _float_activations_model(float_onnx: Path, work: Path) -> Path:
    """The float model with every float tensor also an output (ONNX Runtime's QDQ debugging helper)."""
    from onnxruntime.quantization.qdq_loss_debug import modify_model_output_intermediate_tensors

    out = work / "float.all.onnx"
    modify_model_output_intermediate_tensors(str(float_onnx), str(out))
    return out


def _save_suffix() -> str:
    """qdq_loss_debug's suffix for a saved (flattened) tensor."""
    from onnxruntime.quantization import qdq_loss_debug
    return getattr(qdq_loss_debug, "_TENSOR_SAVE_POSTFIX", "_ReshapeOutput")


def _float_name(graph: ir.Graph, tensor: str) -> str:
    """The float model's tensor that an int8 IR tensor quantizes (ORT's QDQ names: X_QuantizeLinear_Output)."""
    for suffix in ("_QuantizeLinear_Output",):
        if tensor.endswith(suffix):
            return tensor[: -len(suffix)]
    return tensor  # graph inputs and outputs keep their ONNX names


def _to_ir_layout(flat: np.ndarray, shape: tuple[int, ...]) -> np.ndarray | None:
    """A float tensor (NCHW, flattened by qdq_loss_debug) in the IR's NHWC shape, or None if it does not fit."""
    n = flat.size // max(1, math.prod(shape[1:])) if len(shape) > 1 else 1
    if flat.size != n * math.prod(shape[1:]):
        return None
    if len(shape) == 4:
        return flat.reshape(n, shape[3], shape[1], shape[2]).transpose(0, 2, 3, 1)
    return flat.reshape((n,) + tuple(shape[1:]))


def _dequantize(q: np.ndarray, quant: ir.QuantParams) -> np.ndarray:
    return (q.astype(np.float64) - float(quant.zero_point[0])) * float(quant.scale[0])


class _Acc:
    """Sums of squares for an SQNR over many samples (float64; no tensor kept)."""

    def __init__(self):
        self.signal = 0.0
        self.noise = 0.0

    def add(self, ref: np.ndarray, got: np.ndarray) -> None:
        ref = ref.astype(np.float64)
        self.signal += float(np.sum(ref * ref))
        self.noise += float(np.sum((ref - got) ** 2))

    def db(self) -> float | None:
        if self.signal <= 0:
            return None  # an all-zero tensor (a dead ReLU): no signal to compare
        if self.noise <= self.signal * 10 ** (-EXACT_DB / 10):
            return EXACT_DB
        return round(10 * math.log10(self.signal / self.noise), 1)


def _quantize_input(x: np.ndarray, graph: ir.Graph) -> np.ndarray:
    """Float samples (the float model's layout) -> the IR graph's input, exactly as ``edgecomp run`` and
    :func:`edgecomp.api.run_bundle` feed the firmware (the same function)."""
    from ..samples import quantize_input

    t = graph.t(graph.inputs[0])
    io = {"dtype": t.dtype, "quantization": t.quant.to_json() if t.quant is not None else None}
    if len(t.shape) == 4 and graph.meta.get("source_layout"):
        io["source_layout"] = graph.meta["source_layout"]
    io["source_layout"] = graph.meta.get("io_layouts", {}).get(graph.inputs[0], io.get("source_layout"))
    return quantize_input(np.asarray(x, np.float32), io)


def _permuted_tensors(graph: ir.Graph) -> set[str]:
    """Tensors whose element order differs from the float model's: a flatten of an NHWC tensor (the float
    model flattens NCHW) and what element-wise ops make of it, until a fully connected layer (whose
    weights the frontend permuted) brings the orders together again."""
    out: set[str] = set()
    for n in graph.nodes:
        src = [i for i in n.inputs if not graph.tensors[i].is_const]
        if n.op == "fully_connected":
            continue
        if n.op == "reshape" and src and len(graph.tensors[src[0]].shape) == 4 \
                and len(graph.tensors[n.outputs[0]].shape) != 4:
            out.add(n.outputs[0])
        elif any(i in out for i in src):
            out.add(n.outputs[0])
    return out


def float_layers(graph: ir.Graph, keep_float: Iterable[str] = (), reasons: dict[str, str] | None = None
                 ) -> list[dict[str, Any]]:
    """Layers of a quantized graph that compute in float32: which, why, and what it costs.
    ``reasons``: {node name: why} for layers edgecomp chose to leave in float (the output-resolution
    rule, compress/output_resolution.py)."""
    reasons = reasons or {}
    if not any(t.dtype in ("int8", "int16") for t in graph.tensors.values()):
        return []
    keep = set(keep_float)
    rows = []
    for n in graph.nodes:
        if n.op in ("quantize", "dequantize", "reshape") or graph.tensors[n.outputs[0]].dtype != "float32":
            continue
        weights = sum(graph.tensors[i].size for i in n.inputs[1:2] if graph.tensors[i].is_const)
        reason = ("--keep-float" if n.name in keep else reasons[n.name] if n.name in reasons else
                  FLOAT_REASONS.get(n.op, f"no integer kernel for {n.op} with these quantization parameters"))
        rows.append({"name": n.name, "op": n.op, "reason": reason, "float_macs": ir.macs(graph, n),
                     "extra_flash_bytes": 3 * weights,  # float32 weights instead of int8
                     "float_ram_bytes": graph.tensors[n.outputs[0]].nbytes})  # its float32 output tensor
    return rows


def quantization_report(float_onnx: str | Path, graph: ir.Graph, samples: list[np.ndarray], *,
                        data: str = "calibration", labels: np.ndarray | None = None,
                        keep_float: Iterable[str] = (), warnings: Iterable[str] = (),
                        reasons: dict[str, str] | None = None) -> dict[str, Any]:
    """Measure ``graph`` (int8, from ``float_onnx``) against the float model on ``samples`` (see the module doc)."""
    import onnxruntime as ort

    from .. import interp

    limit = VALIDATE_SAMPLES if data == "validation" else REPORT_SAMPLES
    limit = min(limit, max(MIN_REPORT_SAMPLES, REPORT_MACS // max(1, ir.total_macs(graph))))
    samples = [np.asarray(s, np.float32) for s in samples[:limit]]
    if labels is not None:
        labels = np.asarray(labels).reshape(-1)[: len(samples)]
    warns = list(warnings)
    report: dict[str, Any] = {"data": data, "samples": len(samples), "reference": "float32 model (ONNX Runtime)",
                              "int8": "edgecomp.interp (the generated C's integers)"}
    permuted = _permuted_tensors(graph)
    nodes = [n for n in graph.nodes if graph.tensors[n.outputs[0]].quant is not None
             and graph.tensors[n.outputs[0]].dtype in ("int8", "int16") and n.outputs[0] not in permuted]
    acc = {n.outputs[0]: _Acc() for n in nodes}
    in_acc = _Acc()
    out_name = graph.outputs[0]
    out_t = graph.t(out_name)
    f_out, q_out = [], []
    with tempfile.TemporaryDirectory(prefix="edgecomp-qreport-") as td:
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        so.intra_op_num_threads = 1  # the same sums every time: reproducible reports
        so.log_severity_level = 3
        sess = ort.InferenceSession(str(_float_activations_model(Path(float_onnx), Path(td))), so,
                                    providers=["CPUExecutionProvider"])
        in_name = sess.get_inputs()[0].name
        names = [o.name for o in sess.get_outputs()]
        suffix = _save_suffix()
        for s0 in range(0, len(samples), interp.CHUNK):
            chunk = samples[s0:s0 + interp.CHUNK]
            floats: dict[str, list[np.ndarray]] = {}
            for s in chunk:
                for name, v in zip(names, sess.run(None, {in_name: s})):
                    floats.setdefault(name, []).append(np.asarray(v))
            x = np.concatenate(chunk)
            xin = _quantize_input(x, graph)
            ints = interp.run(graph, {graph.inputs[0]: xin}, all_tensors=True)
            t_in = graph.t(graph.inputs[0])
            if t_in.quant is not None:
                nchw = x.ndim == 4 and graph.meta.get("source_layout") == "NCHW"
                ncw = x.ndim == 3 and graph.inputs[0] in graph.meta.get("io_layouts", {})
                xs = x.transpose(0, 2, 3, 1) if nchw else x.transpose(0, 2, 1)[:, None] if ncw else x
                in_acc.add(xs, _dequantize(xin, t_in.quant))
            for n in nodes:
                t = graph.tensors[n.outputs[0]]
                fname = _float_name(graph, n.outputs[0])
                vals = floats.get(fname + suffix) or floats.get(fname)
                if vals is None or n.outputs[0] not in ints:
                    continue
                ref = _to_ir_layout(np.concatenate([v.reshape(-1) for v in vals]), t.shape)
                if ref is None or ref.shape != ints[n.outputs[0]].shape:
                    continue
                acc[n.outputs[0]].add(ref, _dequantize(ints[n.outputs[0]], t.quant))
            fo = floats.get(_float_name(graph, out_name)) or floats.get(_float_name(graph, out_name) + suffix)
            if fo is not None:
                ref = _to_ir_layout(np.concatenate([v.reshape(-1) for v in fo]), out_t.shape)
                got = ints[out_name]
                got = _dequantize(got, out_t.quant) if out_t.quant is not None else got.astype(np.float64)
                if ref is not None and ref.shape == got.shape:
                    f_out.append(ref.reshape(len(chunk), -1))
                    q_out.append(got.reshape(len(chunk), -1))
    report["input_sqnr_db"] = in_acc.db()
    layers = []
    for n in nodes:
        db = acc[n.outputs[0]].db()
        if acc[n.outputs[0]].signal == 0 and acc[n.outputs[0]].noise == 0:
            continue  # not measured (no float counterpart)
        layers.append({"name": n.name, "op": n.op, "sqnr_db": db})
    report["layers"] = layers
    report["end_to_end"] = _end_to_end(f_out, q_out, labels)
    report["float_layers"] = float_layers(graph, keep_float, reasons)
    warns += _sqnr_warnings(graph, layers, report["input_sqnr_db"], report["float_layers"])
    if report["input_sqnr_db"] is not None and report["input_sqnr_db"] < LOW_INPUT_SQNR_DB:
        q = graph.t(graph.inputs[0]).quant
        warns.append(f"the model input keeps only {report['input_sqnr_db']:g} dB of the {data} samples' signal when "
                     f"quantized (scale {float(q.scale[0]):.4g}, zero point {int(q.zero_point[0])}, from the "
                     "calibration data): calibrate on data like these samples")
    e2e = report["end_to_end"]
    if e2e.get("top1_agreement") is not None and e2e["top1_agreement"] < LOW_AGREEMENT:
        warns.append(f"int8 and float agree on the top-1 answer for only {100 * e2e['top1_agreement']:.1f} % of "
                     f"the {data} samples: look at the layers with the lowest SQNR above, and at the calibration data")
    report["warnings"] = warns
    return report


def _end_to_end(f_out: list[np.ndarray], q_out: list[np.ndarray], labels: np.ndarray | None) -> dict[str, Any]:
    if not f_out:
        return {}
    f, q = np.concatenate(f_out).astype(np.float64), np.concatenate(q_out).astype(np.float64)
    a = _Acc()
    a.add(f, q)
    nf, nq = np.linalg.norm(f, axis=1), np.linalg.norm(q, axis=1)
    ok = (nf > 0) & (nq > 0)
    cos = float(np.mean(np.sum(f * q, axis=1)[ok] / (nf[ok] * nq[ok]))) if ok.any() else None
    out: dict[str, Any] = {"output_sqnr_db": a.db(), "cosine": None if cos is None else round(cos, 4)}
    if f.shape[1] >= 2:  # a classifier (or several outputs): compare the top-1 answers
        out["kind"] = "classifier"
        out["top1_agreement"] = round(float(np.mean(f.argmax(1) == q.argmax(1))), 4)
        if labels is not None and len(labels) == len(f):
            out["accuracy_float"] = round(float(np.mean(f.argmax(1) == labels)), 4)
            out["accuracy_int8"] = round(float(np.mean(q.argmax(1) == labels)), 4)
    else:
        out["kind"] = "regression"
    return out


def _sqnr_warnings(graph: ir.Graph, layers: list[dict], input_db: float | None, floats: list[dict]) -> list[str]:
    """A layer far below the best SQNR that lost much of it itself (not inherited from its inputs):
    name it and say what to do."""
    out = []
    sq = {l["name"]: l["sqnr_db"] for l in layers if l["sqnr_db"] is not None}
    if not sq:
        return out
    best = max(sq.values())
    producer = {n.outputs[0]: n for n in graph.nodes}

    def upstream(tensor: str, depth: int = 0) -> float | None:
        """The SQNR a tensor arrives with: its producer's, or (not measured: a reshape) its inputs'."""
        p = producer.get(tensor)
        if p is None:
            return input_db if tensor in graph.inputs else None
        if p.name in sq or depth > 64:
            return sq.get(p.name)
        got = [upstream(i, depth + 1) for i in p.inputs if not graph.tensors[i].is_const]
        got = [g for g in got if g is not None]
        return min(got) if got else None

    weighted = ("conv2d", "depthwise_conv2d", "fully_connected")
    for n in graph.nodes:
        db = sq.get(n.name)
        if db is None or db >= best - LOW_SQNR_BELOW_BEST_DB:
            continue
        ins = [d for d in (upstream(i) for i in n.inputs if not graph.tensors[i].is_const) if d is not None]
        if not ins or db > min(ins) - LOW_SQNR_OWN_DROP_DB:
            continue  # it inherited the loss from its inputs
        fix = (f"keep it in float (--keep-float {n.name}) or use --precision int16" if n.op in weighted
               else "use --precision int16 (int16 activations), or keep the layer before it in float")
        out.append(f"layer {n.name} ({n.op}) has an SQNR of {db:g} dB, far below the other layers (best {best:g} "
                   f"dB) and {min(ins) - db:.1f} dB below its input: {fix}")
    return out
