"""ONNX data movement ops against ONNX Runtime: Pad (constant, edge, reflect), Slice (steps, negative
indices), Split, Gather (constant indices), Concat, Transpose, Expand, DepthToSpace (DCR, CRD),
SpaceToDepth, Resize / Upsample (nearest with its rounding modes, linear with the coordinate
transformation modes), Flatten / Reshape / Squeeze / Unsqueeze.

Every axis-dependent op on every axis of 2-D, 3-D and 4-D tensors with batch 1 and 2: the float
graph within 1e-5 of ONNX Runtime, and the QDQ graph (the op between QuantizeLinear /
DequantizeLinear pairs, as ONNX Runtime's quantizer writes them) within 1 LSB of ONNX Runtime
running it as written (moves: 0 LSB), through the reference interpreter.  A 4-D input is NHWC in
the IR, so the axis mapping of the layout model is exercised everywhere.  Chains of the ops run
through the host C build, one under QEMU; a PyTorch model quantized by ONNX Runtime's quantizer
(pixel shuffle, interpolation, padding, split, concat) through the host C build.
"""
from __future__ import annotations

import itertools
import shutil

import numpy as np
import onnx
import pytest
from onnx import TensorProto as TP
from onnx import helper as oh

from edgecomp import api, interp
from edgecomp.compress.quantize import reference_session
from edgecomp.errors import ModelError, UnsupportedError
from edgecomp.frontends.onnx import from_onnx

BIG = 2 ** 62
SHAPES = {(r, b): (b,) + (4, 6, 5)[-(r - 1):] for r in (2, 3, 4) for b in (1, 2)}
CASES = [(r, b, a) for (r, b) in SHAPES for a in range(r)]
S_IN, Z_IN = 0.03, -7


def const(name, v, dtype=None):
    v = np.asarray(v, dtype=dtype)
    t = {np.dtype(np.float32): TP.FLOAT, np.dtype(np.int64): TP.INT64, np.dtype(np.int8): TP.INT8,
         np.dtype(np.int32): TP.INT32}[v.dtype]
    return oh.make_tensor(name, t, v.shape, v.reshape(-1).tolist())


def make(tmp_path, in_shape, body, outs, inits=(), qdq=False, out_scale=None, opset=17, name="m.onnx"):
    """input -> body (nodes reading "a", writing ``outs``) -> outputs; with ``qdq`` the input, every
    op's output and each graph output between QuantizeLinear / DequantizeLinear (int8, as ONNX
    Runtime's quantizer writes them; the graph outputs in ``out_scale``)."""
    nodes, inits = [], list(inits)
    if qdq:
        inits += [const("s_in", np.float32(S_IN)), const("z_in", np.int8(Z_IN)),
                  const("s_out", np.float32(out_scale or S_IN)), const("z_out", np.int8(Z_IN if out_scale is None else 4))]
        nodes += [oh.make_node("QuantizeLinear", ["input", "s_in", "z_in"], ["xq"]),
                  oh.make_node("DequantizeLinear", ["xq", "s_in", "z_in"], ["a"])]
    else:
        nodes.append(oh.make_node("Identity", ["input"], ["a"]))
    finals, renamed = [], {}
    for node in body:  # with qdq every op's outputs go through a QuantizeLinear / DequantizeLinear pair
        node.input[:] = [renamed.get(i, i) for i in node.input]
        nodes.append(node)
        for o in node.output:
            if qdq and o not in outs and node.op_type not in ("Shape", "Constant"):
                nodes += [oh.make_node("QuantizeLinear", [o, "s_in", "z_in"], [f"{o}_q"]),
                          oh.make_node("DequantizeLinear", [f"{o}_q", "s_in", "z_in"], [f"{o}_dq"])]
                renamed[o] = f"{o}_dq"
    for o in outs:
        if qdq:
            nodes += [oh.make_node("QuantizeLinear", [o, "s_out", "z_out"], [f"{o}_q"]),
                      oh.make_node("DequantizeLinear", [f"{o}_q", "s_out", "z_out"], [f"{o}_out"])]
            finals.append(f"{o}_out")
        else:
            finals.append(o)
    g = oh.make_graph(nodes, "m", [oh.make_tensor_value_info("input", TP.FLOAT, list(in_shape))],
                      [oh.make_tensor_value_info(o, TP.FLOAT, None) for o in finals], initializer=inits)
    m = oh.make_model(g, opset_imports=[oh.make_opsetid("", opset)])
    m.ir_version = 8
    inferred = onnx.shape_inference.infer_shapes(m).graph.output  # the outputs' shapes as ONNX infers them
    del m.graph.output[:]
    m.graph.output.extend(inferred)
    path = tmp_path / name
    onnx.save(m, str(path))
    return path


