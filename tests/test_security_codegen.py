"""Hostile names in a model never reach the generated C unescaped; device-side guards are there.

One small network is built twice with onnx.helper: once with plain names and
once with names full of ``*/``, ``/*``, quotes, backslashes, newlines,
``#include``/``#define``/``#error`` lines, ``??/`` trigraphs, unicode, an
empty name, C keywords, runtime names (``ec_invoke``, ``EC_ARENA_BYTES``) and
names that collide once cleaned.  Both compile (host gcc and arm-none-eabi-gcc,
``-Wall -Wextra -Werror`` from the bundle's Makefile), give identical outputs,
and once comments and string literals are removed and identifiers are
replaced by one placeholder their C is token for token the same: the hostile
text changed nothing but comments, strings and identifier spellings.
"""
from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgecomp.errors import EdgecompError


def _ready() -> bool:
    try:
        return importlib.util.find_spec("edgecomp.backends.c") is not None
    except ModuleNotFoundError:
        return False


pytestmark = pytest.mark.skipif(not _ready(), reason="edgecomp.backends.c not landed yet")

KEYS = ["x", "w", "b", "c", "r", "p", "f", "y", "w2", "b2", "conv", "relu", "pool", "flat", "fc", "graph"]
PLAIN = {k: k for k in KEYS}
HOSTILE = {
    "x": "in\"put\\", "w": "int", "b": "*/ int pwned; /*", "c": "??/\n#define X 1", "r": "main",
    "p": "a b", "f": "a-b", "y": "y\r\n/*", "w2": "ec_invoke", "b2": "EC_ARENA_BYTES",
    "conv": "*/ #include <stdio.h> /*", "relu": "", "pool": "\\", "flat": "caf\u00e9 \u7f51\u7edc \U0001F600",
    "fc": "a_b", "graph": "*/\n#error pwned\n/*",
}
SOURCES = ("model.c", "model.h", "weights.c")


def _model(n: dict, path: Path) -> Path:
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Conv", [n["x"], n["w"], n["b"]], [n["c"]], name=n["conv"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", [n["c"]], [n["r"]], name=n["relu"]),
             helper.make_node("MaxPool", [n["r"]], [n["p"]], name=n["pool"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Flatten", [n["p"]], [n["f"]], name=n["flat"]),
             helper.make_node("Gemm", [n["f"], n["w2"], n["b2"]], [n["y"]], name=n["fc"], transB=1)]
    inits = [numpy_helper.from_array(rng.standard_normal((4, 2, 3, 3)).astype(np.float32), n["w"]),
             numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), n["b"]),
             numpy_helper.from_array(rng.standard_normal((5, 16)).astype(np.float32), n["w2"]),
             numpy_helper.from_array(rng.standard_normal(5).astype(np.float32), n["b2"])]
    g = helper.make_graph(nodes, n["graph"], [helper.make_tensor_value_info(n["x"], TensorProto.FLOAT, [1, 2, 4, 4])],
                          [helper.make_tensor_value_info(n["y"], TensorProto.FLOAT, [1, 5])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.doc_string = n["graph"]
    path.write_bytes(m.SerializeToString())
    return path


_LITERAL = re.compile(r"\"(\\.|[^\"\\\n])*\"|'(\\.|[^'\\\n])*'")
# One pass, as a C lexer reads: a literal or a comment, whichever starts first.
_LEX = re.compile(r"(?P<lit>\"(\\.|[^\"\\\n])*\"|'(\\.|[^'\\\n])*')|(?P<com>/\*.*?\*/|//[^\n]*)", re.S)
_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\d[\w.+-]*|\S")


def _structure(text: str) -> list[str]:
    """The token stream with comments and literals removed and every identifier spelled ID."""
    code = _LEX.sub(lambda m: '""' if m.group("lit") else " ", text)
    return ["ID" if re.match(r"[A-Za-z_]", t) and not t.startswith(("EC_", "ec_")) else t
            for t in _TOKEN.findall(code)]


def _c_unescape(lit: str) -> str:
    body, out, i = lit[1:-1], bytearray(), 0
    while i < len(body):
        ch = body[i]
        if ch == "\\":
            nxt = body[i + 1]
            if nxt in "01234567":
                j = i + 1
                while j < len(body) and j < i + 4 and body[j] in "01234567":
                    j += 1
                out.append(int(body[i + 1:j], 8))
                i = j
                continue
            out += {"n": b"\n", "r": b"\r", "t": b"\t"}.get(nxt, nxt.encode())
            i += 2
        else:
            out += ch.encode()
            i += 1
    return out.decode("utf-8", "surrogatepass")


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    from edgecomp import api

    d = tmp_path_factory.mktemp("names")
    out = {}
    for label, names in (("plain", PLAIN), ("hostile", HOSTILE)):
        model = _model(names, d / f"{label}.onnx")
        man = api.compile_model(model, "host", d / f"{label}_host", precision="float32")
        out[label] = (d / f"{label}_host", man, model)
    return out


@pytest.mark.toolchain
def test_hostile_names_compile_and_compute_the_same(bundles):
    from edgecomp import api

    x = np.random.default_rng(1).standard_normal((3, 2, 4, 4)).astype(np.float32)
    a = api.run_bundle(bundles["plain"][0], x, emulate=False).outputs
    b = api.run_bundle(bundles["hostile"][0], x, emulate=False).outputs
    assert a.shape == (3, 5) and np.array_equal(a, b)


@pytest.mark.toolchain
def test_generated_c_has_the_same_structure_as_with_plain_names(bundles):
    for f in SOURCES:
        plain = (bundles["plain"][0] / f).read_text()
        hostile = (bundles["hostile"][0] / f).read_text()
        assert _structure(hostile) == _structure(plain), f
        raw = (bundles["hostile"][0] / f).read_bytes()
        assert all(b < 0x80 for b in raw), f"{f}: non-ASCII bytes in generated C"
        assert b"??" not in raw, f"{f}: a trigraph sequence"
        directives = [_structure(l) for l in hostile.splitlines() if l.lstrip().startswith("#")]
        assert directives == [_structure(l) for l in plain.splitlines() if l.lstrip().startswith("#")], f
        assert not [l for l in hostile.splitlines() if re.match(r"\s*#\s*(error|include\s*<stdio)", l)], f
        # A backslash at the end of a line splices lines: only the template's own macro lines may have one.
        assert [l for l in hostile.splitlines() if l.endswith("\\")] == \
               [l for l in plain.splitlines() if l.endswith("\\")]


@pytest.mark.toolchain
def test_layer_names_survive_as_escaped_strings(bundles):
    text = (bundles["hostile"][0] / "model.c").read_text()
    m = re.search(r"ec_layer_name\[EC_NUM_LAYERS\]\s*=\s*\{(.*?)\};", text, re.S)
    assert m, "no ec_layer_name table"
    names = [_c_unescape(s.group(0)) for s in _LITERAL.finditer(m.group(1))]
    assert names == [layer["name"] for layer in bundles["hostile"][1]["layers"]]
    assert HOSTILE["conv"] in names and HOSTILE["pool"] in names


def test_hostile_model_file_name_is_refused(tmp_path):
    from edgecomp import api

    p = _model(PLAIN, tmp_path / "evil$(touch pwned);.onnx")
    with pytest.raises(EdgecompError):
        api.compile_model(p, "host", tmp_path / "out", precision="float32")
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "out").exists()


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None or shutil.which("qemu-system-arm") is None,
                    reason="no arm-none-eabi-gcc / qemu-system-arm")
