"""Kernel planning: which optimized kernel each int8 layer runs, searched with the memory planner.

On DSP cores (``opts.dsp``) int8 convolutions may run as a matrix product
(``ec_conv2d_s8_gemm``) with a workspace in the arena; how big a workspace a layer gets (whole
kernel windows or one kernel row per block, all output channels in one pass, widened int16
weights, the residual add's rescale tables) is a trade of RAM for speed, decided layer by layer,
the biggest first, by planning the arena with each choice (docs/internals.md, "Matrix-product
convolution").  ResNet blocks may run row by row (:func:`find_row_fusions`), and wide depthwise
layers are kept apart from their input where that keeps them on the fast path.

:func:`plan_kernels` is the pipeline pass: it records each layer's :class:`GemmLayout` in
``node.attrs["gemm"]`` and the row fusions and depthwise layers kept apart in ``graph.meta``;
the memory planning pass (:func:`plan_memory_pass`) then plans the arena for exactly those
choices.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ... import ir
from ...options import CodegenOptions
from ...passes.memory_plan import MemoryPlan, plan_memory, reads, strided_rows
from .kernels.predicates import (DW_SCRATCH_BYTES, GEMM_ADD_TABLE_BYTES, dw_fast_ok, dw_fast_shape_ok, gemm_acc_ok, gemm_fast_requant,
                                 gemm_work_bytes, kernel_row_bytes, mve_ok, mve_work_bytes)

DEFAULT = CodegenOptions()


@dataclass
class GemmLayout:
    """How ec_kernels_gemm runs one convolution: nb blocks of kbp taps (kernel rows padded to
    whole words)."""
    kbp: int
    nb: int
    chunk: int  # output-channel pairs per pass
    work_bytes: int
    tables: bool = False  # the fused residual add through two 256-entry tables after the workspace
    wtile: int = 0  # > 0: output-channel pairs whose weights are widened to int16 at a time (ec_gemm16_2x2)
    wbuf_bytes: int = 0  # the widened weights' buffer in this workspace (before the tables), 0: none
    wbuf_in: str = ""  # a row-fused first layer: the buffer is in this (the second) layer's workspace
    wflash: bool = False  # the weights stored widened in flash (--optimize speed): wtile is every pair, no buffer


def gemm_layout(g: ir.Graph, node: ir.Node, blocked: bool, whole: bool = False,
                opts: CodegenOptions = DEFAULT) -> GemmLayout | None:
    """The matrix-product layout of an int8 conv2d (None: it keeps the other kernels).

    ``blocked``: one kernel row per block (less workspace, the accumulators kept in it).
    ``whole``: every output channel in one pass (one call per pixel pair; ``opts.gemm_chunk`` pairs
    else).  ``opts.gemm_blocks`` "whole" / "rows" overrides ``blocked``."""
    if opts.gemm_blocks != "auto":
        blocked = opts.gemm_blocks == "rows"
    if node.op != "conv2d" or "hybrid" in node.attrs or node.attrs.get("dilation", (1, 1)) != (1, 1) \
            or node.attrs.get("mve") \
            or node.attrs.get("packed_weights") \
            or int(node.attrs.get("groups", 1)) != 1:  # packed (int4 / codebook) weights run ec_kernels_s4
        return None
    out, x = g.tensors[node.outputs[0]], g.tensors[node.inputs[0]]
    w = g.tensors[node.inputs[1]]
    if out.dtype != "int8" or x.dtype != "int8" or len(w.shape) != 4 or len(x.shape) != 4 or not w.is_const:
        return None
    q = node.attrs.get("q")
    if q is None or int(q["filter_offset"]) != 0:
        return None
    if len(node.inputs) > 2 and (not g.tensors[node.inputs[2]].is_const or g.tensors[node.inputs[2]].dtype != "int32"):
        return None
    oc, kh, kw, ic = (int(v) for v in w.shape)
    live = gemm_live(g, node)
    oc = oc if live is None else len(live)
    nb = kh if blocked and kh > 1 else 1
    kbp = kh * kernel_row_bytes(kw, ic) // nb  # each kernel row in whole words
    chunk = (oc + 1) // 2 if nb > 1 or whole else min((oc + 1) // 2, opts.gemm_chunk)
    return GemmLayout(kbp, nb, chunk, gemm_work_bytes(kbp, ic, chunk, None if live is None else oc))


def gemm_live(g: ir.Graph, node: ir.Node) -> np.ndarray | None:
    """The output channels a matrix-product conv computes when some have only zero weights
    (pruned channels: their outputs are constants, the requantized bias), else None.  Not with a
    fused residual add (the constant is added to a skip value) nor when fewer than two remain."""
    w = g.tensors[node.inputs[1]]
    if node.op != "conv2d" or node.attrs.get("residual") or w.data is None or len(w.shape) != 4:
        return None
    live = np.flatnonzero((w.data.reshape(w.shape[0], -1) != 0).any(axis=1))
    if len(live) == w.shape[0] or len(live) < 2:
        return None
    return live


def _conv3x3_same(g: ir.Graph, node: ir.Node) -> bool:
    a = node.attrs
    w = g.tensors[node.inputs[1]]
    x, y = g.tensors[node.inputs[0]], g.tensors[node.outputs[0]]
    return (node.op == "conv2d" and len(w.shape) == 4 and tuple(w.shape[1:3]) == (3, 3)
            and tuple(a.get("stride", (1, 1))) == (1, 1) and tuple(a.get("dilation", (1, 1))) == (1, 1)
            and tuple(a.get("pad", (0, 0, 0, 0))) == (1, 1, 1, 1) and len(x.shape) == 4 and x.shape[0] == 1
            and tuple(y.shape[1:3]) == tuple(x.shape[1:3]) and x.shape[1] >= 4)


def find_row_fusions(g: ir.Graph, opts: CodegenOptions = DEFAULT) -> dict[str, int]:
    """Pairs of int8 3x3 stride-1 'same' convolutions A -> B (ResNet's blocks) where B adds A's
    input back (a fused residual add) and is A's only reader: A can run row by row inside B, its
    output kept in a 3-row buffer instead of a whole tensor.  {A: buffer bytes}.  Both run as
    matrix products (DSP cores) or both through the Helium kernel (``mark_mve``)."""
    readers: dict[str, int] = {}
    for n in g.nodes:
        for t in reads(n):
            readers[t] = readers.get(t, 0) + 1
    out: dict[str, int] = {}
    for a, b in zip(g.nodes, g.nodes[1:]):
        res = b.attrs.get("residual")
        y = a.outputs[0]
        helium = bool(a.attrs.get("mve") and b.attrs.get("mve"))  # (mark_mve: both run ec_conv2d_s8_mve)
        if (res is None or res.get("tensor") != a.inputs[0] or b.inputs[0] != y or readers.get(y) != 1
                or y in g.outputs or a.name in out or not _conv3x3_same(g, a) or not _conv3x3_same(g, b)
                or a.attrs.get("residual")):
            continue
        if not helium and (gemm_layout(g, a, False, opts=opts) is None or gemm_layout(g, b, False, opts=opts) is None
                           or gemm_live(g, a) is not None):
            continue
        t = g.tensors[y]
        out[a.name] = 3 * t.shape[2] * t.shape[3]
    return out


def _tiled(g: ir.Graph, name: str, lay: GemmLayout) -> bool:
    """Whether a layer runs its output channels in several tiles (its whole input read per tile)."""
    node = next(n for n in g.nodes if n.name == name)
    return 0 < lay.wtile < (g.tensors[node.outputs[0]].shape[3] + 1) // 2


def kernel_workspaces(g: ir.Graph) -> dict[str, int]:
    """Workspaces kernels need whatever the plan: a softmax along a strided axis gathers each row
    into one (ec_softmax_axis_*); a Helium convolution its two im2col windows, a Helium depthwise
    layer its row of the input zero point (layers :func:`mark_mve` marked)."""
    out = {}
    for n in g.nodes:
        if n.attrs.get("mve") and mve_work_bytes(g, n):
            out[n.name] = mve_work_bytes(g, n)
        if strided_rows(g, n):
            x = g.tensors[n.inputs[0]]
            out[n.name] = x.shape[int(n.attrs["axis"]) % len(x.shape)] * ir.dtype_bytes(x.dtype)
    return out


def dw_workspaces(g: ir.Graph, opts: CodegenOptions) -> dict[str, int]:
    """With the DSP kernels and --optimize speed: the int16 row pairs of the depthwise 3x3 fast path
    (DW_SCRATCH_BYTES: strips of 28 rows) in the arena for every layer whose shape it takes (in place
    or not: the workspace does not depend on the placement).  Without one the kernel keeps them in
    the scratch row when it holds strips of 4 rows or more (DS-CNN: 8), else on the stack."""
    if not (opts.dsp and opts.speed):
        return {}
    return {n.name: DW_SCRATCH_BYTES for n in g.nodes
            if _dw_dsp(g, n) and dw_fast_shape_ok(g, n, n.attrs.get("residual"))}


def plan_with_layouts(g: ir.Graph, lays: dict[str, GemmLayout], fused: dict[str, int], apart=frozenset(),
                      opts: CodegenOptions = DEFAULT) -> MemoryPlan:
    """The memory plan with these matrix-product layouts (their workspaces; tiled layers apart
    from their input), row fusions, layers kept apart and the kernels' own workspaces (recurrent
    layers' gate scratch, the depthwise fast path's row pairs included)."""
    from .emit.recurrent import scratch_bytes
    work = {n.name: scratch_bytes(g, n) for n in g.nodes if scratch_bytes(g, n)}
    return plan_memory(g, workspace={**kernel_workspaces(g), **dw_workspaces(g, opts), **work,
                                     **{n: x.work_bytes for n, x in lays.items()}},
                       fused=fused, apart={n for n, x in lays.items() if _tiled(g, n, x)} | set(apart),
                       inplace=opts.inplace)


def _dw_dsp(g: ir.Graph, node: ir.Node) -> bool:
    """Whether an int8 depthwise conv takes ec_kernels_dsp (as the depthwise emitter decides)."""
    q = node.attrs.get("q")
    return node.op == "depthwise_conv2d" and q is not None and g.tensors[node.outputs[0]].dtype == "int8" \
        and not node.attrs.get("mve") \
        and int(node.attrs.get("depth_multiplier", 1)) == 1 and int(q["filter_offset"]) == 0


def _dw_apart(g: ir.Graph, plan: MemoryPlan, apart: set[str], trial, limit: int | None = None) -> MemoryPlan:
    """Depthwise 3x3 layers that miss the fast path only because they run in place (wide rows:
    the fast path takes in-place layers of one column tile only) are planned apart from their
    input where the arena does not grow (the general depthwise code is about 4x slower), or stays
    within ``limit`` (--optimize speed's allowance)."""
    for n in g.nodes:
        if not _dw_dsp(g, n) or dw_fast_ok(g, n, plan, n.attrs.get("residual")):
            continue
        t = trial(apart | {n.name})
        if t.arena_bytes <= (plan.arena_bytes if limit is None else max(plan.arena_bytes, limit)) \
                and dw_fast_ok(g, n, t, n.attrs.get("residual")):
            apart.add(n.name)
            plan = t
    return plan


def _widen_weights(g, nodes, lays, plan, fused, macs, trial, opts: CodegenOptions):
    """Layers (the biggest first) take widened int16 weights where the buffer fits in the arena as
    planned: all their channel pairs at once, else (output apart from the input, no residual add)
    the most pairs per tile that fit, at least opts.wide_min_tile.  A row-fused pair shares one
    buffer in the second layer's workspace (each row call widens its own weights again)."""
    limit = plan.arena_bytes + opts.wide_growth
    dw = [n for n in g.nodes if n.op == "depthwise_conv2d" and not n.attrs.get("mve")
          and dw_fast_ok(g, n, plan, n.attrs.get("residual"))]
    apart = [n for n in lays if n not in plan.scratch and g.tensors[nodes[n].outputs[0]].shape[2] % 2]

    def keeps(t: MemoryPlan) -> bool:
        """Within the limit, and the new placement pushes no depthwise layer off its fast path and
        puts no matrix-product layer of odd width that wrote apart from its input in place (row by
        row, pixel pairs do not cross rows: each row would end with a single pixel)."""
        return t.arena_bytes <= limit and all(dw_fast_ok(g, n, t, n.attrs.get("residual")) for n in dw) \
            and not any(n in t.scratch for n in apart)
    index = {n.name: i for i, n in enumerate(g.nodes)}
    first_of = {g.nodes[index[a] + 1].name: a for a in fused}  # a fused pair's second layer -> its first
    for name in sorted(lays, key=lambda n: -macs[n]):
        lay = lays[name]
        if lay.nb > 1 or name in fused or lay.wtile:
            continue
        pairs = (g.tensors[nodes[name].outputs[0]].shape[3] + 1) // 2
        a = first_of.get(name)
        if a is not None:  # the pair: both single tiles, one buffer
            if lays.get(a) is None or lays[a].nb > 1:
                continue
            pa = (g.tensors[nodes[a].outputs[0]].shape[3] + 1) // 2
            nbytes = 4 * max(lay.kbp * pairs, lays[a].kbp * pa)
            wide = dataclasses.replace(lay, wtile=pairs, wbuf_bytes=nbytes, work_bytes=lay.work_bytes + nbytes)
            t = trial(name, wide)
            if keeps(t):
                lays[name], lays[a], plan = wide, dataclasses.replace(lays[a], wtile=pa, wbuf_in=name), t
            continue

        def fits(tile):
            nb_ = 4 * lay.kbp * tile
            w = dataclasses.replace(lay, wtile=tile, wbuf_bytes=nb_, work_bytes=lay.work_bytes + nb_)
            t = trial(name, w)
            ok = keeps(t) and (tile == pairs or name not in t.scratch)  # (tiled: never in place)
            return (w, t) if ok else None
        cap = min(pairs, opts.wide_tile_cap or pairs)
        got = fits(pairs) if cap == pairs else None
        if got is None and not nodes[name].attrs.get("residual"):
            lo, hi = min(opts.wide_min_tile, cap), min(pairs - 1, cap)  # the most pairs per tile that fit
            while lo <= hi:
                mid = (lo + hi) // 2
                r = fits(mid)
                if r is not None:
                    got, lo = r, mid + 1
                else:
                    hi = mid - 1
        if got is not None:
            lays[name], plan = got
    return plan


def plan_with_gemm(g: ir.Graph, opts: CodegenOptions, fusions: bool | None = None) \
        -> tuple[MemoryPlan, dict[str, GemmLayout], dict[str, int], set[str]]:
    """(memory plan, matrix-product layouts, row fusions, depthwise layers apart) of an int8 graph.

    Without ``opts.dsp`` only the plain memory plan.  A workspace must not grow the arena beyond
    ``opts.arena_growth_fraction`` (+ ``arena_growth`` bytes): each layer takes whole kernel
    windows, else one kernel row per block, else keeps the DSP kernel without a workspace,
    whichever first fits.  Then a layer whose accumulators for all its output channels still fit
    (no bigger arena) takes them: one pass per pixel pair.  With ``opts.speed`` (--optimize speed)
    the workspaces may grow the arena more (``speed_growth_fraction`` + ``speed_growth``) and
    every one-block layer stores its weights widened to int16 in flash (twice their bytes)
    instead of widening them in the arena where it has room."""
    if fusions is None:
        fusions = opts.row_fusion
    if not opts.dsp and not opts.mve:
        return plan_memory(g, inplace=opts.inplace, workspace=kernel_workspaces(g)), {}, {}, set()
    speed = opts.speed
    fused = find_row_fusions(g, opts) if fusions else {}
    base = plan_memory(g, fused=fused, inplace=opts.inplace, workspace={**kernel_workspaces(g), **dw_workspaces(g, opts)})
    macs = {n.name: ir.macs(g, n) for n in g.nodes}
    cands = [(n.name, [lay for lay in (gemm_layout(g, n, False, opts=opts), gemm_layout(g, n, True, opts=opts))
                       if lay is not None]) for n in g.nodes]
    lays: dict[str, GemmLayout] = {}
    plan = base
    limit = base.arena_bytes * (1 + opts.arena_growth_fraction) + opts.arena_growth
    if speed:
        limit = max(limit, base.arena_bytes * (1 + opts.speed_growth_fraction) + opts.speed_growth)

    dw_apart: set[str] = set()  # depthwise layers kept off their input (_dw_apart)

    def trial(name: str, lay: GemmLayout) -> MemoryPlan:  # the plan with ``name`` taking ``lay``
        return plan_with_layouts(g, {**lays, name: lay}, fused, dw_apart, opts)
    for name, options in sorted(cands, key=lambda c: -macs[c[0]]):  # the biggest layers first
        for lay in options[:1] + [o for o in options[1:] if o.nb > 1]:
            t = trial(name, lay)
            if t.arena_bytes <= limit:
                lays[name], plan = lay, t
                break
    # then every output channel in one pass where the accumulators still fit (fewer calls)
    nodes = {n.name: n for n in g.nodes}
    for name in sorted(lays, key=lambda n: -macs[n]):
        whole = gemm_layout(g, nodes[name], False, whole=True, opts=opts)
        if lays[name].nb > 1 or whole == lays[name]:
            continue
        t = trial(name, whole)
        if t.arena_bytes <= (max(plan.arena_bytes, limit) if speed else plan.arena_bytes):
            lays[name], plan = whole, t
    # a fused residual add on the one-multiply path takes its two rescale tables (2 KB) where
    # they fit in the same allowance
    for name in sorted(lays, key=lambda n: -macs[n]):
        node, lay = nodes[name], lays[name]
        res = node.attrs.get("residual")
        if not res or not gemm_fast_requant(node.attrs["q"], res.get("q"), g.tensors[node.outputs[0]].shape[3]) \
                or not gemm_acc_ok(g, node):
            continue
        tab = dataclasses.replace(lay, tables=True, work_bytes=lay.work_bytes + GEMM_ADD_TABLE_BYTES)
        t = trial(name, tab)
        if t.arena_bytes <= max(plan.arena_bytes, limit):
            lays[name], plan = tab, t
    if opts.dw_apart:
        # (--optimize speed: within its allowance, which the strips' workspaces share)
        plan = _dw_apart(g, plan, dw_apart, lambda apart: plan_with_layouts(g, lays, fused, apart, opts),
                         limit if speed else None)
    if speed:  # the weights widened in flash: no buffer in the arena, the plan stays
        for name, lay in lays.items():
            if lay.nb == 1:
                pairs = (g.tensors[nodes[name].outputs[0]].shape[3] + 1) // 2
                lays[name] = dataclasses.replace(lay, wtile=pairs, wflash=True)
    else:
        plan = _widen_weights(g, nodes, lays, plan, fused, macs, trial, opts)
    # a fused pair runs both layers through the matrix product, its output over the skip tensor
    # (A's input) or apart from it
    nodes_i = {n.name: i for i, n in enumerate(g.nodes)}
    for a in fused:
        b = g.nodes[nodes_i[a] + 1]
        x, z = g.nodes[nodes_i[a]].inputs[0], b.outputs[0]
        ox, oz, n = plan.offsets[x], plan.offsets[z], plan.sizes[x]
        helium = bool(g.nodes[nodes_i[a]].attrs.get("mve") and b.attrs.get("mve"))
        if (not helium and (a not in lays or b.name not in lays or lays[a].nb > 1 or lays[b.name].nb > 1)) \
                or not (oz == ox or oz + plan.sizes[z] <= ox or ox + n <= oz) or b.name in plan.scratch:
            return plan_with_gemm(g, opts, fusions=False)
    if fused:  # fused only where it saves memory (tiny layers: the two live workspaces cost more)
        plain = plan_with_gemm(g, opts, fusions=False)
        if plain[0].arena_bytes <= plan.arena_bytes:
            return plain
    return plan, lays, fused, dw_apart


def mark_mve(g: ir.Graph, opts: CodegenOptions) -> set[str]:
    """With ``opts.mve`` (a core with Helium): ``node.attrs["mve"] = True`` on every layer a Helium
    kernel runs (``predicates.mve_ok``); those layers take no matrix-product layout, keep the
    reference kernels' in-place rules (the Helium kernels' row contract is theirs) and get their
    workspace from :func:`kernel_workspaces`.  The others keep the DSP / reference kernels."""
    marked = set()
    for n in g.nodes:
        n.attrs.pop("mve", None)
        if opts.mve and mve_ok(g, n):
            n.attrs["mve"] = True
            marked.add(n.name)
    return marked


def plan_kernels(g: ir.Graph, opts: CodegenOptions) -> ir.Graph:
    """The kernel planning pass: ``node.attrs["mve"]`` on every layer a Helium kernel runs
    (:func:`mark_mve`), ``node.attrs["gemm"]`` (a :class:`GemmLayout`) on every layer that
    runs as a matrix product, ``graph.meta["row_fusions"]`` ({first layer: buffer bytes}) and
    ``graph.meta["dw_apart"]`` (depthwise layers planned apart from their input)."""
    mark_mve(g, opts)
    _plan, lays, fused, apart = plan_with_gemm(g, opts)
    for n in g.nodes:
        n.attrs.pop("gemm", None)
        if n.name in lays:
            n.attrs["gemm"] = lays[n.name]
    g.meta["row_fusions"] = dict(fused)
    g.meta["dw_apart"] = sorted(apart)
    return g


def layouts(g: ir.Graph) -> dict[str, GemmLayout]:
    """The matrix-product layouts :func:`plan_kernels` chose, by node name."""
    return {n.name: n.attrs["gemm"] for n in g.nodes if n.attrs.get("gemm") is not None}


def plan_memory_pass(g: ir.Graph, opts: CodegenOptions) -> ir.Graph:
    """The memory planning pass: the arena for the chosen kernels, in ``graph.meta["memory_plan"]``."""
    g.meta["memory_plan"] = plan_with_layouts(g, layouts(g), g.meta.get("row_fusions", {}),
                                              set(g.meta.get("dw_apart", ())), opts)
    return g
