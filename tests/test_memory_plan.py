"""Memory planner: plans checked by an independent byte-level simulation of the kernels.

The simulator labels every arena byte with the tensor that last wrote it and
replays each op the way the C kernels access memory (row ops: read the input
rows an output row needs, write the row through the scratch row; elementwise
ops: element by element).  Every read must find its tensor's bytes intact, so
any overlap the planner allows wrongly shows up as a corrupted read.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from edgecomp import ir
from edgecomp.frontends.tflite import load_tflite
from edgecomp.passes.fuse_residual import fuse_residual_adds
from edgecomp.passes.memory_plan import MemoryPlan, lower_bound, plan_memory
from memory_check import Corrupted, simulate

TFLM_ARENA = {"ad01_int8": 3984, "kws_ref_model": 24272, "pretrainedResnet_quant": 55984, "vww_96_int8": 103680}
# Plain lifetime planning (no in-place) of the same graphs: what in-place must beat.
PLAIN = {"ad01_int8": 768, "kws_ref_model": 16000, "pretrainedResnet_quant": 49152, "vww_96_int8": 55296}


# --------------------------------------------------------------------------- graphs


def _t(name, shape, dtype="int8"):
    q = ir.QuantParams([0.05], [0]) if dtype == "int8" else None
    return ir.Tensor(name, shape, dtype, q)


def _w(name, shape):
    return ir.Tensor(name, shape, "int8", ir.QuantParams([0.01], [0]),
                     data=np.ones(shape, np.int8))


def chain(specs, h=8, w=8, c=4):
    """A chain of ops given as (op, kernel, stride, pad, out_channels)."""
    tensors = {"x0": _t("x0", (1, h, w, c))}
    nodes = []
    cur = "x0"
    for i, (op, k, s, pad, oc) in enumerate(specs):
        H, W, C = tensors[cur].shape[1:]
        if op != "conv2d":
            oc = C
        ho = ir.conv_output_size(H, k, s, 1, pad, pad)
        wo = ir.conv_output_size(W, k, s, 1, pad, pad)
        out = f"x{i + 1}"
        tensors[out] = _t(out, (1, ho, wo, oc))
        attrs = {"stride": (s, s), "pad": (pad, pad, pad, pad), "act": (-128, 127)}
        if op in ("max_pool2d", "avg_pool2d"):
            attrs["kernel"] = (k, k)
            nodes.append(ir.Node(f"n{i}", op, [cur], [out], attrs))
        else:
            wname = f"w{i}"
            tensors[wname] = _w(wname, (oc, k, k, C) if op == "conv2d" else (1, k, k, oc))
            attrs["dilation"] = (1, 1)
            if op == "depthwise_conv2d":
                attrs["depth_multiplier"] = 1
            nodes.append(ir.Node(f"n{i}", op, [cur, wname], [out], attrs))
        cur = out
    return ir.Graph("chain", tensors, nodes, ["x0"], [cur])


def test_depthwise_3x3_runs_in_place_one_row_ahead():
    g = chain([("conv2d", 1, 1, 0, 16), ("depthwise_conv2d", 3, 1, 1, 0), ("conv2d", 1, 1, 0, 16)], h=10, w=10, c=16)
    plan = plan_memory(g)
    simulate(g, plan)
    row = 10 * 16
    assert plan.offsets["x2"] - plan.offsets["x1"] == -row  # the output starts one row before its input
    assert plan.offsets["x3"] == plan.offsets["x2"]  # pointwise exactly in place
    # two 1600-byte tensors + one row of shift + one scratch row, instead of 2 x 1600 + the input
    assert plan.arena_bytes == 1600 + row + row
    assert plan_memory(g, inplace=False).arena_bytes == 3200


def _overlap(plan, a, b):
    return plan.offsets[a] < plan.offsets[b] + plan.sizes[b] and plan.offsets[b] < plan.offsets[a] + plan.sizes[a]


def test_stride2_conv_in_place():
    g = chain([("conv2d", 1, 1, 0, 8), ("conv2d", 3, 2, 1, 8)], h=16, w=16, c=8)
    plan = plan_memory(g)
    simulate(g, plan)
    assert _overlap(plan, "x1", "x2")
    assert plan.arena_bytes == 2048 + 128  # the output inside its input, plus the larger scratch row


def test_apart_keeps_a_row_op_off_its_input():
    """``apart`` (a layer tiled over output channels reads its whole input once per tile): that
    layer's output never overlaps its input and it has no row scratch; the others may run in place."""
    g = chain([("conv2d", 1, 1, 0, 8), ("conv2d", 3, 2, 1, 8), ("conv2d", 1, 1, 0, 8)], h=16, w=16, c=8)
    free = plan_memory(g)
    assert _overlap(free, "x1", "x2") and "n1" in free.scratch
    plan = plan_memory(g, apart={"n1"})
    simulate(g, plan)
    assert not _overlap(plan, "x1", "x2") and "n1" not in plan.scratch
    assert _overlap(plan, "x0", "x1")  # the first pointwise conv still in place
    assert plan.arena_bytes == 2048 + 512 > free.arena_bytes


