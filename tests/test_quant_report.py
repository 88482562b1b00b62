"""Never lose accuracy silently (issue 18): calibration checks and the quantization report.

The model is a small digits classifier trained in a second (a fixed random ReLU layer, then a
logistic regression from scikit-learn, written as ONNX), so the accuracies below are real.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgecomp import api, cli
from edgecomp.bundle import read_manifest
from edgecomp.errors import EdgecompError


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """(folder, x_train [N,1,8,8] in 0..1, y_train, x_test, y_test) and digits.onnx trained on 0..1 inputs."""
    from sklearn.linear_model import LogisticRegression

    from edgecomp.demo import digits_split

    xtr, ytr, xte, yte = digits_split()
    rng = np.random.default_rng(0)
    w1 = (rng.standard_normal((48, 64)) / 4).astype(np.float32)
    b1 = np.zeros(48, np.float32)
    feats = np.maximum(xtr.reshape(len(xtr), -1) @ w1.T + b1, 0)
    clf = LogisticRegression(max_iter=2000).fit(feats, ytr)
    nodes = [helper.make_node("Flatten", ["x"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "w1", "b1"], ["h"], name="hidden", transB=1),
             helper.make_node("Relu", ["h"], ["r"], name="relu"),
             helper.make_node("Gemm", ["r", "w2", "b2"], ["y"], name="classifier", transB=1)]
    inits = [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(b1, "b1"),
             numpy_helper.from_array(clf.coef_.astype(np.float32), "w2"),
             numpy_helper.from_array(clf.intercept_.astype(np.float32), "b2")]
    g = helper.make_graph(nodes, "digits", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])], inits)
    d = tmp_path_factory.mktemp("digits")
    (d / "digits.onnx").write_bytes(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
                                    .SerializeToString())
    np.save(d / "calib.npy", xtr[:300])
    np.save(d / "calib_u8.npy", (xtr[:300] * 255).round().astype(np.uint8))  # the mistake
    np.save(d / "x_test.npy", xte)
    np.save(d / "y_test.npy", yte)
    return d, xtr, ytr, xte, yte


def _compile(d: Path, capsys, *args: str) -> tuple[int, str, str]:
    rc = cli.main(["compile", str(d / "digits.onnx"), "-t", "host", *args])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


@pytest.mark.toolchain
def test_uint8_calibration_warns_and_the_report_shows_the_loss(digits, tmp_path, capsys):
    d = digits[0]
    rc, out, err = _compile(d, capsys, "--calib", str(d / "calib_u8.npy"), "--validate", str(d / "x_test.npy"),
                            "--labels", str(d / "y_test.npy"), "-o", str(tmp_path / "b"))
    assert rc == 0, err
    assert "edgecomp: warning: calibration samples are whole numbers in [0, 255] (raw 8-bit data" in err
    assert "validation data spans [0, 1]" in err
    q = read_manifest(tmp_path / "b")["quantization"]
    e2e = q["end_to_end"]
    assert e2e["accuracy_float"] > 0.9 and e2e["accuracy_int8"] < e2e["accuracy_float"] - 0.3, e2e
    assert any("raw 8-bit data" in w for w in q["warnings"]) and any("agree on the top-1" in w for w in q["warnings"])
    assert "accuracy float" in out and "warning: calibration samples are whole numbers" in out


@pytest.mark.toolchain
def test_good_calibration_report_matches_the_firmware(digits, tmp_path, capsys):
    """The report's int8 numbers are the generated code's: its accuracy equals the host build's on the same data."""
    d, xtr, ytr, xte, yte = digits
    rc, out, err = _compile(d, capsys, "--calib", str(d / "calib.npy"), "--validate", str(d / "x_test.npy"),
                            "--labels", str(d / "y_test.npy"), "-o", str(tmp_path / "b"))
    assert rc == 0, err
    assert "warning" not in err, err
    q = read_manifest(tmp_path / "b")["quantization"]
    assert q["data"] == "validation" and q["samples"] == len(xte) and q["warnings"] == []
    assert [l["name"] for l in q["layers"]] == ["hidden", "classifier"]
    assert all(l["sqnr_db"] > 25 for l in q["layers"]), q["layers"]
    e2e = q["end_to_end"]
    assert e2e["kind"] == "classifier" and e2e["top1_agreement"] > 0.97 and e2e["cosine"] > 0.99
    pred = api.run_bundle(tmp_path / "b", xte, emulate=False)
    fw = pred.outputs_float.reshape(len(xte), -1).astype(np.float64)
    assert e2e["accuracy_int8"] == round(float(np.mean(fw.argmax(1) == yte)), 4)
    from edgecomp.demo import ort_outputs
    ref = ort_outputs(d / "digits.onnx", xte).reshape(len(xte), -1).astype(np.float64)
    sqnr = 10 * np.log10(np.sum(ref ** 2) / np.sum((ref - fw) ** 2))
    assert abs(e2e["output_sqnr_db"] - sqnr) < 0.06, (e2e, sqnr)
    assert e2e["top1_agreement"] == round(float(np.mean(fw.argmax(1) == ref.argmax(1))), 4)
    assert abs(e2e["accuracy_float"] - e2e["accuracy_int8"]) < 0.03
    # `edgecomp report` shows the same numbers
    assert cli.main(["report", str(tmp_path / "b")]) == 0
    text = capsys.readouterr().out
    assert "quantization: int8 against the float model on 360 validation sample(s)" in text
    assert f"accuracy float {100 * e2e['accuracy_float']:.1f} % -> int8 {100 * e2e['accuracy_int8']:.1f} %" in text


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_inf_calibration_is_refused(digits, tmp_path, capsys, bad):
    d, xtr = digits[0], digits[1]
    x = xtr[:100].copy()
    x[7, 0, 3, 3] = bad
    np.save(tmp_path / "c.npy", x)
    rc, out, err = _compile(d, capsys, "--calib", str(tmp_path / "c.npy"), "-o", str(tmp_path / "b"))
    assert rc == 2 and err.startswith("edgecomp: error: the samples hold 1 ") and "(the first in sample 7)" in err \
        and ("NaN" if np.isnan(bad) else "infinite") in err, err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "b").exists()