def io_of(g):
    t = g.tensors[g.inputs[0]]
    q = None if t.quant is None else {"scale": [float(t.quant.scale[0])], "zero_point": [int(t.quant.zero_point[0])]}
    return {"shape": list(t.shape), "dtype": t.dtype, "source_layout": "NCHW" if len(t.shape) == 4 else None,
            "quantization": q}


def to_onnx_order(y, shape):
    return y.transpose(0, 3, 1, 2) if y.ndim == 4 and len(shape) == 4 else y.reshape(shape)


def check(path, in_shape, n=16, seed=0, exact=True):
    """Our interpreter against ONNX Runtime: float within 1e-5; int8 outputs within 1 LSB (0 for moves)."""
    x = np.random.default_rng(seed).standard_normal((n,) + tuple(in_shape[1:])).astype(np.float32)
    sess = reference_session(path)
    want = [np.concatenate(w) for w in zip(*[sess.run(None, {"input": x[i:i + in_shape[0]]})
                                             for i in range(0, n, in_shape[0])])]
    g = from_onnx(path)
    got = interp.run(g, api.quantize_input(x, io_of(g)))
    assert len(g.outputs) == len(want)
    for o, w in zip(g.outputs, want):
        t = g.tensors[o]
        y = to_onnx_order(got[o], w.shape)
        if t.dtype == "float32":
            np.testing.assert_allclose(y, w, rtol=1e-5, atol=1e-5)
        else:
            s, z = float(t.quant.scale[0]), int(t.quant.zero_point[0])
            ref = np.rint(w / np.float32(s)).astype(np.int32) + z
            diff = np.abs(y.astype(np.int32) - ref).max()
            assert diff <= (0 if exact else 1), diff
    return g


# -- Pad ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("rank,batch,axis", CASES)
@pytest.mark.parametrize("mode", ["constant", "edge", "reflect"])
@pytest.mark.parametrize("qdq", [False, True], ids=["float", "int8"])
def test_pad_every_axis(tmp_path, rank, batch, axis, mode, qdq):
    s = SHAPES[(rank, batch)]
    if mode == "reflect" and s[axis] < 3:
        pytest.skip("reflect needs an axis longer than its padding")
    pads = [0] * (2 * rank)
    pads[axis], pads[rank + axis] = 1, 2
    if axis != rank - 1:
        pads[rank - 1] = 1
    inits = [const("pads", np.array(pads, np.int64)), const("v", np.float32(0.25))]
    body = [oh.make_node("Pad", ["a", "pads", "v"] if mode == "constant" else ["a", "pads"], ["y"], mode=mode)]
    g = check(make(tmp_path, s, body, ["y"], inits, qdq=qdq), s)
    assert [n.op for n in g.nodes] == ["pad"]


@pytest.mark.parametrize("qdq", [False, True], ids=["float", "int8"])
def test_pad_negative_crops_and_axes_input(tmp_path, qdq):
    s = (1, 4, 6, 5)
    inits = [const("pads", np.array([-1, 2, 0, 1], np.int64)), const("axes", np.array([2, -1], np.int64))]
    body = [oh.make_node("Pad", ["a", "pads", "", "axes"], ["y"], mode="constant")]
    g = check(make(tmp_path, s, body, ["y"], inits, qdq=qdq, opset=18), s)
    assert [n.op for n in g.nodes] == ["slice", "pad"]


