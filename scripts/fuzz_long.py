#!/usr/bin/env python3
"""Fuzz edgecomp's handling of untrusted input: ONNX, TFLite, probe lines, the CLI, calibration,
bundles handed back, names in generated text, hostile paths (the last four: scripts/fuzz_hostile.py).

    python scripts/fuzz_long.py 30                 # 30 minutes over every target
    python scripts/fuzz_long.py 5 --target onnx    # one target
    python scripts/fuzz_long.py 20 --target calib  # --calib on generated models, time and memory limits asserted
    python scripts/fuzz_long.py 0.5 --rlimit-as-mb 3000 --seed 1

Every case must end in a result or an :class:`edgecomp.errors.EdgecompError`
(the CLI: exit code 2 and one ``edgecomp: error:`` line, no bundle left).  Any
other exception, a case that runs longer than ``--case-seconds`` or an
allocation beyond ``--rlimit-as-mb`` (MemoryError) is a bug: the script prints
the reproducer (written to ``--crash-dir``) and exits 1.  It prints the number
of cases tried per target.

The same strategies drive the CI tests (tests/test_fuzz_*.py), which run a
small, derandomized budget of them; this script runs them for as long as you
like with fresh seeds.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import math
import os
import resource
import shutil
import signal
import struct
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from hypothesis import HealthCheck, given, settings, strategies as st

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from edgecomp.errors import EdgecompError  # noqa: E402

HUGE = [-1, -(2**62), 0, 2**31 - 1, 2**31, 2**32 + 1, 2**40, 2**62, 2**63 - 1]
HOSTILE_NAMES = ["*/", "/*", "a\"b", "x\\", "l1\nl2", "#include <stdio.h>", "??/", "caf\u00e9", "", " ",
                 "int", "../../etc/passwd", "a" * 5000, "\x00", "%n%s"]
EXTERNAL_LOCATIONS = ["../evil.bin", "/etc/passwd", "sub/../../evil.bin", "..", ".", "", "sub/", "a\x00b",
                      "link_out", "link_dir/evil.bin", "w.bin", "//etc/passwd", "\\..\\evil.bin",
                      "sub/../w.bin", "x" * 4096]


class CaseTimeout(BaseException):
    """Raised by the per-case alarm.  A BaseException, so no ``except Exception`` can hide a hang."""


@contextlib.contextmanager
def time_limit(seconds: float):
    def on_alarm(signum, frame):
        raise CaseTimeout(f"case ran longer than {seconds} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


# --------------------------------------------------------------------------- seed models
def _init(name, arr):
    return numpy_helper.from_array(np.asarray(arr), name)


def seed_conv_net() -> onnx.ModelProto:
    """Conv -> Relu -> MaxPool -> Flatten -> Gemm -> Softmax, NCHW 1x3x8x8."""
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1], strides=[1, 1],
                         kernel_shape=[3, 3]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("MaxPool", ["r1"], ["p1"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["p1"], ["f1"], name="flat", axis=1),
        helper.make_node("Gemm", ["f1", "w2", "b2"], ["g1"], name="fc", transB=1),
        helper.make_node("Softmax", ["g1"], ["y"], name="softmax", axis=-1),
    ]
    inits = [_init("w1", rng.standard_normal((4, 3, 3, 3)).astype(np.float32)),
             _init("b1", rng.standard_normal(4).astype(np.float32)),
             _init("w2", rng.standard_normal((10, 64)).astype(np.float32)),
             _init("b2", rng.standard_normal(10).astype(np.float32))]
    g = helper.make_graph(nodes, "convnet", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], producer_name="fuzz")


def seed_branch_net() -> onnx.ModelProto:
    """Two convolutions, Add, Concat, depthwise conv, GlobalAveragePool, Reshape."""
    rng = np.random.default_rng(1)
    nodes = [
        helper.make_node("Conv", ["x", "wa"], ["a"], name="ca", pads=[0, 0, 0, 0]),
        helper.make_node("Conv", ["x", "wb", "bb"], ["b"], name="cb"),
        helper.make_node("Add", ["a", "b"], ["s"], name="add"),
        helper.make_node("Clip", ["s", "lo", "hi"], ["s6"], name="relu6"),
        helper.make_node("Conv", ["s6", "wd"], ["d"], name="dw", group=4, pads=[1, 1, 1, 1]),
        helper.make_node("Concat", ["s6", "d"], ["cat"], name="cat", axis=1),
        helper.make_node("GlobalAveragePool", ["cat"], ["gap"], name="gap"),
        helper.make_node("Reshape", ["gap", "shape"], ["y"], name="reshape"),
    ]
    inits = [_init("wa", rng.standard_normal((4, 2, 1, 1)).astype(np.float32)),
             _init("wb", rng.standard_normal((4, 2, 1, 1)).astype(np.float32)),
             _init("bb", rng.standard_normal(4).astype(np.float32)),
             _init("wd", rng.standard_normal((4, 1, 3, 3)).astype(np.float32)),
             _init("lo", np.array(0.0, np.float32)), _init("hi", np.array(6.0, np.float32)),
             _init("shape", np.array([1, 8], np.int64))]
    g = helper.make_graph(nodes, "branchnet", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 5, 5])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], producer_name="fuzz")


def seed_qdq_net() -> onnx.ModelProto:
    """A hand-made QDQ int8 graph: Q -> DQ -> Conv(DQ weights) -> Q -> DQ -> Gemm -> Q -> DQ."""
    rng = np.random.default_rng(2)
    s = lambda v: np.array(v, np.float32)  # noqa: E731
    z = lambda v: np.array(v, np.int8)  # noqa: E731
    inits = [
        _init("xs", s(0.05)), _init("xz", z(0)),
        _init("wq", rng.integers(-127, 128, (4, 1, 3, 3)).astype(np.int8)), _init("ws", np.full(4, 0.02, np.float32)),
        _init("wz", np.zeros(4, np.int8)),
        _init("bq", rng.integers(-100, 100, 4).astype(np.int32)), _init("bs", np.full(4, 0.001, np.float32)),
        _init("bz", np.zeros(4, np.int32)),
        _init("cs", s(0.1)), _init("cz", z(-5)),
        _init("fq", rng.integers(-127, 128, (3, 64)).astype(np.int8)), _init("fs", s(0.03)), _init("fz", z(0)),
        _init("ys", s(0.2)), _init("yz", z(3)),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"], name="q_in"),
        helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"], name="dq_in"),
        helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["w"], name="dq_w", axis=0),
        helper.make_node("DequantizeLinear", ["bq", "bs", "bz"], ["b"], name="dq_b", axis=0),
        helper.make_node("Conv", ["xd", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("QuantizeLinear", ["r", "cs", "cz"], ["rq"], name="q_c"),
        helper.make_node("DequantizeLinear", ["rq", "cs", "cz"], ["rd"], name="dq_c"),
        helper.make_node("Flatten", ["rd"], ["f"], name="flat"),
        helper.make_node("QuantizeLinear", ["f", "cs", "cz"], ["fq8"], name="q_f"),
        helper.make_node("DequantizeLinear", ["fq8", "cs", "cz"], ["fd"], name="dq_f"),
        helper.make_node("DequantizeLinear", ["fq", "fs", "fz"], ["fw"], name="dq_fw"),
        helper.make_node("Gemm", ["fd", "fw"], ["g"], name="fc", transB=1),
        helper.make_node("QuantizeLinear", ["g", "ys", "yz"], ["yq"], name="q_y"),
        helper.make_node("DequantizeLinear", ["yq", "ys", "yz"], ["y"], name="dq_y"),
    ]
    g = helper.make_graph(nodes, "qdqnet", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], producer_name="fuzz")


SEEDS = {"conv": seed_conv_net, "branch": seed_branch_net, "qdq": seed_qdq_net}
_SEED_CACHE: dict[str, bytes] = {}


def seed_bytes(name: str) -> bytes:
    if name not in _SEED_CACHE:
        m = SEEDS[name]()
        onnx.checker.check_model(m)
        _SEED_CACHE[name] = m.SerializeToString()
    return _SEED_CACHE[name]


# --------------------------------------------------------------------------- ONNX mutations
def _tensor_types(m: onnx.ModelProto):
    return list(m.graph.input) + list(m.graph.output) + list(m.graph.value_info)


def mut_dim(m, draw):
    vis = [v for v in _tensor_types(m) if v.type.tensor_type.HasField("shape") and v.type.tensor_type.shape.dim]
    if not vis:
        return
    v = draw(st.sampled_from(vis))
    dims = v.type.tensor_type.shape.dim
    d = dims[draw(st.integers(0, len(dims) - 1))]
    kind = draw(st.integers(0, 3))
    if kind == 0:
        d.dim_value = draw(st.sampled_from(HUGE))
    elif kind == 1:
        d.dim_param = draw(st.sampled_from(["N", "", "*/", "batch"]))
    elif kind == 2:
        d.Clear()
    else:
        d.dim_value = draw(st.integers(-(2**63), 2**63 - 1))


def mut_add_dims(m, draw):
    vis = [v for v in _tensor_types(m) if v.type.tensor_type.HasField("shape")]
    if vis:
        v = draw(st.sampled_from(vis))
        for _ in range(draw(st.integers(1, 3))):
            v.type.tensor_type.shape.dim.add().dim_value = draw(st.sampled_from([1, 2, 2**20, 2**40]))


def mut_init_dims(m, draw):
    if not m.graph.initializer:
        return
    t = draw(st.sampled_from(list(m.graph.initializer)))
    if draw(st.booleans()) and t.dims:
        t.dims[draw(st.integers(0, len(t.dims) - 1))] = draw(st.sampled_from(HUGE))
    else:
        del t.dims[:]
        t.dims.extend(draw(st.lists(st.sampled_from([1, 3, 2**20, 2**40, 0, -1]), max_size=5)))


def mut_init_data(m, draw):
    if not m.graph.initializer:
        return
    t = draw(st.sampled_from(list(m.graph.initializer)))
    k = draw(st.integers(0, 4))
    if k == 0 and t.raw_data:
        t.raw_data = t.raw_data[: draw(st.integers(0, len(t.raw_data)))]
    elif k == 1:
        t.raw_data = t.raw_data + draw(st.binary(max_size=16))
    elif k == 2:
        t.data_type = draw(st.integers(0, 30))
    elif k == 3:  # typed field instead of raw bytes, wrong length
        t.ClearField("raw_data")
        t.float_data.extend([1.0] * draw(st.integers(0, 5)))
    else:
        t.data_type = draw(st.sampled_from([TensorProto.STRING, TensorProto.INT64, TensorProto.DOUBLE,
                                            TensorProto.UINT8, TensorProto.BFLOAT16, TensorProto.FLOAT16]))


def mut_elem_type(m, draw):
    vis = _tensor_types(m)
    if vis:
        v = draw(st.sampled_from(vis))
        v.type.tensor_type.elem_type = draw(st.integers(0, 30))


def mut_cycle(m, draw):
    nodes = m.graph.node
    if len(nodes) < 2:
        return
    i = draw(st.integers(0, len(nodes) - 2))
    j = draw(st.integers(i + 1, len(nodes) - 1))
    if nodes[i].input and nodes[j].output:
        nodes[i].input[0] = nodes[j].output[0]  # node i now reads what a later node writes
    if draw(st.booleans()) and nodes[j].input:
        nodes[j].input[0] = nodes[j].output[0]  # a self-loop


def mut_dangling(m, draw):
    nodes = list(m.graph.node)
    n = draw(st.sampled_from(nodes))
    where = draw(st.integers(0, 2))
    name = draw(st.sampled_from(["nonexistent", "", "x ", "y"] + HOSTILE_NAMES))
    if where == 0 and n.input:
        n.input[draw(st.integers(0, len(n.input) - 1))] = name
    elif where == 1 and n.output:
        n.output[0] = name
    else:
        m.graph.output[0].name = name


def mut_external(m, draw, folder: Path | None = None):
    if not m.graph.initializer:
        return
    t = draw(st.sampled_from(list(m.graph.initializer)))
    loc = draw(st.sampled_from(EXTERNAL_LOCATIONS))
    t.ClearField("raw_data")
    del t.float_data[:]
    t.data_location = TensorProto.EXTERNAL
    del t.external_data[:]
    e = t.external_data.add()
    e.key, e.value = "location", loc
    if draw(st.booleans()):
        e = t.external_data.add()
        e.key, e.value = "offset", str(draw(st.sampled_from([0, 4, -1, 2**40, 2**63])))
    if draw(st.booleans()):
        e = t.external_data.add()
        e.key, e.value = "length", str(draw(st.sampled_from([0, 4, 16, 2**40, -5])))


def mut_attr(m, draw):
    nodes = [n for n in m.graph.node if n.attribute]
    if not nodes:
        return
    n = draw(st.sampled_from(nodes))
    a = draw(st.sampled_from(list(n.attribute)))
    k = draw(st.integers(0, 4))
    if k == 0 and a.ints:
        a.ints[draw(st.integers(0, len(a.ints) - 1))] = draw(st.sampled_from(HUGE + [0, -3, 1000]))
    elif k == 1:
        del a.ints[:]
        a.ints.extend(draw(st.lists(st.sampled_from([0, 1, 2, -1, 2**40]), max_size=6)))
    elif k == 2:
        a.f = draw(st.sampled_from([math.nan, math.inf, -math.inf, 0.0, 1e38]))
    elif k == 3:
        a.i = draw(st.sampled_from(HUGE + [0, 5]))
    else:
        a.type = draw(st.integers(0, 14))


def mut_add_attr(m, draw):
    n = draw(st.sampled_from(list(m.graph.node)))
    name = draw(st.sampled_from(["group", "strides", "pads", "dilations", "kernel_shape", "auto_pad", "axis",
                                 "transA", "transB", "alpha", "beta", "ceil_mode", "count_include_pad",
                                 "epsilon", "value", "min", "max"]))
    for a in list(n.attribute):
        if a.name == name:
            n.attribute.remove(a)
    val = draw(st.sampled_from([0, 1, -1, 2**40, [0, 0], [1, 1, 1, 1], [2**40, 1], [-1, -1, -1, -1],
                                b"SAME_UPPER", b"VALID", b"*/", 0.0, math.nan]))
    n.attribute.append(helper.make_attribute(name, val))


def mut_op(m, draw):
    n = draw(st.sampled_from(list(m.graph.node)))
    k = draw(st.integers(0, 2))
    if k == 0:
        n.op_type = draw(st.sampled_from(["Conv", "Gemm", "MatMul", "Relu", "Clip", "MaxPool", "AveragePool",
                                          "GlobalAveragePool", "Add", "Flatten", "Reshape", "Softmax", "Concat",
                                          "BatchNormalization", "QuantizeLinear", "DequantizeLinear", "Identity",
                                          "Dropout", "Constant", "Squeeze", "Unsqueeze", "Loop", "If", "Scan",
                                          "Mul", "", "FooBar"]))
    elif k == 1:
        n.domain = draw(st.sampled_from(["com.microsoft", "ai.onnx.ml", "evil", "ai.onnx"]))
    else:
        del n.input[draw(st.integers(0, len(n.input))):]


def mut_opset(m, draw):
    del m.opset_import[:]
    for _ in range(draw(st.integers(0, 2))):
        m.opset_import.add(domain=draw(st.sampled_from(["", "ai.onnx", "x"])),
                           version=draw(st.sampled_from([0, 1, 7, 13, 21, 10**6, -1])))
    m.ir_version = draw(st.sampled_from([m.ir_version, 0, 1, 3, 99, -1]))


def mut_duplicate(m, draw):
    nodes = m.graph.node
    k = draw(st.integers(0, 2))
    if k == 0:
        n = draw(st.sampled_from(list(nodes)))
        nodes.append(n)  # same node (and output) twice
    elif k == 1 and len(nodes) > 1:
        nodes[-1].output[0] = nodes[0].output[0]
    else:
        m.graph.input.append(m.graph.input[0])


def mut_names(m, draw):
    for n in m.graph.node:
        if draw(st.booleans()):
            n.name = draw(st.sampled_from(HOSTILE_NAMES))
    if draw(st.booleans()):
        m.graph.name = draw(st.sampled_from(HOSTILE_NAMES))
    if draw(st.booleans()):
        m.doc_string = draw(st.sampled_from(HOSTILE_NAMES))


def mut_constant_node(m, draw):
    """A Constant node with a huge or broken value feeding the first node."""
    dims = draw(st.lists(st.sampled_from([1, 4, 2**20, 2**40]), min_size=0, max_size=3))
    t = TensorProto(name="cval", data_type=TensorProto.FLOAT, dims=dims)
    t.raw_data = b"\x00" * draw(st.sampled_from([0, 4, 16]))
    node = helper.make_node("Constant", [], ["cval"], name="const")
    node.attribute.append(helper.make_attribute("value", t))
    m.graph.node.insert(0, node)
    tgt = draw(st.sampled_from(list(m.graph.node)[1:]))
    if tgt.input:
        tgt.input[-1] = "cval"


def mut_delete(m, draw):
    k = draw(st.integers(0, 3))
    if k == 0 and len(m.graph.node) > 1:
        del m.graph.node[draw(st.integers(0, len(m.graph.node) - 1))]
    elif k == 1 and m.graph.initializer:
        del m.graph.initializer[draw(st.integers(0, len(m.graph.initializer) - 1))]
    elif k == 2:
        del m.graph.input[:]
    else:
        del m.graph.output[:]


def mut_subgraph(m, draw):
    """A graph attribute (as If/Loop carry) on an ordinary node: deep nesting."""
    n = draw(st.sampled_from(list(m.graph.node)))
    inner = onnx.GraphProto(name="inner")
    for _ in range(draw(st.integers(1, 30))):  # protobuf itself stops at depth 100
        outer = onnx.GraphProto(name="g")
        nd = outer.node.add(op_type="If", name="if")
        nd.attribute.append(helper.make_attribute("then_branch", inner))
        inner = outer
    n.attribute.append(helper.make_attribute("then_branch", inner))


MUTATORS = [mut_dim, mut_add_dims, mut_init_dims, mut_init_data, mut_elem_type, mut_cycle, mut_dangling,
            mut_external, mut_attr, mut_add_attr, mut_op, mut_opset, mut_duplicate, mut_names,
            mut_constant_node, mut_delete, mut_subgraph]


def _byte_mutation(data: bytes, draw) -> bytes:
    k = draw(st.integers(0, 4))
    if k == 0:  # truncate
        return data[: draw(st.integers(0, len(data) - 1))]
    if k == 1:  # flip bytes
        b = bytearray(data)
        for _ in range(draw(st.integers(1, 16))):
            i = draw(st.integers(0, len(b) - 1))
            b[i] = draw(st.integers(0, 255))
        return bytes(b)
    if k == 2:  # insert bytes (varints that claim huge lengths)
        i = draw(st.integers(0, len(data)))
        ins = draw(st.sampled_from([b"\xff\xff\xff\xff\x0f", b"\x80" * 10, b"\x0a\xff\xff\xff\xff\x07", b"\x00"]))
        return data[:i] + ins + data[i:]
    if k == 3:  # random bytes
        return draw(st.binary(min_size=0, max_size=512))
    # field tag soup: valid-looking protobuf keys with lengths
    return draw(st.binary(min_size=1, max_size=8)) + data[draw(st.integers(0, len(data) - 1)):]


def _setup_folder(folder: Path) -> None:
    """Things an external-data path may try to reach: a file outside, symlinks pointing out."""
    (folder / "sub").mkdir(exist_ok=True)
    (folder / "w.bin").write_bytes(b"\x00" * 64)
    evil = folder.parent / "evil.bin"
    evil.write_bytes(b"\x00" * 1024)
    for name, target in (("link_out", evil), ("link_dir", folder.parent)):
        p = folder / name
        if not p.is_symlink():
            os.symlink(target, p)


@st.composite
def onnx_cases(draw):
    """(description, model bytes) of a broken or hostile ONNX file."""
    seed = draw(st.sampled_from(sorted(SEEDS)))
    data = seed_bytes(seed)
    if draw(st.integers(0, 3)) == 0:
        return f"{seed}: bytes", _byte_mutation(data, draw)
    m = onnx.ModelProto()
    m.ParseFromString(data)
    muts = draw(st.lists(st.sampled_from(MUTATORS), min_size=1, max_size=3))
    for f in muts:
        try:
            f(m, draw)
        except Exception:  # protobuf refused to build it (too deep, bad UTF-8): no file could hold it
            pass
    try:
        out = m.SerializeToString()
    except Exception:  # e.g. invalid UTF-8 in a string field: protobuf refuses; so would a writer
        out = data
    return f"{seed}: " + "+".join(f.__name__ for f in muts), out


# --------------------------------------------------------------------------- targets
class Stats:
    def __init__(self):
        self.cases: dict[str, int] = {}
        self.accepted: dict[str, int] = {}

    def add(self, target: str, accepted: bool):
        self.cases[target] = self.cases.get(target, 0) + 1
        if accepted:
            self.accepted[target] = self.accepted.get(target, 0) + 1

    def line(self) -> str:
        return ", ".join(f"{t}: {n} cases ({self.accepted.get(t, 0)} accepted)" for t, n in sorted(self.cases.items()))


STATS = Stats()


def check_onnx(path: Path, seconds: float = 20.0) -> bool:
    """from_onnx on one file: True if accepted, False if refused with an EdgecompError; else raises."""
    from edgecomp.frontends.onnx import from_onnx

    try:
        with time_limit(seconds):
            from_onnx(path)
    except EdgecompError as e:
        assert e.message().strip(), "an EdgecompError without a message"
        STATS.add("onnx", False)
        return False
    STATS.add("onnx", True)
    return True


def check_cli_compile(path: Path, out: Path, seconds: float = 30.0) -> tuple[int, str]:
    """`edgecomp compile` (in process, through cli.main) on a file from_onnx refuses: exit 2, one line, no bundle."""
    from edgecomp import cli

    err = io.StringIO()
    with time_limit(seconds), contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = cli.main(["compile", str(path), "--target", "host", "--precision", "float32", "-o", str(out)])
    msg = err.getvalue()
    STATS.add("cli", False)
    assert rc == 2, f"exit code {rc}: {msg}"
    assert msg.startswith("edgecomp: error:") and len(msg.strip().splitlines()) == 1, msg
    assert "Traceback" not in msg and "internal error" not in msg, msg
    assert not out.exists(), "a bundle was left behind"
    leftovers = [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]
    assert not leftovers, f"temporary folders left behind: {leftovers}"
    return rc, msg


def check_cli_accepted(path: Path, out: Path, seconds: float = 120.0) -> int:
    """`edgecomp compile --target host` on a file the importer accepted: a bundle (exit 0) or one
    clear message (exit 2, e.g. unsupported or does not fit), never an internal error."""
    from edgecomp import cli

    err = io.StringIO()
    with time_limit(seconds), contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = cli.main(["compile", str(path), "--target", "host", "--precision", "float32", "-o", str(out)])
    msg = err.getvalue()
    STATS.add("compile", rc == 0)
    assert rc in (0, 2), f"exit code {rc}: {msg}"
    if rc == 2:
        assert msg.startswith("edgecomp: error:") and len(msg.strip().splitlines()) == 1, msg
    else:
        from edgecomp.bundle import verify_manifest
        assert verify_manifest(out) == []
    return rc


def check_tflite(path: Path, seconds: float = 20.0) -> bool:
    from edgecomp.frontends.tflite import load_tflite

    try:
        with time_limit(seconds):
            load_tflite(path)
    except EdgecompError as e:
        assert e.message().strip()
        STATS.add("tflite", False)
        return False
    STATS.add("tflite", True)
    return True


def check_probe(text, seconds: float = 5.0) -> bool:
    from edgecomp.probe import parse_probe

    try:
        with time_limit(seconds):
            rep = parse_probe(text)
    except EdgecompError:
        STATS.add("probe", False)
        return False
    assert rep.layers is None or rep.layers >= 0
    assert all(isinstance(v, int) and v >= 0 for v in rep.layer_ticks.values())
    assert rep.layers is None or all(0 <= i < rep.layers for i in rep.layer_ticks)
    assert rep.unit is None or rep.unit in ("cycles", "systick", "instructions", "ns")
    rep.to_json()
    from edgecomp.probe import layer_table
    with time_limit(seconds):
        table = layer_table(None, rep)  # what `edgecomp run/probe` prints from it
        table.render()
        table.to_json()
    STATS.add("probe", True)
    return True


# --------------------------------------------------------------------------- TFLite mutations
def seed_tflite_files() -> list[Path]:
    """Small real .tflite models (int8 and float) from the repository or the shared benchmarks."""
    out: list[Path] = []
    for base in (ROOT / "tests" / "data", ROOT / "examples", ROOT.parent / "shared" / "benchmarks"):
        if base.is_dir():
            out += [f for f in base.rglob("*.tflite") if f.stat().st_size < 120_000]
    return sorted(out, key=lambda p: (p.stat().st_size, p.name))[:3]


_TFLITE_CACHE: dict[str, bytes] = {}


def seed_tflite_bytes() -> list[bytes]:
    if "seeds" not in _TFLITE_CACHE:
        _TFLITE_CACHE.update({str(p): p.read_bytes() for p in seed_tflite_files()})
        _TFLITE_CACHE["seeds"] = b""
    return [v for k, v in sorted(_TFLITE_CACHE.items()) if k != "seeds"]


@st.composite
def tflite_cases(draw, seeds: list[bytes]):
    seed = draw(st.sampled_from(seeds)) if seeds else None
    if seed is None or draw(st.integers(0, 4)) == 0:
        head = draw(st.sampled_from([b"", b"\x00\x00\x00\x00TFL3", b"\x1c\x00\x00\x00TFL3", b"\x10\x00\x00\x00XXXX",
                                     b"\xff\xff\xff\x7fTFL3", b"\x04\x00\x00\x00TFL3"]))
        return "synthetic", head + draw(st.binary(max_size=256))
    k = draw(st.integers(0, 4))
    b = bytearray(seed)
    if k == 0:
        return "truncated", bytes(b[: draw(st.integers(0, len(b) - 1))])
    if k == 1:
        b[4:8] = draw(st.sampled_from([b"TFL2", b"XXXX", b"\x00\x00\x00\x00", b"ONNX"]))
        return "identifier", bytes(b)
    if k == 2:  # flip bytes, biased to the header/tables at the start
        for _ in range(draw(st.integers(1, 12))):
            i = draw(st.integers(0, min(len(b) - 1, draw(st.sampled_from([64, 512, len(b) - 1])))))
            b[i] = draw(st.integers(0, 255))
        return "flip", bytes(b)
    # overwrite a 32-bit word (an offset or a vector length) with a hostile value
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, (len(b) - 4) // 4)) * 4
        b[i:i + 4] = struct.pack("<I", draw(st.sampled_from([0, 1, 0x7FFFFFFF, 0xFFFFFFFF, 0x80000000,
                                                             len(b), len(b) - 2, 0x10000000])))
    return "word", bytes(b)


# --------------------------------------------------------------------------- probe text
_probe_token = st.sampled_from(["@ec ", "@ec begin", "@ec layer", "@ec total", "@ec stack", "@ec end", "@ec fault",
                                "@ec error", " model=", " layers=", " unit=", "cycles", "ns", "systick", " ", "\n",
                                "\r", "\r\n", "=", "-1", "0", "7", "99999999999999999999999", "1e9", "\x00", "\xff",
                                "layers=-3", "layers=1" + "0" * 30, "@", "ec", "\t"])


@st.composite
def _probe_blocks(draw):
    """Mostly well-formed probe output, then cut, spliced with noise or with hostile numbers."""
    n = draw(st.integers(0, 6))
    num = st.one_of(st.integers(0, 300).map(str), st.sampled_from(["-1", "1" + "0" * 40, "0x10", "", "1.5", "65537",
                                                                      "\u0661", "\x00"]))
    lines = [f"boot noise {draw(st.text(max_size=8))}",
             f"@ec begin model={draw(st.text(max_size=8))} layers={draw(num)} unit="
             f"{draw(st.sampled_from(['cycles', 'ns', 'systick', 'instructions', 'furlongs', '']))}"]
    lines += [f"@ec layer {draw(num)} {draw(num)}" for _ in range(n)]
    lines += [f"@ec total {draw(num)}", f"@ec stack {draw(num)}", "@ec end"]
    text = draw(st.sampled_from(["\n", "\r\n", "\r"])).join(lines) + "\n"
    for _ in range(draw(st.integers(0, 3))):
        k = draw(st.integers(0, 2))
        i = draw(st.integers(0, len(text)))
        if k == 0:
            text = text[:i]
        elif k == 1:
            text = text[:i] + draw(st.text(max_size=6)) + text[i:]
        else:
            text = text + text[:i]
    return text.encode("utf-8", "surrogatepass") if draw(st.booleans()) else text


probe_texts = st.one_of(
    _probe_blocks(),
    st.lists(_probe_token | st.text(max_size=10), max_size=60).map("".join),
    st.binary(max_size=400),
    st.text(max_size=300),
    st.lists(st.text(max_size=20), max_size=10),  # an iterable of lines
)


# --------------------------------------------------------------------------- the runner
def run_onnx(examples: int, workdir: Path, seed: int | None, derandomize: bool, cli_every: int = 0,
             seconds: float = 20.0, compile_accepted: bool = False) -> None:
    folder = workdir / "m"
    folder.mkdir(parents=True, exist_ok=True)
    _setup_folder(folder)
    crash = workdir / "crash.onnx"
    counter = {"n": 0}

    @settings(max_examples=examples, deadline=None, derandomize=derandomize, database=None,
              suppress_health_check=list(HealthCheck), print_blob=True)
    @given(onnx_cases())
    def target(case):
        desc, data = case
        path = folder / "model.onnx"
        path.write_bytes(data)
        crash.write_bytes(data)
        accepted = check_onnx(path, seconds)
        counter["n"] += 1
        if cli_every and not accepted and counter["n"] % cli_every == 0:
            check_cli_compile(path, workdir / "out" / "bundle", seconds)
        if compile_accepted and accepted:
            check_cli_accepted(path, workdir / "out" / "bundle", max(seconds, 120.0))

    if seed is not None:
        from hypothesis import seed as hseed
        target = hseed(seed)(target)
    (workdir / "out").mkdir(exist_ok=True)
    target()


def run_tflite(examples: int, workdir: Path, seed: int | None, derandomize: bool, seconds: float = 20.0,
               compile_accepted: bool = False) -> None:
    seed_data = seed_tflite_bytes()
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "model.tflite"

    @settings(max_examples=examples, deadline=None, derandomize=derandomize, database=None,
              suppress_health_check=list(HealthCheck))
    @given(tflite_cases(seed_data))
    def target(case):
        path.write_bytes(case[1])
        if check_tflite(path, seconds) and compile_accepted:
            check_cli_accepted(path, workdir / "out" / "bundle", max(seconds, 300.0))

    if seed is not None:
        from hypothesis import seed as hseed
        target = hseed(seed)(target)
    target()


def run_probe(examples: int, seed: int | None, derandomize: bool) -> None:
    @settings(max_examples=examples, deadline=None, derandomize=derandomize, database=None,
              suppress_health_check=list(HealthCheck))
    @given(probe_texts)
    def target(text):
        check_probe(text)

    if seed is not None:
        from hypothesis import seed as hseed
        target = hseed(seed)(target)
    target()


def run_hostile(target: str, examples: int, workdir: Path, seed: int | None, derandomize: bool) -> None:
    """The targets of scripts/fuzz_hostile.py: calib, tamper, names, paths."""
    import fuzz_hostile as FH

    workdir.mkdir(parents=True, exist_ok=True)
    if target == "calib":
        strategy, check = FH.calib_cases(), lambda c: FH.check_calib(c, workdir)
    elif target == "tamper":
        good = FH.good_bundles(workdir)
        strategy, check = FH.tamper_cases(), lambda c: FH.check_tamper(c, workdir, good)
    elif target == "names":
        plain = FH.plain_reference(workdir)
        strategy, check = FH.name_cases(), lambda c: FH.check_names(c, workdir, plain)
    else:
        model = FH.path_model(workdir)
        strategy, check = FH.path_cases(), lambda c: FH.check_paths(c, workdir, model)

    @settings(max_examples=examples, deadline=None, derandomize=derandomize, database=None,
              suppress_health_check=list(HealthCheck), print_blob=True)
    @given(strategy)
    def run(case):
        (workdir / "case.txt").write_text(repr(case)[:200_000])
        STATS.add(target, check(case) == 0)

    if seed is not None:
        from hypothesis import seed as hseed
        run = hseed(seed)(run)
    run()


HOSTILE_TARGETS = ("calib", "tamper", "names", "paths")


def _have(module: str) -> bool:
    import importlib.util
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def _peak_rss_mib() -> int:
    """This process's peak resident set (VmHWM; ru_maxrss would include the parent's before exec)."""
    try:
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) for l in f if l.startswith("VmHWM:")) // 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("minutes", type=float, help="how long to fuzz (all targets share the time)")
    ap.add_argument("--target", choices=["all", "onnx", "cli", "compile", "tflite", "tflite-compile", "probe",
                                         *HOSTILE_TARGETS], default="all",
                    help="compile: full host compiles (gcc) of the mutated models the importer accepts (slow); "
                         "calib, tamper, names, paths: scripts/fuzz_hostile.py")
    ap.add_argument("--seed", type=int, help="first hypothesis seed (default: random)")
    ap.add_argument("--batch", type=int, default=200, help="cases per hypothesis run")
    ap.add_argument("--case-seconds", type=float, default=20.0, help="per-case time limit")
    ap.add_argument("--rlimit-as-mb", type=int, default=0, help="address-space limit for this process (0: none)")
    ap.add_argument("--crash-dir", default="fuzz-crashes", help="where reproducers are written")
    a = ap.parse_args(argv)
    if a.rlimit_as_mb:
        lim = a.rlimit_as_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (lim, lim))
    targets = ["onnx", "cli", "tflite", "probe", *HOSTILE_TARGETS] if a.target == "all" else [a.target]
    if not _have("edgecomp.frontends.tflite"):
        targets = [t for t in targets if not t.startswith("tflite")]
    deadline = time.monotonic() + a.minutes * 60
    seed = a.seed if a.seed is not None else int.from_bytes(os.urandom(4), "little")
    work = Path(tempfile.mkdtemp(prefix="edgecomp-fuzz-"))
    rounds = 0
    try:
        while True:
            for t in targets:
                s = seed + rounds
                try:
                    if t == "onnx":
                        run_onnx(a.batch, work / "onnx", s, False, 0, a.case_seconds)
                    elif t == "cli":
                        run_onnx(max(a.batch // 10, 5), work / "cli", s, False, 1, a.case_seconds)
                    elif t == "compile":
                        run_onnx(max(a.batch // 10, 5), work / "compile", s, False, 0, a.case_seconds, True)
                    elif t == "tflite-compile":
                        run_tflite(max(a.batch // 20, 5), work / "tflite", s, False, a.case_seconds, True)
                    elif t == "tflite":
                        run_tflite(a.batch, work / "tflite", s, False, a.case_seconds)
                    elif t in HOSTILE_TARGETS:
                        run_hostile(t, max(a.batch // (10 if t in ("calib", "paths") else 2), 5), work / t, s, False)
                    else:
                        run_probe(a.batch * 5, s, False)
                except BaseException as e:  # noqa: BLE001 - a finding: report it and stop
                    if isinstance(e, KeyboardInterrupt):
                        raise
                    crash_dir = Path(a.crash_dir)
                    crash_dir.mkdir(parents=True, exist_ok=True)
                    for src in (work / t / "crash.onnx", work / "onnx" / "crash.onnx", work / "tflite" / "model.tflite",
                                work / t / "case.txt"):
                        if src.is_file():
                            shutil.copyfile(src, crash_dir / f"{t}-seed{s}{src.suffix}")
                    traceback.print_exc()
                    print(f"FOUND A BUG in target {t} (seed {s}); reproducer in {crash_dir}", file=sys.stderr)
                    print(f"cases tried: {STATS.line()}")
                    return 1
                rounds += 1
                print(f"[{time.strftime('%H:%M:%S')}] round {rounds}: {STATS.line()}", flush=True)
                if time.monotonic() >= deadline:
                    raise StopIteration
    except StopIteration:
        pass
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"cases tried: {STATS.line()}; total {sum(STATS.cases.values())}; peak RSS {_peak_rss_mib()} MiB")
    if "fuzz_hostile" in sys.modules and sys.modules["fuzz_hostile"].CALIB_SEEN:
        for k, (n, s) in sorted(sys.modules["fuzz_hostile"].CALIB_SEEN.items()):
            print(f"  calib {k}: {n}" + (f" cases, slowest {s:.1f} s" if s else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
