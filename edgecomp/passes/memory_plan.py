"""Memory planner: offsets of every activation in one static arena.

Tensors get offsets from their lifetimes (op indices from producer to last
reader; graph inputs live from the start, graph outputs to the end), placed
greedily like TFLite Micro's greedy planner: one tensor after another, each at
the lowest candidate offset that overlaps no tensor alive at the same time.
Several placement orders are tried and the smallest arena is kept.

Beyond plain lifetimes three in-place rules let an op's output share bytes
with an input that dies at that op, by the op's ``layout`` (``edgecomp.ir.OPS``):

* "alias" ops (``reshape``): the output *is* the input (same offset).
* "rows" and "matrix_rows" ops (conv2d, depthwise_conv2d, pools, fully_connected) compute each
  output row into a small row scratch buffer and then copy it to the output,
  so the output may start at ``offset(in) + d`` for any ``d <= d*`` where
  ``d* = min over output rows yo in [0, Ho-2] of first_in_row(yo+1) * in_row_bytes
  - (yo+1) * out_row_bytes`` and ``first_in_row(y) = max(0, y*stride - pad_top)``:
  when row ``yo`` is copied out, the input rows still needed are intact.  The
  scratch is a planned tensor alive only during its op; it is dropped (and the
  kernel writes directly) when the output does not overlap the input.
* "elementwise" ops (add, softmax, requantize, clamp, quantize, lut, mul, ...) and a residual add
  fused into a conv (output over the skip tensor) allow ``d <= 0`` for an input of the output's
  size; when another operand is broadcast (squeeze-excite's per-channel scale) only ``d = 0``, and
  the broadcast operand itself is never overwritten; a softmax along a strided axis only ``d = 0``
  (:func:`strided_rows`).

A node may also ask for a workspace (``workspace={node name: bytes}``, e.g. the
matrix-product convolution's kernel windows and accumulators): a buffer alive only
during that node, placed like the tensors.

:func:`plan_memory` returns a :class:`MemoryPlan`; ``tests/test_memory_plan.py``
checks plans with an independent byte-level simulation of the kernels' accesses.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from .. import ir

INF = math.inf
SHUFFLES = tuple(f"shuffle{i}" for i in range(32))  # extra greedy orders tried after the fixed ones


def reads(node: ir.Node) -> list[str]:
    """Every activation or constant a node reads, including a fused residual's skip tensor."""
    res = node.attrs.get("residual")
    return list(node.inputs) + ([res["tensor"]] if res else [])


@dataclass
class MemoryPlan:
    arena_bytes: int
    offsets: dict[str, int]  # tensor name -> byte offset in the arena (aliases share one)
    sizes: dict[str, int]  # tensor name -> bytes
    scratch: dict[str, tuple[int, int]] = field(default_factory=dict)  # node name -> (offset, bytes)
    workspace: dict[str, tuple[int, int]] = field(default_factory=dict)  # node name -> (offset, bytes)
    lifetimes: dict[str, tuple[int, int]] = field(default_factory=dict)  # tensor -> (first, last) op index
    inplace: dict[str, float] = field(default_factory=dict)  # node name -> d* allowed for its main input
    order: str = ""  # the placement order that won
    lower_bound: int = 0  # the largest live set (lower_bound()): no plan of the graph is smaller

    def end(self) -> int:
        ends = [self.offsets[t] + self.sizes[t] for t in self.offsets]
        ends += [o + n for o, n in self.scratch.values()]
        ends += [o + n for o, n in self.workspace.values()]
        return max(ends, default=0)


