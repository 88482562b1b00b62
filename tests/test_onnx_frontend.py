"""ONNX / PyTorch import and int8 lowering, held against ONNX Runtime."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
import torch.nn as nn

from edgecomp import ir
from edgecomp.compress.quantize import quantize_onnx, reference_session
from edgecomp.errors import ModelError, UnsupportedError
from edgecomp.frontends.onnx import from_onnx
from edgecomp.frontends.torch import export_onnx

torch.set_num_threads(1)


class AllOps(nn.Module):
    """Conv (strided, padded), depthwise, BN, ReLU/ReLU6, residual Add, pools, concat, flatten, Gemm."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.c2 = nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU6())
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.pw = nn.Conv2d(16, 8, 1)
        self.pw2 = nn.Conv2d(16, 8, 1)
        self.fc = nn.Linear(16 * 2 * 2, 10)

    def forward(self, x):
        x = self.c1(x)
        x = nn.functional.max_pool2d(x, 2, 1, padding=0)  # 7x7
        x = self.c2(x)  # 4x4
        x = torch.relu(x + self.dw(x))
        x = torch.cat([self.pw(x), self.pw2(x)], 1)
        x = nn.functional.avg_pool2d(x, 2)  # 2x2
        return self.fc(torch.flatten(x, 1))


def _rand_model(tmp_path, module, shape, seed=0):
    torch.manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):  # non-trivial statistics so folding matters
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
    module.eval()
    path = export_onnx(module, torch.zeros(shape), tmp_path / "m.onnx")
    return path


def _ort(path, x):
    s = reference_session(path)  # the QDQ graph as written (see reference_session's docstring)
    return np.concatenate([s.run(None, {s.get_inputs()[0].name: x[i:i + 1]})[0] for i in range(len(x))])


def test_float_lowering_matches_onnxruntime(tmp_path):
    from edgecomp import interp
    path = _rand_model(tmp_path, AllOps(), (1, 3, 8, 8))
    g = from_onnx(path)
    assert g.t(g.inputs[0]).shape == (1, 8, 8, 3)  # NHWC
    assert {n.op for n in g.nodes} >= {"conv2d", "depthwise_conv2d", "add", "max_pool2d", "avg_pool2d",
                                        "concat", "reshape", "fully_connected"}
    assert not any(n.op == "clamp" for n in g.nodes), "ReLU/ReLU6 must be fused into their producers"
    x = np.random.default_rng(0).standard_normal((8, 3, 8, 8)).astype(np.float32)
    want = _ort(path, x)
    got = np.concatenate([interp.run(g, x[i:i + 1].transpose(0, 2, 3, 1))[g.outputs[0]] for i in range(len(x))])
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)


def _ort_all_quantized(qpath, x):
    """Run the QDQ model as written and return every QuantizeLinear output (int8), by name."""
    m = onnx.load(str(qpath))
    names = [n.output[0] for n in m.graph.node if n.op_type == "QuantizeLinear"]
    have = {o.name for o in m.graph.output}
    for nm in names:
        if nm not in have:
            m.graph.output.append(onnx.helper.make_empty_tensor_value_info(nm))
    p2 = qpath.with_suffix(".all.onnx")
    onnx.save(m, str(p2))
    s = reference_session(p2)
    outs = s.run(names, {s.get_inputs()[0].name: x})
    return {nm: (v.transpose(0, 2, 3, 1) if v.ndim == 4 else v) for nm, v in zip(names, outs)}


