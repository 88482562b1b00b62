"""The generator's Python copies of C predicates, constants and layouts, against the C itself.

The C side is the kernel files as a bundle has them, built with the host's gcc into a shared library
together with tests/kernel_mirrors_shim.c (which includes them to reach their static functions), and
called through ctypes; both sides see the same few hundred random shapes and parameters.
"""
from __future__ import annotations

import ctypes
import importlib
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from edgecomp import ir
from edgecomp.backends.c.kernels.catalogue import KERNEL_GROUPS, bundle_names, write_kernel_files

pytestmark = [pytest.mark.toolchain,
              pytest.mark.skipif(shutil.which("gcc") is None, reason="host gcc not installed")]

# The Python mirrors, imported once here: where each lives (repoint a line when one moves).
_PRED, _PACK, _PLAN = ("edgecomp.backends.c.kernels.predicates", "edgecomp.backends.c.kernels.packing",
                       "edgecomp.backends.c.kernel_plan")
_WHERE = {
    "DW_TILE": _PRED,                 # EC_DW_TILE
    "DW_SCRATCH_BYTES": _PRED,        # 4 * EC_DWS_SCRATCH
    "GEMM_ADD_TABLE_BYTES": _PRED,    # EC_GEMM_ADD_TABLE_BYTES
    "kernel_row_bytes": _PRED,        # kernel_row_bytes
    "gemm_work_bytes": _PRED,         # EC_GEMM_WORK_BYTES
    "dw_fast_ok": _PRED,              # dw_fast_ok
    "dw_requant_ok": _PRED,           # dw_requant_ok
    "dw_s2_ok": _PRED,                # dw_s2_ok
    "residual_run_ok": _PRED,         # residual_run_ok, for every call of a layer
    "gemm_acc_ok": _PRED,             # the one-multiply stores are exact where both hold
    "gemm_fast_requant": _PRED,
    "store_constants": _PACK,         # the table ec_gemm_store2k reads
    "pack_gemm_weights": _PACK,
    "widen_gemm_weights": _PACK,      # widen()
    "quad_gemm_weights": _PACK,       # the layout ec_gemm16_2x4 reads
    "GemmLayout": _PLAN,
    "gemm_layout": _PLAN,             # kbp (kernel_row_bytes), work_bytes (EC_GEMM_WORK_BYTES)
    "plan_with_gemm": _PLAN,          # wbuf_bytes (EC_GEMM_WBUF_BYTES)
    "mve_conv_work_bytes": _PRED,     # EC_MVE_CONV_WORK_BYTES
    "mve_depthwise_work_bytes": _PRED,  # EC_MVE_DW_WORK_BYTES
    "mve_dw3x3_work_bytes": _PRED,    # EC_MVE_DW3X3_WORK_BYTES
    "MVE_CONV_GROUP": _PRED, "MVE_FC_GROUP": _PRED, "MVE_DW_GROUP": _PRED, "MVE_DW_MAX_TAPS": _PRED,
    "pack_conv_mve": _PACK,           # EC_MVE_CONV_GROUP_BYTES a group
    "pack_fc_mve": _PACK,             # EC_MVE_FC_GROUP_BYTES
    "pack_depthwise_mve": _PACK,      # EC_MVE_DW_GROUP_BYTES
    "CodegenOptions": "edgecomp.options",
    "MemoryPlan": "edgecomp.passes.memory_plan",
    "saturating_rounding_doubling_high_mul": "edgecomp.numerics",  # ec_srdhm (ec_requant.h)
    "rounding_divide_by_pot": "edgecomp.numerics",                 # ec_rdbpot
    "multiply_by_quantized_multiplier": "edgecomp.numerics",       # ec_mbqm
}
PY = SimpleNamespace(**{name: getattr(importlib.import_module(mod), name) for name, mod in _WHERE.items()})