@pytest.mark.toolchain
@pytest.mark.qemu
def test_hostile_names_on_cortex_m4(bundles, tmp_path):
    from edgecomp import api

    model = bundles["hostile"][2]
    out = tmp_path / "m4"
    api.compile_model(model, "cortex-m4", out, precision="float32")  # the Makefile builds with -Werror
    for f in SOURCES:
        assert _structure((out / f).read_text()) == _structure((bundles["plain"][0] / f).read_text())
    x = np.random.default_rng(1).standard_normal((2, 2, 4, 4)).astype(np.float32)
    ref = api.run_bundle(bundles["plain"][0], x, emulate=False).outputs
    got = api.run_bundle(out, x).outputs
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------- device-side guards
@pytest.mark.toolchain
def test_static_assertion_on_the_arena(bundles, tmp_path):
    """model.c refuses to compile if the planned tensors overrun the arena."""
    src = bundles["plain"][0]
    text = (src / "model.c").read_text()
    m = re.search(r"#define EC_PLAN_END_BYTES (\d+)", text)
    assert m, "no planned-end constant in model.c"
    assert re.search(r"EC_PLAN_END_BYTES\s*<=\s*EC_ARENA_BYTES", text), "no static assertion on the arena size"
    work = tmp_path / "b"
    shutil.copytree(src, work, ignore=shutil.ignore_patterns("build"))
    arena = int(re.search(r"#define EC_ARENA_BYTES\s+(\d+)", (work / "model.h").read_text()).group(1))
    (work / "model.c").write_text(text.replace(m.group(0), f"#define EC_PLAN_END_BYTES {arena + 8}"))
    r = subprocess.run(["gcc", "-c", "-Wall", "-Wextra", "-Werror", "-o", str(work / "m.o"), str(work / "model.c")],
                       capture_output=True, text=True, cwd=work)
    assert r.returncode != 0, "an overrun plan still compiled"
    r = subprocess.run(["gcc", "-c", "-Wall", "-Wextra", "-Werror", "-o", str(work / "m.o"), str(src / "model.c")],
                       capture_output=True, text=True, cwd=src)
    assert r.returncode == 0, r.stderr


@pytest.mark.toolchain
def test_debug_build_checks_pointers_at_the_api(bundles, tmp_path):
    """With -DEC_DEBUG, ec_run(NULL, ...) returns an error instead of writing through NULL."""
    src = bundles["plain"][0]
    assert "EC_DEBUG" in (src / "model.c").read_text()
    harness = tmp_path / "t.c"
    harness.write_text(
        '#include <stdio.h>\n#include "model.h"\n#include <stdint.h>\n'
        "uint32_t ec_timer_now(void) { return 0; }\n"
        "int main(void) {\n"
        "    static ec_in_t in[EC_INPUT_SIZE]; static ec_out_t out[EC_OUTPUT_SIZE];\n"
        "    int a = ec_run(NULL, out), b = ec_run(in, NULL), c = ec_run(in, out);\n"
        '    printf("%d %d %d\\n", a, b, c);\n    return 0;\n}\n')
    exe = tmp_path / "t"
    srcs = [str(src / f) for f in ("model.c", "weights.c", "ec_kernels.c")]
    r = subprocess.run(["gcc", "-DEC_DEBUG", "-Wall", "-Wextra", "-Werror", "-I", str(src), "-o", str(exe),
                        str(harness), *srcs, "-lm"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    a, b, c = map(int, subprocess.run([str(exe)], capture_output=True, text=True, timeout=30).stdout.split())
    assert a != 0 and b != 0 and c == 0
