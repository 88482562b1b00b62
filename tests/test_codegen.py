"""C code generator: every op compiled with host gcc and run, against the numpy reference
(edgecomp.interp: bit-exact for int8, 1e-5 for float32), the MLPerf Tiny int8 models
bit-exact against TensorFlow Lite Micro, the generated C under arm-none-eabi-gcc -Werror,
hostile names, the arena static assertion, the probe and the debug checks.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from edgecomp import interp, ir
from edgecomp.backends.c import generate
from edgecomp.options import CodegenOptions
from edgecomp.errors import ModelError, UnsupportedError
from edgecomp.resources import templates_dir

CFLAGS = ["-std=c99", "-Wall", "-Wextra", "-Werror"]
ARM_FLAGS = ["-mcpu=cortex-m4", "-mthumb", "-Os"]
SOURCES = ["model.c", "weights.c", "ec_kernels.c"]

HARNESS = r"""
#include <stdio.h>
#include <string.h>
#include "model.h"

uint32_t ec_timer_now(void) { static uint32_t t; return t += 3; }

int main(int argc, char **argv)
{
    static ec_in_t in[EC_INPUT_SIZE];
    static ec_out_t out[EC_OUTPUT_SIZE];
    if (argc > 1 && strcmp(argv[1], "names") == 0) {
        for (int i = 0; i < EC_NUM_LAYERS; i++) {
            fwrite(ec_layer_name[i], 1, strlen(ec_layer_name[i]) + 1, stdout);
            fwrite(ec_layer_op[i], 1, strlen(ec_layer_op[i]) + 1, stdout);
        }
        return 0;
    }
    if (argc > 1 && strcmp(argv[1], "null") == 0) {
        printf("%d %d\n", ec_run(NULL, out), ec_run(in, NULL));
        return 0;
    }
    if (argc > 1 && strcmp(argv[1], "probe") == 0) {
        ec_invoke();
        for (int i = 0; i < EC_NUM_LAYERS; i++)
            printf("%lu\n", (unsigned long)ec_layer_ticks[i]);
        return 0;
    }
    if (argc > 1 && strcmp(argv[1], "quant") == 0) {  /* float in -> ec_quantize_input -> run -> dequantize */
        static float xf[EC_INPUT_SIZE], yf[EC_OUTPUT_SIZE];
        while (fread(xf, sizeof xf, 1, stdin) == 1) {
            ec_quantize_input(xf, in);
            if (ec_run(in, out) != 0)
                return 1;
            ec_dequantize_output(out, yf);
            fwrite(yf, sizeof yf, 1, stdout);
        }
        return 0;
    }
    while (fread(in, sizeof in, 1, stdin) == 1) {
        if (ec_run(in, out) != 0)
            return 1;
        fwrite(out, sizeof out, 1, stdout);
    }
    return 0;
}
"""

needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="host gcc not installed")


def build(out: Path, extra: list[str] | None = None, sources: list[str] | None = None) -> Path:
    (out / "harness.c").write_text(HARNESS)
    shutil.copyfile(templates_dir() / "cortex_m" / "ec_platform.h", out / "ec_platform.h")
    exe = out / "fw"
    cmd = ["gcc", *CFLAGS, "-O1", "-DEC_PROBE", "-DEC_DEBUG", *(extra or []), "-o", str(exe), "harness.c",
           *(sources or SOURCES), "-lm"]
    r = subprocess.run(cmd, cwd=out, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return exe


def run_c(graph: ir.Graph, x: np.ndarray, tmp: Path, name: str = "model", dsp: bool = False) -> np.ndarray:
    """Generate (reference kernels, or the DSP ones in their plain C form), build with the harness, run."""
    info = generate(graph, tmp, name=name, options=CodegenOptions(dsp=dsp))
    exe = build(tmp, sources=[f for f in info.files if f.endswith(".c")])
    r = subprocess.run([str(exe)], input=np.ascontiguousarray(x).tobytes(), capture_output=True, check=True)
    o = graph.tensors[graph.outputs[0]]
    return np.frombuffer(r.stdout, dtype=ir.np_dtype(o.dtype)).reshape((len(x),) + o.shape[1:])


def check(graph: ir.Graph, tmp: Path, n: int = 4, seed: int = 0, name: str = "model") -> np.ndarray:
    t = graph.tensors[graph.inputs[0]]
    rng = np.random.default_rng(seed)
    if t.dtype == "int8":
        x = rng.integers(-128, 128, size=(n,) + t.shape[1:], dtype=np.int8)
    else:
        x = (rng.standard_normal((n,) + t.shape[1:]) * 2).astype(np.float32)
    got = run_c(graph, x, tmp, name)
    want = interp.run(graph, x)[graph.outputs[0]]
    if want.dtype == np.int8:
        np.testing.assert_array_equal(got, want)
    else:
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert np.ptp(want.astype(np.float64)) > 0, "a test whose output is constant checks little"
    return got


# --------------------------------------------------------------------------- graph builders
RNG = np.random.default_rng(42)


def act_t(name, shape, dtype, scale=0.05, zp=3):
    return ir.Tensor(name, shape, dtype, ir.QuantParams([scale], [zp]) if dtype == "int8" else None)


def weights(name, shape, dtype, channels_axis=0):
    if dtype == "int8":
        n = shape[channels_axis]
        return ir.Tensor(name, shape, "int8", ir.QuantParams(RNG.uniform(0.002, 0.01, n).astype(np.float32),
                                                             np.zeros(n, np.int32), axis=channels_axis),
                         data=RNG.integers(-127, 128, size=shape, dtype=np.int8))
    return ir.Tensor(name, shape, "float32", data=RNG.standard_normal(shape).astype(np.float32) * 0.3)


def bias(name, n, dtype):
    if dtype == "int8":
        return ir.Tensor(name, (n,), "int32", data=RNG.integers(-2000, 2000, size=n, dtype=np.int32))
    return ir.Tensor(name, (n,), "float32", data=RNG.standard_normal(n).astype(np.float32))


def act(kind, t: ir.Tensor):
    return ir.activation_range(kind, t.quant, t.dtype)


def graph(tensors: list[ir.Tensor], nodes: list[ir.Node], inputs, outputs, name="g") -> ir.Graph:
    g = ir.Graph(name, {t.name: t for t in tensors}, nodes, inputs, outputs, {"source": "test"})
    g.validate()
    return g


def conv_graph(dtype, op="conv2d"):
    x = act_t("x", (1, 7, 6, 3), dtype, 0.05, 3)
    stride, dil, pad = (2, 1), (1, 2), (1, 0, 2, 1)
    ho = ir.conv_output_size(7, 3, stride[0], dil[0], pad[0], pad[2])
    wo = ir.conv_output_size(6, 3, stride[1], dil[1], pad[1], pad[3])
    if op == "conv2d":
        w, oc, attrs = weights("w", (4, 3, 3, 3), dtype), 4, {}
    else:
        w, oc, attrs = weights("w", (1, 3, 3, 6), dtype, 3), 6, {"depth_multiplier": 2}
    y = act_t("y", (1, ho, wo, oc), dtype, 0.08, -5)
    attrs.update(stride=stride, dilation=dil, pad=pad, act=act("relu", y))
    return graph([x, w, bias("b", oc, dtype), y], [ir.Node("conv", op, ["x", "w", "b"], ["y"], attrs)], ["x"], ["y"])


def fc_graph(dtype):
    x = act_t("x", (1, 2, 3, 4), dtype)
    w = weights("w", (5, 24), dtype)
    y = act_t("y", (1, 5), dtype, 0.2, -1)
    return graph([x, w, bias("b", 5, dtype), y],
                 [ir.Node("fc", "fully_connected", ["x", "w", "b"], ["y"], {"act": act("relu6", y)})], ["x"], ["y"])


def add_graph(dtype):
    # b comes from a conv so the graph has one input; add(x, conv(x)) with different scales
    x = act_t("x", (1, 3, 4, 2), dtype, 0.05, 3)
    w = weights("w", (2, 1, 1, 2), dtype)
    c = act_t("c", (1, 3, 4, 2), dtype, 0.03, -7)
    y = act_t("y", (1, 3, 4, 2), dtype, 0.06, 2)
    nodes = [ir.Node("pw", "conv2d", ["x", "w"], ["c"], {"stride": (1, 1), "dilation": (1, 1), "pad": (0, 0, 0, 0),
                                                          "act": act(None, c)}),
             ir.Node("sum", "add", ["c", "x"], ["y"], {"act": act("relu", y)})]
    return graph([x, w, c, y], nodes, ["x"], ["y"])


def pool_graph(dtype, op):
    x = act_t("x", (1, 7, 5, 3), dtype)
    ho = ir.conv_output_size(7, 3, 2, 1, 1, 1)
    wo = ir.conv_output_size(5, 2, 2, 1, 0, 1)
    y = act_t("y", (1, ho, wo, 3), dtype)
    return graph([x, y], [ir.Node("pool", op, ["x"], ["y"], {"kernel": (3, 2), "stride": (2, 2), "pad": (1, 0, 1, 1),
                                                            "act": act(None, y)})], ["x"], ["y"])


def softmax_graph(dtype):
    x = act_t("x", (1, 3, 10), dtype, 0.1, 4)
    y = act_t("y", (1, 3, 10), dtype, 1 / 256, -128)
    return graph([x, y], [ir.Node("sm", "softmax", ["x"], ["y"], {"beta": 0.7})], ["x"], ["y"])


def reshape_concat_graph(dtype):
    x = act_t("x", (1, 4, 6), dtype)
    r = act_t("r", (1, 2, 2, 6), dtype)
    w = weights("w", (3, 1, 1, 6), dtype)
    c = act_t("c", (1, 2, 2, 3), dtype)  # same quantization as the concat output
    y = act_t("y", (1, 2, 2, 9), dtype)
    z = act_t("z", (1, 4, 2, 9), dtype)
    conv = {"stride": (1, 1), "dilation": (1, 1), "pad": (0, 0, 0, 0), "act": act(None, c)}
    nodes = [ir.Node("flat", "reshape", ["x"], ["r"], {"shape": (1, 2, 2, 6)}),
             ir.Node("pw", "conv2d", ["r", "w"], ["c"], conv),
             ir.Node("cat_c", "concat", ["r", "c"], ["y"], {"axis": 3}),
             ir.Node("cat_h", "concat", ["y", "y"], ["z"], {"axis": 1})]
    return graph([x, r, w, c, y, z], nodes, ["x"], ["z"])


def clamp_graph(dtype):
    x = act_t("x", (1, 17), dtype)
    y = act_t("y", (1, 17), dtype)
    rng = (-20, 30) if dtype == "int8" else (-0.5, 1.25)
    return graph([x, y], [ir.Node("clip", "clamp", ["x"], ["y"], {"act": rng})], ["x"], ["y"])


def quant_graph():
    """float -> int8 -> requantized int8 -> float."""
    x = act_t("x", (1, 40), "float32")
    q = act_t("q", (1, 40), "int8", 0.02, -3)
    r = act_t("r", (1, 40), "int8", 0.05, 10)
    y = act_t("y", (1, 40), "float32")
    nodes = [ir.Node("quant", "quantize", ["x"], ["q"]), ir.Node("requant", "quantize", ["q"], ["r"]),
             ir.Node("dequant", "dequantize", ["r"], ["y"])]
    return graph([x, q, r, y], nodes, ["x"], ["y"])


def chain_graph(dtype):
    """conv -> depthwise -> strided conv -> pointwise: the in-place planner at work."""
    x = act_t("x", (1, 9, 8, 3), dtype)
    ts, nodes = [x], []
    cur, shape = "x", (9, 8, 3)
    for i, (op, k, s, p, oc) in enumerate([("conv2d", 3, 1, 1, 8), ("depthwise_conv2d", 3, 1, 1, 8),
                                           ("conv2d", 3, 2, 1, 8), ("conv2d", 1, 1, 0, 16)]):
        ho, wo = ir.conv_output_size(shape[0], k, s, 1, p, p), ir.conv_output_size(shape[1], k, s, 1, p, p)
        w = weights(f"w{i}", (oc, k, k, shape[2]) if op == "conv2d" else (1, k, k, oc), dtype,
                    0 if op == "conv2d" else 3)
        y = act_t(f"t{i}", (1, ho, wo, oc), dtype, 0.1 + 0.05 * i, i - 2)
        attrs = {"stride": (s, s), "dilation": (1, 1), "pad": (p, p, p, p), "act": act("relu", y)}
        if op != "conv2d":
            attrs["depth_multiplier"] = 1
        ts += [w, bias(f"b{i}", oc, dtype), y]
        nodes.append(ir.Node(f"l{i}", op, [cur, w.name, f"b{i}"], [y.name], attrs))
        cur, shape = y.name, (ho, wo, oc)
    return graph(ts, nodes, ["x"], [cur])


def residual_graph(dtype):
    """x -> conv1 -> conv2 (+ x): the add is fused into conv2 and written over x."""
    x = act_t("x", (1, 6, 5, 4), dtype, 0.05, 1)
    ts = [x]
    nodes = []
    cur = "x"
    for i in range(2):
        y = act_t(f"c{i}", (1, 6, 5, 4), dtype, 0.07 + 0.02 * i, -3 + i)
        ts += [weights(f"w{i}", (4, 3, 3, 4), dtype), bias(f"b{i}", 4, dtype), y]
        nodes.append(ir.Node(f"conv{i}", "conv2d", [cur, f"w{i}", f"b{i}"], [y.name],
                             {"stride": (1, 1), "dilation": (1, 1), "pad": (1, 1, 1, 1),
                              "act": act("relu" if i == 0 else None, y)}))
        cur = y.name
    out = act_t("y", (1, 6, 5, 4), dtype, 0.09, -1)
    ts.append(out)
    nodes.append(ir.Node("res", "add", ["x", "c1"], ["y"], {"act": act("relu", out)}))
    return graph(ts, nodes, ["x"], ["y"])


def residual_self_graph(dtype):
    """y = relu(conv3x3(x) + x): the skip tensor is the conv's own input (in place at most d <= 0)."""
    x = act_t("x", (1, 7, 5, 4), dtype, 0.05, 1)
    c = act_t("c", (1, 7, 5, 4), dtype, 0.07, -3)
    y = act_t("y", (1, 7, 5, 4), dtype, 0.09, -1)
    conv = {"stride": (1, 1), "dilation": (1, 1), "pad": (1, 1, 1, 1), "act": act(None, c)}
    nodes = [ir.Node("conv", "conv2d", ["x", "w", "b"], ["c"], conv),
             ir.Node("res", "add", ["c", "x"], ["y"], {"act": act("relu", y)})]
    return graph([x, weights("w", (4, 3, 3, 4), dtype), bias("b", 4, dtype), c, y], nodes, ["x"], ["y"])


