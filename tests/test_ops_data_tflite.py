"""TFLite data movement builtins against TensorFlow Lite Micro, bit for bit: PAD, PADV2, TRANSPOSE,
STRIDED_SLICE, SLICE, SPLIT, SPLIT_V, PACK, UNPACK, CONCATENATION, DEPTH_TO_SPACE, SPACE_TO_DEPTH,
SQUEEZE, EXPAND_DIMS, GATHER, RESIZE_NEAREST_NEIGHBOR and RESIZE_BILINEAR.

Every axis-dependent op on every axis of 2-D, 3-D and 4-D tensors with batch 1 and 2 (a batch-2
model's rows are pairs of samples), 100 random int8 inputs each through the reference
interpreter; chains of them through the host C build (0 LSB against the interpreter) and one
chain under QEMU on cortex-m4.
"""
from __future__ import annotations

import itertools
import shutil

import numpy as np
import pytest
from conftest import build_tflite

from edgecomp import interp
from edgecomp.errors import UnsupportedError
from edgecomp.frontends.tflite import load_tflite

N = 100  # random inputs per model
Q = dict(scale=[0.05], zero_point=[3])
SHAPES = {(r, b): (b,) + (4, 6, 5)[-(r - 1):] for r in (2, 3, 4) for b in (1, 2)}
CASES = [(r, b, a) for (r, b) in SHAPES for a in range(r)]


def act(name, shape, dtype="int8"):
    return dict(name=name, shape=list(shape), dtype=dtype, **(Q if dtype == "int8" else {}))


def i32(name, values):
    v = np.asarray(values, dtype=np.int32)
    return dict(name=name, shape=list(v.shape), dtype="int32", data=v)


def one_op(op, ins, consts, outs, options=None, dtype="int8") -> bytes:
    """A model of one op: activation inputs ``ins`` (shapes), constant operands ``consts``
    (tensor dicts, in the op's input order after the activations unless given as (position, dict)),
    outputs ``outs`` (shapes)."""
    tensors = [act(f"x{i}", s, dtype) for i, s in enumerate(ins)]
    order = list(range(len(ins)))
    for c in consts:
        pos, d = c if isinstance(c, tuple) else (len(order), c)
        order.insert(pos, len(tensors))
        tensors.append(d)
    first_out = len(tensors)
    tensors += [act(f"y{i}", s, dtype) for i, s in enumerate(outs)]
    o = dict(op=op, inputs=order, outputs=list(range(first_out, len(tensors))))
    if options:
        o["options"] = options
    return build_tflite(tensors, [o], list(range(len(ins))), list(range(first_out, len(tensors))))


def samples(shape, seed, dtype="int8", n=N):
    rng = np.random.default_rng(seed)
    if dtype == "int8":
        return rng.integers(-128, 128, (n,) + tuple(shape)).astype(np.int8)
    return rng.standard_normal((n,) + tuple(shape)).astype(np.float32)


def check_vs_tflm(model: bytes, in_shapes, seed=0, dtype="int8", n=N):
    """n random model-shaped inputs through TFLM and through the interpreter (k * batch rows): equal."""
    from tflite_micro.python.tflite_micro import runtime
    g = load_tflite(model)
    xs = [samples(s, seed + i, dtype, n) for i, s in enumerate(in_shapes)]
    tflm = runtime.Interpreter.from_bytes(model)
    want = [[] for _ in g.outputs]
    for s in range(n):
        for i, x in enumerate(xs):
            tflm.set_input(x[s], i)
        tflm.invoke()
        for j in range(len(g.outputs)):
            want[j].append(tflm.get_output(j).copy())
    got = interp.run(g, {name: x.reshape((-1,) + x.shape[2:]) for name, x in zip(g.inputs, xs)})
    for j, o in enumerate(g.outputs):
        w = np.stack(want[j])
        assert got[o].dtype == w.dtype
        np.testing.assert_array_equal(got[o].reshape(w.shape), w, err_msg=f"output {j}")
    assert len(np.unique(np.stack(want[0]))) > 10  # real data, not a constant
    return g


# -- pad ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("rank,batch,axis", CASES)
@pytest.mark.parametrize("op", ["PAD", "PADV2"])
def test_pad_every_axis(rank, batch, axis, op):
    s = SHAPES[(rank, batch)]
    pads = np.zeros((rank, 2), np.int32)
    pads[axis] = (1, 2)
    pads[-1] += (0, 1) if axis != rank - 1 else (0, 0)
    out = tuple(int(d + p.sum()) for d, p in zip(s, pads))
    consts = [i32("pads", pads)]
    if op == "PADV2":
        consts.append(dict(name="v", shape=[1], dtype="int8", data=np.array([-77], np.int8), **Q))
    g = check_vs_tflm(one_op(op, [s], consts, [out]), [s], seed=rank * 10 + axis)
    assert [n.op for n in g.nodes] == ["pad"]