def _align(x: int, a: int) -> int:
    return -(-x // a) * a


def _align_down(x: float, a: int) -> int:
    return int(math.floor(x / a)) * a


def row_geometry(graph: ir.Graph, node: ir.Node) -> tuple[int, int, int, int, int] | None:
    """(rows, in_row_bytes, out_row_bytes, stride, pad_top) of a row op, or None."""
    x = graph.tensors[node.inputs[0]]
    y = graph.tensors[node.outputs[0]]
    eb_in, eb_out = ir.dtype_bytes(x.dtype), ir.dtype_bytes(y.dtype)
    layout = ir.OPS[node.op].layout
    if layout == "matrix_rows":
        w = graph.tensors[node.inputs[1]]
        features = w.shape[1]
        rows = x.size // features
        return rows, features * eb_in, w.shape[0] * eb_out, 1, 0
    if layout == "rows":
        if len(x.shape) != 4 or x.shape[0] != 1:
            return None
        stride = int(node.attrs.get("stride", (1, 1))[0])
        pad_top = int(node.attrs.get("pad", (0, 0, 0, 0))[0])
        return y.shape[1], x.shape[2] * x.shape[3] * eb_in, y.shape[2] * y.shape[3] * eb_out, stride, pad_top
    return None


def row_shift_limit(rows: int, in_row: int, out_row: int, stride: int, pad_top: int) -> float:
    """d*: the largest shift offset(out) - offset(in) a row-by-row op tolerates (inf: any)."""
    d = INF
    for yo in range(rows - 1):
        first = max(0, (yo + 1) * stride - pad_top)
        d = min(d, first * in_row - (yo + 1) * out_row)
    return d


def strided_rows(graph: ir.Graph, node: ir.Node) -> bool:
    """A softmax along an axis that is not the innermost: each row is read and written across the
    tensor, so its output may coincide with its input but not overlap it partly."""
    if node.op != "softmax" or "axis" not in node.attrs:
        return False
    x = graph.tensors[node.inputs[0]]
    return int(node.attrs["axis"]) % len(x.shape) != len(x.shape) - 1 and \
        math.prod(x.shape[int(node.attrs["axis"]) % len(x.shape) + 1:]) > 1


def _scratch_bytes(graph: ir.Graph, node: ir.Node) -> int:
    geo = row_geometry(graph, node)
    return geo[2] if geo else 0


def _lifetimes(graph: ir.Graph):
    """Alias groups (reshape) and their lifetimes."""
    n = len(graph.nodes)
    group: dict[str, str] = {}

    def root(t: str) -> str:
        while group.get(t, t) != t:
            t = group[t]
        return t

    for node in graph.nodes:
        if ir.OPS[node.op].layout == "alias":
            group[node.outputs[0]] = root(node.inputs[0])
    acts = [t.name for t in graph.activations()]
    for node in graph.nodes:  # fused residual tensors are read but not in node.inputs
        res = node.attrs.get("residual")
        if res and res["tensor"] not in acts:
            acts.append(res["tensor"])
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    for name in acts:
        r = root(name)
        first.setdefault(r, INF)
        last.setdefault(r, -INF)
    for name in graph.inputs:
        first[root(name)] = -1
    for i, node in enumerate(graph.nodes):
        for t in node.outputs:
            r = root(t)
            first[r] = min(first[r], i)
            last[r] = max(last[r], i)
        for t in reads(node):
            if t in group or not graph.tensors[t].is_const:
                r = root(t)
                last[r] = max(last[r], i)
                first[r] = min(first[r], i)
    for name in graph.outputs:
        last[root(name)] = n
    return acts, root, first, last


@dataclass
class _Problem:
    """What a plan must respect: buffer groups (reshape aliases share one), their sizes and
    lifetimes, and the in-place pairs the kernels allow."""
    acts: list[str]
    root: object  # tensor name -> its alias group
    first: dict[str, float]
    last: dict[str, float]
    size: dict[str, int]  # group -> bytes
    ring: dict[str, int]  # fused producer outputs -> their row-buffer bytes
    consumers: set[str]  # nodes running a fused producer row by row
    pairs: dict[tuple[str, str], float]  # (input group, output group) -> d*
    exact: set[tuple[str, str]]  # pairs that may only coincide (d = 0) or stay apart
    row_ops: dict[str, tuple[str, str]]  # node -> (in group, out group) of a row op that may run in place


def _problem(graph: ir.Graph, inplace: bool, fused: dict[str, int], apart) -> _Problem:
    acts, root, first, last = _lifetimes(graph)
    index = {node.name: i for i, node in enumerate(graph.nodes)}
    ring = {graph.nodes[index[n]].outputs[0]: b for n, b in fused.items()}
    consumers = {graph.nodes[index[n] + 1].name for n in fused}
    size: dict[str, int] = {}
    for name in acts:
        r = root(name)
        size[r] = max(size.get(r, 0), ring.get(name, graph.tensors[name].nbytes))

    # In-place candidates: (in_group, out_group) -> d*, per op where the input dies.
    pairs: dict[tuple[str, str], float] = {}
    exact: set[tuple[str, str]] = set()
    row_ops: dict[str, tuple[str, str]] = {}
    for i, node in enumerate(graph.nodes):
        if not inplace or ir.OPS[node.op].layout == "alias":
            continue
        out = root(node.outputs[0])
        if first[out] != i:
            continue

        def allow(t: str, d: float) -> bool:
            if t in graph.tensors and graph.tensors[t].is_const:
                return False
            r = root(t)
            if r == out or last[r] != i:
                return False
            pairs[(r, out)] = min(pairs.get((r, out), INF), d)
            return True

        x = graph.tensors[node.inputs[0]]
        y = graph.tensors[node.outputs[0]]
        geo = row_geometry(graph, node) if node.name not in consumers and node.name not in apart else None
        if geo is not None:
            allow(node.inputs[0], row_shift_limit(*geo))
            if (root(node.inputs[0]), out) in pairs:
                row_ops[node.name] = (root(node.inputs[0]), out)
        elif ir.OPS[node.op].layout == "elementwise":
            # an input of the output's size and type width may share its bytes; with a broadcast
            # operand (read again and again: never overwritten) only exactly (kernels may then visit
            # the elements in any order, each written where it was read)
            broadcast = any(graph.tensors[t].size != y.size for t in node.inputs)
            for t in node.inputs:
                u = graph.tensors[t]
                if u.size == y.size and ir.dtype_bytes(y.dtype) <= ir.dtype_bytes(u.dtype) and allow(t, 0) \
                        and broadcast:
                    exact.add((root(t), out))
            if strided_rows(graph, node):
                exact.add((root(node.inputs[0]), out))
        res = node.attrs.get("residual")
        if res:
            allow(res["tensor"], 0)
            if node.name in consumers:  # a row-fused pair writes its output rows exactly over the skip
                exact.add((root(res["tensor"]), out))
    return _Problem(acts, root, first, last, size, ring, consumers, pairs, exact, row_ops)


def _work_life(graph: ir.Graph, workspace: dict[str, int], fused: dict[str, int], consumers: set[str]) \
        -> dict[str, tuple[int, int]]:
    index = {node.name: i for i, node in enumerate(graph.nodes)}
    return {n: (index[n], index[n] + 1) if n in fused else (index[n] - 1, index[n]) if n in consumers
            else (index[n], index[n]) for n in workspace}


def lower_bound(graph: ir.Graph, *, align: int = 4, inplace: bool = True, workspace: dict[str, int] | None = None,
                fused: dict[str, int] | None = None, apart: frozenset[str] | set[str] = frozenset()) -> int:
    """The largest live set: no plan of ``graph`` (same arguments as :func:`plan_memory`) can use
    fewer arena bytes.  At each op: the bytes of every buffer alive there (tensors, the op's
    workspace, a fused producer's row buffer), less what in place can save -- an input that dies
    at the op and the output it may share bytes with count as their smallest union (for a row op
    with shift limit d* < 0: the input plus -d* bytes, plus the row scratch it then needs; at most
    the output's bytes saved per output)."""
    workspace = {n: b for n, b in (workspace or {}).items() if b > 0}
    fused = dict(fused or {})
    pb = _problem(graph, inplace, fused, apart)
    wlife = _work_life(graph, workspace, fused, pb.consumers)
    scratch_of = {pair: _scratch_bytes(graph, next(n for n in graph.nodes if n.name == name))
                  for name, pair in pb.row_ops.items()}
    best = 0
    for i in range(-1, len(graph.nodes) + 1):
        live = [r for r in pb.size if pb.first[r] <= i <= pb.last[r]]
        total = sum(pb.size[r] for r in live) + sum(b for n, b in workspace.items() if wlife[n][0] <= i <= wlife[n][1])
        saved: dict[str, int] = {}
        for (a, b), d in pb.pairs.items():
            if pb.last[a] != i or pb.first[b] != i:
                continue
            ia, ob = pb.size[a], pb.size[b]
            if (a, b) in pb.exact:
                union = max(ia, ob)
            else:
                union = max(ia + max(0, math.ceil(-d) if d != INF else 0), ob) if d != INF else max(ia, ob)
            union += scratch_of.get((a, b), 0)
            saved[b] = saved.get(b, 0) + max(0, ia + ob - union)
        total -= sum(min(v, pb.size[b]) for b, v in saved.items())
        best = max(best, total)
    return _align(best, align)


def plan_memory(graph: ir.Graph, *, align: int = 4, inplace: bool = True,
                workspace: dict[str, int] | None = None, fused: dict[str, int] | None = None,
                apart: frozenset[str] | set[str] = frozenset()) -> MemoryPlan:
    """Plan the arena of ``graph`` (see the module docstring).

    ``fused``: {node name: bytes} of producers run row by row inside their only consumer, the next
    node (the C backend's row fusion, backends/c/kernel_plan.py): the output gets only that many bytes (a few rows), the
    consumer's output is not placed over it (and writes its rows exactly over its residual skip
    tensor, or apart from it), and both nodes' workspaces live through both nodes.
    ``apart``: row ops whose output must not overlap their input (the C backend's tiled layers read
    the whole input once per tile of output channels)."""
    workspace = {n: b for n, b in (workspace or {}).items() if b > 0}
    fused = dict(fused or {})
    pb = _problem(graph, inplace, fused, apart)
    acts, root, first, last, size, ring = pb.acts, pb.root, pb.first, pb.last, pb.size, pb.ring
    pairs, exact, row_ops = pb.pairs, pb.exact, pb.row_ops
    wlife = _work_life(graph, workspace, fused, pb.consumers)

    best: MemoryPlan | None = None
    if row_ops:  # the plain lifetime plan competes too: a row scratch is not always worth it
        best = plan_memory(graph, align=align, inplace=False, workspace=workspace, fused=fused)
    active = dict(row_ops)
    for _ in range(len(row_ops) + 1):
        use_pairs = {k: v for k, v in pairs.items()
                     if not any(k == io for io in row_ops.values()) or k in active.values()}
        bufs = dict(size)
        life = {r: (first[r], last[r]) for r in size}
        scratch_of: dict[str, str] = {}
        for i, node in enumerate(graph.nodes):
            if node.name in active:
                key = f"\0scratch:{node.name}"
                bufs[key] = _scratch_bytes(graph, node)
                life[key] = (i, i)
                scratch_of[node.name] = key
            if node.name in workspace:
                bufs[f"\0work:{node.name}"] = workspace[node.name]
                life[f"\0work:{node.name}"] = wlife[node.name]
        plan = None
        for order in ("size", "size_late_first", "chrono", "reverse_chrono") + SHUFFLES:
            offs = _greedy(bufs, life, use_pairs, align, order, exact)
            end = max((offs[b] + bufs[b] for b in bufs), default=0)
            if plan is None or end < plan[0]:
                plan = (end, offs, order)
        end, offs, order = plan
        result = MemoryPlan(
            arena_bytes=_align(max(end, 1), align),
            offsets={name: offs[root(name)] for name in acts},
            sizes={name: ring.get(name, graph.tensors[name].nbytes) for name in acts},
            scratch={n: (offs[k], bufs[k]) for n, k in scratch_of.items()},
            workspace={n: (offs[f"\0work:{n}"], b) for n, b in workspace.items()},
            lifetimes={name: (first[root(name)], last[root(name)]) for name in acts},
            inplace={n: use_pairs[active[n]] for n in active},
            order=order,
        )
        if best is None or result.arena_bytes < best.arena_bytes:
            best = result
        # Row ops whose output ended up apart from their input need no scratch: drop them and re-plan.
        unused = [n for n, (a, b) in active.items()
                  if offs[a] + bufs[a] <= offs[b] or offs[b] + bufs[b] <= offs[a]]
        if not unused:
            break
        for n in unused:
            del active[n]
    # Keep only the scratch rows that are needed in the winning plan.
    best = _drop_unneeded_scratch(best, graph, row_ops, root)
    best.lower_bound = lower_bound(graph, align=align, inplace=inplace, workspace=workspace, fused=fused,
                                   apart=apart)
    return best


def _drop_unneeded_scratch(plan: MemoryPlan, graph: ir.Graph, row_ops, root) -> MemoryPlan:
    by_group: dict[str, int] = {}
    for name, off in plan.offsets.items():
        by_group[root(name)] = off
    gsize = {}
    for name, n in plan.sizes.items():
        gsize[root(name)] = max(gsize.get(root(name), 0), n)
    for n in list(plan.scratch):
        a, b = row_ops[n]
        if by_group[a] + gsize[a] <= by_group[b] or by_group[b] + gsize[b] <= by_group[a]:
            del plan.scratch[n]
            plan.inplace.pop(n, None)
    return plan


def _overlap_ok(a: str, oa: int, b: str, ob: int, bufs, pairs, exact=frozenset()) -> bool:
    if oa + bufs[a] <= ob or ob + bufs[b] <= oa:
        return True
    if (a, b) in exact or (b, a) in exact:
        return oa == ob
    d = pairs.get((a, b))
    if d is not None and ob - oa <= d:
        return True
    d = pairs.get((b, a))
    if d is not None and oa - ob <= d:
        return True
    return False


def _greedy(bufs: dict[str, int], life: dict[str, tuple], pairs: dict, align: int, order: str,
            exact=frozenset()) -> dict[str, int]:
    names = list(bufs)
    if order.startswith("shuffle"):
        # a seeded random order: the fixed orders above miss some tight packings (a workspace
        # squeezed next to an in-place pair); deterministic for a given graph
        names.sort()
        random.Random(int(order[7:])).shuffle(names)
    elif order == "size":
        names.sort(key=lambda b: (-bufs[b], life[b][0], b))
    elif order == "size_late_first":
        names.sort(key=lambda b: (-bufs[b], -life[b][0], b))
    elif order == "chrono":
        names.sort(key=lambda b: (life[b][0], -bufs[b], b))
    else:
        names.sort(key=lambda b: (-life[b][0], -bufs[b], b))
    placed: dict[str, int] = {}
    for b in names:
        fb, lb = life[b]
        live = [p for p in placed if life[p][0] <= lb and fb <= life[p][1]]
        cands = {0}
        for p in live:
            cands.add(_align(placed[p] + bufs[p], align))
            d = pairs.get((p, b))
            if d is not None and d != INF:
                cands.add(_align_down(placed[p] + d, align))
            elif d == INF:
                cands.add(placed[p])
            d = pairs.get((b, p))
            if d is not None and d != INF:
                cands.add(_align(placed[p] - d, align))
            elif d == INF:
                cands.add(placed[p])
        for c in sorted(x for x in cands if x >= 0):
            if all(_overlap_ok(p, placed[p], b, c, bufs, pairs, exact) for p in live):
                placed[b] = c
                break
    return placed
