"""Broken and hostile ONNX files: every one ends in an EdgecompError, quickly, in little memory.

The strategies live in scripts/fuzz_long.py (which runs them for hours); here a
derandomized, bounded budget runs in CI.  A case that raises anything but an
EdgecompError, runs past the per-case time limit, or (in the subprocess test)
allocates past an address-space limit fails the test with its reproducer.
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgecomp.errors import EdgecompError
from edgecomp.frontends.onnx import from_onnx

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("fuzz_long", ROOT / "scripts" / "fuzz_long.py")
fz = importlib.util.module_from_spec(_spec)
sys.modules["fuzz_long"] = fz
_spec.loader.exec_module(fz)

ONNX_CASES = int(os.environ.get("EDGECOMP_FUZZ_ONNX_CASES", "1000"))
CLI_CASES = int(os.environ.get("EDGECOMP_FUZZ_CLI_CASES", "80"))


def _report(capsys, what):
    with capsys.disabled():
        print(f"\n[fuzz] {what}: {fz.STATS.line()}")


def test_seed_models_are_valid_and_accepted(tmp_path):
    """The fuzz starts from models edgecomp accepts, so mutations reach deep code, not just the parser."""
    for name in fz.SEEDS:
        p = tmp_path / f"{name}.onnx"
        p.write_bytes(fz.seed_bytes(name))
        g = from_onnx(p)
        assert g.nodes and g.outputs


def test_fuzz_from_onnx(tmp_path, capsys):
    before = fz.STATS.cases.get("onnx", 0)
    fz.run_onnx(ONNX_CASES, tmp_path, seed=None, derandomize=True, cli_every=0, seconds=20)
    tried = fz.STATS.cases["onnx"] - before
    _report(capsys, "from_onnx")
    assert tried >= ONNX_CASES * 0.9
    # the mutations are not all trivially rejected: some still import, most are refused
    assert 0 < fz.STATS.accepted.get("onnx", 0) < tried


def test_fuzz_cli_compile(tmp_path, capsys):
    """`edgecomp compile` on refused files: exit code 2, one `edgecomp: error:` line, no bundle, no temp folder."""
    fz.run_onnx(CLI_CASES, tmp_path, seed=None, derandomize=True, cli_every=1, seconds=30)
    _report(capsys, "cli compile")
    assert fz.STATS.cases.get("cli", 0) > CLI_CASES // 2


COMPILE_CASES = int(os.environ.get("EDGECOMP_FUZZ_COMPILE_CASES", "120"))


@pytest.mark.toolchain
def test_fuzz_compile_what_the_importer_accepts(tmp_path, capsys):
    """Mutated models that import must compile (gcc -Werror, host) or fail with one clear message."""
    before = fz.STATS.cases.get("compile", 0)
    fz.run_onnx(COMPILE_CASES, tmp_path, seed=None, derandomize=True, cli_every=0, seconds=20, compile_accepted=True)
    _report(capsys, "compile accepted")
    assert fz.STATS.cases.get("compile", 0) - before >= 3


# ----------------------------------------------------------------------------- named hostile cases
def test_name_that_is_not_utf8(tmp_path):
    """protobuf returns bytes for a string field holding invalid UTF-8: refused, not passed on to codegen."""
    data = _conv().SerializeToString()
    i = data.index(b"conv")
    p = tmp_path / "m.onnx"
    p.write_bytes(data[:i] + b"\x80" + data[i + 1:])
    _refused(p, "utf-8")


def _model(nodes, inits, x_shape=(1, 3, 4, 4), y_shape=(1, 4, 4, 4), name="m"):
    g = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(y_shape))], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])


def _conv(**kw):
    w = numpy_helper.from_array(np.ones((4, 3, 1, 1), np.float32), "w")
    return _model([helper.make_node("Conv", ["x", "w"], ["y"], name="conv", **kw)], [w])


def _save(m, path):
    path.write_bytes(m.SerializeToString())
    return path


def _refused(path, *words):
    with pytest.raises(EdgecompError) as e:
        from_onnx(path)
    msg = e.value.message().lower()
    assert all(w.lower() in msg for w in words), msg
    return msg


def test_plain_conv_is_accepted(tmp_path):
    assert from_onnx(_save(_conv(), tmp_path / "m.onnx")).nodes[0].op == "conv2d"


@pytest.mark.parametrize("dim", [-1, 0, 2**40, 2**62])
def test_huge_negative_or_zero_input_dimension(tmp_path, dim):
    m = _conv()
    m.graph.input[0].type.tensor_type.shape.dim[2].dim_value = dim
    _refused(_save(m, tmp_path / "m.onnx"))


def test_initializer_claims_2_pow_40_elements_with_8_bytes(tmp_path):
    m = _conv()
    t = m.graph.initializer[0]
    del t.dims[:]
    t.dims.extend([2**20, 2**20, 1, 1])
    t.raw_data = b"\x00" * 8
    _refused(_save(m, tmp_path / "m.onnx"))


def test_initializer_data_shorter_than_its_shape(tmp_path):
    m = _conv()
    m.graph.initializer[0].raw_data = m.graph.initializer[0].raw_data[:8]
    _refused(_save(m, tmp_path / "m.onnx"), "w")


def test_cycle(tmp_path):
    w = numpy_helper.from_array(np.ones((4, 4, 1, 1), np.float32), "w2")
    m = _conv()
    m.graph.node[0].input[0] = "z"
    m.graph.node.append(helper.make_node("Conv", ["y", "w2"], ["z"], name="back"))
    m.graph.initializer.append(w)
    _refused(_save(m, tmp_path / "m.onnx"))


def test_dangling_tensor_name(tmp_path):
    m = _conv()
    m.graph.node[0].input[0] = "nowhere"
    _refused(_save(m, tmp_path / "m.onnx"))


def test_wrong_input_dtype(tmp_path):
    m = _conv()
    m.graph.input[0].type.tensor_type.elem_type = TensorProto.STRING
    _refused(_save(m, tmp_path / "m.onnx"))


@pytest.mark.parametrize("attr,val", [("strides", [0, 0]), ("dilations", [0, 1]), ("pads", [-1, 0, 0, 0]),
                                      ("strides", [2**40, 1]), ("group", 0)])
def test_absurd_attributes(tmp_path, attr, val):
    _refused(_save(_conv(**{attr: val}), tmp_path / "m.onnx"))


def _external(tmp_path, location, offset=None, length=None):
    folder = tmp_path / "model"
    folder.mkdir(exist_ok=True)
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.full(12, 7, np.float32).tobytes())
    (folder / "w.bin").write_bytes(np.ones(12, np.float32).tobytes())
    if not (folder / "link").exists():
        os.symlink(secret, folder / "link")
    m = _conv()
    t = m.graph.initializer[0]
    t.ClearField("raw_data")
    t.data_location = TensorProto.EXTERNAL
    for k, v in (("location", location), ("offset", offset), ("length", length)):
        if v is not None:
            e = t.external_data.add()
            e.key, e.value = k, str(v)
    return _save(m, folder / "m.onnx")


def test_external_data_inside_the_folder_is_read(tmp_path):
    g = from_onnx(_external(tmp_path, "w.bin"))
    assert float(g.tensors[g.nodes[0].inputs[1]].data.sum()) == 12.0


@pytest.mark.parametrize("loc", ["../secret.bin", "/etc/passwd", "sub/../../secret.bin", "link", "..",
                                 str(Path("/tmp").resolve() / "secret.bin"), "a\x00b", "x" * 5000])
def test_external_data_outside_the_folder_is_refused(tmp_path, loc):
    _refused(_external(tmp_path, loc), "external")


@pytest.mark.parametrize("offset,length", [(0, 2**40), (2**40, 4), (-1, 4), (40, 16), ("x", 4)])
def test_external_data_range_outside_the_file(tmp_path, offset, length):
    _refused(_external(tmp_path, "w.bin", offset, length))


# ----------------------------------------------------------------------------- memory
def test_huge_declarations_refused_before_allocating(tmp_path):
    """Run the huge-size cases in a child limited to 1 GiB of address space: MemoryError there is a bug."""
    cases = []
    m = _conv()
    m.graph.input[0].type.tensor_type.shape.dim[2].dim_value = 2**40
    cases.append(_save(m, tmp_path / "a.onnx"))
    m = _conv()
    del m.graph.initializer[0].dims[:]
    m.graph.initializer[0].dims.extend([2**16, 2**16, 2**8, 1])
    cases.append(_save(m, tmp_path / "b.onnx"))
    cases.append(_external(tmp_path, "w.bin", 0, 2**40))
    m = _conv()
    t = TensorProto(name="c", data_type=TensorProto.FLOAT, dims=[2**14, 2**14, 2**4])
    node = helper.make_node("Constant", [], ["c"], name="const")
    node.attribute.append(helper.make_attribute("value", t))
    m.graph.node.insert(0, node)
    cases.append(_save(m, tmp_path / "c.onnx"))
    m = _conv()  # a Reshape whose target shape is 2**40 elements
    m.graph.node[0].output[0] = "c0"
    m.graph.node.append(helper.make_node("Reshape", ["c0", "s"], ["y"], name="r"))
    m.graph.initializer.append(numpy_helper.from_array(np.array([1, 2**40], np.int64), "s"))
    cases.append(_save(m, tmp_path / "d.onnx"))
    script = textwrap.dedent(f"""
        import resource, sys
        lim = 1 << 30
        resource.setrlimit(resource.RLIMIT_AS, (lim, lim))
        sys.path.insert(0, {str(ROOT)!r})
        from edgecomp.errors import EdgecompError
        from edgecomp.frontends.onnx import from_onnx
        for p in sys.argv[1:]:
            try:
                from_onnx(p)
                print("ACCEPTED", p)
            except EdgecompError as e:
                print("refused", p)
        # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across fork+exec
        print("peak_kb", next(l.split()[1] for l in open("/proc/self/status") if l.startswith("VmHWM:")))
    """)
    r = subprocess.run([sys.executable, "-c", script, *map(str, cases)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    lines = r.stdout.splitlines()
    assert [l.split()[0] for l in lines[:-1]] == ["refused"] * len(cases), r.stdout
    peak_mb = int(lines[-1].split()[1]) / 1024
    assert peak_mb < 400, f"peak RSS {peak_mb:.0f} MiB"


def test_fuzz_under_address_space_limit(tmp_path, capsys):
    """The fuzz script itself, in a child with RLIMIT_AS = 1.5 GiB, for a few seconds: no MemoryError."""
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "fuzz_long.py"), "0.1", "--target", "onnx",
                        "--seed", "12345", "--batch", "150", "--rlimit-as-mb", "1536", "--crash-dir",
                        str(tmp_path / "crashes")], capture_output=True, text=True, timeout=240)
    last = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
    with capsys.disabled():
        print(f"\n[fuzz] subprocess: {last}")
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-4000:])
    assert "cases tried: onnx:" in last
    peak = int(last.rsplit("peak RSS ", 1)[1].split()[0])
    assert peak < 1536