N = 300  # random cases per mirror
I32P, I8P = ctypes.POINTER(ctypes.c_int32), ctypes.POINTER(ctypes.c_int8)


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    d = tmp_path_factory.mktemp("mirrors")
    write_kernel_files(d, bundle_names(*KERNEL_GROUPS))  # as a bundle has them
    shutil.copyfile(Path(__file__).parent / "kernel_mirrors_shim.c", d / "shim.c")
    r = subprocess.run(["gcc", "-std=c99", "-O1", "-DEC_DEBUG", "-Wall", "-Wextra", "-Werror", "-fPIC", "-shared",
                        "-o", "libmirrors.so", "shim.c", "ec_kernels.c", "-lm"], cwd=d, capture_output=True, text=True,
                       check=False)
    assert r.returncode == 0, r.stderr
    return ctypes.CDLL(str(d / "libmirrors.so"))


def arr(a, ctype):
    a = np.ascontiguousarray(a, dtype={ctypes.c_int32: np.int32, ctypes.c_int8: np.int8}[ctype])
    return a, a.ctypes.data_as(ctypes.POINTER(ctype))


# --------------------------------------------------------------------------- layers both sides see
def requant_params(rng, n):
    """Per-channel multipliers and shifts: most layers within the fast paths' limits, the others around them."""
    if rng.random() < 0.5:
        return (rng.integers((1 << 30) + 1, 1 << 31, size=n).astype(np.int64),
                rng.integers(-21, 0, size=n).astype(np.int64))
    m = rng.choice([1 << 30, (1 << 30) + 1, (1 << 31) - 1, 0], size=n, p=[0.05, 0.05, 0.05, 0.85])
    m = np.where(m == 0, rng.integers((1 << 30) + 1, 1 << 31, size=n), m).astype(np.int64)
    sh = rng.choice([0, 1, -1, -21, -22, -24, -25, -31], size=n)
    sh = np.where(rng.random(n) < 0.6, rng.integers(-21, 0, size=n), sh).astype(np.int64)
    return m, sh


def layer(rng, op, *, k=None, stride=None, dil=None, batches=None, mult=None):
    """A random int8 conv2d or depthwise_conv2d node and its graph; `q` drawn directly, in the form
    passes/requantize writes it."""
    k = k if k is not None else int(rng.choice([1, 2, 3, 3, 3, 5]))
    stride = stride if stride is not None else int(rng.choice([1, 1, 2]))
    dil = dil if dil is not None else int(rng.choice([1, 1, 1, 2]))
    n = batches if batches is not None else int(rng.choice([1, 1, 2]))
    h, w = (int(v) for v in rng.integers(1, 13, size=2))
    c = int(rng.integers(1, 10))
    pad = tuple(int(v) for v in rng.integers(0, 2 if rng.random() < 0.7 else 3, size=4))
    oh = ir.conv_output_size(h, k, stride, dil, pad[0], pad[2])
    ow = ir.conv_output_size(w, k, stride, dil, pad[1], pad[3])
    if oh < 1 or ow < 1:
        return None
    if op == "depthwise_conv2d":
        mult = mult if mult is not None else int(rng.choice([1, 1, 1, 2]))
        oc, wshape, attrs = c * mult, (1, k, k, c * mult), {"depth_multiplier": mult}
    else:
        oc, attrs = int(rng.integers(1, 12)), {}
        wshape = (oc, k, k, c)
    wdata = rng.integers(-127, 128, size=wshape, dtype=np.int8)
    if op == "conv2d" and oc > 2 and rng.random() < 0.3:  # channels with zero weights (gemm_live)
        wdata[rng.random(oc) < 0.4] = 0
    b = rng.integers(-2000, 2000, size=oc).astype(np.int32)
    edge = rng.random(oc) < (0.2 if rng.random() < 0.3 else 0)
    b[edge] = rng.choice([(1 << 29), (1 << 29) + 1, -(1 << 29), -(1 << 29) - 1], size=int(edge.sum()))
    m, sh = requant_params(rng, oc)
    q = {"input_offset": int(rng.integers(-127, 129)), "filter_offset": 0,
         "output_offset": int(rng.integers(-128, 128)), "multiplier": m, "shift": sh}
    attrs.update(stride=(stride, stride), dilation=(dil, dil), pad=pad, act=(-128, 127), q=q)
    qx = ir.QuantParams([0.05], [-q["input_offset"]])
    ts = [ir.Tensor("x", (n, h, w, c), "int8", qx),
          ir.Tensor("w", wshape, "int8", ir.QuantParams(np.full(oc, 0.01, np.float32), np.zeros(oc, np.int32),
                                                        axis=3 if op != "conv2d" else 0), data=wdata),
          ir.Tensor("b", (oc,), "int32", data=b),
          ir.Tensor("y", (n, oh, ow, oc), "int8", ir.QuantParams([0.1], [q["output_offset"]]))]
    node = ir.Node("layer", op, ["x", "w", "b"], ["y"], attrs)
    g = ir.Graph("g", {t.name: t for t in ts}, [node], ["x"], ["y"], {"source": "test"})
    return g, node