@pytest.mark.toolchain
def test_few_samples_and_constant_data_warn(digits, tmp_path, capsys):
    d, xtr = digits[0], digits[1]
    np.save(tmp_path / "few.npy", xtr[:10])
    rc, out, err = _compile(d, capsys, "--calib", str(tmp_path / "few.npy"), "-o", str(tmp_path / "b"))
    assert rc == 0 and "only 10 calibration samples" in err, err
    np.save(tmp_path / "const.npy", np.full((60, 1, 8, 8), 0.5, np.float32))
    rc, out, err = _compile(d, capsys, "--calib", str(tmp_path / "const.npy"), "-o", str(tmp_path / "b"))
    assert rc == 0 and "every calibration value is 0.5" in err, err


@pytest.mark.toolchain
def test_layers_left_in_float_say_which_why_and_cost(digits, tmp_path, capsys):
    d = digits[0]
    rc, out, err = _compile(d, capsys, "--calib", str(d / "calib.npy"), "--keep-float", "classifier",
                            "-o", str(tmp_path / "b"))
    assert rc == 0, err
    fl = read_manifest(tmp_path / "b")["quantization"]["float_layers"]
    assert fl == [{"name": "classifier", "op": "fully_connected", "reason": "--keep-float", "float_macs": 480,
                   "extra_flash_bytes": 3 * 480, "float_ram_bytes": 4 * 10}]
    assert ("left in float: classifier (fully_connected): --keep-float; 480 float MACs, +1,440 B of weights, "
            "40 B float32 output") in out