def test_expanding_pointwise_in_place():
    g = chain([("conv2d", 1, 1, 0, 8), ("conv2d", 1, 1, 0, 32)], h=8, w=8, c=8)
    plan = plan_memory(g)
    simulate(g, plan)
    assert _overlap(plan, "x1", "x2")
    assert plan.offsets["x1"] - plan.offsets["x2"] >= 7 * (256 - 64)  # d* = -(Ho-1) rows of growth
    assert plan.arena_bytes == 2048 + 256 < 512 + 2048


def test_residual_add_fused_and_written_over_the_skip_tensor():
    g = chain([("conv2d", 3, 1, 1, 8), ("conv2d", 3, 1, 1, 8)], h=8, w=8, c=8)
    g.tensors["y"] = _t("y", (1, 8, 8, 8))
    g.nodes.append(ir.Node("add", "add", ["x0", "x2"], ["y"], {"act": (-128, 127)}))
    g.outputs = ["y"]
    f = fuse_residual_adds(g)
    assert [n.op for n in f.nodes] == ["conv2d", "conv2d"] and f.nodes[1].attrs["residual"]["tensor"] == "x0"
    plan = plan_memory(f)
    simulate(f, plan)
    assert plan.offsets["y"] == plan.offsets["x0"]
    assert plan.arena_bytes == 2 * 512  # x0 and conv1's output, nothing else


def test_a_wrong_plan_is_caught():
    g = chain([("depthwise_conv2d", 3, 1, 1, 0)], h=6, w=6, c=4)
    plan = plan_memory(g)
    simulate(g, plan)
    bad = MemoryPlan(arena_bytes=plan.arena_bytes + 64, offsets=dict(plan.offsets), sizes=plan.sizes,
                     scratch=dict(plan.scratch))
    bad.offsets["x1"] = plan.offsets["x0"]  # in place at d = 0 > d* = -one row: row 1 needs input row 0
    bad.scratch = {"n0": (plan.arena_bytes, 24)}
    with pytest.raises(Corrupted):
        simulate(g, bad)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["conv2d", "depthwise_conv2d", "max_pool2d", "avg_pool2d"]),
                          st.integers(1, 3), st.integers(1, 2), st.integers(0, 1), st.integers(1, 12)),
                min_size=1, max_size=5),
       st.integers(3, 9), st.integers(3, 9), st.integers(1, 6))
def test_random_chains_never_clobber_a_live_tensor(specs, h, w, c):
    # keep shapes valid: a kernel larger than its (padded) input is skipped
    fixed, H, W, C = [], h, w, c
    for op, k, s, pad, oc in specs:
        if H + 2 * pad < k or W + 2 * pad < k:
            continue
        fixed.append((op, k, s, pad, oc))
        H, W = ir.conv_output_size(H, k, s, 1, pad, pad), ir.conv_output_size(W, k, s, 1, pad, pad)
        C = oc if op == "conv2d" else C
    if not fixed:
        return
    g = chain(fixed, h, w, c)
    plan = plan_memory(g)
    simulate(g, plan)
    assert plan.arena_bytes <= plan_memory(g, inplace=False).arena_bytes


