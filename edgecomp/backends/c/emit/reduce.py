"""Reductions: mean (the DSP spatial mean where it applies), argmax, softmax over a strided axis,
L2 normalization (``ec_kernels_reduce``)."""
from __future__ import annotations

from ....axes import MAX_GROUPS, geometry, reduced_axes
from ....errors import UnsupportedError
from ....sanitize import c_comment
from ..kernels.catalogue import kernel
from ..literals import c_float, c_int


def reduce_fields(gen, L, axes) -> list[tuple[str, str]]:
    """ec_reduce_params_t's walk: kept and reduced runs (edgecomp.axes.geometry), padded in front
    to EC_REDUCE_GROUPS runs of size 1."""
    node, x = L.node, L.x
    kept, red = geometry(x.shape, axes)
    if len(kept) > MAX_GROUPS or len(red) > MAX_GROUPS:
        raise UnsupportedError(f"{node.op} over axes {list(axes)} of a {len(x.shape)}-D tensor "
                               f"({len(kept)} kept and {len(red)} reduced runs of axes)", where=f"node {node.name!r}",
                               fix=f"Reduce at most {MAX_GROUPS} separate runs of axes")
    kept = [(1, 0)] * (MAX_GROUPS - len(kept)) + kept
    red = [(1, 0)] * (MAX_GROUPS - len(red)) + red
    arr = lambda vs: "{" + ", ".join(str(v) for v in vs) + "}"  # noqa: E731
    n = 1
    for d, _ in red:
        n *= d
    return [("kept_dims", arr(d for d, _ in kept)), ("kept_strides", arr(s for _, s in kept)),
            ("red_dims", arr(d for d, _ in red)), ("red_strides", arr(s for _, s in red)), ("count", str(n))]


def spatial_mean(gen, node) -> bool:
    """An int8 mean of an NHWC-like tensor over its pixels: kept runs (batches, channels) with the
    channels contiguous and at least 4 of them, one reduced run of pixels (ec_mean_s8_dsp)."""
    x = gen.g.tensors[node.inputs[0]]
    if not gen.dsp or x.dtype != "int8":
        return False
    kept, red = geometry(x.shape, reduced_axes(node, len(x.shape)))
    if len(red) != 1 or not kept or kept[-1][1] != 1 or kept[-1][0] < 4 or red[0][1] != kept[-1][0]:
        return False
    return len(kept) == 1 or (len(kept) == 2 and kept[0][1] == red[0][0] * kept[-1][0])


@kernel("ec_mean_s8_dsp", "mean", "int8", applies=spatial_mean, groups=("reduce", "reduce_dsp"), rank=10)
@kernel("ec_mean_s8", "mean", "int8", groups=("reduce",))
@kernel("ec_mean_f32", "mean", "float32", groups=("reduce",))
def emit_mean(gen, L, k) -> str:
    """The mean over the reduced axes: one output per position of the kept axes."""
    node, x, out = L.node, L.x, L.out
    axes = reduced_axes(node, len(x.shape))
    fields = reduce_fields(gen, L, axes)
    lo, hi, _, _ = gen.act(node, out)
    if L.s8:
        q = gen.q(node)
        fields += [("input_offset", c_int(q["input_offset"])), ("output_offset", c_int(q["output_offset"])),
                   ("multiplier", c_int(q["multiplier"])), ("shift", c_int(q["shift"])),
                   ("act_min", lo), ("act_max", hi)]
    L.head.append(f"  mean over axes {list(axes)}" + (", 4 channels at a time (SXTAB16)" if k.name.endswith("dsp")
                                                      else ""))
    gen.struct("ec_reduce_params_t", L.base, fields, c_comment(f"{node.name}: mean"))
    return f"{k.name}(&{L.base}, {gen.tensor(x.name)}, {gen.tensor(out.name)});"


@kernel("ec_argmax_s8", "argmax", "int8", groups=("reduce",))
@kernel("ec_argmax_f32", "argmax", "float32", groups=("reduce",))
def emit_argmax(gen, L, k) -> str:
    """The index of the largest value along one axis, as int32."""
    node, x, out = L.node, L.x, L.out
    axes = reduced_axes(node, len(x.shape))
    if out.dtype != "int32":
        raise UnsupportedError(f"argmax into {out.dtype}", where=f"node {node.name!r}")
    L.head.append(f"  argmax along axis {axes[0]}")
    gen.struct("ec_reduce_params_t", L.base, reduce_fields(gen, L, axes), c_comment(f"{node.name}: argmax"))
    return f"{k.name}(&{L.base}, {gen.tensor(x.name)}, {gen.tensor(out.name)});"


def softmax_inner(gen, node) -> int:
    """Elements after the softmax axis (1: the innermost axis, the plain kernel)."""
    x = gen.g.tensors[node.inputs[0]]
    axis = int(node.attrs.get("axis", -1)) % len(x.shape)
    inner = 1
    for d in x.shape[axis + 1:]:
        inner *= d
    return inner


@kernel("ec_softmax_axis_s8", "softmax", "int8", groups=("reduce",), rank=10,
        applies=lambda gen, n: softmax_inner(gen, n) > 1)
@kernel("ec_softmax_axis_f32", "softmax", "float32", groups=("reduce",), rank=10,
        applies=lambda gen, n: softmax_inner(gen, n) > 1)
def emit_softmax_axis(gen, L, k) -> str:
    """Softmax along an axis that is not the innermost: rows gathered into the layer's workspace."""
    node, x, out = L.node, L.x, L.out
    axis = int(node.attrs.get("axis", -1)) % len(x.shape)
    depth, inner = x.shape[axis], softmax_inner(gen, node)
    work = gen.plan.workspace.get(node.name)
    if work is None:
        raise AssertionError("a softmax along a strided axis is planned with a workspace")
    fields = [("rows", str(out.size // depth)), ("depth", str(depth))]
    if L.s8:
        q = gen.q(node)
        fields += [("input_multiplier", c_int(q["input_multiplier"])), ("input_left_shift", c_int(q["input_left_shift"])),
                   ("diff_min", c_int(q["diff_min"])), ("beta", "0.0f")]
    else:
        fields += [("beta", c_float(node.attrs.get("beta", 1.0)))]
    L.head.append(f"  beta {node.attrs.get('beta', 1.0)}, along axis {axis} ({depth} values {inner} apart), "
                  f"each row through the {work[1]}-byte workspace at {work[0]}")
    gen.struct("ec_softmax_params_t", L.base, fields, c_comment(f"{node.name}: softmax"))
    ctype = "int8_t" if L.s8 else "float"
    return (f"{k.name}(&{L.base}, {inner}, {gen.tensor(x.name)}, {gen.tensor(out.name)}, "
            f"({ctype} *)(arena.bytes + {work[0]}));")


@kernel("ec_l2_normalization_s8", "l2_normalization", "int8", groups=("reduce",))
@kernel("ec_l2_normalization_f32", "l2_normalization", "float32", groups=("reduce",))
def emit_l2_norm(gen, L, k) -> str:
    """x / |x| along the last axis."""
    x, out = L.x, L.out
    depth = x.shape[-1]
    rows = x.size // depth
    if L.s8:
        q = gen.q(L.node)
        return (f"{k.name}({rows}, {depth}, {c_int(q['input_offset'])}, {gen.tensor(x.name)}, "
                f"{gen.tensor(out.name)});")
    return f"{k.name}({rows}, {depth}, {gen.tensor(x.name)}, {gen.tensor(out.name)});"
