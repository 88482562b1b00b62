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
    ['ec_depthwise_conv2d_s8_dsp3x3', 'ec_depthwise_conv2d_s8_dsp3x3s2', 'ec_depthwise_conv2d_s8_dsp',
     'ec_depthwise_conv2d_s8']
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from .... import ir
from ....errors import UnsupportedError

#: C sources (under templates/cortex_m/kernels, possibly in a family folder: the bundle gets them
#: flat, so names must be unique) a bundle gets for each group of kernels;
#: "reference" always, the others when a layer runs one of their kernels ("simd" comes with
#: "dsp" and "gemm").
KERNEL_GROUPS: dict[str, tuple[str, ...]] = {
    "reference": ("ec_kernels.h", "ec_kernels.c"),
    "s16": ("ec_kernels_s16.h", "ec_kernels_s16.c"),
    "dsp": ("ec_kernels_dsp.h", "ec_kernels_dsp.c"),
    "gemm": ("ec_kernels_gemm.h", "ec_kernels_gemm.c"),
    "simd": ("ec_simd.h",),
    "data": ("ec_kernels_data.h", "ec_kernels_data.c"),
}
#: Groups of plain C kernels that run on every core (the reference each optimized kernel is tested against).
PORTABLE_GROUPS = frozenset({"reference", "s16", "data"})
#: The header model.c includes for a group (in this order).
GROUP_HEADERS = {"s16": "ec_kernels_s16.h", "dsp": "ec_kernels_dsp.h", "gemm": "ec_kernels_gemm.h",
                 "data": "ec_kernels_data.h"}
GROUP_ORDER = ("reference", "s16", "dsp", "gemm", "simd", "data")


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


def files_for(groups: set[str]) -> list[str]:
    """The kernel files of these groups, in a fixed order (simd with dsp or gemm)."""
    groups = set(groups) | {"reference"}
    if groups & {"dsp", "gemm"}:
        groups.add("simd")
    return [f for g in GROUP_ORDER if g in groups for f in KERNEL_GROUPS[g]]


def all_kernel_files() -> dict[str, str]:
    """Every kernel file a bundle may hold: its name in the (flat) bundle -> its path under
    ``templates/cortex_m/kernels`` (a source may sit in a family folder)."""
    return {f.rsplit("/", 1)[-1]: f for files in KERNEL_GROUPS.values() for f in files}