# -- Slice ----------------------------------------------------------------------------------------------
SLICES = [(1, -1, 1), (-1, -BIG, -2), (0, BIG, 2), (-2, BIG, 1), (3, 1, -1)]


@pytest.mark.parametrize("rank,batch,axis", CASES)
@pytest.mark.parametrize("sl", range(len(SLICES)))
@pytest.mark.parametrize("qdq", [False, True], ids=["float", "int8"])
def test_slice_every_axis(tmp_path, rank, batch, axis, sl, qdq):
    from edgecomp.frontends.onnx.ops_data import slice_axis
    s = SHAPES[(rank, batch)]
    b, e, st = SLICES[sl]
    if slice_axis(b, e, st, s[axis])[1] < 1:
        b, e, st = -1, -BIG, -1  # a short axis: all of it, backwards
    inits = [const(k, np.array([v], np.int64)) for k, v in (("b", b), ("e", e), ("ax", axis - rank), ("st", st))]
    body = [oh.make_node("Slice", ["a", "b", "e", "ax", "st"], ["y"])]
    check(make(tmp_path, s, body, ["y"], inits, qdq=qdq), s)


# -- Split / Concat / Gather ------------------------------------------------------------------------------
@pytest.mark.parametrize("rank,batch,axis", CASES)
@pytest.mark.parametrize("qdq", [False, True], ids=["float", "int8"])
def test_split_every_axis(tmp_path, rank, batch, axis, qdq):
    s = SHAPES[(rank, batch)]
    sizes = [1, s[axis] - 1] if s[axis] > 1 else [1]
    outs = [f"y{i}" for i in range(len(sizes))]
    body = [oh.make_node("Split", ["a", "sizes"], outs, axis=axis)]
    g = check(make(tmp_path, s, body, outs, [const("sizes", np.array(sizes, np.int64))], qdq=qdq), s)
    assert [n.op for n in g.nodes] == ["split"]


@pytest.mark.parametrize("axis", [2, 3], ids=["even", "last-smaller"])
@pytest.mark.parametrize("qdq", [False, True], ids=["float", "int8"])
def test_split_equal_parts_opset18(tmp_path, axis, qdq):
    s = (2, 4, 6, 5)  # 6 in three parts of 2; 5 in 2, 2 and 1 (the last part smaller)
    body = [oh.make_node("Split", ["a"], ["y0", "y1", "y2"], axis=axis, num_outputs=3)]
    g = check(make(tmp_path, s, body, ["y0", "y1", "y2"], qdq=qdq, opset=18), s)
    assert [g.tensors[o].shape[axis - 1 if axis > 1 else 0] for o in g.outputs] == ([2, 2, 2] if axis == 2 else [2, 2, 1])


@pytest.mark.parametrize("rank,batch,axis", CASES)
@pytest.mark.parametrize("qdq", [False, True], ids=["float", "int8"])
def test_concat_every_axis(tmp_path, rank, batch, axis, qdq):
    s = SHAPES[(rank, batch)]
    inits = [const(k, np.array([v], np.int64)) for k, v in (("b", 0), ("e", 1), ("ax", axis))]
    body = [oh.make_node("Slice", ["a", "b", "e", "ax"], ["p"]), oh.make_node("Concat", ["a", "p", "a"], ["y"], axis=axis)]
    check(make(tmp_path, s, body, ["y"], inits, qdq=qdq), s)


@pytest.mark.parametrize("rank,batch,axis", CASES)
@pytest.mark.parametrize("indices", [[2, 0, -1], 1, [[0, 1], [1, 0]]], ids=["list", "scalar", "matrix"])
@pytest.mark.parametrize("qdq", [False, True], ids=["float", "int8"])
def test_gather_every_axis(tmp_path, rank, batch, axis, indices, qdq):
    s = SHAPES[(rank, batch)]
    idx = np.asarray(indices, np.int64)
    idx = np.where(idx >= 0, np.minimum(idx, s[axis] - 1), idx)
    if rank + idx.ndim - 1 > 6:
        pytest.skip("beyond 6-D")
    body = [oh.make_node("Gather", ["a", "i"], ["y"], axis=axis)]
    check(make(tmp_path, s, body, ["y"], [const("i", idx)], qdq=qdq), s)


