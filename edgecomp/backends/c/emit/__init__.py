"""Emitters: one module per op family; each ``@kernel`` record registers its emitter in the catalogue.

Importing this package fills :data:`edgecomp.backends.c.kernels.catalogue.CATALOGUE`.
"""
from . import (activation, attention, binary, conv, conv_ext, data, elementwise, fully_connected, gemm, int4, int16, mve,
               pooling, recurrent, reduce, resize)

ALL = (conv, conv_ext, gemm, mve, fully_connected, pooling, elementwise, data, resize, int16, int4, activation, binary,
       reduce, recurrent, attention)
