"""The IR's ops and their semantics: one module per op family, each registering its ops with
:func:`edgecomp.ir.define_op` (name, memory-planner layout, MACs, the interpreter's function).

The interpreter (:mod:`edgecomp.interp`) runs a node by calling its op's function; that
function is the numerics spec every backend is tested against.  Adding an op: a module here
(or a function in one), an emitter and kernel in the backends, a lowering in the frontends.
"""
from . import activation, attention, binary, conv, data, elementwise, pool, quant, recurrent, reduce, resize  # noqa: F401  (their define_op calls fill ir.OPS)