CASES = {
    "conv2d": lambda d: conv_graph(d, "conv2d"),
    "depthwise_conv2d": lambda d: conv_graph(d, "depthwise_conv2d"),
    "fully_connected": fc_graph,
    "add": add_graph,
    "max_pool2d": lambda d: pool_graph(d, "max_pool2d"),
    "avg_pool2d": lambda d: pool_graph(d, "avg_pool2d"),
    "softmax": softmax_graph,
    "reshape_concat": reshape_concat_graph,
    "clamp": clamp_graph,
    "chain_in_place": chain_graph,
    "residual_fused": residual_graph,
    "residual_of_own_input": residual_self_graph,
}


@needs_gcc
@pytest.mark.parametrize("dtype", ["int8", "float32"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_op_matches_reference(tmp_path, case, dtype):
    check(CASES[case](dtype), tmp_path)


@needs_gcc
def test_quantize_requantize_dequantize(tmp_path):
    check(quant_graph(), tmp_path, n=8)


@needs_gcc
def test_in_place_and_fusion_are_used(tmp_path):
    info = generate(chain_graph("int8"), tmp_path / "chain")
    assert info.plan.inplace and info.scratch_bytes > 0
    plain = sum(t.nbytes for t in chain_graph("int8").activations())
    assert info.arena_bytes < plain
    res = generate(residual_graph("int8"), tmp_path / "res")
    assert [l["op"] for l in res.layers] == ["conv2d", "conv2d"]
    assert res.offsets["y"] == res.offsets["x"]  # the fused add writes over the skip tensor
    assert "+ residual add of x_2 (fused, from res)" in (tmp_path / "res" / "model.c").read_text()


@needs_gcc
def test_quantize_input_and_dequantize_output_helpers(tmp_path):
    from edgecomp import numerics as nx

    g = fc_graph("int8")
    generate(g, tmp_path)
    exe = build(tmp_path)
    xf = np.random.default_rng(5).standard_normal((3, 24)).astype(np.float32)
    r = subprocess.run([str(exe), "quant"], input=xf.tobytes(), capture_output=True, check=True)
    got = np.frombuffer(r.stdout, np.float32).reshape(3, 5)
    qx = nx.affine_quantize(xf, 0.05, 3).reshape(3, 2, 3, 4)
    qy = interp.run(g, qx)["y"]
    # the scale as a model stores it (float32, like a .tflite file): 0.2 as a double differs in
    # the last bit of some products (which ones depends on the weights)
    np.testing.assert_array_equal(got, nx.dequantize(qy, float(np.float32(0.2)), -1).reshape(3, 5))


# --------------------------------------------------------------------------- C quality
@needs_gcc
def test_probe_debug_checks_and_layer_table(tmp_path):
    g = chain_graph("int8")
    info = generate(g, tmp_path)
    exe = build(tmp_path)
    ticks = subprocess.run([str(exe), "probe"], capture_output=True, text=True, check=True).stdout.split()
    assert [int(t) for t in ticks] == [3] * 4  # each layer one tick apart of the stub timer
    assert subprocess.run([str(exe), "null"], capture_output=True, text=True, check=True).stdout.split() == ["-1", "-1"]
    assert [{k: v for k, v in lay.items() if k != "kernel"} for lay in info.layers] == [
        {"name": f"l{i}", "op": n.op, "out_shape": list(g.tensors[n.outputs[0]].shape), "macs": ir.macs(g, n)}
        for i, n in enumerate(g.nodes)]
    assert [lay["kernel"] for lay in info.layers][:2] == ["conv2d_s8", "depthwise_conv2d_s8"]  # reference kernels
    assert info.static_bytes == 4 * 4
    text = (tmp_path / "model.c").read_text()
    assert "/* 1 l1: depthwise_conv2d */" in text and "in place" in text
    assert "static const ec_conv_params_t l1 = {" in text
    w = (tmp_path / "weights.c").read_text()
    assert "const int8_t l0_filter[216] = {" in w and "const int32_t l0_multiplier[8]" in w


@needs_gcc
def test_static_assertion_refuses_a_too_small_arena(tmp_path):
    info = generate(chain_graph("int8"), tmp_path)
    h = tmp_path / "model.h"
    h.write_text(h.read_text().replace(f"#define EC_ARENA_BYTES {info.arena_bytes} ",
                                       f"#define EC_ARENA_BYTES {info.arena_bytes - 4} "))
    r = subprocess.run(["gcc", *CFLAGS, "-I", str(templates_dir() / "cortex_m"), "-c", "model.c", "-o", "/dev/null"],
                       cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode != 0 and "ec_plan_fits_arena" in r.stderr


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="arm-none-eabi-gcc not installed")
@pytest.mark.parametrize("dtype", ["int8", "float32"])
def test_compiles_warning_free_for_cortex_m4(tmp_path, dtype):
    g = residual_graph(dtype)
    generate(g, tmp_path)
    shutil.copyfile(templates_dir() / "cortex_m" / "ec_platform.h", tmp_path / "ec_platform.h")
    for defines in ([], ["-DEC_PROBE", "-DEC_DEBUG"]):
        for f in SOURCES:
            r = subprocess.run(["arm-none-eabi-gcc", *CFLAGS, *ARM_FLAGS, *defines, "-c", f, "-o", "/dev/null"],
                               cwd=tmp_path, capture_output=True, text=True)
            assert r.returncode == 0, r.stderr


HOSTILE = ["*/ int evil; /*", 'quote"back\\slash', "line\n#include <stdio.h>", "tri??/graph", "int", "1st",
           "exp", "x", "arena", "conv/*nested*/", "ünïcode", "a-b", "a_b", "a.b", ""]


@needs_gcc
def test_hostile_names_compile_and_mean_the_same(tmp_path):
    """Names that would close comments, break strings, include files or clash with C."""
    x = act_t(HOSTILE[0], (1, 6), "int8")
    ts, nodes, cur = [x], [], x.name
    for i, name in enumerate(HOSTILE[1:]):
        y = act_t(f"{name}#t{i}" if i % 2 else name, (1, 6), "int8")
        node_name = name if name else f"#{i}"
        if i == 0:  # one real layer with weights named after the hostile name, then clamps
            w = weights(f"w{i}{name}", (6, 6), "int8")
            ts.append(w)
            nodes.append(ir.Node(node_name, "fully_connected", [cur, w.name], [y.name], {"act": (-128, 127)}))
        else:
            nodes.append(ir.Node(node_name, "clamp", [cur], [y.name], {"act": (-120 + i, 120 - i)}))
        ts.append(y)
        cur = y.name
    g = ir.Graph("*/ hostile \"graph\"", {t.name: t for t in ts}, nodes, [x.name], [cur])
    g.validate()
    got = check(g, tmp_path, name=g.name)
    assert got.shape == (4, 6)
    assert '#define EC_MODEL_NAME "*/ hostile \\"graph\\""' in (tmp_path / "model.h").read_text()
    exe = tmp_path / "fw"
    raw = subprocess.run([str(exe), "names"], capture_output=True, check=True).stdout.split(b"\0")[:-1]
    assert [s.decode() for s in raw[0::2]] == [n.name for n in nodes]
    assert [s.decode() for s in raw[1::2]] == [n.op for n in nodes]
    text = (tmp_path / "model.c").read_text()
    includes = [ln.strip() for ln in text.splitlines() if ln.lstrip().startswith("#")]
    assert [ln for ln in includes if ln.startswith("#include")] == [
        "#include <math.h>", "#include <stdint.h>", "#include <string.h>", '#include "ec_kernels.h"',
        '#include "ec_platform.h"', '#include "model.h"']
    subprocess.run(["gcc", *CFLAGS, "-c", "model.c", "-o", "model.o"], cwd=tmp_path, check=True)
    symbols = subprocess.run(["nm", "model.o"], cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    assert "evil" not in symbols  # the name stayed inside its comment
    if shutil.which("arm-none-eabi-gcc"):
        for f in SOURCES:
            r = subprocess.run(["arm-none-eabi-gcc", *CFLAGS, *ARM_FLAGS, "-trigraphs", "-c", f, "-o", "/dev/null"],
                               cwd=tmp_path, capture_output=True, text=True)
            assert r.returncode == 0, r.stderr


# --------------------------------------------------------------------------- user errors
def test_unsupported_graphs_are_clear_errors(tmp_path):
    g = fc_graph("int8")
    g.inputs.append("y")
    with pytest.raises(UnsupportedError, match="inputs"):
        generate(g, tmp_path / "a")
    g = fc_graph("int8")
    g.tensors["x"] = ir.Tensor("x", (1, 2, 3, 4), "int16", ir.QuantParams([0.1], [0]))
    with pytest.raises(UnsupportedError, match="int16"):
        generate(g, tmp_path / "b")
    g = fc_graph("int8")
    g.nodes[0].inputs[0] = "nowhere"
    with pytest.raises(ModelError):
        generate(g, tmp_path / "c")
    assert not any((tmp_path / d).exists() and any((tmp_path / d).iterdir()) for d in "abc")


# --------------------------------------------------------------------------- MLPerf Tiny vs TFLM
MLPERF = ["ad01_int8", "kws_ref_model", "pretrainedResnet_quant", "vww_96_int8"]


@needs_gcc
@pytest.mark.parametrize("model", MLPERF)
def test_mlperf_tiny_bit_exact_with_tflm(tmp_path, mlperf_dir, model):
    from edgecomp.frontends.tflite import load_tflite
    from edgecomp.reference import tflm_run

    path = mlperf_dir / f"{model}.tflite"
    g = load_tflite(path)
    t = g.tensors[g.inputs[0]]
    x = np.random.default_rng(7).integers(-128, 128, size=(3,) + t.shape[1:], dtype=np.int8)
    got = run_c(g, x, tmp_path, name=model)
    want = tflm_run(path, x)
    np.testing.assert_array_equal(got, want.reshape(got.shape))
    assert len(np.unique(want)) > 1


def random_chain(specs, h, w, c, dtype="int8"):
    """A chain of (op, kernel, stride, pad, dilation, out_channels) layers, skipping ones that do not fit."""
    x = act_t("x", (1, h, w, c), dtype)
    ts, nodes, cur, shape = [x], [], "x", (h, w, c)
    for i, (op, k, s, p, d, oc) in enumerate(specs):
        eff = (k - 1) * d + 1
        if shape[0] + 2 * p < eff or shape[1] + 2 * p < eff or (op.endswith("pool") and p >= k):
            continue
        ho, wo = ir.conv_output_size(shape[0], k, s, d, p, p), ir.conv_output_size(shape[1], k, s, d, p, p)
        oc = oc if op == "conv2d" else shape[2]
        y = act_t(f"t{i}", (1, ho, wo, oc), dtype, 0.05 + 0.02 * (i % 3), (i % 5) - 2)
        attrs = {"stride": (s, s), "pad": (p, p, p, p), "act": act("relu" if i % 2 else None, y)}
        if op.endswith("pool"):
            y = act_t(f"t{i}", (1, ho, wo, oc), dtype, ts[-1].quant.scale[0] if dtype == "int8" else 0,
                      int(ts[-1].quant.zero_point[0]) if dtype == "int8" else 0)
            attrs.update(kernel=(k, k), act=act(None, y))
            nodes.append(ir.Node(f"l{i}", op + "2d", [cur], [y.name], attrs))
            ts.append(y)
        else:
            w_ = weights(f"w{i}", (oc, k, k, shape[2]) if op == "conv2d" else (1, k, k, oc), dtype,
                         0 if op == "conv2d" else 3)
            attrs["dilation"] = (d, d)
            if op != "conv2d":
                attrs["depth_multiplier"] = 1
            ts += [w_, bias(f"b{i}", oc, dtype), y]
            nodes.append(ir.Node(f"l{i}", op, [cur, w_.name, f"b{i}"], [y.name], attrs))
        cur, shape = y.name, (ho, wo, oc)
    if not nodes:
        return None
    return graph(ts, nodes, ["x"], [cur])


@needs_gcc
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(["conv2d", "depthwise_conv2d", "max_pool", "avg_pool"]),
                          st.integers(1, 3), st.integers(1, 2), st.integers(0, 1), st.integers(1, 2),
                          st.integers(1, 8)), min_size=2, max_size=5),
       st.integers(4, 10), st.integers(4, 10), st.integers(1, 5))
