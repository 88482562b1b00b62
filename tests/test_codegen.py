"""C code generator: every op compiled with host gcc and run, against the numpy reference
(edgecomp.interp: bit-exact for int8, 1e-5 for float32), the MLPerf Tiny int8 models
bit-exact against TensorFlow Lite Micro, the generated C under arm-none-eabi-gcc -Werror,
hostile names, the arena static assertion, the probe and the debug checks.
"""
from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from edgecomp import interp, ir
from edgecomp.backends.c import generate
from edgecomp.errors import ModelError, UnsupportedError
from edgecomp.resources import templates_dir
from c_harness import ARM_FLAGS, CFLAGS, SOURCES, build, check, needs_gcc, run_c
from graph_builders import (act_t, add_graph, chain_graph, clamp_graph, conv_graph, fc_graph, pool_graph, quant_graph,
                            random_chain, reshape_concat_graph, residual_graph, residual_self_graph, softmax_graph,
                            weights)

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
@pytest.mark.toolchain
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
    with pytest.raises(UnsupportedError, match="input that is also a graph output"):
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
