"""`edgecomp info MODEL`: what is inside a model and whether edgecomp can compile it."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from . import ir
from .errors import EdgecompError, ModelError
from .report import format_table
from .sanitize import terminal_text


def _load(path: Path) -> ir.Graph:
    if not path.is_file():
        raise ModelError(f"model file {path} does not exist", fix="Check the path")
    if path.suffix.lower() == ".tflite":
        from .frontends.tflite import load_tflite
        return load_tflite(path)
    if path.suffix.lower() == ".onnx":
        from .frontends.onnx import from_onnx
        return from_onnx(path)
    raise ModelError(f"unknown model format {path.suffix!r}", where=str(path), fix="Give a .onnx or .tflite file")


def _io(g: ir.Graph, name: str) -> dict:
    """A graph input/output in the user's layout: an ONNX model's 4-D tensors as NCHW, as exported."""
    t = g.tensors[name]
    shape, layout = list(t.shape), None
    if len(shape) == 4:
        layout = g.meta.get("source_layout") or g.meta.get("input_layout", "NHWC")
        if layout == "NCHW":
            shape = [shape[0], shape[3], shape[1], shape[2]]
    if name in g.meta.get("io_layouts", {}):  # a 1-D model's [N, C, L] input, [N, 1, L, C] in the C
        shape, layout = [t.shape[0], t.shape[3], t.shape[2]], g.meta["io_layouts"][name]
    return {"name": name, "shape": shape, "dtype": t.dtype, "layout": layout}


def model_info(path: Path, as_json: bool = False) -> int:
    from .refusals import both_paths
    try:
        with both_paths():
            g = _load(path)
    except EdgecompError as e:
        if as_json:  # the JSON for a script, the message for the person who runs it
            print(json.dumps({"model": str(path), "supported": False, "reason": e.message()}, indent=2))
            print(f"edgecomp: error: {e.message()}", file=sys.stderr)
            return e.exit_code
        raise
    layers = [{"name": n.name, "op": n.op, "out_shape": list(g.tensors[n.outputs[0]].shape),
               "dtype": g.tensors[n.outputs[0]].dtype, "macs": ir.macs(g, n)} for n in g.nodes]
    info = {
        "model": str(path), "supported": True, "source": g.meta.get("source"),
        "precision": "int8" if g.quantized else "float32",
        "inputs": [_io(g, i) for i in g.inputs],
        "outputs": [_io(g, o) for o in g.outputs],
        "params": ir.param_count(g), "weight_bytes": sum(t.nbytes for t in g.constants()),
        "macs": ir.total_macs(g), "layers": layers,
    }
    if as_json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"{terminal_text(path)}: {info['source']} model, {info['precision']}, supported by edgecomp")
    for k in ("inputs", "outputs"):
        for io in info[k]:  # names from the model file: control characters escaped
            print(f"  {k[:-1]:6s} {terminal_text(io['name'], limit=120)}: {io['dtype']} {io['shape']}"
                  + (f" ({io['layout']})" if io["layout"] else ""))
    print(f"  parameters {info['params']:,}  weight bytes {info['weight_bytes']:,}  MACs {info['macs']:,}")
    rows = [[i, l["name"], l["op"], "x".join(map(str, l["out_shape"])), l["dtype"], l["macs"]]
            for i, l in enumerate(layers)]
    if g.meta.get("source_layout") == "NCHW":
        print("  layer outputs below are in NHWC, the layout of the generated C (edgecomp run and api.run_bundle "
              "transpose your NCHW samples)")
    print()
    print(format_table(["#", "layer", "op", "output", "dtype", "MACs"], rows, "rlllrr"))
    return 0
