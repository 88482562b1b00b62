#!/usr/bin/env python3
"""Run this bundle's model on the Raspberry Pi (or any machine with the pinned runtime).

    python3 run.py INPUT.npy [-o OUT_DIR] [--threads N]

INPUT is a ``.npy`` array (samples for the model's single input, with or without
the batch axis) or a ``.npz`` archive (one array per input name; a lone array is
taken for a single-input model).  Each output is written to ``OUT_DIR/<name>.npy``
(default ``outputs/``).  Samples are run one at a time when the model has a fixed
batch of 1.

Needs only numpy and the runtime named in manifest.json (onnxruntime for
``model.onnx``, ai-edge-litert for ``model.tflite``), see requirements.txt.
Written by edgecomp; edgecomp itself is not needed here.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def load_manifest(bundle_dir: str = HERE) -> dict:
    with open(os.path.join(bundle_dir, "manifest.json")) as f:
        return json.load(f)


class Model:
    """One loaded model: ``run(feeds) -> list of outputs`` for ONNX Runtime or LiteRT."""

    def __init__(self, bundle_dir: str = HERE, threads: int | None = None, profile: bool = False):
        self.manifest = load_manifest(bundle_dir)
        rt = self.manifest["runtime"]
        self.runtime = rt["name"]
        self.inputs = self.manifest["inputs"]
        self.outputs = self.manifest["outputs"]
        path = os.path.join(bundle_dir, rt["model_file"])
        threads = threads or rt.get("session", {}).get("intra_op_num_threads") or None
        self.threads = threads
        if self.runtime == "onnxruntime":
            import onnxruntime as ort
            self.version = ort.__version__
            so = ort.SessionOptions()
            sess = rt.get("session", {})
            level = {"disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
                     "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                     "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                     "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}[sess.get("graph_optimization_level", "all")]
            so.graph_optimization_level = level
            so.execution_mode = (ort.ExecutionMode.ORT_PARALLEL if sess.get("execution_mode") == "parallel"
                                 else ort.ExecutionMode.ORT_SEQUENTIAL)
            if threads:
                so.intra_op_num_threads = int(threads)
            so.inter_op_num_threads = int(sess.get("inter_op_num_threads", 1))
            so.log_severity_level = 3
            if profile:
                so.enable_profiling = True
                so.profile_file_prefix = os.path.join(bundle_dir, "ort_profile")
            self.session = ort.InferenceSession(path, sess_options=so, providers=["CPUExecutionProvider"])
            self.input_names = [i.name for i in self.session.get_inputs()]
        elif self.runtime == "litert":
            from ai_edge_litert.interpreter import Interpreter
            try:
                from importlib.metadata import version
                self.version = version("ai-edge-litert")
            except Exception:  # metadata missing (unzipped wheel): not fatal
                self.version = "unknown"
            self.interp = Interpreter(model_path=path, num_threads=int(threads) if threads else None)
            self.interp.allocate_tensors()
            self.in_details = self.interp.get_input_details()
            self.out_details = self.interp.get_output_details()
            self.input_names = [d["name"] for d in self.in_details]
        else:
            raise SystemExit(f"run.py: unknown runtime {self.runtime!r} in manifest.json")

    def run(self, feeds: dict) -> list:
        if self.runtime == "onnxruntime":
            return self.session.run(None, feeds)
        for d in self.in_details:
            self.interp.set_tensor(d["index"], feeds[d["name"]])
        self.interp.invoke()
        return [self.interp.get_tensor(d["index"]).copy() for d in self.out_details]

    def end_profiling(self) -> str | None:
        if self.runtime == "onnxruntime":
            return self.session.end_profiling()
        return None


def quantize(x: np.ndarray, io: dict) -> np.ndarray:
    """Float samples -> the integer input of an int8 model (its scale and zero point)."""
    q = io.get("quantization") or {}
    scale, zp = np.ravel(q["scale"])[0], np.ravel(q["zero_point"])[0]  # per-tensor: lists of one
    info = np.iinfo(np.dtype(io["dtype"]))
    y = np.round(x.astype(np.float64) / scale) + zp
    return np.clip(y, info.min, info.max).astype(io["dtype"])


def as_input(x: np.ndarray, io: dict) -> np.ndarray:
    """Add the batch axis if missing; cast or quantize to the input's dtype."""
    shape = io["shape"]
    if x.ndim == len(shape) - 1:
        x = x[None]
    if x.ndim != len(shape):
        raise SystemExit(f"run.py: input {io['name']!r} wants {len(shape)} dimensions {shape}, got shape {list(x.shape)}")
    for i, (want, got) in enumerate(zip(shape[1:], x.shape[1:])):
        if isinstance(want, int) and want > 0 and want != got:
            raise SystemExit(f"run.py: input {io['name']!r} wants shape {shape}, got {list(x.shape)} (axis {i + 1})")
    dt = np.dtype(io["dtype"])
    if dt.kind in "iu" and x.dtype.kind == "f" and io.get("quantization"):
        return quantize(x, io)
    return x.astype(dt, copy=False)


def load_inputs(path: str, inputs: list) -> dict:
    data = np.load(path, allow_pickle=False)
    if isinstance(data, np.ndarray):
        if len(inputs) != 1:
            raise SystemExit(f"run.py: the model has {len(inputs)} inputs; give a .npz with arrays "
                             + ", ".join(repr(i["name"]) for i in inputs))
        return {inputs[0]["name"]: as_input(data, inputs[0])}
    feeds = {}
    keys = list(data.keys())
    for io in inputs:
        key = io["name"] if io["name"] in keys else (keys[0] if len(inputs) == 1 and len(keys) == 1 else
                                                     "x" if len(inputs) == 1 and "x" in keys else None)
        if key is None:
            raise SystemExit(f"run.py: {path} has arrays {keys}, none named {io['name']!r}")
        feeds[io["name"]] = as_input(data[key], io)
    return feeds


def run_batches(model: Model, feeds: dict) -> list:
    """Run the samples; one at a time when the model's batch axis is fixed at 1."""
    n = len(next(iter(feeds.values())))
    fixed_one = all(io["shape"] and io["shape"][0] == 1 for io in model.inputs)
    if not fixed_one or n == 1:
        return [np.asarray(o) for o in model.run(feeds)]
    outs = [model.run({k: v[i:i + 1] for k, v in feeds.items()}) for i in range(n)]
    return [np.concatenate([np.asarray(o[j]) for o in outs]) for j in range(len(outs[0]))]


def safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".") or "output"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("input", help=".npy or .npz input samples")
    ap.add_argument("-o", "--output", default="outputs", help="folder for the output .npy files (default outputs/)")
    ap.add_argument("--threads", type=int, help="intra-op threads (default from manifest.json)")
    a = ap.parse_args(argv)
    model = Model(threads=a.threads)
    feeds = load_inputs(a.input, model.inputs)
    outs = run_batches(model, feeds)
    os.makedirs(a.output, exist_ok=True)
    for io, y in zip(model.outputs, outs):
        dest = os.path.join(a.output, safe_name(io["name"]) + ".npy")
        np.save(dest, y)
        print(f"{io['name']}: shape {list(y.shape)} {y.dtype} -> {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