def test_random_in_place_chains_match_reference(tmp_path_factory, specs, h, w, c):
    g = random_chain(specs, h, w, c)
    if g is None:
        return
    tmp = tmp_path_factory.mktemp("chain")
    t = g.tensors["x"]
    x = np.random.default_rng(1).integers(-128, 128, size=(2,) + t.shape[1:], dtype=np.int8)
    np.testing.assert_array_equal(run_c(g, x, tmp), interp.run(g, x)[g.outputs[0]])


@needs_gcc
def test_integer_helpers_match_tflite_primitives(tmp_path):
    """ec_sat_rounding_doubling_high_mul, ec_rounding_divide_by_pot and
    ec_multiply_by_quantized_multiplier on edge values (INT32_MIN, ties, every shift) vs numerics."""
    from edgecomp import numerics as nx

    from edgecomp.backends.c.kernels.catalogue import bundle_names, write_kernel_files

    write_kernel_files(tmp_path, bundle_names("reference"))  # as in a bundle
    (tmp_path / "h.c").write_text(r"""
#include <stdio.h>
#include "ec_kernels.h"
int main(void)
{
    long a, b, s;
    while (scanf("%ld %ld %ld", &a, &b, &s) == 3)
        printf("%ld %ld %ld\n", (long)ec_sat_rounding_doubling_high_mul((int32_t)a, (int32_t)b),
               (long)ec_rounding_divide_by_pot((int32_t)a, (int)(s < 0 ? -s : s) % 32),
               (long)ec_multiply_by_quantized_multiplier((int32_t)a, (int32_t)b, (int)s));
    return 0;
}
""")
    subprocess.run(["gcc", *CFLAGS, "-O2", "-o", "h", "h.c", "ec_kernels.c", "-lm"], cwd=tmp_path, check=True)
    rng = np.random.default_rng(3)
    edge = [-(1 << 31), (1 << 31) - 1, 0, 1, -1, 3, -3, 1 << 30, -(1 << 30), 12345, -12345]
    a = np.concatenate([np.array(edge * len(edge)), rng.integers(-(1 << 31), 1 << 31, 3000)])
    b = np.concatenate([np.repeat(edge, len(edge)), rng.integers(-(1 << 31), 1 << 31, 3000)])
    b = np.where(np.arange(len(b)) % 2 == 0, b, rng.integers(1 << 30, (1 << 31) - 1, len(b)))  # Q31 multipliers
    s = rng.integers(-31, 31, len(a))
    small = np.arange(len(a)) % 3 == 0  # keep x << shift in range for left shifts, as requantize does
    a = np.where(small & (s > 0), a >> 31 - np.maximum(s, 0), a)
    lines = "\n".join(f"{x} {y} {z}" for x, y, z in zip(a, b, s))
    out = subprocess.run([str(tmp_path / "h")], input=lines, capture_output=True, text=True, check=True).stdout
    got = np.array([list(map(int, ln.split())) for ln in out.splitlines()])
    np.testing.assert_array_equal(got[:, 0], nx.saturating_rounding_doubling_high_mul(a, b))
    np.testing.assert_array_equal(got[:, 1], nx.rounding_divide_by_pot(a, np.abs(s) % 32))
    np.testing.assert_array_equal(got[:, 2], nx.multiply_by_quantized_multiplier(a, b, s))


def test_hybrid_model_is_refused_with_a_clear_error(tmp_path, mlperf_dir):
    from edgecomp.frontends.tflite import load_tflite

    g = load_tflite(mlperf_dir / "kws_ref_model_float32.tflite")  # float activations, int8 conv weights
    with pytest.raises(UnsupportedError, match="hybrid") as e:
        generate(g, tmp_path / "b")
    assert e.value.where and e.value.fix
    assert not (tmp_path / "b").exists()