# -- Transpose / Expand / reshapes / depth and space ----------------------------------------------------------
@pytest.mark.parametrize("rank,batch,perm", [(r, b, p) for (r, b) in SHAPES for p in itertools.permutations(range(r))])
def test_transpose_every_permutation(tmp_path, rank, batch, perm):
    s = SHAPES[(rank, batch)]
    body = [oh.make_node("Transpose", ["a"], ["t"], perm=list(perm)), oh.make_node("Relu", ["t"], ["y"])]
    check(make(tmp_path, s, body, ["y"]), s, n=4)


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("qdq", [False, True], ids=["float", "int8"])
def test_expand(tmp_path, batch, qdq):
    for k, (s, to) in enumerate([((batch, 1, 6), (batch, 4, 6)), ((batch, 4, 1, 5), (batch, 4, 6, 5)),
                                 ((batch, 6), (3, batch, 6)), ((batch, 4, 1), (batch, 4, 5))]):
        body = [oh.make_node("Expand", ["a", "shape"], ["y"])]
        check(make(tmp_path, s, body, ["y"], [const("shape", np.array(to, np.int64))], qdq=qdq, name=f"m{k}.onnx"), s)


@pytest.mark.parametrize("rank,batch,axis", CASES + [(r, b, r) for (r, b) in SHAPES])
def test_flatten_unsqueeze_squeeze_every_axis(tmp_path, rank, batch, axis):
    s = SHAPES[(rank, batch)]
    body = [oh.make_node("Flatten", ["a"], ["f"], axis=axis), oh.make_node("Relu", ["f"], ["y0"]),
            oh.make_node("Unsqueeze", ["a", "ax"], ["u"]), oh.make_node("Relu", ["u"], ["u1"]),
            oh.make_node("Squeeze", ["u1", "ax"], ["y1"]),
            oh.make_node("Reshape", ["a", "shape"], ["y2"])]
    inits = [const("ax", np.array([axis], np.int64)), const("shape", np.array([s[0], 1, -1], np.int64))]
    check(make(tmp_path, s, body, ["y0", "y1", "y2"], inits), s)


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("op,mode", [("DepthToSpace", "DCR"), ("DepthToSpace", "CRD"), ("SpaceToDepth", None)])
@pytest.mark.parametrize("qdq", [False, True], ids=["float", "int8"])
def test_depth_to_space_and_space_to_depth(tmp_path, batch, op, mode, qdq):
    s = (batch, 8, 3, 4) if op == "DepthToSpace" else (batch, 2, 6, 4)
    kw = {"blocksize": 2} | ({"mode": mode} if mode else {})
    body = [oh.make_node(op, ["a"], ["y"], **kw)]
    g = check(make(tmp_path, s, body, ["y"], qdq=qdq), s)
    assert [n.op for n in g.nodes].count("transpose") == 1  # one copy: the block axes move


# -- Resize / Upsample --------------------------------------------------------------------------------------------
COORD = ["half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric", "tf_half_pixel_for_nn"]
NEAREST = ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"]
SIZES = [((3, 4), (6, 8)), ((5, 7), (3, 4)), ((4, 4), (7, 9)), ((1, 5), (3, 10))]


def _resize(tmp_path, size, qdq, by_sizes=True, **kw):
    (h, w), (oh_, ow) = size
    s = (2, 3, h, w)
    if by_sizes:
        inits, ins = [const("sizes", np.array([2, 3, oh_, ow], np.int64))], ["a", "", "", "sizes"]
    else:
        inits, ins = [const("scales", np.array([1, 1, oh_ / h, ow / w], np.float32))], ["a", "", "scales"]
    return make(tmp_path, s, [oh.make_node("Resize", ins, ["y"], **kw)], ["y"], inits, qdq=qdq), s