def c_side(g, node):
    """The layer's ec_conv_params_t geometry (as the generator writes it) and requantization arrays."""
    x, w, y = (g.tensors[node.inputs[0]], g.tensors[node.inputs[1]], g.tensors[node.outputs[0]])
    a, q = node.attrs, node.attrs["q"]
    oc = y.shape[3]
    geom = [x.shape[0], x.shape[1], x.shape[2], x.shape[3], y.shape[1], y.shape[2], oc, w.shape[1], w.shape[2],
            a["stride"][0], a["stride"][1], a["dilation"][0], a["dilation"][1], a["pad"][0], a["pad"][1],
            a.get("depth_multiplier", 1)]
    return (arr(geom, ctypes.c_int32), arr(np.broadcast_to(q["multiplier"], (oc,)), ctypes.c_int32),
            arr(np.broadcast_to(q["shift"], (oc,)), ctypes.c_int8), arr(g.tensors[node.inputs[2]].data, ctypes.c_int32))


# --------------------------------------------------------------------------- constants
def test_constants(lib):
    assert PY.DW_TILE == lib.mirror_dw_tile()
    assert PY.DW_SCRATCH_BYTES == lib.mirror_dw_scratch_bytes()
    assert PY.GEMM_ADD_TABLE_BYTES == lib.mirror_gemm_add_table_bytes()


def test_requant_primitives_are_tflite_arithmetic(lib):
    """ec_requant.h's inline forms (the optimized kernels) against edgecomp.numerics (TFLite)."""
    rng = np.random.default_rng(0)
    edge = [-(1 << 31), (1 << 31) - 1, 0, 1, -1, 3, -3, 1 << 30, -(1 << 30), 12345, -12345]
    a = np.concatenate([np.repeat(edge, len(edge)), rng.integers(-(1 << 31), 1 << 31, 3 * N)])
    b = np.concatenate([np.tile(edge, len(edge)), rng.integers(-(1 << 31) + 1, 1 << 31, 3 * N)])
    b = np.where(b == -(1 << 31), 1, b)  # ec_srdhm: b is never INT32_MIN (a multiplier or a constant)
    e = rng.integers(0, 32, len(a))
    m = rng.integers(1 << 30, 1 << 31, len(a))
    s = rng.integers(-31, 31, len(a))
    x = np.where((s > 0) & (np.arange(len(a)) % 2 == 0), a >> (31 - np.maximum(s, 0)), a)  # (no overflow on <<)
    for i in range(len(a)):
        assert lib.mirror_srdhm(int(a[i]), int(b[i])) == int(PY.saturating_rounding_doubling_high_mul(a[i], b[i]))
        assert lib.mirror_rdbpot(int(a[i]), int(e[i])) == int(PY.rounding_divide_by_pot(a[i], e[i]))
        assert lib.mirror_mbqm(int(x[i]), int(m[i]), int(s[i])) == \
            int(PY.multiply_by_quantized_multiplier(x[i], m[i], s[i])), (x[i], m[i], s[i])