def test_pad_float_and_zero_point():
    s = (1, 3, 4, 5)
    pads = i32("pads", [[0, 0], [1, 1], [2, 0], [0, 0]])
    check_vs_tflm(one_op("PAD", [s], [pads], [(1, 5, 6, 5)], dtype="float32"), [s], dtype="float32")
    g = check_vs_tflm(one_op("PAD", [s], [pads], [(1, 5, 6, 5)]), [s])
    assert g.nodes[0].attrs["value"] == 3  # the output's zero point, as TFLM pads int8


# -- slices ---------------------------------------------------------------------------------------
SLICES = [  # begin, end, stride, (begin mask, end mask, shrink) on the sliced axis
    (1, -1, 1, (0, 0, 0)), (-1, 0, -2, (0, 1, 0)), (0, 5, 2, (1, 0, 0)), (1, 0, 1, (0, 0, 1)), (-2, -1, 1, (0, 0, 1))]


@pytest.mark.parametrize("rank,batch,axis", CASES)
@pytest.mark.parametrize("sl", range(len(SLICES)))
def test_strided_slice_every_axis(rank, batch, axis, sl):
    s = SHAPES[(rank, batch)]
    b, e, st, (bm, em, sh) = SLICES[sl]
    from edgecomp.frontends.tflite.ops_data import strided_axis
    _, cnt = strided_axis(b, e, st, s[axis], bool(bm), bool(em), bool(sh))
    if cnt == 0:  # a short axis: its last element (backwards unless shrunk)
        b, e, st, bm, em = (-1, 0, -1, 0, 1) if not sh else (-1, 0, 1, 0, 0)
        _, cnt = strided_axis(b, e, st, s[axis], bool(bm), bool(em), bool(sh))
    begin, end, stride = [0] * rank, [0] * rank, [1] * rank
    begin[axis], end[axis], stride[axis] = b, e, st
    others = (1 << rank) - 1 - (1 << axis)  # the other axes whole
    out = tuple(cnt if i == axis else d for i, d in enumerate(s) if not (i == axis and sh))
    opts = ("StridedSliceOptions", {"BeginMask": others | (bm << axis), "EndMask": others | (em << axis),
                                    "ShrinkAxisMask": sh << axis})
    g = check_vs_tflm(one_op("STRIDED_SLICE", [s], [i32("b", begin), i32("e", end), i32("s", stride)], [out], opts),
                      [s], seed=sl)
    assert g.nodes[0].op == "slice"


@pytest.mark.parametrize("rank,batch,axis", CASES)
def test_slice_every_axis(rank, batch, axis):
    s = SHAPES[(rank, batch)]
    begin, size = [0] * rank, [-1] * rank
    begin[axis] = s[axis] // 2
    size[axis] = -1 if axis % 2 else s[axis] - s[axis] // 2
    out = tuple(d - b for d, b in zip(s, begin))
    check_vs_tflm(one_op("SLICE", [s], [i32("b", begin), i32("n", size)], [out]), [s], seed=axis)