@pytest.mark.parametrize("size", SIZES, ids=lambda v: f"{v[0][0]}x{v[0][1]}to{v[1][0]}x{v[1][1]}")
@pytest.mark.parametrize("coord", COORD)
@pytest.mark.parametrize("rule", NEAREST)
@pytest.mark.parametrize("qdq", [False, True], ids=["float", "int8"])
def test_resize_nearest(tmp_path, size, coord, rule, qdq):
    path, s = _resize(tmp_path, size, qdq, mode="nearest", coordinate_transformation_mode=coord, nearest_mode=rule)
    check(path, s)


@pytest.mark.parametrize("size", SIZES, ids=lambda v: f"{v[0][0]}x{v[0][1]}to{v[1][0]}x{v[1][1]}")
@pytest.mark.parametrize("coord", COORD[:4])
@pytest.mark.parametrize("qdq", [False, True], ids=["float", "int8"])
@pytest.mark.parametrize("by_sizes", [True, False], ids=["sizes", "scales"])
def test_resize_linear(tmp_path, size, coord, qdq, by_sizes):
    path, s = _resize(tmp_path, size, qdq, by_sizes, mode="linear", coordinate_transformation_mode=coord)
    check(path, s, exact=False)


@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_upsample_opset9(tmp_path, mode):
    s = (1, 2, 3, 4)
    body = [oh.make_node("Upsample", ["a", "scales"], ["y"], mode=mode)]
    check(make(tmp_path, s, body, ["y"], [const("scales", np.array([1, 1, 2, 3], np.float32))], opset=9), s)


@pytest.mark.parametrize("mode", ["nearest", "linear"])
@pytest.mark.parametrize("qdq", [False, True], ids=["float", "int8"])
def test_resize_opset10_axes_and_half_pixel_symmetric(tmp_path, mode, qdq):
    """Resize-10 (scales as the second input, asymmetric, truncating nearest); opset 18's ``axes``
    (scales for H and W only); opset 19's half_pixel_symmetric (scales whose output sizes are not
    whole: the symmetric shift is not 0), refused for nearest."""
    s = (2, 3, 5, 7)
    for k, (opset, ins, inits, kw) in enumerate([
            (10, ["a", "scales"], [const("scales", np.array([1, 1, 1.5, 0.5], np.float32))], {}),
            (18, ["a", "", "scales"], [const("scales", np.array([2, 1.5], np.float32))], {"axes": [2, 3]}),
            (19, ["a", "", "scales"], [const("scales", np.array([1, 1, 1.5, 0.6], np.float32))],  # 7.5, 4.2
             {"coordinate_transformation_mode": "half_pixel_symmetric"})]):
        body = [oh.make_node("Resize", ins, ["y"], mode=mode, **kw)]
        path = make(tmp_path, s, body, ["y"], inits, qdq=qdq, opset=opset, name=f"m{k}.onnx")
        if opset == 19 and mode == "nearest":  # ORT's pixels differ from its formula: refused
            with pytest.raises(UnsupportedError, match="half_pixel_symmetric"):
                from_onnx(path)
            continue
        check(path, s, exact=mode == "nearest")


@pytest.mark.parametrize("qdq", [False, True], ids=["float", "int8"])
def test_resize_to_another_scale_requantizes(tmp_path, qdq):
    """The QDQ output in its own scale: the int8 resize, then one requantization (within 1 LSB)."""
    s = (1, 3, 4, 5)
    body = [oh.make_node("Resize", ["a", "", "scales"], ["y"], mode="linear")]
    path = make(tmp_path, s, body, ["y"], [const("scales", np.array([1, 1, 2, 2], np.float32))], qdq=qdq,
                out_scale=0.021)
    check(path, s, exact=False)


