"""Layers that move bytes without arithmetic, whatever their type: reshape (an alias) and concat."""
from __future__ import annotations

import math

from .... import ir
from ....errors import UnsupportedError
from ..kernels.catalogue import kernel


@kernel("(alias)", "reshape", "any")
def emit_reshape(gen, L, k) -> str:
    """A reshape is planned as an alias of its input: no code."""
    if gen.plan.offsets[L.x.name] != gen.plan.offsets[L.out.name]:
        raise AssertionError("reshape is planned as an alias")
    L.head.append("  an alias of its input: no code")
    return f"/* {gen.tensor(L.out.name)} is {gen.tensor(L.x.name)} */"


@kernel("ec_concat_part", "concat", "any")
def emit_concat(gen, L, k) -> str:
    """Inputs of one quantization copied side by side along the axis (one copy call per input)."""
    node, out = L.node, L.out
    axis = int(node.attrs["axis"])
    eb = ir.dtype_bytes(out.dtype)
    outer = int(math.prod(out.shape[:axis]))
    out_bytes = int(math.prod(out.shape[axis:])) * eb
    calls, off = [], 0
    for name in node.inputs:
        t = gen.g.tensors[name]
        if t.is_const:
            raise UnsupportedError("concat of a constant", where=f"node {node.name!r}")
        if t.dtype != out.dtype:
            raise UnsupportedError("concat of different types", where=f"node {node.name!r}")
        in_bytes = int(math.prod(t.shape[axis:])) * eb
        calls.append(f"ec_concat_part({gen.tensor(out.name)}, {gen.tensor(name)}, {outer}, {in_bytes}, "
                     f"{out_bytes}, {off});")
        off += in_bytes
    return "\n    ".join(calls)