# --------------------------------------------------------------------------- depthwise
def test_depthwise_predicates(lib):
    """dw_fast_ok (shape, requantization, in place), _dw_requant_ok and dw_s2_ok decide as the C does."""
    rng = np.random.default_rng(1)
    seen = {"fast": 0, "s2": 0, "requant": 0}
    done = 0
    while done < 2 * N:
        made = layer(rng, "depthwise_conv2d", k=int(rng.choice([3, 3, 3, 2, 5])), dil=int(rng.choice([1, 1, 1, 2])))
        if made is None:
            continue
        g, node = made
        (geom, gp), (m, mp), (sh, shp), (b, bp) = c_side(g, node)
        x, y = g.tensors["x"], g.tensors["y"]
        # the output apart from the input, or over it (exactly one row of padding behind, or elsewhere)
        in_off = 4096
        out_off = int(rng.choice([0, in_off + x.nbytes + 64, in_off - node.attrs["pad"][0] * x.shape[2] * x.shape[3],
                                  in_off, in_off - int(rng.integers(1, 64))]))
        res = {"tensor": "x"} if rng.random() < 0.1 else None
        plan = PY.MemoryPlan(0, {"x": in_off, "y": out_off}, {"x": x.nbytes, "y": y.nbytes})
        c_fast = lib.mirror_dw_fast_ok(gp, mp, shp, bp, in_off, out_off, int(res is not None))
        c_s2 = lib.mirror_dw_s2_ok(gp, mp, shp, bp, int(res is not None))
        assert bool(c_fast) == PY.dw_fast_ok(g, node, plan, res), (geom, m, sh, b, in_off, out_off, res)
        assert bool(c_s2) == PY.dw_s2_ok(g, node, res), (geom, m, sh, b, res)
        c_rq = 0
        if node.attrs["depth_multiplier"] == 1:  # (the only layers both ask it for)
            c_rq = lib.mirror_dw_requant_ok(gp, mp, shp, bp)
            assert bool(c_rq) == PY.dw_requant_ok(g, node, x.shape[3]), (m, sh, b)
        seen["fast"] += bool(c_fast)
        seen["s2"] += bool(c_s2)
        seen["requant"] += bool(c_rq)
        done += 1
    assert min(seen.values()) >= 10, seen  # both answers were met often


# --------------------------------------------------------------------------- the matrix product
def test_gemm_layout_sizes(lib):
    """gemm_layout's kernel rows (kernel_row_bytes) and workspace (EC_GEMM_WORK_BYTES), every block form."""
    rng = np.random.default_rng(2)
    done = 0
    while done < N:
        made = layer(rng, "conv2d", dil=1)
        if made is None:
            continue
        g, node = made
        (geom, gp), _, _, _ = c_side(g, node)
        ic, kh = geom[3], geom[7]
        for blocked, whole in ((False, False), (True, False), (False, True)):
            lay = PY.gemm_layout(g, node, blocked, whole)
            live = (g.tensors["w"].data.reshape(geom[6], -1) != 0).any(axis=1)
            n_live = int(live.sum()) if 2 <= live.sum() < geom[6] else 0
            assert lay.kbp * lay.nb == kh * lib.mirror_kernel_row_bytes(gp)
            assert lay.work_bytes == lib.mirror_gemm_work_bytes(lay.kbp, int(ic), lay.chunk, n_live), (geom, lay)
        assert PY.kernel_row_bytes(int(geom[8]), int(ic)) == lib.mirror_kernel_row_bytes(gp)
        chunk, kbp = int(rng.integers(1, 9)), int(rng.integers(1, 200))
        n_live = int(rng.integers(2, 20)) if rng.random() < 0.5 else 0
        assert PY.gemm_work_bytes(kbp, int(ic), chunk, n_live or None) == lib.mirror_gemm_work_bytes(kbp, int(ic), chunk,
                                                                                                 n_live)
        done += 1


