"""A memory plan replayed on a labelled arena (test_memory_plan.py, test_tflm_selfbuilt.py): simulate()
raises Corrupted when a node reads bytes of a live tensor that another tensor or a scratch buffer
overwrote."""
from __future__ import annotations

import numpy as np

from edgecomp import ir
from edgecomp.passes.memory_plan import MemoryPlan


class Corrupted(AssertionError):
    pass


def simulate(graph: ir.Graph, plan: MemoryPlan) -> None:
    """Replay the graph's memory accesses on a labelled arena; raise Corrupted on a clobbered read."""
    names = [t.name for t in graph.activations()]
    for n in graph.nodes:
        res = n.attrs.get("residual")
        if res and res["tensor"] not in names:
            names.append(res["tensor"])
    label = {name: i for i, name in enumerate(names)}
    alias = {name: {name} for name in names}  # reshape chains share bytes
    for n in graph.nodes:
        if n.op == "reshape":
            merged = alias[n.inputs[0]] | alias[n.outputs[0]]
            for m in merged:
                alias[m] = merged
    for name in names:
        off, size = plan.offsets[name], graph.tensors[name].nbytes
        assert off >= 0 and off + size <= plan.arena_bytes, f"{name} outside the arena"
        assert off % 4 == 0, f"{name} misaligned"
    for off, size in plan.scratch.values():
        assert off >= 0 and off + size <= plan.arena_bytes and off % 4 == 0
    arena = np.full(plan.arena_bytes, -1, dtype=np.int64)
    SCRATCH = -2

    def check(name: str, lo: int, hi: int, where: str) -> None:  # bytes [lo, hi) of tensor `name`
        off = plan.offsets[name]
        got = set(np.unique(arena[off + lo:off + hi]).tolist())
        if not got <= {label[a] for a in alias[name]}:
            raise Corrupted(f"{where}: bytes {lo}..{hi} of {name!r} were overwritten")

    def write(name: str, lo: int, hi: int) -> None:
        off = plan.offsets[name]
        arena[off + lo:off + hi] = label[name]

    for name in graph.inputs:
        write(name, 0, graph.tensors[name].nbytes)
    for node in graph.nodes:
        where = f"node {node.name}"
        out = graph.tensors[node.outputs[0]]
        acts = [i for i in node.inputs if not graph.tensors[i].is_const]
        res = node.attrs.get("residual")
        x = graph.tensors[acts[0]] if acts else None
        scratch = plan.scratch.get(node.name)
        if node.op in ("conv2d", "depthwise_conv2d", "max_pool2d", "avg_pool2d", "fully_connected"):
            if node.op == "fully_connected":
                feat = graph.tensors[node.inputs[1]].shape[1]
                rows, out_row = x.size // feat, out.nbytes // (x.size // feat)
                in_rows = lambda yo: (yo, yo)  # noqa: E731
                in_row = feat * ir.dtype_bytes(x.dtype)
            else:
                rows = out.shape[0] * out.shape[1]
                out_row = out.nbytes // rows
                in_row = x.nbytes // (x.shape[0] * x.shape[1])
                s, pt = node.attrs["stride"][0], node.attrs["pad"][0]
                kh = node.attrs["kernel"][0] if "pool" in node.op else graph.tensors[node.inputs[1]].shape[1]
                dh = node.attrs.get("dilation", (1, 1))[0]
                H = x.shape[1]

                def in_rows(yo, s=s, pt=pt, kh=kh, dh=dh, H=H):
                    b, y = divmod(yo, out.shape[1])
                    taps = [y * s - pt + k * dh for k in range(kh)]
                    taps = [t for t in taps if 0 <= t < H]
                    if not taps:  # a row of padding only reads nothing
                        return 0, -1
                    return b * H + min(taps), b * H + max(taps)
            for yo in range(rows):
                a, b = in_rows(yo)
                check(x.name, a * in_row, (b + 1) * in_row, where)
                if res:
                    check(res["tensor"], yo * out_row, (yo + 1) * out_row, where)
                if scratch is not None:
                    arena[scratch[0]:scratch[0] + scratch[1]] = SCRATCH
                    check(x.name, a * in_row, (b + 1) * in_row, where + " (scratch row)")
                write(out.name, yo * out_row, (yo + 1) * out_row)
        elif node.op in ("add", "quantize", "dequantize", "clamp", "softmax"):
            n = out.size
            depth = out.shape[-1] if node.op == "softmax" else n
            for i in range(n):
                if i % depth == 0 and node.op == "softmax":
                    eb = ir.dtype_bytes(x.dtype)
                    check(x.name, i * eb, (i + depth) * eb, where)
                for t in acts:
                    eb = ir.dtype_bytes(graph.tensors[t].dtype)
                    check(t, i * eb, (i + 1) * eb, where)
                eo = ir.dtype_bytes(out.dtype)
                write(out.name, i * eo, (i + 1) * eo)
        elif node.op == "reshape":
            assert plan.offsets[node.inputs[0]] == plan.offsets[node.outputs[0]], "reshape is an alias"
            check(node.inputs[0], 0, x.nbytes, where)
        elif node.op == "concat":
            for t in acts:
                check(t, 0, graph.tensors[t].nbytes, where)
            write(out.name, 0, out.nbytes)
        else:
            raise AssertionError(node.op)
    for name in graph.outputs:
        check(name, 0, graph.tensors[name].nbytes, "graph output")
