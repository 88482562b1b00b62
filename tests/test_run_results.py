"""No silent float islands, in instructions: `edgecomp run` under QEMU keeps its per-layer counts in the
bundle (run.json, a result file, edgecomp/run_results.py) and `edgecomp report` shows each float
layer's measured instructions; without a run (or after a recompile) it says how to get them."""
from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgecomp import cli


@pytest.fixture(scope="module")
def digits_onnx(tmp_path_factory):
    """Flatten -> Gemm 'hidden' -> Relu -> Gemm 'classifier' on the 8x8 digits, and 200 calibration images."""
    from edgecomp.demo import digits_split
    xtr = digits_split()[0]
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Flatten", ["x"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "w1", "b1"], ["h"], name="hidden", transB=1),
             helper.make_node("Relu", ["h"], ["r"], name="relu"),
             helper.make_node("Gemm", ["r", "w2", "b2"], ["y"], name="classifier", transB=1)]
    inits = [numpy_helper.from_array((rng.standard_normal((48, 64)) / 4).astype(np.float32), "w1"),
             numpy_helper.from_array(np.zeros(48, np.float32), "b1"),
             numpy_helper.from_array((rng.standard_normal((10, 48)) / 4).astype(np.float32), "w2"),
             numpy_helper.from_array(np.zeros(10, np.float32), "b2")]
    g = helper.make_graph(nodes, "digits", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])], inits)
    d = tmp_path_factory.mktemp("digits")
    (d / "digits.onnx").write_bytes(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
                                    .SerializeToString())
    np.save(d / "calib.npy", xtr[:200])
    return d


def _cli(capsys, *args):
    rc = cli.main(list(args))
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


HINT = "instructions of the float layers: not measured yet; `edgecomp run "


@pytest.mark.toolchain
@pytest.mark.qemu
def test_report_shows_the_probes_instructions_of_a_keep_float_layer(digits_onnx, tmp_path, capsys):
    b = str(tmp_path / "b")
    rc, out, err = _cli(capsys, "compile", str(digits_onnx / "digits.onnx"), "-t", "cortex-m4", "--calib",
                        str(digits_onnx / "calib.npy"), "--keep-float", "hidden", "-o", b)
    assert rc == 0, err
    assert "left in float: hidden (fully_connected): --keep-float" in out and HINT in out  # no run yet
    rc, out, err = _cli(capsys, "run", b, "--json")
    assert rc == 0, err
    table = json.loads(out)
    layers = {row["name"]: row for row in table["layers"]}
    probe = layers["hidden"]["instructions"]
    total = table["total_ticks"] * probe // layers["hidden"]["ticks"]  # SysTick ticks x instructions per tick
    assert probe > 0 and layers["hidden"]["kernel"].endswith("_f32")
    assert (tmp_path / "b" / "run.json").is_file()

    rc, out, err = _cli(capsys, "report", b)
    assert rc == 0, err
    line = next(ln for ln in out.splitlines() if "left in float: hidden" in ln)
    m = re.search(r"; ([\d,]+) instructions \(([\d.]+) % of the inference\)$", line)
    assert m, line
    assert int(m.group(1).replace(",", "")) == probe
    assert float(m.group(2)) == pytest.approx(layers["hidden"]["share_pct"], abs=0.05)
    assert HINT not in out and f"float layers: {probe:,} of {total:,} instructions per inference" in out

    # the bundle with its result still runs (run.json is an allowed result, not a source) ...
    rc, out, err = _cli(capsys, "run", b)
    assert rc == 0, err
    # ... and a run.json measured on another manifest (edited, or left from another compile) is not shown
    run = json.loads((tmp_path / "b" / "run.json").read_text())
    run["manifest_sha256"] = "0" * 64
    (tmp_path / "b" / "run.json").write_text(json.dumps(run))
    rc, out, err = _cli(capsys, "report", b)
    assert rc == 0 and HINT in out and "instructions (" not in out, out


@pytest.mark.toolchain
def test_host_run_saves_nothing_and_a_linked_run_json_is_ignored(digits_onnx, tmp_path, capsys):
    b = tmp_path / "b"
    rc, out, err = _cli(capsys, "compile", str(digits_onnx / "digits.onnx"), "-t", "host", "--calib",
                        str(digits_onnx / "calib.npy"), "--keep-float", "hidden", "-o", str(b))
    assert rc == 0 and "compile for a Cortex-M target" in out, out
    rc, out, err = _cli(capsys, "run", str(b), "--host")
    assert rc == 0 and not (b / "run.json").exists(), err  # no instruction counts natively
    # a well-formed run.json for this manifest is shown as a regular file, ignored through a link
    from edgecomp.run_results import FORMAT, manifest_digest
    run = {"format": FORMAT, "manifest_sha256": manifest_digest(b), "emulator": "qemu", "total_instructions": 1000,
           "layers": [{"name": "hidden", "op": "fully_connected", "instructions": 250}]}
    (b / "run.json").write_text(json.dumps(run))
    rc, out, err = _cli(capsys, "report", str(b))
    assert rc == 0 and "; 250 instructions (25.0 % of the inference)" in out, out
    (b / "run.json").unlink()
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_text(json.dumps(run))
    os.symlink(elsewhere, b / "run.json")
    rc, out, err = _cli(capsys, "report", str(b))
    assert rc == 0 and "250 instructions" not in out and "compile for a Cortex-M target" in out, out