# -- split / pack / concat ------------------------------------------------------------------------
@pytest.mark.parametrize("rank,batch,axis", CASES)
@pytest.mark.parametrize("op", ["SPLIT", "SPLIT_V"])
def test_split_every_axis(rank, batch, axis, op):
    s = SHAPES[(rank, batch)]
    if op == "SPLIT":
        parts = [s[axis] // 2] * 2 if s[axis] % 2 == 0 else [s[axis]]
        consts = [(0, i32("axis", [axis]))]
        opts = ("SplitOptions", {"NumSplits": len(parts)})
    else:
        parts = [1, s[axis] - 1] if s[axis] > 1 else [1]
        consts = [i32("sizes", parts), i32("axis", [axis])]
        opts = ("SplitVOptions", {"NumSplits": len(parts)})
    outs = [tuple(p if i == axis else d for i, d in enumerate(s)) for p in parts]
    g = check_vs_tflm(one_op(op, [s], consts, outs, opts), [s], seed=axis)
    assert [n.op for n in g.nodes] == ["split"] and len(g.nodes[0].outputs) == len(parts)


@pytest.mark.parametrize("rank,batch,axis", CASES + [(r, b, r) for (r, b) in SHAPES])
def test_pack_every_axis(rank, batch, axis):
    s = SHAPES[(rank, batch)]
    out = s[:axis] + (3,) + s[axis:]
    check_vs_tflm(one_op("PACK", [s, s, s], [], [out], ("PackOptions", {"ValuesCount": 3, "Axis": axis})),
                  [s, s, s], seed=axis, n=40)


@pytest.mark.parametrize("rank,batch,axis", CASES)
def test_unpack_every_axis(rank, batch, axis):
    s = SHAPES[(rank, batch)]
    outs = [s[:axis] + s[axis + 1:]] * s[axis]
    check_vs_tflm(one_op("UNPACK", [s], [], outs, ("UnpackOptions", {"Num": s[axis], "Axis": axis})), [s],
                  seed=axis, n=40)


@pytest.mark.parametrize("rank,batch,axis", CASES)
def test_concatenation_every_axis(rank, batch, axis):
    s = SHAPES[(rank, batch)]
    s2 = tuple(2 if i == axis else d for i, d in enumerate(s))
    out = tuple(d + 2 if i == axis else d for i, d in enumerate(s))
    opts = ("ConcatenationOptions", {"Axis": axis - rank if axis % 2 else axis, "FusedActivationFunction": 0})
    check_vs_tflm(one_op("CONCATENATION", [s, s2], [], [out], opts), [s, s2], seed=axis)


# -- transpose, depth / space, squeeze, gather -------------------------------------------------------
@pytest.mark.parametrize("rank,batch,perm", [(r, b, p) for (r, b) in SHAPES for p in itertools.permutations(range(r))
                                             if r < 4 or b == 2 or p[0] == 0])
def test_transpose_every_permutation(rank, batch, perm):
    s = SHAPES[(rank, batch)]
    g = check_vs_tflm(one_op("TRANSPOSE", [s], [i32("perm", perm)], [tuple(s[p] for p in perm)]), [s], n=30)
    assert g.nodes[0].op == "transpose"


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("block", [2, 3])
def test_depth_to_space_and_back(batch, block):
    s = (batch, 2, 3, 2 * block * block)
    d2s = (batch, 2 * block, 3 * block, 2)
    check_vs_tflm(one_op("DEPTH_TO_SPACE", [s], [], [d2s], ("DepthToSpaceOptions", {"BlockSize": block})), [s])
    check_vs_tflm(one_op("SPACE_TO_DEPTH", [d2s], [], [s], ("SpaceToDepthOptions", {"BlockSize": block})), [d2s])


def test_squeeze_and_expand_dims():
    check_vs_tflm(one_op("SQUEEZE", [(1, 4, 1, 5)], [], [(4, 5)], ("SqueezeOptions", {})), [(1, 4, 1, 5)])
    check_vs_tflm(one_op("EXPAND_DIMS", [(2, 4, 5)], [i32("a", [2])], [(2, 4, 1, 5)]), [(2, 4, 5)])
    check_vs_tflm(one_op("RESHAPE", [(2, 4, 5)], [i32("s", [2, 2, 2, 5])], [(2, 2, 2, 5)]), [(2, 4, 5)])


@pytest.mark.parametrize("rank,batch,axis", CASES)
@pytest.mark.parametrize("indices", [[2, 0, 2, 1], [[1, 0], [0, 1]], 1])
def test_gather_every_axis(rank, batch, axis, indices):
    s = SHAPES[(rank, batch)]
    idx = np.minimum(np.asarray(indices), s[axis] - 1)
    out = s[:axis] + idx.shape + s[axis + 1:]
    if len(out) > 5:
        pytest.skip("TFLM gathers at most 5-D outputs here")
    check_vs_tflm(one_op("GATHER", [s], [i32("i", idx)], [out], ("GatherOptions", {"Axis": axis})), [s],
                  seed=axis, n=40)


# -- resize ---------------------------------------------------------------------------------------------
SIZES = [((3, 4), (6, 8)), ((5, 7), (3, 4)), ((4, 4), (7, 9)), ((2, 3), (2, 3)), ((1, 5), (4, 10))]
FLAGS = [(False, False), (True, False), (False, True)]  # align_corners, half_pixel_centers


@pytest.mark.parametrize("op", ["RESIZE_NEAREST_NEIGHBOR", "RESIZE_BILINEAR"])
@pytest.mark.parametrize("flags", FLAGS, ids=["plain", "align_corners", "half_pixel"])
@pytest.mark.parametrize("sizes", SIZES, ids=lambda s: f"{s[0][0]}x{s[0][1]}to{s[1][0]}x{s[1][1]}")
@pytest.mark.parametrize("dtype", ["int8", "float32"])
def test_resize(op, flags, sizes, dtype):
    (h, w), (oh, ow) = sizes
    s, o = (2, h, w, 3), (2, oh, ow, 3)
    name = "ResizeNearestNeighborOptions" if op == "RESIZE_NEAREST_NEIGHBOR" else "ResizeBilinearOptions"
    m = one_op(op, [s], [i32("size", [oh, ow])], [o], (name, {"AlignCorners": flags[0], "HalfPixelCenters": flags[1]}),
               dtype=dtype)
    if dtype == "int8":
        check_vs_tflm(m, [s])
        return
    from tflite_micro.python.tflite_micro import runtime
    g = load_tflite(m)
    x = samples(s, 1, "float32", 20)
    tflm = runtime.Interpreter.from_bytes(m)
    want = []
    for sample in x:
        tflm.set_input(sample, 0)
        tflm.invoke()
        want.append(tflm.get_output(0).copy())
    got = interp.run(g, x.reshape((-1,) + s[1:]))[g.outputs[0]]
    np.testing.assert_allclose(got.reshape(np.stack(want).shape), np.stack(want), rtol=1e-5, atol=1e-5)


def test_unsupported_slices_are_refused_clearly():
    s = (1, 4, 5)
    opts = ("StridedSliceOptions", {"EllipsisMask": 1})
    m = one_op("STRIDED_SLICE", [s], [i32("b", [0, 0, 0]), i32("e", [1, 4, 5]), i32("s", [1, 1, 1])], [s], opts)
    with pytest.raises(UnsupportedError, match="ellipsis"):
        load_tflite(m)
    m = one_op("GATHER", [s], [i32("i", [0, 1])], [(1, 2, 5)], ("GatherOptions", {"Axis": 1, "BatchDims": 1}))
    with pytest.raises(UnsupportedError, match="batch_dims"):
        load_tflite(m)


# -- chains through the C backend ---------------------------------------------------------------------
def run_c(g, x, tmp):
    """The host C build of ``g`` on the rows of ``x`` (whole model invocations): its output bytes."""
    import subprocess

    from c_harness import build

    from edgecomp import ir
    from edgecomp.backends.c import generate
    from edgecomp.options import CodegenOptions
    info = generate(g, tmp, options=CodegenOptions())
    exe = build(tmp, sources=[f for f in info.files if f.endswith(".c")])
    r = subprocess.run([str(exe)], input=np.ascontiguousarray(x).tobytes(), capture_output=True, check=True)
    return np.frombuffer(r.stdout, dtype=ir.np_dtype(g.tensors[g.outputs[0]].dtype))


class Chain:
    """A one-input, one-output TFLite model of data movement ops applied one after the other."""

    def __init__(self, shape, dtype="int8"):
        self.dtype = dtype
        self.tensors = [act("x", shape, dtype)]
        self.ops = []
        self.cur, self.shape = 0, tuple(shape)

    def _t(self, shape):
        self.tensors.append(act(f"t{len(self.tensors)}", shape, self.dtype))
        return len(self.tensors) - 1

    def _c(self, values):
        self.tensors.append(i32(f"c{len(self.tensors)}", values))
        return len(self.tensors) - 1

    def op(self, name, out_shapes, consts=(), options=None, take=0, extra_inputs=()):
        ins = [self.cur] + list(extra_inputs)
        for c in consts:
            pos, v = c if isinstance(c, tuple) else (len(ins), c)
            ins.insert(pos, self._c(v))
        outs = [self._t(s) for s in out_shapes]
        o = dict(op=name, inputs=ins, outputs=outs)
        if options:
            o["options"] = options
        self.ops.append(o)
        self.cur, self.shape = outs[take], tuple(out_shapes[take])
        return outs

    def model(self) -> bytes:
        return build_tflite(self.tensors, self.ops, [0], [self.cur])


def chain_model(batch: int, axis: int, dtype: str = "int8") -> bytes:
    """Every data movement builtin once, along ``axis`` (of the tensor at that point) where it has one."""
    c = Chain((batch, 4, 6, 5), dtype)
    s = c.shape
    pads = [[0, 0]] * 4
    pads[axis] = [1, 2]
    c.op("PAD", [tuple(d + sum(p) for d, p in zip(s, pads))], [pads])
    s = c.shape
    b, e, st = [0] * 4, list(s), [1] * 4
    b[axis], e[axis], st[axis] = -1, 0, -2
    n = len(range(s[axis] - 1, 0, -2))
    c.op("STRIDED_SLICE", [tuple(n if i == axis else d for i, d in enumerate(s))], [b, e, st],
         ("StridedSliceOptions", {"EndMask": 15 - (1 << axis)}))
    s = c.shape
    perm = [0, 3, 1, 2] if axis != 0 else [1, 0, 3, 2]
    c.op("TRANSPOSE", [tuple(s[p] for p in perm)], [perm])
    s = c.shape
    sizes = [1, s[axis] - 1] if s[axis] > 1 else [1]
    outs = [tuple(p if i == axis else d for i, d in enumerate(s)) for p in sizes]
    parts = c.op("SPLIT_V", outs, [sizes, [axis]], ("SplitVOptions", {"NumSplits": len(sizes)}), take=len(sizes) - 1)
    s = c.shape
    c.op("CONCATENATION", [tuple(d + outs[0][axis] if i == axis else d for i, d in enumerate(s))],
         options=("ConcatenationOptions", {"Axis": axis, "FusedActivationFunction": 0}), extra_inputs=[parts[0]])
    s = c.shape
    idx = [s[axis] - 1, 0, s[axis] // 2]
    c.op("GATHER", [s[:axis] + (3,) + s[axis + 1:]], [idx], ("GatherOptions", {"Axis": axis}))
    s = c.shape
    c.op("RESHAPE", [(s[0], s[1], s[2] * s[3], 1)], [[s[0], s[1], s[2] * s[3], 1]])
    s = c.shape
    c.op("RESIZE_BILINEAR", [(s[0], 2 * s[1], s[2] + 3, 1)], [[2 * s[1], s[2] + 3]],
         ("ResizeBilinearOptions", {"HalfPixelCenters": True}))
    s = c.shape
    c.op("RESIZE_NEAREST_NEIGHBOR", [(s[0], s[1] + 1, s[2] * 2, 1)], [[s[1] + 1, s[2] * 2]],
         ("ResizeNearestNeighborOptions", {"AlignCorners": True}))
    s = c.shape
    c.op("SPACE_TO_DEPTH", [(s[0], s[1] // 2, s[2] // 2, 4)] if s[1] % 2 == 0 and s[2] % 2 == 0 else [s],
         options=("SpaceToDepthOptions", {"BlockSize": 2})) if s[1] % 2 == 0 and s[2] % 2 == 0 else None
    s = c.shape
    c.op("UNPACK", [s[:3]] * s[3], options=("UnpackOptions", {"Num": s[3], "Axis": 3}), take=s[3] - 1)
    return c.model()


@pytest.mark.toolchain
@pytest.mark.parametrize("batch,axis", [(1, 1), (1, 2), (1, 3), (2, 0), (2, 1), (2, 3)])
def test_chains_host_c_equal_interpreter_and_tflm(tmp_path, batch, axis):
    m = chain_model(batch, axis)
    g = load_tflite(m)
    shape = tuple(g.tensors[g.inputs[0]].shape)
    check_vs_tflm(m, [shape], seed=axis, n=30)
    x = samples(shape, 7, n=3).reshape((-1,) + shape[1:])
    want = interp.run(g, x)[g.outputs[0]]
    got = run_c(g, x, tmp_path)
    np.testing.assert_array_equal(got.reshape(want.shape), want)
    assert {"pad", "slice", "transpose", "split", "concat", "gather", "resize"} <= {n.op for n in g.nodes}


@pytest.mark.toolchain
def test_float_chain_host_c_equals_interpreter(tmp_path):
    g = load_tflite(chain_model(2, 1, "float32"))
    shape = tuple(g.tensors[g.inputs[0]].shape)
    x = samples(shape, 3, "float32", n=2).reshape((-1,) + shape[1:])
    want = interp.run(g, x)[g.outputs[0]]
    np.testing.assert_allclose(run_c(g, x, tmp_path).reshape(want.shape), want, rtol=1e-5, atol=1e-5)


@pytest.mark.qemu
@pytest.mark.skipif(not (shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm")),
                    reason="needs arm-none-eabi-gcc and qemu-system-arm")
def test_chain_on_cortex_m4_under_qemu_equals_tflm(tmp_path):
    from edgecomp import api
    m = chain_model(2, 3)
    (tmp_path / "m.tflite").write_bytes(m)
    g = load_tflite(m)
    shape = tuple(g.tensors[g.inputs[0]].shape)
    x = samples(shape, 11, n=4)
    api.compile_model(tmp_path / "m.tflite", "cortex-m4", tmp_path / "b")
    got = api.run_bundle(tmp_path / "b", x.reshape((-1,) + shape[1:]), progress=False).outputs
    want = check_vs_tflm(m, [shape], seed=11, n=4) and interp.run(g, x.reshape((-1,) + shape[1:]))[g.outputs[0]]
    np.testing.assert_array_equal(np.asarray(got).reshape(want.shape), want)
