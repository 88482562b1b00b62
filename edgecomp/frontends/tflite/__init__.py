"""TFLite frontend: an int8 (or float32) .tflite flatbuffer into the IR.

``reader.py`` reads the file with the ``tflite`` schema package, checking every offset, length and
size against the file before using it (a corrupt or hostile file gives a ModelError, never a
crash, a hang or a huge allocation), and lowers each operator with the function an ``ops_*.py``
module registers for its builtin (``registry.py``: :func:`tflite_op`).  TFLite graphs are already
in the IR's conventions (NHWC, fused activations, int8 spec), so no import passes run after it.
"""
from .reader import MAX_ELEMENTS, MAX_RANK, load_tflite
from .registry import TFLITE_OPS, builtin_code, builtin_name, tflite_op

#: The builtins edgecomp reads, by name.
SUPPORTED = {op.code: op.name for op in TFLITE_OPS.values()}

__all__ = ["MAX_ELEMENTS", "MAX_RANK", "SUPPORTED", "TFLITE_OPS", "builtin_code", "builtin_name", "load_tflite",
           "tflite_op"]
