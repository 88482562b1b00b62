"""The C kernel files a bundle needs, by kernel group: data, so that adding a kernel file is one line here.

The files live in ``templates/cortex_m/kernels/`` (the paths below are relative to it); a bundle gets
them flat, under their file names (which are therefore unique across groups).  A bundle always gets
the ``reference`` group; the generator adds ``s16`` when the graph has int16 layers, ``dsp`` and
``gemm`` when a layer uses those kernels, and ``simd`` with either of them.
"""
from __future__ import annotations

from pathlib import Path, PurePosixPath

from ..resources import templates_dir

GROUPS: dict[str, tuple[str, ...]] = {
    # plain C kernels, one per op (bit-exact with TensorFlow Lite Micro's reference kernels)
    "reference": ("ec_kernels.h", "ec_requant.h", "ec_kernels.c"),
    # int8 kernels for cores with the DSP extension (SMLAD, SXTB16)
    "dsp": ("ec_kernels_dsp.h", "ec_kernels_dsp.c"),
    # int8 convolution as a matrix product (DSP cores)
    "gemm": ("ec_kernels_gemm.h", "ec_kernels_gemm.c"),
    # packed-byte helpers shared by the dsp and gemm groups
    "simd": ("ec_simd.h",),
    # int16 activations x int8 weights
    "s16": ("ec_kernels_s16.h", "ec_kernels_s16.c"),
}


def files(*groups: str) -> tuple[str, ...]:
    """The template paths (relative to the kernels folder) of ``groups``, in order, each once."""
    out: list[str] = []
    for g in groups:
        out += [f for f in GROUPS[g] if f not in out]
    return tuple(out)


def names(*groups: str) -> tuple[str, ...]:
    """The file names the groups' files have in a bundle."""
    return tuple(PurePosixPath(f).name for f in files(*groups))


def sources(*groups: str) -> tuple[str, ...]:
    """The C sources among them (bundle names): what a build compiles."""
    return tuple(n for n in names(*groups) if n.endswith(".c"))


def kernels_dir() -> Path:
    return templates_dir() / "cortex_m" / "kernels"


def template_path(name: str) -> Path:
    """Where the bundle file ``name`` comes from."""
    for f in files(*GROUPS):
        if PurePosixPath(f).name == name:
            return kernels_dir() / f
    raise KeyError(f"{name!r} is not a kernel file")