@pytest.mark.parametrize("model", sorted(TFLM_ARENA))
def test_mlperf_plans_are_safe_and_beat_tflm(mlperf_dir, model):
    g = fuse_residual_adds(load_tflite(mlperf_dir / f"{model}.tflite"))
    plan = plan_memory(g)
    simulate(g, plan)
    print(f"{model}: arena {plan.arena_bytes} bytes (TFLM {TFLM_ARENA[model]}, plain lifetimes {PLAIN[model]}, "
          f"{plan.arena_bytes / TFLM_ARENA[model]:.3f}x)")
    assert plan_memory(g, inplace=False).arena_bytes == PLAIN[model]
    assert plan.arena_bytes <= PLAIN[model]
    assert plan.arena_bytes <= 0.6 * TFLM_ARENA[model] - 512  # room left for stack and static RAM
    if model == "kws_ref_model":
        assert plan.arena_bytes <= 8000 + 4 * 320  # one 8000-byte tensor + the depthwise row shifts
    if model == "pretrainedResnet_quant":
        assert plan.arena_bytes == 32768  # x and conv1(x) of the first block, nothing more



@pytest.mark.slow
@pytest.mark.skipif(__import__("shutil").which("qemu-system-arm") is None
                    or __import__("shutil").which("arm-none-eabi-gcc") is None, reason="needs the ARM toolchain and QEMU")
def test_total_ram_of_one_inference_beats_tflm_arena(tmp_path, mlperf_dir):
    """Issue 3: arena + other static RAM + measured stack peak (Cortex-M4 under QEMU) vs TFLM's arena."""
    from edgecomp.backends.cortex_m import write_bundle

    ratios = []
    for model, tflm in TFLM_ARENA.items():
        man = write_bundle(load_tflite(mlperf_dir / f"{model}.tflite"), "cortex-m4", tmp_path / model, {})
        ram = man["ram"]
        total = ram["arena_bytes"] + ram["static_bytes"] + ram["stack_peak_bytes"]
        assert ram["stack_peak_bytes"] > 0 and total == man["ram_bytes"]
        ratios.append(total / tflm)
        print(f"{model}: arena {ram['arena_bytes']} + static {ram['static_bytes']} + stack {ram['stack_peak_bytes']}"
              f" = {total} bytes, TFLM arena {tflm}: {total / tflm:.3f}x")
        assert total <= 0.6 * tflm, model
    geomean = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
    print(f"geomean {geomean:.3f}x")
    assert geomean <= 0.45


def test_branches_and_a_skip_that_stays_alive():
    """x feeds two branches; a (a branch) is read again after the residual add, so nothing overwrites it."""
    conv = {"stride": (1, 1), "pad": (0, 0, 0, 0), "dilation": (1, 1), "act": (-128, 127)}
    dw = {"stride": (1, 1), "pad": (1, 1, 1, 1), "dilation": (1, 1), "act": (-128, 127), "depth_multiplier": 1}
    ts = [_t("x", (1, 8, 8, 8)), _t("a", (1, 8, 8, 8)), _t("b", (1, 8, 8, 8)), _t("c", (1, 8, 8, 16)),
          _t("d", (1, 8, 8, 8)), _t("e", (1, 8, 8, 8)), _t("f", (1, 8, 8, 8)),
          _w("w1", (8, 1, 1, 8)), _w("w2", (1, 3, 3, 8)), _w("w3", (8, 1, 1, 16)), _w("w4", (8, 1, 1, 8))]
    nodes = [ir.Node("pa", "conv2d", ["x", "w1"], ["a"], conv),
             ir.Node("pb", "depthwise_conv2d", ["x", "w2"], ["b"], dw),
             ir.Node("cat", "concat", ["a", "b"], ["c"], {"axis": 3}),
             ir.Node("pd", "conv2d", ["c", "w3"], ["d"], conv),
             ir.Node("res", "add", ["d", "a"], ["e"], {"act": (-128, 127)}),
             ir.Node("pf", "conv2d", ["e", "w4"], ["f"], conv),
             ir.Node("res2", "add", ["f", "a"], ["g"], {"act": (-128, 127)})]
    ts.append(_t("g", (1, 8, 8, 8)))
    g = ir.Graph("dag", {t.name: t for t in ts}, nodes, ["x"], ["g"])
    g.validate()
    f = fuse_residual_adds(g)
    assert [n.op for n in f.nodes] == ["conv2d", "depthwise_conv2d", "concat", "conv2d", "conv2d"]
    plan = plan_memory(f)
    simulate(f, plan)
    assert not _overlap(plan, "e", "a")  # a is read again by the second residual
    assert plan.offsets["g"] == plan.offsets["a"] or not _overlap(plan, "g", "a")


