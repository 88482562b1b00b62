r"""1-D convolutions and pools (Conv1d, MaxPool1d, AvgPool1d, AdaptiveAvgPool1d) on the 2-D kernels.

An ONNX tensor [N, C, L] is viewed as [N, C, 1, L] and held channels-last, as the IR tensor
[N, 1, L, C] (``Layout((N, C, 1, L), (0, 2, 3, 1))``): the same bytes as [N, L, C], so a 1-D layer
is the 2-D layer with H = 1, kernel (1, k), stride (1, s), dilation (1, d), pads (0, b, 0, e), and
consecutive 1-D layers pass their tensors on with no copy.  A 3-D graph input that feeds such a
layer (directly or through its QuantizeLinear / DequantizeLinear) is declared in that layout from
the start; the manifest says so (``"source_layout": "NCW"``) and the API transposes the user's
[N, C, L] samples (:func:`edgecomp.samples.quantize_input`).

    >>> layout_1d((1, 4, 16))
    Layout(logical=(1, 4, 1, 16), perm=(0, 2, 3, 1))
    >>> attrs_2d({"kernel_shape": [3], "strides": [2], "pads": [1, 0], "dilations": [2]})
    {'kernel_shape': [1, 3], 'strides': [1, 2], 'pads': [0, 1, 0, 0], 'dilations': [1, 2]}
"""
from __future__ import annotations

from ...errors import UnsupportedError
from .layout import NHWC, Layout, set_layout

#: The ONNX ops lowered on the 2-D kernels when their input is 3-D.
ONE_D_OPS = ("Conv", "MaxPool", "AveragePool", "GlobalAveragePool")
#: What the manifest says a 3-D input held as [N, 1, L, C] is, in the user's order.
SOURCE_LAYOUT = "NCW"


def layout_1d(s: tuple[int, ...]) -> Layout:
    n, ch, length = s
    return Layout((n, ch, 1, length), NHWC)


def attrs_2d(a: dict, where: str = "") -> dict:
    """A 1-D op's attributes as the 2-D op's with H = 1."""
    out = dict(a)
    for key, unit in (("kernel_shape", 1), ("strides", 1), ("dilations", 1)):
        if key in a:
            out[key] = [unit] + list(a[key])
    if "pads" in a:
        p = list(a["pads"])
        if len(p) != 2:
            raise UnsupportedError(f"1-D padding {p}", where=where, fix="Give two pads (begin, end)")
        out["pads"] = [0, p[0], 0, p[1]]
    return out


def as_2d(c, n, a: dict, xs: tuple, where: str, weight: bool) -> tuple[tuple, dict]:
    """The 2-D view of a 1-D op: the input's ONNX shape [N, C, 1, L], the attributes, and (for a
    convolution) its weight [O, I, K] made [O, I, 1, K] in the lowering's constants."""
    if weight:
        name = n.input[1]
        w = c.consts.get(name)
        if w is not None and w.ndim == 3:
            c.consts[name] = w[:, :, None, :]
            if name in c.qconsts:
                q, s, z, axis = c.qconsts[name]
                c.qconsts[name] = (q[:, :, None, :], s, z, axis)
    inferred = c.shapes.get(n.output[0])
    if inferred is not None and len(inferred) == 3:  # ONNX's inferred output, as the 2-D op's (out_1d resets it)
        c.shapes[n.output[0]] = (inferred[0], inferred[1], 1, inferred[2])
    return (xs[0], xs[1], 1, xs[2]), attrs_2d(a, where)


def out_1d(c, n, shape4: tuple[int, ...], dtype="float32", quant=None) -> str:
    """A 1-D op's output: ONNX shape [N, C, L], held as the IR tensor [N, 1, L, C]."""
    from .context import out_tensor

    s = (shape4[0], shape4[1], shape4[3])
    return out_tensor(c, n, s, dtype, quant, layout=layout_1d(s))


def feeds_1d(model, name: str) -> bool:
    """Whether graph input ``name`` reaches a 1-D conv or pool, directly or through Q/DQ nodes."""
    users: dict[str, list] = {}
    for nd in model.graph.node:
        for i in nd.input:
            users.setdefault(i, []).append(nd)
    seen, todo = set(), [name]
    while todo:
        t = todo.pop()
        for nd in users.get(t, []):
            if nd.op_type in ONE_D_OPS and nd.input[0] == t:
                return True
            if nd.op_type in ("QuantizeLinear", "DequantizeLinear") and nd.input[0] == t and nd.output[0] not in seen:
                seen.add(nd.output[0])
                todo.append(nd.output[0])
    return False


def declare_input_1d(c, name: str, s: tuple[int, ...]) -> None:
    """A 3-D graph input [N, C, L] declared channels-last ([N, 1, L, C] in the IR)."""
    L = layout_1d(s)
    c.g.tensors[name].shape = L.memory_shape
    set_layout(c, name, L)
    c.g.meta.setdefault("io_layouts", {})[name] = SOURCE_LAYOUT