def _outlier_model(path: Path) -> Path:
    """conv1 makes a channel 1000x larger than the other; conv2 reads only the small one.  conv1's tensor
    keeps its SQNR (the big channel is its signal), conv2's output is ruined by conv1's coarse scale."""
    rng = np.random.default_rng(1)
    w1 = np.stack([np.full((1, 3, 3), 1000.0), rng.standard_normal((1, 3, 3))]).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["c1", "w2", "b2"], ["c2"], name="conv2"),
             helper.make_node("Flatten", ["c2"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "w3", "b3"], ["y"], name="fc", transB=1)]
    inits = [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(np.zeros(2, np.float32), "b1"),
             numpy_helper.from_array(np.array([0, 1], np.float32).reshape(1, 2, 1, 1), "w2"),
             numpy_helper.from_array(np.zeros(1, np.float32), "b2"),
             numpy_helper.from_array(rng.standard_normal((4, 64)).astype(np.float32), "w3"),
             numpy_helper.from_array(np.zeros(4, np.float32), "b3")]
    g = helper.make_graph(nodes, "outlier", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], inits)
    path.write_bytes(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString())
    return path


@pytest.mark.toolchain
def test_a_layer_far_below_the_others_is_named_with_what_to_do(tmp_path):
    model = _outlier_model(tmp_path / "outlier.onnx")
    calib = np.random.default_rng(2).uniform(-1, 1, (100, 1, 8, 8)).astype(np.float32)
    man = api.compile_model(model, "host", tmp_path / "b", calib=calib)
    q = man["quantization"]
    db = {l["name"]: l["sqnr_db"] for l in q["layers"]}
    assert db["conv1"] > 30 and db["conv2"] < db["conv1"] - 20, db
    flagged = [w for w in q["warnings"] if w.startswith("layer ")]
    assert len(flagged) == 1 and flagged[0].startswith("layer conv2 (conv2d) has an SQNR of"), q["warnings"]
    assert "--keep-float conv2" in flagged[0] and "--precision int16" in flagged[0]


def test_labels_are_checked_before_calibration(digits, tmp_path, capsys):
    d = digits[0]
    np.save(tmp_path / "y.npy", np.zeros((5, 2, 3)))
    rc, out, err = _compile(d, capsys, "--calib", str(d / "calib.npy"), "--validate", str(d / "x_test.npy"),
                            "--labels", str(tmp_path / "y.npy"), "-o", str(tmp_path / "b"))
    assert rc == 2 and "labels must be one integer class per sample" in err and "calibrating" not in err, err
    np.save(tmp_path / "y.npy", np.zeros(5, np.int64))
    rc, out, err = _compile(d, capsys, "--calib", str(d / "calib.npy"), "--validate", str(d / "x_test.npy"),
                            "--labels", str(tmp_path / "y.npy"), "-o", str(tmp_path / "b"))
    assert rc == 2 and "5 labels for 360 validation samples" in err, err
    rc, out, err = _compile(d, capsys, "--calib", str(d / "calib.npy"), "--labels", str(tmp_path / "y.npy"),
                            "-o", str(tmp_path / "b"))
    assert rc == 2 and "labels without validation samples" in err
    assert not (tmp_path / "b").exists()


def test_report_is_deterministic(digits, tmp_path):
    """The report is part of the manifest, which must be byte-identical between two compiles."""
    from edgecomp.compress.quant_report import quantization_report
    from edgecomp.frontends.onnx import from_onnx
    from edgecomp.compress.quantize import quantize_onnx

    d, xtr = digits[0], digits[1]
    qdq = quantize_onnx(d / "digits.onnx", xtr[:100], tmp_path / "q.onnx", progress=False)
    g = from_onnx(qdq)
    samples = [xtr[i:i + 1] for i in range(100)]
    a = quantization_report(d / "digits.onnx", g, samples)
    b = quantization_report(d / "digits.onnx", g, samples)
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    assert a["samples"] == 64  # bounded
    with pytest.raises(EdgecompError):
        from edgecomp.compress.quant_report import check_finite
        check_finite([np.array([[1.0, np.nan]])])


def test_report_text_knows_the_exact_marker():
    from edgecomp import report
    from edgecomp.compress import quant_report
    assert report._EXACT_DB == quant_report.EXACT_DB
    lines = report.quantization_lines({"samples": 3, "data": "calibration", "input_sqnr_db": quant_report.EXACT_DB,
                                       "layers": [{"name": "c", "op": "conv2d", "sqnr_db": quant_report.EXACT_DB}]})
    assert "input exact" in lines[1] and lines[-1].split()[-1] == "exact"