def test_refusals_name_the_op(tmp_path):
    s = (1, 3, 4, 5)
    body = [oh.make_node("Resize", ["a", "", "scales"], ["y"], mode="cubic")]
    with pytest.raises(UnsupportedError, match="mode 'cubic'"):
        from_onnx(make(tmp_path, s, body, ["y"], [const("scales", np.array([1, 1, 2, 2], np.float32))]))
    body = [oh.make_node("Pad", ["a", "pads"], ["y"], mode="reflect")]
    with pytest.raises(UnsupportedError, match="reflect padding"):
        from_onnx(make(tmp_path, s, body, ["y"], [const("pads", np.array([0, 0, 4, 0, 0, 0, 0, 0], np.int64))]))
    body = [oh.make_node("Pad", ["a", "pads"], ["y"], mode="wrap")]
    with pytest.raises(UnsupportedError, match="Pad mode 'wrap'"):
        from_onnx(make(tmp_path, s, body, ["y"], [const("pads", np.array([0, 0, 1, 0, 0, 0, 0, 0], np.int64))], opset=19))
    body = [oh.make_node("Resize", ["a", "", "scales"], ["y"], mode="nearest")]
    with pytest.raises(UnsupportedError, match="batch or channel axis"):
        from_onnx(make(tmp_path, s, body, ["y"], [const("scales", np.array([1, 2, 1, 1], np.float32))]))


def test_constant_subgraph_too_big_refused_before_computing(tmp_path):
    """A constant subgraph asking for more elements than any microcontroller tensor (a shape that
    shape inference does not see) is refused before onnx.reference allocates it."""
    s = (1, 4)
    body = [oh.make_node("Add", ["shp0", "z"], ["shp"]), oh.make_node("ConstantOfShape", ["shp"], ["big"]),
            oh.make_node("Add", ["a", "big"], ["y"])]
    inits = [const("shp0", np.array([50_000_000], np.int64)), const("z", np.array([0], np.int64))]
    with pytest.raises(ModelError, match="ConstantOfShape on constants would make 50,000,000 elements"):
        from_onnx(make(tmp_path, s, body, ["y"], inits))


# -- chains through the C backend ------------------------------------------------------------------------------
def run_c(g, x, tmp):
    """The host C build of ``g`` on the rows of ``x`` (whole model invocations): its output, flat."""
    import subprocess

    from c_harness import build

    from edgecomp import ir
    from edgecomp.backends.c import generate
    from edgecomp.options import CodegenOptions
    info = generate(g, tmp, options=CodegenOptions())
    exe = build(tmp, sources=[f for f in info.files if f.endswith(".c")])
    r = subprocess.run([str(exe)], input=np.ascontiguousarray(x).tobytes(), capture_output=True, check=True)
    return np.frombuffer(r.stdout, dtype=ir.np_dtype(g.tensors[g.outputs[0]].dtype))


