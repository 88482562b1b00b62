"""Graph passes: each takes an :class:`edgecomp.ir.Graph` and returns one.

A :class:`Pass` is a name and a function ``fn(graph, ctx) -> graph``; :func:`run_passes` runs a
list of them, validates the IR after each one (a pass that leaves a dangling tensor or a node
out of order fails right there, naming itself) and, when asked, writes the graph after every
pass to a folder (``edgecomp compile --dump-ir DIR``).  The lists themselves are in
:mod:`edgecomp.pipeline`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .. import ir
from ..errors import EdgecompError, ModelError


@dataclass(frozen=True)
class Pass:
    name: str
    fn: Callable[[ir.Graph, Any], ir.Graph]
    doc: str = ""


def run_passes(graph: ir.Graph, passes: list[Pass], ctx: Any = None, *, dump: str | Path | None = None,
               first_index: int = 0) -> ir.Graph:
    """Run ``passes`` in order; validate the graph after each; dump it when ``dump`` is a folder."""
    for i, p in enumerate(passes):
        try:
            graph = p.fn(graph, ctx)
            graph.validate()
        except EdgecompError:
            raise
        except ValueError as e:
            raise ModelError(f"the graph is not well formed after the {p.name} pass: {e}",
                             where=f"graph {graph.name!r}",
                             fix="Please report this as an edgecomp bug (with the model)") from None
        if dump is not None:
            dump_graph(graph, Path(dump) / f"{first_index + i:02d}_{p.name}.txt", title=p.name)
    return graph


def _attr_text(v: Any) -> str:
    if isinstance(v, np.ndarray):
        if v.size <= 8:
            return f"[{', '.join(str(x) for x in v.reshape(-1).tolist())}]"
        return f"<{v.dtype} array {list(v.shape)}>"
    if isinstance(v, ir.QuantParams):
        return f"<quant scale {_attr_text(v.scale)} zp {_attr_text(v.zero_point)}>"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_attr_text(x)}" for k, x in v.items()) + "}"
    if isinstance(v, (list, tuple)) and len(v) > 8:
        return f"<{type(v).__name__} of {len(v)}>"
    if hasattr(v, "__dataclass_fields__"):
        return f"{type(v).__name__}(" + ", ".join(f"{k}={getattr(v, k)!r}" for k in v.__dataclass_fields__) + ")"
    return repr(v)


def graph_text(graph: ir.Graph, title: str = "") -> str:
    """A readable dump of a graph: tensors (shape, dtype, quantization) and nodes with attributes."""
    lines = [f"# {title}" if title else f"# graph {graph.name}",
             f"inputs:  {graph.inputs}", f"outputs: {graph.outputs}", "", "tensors:"]
    for t in graph.tensors.values():
        q = "" if t.quant is None else f" scale {_attr_text(t.quant.scale)} zp {_attr_text(t.quant.zero_point)}"
        lines.append(f"  {t.name}: {t.dtype}{list(t.shape)}{' const' if t.is_const else ''}{q}")
    lines += ["", "nodes:"]
    for n in graph.nodes:
        lines.append(f"  {n.name}: {n.op}({', '.join(n.inputs)}) -> {', '.join(n.outputs)}")
        for k, v in n.attrs.items():
            lines.append(f"      {k} = {_attr_text(v)}")
    meta = {k: v for k, v in graph.meta.items() if k != "qconst"}
    if meta:
        lines += ["", "meta:"] + [f"  {k} = {_attr_text(v)}" for k, v in meta.items()]
    return "\n".join(lines) + "\n"


def dump_graph(graph: ir.Graph, path: Path, title: str = "") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(re.sub(r"[\x00-\x08\x0b-\x1f\x7f]", "?", graph_text(graph, title)))
