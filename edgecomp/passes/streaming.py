"""Streaming: a model with recurrent layers rewritten to consume one frame per inference.

``stream_frames(graph, opts)`` (a C backend pass; it does nothing unless
``CodegenOptions.streaming``): the time axis (axis 1 of the [1, T, features] input) becomes one
frame on every tensor that carries it, from the model input through per-frame ops (quantize,
dequantize, clamp, a reshape that keeps [1, T], a fully connected layer or softmax on each frame's
features) into the recurrent layers, and out of those that give every step (``sequence``) to the
model output.  A layer that gives its last step ends the frames: what follows runs once per frame
on the state so far.  The recurrent layers' state lives in ``ec_state`` and is kept between
inferences (``graph.meta["streaming"]``: the generated ``ec_invoke`` does not reset it), so frame t
of the stream gives step t of the whole-sequence model.
"""
from __future__ import annotations

from .. import ir
from ..errors import UnsupportedError
from .graph_edit import working_copy

RECURRENT = ("lstm", "gru")
PER_FRAME = ("quantize", "dequantize", "clamp", "reshape", "fully_connected", "softmax")


def _one_frame(g: ir.Graph, name: str, T: int, where: str) -> None:
    t = g.tensors[name]
    if len(t.shape) < 2 or t.shape[0] != 1 or t.shape[1] != T:
        raise UnsupportedError(f"tensor {name!r} {list(t.shape)} does not carry the {T} frames on its axis 1",
                               where=where, fix="Stream models whose frames run [1, steps, features] into the "
                                                "recurrent layers")
    g.tensors[name] = ir.Tensor(t.name, (1, 1) + tuple(t.shape[2:]), t.dtype, t.quant, t.data)


def stream_frames(g: ir.Graph, opts=None) -> ir.Graph:
    if not getattr(opts, "streaming", False):
        return g
    rnn = [n for n in g.nodes if n.op in RECURRENT]
    if not rnn:
        raise UnsupportedError("a streaming build of a model without recurrent layers", where=f"graph {g.name!r}",
                               fix="Drop --streaming: the model has no state to keep between frames")
    T = int(g.tensors[rnn[0].inputs[0]].shape[1])
    frames = set()
    for name in g.inputs:
        _one_frame(g, name, T, f"model input {name!r}")
        frames.add(name)
    for n in g.nodes:
        ins = [i for i in n.inputs if i in frames]
        if not ins:
            continue
        where = f"node {n.name!r} ({n.op})"
        if n.op in RECURRENT:
            if n.inputs[0] not in frames or ins != [n.inputs[0]]:
                raise UnsupportedError("a recurrent layer whose weights or state depend on the frames", where=where)
            if n.attrs.get("sequence", True):
                _one_frame(g, n.outputs[0], T, where)
                frames.add(n.outputs[0])
            continue
        if n.op not in PER_FRAME:
            raise UnsupportedError(f"{n.op} on the frames of a streamed model", where=where,
                                   fix="Streaming takes per-frame ops before and after the recurrent layers "
                                       f"({', '.join(PER_FRAME)}); or read the recurrent layer's last step")
        if n.op == "fully_connected":
            w = g.tensors[n.inputs[1]]
            if g.tensors[n.inputs[0]].shape[-1] != w.shape[1]:
                raise UnsupportedError("a fully connected layer over several frames", where=where,
                                       fix="Apply it to each frame's features, or to the last step")
        _one_frame(g, n.outputs[0], T, where)
        if n.op == "reshape":
            n.attrs["shape"] = tuple(g.tensors[n.outputs[0]].shape)
        frames.add(n.outputs[0])
    g.meta["streaming"] = True
    g.meta["stream_steps"] = T
    return g


def streamed(graph: ir.Graph) -> ir.Graph:
    """A copy of ``graph`` as its streaming build runs it (one frame in, one frame out); the graph
    itself is left as it is."""
    from ..options import CodegenOptions

    return stream_frames(working_copy(graph), CodegenOptions(streaming=True))
