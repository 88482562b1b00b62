"""Attention layers: batch_matmul of two activations and layer_norm (``ec_kernels_attn``, float32)."""
from __future__ import annotations

import numpy as np

from ....errors import UnsupportedError
from ....sanitize import c_comment
from ..kernels.catalogue import kernel
from ..literals import c_float, c_int

BATCH_DIMS = 4  # EC_MATMUL_BATCH_DIMS


def matmul_walk(a_shape, b_shape, out_shape) -> tuple[list[int], list[int], list[int]]:
    """(batch dims, a's and b's element strides per batch dim (0 where broadcast)), padded in
    front to BATCH_DIMS; the operands right-aligned to the output's rank (numpy's matmul).

    >>> matmul_walk((2, 4, 3, 5), (2, 1, 5, 6), (2, 4, 3, 6))
    ([1, 1, 2, 4], [0, 0, 60, 15], [0, 0, 30, 0])
    """
    r = len(out_shape)
    nb = r - 2
    if nb > BATCH_DIMS:
        raise ValueError(f"{nb} batch axes (at most {BATCH_DIMS})")
    dims, sa, sb = [], [], []
    for shape, strides in ((a_shape, sa), (b_shape, sb)):
        s = (1,) * (r - len(shape)) + tuple(shape)
        step = s[-1] * s[-2]
        st = []
        for d in reversed(range(nb)):
            st.append(0 if s[d] == 1 else step)
            step *= s[d]
        strides += list(reversed(st))
    dims = list(out_shape[:nb])
    pad = BATCH_DIMS - nb
    return [1] * pad + dims, [0] * pad + sa, [0] * pad + sb


@kernel("ec_batch_matmul_s8", "batch_matmul", "int8", groups=("attn",))
@kernel("ec_batch_matmul_f32", "batch_matmul", "float32", groups=("attn",))
def emit_batch_matmul(gen, L, k) -> str:
    """out = a @ b over the last two axes, the axes before broadcast (float32)."""
    node, out = L.node, L.out
    a, b = (gen.g.tensors[i] for i in node.inputs[:2])
    try:
        dims, sa, sb = matmul_walk(a.shape, b.shape, out.shape)
    except ValueError as e:
        raise UnsupportedError(f"batch_matmul with {e}", where=f"node {node.name!r}",
                               fix="Use at most 6-D operands") from None
    arr = lambda vs: "{" + ", ".join(str(int(v)) for v in vs) + "}"  # noqa: E731
    m, kk, n = out.shape[-2], a.shape[-1], out.shape[-1]
    fields = [("batch_dims", arr(dims)), ("a_strides", arr(sa)), ("b_strides", arr(sb)),
              ("rows", str(m)), ("inner", str(kk)), ("cols", str(n))]
    if L.s8:
        q = gen.q(node)
        lo, hi, _, _ = gen.act(node, out)
        fields += [("lhs_offset", c_int(q["lhs_offset"])), ("rhs_offset", c_int(q["rhs_offset"])),
                   ("output_offset", c_int(q["output_offset"])), ("multiplier", c_int(q["multiplier"])),
                   ("shift", c_int(q["shift"])), ("act_min", lo), ("act_max", hi)]
    ptr = []
    for idx, t in enumerate((a, b)):
        ptr.append(gen.const(node, idx, "ab"[idx], "int8_t" if L.s8 else "float") if t.is_const
                   else gen.tensor(t.name))
    L.head.append(f"  [{m} x {kk}] @ [{kk} x {n}] over {int(np.prod(dims))} batch positions, {'int8' if L.s8 else 'float32'}")
    gen.struct("ec_matmul_params_t", L.base, fields, c_comment(f"{node.name}: batch_matmul"))
    return f"{k.name}(&{L.base}, {ptr[0]}, {ptr[1]}, {gen.tensor(out.name)});"


@kernel("ec_layer_norm_f32", "layer_norm", "float32", groups=("attn",))
def emit_layer_norm(gen, L, k) -> str:
    """Layer normalization over the trailing `count` values of each row (float32)."""
    node, x, out = L.node, L.x, L.out
    count = int(node.attrs["count"])
    scale = gen.const(node, 1, "scale", "float")
    bias = gen.const(node, 2, "bias", "float") if len(node.inputs) > 2 and node.inputs[2] else "NULL"
    eps = float(node.attrs.get("epsilon", 1e-5))
    L.head.append(f"  over {count} values, epsilon {eps}, float32")
    return (f"{k.name}({out.size // count}, {count}, {c_float(eps)}, {scale}, {bias}, "
            f"{gen.tensor(x.name)}, {gen.tensor(out.name)});")
