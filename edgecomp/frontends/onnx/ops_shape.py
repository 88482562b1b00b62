"""Shape ops: Flatten / Reshape / Squeeze / Unsqueeze (IR reshape: an alias) and Concat."""
from __future__ import annotations

import math

import numpy as np

from ...errors import ModelError, UnsupportedError
from .context import Ctx, out_tensor, shape_of
from .layout import Layout, onnx_axis, onnx_order, reshaped, set_layout, transposed
from .registry import onnx_op


@onnx_op("Flatten", "Reshape", "Squeeze", "Unsqueeze")
def lower_reshape(c: Ctx, n, a: dict, x: str, xs: tuple, where: str) -> None:
    ins = list(n.input)
    op = n.op_type
    oshape = c.shapes.get(n.output[0])
    if oshape is None:
        raise ModelError(f"{op} output has no static shape", where=where)
    if op == "Reshape" and len(ins) > 1 and ins[1] in c.consts and c.consts[ins[1]].size <= 8:
        tgt = [int(v) for v in np.asarray(c.consts[ins[1]]).reshape(-1)]  # the target shape, as ONNX reads it
        tgt = [xs[i] if v == 0 and i < len(xs) else v for i, v in enumerate(tgt)]
        if -1 not in tgt and math.prod(tgt) != math.prod(xs):
            raise ModelError(f"Reshape from {tuple(xs)} to {tuple(tgt)} changes the number of elements",
                             where=where, fix="Check the model's shapes")
    if math.prod(oshape) != math.prod(xs):
        raise ModelError(f"{op} from {tuple(xs)} to {tuple(oshape)} changes the number of elements",
                         where=where, fix="Check the model's shapes")
    reshape_tensor(c, x, xs, tuple(oshape), n.output[0], n.name)


def reshape_tensor(c: Ctx, x: str, xs: tuple, oshape: tuple, o: str, name: str) -> str:
    """IR tensor ``o`` (ONNX name and shape ``oshape``): x reshaped, an alias of its bytes relabelled
    in the layout model (x put in ONNX order first when the new shape cuts across its memory order)."""
    lay = reshaped(c.layouts.get(x), tuple(xs), tuple(oshape))
    if lay == "copy":  # the new shape splits axes the memory order keeps apart: ONNX order first
        x, lay = onnx_order(c, x, xs), None
    c.shapes[o] = tuple(oshape)
    set_layout(c, o, lay)
    ishape = _batch_first(c, x, tuple(oshape), lay)
    c.add_tensor(o, ishape)  # an alias of the input's bytes, in the ONNX shape
    c.add_node(name, "reshape", [x], [o], shape=ishape)
    return o


def _batch_first(c: Ctx, x: str, oshape: tuple, lay) -> tuple:
    """The IR shape of an alias in ONNX order: the ONNX shape, with a unit batch axis put first when
    the ONNX shape starts with another axis of a batch-1 tensor (a time-major view of a sequence:
    the IR's first axis is the batch)."""
    if lay is None and oshape and oshape[0] != 1 and c.g.tensors[x].shape[:1] == (1,):
        return (1,) + tuple(oshape)
    return tuple(oshape)


@onnx_op("Concat")
def lower_concat(c: Ctx, n, a: dict, x: str, xs: tuple, where: str) -> None:
    ins = list(n.input)
    axis = a["axis"] % len(xs)
    if any(i in c.consts for i in ins):
        raise UnsupportedError("Concat with a constant operand", where=where)
    names = [c.name(i) for i in ins]
    shapes = [tuple(shape_of(c, i)) for i in ins]
    shp = list(xs)
    shp[axis] = sum(s[axis] for s in shapes)
    lay = c.layouts.get(names[0])
    ir_axes = {onnx_axis(c, t, s, axis) for t, s in zip(names, shapes)}
    same = all(c.layouts.get(t) is not None and c.layouts[t].perm == lay.perm for t in names) if lay else False
    if same and len(ir_axes) == 1 and None not in ir_axes:  # every input in one layout: concat in it
        ir_axis = ir_axes.pop()
        out_lay = Layout(tuple(shp), lay.perm) if lay.logical == tuple(xs) else None
        if out_lay is not None:
            o = out_tensor(c, n, shp, layout=out_lay)
            c.add_node(n.name, "concat", names, [o], axis=ir_axis)
            return
    names = [onnx_order(c, t, s) for t, s in zip(names, shapes)]  # else: every input in ONNX order
    o = out_tensor(c, n, shp, layout=None)
    c.add_node(n.name, "concat", names, [o], axis=axis)


@onnx_op("Transpose")
def lower_transpose(c: Ctx, n, a: dict, x: str, xs: tuple, where: str) -> None:
    """A relabelling of the layout (no data moves) where the memory order allows; else an IR transpose
    of the data in ONNX order."""
    t = tuple(int(v) for v in a.get("perm", list(reversed(range(len(xs))))))
    if sorted(t) != list(range(len(xs))):
        raise ModelError(f"Transpose perm {list(t)} for a {len(xs)}-D tensor", where=where, fix="Check the model")
    transpose_tensor(c, x, xs, t, n.output[0], n.name, where)


def transpose_tensor(c: Ctx, x: str, xs: tuple, t: tuple, o: str, name: str, where: str) -> str:
    """IR tensor ``o``: x transposed by ONNX permutation ``t``, a relabelling of the layout (an
    alias) where the memory order allows, else an IR transpose of the data in ONNX order."""
    oshape = tuple(xs[i] for i in t)
    c.shapes[o] = oshape
    lay = transposed(c.layouts.get(x), tuple(xs), t)
    big = [a for a in t if xs[a] != 1]
    if lay == "copy" and x not in c.layouts and tuple(c.g.tensors[x].shape) == (1,) + tuple(xs) \
            and big == sorted(big):
        lay = None  # a time-major view (batch axis put first, _batch_first): moving unit axes moves no data
    if lay != "copy":
        set_layout(c, o, lay)
        ishape = _batch_first(c, x, oshape, lay)
        c.add_tensor(o, ishape)  # an alias of the input's bytes
        c.add_node(name, "reshape", [x], [o], shape=ishape)
        return o
    x = onnx_order(c, x, xs)  # (a permutation that moves the batch axis too: the IR transpose takes any)
    set_layout(c, o, None)
    c.add_tensor(o, oshape)
    c.add_node(name, "transpose", [x], [o], perm=t)
    return o
