"""The kernel catalogue: every C kernel the generator can call, and when it applies.

One :class:`Kernel` record per C function: its name, the IR op and activation type it runs,
the groups of C files a bundle needs for it (``KERNEL_GROUPS``), when it takes a layer
(``applies``), its arena workspace and weight packer where it has them, and the emitter that
writes its parameters and call.  For one (op, dtype) the records are kept in order of
preference: the first whose ``applies`` holds runs the layer, and the last (the reference
kernel) applies to every layer its emitter accepts.  Adding an op means adding a kernel (C),
an emitter and a record here (``@kernel`` on the emitter).

    >>> import edgecomp.backends.c.emit  # the emitters' @kernel records fill the catalogue
    >>> [k.name for k in candidates("depthwise_conv2d", "int8")]  # doctest: +NORMALIZE_WHITESPACE
    ['ec_depthwise_conv2d_s8_mve3x3', 'ec_depthwise_conv2d_s8_mve', 'ec_depthwise_conv2d_s8_dsp3x3w', 'ec_depthwise_conv2d_s8_dsp3x3', 'ec_depthwise_conv2d_s8_dsp3x3s2', 'ec_depthwise_conv2d_s8_dsp',
     'ec_depthwise_conv2d_s8']
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from .... import ir
from ....errors import UnsupportedError
from ....resources import templates_dir

#: The kernel files a bundle gets for each group of kernels: paths under templates/cortex_m/kernels
#: (one folder per op family, each optimized file beside the reference kernel it is tested
#: against); "reference" always, the others when a layer runs one of their kernels ("simd" comes
#: with the groups in SIMD_USERS).  A bundle gets them flat, by file name (names must be unique),
#: except the C files of a group in GROUP_SOURCE (see there).
KERNEL_GROUPS: dict[str, tuple[str, ...]] = {
    "reference": ("common/ec_kernels.h", "common/ec_requant.h", "common/ec_reference.h", "common/ec_kernels.c",
                  "conv/ec_conv2d.c", "depthwise/ec_depthwise_conv2d.c", "fully_connected/ec_fully_connected.c",
                  "elementwise/ec_elementwise.c", "pooling/ec_pooling.c", "elementwise/ec_softmax.c"),
    "s16": ("int16/ec_kernels_s16.h", "int16/ec_kernels_s16.c"),
    "dsp": ("common/ec_kernels_dsp.h", "conv/ec_conv2d_dsp.c", "depthwise/ec_depthwise_conv2d_dsp.c",
            "depthwise/ec_depthwise_conv2d_dsp_strips.c", "pooling/ec_pooling_dsp.c", "fully_connected/ec_fully_connected_dsp.c"),
    "gemm": ("conv/ec_kernels_gemm.h", "conv/ec_conv2d_gemm.c", "conv/ec_conv2d_gemm16.c"),
    "simd": ("common/ec_simd.h",),
    "data": ("ec_kernels_data.h", "ec_kernels_data.c"),
    "s4": ("ec_kernels_s4.h", "ec_kernels_s4.c"),  # packed (int4 / codebook) weights: emit/int4.py
    "lut": ("elementwise/ec_kernels_lut.h", "elementwise/ec_kernels_lut.c"),
    "binary": ("elementwise/ec_kernels_binary.h", "elementwise/ec_kernels_binary.c"),
    "binary_dsp": ("elementwise/ec_kernels_binary_dsp.h", "elementwise/ec_kernels_binary_dsp.c"),
    "reduce": ("reduce/ec_kernels_reduce.h", "reduce/ec_kernels_reduce.c"),
    "reduce_dsp": ("reduce/ec_kernels_reduce_dsp.h", "reduce/ec_kernels_reduce_dsp.c"),
    "pool_ext": ("pooling/ec_kernels_pool_ext.h", "pooling/ec_kernels_pool_ext.c"),
    "conv_ext": ("conv/ec_kernels_conv_ext.h", "conv/ec_kernels_conv_ext.c"),
    "rnn": ("recurrent/ec_kernels_rnn.h", "recurrent/ec_kernels_rnn.c"),
    "resize": ("ec_kernels_resize.h", "ec_kernels_resize.c"),
    "attn": ("attention/ec_kernels_attn.h", "attention/ec_kernels_attn.c"),
    "mve": ("mve/ec_kernels_mve.h", "mve/ec_kernels_mve.c"),  # Helium (Armv8.1-M with MVE): emit/mve.py
}
#: The one bundle file a group's C files become, joined in their KERNEL_GROUPS order (a single
#: file is copied as it is): the group stays one translation unit as before the split by family,
#: so the compiler sees the shared helpers' bodies where it compiles their callers (in separate
#: objects it makes other code: 24 more bytes of stack on the host, 148 more bytes of flash for
#: the digits demo on the Cortex-M0).
GROUP_SOURCE = {"reference": "ec_kernels.c", "dsp": "ec_kernels_dsp.c", "gemm": "ec_kernels_gemm.c"}
#: Groups of plain C kernels that run on every core (the reference each optimized kernel is tested against).
PORTABLE_GROUPS = frozenset({"reference", "s16", "data", "lut", "binary", "reduce", "pool_ext", "conv_ext", "rnn",
                             "resize", "attn"})
#: The header model.c includes for a group (in this order).
GROUP_HEADERS = {"s16": "ec_kernels_s16.h", "dsp": "ec_kernels_dsp.h", "gemm": "ec_kernels_gemm.h",
                 "data": "ec_kernels_data.h", "s4": "ec_kernels_s4.h", "lut": "ec_kernels_lut.h",
                 "binary": "ec_kernels_binary.h", "binary_dsp": "ec_kernels_binary_dsp.h",
                 "reduce": "ec_kernels_reduce.h", "reduce_dsp": "ec_kernels_reduce_dsp.h",
                 "pool_ext": "ec_kernels_pool_ext.h", "conv_ext": "ec_kernels_conv_ext.h", "rnn": "ec_kernels_rnn.h",
                 "resize": "ec_kernels_resize.h", "attn": "ec_kernels_attn.h", "mve": "ec_kernels_mve.h"}
GROUP_ORDER = ("reference", "s16", "dsp", "gemm", "simd", "data", "s4", "lut", "binary", "binary_dsp",
               "reduce", "reduce_dsp", "pool_ext", "conv_ext", "rnn", "resize", "attn", "mve")
#: Groups whose kernels use the packed-byte helpers of ec_simd.h.
SIMD_USERS = frozenset({"dsp", "gemm", "binary_dsp", "reduce_dsp"})


def always(gen: Any, node: ir.Node) -> bool:
    return True


@dataclass(frozen=True)
class Kernel:
    name: str  # the C function a layer's call runs
    op: str  # IR op
    dtype: str  # the layer's activation type: "int8", "int16", "float32", or "any"
    emit: Callable  # emit(gen, layer, kernel) -> the C call (writes the parameter blocks)
    applies: Callable = always  # applies(gen, node) -> bool: whether it takes this layer
    groups: tuple[str, ...] = ("reference",)
    workspace: Callable | None = None  # workspace(node) -> bytes of arena it needs during the layer
    packer: Callable | None = None  # the weight packer its constant layout comes from
    doc: str = ""
    rank: int = 100  # lower is tried first among the kernels of one (op, dtype); reference kernels 100


CATALOGUE: list[Kernel] = []


def kernel(name: str, op: str | tuple[str, ...], dtype: str | tuple[str, ...], *, applies: Callable = always,
           groups: tuple[str, ...] = ("reference",), workspace: Callable | None = None,
           packer: Callable | None = None, rank: int = 100):
    """Register the decorated emitter as the emitter of kernel ``name`` for each op and dtype given.
    Among the kernels of one (op, dtype) the lowest ``rank`` that applies runs a layer (optimized
    kernels rank below their reference kernel's 100)."""
    ops = (op,) if isinstance(op, str) else op
    dtypes = (dtype,) if isinstance(dtype, str) else dtype

    def deco(fn: Callable) -> Callable:
        for o in ops:
            for d in dtypes:
                CATALOGUE.append(Kernel(name, o, d, fn, applies, groups, workspace, packer,
                                        (fn.__doc__ or "").strip().split("\n")[0], rank))
        return fn
    return deco


def layer_dtype(g: ir.Graph, node: ir.Node) -> str:
    """The activation type that selects a layer's kernels: int16 if it reads or writes an int16
    activation, else int8 if it reads or writes an int8 one (quantize / dequantize included),
    else float32."""
    names = [i for i in node.inputs if not g.tensors[i].is_const] + list(node.outputs)
    dts = {g.tensors[n].dtype for n in names}
    return "int16" if "int16" in dts else "int8" if "int8" in dts else "float32"


def candidates(op: str, dtype: str) -> list[Kernel]:
    """The kernels of (op, dtype) in order of preference (those registered for "any" type when
    none is for this one).  The emitter modules (``backends/c/emit``) must have been imported."""
    exact = [k for k in CATALOGUE if k.op == op and k.dtype == dtype]
    return sorted(exact or [k for k in CATALOGUE if k.op == op and k.dtype == "any"], key=lambda k: k.rank)


def choose(gen: Any, node: ir.Node) -> Kernel:
    """The kernel that runs ``node``: the first candidate for its (op, dtype) that applies."""
    dtype = layer_dtype(gen.g, node)
    for k in candidates(node.op, dtype):
        if k.applies(gen, node):
            return k
    raise UnsupportedError(f"{dtype} {node.op} in the C backend", where=f"node {node.name!r}",
                           fix=supported_text())


def supported_text() -> str:
    by_type: dict[str, set[str]] = {}
    for k in CATALOGUE:
        by_type.setdefault(k.dtype, set()).add(k.op)
    return "The C backend runs: " + "; ".join(f"{t}: {', '.join(sorted(ops))}" for t, ops in sorted(by_type.items()))


def group_files(group: str) -> dict[str, tuple[str, ...]]:
    """A group's files as a bundle has them: bundle file name -> its template files."""
    out: dict[str, tuple[str, ...]] = {}
    for f in KERNEL_GROUPS[group]:
        name = GROUP_SOURCE[group] if group in GROUP_SOURCE and f.endswith(".c") else f.rsplit("/", 1)[-1]
        out[name] = out.get(name, ()) + (f,)
    return out


def bundle_names(*groups: str) -> tuple[str, ...]:
    """The bundle file names of ``groups``, in order, each once."""
    out: list[str] = []
    for g in groups:
        out += [n for n in group_files(g) if n not in out]
    return tuple(out)


def files_for(groups: set[str]) -> list[str]:
    """The bundle's kernel files (flat names) for these groups, in a fixed order (simd with the
    groups that use it)."""
    groups = set(groups) | {"reference"}
    if groups & SIMD_USERS:
        groups.add("simd")
    return list(bundle_names(*(g for g in GROUP_ORDER if g in groups)))


def all_kernel_files() -> dict[str, tuple[str, ...]]:
    """Every kernel file a bundle may hold: its name in the (flat) bundle -> its template files
    under ``templates/cortex_m/kernels`` (:func:`kernel_file_bytes` makes it)."""
    return {n: parts for g in KERNEL_GROUPS for n, parts in group_files(g).items()}


def kernel_file_bytes(name: str) -> bytes:
    """The bundle's kernel file ``name``: its template file, or its template files joined."""
    parts = all_kernel_files()[name]
    kdir = templates_dir() / "cortex_m" / "kernels"
    if len(parts) == 1:
        return (kdir / parts[0]).read_bytes()
    head = (f"/*\n * {name} - {', '.join(parts)}\n * (templates/cortex_m/kernels of edgecomp) in one translation "
            "unit, joined by edgecomp.\n */\n")
    return head.encode() + b"".join(f"\n/* ==== {f} ==== */\n\n".encode() + (kdir / f).read_bytes() for f in parts)


def write_kernel_files(out_dir: str | Path, names: Iterable[str]) -> list[str]:
    """Write the bundle's kernel files ``names`` into ``out_dir``; their names."""
    names = list(names)
    for n in names:
        (Path(out_dir) / n).write_bytes(kernel_file_bytes(n))
    return names
