"""MEAN, ARG_MAX and L2_NORMALIZATION (TFLite tensors are in the IR's layout: axes map as they are)."""
from __future__ import annotations

import numpy as np

from ...errors import UnsupportedError
from .registry import tflite_op


def _const_axes(t, name: str, rank: int, where: str) -> tuple[int, ...]:
    """The values of a constant int32 axis tensor, checked and made non-negative."""
    data = t._raw[name][3]
    if data is None:
        raise UnsupportedError("a reduction axis that is not a constant", where=where,
                               fix="Give the axis as a constant tensor")
    axes = [int(v) for v in np.asarray(data).reshape(-1)]
    if any(not -rank <= a < rank for a in axes):
        raise t.r.bad(f"{where}: axis {axes} for a rank-{rank} input")
    return tuple(sorted({a % rank for a in axes}))


def _batch_free(t, axes: tuple[int, ...], shape: tuple, where: str) -> tuple[int, ...]:
    """The axes without the batch axis when it has size 1 (a no-op); refused otherwise."""
    if 0 in axes:
        if shape[0] != 1:
            raise UnsupportedError("a reduction over the batch axis", where=where,
                                   fix="Reduce over the other axes (edgecomp runs one batch row at a time)")
        axes = tuple(a for a in axes if a != 0)
    return axes


@tflite_op('MEAN', inputs=2)
def lower_mean(t, op, k: int, code: int, ins: list[str], outs: list[str], where: str, hybrid: dict | None) -> None:
    """mean over constant axes (keep_dims either way: the output tensor's shape says which)."""
    xs = tuple(t.shape(ins[0]))
    axes = _batch_free(t, _const_axes(t, ins[1], len(xs), where), xs, where)
    o = t._options(op, t.tfl.ReducerOptions)
    keep = bool(o.KeepDims()) if o is not None else False
    if int(np.prod(xs)) != int(np.prod(t.shape(outs[0]))) * int(np.prod([xs[a] for a in axes])):
        raise t.r.bad(f"{where}: output {list(t.shape(outs[0]))} for a mean of {list(xs)} over {list(axes)}")
    if not axes:  # nothing to average (only unit axes): a copy
        t._check_same_quant(ins[0], outs[0], where)
        t._add("reshape", ins[:1], outs[:1], k, shape=tuple(t.shape(outs[0])))
        return
    t._add("mean", ins[:1], outs[:1], k, axes=axes, keep_dims=keep)


@tflite_op('ARG_MAX', inputs=2)
def lower_argmax(t, op, k: int, code: int, ins: list[str], outs: list[str], where: str, hybrid: dict | None) -> None:
    """argmax along one constant axis, int32 indices (TFLM's only output type)."""
    xs = tuple(t.shape(ins[0]))
    axes = _const_axes(t, ins[1], len(xs), where)
    if len(axes) != 1:
        raise t.r.bad(f"{where}: ARG_MAX takes one axis, not {list(axes)}")
    if t._raw[outs[0]][0] != "int32":
        raise UnsupportedError(f"ARG_MAX with {t._raw[outs[0]][0]} output", where=where,
                               fix="Convert with output_type=tf.int32 (TFLite Micro's only output type)")
    if axes[0] == 0:
        raise UnsupportedError("ARG_MAX over the batch axis", where=where, fix="Take the argmax over another axis")
    t._add("argmax", ins[:1], outs[:1], k, axis=axes[0])


@tflite_op('L2_NORMALIZATION', inputs=1)
def lower_l2_norm(t, op, k: int, code: int, ins: list[str], outs: list[str], where: str, hybrid: dict | None) -> None:
    """l2_normalization along the last axis (no fused activation, as TFLM requires)."""
    o = t._options(op, t.tfl.L2NormOptions)
    if o is not None and int(o.FusedActivationFunction()) != 0:
        raise UnsupportedError("L2_NORMALIZATION with a fused activation", where=where,
                               fix="TFLite Micro runs it without one; apply the activation after it")
    if len(t.shape(ins[0])) > 4:
        raise UnsupportedError("L2_NORMALIZATION of a tensor of more than 4 dimensions", where=where)
    t._add("l2_normalization", ins[:1], outs[:1], k)