def chain(tmp_path, batch, axis, qdq):
    """Pad (reflect), Slice (negative step), Transpose, Split, Concat, Gather, Resize (linear and
    nearest), DepthToSpace, Expand and Flatten, each along ``axis`` where it has one."""
    s = (batch, 4, 6, 5)
    pads = [0] * 8
    pads[axis], pads[4 + axis] = (1, 2) if s[axis] > 2 else (0, 1)
    mode = "reflect" if s[axis] > 2 else "edge"
    p = tuple(d + pads[i] + pads[4 + i] for i, d in enumerate(s))
    n_sl = len(range(p[axis] - 1, -1, -2)) if p[axis] > 1 else 1
    sl = tuple(n_sl if i == axis else d for i, d in enumerate(p))
    perm = (0, 2, 3, 1) if axis else (1, 0, 2, 3)
    t = tuple(sl[q] for q in perm)
    ax2 = perm.index(axis)
    body = [oh.make_node("Pad", ["a", "pads"], ["p"], mode=mode),
            oh.make_node("Slice", ["p", "b", "e", "ax", "st"], ["sl"]),
            oh.make_node("Transpose", ["sl"], ["t"], perm=list(perm)),
            oh.make_node("Split", ["t", "sizes"], ["s0", "s1"], axis=ax2),
            oh.make_node("Concat", ["s1", "s0"], ["c"], axis=ax2),
            oh.make_node("Gather", ["c", "idx"], ["g"], axis=ax2),
            oh.make_node("Resize", ["g", "", "scales"], ["r"], mode="linear"),
            oh.make_node("Resize", ["r", "", "scales2"], ["r2"], mode="nearest", nearest_mode="floor",
                         coordinate_transformation_mode="asymmetric"),
            oh.make_node("DepthToSpace", ["r2", ], ["d"], blocksize=1),
            oh.make_node("Flatten", ["d"], ["y"], axis=1)]
    first = 1 if t[ax2] > 1 else 0
    inits = [const("pads", np.array(pads, np.int64))] + \
        [const(k, np.array([v], np.int64)) for k, v in (("b", -1), ("e", -BIG), ("ax", axis), ("st", -2 if p[axis] > 1 else 1))] + \
        [const("sizes", np.array([first, t[ax2] - first] if first else [t[ax2], 0], np.int64)),
         const("idx", np.array([0, t[ax2] - 1, 0], np.int64)),
         const("scales", np.array([1, 1, 2, 1.5], np.float32)), const("scales2", np.array([1, 1, 0.5, 2], np.float32))]
    if not first:
        body[3] = oh.make_node("Split", ["t", "sizes1"], ["s0"], axis=ax2)
        body[4] = oh.make_node("Concat", ["s0", "s0"], ["c"], axis=ax2)
        inits.append(const("sizes1", np.array([t[ax2]], np.int64)))
    return make(tmp_path, s, body, ["y"], inits, qdq=qdq), s


@pytest.mark.toolchain
@pytest.mark.parametrize("batch,axis", [(1, 1), (1, 2), (1, 3), (2, 0), (2, 2)])
@pytest.mark.parametrize("qdq", [False, True], ids=["float", "int8"])
def test_chains_host_c_equal_interpreter_and_onnxruntime(tmp_path, batch, axis, qdq):
    path, s = chain(tmp_path, batch, axis, qdq)
    g = check(path, s, n=2 * batch, exact=False)
    assert {"pad", "slice", "split", "concat", "gather", "resize"} <= {n.op for n in g.nodes}
    x = api.quantize_input(np.random.default_rng(5).standard_normal((2 * batch,) + s[1:]).astype(np.float32), io_of(g))
    want = interp.run(g, x)[g.outputs[0]]
    got = run_c(g, x, tmp_path / "c")
    if want.dtype == np.float32:
        np.testing.assert_allclose(got.reshape(want.shape), want, rtol=1e-5, atol=1e-5)
    else:
        np.testing.assert_array_equal(got.reshape(want.shape), want)


