"""The C kernel files a bundle needs, by kernel group: data, so that adding a kernel file is one line here.

The kernels live in ``templates/cortex_m/kernels/``, one folder per op family (the paths below are
relative to it), each optimized file beside the reference kernel it is tested against.  A bundle gets
them flat: every bundle file below is made of its template files, in this order; a group's C files
are joined into one file, so that the group is one translation unit as before the split by family
(the compiler then sees the shared helpers' bodies where it compiles their callers: which registers
and memory a call leaves alone, what it may inline; in separate objects it makes other code, e.g. 24
more bytes of stack on the host and 148 more bytes of flash for the digits demo on the Cortex-M0).

A bundle always gets the ``reference`` group; the generator adds ``s16`` when the graph has int16
layers, ``dsp`` and ``gemm`` when a layer uses those kernels, and ``simd`` with either of them.
"""
from __future__ import annotations

from pathlib import Path

from ..resources import templates_dir

#: group -> {bundle file name: its template files}
GROUPS: dict[str, dict[str, tuple[str, ...]]] = {
    # plain C kernels, one per op (bit-exact with TensorFlow Lite Micro's reference kernels), and what
    # every kernel file shares
    "reference": {
        "ec_kernels.h": ("common/ec_kernels.h",),
        "ec_requant.h": ("common/ec_requant.h",),
        "ec_reference.h": ("common/ec_reference.h",),
        "ec_kernels.c": ("common/ec_kernels.c", "conv/ec_conv2d.c", "depthwise/ec_depthwise_conv2d.c",
                         "fully_connected/ec_fully_connected.c", "elementwise/ec_elementwise.c",
                         "pooling/ec_pooling.c", "elementwise/ec_softmax.c"),
    },
    # int8 kernels for cores with the DSP extension (SMLAD, SXTB16)
    "dsp": {
        "ec_kernels_dsp.h": ("common/ec_kernels_dsp.h",),
        "ec_kernels_dsp.c": ("conv/ec_conv2d_dsp.c", "depthwise/ec_depthwise_conv2d_dsp.c",
                             "pooling/ec_pooling_dsp.c", "fully_connected/ec_fully_connected_dsp.c"),
    },
    # int8 convolution as a matrix product (DSP cores)
    "gemm": {
        "ec_kernels_gemm.h": ("conv/ec_kernels_gemm.h",),
        "ec_kernels_gemm.c": ("conv/ec_conv2d_gemm.c",),
    },
    # the DSP instructions (and their C versions) the dsp and gemm groups use
    "simd": {"ec_simd.h": ("common/ec_simd.h",)},
    # int16 activations x int8 weights
    "s16": {
        "ec_kernels_s16.h": ("int16/ec_kernels_s16.h",),
        "ec_kernels_s16.c": ("int16/ec_kernels_s16.c",),
    },
}


def names(*groups: str) -> tuple[str, ...]:
    """The bundle file names of ``groups``, in order, each once."""
    out: list[str] = []
    for g in groups:
        out += [n for n in GROUPS[g] if n not in out]
    return tuple(out)


def sources(*groups: str) -> tuple[str, ...]:
    """The C sources among them (bundle names): what a build compiles."""
    return tuple(n for n in names(*groups) if n.endswith(".c"))


def kernels_dir() -> Path:
    return templates_dir() / "cortex_m" / "kernels"


def parts(name: str) -> tuple[str, ...]:
    """The template files (relative to kernels_dir()) of the bundle file ``name``."""
    for files in GROUPS.values():
        if name in files:
            return files[name]
    raise KeyError(f"{name!r} is not a kernel file")


def data(name: str) -> bytes:
    """The bundle file ``name``: its template file, or its template files joined (one translation unit)."""
    files = parts(name)
    if len(files) == 1:
        return (kernels_dir() / files[0]).read_bytes()
    head = (f"/*\n * {name} - {', '.join(files)}\n * (templates/cortex_m/kernels of edgecomp) in one translation "
            "unit, joined by edgecomp.\n */\n")
    return head.encode() + b"".join(f"\n/* ==== {f} ==== */\n\n".encode() + (kernels_dir() / f).read_bytes()
                                    for f in files)


def write(out_dir: Path, *names_: str) -> None:
    """Write the bundle files ``names_`` into ``out_dir``."""
    for n in names_:
        (Path(out_dir) / n).write_bytes(data(n))
