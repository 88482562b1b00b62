"""Emitters: one module per op family; each ``@kernel`` record registers its emitter in the catalogue.

Importing this package fills :data:`edgecomp.backends.c.kernels.catalogue.CATALOGUE`.
"""
from . import conv, data, elementwise, fully_connected, gemm, int16, pooling, resize

ALL = (conv, gemm, fully_connected, pooling, elementwise, data, resize, int16)