@pytest.mark.parametrize("method", ["minmax", "entropy", "percentile"])
def test_int8_lowering_every_layer_within_one_lsb_of_onnxruntime(tmp_path, method):
    """Each integer layer, fed ONNX Runtime's own int8 inputs, gives ORT's int8 output within 1 LSB.

    (Whole-model outputs of a random network drift further: 1-LSB differences are amplified layer
    after layer, so the contract is checked where it is defined, per layer.)
    """
    from edgecomp import interp
    path = _rand_model(tmp_path, AllOps(), (1, 3, 8, 8))
    rng = np.random.default_rng(1)
    calib = rng.standard_normal((64, 3, 8, 8)).astype(np.float32)
    qpath = quantize_onnx(path, calib, tmp_path / "q.onnx", method=method, progress=False)
    g = from_onnx(qpath)
    assert g.t(g.inputs[0]).dtype == "int8" and g.t(g.outputs[0]).dtype == "int8"
    assert {n.op for n in g.nodes} >= {"conv2d", "depthwise_conv2d", "add", "max_pool2d", "concat",
                                        "fully_connected"}, g.summary()
    ref_names = {g.inputs[0]: "input_QuantizeLinear_Output", g.outputs[0]: "output_QuantizeLinear_Output"}
    # tensors our IR flattens from NHWC, which ONNX flattened from NCHW: same values, other order
    flat = {n.outputs[0]: g.t(n.inputs[0]).shape for n in g.nodes if n.op == "reshape" and len(g.t(n.inputs[0]).shape) == 4}
    checked = 0
    for sample in range(4):
        x = rng.standard_normal((1, 3, 8, 8)).astype(np.float32)
        ref = _ort_all_quantized(qpath, x)
        for t, (N, H, W, C) in flat.items():
            if t in ref:
                ref[t] = ref[t].reshape(N, C, H, W).transpose(0, 2, 3, 1).reshape(N, -1)
        for n in g.nodes:
            names = [ref_names.get(t, t) for t in n.inputs + n.outputs]
            acts = [t for t in n.inputs if not g.t(t).is_const]
            if not all(ref_names.get(t, t) in ref for t in acts + n.outputs):
                continue
            sub = ir.Graph("one", {t: g.t(t) for t in n.inputs + n.outputs}, [n], acts, list(n.outputs))
            got = interp.run(sub, {t: ref[ref_names.get(t, t)] for t in acts})[n.outputs[0]]
            want = ref[ref_names.get(n.outputs[0], n.outputs[0])]
            diff = np.abs(got.astype(np.int32) - want.reshape(got.shape).astype(np.int32)).max()
            assert diff <= 1, f"{n.name} ({n.op}) differs by {diff} LSB"
            checked += 1
            del names
    assert checked >= 4 * 6


def test_flatten_of_nchw_feature_map_permutes_fc_weights(tmp_path):
    from edgecomp import interp

    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(2, 3, 3, padding=1)
            self.fc = nn.Linear(3 * 4 * 5, 4)

        def forward(self, x):
            return self.fc(torch.flatten(self.c(x), 1))

    path = _rand_model(tmp_path, M(), (1, 2, 4, 5))
    g = from_onnx(path)
    x = np.random.default_rng(0).standard_normal((1, 2, 4, 5)).astype(np.float32)
    np.testing.assert_allclose(interp.run(g, x.transpose(0, 2, 3, 1))[g.outputs[0]], _ort(path, x), atol=1e-5)


def test_bad_files_give_model_errors(tmp_path):
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x08\x07this is not a protobuf" * 10)
    with pytest.raises(ModelError):
        from_onnx(empty)
    with pytest.raises(ModelError):
        from_onnx(garbage)
    with pytest.raises(ModelError):
        from_onnx(tmp_path / "missing.onnx")
    good = _rand_model(tmp_path, AllOps(), (1, 3, 8, 8))
    data = good.read_bytes()
    trunc = tmp_path / "trunc.onnx"
    trunc.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError):
        from_onnx(trunc)


def test_unsupported_op_is_named(tmp_path):
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4])
    g = onnx.helper.make_graph([onnx.helper.make_node("Cos", ["x"], ["t"]), onnx.helper.make_node("Sin", ["t"], ["y"])],
                               "g", [x], [y])
    p = tmp_path / "u.onnx"
    onnx.save(onnx.helper.make_model(g, opset_imports=[onnx.helper.make_opsetid("", 17)]), p)
    with pytest.raises(UnsupportedError, match="Cos, Sin"):
        from_onnx(p)


def test_external_data_outside_model_folder_is_refused(tmp_path):
    w = onnx.numpy_helper.from_array(np.ones((4, 4), np.float32), "w")
    onnx.external_data_helper.set_external_data(w, location="../../etc/passwd")
    w.ClearField("raw_data")
    w.data_location = onnx.TensorProto.EXTERNAL
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4])
    g = onnx.helper.make_graph([onnx.helper.make_node("MatMul", ["x", "w"], ["y"])], "g", [x], [y], [w])
    p = tmp_path / "ext.onnx"
    p.write_bytes(onnx.helper.make_model(g).SerializeToString())
    with pytest.raises(ModelError, match="outside the model's folder"):
        from_onnx(p)


def test_calibration_errors_are_clear(tmp_path):
    path = _rand_model(tmp_path, AllOps(), (1, 3, 8, 8))
    with pytest.raises(ModelError, match="expects"):
        quantize_onnx(path, np.zeros((4, 3, 9, 9), np.float32), tmp_path / "q.onnx", progress=False)
    with pytest.raises(ModelError, match="empty"):
        quantize_onnx(path, [], tmp_path / "q.onnx", progress=False)
    with pytest.raises(ModelError, match="method"):
        quantize_onnx(path, np.zeros((4, 3, 8, 8), np.float32), tmp_path / "q.onnx", method="median", progress=False)


def test_activation_range_follows_tflite():
    q = ir.QuantParams(0.05, -10)
    assert ir.activation_range("relu", q, "int8") == (-10, 127)
    assert ir.activation_range("relu6", q, "int8") == (-10, 110)
    assert ir.activation_range(None, q, "int8") == (-128, 127)