class Decoder:
    """A PyTorch decoder-style block: reflect padding, pixel shuffle (DepthToSpace), nearest and
    bilinear interpolation, a channel split and concat, a channel shuffle."""

    @staticmethod
    def make():
        import torch
        import torch.nn as nn
        import torch.nn.functional as F

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.a = nn.Conv2d(3, 16, 3, padding=1)
                self.b = nn.Conv2d(4, 8, 3)
                self.c = nn.Conv2d(16, 8, 1)

            def forward(self, x):
                y = torch.relu(self.a(x))                                  # 16 x 8 x 8
                s = F.pixel_shuffle(y, 2)                                  # 4 x 16 x 16
                s = self.b(F.pad(s, (1, 1, 1, 1), mode="reflect"))          # 8 x 16 x 16
                u = F.interpolate(y, scale_factor=2, mode="nearest")       # 16 x 16 x 16
                v = F.interpolate(self.c(y), scale_factor=2, mode="bilinear", align_corners=False)
                p, q = torch.split(u, [6, 10], dim=1)
                z = torch.cat([s, q, v, p], 1)                             # 32 x 16 x 16
                n, ch, h, w = z.shape
                return z.reshape(n, 2, ch // 2, h, w).transpose(1, 2).reshape(n, ch, h, w)

        return Net().eval()


def test_shufflenet_v2_units_from_pytorch(tmp_path):
    """Two ShuffleNetV2 units as PyTorch exports them (chunk and the shuffle's reshape sizes computed
    with Shape -> Gather -> Div: folded at import) within 1e-5 of ONNX Runtime.  The copies the
    layout model leaves, per unit of a 24 x 8 x 8 map (1,536 elements): the two channel halves
    (768 each), the concat (1,536) and the shuffle's transpose (1,536): 3x the map."""
    import torch
    import torch.nn as nn

    from edgecomp.frontends.torch import export_onnx

    class Unit(nn.Module):
        def __init__(self, c=24):
            super().__init__()
            h = c // 2
            self.b = nn.Sequential(nn.Conv2d(h, h, 1), nn.ReLU(), nn.Conv2d(h, h, 3, padding=1, groups=h),
                                   nn.Conv2d(h, h, 1), nn.ReLU())

        def forward(self, x):
            a, b = x.chunk(2, dim=1)
            z = torch.cat([a, self.b(b)], 1)
            n, c, h, w = z.shape
            return z.reshape(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)

    torch.manual_seed(0)
    s = (1, 24, 8, 8)
    path = export_onnx(nn.Sequential(Unit(), Unit()).eval(), torch.zeros(s), tmp_path / "shuffle.onnx")
    g = check(path, s, n=3)
    copied = sum(int(np.prod(g.tensors[n.outputs[0]].shape)) for n in g.nodes
                 if n.op in ("transpose", "slice", "concat"))
    assert copied == 2 * 3 * 24 * 8 * 8


@pytest.mark.toolchain
@pytest.mark.slow
def test_decoder_quantized_by_onnxruntime_host_c_within_one_lsb(tmp_path):
    import torch

    from edgecomp.compress.quantize import quantize_onnx
    from edgecomp.frontends.torch import export_onnx
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    calib = rng.standard_normal((32, 3, 8, 8)).astype(np.float32)
    path = export_onnx(Decoder.make(), torch.from_numpy(calib[:1]), tmp_path / "f.onnx")
    q = quantize_onnx(path, calib, tmp_path / "q.onnx", progress=False)
    g = from_onnx(q)
    assert all(t.dtype == "int8" for t in g.activations())  # no float island (requantizations before the concat)
    assert {"pad", "resize", "split"} <= {n.op for n in g.nodes}
    assert [n.op for n in g.nodes].count("transpose") == 2  # DepthToSpace's block move (into NHWC), the shuffle
    man = api.compile_model(q, "host", tmp_path / "b")
    x = rng.standard_normal((6, 3, 8, 8)).astype(np.float32)
    got = api.run_bundle(tmp_path / "b", x, emulate=False).outputs
    qs = man["outputs"][0]["quantization"]
    sess = reference_session(q)
    want = np.concatenate([sess.run(None, {"input": x[i:i + 1]})[0] for i in range(len(x))])
    ref = np.rint(want / np.float32(qs["scale"][0])).astype(np.int32) + qs["zero_point"][0]
    assert np.abs(got.reshape(ref.shape).astype(np.int32) - ref).max() <= 1


@pytest.mark.qemu
@pytest.mark.skipif(not (shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm")),
                    reason="needs arm-none-eabi-gcc and qemu-system-arm")
def test_int8_chain_on_cortex_m4_under_qemu_equals_host(tmp_path):
    path, s = chain(tmp_path, 1, 2, True)
    x = np.random.default_rng(9).standard_normal((3,) + s[1:]).astype(np.float32)
    api.compile_model(path, "cortex-m4", tmp_path / "m4")
    api.compile_model(path, "host", tmp_path / "host")
    got = api.run_bundle(tmp_path / "m4", x, progress=False).outputs
    want = api.run_bundle(tmp_path / "host", x, emulate=False).outputs
    np.testing.assert_array_equal(got, want)
    g = check(path, s, n=3, exact=False)
    ref = interp.run(g, api.quantize_input(x, io_of(g)))[g.outputs[0]]
    np.testing.assert_array_equal(np.asarray(got).reshape(ref.shape), ref)