# --------------------------------------------------------------------------- beyond the four models
@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["conv2d", "depthwise_conv2d", "max_pool2d", "avg_pool2d"]),
                          st.integers(1, 3), st.integers(1, 2), st.integers(0, 1), st.integers(1, 12)),
                min_size=1, max_size=5),
       st.integers(3, 9), st.integers(3, 9), st.integers(1, 6), st.integers(0, 600))
def test_lower_bound_never_exceeds_a_plan(specs, h, w, c, work):
    """The largest live set is a lower bound: no plan is smaller, with or without in place and workspaces."""
    fixed, H, W = [], h, w
    for op, k, s, pad, oc in specs:
        if H + 2 * pad < k or W + 2 * pad < k:
            continue
        fixed.append((op, k, s, pad, oc))
        H, W = ir.conv_output_size(H, k, s, 1, pad, pad), ir.conv_output_size(W, k, s, 1, pad, pad)
    if not fixed:
        return
    g = chain(fixed, h, w, c)
    ws = {g.nodes[0].name: work}
    for kw in ({}, {"inplace": False}, {"workspace": ws}):
        plan = plan_memory(g, **kw)
        assert plan.lower_bound == lower_bound(g, **kw) <= plan.arena_bytes


def test_lower_bound_of_the_mlperf_plans(mlperf_dir):
    """ResNet-8 and VWW are planned at their bound (the in-place rules as the kernels allow them)."""
    for model, want in (("pretrainedResnet_quant", 32768), ("vww_96_int8", 37632), ("ad01_int8", 768)):
        g = fuse_residual_adds(load_tflite(mlperf_dir / f"{model}.tflite"))
        plan = plan_memory(g)
        assert plan.arena_bytes == plan.lower_bound == want, model
        assert lower_bound(g, inplace=False) == PLAIN[model]  # plain lifetimes: the largest live set


@pytest.mark.parametrize("widths,size", [((32, 64, 128), 32), ((16, 32, 64, 128), 64)])
def test_wider_resnets_keep_the_lead_over_tflm(widths, size, tmp_path):
    """ResNets of the ResNet-8 family the planner was not tuned on (more channels; a fourth stage at
    64x64): the row-fused first block writes its output rows exactly over its skip tensor, so the
    plan keeps the fusion (a 64 KB tensor in 3 rows) and sits at its lower bound; the arena stays
    at most half of TFLM's (the 64x64 net was at 0.65 before the planner knew the fused rule)."""
    from edgecomp.backends.c.kernel_plan import plan_with_gemm
    from edgecomp.options import CodegenOptions
    from edgecomp.passes.requantize import requantize
    from edgecomp.reference import tflm_arena_bytes
    from resnet_builder import resnet_tflite

    path = tmp_path / "resnet.tflite"
    path.write_bytes(resnet_tflite(widths, size=size))
    g = requantize(fuse_residual_adds(load_tflite(path)))
    plan, _, fused, _ = plan_with_gemm(g, CodegenOptions(dsp=True))
    tflm = tflm_arena_bytes(path)
    print(f"{widths} @ {size}: arena {plan.arena_bytes}, bound {plan.lower_bound}, TFLM {tflm}, "
          f"{plan.arena_bytes / tflm:.3f}x")
    assert fused and plan.arena_bytes <= 1.01 * plan.lower_bound
    assert plan.arena_bytes <= 0.5 * tflm
    simulate(g, plan_memory(g))  # the plain plan of the same graph is safe byte for byte
