"""The C backend: a lowered ir.Graph -> readable C for Cortex-M (and the host).

Layout: ``generate.py`` (the backend's passes and its files), ``kernel_plan.py`` (which optimized
kernel each layer runs), ``emitter.py`` (one commented call per layer), ``emit/`` (the emitters,
one module per op family), ``kernels/`` (the kernel catalogue, the Python mirrors of the C
kernels' checks, the weight packers) and ``literals.py`` (C literals and names).  The C kernels
themselves are in ``templates/cortex_m/kernels/``.
"""
from .generate import C_PASSES, CodegenInfo, emit, generate, lower

__all__ = ["C_PASSES", "CodegenInfo", "emit", "generate", "lower"]
