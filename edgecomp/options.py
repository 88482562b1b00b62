"""Compile options as one value: what the user chose and the planner's tuning knobs.

:class:`CodegenOptions` is passed through kernel planning, memory planning and emission
(``edgecomp.pipeline``); nothing reads module globals.  Tests that need an unusual plan (a
workspace that grows the arena, rows blocked, no in-place layers) pass options instead of
patching modules.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .errors import EdgecompError

KERNEL_CHOICES = ("auto", "reference", "dsp", "mve")
OPTIMIZE_CHOICES = ("balanced", "speed")
GEMM_BLOCKS = ("auto", "whole", "rows")


@dataclass(frozen=True)
class CodegenOptions:
    """How the C backend plans and writes a model.

    ``dsp``: int8 layers take the DSP (SMLAD) and matrix-product kernels where they apply;
    resolved from ``kernels`` ("auto": the target's DSP extension) by :meth:`for_target`.
    ``mve``: int8 layers take the Helium (MVE) kernels where they apply (the DSP / reference
    kernels run the others); "auto" on a target with ``mve = true``, or ``kernels="mve"``.
    ``optimize``: "balanced" (least RAM, flash about the int8 weights) or "speed" (the
    matrix-product and fully connected weights widened to int16 in flash, more arena allowed).
    The rest are the kernel planner's limits (``edgecomp.backends.c.kernel_plan``).
    """

    kernels: str = "auto"
    dsp: bool = False
    mve: bool = False
    optimize: str = "balanced"
    probe: bool = True
    # matrix-product workspaces may grow the arena by this many bytes plus this fraction of it:
    # a layer 1.75x faster for 2.5 % more RAM (ResNet-8's 16x16x32 convolution: 640 B on 25,600)
    arena_growth: int = 0
    arena_growth_fraction: float = 0.03
    # --optimize speed: this fraction plus these bytes instead (the digits demo: arena 640 -> 992
    # bytes, 40 % fewer instructions; ResNet-8: +1.2 KB, 7 % fewer)
    speed_growth_fraction: float = 0.25
    speed_growth: int = 1024
    # widened (int16) weights in the arena: only where they fit as planned plus this many bytes
    wide_growth: int = 0
    wide_min_tile: int = 4  # fewer channel pairs per tile: copying the windows again costs more
    wide_tile_cap: int = 0  # at most this many channel pairs per tile (0: no cap)
    gemm_chunk: int = 8  # output-channel pairs per pass when a pixel's whole window is one block
    gemm_blocks: str = "auto"  # "whole": whole kernel windows only; "rows": one kernel row per block
    row_fusion: bool = True  # ResNet blocks run row by row (find_row_fusions) where it saves RAM
    dw_apart: bool = True  # wide depthwise layers planned apart from their input (fast path)
    inplace: bool = True  # the memory planner's in-place rules
    streaming: bool = False  # recurrent models: one frame per ec_invoke, state kept (passes/streaming.py)

    def __post_init__(self):
        if self.kernels not in KERNEL_CHOICES:
            raise EdgecompError(f"unknown kernels option {self.kernels!r}", None,
                                "use one of: " + ", ".join(KERNEL_CHOICES))
        if self.optimize not in OPTIMIZE_CHOICES:
            raise EdgecompError(f"unknown optimization goal {self.optimize!r}", None,
                                "use 'balanced' (the default) or 'speed'")
        if self.gemm_blocks not in GEMM_BLOCKS:
            raise ValueError(f"gemm_blocks must be one of {GEMM_BLOCKS}")

    @property
    def speed(self) -> bool:
        return self.optimize == "speed"

    def replace(self, **kw) -> "CodegenOptions":
        return dataclasses.replace(self, **kw)

    @classmethod
    def for_target(cls, target_dsp: bool, kernels: str | None = "auto", optimize: str | None = "balanced",
                   target_mve: bool = False, target_name: str = "", **kw) -> "CodegenOptions":
        """Options for a target: ``kernels`` "auto" takes the Helium kernels when the target has MVE
        and the DSP kernels when it has the DSP extension (both on a Cortex-M55: Helium first, the
        DSP kernels for the layers no Helium kernel takes).  "mve" on a target without MVE is
        refused (the firmware would not compile, or fault on the first vector instruction)."""
        k = "auto" if kernels is None else kernels
        if k not in KERNEL_CHOICES:
            raise EdgecompError(f"unknown kernels option {kernels!r}", None, "use one of: " + ", ".join(KERNEL_CHOICES))
        if k == "mve" and not target_mve:
            raise EdgecompError(f"the Helium (MVE) kernels need an Armv8.1-M core with MVE; target "
                                f"{target_name or '(this one)'!r} has none", None,
                                "use --kernels auto (the best kernels the target has), or a target with "
                                "mve = true in its file (cortex-m55, alif-e7-hp)")
        mve = k == "mve" or (k == "auto" and bool(target_mve))
        return cls(kernels=k, dsp=k == "dsp" or (k in ("auto", "mve") and bool(target_dsp)), mve=mve,
                   optimize=optimize or "balanced", **kw)