def test_widened_buffer_size(lib):
    """plan_with_gemm's widened-weights buffers (wbuf_bytes) are EC_GEMM_WBUF_BYTES of their layout."""
    rng = np.random.default_rng(3)
    widened = 0
    for _ in range(60):
        # a big layer then a small one: while the second runs the first's input is dead (room to widen)
        h, c0, c1, c2 = (int(rng.integers(lo, hi)) for lo, hi in ((6, 13), (8, 33), (4, 17), (2, 9)))
        ts = [ir.Tensor("x", (1, h, h, c0), "int8", ir.QuantParams([0.05], [3]))]
        nodes = []
        for i, (ci, co, k) in enumerate(((c0, c1, 3), (c1, c2, int(rng.choice([1, 3]))))):
            w = rng.integers(-127, 128, size=(co, k, k, ci), dtype=np.int8)
            wq = ir.QuantParams(np.full(co, 0.01, np.float32), np.zeros(co, np.int32), axis=0)
            ts += [ir.Tensor(f"w{i}", w.shape, "int8", wq, data=w),
                   ir.Tensor(f"b{i}", (co,), "int32", data=rng.integers(-2000, 2000, size=co).astype(np.int32)),
                   ir.Tensor(f"y{i}", (1, h, h, co), "int8", ir.QuantParams([0.1], [0]))]
            m, sh = np.full(co, (1 << 30) + 12345, np.int64), np.full(co, -8, np.int64)
            q = {"input_offset": -3, "filter_offset": 0, "output_offset": 0, "multiplier": m, "shift": sh}
            nodes.append(ir.Node(f"conv{i}", "conv2d", ["x" if i == 0 else "y0", f"w{i}", f"b{i}"], [f"y{i}"],
                                 {"stride": (1, 1), "dilation": (1, 1), "pad": (k // 2,) * 4, "act": (-128, 127),
                                  "q": q}))
        g = ir.Graph("g", {t.name: t for t in ts}, nodes, ["x"], ["y1"], {"source": "test"})
        _, lays, fused, _ = PY.plan_with_gemm(g, PY.CodegenOptions(kernels="dsp", dsp=True))
        for name, lay in lays.items():
            if lay.wtile and not lay.wflash and not lay.wbuf_in and name not in fused:
                assert lay.wbuf_bytes == lib.mirror_gemm_wbuf_bytes(lay.kbp, lay.wtile), (name, lay)
                widened += 1
    assert widened >= 5


def test_residual_run_ok(lib):
    """residual_run_ok(layout, fast, out_c, out_w) holds exactly when every residual store the C kernel
    makes for the layer takes the run (ec_gemm_store_residual's check), written pixel by pixel and row by
    row (the scratch row, and the row-fused calls)."""
    rng = np.random.default_rng(4)
    seen = [0, 0]
    done = 0
    while done < N:
        made = layer(rng, "conv2d", dil=1, batches=1)
        if made is None:
            continue
        g, node = made
        (geom, gp), _, _, _ = c_side(g, node)
        oc, ow, kh = geom[6], geom[5], geom[7]
        pairs = (oc + 1) // 2
        nb = int(rng.choice([1, kh]))
        kbp = kh * lib.mirror_kernel_row_bytes(gp) // nb
        chunk = pairs if nb > 1 else int(rng.choice([pairs, max(1, pairs - 1), min(pairs, 8)]))
        wtile = 0 if nb > 1 or rng.random() < 0.5 else int(rng.integers(1, pairs + 1))
        fast = int(rng.random() < 0.8)
        lay = PY.GemmLayout(kbp, nb, chunk, 0, wtile=wtile)
        c_all = all(lib.mirror_residual_run(gp, int(kbp), int(nb), int(chunk), fast, int(wtile), rowwise) != 0
                    for rowwise in (0, 1))
        assert PY.residual_run_ok(lay, fast, oc, ow) == c_all, (geom, kbp, nb, chunk, fast, wtile)
        seen[c_all] += 1
        done += 1
    assert min(seen) >= 20, seen


def test_widened_weights_layout(lib):
    """widen_gemm_weights (the weights stored widened in flash) is the C widen() of the packed weights."""
    rng = np.random.default_rng(5)
    for _ in range(100):
        made = layer(rng, "conv2d", dil=1)
        if made is None:
            continue
        g, node = made
        lay = PY.gemm_layout(g, node, bool(rng.random() < 0.5))
        w = g.tensors["w"].data
        packed = PY.pack_gemm_weights(w, lay.nb, lay.kbp)
        pairs = (w.shape[0] + 1) // 2
        assert packed.size == 2 * pairs * lay.nb * lay.kbp
        want = PY.widen_gemm_weights(packed)
        got = np.zeros(want.size // 2, np.uint32)
        _pk, pkp = arr(packed, ctypes.c_int8)  # (the array stays alive while C reads it)
        lib.mirror_widen(pkp, got.ctypes.data_as(ctypes.POINTER(ctypes.c_uint32)), pairs * lay.nb, lay.kbp)
        np.testing.assert_array_equal(got.view(np.int16), want.astype(np.int16))


def test_one_multiply_stores_are_exact_where_the_generator_allows_them(lib):
    """Where gemm_fast_requant and gemm_acc_ok hold (the generator sets `fast`), the one-multiply store
    and the ec_gemm_store2k table store (store_constants) give TFLM's requantization for every
    accumulator within the bound gemm_acc_ok assumes (|bias| + 255 sum|w|), its extremes included."""
    rng = np.random.default_rng(6)
    checked = 0
    for _ in range(N):
        made = layer(rng, "conv2d", dil=1)
        if made is None:
            continue
        g, node = made
        w, q = g.tensors["w"].data, node.attrs["q"]
        if rng.random() < 0.5:  # accumulators up to about the limit gemm_acc_ok sets (2^30), or beyond it
            wsum = 255 * np.abs(w.reshape(w.shape[0], -1).astype(np.int64)).sum(axis=1)
            limit = rng.choice([(1 << 30) - 1, 1 << 30, (1 << 30) + (1 << 20), (1 << 31) - 1], size=w.shape[0])
            big = (np.minimum(limit - wsum, (1 << 31) - 1) * rng.choice([-1, 1], size=w.shape[0])).astype(np.int32)
            g.tensors["b"].data = np.where(rng.random(w.shape[0]) < 0.5, big, g.tensors["b"].data).astype(np.int32)
        oc = w.shape[0] - w.shape[0] % 2
        if oc < 2 or not (PY.gemm_fast_requant(q, None, w.shape[0]) and PY.gemm_acc_ok(g, node)):
            continue
        bound = 255 * np.abs(w.reshape(w.shape[0], -1).astype(np.int64)).sum(axis=1) \
            + np.abs(g.tensors["b"].data.astype(np.int64))
        acc = np.zeros((oc // 2, 4), np.int64)  # per channel pair: (c, c+1) of pixel 0, then of pixel 1
        for c in range(oc):
            picks = [bound[c], -bound[c], bound[c] - 1, -bound[c] + 1, 0, int(rng.integers(-bound[c], bound[c] + 1))]
            acc[c // 2, (c % 2)], acc[c // 2, 2 + (c % 2)] = rng.choice(picks, 2)
        _a, ap = arr(acc.reshape(-1), ctypes.c_int32)  # (the arrays stay alive while C reads them)
        _m, mp = arr(q["multiplier"][:oc], ctypes.c_int32)
        _sh, shp = arr(q["shift"][:oc], ctypes.c_int8)
        _rq, rqp = arr(PY.store_constants(q, w.shape[0])[:3 * oc], ctypes.c_int32)
        outs = [np.zeros(2 * oc, np.int8) for _ in range(3)]
        lib.mirror_stores(ap, oc, mp, shp, int(q["output_offset"]), rqp, *(o.ctypes.data_as(I8P) for o in outs))
        np.testing.assert_array_equal(outs[0], outs[2])
        np.testing.assert_array_equal(outs[1], outs[2])
        checked += 1
    assert checked >= 30


# --------------------------------------------------------------------------- Helium (MVE) sizes
def test_helium_workspaces_and_packed_layouts(lib):
    """The Helium kernels' workspaces (planned in the arena by kernel_plan) and the packers' group sizes
    against the macros beside the kernels in ec_kernels_mve.h."""
    assert [lib.mirror_mve_groups(i) for i in range(4)] == [PY.MVE_CONV_GROUP, PY.MVE_FC_GROUP, PY.MVE_DW_GROUP,
                                                             PY.MVE_DW_MAX_TAPS]
    rng = np.random.default_rng(21)
    for _ in range(N):
        kh, kw, ic, iw = (int(v) for v in rng.integers(1, 6, size=2).tolist() + rng.integers(1, 80, size=2).tolist())
        pad = bool(rng.random() < 0.5)
        assert PY.mve_conv_work_bytes(kh, kw, ic, pad) == lib.mirror_mve_conv_work_bytes(kh, kw, ic, int(pad))
        assert PY.mve_depthwise_work_bytes(ic) == lib.mirror_mve_dw_work_bytes(ic)
        assert PY.mve_dw3x3_work_bytes(iw, ic) == lib.mirror_mve_dw3x3_work_bytes(iw, ic)
        o = int(rng.integers(1, 20))
        w = rng.integers(-127, 128, size=(o, kh, kw, ic)).astype(np.int8)
        k = kh * kw * ic
        assert PY.pack_conv_mve(w, None, 3, 1 << 30, -1).size == -(-o // PY.MVE_CONV_GROUP) * \
            lib.mirror_mve_conv_group_bytes(k)
        assert PY.pack_fc_mve(w.reshape(o, k), None, 3, 1 << 30, -1).size == -(-o // PY.MVE_FC_GROUP) * \
            lib.mirror_mve_fc_group_bytes(k)
        dw = rng.integers(-127, 128, size=(1, kh, kw, ic)).astype(np.int8)
        assert PY.pack_depthwise_mve(dw, None, 0, 1 << 30, -1).size == -(-ic // PY.MVE_DW_GROUP) * \
            lib.mirror_mve_dw_group_bytes(kh * kw)
def test_quad_weights_layout(lib):
    """quad_gemm_weights (--optimize speed's int16 weights in flash) is the layout ec_gemm16_2x4 reads:
    on it, each call of `chunk` pairs gives the accumulators ec_gemm16_2x2 gives on widen()'s layout
    (quads and an odd last pair, one and several passes)."""
    rng = np.random.default_rng(8)
    u32p = ctypes.POINTER(ctypes.c_uint32)
    for _ in range(60):
        pairs, k4 = int(rng.integers(1, 12)), int(rng.integers(1, 40))
        chunk = int(rng.integers(1, pairs + 1))
        kbp = 4 * k4
        packed = rng.integers(-128, 128, size=2 * pairs * kbp).astype(np.int8)
        wide = PY.widen_gemm_weights(packed)
        quad = PY.quad_gemm_weights(wide, kbp, chunk)
        assert quad.size == wide.size
        col = rng.integers(-255, 256, size=2 * kbp).astype(np.int16).view(np.uint32)
        bias = rng.integers(-1 << 20, 1 << 20, size=2 * pairs).astype(np.int32)
        w2 = np.ascontiguousarray(wide.astype(np.int16)).view(np.uint32)
        w4 = np.ascontiguousarray(quad.astype(np.int16)).view(np.uint32)
        for j0 in range(0, pairs, chunk):
            n = min(chunk, pairs - j0)
            got, want = np.zeros(4 * n, np.int32), np.zeros(4 * n, np.int32)
            b = np.ascontiguousarray(bias[2 * j0:])
            for quads, w, out in ((1, w4, got), (0, w2, want)):
                ws = np.ascontiguousarray(w[j0 * kbp:])
                lib.mirror_gemm16(quads, ws.ctypes.data_as(u32p), col.ctypes.data_as(u32p),
                                  out.ctypes.data_as(I32P), n, k4, b.ctypes.data_as(I32P))
            np.testing.assert_array_equal(got, want, err_msg=str((pairs, k4, chunk, j0)))
