"""Layers that move bytes without arithmetic, whatever their type: reshape (an alias) and concat."""
from __future__ import annotations

import math

from .... import ir
from ....errors import UnsupportedError
from ....sanitize import c_comment
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


MAX_DIMS = 6  # EC_TRANSPOSE_MAX_DIMS


@kernel("ec_transpose", "transpose", "any", groups=("data",))
def emit_transpose(gen, L, k) -> str:
    """Axes permuted: the input walked in memory order, each element written at its output place."""
    node, x, out = L.node, L.x, L.out
    perm = [int(v) for v in node.attrs["perm"]]
    dims = list(x.shape)
    if len(dims) > MAX_DIMS or sorted(perm) != list(range(len(dims))) or perm[0] != 0:
        raise UnsupportedError(f"transpose {perm} of a {len(dims)}-D tensor", where=f"node {node.name!r}",
                               fix=f"Keep the batch axis first and at most {MAX_DIMS} dimensions")
    oshape = [dims[p] for p in perm]
    ostride = [int(math.prod(oshape[i + 1:])) for i in range(len(oshape))]
    in_stride_out = [0] * len(dims)
    for i, p in enumerate(perm):
        in_stride_out[p] = ostride[i]
    pad = MAX_DIMS - len(dims)
    fields = [("rank", str(len(dims))), ("elem_bytes", str(ir.dtype_bytes(x.dtype))),
              ("dims", "{" + ", ".join(str(d) for d in dims + [1] * pad) + "}"),
              ("out_strides", "{" + ", ".join(str(s) for s in in_stride_out + [0] * pad) + "}")]
    L.head.append(f"  perm {perm}")
    gen.struct("ec_transpose_params_t", L.base, fields, c_comment(f"{node.name}: transpose"))
    return f"ec_transpose(&{L.base}, {gen.tensor(x.name)}, {gen.tensor(out.name)});"
