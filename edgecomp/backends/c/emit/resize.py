"""resize layers: nearest neighbour (any type) and bilinear (int8 TFLM-exact, float32), from the
node's tables (``edgecomp/ops/resize.py``) written as const int16 / float arrays in flash."""
from __future__ import annotations

import numpy as np

from .... import ir
from ....errors import UnsupportedError
from ....sanitize import c_comment
from ..kernels.catalogue import kernel

GROUPS = ("resize",)


def _check(node: ir.Node, x: ir.Tensor, out: ir.Tensor) -> None:
    if len(x.shape) != 4 or len(out.shape) != 4 or x.shape[0] != out.shape[0] or x.shape[3] != out.shape[3]:
        raise UnsupportedError(f"resize from {list(x.shape)} to {list(out.shape)}", where=f"node {node.name!r}",
                               fix="Resize the two spatial axes of a 4-D NHWC tensor")
    if max(x.shape[1:3]) >= 1 << 15:
        raise UnsupportedError("resize of an image over 32767 rows or columns", where=f"node {node.name!r}")


def _geometry(x: ir.Tensor, out: ir.Tensor) -> list[tuple[str, str]]:
    return [("batches", str(x.shape[0])), ("in_h", str(x.shape[1])), ("in_w", str(x.shape[2])),
            ("out_h", str(out.shape[1])), ("out_w", str(out.shape[2]))]


@kernel("ec_resize_nearest", "resize", ("int8", "int16", "float32"), groups=GROUPS,
        applies=lambda gen, n: n.attrs.get("mode") == "nearest")
def emit_nearest(gen, L, k) -> str:
    """Nearest neighbour: each output pixel a copy of the input pixel its row and column tables name."""
    node, x, out = L.node, L.x, L.out
    _check(node, x, out)
    rows = gen.const_array(L.base, "rows", np.asarray(node.attrs["index_h"]), "int16_t",
                           f"{node.name}: input row of each output row")
    cols = gen.const_array(L.base, "cols", np.asarray(node.attrs["index_w"]), "int16_t",
                           f"{node.name}: input column of each output column")
    fields = _geometry(x, out) + [("pixel_bytes", str(x.shape[3] * ir.dtype_bytes(x.dtype))), ("rows", rows),
                                  ("cols", cols)]
    L.head.append(f"  nearest {x.shape[1]}x{x.shape[2]} -> {out.shape[1]}x{out.shape[2]}")
    gen.struct("ec_resize_nearest_params_t", L.base, fields, c_comment(f"{node.name}: resize (nearest)"))
    return f"ec_resize_nearest(&{L.base}, {gen.tensor(x.name)}, {gen.tensor(out.name)});"


def _bilinear(gen, L) -> str:
    node, x, out = L.node, L.x, L.out
    _check(node, x, out)
    a = node.attrs
    tabs = []
    for axis, what in (("h", "row"), ("w", "column")):
        idx = np.asarray(a[f"index_{axis}"], dtype=np.int64).reshape(-1, 2)
        w = np.asarray(a[f"weight_{axis}"], dtype=np.int64).reshape(-1, 1)
        tabs.append(gen.const_array(L.base, f"{what}s", np.concatenate([idx, w], axis=1).reshape(-1), "int16_t",
                                    f"{node.name}: per output {what}: input {what}s i0, i1, weight of i1 (1/1024)"))
    if out.dtype == "float32":
        tabs += [gen.const_array(L.base, f"f{what}s", np.asarray(a[f"fweight_{axis}"], np.float32), "float",
                                 f"{node.name}: per output {what}: weight of i1")
                 for axis, what in (("h", "row"), ("w", "column"))]
    else:
        tabs += ["NULL", "NULL"]
    fields = _geometry(x, out) + [("channels", str(x.shape[3])), ("rows", tabs[0]), ("cols", tabs[1]),
                                  ("frows", tabs[2]), ("fcols", tabs[3])]
    L.head.append(f"  bilinear {x.shape[1]}x{x.shape[2]} -> {out.shape[1]}x{out.shape[2]}")
    gen.struct("ec_resize_bilinear_params_t", L.base, fields, c_comment(f"{node.name}: resize (bilinear)"))
    return L.base


def _is_bilinear(gen, n) -> bool:
    return n.attrs.get("mode") == "bilinear"


@kernel("ec_resize_bilinear_s8", "resize", "int8", groups=GROUPS, applies=_is_bilinear, rank=90)
@kernel("ec_resize_bilinear_f32", "resize", "float32", groups=GROUPS, applies=_is_bilinear, rank=90)
def emit_bilinear(gen, L, k) -> str:
    """Bilinear: each output the blend of four input pixels (int8: TFLM's integer weights)."""
    if L.x.dtype != L.out.dtype:
        raise UnsupportedError(f"bilinear resize from {L.x.dtype} to {L.out.dtype}", where=f"node {L.node.name!r}")
    base = _bilinear(gen, L)
    return f"{k.name}(&{base}, {gen.tensor(L.x.name)}, {gen.tensor(L.out.name)});"
